/*
 * Circuit breaker state machine. See breaker.h for the transitions.
 */
#include "breaker.h"

#include <stdio.h>
#include <string.h>

const char *tl_breaker_state_name(enum tl_breaker_state state)
{
    switch (state) {
    case TL_BREAKER_CLOSED: return "closed";
    case TL_BREAKER_OPEN: return "open";
    case TL_BREAKER_HALF_OPEN: return "half_open";
    case TL_BREAKER_FENCED: return "fenced";
    }
    return "unknown";
}

static void reset_window(struct tl_breaker *b)
{
    memset(b->buckets, 0, sizeof(b->buckets));
    b->consecutive = 0;
}

void tl_breaker_init(struct tl_breaker *b, const struct tl_breaker_settings *s, int64_t now_ms,
                     uint64_t seed)
{
    memset(b, 0, sizeof(*b));
    b->s = *s;
    b->state = TL_BREAKER_CLOSED;
    b->since_ms = now_ms;
    b->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    snprintf(b->reason, sizeof(b->reason), "initial state");
}

/* xorshift64*: deterministic for a seed, which keeps the jitter testable. */
static uint64_t next_random(struct tl_breaker *b)
{
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 0x2545f4914f6cdd1dull;
}

static void enter(struct tl_breaker *b, enum tl_breaker_state state, int64_t now_ms)
{
    b->state = state;
    b->since_ms = now_ms;
    b->backfilling = false;
    b->probe_successes = 0;
    b->transitions++;
}

static bool trip(struct tl_breaker *b, int64_t now_ms, const char *fmt, const char *detail)
{
    /*
     * A region that stayed closed for open_max_ms starts over at open_ms. One that fails again
     * sooner keeps the grown interval, so a flapping region is probed less and less often.
     */
    if (b->state == TL_BREAKER_CLOSED && now_ms - b->since_ms >= b->s.open_max_ms)
        b->reopens = 0;

    int64_t interval = b->s.open_ms;
    for (int i = 0; i < b->reopens && interval < b->s.open_max_ms; i++)
        interval *= 2;
    if (interval > b->s.open_max_ms)
        interval = b->s.open_max_ms;
    /* ±20 %: a uniform factor in [0.8, 1.2]. */
    int64_t spread = interval * 2 / 5;
    if (spread > 0)
        interval = interval - interval / 5 + (int64_t)(next_random(b) % (uint64_t)(spread + 1));

    enter(b, TL_BREAKER_OPEN, now_ms);
    b->open_until_ms = now_ms + interval;
    b->reopens++;
    reset_window(b);
    snprintf(b->reason, sizeof(b->reason), fmt, detail);
    return true;
}

/* Returns the window bucket for now, clearing buckets that fell out of the window. */
static int bucket_for(struct tl_breaker *b, int64_t now_ms)
{
    int64_t slice = b->s.rate_window_ms / TL_BREAKER_BUCKETS;
    if (slice <= 0)
        slice = 1;
    int64_t start = now_ms - now_ms % slice;
    int i = (int)((now_ms / slice) % TL_BREAKER_BUCKETS);
    if (b->buckets[i].start_ms != start) {
        b->buckets[i].start_ms = start;
        b->buckets[i].ok = 0;
        b->buckets[i].failed = 0;
    }
    return i;
}

static void window_totals(const struct tl_breaker *b, int64_t now_ms, uint64_t *ok,
                          uint64_t *failed)
{
    *ok = *failed = 0;
    for (int i = 0; i < TL_BREAKER_BUCKETS; i++) {
        if (now_ms - b->buckets[i].start_ms >= b->s.rate_window_ms)
            continue;
        *ok += b->buckets[i].ok;
        *failed += b->buckets[i].failed;
    }
}

static bool delivering(const struct tl_breaker *b)
{
    return b->state == TL_BREAKER_CLOSED ||
           (b->state == TL_BREAKER_HALF_OPEN && b->backfilling);
}

bool tl_breaker_record_success(struct tl_breaker *b, int64_t now_ms)
{
    if (!delivering(b))
        return false;
    b->consecutive = 0;
    b->buckets[bucket_for(b, now_ms)].ok++;
    return false;
}

bool tl_breaker_record_failure(struct tl_breaker *b, int64_t now_ms, const char *error)
{
    if (b->state == TL_BREAKER_HALF_OPEN)
        return trip(b, now_ms, "delivery failed while half-open: %s", error);
    if (b->state != TL_BREAKER_CLOSED)
        return false;

    b->consecutive++;
    b->buckets[bucket_for(b, now_ms)].failed++;
    if (b->consecutive >= b->s.consecutive_failures)
        return trip(b, now_ms, "consecutive failed deliveries reached the limit, last: %s", error);

    uint64_t ok, failed;
    window_totals(b, now_ms, &ok, &failed);
    uint64_t total = ok + failed;
    if (total >= (uint64_t)b->s.min_volume &&
        failed * 100 >= (uint64_t)b->s.failure_rate_percent * total)
        return trip(b, now_ms, "failure rate over the window reached the limit, last: %s",
                    error);
    return false;
}

bool tl_breaker_check_stall(struct tl_breaker *b, int64_t now_ms, int64_t oldest_ms)
{
    if (!delivering(b) || oldest_ms < b->s.stall_timeout_ms)
        return false;
    char detail[64];
    snprintf(detail, sizeof(detail), "%lld ms", (long long)oldest_ms);
    return trip(b, now_ms, "oldest in-flight event unacknowledged for %s (stall)", detail);
}

bool tl_breaker_all_brokers_down(struct tl_breaker *b, int64_t now_ms)
{
    if (b->state != TL_BREAKER_CLOSED && b->state != TL_BREAKER_HALF_OPEN)
        return false;
    return trip(b, now_ms, "%s", "all brokers of the region are down");
}

bool tl_breaker_trip(struct tl_breaker *b, int64_t now_ms, const char *reason)
{
    if (b->state != TL_BREAKER_CLOSED && b->state != TL_BREAKER_HALF_OPEN)
        return false;
    return trip(b, now_ms, "%s", reason);
}

bool tl_breaker_record_probe(struct tl_breaker *b, int64_t now_ms, bool ok, const char *error)
{
    if (b->state != TL_BREAKER_HALF_OPEN || b->backfilling)
        return false;
    if (!ok)
        return trip(b, now_ms, "probe failed: %s", error);
    b->probe_successes++;
    if (b->probe_successes < b->s.probes_to_close)
        return false;
    b->backfilling = true;
    b->transitions++;
    snprintf(b->reason, sizeof(b->reason), "%d probes succeeded; backfill starts",
             b->probe_successes);
    return true;
}

bool tl_breaker_tick(struct tl_breaker *b, int64_t now_ms)
{
    if (b->state != TL_BREAKER_OPEN || now_ms < b->open_until_ms)
        return false;
    enter(b, TL_BREAKER_HALF_OPEN, now_ms);
    snprintf(b->reason, sizeof(b->reason), "open interval over; probing");
    return true;
}

bool tl_breaker_backfill_done(struct tl_breaker *b, int64_t now_ms)
{
    if (b->state != TL_BREAKER_HALF_OPEN || !b->backfilling)
        return false;
    enter(b, TL_BREAKER_CLOSED, now_ms);
    reset_window(b);
    snprintf(b->reason, sizeof(b->reason), "backfill done: the backlog is small enough to "
             "follow with live traffic");
    return true;
}

bool tl_breaker_fence(struct tl_breaker *b, int64_t now_ms, const char *who)
{
    if (b->state == TL_BREAKER_FENCED)
        return false;
    enter(b, TL_BREAKER_FENCED, now_ms);
    snprintf(b->reason, sizeof(b->reason), "fenced by %s", who);
    return true;
}

bool tl_breaker_unfence(struct tl_breaker *b, int64_t now_ms, const char *who)
{
    if (b->state != TL_BREAKER_FENCED)
        return false;
    enter(b, TL_BREAKER_HALF_OPEN, now_ms);
    b->reopens = 0;
    snprintf(b->reason, sizeof(b->reason), "unfenced by %s; probing", who);
    return true;
}

bool tl_breaker_sends_events(const struct tl_breaker *b)
{
    return delivering(b);
}

bool tl_breaker_wants_probes(const struct tl_breaker *b)
{
    return b->state == TL_BREAKER_HALF_OPEN && !b->backfilling;
}

bool tl_breaker_counts_for_ack(const struct tl_breaker *b)
{
    return b->state == TL_BREAKER_CLOSED;
}
