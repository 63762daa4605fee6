/*
 * Write-ahead log: record codec, recovery, group commit, cursors, quota and readers.
 * The on-disk format is documented in wal.h.
 *
 * Locking: `lock` guards the segment list, the batch list, cursors' persisted copy and the
 * counters; append (event loop) and the WAL thread meet only there. Positions that other
 * threads poll (ack_seq, written_seq, floor, cursors) are atomics.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "error.h"
#include "log.h"
#include "mem.h"

static const char SEGMENT_MAGIC[8] = {'T', 'W', 'L', 'N', 'W', 'A', 'L', '1'};
#define SEGMENT_VERSION 1
#define CURSOR_PERSIST_MS 200
/* Unwritten batches in memory; past this, appends wait (back-pressure) instead of growing. */
#define MAX_UNWRITTEN_BYTES (64u << 20)
#define TRUNCATE_STEP_BYTES ((off_t)4 << 20)
#define TRUNCATE_PAUSE_US 2000
/* Name suffix of an acknowledged segment the reclaim thread is deleting. */
#define RECLAIM_SUFFIX ".deleting"
#define NULL_VALUE_LEN 0xFFFFFFFFu
/* Smallest record the recovery scan accepts: record header plus the fixed payload fields. */
#define MIN_RECORD_BYTES (TL_WAL_RECORD_HEADER_BYTES + TL_WAL_PAYLOAD_FIXED_BYTES)

struct segment {
    uint64_t first_seq;
    uint64_t bytes;
    char *path;
};

/* Encoded records bound for one segment. */
struct batch {
    uint64_t segment_seq;   /* segment the records belong to */
    uint64_t end_seq;       /* one past the last record's sequence number */
    struct tl_buf data;
};

struct tl_wal {
    const struct tl_config *cfg;
    char *dir;
    int notify_fd;
    pthread_mutex_t waiters_lock;  /* waiter_fds and waiter_count */
    int waiter_fds[TL_WAL_MAX_WAITERS]; /* also written when ack_seq advances */
    size_t waiter_count;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    struct segment *segments;      /* ascending first_seq; the last one is being appended to */
    size_t segment_count;
    size_t segment_cap;
    struct batch *batches;         /* written by the WAL thread in order */
    size_t batch_count;
    size_t batch_cap;
    uint64_t unwritten_bytes;
    uint64_t disk_bytes;           /* sum of segments[].bytes */
    uint64_t append_segment_bytes; /* size the newest segment will have once batches land */
    bool force_roll;               /* start a new segment at the next append (after salvage) */
    struct tl_wal_stats stats;

    /* Event loop thread only. */
    uint64_t next_seq;
    struct tl_ratelimit full_log;

    /* WAL thread only. */
    int fd;                        /* newest segment, open for appending */
    uint64_t fd_segment_seq;
    int64_t last_fsync_ms;
    int64_t last_persist_ms;
    int last_errno;                /* of the last failed write, fsync or file operation */
    uint64_t persisted_cursor[TL_REGION_COUNT];
    struct tl_ratelimit io_log;

    /*
     * Acknowledged segments waiting to be unlinked by the reclaim thread, which takes w->lock
     * only to move their bytes out of the quota. Lock order: lock, then reclaim_lock.
     */
    pthread_t reclaim_thread;
    bool reclaim_started;
    pthread_mutex_t reclaim_lock;
    pthread_cond_t reclaim_wake;
    bool reclaim_stopping;
    struct segment *reclaim;
    size_t reclaim_count;
    size_t reclaim_cap;

    atomic_int failing_errno;      /* errno of the last failed write or fsync; 0 after success */
    _Atomic uint64_t ack_seq;
    _Atomic uint64_t written_seq;
    _Atomic uint64_t floor;
    _Atomic uint64_t cursor[TL_REGION_COUNT];
};

/*
 * buf contains bytes buf_offset..buf_offset+buf_len of the open segment as they were when read,
 * and offset lies in that range. Written bytes never change, so records decoded from buf match
 * the file, but the file may have grown since the read.
 */
struct tl_wal_reader {
    struct tl_wal *w;
    int fd;
    uint64_t segment_seq;   /* first_seq of the open segment */
    uint64_t offset;        /* byte offset of the next record in it */
    uint64_t next_seq;      /* sequence number expected next */
    uint8_t *buf;
    size_t buf_cap;
    uint64_t buf_offset;    /* byte offset in the segment of buf[0] */
    size_t buf_len;
};

/* ---- little-endian helpers ----------------------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---- record codec -------------------------------------------------------------------- */

static size_t payload_size(const struct tl_event *ev)
{
    size_t n = TL_WAL_PAYLOAD_FIXED_BYTES + strlen(ev->topic_name) + ev->key_len +
               (ev->value ? ev->value_len : 0);
    for (size_t h = 0; h < ev->header_count; h++)
        n += 6 + strlen(ev->headers[h].name) + (ev->headers[h].value ? ev->headers[h].value_len : 0);
    return n;
}

void tl_wal_encode_record(const struct tl_event *ev, struct tl_buf *out)
{
    size_t payload = payload_size(ev);
    size_t topic_len = strlen(ev->topic_name);

    tl_buf_reserve(out, TL_WAL_RECORD_HEADER_BYTES + payload);
    uint8_t *rec = out->data + out->len;
    uint8_t *p = rec + TL_WAL_RECORD_HEADER_BYTES;

    put_u32(rec, (uint32_t)payload);
    put_u64(rec + 8, ev->seq);
    put_u64(p, (uint64_t)ev->ingest_ms);
    put_u32(p + 8, (uint32_t)ev->partition);
    p[12] = (uint8_t)((ev->has_key ? 1 : 0) | (ev->value ? 2 : 0));
    p[13] = (uint8_t)topic_len;
    put_u16(p + 14, (uint16_t)ev->header_count);
    put_u32(p + 16, (uint32_t)ev->key_len);
    put_u32(p + 20, (uint32_t)(ev->value ? ev->value_len : 0));
    p += TL_WAL_PAYLOAD_FIXED_BYTES;
    memcpy(p, ev->topic_name, topic_len);
    p += topic_len;
    if (ev->key_len)
        memcpy(p, ev->key, ev->key_len);
    p += ev->key_len;
    if (ev->value && ev->value_len)
        memcpy(p, ev->value, ev->value_len);
    p += ev->value ? ev->value_len : 0;
    for (size_t h = 0; h < ev->header_count; h++) {
        size_t name_len = strlen(ev->headers[h].name);
        size_t value_len = ev->headers[h].value ? ev->headers[h].value_len : 0;
        put_u16(p, (uint16_t)name_len);
        put_u32(p + 2, ev->headers[h].value ? (uint32_t)value_len : NULL_VALUE_LEN);
        memcpy(p + 6, ev->headers[h].name, name_len);
        if (value_len)
            memcpy(p + 6 + name_len, ev->headers[h].value, value_len);
        p += 6 + name_len + value_len;
    }

    put_u32(rec + 4, tl_crc32c(0, rec + 8, 8 + payload));
    out->len += TL_WAL_RECORD_HEADER_BYTES + payload;
}

int tl_wal_decode_record(const uint8_t *buf, size_t len, size_t max_payload,
                         const struct tl_config *cfg, struct tl_event **out, size_t *consumed,
                         char *err, size_t errsize)
{
    if (len < TL_WAL_RECORD_HEADER_BYTES)
        return 0;
    uint32_t payload = get_u32(buf);
    if (payload < TL_WAL_PAYLOAD_FIXED_BYTES || payload > max_payload)
        return tl_error(err, errsize, TL_EPROTO, "record length %" PRIu32 " is outside 24..%zu",
                        payload, max_payload);
    if (len - TL_WAL_RECORD_HEADER_BYTES < payload)
        return 0;
    uint32_t crc = get_u32(buf + 4);
    uint32_t actual = tl_crc32c(0, buf + 8, 8 + (size_t)payload);
    if (crc != actual)
        return tl_error(err, errsize, TL_EPROTO, "record CRC mismatch (stored %08" PRIx32
                        ", computed %08" PRIx32 ")", crc, actual);

    const uint8_t *p = buf + TL_WAL_RECORD_HEADER_BYTES;
    const uint8_t *end = p + payload;
    uint8_t flags = p[12];
    size_t topic_len = p[13];
    size_t header_count = get_u16(p + 14);
    size_t key_len = get_u32(p + 16);
    size_t value_len = get_u32(p + 20);
    const uint8_t *q = p + TL_WAL_PAYLOAD_FIXED_BYTES;

    /* Every length is checked against what remains before it is used. */
    if (topic_len == 0 || (size_t)(end - q) < topic_len || (size_t)(end - q) - topic_len < key_len ||
        (size_t)(end - q) - topic_len - key_len < value_len)
        return tl_error(err, errsize, TL_EPROTO, "record fields overrun its length");
    if (!(flags & 1) && key_len)
        return tl_error(err, errsize, TL_EPROTO, "record has key bytes but no key flag");
    /* Names become C strings, so a NUL byte would silently shorten them. */
    if (memchr(q, '\0', topic_len))
        return tl_error(err, errsize, TL_EPROTO, "record topic name contains a NUL byte");

    const uint8_t *hp = q + topic_len + key_len + value_len;
    size_t names_len = 0;
    size_t values_len = 0;
    for (size_t h = 0; h < header_count; h++) {
        if ((size_t)(end - hp) < 6)
            return tl_error(err, errsize, TL_EPROTO, "record header %zu overruns its length", h);
        size_t n = get_u16(hp);
        uint32_t v = get_u32(hp + 2);
        size_t vl = v == NULL_VALUE_LEN ? 0 : v;
        if (n == 0 || (size_t)(end - hp) - 6 < n || (size_t)(end - hp) - 6 - n < vl)
            return tl_error(err, errsize, TL_EPROTO, "record header %zu overruns its length", h);
        if (memchr(hp + 6, '\0', n))
            return tl_error(err, errsize, TL_EPROTO, "record header %zu name contains a NUL byte",
                            h);
        names_len += n + 1;
        values_len += vl;
        hp += 6 + n + vl;
    }
    if (hp != end)
        return tl_error(err, errsize, TL_EPROTO, "record has %zu bytes after its last field",
                        (size_t)(end - hp));

    size_t size = sizeof(struct tl_event) + header_count * sizeof(struct tl_header) +
                  topic_len + 1 + key_len + value_len + names_len + values_len;
    struct tl_event *ev = tl_xcalloc(1, size);
    ev->headers = (struct tl_header *)(ev + 1);
    uint8_t *dst = (uint8_t *)(ev->headers + header_count);

    ev->seq = get_u64(buf + 8);
    ev->ingest_ms = (int64_t)get_u64(p);
    ev->partition = (int32_t)get_u32(p + 8);
    memcpy(dst, q, topic_len);
    dst[topic_len] = '\0';
    ev->topic_name = (const char *)dst;
    ev->topic = cfg ? tl_config_topic_index(cfg, ev->topic_name) : -1;
    dst += topic_len + 1;
    q += topic_len;
    ev->has_key = flags & 1;
    ev->key = dst;
    ev->key_len = key_len;
    memcpy(dst, q, key_len);
    dst += key_len;
    q += key_len;
    if (flags & 2) {
        ev->value = dst;
        ev->value_len = value_len;
    }
    memcpy(dst, q, value_len);
    dst += value_len;
    q += value_len;
    ev->header_count = header_count;
    for (size_t h = 0; h < header_count; h++) {
        size_t n = get_u16(q);
        uint32_t v = get_u32(q + 2);
        size_t vl = v == NULL_VALUE_LEN ? 0 : v;
        memcpy(dst, q + 6, n);
        dst[n] = '\0';
        ev->headers[h].name = (const char *)dst;
        dst += n + 1;
        if (v != NULL_VALUE_LEN) {
            memcpy(dst, q + 6 + n, vl);
            ev->headers[h].value = dst;
            ev->headers[h].value_len = vl;
            dst += vl;
        }
        q += 6 + n + vl;
    }
    ev->bytes = key_len + value_len + names_len + values_len;

    *out = ev;
    *consumed = TL_WAL_RECORD_HEADER_BYTES + payload;
    return 1;
}

/* Largest payload any valid record can have: the biggest event plus its fixed fields. */
static size_t max_payload(const struct tl_config *cfg)
{
    return cfg->max_event_bytes + TL_WAL_PAYLOAD_FIXED_BYTES + TL_TOPIC_NAME_MAX + 6 * 65535;
}

/* ---- segment files ------------------------------------------------------------------- */

static char *segment_path(const char *dir, uint64_t first_seq)
{
    size_t len = strlen(dir) + 32;
    char *path = tl_xmalloc(len);
    snprintf(path, len, "%s/%020" PRIu64 ".wal", dir, first_seq);
    return path;
}

static void encode_segment_header(uint8_t *h, uint64_t first_seq)
{
    memset(h, 0, TL_WAL_SEGMENT_HEADER_BYTES);
    memcpy(h, SEGMENT_MAGIC, 8);
    put_u32(h + 8, SEGMENT_VERSION);
    put_u32(h + 12, TL_WAL_SEGMENT_HEADER_BYTES);
    put_u64(h + 16, first_seq);
    put_u32(h + 24, tl_crc32c(0, h, 24));
}

static bool segment_header_valid(const uint8_t *h, uint64_t expected_seq)
{
    return memcmp(h, SEGMENT_MAGIC, 8) == 0 && get_u32(h + 8) == SEGMENT_VERSION &&
           get_u32(h + 12) == TL_WAL_SEGMENT_HEADER_BYTES && get_u64(h + 16) == expected_seq &&
           get_u32(h + 24) == tl_crc32c(0, h, 24);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void segments_push(struct tl_wal *w, uint64_t first_seq, uint64_t bytes)
{
    if (w->segment_count == w->segment_cap) {
        w->segment_cap = w->segment_cap ? w->segment_cap * 2 : 16;
        w->segments = tl_xrealloc(w->segments, w->segment_cap * sizeof(*w->segments));
    }
    w->segments[w->segment_count++] = (struct segment){
        .first_seq = first_seq, .bytes = bytes, .path = segment_path(w->dir, first_seq)};
    w->disk_bytes += bytes;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Lists segment file names as sequence numbers, ascending. Removes the segments that the
 * reclaim thread had renamed for deletion (RECLAIM_SUFFIX) when the agent stopped: every
 * region had their events.
 */
static int list_segments(const char *dir, uint64_t **out, size_t *count, char *err, size_t errsize)
{
    DIR *d = opendir(dir);
    if (!d)
        return tl_error(err, errsize, TL_EIO, "cannot read WAL directory %s: %s", dir,
                        strerror(errno));
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (strspn(de->d_name, "0123456789") != 20)
            continue;
        if (strcmp(de->d_name + 20, ".wal" RECLAIM_SUFFIX) == 0) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            if (unlink(path) == 0)
                tl_log_info("wal", "removed an acknowledged segment whose deletion a stop "
                            "interrupted file=%s", path);
            continue;
        }
        if (len != 24 || strcmp(de->d_name + 20, ".wal") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            seqs = tl_xrealloc(seqs, cap * sizeof(*seqs));
        }
        seqs[n++] = strtoull(de->d_name, NULL, 10);
    }
    closedir(d);
    if (n)
        qsort(seqs, n, sizeof(*seqs), compare_u64);
    *out = seqs;
    *count = n;
    return 0;
}

/* ---- recovery ------------------------------------------------------------------------ */

/* Outcome of scanning one segment. */
struct scan {
    uint64_t records;
    uint64_t end_seq;      /* one past the last good record */
    uint64_t good_bytes;   /* file offset after the last good record */
    uint64_t file_bytes;
    bool damaged;          /* a bad record with more bytes after it */
    bool torn;             /* a bad or partial record that runs to the end of the file */
    char why[256];
};

/* Returns true when every byte from offset to the end of the file is zero. */
static bool zero_to_end(int fd, uint64_t offset)
{
    uint8_t z[4096];
    uint64_t at = offset;
    ssize_t got;
    bool zero = true;
    while (zero && (got = pread(fd, z, sizeof(z), (off_t)at)) > 0) {
        for (ssize_t i = 0; i < got && zero; i++)
            zero = z[i] == 0;
        at += (uint64_t)got;
    }
    return zero;
}

/* Returns whether a whole record with sequence number seq and a valid CRC starts at buf[at]. */
static bool record_valid_at(const uint8_t *buf, size_t len, size_t at, uint64_t seq,
                            size_t limit)
{
    if (at + MIN_RECORD_BYTES > len)
        return false;
    uint32_t payload = get_u32(buf + at);
    if (get_u64(buf + at + 8) != seq || payload < TL_WAL_PAYLOAD_FIXED_BYTES ||
        payload > limit || payload > len - at - TL_WAL_RECORD_HEADER_BYTES)
        return false;
    return tl_crc32c(0, buf + at + 8, 8 + (size_t)payload) == get_u32(buf + at + 4);
}

/*
 * Looks for valid records in [from, end) of the file, after the bad record bad_seq. A torn
 * write leaves nothing valid after itself, so such records show that the bad record is
 * damage, for example a flipped bit in its length field. A candidate counts when it ends the
 * file or the next record follows it, so that bytes inside an event's value that happen to
 * look like one record are not enough. Returns 1 when found, 0 when not, and -1 when the
 * bytes cannot be read.
 */
static int valid_record_after(int fd, uint64_t from, uint64_t end, uint64_t bad_seq,
                              size_t limit)
{
    if (end <= from || end - from < MIN_RECORD_BYTES)
        return 0;
    size_t len = (size_t)(end - from);
    uint8_t *buf = malloc(len);
    if (!buf || pread(fd, buf, len, (off_t)from) != (ssize_t)len) {
        free(buf);
        return -1;
    }
    /* Records after the bad one: at most one per MIN_RECORD_BYTES of the rest of the file. */
    uint64_t max_seq = bad_seq + len / MIN_RECORD_BYTES + 1;
    int found = 0;
    for (size_t at = 0; !found && at + MIN_RECORD_BYTES <= len; at++) {
        uint64_t seq = get_u64(buf + at + 8);
        if (seq <= bad_seq || seq > max_seq || !record_valid_at(buf, len, at, seq, limit))
            continue;
        size_t next = at + TL_WAL_RECORD_HEADER_BYTES + get_u32(buf + at);
        found = next == len || record_valid_at(buf, len, next, seq + 1, limit);
    }
    free(buf);
    return found;
}

static int scan_segment(struct tl_wal *w, const char *path, uint64_t first_seq, struct scan *s,
                        char *err, size_t errsize)
{
    memset(s, 0, sizeof(*s));
    s->end_seq = first_seq;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "cannot open WAL segment %s: %s", path,
                        strerror(errno));
    struct stat st;
    fstat(fd, &st);
    s->file_bytes = (uint64_t)st.st_size;

    uint8_t header[TL_WAL_SEGMENT_HEADER_BYTES];
    ssize_t n = pread(fd, header, sizeof(header), 0);
    if (n != (ssize_t)sizeof(header) || !segment_header_valid(header, first_seq)) {
        close(fd);
        s->good_bytes = 0;
        /* A crash right after creating the file leaves a short or empty header. */
        s->torn = n >= 0 && (size_t)n < sizeof(header);
        s->damaged = !s->torn;
        snprintf(s->why, sizeof(s->why), "invalid segment header");
        return 0;
    }

    size_t cap = 1 << 20;
    uint8_t *buf = tl_xmalloc(cap);
    size_t limit = max_payload(w->cfg);
    uint64_t offset = TL_WAL_SEGMENT_HEADER_BYTES;
    s->good_bytes = offset;
    for (;;) {
        uint8_t rh[TL_WAL_RECORD_HEADER_BYTES];
        n = pread(fd, rh, sizeof(rh), (off_t)offset);
        if (n == 0)
            break;
        if (n < (ssize_t)sizeof(rh)) {
            s->torn = true;
            snprintf(s->why, sizeof(s->why), "partial record header");
            break;
        }
        uint32_t payload = get_u32(rh);
        uint64_t record_end = offset + TL_WAL_RECORD_HEADER_BYTES + payload;
        if (payload < TL_WAL_PAYLOAD_FIXED_BYTES || payload > limit) {
            /* Zeroes to the end of the file are space the crash never filled. */
            bool zero_tail = payload == 0 && zero_to_end(fd, offset);
            snprintf(s->why, sizeof(s->why), "record length %" PRIu32 " is outside 24..%zu",
                     payload, limit);
            s->torn = zero_tail;
            s->damaged = !zero_tail;
            break;
        }
        if (record_end > s->file_bytes) {
            /* A torn last record, unless valid records follow: then its length is damaged. */
            int after = valid_record_after(fd, offset + TL_WAL_RECORD_HEADER_BYTES,
                                           s->file_bytes, s->end_seq, limit);
            s->damaged = after != 0; /* unreadable counts as damaged: never truncate blindly */
            s->torn = !s->damaged;
            snprintf(s->why, sizeof(s->why), "record of %" PRIu32 " bytes runs past the end "
                     "of the file%s", payload,
                     after > 0 ? ", and valid records follow it"
                     : after < 0 ? ", and the rest of the file could not be read to tell a "
                                   "torn write from damage" : "");
            break;
        }
        size_t total = TL_WAL_RECORD_HEADER_BYTES + payload;
        if (total > cap) {
            cap = total;
            buf = tl_xrealloc(buf, cap);
        }
        if (pread(fd, buf, total, (off_t)offset) != (ssize_t)total) {
            s->torn = true;
            snprintf(s->why, sizeof(s->why), "short read");
            break;
        }
        uint64_t seq = get_u64(buf + 8);
        uint32_t crc = tl_crc32c(0, buf + 8, 8 + (size_t)payload);
        if (crc != get_u32(buf + 4) || seq != s->end_seq) {
            snprintf(s->why, sizeof(s->why), crc != get_u32(buf + 4)
                     ? "record CRC mismatch" : "sequence number %" PRIu64 " where %" PRIu64
                     " was expected", seq, s->end_seq);
            /* A bad last record is a torn write, and so is a bad record followed only by
             * zeroes, which are blocks the crash left unwritten. Data after it means damage. */
            s->torn = record_end == s->file_bytes || zero_to_end(fd, record_end);
            s->damaged = !s->torn;
            break;
        }
        s->records++;
        s->end_seq++;
        offset = record_end;
        s->good_bytes = offset;
    }
    free(buf);
    close(fd);
    return 0;
}

static int move_aside(struct tl_wal *w, const char *path, uint64_t first_seq, char *err,
                      size_t errsize)
{
    char damaged_dir[4096], target[4200];
    snprintf(damaged_dir, sizeof(damaged_dir), "%s/damaged", w->dir);
    if (mkdir(damaged_dir, 0750) != 0 && errno != EEXIST)
        return tl_error(err, errsize, TL_EIO, "cannot create %s: %s", damaged_dir,
                        strerror(errno));
    snprintf(target, sizeof(target), "%s/%020" PRIu64 ".wal.%lld", damaged_dir, first_seq,
             (long long)time(NULL));
    if (rename(path, target) != 0)
        return tl_error(err, errsize, TL_EIO, "cannot move %s to %s: %s", path, target,
                        strerror(errno));
    tl_log_warn("wal", "damaged segment moved aside file=%s moved_to=%s", path, target);
    return 0;
}

/* CRC of one cursor line's region name and sequence number, as stored after "crc=". */
static uint32_t cursor_crc(const char *name, uint64_t seq)
{
    char text[96];
    int n = snprintf(text, sizeof(text), "%s %" PRIu64, name, seq);
    return tl_crc32c(0, text, (size_t)n);
}

/*
 * Loads the cursors file. A line that does not parse or whose CRC does not match (a torn
 * write) is ignored with a warning: that region then resends from the oldest WAL record, which
 * costs duplicates but loses nothing, since segments are deleted only below saved cursors.
 */
static bool persist_cursors(struct tl_wal *w);

/*
 * Copies the bytes of a segment from offset on into damaged/ and truncates the segment there,
 * keeping the verified records before the damage.
 */
static int split_aside(struct tl_wal *w, const char *path, uint64_t first_seq, uint64_t offset,
                       char *err, size_t errsize)
{
    char damaged_dir[4096], target[4200];
    snprintf(damaged_dir, sizeof(damaged_dir), "%s/damaged", w->dir);
    if (mkdir(damaged_dir, 0750) != 0 && errno != EEXIST)
        return tl_error(err, errsize, TL_EIO, "cannot create %s: %s", damaged_dir,
                        strerror(errno));
    snprintf(target, sizeof(target), "%s/%020" PRIu64 ".wal.%lld.from-%" PRIu64, damaged_dir,
             first_seq, (long long)time(NULL), offset);

    int in = open(path, O_RDONLY | O_CLOEXEC);
    int out = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int rc = 0;
    if (in < 0 || out < 0) {
        rc = tl_error(err, errsize, TL_EIO, "cannot copy the damaged part of %s to %s: %s",
                      path, target, strerror(errno));
        goto out;
    }
    char buf[65536];
    ssize_t n;
    off_t at = (off_t)offset;
    while ((n = pread(in, buf, sizeof(buf), at)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            rc = tl_error(err, errsize, TL_EIO, "cannot write %s: %s", target, strerror(errno));
            goto out;
        }
        at += n;
    }
    if (fsync(out) != 0 || truncate(path, (off_t)offset) != 0)
        rc = tl_error(err, errsize, TL_EIO, "cannot truncate %s after copying its damaged part: "
                      "%s", path, strerror(errno));
    else
        tl_log_warn("wal", "damaged part of a segment copied aside file=%s offset=%" PRIu64
                    " moved_to=%s", path, offset, target);
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

static int load_cursors(struct tl_wal *w, bool found[TL_REGION_COUNT], char *err, size_t errsize)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/cursors", w->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return tl_error(err, errsize, TL_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    char line[256];
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char name[64];
        uint64_t seq;
        uint32_t crc;
        int fields = sscanf(line, "region %63s %" SCNu64 " crc=%" SCNx32, name, &seq, &crc);
        if (fields < 2 || (fields == 3 && crc != cursor_crc(name, seq))) {
            tl_log_warn("wal", "damaged cursor line ignored; its region resends from the oldest "
                        "WAL record file=%s line=%d", path, lineno);
            continue;
        }
        int r = tl_config_region_index(w->cfg, name);
        if (r < 0) {
            tl_log_warn("wal", "cursor of a region not in the configuration ignored file=%s "
                        "region=%s seq=%" PRIu64, path, name, seq);
            continue;
        }
        atomic_store(&w->cursor[r], seq);
        w->persisted_cursor[r] = seq;
        found[r] = true;
    }
    fclose(f);
    return 0;
}

static int recover(struct tl_wal *w, bool salvage, struct tl_wal_recovery *rec, char *err,
                   size_t errsize)
{
    uint64_t *seqs = NULL;
    size_t count = 0;
    int rc = list_segments(w->dir, &seqs, &count, err, errsize);
    if (rc != 0)
        return rc;

    uint64_t expected = 0; /* first sequence number the next segment should start with */
    for (size_t i = 0; i < count && rc == 0; i++) {
        char *path = segment_path(w->dir, seqs[i]);
        bool newest = i + 1 == count;
        struct scan s;

        rc = scan_segment(w, path, seqs[i], &s, err, errsize);
        if (rc != 0) {
            free(path);
            break;
        }
        if (expected && seqs[i] != expected)
            tl_log_warn("wal", "gap between segments: sequence numbers %" PRIu64 " to %" PRIu64
                        " are missing file=%s", expected, seqs[i] - 1, path);

        if (s.damaged || (s.torn && !newest)) {
            if (!salvage) {
                rc = tl_error(err, errsize, TL_EPROTO, "WAL segment %s is damaged at byte offset "
                              "%" PRIu64 " (after %" PRIu64 " good records, sequence number %"
                              PRIu64 "): %s; restore the file, or start the agent with "
                              "--salvage-wal to move the damaged part aside and lose the events in it",
                              path, s.good_bytes, s.records, s.end_seq, s.why);
                free(path);
                break;
            }
            uint64_t next_first = i + 1 < count ? seqs[i + 1] : s.end_seq;
            if (newest) {
                /* The records after the damage cannot be counted, but none is shorter than
                 * MIN_RECORD_BYTES. Skipping that many sequence numbers makes the count an
                 * upper bound, so no number those records may have carried is reused. */
                uint64_t bound = (s.file_bytes - s.good_bytes) / MIN_RECORD_BYTES;
                next_first += bound > 0 ? bound : 1;
            }
            if (s.records > 0) {
                /* Keep the records before the damage; only the rest is lost. */
                uint64_t lost = next_first - s.end_seq;
                rc = split_aside(w, path, seqs[i], s.good_bytes, err, errsize);
                tl_log_error("wal", "salvage: damaged end of a segment moved aside, the records "
                             "before it are kept file=%s offset=%" PRIu64 " reason=\"%s\" "
                             "kept_events=%" PRIu64 " lost_from_seq=%" PRIu64 " lost_events%s=%"
                             PRIu64, path, s.good_bytes, s.why, s.records, s.end_seq,
                             newest ? "_at_most" : "", lost);
                rec->salvaged_segments++;
                rec->salvaged_events += lost;
                rec->salvaged_upper_bound |= newest;
                if (rc == 0) {
                    segments_push(w, seqs[i], s.good_bytes);
                    rec->records += s.records;
                    /* Appends must not continue in this segment across the gap. */
                    if (newest)
                        w->force_roll = true;
                }
                expected = next_first;
                free(path);
                continue;
            }
            uint64_t lost = next_first - seqs[i];
            rc = move_aside(w, path, seqs[i], err, errsize);
            tl_log_error("wal", "salvage: segment moved aside, its events are lost file=%s "
                         "offset=%" PRIu64 " reason=\"%s\" lost_from_seq=%" PRIu64
                         " lost_events%s=%" PRIu64, path, s.good_bytes, s.why, seqs[i],
                         newest ? "_at_most" : "", lost);
            rec->salvaged_segments++;
            rec->salvaged_events += lost;
            rec->salvaged_upper_bound |= newest;
            expected = next_first;
            free(path);
            continue;
        }
        if (s.torn) {
            if (truncate(path, (off_t)s.good_bytes) != 0) {
                rc = tl_error(err, errsize, TL_EIO, "cannot truncate torn tail of %s: %s", path,
                              strerror(errno));
                free(path);
                break;
            }
            rec->torn_bytes = s.file_bytes - s.good_bytes;
            tl_log_warn("wal", "torn record at the end of the newest segment truncated "
                        "file=%s offset=%" PRIu64 " seq=%" PRIu64 " bytes_dropped=%" PRIu64
                        " reason=\"%s\"", path, s.good_bytes, s.end_seq, rec->torn_bytes, s.why);
            s.file_bytes = s.good_bytes;
        }
        free(path);
        if (s.good_bytes == 0 && newest) {
            /* Header never written: drop the empty file, a new segment will replace it. */
            char *p = segment_path(w->dir, seqs[i]);
            unlink(p);
            free(p);
            expected = seqs[i];
            continue;
        }
        segments_push(w, seqs[i], s.file_bytes);
        rec->records += s.records;
        expected = s.end_seq;
    }
    free(seqs);
    if (rc != 0)
        return rc;

    bool found[TL_REGION_COUNT] = {false};
    rc = load_cursors(w, found, err, errsize);
    if (rc != 0)
        return rc;

    uint64_t first = w->segment_count ? w->segments[0].first_seq : 0;
    uint64_t next = expected ? expected : 1;
    for (int r = 0; r < TL_REGION_COUNT; r++)
        if (found[r] && atomic_load(&w->cursor[r]) > next)
            next = atomic_load(&w->cursor[r]);
    if (expected && next > expected) {
        /*
         * A region has stored events the WAL no longer has: the tail was lost in a power
         * loss (with wal.fsync "interval" or "off", or after a failed fsync, whose records
         * regions may already send). New records start a segment of their own, so that no
         * segment has a gap inside, and the loss is reported for every region that had not
         * stored those events.
         */
        tl_log_error("wal", "the WAL ends below a region cursor, its newest events are gone "
                     "from_seq=%" PRIu64 " to_seq=%" PRIu64, expected, next - 1);
        for (int r = 0; r < TL_REGION_COUNT; r++) {
            uint64_t c = found[r] ? atomic_load(&w->cursor[r]) : 0;
            if (c < next)
                tl_log_error("wal", "events lost for a region that had not stored them "
                             "region=%s from_seq=%" PRIu64 " to_seq=%" PRIu64 " events=%" PRIu64,
                             w->cfg->regions[r].name, c > expected ? c : expected, next - 1,
                             next - (c > expected ? c : expected));
        }
        w->force_roll = true;
    }
    if (!w->segment_count)
        first = next;
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        uint64_t c = found[r] ? atomic_load(&w->cursor[r]) : first;
        if (c < first) {
            tl_log_error("wal", "region cursor points below the oldest stored record; events "
                         "in between are lost for it region=%s cursor=%" PRIu64
                         " oldest=%" PRIu64, w->cfg->regions[r].name, c, first);
            c = first;
        }
        atomic_store(&w->cursor[r], c);
        w->persisted_cursor[r] = found[r] ? w->persisted_cursor[r] : 0;
        rec->cursor[r] = c;
    }

    w->next_seq = next;
    atomic_store(&w->floor, first);
    atomic_store(&w->ack_seq, next);
    atomic_store(&w->written_seq, next);
    rec->segments = w->segment_count;
    rec->first_seq = first;
    rec->next_seq = next;
    w->append_segment_bytes = w->segment_count ? w->segments[w->segment_count - 1].bytes : 0;
    return 0;
}

int tl_wal_open(const struct tl_wal_options *opts, struct tl_wal **out,
                struct tl_wal_recovery *recovery, char *err, size_t errsize)
{
    const struct tl_config *cfg = opts->cfg;
    struct tl_wal *w = tl_xcalloc(1, sizeof(*w));
    struct tl_wal_recovery local;
    struct tl_wal_recovery *rec = recovery ? recovery : &local;

    memset(rec, 0, sizeof(*rec));
    w->cfg = cfg;
    w->dir = tl_xstrdup(cfg->wal_dir);
    w->notify_fd = opts->notify_fd;
    w->fd = -1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_mutex_init(&w->reclaim_lock, NULL);
    pthread_mutex_init(&w->waiters_lock, NULL);
    pthread_cond_init(&w->reclaim_wake, NULL);
    w->full_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 3);
    w->io_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 3);

    if (mkdir(w->dir, 0750) != 0 && errno != EEXIST) {
        int rc = tl_error(err, errsize, TL_EIO, "wal.dir: cannot create %s: %s", w->dir,
                          strerror(errno));
        tl_wal_close(w);
        return rc;
    }
    int rc = recover(w, opts->salvage, rec, err, errsize);
    if (rc != 0) {
        tl_wal_close(w);
        return rc;
    }
    /*
     * Write the cursors file now, while there is room: later updates rewrite it in place and
     * need no free space. If that fails, keep the loaded cursors as the deletion bound.
     */
    uint64_t loaded[TL_REGION_COUNT];
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        loaded[r] = w->persisted_cursor[r];
        w->persisted_cursor[r] = UINT64_MAX;
    }
    if (!persist_cursors(w))
        memcpy(w->persisted_cursor, loaded, sizeof(loaded));

    w->stats.next_seq = w->next_seq;
    tl_log_info("wal", "opened dir=%s segments=%zu records=%" PRIu64 " first_seq=%" PRIu64
                " next_seq=%" PRIu64 " bytes=%" PRIu64 " fsync=%s", w->dir, rec->segments,
                rec->records, rec->first_seq, rec->next_seq, w->disk_bytes,
                cfg->wal_fsync == TL_FSYNC_ALWAYS ? "always"
                : cfg->wal_fsync == TL_FSYNC_INTERVAL ? "interval" : "off");
    *out = w;
    return 0;
}

/* ---- appending (event loop thread) --------------------------------------------------- */

/* Deletes the oldest segment although a region still needs it (when_full = shed). */
static bool shed_oldest_locked(struct tl_wal *w)
{
    if (w->segment_count < 2)
        return false;
    struct segment *old = &w->segments[0];
    uint64_t new_floor = w->segments[1].first_seq;

    for (int r = 0; r < TL_REGION_COUNT; r++) {
        uint64_t c = atomic_load(&w->cursor[r]);
        if (c >= new_floor)
            continue;
        uint64_t lost = new_floor - (c > old->first_seq ? c : old->first_seq);
        w->stats.shed[r] += lost;
        tl_log_error("wal", "quota reached: oldest segment shed before the region had it "
                     "region=%s lost_events=%" PRIu64 " from_seq=%" PRIu64 " to_seq=%" PRIu64
                     " file=%s", w->cfg->regions[r].name, lost, c, new_floor - 1, old->path);
    }
    unlink(old->path);
    w->disk_bytes -= old->bytes;

    /* Its batches not yet taken by the WAL thread go too, or the quota would not shrink. */
    size_t dropped = 0;
    while (dropped < w->batch_count && w->batches[dropped].segment_seq == old->first_seq) {
        w->unwritten_bytes -= w->batches[dropped].data.len;
        tl_buf_free(&w->batches[dropped].data);
        dropped++;
    }
    if (dropped > 0) {
        memmove(w->batches, w->batches + dropped,
                (w->batch_count - dropped) * sizeof(*w->batches));
        w->batch_count -= dropped;
    }

    free(old->path);
    memmove(&w->segments[0], &w->segments[1], (w->segment_count - 1) * sizeof(*w->segments));
    w->segment_count--;
    atomic_store(&w->floor, new_floor);
    return true;
}

static struct batch *current_batch_locked(struct tl_wal *w, uint64_t segment_seq)
{
    if (w->batch_count > 0 && w->batches[w->batch_count - 1].segment_seq == segment_seq)
        return &w->batches[w->batch_count - 1];
    if (w->batch_count == w->batch_cap) {
        w->batch_cap = w->batch_cap ? w->batch_cap * 2 : 8;
        w->batches = tl_xrealloc(w->batches, w->batch_cap * sizeof(*w->batches));
    }
    struct batch *b = &w->batches[w->batch_count++];
    *b = (struct batch){.segment_seq = segment_seq};
    tl_buf_init(&b->data);
    return b;
}

int tl_wal_append(struct tl_wal *w, struct tl_event *ev, char *err, size_t errsize)
{
    size_t record = TL_WAL_RECORD_HEADER_BYTES + payload_size(ev);
    uint64_t suppressed;

    int failing = atomic_load(&w->failing_errno);
    if (failing) {
        pthread_mutex_lock(&w->lock);
        w->stats.rejected_full++;
        pthread_mutex_unlock(&w->lock);
        return tl_error(err, errsize, TL_EAGAIN, "the WAL cannot write to %s: %s; retry once "
                        "the disk has room or works again", w->dir, strerror(failing));
    }
    pthread_mutex_lock(&w->lock);
    if (w->unwritten_bytes + record > MAX_UNWRITTEN_BYTES) {
        pthread_mutex_unlock(&w->lock);
        return tl_error(err, errsize, TL_EAGAIN, "the WAL has %" PRIu64 " bytes waiting to be "
                        "written; the disk is slow or failing", w->unwritten_bytes);
    }
    while (w->disk_bytes + w->unwritten_bytes + record > w->cfg->wal_max_bytes) {
        if (w->cfg->wal_when_full == TL_WHEN_FULL_SHED && shed_oldest_locked(w))
            continue;
        w->stats.rejected_full++;
        uint64_t used = w->disk_bytes + w->unwritten_bytes;
        pthread_mutex_unlock(&w->lock);
        if (tl_ratelimit_allow(&w->full_log, &suppressed))
            tl_log_error("wal", "quota reached, rejecting events with RETRYABLE bytes=%" PRIu64
                         " max_bytes=%" PRIu64 " suppressed=%" PRIu64, used,
                         w->cfg->wal_max_bytes, suppressed);
        return tl_error(err, errsize, TL_EAGAIN, "the WAL is full (%" PRIu64 " of wal.max_bytes "
                        "= %" PRIu64 " bytes) until a region catches up", used,
                        w->cfg->wal_max_bytes);
    }

    /* Roll to a new segment at a record boundary once the newest one is big enough. */
    uint64_t segment_seq;
    if (w->segment_count == 0 || w->append_segment_bytes >= w->cfg->wal_segment_bytes ||
        w->force_roll) {
        w->force_roll = false;
        segment_seq = w->next_seq;
        segments_push(w, segment_seq, TL_WAL_SEGMENT_HEADER_BYTES);
        w->unwritten_bytes += 0;
        w->append_segment_bytes = TL_WAL_SEGMENT_HEADER_BYTES;
    } else {
        segment_seq = w->segments[w->segment_count - 1].first_seq;
    }

    ev->seq = w->next_seq++;
    struct batch *b = current_batch_locked(w, segment_seq);
    tl_wal_encode_record(ev, &b->data);
    b->end_seq = ev->seq + 1;
    w->unwritten_bytes += record;
    w->append_segment_bytes += record;
    w->stats.appended++;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void tl_wal_kick(struct tl_wal *w)
{
    pthread_mutex_lock(&w->lock);
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

uint64_t tl_wal_ack_seq(struct tl_wal *w) { return atomic_load(&w->ack_seq); }
uint64_t tl_wal_written_seq(struct tl_wal *w) { return atomic_load(&w->written_seq); }
uint64_t tl_wal_floor(struct tl_wal *w) { return atomic_load(&w->floor); }

uint64_t tl_wal_next_seq(struct tl_wal *w)
{
    pthread_mutex_lock(&w->lock);
    uint64_t n = w->next_seq;
    pthread_mutex_unlock(&w->lock);
    return n;
}

void tl_wal_set_cursor(struct tl_wal *w, int region, uint64_t seq)
{
    atomic_store(&w->cursor[region], seq);
}

uint64_t tl_wal_cursor(struct tl_wal *w, int region)
{
    return atomic_load(&w->cursor[region]);
}

void tl_wal_get_stats(struct tl_wal *w, struct tl_wal_stats *stats)
{
    pthread_mutex_lock(&w->lock);
    *stats = w->stats;
    stats->bytes = w->disk_bytes + w->unwritten_bytes;
    stats->segments = w->segment_count;
    stats->next_seq = w->next_seq;
    pthread_mutex_unlock(&w->lock);
    stats->ack_seq = atomic_load(&w->ack_seq);
}

/* ---- the WAL thread ------------------------------------------------------------------ */

static void notify(struct tl_wal *w)
{
    uint64_t increment = 1;
    pthread_mutex_lock(&w->waiters_lock);
    for (size_t i = 0; i < w->waiter_count; i++) {
        ssize_t ignored = write(w->waiter_fds[i], &increment, sizeof(increment));
        (void)ignored;
    }
    pthread_mutex_unlock(&w->waiters_lock);
    if (w->notify_fd < 0)
        return;
    ssize_t ignored = write(w->notify_fd, &increment, sizeof(increment));
    (void)ignored;
}

void tl_wal_add_waiter(struct tl_wal *w, int fd)
{
    pthread_mutex_lock(&w->waiters_lock);
    if (w->waiter_count == TL_WAL_MAX_WAITERS)
        tl_panic("more than %d WAL waiters", TL_WAL_MAX_WAITERS);
    w->waiter_fds[w->waiter_count++] = fd;
    pthread_mutex_unlock(&w->waiters_lock);
}

void tl_wal_remove_waiters(struct tl_wal *w)
{
    pthread_mutex_lock(&w->waiters_lock);
    w->waiter_count = 0;
    pthread_mutex_unlock(&w->waiters_lock);
}

static void log_io_error(struct tl_wal *w, const char *what, const char *path, int error)
{
    w->last_errno = error;
    uint64_t suppressed;
    pthread_mutex_lock(&w->lock);
    w->stats.write_errors++;
    pthread_mutex_unlock(&w->lock);
    if (tl_ratelimit_allow(&w->io_log, &suppressed))
        tl_log_error("wal", "%s failed, will retry file=%s error=\"%s\" suppressed=%" PRIu64
                     "%s", what, path, strerror(error), suppressed,
                     error == ENOSPC ? " hint=\"free disk space or lower wal.max_bytes\"" : "");
}

static int timed_fsync(struct tl_wal *w, const char *path)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = fdatasync(w->fd);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc != 0) {
        log_io_error(w, "fdatasync", path, errno);
        return -1;
    }
    int64_t elapsed = tl_elapsed_us(&t0, &t1);
    uint64_t us = elapsed > 0 ? (uint64_t)elapsed : 0;
    pthread_mutex_lock(&w->lock);
    w->stats.fsyncs++;
    w->stats.fsync_us_total += us;
    if (us > w->stats.fsync_us_max)
        w->stats.fsync_us_max = us;
    pthread_mutex_unlock(&w->lock);
    w->last_fsync_ms = tl_now_ms();
    return 0;
}

/*
 * Opens the segment a batch belongs to for appending, closing (and syncing) the previous.
 * Returns 0, 1 when the segment was deleted (shed, or acknowledged by every region) before
 * it was written, or -1 after an I/O error.
 */
static int open_segment_for(struct tl_wal *w, uint64_t segment_seq)
{
    if (w->fd >= 0 && w->fd_segment_seq == segment_seq)
        return 0;
    char *path = segment_path(w->dir, segment_seq);
    if (w->fd >= 0) {
        if (w->cfg->wal_fsync != TL_FSYNC_OFF)
            timed_fsync(w, path);
        close(w->fd);
        w->fd = -1;
    }

    /* The check and the open share the lock, because O_CREAT on a segment already deleted
     * from the list would leave a file outside the quota that recovery later reads back. */
    pthread_mutex_lock(&w->lock);
    bool listed = false;
    for (size_t i = 0; i < w->segment_count && !listed; i++)
        listed = w->segments[i].first_seq == segment_seq;
    int fd = listed ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640) : -1;
    int open_errno = errno;
    pthread_mutex_unlock(&w->lock);
    if (!listed) {
        free(path);
        return 1;
    }
    if (fd < 0) {
        log_io_error(w, "creating segment", path, open_errno);
        free(path);
        return -1;
    }
    struct stat st;
    fstat(fd, &st);
    if (st.st_size == 0) {
        uint8_t header[TL_WAL_SEGMENT_HEADER_BYTES];
        encode_segment_header(header, segment_seq);
        if (write(fd, header, sizeof(header)) != (ssize_t)sizeof(header)) {
            log_io_error(w, "writing segment header", path, errno);
            /* Leave an empty file: the next attempt writes the header again. */
            if (ftruncate(fd, 0) != 0)
                tl_log_error("wal", "cannot reset segment file=%s", path);
            close(fd);
            free(path);
            return -1;
        }
        fsync_dir(w->dir);
    }
    w->fd = fd;
    w->fd_segment_seq = segment_seq;
    free(path);
    return 0;
}

/* Writes one batch fully; on failure keeps the unwritten remainder in the batch. */
static int write_batch(struct tl_wal *w, struct batch *b)
{
    int rc = open_segment_for(w, b->segment_seq);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        /* Its segment was deleted with these events, and the deletion counted them. */
        pthread_mutex_lock(&w->lock);
        w->unwritten_bytes -= b->data.len;
        pthread_mutex_unlock(&w->lock);
        tl_buf_consume(&b->data, b->data.len);
        return 0;
    }
    while (b->data.len > 0) {
        ssize_t n = write(w->fd, b->data.data, b->data.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            char *path = segment_path(w->dir, b->segment_seq);
            log_io_error(w, "write", path, n < 0 ? errno : EIO);
            free(path);
            return -1;
        }
        tl_buf_consume(&b->data, (size_t)n);
        pthread_mutex_lock(&w->lock);
        w->unwritten_bytes -= (uint64_t)n;
        for (size_t i = 0; i < w->segment_count; i++) {
            if (w->segments[i].first_seq == b->segment_seq) {
                w->segments[i].bytes += (uint64_t)n;
                w->disk_bytes += (uint64_t)n;
                break;
            }
        }
        pthread_mutex_unlock(&w->lock);
    }
    return 0;
}

/*
 * Writes the cursors file. Lines have a fixed width, so once the file exists it is rewritten
 * in place with pwrite(2): that needs no free disk space, which matters because segments are
 * deleted only after their cursors are on disk, and a full disk must be able to drain. A torn
 * in-place write is caught by the per-line CRC at the next start.
 */
static bool persist_cursors(struct tl_wal *w)
{
    uint64_t c[TL_REGION_COUNT];
    bool changed = false;
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        c[r] = atomic_load(&w->cursor[r]);
        changed |= c[r] != w->persisted_cursor[r];
    }
    if (!changed)
        return true;

    char text[512];
    size_t len = (size_t)snprintf(text, sizeof(text), "# region NAME SEQ crc=CRC32C: the region "
                                  "has acknowledged every event below SEQ\n");
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        const char *name = w->cfg->regions[r].name;
        len += (size_t)snprintf(text + len, sizeof(text) - len, "region %-32s %020" PRIu64
                                " crc=%08" PRIx32 "\n", name, c[r], cursor_crc(name, c[r]));
    }

    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/cursors", w->dir);
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size == len) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        bool ok = fd >= 0 && pwrite(fd, text, len, 0) == (ssize_t)len && fdatasync(fd) == 0;
        int saved = errno;
        if (fd >= 0)
            close(fd);
        if (!ok) {
            log_io_error(w, "writing cursors", path, saved);
            return false;
        }
    } else {
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        bool ok = fd >= 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
        int saved = errno;
        if (fd >= 0)
            close(fd);
        if (!ok || rename(tmp, path) != 0) {
            log_io_error(w, "writing cursors", path, ok ? errno : saved);
            unlink(tmp);
            return false;
        }
        fsync_dir(w->dir);
    }
    for (int r = 0; r < TL_REGION_COUNT; r++)
        w->persisted_cursor[r] = c[r];
    return true;
}

/* Deletes segments whose records every region has acknowledged (per the persisted cursors). */
static void delete_acknowledged_segments(struct tl_wal *w)
{
    uint64_t min = UINT64_MAX;
    for (int r = 0; r < TL_REGION_COUNT; r++)
        if (w->persisted_cursor[r] < min)
            min = w->persisted_cursor[r];

    /*
     * Unlinking a full segment takes milliseconds (13 ms measured for 64 MiB on ext4), which
     * would delay the next fsync and every acknowledgement waiting for it, so the reclaim
     * thread does it. Readers stop at the floor, which moves at once.
     */
    pthread_mutex_lock(&w->lock);
    size_t count = 0;
    while (count + 1 < w->segment_count && w->segments[count + 1].first_seq <= min &&
           w->segments[count].first_seq != w->fd_segment_seq)
        count++;
    if (count > 0) {
        pthread_mutex_lock(&w->reclaim_lock);
        if (w->reclaim_count + count > w->reclaim_cap) {
            w->reclaim_cap = w->reclaim_count + count;
            w->reclaim = tl_xrealloc(w->reclaim, w->reclaim_cap * sizeof(*w->reclaim));
        }
        memcpy(&w->reclaim[w->reclaim_count], w->segments, count * sizeof(*w->segments));
        w->reclaim_count += count;
        pthread_cond_signal(&w->reclaim_wake);
        pthread_mutex_unlock(&w->reclaim_lock);
        memmove(&w->segments[0], &w->segments[count],
                (w->segment_count - count) * sizeof(*w->segments));
        w->segment_count -= count;
        atomic_store(&w->floor, w->segments[0].first_seq);
    }
    pthread_mutex_unlock(&w->lock);
}

/*
 * Shrinks a segment in steps of TRUNCATE_STEP_BYTES before it is unlinked. Unlinking 64 MiB
 * at once stalled a concurrent fdatasync for up to 10 ms on a virtio ext4 disk, probably in the
 * journal commit that frees the extents. In steps the longest stall was about 1.4 ms.
 */
static void shrink_gradually(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    off_t size = fstat(fd, &st) == 0 ? st.st_size : 0;
    while (size > 0) {
        size = size > TRUNCATE_STEP_BYTES ? size - TRUNCATE_STEP_BYTES : 0;
        if (ftruncate(fd, size) != 0)
            break;
        usleep(TRUNCATE_PAUSE_US);
    }
    close(fd);
}

/* Unlinks the segments handed over by delete_acknowledged_segments until the WAL closes. */
static void *reclaim_thread(void *arg)
{
    struct tl_wal *w = arg;

    pthread_mutex_lock(&w->reclaim_lock);
    for (;;) {
        while (w->reclaim_count == 0 && !w->reclaim_stopping)
            pthread_cond_wait(&w->reclaim_wake, &w->reclaim_lock);
        if (w->reclaim_count == 0)
            break;
        struct segment old = w->reclaim[0];
        bool gently = !w->reclaim_stopping;
        w->reclaim_count--;
        memmove(&w->reclaim[0], &w->reclaim[1], w->reclaim_count * sizeof(*w->reclaim));
        pthread_mutex_unlock(&w->reclaim_lock);

        /*
         * The bytes leave the quota before the file goes, so that appends waiting for room
         * succeed as soon as the segment is no longer listed. They return if deleting fails.
         */
        pthread_mutex_lock(&w->lock);
        w->disk_bytes -= old.bytes;
        pthread_mutex_unlock(&w->lock);

        /*
         * Renamed first, so that a crash while the file shrinks leaves no short segment
         * behind: the next start removes the renamed file instead of reading it.
         */
        size_t path_len = strlen(old.path) + sizeof(RECLAIM_SUFFIX);
        char *doomed = tl_xmalloc(path_len);
        snprintf(doomed, path_len, "%s%s", old.path, RECLAIM_SUFFIX);
        if (rename(old.path, doomed) == 0) {
            free(old.path);
            old.path = doomed;
            if (gently)
                shrink_gradually(old.path);
        } else {
            free(doomed);
        }
        if (unlink(old.path) != 0 && errno != ENOENT) {
            tl_log_warn("wal", "cannot delete acknowledged segment file=%s error=\"%s\"; every "
                        "region has its events, so delete it by hand", old.path, strerror(errno));
            /* Still on disk, so still counted against wal.max_bytes. */
            pthread_mutex_lock(&w->lock);
            w->disk_bytes += old.bytes;
            pthread_mutex_unlock(&w->lock);
        } else {
            tl_log_debug("wal", "segment deleted file=%s", old.path);
        }
        free(old.path);
        pthread_mutex_lock(&w->reclaim_lock);
    }
    pthread_mutex_unlock(&w->reclaim_lock);
    return NULL;
}

/* Takes the batches to write; returns how many were taken into *out. */
static size_t take_batches(struct tl_wal *w, struct batch **out, size_t *cap)
{
    size_t n = w->batch_count;
    if (n == 0)
        return 0; /* memcpy from a NULL w->batches is undefined even for 0 bytes */
    if (n > *cap) {
        *cap = n;
        *out = tl_xrealloc(*out, n * sizeof(**out));
    }
    memcpy(*out, w->batches, n * sizeof(**out));
    w->batch_count = 0;
    return n;
}

static void *wal_thread(void *arg)
{
    struct tl_wal *w = arg;
    struct batch *work = NULL;
    size_t work_cap = 0;
    size_t work_count = 0;
    size_t work_done = 0;
    bool stopping = false;

    while (!stopping || work_done < work_count) {
        pthread_mutex_lock(&w->lock);
        if (work_done == work_count) {
            for (size_t i = 0; i < work_count; i++)
                tl_buf_free(&work[i].data);
            work_count = work_done = 0;
            while (w->batch_count == 0 && !w->stopping) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += 100 * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&w->wake, &w->lock, &until);
                if (tl_now_ms() - w->last_persist_ms >= CURSOR_PERSIST_MS)
                    break;
            }
            work_count = take_batches(w, &work, &work_cap);
        }
        stopping = w->stopping;
        pthread_mutex_unlock(&w->lock);

        /* Write everything taken, in order; stop at the first failure and retry later. */
        bool failed = false;
        uint64_t written_end = atomic_load(&w->written_seq);
        while (work_done < work_count && !failed) {
            if (write_batch(w, &work[work_done]) != 0) {
                failed = true;
                break;
            }
            written_end = work[work_done].end_seq;
            work_done++;
        }

        if (written_end > atomic_load(&w->written_seq)) {
            char *path = segment_path(w->dir, w->fd_segment_seq);
            bool sync_now = w->cfg->wal_fsync == TL_FSYNC_ALWAYS;
            if (sync_now && timed_fsync(w, path) != 0) {
                /* Written but not durable: readers may use it, producers must wait. */
                atomic_store(&w->written_seq, written_end);
                failed = true;
            } else {
                atomic_store(&w->written_seq, written_end);
                atomic_store(&w->ack_seq, written_end);
                notify(w);
            }
            free(path);
        } else if (w->cfg->wal_fsync == TL_FSYNC_ALWAYS &&
                   atomic_load(&w->ack_seq) < atomic_load(&w->written_seq) && w->fd >= 0) {
            /* A previous fsync failed: try again before acknowledging. */
            char *path = segment_path(w->dir, w->fd_segment_seq);
            if (timed_fsync(w, path) == 0) {
                atomic_store(&w->ack_seq, atomic_load(&w->written_seq));
                notify(w);
            }
            free(path);
        }

        if (w->cfg->wal_fsync == TL_FSYNC_INTERVAL && w->fd >= 0 &&
            tl_now_ms() - w->last_fsync_ms >= w->cfg->wal_fsync_interval_ms) {
            char *path = segment_path(w->dir, w->fd_segment_seq);
            timed_fsync(w, path);
            free(path);
        }
        if (tl_now_ms() - w->last_persist_ms >= CURSOR_PERSIST_MS || stopping) {
            persist_cursors(w);
            delete_acknowledged_segments(w);
            w->last_persist_ms = tl_now_ms();
        }
        /* New events are refused while the disk fails, instead of piling up unanswered. */
        int failing = 0;
        if (failed)
            failing = w->last_errno ? w->last_errno : EIO;
        atomic_store(&w->failing_errno, failing);
        if (failed) {
            if (stopping)
                break;
            usleep(100 * 1000);
        }
    }

    /* Written batches keep their buffers too, so free every one taken. */
    for (size_t i = 0; i < work_count; i++)
        tl_buf_free(&work[i].data);
    free(work);
    return NULL;
}

int tl_wal_start(struct tl_wal *w, char *err, size_t errsize)
{
    w->last_persist_ms = tl_now_ms();
    int rc = pthread_create(&w->reclaim_thread, NULL, reclaim_thread, w);
    if (rc != 0)
        return tl_error(err, errsize, TL_EIO, "cannot start the WAL reclaim thread: %s",
                        strerror(rc));
    w->reclaim_started = true;
    rc = pthread_create(&w->thread, NULL, wal_thread, w);
    if (rc != 0)
        return tl_error(err, errsize, TL_EIO, "cannot start the WAL thread: %s", strerror(rc));
    w->thread_started = true;
    return 0;
}

void tl_wal_close(struct tl_wal *w)
{
    if (!w)
        return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    if (w->reclaim_started) {
        pthread_mutex_lock(&w->reclaim_lock);
        w->reclaim_stopping = true;
        pthread_cond_signal(&w->reclaim_wake);
        pthread_mutex_unlock(&w->reclaim_lock);
        pthread_join(w->reclaim_thread, NULL);
    }
    for (size_t i = 0; i < w->reclaim_count; i++)
        free(w->reclaim[i].path);
    free(w->reclaim);
    if (w->fd >= 0) {
        if (w->cfg->wal_fsync != TL_FSYNC_OFF && fdatasync(w->fd) != 0)
            tl_log_error("wal", "final fdatasync failed dir=%s error=\"%s\"", w->dir,
                         strerror(errno));
        close(w->fd);
    }
    if (w->thread_started) {
        uint64_t unwritten = w->unwritten_bytes;
        if (unwritten)
            tl_log_error("wal", "closed with unwritten bytes=%" PRIu64 "; those events were "
                         "never acknowledged", unwritten);
        tl_log_info("wal", "closed dir=%s next_seq=%" PRIu64 " segments=%zu bytes=%" PRIu64,
                    w->dir, w->next_seq, w->segment_count, w->disk_bytes);
    }
    for (size_t i = 0; i < w->batch_count; i++)
        tl_buf_free(&w->batches[i].data);
    free(w->batches);
    for (size_t i = 0; i < w->segment_count; i++)
        free(w->segments[i].path);
    free(w->segments);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->reclaim_lock);
    pthread_mutex_destroy(&w->waiters_lock);
    pthread_cond_destroy(&w->reclaim_wake);
    free(w->dir);
    free(w);
}

/* ---- readers (region threads) -------------------------------------------------------- */

int tl_wal_reader_open(struct tl_wal *w, uint64_t seq, struct tl_wal_reader **out, char *err,
                       size_t errsize)
{
    (void)err;
    (void)errsize;
    struct tl_wal_reader *r = tl_xcalloc(1, sizeof(*r));
    r->w = w;
    r->fd = -1;
    uint64_t floor = tl_wal_floor(w);
    r->next_seq = seq < floor ? floor : seq;
    *out = r;
    return 0;
}

uint64_t tl_wal_reader_position(const struct tl_wal_reader *r)
{
    return r->next_seq;
}

void tl_wal_reader_close(struct tl_wal_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r);
}

/* Closes the open segment and drops its bytes from buf. */
static void reader_close_segment(struct tl_wal_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->buf_len = 0;
}

/* Finds the segment holding seq (the last one starting at or below it) and opens it. */
static int reader_locate(struct tl_wal_reader *r, char *err, size_t errsize)
{
    struct tl_wal *w = r->w;
    uint64_t first = 0;
    bool found = false;

    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->segment_count; i++) {
        if (w->segments[i].first_seq > r->next_seq)
            break;
        first = w->segments[i].first_seq;
        found = true;
    }
    if (!found && w->segment_count > 0) {
        /* Below the oldest segment: that data was shed or salvaged; continue after it. */
        first = w->segments[0].first_seq;
        r->next_seq = first;
        found = true;
    }
    pthread_mutex_unlock(&w->lock);
    if (!found)
        return 0;

    reader_close_segment(r);
    char *path = segment_path(w->dir, first);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        int rc = tl_error(err, errsize, TL_EIO, "cannot open WAL segment %s: %s", path,
                          strerror(errno));
        free(path);
        return rc;
    }
    free(path);
    r->segment_seq = first;
    r->offset = TL_WAL_SEGMENT_HEADER_BYTES;
    r->buf_offset = r->offset;
    return 1;
}

/* Returns the first_seq of the segment after the reader's, or 0 if none. */
static uint64_t next_segment_seq(struct tl_wal_reader *r)
{
    struct tl_wal *w = r->w;
    uint64_t next = 0;
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->segment_count; i++) {
        if (w->segments[i].first_seq > r->segment_seq) {
            next = w->segments[i].first_seq;
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return next;
}

/* Bytes of the segment in buf from the reader's offset on. */
static size_t reader_buffered(const struct tl_wal_reader *r)
{
    if (r->offset < r->buf_offset || r->offset - r->buf_offset > r->buf_len)
        return 0;
    return r->buf_len - (size_t)(r->offset - r->buf_offset);
}

/*
 * Replaces the contents of buf with the segment from the reader's offset on: one read of
 * TL_WAL_READ_BLOCK_BYTES, or of need bytes when that is more. Reads again while fewer than
 * need bytes arrived, and stops early only at the end of the file. Returns 0 or TL_EIO.
 */
static int reader_fill(struct tl_wal_reader *r, size_t need, char *err, size_t errsize)
{
    size_t size = need > TL_WAL_READ_BLOCK_BYTES ? need : TL_WAL_READ_BLOCK_BYTES;

    /* The old contents are dropped, so a new buffer needs no copy. A buffer grown for one
     * large record shrinks back to a block at the next fill that needs no more. */
    if (size != r->buf_cap) {
        free(r->buf);
        r->buf = tl_xmalloc(size);
        r->buf_cap = size;
    }

    r->buf_offset = r->offset;
    r->buf_len = 0;
    while (r->buf_len < need) {
        uint64_t at = r->offset + r->buf_len;
        ssize_t n = pread(r->fd, r->buf + r->buf_len, size - r->buf_len, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tl_error(err, errsize, TL_EIO, "WAL segment %020" PRIu64 ".wal: read failed "
                            "at byte offset %" PRIu64 ": %s", r->segment_seq, at,
                            strerror(errno));
        if (n == 0)
            break;
        r->buf_len += (size_t)n;
    }
    return 0;
}

/*
 * Decodes records out of buf and reads the segment again only when buf contains no complete
 * record at the offset. The file may have grown since buf was read, because the WAL thread
 * appends to the newest segment, so a record cut off at the end of buf is read again from its
 * start. Only a file that still ends there counts as the end of the segment.
 */
int tl_wal_reader_next(struct tl_wal_reader *r, struct tl_event **out, char *err,
                       size_t errsize)
{
    struct tl_wal *w = r->w;
    size_t limit = max_payload(w->cfg);

    for (;;) {
        uint64_t floor = tl_wal_floor(w);
        if (r->next_seq < floor) {
            r->next_seq = floor;
            reader_close_segment(r);
        }
        if (r->next_seq >= tl_wal_written_seq(w))
            return 0;
        if (r->fd < 0) {
            int rc = reader_locate(r, err, errsize);
            if (rc <= 0)
                return rc;
        }

        size_t avail = reader_buffered(r);
        if (avail < TL_WAL_RECORD_HEADER_BYTES) {
            int rc = reader_fill(r, TL_WAL_RECORD_HEADER_BYTES, err, errsize);
            if (rc != 0)
                return rc;
            avail = r->buf_len;
        }
        if (avail < TL_WAL_RECORD_HEADER_BYTES) {
            /* End of this segment: the wanted record is in the next one. */
            uint64_t next = next_segment_seq(r);
            if (next == 0 || next > r->next_seq + 1000000000ull)
                return 0;
            if (next > r->next_seq)
                tl_log_error("wal", "gap in the WAL: events are missing from_seq=%" PRIu64
                             " to_seq=%" PRIu64, r->next_seq, next - 1);
            r->next_seq = next;
            reader_close_segment(r);
            continue;
        }

        const uint8_t *record = r->buf + (size_t)(r->offset - r->buf_offset);
        uint32_t payload = get_u32(record);
        size_t total = TL_WAL_RECORD_HEADER_BYTES + (size_t)payload;
        if (payload > limit)
            return tl_error(err, errsize, TL_EPROTO, "WAL segment %020" PRIu64 ".wal: record "
                            "length %" PRIu32 " at byte offset %" PRIu64 " is too large",
                            r->segment_seq, payload, r->offset);
        if (avail < total) {
            int rc = reader_fill(r, total, err, errsize);
            if (rc != 0)
                return rc;
            if (r->buf_len < total)
                return tl_error(err, errsize, TL_EIO, "WAL segment %020" PRIu64 ".wal: short "
                                "read at byte offset %" PRIu64, r->segment_seq, r->offset);
            record = r->buf;
        }

        struct tl_event *ev;
        size_t used;
        char why[256];
        int rc = tl_wal_decode_record(record, total, limit, w->cfg, &ev, &used, why,
                                      sizeof(why));
        if (rc != 1)
            return tl_error(err, errsize, TL_EPROTO, "WAL segment %020" PRIu64 ".wal is damaged "
                            "at byte offset %" PRIu64 ": %s", r->segment_seq, r->offset,
                            rc == 0 ? "truncated record" : why);
        r->offset += used;
        if (ev->seq < r->next_seq) {
            free(ev); /* positioning: skip records before the wanted one */
            continue;
        }
        r->next_seq = ev->seq + 1;
        *out = ev;
        return 1;
    }
}
