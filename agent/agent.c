/*
 * Agent: start-up order, the event loop, statistics lines and graceful shutdown.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "embedded.h"
#include "error.h"
#include "ingest.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "pipeline.h"
#include "region.h"
#include "wal.h"

/* How long start-up waits for metadata while neither region responds, and for each region's
 * heartbeat topic. */
#define STARTUP_METADATA_TIMEOUT_MS 30000
#define STATS_INTERVAL_MS 60000

struct tl_agent {
    const struct tl_config *cfg;
    int epfd;
    int lock_fd;
    struct tl_watch signal_watch;
    struct tl_watch done_watch;
    struct tl_watch wal_watch;
    struct tl_wal *wal;
    struct tl_pipeline *pipeline;
    struct tl_embedded *embedded[TL_REGION_COUNT];
    struct tl_region *regions[TL_REGION_COUNT];
    struct tl_timeline timelines[TL_REGION_COUNT];
    int32_t *partitions;
    struct tl_ingest *ingest;
    struct tl_admin *admin;
    struct tl_watch admin_watch;
    int signals;            /* shutdown signals received */
    int64_t last_stats_ms;
};

static struct tl_agent *agent_of_signal(struct tl_watch *w)
{
    return (struct tl_agent *)((char *)w - offsetof(struct tl_agent, signal_watch));
}

static struct tl_agent *agent_of_done(struct tl_watch *w)
{
    return (struct tl_agent *)((char *)w - offsetof(struct tl_agent, done_watch));
}

static void on_signal(struct tl_watch *w, uint32_t events)
{
    (void)events;
    struct tl_agent *a = agent_of_signal(w);
    struct signalfd_siginfo si;

    while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
        a->signals++;
        if (a->signals == 1)
            tl_log_info("agent", "shutdown requested signal=%s timeout_ms=%d",
                        strsignal((int)si.ssi_signo), a->cfg->shutdown_timeout_ms);
        else
            tl_log_warn("agent", "second shutdown signal: not waiting for in-flight events "
                        "signal=%s", strsignal((int)si.ssi_signo));
    }
}

static void on_done(struct tl_watch *w, uint32_t events)
{
    (void)events;
    tl_ingest_handle_completions(agent_of_done(w)->ingest);
}

static void on_wal_progress(struct tl_watch *w, uint32_t events)
{
    (void)events;
    struct tl_agent *a = (struct tl_agent *)((char *)w - offsetof(struct tl_agent, wal_watch));
    uint64_t count;
    ssize_t ignored = read(w->fd, &count, sizeof(count));
    (void)ignored;
    tl_ingest_handle_completions(a->ingest);
    /*
     * The WAL wakes the regions itself, but an event can become durable before this thread
     * has appended it to the pipeline, and regions send only appended events: wake them
     * again now that every append before this notification is done.
     */
    uint64_t increment = 1;
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        ignored = write(a->regions[r]->wake_fd, &increment, sizeof(increment));
        (void)ignored;
    }
}

static void on_admin_request(struct tl_watch *w, uint32_t events)
{
    (void)events;
    struct tl_agent *a = (struct tl_agent *)((char *)w - offsetof(struct tl_agent, admin_watch));
    tl_admin_apply(a->admin, a->ingest);
}

/* Starts the admin API once everything it reports on exists. */
static int open_admin(struct tl_agent *a, char *err, size_t errsize)
{
    struct tl_admin_sources src = {.cfg = a->cfg, .wal = a->wal, .pipeline = a->pipeline,
                                   .regions = a->regions, .timelines = a->timelines};
    int rc = tl_admin_open(&src, &a->admin, err, errsize);
    if (rc != 0)
        return rc;
    a->admin_watch = (struct tl_watch){.fd = tl_admin_request_fd(a->admin),
                                       .on_ready = on_admin_request};
    tl_loop_add(a->epfd, &a->admin_watch, EPOLLIN);
    tl_admin_publish(a->admin, a->ingest, true);
    return 0;
}

/* Opens the WAL (recovering it) and the pipeline that continues its sequence numbers. */
static int open_wal(struct tl_agent *a, bool salvage, char *err, size_t errsize)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        tl_panic("eventfd failed: %s", strerror(errno));
    a->wal_watch = (struct tl_watch){.fd = fd, .on_ready = on_wal_progress};

    struct tl_wal_options opts = {.cfg = a->cfg, .salvage = salvage, .notify_fd = fd};
    struct tl_wal_recovery rec;
    int rc = tl_wal_open(&opts, &a->wal, &rec, err, errsize);
    if (rc != 0)
        return rc;
    for (int r = 0; r < TL_REGION_COUNT; r++)
        if (rec.cursor[r] < rec.next_seq)
            tl_log_info("agent", "region has events to catch up from the WAL region=%s "
                        "cursor=%" PRIu64 " backlog=%" PRIu64, a->cfg->regions[r].name,
                        rec.cursor[r], rec.next_seq - rec.cursor[r]);
    if (rec.salvaged_events)
        tl_log_error("agent", "started with --salvage-wal: events lost segments=%" PRIu64
                     " events%s=%" PRIu64, rec.salvaged_segments,
                     rec.salvaged_upper_bound ? "_at_most" : "", rec.salvaged_events);
    a->pipeline = tl_pipeline_new(a->cfg->ack_policy, a->cfg->max_inflight_events,
                                  a->cfg->max_inflight_bytes, rec.next_seq);
    return 0;
}

/* Creates the data directory if needed and locks it, so two agents never share one. */
static int lock_data_dir(struct tl_agent *a, char *err, size_t errsize)
{
    const char *dir = a->cfg->data_dir;
    char path[4096];

    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return tl_error(err, errsize, TL_EIO, "agent.data_dir: cannot create %s: %s", dir,
                        strerror(errno));
    snprintf(path, sizeof(path), "%s/agent.lock", dir);
    a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (a->lock_fd < 0)
        return tl_error(err, errsize, TL_EIO, "agent.data_dir: cannot open %s: %s", path,
                        strerror(errno));
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return tl_error(err, errsize, TL_EIO, "agent.data_dir: %s is in use by another agent "
                        "(lock %s held); stop it or give this agent its own data_dir", dir, path);
    return 0;
}

/*
 * Fetches the topics' partition counts of both regions into counts[region]. A region that has
 * not responded when the other one passed, agent.start_wait_ms after the start, is left
 * out: checked[region] stays false and last_error[region] gives its last error. Fails when
 * neither region responds within STARTUP_METADATA_TIMEOUT_MS, or on any error other than a
 * time-out.
 */
static int check_topics(struct tl_agent *a, int32_t *counts[], bool checked[],
                        char last_error[][512], char *err, size_t errsize)
{
    int64_t start = tl_now_ms();

    for (;;) {
        for (int r = 0; r < TL_REGION_COUNT; r++) {
            if (checked[r])
                continue;
            /* Rounds last as long as the wait, so that a slow region (a distant cluster, TLS
             * and SASL handshakes) has that long to respond. */
            int rc = tl_region_check_topics(a->regions[r], a->cfg->start_wait_ms, counts[r],
                                            last_error[r], sizeof(last_error[r]));
            if (rc == 0)
                checked[r] = true;
            else if (rc != TL_ETIMEDOUT)
                return tl_error(err, errsize, rc, "%s", last_error[r]);
        }
        int64_t waited = tl_now_ms() - start;
        if (checked[0] && checked[1])
            return 0;
        if ((checked[0] || checked[1]) && waited >= a->cfg->start_wait_ms)
            return 0;
        if (!checked[0] && !checked[1] && waited >= STARTUP_METADATA_TIMEOUT_MS)
            return tl_error(err, errsize, TL_ETIMEDOUT, "neither region responded within %d ms, "
                            "and the agent needs one to learn the partition counts. %s. %s",
                            STARTUP_METADATA_TIMEOUT_MS, last_error[0], last_error[1]);
    }
}

/*
 * Starts embedded clusters and producers, then checks the topics in both regions. A region
 * that does not respond is checked later, while the agent runs on the other one.
 */
static int open_regions(struct tl_agent *a, char *err, size_t errsize)
{
    const struct tl_config *cfg = a->cfg;
    int32_t *counts[TL_REGION_COUNT] = {0};
    bool checked[TL_REGION_COUNT] = {false, false};
    char last_error[TL_REGION_COUNT][512] = {"", ""};
    int rc = 0;

    for (int r = 0; r < TL_REGION_COUNT && rc == 0; r++) {
        const char *bootstrap = cfg->regions[r].bootstrap;
        if (cfg->regions[r].embedded) {
            rc = tl_embedded_start(cfg, r, &a->embedded[r], err, errsize);
            if (rc != 0)
                break;
            bootstrap = a->embedded[r]->bootstrap;
        }
        rc = tl_region_open(cfg, r, bootstrap, a->pipeline, a->wal, &a->regions[r], err,
                            errsize);
    }

    for (int r = 0; r < TL_REGION_COUNT; r++)
        counts[r] = tl_xcalloc(cfg->topic_count, sizeof(int32_t));
    int64_t checks_started_ms = tl_now_ms();
    int64_t checks_started_wallclock_ms = tl_wallclock_ms();
    if (rc == 0)
        rc = check_topics(a, counts, checked, last_error, err, errsize);
    int64_t waited_ms = tl_now_ms() - checks_started_ms;

    for (size_t t = 0; t < cfg->topic_count && rc == 0 && checked[0] && checked[1]; t++) {
        if (counts[0][t] != counts[1][t])
            rc = tl_error(err, errsize, TL_EINVAL, "topic %s has %" PRId32 " partitions in region "
                          "%s but %" PRId32 " in region %s; both regions need the same partition "
                          "count so that events land in the same partition",
                          cfg->topics[t].name, counts[0][t], cfg->regions[0].name, counts[1][t],
                          cfg->regions[1].name);
    }

    for (int r = 0; r < TL_REGION_COUNT && rc == 0; r++)
        if (checked[r])
            rc = tl_region_prepare_heartbeats(a->regions[r], STARTUP_METADATA_TIMEOUT_MS, err,
                                              errsize);
    for (int r = 0; r < TL_REGION_COUNT && rc == 0; r++) {
        tl_timeline_init(&a->timelines[r], cfg->regions[r].name);
        tl_region_attach(a->regions[r], a->regions, &a->timelines[r]);
    }

    if (rc == 0) {
        int known = checked[0] ? 0 : 1;
        a->partitions = counts[known];
        counts[known] = NULL;
        for (int r = 0; r < TL_REGION_COUNT; r++) {
            if (checked[r])
                continue;
            tl_log_warn("agent", "region did not respond at start, starting without it, and its "
                        "events wait in the WAL until it passes the topic checks region=%s "
                        "waited_ms=%" PRId64 " error=\"%s\"", cfg->regions[r].name, waited_ms,
                        last_error[r]);
            tl_region_defer_checks(a->regions[r], a->partitions, "did not respond at start",
                                   checks_started_wallclock_ms);
        }
    }
    for (int r = 0; r < TL_REGION_COUNT; r++)
        free(counts[r]);
    return rc;
}

static int open_signals(struct tl_agent *a, char *err, size_t errsize)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    /* Blocked in every thread created after this point, so only the signalfd sees them. */
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "signalfd failed: %s", strerror(errno));
    a->signal_watch = (struct tl_watch){.fd = fd, .on_ready = on_signal};
    tl_loop_add(a->epfd, &a->signal_watch, EPOLLIN);
    return 0;
}

static void log_stats(struct tl_agent *a, const char *what)
{
    struct tl_ingest_stats s;
    tl_ingest_get_stats(a->ingest, &s);
    tl_log_info("agent", "%s connections=%" PRIu64 " requests=%" PRIu64 " accepted=%" PRIu64
                " acknowledged=%" PRIu64 " rejected=%" PRIu64 " failed=%" PRIu64
                " bad_frames=%" PRIu64 " spooled=%" PRIu64 " inflight=%zu", what, s.connections_open, s.requests,
                s.events_accepted, s.events_acknowledged, s.events_rejected, s.events_failed,
                s.bad_frames, s.events_spooled, tl_pipeline_inflight(a->pipeline));
    struct tl_wal_stats ws;
    tl_wal_get_stats(a->wal, &ws);
    tl_log_info("agent", "%s wal_bytes=%" PRIu64 " wal_segments=%" PRIu64 " next_seq=%" PRIu64
                " fsyncs=%" PRIu64 " rejected_full=%" PRIu64 " write_errors=%" PRIu64, what,
                ws.bytes, ws.segments, ws.next_seq, ws.fsyncs, ws.rejected_full,
                ws.write_errors);
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        struct tl_region *reg = a->regions[r];
        uint64_t cursor = atomic_load(&reg->published_cursor);
        tl_log_info("agent", "%s region=%s produced=%" PRIuFAST64 " delivered=%" PRIuFAST64
                    " failed=%" PRIuFAST64 " retried=%" PRIuFAST64 " rebuilds=%" PRIuFAST64
                    " cursor=%" PRIu64 " backlog=%" PRIu64 " shed=%" PRIu64 " breaker=%s", what,
                    reg->name,
                    atomic_load(&reg->produced), atomic_load(&reg->delivered),
                    atomic_load(&reg->failed), atomic_load(&reg->retried),
                    atomic_load(&reg->rebuilds), cursor,
                    ws.next_seq > cursor ? ws.next_seq - cursor : 0, ws.shed[r],
                    tl_breaker_state_name(atomic_load(&reg->published_state)));
    }
}

/* Runs one round of the event loop: waits up to timeout_ms and dispatches ready watches. */
static void loop_once(struct tl_agent *a, int timeout_ms)
{
    struct epoll_event events[64];
    int n = epoll_wait(a->epfd, events, 64, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct tl_watch *w = events[i].data.ptr;
        w->on_ready(w, events[i].events);
    }
    if (n < 0 && errno != EINTR)
        tl_panic("epoll_wait failed: %s", strerror(errno));
}

static void run_loop(struct tl_agent *a)
{
    while (a->signals == 0) {
        bool busy = tl_ingest_run_backlog(a->ingest);
        loop_once(a, busy ? 0 : 1000);
        tl_admin_publish(a->admin, a->ingest, true);
        int64_t now = tl_now_ms();
        if (now - a->last_stats_ms >= STATS_INTERVAL_MS) {
            log_stats(a, "stats");
            a->last_stats_ms = now;
        }
    }
}

static void shut_down(struct tl_agent *a)
{
    int64_t deadline = tl_now_ms() + a->cfg->shutdown_timeout_ms;

    tl_ingest_stop_accepting(a->ingest);
    tl_admin_publish(a->admin, a->ingest, false);
    while (a->signals < 2 && tl_now_ms() < deadline &&
           (tl_pipeline_inflight(a->pipeline) > 0 || tl_ingest_has_pending_output(a->ingest)))
        loop_once(a, 100);

    size_t left = tl_pipeline_inflight(a->pipeline);
    if (left > 0)
        tl_log_warn("agent", "shutdown timeout reached with events unanswered inflight=%zu; they "
                    "stay in the WAL and producers get RETRYABLE", left);
    int64_t remaining = deadline - tl_now_ms();
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_region_stop(a->regions[r], a->signals < 2 && remaining > 0 ? (int)remaining : 0);

    /* Answer what the regions reported last, and give clients a moment to read it. */
    tl_ingest_answer_remaining(a->ingest);
    int64_t flush_deadline = tl_now_ms() + 1000;
    while (tl_ingest_has_pending_output(a->ingest) && tl_now_ms() < flush_deadline)
        loop_once(a, 50);
    log_stats(a, "final");
}

static void agent_close(struct tl_agent *a)
{
    /* First, because its threads read every module below. */
    tl_admin_close(a->admin);
    tl_ingest_close(a->ingest);
    /* Every region thread reads its peers (heartbeats), so all stop before any is freed. */
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_region_stop(a->regions[r], 0);
    /* The WAL thread still runs and must not write to the regions' eventfds once closed. */
    if (a->wal)
        tl_wal_remove_waiters(a->wal);
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_region_close(a->regions[r]);
    tl_wal_close(a->wal);
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_embedded_stop(a->embedded[r]);
    tl_pipeline_free(a->pipeline);
    if (a->wal_watch.fd >= 0)
        close(a->wal_watch.fd);
    free(a->partitions);
    if (a->signal_watch.fd >= 0)
        close(a->signal_watch.fd);
    if (a->epfd >= 0)
        close(a->epfd);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
}

int tl_agent_run(const struct tl_config *cfg, const struct tl_agent_options *opts, char *err,
                 size_t errsize)
{
    struct tl_agent a = {.cfg = cfg, .epfd = -1, .lock_fd = -1, .signal_watch = {.fd = -1},
                         .wal_watch = {.fd = -1}};
    int rc;

    tl_log_info("agent", "starting version=%s id=%s home_region=%s config=%s data_dir=%s",
                TL_VERSION, cfg->agent_id, cfg->home_region, cfg->path, cfg->data_dir);

    a.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (a.epfd < 0)
        tl_panic("epoll_create1 failed: %s", strerror(errno));
    rc = open_signals(&a, err, errsize);
    if (rc == 0)
        rc = lock_data_dir(&a, err, errsize);
    if (rc == 0)
        rc = open_wal(&a, opts && opts->salvage_wal, err, errsize);
    if (rc == 0)
        rc = open_regions(&a, err, errsize);
    if (rc == 0)
        rc = tl_ingest_open(cfg, a.epfd, a.pipeline, a.wal, a.partitions, &a.ingest, err,
                            errsize);
    if (rc == 0) {
        tl_ingest_set_timelines(a.ingest, a.timelines);
        /* Regions send only what the WAL has made durable, so its progress wakes them. */
        for (int r = 0; r < TL_REGION_COUNT; r++)
            tl_wal_add_waiter(a.wal, a.regions[r]->wake_fd);
        rc = tl_wal_start(a.wal, err, errsize);
    }
    if (rc != 0)
        goto out;

    a.done_watch = (struct tl_watch){.fd = tl_pipeline_done_fd(a.pipeline), .on_ready = on_done};
    tl_loop_add(a.epfd, &a.done_watch, EPOLLIN);
    tl_loop_add(a.epfd, &a.wal_watch, EPOLLIN);
    for (int r = 0; r < TL_REGION_COUNT && rc == 0; r++)
        rc = tl_region_start(a.regions[r], err, errsize);
    if (rc == 0)
        rc = open_admin(&a, err, errsize);
    if (rc != 0)
        goto out;

    tl_log_info("agent", "ready id=%s regions=%s,%s topics=%zu unix=%s tcp=%s%s%s admin=%s",
                cfg->agent_id, cfg->regions[0].name, cfg->regions[1].name, cfg->topic_count,
                cfg->unix_path, cfg->tcp_host ? cfg->tcp_host : "off", cfg->tcp_host ? ":" : "",
                cfg->tcp_host ? cfg->tcp_port : "", cfg->admin_unix_path);
    a.last_stats_ms = tl_now_ms();
    run_loop(&a);
    shut_down(&a);
    tl_log_info("agent", "stopped id=%s", cfg->agent_id);

out:
    agent_close(&a);
    return rc == 0 ? TL_EXIT_OK : TL_EXIT_RUNTIME;
}
