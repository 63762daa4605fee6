/*
 * Latency histogram with logarithmic buckets, in the manner of HdrHistogram: values below 64
 * have a bucket each, and every power-of-two range above that is split into 32 linear
 * sub-buckets, so a bucket's width is at most 1/32 (about 3 %) of its values. Values are in
 * microseconds. One thread records into a histogram at a time; callers that share one lock it.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_BUCKETS (64 + 40 * 32)

struct bench_hist {
    uint64_t counts[BENCH_HIST_BUCKETS];
    uint64_t total;
    uint64_t max_us;
};

void bench_hist_reset(struct bench_hist *h);

/* Adds one value in microseconds. Values above 2^45 us land in the last bucket. */
void bench_hist_record(struct bench_hist *h, uint64_t value_us);

/* Adds every count of src to dst. */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);

/*
 * Returns the value at quantile q (0 < q <= 1) in microseconds: the midpoint of the bucket
 * that holds the ceil(q * total)-th smallest value, or 0 for an empty histogram.
 */
double bench_hist_quantile(const struct bench_hist *h, double q);

#endif
