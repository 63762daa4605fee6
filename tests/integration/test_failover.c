/*
 * Failover: producers keep being acknowledged while one region fails, and no acknowledged
 * event is lost when it returns.
 *
 * Each test runs two twinlane-mock-cluster processes (regions east and west, topic "failover"
 * with 4 partitions) and its own agent with the breaker defaults (stall_timeout_ms 1500,
 * rto_target_ms 3000) and ack = "all". A load thread sends keyed events through the client
 * library at LOAD_RATE events per second, in pipelined batches of LOAD_BATCH, and records the
 * send time, acknowledgement time, status and region count of every event. Meanwhile the
 * test drives faults through the clusters' control sockets:
 *
 *   west down       all-down for OUTAGE_MS, then all-up
 *   west hung       rtt all 20000 for OUTAGE_MS, then rtt all 0
 *   produce errors  push-errors of a broker error and of two transport-style errors
 *   west flapping   all-down and all-up every FLAP_HALF_MS, FLAP_CYCLES times
 *   both down       all-down on both regions, with when_no_region "spool" and "reject"
 *
 * After the faults end, the test waits for the breakers to close, stops the load and the
 * agent, reads both regions back and checks that:
 *   - every acknowledged event is in both regions, in the partition that Kafka's murmur2 gives
 *     for its key (computed with librdkafka, independently of the agent), under the sequence
 *     number of its acknowledgement;
 *   - per partition, the first occurrences of the events (all sent on one connection) appear
 *     in increasing sequence order. Duplicates are allowed, and counted.
 * Recovery is measured from the acknowledgements the load thread saw, not from the agent's
 * own reports: the longest gap between consecutive acknowledgements, and the time from the
 * fault to the first acknowledgement of an event sent after it. The bounds are generous,
 * because the machine runs two mock clusters, the agent and the test on two cores.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include <twinlane/client.h>

#include "support.h"

#define TOPIC "failover"
#define PARTITIONS 4
#define AGENT_ID "it-failover"
#define KEYS 61
#define LOAD_RATE 400
#define LOAD_BATCH 8
#define LOAD_MAX_EVENTS 60000
#define LOAD_MAX_INFLIGHT 20000
/* Load before the first fault, so that both regions are warm when it hits. */
#define WARM_UP_MS 1500
#define OUTAGE_MS 5000
#define FLAP_HALF_MS 1500
#define FLAP_CYCLES 3
/* Load after recovery, so that events flow to both regions through the closed breaker. */
#define SETTLE_MS 1000
/* The breaker defaults that the bounds below rest on. */
#define STALL_TIMEOUT_MS 1500
#define RTO_TARGET_MS 3000
#define OPEN_MS 1000
#define OPEN_MAX_MS 30000
/* Generous bound on how long a recovered region takes to probe, backfill and close. */
#define CLOSE_TIMEOUT_MS 45000

static const char *const REGIONS[2] = {"east", "west"};

static const char *const CONFIG_FORMAT =
    "agent = { id = \"" AGENT_ID "\"; home_region = \"east\"; data_dir = \"@DIR@/data\";\n"
    "          ack = \"all\"; when_no_region = \"%s\"; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"%s\";%s },\n"
    "            { name = \"west\"; bootstrap = \"%s\";%s } );\n"
    "topics = ( { name = \"" TOPIC "\"; partitions = %d; } );\n";

/* Send and result times of one event, as the load thread recorded them. */
struct sent_event {
    int64_t send_ms;        /* monotonic clock */
    int64_t ack_ms;         /* when its result arrived; 0 while in flight */
    int status;             /* enum tl_client_status, or -1 while in flight */
    uint64_t seq;
    int32_t partition;
    size_t region_count;
};

struct load {
    struct tl_client *client;
    struct sent_event *events;   /* LOAD_MAX_EVENTS entries */
    size_t sent;
    int32_t key_partition[KEYS]; /* murmur2 of each key */
    int64_t start_ms;
    atomic_bool stop;
    pthread_t thread;
    bool running;
    int flush_rc;
    char error[320];             /* set by the load thread; the main thread fails with it */
    char first_message[256];     /* message of the first result that was not OK */
};

/* Everything one test starts, so that teardown and exit can end it. */
struct fixture {
    char dir[256];
    struct it_mock mocks[2];
    struct it_agent agent;
    struct load load;
};

static struct fixture *current;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Load thread */

static void format_key(size_t i, char *out, size_t outsize)
{
    snprintf(out, outsize, "key-%02zu", i % KEYS);
}

static void on_result(void *ctx, const struct tl_client_result *r)
{
    struct load *load = ctx;
    struct sent_event *e = &load->events[(size_t)(uintptr_t)r->opaque];

    e->ack_ms = now_ms();
    e->status = r->status;
    e->seq = r->seq;
    e->partition = r->partition;
    e->region_count = r->region_count;
    if (r->status != TL_CLIENT_OK && load->first_message[0] == '\0')
        snprintf(load->first_message, sizeof(load->first_message), "%s: %s",
                 tl_client_status_name(r->status), r->message ? r->message : "(no message)");
}

/* Sends the events that are due by now, in batches, while the in-flight limit allows. */
static int send_due(struct load *load)
{
    size_t due = (size_t)((now_ms() - load->start_ms) * LOAD_RATE / 1000);
    if (due > LOAD_MAX_EVENTS)
        due = LOAD_MAX_EVENTS;

    while (load->sent < due && tl_client_inflight(load->client) < LOAD_MAX_INFLIGHT) {
        struct tl_client_event batch[LOAD_BATCH];
        char keys[LOAD_BATCH][16];
        char values[LOAD_BATCH][32];
        size_t n = 0;
        int64_t t = now_ms();
        for (; n < LOAD_BATCH && load->sent + n < due; n++) {
            size_t i = load->sent + n;
            format_key(i, keys[n], sizeof(keys[n]));
            snprintf(values[n], sizeof(values[n]), "event-%zu", i);
            batch[n] = (struct tl_client_event){
                .topic = TOPIC, .key = keys[n], .key_len = strlen(keys[n]), .has_key = true,
                .value = values[n], .value_len = strlen(values[n]),
                .opaque = (void *)(uintptr_t)i};
            load->events[i] = (struct sent_event){.send_ms = t, .status = -1, .partition = -1};
        }

        char err[256];
        int rc = tl_client_send(load->client, batch, n, NULL, err, sizeof(err));
        if (rc != 0) {
            snprintf(load->error, sizeof(load->error), "tl_client_send failed: %s", err);
            return rc;
        }
        load->sent += n;
    }
    return 0;
}

static void *load_main(void *arg)
{
    struct load *load = arg;

    while (!atomic_load(&load->stop)) {
        if (send_due(load) != 0)
            return NULL;
        int wait = tl_client_inflight(load->client) > 0 ? 5 : 0;
        if (tl_client_poll(load->client, wait) == TL_CLIENT_ECLOSED) {
            snprintf(load->error, sizeof(load->error), "connection to the agent closed: %s",
                     tl_client_last_error(load->client));
            return NULL;
        }
        if (wait == 0)
            sleep_ms(2);
    }
    load->flush_rc = tl_client_flush(load->client, 60000);
    return NULL;
}

static void load_start(struct load *load, const struct it_agent *agent)
{
    /* A client that never connects, only for its partitioner; log_level 3 keeps it quiet. */
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, TOPIC, NULL);
    for (size_t k = 0; k < KEYS; k++) {
        char key[16];
        format_key(k, key, sizeof(key));
        load->key_partition[k] = rd_kafka_msg_partitioner_murmur2(rkt, key, strlen(key),
                                                                  PARTITIONS, NULL, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);

    load->events = calloc(LOAD_MAX_EVENTS, sizeof(*load->events));
    assert_non_null(load->events);
    struct tl_client_options opts = {.on_result = on_result, .ctx = load};
    char address[400], err[256];
    snprintf(address, sizeof(address), "unix:%s", agent->socket);
    if (tl_client_connect(address, &opts, &load->client, err, sizeof(err)) != 0)
        fail_msg("connecting to the agent at %s failed: %s", address, err);

    load->start_ms = now_ms();
    atomic_store(&load->stop, false);
    assert_int_equal(pthread_create(&load->thread, NULL, load_main, load), 0);
    load->running = true;
}

/* Stops sending, waits for every result and closes the connection. */
static void load_stop(struct load *load)
{
    if (!load->running)
        return;
    atomic_store(&load->stop, true);
    pthread_join(load->thread, NULL);
    load->running = false;
    tl_client_close(load->client);
    load->client = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Acknowledgement statistics */

struct ack_stats {
    size_t ok, retryable, failed, lost, other, in_flight;
    size_t spooled;                 /* OK with no region holding the event */
    size_t wrong_partition;         /* OK in another partition than murmur2 gives */
    int64_t max_gap_ms;             /* between consecutive acknowledgements */
    int64_t max_gap_at_ms;          /* start of that gap, relative to the load start */
    int64_t first_ack_after_ms;     /* fault to the first OK of an event sent after it */
};

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Counts results and measures recovery relative to fault_ms (0: no fault). */
static struct ack_stats measure(const struct load *load, int64_t fault_ms)
{
    struct ack_stats s = {.first_ack_after_ms = -1};
    int64_t *acks = malloc((load->sent ? load->sent : 1) * sizeof(*acks));
    size_t n = 0;

    for (size_t i = 0; i < load->sent; i++) {
        const struct sent_event *e = &load->events[i];
        switch (e->status) {
        case TL_CLIENT_OK:
            s.ok++;
            acks[n++] = e->ack_ms;
            if (e->region_count == 0)
                s.spooled++;
            if (e->partition != load->key_partition[i % KEYS])
                s.wrong_partition++;
            if (fault_ms > 0 && e->send_ms >= fault_ms &&
                (s.first_ack_after_ms < 0 || e->ack_ms - fault_ms < s.first_ack_after_ms))
                s.first_ack_after_ms = e->ack_ms - fault_ms;
            break;
        case TL_CLIENT_RETRYABLE:
            s.retryable++;
            break;
        case TL_CLIENT_FAILED:
            s.failed++;
            break;
        case TL_CLIENT_CONNECTION_LOST:
            s.lost++;
            break;
        case -1:
            s.in_flight++;
            break;
        default:
            s.other++;
        }
    }

    qsort(acks, n, sizeof(*acks), compare_int64);
    for (size_t k = 1; k < n; k++) {
        if (acks[k] - acks[k - 1] > s.max_gap_ms) {
            s.max_gap_ms = acks[k] - acks[k - 1];
            s.max_gap_at_ms = acks[k - 1] - load->start_ms;
        }
    }
    free(acks);
    return s;
}

static void print_stats(const char *scenario, const struct load *load, const struct ack_stats *s)
{
    fprintf(stderr,
            "%s: sent %zu, OK %zu (spooled %zu), retryable %zu, failed %zu, connection lost "
            "%zu, in flight %zu; longest gap between acknowledgements %" PRId64 " ms (from "
            "%.1f s); fault to first acknowledgement of a later event %" PRId64 " ms\n",
            scenario, load->sent, s->ok, s->spooled, s->retryable, s->failed, s->lost,
            s->in_flight, s->max_gap_ms, (double)s->max_gap_at_ms / 1000,
            s->first_ack_after_ms);
    if (load->first_message[0])
        fprintf(stderr, "%s: first result that was not OK: %s\n", scenario,
                load->first_message);
}

/* ---------------------------------------------------------------------------------------- */
/* The agent's log */

/* One "breaker state changed" line. */
struct transition {
    int64_t at_ms;          /* wall clock of the log line, ms since the epoch */
    char from[40];
    char to[40];
};

/* Parses the UTC timestamp that starts every log line ("2026-01-02T03:04:05.678Z"). */
static int64_t line_time_ms(const char *line)
{
    struct tm tm = {0};
    int ms = 0;
    if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Copies the value of "name=" in line, up to the next space, into out ("" when missing). */
static void field_value(const char *line, const char *name, char *out, size_t outsize)
{
    out[0] = '\0';
    const char *p = strstr(line, name);
    if (!p)
        return;
    p += strlen(name);
    size_t len = strcspn(p, " \n");
    snprintf(out, outsize, "%.*s", (int)len, p);
}

/* Reads the breaker transitions of region from the agent's log; returns their count. */
static size_t read_transitions(const struct it_agent *agent, const char *region,
                               struct transition *out, size_t cap)
{
    char *log = it_read_file(agent->log, NULL);
    if (!log)
        fail_msg("cannot read the agent log %s", agent->log);
    char needle[80];
    snprintf(needle, sizeof(needle), "breaker state changed region=%s ", region);

    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, needle))
            continue;
        if (n < cap) {
            out[n].at_ms = line_time_ms(line);
            field_value(line, " from=", out[n].from, sizeof(out[n].from));
            field_value(line, " to=", out[n].to, sizeof(out[n].to));
        }
        n++;
    }
    free(log);
    return n;
}

#define MAX_TRANSITIONS 256

/* Returns whether region's breaker is closed according to the log: no transition, or the last
 * one went to "closed". */
static bool breaker_closed(const struct it_agent *agent, const char *region, size_t *count)
{
    static struct transition t[MAX_TRANSITIONS];
    size_t n = read_transitions(agent, region, t, MAX_TRANSITIONS);
    if (count)
        *count = n;
    if (n == 0)
        return true;
    if (n > MAX_TRANSITIONS)
        fail_msg("region %s logged %zu breaker transitions, more than the %d this test reads",
                 region, n, MAX_TRANSITIONS);
    return strcmp(t[n - 1].to, "closed") == 0;
}

/*
 * Waits until the breakers of every region in regions[] are closed, for at most
 * CLOSE_TIMEOUT_MS. Returns the wait in milliseconds; fails the test, printing the log, when
 * a breaker is still not closed then.
 */
static int64_t wait_breakers_closed(struct it_agent *agent, const char *const *regions,
                                    size_t count)
{
    int64_t start = now_ms();
    for (;;) {
        bool closed = true;
        for (size_t r = 0; r < count; r++)
            closed = closed && breaker_closed(agent, regions[r], NULL);
        if (closed)
            return now_ms() - start;
        if (!it_agent_alive(agent)) {
            it_agent_dump_log(agent);
            fail_msg("the agent exited while the test waited for the breakers to close");
        }
        if (now_ms() - start > CLOSE_TIMEOUT_MS) {
            it_agent_dump_log(agent);
            fail_msg("a breaker was still not closed %d s after the fault ended",
                     CLOSE_TIMEOUT_MS / 1000);
        }
        sleep_ms(100);
    }
}

/* Counts the transitions into state, ignoring a "(backfilling)" suffix of "to=". */
static size_t count_entries(const struct transition *t, size_t n, const char *state)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(t[i].to, state, strlen(state)) == 0 &&
            (t[i].to[strlen(state)] == '\0' || t[i].to[strlen(state)] == '('))
            count++;
    }
    return count;
}

/*
 * Checks that the first failover episode of region logged every timeline step, first
 * occurrences in order, and returns the ms_since_first_failure of its first acknowledgement.
 */
static int64_t check_timeline(const struct it_agent *agent, const char *region)
{
    static const char *const order[] = {"first_failure", "breaker_open", "first_ack_after_open",
                                        "backfill_start", "backfill_end", "breaker_closed"};
    enum { STEPS = sizeof(order) / sizeof(order[0]) };

    char *log = it_read_file(agent->log, NULL);
    if (!log)
        fail_msg("cannot read the agent log %s", agent->log);
    char needle[80];
    snprintf(needle, sizeof(needle), "failover timeline region=%s ", region);

    int position[STEPS];
    for (size_t s = 0; s < STEPS; s++)
        position[s] = -1;
    char episode[32] = "";
    int64_t rto_ms = -1;
    int index = 0;
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, needle))
            continue;
        char this_episode[32], step[64], since[32];
        field_value(line, " episode=", this_episode, sizeof(this_episode));
        if (episode[0] == '\0')
            snprintf(episode, sizeof(episode), "%s", this_episode);
        if (strcmp(episode, this_episode) != 0)
            continue;
        fprintf(stderr, "timeline: %s\n", line);
        field_value(line, " step=", step, sizeof(step));
        for (size_t s = 0; s < STEPS; s++) {
            if (strcmp(step, order[s]) == 0 && position[s] < 0)
                position[s] = index;
        }
        if (strcmp(step, "first_ack_after_open") == 0) {
            field_value(line, " ms_since_first_failure=", since, sizeof(since));
            rto_ms = strtoll(since, NULL, 10);
        }
        index++;
    }
    free(log);

    for (size_t s = 0; s < STEPS; s++) {
        if (position[s] < 0)
            fail_msg("region %s: failover timeline step %s missing from episode %s", region,
                     order[s], episode[0] ? episode : "(none)");
        if (s > 0 && position[s] < position[s - 1])
            fail_msg("region %s: failover timeline step %s came before %s", region, order[s],
                     order[s - 1]);
    }
    return rto_ms;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading the regions back */

struct region_check {
    size_t records;
    size_t missing;          /* acknowledged events not found */
    size_t duplicates;       /* records beyond the first of an event */
    size_t misplaced;        /* records in another partition than murmur2 gives */
    size_t wrong_seq;        /* first record of an acknowledged event under another seq */
    size_t out_of_order;     /* first occurrences whose seq is below an earlier one */
    size_t unacknowledged;   /* events stored although their result was not OK */
};

static int by_partition_offset(const void *a, const void *b)
{
    const struct it_record *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Returns the sequence number of a twinlane-id of this agent, or 0 for another id. */
static uint64_t id_seq(const char *id)
{
    size_t prefix = strlen(AGENT_ID ":");
    if (!id || strncmp(id, AGENT_ID ":", prefix) != 0)
        return 0;
    return strtoull(id + prefix, NULL, 10);
}

static struct region_check check_region(const char *region, const char *bootstrap,
                                        const struct load *load)
{
    struct region_check c = {0};
    struct it_records recs;
    it_consume(bootstrap, TOPIC, &recs);
    qsort(recs.items, recs.count, sizeof(*recs.items), by_partition_offset);
    c.records = recs.count;

    bool *seen = calloc(load->sent ? load->sent : 1, sizeof(bool));
    uint64_t last_seq[PARTITIONS] = {0};
    for (size_t k = 0; k < recs.count; k++) {
        const struct it_record *r = &recs.items[k];
        size_t i;
        if (sscanf(r->value, "event-%zu", &i) != 1 || i >= load->sent)
            fail_msg("region %s: partition %" PRId32 " offset %" PRId64 " holds a value that "
                     "was never sent: %.60s", region, r->partition, r->offset, r->value);
        const struct sent_event *e = &load->events[i];
        uint64_t seq = id_seq(r->id);
        if (seq == 0)
            fail_msg("region %s: partition %" PRId32 " offset %" PRId64 " has twinlane-id %s, "
                     "expected %s:SEQ", region, r->partition, r->offset,
                     r->id ? r->id : "(none)", AGENT_ID);

        if (r->partition != load->key_partition[i % KEYS]) {
            c.misplaced++;
            if (c.misplaced <= 5)
                fprintf(stderr, "region %s: event %zu in partition %" PRId32 ", murmur2 gives "
                        "%" PRId32 "\n", region, i, r->partition,
                        load->key_partition[i % KEYS]);
        }
        if (seen[i]) {
            c.duplicates++;
            continue;
        }
        seen[i] = true;
        if (e->status == TL_CLIENT_OK && seq != e->seq) {
            c.wrong_seq++;
            if (c.wrong_seq <= 5)
                fprintf(stderr, "region %s: event %zu stored as seq %" PRIu64 ", acknowledged "
                        "as seq %" PRIu64 "\n", region, i, seq, e->seq);
        }
        if (e->status != TL_CLIENT_OK)
            c.unacknowledged++;
        if (r->partition >= 0 && r->partition < PARTITIONS) {
            if (seq < last_seq[r->partition]) {
                c.out_of_order++;
                if (c.out_of_order <= 5)
                    fprintf(stderr, "region %s: partition %" PRId32 " offset %" PRId64 ": seq "
                            "%" PRIu64 " first appears after seq %" PRIu64 "\n", region,
                            r->partition, r->offset, seq, last_seq[r->partition]);
            } else {
                last_seq[r->partition] = seq;
            }
        }
    }

    for (size_t i = 0; i < load->sent; i++) {
        if (load->events[i].status == TL_CLIENT_OK && !seen[i]) {
            c.missing++;
            if (c.missing <= 5)
                fprintf(stderr, "region %s: acknowledged event %zu (seq %" PRIu64 ", partition "
                        "%" PRId32 ") is missing\n", region, i, load->events[i].seq,
                        load->events[i].partition);
        }
    }
    fprintf(stderr,
            "region %s: %zu records, missing %zu, duplicates %zu, misplaced %zu, wrong seq "
            "%zu, out of order %zu, stored without acknowledgement %zu\n",
            region, c.records, c.missing, c.duplicates, c.misplaced, c.wrong_seq,
            c.out_of_order, c.unacknowledged);
    free(seen);
    it_records_free(&recs);
    return c;
}

/* Checks both regions: every acknowledged event present, in its partition, in order. */
static void check_regions(struct fixture *f)
{
    for (int r = 0; r < 2; r++) {
        struct region_check c = check_region(REGIONS[r], f->mocks[r].bootstrap, &f->load);
        assert_int_equal(c.missing, 0);
        assert_int_equal(c.misplaced, 0);
        assert_int_equal(c.wrong_seq, 0);
        assert_int_equal(c.out_of_order, 0);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Fixture */

static void stop_processes(void)
{
    if (!current)
        return;
    if (current->load.running) {
        atomic_store(&current->load.stop, true);
        pthread_join(current->load.thread, NULL);
        current->load.running = false;
    }
    if (current->agent.pid > 0)
        it_agent_kill(&current->agent);
    for (int r = 0; r < 2; r++)
        it_mock_stop(&current->mocks[r]);
}

/* Starts both mock clusters. west_topic gives west's topic and partition count (TOPIC ":N"). */
static void start_mocks(struct fixture *f, const char *name, const char *west_topic)
{
    static const char *const east_topics[] = {TOPIC ":4", NULL};
    _Static_assert(PARTITIONS == 4, "east_topics[] names the partition count");
    const char *const west_topics[] = {west_topic, NULL};

    memset(f, 0, sizeof(*f));
    current = f;
    it_make_dir(name, f->dir, sizeof(f->dir));
    it_mock_start(&f->mocks[0], f->dir, REGIONS[0], east_topics);
    it_mock_start(&f->mocks[1], f->dir, REGIONS[1], west_topics);
}

/* Starts the agent on the running mock clusters, then the load. east_extra and west_extra are
 * added to each region's configuration ("" for none). */
static void start_agent_and_load(struct fixture *f, const char *name,
                                 const char *when_no_region, const char *east_extra,
                                 const char *west_extra)
{
    char config[2048];
    snprintf(config, sizeof(config), CONFIG_FORMAT, when_no_region, f->mocks[0].bootstrap,
             east_extra, f->mocks[1].bootstrap, west_extra, PARTITIONS);
    it_agent_start(&f->agent, name, config, NULL);
    fprintf(stderr, "%s: agent log %s, cluster logs in %s\n", name, f->agent.log, f->dir);
    load_start(&f->load, &f->agent);
}

/* region_extra is added to both regions' configuration ("" for none). */
static void start_fixture(struct fixture *f, const char *name, const char *when_no_region,
                          const char *region_extra)
{
    start_mocks(f, name, TOPIC ":4");
    start_agent_and_load(f, name, when_no_region, region_extra, region_extra);
}

static int setup(void **state)
{
    *state = calloc(1, sizeof(struct fixture));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    stop_processes();
    if (f->load.client)
        tl_client_close(f->load.client);
    free(f->load.events);
    free(f);
    current = NULL;
    return 0;
}

/*
 * Ends a scenario: waits for the given breakers to close, keeps the load up for SETTLE_MS,
 * collects every result, stops the agent cleanly and checks the acknowledgements.
 */
static struct ack_stats finish(struct fixture *f, const char *scenario, int64_t fault_ms,
                               const char *const *regions, size_t region_count)
{
    int64_t close_ms = wait_breakers_closed(&f->agent, regions, region_count);
    fprintf(stderr, "%s: breakers closed %" PRId64 " ms after the fault ended\n", scenario,
            close_ms);
    sleep_ms(SETTLE_MS);
    load_stop(&f->load);
    if (f->load.error[0]) {
        it_agent_dump_log(&f->agent);
        fail_msg("load thread: %s", f->load.error);
    }
    assert_int_equal(f->load.flush_rc, 0);

    /* A breaker may have opened again meanwhile; the regions must have caught up. */
    wait_breakers_closed(&f->agent, regions, region_count);
    int stop_rc = it_agent_stop(&f->agent);
    if (stop_rc != 0)
        it_agent_dump_log(&f->agent);
    assert_int_equal(stop_rc, 0);

    struct ack_stats s = measure(&f->load, fault_ms);
    print_stats(scenario, &f->load, &s);
    assert_int_equal(s.lost, 0);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.other, 0);
    assert_int_equal(s.wrong_partition, 0);
    return s;
}

static const char *const WEST[] = {"west"};
static const char *const BOTH[] = {"east", "west"};

/* ---------------------------------------------------------------------------------------- */
/* Scenarios */

static void region_down_acks_resume(void **state)
{
    struct fixture *f = *state;
    start_fixture(f, "failover-down", "spool", "");
    struct it_mock *west = &f->mocks[1];

    sleep_ms(WARM_UP_MS);
    int64_t fault_ms = now_ms();
    it_mock_command(west, "all-down");
    sleep_ms(OUTAGE_MS);
    it_mock_command(west, "all-up");

    struct ack_stats s = finish(f, "region down", fault_ms, WEST, 1);
    int64_t timeline_rto = check_timeline(&f->agent, "west");
    fprintf(stderr, "region down: RTO seen by the load %" PRId64 " ms, by the agent's "
            "timeline %" PRId64 " ms\n", s.first_ack_after_ms, timeline_rto);
    check_regions(f);

    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
    assert_true(s.first_ack_after_ms >= 0);
    assert_true(s.first_ack_after_ms < RTO_TARGET_MS);
    assert_true(s.max_gap_ms < RTO_TARGET_MS);

    size_t transitions;
    breaker_closed(&f->agent, "west", &transitions);
    assert_true(transitions >= 2);
}

static void region_hang_acks_resume(void **state)
{
    struct fixture *f = *state;
    start_fixture(f, "failover-hang", "spool", "");
    struct it_mock *west = &f->mocks[1];

    sleep_ms(WARM_UP_MS);
    int64_t fault_ms = now_ms();
    it_mock_command(west, "rtt all 20000");
    sleep_ms(OUTAGE_MS);
    it_mock_command(west, "rtt all 0");

    struct ack_stats s = finish(f, "region hung", fault_ms, WEST, 1);
    int64_t timeline_rto = check_timeline(&f->agent, "west");
    fprintf(stderr, "region hung: RTO seen by the load %" PRId64 " ms, by the agent's "
            "timeline %" PRId64 " ms\n", s.first_ack_after_ms, timeline_rto);
    check_regions(f);
    /* The timeline counts from the start of the stall, not from its detection. */
    assert_true(timeline_rto >= STALL_TIMEOUT_MS);

    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
    assert_true(s.first_ack_after_ms >= 0);
    assert_true(s.first_ack_after_ms < STALL_TIMEOUT_MS + 1500);
    assert_true(s.max_gap_ms < STALL_TIMEOUT_MS + 1500);

    size_t transitions;
    breaker_closed(&f->agent, "west", &transitions);
    assert_true(transitions >= 2);
}

static void produce_errors_lose_nothing(void **state)
{
    struct fixture *f = *state;
    /*
     * One produce request in flight per connection. The mock cluster does not check the
     * sequence numbers of an idempotent producer, so it stores a later request after an
     * earlier one failed, and librdkafka then counts the failed one as stored (a real broker
     * rejects the gap). Those events would never reach the mock.
     */
    start_fixture(f, "failover-errors", "spool",
                  " properties = [ \"max.in.flight.requests.per.connection=1\" ];");
    struct it_mock *west = &f->mocks[1];

    sleep_ms(WARM_UP_MS);
    int64_t fault_ms = now_ms();
    it_mock_command(west, "push-errors " TOPIC " NOT_ENOUGH_REPLICAS 50");
    sleep_ms(2000);
    it_mock_command(west, "push-errors REQUEST_TIMED_OUT 50");
    sleep_ms(2000);
    it_mock_command(west, "push-errors NOT_LEADER_FOR_PARTITION 50");
    sleep_ms(2000);
    it_mock_command(west, "clear-errors");

    struct ack_stats s = finish(f, "produce errors", fault_ms, WEST, 1);
    size_t transitions;
    breaker_closed(&f->agent, "west", &transitions);
    fprintf(stderr, "produce errors: %zu breaker transitions of west\n", transitions);
    check_regions(f);

    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
}

/*
 * Checks that each OPEN interval of the breaker lasted at least its configured length less
 * the jitter: open_ms doubled for each reopening, up to open_max_ms, starting over only after
 * the breaker stayed closed for open_max_ms.
 */
static void check_open_intervals(const struct transition *t, size_t n)
{
    int reopens = 0;
    int64_t closed_at = -1;
    for (size_t i = 0; i + 1 < n; i++) {
        if (strcmp(t[i].to, "closed") == 0)
            closed_at = t[i].at_ms;
        if (strcmp(t[i].to, "open") != 0)
            continue;
        if (closed_at >= 0 && t[i].at_ms - closed_at >= OPEN_MAX_MS)
            reopens = 0;
        closed_at = -1;
        int64_t interval = OPEN_MS;
        for (int k = 0; k < reopens && interval < OPEN_MAX_MS; k++)
            interval *= 2;
        if (interval > OPEN_MAX_MS)
            interval = OPEN_MAX_MS;
        reopens++;
        int64_t lasted = t[i + 1].at_ms - t[i].at_ms;
        fprintf(stderr, "flapping: OPEN for %" PRId64 " ms, configured %" PRId64 " ms "
                "+-20 %%\n", lasted, interval);
        /* 20 ms for the millisecond rounding of two log timestamps. */
        if (lasted < interval * 4 / 5 - 20)
            fail_msg("the breaker left OPEN after %" PRId64 " ms, before its open interval of "
                     "%" PRId64 " ms less 20 %% jitter", lasted, interval);
    }
}

static void flapping_region_bounded_transitions(void **state)
{
    struct fixture *f = *state;
    start_fixture(f, "failover-flap", "spool", "");
    struct it_mock *west = &f->mocks[1];

    sleep_ms(WARM_UP_MS);
    int64_t fault_ms = now_ms();
    for (int cycle = 0; cycle < FLAP_CYCLES; cycle++) {
        it_mock_command(west, "all-down");
        sleep_ms(FLAP_HALF_MS);
        it_mock_command(west, "all-up");
        sleep_ms(FLAP_HALF_MS);
    }

    struct ack_stats s = finish(f, "flapping", fault_ms, WEST, 1);
    static struct transition t[MAX_TRANSITIONS];
    size_t n = read_transitions(&f->agent, "west", t, MAX_TRANSITIONS);
    if (n > MAX_TRANSITIONS)
        n = MAX_TRANSITIONS;
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "flapping: transition %zu: %s -> %s\n", i, t[i].from, t[i].to);
    check_regions(f);
    check_open_intervals(t, n);

    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
    assert_true(s.max_gap_ms < RTO_TARGET_MS);
    assert_true(count_entries(t, n, "open") >= 1);
    /* At most one outage episode per cycle: open, half-open, backfilling, closed. */
    assert_true(n <= 4 * FLAP_CYCLES);
}

/* Takes both regions down for OUTAGE_MS; returns the time of the fault. */
static int64_t both_regions_outage(struct fixture *f)
{
    sleep_ms(WARM_UP_MS);
    int64_t fault_ms = now_ms();
    it_mock_command(&f->mocks[0], "all-down");
    it_mock_command(&f->mocks[1], "all-down");
    sleep_ms(OUTAGE_MS);
    it_mock_command(&f->mocks[0], "all-up");
    it_mock_command(&f->mocks[1], "all-up");
    return fault_ms;
}

static void no_region_spool_acks(void **state)
{
    struct fixture *f = *state;
    start_fixture(f, "failover-spool", "spool", "");

    int64_t fault_ms = both_regions_outage(f);
    struct ack_stats s = finish(f, "both down, spool", fault_ms, BOTH, 2);
    check_regions(f);

    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
    assert_true(s.spooled > 0);
    assert_true(s.first_ack_after_ms >= 0);
    assert_true(s.first_ack_after_ms < RTO_TARGET_MS);
    assert_true(s.max_gap_ms < RTO_TARGET_MS);
}

/*
 * With "reject", events accepted before the second breaker opened are still answered OK from
 * the WAL (spooled), so only new events get RETRYABLE.
 */
static void no_region_reject_retryable(void **state)
{
    struct fixture *f = *state;
    start_fixture(f, "failover-reject", "reject", "");

    int64_t fault_ms = both_regions_outage(f);
    struct ack_stats s = finish(f, "both down, reject", fault_ms, BOTH, 2);
    check_regions(f);

    assert_true(s.retryable > 0);
    assert_int_equal(s.failed, 0);
    assert_non_null(strstr(f->load.first_message, "no region is available"));
}

/* Returns whether the agent's log contains text. */
static bool log_contains(const struct it_agent *agent, const char *text)
{
    char *log = it_read_file(agent->log, NULL);
    if (!log)
        fail_msg("cannot read the agent log %s", agent->log);
    bool found = strstr(log, text) != NULL;
    free(log);
    return found;
}

/* Runs `twinlane status` against the agent and returns its output, which the caller frees. */
static char *run_status(const struct it_agent *agent)
{
    char sock[400];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", agent->dir);
    char out[400];
    snprintf(out, sizeof(out), "%s/status.out", agent->dir);
    char *argv[] = {TL_CLI_BIN, "status", "--agent", sock, NULL};
    assert_int_equal(it_run(argv, out, NULL, 30), 0);
    char *text = it_read_file(out, NULL);
    assert_non_null(text);
    return text;
}

/* Returns the length of the agent's log now, so that later checks read only what follows. */
static size_t log_length(const struct it_agent *agent)
{
    size_t len = 0;
    char *log = it_read_file(agent->log, &len);
    if (!log)
        fail_msg("cannot read the agent log %s", agent->log);
    free(log);
    return len;
}

/* Waits up to CLOSE_TIMEOUT_MS for text in the agent's log after byte offset from; returns
 * the log from there, which the caller frees. */
static char *wait_for_log_after(struct it_agent *agent, size_t from, const char *text)
{
    int64_t start = now_ms();
    for (;;) {
        size_t len = 0;
        char *log = it_read_file(agent->log, &len);
        if (!log)
            fail_msg("cannot read the agent log %s", agent->log);
        if (len > from && strstr(log + from, text)) {
            memmove(log, log + from, len - from + 1);
            return log;
        }
        free(log);
        if (now_ms() - start > CLOSE_TIMEOUT_MS) {
            it_agent_dump_log(agent);
            fail_msg("the agent did not log \"%s\" within %d s", text, CLOSE_TIMEOUT_MS / 1000);
        }
        sleep_ms(100);
    }
}

/* Waits up to CLOSE_TIMEOUT_MS for text in the agent's log; fails the test otherwise. */
static void wait_for_log(struct it_agent *agent, const char *text)
{
    free(wait_for_log_after(agent, 0, text));
}

/* Starts the mock clusters, takes west down, then starts the agent and the load. Returns the
 * time west went down. */
static int64_t start_with_west_down(struct fixture *f, const char *name, const char *west_topic)
{
    start_mocks(f, name, west_topic);
    it_mock_command(&f->mocks[1], "all-down");
    int64_t fault_ms = now_ms();
    start_agent_and_load(f, name, "spool", "", "");
    return fault_ms;
}

/* Runs `twinlane VERB west --yes` against the agent's admin socket in a child process. */
static pid_t spawn_cli(const struct it_agent *agent, const char *verb)
{
    char sock[400];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", agent->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        it_child_dies_with_parent();
        freopen("/dev/null", "w", stdout);
        execl(TL_CLI_BIN, "twinlane", verb, "west", "--yes", "--agent", sock, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Returns the exit status of a child from spawn_cli. */
static int wait_cli(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * West is down when the agent starts: the agent starts on east alone, acknowledges from it,
 * and checks and backfills west once it is back. While the region thread is busy with a
 * topic check, an unfence must replace the fence requested just before it.
 */
static void region_down_at_start_backfilled(void **state)
{
    struct fixture *f = *state;
    int64_t fault_ms = start_with_west_down(f, "failover-start-down", TOPIC ":4");
    struct it_mock *west = &f->mocks[1];

    /* The first check starts with the probing and lasts 5 s while west is down. */
    wait_for_log(&f->agent, "breaker state changed region=west from=open to=half_open");
    pid_t fence = spawn_cli(&f->agent, "fence");
    sleep_ms(300);
    assert_int_equal(wait_cli(spawn_cli(&f->agent, "unfence")), 0);
    wait_cli(fence);

    /* While the next check runs, status still gives the failure of the one before. */
    wait_for_log(&f->agent, "topic check failed, the region gets no events until it passes "
                 "region=west");
    size_t mark = log_length(&f->agent);
    free(wait_for_log_after(&f->agent, mark,
                            "breaker state changed region=west from=open to=half_open"));
    char *status = run_status(&f->agent);
    /* The check may also have failed again meanwhile, under a slow machine. */
    if (!strstr(status, "the last topic check failed: region west") &&
        !strstr(status, "west: topic check timed out"))
        fail_msg("twinlane status does not give the failed check:\n%s", status);
    free(status);

    assert_false(breaker_closed(&f->agent, "west", NULL));
    it_mock_command(west, "all-up");

    struct ack_stats s = finish(f, "down at start", fault_ms, WEST, 1);
    check_regions(f);
    assert_true(s.ok > 0);
    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
    assert_true(log_contains(&f->agent, "region did not respond at start, starting without it"));
    assert_true(log_contains(&f->agent, "topics checked after start region=west"));
    assert_false(log_contains(&f->agent, "to=fenced"));
}

/* Sends "all-up" to a mock cluster after a delay, from its own thread. */
struct delayed_up {
    const struct it_mock *mock;
    int delay_ms;
    pthread_t thread;
};

static void *delayed_up_main(void *arg)
{
    struct delayed_up *d = arg;
    sleep_ms(d->delay_ms);
    it_mock_command(d->mock, "all-up");
    return NULL;
}

/*
 * Both regions are down at launch and east returns 2 s later. The "all brokers down" errors
 * that east reported before it passed its checks must not open its breaker afterwards.
 */
static void stale_errors_ignored_at_start(void **state)
{
    struct fixture *f = *state;
    start_mocks(f, "failover-start-stale", TOPIC ":4");
    it_mock_command(&f->mocks[0], "all-down");
    it_mock_command(&f->mocks[1], "all-down");
    struct delayed_up east_up = {.mock = &f->mocks[0], .delay_ms = 2000};
    assert_int_equal(pthread_create(&east_up.thread, NULL, delayed_up_main, &east_up), 0);
    int64_t fault_ms = now_ms();
    start_agent_and_load(f, "failover-start-stale", "spool", "", "");
    pthread_join(east_up.thread, NULL);

    sleep_ms(WARM_UP_MS);
    size_t east_transitions;
    assert_true(breaker_closed(&f->agent, "east", &east_transitions));
    assert_int_equal(east_transitions, 0);
    it_mock_command(&f->mocks[1], "all-up");

    struct ack_stats s = finish(f, "stale errors at start", fault_ms, BOTH, 2);
    check_regions(f);
    assert_true(s.ok > 0);
    assert_int_equal(s.failed, 0);
    breaker_closed(&f->agent, "east", &east_transitions);
    assert_int_equal(east_transitions, 0);
}

/*
 * A region whose brokers reject the client's credentials stops the start at once: waiting
 * does not fix a wrong password, so the agent does not start without that region.
 */
static void auth_failure_stops_start(void **state)
{
    struct fixture *f = *state;
    start_mocks(f, "failover-start-auth", TOPIC ":4");

    char config[512];
    snprintf(config, sizeof(config), "%s/agent.conf", f->dir);
    char log[512];
    snprintf(log, sizeof(log), "%s/agent.log", f->dir);
    FILE *out = fopen(config, "w");
    assert_non_null(out);
    /* Mock brokers do not support SASL, so librdkafka reports an authentication failure. */
    fprintf(out,
            "agent = { id = \"" AGENT_ID "\"; home_region = \"east\"; data_dir = \"%s/data\"; };\n"
            "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
            "            { name = \"west\"; bootstrap = \"%s\"; properties = (\n"
            "                \"security.protocol=sasl_plaintext\", \"sasl.mechanism=PLAIN\",\n"
            "                \"sasl.username=oncall\", \"sasl.password=wrong\" ); } );\n"
            "topics = ( { name = \"" TOPIC "\"; partitions = %d; } );\n",
            f->dir, f->mocks[0].bootstrap, f->mocks[1].bootstrap, PARTITIONS);
    fclose(out);

    char *argv[] = {TL_AGENT_BIN, "-c", config, NULL};
    int64_t start = now_ms();
    assert_int_equal(it_run(argv, NULL, log, 60), 1);
    int64_t took_ms = now_ms() - start;
    fprintf(stderr, "auth failure: the agent exited after %" PRId64 " ms\n", took_ms);

    char *text = it_read_file(log, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "region west (bootstrap "));
    assert_non_null(strstr(text, "rejected the connection: _AUTHENTICATION"));
    assert_non_null(strstr(text, "check the region's security.protocol, sasl.* and ssl.*"));
    assert_null(strstr(text, "did not respond at start"));
    free(text);
    assert_true(took_ms < 20000);
}

/*
 * West rejects the credentials when it returns after start, then goes down again. The check
 * after that must report the outage, not the credentials of the earlier attempt.
 */
static void auth_error_not_kept_after_outage(void **state)
{
    struct fixture *f = *state;
    start_mocks(f, "failover-auth-later", TOPIC ":4");
    struct it_mock *west = &f->mocks[1];
    it_mock_command(west, "all-down");
    int64_t fault_ms = now_ms();
    /* Mock brokers do not support SASL, so librdkafka reports an authentication failure. */
    start_agent_and_load(f, "failover-auth-later", "spool", "",
                         " properties = ( \"security.protocol=sasl_plaintext\", "
                         "\"sasl.mechanism=PLAIN\", \"sasl.username=oncall\", "
                         "\"sasl.password=wrong\" );");

    size_t mark = log_length(&f->agent);
    it_mock_command(west, "all-up");
    free(wait_for_log_after(&f->agent, mark, "rejected the connection: _AUTHENTICATION"));

    mark = log_length(&f->agent);
    it_mock_command(west, "all-down");
    char *after = wait_for_log_after(&f->agent, mark, "topic check failed");
    const char *failure = strstr(after, "topic check failed");
    const char *line_end = strchr(failure, '\n');
    size_t line_len = line_end ? (size_t)(line_end - failure) : strlen(failure);
    fprintf(stderr, "auth error then outage: %.*s\n", (int)line_len, failure);
    char *line = strndup(failure, line_len);
    assert_non_null(strstr(line, "did not return metadata"));
    assert_null(strstr(line, "rejected the connection"));
    free(line);
    free(after);

    load_stop(&f->load);
    assert_int_equal(f->load.flush_rc, 0);
    assert_int_equal(it_agent_stop(&f->agent), 0);
    struct ack_stats s = measure(&f->load, fault_ms);
    assert_true(s.ok > 0);
    assert_int_equal(s.lost, 0);
    struct region_check east = check_region("east", f->mocks[0].bootstrap, &f->load);
    assert_int_equal(east.missing, 0);
}

/*
 * West is down at start and comes back with another partition count: the agent keeps it out
 * of service, with an error that names the counts, and acknowledges from east.
 */
static void partition_mismatch_after_start_kept_out(void **state)
{
    struct fixture *f = *state;
    int64_t fault_ms = start_with_west_down(f, "failover-start-mismatch", TOPIC ":3");
    struct it_mock *west = &f->mocks[1];

    sleep_ms(WARM_UP_MS);
    it_mock_command(west, "all-up");
    const char *mismatch = "topic " TOPIC " has 3 partitions in region west but 4 in region east";
    wait_for_log(&f->agent, mismatch);
    sleep_ms(SETTLE_MS);
    assert_false(breaker_closed(&f->agent, "west", NULL));

    /* Status gives the failed check as west's reason. */
    for (int i = 0; i < 4; i++) {
        char *status = run_status(&f->agent);
        if (!strstr(status, mismatch))
            fail_msg("twinlane status does not give the failed check:\n%s", status);
        free(status);
        sleep_ms(700);
    }

    load_stop(&f->load);
    assert_int_equal(f->load.flush_rc, 0);
    assert_int_equal(it_agent_stop(&f->agent), 0);
    struct ack_stats s = measure(&f->load, fault_ms);
    print_stats("partition mismatch", &f->load, &s);
    assert_true(s.ok > 0);
    assert_int_equal(s.lost, 0);
    assert_int_equal(s.failed, 0);

    struct region_check east = check_region("east", f->mocks[0].bootstrap, &f->load);
    assert_int_equal(east.missing, 0);
    assert_int_equal(east.out_of_order, 0);
    int64_t low[3];
    int64_t high[3];
    it_watermarks(west->bootstrap, TOPIC, 3, low, high);
    for (int p = 0; p < 3; p++)
        assert_int_equal(high[p] - low[p], 0);
}

int main(void)
{
    it_watchdog_start(400);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(region_down_acks_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(region_hang_acks_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(produce_errors_lose_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(flapping_region_bounded_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(no_region_spool_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(no_region_reject_retryable, setup, teardown),
        cmocka_unit_test_setup_teardown(region_down_at_start_backfilled, setup, teardown),
        cmocka_unit_test_setup_teardown(partition_mismatch_after_start_kept_out, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_errors_ignored_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_failure_stops_start, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_error_not_kept_after_outage, setup, teardown),
    };
    atexit(stop_processes);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
