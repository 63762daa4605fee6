/*
 * Pipeline: ring of unanswered events, completion list, and the acknowledgement rule.
 *
 * Ring invariant: for tail <= seq < head, slot seq % cap holds the event with that sequence
 * number until it is answered, then NULL; tail moves past NULL slots. head - tail <= cap.
 * durable_mark: every held event below it has `durable` set.
 *
 * Only the event loop thread writes ring, head and tail, so it reads them without the lock.
 * Region threads read them under it. Events whose producer got its response leave the ring in
 * runs, under one lock per dispatch round rather than one per event.
 */
#include "pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

struct tl_pipeline {
    enum tl_ack_policy policy;
    atomic_uint healthy;          /* bit r: region r counts for the policy (breaker closed) */
    atomic_bool reevaluate;       /* healthy changed: the loop re-checks every held event */
    pthread_mutex_t lock;         /* ring, head, tail, bytes, count */
    struct tl_event **ring;
    size_t cap;                   /* power of two, >= max_events */
    size_t max_events;
    size_t max_bytes;
    uint64_t head;                /* next sequence number expected */
    _Atomic uint64_t published_head; /* head, for region threads without the lock */
    uint64_t tail;                /* lowest sequence number possibly held */
    size_t bytes;
    size_t count;

    pthread_mutex_t done_lock;    /* done_head, done_tail */
    struct tl_event *done_head;
    struct tl_event *done_tail;
    int done_fd;

    uint64_t durable_mark;        /* event loop thread only */
    struct tl_event **answered;   /* responded to, still in the ring; event loop thread only */
    size_t answered_count;
    size_t answered_cap;
};

struct tl_pipeline *tl_pipeline_new(enum tl_ack_policy policy, size_t max_events,
                                    size_t max_bytes, uint64_t first_seq)
{
    struct tl_pipeline *p = tl_xcalloc(1, sizeof(*p));
    size_t cap = 1;
    while (cap < max_events)
        cap <<= 1;

    p->policy = policy;
    atomic_store(&p->healthy, (1u << TL_REGION_COUNT) - 1);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->done_lock, NULL);
    p->ring = tl_xcalloc(cap, sizeof(*p->ring));
    p->cap = cap;
    p->max_events = max_events;
    p->max_bytes = max_bytes;
    p->head = p->tail = p->durable_mark = first_seq;
    atomic_store(&p->published_head, first_seq);
    p->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->done_fd < 0)
        tl_panic("eventfd failed: %s", strerror(errno));
    return p;
}

void tl_event_unref(struct tl_event *ev)
{
    if (atomic_fetch_sub(&ev->refs, 1) == 1)
        free(ev);
}

void tl_pipeline_free(struct tl_pipeline *p)
{
    if (!p)
        return;
    for (uint64_t s = p->tail; s < p->head; s++) {
        struct tl_event *ev = p->ring[s & (p->cap - 1)];
        if (ev)
            tl_event_unref(ev);
    }
    free(p->ring);
    free(p->answered);
    close(p->done_fd);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->done_lock);
    free(p);
}

bool tl_pipeline_has_room(struct tl_pipeline *p, size_t events, size_t bytes)
{
    pthread_mutex_lock(&p->lock);
    /* Answered slots between tail and head still block the ring until tail passes them. */
    bool room = (p->head - p->tail) + events <= p->max_events &&
                (p->bytes == 0 || p->bytes + bytes <= p->max_bytes);
    pthread_mutex_unlock(&p->lock);
    return room;
}

void tl_pipeline_append(struct tl_pipeline *p, struct tl_event *ev)
{
    atomic_store(&ev->refs, 1);
    atomic_store(&ev->state, 0);
    ev->regions_ready = p->policy == TL_ACK_LOCAL;
    ev->durable = false;
    ev->answered = false;

    pthread_mutex_lock(&p->lock);
    if (ev->seq != p->head)
        tl_panic("pipeline expected sequence number %llu, got %llu",
                 (unsigned long long)p->head, (unsigned long long)ev->seq);
    p->ring[p->head & (p->cap - 1)] = ev;
    p->head++;
    p->bytes += ev->bytes;
    p->count++;
    atomic_store(&p->published_head, p->head);
    pthread_mutex_unlock(&p->lock);
}

/* Returns the held event with sequence number seq, or NULL. Caller holds p->lock. */
static struct tl_event *lookup_locked(struct tl_pipeline *p, uint64_t seq)
{
    if (seq < p->tail || seq >= p->head)
        return NULL;
    struct tl_event *ev = p->ring[seq & (p->cap - 1)];
    return ev && ev->seq == seq ? ev : NULL;
}

uint64_t tl_pipeline_head(struct tl_pipeline *p)
{
    return atomic_load(&p->published_head);
}

struct tl_event *tl_pipeline_get(struct tl_pipeline *p, uint64_t seq)
{
    struct tl_event *ev = NULL;
    return tl_pipeline_get_many(p, seq, &ev, 1) ? ev : NULL;
}

size_t tl_pipeline_get_many(struct tl_pipeline *p, uint64_t seq, struct tl_event **out,
                            size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    while (n < max) {
        struct tl_event *ev = lookup_locked(p, seq + n);
        if (!ev)
            break;
        atomic_fetch_add(&ev->refs, 1);
        out[n++] = ev;
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

/*
 * Returns whether the state bits satisfy the policy's demand on the healthy regions. With no
 * healthy region this is true: the event is then answered from the WAL alone (spooled), or,
 * with when_no_region = "reject", ingest refuses new events before they get here.
 */
static bool regions_satisfied(enum tl_ack_policy policy, unsigned healthy, unsigned state)
{
    unsigned reported = state & healthy;
    unsigned stored = (state >> 8) & healthy;
    switch (policy) {
    case TL_ACK_ALL:
        return reported == healthy;
    case TL_ACK_ONE:
        return stored != 0 || reported == healthy;
    case TL_ACK_LOCAL:
        return true;
    }
    return false;
}

void tl_pipeline_set_healthy(struct tl_pipeline *p, int region, bool healthy)
{
    unsigned bit = 1u << region;
    unsigned before = healthy ? atomic_fetch_or(&p->healthy, bit)
                              : atomic_fetch_and(&p->healthy, ~bit);
    if (((before & bit) != 0) == healthy)
        return;
    atomic_store(&p->reevaluate, true);
    uint64_t one = 1;
    ssize_t ignored = write(p->done_fd, &one, sizeof(one));
    (void)ignored;
}

unsigned tl_pipeline_healthy(struct tl_pipeline *p)
{
    return atomic_load(&p->healthy);
}

void tl_pipeline_report_many(struct tl_pipeline *p, int region, const struct tl_report *reports,
                             size_t n)
{
    struct tl_event *first = NULL;
    struct tl_event *last = NULL;
    unsigned healthy = atomic_load(&p->healthy);

    /*
     * Under the lock a live event cannot be freed meanwhile, because the event loop removes it
     * from the ring under the same lock before dropping the pipeline's reference. Its response
     * goes out only after it was queued here.
     */
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        struct tl_event *live = lookup_locked(p, reports[i].ev->seq);
        if (!live)
            continue;
        live->region[region].err = reports[i].err;
        live->region[region].offset = reports[i].offset;
        unsigned bits = TL_EVENT_REPORTED(region) |
                        (reports[i].err == 0 ? TL_EVENT_STORED(region) : 0);
        unsigned state = atomic_fetch_or(&live->state, bits) | bits;
        if (!regions_satisfied(p->policy, healthy, state) || (state & TL_EVENT_QUEUED))
            continue;
        if (atomic_fetch_or(&live->state, TL_EVENT_QUEUED) & TL_EVENT_QUEUED)
            continue;
        atomic_fetch_add(&live->refs, 1); /* the completion list's, dropped by dispatch */
        live->next = NULL;
        if (last)
            last->next = live;
        else
            first = live;
        last = live;
    }
    pthread_mutex_unlock(&p->lock);
    if (!first)
        return;

    /*
     * The eventfd is written only when the list was empty: dispatch reads the eventfd before
     * it takes the list, so a run appended to a non-empty list is taken with it.
     */
    pthread_mutex_lock(&p->done_lock);
    bool was_empty = p->done_head == NULL;
    if (p->done_tail)
        p->done_tail->next = first;
    else
        p->done_head = first;
    p->done_tail = last;
    pthread_mutex_unlock(&p->done_lock);
    if (was_empty) {
        uint64_t increment = 1;
        ssize_t ignored = write(p->done_fd, &increment, sizeof(increment));
        (void)ignored;
    }
}

int tl_pipeline_done_fd(const struct tl_pipeline *p)
{
    return p->done_fd;
}

/* Returns the held event with sequence number seq, or NULL. Event loop thread, no lock. */
static struct tl_event *lookup_owned(struct tl_pipeline *p, uint64_t seq)
{
    return lookup_locked(p, seq);
}

/* Answers an event; remove_answered takes it out of the ring later. Event loop thread. */
static void finish(struct tl_pipeline *p, struct tl_event *ev,
                   void (*answer)(void *ctx, struct tl_event *ev), void *ctx)
{
    ev->answered = true;
    answer(ctx, ev);
    if (p->answered_count == p->answered_cap) {
        p->answered_cap = p->answered_cap ? p->answered_cap * 2 : 1024;
        p->answered = tl_xrealloc(p->answered, p->answered_cap * sizeof(*p->answered));
    }
    p->answered[p->answered_count++] = ev;
}

/* Removes the events answered since the last call from the ring, under one lock. */
static void remove_answered(struct tl_pipeline *p)
{
    if (p->answered_count == 0)
        return;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->answered_count; i++) {
        struct tl_event *ev = p->answered[i];
        p->ring[ev->seq & (p->cap - 1)] = NULL;
        p->bytes -= ev->bytes;
        p->count--;
    }
    while (p->tail < p->head && p->ring[p->tail & (p->cap - 1)] == NULL)
        p->tail++;
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->answered_count; i++)
        tl_event_unref(p->answered[i]);
    p->answered_count = 0;
}

/* Re-checks every held event against the current healthy set. Event loop thread. */
static void reevaluate(struct tl_pipeline *p, void (*answer)(void *ctx, struct tl_event *ev),
                       void *ctx)
{
    unsigned healthy = atomic_load(&p->healthy);

    for (uint64_t s = p->tail; s < p->head; s++) {
        struct tl_event *ev = lookup_owned(p, s);
        if (!ev || ev->answered || ev->regions_ready)
            continue;
        if (!regions_satisfied(p->policy, healthy, atomic_load(&ev->state)))
            continue;
        ev->regions_ready = true;
        if (ev->durable)
            finish(p, ev, answer, ctx);
    }
}

void tl_pipeline_dispatch(struct tl_pipeline *p, uint64_t wal_ack_seq,
                          void (*answer)(void *ctx, struct tl_event *ev), void *ctx)
{
    uint64_t count;
    ssize_t ignored = read(p->done_fd, &count, sizeof(count));
    (void)ignored;

    pthread_mutex_lock(&p->done_lock);
    struct tl_event *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->done_lock);

    while (list) {
        struct tl_event *ev = list;
        list = ev->next;
        if (!ev->answered) {
            ev->regions_ready = true;
            if (ev->durable)
                finish(p, ev, answer, ctx);
        }
        tl_event_unref(ev);
    }

    /* A region's breaker changed: events may now be answerable without it (or must wait). */
    if (atomic_exchange(&p->reevaluate, false))
        reevaluate(p, answer, ctx);

    /* Events the WAL has made acknowledgeable since the last round. */
    uint64_t end = wal_ack_seq < p->head ? wal_ack_seq : p->head;
    while (p->durable_mark < end) {
        struct tl_event *ev = lookup_owned(p, p->durable_mark);
        p->durable_mark++;
        if (!ev || ev->answered)
            continue;
        ev->durable = true;
        /* With no healthy region no report will come: the event is answered spooled now. */
        if (!ev->regions_ready &&
            regions_satisfied(p->policy, atomic_load(&p->healthy), atomic_load(&ev->state)))
            ev->regions_ready = true;
        if (ev->regions_ready)
            finish(p, ev, answer, ctx);
    }
    remove_answered(p);
}

void tl_pipeline_drain(struct tl_pipeline *p, void (*answer)(void *ctx, struct tl_event *ev),
                       void *ctx)
{
    pthread_mutex_lock(&p->done_lock);
    struct tl_event *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->done_lock);
    while (list) {
        struct tl_event *ev = list;
        list = ev->next;
        tl_event_unref(ev);
    }

    for (uint64_t s = p->tail; s < p->head; s++) {
        struct tl_event *ev = lookup_owned(p, s);
        if (ev && !ev->answered)
            finish(p, ev, answer, ctx);
    }
    remove_answered(p);
}

size_t tl_pipeline_inflight(struct tl_pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->count;
    pthread_mutex_unlock(&p->lock);
    return n;
}
