/*
 * Framing of the ingest protocol, shared by the agent and the client library.
 *
 * On the wire a frame is a 4-byte unsigned big-endian payload length followed by the payload:
 * one packed protobuf message from twinlane.proto (ProduceRequest towards the agent,
 * ProduceResponse back). A declared length above the reader's limit is rejected before any
 * buffer grows to hold it, so a hostile peer cannot make either side allocate more than
 * max_frame_bytes + 4 per connection.
 *
 * A reader or buffer belongs to one connection and is used by one thread at a time.
 */
#ifndef TL_FRAME_H
#define TL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "twinlane.pb-c.h"

#define TL_FRAME_HEADER_BYTES 4

struct tl_arena;

/* Incremental frame reader over a byte stream. */
struct tl_frame_reader {
    uint8_t *buf;
    size_t start;  /* first unconsumed byte */
    size_t len;    /* end of buffered bytes */
    size_t cap;
    size_t max_frame_bytes;
};

/* Growable byte buffer for outgoing frames. */
struct tl_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

void tl_frame_reader_init(struct tl_frame_reader *r, size_t max_frame_bytes);
void tl_frame_reader_free(struct tl_frame_reader *r);

/*
 * Reads what is available from a non-blocking fd into the reader. Returns the byte count
 * read (> 0), TL_EAGAIN when nothing was available, TL_ECLOSED at end of stream, or TL_EIO
 * with errno set.
 */
int tl_frame_reader_fill(struct tl_frame_reader *r, int fd);

/* Appends bytes held in memory (tests, fuzzers, and the client library). */
void tl_frame_reader_feed(struct tl_frame_reader *r, const void *data, size_t len);

/*
 * Takes the next complete frame. Returns 1 and points payload and len at it (valid until the next
 * call on this reader), 0 when more bytes are needed, or TL_ETOOBIG when the declared length
 * exceeds max_frame_bytes (err names both numbers). After TL_ETOOBIG the stream cannot be
 * resynchronised; the caller answers with an error and closes the connection.
 */
int tl_frame_reader_next(struct tl_frame_reader *r, const uint8_t **payload, size_t *len,
                         char *err, size_t errsize);

/* Bytes buffered but not yet returned as frames. */
size_t tl_frame_reader_pending(const struct tl_frame_reader *r);

void tl_buf_init(struct tl_buf *b);
void tl_buf_free(struct tl_buf *b);
void tl_buf_reserve(struct tl_buf *b, size_t extra);
/* Drops the first n bytes (already written to a socket). */
void tl_buf_consume(struct tl_buf *b, size_t n);

/* Appends one frame holding the packed message. */
void tl_frame_append(struct tl_buf *out, const ProtobufCMessage *msg);

/*
 * Unpacks a ProduceRequest payload. Returns 0 and a message the caller frees with
 * twinlane__produce_request__free_unpacked(msg, NULL), or TL_EPROTO with a reason in err.
 */
int tl_frame_decode_request(const uint8_t *payload, size_t len, Twinlane__ProduceRequest **out,
                            char *err, size_t errsize);

/*
 * Unpacks a ProduceRequest payload like tl_frame_decode_request, allocating the message from
 * arena, or with malloc when arena is NULL. The caller frees the message with
 * tl_frame_free_request(msg, arena). The arena must contain nothing else, because freeing the
 * message resets it. On TL_EPROTO the arena is already reset. The arena keeps its memory up to
 * its keep_max, so decoding requests of similar size one after another allocates nothing new.
 */
int tl_frame_decode_request_in_arena(const uint8_t *payload, size_t len, struct tl_arena *arena,
                                     Twinlane__ProduceRequest **out, char *err, size_t errsize);

/* Frees a request from tl_frame_decode_request_in_arena and resets arena (when not NULL). */
void tl_frame_free_request(Twinlane__ProduceRequest *msg, struct tl_arena *arena);

/*
 * Walks a ProduceRequest payload without allocating: counts its events, finds its batch_id
 * (0 if absent), and checks that no topic or header name contains a NUL byte, which C strings
 * would silently cut short. Returns 0, or TL_EPROTO with err naming the event. Lets a receiver
 * refuse a request with too many events before unpacking it, since unpacking allocates about
 * 100 bytes per event however small the event is on the wire.
 */
int tl_frame_scan_request(const uint8_t *payload, size_t len, size_t *events, uint64_t *batch_id,
                          char *err, size_t errsize);

/* Unpacks a ProduceResponse payload; same contract as tl_frame_decode_request. */
int tl_frame_decode_response(const uint8_t *payload, size_t len, Twinlane__ProduceResponse **out,
                             char *err, size_t errsize);

#endif
