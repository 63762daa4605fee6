/*
 * Failover timeline: steps of the latest outage episode per region.
 */
#include "timeline.h"

#include <inttypes.h>
#include <string.h>

#include "log.h"

static const char *const step_names[TL_STEP_COUNT] = {
    "first_failure", "breaker_open", "first_ack_after_open",
    "backfill_start", "backfill_end", "breaker_closed",
};

const char *tl_timeline_step_name(enum tl_timeline_step step)
{
    return step < TL_STEP_COUNT ? step_names[step] : "unknown";
}

void tl_timeline_init(struct tl_timeline *t, const char *region)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    t->region = region;
}

void tl_timeline_mark(struct tl_timeline *t, enum tl_timeline_step step, const char *detail)
{
    tl_timeline_mark_at(t, step, detail, tl_wallclock_ms());
}

void tl_timeline_mark_at(struct tl_timeline *t, enum tl_timeline_step step, const char *detail,
                         int64_t at_ms)
{
    int64_t since_failure = -1;

    pthread_mutex_lock(&t->lock);
    bool open_episode = t->at_ms[TL_STEP_FIRST_FAILURE] != 0 && t->at_ms[TL_STEP_BREAKER_CLOSED] == 0;
    if (step == TL_STEP_FIRST_FAILURE) {
        if (open_episode) {
            pthread_mutex_unlock(&t->lock);
            return;
        }
        memset(t->at_ms, 0, sizeof(t->at_ms));
        t->episodes++;
    } else if (t->at_ms[step] != 0 && step != TL_STEP_BREAKER_OPEN) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    if (step == TL_STEP_BREAKER_OPEN && t->at_ms[TL_STEP_FIRST_FAILURE] == 0) {
        /* Opened without a failure first (a fence lifted, a probe failed): a new episode. */
        memset(t->at_ms, 0, sizeof(t->at_ms));
        t->episodes++;
        t->at_ms[TL_STEP_FIRST_FAILURE] = at_ms;
    }
    if (step == TL_STEP_BREAKER_OPEN)
        atomic_store(&t->awaiting_first_ack, true);
    if (t->at_ms[step] == 0)
        t->at_ms[step] = at_ms;
    if (t->at_ms[TL_STEP_FIRST_FAILURE])
        since_failure = at_ms - t->at_ms[TL_STEP_FIRST_FAILURE];
    uint64_t episode = t->episodes;
    pthread_mutex_unlock(&t->lock);

    tl_log(step == TL_STEP_FIRST_FAILURE || step == TL_STEP_BREAKER_OPEN ? TL_LOG_WARN
                                                                         : TL_LOG_INFO,
           "failover", "failover timeline region=%s step=%s episode=%" PRIu64
           " ms_since_first_failure=%" PRId64 "%s%s", t->region, tl_timeline_step_name(step),
           episode, since_failure, detail ? " " : "", detail ? detail : "");
}

void tl_timeline_note_ack(struct tl_timeline *t)
{
    if (!atomic_load(&t->awaiting_first_ack))
        return;
    if (!atomic_exchange(&t->awaiting_first_ack, false))
        return;
    tl_timeline_mark(t, TL_STEP_FIRST_ACK, NULL);
}

void tl_timeline_snapshot(struct tl_timeline *t, int64_t at_ms[TL_STEP_COUNT], uint64_t *episodes)
{
    pthread_mutex_lock(&t->lock);
    memcpy(at_ms, t->at_ms, sizeof(t->at_ms));
    *episodes = t->episodes;
    pthread_mutex_unlock(&t->lock);
}
