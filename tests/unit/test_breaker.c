/*
 * Circuit breaker tests: every transition and threshold, driven by an injected clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"

static const struct tl_breaker_settings SETTINGS = {
    .consecutive_failures = 5,
    .failure_rate_percent = 50,
    .rate_window_ms = 10000,
    .min_volume = 20,
    .stall_timeout_ms = 1500,
    .open_ms = 1000,
    .open_max_ms = 8000,
    .probes_to_close = 2,
};

static void new_breaker(struct tl_breaker *b)
{
    tl_breaker_init(b, &SETTINGS, 0, 42);
}

/* Drives a breaker to OPEN with consecutive failures at time t. */
static void trip_at(struct tl_breaker *b, int64_t t)
{
    for (int i = 0; i < SETTINGS.consecutive_failures; i++)
        tl_breaker_record_failure(b, t, "REQUEST_TIMED_OUT");
}

/* Drives an OPEN breaker through HALF_OPEN into backfilling. */
static void pass_probes(struct tl_breaker *b)
{
    tl_breaker_tick(b, b->open_until_ms);
    for (int i = 0; i < SETTINGS.probes_to_close; i++)
        tl_breaker_record_probe(b, b->open_until_ms + 10 * (i + 1), true, NULL);
}

static void starts_closed_and_sends(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    assert_int_equal(b.state, TL_BREAKER_CLOSED);
    assert_true(tl_breaker_sends_events(&b));
    assert_true(tl_breaker_counts_for_ack(&b));
    assert_false(tl_breaker_wants_probes(&b));
}

static void consecutive_failures_trip(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    for (int i = 0; i < SETTINGS.consecutive_failures - 1; i++)
        assert_false(tl_breaker_record_failure(&b, 100, "NOT_ENOUGH_REPLICAS"));
    assert_int_equal(b.state, TL_BREAKER_CLOSED);
    assert_true(tl_breaker_record_failure(&b, 100, "NOT_ENOUGH_REPLICAS"));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
    assert_false(tl_breaker_sends_events(&b));
    assert_false(tl_breaker_counts_for_ack(&b));
    assert_non_null(strstr(b.reason, "NOT_ENOUGH_REPLICAS"));
}

static void success_resets_consecutive_count(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    /* 4 failures then 8 successes, three times: never 5 failures in a row, and the failure
     * share never reaches 50 %. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++)
            tl_breaker_record_failure(&b, 100 + round, "REQUEST_TIMED_OUT");
        for (int i = 0; i < 8; i++)
            tl_breaker_record_success(&b, 100 + round);
    }
    assert_int_equal(b.state, TL_BREAKER_CLOSED);
}

static void failure_rate_trips_after_min_volume(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    /* Alternate success and failure: 50 % failures, never two failures in a row. */
    int i = 0;
    for (; i < SETTINGS.min_volume - 2; i += 2) {
        tl_breaker_record_success(&b, 200);
        assert_false(tl_breaker_record_failure(&b, 200, "REQUEST_TIMED_OUT"));
    }
    tl_breaker_record_success(&b, 200);
    assert_true(tl_breaker_record_failure(&b, 200, "REQUEST_TIMED_OUT"));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
    assert_non_null(strstr(b.reason, "failure rate"));
}

static void failure_rate_below_limit_holds(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    /* One failure in three: 33 % stays below 50 %. */
    for (int i = 0; i < 60; i++) {
        tl_breaker_record_success(&b, 300);
        tl_breaker_record_success(&b, 300);
        assert_false(tl_breaker_record_failure(&b, 300, "REQUEST_TIMED_OUT"));
    }
    assert_int_equal(b.state, TL_BREAKER_CLOSED);
}

static void old_failures_leave_window(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    /* 4 failures early, then only successes more than a window later: no trip. */
    for (int i = 0; i < 4; i++)
        tl_breaker_record_failure(&b, 0, "REQUEST_TIMED_OUT");
    tl_breaker_record_success(&b, 0);
    for (int i = 0; i < 30; i++)
        tl_breaker_record_success(&b, 20000);
    assert_false(tl_breaker_record_failure(&b, 20000, "REQUEST_TIMED_OUT"));
    assert_int_equal(b.state, TL_BREAKER_CLOSED);
}

static void stall_trips_at_deadline(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    assert_false(tl_breaker_check_stall(&b, 5000, SETTINGS.stall_timeout_ms - 1));
    assert_true(tl_breaker_check_stall(&b, 5000, SETTINGS.stall_timeout_ms));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
    assert_non_null(strstr(b.reason, "stall"));
}

static void all_brokers_down_trips(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    assert_true(tl_breaker_all_brokers_down(&b, 10));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
}

static void trip_from_closed_and_probing(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    assert_true(tl_breaker_trip(&b, 10, "no metadata at start"));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
    assert_string_equal(b.reason, "no metadata at start");

    /* Probing: tripped again, with a longer interval. */
    int64_t first_interval = b.open_until_ms - 10;
    tl_breaker_tick(&b, b.open_until_ms);
    int64_t now = b.open_until_ms + 5;
    assert_true(tl_breaker_trip(&b, now, "topic check failed"));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
    assert_true(b.open_until_ms - now > first_interval);

    /* Already open or fenced: no change. */
    assert_false(tl_breaker_trip(&b, now + 1, "again"));
    tl_breaker_fence(&b, now + 2, "uid 0");
    assert_false(tl_breaker_trip(&b, now + 3, "again"));
    assert_int_equal(b.state, TL_BREAKER_FENCED);
}

static void open_becomes_half_open(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 1000);
    int64_t until = b.open_until_ms;
    /* First interval: open_ms ± 20 %. */
    assert_true(until - 1000 >= 800);
    assert_true(until - 1000 <= 1200);
    assert_false(tl_breaker_tick(&b, until - 1));
    assert_true(tl_breaker_tick(&b, until));
    assert_int_equal(b.state, TL_BREAKER_HALF_OPEN);
    assert_true(tl_breaker_wants_probes(&b));
    assert_false(tl_breaker_sends_events(&b));
    assert_false(tl_breaker_counts_for_ack(&b));
}

static void probes_start_backfill(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    tl_breaker_tick(&b, b.open_until_ms);
    assert_false(tl_breaker_record_probe(&b, b.open_until_ms + 1, true, NULL));
    assert_false(b.backfilling);
    assert_true(tl_breaker_record_probe(&b, b.open_until_ms + 2, true, NULL));
    assert_true(b.backfilling);
    assert_int_equal(b.state, TL_BREAKER_HALF_OPEN);
    assert_true(tl_breaker_sends_events(&b));
    assert_false(tl_breaker_counts_for_ack(&b));
    assert_false(tl_breaker_wants_probes(&b));
}

static void backfill_done_closes(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    pass_probes(&b);
    assert_true(tl_breaker_backfill_done(&b, 50000));
    assert_int_equal(b.state, TL_BREAKER_CLOSED);
    assert_true(tl_breaker_counts_for_ack(&b));
}

static void quick_reopen_keeps_interval(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    pass_probes(&b);
    int64_t closed_at = b.open_until_ms + 100;
    tl_breaker_backfill_done(&b, closed_at);
    /* Failing again soon after closing: the second interval, 2 x open_ms ± 20 %. */
    trip_at(&b, closed_at + 500);
    assert_true(b.open_until_ms - (closed_at + 500) >= 1600);
    assert_true(b.open_until_ms - (closed_at + 500) <= 2400);
}

static void stable_close_resets_interval(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    pass_probes(&b);
    int64_t closed_at = b.open_until_ms + 100;
    tl_breaker_backfill_done(&b, closed_at);
    /* Closed for open_max_ms: back to open_ms ± 20 %. */
    int64_t later = closed_at + SETTINGS.open_max_ms;
    trip_at(&b, later);
    assert_true(b.open_until_ms - later >= 800);
    assert_true(b.open_until_ms - later <= 1200);
}

static void backfill_done_needs_backfill(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    assert_false(tl_breaker_backfill_done(&b, 10));
    trip_at(&b, 0);
    tl_breaker_tick(&b, b.open_until_ms);
    assert_false(tl_breaker_backfill_done(&b, b.open_until_ms + 1));
    assert_int_equal(b.state, TL_BREAKER_HALF_OPEN);
}

static void failed_probe_reopens_longer(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    tl_breaker_tick(&b, b.open_until_ms);
    int64_t now = b.open_until_ms + 1;
    assert_true(tl_breaker_record_probe(&b, now, false, "transport failure"));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
    /* Second interval: 2 x open_ms ± 20 %. */
    assert_true(b.open_until_ms - now >= 1600);
    assert_true(b.open_until_ms - now <= 2400);
}

static void open_interval_capped(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    int64_t now = 0;
    trip_at(&b, now);
    for (int i = 0; i < 10; i++) {
        now = b.open_until_ms;
        tl_breaker_tick(&b, now);
        tl_breaker_record_probe(&b, now, false, "transport failure");
    }
    assert_true(b.open_until_ms - now <= SETTINGS.open_max_ms * 6 / 5);
    assert_true(b.open_until_ms - now >= SETTINGS.open_max_ms * 4 / 5);
}

static void failure_during_backfill_reopens(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    pass_probes(&b);
    assert_true(tl_breaker_record_failure(&b, b.open_until_ms + 100, "REQUEST_TIMED_OUT"));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
}

static void stall_during_backfill_reopens(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    pass_probes(&b);
    assert_true(tl_breaker_check_stall(&b, b.open_until_ms + 100, 2000));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
}

static void open_ignores_late_reports(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    trip_at(&b, 0);
    int64_t until = b.open_until_ms;
    assert_false(tl_breaker_record_failure(&b, 10, "PURGE_QUEUE"));
    assert_false(tl_breaker_record_success(&b, 10));
    assert_false(tl_breaker_check_stall(&b, 10, 100000));
    assert_false(tl_breaker_all_brokers_down(&b, 10));
    assert_int_equal(b.state, TL_BREAKER_OPEN);
    assert_int_equal(b.open_until_ms, until);
}

static void fence_from_every_state(void **state)
{
    (void)state;
    struct tl_breaker b;

    new_breaker(&b);
    assert_true(tl_breaker_fence(&b, 1, "uid 0"));
    assert_int_equal(b.state, TL_BREAKER_FENCED);
    assert_non_null(strstr(b.reason, "uid 0"));

    new_breaker(&b);
    trip_at(&b, 0);
    assert_true(tl_breaker_fence(&b, 1, "uid 0"));
    assert_int_equal(b.state, TL_BREAKER_FENCED);

    new_breaker(&b);
    trip_at(&b, 0);
    pass_probes(&b);
    assert_true(tl_breaker_fence(&b, b.open_until_ms + 100, "uid 0"));
    assert_int_equal(b.state, TL_BREAKER_FENCED);
    assert_false(b.backfilling);
}

static void fenced_ignores_everything(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    tl_breaker_fence(&b, 0, "uid 0");
    assert_false(tl_breaker_all_brokers_down(&b, 1));
    assert_false(tl_breaker_record_probe(&b, 2, true, NULL));
    assert_false(tl_breaker_tick(&b, 1000000));
    assert_false(tl_breaker_fence(&b, 3, "uid 0"));
    assert_int_equal(b.state, TL_BREAKER_FENCED);
    assert_false(tl_breaker_sends_events(&b));
    assert_false(tl_breaker_wants_probes(&b));
}

static void unfence_probes_first(void **state)
{
    (void)state;
    struct tl_breaker b;
    new_breaker(&b);
    tl_breaker_fence(&b, 0, "uid 0");
    assert_true(tl_breaker_unfence(&b, 5, "uid 0"));
    assert_int_equal(b.state, TL_BREAKER_HALF_OPEN);
    assert_true(tl_breaker_wants_probes(&b));
    assert_false(tl_breaker_unfence(&b, 6, "uid 0"));
}

static void jitter_is_seeded(void **state)
{
    (void)state;
    struct tl_breaker a, b, c;
    tl_breaker_init(&a, &SETTINGS, 0, 1);
    tl_breaker_init(&b, &SETTINGS, 0, 1);
    tl_breaker_init(&c, &SETTINGS, 0, 2);
    trip_at(&a, 0);
    trip_at(&b, 0);
    trip_at(&c, 0);
    assert_int_equal(a.open_until_ms, b.open_until_ms);
    assert_int_not_equal(a.open_until_ms, c.open_until_ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(starts_closed_and_sends),
        cmocka_unit_test(consecutive_failures_trip),
        cmocka_unit_test(success_resets_consecutive_count),
        cmocka_unit_test(failure_rate_trips_after_min_volume),
        cmocka_unit_test(failure_rate_below_limit_holds),
        cmocka_unit_test(old_failures_leave_window),
        cmocka_unit_test(stall_trips_at_deadline),
        cmocka_unit_test(all_brokers_down_trips),
        cmocka_unit_test(trip_from_closed_and_probing),
        cmocka_unit_test(open_becomes_half_open),
        cmocka_unit_test(probes_start_backfill),
        cmocka_unit_test(backfill_done_closes),
        cmocka_unit_test(quick_reopen_keeps_interval),
        cmocka_unit_test(stable_close_resets_interval),
        cmocka_unit_test(backfill_done_needs_backfill),
        cmocka_unit_test(failed_probe_reopens_longer),
        cmocka_unit_test(open_interval_capped),
        cmocka_unit_test(failure_during_backfill_reopens),
        cmocka_unit_test(stall_during_backfill_reopens),
        cmocka_unit_test(open_ignores_late_reports),
        cmocka_unit_test(fence_from_every_state),
        cmocka_unit_test(fenced_ignores_everything),
        cmocka_unit_test(unfence_probes_first),
        cmocka_unit_test(jitter_is_seeded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
