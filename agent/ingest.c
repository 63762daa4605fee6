/*
 * Ingest: listeners, connections, request checks and answers.
 *
 * Ownership: a connection owns its batches' answers; a batch (one request) lives until every
 * accepted event in it has completed, and holds a reference on its connection so that a client
 * that disconnects early does not free state that completions still reach. A closed
 * connection's fd is closed at once; its struct goes when its last batch completes.
 */
#include "ingest.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "frame.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "partitioner.h"
#include "wal.h"

/* Largest block a connection's decode arena keeps between requests. */
#define ARENA_KEEP_BYTES ((size_t)1 << 20)
/* Answers waiting for a client that does not read them; past this the connection is not read. */
#define OUTPUT_HIGH_WATER (1u << 20)
/* Requests handled per connection before others get a turn. */
#define MAX_REQUESTS_PER_TURN 64
#define RESERVED_HEADER_PREFIX "twinlane-"

struct tl_conn;

struct tl_batch {
    struct tl_conn *conn;
    uint64_t batch_id;
    int64_t accepted_us;             /* monotonic time the request was taken, for ack latency */
    uint32_t remaining;              /* accepted events not yet completed */
    size_t count;
    Twinlane__EventResult *results;  /* one per event */
    Twinlane__EventResult **result_ptrs;
    char **region_names;             /* TL_REGION_COUNT slots per event */
};

struct tl_conn {
    struct tl_watch watch;
    struct tl_ingest *ing;
    char peer[96];
    struct tl_frame_reader reader;
    struct tl_buf out;
    uint32_t epoll_events;
    bool registered;                 /* fd is in the epoll set */
    bool hung_up;                    /* epoll reported HUP/ERR: the peer is gone */
    uint32_t batches;                /* batches not yet answered */
    Twinlane__ProduceRequest *stalled; /* decoded request waiting for pipeline room */
    struct tl_arena decode_arena;    /* arena of the connection's one decoded request */
    bool read_closed;                /* peer finished sending, or we stopped reading */
    bool close_after_flush;          /* protocol error: answer, then close */
    bool fd_closed;
    bool backlog;                    /* complete frames left over after its turn */
    struct tl_conn *prev;
    struct tl_conn *next;
};

struct listener {
    struct tl_watch watch;
    struct tl_ingest *ing;
    const char *kind;  /* "unix" or "tcp" */
    char address[160];
};

struct tl_ingest {
    const struct tl_config *cfg;
    int epfd;
    struct tl_pipeline *pipeline;
    struct tl_wal *wal;
    bool draining;                   /* shutdown: unanswered events get RETRYABLE */
    int64_t dispatch_us;             /* monotonic time the current dispatch round started */
    struct tl_timeline *timelines;   /* per region; notified of acknowledgements */
    const int32_t *partitions;
    uint32_t *keyless_next;          /* per topic: next partition for keyless events */
    struct listener unix_listener;
    struct listener tcp_listener;
    bool accepting;
    bool paused;                     /* admin API: connections are not read */
    struct tl_conn *conns;
    struct tl_ingest_stats stats;
    struct tl_ratelimit bad_frame_log;
    struct tl_ratelimit conn_log;
};

static void conn_update_interest(struct tl_conn *c);
static void conn_process(struct tl_conn *c);
static void conn_maybe_free(struct tl_conn *c);
static bool conn_may_read(const struct tl_conn *c);

/* ---- answers ---------------------------------------------------------------------------- */

static void conn_flush(struct tl_conn *c)
{
    while (c->out.len > 0 && !c->fd_closed) {
        ssize_t n = send(c->watch.fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n > 0) {
            tl_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0 && errno == EINTR)
            continue;
        /* The client went away; its answers have nowhere to go. */
        c->out.len = 0;
        c->read_closed = true;
        break;
    }
}

static void send_response(struct tl_conn *c, Twinlane__ProduceResponse *resp)
{
    if (c->fd_closed)
        return;
    tl_frame_append(&c->out, &resp->base);
    conn_flush(c);
}

static void send_frame_error(struct tl_conn *c, uint64_t batch_id, Twinlane__Status status,
                             const char *message)
{
    Twinlane__ProduceResponse resp = TWINLANE__PRODUCE_RESPONSE__INIT;
    resp.batch_id = batch_id;
    resp.error = (char *)message;
    resp.has_error_status = true;
    resp.error_status = status;
    send_response(c, &resp);
}

static void log_bad_frame(struct tl_ingest *ing, struct tl_conn *c, const char *what)
{
    uint64_t suppressed;
    ing->stats.bad_frames++;
    if (tl_ratelimit_allow(&ing->bad_frame_log, &suppressed))
        tl_log_warn("ingest", "bad frame from client peer=%s error=\"%s\" suppressed=%" PRIu64,
                    c->peer, what, suppressed);
}

static void batch_free(struct tl_batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        free(b->results[i].message);
    free(b->results);
    free(b->result_ptrs);
    free(b->region_names);
    free(b);
}

/* Sends the answer of a batch whose events all have a final status, then frees it. */
static void batch_finish(struct tl_batch *b)
{
    struct tl_conn *c = b->conn;
    Twinlane__ProduceResponse resp = TWINLANE__PRODUCE_RESPONSE__INIT;

    resp.batch_id = b->batch_id;
    resp.n_results = b->count;
    resp.results = b->result_ptrs;
    send_response(c, &resp);
    batch_free(b);
    c->batches--;
}

static void set_result(Twinlane__EventResult *r, Twinlane__Status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_result(Twinlane__EventResult *r, Twinlane__Status status, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    r->status = status;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    free(r->message);
    r->message = tl_xstrdup(text);
}

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void count_rejection(struct tl_ingest *ing, Twinlane__Status status)
{
    ing->stats.events_rejected++;
    if ((size_t)status < sizeof(ing->stats.rejected_by_status) / sizeof(uint64_t))
        ing->stats.rejected_by_status[status]++;
}

/*
 * Fills the answer of one event from its per-region results and the acknowledgement policy,
 * and sends the request's answer when it was the last one. Called by the pipeline.
 */
static void answer_event(void *ctx, struct tl_event *ev)
{
    struct tl_ingest *ing = ctx;
    struct tl_batch *b = ev->batch;
    Twinlane__EventResult *r = &b->results[ev->index];
    char **names = &b->region_names[ev->index * TL_REGION_COUNT];
    unsigned state = atomic_load(&ev->state);
    char failures[400] = "";
    size_t failures_len = 0;
    size_t held = 0;
    size_t reported = 0;

    for (int i = 0; i < TL_REGION_COUNT; i++) {
        if (state & TL_EVENT_STORED(i)) {
            names[held++] = ing->cfg->regions[i].name;
            reported++;
            continue;
        }
        if (!(state & TL_EVENT_REPORTED(i)))
            continue;
        reported++;
        int n = snprintf(failures + failures_len, sizeof(failures) - failures_len,
                         "%sregion %s: %s", failures_len ? "; " : "", ing->cfg->regions[i].name,
                         rd_kafka_err2str(ev->region[i].err));
        if (n > 0 && (size_t)n < sizeof(failures) - failures_len)
            failures_len += (size_t)n;
    }

    r->has_seq = true;
    r->seq = ev->seq;
    r->has_partition = true;
    r->partition = ev->partition;
    r->regions = names;
    r->n_regions = held;

    /*
     * The pipeline already decided the event may be answered; what is left is whether a
     * region rejected the event itself. The healthy set may have changed since that decision,
     * so it is not consulted again here.
     */
    unsigned all_regions = (1u << TL_REGION_COUNT) - 1;
    unsigned stored = (state >> 8) & all_regions;
    unsigned rejected = state & all_regions & ~stored;
    bool ok;
    switch (ing->cfg->ack_policy) {
    case TL_ACK_ALL:
        ok = rejected == 0;
        break;
    case TL_ACK_ONE:
        ok = stored != 0 || rejected == 0;
        break;
    default:
        ok = true;
        break;
    }
    /* With no region holding it yet, the WAL alone holds the event: say so. */
    if (ok && held == 0 && ing->cfg->ack_policy != TL_ACK_LOCAL) {
        r->has_spooled = true;
        r->spooled = true;
    }
    if (ing->draining && !(ev->durable && ev->regions_ready)) {
        set_result(r, TWINLANE__STATUS__RETRYABLE, "the agent stopped before acknowledging the "
                   "event; it is kept in the WAL and reaches the regions after the agent "
                   "restarts, so sending it again may store it twice");
        ing->stats.events_unanswered++;
    } else if (ok) {
        r->status = TWINLANE__STATUS__OK;
        ing->stats.events_acknowledged++;
        tl_histogram_observe(&ing->stats.ack_latency,
                             (double)(ing->dispatch_us - b->accepted_us) / 1e6);
        if (r->spooled)
            ing->stats.events_spooled++;
        for (int i = 0; ing->timelines && i < TL_REGION_COUNT; i++)
            tl_timeline_note_ack(&ing->timelines[i]);
    } else {
        set_result(r, TWINLANE__STATUS__FAILED, "%s", reported ? failures : "no region stored it");
        ing->stats.events_failed++;
    }

    if (--b->remaining > 0)
        return;
    struct tl_conn *c = b->conn;
    batch_finish(b);
    conn_update_interest(c);
    conn_maybe_free(c);
}

/* Gives connections stalled on a full pipeline another go. */
static void resume_stalled(struct tl_ingest *ing)
{
    for (struct tl_conn *c = ing->conns; c;) {
        struct tl_conn *next = c->next;
        if (c->stalled) {
            conn_process(c);
            conn_update_interest(c);
            conn_maybe_free(c);
        }
        c = next;
    }
}

/*
 * Every event finished in one dispatch round has its acknowledgement latency measured at the
 * round's start, which saves a clock read per event. Requests are accepted only between rounds,
 * so no batch is younger than that time.
 */
void tl_ingest_handle_completions(struct tl_ingest *ing)
{
    ing->dispatch_us = monotonic_us();
    tl_pipeline_dispatch(ing->pipeline, tl_wal_ack_seq(ing->wal), answer_event, ing);
    resume_stalled(ing);
}

void tl_ingest_answer_remaining(struct tl_ingest *ing)
{
    ing->draining = true;
    ing->dispatch_us = monotonic_us();
    tl_pipeline_dispatch(ing->pipeline, tl_wal_ack_seq(ing->wal), answer_event, ing);
    tl_pipeline_drain(ing->pipeline, answer_event, ing);
}

/* ---- requests --------------------------------------------------------------------------- */

static size_t event_bytes(const Twinlane__Event *e)
{
    size_t n = (e->has_key ? e->key.len : 0) + (e->has_value ? e->value.len : 0);
    for (size_t h = 0; h < e->n_headers; h++)
        n += strlen(e->headers[h]->name) + (e->headers[h]->has_value ? e->headers[h]->value.len : 0);
    return n;
}

/*
 * Checks one event. Returns TWINLANE__STATUS__OK and the topic index, or a rejection status
 * with the reason written into the result.
 */
static Twinlane__Status check_event(struct tl_ingest *ing, const Twinlane__Event *e,
                                    Twinlane__EventResult *r, int *topic)
{
    char why[300];
    size_t topic_len = strlen(e->topic);

    if (!tl_topic_name_valid(e->topic, topic_len, why, sizeof(why))) {
        set_result(r, TWINLANE__STATUS__INVALID, "invalid topic name: %s", why);
        return TWINLANE__STATUS__INVALID;
    }
    *topic = tl_config_topic_index(ing->cfg, e->topic);
    if (*topic < 0) {
        set_result(r, TWINLANE__STATUS__UNKNOWN_TOPIC, "topic \"%s\" is not configured in this "
                   "agent; add it to the topics list of %s", e->topic, ing->cfg->path);
        return TWINLANE__STATUS__UNKNOWN_TOPIC;
    }
    size_t bytes = event_bytes(e);
    if (bytes > ing->cfg->max_event_bytes) {
        set_result(r, TWINLANE__STATUS__TOO_LARGE, "event of %zu bytes (key + value + headers) "
                   "exceeds listen.max_event_bytes = %zu", bytes, ing->cfg->max_event_bytes);
        return TWINLANE__STATUS__TOO_LARGE;
    }
    /* The WAL stores the header count and each name's length in 16 bits. */
    if (e->n_headers > UINT16_MAX) {
        set_result(r, TWINLANE__STATUS__INVALID, "event has %zu headers; at most %u are accepted",
                   e->n_headers, (unsigned)UINT16_MAX);
        return TWINLANE__STATUS__INVALID;
    }
    for (size_t h = 0; h < e->n_headers; h++) {
        const char *name = e->headers[h]->name;
        if (strlen(name) > UINT16_MAX) {
            set_result(r, TWINLANE__STATUS__INVALID, "header %zu has a name of %zu bytes; at "
                       "most %u are accepted", h, strlen(name), (unsigned)UINT16_MAX);
            return TWINLANE__STATUS__INVALID;
        }
        if (name[0] == '\0') {
            set_result(r, TWINLANE__STATUS__INVALID, "header %zu has an empty name", h);
            return TWINLANE__STATUS__INVALID;
        }
        if (strncmp(name, RESERVED_HEADER_PREFIX, strlen(RESERVED_HEADER_PREFIX)) == 0) {
            set_result(r, TWINLANE__STATUS__INVALID, "header name \"%s\" is reserved: names "
                       "starting with \"" RESERVED_HEADER_PREFIX "\" are set by the agent", name);
            return TWINLANE__STATUS__INVALID;
        }
    }
    return TWINLANE__STATUS__OK;
}

/* Copies an accepted event into one allocation the pipeline can own. */
static struct tl_event *make_event(struct tl_ingest *ing, const Twinlane__Event *e, int topic,
                                   int64_t now_ms)
{
    size_t key_len = e->has_key ? e->key.len : 0;
    size_t value_len = e->has_value ? e->value.len : 0;
    size_t names_len = 0;
    size_t values_len = 0;
    for (size_t h = 0; h < e->n_headers; h++) {
        names_len += strlen(e->headers[h]->name) + 1;
        values_len += e->headers[h]->has_value ? e->headers[h]->value.len : 0;
    }

    size_t size = sizeof(struct tl_event) + e->n_headers * sizeof(struct tl_header) + key_len +
                  value_len + names_len + values_len;
    struct tl_event *ev = tl_xcalloc(1, size);
    ev->headers = (struct tl_header *)(ev + 1);
    uint8_t *p = (uint8_t *)(ev->headers + e->n_headers);

    ev->topic = topic;
    ev->topic_name = ing->cfg->topics[topic].name;
    ev->ingest_ms = now_ms;
    ev->has_key = e->has_key;
    ev->key = p;
    ev->key_len = key_len;
    if (key_len)
        memcpy(p, e->key.data, key_len);
    p += key_len;
    if (e->has_value) {
        ev->value = p;
        ev->value_len = value_len;
        if (value_len)
            memcpy(p, e->value.data, value_len);
        p += value_len;
    }
    ev->header_count = e->n_headers;
    for (size_t h = 0; h < e->n_headers; h++) {
        size_t n = strlen(e->headers[h]->name) + 1;
        memcpy(p, e->headers[h]->name, n);
        ev->headers[h].name = (const char *)p;
        p += n;
        if (e->headers[h]->has_value) {
            ev->headers[h].value = p;
            ev->headers[h].value_len = e->headers[h]->value.len;
            if (e->headers[h]->value.len)
                memcpy(p, e->headers[h]->value.data, e->headers[h]->value.len);
            p += e->headers[h]->value.len;
        }
    }
    ev->bytes = key_len + value_len + names_len + values_len;

    int32_t partitions = ing->partitions[topic];
    if (e->has_key) {
        ev->partition = tl_partition_for_key(ev->key, ev->key_len, partitions);
    } else {
        /* Round-robin chosen here, so both regions get the same partition number. */
        ev->partition = (int32_t)(ing->keyless_next[topic] % (uint32_t)partitions);
        ing->keyless_next[topic]++;
    }
    return ev;
}

/*
 * Accepts a decoded request: checks every event, appends the accepted ones to the pipeline and
 * answers at once when none was accepted. Returns false, leaving the request untouched, when
 * the pipeline has no room for it yet.
 */
static bool accept_request(struct tl_conn *c, Twinlane__ProduceRequest *req)
{
    struct tl_ingest *ing = c->ing;
    size_t n = req->n_events;
    size_t bytes = 0;

    for (size_t i = 0; i < n; i++)
        bytes += event_bytes(req->events[i]);
    if (!tl_pipeline_has_room(ing->pipeline, n, bytes))
        return false;

    struct tl_batch *b = tl_xcalloc(1, sizeof(*b));
    b->conn = c;
    b->batch_id = req->batch_id;
    b->accepted_us = monotonic_us();
    b->count = n;
    b->results = tl_xcalloc(n, sizeof(*b->results));
    b->result_ptrs = tl_xcalloc(n, sizeof(*b->result_ptrs));
    b->region_names = tl_xcalloc(n * TL_REGION_COUNT, sizeof(*b->region_names));
    c->batches++;
    ing->stats.requests++;

    int64_t now_ms = tl_wallclock_ms();
    for (size_t i = 0; i < n; i++) {
        Twinlane__EventResult *r = &b->results[i];
        twinlane__event_result__init(r);
        b->result_ptrs[i] = r;
        r->has_partition = true;
        r->partition = -1;

        int topic = -1;
        if (check_event(ing, req->events[i], r, &topic) != TWINLANE__STATUS__OK) {
            count_rejection(ing, r->status);
            continue;
        }
        if (ing->cfg->when_no_region == TL_NO_REGION_REJECT &&
            tl_pipeline_healthy(ing->pipeline) == 0) {
            set_result(r, TWINLANE__STATUS__RETRYABLE, "no region is available (every circuit "
                       "breaker is open) and agent.when_no_region is \"reject\"; retry later");
            count_rejection(ing, r->status);
            continue;
        }

        struct tl_event *ev = make_event(ing, req->events[i], topic, now_ms);
        ev->batch = b;
        ev->index = (uint32_t)i;
        char err[512];
        if (tl_wal_append(ing->wal, ev, err, sizeof(err)) != 0) {
            /* The WAL logs and counts this itself, with a rate limit. */
            set_result(r, TWINLANE__STATUS__RETRYABLE, "%s", err);
            free(ev);
            count_rejection(ing, r->status);
            continue;
        }
        tl_pipeline_append(ing->pipeline, ev);
        b->remaining++;
        ing->stats.events_accepted++;
    }

    /*
     * Regions are not woken here: they send only what the WAL made durable, and the WAL wakes
     * them when it has (tl_wal_add_waiter).
     */
    if (b->remaining > 0)
        tl_wal_kick(ing->wal);
    else
        batch_finish(b);
    return true;
}

/*
 * Handles buffered frames until none is complete or the connection must wait. Never frees the
 * connection: callers finish with conn_update_interest and conn_maybe_free.
 */
static void conn_process(struct tl_conn *c)
{
    struct tl_ingest *ing = c->ing;
    char err[256];

    if (c->stalled) {
        if (!accept_request(c, c->stalled))
            return;
        tl_frame_free_request(c->stalled, &c->decode_arena);
        c->stalled = NULL;
    }

    c->backlog = false;
    for (int handled = 0;
         !c->close_after_flush && c->out.len < OUTPUT_HIGH_WATER && ing->accepting &&
         !ing->paused;
         handled++) {
        const uint8_t *payload;
        size_t len;
        if (handled == MAX_REQUESTS_PER_TURN) {
            /* Other connections get a turn; tl_ingest_run_backlog comes back here. */
            c->backlog = tl_frame_reader_pending(&c->reader) >= TL_FRAME_HEADER_BYTES;
            break;
        }
        int rc = tl_frame_reader_next(&c->reader, &payload, &len, err, sizeof(err));
        if (rc == 0)
            break;
        if (rc == TL_ETOOBIG) {
            log_bad_frame(ing, c, err);
            send_frame_error(c, 0, TWINLANE__STATUS__TOO_LARGE, err);
            c->close_after_flush = true;
            break;
        }

        /* Count the events before unpacking: unpacking allocates per event. */
        size_t events;
        uint64_t batch_id = 0;
        if (tl_frame_scan_request(payload, len, &events, &batch_id, err, sizeof(err)) != 0) {
            log_bad_frame(ing, c, err);
            send_frame_error(c, batch_id, TWINLANE__STATUS__INVALID, err);
            continue;
        }
        if (events > ing->cfg->max_inflight_events) {
            snprintf(err, sizeof(err), "request of %zu events exceeds agent.max_inflight_events "
                     "= %zu; send smaller requests", events, ing->cfg->max_inflight_events);
            log_bad_frame(ing, c, err);
            send_frame_error(c, batch_id, TWINLANE__STATUS__TOO_LARGE, err);
            continue;
        }
        Twinlane__ProduceRequest *req;
        if (tl_frame_decode_request_in_arena(payload, len, &c->decode_arena, &req, err,
                                             sizeof(err)) != 0) {
            log_bad_frame(ing, c, err);
            send_frame_error(c, batch_id, TWINLANE__STATUS__INVALID, err);
            continue;
        }
        if (!accept_request(c, req)) {
            c->stalled = req;
            break;
        }
        tl_frame_free_request(req, &c->decode_arena);
    }
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_close_fd(struct tl_conn *c)
{
    if (c->fd_closed)
        return;
    if (c->registered)
        tl_loop_del(c->ing->epfd, &c->watch);
    close(c->watch.fd);
    c->fd_closed = true;
    c->read_closed = true;
    c->ing->stats.connections_open--;
    tl_log_info("ingest", "client disconnected peer=%s unanswered_requests=%" PRIu32, c->peer,
                c->batches);
}

/* Frees a connection once nothing refers to it and nothing is left to write. */
static void conn_maybe_free(struct tl_conn *c)
{
    bool done_reading = c->read_closed || c->close_after_flush;
    if (!c->fd_closed && !(done_reading && c->batches == 0 && c->out.len == 0 && !c->stalled))
        return;
    conn_close_fd(c);
    if (c->batches > 0)
        return;

    struct tl_ingest *ing = c->ing;
    if (c->prev)
        c->prev->next = c->next;
    else
        ing->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->stalled)
        tl_frame_free_request(c->stalled, &c->decode_arena);
    tl_arena_free(&c->decode_arena);
    tl_frame_reader_free(&c->reader);
    tl_buf_free(&c->out);
    free(c);
}

static void conn_update_interest(struct tl_conn *c)
{
    if (c->fd_closed)
        return;
    uint32_t want = 0;
    if (conn_may_read(c))
        want |= EPOLLIN | EPOLLRDHUP;
    if (c->out.len > 0)
        want |= EPOLLOUT;

    /*
     * epoll reports HUP whatever the interest set. So a hung-up connection that must not be
     * read now leaves the epoll set until it may be read again, because the loop would spin.
     */
    if (c->hung_up && want == 0) {
        if (c->registered)
            tl_loop_del(c->ing->epfd, &c->watch);
        c->registered = false;
        c->epoll_events = 0;
        return;
    }
    if (!c->registered) {
        if (tl_loop_add(c->ing->epfd, &c->watch, want) != 0)
            tl_panic("epoll_ctl failed for a connection: %s", strerror(errno));
        c->registered = true;
        c->epoll_events = want;
        return;
    }
    if (want != c->epoll_events) {
        tl_loop_mod(c->ing->epfd, &c->watch, want);
        c->epoll_events = want;
    }
}

static bool conn_may_read(const struct tl_conn *c)
{
    return !c->read_closed && !c->stalled && !c->close_after_flush && !c->backlog &&
           c->out.len < OUTPUT_HIGH_WATER && c->ing->accepting && !c->ing->paused;
}

static void conn_on_ready(struct tl_watch *w, uint32_t events)
{
    struct tl_conn *c = (struct tl_conn *)w;

    if (events & (EPOLLHUP | EPOLLERR))
        c->hung_up = true;
    if (events & EPOLLOUT)
        conn_flush(c);

    /* Bounded rounds keep one busy client from starving the others. */
    for (int rounds = 0; rounds < 4 && conn_may_read(c); rounds++) {
        int rc = tl_frame_reader_fill(&c->reader, c->watch.fd);
        if (rc == TL_EAGAIN)
            break;
        if (rc == TL_ECLOSED || rc == TL_EIO) {
            if (tl_frame_reader_pending(&c->reader) > 0)
                log_bad_frame(c->ing, c, "connection ended inside a frame");
            c->read_closed = true;
            break;
        }
        conn_process(c);
    }

    /* Frames already buffered may be waiting for answers to drain. */
    conn_process(c);
    conn_update_interest(c);
    conn_maybe_free(c);
}

static void describe_peer(int fd, const char *kind, char *out, size_t outsize)
{
    if (strcmp(kind, "unix") == 0) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            snprintf(out, outsize, "unix:pid=%d,uid=%u", (int)cred.pid, (unsigned)cred.uid);
            return;
        }
        snprintf(out, outsize, "unix");
        return;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[64] = "?";
    char port[16] = "?";
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, outsize, "tcp:%s:%s", host, port);
}

static void listener_on_ready(struct tl_watch *w, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)w;
    struct tl_ingest *ing = l->ing;

    for (;;) {
        int fd = accept4(l->watch.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                uint64_t suppressed;
                if (tl_ratelimit_allow(&ing->conn_log, &suppressed))
                    tl_log_warn("ingest", "accept failed listener=%s error=\"%s\" "
                                "suppressed=%" PRIu64, l->address, strerror(errno), suppressed);
            }
            return;
        }
        if (ing->stats.connections_open >= (uint64_t)ing->cfg->max_connections) {
            uint64_t suppressed;
            if (tl_ratelimit_allow(&ing->conn_log, &suppressed))
                tl_log_warn("ingest", "connection rejected: listen.max_connections=%d reached "
                            "listener=%s suppressed=%" PRIu64, ing->cfg->max_connections,
                            l->address, suppressed);
            ing->stats.connections_rejected++;
            close(fd);
            continue;
        }
        if (strcmp(l->kind, "tcp") == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }

        struct tl_conn *c = tl_xcalloc(1, sizeof(*c));
        c->watch.fd = fd;
        c->watch.on_ready = conn_on_ready;
        c->ing = ing;
        describe_peer(fd, l->kind, c->peer, sizeof(c->peer));
        tl_frame_reader_init(&c->reader, ing->cfg->max_frame_bytes);
        /*
         * Between requests the arena keeps at most 1 MiB (or max_frame_bytes when smaller), more
         * than a request of 500 events of 1 KB decodes to. A larger decoded request is
         * allocated afresh each time, so idle connections do not pin the memory of one.
         */
        size_t keep = ing->cfg->max_frame_bytes < ARENA_KEEP_BYTES ? ing->cfg->max_frame_bytes
                                                                    : ARENA_KEEP_BYTES;
        tl_arena_init(&c->decode_arena, keep);
        tl_buf_init(&c->out);
        c->epoll_events = EPOLLIN | EPOLLRDHUP;
        if (tl_loop_add(ing->epfd, &c->watch, c->epoll_events) != 0)
            tl_panic("epoll_ctl failed for a new connection: %s", strerror(errno));
        c->registered = true;
        c->next = ing->conns;
        if (ing->conns)
            ing->conns->prev = c;
        ing->conns = c;
        ing->stats.connections_accepted++;
        ing->stats.connections_open++;
        tl_log_info("ingest", "client connected peer=%s listener=%s", c->peer, l->address);
    }
}

/* ---- listeners -------------------------------------------------------------------------- */

/*
 * Binds the Unix socket. An existing socket file with no agent behind it (a crash leftover) is
 * replaced; one with a live agent behind it is an error.
 */
static int open_unix_listener(struct tl_ingest *ing, char *err, size_t errsize)
{
    const char *path = ing->cfg->unix_path;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "cannot create a Unix socket: %s", strerror(errno));

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            close(fd);
            return tl_error(err, errsize, TL_EINVAL, "listen.unix: %s exists and is not a "
                            "socket; remove it or choose another path", path);
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            close(fd);
            return tl_error(err, errsize, TL_EINVAL, "listen.unix: another process is already "
                            "listening on %s; stop it or choose another path", path);
        }
        unlink(path);
    }

    /* Owner and group may produce; others may not. */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc != 0 || listen(fd, 128) != 0) {
        int saved = errno;
        close(fd);
        return tl_error(err, errsize, TL_EIO, "listen.unix: cannot listen on %s: %s", path,
                        strerror(saved));
    }

    ing->unix_listener = (struct listener){
        .watch = {.fd = fd, .on_ready = listener_on_ready}, .ing = ing, .kind = "unix"};
    snprintf(ing->unix_listener.address, sizeof(ing->unix_listener.address), "unix:%s", path);
    return 0;
}

static int open_tcp_listener(struct tl_ingest *ing, char *err, size_t errsize)
{
    const struct tl_config *cfg = ing->cfg;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;

    int gai = getaddrinfo(cfg->tcp_host, cfg->tcp_port, &hints, &res);
    if (gai != 0)
        return tl_error(err, errsize, TL_EINVAL, "listen.tcp: cannot resolve %s: %s",
                        cfg->tcp_host, gai_strerror(gai));

    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    int rc = TL_EIO;
    if (fd < 0) {
        tl_error(err, errsize, TL_EIO, "listen.tcp: cannot create a socket: %s", strerror(errno));
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        tl_error(err, errsize, TL_EIO, "listen.tcp: cannot listen on %s port %s: %s%s",
                 cfg->tcp_host, cfg->tcp_port, strerror(errno),
                 errno == EADDRINUSE ? "; another process holds the port, choose another" : "");
        close(fd);
        goto out;
    }
    ing->tcp_listener = (struct listener){
        .watch = {.fd = fd, .on_ready = listener_on_ready}, .ing = ing, .kind = "tcp"};
    snprintf(ing->tcp_listener.address, sizeof(ing->tcp_listener.address), "tcp:%s:%s",
             cfg->tcp_host, cfg->tcp_port);
    rc = 0;
out:
    freeaddrinfo(res);
    return rc;
}

int tl_ingest_open(const struct tl_config *cfg, int epfd, struct tl_pipeline *pipeline,
                   struct tl_wal *wal, const int32_t *partitions, struct tl_ingest **out,
                   char *err, size_t errsize)
{
    struct tl_ingest *ing = tl_xcalloc(1, sizeof(*ing));
    int rc;

    ing->cfg = cfg;
    ing->epfd = epfd;
    ing->pipeline = pipeline;
    ing->wal = wal;
    ing->partitions = partitions;
    ing->keyless_next = tl_xcalloc(cfg->topic_count, sizeof(*ing->keyless_next));
    ing->unix_listener.watch.fd = -1;
    ing->tcp_listener.watch.fd = -1;
    ing->bad_frame_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 10);
    ing->conn_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 10);

    rc = open_unix_listener(ing, err, errsize);
    if (rc == 0 && cfg->tcp_host)
        rc = open_tcp_listener(ing, err, errsize);
    if (rc != 0) {
        tl_ingest_close(ing);
        return rc;
    }

    struct listener *listeners[] = {&ing->unix_listener, &ing->tcp_listener};
    for (size_t i = 0; i < 2; i++) {
        if (listeners[i]->watch.fd < 0)
            continue;
        if (tl_loop_add(epfd, &listeners[i]->watch, EPOLLIN) != 0)
            tl_panic("epoll_ctl failed for a listener: %s", strerror(errno));
        tl_log_info("ingest", "listening address=%s", listeners[i]->address);
    }
    ing->accepting = true;
    *out = ing;
    return 0;
}

static void close_listener(struct tl_ingest *ing, struct listener *l, bool unlink_path)
{
    if (l->watch.fd < 0)
        return;
    tl_loop_del(ing->epfd, &l->watch);
    close(l->watch.fd);
    l->watch.fd = -1;
    if (unlink_path)
        unlink(ing->cfg->unix_path);
}

/*
 * Answers every request a connection has sent but the agent has not taken (held back by
 * back-pressure, or complete in the read buffer) with RETRYABLE, so that each request still
 * gets exactly one answer when the agent stops.
 */
static void refuse_unread_requests(struct tl_conn *c)
{
    static const char why[] = "the agent is stopping and did not take this request; send it "
                              "to the agent again once it is back";
    char err[256];

    if (c->stalled) {
        send_frame_error(c, c->stalled->batch_id, TWINLANE__STATUS__RETRYABLE, why);
        tl_frame_free_request(c->stalled, &c->decode_arena);
        c->stalled = NULL;
    }
    /*
     * Requests still in the socket's receive buffer reached the agent too, so they are read
     * and rejected as well, up to a bound that a client writing without pause cannot stretch.
     */
    size_t budget = 64 * (c->ing->cfg->max_frame_bytes + TL_FRAME_HEADER_BYTES);
    for (;;) {
        const uint8_t *payload;
        size_t len, events;
        uint64_t batch_id = 0;
        if (tl_frame_reader_next(&c->reader, &payload, &len, err, sizeof(err)) == 1) {
            tl_frame_scan_request(payload, len, &events, &batch_id, NULL, 0);
            send_frame_error(c, batch_id, TWINLANE__STATUS__RETRYABLE, why);
            continue;
        }
        if (c->read_closed || c->close_after_flush || budget == 0)
            break;
        int rc = tl_frame_reader_fill(&c->reader, c->watch.fd);
        if (rc <= 0)
            break;
        budget = (size_t)rc < budget ? budget - (size_t)rc : 0;
    }
    c->backlog = false;
}

void tl_ingest_stop_accepting(struct tl_ingest *ing)
{
    if (!ing->accepting)
        return;
    ing->accepting = false;
    for (struct tl_conn *c = ing->conns; c; c = c->next)
        if (!c->fd_closed)
            refuse_unread_requests(c);
    close_listener(ing, &ing->unix_listener, true);
    close_listener(ing, &ing->tcp_listener, false);
    for (struct tl_conn *c = ing->conns; c;) {
        struct tl_conn *next = c->next;
        conn_update_interest(c);
        conn_maybe_free(c);
        c = next;
    }
    tl_log_info("ingest", "stopped accepting events open_connections=%" PRIu64,
                ing->stats.connections_open);
}

bool tl_ingest_has_pending_output(const struct tl_ingest *ing)
{
    for (const struct tl_conn *c = ing->conns; c; c = c->next)
        if (!c->fd_closed && c->out.len > 0)
            return true;
    return false;
}

bool tl_ingest_run_backlog(struct tl_ingest *ing)
{
    bool more = false;
    for (struct tl_conn *c = ing->conns; c;) {
        struct tl_conn *next = c->next;
        if (c->backlog && !c->fd_closed) {
            conn_process(c);
            conn_update_interest(c);
            more |= c->backlog;
            conn_maybe_free(c);
        }
        c = next;
    }
    return more;
}

void tl_ingest_set_timelines(struct tl_ingest *ing, struct tl_timeline *timelines)
{
    ing->timelines = timelines;
}

void tl_ingest_get_stats(const struct tl_ingest *ing, struct tl_ingest_stats *stats)
{
    *stats = ing->stats;
    stats->paused = ing->paused;
}

/* ---- pause and resume (admin API) ------------------------------------------------------- */

bool tl_ingest_set_paused(struct tl_ingest *ing, bool paused, const char *who)
{
    if (ing->paused == paused)
        return false;
    ing->paused = paused;
    tl_log_info("ingest", "%s reading producer requests by=%s open_connections=%" PRIu64,
                paused ? "paused" : "resumed", who, ing->stats.connections_open);
    for (struct tl_conn *c = ing->conns; c;) {
        struct tl_conn *next = c->next;
        if (!paused && !c->fd_closed)
            conn_process(c);
        conn_update_interest(c);
        conn_maybe_free(c);
        c = next;
    }
    return true;
}

void tl_ingest_close(struct tl_ingest *ing)
{
    if (!ing)
        return;
    close_listener(ing, &ing->unix_listener, true);
    close_listener(ing, &ing->tcp_listener, false);
    while (ing->conns) {
        struct tl_conn *c = ing->conns;
        ing->conns = c->next;
        if (!c->fd_closed) {
            close(c->watch.fd);
            ing->stats.connections_open--;
        }
        if (c->stalled)
            tl_frame_free_request(c->stalled, &c->decode_arena);
        tl_arena_free(&c->decode_arena);
        tl_frame_reader_free(&c->reader);
        tl_buf_free(&c->out);
        free(c);
    }
    free(ing->keyless_next);
    free(ing);
}
