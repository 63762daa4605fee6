/*
 * Crash loop: no acknowledged event is lost when the agent is killed with SIGKILL again and
 * again while events stream.
 *
 * The two regions run in twinlane-mock-cluster processes, so they outlive the agent. The test
 * streams an access log through the client library (include/twinlane/client.h), keyed by the
 * first column, with agent.ack = "all" and wal.fsync = "always". Every 100 to 400 ms it kills
 * the agent, restarts it on the same data directory and configuration, and sends again every
 * line whose result was not OK (CONNECTION_LOST, RETRYABLE or FAILED), until every line has
 * been acknowledged once. New lines are released in MIN_KILLS + 1 slices, one per kill
 * interval, so that the stream spans at least MIN_KILLS kills.
 *
 * Every LONG_LIFE_EVERY-th interval lasts 1100 to 1400 ms instead. The agent persists its
 * region cursors about once a second, so an agent that never lives that long replays its
 * whole WAL to both regions after every restart. Those replays would grow past what
 * librdkafka's mock cluster keeps per partition (5 MiB or 100,000 records in librdkafka 2.14;
 * it then deletes the oldest records), and the check below would see a truncated log. The
 * test checks that no partition lost its start before it reads the regions.
 *
 * It then stops the agent cleanly, reads both regions back and checks:
 *   - every acknowledged line is in both regions, in the partition that Kafka's murmur2 gives
 *     for its key (computed with librdkafka, independently of the agent);
 *   - the twinlane-id of every OK result names a record with that line as its value, in both
 *     regions, and no twinlane-id is ever used for two different values;
 *   - per connection and partition, the first occurrences of the lines acknowledged on that
 *     connection appear in the order of their sequence numbers. Connections that saw a
 *     RETRYABLE or FAILED result are left out, because their resends break the send order.
 * Duplicates are expected, because lines stored but not acknowledged are sent again and a
 * restarted agent replays its WAL. The test counts and prints them but does not fail on them.
 *
 * Data: $TWINLANE_NASA_TSV, else the NASA-HTTP access log of 1995-08-01 at the path the build
 * sets in TL_NASA_TSV, else 20,000 generated lines of the same shape. The random kill
 * intervals come from $TWINLANE_CRASH_SEED when set, else from the clock; the seed is printed.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include <twinlane/client.h>

#include "support.h"

#define TOPIC "nasa"
#define PARTITIONS 6
#define AGENT_ID "it-crash"
/* The agent's default heartbeat.topic, which must exist in both regions. */
#define HEARTBEAT_TOPIC "twinlane.heartbeats"
#define MIN_KILLS 20
/* Kills stop here even if lines are still unacknowledged, so the run always ends. */
#define MAX_KILLS 40
#define KILL_INTERVAL_MIN_MS 100
#define KILL_INTERVAL_MAX_MS 400
#define LONG_LIFE_EVERY 4
#define LONG_LIFE_MIN_MS 1100
#define LONG_LIFE_MAX_MS 1400
#define BATCH_EVENTS 200
#define MAX_INFLIGHT 4000
/* Whole-run limit for streaming, well under the ctest timeout of 600 s. */
#define STREAM_TIMEOUT_MS 240000

static const char *const CONFIG_FORMAT =
    "agent = { id = \"" AGENT_ID "\"; home_region = \"east\"; data_dir = \"@DIR@/data\";\n"
    "          ack = \"all\"; shutdown_timeout_ms = 30000; };\n"
    "wal = { fsync = \"always\"; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"%s\";\n"
    "              properties = [ \"reconnect.backoff.max.ms=1000\" ]; },\n"
    "            { name = \"west\"; bootstrap = \"%s\";\n"
    "              properties = [ \"reconnect.backoff.max.ms=1000\" ]; } );\n"
    "topics = ( { name = \"" TOPIC "\"; partitions = %d; } );\n";

struct line {
    char *value;
    size_t len;
    size_t key_len;     /* the key is the value's first key_len bytes (column 1) */
    int32_t partition;  /* murmur2 of the key, as librdkafka computes it */
    size_t first;       /* index of the first line with the same value */
    size_t copies;      /* lines with this value; set on the first of them */
};

/* State of the producer side, shared with the result callback. */
struct run {
    struct line *lines;
    size_t count;
    size_t *by_value;        /* open-addressing hash table of line indices, keyed by value */
    size_t by_value_cap;

    bool *acked;
    uint64_t *ack_seq;       /* sequence number from the OK result (twinlane-id) */
    uint32_t *ack_conn;      /* connection that received the OK */
    size_t acked_count;

    size_t *resend;          /* lines waiting to be sent again */
    size_t resend_count;
    bool resend_sorted;      /* resend[] is sorted in descending line order */
    size_t next_new;         /* first line never sent */

    uint32_t conn;           /* number of the current connection, from 0 */
    bool conn_clean[MAX_KILLS + 1]; /* no RETRYABLE or FAILED result on that connection */

    uint64_t sent, lost, retryable, failed;
};

/* Processes to end when the test fails or exits early, so none outlives it. */
static struct it_agent test_agent;
static struct it_mock test_mocks[2];

static void stop_processes(void)
{
    if (test_agent.pid > 0)
        it_agent_kill(&test_agent);
    for (int r = 0; r < 2; r++)
        it_mock_stop(&test_mocks[r]);
}

static int teardown(void **state)
{
    (void)state;
    stop_processes();
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: a small PRNG whose sequence is fixed by the printed seed. */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

/* Draws the time until the next kill; see LONG_LIFE_EVERY. */
static int64_t next_interval(uint64_t *rng, uint32_t kills)
{
    bool long_life = kills % LONG_LIFE_EVERY == LONG_LIFE_EVERY - 1;
    int64_t min = long_life ? LONG_LIFE_MIN_MS : KILL_INTERVAL_MIN_MS;
    int64_t max = long_life ? LONG_LIFE_MAX_MS : KILL_INTERVAL_MAX_MS;
    return min + (int64_t)(next_random(rng) % (uint64_t)(max - min + 1));
}

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Returns the index of the first line whose value is value, or SIZE_MAX. */
static size_t find_value(const struct run *run, const char *value, size_t len)
{
    size_t mask = run->by_value_cap - 1;
    for (size_t h = fnv1a(value, len) & mask;; h = (h + 1) & mask) {
        size_t i = run->by_value[h];
        if (i == SIZE_MAX)
            return SIZE_MAX;
        if (run->lines[i].len == len && memcmp(run->lines[i].value, value, len) == 0)
            return i;
    }
}

static void index_values(struct run *run)
{
    run->by_value_cap = 1;
    while (run->by_value_cap < run->count * 2)
        run->by_value_cap *= 2;
    run->by_value = malloc(run->by_value_cap * sizeof(size_t));
    memset(run->by_value, 0xff, run->by_value_cap * sizeof(size_t));

    size_t mask = run->by_value_cap - 1;
    for (size_t i = 0; i < run->count; i++) {
        struct line *l = &run->lines[i];
        size_t first = find_value(run, l->value, l->len);
        if (first != SIZE_MAX) {
            l->first = first;
            run->lines[first].copies++;
            continue;
        }
        l->first = i;
        l->copies = 1;
        size_t h = fnv1a(l->value, l->len) & mask;
        while (run->by_value[h] != SIZE_MAX)
            h = (h + 1) & mask;
        run->by_value[h] = i;
    }
}

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

    if (snprintf(out, outsize, "%s/generated.tsv", dir) >= (int)outsize)
        fail_msg("path of the generated input under %s is too long", dir);
    f = fopen(out, "w");
    assert_non_null(f);
    for (int i = 0; i < 20000; i++)
        fprintf(f, "client-%04x\t-\t%d\tGET\t/page/%d.html\t200\t%d\n", (i * 7919) % 2365,
                807235200 + i, i % 97, 1000 + i);
    fclose(f);
    fprintf(stderr, "NASA dataset not found; using %s\n", out);
}

/* Loads every non-empty line and its expected partition. */
static void load_lines(const char *path, struct run *run)
{
    char *text = it_read_file(path, NULL);
    if (!text)
        fail_msg("cannot read the input file %s", path);

    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, TOPIC, NULL);

    size_t cap = 1024;
    run->lines = malloc(cap * sizeof(*run->lines));
    run->count = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (run->count == cap) {
            cap *= 2;
            run->lines = realloc(run->lines, cap * sizeof(*run->lines));
        }
        struct line *l = &run->lines[run->count++];
        *l = (struct line){.value = strdup(line), .len = strlen(line)};
        l->key_len = strcspn(line, "\t");
        l->partition = rd_kafka_msg_partitioner_murmur2(rkt, line, l->key_len, PARTITIONS, NULL,
                                                        NULL);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(text);
    index_values(run);
}

static void queue_resend(struct run *run, size_t i)
{
    run->resend[run->resend_count++] = i;
    run->resend_sorted = false;
}

static void on_result(void *ctx, const struct tl_client_result *r)
{
    struct run *run = ctx;
    size_t i = (size_t)(uintptr_t)r->opaque;

    switch (r->status) {
    case TL_CLIENT_OK:
        if (run->acked[i])
            fail_msg("line %zu was acknowledged twice, the second time with seq %" PRIu64, i,
                     r->seq);
        if (r->partition != run->lines[i].partition)
            fail_msg("line %zu acknowledged in partition %" PRId32 ", murmur2 gives %" PRId32,
                     i, r->partition, run->lines[i].partition);
        run->acked[i] = true;
        run->ack_seq[i] = r->seq;
        run->ack_conn[i] = run->conn;
        run->acked_count++;
        break;
    case TL_CLIENT_CONNECTION_LOST:
        run->lost++;
        queue_resend(run, i);
        break;
    case TL_CLIENT_RETRYABLE:
    case TL_CLIENT_FAILED:
        if (r->status == TL_CLIENT_RETRYABLE)
            run->retryable++;
        else
            run->failed++;
        if (run->retryable + run->failed <= 5)
            fprintf(stderr, "line %zu: %s: %s (sent again)\n", i,
                    tl_client_status_name(r->status), r->message ? r->message : "");
        run->conn_clean[run->conn] = false;
        queue_resend(run, i);
        break;
    default:
        fail_msg("line %zu: unexpected status %s: %s", i, tl_client_status_name(r->status),
                 r->message ? r->message : "(no message)");
    }
}

static int descending(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (x == y)
        return 0;
    return x < y ? 1 : -1;
}

/*
 * Sends one batch: lines waiting to be sent again first, lowest line first, then new lines
 * below new_limit. So each connection sends lines in increasing line order unless a RETRYABLE
 * or FAILED result comes in the middle of it. Returns the number of events sent, 0 when there
 * is nothing to send, or the client's error code.
 */
static int send_batch(struct run *run, struct tl_client *c, size_t new_limit)
{
    struct tl_client_event events[BATCH_EVENTS];
    size_t n = 0;

    if (!run->resend_sorted) {
        qsort(run->resend, run->resend_count, sizeof(size_t), descending);
        run->resend_sorted = true;
    }
    while (n < BATCH_EVENTS && (run->resend_count > 0 || run->next_new < new_limit)) {
        size_t i = run->resend_count > 0 ? run->resend[--run->resend_count] : run->next_new++;
        const struct line *l = &run->lines[i];
        events[n++] = (struct tl_client_event){
            .topic = TOPIC, .key = l->value, .key_len = l->key_len, .has_key = true,
            .value = l->value, .value_len = l->len, .opaque = (void *)(uintptr_t)i};
    }
    if (n == 0)
        return 0;

    char err[256];
    int rc = tl_client_send(c, events, n, NULL, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "tl_client_send failed: %s\n", err);
        for (size_t k = 0; k < n; k++)
            queue_resend(run, (size_t)(uintptr_t)events[k].opaque);
        return rc;
    }
    run->sent += n;
    return (int)n;
}

static struct tl_client *connect_agent(struct run *run, const struct it_agent *agent)
{
    struct tl_client_options opts = {.on_result = on_result, .ctx = run};
    struct tl_client *c = NULL;
    char address[400];
    char err[256];

    snprintf(address, sizeof(address), "unix:%s", agent->socket);
    if (tl_client_connect(address, &opts, &c, err, sizeof(err)) != 0)
        fail_msg("connecting to the agent at %s failed: %s", address, err);
    run->conn_clean[run->conn] = true;
    return c;
}

/* Fails the test when the connection closed although the test did not kill the agent. */
static void fail_connection_closed(struct it_agent *agent, struct tl_client *c)
{
    const char *why = tl_client_last_error(c);
    bool alive = it_agent_alive(agent);
    it_agent_dump_log(agent);
    fail_msg("the connection to the agent closed unexpectedly (%s); the agent is %s", why,
             alive ? "still running" : "no longer running");
}

/* Kills the agent, collects the results of every event in flight, restarts and reconnects. */
static struct tl_client *crash_and_restart(struct run *run, struct it_agent *agent,
                                           struct tl_client *c, int64_t *restart_ms)
{
    it_agent_kill(agent);
    while (tl_client_inflight(c) > 0) {
        if (tl_client_poll(c, 1000) == TL_CLIENT_ECLOSED)
            break;
    }
    tl_client_close(c);

    int64_t start = now_ms();
    it_agent_restart(agent);
    *restart_ms = now_ms() - start;
    run->conn++;
    return connect_agent(run, agent);
}

static int by_partition_offset(const void *a, const void *b)
{
    const struct it_record *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int by_id_value(const void *a, const void *b)
{
    const struct it_record *x = *(const struct it_record *const *)a;
    const struct it_record *y = *(const struct it_record *const *)b;
    int cmp = strcmp(x->id, y->id);
    return cmp != 0 ? cmp : strcmp(x->value, y->value);
}

/* What one region holds, indexed for the checks. */
struct region_view {
    const char *name;
    struct it_records recs;
    struct it_record **sorted_by_id; /* sorted by twinlane-id, then value */
    size_t *occurrences;     /* per first line of a value: records with that value */
    int64_t *first_offset;   /* per first line of a value: offset of its first record */
    size_t duplicates;       /* records beyond the number of input lines with that value */
    size_t replayed;         /* of those, records whose twinlane-id repeats (WAL replays) */
    size_t missing;          /* acknowledged lines not found */
};

/*
 * Writes partition, offset, twinlane-id and line number of every record to dir/NAME.records,
 * for diagnosing a failure by hand.
 */
static void write_region_dump(const struct region_view *v, const struct run *run,
                              const char *dir)
{
    char path[512];
    if (snprintf(path, sizeof(path), "%s/%s.records", dir, v->name) >= (int)sizeof(path))
        fail_msg("path of the record list under %s is too long", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s", path);
    fprintf(f, "partition\toffset\ttwinlane-id\tline\n");
    for (size_t k = 0; k < v->recs.count; k++) {
        const struct it_record *r = &v->recs.items[k];
        size_t i = find_value(run, r->value, r->value_len);
        fprintf(f, "%" PRId32 "\t%" PRId64 "\t%s\t%zd\n", r->partition, r->offset,
                r->id ? r->id : "-", i == SIZE_MAX ? (ssize_t)-1 : (ssize_t)i);
    }
    fclose(f);
    fprintf(stderr, "region %s: %zu records listed in %s\n", v->name, v->recs.count, path);
}

/* Reads a region back and checks keys, partitions and headers of every record. */
static void load_region(struct region_view *v, const struct run *run, const char *bootstrap,
                        const char *dir)
{
    it_consume(bootstrap, TOPIC, &v->recs);
    qsort(v->recs.items, v->recs.count, sizeof(*v->recs.items), by_partition_offset);
    write_region_dump(v, run, dir);
    v->occurrences = calloc(run->count, sizeof(size_t));
    v->first_offset = malloc(run->count * sizeof(int64_t));
    for (size_t i = 0; i < run->count; i++)
        v->first_offset[i] = -1;
    v->sorted_by_id = malloc((v->recs.count ? v->recs.count : 1) * sizeof(*v->sorted_by_id));

    for (size_t k = 0; k < v->recs.count; k++) {
        struct it_record *r = &v->recs.items[k];
        size_t i = find_value(run, r->value, r->value_len);
        if (i == SIZE_MAX)
            fail_msg("region %s: record at partition %" PRId32 " offset %" PRId64 " has a value "
                     "that was never sent: %.80s", v->name, r->partition, r->offset, r->value);
        const struct line *l = &run->lines[i];
        if (r->partition != l->partition)
            fail_msg("region %s: line %zu is in partition %" PRId32 ", murmur2 gives %" PRId32,
                     v->name, i, r->partition, l->partition);
        assert_non_null(r->key);
        assert_int_equal(r->key_len, l->key_len);
        assert_memory_equal(r->key, l->value, l->key_len);
        if (!r->id)
            fail_msg("region %s: partition %" PRId32 " offset %" PRId64 " has no twinlane-id",
                     v->name, r->partition, r->offset);
        assert_true(strncmp(r->id, AGENT_ID ":", strlen(AGENT_ID) + 1) == 0);
        assert_non_null(r->origin);
        assert_string_equal(r->origin, "east");
        assert_true(r->has_ts);

        if (v->occurrences[i]++ == 0)
            v->first_offset[i] = r->offset;
        v->sorted_by_id[k] = r;
    }
    qsort(v->sorted_by_id, v->recs.count, sizeof(*v->sorted_by_id), by_id_value);

    /* A repeated twinlane-id with the same value is the same event written again. */
    for (size_t k = 1; k < v->recs.count; k++) {
        const struct it_record *a = v->sorted_by_id[k - 1], *b = v->sorted_by_id[k];
        if (strcmp(a->id, b->id) == 0 && strcmp(a->value, b->value) == 0)
            v->replayed++;
    }
    for (size_t i = 0; i < run->count; i++) {
        if (run->lines[i].first == i && v->occurrences[i] > run->lines[i].copies)
            v->duplicates += v->occurrences[i] - run->lines[i].copies;
    }
}

/* Returns whether the region contains a record with this twinlane-id and value. */
static bool holds_event(const struct region_view *v, const char *id, const char *value)
{
    struct it_record key = {.id = (char *)id, .value = (char *)value};
    const struct it_record *keyp = &key;
    return bsearch(&keyp, v->sorted_by_id, v->recs.count, sizeof(*v->sorted_by_id),
                   by_id_value) != NULL;
}

/* Counts acknowledged lines missing from a region, by value and by twinlane-id. */
static void count_missing(struct region_view *v, const struct run *run)
{
    size_t *acked_copies = calloc(run->count, sizeof(size_t));
    for (size_t i = 0; i < run->count; i++) {
        if (run->acked[i])
            acked_copies[run->lines[i].first]++;
    }
    for (size_t i = 0; i < run->count; i++) {
        if (acked_copies[i] > v->occurrences[i]) {
            if (v->missing < 5)
                fprintf(stderr, "region %s: acknowledged line %zu is missing: %.80s\n", v->name,
                        i, run->lines[i].value);
            v->missing += acked_copies[i] - v->occurrences[i];
        }
    }
    free(acked_copies);

    for (size_t i = 0; i < run->count; i++) {
        if (!run->acked[i])
            continue;
        char id[128];
        snprintf(id, sizeof(id), AGENT_ID ":%" PRIu64, run->ack_seq[i]);
        if (!holds_event(v, id, run->lines[i].value))
            fail_msg("region %s: no record has twinlane-id %s and the value of acknowledged "
                     "line %zu: %.80s", v->name, id, i, run->lines[i].value);
    }
}

/*
 * Counts twinlane-ids that carry more than one value across both regions, and prints the first
 * few with their positions.
 */
static size_t count_reused_ids(const struct region_view *a, const struct region_view *b)
{
    size_t n = a->recs.count + b->recs.count;
    struct it_record **all = malloc((n ? n : 1) * sizeof(*all));
    memcpy(all, a->sorted_by_id, a->recs.count * sizeof(*all));
    memcpy(all + a->recs.count, b->sorted_by_id, b->recs.count * sizeof(*all));
    qsort(all, n, sizeof(*all), by_id_value);

    size_t reused = 0;
    for (size_t k = 1; k < n; k++) {
        const struct it_record *x = all[k - 1], *y = all[k];
        if (strcmp(x->id, y->id) != 0 || strcmp(x->value, y->value) == 0)
            continue;
        if (reused++ < 5)
            fprintf(stderr, "twinlane-id %s carries two values: partition %" PRId32
                    " offset %" PRId64 " \"%.60s\" and partition %" PRId32 " offset %" PRId64
                    " \"%.60s\"\n", x->id, x->partition, x->offset, x->value, y->partition,
                    y->offset, y->value);
    }
    free(all);
    return reused;
}

static const struct run *sort_run;

static int by_conn_partition_seq(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    const struct run *r = sort_run;
    if (r->ack_conn[x] != r->ack_conn[y])
        return r->ack_conn[x] < r->ack_conn[y] ? -1 : 1;
    if (r->lines[x].partition != r->lines[y].partition)
        return r->lines[x].partition < r->lines[y].partition ? -1 : 1;
    return r->ack_seq[x] < r->ack_seq[y] ? -1 : r->ack_seq[x] > r->ack_seq[y];
}

/*
 * Checks that, per clean connection and partition, first occurrences follow the order of the
 * sequence numbers in the OK results. Returns the number of pairs checked.
 */
static size_t check_order(const struct region_view *v, const struct run *run)
{
    size_t *acked = malloc((run->acked_count ? run->acked_count : 1) * sizeof(size_t));
    size_t n = 0;
    for (size_t i = 0; i < run->count; i++) {
        if (run->acked[i] && run->lines[run->lines[i].first].copies == 1 &&
            run->conn_clean[run->ack_conn[i]])
            acked[n++] = i;
    }
    sort_run = run;
    qsort(acked, n, sizeof(size_t), by_conn_partition_seq);

    size_t pairs = 0, violations = 0;
    for (size_t k = 1; k < n; k++) {
        size_t a = acked[k - 1], b = acked[k];
        if (run->ack_conn[a] != run->ack_conn[b] ||
            run->lines[a].partition != run->lines[b].partition)
            continue;
        pairs++;
        if (v->first_offset[a] < v->first_offset[b])
            continue;
        if (violations++ < 5)
            fprintf(stderr, "region %s: connection %" PRIu32 " partition %" PRId32 ": seq %"
                    PRIu64 " (line %zu) first appears at offset %" PRId64 ", after seq %"
                    PRIu64 " (line %zu) at offset %" PRId64 "\n", v->name, run->ack_conn[a],
                    run->lines[a].partition, run->ack_seq[a], a, v->first_offset[a],
                    run->ack_seq[b], b, v->first_offset[b]);
    }
    free(acked);
    assert_int_equal(violations, 0);
    return pairs;
}

static void free_region(struct region_view *v)
{
    it_records_free(&v->recs);
    free(v->sorted_by_id);
    free(v->occurrences);
    free(v->first_offset);
}

static void acknowledged_events_survive_kills(void **state)
{
    (void)state;
    int64_t t0 = now_ms();
    struct run run = {0};

    char mock_dir[256];
    it_make_dir("crash-regions", mock_dir, sizeof(mock_dir));
    struct it_mock *east = &test_mocks[0], *west = &test_mocks[1];
    char topic[64];
    snprintf(topic, sizeof(topic), "%s:%d", TOPIC, PARTITIONS);
    const char *const topics[] = {topic, HEARTBEAT_TOPIC ":1", NULL};
    it_mock_start(east, mock_dir, "east", topics);
    it_mock_start(west, mock_dir, "west", topics);

    char config[2048];
    snprintf(config, sizeof(config), CONFIG_FORMAT, east->bootstrap, west->bootstrap, PARTITIONS);
    struct it_agent *agent = &test_agent;
    it_agent_start(agent, "crash", config, NULL);

    char input[512];
    input_path(agent->dir, input, sizeof(input));
    load_lines(input, &run);
    assert_true(run.count > 0);
    run.acked = calloc(run.count, sizeof(bool));
    run.ack_seq = calloc(run.count, sizeof(uint64_t));
    run.ack_conn = calloc(run.count, sizeof(uint32_t));
    run.resend = malloc(run.count * sizeof(size_t));
    run.resend_sorted = true;

    const char *seed_text = getenv("TWINLANE_CRASH_SEED");
    uint64_t seed = seed_text && *seed_text ? strtoull(seed_text, NULL, 10)
                                            : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (seed == 0)
        seed = 1;
    uint64_t rng = seed;
    fprintf(stderr, "crash loop: %zu lines from %s, seed %" PRIu64 " (TWINLANE_CRASH_SEED)\n",
            run.count, input, seed);

    /* Stream, killing the agent at random moments, until every line is acknowledged. */
    struct tl_client *c = connect_agent(&run, agent);
    int64_t stream_start = now_ms();
    uint32_t kills = 0, kills_with_inflight = 0;
    int64_t restart_total_ms = 0, restart_max_ms = 0;
    int64_t ready_at = now_ms();
    int64_t interval = next_interval(&rng, 0);
    /* The last slice streams after the last planned kill, so every planned kill happens. */
    size_t slice = (run.count + MIN_KILLS) / (MIN_KILLS + 1);
    while (run.acked_count < run.count) {
        int64_t now = now_ms();
        if (now - stream_start > STREAM_TIMEOUT_MS) {
            it_agent_dump_log(agent);
            fail_msg("%zu of %zu lines acknowledged after %d s and %" PRIu32 " kills",
                     run.acked_count, run.count, STREAM_TIMEOUT_MS / 1000, kills);
        }

        bool kill_due = kills < MAX_KILLS && now - ready_at >= interval;
        size_t new_limit = run.count;
        if (kills <= MIN_KILLS) {
            int64_t elapsed = now - ready_at < interval ? now - ready_at : interval;
            new_limit = slice * kills + (size_t)((double)slice * (double)elapsed /
                                                 (double)interval);
            /* A kill lands while events are in flight: borrow them from the next slice. */
            if (kill_due && tl_client_inflight(c) == 0 && run.resend_count == 0)
                new_limit = run.next_new + BATCH_EVENTS;
            if (new_limit > run.count)
                new_limit = run.count;
        }
        while (tl_client_inflight(c) < MAX_INFLIGHT) {
            int rc = send_batch(&run, c, new_limit);
            if (rc == 0)
                break;
            if (rc < 0)
                fail_connection_closed(agent, c);
        }

        if (kill_due) {
            /* Up to 3 ms, so the kill hits the agent at any step of the last batch. */
            if (tl_client_inflight(c) > 0) {
                kills_with_inflight++;
                usleep((useconds_t)(next_random(&rng) % 3000));
            }
            int64_t restart_ms;
            c = crash_and_restart(&run, agent, c, &restart_ms);
            kills++;
            restart_total_ms += restart_ms;
            if (restart_ms > restart_max_ms)
                restart_max_ms = restart_ms;
            ready_at = now_ms();
            interval = next_interval(&rng, kills);
            continue;
        }

        if (tl_client_inflight(c) == 0)
            usleep(2000);
        else if (tl_client_poll(c, 10) == TL_CLIENT_ECLOSED)
            fail_connection_closed(agent, c);
    }
    assert_int_equal(tl_client_flush(c, 60000), 0);
    tl_client_close(c);
    int64_t stream_ms = now_ms() - stream_start;
    fprintf(stderr,
            "crash loop: %" PRIu32 " kills (%" PRIu32 " with events in flight), restart to "
            "ready %.1f ms average, %" PRId64 " ms max, streaming %.1f s\n"
            "  lines %zu, acknowledged %zu, sent %" PRIu64 " (connection lost %" PRIu64
            ", retryable %" PRIu64 ", failed %" PRIu64 ")\n",
            kills, kills_with_inflight, kills ? (double)restart_total_ms / kills : 0.0,
            restart_max_ms, (double)stream_ms / 1000, run.count, run.acked_count, run.sent,
            run.lost, run.retryable, run.failed);
    assert_true(kills >= MIN_KILLS);

    int stop_rc = it_agent_stop(agent);
    if (stop_rc != 0)
        it_agent_dump_log(agent);
    assert_int_equal(stop_rc, 0);

    /* Read both regions back and check them. */
    const struct it_mock *mocks[2] = {east, west};
    for (int r = 0; r < 2; r++) {
        int64_t low[PARTITIONS], high[PARTITIONS];
        it_watermarks(mocks[r]->bootstrap, TOPIC, PARTITIONS, low, high);
        for (int p = 0; p < PARTITIONS; p++) {
            if (low[p] != 0)
                fail_msg("region %s partition %d starts at offset %" PRId64 " of %" PRId64
                         ": the mock cluster deleted its oldest records, so the test cannot "
                         "check them; send fewer events or fewer duplicates", mocks[r]->name, p,
                         low[p], high[p]);
        }
    }
    struct region_view regions[2] = {{.name = "east"}, {.name = "west"}};
    load_region(&regions[0], &run, east->bootstrap, agent->dir);
    load_region(&regions[1], &run, west->bootstrap, agent->dir);
    size_t reused_ids = count_reused_ids(&regions[0], &regions[1]);
    size_t pairs[2];
    for (int r = 0; r < 2; r++) {
        count_missing(&regions[r], &run);
        pairs[r] = check_order(&regions[r], &run);
    }

    fprintf(stderr, "crash loop summary: %" PRIu32 " kills, %zu of %zu lines acknowledged\n",
            kills, run.acked_count, run.count);
    for (int r = 0; r < 2; r++)
        fprintf(stderr,
                "  region %s: %zu records, missing %zu, duplicates %zu (%zu with a repeated "
                "twinlane-id), %zu ordered pairs checked\n",
                regions[r].name, regions[r].recs.count, regions[r].missing,
                regions[r].duplicates, regions[r].replayed, pairs[r]);
    fprintf(stderr, "  twinlane-ids carrying two values: %zu\n", reused_ids);
    fprintf(stderr, "  whole test %.1f s\n", (double)(now_ms() - t0) / 1000);

    assert_int_equal(regions[0].missing, 0);
    assert_int_equal(regions[1].missing, 0);

    assert_int_equal(reused_ids, 0);

    for (int r = 0; r < 2; r++)
        free_region(&regions[r]);
    assert_int_equal(it_mock_stop(east), 0);
    assert_int_equal(it_mock_stop(west), 0);
    for (size_t i = 0; i < run.count; i++)
        free(run.lines[i].value);
    free(run.lines);
    free(run.by_value);
    free(run.acked);
    free(run.ack_seq);
    free(run.ack_conn);
    free(run.resend);
}

int main(void)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(acknowledged_events_survive_kills, teardown),
    };
    atexit(stop_processes);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
