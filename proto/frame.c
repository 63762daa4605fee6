/*
 * Framing of the ingest protocol: length prefix, size cap, protobuf packing.
 */
#include "frame.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "mem.h"

#define READ_CHUNK 65536
/* An empty buffer larger than this is freed, so one large frame does not pin its memory. */
#define IDLE_KEEP_BYTES ((size_t)1 << 20)

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

/*
 * Makes room for at least `want` more bytes, compacting before growing. Payloads returned by
 * tl_frame_reader_next are no longer in use here, so an empty oversized buffer can go.
 */
static void reader_make_room(struct tl_frame_reader *r, size_t want)
{
    if (r->len == r->start && r->cap > IDLE_KEEP_BYTES) {
        free(r->buf);
        r->buf = NULL;
        r->cap = r->start = r->len = 0;
    }
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
    if (avail == 0 && r->cap > IDLE_KEEP_BYTES) {
        /* The previous payload is no longer in use, and the connection may now sit idle. */
        free(r->buf);
        r->buf = NULL;
        r->cap = r->start = r->len = 0;
    }
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

static void *arena_alloc(void *allocator_data, size_t size)
{
    return tl_arena_alloc(allocator_data, size);
}

/* Arena memory is released all at once by tl_arena_reset. */
static void arena_free(void *allocator_data, void *pointer)
{
    (void)allocator_data;
    (void)pointer;
}

static ProtobufCAllocator arena_allocator(struct tl_arena *arena)
{
    return (ProtobufCAllocator){
        .alloc = arena_alloc, .free = arena_free, .allocator_data = arena};
}

int tl_frame_decode_request(const uint8_t *payload, size_t len, Twinlane__ProduceRequest **out,
                            char *err, size_t errsize)
{
    return tl_frame_decode_request_in_arena(payload, len, NULL, out, err, errsize);
}

int tl_frame_decode_request_in_arena(const uint8_t *payload, size_t len, struct tl_arena *arena,
                                     Twinlane__ProduceRequest **out, char *err, size_t errsize)
{
    ProtobufCAllocator allocator = arena_allocator(arena);
    *out = twinlane__produce_request__unpack(arena ? &allocator : NULL, len, payload);
    if (!*out) {
        /* protobuf-c freed the partial message through the allocator, a no-op for an arena. */
        if (arena)
            tl_arena_reset(arena);
        return tl_error(err, errsize, TL_EPROTO,
                        "frame of %zu bytes is not a valid ProduceRequest protobuf message", len);
    }
    return 0;
}

void tl_frame_free_request(Twinlane__ProduceRequest *msg, struct tl_arena *arena)
{
    if (!arena) {
        twinlane__produce_request__free_unpacked(msg, NULL);
        return;
    }
    ProtobufCAllocator allocator = arena_allocator(arena);
    twinlane__produce_request__free_unpacked(msg, &allocator);
    tl_arena_reset(arena);
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

/* Reads a protobuf varint at *p; returns false when it runs past end or over 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *value)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t byte = *(*p)++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *value = v;
            return true;
        }
    }
    return false;
}

/*
 * Calls on_field for each field of the message in [p, end): field number, wire type, and for
 * length-delimited fields the bytes. Returns false on malformed input or when on_field does.
 */
static bool walk_fields(const uint8_t *p, const uint8_t *end,
                        bool (*on_field)(void *ctx, uint32_t field, int type, const uint8_t *data,
                                         size_t len, uint64_t value),
                        void *ctx)
{
    while (p < end) {
        uint64_t key, value = 0;
        if (!read_varint(&p, end, &key))
            return false;
        int type = (int)(key & 7);
        uint32_t field = (uint32_t)(key >> 3);
        const uint8_t *data = NULL;
        size_t len = 0;
        switch (type) {
        case 0:
            if (!read_varint(&p, end, &value))
                return false;
            break;
        case 1:
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 2:
            if (!read_varint(&p, end, &value) || value > (uint64_t)(end - p))
                return false;
            data = p;
            len = (size_t)value;
            p += len;
            break;
        case 5:
            if (end - p < 4)
                return false;
            p += 4;
            break;
        default:
            return false; /* groups (3, 4) and unknown wire types are not in twinlane.proto */
        }
        if (!on_field(ctx, field, type, data, len, value))
            return false;
    }
    return true;
}

struct scan_state {
    size_t events;
    uint64_t batch_id;
    bool nul;              /* a NUL byte in a topic or header name */
    size_t nul_event;
    const char *nul_what;
};

static bool scan_header(void *ctx, uint32_t field, int type, const uint8_t *data, size_t len,
                        uint64_t value)
{
    (void)value;
    struct scan_state *st = ctx;
    if (field == 1 && type == 2 && memchr(data, 0, len)) {
        st->nul = true;
        st->nul_what = "a header name";
    }
    return true;
}

static bool scan_event(void *ctx, uint32_t field, int type, const uint8_t *data, size_t len,
                       uint64_t value)
{
    (void)value;
    struct scan_state *st = ctx;
    if (type != 2)
        return true;
    if (field == 1 && memchr(data, 0, len)) {
        st->nul = true;
        st->nul_what = "the topic";
    }
    if (field == 4)
        return walk_fields(data, data + len, scan_header, st);
    return true;
}

static bool scan_request(void *ctx, uint32_t field, int type, const uint8_t *data, size_t len,
                         uint64_t value)
{
    struct scan_state *st = ctx;
    if (field == 1 && type == 0)
        st->batch_id = value;
    if (field != 2 || type != 2)
        return true;
    bool was_nul = st->nul;
    if (!walk_fields(data, data + len, scan_event, st))
        return false;
    if (st->nul && !was_nul)
        st->nul_event = st->events;
    st->events++;
    return true;
}

int tl_frame_scan_request(const uint8_t *payload, size_t len, size_t *events, uint64_t *batch_id,
                          char *err, size_t errsize)
{
    struct scan_state st = {0};

    *events = 0;
    *batch_id = 0;
    if (!walk_fields(payload, payload + len, scan_request, &st))
        return tl_error(err, errsize, TL_EPROTO,
                        "frame of %zu bytes is not a valid ProduceRequest protobuf message", len);
    *events = st.events;
    *batch_id = st.batch_id;
    if (st.nul)
        return tl_error(err, errsize, TL_EPROTO, "event %zu: %s contains a NUL byte",
                        st.nul_event, st.nul_what);
    return 0;
}
