/*
 * twinlane-mock-cluster: hosts one librdkafka mock cluster (Kafka-protocol brokers on loopback
 * TCP) in its own process, so a test can kill the agent while its regions live on, and a
 * benchmark can keep the brokers' work out of the measured process. Tests start one process
 * per region.
 *
 * Start-up order: mock cluster, topics, control socket, bootstrap file, then the bootstrap line
 * on stdout. A reader that sees either the file or the line can therefore use the brokers and
 * the control socket at once. The bootstrap file is written to FILE.tmp.PID and renamed, so a
 * reader never sees half a line. A clean stop removes the file, and after a kill -9 the next
 * start replaces it.
 *
 * Threads: the main thread parses options, then runs the control server (mock_control.c) until
 * SIGTERM or SIGINT arrives on a signalfd. librdkafka runs the brokers on its own threads, which
 * start with both signals blocked so the main thread receives them.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <syslog.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "error.h"
#include "log.h"
#include "mem.h"
#include "mock_control.h"

#define PROGRAM "twinlane-mock-cluster"
#define MAX_NAME 64
#define DEFAULT_BROKERS 3

enum exit_status {
    EXIT_STATUS_OK = 0,      /* stopped by SIGTERM or SIGINT, or --help / --version */
    EXIT_STATUS_RUNTIME = 1, /* the cluster, a topic, the control socket or a file failed */
    EXIT_STATUS_USAGE = 2,   /* invalid command line */
};

/* The agents' default heartbeat topic (heartbeat.topic). */
#define HEARTBEAT_TOPIC "twinlane.heartbeats"

/* One --topic option. A replication factor of 0 means the default, min(3, brokers). */
struct topic_option {
    char name[TL_MOCK_MAX_TOPIC_NAME + 1];
    int partitions;
    int replication_factor;
};

struct options {
    const char *name;
    int brokers;
    struct topic_option topics[TL_MOCK_MAX_TOPICS];
    size_t topic_count;
    const char *bootstrap_file;
    const char *control_path;
    enum tl_log_level log_level;
};

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " --name NAME [--brokers N] [--topic TOPIC:PARTITIONS[:RF]]...\n"
            "       [--bootstrap-file FILE] [--control SOCKET] [--log-level LEVEL]\n"
            "\n"
            "Hosts one librdkafka mock Kafka cluster on loopback TCP until SIGTERM or SIGINT.\n"
            "Prints the bootstrap servers (host:port,...) as one line on stdout once the\n"
            "brokers, topics and control socket are ready.\n"
            "\n"
            "Options:\n"
            "  -n, --name NAME            region name, used in log lines (required)\n"
            "  -b, --brokers N            broker count, 1 to %d (default %d); brokers get ids\n"
            "                             1 to N\n"
            "  -t, --topic T:P[:RF]       create topic T with P partitions (1 to %d) and\n"
            "                             replication factor RF (default min(3, N)); repeatable.\n"
            "                             The agents' heartbeat topic twinlane.heartbeats\n"
            "                             (1 partition) is created too unless named here,\n"
            "                             because mock clusters do not serve CreateTopics\n"
            "  -f, --bootstrap-file FILE  also write the bootstrap servers to FILE (replaced\n"
            "                             atomically; removed on exit)\n"
            "  -c, --control SOCKET       accept fault-injection commands on this Unix socket\n"
            "      --log-level LEVEL      error, warn, info or debug (default info)\n"
            "  -h, --help                 show this help and exit\n"
            "  -V, --version              show the version and exit\n"
            "\n"
            "Control commands, one per line; each gets one reply line, \"ok\" or \"error: ...\":\n"
            "  ping                               check that the channel is alive\n"
            "  broker-down ID, broker-up ID       stop or restart one broker's listener\n"
            "  all-down, all-up                   the same for every broker\n"
            "  rtt ID|all MS                      delay a broker's responses by MS ms\n"
            "  push-errors [TOPIC] ERRNAME COUNT  fail the next COUNT Produce requests of the\n"
            "                                     whole cluster with a Kafka error such as\n"
            "                                     NOT_ENOUGH_REPLICAS (TOPIC is only checked)\n"
            "  clear-errors                       drop pushed Produce errors not yet used\n"
            "  create-topic TOPIC PARTITIONS RF   create a topic\n"
            "\n"
            "Exit status: 0 after SIGTERM or SIGINT, 1 when start-up failed, 2 for an invalid\n"
            "command line.\n",
            TL_MOCK_MAX_BROKERS, DEFAULT_BROKERS, TL_MOCK_MAX_PARTITIONS);
}

/* Prints a command-line error with a pointer to --help and returns EXIT_STATUS_USAGE. */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, PROGRAM ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; try '" PROGRAM " --help'\n");
    return EXIT_STATUS_USAGE;
}

/* Parses a whole string as a decimal int in [min, max]. */
static bool parse_int(const char *text, int min, int max, int *out)
{
    char *end;
    if (text[0] < '0' || text[0] > '9')
        return false;
    long value = strtol(text, &end, 10);
    if (*end != '\0' || value < min || value > max)
        return false;
    *out = (int)value;
    return true;
}

/* Parses TOPIC:PARTITIONS[:RF]. parse_options checks the replication factor later. */
static int parse_topic_option(const char *text, struct topic_option *topic, char *err,
                              size_t errsize)
{
    char copy[TL_MOCK_MAX_TOPIC_NAME + 32];
    if (strlen(text) >= sizeof(copy))
        return tl_error(err, errsize, TL_EINVAL, "--topic value of %zu characters is too long",
                        strlen(text));
    strcpy(copy, text);

    char *first_colon = strchr(copy, ':');
    if (!first_colon)
        return tl_error(err, errsize, TL_EINVAL, "--topic '%s' has no partition count; use "
                        "TOPIC:PARTITIONS[:RF]", text);
    *first_colon = '\0';
    char *partitions = first_colon + 1;
    char *rf = strchr(partitions, ':');
    if (rf)
        *rf++ = '\0';

    int rv = tl_mock_check_topic_name(copy, err, errsize);
    if (rv != 0)
        return rv;
    strcpy(topic->name, copy);
    if (!parse_int(partitions, 1, TL_MOCK_MAX_PARTITIONS, &topic->partitions))
        return tl_error(err, errsize, TL_EINVAL, "--topic '%s': invalid partition count '%s'; "
                        "give 1 to %d", text, partitions, TL_MOCK_MAX_PARTITIONS);
    topic->replication_factor = 0;
    if (rf && !parse_int(rf, 1, TL_MOCK_MAX_BROKERS, &topic->replication_factor))
        return tl_error(err, errsize, TL_EINVAL, "--topic '%s': invalid replication factor "
                        "'%s'; give 1 to the broker count", text, rf);
    return 0;
}

/*
 * Fills opts from argv. Returns EXIT_STATUS_OK with *stop false to go on, or the exit status
 * to stop with (EXIT_STATUS_OK with *stop true after --help or --version).
 */
static int parse_options(int argc, char **argv, struct options *opts, bool *stop)
{
    static const struct option long_options[] = {
        {"name", required_argument, NULL, 'n'},
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"bootstrap-file", required_argument, NULL, 'f'},
        {"control", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    char err[512];
    int opt;

    *stop = false;
    while ((opt = getopt_long(argc, argv, "n:b:t:f:c:hV", long_options, NULL)) != -1) {
        switch (opt) {
        case 'n':
            if (opts->name)
                return usage_error("--name given twice (%s); one process hosts one cluster",
                                   optarg);
            opts->name = optarg;
            break;
        case 'b':
            if (!parse_int(optarg, 1, TL_MOCK_MAX_BROKERS, &opts->brokers))
                return usage_error("invalid --brokers '%s'; give 1 to %d", optarg,
                                   TL_MOCK_MAX_BROKERS);
            break;
        case 't':
            if (opts->topic_count == TL_MOCK_MAX_TOPICS)
                return usage_error("too many --topic options at '%s'; the limit is %d", optarg,
                                   TL_MOCK_MAX_TOPICS);
            if (parse_topic_option(optarg, &opts->topics[opts->topic_count], err,
                                   sizeof(err)) != 0)
                return usage_error("%s", err);
            for (size_t i = 0; i < opts->topic_count; i++) {
                if (strcmp(opts->topics[i].name, opts->topics[opts->topic_count].name) == 0)
                    return usage_error("topic %s is given twice", opts->topics[i].name);
            }
            opts->topic_count++;
            break;
        case 'f':
            opts->bootstrap_file = optarg;
            break;
        case 'c':
            opts->control_path = optarg;
            break;
        case 'l':
            if (!tl_log_parse_level(optarg, &opts->log_level))
                return usage_error("invalid --log-level '%s'; give error, warn, info or debug",
                                   optarg);
            break;
        case 'h':
            print_usage(stdout);
            *stop = true;
            return EXIT_STATUS_OK;
        case 'V':
            printf(PROGRAM " %s (librdkafka %s)\n", TL_VERSION, rd_kafka_version_str());
            *stop = true;
            return EXIT_STATUS_OK;
        default:
            fprintf(stderr, "Try '" PROGRAM " --help'.\n");
            return EXIT_STATUS_USAGE;
        }
    }

    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!opts->name)
        return usage_error("missing --name");
    size_t name_len = strlen(opts->name);
    if (name_len == 0 || name_len > MAX_NAME || strcspn(opts->name, " \t\r\n=\"") != name_len)
        return usage_error("invalid --name '%s'; give 1 to %d characters without spaces, '=' "
                           "or '\"'", opts->name, MAX_NAME);
    for (size_t i = 0; i < opts->topic_count; i++) {
        struct topic_option *topic = &opts->topics[i];
        if (topic->replication_factor == 0)
            topic->replication_factor = opts->brokers < 3 ? opts->brokers : 3;
        if (topic->replication_factor > opts->brokers)
            return usage_error("topic %s: replication factor %d exceeds the broker count %d",
                               topic->name, topic->replication_factor, opts->brokers);
    }
    return EXIT_STATUS_OK;
}

/* Routes librdkafka's log lines into the project's logger. */
static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *facility,
                           const char *buf)
{
    const char *region = rd_kafka_opaque(rk);
    enum tl_log_level ours = level <= LOG_ERR ? TL_LOG_ERROR
                             : level <= LOG_WARNING ? TL_LOG_WARN
                             : level <= LOG_INFO ? TL_LOG_INFO
                                                 : TL_LOG_DEBUG;
    tl_log(ours, "rdkafka", "%s region=%s facility=%s", buf, region, facility);
}

/* Writes the bootstrap line to path through a temporary file and rename(2). */
static int write_bootstrap_file(const char *path, const char *bootstrap, char *err,
                                size_t errsize)
{
    size_t len = strlen(path) + 32;
    char *tmp = tl_xmalloc(len);
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    int rv = 0;

    FILE *f = fopen(tmp, "w");
    if (!f) {
        rv = tl_error(err, errsize, TL_EIO, "creating %s failed: %s", tmp, strerror(errno));
        goto out;
    }
    fprintf(f, "%s\n", bootstrap);
    if (fclose(f) != 0) {
        rv = tl_error(err, errsize, TL_EIO, "writing %s failed: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rv = tl_error(err, errsize, TL_EIO, "renaming %s to %s failed: %s", tmp, path,
                      strerror(errno));
        unlink(tmp);
    }

out:
    free(tmp);
    return rv;
}

/*
 * Maps our log level onto librdkafka's syslog-style log_level property. At info, librdkafka
 * stays at warnings, because its notices are about the owning client, which never connects
 * ("No bootstrap.servers configured").
 */
static const char *rdkafka_log_level(enum tl_log_level level)
{
    switch (level) {
    case TL_LOG_ERROR: return "3";
    case TL_LOG_WARN: return "4";
    case TL_LOG_INFO: return "4";
    case TL_LOG_DEBUG: return "7";
    }
    return "4";
}

/*
 * Starts the cluster and serves the control socket until a stop signal; returns an exit
 * status. signal_fd is a signalfd for SIGTERM and SIGINT, which the caller has blocked.
 */
static int run(const struct options *opts, int signal_fd)
{
    char err[1024];
    char errstr[512];
    int status = EXIT_STATUS_RUNTIME;
    struct tl_mock_region region = {.name = opts->name, .brokers = opts->brokers};
    struct tl_mock_control *control = NULL;
    bool wrote_bootstrap = false;

    /* The mock cluster needs a client instance to own it; this one never connects anywhere. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", rdkafka_log_level(opts->log_level), NULL, 0);
    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    rd_kafka_conf_set_opaque(conf, (void *)opts->name);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tl_log_error("mock", "creating the mock cluster's client failed region=%s error=\"%s\"",
                     opts->name, errstr);
        return EXIT_STATUS_RUNTIME;
    }

    region.cluster = rd_kafka_mock_cluster_new(rk, opts->brokers);
    if (!region.cluster) {
        tl_log_error("mock", "starting the mock cluster failed region=%s brokers=%d", opts->name,
                     opts->brokers);
        goto out;
    }
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(region.cluster);

    bool heartbeat_topic_given = false;
    for (size_t i = 0; i < opts->topic_count; i++) {
        const struct topic_option *t = &opts->topics[i];
        heartbeat_topic_given |= strcmp(t->name, HEARTBEAT_TOPIC) == 0;
        if (tl_mock_create_topic(&region, t->name, t->partitions, t->replication_factor, err,
                                 sizeof(err)) != 0) {
            tl_log_error("mock", "start-up failed region=%s error=\"%s\"", opts->name, err);
            goto out;
        }
    }
    if (!heartbeat_topic_given &&
        tl_mock_create_topic(&region, HEARTBEAT_TOPIC, 1, opts->brokers < 3 ? opts->brokers : 3,
                             err, sizeof(err)) != 0) {
        tl_log_error("mock", "start-up failed region=%s error=\"%s\"", opts->name, err);
        goto out;
    }

    if (opts->control_path &&
        tl_mock_control_open(opts->control_path, &region, &control, err, sizeof(err)) != 0) {
        tl_log_error("mock", "start-up failed region=%s error=\"%s\"", opts->name, err);
        goto out;
    }

    if (opts->bootstrap_file) {
        if (write_bootstrap_file(opts->bootstrap_file, bootstrap, err, sizeof(err)) != 0) {
            tl_log_error("mock", "start-up failed region=%s error=\"%s\"", opts->name, err);
            goto out;
        }
        wrote_bootstrap = true;
    }

    printf("%s\n", bootstrap);
    fflush(stdout);
    tl_log_info("mock", "mock cluster ready region=%s brokers=%d topics=%zu bootstrap=%s "
                "bootstrap_file=%s control=%s", opts->name, opts->brokers, region.topic_count,
                bootstrap, opts->bootstrap_file ? opts->bootstrap_file : "-",
                opts->control_path ? opts->control_path : "-");

    if (tl_mock_control_serve(control, signal_fd, err, sizeof(err)) != 0) {
        tl_log_error("mock", "control server failed region=%s error=\"%s\"", opts->name, err);
        goto out;
    }

    struct signalfd_siginfo info;
    ssize_t n = read(signal_fd, &info, sizeof(info));
    tl_log_info("mock", "stopping region=%s signal=%s", opts->name,
                n == (ssize_t)sizeof(info) ? strsignal((int)info.ssi_signo) : "unknown");
    status = EXIT_STATUS_OK;

out:
    tl_mock_control_close(control);
    if (wrote_bootstrap)
        unlink(opts->bootstrap_file);
    if (region.cluster)
        rd_kafka_mock_cluster_destroy(region.cluster);
    rd_kafka_destroy(rk);
    tl_mock_region_free_topics(&region);
    tl_log_info("mock", "mock cluster stopped region=%s exit_status=%d", opts->name, status);
    return status;
}

int main(int argc, char **argv)
{
    struct options opts = {.brokers = DEFAULT_BROKERS, .log_level = TL_LOG_INFO};
    bool stop;

    int status = parse_options(argc, argv, &opts, &stop);
    if (status != EXIT_STATUS_OK || stop)
        return status;
    tl_log_set_level(opts.log_level);

    /*
     * Block the stop signals before librdkafka starts its threads, which inherit the mask, so
     * the signals reach only the signalfd. SIGPIPE is ignored because a control client that
     * hangs up must not end the process.
     */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &stop_signals, NULL) != 0) {
        tl_log_error("mock", "blocking SIGTERM and SIGINT failed error=\"%s\"", strerror(errno));
        return EXIT_STATUS_RUNTIME;
    }
    int signal_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
    if (signal_fd < 0) {
        tl_log_error("mock", "creating a signalfd failed error=\"%s\"", strerror(errno));
        return EXIT_STATUS_RUNTIME;
    }

    status = run(&opts, signal_fd);
    close(signal_fd);
    return status;
}
