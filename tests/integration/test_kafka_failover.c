/*
 * Failover against two real Apache Kafka clusters (KRaft, one broker each), started once per
 * ctest run by the kafka_clusters fixture (kafka_fixture.sh): the outage and the hang of
 * test_failover.c, with chaos/kafka/kafka-cluster as the fault injector.
 *
 *   west down  kafka-cluster kill west (SIGKILL), then kafka-cluster restart west
 *   west hung  kafka-cluster pause west (SIGSTOP) for OUTAGE_MS, then kafka-cluster resume west
 *
 * Each test starts its own agent (breaker defaults, ack = "all") against the clusters east
 * and west. A load thread sends keyed events through the client library at LOAD_RATE events
 * per second and records the send time, acknowledgement time and status of each. After the
 * fault ends the test waits for west's breaker to close, stops the load and the agent, and
 * reads both clusters back. Every acknowledged event must be in both, in the partition that
 * Kafka's murmur2 gives for its key, under the sequence number of its acknowledgement. Per
 * partition, the first occurrences of the events must come in sequence order.
 * Acknowledgements must resume within RESUME_BOUND_MS of the fault: a longer bound than with
 * mock clusters, because a real broker and its JVM share the two cores with the agent.
 *
 * The topic "failover" (3 partitions in both clusters) is shared by the tests and by repeated
 * runs against the same fixture, so every run uses an agent id of its own and the checks
 * read only the records that carry it.
 *
 * Every test leaves west running: teardown, and an exit handler for a test that aborts,
 * resume the broker and restart it when it is stopped.
 *
 * Environment: TWINLANE_KAFKA_RUN is the run directory of chaos/kafka/kafka-cluster; the
 * bootstrap servers come from RUN/east/bootstrap and RUN/west/bootstrap.
 *
 * Usage: test_kafka_failover [TEST], where TEST is one test name below; no argument runs both.
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include <twinlane/client.h>

#include "support.h"

#define TOPIC "failover"
#define PARTITIONS 3
#define KEYS 61
#define LOAD_RATE 300
#define LOAD_BATCH 6
#define LOAD_MAX_EVENTS 60000
#define LOAD_MAX_INFLIGHT 20000
/* Load before the fault, so that both regions are warm when it hits. */
#define WARM_UP_MS 2000
#define OUTAGE_MS 5000
/* Load after recovery, so that events flow to both regions through the closed breaker. */
#define SETTLE_MS 1000
#define RESUME_BOUND_MS 5000
/* A killed broker restarts its JVM and recovers its log before probes can pass. */
#define CLOSE_TIMEOUT_MS 120000
#define KAFKA_CLUSTER_TIMEOUT_S 180

static const char *const REGIONS[2] = {"east", "west"};

/* "it-kfailover-PID", which separates this run's records from those of earlier runs. */
static char agent_id[64];

/* Agent configuration, a printf format: agent id, east's and west's bootstrap servers. */
static const char *const CONFIG_FORMAT =
    "agent = { id = \"%s\"; home_region = \"east\"; data_dir = \"@DIR@/data\";\n"
    "          ack = \"all\"; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
    "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
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
    char bootstrap[2][512];
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
    size_t other_runs;       /* records of other agents: earlier tests and runs */
};

static int by_partition_offset(const void *a, const void *b)
{
    const struct it_record *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Returns the sequence number of a twinlane-id of this run's agent, or 0 for another id. */
static uint64_t id_seq(const char *id)
{
    size_t prefix = strlen(agent_id);
    if (!id || strncmp(id, agent_id, prefix) != 0 || id[prefix] != ':')
        return 0;
    return strtoull(id + prefix + 1, NULL, 10);
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
        uint64_t seq = id_seq(r->id);
        if (seq == 0) {
            c.other_runs++;
            continue;
        }
        size_t i;
        if (sscanf(r->value, "event-%zu", &i) != 1 || i >= load->sent)
            fail_msg("region %s: partition %" PRId32 " offset %" PRId64 " holds a value that "
                     "was never sent: %.60s", region, r->partition, r->offset, r->value);
        const struct sent_event *e = &load->events[i];

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
            "%zu, out of order %zu, stored without acknowledgement %zu, other agents' %zu\n",
            region, c.records, c.missing, c.duplicates, c.misplaced, c.wrong_seq,
            c.out_of_order, c.unacknowledged, c.other_runs);
    free(seen);
    it_records_free(&recs);
    return c;
}

/* Checks both regions: every acknowledged event present, in its partition, in order. */
static void check_regions(struct fixture *f)
{
    for (int r = 0; r < 2; r++) {
        struct region_check c = check_region(REGIONS[r], f->bootstrap[r], &f->load);
        assert_int_equal(c.missing, 0);
        assert_int_equal(c.misplaced, 0);
        assert_int_equal(c.wrong_seq, 0);
        assert_int_equal(c.out_of_order, 0);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Fixture */

/* Runs chaos/kafka/kafka-cluster with the given arguments; returns its exit status. */
static int kafka_cluster(const char *command, const char *cluster)
{
    char *argv[] = {TL_KAFKA_CLUSTER_BIN, (char *)command, (char *)cluster, NULL};
    return it_run(argv, NULL, NULL, KAFKA_CLUSTER_TIMEOUT_S);
}

/* Runs a fault command of kafka-cluster, failing the test when it fails. */
static void kafka_cluster_fault(const char *command, const char *cluster)
{
    int rc = kafka_cluster(command, cluster);
    if (rc != 0)
        fail_msg("kafka-cluster %s %s exited %d", command, cluster, rc);
}

/* Returns whether any broker of cluster is stopped, according to kafka-cluster status. */
static bool cluster_has_stopped_broker(const char *cluster)
{
    char path[] = "/tmp/twinlane-kafka-status-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return false;
    close(fd);
    char *argv[] = {TL_KAFKA_CLUSTER_BIN, "status", (char *)cluster, NULL};
    it_run(argv, path, NULL, KAFKA_CLUSTER_TIMEOUT_S);
    char *text = it_read_file(path, NULL);
    unlink(path);
    bool stopped = text && strstr(text, " stopped") != NULL;
    free(text);
    return stopped;
}

/* Leaves west running for the tests that follow: resumes a paused broker, restarts a dead one. */
static void restore_west(void)
{
    kafka_cluster("resume", "west");
    if (cluster_has_stopped_broker("west")) {
        fprintf(stderr, "restarting the stopped broker of west for the tests that follow\n");
        int rc = kafka_cluster("restart", "west");
        if (rc != 0)
            fprintf(stderr, "kafka-cluster restart west exited %d; later tests against west "
                    "will fail\n", rc);
    }
}

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
    restore_west();
    current = NULL;
}

/* Reads the bootstrap servers that kafka-cluster wrote for a cluster of the fixture. */
static void cluster_bootstrap(const char *cluster, char *out, size_t outsize)
{
    const char *run = getenv("TWINLANE_KAFKA_RUN");
    if (!run || !*run)
        fail_msg("TWINLANE_KAFKA_RUN is not set; run this test through ctest -L kafka, which "
                 "starts the clusters and sets it");

    char path[512];
    snprintf(path, sizeof(path), "%s/%s/bootstrap", run, cluster);
    char *text = it_read_file(path, NULL);
    if (!text || !*text)
        fail_msg("cannot read %s; the kafka_clusters fixture (kafka_fixture.sh start) did not "
                 "start cluster %s", path, cluster);
    text[strcspn(text, "\n")] = '\0';
    snprintf(out, outsize, "%s", text);
    free(text);
}

static void start_fixture(struct fixture *f, const char *name)
{
    memset(f, 0, sizeof(*f));
    for (int r = 0; r < 2; r++)
        cluster_bootstrap(REGIONS[r], f->bootstrap[r], sizeof(f->bootstrap[r]));
    current = f;

    char config[2048];
    snprintf(config, sizeof(config), CONFIG_FORMAT, agent_id, f->bootstrap[0], f->bootstrap[1],
             PARTITIONS);
    it_agent_start(&f->agent, name, config, NULL);
    fprintf(stderr, "%s: agent %s, log %s\n", name, agent_id, f->agent.log);
    load_start(&f->load, &f->agent);
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
    return 0;
}

/*
 * Ends a scenario: waits for west's breaker to close, keeps the load up for SETTLE_MS,
 * collects every result, stops the agent cleanly and checks the acknowledgements.
 */
static struct ack_stats finish(struct fixture *f, const char *scenario, int64_t fault_ms)
{
    static const char *const west[] = {"west"};
    int64_t close_ms = wait_breakers_closed(&f->agent, west, 1);
    fprintf(stderr, "%s: west's breaker closed %" PRId64 " ms after the fault ended\n",
            scenario, close_ms);
    sleep_ms(SETTLE_MS);
    load_stop(&f->load);
    if (f->load.error[0]) {
        it_agent_dump_log(&f->agent);
        fail_msg("load thread: %s", f->load.error);
    }
    assert_int_equal(f->load.flush_rc, 0);

    /* The breaker may have opened again meanwhile; west must have caught up. */
    wait_breakers_closed(&f->agent, west, 1);
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

/* ---------------------------------------------------------------------------------------- */
/* Scenarios */

static void killed_region_acks_resume(void **state)
{
    struct fixture *f = *state;
    start_fixture(f, "kafka-failover-kill");

    sleep_ms(WARM_UP_MS);
    int64_t fault_ms = now_ms();
    kafka_cluster_fault("kill", "west");
    sleep_ms(OUTAGE_MS);
    kafka_cluster_fault("restart", "west");

    struct ack_stats s = finish(f, "west killed", fault_ms);
    int64_t timeline_rto = check_timeline(&f->agent, "west");
    fprintf(stderr, "west killed: RTO seen by the load %" PRId64 " ms, by the agent's "
            "timeline %" PRId64 " ms\n", s.first_ack_after_ms, timeline_rto);
    check_regions(f);

    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
    assert_true(s.first_ack_after_ms >= 0);
    assert_true(s.first_ack_after_ms < RESUME_BOUND_MS);
    assert_true(s.max_gap_ms < RESUME_BOUND_MS);
}

static void paused_region_acks_resume(void **state)
{
    struct fixture *f = *state;
    start_fixture(f, "kafka-failover-pause");

    sleep_ms(WARM_UP_MS);
    int64_t fault_ms = now_ms();
    kafka_cluster_fault("pause", "west");
    sleep_ms(OUTAGE_MS);
    kafka_cluster_fault("resume", "west");

    struct ack_stats s = finish(f, "west paused", fault_ms);
    fprintf(stderr, "west paused: RTO seen by the load %" PRId64 " ms\n", s.first_ack_after_ms);
    check_regions(f);

    assert_int_equal(s.retryable, 0);
    assert_int_equal(s.failed, 0);
    assert_true(s.first_ack_after_ms >= 0);
    assert_true(s.first_ack_after_ms < RESUME_BOUND_MS);
    assert_true(s.max_gap_ms < RESUME_BOUND_MS);
}

int main(int argc, char **argv)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(killed_region_acks_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(paused_region_acks_resume, setup, teardown),
    };

    /* cmocka runs nothing, and passes, for a filter that matches no test, so reject one. */
    if (argc > 1) {
        bool known = false;
        for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
            known = known || strcmp(argv[1], tests[i].name) == 0;
        if (!known) {
            fprintf(stderr, "test_kafka_failover: unknown test '%s'\n", argv[1]);
            return 2;
        }
        cmocka_set_test_filter(argv[1]);
    }
    snprintf(agent_id, sizeof(agent_id), "it-kfailover-%ld", (long)getpid());
    atexit(stop_processes);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
