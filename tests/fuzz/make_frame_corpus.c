/*
 * Writes the seed corpus of fuzz_frame: small byte streams of valid and invalid frames, built
 * with the same tl_frame_append the client library uses. The output is committed under
 * tests/fuzz/corpus/frame/, so rerun this after a change to twinlane.proto:
 *
 *   make_frame_corpus DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static void write_seed(const char *dir, const char *name, const struct tl_buf *buf)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf->data, 1, buf->len, f) != buf->len || fclose(f) != 0) {
        fprintf(stderr, "make_frame_corpus: writing %s failed\n", path);
        exit(1);
    }
}

/* Appends a request whose events carry a key when keyed is set and headers when count > 1. */
static void append_request(struct tl_buf *out, uint64_t batch_id, size_t count, bool keyed)
{
    Twinlane__ProduceRequest req = TWINLANE__PRODUCE_REQUEST__INIT;
    Twinlane__Event events[4];
    Twinlane__Event *event_ptrs[4];
    Twinlane__Header header = TWINLANE__HEADER__INIT;
    Twinlane__Header *header_ptrs[1] = {&header};

    header.name = "trace";
    header.has_value = true;
    header.value.data = (uint8_t *)"abc";
    header.value.len = 3;
    for (size_t i = 0; i < count && i < 4; i++) {
        twinlane__event__init(&events[i]);
        events[i].topic = "events";
        events[i].has_key = keyed;
        events[i].key.data = (uint8_t *)"user-1";
        events[i].key.len = keyed ? 6 : 0;
        events[i].has_value = true;
        events[i].value.data = (uint8_t *)"GET /index.html 200";
        events[i].value.len = 19;
        events[i].n_headers = count > 1 ? 1 : 0;
        events[i].headers = header_ptrs;
        event_ptrs[i] = &events[i];
    }
    req.batch_id = batch_id;
    req.n_events = count < 4 ? count : 4;
    req.events = event_ptrs;
    tl_frame_append(out, &req.base);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "Usage: make_frame_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    struct tl_buf buf;

    tl_buf_init(&buf);
    append_request(&buf, 1, 1, false);
    write_seed(dir, "request-one-event", &buf);

    buf.len = 0;
    append_request(&buf, 7, 3, true);
    write_seed(dir, "request-keyed-headers", &buf);

    /* Two pipelined requests and the first half of a third. */
    buf.len = 0;
    append_request(&buf, 10, 1, true);
    append_request(&buf, 11, 2, false);
    size_t before = buf.len;
    append_request(&buf, 12, 1, false);
    buf.len = before + (buf.len - before) / 2;
    write_seed(dir, "pipelined-then-partial", &buf);

    buf.len = 0;
    append_request(&buf, 0, 0, false);
    write_seed(dir, "request-no-events", &buf);

    /* A zero-length frame, then a header declaring 5000 bytes (over fuzz_frame's limit). */
    static const uint8_t oversized[] = {0, 0, 0, 0, 0, 0, 0x13, 0x88, 'x'};
    buf.len = 0;
    tl_buf_reserve(&buf, sizeof(oversized));
    memcpy(buf.data, oversized, sizeof(oversized));
    buf.len = sizeof(oversized);
    write_seed(dir, "empty-then-oversized", &buf);

    /* A ProduceResponse, which the agent must reject as a request. */
    Twinlane__ProduceResponse resp = TWINLANE__PRODUCE_RESPONSE__INIT;
    Twinlane__EventResult result = TWINLANE__EVENT_RESULT__INIT;
    Twinlane__EventResult *result_ptrs[1] = {&result};
    result.status = TWINLANE__STATUS__FAILED;
    result.message = "region west: timed out";
    resp.batch_id = 3;
    resp.n_results = 1;
    resp.results = result_ptrs;
    buf.len = 0;
    tl_frame_append(&buf, &resp.base);
    write_seed(dir, "response-failed", &buf);

    tl_buf_free(&buf);
    return 0;
}
