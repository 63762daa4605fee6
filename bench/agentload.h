/*
 * Agent drivers: load a running twinlane-agent through the client library, either as fast
 * as the in-flight limit allows or on a fixed schedule. Each driver owns one connection and
 * runs on the calling thread, so two drivers on two threads make two independent producers.
 */
#ifndef BENCH_AGENTLOAD_H
#define BENCH_AGENTLOAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "measure.h"
#include "workload.h"

struct bench_client_options {
    const char *address; /* "unix:/path" or "tcp:127.0.0.1:port" */
    const char *topic;
    size_t batch;        /* events per request */
    size_t inflight;     /* events sent and not yet answered */
};

/*
 * Per-event record of an open-loop run: scheduled send time and answer time (0 when no
 * answer came), both from bench_now_ns, and the status. The driver allocates the arrays;
 * bench_open_loop_free releases them.
 */
struct bench_open_loop_record {
    int64_t *sched_ns;
    int64_t *done_ns;
    uint8_t *status;
    size_t count;
};

void bench_open_loop_free(struct bench_open_loop_record *rec);

/*
 * Sends as fast as the in-flight limit allows, for seconds or, when event_limit is not 0,
 * until event_limit events are sent. Then waits for every answer. When agent_pid is above 0,
 * out->cpu_seconds is that process's CPU time over the run. Returns 0, or -1 with a message
 * when the connection fails or answers stop for 60 s.
 */
int bench_agent_max(const struct bench_client_options *opts, const struct bench_workload *w,
                    double seconds, uint64_t event_limit, pid_t agent_pid,
                    struct bench_rate *out, char *err, size_t errsize);

/*
 * Sends on sched, stopping early when *stop becomes true (stop may be NULL), and records each
 * event in rec. out->seconds covers the whole run. Returns 0 or -1 as bench_agent_max.
 */
int bench_agent_open_loop(const struct bench_client_options *opts,
                          const struct bench_workload *w, const struct bench_schedule *sched,
                          atomic_bool *stop, struct bench_open_loop_record *rec,
                          struct bench_rate *out, char *err, size_t errsize);

#endif
