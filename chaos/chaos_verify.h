/*
 * Verifier: reads both regions while the run goes on and checks them against what the load
 * generator saw acknowledged.
 *
 * One consumer thread per region assigns every partition of the topic from the beginning and
 * keeps reading for the whole run, noting when each record arrived. After the faults have
 * healed and the load has finished, chaos_verify_settle waits until each region was read to
 * its high watermark and has every acknowledged event (or the convergence limit passed).
 * chaos_verify_region and chaos_verify_convergence then derive the figures below. Main thread only, apart from the
 * consumer threads' own state.
 */
#ifndef TL_CHAOS_VERIFY_H
#define TL_CHAOS_VERIFY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chaos_load.h"
#include "chaos_scenario.h"

/* One record read from a region. */
struct chaos_record {
    int64_t offset;
    int64_t arrival_ms;      /* when the consumer received it */
    int64_t event;           /* chaos-event header; -1 when missing or not a number */
    uint64_t seq;            /* sequence number of the twinlane-id; 0 when not this agent's */
    int32_t partition;
    bool value_matches;      /* key and value are those of the event */
};

struct chaos_region_reader {
    const char *name;
    char bootstrap[512];
    const char *topic;
    int partitions;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    pthread_mutex_t lock;    /* guards records, count and next_offset */
    struct chaos_record *records;
    size_t count, cap;
    int64_t *next_offset;    /* per partition: offset after the last record read */
    bool reached_high_watermark; /* at the last check of chaos_verify_settle */
    char error[256];
};

/* Figures of one region. */
struct chaos_region_result {
    size_t records;
    size_t missing;          /* events acknowledged OK whose acknowledged twinlane-id is absent */
    size_t unexpected;       /* records that no attempt of the load could have produced */
    size_t duplicates;       /* records beyond the first with the same twinlane-id */
    size_t unacknowledged;   /* twinlane-ids stored for attempts that got no OK result */
    size_t misplaced;        /* records in another partition than murmur2 of their key */
    size_t order_violations; /* per partition, keeping the last copy of each twinlane-id */
    size_t first_copy_inversions; /* the same, keeping the first copy (information only) */
    bool read_to_high_watermark;  /* every partition was read up to its high watermark */
    int64_t missing_examples[5];  /* event indices, for the report */
    size_t missing_example_count;
};

struct chaos_verifier {
    struct chaos_region_reader readers[2];
};

/*
 * Starts one consumer thread per region; l must stay valid until chaos_verify_stop. Returns 0,
 * or -1 when a thread could not be started.
 */
int chaos_verify_start(struct chaos_verifier *v, const struct chaos_scenario *s,
                       const char *const bootstrap[2], const struct chaos_load *l);

/*
 * Waits until both regions hold every event that the load saw acknowledged OK and each reader
 * reached its partitions' high watermarks, for at most timeout_ms. Returns whether both
 * conditions held in time.
 */
bool chaos_verify_settle(struct chaos_verifier *v, const struct chaos_load *l,
                         int64_t timeout_ms);

/* Stops the consumer threads; the records stay for chaos_verify_compute. */
void chaos_verify_stop(struct chaos_verifier *v);

/*
 * Computes the figures of region r. Sorts the region's records; call after chaos_verify_stop.
 */
void chaos_verify_region(struct chaos_verifier *v, int r, const struct chaos_load *l,
                         struct chaos_region_result *out);

/*
 * Returns the first time at or after heal_ms at which both regions held every event that had
 * been acknowledged OK by then, in ms after heal_ms, or -1 when some acknowledged event never
 * arrived. Call after chaos_verify_region for both regions (it needs their sorted records).
 */
int64_t chaos_verify_convergence(struct chaos_verifier *v, const struct chaos_load *l,
                                 int64_t heal_ms);

void chaos_verify_free(struct chaos_verifier *v);

#endif
