/*
 * Client-library drivers for the agent. tl_client_poll reads responses on the sending thread,
 * so a result's time is taken when the client reads it. In an open-loop run that is at most
 * one send tick (BENCH_SEND_TICK_NS) after the response arrived.
 */
#include "agentload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <twinlane/client.h>

#include "mem.h"
#include "procs.h"

#define FLUSH_TIMEOUT_MS 60000
#define WARMUP_EVENTS 1000
#define MAX_BATCH 4096

struct driver {
    struct tl_client *client;
    struct bench_open_loop_record *rec;
    uint64_t ok;
    uint64_t failed;
    int64_t last_done_ns;
    char first_error[160];
};

static void on_result(void *ctx, const struct tl_client_result *result)
{
    struct driver *d = ctx;
    size_t index = (size_t)(uintptr_t)result->opaque;
    int64_t now = bench_now_ns();

    if (result->status == TL_CLIENT_OK) {
        d->ok++;
    } else {
        d->failed++;
        if (d->first_error[0] == '\0')
            snprintf(d->first_error, sizeof(d->first_error), "%s: %s",
                     tl_client_status_name(result->status),
                     result->message ? result->message : "(no message)");
    }
    d->last_done_ns = now;
    if (d->rec && index < d->rec->count) {
        d->rec->done_ns[index] = now;
        d->rec->status[index] = (uint8_t)result->status;
    }
}

static int connect_driver(struct driver *d, const struct bench_client_options *opts, char *err,
                          size_t errsize)
{
    memset(d, 0, sizeof(*d));
    struct tl_client_options copts = {.on_result = on_result, .ctx = d};
    char cerr[256];
    if (tl_client_connect(opts->address, &copts, &d->client, cerr, sizeof(cerr)) != 0) {
        snprintf(err, errsize, "connecting to the agent at %s failed: %s", opts->address, cerr);
        return -1;
    }
    return 0;
}

/* Sends events first .. first+count-1 of the run (workload events wrap around) as one request. */
static int send_batch(struct driver *d, const struct bench_client_options *opts,
                      const struct bench_workload *w, uint64_t first, size_t count, char *err,
                      size_t errsize)
{
    struct tl_client_event events[MAX_BATCH];
    char cerr[256];

    for (size_t i = 0; i < count; i++) {
        const struct bench_event *ev = &w->events[(first + i) % w->count];
        events[i] = (struct tl_client_event){
            .topic = opts->topic,
            .key = ev->key,
            .key_len = ev->key_len,
            .has_key = true,
            .value = ev->value,
            .value_len = ev->value_len,
            .opaque = (void *)(uintptr_t)(first + i),
        };
    }
    if (tl_client_send(d->client, events, count, NULL, cerr, sizeof(cerr)) != 0) {
        snprintf(err, errsize, "sending to %s failed: %s", opts->address, cerr);
        return -1;
    }
    return 0;
}

static int flush(struct driver *d, const struct bench_client_options *opts, char *err,
                 size_t errsize)
{
    int rc = tl_client_flush(d->client, FLUSH_TIMEOUT_MS);
    if (rc == 0)
        return 0;
    snprintf(err, errsize, "waiting for answers from %s failed: %s (%s)", opts->address,
             tl_client_strerror(rc), tl_client_last_error(d->client));
    return -1;
}

static int warm_up(struct driver *d, const struct bench_client_options *opts,
                   const struct bench_workload *w, char *err, size_t errsize)
{
    for (uint64_t i = 0; i < WARMUP_EVENTS; i += opts->batch) {
        size_t n = WARMUP_EVENTS - i < opts->batch ? WARMUP_EVENTS - i : opts->batch;
        if (send_batch(d, opts, w, i, n, err, errsize) != 0)
            return -1;
    }
    if (flush(d, opts, err, errsize) != 0)
        return -1;
    if (d->failed > 0) {
        snprintf(err, errsize, "the agent rejected warm-up events: %s", d->first_error);
        return -1;
    }
    d->ok = 0;
    return 0;
}

static size_t clamp_batch(size_t batch)
{
    if (batch > MAX_BATCH)
        return MAX_BATCH;
    if (batch == 0)
        return 1;
    return batch;
}

int bench_agent_max(const struct bench_client_options *opts, const struct bench_workload *w,
                    double seconds, uint64_t event_limit, pid_t agent_pid,
                    struct bench_rate *out, char *err, size_t errsize)
{
    struct driver d;
    struct bench_client_options o = *opts;
    int rc = -1;

    o.batch = clamp_batch(o.batch);
    if (connect_driver(&d, &o, err, errsize) != 0)
        return -1;
    if (warm_up(&d, &o, w, err, errsize) != 0)
        goto out;

    double cpu_start = agent_pid > 0 ? bench_proc_cpu_seconds(agent_pid) : -1;
    int64_t start = bench_now_ns();
    int64_t end = start + (int64_t)(seconds * 1e9);
    uint64_t sent = 0;
    for (;;) {
        if (event_limit ? sent >= event_limit : bench_now_ns() >= end)
            break;
        if (tl_client_inflight(d.client) + o.batch > o.inflight) {
            tl_client_poll(d.client, 10);
            continue;
        }
        size_t n = o.batch;
        if (event_limit && event_limit - sent < n)
            n = (size_t)(event_limit - sent);
        if (send_batch(&d, &o, w, sent, n, err, errsize) != 0)
            goto out;
        sent += n;
        tl_client_poll(d.client, 0);
    }
    if (flush(&d, &o, err, errsize) != 0)
        goto out;

    out->ok = d.ok;
    out->failed = d.failed;
    out->seconds = (double)(d.last_done_ns - start) / 1e9;
    out->cpu_seconds = agent_pid > 0 ? bench_proc_cpu_seconds(agent_pid) - cpu_start : -1;
    if (d.failed > 0)
        fprintf(stderr, "bench: %llu events failed at %s, first: %s\n",
                (unsigned long long)d.failed, o.address, d.first_error);
    rc = 0;

out:
    tl_client_close(d.client);
    return rc;
}

void bench_open_loop_free(struct bench_open_loop_record *rec)
{
    free(rec->sched_ns);
    free(rec->done_ns);
    free(rec->status);
    memset(rec, 0, sizeof(*rec));
}

int bench_agent_open_loop(const struct bench_client_options *opts,
                          const struct bench_workload *w, const struct bench_schedule *sched,
                          atomic_bool *stop, struct bench_open_loop_record *rec,
                          struct bench_rate *out, char *err, size_t errsize)
{
    struct driver d;
    struct bench_client_options o = *opts;
    int rc = -1;

    o.batch = clamp_batch(o.batch);
    memset(rec, 0, sizeof(*rec));
    if (connect_driver(&d, &o, err, errsize) != 0)
        return -1;
    if (warm_up(&d, &o, w, err, errsize) != 0)
        goto out;

    size_t total = (size_t)(sched->rate * sched->seconds);
    rec->sched_ns = tl_xcalloc(total + 1, sizeof(*rec->sched_ns));
    rec->done_ns = tl_xcalloc(total + 1, sizeof(*rec->done_ns));
    rec->status = tl_xcalloc(total + 1, sizeof(*rec->status));
    rec->count = total;
    d.rec = rec;

    double period_ns = 1e9 / sched->rate;
    int64_t start = bench_now_ns();
    size_t i = 0;
    while (i < total && !(stop && atomic_load(stop))) {
        tl_client_poll(d.client, 0);
        int64_t now = bench_now_ns();
        size_t due = (size_t)((double)(now - start) / period_ns) + 1;
        if (due > total)
            due = total;
        bool blocked = false;
        while (i < due) {
            size_t n = due - i < o.batch ? due - i : o.batch;
            if (tl_client_inflight(d.client) + n > o.inflight) {
                blocked = true;
                break;
            }
            for (size_t k = i; k < i + n; k++)
                rec->sched_ns[k] = start + (int64_t)((double)k * period_ns);
            if (send_batch(&d, &o, w, i, n, err, errsize) != 0)
                goto out;
            i += n;
        }
        if (blocked) {
            tl_client_poll(d.client, 1);
            continue;
        }
        int64_t next = start + (int64_t)((double)i * period_ns);
        int64_t wake = now + BENCH_SEND_TICK_NS > next ? now + BENCH_SEND_TICK_NS : next;
        struct timespec ts = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    rec->count = i;
    if (flush(&d, &o, err, errsize) != 0)
        goto out;

    out->ok = d.ok;
    out->failed = d.failed;
    out->seconds = (double)(d.last_done_ns - start) / 1e9;
    out->cpu_seconds = -1;
    if (d.failed > 0)
        fprintf(stderr, "bench: %llu events failed at %s, first: %s\n",
                (unsigned long long)d.failed, o.address, d.first_error);
    rc = 0;

out:
    tl_client_close(d.client);
    return rc;
}
