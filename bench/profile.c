/*
 * perf record / perf report wrapper for the agent's CPU split.
 */
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procs.h"

bool bench_profile_available(char *path, size_t size)
{
    const char *env = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s", env ? env : "/usr/bin:/bin");

    char *save = NULL;
    for (char *dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(path, size, "%s/perf", dir);
        if (access(path, X_OK) == 0)
            return true;
    }
    return false;
}

pid_t bench_profile_start(const char *perf, pid_t target, double seconds, const char *data_path)
{
    char pid_text[32];
    char seconds_text[32];
    snprintf(pid_text, sizeof(pid_text), "%d", (int)target);
    snprintf(seconds_text, sizeof(seconds_text), "%.1f", seconds);
    char *argv[] = {(char *)perf, "record", "-q", "-e", "cpu-clock", "-F", "1999", "-g",
                    "-p", pid_text, "-o", (char *)data_path, "--", "/bin/sleep", seconds_text,
                    NULL};
    return bench_spawn(argv, NULL);
}

/* Adds one "PERCENT% DSO" line of perf report to the matching share. */
static void add_share(struct bench_profile *out, double percent, const char *dso)
{
    if (strcmp(dso, "twinlane-agent") == 0)
        out->agent_percent += percent;
    else if (strncmp(dso, "librdkafka", 10) == 0)
        out->rdkafka_percent += percent;
    else if (strncmp(dso, "libc.so", 7) == 0 || strncmp(dso, "libc-", 5) == 0)
        out->libc_percent += percent;
    else if (strncmp(dso, "[kernel", 7) == 0)
        out->kernel_percent += percent;
    else
        out->other_percent += percent;
}

int bench_profile_finish(const char *perf, pid_t *perf_pid, const char *data_path,
                         const char *symbols_path, struct bench_profile *out)
{
    memset(out, 0, sizeof(*out));
    if (bench_wait(perf_pid) != 0)
        return -1;

    char dso_path[512];
    snprintf(dso_path, sizeof(dso_path), "%s.dso.txt", data_path);
    char *dso_argv[] = {(char *)perf, "report", "-i", (char *)data_path, "--stdio", "-q",
                        "--no-children", "-g", "none", "--sort", "dso", "--percent-limit", "0",
                        NULL};
    pid_t pid = bench_spawn(dso_argv, dso_path);
    if (pid < 0 || bench_wait(&pid) != 0)
        return -1;

    FILE *f = fopen(dso_path, "r");
    if (!f)
        return -1;
    char line[512];
    double total = 0;
    while (fgets(line, sizeof(line), f)) {
        double percent;
        char dso[256];
        if (sscanf(line, " %lf%% %255s", &percent, dso) != 2)
            continue;
        add_share(out, percent, dso);
        total += percent;
    }
    fclose(f);

    char *sym_argv[] = {(char *)perf, "report", "-i", (char *)data_path, "--stdio", "-q",
                        "--no-children", "-g", "none", "--sort", "dso,sym",
                        "--percent-limit", "0.5", NULL};
    pid = bench_spawn(sym_argv, symbols_path);
    bench_wait(&pid);

    return total > 0 ? 0 : -1;
}
