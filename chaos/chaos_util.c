/*
 * Clocks, child processes, files and Unix sockets for twinlane-chaos.
 */
#include "chaos_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

int64_t chaos_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void chaos_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void chaos_sleep_until(int64_t at_ms)
{
    chaos_sleep_ms(at_ms - chaos_now_ms());
}

pid_t chaos_spawn(char *const argv[], const char *out_path, const char *err_path,
                  bool append, const char *env_extra)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;

    setpgid(0, 0);
    int flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path ? out_path : "/dev/null", flags, 0644);
    int err = err_path && out_path && strcmp(err_path, out_path) == 0
                  ? out
                  : open(err_path ? err_path : "/dev/null", flags, 0644);
    if (in < 0 || out < 0 || err < 0)
        _exit(126);
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    if (env_extra)
        putenv((char *)env_extra);
    execvp(argv[0], argv);
    _exit(127);
}

bool chaos_exited(pid_t pid, int *status)
{
    int raw;
    pid_t rc = waitpid(pid, &raw, WNOHANG);
    if (rc != pid)
        return false;
    if (status)
        *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    return true;
}

int chaos_wait(pid_t pid, int64_t timeout_ms)
{
    int64_t deadline = chaos_now_ms() + timeout_ms;
    int status;
    while (!chaos_exited(pid, &status)) {
        if (chaos_now_ms() > deadline)
            return -1;
        chaos_sleep_ms(10);
    }
    return status;
}

int chaos_run_command(char *const argv[], const char *out_path, const char *err_path,
                      int64_t timeout_ms, const char *env_extra)
{
    pid_t pid = chaos_spawn(argv, out_path, err_path, false, env_extra);
    if (pid < 0)
        return -1;
    int rc = chaos_wait(pid, timeout_ms);
    if (rc == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return rc;
}

char *chaos_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = tl_xmalloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = tl_xrealloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

bool chaos_read_first_line(const char *path, char *out, size_t outsize)
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

static int unix_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

bool chaos_unix_accepts(const char *path)
{
    int fd = unix_connect(path);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

int chaos_unix_request(const char *path, const char *line, char *reply, size_t replysize)
{
    int fd = unix_connect(path);
    if (fd < 0) {
        snprintf(reply, replysize, "connecting to %s failed: %s", path, strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    char request[512];
    int len = snprintf(request, sizeof(request), "%s\n", line);
    if (send(fd, request, (size_t)len, MSG_NOSIGNAL) != len) {
        snprintf(reply, replysize, "sending to %s failed: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < replysize - 1 && !memchr(reply, '\n', got)) {
        ssize_t n = recv(fd, reply + got, replysize - 1 - got, 0);
        if (n <= 0) {
            close(fd);
            snprintf(reply, replysize, "no reply from %s", path);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    reply[got] = '\0';
    reply[strcspn(reply, "\n")] = '\0';
    return 0;
}

void chaos_note(const char *fmt, ...)
{
    int64_t now = chaos_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char line[1024];
    int used = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03d twinlane-chaos: ", tm.tm_hour,
                        tm.tm_min, tm.tm_sec, (int)(now % 1000));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + used, sizeof(line) - (size_t)used, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
