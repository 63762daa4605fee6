/*
 * Configuration and life cycle of the agent under test.
 */
#include "chaos_agent.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "chaos_backend.h"
#include "chaos_util.h"

#define AGENT_READY_TIMEOUT_MS 60000
#define AGENT_STOP_TIMEOUT_MS 60000

int chaos_agent_configure(struct chaos_agent *a, const char *bin, const char *dir,
                          const struct chaos_scenario *s, const char *const bootstrap[2],
                          const char *wal_dir, char *err, size_t errsize)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->bin, sizeof(a->bin), "%s", bin);
    snprintf(a->dir, sizeof(a->dir), "%s", dir);
    snprintf(a->config, sizeof(a->config), "%s/agent.conf", dir);
    snprintf(a->log, sizeof(a->log), "%s/agent.log", dir);
    snprintf(a->socket, sizeof(a->socket), "%s/data/agent.sock", dir);

    FILE *f = fopen(a->config, "w");
    if (!f) {
        snprintf(err, errsize, "cannot write %s", a->config);
        return -1;
    }
    fprintf(f, "# Written by twinlane-chaos for scenario %s.\n", s->name);
    fprintf(f, "agent = { id = \"%s\"; home_region = \"east\"; data_dir = \"%s/data\"; %s};\n",
            CHAOS_AGENT_ID, dir, s->agent_settings ? s->agent_settings : "");
    fprintf(f, "wal = { ");
    if (wal_dir)
        fprintf(f, "dir = \"%s\"; ", wal_dir);
    fprintf(f, "%s};\n", s->wal_settings ? s->wal_settings : "");
    fprintf(f, "breaker = { %s};\n", s->breaker_settings ? s->breaker_settings : "");
    fprintf(f, "heartbeat = { %s};\n", s->heartbeat_settings ? s->heartbeat_settings : "");

    /* A returning region is reconnected within a second unless the scenario sets another backoff. */
    bool has_backoff = false;
    for (size_t i = 0; i < s->region_property_count; i++)
        has_backoff |= strncmp(s->region_properties[i], "reconnect.backoff.max.ms=", 25) == 0;
    fprintf(f, "regions = (\n");
    for (int r = 0; r < 2; r++) {
        fprintf(f, "  { name = \"%s\"; bootstrap = \"%s\"; properties = [ ",
                CHAOS_REGION_NAMES[r], bootstrap[r]);
        const char *sep = "";
        if (!has_backoff) {
            fprintf(f, "\"reconnect.backoff.max.ms=1000\"");
            sep = ", ";
        }
        for (size_t i = 0; i < s->region_property_count; i++) {
            fprintf(f, "%s\"%s\"", sep, s->region_properties[i]);
            sep = ", ";
        }
        fprintf(f, " ]; }%s\n", r == 0 ? "," : "");
    }
    fprintf(f, ");\ntopics = ( { name = \"%s\"; partitions = %d; } );\n", s->topic,
            s->partitions);
    if (fclose(f) != 0) {
        snprintf(err, errsize, "writing %s failed", a->config);
        return -1;
    }
    return 0;
}

int chaos_agent_start(struct chaos_agent *a, char *err, size_t errsize)
{
    char *argv[] = {a->bin, "-c", a->config, NULL};
    a->pid = chaos_spawn(argv, a->log, a->log, true, NULL);
    if (a->pid < 0) {
        a->pid = 0;
        snprintf(err, errsize, "starting %s failed", a->bin);
        return -1;
    }
    a->starts++;

    /* After a kill the old socket file is still there, so only a connection proves readiness. */
    int64_t deadline = chaos_now_ms() + AGENT_READY_TIMEOUT_MS;
    while (!chaos_unix_accepts(a->socket)) {
        int status;
        if (chaos_exited(a->pid, &status)) {
            a->pid = 0;
            snprintf(err, errsize, "the agent exited with status %d during start-up; see %s",
                     status, a->log);
            return -1;
        }
        if (chaos_now_ms() > deadline) {
            chaos_agent_kill(a);
            snprintf(err, errsize, "the agent did not accept connections within %d s; see %s",
                     AGENT_READY_TIMEOUT_MS / 1000, a->log);
            return -1;
        }
        chaos_sleep_ms(5);
    }
    return 0;
}

void chaos_agent_kill(struct chaos_agent *a)
{
    if (a->pid <= 0)
        return;
    kill(a->pid, SIGKILL);
    chaos_wait(a->pid, 30000);
    a->pid = 0;
}

int chaos_agent_stop(struct chaos_agent *a)
{
    if (a->pid <= 0)
        return -1;
    kill(a->pid, SIGTERM);
    int rc = chaos_wait(a->pid, AGENT_STOP_TIMEOUT_MS);
    if (rc == -1)
        chaos_agent_kill(a);
    a->pid = 0;
    return rc;
}

bool chaos_agent_check(struct chaos_agent *a)
{
    if (a->pid <= 0)
        return false;
    int status;
    if (!chaos_exited(a->pid, &status))
        return true;
    a->pid = 0;
    a->unexpected_exits++;
    if (!a->first_exit[0])
        snprintf(a->first_exit, sizeof(a->first_exit), "the agent exited by itself with status "
                 "%d at %lld", status, (long long)chaos_now_ms());
    return false;
}
