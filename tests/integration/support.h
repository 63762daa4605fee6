/*
 * Helpers for integration tests: run twinlane-agent as a child process with a generated
 * configuration, run other commands, and read back every record of a topic from a region.
 *
 * Paths of the programs under test come from the build (TL_AGENT_BIN, TL_CLI_BIN); the
 * helpers abort the test with a message naming what failed.
 */
#ifndef TL_IT_SUPPORT_H
#define TL_IT_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct it_agent {
    pid_t pid;
    char dir[256];          /* temporary directory holding config, data and log */
    char config[320];
    char log[320];
    char socket[320];
    char bootstrap[2][512]; /* per region, for embedded regions */
};

/* One record read back from a region. */
struct it_record {
    int32_t partition;
    int64_t offset;
    char *key;              /* NUL-terminated copy; NULL for a null key */
    size_t key_len;
    char *value;
    size_t value_len;
    char *id;               /* twinlane-id header, NULL if missing */
    char *origin;           /* twinlane-origin header, NULL if missing */
    bool has_ts;            /* twinlane-ts header present */
    bool ts_matches;        /* ... and equal, in decimal, to the record timestamp */
};

struct it_records {
    struct it_record *items;
    size_t count;
};

/*
 * Starts a thread that, when the test is still running after `seconds`, prints the stack of
 * every thread (with gdb, when installed) and aborts. A hung test then reports where it hung
 * instead of waiting for ctest's timeout with its output lost. Also makes stdout line
 * buffered, so that cmocka's results are not lost when the process is killed.
 */
void it_watchdog_start(unsigned seconds);

/* Called in a forked child: the child gets SIGKILL when the test process dies. */
void it_child_dies_with_parent(void);

/* Creates a fresh temporary directory under $TMPDIR (default /tmp) named after the test. */
void it_make_dir(const char *name, char *out, size_t outsize);

/*
 * Writes config_text (with every "@DIR@" replaced by the agent's directory) and starts the
 * agent. Waits up to 60 s for its socket and, for each region name in embedded[], the
 * bootstrap file. Fails the test if the agent exits or times out, printing its log.
 */
void it_agent_start(struct it_agent *a, const char *name, const char *config_text,
                    const char *const embedded[2]);

/* Sends SIGTERM and returns the exit status (or 128 + signal), failing after 60 s. */
int it_agent_stop(struct it_agent *a);

/* Returns true while the agent process is alive. */
bool it_agent_alive(struct it_agent *a);

/* Prints the agent's log to stderr, for failure diagnosis. */
void it_agent_dump_log(const struct it_agent *a);

/*
 * Runs argv[0] with arguments, stdout to out_path and stderr to err_path (either may be NULL
 * for /dev/null), and returns its exit status, or -1 if it did not finish in timeout_s.
 */
int it_run(char *const argv[], const char *out_path, const char *err_path, int timeout_s);

/* Reads every record of topic from the beginning up to the high watermark of each partition. */
void it_consume(const char *bootstrap, const char *topic, struct it_records *out);

void it_records_free(struct it_records *r);

/*
 * Queries the low and high watermark of partitions 0 to partitions - 1 of topic. A low
 * watermark above 0 means the cluster deleted the oldest records, which it_consume cannot
 * return.
 */
void it_watermarks(const char *bootstrap, const char *topic, int partitions, int64_t *low,
                   int64_t *high);

/* Reads a whole file into a NUL-terminated buffer the caller frees; NULL if unreadable. */
char *it_read_file(const char *path, size_t *len);

/*
 * SIGKILLs the agent and reaps it, so nothing of the process survives: no flush, no shutdown
 * path. The data directory, config and log stay for it_agent_restart.
 */
void it_agent_kill(struct it_agent *a);

/*
 * Starts the agent again on the same directory and configuration, appending to its log.
 * Waits up to 60 s until the socket accepts connections: after a kill the old socket file is
 * still there, so its presence proves nothing. Fails the test like it_agent_start.
 */
void it_agent_restart(struct it_agent *a);

/*
 * One twinlane-mock-cluster process: a region whose brokers live outside the agent and so
 * survive the agent's crashes. Fault commands go through its control socket.
 */
struct it_mock {
    pid_t pid;
    char name[64];
    char bootstrap[512];      /* host:port,... of the brokers */
    char bootstrap_file[320];
    char control[320];        /* control socket path */
    char log[320];
};

/*
 * Starts twinlane-mock-cluster for region name with 3 brokers and its files under dir.
 * topics is a NULL-terminated list of "TOPIC:PARTITIONS" to create (at most 8). Waits up to
 * 30 s for the bootstrap file. Fails the test, printing the program's log, when it exits or
 * times out.
 */
void it_mock_start(struct it_mock *m, const char *dir, const char *name,
                   const char *const topics[]);

/*
 * Sends one control command (such as "all-down") and fails the test, naming the command and
 * the reply, unless the reply is "ok".
 */
void it_mock_command(const struct it_mock *m, const char *command);

/* Sends SIGTERM, waits up to 30 s, and returns the exit status; SIGKILL after that. */
int it_mock_stop(struct it_mock *m);

#endif
