/*
 * Frame codec tests: length prefix, size cap before allocation, partial and hostile input.
 */
#include <setjmp.h>
#include <stdarg.h>
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

    for (size_t i = 0; i < 4; i++)
        assert_int_equal(tl_frame_scan_request(cases[i], lengths[i], &events, &batch_id, NULL, 0),
                         TL_EPROTO);
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
        cmocka_unit_test(scan_counts_events_and_batch),
        cmocka_unit_test(scan_rejects_nul_in_names),
        cmocka_unit_test(scan_rejects_truncated_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
