/*
 * Child processes of the benchmark: twinlane-mock-cluster regions, the agent and perf. Every
 * child gets SIGTERM when the benchmark dies (PR_SET_PDEATHSIG), and bench_procs_kill_all,
 * which is async-signal-safe, stops the ones still registered.
 */
#ifndef BENCH_PROCS_H
#define BENCH_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bench_mock {
    pid_t pid;
    char name[32];
    char bootstrap[512];
    char control[256];
    char log[256];
};

struct bench_agent {
    pid_t pid;
    char config[256];
    char log[256];
    char unix_path[256];
    char tcp_address[64];
};

struct bench_agent_settings {
    const char *fsync;                /* wal.fsync */
    int64_t backfill_events_per_sec;  /* breaker.backfill_events_per_sec; -1: default */
    const char *topic;
    int partitions;
    const char *bootstrap[2];         /* east, west */
};

/* Nanoseconds on CLOCK_MONOTONIC. */
int64_t bench_now_ns(void);

/*
 * Starts a mock cluster named name with 3 brokers and topic:partitions, logging to
 * dir/name.log. Waits up to 30 s for its bootstrap file. Returns 0, or -1 with a message.
 */
int bench_mock_start(struct bench_mock *m, const char *bin, const char *dir, const char *name,
                     const char *topic, int partitions, char *err, size_t errsize);

/* Sends one control command ("all-down") and checks that the reply is "ok". */
int bench_mock_command(const struct bench_mock *m, const char *command, char *err,
                       size_t errsize);

/*
 * Writes a configuration into dir (data_dir dir/data, removed first) and starts the agent.
 * Waits up to 60 s until its Unix socket accepts a connection. Returns 0, or -1 with a
 * message; on failure the agent is stopped and the tail of its log is on stderr.
 */
int bench_agent_start(struct bench_agent *a, const char *bin, const char *dir,
                      const struct bench_agent_settings *settings, char *err, size_t errsize);

/* Stops a child with SIGTERM, then SIGKILL after timeout_ms, and reaps it. */
void bench_proc_stop(pid_t *pid, int timeout_ms);

/* Stops every registered child at once with SIGKILL. Safe in a signal handler. */
void bench_procs_kill_all(void);

/* CPU time (user + system) that process pid has used so far, in seconds; -1 if unreadable. */
double bench_proc_cpu_seconds(pid_t pid);

/*
 * Runs argv with stdout to out_path (NULL: /dev/null) and stderr to /dev/null. Returns the
 * child's pid, registered for cleanup, or -1.
 */
pid_t bench_spawn(char *const argv[], const char *out_path);

/* Waits for a child started by bench_spawn; returns its exit status or -1. */
int bench_wait(pid_t *pid);

/* Removes a directory tree; a missing path is not an error. */
void bench_remove_tree(const char *path);

/* True when path lies on tmpfs or ramfs, where fsync costs nothing. */
bool bench_path_on_memory_fs(const char *path);

#endif
