/*
 * `twinlane status`: GET /v1/status from one or many agents and print one table row per
 * agent and region, or the responses as JSON.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_client.h"
#include "mem.h"

/* Entry point of the subcommand; main.c declares it too, next to its table of commands. */
int tl_cli_status(int argc, char **argv);

static const char usage_text[] =
    "Usage: twinlane status [OPTIONS]\n"
    "\n"
    "Show each agent's regions: circuit breaker, cursor, backlog, age of the oldest event a\n"
    "region has not stored, and the last heartbeat. Agents are asked in parallel.\n"
    "\n"
    "Options:\n"
    "  --agent ADDRESS    admin API of an agent: a Unix socket path (or unix:PATH), or a\n"
    "                     loopback host:port (or http://host:port); repeatable\n"
    "                     (default: $TWINLANE_ADMIN, else " TL_ADMIN_DEFAULT_AGENT ")\n"
    "  --agents FILE      read agent addresses from FILE, one per line (# starts a comment)\n"
    "  --timeout SECONDS  time allowed for each agent to answer (default 5)\n"
    "  --token-file FILE  bearer token for TCP addresses: a line \"NAME TOKEN\" or \"TOKEN\"\n"
    "  --json             print one JSON object: {\"agents\": [{\"agent\", \"ok\", \"status\" or\n"
    "                     \"error\"}]}\n"
    "  --help             print this help\n"
    "\n"
    "Exit status:\n"
    "  0  every agent responded\n"
    "  1  some agents are unreachable or responded with an error\n"
    "  2  invalid command line\n"
    "  3  no agent could be reached\n";

/* Formats seconds as "0.4s", "12s", "5m03s" or "-" when unknown. */
static void format_age(json_t *value, char *buf, size_t size)
{
    if (!json_is_number(value)) {
        snprintf(buf, size, "-");
        return;
    }
    double s = json_number_value(value);
    if (s < 10)
        snprintf(buf, size, "%.1fs", s);
    else if (s < 600)
        snprintf(buf, size, "%.0fs", s);
    else if (s < 86400)
        snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, size, "%.1fd", s / 86400);
}

static void print_table(const struct tl_admin_reply *replies, size_t count)
{
    printf("%-28s %-10s %-20s %12s %10s %14s %14s\n", "AGENT", "REGION", "BREAKER", "CURSOR",
           "BACKLOG", "OLDEST UNACKED", "LAST HEARTBEAT");
    for (size_t i = 0; i < count; i++) {
        const struct tl_admin_reply *r = &replies[i];
        const char *error = tl_admin_reply_error(r);
        if (error) {
            printf("%-28s %-10s %s: %s\n", r->agent, "-",
                   r->reachable ? "error" : "unreachable", error);
            continue;
        }
        const char *id = json_string_value(json_object_get(r->body, "agent_id"));
        char label[160];
        snprintf(label, sizeof(label), "%s", id ? id : r->agent);
        json_t *ingest = json_object_get(r->body, "ingest");
        if (json_is_true(json_object_get(ingest, "paused")))
            strncat(label, " (paused)", sizeof(label) - strlen(label) - 1);

        size_t k;
        json_t *region;
        json_array_foreach(json_object_get(r->body, "regions"), k, region) {
            char breaker[40];
            char oldest[24];
            char heartbeat[24];
            const char *state = json_string_value(json_object_get(region, "breaker"));
            snprintf(breaker, sizeof(breaker), "%s%s%s", state ? state : "?",
                     json_is_true(json_object_get(region, "backfilling")) ? "+backfill" : "",
                     json_is_true(json_object_get(region, "preferred")) ? " *" : "");
            format_age(json_object_get(region, "oldest_unacked_age_seconds"), oldest,
                       sizeof(oldest));
            format_age(json_object_get(region, "last_heartbeat_age_seconds"), heartbeat,
                       sizeof(heartbeat));
            if (strcmp(heartbeat, "-") != 0)
                strncat(heartbeat, " ago", sizeof(heartbeat) - strlen(heartbeat) - 1);
            printf("%-28s %-10s %-20s %12lld %10lld %14s %14s\n", k == 0 ? label : "",
                   json_string_value(json_object_get(region, "name")), breaker,
                   (long long)json_integer_value(json_object_get(region, "cursor")),
                   (long long)json_integer_value(json_object_get(region, "backlog_events")),
                   oldest, heartbeat);
        }
    }

    /* Why each breaker that is not closed left that state, below the table. */
    bool header = false;
    for (size_t i = 0; i < count; i++) {
        const struct tl_admin_reply *r = &replies[i];
        if (tl_admin_reply_error(r))
            continue;
        size_t k;
        json_t *region;
        json_array_foreach(json_object_get(r->body, "regions"), k, region) {
            const char *state = json_string_value(json_object_get(region, "breaker"));
            const char *reason = json_string_value(json_object_get(region, "breaker_reason"));
            if (!state || strcmp(state, "closed") == 0 || !reason || !reason[0])
                continue;
            if (!header)
                printf("\nBreakers not closed:\n");
            header = true;
            const char *id = json_string_value(json_object_get(r->body, "agent_id"));
            printf("  %s %s: %s\n", id ? id : r->agent,
                   json_string_value(json_object_get(region, "name")), reason);
        }
    }
}

static void print_json(const struct tl_admin_reply *replies, size_t count)
{
    json_t *agents = json_array();
    for (size_t i = 0; i < count; i++) {
        const char *error = tl_admin_reply_error(&replies[i]);
        json_t *item = json_pack("{s:s, s:b, s:b}", "agent", replies[i].agent, "ok", !error,
                                 "reachable", replies[i].reachable);
        if (error)
            json_object_set_new(item, "error", json_string(error));
        else
            json_object_set(item, "status", replies[i].body);
        json_array_append_new(agents, item);
    }
    json_t *doc = json_pack("{s:o}", "agents", agents);
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    fputc('\n', stdout);
    json_decref(doc);
}

int tl_cli_status(int argc, char **argv)
{
    struct tl_admin_options opts;
    int rc = tl_admin_options_parse(argc, argv, &opts);
    if (rc != 0)
        return rc;
    if (opts.help) {
        fputs(usage_text, stdout);
        tl_admin_options_free(&opts);
        return TL_ADMIN_EXIT_OK;
    }
    if (opts.arg_count > 0 || opts.yes || opts.dry_run || opts.force) {
        fprintf(stderr, "twinlane status: takes no arguments and no --yes, --dry-run or "
                "--force; run `twinlane status --help`\n");
        tl_admin_options_free(&opts);
        return TL_ADMIN_EXIT_USAGE;
    }

    struct tl_admin_reply *replies = tl_xcalloc(opts.agent_count, sizeof(*replies));
    tl_admin_request_all(&opts, "GET", "/v1/status", replies);
    if (opts.json)
        print_json(replies, opts.agent_count);
    else
        print_table(replies, opts.agent_count);
    rc = tl_admin_exit_code(replies, opts.agent_count);

    tl_admin_replies_free(replies, opts.agent_count);
    free(replies);
    tl_admin_options_free(&opts);
    return rc;
}
