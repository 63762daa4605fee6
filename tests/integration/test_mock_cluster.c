/*
 * twinlane-mock-cluster as a separate process. The tests check its bootstrap line and file,
 * kcat producing and consuming through it, and faults injected over the control socket
 * (broker down and up, pushed Produce errors, round-trip time). They also send garbage and too
 * many clients to the control socket, and check a clean exit on SIGTERM.
 *
 * kcat must be on PATH (scripts/setup.sh installs it); without it the kcat tests are skipped.
 * kcat runs with message.send.max.retries=0 where a test expects a pushed error to reach it,
 * because librdkafka otherwise retries retriable errors until they are used up.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "support.h"

#define START_TIMEOUT_MS 30000
#define KCAT_TIMEOUT_S 60
/* Clients the control server accepts at once (MAX_CLIENTS in chaos/mock_control.c). */
#define CONTROL_MAX_CLIENTS 32

struct mock {
    pid_t pid;
    char dir[256];
    char bootstrap[512];
    char bootstrap_file[320];
    char control[320];
    char log[320];
};

struct control_conn {
    int fd;
    char buf[65536];
    size_t len;
};

static char kcat_path[512];

/* Finds kcat on PATH; returns false when it is missing. */
static bool find_kcat(void)
{
    const char *path = getenv("PATH");
    char copy[4096];
    char *save = NULL;

    snprintf(copy, sizeof(copy), "%s", path ? path : "/usr/bin:/bin");
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(kcat_path, sizeof(kcat_path), "%s/kcat", dir);
        if (access(kcat_path, X_OK) == 0)
            return true;
    }
    return false;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void dump_log(const struct mock *m)
{
    char *text = it_read_file(m->log, NULL);
    fprintf(stderr, "--- twinlane-mock-cluster log (%s) ---\n%s--- end of log ---\n", m->log,
            text ? text : "(unreadable)\n");
    free(text);
}

/* Reads one line from fd into out (without the newline); false on timeout or end of file. */
static bool read_pipe_line(int fd, char *out, size_t outsize, int timeout_ms)
{
    size_t len = 0;
    int64_t deadline = now_ms() + timeout_ms;

    while (len + 1 < outsize) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return false;
        ssize_t n = read(fd, out + len, 1);
        if (n <= 0)
            return false;
        if (out[len] == '\n') {
            out[len] = '\0';
            return true;
        }
        len++;
    }
    return false;
}

/* Makes a fresh directory for one instance and fills in the paths inside it. */
static void mock_prepare(struct mock *m, const char *name)
{
    it_make_dir(name, m->dir, sizeof(m->dir));
    snprintf(m->bootstrap_file, sizeof(m->bootstrap_file), "%s/bootstrap", m->dir);
    snprintf(m->control, sizeof(m->control), "%s/control.sock", m->dir);
    snprintf(m->log, sizeof(m->log), "%s/mock.log", m->dir);
}

/*
 * Runs the program for a prepared instance with extra arguments (NULL-terminated) and waits
 * for its bootstrap line.
 */
static void mock_launch(struct mock *m, const char *name, va_list ap)
{
    char *argv[32];
    int argc = 0;

    argv[argc++] = TL_MOCK_CLUSTER_BIN;
    argv[argc++] = "--name";
    argv[argc++] = (char *)name;
    argv[argc++] = "--bootstrap-file";
    argv[argc++] = m->bootstrap_file;
    argv[argc++] = "--control";
    argv[argc++] = m->control;
    for (char *arg = va_arg(ap, char *); arg && argc < 31; arg = va_arg(ap, char *))
        argv[argc++] = arg;
    argv[argc] = NULL;

    int out[2];
    assert_int_equal(pipe(out), 0);
    m->pid = fork();
    assert_true(m->pid >= 0);
    if (m->pid == 0) {
        it_child_dies_with_parent();
        int log = open(m->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out[1], STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        close(out[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);

    bool got_line = read_pipe_line(out[0], m->bootstrap, sizeof(m->bootstrap),
                                   START_TIMEOUT_MS);
    close(out[0]);
    if (!got_line) {
        dump_log(m);
        fail_msg("twinlane-mock-cluster printed no bootstrap line within %d ms",
                 START_TIMEOUT_MS);
    }
}

/* Prepares an instance and starts it with extra arguments (NULL-terminated). */
static void mock_start(struct mock *m, const char *name, ...)
{
    va_list ap;

    mock_prepare(m, name);
    va_start(ap, name);
    mock_launch(m, name, ap);
    va_end(ap);
}

/* Starts an already prepared instance with extra arguments (NULL-terminated). */
static void mock_start_prepared(struct mock *m, const char *name, ...)
{
    va_list ap;

    va_start(ap, name);
    mock_launch(m, name, ap);
    va_end(ap);
}

/* Sends SIGTERM and returns the exit status, or 128 + signal; fails after 30 s. */
static int mock_stop(struct mock *m)
{
    int status;

    kill(m->pid, SIGTERM);
    for (int i = 0; i < 3000; i++) {
        pid_t done = waitpid(m->pid, &status, WNOHANG);
        if (done == m->pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(m->pid, SIGKILL);
    waitpid(m->pid, &status, 0);
    dump_log(m);
    fail_msg("twinlane-mock-cluster did not exit within 30 s of SIGTERM");
    return -1;
}

/* Runs the program to completion with the given arguments; returns its exit status. */
static int run_mock_cluster(const char *dir, char *const args[])
{
    char *argv[16] = {TL_MOCK_CLUSTER_BIN};
    char err_path[320];

    for (int i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    snprintf(err_path, sizeof(err_path), "%s/run.err", dir);
    return it_run(argv, NULL, err_path, 30);
}

static void control_connect(struct control_conn *c, const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);

    c->len = 0;
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void control_send(struct control_conn *c, const void *data, size_t len)
{
    assert_int_equal(send(c->fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads one reply line into out (without the newline); false at end of stream or timeout. */
static bool control_read_line(struct control_conn *c, char *out, size_t outsize)
{
    for (;;) {
        char *newline = memchr(c->buf, '\n', c->len);
        if (newline) {
            size_t line_len = (size_t)(newline - c->buf);
            snprintf(out, outsize, "%.*s", (int)line_len, c->buf);
            memmove(c->buf, newline + 1, c->len - line_len - 1);
            c->len -= line_len + 1;
            return true;
        }
        if (c->len == sizeof(c->buf))
            return false;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n <= 0)
            return false;
        c->len += (size_t)n;
    }
}

/* Sends one command line and returns its reply in out. */
static void control_command(struct control_conn *c, const char *command, char *out,
                            size_t outsize)
{
    control_send(c, command, strlen(command));
    control_send(c, "\n", 1);
    if (!control_read_line(c, out, outsize))
        fail_msg("no reply to control command '%s'", command);
}

/* Opens a connection, runs one command, and checks that the reply is "ok". */
static void control_ok(const struct mock *m, const char *command)
{
    struct control_conn c;
    char reply[2048];

    control_connect(&c, m->control);
    control_command(&c, command, reply, sizeof(reply));
    close(c.fd);
    if (strcmp(reply, "ok") != 0)
        fail_msg("control command '%s' got '%s'", command, reply);
}

/* Writes lines to a file and produces each as one message with kcat; returns its status. */
static int kcat_produce(const struct mock *m, const char *topic, const char *lines,
                        const char *extra_property)
{
    char input[320];
    char err_path[320];
    snprintf(input, sizeof(input), "%s/kcat.in", m->dir);
    snprintf(err_path, sizeof(err_path), "%s/kcat.err", m->dir);
    FILE *f = fopen(input, "w");
    assert_non_null(f);
    fputs(lines, f);
    fclose(f);

    char *argv[] = {kcat_path, "-P", "-b", (char *)m->bootstrap, "-t", (char *)topic,
                    "-X", "message.timeout.ms=5000",
                    "-X", (char *)(extra_property ? extra_property : "client.id=twinlane-it"),
                    "-l", input, NULL};
    return it_run(argv, NULL, err_path, KCAT_TIMEOUT_S);
}

/* Consumes the topic from the start to its end with kcat; returns the message count. */
static int kcat_count(const struct mock *m, const char *topic)
{
    char out_path[320];
    snprintf(out_path, sizeof(out_path), "%s/kcat.out", m->dir);
    char *argv[] = {kcat_path, "-C", "-b", (char *)m->bootstrap, "-t", (char *)topic,
                    "-o", "beginning", "-e", "-q", "-f", "%s\\n", NULL};
    assert_int_equal(it_run(argv, out_path, NULL, KCAT_TIMEOUT_S), 0);

    size_t len = 0;
    char *text = it_read_file(out_path, &len);
    assert_non_null(text);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    free(text);
    return lines;
}

static void round_trip_then_clean_exit(void **state)
{
    (void)state;
    struct mock m;
    if (!find_kcat())
        skip();
    mock_start(&m, "mock-roundtrip", "--brokers", "3", "--topic", "events:3", NULL);

    char *file_text = it_read_file(m.bootstrap_file, NULL);
    assert_non_null(file_text);
    char expected[600];
    snprintf(expected, sizeof(expected), "%s\n", m.bootstrap);
    assert_string_equal(file_text, expected);
    free(file_text);
    assert_non_null(strstr(m.bootstrap, "127.0.0.1:"));

    assert_int_equal(kcat_produce(&m, "events", "one\ntwo\nthree\nfour\nfive\n", NULL), 0);
    assert_int_equal(kcat_count(&m, "events"), 5);

    assert_int_equal(mock_stop(&m), 0);
    assert_int_equal(access(m.bootstrap_file, F_OK), -1);
    assert_int_equal(access(m.control, F_OK), -1);
}

static void broker_down_fails_produce(void **state)
{
    (void)state;
    struct mock m;
    if (!find_kcat())
        skip();
    mock_start(&m, "mock-broker", "--brokers", "1", "--topic", "events:1", NULL);

    control_ok(&m, "broker-down 1");
    assert_int_not_equal(kcat_produce(&m, "events", "lost\n", NULL), 0);
    control_ok(&m, "broker-up 1");
    assert_int_equal(kcat_produce(&m, "events", "kept\n", NULL), 0);

    control_ok(&m, "all-down");
    assert_int_not_equal(kcat_produce(&m, "events", "lost\n", NULL), 0);
    control_ok(&m, "all-up");
    assert_int_equal(kcat_produce(&m, "events", "kept\n", NULL), 0);
    assert_int_equal(kcat_count(&m, "events"), 2);

    assert_int_equal(mock_stop(&m), 0);
}

static void pushed_errors_fail_then_recover(void **state)
{
    (void)state;
    struct mock m;
    const char *no_retry = "message.send.max.retries=0";
    if (!find_kcat())
        skip();
    mock_start(&m, "mock-errors", "--brokers", "1", "--topic", "events:1", NULL);

    control_ok(&m, "push-errors events NOT_ENOUGH_REPLICAS 2");
    assert_int_not_equal(kcat_produce(&m, "events", "first\n", no_retry), 0);
    assert_int_not_equal(kcat_produce(&m, "events", "second\n", no_retry), 0);
    assert_int_equal(kcat_produce(&m, "events", "third\n", no_retry), 0);

    control_ok(&m, "push-errors REQUEST_TIMED_OUT 5");
    control_ok(&m, "clear-errors");
    assert_int_equal(kcat_produce(&m, "events", "fourth\n", no_retry), 0);

    /* librdkafka retries a retriable error, so a producer with retries gets through. */
    control_ok(&m, "push-errors events NOT_ENOUGH_REPLICAS 1");
    assert_int_equal(kcat_produce(&m, "events", "fifth\n", NULL), 0);
    assert_int_equal(kcat_count(&m, "events"), 3);

    assert_int_equal(mock_stop(&m), 0);
}

static void rtt_delays_produce(void **state)
{
    (void)state;
    struct mock m;
    if (!find_kcat())
        skip();
    mock_start(&m, "mock-rtt", "--brokers", "1", "--topic", "events:1", NULL);

    /* Each request waits one round trip; the produce still fits message.timeout.ms. */
    control_ok(&m, "rtt all 400");
    int64_t start = now_ms();
    assert_int_equal(kcat_produce(&m, "events", "slow\n", NULL), 0);
    assert_true(now_ms() - start >= 400);

    /* A region whose responses come too late looks hung, so the message times out. */
    control_ok(&m, "rtt 1 10000");
    start = now_ms();
    assert_int_not_equal(kcat_produce(&m, "events", "late\n", "message.timeout.ms=1000"), 0);
    assert_true(now_ms() - start < 10000);

    control_ok(&m, "rtt 1 0");
    control_ok(&m, "create-topic later 2 1");
    assert_int_equal(kcat_produce(&m, "later", "fast\n", NULL), 0);
    assert_int_equal(kcat_count(&m, "later"), 1);
    assert_int_equal(kcat_count(&m, "events"), 1);

    assert_int_equal(mock_stop(&m), 0);
}

static void garbage_gets_error_replies(void **state)
{
    (void)state;
    struct mock m;
    struct control_conn c;
    char reply[2048];
    static const char *const invalid[] = {
        "",
        "   ",
        "bogus",
        "ping extra",
        "broker-down",
        "broker-down 0",
        "broker-down 2",
        "broker-down -1",
        "broker-down 1x",
        "broker-up 99999999999999999999",
        "rtt 1",
        "rtt 1 -5",
        "rtt 1 3600001",
        "rtt none 10",
        "push-errors NOT_ENOUGH_REPLICAS",
        "push-errors NOT_ENOUGH_REPLICAS 0",
        "push-errors NOT_ENOUGH_REPLICAS 100001",
        "push-errors NO_SUCH_ERROR 1",
        "push-errors _TRANSPORT 1",
        "push-errors NO_ERROR 1",
        "push-errors missing NOT_ENOUGH_REPLICAS 1",
        "push-errors a b c d e",
        "create-topic bad/name 1 1",
        "create-topic x 0 1",
        "create-topic x 1 2",
        "create-topic events 1 1",
        "create-topic .. 1 1",
    };
    mock_start(&m, "mock-garbage", "--brokers", "1", "--topic", "events:1", NULL);
    control_connect(&c, m.control);

    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        control_command(&c, invalid[i], reply, sizeof(reply));
        if (strncmp(reply, "error: ", 7) != 0)
            fail_msg("command '%s' got '%s', expected an error", invalid[i], reply);
    }

    /* Control bytes, a NUL and bytes above 0x7e: one error line each, then the next works. */
    static const char binary[] = "ping\0x\nping\x01\n\xff\xfe\n";
    control_send(&c, binary, sizeof(binary) - 1);
    for (int i = 0; i < 3; i++) {
        assert_true(control_read_line(&c, reply, sizeof(reply)));
        if (strstr(reply, "is not printable ASCII") == NULL)
            fail_msg("binary line %d got '%s', expected a non-printable byte error", i, reply);
    }

    /* An overlong line gets one error, whatever its length. */
    char *overlong = malloc(100000);
    memset(overlong, 'a', 100000);
    control_send(&c, overlong, 100000);
    control_send(&c, "\n", 1);
    free(overlong);
    assert_true(control_read_line(&c, reply, sizeof(reply)));
    assert_string_equal(reply, "error: command longer than 1024 bytes");

    control_command(&c, "ping", reply, sizeof(reply));
    assert_string_equal(reply, "ok");
    control_command(&c, "ping\r", reply, sizeof(reply));
    assert_string_equal(reply, "ok");
    close(c.fd);

    /* A flood of empty lines from a client that never reads costs that client its link. */
    control_connect(&c, m.control);
    char *flood = malloc(1 << 20);
    memset(flood, '\n', 1 << 20);
    ssize_t ignored = send(c.fd, flood, 1 << 20, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
    free(flood);
    close(c.fd);

    /* An unterminated last line still runs when the client shuts down its side. */
    control_connect(&c, m.control);
    control_send(&c, "ping", 4);
    shutdown(c.fd, SHUT_WR);
    assert_true(control_read_line(&c, reply, sizeof(reply)));
    assert_string_equal(reply, "ok");
    close(c.fd);

    control_ok(&m, "ping");
    assert_int_equal(mock_stop(&m), 0);
}

static void excess_clients_are_rejected(void **state)
{
    (void)state;
    struct mock m;
    struct control_conn *conns = calloc(CONTROL_MAX_CLIENTS + 8, sizeof(*conns));
    char reply[2048];
    mock_start(&m, "mock-clients", "--brokers", "1", NULL);

    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        control_connect(&conns[i], m.control);
        control_command(&conns[i], "ping", reply, sizeof(reply));
        assert_string_equal(reply, "ok");
    }
    for (int i = CONTROL_MAX_CLIENTS; i < CONTROL_MAX_CLIENTS + 8; i++) {
        control_connect(&conns[i], m.control);
        assert_true(control_read_line(&conns[i], reply, sizeof(reply)));
        assert_string_equal(reply, "error: too many control clients (32); close one and retry");
        assert_false(control_read_line(&conns[i], reply, sizeof(reply)));
        close(conns[i].fd);
    }

    /* Every accepted client still works, and a slot frees when one leaves. */
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        control_command(&conns[i], "ping", reply, sizeof(reply));
        assert_string_equal(reply, "ok");
    }
    close(conns[0].fd);
    usleep(100000);
    control_ok(&m, "ping");

    for (int i = 1; i < CONTROL_MAX_CLIENTS; i++)
        close(conns[i].fd);
    free(conns);
    assert_int_equal(mock_stop(&m), 0);
}

static void control_socket_in_use_stops_start(void **state)
{
    (void)state;
    struct mock m;
    mock_start(&m, "mock-in-use", NULL);

    char *second[] = {"--name", "second", "--control", m.control, NULL};
    assert_int_equal(run_mock_cluster(m.dir, second), 1);
    control_ok(&m, "ping");
    assert_int_equal(mock_stop(&m), 0);
}

static void stale_socket_is_replaced(void **state)
{
    (void)state;
    struct mock m;
    mock_prepare(&m, "mock-stale");

    /* A socket file where no process listens, as a kill -9 leaves behind. */
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%.*s", (int)sizeof(addr.sun_path) - 1,
             m.control);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    close(fd);

    mock_start_prepared(&m, "mock-stale", NULL);
    control_ok(&m, "ping");
    assert_int_equal(mock_stop(&m), 0);
}

static void usage_errors_exit_two(void **state)
{
    (void)state;
    char dir[256];
    it_make_dir("mock-usage", dir, sizeof(dir));

    char *help[] = {"--help", NULL};
    char *no_name[] = {"--brokers", "1", NULL};
    char *bad_brokers[] = {"--name", "x", "--brokers", "17", NULL};
    char *bad_topic[] = {"--name", "x", "--topic", "events", NULL};
    char *bad_rf[] = {"--name", "x", "--brokers", "1", "--topic", "events:1:2", NULL};
    char *twice[] = {"--name", "x", "--name", "y", NULL};
    char *extra[] = {"--name", "x", "surplus", NULL};
    char *dup_topic[] = {"--name", "x", "--topic", "a:1", "--topic", "a:2", NULL};
    char not_socket[320];
    snprintf(not_socket, sizeof(not_socket), "%s/plain-file", dir);
    fclose(fopen(not_socket, "w"));
    char *control_file[] = {"--name", "x", "--control", not_socket, NULL};

    assert_int_equal(run_mock_cluster(dir, help), 0);
    assert_int_equal(run_mock_cluster(dir, no_name), 2);
    assert_int_equal(run_mock_cluster(dir, bad_brokers), 2);
    assert_int_equal(run_mock_cluster(dir, bad_topic), 2);
    assert_int_equal(run_mock_cluster(dir, bad_rf), 2);
    assert_int_equal(run_mock_cluster(dir, twice), 2);
    assert_int_equal(run_mock_cluster(dir, extra), 2);
    assert_int_equal(run_mock_cluster(dir, dup_topic), 2);
    assert_int_equal(run_mock_cluster(dir, control_file), 1);
}

int main(void)
{
    it_watchdog_start(540);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_then_clean_exit),
        cmocka_unit_test(broker_down_fails_produce),
        cmocka_unit_test(pushed_errors_fail_then_recover),
        cmocka_unit_test(rtt_delays_produce),
        cmocka_unit_test(garbage_gets_error_replies),
        cmocka_unit_test(excess_clients_are_rejected),
        cmocka_unit_test(control_socket_in_use_stops_start),
        cmocka_unit_test(stale_socket_is_replaced),
        cmocka_unit_test(usage_errors_exit_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
