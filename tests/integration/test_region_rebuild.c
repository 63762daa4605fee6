/*
 * Region module against in-process mock clusters: a fatal idempotent-producer error must
 * rebuild the region's producer and resend from its cursor, so every event still reaches the
 * region and the cursor reaches the WAL head.
 *
 * The fatal error comes the way a broker causes one: east's mock cluster responds to the
 * head-of-line produce request with OUT_OF_ORDER_SEQUENCE_NUMBER. (rd_kafka_test_fatal_error()
 * would race with the region thread, which destroys the handle while the test's call may
 * still be using it.) The agent's modules are driven directly (config, WAL, pipeline,
 * regions), so that the test can read the region's counters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "log.h"
#include "pipeline.h"
#include "region.h"
#include "support.h"
#include "timeline.h"
#include "wal.h"

#define EVENTS 20000
#define PRODUCE_API_KEY 0 /* Kafka protocol ApiKey of Produce */

static void ignore_answer(void *ctx, struct tl_event *ev)
{
    (void)ctx;
    (void)ev;
}

/* Builds an event with a key and value, ready for tl_wal_append. */
static struct tl_event *make_event(const struct tl_config *cfg, int i)
{
    char key[32], value[64];
    int key_len = snprintf(key, sizeof(key), "key-%d", i % 97);
    int value_len = snprintf(value, sizeof(value), "value-%d", i);
    struct tl_event *ev = calloc(1, sizeof(*ev) + (size_t)key_len + (size_t)value_len);
    uint8_t *p = (uint8_t *)(ev + 1);

    memcpy(p, key, (size_t)key_len);
    memcpy(p + key_len, value, (size_t)value_len);
    ev->topic = 0;
    ev->topic_name = cfg->topics[0].name;
    ev->partition = i % 3;
    ev->ingest_ms = tl_wallclock_ms();
    ev->has_key = true;
    ev->key = p;
    ev->key_len = (size_t)key_len;
    ev->value = p + key_len;
    ev->value_len = (size_t)value_len;
    ev->bytes = (size_t)(key_len + value_len);
    return ev;
}

/* Two in-process mock regions and the agent's modules driven directly. */
struct rig {
    rd_kafka_t *owners[2];
    rd_kafka_mock_cluster_t *clusters[2];
    struct tl_config cfg;
    struct tl_wal *wal;
    struct tl_pipeline *pipeline;
    struct tl_region *regions[2];
    struct tl_timeline timelines[2];
    uint64_t next_seq;   /* sequence number of the next event appended */
    int next_value;      /* value number of the next event appended */
};

/* Starts the regions; `extra` is appended to the configuration. */
static void rig_start(struct rig *g, const char *name, const char *extra)
{
    char errstr[256], err[1024], dir[256], text[2048];

    memset(g, 0, sizeof(*g));
    tl_log_set_level(TL_LOG_WARN);
    for (int i = 0; i < 2; i++) {
        g->owners[i] = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr,
                                    sizeof(errstr));
        g->clusters[i] = rd_kafka_mock_cluster_new(g->owners[i], 1);
        rd_kafka_mock_topic_create(g->clusters[i], "events", 3, 1);
        rd_kafka_mock_topic_create(g->clusters[i], "twinlane.heartbeats", 1, 1);
    }
    it_make_dir(name, dir, sizeof(dir));
    snprintf(text, sizeof(text),
             "agent = { id = \"it-rebuild\"; home_region = \"east\"; data_dir = \"%s\"; };\n"
             "wal = { fsync = \"off\"; };\n"
             "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
             "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
             "topics = ( { name = \"events\"; } );\n%s",
             dir, rd_kafka_mock_cluster_bootstraps(g->clusters[0]),
             rd_kafka_mock_cluster_bootstraps(g->clusters[1]), extra);

    assert_int_equal(tl_config_parse(text, "rebuild.conf", &g->cfg, err, sizeof(err)), 0);
    struct tl_wal_recovery rec;
    struct tl_wal_options opts = {.cfg = &g->cfg, .notify_fd = -1};
    assert_int_equal(tl_wal_open(&opts, &g->wal, &rec, err, sizeof(err)), 0);
    g->next_seq = rec.next_seq;
    g->pipeline = tl_pipeline_new(g->cfg.ack_policy, g->cfg.max_inflight_events,
                                  g->cfg.max_inflight_bytes, rec.next_seq);

    int32_t partitions[1];
    for (int r = 0; r < 2; r++) {
        const char *bootstrap = rd_kafka_mock_cluster_bootstraps(g->clusters[r]);
        assert_int_equal(tl_region_open(&g->cfg, r, bootstrap, g->pipeline, g->wal,
                                        &g->regions[r], err, sizeof(err)), 0);
        assert_int_equal(tl_region_check_topics(g->regions[r], 10000, partitions, err,
                                                sizeof(err)), 0);
        assert_int_equal(tl_region_prepare_heartbeats(g->regions[r], 10000, err, sizeof(err)),
                         0);
        tl_timeline_init(&g->timelines[r], g->cfg.regions[r].name);
    }
    for (int r = 0; r < 2; r++) {
        tl_region_attach(g->regions[r], g->regions, &g->timelines[r]);
        assert_int_equal(tl_region_start(g->regions[r], err, sizeof(err)), 0);
    }
    for (int r = 0; r < 2; r++)
        tl_wal_add_waiter(g->wal, g->regions[r]->wake_fd);
    assert_int_equal(tl_wal_start(g->wal, err, sizeof(err)), 0);
}

/* Appends one event to the WAL and the pipeline. */
static void rig_append(struct rig *g)
{
    char err[1024];
    struct tl_event *ev = make_event(&g->cfg, g->next_value++);

    assert_int_equal(tl_wal_append(g->wal, ev, err, sizeof(err)), 0);
    tl_pipeline_append(g->pipeline, ev);
    g->next_seq++;
    if (g->next_value % 100 == 0) {
        tl_wal_kick(g->wal);
        tl_pipeline_dispatch(g->pipeline, tl_wal_ack_seq(g->wal), ignore_answer, NULL);
    }
}

/* Waits (generously, up to 60 s) until both regions' cursors reach the WAL head. */
static void rig_wait_caught_up(struct rig *g)
{
    tl_wal_kick(g->wal);
    for (int i = 0; i < 600; i++) {
        tl_pipeline_dispatch(g->pipeline, tl_wal_ack_seq(g->wal), ignore_answer, NULL);
        if (atomic_load(&g->regions[0]->published_cursor) == g->next_seq &&
            atomic_load(&g->regions[1]->published_cursor) == g->next_seq)
            break;
        usleep(100000);
    }
    assert_int_equal(atomic_load(&g->regions[0]->published_cursor), g->next_seq);
    assert_int_equal(atomic_load(&g->regions[1]->published_cursor), g->next_seq);
}

/*
 * Makes east's next produce request fail with OUT_OF_ORDER_SEQUENCE_NUMBER. When that request
 * is the head of line (nothing else unacknowledged in its partitions), librdkafka treats it as
 * a sequence desynchronization and raises a fatal error.
 */
static void rig_inject_fatal_error(struct rig *g)
{
    rd_kafka_mock_push_request_errors(g->clusters[0], PRODUCE_API_KEY, 1,
                                      RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
}

/* Waits (up to 10 s) until east has rebuilt its producer `count` times in all. */
static void rig_wait_rebuilds(struct rig *g, uint64_t count)
{
    for (int i = 0; i < 200 && atomic_load(&g->regions[0]->rebuilds) < count; i++)
        usleep(50000);
    assert_int_equal(atomic_load(&g->regions[0]->rebuilds), count);
}

/* Stops everything, then checks that east contains every event value appended. */
static void rig_stop_and_check_east(struct rig *g)
{
    for (int r = 0; r < 2; r++)
        tl_region_stop(g->regions[r], 1000);
    tl_pipeline_drain(g->pipeline, ignore_answer, NULL);
    tl_wal_remove_waiters(g->wal);
    for (int r = 0; r < 2; r++)
        tl_region_close(g->regions[r]);
    tl_wal_close(g->wal);
    tl_pipeline_free(g->pipeline);
    tl_config_free(&g->cfg);

    /* Count distinct values read back. */
    struct it_records east;
    it_consume(rd_kafka_mock_cluster_bootstraps(g->clusters[0]), "events", &east);
    char *seen = calloc((size_t)g->next_value, 1);
    int distinct = 0;
    for (size_t i = 0; i < east.count; i++) {
        int n = atoi(east.items[i].value + strlen("value-"));
        if (n >= 0 && n < g->next_value && !seen[n]) {
            seen[n] = 1;
            distinct++;
        }
    }
    assert_int_equal(distinct, g->next_value);
    free(seen);
    it_records_free(&east);

    for (int i = 0; i < 2; i++) {
        rd_kafka_mock_cluster_destroy(g->clusters[i]);
        rd_kafka_destroy(g->owners[i]);
    }
}

static void fatal_error_rebuilds_producer(void **state)
{
    (void)state;
    struct rig g;

    rig_start(&g, "rebuild", "");
    /* Half the events, a fatal error in east at the first request after them, then the
     * other half. */
    for (int i = 0; i < EVENTS / 2; i++)
        rig_append(&g);
    rig_wait_caught_up(&g);
    rig_inject_fatal_error(&g);
    for (int i = 0; i < EVENTS / 2; i++)
        rig_append(&g);
    rig_wait_rebuilds(&g, 1);
    rig_wait_caught_up(&g);
    assert_int_equal(atomic_load(&g.regions[0]->rebuilds), 1);
    /* The failed batch is a producer error, not a region failure, so no failover. */
    assert_int_equal(atomic_load(&g.regions[0]->breaker_transitions), 0);
    assert_int_equal(atomic_load(&g.regions[1]->rebuilds), 0);
    rig_stop_and_check_east(&g);
}

/*
 * A heartbeat still unanswered when the old producer is destroyed never gets its delivery
 * report. The region must stop waiting for it, because that would stop heartbeats and, after
 * stall_timeout_ms, trip the breaker of a healthy region.
 */
static void heartbeat_in_flight_at_rebuild_keeps_breaker_closed(void **state)
{
    (void)state;
    struct rig g;

    rig_start(&g, "rebuild-heartbeat", "heartbeat = { interval_ms = 100; };\n");
    for (int i = 0; i < 100; i++)
        rig_append(&g);
    rig_wait_caught_up(&g);

    /*
     * East responds after 1 s, below the 1.5 s stall deadline. With heartbeats 100 ms apart,
     * one is in flight nearly all the time, so almost surely also when the fatal error comes.
     */
    rd_kafka_mock_broker_set_rtt(g.clusters[0], 1, 1000);
    int64_t sent_before = atomic_load(&g.regions[0]->heartbeat_sent_wallclock_ms);
    for (int i = 0; i < 100; i++) {
        if (atomic_load(&g.regions[0]->heartbeat_sent_wallclock_ms) > sent_before)
            break;
        usleep(50000);
    }
    assert_true(atomic_load(&g.regions[0]->heartbeat_sent_wallclock_ms) > sent_before);
    /* Past librdkafka's linger, so that the event goes in a request of its own. */
    usleep(100000);
    uint64_t transitions = atomic_load(&g.regions[0]->breaker_transitions);

    rig_inject_fatal_error(&g);
    rig_append(&g);
    rig_wait_rebuilds(&g, 1);
    rd_kafka_mock_broker_set_rtt(g.clusters[0], 1, 0);

    /* Well past the stall deadline of the lost heartbeat, with live events flowing. */
    for (int i = 0; i < 30; i++) {
        for (int k = 0; k < 10; k++)
            rig_append(&g);
        usleep(100000);
    }
    rig_wait_caught_up(&g);
    assert_int_equal(atomic_load(&g.regions[0]->breaker_transitions), transitions);
    assert_int_equal(atomic_load(&g.regions[0]->published_state), TL_BREAKER_CLOSED);
    rig_stop_and_check_east(&g);
}

int main(void)
{
    it_watchdog_start(240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fatal_error_rebuilds_producer),
        cmocka_unit_test(heartbeat_in_flight_at_rebuild_keeps_breaker_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
