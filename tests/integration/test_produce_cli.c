/*
 * `twinlane produce` as a user runs it: exit codes and messages for bad command lines, bad
 * input, an agent that refuses the connection, and events the agent acknowledges from its
 * write-ahead log alone (spooled).
 *
 * Command-line checks run the binary without an agent. The spooled and read-error cases use
 * a fake agent on a thread of this test. It returns OK for every event, with spooled set when
 * configured, so the outcome does not depend on region health. The rejected-connection case
 * runs the real agent with listen.max_connections = 1 while another client keeps the only
 * connection open.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "frame.h"
#include "support.h"
#include "twinlane/client.h"

static const char *const CONFIG =
    "agent = { id = \"it-produce\"; home_region = \"east\"; data_dir = \"@DIR@/data\"; };\n"
    "listen = { max_connections = 1; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"embedded\"; embedded_brokers = 1; },\n"
    "            { name = \"west\"; bootstrap = \"embedded\"; embedded_brokers = 1; } );\n"
    "topics = ( { name = \"events\"; partitions = 3; } );\n";

/* Output files of one run of the command. */
struct run {
    char out[320];
    char err[320];
    char *out_text;
    char *err_text;
};

/* Runs `twinlane produce` with args (NULL-terminated) and reads its stdout and stderr. */
static int run_produce(const char *dir, struct run *r, const char *const args[])
{
    char *argv[32] = {TL_CLI_BIN, "produce"};
    size_t argc = 2;
    for (size_t i = 0; args[i]; i++) {
        assert_true(argc < sizeof argv / sizeof argv[0] - 1);
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;

    snprintf(r->out, sizeof r->out, "%s/produce.out", dir);
    snprintf(r->err, sizeof r->err, "%s/produce.err", dir);
    int rc = it_run(argv, r->out, r->err, 120);
    r->out_text = it_read_file(r->out, NULL);
    r->err_text = it_read_file(r->err, NULL);
    assert_non_null(r->out_text);
    assert_non_null(r->err_text);
    return rc;
}

static void run_free(struct run *r)
{
    free(r->out_text);
    free(r->err_text);
}

/* Fails with the command's stderr unless it contains text. */
static void assert_stderr_has(const struct run *r, const char *text)
{
    if (!strstr(r->err_text, text))
        fail_msg("expected \"%s\" on stderr of twinlane produce, got:\n%s", text, r->err_text);
}

static void assert_exit(const struct run *r, int rc, int expected)
{
    if (rc != expected)
        fail_msg("twinlane produce exited %d, expected %d; stderr:\n%s", rc, expected,
                 r->err_text);
}

static void write_lines(const char *path, int count)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < count; i++)
        fprintf(f, "line %d\n", i);
    fclose(f);
}

/* ---- fake agent ---- */

struct fake_agent {
    char dir[256];
    char socket[320];
    int listen_fd;
    bool spooled; /* set spooled in every event result */
    atomic_bool stop;
    pthread_t thread;
};

/* Sends a response to every request on fd until the client closes it or the agent stops. */
static void fake_agent_serve(struct fake_agent *a, int fd)
{
    struct tl_frame_reader reader;
    tl_frame_reader_init(&reader, 64 << 20);

    while (!atomic_load(&a->stop)) {
        const uint8_t *payload = NULL;
        size_t len = 0;
        char err[256];
        int rc = tl_frame_reader_next(&reader, &payload, &len, err, sizeof err);
        if (rc < 0)
            break;
        if (rc == 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, 100) <= 0)
                continue;
            rc = tl_frame_reader_fill(&reader, fd);
            if (rc != TL_EAGAIN && rc <= 0)
                break;
            continue;
        }

        Twinlane__ProduceRequest *request = NULL;
        if (tl_frame_decode_request(payload, len, &request, err, sizeof err) < 0)
            break;
        size_t count = request->n_events;
        Twinlane__EventResult *results = calloc(count, sizeof *results);
        Twinlane__EventResult **ptrs = calloc(count, sizeof *ptrs);
        for (size_t i = 0; i < count; i++) {
            twinlane__event_result__init(&results[i]);
            results[i].status = TWINLANE__STATUS__OK;
            results[i].has_spooled = a->spooled;
            results[i].spooled = a->spooled;
            ptrs[i] = &results[i];
        }
        Twinlane__ProduceResponse response = TWINLANE__PRODUCE_RESPONSE__INIT;
        response.batch_id = request->batch_id;
        response.n_results = count;
        response.results = ptrs;

        struct tl_buf out;
        tl_buf_init(&out);
        tl_frame_append(&out, &response.base);
        ssize_t written = send(fd, out.data, out.len, MSG_NOSIGNAL);
        bool complete = written >= 0 && (size_t)written == out.len;
        tl_buf_free(&out);
        free(results);
        free(ptrs);
        twinlane__produce_request__free_unpacked(request, NULL);
        /* The responses here are a few bytes, so a short write means the client is gone. */
        if (!complete)
            break;
    }
    tl_frame_reader_free(&reader);
}

static void *fake_agent_main(void *arg)
{
    struct fake_agent *a = arg;
    while (!atomic_load(&a->stop)) {
        struct pollfd pfd = {.fd = a->listen_fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int fd = accept(a->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_agent_serve(a, fd);
        close(fd);
    }
    return NULL;
}

static void fake_agent_start(struct fake_agent *a, const char *name, bool spooled)
{
    memset(a, 0, sizeof *a);
    it_make_dir(name, a->dir, sizeof a->dir);
    snprintf(a->socket, sizeof a->socket, "%s/agent.sock", a->dir);
    a->spooled = spooled;

    a->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(a->listen_fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    assert_true(strlen(a->socket) < sizeof sun.sun_path);
    strcpy(sun.sun_path, a->socket);
    assert_int_equal(bind(a->listen_fd, (struct sockaddr *)&sun, sizeof sun), 0);
    assert_int_equal(listen(a->listen_fd, 4), 0);
    assert_int_equal(pthread_create(&a->thread, NULL, fake_agent_main, a), 0);
}

static void fake_agent_stop(struct fake_agent *a)
{
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);
    close(a->listen_fd);
    unlink(a->socket);
}

/* ---- command line and input ---- */

static void input_directory_exits_usage(void **state)
{
    (void)state;
    char dir[256];
    it_make_dir("produce-dir", dir, sizeof dir);
    struct run r;

    /* No agent listens here: the input check must come first and decide the exit code. */
    const char *args[] = {"--agent", "/nonexistent/agent.sock", "--topic", "events", "--file",
                          dir, NULL};
    int rc = run_produce(dir, &r, args);
    assert_exit(&r, rc, 2);
    assert_stderr_has(&r, "is a directory");
    run_free(&r);
}

static void read_error_exits_one(void **state)
{
    (void)state;
    /* Reading /proc/self/mem at offset 0 fails with EIO, because address 0 is not mapped. */
    int fd = open("/proc/self/mem", O_RDONLY);
    char byte;
    bool fails = fd >= 0 && read(fd, &byte, 1) < 0 && errno == EIO;
    if (fd >= 0)
        close(fd);
    if (!fails)
        skip();

    struct fake_agent agent;
    fake_agent_start(&agent, "produce-read-error", false);
    struct run r;
    const char *args[] = {"--agent", agent.socket, "--topic", "events", "--file",
                          "/proc/self/mem", NULL};
    int rc = run_produce(agent.dir, &r, args);
    fake_agent_stop(&agent);

    assert_exit(&r, rc, 1);
    assert_stderr_has(&r, "reading /proc/self/mem failed");
    run_free(&r);
}

static void address_without_port_exits_usage(void **state)
{
    (void)state;
    char dir[256];
    it_make_dir("produce-address", dir, sizeof dir);

    /* Only loopback names here: a regression must not send anything off this host. */
    static const char *const addresses[] = {"127.0.0.1", "localhost", "agent.sock"};
    for (size_t i = 0; i < sizeof addresses / sizeof addresses[0]; i++) {
        struct run r;
        const char *args[] = {"--agent", addresses[i], "--topic", "events", NULL};
        int rc = run_produce(dir, &r, args);
        assert_exit(&r, rc, 2);
        assert_stderr_has(&r, "no port");
        run_free(&r);
    }
}

static void option_as_value_rejected(void **state)
{
    (void)state;
    char dir[256];
    it_make_dir("produce-options", dir, sizeof dir);
    struct run r;

    const char *args[] = {"--topic", "events", "--key-json", "--file", "input.jsonl", NULL};
    int rc = run_produce(dir, &r, args);
    assert_exit(&r, rc, 2);
    assert_stderr_has(&r, "--key-json needs a value but got \"--file\"");
    run_free(&r);
}

static void bad_header_names_rejected(void **state)
{
    (void)state;
    char dir[256];
    it_make_dir("produce-headers", dir, sizeof dir);

    static const struct {
        const char *header;
        const char *message;
    } cases[] = {
        {"twinlane-id=x", "reserved"},
        {"twinlane-origin=east", "reserved"},
        {"=x", "name is empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        const char *args[] = {"--agent", "/nonexistent/agent.sock", "--topic", "events",
                              "--header", cases[i].header, NULL};
        int rc = run_produce(dir, &r, args);
        assert_exit(&r, rc, 2);
        assert_stderr_has(&r, cases[i].message);
        run_free(&r);
    }
}

/* ---- results ---- */

static void spooled_events_counted(void **state)
{
    (void)state;
    struct fake_agent agent;
    fake_agent_start(&agent, "produce-spooled", true);
    char input[320];
    snprintf(input, sizeof input, "%s/input.txt", agent.dir);
    write_lines(input, 5);

    struct run json;
    const char *json_args[] = {"--agent", agent.socket, "--topic", "events", "--file", input,
                               "--json", NULL};
    int rc = run_produce(agent.dir, &json, json_args);
    assert_exit(&json, rc, 0);
    if (!strstr(json.out_text, "\"acknowledged\":5") || !strstr(json.out_text, "\"spooled\":5"))
        fail_msg("expected 5 acknowledged and 5 spooled in the summary: %s", json.out_text);
    run_free(&json);

    struct run text;
    const char *text_args[] = {"--agent", agent.socket, "--topic", "events", "--file", input,
                               NULL};
    rc = run_produce(agent.dir, &text, text_args);
    assert_exit(&text, rc, 0);
    assert_stderr_has(&text, "spooled: 5");
    run_free(&text);

    fake_agent_stop(&agent);
}

static void full_agent_exits_unreachable(void **state)
{
    (void)state;
    static const char *const embedded[2] = {"east", "west"};
    struct it_agent agent;
    it_agent_start(&agent, "produce-full", CONFIG, embedded);

    /* Take the only connection, and wait for an answer so the agent surely counts it. */
    struct tl_client *holder = NULL;
    char err[512] = "";
    if (tl_client_connect(agent.socket, NULL, &holder, err, sizeof err) < 0)
        fail_msg("connect: %s", err);
    struct tl_client_event ev = {.topic = "events", .value = "x", .value_len = 1};
    assert_int_equal(tl_client_send(holder, &ev, 1, NULL, err, sizeof err), 0);
    assert_int_equal(tl_client_flush(holder, 30000), 0);

    char input[320];
    snprintf(input, sizeof input, "%s/input.txt", agent.dir);
    write_lines(input, 3);
    struct run r;
    const char *args[] = {"--agent", agent.socket, "--topic", "events", "--file", input, NULL};
    int rc = run_produce(agent.dir, &r, args);
    if (rc != 3)
        it_agent_dump_log(&agent);
    assert_exit(&r, rc, 3);
    assert_stderr_has(&r, "before answering");
    assert_stderr_has(&r, "listen.max_connections");

    tl_client_close(holder);
    assert_int_equal(it_agent_stop(&agent), 0);
    run_free(&r);
}

int main(void)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(input_directory_exits_usage),
        cmocka_unit_test(read_error_exits_one),
        cmocka_unit_test(address_without_port_exits_usage),
        cmocka_unit_test(option_as_value_rejected),
        cmocka_unit_test(bad_header_names_rejected),
        cmocka_unit_test(spooled_events_counted),
        cmocka_unit_test(full_agent_exits_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
