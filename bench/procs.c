/*
 * Child process management for the benchmark. Registered pids sit in a fixed table so that
 * the SIGINT handler can kill them without allocating.
 */
#include "procs.h"
#include "freeport.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 16
#define TMPFS_MAGIC_VALUE 0x01021994
#define RAMFS_MAGIC_VALUE 0x858458f6

static volatile pid_t children[MAX_CHILDREN];

static void register_child(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
}

static void unregister_child(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == pid)
            children[i] = 0;
    }
}

void bench_procs_kill_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0)
            kill(children[i], SIGKILL);
    }
}

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Runs in the child after fork: die with the parent, then redirect and exec. */
static void exec_child(char *const argv[], const char *out_path, const char *err_path,
                       bool append)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int null = open("/dev/null", O_RDWR);
    int flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
    int out = out_path ? open(out_path, flags, 0644) : null;
    int errfd = err_path ? open(err_path, flags, 0644) : null;
    dup2(null, STDIN_FILENO);
    dup2(out < 0 ? null : out, STDOUT_FILENO);
    dup2(errfd < 0 ? null : errfd, STDERR_FILENO);
    execv(argv[0], argv);
    _exit(127);
}

static pid_t spawn(char *const argv[], const char *out_path, const char *err_path)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        exec_child(argv, out_path, err_path, false);
    register_child(pid);
    return pid;
}

pid_t bench_spawn(char *const argv[], const char *out_path)
{
    return spawn(argv, out_path, NULL);
}

int bench_wait(pid_t *pid)
{
    int status;
    if (*pid <= 0)
        return -1;
    pid_t got = waitpid(*pid, &status, 0);
    unregister_child(*pid);
    *pid = 0;
    if (got < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool exited(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == pid;
}

void bench_proc_stop(pid_t *pid, int timeout_ms)
{
    if (*pid <= 0)
        return;

    kill(*pid, SIGTERM);
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    bool gone = false;
    while (!gone && bench_now_ns() < deadline) {
        gone = exited(*pid);
        if (!gone)
            usleep(10000);
    }
    if (!gone) {
        fprintf(stderr, "bench: pid %d did not stop within %d ms after SIGTERM; sending SIGKILL\n",
                (int)*pid, timeout_ms);
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    unregister_child(*pid);
    *pid = 0;
}

static bool read_first_line(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(out, (int)size, f) != NULL;
    fclose(f);
    if (!ok)
        return false;
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] != '\0';
}

static void print_log_tail(const char *path)
{
    char *argv[] = {"/usr/bin/tail", "-n", "20", (char *)path, NULL};
    fprintf(stderr, "---- last lines of %s ----\n", path);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

int bench_mock_start(struct bench_mock *m, const char *bin, const char *dir, const char *name,
                     const char *topic, int partitions, char *err, size_t errsize)
{
    char bootstrap_file[256];
    char topic_arg[128];

    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(bootstrap_file, sizeof(bootstrap_file), "%s/%s.bootstrap", dir, name);
    snprintf(m->control, sizeof(m->control), "%s/%s.control", dir, name);
    snprintf(m->log, sizeof(m->log), "%s/%s.log", dir, name);
    snprintf(topic_arg, sizeof(topic_arg), "%s:%d", topic, partitions);
    unlink(bootstrap_file);

    char *argv[] = {(char *)bin, "--name", m->name, "--brokers", "3", "--topic", topic_arg,
                    "--bootstrap-file", bootstrap_file, "--control", m->control,
                    "--log-level", "warn", NULL};
    m->pid = spawn(argv, NULL, m->log);
    if (m->pid < 0) {
        snprintf(err, errsize, "fork for %s failed: %s", bin, strerror(errno));
        return -1;
    }

    int64_t deadline = bench_now_ns() + 30 * 1000000000ll;
    while (!read_first_line(bootstrap_file, m->bootstrap, sizeof(m->bootstrap))) {
        if (exited(m->pid)) {
            unregister_child(m->pid);
            m->pid = 0;
            print_log_tail(m->log);
            snprintf(err, errsize, "%s for region %s exited during start-up; see %s", bin, name,
                     m->log);
            return -1;
        }
        if (bench_now_ns() > deadline) {
            bench_proc_stop(&m->pid, 5000);
            snprintf(err, errsize, "%s for region %s not ready after 30 s; see %s", bin, name,
                     m->log);
            return -1;
        }
        usleep(10000);
    }
    return 0;
}

static int connect_unix(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int bench_mock_command(const struct bench_mock *m, const char *command, char *err,
                       size_t errsize)
{
    int fd = connect_unix(m->control);
    if (fd < 0) {
        snprintf(err, errsize, "connecting to the control socket %s of region %s failed: %s",
                 m->control, m->name, strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    char line[256];
    int len = snprintf(line, sizeof(line), "%s\n", command);
    char reply[256] = "";
    size_t got = 0;
    int rc = -1;
    if (write(fd, line, (size_t)len) != len)
        goto out;
    while (got < sizeof(reply) - 1 && !memchr(reply, '\n', got)) {
        ssize_t n = read(fd, reply + got, sizeof(reply) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        reply[got] = '\0';
    }
    reply[strcspn(reply, "\r\n")] = '\0';
    rc = strcmp(reply, "ok") == 0 ? 0 : -1;

out:
    close(fd);
    if (rc != 0)
        snprintf(err, errsize, "control command '%s' to region %s failed: reply '%s'", command,
                 m->name, reply);
    return rc;
}

static int write_agent_config(const struct bench_agent *a, const char *data_dir,
                              const struct bench_agent_settings *s, char *err, size_t errsize)
{
    FILE *f = fopen(a->config, "w");
    if (!f) {
        snprintf(err, errsize, "cannot write %s: %s", a->config, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# Written by twinlane-bench for one benchmark scenario.\n"
            "agent = {\n  id = \"bench\";\n  home_region = \"east\";\n  data_dir = \"%s\";\n"
            "  log_level = \"info\";\n};\n"
            "wal = {\n  fsync = \"%s\";\n};\n",
            data_dir, s->fsync);
    if (s->backfill_events_per_sec >= 0)
        fprintf(f, "breaker = {\n  backfill_events_per_sec = %lld;\n};\n",
                (long long)s->backfill_events_per_sec);
    fprintf(f,
            "listen = {\n  unix = \"%s\";\n  tcp = \"%s\";\n};\n"
            "regions = (\n  { name = \"east\"; bootstrap = \"%s\"; },\n"
            "  { name = \"west\"; bootstrap = \"%s\"; }\n);\n"
            "topics = (\n  { name = \"%s\"; partitions = %d; }\n);\n",
            a->unix_path, a->tcp_address, s->bootstrap[0], s->bootstrap[1], s->topic,
            s->partitions);
    fclose(f);
    return 0;
}

int bench_agent_start(struct bench_agent *a, const char *bin, const char *dir,
                      const struct bench_agent_settings *s, char *err, size_t errsize)
{
    char data_dir[256];

    memset(a, 0, sizeof(*a));
    snprintf(a->config, sizeof(a->config), "%s/agent.conf", dir);
    snprintf(a->log, sizeof(a->log), "%s/agent.log", dir);
    snprintf(a->unix_path, sizeof(a->unix_path), "%s/agent.sock", dir);
    snprintf(data_dir, sizeof(data_dir), "%s/agent-data", dir);
    int port = tl_free_loopback_port();
    if (port == 0) {
        snprintf(err, errsize, "no free loopback TCP port for the agent");
        return -1;
    }
    snprintf(a->tcp_address, sizeof(a->tcp_address), "127.0.0.1:%d", port);
    bench_remove_tree(data_dir);
    unlink(a->unix_path);
    if (write_agent_config(a, data_dir, s, err, errsize) != 0)
        return -1;

    char *argv[] = {(char *)bin, "-c", a->config, NULL};
    a->pid = spawn(argv, NULL, a->log);
    if (a->pid < 0) {
        snprintf(err, errsize, "fork for %s failed: %s", bin, strerror(errno));
        return -1;
    }

    int64_t deadline = bench_now_ns() + 60 * 1000000000ll;
    for (;;) {
        int fd = connect_unix(a->unix_path);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (exited(a->pid)) {
            unregister_child(a->pid);
            a->pid = 0;
            print_log_tail(a->log);
            snprintf(err, errsize, "the agent exited during start-up; see %s", a->log);
            return -1;
        }
        if (bench_now_ns() > deadline) {
            bench_proc_stop(&a->pid, 5000);
            print_log_tail(a->log);
            snprintf(err, errsize, "the agent did not accept connections within 60 s; see %s",
                     a->log);
            return -1;
        }
        usleep(5000);
    }
}

double bench_proc_cpu_seconds(pid_t pid)
{
    char path[64];
    char buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';

    /* The command name may contain spaces, so fields are counted after its closing ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
               &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

void bench_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool bench_path_on_memory_fs(const char *path)
{
    struct statfs st;
    if (statfs(path, &st) != 0)
        return false;
    return st.f_type == TMPFS_MAGIC_VALUE || st.f_type == RAMFS_MAGIC_VALUE;
}
