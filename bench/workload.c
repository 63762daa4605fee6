/*
 * Workload construction: synthetic events and events read from dataset files.
 */
#include "workload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "partitioner.h"

#define SYNTHETIC_KEYS 1000
#define KEY_BYTES 16

void bench_workload_synthetic(struct bench_workload *w, const char *name, size_t value_bytes,
                              size_t count, int32_t partitions)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->events = tl_xcalloc(count, sizeof(*w->events));
    w->count = count;

    /* Values are windows into one random block, so count events need not hold count copies. */
    size_t block = value_bytes + 4096;
    size_t keys_bytes = (size_t)SYNTHETIC_KEYS * KEY_BYTES;
    w->storage = tl_xmalloc(block + keys_bytes);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < block; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        w->storage[i] = (char)(' ' + state % 95);
    }
    char *keys = w->storage + block;
    for (int k = 0; k < SYNTHETIC_KEYS; k++)
        snprintf(keys + (size_t)k * KEY_BYTES, KEY_BYTES, "user-%06d", k);

    for (size_t i = 0; i < count; i++) {
        struct bench_event *ev = &w->events[i];
        ev->key = keys + (i * 7919 % SYNTHETIC_KEYS) * KEY_BYTES;
        ev->key_len = strlen(ev->key);
        ev->value = w->storage + (i * 131) % 4096;
        ev->value_len = value_bytes;
        ev->partition = tl_partition_for_key(ev->key, ev->key_len, partitions);
    }
    w->mean_value_bytes = (double)value_bytes;
}

/* Finds the key of one line; writes its bounds into *key and *key_len. */
static void extract_key(enum bench_key_rule rule, const char *line, size_t len,
                        const char **key, size_t *key_len)
{
    static const char pattern[] = "\"id.orig_h\":\"";

    if (rule == BENCH_KEY_TSV_FIRST_COLUMN) {
        const char *tab = memchr(line, '\t', len);
        *key = line;
        *key_len = tab ? (size_t)(tab - line) : len;
        return;
    }

    const char *found = memmem(line, len, pattern, sizeof(pattern) - 1);
    if (found) {
        const char *start = found + sizeof(pattern) - 1;
        const char *end = memchr(start, '"', len - (size_t)(start - line));
        if (end) {
            *key = start;
            *key_len = (size_t)(end - start);
            return;
        }
    }
    *key = "-";
    *key_len = 1;
}

int bench_workload_load(struct bench_workload *w, const char *name, const char *path,
                        enum bench_key_rule rule, int32_t partitions, size_t max_events,
                        char *err, size_t errsize)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->name, sizeof(w->name), "%s", name);

    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsize, "cannot open dataset %s: %s", path, strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0) {
        fclose(f);
        snprintf(err, errsize, "dataset %s is empty", path);
        return -1;
    }
    w->storage = tl_xmalloc((size_t)size + 1);
    size_t got = fread(w->storage, 1, (size_t)size, f);
    fclose(f);
    w->storage[got] = '\0';

    size_t cap = 1024;
    w->events = tl_xcalloc(cap, sizeof(*w->events));
    double value_total = 0;
    bool skip_header = rule == BENCH_KEY_TSV_FIRST_COLUMN;
    char *line = w->storage;
    char *end = w->storage + got;
    while (line < end && w->count < max_events) {
        char *newline = memchr(line, '\n', (size_t)(end - line));
        char *line_end = newline ? newline : end;
        size_t len = (size_t)(line_end - line);
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (len > 0 && !skip_header) {
            if (w->count == cap) {
                cap *= 2;
                w->events = tl_xrealloc(w->events, cap * sizeof(*w->events));
            }
            struct bench_event *ev = &w->events[w->count++];
            extract_key(rule, line, len, &ev->key, &ev->key_len);
            ev->value = line;
            ev->value_len = len;
            ev->partition = tl_partition_for_key(ev->key, ev->key_len, partitions);
            value_total += (double)len;
        }
        if (len > 0)
            skip_header = false;
        line = line_end + 1;
    }

    if (w->count == 0) {
        snprintf(err, errsize, "dataset %s has no lines", path);
        bench_workload_free(w);
        return -1;
    }
    w->mean_value_bytes = value_total / (double)w->count;
    return 0;
}

void bench_workload_free(struct bench_workload *w)
{
    free(w->events);
    free(w->storage);
    memset(w, 0, sizeof(*w));
}
