/*
 * Client library for twinlane-agent's ingest protocol (include/twinlane/client.h).
 *
 * Wire format: length-prefixed protobuf frames, ProduceRequest out and ProduceResponse back
 * (proto/twinlane.proto, framed by proto/frame.c). The client numbers requests 1, 2, 3, ...
 * on each connection, and the agent echoes the number in its response.
 *
 * State of one connection:
 *
 *   out      encoded requests not yet written; out_sent bytes at its front are already
 *            written and are dropped lazily, so a slow socket costs no repeated memmove.
 *   window   requests written or queued without a response yet, indexed by batch id. Ids are
 *            assigned in order, so a ring of pointers covers [window_first_id, next_batch_id)
 *            and lookup is an index computation. A slot becomes NULL when its response
 *            arrives; the ring start advances over NULL slots.
 *   ready    batches with a response, or lost ones, waiting for delivery in arrival order.
 *            tl_client_send fills it while it waits for queue room but never calls
 *            on_result, so the callback runs only inside tl_client_poll, tl_client_flush
 *            and tl_client_close.
 *
 * Invariants: inflight_events is the sum of the event counts of all batches in window and
 * ready. When the connection fails, every batch in window moves to ready without a response
 * and is delivered as TL_CLIENT_CONNECTION_LOST, which gives each event exactly one result.
 *
 * One thread at a time uses a client; nothing here blocks except poll(2) and connect(2).
 */
#include "twinlane/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "frame.h"
#include "log.h"
#include "mem.h"

_Static_assert((int)TL_CLIENT_EINVAL == (int)TL_EINVAL, "error codes differ");
_Static_assert((int)TL_CLIENT_EIO == (int)TL_EIO, "error codes differ");
_Static_assert((int)TL_CLIENT_ENOTFOUND == (int)TL_ENOTFOUND, "error codes differ");
_Static_assert((int)TL_CLIENT_ETIMEDOUT == (int)TL_ETIMEDOUT, "error codes differ");
_Static_assert((int)TL_CLIENT_ETOOBIG == (int)TL_ETOOBIG, "error codes differ");
_Static_assert((int)TL_CLIENT_ECLOSED == (int)TL_ECLOSED, "error codes differ");
_Static_assert((int)TL_CLIENT_EPROTO == (int)TL_EPROTO, "error codes differ");
_Static_assert((int)TL_CLIENT_FAILED == (int)TWINLANE__STATUS__FAILED, "statuses differ");

#define DEFAULT_MAX_QUEUED_BYTES ((size_t)16 << 20)
#define DEFAULT_MAX_REQUEST_BYTES ((size_t)4 << 20)
#define DEFAULT_MAX_RESPONSE_BYTES ((size_t)64 << 20)
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define WINDOW_MIN_SLOTS 64

/* One request waiting for its response. */
struct batch {
    uint64_t id;
    size_t count;
    void **opaques;                      /* count entries, from the events */
    Twinlane__ProduceResponse *response; /* NULL until it arrives; stays NULL when lost */
    struct batch *next;                  /* link in the ready list */
};

struct tl_client {
    int fd; /* -1 once closed */
    struct tl_client_options opts;

    struct tl_buf out;
    size_t out_sent;
    struct tl_frame_reader in;

    uint64_t next_batch_id;
    struct batch **window;
    size_t window_cap;
    size_t window_head; /* slot of window_first_id */
    uint64_t window_first_id;

    struct batch *ready_head;
    struct batch *ready_tail;

    size_t inflight_events;
    uint64_t responses_received; /* 0: the agent may have rejected the connection */
    bool in_callback;
    char last_error[512];
};

/* Parsed form of an agent address. */
struct address {
    bool is_unix;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char host[256];
    char port[8];
    char display[270]; /* host:port for messages, with brackets around an IPv6 host */
};

static size_t queued_bytes(const struct tl_client *c)
{
    return c->out.len - c->out_sent;
}

static int remaining_ms(int64_t deadline_ms)
{
    if (deadline_ms < 0)
        return -1;
    int64_t left = deadline_ms - tl_now_ms();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : tl_now_ms() + timeout_ms;
}

/* ---- address parsing and connecting ---- */

static int parse_port(const char *text, const char *address, struct address *out, char *err,
                      size_t errsize)
{
    char *end = NULL;
    errno = 0;
    long port = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || port < 1 || port > 65535)
        return tl_error(err, errsize, TL_EINVAL,
                        "invalid port \"%s\" in agent address \"%s\"; expected 1 to 65535",
                        text, address);
    snprintf(out->port, sizeof out->port, "%ld", port);
    return 0;
}

static int parse_tcp_address(const char *hostport, const char *address, struct address *out,
                             char *err, size_t errsize)
{
    const char *host = hostport;
    size_t host_len = 0;
    const char *port = NULL;

    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (!close || close[1] != ':')
            return tl_error(err, errsize, TL_EINVAL,
                            "invalid agent address \"%s\"; write IPv6 addresses as [addr]:port",
                            address);
        host = hostport + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (!colon)
            return tl_error(err, errsize, TL_EINVAL,
                            "invalid agent address \"%s\": it has no port and no slash; "
                            "expected host:port, [ipv6]:port, unix:PATH or a socket path "
                            "containing a slash (./agent.sock)",
                            address);
        host_len = (size_t)(colon - hostport);
        if (memchr(hostport, ':', host_len))
            return tl_error(err, errsize, TL_EINVAL,
                            "invalid agent address \"%s\"; write IPv6 addresses as [addr]:port",
                            address);
        port = colon + 1;
    }

    if (host_len == 0)
        return tl_error(err, errsize, TL_EINVAL, "agent address \"%s\" has an empty host",
                        address);
    if (host_len >= sizeof out->host)
        return tl_error(err, errsize, TL_EINVAL, "host in agent address \"%s\" is too long",
                        address);
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    int rc = parse_port(port, address, out, err, errsize);
    if (rc < 0)
        return rc;

    bool ipv6 = memchr(out->host, ':', host_len) != NULL;
    snprintf(out->display, sizeof out->display, ipv6 ? "[%s]:%s" : "%s:%s", out->host, out->port);
    return 0;
}

static int parse_address(const char *address, struct address *out, char *err, size_t errsize)
{
    *out = (struct address){0};
    if (!address || address[0] == '\0')
        return tl_error(err, errsize, TL_EINVAL, "agent address is empty");

    /* A TCP address never contains a slash, so any other address with one is a path. */
    const char *path = NULL;
    if (strncmp(address, "unix:", 5) == 0)
        path = address + 5;
    else if (strncmp(address, "tcp:", 4) != 0 && strchr(address, '/'))
        path = address;

    if (path) {
        if (path[0] == '\0')
            return tl_error(err, errsize, TL_EINVAL, "agent address \"%s\" has an empty path",
                            address);
        if (strlen(path) >= sizeof out->path)
            return tl_error(err, errsize, TL_EINVAL,
                            "socket path is longer than the %zu bytes a Unix socket address "
                            "holds: %s",
                            sizeof out->path - 1, path);
        out->is_unix = true;
        strcpy(out->path, path);
        return 0;
    }

    const char *hostport = strncmp(address, "tcp:", 4) == 0 ? address + 4 : address;
    return parse_tcp_address(hostport, address, out, err, errsize);
}

static int set_nonblocking(int fd, char *err, size_t errsize)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return tl_error(err, errsize, TL_EIO, "cannot make the agent socket non-blocking: %s",
                        strerror(errno));
    return 0;
}

static int connect_unix(const struct address *addr, int *fd_out, char *err, size_t errsize)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "cannot create a Unix socket: %s", strerror(errno));

    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, addr->path);
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        rc = tl_error(err, errsize, TL_EIO,
                      "cannot connect to the agent at %s: %s; check that twinlane-agent is "
                      "running and listens there",
                      addr->path, strerror(errno));
        goto out;
    }
    rc = set_nonblocking(fd, err, errsize);

out:
    if (rc < 0)
        close(fd);
    else
        *fd_out = fd;
    return rc;
}

/* Connects one resolved TCP address within deadline_ms; returns an fd or -1 with errno set. */
static int connect_tcp_one(const struct addrinfo *ai, int64_t deadline_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;

    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS)
        goto fail;

    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    for (;;) {
        int n = poll(&pfd, 1, remaining_ms(deadline_ms));
        if (n > 0)
            break;
        if (n == 0) {
            errno = ETIMEDOUT;
            goto fail;
        }
        if (errno != EINTR)
            goto fail;
    }

    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
        goto fail;
    if (so_error != 0) {
        errno = so_error;
        goto fail;
    }
    return fd;

fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static int connect_tcp(const struct address *addr, int timeout_ms, int *fd_out, char *err,
                       size_t errsize)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    struct addrinfo *list = NULL;
    int gai = getaddrinfo(addr->host, addr->port, &hints, &list);
    if (gai == EAI_NONAME || gai == EAI_NODATA)
        return tl_error(err, errsize, TL_ENOTFOUND, "agent host \"%s\" not found: %s",
                        addr->host, gai_strerror(gai));
    if (gai != 0)
        return tl_error(err, errsize, TL_EIO, "cannot resolve agent host \"%s\": %s",
                        addr->host, gai_strerror(gai));

    int64_t deadline_ms = deadline_after(timeout_ms);
    int fd = -1;
    int last_errno = 0;
    for (const struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        fd = connect_tcp_one(ai, deadline_ms);
        last_errno = errno;
    }
    freeaddrinfo(list);

    if (fd < 0 && last_errno == ETIMEDOUT)
        return tl_error(err, errsize, TL_ETIMEDOUT,
                        "connecting to the agent at %s timed out after %d ms", addr->display,
                        timeout_ms);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO,
                        "cannot connect to the agent at %s: %s; check that twinlane-agent "
                        "is running and listens there",
                        addr->display, strerror(last_errno));

    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *fd_out = fd;
    return 0;
}

/* ---- batches: the window of requests in flight and the ready list ---- */

static void batch_free(struct batch *b)
{
    if (b->response)
        twinlane__produce_response__free_unpacked(b->response, NULL);
    free(b->opaques);
    free(b);
}

static size_t window_span(const struct tl_client *c)
{
    return (size_t)(c->next_batch_id - c->window_first_id);
}

/* Returns the slot of batch id, or NULL when the id is outside the window. */
static struct batch **window_slot(struct tl_client *c, uint64_t id)
{
    if (id < c->window_first_id || id >= c->next_batch_id)
        return NULL;
    size_t offset = (size_t)(id - c->window_first_id);
    return &c->window[(c->window_head + offset) % c->window_cap];
}

/* Assigns the next batch id to b and stores it in the window. */
static void window_push(struct tl_client *c, struct batch *b)
{
    size_t span = window_span(c);
    if (span == c->window_cap) {
        size_t cap = c->window_cap ? c->window_cap * 2 : WINDOW_MIN_SLOTS;
        struct batch **grown = tl_xcalloc(cap, sizeof *grown);
        for (size_t i = 0; i < span; i++)
            grown[i] = c->window[(c->window_head + i) % c->window_cap];
        free(c->window);
        c->window = grown;
        c->window_cap = cap;
        c->window_head = 0;
    }

    b->id = c->next_batch_id;
    c->next_batch_id++;
    *window_slot(c, b->id) = b;
}

/* Removes and returns batch id from the window, then advances the start over empty slots. */
static struct batch *window_take(struct tl_client *c, uint64_t id)
{
    struct batch **slot = window_slot(c, id);
    struct batch *b = *slot;
    *slot = NULL;

    while (window_span(c) > 0 && c->window[c->window_head] == NULL) {
        c->window_head = (c->window_head + 1) % c->window_cap;
        c->window_first_id++;
    }
    return b;
}

static void ready_append(struct tl_client *c, struct batch *b)
{
    b->next = NULL;
    if (c->ready_tail)
        c->ready_tail->next = b;
    else
        c->ready_head = b;
    c->ready_tail = b;
}

/*
 * Closes the socket and moves every batch in flight to the ready list, where it is delivered
 * as TL_CLIENT_CONNECTION_LOST. Keeps the first failure's message; returns TL_ECLOSED.
 */
static int fail_connection(struct tl_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail_connection(struct tl_client *c, const char *fmt, ...)
{
    if (c->fd < 0)
        return TL_ECLOSED;

    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
    va_end(ap);
    close(c->fd);
    c->fd = -1;

    while (window_span(c) > 0) {
        struct batch *b = window_take(c, c->window_first_id);
        if (b)
            ready_append(c, b);
    }
    tl_buf_free(&c->out);
    c->out_sent = 0;
    return TL_ECLOSED;
}

/* ---- reading responses and writing requests ---- */

/*
 * Fails the connection after the agent closed or reset it (verb is "closed" or "reset"). An
 * agent that sent no response yet has most likely rejected the connection, so the message
 * names the usual causes.
 */
static int fail_agent_closed(struct tl_client *c, const char *verb)
{
    if (c->responses_received == 0)
        return fail_connection(c,
                               "the agent %s the connection before answering; it may have "
                               "reached listen.max_connections or be stopping; see its log",
                               verb);
    return fail_connection(c, "the agent %s the connection", verb);
}

/* Checks one decoded response against its request and moves the batch to the ready list. */
static int accept_response(struct tl_client *c, Twinlane__ProduceResponse *response)
{
    uint64_t id = response->batch_id;
    struct batch **slot = window_slot(c, id);
    if (!slot || !*slot) {
        twinlane__produce_response__free_unpacked(response, NULL);
        return fail_connection(c,
                               "protocol error: the agent sent a response for batch_id %llu, "
                               "which has no request in flight",
                               (unsigned long long)id);
    }
    size_t expected = (*slot)->count;
    if (!response->error && response->n_results != expected) {
        size_t got = response->n_results;
        twinlane__produce_response__free_unpacked(response, NULL);
        return fail_connection(c,
                               "protocol error: the response for batch_id %llu has %zu "
                               "results for %zu events",
                               (unsigned long long)id, got, expected);
    }

    struct batch *b = window_take(c, id);
    b->response = response;
    ready_append(c, b);
    c->responses_received++;
    return 0;
}

/* Decodes every complete frame in the reader. Returns 0 or TL_ECLOSED after a failure. */
static int drain_frames(struct tl_client *c)
{
    for (;;) {
        const uint8_t *payload = NULL;
        size_t len = 0;
        char err[256];
        int rc = tl_frame_reader_next(&c->in, &payload, &len, err, sizeof err);
        if (rc == 0)
            return 0;
        if (rc == TL_ETOOBIG)
            return fail_connection(c,
                                   "the agent sent a response frame above max_response_bytes "
                                   "(%zu bytes); raise the option if the agent is trusted",
                                   c->in.max_frame_bytes);

        Twinlane__ProduceResponse *response = NULL;
        rc = tl_frame_decode_response(payload, len, &response, err, sizeof err);
        if (rc < 0)
            return fail_connection(c, "protocol error: %s", err);
        rc = accept_response(c, response);
        if (rc < 0)
            return rc;
    }
}

/* Reads and decodes everything available. Returns 0 or TL_ECLOSED after a failure. */
static int read_responses(struct tl_client *c)
{
    if (c->fd < 0)
        return TL_ECLOSED;

    for (;;) {
        int rc = tl_frame_reader_fill(&c->in, c->fd);
        if (rc == TL_ECLOSED) {
            /* Responses that arrived before the close are still valid. */
            rc = drain_frames(c);
            if (rc < 0)
                return rc;
            if (tl_frame_reader_pending(&c->in) > 0)
                return fail_connection(c, "the agent closed the connection in the middle of "
                                          "a response frame");
            return fail_agent_closed(c, "closed");
        }
        if (rc == TL_EIO && errno == ECONNRESET)
            return fail_agent_closed(c, "reset");
        if (rc == TL_EIO)
            return fail_connection(c, "reading from the agent failed: %s", strerror(errno));
        if (rc == TL_EAGAIN) {
            /* fill also reports EAGAIN when a whole frame is buffered, so decode first. */
            return drain_frames(c);
        }

        rc = drain_frames(c);
        if (rc < 0)
            return rc;
    }
}

/* Writes queued requests until the socket would block. Returns 0 or TL_ECLOSED. */
static int write_queued(struct tl_client *c)
{
    if (c->fd < 0)
        return TL_ECLOSED;

    while (queued_bytes(c) > 0) {
        ssize_t n = send(c->fd, c->out.data + c->out_sent, queued_bytes(c), MSG_NOSIGNAL);
        if (n > 0) {
            c->out_sent += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;

        /* The agent may have sent responses, for example an error, before it closed. */
        int saved = errno;
        read_responses(c);
        if (saved == EPIPE)
            return fail_agent_closed(c, "closed");
        if (saved == ECONNRESET)
            return fail_agent_closed(c, "reset");
        return fail_connection(c, "writing to the agent failed: %s", strerror(saved));
    }

    /* Drop written bytes only when they are the larger part, so each byte moves O(1) times. */
    if (c->out_sent > 0 && c->out_sent >= queued_bytes(c)) {
        tl_buf_consume(&c->out, c->out_sent);
        c->out_sent = 0;
    }
    return 0;
}

/* Writes and reads without blocking. Returns 0 or TL_ECLOSED. */
static int exchange(struct tl_client *c)
{
    int rc = write_queued(c);
    if (rc < 0)
        return rc;
    return read_responses(c);
}

/* Waits in poll(2) until the socket is readable, or writable with data queued. */
static void wait_socket(struct tl_client *c, int timeout_ms)
{
    if (c->fd < 0)
        return;
    short events = POLLIN;
    if (queued_bytes(c) > 0)
        events |= POLLOUT;
    struct pollfd pfd = {.fd = c->fd, .events = events};
    /* EINTR and errors fall through: the caller's next read or write reports them. */
    poll(&pfd, 1, timeout_ms);
}

/* ---- delivering results ---- */

static int map_status(Twinlane__Status status)
{
    if (status < TWINLANE__STATUS__OK || status > TWINLANE__STATUS__FAILED)
        return TL_CLIENT_FAILED;
    return (int)status;
}

static void deliver_batch(struct tl_client *c, const struct batch *b)
{
    const Twinlane__ProduceResponse *response = b->response;

    for (size_t i = 0; i < b->count; i++) {
        struct tl_client_result result = {
            .partition = -1,
            .opaque = b->opaques[i],
            .batch_id = b->id,
            .index = i,
        };
        if (!response) {
            result.status = TL_CLIENT_CONNECTION_LOST;
            result.message = c->last_error;
        } else if (response->error) {
            result.status =
                response->has_error_status ? map_status(response->error_status) : TL_CLIENT_FAILED;
            result.message = response->error;
        } else {
            const Twinlane__EventResult *r = response->results[i];
            result.status = map_status(r->status);
            result.seq = r->has_seq ? r->seq : 0;
            result.partition = r->has_partition ? r->partition : -1;
            result.message = r->message;
            result.regions = (const char *const *)r->regions;
            result.region_count = r->n_regions;
            result.spooled = r->has_spooled && r->spooled;
        }

        if (c->opts.on_result) {
            c->in_callback = true;
            c->opts.on_result(c->opts.ctx, &result);
            c->in_callback = false;
        }
    }
}

/* Calls on_result for every event of every ready batch; returns the number of events. */
static size_t deliver_ready(struct tl_client *c)
{
    size_t delivered = 0;

    while (c->ready_head) {
        struct batch *b = c->ready_head;
        c->ready_head = b->next;
        if (!c->ready_head)
            c->ready_tail = NULL;

        deliver_batch(c, b);
        delivered += b->count;
        c->inflight_events -= b->count;
        batch_free(b);
    }
    return delivered;
}

/* ---- public API ---- */

int tl_client_connect(const char *address, const struct tl_client_options *opts,
                      struct tl_client **out, char *err, size_t errsize)
{
    struct tl_client_options o = opts ? *opts : (struct tl_client_options){0};
    if (o.max_queued_bytes == 0)
        o.max_queued_bytes = DEFAULT_MAX_QUEUED_BYTES;
    if (o.max_request_bytes == 0)
        o.max_request_bytes = DEFAULT_MAX_REQUEST_BYTES;
    if (o.max_response_bytes == 0)
        o.max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES;
    if (o.connect_timeout_ms == 0)
        o.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (o.max_request_bytes > UINT32_MAX || o.max_response_bytes > UINT32_MAX)
        return tl_error(err, errsize, TL_EINVAL,
                        "max_request_bytes and max_response_bytes must fit the 4-byte frame "
                        "length (at most %u)",
                        (unsigned)UINT32_MAX);

    struct address addr;
    int rc = parse_address(address, &addr, err, errsize);
    if (rc < 0)
        return rc;

    int fd = -1;
    if (addr.is_unix)
        rc = connect_unix(&addr, &fd, err, errsize);
    else
        rc = connect_tcp(&addr, o.connect_timeout_ms, &fd, err, errsize);
    if (rc < 0)
        return rc;

    struct tl_client *c = tl_xcalloc(1, sizeof *c);
    c->fd = fd;
    c->opts = o;
    tl_buf_init(&c->out);
    tl_frame_reader_init(&c->in, o.max_response_bytes);
    c->next_batch_id = 1;
    c->window_first_id = 1;
    *out = c;
    return 0;
}

/* Checks the events; returns 0 or TL_EINVAL with the index of the first bad one in err. */
static int validate_events(const struct tl_client_event *events, size_t count, char *err,
                           size_t errsize)
{
    for (size_t i = 0; i < count; i++) {
        const struct tl_client_event *ev = &events[i];
        if (!ev->topic || ev->topic[0] == '\0')
            return tl_error(err, errsize, TL_EINVAL, "event %zu has no topic", i);
        if (ev->key_len > 0 && !ev->key)
            return tl_error(err, errsize, TL_EINVAL, "event %zu has key_len %zu but no key", i,
                            ev->key_len);
        if (ev->value_len > 0 && !ev->value)
            return tl_error(err, errsize, TL_EINVAL, "event %zu has value_len %zu but no value",
                            i, ev->value_len);
        if (ev->header_count > 0 && !ev->headers)
            return tl_error(err, errsize, TL_EINVAL,
                            "event %zu has header_count %zu but no headers", i, ev->header_count);
        for (size_t h = 0; h < ev->header_count; h++) {
            const struct tl_client_header *header = &ev->headers[h];
            if (!header->name)
                return tl_error(err, errsize, TL_EINVAL, "header %zu of event %zu has no name",
                                h, i);
            if (header->value_len > 0 && !header->value)
                return tl_error(err, errsize, TL_EINVAL,
                                "header %zu of event %zu has value_len %zu but no value", h, i,
                                header->value_len);
        }
    }
    return 0;
}

/*
 * Protobuf view of a send call's events. The messages point into the caller's memory, so the
 * view lives only until the request is packed.
 */
struct request_view {
    Twinlane__ProduceRequest request;
    Twinlane__Event *events;
    Twinlane__Event **event_ptrs;
    Twinlane__Header *headers;
    Twinlane__Header **header_ptrs;
};

static void request_view_build(struct request_view *v, const struct tl_client_event *events,
                               size_t count)
{
    size_t header_total = 0;
    for (size_t i = 0; i < count; i++)
        header_total += events[i].header_count;

    v->events = tl_xcalloc(count, sizeof *v->events);
    v->event_ptrs = tl_xcalloc(count, sizeof *v->event_ptrs);
    v->headers = tl_xcalloc(header_total, sizeof *v->headers);
    v->header_ptrs = tl_xcalloc(header_total, sizeof *v->header_ptrs);

    size_t next_header = 0;
    for (size_t i = 0; i < count; i++) {
        const struct tl_client_event *ev = &events[i];
        Twinlane__Event *pe = &v->events[i];
        twinlane__event__init(pe);
        pe->topic = (char *)ev->topic;
        pe->has_key = ev->has_key;
        pe->key = (ProtobufCBinaryData){.len = ev->key_len, .data = (uint8_t *)ev->key};
        pe->has_value = ev->value != NULL;
        pe->value = (ProtobufCBinaryData){.len = ev->value_len, .data = (uint8_t *)ev->value};

        pe->n_headers = ev->header_count;
        pe->headers = &v->header_ptrs[next_header];
        for (size_t h = 0; h < ev->header_count; h++) {
            Twinlane__Header *ph = &v->headers[next_header];
            twinlane__header__init(ph);
            ph->name = (char *)ev->headers[h].name;
            ph->has_value = true;
            ph->value = (ProtobufCBinaryData){.len = ev->headers[h].value_len,
                                              .data = (uint8_t *)ev->headers[h].value};
            v->header_ptrs[next_header] = ph;
            next_header++;
        }
        v->event_ptrs[i] = pe;
    }

    twinlane__produce_request__init(&v->request);
    v->request.n_events = count;
    v->request.events = v->event_ptrs;
}

static void request_view_free(struct request_view *v)
{
    free(v->events);
    free(v->event_ptrs);
    free(v->headers);
    free(v->header_ptrs);
}

/* Waits until frame_bytes more fit the queue; an empty queue takes any frame. */
static int wait_for_room(struct tl_client *c, size_t frame_bytes, char *err, size_t errsize)
{
    int timeout_ms = c->opts.send_timeout_ms > 0 ? c->opts.send_timeout_ms : -1;
    int64_t deadline_ms = deadline_after(timeout_ms);

    for (;;) {
        size_t queued = queued_bytes(c);
        if (queued == 0 || queued + frame_bytes <= c->opts.max_queued_bytes)
            return 0;

        int rc = exchange(c);
        if (rc < 0)
            return tl_error(err, errsize, TL_ECLOSED, "connection to the agent closed: %s",
                            c->last_error);
        queued = queued_bytes(c);
        if (queued == 0 || queued + frame_bytes <= c->opts.max_queued_bytes)
            return 0;

        int wait_ms = remaining_ms(deadline_ms);
        if (wait_ms == 0)
            return tl_error(err, errsize, TL_ETIMEDOUT,
                            "waited %d ms for the agent to take %zu queued bytes "
                            "(send_timeout_ms)",
                            c->opts.send_timeout_ms, queued);
        wait_socket(c, wait_ms);
    }
}

int tl_client_send(struct tl_client *c, const struct tl_client_event *events, size_t count,
                   uint64_t *batch_id, char *err, size_t errsize)
{
    if (c->in_callback)
        return tl_error(err, errsize, TL_EINVAL,
                        "tl_client_send called from on_result; send after the poll call returns");
    if (c->fd < 0)
        return tl_error(err, errsize, TL_ECLOSED, "connection to the agent closed: %s",
                        c->last_error);
    if (count == 0 || !events)
        return tl_error(err, errsize, TL_EINVAL, "tl_client_send needs at least one event");
    int rc = validate_events(events, count, err, errsize);
    if (rc < 0)
        return rc;

    struct request_view view = {0};
    request_view_build(&view, events, count);
    /* window_push assigns this id below; setting it now makes the size exact. */
    view.request.batch_id = c->next_batch_id;
    size_t payload_bytes = protobuf_c_message_get_packed_size(&view.request.base);
    if (payload_bytes > c->opts.max_request_bytes) {
        rc = tl_error(err, errsize, TL_ETOOBIG,
                      "request of %zu events encodes to %zu bytes, above max_request_bytes "
                      "(%zu); send fewer or smaller events",
                      count, payload_bytes, c->opts.max_request_bytes);
        goto out;
    }
    size_t frame_bytes = TL_FRAME_HEADER_BYTES + payload_bytes;

    rc = wait_for_room(c, frame_bytes, err, errsize);
    if (rc < 0)
        goto out;

    struct batch *b = tl_xcalloc(1, sizeof *b);
    b->count = count;
    b->opaques = tl_xcalloc(count, sizeof *b->opaques);
    for (size_t i = 0; i < count; i++)
        b->opaques[i] = events[i].opaque;
    window_push(c, b);
    c->inflight_events += count;
    if (batch_id)
        *batch_id = b->id;
    tl_frame_append(&c->out, &view.request.base);

    /* A failure here still hands the events over: they get CONNECTION_LOST results. */
    write_queued(c);
    rc = 0;

out:
    request_view_free(&view);
    return rc;
}

int tl_client_poll(struct tl_client *c, int timeout_ms)
{
    if (c->in_callback)
        return TL_EINVAL;

    int64_t deadline_ms = deadline_after(timeout_ms);
    for (;;) {
        exchange(c);
        size_t delivered = deliver_ready(c);
        if (delivered > 0)
            return delivered > INT32_MAX ? INT32_MAX : (int)delivered;
        if (c->fd < 0)
            return TL_ECLOSED;
        if (c->inflight_events == 0)
            return 0;

        int wait_ms = remaining_ms(deadline_ms);
        if (wait_ms == 0)
            return 0;
        wait_socket(c, wait_ms);
    }
}

int tl_client_flush(struct tl_client *c, int timeout_ms)
{
    if (c->in_callback)
        return TL_EINVAL;

    int64_t deadline_ms = deadline_after(timeout_ms);
    for (;;) {
        int rc = tl_client_poll(c, remaining_ms(deadline_ms));
        if (c->fd < 0 && c->inflight_events == 0)
            return TL_ECLOSED;
        if (rc < 0)
            return rc;
        if (c->inflight_events == 0)
            return 0;
        if (remaining_ms(deadline_ms) == 0)
            return TL_ETIMEDOUT;
    }
}

size_t tl_client_inflight(const struct tl_client *c)
{
    return c->inflight_events;
}

const char *tl_client_last_error(const struct tl_client *c)
{
    return c->last_error;
}

void tl_client_close(struct tl_client *c)
{
    if (!c)
        return;

    if (c->fd >= 0) {
        read_responses(c);
        fail_connection(c, "the client closed the connection before the response came");
    }
    deliver_ready(c);

    tl_buf_free(&c->out);
    tl_frame_reader_free(&c->in);
    free(c->window);
    free(c);
}

const char *tl_client_status_name(int status)
{
    switch (status) {
    case TL_CLIENT_OK: return "OK";
    case TL_CLIENT_RETRYABLE: return "RETRYABLE";
    case TL_CLIENT_UNKNOWN_TOPIC: return "UNKNOWN_TOPIC";
    case TL_CLIENT_TOO_LARGE: return "TOO_LARGE";
    case TL_CLIENT_INVALID: return "INVALID";
    case TL_CLIENT_FAILED: return "FAILED";
    case TL_CLIENT_CONNECTION_LOST: return "CONNECTION_LOST";
    default: return "UNKNOWN";
    }
}

const char *tl_client_strerror(int code)
{
    return tl_strerror(code);
}
