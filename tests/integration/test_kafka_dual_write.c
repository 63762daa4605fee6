/*
 * Dual-write integration test against two real Apache Kafka clusters (KRaft, one broker
 * each), started once per ctest run by the kafka_clusters fixture (kafka_fixture.sh).
 *
 * Each dataset test starts the agent with the clusters east and west as its regions, sends a
 * real dataset through `twinlane produce`, then reads both clusters back. Every keyed line must
 * be present exactly once in each region, in the partition that Kafka's murmur2 gives for its
 * key (computed here with librdkafka's partitioner, independently of the agent), and in input
 * order within each partition. Both regions must hold the same twinlane-id at the same
 * position, and every record must carry the twinlane headers. A third test checks that the
 * agent refuses to start when a topic has different partition counts in the two regions.
 *
 * Environment: TWINLANE_KAFKA_RUN is the run directory of chaos/kafka/kafka-cluster. The
 * bootstrap servers come from RUN/east/bootstrap and RUN/west/bootstrap. The fixture creates
 * the topics nasa and zeek with 6 partitions in both clusters, and partition-mismatch with 3
 * partitions in east and 6 in west.
 *
 * Data: $TWINLANE_NASA_TSV, else the NASA-HTTP log of 1995-08-01 in the shared data folder
 * beside the repository, else 20,000 generated lines of the same shape. $TWINLANE_ZEEK_JSONL,
 * else the Zeek logs of WRCCDC 2018 in the same folder, else 20,000 generated JSON objects
 * of 120 bytes to 3.4 KB, every 25th without the key field.
 *
 * Usage: test_kafka_dual_write [TEST], where TEST is one test name below; no argument runs
 * all of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "support.h"

#define AGENT_ID "it-kafka"
#define HOME_REGION "east"
#define GENERATED_LINES 20000

static const char *const REGIONS[2] = {"east", "west"};

/* Agent configuration, a printf format: data_dir, east's and west's bootstrap servers, topic. */
static const char *const CONFIG_FORMAT =
    "agent = { id = \"" AGENT_ID "\"; home_region = \"" HOME_REGION "\";\n"
    "          data_dir = \"%s\"; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
    "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
    "topics = ( { name = \"%s\"; } );\n";

/* The keyed input lines of a dataset, in input order, with the partition each one belongs to. */
struct expected {
    int32_t partitions;
    char **values;
    char **keys;
    int32_t *partition;
    size_t count;
    size_t missing_key; /* lines without a key, which `twinlane produce` skips */
};

/* How `twinlane produce` takes the key from a line. */
enum key_source { KEY_COLUMN_1, KEY_JSON_ORIG_H };

static void fail_with(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail_with(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fail();
    abort(); /* not reached: fail() jumps back into cmocka */
}

/* Reads the bootstrap servers that kafka-cluster wrote for a cluster of the fixture. */
static void cluster_bootstrap(const char *cluster, char *out, size_t outsize)
{
    const char *run = getenv("TWINLANE_KAFKA_RUN");
    if (!run || !*run)
        fail_with("TWINLANE_KAFKA_RUN is not set; run this test through ctest -L kafka, "
                  "which starts the clusters and sets it");

    char path[512];
    snprintf(path, sizeof(path), "%s/%s/bootstrap", run, cluster);
    char *text = it_read_file(path, NULL);
    if (!text || !*text)
        fail_with("cannot read %s; the kafka_clusters fixture (kafka_fixture.sh start) did not "
                  "start cluster %s", path, cluster);
    text[strcspn(text, "\n")] = '\0';
    snprintf(out, outsize, "%s", text);
    free(text);
}

/* Returns the partition count of topic in the cluster at bootstrap. */
static int32_t topic_partitions(const char *bootstrap, const char *topic)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);

    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err)
        fail_with("metadata for topic %s at %s failed: %s", topic, bootstrap,
                  rd_kafka_err2str(err ? err : md->topics[0].err));
    int32_t partitions = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return partitions;
}

static bool file_exists(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f)
        fclose(f);
    return f != NULL;
}

/* Picks the NASA access log, generating one of the same shape when it is not present. */
static void nasa_input_path(const char *dir, char *out, size_t outsize)
{
    const char *env = getenv("TWINLANE_NASA_TSV");
    snprintf(out, outsize, "%s", env && *env ? env : TL_NASA_TSV);
    if (file_exists(out))
        return;

    snprintf(out, outsize, "%s/generated.tsv", dir);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    for (int i = 0; i < GENERATED_LINES; i++)
        fprintf(f, "client-%04x\t-\t%d\tGET\t/page/%d.html\t200\t%d\n", (i * 7919) % 2365,
                807235200 + i, i % 97, 1000 + i);
    fclose(f);
    fprintf(stderr, "NASA dataset not found; using %s\n", out);
}

/*
 * Picks the Zeek event log, generating JSON objects of the same size range when it is not
 * present. Every 25th generated object has no id.orig_h, like the Zeek stats and syslog
 * records.
 */
static void zeek_input_path(const char *dir, char *out, size_t outsize)
{
    const char *env = getenv("TWINLANE_ZEEK_JSONL");
    snprintf(out, outsize, "%s", env && *env ? env : TL_ZEEK_JSONL);
    if (file_exists(out))
        return;

    snprintf(out, outsize, "%s/generated.jsonl", dir);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    char padding[3300];
    memset(padding, 'x', sizeof(padding) - 1);
    padding[sizeof(padding) - 1] = '\0';
    for (int i = 0; i < GENERATED_LINES; i++) {
        int pad = (i * 131) % (int)(sizeof(padding) - 1);
        if (i % 25 == 0)
            fprintf(f, "{\"_path\":\"stats\",\"ts\":%d,\"pad\":\"%.*s\"}\n", i, pad, padding);
        else
            fprintf(f, "{\"_path\":\"dns\",\"ts\":%d,\"id.orig_h\":\"10.47.%d.%d\","
                    "\"pad\":\"%.*s\"}\n", i, (i / 251) % 256, i % 251, pad, padding);
    }
    fclose(f);
    fprintf(stderr, "Zeek dataset not found; using %s\n", out);
}

/*
 * Returns the key of one JSON line as `twinlane produce --key-json id.orig_h` takes it, in a
 * string the caller frees, or NULL when the field is missing or null.
 */
static char *json_key(const char *line)
{
    json_error_t error;
    json_t *root = json_loads(line, 0, &error);
    if (!root || !json_is_object(root))
        fail_with("dataset line is not a JSON object: %s", error.text);

    char *key = NULL;
    json_t *value = json_object_get(root, "id.orig_h");
    if (json_is_string(value))
        key = strdup(json_string_value(value));
    else if (value && !json_is_null(value))
        key = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(root);
    return key;
}

/* Reads the input and computes the partition of every keyed line. */
static void load_expected(const char *path, enum key_source source, int32_t partitions,
                          struct expected *e)
{
    char *text = it_read_file(path, NULL);
    assert_non_null(text);

    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "expected", NULL);

    size_t cap = 1024;
    memset(e, 0, sizeof(*e));
    e->partitions = partitions;
    e->values = malloc(cap * sizeof(char *));
    e->keys = malloc(cap * sizeof(char *));
    e->partition = malloc(cap * sizeof(int32_t));
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *key = source == KEY_COLUMN_1 ? strndup(line, strcspn(line, "\t")) : json_key(line);
        if (!key) {
            e->missing_key++;
            continue;
        }

        if (e->count == cap) {
            cap *= 2;
            e->values = realloc(e->values, cap * sizeof(char *));
            e->keys = realloc(e->keys, cap * sizeof(char *));
            e->partition = realloc(e->partition, cap * sizeof(int32_t));
        }
        e->values[e->count] = strdup(line);
        e->keys[e->count] = key;
        e->partition[e->count] = rd_kafka_msg_partitioner_murmur2(rkt, key, strlen(key),
                                                                  partitions, NULL, NULL);
        e->count++;
    }

    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(text);
}

static void free_expected(struct expected *e)
{
    for (size_t i = 0; i < e->count; i++) {
        free(e->values[i]);
        free(e->keys[i]);
    }
    free(e->values);
    free(e->keys);
    free(e->partition);
}

static int by_partition_offset(const void *a, const void *b)
{
    const struct it_record *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static uint64_t id_seq(const char *id)
{
    const char *colon = strrchr(id, ':');
    return colon ? strtoull(colon + 1, NULL, 10) : 0;
}

/* Checks one region's records against the input, partition by partition. */
static void check_region(const char *region, struct it_records *recs, const struct expected *e)
{
    fprintf(stderr, "region %s: %zu records, %zu keyed input lines\n", region, recs->count,
            e->count);
    assert_int_equal(recs->count, e->count);
    qsort(recs->items, recs->count, sizeof(*recs->items), by_partition_offset);

    size_t pos = 0;
    for (int32_t p = 0; p < e->partitions; p++) {
        uint64_t last_seq = 0;
        for (size_t i = 0; i < e->count; i++) {
            if (e->partition[i] != p)
                continue;
            assert_true(pos < recs->count);
            const struct it_record *r = &recs->items[pos++];
            assert_int_equal(r->partition, p);
            assert_string_equal(r->value, e->values[i]);
            assert_non_null(r->key);
            assert_string_equal(r->key, e->keys[i]);
            assert_non_null(r->id);
            assert_true(strncmp(r->id, AGENT_ID ":", strlen(AGENT_ID ":")) == 0);
            assert_true(id_seq(r->id) > last_seq);
            last_seq = id_seq(r->id);
            assert_non_null(r->origin);
            assert_string_equal(r->origin, HOME_REGION);
            assert_true(r->has_ts);
        }
    }
    assert_int_equal(pos, recs->count);
}

/* Returns summary.group.name, or summary.name when group is NULL, failing when it is missing. */
static json_int_t summary_int(json_t *summary, const char *group, const char *name)
{
    json_t *object = group ? json_object_get(summary, group) : summary;
    json_t *value = json_object_get(object, name);
    if (!json_is_integer(value))
        fail_with("produce summary has no integer %s%s%s", group ? group : "", group ? "." : "",
                  name);
    return json_integer_value(value);
}

/* Prints a file to stderr, for failure diagnosis. */
static void dump_file(const char *title, const char *path)
{
    char *text = it_read_file(path, NULL);
    fprintf(stderr, "---- %s %s ----\n%s---- end of %s ----\n", title, path,
            text ? text : "(unreadable)\n", title);
    free(text);
}

/*
 * Starts the agent against the fixture's clusters, sends one dataset to topic and checks
 * both regions. Lines without a key are skipped by `twinlane produce`, which then exits 1.
 */
static void check_dataset(const char *name, const char *topic, enum key_source source)
{
    char bootstrap[2][512];
    for (int r = 0; r < 2; r++)
        cluster_bootstrap(REGIONS[r], bootstrap[r], sizeof(bootstrap[r]));

    /* The agent checks that both regions agree; the expectation uses east's count. */
    int32_t partitions = topic_partitions(bootstrap[0], topic);

    /* The fixture creates the topics once per ctest run, so a second run would see old data. */
    struct it_records before;
    it_consume(bootstrap[0], topic, &before);
    if (before.count != 0)
        fail_with("topic %s in east already holds %zu records; run the test through "
                  "ctest -L kafka so that the fixture creates fresh clusters", topic, before.count);
    it_records_free(&before);

    char config[2048];
    snprintf(config, sizeof(config), CONFIG_FORMAT, "@DIR@/data", bootstrap[0], bootstrap[1],
             topic);
    struct it_agent agent;
    it_agent_start(&agent, name, config, NULL);

    char input[512];
    if (source == KEY_COLUMN_1)
        nasa_input_path(agent.dir, input, sizeof(input));
    else
        zeek_input_path(agent.dir, input, sizeof(input));
    struct expected e;
    load_expected(input, source, partitions, &e);
    assert_true(e.count > 0);

    char out[600], err[600];
    snprintf(out, sizeof(out), "%s/produce.json", agent.dir);
    snprintf(err, sizeof(err), "%s/produce.err", agent.dir);
    char *argv[] = {TL_CLI_BIN, "produce", "--agent", agent.socket, "--topic", (char *)topic,
                    "--json", source == KEY_COLUMN_1 ? "--key-field" : "--key-json",
                    source == KEY_COLUMN_1 ? "1" : "id.orig_h", "--file", input, NULL};
    int rc = it_run(argv, out, err, 300);
    int expected_rc = e.missing_key > 0 ? 1 : 0;
    if (rc != expected_rc) {
        fprintf(stderr, "twinlane produce exited %d, expected %d\n", rc, expected_rc);
        dump_file("produce summary", out);
        dump_file("produce errors", err);
        it_agent_dump_log(&agent);
    }
    assert_int_equal(rc, expected_rc);

    json_error_t error;
    json_t *summary = json_load_file(out, 0, &error);
    if (!summary)
        fail_with("cannot parse the produce summary %s: %s", out, error.text);
    assert_int_equal(summary_int(summary, NULL, "acknowledged"), e.count);
    assert_int_equal(summary_int(summary, "rejected_locally", "missing_key"), e.missing_key);
    assert_int_equal(summary_int(summary, "rejected_locally", "invalid_json"), 0);
    assert_int_equal(summary_int(summary, "rejected_locally", "too_large"), 0);
    assert_int_equal(summary_int(summary, NULL, "connection_lost"), 0);
    json_decref(summary);

    struct it_records records[2];
    for (int r = 0; r < 2; r++) {
        it_consume(bootstrap[r], topic, &records[r]);
        check_region(REGIONS[r], &records[r], &e);
    }

    /* Same event at the same position in both regions. */
    for (size_t i = 0; i < records[0].count; i++) {
        assert_int_equal(records[0].items[i].partition, records[1].items[i].partition);
        assert_int_equal(records[0].items[i].offset, records[1].items[i].offset);
        assert_string_equal(records[0].items[i].id, records[1].items[i].id);
    }

    assert_int_equal(it_agent_stop(&agent), 0);
    for (int r = 0; r < 2; r++)
        it_records_free(&records[r]);
    free_expected(&e);
}

static void nasa_log_lands_in_both_regions(void **state)
{
    (void)state;
    check_dataset("kafka-nasa", "nasa", KEY_COLUMN_1);
}

static void zeek_events_land_in_both_regions(void **state)
{
    (void)state;
    check_dataset("kafka-zeek", "zeek", KEY_JSON_ORIG_H);
}

static void partition_mismatch_stops_agent(void **state)
{
    (void)state;
    char bootstrap[2][512];
    for (int r = 0; r < 2; r++)
        cluster_bootstrap(REGIONS[r], bootstrap[r], sizeof(bootstrap[r]));
    assert_int_equal(topic_partitions(bootstrap[0], "partition-mismatch"), 3);
    assert_int_equal(topic_partitions(bootstrap[1], "partition-mismatch"), 6);

    char dir[256], config_path[320], out[320], err[320], data_dir[320];
    it_make_dir("kafka-mismatch", dir, sizeof(dir));
    snprintf(config_path, sizeof(config_path), "%s/agent.conf", dir);
    snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
    snprintf(out, sizeof(out), "%s/agent.out", dir);
    snprintf(err, sizeof(err), "%s/agent.log", dir);

    char config[2048];
    snprintf(config, sizeof(config), CONFIG_FORMAT, data_dir, bootstrap[0], bootstrap[1],
             "partition-mismatch");
    FILE *f = fopen(config_path, "w");
    assert_non_null(f);
    fputs(config, f);
    fclose(f);

    char *argv[] = {TL_AGENT_BIN, "-c", config_path, NULL};
    int rc = it_run(argv, out, err, 120);
    char *log = it_read_file(err, NULL);
    assert_non_null(log);
    fprintf(stderr, "agent exited %d:\n%s", rc, log);

    assert_int_equal(rc, 1);
    assert_non_null(strstr(log, "topic partition-mismatch has 3 partitions in region east"));
    assert_non_null(strstr(log, "but 6 in region west"));
    free(log);
}

int main(int argc, char **argv)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nasa_log_lands_in_both_regions),
        cmocka_unit_test(zeek_events_land_in_both_regions),
        cmocka_unit_test(partition_mismatch_stops_agent),
    };

    /* cmocka runs nothing, and passes, for a filter that matches no test, so reject one. */
    if (argc > 1) {
        bool known = false;
        for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
            known = known || strcmp(argv[1], tests[i].name) == 0;
        if (!known) {
            fprintf(stderr, "test_kafka_dual_write: unknown test '%s'\n", argv[1]);
            return 2;
        }
        cmocka_set_test_filter(argv[1]);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
