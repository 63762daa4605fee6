/*
 * Results of a benchmark run: named metrics with one sample per run, ratios checked against
 * targets, and free-form notes. Printed as a table on stdout and written as JSON.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#define BENCH_MAX_SAMPLES 16

struct bench_metric {
    char key[80];
    char unit[16];
    double samples[BENCH_MAX_SAMPLES];
    int count;
};

enum bench_compare { BENCH_AT_LEAST, BENCH_AT_MOST, BENCH_NO_TARGET };

struct bench_ratio {
    char key[64];
    char description[160];
    double value;
    double target;
    enum bench_compare compare;
    bool holds;
};

/* Adds one sample to metric key, creating it with unit on first use. */
void bench_report_sample(const char *key, const char *unit, double value);

/* Returns the metric key, or NULL when it has no sample. */
const struct bench_metric *bench_report_metric(const char *key);

/* Median, minimum and maximum of a metric's samples. */
double bench_metric_median(const struct bench_metric *m);
double bench_metric_min(const struct bench_metric *m);
double bench_metric_max(const struct bench_metric *m);

/* Returns the median of metric key, or -1 when it has no sample. */
double bench_report_median(const char *key);

/*
 * Records numerator/denominator (medians of two metrics, or plain values) as ratio key with
 * its target. A ratio whose inputs are missing or not positive is skipped with a note.
 */
void bench_report_ratio(const char *key, const char *description, double numerator,
                        double denominator, enum bench_compare compare, double target);

/* Adds a line to the notes section of the table and the JSON. */
void bench_report_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Adds a name/value pair to the "machine" and settings section. */
void bench_report_setting(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints settings, metrics, ratios and notes as plain-text tables on stdout. */
void bench_report_print(void);

/* Writes everything as one JSON object to path. Returns 0, or -1 with a message on stderr. */
int bench_report_write_json(const char *path);

#endif
