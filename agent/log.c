/*
 * Logger: formats one line per call and writes it to stderr with one write(2).
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = TL_LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

void tl_log_set_level(enum tl_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum tl_log_level tl_log_get_level(void)
{
    return (enum tl_log_level)atomic_load(&log_level);
}

bool tl_log_parse_level(const char *name, enum tl_log_level *level)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            *level = (enum tl_log_level)i;
            return true;
        }
    }
    return false;
}

int64_t tl_elapsed_us(const struct timespec *start, const struct timespec *end)
{
    int64_t ns = ((int64_t)end->tv_sec - (int64_t)start->tv_sec) * 1000000000 +
                 ((int64_t)end->tv_nsec - (int64_t)start->tv_nsec);
    return ns / 1000;
}

int64_t tl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tl_wallclock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tl_log(enum tl_log_level level, const char *component, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;

    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int len = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], component);

    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(line + len, sizeof(line) - (size_t)len - 1, fmt, ap);
    va_end(ap);

    /* A line longer than the buffer is cut, and still ends with a newline. */
    size_t total = (size_t)len + (size_t)body;
    if (total > sizeof(line) - 2)
        total = sizeof(line) - 2;
    line[total++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, total);
    (void)ignored;
}

bool tl_ratelimit_allow(struct tl_ratelimit *rl, uint64_t *suppressed)
{
    int64_t now = tl_now_ms();
    bool allow;

    pthread_mutex_lock(&rl->lock);
    if (now - rl->window_start_ms >= rl->interval_ms) {
        rl->window_start_ms = now;
        rl->printed = 0;
    }
    allow = rl->printed < rl->burst;
    if (allow) {
        rl->printed++;
        *suppressed = rl->suppressed;
        rl->suppressed = 0;
    } else {
        rl->suppressed++;
    }
    pthread_mutex_unlock(&rl->lock);
    return allow;
}
