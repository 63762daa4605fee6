/*
 * Dual-write integration test against two embedded regions (librdkafka mock clusters, real
 * Kafka protocol over loopback TCP).
 *
 * Sends a real access log through `twinlane produce`, keyed by client, then reads both regions
 * back and checks that every line is present exactly once in each region, in the partition that
 * Kafka's murmur2 gives for its key (computed here with librdkafka's partitioner, independently
 * of the agent), in input order within each partition, with the same twinlane-id at the same
 * position in both regions, and with the twinlane headers.
 *
 * Data: $TWINLANE_NASA_TSV, else the NASA-HTTP log of 1995-08-01 in the shared data folder
 * beside the repository, else 20,000 generated lines of the same shape.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "support.h"

#define PARTITIONS 6

static const char *const CONFIG =
    "agent = { id = \"it-dual\"; home_region = \"east\"; data_dir = \"@DIR@/data\"; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"embedded\"; },\n"
    "            { name = \"west\"; bootstrap = \"embedded\"; } );\n"
    "topics = ( { name = \"nasa\"; partitions = 6; } );\n";

struct expected {
    char **lines;
    char **keys;
    int32_t *partition;
    size_t count;
};

/* Picks the input file, generating one when the real dataset is not present. */
static void input_path(const char *dir, char *out, size_t outsize)
{
    const char *env = getenv("TWINLANE_NASA_TSV");
    if (env && *env) {
        snprintf(out, outsize, "%s", env);
        return;
    }
    snprintf(out, outsize, "%s", TL_NASA_TSV);
    FILE *f = fopen(out, "r");
    if (f) {
        fclose(f);
        return;
    }

    snprintf(out, outsize, "%s/generated.tsv", dir);
    f = fopen(out, "w");
    assert_non_null(f);
    for (int i = 0; i < 20000; i++)
        fprintf(f, "client-%04x\t-\t%d\tGET\t/page/%d.html\t200\t%d\n", (i * 7919) % 2365,
                807235200 + i, i % 97, 1000 + i);
    fclose(f);
    fprintf(stderr, "NASA dataset not found; using %s\n", out);
}

static void load_expected(const char *path, struct expected *e)
{
    size_t len;
    char *text = it_read_file(path, &len);
    assert_non_null(text);

    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr, sizeof(errstr));
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "nasa", NULL);

    size_t cap = 1024;
    e->lines = malloc(cap * sizeof(char *));
    e->keys = malloc(cap * sizeof(char *));
    e->partition = malloc(cap * sizeof(int32_t));
    e->count = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (e->count == cap) {
            cap *= 2;
            e->lines = realloc(e->lines, cap * sizeof(char *));
            e->keys = realloc(e->keys, cap * sizeof(char *));
            e->partition = realloc(e->partition, cap * sizeof(int32_t));
        }
        size_t key_len = strcspn(line, "\t");
        e->lines[e->count] = strdup(line);
        e->keys[e->count] = strndup(line, key_len);
        e->partition[e->count] = rd_kafka_msg_partitioner_murmur2(rkt, line, key_len, PARTITIONS,
                                                                  NULL, NULL);
        e->count++;
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(text);
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
    fprintf(stderr, "region %s: %zu records, %zu input lines\n", region, recs->count, e->count);
    assert_int_equal(recs->count, e->count);
    qsort(recs->items, recs->count, sizeof(*recs->items), by_partition_offset);

    size_t pos = 0;
    for (int32_t p = 0; p < PARTITIONS; p++) {
        uint64_t last_seq = 0;
        for (size_t i = 0; i < e->count; i++) {
            if (e->partition[i] != p)
                continue;
            assert_true(pos < recs->count);
            const struct it_record *r = &recs->items[pos++];
            assert_int_equal(r->partition, p);
            assert_string_equal(r->value, e->lines[i]);
            assert_non_null(r->key);
            assert_string_equal(r->key, e->keys[i]);
            assert_non_null(r->id);
            assert_true(strncmp(r->id, "it-dual:", 8) == 0);
            assert_true(id_seq(r->id) > last_seq);
            last_seq = id_seq(r->id);
            assert_non_null(r->origin);
            assert_string_equal(r->origin, "east");
            assert_true(r->has_ts);
            assert_true(r->ts_matches);
        }
    }
    assert_int_equal(pos, recs->count);
}

static void dataset_lands_in_both_regions(void **state)
{
    (void)state;
    static const char *const embedded[2] = {"east", "west"};
    struct it_agent agent;
    struct expected e;
    char input[512];
    char out[600], err[600];

    it_agent_start(&agent, "dual", CONFIG, embedded);
    input_path(agent.dir, input, sizeof(input));
    load_expected(input, &e);
    assert_true(e.count > 0);

    snprintf(out, sizeof(out), "%s/produce.out", agent.dir);
    snprintf(err, sizeof(err), "%s/produce.err", agent.dir);
    char *argv[] = {TL_CLI_BIN, "produce", "--agent", agent.socket, "--topic", "nasa",
                    "--key-field", "1", "--file", input, NULL};
    int rc = it_run(argv, out, err, 300);
    if (rc != 0) {
        char *text = it_read_file(err, NULL);
        fprintf(stderr, "twinlane produce exited %d:\n%s\n", rc, text ? text : "");
        free(text);
        it_agent_dump_log(&agent);
    }
    assert_int_equal(rc, 0);

    struct it_records east, west;
    it_consume(agent.bootstrap[0], "nasa", &east);
    it_consume(agent.bootstrap[1], "nasa", &west);
    check_region("east", &east, &e);
    check_region("west", &west, &e);

    /* Same event at the same position in both regions. */
    for (size_t i = 0; i < east.count; i++) {
        assert_int_equal(east.items[i].partition, west.items[i].partition);
        assert_string_equal(east.items[i].id, west.items[i].id);
    }

    assert_int_equal(it_agent_stop(&agent), 0);
    it_records_free(&east);
    it_records_free(&west);
    for (size_t i = 0; i < e.count; i++) {
        free(e.lines[i]);
        free(e.keys[i]);
    }
    free(e.lines);
    free(e.keys);
    free(e.partition);
}

int main(void)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dataset_lands_in_both_regions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
