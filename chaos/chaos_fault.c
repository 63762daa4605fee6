/*
 * Fault timeline execution, the agent-side faults and the WAL's tmpfs.
 *
 * The timeline is a list of steps (inject or heal one fault) sorted by time; at equal times a
 * heal goes first, so a fault that starts where another ends never overlaps it. Steps that
 * take long (restarting Kafka brokers takes seconds) delay the later ones, and the report
 * shows the real times.
 */
#include "chaos_fault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chaos_util.h"
#include "mem.h"

#define WATCH_INTERVAL_MS 50
#define FILLER_CHUNK (1 << 20)

struct step {
    int64_t at_ms;
    size_t run;
    bool heal;
};

static int compare_steps(const void *a, const void *b)
{
    const struct step *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return (int)y->heal - (int)x->heal;
}

int chaos_fault_mount_tmpfs(struct chaos_fault_plan *p, const char *dir, int size_mb,
                            char *wal_dir, size_t wal_dir_size, char *err, size_t errsize)
{
    snprintf(p->tmpfs, sizeof(p->tmpfs), "%s/wal-tmpfs", dir);
    if (mkdir(p->tmpfs, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errsize, "creating %s failed: %s", p->tmpfs, strerror(errno));
        return -1;
    }
    char options[64];
    snprintf(options, sizeof(options), "size=%dm", size_mb);
    if (mount("tmpfs", p->tmpfs, "tmpfs", 0, options) != 0) {
        snprintf(err, errsize, "mounting a tmpfs (%s) on %s failed: %s; disk-full scenarios "
                 "need root", options, p->tmpfs, strerror(errno));
        return -1;
    }
    p->mounted = true;
    snprintf(wal_dir, wal_dir_size, "%s/wal", p->tmpfs);
    return 0;
}

void chaos_fault_unmount_tmpfs(struct chaos_fault_plan *p)
{
    if (!p->mounted)
        return;
    if (umount2(p->tmpfs, 0) != 0 && umount2(p->tmpfs, MNT_DETACH) != 0)
        chaos_note("unmounting %s failed: %s; unmount it by hand", p->tmpfs, strerror(errno));
    p->mounted = false;
}

/* Fills the tmpfs with a filler file until write(2) fails with ENOSPC. */
static int fill_disk(struct chaos_fault_plan *p, char *err, size_t errsize)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/filler", p->tmpfs);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errsize, "creating %s failed: %s", path, strerror(errno));
        return -1;
    }
    char *chunk = tl_xcalloc(1, FILLER_CHUNK);
    size_t size = FILLER_CHUNK;
    /* Halve the write size near the end, so that the last free bytes are taken too. */
    while (size > 0) {
        ssize_t n = write(fd, chunk, size);
        if (n < 0 && errno == ENOSPC)
            size /= 2;
        else if (n < 0)
            break;
    }
    int saved = errno;
    free(chunk);
    close(fd);
    if (saved != ENOSPC) {
        snprintf(err, errsize, "filling %s stopped with %s, not ENOSPC", path, strerror(saved));
        return -1;
    }
    return 0;
}

static int free_disk(struct chaos_fault_plan *p, char *err, size_t errsize)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/filler", p->tmpfs);
    if (unlink(path) != 0) {
        snprintf(err, errsize, "removing %s failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void chaos_fault_watch_until(struct chaos_fault_plan *p, struct chaos_agent *a, int64_t at_ms)
{
    for (;;) {
        int64_t now = chaos_now_ms();
        if (a->pid > 0 && !chaos_agent_check(a)) {
            char err[320];
            chaos_note("%s; restarting it", a->first_exit);
            p->agent_restarts_after_exit++;
            if (chaos_agent_start(a, err, sizeof(err)) < 0)
                chaos_note("restarting the agent failed: %s", err);
        }
        if (now >= at_ms)
            return;
        chaos_sleep_ms(at_ms - now < WATCH_INTERVAL_MS ? at_ms - now : WATCH_INTERVAL_MS);
    }
}

static void run_step(struct chaos_fault_plan *p, struct chaos_fault_run *run, bool heal,
                     struct chaos_backend *b, struct chaos_agent *a)
{
    const struct chaos_fault *f = run->fault;
    char err[320] = "";
    int rc = 0;

    if (run->outcome != CHAOS_FAULT_DONE)
        return; /* a fault that failed to start is not healed either */
    switch (f->action) {
    case CHAOS_AGENT_KILL:
        if (heal)
            rc = chaos_agent_start(a, err, sizeof(err));
        else
            chaos_agent_kill(a);
        break;
    case CHAOS_DISK_FULL:
        rc = heal ? free_disk(p, err, sizeof(err)) : fill_disk(p, err, sizeof(err));
        break;
    default:
        rc = chaos_backend_inject(b, f, heal, err, sizeof(err));
        break;
    }

    int64_t now = chaos_now_ms();
    if (heal)
        run->healed_ms = now;
    else
        run->injected_ms = now;
    if (rc == CHAOS_FAULT_UNAVAILABLE) {
        run->outcome = CHAOS_FAULT_SKIPPED;
        snprintf(run->error, sizeof(run->error), "netem unavailable");
    } else if (rc != 0) {
        run->outcome = CHAOS_FAULT_ERROR;
        snprintf(run->error, sizeof(run->error), "%s", err);
    }
    chaos_note("%s %s%s%s: %s", heal ? "healed" : "injected", chaos_action_name(f->action),
               f->region >= 0 ? " in " : "", f->region >= 0 ? CHAOS_REGION_NAMES[f->region] : "",
               run->outcome == CHAOS_FAULT_DONE ? "ok" : run->error);
}

void chaos_fault_run_timeline(struct chaos_fault_plan *p, const struct chaos_scenario *s,
                              struct chaos_backend *b, struct chaos_agent *a,
                              int64_t load_start_ms)
{
    p->count = s->fault_count;
    p->runs = tl_xcalloc(s->fault_count ? s->fault_count : 1, sizeof(*p->runs));
    struct step *steps = tl_xcalloc(2 * s->fault_count + 1, sizeof(*steps));
    for (size_t i = 0; i < s->fault_count; i++) {
        p->runs[i].fault = &s->faults[i];
        steps[2 * i] = (struct step){.at_ms = load_start_ms + s->faults[i].at_ms, .run = i};
        steps[2 * i + 1] = (struct step){
            .at_ms = load_start_ms + s->faults[i].at_ms + s->faults[i].duration_ms, .run = i,
            .heal = true};
    }
    qsort(steps, 2 * s->fault_count, sizeof(*steps), compare_steps);

    for (size_t k = 0; k < 2 * s->fault_count; k++) {
        chaos_fault_watch_until(p, a, steps[k].at_ms);
        run_step(p, &p->runs[steps[k].run], steps[k].heal, b, a);
    }
    free(steps);
}

void chaos_fault_free(struct chaos_fault_plan *p)
{
    chaos_fault_unmount_tmpfs(p);
    free(p->runs);
    memset(p, 0, sizeof(*p));
}
