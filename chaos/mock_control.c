/*
 * Control channel of twinlane-mock-cluster: command parsing, the fault-injection calls into
 * librdkafka's mock cluster API, and a poll(2) server for the Unix socket.
 *
 * Every line that a client sends is one command and gets exactly one reply line, in order.
 * A line is bytes up to '\n'; a trailing '\r' is dropped, and an unterminated line before the
 * client shuts down its side still counts. Lines longer than LINE_MAX_BYTES, lines with bytes
 * outside printable ASCII, unknown commands and invalid arguments get "error: ..." and leave
 * the cluster unchanged. The server reads no more from a client while half of OUT_MAX_BYTES of
 * replies wait to be read, and disconnects a client whose unread replies reach the cap (one
 * read of up to 4096 bytes can hold that many lines).
 *
 * The rd_kafka_mock_* calls post an operation to the mock cluster's own thread and wait for
 * it, so a command has taken effect when its "ok" is sent.
 */
#include "mock_control.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "mem.h"

/* Kafka protocol ApiKey of Produce requests (rdkafka_protocol.h is not a public header). */
#define PRODUCE_API_KEY 0

#define MAX_CLIENTS 32
#define LINE_MAX_BYTES 1024
#define OUT_MAX_BYTES 16384
#define MAX_ARGS 4
/* Maximum broker round-trip time that a command may set: one hour. */
#define MAX_RTT_MS 3600000
/* Maximum number of errors that one push-errors command may queue. */
#define MAX_PUSH_COUNT 100000

#define COMMAND_LIST                                                                            \
    "ping, broker-down ID, broker-up ID, all-down, all-up, rtt ID|all MS, "                     \
    "push-errors [TOPIC] ERRNAME COUNT, clear-errors, create-topic TOPIC PARTITIONS RF"

struct client {
    int fd;
    char in[LINE_MAX_BYTES + 1];
    size_t in_len;
    bool overlong;   /* the current line passed LINE_MAX_BYTES, so skip to its end */
    bool eof;        /* the client shut down its side, so close once replies are sent */
    char out[OUT_MAX_BYTES];
    size_t out_len;
};

struct tl_mock_control {
    char *path;
    ino_t inode;     /* of the socket we bound, so close never unlinks someone else's */
    int listen_fd;
    struct tl_mock_region *region;
    struct client *clients[MAX_CLIENTS];
    size_t client_count;
    struct tl_ratelimit reject_log;
};

int tl_mock_check_topic_name(const char *name, char *err, size_t errsize)
{
    size_t len = strlen(name);

    if (len == 0)
        return tl_error(err, errsize, TL_EINVAL, "topic name is empty");
    if (len > TL_MOCK_MAX_TOPIC_NAME)
        return tl_error(err, errsize, TL_EINVAL, "topic name of %zu characters exceeds Kafka's "
                        "limit of %d", len, TL_MOCK_MAX_TOPIC_NAME);
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return tl_error(err, errsize, TL_EINVAL, "topic name '%s' is reserved", name);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return tl_error(err, errsize, TL_EINVAL, "topic name '%s' contains '%c'; Kafka "
                            "allows only letters, digits, '.', '_' and '-'", name, c);
    }
    return 0;
}

int tl_mock_create_topic(struct tl_mock_region *region, const char *topic, int partitions,
                         int replication_factor, char *err, size_t errsize)
{
    int rv = tl_mock_check_topic_name(topic, err, errsize);
    if (rv != 0)
        return rv;
    if (partitions < 1 || partitions > TL_MOCK_MAX_PARTITIONS)
        return tl_error(err, errsize, TL_EINVAL, "topic %s: partition count %d is outside 1 to "
                        "%d", topic, partitions, TL_MOCK_MAX_PARTITIONS);
    if (replication_factor < 1 || replication_factor > region->brokers)
        return tl_error(err, errsize, TL_EINVAL, "topic %s: replication factor %d is outside 1 "
                        "to %d (the broker count)", topic, replication_factor, region->brokers);
    if (region->topic_count == TL_MOCK_MAX_TOPICS)
        return tl_error(err, errsize, TL_EINVAL, "topic %s: this program creates at most %d "
                        "topics", topic, TL_MOCK_MAX_TOPICS);

    rd_kafka_resp_err_t kerr = rd_kafka_mock_topic_create(region->cluster, topic, partitions,
                                                          replication_factor);
    if (kerr)
        return tl_error(err, errsize, TL_EKAFKA, "topic %s: creating it failed: %s (%s)", topic,
                        rd_kafka_err2name(kerr), rd_kafka_err2str(kerr));

    region->topics[region->topic_count++] = tl_xstrdup(topic);
    tl_log_info("mock", "topic created region=%s topic=%s partitions=%d replication_factor=%d",
                region->name, topic, partitions, replication_factor);
    return 0;
}

void tl_mock_region_free_topics(struct tl_mock_region *region)
{
    for (size_t i = 0; i < region->topic_count; i++)
        free(region->topics[i]);
    region->topic_count = 0;
}

/* Parses a whole token as a decimal integer in [min, max], without sign or spaces. */
static bool parse_long(const char *text, long min, long max, long *out)
{
    if (!isdigit((unsigned char)text[0]))
        return false;
    errno = 0;
    char *end;
    long value = strtol(text, &end, 10);
    if (*end != '\0' || errno == ERANGE || value < min || value > max)
        return false;
    *out = value;
    return true;
}

static int parse_broker_id(const struct tl_mock_region *region, const char *text, int32_t *id,
                           char *err, size_t errsize)
{
    long value;
    if (!parse_long(text, 1, region->brokers, &value))
        return tl_error(err, errsize, TL_EINVAL, "invalid broker id '%s'; brokers are numbered "
                        "1 to %d", text, region->brokers);
    *id = (int32_t)value;
    return 0;
}

/* Turns the result of a broker call into a status with a reason. */
static int check_broker_call(rd_kafka_resp_err_t kerr, const char *what, char *err,
                             size_t errsize)
{
    if (kerr)
        return tl_error(err, errsize, TL_EKAFKA, "%s failed: %s", what, rd_kafka_err2name(kerr));
    return 0;
}

static int cmd_ping(struct tl_mock_region *region, char **argv, int argc, char *err,
                    size_t errsize)
{
    (void)region, (void)argv, (void)argc, (void)err, (void)errsize;
    return 0;
}

static int cmd_broker_down(struct tl_mock_region *region, char **argv, int argc, char *err,
                           size_t errsize)
{
    (void)argc;
    int32_t id = 0;
    int rv = parse_broker_id(region, argv[0], &id, err, errsize);
    if (rv != 0)
        return rv;
    return check_broker_call(rd_kafka_mock_broker_set_down(region->cluster, id), "broker-down",
                             err, errsize);
}

static int cmd_broker_up(struct tl_mock_region *region, char **argv, int argc, char *err,
                         size_t errsize)
{
    (void)argc;
    int32_t id = 0;
    int rv = parse_broker_id(region, argv[0], &id, err, errsize);
    if (rv != 0)
        return rv;
    return check_broker_call(rd_kafka_mock_broker_set_up(region->cluster, id), "broker-up", err,
                             errsize);
}

/* Broker id -1 makes librdkafka apply an up/down or RTT change to every broker. */
static int cmd_all_down(struct tl_mock_region *region, char **argv, int argc, char *err,
                        size_t errsize)
{
    (void)argv, (void)argc;
    return check_broker_call(rd_kafka_mock_broker_set_down(region->cluster, -1), "all-down", err,
                             errsize);
}

static int cmd_all_up(struct tl_mock_region *region, char **argv, int argc, char *err,
                      size_t errsize)
{
    (void)argv, (void)argc;
    return check_broker_call(rd_kafka_mock_broker_set_up(region->cluster, -1), "all-up", err,
                             errsize);
}

static int cmd_rtt(struct tl_mock_region *region, char **argv, int argc, char *err,
                   size_t errsize)
{
    (void)argc;
    int32_t id = -1;
    if (strcmp(argv[0], "all") != 0) {
        int rv = parse_broker_id(region, argv[0], &id, err, errsize);
        if (rv != 0)
            return rv;
    }

    long rtt_ms;
    if (!parse_long(argv[1], 0, MAX_RTT_MS, &rtt_ms))
        return tl_error(err, errsize, TL_EINVAL, "invalid round-trip time '%s'; give "
                        "milliseconds from 0 to %d", argv[1], MAX_RTT_MS);

    rd_kafka_resp_err_t kerr = rd_kafka_mock_broker_set_rtt(region->cluster, id, (int)rtt_ms);
    return check_broker_call(kerr, "rtt", err, errsize);
}

/*
 * Finds a librdkafka error code by the name rd_kafka_err2name gives it, with or without the
 * RD_KAFKA_RESP_ERR_ prefix, ignoring case. Only broker errors (code > 0) are accepted,
 * because the mock sends the code in a Produce response.
 */
static int resolve_error_name(const char *name, rd_kafka_resp_err_t *code, char *err,
                              size_t errsize)
{
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    const char *bare = name;
    if (strncasecmp(bare, prefix, sizeof(prefix) - 1) == 0)
        bare += sizeof(prefix) - 1;

    const struct rd_kafka_err_desc *descs;
    size_t count;
    rd_kafka_get_err_descs(&descs, &count);
    for (size_t i = 0; i < count; i++) {
        if (!descs[i].name || strcasecmp(descs[i].name, bare) != 0)
            continue;
        if (descs[i].code <= 0)
            return tl_error(err, errsize, TL_EINVAL, "%s is not a Kafka protocol error that a "
                            "broker can return; use one such as NOT_ENOUGH_REPLICAS", name);
        *code = descs[i].code;
        return 0;
    }
    return tl_error(err, errsize, TL_EINVAL, "unknown Kafka error name '%s'; use a librdkafka "
                    "error name such as NOT_ENOUGH_REPLICAS or REQUEST_TIMED_OUT", name);
}

static bool region_has_topic(const struct tl_mock_region *region, const char *topic)
{
    for (size_t i = 0; i < region->topic_count; i++) {
        if (strcmp(region->topics[i], topic) == 0)
            return true;
    }
    return false;
}

static int cmd_push_errors(struct tl_mock_region *region, char **argv, int argc, char *err,
                           size_t errsize)
{
    /*
     * NOTE: librdkafka's mock has no per-topic error queue for Produce, so the errors apply to
     * the next Produce requests of the whole cluster. TOPIC is only checked, so that a test
     * that names one fails loudly when the topic was never created.
     */
    if (argc == 3 && !region_has_topic(region, argv[0]))
        return tl_error(err, errsize, TL_ENOTFOUND, "topic '%s' was not created by --topic or "
                        "create-topic", argv[0]);
    const char *error_name = argv[argc - 2];
    const char *count_text = argv[argc - 1];

    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rv = resolve_error_name(error_name, &code, err, errsize);
    if (rv != 0)
        return rv;
    long count;
    if (!parse_long(count_text, 1, MAX_PUSH_COUNT, &count))
        return tl_error(err, errsize, TL_EINVAL, "invalid count '%s'; give 1 to %d",
                        count_text, MAX_PUSH_COUNT);

    rd_kafka_resp_err_t *codes = tl_xmalloc((size_t)count * sizeof(*codes));
    for (long i = 0; i < count; i++)
        codes[i] = code;
    rd_kafka_mock_push_request_errors_array(region->cluster, PRODUCE_API_KEY, (size_t)count,
                                            codes);
    free(codes);
    return 0;
}

static int cmd_clear_errors(struct tl_mock_region *region, char **argv, int argc, char *err,
                            size_t errsize)
{
    (void)argv, (void)argc, (void)err, (void)errsize;
    rd_kafka_mock_clear_request_errors(region->cluster, PRODUCE_API_KEY);
    return 0;
}

static int cmd_create_topic(struct tl_mock_region *region, char **argv, int argc, char *err,
                            size_t errsize)
{
    (void)argc;
    long partitions;
    long replication_factor;
    if (!parse_long(argv[1], 1, TL_MOCK_MAX_PARTITIONS, &partitions))
        return tl_error(err, errsize, TL_EINVAL, "invalid partition count '%s'; give 1 to %d",
                        argv[1], TL_MOCK_MAX_PARTITIONS);
    if (!parse_long(argv[2], 1, region->brokers, &replication_factor))
        return tl_error(err, errsize, TL_EINVAL, "invalid replication factor '%s'; give 1 to "
                        "%d (the broker count)", argv[2], region->brokers);
    return tl_mock_create_topic(region, argv[0], (int)partitions, (int)replication_factor, err,
                                errsize);
}

struct command {
    const char *name;
    int min_args;
    int max_args;
    const char *usage;
    int (*run)(struct tl_mock_region *region, char **argv, int argc, char *err, size_t errsize);
};

static const struct command commands[] = {
    {"ping", 0, 0, "ping", cmd_ping},
    {"broker-down", 1, 1, "broker-down ID", cmd_broker_down},
    {"broker-up", 1, 1, "broker-up ID", cmd_broker_up},
    {"all-down", 0, 0, "all-down", cmd_all_down},
    {"all-up", 0, 0, "all-up", cmd_all_up},
    {"rtt", 2, 2, "rtt ID|all MS", cmd_rtt},
    {"push-errors", 2, 3, "push-errors [TOPIC] ERRNAME COUNT", cmd_push_errors},
    {"clear-errors", 0, 0, "clear-errors", cmd_clear_errors},
    {"create-topic", 3, 3, "create-topic TOPIC PARTITIONS RF", cmd_create_topic},
};

/*
 * Splits a checked line in place on spaces and tabs. Returns the word count, or -1 when there
 * are more than max_words.
 */
static int split_words(char *line, char **words, int max_words)
{
    int count = 0;
    char *save = NULL;
    for (char *word = strtok_r(line, " \t", &save); word; word = strtok_r(NULL, " \t", &save)) {
        if (count == max_words)
            return -1;
        words[count++] = word;
    }
    return count;
}

int tl_mock_control_execute(struct tl_mock_region *region, const char *line, size_t len,
                            char *reply, size_t replysize)
{
    char reason[512];
    char copy[LINE_MAX_BYTES + 1];

    if (len > LINE_MAX_BYTES) {
        snprintf(reply, replysize, "error: command longer than %d bytes", LINE_MAX_BYTES);
        return TL_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c != '\t' && (c < 0x20 || c > 0x7e)) {
            snprintf(reply, replysize, "error: byte 0x%02x at offset %zu is not printable "
                     "ASCII; commands: " COMMAND_LIST, c, i);
            return TL_EINVAL;
        }
    }
    memcpy(copy, line, len);
    copy[len] = '\0';

    char *words[1 + MAX_ARGS];
    int count = split_words(copy, words, 1 + MAX_ARGS);
    if (count == 0) {
        snprintf(reply, replysize, "error: empty command; commands: " COMMAND_LIST);
        return TL_EINVAL;
    }
    if (count < 0) {
        snprintf(reply, replysize, "error: more than %d arguments; commands: " COMMAND_LIST,
                 MAX_ARGS);
        return TL_EINVAL;
    }

    const struct command *command = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(words[0], commands[i].name) == 0)
            command = &commands[i];
    }
    if (!command) {
        snprintf(reply, replysize, "error: unknown command '%.64s'; commands: " COMMAND_LIST,
                 words[0]);
        return TL_EINVAL;
    }
    int argc = count - 1;
    if (argc < command->min_args || argc > command->max_args) {
        snprintf(reply, replysize, "error: usage: %s", command->usage);
        return TL_EINVAL;
    }

    if (command->run(region, words + 1, argc, reason, sizeof(reason)) != 0) {
        snprintf(reply, replysize, "error: %s", reason);
        return TL_EINVAL;
    }
    snprintf(reply, replysize, "ok");
    return 0;
}

/* Queues text for a client. Returns false when its unread replies would pass the cap. */
static bool client_queue(struct client *c, const char *text, size_t len)
{
    if (OUT_MAX_BYTES - c->out_len < len)
        return false;
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
    return true;
}

/* Runs one complete line and queues its reply. Returns false when the client must go. */
static bool client_run_line(struct tl_mock_control *ctl, struct client *c)
{
    char reply[LINE_MAX_BYTES + 256];
    uint64_t suppressed;

    if (c->overlong) {
        snprintf(reply, sizeof(reply), "error: command longer than %d bytes", LINE_MAX_BYTES);
    } else {
        if (c->in_len > 0 && c->in[c->in_len - 1] == '\r')
            c->in_len--;
        c->in[c->in_len] = '\0';
        int rv = tl_mock_control_execute(ctl->region, c->in, c->in_len, reply, sizeof(reply));
        if (rv == 0)
            tl_log_info("control", "command applied region=%s command=\"%s\"", ctl->region->name,
                        c->in);
    }
    c->in_len = 0;
    c->overlong = false;

    if (strncmp(reply, "ok", 2) != 0 && tl_ratelimit_allow(&ctl->reject_log, &suppressed))
        tl_log_warn("control", "command rejected region=%s fd=%d reply=\"%s\" suppressed=%llu",
                    ctl->region->name, c->fd, reply, (unsigned long long)suppressed);

    size_t len = strlen(reply);
    reply[len++] = '\n';
    return client_queue(c, reply, len);
}

/* Splits received bytes into lines. Returns false when the client must be disconnected. */
static bool client_take_bytes(struct tl_mock_control *ctl, struct client *c, const char *data,
                              size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (!client_run_line(ctl, c))
                return false;
            continue;
        }
        if (c->in_len < LINE_MAX_BYTES)
            c->in[c->in_len++] = data[i];
        else
            c->overlong = true;
    }
    return true;
}

/* Sends queued replies without blocking. Returns false when the connection failed. */
static bool client_flush(struct client *c)
{
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    return true;
}

/* Reads the client's bytes and runs its complete lines. Returns why it must go, or NULL. */
static const char *client_read(struct tl_mock_control *ctl, struct client *c)
{
    static const char replies_full[] = "unread replies exceed the limit";
    char chunk[4096];

    ssize_t n = recv(c->fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return NULL;
    if (n < 0)
        return strerror(errno);
    if (n == 0) {
        c->eof = true;
        if ((c->in_len > 0 || c->overlong) && !client_run_line(ctl, c))
            return replies_full;
        return NULL;
    }
    if (!client_take_bytes(ctl, c, chunk, (size_t)n))
        return replies_full;
    return NULL;
}

static void drop_client(struct tl_mock_control *ctl, size_t index, const char *reason)
{
    struct client *c = ctl->clients[index];

    if (reason)
        tl_log_warn("control", "client disconnected region=%s fd=%d reason=\"%s\"",
                    ctl->region->name, c->fd, reason);
    close(c->fd);
    free(c);
    ctl->clients[index] = ctl->clients[--ctl->client_count];
}

static void accept_clients(struct tl_mock_control *ctl)
{
    char full[128];
    int full_len = snprintf(full, sizeof(full), "error: too many control clients (%d); close one "
                            "and retry\n", MAX_CLIENTS);
    uint64_t suppressed;

    for (;;) {
        int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && errno == EINTR)
            continue;
        if (fd < 0) {
            /*
             * NOTE: on EMFILE or ENFILE the pending connection stays queued, so poll reports
             * the socket again at once. The rate limit keeps the log readable meanwhile.
             */
            if (errno != EAGAIN && errno != EWOULDBLOCK &&
                tl_ratelimit_allow(&ctl->reject_log, &suppressed))
                tl_log_warn("control", "accept failed region=%s error=\"%s\" suppressed=%llu",
                            ctl->region->name, strerror(errno), (unsigned long long)suppressed);
            return;
        }

        if (ctl->client_count == MAX_CLIENTS) {
            ssize_t ignored = send(fd, full, (size_t)full_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
            close(fd);
            if (tl_ratelimit_allow(&ctl->reject_log, &suppressed))
                tl_log_warn("control", "client rejected region=%s reason=\"%d clients already "
                            "connected\" suppressed=%llu", ctl->region->name, MAX_CLIENTS,
                            (unsigned long long)suppressed);
            continue;
        }

        struct client *c = tl_xcalloc(1, sizeof(*c));
        c->fd = fd;
        ctl->clients[ctl->client_count++] = c;
        tl_log_debug("control", "client connected region=%s fd=%d", ctl->region->name, fd);
    }
}

int tl_mock_control_open(const char *path, struct tl_mock_region *region,
                         struct tl_mock_control **out, char *err, size_t errsize)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return tl_error(err, errsize, TL_EINVAL, "control socket path '%s' is longer than %zu "
                        "bytes; choose a shorter path", path, sizeof(addr.sun_path) - 1);
    memcpy(addr.sun_path, path, strlen(path) + 1);

    /* Replace a socket file that a killed process left behind, but never a live one. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return tl_error(err, errsize, TL_EIO, "control socket path %s exists and is not a "
                            "socket; remove it or choose another path", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return tl_error(err, errsize, TL_EIO, "creating a socket failed: %s", strerror(errno));
        int connected = connect(probe, (struct sockaddr *)&addr, sizeof(addr));
        int connect_errno = errno;
        close(probe);
        if (connected == 0)
            return tl_error(err, errsize, TL_EIO, "control socket %s is in use by another "
                            "process", path);
        if (connect_errno != ECONNREFUSED)
            return tl_error(err, errsize, TL_EIO, "checking control socket %s failed: %s", path,
                            strerror(connect_errno));
        if (unlink(path) != 0)
            return tl_error(err, errsize, TL_EIO, "removing stale control socket %s failed: %s",
                            path, strerror(errno));
        tl_log_info("control", "removed stale control socket path=%s", path);
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tl_error(err, errsize, TL_EIO, "creating a socket failed: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 16) != 0 ||
        stat(path, &st) != 0) {
        int saved = errno;
        close(fd);
        return tl_error(err, errsize, TL_EIO, "listening on control socket %s failed: %s", path,
                        strerror(saved));
    }

    struct tl_mock_control *ctl = tl_xcalloc(1, sizeof(*ctl));
    ctl->path = tl_xstrdup(path);
    ctl->inode = st.st_ino;
    ctl->listen_fd = fd;
    ctl->region = region;
    ctl->reject_log = (struct tl_ratelimit)TL_RATELIMIT_INIT(10000, 20);
    tl_log_info("control", "control socket listening region=%s path=%s", region->name, path);
    *out = ctl;
    return 0;
}

/* Runs one poll round's results for the clients, last to first so drops do not skip any. */
static void serve_clients(struct tl_mock_control *ctl, const struct pollfd *fds, size_t nfds)
{
    for (size_t i = nfds; i-- > 0;) {
        struct client *c = ctl->clients[i];
        short revents = fds[i].revents;
        const char *reason = NULL;
        bool keep = true;

        if (revents & POLLIN) {
            reason = client_read(ctl, c);
            keep = reason == NULL;
        } else if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
            c->eof = true;
        }
        if (keep && !client_flush(c)) {
            keep = false;
            reason = "sending a reply failed";
        }
        if (keep && c->eof && c->out_len == 0)
            keep = false;
        if (!keep)
            drop_client(ctl, i, reason);
    }
}

int tl_mock_control_serve(struct tl_mock_control *ctl, int stop_fd, char *err, size_t errsize)
{
    struct pollfd fds[2 + MAX_CLIENTS];

    for (;;) {
        size_t nclients = ctl ? ctl->client_count : 0;
        for (size_t i = 0; i < nclients; i++) {
            struct client *c = ctl->clients[i];
            fds[i] = (struct pollfd){.fd = c->fd};
            /* Read no more commands while the client is slow to read its replies. */
            if (!c->eof && c->out_len <= OUT_MAX_BYTES / 2)
                fds[i].events |= POLLIN;
            if (c->out_len > 0)
                fds[i].events |= POLLOUT;
        }
        fds[nclients] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
        fds[nclients + 1] = (struct pollfd){.fd = ctl ? ctl->listen_fd : -1, .events = POLLIN};

        int ready = poll(fds, nclients + 2, -1);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return tl_error(err, errsize, TL_EIO, "poll failed: %s", strerror(errno));

        if (fds[nclients].revents)
            return 0;
        if (!ctl)
            continue;
        serve_clients(ctl, fds, nclients);
        if (fds[nclients + 1].revents & POLLIN)
            accept_clients(ctl);
    }
}

void tl_mock_control_close(struct tl_mock_control *ctl)
{
    if (!ctl)
        return;
    while (ctl->client_count > 0)
        drop_client(ctl, ctl->client_count - 1, NULL);
    close(ctl->listen_fd);

    struct stat st;
    if (lstat(ctl->path, &st) == 0 && st.st_ino == ctl->inode)
        unlink(ctl->path);
    free(ctl->path);
    free(ctl);
}
