/*
 * Failover timeline of one region: when its latest outage episode began and how it unfolded.
 *
 * Steps, in order: first failure (the first failed delivery, stall or broker loss while the
 * breaker was closed), breaker open, first acknowledgement after it (any event answered to a
 * producer once the breaker opened; the time since the first failure is the recovery time
 * the producers saw), backfill start, backfill end, breaker closed. Each step is logged as
 * "failover timeline region=R step=S ..." and kept for the status API.
 *
 * Region threads write the steps; the event loop thread writes the first acknowledgement; any
 * thread may read a snapshot. A mutex guards the fields.
 */
#ifndef TL_TIMELINE_H
#define TL_TIMELINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum tl_timeline_step {
    TL_STEP_FIRST_FAILURE = 0,
    TL_STEP_BREAKER_OPEN,
    TL_STEP_FIRST_ACK,
    TL_STEP_BACKFILL_START,
    TL_STEP_BACKFILL_END,
    TL_STEP_BREAKER_CLOSED,
    TL_STEP_COUNT,
};

struct tl_timeline {
    pthread_mutex_t lock;
    const char *region;
    uint64_t episodes;                 /* outages seen since start */
    int64_t at_ms[TL_STEP_COUNT];      /* wall clock, ms since the epoch; 0 = not reached */
    atomic_bool awaiting_first_ack;    /* set at breaker open, cleared by the first answer */
};

void tl_timeline_init(struct tl_timeline *t, const char *region);

/*
 * Records a step at the current wall-clock time and logs it. TL_STEP_FIRST_FAILURE starts a
 * new episode (clearing the others) unless the current episode has not reached
 * TL_STEP_BREAKER_CLOSED yet; other steps are recorded once per episode.
 */
void tl_timeline_mark(struct tl_timeline *t, enum tl_timeline_step step, const char *detail);

/* Records a step like tl_timeline_mark, at the earlier wall-clock time at_ms (a stall's start). */
void tl_timeline_mark_at(struct tl_timeline *t, enum tl_timeline_step step, const char *detail,
                         int64_t at_ms);

/* Called for every acknowledgement; records TL_STEP_FIRST_ACK when one is awaited. Cheap. */
void tl_timeline_note_ack(struct tl_timeline *t);

/* Copies the steps of the current episode. */
void tl_timeline_snapshot(struct tl_timeline *t, int64_t at_ms[TL_STEP_COUNT], uint64_t *episodes);

const char *tl_timeline_step_name(enum tl_timeline_step step);

#endif
