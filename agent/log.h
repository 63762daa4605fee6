/*
 * One logger and one line format for the whole agent (and the command-line tools).
 *
 * Every line is written with a single write(2) to stderr, so lines from different threads
 * never interleave:
 *
 *   2026-12-04T19:43:11.123Z INFO  region: producer started region=east bootstrap=...
 *
 * UTC timestamp with milliseconds, level, component, then a message followed by key=value
 * fields. Callers put the fields in the format string. librdkafka's log output is routed here
 * with component "rdkafka". Any thread may call these functions.
 */
#ifndef TL_LOG_H
#define TL_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <pthread.h>

enum tl_log_level {
    TL_LOG_ERROR = 0,
    TL_LOG_WARN = 1,
    TL_LOG_INFO = 2,
    TL_LOG_DEBUG = 3,
};

/* Sets the most verbose level that is printed (default TL_LOG_INFO). */
void tl_log_set_level(enum tl_log_level level);
enum tl_log_level tl_log_get_level(void);

/* Parses "error", "warn", "info" or "debug"; returns false for anything else. */
bool tl_log_parse_level(const char *name, enum tl_log_level *level);

void tl_log(enum tl_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tl_log_error(component, ...) tl_log(TL_LOG_ERROR, component, __VA_ARGS__)
#define tl_log_warn(component, ...) tl_log(TL_LOG_WARN, component, __VA_ARGS__)
#define tl_log_info(component, ...) tl_log(TL_LOG_INFO, component, __VA_ARGS__)
#define tl_log_debug(component, ...) tl_log(TL_LOG_DEBUG, component, __VA_ARGS__)

/*
 * Rate limit for repeated log lines: at most `burst` lines per `interval_ms`. Lines over the
 * limit are counted, and the next allowed line reports how many were suppressed. Initialise
 * with TL_RATELIMIT_INIT; safe to share between threads.
 */
struct tl_ratelimit {
    pthread_mutex_t lock;
    int64_t interval_ms;
    uint32_t burst;
    int64_t window_start_ms;
    uint32_t printed;
    uint64_t suppressed;
};

#define TL_RATELIMIT_INIT(interval, max_lines)                                               \
    { .lock = PTHREAD_MUTEX_INITIALIZER, .interval_ms = (interval), .burst = (max_lines) }

/*
 * Returns true when a line may be printed now. *suppressed receives the number of lines
 * dropped since the last allowed one (0 if none), so the caller can append it.
 */
bool tl_ratelimit_allow(struct tl_ratelimit *rl, uint64_t *suppressed);

/* Milliseconds on CLOCK_MONOTONIC, for deadlines and durations. */
int64_t tl_now_ms(void);
/* Milliseconds since the Unix epoch on CLOCK_REALTIME, for timestamps. */
int64_t tl_wallclock_ms(void);
/* Microseconds from start to end, negative when end is earlier. */
int64_t tl_elapsed_us(const struct timespec *start, const struct timespec *end);

#endif
