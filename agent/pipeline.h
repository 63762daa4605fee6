/*
 * The pipeline: events accepted but not yet answered, in sequence order, and the rule that
 * decides when each may be answered.
 *
 * The event loop thread appends each event after the WAL gave it its sequence number. Region
 * threads look events up by sequence number (tl_pipeline_get) to produce them from memory, and
 * report per-region outcomes (tl_pipeline_report). Only healthy regions (circuit breaker
 * closed, tl_pipeline_set_healthy) count. An event is answered when both hold:
 *   - the healthy regions satisfy agent.ack: "all" every one reported, "one" one stored it or
 *     every one reported, "local" nothing is asked of the regions; with no healthy region the
 *     event is answered from the WAL alone (spooled);
 *   - the WAL's acknowledgeable position (tl_wal_ack_seq) has passed it.
 * The event loop thread applies that rule in tl_pipeline_dispatch and calls the answer function.
 *
 * Back-pressure: at most max_events unanswered events and max_bytes of their payload; when
 * tl_pipeline_has_room is false, ingest stops reading from producers.
 *
 * Locking: one mutex guards the ring; the completion list has its own. Region threads signal
 * completions through an eventfd (tl_pipeline_done_fd).
 */
#ifndef TL_PIPELINE_H
#define TL_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"

struct tl_pipeline;

/*
 * Creates a pipeline whose first event will have sequence number first_seq. Never fails
 * (allocation failure aborts).
 */
struct tl_pipeline *tl_pipeline_new(enum tl_ack_policy policy, size_t max_events,
                                    size_t max_bytes, uint64_t first_seq);

/* Frees the pipeline; events still held lose the pipeline's reference. */
void tl_pipeline_free(struct tl_pipeline *p);

/* Returns whether `events` more events of `bytes` bytes fit now. Event loop thread. */
bool tl_pipeline_has_room(struct tl_pipeline *p, size_t events, size_t bytes);

/*
 * Adds an event whose seq the WAL has just assigned (always the next one in order). The
 * pipeline takes one reference. Event loop thread.
 */
void tl_pipeline_append(struct tl_pipeline *p, struct tl_event *ev);

/*
 * Returns the live event with sequence number seq and a new reference to it, or NULL when it
 * has been answered already (the region then reads the WAL). Region thread.
 */
struct tl_event *tl_pipeline_get(struct tl_pipeline *p, uint64_t seq);

/*
 * Returns the sequence number the next append will have: every event below it has been
 * appended, and may have left the pipeline since. Any thread.
 */
uint64_t tl_pipeline_head(struct tl_pipeline *p);

/*
 * Takes new references to the live events with sequence numbers seq, seq + 1, ... into out,
 * up to max of them, under one lock. Returns how many: fewer than max where the run of held
 * events ends (the region reads the rest from the WAL). Region thread.
 */
size_t tl_pipeline_get_many(struct tl_pipeline *p, uint64_t seq, struct tl_event **out,
                            size_t max);

/* A region's final result for one event: ev is the live event or the region's WAL copy. */
struct tl_report {
    struct tl_event *ev;
    int err;        /* rd_kafka_resp_err_t; 0 when the region stored the event */
    int64_t offset;
};

/*
 * Records a run of a region's final results under one lock. Each live event still held gets
 * its result. The event loop is woken once. Any region thread.
 */
void tl_pipeline_report_many(struct tl_pipeline *p, int region, const struct tl_report *reports,
                             size_t n);

/* Drops one reference; the last one frees the event. Any thread. */
void tl_event_unref(struct tl_event *ev);

/* Eventfd that becomes readable when region results are waiting for the event loop. */
int tl_pipeline_done_fd(const struct tl_pipeline *p);

/*
 * Applies the acknowledgement rule: takes the region results waiting, marks events below
 * wal_ack_seq durable, and for every event now answerable calls answer(ctx, ev) and then
 * removes the event from the pipeline. Event loop thread.
 */
void tl_pipeline_dispatch(struct tl_pipeline *p, uint64_t wal_ack_seq,
                          void (*answer)(void *ctx, struct tl_event *ev), void *ctx);

/*
 * Calls answer(ctx, ev) for every event still held and removes them all; for shutdown, after
 * the regions have stopped. Event loop thread.
 */
void tl_pipeline_drain(struct tl_pipeline *p, void (*answer)(void *ctx, struct tl_event *ev),
                       void *ctx);

/*
 * Marks a region as counting (breaker closed) or not for the acknowledgement policy; when that
 * changes, the event loop re-checks every held event. Any thread.
 */
void tl_pipeline_set_healthy(struct tl_pipeline *p, int region, bool healthy);

/* Bit r set: region r counts for the policy. */
unsigned tl_pipeline_healthy(struct tl_pipeline *p);

/* Events appended and not yet answered. */
size_t tl_pipeline_inflight(struct tl_pipeline *p);

#endif
