/*
 * CPU profile of the agent process with perf (software event cpu-clock, so it works where
 * hardware counters are not exposed, as in most virtual machines). Samples are split by the
 * shared object they hit: the agent binary, librdkafka, libc, the kernel and the rest.
 */
#ifndef BENCH_PROFILE_H
#define BENCH_PROFILE_H

#include <stdbool.h>
#include <sys/types.h>

struct bench_profile {
    double agent_percent;    /* twinlane-agent's own code */
    double rdkafka_percent;  /* librdkafka */
    double libc_percent;
    double kernel_percent;
    double other_percent;    /* compression, TLS and other libraries, vdso */
};

/* Returns true when a perf binary is on PATH (its path in path, size bytes). */
bool bench_profile_available(char *path, size_t size);

/*
 * Starts "perf record" on process target for seconds, writing data_path. Returns perf's pid,
 * or -1 when it could not be started.
 */
pid_t bench_profile_start(const char *perf, pid_t target, double seconds, const char *data_path);

/*
 * Waits for perf, then reads its data: shares by shared object into out, and the hottest
 * symbols as text into symbols_path. Returns 0, or -1 when perf failed or recorded nothing.
 */
int bench_profile_finish(const char *perf, pid_t *perf_pid, const char *data_path,
                         const char *symbols_path, struct bench_profile *out);

#endif
