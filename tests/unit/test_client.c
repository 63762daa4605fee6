/*
 * Unit tests of the client library (cli/client.c) against a fake agent.
 *
 * Each test listens on a Unix socket in a fresh temporary directory, connects a client to it
 * and plays the agent's side on the accepted socket: it decodes ProduceRequest frames and
 * writes ProduceResponse frames (or broken bytes) by hand. The tests that need the agent to
 * run while the client blocks start the fake agent on a second thread.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "frame.h"
#include "mem.h"
#include "twinlane/client.h"

/* ---- fake agent ---- */

struct fake_agent {
    char dir[64];
    char path[128];
    int listen_fd;
    int fd;
    struct tl_frame_reader reader;
};

static void fake_agent_listen(struct fake_agent *a)
{
    strcpy(a->dir, "/tmp/test_client.XXXXXX");
    assert_non_null(mkdtemp(a->dir));
    snprintf(a->path, sizeof a->path, "%s/agent.sock", a->dir);

    a->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(a->listen_fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, a->path);
    assert_int_equal(bind(a->listen_fd, (struct sockaddr *)&sun, sizeof sun), 0);
    assert_int_equal(listen(a->listen_fd, 4), 0);
    a->fd = -1;
    tl_frame_reader_init(&a->reader, 64 << 20);
}

static void fake_agent_accept(struct fake_agent *a)
{
    a->fd = accept(a->listen_fd, NULL, NULL);
    assert_true(a->fd >= 0);
}

static void fake_agent_close_connection(struct fake_agent *a)
{
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
}

static void fake_agent_stop(struct fake_agent *a)
{
    fake_agent_close_connection(a);
    close(a->listen_fd);
    unlink(a->path);
    rmdir(a->dir);
    tl_frame_reader_free(&a->reader);
}

/* Reads the next request, blocking; returns NULL when the client closed the connection. */
static Twinlane__ProduceRequest *fake_agent_read(struct fake_agent *a)
{
    for (;;) {
        const uint8_t *payload = NULL;
        size_t len = 0;
        char err[256];
        int rc = tl_frame_reader_next(&a->reader, &payload, &len, err, sizeof err);
        assert_true(rc >= 0);
        if (rc == 1) {
            Twinlane__ProduceRequest *request = NULL;
            assert_int_equal(tl_frame_decode_request(payload, len, &request, err, sizeof err), 0);
            return request;
        }

        struct pollfd pfd = {.fd = a->fd, .events = POLLIN};
        poll(&pfd, 1, 5000);
        rc = tl_frame_reader_fill(&a->reader, a->fd);
        if (rc == TL_ECLOSED)
            return NULL;
        assert_true(rc > 0 || rc == TL_EAGAIN);
    }
}

static void write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void write_response(int fd, const Twinlane__ProduceResponse *response)
{
    struct tl_buf buf;
    tl_buf_init(&buf);
    tl_frame_append(&buf, &response->base);
    write_all(fd, buf.data, buf.len);
    tl_buf_free(&buf);
}

/*
 * Writes the response to a batch of count events. Event i gets statuses[i] (OK when statuses
 * is NULL), seq 1000 * batch_id + i, partition i, regions east and west, and message when
 * non-NULL.
 */
static void respond_batch(int fd, uint64_t batch_id, size_t count,
                          const Twinlane__Status *statuses, const char *message)
{
    static char *regions[] = {"east", "west"};
    Twinlane__EventResult *results = tl_xcalloc(count, sizeof *results);
    Twinlane__EventResult **ptrs = tl_xcalloc(count, sizeof *ptrs);
    for (size_t i = 0; i < count; i++) {
        twinlane__event_result__init(&results[i]);
        results[i].status = statuses ? statuses[i] : TWINLANE__STATUS__OK;
        results[i].has_seq = true;
        results[i].seq = batch_id * 1000 + i;
        results[i].has_partition = true;
        results[i].partition = (int32_t)i;
        results[i].n_regions = 2;
        results[i].regions = regions;
        results[i].message = (char *)message;
        ptrs[i] = &results[i];
    }

    Twinlane__ProduceResponse response = TWINLANE__PRODUCE_RESPONSE__INIT;
    response.batch_id = batch_id;
    response.n_results = count;
    response.results = ptrs;
    write_response(fd, &response);
    free(results);
    free(ptrs);
}

static void respond_batch_error(int fd, uint64_t batch_id, Twinlane__Status status,
                                const char *error)
{
    Twinlane__ProduceResponse response = TWINLANE__PRODUCE_RESPONSE__INIT;
    response.batch_id = batch_id;
    response.error = (char *)error;
    response.has_error_status = true;
    response.error_status = status;
    write_response(fd, &response);
}

/* ---- recorded results ---- */

#define MAX_RECORDED 4096

struct recorded {
    int status;
    uint64_t seq;
    int32_t partition;
    char message[128];
    size_t region_count;
    char first_region[16];
    void *opaque;
    uint64_t batch_id;
    size_t index;
    bool spooled;
};

struct recorder {
    struct recorded results[MAX_RECORDED];
    size_t count;
    struct tl_client *client; /* set by tests that call the client from the callback */
    int send_rc_in_callback;
};

static void record_result(void *ctx, const struct tl_client_result *result)
{
    struct recorder *rec = ctx;
    assert_true(rec->count < MAX_RECORDED);
    struct recorded *r = &rec->results[rec->count];
    rec->count++;

    *r = (struct recorded){
        .status = result->status,
        .seq = result->seq,
        .partition = result->partition,
        .region_count = result->region_count,
        .opaque = result->opaque,
        .batch_id = result->batch_id,
        .index = result->index,
        .spooled = result->spooled,
    };
    if (result->message)
        snprintf(r->message, sizeof r->message, "%s", result->message);
    if (result->region_count > 0)
        snprintf(r->first_region, sizeof r->first_region, "%s", result->regions[0]);

    if (rec->client) {
        struct tl_client_event ev = {.topic = "events", .value = "x", .value_len = 1};
        rec->send_rc_in_callback = tl_client_send(rec->client, &ev, 1, NULL, NULL, 0);
    }
}

/* Fixture: a fake agent and a client connected to it that records results. */
struct fixture {
    struct fake_agent agent;
    struct recorder rec;
    struct tl_client *client;
};

static struct fixture *fixture_start(const struct tl_client_options *extra)
{
    struct fixture *f = tl_xcalloc(1, sizeof *f);
    fake_agent_listen(&f->agent);

    struct tl_client_options opts = extra ? *extra : (struct tl_client_options){0};
    opts.on_result = record_result;
    opts.ctx = &f->rec;
    char err[256] = "";
    int rc = tl_client_connect(f->agent.path, &opts, &f->client, err, sizeof err);
    if (rc != 0)
        fail_msg("connect failed: %s", err);
    fake_agent_accept(&f->agent);
    return f;
}

static void fixture_stop(struct fixture *f)
{
    tl_client_close(f->client);
    fake_agent_stop(&f->agent);
    free(f);
}

/* Sends count events of topic "events"; event i carries opaque &tags[i] when tags is non-NULL. */
static uint64_t send_events(struct tl_client *c, size_t count, int *tags)
{
    struct tl_client_event *events = tl_xcalloc(count, sizeof *events);
    for (size_t i = 0; i < count; i++) {
        events[i] = (struct tl_client_event){
            .topic = "events",
            .value = "payload",
            .value_len = 7,
            .opaque = tags ? &tags[i] : NULL,
        };
    }
    uint64_t batch_id = 0;
    char err[256] = "";
    int rc = tl_client_send(c, events, count, &batch_id, err, sizeof err);
    free(events);
    if (rc != 0)
        fail_msg("send failed: %s", err);
    return batch_id;
}

/* Polls until want results are recorded or five seconds pass. */
static void poll_until(struct fixture *f, size_t want)
{
    for (int i = 0; i < 500 && f->rec.count < want; i++) {
        int rc = tl_client_poll(f->client, 10);
        if (rc == TL_CLIENT_ECLOSED)
            break;
    }
    assert_int_equal(f->rec.count, want);
}

/* ---- address parsing ---- */

static void test_connect_rejects_bad_addresses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "unix:",
        "localhost",
        "127.0.0.1",
        "agent.sock",
        "localhost:",
        "localhost:0",
        "localhost:65536",
        "localhost:http",
        ":7411",
        "::1:7411",
        "[::1]7411",
        "[::1",
        "tcp:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tl_client *c = NULL;
        char err[256] = "";
        int rc = tl_client_connect(bad[i], NULL, &c, err, sizeof err);
        if (rc != TL_CLIENT_EINVAL)
            fail_msg("address \"%s\": expected EINVAL, got %d (%s)", bad[i], rc, err);
        assert_null(c);
        assert_true(strlen(err) > 0);
    }
}

static void test_connect_rejects_long_path(void **state)
{
    (void)state;
    char address[200];
    memset(address, 'a', sizeof address - 1);
    address[0] = '/';
    address[sizeof address - 1] = '\0';
    struct tl_client *c = NULL;
    char err[256] = "";
    assert_int_equal(tl_client_connect(address, NULL, &c, err, sizeof err), TL_CLIENT_EINVAL);
    assert_non_null(strstr(err, "Unix socket"));
}

static void test_connect_missing_socket_fails(void **state)
{
    (void)state;
    struct tl_client *c = NULL;
    char err[256] = "";
    int rc = tl_client_connect("unix:/nonexistent/twinlane.sock", NULL, &c, err, sizeof err);
    assert_int_equal(rc, TL_CLIENT_EIO);
    assert_non_null(strstr(err, "/nonexistent/twinlane.sock"));
}

static void test_connect_unix_forms(void **state)
{
    (void)state;
    struct fake_agent a;
    fake_agent_listen(&a);

    char prefixed[160];
    snprintf(prefixed, sizeof prefixed, "unix:%s", a.path);
    const char *forms[] = {a.path, prefixed};
    for (size_t i = 0; i < 2; i++) {
        struct tl_client *c = NULL;
        char err[256] = "";
        int rc = tl_client_connect(forms[i], NULL, &c, err, sizeof err);
        if (rc != 0)
            fail_msg("address \"%s\": %s", forms[i], err);
        fake_agent_accept(&a);
        tl_client_close(c);
        fake_agent_close_connection(&a);
    }
    fake_agent_stop(&a);
}

static void test_connect_relative_unix_paths(void **state)
{
    (void)state;
    struct fake_agent a;
    fake_agent_listen(&a);
    char saved_cwd[4096];
    assert_non_null(getcwd(saved_cwd, sizeof saved_cwd));

    /* a.dir is /tmp/test_client.XXXXXX, so from /tmp the socket is under its last part. */
    char from_tmp[128];
    snprintf(from_tmp, sizeof from_tmp, "%.64s/agent.sock", strrchr(a.dir, '/') + 1);
    struct {
        const char *cwd;
        const char *address;
    } cases[] = {
        {a.dir, "./agent.sock"},
        {"/tmp", from_tmp},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(chdir(cases[i].cwd), 0);
        struct tl_client *c = NULL;
        char err[256] = "";
        int rc = tl_client_connect(cases[i].address, NULL, &c, err, sizeof err);
        if (rc != 0)
            fail_msg("address \"%s\" from %s: %s", cases[i].address, cases[i].cwd, err);
        fake_agent_accept(&a);
        tl_client_close(c);
        fake_agent_close_connection(&a);
    }

    assert_int_equal(chdir(saved_cwd), 0);
    fake_agent_stop(&a);
}

/* Listens on the loopback address of family; returns the fd or -1 when the family is absent. */
static int listen_loopback(int family, int *port)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;

    struct sockaddr_storage ss = {0};
    socklen_t len = 0;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof *sin6;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4) < 0) {
        close(fd);
        return -1;
    }
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

static void test_connect_tcp_forms(void **state)
{
    (void)state;
    int port = 0;
    int fd4 = listen_loopback(AF_INET, &port);
    assert_true(fd4 >= 0);

    char plain[64];
    char prefixed[64];
    snprintf(plain, sizeof plain, "127.0.0.1:%d", port);
    snprintf(prefixed, sizeof prefixed, "tcp:127.0.0.1:%d", port);
    const char *forms[] = {plain, prefixed};
    for (size_t i = 0; i < 2; i++) {
        struct tl_client *c = NULL;
        char err[256] = "";
        int rc = tl_client_connect(forms[i], NULL, &c, err, sizeof err);
        if (rc != 0)
            fail_msg("address \"%s\": %s", forms[i], err);
        int server = accept(fd4, NULL, NULL);
        assert_true(server >= 0);
        close(server);
        tl_client_close(c);
    }
    close(fd4);

    int fd6 = listen_loopback(AF_INET6, &port);
    if (fd6 < 0)
        return; /* no IPv6 on this host */
    char bracketed[64];
    snprintf(bracketed, sizeof bracketed, "[::1]:%d", port);
    struct tl_client *c = NULL;
    char err[256] = "";
    int rc = tl_client_connect(bracketed, NULL, &c, err, sizeof err);
    if (rc != 0)
        fail_msg("address \"%s\": %s", bracketed, err);
    tl_client_close(c);
    close(fd6);
}

static void test_connect_error_brackets_ipv6(void **state)
{
    (void)state;
    /* A port that was just free on ::1 (or on 127.0.0.1 without IPv6) refuses the connection. */
    int port = 0;
    int fd = listen_loopback(AF_INET6, &port);
    if (fd < 0)
        fd = listen_loopback(AF_INET, &port);
    assert_true(fd >= 0);
    close(fd);

    char address[64];
    char expected[64];
    snprintf(address, sizeof address, "tcp:[::1]:%d", port);
    snprintf(expected, sizeof expected, "at [::1]:%d:", port);
    struct tl_client *c = NULL;
    char err[256] = "";
    int rc = tl_client_connect(address, NULL, &c, err, sizeof err);
    assert_true(rc < 0);
    if (!strstr(err, expected))
        fail_msg("expected \"%s\" in the message: %s", expected, err);
}

/* ---- sending ---- */

static void test_send_rejects_invalid_events(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    char err[256] = "";

    struct tl_client_event ev = {.topic = "events"};
    assert_int_equal(tl_client_send(f->client, &ev, 0, NULL, err, sizeof err), TL_CLIENT_EINVAL);

    struct tl_client_event no_topic = {.value = "x", .value_len = 1};
    assert_int_equal(tl_client_send(f->client, &no_topic, 1, NULL, err, sizeof err),
                     TL_CLIENT_EINVAL);

    struct tl_client_header header = {.value = "v", .value_len = 1};
    struct tl_client_event no_header_name = {.topic = "events", .headers = &header,
                                             .header_count = 1};
    assert_int_equal(tl_client_send(f->client, &no_header_name, 1, NULL, err, sizeof err),
                     TL_CLIENT_EINVAL);
    assert_int_equal(tl_client_inflight(f->client), 0);
    fixture_stop(f);
}

static void test_send_rejects_oversized_request(void **state)
{
    (void)state;
    struct tl_client_options opts = {.max_request_bytes = 100};
    struct fixture *f = fixture_start(&opts);
    char value[200] = {0};
    struct tl_client_event ev = {.topic = "events", .value = value, .value_len = sizeof value};
    char err[256] = "";

    assert_int_equal(tl_client_send(f->client, &ev, 1, NULL, err, sizeof err), TL_CLIENT_ETOOBIG);
    assert_non_null(strstr(err, "max_request_bytes"));
    assert_int_equal(tl_client_inflight(f->client), 0);
    fixture_stop(f);
}

static void test_send_encodes_event_fields(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    struct tl_client_header headers[] = {{.name = "source", .value = "zeek", .value_len = 4}};
    struct tl_client_event ev = {
        .topic = "conn",
        .key = "k1",
        .key_len = 2,
        .has_key = true,
        .value = "v1",
        .value_len = 2,
        .headers = headers,
        .header_count = 1,
    };
    uint64_t batch_id = 0;
    assert_int_equal(tl_client_send(f->client, &ev, 1, &batch_id, NULL, 0), 0);

    Twinlane__ProduceRequest *request = fake_agent_read(&f->agent);
    assert_non_null(request);
    assert_int_equal(request->batch_id, batch_id);
    assert_int_equal(request->n_events, 1);
    Twinlane__Event *sent = request->events[0];
    assert_string_equal(sent->topic, "conn");
    assert_true(sent->has_key);
    assert_memory_equal(sent->key.data, "k1", 2);
    assert_memory_equal(sent->value.data, "v1", 2);
    assert_int_equal(sent->n_headers, 1);
    assert_string_equal(sent->headers[0]->name, "source");
    assert_memory_equal(sent->headers[0]->value.data, "zeek", 4);
    twinlane__produce_request__free_unpacked(request, NULL);

    respond_batch(f->agent.fd, batch_id, 1, NULL, NULL);
    poll_until(f, 1);
    fixture_stop(f);
}

/* ---- responses ---- */

static void test_pipelined_batches_out_of_order(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    int tags[3][2];
    uint64_t ids[3];
    for (size_t b = 0; b < 3; b++)
        ids[b] = send_events(f->client, 2, tags[b]);
    assert_int_equal(tl_client_inflight(f->client), 6);

    /* Every request reaches the agent before any response. */
    for (size_t b = 0; b < 3; b++) {
        Twinlane__ProduceRequest *request = fake_agent_read(&f->agent);
        assert_non_null(request);
        assert_int_equal(request->batch_id, ids[b]);
        twinlane__produce_request__free_unpacked(request, NULL);
    }

    respond_batch(f->agent.fd, ids[2], 2, NULL, NULL);
    respond_batch(f->agent.fd, ids[0], 2, NULL, NULL);
    respond_batch(f->agent.fd, ids[1], 2, NULL, NULL);
    poll_until(f, 6);

    static const size_t order[] = {2, 0, 1};
    for (size_t k = 0; k < 3; k++) {
        size_t b = order[k];
        for (size_t i = 0; i < 2; i++) {
            const struct recorded *r = &f->rec.results[k * 2 + i];
            assert_int_equal(r->status, TL_CLIENT_OK);
            assert_int_equal(r->batch_id, ids[b]);
            assert_int_equal(r->index, i);
            assert_ptr_equal(r->opaque, &tags[b][i]);
            assert_int_equal(r->seq, ids[b] * 1000 + i);
            assert_int_equal(r->partition, (int32_t)i);
            assert_int_equal(r->region_count, 2);
            assert_string_equal(r->first_region, "east");
        }
    }
    assert_int_equal(tl_client_inflight(f->client), 0);
    assert_int_equal(tl_client_flush(f->client, 0), 0);
    fixture_stop(f);
}

static void test_per_event_statuses(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    uint64_t id = send_events(f->client, 3, NULL);
    static const Twinlane__Status statuses[] = {
        TWINLANE__STATUS__OK, TWINLANE__STATUS__RETRYABLE, TWINLANE__STATUS__UNKNOWN_TOPIC};
    respond_batch(f->agent.fd, id, 3, statuses, "reason");
    poll_until(f, 3);

    assert_int_equal(f->rec.results[0].status, TL_CLIENT_OK);
    assert_int_equal(f->rec.results[1].status, TL_CLIENT_RETRYABLE);
    assert_int_equal(f->rec.results[2].status, TL_CLIENT_UNKNOWN_TOPIC);
    assert_string_equal(f->rec.results[2].message, "reason");
    fixture_stop(f);
}

static void test_spooled_result_field(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    uint64_t id = send_events(f->client, 2, NULL);

    /* Event 0 is acknowledged from the agent's WAL alone; event 1 by the regions. */
    Twinlane__EventResult results[2];
    Twinlane__EventResult *ptrs[2] = {&results[0], &results[1]};
    for (size_t i = 0; i < 2; i++) {
        twinlane__event_result__init(&results[i]);
        results[i].status = TWINLANE__STATUS__OK;
    }
    results[0].has_spooled = true;
    results[0].spooled = true;
    Twinlane__ProduceResponse response = TWINLANE__PRODUCE_RESPONSE__INIT;
    response.batch_id = id;
    response.n_results = 2;
    response.results = ptrs;
    write_response(f->agent.fd, &response);
    poll_until(f, 2);

    assert_int_equal(f->rec.results[0].status, TL_CLIENT_OK);
    assert_true(f->rec.results[0].spooled);
    assert_int_equal(f->rec.results[1].status, TL_CLIENT_OK);
    assert_false(f->rec.results[1].spooled);
    fixture_stop(f);
}

static void test_batch_error_applies_to_all(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    int tags[4];
    uint64_t id = send_events(f->client, 4, tags);
    respond_batch_error(f->agent.fd, id, TWINLANE__STATUS__INVALID, "malformed request");
    poll_until(f, 4);

    for (size_t i = 0; i < 4; i++) {
        const struct recorded *r = &f->rec.results[i];
        assert_int_equal(r->status, TL_CLIENT_INVALID);
        assert_string_equal(r->message, "malformed request");
        assert_int_equal(r->partition, -1);
        assert_int_equal(r->seq, 0);
        assert_ptr_equal(r->opaque, &tags[i]);
    }
    fixture_stop(f);
}

/* Checks that every tag got exactly one result. */
static void assert_each_tag_once(const struct recorder *rec, int *tags, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        size_t seen = 0;
        for (size_t k = 0; k < rec->count; k++)
            seen += rec->results[k].opaque == &tags[i];
        if (seen != 1)
            fail_msg("event %zu got %zu results, expected 1", i, seen);
    }
}

static void test_close_with_inflight_loses_events(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    int tags[3][5];
    uint64_t ids[3];
    for (size_t b = 0; b < 3; b++)
        ids[b] = send_events(f->client, 5, tags[b]);

    respond_batch(f->agent.fd, ids[1], 5, NULL, NULL);
    fake_agent_close_connection(&f->agent);
    poll_until(f, 15);

    assert_each_tag_once(&f->rec, &tags[0][0], 15);
    size_t lost = 0;
    for (size_t k = 0; k < f->rec.count; k++) {
        const struct recorded *r = &f->rec.results[k];
        if (r->status == TL_CLIENT_CONNECTION_LOST) {
            lost++;
            assert_true(r->batch_id != ids[1]);
        } else {
            assert_int_equal(r->status, TL_CLIENT_OK);
            assert_int_equal(r->batch_id, ids[1]);
        }
    }
    assert_int_equal(lost, 10);
    assert_int_equal(tl_client_inflight(f->client), 0);
    /* The agent closed with requests unread, so the client may see a reset instead of EOF. */
    assert_non_null(strstr(tl_client_last_error(f->client), "the agent"));

    /* Later calls report the closed connection and deliver nothing twice. */
    assert_int_equal(tl_client_poll(f->client, 0), TL_CLIENT_ECLOSED);
    assert_int_equal(tl_client_flush(f->client, 0), TL_CLIENT_ECLOSED);
    struct tl_client_event ev = {.topic = "events"};
    char err[256] = "";
    assert_int_equal(tl_client_send(f->client, &ev, 1, NULL, err, sizeof err), TL_CLIENT_ECLOSED);
    assert_int_equal(f->rec.count, 15);
    fixture_stop(f);
}

static void test_close_before_answer_names_causes(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    int tags[2];
    send_events(f->client, 2, tags);

    /* What the agent does at listen.max_connections: accept, then close without a word. */
    fake_agent_close_connection(&f->agent);
    poll_until(f, 2);

    assert_int_equal(f->rec.results[0].status, TL_CLIENT_CONNECTION_LOST);
    const char *error = tl_client_last_error(f->client);
    if (!strstr(error, "before answering"))
        fail_msg("expected \"before answering\" in: %s", error);
    if (!strstr(error, "listen.max_connections"))
        fail_msg("expected \"listen.max_connections\" in: %s", error);
    fixture_stop(f);
}

static void test_client_close_loses_events(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    int tags[3];
    send_events(f->client, 3, tags);

    tl_client_close(f->client);
    f->client = NULL;
    assert_int_equal(f->rec.count, 3);
    assert_each_tag_once(&f->rec, tags, 3);
    assert_int_equal(f->rec.results[0].status, TL_CLIENT_CONNECTION_LOST);
    fixture_stop(f);
}

static void test_oversized_response_closes(void **state)
{
    (void)state;
    struct tl_client_options opts = {.max_response_bytes = 1024};
    struct fixture *f = fixture_start(&opts);
    int tags[2];
    send_events(f->client, 2, tags);

    /* Declare a 2048-byte frame; the client must stop at the header. */
    static const uint8_t header[4] = {0, 0, 8, 0};
    write_all(f->agent.fd, header, sizeof header);
    poll_until(f, 2);

    assert_int_equal(f->rec.results[0].status, TL_CLIENT_CONNECTION_LOST);
    assert_int_equal(f->rec.results[1].status, TL_CLIENT_CONNECTION_LOST);
    assert_non_null(strstr(tl_client_last_error(f->client), "max_response_bytes"));
    assert_int_equal(tl_client_poll(f->client, 0), TL_CLIENT_ECLOSED);
    fixture_stop(f);
}

static void test_unknown_batch_id_closes(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    uint64_t id = send_events(f->client, 1, NULL);
    respond_batch(f->agent.fd, id + 100, 1, NULL, NULL);
    poll_until(f, 1);

    assert_int_equal(f->rec.results[0].status, TL_CLIENT_CONNECTION_LOST);
    assert_non_null(strstr(tl_client_last_error(f->client), "protocol error"));
    fixture_stop(f);
}

static void test_result_count_mismatch_closes(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    uint64_t id = send_events(f->client, 3, NULL);
    respond_batch(f->agent.fd, id, 2, NULL, NULL);
    poll_until(f, 3);

    assert_int_equal(f->rec.results[0].status, TL_CLIENT_CONNECTION_LOST);
    assert_non_null(strstr(tl_client_last_error(f->client), "2 results for 3 events"));
    fixture_stop(f);
}

static void test_garbage_response_closes(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    send_events(f->client, 1, NULL);
    static const uint8_t garbage[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
    write_all(f->agent.fd, garbage, sizeof garbage);
    poll_until(f, 1);

    assert_int_equal(f->rec.results[0].status, TL_CLIENT_CONNECTION_LOST);
    assert_non_null(strstr(tl_client_last_error(f->client), "ProduceResponse"));
    fixture_stop(f);
}

static void test_send_from_callback_rejected(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    f->rec.client = f->client;
    uint64_t id = send_events(f->client, 1, NULL);
    respond_batch(f->agent.fd, id, 1, NULL, NULL);
    poll_until(f, 1);

    assert_int_equal(f->rec.send_rc_in_callback, TL_CLIENT_EINVAL);
    assert_int_equal(tl_client_inflight(f->client), 0);
    f->rec.client = NULL;
    fixture_stop(f);
}

static void test_poll_without_inflight_returns(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    assert_int_equal(tl_client_poll(f->client, -1), 0);
    assert_int_equal(tl_client_flush(f->client, -1), 0);
    fixture_stop(f);
}

static void test_flush_times_out(void **state)
{
    (void)state;
    struct fixture *f = fixture_start(NULL);
    send_events(f->client, 1, NULL);
    assert_int_equal(tl_client_flush(f->client, 50), TL_CLIENT_ETIMEDOUT);
    assert_int_equal(tl_client_inflight(f->client), 1);
    fixture_stop(f);
}

/* ---- back-pressure ---- */

#define FLOOD_BATCHES 2000
#define FLOOD_MESSAGE_BYTES 4096

/*
 * Responds to every request with a large message, writing with blocking writes. If the client
 * stopped reading while it waits for queue room, these writes would block and the agent would
 * stop reading too: a deadlock the test would hit as a timeout.
 */
static void *flood_agent(void *arg)
{
    struct fake_agent *a = arg;
    char *message = tl_xmalloc(FLOOD_MESSAGE_BYTES);
    memset(message, 'm', FLOOD_MESSAGE_BYTES - 1);
    message[FLOOD_MESSAGE_BYTES - 1] = '\0';
    static const Twinlane__Status statuses[] = {TWINLANE__STATUS__OK};

    for (;;) {
        Twinlane__ProduceRequest *request = fake_agent_read(a);
        if (!request)
            break;
        respond_batch(a->fd, request->batch_id, request->n_events, statuses, message);
        twinlane__produce_request__free_unpacked(request, NULL);
    }
    free(message);
    return NULL;
}

static void test_send_reads_while_blocked(void **state)
{
    (void)state;
    struct tl_client_options opts = {.max_queued_bytes = 8192};
    struct fixture *f = fixture_start(&opts);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, flood_agent, &f->agent), 0);

    char value[2048];
    memset(value, 'v', sizeof value);
    for (size_t i = 0; i < FLOOD_BATCHES; i++) {
        struct tl_client_event ev = {.topic = "events", .value = value, .value_len = sizeof value};
        char err[256] = "";
        int rc = tl_client_send(f->client, &ev, 1, NULL, err, sizeof err);
        if (rc != 0)
            fail_msg("send %zu failed: %s", i, err);
    }
    assert_int_equal(tl_client_flush(f->client, 10000), 0);
    assert_int_equal(f->rec.count, FLOOD_BATCHES);
    for (size_t k = 0; k < f->rec.count; k++)
        assert_int_equal(f->rec.results[k].status, TL_CLIENT_OK);

    tl_client_close(f->client);
    f->client = NULL;
    pthread_join(thread, NULL);
    fixture_stop(f);
}

static void test_send_times_out_when_stalled(void **state)
{
    (void)state;
    struct tl_client_options opts = {.max_queued_bytes = 65536, .send_timeout_ms = 50};
    struct fixture *f = fixture_start(&opts);
    char *value = tl_xcalloc(1, 65536);
    struct tl_client_event ev = {.topic = "events", .value = value, .value_len = 65536};

    /* The agent reads nothing, so socket buffers fill and then the client's queue does. */
    int rc = 0;
    size_t sent = 0;
    char err[256] = "";
    for (; sent < 1000 && rc == 0; sent++)
        rc = tl_client_send(f->client, &ev, 1, NULL, err, sizeof err);
    assert_int_equal(rc, TL_CLIENT_ETIMEDOUT);
    assert_int_equal(tl_client_inflight(f->client), sent - 1);
    free(value);
    fixture_stop(f);
}

/* ---- names ---- */

static void test_status_and_error_names(void **state)
{
    (void)state;
    assert_string_equal(tl_client_status_name(TL_CLIENT_OK), "OK");
    assert_string_equal(tl_client_status_name(TL_CLIENT_CONNECTION_LOST), "CONNECTION_LOST");
    assert_string_equal(tl_client_status_name(42), "UNKNOWN");
    assert_string_equal(tl_client_strerror(TL_CLIENT_ECLOSED), "connection closed");
    assert_string_equal(tl_client_strerror(TL_CLIENT_ETIMEDOUT), "timed out");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_rejects_bad_addresses),
        cmocka_unit_test(test_connect_rejects_long_path),
        cmocka_unit_test(test_connect_missing_socket_fails),
        cmocka_unit_test(test_connect_unix_forms),
        cmocka_unit_test(test_connect_tcp_forms),
        cmocka_unit_test(test_connect_relative_unix_paths),
        cmocka_unit_test(test_connect_error_brackets_ipv6),
        cmocka_unit_test(test_send_rejects_invalid_events),
        cmocka_unit_test(test_send_rejects_oversized_request),
        cmocka_unit_test(test_send_encodes_event_fields),
        cmocka_unit_test(test_pipelined_batches_out_of_order),
        cmocka_unit_test(test_per_event_statuses),
        cmocka_unit_test(test_spooled_result_field),
        cmocka_unit_test(test_batch_error_applies_to_all),
        cmocka_unit_test(test_close_with_inflight_loses_events),
        cmocka_unit_test(test_close_before_answer_names_causes),
        cmocka_unit_test(test_client_close_loses_events),
        cmocka_unit_test(test_oversized_response_closes),
        cmocka_unit_test(test_unknown_batch_id_closes),
        cmocka_unit_test(test_result_count_mismatch_closes),
        cmocka_unit_test(test_garbage_response_closes),
        cmocka_unit_test(test_send_from_callback_rejected),
        cmocka_unit_test(test_poll_without_inflight_returns),
        cmocka_unit_test(test_flush_times_out),
        cmocka_unit_test(test_send_reads_while_blocked),
        cmocka_unit_test(test_send_times_out_when_stalled),
        cmocka_unit_test(test_status_and_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
