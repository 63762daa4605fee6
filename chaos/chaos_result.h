/*
 * The outcome of one scenario run: figures from the load, the regions, the faults and the
 * agent's log, and the verdict against the scenario's expectations.
 *
 * The runner fills the inputs (load, verifier results, fault plan, agent log); then
 * chaos_result_compute derives the acknowledgement figures per fault and the verdict. The
 * report and the picture only read it.
 */
#ifndef TL_CHAOS_RESULT_H
#define TL_CHAOS_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chaos_agent.h"
#include "chaos_agentlog.h"
#include "chaos_fault.h"
#include "chaos_load.h"
#include "chaos_scenario.h"
#include "chaos_verify.h"

enum chaos_verdict {
    CHAOS_PASSED = 0,
    CHAOS_FAILED,            /* an expectation did not hold */
    CHAOS_SKIPPED,           /* this machine cannot run the scenario */
    CHAOS_ERROR,             /* the harness could not set up or run the scenario */
};

/* Acknowledgement figures of one fault. */
struct chaos_fault_figures {
    int64_t rto_ms;          /* to the first OK of an event sent after the fault; -1: none */
    int64_t max_stall_ms;    /* maximum time without any OK in the fault's window */
    int64_t window_end_ms;   /* end of that window: the next fault, or the end of the load */
};

#define CHAOS_MAX_FAILURES 16

struct chaos_result {
    const struct chaos_scenario *scenario;
    enum chaos_verdict verdict;
    char reason[512];            /* why it was skipped or could not run */
    char failures[CHAOS_MAX_FAILURES][256];
    size_t failure_count;

    int64_t started_ms;          /* wall clock at the start of the load */
    int64_t load_end_ms;         /* when the last event got its final result */
    int64_t heal_ms;             /* when the last fault healed (the load start without faults) */
    int64_t finished_ms;

    /* Load */
    size_t events;               /* distinct events generated */
    size_t attempts;             /* sends, resends included */
    size_t acknowledged;         /* events whose final result is OK */
    size_t spooled;              /* of those, OK while no region held them */
    size_t unresolved;           /* events with no OK at the end (drain timeout or final error) */
    size_t results_retryable, results_lost, results_failed, results_other;
    int64_t max_stall_ms;        /* maximum time without an OK during the whole load */
    int64_t ack_latency_p50_ms, ack_latency_p99_ms, ack_latency_max_ms;
    char first_problem[320];     /* first result other than OK or CONNECTION_LOST, with message */

    /* Regions */
    bool settled;                /* both regions were read to their high watermark in time */
    struct chaos_region_result regions[2];
    int64_t convergence_ms;      /* after the last heal; -1: never within the limit */

    /* Faults */
    const struct chaos_fault_plan *plan;
    struct chaos_fault_figures *fault_figures;

    /* Agent */
    int agent_starts;
    int agent_unexpected_exits;
    char agent_first_exit[256];
    struct chaos_agentlog log;
};

/*
 * Computes the acknowledgement figures and the verdict. Keeps a verdict of SKIPPED or ERROR
 * that the runner already set, but still lists failed expectations for an ERROR.
 */
void chaos_result_compute(struct chaos_result *r, const struct chaos_load *l);

/* Adds a line to r->failures (at most CHAOS_MAX_FAILURES are kept). */
void chaos_result_fail(struct chaos_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

const char *chaos_verdict_name(enum chaos_verdict v);

void chaos_result_free(struct chaos_result *r);

#endif
