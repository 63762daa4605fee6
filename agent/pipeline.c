/*
 * Pipeline: bounded ring of in-flight events, per-region cursors, completion queue and the
 * persistent sequence-number reservation.
 *
 * Ring invariant: tail <= cursor[r] <= head for every region r. Slot seq % cap holds the event
 * with that sequence number while tail <= seq < head; a released event leaves its slot NULL,
 * and tail moves past NULL slots. Since an event completes only after every region took it,
 * a NULL slot is never below a cursor's reach.
 *
 * DATA_DIR/sequence holds one decimal number: every sequence number below it may have been
 * used. At open the pipeline continues from that number and records number + SEQ_BLOCK
 * (written to a temporary file, fsynced, renamed) before handing any out.
 */
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "mem.h"

#define SEQ_BLOCK (UINT64_C(1) << 20)

struct tl_pipeline {
    pthread_mutex_t lock;         /* ring, head, tail, cursors, bytes */
    struct tl_event **ring;
    size_t cap;                   /* power of two */
    size_t max_events;
    size_t max_bytes;
    uint64_t head;                /* next sequence number to assign */
    uint64_t tail;                /* lowest sequence number still held */
    uint64_t cursor[TL_REGION_COUNT];
    size_t bytes;                 /* event bytes held */
    size_t count;                 /* events held */
    int region_wake_fd[TL_REGION_COUNT];

    pthread_mutex_t done_lock;    /* done_head, done_tail */
    struct tl_event *done_head;
    struct tl_event *done_tail;
    int done_fd;

    char *seq_path;               /* touched by the event loop thread only */
    uint64_t seq_reserved;        /* numbers below this are recorded as possibly used */
};

static int write_reservation(struct tl_pipeline *p, uint64_t upto, char *err, size_t errsize)
{
    char tmp[4096];
    char text[32];
    int rc = TL_EIO;

    snprintf(tmp, sizeof(tmp), "%s.tmp", p->seq_path);
    int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", upto);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "cannot create %s: %s; check that the data "
                        "directory is writable", tmp, strerror(errno));
    if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
        tl_error(err, errsize, TL_EIO, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, p->seq_path) != 0) {
        tl_error(err, errsize, TL_EIO, "cannot rename %s to %s: %s", tmp, p->seq_path,
                 strerror(errno));
        goto out;
    }
    p->seq_reserved = upto;
    rc = 0;
out:
    close(fd);
    return rc;
}

static int read_reservation(const char *path, uint64_t *value, char *err, size_t errsize)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) {
            *value = 1;
            return 0;
        }
        return tl_error(err, errsize, TL_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    uint64_t v = 0;
    int n = fscanf(f, "%" SCNu64, &v);
    fclose(f);
    if (n != 1 || v == 0)
        return tl_error(err, errsize, TL_EINVAL, "%s does not hold a sequence number; if the "
                        "data directory was damaged, remove the file (event ids may then repeat)",
                        path);
    *value = v;
    return 0;
}

int tl_pipeline_open(const char *data_dir, size_t max_events, size_t max_bytes,
                     struct tl_pipeline **out, char *err, size_t errsize)
{
    struct tl_pipeline *p = tl_xcalloc(1, sizeof(*p));
    size_t cap = 1;
    while (cap < max_events)
        cap <<= 1;

    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->done_lock, NULL);
    p->ring = tl_xcalloc(cap, sizeof(*p->ring));
    p->cap = cap;
    p->max_events = max_events;
    p->max_bytes = max_bytes;
    for (int r = 0; r < TL_REGION_COUNT; r++)
        p->region_wake_fd[r] = -1;
    p->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->done_fd < 0)
        tl_panic("eventfd failed: %s", strerror(errno));

    size_t path_len = strlen(data_dir) + sizeof("/sequence");
    p->seq_path = tl_xmalloc(path_len);
    snprintf(p->seq_path, path_len, "%s/sequence", data_dir);

    uint64_t first = 1;
    int rc = read_reservation(p->seq_path, &first, err, errsize);
    if (rc == 0)
        rc = write_reservation(p, first + SEQ_BLOCK, err, errsize);
    if (rc != 0) {
        tl_pipeline_close(p);
        return rc;
    }
    p->head = p->tail = first;
    for (int r = 0; r < TL_REGION_COUNT; r++)
        p->cursor[r] = first;
    tl_log_info("pipeline", "sequence numbers continue file=%s next_seq=%" PRIu64, p->seq_path,
                first);
    *out = p;
    return 0;
}

void tl_pipeline_close(struct tl_pipeline *p)
{
    if (!p)
        return;
    for (uint64_t s = p->tail; s < p->head; s++)
        free(p->ring[s & (p->cap - 1)]);
    free(p->ring);
    free(p->seq_path);
    if (p->done_fd >= 0)
        close(p->done_fd);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->done_lock);
    free(p);
}

void tl_pipeline_set_region_wake_fd(struct tl_pipeline *p, int region, int fd)
{
    p->region_wake_fd[region] = fd;
}

bool tl_pipeline_has_room(struct tl_pipeline *p, size_t events, size_t bytes)
{
    pthread_mutex_lock(&p->lock);
    /* The ring slots between tail and head are busy even when some were released early. */
    bool room = (p->head - p->tail) + events <= p->max_events &&
                (p->bytes == 0 || p->bytes + bytes <= p->max_bytes);
    pthread_mutex_unlock(&p->lock);
    return room;
}

int tl_pipeline_append(struct tl_pipeline *p, struct tl_event *ev, char *err, size_t errsize)
{
    if (p->head >= p->seq_reserved) {
        int rc = write_reservation(p, p->seq_reserved + SEQ_BLOCK, err, errsize);
        if (rc != 0)
            return rc;
    }

    atomic_store(&ev->pending, TL_REGION_COUNT);
    pthread_mutex_lock(&p->lock);
    ev->seq = p->head;
    p->ring[p->head & (p->cap - 1)] = ev;
    p->head++;
    p->bytes += ev->bytes;
    p->count++;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void tl_pipeline_wake_regions(struct tl_pipeline *p)
{
    uint64_t one = 1;
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        if (p->region_wake_fd[r] < 0)
            continue;
        /* EAGAIN means the counter is already non-zero: the region will wake anyway. */
        ssize_t ignored = write(p->region_wake_fd[r], &one, sizeof(one));
        (void)ignored;
    }
}

size_t tl_pipeline_take(struct tl_pipeline *p, int region, struct tl_event **out, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&p->lock);
    while (n < max && p->cursor[region] < p->head) {
        out[n++] = p->ring[p->cursor[region] & (p->cap - 1)];
        p->cursor[region]++;
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

void tl_pipeline_report(struct tl_pipeline *p, struct tl_event *ev)
{
    if (atomic_fetch_sub(&ev->pending, 1) != 1)
        return;

    pthread_mutex_lock(&p->done_lock);
    ev->next = NULL;
    if (p->done_tail)
        p->done_tail->next = ev;
    else
        p->done_head = ev;
    p->done_tail = ev;
    pthread_mutex_unlock(&p->done_lock);

    uint64_t one = 1;
    ssize_t ignored = write(p->done_fd, &one, sizeof(one));
    (void)ignored;
}

int tl_pipeline_done_fd(const struct tl_pipeline *p)
{
    return p->done_fd;
}

struct tl_event *tl_pipeline_take_done(struct tl_pipeline *p)
{
    uint64_t count;
    ssize_t ignored = read(p->done_fd, &count, sizeof(count));
    (void)ignored;

    pthread_mutex_lock(&p->done_lock);
    struct tl_event *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->done_lock);
    return list;
}

void tl_pipeline_release(struct tl_pipeline *p, struct tl_event *ev)
{
    pthread_mutex_lock(&p->lock);
    p->ring[ev->seq & (p->cap - 1)] = NULL;
    p->bytes -= ev->bytes;
    p->count--;
    while (p->tail < p->head && p->ring[p->tail & (p->cap - 1)] == NULL)
        p->tail++;
    pthread_mutex_unlock(&p->lock);
    free(ev);
}

size_t tl_pipeline_inflight(struct tl_pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->count;
    pthread_mutex_unlock(&p->lock);
    return n;
}

uint64_t tl_pipeline_next_seq(struct tl_pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    uint64_t s = p->head;
    pthread_mutex_unlock(&p->lock);
    return s;
}
