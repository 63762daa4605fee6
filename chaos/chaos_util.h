/*
 * Small helpers shared by the twinlane-chaos modules: clocks, child processes and files.
 *
 * Every time in the harness is wall-clock milliseconds since the epoch (CLOCK_REALTIME), so
 * that the harness's own records line up with the UTC timestamps of the agent's log. Any
 * thread may call these functions.
 */
#ifndef TL_CHAOS_UTIL_H
#define TL_CHAOS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int64_t chaos_now_ms(void);
void chaos_sleep_ms(int64_t ms);
/* Sleeps until the wall clock reaches at_ms; returns at once when it already has. */
void chaos_sleep_until(int64_t at_ms);

/*
 * Starts argv[0] (searched in PATH when it has no slash) with stdin from /dev/null, stdout
 * to out_path and stderr to err_path (NULL: /dev/null; the same path for both appends both).
 * env_extra, when not NULL, is a "NAME=value" string added to the environment. Returns the
 * pid, or -1 when fork failed. The child runs in its own process group, so that a terminal's
 * Ctrl-C reaches only the harness, which then ends its children itself.
 */
pid_t chaos_spawn(char *const argv[], const char *out_path, const char *err_path,
                  bool append, const char *env_extra);

/*
 * Waits up to timeout_ms for pid. Returns its exit status, 128 + signal when a signal ended
 * it, or -1 after the timeout, in which case the process still runs.
 */
int chaos_wait(pid_t pid, int64_t timeout_ms);

/* Returns whether pid has exited; stores the status like chaos_wait when it has. */
bool chaos_exited(pid_t pid, int *status);

/*
 * Runs a command to completion with chaos_spawn and chaos_wait; SIGKILL after timeout_ms.
 * Returns the exit status, or -1 on timeout. stdout goes to out_path, stderr to err_path.
 */
int chaos_run_command(char *const argv[], const char *out_path, const char *err_path,
                      int64_t timeout_ms, const char *env_extra);

/* Reads a whole file into a NUL-terminated buffer the caller frees; NULL if unreadable. */
char *chaos_read_file(const char *path, size_t *len);

/* Reads the first line of a file without its newline; false when missing or empty. */
bool chaos_read_first_line(const char *path, char *out, size_t outsize);

/*
 * Sends one line to the Unix socket at path and reads one reply line into reply (without its
 * newline). Returns 0, or -1 with a message in reply when the socket could not be reached.
 */
int chaos_unix_request(const char *path, const char *line, char *reply, size_t replysize);

/* Returns whether a Unix stream socket at path accepts a connection now. */
bool chaos_unix_accepts(const char *path);

/* Prints a progress line "twinlane-chaos: ..." to stderr with the time of day. */
void chaos_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
