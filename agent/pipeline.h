/*
 * The pipeline: accepted events in sequence order, with one read cursor per region.
 *
 * The event loop thread appends events; each region thread takes them from its own cursor in
 * sequence order, so both regions see the same order. Events stay in a bounded ring until the
 * event loop has answered them; when the ring or its byte budget is full, tl_pipeline_has_room
 * returns false and ingest stops reading from producers (back-pressure) instead of growing.
 *
 * Completed events (every region reported) are queued back to the event loop, which is woken
 * through an eventfd (tl_pipeline_done_fd).
 *
 * Sequence numbers survive restarts: the pipeline reserves them in blocks recorded in
 * DATA_DIR/sequence before handing any out, so a crash can skip numbers but never reuse one.
 *
 * NOTE: events live in memory only until both regions acknowledge them; a crash of the agent
 * loses the unacknowledged ones (their producers never got an OK, so they can retry).
 *
 * Locking: one mutex guards the ring and cursors; the completion list has its own.
 */
#ifndef TL_PIPELINE_H
#define TL_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct tl_pipeline;

/*
 * Creates a pipeline holding at most max_events events and max_bytes event bytes, with
 * sequence numbers reserved in data_dir. Returns 0 or TL_EIO with err set.
 */
int tl_pipeline_open(const char *data_dir, size_t max_events, size_t max_bytes,
                     struct tl_pipeline **out, char *err, size_t errsize);

/* Frees the pipeline and every event still in it. No thread may use it any more. */
void tl_pipeline_close(struct tl_pipeline *p);

/* Registers the eventfd a region thread waits on; appends write to it. */
void tl_pipeline_set_region_wake_fd(struct tl_pipeline *p, int region, int fd);

/* Returns whether `events` more events of `bytes` bytes fit now. Event loop thread. */
bool tl_pipeline_has_room(struct tl_pipeline *p, size_t events, size_t bytes);

/*
 * Appends an event, assigning its sequence number and setting pending to the region count.
 * The caller checked tl_pipeline_has_room. Returns 0, or TL_EIO if a sequence block could not
 * be recorded (the event is then not appended). Event loop thread.
 */
int tl_pipeline_append(struct tl_pipeline *p, struct tl_event *ev, char *err, size_t errsize);

/* Wakes the region threads once after a run of appends. Event loop thread. */
void tl_pipeline_wake_regions(struct tl_pipeline *p);

/*
 * Takes up to max events from the region's cursor and advances it. Returns the count; never
 * blocks. The events stay owned by the pipeline. Region thread.
 */
size_t tl_pipeline_take(struct tl_pipeline *p, int region, struct tl_event **out, size_t max);

/*
 * Records that a region has reported on an event (its result slot is already written). When
 * every region has reported, queues the event for the event loop. Any region thread.
 */
void tl_pipeline_report(struct tl_pipeline *p, struct tl_event *ev);

/* Eventfd that becomes readable when completed events are queued. */
int tl_pipeline_done_fd(const struct tl_pipeline *p);

/*
 * Removes and returns the list of completed events (linked through ev->next, in completion
 * order). The caller answers them and then calls tl_pipeline_release on each. Event loop thread.
 */
struct tl_event *tl_pipeline_take_done(struct tl_pipeline *p);

/* Frees a completed event and the ring slot it used. Event loop thread. */
void tl_pipeline_release(struct tl_pipeline *p, struct tl_event *ev);

/* Events appended and not yet released. */
size_t tl_pipeline_inflight(struct tl_pipeline *p);

/* The sequence number the next appended event will get. */
uint64_t tl_pipeline_next_seq(struct tl_pipeline *p);

#endif
