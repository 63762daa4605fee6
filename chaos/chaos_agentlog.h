/*
 * Reading the agent's log: breaker transitions and failover timeline steps per region.
 *
 * The agent logs "breaker state changed region=R from=S to=S reason=\"...\" ..." on every
 * transition and "failover timeline region=R step=S episode=N ms_since_first_failure=M" for
 * each step of an outage (agent/timeline.h). Every line starts with a UTC timestamp with
 * milliseconds, which this module turns into ms since the epoch.
 */
#ifndef TL_CHAOS_AGENTLOG_H
#define TL_CHAOS_AGENTLOG_H

#include <stddef.h>
#include <stdint.h>

struct chaos_transition {
    int64_t at_ms;
    int region;              /* 0 or 1 */
    char from[40];
    char to[40];             /* such as "OPEN" or "HALF_OPEN(backfilling)" */
    char reason[120];
};

struct chaos_timeline_step {
    int64_t at_ms;
    int region;
    char step[40];
    int64_t since_first_failure_ms;
};

struct chaos_agentlog {
    struct chaos_transition *transitions;
    size_t transition_count;
    struct chaos_timeline_step *steps;
    size_t step_count;
    size_t error_lines;      /* lines logged at level ERROR */
};

/* Parses the log at path. A missing file gives an empty result. */
void chaos_agentlog_read(const char *path, struct chaos_agentlog *out);

void chaos_agentlog_free(struct chaos_agentlog *log);

#endif
