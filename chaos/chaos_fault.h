/*
 * The fault timeline: injects and heals each fault of the scenario at its time, and keeps the
 * moments at which that really happened.
 *
 * Region faults go through chaos_backend_inject. This module handles the faults on the
 * agent's side itself: agent-kill (SIGKILL, then a restart when the window ends) and
 * disk-full (a filler file on the tmpfs that holds wal.dir, removed when the window ends).
 * While it waits between steps it watches the agent, and restarts an agent that exited by
 * itself so that the run can still be verified; chaos_agent counts such exits. Main thread.
 */
#ifndef TL_CHAOS_FAULT_H
#define TL_CHAOS_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chaos_agent.h"
#include "chaos_backend.h"
#include "chaos_scenario.h"

/* Outcome of one fault. */
enum chaos_fault_outcome {
    CHAOS_FAULT_DONE = 0,       /* injected and healed */
    CHAOS_FAULT_SKIPPED,        /* this machine cannot inject it */
    CHAOS_FAULT_ERROR,          /* injecting or healing failed; see error */
};

struct chaos_fault_run {
    const struct chaos_fault *fault;
    int64_t injected_ms;        /* wall clock once the injection command returned */
    int64_t healed_ms;          /* wall clock once the healing command returned */
    enum chaos_fault_outcome outcome;
    char error[320];
};

struct chaos_fault_plan {
    struct chaos_fault_run *runs;
    size_t count;
    char tmpfs[600];            /* mount point of the WAL's tmpfs; "" when none */
    bool mounted;
    int agent_restarts_after_exit;
};

/*
 * Mounts a tmpfs of size_mb MiB at DIR/wal-tmpfs for wal.dir and writes the WAL directory
 * path into wal_dir. Returns 0, or -1 with a message in err (mounting needs root).
 */
int chaos_fault_mount_tmpfs(struct chaos_fault_plan *p, const char *dir, int size_mb,
                            char *wal_dir, size_t wal_dir_size, char *err, size_t errsize);

/* Unmounts the tmpfs when one is mounted; call after the agent stopped. */
void chaos_fault_unmount_tmpfs(struct chaos_fault_plan *p);

/*
 * Runs the whole timeline of s, relative to load_start_ms, and returns when the last fault
 * has healed. Fills p->runs.
 */
void chaos_fault_run_timeline(struct chaos_fault_plan *p, const struct chaos_scenario *s,
                              struct chaos_backend *b, struct chaos_agent *a,
                              int64_t load_start_ms);

/*
 * Waits until at_ms, restarting the agent when it exited by itself. Used between the last
 * fault and the end of the load too.
 */
void chaos_fault_watch_until(struct chaos_fault_plan *p, struct chaos_agent *a, int64_t at_ms);

void chaos_fault_free(struct chaos_fault_plan *p);

#endif
