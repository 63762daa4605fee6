/*
 * libFuzzer target for the ingest framing (proto/frame.c) and the generated protobuf-c
 * decoders, which is the code that reads bytes from producers before anything else does.
 *
 * Each input is treated as a byte stream from one connection and read three ways: fed whole,
 * fed in two parts at a position derived from the input, and fed in chunks of 1 to 16 bytes.
 * All three must yield the same frames and end in the same state, because a peer controls how
 * its bytes are split across reads. Every frame is decoded as a ProduceRequest and as a
 * ProduceResponse. A decoded request is framed again with tl_frame_append and decoded again,
 * and the copy must match in batch_id, events and encoded bytes. A mismatch calls abort(), so
 * libFuzzer records the input as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"

/* Small, so that inputs of a few kilobytes reach the size check on both sides. */
#define MAX_FRAME_BYTES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one way of feeding the stream produced. */
struct stream_result {
    size_t frames;
    uint64_t digest;    /* FNV-1a over every frame's length and payload, in order */
    int last_status;    /* 0 (waiting for more bytes) or TL_ETOOBIG */
    size_t pending;     /* bytes left in the reader when last_status is 0 */
};

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_frame: %s\n", what);
    abort();
}

static uint64_t fnv1a(uint64_t hash, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        hash ^= p[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

static bool bytes_equal(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Checks that two decoded requests carry the same batch and events. */
static void compare_requests(const Twinlane__ProduceRequest *a,
                             const Twinlane__ProduceRequest *b)
{
    if (a->batch_id != b->batch_id)
        fail("batch_id changed in the round trip");
    if (a->n_events != b->n_events)
        fail("event count changed in the round trip");
    for (size_t i = 0; i < a->n_events; i++) {
        const Twinlane__Event *x = a->events[i];
        const Twinlane__Event *y = b->events[i];
        if (strcmp(x->topic, y->topic) != 0)
            fail("event topic changed in the round trip");
        if (x->has_key != y->has_key || (x->has_key && !bytes_equal(&x->key, &y->key)))
            fail("event key changed in the round trip");
        if (x->has_value != y->has_value || (x->has_value && !bytes_equal(&x->value, &y->value)))
            fail("event value changed in the round trip");
        if (x->n_headers != y->n_headers)
            fail("header count changed in the round trip");
        for (size_t h = 0; h < x->n_headers; h++) {
            if (strcmp(x->headers[h]->name, y->headers[h]->name) != 0)
                fail("header name changed in the round trip");
        }
    }
}

/* Frames req again, reads the frame back with a fresh reader, and decodes it. */
static Twinlane__ProduceRequest *reframe(const Twinlane__ProduceRequest *req, struct tl_buf *out)
{
    struct tl_frame_reader reader;
    const uint8_t *payload;
    size_t len;
    char err[256];
    Twinlane__ProduceRequest *copy = NULL;

    tl_buf_init(out);
    tl_frame_append(out, &req->base);
    /* A re-encoded request may be larger than its input (defaults written out), so no cap. */
    tl_frame_reader_init(&reader, out->len);
    tl_frame_reader_feed(&reader, out->data, out->len);
    if (tl_frame_reader_next(&reader, &payload, &len, err, sizeof(err)) != 1)
        fail("tl_frame_append wrote a frame that the reader does not return whole");
    if (len != out->len - TL_FRAME_HEADER_BYTES)
        fail("frame length changed between tl_frame_append and the reader");
    if (tl_frame_decode_request(payload, len, &copy, err, sizeof(err)) != 0)
        fail("a re-encoded request does not decode");
    if (tl_frame_reader_pending(&reader) != 0)
        fail("reader kept bytes after the only frame");
    tl_frame_reader_free(&reader);
    return copy;
}

/* Decodes one frame both ways and round-trips a valid request. */
static void check_frame(const uint8_t *payload, size_t len)
{
    char err[256];
    Twinlane__ProduceRequest *req = NULL;
    Twinlane__ProduceResponse *resp = NULL;

    err[0] = '\0';
    if (tl_frame_decode_response(payload, len, &resp, err, sizeof(err)) == 0)
        twinlane__produce_response__free_unpacked(resp, NULL);
    else if (err[0] == '\0')
        fail("tl_frame_decode_response failed without a reason");

    err[0] = '\0';
    if (tl_frame_decode_request(payload, len, &req, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            fail("tl_frame_decode_request failed without a reason");
        return;
    }

    struct tl_buf first;
    struct tl_buf second;
    Twinlane__ProduceRequest *copy = reframe(req, &first);
    compare_requests(req, copy);
    Twinlane__ProduceRequest *copy2 = reframe(copy, &second);
    compare_requests(copy, copy2);
    /* Unknown fields of the input are dropped, so only re-encodings must match byte for byte. */
    if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0)
        fail("encoding a decoded request is not stable");

    twinlane__produce_request__free_unpacked(copy2, NULL);
    twinlane__produce_request__free_unpacked(copy, NULL);
    twinlane__produce_request__free_unpacked(req, NULL);
    tl_buf_free(&second);
    tl_buf_free(&first);
}

/* Takes every complete frame. Returns false once the reader reported TL_ETOOBIG. */
static bool drain(struct tl_frame_reader *reader, struct stream_result *result, bool decode)
{
    const uint8_t *payload;
    size_t len;
    char err[256];

    for (;;) {
        err[0] = '\0';
        int rv = tl_frame_reader_next(reader, &payload, &len, err, sizeof(err));
        if (rv == 0)
            return true;
        if (rv == TL_ETOOBIG) {
            if (err[0] == '\0')
                fail("TL_ETOOBIG without a reason");
            result->last_status = TL_ETOOBIG;
            return false;
        }
        if (rv != 1)
            fail("tl_frame_reader_next returned an undocumented value");
        if (len > MAX_FRAME_BYTES)
            fail("reader returned a frame above max_frame_bytes");

        uint64_t len64 = len;
        result->digest = fnv1a(result->digest, &len64, sizeof(len64));
        result->digest = fnv1a(result->digest, payload, len);
        result->frames++;
        if (decode)
            check_frame(payload, len);
    }
}

/*
 * Feeds the input as one piece of first_piece bytes and then pieces of later_pieces bytes, and
 * takes the frames after each piece. Decodes the frames when decode is set.
 */
static struct stream_result read_stream(const uint8_t *data, size_t size, size_t first_piece,
                                        size_t later_pieces, bool decode)
{
    struct tl_frame_reader reader;
    struct stream_result result = {.digest = 0xcbf29ce484222325ULL};
    size_t offset = 0;
    size_t piece = first_piece;

    tl_frame_reader_init(&reader, MAX_FRAME_BYTES);
    while (offset < size) {
        size_t n = piece < size - offset ? piece : size - offset;
        tl_frame_reader_feed(&reader, data + offset, n);
        offset += n;
        piece = later_pieces;
        if (!drain(&reader, &result, decode))
            break;
    }
    if (size == 0 && !drain(&reader, &result, decode))
        fail("an empty stream produced TL_ETOOBIG");
    if (result.last_status == 0)
        result.pending = tl_frame_reader_pending(&reader);
    tl_frame_reader_free(&reader);
    return result;
}

static void compare_results(const struct stream_result *a, const struct stream_result *b,
                            const char *how)
{
    if (a->frames != b->frames || a->digest != b->digest)
        fail(how);
    if (a->last_status != b->last_status || a->pending != b->pending)
        fail(how);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct stream_result whole = read_stream(data, size, size, size, true);

    /* Split where the input's last byte and length point, so the fuzzer steers the split. */
    size_t split = size == 0 ? 0 : ((size_t)data[size - 1] * 131 + size) % (size + 1);
    struct stream_result two = read_stream(data, size, split, size, false);
    compare_results(&whole, &two, "splitting the stream in two changed the frames");

    size_t chunk = size == 0 ? 1 : (size_t)data[0] % 16 + 1;
    struct stream_result chunks = read_stream(data, size, chunk, chunk, false);
    compare_results(&whole, &chunks, "feeding the stream in small chunks changed the frames");

    if (whole.last_status == 0 && whole.pending >= TL_FRAME_HEADER_BYTES + MAX_FRAME_BYTES)
        fail("reader holds a whole frame's bytes but returned no frame");
    return 0;
}
