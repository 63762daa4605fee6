/*
 * `twinlane produce`: send the lines of a file or of stdin to the agent, one event per line.
 *
 * Flow: lines are read in chunks from a non-blocking input and turned into events. The whole
 * line is the value, and the key comes from a column or a JSON field. Events are grouped into
 * batches and handed to the client library, which pipelines them. A batch goes out when it is
 * full, or when the input has nothing more right now, so a slow pipe still sees each line sent
 * promptly. Reading pauses while --max-inflight events wait for their results.
 *
 * Every event in flight owns a struct pending_event with a copy of its line, because a
 * RETRYABLE result sends the event again after a backoff, up to --retries times. Each event
 * ends in exactly one counter of struct produce_stats, so the summary adds up to the lines
 * read.
 *
 * Single-threaded: result callbacks run inside tl_client_poll on the main loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "twinlane/client.h"

/* Entry point of the subcommand; main.c declares it too, next to its table of commands. */
int tl_cli_produce(int argc, char **argv);

#define EXIT_ALL_ACKNOWLEDGED 0
#define EXIT_NOT_ACKNOWLEDGED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

#define DEFAULT_AGENT "/run/twinlane/agent.sock"
#define DEFAULT_BATCH 500
#define DEFAULT_MAX_INFLIGHT 50000
#define DEFAULT_RETRIES 5
#define READ_CHUNK 65536
/* The client's default max_request_bytes: a longer line cannot fit any request. */
#define MAX_LINE_BYTES ((size_t)4 << 20)
#define RETRY_BACKOFF_MIN_MS 100
#define RETRY_BACKOFF_MAX_MS 5000
#define PROGRESS_INTERVAL_MS 1000
/* After the input ends, the max wait for the next response before giving up. */
#define RESPONSE_TIMEOUT_MS 30000
/* Rejections printed one by one before the rest are only counted. */
#define MAX_REPORTED_REJECTIONS 10
/* Header names with this prefix are set by the agent, which rejects events that carry one. */
#define RESERVED_HEADER_PREFIX "twinlane-"

static const char usage_text[] =
    "Usage: twinlane produce --topic TOPIC [OPTIONS]\n"
    "\n"
    "Send each line of the input as one event. The whole line, without its line ending (\\n\n"
    "or \\r\\n), is the event value. Empty lines are skipped and counted.\n"
    "\n"
    "Options:\n"
    "  --topic TOPIC        topic of every event (required)\n"
    "  --agent ADDRESS      agent address: unix:PATH, a path containing a slash\n"
    "                       (/run/agent.sock, ./agent.sock), host:port or [ipv6]:port\n"
    "                       (default: $TWINLANE_AGENT, else " DEFAULT_AGENT ")\n"
    "  --file FILE          read lines from FILE instead of stdin\n"
    "  --key-field N        use column N (1-based) as the key; a line with fewer columns is\n"
    "                       rejected locally and counted as missing key\n"
    "  --delimiter C        column separator for --key-field: one character, or \\t for tab\n"
    "                       (default: tab)\n"
    "  --key-json FIELD     parse each line as a JSON object and use its top-level FIELD as\n"
    "                       the key; a dot is part of the name (\"id.orig_h\" as Zeek writes\n"
    "                       it). String values are used as is, other values as compact JSON.\n"
    "                       A line that is not a JSON object is rejected locally; a missing\n"
    "                       or null field counts as missing key\n"
    "  --header NAME=VALUE  add a Kafka header to every event (repeatable); names starting\n"
    "                       with \"twinlane-\" are reserved for the agent\n"
    "  --batch N            events per request (default 500)\n"
    "  --max-inflight N     events sent without a result before reading pauses\n"
    "                       (default 50000)\n"
    "  --retries N          times a RETRYABLE event is sent again, with backoff from 100 ms\n"
    "                       doubling to 5 s, before it counts as rejected (default 5)\n"
    "  --progress           print a progress line on stderr every second (default when\n"
    "                       stderr is a terminal)\n"
    "  --quiet              print no progress, no summary and no per-event rejections\n"
    "  --json               print the summary as one JSON object on stdout\n"
    "  --help               print this help\n"
    "\n"
    "Without a key option, events have no key and the agent spreads them over partitions.\n"
    "Lines longer than 4 MiB are rejected locally as too large. An option value that starts\n"
    "with \"--\" is taken for a forgotten value; write it as --option=VALUE.\n"
    "\n"
    "Exit status:\n"
    "  0  every line read was acknowledged, by both regions or, when the summary counts\n"
    "     them as spooled, by the agent's write-ahead log alone\n"
    "  1  some lines were not acknowledged (rejected, failed or lost), or reading the input\n"
    "     failed part-way\n"
    "  2  invalid command line or agent address, or the input cannot be opened or is a\n"
    "     directory\n"
    "  3  the agent is unreachable, or it closed the connection before answering any request\n";

struct produce_options {
    const char *agent;
    const char *topic;
    const char *file;
    long key_field; /* 0: no column key */
    char delimiter;
    const char *key_json;
    struct tl_client_header *headers;
    size_t header_count;
    size_t batch;
    size_t max_inflight;
    long retries;
    bool progress;
    bool quiet;
    bool json;
};

/* Counters of the outcomes. Every non-empty line read lands in exactly one of them. */
struct produce_stats {
    uint64_t read;    /* non-empty lines */
    uint64_t empty;   /* empty lines, skipped */
    uint64_t sent;    /* events handed to the agent at least once */
    uint64_t retries; /* extra sends after RETRYABLE */
    uint64_t acknowledged;
    uint64_t spooled;      /* part of acknowledged: held in the agent's write-ahead log alone */
    uint64_t missing_key;  /* rejected locally */
    uint64_t invalid_json; /* rejected locally */
    uint64_t too_large;    /* rejected locally: line or request too large */
    uint64_t rejected[TL_CLIENT_CONNECTION_LOST + 1]; /* by agent status */
    uint64_t lost;   /* sent, but the connection closed before the result */
    uint64_t unsent; /* read, but the connection closed before they could be sent */
};

/* One event between reading and its final result. */
struct pending_event {
    char *line; /* the value, NUL-terminated */
    size_t line_len;
    char *key; /* NULL for no key */
    size_t key_len;
    uint64_t line_number;
    long attempts;  /* sends so far */
    int64_t due_ms; /* when a retry may go out */
    struct pending_event *next;
};

struct produce {
    struct produce_options opts;
    struct produce_stats stats;
    struct tl_client *client;

    int input_fd;
    char *input;
    size_t input_len;
    size_t input_cap;
    bool input_eof;
    bool input_failed; /* a read error ended the input early */
    bool skipping_long_line;
    uint64_t line_number;

    struct pending_event **batch;
    size_t batch_len;
    struct pending_event *retry_head;
    struct pending_event *retry_tail;

    bool connection_closed;
    bool agent_answered;  /* at least one result came from the agent itself */
    bool input_abandoned; /* input left unread because the connection closed */
    uint64_t reported_rejections;
    int64_t start_ms;
    int64_t last_progress_ms;
    uint64_t last_progress_acknowledged;
    bool progress_on_tty;
};

static volatile sig_atomic_t stop_signals;

static void on_stop_signal(int signo)
{
    (void)signo;
    stop_signals++;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("twinlane produce: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("; run `twinlane produce --help` for usage\n", stderr);
    return EXIT_USAGE;
}

/* ---- command line ---- */

static bool parse_number(const char *text, const char *option, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || value < min || value > max) {
        usage_error("invalid %s \"%s\"; expected a whole number from %ld to %ld", option, text,
                    min, max);
        return false;
    }
    *out = value;
    return true;
}

static bool parse_header(const char *text, struct produce_options *opts)
{
    const char *equals = strchr(text, '=');
    if (!equals) {
        usage_error("invalid --header \"%s\"; expected NAME=VALUE", text);
        return false;
    }
    if (equals == text) {
        usage_error("invalid --header \"%s\": the header name is empty; expected NAME=VALUE",
                    text);
        return false;
    }
    if (strncmp(text, RESERVED_HEADER_PREFIX, strlen(RESERVED_HEADER_PREFIX)) == 0) {
        usage_error("invalid --header \"%s\": names starting with \"" RESERVED_HEADER_PREFIX
                    "\" are reserved for the headers the agent sets; choose another name",
                    text);
        return false;
    }
    opts->headers = tl_xrealloc(opts->headers, (opts->header_count + 1) * sizeof *opts->headers);
    size_t name_len = (size_t)(equals - text);
    char *name = tl_xmalloc(name_len + 1);
    memcpy(name, text, name_len);
    name[name_len] = '\0';
    opts->headers[opts->header_count] = (struct tl_client_header){
        .name = name,
        .value = equals + 1,
        .value_len = strlen(equals + 1),
    };
    opts->header_count++;
    return true;
}

/* Parses the command line; returns 0, EXIT_USAGE after printing why, or -1 after --help. */
static int parse_options(int argc, char **argv, struct produce_options *opts)
{
    enum {
        OPT_AGENT = 256, OPT_TOPIC, OPT_FILE, OPT_KEY_FIELD, OPT_DELIMITER, OPT_KEY_JSON,
        OPT_HEADER, OPT_BATCH, OPT_MAX_INFLIGHT, OPT_RETRIES, OPT_PROGRESS, OPT_QUIET, OPT_JSON,
        OPT_HELP,
    };
    static const struct option long_options[] = {
        {"agent", required_argument, NULL, OPT_AGENT},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"file", required_argument, NULL, OPT_FILE},
        {"key-field", required_argument, NULL, OPT_KEY_FIELD},
        {"delimiter", required_argument, NULL, OPT_DELIMITER},
        {"key-json", required_argument, NULL, OPT_KEY_JSON},
        {"header", required_argument, NULL, OPT_HEADER},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };

    const char *env_agent = getenv("TWINLANE_AGENT");
    *opts = (struct produce_options){
        .agent = env_agent && env_agent[0] ? env_agent : DEFAULT_AGENT,
        .delimiter = '\t',
        .batch = DEFAULT_BATCH,
        .max_inflight = DEFAULT_MAX_INFLIGHT,
        .retries = DEFAULT_RETRIES,
    };

    opterr = 0;
    optind = 1;
    for (;;) {
        int option = getopt_long(argc, argv, ":", long_options, NULL);
        if (option == -1)
            break;

        /*
         * getopt_long takes the next argument as the value even when it is an option, so
         * "--key-json --file x" would make "--file" the field name. A separate value starting
         * with "--" is rejected. The --option=VALUE form, where optarg points into the same
         * argument, still passes such a value.
         */
        if (optarg && optarg == argv[optind - 1] && strncmp(optarg, "--", 2) == 0)
            return usage_error("option %s needs a value but got \"%s\"; write %s=%s if that "
                               "is the value",
                               argv[optind - 2], optarg, argv[optind - 2], optarg);

        long number = 0;
        switch (option) {
        case OPT_AGENT: opts->agent = optarg; break;
        case OPT_TOPIC: opts->topic = optarg; break;
        case OPT_FILE: opts->file = optarg; break;
        case OPT_KEY_JSON: opts->key_json = optarg; break;
        case OPT_PROGRESS: opts->progress = true; break;
        case OPT_QUIET: opts->quiet = true; break;
        case OPT_JSON: opts->json = true; break;
        case OPT_HELP: fputs(usage_text, stdout); return -1;
        case OPT_KEY_FIELD:
            if (!parse_number(optarg, "--key-field", 1, 1000000, &opts->key_field))
                return EXIT_USAGE;
            break;
        case OPT_DELIMITER:
            if (strcmp(optarg, "\\t") == 0)
                opts->delimiter = '\t';
            else if (strlen(optarg) == 1)
                opts->delimiter = optarg[0];
            else
                return usage_error("invalid --delimiter \"%s\"; expected one character or \\t",
                                   optarg);
            break;
        case OPT_HEADER:
            if (!parse_header(optarg, opts))
                return EXIT_USAGE;
            break;
        case OPT_BATCH:
            if (!parse_number(optarg, "--batch", 1, 1000000, &number))
                return EXIT_USAGE;
            opts->batch = (size_t)number;
            break;
        case OPT_MAX_INFLIGHT:
            if (!parse_number(optarg, "--max-inflight", 1, 100000000, &number))
                return EXIT_USAGE;
            opts->max_inflight = (size_t)number;
            break;
        case OPT_RETRIES:
            if (!parse_number(optarg, "--retries", 0, 1000, &opts->retries))
                return EXIT_USAGE;
            break;
        case ':': return usage_error("option %s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
    }

    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!opts->topic || opts->topic[0] == '\0')
        return usage_error("missing --topic");
    if (opts->key_field > 0 && opts->key_json)
        return usage_error("--key-field and --key-json exclude each other");
    if (opts->batch > opts->max_inflight)
        opts->batch = opts->max_inflight;
    return 0;
}

/* ---- turning lines into events ---- */

static void pending_free(struct pending_event *ev)
{
    free(ev->line);
    free(ev->key);
    free(ev);
}

/* Prints one rejected line, up to MAX_REPORTED_REJECTIONS of them. */
static void report_rejection(struct produce *p, uint64_t line_number, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_rejection(struct produce *p, uint64_t line_number, const char *fmt, ...)
{
    p->reported_rejections++;
    if (p->opts.quiet || p->reported_rejections > MAX_REPORTED_REJECTIONS)
        return;

    va_list ap;
    fprintf(stderr, "twinlane produce: line %llu: ", (unsigned long long)line_number);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (p->reported_rejections == MAX_REPORTED_REJECTIONS)
        fputs("twinlane produce: further rejections are counted in the summary only\n", stderr);
}

/* Sets ev's key to column key_field of the line; returns false when the line is too short. */
static bool key_from_column(const struct produce_options *opts, struct pending_event *ev)
{
    const char *field = ev->line;
    const char *end = ev->line + ev->line_len;
    for (long column = 1; column < opts->key_field; column++) {
        const char *next = memchr(field, opts->delimiter, (size_t)(end - field));
        if (!next)
            return false;
        field = next + 1;
    }
    const char *field_end = memchr(field, opts->delimiter, (size_t)(end - field));
    if (!field_end)
        field_end = end;
    ev->key_len = (size_t)(field_end - field);
    ev->key = tl_xmemdup(field, ev->key_len + 1);
    ev->key[ev->key_len] = '\0';
    return true;
}

/*
 * Sets ev's key to the JSON field named key_json. Returns 0, or the stats counter that the
 * line belongs to when it has no usable key.
 */
static uint64_t *key_from_json(struct produce *p, struct pending_event *ev)
{
    json_error_t error;
    json_t *root = json_loadb(ev->line, ev->line_len, 0, &error);
    if (!root || !json_is_object(root)) {
        report_rejection(p, ev->line_number, "not a JSON object (%s); skipped",
                         root ? "top-level value is not an object" : error.text);
        json_decref(root);
        return &p->stats.invalid_json;
    }

    uint64_t *rejected = NULL;
    json_t *value = json_object_get(root, p->opts.key_json);
    if (!value || json_is_null(value)) {
        report_rejection(p, ev->line_number, "no field \"%s\" for the key; skipped",
                         p->opts.key_json);
        rejected = &p->stats.missing_key;
    } else if (json_is_string(value)) {
        ev->key_len = json_string_length(value);
        ev->key = tl_xmemdup(json_string_value(value), ev->key_len + 1);
    } else {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            tl_panic("out of memory encoding a JSON key");
        ev->key_len = strlen(text);
        ev->key = tl_xstrdup(text);
        free(text);
    }
    json_decref(root);
    return rejected;
}

/* Turns one line into a pending event in the batch, or counts why it was skipped. */
static void take_line(struct produce *p, const char *line, size_t len)
{
    p->line_number++;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0) {
        p->stats.empty++;
        return;
    }
    p->stats.read++;

    struct pending_event *ev = tl_xcalloc(1, sizeof *ev);
    ev->line = tl_xmemdup(line, len + 1);
    ev->line[len] = '\0';
    ev->line_len = len;
    ev->line_number = p->line_number;

    uint64_t *rejected = NULL;
    if (p->opts.key_field > 0 && !key_from_column(&p->opts, ev)) {
        report_rejection(p, ev->line_number, "fewer than %ld columns for the key; skipped",
                         p->opts.key_field);
        rejected = &p->stats.missing_key;
    } else if (p->opts.key_json) {
        rejected = key_from_json(p, ev);
    }
    if (rejected) {
        (*rejected)++;
        pending_free(ev);
        return;
    }

    p->batch[p->batch_len] = ev;
    p->batch_len++;
}

/*
 * Moves complete lines from the input buffer into the batch until it is full. At end of
 * input, a last line without a newline counts too.
 */
static void take_buffered_lines(struct produce *p)
{
    size_t start = 0;
    while (p->batch_len < p->opts.batch && start < p->input_len) {
        char *newline = memchr(p->input + start, '\n', p->input_len - start);
        if (!newline)
            break;
        size_t len = (size_t)(newline - (p->input + start));
        if (p->skipping_long_line)
            p->skipping_long_line = false;
        else
            take_line(p, p->input + start, len);
        start += len + 1;
    }

    if (p->input_eof && start < p->input_len && p->batch_len < p->opts.batch) {
        if (!p->skipping_long_line)
            take_line(p, p->input + start, p->input_len - start);
        start = p->input_len;
    }

    if (start > 0) {
        memmove(p->input, p->input + start, p->input_len - start);
        p->input_len -= start;
    }

    /* A line that outgrew the limit is dropped now and its rest skipped up to the newline. */
    if (p->input_len > MAX_LINE_BYTES && !memchr(p->input, '\n', p->input_len)) {
        p->line_number++;
        p->stats.read++;
        p->stats.too_large++;
        report_rejection(p, p->line_number, "line longer than %zu bytes; skipped",
                         MAX_LINE_BYTES);
        p->input_len = 0;
        p->skipping_long_line = true;
    }
}

/*
 * Reads one chunk of input if some arrives within wait_ms. Returns false when nothing was
 * available. End of input sets input_eof, and a read error sets input_eof and input_failed.
 */
static bool read_input(struct produce *p, int wait_ms)
{
    struct pollfd pfd = {.fd = p->input_fd, .events = POLLIN};
    int ready = poll(&pfd, 1, wait_ms);
    if (ready <= 0)
        return false;

    if (p->input_cap - p->input_len < READ_CHUNK) {
        p->input_cap = p->input_len + READ_CHUNK;
        p->input = tl_xrealloc(p->input, p->input_cap);
    }
    ssize_t n = read(p->input_fd, p->input + p->input_len, READ_CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n < 0) {
        fprintf(stderr,
                "twinlane produce: reading %s failed: %s; the lines before the error are "
                "sent, the rest of the input is not, and the exit status is 1\n",
                p->opts.file ? p->opts.file : "stdin", strerror(errno));
        p->input_eof = true;
        p->input_failed = true;
        return true;
    }
    if (n == 0)
        p->input_eof = true;
    p->input_len += (size_t)n;
    return true;
}

/* ---- sending and results ---- */

static void retry_push(struct produce *p, struct pending_event *ev)
{
    ev->next = NULL;
    if (p->retry_tail)
        p->retry_tail->next = ev;
    else
        p->retry_head = ev;
    p->retry_tail = ev;
}

static void on_result(void *ctx, const struct tl_client_result *result)
{
    struct produce *p = ctx;
    struct pending_event *ev = result->opaque;

    if (result->status != TL_CLIENT_CONNECTION_LOST)
        p->agent_answered = true;
    if (result->status == TL_CLIENT_OK) {
        p->stats.acknowledged++;
        if (result->spooled)
            p->stats.spooled++;
        pending_free(ev);
        return;
    }
    if (result->status == TL_CLIENT_RETRYABLE && ev->attempts <= p->opts.retries) {
        int64_t backoff = RETRY_BACKOFF_MIN_MS;
        for (long i = 1; i < ev->attempts && backoff < RETRY_BACKOFF_MAX_MS; i++)
            backoff *= 2;
        if (backoff > RETRY_BACKOFF_MAX_MS)
            backoff = RETRY_BACKOFF_MAX_MS;
        ev->due_ms = tl_now_ms() + backoff;
        retry_push(p, ev);
        return;
    }
    if (result->status == TL_CLIENT_CONNECTION_LOST) {
        p->stats.lost++;
        pending_free(ev);
        return;
    }

    int status = result->status;
    if (status < 0 || status > TL_CLIENT_CONNECTION_LOST)
        status = TL_CLIENT_FAILED;
    p->stats.rejected[status]++;
    report_rejection(p, ev->line_number, "%s%s: %s", tl_client_status_name(status),
                     status == TL_CLIENT_RETRYABLE ? " after all retries" : "",
                     result->message ? result->message : "no message from the agent");
    pending_free(ev);
}

/* Counts events that will never be sent because the connection is gone. */
static void drop_unsent(struct produce *p, struct pending_event **events, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        p->stats.unsent++;
        pending_free(events[i]);
    }
}

/*
 * Sends events as one request, splitting it in halves while it exceeds the request size
 * limit. Events that cannot be sent are counted and freed here.
 */
static void send_events(struct produce *p, struct pending_event **events, size_t count)
{
    if (p->connection_closed) {
        drop_unsent(p, events, count);
        return;
    }

    struct tl_client_event *batch = tl_xcalloc(count, sizeof *batch);
    for (size_t i = 0; i < count; i++) {
        struct pending_event *ev = events[i];
        batch[i] = (struct tl_client_event){
            .topic = p->opts.topic,
            .key = ev->key,
            .key_len = ev->key_len,
            .has_key = ev->key != NULL,
            .value = ev->line,
            .value_len = ev->line_len,
            .headers = p->opts.headers,
            .header_count = p->opts.header_count,
            .opaque = ev,
        };
    }

    char err[512];
    int rc = tl_client_send(p->client, batch, count, NULL, err, sizeof err);
    free(batch);

    if (rc == 0) {
        for (size_t i = 0; i < count; i++) {
            if (events[i]->attempts == 0)
                p->stats.sent++;
            else
                p->stats.retries++;
            events[i]->attempts++;
        }
        return;
    }
    if (rc == TL_CLIENT_ETOOBIG && count > 1) {
        size_t half = count / 2;
        send_events(p, events, half);
        send_events(p, events + half, count - half);
        return;
    }
    if (rc == TL_CLIENT_ETOOBIG) {
        p->stats.too_large++;
        report_rejection(p, events[0]->line_number, "%s; skipped", err);
        pending_free(events[0]);
        return;
    }

    if (!p->connection_closed)
        fprintf(stderr, "twinlane produce: %s\n", err);
    p->connection_closed = rc == TL_CLIENT_ECLOSED || p->connection_closed;
    drop_unsent(p, events, count);
}

static void send_batch(struct produce *p)
{
    if (p->batch_len == 0)
        return;
    send_events(p, p->batch, p->batch_len);
    p->batch_len = 0;
}

/* Sends the retries that are due; returns ms until the next one, or -1 when none waits. */
static int send_due_retries(struct produce *p)
{
    int64_t now = tl_now_ms();
    while (p->retry_head && p->retry_head->due_ms <= now &&
           tl_client_inflight(p->client) < p->opts.max_inflight) {
        struct pending_event *ev = p->retry_head;
        p->retry_head = ev->next;
        if (!p->retry_head)
            p->retry_tail = NULL;
        send_events(p, &ev, 1);
    }
    if (!p->retry_head)
        return -1;
    int64_t wait = p->retry_head->due_ms - now;
    return wait < 0 ? 0 : (int)wait;
}

/* ---- progress and summary ---- */

static double elapsed_seconds(const struct produce *p)
{
    return (double)(tl_now_ms() - p->start_ms) / 1000.0;
}

static void print_progress(struct produce *p, bool final)
{
    int64_t now = tl_now_ms();
    if (!final && now - p->last_progress_ms < PROGRESS_INTERVAL_MS)
        return;

    double interval_s = (double)(now - p->last_progress_ms) / 1000.0;
    double rate = interval_s > 0
                      ? (double)(p->stats.acknowledged - p->last_progress_acknowledged) / interval_s
                      : 0;
    fprintf(stderr, "%ssent %llu, acknowledged %llu, %.0f events/s%s",
            p->progress_on_tty ? "\r" : "", (unsigned long long)p->stats.sent,
            (unsigned long long)p->stats.acknowledged, rate,
            p->progress_on_tty ? "\033[K" : "\n");
    if (final && p->progress_on_tty)
        fputc('\n', stderr);
    p->last_progress_ms = now;
    p->last_progress_acknowledged = p->stats.acknowledged;
}

static void print_summary_text(const struct produce *p)
{
    const struct produce_stats *s = &p->stats;
    double elapsed = elapsed_seconds(p);
    double rate = elapsed > 0 ? (double)s->acknowledged / elapsed : 0;

    fprintf(stderr,
            "twinlane produce: read %llu lines (%llu empty skipped), sent %llu, acknowledged "
            "%llu in %.2f s (%.0f events/s)\n",
            (unsigned long long)s->read, (unsigned long long)s->empty,
            (unsigned long long)s->sent, (unsigned long long)s->acknowledged, elapsed, rate);
    if (s->spooled > 0)
        fprintf(stderr,
                "  spooled: %llu acknowledged from the agent's write-ahead log alone because no "
                "region was available; the regions receive them when they return\n",
                (unsigned long long)s->spooled);
    if (s->missing_key + s->invalid_json + s->too_large > 0)
        fprintf(stderr, "  rejected locally: %llu missing key, %llu invalid JSON, %llu too large\n",
                (unsigned long long)s->missing_key, (unsigned long long)s->invalid_json,
                (unsigned long long)s->too_large);
    for (int status = TL_CLIENT_RETRYABLE; status <= TL_CLIENT_FAILED; status++) {
        if (s->rejected[status] > 0)
            fprintf(stderr, "  %s: %llu\n", tl_client_status_name(status),
                    (unsigned long long)s->rejected[status]);
    }
    if (s->lost + s->unsent > 0)
        fprintf(stderr, "  connection lost: %llu in flight, %llu not sent\n",
                (unsigned long long)s->lost, (unsigned long long)s->unsent);
    if (s->retries > 0)
        fprintf(stderr, "  retries: %llu\n", (unsigned long long)s->retries);
}

static void print_summary_json(const struct produce *p)
{
    const struct produce_stats *s = &p->stats;
    double elapsed = elapsed_seconds(p);

    json_t *rejected = json_object();
    for (int status = TL_CLIENT_RETRYABLE; status <= TL_CLIENT_FAILED; status++)
        json_object_set_new(rejected, tl_client_status_name(status),
                            json_integer((json_int_t)s->rejected[status]));
    json_t *summary = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:o, s:I, s:I, s:I, s:I}",
        "read", (json_int_t)s->read, "empty", (json_int_t)s->empty, "sent", (json_int_t)s->sent,
        "retries", (json_int_t)s->retries, "acknowledged", (json_int_t)s->acknowledged,
        "spooled", (json_int_t)s->spooled, "rejected_locally", "missing_key",
        (json_int_t)s->missing_key, "invalid_json", (json_int_t)s->invalid_json, "too_large",
        (json_int_t)s->too_large, "rejected", rejected,
        "connection_lost", (json_int_t)s->lost, "unsent", (json_int_t)s->unsent,
        "elapsed_ms", (json_int_t)(elapsed * 1000), "events_per_second",
        (json_int_t)(elapsed > 0 ? (double)s->acknowledged / elapsed : 0));
    if (!summary)
        tl_panic("cannot build the JSON summary");

    json_dumpf(summary, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(summary);
}

/* ---- main loop ---- */

static bool input_done(const struct produce *p)
{
    return p->input_eof && p->input_len == 0;
}

/* Reads and sends input while the in-flight limit allows; waits up to wait_ms for input. */
static void pump_input(struct produce *p, int wait_ms)
{
    while (!input_done(p) && !p->connection_closed) {
        if (tl_client_inflight(p->client) + p->batch_len >= p->opts.max_inflight)
            break;

        take_buffered_lines(p);
        if (p->batch_len == p->opts.batch) {
            send_batch(p);
            continue;
        }
        if (input_done(p))
            break;

        /* Nothing more right now: send what there is rather than wait for a full batch. */
        if (!read_input(p, p->batch_len > 0 ? 0 : wait_ms)) {
            send_batch(p);
            break;
        }
        wait_ms = 0;
    }
    send_batch(p);
}

static void run(struct produce *p)
{
    bool show_progress = !p->opts.quiet && (p->opts.progress || p->progress_on_tty);
    int64_t last_response_ms = tl_now_ms();

    for (;;) {
        if (stop_signals > 0 && !p->input_eof) {
            fputs("twinlane produce: stopping; waiting for events in flight (signal again to "
                  "abandon them)\n",
                  stderr);
            p->input_eof = true;
            p->input_len = 0;
        }
        if (stop_signals > 1)
            break;

        int rc = tl_client_poll(p->client, 0);
        /* The response timeout counts from the end of input or the last result after it. */
        if (rc > 0 || !input_done(p))
            last_response_ms = tl_now_ms();
        if (rc == TL_CLIENT_ECLOSED && !p->connection_closed) {
            fprintf(stderr, "twinlane produce: %s\n", tl_client_last_error(p->client));
            p->connection_closed = true;
        }
        int retry_wait_ms = send_due_retries(p);

        size_t inflight = tl_client_inflight(p->client);
        if (input_done(p) && inflight == 0 && !p->retry_head)
            break;
        if (p->connection_closed && inflight == 0)
            break;
        if (input_done(p) && inflight > 0 && tl_now_ms() - last_response_ms > RESPONSE_TIMEOUT_MS) {
            fprintf(stderr,
                    "twinlane produce: no response from the agent for %d s; giving up on %zu "
                    "events in flight\n",
                    RESPONSE_TIMEOUT_MS / 1000, inflight);
            break;
        }

        /* Wait on the input only when nothing is in flight, else poll the agent often. */
        int wait_ms = inflight > 0 || p->retry_head ? 10 : 100;
        pump_input(p, wait_ms);
        if (input_done(p) || p->connection_closed ||
            tl_client_inflight(p->client) >= p->opts.max_inflight) {
            int poll_ms = retry_wait_ms >= 0 && retry_wait_ms < 100 ? retry_wait_ms : 100;
            if (tl_client_poll(p->client, poll_ms) > 0)
                last_response_ms = tl_now_ms();
        }

        if (show_progress)
            print_progress(p, false);
    }

    p->input_abandoned = p->connection_closed && !input_done(p);

    /* Events still waiting for a retry after the connection closed never go out again. */
    while (p->retry_head) {
        struct pending_event *ev = p->retry_head;
        p->retry_head = ev->next;
        p->stats.unsent++;
        pending_free(ev);
    }
    p->retry_tail = NULL;
    if (show_progress)
        print_progress(p, true);
}

/*
 * Checks that the input is not a directory, which open(2) and shell redirection accept but
 * read(2) rejects with EISDIR. Returns false after printing why.
 */
static bool input_is_not_directory(const struct produce_options *opts, int fd)
{
    const char *option = opts->file ? "--file " : "";
    const char *name = opts->file ? opts->file : "stdin";
    struct stat st;
    if (fstat(fd, &st) < 0) {
        fprintf(stderr, "twinlane produce: cannot check the input %s%s: %s\n", option, name,
                strerror(errno));
        return false;
    }
    if (S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "twinlane produce: the input %s%s is a directory; give a file with --file or "
                "send the lines to stdin\n",
                option, name);
        return false;
    }
    return true;
}

static void install_signal_handlers(void)
{
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int tl_cli_produce(int argc, char **argv)
{
    struct produce p = {.input_fd = -1};
    int exit_code = parse_options(argc, argv, &p.opts);
    if (exit_code == -1) {
        exit_code = 0;
        goto out;
    }
    if (exit_code != 0)
        goto out;

    p.input_fd = p.opts.file ? open(p.opts.file, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (p.input_fd < 0) {
        fprintf(stderr, "twinlane produce: cannot open --file %s: %s\n", p.opts.file,
                strerror(errno));
        exit_code = EXIT_USAGE;
        goto out;
    }
    if (!input_is_not_directory(&p.opts, p.input_fd)) {
        exit_code = EXIT_USAGE;
        goto out;
    }

    struct tl_client_options client_opts = {.on_result = on_result, .ctx = &p};
    char err[512];
    int rc = tl_client_connect(p.opts.agent, &client_opts, &p.client, err, sizeof err);
    if (rc == TL_CLIENT_EINVAL) {
        exit_code = usage_error("%s", err);
        goto out;
    }
    if (rc < 0) {
        fprintf(stderr, "twinlane produce: %s\n", err);
        exit_code = EXIT_UNREACHABLE;
        goto out;
    }

    install_signal_handlers();
    p.batch = tl_xcalloc(p.opts.batch, sizeof *p.batch);
    p.start_ms = tl_now_ms();
    p.last_progress_ms = p.start_ms;
    p.progress_on_tty = isatty(STDERR_FILENO);

    run(&p);

    /* Events still in flight after run gave up on them get CONNECTION_LOST results here. */
    tl_client_close(p.client);
    p.client = NULL;

    if (p.opts.json)
        print_summary_json(&p);
    else if (!p.opts.quiet)
        print_summary_text(&p);
    bool all_acknowledged =
        p.stats.acknowledged == p.stats.read && !p.input_abandoned && !p.input_failed;
    exit_code = all_acknowledged ? EXIT_ALL_ACKNOWLEDGED : EXIT_NOT_ACKNOWLEDGED;
    /*
     * An agent that closed the connection without answering anything was never reached.
     * NOTE: a peer whose first response could not be decoded lands here too, because the
     * client library reports both as a closed connection with no result.
     */
    if (p.connection_closed && !p.agent_answered)
        exit_code = EXIT_UNREACHABLE;

out:
    if (p.input_fd > STDIN_FILENO)
        close(p.input_fd);
    for (size_t i = 0; i < p.opts.header_count; i++)
        free((char *)p.opts.headers[i].name);
    free(p.opts.headers);
    free(p.batch);
    free(p.input);
    return exit_code;
}
