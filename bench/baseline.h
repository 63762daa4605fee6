/*
 * Baseline: the benchmark process itself writes events to one or two clusters with plain
 * librdkafka producers that have the agent's producer settings (idempotent, acks=all,
 * linger.ms=5, the agent's queue limits, the same three record headers and the partition
 * chosen by murmur2). It shows what librdkafka alone achieves on the same machine, clusters
 * and events, with no socket, WAL or pipeline in between.
 *
 * Threads: the caller's thread produces; one thread per producer serves delivery reports.
 */
#ifndef BENCH_BASELINE_H
#define BENCH_BASELINE_H

#include <stddef.h>

#include "hist.h"
#include "measure.h"
#include "workload.h"

struct bench_baseline_options {
    const char *bootstrap[2];
    int region_count;   /* 1: the first cluster only; 2: both */
    const char *topic;
    size_t inflight;    /* events sent and not yet acknowledged by every region */
};

/*
 * Sends events as fast as the in-flight limit allows for seconds, then waits for the last
 * acknowledgement. Fills out, with the process CPU time from getrusage. Returns 0, or -1 with
 * a message when a producer cannot be created or acknowledgements stop for 60 s.
 */
int bench_baseline_max(const struct bench_baseline_options *opts,
                       const struct bench_workload *w, double seconds, struct bench_rate *out,
                       char *err, size_t errsize);

/*
 * Sends events on a fixed schedule and records, per event, the time from its scheduled send
 * to the later of its acknowledgements into hist. Returns 0 or -1 as bench_baseline_max.
 */
int bench_baseline_open_loop(const struct bench_baseline_options *opts,
                             const struct bench_workload *w, const struct bench_schedule *sched,
                             struct bench_hist *hist, struct bench_rate *out, char *err,
                             size_t errsize);

#endif
