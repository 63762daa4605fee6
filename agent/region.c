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

enum { SLOT_FREE = 0, SLOT_SENT = 1, SLOT_DONE = 2 };

/* Longest sleep of an idle region thread; a safety net, since wake-ups are event-driven. */
#define IDLE_POLL_MS 200
#define RESEND_BACKOFF_MIN_MS 250
#define RESEND_BACKOFF_MAX_MS 5000

static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    const struct tl_region *r = rd_kafka_opaque(rk);
    enum tl_log_level ours = level <= LOG_ERR ? TL_LOG_ERROR
                             : level <= LOG_WARNING ? TL_LOG_WARN
                             : level <= LOG_INFO ? TL_LOG_INFO
                                                 : TL_LOG_DEBUG;
    tl_log(ours, "rdkafka", "%s region=%s facility=%s", buf, r ? r->name : "?", facility);
}

/* Called from rd_kafka_poll on the region thread. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct tl_region *r = opaque;
    uint64_t suppressed;

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

/* Moves the cursor over final events and tells the WAL. */
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

/* Records a final result (success or a per-event failure) for ev in this region. */
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
        atomic_fetch_add(&r->delivered, 1);
        r->resend_backoff_ms = RESEND_BACKOFF_MIN_MS;
    }
    tl_pipeline_report(r->pipeline, r->index, ev, err, offset);
    advance_cursor(r);
}

/* Schedules a resend from the cursor after a failure that the region may recover from. */
static void schedule_resend(struct tl_region *r, const struct tl_event *ev,
                            rd_kafka_resp_err_t err)
{
    uint64_t suppressed;

    atomic_fetch_add(&r->retried, 1);
    if (r->resend)
        return;
    r->resend = true;
    r->resend_at_ms = tl_now_ms() + r->resend_backoff_ms;
    if (tl_ratelimit_allow(&r->error_log, &suppressed))
        tl_log_warn("region", "delivery failed, sending again from the cursor region=%s seq=%"
                    PRIu64 " cursor=%" PRIu64 " error=%s backoff_ms=%d suppressed=%" PRIu64,
                    r->name, ev->seq, r->cursor, rd_kafka_err2name(err), r->resend_backoff_ms,
                    suppressed);
    r->resend_backoff_ms *= 2;
    if (r->resend_backoff_ms > RESEND_BACKOFF_MAX_MS)
        r->resend_backoff_ms = RESEND_BACKOFF_MAX_MS;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    struct tl_region *r = opaque;
    struct tl_event *ev = msg->_private;

    r->inflight--;
    if (msg->err == 0 || error_is_per_event(msg->err))
        finish_event(r, ev, msg->err, msg->err ? -1 : msg->offset);
    else
        schedule_resend(r, ev, msg->err);
    tl_event_unref(ev);
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
    rd_kafka_queue_t *main_queue = rd_kafka_queue_get_main(r->rk);
    rd_kafka_queue_io_event_enable(main_queue, r->rk_pipe[1], "1", 1);
    rd_kafka_queue_destroy(main_queue);
    return 0;
}

static void destroy_producer(struct tl_region *r)
{
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
    r->resend_backoff_ms = RESEND_BACKOFF_MIN_MS;
    r->window_cap = 1;
    while (r->window_cap < cfg->max_inflight_events)
        r->window_cap <<= 1;
    r->window = tl_xcalloc(r->window_cap, 1);
    r->topics = tl_xcalloc(cfg->topic_count, sizeof(*r->topics));

    r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->wake_fd < 0 || pipe2(r->rk_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        rc = tl_error(err, errsize, TL_EIO, "region %s: cannot create wake-up descriptors: %s",
                      r->name, strerror(errno));
        goto fail;
    }
    rc = create_producer(r, err, errsize);
    if (rc != 0)
        goto fail;
    tl_pipeline_set_region_wake_fd(pipeline, index, r->wake_fd);

    tl_log_info("region", "producer created region=%s bootstrap=%s idempotence=true acks=all",
                r->name, bootstrap);
    *out = r;
    return 0;

fail:
    tl_region_close(r);
    return rc;
}

int tl_region_check_topics(struct tl_region *r, int timeout_ms, int32_t *partitions, char *err,
                           size_t errsize)
{
    int64_t deadline = tl_now_ms() + timeout_ms;

    for (size_t t = 0; t < r->cfg->topic_count; t++) {
        const char *topic = r->cfg->topics[t].name;
        rd_kafka_resp_err_t kerr;

        for (;;) {
            const struct rd_kafka_metadata *md = NULL;
            int64_t left = deadline - tl_now_ms();
            kerr = rd_kafka_metadata(r->rk, 0, r->topics[t], &md, left > 1000 ? 1000 : 1);
            if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                kerr = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
                partitions[t] = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
                rd_kafka_metadata_destroy(md);
            }
            if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
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

/* Builds the record headers; returns an object librdkafka takes ownership of on success. */
static rd_kafka_headers_t *make_headers(const struct tl_region *r, const struct tl_event *ev)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(ev->header_count + 3);
    char id[128];
    char ts[32];

    for (size_t i = 0; i < ev->header_count; i++)
        rd_kafka_header_add(hdrs, ev->headers[i].name, -1, ev->headers[i].value,
                            ev->headers[i].value ? (ssize_t)ev->headers[i].value_len : 0);
    int id_len = snprintf(id, sizeof(id), "%s:%" PRIu64, r->cfg->agent_id, ev->seq);
    rd_kafka_header_add(hdrs, "twinlane-id", -1, id, id_len);
    rd_kafka_header_add(hdrs, "twinlane-origin", -1, r->cfg->home_region, -1);
    int ts_len = snprintf(ts, sizeof(ts), "%" PRId64, ev->ingest_ms);
    rd_kafka_header_add(hdrs, "twinlane-ts", -1, ts, ts_len);
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
    if (error_is_per_event(kerr))
        finish_event(r, ev, kerr, -1);
    else
        schedule_resend(r, ev, kerr);
    tl_event_unref(ev);
    return true;
}

/* Returns the event at send_seq, from memory or the WAL, or NULL when it is not readable yet. */
static struct tl_event *next_event(struct tl_region *r)
{
    struct tl_event *ev = tl_pipeline_get(r->pipeline, r->send_seq);
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
        if (rc < 0) {
            uint64_t suppressed;
            if (tl_ratelimit_allow(&r->error_log, &suppressed))
                tl_log_error("region", "cannot read the WAL region=%s seq=%" PRIu64
                             " error=\"%s\" suppressed=%" PRIu64, r->name, r->send_seq, err,
                             suppressed);
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
        tl_event_unref(ev);
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
    while (r->inflight > 0 && tl_now_ms() < deadline)
        rd_kafka_poll(r->rk, 100);
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

/* Starts sending again from the cursor once every in-flight event has come back. */
static bool try_resend(struct tl_region *r)
{
    if (r->inflight > 0 || tl_now_ms() < r->resend_at_ms)
        return false;
    for (uint64_t s = r->cursor; s < r->send_seq; s++)
        *slot(r, s) = SLOT_FREE;
    r->send_seq = r->cursor;
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
    static __thread struct tl_event *held; /* waiting for librdkafka queue space */

    if (r->resend && !try_resend(r))
        return;
    while (!r->resend && !r->fatal && r->send_seq - r->cursor < r->window_cap) {
        struct tl_event *ev = held ? held : next_event(r);
        held = NULL;
        if (!ev)
            return;
        if (!produce_one(r, ev)) {
            held = ev; /* QUEUE_FULL: serve delivery reports first */
            return;
        }
    }
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
        int timeout = IDLE_POLL_MS;
        if (r->resend && r->inflight == 0) {
            int64_t wait = r->resend_at_ms - tl_now_ms();
            timeout = wait < 0 ? 0 : wait < IDLE_POLL_MS ? (int)wait : IDLE_POLL_MS;
        }
        poll(fds, 2, timeout);
        if (fds[0].revents)
            drain_fd(r->wake_fd);
        if (fds[1].revents)
            drain_fd(r->rk_pipe[0]);
        rd_kafka_poll(r->rk, 0);
        if (r->fatal)
            rebuild_producer(r);
        pump(r);
        rd_kafka_poll(r->rk, 0);
    }

    /* Deliver what librdkafka holds within the time left; the rest stays in the WAL. */
    int64_t deadline = tl_now_ms() + r->stop_timeout_ms;
    while (r->inflight > 0 && tl_now_ms() < deadline)
        rd_kafka_poll(r->rk, 50);
    tl_log_info("region", "region thread stopped region=%s cursor=%" PRIu64
                " undelivered=%zu", r->name, r->cursor, r->inflight);
    return NULL;
}

int tl_region_start(struct tl_region *r, char *err, size_t errsize)
{
    r->cursor = r->send_seq = tl_wal_cursor(r->wal, r->index);
    atomic_store(&r->published_cursor, r->cursor);
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
        rd_kafka_poll(r->rk, 0);
    }
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
    free(r);
}
