/*
 * Framing of the ingest protocol: length prefix, size cap, protobuf packing.
 */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "mem.h"

#define READ_CHUNK 65536

void tl_frame_reader_init(struct tl_frame_reader *r, size_t max_frame_bytes)
{
    *r = (struct tl_frame_reader){.max_frame_bytes = max_frame_bytes};
}

void tl_frame_reader_free(struct tl_frame_reader *r)
{
    free(r->buf);
    *r = (struct tl_frame_reader){0};
}

size_t tl_frame_reader_pending(const struct tl_frame_reader *r)
{
    return r->len - r->start;
}

/* Makes room for at least `want` more bytes, compacting before growing. */
static void reader_make_room(struct tl_frame_reader *r, size_t want)
{
    if (r->start > 0 && r->cap - r->len < want) {
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
    }
    if (r->cap - r->len >= want)
        return;
    size_t cap = r->cap ? r->cap : READ_CHUNK;
    while (cap - r->len < want)
        cap *= 2;
    r->buf = tl_xrealloc(r->buf, cap);
    r->cap = cap;
}

int tl_frame_reader_fill(struct tl_frame_reader *r, int fd)
{
    /*
     * Read at most what the largest legal frame still needs, so the buffer stays within
     * max_frame_bytes + header + one chunk however fast the peer writes.
     */
    size_t limit = r->max_frame_bytes + TL_FRAME_HEADER_BYTES + READ_CHUNK;
    size_t pending = r->len - r->start;
    if (pending >= limit)
        return TL_EAGAIN;
    size_t want = limit - pending < READ_CHUNK ? limit - pending : READ_CHUNK;
    reader_make_room(r, want);

    ssize_t n = read(fd, r->buf + r->len, want);
    if (n > 0) {
        r->len += (size_t)n;
        return (int)n;
    }
    if (n == 0)
        return TL_ECLOSED;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return TL_EAGAIN;
    return TL_EIO;
}

void tl_frame_reader_feed(struct tl_frame_reader *r, const void *data, size_t len)
{
    /* A new reader has no buffer, and NULL + 0 or memcpy to NULL is undefined behaviour. */
    if (len == 0)
        return;
    reader_make_room(r, len);
    memcpy(r->buf + r->len, data, len);
    r->len += len;
}

int tl_frame_reader_next(struct tl_frame_reader *r, const uint8_t **payload, size_t *len,
                         char *err, size_t errsize)
{
    size_t avail = r->len - r->start;
    if (avail < TL_FRAME_HEADER_BYTES)
        return 0;

    const uint8_t *p = r->buf + r->start;
    uint32_t declared = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (declared > r->max_frame_bytes)
        return tl_error(err, errsize, TL_ETOOBIG,
                        "frame of %u bytes exceeds the limit of %zu bytes (listen.max_frame_bytes)",
                        declared, r->max_frame_bytes);
    if (avail - TL_FRAME_HEADER_BYTES < declared)
        return 0;

    *payload = p + TL_FRAME_HEADER_BYTES;
    *len = declared;
    r->start += TL_FRAME_HEADER_BYTES + declared;
    if (r->start == r->len)
        r->start = r->len = 0;
    return 1;
}

void tl_buf_init(struct tl_buf *b)
{
    *b = (struct tl_buf){0};
}

void tl_buf_free(struct tl_buf *b)
{
    free(b->data);
    *b = (struct tl_buf){0};
}

void tl_buf_reserve(struct tl_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    b->data = tl_xrealloc(b->data, cap);
    b->cap = cap;
}

void tl_buf_consume(struct tl_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void tl_frame_append(struct tl_buf *out, const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    if (size > UINT32_MAX)
        tl_panic("outgoing frame of %zu bytes does not fit the 4-byte length prefix", size);

    tl_buf_reserve(out, TL_FRAME_HEADER_BYTES + size);
    uint8_t *p = out->data + out->len;
    p[0] = (uint8_t)(size >> 24);
    p[1] = (uint8_t)(size >> 16);
    p[2] = (uint8_t)(size >> 8);
    p[3] = (uint8_t)size;
    protobuf_c_message_pack(msg, p + TL_FRAME_HEADER_BYTES);
    out->len += TL_FRAME_HEADER_BYTES + size;
}

int tl_frame_decode_request(const uint8_t *payload, size_t len, Twinlane__ProduceRequest **out,
                            char *err, size_t errsize)
{
    *out = twinlane__produce_request__unpack(NULL, len, payload);
    if (!*out)
        return tl_error(err, errsize, TL_EPROTO,
                        "frame of %zu bytes is not a valid ProduceRequest protobuf message", len);
    return 0;
}

int tl_frame_decode_response(const uint8_t *payload, size_t len, Twinlane__ProduceResponse **out,
                             char *err, size_t errsize)
{
    *out = twinlane__produce_response__unpack(NULL, len, payload);
    if (!*out)
        return tl_error(err, errsize, TL_EPROTO,
                        "frame of %zu bytes is not a valid ProduceResponse protobuf message", len);
    return 0;
}
