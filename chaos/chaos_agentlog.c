/*
 * Parser for the agent log lines that the report and the timeline picture need.
 */
#include "chaos_agentlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chaos_scenario.h"
#include "chaos_util.h"
#include "mem.h"

/* Parses "2026-01-02T03:04:05.678Z" at the start of line; 0 when it is not there. */
static int64_t line_time_ms(const char *line)
{
    struct tm tm = {0};
    int ms = 0;
    if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Copies the value after name (such as " to=") up to the next space, or "" when missing. */
static void field_value(const char *line, const char *name, char *out, size_t outsize)
{
    out[0] = '\0';
    const char *p = strstr(line, name);
    if (!p)
        return;
    p += strlen(name);
    if (*p == '"') {
        p++;
        size_t len = strcspn(p, "\"\n");
        snprintf(out, outsize, "%.*s", (int)len, p);
        return;
    }
    size_t len = strcspn(p, " \n");
    snprintf(out, outsize, "%.*s", (int)len, p);
}

static int region_of(const char *line)
{
    char name[40];
    field_value(line, " region=", name, sizeof(name));
    for (int r = 0; r < 2; r++) {
        if (strcmp(name, CHAOS_REGION_NAMES[r]) == 0)
            return r;
    }
    return -1;
}

void chaos_agentlog_read(const char *path, struct chaos_agentlog *out)
{
    memset(out, 0, sizeof(*out));
    char *text = chaos_read_file(path, NULL);
    if (!text)
        return;
    size_t tcap = 0, scap = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int64_t at = line_time_ms(line);
        if (at == 0)
            continue;
        if (strstr(line, " ERROR "))
            out->error_lines++;
        int region = region_of(line);
        if (region < 0)
            continue;

        if (strstr(line, "breaker state changed ")) {
            if (out->transition_count == tcap) {
                tcap = tcap ? tcap * 2 : 64;
                out->transitions = tl_xrealloc(out->transitions,
                                               tcap * sizeof(*out->transitions));
            }
            struct chaos_transition *t = &out->transitions[out->transition_count++];
            t->at_ms = at;
            t->region = region;
            field_value(line, " from=", t->from, sizeof(t->from));
            field_value(line, " to=", t->to, sizeof(t->to));
            field_value(line, " reason=", t->reason, sizeof(t->reason));
        } else if (strstr(line, "failover timeline ")) {
            if (out->step_count == scap) {
                scap = scap ? scap * 2 : 64;
                out->steps = tl_xrealloc(out->steps, scap * sizeof(*out->steps));
            }
            struct chaos_timeline_step *s = &out->steps[out->step_count++];
            char since[32];
            s->at_ms = at;
            s->region = region;
            field_value(line, " step=", s->step, sizeof(s->step));
            field_value(line, " ms_since_first_failure=", since, sizeof(since));
            s->since_first_failure_ms = strtoll(since, NULL, 10);
        }
    }
    free(text);
}

void chaos_agentlog_free(struct chaos_agentlog *log)
{
    free(log->transitions);
    free(log->steps);
    memset(log, 0, sizeof(*log));
}
