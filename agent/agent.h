/*
 * The agent: builds every module from a loaded configuration, runs the event loop thread, and
 * shuts down in order.
 *
 * Start-up: data directory (created, locked against a second agent), pipeline, embedded
 * clusters, one producer per region, the topic check (each configured topic must exist in both
 * regions with the same partition count), listeners, region threads.
 *
 * Shutdown on SIGTERM or SIGINT: stop accepting, keep answering until every accepted event has
 * completed or agent.shutdown_timeout_ms has passed, then stop the regions (events still
 * undelivered are answered as FAILED), flush answers and exit. A second signal skips the wait.
 */
#ifndef TL_AGENT_H
#define TL_AGENT_H

#include <stddef.h>

#include "config.h"

/* Process exit codes of twinlane-agent. */
enum tl_agent_exit {
    TL_EXIT_OK = 0,       /* clean shutdown */
    TL_EXIT_RUNTIME = 1,  /* could not start (regions unreachable, topic check, listeners) */
    TL_EXIT_USAGE = 2,    /* bad command line or invalid configuration */
};

/*
 * Runs the agent until a shutdown signal. Returns TL_EXIT_OK after a clean shutdown, or
 * TL_EXIT_RUNTIME with err set when start-up failed. Call from the main thread, once.
 */
int tl_agent_run(const struct tl_config *cfg, char *err, size_t errsize);

#endif
