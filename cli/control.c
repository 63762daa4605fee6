/*
 * The control commands: `twinlane fence REGION`, `unfence REGION`, `failover REGION`,
 * `failback`, `drain`, `pause` and `resume`, sent to one or many agents' admin APIs in
 * parallel.
 *
 * fence, failover, failback and drain change where events go or stop an agent, so they first
 * show a dry run (what would change and each region's divergence) and ask for confirmation
 * on a terminal. --yes skips the question. Without a terminal and without --yes they stop with
 * exit status 2 before sending anything.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin_client.h"
#include "mem.h"

/* Entry point of every control subcommand; main.c declares it next to its table. */
int tl_cli_control(int argc, char **argv);

struct verb {
    const char *name;
    bool takes_region;
    bool destructive;
    const char *summary;
};

static const struct verb VERBS[] = {
    {"fence", true, true, "Fence REGION's circuit breaker: the agent sends it nothing until it "
     "is unfenced,\nand its events wait in the WAL"},
    {"unfence", true, false, "Lift REGION's fence: the breaker goes to half-open, the region is "
     "probed and\nbackfilled from the WAL, then the breaker closes"},
    {"failover", true, true, "Fence the other region and unfence REGION, so that REGION takes "
     "every event"},
    {"failback", false, true, "Unfence every region; fenced regions are backfilled, then used "
     "again"},
    {"drain", false, true, "Stop accepting events, answer those in flight, persist the WAL "
     "cursors and\nexit, as SIGTERM does"},
    {"pause", false, false, "Stop reading producer connections, keeping them open; "
     "acknowledgements of\naccepted events still flow"},
    {"resume", false, false, "Read producer connections again after pause"},
};

static void print_usage(const struct verb *v)
{
    printf("Usage: twinlane %s%s [OPTIONS]\n\n%s.\n\n", v->name,
           v->takes_region ? " REGION" : "", v->summary);
    fputs("Options:\n"
          "  --agent ADDRESS    admin API of an agent: a Unix socket path (or unix:PATH), or a\n"
          "                     loopback host:port (or http://host:port); repeatable\n"
          "                     (default: $TWINLANE_ADMIN, else " TL_ADMIN_DEFAULT_AGENT ")\n"
          "  --agents FILE      read agent addresses from FILE, one per line\n"
          "  --timeout SECONDS  time allowed for each agent to answer (default 5)\n"
          "  --token-file FILE  bearer token for TCP addresses: a line \"NAME TOKEN\" or\n"
          "                     \"TOKEN\"\n"
          "  --dry-run          change nothing; show what would change and each region's\n"
          "                     divergence (events in the WAL the region has not stored)\n",
          stdout);
    if (v->destructive)
        fputs("  --yes              do not ask for confirmation (required without a terminal)\n",
              stdout);
    if (strcmp(v->name, "failover") == 0)
        fputs("  --force            fail over even when REGION's breaker is not closed\n",
              stdout);
    if (strcmp(v->name, "fence") == 0)
        fputs("  --force            fence REGION even when the other region's breaker is not\n"
              "                     closed, so that no region takes events\n",
              stdout);
    fputs("  --json             print one JSON object with each agent's response\n"
          "  --help             print this help\n"
          "\n"
          "Exit status:\n"
          "  0  every agent carried out the command\n"
          "  1  some agents failed, are unreachable, or the confirmation was declined\n"
          "  2  invalid command line, or no --yes without a terminal\n"
          "  3  no agent could be reached\n",
          stdout);
}

static bool region_name_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 32)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

static void build_path(const struct verb *v, const char *region, bool dry_run, bool force,
                       char *path, size_t size)
{
    const char *dry = dry_run ? "dry_run=1" : "";
    if (strcmp(v->name, "fence") == 0)
        snprintf(path, size, "/v1/regions/%s/fence%s%s%s%s", region,
                 dry_run || force ? "?" : "", dry, dry_run && force ? "&" : "",
                 force ? "force=1" : "");
    else if (strcmp(v->name, "unfence") == 0)
        snprintf(path, size, "/v1/regions/%s/unfence%s%s", region, dry_run ? "?" : "", dry);
    else if (strcmp(v->name, "failover") == 0)
        snprintf(path, size, "/v1/failover?to=%s%s%s%s", region, dry_run ? "&" : "", dry,
                 force ? "&force=1" : "");
    else if (strcmp(v->name, "pause") == 0 || strcmp(v->name, "resume") == 0)
        snprintf(path, size, "/v1/ingest/%s%s%s", v->name, dry_run ? "?" : "", dry);
    else
        snprintf(path, size, "/v1/%s%s%s", v->name, dry_run ? "?" : "", dry);
}

/* Prints one agent's response: the breaker or ingest changes and the divergence. */
static void print_answer(const struct tl_admin_reply *r)
{
    const char *error = tl_admin_reply_error(r);
    if (error) {
        printf("%-28s %s: %s\n", r->agent, r->reachable ? "error" : "unreachable", error);
        return;
    }
    json_t *body = r->body;
    bool dry_run = json_is_true(json_object_get(body, "dry_run"));
    char changes[512] = "";
    size_t used = 0;
    size_t k;
    json_t *item;
    json_array_foreach(json_object_get(body, "changes"), k, item) {
        int n = snprintf(changes + used, sizeof(changes) - used, "%s%s %s -> %s",
                         used ? ", " : "",
                         json_string_value(json_object_get(item, "region")),
                         json_string_value(json_object_get(item, "breaker_before")),
                         json_string_value(json_object_get(item, "breaker_after")));
        if (n > 0 && (size_t)n < sizeof(changes) - used)
            used += (size_t)n;
    }
    if (json_object_get(body, "paused_before"))
        snprintf(changes, sizeof(changes), "ingest %s -> %s",
                 json_is_true(json_object_get(body, "paused_before")) ? "paused" : "reading",
                 json_is_true(json_object_get(body, "paused_after")) ? "paused" : "reading");
    if (json_object_get(body, "inflight_events"))
        snprintf(changes, sizeof(changes), "%s, %lld events in flight",
                 dry_run ? "would stop the agent" : "agent stopping",
                 (long long)json_integer_value(json_object_get(body, "inflight_events")));

    char divergence[256] = "";
    used = 0;
    json_array_foreach(json_object_get(body, "divergence"), k, item) {
        int n = snprintf(divergence + used, sizeof(divergence) - used, "%s%s %lld",
                         used ? ", " : "", json_string_value(json_object_get(item, "region")),
                         (long long)json_integer_value(
                             json_object_get(item, "divergence_events")));
        if (n > 0 && (size_t)n < sizeof(divergence) - used)
            used += (size_t)n;
    }
    const char *pending = json_string_value(json_object_get(body, "pending"));
    printf("%-28s %s%s; divergence (events not stored): %s%s%s\n", r->agent,
           dry_run ? "would change: " : "", changes, divergence, pending ? "; " : "",
           pending ? pending : "");
}

static void print_replies(const struct tl_admin_options *opts,
                          const struct tl_admin_reply *replies, bool as_json)
{
    if (!as_json) {
        for (size_t i = 0; i < opts->agent_count; i++)
            print_answer(&replies[i]);
        return;
    }
    json_t *agents = json_array();
    for (size_t i = 0; i < opts->agent_count; i++) {
        const char *error = tl_admin_reply_error(&replies[i]);
        json_t *item = json_pack("{s:s, s:b, s:b}", "agent", replies[i].agent, "ok", !error,
                                 "reachable", replies[i].reachable);
        if (error)
            json_object_set_new(item, "error", json_string(error));
        if (replies[i].body)
            json_object_set(item, "answer", replies[i].body);
        json_array_append_new(agents, item);
    }
    json_t *doc = json_pack("{s:o}", "agents", agents);
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    fputc('\n', stdout);
    json_decref(doc);
}

/* Sends one request to every agent, prints the responses and returns the exit code. */
static int send_to_all(const struct tl_admin_options *opts, const char *path, bool as_json)
{
    struct tl_admin_reply *replies = tl_xcalloc(opts->agent_count, sizeof(*replies));
    tl_admin_request_all(opts, "POST", path, replies);
    print_replies(opts, replies, as_json);
    int rc = tl_admin_exit_code(replies, opts->agent_count);
    tl_admin_replies_free(replies, opts->agent_count);
    free(replies);
    return rc;
}

/* Asks on the terminal; returns true only for an answer starting with y or Y. */
static bool confirm(const struct verb *v, const char *region, size_t agents)
{
    fprintf(stderr, "%s%s%s on %zu agent%s? [y/N] ", v->name, region ? " " : "",
            region ? region : "", agents, agents == 1 ? "" : "s");
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return false;
    return line[0] == 'y' || line[0] == 'Y';
}

int tl_cli_control(int argc, char **argv)
{
    const struct verb *v = NULL;
    for (size_t i = 0; i < sizeof(VERBS) / sizeof(VERBS[0]); i++)
        if (strcmp(argv[0], VERBS[i].name) == 0)
            v = &VERBS[i];
    if (!v)
        tl_panic("tl_cli_control called for unknown command %s", argv[0]);

    struct tl_admin_options opts;
    int rc = tl_admin_options_parse(argc, argv, &opts);
    if (rc != 0)
        return rc;
    if (opts.help) {
        print_usage(v);
        goto out;
    }

    const char *region = NULL;
    size_t wanted = v->takes_region ? 1 : 0;
    if (opts.arg_count != wanted) {
        fprintf(stderr, "twinlane %s: expected %s; run `twinlane %s --help`\n", v->name,
                wanted ? "one REGION argument" : "no arguments", v->name);
        rc = TL_ADMIN_EXIT_USAGE;
        goto out;
    }
    if (wanted) {
        region = opts.args[0];
        if (!region_name_valid(region)) {
            fprintf(stderr, "twinlane %s: \"%s\" is not a region name (1 to 32 characters from "
                    "[A-Za-z0-9_-])\n", v->name, region);
            rc = TL_ADMIN_EXIT_USAGE;
            goto out;
        }
    }
    if (opts.force && strcmp(v->name, "failover") != 0 && strcmp(v->name, "fence") != 0) {
        fprintf(stderr, "twinlane %s: --force applies only to fence and failover\n", v->name);
        rc = TL_ADMIN_EXIT_USAGE;
        goto out;
    }

    char path[256];
    if (opts.dry_run) {
        build_path(v, region, true, opts.force, path, sizeof(path));
        rc = send_to_all(&opts, path, opts.json);
        goto out;
    }

    if (v->destructive && !opts.yes) {
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr, "twinlane %s: standard input is not a terminal, so nobody can "
                    "confirm; add --yes to %s without asking\n", v->name, v->name);
            rc = TL_ADMIN_EXIT_USAGE;
            goto out;
        }
        build_path(v, region, true, opts.force, path, sizeof(path));
        rc = send_to_all(&opts, path, false);
        if (rc == TL_ADMIN_EXIT_UNREACHABLE)
            goto out;
        if (!confirm(v, region, opts.agent_count)) {
            fprintf(stderr, "twinlane %s: not confirmed; nothing changed\n", v->name);
            rc = TL_ADMIN_EXIT_PARTIAL;
            goto out;
        }
    }

    build_path(v, region, false, opts.force, path, sizeof(path));
    rc = send_to_all(&opts, path, opts.json);

out:
    tl_admin_options_free(&opts);
    return rc;
}
