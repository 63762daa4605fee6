/*
 * twinlane-bench: measures twinlane-agent against a raw librdkafka baseline in one run, on
 * the same clusters and events, and prints the ratios between them.
 *
 * The clusters are two twinlane-mock-cluster processes (east and west), so neither the agent
 * nor the baseline pays for hosting brokers; --east-bootstrap and --west-bootstrap point both
 * at real clusters instead. Every scenario is repeated --runs times and reported as median,
 * minimum and maximum. The scenarios, in order:
 *
 *   throughput  max events/s acknowledged by both regions: baseline, agent over the Unix
 *               socket and loopback TCP, wal.fsync always and off, for 100-byte and 1 KB
 *               values and the datasets found under --datasets
 *   latency     open-loop load at 50 % and 80 % of the baseline's max, latency measured from
 *               each event's scheduled send time, so a stalled sender cannot hide a delay
 *   backfill    one region down while a backlog builds, then back: the agent's catch-up rate
 *               against the baseline's single-cluster max, and live latency meanwhile
 *   cpu         CPU time per event of the agent process and the baseline process, and the
 *               agent's split between its own code and librdkafka (perf, when available)
 *
 * Progress goes to stderr, the tables to stdout, and --json FILE gets the same data.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "agentload.h"
#include "baseline.h"
#include "hist.h"
#include "procs.h"
#include "profile.h"
#include "report.h"
#include "workload.h"

#define PROGRAM "twinlane-bench"
#define SYNTHETIC_EVENTS 65536
#define DATASET_MAX_EVENTS 200000
#define BACKFILL_WAIT_NS (60 * 1000000000ll)
#define LIVE_LOAD_SHARE 0.3
#define NORMAL_PHASE_SECONDS 3.0

struct options {
    int runs;
    double seconds;
    double latency_seconds;
    double profile_seconds;
    size_t batch;
    size_t inflight;
    uint64_t backlog;
    const char *json_path;
    const char *work_dir;
    const char *datasets;
    const char *agent_bin;
    const char *mock_bin;
    const char *east_bootstrap;
    const char *west_bootstrap;
    const char *topic;
    int partitions;
    bool throughput, latency, backfill, cpu;
};

/* The two regions, hosted by mock cluster processes unless real bootstraps were given. */
struct clusters {
    bool mocked;
    struct bench_mock mocks[2];
    const char *bootstrap[2];
};

struct context {
    struct options opts;
    struct clusters clusters;
    char work_dir[256];
    char perf[256];
    bool have_perf;
    int64_t wall_minus_mono_ns;
};

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void progress(const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "[%02d:%02d:%02d] ", tm.tm_hour, tm.tm_min, tm.tm_sec);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [OPTION]...\n"
            "\n"
            "Measures twinlane-agent against raw librdkafka producers on the same clusters and\n"
            "events, and prints a table of results and ratios. Starts two\n"
            "twinlane-mock-cluster processes unless --east-bootstrap/--west-bootstrap are given.\n"
            "\n"
            "Options:\n"
            "      --runs N              repetitions of each measurement, 1 to %d (default 3)\n"
            "      --seconds S           sending time of a throughput run (default 3)\n"
            "      --latency-seconds S   sending time of a latency run (default 4)\n"
            "      --profile-seconds S   perf recording time of the CPU split, 0 to skip\n"
            "                            (default 4)\n"
            "      --batch N             events per client request (default 500)\n"
            "      --inflight N          events in flight per sender (default 50000)\n"
            "      --backlog N           events sent while a region is down (default 200000)\n"
            "      --only LIST           comma-separated scenarios: throughput, latency,\n"
            "                            backfill, cpu (default all)\n"
            "      --json FILE           also write the results as JSON to FILE\n"
            "      --work-dir DIR        agent data, configurations and logs (default\n"
            "                            /var/tmp/twinlane-bench.PID, removed at the end)\n"
            "      --datasets DIR        dataset root (default ../shared/data); missing files\n"
            "                            are skipped\n"
            "      --agent-bin PATH      twinlane-agent to run (default: from this build)\n"
            "      --mock-bin PATH       twinlane-mock-cluster to run (default: this build)\n"
            "      --east-bootstrap HOSTS, --west-bootstrap HOSTS\n"
            "                            real clusters instead of mock clusters; the topic must\n"
            "                            exist in both, and the backfill scenario is skipped\n"
            "      --topic NAME          topic (default twinlane-bench)\n"
            "      --partitions N        partitions of the topic (default 6)\n"
            "  -h, --help                show this help and exit\n"
            "\n"
            "Exit status: 0 when every selected scenario ran, 1 when one failed, 2 for an\n"
            "invalid command line. Ratios that miss a target do not change the exit status.\n",
            BENCH_MAX_SAMPLES);
}

static int usage_error(const char *what, const char *value)
{
    fprintf(stderr, PROGRAM ": invalid %s '%s'; try '" PROGRAM " --help'\n", what, value);
    return 2;
}

static bool parse_number(const char *text, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_only(const char *list, struct options *o)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", list);
    o->throughput = o->latency = o->backfill = o->cpu = false;
    char *save = NULL;
    for (char *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (strcmp(name, "throughput") == 0)
            o->throughput = true;
        else if (strcmp(name, "latency") == 0)
            o->latency = true;
        else if (strcmp(name, "backfill") == 0)
            o->backfill = true;
        else if (strcmp(name, "cpu") == 0)
            o->cpu = true;
        else
            return false;
    }
    return true;
}

/* Returns 0 to go on, or the exit status (2, or 0 after --help) with *stop set. */
static int parse_options(int argc, char **argv, struct options *o, bool *stop)
{
    static const struct option long_options[] = {
        {"runs", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"latency-seconds", required_argument, NULL, 'L'},
        {"profile-seconds", required_argument, NULL, 'P'},
        {"batch", required_argument, NULL, 'b'},
        {"inflight", required_argument, NULL, 'i'},
        {"backlog", required_argument, NULL, 'B'},
        {"only", required_argument, NULL, 'o'},
        {"json", required_argument, NULL, 'j'},
        {"work-dir", required_argument, NULL, 'w'},
        {"datasets", required_argument, NULL, 'd'},
        {"agent-bin", required_argument, NULL, 'A'},
        {"mock-bin", required_argument, NULL, 'M'},
        {"east-bootstrap", required_argument, NULL, 'E'},
        {"west-bootstrap", required_argument, NULL, 'W'},
        {"topic", required_argument, NULL, 't'},
        {"partitions", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    double v;
    int opt;

    *stop = false;
    while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        switch (opt) {
        case 'r':
            if (!parse_number(optarg, 1, BENCH_MAX_SAMPLES, &v))
                return *stop = true, usage_error("--runs", optarg);
            o->runs = (int)v;
            break;
        case 's':
            if (!parse_number(optarg, 0.5, 600, &o->seconds))
                return *stop = true, usage_error("--seconds", optarg);
            break;
        case 'L':
            if (!parse_number(optarg, 0.5, 600, &o->latency_seconds))
                return *stop = true, usage_error("--latency-seconds", optarg);
            break;
        case 'P':
            if (!parse_number(optarg, 0, 600, &o->profile_seconds))
                return *stop = true, usage_error("--profile-seconds", optarg);
            break;
        case 'b':
            if (!parse_number(optarg, 1, 4096, &v))
                return *stop = true, usage_error("--batch (1 to 4096)", optarg);
            o->batch = (size_t)v;
            break;
        case 'i':
            if (!parse_number(optarg, 1, 10000000, &v))
                return *stop = true, usage_error("--inflight", optarg);
            o->inflight = (size_t)v;
            break;
        case 'B':
            if (!parse_number(optarg, 1000, 100000000, &v))
                return *stop = true, usage_error("--backlog (1000 or more)", optarg);
            o->backlog = (uint64_t)v;
            break;
        case 'o':
            if (!parse_only(optarg, o))
                return *stop = true, usage_error("--only", optarg);
            break;
        case 'j':
            o->json_path = optarg;
            break;
        case 'w':
            o->work_dir = optarg;
            break;
        case 'd':
            o->datasets = optarg;
            break;
        case 'A':
            o->agent_bin = optarg;
            break;
        case 'M':
            o->mock_bin = optarg;
            break;
        case 'E':
            o->east_bootstrap = optarg;
            break;
        case 'W':
            o->west_bootstrap = optarg;
            break;
        case 't':
            o->topic = optarg;
            break;
        case 'p':
            if (!parse_number(optarg, 1, 10000, &v))
                return *stop = true, usage_error("--partitions", optarg);
            o->partitions = (int)v;
            break;
        case 'h':
            print_usage(stdout);
            *stop = true;
            return 0;
        default:
            *stop = true;
            return 2;
        }
    }
    if (optind < argc)
        return *stop = true, usage_error("argument", argv[optind]);
    if (!o->east_bootstrap != !o->west_bootstrap) {
        fprintf(stderr, PROGRAM ": give both --east-bootstrap and --west-bootstrap, or neither\n");
        *stop = true;
        return 2;
    }
    return 0;
}

/* ---- clusters ---- */

static int clusters_start(struct context *ctx, char *err, size_t errsize)
{
    struct clusters *c = &ctx->clusters;
    if (!c->mocked)
        return 0;

    static const char *const names[2] = {"east", "west"};
    for (int i = 0; i < 2; i++) {
        if (bench_mock_start(&c->mocks[i], ctx->opts.mock_bin, ctx->work_dir, names[i],
                             ctx->opts.topic, ctx->opts.partitions, err, errsize) != 0)
            return -1;
        c->bootstrap[i] = c->mocks[i].bootstrap;
    }
    return 0;
}

/* Stops mock clusters, which keep every record in memory, so each scenario starts empty. */
static void clusters_stop(struct context *ctx)
{
    if (!ctx->clusters.mocked)
        return;
    for (int i = 0; i < 2; i++)
        bench_proc_stop(&ctx->clusters.mocks[i].pid, 10000);
}

static struct bench_baseline_options baseline_options(const struct context *ctx, int regions)
{
    return (struct bench_baseline_options){
        .bootstrap = {ctx->clusters.bootstrap[0], ctx->clusters.bootstrap[1]},
        .region_count = regions,
        .topic = ctx->opts.topic,
        .inflight = ctx->opts.inflight,
    };
}

static int agent_start(struct context *ctx, struct bench_agent *agent, const char *fsync,
                       int64_t backfill_rate, char *err, size_t errsize)
{
    struct bench_agent_settings s = {
        .fsync = fsync,
        .backfill_events_per_sec = backfill_rate,
        .topic = ctx->opts.topic,
        .partitions = ctx->opts.partitions,
        .bootstrap = {ctx->clusters.bootstrap[0], ctx->clusters.bootstrap[1]},
    };
    return bench_agent_start(agent, ctx->opts.agent_bin, ctx->work_dir, &s, err, errsize);
}

static struct bench_client_options client_options(const struct context *ctx,
                                                  const struct bench_agent *agent, bool tcp,
                                                  char *address, size_t size)
{
    if (tcp)
        snprintf(address, size, "tcp:%s", agent->tcp_address);
    else
        snprintf(address, size, "unix:%s", agent->unix_path);
    return (struct bench_client_options){
        .address = address,
        .topic = ctx->opts.topic,
        .batch = ctx->opts.batch,
        .inflight = ctx->opts.inflight,
    };
}

/* ---- throughput and CPU per event ---- */

static void record_rate(const char *key, const struct bench_rate *r)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.events_per_sec", key);
    bench_report_sample(name, "events/s", bench_rate_per_sec(r));
    if (r->cpu_seconds >= 0 && r->ok > 0) {
        snprintf(name, sizeof(name), "%s.cpu_us_per_event", key);
        bench_report_sample(name, "us", r->cpu_seconds * 1e6 / (double)r->ok);
    }
    if (r->failed > 0)
        bench_report_note("%s: %" PRIu64 " events failed", key, r->failed);
    progress("  %-34s %10.0f events/s  (%" PRIu64 " events in %.2f s%s)", key,
             bench_rate_per_sec(r), r->ok, r->seconds, r->cpu_seconds >= 0 ? ", CPU measured" : "");
}

/*
 * Runs one workload: baseline, agent over Unix and TCP with fsync always, and (when full) the
 * agent with fsync off. Rounds interleave the baseline and the agent so that drift of the
 * machine affects both alike.
 */
static int throughput_workload(struct context *ctx, const struct bench_workload *w, bool full,
                               char *err, size_t errsize)
{
    struct bench_agent agent = {0};
    struct bench_rate r;
    char key[96];
    char address[320];
    int rc = -1;

    progress("throughput: workload %s (%zu distinct events, mean value %.0f bytes)", w->name,
             w->count, w->mean_value_bytes);
    if (clusters_start(ctx, err, errsize) != 0)
        return -1;
    struct bench_baseline_options bopts = baseline_options(ctx, 2);
    if (agent_start(ctx, &agent, "always", -1, err, errsize) != 0)
        goto out;

    for (int run = 0; run < ctx->opts.runs; run++) {
        progress(" round %d of %d", run + 1, ctx->opts.runs);
        memset(&r, 0, sizeof(r));
        if (bench_baseline_max(&bopts, w, ctx->opts.seconds, &r, err, errsize) != 0)
            goto out;
        snprintf(key, sizeof(key), "throughput.%s.baseline", w->name);
        record_rate(key, &r);

        struct bench_client_options unix_opts = client_options(ctx, &agent, false, address,
                                                               sizeof(address));
        if (bench_agent_max(&unix_opts, w, ctx->opts.seconds, 0, agent.pid, &r, err,
                            errsize) != 0)
            goto out;
        snprintf(key, sizeof(key), "throughput.%s.agent_unix_fsync_always", w->name);
        record_rate(key, &r);

        if (!full)
            continue;
        struct bench_client_options tcp_opts = client_options(ctx, &agent, true, address,
                                                              sizeof(address));
        if (bench_agent_max(&tcp_opts, w, ctx->opts.seconds, 0, agent.pid, &r, err,
                            errsize) != 0)
            goto out;
        snprintf(key, sizeof(key), "throughput.%s.agent_tcp_fsync_always", w->name);
        record_rate(key, &r);
    }
    bench_proc_stop(&agent.pid, 20000);

    if (full) {
        if (agent_start(ctx, &agent, "off", -1, err, errsize) != 0)
            goto out;
        for (int run = 0; run < ctx->opts.runs; run++) {
            struct bench_client_options unix_opts = client_options(ctx, &agent, false, address,
                                                                   sizeof(address));
            if (bench_agent_max(&unix_opts, w, ctx->opts.seconds, 0, agent.pid, &r, err,
                                errsize) != 0)
                goto out;
            snprintf(key, sizeof(key), "throughput.%s.agent_unix_fsync_off", w->name);
            record_rate(key, &r);
        }
    }
    rc = 0;

out:
    bench_proc_stop(&agent.pid, 20000);
    clusters_stop(ctx);
    return rc;
}

static int scenario_throughput(struct context *ctx, char *err, size_t errsize)
{
    struct bench_workload w;
    char path[512];
    static const struct {
        const char *name;
        const char *file;
        enum bench_key_rule rule;
    } datasets[] = {
        {"nasa_http", "nasa-http-1995/access-1995-08-01.tsv", BENCH_KEY_TSV_FIRST_COLUMN},
        {"zeek_conn", "zeek-wrccdc-2018/events.jsonl", BENCH_KEY_JSON_ORIG_HOST},
    };

    bench_workload_synthetic(&w, "100B", 100, SYNTHETIC_EVENTS, ctx->opts.partitions);
    int rc = throughput_workload(ctx, &w, true, err, errsize);
    bench_workload_free(&w);
    if (rc != 0)
        return rc;

    bench_workload_synthetic(&w, "1KB", 1024, SYNTHETIC_EVENTS, ctx->opts.partitions);
    rc = throughput_workload(ctx, &w, true, err, errsize);
    bench_workload_free(&w);
    if (rc != 0)
        return rc;

    for (size_t i = 0; i < sizeof(datasets) / sizeof(datasets[0]); i++) {
        char load_err[512];
        snprintf(path, sizeof(path), "%s/%s", ctx->opts.datasets, datasets[i].file);
        if (bench_workload_load(&w, datasets[i].name, path, datasets[i].rule,
                                ctx->opts.partitions, DATASET_MAX_EVENTS, load_err,
                                sizeof(load_err)) != 0) {
            progress("throughput: skipping dataset %s: %s", datasets[i].name, load_err);
            bench_report_note("dataset %s skipped: %s", datasets[i].name, load_err);
            continue;
        }
        bench_report_setting(datasets[i].name, "%s (%zu events, mean %.0f bytes)", path,
                             w.count, w.mean_value_bytes);
        rc = throughput_workload(ctx, &w, false, err, errsize);
        bench_workload_free(&w);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- latency ---- */

static void record_latency(const char *key, const struct bench_hist *h)
{
    static const struct {
        const char *suffix;
        double q;
    } quantiles[] = {{"p50", 0.50}, {"p99", 0.99}, {"p99_9", 0.999}};
    char name[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "%s.%s_ms", key, quantiles[i].suffix);
        bench_report_sample(name, "ms", bench_hist_quantile(h, quantiles[i].q) / 1000.0);
    }
    progress("  %-34s p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  (%" PRIu64 " events)", key,
             bench_hist_quantile(h, 0.5) / 1000, bench_hist_quantile(h, 0.99) / 1000,
             bench_hist_quantile(h, 0.999) / 1000, h->total);
}

/*
 * Fills h with the latencies of events scheduled in [from_ns, to_ns) that were acknowledged.
 * Returns the number of events in the window that got no OK.
 */
static uint64_t window_histogram(const struct bench_open_loop_record *rec, int64_t from_ns,
                                 int64_t to_ns, struct bench_hist *h)
{
    uint64_t missing = 0;
    bench_hist_reset(h);
    for (size_t i = 0; i < rec->count; i++) {
        if (rec->sched_ns[i] < from_ns || rec->sched_ns[i] >= to_ns)
            continue;
        if (rec->done_ns[i] == 0 || rec->status[i] != 0) {
            missing++;
            continue;
        }
        bench_hist_record(h, (uint64_t)(rec->done_ns[i] - rec->sched_ns[i]) / 1000);
    }
    return missing;
}

static int scenario_latency(struct context *ctx, char *err, size_t errsize)
{
    double max_rate = bench_report_median("throughput.100B.baseline.events_per_sec");
    struct bench_workload w;
    struct bench_agent agent = {0};
    struct bench_hist *hist = malloc(sizeof(*hist));
    char address[320];
    int rc = -1;

    if (max_rate <= 0) {
        struct bench_rate r = {0};
        bench_workload_synthetic(&w, "100B", 100, SYNTHETIC_EVENTS, ctx->opts.partitions);
        progress("latency: measuring the baseline's max rate first");
        int started = clusters_start(ctx, err, errsize);
        struct bench_baseline_options bopts = baseline_options(ctx, 2);
        if (started != 0 || bench_baseline_max(&bopts, &w, ctx->opts.seconds, &r, err, errsize) != 0) {
            bench_workload_free(&w);
            clusters_stop(ctx);
            free(hist);
            return -1;
        }
        clusters_stop(ctx);
        bench_workload_free(&w);
        max_rate = bench_rate_per_sec(&r);
    }

    bench_workload_synthetic(&w, "100B", 100, SYNTHETIC_EVENTS, ctx->opts.partitions);
    if (clusters_start(ctx, err, errsize) != 0)
        goto out;
    if (agent_start(ctx, &agent, "always", -1, err, errsize) != 0)
        goto out;

    static const int loads[] = {50, 80};
    for (size_t l = 0; l < 2; l++) {
        struct bench_schedule sched = {.rate = max_rate * loads[l] / 100.0,
                                       .seconds = ctx->opts.latency_seconds};
        progress("latency: %d%% of the baseline's max, %.0f events/s", loads[l], sched.rate);
        for (int run = 0; run < ctx->opts.runs; run++) {
            char key[96];
            struct bench_rate r = {0};
            struct bench_baseline_options bopts = baseline_options(ctx, 2);

            bench_hist_reset(hist);
            if (bench_baseline_open_loop(&bopts, &w, &sched, hist, &r, err, errsize) != 0)
                goto out;
            snprintf(key, sizeof(key), "latency.load%d.baseline", loads[l]);
            record_latency(key, hist);

            struct bench_open_loop_record rec;
            struct bench_client_options copts = client_options(ctx, &agent, false, address,
                                                               sizeof(address));
            if (bench_agent_open_loop(&copts, &w, &sched, NULL, &rec, &r, err, errsize) != 0) {
                bench_open_loop_free(&rec);
                goto out;
            }
            uint64_t missing = window_histogram(&rec, INT64_MIN, INT64_MAX, hist);
            bench_open_loop_free(&rec);
            if (missing > 0)
                bench_report_note("latency at %d%%: %" PRIu64 " agent events got no OK",
                                  loads[l], missing);
            snprintf(key, sizeof(key), "latency.load%d.agent_unix_fsync_always", loads[l]);
            record_latency(key, hist);
        }
    }
    rc = 0;

out:
    bench_proc_stop(&agent.pid, 20000);
    clusters_stop(ctx);
    bench_workload_free(&w);
    free(hist);
    return rc;
}

/* ---- backfill ---- */

struct live_traffic {
    const struct bench_client_options *opts;
    const struct bench_workload *workload;
    struct bench_schedule sched;
    atomic_bool stop;
    struct bench_open_loop_record rec;
    struct bench_rate rate;
    int rc;
    char err[512];
};

static void *run_live_traffic(void *arg)
{
    struct live_traffic *t = arg;
    t->rc = bench_agent_open_loop(t->opts, t->workload, &t->sched, &t->stop, &t->rec, &t->rate,
                                  t->err, sizeof(t->err));
    return NULL;
}

/* One "failover timeline" step of the agent log: monotonic time and its backlog field. */
struct timeline_step {
    bool seen;
    int64_t mono_ns;
    uint64_t backlog;
};

/* Parses "YYYY-MM-DDTHH:MM:SS.mmmZ" at the start of a log line into nanoseconds since 1970. */
static bool parse_log_time(const char *line, int64_t *wall_ns)
{
    struct tm tm = {0};
    int ms;
    if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *wall_ns = (int64_t)timegm(&tm) * 1000000000 + (int64_t)ms * 1000000;
    return true;
}

/* Scans the agent log from offset for west's backfill_start and backfill_end lines. */
static void scan_timeline(const struct context *ctx, const char *log_path, long offset,
                          struct timeline_step *start, struct timeline_step *end)
{
    FILE *f = fopen(log_path, "r");
    if (!f)
        return;
    fseek(f, offset, SEEK_SET);
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, "failover timeline region=west"))
            continue;
        struct timeline_step *step = strstr(line, "step=backfill_start") ? start
                                     : strstr(line, "step=backfill_end") ? end
                                                                          : NULL;
        int64_t wall_ns;
        if (!step || step->seen || !parse_log_time(line, &wall_ns))
            continue;
        const char *backlog = strstr(line, "backlog=");
        step->backlog = backlog ? strtoull(backlog + 8, NULL, 10) : 0;
        step->mono_ns = wall_ns - ctx->wall_minus_mono_ns;
        step->seen = true;
    }
    fclose(f);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Waits until the agent log shows west's backfill_end after offset, or 60 s pass. */
static bool wait_backfill_end(const struct context *ctx, const char *log_path, long offset,
                              struct timeline_step *start, struct timeline_step *end)
{
    int64_t deadline = bench_now_ns() + BACKFILL_WAIT_NS;
    while (bench_now_ns() < deadline) {
        *start = (struct timeline_step){0};
        *end = (struct timeline_step){0};
        scan_timeline(ctx, log_path, offset, start, end);
        if (start->seen && end->seen)
            return true;
        usleep(50000);
    }
    return false;
}

/*
 * One outage episode on a fresh agent: live traffic at a fixed rate throughout; after the
 * normal phase west goes down, a second connection pushes the backlog (acknowledged by east
 * alone once west's breaker opens), west comes back, and the agent backfills it from the WAL.
 * Returns 0 with the metrics recorded, 1 when the backfill did not finish (noted), or -1.
 */
static int backfill_episode(struct context *ctx, const struct bench_workload *w,
                            double live_rate, char *err, size_t errsize)
{
    struct bench_agent agent = {0};
    struct live_traffic live = {.workload = w};
    char live_address[320];
    char push_address[320];
    pthread_t thread;
    bool live_running = false;
    bool west_down = false;
    struct bench_hist *hist = malloc(sizeof(*hist));
    int rc = -1;

    if (agent_start(ctx, &agent, "always", 0, err, errsize) != 0)
        goto out;
    struct bench_client_options live_opts = client_options(ctx, &agent, false, live_address,
                                                           sizeof(live_address));
    struct bench_client_options push_opts = client_options(ctx, &agent, false, push_address,
                                                           sizeof(push_address));
    live.opts = &live_opts;
    live.sched = (struct bench_schedule){.rate = live_rate, .seconds = 600};
    pthread_create(&thread, NULL, run_live_traffic, &live);
    live_running = true;
    int64_t normal_from = bench_now_ns() + 500000000;
    usleep((useconds_t)(NORMAL_PHASE_SECONDS * 1e6));

    long log_offset = file_size(agent.log);
    int64_t down_at = bench_now_ns();
    if (bench_mock_command(&ctx->clusters.mocks[1], "all-down", err, errsize) != 0)
        goto out;
    west_down = true;
    progress("  west down; pushing a backlog of %" PRIu64 " events", ctx->opts.backlog);
    struct bench_rate push = {0};
    if (bench_agent_max(&push_opts, w, 0, ctx->opts.backlog, 0, &push, err, errsize) != 0)
        goto out;
    if (bench_mock_command(&ctx->clusters.mocks[1], "all-up", err, errsize) != 0)
        goto out;
    west_down = false;
    progress("  west up after %.1f s; waiting for the backfill to end",
             (double)(bench_now_ns() - down_at) / 1e9);

    struct timeline_step start;
    struct timeline_step end;
    if (!wait_backfill_end(ctx, agent.log, log_offset, &start, &end)) {
        bench_report_note("backfill did not finish within 60 s of west's return with live "
                          "traffic at %.0f events/s (backfill_start %s); see %s", live_rate,
                          start.seen ? "logged" : "not logged", agent.log);
        progress("  backfill did not finish within 60 s; see %s", agent.log);
        rc = 1;
        goto out;
    }
    usleep(500000);
    atomic_store(&live.stop, true);
    pthread_join(thread, NULL);
    live_running = false;
    if (live.rc != 0) {
        snprintf(err, errsize, "live traffic: %s", live.err);
        goto out;
    }

    /*
     * Events written to west during the backfill: the backlog it started with, less what was
     * left at its end, plus the live events that joined the backlog meanwhile.
     */
    double seconds = (double)(end.mono_ns - start.mono_ns) / 1e9;
    uint64_t live_in_window = 0;
    for (size_t i = 0; i < live.rec.count; i++) {
        if (live.rec.sched_ns[i] >= start.mono_ns && live.rec.sched_ns[i] < end.mono_ns)
            live_in_window++;
    }
    double drained = (double)start.backlog - (double)end.backlog;
    if (seconds < 0.001)
        seconds = 0.001;
    bench_report_sample("backfill.agent_write_rate", "events/s",
                        (drained + (double)live_in_window) / seconds);
    bench_report_sample("backfill.agent_net_catch_up_rate", "events/s", drained / seconds);
    bench_report_sample("backfill.seconds", "s", seconds);
    bench_report_sample("backfill.backlog_at_start", "events", (double)start.backlog);
    progress("  backfill: %" PRIu64 " -> %" PRIu64 " events in %.2f s, %" PRIu64
             " live events joined", start.backlog, end.backlog, seconds, live_in_window);

    uint64_t missing = window_histogram(&live.rec, normal_from, down_at, hist);
    if (missing > 0)
        bench_report_note("backfill: %" PRIu64 " live events got no OK before the outage",
                          missing);
    record_latency("backfill.live_normal", hist);
    missing = window_histogram(&live.rec, start.mono_ns, end.mono_ns, hist);
    if (missing > 0)
        bench_report_note("backfill: %" PRIu64 " live events got no OK during the backfill",
                          missing);
    if (hist->total < 100)
        bench_report_note("backfill: only %" PRIu64 " live events fell inside the backfill "
                          "window, so its p99 is coarse; raise --backlog", hist->total);
    record_latency("backfill.live_during_backfill", hist);
    rc = 0;

out:
    if (west_down) {
        char ignored[256];
        bench_mock_command(&ctx->clusters.mocks[1], "all-up", ignored, sizeof(ignored));
    }
    if (live_running) {
        atomic_store(&live.stop, true);
        pthread_join(thread, NULL);
    }
    bench_open_loop_free(&live.rec);
    bench_proc_stop(&agent.pid, 20000);
    free(hist);
    return rc;
}

static int scenario_backfill(struct context *ctx, char *err, size_t errsize)
{
    struct bench_workload w;
    int rc = -1;

    if (!ctx->clusters.mocked) {
        progress("backfill: skipped, because real clusters have no control socket to stop one");
        bench_report_note("backfill skipped: it needs mock clusters to take a region down");
        return 0;
    }
    bench_workload_synthetic(&w, "100B", 100, SYNTHETIC_EVENTS, ctx->opts.partitions);
    if (clusters_start(ctx, err, errsize) != 0)
        goto out;

    progress("backfill: raw single-cluster max (baseline producer to east only)");
    struct bench_baseline_options single = baseline_options(ctx, 1);
    for (int run = 0; run < ctx->opts.runs; run++) {
        struct bench_rate r = {0};
        if (bench_baseline_max(&single, &w, ctx->opts.seconds, &r, err, errsize) != 0)
            goto out;
        record_rate("backfill.baseline_single_cluster", &r);
    }

    double max_rate = bench_report_median("throughput.100B.baseline.events_per_sec");
    if (max_rate <= 0)
        max_rate = bench_report_median("backfill.baseline_single_cluster.events_per_sec") / 2;
    double live_rate = max_rate * LIVE_LOAD_SHARE;
    for (int run = 0; run < ctx->opts.runs; run++) {
        progress("backfill: episode %d of %d, live traffic %.0f events/s", run + 1,
                 ctx->opts.runs, live_rate);
        int episode = backfill_episode(ctx, &w, live_rate, err, errsize);
        if (episode < 0)
            goto out;
        if (episode > 0)
            break;
    }
    rc = 0;

out:
    clusters_stop(ctx);
    bench_workload_free(&w);
    return rc;
}

/* ---- CPU split ---- */

static int scenario_cpu_profile(struct context *ctx, char *err, size_t errsize)
{
    struct bench_workload w;
    struct bench_agent agent = {0};
    char data_path[512];
    char symbols_path[600];
    char address[320];
    int rc = -1;

    if (!ctx->have_perf || ctx->opts.profile_seconds <= 0) {
        bench_report_note("CPU split between the agent and librdkafka not measured: %s",
                          ctx->have_perf ? "--profile-seconds is 0" : "perf is not on PATH");
        return 0;
    }
    bench_workload_synthetic(&w, "100B", 100, SYNTHETIC_EVENTS, ctx->opts.partitions);
    if (clusters_start(ctx, err, errsize) != 0)
        goto out;
    if (agent_start(ctx, &agent, "always", -1, err, errsize) != 0)
        goto out;

    progress("cpu: perf record of the agent for %.1f s under max load (100 B, Unix, fsync "
             "always)", ctx->opts.profile_seconds);
    snprintf(data_path, sizeof(data_path), "%s/agent.perf.data", ctx->work_dir);
    snprintf(symbols_path, sizeof(symbols_path), "%s.symbols.txt", data_path);
    pid_t perf = bench_profile_start(ctx->perf, agent.pid, ctx->opts.profile_seconds, data_path);
    if (perf < 0) {
        snprintf(err, errsize, "cannot start %s", ctx->perf);
        goto out;
    }
    struct bench_client_options copts = client_options(ctx, &agent, false, address,
                                                       sizeof(address));
    struct bench_rate r = {0};
    if (bench_agent_max(&copts, &w, ctx->opts.profile_seconds + 1.0, 0, agent.pid, &r, err,
                        errsize) != 0)
        goto out;

    struct bench_profile p;
    if (bench_profile_finish(ctx->perf, &perf, data_path, symbols_path, &p) != 0) {
        bench_report_note("perf recorded no samples of the agent; CPU split not measured");
        rc = 0;
        goto out;
    }
    bench_report_sample("cpu.agent_profile.agent_own_percent", "%", p.agent_percent);
    bench_report_sample("cpu.agent_profile.librdkafka_percent", "%", p.rdkafka_percent);
    bench_report_sample("cpu.agent_profile.libc_percent", "%", p.libc_percent);
    bench_report_sample("cpu.agent_profile.kernel_percent", "%", p.kernel_percent);
    bench_report_sample("cpu.agent_profile.other_percent", "%", p.other_percent);
    bench_report_note("perf data of the agent: %s (hottest symbols in %s)", data_path,
                      symbols_path);
    progress("  agent %.1f %%, librdkafka %.1f %%, libc %.1f %%, kernel %.1f %%, other %.1f %%",
             p.agent_percent, p.rdkafka_percent, p.libc_percent, p.kernel_percent,
             p.other_percent);
    rc = 0;

out:
    bench_proc_stop(&agent.pid, 20000);
    clusters_stop(ctx);
    bench_workload_free(&w);
    return rc;
}

/* ---- ratios and machine ---- */

static double median_of(const char *key)
{
    return bench_report_median(key);
}

static void compute_ratios(void)
{
    bench_report_ratio("throughput_100B", "agent (Unix, fsync always) / baseline, 100 B",
                       median_of("throughput.100B.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.100B.baseline.events_per_sec"), BENCH_AT_LEAST, 0.5);
    bench_report_ratio("throughput_1KB", "agent (Unix, fsync always) / baseline, 1 KB",
                       median_of("throughput.1KB.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.1KB.baseline.events_per_sec"), BENCH_AT_LEAST, 0.6);
    bench_report_ratio("throughput_nasa_http", "agent / baseline, NASA HTTP log lines",
                       median_of("throughput.nasa_http.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.nasa_http.baseline.events_per_sec"),
                       BENCH_NO_TARGET, 0);
    bench_report_ratio("throughput_zeek_conn", "agent / baseline, Zeek JSON events",
                       median_of("throughput.zeek_conn.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.zeek_conn.baseline.events_per_sec"),
                       BENCH_NO_TARGET, 0);
    bench_report_ratio("fsync_always_vs_off_100B", "agent fsync always / off, 100 B",
                       median_of("throughput.100B.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.100B.agent_unix_fsync_off.events_per_sec"),
                       BENCH_AT_LEAST, 0.85);
    bench_report_ratio("fsync_always_vs_off_1KB", "agent fsync always / off, 1 KB",
                       median_of("throughput.1KB.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.1KB.agent_unix_fsync_off.events_per_sec"),
                       BENCH_AT_LEAST, 0.85);
    bench_report_ratio("unix_vs_tcp_100B", "agent Unix socket / loopback TCP, 100 B",
                       median_of("throughput.100B.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.100B.agent_tcp_fsync_always.events_per_sec"),
                       BENCH_AT_LEAST, 1.3);
    bench_report_ratio("unix_vs_tcp_1KB", "agent Unix socket / loopback TCP, 1 KB",
                       median_of("throughput.1KB.agent_unix_fsync_always.events_per_sec"),
                       median_of("throughput.1KB.agent_tcp_fsync_always.events_per_sec"),
                       BENCH_AT_LEAST, 1.3);
    bench_report_ratio("latency_p99_load50", "agent p99 / baseline per-event max p99, 50 % load",
                       median_of("latency.load50.agent_unix_fsync_always.p99_ms"),
                       median_of("latency.load50.baseline.p99_ms"), BENCH_AT_MOST, 1.5);
    bench_report_ratio("latency_p99_load80", "agent p99 / baseline per-event max p99, 80 % load",
                       median_of("latency.load80.agent_unix_fsync_always.p99_ms"),
                       median_of("latency.load80.baseline.p99_ms"), BENCH_NO_TARGET, 0);
    bench_report_ratio("backfill_rate", "agent backfill write rate / raw single-cluster max",
                       median_of("backfill.agent_write_rate"),
                       median_of("backfill.baseline_single_cluster.events_per_sec"),
                       BENCH_AT_LEAST, 0.8);
    bench_report_ratio("backfill_live_p99", "live p99 during backfill / before the outage",
                       median_of("backfill.live_during_backfill.p99_ms"),
                       median_of("backfill.live_normal.p99_ms"), BENCH_AT_MOST, 2.0);
    bench_report_ratio("cpu_per_event_100B", "agent process / baseline process CPU per event",
                       median_of("throughput.100B.agent_unix_fsync_always.cpu_us_per_event"),
                       median_of("throughput.100B.baseline.cpu_us_per_event"), BENCH_NO_TARGET,
                       0);
    bench_report_ratio("cpu_agent_own_vs_librdkafka", "agent's own code / librdkafka, perf samples",
                       median_of("cpu.agent_profile.agent_own_percent"),
                       median_of("cpu.agent_profile.librdkafka_percent"), BENCH_AT_MOST, 0.5);
}

static void read_cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *colon = strchr(line, ':');
        if (colon) {
            snprintf(out, size, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
        }
        break;
    }
    fclose(f);
}

/* Describes the block device behind path from sysfs: name and rotational flag. */
static void describe_disk(const char *path, char *out, size_t size)
{
    struct stat st;
    snprintf(out, size, "unknown");
    if (stat(path, &st) != 0)
        return;
    char sys[128];
    char flag[8] = "";
    unsigned maj = major(st.st_dev), min = minor(st.st_dev);
    snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/queue/rotational", maj, min);
    FILE *f = fopen(sys, "r");
    if (!f) {
        snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/../queue/rotational", maj, min);
        f = fopen(sys, "r");
    }
    if (f) {
        if (!fgets(flag, sizeof(flag), f))
            flag[0] = '\0';
        fclose(f);
    }
    flag[strcspn(flag, "\n")] = '\0';
    snprintf(out, size, "device %u:%u, sysfs rotational=%s%s", maj, min, flag[0] ? flag : "?",
             bench_path_on_memory_fs(path) ? ", tmpfs (fsync is free here)" : "");
}

/* Returns the 1-minute load average, or -1 when /proc/loadavg is unreadable. */
static double load_average(void)
{
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%lf", &load) != 1)
        load = -1;
    fclose(f);
    return load;
}

static void record_settings(const struct context *ctx)
{
    char model[256];
    char disk[256];
    struct utsname uts;

    read_cpu_model(model, sizeof(model));
    uname(&uts);
    describe_disk(ctx->work_dir, disk, sizeof(disk));
    bench_report_setting("cpus", "%ld online, %s", sysconf(_SC_NPROCESSORS_ONLN), model);
    bench_report_setting("kernel", "%s %s", uts.sysname, uts.release);
    bench_report_setting("work_dir", "%s (%s)", ctx->work_dir, disk);
    bench_report_setting("build", "%s, librdkafka %s", BENCH_BUILD_TYPE, rd_kafka_version_str());
    bench_report_setting("clusters", "%s", ctx->clusters.mocked
                                               ? "two twinlane-mock-cluster processes, 3 brokers each"
                                               : "real clusters from --east/--west-bootstrap");
    bench_report_setting("runs", "%d per measurement, %.1f s per throughput run, %.1f s per "
                         "latency run", ctx->opts.runs, ctx->opts.seconds,
                         ctx->opts.latency_seconds);
    bench_report_setting("client", "batch %zu events, %zu in flight", ctx->opts.batch,
                         ctx->opts.inflight);
}

static void on_signal(int sig)
{
    bench_procs_kill_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    struct context ctx = {
        .opts = {
            .runs = 3,
            .seconds = 3.0,
            .latency_seconds = 4.0,
            .profile_seconds = 4.0,
            .batch = 500,
            .inflight = 50000,
            .backlog = 200000,
            .datasets = "../shared/data",
            .agent_bin = BENCH_AGENT_BIN,
            .mock_bin = BENCH_MOCK_BIN,
            .topic = "twinlane-bench",
            .partitions = 6,
            .throughput = true, .latency = true, .backfill = true, .cpu = true,
        },
    };
    char err[1024];
    bool stop;

    int status = parse_options(argc, argv, &ctx.opts, &stop);
    if (stop)
        return status;

    bool own_work_dir = !ctx.opts.work_dir;
    if (own_work_dir)
        snprintf(ctx.work_dir, sizeof(ctx.work_dir), "/var/tmp/twinlane-bench.%d", (int)getpid());
    else
        snprintf(ctx.work_dir, sizeof(ctx.work_dir), "%s", ctx.opts.work_dir);
    if (mkdir(ctx.work_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, PROGRAM ": cannot create work directory %s: %s\n", ctx.work_dir,
                strerror(errno));
        return 1;
    }
    if (bench_path_on_memory_fs(ctx.work_dir))
        fprintf(stderr, PROGRAM ": warning: %s is on tmpfs, so fsync costs nothing there; "
                "give --work-dir on a disk\n", ctx.work_dir);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    struct timespec wall, mono;
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    ctx.wall_minus_mono_ns = ((int64_t)wall.tv_sec - mono.tv_sec) * 1000000000 +
                             (wall.tv_nsec - mono.tv_nsec);
    ctx.clusters.mocked = !ctx.opts.east_bootstrap;
    if (!ctx.clusters.mocked) {
        ctx.clusters.bootstrap[0] = ctx.opts.east_bootstrap;
        ctx.clusters.bootstrap[1] = ctx.opts.west_bootstrap;
    }
    ctx.have_perf = bench_profile_available(ctx.perf, sizeof(ctx.perf));
    record_settings(&ctx);

    double load_at_start = load_average();
    int64_t started = bench_now_ns();
    int rc = 0;
    if (rc == 0 && ctx.opts.throughput)
        rc = scenario_throughput(&ctx, err, sizeof(err));
    if (rc == 0 && ctx.opts.latency)
        rc = scenario_latency(&ctx, err, sizeof(err));
    if (rc == 0 && ctx.opts.backfill)
        rc = scenario_backfill(&ctx, err, sizeof(err));
    if (rc == 0 && ctx.opts.cpu)
        rc = scenario_cpu_profile(&ctx, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, PROGRAM ": %s\n", err);
    clusters_stop(&ctx);
    bench_procs_kill_all();

    bench_report_setting("elapsed", "%.0f s", (double)(bench_now_ns() - started) / 1e9);
    /* Other processes on the machine skew every number; the load average shows how much. */
    bench_report_setting("load_average", "%.2f at start, %.2f at end (1-minute, %ld CPUs)",
                         load_at_start, load_average(), sysconf(_SC_NPROCESSORS_ONLN));
    compute_ratios();
    bench_report_print();
    if (ctx.opts.json_path && bench_report_write_json(ctx.opts.json_path) != 0)
        rc = -1;
    char agent_data[320];
    snprintf(agent_data, sizeof(agent_data), "%s/agent-data", ctx.work_dir);
    bench_remove_tree(agent_data);
    if (own_work_dir && rc == 0 && !ctx.have_perf)
        bench_remove_tree(ctx.work_dir);
    else
        fprintf(stderr, PROGRAM ": logs and data kept in %s\n", ctx.work_dir);
    return rc == 0 ? 0 : 1;
}
