/*
 * Log-bucketed latency histogram; see hist.h for the bucket layout.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

#define SUB_BITS 5
#define SUB_COUNT (1u << SUB_BITS)
#define LINEAR_LIMIT (2u * SUB_COUNT)

static unsigned bucket_of(uint64_t v)
{
    if (v < LINEAR_LIMIT)
        return (unsigned)v;

    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SUB_BITS;
    unsigned index = LINEAR_LIMIT + (shift - 1) * SUB_COUNT + (unsigned)((v >> shift) - SUB_COUNT);
    return index < BENCH_HIST_BUCKETS ? index : BENCH_HIST_BUCKETS - 1;
}

static double bucket_midpoint(unsigned index)
{
    if (index < LINEAR_LIMIT)
        return index;

    unsigned shift = (index - LINEAR_LIMIT) / SUB_COUNT + 1;
    uint64_t mantissa = (index - LINEAR_LIMIT) % SUB_COUNT + SUB_COUNT;
    double low = (double)(mantissa << shift);
    double width = (double)(1ull << shift);
    return low + width / 2.0;
}

void bench_hist_reset(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
}

void bench_hist_record(struct bench_hist *h, uint64_t value_us)
{
    h->counts[bucket_of(value_us)]++;
    h->total++;
    if (value_us > h->max_us)
        h->max_us = value_us;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
}

double bench_hist_quantile(const struct bench_hist *h, double q)
{
    if (h->total == 0)
        return 0.0;

    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double mid = bucket_midpoint(i);
            return mid < (double)h->max_us ? mid : (double)h->max_us;
        }
    }
    return (double)h->max_us;
}
