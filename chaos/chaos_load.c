/*
 * Load generator thread and input files.
 *
 * Sending order: events waiting for another attempt go first, oldest first, then new events
 * as the rate allows. New events stop at the end of load.duration; resends go on until every
 * event has a final result or load.drain_timeout runs out.
 */
#include "chaos_load.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <twinlane/client.h>

#include "chaos_util.h"
#include "mem.h"

#define RECONNECT_INTERVAL_MS 20
#define RETRYABLE_BACKOFF_MS 100
#define GENERATED_VALUE_BYTES 200

/* Splits the input into lines and finds each line's key. */
static int index_input(struct chaos_load *l, char *err, size_t errsize)
{
    const struct chaos_scenario *s = l->scenario;
    size_t cap = 1024;
    l->lines = tl_xmalloc(cap * sizeof(*l->lines));
    long key_column = -1;
    bool header = s->format == CHAOS_INPUT_TSV;

    for (char *p = l->input_text; *p;) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *next = end ? end + 1 : p + len;
        if (len == 0 || len > UINT32_MAX) {
            p = next;
            continue;
        }
        struct chaos_line line = {.text = p, .len = (uint32_t)len};
        bool keyed = false;

        if (header) {
            /* Find key_column among the tab-separated names of the first line. */
            long column = 0;
            for (char *f = p; f < p + len; column++) {
                char *tab = memchr(f, '\t', (size_t)(p + len - f));
                size_t flen = tab ? (size_t)(tab - f) : (size_t)(p + len - f);
                if (flen == strlen(s->key_column) && memcmp(f, s->key_column, flen) == 0)
                    key_column = column;
                f = tab ? tab + 1 : p + len;
            }
            if (key_column < 0) {
                snprintf(err, errsize, "%s: the header line has no column \"%s\"", s->input,
                         s->key_column);
                return -1;
            }
            header = false;
            p = next;
            continue;
        } else if (s->format == CHAOS_INPUT_TSV) {
            char *f = p;
            for (long column = 0; f && column < key_column; column++) {
                f = memchr(f, '\t', (size_t)(p + len - f));
                f = f ? f + 1 : NULL;
            }
            if (f) {
                char *tab = memchr(f, '\t', (size_t)(p + len - f));
                line.key_offset = (uint32_t)(f - p);
                line.key_len = (uint32_t)((tab ? tab : p + len) - f);
                keyed = true;
            }
        } else {
            json_error_t jerr;
            json_t *obj = json_loadb(p, len, 0, &jerr);
            json_t *key = obj ? json_object_get(obj, s->key_field) : NULL;
            const char *text = key && json_is_string(key) ? json_string_value(key) : NULL;
            /* The key's text appears in the line as written; find it to keep an offset. */
            const char *at = text ? strstr(p, text) : NULL;
            if (at && at < p + len) {
                line.key_offset = (uint32_t)(at - p);
                line.key_len = (uint32_t)strlen(text);
                keyed = true;
            }
            json_decref(obj);
        }

        if (!keyed) {
            l->lines_without_key++;
        } else {
            if (l->line_count == cap) {
                cap *= 2;
                l->lines = tl_xrealloc(l->lines, cap * sizeof(*l->lines));
            }
            l->lines[l->line_count++] = line;
        }
        p = next;
    }
    if (l->line_count == 0) {
        snprintf(err, errsize, "%s: no line with a key", s->input);
        return -1;
    }
    return 0;
}

void chaos_load_event_key(const struct chaos_load *l, size_t i, const char **key, size_t *len,
                          char *scratch, size_t scratchsize)
{
    if (!l->lines) {
        int n = snprintf(scratch, scratchsize, "key-%zu", i % (size_t)l->scenario->generated_keys);
        *key = scratch;
        *len = (size_t)n;
        return;
    }
    const struct chaos_line *line = &l->lines[i % l->line_count];
    *key = line->text + line->key_offset;
    *len = line->key_len;
}

void chaos_load_event_value(const struct chaos_load *l, size_t i, const char **value,
                            size_t *len, char *scratch, size_t scratchsize)
{
    if (!l->lines) {
        int n = snprintf(scratch, scratchsize, "{\"event\":%zu,\"pad\":\"%0*d\"}", i,
                         GENERATED_VALUE_BYTES - 30, 0);
        *value = scratch;
        *len = (size_t)n < scratchsize ? (size_t)n : scratchsize - 1;
        return;
    }
    const struct chaos_line *line = &l->lines[i % l->line_count];
    *value = line->text;
    *len = line->len;
}

int chaos_load_prepare(struct chaos_load *l, const struct chaos_scenario *s, const char *dir,
                       char *err, size_t errsize)
{
    memset(l, 0, sizeof(*l));
    l->scenario = s;
    l->total = (size_t)((int64_t)s->rate * s->duration_ms / 1000);
    if (l->total == 0) {
        snprintf(err, errsize, "load.rate x load.duration gives no event");
        return -1;
    }

    if (s->format != CHAOS_INPUT_GENERATED) {
        l->input_text = chaos_read_file(s->input, NULL);
        if (!l->input_text) {
            snprintf(err, errsize, "cannot read the input file %s", s->input);
            return -1;
        }
        if (index_input(l, err, errsize) < 0)
            return -1;
    }

    l->events = tl_xcalloc(l->total, sizeof(*l->events));
    l->resend = tl_xcalloc(l->total, sizeof(*l->resend));
    l->resend_after = tl_xcalloc(l->total, sizeof(*l->resend_after));

    /* The partition each key must land in, from librdkafka's murmur2, not from the agent. */
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        snprintf(err, errsize, "creating a librdkafka handle failed: %s", errstr);
        return -1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, s->topic, NULL);
    for (size_t i = 0; i < l->total; i++) {
        const char *key;
        size_t len;
        char scratch[64];
        chaos_load_event_key(l, i, &key, &len, scratch, sizeof(scratch));
        l->events[i].expected_partition =
            rd_kafka_msg_partitioner_murmur2(rkt, key, len, s->partitions, NULL, NULL);
        l->events[i].status = CHAOS_PENDING;
        l->events[i].partition = -1;
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);

    char path[700];
    snprintf(path, sizeof(path), "%s/events.tsv", dir);
    FILE *log = fopen(path, "w");
    if (!log) {
        snprintf(err, errsize, "cannot write %s", path);
        return -1;
    }
    fprintf(log, "event\tattempt\tsend_ms\tack_ms\tstatus\tseq\tpartition\tspooled\n");
    l->log = log;
    return 0;
}

static void queue_resend(struct chaos_load *l, size_t i, int64_t after_ms)
{
    if (l->events[i].queued)
        return;
    l->events[i].queued = true;
    l->resend_after[i] = after_ms;
    l->resend[(l->resend_head + l->resend_count) % l->total] = i;
    l->resend_count++;
}

static void on_result(void *ctx, const struct tl_client_result *r)
{
    struct chaos_load *l = ctx;
    size_t i = (size_t)(uintptr_t)r->opaque;
    struct chaos_event *e = &l->events[i];
    int64_t now = chaos_now_ms();

    e->ack_ms = now;
    e->status = (int16_t)r->status;
    if (r->status == TL_CLIENT_OK) {
        e->seq = r->seq;
        e->partition = r->partition;
        e->spooled = r->region_count == 0;
    }
    fprintf(l->log, "%zu\t%u\t%" PRId64 "\t%" PRId64 "\t%s\t%" PRIu64 "\t%" PRId32 "\t%d\n", i,
            e->attempts, e->send_ms, now, tl_client_status_name(r->status), r->seq,
            r->partition, r->status == TL_CLIENT_OK && r->region_count == 0);

    switch (r->status) {
    case TL_CLIENT_OK:
        atomic_fetch_add(&l->results_ok, 1);
        break;
    case TL_CLIENT_RETRYABLE:
        atomic_fetch_add(&l->results_retryable, 1);
        queue_resend(l, i, now + RETRYABLE_BACKOFF_MS);
        break;
    case TL_CLIENT_CONNECTION_LOST:
        atomic_fetch_add(&l->results_lost, 1);
        queue_resend(l, i, now);
        break;
    case TL_CLIENT_FAILED:
        atomic_fetch_add(&l->results_failed, 1);
        break;
    default:
        atomic_fetch_add(&l->results_other, 1);
        break;
    }
    if (r->status != TL_CLIENT_OK && r->status != TL_CLIENT_CONNECTION_LOST &&
        !l->first_problem[0])
        snprintf(l->first_problem, sizeof(l->first_problem), "event %zu: %s: %s", i,
                 tl_client_status_name(r->status), r->message ? r->message : "(no message)");
}

/* Adds event i to the batch being built; the scratch space keeps generated keys and values. */
struct batch {
    struct tl_client_event events[1000];
    struct tl_client_header headers[1000];
    char ids[1000][24];
    char keys[1000][48];
    char values[1000][GENERATED_VALUE_BYTES + 16];
    size_t count;
};

static void batch_add(struct chaos_load *l, struct batch *b, size_t i, int64_t now)
{
    size_t n = b->count++;
    const char *key, *value;
    size_t key_len, value_len;
    chaos_load_event_key(l, i, &key, &key_len, b->keys[n], sizeof(b->keys[n]));
    chaos_load_event_value(l, i, &value, &value_len, b->values[n], sizeof(b->values[n]));
    int id_len = snprintf(b->ids[n], sizeof(b->ids[n]), "%zu", i);
    b->headers[n] = (struct tl_client_header){.name = "chaos-event", .value = b->ids[n],
                                              .value_len = (size_t)id_len};
    b->events[n] = (struct tl_client_event){
        .topic = l->scenario->topic, .key = key, .key_len = key_len, .has_key = true,
        .value = value, .value_len = value_len, .headers = &b->headers[n], .header_count = 1,
        .opaque = (void *)(uintptr_t)i};

    struct chaos_event *e = &l->events[i];
    if (e->attempts == 0)
        e->first_send_ms = now;
    e->send_ms = now;
    e->ack_ms = 0;
    e->status = CHAOS_PENDING;
    e->attempts++;
}

/* Sends what is due; returns -1 when the connection failed (the caller reconnects). */
static int send_due(struct chaos_load *l, struct tl_client *c, struct batch *b)
{
    const struct chaos_scenario *s = l->scenario;
    int64_t now = chaos_now_ms();
    size_t due = (size_t)((now - l->start_ms) * s->rate / 1000);
    if (due > l->total)
        due = l->total;
    if (atomic_load(&l->stop_generating))
        due = atomic_load(&l->sent_new);

    for (;;) {
        b->count = 0;
        while (b->count < (size_t)s->batch &&
               tl_client_inflight(c) + b->count < (size_t)s->max_inflight) {
            if (l->resend_count > 0 && l->resend_after[l->resend[l->resend_head]] <= now) {
                size_t i = l->resend[l->resend_head];
                l->resend_head = (l->resend_head + 1) % l->total;
                l->resend_count--;
                l->events[i].queued = false;
                batch_add(l, b, i, now);
            } else if (atomic_load(&l->sent_new) < due) {
                batch_add(l, b, atomic_fetch_add(&l->sent_new, 1), now);
            } else {
                break;
            }
        }
        if (b->count == 0)
            return 0;

        char err[256];
        if (tl_client_send(c, b->events, b->count, NULL, err, sizeof(err)) != 0) {
            /* Nothing was queued: every event of the batch goes back for another attempt. */
            for (size_t k = 0; k < b->count; k++)
                queue_resend(l, (size_t)(uintptr_t)b->events[k].opaque, now);
            return -1;
        }
    }
}

/* Returns whether every generated event has a final result. */
static bool all_final(struct chaos_load *l)
{
    if (atomic_load(&l->sent_new) < l->total && !atomic_load(&l->stop_generating))
        return false;
    if (l->resend_count > 0)
        return false;
    for (size_t i = 0; i < atomic_load(&l->sent_new); i++) {
        if (l->events[i].status == CHAOS_PENDING)
            return false;
    }
    return true;
}

static void *load_main(void *arg)
{
    struct chaos_load *l = arg;
    struct batch *b = tl_xmalloc(sizeof(*b));
    struct tl_client *c = NULL;
    struct tl_client_options opts = {.on_result = on_result, .ctx = l};
    int64_t last_connect = 0;

    while (!atomic_load(&l->stop)) {
        if (!c) {
            int64_t now = chaos_now_ms();
            if (now - last_connect < RECONNECT_INTERVAL_MS) {
                chaos_sleep_ms(RECONNECT_INTERVAL_MS - (now - last_connect));
                continue;
            }
            last_connect = now;
            char err[256];
            if (tl_client_connect(l->address, &opts, &c, err, sizeof(err)) != 0)
                continue;
            atomic_fetch_add(&l->reconnects, 1);
        }
        if (send_due(l, c, b) < 0 ||
            tl_client_poll(c, tl_client_inflight(c) > 0 ? 5 : 0) == TL_CLIENT_ECLOSED) {
            tl_client_close(c); /* delivers CONNECTION_LOST for what was in flight */
            c = NULL;
            continue;
        }
        if (tl_client_inflight(c) == 0)
            chaos_sleep_ms(2);
    }
    if (c) {
        tl_client_flush(c, 10000);
        tl_client_close(c);
    }
    free(b);
    return NULL;
}

int chaos_load_start(struct chaos_load *l, const char *socket_path, char *err, size_t errsize)
{
    snprintf(l->address, sizeof(l->address), "unix:%s", socket_path);
    l->start_ms = chaos_now_ms();
    if (pthread_create(&l->thread, NULL, load_main, l) != 0) {
        snprintf(err, errsize, "starting the load thread failed");
        return -1;
    }
    l->running = true;
    return 0;
}

void chaos_load_finish(struct chaos_load *l)
{
    if (!l->running)
        return;
    int64_t deadline = chaos_now_ms() + l->scenario->drain_timeout_ms;
    chaos_sleep_until(l->start_ms + l->scenario->duration_ms);
    atomic_store(&l->stop_generating, true);
    /* NOTE: all_final reads the load thread's state without a lock. A stale read only delays the exit. */
    while (!all_final(l) && chaos_now_ms() < deadline)
        chaos_sleep_ms(50);
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL);
    l->running = false;
    fflush(l->log);
}

void chaos_load_free(struct chaos_load *l)
{
    if (l->running) {
        atomic_store(&l->stop, true);
        pthread_join(l->thread, NULL);
    }
    if (l->log)
        fclose(l->log);
    free(l->input_text);
    free(l->lines);
    free(l->events);
    free(l->resend);
    free(l->resend_after);
    memset(l, 0, sizeof(*l));
}
