/*
 * Region readers and the checks of docs/guarantees.md.
 *
 * Order: the agent numbers events in the order it accepts them, and promises that each
 * partition of each region contains them in that order once a consumer keeps only the last copy
 * of every twinlane-id. The check walks each partition by offset, keeps the copy of each
 * sequence number with the highest offset, and counts every kept record whose sequence number
 * is below one kept before it. The same walk keeping first copies counts inversions that the
 * guarantee allows (an event resent after a later one was stored); they are reported as
 * information.
 */
#include "chaos_verify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <twinlane/client.h>

#include "chaos_agent.h"
#include "chaos_util.h"
#include "mem.h"

#define READER_POLL_MS 100
#define SETTLE_CHECK_INTERVAL_MS 250

struct reader_args {
    struct chaos_region_reader *reader;
    const struct chaos_load *load;
};

/* Returns a header's value as a NUL-terminated copy in out; false when missing. */
static bool header_text(rd_kafka_message_t *m, const char *name, char *out, size_t outsize)
{
    rd_kafka_headers_t *headers = NULL;
    const void *value;
    size_t len;
    if (rd_kafka_message_headers(m, &headers) != 0 ||
        rd_kafka_header_get_last(headers, name, &value, &len) != 0 || len >= outsize)
        return false;
    memcpy(out, value, len);
    out[len] = '\0';
    return true;
}

/* Builds the record of message m, checking its key and value against the load's event. */
static struct chaos_record make_record(rd_kafka_message_t *m, const struct chaos_load *load)
{
    struct chaos_record rec = {.offset = m->offset, .arrival_ms = chaos_now_ms(), .event = -1,
                               .partition = m->partition};
    char text[64];
    if (header_text(m, "twinlane-id", text, sizeof(text)) &&
        strncmp(text, CHAOS_AGENT_ID ":", strlen(CHAOS_AGENT_ID) + 1) == 0)
        rec.seq = strtoull(text + strlen(CHAOS_AGENT_ID) + 1, NULL, 10);
    if (header_text(m, "chaos-event", text, sizeof(text))) {
        char *end;
        unsigned long long i = strtoull(text, &end, 10);
        if (*end == '\0' && end != text && i < load->total)
            rec.event = (int64_t)i;
    }
    if (rec.event >= 0) {
        const char *key, *value;
        size_t key_len, value_len;
        char scratch_key[64], scratch_value[256];
        chaos_load_event_key(load, (size_t)rec.event, &key, &key_len, scratch_key,
                             sizeof(scratch_key));
        chaos_load_event_value(load, (size_t)rec.event, &value, &value_len, scratch_value,
                               sizeof(scratch_value));
        rec.value_matches = m->key_len == key_len && memcmp(m->key, key, key_len) == 0 &&
                            m->len == value_len && memcmp(m->payload, value, value_len) == 0;
    }
    return rec;
}

static void *reader_main(void *arg)
{
    struct reader_args *args = arg;
    struct chaos_region_reader *r = args->reader;
    const struct chaos_load *load = args->load;
    free(args);

    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", r->bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "twinlane-chaos-verifier", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", NULL, 0);
    rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        snprintf(r->error, sizeof(r->error), "creating the consumer failed: %s", errstr);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *assign =
        rd_kafka_topic_partition_list_new(r->partitions);
    for (int p = 0; p < r->partitions; p++)
        rd_kafka_topic_partition_list_add(assign, r->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, assign);
    rd_kafka_topic_partition_list_destroy(assign);

    while (!atomic_load(&r->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, READER_POLL_MS);
        if (!m)
            continue;
        if (m->err || m->partition < 0 || m->partition >= r->partitions) {
            rd_kafka_message_destroy(m);
            continue;
        }
        struct chaos_record rec = make_record(m, load);
        rd_kafka_message_destroy(m);

        pthread_mutex_lock(&r->lock);
        if (r->count == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 65536;
            r->records = tl_xrealloc(r->records, r->cap * sizeof(*r->records));
        }
        r->records[r->count++] = rec;
        if (rec.offset + 1 > r->next_offset[rec.partition])
            r->next_offset[rec.partition] = rec.offset + 1;
        pthread_mutex_unlock(&r->lock);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

int chaos_verify_start(struct chaos_verifier *v, const struct chaos_scenario *s,
                       const char *const bootstrap[2], const struct chaos_load *l)
{
    memset(v, 0, sizeof(*v));
    for (int i = 0; i < 2; i++) {
        struct chaos_region_reader *r = &v->readers[i];
        r->name = CHAOS_REGION_NAMES[i];
        snprintf(r->bootstrap, sizeof(r->bootstrap), "%s", bootstrap[i]);
        r->topic = s->topic;
        r->partitions = s->partitions;
        r->next_offset = tl_xcalloc((size_t)s->partitions, sizeof(int64_t));
        pthread_mutex_init(&r->lock, NULL);
    }
    for (int i = 0; i < 2; i++) {
        struct chaos_region_reader *r = &v->readers[i];
        struct reader_args *args = tl_xmalloc(sizeof(*args));
        *args = (struct reader_args){.reader = r, .load = l};
        if (pthread_create(&r->thread, NULL, reader_main, args) != 0) {
            free(args);
            return -1;
        }
        r->running = true;
    }
    return 0;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool contains_u64(const uint64_t *sorted, size_t n, uint64_t value)
{
    return bsearch(&value, sorted, n, sizeof(*sorted), compare_u64) != NULL;
}

/* Returns whether reader r has every acknowledged event and reached the high watermarks. */
static bool region_settled(struct chaos_region_reader *r, rd_kafka_t *query,
                           const struct chaos_load *l)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->count;
    uint64_t *seqs = tl_xmalloc((n ? n : 1) * sizeof(*seqs));
    for (size_t i = 0; i < n; i++)
        seqs[i] = r->records[i].seq;
    int64_t *next = tl_xmalloc((size_t)r->partitions * sizeof(*next));
    memcpy(next, r->next_offset, (size_t)r->partitions * sizeof(*next));
    pthread_mutex_unlock(&r->lock);

    bool settled = true;
    for (int p = 0; p < r->partitions && settled; p++) {
        int64_t low, high;
        if (rd_kafka_query_watermark_offsets(query, r->topic, p, &low, &high, 2000) != 0)
            settled = false;
        else if (next[p] < high)
            settled = false;
    }
    r->reached_high_watermark = settled;
    qsort(seqs, n, sizeof(*seqs), compare_u64);
    for (size_t i = 0; i < l->total && settled; i++) {
        if (l->events[i].status == TL_CLIENT_OK && !contains_u64(seqs, n, l->events[i].seq))
            settled = false;
    }
    free(seqs);
    free(next);
    return settled;
}

bool chaos_verify_settle(struct chaos_verifier *v, const struct chaos_load *l,
                         int64_t timeout_ms)
{
    rd_kafka_t *query[2];
    for (int i = 0; i < 2; i++) {
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", v->readers[i].bootstrap, NULL, 0);
        rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
        query[i] = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    }

    int64_t deadline = chaos_now_ms() + timeout_ms;
    bool settled = false;
    while (!settled) {
        settled = query[0] && query[1] && region_settled(&v->readers[0], query[0], l) &&
                  region_settled(&v->readers[1], query[1], l);
        if (settled || chaos_now_ms() > deadline)
            break;
        chaos_sleep_ms(SETTLE_CHECK_INTERVAL_MS);
    }
    for (int i = 0; i < 2; i++) {
        if (query[i])
            rd_kafka_destroy(query[i]);
    }
    return settled;
}

void chaos_verify_stop(struct chaos_verifier *v)
{
    for (int i = 0; i < 2; i++) {
        struct chaos_region_reader *r = &v->readers[i];
        if (!r->running)
            continue;
        atomic_store(&r->stop, true);
        pthread_join(r->thread, NULL);
        r->running = false;
    }
}

static int by_partition_offset(const void *a, const void *b)
{
    const struct chaos_record *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int by_seq_arrival(const void *a, const void *b)
{
    const struct chaos_record *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->arrival_ms < y->arrival_ms ? -1 : x->arrival_ms > y->arrival_ms;
}

/* Index of the first record with seq in records sorted by seq, or -1. */
static ptrdiff_t find_seq(const struct chaos_record *records, size_t n, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (records[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && records[lo].seq == seq ? (ptrdiff_t)lo : -1;
}

/*
 * Counts order violations of one partition's records (sorted by offset), keeping the last
 * (keep_last) or the first copy of each sequence number. seen is scratch space sorted here.
 */
static size_t count_inversions(const struct chaos_record *recs, size_t n, bool keep_last,
                               uint64_t *seen)
{
    size_t inversions = 0;
    uint64_t max_seq = 0;
    /* Walking backwards, the first copy met is the last copy in the log. */
    uint64_t *kept = tl_xmalloc((n ? n : 1) * sizeof(*kept));
    size_t kept_count = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = keep_last ? n - 1 - k : k;
        uint64_t seq = recs[i].seq;
        if (seq == 0)
            continue;
        /* seen is an open-addressing hash set of the sequence numbers met so far. */
        bool dup = false;
        size_t cap = n * 2 + 1;
        for (size_t h = seq % cap;; h = (h + 1) % cap) {
            if (seen[h] == 0) {
                seen[h] = seq;
                break;
            }
            if (seen[h] == seq) {
                dup = true;
                break;
            }
        }
        if (!dup)
            kept[kept_count++] = seq;
    }
    for (size_t k = 0; k < kept_count; k++) {
        /* kept is in walk order; restore log order for the last-copy walk. */
        uint64_t seq = keep_last ? kept[kept_count - 1 - k] : kept[k];
        if (seq < max_seq)
            inversions++;
        else
            max_seq = seq;
    }
    free(kept);
    return inversions;
}

void chaos_verify_region(struct chaos_verifier *v, int r, const struct chaos_load *l,
                         struct chaos_region_result *out)
{
    struct chaos_region_reader *reader = &v->readers[r];
    struct chaos_record *recs = reader->records;
    size_t n = reader->count;
    memset(out, 0, sizeof(*out));
    out->records = n;
    out->read_to_high_watermark = reader->reached_high_watermark;

    /* Order, partition by partition. */
    qsort(recs, n, sizeof(*recs), by_partition_offset);
    uint64_t *seen = tl_xmalloc((2 * n + 1) * sizeof(*seen));
    for (size_t start = 0; start < n;) {
        size_t end = start;
        while (end < n && recs[end].partition == recs[start].partition)
            end++;
        size_t len = end - start;
        memset(seen, 0, (2 * len + 1) * sizeof(*seen));
        out->order_violations += count_inversions(recs + start, len, true, seen);
        memset(seen, 0, (2 * len + 1) * sizeof(*seen));
        out->first_copy_inversions += count_inversions(recs + start, len, false, seen);
        start = end;
    }
    free(seen);

    /* Per record: where it belongs and whether an attempt of the load produced it. */
    for (size_t i = 0; i < n; i++) {
        const struct chaos_record *rec = &recs[i];
        if (rec->seq == 0 || rec->event < 0 || !rec->value_matches) {
            out->unexpected++;
            continue;
        }
        const struct chaos_event *e = &l->events[rec->event];
        if (rec->partition != e->expected_partition)
            out->misplaced++;
    }

    /* Per sequence number: duplicates and copies of attempts that got no OK. */
    qsort(recs, n, sizeof(*recs), by_seq_arrival);
    for (size_t i = 0; i < n; i++) {
        if (recs[i].seq == 0)
            continue;
        if (i > 0 && recs[i].seq == recs[i - 1].seq) {
            out->duplicates++;
            continue;
        }
        if (recs[i].event >= 0) {
            const struct chaos_event *e = &l->events[recs[i].event];
            if (e->status != TL_CLIENT_OK || e->seq != recs[i].seq)
                out->unacknowledged++;
        }
    }

    /* Every event with an OK result must be there under the sequence number of that result. */
    for (size_t i = 0; i < l->total; i++) {
        const struct chaos_event *e = &l->events[i];
        if (e->status != TL_CLIENT_OK)
            continue;
        ptrdiff_t at = find_seq(recs, n, e->seq);
        if (at < 0 || recs[at].event != (int64_t)i) {
            out->missing++;
            if (out->missing_example_count < 5)
                out->missing_examples[out->missing_example_count++] = (int64_t)i;
        }
    }

}

struct interval {
    int64_t start, end;
};

static int by_start(const void *a, const void *b)
{
    const struct interval *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

int64_t chaos_verify_convergence(struct chaos_verifier *v, const struct chaos_load *l,
                                 int64_t heal_ms)
{
    /*
     * Event e acknowledged at a_e and present in both regions from r_e on leaves the regions
     * unconverged during [a_e, r_e). The result is the first time at or after heal_ms that no
     * such interval covers.
     */
    struct interval *lag = tl_xmalloc((l->total ? l->total : 1) * sizeof(*lag));
    size_t count = 0;
    for (size_t i = 0; i < l->total; i++) {
        const struct chaos_event *e = &l->events[i];
        if (e->status != TL_CLIENT_OK)
            continue;
        int64_t held = 0;
        for (int r = 0; r < 2; r++) {
            struct chaos_region_reader *reader = &v->readers[r];
            ptrdiff_t at = find_seq(reader->records, reader->count, e->seq);
            if (at < 0) {
                free(lag);
                return -1;
            }
            if (reader->records[at].arrival_ms > held)
                held = reader->records[at].arrival_ms;
        }
        if (held > e->ack_ms)
            lag[count++] = (struct interval){.start = e->ack_ms, .end = held};
    }
    qsort(lag, count, sizeof(*lag), by_start);
    int64_t t = heal_ms;
    for (size_t i = 0; i < count; i++) {
        if (lag[i].start > t)
            break;
        if (lag[i].end > t)
            t = lag[i].end;
    }
    free(lag);
    return t - heal_ms;
}

void chaos_verify_free(struct chaos_verifier *v)
{
    chaos_verify_stop(v);
    for (int i = 0; i < 2; i++) {
        free(v->readers[i].records);
        free(v->readers[i].next_offset);
        pthread_mutex_destroy(&v->readers[i].lock);
    }
    memset(v, 0, sizeof(*v));
}
