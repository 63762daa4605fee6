/*
 * Result store and output. The store is a fixed table: a benchmark run records a few dozen
 * metrics, far below the limits, and a metric beyond them is dropped with a warning.
 */
#include "report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define MAX_METRICS 128
#define MAX_RATIOS 32
#define MAX_NOTES 64
#define MAX_SETTINGS 32

struct setting {
    char name[48];
    char value[208];
};

static struct bench_metric metrics[MAX_METRICS];
static size_t metric_count;
static struct bench_ratio ratios[MAX_RATIOS];
static size_t ratio_count;
static char notes[MAX_NOTES][320];
static size_t note_count;
static struct setting settings[MAX_SETTINGS];
static size_t setting_count;

static struct bench_metric *find(const char *key)
{
    for (size_t i = 0; i < metric_count; i++) {
        if (strcmp(metrics[i].key, key) == 0)
            return &metrics[i];
    }
    return NULL;
}

void bench_report_sample(const char *key, const char *unit, double value)
{
    struct bench_metric *m = find(key);
    if (!m) {
        if (metric_count == MAX_METRICS) {
            fprintf(stderr, "bench: metric table full; dropping %s\n", key);
            return;
        }
        m = &metrics[metric_count++];
        snprintf(m->key, sizeof(m->key), "%s", key);
        snprintf(m->unit, sizeof(m->unit), "%s", unit);
    }
    if (m->count == BENCH_MAX_SAMPLES) {
        fprintf(stderr, "bench: metric %s already has %d samples; dropping one\n", key,
                BENCH_MAX_SAMPLES);
        return;
    }
    m->samples[m->count++] = value;
}

const struct bench_metric *bench_report_metric(const char *key)
{
    const struct bench_metric *m = find(key);
    return m && m->count > 0 ? m : NULL;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

double bench_metric_median(const struct bench_metric *m)
{
    double sorted[BENCH_MAX_SAMPLES];
    memcpy(sorted, m->samples, sizeof(double) * (size_t)m->count);
    qsort(sorted, (size_t)m->count, sizeof(double), compare_doubles);
    if (m->count % 2 == 1)
        return sorted[m->count / 2];
    return (sorted[m->count / 2 - 1] + sorted[m->count / 2]) / 2.0;
}

double bench_metric_min(const struct bench_metric *m)
{
    double v = m->samples[0];
    for (int i = 1; i < m->count; i++)
        v = m->samples[i] < v ? m->samples[i] : v;
    return v;
}

double bench_metric_max(const struct bench_metric *m)
{
    double v = m->samples[0];
    for (int i = 1; i < m->count; i++)
        v = m->samples[i] > v ? m->samples[i] : v;
    return v;
}

double bench_report_median(const char *key)
{
    const struct bench_metric *m = bench_report_metric(key);
    return m ? bench_metric_median(m) : -1;
}

void bench_report_ratio(const char *key, const char *description, double numerator,
                        double denominator, enum bench_compare compare, double target)
{
    if (numerator <= 0 || denominator <= 0) {
        bench_report_note("ratio %s not computed: an input is missing", key);
        return;
    }
    if (ratio_count == MAX_RATIOS) {
        fprintf(stderr, "bench: ratio table full; dropping %s\n", key);
        return;
    }
    struct bench_ratio *r = &ratios[ratio_count++];
    snprintf(r->key, sizeof(r->key), "%s", key);
    snprintf(r->description, sizeof(r->description), "%s", description);
    r->value = numerator / denominator;
    r->target = target;
    r->compare = compare;
    r->holds = compare == BENCH_AT_LEAST  ? r->value >= target
               : compare == BENCH_AT_MOST ? r->value <= target
                                          : true;
}

void bench_report_note(const char *fmt, ...)
{
    if (note_count == MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes[note_count++], sizeof(notes[0]), fmt, ap);
    va_end(ap);
}

void bench_report_setting(const char *name, const char *fmt, ...)
{
    if (setting_count == MAX_SETTINGS)
        return;
    struct setting *s = &settings[setting_count++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->value, sizeof(s->value), fmt, ap);
    va_end(ap);
}

static const char *target_text(const struct bench_ratio *r, char *buf, size_t size)
{
    if (r->compare == BENCH_NO_TARGET)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%s %.2f", r->compare == BENCH_AT_LEAST ? ">=" : "<=", r->target);
    return buf;
}

void bench_report_print(void)
{
    char target[32];

    printf("\n%-22s %s\n", "setting", "value");
    for (size_t i = 0; i < setting_count; i++)
        printf("%-22s %s\n", settings[i].name, settings[i].value);

    printf("\n%-58s %11s %11s %11s  %s\n", "metric", "median", "min", "max", "unit");
    for (size_t i = 0; i < metric_count; i++) {
        const struct bench_metric *m = &metrics[i];
        if (m->count == 0)
            continue;
        printf("%-58s %11.4g %11.4g %11.4g  %s (n=%d)\n", m->key, bench_metric_median(m),
               bench_metric_min(m), bench_metric_max(m), m->unit, m->count);
    }

    printf("\n%-26s %8s %9s %6s  %s\n", "ratio", "value", "target", "holds", "what");
    for (size_t i = 0; i < ratio_count; i++) {
        const struct bench_ratio *r = &ratios[i];
        printf("%-26s %8.3f %9s %6s  %s\n", r->key, r->value,
               target_text(r, target, sizeof(target)),
               r->compare == BENCH_NO_TARGET ? "-" : r->holds ? "yes" : "NO", r->description);
    }

    if (note_count > 0)
        printf("\nnotes:\n");
    for (size_t i = 0; i < note_count; i++)
        printf("- %s\n", notes[i]);
    fflush(stdout);
}

int bench_report_write_json(const char *path)
{
    json_t *root = json_object();
    json_t *jsettings = json_object();
    json_t *jmetrics = json_object();
    json_t *jratios = json_object();
    json_t *jnotes = json_array();

    for (size_t i = 0; i < setting_count; i++)
        json_object_set_new(jsettings, settings[i].name, json_string(settings[i].value));
    for (size_t i = 0; i < metric_count; i++) {
        const struct bench_metric *m = &metrics[i];
        if (m->count == 0)
            continue;
        json_t *samples = json_array();
        for (int s = 0; s < m->count; s++)
            json_array_append_new(samples, json_real(m->samples[s]));
        json_object_set_new(jmetrics, m->key,
                            json_pack("{s:s, s:f, s:f, s:f, s:o}", "unit", m->unit, "median",
                                      bench_metric_median(m), "min", bench_metric_min(m), "max",
                                      bench_metric_max(m), "samples", samples));
    }
    for (size_t i = 0; i < ratio_count; i++) {
        const struct bench_ratio *r = &ratios[i];
        json_t *entry = json_pack("{s:s, s:f}", "description", r->description, "value", r->value);
        if (r->compare != BENCH_NO_TARGET) {
            json_object_set_new(entry, "target", json_real(r->target));
            json_object_set_new(entry, "compare",
                                json_string(r->compare == BENCH_AT_LEAST ? ">=" : "<="));
            json_object_set_new(entry, "holds", json_boolean(r->holds));
        }
        json_object_set_new(jratios, r->key, entry);
    }
    for (size_t i = 0; i < note_count; i++)
        json_array_append_new(jnotes, json_string(notes[i]));

    json_object_set_new(root, "settings", jsettings);
    json_object_set_new(root, "metrics", jmetrics);
    json_object_set_new(root, "ratios", jratios);
    json_object_set_new(root, "notes", jnotes);
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0) {
        fprintf(stderr, "bench: cannot write JSON to %s\n", path);
        return -1;
    }
    return 0;
}
