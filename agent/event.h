/*
 * An accepted event on its way to both regions.
 *
 * Live events: the event loop thread creates one from a ProduceRequest, the WAL gives it a
 * sequence number, and the pipeline holds it until the producer is answered. A region thread
 * that produces it from memory takes a reference; the last reference frees it. Region threads
 * write only their own slot of region[] and publish it with the atomic `state` bits; the
 * event-loop-only fields are never touched elsewhere.
 *
 * Copies: a region that reads an event back from the WAL gets its own copy (batch NULL), which
 * it frees after the delivery report.
 */
#ifndef TL_EVENT_H
#define TL_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct tl_batch;

/* Bits of tl_event.state. */
#define TL_EVENT_REPORTED(region) (1u << (region))      /* the region has a final result */
#define TL_EVENT_STORED(region) (1u << (8 + (region)))  /* ... and that result is success */
#define TL_EVENT_QUEUED (1u << 16)                      /* handed to the event loop */

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
    const char *topic_name;
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

    atomic_int refs;          /* the pipeline's reference plus one per region producing it */
    atomic_uint state;        /* TL_EVENT_* bits, set by region threads */
    struct tl_region_result region[TL_REGION_COUNT];

    /* Event loop thread only. */
    bool regions_ready;       /* the regions satisfy the acknowledgement policy */
    bool durable;             /* the WAL allows acknowledging it */
    bool answered;
    struct tl_batch *batch;   /* request this event came in; NULL for WAL copies */
    uint32_t index;           /* position in that request */

    struct tl_event *next;    /* link in the pipeline's completion list */

    /* Key, value and header bytes follow in the same allocation. */
};

#endif
