/*
 * Readable summary and report.json of one run. The JSON contains the same figures under the
 * names docs/chaos.md explains, so scripts can compare runs.
 */
#include "chaos_report.h"

#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "chaos_svg.h"

static void print_ms(FILE *out, int64_t ms)
{
    if (ms < 0)
        fprintf(out, "none");
    else
        fprintf(out, "%" PRId64 " ms", ms);
}

void chaos_report_summary(FILE *out, const struct chaos_result *r)
{
    const struct chaos_scenario *s = r->scenario;
    fprintf(out, "scenario %s: %s\n", s->name, chaos_verdict_name(r->verdict));
    if (s->description && s->description[0])
        fprintf(out, "  %s\n", s->description);
    if (r->reason[0])
        fprintf(out, "  %s\n", r->reason);
    if (r->verdict == CHAOS_SKIPPED || r->events == 0) {
        for (size_t i = 0; i < r->failure_count; i++)
            fprintf(out, "  failed: %s\n", r->failures[i]);
        return;
    }
    fprintf(out, "  backend %s, %d broker(s) per region, %d events/s for %.1f s, topic %s with "
            "%d partitions\n", s->backend == CHAOS_BACKEND_KAFKA ? "kafka" : "mock", s->brokers,
            s->rate, (double)s->duration_ms / 1000, s->topic, s->partitions);
    fprintf(out, "  load: %zu events, %zu attempts, %zu acknowledged (%zu spooled), %zu without "
            "OK at the end; results RETRYABLE %zu, CONNECTION_LOST %zu, FAILED %zu, other %zu\n",
            r->events, r->attempts, r->acknowledged, r->spooled, r->unresolved,
            r->results_retryable, r->results_lost, r->results_failed, r->results_other);
    if (r->first_problem[0])
        fprintf(out, "  first result other than OK or CONNECTION_LOST: %s\n", r->first_problem);
    fprintf(out, "  acknowledgement latency from first send: p50 %" PRId64 " ms, p99 %" PRId64
            " ms, max %" PRId64 " ms; longest stall %" PRId64 " ms\n", r->ack_latency_p50_ms,
            r->ack_latency_p99_ms, r->ack_latency_max_ms, r->max_stall_ms);
    for (int g = 0; g < 2; g++) {
        const struct chaos_region_result *reg = &r->regions[g];
        fprintf(out, "  region %s: %zu records, missing %zu, unexpected %zu, duplicates %zu, "
                "stored without OK %zu, misplaced %zu, order violations %zu (first-copy "
                "inversions %zu)\n", CHAOS_REGION_NAMES[g], reg->records, reg->missing,
                reg->unexpected, reg->duplicates, reg->unacknowledged, reg->misplaced,
                reg->order_violations, reg->first_copy_inversions);
        for (size_t k = 0; k < reg->missing_example_count; k++)
            fprintf(out, "    missing: event %" PRId64 "\n", reg->missing_examples[k]);
        if (!reg->read_to_high_watermark)
            fprintf(out, "    not read up to the high watermark of every partition\n");
    }
    fprintf(out, "  convergence after the last heal: ");
    print_ms(out, r->convergence_ms);
    fprintf(out, "%s\n", r->settled ? "" : " (regions not settled within the limit)");
    for (size_t k = 0; k < r->plan->count; k++) {
        const struct chaos_fault_run *run = &r->plan->runs[k];
        const struct chaos_fault *f = run->fault;
        fprintf(out, "  fault %-14s %-5s at %6.1f s for %5.1f s: ", chaos_action_name(f->action),
                f->region >= 0 ? CHAOS_REGION_NAMES[f->region] : "agent",
                (double)(run->injected_ms ? run->injected_ms - r->started_ms : f->at_ms) / 1000,
                (double)f->duration_ms / 1000);
        if (run->outcome != CHAOS_FAULT_DONE) {
            fprintf(out, "%s: %s\n", run->outcome == CHAOS_FAULT_SKIPPED ? "skipped" : "error",
                    run->error);
            continue;
        }
        fprintf(out, "RTO ");
        print_ms(out, r->fault_figures[k].rto_ms);
        fprintf(out, ", longest stall %" PRId64 " ms\n", r->fault_figures[k].max_stall_ms);
    }
    size_t transitions[2] = {0, 0};
    for (size_t i = 0; i < r->log.transition_count; i++)
        transitions[r->log.transitions[i].region]++;
    fprintf(out, "  agent: %d start(s), %d exit(s) by itself, breaker transitions east %zu, "
            "west %zu, %zu ERROR log lines\n", r->agent_starts, r->agent_unexpected_exits,
            transitions[0], transitions[1], r->log.error_lines);
    for (size_t i = 0; i < r->failure_count; i++)
        fprintf(out, "  failed: %s\n", r->failures[i]);
}

static json_t *region_json(const struct chaos_region_result *reg)
{
    json_t *missing = json_array();
    for (size_t k = 0; k < reg->missing_example_count; k++)
        json_array_append_new(missing, json_integer(reg->missing_examples[k]));
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:b}",
                     "records", (json_int_t)reg->records, "missing", (json_int_t)reg->missing,
                     "unexpected", (json_int_t)reg->unexpected,
                     "duplicates", (json_int_t)reg->duplicates,
                     "stored_without_ok", (json_int_t)reg->unacknowledged,
                     "misplaced", (json_int_t)reg->misplaced,
                     "order_violations", (json_int_t)reg->order_violations,
                     "first_copy_inversions", (json_int_t)reg->first_copy_inversions,
                     "missing_examples", missing, "read_to_high_watermark",
                     reg->read_to_high_watermark);
}

static json_t *result_json(const struct chaos_result *r)
{
    const struct chaos_scenario *s = r->scenario;
    json_t *faults = json_array();
    for (size_t k = 0; r->plan && k < r->plan->count; k++) {
        const struct chaos_fault_run *run = &r->plan->runs[k];
        const struct chaos_fault *f = run->fault;
        const char *outcome = run->outcome == CHAOS_FAULT_DONE      ? "done"
                              : run->outcome == CHAOS_FAULT_SKIPPED ? "skipped"
                                                                    : "error";
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s}",
                              "action", chaos_action_name(f->action),
                              "target", f->region >= 0 ? CHAOS_REGION_NAMES[f->region] : "agent",
                              "planned_at_ms", (json_int_t)f->at_ms,
                              "duration_ms", (json_int_t)f->duration_ms,
                              "injected_at_ms", (json_int_t)(run->injected_ms ? run->injected_ms - r->started_ms : -1),
                              "healed_at_ms", (json_int_t)(run->healed_ms ? run->healed_ms - r->started_ms : -1),
                              "outcome", outcome);
        if (r->fault_figures) {
            json_object_set_new(j, "rto_ms", json_integer(r->fault_figures[k].rto_ms));
            json_object_set_new(j, "max_stall_ms", json_integer(r->fault_figures[k].max_stall_ms));
        }
        if (run->error[0])
            json_object_set_new(j, "error", json_string(run->error));
        json_array_append_new(faults, j);
    }
    json_t *failures = json_array();
    for (size_t i = 0; i < r->failure_count; i++)
        json_array_append_new(failures, json_string(r->failures[i]));
    json_t *transitions = json_array();
    for (size_t i = 0; i < r->log.transition_count; i++) {
        const struct chaos_transition *t = &r->log.transitions[i];
        json_array_append_new(transitions,
                              json_pack("{s:I, s:s, s:s, s:s, s:s}", "at_ms",
                                        (json_int_t)(t->at_ms - r->started_ms), "region",
                                        CHAOS_REGION_NAMES[t->region], "from", t->from, "to",
                                        t->to, "reason", t->reason));
    }

    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:o}",
        "scenario", s->name, "file", s->path, "verdict", chaos_verdict_name(r->verdict),
        "reason", r->reason, "backend", s->backend == CHAOS_BACKEND_KAFKA ? "kafka" : "mock",
        "started_at_ms", (json_int_t)r->started_ms,
        "duration_ms", (json_int_t)(r->finished_ms - r->started_ms), "brokers", s->brokers,
        "failures", failures);
    json_object_set_new(root, "load", json_pack(
        "{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "rate", s->rate, "planned_duration_ms", (json_int_t)s->duration_ms,
        "events", (json_int_t)r->events, "attempts", (json_int_t)r->attempts,
        "acknowledged", (json_int_t)r->acknowledged, "spooled", (json_int_t)r->spooled,
        "without_ok", (json_int_t)r->unresolved,
        "results_retryable", (json_int_t)r->results_retryable,
        "results_connection_lost", (json_int_t)r->results_lost,
        "results_failed", (json_int_t)r->results_failed,
        "ack_latency_p50_ms", (json_int_t)r->ack_latency_p50_ms,
        "ack_latency_p99_ms", (json_int_t)r->ack_latency_p99_ms,
        "ack_latency_max_ms", (json_int_t)r->ack_latency_max_ms,
        "max_stall_ms", (json_int_t)r->max_stall_ms));
    json_object_set_new(root, "regions", json_pack("{s:o, s:o}", "east",
                                                   region_json(&r->regions[0]), "west",
                                                   region_json(&r->regions[1])));
    json_object_set_new(json_object_get(root, "load"), "first_problem",
                        json_string(r->first_problem));
    json_object_set_new(root, "convergence_ms", json_integer(r->convergence_ms));
    json_object_set_new(root, "settled", json_boolean(r->settled));
    json_object_set_new(root, "faults", faults);
    json_object_set_new(root, "agent", json_pack("{s:i, s:i, s:I, s:o}", "starts",
                                                 r->agent_starts, "exits_by_itself",
                                                 r->agent_unexpected_exits, "error_lines",
                                                 (json_int_t)r->log.error_lines,
                                                 "breaker_transitions", transitions));
    const struct chaos_expect *x = &s->expect;
    json_object_set_new(root, "expect", json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
        "max_missing", (json_int_t)x->max_missing,
        "max_order_violations", (json_int_t)x->max_order_violations,
        "max_unexpected", (json_int_t)x->max_unexpected, "max_rto_ms", (json_int_t)x->max_rto_ms,
        "max_stall_ms", (json_int_t)x->max_stall_ms,
        "converge_within_ms", (json_int_t)x->converge_within_ms,
        "min_acknowledged", (json_int_t)x->min_acknowledged, "agent_stays_up",
        x->agent_stays_up));
    return root;
}

int chaos_report_write(const char *dir, const struct chaos_result *r, const struct chaos_load *l)
{
    char path[700];
    int rc = 0;

    chaos_report_summary(stdout, r);
    fflush(stdout);

    snprintf(path, sizeof(path), "%s/summary.txt", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        chaos_report_summary(f, r);
        rc |= fclose(f) != 0 ? -1 : 0;
    } else {
        rc = -1;
    }

    json_t *root = result_json(r);
    snprintf(path, sizeof(path), "%s/report.json", dir);
    if (json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        rc = -1;
    json_decref(root);

    if (r->events > 0) {
        snprintf(path, sizeof(path), "%s/timeline.svg", dir);
        if (chaos_svg_write(path, r, l) != 0)
            rc = -1;
    }
    if (rc != 0)
        fprintf(stderr, "twinlane-chaos: writing the report into %s failed\n", dir);
    return rc;
}
