/*
 * The agent: builds every module from a loaded configuration, runs the event loop thread, and
 * shuts down in order.
 *
 * Start-up: data directory (created, locked against a second agent), WAL recovery, pipeline,
 * embedded
 * clusters, one producer per region, the topic check (each configured topic must exist in both
 * regions with the same partition count), listeners, region threads.
 *
 * Shutdown on SIGTERM or SIGINT: stop accepting, keep answering until every accepted event has
 * been answered or agent.shutdown_timeout_ms has passed, then stop the regions, answer what is
 * left RETRYABLE (it stays in the WAL and is delivered after the next start), flush answers,
 * persist the WAL cursors and exit. A second signal skips the wait.
 */
#ifndef TL_AGENT_H
#define TL_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Process exit codes of twinlane-agent. */
enum tl_agent_exit {
    TL_EXIT_OK = 0,       /* clean shutdown */
    TL_EXIT_RUNTIME = 1,  /* could not start (regions unreachable, topic check, listeners) */
    TL_EXIT_USAGE = 2,    /* bad command line or invalid configuration */
};

/* Command-line choices that are not configuration. */
struct tl_agent_options {
    bool salvage_wal;  /* move damaged WAL segments aside instead of refusing to start */
};

/*
 * Runs the agent until a shutdown signal. Returns TL_EXIT_OK after a clean shutdown, or
 * TL_EXIT_RUNTIME with err set when start-up failed. opts may be NULL. Call from the main
 * thread, once.
 */
int tl_agent_run(const struct tl_config *cfg, const struct tl_agent_options *opts, char *err,
                 size_t errsize);

#endif
