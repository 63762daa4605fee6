/*
 * A region: one idempotent librdkafka producer (acks=all) for one Kafka cluster, and the
 * thread that feeds it from the WAL.
 *
 * librdkafka talks to one cluster per client instance, so each region owns its own rd_kafka_t.
 * The region thread produces events in sequence order starting at its cursor: from memory when
 * the pipeline still holds the event, otherwise read back from the WAL, so a region that falls
 * behind catches up from disk with bounded memory. It serves the producer's delivery reports:
 *   - success, or a failure that belongs to the event itself (record too large, invalid
 *     record or timestamp): the event is final in this region and the pipeline is told;
 *   - any other failure (timeouts, broker errors after librdkafka's own retries): the region
 *     stops sending, waits for its in-flight events, backs off, and sends again from its
 *     cursor, so the region still holds every event, possibly twice, in order per partition;
 *   - a fatal producer error (rd_kafka_fatal_error): the producer is destroyed and built
 *     again, and sending restarts from the cursor.
 * The cursor (every event below it is final in this region) goes to the WAL, which persists it.
 * Waking is event-driven: the WAL writes to wake_fd when more events are durable, and
 * librdkafka writes to a pipe when delivery reports are ready, so the thread sleeps in poll(2)
 * otherwise.
 *
 * Every record carries the event's own headers plus:
 *   twinlane-id      "<agent id>:<sequence number>", unique per agent across restarts
 *   twinlane-origin  the agent's home region
 *   twinlane-ts      acceptance time, milliseconds since the Unix epoch (also the record
 *                    timestamp, so both regions hold the same timestamp)
 *
 * Threads: tl_region_open, _check_topics, _prepare_heartbeats, _defer_checks, _start, _stop
 * and _close run on the main thread. Everything else inside the region runs on its own thread
 * or librdkafka's, including the deferred topic checks of a region that did not respond at
 * start.
 */
#ifndef TL_REGION_H
#define TL_REGION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "breaker.h"
#include "config.h"
#include "log.h"
#include "timeline.h"
#include "pipeline.h"
#include "wal.h"

/* Events taken from, and results handed to, the pipeline under one lock. */
#define TL_REGION_BATCH 256

struct tl_region {
    int index;
    const struct tl_config *cfg;
    const char *name;
    char *bootstrap;
    rd_kafka_t *rk;
    rd_kafka_topic_t **topics;        /* one handle per configured topic */
    struct tl_pipeline *pipeline;
    struct tl_wal *wal;

    /* Region thread only (and the main thread once the region thread has stopped). */
    uint64_t cursor;                  /* every event below is final in this region */
    uint64_t send_seq;                /* next sequence number to produce */
    uint8_t *window;                  /* state of seq in [cursor, cursor + window_cap) */
    size_t window_cap;                /* power of two */
    size_t inflight;                  /* produced, delivery report not yet served */
    bool resend;                      /* a retriable failure: resend from the cursor */
    int64_t resend_at_ms;
    int resend_backoff_ms;
    struct tl_wal_reader *reader;
    struct tl_event *held;            /* refused with QUEUE_FULL; sent first next time */
    /* Live events taken from the pipeline in one run, sent from ahead_pos on. */
    struct tl_event *ahead[TL_REGION_BATCH];
    size_t ahead_pos;
    size_t ahead_count;
    /* Final results not yet handed to the pipeline; each holds a reference to its event. */
    struct tl_report reports[TL_REGION_BATCH];
    size_t report_count;
    bool fatal;                       /* a fatal error was reported; rebuild the producer */
    bool all_brokers_down;            /* reported by librdkafka since the last loop round */
    /* Set when the region did not respond at start: its topics are checked before it gets
     * events (tl_region_defer_checks). */
    bool unchecked;
    const int32_t *expected_partitions; /* per topic, from the region checked at start */
    char unchecked_reason[256];
    int64_t unchecked_since_ms;       /* wall clock */
    char last_check_error[512];       /* of the last failed deferred check, "" if none */
    /* Authentication or TLS failure of the last failed connection attempt, 0 when metadata
     * succeeded or a later attempt failed otherwise. Written and read by the thread that
     * polls (the main thread until start). */
    int auth_error;
    char auth_error_reason[256];
    int stop_timeout_ms;              /* set before stopping is */

    /* Circuit breaker and probes (region thread only, except the published copies). */
    struct tl_breaker breaker;
    int64_t last_progress_ms;         /* last delivery report, or when sending resumed */
    int64_t clock_ms;                 /* time of this loop round, read once, not per report */
    bool delivered_once;              /* a delivery report arrived since the producer started */
    double backfill_tokens;
    int64_t backfill_refill_ms;
    rd_kafka_topic_t *heartbeat_topic;
    int32_t heartbeat_partitions;
    uint64_t heartbeat_seq;
    int64_t next_heartbeat_ms;
    int64_t heartbeat_sent_ms;        /* 0 when no heartbeat is in flight */
    struct tl_region **peers;         /* every region, for the heartbeat's contents */
    struct tl_timeline *timeline;
    pthread_mutex_t fence_lock;       /* fence_request and fence_who, set by admin threads */
    atomic_int fence_request;         /* 0 none, 1 fence, 2 unfence */
    char fence_who[128];
    atomic_int published_state;       /* enum tl_breaker_state, for other threads */
    atomic_bool published_backfilling;
    pthread_mutex_t reason_lock;      /* published_reason */
    char published_reason[1088];      /* the breaker's reason for its last transition */

    /* Newest event written per topic-partition, for heartbeats (positions_lock). */
    pthread_mutex_t positions_lock;
    int32_t *partition_counts;        /* per topic */
    size_t *position_base;            /* per topic: index of its partition 0 in positions */
    struct tl_position {
        int64_t offset;
        uint64_t seq;                 /* 0: nothing written yet */
    } *positions;

    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;
    int wake_fd;                      /* eventfd written by the WAL (tl_wal_add_waiter) */
    int rk_pipe[2];                   /* librdkafka signals ready delivery reports here */

    /* Counters, read by any thread. */
    atomic_uint_fast64_t produced;
    atomic_uint_fast64_t delivered;
    atomic_uint_fast64_t failed;          /* final failures that belong to one event */
    atomic_uint_fast64_t retried;         /* deliveries that failed and were sent again */
    atomic_uint_fast64_t rebuilds;        /* producers rebuilt after a fatal error */
    atomic_uint_fast64_t published_cursor;
    atomic_uint_fast64_t breaker_transitions; /* breaker state changes, for metrics */
    atomic_int_fast64_t heartbeat_sent_wallclock_ms; /* last heartbeat handed to librdkafka */

    struct tl_ratelimit error_log;
    struct tl_ratelimit rdkafka_log;  /* librdkafka's warnings and errors */
};

/*
 * Creates the region's producer for the given bootstrap servers (the region's own, or an
 * embedded cluster's), with the configured librdkafka properties. Does not connect yet.
 * Returns 0 or TL_EKAFKA with err naming the property librdkafka rejected.
 */
int tl_region_open(const struct tl_config *cfg, int index, const char *bootstrap,
                   struct tl_pipeline *pipeline, struct tl_wal *wal, struct tl_region **out,
                   char *err, size_t errsize);

/*
 * Fetches metadata for every configured topic, retrying until timeout_ms, and stores each
 * topic's partition count in partitions[topic]. Returns 0, TL_ENOTFOUND when a topic does not
 * exist in this region, or TL_ETIMEDOUT when the cluster did not answer, with err naming the
 * region, bootstrap servers and topic.
 */
int tl_region_check_topics(struct tl_region *r, int timeout_ms, int32_t *partitions, char *err,
                           size_t errsize);

/*
 * Checks that the heartbeat topic exists in the region, creating it (one partition,
 * replication factor up to 3) when it does not. Returns 0, or TL_EKAFKA with err naming
 * region, topic and librdkafka's reason.
 */
int tl_region_prepare_heartbeats(struct tl_region *r, int timeout_ms, char *err, size_t errsize);

/*
 * Gives the region what it needs beyond its own producer: every region (for heartbeats) and
 * its failover timeline. Call before tl_region_start.
 */
void tl_region_attach(struct tl_region *r, struct tl_region **peers, struct tl_timeline *timeline);

/*
 * Marks a region that did not respond at start: it starts with its breaker open, and its
 * topics (partition counts equal to expected[topic]) and heartbeat topic are checked when its
 * breaker first probes. Until they pass it gets no event. since_wallclock_ms, when the
 * start-up checks began, is the first failure of its failover timeline. Call before
 * tl_region_start; expected must outlive the region.
 */
void tl_region_defer_checks(struct tl_region *r, const int32_t *expected, const char *reason,
                            int64_t since_wallclock_ms);

/* Copies the reason of the breaker's last transition ("" before the first) into out. Any
 * thread. */
void tl_region_breaker_reason(struct tl_region *r, char *out, size_t outsize);

/* Asks the region thread to fence (true) or unfence (false) its breaker. Any thread. */
void tl_region_request_fence(struct tl_region *r, bool fence, const char *who);

/* Starts the region thread, sending from the WAL cursor. Returns 0 or TL_EIO. */
int tl_region_start(struct tl_region *r, char *err, size_t errsize);

/*
 * Stops sending, waits up to timeout_ms for librdkafka to deliver what it holds (serving the
 * delivery reports), then stops the thread; events still undelivered stay in the WAL for the
 * next start.
 */
void tl_region_stop(struct tl_region *r, int timeout_ms);

/* Destroys the producer and frees the region. Accepts NULL. */
void tl_region_close(struct tl_region *r);

#endif
