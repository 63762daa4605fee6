/*
 * The runner: sets up one scenario, drives it and tears everything down again.
 *
 * Steps: parse the scenario; skip it at once when it needs tc netem and the kernel has none;
 * start the regions; mount the WAL's tmpfs when asked; start the agent, the region readers and
 * the load; run the fault timeline; let the load finish and drain; wait for both regions to
 * hold every acknowledged event; stop the agent; compute the figures and write the report.
 * Teardown (agent, regions, Kafka clusters, tmpfs) runs on every path, also on SIGINT and
 * SIGTERM through the signal handler.
 */
#include "chaos_run.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chaos_agent.h"
#include "chaos_agentlog.h"
#include "chaos_backend.h"
#include "chaos_fault.h"
#include "chaos_load.h"
#include "chaos_report.h"
#include "chaos_util.h"
#include "chaos_verify.h"

/* Time the regions get after the convergence limit to be read to their high watermarks. */
#define SETTLE_EXTRA_MS 30000

/* Everything a run starts, so that the signal handler can end it. */
struct run_state {
    struct chaos_backend backend;
    struct chaos_agent agent;
    struct chaos_fault_plan plan;
    struct chaos_load load;
    struct chaos_verifier verifier;
    bool verifier_started;
};

static struct run_state *volatile active;

static void on_signal(int sig)
{
    struct run_state *st = active;
    if (st) {
        if (st->agent.pid > 0)
            kill(st->agent.pid, SIGKILL);
        for (int r = 0; r < 2; r++) {
            if (st->backend.regions[r].mock_pid > 0)
                kill(st->backend.regions[r].mock_pid, SIGKILL);
        }
        if (st->backend.kafka_started) {
            pid_t pid = fork();
            if (pid == 0) {
                putenv(st->backend.kafka_env);
                execl(st->backend.kafka_tool, "kafka-cluster", "down", (char *)NULL);
                _exit(127);
            }
            if (pid > 0)
                waitpid(pid, NULL, 0);
        }
        if (st->plan.mounted)
            umount2(st->plan.tmpfs, MNT_DETACH);
    }
    _exit(128 + sig);
}

void chaos_run_install_signal_handlers(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Creates out_root/NAME afresh; returns 0 or -1 with a message in err. */
static int make_run_dir(const char *out_root, const char *name, char *dir, size_t dirsize,
                        char *err, size_t errsize)
{
    if (mkdir(out_root, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errsize, "creating %s failed: %s", out_root, strerror(errno));
        return -1;
    }
    char *real = realpath(out_root, NULL);
    if (!real) {
        snprintf(err, errsize, "resolving %s failed: %s", out_root, strerror(errno));
        return -1;
    }
    snprintf(dir, dirsize, "%s/%s", real, name);
    free(real);
    /* The directory of an earlier run of the same scenario is replaced. */
    char *rm[] = {"rm", "-rf", "--", dir, NULL};
    chaos_run_command(rm, NULL, NULL, 60000, NULL);
    if (mkdir(dir, 0755) != 0) {
        snprintf(err, errsize, "creating %s failed: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static bool needs_netem(const struct chaos_scenario *s)
{
    for (size_t i = 0; i < s->fault_count; i++) {
        if (s->faults[i].action == CHAOS_LATENCY && s->backend == CHAOS_BACKEND_KAFKA)
            return true;
    }
    return false;
}

static void set_outcome(struct chaos_outcome *o, const struct chaos_result *r, int64_t started)
{
    o->verdict = r->verdict;
    o->seconds = (chaos_now_ms() - started + 500) / 1000;
    if (r->failure_count > 0)
        snprintf(o->headline, sizeof(o->headline), "%s", r->failures[0]);
    else
        snprintf(o->headline, sizeof(o->headline), "%.250s", r->reason);
}

/* Drives the load and the faults, then waits for the regions; fills r. */
static void drive(struct run_state *st, const struct chaos_scenario *s, struct chaos_result *r)
{
    int64_t load_end = st->load.start_ms + s->duration_ms;
    chaos_note("load started: %d events/s for %.1f s, %zu faults", s->rate,
               (double)s->duration_ms / 1000, s->fault_count);
    chaos_fault_run_timeline(&st->plan, s, &st->backend, &st->agent, st->load.start_ms);
    chaos_fault_watch_until(&st->plan, &st->agent, load_end);
    chaos_load_finish(&st->load);
    r->load_end_ms = chaos_now_ms();
    chaos_note("load finished: %zu events sent, %zu OK results", st->load.sent_new,
               (size_t)st->load.results_ok);

    r->heal_ms = st->load.start_ms;
    for (size_t k = 0; k < st->plan.count; k++) {
        if (st->plan.runs[k].healed_ms > r->heal_ms)
            r->heal_ms = st->plan.runs[k].healed_ms;
    }
    int64_t limit = s->expect.converge_within_ms >= 0 ? s->expect.converge_within_ms : 60000;
    int64_t remaining = r->heal_ms + limit + SETTLE_EXTRA_MS - chaos_now_ms();
    r->settled = chaos_verify_settle(&st->verifier, &st->load, remaining > 5000 ? remaining : 5000);
    chaos_note("regions %s", r->settled ? "settled" : "did not settle within the limit");
    chaos_fault_watch_until(&st->plan, &st->agent, 0);
    chaos_verify_stop(&st->verifier);

    for (int g = 0; g < 2; g++)
        chaos_verify_region(&st->verifier, g, &st->load, &r->regions[g]);
    r->convergence_ms = chaos_verify_convergence(&st->verifier, &st->load, r->heal_ms);

    r->results_retryable = st->load.results_retryable;
    r->results_lost = st->load.results_lost;
    r->results_failed = st->load.results_failed;
    r->results_other = st->load.results_other;
    snprintf(r->first_problem, sizeof(r->first_problem), "%s", st->load.first_problem);
}

void chaos_run_scenario(const struct chaos_options *opts, const char *path,
                        struct chaos_outcome *outcome)
{
    int64_t started = chaos_now_ms();
    struct chaos_scenario s;
    char err[1024];
    memset(outcome, 0, sizeof(*outcome));
    const char *base = strrchr(path, '/');
    snprintf(outcome->name, sizeof(outcome->name), "%s", base ? base + 1 : path);

    if (chaos_scenario_load(path, TL_CHAOS_SOURCE_DIR, &s, err, sizeof(err)) < 0) {
        outcome->verdict = CHAOS_ERROR;
        snprintf(outcome->headline, sizeof(outcome->headline), "%.250s", err);
        fprintf(stderr, "twinlane-chaos: %s\n", err);
        return;
    }
    snprintf(outcome->name, sizeof(outcome->name), "%s", s.name);

    struct run_state *st = calloc(1, sizeof(*st));
    struct chaos_result r = {.scenario = &s, .plan = &st->plan, .convergence_ms = -1};
    char dir[512];
    chaos_note("scenario %s: %s", s.name, s.description);
    if (make_run_dir(opts->out_root, s.name, dir, sizeof(dir), err, sizeof(err)) < 0) {
        r.verdict = CHAOS_ERROR;
        snprintf(r.reason, sizeof(r.reason), "%.500s", err);
        chaos_report_summary(stdout, &r);
        set_outcome(outcome, &r, started);
        goto out_free;
    }

    if (needs_netem(&s) && !chaos_netem_available()) {
        r.verdict = CHAOS_SKIPPED;
        snprintf(r.reason, sizeof(r.reason), "skipped: netem unavailable (this kernel has no "
                 "sch_netem, so tc cannot add delay or loss)");
        goto report;
    }

    active = st;
    const char *bootstrap[2];
    char wal_dir[700];
    bool have_wal_dir = false;
    if (chaos_backend_start(&st->backend, &s, dir, opts->mock_bin, opts->kafka_tool, err,
                            sizeof(err)) < 0)
        goto error;
    bootstrap[0] = st->backend.regions[0].bootstrap;
    bootstrap[1] = st->backend.regions[1].bootstrap;
    chaos_note("regions ready: east %s, west %s", bootstrap[0], bootstrap[1]);
    if (s.wal_tmpfs_mb > 0) {
        if (chaos_fault_mount_tmpfs(&st->plan, dir, s.wal_tmpfs_mb, wal_dir, sizeof(wal_dir),
                                    err, sizeof(err)) < 0)
            goto error;
        have_wal_dir = true;
    }
    if (chaos_agent_configure(&st->agent, opts->agent_bin, dir, &s, bootstrap,
                              have_wal_dir ? wal_dir : NULL, err, sizeof(err)) < 0 ||
        chaos_agent_start(&st->agent, err, sizeof(err)) < 0)
        goto error;
    if (chaos_load_prepare(&st->load, &s, dir, err, sizeof(err)) < 0)
        goto error;
    if (chaos_verify_start(&st->verifier, &s, bootstrap, &st->load) < 0) {
        snprintf(err, sizeof(err), "starting the region readers failed");
        goto error;
    }
    st->verifier_started = true;
    if (chaos_load_start(&st->load, st->agent.socket, err, sizeof(err)) < 0)
        goto error;
    r.started_ms = st->load.start_ms;

    drive(st, &s, &r);
    goto teardown;

error:
    r.verdict = CHAOS_ERROR;
    snprintf(r.reason, sizeof(r.reason), "could not run: %.480s", err);
    if (st->load.running)
        chaos_load_finish(&st->load);
teardown:
    if (st->agent.pid > 0) {
        int rc = chaos_agent_stop(&st->agent);
        if (rc != 0 && r.verdict == CHAOS_PASSED)
            chaos_result_fail(&r, "the agent exited with status %d after SIGTERM", rc);
    }
    if (st->verifier_started)
        chaos_verify_stop(&st->verifier);
    chaos_backend_stop(&st->backend);
    chaos_fault_unmount_tmpfs(&st->plan);
    active = NULL;
    r.agent_starts = st->agent.starts;
    r.agent_unexpected_exits = st->agent.unexpected_exits;
    snprintf(r.agent_first_exit, sizeof(r.agent_first_exit), "%s", st->agent.first_exit);
    if (st->agent.log[0])
        chaos_agentlog_read(st->agent.log, &r.log);
    if (r.started_ms > 0)
        chaos_result_compute(&r, &st->load);
    if (!opts->keep && st->agent.dir[0]) {
        char data[700];
        snprintf(data, sizeof(data), "%s/data", st->agent.dir);
        char *rm[] = {"rm", "-rf", "--", data, NULL};
        chaos_run_command(rm, NULL, NULL, 60000, NULL);
    }

report:
    r.finished_ms = chaos_now_ms();
    if (r.started_ms == 0)
        r.started_ms = started;
    chaos_report_write(dir, &r, &st->load);
    printf("  report: %s/summary.txt, report.json, timeline.svg\n\n", dir);
    fflush(stdout);
    set_outcome(outcome, &r, started);
out_free:
    if (st->verifier_started)
        chaos_verify_free(&st->verifier);
    chaos_load_free(&st->load);
    chaos_fault_free(&st->plan);
    chaos_result_free(&r);
    free(st);
    chaos_scenario_free(&s);
}
