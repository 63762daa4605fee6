/*
 * Region module against in-process mock clusters: a fatal idempotent-producer error must
 * rebuild the region's producer and resend from its cursor, so every event still reaches the
 * region and the cursor reaches the WAL head.
 *
 * The agent's modules are driven directly (config, WAL, pipeline, regions), because a fatal
 * error can only be forced through librdkafka's rd_kafka_test_fatal_error() on the producer
 * handle itself.
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

static void fatal_error_rebuilds_producer(void **state)
{
    (void)state;
    char errstr[256], err[1024], dir[256], text[2048];
    rd_kafka_t *owners[2];
    rd_kafka_mock_cluster_t *clusters[2];

    tl_log_set_level(TL_LOG_WARN);
    for (int i = 0; i < 2; i++) {
        owners[i] = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr, sizeof(errstr));
        clusters[i] = rd_kafka_mock_cluster_new(owners[i], 1);
        rd_kafka_mock_topic_create(clusters[i], "events", 3, 1);
        rd_kafka_mock_topic_create(clusters[i], "twinlane.heartbeats", 1, 1);
    }
    it_make_dir("rebuild", dir, sizeof(dir));
    snprintf(text, sizeof(text),
             "agent = { id = \"it-rebuild\"; home_region = \"east\"; data_dir = \"%s\"; };\n"
             "wal = { fsync = \"off\"; };\n"
             "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
             "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
             "topics = ( { name = \"events\"; } );\n",
             dir, rd_kafka_mock_cluster_bootstraps(clusters[0]),
             rd_kafka_mock_cluster_bootstraps(clusters[1]));

    struct tl_config cfg;
    assert_int_equal(tl_config_parse(text, "rebuild.conf", &cfg, err, sizeof(err)), 0);
    struct tl_wal *wal;
    struct tl_wal_recovery rec;
    struct tl_wal_options opts = {.cfg = &cfg, .notify_fd = -1};
    assert_int_equal(tl_wal_open(&opts, &wal, &rec, err, sizeof(err)), 0);
    struct tl_pipeline *pipeline = tl_pipeline_new(cfg.ack_policy, cfg.max_inflight_events,
                                                   cfg.max_inflight_bytes, rec.next_seq);

    struct tl_region *regions[2];
    struct tl_timeline timelines[2];
    int32_t partitions[1];
    for (int r = 0; r < 2; r++) {
        const char *bootstrap = rd_kafka_mock_cluster_bootstraps(clusters[r]);
        assert_int_equal(tl_region_open(&cfg, r, bootstrap, pipeline, wal, &regions[r], err,
                                        sizeof(err)), 0);
        assert_int_equal(tl_region_check_topics(regions[r], 10000, partitions, err,
                                                sizeof(err)), 0);
        assert_int_equal(tl_region_prepare_heartbeats(regions[r], 10000, err, sizeof(err)), 0);
        tl_timeline_init(&timelines[r], cfg.regions[r].name);
    }
    for (int r = 0; r < 2; r++) {
        tl_region_attach(regions[r], regions, &timelines[r]);
        assert_int_equal(tl_region_start(regions[r], err, sizeof(err)), 0);
    }
    for (int r = 0; r < 2; r++)
        tl_wal_add_waiter(wal, regions[r]->wake_fd);
    assert_int_equal(tl_wal_start(wal, err, sizeof(err)), 0);

    /* Half the events, a fatal error in east, then the other half. */
    for (int i = 0; i < EVENTS; i++) {
        if (i == EVENTS / 2) {
            rd_kafka_resp_err_t kerr = rd_kafka_test_fatal_error(
                regions[0]->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                "forced by test_region_rebuild");
            assert_int_equal(kerr, RD_KAFKA_RESP_ERR_NO_ERROR);
        }
        struct tl_event *ev = make_event(&cfg, i);
        assert_int_equal(tl_wal_append(wal, ev, err, sizeof(err)), 0);
        tl_pipeline_append(pipeline, ev);
        if (i % 100 == 99) {
            tl_wal_kick(wal);
            tl_pipeline_dispatch(pipeline, tl_wal_ack_seq(wal), ignore_answer, NULL);
        }
    }
    tl_wal_kick(wal);

    /* Generous bound: both cursors reach the WAL head. */
    uint64_t head = rec.next_seq + EVENTS;
    for (int i = 0; i < 600; i++) {
        tl_pipeline_dispatch(pipeline, tl_wal_ack_seq(wal), ignore_answer, NULL);
        if (atomic_load(&regions[0]->published_cursor) == head &&
            atomic_load(&regions[1]->published_cursor) == head)
            break;
        usleep(100000);
    }
    assert_int_equal(atomic_load(&regions[0]->published_cursor), head);
    assert_int_equal(atomic_load(&regions[1]->published_cursor), head);
    assert_int_equal(atomic_load(&regions[0]->rebuilds), 1);
    assert_int_equal(atomic_load(&regions[1]->rebuilds), 0);

    for (int r = 0; r < 2; r++)
        tl_region_stop(regions[r], 1000);
    tl_pipeline_drain(pipeline, ignore_answer, NULL);
    tl_wal_remove_waiters(wal);
    for (int r = 0; r < 2; r++)
        tl_region_close(regions[r]);
    tl_wal_close(wal);
    tl_pipeline_free(pipeline);
    tl_config_free(&cfg);

    /* Every event is in the rebuilt region: count distinct values read back. */
    struct it_records east;
    it_consume(rd_kafka_mock_cluster_bootstraps(clusters[0]), "events", &east);
    char *seen = calloc(EVENTS, 1);
    size_t distinct = 0;
    for (size_t i = 0; i < east.count; i++) {
        int n = atoi(east.items[i].value + strlen("value-"));
        if (n >= 0 && n < EVENTS && !seen[n]) {
            seen[n] = 1;
            distinct++;
        }
    }
    assert_int_equal(distinct, EVENTS);
    free(seen);
    it_records_free(&east);

    for (int i = 0; i < 2; i++) {
        rd_kafka_mock_cluster_destroy(clusters[i]);
        rd_kafka_destroy(owners[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fatal_error_rebuilds_producer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
