/*
 * The twinlane-agent under test: its configuration, process, kills and restarts.
 *
 * The agent runs as a child of the harness with its log appended to DIR/agent.log across
 * restarts, so the log contains every breaker transition of the run. The main thread owns the
 * struct; the load generator only reads the socket path.
 */
#ifndef TL_CHAOS_AGENT_H
#define TL_CHAOS_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "chaos_scenario.h"

#define CHAOS_AGENT_ID "chaos"

struct chaos_agent {
    char bin[512];
    char dir[512];
    char config[600];
    char log[600];
    char socket[600];
    pid_t pid;                 /* 0 while not running */
    int starts;
    int unexpected_exits;      /* exits that the harness did not cause */
    char first_exit[256];      /* description of the first unexpected exit */
};

/*
 * Writes DIR/agent.conf for scenario s with the regions' bootstrap servers. wal_dir may be
 * NULL for the default. Returns 0, or -1 with a message in err.
 */
int chaos_agent_configure(struct chaos_agent *a, const char *bin, const char *dir,
                          const struct chaos_scenario *s, const char *const bootstrap[2],
                          const char *wal_dir, char *err, size_t errsize);

/*
 * Starts the agent and waits up to 60 s until its socket accepts connections. Returns 0, or
 * -1 with a message in err when it exited or did not become ready (it is killed then).
 */
int chaos_agent_start(struct chaos_agent *a, char *err, size_t errsize);

/* Sends SIGKILL and reaps the agent. */
void chaos_agent_kill(struct chaos_agent *a);

/* Sends SIGTERM and waits up to 60 s; returns the exit status, or -1 after SIGKILL. */
int chaos_agent_stop(struct chaos_agent *a);

/*
 * Returns whether the agent runs. An exit that the harness did not cause is counted and
 * described in first_exit.
 */
bool chaos_agent_check(struct chaos_agent *a);

#endif
