/*
 * Load generator: sends keyed events to the agent at a fixed rate through the client library
 * and records what became of each one.
 *
 * Event i carries the header "chaos-event" = i, so the verifier can tell which event every
 * record in a region is. Its key and value come from line i (modulo the line count) of the
 * scenario's input file, or are generated. Like a real producer, the generator sends an event
 * again when its result was RETRYABLE or CONNECTION_LOST (after a crash of the agent it
 * reconnects every 20 ms), so one event can have several attempts, and only the last one can
 * be OK. Every result is also written to DIR/events.tsv.
 *
 * One thread, started by chaos_load_start, does all the sending and polling. The main thread
 * may read the counters in struct chaos_load_progress at any time and everything else only
 * after chaos_load_finish returned.
 */
#ifndef TL_CHAOS_LOAD_H
#define TL_CHAOS_LOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chaos_scenario.h"

/* Status of an event that has no final result yet. */
#define CHAOS_PENDING (-1)

struct chaos_event {
    int64_t first_send_ms;   /* first attempt */
    int64_t send_ms;         /* latest attempt */
    int64_t ack_ms;          /* result of the latest attempt; 0 while in flight */
    uint64_t seq;            /* agent sequence number of an OK result */
    int32_t partition;       /* partition of an OK result */
    int32_t expected_partition; /* murmur2 of the key, computed with librdkafka */
    int16_t status;          /* enum tl_client_status of the latest result, or CHAOS_PENDING */
    uint16_t attempts;
    bool spooled;            /* OK while no region held the event */
    bool queued;             /* waiting in the resend queue */
};

/* One line of the input, as offsets into the file's text. */
struct chaos_line {
    const char *text;
    uint32_t len;
    uint32_t key_offset;
    uint32_t key_len;
};

struct chaos_load {
    const struct chaos_scenario *scenario;
    char address[640];       /* "unix:..." of the agent */
    char *input_text;        /* the input file, or NULL for generated events */
    struct chaos_line *lines;
    size_t line_count;
    size_t lines_without_key;

    struct chaos_event *events;
    size_t total;            /* events the run generates: rate * duration */
    int64_t start_ms;

    /* Status counts over every result, including the ones later sent again. */
    atomic_size_t sent_new, results_ok, results_retryable, results_lost, results_failed,
        results_other, reconnects;
    atomic_bool stop_generating;
    atomic_bool stop;

    char first_problem[320];  /* first result other than OK or CONNECTION_LOST, with message */
    char error[320];          /* a failure of the generator itself */

    pthread_t thread;
    bool running;
    void *log;                /* FILE * of events.tsv */
    size_t *resend;           /* ring of event indices waiting to be sent again */
    size_t resend_head, resend_count;
    int64_t *resend_after;    /* per event: earliest time for the next attempt */
};

/*
 * Reads the input (or prepares generated events) and computes the expected partitions.
 * Returns 0, or -1 with a message in err.
 */
int chaos_load_prepare(struct chaos_load *l, const struct chaos_scenario *s, const char *dir,
                       char *err, size_t errsize);

/* Starts the load thread against the agent socket; the load's clock starts now. */
int chaos_load_start(struct chaos_load *l, const char *socket_path, char *err, size_t errsize);

/*
 * Stops generating new events, waits up to the scenario's drain_timeout for every event to
 * get a final result, then stops the thread.
 */
void chaos_load_finish(struct chaos_load *l);

/* Returns the key of event i: a pointer into the input, or generated text in scratch. */
void chaos_load_event_key(const struct chaos_load *l, size_t i, const char **key, size_t *len,
                          char *scratch, size_t scratchsize);

/* Returns the value of event i, like chaos_load_event_key. */
void chaos_load_event_value(const struct chaos_load *l, size_t i, const char **value,
                            size_t *len, char *scratch, size_t scratchsize);

void chaos_load_free(struct chaos_load *l);

#endif
