/*
 * Outcome of one measured run, shared by the baseline and the agent drivers.
 */
#ifndef BENCH_MEASURE_H
#define BENCH_MEASURE_H

#include <stdint.h>

struct bench_rate {
    uint64_t ok;         /* events acknowledged by every region */
    uint64_t failed;     /* events with an error from any region */
    double seconds;      /* first send to last acknowledgement */
    double cpu_seconds;  /* CPU time of the measured process over the run; <0 unknown */
};

/* Events per second, or 0 for an empty run. */
static inline double bench_rate_per_sec(const struct bench_rate *r)
{
    return r->seconds > 0 ? (double)r->ok / r->seconds : 0.0;
}

/* Load the open-loop drivers keep up: rate in events per second for duration seconds. */
struct bench_schedule {
    double rate;
    double seconds;
};

/* Finest sleep of an open-loop sender, in nanoseconds; a wake-up sends every event now due. */
#define BENCH_SEND_TICK_NS 200000

#endif
