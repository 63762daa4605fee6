/*
 * Write-ahead log tests against real segment files in a temporary directory. They cover
 * appending and reading back, the record codec and its rejection of damaged records, and
 * recovery of torn tails and of damage elsewhere, with and without salvage. Further tests cover
 * the quota in both when_full modes, cursor persistence, segment deletion and sequence numbers
 * across restarts.
 *
 * Each test builds its configuration with tl_config_parse and points wal.dir into its own
 * directory. Tests that wait for the WAL thread poll with a deadline of WAIT_MS and never
 * assert on elapsed time.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "crc32c.h"
#include "error.h"
#include "frame.h"
#include "log.h"
#include "wal.h"

#define WAIT_MS 10000
#define MIB 1048576u
#define MAX_SEGMENTS 64

/* One test's directory, configuration and open WAL. */
struct fixture {
    char dir[64];
    char wal_dir[96];
    struct tl_config cfg;
    bool cfg_loaded;
    struct tl_wal *w;
    struct tl_wal_recovery rec;
    char err[1024];
};

/* An event built from a tag, with storage for every field; see make_sample. */
struct sample {
    struct tl_event ev;
    char key[32];
    uint8_t *value;
    struct tl_header headers[2];
    char header_value[32];
};

/* ---- fixture ------------------------------------------------------------------------- */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/twinlane-test-wal.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->dir);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tl_wal_close(f->w);
    if (f->cfg_loaded)
        tl_config_free(&f->cfg);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Loads a configuration with two embedded regions, wal.dir in the test directory, the given
 * segment and event size limits and fsync "off", plus wal_extra (more settings of the wal
 * group, may be ""). */
static void load_config_sized(struct fixture *f, size_t segment_bytes, size_t max_event_bytes,
                              const char *wal_extra)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "agent = { id = \"wal-test\"; home_region = \"east\"; data_dir = \"%s\"; };\n"
             "listen = { max_event_bytes = %zu; };\n"
             "regions = (\n"
             "  { name = \"east\"; bootstrap = \"embedded\"; },\n"
             "  { name = \"west\"; bootstrap = \"embedded\"; }\n"
             ");\n"
             "topics = ( { name = \"events\"; } );\n"
             "wal = { dir = \"%s\"; segment_bytes = %zu; %s };\n",
             f->dir, max_event_bytes, f->wal_dir, segment_bytes, wal_extra);
    int rc = tl_config_parse(text, "test.conf", &f->cfg, f->err, sizeof(f->err));
    if (rc != 0)
        fail_msg("configuration rejected: %s", f->err);
    f->cfg_loaded = true;
}

/* Loads the configuration of load_config_sized with 1 MiB segments and 128 KiB events. */
static void load_config(struct fixture *f, const char *wal_extra)
{
    load_config_sized(f, MIB, 131072, wal_extra);
}

/* Opens the WAL without starting its thread; returns tl_wal_open's status. */
static int open_wal(struct fixture *f, bool salvage)
{
    struct tl_wal_options opts = {.cfg = &f->cfg, .salvage = salvage, .notify_fd = -1};
    f->err[0] = '\0';
    return tl_wal_open(&opts, &f->w, &f->rec, f->err, sizeof(f->err));
}

/* Opens and starts the WAL, failing the test with the message on any error. */
static void start_wal(struct fixture *f)
{
    int rc = open_wal(f, false);
    if (rc != 0)
        fail_msg("tl_wal_open returned %d: %s", rc, f->err);
    rc = tl_wal_start(f->w, f->err, sizeof(f->err));
    if (rc != 0)
        fail_msg("tl_wal_start returned %d: %s", rc, f->err);
}

static void close_wal(struct fixture *f)
{
    tl_wal_close(f->w);
    f->w = NULL;
}

/* ---- events -------------------------------------------------------------------------- */

/*
 * Builds the event for tag (the sequence number it will get), cycling through the field
 * variants: no key, empty key, null value, and zero, one or two headers, where the second
 * header has no value.
 */
static void make_sample(struct sample *s, uint64_t tag, size_t value_bytes)
{
    memset(s, 0, sizeof(*s));
    s->ev.topic = 0;
    s->ev.topic_name = "events";
    s->ev.partition = (int32_t)(tag % 6);
    s->ev.ingest_ms = 1700000000000 + (int64_t)tag;

    if (tag % 3 != 1) {
        s->ev.has_key = true;
        if (tag % 6 != 3)
            snprintf(s->key, sizeof(s->key), "key-%" PRIu64, tag);
        s->ev.key = (const uint8_t *)s->key;
        s->ev.key_len = strlen(s->key);
    }

    if (tag % 4 != 2) {
        s->value = malloc(value_bytes + 1);
        for (size_t i = 0; i < value_bytes; i++)
            s->value[i] = (uint8_t)(tag * 31 + i);
        s->ev.value = s->value;
        s->ev.value_len = value_bytes;
    }

    s->ev.header_count = tag % 3;
    s->ev.headers = s->headers;
    snprintf(s->header_value, sizeof(s->header_value), "trace-%" PRIu64, tag);
    s->headers[0].name = "trace";
    s->headers[0].value = (const uint8_t *)s->header_value;
    s->headers[0].value_len = strlen(s->header_value);
    s->headers[1].name = "no-value";
    s->headers[1].value = NULL;
}

static void free_sample(struct sample *s)
{
    free(s->value);
}

/* Checks every field of got against the event make_sample builds for got's seq. */
static void assert_sample(const struct tl_event *got, size_t value_bytes)
{
    struct sample want;
    make_sample(&want, got->seq, value_bytes);

    assert_string_equal(got->topic_name, "events");
    assert_int_equal(got->topic, 0);
    assert_int_equal(got->partition, want.ev.partition);
    assert_int_equal(got->ingest_ms, want.ev.ingest_ms);
    assert_int_equal(got->has_key, want.ev.has_key);
    assert_int_equal(got->key_len, want.ev.key_len);
    if (want.ev.key_len)
        assert_memory_equal(got->key, want.ev.key, want.ev.key_len);
    if (want.ev.value) {
        assert_non_null(got->value);
        assert_int_equal(got->value_len, want.ev.value_len);
        if (value_bytes)
            assert_memory_equal(got->value, want.ev.value, value_bytes);
    } else {
        assert_null(got->value);
    }
    assert_int_equal(got->header_count, want.ev.header_count);
    for (size_t h = 0; h < want.ev.header_count; h++) {
        assert_string_equal(got->headers[h].name, want.headers[h].name);
        if (want.headers[h].value) {
            assert_non_null(got->headers[h].value);
            assert_int_equal(got->headers[h].value_len, want.headers[h].value_len);
            assert_memory_equal(got->headers[h].value, want.headers[h].value,
                                want.headers[h].value_len);
        } else {
            assert_null(got->headers[h].value);
        }
    }
    free_sample(&want);
}

/* Appends one sample event; returns tl_wal_append's status and its seq in *seq. */
static int append_one(struct fixture *f, size_t value_bytes, uint64_t *seq)
{
    struct sample s;
    make_sample(&s, tl_wal_next_seq(f->w), value_bytes);
    f->err[0] = '\0';
    int rc = tl_wal_append(f->w, &s.ev, f->err, sizeof(f->err));
    if (rc == 0 && seq)
        *seq = s.ev.seq;
    free_sample(&s);
    return rc;
}

/* Appends count sample events, failing on any error; returns the first one's seq. */
static uint64_t append_events(struct fixture *f, size_t count, size_t value_bytes)
{
    uint64_t first = tl_wal_next_seq(f->w);
    for (size_t i = 0; i < count; i++) {
        uint64_t seq = 0;
        int rc = append_one(f, value_bytes, &seq);
        if (rc != 0)
            fail_msg("append %zu of %zu returned %d: %s", i, count, rc, f->err);
        assert_int_equal(seq, first + i);
    }
    tl_wal_kick(f->w);
    return first;
}

/* Waits until ack_seq reaches seq; fails after WAIT_MS. */
static void wait_acked(struct fixture *f, uint64_t seq)
{
    int64_t deadline = tl_now_ms() + WAIT_MS;
    while (tl_wal_ack_seq(f->w) < seq) {
        if (tl_now_ms() > deadline)
            fail_msg("ack_seq stayed at %" PRIu64 ", expected %" PRIu64,
                     tl_wal_ack_seq(f->w), seq);
        usleep(1000);
    }
}

/* Waits until the WAL has at most max_segments segments; fails after WAIT_MS. */
static size_t count_segment_files(const char *dir);

/*
 * Waits until the WAL lists at most max_segments segments and as few files are left on disk:
 * the reclaim thread unlinks a segment shortly after the WAL drops it from its list.
 */
static void wait_segments_at_most(struct fixture *f, uint64_t max_segments)
{
    int64_t deadline = tl_now_ms() + WAIT_MS;
    struct tl_wal_stats stats;
    for (;;) {
        tl_wal_get_stats(f->w, &stats);
        size_t files = count_segment_files(f->wal_dir);
        if (stats.segments <= max_segments && files <= max_segments)
            return;
        if (tl_now_ms() > deadline)
            fail_msg("the WAL still lists %" PRIu64 " segments and %zu files are on disk, "
                     "expected at most %" PRIu64, stats.segments, files, max_segments);
        usleep(10000);
    }
}

/* Reads events from seq up to the last written one, checks each and returns the count.
 * Every event must follow the previous one, starting at expect_first. */
static size_t read_from(struct fixture *f, uint64_t seq, uint64_t expect_first,
                        size_t value_bytes)
{
    struct tl_wal_reader *r = NULL;
    assert_int_equal(tl_wal_reader_open(f->w, seq, &r, f->err, sizeof(f->err)), 0);
    size_t count = 0;
    for (;;) {
        struct tl_event *ev = NULL;
        int rc = tl_wal_reader_next(r, &ev, f->err, sizeof(f->err));
        if (rc < 0)
            fail_msg("tl_wal_reader_next returned %d: %s", rc, f->err);
        if (rc == 0)
            break;
        assert_int_equal(ev->seq, expect_first + count);
        assert_sample(ev, value_bytes);
        free(ev);
        count++;
    }
    tl_wal_reader_close(r);
    return count;
}

/* ---- files --------------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the segment files of dir in sequence order into names (each freed by the caller). */
static size_t list_segment_files(const char *dir, char *names[MAX_SEGMENTS])
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 4, ".wal") != 0)
            continue;
        assert_true(n < MAX_SEGMENTS);
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), compare_names);
    return n;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

/* Path of the index-th segment file (in sequence order); index -1 is the newest. */
static void segment_file(struct fixture *f, int index, char *path, size_t size)
{
    char *names[MAX_SEGMENTS];
    size_t n = list_segment_files(f->wal_dir, names);
    assert_true(n > 0);
    size_t i = index < 0 ? n - 1 : (size_t)index;
    assert_true(i < n);
    snprintf(path, size, "%s/%s", f->wal_dir, names[i]);
    free_names(names, n);
}

static size_t count_segment_files(const char *dir)
{
    char *names[MAX_SEGMENTS];
    size_t n = list_segment_files(dir, names);
    free_names(names, n);
    return n;
}

/* Counts the segments moved into wal.dir/damaged, named SEQ.wal.TIME. */
static size_t count_damaged_files(struct fixture *f)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/damaged", f->wal_dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strspn(de->d_name, "0123456789") == 20 && strncmp(de->d_name + 20, ".wal.", 5) == 0)
            n++;
    closedir(d);
    return n;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* Byte offsets of the records of a segment file, in order; returns the record count. */
static size_t record_offsets(const char *path, uint64_t *offsets, size_t max)
{
    uint64_t size = file_size(path);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    size_t n = 0;
    uint64_t at = TL_WAL_SEGMENT_HEADER_BYTES;
    while (at + TL_WAL_RECORD_HEADER_BYTES <= size) {
        uint8_t len[4];
        assert_int_equal(pread(fd, len, 4, (off_t)at), 4);
        assert_true(n < max);
        offsets[n++] = at;
        at += TL_WAL_RECORD_HEADER_BYTES +
              ((uint64_t)len[0] | (uint64_t)len[1] << 8 | (uint64_t)len[2] << 16 |
               (uint64_t)len[3] << 24);
    }
    close(fd);
    return n;
}

static void write_at(const char *path, uint64_t offset, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, (off_t)offset), (ssize_t)len);
    close(fd);
}

static void append_bytes(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Inverts one byte of a file. */
static void flip_byte(const char *path, uint64_t offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)offset), 1);
    b = (uint8_t)~b;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)offset), 1);
    close(fd);
}

/* Fails unless err contains needle, showing the whole message. */
static void assert_contains(const char *err, const char *needle)
{
    if (!strstr(err, needle))
        fail_msg("expected \"%s\" in: %s", needle, err);
}

/* Writes n events with 200-byte values into a fresh WAL, waits for them and closes it. */
static void write_closed_wal(struct fixture *f, size_t n)
{
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, n, 200);
    wait_acked(f, first + n);
    close_wal(f);
}

/* ---- appending and reading ----------------------------------------------------------- */

/*
 * Writes a closed WAL of n records (at most 16) and returns the path of its newest segment
 * and the byte offset of each record in it.
 */
static void write_closed_segment(struct fixture *f, size_t n, char *path, size_t pathsize,
                                 uint64_t offsets[16])
{
    write_closed_wal(f, n);
    segment_file(f, -1, path, pathsize);
    assert_int_equal(record_offsets(path, offsets, 16), n);
}

static void append_then_read_from_first(void **state)
{
    struct fixture *f = *state;
    load_config(f, "fsync = \"always\";");
    start_wal(f);
    assert_int_equal(f->rec.next_seq, 1);

    uint64_t first = append_events(f, 24, 100);
    assert_int_equal(first, 1);
    wait_acked(f, first + 24);

    assert_int_equal(read_from(f, first, first, 100), 24);
    struct tl_wal_stats stats;
    tl_wal_get_stats(f->w, &stats);
    assert_int_equal(stats.appended, 24);
    assert_true(stats.fsyncs > 0);
}

static void read_from_middle_seq(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, 30, 50);
    wait_acked(f, first + 30);

    assert_int_equal(read_from(f, first + 17, first + 17, 50), 13);
    assert_int_equal(read_from(f, first + 29, first + 29, 50), 1);
    assert_int_equal(read_from(f, first + 30, first + 30, 50), 0);
}

static void reader_waits_for_new_events(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, 3, 10);
    wait_acked(f, first + 3);

    struct tl_wal_reader *r = NULL;
    struct tl_event *ev = NULL;
    assert_int_equal(tl_wal_reader_open(f->w, first, &r, f->err, sizeof(f->err)), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tl_wal_reader_next(r, &ev, f->err, sizeof(f->err)), 1);
        free(ev);
    }
    assert_int_equal(tl_wal_reader_next(r, &ev, f->err, sizeof(f->err)), 0);

    append_events(f, 2, 10);
    wait_acked(f, first + 5);
    assert_int_equal(tl_wal_reader_next(r, &ev, f->err, sizeof(f->err)), 1);
    assert_int_equal(ev->seq, first + 3);
    assert_sample(ev, 10);
    free(ev);
    assert_int_equal(tl_wal_reader_position(r), first + 4);
    tl_wal_reader_close(r);
}

static void read_across_several_segments(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    /* 40 events of 100 KiB fill four 1 MiB segments. */
    uint64_t first = append_events(f, 40, 100 * 1024);
    wait_acked(f, first + 40);

    assert_true(count_segment_files(f->wal_dir) >= 3);
    assert_int_equal(read_from(f, first, first, 100 * 1024), 40);
    assert_int_equal(read_from(f, first + 25, first + 25, 100 * 1024), 15);
}

/* ---- reading in blocks --------------------------------------------------------------- */

/* Events appended to the first segment of a WAL, with the value size of each. */
struct appended {
    uint64_t first;          /* seq of the first event */
    size_t count;
    size_t cap;
    size_t *value_bytes;     /* of event first + i */
    uint64_t offset;         /* byte offset in the segment where the next record starts */
};

static void appended_init(struct appended *a, uint64_t first)
{
    memset(a, 0, sizeof(*a));
    a->first = first;
    a->offset = TL_WAL_SEGMENT_HEADER_BYTES;
}

static void appended_free(struct appended *a)
{
    free(a->value_bytes);
}

/* Size of the record that tl_wal_encode_record writes for the sample of tag. */
static size_t sample_record_bytes(uint64_t tag, size_t value_bytes)
{
    struct sample s;
    make_sample(&s, tag, value_bytes);
    s.ev.seq = tag;
    struct tl_buf buf;
    tl_buf_init(&buf);
    tl_wal_encode_record(&s.ev, &buf);
    size_t bytes = buf.len;
    tl_buf_free(&buf);
    free_sample(&s);
    return bytes;
}

/* Appends one sample event with value_bytes of value, failing on any error. */
static void append_sized(struct fixture *f, struct appended *a, size_t value_bytes)
{
    uint64_t tag = tl_wal_next_seq(f->w);
    uint64_t seq = 0;
    int rc = append_one(f, value_bytes, &seq);
    if (rc != 0)
        fail_msg("append of seq %" PRIu64 " returned %d: %s", tag, rc, f->err);
    assert_int_equal(seq, a->first + a->count);

    if (a->count == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 1024;
        a->value_bytes = realloc(a->value_bytes, a->cap * sizeof(*a->value_bytes));
        assert_non_null(a->value_bytes);
    }
    a->value_bytes[a->count++] = value_bytes;
    a->offset += sample_record_bytes(tag, value_bytes);
}

/*
 * Appends events with 100-byte values until the next record starts at byte offset target,
 * sizing the value of the last one to fit. target must be at least 600 bytes ahead. The next
 * event's sample has a value (its seq % 4 is not 2).
 */
static void append_until_offset(struct fixture *f, struct appended *a, uint64_t target)
{
    while (a->offset < target) {
        uint64_t gap = target - a->offset;
        uint64_t tag = tl_wal_next_seq(f->w);
        size_t fixed = sample_record_bytes(tag, 0);
        /* Samples with tag % 4 == 2 have no value, so the fitted record has tag % 4 of 0 or
         * 3 and the next one has a value. Records take at most 92 bytes besides the value, so
         * the one filler and one record without a value before it leave room. */
        if (gap <= 600 && (tag % 4 == 0 || tag % 4 == 3)) {
            assert_true(gap >= fixed);
            append_sized(f, a, (size_t)gap - fixed);
        } else {
            append_sized(f, a, 100);
        }
    }
    assert_int_equal(a->offset, target);
}

/* Checks ev against the appended event of its seq. */
static void assert_appended(const struct appended *a, const struct tl_event *ev)
{
    assert_true(ev->seq >= a->first);
    assert_true(ev->seq < a->first + a->count);
    assert_sample(ev, a->value_bytes[ev->seq - a->first]);
}

/* Reads events from seq until the reader returns 0, checks each and returns the count. */
static size_t read_appended(struct fixture *f, const struct appended *a, uint64_t seq)
{
    struct tl_wal_reader *r = NULL;
    assert_int_equal(tl_wal_reader_open(f->w, seq, &r, f->err, sizeof(f->err)), 0);
    size_t count = 0;
    for (;;) {
        struct tl_event *ev = NULL;
        int rc = tl_wal_reader_next(r, &ev, f->err, sizeof(f->err));
        if (rc < 0)
            fail_msg("tl_wal_reader_next returned %d after seq %" PRIu64 ": %s", rc,
                     seq + count, f->err);
        if (rc == 0)
            break;
        assert_int_equal(ev->seq, seq + count);
        assert_appended(a, ev);
        free(ev);
        count++;
    }
    tl_wal_reader_close(r);
    return count;
}

/*
 * A reader fills its buffer from the offset of the first record that the buffer does not hold
 * whole. The records are laid out so that the first block ends inside a record header, the
 * second inside a payload and the third exactly at a record boundary, where a record longer
 * than a block follows. The layout assumes that fill rule; the checks hold without it.
 */
static void reader_refills_across_blocks(void **state)
{
    struct fixture *f = *state;
    const uint64_t block = TL_WAL_READ_BLOCK_BYTES;
    load_config_sized(f, 8 * MIB, 2 * MIB, "");
    start_wal(f);
    struct appended a;
    appended_init(&a, tl_wal_next_seq(f->w));

    uint64_t header_cut = TL_WAL_SEGMENT_HEADER_BYTES + block - 8;
    append_until_offset(f, &a, header_cut);
    uint64_t payload_cut = header_cut + block - 40;
    append_until_offset(f, &a, payload_cut);
    uint64_t payload_cut_seq = a.first + a.count;
    uint64_t block_end = payload_cut + block;
    append_until_offset(f, &a, block_end);
    uint64_t large_seq = a.first + a.count;
    assert_int_not_equal(large_seq % 4, 2);
    append_sized(f, &a, block + block / 2);
    for (int i = 0; i < 2000; i++)
        append_sized(f, &a, 100);
    tl_wal_kick(f->w);
    uint64_t end = a.first + a.count;
    wait_acked(f, end);

    char path[256];
    segment_file(f, -1, path, sizeof(path));
    assert_int_equal(count_segment_files(f->wal_dir), 1);
    assert_int_equal(file_size(path), a.offset);

    assert_int_equal(read_appended(f, &a, a.first), a.count);
    assert_int_equal(read_appended(f, &a, payload_cut_seq + 1), end - payload_cut_seq - 1);
    assert_int_equal(read_appended(f, &a, large_seq), end - large_seq);
    assert_int_equal(read_appended(f, &a, large_seq + 1), end - large_seq - 1);
    appended_free(&a);
}

/* Reads from r until it returns 0, checking that events follow *next_seq on. */
static void read_available(struct fixture *f, struct tl_wal_reader *r,
                           const struct appended *a, uint64_t *next_seq)
{
    for (;;) {
        struct tl_event *ev = NULL;
        int rc = tl_wal_reader_next(r, &ev, f->err, sizeof(f->err));
        if (rc < 0)
            fail_msg("tl_wal_reader_next returned %d before seq %" PRIu64 ": %s", rc,
                     *next_seq, f->err);
        if (rc == 0)
            return;
        assert_int_equal(ev->seq, *next_seq);
        assert_appended(a, ev);
        free(ev);
        (*next_seq)++;
    }
}

/*
 * A reader at the end of the newest segment returns 0 and later reads what the WAL thread
 * appends, while it appends, so reads can meet records that are only partly written. The
 * appended records add up to more than a block.
 */
static void reader_sees_records_appended_after_end(void **state)
{
    struct fixture *f = *state;
    load_config_sized(f, 8 * MIB, 131072, "");
    start_wal(f);
    struct appended a;
    appended_init(&a, tl_wal_next_seq(f->w));
    for (int i = 0; i < 10; i++)
        append_sized(f, &a, 100);
    tl_wal_kick(f->w);
    wait_acked(f, a.first + a.count);

    struct tl_wal_reader *r = NULL;
    struct tl_event *ev = NULL;
    uint64_t next_seq = a.first;
    assert_int_equal(tl_wal_reader_open(f->w, a.first, &r, f->err, sizeof(f->err)), 0);
    read_available(f, r, &a, &next_seq);
    assert_int_equal(next_seq, a.first + 10);
    assert_int_equal(tl_wal_reader_next(r, &ev, f->err, sizeof(f->err)), 0);
    assert_int_equal(tl_wal_reader_position(r), a.first + 10);

    for (int i = 0; i < 9000; i++) {
        append_sized(f, &a, 100);
        if (i % 50 == 49) {
            tl_wal_kick(f->w);
            read_available(f, r, &a, &next_seq);
        }
    }
    tl_wal_kick(f->w);
    uint64_t end = a.first + a.count;
    wait_acked(f, end);
    assert_true(a.offset > TL_WAL_SEGMENT_HEADER_BYTES + TL_WAL_READ_BLOCK_BYTES);

    read_available(f, r, &a, &next_seq);
    assert_int_equal(next_seq, end);
    assert_int_equal(tl_wal_reader_position(r), end);
    assert_int_equal(tl_wal_reader_next(r, &ev, f->err, sizeof(f->err)), 0);
    tl_wal_reader_close(r);
    appended_free(&a);
}

/* ---- record codec -------------------------------------------------------------------- */

/* Encodes the sample for tag into buf. */
static void encode_sample(struct tl_buf *buf, uint64_t tag, size_t value_bytes)
{
    struct sample s;
    make_sample(&s, tag, value_bytes);
    s.ev.seq = tag;
    tl_wal_encode_record(&s.ev, buf);
    free_sample(&s);
}

/* Recomputes the CRC of the record at the start of buf after a test edited it. */
static void reseal_record(struct tl_buf *buf)
{
    uint32_t payload = (uint32_t)buf->data[0] | (uint32_t)buf->data[1] << 8 |
                       (uint32_t)buf->data[2] << 16 | (uint32_t)buf->data[3] << 24;
    uint32_t crc = tl_crc32c(0, buf->data + 8, 8 + (size_t)payload);
    for (int i = 0; i < 4; i++)
        buf->data[4 + i] = (uint8_t)(crc >> (8 * i));
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void record_round_trip_variants(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");

    /* Tags 1 to 12 cover every combination of key, value and header variants. */
    for (uint64_t tag = 1; tag <= 12; tag++) {
        struct tl_buf buf;
        tl_buf_init(&buf);
        encode_sample(&buf, tag, tag * 7);

        struct tl_event *ev = NULL;
        size_t used = 0;
        int rc = tl_wal_decode_record(buf.data, buf.len, 1 << 20, &f->cfg, &ev, &used, f->err,
                                      sizeof(f->err));
        assert_int_equal(rc, 1);
        assert_int_equal(used, buf.len);
        assert_int_equal(ev->seq, tag);
        assert_sample(ev, tag * 7);
        free(ev);
        tl_buf_free(&buf);
    }
}

static void record_without_config_topic_unknown(void **state)
{
    (void)state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 5, 3);

    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, NULL, 0),
                     1);
    assert_int_equal(ev->topic, -1);
    assert_string_equal(ev->topic_name, "events");
    free(ev);
    tl_buf_free(&buf);
}

static void record_prefix_needs_more_bytes(void **state)
{
    (void)state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 8, 40);

    for (size_t len = 0; len < buf.len; len++) {
        struct tl_event *ev = NULL;
        size_t used = 0;
        assert_int_equal(tl_wal_decode_record(buf.data, len, 1 << 20, NULL, &ev, &used, NULL, 0),
                         0);
        assert_null(ev);
    }
    tl_buf_free(&buf);
}

static void record_two_back_to_back(void **state)
{
    (void)state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 4, 9);
    size_t first_len = buf.len;
    encode_sample(&buf, 5, 9);

    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, NULL, 0),
                     1);
    assert_int_equal(used, first_len);
    assert_int_equal(ev->seq, 4);
    free(ev);
    assert_int_equal(tl_wal_decode_record(buf.data + used, buf.len - used, 1 << 20, NULL, &ev,
                                          &used, NULL, 0), 1);
    assert_int_equal(ev->seq, 5);
    free(ev);
    tl_buf_free(&buf);
}

static void record_bad_crc_rejected(void **state)
{
    struct fixture *f = *state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 6, 30);
    buf.data[buf.len - 1] ^= 0x01;

    struct tl_event *ev = NULL;
    size_t used = 0;
    int rc = tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, f->err,
                                  sizeof(f->err));
    assert_int_equal(rc, TL_EPROTO);
    assert_null(ev);
    assert_contains(f->err, "CRC");
    tl_buf_free(&buf);
}

static void record_crc_covers_sequence_number(void **state)
{
    (void)state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 6, 30);
    buf.data[8] ^= 0x80;

    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, NULL, 0),
                     TL_EPROTO);
    tl_buf_free(&buf);
}

static void record_length_over_limit_rejected(void **state)
{
    struct fixture *f = *state;
    /* Only the record header exists: the length must be refused before anything waits for
     * or allocates the 4 GiB it declares. */
    uint8_t header[TL_WAL_RECORD_HEADER_BYTES] = {0};
    put_le32(header, 0xFFFFFFF0u);

    struct tl_event *ev = NULL;
    size_t used = 0;
    int rc = tl_wal_decode_record(header, sizeof(header), 4096, NULL, &ev, &used, f->err,
                                  sizeof(f->err));
    assert_int_equal(rc, TL_EPROTO);
    assert_null(ev);
    assert_contains(f->err, "4294967280");
    assert_contains(f->err, "4096");
}

static void record_length_at_limit_accepted(void **state)
{
    (void)state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 3, 100);
    size_t payload = buf.len - TL_WAL_RECORD_HEADER_BYTES;

    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, payload, NULL, &ev, &used, NULL, 0),
                     1);
    free(ev);
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, payload - 1, NULL, &ev, &used, NULL,
                                          0), TL_EPROTO);
    tl_buf_free(&buf);
}

static void record_length_below_fixed_rejected(void **state)
{
    (void)state;
    uint8_t record[TL_WAL_RECORD_HEADER_BYTES + 8] = {0};
    put_le32(record, 8);

    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(record, sizeof(record), 1 << 20, NULL, &ev, &used,
                                          NULL, 0), TL_EPROTO);
}

/* Payload offsets of the fixed fields, as wal.h documents them. */
#define PAYLOAD_FLAGS 12
#define PAYLOAD_TOPIC_LEN 13
#define PAYLOAD_HEADER_COUNT 14
#define PAYLOAD_KEY_LEN 16
#define PAYLOAD_VALUE_LEN 20

/* Edits one byte or length of a valid record, reseals its CRC and expects TL_EPROTO. */
static void assert_edit_rejected(size_t field, uint32_t value, bool four_bytes,
                                 const char *expected_text)
{
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 6, 30); /* key, value, no headers */
    uint8_t *payload = buf.data + TL_WAL_RECORD_HEADER_BYTES;
    if (four_bytes)
        put_le32(payload + field, value);
    else
        payload[field] = (uint8_t)value;
    reseal_record(&buf);

    char err[256] = "";
    struct tl_event *ev = NULL;
    size_t used = 0;
    int rc = tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, err, sizeof(err));
    if (rc != TL_EPROTO)
        fail_msg("edit of payload byte %zu to %" PRIu32 " returned %d, expected TL_EPROTO",
                 field, value, rc);
    assert_null(ev);
    assert_contains(err, expected_text);
    tl_buf_free(&buf);
}

static void record_fields_overrun_rejected(void **state)
{
    (void)state;
    assert_edit_rejected(PAYLOAD_KEY_LEN, 1000, true, "overrun");
    assert_edit_rejected(PAYLOAD_KEY_LEN, 0xFFFFFFFFu, true, "overrun");
    assert_edit_rejected(PAYLOAD_VALUE_LEN, 31, true, "overrun");
    assert_edit_rejected(PAYLOAD_VALUE_LEN, 0xFFFFFFFFu, true, "overrun");
    assert_edit_rejected(PAYLOAD_TOPIC_LEN, 200, false, "overrun");
    assert_edit_rejected(PAYLOAD_TOPIC_LEN, 0, false, "overrun");
    assert_edit_rejected(PAYLOAD_HEADER_COUNT, 1, false, "header 0");
    assert_edit_rejected(PAYLOAD_HEADER_COUNT, 0xFF, false, "header 0");
}

static void record_key_without_flag_rejected(void **state)
{
    (void)state;
    assert_edit_rejected(PAYLOAD_FLAGS, 2, false, "no key flag");
}

/* Replaces byte `at` of the payload of a record for tag with a NUL and expects rejection. */
static void assert_nul_rejected(uint64_t tag, size_t at, const char *expected_text)
{
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, tag, 4);
    buf.data[TL_WAL_RECORD_HEADER_BYTES + at] = '\0';
    reseal_record(&buf);

    char err[256] = "";
    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, err,
                                          sizeof(err)), TL_EPROTO);
    assert_null(ev);
    assert_contains(err, expected_text);
    tl_buf_free(&buf);
}

static void record_nul_in_names_rejected(void **state)
{
    (void)state;
    /* The topic "events" starts right after the fixed fields. */
    assert_nul_rejected(5, TL_WAL_PAYLOAD_FIXED_BYTES, "topic name contains a NUL");
    assert_nul_rejected(5, TL_WAL_PAYLOAD_FIXED_BYTES + 3, "topic name contains a NUL");

    /* Tag 5 ends with the header "no-value" without a value: NUL its first name byte. */
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 5, 4);
    size_t payload = buf.len - TL_WAL_RECORD_HEADER_BYTES;
    tl_buf_free(&buf);
    assert_nul_rejected(5, payload - 8, "header 1 name contains a NUL");
}

static void record_header_overrun_rejected(void **state)
{
    (void)state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 5, 4); /* two headers; the second one is the last field */
    /* Second header: name length 8 ("no-value"), then its value length. */
    uint8_t *last = buf.data + buf.len - (6 + 8);
    put_le32(last + 2, 5);
    reseal_record(&buf);

    char err[256] = "";
    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, err,
                                          sizeof(err)), TL_EPROTO);
    assert_contains(err, "header 1");
    tl_buf_free(&buf);
}

static void record_trailing_bytes_rejected(void **state)
{
    (void)state;
    struct tl_buf buf;
    tl_buf_init(&buf);
    encode_sample(&buf, 6, 30);
    /* Three extra bytes inside the declared length, after the last field. */
    tl_buf_reserve(&buf, 3);
    memset(buf.data + buf.len, 0xAB, 3);
    buf.len += 3;
    put_le32(buf.data, (uint32_t)(buf.len - TL_WAL_RECORD_HEADER_BYTES));
    reseal_record(&buf);

    char err[256] = "";
    struct tl_event *ev = NULL;
    size_t used = 0;
    assert_int_equal(tl_wal_decode_record(buf.data, buf.len, 1 << 20, NULL, &ev, &used, err,
                                          sizeof(err)), TL_EPROTO);
    assert_contains(err, "3 bytes after its last field");
    tl_buf_free(&buf);
}

/* ---- recovery of a torn tail --------------------------------------------------------- */

/* Reopens after a test damaged the tail and checks that the records up to last_good survive,
 * that the file was truncated to end_bytes, and that appends continue at last_good + 1. */
static void assert_tail_recovered(struct fixture *f, const char *path, uint64_t last_good,
                                  uint64_t end_bytes)
{
    uint64_t damaged_bytes = file_size(path);
    int rc = open_wal(f, false);
    if (rc != 0)
        fail_msg("reopen after a torn tail returned %d: %s", rc, f->err);
    assert_int_equal(f->rec.torn_bytes, damaged_bytes - end_bytes);
    assert_int_equal(f->rec.next_seq, last_good + 1);
    assert_int_equal(f->rec.records, last_good);
    assert_int_equal(file_size(path), end_bytes);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);

    assert_int_equal(read_from(f, 1, 1, 200), last_good);
    uint64_t next = append_events(f, 2, 200);
    assert_int_equal(next, last_good + 1);
    wait_acked(f, next + 2);
    assert_int_equal(read_from(f, 1, 1, 200), last_good + 2);

    /* The repaired segment must also survive a second, clean restart. */
    close_wal(f);
    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.torn_bytes, 0);
    assert_int_equal(f->rec.next_seq, last_good + 3);
}

static void torn_last_record_truncated(void **state)
{
    struct fixture *f = *state;
    char path[256];
    uint64_t offsets[16];
    write_closed_segment(f, 6, path, sizeof(path), offsets);
    uint64_t size = file_size(path);

    uint64_t cut = offsets[5] + (size - offsets[5]) / 2;
    assert_int_equal(truncate(path, (off_t)cut), 0);

    assert_tail_recovered(f, path, 5, offsets[5]);
}

static void torn_record_header_truncated(void **state)
{
    struct fixture *f = *state;
    char path[256];
    uint64_t offsets[16];
    write_closed_segment(f, 6, path, sizeof(path), offsets);

    /* Ten bytes of the last record header remain. */
    assert_int_equal(truncate(path, (off_t)(offsets[5] + 10)), 0);

    assert_tail_recovered(f, path, 5, offsets[5]);
}

static void partial_header_garbage_dropped(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 6);
    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t size = file_size(path);

    const uint8_t junk[7] = {0x13, 0x37, 0xC0, 0xFF, 0xEE, 0x42, 0x99};
    append_bytes(path, junk, sizeof(junk));

    assert_tail_recovered(f, path, 6, size);
}

static void record_past_end_dropped(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 6);
    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t size = file_size(path);

    /* A record header declaring 500 bytes, followed by only 20 of them. */
    uint8_t junk[TL_WAL_RECORD_HEADER_BYTES + 20];
    memset(junk, 0x5A, sizeof(junk));
    put_le32(junk, 500);
    append_bytes(path, junk, sizeof(junk));

    assert_tail_recovered(f, path, 6, size);
}

/*
 * A torn record whose bytes contain one complete record image (an event value can contain
 * anything). A single valid record after a bad length is not proof of damage, so the tail is
 * still truncated as a torn write.
 */
static void torn_record_with_record_image_dropped(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 6);
    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t size = file_size(path);

    struct tl_buf image;
    tl_buf_init(&image);
    encode_sample(&image, 8, 40);
    uint8_t junk[TL_WAL_RECORD_HEADER_BYTES + 30 + 512 + 25];
    assert_true(image.len <= 512);
    memset(junk, 0x5A, sizeof(junk));
    put_le32(junk, 5000);
    memcpy(junk + TL_WAL_RECORD_HEADER_BYTES + 30, image.data, image.len);
    size_t junk_len = TL_WAL_RECORD_HEADER_BYTES + 30 + image.len + 25;
    append_bytes(path, junk, junk_len);
    tl_buf_free(&image);

    assert_tail_recovered(f, path, 6, size);
}

static void bad_crc_last_record_dropped(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 6);
    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t size = file_size(path);
    uint64_t offsets[16];
    assert_int_equal(record_offsets(path, offsets, 16), 6);

    /* The last record is complete but a payload byte never reached the disk. */
    flip_byte(path, size - 3);

    assert_tail_recovered(f, path, 5, offsets[5]);
}

static void zero_filled_tail_dropped(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 6);
    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t size = file_size(path);

    /* The file grew by a block that was never written. */
    uint8_t zeros[4096] = {0};
    append_bytes(path, zeros, sizeof(zeros));

    assert_tail_recovered(f, path, 6, size);
}

static void zeroed_last_record_dropped(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 6);
    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t size = file_size(path);
    uint64_t offsets[16];
    assert_int_equal(record_offsets(path, offsets, 16), 6);

    /* The last record's header reached the disk, the rest of its block reads as zeroes, and
     * the file size already covers a following block that was never written. */
    uint64_t from = offsets[5] + TL_WAL_RECORD_HEADER_BYTES + 4;
    uint8_t zeros[4096] = {0};
    write_at(path, from, zeros, (size_t)(size - from));
    append_bytes(path, zeros, sizeof(zeros));

    assert_tail_recovered(f, path, 5, offsets[5]);
}

static void torn_only_record_of_segment(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    /* Append 100 KiB events until the first one lands in a second segment. */
    uint64_t last = 0;
    while (count_segment_files(f->wal_dir) < 2) {
        assert_true(last < 40);
        assert_int_equal(append_one(f, 100 * 1024, &last), 0);
        tl_wal_kick(f->w);
        wait_acked(f, last + 1);
    }
    close_wal(f);

    /* The newest segment contains only that record. Tear it. */
    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t offsets[4];
    assert_int_equal(record_offsets(path, offsets, 4), 1);
    assert_int_equal(truncate(path, (off_t)(offsets[0] + 100)), 0);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.next_seq, last);
    assert_int_equal(file_size(path), TL_WAL_SEGMENT_HEADER_BYTES);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);
    uint64_t next = append_events(f, 1, 100 * 1024);
    assert_int_equal(next, last);
    wait_acked(f, last + 1);
    assert_int_equal(read_from(f, last - 1, last - 1, 100 * 1024), 2);
}

static void torn_segment_header_removed(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 4);

    /* A crash right after creating the next segment left 10 bytes of its header. */
    char path[256];
    snprintf(path, sizeof(path), "%s/%020d.wal", f->wal_dir, 5);
    uint8_t partial[10] = {'T', 'W', 'L', 'N', 'W', 'A', 'L', '1', 1, 0};
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, partial, sizeof(partial)), (ssize_t)sizeof(partial));
    close(fd);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.next_seq, 5);
    assert_int_equal(f->rec.records, 4);
    assert_int_equal(access(path, F_OK), -1);
}

/* ---- damage in the middle ------------------------------------------------------------ */

static void corrupt_middle_record_stops_open(void **state)
{
    struct fixture *f = *state;
    char path[256];
    uint64_t offsets[16];
    write_closed_segment(f, 8, path, sizeof(path), offsets);

    flip_byte(path, offsets[2] + TL_WAL_RECORD_HEADER_BYTES + 5);

    assert_int_equal(open_wal(f, false), TL_EPROTO);
    assert_null(f->w);
    assert_contains(f->err, path);
    char where[64];
    snprintf(where, sizeof(where), "byte offset %" PRIu64, offsets[2]);
    assert_contains(f->err, where);
    assert_contains(f->err, "--salvage-wal");
    /* Nothing was truncated or moved. */
    assert_int_equal(count_segment_files(f->wal_dir), 1);
}

/* A damaged length that runs past the end of the file, with valid records after it. */
static void damaged_length_mid_segment_stops_open(void **state)
{
    struct fixture *f = *state;
    char path[256];
    uint64_t offsets[16];
    write_closed_segment(f, 8, path, sizeof(path), offsets);
    uint64_t size = file_size(path);

    uint8_t length[4];
    put_le32(length, (uint32_t)(size - offsets[2] + 1000));
    write_at(path, offsets[2], length, sizeof(length));

    assert_int_equal(open_wal(f, false), TL_EPROTO);
    assert_null(f->w);
    assert_contains(f->err, path);
    char where[64];
    snprintf(where, sizeof(where), "byte offset %" PRIu64, offsets[2]);
    assert_contains(f->err, where);
    assert_contains(f->err, "valid records follow");
    /* Not truncated as a torn write. */
    assert_int_equal(file_size(path), size);
}

/*
 * A region cursor above the end of the WAL, as after losing the tail: new records must start a
 * segment of their own, so that the next open finds no gap inside a segment.
 */
static void cursor_above_wal_end_rolls_segment(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, 8, 200);
    wait_acked(f, first + 8);
    tl_wal_set_cursor(f->w, 0, first + 8);
    close_wal(f);

    char path[256];
    segment_file(f, -1, path, sizeof(path));
    uint64_t offsets[16];
    assert_int_equal(record_offsets(path, offsets, 16), 8);
    assert_int_equal(truncate(path, (off_t)offsets[3]), 0);

    start_wal(f);
    assert_int_equal(f->rec.next_seq, first + 8);
    assert_int_equal(append_events(f, 2, 200), first + 8);
    wait_acked(f, first + 10);
    close_wal(f);
    assert_int_equal(count_segment_files(f->wal_dir), 2);

    start_wal(f);
    assert_int_equal(f->rec.next_seq, first + 10);
    struct tl_wal_reader *reader;
    assert_int_equal(tl_wal_reader_open(f->w, first, &reader, f->err, sizeof(f->err)), 0);
    const uint64_t expected[] = {first, first + 1, first + 2, first + 8, first + 9};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        struct tl_event *ev = NULL;
        assert_int_equal(tl_wal_reader_next(reader, &ev, f->err, sizeof(f->err)), 1);
        assert_int_equal(ev->seq, expected[i]);
        free(ev);
    }
    tl_wal_reader_close(reader);
}

static void corrupt_middle_record_salvaged(void **state)
{
    struct fixture *f = *state;
    char path[256];
    uint64_t offsets[16];
    write_closed_segment(f, 8, path, sizeof(path), offsets);
    flip_byte(path, offsets[2] + TL_WAL_RECORD_HEADER_BYTES + 5);

    assert_int_equal(open_wal(f, true), 0);
    assert_int_equal(f->rec.salvaged_segments, 1);
    /* The two records before the damage stay; the damaged one and those after it are lost. */
    assert_int_equal(f->rec.records, 2);
    assert_true(f->rec.salvaged_events >= 6);
    /* The newest segment's unreadable end is counted from its size, as an upper bound. */
    assert_true(f->rec.salvaged_upper_bound);
    assert_int_equal(count_segment_files(f->wal_dir), 1);
    assert_int_equal(count_damaged_files(f), 1);

    /* Sequence numbers the moved segment held, or may have held, are never reused. */
    assert_true(f->rec.next_seq > 8);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);
    uint64_t seq = 0;
    assert_int_equal(append_one(f, 10, &seq), 0);
    assert_true(seq > 8);
    wait_acked(f, seq + 1);

    /* The kept records and the new one read back in order, across the gap. */
    struct tl_wal_reader *r = NULL;
    assert_int_equal(tl_wal_reader_open(f->w, 1, &r, f->err, sizeof(f->err)), 0);
    uint64_t got[4];
    size_t n = 0;
    struct tl_event *ev = NULL;
    while (n < 4 && tl_wal_reader_next(r, &ev, f->err, sizeof(f->err)) == 1) {
        got[n++] = ev->seq;
        free(ev);
    }
    tl_wal_reader_close(r);
    assert_int_equal(n, 3);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 2);
    assert_int_equal(got[2], seq);
    /* The new record went to a segment of its own, so the kept one has no gap inside. */
    assert_int_equal(count_segment_files(f->wal_dir), 2);
}

/* Events of 100 KiB (a quarter of them with a null value) that fill three 1 MiB segments. */
#define THREE_SEGMENT_EVENTS 35

/* Writes three segments of 100 KiB events and returns the first seq of the second. */
static uint64_t write_three_segments(struct fixture *f)
{
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, THREE_SEGMENT_EVENTS, 100 * 1024);
    wait_acked(f, first + THREE_SEGMENT_EVENTS);
    close_wal(f);
    assert_int_equal(count_segment_files(f->wal_dir), 3);

    char *names[MAX_SEGMENTS];
    size_t n = list_segment_files(f->wal_dir, names);
    uint64_t second = strtoull(names[1], NULL, 10);
    free_names(names, n);
    return second;
}

static void damaged_old_segment_stops_open(void **state)
{
    struct fixture *f = *state;
    write_three_segments(f);
    char path[256];
    segment_file(f, 0, path, sizeof(path));
    uint64_t offsets[16];
    size_t records = record_offsets(path, offsets, 16);
    assert_true(records > 2);

    /* The last record of an older segment: not a torn write, because newer data follows. */
    flip_byte(path, file_size(path) - 1);

    assert_int_equal(open_wal(f, false), TL_EPROTO);
    assert_contains(f->err, path);
    char where[64];
    snprintf(where, sizeof(where), "byte offset %" PRIu64, offsets[records - 1]);
    assert_contains(f->err, where);
}

static void truncated_old_segment_stops_open(void **state)
{
    struct fixture *f = *state;
    write_three_segments(f);
    char path[256];
    segment_file(f, 1, path, sizeof(path));
    uint64_t offsets[16];
    size_t records = record_offsets(path, offsets, 16);
    assert_true(records > 2);
    assert_int_equal(truncate(path, (off_t)(offsets[records - 1] + 50)), 0);

    assert_int_equal(open_wal(f, false), TL_EPROTO);
    assert_contains(f->err, path);
    char where[64];
    snprintf(where, sizeof(where), "byte offset %" PRIu64, offsets[records - 1]);
    assert_contains(f->err, where);
}

static void damaged_old_segment_salvaged(void **state)
{
    struct fixture *f = *state;
    uint64_t second = write_three_segments(f);
    char path[256];
    segment_file(f, 0, path, sizeof(path));
    flip_byte(path, TL_WAL_SEGMENT_HEADER_BYTES + 40);

    assert_int_equal(open_wal(f, true), 0);
    assert_int_equal(f->rec.salvaged_segments, 1);
    assert_int_equal(f->rec.salvaged_events, second - 1);
    assert_false(f->rec.salvaged_upper_bound);
    assert_int_equal(f->rec.first_seq, second);
    assert_int_equal(f->rec.next_seq, THREE_SEGMENT_EVENTS + 1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_damaged_files(f), 1);

    /* Regions restart at the oldest record still stored. */
    assert_int_equal(f->rec.cursor[0], second);
    assert_int_equal(f->rec.cursor[1], second);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);
    assert_int_equal(read_from(f, 1, second, 100 * 1024), THREE_SEGMENT_EVENTS + 1 - second);
}

static void damaged_segment_header_stops_open(void **state)
{
    struct fixture *f = *state;
    write_three_segments(f);
    char path[256];
    segment_file(f, 1, path, sizeof(path));
    flip_byte(path, 3);

    assert_int_equal(open_wal(f, false), TL_EPROTO);
    assert_contains(f->err, path);
    assert_contains(f->err, "segment header");
}

/* ---- quota --------------------------------------------------------------------------- */

static void quota_reject_until_deleted(void **state)
{
    struct fixture *f = *state;
    load_config(f, "max_bytes = 2097152; when_full = \"reject\";");
    start_wal(f);

    /* The 2 MiB quota has room for about 31 events of 64 KiB. */
    int rc = 0;
    size_t accepted = 0;
    while (accepted < 100) {
        rc = append_one(f, 64 * 1024, NULL);
        if (rc != 0)
            break;
        accepted++;
    }
    assert_int_equal(rc, TL_EAGAIN);
    assert_true(accepted > 20);
    assert_contains(f->err, "wal.max_bytes");
    assert_contains(f->err, "2097152");

    struct tl_wal_stats stats;
    tl_wal_get_stats(f->w, &stats);
    assert_int_equal(stats.rejected_full, 1);
    assert_int_equal(stats.appended, accepted);
    assert_true(stats.bytes <= 2 * MIB);
    assert_int_equal(append_one(f, 64 * 1024, NULL), TL_EAGAIN);
    tl_wal_get_stats(f->w, &stats);
    assert_int_equal(stats.rejected_full, 2);

    /* Both regions catch up; the WAL thread persists the cursors and deletes old segments. */
    uint64_t next = tl_wal_next_seq(f->w);
    wait_acked(f, next);
    tl_wal_set_cursor(f->w, 0, next);
    tl_wal_set_cursor(f->w, 1, next);
    wait_segments_at_most(f, 1);

    uint64_t seq = 0;
    assert_int_equal(append_one(f, 64 * 1024, &seq), 0);
    assert_int_equal(seq, next);
    assert_int_equal(append_events(f, 5, 64 * 1024), next + 1);
}

static void quota_shed_drops_oldest(void **state)
{
    struct fixture *f = *state;
    load_config(f, "max_bytes = 2097152; when_full = \"shed\";");
    start_wal(f);

    struct tl_wal_reader *early = NULL;
    assert_int_equal(tl_wal_reader_open(f->w, 1, &early, f->err, sizeof(f->err)), 0);

    /* East keeps up with every event; west has none of them. */
    for (int i = 0; i < 60; i++) {
        uint64_t seq = 0;
        int rc = append_one(f, 64 * 1024, &seq);
        if (rc != 0)
            fail_msg("append %d returned %d with when_full shed: %s", i, rc, f->err);
        tl_wal_kick(f->w);
        wait_acked(f, seq + 1);
        tl_wal_set_cursor(f->w, 0, seq + 1);
        if (i == 1) {
            struct tl_event *ev = NULL;
            assert_int_equal(tl_wal_reader_next(early, &ev, f->err, sizeof(f->err)), 1);
            assert_int_equal(ev->seq, 1);
            free(ev);
        }
    }

    uint64_t floor = tl_wal_floor(f->w);
    assert_true(floor > 1);
    struct tl_wal_stats stats;
    tl_wal_get_stats(f->w, &stats);
    assert_int_equal(stats.shed[1], floor - 1);
    assert_int_equal(stats.shed[0], 0);
    assert_int_equal(stats.rejected_full, 0);
    assert_int_equal(stats.appended, 60);
    assert_true(stats.bytes <= 2 * MIB);

    /* A reader that was below the floor continues at the floor. */
    struct tl_event *ev = NULL;
    assert_int_equal(tl_wal_reader_next(early, &ev, f->err, sizeof(f->err)), 1);
    assert_int_equal(ev->seq, floor);
    assert_sample(ev, 64 * 1024);
    free(ev);
    tl_wal_reader_close(early);

    /* A reader opened below the floor starts there, and reads to the end. */
    assert_int_equal(read_from(f, 1, floor, 64 * 1024), 61 - floor);
}

static void quota_shed_before_written(void **state)
{
    struct fixture *f = *state;
    load_config(f, "max_bytes = 2097152; when_full = \"shed\";");
    assert_int_equal(open_wal(f, false), 0);

    /* The WAL thread has not run yet, so the shed segments were never written. */
    for (int i = 0; i < 60; i++) {
        int rc = append_one(f, 64 * 1024, NULL);
        if (rc != 0)
            fail_msg("append %d returned %d with when_full shed: %s", i, rc, f->err);
    }
    uint64_t floor = tl_wal_floor(f->w);
    assert_true(floor > 1);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);
    wait_acked(f, 61);

    struct tl_wal_stats stats;
    tl_wal_get_stats(f->w, &stats);
    assert_true(stats.bytes <= 2 * MIB);
    close_wal(f);

    /* No shed segment came back: the oldest file on disk starts at the floor. */
    char path[256], want[256];
    segment_file(f, 0, path, sizeof(path));
    snprintf(want, sizeof(want), "%s/%020" PRIu64 ".wal", f->wal_dir, floor);
    assert_string_equal(path, want);
    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.first_seq, floor);
}

/* ---- cursors and segment deletion ---------------------------------------------------- */

static void cursors_persist_across_reopen(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, 10, 100);
    wait_acked(f, first + 10);
    tl_wal_set_cursor(f->w, 0, 7);
    tl_wal_set_cursor(f->w, 1, 4);
    assert_int_equal(tl_wal_cursor(f->w, 0), 7);
    close_wal(f);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.cursor[0], 7);
    assert_int_equal(f->rec.cursor[1], 4);
    assert_int_equal(tl_wal_cursor(f->w, 0), 7);
    assert_int_equal(tl_wal_cursor(f->w, 1), 4);
    assert_int_equal(f->rec.next_seq, 11);
}

static void cursors_default_to_oldest_record(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 3);
    char path[128];
    snprintf(path, sizeof(path), "%s/cursors", f->wal_dir);
    unlink(path);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.cursor[0], 1);
    assert_int_equal(f->rec.cursor[1], 1);
}

/*
 * A stop while the reclaim thread shrank an acknowledged segment leaves it renamed and short.
 * The next start removes it instead of reading it as a damaged segment.
 */
static void interrupted_deletion_removed_at_open(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 3);
    char path[160];
    snprintf(path, sizeof(path), "%s/%020d.wal.deleting", f->wal_dir, 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "torn", 4), 4);
    close(fd);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(f->rec.next_seq, 4);
}

static void acknowledged_segments_deleted(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, 45, 100 * 1024);
    wait_acked(f, first + 45);
    char *names[MAX_SEGMENTS];
    size_t n = list_segment_files(f->wal_dir, names);
    assert_true(n >= 4);
    uint64_t third = strtoull(names[2], NULL, 10);
    free_names(names, n);

    /* East has everything; west has everything before the third segment. */
    tl_wal_set_cursor(f->w, 0, first + 45);
    tl_wal_set_cursor(f->w, 1, third);
    wait_segments_at_most(f, n - 2);
    assert_int_equal(count_segment_files(f->wal_dir), n - 2);
    assert_int_equal(tl_wal_floor(f->w), third);
    assert_int_equal(read_from(f, 1, third, 100 * 1024), first + 45 - third);

    /* A cursor inside the third segment keeps it. */
    tl_wal_set_cursor(f->w, 1, third + 1);
    close_wal(f);
    assert_int_equal(count_segment_files(f->wal_dir), n - 2);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.first_seq, third);
    assert_int_equal(f->rec.cursor[1], third + 1);
    assert_int_equal(f->rec.next_seq, first + 45);
}

/* ---- sequence numbers across restarts ------------------------------------------------ */

static void sequence_continues_after_reopen(void **state)
{
    struct fixture *f = *state;
    write_closed_wal(f, 5);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.next_seq, 6);
    assert_int_equal(f->rec.first_seq, 1);
    assert_int_equal(f->rec.records, 5);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);
    assert_int_equal(append_events(f, 3, 200), 6);
    wait_acked(f, 9);
    assert_int_equal(read_from(f, 1, 1, 200), 8);
    close_wal(f);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.next_seq, 9);
    assert_int_equal(count_segment_files(f->wal_dir), 1);
}

static void sequence_continues_without_segments(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    uint64_t first = append_events(f, 7, 100);
    wait_acked(f, first + 7);
    tl_wal_set_cursor(f->w, 0, first + 7);
    tl_wal_set_cursor(f->w, 1, first + 7);
    close_wal(f);

    /* Every region had every event, and the segments are gone. */
    char *names[MAX_SEGMENTS];
    size_t n = list_segment_files(f->wal_dir, names);
    for (size_t i = 0; i < n; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", f->wal_dir, names[i]);
        assert_int_equal(unlink(path), 0);
    }
    free_names(names, n);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.segments, 0);
    assert_int_equal(f->rec.next_seq, 8);
    assert_int_equal(f->rec.first_seq, 8);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);
    assert_int_equal(append_events(f, 2, 100), 8);
    wait_acked(f, 10);
    assert_int_equal(read_from(f, 1, 8, 100), 2);
}

static void start_close_without_appends(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    /* Long enough for the WAL thread to wake with nothing to write. */
    usleep(300 * 1000);
    close_wal(f);

    assert_int_equal(count_segment_files(f->wal_dir), 0);
    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.next_seq, 1);
}

static void close_writes_pending_events(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    start_wal(f);
    /* No kick and no wait: close itself must write the batch. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(append_one(f, 300, NULL), 0);
    close_wal(f);

    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.records, 5);
    assert_int_equal(f->rec.next_seq, 6);
    assert_int_equal(tl_wal_start(f->w, f->err, sizeof(f->err)), 0);
    assert_int_equal(read_from(f, 1, 1, 300), 5);
}

static void empty_directory_starts_at_one(void **state)
{
    struct fixture *f = *state;
    load_config(f, "");
    assert_int_equal(open_wal(f, false), 0);
    assert_int_equal(f->rec.segments, 0);
    assert_int_equal(f->rec.next_seq, 1);
    assert_int_equal(f->rec.first_seq, 1);
    assert_int_equal(tl_wal_next_seq(f->w), 1);
    assert_int_equal(tl_wal_floor(f->w), 1);
}

/* fsync durations: a nanosecond part that wraps at a second boundary stays correct. */
static void elapsed_us_across_second(void **state)
{
    (void)state;
    struct timespec start = {.tv_sec = 5, .tv_nsec = 999900000};
    struct timespec end = {.tv_sec = 6, .tv_nsec = 100000};
    assert_int_equal(tl_elapsed_us(&start, &end), 200);
    assert_int_equal(tl_elapsed_us(&end, &start), -200);
    struct timespec later = {.tv_sec = 8, .tv_nsec = 0};
    assert_int_equal(tl_elapsed_us(&start, &later), 2000100);
}

int main(void)
{
    tl_log_set_level(TL_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(elapsed_us_across_second),
#define WAL_TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        WAL_TEST(append_then_read_from_first),
        WAL_TEST(read_from_middle_seq),
        WAL_TEST(reader_waits_for_new_events),
        WAL_TEST(read_across_several_segments),
        WAL_TEST(reader_refills_across_blocks),
        WAL_TEST(reader_sees_records_appended_after_end),
        WAL_TEST(record_round_trip_variants),
        WAL_TEST(record_without_config_topic_unknown),
        WAL_TEST(record_prefix_needs_more_bytes),
        WAL_TEST(record_two_back_to_back),
        WAL_TEST(record_bad_crc_rejected),
        WAL_TEST(record_crc_covers_sequence_number),
        WAL_TEST(record_length_over_limit_rejected),
        WAL_TEST(record_length_at_limit_accepted),
        WAL_TEST(record_length_below_fixed_rejected),
        WAL_TEST(record_fields_overrun_rejected),
        WAL_TEST(record_key_without_flag_rejected),
        WAL_TEST(record_nul_in_names_rejected),
        WAL_TEST(record_header_overrun_rejected),
        WAL_TEST(record_trailing_bytes_rejected),
        WAL_TEST(torn_last_record_truncated),
        WAL_TEST(torn_record_header_truncated),
        WAL_TEST(partial_header_garbage_dropped),
        WAL_TEST(record_past_end_dropped),
        WAL_TEST(torn_record_with_record_image_dropped),
        WAL_TEST(bad_crc_last_record_dropped),
        WAL_TEST(zero_filled_tail_dropped),
        WAL_TEST(zeroed_last_record_dropped),
        WAL_TEST(torn_only_record_of_segment),
        WAL_TEST(torn_segment_header_removed),
        WAL_TEST(corrupt_middle_record_stops_open),
        WAL_TEST(damaged_length_mid_segment_stops_open),
        WAL_TEST(cursor_above_wal_end_rolls_segment),
        WAL_TEST(corrupt_middle_record_salvaged),
        WAL_TEST(damaged_old_segment_stops_open),
        WAL_TEST(truncated_old_segment_stops_open),
        WAL_TEST(damaged_old_segment_salvaged),
        WAL_TEST(damaged_segment_header_stops_open),
        WAL_TEST(quota_reject_until_deleted),
        WAL_TEST(quota_shed_drops_oldest),
        WAL_TEST(quota_shed_before_written),
        WAL_TEST(cursors_persist_across_reopen),
        WAL_TEST(cursors_default_to_oldest_record),
        WAL_TEST(acknowledged_segments_deleted),
        WAL_TEST(interrupted_deletion_removed_at_open),
        WAL_TEST(sequence_continues_after_reopen),
        WAL_TEST(sequence_continues_without_segments),
        WAL_TEST(empty_directory_starts_at_one),
        WAL_TEST(start_close_without_appends),
        WAL_TEST(close_writes_pending_events),
#undef WAL_TEST
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
