/*
 * Integration test of `twinlane offsets translate` and `twinlane heartbeats tail` against two
 * librdkafka mock clusters started in this process, with no agent running.
 *
 * The test plays the part of two agents. It writes the same events to both regions, in the
 * same partitions and order, with twinlane-id headers. West contains 5 unrelated records at the
 * start of each partition, so an event at offset k in east is at offset k + 5 in west. It then
 * writes hand-built Heartbeat messages with positions for both regions into both heartbeat
 * topics, and a record that is not a heartbeat into west's.
 *
 * Partitions, committed offsets in east, and the offset the rule gives in west:
 *   events [0]  agent-a:100..109          committed 6: agent-a's east position below 6 is
 *               offset 3 (seq 103), in west at 8, so 9 ("mapped")
 *   events [1]  agent-a and agent-b       committed 7: agent-a gives 11 + 1 = 12 (seq 203),
 *               interleaved               agent-b gives 8 + 1 = 9 (seq 2); the minimum is 9
 *   events [2]  agent-a:300..304          committed 2: the only east position is offset 3,
 *                                         not below 2, so west's log start 0
 *   audit [0]   agent-a:400..402          committed 3: a heartbeat claims west offset 99,
 *                                         beyond the high watermark 8, so "clamped" to 8
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
#include <librdkafka/rdkafka_mock.h>

#include "support.h"
#include "twinlane.pb-c.h"

#define GROUP "orders-consumer"
#define HEARTBEAT_TOPIC "twinlane.heartbeats"
#define WEST_FILLER 5
#define EAST 0
#define WEST 1

static const char *const REGION_NAMES[2] = {"east", "west"};

struct region {
    rd_kafka_t *owner;
    rd_kafka_mock_cluster_t *mock;
    char bootstrap[512];
};

static struct region regions[2];
static char dir[256];

/* Events of partition 1, in write order. The index is the offset in east. */
static const char *const EVENTS_P1[] = {
    "agent-a:200", "agent-b:1", "agent-a:201", "agent-b:2", "agent-a:202",
    "agent-b:3",   "agent-a:203", "agent-b:4", "agent-a:204", "agent-a:205",
};

/* One heartbeat position: the event with seq is at offset east in east and west in west. */
struct position {
    const char *topic;
    int32_t partition;
    int64_t east;
    int64_t west;
    uint64_t seq;
};

static const struct position AGENT_A_1[] = {
    {"events", 0, 3, 8, 103},
    {"events", 1, 2, 7, 201},
    {"events", 2, 3, 8, 303},
    {"audit", 0, 1, 99, 401}, /* west offset deliberately beyond the log */
};
static const struct position AGENT_A_2[] = {
    {"events", 0, 7, 12, 107},
    {"events", 1, 6, 11, 203},
    {"events", 2, 3, 8, 303},
    {"audit", 0, 1, 99, 401},
};
static const struct position AGENT_B_1[] = {{"events", 1, 3, 8, 2}};
static const struct position AGENT_B_2[] = {{"events", 1, 7, 12, 4}};

struct heartbeat {
    const char *agent;
    uint64_t number;
    const struct position *positions;
    size_t count;
};

/* In the order they are written to each heartbeat topic. */
static const struct heartbeat HEARTBEATS[] = {
    {"agent-a", 1, AGENT_A_1, 4},
    {"agent-b", 1, AGENT_B_1, 1},
    {"agent-a", 2, AGENT_A_2, 4},
    {"agent-b", 2, AGENT_B_2, 1},
};

struct expected {
    const char *topic;
    int32_t partition;
    int64_t committed;
    int64_t offset;
    const char *method;
    const char *agent; /* NULL: no seq expected */
    uint64_t seq;
};

static const struct expected EXPECTED[] = {
    {"audit", 0, 3, 8, "clamped", "agent-a", 401},
    {"events", 0, 6, 9, "mapped", "agent-a", 103},
    {"events", 1, 7, 9, "mapped", "agent-b", 2},
    {"events", 2, 2, 0, "log_start", NULL, 0},
};
#define EXPECTED_COUNT (sizeof EXPECTED / sizeof EXPECTED[0])

/* ---- setting up the regions ---- */

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *bootstrap, const char *group)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    if (group) {
        rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk)
        fail_msg("creating a client for %s failed: %s", bootstrap, errstr);
    return rk;
}

static void produce(rd_kafka_t *rk, const char *topic, int32_t partition, const void *value,
                    size_t len, const char *id)
{
    rd_kafka_resp_err_t err;
    if (id)
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_VALUE((void *)value, len),
                                RD_KAFKA_V_HEADER("twinlane-id", id, -1),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    else
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_VALUE((void *)value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err)
        fail_msg("producing to %s [%d] failed: %s", topic, (int)partition, rd_kafka_err2str(err));
    /* One record at a time keeps the order of the table, whatever the retries. */
    if (rd_kafka_flush(rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail_msg("flushing to %s [%d] timed out", topic, (int)partition);
}

static void produce_event(rd_kafka_t *rk, const char *topic, int32_t partition, const char *id)
{
    char value[128];
    snprintf(value, sizeof value, "event %s", id);
    produce(rk, topic, partition, value, strlen(value), id);
}

static void produce_events(int region)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, regions[region].bootstrap, NULL);

    if (region == WEST) {
        const char *topics[] = {"events", "events", "events", "audit"};
        const int32_t partitions[] = {0, 1, 2, 0};
        for (size_t t = 0; t < 4; t++) {
            for (int i = 0; i < WEST_FILLER; i++)
                produce(rk, topics[t], partitions[t], "unrelated", 9, NULL);
        }
    }

    char id[64];
    for (int k = 0; k < 10; k++) {
        snprintf(id, sizeof id, "agent-a:%d", 100 + k);
        produce_event(rk, "events", 0, id);
    }
    for (size_t k = 0; k < sizeof EVENTS_P1 / sizeof EVENTS_P1[0]; k++)
        produce_event(rk, "events", 1, EVENTS_P1[k]);
    for (int k = 0; k < 5; k++) {
        snprintf(id, sizeof id, "agent-a:%d", 300 + k);
        produce_event(rk, "events", 2, id);
    }
    for (int k = 0; k < 3; k++) {
        snprintf(id, sizeof id, "agent-a:%d", 400 + k);
        produce_event(rk, "audit", 0, id);
    }
    rd_kafka_destroy(rk);
}

/* Packs one heartbeat as the copy written to region written_to. Returns a malloc'd buffer. */
static uint8_t *pack_heartbeat(const struct heartbeat *h, int written_to, size_t *len)
{
    Twinlane__PartitionPosition positions[2][8];
    Twinlane__PartitionPosition *position_ptrs[2][8];
    Twinlane__RegionStatus statuses[2];
    Twinlane__RegionStatus *status_ptrs[2];
    assert_true(h->count <= 8);

    for (int r = 0; r < 2; r++) {
        for (size_t i = 0; i < h->count; i++) {
            const struct position *p = &h->positions[i];
            positions[r][i] = (Twinlane__PartitionPosition)TWINLANE__PARTITION_POSITION__INIT;
            positions[r][i].topic = (char *)p->topic;
            positions[r][i].partition = p->partition;
            positions[r][i].offset = r == EAST ? p->east : p->west;
            positions[r][i].seq = p->seq;
            position_ptrs[r][i] = &positions[r][i];
        }
        statuses[r] = (Twinlane__RegionStatus)TWINLANE__REGION_STATUS__INIT;
        statuses[r].name = (char *)REGION_NAMES[r];
        statuses[r].breaker_state = "closed";
        statuses[r].cursor = 1000;
        statuses[r].backlog = 0;
        statuses[r].n_positions = h->count;
        statuses[r].positions = position_ptrs[r];
        status_ptrs[r] = &statuses[r];
    }

    Twinlane__Heartbeat hb = TWINLANE__HEARTBEAT__INIT;
    hb.agent_id = (char *)h->agent;
    hb.home_region = "east";
    hb.heartbeat_seq = h->number;
    hb.timestamp_ms = 1767225600000LL + (int64_t)h->number * 1000;
    hb.wal_next_seq = 1000;
    hb.written_to = (char *)REGION_NAMES[written_to];
    hb.n_regions = 2;
    hb.regions = status_ptrs;

    *len = twinlane__heartbeat__get_packed_size(&hb);
    uint8_t *buf = malloc(*len);
    twinlane__heartbeat__pack(&hb, buf);
    return buf;
}

static void produce_heartbeats(int region)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, regions[region].bootstrap, NULL);

    /* West's topic starts with a record that is not a Heartbeat message. */
    if (region == WEST)
        produce(rk, HEARTBEAT_TOPIC, 0, "\xff\xff not a heartbeat", 18, NULL);

    for (size_t i = 0; i < sizeof HEARTBEATS / sizeof HEARTBEATS[0]; i++) {
        size_t len;
        uint8_t *buf = pack_heartbeat(&HEARTBEATS[i], region, &len);
        produce(rk, HEARTBEAT_TOPIC, 0, buf, len, NULL);
        free(buf);
    }
    rd_kafka_destroy(rk);
}

/* Commits offsets for GROUP in region from a consumer that never joins the group. */
static void commit_offsets(int region, const struct expected *rows, size_t count)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, regions[region].bootstrap, GROUP);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < count; i++)
        rd_kafka_topic_partition_list_add(list, rows[i].topic, rows[i].partition)->offset =
            rows[i].committed;

    rd_kafka_resp_err_t err = rd_kafka_commit(rk, list, 0);
    if (err)
        fail_msg("committing in %s failed: %s", REGION_NAMES[region], rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static int setup_regions(void **state)
{
    (void)state;
    char errstr[256];

    it_make_dir("offsets", dir, sizeof dir);
    for (int r = 0; r < 2; r++) {
        regions[r].owner = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr,
                                        sizeof errstr);
        assert_non_null(regions[r].owner);
        regions[r].mock = rd_kafka_mock_cluster_new(regions[r].owner, 1);
        assert_non_null(regions[r].mock);
        snprintf(regions[r].bootstrap, sizeof regions[r].bootstrap, "%s",
                 rd_kafka_mock_cluster_bootstraps(regions[r].mock));
        assert_int_equal(rd_kafka_mock_topic_create(regions[r].mock, "events", 3, 1), 0);
        assert_int_equal(rd_kafka_mock_topic_create(regions[r].mock, "audit", 1, 1), 0);
        assert_int_equal(rd_kafka_mock_topic_create(regions[r].mock, HEARTBEAT_TOPIC, 1, 1), 0);

        produce_events(r);
        produce_heartbeats(r);
    }
    commit_offsets(EAST, EXPECTED, EXPECTED_COUNT);
    return 0;
}

static int teardown_regions(void **state)
{
    (void)state;
    for (int r = 0; r < 2; r++) {
        rd_kafka_mock_cluster_destroy(regions[r].mock);
        rd_kafka_destroy(regions[r].owner);
    }
    return 0;
}

/* ---- running the command ---- */

struct run_result {
    int status;
    char out[400];
    char err[400];
};

/* Runs `twinlane offsets translate` east -> west with extra arguments, NULL-terminated. */
static void run_translate(struct run_result *result, const char *name, ...)
{
    char *argv[32] = {
        TL_CLI_BIN, "offsets", "translate", "--group", GROUP, "--from", "east", "--to", "west",
        "--from-bootstrap", regions[EAST].bootstrap, "--to-bootstrap", regions[WEST].bootstrap,
        "--topic", "events", "--topic", "audit",
    };
    size_t argc = 17;
    va_list ap;
    va_start(ap, name);
    for (const char *arg = va_arg(ap, const char *); arg; arg = va_arg(ap, const char *))
        argv[argc++] = (char *)arg;
    va_end(ap);
    argv[argc] = NULL;

    snprintf(result->out, sizeof result->out, "%s/%s.out", dir, name);
    snprintf(result->err, sizeof result->err, "%s/%s.err", dir, name);
    result->status = it_run(argv, result->out, result->err, 120);
}

static void dump_file(const char *path)
{
    char *text = it_read_file(path, NULL);
    fprintf(stderr, "---- %s ----\n%s\n", path, text ? text : "(unreadable)");
    free(text);
}

static bool file_contains(const char *path, const char *needle)
{
    char *text = it_read_file(path, NULL);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

static json_t *load_json(const char *path)
{
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root) {
        dump_file(path);
        fail_msg("%s is not JSON: %s", path, error.text);
    }
    return root;
}

static const json_t *find_partition(const json_t *root, const char *topic, int32_t partition)
{
    const json_t *partitions = json_object_get(root, "partitions");
    size_t i;
    const json_t *row;
    json_array_foreach(partitions, i, row) {
        if (strcmp(json_string_value(json_object_get(row, "topic")), topic) == 0 &&
            json_integer_value(json_object_get(row, "partition")) == partition)
            return row;
    }
    fail_msg("no row for %s [%d] in the output", topic, (int)partition);
    return NULL;
}

/* ---- translate ---- */

static void translate_json_gives_expected_offsets(void **state)
{
    (void)state;
    struct run_result run;
    run_translate(&run, "translate-json", "--json", NULL);
    if (run.status != 0)
        dump_file(run.err);
    assert_int_equal(run.status, 0);

    json_t *root = load_json(run.out);
    assert_int_equal(json_integer_value(json_object_get(root, "heartbeats")), 4);
    assert_int_equal(json_integer_value(json_object_get(root, "skipped_records")), 1);
    assert_int_equal(json_array_size(json_object_get(root, "partitions")), EXPECTED_COUNT);
    for (size_t i = 0; i < EXPECTED_COUNT; i++) {
        const struct expected *e = &EXPECTED[i];
        const json_t *row = find_partition(root, e->topic, e->partition);
        assert_int_equal(json_integer_value(json_object_get(row, "committed")), e->committed);
        assert_int_equal(json_integer_value(json_object_get(row, "offset")), e->offset);
        assert_string_equal(json_string_value(json_object_get(row, "method")), e->method);
        if (e->agent) {
            assert_string_equal(json_string_value(json_object_get(row, "agent")), e->agent);
            assert_int_equal(json_integer_value(json_object_get(row, "seq")), e->seq);
        } else {
            assert_true(json_is_null(json_object_get(row, "seq")));
        }
    }
    json_decref(root);
    assert_true(file_contains(run.err, "partition 0 offset 0"));
}

static int64_t west_offset_of(const struct it_records *west, const char *id)
{
    for (size_t i = 0; i < west->count; i++) {
        if (west->items[i].id && strcmp(west->items[i].id, id) == 0)
            return west->items[i].offset;
    }
    fail_msg("event %s is missing in west", id);
    return -1;
}

static const struct expected *expected_for(const char *topic, int32_t partition)
{
    for (size_t i = 0; i < EXPECTED_COUNT; i++) {
        if (strcmp(EXPECTED[i].topic, topic) == 0 && EXPECTED[i].partition == partition)
            return &EXPECTED[i];
    }
    fail_msg("no expectation for %s [%d]", topic, (int)partition);
    return NULL;
}

/*
 * Reads both regions back: every event the group has not consumed in east (offset at or after
 * the committed one) must be at or after the translated offset in west.
 */
static void translated_offsets_skip_no_event(void **state)
{
    (void)state;
    const char *topics[] = {"events", "audit"};
    for (size_t t = 0; t < 2; t++) {
        struct it_records east, west;
        it_consume(regions[EAST].bootstrap, topics[t], &east);
        it_consume(regions[WEST].bootstrap, topics[t], &west);
        size_t unconsumed = 0;

        for (size_t i = 0; i < east.count; i++) {
            const struct it_record *r = &east.items[i];
            assert_non_null(r->id);
            const struct expected *e = expected_for(topics[t], r->partition);
            int64_t in_west = west_offset_of(&west, r->id);
            /* The table of the file header relies on this layout. */
            assert_int_equal(in_west, r->offset + WEST_FILLER);
            if (r->offset < e->committed)
                continue;
            unconsumed++;
            if (in_west < e->offset)
                fail_msg("%s [%d]: event %s (east offset %lld) is at west offset %lld, before "
                         "the translated offset %lld", topics[t], (int)r->partition, r->id,
                         (long long)r->offset, (long long)in_west, (long long)e->offset);
        }
        if (strcmp(topics[t], "events") == 0)
            assert_int_equal(unconsumed, (10 - 6) + (10 - 7) + (5 - 2));
        it_records_free(&east);
        it_records_free(&west);
    }
}

static void translate_table_names_methods(void **state)
{
    (void)state;
    struct run_result run;
    run_translate(&run, "translate-table", NULL);
    if (run.status != 0)
        dump_file(run.err);
    assert_int_equal(run.status, 0);
    assert_true(file_contains(run.out, "agent-b:2"));
    assert_true(file_contains(run.out, "mapped"));
    assert_true(file_contains(run.out, "clamped"));
    assert_true(file_contains(run.out, "no heartbeat: log start"));
}

/* ---- apply ---- */

static void apply_without_yes_rejected(void **state)
{
    (void)state;
    struct run_result run;
    run_translate(&run, "apply-no-yes", "--apply", NULL);
    assert_int_equal(run.status, 2);
    assert_true(file_contains(run.err, "pass --yes"));
}

static void read_committed_in_west(rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, regions[WEST].bootstrap, GROUP);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, list, 10000);
    if (err)
        fail_msg("reading committed offsets in west failed: %s", rd_kafka_err2str(err));
    rd_kafka_destroy(rk);
}

static void apply_commits_in_target(void **state)
{
    (void)state;
    struct run_result run;
    run_translate(&run, "apply", "--apply", "--yes", "--json", NULL);
    if (run.status != 0)
        dump_file(run.err);
    assert_int_equal(run.status, 0);

    json_t *root = load_json(run.out);
    assert_true(json_is_true(json_object_get(root, "applied")));
    json_decref(root);

    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < EXPECTED_COUNT; i++)
        rd_kafka_topic_partition_list_add(list, EXPECTED[i].topic, EXPECTED[i].partition);
    read_committed_in_west(list);
    for (size_t i = 0; i < EXPECTED_COUNT; i++) {
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(list, EXPECTED[i].topic, EXPECTED[i].partition);
        assert_int_equal(tp->err, RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(tp->offset, EXPECTED[i].offset);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* A member of GROUP in west makes --apply exit 4 and leaves the committed offsets alone. */
static void apply_rejected_while_group_active(void **state)
{
    (void)state;
    rd_kafka_t *member = new_client(RD_KAFKA_CONSUMER, regions[WEST].bootstrap, GROUP);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, "events", RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(member, topics), 0);
    rd_kafka_topic_partition_list_destroy(topics);

    /* Wait until the member has an assignment, so the group is Stable. */
    rd_kafka_topic_partition_list_t *assignment = NULL;
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(member, 100);
        if (msg)
            rd_kafka_message_destroy(msg);
        rd_kafka_assignment(member, &assignment);
        if (assignment->cnt > 0)
            break;
        rd_kafka_topic_partition_list_destroy(assignment);
        assignment = NULL;
    }
    assert_non_null(assignment);
    rd_kafka_topic_partition_list_destroy(assignment);

    struct run_result run;
    run_translate(&run, "apply-active", "--apply", "--yes", NULL);
    if (run.status != 4)
        dump_file(run.err);
    assert_int_equal(run.status, 4);
    assert_true(file_contains(run.err, "active"));

    rd_kafka_consumer_close(member);
    rd_kafka_destroy(member);
}

/* The offsets that apply_commits_in_target wrote are still there. */
static void rejected_apply_keeps_offsets(void **state)
{
    (void)state;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, "events", 1);
    read_committed_in_west(list);
    assert_int_equal(list->elems[0].offset, 9);
    rd_kafka_topic_partition_list_destroy(list);
}

/* --config supplies both regions' bootstrap servers in place of the two options. */
static void translate_reads_regions_from_config(void **state)
{
    (void)state;
    char config[400], out[400], err[400];
    snprintf(config, sizeof config, "%s/agent.conf", dir);
    snprintf(out, sizeof out, "%s/translate-config.out", dir);
    snprintf(err, sizeof err, "%s/translate-config.err", dir);
    FILE *f = fopen(config, "w");
    assert_non_null(f);
    fprintf(f,
            "agent = { id = \"it-offsets\"; home_region = \"east\"; data_dir = \"%s/data\"; };\n"
            "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
            "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
            "topics = ( { name = \"events\"; partitions = 3; } );\n",
            dir, regions[EAST].bootstrap, regions[WEST].bootstrap);
    fclose(f);

    char *argv[] = {TL_CLI_BIN, "offsets", "translate", "--config", config, "--group", GROUP,
                    "--from", "east", "--to", "west", "--topic", "events", "--json", NULL};
    int status = it_run(argv, out, err, 120);
    if (status != 0)
        dump_file(err);
    assert_int_equal(status, 0);

    json_t *root = load_json(out);
    assert_int_equal(json_array_size(json_object_get(root, "partitions")), 3);
    const json_t *row = find_partition(root, "events", 1);
    assert_int_equal(json_integer_value(json_object_get(row, "offset")), 9);
    json_decref(root);
}

/* ---- heartbeats tail ---- */

struct tail_run {
    int status;
    char out[400];
    char err[400];
};

static void run_tail(struct tail_run *run, const char *name, const char *agent)
{
    char *argv[] = {
        TL_CLI_BIN, "heartbeats", "tail", "--region", "west", "--bootstrap",
        regions[WEST].bootstrap, "--from-beginning", "--count", "2", "--json",
        agent ? "--agent" : NULL, (char *)agent, NULL,
    };
    snprintf(run->out, sizeof run->out, "%s/%s.out", dir, name);
    snprintf(run->err, sizeof run->err, "%s/%s.err", dir, name);
    run->status = it_run(argv, run->out, run->err, 60);
}

/* Parses each line of the file as a JSON object. Returns how many were read. */
static size_t load_json_lines(const char *path, json_t **out, size_t max)
{
    char *text = it_read_file(path, NULL);
    assert_non_null(text);
    size_t count = 0;
    for (char *line = strtok(text, "\n"); line && count < max; line = strtok(NULL, "\n")) {
        json_error_t error;
        out[count] = json_loads(line, 0, &error);
        if (!out[count])
            fail_msg("line %zu of %s is not JSON: %s", count + 1, path, error.text);
        count++;
    }
    free(text);
    return count;
}

static void tail_decodes_heartbeats_as_json(void **state)
{
    (void)state;
    struct tail_run run;
    run_tail(&run, "tail", NULL);
    if (run.status != 0)
        dump_file(run.err);
    assert_int_equal(run.status, 0);

    json_t *lines[4];
    assert_int_equal(load_json_lines(run.out, lines, 4), 2);
    assert_string_equal(json_string_value(json_object_get(lines[0], "agent_id")), "agent-a");
    assert_int_equal(json_integer_value(json_object_get(lines[0], "heartbeat_seq")), 1);
    assert_string_equal(json_string_value(json_object_get(lines[0], "written_to")), "west");
    assert_int_equal(json_integer_value(json_object_get(lines[0], "offset")), 1);

    const json_t *hb_regions = json_object_get(lines[0], "regions");
    assert_int_equal(json_array_size(hb_regions), 2);
    const json_t *west = json_array_get(hb_regions, 1);
    assert_string_equal(json_string_value(json_object_get(west, "name")), "west");
    assert_string_equal(json_string_value(json_object_get(west, "breaker_state")), "closed");
    const json_t *positions = json_object_get(west, "positions");
    assert_int_equal(json_array_size(positions), 4);
    const json_t *first = json_array_get(positions, 0);
    assert_string_equal(json_string_value(json_object_get(first, "topic")), "events");
    assert_int_equal(json_integer_value(json_object_get(first, "offset")), 8);
    assert_int_equal(json_integer_value(json_object_get(first, "seq")), 103);

    assert_string_equal(json_string_value(json_object_get(lines[1], "agent_id")), "agent-b");
    json_decref(lines[0]);
    json_decref(lines[1]);
}

static void tail_reports_and_skips_garbage(void **state)
{
    (void)state;
    struct tail_run run;
    run_tail(&run, "tail-garbage", NULL);
    assert_int_equal(run.status, 0);
    assert_true(file_contains(run.err, "partition 0 offset 0"));
    assert_true(file_contains(run.err, "skipped"));
}

static void tail_prints_text_blocks(void **state)
{
    (void)state;
    char out[400], err[400];
    snprintf(out, sizeof out, "%s/tail-text.out", dir);
    snprintf(err, sizeof err, "%s/tail-text.err", dir);
    char *argv[] = {TL_CLI_BIN, "heartbeats", "tail", "--region", "west", "--bootstrap",
                    regions[WEST].bootstrap, "--from-beginning", "--count", "1", NULL};
    assert_int_equal(it_run(argv, out, err, 60), 0);
    assert_true(file_contains(out, "agent agent-a (home east) heartbeat 1 at "
                                   "2026-01-01T00:00:01.000Z, written to west, wal head 1000"));
    assert_true(file_contains(out, "breaker closed"));
    assert_true(file_contains(out, "positions 4"));
}

static void tail_filters_by_agent(void **state)
{
    (void)state;
    struct tail_run run;
    run_tail(&run, "tail-agent", "agent-b");
    assert_int_equal(run.status, 0);

    json_t *lines[4];
    assert_int_equal(load_json_lines(run.out, lines, 4), 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(json_string_value(json_object_get(lines[i], "agent_id")), "agent-b");
        assert_int_equal(json_integer_value(json_object_get(lines[i], "heartbeat_seq")), i + 1);
        json_decref(lines[i]);
    }
}

int main(void)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(translate_json_gives_expected_offsets),
        cmocka_unit_test(translated_offsets_skip_no_event),
        cmocka_unit_test(translate_table_names_methods),
        cmocka_unit_test(apply_without_yes_rejected),
        cmocka_unit_test(apply_commits_in_target),
        cmocka_unit_test(apply_rejected_while_group_active),
        cmocka_unit_test(rejected_apply_keeps_offsets),
        cmocka_unit_test(translate_reads_regions_from_config),
        cmocka_unit_test(tail_decodes_heartbeats_as_json),
        cmocka_unit_test(tail_reports_and_skips_garbage),
        cmocka_unit_test(tail_prints_text_blocks),
        cmocka_unit_test(tail_filters_by_agent),
    };
    return cmocka_run_group_tests(tests, setup_regions, teardown_regions);
}
