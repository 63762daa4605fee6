/*
 * An accepted event on its way to both regions.
 *
 * The event loop thread creates an event from a ProduceRequest, the pipeline gives it a
 * sequence number, and each region thread produces it and records its own delivery result in
 * its own slot of region[]. The thread whose delivery report brings `pending` to zero hands the
 * event back to the event loop thread, which answers the producer and frees it. So every field
 * is written by one thread and read by others only after the atomic hand-over.
 */
#ifndef TL_EVENT_H
#define TL_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct tl_batch;

struct tl_header {
    const char *name;
    const uint8_t *value; /* NULL for a header without a value */
    size_t value_len;
};

/* Delivery outcome in one region. */
struct tl_region_result {
    int err;        /* rd_kafka_resp_err_t; 0 when the region acknowledged the event */
    int64_t offset; /* offset in the region's partition, -1 if not stored */
};

struct tl_event {
    uint64_t seq;             /* per-agent sequence number, also in the twinlane-id header */
    int topic;                /* index into tl_config.topics */
    int32_t partition;        /* same number in every region */
    int64_t ingest_ms;        /* wall clock at acceptance; the record timestamp */
    bool has_key;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;     /* NULL for a null (tombstone) value */
    size_t value_len;
    struct tl_header *headers;
    size_t header_count;
    size_t bytes;             /* key + value + header bytes, for accounting */

    atomic_int pending;       /* regions that have not reported a result yet */
    struct tl_region_result region[TL_REGION_COUNT];

    struct tl_batch *batch;   /* request this event came in; owned by the event loop */
    uint32_t index;           /* position in that request */
    struct tl_event *next;    /* link in the pipeline's completion list */

    /* Key, value and header bytes follow in the same allocation. */
};

#endif
