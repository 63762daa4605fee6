/*
 * One scenario run from start to report: regions, agent, load, faults, verification.
 */
#ifndef TL_CHAOS_RUN_H
#define TL_CHAOS_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "chaos_result.h"

struct chaos_options {
    const char *agent_bin;
    const char *mock_bin;
    const char *kafka_tool;
    const char *out_root;     /* each scenario writes into out_root/NAME */
    bool keep;                /* keep the agent's data directory (WAL) after the run */
};

/* Row of the closing table of a multi-scenario run. */
struct chaos_outcome {
    char name[128];
    enum chaos_verdict verdict;
    char headline[256];       /* the first failure or the reason for a skip */
    int64_t seconds;
};

/*
 * Runs the scenario file at path and writes its report into out_root/NAME. Scenario errors
 * give CHAOS_ERROR with the message in outcome->headline.
 */
void chaos_run_scenario(const struct chaos_options *opts, const char *path,
                        struct chaos_outcome *outcome);

/* Installs SIGINT and SIGTERM handlers that end the processes of the running scenario. */
void chaos_run_install_signal_handlers(void);

#endif
