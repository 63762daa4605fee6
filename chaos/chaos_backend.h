/*
 * The two regions of a chaos run and the faults injected into them.
 *
 * Backend "mock" runs one twinlane-mock-cluster process per region and injects faults through
 * its control socket. Backend "kafka" runs one Apache Kafka cluster per region with
 * chaos/kafka/kafka-cluster, in a run directory private to the run (TWINLANE_KAFKA_RUN), and
 * injects faults by killing, pausing or cutting off its brokers. The main thread owns a
 * struct chaos_backend; the fault timeline calls chaos_backend_inject from that thread.
 */
#ifndef TL_CHAOS_BACKEND_H
#define TL_CHAOS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "chaos_scenario.h"

/* chaos_backend_inject's result when the fault cannot be injected on this machine. */
#define CHAOS_FAULT_UNAVAILABLE 1

/* The name of the heartbeat topic that the agent writes to by default; created in both regions. */
#define CHAOS_HEARTBEAT_TOPIC "twinlane.heartbeats"

struct chaos_region {
    const char *name;
    pid_t mock_pid;           /* mock backend: the twinlane-mock-cluster process */
    char bootstrap[512];
    char control[600];        /* mock backend: control socket */
    char log[600];
};

struct chaos_backend {
    const struct chaos_scenario *scenario;
    char dir[512];            /* the run's output directory */
    char mock_bin[512];
    char kafka_tool[512];     /* path of kafka-cluster */
    char kafka_env[600];      /* "TWINLANE_KAFKA_RUN=..." */
    bool kafka_started;
    struct chaos_region regions[2];
};

/*
 * Starts both regions and creates the scenario's topic and the heartbeat topic in each.
 * Returns 0, or -1 with a message in err; chaos_backend_stop must be called in both cases.
 */
int chaos_backend_start(struct chaos_backend *b, const struct chaos_scenario *s, const char *dir,
                        const char *mock_bin, const char *kafka_tool, char *err, size_t errsize);

/*
 * Injects fault f (heal = false) or heals it (heal = true). Only region faults and
 * produce-errors come here. Returns 0, CHAOS_FAULT_UNAVAILABLE when the machine lacks what the
 * fault needs (tc netem), or -1 with a message in err.
 */
int chaos_backend_inject(struct chaos_backend *b, const struct chaos_fault *f, bool heal,
                         char *err, size_t errsize);

/* Stops both regions and, for kafka, removes the clusters and their run directory. */
void chaos_backend_stop(struct chaos_backend *b);

/*
 * Returns whether this kernel offers tc netem, by adding a netem qdisc to the loopback
 * device of a network namespace created for the check and deleted afterwards.
 */
bool chaos_netem_available(void);

#endif
