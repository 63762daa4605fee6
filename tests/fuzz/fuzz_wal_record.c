/*
 * libFuzzer target for the WAL record decoder (tl_wal_decode_record) and for recovery of a
 * whole segment file (tl_wal_open followed by a reader), the code that reads bytes back from
 * disk after a crash or from a damaged file.
 *
 * Input layout: byte 0 selects the mode, the rest is the body.
 *   bit 0 clear: the body is used as raw record bytes.
 *   bit 0 set:   the body is a list of payloads, each a 2-byte little-endian length and that
 *                many bytes. The target writes each one as a record with the right length,
 *                sequence number and CRC-32C, so that inputs get past the CRC check and reach
 *                the field parsing.
 *   bit 1:       recovery runs with salvage on.
 *
 * The records are decoded one after another. Every decoded event is encoded again and decoded
 * again, and the copy must carry the same fields. The same records, behind a valid segment
 * header, then become the only segment of a WAL directory, which is opened and read to the
 * end. A failed check calls abort(), so libFuzzer records the input as a crash.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "crc32c.h"
#include "error.h"
#include "frame.h"
#include "log.h"
#include "wal.h"

/* Small, so that inputs of a few kilobytes reach the limit on both sides. */
#define MAX_PAYLOAD 4096
#define SEGMENT_NAME "00000000000000000001.wal"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tl_config cfg;
static char dir[64];
static char wal_dir[96];

static void fail(const char *message)
{
    fprintf(stderr, "fuzz_wal_record: %s\n", message);
    abort();
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Below TL_LOG_ERROR, so that the error line each torn tail or salvage logs is dropped
     * instead of flooding the fuzzer's output. */
    tl_log_set_level((enum tl_log_level)(TL_LOG_ERROR - 1));

    snprintf(dir, sizeof(dir), "%s", "/tmp/twinlane-fuzz-wal.XXXXXX");
    if (!mkdtemp(dir))
        fail("cannot create a temporary directory");
    snprintf(wal_dir, sizeof(wal_dir), "%s/wal", dir);

    char text[1024];
    snprintf(text, sizeof(text),
             "agent = { id = \"fuzz\"; home_region = \"east\"; data_dir = \"%s\"; };\n"
             "listen = { max_event_bytes = 2048; };\n"
             "regions = ( { name = \"east\"; bootstrap = \"embedded\"; },\n"
             "            { name = \"west\"; bootstrap = \"embedded\"; } );\n"
             "topics = ( { name = \"events\"; } );\n"
             "wal = { dir = \"%s\"; fsync = \"off\"; segment_bytes = 1048576; };\n",
             dir, wal_dir);
    char err[512];
    if (tl_config_parse(text, "fuzz.conf", &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_wal_record: configuration rejected: %s\n", err);
        abort();
    }
    return 0;
}

/* Builds records with valid lengths, sequence numbers and CRCs from length-prefixed payloads. */
static void build_records(const uint8_t *body, size_t size, struct tl_buf *out)
{
    uint64_t seq = 1;
    size_t at = 0;
    while (at + 2 <= size) {
        size_t len = (size_t)body[at] | (size_t)body[at + 1] << 8;
        at += 2;
        if (len > size - at)
            len = size - at;
        tl_buf_reserve(out, TL_WAL_RECORD_HEADER_BYTES + len);
        uint8_t *rec = out->data + out->len;
        put_le32(rec, (uint32_t)len);
        put_le64(rec + 8, seq++);
        memcpy(rec + TL_WAL_RECORD_HEADER_BYTES, body + at, len);
        put_le32(rec + 4, tl_crc32c(0, rec + 8, 8 + len));
        out->len += TL_WAL_RECORD_HEADER_BYTES + len;
        at += len;
    }
}

static bool optional_bytes_equal(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    if ((a == NULL) != (b == NULL))
        return false;
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

/* Checks that two decoded events carry the same fields. */
static void compare_events(const struct tl_event *a, const struct tl_event *b)
{
    if (a->seq != b->seq || a->partition != b->partition || a->ingest_ms != b->ingest_ms)
        fail("re-decoded event differs in seq, partition or ingest time");
    if (strcmp(a->topic_name, b->topic_name) != 0 || a->topic != b->topic)
        fail("re-decoded event differs in topic");
    if (a->has_key != b->has_key || a->key_len != b->key_len ||
        (a->key_len && memcmp(a->key, b->key, a->key_len) != 0))
        fail("re-decoded event differs in key");
    if (!optional_bytes_equal(a->value, a->value_len, b->value, b->value_len))
        fail("re-decoded event differs in value");
    if (a->header_count != b->header_count)
        fail("re-decoded event differs in header count");
    for (size_t h = 0; h < a->header_count; h++) {
        if (strcmp(a->headers[h].name, b->headers[h].name) != 0)
            fail("re-decoded event differs in a header name");
        if (!optional_bytes_equal(a->headers[h].value, a->headers[h].value_len,
                                  b->headers[h].value, b->headers[h].value_len))
            fail("re-decoded event differs in a header value");
    }
}

/* Decodes records back to back, and checks each through an encode and decode round trip. */
static void decode_all(const uint8_t *buf, size_t len)
{
    size_t at = 0;
    while (at < len) {
        struct tl_event *ev = NULL;
        size_t used = 0;
        char err[256];
        int rc = tl_wal_decode_record(buf + at, len - at, MAX_PAYLOAD, &cfg, &ev, &used, err,
                                      sizeof(err));
        if (rc == 0 || rc == TL_EPROTO) {
            if (ev)
                fail("decoder returned an event together with a failure");
            return;
        }
        if (rc != 1)
            fail("decoder returned a status outside 1, 0 and TL_EPROTO");
        if (used < TL_WAL_RECORD_HEADER_BYTES + TL_WAL_PAYLOAD_FIXED_BYTES || used > len - at)
            fail("decoder consumed a byte count outside the record");
        size_t topic_len = strlen(ev->topic_name);
        if (topic_len == 0 || topic_len > 255)
            fail("decoded topic name length outside 1..255");

        struct tl_buf again;
        tl_buf_init(&again);
        tl_wal_encode_record(ev, &again);
        if (again.len > used)
            fail("re-encoded record is longer than the decoded one");
        struct tl_event *copy = NULL;
        size_t copy_used = 0;
        rc = tl_wal_decode_record(again.data, again.len, MAX_PAYLOAD, &cfg, &copy, &copy_used,
                                  err, sizeof(err));
        if (rc != 1) {
            fprintf(stderr, "fuzz_wal_record: re-encoded record rejected: %s\n", err);
            abort();
        }
        if (copy_used != again.len)
            fail("re-encoded record not consumed whole");
        compare_events(ev, copy);
        free(copy);
        tl_buf_free(&again);
        free(ev);
        at += used;
    }
}

static void remove_dir_contents(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char child[512];
        snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
        if (unlink(child) != 0) {
            remove_dir_contents(child);
            rmdir(child);
        }
    }
    closedir(d);
}

/* Writes the records as the only segment of the WAL directory, recovers it and reads it. */
static void recover_segment(const uint8_t *records, size_t len, bool salvage)
{
    remove_dir_contents(wal_dir);
    rmdir(wal_dir);
    if (mkdir(wal_dir, 0750) != 0)
        fail("cannot create the WAL directory");

    uint8_t header[TL_WAL_SEGMENT_HEADER_BYTES] = {'T', 'W', 'L', 'N', 'W', 'A', 'L', '1'};
    put_le32(header + 8, 1);
    put_le32(header + 12, TL_WAL_SEGMENT_HEADER_BYTES);
    put_le64(header + 16, 1);
    put_le32(header + 24, tl_crc32c(0, header, 24));
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", wal_dir, SEGMENT_NAME);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(header, 1, sizeof(header), f) != sizeof(header) ||
        (len && fwrite(records, 1, len, f) != len) || fclose(f) != 0)
        fail("cannot write the segment file");

    struct tl_wal_options opts = {.cfg = &cfg, .salvage = salvage, .notify_fd = -1};
    struct tl_wal *w = NULL;
    struct tl_wal_recovery rec;
    char err[1024];
    int rc = tl_wal_open(&opts, &w, &rec, err, sizeof(err));
    if (rc != 0) {
        if (rc != TL_EPROTO || salvage)
            fail("tl_wal_open failed other than with TL_EPROTO without salvage");
        if (!strstr(err, SEGMENT_NAME) || !strstr(err, "byte offset"))
            fail("recovery error does not name the segment and the byte offset");
        return;
    }
    if (rec.next_seq < 1 + rec.records)
        fail("next_seq is below the recovered records");

    /* Recovery checks lengths, CRCs and sequence numbers, and only the reader parses the
     * fields. So the reader may still reject a record, and its message must name the place. */
    struct tl_wal_reader *r = NULL;
    if (tl_wal_reader_open(w, 1, &r, err, sizeof(err)) != 0)
        fail("tl_wal_reader_open failed");
    uint64_t expected = rec.first_seq;
    uint64_t read = 0;
    for (;;) {
        struct tl_event *ev = NULL;
        rc = tl_wal_reader_next(r, &ev, err, sizeof(err));
        if (rc == 0)
            break;
        if (rc < 0) {
            if (!strstr(err, SEGMENT_NAME) || !strstr(err, "byte offset"))
                fail("reader error does not name the segment and the byte offset");
            break;
        }
        if (ev->seq != expected)
            fail("reader returned a sequence number out of order");
        expected++;
        read++;
        free(ev);
    }
    if (rc == 0 && read != rec.records)
        fail("reader returned a different count than recovery found");
    tl_wal_reader_close(r);
    tl_wal_close(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    const uint8_t *body = data + 1;
    size_t body_len = size - 1;

    struct tl_buf records;
    tl_buf_init(&records);
    if (mode & 1) {
        build_records(body, body_len, &records);
    } else if (body_len) {
        tl_buf_reserve(&records, body_len);
        memcpy(records.data, body, body_len);
        records.len = body_len;
    }

    decode_all(records.data, records.len);
    recover_segment(records.data, records.len, (mode & 2) != 0);
    tl_buf_free(&records);
    return 0;
}
