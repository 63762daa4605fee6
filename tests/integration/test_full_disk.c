/*
 * Full WAL disk: the agent rejects events with RETRYABLE once its WAL cannot take more, stays
 * up, names the problem in its log, and recovers when space returns, without losing any event
 * it acknowledged.
 *
 * wal.dir lies on a small tmpfs that the test mounts (the tests run as root; a failed mount
 * fails the test). Both regions are twinlane-mock-cluster processes, so the test can take
 * all their brokers down and up through the control socket. Two cases:
 *
 *   quota    wal.max_bytes = 4 MiB, below the 8 MiB tmpfs, and agent.ack = "local", so events
 *            are acknowledged from the WAL alone while both regions are down, until the quota
 *            is reached. Space returns when the regions are back and the agent deletes the
 *            segments they have stored.
 *   enospc   wal.max_bytes = 128 MiB, above the 80 MiB tmpfs, and a 78 MiB filler file on
 *            the tmpfs, so write(2) fails with ENOSPC. agent.ack = "all": nothing is
 *            acknowledged while the regions are down. The agent keeps the unwritten events in
 *            memory (64 MiB at most) and rejects new ones beyond that. The quota lies above
 *            that bound, so it never rejects them. Space returns when the test deletes the
 *            filler.
 *
 * Each case: send events with both regions up; take both regions down and send until an
 * event is answered RETRYABLE; check that the agent is alive and its log names the cause;
 * bring the regions up and free space; check that every event still in flight ends OK, that
 * new events are acknowledged again, and that every acknowledged event is in both regions.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <twinlane/client.h>

#include "support.h"

#define TOPIC "events"
/*
 * The enospc case sends about 66 MiB, and librdkafka's mock cluster keeps at most 5 MiB per
 * partition (librdkafka 2.14) before it deletes the oldest records. Spread over 64
 * partitions by 997 keys, each partition gets about 1 MiB.
 */
#define PARTITIONS 64
#define KEYS 997
/* The agent's default heartbeat.topic, which must exist in both regions. */
#define HEARTBEAT_TOPIC "twinlane.heartbeats"
#define VALUE_BYTES 8192
#define MAX_EVENTS 20000
#define BATCH_EVENTS 32
#define EVENTS_BEFORE 64
#define EVENTS_AFTER 64
/* Time limits in milliseconds for the phases that wait on the agent. */
#define FILL_TIMEOUT_MS 60000
#define RECOVERY_TIMEOUT_MS 120000

static const char *const CONFIG_FORMAT =
    "agent = { id = \"it-full\"; home_region = \"east\"; data_dir = \"@DIR@/data\";\n"
    "          ack = \"%s\"; max_inflight_events = 1000000; };\n"
    "wal = { dir = \"%s\"; segment_bytes = 1048576; max_bytes = %s; };\n"
    "listen = { max_event_bytes = 65536; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"%s\";\n"
    "              properties = [ \"reconnect.backoff.max.ms=500\" ]; },\n"
    "            { name = \"west\"; bootstrap = \"%s\";\n"
    "              properties = [ \"reconnect.backoff.max.ms=500\" ]; } );\n"
    "topics = ( { name = \"" TOPIC "\"; partitions = %d; } );\n";

struct full_case {
    const char *name;
    const char *ack;
    const char *max_bytes;
    const char *tmpfs_options;
    size_t filler_bytes;     /* file placed on the tmpfs so that writes fail with ENOSPC */
    const char *log_cause;   /* agent log text that names the cause */
    const char *reply_cause; /* text of the RETRYABLE message */
};

static const struct full_case QUOTA_CASE = {
    .name = "quota",
    .ack = "local",
    .max_bytes = "4194304",
    .tmpfs_options = "size=8m",
    .filler_bytes = 0,
    .log_cause = "quota reached, rejecting events with RETRYABLE",
    .reply_cause = "the WAL is full",
};

static const struct full_case ENOSPC_CASE = {
    .name = "enospc",
    .ack = "all",
    .max_bytes = "134217728",
    /*
     * A disk with room for the events accepted before the first write failed, once the filler
     * is gone. enospc_delivered_segments_stall covers a disk too small for them, which drains
     * by deleting delivered segments.
     */
    .tmpfs_options = "size=80m",
    .filler_bytes = 78u << 20,
    .log_cause = "No space left on device",
    .reply_cause = "No space left on device",
};

enum event_state { EVENT_UNSENT, EVENT_INFLIGHT, EVENT_OK, EVENT_RETRYABLE };

/* Events of one case and the status the agent returned for each. */
struct events {
    enum event_state state[MAX_EVENTS];
    size_t next;              /* first event never sent */
    size_t ok, retryable;
    char first_retryable_message[512];
    char padding[VALUE_BYTES];
};

/* Everything a failed test must release: processes and the mount. */
static struct it_agent test_agent;
static struct it_mock test_mocks[2];
static char mounted[512];

static void release_everything(void)
{
    if (test_agent.pid > 0)
        it_agent_kill(&test_agent);
    for (int r = 0; r < 2; r++)
        it_mock_stop(&test_mocks[r]);
    if (mounted[0]) {
        if (umount2(mounted, 0) != 0 && umount2(mounted, MNT_DETACH) != 0)
            fprintf(stderr, "unmounting %s failed: %s\n", mounted, strerror(errno));
        mounted[0] = '\0';
    }
}

static int teardown(void **state)
{
    (void)state;
    release_everything();
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_result(void *ctx, const struct tl_client_result *r)
{
    struct events *ev = ctx;
    size_t i = (size_t)(uintptr_t)r->opaque;

    switch (r->status) {
    case TL_CLIENT_OK:
        ev->state[i] = EVENT_OK;
        ev->ok++;
        break;
    case TL_CLIENT_RETRYABLE:
        ev->state[i] = EVENT_RETRYABLE;
        if (ev->retryable++ == 0)
            snprintf(ev->first_retryable_message, sizeof(ev->first_retryable_message), "%s",
                     r->message ? r->message : "");
        break;
    default:
        fail_msg("event %zu: unexpected status %s: %s", i, tl_client_status_name(r->status),
                 r->message ? r->message : "(no message)");
    }
}

/* Writes event i's value: a unique prefix, padded to VALUE_BYTES. */
static size_t format_value(const struct events *ev, size_t i, char *out)
{
    int len = snprintf(out, VALUE_BYTES, "full-disk event %zu ", i);
    memcpy(out + len, ev->padding, VALUE_BYTES - (size_t)len);
    return VALUE_BYTES;
}

/* Sends the next count events as one request. */
static void send_events(struct events *ev, struct tl_client *c, size_t count)
{
    static char values[BATCH_EVENTS][VALUE_BYTES];
    static char keys[BATCH_EVENTS][32];
    struct tl_client_event batch[BATCH_EVENTS];

    assert_true(count <= BATCH_EVENTS);
    if (ev->next + count > MAX_EVENTS)
        fail_msg("more than %d events needed; the agent never answered RETRYABLE", MAX_EVENTS);
    for (size_t k = 0; k < count; k++) {
        size_t i = ev->next + k;
        int key_len = snprintf(keys[k], sizeof(keys[k]), "key-%zu", i % KEYS);
        batch[k] = (struct tl_client_event){
            .topic = TOPIC, .key = keys[k], .key_len = (size_t)key_len, .has_key = true,
            .value = values[k], .value_len = format_value(ev, i, values[k]),
            .opaque = (void *)(uintptr_t)i};
        ev->state[i] = EVENT_INFLIGHT;
    }

    char err[256];
    if (tl_client_send(c, batch, count, NULL, err, sizeof(err)) != 0)
        fail_msg("tl_client_send failed: %s", err);
    ev->next += count;
}

/* Sends count events and waits until the agent acknowledges every one of them. */
static void send_and_expect_ok(struct events *ev, struct tl_client *c, size_t count,
                               const char *phase)
{
    size_t first = ev->next;
    for (size_t sent = 0; sent < count; sent += BATCH_EVENTS)
        send_events(ev, c, count - sent < BATCH_EVENTS ? count - sent : BATCH_EVENTS);
    if (tl_client_flush(c, RECOVERY_TIMEOUT_MS) != 0) {
        it_agent_dump_log(&test_agent);
        fail_msg("%s: events still unanswered after %d s", phase, RECOVERY_TIMEOUT_MS / 1000);
    }
    for (size_t i = first; i < ev->next; i++) {
        if (ev->state[i] != EVENT_OK)
            fail_msg("%s: event %zu was answered RETRYABLE: %s", phase, i,
                     ev->first_retryable_message);
    }
}

static void mount_tmpfs(const char *path, const char *options)
{
    if (mkdir(path, 0750) != 0)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    if (mount("tmpfs", path, "tmpfs", 0, options) != 0)
        fail_msg("mounting a tmpfs (%s) on %s failed: %s; this test needs root "
                 "(CAP_SYS_ADMIN) to give the WAL a small disk of its own", options, path,
                 strerror(errno));
    snprintf(mounted, sizeof(mounted), "%s", path);
}

static void write_filler(const char *path, size_t bytes)
{
    static char block[1 << 16];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        fail_msg("cannot create the filler file %s: %s", path, strerror(errno));
    memset(block, 'f', sizeof(block));
    for (size_t done = 0; done < bytes; done += sizeof(block)) {
        if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
            fail_msg("writing the filler file %s failed: %s", path, strerror(errno));
    }
    close(fd);
}

/* Fails unless the agent's log contains text. */
static void expect_in_log(const struct it_agent *a, const char *text)
{
    char *log = it_read_file(a->log, NULL);
    assert_non_null(log);
    bool found = strstr(log, text) != NULL;
    free(log);
    if (!found) {
        it_agent_dump_log(a);
        fail_msg("the agent log does not contain \"%s\"", text);
    }
}

static bool log_contains(const struct it_agent *a, const char *text)
{
    char *log = it_read_file(a->log, NULL);
    assert_non_null(log);
    bool found = strstr(log, text) != NULL;
    free(log);
    return found;
}

/*
 * Sends events with both regions down until the agent rejects one with RETRYABLE. With
 * ack = "local" it acknowledges the earlier events from the WAL. With ack = "all" they stay
 * in flight.
 */
static void fill_wal(struct events *ev, struct tl_client *c, const struct full_case *fc)
{
    int64_t deadline = now_ms() + FILL_TIMEOUT_MS;
    size_t ok_before = ev->ok;

    while (ev->retryable == 0) {
        if (now_ms() > deadline) {
            it_agent_dump_log(&test_agent);
            fail_msg("%s: no RETRYABLE answer after %d s and %zu events (%zu answered OK)",
                     fc->name, FILL_TIMEOUT_MS / 1000, ev->next, ev->ok);
        }
        if (tl_client_inflight(c) < 2 * BATCH_EVENTS || strcmp(fc->ack, "all") == 0)
            send_events(ev, c, BATCH_EVENTS);
        if (tl_client_poll(c, 5) == TL_CLIENT_ECLOSED) {
            it_agent_dump_log(&test_agent);
            fail_msg("%s: the agent closed the connection: %s", fc->name,
                     tl_client_last_error(c));
        }
    }
    fprintf(stderr, "%s: first RETRYABLE after %zu events; %zu answered OK while the regions "
            "were down; message: %s\n", fc->name, ev->next, ev->ok - ok_before,
            ev->first_retryable_message);
    if (strcmp(fc->ack, "local") == 0)
        assert_true(ev->ok > ok_before);
    if (strstr(ev->first_retryable_message, fc->reply_cause) == NULL)
        fail_msg("%s: the RETRYABLE message \"%s\" does not contain \"%s\"", fc->name,
                 ev->first_retryable_message, fc->reply_cause);
}

/* Checks that every event answered OK is in the region, once or more, by value. */
static void check_region(const struct events *ev, const char *region, const char *bootstrap)
{
    struct it_records recs;
    it_consume(bootstrap, TOPIC, &recs);

    size_t *seen = calloc(ev->next ? ev->next : 1, sizeof(size_t));
    char expected[VALUE_BYTES];
    for (size_t k = 0; k < recs.count; k++) {
        const struct it_record *r = &recs.items[k];
        size_t i;
        if (sscanf(r->value, "full-disk event %zu ", &i) != 1 || i >= ev->next)
            fail_msg("region %s: unexpected record at partition %" PRId32 " offset %" PRId64,
                     region, r->partition, r->offset);
        assert_int_equal(r->value_len, format_value(ev, i, expected));
        assert_memory_equal(r->value, expected, VALUE_BYTES);
        seen[i]++;
    }

    size_t missing = 0, duplicates = 0, unacknowledged_present = 0;
    for (size_t i = 0; i < ev->next; i++) {
        if (seen[i] > 1)
            duplicates += seen[i] - 1;
        if (ev->state[i] != EVENT_OK) {
            unacknowledged_present += seen[i] > 0;
            continue;
        }
        if (seen[i] == 0 && missing++ < 5)
            fprintf(stderr, "region %s: acknowledged event %zu is missing\n", region, i);
    }
    fprintf(stderr, "region %s: %zu records, missing %zu, duplicates %zu, unacknowledged "
            "events present %zu\n", region, recs.count, missing, duplicates,
            unacknowledged_present);
    free(seen);
    it_records_free(&recs);
    assert_int_equal(missing, 0);
}

/*
 * Waits until each region contains at least as many records as events were acknowledged. A
 * region whose breaker is not closed yet is still being backfilled from the WAL. An agent
 * stopped before that ends keeps the rest in its WAL, where this test cannot see it.
 */
static void wait_for_backfill(const struct events *ev)
{
    int64_t deadline = now_ms() + RECOVERY_TIMEOUT_MS;
    for (int r = 0; r < 2; r++) {
        for (;;) {
            int64_t low[PARTITIONS], high[PARTITIONS];
            int64_t records = 0;
            it_watermarks(test_mocks[r].bootstrap, TOPIC, PARTITIONS, low, high);
            for (int p = 0; p < PARTITIONS; p++) {
                if (low[p] != 0)
                    fail_msg("region %s partition %d starts at offset %" PRId64 ": the mock "
                             "cluster deleted its oldest records", test_mocks[r].name, p,
                             low[p]);
                records += high[p];
            }
            if (records >= (int64_t)ev->ok)
                break;
            if (now_ms() > deadline) {
                it_agent_dump_log(&test_agent);
                fail_msg("region %s holds %" PRId64 " records %d s after recovery, fewer than "
                         "the %zu acknowledged events", test_mocks[r].name, records,
                         RECOVERY_TIMEOUT_MS / 1000, ev->ok);
            }
            usleep(100000);
        }
    }
}

static void run_case(const struct full_case *fc)
{
    int64_t t0 = now_ms();
    static struct events ev;
    memset(&ev, 0, sizeof(ev));
    memset(ev.padding, 'p', sizeof(ev.padding));

    /* A tmpfs for the WAL, two regions and the agent. */
    char dir[256], disk[320], wal_dir[400], filler[400];
    char name[64];
    snprintf(name, sizeof(name), "full-disk-%s", fc->name);
    it_make_dir(name, dir, sizeof(dir));
    snprintf(disk, sizeof(disk), "%s/disk", dir);
    snprintf(wal_dir, sizeof(wal_dir), "%s/wal", disk);
    snprintf(filler, sizeof(filler), "%s/filler", disk);
    mount_tmpfs(disk, fc->tmpfs_options);
    if (fc->filler_bytes)
        write_filler(filler, fc->filler_bytes);

    char topic[64];
    snprintf(topic, sizeof(topic), "%s:%d", TOPIC, PARTITIONS);
    const char *const topics[] = {topic, HEARTBEAT_TOPIC ":1", NULL};
    it_mock_start(&test_mocks[0], dir, "east", topics);
    it_mock_start(&test_mocks[1], dir, "west", topics);

    char config[4096];
    snprintf(config, sizeof(config), CONFIG_FORMAT, fc->ack, wal_dir, fc->max_bytes,
             test_mocks[0].bootstrap, test_mocks[1].bootstrap, PARTITIONS);
    it_agent_start(&test_agent, name, config, NULL);

    struct tl_client_options opts = {.on_result = on_result, .ctx = &ev};
    struct tl_client *c = NULL;
    char address[400], err[256];
    snprintf(address, sizeof(address), "unix:%s", test_agent.socket);
    if (tl_client_connect(address, &opts, &c, err, sizeof(err)) != 0)
        fail_msg("connecting to the agent at %s failed: %s", address, err);

    /* Before: both regions up. */
    send_and_expect_ok(&ev, c, EVENTS_BEFORE, "regions up");
    size_t ok_before = ev.ok;

    /* During: both regions down, the WAL fills up. */
    for (int r = 0; r < 2; r++)
        it_mock_command(&test_mocks[r], "all-down");
    fill_wal(&ev, c, fc);
    size_t ok_during = ev.ok - ok_before;
    assert_true(it_agent_alive(&test_agent));
    expect_in_log(&test_agent, fc->log_cause);
    bool hit_quota = log_contains(&test_agent, QUOTA_CASE.log_cause);
    bool hit_enospc = log_contains(&test_agent, ENOSPC_CASE.log_cause);
    fprintf(stderr, "%s: log names quota %s, ENOSPC %s\n", fc->name, hit_quota ? "yes" : "no",
            hit_enospc ? "yes" : "no");
    /* Each case must exercise its own path, not the other one. */
    assert_true(fc->filler_bytes ? !hit_quota : !hit_enospc);

    /* A second look a moment later: still up, still rejecting rather than hanging. */
    usleep(500000);
    assert_true(it_agent_alive(&test_agent));

    /* After: regions up, space freed; every event in flight ends OK, new ones get OK. */
    for (int r = 0; r < 2; r++)
        it_mock_command(&test_mocks[r], "all-up");
    if (fc->filler_bytes && unlink(filler) != 0)
        fail_msg("removing the filler file %s failed: %s", filler, strerror(errno));
    if (tl_client_flush(c, RECOVERY_TIMEOUT_MS) != 0) {
        it_agent_dump_log(&test_agent);
        fail_msg("%s: %zu events still unanswered %d s after the regions came back",
                 fc->name, tl_client_inflight(c), RECOVERY_TIMEOUT_MS / 1000);
    }

    /* Space returns as the regions catch up; until then new events may still get RETRYABLE. */
    int64_t deadline = now_ms() + RECOVERY_TIMEOUT_MS;
    size_t probe_ok = ev.ok;
    while (ev.ok == probe_ok) {
        if (now_ms() > deadline) {
            it_agent_dump_log(&test_agent);
            fail_msg("%s: new events still rejected %d s after space was freed", fc->name,
                     RECOVERY_TIMEOUT_MS / 1000);
        }
        send_events(&ev, c, 1);
        if (tl_client_flush(c, RECOVERY_TIMEOUT_MS) != 0)
            fail_msg("%s: a probe event got no answer", fc->name);
        if (ev.ok == probe_ok)
            usleep(200000);
    }
    send_and_expect_ok(&ev, c, EVENTS_AFTER, "after recovery");
    tl_client_close(c);
    assert_true(it_agent_alive(&test_agent));

    size_t rejected = 0;
    for (size_t i = 0; i < ev.next; i++)
        rejected += ev.state[i] == EVENT_RETRYABLE;
    fprintf(stderr, "%s: %zu events sent, %zu acknowledged (%zu before the outage, %zu while "
            "the regions were down, %zu after), %zu answered RETRYABLE\n", fc->name, ev.next,
            ev.ok, ok_before, ok_during, ev.ok - ok_before - ok_during, rejected);
    for (size_t i = 0; i < ev.next; i++)
        assert_true(ev.state[i] == EVENT_OK || ev.state[i] == EVENT_RETRYABLE);

    wait_for_backfill(&ev);
    int stop_rc = it_agent_stop(&test_agent);
    if (stop_rc != 0)
        it_agent_dump_log(&test_agent);
    assert_int_equal(stop_rc, 0);

    check_region(&ev, "east", test_mocks[0].bootstrap);
    check_region(&ev, "west", test_mocks[1].bootstrap);
    fprintf(stderr, "%s: done in %.1f s\n", fc->name, (double)(now_ms() - t0) / 1000);
}

static void quota_full_rejects_then_recovers(void **state)
{
    (void)state;
    run_case(&QUOTA_CASE);
}

static void enospc_rejects_then_recovers(void **state)
{
    (void)state;
    run_case(&ENOSPC_CASE);
}

/*
 * A small disk that fills again with segments both regions already have: the cursors file is
 * rewritten in place, so those segments are deleted and the agent recovers.
 */
static void enospc_delivered_segments_stall(void **state)
{
    (void)state;
    struct full_case small = ENOSPC_CASE;
    small.name = "enospc-small";
    small.tmpfs_options = "size=8m";
    small.filler_bytes = 6u << 20;
    run_case(&small);
}

int main(void)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(quota_full_rejects_then_recovers, teardown),
        cmocka_unit_test_teardown(enospc_rejects_then_recovers, teardown),
        cmocka_unit_test_teardown(enospc_delivered_segments_stall, teardown),
    };
    atexit(release_everything);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
