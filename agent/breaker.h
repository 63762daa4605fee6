/*
 * Circuit breaker for one region: a pure state machine with an injected clock (every function
 * takes `now_ms`), so it is tested without Kafka or real time.
 *
 *   CLOSED ──trip──▶ OPEN ──open interval over──▶ HALF_OPEN (probing)
 *      ▲                ▲                               │ probes_to_close probes succeed
 *      │                └──── failure, stall, down ─────┤
 *      │                                                ▼
 *      └──────────── backfill done ───────────── HALF_OPEN (backfilling)
 *
 *   fence: any state ──▶ FENCED (manual; nothing goes to the region); unfence ──▶ HALF_OPEN
 *
 * Trips (from CLOSED, and from HALF_OPEN at any step): `consecutive_failures` failed deliveries
 * in a row; a failure share of at least `failure_rate_percent` over the last `rate_window_ms`
 * once that window holds `min_volume` deliveries; the oldest in-flight event older than
 * `stall_timeout_ms` (a hung region produces no errors at all); librdkafka reporting all brokers
 * down. A failed probe in HALF_OPEN reopens. Errors that belong to one event (record too large,
 * invalid record) must not be reported here.
 *
 * OPEN lasts open_ms, doubled on each reopen, capped at open_max_ms, with ±20 % jitter so that
 * agents do not probe in lockstep. The interval starts over at open_ms only once the breaker
 * has stayed closed for open_max_ms, so a region that flaps is probed less and less often.
 *
 * What a region may send: CLOSED everything; HALF_OPEN probes (heartbeats) only until the probes
 * pass, then the backlog from its cursor (backfill); OPEN and FENCED nothing. Only CLOSED counts
 * for the acknowledgement policy.
 *
 * One thread owns a breaker (the region thread); it is not locked.
 */
#ifndef TL_BREAKER_H
#define TL_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

enum tl_breaker_state {
    TL_BREAKER_CLOSED = 0,
    TL_BREAKER_OPEN = 1,
    TL_BREAKER_HALF_OPEN = 2,
    TL_BREAKER_FENCED = 3,
};

struct tl_breaker_settings {
    int consecutive_failures;
    int failure_rate_percent;
    int rate_window_ms;
    int min_volume;
    int stall_timeout_ms;
    int open_ms;
    int open_max_ms;
    int probes_to_close;
};

#define TL_BREAKER_BUCKETS 10

struct tl_breaker {
    struct tl_breaker_settings s;
    enum tl_breaker_state state;
    bool backfilling;          /* HALF_OPEN only: probes passed, backlog being sent */
    int64_t since_ms;          /* time of the last transition */
    int64_t open_until_ms;     /* OPEN only */
    int reopens;               /* opens since the breaker was last stable; grows OPEN */
    int consecutive;           /* failed deliveries in a row */
    int probe_successes;
    struct {
        int64_t start_ms;
        uint32_t ok;
        uint32_t failed;
    } buckets[TL_BREAKER_BUCKETS]; /* the rate window, in slices of rate_window_ms / 10 */
    uint64_t rng;
    uint64_t transitions;
    char reason[512];          /* why the last transition happened, for logs */
};

void tl_breaker_init(struct tl_breaker *b, const struct tl_breaker_settings *s, int64_t now_ms,
                     uint64_t seed);

/*
 * Inputs. Each returns true when the state (or the backfilling flag) changed, and b->reason
 * then contains the cause.
 */
bool tl_breaker_record_success(struct tl_breaker *b, int64_t now_ms);
bool tl_breaker_record_failure(struct tl_breaker *b, int64_t now_ms, const char *error);
/* oldest_ms: age of the oldest event sent and not yet answered by the region, 0 if none. */
bool tl_breaker_check_stall(struct tl_breaker *b, int64_t now_ms, int64_t oldest_ms);
bool tl_breaker_all_brokers_down(struct tl_breaker *b, int64_t now_ms);
/* Opens a CLOSED or HALF_OPEN breaker for a cause the agent found itself, such as a region
 * that did not respond at start. */
bool tl_breaker_trip(struct tl_breaker *b, int64_t now_ms, const char *reason);
bool tl_breaker_record_probe(struct tl_breaker *b, int64_t now_ms, bool ok, const char *error);
/* Moves OPEN to HALF_OPEN once the interval is over. */
bool tl_breaker_tick(struct tl_breaker *b, int64_t now_ms);
/* The backlog has been sent and acknowledged: HALF_OPEN (backfilling) becomes CLOSED. */
bool tl_breaker_backfill_done(struct tl_breaker *b, int64_t now_ms);
bool tl_breaker_fence(struct tl_breaker *b, int64_t now_ms, const char *who);
bool tl_breaker_unfence(struct tl_breaker *b, int64_t now_ms, const char *who);

/* Whether events (live or backlog) may be sent to the region now. */
bool tl_breaker_sends_events(const struct tl_breaker *b);
/* Whether probes should be sent now (HALF_OPEN before the probes passed). */
bool tl_breaker_wants_probes(const struct tl_breaker *b);
/* Whether the region counts for the acknowledgement policy (CLOSED). */
bool tl_breaker_counts_for_ack(const struct tl_breaker *b);

const char *tl_breaker_state_name(enum tl_breaker_state state);

#endif
