/*
 * Write-ahead log (WAL): every accepted event, durable on local disk before it is acknowledged,
 * kept until every region has acknowledged it.
 *
 * Files, under wal.dir:
 *   SSSSSSSSSSSSSSSSSSSS.wal   segments, named by the 20-digit sequence number of their first
 *                              record; the highest-numbered one is being appended to
 *   cursors                    per region, the sequence number below which that region has
 *                              acknowledged every event (text, rewritten atomically)
 *   damaged/                   segments moved aside by --salvage-wal
 *
 * Segment layout (integers little-endian):
 *   header, 32 bytes:
 *     0  8  magic "TWLNWAL1"
 *     8  4  format version, 1
 *    12  4  header length, 32
 *    16  8  sequence number of the first record
 *    24  4  CRC-32C of bytes 0..23
 *    28  4  zero
 *   then records back to back, in sequence order, each:
 *     0  4  payload length N
 *     4  4  CRC-32C of bytes 8..16+N (the sequence number and the payload)
 *     8  8  sequence number (the previous record's plus one)
 *    16  N  payload:
 *            0  8  acceptance time, ms since the Unix epoch (signed)
 *            8  4  partition (signed)
 *           12  1  flags: bit 0 key present, bit 1 value present
 *           13  1  topic name length T (1..249)
 *           14  2  header count H
 *           16  4  key length K
 *           20  4  value length V
 *           24  T  topic name, then K key bytes, then V value bytes, then H headers:
 *                  2 bytes name length, 4 bytes value length (0xFFFFFFFF: no value),
 *                  the name, the value
 *
 * Reading a segment by hand: skip 32 bytes; repeatedly read 16 bytes of record header, then N
 * payload bytes; stop at end of file. `od -A d -t x1` shows the fields.
 *
 * Recovery at open: every record is checked (length within the limit, CRC, sequence continuity).
 * A damaged record at the very end of the newest segment is a torn write from a crash: the file
 * is truncated there and the bytes dropped are logged. A record whose length runs past the end
 * of the file counts as torn only when no valid record follows it. Damage anywhere else stops the agent with
 * the segment and byte offset, unless the salvage option is set: then the damaged segment moves
 * to damaged/ and the sequence numbers it held are reported as lost. Nothing is skipped silently.
 *
 * Writing: the event loop thread appends encoded records to an in-memory batch; the WAL's own
 * thread writes each batch with write(2) and, with fsync "always", calls fdatasync once for the
 * whole batch (group commit) before it publishes the acknowledgeable position (ack_seq) and
 * writes to notify_fd. With "interval" and "off", ack_seq follows write(2), so an agent crash
 * loses nothing acknowledged, and fdatasync runs every interval or never. A failed write or
 * fsync (disk full, I/O error) is logged and retried; ack_seq waits.
 *
 * Cursors are persisted every 200 ms (when they moved) and at close, which bounds what a
 * region receives twice after a crash; segments whose records all lie below
 * every region's cursor are deleted after that, by a reclaim thread of their own so that a
 * slow unlink never delays an fsync. The quota wal.max_bytes counts segment files still on
 * disk plus unwritten batches.
 *
 * Threads: open, start and close on the main thread; append, kick and the queries marked so on
 * the event loop thread; cursors and readers on region threads; everything else internal.
 */
#ifndef TL_WAL_H
#define TL_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"
#include "frame.h"

#define TL_WAL_RECORD_HEADER_BYTES 16
#define TL_WAL_PAYLOAD_FIXED_BYTES 24
#define TL_WAL_SEGMENT_HEADER_BYTES 32
/* Bytes a reader reads from a segment at once. A longer record is read whole. */
#define TL_WAL_READ_BLOCK_BYTES ((size_t)1 << 20)

struct tl_wal;
struct tl_wal_reader;

struct tl_wal_options {
    const struct tl_config *cfg;  /* fsync mode, sizes, quota, region names, topics */
    bool salvage;                 /* move damaged segments aside instead of failing */
    int notify_fd;                /* eventfd written when ack_seq advances; -1 for none */
};

/* Findings of tl_wal_open on disk. */
struct tl_wal_recovery {
    size_t segments;
    uint64_t records;             /* records found in the segments */
    uint64_t first_seq;           /* oldest record kept (next_seq when empty) */
    uint64_t next_seq;            /* sequence number of the next appended event */
    uint64_t cursor[TL_REGION_COUNT];
    uint64_t torn_bytes;          /* bytes truncated from the newest segment's tail */
    uint64_t salvaged_segments;
    uint64_t salvaged_events;     /* sequence numbers lost with segments moved aside */
    bool salvaged_upper_bound;    /* salvaged_events counts a newest segment's unreadable end */
};

struct tl_wal_stats {
    uint64_t bytes;               /* segment files plus unwritten batches */
    uint64_t segments;
    uint64_t appended;
    uint64_t fsyncs;
    uint64_t fsync_us_total;      /* time spent in fdatasync, microseconds */
    uint64_t fsync_us_max;
    uint64_t write_errors;
    uint64_t rejected_full;       /* events refused because the quota was reached */
    uint64_t shed[TL_REGION_COUNT]; /* events deleted before that region had them */
    uint64_t ack_seq;
    uint64_t next_seq;
};

/*
 * Opens (creating if needed) the WAL directory, recovers it as described above and loads the
 * cursors. Returns 0, or TL_EIO / TL_EPROTO (damage without salvage) / TL_EINVAL with err naming
 * the file and byte offset and what to do.
 */
int tl_wal_open(const struct tl_wal_options *opts, struct tl_wal **out,
                struct tl_wal_recovery *recovery, char *err, size_t errsize);

#define TL_WAL_MAX_WAITERS 4

/*
 * Adds an eventfd that is written, like notify_fd, whenever ack_seq advances: region threads
 * waiting to send durable events wake without a detour through the event loop. Before
 * tl_wal_start.
 */
void tl_wal_add_waiter(struct tl_wal *w, int fd);

/* Forgets every waiter, before their eventfds are closed. Any thread. */
void tl_wal_remove_waiters(struct tl_wal *w);

/* Starts the WAL and reclaim threads. Returns 0 or TL_EIO. */
int tl_wal_start(struct tl_wal *w, char *err, size_t errsize);

/* Writes what is buffered, syncs, persists the cursors, stops the thread and frees. NULL ok. */
void tl_wal_close(struct tl_wal *w);

/*
 * Appends an event: assigns ev->seq and encodes the record into the current batch. Returns 0,
 * or TL_EAGAIN when the quota is reached (when_full = reject, with the reason in err) or the unwritten
 * batches exceed their memory bound. Event loop thread.
 */
int tl_wal_append(struct tl_wal *w, struct tl_event *ev, char *err, size_t errsize);

/* Wakes the WAL thread after a run of appends. Event loop thread. */
void tl_wal_kick(struct tl_wal *w);

/* Every event with a lower sequence number may be acknowledged as far as the WAL goes. */
uint64_t tl_wal_ack_seq(struct tl_wal *w);

/* Every event with a lower sequence number is in a segment file and readable. */
uint64_t tl_wal_written_seq(struct tl_wal *w);

uint64_t tl_wal_next_seq(struct tl_wal *w);

/* Lowest sequence number still stored; readers below it jump here (shed or salvaged data). */
uint64_t tl_wal_floor(struct tl_wal *w);

/* Records that region has acknowledged every event below seq. Region thread. */
void tl_wal_set_cursor(struct tl_wal *w, int region, uint64_t seq);
uint64_t tl_wal_cursor(struct tl_wal *w, int region);

void tl_wal_get_stats(struct tl_wal *w, struct tl_wal_stats *stats);

/*
 * Opens a reader at seq (or at the floor, if seq is below it). Returns 0 or TL_EIO.
 * A reader belongs to one thread.
 */
int tl_wal_reader_open(struct tl_wal *w, uint64_t seq, struct tl_wal_reader **out, char *err,
                       size_t errsize);

/*
 * Reads the next event. Returns 1 with a new event in *out (owned by the caller, freed with
 * free()), 0 when the next event is not written yet, or TL_EPROTO / TL_EIO with err naming
 * segment and offset. After a gap (shed or salvaged data) it continues at the next stored
 * record; The seq of *out shows where. The reader reads the segment into one buffer, in blocks
 * of TL_WAL_READ_BLOCK_BYTES or one longer record at a time.
 */
int tl_wal_reader_next(struct tl_wal_reader *r, struct tl_event **out, char *err,
                       size_t errsize);

/* Sequence number the reader will return next. */
uint64_t tl_wal_reader_position(const struct tl_wal_reader *r);

void tl_wal_reader_close(struct tl_wal_reader *r);

/* Appends one encoded record for ev (its seq and topic_name set) to out. */
void tl_wal_encode_record(const struct tl_event *ev, struct tl_buf *out);

/*
 * Decodes one record from buf. Returns 1 and a new event (free() it; topic index set through
 * cfg, -1 when cfg is NULL or does not know the topic) with *consumed bytes used, 0 when buf
 * holds only part of a record, or TL_EPROTO when the record is damaged (err contains the reason).
 * Records longer than max_payload are damaged by definition, checked before allocation.
 */
int tl_wal_decode_record(const uint8_t *buf, size_t len, size_t max_payload,
                         const struct tl_config *cfg, struct tl_event **out, size_t *consumed,
                         char *err, size_t errsize);

#endif
