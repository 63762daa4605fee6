/*
 * Ingest: the producer-facing side of the agent.
 *
 * Listens on a Unix-domain socket (always) and on a loopback TCP address (optional), reads
 * length-prefixed ProduceRequest frames (proto/frame.h), checks each event, hands accepted
 * events to the pipeline, and answers each request with one ProduceResponse once every event
 * in it has a final status. Clients may pipeline: many requests before reading an answer.
 *
 * Accepted events go to the WAL (which assigns the sequence number; a full WAL answers
 * RETRYABLE) and then to the pipeline, which decides when each may be answered.
 *
 * Per-event checks, answered per event: the topic must be configured (UNKNOWN_TOPIC) and a
 * valid Kafka topic name (INVALID); key + value + headers within listen.max_event_bytes
 * (TOO_LARGE); header names non-empty and not starting with "twinlane-" (INVALID).
 * Per-frame problems: an undecodable frame gets an error response and the connection goes on;
 * a frame whose declared length exceeds listen.max_frame_bytes gets an error response and the
 * connection is closed, since the stream cannot be resynchronised. Both are logged with a rate
 * limit. Neither affects other connections.
 *
 * Back-pressure: when the pipeline is full, a connection whose next request does not fit stops
 * being read until completions make room; when a client does not read its answers, its
 * connection stops being read once OUTPUT_HIGH_WATER bytes of answers are waiting.
 *
 * Everything here runs on the event loop thread.
 */
#ifndef TL_INGEST_H
#define TL_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "pipeline.h"
#include "timeline.h"
#include "wal.h"

struct tl_ingest;

/* Counters, for logs now and for metrics. */
struct tl_ingest_stats {
    uint64_t connections_accepted;
    uint64_t connections_open;
    uint64_t requests;
    uint64_t events_accepted;
    uint64_t events_acknowledged;
    uint64_t events_rejected;
    uint64_t events_failed;
    uint64_t events_unanswered;   /* answered RETRYABLE at shutdown, kept in the WAL */
    uint64_t events_spooled;      /* acknowledged from the WAL alone, no region available */
    uint64_t bad_frames;
    uint64_t connections_rejected;  /* listen.max_connections reached */
    uint64_t rejected_by_status[6]; /* events_rejected split by the wire Status value */
    bool paused;                    /* tl_ingest_set_paused */
    struct tl_histogram ack_latency; /* request read to OK answer, seconds */
};

/*
 * Opens the listeners and registers them with the epoll instance epfd. partitions[t] is the
 * partition count of topic t (equal in both regions). Returns 0, or TL_EIO / TL_EINVAL with err
 * naming the address (for example another agent already listening on the socket).
 */
int tl_ingest_open(const struct tl_config *cfg, int epfd, struct tl_pipeline *pipeline,
                   struct tl_wal *wal, const int32_t *partitions, struct tl_ingest **out,
                   char *err, size_t errsize);

/*
 * Answers every event that the acknowledgement rule now allows; call when the pipeline's done
 * fd or the WAL's notify fd is readable.
 */
void tl_ingest_handle_completions(struct tl_ingest *ing);

/*
 * Answers what can be answered, then every event still unanswered with RETRYABLE (it stays in
 * the WAL). For shutdown, after the regions stopped.
 */
void tl_ingest_answer_remaining(struct tl_ingest *ing);

/* Closes the listeners (removing the socket file) and stops reading from every connection. */
void tl_ingest_stop_accepting(struct tl_ingest *ing);

/*
 * Pauses (true) or resumes (false) reading requests from producer connections, for the admin
 * API. Connections stay open, answers to accepted events keep flowing, new connections are
 * still accepted and wait. Logs the change with who; returns whether the state changed.
 */
bool tl_ingest_set_paused(struct tl_ingest *ing, bool paused, const char *who);

/* Returns whether answers are still waiting to be written to some connection. */
bool tl_ingest_has_pending_output(const struct tl_ingest *ing);

/* Copies the counters. Event loop thread: other threads get copies that the loop publishes. */
void tl_ingest_get_stats(const struct tl_ingest *ing, struct tl_ingest_stats *stats);

/*
 * Handles requests that connections left over after their turn (each connection gets at most a
 * fixed number per wake-up, so that one busy client cannot starve the others). Returns true
 * when work remains; the event loop then polls without waiting.
 */
bool tl_ingest_run_backlog(struct tl_ingest *ing);

/* Gives ingest the regions' failover timelines, which record the first acknowledgement. */
void tl_ingest_set_timelines(struct tl_ingest *ing, struct tl_timeline *timelines);

/* Closes every connection and frees the ingest. Events must no longer reference its batches. */
void tl_ingest_close(struct tl_ingest *ing);

#endif
