/*
 * Region: producer set-up, the pump thread, delivery reports and the start-up topic check.
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

/* Events taken from the pipeline per round; bounds the time between delivery-report polls. */
#define TAKE_BATCH 1024
/* Longest sleep of an idle region thread; a safety net, since wake-ups are event-driven. */
#define IDLE_POLL_MS 200

static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    const struct tl_region *r = rd_kafka_opaque(rk);
    enum tl_log_level ours = level <= LOG_ERR ? TL_LOG_ERROR
                             : level <= LOG_WARNING ? TL_LOG_WARN
                             : level <= LOG_INFO ? TL_LOG_INFO
                                                 : TL_LOG_DEBUG;
    tl_log(ours, "rdkafka", "%s region=%s facility=%s", buf, r ? r->name : "?", facility);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct tl_region *r = opaque;
    uint64_t suppressed;

    if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        tl_log_error("region", "producer hit a fatal error region=%s error=%s reason=\"%s\"",
                     r->name, rd_kafka_err2name(err), reason);
        return;
    }
    if (!tl_ratelimit_allow(&r->error_log, &suppressed))
        return;
    tl_log_warn("region", "producer error region=%s error=%s reason=\"%s\" suppressed=%" PRIu64,
                r->name, rd_kafka_err2name(err), reason, suppressed);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    struct tl_region *r = opaque;
    struct tl_event *ev = msg->_private;
    uint64_t suppressed;

    ev->region[r->index].err = msg->err;
    ev->region[r->index].offset = msg->err ? -1 : msg->offset;
    if (msg->err) {
        atomic_fetch_add(&r->failed, 1);
        if (tl_ratelimit_allow(&r->error_log, &suppressed))
            tl_log_warn("region", "delivery failed region=%s seq=%" PRIu64 " topic=%s "
                        "partition=%" PRId32 " error=%s suppressed=%" PRIu64, r->name, ev->seq,
                        r->cfg->topics[ev->topic].name, ev->partition, rd_kafka_err2name(msg->err),
                        suppressed);
    } else {
        atomic_fetch_add(&r->delivered, 1);
    }
    tl_pipeline_report(r->pipeline, ev);
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
    size_t max_msgs = r->cfg->max_inflight_events + 1024;
    if (max_msgs > 2147483647)
        max_msgs = 2147483647;
    snprintf(value, sizeof(value), "%zu", max_msgs);
    rc_set |= set_property(conf, rc->name, "queue.buffering.max.messages", value, err, errsize);
    size_t max_kbytes = r->cfg->max_inflight_bytes / 1024 * 2 + 65536;
    if (max_kbytes > 2147483647)
        max_kbytes = 2147483647;
    snprintf(value, sizeof(value), "%zu", max_kbytes);
    rc_set |= set_property(conf, rc->name, "queue.buffering.max.kbytes", value, err, errsize);
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

int tl_region_open(const struct tl_config *cfg, int index, const char *bootstrap,
                   struct tl_pipeline *pipeline, struct tl_region **out, char *err,
                   size_t errsize)
{
    struct tl_region *r = tl_xcalloc(1, sizeof(*r));
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    int rc;

    r->index = index;
    r->cfg = cfg;
    r->name = cfg->regions[index].name;
    r->bootstrap = tl_xstrdup(bootstrap);
    r->pipeline = pipeline;
    r->wake_fd = -1;
    r->rk_pipe[0] = r->rk_pipe[1] = -1;
    r->error_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 5);

    rc = build_conf(r, bootstrap, &conf, err, errsize);
    if (rc != 0)
        goto fail;
    r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!r->rk) {
        rd_kafka_conf_destroy(conf);
        rc = tl_error(err, errsize, TL_EKAFKA, "region %s: cannot create producer: %s", r->name,
                      errstr);
        goto fail;
    }

    r->topics = tl_xcalloc(cfg->topic_count, sizeof(*r->topics));
    for (size_t t = 0; t < cfg->topic_count; t++)
        r->topics[t] = rd_kafka_topic_new(r->rk, cfg->topics[t].name, NULL);

    r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->wake_fd < 0 || pipe2(r->rk_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        rc = tl_error(err, errsize, TL_EIO, "region %s: cannot create wake-up descriptors: %s",
                      r->name, strerror(errno));
        goto fail;
    }
    rd_kafka_queue_t *main_queue = rd_kafka_queue_get_main(r->rk);
    rd_kafka_queue_io_event_enable(main_queue, r->rk_pipe[1], "1", 1);
    rd_kafka_queue_destroy(main_queue);
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
 * after serving delivery reports; any other refusal is the event's own failure in this region.
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
        atomic_fetch_add(&r->produced, 1);
        return true;
    }

    rd_kafka_headers_destroy(hdrs);
    if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return false;

    uint64_t suppressed;
    if (tl_ratelimit_allow(&r->error_log, &suppressed))
        tl_log_warn("region", "produce rejected region=%s seq=%" PRIu64 " topic=%s partition=%" PRId32
                    " error=%s suppressed=%" PRIu64, r->name, ev->seq,
                    r->cfg->topics[ev->topic].name, ev->partition, rd_kafka_err2name(kerr),
                    suppressed);
    ev->region[r->index].err = kerr;
    ev->region[r->index].offset = -1;
    atomic_fetch_add(&r->failed, 1);
    tl_pipeline_report(r->pipeline, ev);
    return true;
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
    struct tl_event *batch[TAKE_BATCH];
    size_t batch_len = 0;
    size_t batch_pos = 0;

    tl_log_info("region", "region thread started region=%s", r->name);
    while (!atomic_load(&r->stopping)) {
        struct pollfd fds[2] = {
            {.fd = r->wake_fd, .events = POLLIN},
            {.fd = r->rk_pipe[0], .events = POLLIN},
        };
        /* With events still waiting for queue space, only pause briefly. */
        poll(fds, 2, batch_pos < batch_len ? 10 : IDLE_POLL_MS);
        if (fds[0].revents)
            drain_fd(r->wake_fd);
        if (fds[1].revents)
            drain_fd(r->rk_pipe[0]);
        rd_kafka_poll(r->rk, 0);

        for (;;) {
            if (batch_pos == batch_len) {
                batch_len = tl_pipeline_take(r->pipeline, r->index, batch, TAKE_BATCH);
                batch_pos = 0;
                if (batch_len == 0)
                    break;
            }
            while (batch_pos < batch_len && produce_one(r, batch[batch_pos]))
                batch_pos++;
            if (batch_pos < batch_len)
                break; /* QUEUE_FULL: serve delivery reports, then retry in order */
            rd_kafka_poll(r->rk, 0);
        }
    }
    tl_log_info("region", "region thread stopped region=%s", r->name);
    return NULL;
}

int tl_region_start(struct tl_region *r, char *err, size_t errsize)
{
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
    atomic_store(&r->stopping, true);
    uint64_t one = 1;
    ssize_t ignored = write(r->wake_fd, &one, sizeof(one));
    (void)ignored;
    pthread_join(r->thread, NULL);
    r->thread_started = false;

    rd_kafka_resp_err_t kerr = rd_kafka_flush(r->rk, timeout_ms);
    if (kerr) {
        tl_log_warn("region", "undelivered events purged at shutdown region=%s remaining=%d",
                    r->name, rd_kafka_outq_len(r->rk));
        rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(r->rk, 0);
    }
}

void tl_region_close(struct tl_region *r)
{
    if (!r)
        return;
    tl_region_stop(r, 0);
    if (r->topics) {
        for (size_t t = 0; t < r->cfg->topic_count; t++)
            if (r->topics[t])
                rd_kafka_topic_destroy(r->topics[t]);
        free(r->topics);
    }
    if (r->rk)
        rd_kafka_destroy(r->rk);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    for (int i = 0; i < 2; i++)
        if (r->rk_pipe[i] >= 0)
            close(r->rk_pipe[i]);
    free(r->bootstrap);
    free(r);
}
