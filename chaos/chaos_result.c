/*
 * Acknowledgement figures per fault and the verdict of a run.
 *
 * RTO of a fault: from the moment the injection command returned to the first OK result for
 * an event whose (last) attempt was sent at or after that moment. For agent-kill the clock
 * starts at the restart instead, because no agent can answer while it is down by design.
 * Stall: the longest stretch without any OK answer between the fault's start and the end of
 * its window (the next fault's start, or the end of the load), counting the stretch from the
 * start to the first OK.
 */
#include "chaos_result.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twinlane/client.h>

#include "mem.h"

const char *chaos_verdict_name(enum chaos_verdict v)
{
    switch (v) {
    case CHAOS_PASSED:
        return "passed";
    case CHAOS_FAILED:
        return "FAILED";
    case CHAOS_SKIPPED:
        return "skipped";
    case CHAOS_ERROR:
        return "ERROR";
    }
    return "unknown";
}

void chaos_result_fail(struct chaos_result *r, const char *fmt, ...)
{
    if (r->failure_count == CHAOS_MAX_FAILURES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->failures[r->failure_count++], sizeof(r->failures[0]), fmt, ap);
    va_end(ap);
}

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Returns the maximum gap between elements of acks (sorted) within [from, to], edges included. */
static int64_t longest_gap(const int64_t *acks, size_t n, int64_t from, int64_t to)
{
    int64_t last = from, gap = 0;
    for (size_t i = 0; i < n; i++) {
        if (acks[i] < from)
            continue;
        if (acks[i] > to)
            break;
        if (acks[i] - last > gap)
            gap = acks[i] - last;
        last = acks[i];
    }
    if (to - last > gap)
        gap = to - last;
    return gap;
}

static void compute_acks(struct chaos_result *r, const struct chaos_load *l)
{
    size_t n = 0;
    int64_t *acks = tl_xmalloc((l->total ? l->total : 1) * sizeof(*acks));
    int64_t *latency = tl_xmalloc((l->total ? l->total : 1) * sizeof(*latency));
    for (size_t i = 0; i < l->total; i++) {
        const struct chaos_event *e = &l->events[i];
        r->attempts += e->attempts;
        if (e->attempts > 0)
            r->events++;
        if (e->status != TL_CLIENT_OK) {
            if (e->attempts > 0)
                r->unresolved++;
            continue;
        }
        r->acknowledged++;
        r->spooled += e->spooled;
        latency[n] = e->ack_ms - e->first_send_ms;
        acks[n++] = e->ack_ms;
    }
    qsort(acks, n, sizeof(*acks), compare_int64);
    qsort(latency, n, sizeof(*latency), compare_int64);
    if (n > 0) {
        r->ack_latency_p50_ms = latency[n / 2];
        r->ack_latency_p99_ms = latency[n * 99 / 100];
        r->ack_latency_max_ms = latency[n - 1];
    }
    int64_t load_end = r->started_ms + r->scenario->duration_ms;
    r->max_stall_ms = longest_gap(acks, n, r->started_ms, load_end);

    const struct chaos_fault_plan *p = r->plan;
    r->fault_figures = tl_xcalloc(p->count ? p->count : 1, sizeof(*r->fault_figures));
    for (size_t k = 0; k < p->count; k++) {
        const struct chaos_fault_run *run = &p->runs[k];
        struct chaos_fault_figures *fig = &r->fault_figures[k];
        int64_t start = run->fault->action == CHAOS_AGENT_KILL ? run->healed_ms
                                                               : run->injected_ms;
        fig->rto_ms = -1;
        fig->window_end_ms = k + 1 < p->count && p->runs[k + 1].injected_ms > 0
                                 ? p->runs[k + 1].injected_ms
                                 : load_end;
        if (start <= 0 || run->outcome != CHAOS_FAULT_DONE)
            continue;
        for (size_t i = 0; i < l->total; i++) {
            const struct chaos_event *e = &l->events[i];
            if (e->status == TL_CLIENT_OK && e->send_ms >= start &&
                (fig->rto_ms < 0 || e->ack_ms - start < fig->rto_ms))
                fig->rto_ms = e->ack_ms - start;
        }
        if (fig->window_end_ms > start)
            fig->max_stall_ms = longest_gap(acks, n, start, fig->window_end_ms);
    }
    free(acks);
    free(latency);
}

static void check_expectations(struct chaos_result *r)
{
    const struct chaos_expect *x = &r->scenario->expect;
    for (int g = 0; g < 2; g++) {
        const struct chaos_region_result *reg = &r->regions[g];
        const char *name = CHAOS_REGION_NAMES[g];
        if (x->max_missing >= 0 && (int64_t)reg->missing > x->max_missing)
            chaos_result_fail(r, "region %s: %zu acknowledged events missing (limit %" PRId64
                              ")", name, reg->missing, x->max_missing);
        if (x->max_order_violations >= 0 &&
            (int64_t)reg->order_violations > x->max_order_violations)
            chaos_result_fail(r, "region %s: %zu order violations (limit %" PRId64 ")", name,
                              reg->order_violations, x->max_order_violations);
        if (x->max_unexpected >= 0 && (int64_t)reg->unexpected > x->max_unexpected)
            chaos_result_fail(r, "region %s: %zu unexpected records (limit %" PRId64 ")", name,
                              reg->unexpected, x->max_unexpected);
        if (reg->misplaced > 0)
            chaos_result_fail(r, "region %s: %zu records in another partition than murmur2 of "
                              "their key", name, reg->misplaced);
    }
    if ((int64_t)r->acknowledged < x->min_acknowledged)
        chaos_result_fail(r, "%zu events acknowledged, fewer than the %" PRId64 " expected",
                          r->acknowledged, x->min_acknowledged);
    if (x->converge_within_ms >= 0 &&
        (r->convergence_ms < 0 || r->convergence_ms > x->converge_within_ms))
        chaos_result_fail(r, "regions did not converge within %.1f s of the last heal (%s)",
                          (double)x->converge_within_ms / 1000,
                          r->convergence_ms < 0 ? "some acknowledged events never arrived"
                                                : "they took longer");
    if (x->agent_stays_up && r->agent_unexpected_exits > 0)
        chaos_result_fail(r, "the agent exited %d time(s) by itself: %s",
                          r->agent_unexpected_exits, r->agent_first_exit);

    const struct chaos_fault_plan *p = r->plan;
    for (size_t k = 0; k < p->count; k++) {
        const struct chaos_fault_run *run = &p->runs[k];
        const struct chaos_fault_figures *fig = &r->fault_figures[k];
        const char *action = chaos_action_name(run->fault->action);
        double at = (double)run->fault->at_ms / 1000;
        if (run->outcome == CHAOS_FAULT_ERROR) {
            chaos_result_fail(r, "fault %s at %.1f s: %s", action, at, run->error);
            continue;
        }
        if (run->outcome != CHAOS_FAULT_DONE)
            continue;
        if (x->max_rto_ms >= 0 && (fig->rto_ms < 0 || fig->rto_ms > x->max_rto_ms))
            chaos_result_fail(r, "fault %s at %.1f s: RTO %" PRId64 " ms (limit %" PRId64
                              " ms%s)", action, at, fig->rto_ms, x->max_rto_ms,
                              fig->rto_ms < 0 ? "; no acknowledgement after the fault" : "");
        if (x->max_stall_ms >= 0 && fig->max_stall_ms > x->max_stall_ms)
            chaos_result_fail(r, "fault %s at %.1f s: acknowledgements stalled for %" PRId64
                              " ms (limit %" PRId64 " ms)", action, at, fig->max_stall_ms,
                              x->max_stall_ms);
    }
}

void chaos_result_compute(struct chaos_result *r, const struct chaos_load *l)
{
    compute_acks(r, l);
    check_expectations(r);
    if (r->verdict == CHAOS_PASSED && r->failure_count > 0)
        r->verdict = CHAOS_FAILED;
}

void chaos_result_free(struct chaos_result *r)
{
    free(r->fault_figures);
    chaos_agentlog_free(&r->log);
    memset(r, 0, sizeof(*r));
}
