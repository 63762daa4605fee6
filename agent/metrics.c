/*
 * Metrics helpers: latency histogram and Prometheus text exposition (format version 0.0.4).
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "mem.h"

const double tl_histogram_bounds_s[TL_HISTOGRAM_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void tl_histogram_observe(struct tl_histogram *h, double seconds)
{
    size_t i = 0;
    while (i < TL_HISTOGRAM_BUCKETS && seconds > tl_histogram_bounds_s[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum_s += seconds;
}

void tl_metrics_printf(struct tl_metrics_out *out, const char *fmt, ...)
{
    va_list ap;

    for (;;) {
        size_t room = out->cap - out->len;
        va_start(ap, fmt);
        int n = vsnprintf(out->data ? out->data + out->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            tl_panic("vsnprintf failed while writing metrics");
        if ((size_t)n < room) {
            out->len += (size_t)n;
            return;
        }
        size_t cap = out->cap ? out->cap : 4096;
        while (cap - out->len <= (size_t)n)
            cap *= 2;
        out->data = tl_xrealloc(out->data, cap);
        out->cap = cap;
    }
}

void tl_metrics_family(struct tl_metrics_out *out, const char *name, const char *type,
                       const char *help)
{
    tl_metrics_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void tl_metrics_histogram(struct tl_metrics_out *out, const char *name, const char *labels,
                          const struct tl_histogram *h)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cumulative = 0;

    for (size_t i = 0; i < TL_HISTOGRAM_BUCKETS; i++) {
        cumulative += h->buckets[i];
        tl_metrics_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                          tl_histogram_bounds_s[i], (unsigned long long)cumulative);
    }
    cumulative += h->buckets[TL_HISTOGRAM_BUCKETS];
    tl_metrics_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                      (unsigned long long)cumulative);
    if (labels[0]) {
        tl_metrics_printf(out, "%s_sum{%s} %.9g\n", name, labels, h->sum_s);
        tl_metrics_printf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
    } else {
        tl_metrics_printf(out, "%s_sum %.9g\n", name, h->sum_s);
        tl_metrics_printf(out, "%s_count %llu\n", name, (unsigned long long)h->count);
    }
}

void tl_metrics_out_free(struct tl_metrics_out *out)
{
    free(out->data);
    out->data = NULL;
    out->len = out->cap = 0;
}
