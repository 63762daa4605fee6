/*
 * Region: producer set-up, the pump thread (memory or WAL, in sequence order), delivery
 * reports, resend from the cursor, fatal-error rebuild, and the start-up topic check.
 *
 * Window: window[seq % window_cap] holds the state of seq for cursor <= seq < cursor +
 * window_cap: SLOT_FREE (not produced since the last resend), SLOT_SENT (with librdkafka) or
 * SLOT_DONE (final). The cursor moves over DONE slots, freeing them.
 */
#include "region.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <syslog.h>
#include <unistd.h>

#include "error.h"
#include "mem.h"
#include "partitioner.h"
#include "twinlane.pb-c.h"

enum { SLOT_FREE = 0, SLOT_SENT = 1, SLOT_DONE = 2 };

/* Longest sleep of an idle region thread; a safety net, since wake-ups are event-driven. */
#define IDLE_POLL_MS 200
#define RESEND_BACKOFF_MIN_MS 250
#define RESEND_BACKOFF_MAX_MS 5000
/* Backlog at or below which a backfilling region counts as caught up and its breaker closes. */
#define BACKFILL_DONE_BACKLOG 1000
/*
 * Stall deadline until the producer's first delivery report: a fresh producer fetches
 * metadata and a producer id first, which can take seconds on a real cluster that just
 * started, and that must not open the breaker.
 */
#define FIRST_DELIVERY_STALL_MS 10000
/* Time limit of each deferred check (topics, heartbeat topic) of a region that did not
 * respond at start. */
#define DEFERRED_CHECK_TIMEOUT_MS 5000
/* Probe (heartbeat) interval while half-open, so that recovery is noticed quickly. */
#define PROBE_INTERVAL_MS 250

/* Opaque of heartbeat messages, which distinguishes them from events in delivery reports. */
static char heartbeat_marker;

static void on_transition(struct tl_region *r, enum tl_breaker_state old_state,
                          bool old_backfilling);

static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    struct tl_region *r = rd_kafka_opaque(rk);
    uint64_t suppressed = 0;

    /* A region that is down makes librdkafka log every reconnect; keep a sample. */
    if (r && level <= LOG_WARNING && !tl_ratelimit_allow(&r->rdkafka_log, &suppressed))
        return;
    if (suppressed)
        tl_log_warn("rdkafka", "suppressed librdkafka log lines region=%s count=%" PRIu64,
                    r->name, suppressed);
    enum tl_log_level ours = level <= LOG_ERR ? TL_LOG_ERROR
                             : level <= LOG_WARNING ? TL_LOG_WARN
                             : level <= LOG_INFO ? TL_LOG_INFO
                                                 : TL_LOG_DEBUG;
    tl_log(ours, "rdkafka", "%s region=%s facility=%s", buf, r ? r->name : "?", facility);
}

/* Returns whether err means that the cluster rejected the client's credentials or TLS set-up,
 * which waiting does not fix. */
static bool error_is_auth(int err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR__SSL:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE:
        return true;
    default:
        return false;
    }
}

/* Called from rd_kafka_poll: on the main thread during the start-up checks, then on the region
 * thread. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct tl_region *r = opaque;
    uint64_t suppressed;

    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        r->all_brokers_down = true;
    if (error_is_auth(err)) {
        r->auth_error = err;
        snprintf(r->auth_error_reason, sizeof(r->auth_error_reason), "%s", reason);
    } else if (err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        r->auth_error = 0; /* the brokers are down now, so an earlier rejection is stale */
    }
    if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        tl_log_error("region", "producer hit a fatal error, rebuilding it region=%s error=%s "
                     "reason=\"%s\"", r->name, rd_kafka_err2name(err), reason);
        r->fatal = true;
        return;
    }
    if (!tl_ratelimit_allow(&r->error_log, &suppressed))
        return;
    tl_log_warn("region", "producer error region=%s error=%s reason=\"%s\" suppressed=%" PRIu64,
                r->name, rd_kafka_err2name(err), reason, suppressed);
}

/*
 * Returns whether a delivery error belongs to the event itself, so that sending it again
 * cannot succeed: such an event is final (failed) in this region instead of being resent.
 */
static bool error_is_per_event(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
        return true;
    default:
        return false;
    }
}

static uint8_t *slot(struct tl_region *r, uint64_t seq)
{
    return &r->window[seq & (r->window_cap - 1)];
}

/* Moves the cursor over final events and publishes it to the WAL. */
static void advance_cursor(struct tl_region *r)
{
    uint64_t before = r->cursor;
    while (r->cursor < r->send_seq && *slot(r, r->cursor) == SLOT_DONE) {
        *slot(r, r->cursor) = SLOT_FREE;
        r->cursor++;
    }
    if (r->cursor != before) {
        tl_wal_set_cursor(r->wal, r->index, r->cursor);
        atomic_store(&r->published_cursor, r->cursor);
    }
}

/*
 * Hands the queued final results to the pipeline under one lock and records each region
 * position a success moved. Region thread.
 */
static void flush_reports(struct tl_region *r)
{
    if (r->report_count == 0)
        return;
    uint64_t delivered = 0;
    pthread_mutex_lock(&r->positions_lock);
    for (size_t i = 0; i < r->report_count; i++) {
        const struct tl_report *rep = &r->reports[i];
        const struct tl_event *ev = rep->ev;
        if (rep->err)
            continue;
        delivered++;
        if (ev->topic < 0 || ev->partition >= r->partition_counts[ev->topic])
            continue;
        struct tl_position *pos = &r->positions[r->position_base[ev->topic] + ev->partition];
        if (ev->seq > pos->seq) {
            pos->seq = ev->seq;
            pos->offset = rep->offset;
        }
    }
    pthread_mutex_unlock(&r->positions_lock);
    atomic_fetch_add(&r->delivered, delivered);
    tl_pipeline_report_many(r->pipeline, r->index, r->reports, r->report_count);
    for (size_t i = 0; i < r->report_count; i++)
        tl_event_unref(r->reports[i].ev);
    r->report_count = 0;
}

/* Serves librdkafka's callbacks, then hands their results to the pipeline. */
static void serve(struct tl_region *r, int timeout_ms)
{
    rd_kafka_poll(r->rk, timeout_ms);
    flush_reports(r);
}

/*
 * Records a final result (success or a per-event failure) for ev in this region. Takes over
 * the caller's reference, which the queued report keeps until flush_reports.
 */
static void finish_event(struct tl_region *r, struct tl_event *ev, rd_kafka_resp_err_t err,
                         int64_t offset)
{
    uint64_t suppressed;

    if (ev->seq >= r->cursor && ev->seq < r->cursor + r->window_cap)
        *slot(r, ev->seq) = SLOT_DONE;
    if (err) {
        atomic_fetch_add(&r->failed, 1);
        if (tl_ratelimit_allow(&r->error_log, &suppressed))
            tl_log_warn("region", "event rejected by the region, not retried region=%s seq=%"
                        PRIu64 " topic=%s partition=%" PRId32 " error=%s suppressed=%" PRIu64,
                        r->name, ev->seq, ev->topic_name, ev->partition, rd_kafka_err2name(err),
                        suppressed);
    } else {
        r->resend_backoff_ms = RESEND_BACKOFF_MIN_MS;
        enum tl_breaker_state before = r->breaker.state;
        bool before_backfilling = r->breaker.backfilling;
        if (tl_breaker_record_success(&r->breaker, r->clock_ms))
            on_transition(r, before, before_backfilling);
    }
    if (r->report_count == TL_REGION_BATCH)
        flush_reports(r);
    r->reports[r->report_count++] = (struct tl_report){.ev = ev, .err = err, .offset = offset};
    advance_cursor(r);
}

/*
 * Returns whether the producer has hit a fatal error. librdkafka records it before it queues
 * the error event or any delivery report, so this is true whichever of them is served first.
 */
static bool producer_failed(struct tl_region *r)
{
    return r->fatal || rd_kafka_fatal_error(r->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Schedules a resend from the cursor after a failure that the region may recover from. */
static void schedule_resend(struct tl_region *r, const struct tl_event *ev,
                            rd_kafka_resp_err_t err)
{
    uint64_t suppressed;

    atomic_fetch_add(&r->retried, 1);
    /*
     * Purges are the agent's own doing, and a fatal error is the producer's, not the region's.
     * Neither counts against the breaker, including the batch whose response raised the fatal
     * error (for example OUT_OF_ORDER_SEQUENCE_NUMBER).
     */
    bool purged = err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT ||
                  err == RD_KAFKA_RESP_ERR__FATAL || producer_failed(r);
    if (!purged) {
        enum tl_breaker_state before = r->breaker.state;
        bool before_backfilling = r->breaker.backfilling;
        if (r->breaker.state == TL_BREAKER_CLOSED)
            tl_timeline_mark(r->timeline, TL_STEP_FIRST_FAILURE, NULL);
        if (tl_breaker_record_failure(&r->breaker, tl_now_ms(), rd_kafka_err2name(err)))
            on_transition(r, before, before_backfilling);
    }
    if (r->resend)
        return;
    r->resend = true;
    r->resend_at_ms = tl_now_ms() + r->resend_backoff_ms;
    if (!purged && tl_ratelimit_allow(&r->error_log, &suppressed))
        tl_log_warn("region", "delivery failed, sending again from the cursor region=%s seq=%"
                    PRIu64 " cursor=%" PRIu64 " error=%s backoff_ms=%d suppressed=%" PRIu64,
                    r->name, ev->seq, r->cursor, rd_kafka_err2name(err), r->resend_backoff_ms,
                    suppressed);
    r->resend_backoff_ms *= 2;
    if (r->resend_backoff_ms > RESEND_BACKOFF_MAX_MS)
        r->resend_backoff_ms = RESEND_BACKOFF_MAX_MS;
}

static void on_heartbeat_delivery(struct tl_region *r, const rd_kafka_message_t *msg)
{
    enum tl_breaker_state before = r->breaker.state;
    bool before_backfilling = r->breaker.backfilling;
    int64_t now = tl_now_ms();
    bool purged = msg->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                  msg->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT ||
                  (msg->err && producer_failed(r));
    bool changed = false;

    r->heartbeat_sent_ms = 0;
    if (purged)
        return;
    if (tl_breaker_wants_probes(&r->breaker))
        changed = tl_breaker_record_probe(&r->breaker, now, msg->err == 0,
                                          rd_kafka_err2name(msg->err));
    else if (msg->err)
        changed = tl_breaker_record_failure(&r->breaker, now, rd_kafka_err2name(msg->err));
    else
        changed = tl_breaker_record_success(&r->breaker, now);
    if (msg->err) {
        uint64_t suppressed;
        if (tl_ratelimit_allow(&r->error_log, &suppressed))
            tl_log_warn("region", "heartbeat failed region=%s error=%s suppressed=%" PRIu64,
                        r->name, rd_kafka_err2name(msg->err), suppressed);
    }
    if (changed)
        on_transition(r, before, before_backfilling);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    struct tl_region *r = opaque;

    r->last_progress_ms = r->clock_ms;
    r->delivered_once = true;
    if (msg->_private == &heartbeat_marker) {
        on_heartbeat_delivery(r, msg);
        return;
    }
    struct tl_event *ev = msg->_private;
    r->inflight--;
    if (msg->err == 0 || error_is_per_event(msg->err)) {
        finish_event(r, ev, msg->err, msg->err ? -1 : msg->offset);
    } else {
        schedule_resend(r, ev, msg->err);
        tl_event_unref(ev);
    }
}

static int set_property(rd_kafka_conf_t *conf, const char *region, const char *name,
                        const char *value, char *err, size_t errsize)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return tl_error(err, errsize, TL_EKAFKA, "region %s: librdkafka property %s: %s", region,
                        name, errstr);
    return 0;
}

/* Builds the producer configuration: agent defaults, then the operator's properties, then the
 * settings the agent's guarantees depend on, which nothing may override. */
static int build_conf(struct tl_region *r, const char *bootstrap, rd_kafka_conf_t **out,
                      char *err, size_t errsize)
{
    const struct tl_region_config *rc = &r->cfg->regions[r->index];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char value[64];
    char client_id[160];
    int rc_set = 0;

    snprintf(client_id, sizeof(client_id), "twinlane-%s-%s", r->cfg->agent_id, rc->name);
    rc_set |= set_property(conf, rc->name, "client.id", client_id, err, errsize);
    rc_set |= set_property(conf, rc->name, "linger.ms", "5", err, errsize);
    /*
     * librdkafka backs off reconnects up to 10 s by default; a region that returns would then
     * fail the half-open probes for that long. Retry connections at most a second apart.
     */
    rc_set |= set_property(conf, rc->name, "reconnect.backoff.ms", "100", err, errsize);
    rc_set |= set_property(conf, rc->name, "reconnect.backoff.max.ms", "1000", err, errsize);
    /* librdkafka's queue must hold everything the pipeline lets in flight, so produce calls
     * never meet QUEUE_FULL in normal operation. */
    size_t max_msgs = r->window_cap + 1024;
    if (max_msgs > 2147483647)
        max_msgs = 2147483647;
    snprintf(value, sizeof(value), "%zu", max_msgs);
    rc_set |= set_property(conf, rc->name, "queue.buffering.max.messages", value, err, errsize);
    size_t max_kbytes = r->cfg->max_inflight_bytes / 1024 * 2 + 65536;
    if (max_kbytes > 2147483647)
        max_kbytes = 2147483647;
    snprintf(value, sizeof(value), "%zu", max_kbytes);
    rc_set |= set_property(conf, rc->name, "queue.buffering.max.kbytes", value, err, errsize);
    /*
     * librdkafka refuses messages over message.max.bytes (default 1000000) locally, so the
     * default must leave room for the largest event the agent accepts plus the twinlane
     * headers. The broker's own limit (message.max.bytes, topic max.message.bytes) still
     * applies; an event over it fails in that region as MSG_SIZE_TOO_LARGE.
     */
    size_t max_message = r->cfg->max_event_bytes + 4096;
    if (max_message > 1000000) {
        snprintf(value, sizeof(value), "%zu", max_message);
        rc_set |= set_property(conf, rc->name, "message.max.bytes", value, err, errsize);
    }
    if (rc_set)
        goto fail;

    for (size_t i = 0; i < rc->property_count; i++) {
        if (set_property(conf, rc->name, rc->property_names[i], rc->property_values[i], err,
                         errsize) != 0)
            goto fail;
    }

    rc_set |= set_property(conf, rc->name, "bootstrap.servers", bootstrap, err, errsize);
    rc_set |= set_property(conf, rc->name, "enable.idempotence", "true", err, errsize);
    rc_set |= set_property(conf, rc->name, "acks", "all", err, errsize);
    rc_set |= set_property(conf, rc->name, "allow.auto.create.topics", "false", err, errsize);
    if (rc_set)
        goto fail;

    rd_kafka_conf_set_opaque(conf, r);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    *out = conf;
    return 0;

fail:
    rd_kafka_conf_destroy(conf);
    return TL_EKAFKA;
}

static int create_producer(struct tl_region *r, char *err, size_t errsize)
{
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    int rc = build_conf(r, r->bootstrap, &conf, err, errsize);
    if (rc != 0)
        return rc;
    r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!r->rk) {
        rd_kafka_conf_destroy(conf);
        return tl_error(err, errsize, TL_EKAFKA, "region %s: cannot create producer: %s",
                        r->name, errstr);
    }
    for (size_t t = 0; t < r->cfg->topic_count; t++)
        r->topics[t] = rd_kafka_topic_new(r->rk, r->cfg->topics[t].name, NULL);
    if (r->heartbeat_partitions > 0)
        r->heartbeat_topic = rd_kafka_topic_new(r->rk, r->cfg->heartbeat_topic, NULL);
    r->heartbeat_sent_ms = 0;
    rd_kafka_queue_t *main_queue = rd_kafka_queue_get_main(r->rk);
    rd_kafka_queue_io_event_enable(main_queue, r->rk_pipe[1], "1", 1);
    rd_kafka_queue_destroy(main_queue);
    return 0;
}

static void destroy_producer(struct tl_region *r)
{
    if (r->heartbeat_topic)
        rd_kafka_topic_destroy(r->heartbeat_topic);
    r->heartbeat_topic = NULL;
    for (size_t t = 0; r->topics && t < r->cfg->topic_count; t++) {
        if (r->topics[t])
            rd_kafka_topic_destroy(r->topics[t]);
        r->topics[t] = NULL;
    }
    if (r->rk)
        rd_kafka_destroy(r->rk);
    r->rk = NULL;
}

int tl_region_open(const struct tl_config *cfg, int index, const char *bootstrap,
                   struct tl_pipeline *pipeline, struct tl_wal *wal, struct tl_region **out,
                   char *err, size_t errsize)
{
    struct tl_region *r = tl_xcalloc(1, sizeof(*r));
    int rc;

    r->index = index;
    r->cfg = cfg;
    r->name = cfg->regions[index].name;
    r->bootstrap = tl_xstrdup(bootstrap);
    r->pipeline = pipeline;
    r->wal = wal;
    r->wake_fd = -1;
    r->rk_pipe[0] = r->rk_pipe[1] = -1;
    r->error_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 5);
    r->rdkafka_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 10);
    r->resend_backoff_ms = RESEND_BACKOFF_MIN_MS;
    r->window_cap = 1;
    while (r->window_cap < cfg->max_inflight_events)
        r->window_cap <<= 1;
    r->window = tl_xcalloc(r->window_cap, 1);
    r->topics = tl_xcalloc(cfg->topic_count, sizeof(*r->topics));
    r->partition_counts = tl_xcalloc(cfg->topic_count, sizeof(*r->partition_counts));
    r->position_base = tl_xcalloc(cfg->topic_count, sizeof(*r->position_base));
    pthread_mutex_init(&r->positions_lock, NULL);
    pthread_mutex_init(&r->fence_lock, NULL);
    pthread_mutex_init(&r->reason_lock, NULL);

    r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->wake_fd < 0 || pipe2(r->rk_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        rc = tl_error(err, errsize, TL_EIO, "region %s: cannot create wake-up descriptors: %s",
                      r->name, strerror(errno));
        goto fail;
    }
    rc = create_producer(r, err, errsize);
    if (rc != 0)
        goto fail;

    tl_log_info("region", "producer created region=%s bootstrap=%s idempotence=true acks=all",
                r->name, bootstrap);
    *out = r;
    return 0;

fail:
    tl_region_close(r);
    return rc;
}

/* Fetches each topic's partition count into partitions[topic], as tl_region_check_topics does. */
static int fetch_partition_counts(struct tl_region *r, int timeout_ms, int32_t *partitions,
                                  char *err, size_t errsize)
{
    int64_t deadline = tl_now_ms() + timeout_ms;

    for (size_t t = 0; t < r->cfg->topic_count; t++) {
        const char *topic = r->cfg->topics[t].name;
        rd_kafka_resp_err_t kerr;

        for (;;) {
            const struct rd_kafka_metadata *md = NULL;
            int64_t left = deadline - tl_now_ms();
            kerr = rd_kafka_metadata(r->rk, 0, r->topics[t], &md, left > 1 ? (int)left : 1);
            if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                kerr = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
                partitions[t] = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
                rd_kafka_metadata_destroy(md);
            }
            if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                r->auth_error = 0;
                break;
            }
            /* Serves the error callback, which records authentication and TLS failures. */
            rd_kafka_poll(r->rk, 0);
            if (r->auth_error)
                return tl_error(err, errsize, TL_EKAFKA, "region %s (bootstrap %s) rejected the "
                                "connection: %s: %s; check the region's security.protocol, "
                                "sasl.* and ssl.* properties", r->name, r->bootstrap,
                                rd_kafka_err2name(r->auth_error), r->auth_error_reason);
            if (kerr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                kerr == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
                return tl_error(err, errsize, TL_ENOTFOUND, "topic %s does not exist in region %s "
                                "(bootstrap %s); create it with the same partition count as in "
                                "the other region", topic, r->name, r->bootstrap);
            if (tl_now_ms() >= deadline)
                return tl_error(err, errsize, TL_ETIMEDOUT, "region %s (bootstrap %s) did not "
                                "return metadata for topic %s within %d ms: %s; check that the "
                                "brokers are reachable", r->name, r->bootstrap, topic, timeout_ms,
                                rd_kafka_err2str(kerr));
        }
        tl_log_info("region", "topic found region=%s topic=%s partitions=%" PRId32, r->name,
                    topic, partitions[t]);
    }

    return 0;
}

/* Stores the partition counts that heartbeats report positions for. */
static void install_partition_counts(struct tl_region *r, const int32_t *partitions)
{
    size_t total = 0;
    for (size_t t = 0; t < r->cfg->topic_count; t++)
        total += (size_t)partitions[t];
    struct tl_position *positions = tl_xcalloc(total ? total : 1, sizeof(*positions));

    pthread_mutex_lock(&r->positions_lock);
    total = 0;
    for (size_t t = 0; t < r->cfg->topic_count; t++) {
        r->partition_counts[t] = partitions[t];
        r->position_base[t] = total;
        total += (size_t)partitions[t];
    }
    free(r->positions);
    r->positions = positions;
    pthread_mutex_unlock(&r->positions_lock);
}

int tl_region_check_topics(struct tl_region *r, int timeout_ms, int32_t *partitions, char *err,
                           size_t errsize)
{
    int rc = fetch_partition_counts(r, timeout_ms, partitions, err, errsize);
    if (rc == 0)
        install_partition_counts(r, partitions);
    return rc;
}

/* Creates the heartbeat topic with the Admin API and waits for the answer. */
static int create_heartbeat_topic(struct tl_region *r, int brokers, int timeout_ms, char *err,
                                  size_t errsize)
{
    char errstr[512];
    int rf = brokers < 3 ? brokers : 3;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(r->cfg->heartbeat_topic, 1, rf, errstr,
                                                    sizeof(errstr));
    if (!nt)
        return tl_error(err, errsize, TL_EKAFKA, "region %s: heartbeat topic %s: %s", r->name,
                        r->cfg->heartbeat_topic, errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(r->rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(r->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, NULL, 0);
    rd_kafka_CreateTopics(r->rk, &nt, 1, opts, q);

    int rc = 0;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev) {
        rc = tl_error(err, errsize, TL_ETIMEDOUT, "region %s: creating heartbeat topic %s timed "
                      "out", r->name, r->cfg->heartbeat_topic);
    } else if (rd_kafka_event_error(ev)) {
        rc = tl_error(err, errsize, TL_EKAFKA, "region %s: cannot create heartbeat topic %s: %s",
                      r->name, r->cfg->heartbeat_topic, rd_kafka_event_error_string(ev));
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t terr = n == 1 ? rd_kafka_topic_result_error(res[0]) : 0;
        if (terr && terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            rc = tl_error(err, errsize, TL_EKAFKA, "region %s: cannot create heartbeat topic "
                          "%s: %s", r->name, r->cfg->heartbeat_topic,
                          rd_kafka_topic_result_error_string(res[0]));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    if (rc == 0)
        tl_log_info("region", "heartbeat topic created region=%s topic=%s partitions=1 "
                    "replication_factor=%d", r->name, r->cfg->heartbeat_topic, rf);
    return rc;
}

int tl_region_prepare_heartbeats(struct tl_region *r, int timeout_ms, char *err, size_t errsize)
{
    int64_t deadline = tl_now_ms() + timeout_ms;
    bool created = false;

    if (!r->heartbeat_topic)
        r->heartbeat_topic = rd_kafka_topic_new(r->rk, r->cfg->heartbeat_topic, NULL);
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = deadline - tl_now_ms();
        rd_kafka_resp_err_t kerr = rd_kafka_metadata(r->rk, 0, r->heartbeat_topic, &md,
                                                     left > 1 ? (int)left : 1);
        int brokers = 0;
        if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            kerr = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
            r->heartbeat_partitions = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
            brokers = md->broker_cnt;
            rd_kafka_metadata_destroy(md);
        }
        if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR && r->heartbeat_partitions > 0)
            break;
        bool missing = kerr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                       kerr == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if (missing && !created) {
            char why[512];
            int rc = create_heartbeat_topic(r, brokers > 0 ? brokers : 1, 10000, why,
                                            sizeof(why));
            if (rc != 0)
                return tl_error(err, errsize, rc, "%s; create the topic yourself (one partition "
                                "is enough) or set heartbeat.topic", why);
            created = true;
            continue;
        }
        if (tl_now_ms() >= deadline)
            return tl_error(err, errsize, TL_ETIMEDOUT, "region %s: heartbeat topic %s not "
                            "available within %d ms: %s", r->name, r->cfg->heartbeat_topic,
                            timeout_ms, rd_kafka_err2str(kerr));
        usleep(200 * 1000);
    }
    tl_log_info("region", "heartbeat topic ready region=%s topic=%s partitions=%" PRId32,
                r->name, r->cfg->heartbeat_topic, r->heartbeat_partitions);
    return 0;
}

/* Writes v in decimal to out (at least 20 bytes, no terminator); returns the length. */
static size_t format_u64(char *out, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    return n;
}

/*
 * Builds the record headers; returns an object librdkafka takes ownership of on success. The
 * numbers are formatted by hand: snprintf cost about 3 % of the agent's CPU here.
 */
static rd_kafka_headers_t *make_headers(const struct tl_region *r, const struct tl_event *ev)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(ev->header_count + 3);
    char id[96]; /* agent ids have at most 64 characters, then ':' and 20 digits */
    char ts[32];

    for (size_t i = 0; i < ev->header_count; i++)
        rd_kafka_header_add(hdrs, ev->headers[i].name, -1, ev->headers[i].value,
                            ev->headers[i].value ? (ssize_t)ev->headers[i].value_len : 0);
    size_t id_len = strlen(r->cfg->agent_id);
    memcpy(id, r->cfg->agent_id, id_len);
    id[id_len++] = ':';
    id_len += format_u64(id + id_len, ev->seq);
    rd_kafka_header_add(hdrs, "twinlane-id", -1, id, (ssize_t)id_len);
    rd_kafka_header_add(hdrs, "twinlane-origin", -1, r->cfg->home_region, -1);
    size_t ts_len = 0;
    if (ev->ingest_ms < 0)
        ts[ts_len++] = '-';
    ts_len += format_u64(ts + ts_len, ev->ingest_ms < 0 ? 0 - (uint64_t)ev->ingest_ms
                                                        : (uint64_t)ev->ingest_ms);
    rd_kafka_header_add(hdrs, "twinlane-ts", -1, ts, (ssize_t)ts_len);
    return hdrs;
}

/*
 * Hands one event to librdkafka. Returns false only for QUEUE_FULL, which the caller retries
 * after serving delivery reports. Takes over the caller's reference on ev otherwise.
 */
static bool produce_one(struct tl_region *r, struct tl_event *ev)
{
    rd_kafka_headers_t *hdrs = make_headers(r, ev);
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        r->rk, RD_KAFKA_V_RKT(r->topics[ev->topic]), RD_KAFKA_V_PARTITION(ev->partition),
        RD_KAFKA_V_KEY(ev->has_key ? ev->key : NULL, ev->has_key ? ev->key_len : 0),
        RD_KAFKA_V_VALUE((void *)ev->value, ev->value ? ev->value_len : 0),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_TIMESTAMP(ev->ingest_ms), RD_KAFKA_V_OPAQUE(ev),
        RD_KAFKA_V_END);
    if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        *slot(r, ev->seq) = SLOT_SENT;
        r->inflight++;
        r->send_seq = ev->seq + 1;
        atomic_fetch_add(&r->produced, 1);
        return true;
    }

    rd_kafka_headers_destroy(hdrs);
    if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return false;

    r->send_seq = ev->seq + 1;
    if (error_is_per_event(kerr)) {
        finish_event(r, ev, kerr, -1);
    } else {
        schedule_resend(r, ev, kerr);
        tl_event_unref(ev);
    }
    return true;
}

/* Drops the live events taken ahead; sending no longer continues where they start. */
static void drop_ahead(struct tl_region *r)
{
    while (r->ahead_pos < r->ahead_count)
        tl_event_unref(r->ahead[r->ahead_pos++]);
    r->ahead_pos = r->ahead_count = 0;
}

/*
 * Returns the live event at send_seq from the run taken ahead, taking a new run of up to
 * `limit` events from the pipeline when that one is used up, or NULL when the pipeline no
 * longer contains it.
 */
static struct tl_event *next_live_event(struct tl_region *r, uint64_t limit)
{
    if (r->ahead_pos < r->ahead_count && r->ahead[r->ahead_pos]->seq != r->send_seq)
        drop_ahead(r);
    if (r->ahead_pos == r->ahead_count) {
        r->ahead_pos = 0;
        r->ahead_count = tl_pipeline_get_many(r->pipeline, r->send_seq, r->ahead,
                                              limit < TL_REGION_BATCH ? limit : TL_REGION_BATCH);
        if (r->ahead_count == 0)
            return NULL;
    }
    return r->ahead[r->ahead_pos++];
}

/*
 * Returns the event at send_seq, from memory or the WAL, or NULL when it is not readable yet.
 * limit (at least 1) is how many events from send_seq on may be sent now.
 */
static struct tl_event *next_event(struct tl_region *r, uint64_t limit)
{
    struct tl_event *ev = next_live_event(r, limit);
    if (ev)
        return ev;

    char err[512];
    if (r->reader && tl_wal_reader_position(r->reader) > r->send_seq) {
        tl_wal_reader_close(r->reader);
        r->reader = NULL;
    }
    if (!r->reader && tl_wal_reader_open(r->wal, r->send_seq, &r->reader, err, sizeof(err)) != 0) {
        tl_log_error("region", "cannot read the WAL region=%s seq=%" PRIu64 " error=\"%s\"",
                     r->name, r->send_seq, err);
        return NULL;
    }
    for (;;) {
        int rc = tl_wal_reader_next(r->reader, &ev, err, sizeof(err));
        if (rc == 0)
            return NULL;
        if (rc == TL_EPROTO) {
            /*
             * A damaged record cannot be skipped without the region silently missing events,
             * and retrying cannot repair it. So the region is fenced, which lets producers get
             * responses without it, and the log line names the fix.
             */
            tl_log_error("region", "damaged WAL record, fencing the region region=%s seq=%"
                         PRIu64 " error=\"%s\" action=\"restore the segment and unfence the "
                         "region, or restart the agent with --salvage-wal (the damaged events "
                         "are then lost for this region)\"", r->name, r->send_seq, err);
            tl_region_request_fence(r, true, "agent (damaged WAL record)");
        } else if (rc < 0) {
            uint64_t suppressed;
            if (tl_ratelimit_allow(&r->error_log, &suppressed))
                tl_log_error("region", "cannot read the WAL region=%s seq=%" PRIu64
                             " error=\"%s\" suppressed=%" PRIu64, r->name, r->send_seq, err,
                             suppressed);
        }
        if (rc < 0) {
            tl_wal_reader_close(r->reader);
            r->reader = NULL;
            return NULL;
        }
        if (ev->seq < r->send_seq) {
            free(ev);
            continue;
        }
        break;
    }
    atomic_store(&ev->refs, 1);

    if (ev->seq > r->send_seq) {
        /* Shed or salvaged events: gone for good, so they count as final here. */
        tl_log_error("region", "events missing from the WAL are skipped region=%s from_seq=%"
                     PRIu64 " to_seq=%" PRIu64, r->name, r->send_seq, ev->seq - 1);
        if (r->inflight > 0 || ev->seq - r->cursor >= r->window_cap) {
            if (r->inflight > 0) {
                tl_wal_reader_close(r->reader);
                r->reader = NULL;
                free(ev);
                return NULL;
            }
        }
        if (r->inflight == 0 && r->cursor == r->send_seq) {
            r->cursor = r->send_seq = ev->seq;
            tl_wal_set_cursor(r->wal, r->index, r->cursor);
        } else {
            for (uint64_t s = r->send_seq; s < ev->seq; s++)
                *slot(r, s) = SLOT_DONE;
            r->send_seq = ev->seq;
        }
    }
    if (ev->topic < 0) {
        tl_log_error("region", "event for a topic no longer configured is dropped region=%s "
                     "seq=%" PRIu64 " topic=%s", r->name, ev->seq, ev->topic_name);
        r->send_seq = ev->seq + 1;
        finish_event(r, ev, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, -1);
        return NULL;
    }
    return ev;
}

/* Destroys and recreates the producer after a fatal error; sending restarts at the cursor. */
static void rebuild_producer(struct tl_region *r)
{
    char err[512];

    rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t deadline = tl_now_ms() + 10000;
    while (r->inflight > 0 && tl_now_ms() < deadline) {
        r->clock_ms = tl_now_ms();
        serve(r, 100);
    }
    if (r->inflight > 0)
        tl_log_error("region", "events still with the old producer after purge region=%s "
                     "count=%zu", r->name, r->inflight);
    destroy_producer(r);
    r->inflight = 0;

    while (create_producer(r, err, sizeof(err)) != 0) {
        tl_log_error("region", "cannot rebuild producer, retrying region=%s error=\"%s\"",
                     r->name, err);
        if (atomic_load(&r->stopping))
            return;
        usleep(1000 * 1000);
    }
    r->fatal = false;
    r->resend = true;
    r->resend_at_ms = tl_now_ms();
    atomic_fetch_add(&r->rebuilds, 1);
    tl_log_warn("region", "producer rebuilt after a fatal error, sending again from the cursor "
                "region=%s cursor=%" PRIu64, r->name, r->cursor);
}

/* Drops the events waiting to be sent; sending restarts before them anyway. */
static void drop_held(struct tl_region *r)
{
    if (r->held)
        tl_event_unref(r->held);
    r->held = NULL;
    drop_ahead(r);
}

/* Starts sending again from the cursor once every in-flight event has come back. */
static bool try_resend(struct tl_region *r)
{
    if (r->inflight > 0 || tl_now_ms() < r->resend_at_ms)
        return false;
    for (uint64_t s = r->cursor; s < r->send_seq; s++)
        *slot(r, s) = SLOT_FREE;
    r->send_seq = r->cursor;
    drop_held(r);
    if (r->reader) {
        tl_wal_reader_close(r->reader);
        r->reader = NULL;
    }
    r->resend = false;
    return true;
}

/* Produces events from send_seq while the window has room. */
static void pump(struct tl_region *r)
{
    if (!tl_breaker_sends_events(&r->breaker) || r->unchecked)
        return;
    if (r->resend && !try_resend(r))
        return;
    bool limited = r->breaker.backfilling && r->cfg->backfill_events_per_sec > 0;
    if (limited) {
        int64_t now = tl_now_ms();
        double rate = (double)r->cfg->backfill_events_per_sec;
        r->backfill_tokens += (double)(now - r->backfill_refill_ms) * rate / 1000.0;
        if (r->backfill_tokens > rate / 10.0 + 1.0)
            r->backfill_tokens = rate / 10.0 + 1.0; /* bursts of at most 100 ms worth */
        r->backfill_refill_ms = now;
    }
    /*
     * Only events the WAL holds durably (per wal.fsync) go out: after a crash every event a
     * region may hold is still in the WAL, so its sequence number is never given to another.
     */
    uint64_t durable = tl_wal_ack_seq(r->wal);
    /*
     * The WAL thread may make an event durable before the event loop has appended it to the
     * pipeline. Sent then (as a WAL copy), its result could arrive before the append and be
     * lost, and the producer would never get a response. So sending stops at the pipeline's
     * head.
     */
    uint64_t appended = tl_pipeline_head(r->pipeline);
    if (appended < durable)
        durable = appended;
    while (!r->resend && !r->fatal && r->send_seq - r->cursor < r->window_cap &&
           r->send_seq < durable) {
        if (limited && r->backfill_tokens < 1.0)
            return;
        uint64_t room = r->cursor + r->window_cap - r->send_seq;
        uint64_t limit = durable - r->send_seq < room ? durable - r->send_seq : room;
        struct tl_event *ev = r->held ? r->held : next_event(r, limit);
        r->held = NULL;
        if (!ev)
            return;
        if (r->inflight == 0)
            r->last_progress_ms = tl_now_ms();
        if (!produce_one(r, ev)) {
            r->held = ev; /* QUEUE_FULL: serve delivery reports first */
            return;
        }
        if (limited)
            r->backfill_tokens -= 1.0;
    }
}

/* Builds and sends one heartbeat to this region. */
static void send_heartbeat(struct tl_region *r, int64_t now)
{
    const struct tl_config *cfg = r->cfg;
    uint64_t next_seq = tl_wal_next_seq(r->wal);
    Twinlane__Heartbeat hb = TWINLANE__HEARTBEAT__INIT;
    Twinlane__RegionStatus status[TL_REGION_COUNT];
    Twinlane__RegionStatus *status_ptrs[TL_REGION_COUNT];
    Twinlane__PartitionPosition *pos_store[TL_REGION_COUNT];
    Twinlane__PartitionPosition **pos_ptrs[TL_REGION_COUNT];

    hb.agent_id = cfg->agent_id;
    hb.home_region = cfg->home_region;
    hb.heartbeat_seq = ++r->heartbeat_seq;
    hb.timestamp_ms = tl_wallclock_ms();
    hb.wal_next_seq = next_seq;
    hb.written_to = (char *)r->name;
    for (int i = 0; i < TL_REGION_COUNT; i++) {
        struct tl_region *peer = r->peers[i];
        twinlane__region_status__init(&status[i]);
        status_ptrs[i] = &status[i];
        status[i].name = (char *)peer->name;
        status[i].breaker_state =
            (char *)tl_breaker_state_name((enum tl_breaker_state)atomic_load(&peer->published_state));
        status[i].cursor = atomic_load(&peer->published_cursor);
        status[i].backlog = next_seq > status[i].cursor ? next_seq - status[i].cursor : 0;

        /* A region checked after start installs its partition counts under this lock. */
        pthread_mutex_lock(&peer->positions_lock);
        size_t total = 0;
        for (size_t t = 0; t < cfg->topic_count; t++)
            total += (size_t)peer->partition_counts[t];
        pos_store[i] = tl_xcalloc(total ? total : 1, sizeof(**pos_store));
        pos_ptrs[i] = tl_xcalloc(total ? total : 1, sizeof(**pos_ptrs));
        size_t n = 0;
        for (size_t t = 0; t < cfg->topic_count; t++) {
            for (int32_t p = 0; p < peer->partition_counts[t]; p++) {
                const struct tl_position *pos = &peer->positions[peer->position_base[t] + p];
                if (pos->seq == 0)
                    continue;
                Twinlane__PartitionPosition *pp = &pos_store[i][n];
                twinlane__partition_position__init(pp);
                pp->topic = cfg->topics[t].name;
                pp->partition = p;
                pp->offset = pos->offset;
                pp->seq = pos->seq;
                pos_ptrs[i][n++] = pp;
            }
        }
        pthread_mutex_unlock(&peer->positions_lock);
        status[i].positions = pos_ptrs[i];
        status[i].n_positions = n;
    }
    hb.regions = status_ptrs;
    hb.n_regions = TL_REGION_COUNT;

    size_t len = twinlane__heartbeat__get_packed_size(&hb);
    uint8_t *buf = tl_xmalloc(len);
    twinlane__heartbeat__pack(&hb, buf);
    for (int i = 0; i < TL_REGION_COUNT; i++) {
        free(pos_store[i]);
        free(pos_ptrs[i]);
    }

    size_t key_len = strlen(cfg->agent_id);
    int32_t partition = tl_partition_for_key(cfg->agent_id, key_len, r->heartbeat_partitions);
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        r->rk, RD_KAFKA_V_RKT(r->heartbeat_topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(cfg->agent_id, key_len), RD_KAFKA_V_VALUE(buf, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_OPAQUE(&heartbeat_marker),
        RD_KAFKA_V_END);
    if (kerr) {
        free(buf);
        uint64_t suppressed;
        if (tl_ratelimit_allow(&r->error_log, &suppressed))
            tl_log_warn("region", "heartbeat not sent region=%s error=%s suppressed=%" PRIu64,
                        r->name, rd_kafka_err2name(kerr), suppressed);
        return;
    }
    r->heartbeat_sent_ms = now;
    atomic_store(&r->heartbeat_sent_wallclock_ms, tl_wallclock_ms());
}

/* Purges what librdkafka holds for the region; the events come back for a later resend. */
static void purge_region(struct tl_region *r)
{
    rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                              RD_KAFKA_PURGE_F_NON_BLOCKING);
    serve(r, 0);
}

/* Applies the consequences of a breaker transition and logs it. Region thread. */
static void on_transition(struct tl_region *r, enum tl_breaker_state old_state,
                          bool old_backfilling)
{
    struct tl_breaker *b = &r->breaker;
    char detail[64];
    uint64_t backlog = tl_wal_next_seq(r->wal) - r->cursor;

    tl_log(b->state == TL_BREAKER_CLOSED ? TL_LOG_INFO : TL_LOG_WARN, "breaker",
           "breaker state changed region=%s from=%s%s to=%s%s reason=\"%s\" cursor=%" PRIu64
           " backlog=%" PRIu64, r->name, tl_breaker_state_name(old_state),
           old_backfilling ? "(backfilling)" : "", tl_breaker_state_name(b->state),
           b->backfilling ? "(backfilling)" : "", b->reason, r->cursor, backlog);
    atomic_store(&r->published_state, (int)b->state);
    atomic_store(&r->published_backfilling, b->backfilling);
    pthread_mutex_lock(&r->reason_lock);
    if (b->state == TL_BREAKER_HALF_OPEN && r->unchecked && r->last_check_error[0])
        snprintf(r->published_reason, sizeof(r->published_reason),
                 "%s; the last topic check failed: %s", b->reason, r->last_check_error);
    else
        snprintf(r->published_reason, sizeof(r->published_reason), "%s", b->reason);
    pthread_mutex_unlock(&r->reason_lock);
    atomic_fetch_add(&r->breaker_transitions, 1);
    tl_pipeline_set_healthy(r->pipeline, r->index, tl_breaker_counts_for_ack(b));

    snprintf(detail, sizeof(detail), "backlog=%" PRIu64, backlog);
    switch (b->state) {
    case TL_BREAKER_OPEN:
    case TL_BREAKER_FENCED:
        if (b->state == TL_BREAKER_OPEN)
            tl_timeline_mark(r->timeline, TL_STEP_BREAKER_OPEN, detail);
        /* Nothing more goes to the region; what librdkafka holds is sent again later. */
        purge_region(r);
        r->resend = true;
        r->resend_at_ms = 0;
        r->heartbeat_sent_ms = 0;
        break;
    case TL_BREAKER_HALF_OPEN:
        if (b->backfilling) {
            tl_timeline_mark(r->timeline, TL_STEP_BACKFILL_START, detail);
            r->backfill_tokens = 0;
            r->backfill_refill_ms = tl_now_ms();
            r->resend = true;
            r->resend_at_ms = 0;
        } else {
            r->next_heartbeat_ms = 0; /* probe at once */
        }
        break;
    case TL_BREAKER_CLOSED:
        if (old_state == TL_BREAKER_HALF_OPEN && old_backfilling) {
            tl_timeline_mark(r->timeline, TL_STEP_BACKFILL_END, detail);
            tl_timeline_mark(r->timeline, TL_STEP_BREAKER_CLOSED, NULL);
        }
        break;
    }
}

/* Feeds the breaker its time-based inputs and applies fence requests. Region thread. */
static void drive_breaker(struct tl_region *r, int64_t now)
{
    struct tl_breaker *b = &r->breaker;
    enum tl_breaker_state before = b->state;
    bool before_backfilling = b->backfilling;
    bool changed = false;

    char who[sizeof(r->fence_who)];
    pthread_mutex_lock(&r->fence_lock);
    int request = atomic_exchange(&r->fence_request, 0);
    memcpy(who, r->fence_who, sizeof(who));
    pthread_mutex_unlock(&r->fence_lock);
    if (request == 1)
        changed |= tl_breaker_fence(b, now, who);
    else if (request == 2)
        changed |= tl_breaker_unfence(b, now, who);

    if (r->all_brokers_down) {
        r->all_brokers_down = false;
        if (b->state == TL_BREAKER_CLOSED)
            tl_timeline_mark(r->timeline, TL_STEP_FIRST_FAILURE, "cause=all_brokers_down");
        changed |= tl_breaker_all_brokers_down(b, now);
    }

    int64_t oldest = r->inflight > 0 ? now - r->last_progress_ms : 0;
    int64_t heartbeat_age = r->heartbeat_sent_ms ? now - r->heartbeat_sent_ms : 0;
    if (heartbeat_age > oldest)
        oldest = heartbeat_age;
    if (!r->delivered_once && oldest < FIRST_DELIVERY_STALL_MS)
        oldest = 0;
    /* The episode starts when the stall began, so that the timeline shows the whole wait. */
    if (!changed && b->state == TL_BREAKER_CLOSED && oldest >= b->s.stall_timeout_ms) {
        char detail[64];
        snprintf(detail, sizeof(detail), "cause=stall stalled_ms=%" PRId64, oldest);
        tl_timeline_mark_at(r->timeline, TL_STEP_FIRST_FAILURE, detail,
                            tl_wallclock_ms() - oldest);
    }
    if (!changed)
        changed |= tl_breaker_check_stall(b, now, oldest);
    if (!changed && tl_breaker_wants_probes(b) && heartbeat_age >= b->s.stall_timeout_ms)
        changed |= tl_breaker_record_probe(b, now, false, "no answer within stall_timeout_ms");
    if (!changed)
        changed |= tl_breaker_tick(b, now);
    if (!changed && b->backfilling && tl_wal_next_seq(r->wal) - r->cursor <= BACKFILL_DONE_BACKLOG)
        changed |= tl_breaker_backfill_done(b, now);
    if (changed)
        on_transition(r, before, before_backfilling);
}

/* Sends a heartbeat when one is due and the breaker lets anything through. */
static void maybe_heartbeat(struct tl_region *r, int64_t now)
{
    struct tl_breaker *b = &r->breaker;
    if (b->state == TL_BREAKER_OPEN || b->state == TL_BREAKER_FENCED || r->unchecked)
        return;
    if (now < r->next_heartbeat_ms || r->heartbeat_sent_ms != 0)
        return;
    send_heartbeat(r, now);
    r->next_heartbeat_ms = now + (tl_breaker_wants_probes(b) ? PROBE_INTERVAL_MS
                                                             : r->cfg->heartbeat_interval_ms);
}

void tl_region_request_fence(struct tl_region *r, bool fence, const char *who)
{
    pthread_mutex_lock(&r->fence_lock);
    snprintf(r->fence_who, sizeof(r->fence_who), "%s", who);
    atomic_store(&r->fence_request, fence ? 1 : 2);
    pthread_mutex_unlock(&r->fence_lock);
    uint64_t one = 1;
    ssize_t ignored = write(r->wake_fd, &one, sizeof(one));
    (void)ignored;
}

void tl_region_breaker_reason(struct tl_region *r, char *out, size_t outsize)
{
    pthread_mutex_lock(&r->reason_lock);
    snprintf(out, outsize, "%s", r->published_reason);
    pthread_mutex_unlock(&r->reason_lock);
}

void tl_region_attach(struct tl_region *r, struct tl_region **peers, struct tl_timeline *timeline)
{
    r->peers = peers;
    r->timeline = timeline;
}

void tl_region_defer_checks(struct tl_region *r, const int32_t *expected, const char *reason,
                            int64_t since_wallclock_ms)
{
    r->unchecked = true;
    r->unchecked_since_ms = since_wallclock_ms;
    r->expected_partitions = expected;
    snprintf(r->unchecked_reason, sizeof(r->unchecked_reason), "%s", reason);
}

/*
 * Checks the topics of a region that did not respond at start, once its breaker probes.
 * Opens the breaker again when a check fails. The checks block the region thread for up to
 * twice DEFERRED_CHECK_TIMEOUT_MS, plus 11 s when the heartbeat topic has to be created. The
 * region gets nothing meanwhile, but a shutdown waits for them.
 */
static void run_deferred_checks(struct tl_region *r)
{
    const struct tl_config *cfg = r->cfg;
    const char *other = r->peers[1 - r->index]->name;
    char err[512];
    int32_t *counts = tl_xcalloc(cfg->topic_count, sizeof(*counts));

    int rc = fetch_partition_counts(r, DEFERRED_CHECK_TIMEOUT_MS, counts, err, sizeof(err));
    for (size_t t = 0; t < cfg->topic_count && rc == 0; t++) {
        if (counts[t] != r->expected_partitions[t])
            rc = tl_error(err, sizeof(err), TL_EINVAL, "topic %s has %" PRId32 " partitions in "
                          "region %s but %" PRId32 " in region %s; give both regions the same "
                          "partition count", cfg->topics[t].name, counts[t], r->name,
                          r->expected_partitions[t], other);
    }
    if (rc == 0)
        rc = tl_region_prepare_heartbeats(r, DEFERRED_CHECK_TIMEOUT_MS, err, sizeof(err));

    if (rc == 0) {
        install_partition_counts(r, counts);
        /* An "all brokers down" from before the check passed is stale. */
        serve(r, 0);
        r->all_brokers_down = false;
        r->unchecked = false;
        tl_log_info("region", "topics checked after start region=%s topics=%zu", r->name,
                    cfg->topic_count);
    } else {
        snprintf(r->last_check_error, sizeof(r->last_check_error), "%s", err);
        tl_log_error("region", "topic check failed, the region gets no events until it passes "
                     "region=%s error=\"%s\"", r->name, err);
        /* A time-out gets a short breaker reason, and its full text is in the line above. */
        char reason[96];
        if (rc == TL_ETIMEDOUT)
            snprintf(reason, sizeof(reason), "topic check timed out after %d ms",
                     DEFERRED_CHECK_TIMEOUT_MS);
        enum tl_breaker_state before = r->breaker.state;
        bool before_backfilling = r->breaker.backfilling;
        if (tl_breaker_trip(&r->breaker, tl_now_ms(), rc == TL_ETIMEDOUT ? reason : err))
            on_transition(r, before, before_backfilling);
    }
    free(counts);
}

static void drain_fd(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

static void *region_thread(void *arg)
{
    struct tl_region *r = arg;

    tl_log_info("region", "region thread started region=%s cursor=%" PRIu64, r->name,
                r->cursor);
    while (!atomic_load(&r->stopping)) {
        struct pollfd fds[2] = {
            {.fd = r->wake_fd, .events = POLLIN},
            {.fd = r->rk_pipe[0], .events = POLLIN},
        };
        /* Short sleeps while time-based inputs (stall, probes, backfill rate) matter. */
        int timeout = IDLE_POLL_MS;
        if (r->inflight > 0 || r->heartbeat_sent_ms || r->breaker.state != TL_BREAKER_CLOSED)
            timeout = 50;
        /* A pending resend matters only while the breaker lets events through; otherwise
         * waiting for it would spin. */
        if (r->resend && r->inflight == 0 && tl_breaker_sends_events(&r->breaker)) {
            int64_t wait = r->resend_at_ms - tl_now_ms();
            if (wait < timeout)
                timeout = wait < 0 ? 0 : (int)wait;
        }
        poll(fds, 2, timeout);
        if (fds[0].revents)
            drain_fd(r->wake_fd);
        if (fds[1].revents)
            drain_fd(r->rk_pipe[0]);
        r->clock_ms = tl_now_ms();
        serve(r, 0);
        if (r->fatal)
            rebuild_producer(r);
        int64_t now = tl_now_ms();
        drive_breaker(r, now);
        if (r->unchecked && tl_breaker_wants_probes(&r->breaker)) {
            run_deferred_checks(r);
            now = tl_now_ms();
        }
        maybe_heartbeat(r, now);
        pump(r);
        r->clock_ms = tl_now_ms();
        serve(r, 0);
    }

    /* Deliver what librdkafka holds within the time left; the rest stays in the WAL. */
    int64_t deadline = tl_now_ms() + r->stop_timeout_ms;
    while (r->inflight > 0 && tl_now_ms() < deadline) {
        r->clock_ms = tl_now_ms();
        serve(r, 50);
    }
    tl_log_info("region", "region thread stopped region=%s cursor=%" PRIu64
                " undelivered=%zu", r->name, r->cursor, r->inflight);
    return NULL;
}

int tl_region_start(struct tl_region *r, char *err, size_t errsize)
{
    const struct tl_config *cfg = r->cfg;
    struct tl_breaker_settings bs = {
        .consecutive_failures = cfg->breaker_consecutive_failures,
        .failure_rate_percent = cfg->breaker_failure_rate_percent,
        .rate_window_ms = cfg->breaker_rate_window_ms,
        .min_volume = cfg->breaker_min_volume,
        .stall_timeout_ms = cfg->breaker_stall_timeout_ms,
        .open_ms = cfg->breaker_open_ms,
        .open_max_ms = cfg->breaker_open_max_ms,
        .probes_to_close = cfg->breaker_probes_to_close,
    };
    /* Seeded per agent and region, so that agents do not probe in lockstep. */
    uint64_t seed = (uint64_t)tl_wallclock_ms() ^ ((uint64_t)getpid() << 20) ^ (uint64_t)r->index;
    tl_breaker_init(&r->breaker, &bs, tl_now_ms(), seed);
    atomic_store(&r->published_state, TL_BREAKER_CLOSED);

    r->cursor = r->send_seq = tl_wal_cursor(r->wal, r->index);
    atomic_store(&r->published_cursor, r->cursor);
    /* Reports from the start-up checks are stale for a region that passed them. */
    r->clock_ms = tl_now_ms();
    serve(r, 0);
    if (!r->unchecked)
        r->all_brokers_down = false;
    /* A region that did not respond at start starts with its breaker open. Its thread has not
     * started yet, so the transition is applied here. */
    if (r->unchecked) {
        tl_timeline_mark_at(r->timeline, TL_STEP_FIRST_FAILURE, "cause=unreachable_at_start",
                            r->unchecked_since_ms);
        tl_breaker_trip(&r->breaker, tl_now_ms(), r->unchecked_reason);
        on_transition(r, TL_BREAKER_CLOSED, false);
    }
    r->clock_ms = tl_now_ms();
    int rc = pthread_create(&r->thread, NULL, region_thread, r);
    if (rc != 0)
        return tl_error(err, errsize, TL_EIO, "region %s: cannot start thread: %s", r->name,
                        strerror(rc));
    r->thread_started = true;
    return 0;
}

void tl_region_stop(struct tl_region *r, int timeout_ms)
{
    if (!r || !r->thread_started)
        return;
    r->stop_timeout_ms = timeout_ms;
    atomic_store(&r->stopping, true);
    uint64_t one = 1;
    ssize_t ignored = write(r->wake_fd, &one, sizeof(one));
    (void)ignored;
    pthread_join(r->thread, NULL);
    r->thread_started = false;
}

void tl_region_close(struct tl_region *r)
{
    if (!r)
        return;
    tl_region_stop(r, 0);
    if (r->rk) {
        /* Undelivered events come back as purged; they stay in the WAL for the next start. */
        rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        serve(r, 0);
    }
    drop_held(r);
    destroy_producer(r);
    free(r->topics);
    tl_wal_reader_close(r->reader);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    for (int i = 0; i < 2; i++)
        if (r->rk_pipe[i] >= 0)
            close(r->rk_pipe[i]);
    free(r->window);
    free(r->bootstrap);
    free(r->partition_counts);
    free(r->position_base);
    free(r->positions);
    pthread_mutex_destroy(&r->positions_lock);
    pthread_mutex_destroy(&r->fence_lock);
    pthread_mutex_destroy(&r->reason_lock);
    free(r);
}
