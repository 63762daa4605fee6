/*
 * twinlane client library: send events to a local twinlane-agent, which writes each event to
 * two regional Kafka clusters before it acknowledges it.
 *
 * A struct tl_client owns one connection (Unix socket or TCP) and one thread may use it at a
 * time. tl_client_send encodes a batch of events as one request frame and queues it. It
 * writes as much as the socket takes without blocking, so many batches are in flight before
 * the first response arrives. The agent sends one response per batch, possibly out of order,
 * with one result per event. tl_client_poll reads those responses and calls the on_result
 * callback from the options once per event.
 *
 * Delivery guarantee: every event handed to a tl_client_send call that returned 0 gets
 * exactly one on_result call, even when the connection fails. The events still in flight
 * then get TL_CLIENT_CONNECTION_LOST, from tl_client_poll, tl_client_flush or
 * tl_client_close. Events of a tl_client_send call that returned an error were not queued
 * and get no callback.
 *
 * Minimal use (error handling shortened):
 *
 *   static void on_result(void *ctx, const struct tl_client_result *r)
 *   {
 *       if (r->status != TL_CLIENT_OK)
 *           fprintf(stderr, "%s: %s\n", tl_client_status_name(r->status), r->message);
 *   }
 *
 *   struct tl_client_options opts = {.on_result = on_result};
 *   struct tl_client *c;
 *   char err[256];
 *   if (tl_client_connect("unix:/run/twinlane/agent.sock", &opts, &c, err, sizeof err) < 0)
 *       die(err);
 *   struct tl_client_event ev = {.topic = "events", .value = "hello", .value_len = 5};
 *   if (tl_client_send(c, &ev, 1, NULL, err, sizeof err) < 0)
 *       die(err);
 *   tl_client_flush(c, 10000);
 *   tl_client_close(c);
 *
 * This header depends only on the C standard library.
 */
#ifndef TWINLANE_CLIENT_H
#define TWINLANE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Outcome of one event. Values 0 to 5 are the agent's wire Status values. */
enum tl_client_status {
    TL_CLIENT_OK = 0,              /* acknowledged: both regions stored it, or see spooled */
    TL_CLIENT_RETRYABLE = 1,       /* the agent could not take the event now; send it again */
    TL_CLIENT_UNKNOWN_TOPIC = 2,   /* the agent is not configured for the topic */
    TL_CLIENT_TOO_LARGE = 3,       /* the event exceeds the agent's maximum event size */
    TL_CLIENT_INVALID = 4,         /* malformed event, for example a bad header name */
    TL_CLIENT_FAILED = 5,          /* a region failed to store the event; see the message */
    TL_CLIENT_CONNECTION_LOST = 6, /* the connection closed before the response came */
};

/*
 * Error codes returned by the functions below: 0 for success, otherwise one of these. The
 * values are those of the agent's own error codes, so tools can print either with one table.
 */
enum tl_client_error {
    TL_CLIENT_EINVAL = -1,    /* invalid argument or address */
    TL_CLIENT_EIO = -2,       /* a system call failed; the message has the errno text */
    TL_CLIENT_ENOTFOUND = -3, /* the host name of a TCP address did not resolve */
    TL_CLIENT_ETIMEDOUT = -5, /* a bounded wait ran out */
    TL_CLIENT_ETOOBIG = -6,   /* a request or response frame exceeds its size limit */
    TL_CLIENT_ECLOSED = -8,   /* the connection is closed (see tl_client_last_error) */
    TL_CLIENT_EPROTO = -9,    /* the agent broke the wire protocol */
};

struct tl_client;

/* One Kafka record header. A NULL value with value_len 0 is sent as an empty value. */
struct tl_client_header {
    const char *name;
    const void *value;
    size_t value_len;
};

/*
 * One event to produce. topic is required. Without has_key the agent spreads events over
 * partitions. With has_key, Kafka's murmur2 partitioner picks the partition from the key,
 * even when key_len is 0. opaque is returned untouched in the event's result.
 */
struct tl_client_event {
    const char *topic;
    const void *key;
    size_t key_len;
    bool has_key;
    const void *value;
    size_t value_len;
    const struct tl_client_header *headers;
    size_t header_count;
    void *opaque;
};

/*
 * Result of one event, valid only during the on_result call: copy what must outlive it.
 */
struct tl_client_result {
    int status;                 /* enum tl_client_status */
    uint64_t seq;               /* the agent's sequence number (twinlane-id header); 0 if none */
    int32_t partition;          /* partition written in every region; -1 when not written */
    const char *message;        /* reason when status is not OK; NULL when the agent sent none */
    const char *const *regions; /* names of the regions that hold the event */
    size_t region_count;
    void *opaque;               /* the event's opaque pointer */
    uint64_t batch_id;          /* the batch id that tl_client_send returned for the event */
    size_t index;               /* position of the event in its tl_client_send call */
    /*
     * True when the agent acknowledged the event (status OK) from its write-ahead log alone
     * because no region was available (agent.when_no_region = "spool"). The regions receive
     * the event when they return. Until then it exists only in the agent's write-ahead log.
     */
    bool spooled;
};

/*
 * Connection options. Zero-initialise the struct and set what you need: every field left at
 * 0 or NULL takes the default named in its comment.
 */
struct tl_client_options {
    /*
     * Called once per event from tl_client_poll, tl_client_flush or tl_client_close, never
     * from tl_client_send. NULL drops results. The callback must not call tl_client_send,
     * tl_client_poll, tl_client_flush or tl_client_close on the same client, and
     * tl_client_send returns TL_CLIENT_EINVAL when it does. To send an event again, store it
     * and send it after the poll call returns.
     */
    void (*on_result)(void *ctx, const struct tl_client_result *result);
    void *ctx; /* first argument of on_result */
    /* Bytes of encoded requests the client queues before tl_client_send waits. 16 MiB. */
    size_t max_queued_bytes;
    /*
     * Largest request frame tl_client_send encodes, in bytes. 4 MiB, the agent's default
     * listen.max_frame_bytes. The agent closes a connection that sends a larger frame, so keep
     * this at or below the agent's setting.
     */
    size_t max_request_bytes;
    /* Largest response frame accepted, in bytes, checked before allocation. 64 MiB. */
    size_t max_response_bytes;
    /* Time limit of tl_client_connect for TCP addresses, in milliseconds. 5000. */
    int connect_timeout_ms;
    /* Time limit of tl_client_send when it waits for queue room, in milliseconds. 0: none. */
    int send_timeout_ms;
};

/*
 * Connects to the agent at address:
 *
 *   "unix:PATH" or "/path"           Unix stream socket
 *   "dir/agent.sock", "./agent.sock" Unix stream socket relative to the working directory,
 *                                    because an address with a slash and without the
 *                                    "tcp:" prefix is a path
 *   "tcp:host:port" or "host:port"   TCP; host is a name or an IPv4 address
 *   "[::1]:port", "tcp:[::1]:port"   TCP to an IPv6 address, which needs the brackets
 *
 * opts may be NULL for all defaults; the client copies it. Returns 0 and a client in *out
 * that the caller releases with tl_client_close. On failure returns TL_CLIENT_EINVAL (bad
 * address or option, found before any connection attempt), TL_CLIENT_ENOTFOUND,
 * TL_CLIENT_EIO (refused, missing socket file, permission) or TL_CLIENT_ETIMEDOUT, writes a
 * message into err and leaves *out unchanged.
 */
int tl_client_connect(const char *address, const struct tl_client_options *opts,
                      struct tl_client **out, char *err, size_t errsize);

/*
 * Encodes count events as one request, queues it and writes what the socket takes without
 * blocking. The client copies the event data, so the caller may free it when the call returns.
 * When the queue contains more than max_queued_bytes, the call first waits in poll(2), writing
 * queued requests and reading responses, whose results it keeps for the next tl_client_poll.
 *
 * Returns 0 and the request's batch id in *batch_id (when non-NULL). On error nothing is
 * queued, no callback follows for these events, and err contains a message:
 *   TL_CLIENT_EINVAL    count is 0, an event has no topic or a header has no name, or the call
 *                       came from inside on_result
 *   TL_CLIENT_ETOOBIG   the request exceeds max_request_bytes; send fewer or smaller events
 *   TL_CLIENT_ETIMEDOUT the wait for queue room exceeded send_timeout_ms
 *   TL_CLIENT_ECLOSED   the connection is closed
 */
int tl_client_send(struct tl_client *c, const struct tl_client_event *events, size_t count,
                   uint64_t *batch_id, char *err, size_t errsize);

/*
 * Delivers kept results, writes queued requests and reads responses, waiting up to timeout_ms
 * (0: do not wait, -1: no limit) until at least one result is delivered. Returns at once when
 * no event is in flight. Calls on_result once per finished event.
 *
 * Returns the number of results delivered (0 on timeout), or TL_CLIENT_ECLOSED once the
 * connection has closed and every in-flight event got its result. When the connection fails,
 * the call that notices it delivers TL_CLIENT_CONNECTION_LOST for every event in flight and
 * returns their number. tl_client_last_error then describes the failure.
 */
int tl_client_poll(struct tl_client *c, int timeout_ms);

/*
 * Polls until no event is in flight. Returns 0 when none is left, TL_CLIENT_ETIMEDOUT when
 * events are still in flight after timeout_ms (-1: no limit), or TL_CLIENT_ECLOSED when the
 * connection was already closed with nothing left to deliver.
 */
int tl_client_flush(struct tl_client *c, int timeout_ms);

/* Returns the number of events sent whose result has not been delivered yet. */
size_t tl_client_inflight(const struct tl_client *c);

/*
 * Returns a message describing the last failure of the connection (or "" when none). The
 * string belongs to the client and stays valid until the next call on it.
 */
const char *tl_client_last_error(const struct tl_client *c);

/*
 * Closes the connection without waiting for responses. Events still in flight get
 * TL_CLIENT_CONNECTION_LOST, after any results already read. Call tl_client_flush first to
 * wait for them. Frees the client; c may be NULL.
 */
void tl_client_close(struct tl_client *c);

/* Returns the upper-case name of a status ("OK", "UNKNOWN_TOPIC", ...) or "UNKNOWN". */
const char *tl_client_status_name(int status);

/* Returns a static, lower-case description of an error code. */
const char *tl_client_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
