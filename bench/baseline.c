/*
 * Raw librdkafka dual-writer used as the benchmark's reference point.
 *
 * Slots: event seq lives in slot seq % slot_count until every region acknowledged it. A slot
 * holds a bit per region that acknowledged, a failure bit, and the scheduled send time. The
 * sender keeps at most inflight events unacknowledged and slot_count is at least four times
 * that, so a slot is free again long before the sender reuses it.
 */
#include "baseline.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "mem.h"
#include "procs.h"

#define FAILED_BIT 4u
#define ACK_TIMEOUT_NS (60 * 1000000000ll)
/* The agent's defaults: max_inflight_events 100000 and max_inflight_bytes 256 MiB. */
#define AGENT_QUEUE_MESSAGES "101024"
#define AGENT_QUEUE_KBYTES "589824"
#define WARMUP_EVENTS 1000

struct baseline;

struct producer {
    struct baseline *owner;
    unsigned bit;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    pthread_t poller;
};

struct baseline {
    struct producer producers[2];
    int region_count;
    unsigned all_bits;
    atomic_bool stop;

    size_t slot_count; /* a power of two */
    _Atomic unsigned *acked;
    int64_t *sched_ns;

    atomic_uint_fast64_t done;
    atomic_uint_fast64_t ok;
    atomic_uint_fast64_t failed;
    _Atomic int64_t last_done_ns;

    pthread_mutex_t hist_lock;
    struct bench_hist *hist;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    struct producer *p = opaque;
    struct baseline *b = p->owner;
    uint64_t seq = (uint64_t)(uintptr_t)msg->_private;
    size_t slot = seq & (b->slot_count - 1);
    unsigned bits = p->bit | (msg->err ? FAILED_BIT : 0);

    unsigned old = atomic_fetch_or(&b->acked[slot], bits);
    if (((old | bits) & b->all_bits) != b->all_bits)
        return;

    /* This report completes the event, so now is the later of its acknowledgements. */
    int64_t now = bench_now_ns();
    if ((old | bits) & FAILED_BIT) {
        atomic_fetch_add(&b->failed, 1);
    } else {
        atomic_fetch_add(&b->ok, 1);
        if (b->hist) {
            pthread_mutex_lock(&b->hist_lock);
            bench_hist_record(b->hist, (uint64_t)(now - b->sched_ns[slot]) / 1000);
            pthread_mutex_unlock(&b->hist_lock);
        }
    }
    atomic_store(&b->last_done_ns, now);
    atomic_fetch_add(&b->done, 1);
}

static void *poll_reports(void *arg)
{
    struct producer *p = arg;
    while (!atomic_load(&p->owner->stop))
        rd_kafka_poll(p->rk, 50);
    return NULL;
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
               size_t errsize)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errsize, "librdkafka property %s=%s: %s", name, value, errstr);
    return -1;
}

static int create_producer(struct baseline *b, int index, const char *bootstrap,
                           const char *topic, char *err, size_t errsize)
{
    struct producer *p = &b->producers[index];
    char errstr[256];
    char client_id[64];

    p->owner = b;
    p->bit = 1u << index;
    snprintf(client_id, sizeof(client_id), "twinlane-bench-baseline-%d", index);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    rc |= set(conf, "bootstrap.servers", bootstrap, err, errsize);
    rc |= set(conf, "client.id", client_id, err, errsize);
    rc |= set(conf, "enable.idempotence", "true", err, errsize);
    rc |= set(conf, "acks", "all", err, errsize);
    rc |= set(conf, "linger.ms", "5", err, errsize);
    rc |= set(conf, "queue.buffering.max.messages", AGENT_QUEUE_MESSAGES, err, errsize);
    rc |= set(conf, "queue.buffering.max.kbytes", AGENT_QUEUE_KBYTES, err, errsize);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);

    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errsize, "cannot create a producer for %s: %s", bootstrap, errstr);
        return -1;
    }
    p->rkt = rd_kafka_topic_new(p->rk, topic, NULL);
    pthread_create(&p->poller, NULL, poll_reports, p);
    return 0;
}

static void destroy_all(struct baseline *b)
{
    for (int i = 0; i < b->region_count; i++) {
        if (b->producers[i].rk)
            rd_kafka_flush(b->producers[i].rk, 10000);
    }
    atomic_store(&b->stop, true);
    for (int i = 0; i < b->region_count; i++) {
        struct producer *p = &b->producers[i];
        if (!p->rk)
            continue;
        pthread_join(p->poller, NULL);
        rd_kafka_topic_destroy(p->rkt);
        rd_kafka_destroy(p->rk);
    }
    free((void *)b->acked);
    free(b->sched_ns);
    pthread_mutex_destroy(&b->hist_lock);
}

static int setup(struct baseline *b, const struct bench_baseline_options *opts, char *err,
                 size_t errsize)
{
    memset(b, 0, sizeof(*b));
    b->region_count = opts->region_count;
    b->all_bits = opts->region_count == 2 ? 3u : 1u;
    b->slot_count = 1;
    while (b->slot_count < opts->inflight * 4)
        b->slot_count <<= 1;
    b->acked = tl_xcalloc(b->slot_count, sizeof(*b->acked));
    b->sched_ns = tl_xcalloc(b->slot_count, sizeof(*b->sched_ns));
    pthread_mutex_init(&b->hist_lock, NULL);

    for (int i = 0; i < b->region_count; i++) {
        if (create_producer(b, i, opts->bootstrap[i], opts->topic, err, errsize) != 0) {
            destroy_all(b);
            return -1;
        }
    }
    return 0;
}

/* Hands event seq to every producer, with the agent's three headers. */
static void produce(struct baseline *b, const struct bench_event *ev, uint64_t seq,
                    int64_t sched_ns)
{
    size_t slot = seq & (b->slot_count - 1);
    char id[64];
    char ts[32];

    atomic_store(&b->acked[slot], 0);
    b->sched_ns[slot] = sched_ns;
    int id_len = snprintf(id, sizeof(id), "bench:%" PRIu64, seq);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    int ts_len = snprintf(ts, sizeof(ts), "%" PRId64, now_ms);

    for (int i = 0; i < b->region_count; i++) {
        struct producer *p = &b->producers[i];
        for (;;) {
            rd_kafka_headers_t *hdrs = rd_kafka_headers_new(3);
            rd_kafka_header_add(hdrs, "twinlane-id", -1, id, id_len);
            rd_kafka_header_add(hdrs, "twinlane-origin", -1, "east", -1);
            rd_kafka_header_add(hdrs, "twinlane-ts", -1, ts, ts_len);
            rd_kafka_resp_err_t kerr = rd_kafka_producev(
                p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_PARTITION(ev->partition),
                RD_KAFKA_V_KEY(ev->key, ev->key_len),
                RD_KAFKA_V_VALUE((void *)ev->value, ev->value_len), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_TIMESTAMP(now_ms), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq),
                RD_KAFKA_V_END);
            if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            rd_kafka_headers_destroy(hdrs);
            if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                /* Count the event as failed in this region so that its slot completes. */
                rd_kafka_message_t fake = {.err = kerr, ._private = (void *)(uintptr_t)seq};
                on_delivery(p->rk, &fake, p);
                break;
            }
            usleep(200);
        }
    }
}

/* Waits until fewer than limit events are unacknowledged; false after 60 s without progress. */
static bool wait_below(struct baseline *b, uint64_t sent, uint64_t limit)
{
    uint64_t last_done = atomic_load(&b->done);
    int64_t last_progress = bench_now_ns();
    for (;;) {
        uint64_t done = atomic_load(&b->done);
        if (sent - done < limit)
            return true;
        if (done != last_done) {
            last_done = done;
            last_progress = bench_now_ns();
        } else if (bench_now_ns() - last_progress > ACK_TIMEOUT_NS) {
            return false;
        }
        usleep(500);
    }
}

static double process_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Sends the first events once and waits for them, so connections and producer ids exist. */
static int warm_up(struct baseline *b, const struct bench_workload *w, uint64_t *seq, char *err,
                   size_t errsize)
{
    for (int i = 0; i < WARMUP_EVENTS; i++, (*seq)++)
        produce(b, &w->events[*seq % w->count], *seq, bench_now_ns());
    if (!wait_below(b, *seq, 1)) {
        snprintf(err, errsize, "the baseline's warm-up events were not acknowledged within 60 s");
        return -1;
    }
    atomic_store(&b->ok, 0);
    atomic_store(&b->failed, 0);
    return 0;
}

static void fill_result(struct baseline *b, int64_t start_ns, double cpu_start,
                        struct bench_rate *out)
{
    out->ok = atomic_load(&b->ok);
    out->failed = atomic_load(&b->failed);
    out->seconds = (double)(atomic_load(&b->last_done_ns) - start_ns) / 1e9;
    out->cpu_seconds = process_cpu_seconds() - cpu_start;
}

int bench_baseline_max(const struct bench_baseline_options *opts,
                       const struct bench_workload *w, double seconds, struct bench_rate *out,
                       char *err, size_t errsize)
{
    struct baseline b;
    uint64_t seq = 0;
    int rc = -1;

    if (setup(&b, opts, err, errsize) != 0)
        return -1;
    if (warm_up(&b, w, &seq, err, errsize) != 0)
        goto out;

    double cpu_start = process_cpu_seconds();
    int64_t start = bench_now_ns();
    int64_t end = start + (int64_t)(seconds * 1e9);
    while ((seq & 255) != 0 || bench_now_ns() < end) {
        if (!wait_below(&b, seq, opts->inflight)) {
            snprintf(err, errsize, "baseline: no acknowledgement for 60 s");
            goto out;
        }
        produce(&b, &w->events[seq % w->count], seq, start);
        seq++;
    }
    if (!wait_below(&b, seq, 1)) {
        snprintf(err, errsize, "baseline: no acknowledgement for 60 s while draining");
        goto out;
    }
    fill_result(&b, start, cpu_start, out);
    rc = 0;

out:
    destroy_all(&b);
    return rc;
}

int bench_baseline_open_loop(const struct bench_baseline_options *opts,
                             const struct bench_workload *w, const struct bench_schedule *sched,
                             struct bench_hist *hist, struct bench_rate *out, char *err,
                             size_t errsize)
{
    struct baseline b;
    uint64_t seq = 0;
    int rc = -1;

    if (setup(&b, opts, err, errsize) != 0)
        return -1;
    if (warm_up(&b, w, &seq, err, errsize) != 0)
        goto out;
    b.hist = hist;

    double cpu_start = process_cpu_seconds();
    uint64_t total = (uint64_t)(sched->rate * sched->seconds);
    double period_ns = 1e9 / sched->rate;
    int64_t start = bench_now_ns();
    uint64_t i = 0;
    while (i < total) {
        int64_t now = bench_now_ns();
        uint64_t due = (uint64_t)((double)(now - start) / period_ns) + 1;
        if (due > total)
            due = total;
        for (; i < due; i++, seq++) {
            if (!wait_below(&b, seq, opts->inflight)) {
                snprintf(err, errsize, "baseline: no acknowledgement for 60 s");
                goto out;
            }
            produce(&b, &w->events[seq % w->count], seq, start + (int64_t)((double)i * period_ns));
        }
        int64_t next = start + (int64_t)((double)i * period_ns);
        int64_t wake = now + BENCH_SEND_TICK_NS > next ? now + BENCH_SEND_TICK_NS : next;
        struct timespec ts = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000};
        if (i < total)
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    if (!wait_below(&b, seq, 1)) {
        snprintf(err, errsize, "baseline: no acknowledgement for 60 s while draining");
        goto out;
    }
    fill_result(&b, start, cpu_start, out);
    rc = 0;

out:
    destroy_all(&b);
    return rc;
}
