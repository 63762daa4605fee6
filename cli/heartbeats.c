/*
 * `twinlane heartbeats tail`: print the Heartbeat messages that agents write to a region's
 * heartbeat topic, as text blocks or as one JSON object per line.
 *
 * The reader joins no consumer group and commits nothing. librdkafka only accepts assign()
 * from a handle with a group.id, so the handle carries a fixed id of its own that never reaches
 * a broker as a member. Every partition of the topic is assigned at its end, or at its start
 * with --from-beginning. A record that does not decode as a Heartbeat is reported on stderr
 * with its partition, offset and the reason, then skipped.
 *
 * This file also contains the Kafka helpers that `twinlane offsets` uses: finding a region's
 * bootstrap servers in an agent configuration, connecting a client handle, counting a topic's
 * partitions and decoding a heartbeat record. offsets.c declares them again, because the
 * command-line tool has no private header.
 *
 * Single-threaded, except the librdkafka log callback, which runs on librdkafka's threads.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "mem.h"
#include "twinlane.pb-c.h"

/* Entry point of the subcommand. main.c declares it too, next to its table of commands. */
int tl_cli_heartbeats(int argc, char **argv);

/* Helpers shared with offsets.c, which repeats these declarations. */
int tl_cli_region_from_config(const char *config_path, const char *region, char **bootstrap,
                              char **heartbeat_topic, char *err, size_t errsize);
int tl_cli_kafka_connect(const char *region, const char *bootstrap, rd_kafka_t **out, char *err,
                         size_t errsize);
void tl_cli_kafka_close(rd_kafka_t *rk);
int tl_cli_topic_partitions(rd_kafka_t *rk, const char *region, const char *topic, int *count,
                            char *err, size_t errsize);
Twinlane__Heartbeat *tl_cli_heartbeat_decode(const rd_kafka_message_t *msg, char *err,
                                             size_t errsize);

#define EXIT_OK 0
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

#define DEFAULT_HEARTBEAT_TOPIC "twinlane.heartbeats"
/* Bound on each broker round trip of the helpers (metadata, watermarks). */
#define KAFKA_TIMEOUT_MS 10000
/*
 * Largest heartbeat value decoded. A heartbeat carries one position per topic-partition and
 * region, about 30 bytes each, so 4 MiB is room for tens of thousands of partitions.
 */
#define HEARTBEAT_MAX_BYTES ((size_t)4 << 20)
/* Group id of the reader handle. assign() needs one, and the handle never joins or commits. */
#define READER_GROUP_ID "twinlane-cli-reader"
#define POLL_INTERVAL_MS 200

static const char usage_text[] =
    "Usage: twinlane heartbeats tail --region REGION (--config FILE | --bootstrap SERVERS)\n"
    "                                [OPTIONS]\n"
    "\n"
    "Print the heartbeats that twinlane agents write to the heartbeat topic of REGION, one\n"
    "block per heartbeat: agent, heartbeat number, time, the region the copy was written to,\n"
    "the WAL head, and per region the breaker state, cursor, backlog and the number of\n"
    "partition positions. Reads from the end of every partition of the topic, so only new\n"
    "heartbeats are printed unless --from-beginning is given. Joins no consumer group and\n"
    "commits no offsets. Records that are not valid Heartbeat messages are reported on stderr\n"
    "with their partition and offset, and skipped. Ctrl-C stops.\n"
    "\n"
    "Options:\n"
    "  --region REGION      region whose heartbeat topic is read (required)\n"
    "  --config FILE        agent configuration that names REGION; its bootstrap servers\n"
    "                       are used, or DATA_DIR/REGION.bootstrap for an embedded region\n"
    "                       (the agent must be running), and its heartbeat.topic\n"
    "  --bootstrap SERVERS  bootstrap servers of REGION (host:port,...), instead of --config\n"
    "  --topic TOPIC        heartbeat topic (default: heartbeat.topic of --config, else\n"
    "                       " DEFAULT_HEARTBEAT_TOPIC ")\n"
    "  --from-beginning     start at the oldest heartbeat still stored\n"
    "  --count N            stop after printing N heartbeats\n"
    "  --agent ID           print only heartbeats of agent ID\n"
    "  --json               print one JSON object per heartbeat, positions included\n"
    "  --help               print this help\n"
    "\n"
    "Exit status:\n"
    "  0  stopped by --count or Ctrl-C\n"
    "  2  invalid command line or configuration, or the topic does not exist in REGION\n"
    "  3  REGION is unreachable\n";

struct tail_options {
    const char *region;
    const char *config;
    const char *bootstrap;
    const char *topic;
    const char *agent;
    bool from_beginning;
    long count; /* 0: no limit */
    bool json;
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

/* ---- helpers shared with offsets.c ---- */

/*
 * First error line librdkafka logged for one handle, to explain a failed connection. The first
 * one names the cause ("Connection refused"); later ones tend to be summaries.
 */
struct kafka_context {
    pthread_mutex_t lock;
    char first_error[512];
};

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    struct kafka_context *ctx = rd_kafka_opaque(rk);

    /* syslog levels: 3 is LOG_ERR. */
    if (ctx && level <= 3) {
        pthread_mutex_lock(&ctx->lock);
        if (ctx->first_error[0] == '\0')
            snprintf(ctx->first_error, sizeof ctx->first_error, "%s", buf);
        pthread_mutex_unlock(&ctx->lock);
    }
    tl_log_debug("rdkafka", "%s level=%d", buf, level);
    (void)facility;
}

/* Appends "; broker error: ..." to err when librdkafka logged an error on rk. */
static void append_broker_error(rd_kafka_t *rk, char *err, size_t errsize)
{
    struct kafka_context *ctx = rd_kafka_opaque(rk);
    size_t len = strlen(err);

    pthread_mutex_lock(&ctx->lock);
    if (ctx->first_error[0] != '\0' && len < errsize)
        snprintf(err + len, errsize - len, "; broker error: %s", ctx->first_error);
    pthread_mutex_unlock(&ctx->lock);
}

/* Reads the first line of path into a new string. Returns NULL with errno set on failure. */
static char *read_first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;

    char line[4096];
    char *result = NULL;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        result = tl_xstrdup(line);
    }
    fclose(f);
    if (!result)
        errno = ENODATA;
    return result;
}

/*
 * Loads the agent configuration at config_path and looks up region. Returns 0 and sets
 * *bootstrap and *heartbeat_topic to strings the caller frees. For an embedded region the
 * servers come from DATA_DIR/REGION.bootstrap, which the running agent writes. Returns
 * TL_EINVAL when the file cannot be loaded or does not name the region, and TL_ENOTFOUND when
 * an embedded region's bootstrap file is missing, and err names the cause.
 */
int tl_cli_region_from_config(const char *config_path, const char *region, char **bootstrap,
                              char **heartbeat_topic, char *err, size_t errsize)
{
    struct tl_config cfg;
    int rc = tl_config_load(config_path, &cfg, err, errsize);
    if (rc != 0)
        return TL_EINVAL;

    int index = tl_config_region_index(&cfg, region);
    if (index < 0) {
        rc = tl_error(err, errsize, TL_EINVAL, "%s names no region \"%s\"; its regions are %s and %s",
                      config_path, region, cfg.regions[0].name, cfg.regions[1].name);
        goto out;
    }

    const struct tl_region_config *rcfg = &cfg.regions[index];
    if (!rcfg->embedded) {
        *bootstrap = tl_xstrdup(rcfg->bootstrap);
        *heartbeat_topic = tl_xstrdup(cfg.heartbeat_topic);
        goto out;
    }

    size_t len = strlen(cfg.data_dir) + strlen(region) + sizeof("/.bootstrap");
    char *path = tl_xmalloc(len);
    snprintf(path, len, "%s/%s.bootstrap", cfg.data_dir, region);
    char *servers = read_first_line(path);
    if (!servers || servers[0] == '\0') {
        rc = tl_error(err, errsize, TL_ENOTFOUND,
                      "region %s is embedded in the agent, and its address file %s cannot be "
                      "read (%s); start twinlane-agent with %s first",
                      region, path, servers ? "empty file" : strerror(errno), config_path);
        free(servers);
        free(path);
        goto out;
    }
    free(path);
    *bootstrap = servers;
    *heartbeat_topic = tl_xstrdup(cfg.heartbeat_topic);

out:
    tl_config_free(&cfg);
    return rc;
}

/*
 * Creates a consumer handle for bootstrap and checks that a broker responds within 10 s.
 * Returns 0 and sets *out, to be released with tl_cli_kafka_close. Returns TL_EINVAL when
 * librdkafka rejects the settings, or TL_ETIMEDOUT when no broker responded. err then names
 * the region and the first broker error. The handle carries a group.id (assign() needs one) but
 * never joins the group or commits; it may also run Admin API requests.
 */
int tl_cli_kafka_connect(const char *region, const char *bootstrap, rd_kafka_t **out, char *err,
                         size_t errsize)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    static const char *const settings[][2] = {
        {"group.id", READER_GROUP_ID},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"allow.auto.create.topics", "false"},
        {"enable.partition.eof", "false"},
    };
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return tl_error(err, errsize, TL_EINVAL, "invalid bootstrap servers \"%s\" for region %s: %s",
                        bootstrap, region, errstr);
    }
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK)
            tl_panic("librdkafka rejected %s=%s: %s", settings[i][0], settings[i][1], errstr);
    }

    struct kafka_context *ctx = tl_xcalloc(1, sizeof *ctx);
    pthread_mutex_init(&ctx->lock, NULL);
    rd_kafka_conf_set_opaque(conf, ctx);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);

    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        pthread_mutex_destroy(&ctx->lock);
        free(ctx);
        return tl_error(err, errsize, TL_EINVAL, "cannot create a Kafka client for region %s: %s",
                        region, errstr);
    }

    /* A metadata request for no topic in particular proves that a broker responds. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, NULL, &md, KAFKA_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        tl_error(err, errsize, TL_ETIMEDOUT, "region %s at %s is unreachable: no broker responded "
                 "within %d s (%s)", region, bootstrap, KAFKA_TIMEOUT_MS / 1000,
                 rd_kafka_err2str(kerr));
        append_broker_error(rk, err, errsize);
        tl_cli_kafka_close(rk);
        return TL_ETIMEDOUT;
    }
    rd_kafka_metadata_destroy(md);
    *out = rk;
    return 0;
}

/* Destroys a handle from tl_cli_kafka_connect and its context. NULL is ignored. */
void tl_cli_kafka_close(rd_kafka_t *rk)
{
    if (!rk)
        return;
    struct kafka_context *ctx = rd_kafka_opaque(rk);
    rd_kafka_destroy(rk);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

/*
 * Sets *count to the number of partitions of topic in the region behind rk. Returns 0,
 * TL_ENOTFOUND when the topic does not exist, or TL_ETIMEDOUT when the metadata request
 * failed. err names the topic and the region.
 */
int tl_cli_topic_partitions(rd_kafka_t *rk, const char *region, const char *topic, int *count,
                            char *err, size_t errsize)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, KAFKA_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        tl_error(err, errsize, TL_ETIMEDOUT, "metadata of topic %s in region %s failed: %s", topic,
                 region, rd_kafka_err2str(kerr));
        append_broker_error(rk, err, errsize);
        return TL_ETIMEDOUT;
    }

    int rc = 0;
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
        md->topics[0].partition_cnt == 0) {
        rd_kafka_resp_err_t terr = md->topic_cnt == 1 ? md->topics[0].err
                                                      : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        rc = tl_error(err, errsize, TL_ENOTFOUND, "topic %s not found in region %s (%s)", topic,
                      region, rd_kafka_err2str(terr));
    } else {
        *count = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/*
 * Decodes the value of msg as a Heartbeat. Returns a message to free with
 * twinlane__heartbeat__free_unpacked, or NULL with the reason in err. Values over 4 MiB are
 * rejected before decoding, because protobuf-c allocates in proportion to its input.
 */
Twinlane__Heartbeat *tl_cli_heartbeat_decode(const rd_kafka_message_t *msg, char *err,
                                             size_t errsize)
{
    if (!msg->payload || msg->len == 0) {
        tl_error(err, errsize, TL_EPROTO, "empty value, not a Heartbeat message");
        return NULL;
    }
    if (msg->len > HEARTBEAT_MAX_BYTES) {
        tl_error(err, errsize, TL_ETOOBIG, "value of %zu bytes exceeds the %zu-byte limit for a "
                 "Heartbeat message", msg->len, HEARTBEAT_MAX_BYTES);
        return NULL;
    }

    Twinlane__Heartbeat *hb = twinlane__heartbeat__unpack(NULL, msg->len, msg->payload);
    if (!hb)
        tl_error(err, errsize, TL_EPROTO, "%zu-byte value is not a valid Heartbeat message "
                 "(protobuf decoding failed, or a required field is missing)", msg->len);
    return hb;
}

/* ---- tail ---- */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("twinlane heartbeats: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("; run `twinlane heartbeats tail --help` for usage\n", stderr);
    return EXIT_USAGE;
}

/*
 * Parses the arguments after "tail". Returns 0, EXIT_USAGE after printing why, or -1 after
 * printing the help.
 */
static int parse_options(int argc, char **argv, struct tail_options *opts)
{
    enum {
        OPT_REGION = 256, OPT_CONFIG, OPT_BOOTSTRAP, OPT_TOPIC, OPT_FROM_BEGINNING, OPT_COUNT,
        OPT_JSON, OPT_AGENT, OPT_HELP,
    };
    static const struct option long_options[] = {
        {"region", required_argument, NULL, OPT_REGION},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"from-beginning", no_argument, NULL, OPT_FROM_BEGINNING},
        {"count", required_argument, NULL, OPT_COUNT},
        {"json", no_argument, NULL, OPT_JSON},
        {"agent", required_argument, NULL, OPT_AGENT},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };

    *opts = (struct tail_options){0};
    opterr = 0;
    optind = 1;
    for (;;) {
        int option = getopt_long(argc, argv, ":", long_options, NULL);
        if (option == -1)
            break;

        char *end = NULL;
        switch (option) {
        case OPT_REGION: opts->region = optarg; break;
        case OPT_CONFIG: opts->config = optarg; break;
        case OPT_BOOTSTRAP: opts->bootstrap = optarg; break;
        case OPT_TOPIC: opts->topic = optarg; break;
        case OPT_FROM_BEGINNING: opts->from_beginning = true; break;
        case OPT_JSON: opts->json = true; break;
        case OPT_AGENT: opts->agent = optarg; break;
        case OPT_HELP: fputs(usage_text, stdout); return -1;
        case OPT_COUNT:
            errno = 0;
            opts->count = strtol(optarg, &end, 10);
            if (optarg[0] == '\0' || *end != '\0' || errno != 0 || opts->count < 1)
                return usage_error("invalid --count \"%s\"; expected a whole number of at least 1",
                                   optarg);
            break;
        case ':': return usage_error("option %s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
    }

    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!opts->region || opts->region[0] == '\0')
        return usage_error("missing --region");
    if (!opts->config == !opts->bootstrap)
        return usage_error("give exactly one of --config and --bootstrap");
    if (opts->topic && opts->topic[0] == '\0')
        return usage_error("empty --topic");
    return 0;
}

/* Formats a Unix time in milliseconds as "2026-01-31T12:00:00.123Z". */
static void format_time(int64_t ms, char *out, size_t outsize)
{
    time_t seconds = (time_t)(ms / 1000);
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        seconds--;
    }
    struct tm tm;
    gmtime_r(&seconds, &tm);
    snprintf(out, outsize, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

static void print_text(const rd_kafka_message_t *msg, const Twinlane__Heartbeat *hb)
{
    char time_text[64];
    format_time(hb->timestamp_ms, time_text, sizeof time_text);
    printf("agent %s (home %s) heartbeat %llu at %s, written to %s, wal head %llu "
           "[partition %d offset %lld]\n",
           hb->agent_id, hb->home_region, (unsigned long long)hb->heartbeat_seq, time_text,
           hb->written_to, (unsigned long long)hb->wal_next_seq, (int)msg->partition,
           (long long)msg->offset);
    for (size_t i = 0; i < hb->n_regions; i++) {
        const Twinlane__RegionStatus *region = hb->regions[i];
        printf("  %-12s breaker %-9s cursor %llu backlog %llu positions %zu\n", region->name,
               region->breaker_state, (unsigned long long)region->cursor,
               (unsigned long long)region->backlog, region->n_positions);
    }
    fflush(stdout);
}

static void print_json(const rd_kafka_message_t *msg, const Twinlane__Heartbeat *hb)
{
    char time_text[64];
    format_time(hb->timestamp_ms, time_text, sizeof time_text);

    json_t *regions = json_array();
    for (size_t i = 0; i < hb->n_regions; i++) {
        const Twinlane__RegionStatus *region = hb->regions[i];
        json_t *positions = json_array();
        for (size_t p = 0; p < region->n_positions; p++) {
            const Twinlane__PartitionPosition *pos = region->positions[p];
            json_array_append_new(positions,
                                  json_pack("{s:s, s:i, s:I, s:I}", "topic", pos->topic,
                                            "partition", (int)pos->partition, "offset",
                                            (json_int_t)pos->offset, "seq",
                                            (json_int_t)pos->seq));
        }
        json_array_append_new(regions,
                              json_pack("{s:s, s:s, s:I, s:I, s:o}", "name", region->name,
                                        "breaker_state", region->breaker_state, "cursor",
                                        (json_int_t)region->cursor, "backlog",
                                        (json_int_t)region->backlog, "positions", positions));
    }

    json_t *root = json_pack("{s:i, s:I, s:s, s:s, s:I, s:I, s:s, s:I, s:s, s:o}", "partition",
                             (int)msg->partition, "offset", (json_int_t)msg->offset, "agent_id",
                             hb->agent_id, "home_region", hb->home_region, "heartbeat_seq",
                             (json_int_t)hb->heartbeat_seq, "timestamp_ms",
                             (json_int_t)hb->timestamp_ms, "time", time_text, "wal_next_seq",
                             (json_int_t)hb->wal_next_seq, "written_to", hb->written_to,
                             "regions", regions);
    if (!root)
        tl_panic("cannot build the JSON object of a heartbeat");
    json_dumpf(root, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(root);
}

/* Assigns every partition of topic at its start or its end. */
static void assign_all(rd_kafka_t *rk, const char *topic, int partitions, bool from_beginning)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset =
            from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        tl_panic("assigning the partitions of %s failed: %s", topic, rd_kafka_err2str(kerr));
}

/* Prints heartbeats until --count is reached or a signal arrives. */
static void tail(rd_kafka_t *rk, const struct tail_options *opts)
{
    static struct tl_ratelimit consumer_errors = TL_RATELIMIT_INIT(10000, 5);
    long printed = 0;

    while (!stop_requested && (opts->count == 0 || printed < opts->count)) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, POLL_INTERVAL_MS);
        if (!msg)
            continue;

        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            uint64_t suppressed = 0;
            if (tl_ratelimit_allow(&consumer_errors, &suppressed))
                fprintf(stderr, "twinlane heartbeats: region %s: %s (%llu similar errors not "
                        "shown); still trying\n", opts->region, rd_kafka_message_errstr(msg),
                        (unsigned long long)suppressed);
            rd_kafka_message_destroy(msg);
            continue;
        }

        char reason[256];
        Twinlane__Heartbeat *hb = tl_cli_heartbeat_decode(msg, reason, sizeof reason);
        if (!hb) {
            fprintf(stderr, "twinlane heartbeats: partition %d offset %lld: %s; skipped\n",
                    (int)msg->partition, (long long)msg->offset, reason);
            rd_kafka_message_destroy(msg);
            continue;
        }

        if (!opts->agent || strcmp(opts->agent, hb->agent_id) == 0) {
            if (opts->json)
                print_json(msg, hb);
            else
                print_text(msg, hb);
            printed++;
        }
        twinlane__heartbeat__free_unpacked(hb, NULL);
        rd_kafka_message_destroy(msg);
    }
}

static void install_signal_handlers(void)
{
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int run_tail(int argc, char **argv)
{
    struct tail_options opts;
    int exit_code = parse_options(argc, argv, &opts);
    if (exit_code == -1)
        return EXIT_OK;
    if (exit_code != 0)
        return exit_code;

    char err[1024];
    char *bootstrap = NULL;
    char *config_topic = NULL;
    rd_kafka_t *rk = NULL;
    if (opts.config) {
        int rc = tl_cli_region_from_config(opts.config, opts.region, &bootstrap, &config_topic,
                                           err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "twinlane heartbeats: %s\n", err);
            exit_code = rc == TL_ENOTFOUND ? EXIT_UNREACHABLE : EXIT_USAGE;
            goto out;
        }
    } else {
        bootstrap = tl_xstrdup(opts.bootstrap);
    }
    const char *topic = opts.topic ? opts.topic
                        : config_topic ? config_topic
                                       : DEFAULT_HEARTBEAT_TOPIC;

    if (tl_cli_kafka_connect(opts.region, bootstrap, &rk, err, sizeof err) != 0) {
        fprintf(stderr, "twinlane heartbeats: %s\n", err);
        exit_code = EXIT_UNREACHABLE;
        goto out;
    }
    int partitions = 0;
    int rc = tl_cli_topic_partitions(rk, opts.region, topic, &partitions, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "twinlane heartbeats: %s%s\n", err,
                rc == TL_ENOTFOUND ? "; check --topic, or whether an agent writes heartbeats there"
                                   : "");
        exit_code = rc == TL_ENOTFOUND ? EXIT_USAGE : EXIT_UNREACHABLE;
        goto out;
    }

    install_signal_handlers();
    assign_all(rk, topic, partitions, opts.from_beginning);
    tail(rk, &opts);
    exit_code = EXIT_OK;

out:
    tl_cli_kafka_close(rk);
    free(bootstrap);
    free(config_topic);
    return exit_code;
}

int tl_cli_heartbeats(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "tail") == 0)
        return run_tail(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (argc < 2)
        return usage_error("missing subcommand; the only one is \"tail\"");
    return usage_error("unknown subcommand \"%s\"; the only one is \"tail\"", argv[1]);
}
