/*
 * Admin API: listeners, authentication, request limits, and the handlers of each endpoint.
 *
 * Request limits: libmicrohttpd keeps the request line and headers in a per-connection memory
 * pool of CONNECTION_MEMORY_BYTES and answers larger ones with a 4xx status itself. Bodies are
 * counted and discarded (no endpoint takes one); past MAX_BODY_BYTES the request is answered
 * 413. Connection count and idle time come from the admin group.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"

#define MAX_BODY_BYTES (64 * 1024)
#define CONNECTION_MEMORY_BYTES (32 * 1024)
#define TOKEN_FILE_MAX_BYTES (64 * 1024)
#define TOKEN_MAX_COUNT 64
#define TOKEN_MIN_LEN 16
#define TOKEN_NAME_MAX 64
/* How long a control verb waits for the region or event loop thread to apply it. */
#define APPLY_WAIT_MS 3000

/* Ingest requests passed to the event loop (tl_admin.ingest_request). */
enum ingest_request {
    INGEST_REQUEST_NONE = 0,
    INGEST_REQUEST_PAUSE = 1,
    INGEST_REQUEST_RESUME = 2,
};

struct token {
    char name[TOKEN_NAME_MAX + 1];
    char *secret;
    size_t len;
};

/* Ingest and pipeline state that the event loop publishes for the admin threads (tl_admin.lock). */
struct loop_snapshot {
    bool valid;
    bool accepting;
    struct tl_ingest_stats ingest;
    uint64_t next_seq;       /* WAL head: the next event's sequence number */
    size_t inflight;         /* events appended and not yet answered */
};

struct listener {
    struct tl_admin *admin;
    struct MHD_Daemon *daemon;
    bool tcp;
    char address[160];
};

struct tl_admin {
    struct tl_admin_sources src;
    const struct tl_config *cfg;
    struct listener unix_listener;
    struct listener tcp_listener;
    struct token *tokens;
    size_t token_count;
    int64_t started_ms;              /* monotonic */
    int64_t started_wallclock_ms;
    int request_fd;                  /* eventfd: an ingest request waits for the event loop */
    atomic_int ingest_request;       /* enum ingest_request */
    atomic_int preferred_region;     /* set by failover, cleared by failback; -1 none */

    pthread_mutex_t control_lock;    /* held while a fence, failover or failback runs */
    pthread_mutex_t lock;            /* everything below */
    struct loop_snapshot snap;
    char ingest_who[96];             /* who sent the waiting ingest request */
    uint64_t oldest_seq[TL_REGION_COUNT];      /* cache of the WAL read for the oldest age */
    int64_t oldest_ingest_ms[TL_REGION_COUNT];

    struct tl_ratelimit mhd_log;
};

/* State of one request across libmicrohttpd's calls of the handler. */
struct request {
    size_t body_bytes;
    bool body_too_large;
};

/* --- Small helpers ------------------------------------------------------------------------ */

static void format_time(int64_t wallclock_ms, char *buf, size_t size)
{
    time_t secs = (time_t)(wallclock_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03dZ", (int)(wallclock_ms % 1000));
}

static json_t *json_time_or_null(int64_t wallclock_ms)
{
    char buf[40];
    if (wallclock_ms <= 0)
        return json_null();
    format_time(wallclock_ms, buf, sizeof(buf));
    return json_string(buf);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct loop_snapshot take_snapshot(struct tl_admin *a)
{
    pthread_mutex_lock(&a->lock);
    struct loop_snapshot s = a->snap;
    pthread_mutex_unlock(&a->lock);
    return s;
}

static enum tl_breaker_state region_state(const struct tl_region *r)
{
    return (enum tl_breaker_state)atomic_load(&r->published_state);
}

static uint64_t region_cursor(struct tl_region *r)
{
    return atomic_load(&r->published_cursor);
}

static uint64_t saturating_sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/*
 * Events acknowledged to producers that region r has not stored yet. Everything below
 * next_seq - inflight has been answered; answered events at or above the region's cursor are
 * not final there. Events answered FAILED count too, so this is an upper bound, and it is
 * exact when nothing failed.
 */
static uint64_t acknowledged_not_in_region(const struct loop_snapshot *s, uint64_t cursor)
{
    return saturating_sub(saturating_sub(s->next_seq, s->inflight), cursor);
}

/*
 * Returns the acceptance time (wall clock, ms) of the oldest event region r has not stored,
 * or 0 when it has everything. The pipeline holds the event when it is still unanswered;
 * otherwise the WAL is read once per cursor position and the result cached.
 */
static int64_t oldest_unacked_ingest_ms(struct tl_admin *a, int r, uint64_t cursor,
                                        uint64_t next_seq)
{
    if (cursor >= next_seq)
        return 0;

    struct tl_event *ev = tl_pipeline_get(a->src.pipeline, cursor);
    if (ev) {
        int64_t ms = ev->ingest_ms;
        tl_event_unref(ev);
        return ms;
    }

    pthread_mutex_lock(&a->lock);
    bool cached = a->oldest_seq[r] == cursor && a->oldest_ingest_ms[r] != 0;
    int64_t ms = a->oldest_ingest_ms[r];
    pthread_mutex_unlock(&a->lock);
    if (cached)
        return ms;

    /*
     * NOTE: the WAL reader scans its segment from the start to reach the cursor, which can
     * take a second for a full 64 MiB segment of small events. Only /v1/status does this,
     * once per cursor position.
     */
    struct tl_wal_reader *reader;
    char err[256];
    ms = 0;
    if (tl_wal_reader_open(a->src.wal, cursor, &reader, err, sizeof(err)) == 0) {
        struct tl_event *copy;
        if (tl_wal_reader_next(reader, &copy, err, sizeof(err)) == 1) {
            ms = copy->ingest_ms;
            free(copy);
        }
        tl_wal_reader_close(reader);
    }
    pthread_mutex_lock(&a->lock);
    a->oldest_seq[r] = cursor;
    a->oldest_ingest_ms[r] = ms;
    pthread_mutex_unlock(&a->lock);
    return ms;
}

/* --- Responses ---------------------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type,
                                 char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Sends doc as the JSON body and releases it. */
static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(doc);
    if (!text)
        tl_panic("json_dumps failed: out of memory");
    size_t len = strlen(text);
    /* A trailing newline keeps shells and curl output tidy. */
    text = tl_xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    return send_text(conn, status, "application/json", text, len + 1);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status,
                                  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status,
                                  const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return send_json(conn, status, json_pack("{s:s, s:i}", "error", message, "status", status));
}

/* --- Authentication ----------------------------------------------------------------------- */

/* Compares in time that depends only on the lengths, never on where the bytes differ. */
static bool equal_constant_time(const char *given, size_t given_len, const char *secret,
                                size_t secret_len)
{
    unsigned char diff = given_len != secret_len;
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = given_len ? (unsigned char)given[i % given_len] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)secret[i]);
    }
    return diff == 0;
}

/*
 * Checks the bearer token of a TCP request. Returns the token's name, or NULL. Every token is
 * compared, so the time taken does not tell which one nearly matched.
 */
static const char *check_token(struct tl_admin *a, struct MHD_Connection *conn)
{
    const char *header =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    static const char prefix[] = "Bearer ";
    if (!header || strncasecmp(header, prefix, sizeof(prefix) - 1) != 0)
        return NULL;
    const char *given = header + sizeof(prefix) - 1;
    size_t given_len = strlen(given);

    const char *match = NULL;
    for (size_t i = 0; i < a->token_count; i++) {
        if (equal_constant_time(given, given_len, a->tokens[i].secret, a->tokens[i].len))
            match = a->tokens[i].name;
    }
    return match;
}

/* Describes who sent a request on the Unix socket, from the peer's credentials. */
static void describe_unix_peer(struct MHD_Connection *conn, char *out, size_t outsize)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (info && getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        snprintf(out, outsize, "unix:pid=%d,uid=%u", (int)cred.pid, (unsigned)cred.uid);
        return;
    }
    snprintf(out, outsize, "unix:unknown");
}

/* --- Status ------------------------------------------------------------------------------- */

static json_t *timeline_json(struct tl_timeline *t)
{
    int64_t at[TL_STEP_COUNT];
    uint64_t episodes;
    tl_timeline_snapshot(t, at, &episodes);

    json_t *steps = json_object();
    for (int s = 0; s < TL_STEP_COUNT; s++)
        json_object_set_new(steps, tl_timeline_step_name((enum tl_timeline_step)s),
                            json_time_or_null(at[s]));
    json_t *recovery = json_null();
    if (at[TL_STEP_FIRST_FAILURE] && at[TL_STEP_FIRST_ACK])
        recovery = json_real((double)(at[TL_STEP_FIRST_ACK] - at[TL_STEP_FIRST_FAILURE]) / 1e3);
    return json_pack("{s:I, s:o, s:o}", "episodes", (json_int_t)episodes, "steps", steps,
                     "ack_resumed_after_seconds", recovery);
}

static json_t *region_json(struct tl_admin *a, int r, const struct loop_snapshot *s,
                           const struct tl_wal_stats *ws, bool with_oldest)
{
    struct tl_region *reg = a->src.regions[r];
    uint64_t cursor = region_cursor(reg);
    uint64_t backlog = saturating_sub(s->next_seq, cursor);
    int64_t now = tl_wallclock_ms();

    /* Estimate: the WAL's average record size times the backlog (it keeps no offsets per seq). */
    uint64_t stored = saturating_sub(ws->next_seq, tl_wal_floor(a->src.wal));
    json_t *backlog_bytes = stored ? json_integer((json_int_t)(ws->bytes / stored * backlog))
                                   : json_integer(0);

    json_t *oldest = json_null();
    if (with_oldest) {
        int64_t ms = oldest_unacked_ingest_ms(a, r, cursor, s->next_seq);
        if (ms > 0)
            oldest = json_real((double)(now - ms) / 1e3);
        else if (backlog == 0)
            oldest = json_real(0);
    }
    int64_t heartbeat_ms = atomic_load(&reg->heartbeat_sent_wallclock_ms);

    json_t *counters = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "produced", (json_int_t)atomic_load(&reg->produced),
        "delivered", (json_int_t)atomic_load(&reg->delivered),
        "failed", (json_int_t)atomic_load(&reg->failed),
        "retried", (json_int_t)atomic_load(&reg->retried),
        "rebuilds", (json_int_t)atomic_load(&reg->rebuilds),
        "breaker_transitions", (json_int_t)atomic_load(&reg->breaker_transitions),
        "shed", (json_int_t)ws->shed[r]);

    char reason[sizeof(reg->published_reason)];
    tl_region_breaker_reason(reg, reason, sizeof(reason));

    return json_pack(
        "{s:s, s:s, s:s, s:b, s:b, s:I, s:I, s:o, s:o, s:I, s:o, s:o, s:o, s:o}",
        "name", reg->name,
        "breaker", tl_breaker_state_name(region_state(reg)),
        "breaker_reason", reason,
        "backfilling", atomic_load(&reg->published_backfilling),
        "preferred", atomic_load(&a->preferred_region) == r,
        "cursor", (json_int_t)cursor,
        "backlog_events", (json_int_t)backlog,
        "backlog_bytes_estimate", backlog_bytes,
        "oldest_unacked_age_seconds", oldest,
        "acknowledged_not_in_region", (json_int_t)acknowledged_not_in_region(s, cursor),
        "last_heartbeat_sent_at", json_time_or_null(heartbeat_ms),
        "last_heartbeat_age_seconds",
        heartbeat_ms > 0 ? json_real((double)(now - heartbeat_ms) / 1e3) : json_null(),
        "counters", counters,
        "failover_timeline", timeline_json(&a->src.timelines[r]));
}

static json_t *ingest_json(const struct loop_snapshot *s)
{
    const struct tl_ingest_stats *i = &s->ingest;
    return json_pack(
        "{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "accepting", s->accepting, "paused", i->paused,
        "connections_open", (json_int_t)i->connections_open,
        "connections_accepted", (json_int_t)i->connections_accepted,
        "connections_rejected", (json_int_t)i->connections_rejected,
        "requests", (json_int_t)i->requests,
        "events_accepted", (json_int_t)i->events_accepted,
        "events_acknowledged", (json_int_t)i->events_acknowledged,
        "events_rejected", (json_int_t)i->events_rejected,
        "events_failed", (json_int_t)i->events_failed,
        "events_spooled", (json_int_t)i->events_spooled,
        "events_unanswered", (json_int_t)i->events_unanswered,
        "bad_frames", (json_int_t)i->bad_frames,
        "inflight", (json_int_t)s->inflight);
}

static json_t *wal_json(const struct tl_wal_stats *ws, const struct tl_config *cfg)
{
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I}",
        "bytes", (json_int_t)ws->bytes, "max_bytes", (json_int_t)cfg->wal_max_bytes,
        "segments", (json_int_t)ws->segments, "next_seq", (json_int_t)ws->next_seq,
        "ack_seq", (json_int_t)ws->ack_seq, "fsyncs", (json_int_t)ws->fsyncs,
        "fsync_seconds_total", (double)ws->fsync_us_total / 1e6,
        "fsync_max_seconds", (double)ws->fsync_us_max / 1e6,
        "write_errors", (json_int_t)ws->write_errors,
        "rejected_full", (json_int_t)ws->rejected_full,
        "appended", (json_int_t)ws->appended);
}

/* Returns whether the agent is ready, with the reason when it is not. */
static bool check_ready(struct tl_admin *a, const struct loop_snapshot *s, char *why,
                        size_t whysize)
{
    if (!s->valid || !s->accepting) {
        snprintf(why, whysize, "the agent is starting or shutting down and does not accept "
                 "events");
        return false;
    }
    if (s->ingest.paused) {
        snprintf(why, whysize, "ingest is paused (POST /v1/ingest/resume to resume)");
        return false;
    }
    for (int r = 0; r < TL_REGION_COUNT; r++)
        if (region_state(a->src.regions[r]) == TL_BREAKER_CLOSED)
            return true;
    snprintf(why, whysize, "no region's circuit breaker is closed (%s: %s, %s: %s)",
             a->src.regions[0]->name, tl_breaker_state_name(region_state(a->src.regions[0])),
             a->src.regions[1]->name, tl_breaker_state_name(region_state(a->src.regions[1])));
    return false;
}

static enum MHD_Result handle_status(struct tl_admin *a, struct MHD_Connection *conn)
{
    struct loop_snapshot s = take_snapshot(a);
    struct tl_wal_stats ws;
    tl_wal_get_stats(a->src.wal, &ws);
    if (!s.valid)
        s.next_seq = ws.next_seq;
    char why[256] = "";
    bool ready = check_ready(a, &s, why, sizeof(why));

    json_t *regions = json_array();
    for (int r = 0; r < TL_REGION_COUNT; r++)
        json_array_append_new(regions, region_json(a, r, &s, &ws, true));

    int preferred = atomic_load(&a->preferred_region);
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:f, s:b, s:s, s:o, s:o, s:o}",
        "agent_id", a->cfg->agent_id, "version", TL_VERSION,
        "home_region", a->cfg->home_region,
        "preferred_region",
        preferred >= 0 ? json_string(a->cfg->regions[preferred].name) : json_null(),
        "started_at", json_time_or_null(a->started_wallclock_ms),
        "uptime_seconds", (double)(tl_now_ms() - a->started_ms) / 1e3,
        "ready", ready, "not_ready_reason", why,
        "ingest", ingest_json(&s), "wal", wal_json(&ws, a->cfg), "regions", regions);
    return send_json(conn, MHD_HTTP_OK, doc);
}

/* --- Metrics ------------------------------------------------------------------------------ */

static const char *const STATUS_NAMES[6] = {
    "ok", "retryable", "unknown_topic", "too_large", "invalid", "failed"};

static void write_region_counter(struct tl_metrics_out *o, struct tl_admin *a, const char *name,
                                 const char *help, size_t field)
{
    tl_metrics_family(o, name, "counter", help);
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        struct tl_region *reg = a->src.regions[r];
        atomic_uint_fast64_t *counter = (atomic_uint_fast64_t *)((char *)reg + field);
        tl_metrics_printf(o, "%s{region=\"%s\"} %" PRIuFAST64 "\n", name, reg->name,
                          atomic_load(counter));
    }
}

static void write_metrics(struct tl_admin *a, struct tl_metrics_out *o)
{
    struct loop_snapshot s = take_snapshot(a);
    struct tl_wal_stats ws;
    tl_wal_get_stats(a->src.wal, &ws);
    if (!s.valid)
        s.next_seq = ws.next_seq;
    char why[256];

    tl_metrics_family(o, "twinlane_up", "gauge", "1 while the agent process runs.");
    tl_metrics_printf(o, "twinlane_up 1\n");
    tl_metrics_family(o, "twinlane_ready", "gauge",
                      "1 when a region's breaker is closed and ingest accepts events.");
    tl_metrics_printf(o, "twinlane_ready %d\n", check_ready(a, &s, why, sizeof(why)) ? 1 : 0);
    tl_metrics_family(o, "twinlane_uptime_seconds", "gauge", "Time since the agent started.");
    tl_metrics_printf(o, "twinlane_uptime_seconds %.3f\n",
                      (double)(tl_now_ms() - a->started_ms) / 1e3);

    write_region_counter(o, a, "twinlane_region_events_produced_total",
                         "Events handed to the region's producer, resends included.",
                         offsetof(struct tl_region, produced));
    write_region_counter(o, a, "twinlane_region_events_acknowledged_total",
                         "Events the region's brokers acknowledged.",
                         offsetof(struct tl_region, delivered));
    write_region_counter(o, a, "twinlane_region_events_failed_total",
                         "Events that failed for good in the region (too large, invalid).",
                         offsetof(struct tl_region, failed));
    write_region_counter(o, a, "twinlane_region_events_retried_total",
                         "Deliveries that failed and were sent again.",
                         offsetof(struct tl_region, retried));
    write_region_counter(o, a, "twinlane_region_producer_rebuilds_total",
                         "Producers rebuilt after a fatal librdkafka error.",
                         offsetof(struct tl_region, rebuilds));
    write_region_counter(o, a, "twinlane_breaker_transitions_total",
                         "Circuit breaker state changes.",
                         offsetof(struct tl_region, breaker_transitions));

    tl_metrics_family(o, "twinlane_breaker_state", "gauge",
                      "1 for the breaker's current state, 0 for the others.");
    static const enum tl_breaker_state states[] = {TL_BREAKER_CLOSED, TL_BREAKER_OPEN,
                                                   TL_BREAKER_HALF_OPEN, TL_BREAKER_FENCED};
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        enum tl_breaker_state current = region_state(a->src.regions[r]);
        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
            tl_metrics_printf(o, "twinlane_breaker_state{region=\"%s\",state=\"%s\"} %d\n",
                              a->src.regions[r]->name, tl_breaker_state_name(states[i]),
                              current == states[i]);
    }
    tl_metrics_family(o, "twinlane_breaker_backfilling", "gauge",
                      "1 while a half-open breaker sends the region its backlog.");
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_metrics_printf(o, "twinlane_breaker_backfilling{region=\"%s\"} %d\n",
                          a->src.regions[r]->name,
                          atomic_load(&a->src.regions[r]->published_backfilling) ? 1 : 0);

    /* The exposition format wants each family's samples right after its HELP and TYPE. */
    uint64_t cursors[TL_REGION_COUNT];
    for (int r = 0; r < TL_REGION_COUNT; r++)
        cursors[r] = region_cursor(a->src.regions[r]);

    tl_metrics_family(o, "twinlane_region_cursor", "gauge",
                      "Sequence number below which the region stored every event.");
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_metrics_printf(o, "twinlane_region_cursor{region=\"%s\"} %" PRIu64 "\n",
                          a->src.regions[r]->name, cursors[r]);

    tl_metrics_family(o, "twinlane_region_backlog_events", "gauge",
                      "Events in the WAL that the region has not stored yet.");
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_metrics_printf(o, "twinlane_region_backlog_events{region=\"%s\"} %" PRIu64 "\n",
                          a->src.regions[r]->name, saturating_sub(s.next_seq, cursors[r]));

    tl_metrics_family(o, "twinlane_acknowledged_not_in_region_events", "gauge",
                      "Events acknowledged to producers that the region has not stored yet "
                      "(live RPO exposure if this agent's disk were lost).");
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_metrics_printf(o, "twinlane_acknowledged_not_in_region_events{region=\"%s\"} %" PRIu64
                          "\n", a->src.regions[r]->name,
                          acknowledged_not_in_region(&s, cursors[r]));

    tl_metrics_family(o, "twinlane_region_last_heartbeat_timestamp_seconds", "gauge",
                      "Unix time the last heartbeat to the region was sent; 0 before the first.");
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_metrics_printf(o, "twinlane_region_last_heartbeat_timestamp_seconds{region=\"%s\"} "
                          "%.3f\n", a->src.regions[r]->name,
                          (double)atomic_load(&a->src.regions[r]->heartbeat_sent_wallclock_ms) /
                              1e3);

    tl_metrics_family(o, "twinlane_ack_latency_seconds", "histogram",
                      "Time from reading a request to acknowledging one of its events OK.");
    tl_metrics_histogram(o, "twinlane_ack_latency_seconds", "", &s.ingest.ack_latency);

    const struct tl_ingest_stats *i = &s.ingest;
    tl_metrics_family(o, "twinlane_ingest_connections", "gauge", "Producer connections open.");
    tl_metrics_printf(o, "twinlane_ingest_connections %" PRIu64 "\n", i->connections_open);
    tl_metrics_family(o, "twinlane_ingest_connections_accepted_total", "counter",
                      "Producer connections accepted.");
    tl_metrics_printf(o, "twinlane_ingest_connections_accepted_total %" PRIu64 "\n",
                      i->connections_accepted);
    tl_metrics_family(o, "twinlane_ingest_connections_rejected_total", "counter",
                      "Producer connections closed at once because listen.max_connections "
                      "was reached.");
    tl_metrics_printf(o, "twinlane_ingest_connections_rejected_total %" PRIu64 "\n",
                      i->connections_rejected);
    tl_metrics_family(o, "twinlane_ingest_requests_total", "counter", "Produce requests taken.");
    tl_metrics_printf(o, "twinlane_ingest_requests_total %" PRIu64 "\n", i->requests);
    tl_metrics_family(o, "twinlane_ingest_events_total", "counter",
                      "Events answered or taken, by outcome.");
    tl_metrics_printf(o, "twinlane_ingest_events_total{outcome=\"accepted\"} %" PRIu64 "\n"
                      "twinlane_ingest_events_total{outcome=\"acknowledged\"} %" PRIu64 "\n"
                      "twinlane_ingest_events_total{outcome=\"spooled\"} %" PRIu64 "\n"
                      "twinlane_ingest_events_total{outcome=\"failed\"} %" PRIu64 "\n"
                      "twinlane_ingest_events_total{outcome=\"unanswered_at_shutdown\"} %" PRIu64
                      "\n", i->events_accepted, i->events_acknowledged, i->events_spooled,
                      i->events_failed, i->events_unanswered);
    tl_metrics_family(o, "twinlane_ingest_events_rejected_total", "counter",
                      "Events rejected before the WAL, by the status answered.");
    for (size_t k = 1; k < sizeof(STATUS_NAMES) / sizeof(STATUS_NAMES[0]); k++)
        tl_metrics_printf(o, "twinlane_ingest_events_rejected_total{status=\"%s\"} %" PRIu64
                          "\n", STATUS_NAMES[k], i->rejected_by_status[k]);
    tl_metrics_family(o, "twinlane_ingest_bad_frames_total", "counter",
                      "Frames that could not be decoded, or were too large.");
    tl_metrics_printf(o, "twinlane_ingest_bad_frames_total %" PRIu64 "\n", i->bad_frames);
    tl_metrics_family(o, "twinlane_ingest_inflight_events", "gauge",
                      "Events accepted and not yet answered.");
    tl_metrics_printf(o, "twinlane_ingest_inflight_events %zu\n", s.inflight);
    tl_metrics_family(o, "twinlane_ingest_paused", "gauge", "1 while ingest is paused.");
    tl_metrics_printf(o, "twinlane_ingest_paused %d\n", i->paused ? 1 : 0);

    tl_metrics_family(o, "twinlane_wal_bytes", "gauge",
                      "Bytes of WAL segment files plus unwritten batches.");
    tl_metrics_printf(o, "twinlane_wal_bytes %" PRIu64 "\n", ws.bytes);
    tl_metrics_family(o, "twinlane_wal_max_bytes", "gauge", "The WAL quota, wal.max_bytes.");
    tl_metrics_printf(o, "twinlane_wal_max_bytes %" PRIu64 "\n", a->cfg->wal_max_bytes);
    tl_metrics_family(o, "twinlane_wal_segments", "gauge", "WAL segment files.");
    tl_metrics_printf(o, "twinlane_wal_segments %" PRIu64 "\n", ws.segments);
    tl_metrics_family(o, "twinlane_wal_next_seq", "gauge",
                      "Sequence number the next accepted event gets.");
    tl_metrics_printf(o, "twinlane_wal_next_seq %" PRIu64 "\n", ws.next_seq);
    tl_metrics_family(o, "twinlane_wal_fsync_seconds", "summary",
                      "Time spent in fdatasync of the WAL.");
    tl_metrics_printf(o, "twinlane_wal_fsync_seconds_sum %.6f\ntwinlane_wal_fsync_seconds_count "
                      "%" PRIu64 "\n", (double)ws.fsync_us_total / 1e6, ws.fsyncs);
    tl_metrics_family(o, "twinlane_wal_fsync_max_seconds", "gauge",
                      "Longest single fdatasync of the WAL since the agent started.");
    tl_metrics_printf(o, "twinlane_wal_fsync_max_seconds %.6f\n", (double)ws.fsync_us_max / 1e6);
    tl_metrics_family(o, "twinlane_wal_write_errors_total", "counter",
                      "Failed WAL writes or fsyncs (each is retried).");
    tl_metrics_printf(o, "twinlane_wal_write_errors_total %" PRIu64 "\n", ws.write_errors);
    tl_metrics_family(o, "twinlane_wal_rejected_full_total", "counter",
                      "Events rejected because the WAL quota was reached.");
    tl_metrics_printf(o, "twinlane_wal_rejected_full_total %" PRIu64 "\n", ws.rejected_full);
    tl_metrics_family(o, "twinlane_wal_shed_events_total", "counter",
                      "Events deleted by wal.when_full = \"shed\" before the region had them.");
    for (int r = 0; r < TL_REGION_COUNT; r++)
        tl_metrics_printf(o, "twinlane_wal_shed_events_total{region=\"%s\"} %" PRIu64 "\n",
                          a->src.regions[r]->name, ws.shed[r]);
}

static enum MHD_Result handle_metrics(struct tl_admin *a, struct MHD_Connection *conn)
{
    struct tl_metrics_out out = {0};
    write_metrics(a, &out);
    return send_text(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", out.data,
                     out.len);
}

/* --- Control verbs ------------------------------------------------------------------------ */

static json_t *divergence_json(struct tl_admin *a)
{
    uint64_t next_seq = tl_wal_next_seq(a->src.wal);
    json_t *list = json_array();
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        uint64_t cursor = region_cursor(a->src.regions[r]);
        json_array_append_new(list, json_pack("{s:s, s:I, s:I, s:I}",
                                              "region", a->src.regions[r]->name,
                                              "cursor", (json_int_t)cursor,
                                              "next_seq", (json_int_t)next_seq,
                                              "divergence_events",
                                              (json_int_t)saturating_sub(next_seq, cursor)));
    }
    return list;
}

/* Requested fence change of one region: fence (true) or unfence (false). */
struct fence_change {
    int region;
    bool fence;
};

/*
 * Requests the changes, waits up to APPLY_WAIT_MS for the region threads to apply them, and
 * returns the list of changes with the state before and after. *pending is set when a region
 * thread did not apply its change in time.
 */
static json_t *apply_fences(struct tl_admin *a, const struct fence_change *changes, size_t n,
                            bool dry_run, const char *who, bool *pending)
{
    json_t *list = json_array();
    enum tl_breaker_state before[TL_REGION_COUNT];
    *pending = false;

    for (size_t i = 0; i < n; i++) {
        struct tl_region *reg = a->src.regions[changes[i].region];
        before[i] = region_state(reg);
        /* Requested even without a change of state, so that it replaces an opposite request
         * that the region thread has not applied yet (it may be busy with a topic check). */
        if (!dry_run)
            tl_region_request_fence(reg, changes[i].fence, who);
    }

    int64_t deadline = tl_now_ms() + APPLY_WAIT_MS;
    for (size_t i = 0; i < n && !dry_run; i++) {
        struct tl_region *reg = a->src.regions[changes[i].region];
        bool want_fenced = changes[i].fence;
        bool changed = before[i] == TL_BREAKER_FENCED ? !want_fenced : want_fenced;
        if (!changed)
            continue;
        while ((region_state(reg) == TL_BREAKER_FENCED) != want_fenced && tl_now_ms() < deadline)
            sleep_ms(10);
        if ((region_state(reg) == TL_BREAKER_FENCED) != want_fenced)
            *pending = true;
    }

    for (size_t i = 0; i < n; i++) {
        struct tl_region *reg = a->src.regions[changes[i].region];
        bool changes_state = before[i] == TL_BREAKER_FENCED ? !changes[i].fence
                                                            : changes[i].fence;
        /* Unfencing goes to HALF_OPEN: the region is probed and backfilled before it closes. */
        const char *after = dry_run ? (changes_state ? (changes[i].fence ? "fenced" : "half_open")
                                                     : tl_breaker_state_name(before[i]))
                                    : tl_breaker_state_name(region_state(reg));
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:b}",
                                              "region", reg->name,
                                              "action", changes[i].fence ? "fence" : "unfence",
                                              "breaker_before", tl_breaker_state_name(before[i]),
                                              "breaker_after", after,
                                              "changes_state", changes_state));
    }
    return list;
}

static void log_control(const char *action, const char *detail, const char *who, bool dry_run,
                        const char *result)
{
    tl_log(dry_run ? TL_LOG_INFO : TL_LOG_WARN, "admin",
           "control action=%s%s%s by=%s dry_run=%d result=%s", action, detail[0] ? " " : "",
           detail, who, dry_run ? 1 : 0, result);
}

static enum MHD_Result answer_fences(struct tl_admin *a, struct MHD_Connection *conn,
                                     const char *action, const char *detail,
                                     const struct fence_change *changes, size_t n, bool dry_run,
                                     const char *who, json_t *extra)
{
    bool pending;
    json_t *list = apply_fences(a, changes, n, dry_run, who, &pending);
    json_t *doc = json_pack("{s:s, s:b, s:s, s:o, s:o}", "action", action, "dry_run", dry_run,
                            "requested_by", who, "changes", list,
                            "divergence", divergence_json(a));
    if (pending)
        json_object_set_new(doc, "pending", json_string("a region thread has not applied the "
                                                        "change yet; check /v1/status"));
    if (extra)
        json_object_update(doc, extra);
    json_decref(extra);
    log_control(action, detail, who, dry_run, pending ? "pending" : "done");
    return send_json(conn, pending ? MHD_HTTP_ACCEPTED : MHD_HTTP_OK, doc);
}

static int find_region(struct tl_admin *a, const char *name, size_t len)
{
    for (int r = 0; r < TL_REGION_COUNT; r++) {
        const char *candidate = a->cfg->regions[r].name;
        if (strlen(candidate) == len && memcmp(candidate, name, len) == 0)
            return r;
    }
    return -1;
}

static bool query_flag(struct MHD_Connection *conn, const char *name)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || v[0] == '\0');
}

/*
 * Returns the name of a flag whose value is neither on (1, true, empty) nor off (0, false),
 * or NULL. A mistyped dry_run must not make a real change.
 */
static const char *invalid_flag(struct MHD_Connection *conn)
{
    static const char *const flags[] = {"dry_run", "force"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, flags[i]);
        if (v && v[0] != '\0' && strcmp(v, "1") != 0 && strcmp(v, "true") != 0 &&
            strcmp(v, "0") != 0 && strcmp(v, "false") != 0)
            return flags[i];
    }
    return NULL;
}

static enum MHD_Result handle_region_verb(struct tl_admin *a, struct MHD_Connection *conn,
                                          const char *rest, bool dry_run, const char *who)
{
    const char *slash = strchr(rest, '/');
    if (!slash)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "expected /v1/regions/NAME/fence or "
                          "/v1/regions/NAME/unfence");
    int r = find_region(a, rest, (size_t)(slash - rest));
    bool fence = strcmp(slash + 1, "fence") == 0;
    if (!fence && strcmp(slash + 1, "unfence") != 0)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "unknown region action; use fence or "
                          "unfence");
    if (r < 0)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "unknown region \"%.*s\"; this agent has "
                          "regions %s and %s", (int)(slash - rest), rest, a->cfg->regions[0].name,
                          a->cfg->regions[1].name);

    /* Fencing the only region that takes events would leave no region to acknowledge them. */
    enum tl_breaker_state own = region_state(a->src.regions[r]);
    enum tl_breaker_state other = region_state(a->src.regions[1 - r]);
    if (fence && own == TL_BREAKER_CLOSED && other != TL_BREAKER_CLOSED &&
        !query_flag(conn, "force"))
        return send_error(conn, MHD_HTTP_CONFLICT, "region %s is the only one taking events "
                          "(breaker of %s: %s), so fencing it would leave none; wait until %s's "
                          "breaker closes, or pass --force (force=1 in the API)",
                          a->cfg->regions[r].name, a->cfg->regions[1 - r].name,
                          tl_breaker_state_name(other), a->cfg->regions[1 - r].name);

    char detail[64];
    snprintf(detail, sizeof(detail), "region=%s", a->cfg->regions[r].name);
    struct fence_change change = {.region = r, .fence = fence};
    return answer_fences(a, conn, fence ? "fence" : "unfence", detail, &change, 1, dry_run, who,
                         NULL);
}

static enum MHD_Result handle_failover(struct tl_admin *a, struct MHD_Connection *conn,
                                       bool dry_run, const char *who)
{
    const char *to = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "to");
    if (!to || !to[0])
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "missing ?to=REGION: name the region "
                          "that should take the traffic (%s or %s)", a->cfg->regions[0].name,
                          a->cfg->regions[1].name);
    int target = find_region(a, to, strlen(to));
    if (target < 0)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "unknown region \"%s\"; this agent has "
                          "regions %s and %s", to, a->cfg->regions[0].name,
                          a->cfg->regions[1].name);
    int other = 1 - target;

    /* Fencing the only healthy region would leave producers with the WAL alone. */
    enum tl_breaker_state target_state = region_state(a->src.regions[target]);
    if (target_state != TL_BREAKER_CLOSED && target_state != TL_BREAKER_FENCED &&
        !query_flag(conn, "force"))
        return send_error(conn, MHD_HTTP_CONFLICT, "region %s is not healthy (breaker %s), so "
                          "failing over to it would leave no region taking events; wait until "
                          "its breaker closes, or pass --force (force=1 in the API)", a->cfg->regions[target].name,
                          tl_breaker_state_name(target_state));

    struct fence_change changes[2] = {{.region = other, .fence = true},
                                      {.region = target, .fence = false}};
    if (!dry_run)
        atomic_store(&a->preferred_region, target);
    char detail[64];
    snprintf(detail, sizeof(detail), "to=%s", a->cfg->regions[target].name);
    return answer_fences(a, conn, "failover", detail, changes, 2, dry_run, who,
                         json_pack("{s:s}", "preferred_region", a->cfg->regions[target].name));
}

static enum MHD_Result handle_failback(struct tl_admin *a, struct MHD_Connection *conn,
                                       bool dry_run, const char *who)
{
    struct fence_change changes[TL_REGION_COUNT];
    for (int r = 0; r < TL_REGION_COUNT; r++)
        changes[r] = (struct fence_change){.region = r, .fence = false};
    if (!dry_run)
        atomic_store(&a->preferred_region, -1);
    return answer_fences(a, conn, "failback", "", changes, TL_REGION_COUNT, dry_run, who,
                         NULL);
}

static enum MHD_Result handle_ingest_verb(struct tl_admin *a, struct MHD_Connection *conn,
                                          bool pause, bool dry_run, const char *who)
{
    const char *action = pause ? "pause" : "resume";
    struct loop_snapshot s = take_snapshot(a);
    bool before = s.ingest.paused;

    if (!dry_run && before != pause) {
        pthread_mutex_lock(&a->lock);
        snprintf(a->ingest_who, sizeof(a->ingest_who), "%s", who);
        pthread_mutex_unlock(&a->lock);
        atomic_store(&a->ingest_request, pause ? INGEST_REQUEST_PAUSE : INGEST_REQUEST_RESUME);
        uint64_t one = 1;
        ssize_t ignored = write(a->request_fd, &one, sizeof(one));
        (void)ignored;
    }
    bool applied = dry_run || before == pause;
    int64_t deadline = tl_now_ms() + APPLY_WAIT_MS;
    while (!applied && tl_now_ms() < deadline) {
        sleep_ms(10);
        applied = take_snapshot(a).ingest.paused == pause;
    }

    log_control(action, "", who, dry_run, applied ? "done" : "pending");
    json_t *doc = json_pack("{s:s, s:b, s:s, s:b, s:b, s:b, s:I, s:o}", "action", action,
                            "dry_run", dry_run, "requested_by", who, "paused_before", before,
                            "paused_after", dry_run ? pause : take_snapshot(a).ingest.paused,
                            "changes_state", before != pause,
                            "connections_open", (json_int_t)s.ingest.connections_open,
                            "divergence", divergence_json(a));
    return send_json(conn, applied ? MHD_HTTP_OK : MHD_HTTP_ACCEPTED, doc);
}

static enum MHD_Result handle_drain(struct tl_admin *a, struct MHD_Connection *conn,
                                    bool dry_run, const char *who)
{
    struct loop_snapshot s = take_snapshot(a);
    log_control("drain", "", who, dry_run, dry_run ? "none" : "shutdown started");
    json_t *doc = json_pack("{s:s, s:b, s:s, s:I, s:I, s:s, s:o}", "action", "drain",
                            "dry_run", dry_run, "requested_by", who,
                            "inflight_events", (json_int_t)s.inflight,
                            "shutdown_timeout_ms", (json_int_t)a->cfg->shutdown_timeout_ms,
                            "effect", "stop accepting events, answer those in flight, persist "
                            "the WAL cursors and exit with status 0",
                            "divergence", divergence_json(a));
    enum MHD_Result rc = send_json(conn, dry_run ? MHD_HTTP_OK : MHD_HTTP_ACCEPTED, doc);
    /* A signal to the process, not to this thread: the event loop's signalfd receives it. */
    if (!dry_run)
        kill(getpid(), SIGTERM);
    return rc;
}

/* --- Dispatch ----------------------------------------------------------------------------- */

static enum MHD_Result method_not_allowed(struct MHD_Connection *conn, const char *allowed)
{
    char *text = tl_xstrdup("{\"error\": \"method not allowed\", \"status\": 405}\n");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allowed);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result route(struct tl_admin *a, struct listener *l, struct MHD_Connection *conn,
                             const char *url, const char *method)
{
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
               strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    char who[96];

    if (l->tcp) {
        const char *name = check_token(a, conn);
        if (!name) {
            static struct tl_ratelimit denied_log = TL_RATELIMIT_INIT(10000, 10);
            uint64_t suppressed;
            if (tl_ratelimit_allow(&denied_log, &suppressed))
                tl_log_warn("admin", "request rejected: missing or invalid bearer token "
                            "listener=%s method=%s path=%s suppressed=%" PRIu64, l->address,
                            method, url, suppressed);
            struct MHD_Response *resp = MHD_create_response_from_buffer(
                0, NULL, MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                    "Bearer realm=\"twinlane\"");
            enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_UNAUTHORIZED, resp);
            MHD_destroy_response(resp);
            return rc;
        }
        snprintf(who, sizeof(who), "token:%s", name);
    } else {
        describe_unix_peer(conn, who, sizeof(who));
    }

    static const char *const get_paths[] = {"/healthz", "/readyz", "/v1/status", "/metrics"};
    for (size_t i = 0; i < sizeof(get_paths) / sizeof(get_paths[0]); i++) {
        if (strcmp(url, get_paths[i]) != 0)
            continue;
        if (!get)
            return method_not_allowed(conn, "GET, HEAD");
        switch (i) {
        case 0:
            return send_json(conn, MHD_HTTP_OK, json_pack("{s:s}", "status", "alive"));
        case 1: {
            struct loop_snapshot s = take_snapshot(a);
            char why[256] = "";
            bool ready = check_ready(a, &s, why, sizeof(why));
            return send_json(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                             ready ? json_pack("{s:s}", "status", "ready")
                                   : json_pack("{s:s, s:s}", "status", "not ready", "reason",
                                               why));
        }
        case 2:
            return handle_status(a, conn);
        default:
            return handle_metrics(a, conn);
        }
    }

    bool verb = strncmp(url, "/v1/regions/", 12) == 0 || strcmp(url, "/v1/failover") == 0 ||
                strcmp(url, "/v1/failback") == 0 || strcmp(url, "/v1/ingest/pause") == 0 ||
                strcmp(url, "/v1/ingest/resume") == 0 || strcmp(url, "/v1/drain") == 0;
    if (!verb)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint: %s; the endpoints are GET "
                          "/healthz, /readyz, /v1/status, /metrics and POST /v1/regions/NAME/fence, "
                          "/v1/regions/NAME/unfence, /v1/failover?to=REGION, /v1/failback, "
                          "/v1/ingest/pause, /v1/ingest/resume, /v1/drain", url);
    if (!post)
        return method_not_allowed(conn, "POST");

    const char *bad = invalid_flag(conn);
    if (bad)
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "invalid value for %s; use 1, true, 0 or "
                          "false", bad);
    bool dry_run = query_flag(conn, "dry_run");
    /*
     * Fence changes check the breakers and then apply, and each listener has its own thread:
     * one at a time, so two requests cannot both pass a check that only one may pass.
     */
    enum MHD_Result result;
    bool fence_verb = true;
    pthread_mutex_lock(&a->control_lock);
    if (strncmp(url, "/v1/regions/", 12) == 0)
        result = handle_region_verb(a, conn, url + 12, dry_run, who);
    else if (strcmp(url, "/v1/failover") == 0)
        result = handle_failover(a, conn, dry_run, who);
    else if (strcmp(url, "/v1/failback") == 0)
        result = handle_failback(a, conn, dry_run, who);
    else
        fence_verb = false;
    pthread_mutex_unlock(&a->control_lock);
    if (fence_verb)
        return result;
    if (strcmp(url, "/v1/ingest/pause") == 0)
        return handle_ingest_verb(a, conn, true, dry_run, who);
    if (strcmp(url, "/v1/ingest/resume") == 0)
        return handle_ingest_verb(a, conn, false, dry_run, who);
    return handle_drain(a, conn, dry_run, who);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    (void)upload_data;
    struct listener *l = cls;
    struct request *req = *con_cls;

    if (!req) {
        *con_cls = tl_xcalloc(1, sizeof(struct request));
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        req->body_bytes += *upload_data_size;
        if (req->body_bytes > MAX_BODY_BYTES)
            req->body_too_large = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->body_too_large)
        return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body exceeds %d bytes; "
                          "no endpoint takes a body", MAX_BODY_BYTES);
    return route(l->admin, l, conn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct tl_admin *a = cls;
    char message[512];
    vsnprintf(message, sizeof(message), fmt, ap);
    size_t len = strlen(message);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == '\r'))
        message[--len] = '\0';
    uint64_t suppressed;
    if (tl_ratelimit_allow(&a->mhd_log, &suppressed))
        tl_log_warn("admin", "libmicrohttpd: %s suppressed=%" PRIu64, message, suppressed);
}

/* --- Listeners and tokens ----------------------------------------------------------------- */

static int open_unix_socket(const char *path, int *out, char *err, size_t errsize)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return tl_error(err, errsize, TL_EINVAL, "admin.unix: %s exists and is not a "
                            "socket; remove it or choose another path", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        if (probe >= 0)
            close(probe);
        if (live)
            return tl_error(err, errsize, TL_EINVAL, "admin.unix: another process is already "
                            "listening on %s; stop it or choose another path", path);
        unlink(path);
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "admin.unix: cannot create a socket: %s",
                        strerror(errno));
    /* Mode 0660: the agent's user and group may use the admin API, others may not. */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc != 0 || listen(fd, 32) != 0) {
        int saved = errno;
        close(fd);
        return tl_error(err, errsize, TL_EIO, "admin.unix: cannot listen on %s: %s", path,
                        strerror(saved));
    }
    *out = fd;
    return 0;
}

static int open_tcp_socket(const struct tl_config *cfg, int *out, char *err, size_t errsize)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(cfg->admin_tcp_host, cfg->admin_tcp_port, &hints, &res);
    if (gai != 0)
        return tl_error(err, errsize, TL_EINVAL, "admin.tcp: cannot resolve %s: %s",
                        cfg->admin_tcp_host, gai_strerror(gai));

    int rc = 0;
    int one = 1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = tl_error(err, errsize, TL_EIO, "admin.tcp: cannot create a socket: %s",
                      strerror(errno));
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 32) != 0) {
        rc = tl_error(err, errsize, TL_EIO, "admin.tcp: cannot listen on %s port %s: %s%s",
                      cfg->admin_tcp_host, cfg->admin_tcp_port, strerror(errno),
                      errno == EADDRINUSE ? "; another process holds the port, choose another"
                                          : "");
        close(fd);
        goto out;
    }
    *out = fd;
out:
    freeaddrinfo(res);
    return rc;
}

static bool token_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '@';
        if (!ok)
            return false;
    }
    return true;
}

/* Reads admin.token_file: lines "NAME TOKEN"; blank lines and # comments are skipped. */
static int load_tokens(struct tl_admin *a, char *err, size_t errsize)
{
    const char *path = a->cfg->admin_token_file;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "admin.token_file: cannot open %s: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size > TOKEN_FILE_MAX_BYTES) {
        close(fd);
        return tl_error(err, errsize, TL_EINVAL, "admin.token_file: %s is larger than %d bytes "
                        "or cannot be read", path, TOKEN_FILE_MAX_BYTES);
    }
    if (st.st_mode & 0077)
        tl_log_warn("admin", "token file is readable by other users; chmod 600 it path=%s "
                    "mode=%03o", path, (unsigned)(st.st_mode & 0777));

    char *text = tl_xmalloc((size_t)st.st_size + 1);
    ssize_t n = read(fd, text, (size_t)st.st_size);
    close(fd);
    if (n != st.st_size) {
        free(text);
        return tl_error(err, errsize, TL_EIO, "admin.token_file: short read of %s", path);
    }
    text[n] = '\0';

    int rc = 0;
    int line = 0;
    a->tokens = tl_xcalloc(TOKEN_MAX_COUNT, sizeof(*a->tokens));
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        char *fields[3] = {0};
        size_t count = 0;
        for (char *fs = NULL, *f = strtok_r(l, " \t\r", &fs); f; f = strtok_r(NULL, " \t\r", &fs))
            if (count < 3)
                fields[count++] = f;
            else
                count++;
        if (count == 0 || fields[0][0] == '#')
            continue;
        if (count != 2) {
            rc = tl_error(err, errsize, TL_EINVAL, "%s:%d: expected \"NAME TOKEN\", found %zu "
                          "fields", path, line, count);
            break;
        }
        if (!token_name_valid(fields[0], strlen(fields[0]))) {
            rc = tl_error(err, errsize, TL_EINVAL, "%s:%d: invalid token name; use 1 to %d "
                          "characters from [A-Za-z0-9._@-]", path, line, TOKEN_NAME_MAX);
            break;
        }
        if (strlen(fields[1]) < TOKEN_MIN_LEN) {
            rc = tl_error(err, errsize, TL_EINVAL, "%s:%d: the token of %s is shorter than %d "
                          "characters; generate one with `openssl rand -hex 32`", path, line,
                          fields[0], TOKEN_MIN_LEN);
            break;
        }
        if (a->token_count == TOKEN_MAX_COUNT) {
            rc = tl_error(err, errsize, TL_EINVAL, "%s:%d: more than %d tokens", path, line,
                          TOKEN_MAX_COUNT);
            break;
        }
        struct token *t = &a->tokens[a->token_count++];
        snprintf(t->name, sizeof(t->name), "%s", fields[0]);
        t->secret = tl_xstrdup(fields[1]);
        t->len = strlen(t->secret);
    }
    if (rc == 0 && a->token_count == 0)
        rc = tl_error(err, errsize, TL_EINVAL, "admin.token_file: %s holds no token; add a line "
                      "\"NAME TOKEN\"", path);
    explicit_bzero(text, (size_t)n);
    free(text);
    return rc;
}

static int start_listener(struct tl_admin *a, struct listener *l, int fd, char *err,
                          size_t errsize)
{
    unsigned timeout_s = (unsigned)((a->cfg->admin_connection_timeout_ms + 999) / 1000);
    l->admin = a;
    l->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, l,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a,
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)a->cfg->admin_max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY_BYTES,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_END);
    if (!l->daemon) {
        close(fd);
        return tl_error(err, errsize, TL_EIO, "admin: cannot start the HTTP server on %s",
                        l->address);
    }
    tl_log_info("admin", "listening address=%s", l->address);
    return 0;
}

int tl_admin_open(const struct tl_admin_sources *src, struct tl_admin **out, char *err,
                  size_t errsize)
{
    struct tl_admin *a = tl_xcalloc(1, sizeof(*a));
    const struct tl_config *cfg = src->cfg;
    int fd = -1;
    int rc;

    a->src = *src;
    a->cfg = cfg;
    a->started_ms = tl_now_ms();
    a->started_wallclock_ms = tl_wallclock_ms();
    atomic_store(&a->preferred_region, -1);
    a->mhd_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 10);
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->control_lock, NULL);
    a->request_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->request_fd < 0)
        tl_panic("eventfd failed: %s", strerror(errno));

    rc = cfg->admin_tcp_host ? load_tokens(a, err, errsize) : 0;
    if (rc == 0)
        rc = open_unix_socket(cfg->admin_unix_path, &fd, err, errsize);
    if (rc == 0) {
        snprintf(a->unix_listener.address, sizeof(a->unix_listener.address), "unix:%s",
                 cfg->admin_unix_path);
        rc = start_listener(a, &a->unix_listener, fd, err, errsize);
    }
    if (rc == 0 && cfg->admin_tcp_host) {
        rc = open_tcp_socket(cfg, &fd, err, errsize);
        if (rc == 0) {
            a->tcp_listener.tcp = true;
            snprintf(a->tcp_listener.address, sizeof(a->tcp_listener.address), "tcp:%s:%s",
                     cfg->admin_tcp_host, cfg->admin_tcp_port);
            rc = start_listener(a, &a->tcp_listener, fd, err, errsize);
        }
    }
    if (rc != 0) {
        tl_admin_close(a);
        return rc;
    }
    *out = a;
    return 0;
}

int tl_admin_request_fd(const struct tl_admin *a)
{
    return a->request_fd;
}

void tl_admin_publish(struct tl_admin *a, struct tl_ingest *ing, bool accepting)
{
    struct loop_snapshot s = {.valid = true, .accepting = accepting};
    tl_ingest_get_stats(ing, &s.ingest);
    s.next_seq = tl_wal_next_seq(a->src.wal);
    s.inflight = tl_pipeline_inflight(a->src.pipeline);

    pthread_mutex_lock(&a->lock);
    a->snap = s;
    pthread_mutex_unlock(&a->lock);
}

void tl_admin_apply(struct tl_admin *a, struct tl_ingest *ing)
{
    uint64_t count;
    ssize_t ignored = read(a->request_fd, &count, sizeof(count));
    (void)ignored;

    int request = atomic_exchange(&a->ingest_request, INGEST_REQUEST_NONE);
    pthread_mutex_lock(&a->lock);
    char who[sizeof(a->ingest_who)];
    memcpy(who, a->ingest_who, sizeof(who));
    bool accepting = a->snap.accepting || !a->snap.valid;
    pthread_mutex_unlock(&a->lock);
    if (request != INGEST_REQUEST_NONE)
        tl_ingest_set_paused(ing, request == INGEST_REQUEST_PAUSE, who);
    tl_admin_publish(a, ing, accepting);
}

void tl_admin_close(struct tl_admin *a)
{
    if (!a)
        return;
    /* Stopping a daemon closes its listening socket and joins its thread. */
    if (a->unix_listener.daemon) {
        MHD_stop_daemon(a->unix_listener.daemon);
        unlink(a->cfg->admin_unix_path);
    }
    if (a->tcp_listener.daemon)
        MHD_stop_daemon(a->tcp_listener.daemon);
    for (size_t i = 0; i < a->token_count; i++) {
        explicit_bzero(a->tokens[i].secret, a->tokens[i].len);
        free(a->tokens[i].secret);
    }
    free(a->tokens);
    if (a->request_fd >= 0)
        close(a->request_fd);
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->control_lock);
    free(a);
}
