/*
 * Frame codec tests: length prefix, size cap before allocation, partial and hostile input.
 */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>

#include "error.h"
#include "frame.h"
#include "mem.h"

/* Appends a ProduceRequest with `count` events "topic"/"key-i"/"value-i" to out. */
static void append_request(struct tl_buf *out, uint64_t batch_id, size_t count)
{
    Twinlane__ProduceRequest req = TWINLANE__PRODUCE_REQUEST__INIT;
    Twinlane__Event *events = calloc(count, sizeof(*events));
    Twinlane__Event **ptrs = calloc(count, sizeof(*ptrs));
    char (*keys)[32] = calloc(count, sizeof(*keys));

    for (size_t i = 0; i < count; i++) {
        twinlane__event__init(&events[i]);
        events[i].topic = "topic";
        snprintf(keys[i], sizeof(keys[i]), "key-%zu", i);
        events[i].has_key = true;
        events[i].key.data = (uint8_t *)keys[i];
        events[i].key.len = strlen(keys[i]);
        events[i].has_value = true;
        events[i].value.data = (uint8_t *)"value";
        events[i].value.len = 5;
        ptrs[i] = &events[i];
    }
    req.batch_id = batch_id;
    req.n_events = count;
    req.events = ptrs;
    tl_frame_append(out, &req.base);
    free(keys);
    free(ptrs);
    free(events);
}

static void request_round_trip(void **state)
{
    (void)state;
    struct tl_buf buf;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;
    Twinlane__ProduceRequest *req;

    tl_buf_init(&buf);
    append_request(&buf, 42, 3);
    tl_frame_reader_init(&r, 1 << 20);
    tl_frame_reader_feed(&r, buf.data, buf.len);

    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 1);
    assert_int_equal(len, buf.len - TL_FRAME_HEADER_BYTES);
    assert_int_equal(tl_frame_decode_request(payload, len, &req, NULL, 0), 0);
    assert_int_equal(req->batch_id, 42);
    assert_int_equal(req->n_events, 3);
    assert_string_equal(req->events[2]->topic, "topic");
    assert_memory_equal(req->events[2]->key.data, "key-2", 5);
    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 0);

    twinlane__produce_request__free_unpacked(req, NULL);
    tl_frame_reader_free(&r);
    tl_buf_free(&buf);
}

static void byte_by_byte_feed_completes(void **state)
{
    (void)state;
    struct tl_buf buf;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;

    tl_buf_init(&buf);
    append_request(&buf, 7, 2);
    tl_frame_reader_init(&r, 1 << 20);
    for (size_t i = 0; i + 1 < buf.len; i++) {
        tl_frame_reader_feed(&r, buf.data + i, 1);
        assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 0);
    }
    tl_frame_reader_feed(&r, buf.data + buf.len - 1, 1);
    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 1);
    assert_int_equal(len, buf.len - TL_FRAME_HEADER_BYTES);

    tl_frame_reader_free(&r);
    tl_buf_free(&buf);
}

static void several_frames_one_feed(void **state)
{
    (void)state;
    struct tl_buf buf;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;
    Twinlane__ProduceRequest *req;

    tl_buf_init(&buf);
    for (uint64_t id = 1; id <= 5; id++)
        append_request(&buf, id, (size_t)id);
    tl_frame_reader_init(&r, 1 << 20);
    tl_frame_reader_feed(&r, buf.data, buf.len);

    for (uint64_t id = 1; id <= 5; id++) {
        assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 1);
        assert_int_equal(tl_frame_decode_request(payload, len, &req, NULL, 0), 0);
        assert_int_equal(req->batch_id, id);
        assert_int_equal(req->n_events, id);
        twinlane__produce_request__free_unpacked(req, NULL);
    }
    assert_int_equal(tl_frame_reader_pending(&r), 0);

    tl_frame_reader_free(&r);
    tl_buf_free(&buf);
}

/* Under UBSan (scripts/test.sh), a zero-length feed must not pass the NULL buffer to memcpy. */
static void empty_feed_on_new_reader(void **state)
{
    (void)state;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;

    tl_frame_reader_init(&r, 4096);
    tl_frame_reader_feed(&r, "", 0);
    assert_int_equal(tl_frame_reader_pending(&r), 0);
    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 0);

    static const uint8_t empty_frame[] = {0, 0, 0, 0};
    tl_frame_reader_feed(&r, NULL, 0);
    tl_frame_reader_feed(&r, empty_frame, sizeof(empty_frame));
    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 1);
    assert_int_equal(len, 0);
    tl_frame_reader_free(&r);
}

static void oversized_frame_rejected_before_allocation(void **state)
{
    (void)state;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;
    char err[256] = "";
    /* Declares 4 GiB - 1; only the header is ever sent. */
    const uint8_t header[4] = {0xff, 0xff, 0xff, 0xff};

    tl_frame_reader_init(&r, 1024);
    tl_frame_reader_feed(&r, header, sizeof(header));
    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, err, sizeof(err)), TL_ETOOBIG);
    assert_non_null(strstr(err, "4294967295"));
    assert_non_null(strstr(err, "1024"));
    assert_true(r.cap < 1u << 20);

    tl_frame_reader_free(&r);
}

static void frame_at_limit_accepted(void **state)
{
    (void)state;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;
    uint8_t frame[4 + 100] = {0, 0, 0, 100};

    tl_frame_reader_init(&r, 100);
    tl_frame_reader_feed(&r, frame, sizeof(frame));
    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 1);
    assert_int_equal(len, 100);

    tl_frame_reader_free(&r);
}

static void truncated_payload_waits(void **state)
{
    (void)state;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;
    const uint8_t partial[4 + 3] = {0, 0, 0, 10, 1, 2, 3};

    tl_frame_reader_init(&r, 1024);
    tl_frame_reader_feed(&r, partial, sizeof(partial));
    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 0);
    assert_int_equal(tl_frame_reader_pending(&r), sizeof(partial));

    tl_frame_reader_free(&r);
}

static void garbage_payload_not_decoded(void **state)
{
    (void)state;
    Twinlane__ProduceRequest *req = NULL;
    char err[256] = "";
    static const uint8_t cases[][8] = {
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* endless varint */
        {0x12, 0x7f, 0x0a, 0x01, 0x41},                   /* event longer than the payload */
        {0x0a, 0x02, 0x41, 0x42},                          /* wrong wire type for batch_id */
    };
    static const size_t lengths[] = {8, 5, 4};

    for (size_t i = 0; i < 3; i++) {
        err[0] = '\0';
        assert_int_equal(tl_frame_decode_request(cases[i], lengths[i], &req, err, sizeof(err)),
                         TL_EPROTO);
        assert_null(req);
        assert_non_null(strstr(err, "not a valid ProduceRequest"));
    }
}

static void empty_payload_missing_batch_id(void **state)
{
    (void)state;
    Twinlane__ProduceRequest *req = NULL;

    /* batch_id is required, so a zero-length message is not a request. */
    assert_int_equal(tl_frame_decode_request((const uint8_t *)"", 0, &req, NULL, 0), TL_EPROTO);
}

static void event_without_topic_rejected(void **state)
{
    (void)state;
    Twinlane__ProduceRequest *req = NULL;
    /* batch_id = 1, one event holding only a value (topic is required). */
    static const uint8_t payload[] = {0x08, 0x01, 0x12, 0x03, 0x1a, 0x01, 0x41};

    assert_int_equal(tl_frame_decode_request(payload, sizeof(payload), &req, NULL, 0), TL_EPROTO);
}

static void response_round_trip(void **state)
{
    (void)state;
    struct tl_buf buf;
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;
    Twinlane__ProduceResponse resp = TWINLANE__PRODUCE_RESPONSE__INIT;
    Twinlane__ProduceResponse *back;

    resp.batch_id = 9;
    resp.error = "frame too large";
    resp.has_error_status = true;
    resp.error_status = TWINLANE__STATUS__TOO_LARGE;
    tl_buf_init(&buf);
    tl_frame_append(&buf, &resp.base);
    tl_frame_reader_init(&r, 1024);
    tl_frame_reader_feed(&r, buf.data, buf.len);

    assert_int_equal(tl_frame_reader_next(&r, &payload, &len, NULL, 0), 1);
    assert_int_equal(tl_frame_decode_response(payload, len, &back, NULL, 0), 0);
    assert_int_equal(back->batch_id, 9);
    assert_string_equal(back->error, "frame too large");
    assert_int_equal(back->error_status, TWINLANE__STATUS__TOO_LARGE);

    twinlane__produce_response__free_unpacked(back, NULL);
    tl_frame_reader_free(&r);
    tl_buf_free(&buf);
}

static void fill_reports_eof_and_empty(void **state)
{
    (void)state;
    int fds[2];
    struct tl_frame_reader r;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    tl_frame_reader_init(&r, 1024);

    assert_int_equal(tl_frame_reader_fill(&r, fds[0]), TL_EAGAIN);
    assert_int_equal(write(fds[1], "abc", 3), 3);
    assert_int_equal(tl_frame_reader_fill(&r, fds[0]), 3);
    close(fds[1]);
    assert_int_equal(tl_frame_reader_fill(&r, fds[0]), TL_ECLOSED);

    close(fds[0]);
    tl_frame_reader_free(&r);
}

static void fill_stops_at_buffer_limit(void **state)
{
    (void)state;
    int fds[2];
    struct tl_frame_reader r;
    static uint8_t junk[65536];
    size_t limit = 1024 + TL_FRAME_HEADER_BYTES + 65536;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    int size = 1 << 20;
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    tl_frame_reader_init(&r, 1024);
    for (int i = 0; i < 4; i++)
        (void)!write(fds[1], junk, sizeof(junk));

    while (tl_frame_reader_fill(&r, fds[0]) > 0)
        ;
    /* A peer that floods without completing frames cannot grow the buffer past the limit. */
    assert_true(tl_frame_reader_pending(&r) <= limit);

    close(fds[0]);
    close(fds[1]);
    tl_frame_reader_free(&r);
}

/* The buffer a large frame needed is freed once the frame is consumed and the reader is empty. */
static void fill_frees_large_idle_buffer(void **state)
{
    (void)state;
    int fds[2];
    struct tl_frame_reader r;
    static uint8_t frame[TL_FRAME_HEADER_BYTES + (1 << 20)];
    uint32_t payload = 1 << 20;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    int size = 4 << 20;
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    tl_frame_reader_init(&r, 2 << 20);
    frame[0] = (uint8_t)(payload >> 24);
    frame[1] = (uint8_t)(payload >> 16);
    frame[2] = (uint8_t)(payload >> 8);
    frame[3] = (uint8_t)payload;

    size_t sent = 0;
    const uint8_t *p;
    size_t len;
    char err[256];
    int got = 0;
    while (got == 0) {
        if (sent < sizeof(frame)) {
            ssize_t n = write(fds[1], frame + sent, sizeof(frame) - sent);
            if (n > 0)
                sent += (size_t)n;
        }
        (void)tl_frame_reader_fill(&r, fds[0]);
        got = tl_frame_reader_next(&r, &p, &len, err, sizeof(err));
    }
    assert_int_equal(got, 1);
    assert_int_equal(len, payload);
    assert_true(r.cap >= payload);

    /* Asking for the next frame of an empty reader frees it, with no further read needed. */
    assert_int_equal(tl_frame_reader_next(&r, &p, &len, err, sizeof(err)), 0);
    assert_int_equal(r.cap, 0);

    assert_int_equal(write(fds[1], "abc", 3), 3);
    assert_int_equal(tl_frame_reader_fill(&r, fds[0]), 3);
    assert_true(r.cap <= 65536);

    close(fds[0]);
    close(fds[1]);
    tl_frame_reader_free(&r);
}

static void scan_counts_events_and_batch(void **state)
{
    (void)state;
    struct tl_buf buf;
    size_t events = 0;
    uint64_t batch_id = 0;

    tl_buf_init(&buf);
    append_request(&buf, 12345, 7);
    assert_int_equal(tl_frame_scan_request(buf.data + 4, buf.len - 4, &events, &batch_id, NULL,
                                           0), 0);
    assert_int_equal(events, 7);
    assert_int_equal(batch_id, 12345);
    tl_buf_free(&buf);
}

static void scan_rejects_nul_in_names(void **state)
{
    (void)state;
    char err[256] = "";
    size_t events;
    uint64_t batch_id;
    /* batch_id 5; event 0 topic "ok"; event 1 topic "a\0b" */
    static const uint8_t topic_nul[] = {0x08, 0x05, 0x12, 0x04, 0x0a, 0x02, 'o', 'k',
                                        0x12, 0x05, 0x0a, 0x03, 'a', 0x00, 'b'};
    /* batch_id 6; one event: topic "t", header name "x\0" */
    static const uint8_t header_nul[] = {0x08, 0x06, 0x12, 0x09, 0x0a, 0x01, 't',
                                         0x22, 0x04, 0x0a, 0x02, 'x', 0x00};

    assert_int_equal(tl_frame_scan_request(topic_nul, sizeof(topic_nul), &events, &batch_id, err,
                                           sizeof(err)), TL_EPROTO);
    assert_non_null(strstr(err, "event 1: the topic contains a NUL byte"));
    assert_int_equal(batch_id, 5);
    assert_int_equal(tl_frame_scan_request(header_nul, sizeof(header_nul), &events, &batch_id,
                                           err, sizeof(err)), TL_EPROTO);
    assert_non_null(strstr(err, "header name"));
}

static void scan_rejects_truncated_fields(void **state)
{
    (void)state;
    size_t events;
    uint64_t batch_id;
    static const uint8_t cases[][6] = {
        {0x12, 0x10, 0x0a},             /* event longer than the payload */
        {0x08, 0xff, 0xff},             /* unfinished varint */
        {0x0b, 0x00},                   /* group wire type */
        {0x12, 0x03, 0x0a, 0x05, 'a'},  /* topic longer than its event */
    };
    static const size_t lengths[] = {3, 3, 2, 5};

    for (size_t i = 0; i < 4; i++) {
        events = 7;
        batch_id = 0x7f00deadbeef;
        assert_int_equal(tl_frame_scan_request(cases[i], lengths[i], &events, &batch_id, NULL, 0),
                         TL_EPROTO);
        /* The error response carries batch_id, so it must never be left over from before. */
        assert_int_equal(batch_id, 0);
        assert_int_equal(events, 0);
    }
}

static bool is_max_aligned(const void *p)
{
    return (uintptr_t)p % alignof(max_align_t) == 0;
}

/* Byte i of test allocation `n` in the arena tests. */
static uint8_t pattern_byte(size_t n, size_t i)
{
    return (uint8_t)(n * 31 + i * 7 + 1);
}

/*
 * Makes `count` allocations of 0 to about 10 KB, so that some exceed the first block, fills each
 * with its pattern, and then checks every pattern, which fails if two allocations overlap.
 */
static void arena_fill_and_check(struct tl_arena *a, size_t count, uint8_t **ptrs, size_t *sizes)
{
    for (size_t n = 0; n < count; n++) {
        sizes[n] = n % 10 == 9 ? 5000 + n * 50 : n * 13 % 200;
        ptrs[n] = tl_arena_alloc(a, sizes[n]);
        assert_non_null(ptrs[n]);
        assert_true(is_max_aligned(ptrs[n]));
        for (size_t i = 0; i < sizes[n]; i++)
            ptrs[n][i] = pattern_byte(n, i);
    }
    for (size_t n = 0; n < count; n++)
        for (size_t i = 0; i < sizes[n]; i++)
            assert_int_equal(ptrs[n][i], pattern_byte(n, i));
}

static void arena_allocations_aligned_and_reused(void **state)
{
    (void)state;
    enum { COUNT = 100 };
    struct tl_arena a;
    uint8_t *first[COUNT], *second[COUNT], *third[COUNT];
    size_t sizes[COUNT];

    tl_arena_init(&a, 0);
    arena_fill_and_check(&a, COUNT, first, sizes);
    assert_true(a.blocks_allocated > 1);
    tl_arena_reset(&a);
    assert_int_equal(a.used, 0);

    /* The reset kept one block that fits the whole sequence. */
    uint64_t blocks = a.blocks_allocated;
    arena_fill_and_check(&a, COUNT, second, sizes);
    assert_int_equal(a.blocks_allocated, blocks);
    tl_arena_reset(&a);

    arena_fill_and_check(&a, COUNT, third, sizes);
    assert_int_equal(a.blocks_allocated, blocks);
    for (size_t n = 0; n < COUNT; n++)
        assert_ptr_equal(third[n], second[n]);

    tl_arena_free(&a);
    assert_null(a.blocks);
}

static void arena_keep_max_bounds_retained_block(void **state)
{
    (void)state;
    struct tl_arena a;

    tl_arena_init(&a, 8192);
    assert_non_null(tl_arena_alloc(&a, 20000));
    tl_arena_reset(&a);
    assert_null(a.blocks);

    assert_non_null(tl_arena_alloc(&a, 3000));
    assert_non_null(tl_arena_alloc(&a, 3000));
    tl_arena_reset(&a);
    assert_non_null(a.blocks);
    tl_arena_free(&a);
}

/* Size of event i's value in the request of `count` events built by append_full_request. */
static size_t full_value_len(size_t count, size_t i)
{
    return i % 5 == 4 ? 0 : count * 20 + i * 7;
}

/*
 * Appends a ProduceRequest with `count` events whose topics, keys, values and headers all
 * differ. Most value sizes grow with count, and every fifth value is empty.
 */
static void append_full_request(struct tl_buf *out, uint64_t batch_id, size_t count)
{
    Twinlane__ProduceRequest req = TWINLANE__PRODUCE_REQUEST__INIT;
    Twinlane__Event *events = calloc(count, sizeof(*events));
    Twinlane__Event **event_ptrs = calloc(count, sizeof(*event_ptrs));
    Twinlane__Header *headers = calloc(count * 2, sizeof(*headers));
    Twinlane__Header **header_ptrs = calloc(count * 2, sizeof(*header_ptrs));
    char (*topics)[32] = calloc(count, sizeof(*topics));
    char (*names)[48] = calloc(count * 2, sizeof(*names));
    uint8_t **values = calloc(count, sizeof(*values));

    for (size_t i = 0; i < count; i++) {
        Twinlane__Event *e = &events[i];
        twinlane__event__init(e);
        snprintf(topics[i], sizeof(topics[i]), "topic-%zu", i);
        e->topic = topics[i];
        e->has_key = i % 3 != 0;
        e->key.data = (uint8_t *)topics[i];
        e->key.len = strlen(topics[i]);
        size_t value_len = full_value_len(count, i);
        values[i] = malloc(value_len + 1);
        for (size_t b = 0; b < value_len; b++)
            values[i][b] = (uint8_t)(batch_id + i + b);
        e->has_value = true;
        e->value.data = values[i];
        e->value.len = value_len;
        e->n_headers = i % 3;
        e->headers = &header_ptrs[i * 2];
        for (size_t h = 0; h < e->n_headers; h++) {
            Twinlane__Header *header = &headers[i * 2 + h];
            twinlane__header__init(header);
            snprintf(names[i * 2 + h], sizeof(names[0]), "h%zu-%zu", i, h);
            header->name = names[i * 2 + h];
            header->has_value = true;
            header->value.data = (uint8_t *)names[i * 2 + h];
            header->value.len = strlen(names[i * 2 + h]);
            header_ptrs[i * 2 + h] = header;
        }
        event_ptrs[i] = e;
    }
    req.batch_id = batch_id;
    req.n_events = count;
    req.events = event_ptrs;
    tl_frame_append(out, &req.base);

    for (size_t i = 0; i < count; i++)
        free(values[i]);
    free(values);
    free(names);
    free(topics);
    free(header_ptrs);
    free(headers);
    free(event_ptrs);
    free(events);
}

/* Checks a request decoded from append_full_request(batch_id, count), pointers included. */
static void check_full_request(const Twinlane__ProduceRequest *req, uint64_t batch_id,
                               size_t count)
{
    char text[48];

    assert_true(is_max_aligned(req));
    assert_int_equal(req->batch_id, batch_id);
    assert_int_equal(req->n_events, count);
    assert_true(is_max_aligned(req->events));
    for (size_t i = 0; i < count; i++) {
        const Twinlane__Event *e = req->events[i];
        assert_true(is_max_aligned(e));
        assert_true(is_max_aligned(e->topic));
        snprintf(text, sizeof(text), "topic-%zu", i);
        assert_string_equal(e->topic, text);

        assert_int_equal(e->has_key, i % 3 != 0);
        if (e->has_key) {
            assert_true(is_max_aligned(e->key.data));
            assert_int_equal(e->key.len, strlen(text));
            assert_memory_equal(e->key.data, text, strlen(text));
        }

        size_t value_len = full_value_len(count, i);
        assert_true(e->has_value);
        assert_int_equal(e->value.len, value_len);
        if (value_len > 0)
            assert_true(is_max_aligned(e->value.data));
        for (size_t b = 0; b < value_len; b++)
            assert_int_equal(e->value.data[b], (uint8_t)(batch_id + i + b));

        assert_int_equal(e->n_headers, i % 3);
        for (size_t h = 0; h < e->n_headers; h++) {
            const Twinlane__Header *header = e->headers[h];
            assert_true(is_max_aligned(header));
            snprintf(text, sizeof(text), "h%zu-%zu", i, h);
            assert_string_equal(header->name, text);
            assert_true(header->has_value);
            assert_memory_equal(header->value.data, text, strlen(text));
        }
    }
}

/* Decodes the frame in buf through the arena and checks it against the builder's input. */
static Twinlane__ProduceRequest *decode_full_request(const struct tl_buf *buf,
                                                     struct tl_arena *arena, uint64_t batch_id,
                                                     size_t count)
{
    Twinlane__ProduceRequest *req = NULL;
    char err[256] = "";

    assert_int_equal(tl_frame_decode_request_in_arena(buf->data + TL_FRAME_HEADER_BYTES,
                                                      buf->len - TL_FRAME_HEADER_BYTES, arena,
                                                      &req, err, sizeof(err)), 0);
    assert_true(arena->used > 0);
    check_full_request(req, batch_id, count);
    return req;
}

static void arena_decodes_growing_requests(void **state)
{
    (void)state;
    enum { LARGEST = 60 };
    struct tl_arena arena;
    struct tl_buf buf;

    tl_arena_init(&arena, 0);
    for (size_t count = 1; count <= LARGEST; count++) {
        tl_buf_init(&buf);
        append_full_request(&buf, 1000 + count, count);
        Twinlane__ProduceRequest *req = decode_full_request(&buf, &arena, 1000 + count, count);
        tl_frame_free_request(req, &arena);
        assert_int_equal(arena.used, 0);
        tl_buf_free(&buf);
    }

    /* In steady state the largest request fits the kept block again, at the same address. */
    tl_buf_init(&buf);
    append_full_request(&buf, 7, LARGEST);
    Twinlane__ProduceRequest *req = decode_full_request(&buf, &arena, 7, LARGEST);
    tl_frame_free_request(req, &arena);
    uint64_t blocks = arena.blocks_allocated;
    for (int round = 0; round < 3; round++) {
        Twinlane__ProduceRequest *again = decode_full_request(&buf, &arena, 7, LARGEST);
        assert_ptr_equal(again, req);
        tl_frame_free_request(again, &arena);
        assert_int_equal(arena.blocks_allocated, blocks);
    }

    /* A smaller request after the largest one needs no new block either. */
    tl_buf_free(&buf);
    tl_buf_init(&buf);
    append_full_request(&buf, 8, 5);
    req = decode_full_request(&buf, &arena, 8, 5);
    tl_frame_free_request(req, &arena);
    assert_int_equal(arena.blocks_allocated, blocks);

    tl_buf_free(&buf);
    tl_arena_free(&arena);
}

static void arena_reset_after_failed_decode(void **state)
{
    (void)state;
    struct tl_arena arena;
    struct tl_buf buf;
    Twinlane__ProduceRequest *req = NULL;
    char err[256] = "";
    /* batch_id = 1, then an event whose topic declares 127 bytes but contains only 1. */
    static const uint8_t truncated[] = {0x08, 0x01, 0x12, 0x03, 0x0a, 0x7f, 0x41};

    tl_arena_init(&arena, 0);
    assert_int_equal(tl_frame_decode_request_in_arena(truncated, sizeof(truncated), &arena, &req,
                                                      err, sizeof(err)), TL_EPROTO);
    assert_null(req);
    assert_non_null(strstr(err, "not a valid ProduceRequest"));
    assert_int_equal(arena.used, 0);

    tl_buf_init(&buf);
    append_full_request(&buf, 3, 4);
    req = decode_full_request(&buf, &arena, 3, 4);
    tl_frame_free_request(req, &arena);
    tl_buf_free(&buf);
    tl_arena_free(&arena);
}

static void decode_without_arena_uses_malloc(void **state)
{
    (void)state;
    struct tl_buf buf;
    Twinlane__ProduceRequest *req = NULL;

    tl_buf_init(&buf);
    append_full_request(&buf, 11, 6);
    assert_int_equal(tl_frame_decode_request_in_arena(buf.data + TL_FRAME_HEADER_BYTES,
                                                      buf.len - TL_FRAME_HEADER_BYTES, NULL,
                                                      &req, NULL, 0), 0);
    check_full_request(req, 11, 6);
    tl_frame_free_request(req, NULL);
    tl_buf_free(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_round_trip),
        cmocka_unit_test(byte_by_byte_feed_completes),
        cmocka_unit_test(several_frames_one_feed),
        cmocka_unit_test(empty_feed_on_new_reader),
        cmocka_unit_test(oversized_frame_rejected_before_allocation),
        cmocka_unit_test(frame_at_limit_accepted),
        cmocka_unit_test(truncated_payload_waits),
        cmocka_unit_test(garbage_payload_not_decoded),
        cmocka_unit_test(empty_payload_missing_batch_id),
        cmocka_unit_test(event_without_topic_rejected),
        cmocka_unit_test(response_round_trip),
        cmocka_unit_test(fill_reports_eof_and_empty),
        cmocka_unit_test(fill_stops_at_buffer_limit),
        cmocka_unit_test(fill_frees_large_idle_buffer),
        cmocka_unit_test(scan_counts_events_and_batch),
        cmocka_unit_test(scan_rejects_nul_in_names),
        cmocka_unit_test(scan_rejects_truncated_fields),
        cmocka_unit_test(arena_allocations_aligned_and_reused),
        cmocka_unit_test(arena_keep_max_bounds_retained_block),
        cmocka_unit_test(arena_decodes_growing_requests),
        cmocka_unit_test(arena_reset_after_failed_decode),
        cmocka_unit_test(decode_without_arena_uses_malloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
