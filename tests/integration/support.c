/*
 * Integration test helpers: child processes and reading regions back with a librdkafka
 * consumer (assign every partition from the start, read to the high watermark).
 */
#include "support.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("integration test: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void it_child_dies_with_parent(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static unsigned watchdog_seconds;

static void *watchdog_thread(void *arg)
{
    (void)arg;
    unsigned left = watchdog_seconds;
    while (left > 0)
        left = sleep(left);
    /* Written with write(2), not stdio, because a hung thread may hold the lock of stderr. */
    char text[160];
    int n = snprintf(text, sizeof(text), "integration test: timed out after %u s, stacks of "
                     "its threads follow\n", watchdog_seconds);
    (void)!write(STDERR_FILENO, text, (size_t)n);
    /* Lets gdb attach under Yama's ptrace_scope 1 (children may not trace their parent). */
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);
    char command[128];
    snprintf(command, sizeof(command), "gdb -nx -batch -p %d -ex 'thread apply all bt' 1>&2",
             (int)getpid());
    if (system(command) != 0) {
        static const char none[] = "integration test: no stacks: gdb is not installed or could "
                                   "not attach (ptrace restrictions)\n";
        (void)!write(STDERR_FILENO, none, sizeof(none) - 1);
    }
    /* Child processes get SIGKILL when this process dies (it_child_dies_with_parent). */
    abort();
}

void it_watchdog_start(unsigned seconds)
{
    pthread_t thread;

    setvbuf(stdout, NULL, _IOLBF, 0);
    watchdog_seconds = seconds;
    if (pthread_create(&thread, NULL, watchdog_thread, NULL) != 0)
        die("cannot start the watchdog thread");
    pthread_detach(thread);
}

void it_make_dir(const char *name, char *out, size_t outsize)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, outsize, "%s/twinlane-it-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(out))
        die("mkdtemp %s: %s", out, strerror(errno));
}

char *it_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16;
    size_t n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

void it_agent_dump_log(const struct it_agent *a)
{
    char *log = it_read_file(a->log, NULL);
    fprintf(stderr, "---- agent log %s ----\n%s---- end of agent log ----\n", a->log,
            log ? log : "(unreadable)\n");
    free(log);
}

static void write_config(struct it_agent *a, const char *text)
{
    FILE *f = fopen(a->config, "w");
    if (!f)
        die("cannot write %s: %s", a->config, strerror(errno));
    for (const char *p = text; *p;) {
        if (strncmp(p, "@DIR@", 5) == 0) {
            fputs(a->dir, f);
            p += 5;
        } else {
            fputc(*p++, f);
        }
    }
    fclose(f);
}

static bool read_first_line(const char *path, char *out, size_t outsize)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(out, (int)outsize, f) != NULL;
    fclose(f);
    if (ok)
        out[strcspn(out, "\n")] = '\0';
    return ok && out[0];
}

void it_agent_start(struct it_agent *a, const char *name, const char *config_text,
                    const char *const embedded[2])
{
    memset(a, 0, sizeof(*a));
    it_make_dir(name, a->dir, sizeof(a->dir));
    snprintf(a->config, sizeof(a->config), "%s/agent.conf", a->dir);
    snprintf(a->log, sizeof(a->log), "%s/agent.log", a->dir);
    snprintf(a->socket, sizeof(a->socket), "%s/data/agent.sock", a->dir);
    write_config(a, config_text);

    a->pid = fork();
    if (a->pid < 0)
        die("fork: %s", strerror(errno));
    if (a->pid == 0) {
        it_child_dies_with_parent();
        int fd = open(a->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        execl(TL_AGENT_BIN, "twinlane-agent", "-c", a->config, (char *)NULL);
        _exit(127);
    }

    int64_t deadline = now_ms() + 60000;
    for (;;) {
        bool ready = access(a->socket, F_OK) == 0;
        for (int r = 0; r < 2 && embedded && ready; r++) {
            if (!embedded[r])
                continue;
            char path[600];
            snprintf(path, sizeof(path), "%s/data/%s.bootstrap", a->dir, embedded[r]);
            ready = read_first_line(path, a->bootstrap[r], sizeof(a->bootstrap[r]));
        }
        if (ready)
            return;
        if (!it_agent_alive(a)) {
            it_agent_dump_log(a);
            die("agent exited during start-up");
        }
        if (now_ms() > deadline) {
            it_agent_dump_log(a);
            die("agent not ready after 60 s");
        }
        usleep(20000);
    }
}

bool it_agent_alive(struct it_agent *a)
{
    if (a->pid <= 0)
        return false;
    int status;
    pid_t rc = waitpid(a->pid, &status, WNOHANG);
    if (rc == a->pid) {
        a->pid = -(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) - 1;
        return false;
    }
    return rc == 0;
}

static int wait_status(pid_t pid, int timeout_s)
{
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
    int status;
    for (;;) {
        pid_t rc = waitpid(pid, &status, WNOHANG);
        if (rc == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(10000);
    }
}

int it_agent_stop(struct it_agent *a)
{
    if (a->pid < 0)
        return -a->pid - 1; /* already reaped by it_agent_alive */
    kill(a->pid, SIGTERM);
    int rc = wait_status(a->pid, 60);
    a->pid = 0;
    if (rc == -1)
        die("agent did not stop within 60 s of SIGTERM");
    return rc;
}

int it_run(char *const argv[], const char *out_path, const char *err_path, int timeout_s)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        it_child_dies_with_parent();
        int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, STDIN_FILENO);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    return wait_status(pid, timeout_s);
}

static char *dup_bytes(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (len)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static char *header_value(rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(m, &hdrs) != 0)
        return NULL;
    if (rd_kafka_header_get_last(hdrs, name, &v, &len) != 0)
        return NULL;
    return dup_bytes(v, len);
}

void it_consume(const char *bootstrap, const char *topic, struct it_records *out)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "twinlane-integration-test", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk)
        die("consumer: %s", errstr);

    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != 0 || md->topic_cnt != 1 ||
        md->topics[0].err)
        die("metadata for topic %s at %s failed", topic, bootstrap);
    int partitions = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);

    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(partitions);
    int64_t *high = calloc((size_t)partitions, sizeof(*high));
    size_t expected = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t low;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high[p], 10000) != 0)
            die("watermarks of %s [%d] at %s failed", topic, p, bootstrap);
        expected += (size_t)(high[p] - low);
        rd_kafka_topic_partition_list_add(assign, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(rk, assign);
    rd_kafka_topic_partition_list_destroy(assign);

    out->items = calloc(expected ? expected : 1, sizeof(*out->items));
    out->count = 0;
    int64_t deadline = now_ms() + 120000;
    while (out->count < expected) {
        if (now_ms() > deadline)
            die("read %zu of %zu records of %s at %s within 120 s", out->count, expected, topic,
                bootstrap);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "consumer: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset < high[m->partition]) {
            struct it_record *r = &out->items[out->count++];
            r->partition = m->partition;
            r->offset = m->offset;
            r->key = m->key ? dup_bytes(m->key, m->key_len) : NULL;
            r->key_len = m->key_len;
            r->value = dup_bytes(m->payload, m->len);
            r->value_len = m->len;
            r->id = header_value(m, "twinlane-id");
            r->origin = header_value(m, "twinlane-origin");
            char *ts = header_value(m, "twinlane-ts");
            r->has_ts = ts != NULL;
            char record_ts[32];
            snprintf(record_ts, sizeof(record_ts), "%" PRId64, rd_kafka_message_timestamp(m, NULL));
            r->ts_matches = ts != NULL && strcmp(ts, record_ts) == 0;
            free(ts);
        }
        rd_kafka_message_destroy(m);
    }
    free(high);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

void it_watermarks(const char *bootstrap, const char *topic, int partitions, int64_t *low,
                   int64_t *high)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk)
        die("consumer: %s", errstr);
    for (int p = 0; p < partitions; p++) {
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &low[p], &high[p], 10000) != 0)
            die("watermarks of %s [%d] at %s failed", topic, p, bootstrap);
    }
    rd_kafka_destroy(rk);
}

void it_records_free(struct it_records *r)
{
    for (size_t i = 0; i < r->count; i++) {
        free(r->items[i].key);
        free(r->items[i].value);
        free(r->items[i].id);
        free(r->items[i].origin);
    }
    free(r->items);
    r->items = NULL;
    r->count = 0;
}

void it_agent_kill(struct it_agent *a)
{
    if (a->pid <= 0)
        die("it_agent_kill: the agent is not running (pid %d)", (int)a->pid);
    kill(a->pid, SIGKILL);
    int status;
    waitpid(a->pid, &status, 0);
    a->pid = 0;
}

/* Fills a Unix socket address, failing when path does not fit in sun_path. */
static void unix_address(struct sockaddr_un *addr, const char *path)
{
    size_t len = strlen(path);
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (len >= sizeof(addr->sun_path))
        die("socket path %s is %zu bytes long; the limit is %zu", path, len,
            sizeof(addr->sun_path) - 1);
    memcpy(addr->sun_path, path, len + 1);
}

/* Returns whether a Unix stream socket at path accepts a connection now. */
static bool socket_accepts(const char *path)
{
    struct sockaddr_un addr;
    unix_address(&addr, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    bool ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return ok;
}

void it_agent_restart(struct it_agent *a)
{
    if (a->pid > 0 && it_agent_alive(a))
        die("it_agent_restart: the agent (pid %d) is still running", (int)a->pid);

    a->pid = fork();
    if (a->pid < 0)
        die("fork: %s", strerror(errno));
    if (a->pid == 0) {
        it_child_dies_with_parent();
        int fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        execl(TL_AGENT_BIN, "twinlane-agent", "-c", a->config, (char *)NULL);
        _exit(127);
    }

    int64_t deadline = now_ms() + 60000;
    while (!socket_accepts(a->socket)) {
        if (!it_agent_alive(a)) {
            it_agent_dump_log(a);
            die("agent exited during restart");
        }
        if (now_ms() > deadline) {
            it_agent_dump_log(a);
            die("restarted agent not accepting connections after 60 s");
        }
        usleep(5000);
    }
}

static void dump_mock_log(const struct it_mock *m)
{
    char *log = it_read_file(m->log, NULL);
    fprintf(stderr, "---- mock cluster log %s ----\n%s---- end of mock cluster log ----\n",
            m->log, log ? log : "(unreadable)\n");
    free(log);
}

void it_mock_start(struct it_mock *m, const char *dir, const char *name,
                   const char *const topics[])
{
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->bootstrap_file, sizeof(m->bootstrap_file), "%s/%s.bootstrap", dir, name);
    snprintf(m->control, sizeof(m->control), "%s/%s.control", dir, name);
    snprintf(m->log, sizeof(m->log), "%s/%s.log", dir, name);

    char *argv[32] = {TL_MOCK_CLUSTER_BIN, "--name", m->name, "--brokers", "3",
                      "--bootstrap-file", m->bootstrap_file, "--control", m->control};
    int argc = 9;
    for (size_t i = 0; topics[i]; i++) {
        if (i == 8)
            die("it_mock_start: more than 8 topics for region %s", name);
        argv[argc++] = "--topic";
        argv[argc++] = (char *)topics[i];
    }

    m->pid = fork();
    if (m->pid < 0)
        die("fork: %s", strerror(errno));
    if (m->pid == 0) {
        it_child_dies_with_parent();
        int fd = open(m->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDWR);
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }

    int64_t deadline = now_ms() + 30000;
    while (!read_first_line(m->bootstrap_file, m->bootstrap, sizeof(m->bootstrap))) {
        int status;
        if (waitpid(m->pid, &status, WNOHANG) == m->pid) {
            m->pid = 0;
            dump_mock_log(m);
            die("twinlane-mock-cluster for region %s exited during start-up", name);
        }
        if (now_ms() > deadline) {
            dump_mock_log(m);
            die("twinlane-mock-cluster for region %s not ready after 30 s", name);
        }
        usleep(10000);
    }
}

void it_mock_command(const struct it_mock *m, const char *command)
{
    struct sockaddr_un addr;
    unix_address(&addr, m->control);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        die("connecting to the control socket %s of region %s failed: %s", m->control, m->name,
            strerror(errno));
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    char line[512];
    int len = snprintf(line, sizeof(line), "%s\n", command);
    if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len)
        die("sending '%s' to region %s failed: %s", command, m->name, strerror(errno));

    char reply[512];
    size_t got = 0;
    while (got < sizeof(reply) - 1 && !memchr(reply, '\n', got)) {
        ssize_t n = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);
        if (n <= 0)
            die("no reply to control command '%s' from region %s", command, m->name);
        got += (size_t)n;
    }
    close(fd);
    reply[got] = '\0';
    reply[strcspn(reply, "\n")] = '\0';
    if (strcmp(reply, "ok") != 0)
        die("control command '%s' to region %s got '%s'", command, m->name, reply);
}

int it_mock_stop(struct it_mock *m)
{
    if (m->pid <= 0)
        return -1;
    kill(m->pid, SIGTERM);
    int rc = wait_status(m->pid, 30);
    m->pid = 0;
    if (rc == -1)
        dump_mock_log(m);
    return rc;
}
