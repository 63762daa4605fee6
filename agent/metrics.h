/*
 * Metrics helpers: a fixed-bucket latency histogram and the Prometheus text exposition writer
 * that the admin API serves at /metrics.
 *
 * The histogram is a plain struct with no locking: its owner (the event loop thread for the
 * acknowledgement latency) updates it, and other threads only see copies taken by the owner,
 * for example inside tl_ingest_get_stats.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Upper bounds in seconds, from 0.5 ms to 10 s; a last, implicit bucket is +Inf. */
#define TL_HISTOGRAM_BUCKETS 14
extern const double tl_histogram_bounds_s[TL_HISTOGRAM_BUCKETS];

struct tl_histogram {
    uint64_t buckets[TL_HISTOGRAM_BUCKETS + 1]; /* not cumulative; the last one is +Inf */
    uint64_t count;
    double sum_s;
};

/* Adds one observation of `seconds`. Owner thread only. */
void tl_histogram_observe(struct tl_histogram *h, double seconds);

/*
 * Growable text buffer for the exposition output. Every append aborts on allocation failure,
 * so the writer functions cannot fail.
 */
struct tl_metrics_out {
    char *data;
    size_t len;
    size_t cap;
};

void tl_metrics_printf(struct tl_metrics_out *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes the "# HELP" and "# TYPE" lines of one metric family. */
void tl_metrics_family(struct tl_metrics_out *out, const char *name, const char *type,
                       const char *help);

/*
 * Writes one histogram family member: NAME_bucket{LABELS,le="..."} lines (cumulative),
 * NAME_sum and NAME_count. labels is "" or 'key="value"' pairs without braces.
 */
void tl_metrics_histogram(struct tl_metrics_out *out, const char *name, const char *labels,
                          const struct tl_histogram *h);

void tl_metrics_out_free(struct tl_metrics_out *out);

#endif
