/*
 * Workloads: the events a benchmark run sends, held in memory so that reading input costs
 * nothing during a measurement. A synthetic workload has fixed-size random values; a dataset
 * workload takes one event per line of a file and a key extracted from the line. Every event
 * carries the partition Kafka's murmur2 partitioner gives its key, so the agent and the
 * baseline write it to the same partition.
 */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bench_event {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    int32_t partition;
};

/* How a dataset line yields its key. */
enum bench_key_rule {
    BENCH_KEY_TSV_FIRST_COLUMN, /* text before the first tab; the first line is a header */
    BENCH_KEY_JSON_ORIG_HOST,   /* the string value of "id.orig_h", else "-" */
};

struct bench_workload {
    char name[32];
    struct bench_event *events;
    size_t count;
    char *storage;          /* key and value bytes that events point into */
    double mean_value_bytes;
};

/* Builds count events with value_bytes random bytes each and keys from a set of 1000. */
void bench_workload_synthetic(struct bench_workload *w, const char *name, size_t value_bytes,
                              size_t count, int32_t partitions);

/*
 * Loads up to max_events lines of path, one event per non-empty line (without its newline).
 * Returns 0, or -1 with a message in err when the file cannot be read or yields no event.
 */
int bench_workload_load(struct bench_workload *w, const char *name, const char *path,
                        enum bench_key_rule rule, int32_t partitions, size_t max_events,
                        char *err, size_t errsize);

void bench_workload_free(struct bench_workload *w);

#endif
