/*
 * Writes the seed corpus of fuzz_wal_record: WAL records built with tl_wal_encode_record, each
 * seed behind the mode byte that fuzz_wal_record reads first. The output is committed under
 * tests/fuzz/corpus/wal/, so rerun this after a change to the record format:
 *
 *   make_wal_corpus DIR
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "wal.h"

/* Mode bits of fuzz_wal_record's first input byte. */
#define MODE_RAW 0
#define MODE_PAYLOADS 1
#define MODE_SALVAGE 2

static void write_seed(const char *dir, const char *name, uint8_t mode, const struct tl_buf *buf)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&mode, 1, 1, f) != 1 || fwrite(buf->data, 1, buf->len, f) != buf->len ||
        fclose(f) != 0) {
        fprintf(stderr, "make_wal_corpus: writing %s failed\n", path);
        exit(1);
    }
}

/*
 * Appends the record of event seq. Variants by seq: 1 has a key, a value and two headers (the
 * second without a value), 2 has no key and one header, 3 has an empty key and a null value.
 */
static void append_record(struct tl_buf *out, uint64_t seq)
{
    struct tl_header headers[2] = {
        {.name = "trace", .value = (const uint8_t *)"abc", .value_len = 3},
        {.name = "flag", .value = NULL},
    };
    struct tl_event ev = {
        .seq = seq,
        .topic_name = "events",
        .partition = (int32_t)seq,
        .ingest_ms = 1700000000000 + (int64_t)seq,
        .has_key = seq != 2,
        .key = (const uint8_t *)(seq == 1 ? "key-1" : ""),
        .key_len = seq == 1 ? 5 : 0,
        .value = seq == 3 ? NULL : (const uint8_t *)"value",
        .value_len = seq == 3 ? 0 : 5,
        .headers = headers,
    };
    if (seq == 1)
        ev.header_count = 2;
    else if (seq == 2)
        ev.header_count = 1;
    tl_wal_encode_record(&ev, out);
}

/* Rewrites records as fuzz_wal_record's payload list: 2-byte length, then the payload. */
static void to_payload_list(const struct tl_buf *records, struct tl_buf *out)
{
    size_t at = 0;
    while (at + TL_WAL_RECORD_HEADER_BYTES <= records->len) {
        const uint8_t *rec = records->data + at;
        size_t len = (size_t)rec[0] | (size_t)rec[1] << 8;
        tl_buf_reserve(out, 2 + len);
        out->data[out->len] = rec[0];
        out->data[out->len + 1] = rec[1];
        memcpy(out->data + out->len + 2, rec + TL_WAL_RECORD_HEADER_BYTES, len);
        out->len += 2 + len;
        at += TL_WAL_RECORD_HEADER_BYTES + len;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_wal_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    struct tl_buf buf, list;
    tl_buf_init(&buf);
    tl_buf_init(&list);

    append_record(&buf, 1);
    write_seed(dir, "raw-one-record", MODE_RAW, &buf);

    buf.len = 0;
    for (uint64_t seq = 1; seq <= 3; seq++)
        append_record(&buf, seq);
    write_seed(dir, "raw-three-records", MODE_RAW, &buf);

    to_payload_list(&buf, &list);
    write_seed(dir, "payloads-three-records", MODE_PAYLOADS, &list);

    /* The second record's last byte flipped: damage in the middle, recovered with salvage. */
    buf.len = 0;
    append_record(&buf, 1);
    append_record(&buf, 2);
    size_t second_end = buf.len;
    append_record(&buf, 3);
    buf.data[second_end - 1] ^= 0xFF;
    write_seed(dir, "raw-damaged-middle-salvage", MODE_RAW | MODE_SALVAGE, &buf);

    /* Two records and the first half of a third: a torn tail. */
    buf.len = 0;
    append_record(&buf, 1);
    append_record(&buf, 2);
    size_t before = buf.len;
    append_record(&buf, 3);
    buf.len = before + (buf.len - before) / 2;
    write_seed(dir, "raw-torn-tail", MODE_RAW, &buf);

    tl_buf_free(&list);
    tl_buf_free(&buf);
    return 0;
}
