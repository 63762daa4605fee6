/*
 * `twinlane offsets translate`: move a consumer group's committed offsets from one region to
 * the other, using the positions that agents publish in their heartbeats.
 *
 * Both regions contain the same events in the same partitions, and every agent writes its events
 * of a partition to both in sequence-number order. The offsets differ, though, because one region
 * may contain records the other lacks, or may have started its log later. Every heartbeat carries, per region
 * and topic-partition, the offset and sequence number (seq) of the newest event the agent wrote
 * there. Read over time, these are pairs (seq, offset) per agent, partition and region: points
 * that tie one region's offsets to the other's.
 *
 * The rule, per partition with committed offset O in the source region (FROM):
 *   1. The group has consumed the records at offsets below O in FROM.
 *   2. Per agent that has points for the partition: take its FROM point with the largest offset
 *      below O, and that point's seq S. In the target region (TO), take the agent's point with
 *      the largest seq at or below S, at offset o2. The agent's answer is o2 + 1: every event of
 *      this agent after S lies after o2 in TO, so nothing unconsumed is skipped. Events between
 *      S and O in FROM are consumed a second time, which is the safe direction. An agent with
 *      no FROM point below O, or no TO point at or below S, answers TO's log start.
 *   3. The partition's offset is the minimum over agents, or TO's log start when no agent has
 *      points for it ("no heartbeat: log start").
 *   4. The result is clamped to TO's [low watermark, high watermark] ("clamped").
 * Records in TO that no agent wrote (other producers) are outside this rule.
 *
 * Flow: read the group's committed offsets in FROM (Admin API), then every heartbeat in TO's
 * heartbeat topic from the start up to the end offsets seen at start, translate, print, and
 * with --apply commit the result in TO after checking that the group has no active members
 * there.
 *
 * Single-threaded; librdkafka's own threads only call the log callback in heartbeats.c.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "error.h"
#include "log.h"
#include "mem.h"
#include "twinlane.pb-c.h"

/* Entry point of the subcommand. main.c declares it too, next to its table of commands. */
int tl_cli_offsets(int argc, char **argv);

/* Defined in heartbeats.c, which documents them. */
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
#define EXIT_PARTIAL 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define EXIT_GROUP_ACTIVE 4

#define DEFAULT_HEARTBEAT_TOPIC "twinlane.heartbeats"
#define KAFKA_TIMEOUT_MS 10000
/* Admin requests: the broker's deadline, and ours for the result event on top of it. */
#define ADMIN_TIMEOUT_MS 30000
#define ADMIN_WAIT_MS (ADMIN_TIMEOUT_MS + 5000)
/* Reading the heartbeat topic fails when no record arrives for this long. */
#define HEARTBEAT_STALL_MS 30000
#define MAX_TOPICS 1024
#define MAX_REPORTED_UNDECODABLE 10

static const char usage_text[] =
    "Usage: twinlane offsets translate --group GROUP --from REGION1 --to REGION2\n"
    "           (--config FILE | --from-bootstrap SERVERS1 --to-bootstrap SERVERS2)\n"
    "           [--topic TOPIC]... [--heartbeat-topic TOPIC] [--apply] [--yes] [--json]\n"
    "\n"
    "Translate the offsets that consumer group GROUP committed in REGION1 into offsets of\n"
    "REGION2, so the group can resume there without skipping any event. The translation uses\n"
    "the heartbeats that twinlane agents write to REGION2's heartbeat topic.\n"
    "\n"
    "Rule, per partition with committed offset O in REGION1 (records below O are consumed):\n"
    "  - per agent: take its heartbeat position in REGION1 with the largest offset below O,\n"
    "    and that event's sequence number S. Take its position in REGION2 with the largest\n"
    "    sequence number at or below S, at offset o2. The agent's offset is o2 + 1. Events\n"
    "    written after S are never skipped. Those between S and O are consumed again;\n"
    "  - an agent with no REGION1 position below O, or no REGION2 position at or below S,\n"
    "    gives REGION2's log start (low watermark);\n"
    "  - the partition's offset is the minimum over agents (\"mapped\"), or REGION2's log\n"
    "    start when no heartbeat has a position for the partition (\"no heartbeat: log start\");\n"
    "  - the result is kept within REGION2's low and high watermarks (\"clamped\").\n"
    "Records that no agent wrote are not covered. Partitions without a committed offset in\n"
    "REGION1 are listed and left alone.\n"
    "\n"
    "Options:\n"
    "  --group GROUP              consumer group (required)\n"
    "  --from REGION1             region the group consumed from (required)\n"
    "  --to REGION2               region the group moves to (required)\n"
    "  --config FILE              agent configuration naming both regions: bootstrap servers,\n"
    "                             DATA_DIR/REGION.bootstrap for embedded regions (the agent\n"
    "                             must be running), and heartbeat.topic\n"
    "  --from-bootstrap SERVERS1  bootstrap servers of REGION1, instead of --config\n"
    "  --to-bootstrap SERVERS2    bootstrap servers of REGION2, instead of --config\n"
    "  --topic TOPIC              translate only this topic (repeatable; default: every topic\n"
    "                             the group has committed offsets for in REGION1)\n"
    "  --heartbeat-topic TOPIC    heartbeat topic (default: heartbeat.topic of --config, else\n"
    "                             " DEFAULT_HEARTBEAT_TOPIC ")\n"
    "  --apply                    commit the translated offsets for GROUP in REGION2. Rejected\n"
    "                             while GROUP has members or is rebalancing in REGION2. Asks\n"
    "                             for confirmation on a terminal\n"
    "  --yes                      commit without asking; required for --apply when standard\n"
    "                             input is not a terminal\n"
    "  --json                     print one JSON object instead of the table\n"
    "  --help                     print this help\n"
    "\n"
    "Exit status:\n"
    "  0  every partition was translated (and committed with --apply)\n"
    "  1  some partitions could not be translated or committed, or the group has no\n"
    "     committed offsets in REGION1\n"
    "  2  invalid command line or configuration, a topic not found, or --apply without\n"
    "     --yes when standard input is not a terminal\n"
    "  3  a region is unreachable\n"
    "  4  GROUP has active members in REGION2; stop its consumers there first\n";

struct translate_options {
    const char *group;
    const char *from;
    const char *to;
    const char *config;
    const char *from_bootstrap;
    const char *to_bootstrap;
    const char *topics[MAX_TOPICS];
    size_t topic_count;
    const char *heartbeat_topic;
    bool apply;
    bool yes;
    bool json;
};

/* One heartbeat position: the event with sequence number seq is at offset in a partition. */
struct point {
    uint64_t seq;
    int64_t offset;
};

struct point_list {
    struct point *items;
    size_t count;
    size_t cap;
};

/* Source of a partition's offset in the target region. */
enum method {
    METHOD_MAPPED,
    METHOD_LOG_START,
    METHOD_CLAMPED,
    METHOD_NOT_COMMITTED, /* the group has no offset for the partition in the source region */
    METHOD_ERROR,
};

/* One agent's heartbeat positions in one topic-partition, in both regions. */
struct track {
    char *agent;
    size_t row;
    struct point_list from;
    struct point_list to;
    struct track *next_in_row;
};

/* One topic-partition of the group: its committed offset and the translation. */
struct row {
    char *topic;
    int32_t partition;
    int64_t committed; /* in the source region; RD_KAFKA_OFFSET_INVALID when none */
    struct track *tracks;

    enum method method;
    int64_t offset; /* in the target region */
    int64_t low;
    int64_t high;
    const char *agent; /* agent whose result was the minimum; NULL when none */
    uint64_t seq;      /* that agent's FROM point's seq */
    char detail[256];  /* reason for a log start, a clamp or an error */

    bool applied;
    char apply_error[256];
};

/* Open-addressing map from (agent or NULL, topic, partition) to an array index. */
struct map_entry {
    const char *agent;
    const char *topic;
    int32_t partition;
    size_t index;
    bool used;
};

struct map {
    struct map_entry *entries;
    size_t cap; /* a power of two */
    size_t count;
};

struct translate {
    struct translate_options opts;
    char *from_bootstrap;
    char *to_bootstrap;
    char *heartbeat_topic;
    rd_kafka_t *from_rk;
    rd_kafka_t *to_rk;

    struct row *rows;
    size_t row_count;
    size_t row_cap;
    struct map row_map;

    struct track **tracks;
    size_t track_count;
    size_t track_cap;
    struct map track_map;

    uint64_t heartbeats_read;
    uint64_t undecodable;
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("twinlane offsets: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("; run `twinlane offsets translate --help` for usage\n", stderr);
    return EXIT_USAGE;
}

static int fail(int exit_code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "twinlane offsets: <message>" on stderr and returns exit_code. */
static int fail(int exit_code, const char *fmt, ...)
{
    va_list ap;
    fputs("twinlane offsets: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return exit_code;
}

/* ---- map ---- */

static uint64_t hash_key(const char *agent, const char *topic, int32_t partition)
{
    /* FNV-1a over both strings with a separator, then the partition. */
    uint64_t h = 1469598103934665603ULL;
    for (const char *s = agent ? agent : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL;
    for (const char *s = topic; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (h ^ (uint32_t)partition) * 1099511628211ULL;
}

static bool key_equal(const struct map_entry *e, const char *agent, const char *topic,
                      int32_t partition)
{
    if (e->partition != partition || strcmp(e->topic, topic) != 0)
        return false;
    if (!agent || !e->agent)
        return agent == e->agent;
    return strcmp(e->agent, agent) == 0;
}

static struct map_entry *map_slot(const struct map *m, const char *agent, const char *topic,
                                  int32_t partition)
{
    size_t i = (size_t)hash_key(agent, topic, partition) & (m->cap - 1);
    while (m->entries[i].used && !key_equal(&m->entries[i], agent, topic, partition))
        i = (i + 1) & (m->cap - 1);
    return &m->entries[i];
}

/* Returns true and sets *index when the key is present. */
static bool map_get(const struct map *m, const char *agent, const char *topic, int32_t partition,
                    size_t *index)
{
    if (m->cap == 0)
        return false;
    const struct map_entry *e = map_slot(m, agent, topic, partition);
    if (!e->used)
        return false;
    *index = e->index;
    return true;
}

/* Adds a key that is not present. The strings must outlive the map. */
static void map_put(struct map *m, const char *agent, const char *topic, int32_t partition,
                    size_t index)
{
    if ((m->count + 1) * 2 > m->cap) {
        struct map old = *m;
        m->cap = old.cap ? old.cap * 2 : 64;
        m->entries = tl_xcalloc(m->cap, sizeof *m->entries);
        m->count = 0;
        for (size_t i = 0; i < old.cap; i++) {
            if (old.entries[i].used)
                map_put(m, old.entries[i].agent, old.entries[i].topic, old.entries[i].partition,
                        old.entries[i].index);
        }
        free(old.entries);
    }
    *map_slot(m, agent, topic, partition) = (struct map_entry){
        .agent = agent, .topic = topic, .partition = partition, .index = index, .used = true};
    m->count++;
}

/* ---- command line ---- */

/*
 * Parses the arguments after "translate". Returns 0, EXIT_USAGE after printing why, or -1 after
 * printing the help.
 */
static int parse_options(int argc, char **argv, struct translate_options *opts)
{
    enum {
        OPT_GROUP = 256, OPT_FROM, OPT_TO, OPT_CONFIG, OPT_FROM_BOOTSTRAP, OPT_TO_BOOTSTRAP,
        OPT_TOPIC, OPT_HEARTBEAT_TOPIC, OPT_APPLY, OPT_YES, OPT_JSON, OPT_HELP,
    };
    static const struct option long_options[] = {
        {"group", required_argument, NULL, OPT_GROUP},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"from-bootstrap", required_argument, NULL, OPT_FROM_BOOTSTRAP},
        {"to-bootstrap", required_argument, NULL, OPT_TO_BOOTSTRAP},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"heartbeat-topic", required_argument, NULL, OPT_HEARTBEAT_TOPIC},
        {"apply", no_argument, NULL, OPT_APPLY},
        {"yes", no_argument, NULL, OPT_YES},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };

    *opts = (struct translate_options){0};
    opterr = 0;
    optind = 1;
    for (;;) {
        int option = getopt_long(argc, argv, ":", long_options, NULL);
        if (option == -1)
            break;

        switch (option) {
        case OPT_GROUP: opts->group = optarg; break;
        case OPT_FROM: opts->from = optarg; break;
        case OPT_TO: opts->to = optarg; break;
        case OPT_CONFIG: opts->config = optarg; break;
        case OPT_FROM_BOOTSTRAP: opts->from_bootstrap = optarg; break;
        case OPT_TO_BOOTSTRAP: opts->to_bootstrap = optarg; break;
        case OPT_HEARTBEAT_TOPIC: opts->heartbeat_topic = optarg; break;
        case OPT_APPLY: opts->apply = true; break;
        case OPT_YES: opts->yes = true; break;
        case OPT_JSON: opts->json = true; break;
        case OPT_HELP: fputs(usage_text, stdout); return -1;
        case OPT_TOPIC:
            if (optarg[0] == '\0')
                return usage_error("empty --topic");
            if (opts->topic_count == MAX_TOPICS)
                return usage_error("more than %d --topic options", MAX_TOPICS);
            opts->topics[opts->topic_count++] = optarg;
            break;
        case ':': return usage_error("option %s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
    }

    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!opts->group || opts->group[0] == '\0')
        return usage_error("missing --group");
    if (!opts->from || opts->from[0] == '\0')
        return usage_error("missing --from");
    if (!opts->to || opts->to[0] == '\0')
        return usage_error("missing --to");
    if (strcmp(opts->from, opts->to) == 0)
        return usage_error("--from and --to both name region \"%s\"", opts->from);
    if (opts->config && (opts->from_bootstrap || opts->to_bootstrap))
        return usage_error("--config excludes --from-bootstrap and --to-bootstrap");
    if (!opts->config && (!opts->from_bootstrap || !opts->to_bootstrap))
        return usage_error("give --config, or both --from-bootstrap and --to-bootstrap");
    if (opts->heartbeat_topic && opts->heartbeat_topic[0] == '\0')
        return usage_error("empty --heartbeat-topic");
    if (opts->yes && !opts->apply)
        return usage_error("--yes only applies to --apply");
    if (opts->apply && !opts->yes && !isatty(STDIN_FILENO))
        return usage_error("--apply asks for confirmation, but standard input is not a "
                           "terminal; pass --yes to commit without asking");
    return 0;
}

/* ---- connecting ---- */

/* Finds both regions' servers and the heartbeat topic, then connects. Returns an exit code. */
static int connect_regions(struct translate *t)
{
    char err[1024];
    char *config_topic = NULL;

    if (t->opts.config) {
        char *from_topic = NULL;
        int rc = tl_cli_region_from_config(t->opts.config, t->opts.from, &t->from_bootstrap,
                                           &from_topic, err, sizeof err);
        free(from_topic);
        if (rc == 0)
            rc = tl_cli_region_from_config(t->opts.config, t->opts.to, &t->to_bootstrap,
                                           &config_topic, err, sizeof err);
        if (rc != 0)
            return fail(rc == TL_ENOTFOUND ? EXIT_UNREACHABLE : EXIT_USAGE, "%s", err);
    } else {
        t->from_bootstrap = tl_xstrdup(t->opts.from_bootstrap);
        t->to_bootstrap = tl_xstrdup(t->opts.to_bootstrap);
    }
    t->heartbeat_topic = tl_xstrdup(t->opts.heartbeat_topic ? t->opts.heartbeat_topic
                                    : config_topic          ? config_topic
                                                            : DEFAULT_HEARTBEAT_TOPIC);
    free(config_topic);

    if (tl_cli_kafka_connect(t->opts.from, t->from_bootstrap, &t->from_rk, err, sizeof err) != 0)
        return fail(EXIT_UNREACHABLE, "%s", err);
    if (tl_cli_kafka_connect(t->opts.to, t->to_bootstrap, &t->to_rk, err, sizeof err) != 0)
        return fail(EXIT_UNREACHABLE, "%s", err);
    return EXIT_OK;
}

/* ---- step 1: committed offsets in the source region ---- */

/* Adds a topic-partition. Returns NULL when it is already present. */
static struct row *add_row(struct translate *t, const char *topic, int32_t partition,
                           int64_t committed)
{
    size_t existing;
    if (map_get(&t->row_map, NULL, topic, partition, &existing))
        return NULL;

    if (t->row_count == t->row_cap) {
        t->row_cap = t->row_cap ? t->row_cap * 2 : 16;
        t->rows = tl_xrealloc(t->rows, t->row_cap * sizeof *t->rows);
        /* The map points at the rows' topic strings, which do not move with the array. */
    }
    struct row *row = &t->rows[t->row_count];
    *row = (struct row){
        .topic = tl_xstrdup(topic),
        .partition = partition,
        .committed = committed,
        .offset = RD_KAFKA_OFFSET_INVALID,
    };
    map_put(&t->row_map, NULL, row->topic, partition, t->row_count);
    t->row_count++;
    return row;
}

static int compare_rows(const void *a, const void *b)
{
    const struct row *x = a;
    const struct row *y = b;
    int c = strcmp(x->topic, y->topic);
    if (c != 0)
        return c;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* Waits for the result event of an admin request on queue. Returns NULL after ADMIN_WAIT_MS. */
static rd_kafka_event_t *wait_admin_result(rd_kafka_queue_t *queue)
{
    return rd_kafka_queue_poll(queue, ADMIN_WAIT_MS);
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op)
{
    char errstr[256];
    rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, op);
    if (rd_kafka_AdminOptions_set_request_timeout(options, ADMIN_TIMEOUT_MS, errstr,
                                                  sizeof errstr) != RD_KAFKA_RESP_ERR_NO_ERROR)
        tl_panic("setting an admin request timeout failed: %s", errstr);
    return options;
}

static bool is_unreachable_error(rd_kafka_resp_err_t kerr)
{
    return kerr == RD_KAFKA_RESP_ERR__TIMED_OUT || kerr == RD_KAFKA_RESP_ERR__TRANSPORT ||
           kerr == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
           kerr == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
}

/*
 * Reads the group's committed offsets in the source region into t->rows: for the --topic
 * topics (every partition, committed or not), or for every topic the group committed.
 * Returns an exit code.
 */
static int read_committed(struct translate *t)
{
    char err[1024];
    rd_kafka_topic_partition_list_t *requested = NULL;

    if (t->opts.topic_count > 0) {
        requested = rd_kafka_topic_partition_list_new((int)t->opts.topic_count);
        for (size_t i = 0; i < t->opts.topic_count; i++) {
            int partitions = 0;
            int rc = tl_cli_topic_partitions(t->from_rk, t->opts.from, t->opts.topics[i],
                                             &partitions, err, sizeof err);
            if (rc != 0) {
                rd_kafka_topic_partition_list_destroy(requested);
                return fail(rc == TL_ENOTFOUND ? EXIT_USAGE : EXIT_UNREACHABLE, "%s", err);
            }
            for (int p = 0; p < partitions; p++) {
                if (!rd_kafka_topic_partition_list_find(requested, t->opts.topics[i], p))
                    rd_kafka_topic_partition_list_add(requested, t->opts.topics[i], p);
            }
        }
    }

    rd_kafka_ListConsumerGroupOffsets_t *request =
        rd_kafka_ListConsumerGroupOffsets_new(t->opts.group, requested);
    if (requested)
        rd_kafka_topic_partition_list_destroy(requested);
    rd_kafka_AdminOptions_t *options =
        admin_options(t->from_rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(t->from_rk);
    rd_kafka_ListConsumerGroupOffsets(t->from_rk, &request, 1, options, queue);
    rd_kafka_ListConsumerGroupOffsets_destroy(request);
    rd_kafka_AdminOptions_destroy(options);

    int exit_code = EXIT_OK;
    rd_kafka_event_t *event = wait_admin_result(queue);
    if (!event) {
        exit_code = fail(EXIT_UNREACHABLE, "reading the offsets of group %s in region %s timed "
                         "out after %d s", t->opts.group, t->opts.from, ADMIN_WAIT_MS / 1000);
        goto out;
    }
    rd_kafka_resp_err_t kerr = rd_kafka_event_error(event);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        exit_code = fail(is_unreachable_error(kerr) ? EXIT_UNREACHABLE : EXIT_PARTIAL,
                         "reading the offsets of group %s in region %s failed: %s",
                         t->opts.group, t->opts.from, rd_kafka_event_error_string(event));
        goto out;
    }

    size_t group_count = 0;
    const rd_kafka_group_result_t **groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
        rd_kafka_event_ListConsumerGroupOffsets_result(event), &group_count);
    const rd_kafka_error_t *group_error = group_count == 1 ? rd_kafka_group_result_error(groups[0])
                                                           : NULL;
    if (group_count != 1 || group_error) {
        exit_code = fail(group_error && is_unreachable_error(rd_kafka_error_code(group_error))
                             ? EXIT_UNREACHABLE
                             : EXIT_PARTIAL,
                         "reading the offsets of group %s in region %s failed: %s",
                         t->opts.group, t->opts.from,
                         group_error ? rd_kafka_error_string(group_error)
                                     : "no result for the group");
        goto out;
    }

    const rd_kafka_topic_partition_list_t *offsets = rd_kafka_group_result_partitions(groups[0]);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        struct row *row = add_row(t, tp->topic, tp->partition,
                                  tp->err == RD_KAFKA_RESP_ERR_NO_ERROR ? tp->offset
                                                                        : RD_KAFKA_OFFSET_INVALID);
        if (row && tp->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            row->method = METHOD_ERROR;
            snprintf(row->detail, sizeof row->detail, "reading the committed offset failed: %s",
                     rd_kafka_err2str(tp->err));
        }
    }
    if (t->row_count == 0) {
        exit_code = fail(EXIT_PARTIAL, "group %s has no committed offsets in region %s; check "
                         "the group name, or name its topics with --topic", t->opts.group,
                         t->opts.from);
        goto out;
    }
    qsort(t->rows, t->row_count, sizeof *t->rows, compare_rows);
    t->row_map.count = 0;
    memset(t->row_map.entries, 0, t->row_map.cap * sizeof *t->row_map.entries);
    for (size_t i = 0; i < t->row_count; i++)
        map_put(&t->row_map, NULL, t->rows[i].topic, t->rows[i].partition, i);

out:
    if (event)
        rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
    return exit_code;
}

/* ---- step 2: heartbeat positions from the target region ---- */

/*
 * NOTE: every distinct position stays in memory (16 bytes each) until the end, because the
 * target-region lookup needs the final source-region seq. A heartbeat topic that keeps weeks
 * of busy partitions makes this grow to that many points per partition and agent.
 */
static void point_add(struct point_list *list, uint64_t seq, int64_t offset)
{
    /* An idle partition repeats its last position in every heartbeat. */
    if (list->count > 0 && list->items[list->count - 1].seq == seq &&
        list->items[list->count - 1].offset == offset)
        return;
    if (list->count == list->cap) {
        list->cap = list->cap ? list->cap * 2 : 8;
        list->items = tl_xrealloc(list->items, list->cap * sizeof *list->items);
    }
    list->items[list->count++] = (struct point){.seq = seq, .offset = offset};
}

static struct track *find_track(struct translate *t, const char *agent, size_t row_index)
{
    struct row *row = &t->rows[row_index];
    size_t index;
    if (map_get(&t->track_map, agent, row->topic, row->partition, &index))
        return t->tracks[index];

    if (t->track_count == t->track_cap) {
        t->track_cap = t->track_cap ? t->track_cap * 2 : 16;
        t->tracks = tl_xrealloc(t->tracks, t->track_cap * sizeof *t->tracks);
    }
    struct track *track = tl_xcalloc(1, sizeof *track);
    track->agent = tl_xstrdup(agent);
    track->row = row_index;
    track->next_in_row = row->tracks;
    row->tracks = track;
    t->tracks[t->track_count] = track;
    map_put(&t->track_map, track->agent, row->topic, row->partition, t->track_count);
    t->track_count++;
    return track;
}

/* Records the positions of hb that belong to a partition being translated. */
static void add_heartbeat(struct translate *t, const Twinlane__Heartbeat *hb)
{
    for (size_t r = 0; r < hb->n_regions; r++) {
        const Twinlane__RegionStatus *region = hb->regions[r];
        bool is_from = strcmp(region->name, t->opts.from) == 0;
        bool is_to = strcmp(region->name, t->opts.to) == 0;
        if (!is_from && !is_to)
            continue;

        for (size_t i = 0; i < region->n_positions; i++) {
            const Twinlane__PartitionPosition *pos = region->positions[i];
            size_t row_index;
            if (!map_get(&t->row_map, NULL, pos->topic, pos->partition, &row_index))
                continue;
            struct track *track = find_track(t, hb->agent_id, row_index);
            point_add(is_from ? &track->from : &track->to, pos->seq, pos->offset);
        }
    }
}

/*
 * Reads every record of the target region's heartbeat topic from the start up to the end
 * offsets it has now, and records the positions. Returns an exit code.
 */
static int read_heartbeats(struct translate *t)
{
    char err[1024];
    int partitions = 0;
    int rc = tl_cli_topic_partitions(t->to_rk, t->opts.to, t->heartbeat_topic, &partitions, err,
                                     sizeof err);
    if (rc != 0)
        return fail(rc == TL_ENOTFOUND ? EXIT_USAGE : EXIT_UNREACHABLE, "%s%s", err,
                    rc == TL_ENOTFOUND ? "; pass --heartbeat-topic if the agents use another" : "");

    int64_t *end = tl_xcalloc((size_t)partitions, sizeof *end);
    rd_kafka_topic_partition_list_t *assignment = rd_kafka_topic_partition_list_new(partitions);
    int remaining = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t low = 0;
        rd_kafka_resp_err_t kerr = rd_kafka_query_watermark_offsets(
            t->to_rk, t->heartbeat_topic, p, &low, &end[p], KAFKA_TIMEOUT_MS);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            free(end);
            rd_kafka_topic_partition_list_destroy(assignment);
            return fail(EXIT_UNREACHABLE, "reading the end offset of %s [%d] in region %s "
                        "failed: %s", t->heartbeat_topic, p, t->opts.to, rd_kafka_err2str(kerr));
        }
        if (end[p] > low) {
            rd_kafka_topic_partition_list_add(assignment, t->heartbeat_topic, p)->offset = low;
            remaining++;
        }
    }
    rd_kafka_assign(t->to_rk, assignment);

    int exit_code = EXIT_OK;
    int64_t last_progress_ms = tl_now_ms();
    while (remaining > 0) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(t->to_rk, 200);
        if (!msg) {
            /* Gaps (deleted or compacted records) can hide the last offset, so check the position. */
            rd_kafka_position(t->to_rk, assignment);
            remaining = 0;
            for (int i = 0; i < assignment->cnt; i++) {
                if (assignment->elems[i].offset < end[assignment->elems[i].partition])
                    remaining++;
            }
            if (remaining > 0 && tl_now_ms() - last_progress_ms > HEARTBEAT_STALL_MS) {
                exit_code = fail(EXIT_UNREACHABLE, "reading %s in region %s stalled: no record "
                                 "for %d s, %d partitions not read to their end",
                                 t->heartbeat_topic, t->opts.to, HEARTBEAT_STALL_MS / 1000,
                                 remaining);
                break;
            }
            continue;
        }
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "twinlane offsets: reading %s in region %s: %s; still trying\n",
                    t->heartbeat_topic, t->opts.to, rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            continue;
        }

        last_progress_ms = tl_now_ms();
        if (msg->offset < end[msg->partition]) {
            char reason[256];
            Twinlane__Heartbeat *hb = tl_cli_heartbeat_decode(msg, reason, sizeof reason);
            if (hb) {
                t->heartbeats_read++;
                add_heartbeat(t, hb);
                twinlane__heartbeat__free_unpacked(hb, NULL);
            } else {
                t->undecodable++;
                if (t->undecodable <= MAX_REPORTED_UNDECODABLE)
                    fprintf(stderr, "twinlane offsets: %s partition %d offset %lld: %s; skipped\n",
                            t->heartbeat_topic, (int)msg->partition, (long long)msg->offset,
                            reason);
            }
        }
        if (msg->offset + 1 >= end[msg->partition]) {
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
                assignment, t->heartbeat_topic, msg->partition);
            if (tp && tp->offset != end[msg->partition]) {
                tp->offset = end[msg->partition];
                remaining--;
            }
        }
        rd_kafka_message_destroy(msg);
    }

    if (t->undecodable > MAX_REPORTED_UNDECODABLE)
        fprintf(stderr, "twinlane offsets: %llu records of %s were not valid heartbeats and were "
                "skipped\n", (unsigned long long)t->undecodable, t->heartbeat_topic);
    rd_kafka_assign(t->to_rk, NULL);
    rd_kafka_topic_partition_list_destroy(assignment);
    free(end);
    return exit_code;
}

/* ---- step 3: translation ---- */

/* Finds the point with the largest offset below committed, the smaller seq on a tie, or NULL. */
static const struct point *point_below_offset(const struct point_list *list, int64_t committed)
{
    const struct point *best = NULL;
    for (size_t i = 0; i < list->count; i++) {
        const struct point *p = &list->items[i];
        if (p->offset >= committed)
            continue;
        if (!best || p->offset > best->offset || (p->offset == best->offset && p->seq < best->seq))
            best = p;
    }
    return best;
}

/* Finds the point with the largest seq at or below seq, the smaller offset on a tie, or NULL. */
static const struct point *point_at_or_below_seq(const struct point_list *list, uint64_t seq)
{
    const struct point *best = NULL;
    for (size_t i = 0; i < list->count; i++) {
        const struct point *p = &list->items[i];
        if (p->seq > seq)
            continue;
        if (!best || p->seq > best->seq || (p->seq == best->seq && p->offset < best->offset))
            best = p;
    }
    return best;
}

/* Computes row->offset and row->method by the rule in the file header. */
static void translate_row(struct translate *t, struct row *row)
{
    if (row->method == METHOD_ERROR)
        return;
    if (row->committed < 0) {
        row->method = METHOD_NOT_COMMITTED;
        return;
    }

    rd_kafka_resp_err_t kerr = rd_kafka_query_watermark_offsets(
        t->to_rk, row->topic, row->partition, &row->low, &row->high, KAFKA_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        row->method = METHOD_ERROR;
        snprintf(row->detail, sizeof row->detail, "reading the watermarks in region %s failed: %s",
                 t->opts.to, rd_kafka_err2str(kerr));
        return;
    }

    /*
     * Without agents the result is the log start. Each agent's result can lower the minimum,
     * and an agent that gives the log start ends the search, because nothing is lower.
     */
    bool mapped = false;
    int64_t result = INT64_MAX;
    row->method = METHOD_LOG_START;
    snprintf(row->detail, sizeof row->detail, "no heartbeat has a position for this partition");
    for (const struct track *track = row->tracks; track; track = track->next_in_row) {
        const struct point *from = point_below_offset(&track->from, row->committed);
        const struct point *to = from ? point_at_or_below_seq(&track->to, from->seq) : NULL;
        if (!to) {
            mapped = false;
            result = row->low;
            row->agent = track->agent;
            if (from)
                snprintf(row->detail, sizeof row->detail, "agent %s has no position in region %s "
                         "at or below seq %llu", track->agent, t->opts.to,
                         (unsigned long long)from->seq);
            else
                snprintf(row->detail, sizeof row->detail, "agent %s has no position in region %s "
                         "below offset %lld", track->agent, t->opts.from,
                         (long long)row->committed);
            break;
        }
        if (to->offset + 1 < result) {
            mapped = true;
            result = to->offset + 1;
            row->agent = track->agent;
            row->seq = from->seq;
        }
    }

    if (!mapped) {
        row->offset = row->low;
        return;
    }
    row->method = METHOD_MAPPED;
    row->detail[0] = '\0';
    row->offset = result;
    if (result < row->low || result > row->high) {
        row->method = METHOD_CLAMPED;
        row->offset = result < row->low ? row->low : row->high;
        snprintf(row->detail, sizeof row->detail, "mapped to %lld, outside region %s's "
                 "watermarks [%lld, %lld]", (long long)result, t->opts.to, (long long)row->low,
                 (long long)row->high);
    }
}

/* ---- step 4: output ---- */

static const char *method_label(enum method method)
{
    switch (method) {
    case METHOD_MAPPED: return "mapped";
    case METHOD_LOG_START: return "no heartbeat: log start";
    case METHOD_CLAMPED: return "clamped";
    case METHOD_NOT_COMMITTED: return "not committed";
    case METHOD_ERROR: return "error";
    }
    return "error";
}

static const char *method_key(enum method method)
{
    switch (method) {
    case METHOD_MAPPED: return "mapped";
    case METHOD_LOG_START: return "log_start";
    case METHOD_CLAMPED: return "clamped";
    case METHOD_NOT_COMMITTED: return "not_committed";
    case METHOD_ERROR: return "error";
    }
    return "error";
}

static bool row_translated(const struct row *row)
{
    return row->method == METHOD_MAPPED || row->method == METHOD_LOG_START ||
           row->method == METHOD_CLAMPED;
}

static void print_table(const struct translate *t)
{
    printf("group %s: %s -> %s (%llu heartbeats read from %s, %llu skipped)\n", t->opts.group,
           t->opts.from, t->opts.to, (unsigned long long)t->heartbeats_read, t->heartbeat_topic,
           (unsigned long long)t->undecodable);
    printf("%-24s %9s %14s %-24s %14s  %s\n", "TOPIC", "PARTITION", "COMMITTED", "MAPPED SEQ",
           "OFFSET", "HOW");
    for (size_t i = 0; i < t->row_count; i++) {
        const struct row *row = &t->rows[i];
        char committed[32] = "-";
        char seq[128] = "-";
        char offset[32] = "-";
        if (row->committed >= 0)
            snprintf(committed, sizeof committed, "%lld", (long long)row->committed);
        if (row->method == METHOD_MAPPED || row->method == METHOD_CLAMPED)
            snprintf(seq, sizeof seq, "%s:%llu", row->agent, (unsigned long long)row->seq);
        if (row_translated(row))
            snprintf(offset, sizeof offset, "%lld", (long long)row->offset);
        printf("%-24s %9d %14s %-24s %14s  %s%s%s%s\n", row->topic, (int)row->partition, committed,
               seq, offset, method_label(row->method), row->detail[0] ? " (" : "", row->detail,
               row->detail[0] ? ")" : "");
    }
    fflush(stdout);
}

static json_t *row_json(const struct row *row)
{
    json_t *obj = json_pack("{s:s, s:i, s:s}", "topic", row->topic, "partition",
                            (int)row->partition, "method", method_key(row->method));
    json_object_set_new(obj, "committed",
                        row->committed >= 0 ? json_integer(row->committed) : json_null());
    bool has_seq = row->method == METHOD_MAPPED || row->method == METHOD_CLAMPED;
    json_object_set_new(obj, "agent", row->agent ? json_string(row->agent) : json_null());
    json_object_set_new(obj, "seq", has_seq ? json_integer((json_int_t)row->seq) : json_null());
    json_object_set_new(obj, "offset", row_translated(row) ? json_integer(row->offset)
                                                           : json_null());
    if (row_translated(row)) {
        json_object_set_new(obj, "low", json_integer(row->low));
        json_object_set_new(obj, "high", json_integer(row->high));
    }
    json_object_set_new(obj, "detail", row->detail[0] ? json_string(row->detail) : json_null());
    return obj;
}

static void print_json(const struct translate *t, bool applied)
{
    json_t *partitions = json_array();
    for (size_t i = 0; i < t->row_count; i++) {
        const struct row *row = &t->rows[i];
        json_t *obj = row_json(row);
        if (t->opts.apply) {
            json_object_set_new(obj, "applied", json_boolean(row->applied));
            json_object_set_new(obj, "apply_error", row->apply_error[0]
                                                        ? json_string(row->apply_error)
                                                        : json_null());
        }
        json_array_append_new(partitions, obj);
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:o}", "group", t->opts.group,
                             "from", t->opts.from, "to", t->opts.to, "heartbeat_topic",
                             t->heartbeat_topic, "heartbeats", (json_int_t)t->heartbeats_read,
                             "skipped_records", (json_int_t)t->undecodable, "applied", applied,
                             "partitions", partitions);
    if (!root)
        tl_panic("cannot build the JSON result");
    json_dumpf(root, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(root);
}

/* ---- step 5: applying ---- */

static bool is_active_group_error(rd_kafka_resp_err_t kerr)
{
    return kerr == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID ||
           kerr == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
           kerr == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
           kerr == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID ||
           kerr == RD_KAFKA_RESP_ERR_STALE_MEMBER_EPOCH;
}

/*
 * Checks that the group has no members and is not rebalancing in the target region. Returns
 * EXIT_OK, EXIT_GROUP_ACTIVE, or another exit code when the check itself failed.
 *
 * librdkafka's mock cluster, and so every embedded region, lacks the DescribeGroups API. There
 * the check prints a warning and lets the commit go ahead. The broker still rejects an offset
 * commit from outside the group while it has members (UNKNOWN_MEMBER_ID), and apply_offsets
 * reports that as exit 4.
 */
static int check_group_idle(struct translate *t)
{
    const char *groups[] = {t->opts.group};
    rd_kafka_AdminOptions_t *options =
        admin_options(t->to_rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(t->to_rk);
    rd_kafka_DescribeConsumerGroups(t->to_rk, groups, 1, options, queue);
    rd_kafka_AdminOptions_destroy(options);

    int exit_code = EXIT_OK;
    rd_kafka_event_t *event = wait_admin_result(queue);
    if (!event) {
        exit_code = fail(EXIT_UNREACHABLE, "describing group %s in region %s timed out after "
                         "%d s; nothing was committed", t->opts.group, t->opts.to,
                         ADMIN_WAIT_MS / 1000);
        goto out;
    }

    rd_kafka_resp_err_t kerr = rd_kafka_event_error(event);
    const char *message = rd_kafka_event_error_string(event);
    const rd_kafka_ConsumerGroupDescription_t *description = NULL;
    if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t count = 0;
        const rd_kafka_ConsumerGroupDescription_t **descriptions =
            rd_kafka_DescribeConsumerGroups_result_groups(
                rd_kafka_event_DescribeConsumerGroups_result(event), &count);
        description = count == 1 ? descriptions[0] : NULL;
        const rd_kafka_error_t *error =
            description ? rd_kafka_ConsumerGroupDescription_error(description) : NULL;
        if (!description) {
            kerr = RD_KAFKA_RESP_ERR__FAIL;
            message = "no result for the group";
        } else if (error) {
            kerr = rd_kafka_error_code(error);
            message = rd_kafka_error_string(error);
        }
    }

    if (kerr == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
        kerr == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION) {
        fprintf(stderr, "twinlane offsets: warning: region %s cannot describe consumer groups "
                "(%s), so the group's members are not checked here; the broker still rejects "
                "the commit while group %s has members\n", t->opts.to, message, t->opts.group);
        goto out;
    }
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        exit_code = fail(is_unreachable_error(kerr) ? EXIT_UNREACHABLE : EXIT_PARTIAL,
                         "describing group %s in region %s failed: %s; nothing was committed",
                         t->opts.group, t->opts.to, message);
        goto out;
    }

    rd_kafka_consumer_group_state_t state = rd_kafka_ConsumerGroupDescription_state(description);
    size_t members = rd_kafka_ConsumerGroupDescription_member_count(description);
    bool active = state == RD_KAFKA_CONSUMER_GROUP_STATE_STABLE ||
                  state == RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE ||
                  state == RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE || members > 0;
    if (active)
        exit_code = fail(EXIT_GROUP_ACTIVE, "group %s is active in region %s (state %s, %zu "
                         "members); stop its consumers there, then run this again. Nothing was "
                         "committed", t->opts.group, t->opts.to,
                         rd_kafka_consumer_group_state_name(state), members);

out:
    if (event)
        rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
    return exit_code;
}

/* Asks on the terminal. Returns true for "y" or "yes". */
static bool confirm(const struct translate *t, size_t count)
{
    fprintf(stderr, "Commit %zu offsets for group %s in region %s? [y/N] ", count, t->opts.group,
            t->opts.to);
    fflush(stderr);
    char answer[32];
    if (!fgets(answer, sizeof answer, stdin))
        return false;
    answer[strcspn(answer, "\r\n")] = '\0';
    return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

/* Commits the translated offsets in the target region. Returns an exit code. */
static int apply_offsets(struct translate *t, size_t count)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < t->row_count; i++) {
        if (row_translated(&t->rows[i]))
            rd_kafka_topic_partition_list_add(list, t->rows[i].topic, t->rows[i].partition)
                ->offset = t->rows[i].offset;
    }

    rd_kafka_AlterConsumerGroupOffsets_t *request =
        rd_kafka_AlterConsumerGroupOffsets_new(t->opts.group, list);
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_AdminOptions_t *options =
        admin_options(t->to_rk, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(t->to_rk);
    rd_kafka_AlterConsumerGroupOffsets(t->to_rk, &request, 1, options, queue);
    rd_kafka_AlterConsumerGroupOffsets_destroy(request);
    rd_kafka_AdminOptions_destroy(options);

    int exit_code = EXIT_OK;
    rd_kafka_event_t *event = wait_admin_result(queue);
    if (!event) {
        exit_code = fail(EXIT_UNREACHABLE, "committing the offsets of group %s in region %s "
                         "timed out after %d s; check them with --json before retrying",
                         t->opts.group, t->opts.to, ADMIN_WAIT_MS / 1000);
        goto out;
    }

    rd_kafka_resp_err_t kerr = rd_kafka_event_error(event);
    const char *message = rd_kafka_event_error_string(event);
    const rd_kafka_topic_partition_list_t *results = NULL;
    if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t group_count = 0;
        const rd_kafka_group_result_t **groups = rd_kafka_AlterConsumerGroupOffsets_result_groups(
            rd_kafka_event_AlterConsumerGroupOffsets_result(event), &group_count);
        const rd_kafka_error_t *error = group_count == 1 ? rd_kafka_group_result_error(groups[0])
                                                         : NULL;
        if (group_count != 1) {
            kerr = RD_KAFKA_RESP_ERR__FAIL;
            message = "no result for the group";
        } else if (error) {
            kerr = rd_kafka_error_code(error);
            message = rd_kafka_error_string(error);
        } else {
            results = rd_kafka_group_result_partitions(groups[0]);
        }
    }
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (size_t i = 0; i < t->row_count; i++)
            snprintf(t->rows[i].apply_error, sizeof t->rows[i].apply_error, "%s", message);
        if (is_active_group_error(kerr))
            exit_code = fail(EXIT_GROUP_ACTIVE, "region %s rejected the commit because group %s "
                             "is active there (%s); stop its consumers there, then run this "
                             "again", t->opts.to, t->opts.group, message);
        else
            exit_code = fail(is_unreachable_error(kerr) ? EXIT_UNREACHABLE : EXIT_PARTIAL,
                             "committing the offsets of group %s in region %s failed: %s",
                             t->opts.group, t->opts.to, message);
        goto out;
    }

    bool group_active = false;
    for (int i = 0; results && i < results->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &results->elems[i];
        size_t row_index;
        if (!map_get(&t->row_map, NULL, tp->topic, tp->partition, &row_index))
            continue;
        struct row *row = &t->rows[row_index];
        if (tp->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            row->applied = true;
            continue;
        }
        snprintf(row->apply_error, sizeof row->apply_error, "%s", rd_kafka_err2str(tp->err));
        group_active = group_active || is_active_group_error(tp->err);
    }

    for (size_t i = 0; i < t->row_count; i++) {
        struct row *row = &t->rows[i];
        if (!row_translated(row))
            continue;
        if (!row->applied && row->apply_error[0] == '\0')
            snprintf(row->apply_error, sizeof row->apply_error, "no result from the broker");
        if (row->applied && !t->opts.json)
            printf("committed %s [%d] at offset %lld in region %s\n", row->topic,
                   (int)row->partition, (long long)row->offset, t->opts.to);
        else if (!row->applied)
            fprintf(stderr, "twinlane offsets: committing %s [%d] at offset %lld in region %s "
                    "failed: %s\n", row->topic, (int)row->partition, (long long)row->offset,
                    t->opts.to, row->apply_error);
        if (!row->applied)
            exit_code = EXIT_PARTIAL;
    }
    if (group_active)
        exit_code = fail(EXIT_GROUP_ACTIVE, "group %s is active in region %s; stop its consumers "
                         "there, then run this again", t->opts.group, t->opts.to);

out:
    if (event)
        rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
    return exit_code;
}

/* ---- main flow ---- */

static void translate_free(struct translate *t)
{
    for (size_t i = 0; i < t->track_count; i++) {
        free(t->tracks[i]->agent);
        free(t->tracks[i]->from.items);
        free(t->tracks[i]->to.items);
        free(t->tracks[i]);
    }
    free(t->tracks);
    free(t->track_map.entries);
    for (size_t i = 0; i < t->row_count; i++)
        free(t->rows[i].topic);
    free(t->rows);
    free(t->row_map.entries);
    tl_cli_kafka_close(t->from_rk);
    tl_cli_kafka_close(t->to_rk);
    free(t->from_bootstrap);
    free(t->to_bootstrap);
    free(t->heartbeat_topic);
}

static int run_translate(int argc, char **argv)
{
    struct translate t = {0};
    int exit_code = parse_options(argc, argv, &t.opts);
    if (exit_code == -1)
        return EXIT_OK;
    if (exit_code != 0)
        return exit_code;

    exit_code = connect_regions(&t);
    if (exit_code == EXIT_OK)
        exit_code = read_committed(&t);
    if (exit_code == EXIT_OK)
        exit_code = read_heartbeats(&t);
    if (exit_code != EXIT_OK)
        goto out;

    size_t translated = 0;
    size_t failed = 0;
    for (size_t i = 0; i < t.row_count; i++) {
        translate_row(&t, &t.rows[i]);
        translated += row_translated(&t.rows[i]);
        failed += t.rows[i].method == METHOD_ERROR;
    }
    exit_code = failed > 0 ? EXIT_PARTIAL : EXIT_OK;

    if (!t.opts.apply) {
        if (t.opts.json)
            print_json(&t, false);
        else
            print_table(&t);
        goto out;
    }

    if (!t.opts.json)
        print_table(&t);
    if (failed > 0) {
        exit_code = fail(EXIT_PARTIAL, "not applying: %zu partitions could not be translated, "
                         "and a partial move would leave them without offsets in region %s",
                         failed, t.opts.to);
    } else if (translated == 0) {
        exit_code = fail(EXIT_PARTIAL, "nothing to apply: no partition has a committed offset "
                         "in region %s", t.opts.from);
    } else {
        exit_code = check_group_idle(&t);
        if (exit_code == EXIT_OK && !t.opts.yes && !confirm(&t, translated))
            exit_code = fail(EXIT_PARTIAL, "not confirmed; nothing was committed");
        if (exit_code == EXIT_OK)
            exit_code = apply_offsets(&t, translated);
    }
    if (t.opts.json)
        print_json(&t, exit_code == EXIT_OK);

out:
    translate_free(&t);
    return exit_code;
}

int tl_cli_offsets(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "translate") == 0)
        return run_translate(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (argc < 2)
        return usage_error("missing subcommand; the only one is \"translate\"");
    return usage_error("unknown subcommand \"%s\"; the only one is \"translate\"", argv[1]);
}
