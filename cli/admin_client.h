/*
 * Client side of the agent's admin API, shared by `twinlane status` and the control commands:
 * the options every such command takes, and HTTP requests to many agents at once.
 *
 * An agent address is a Unix socket path ("/run/twinlane/admin.sock" or "unix:/path"), or a
 * loopback TCP address ("127.0.0.1:7412" or "http://127.0.0.1:7412"). Requests to every agent
 * run in parallel through one libcurl multi handle, each bounded by the timeout.
 */
#ifndef TL_CLI_ADMIN_CLIENT_H
#define TL_CLI_ADMIN_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Exit codes of the admin commands. */
#define TL_ADMIN_EXIT_OK 0
#define TL_ADMIN_EXIT_PARTIAL 1      /* some agents failed or responded with an error */
#define TL_ADMIN_EXIT_USAGE 2
#define TL_ADMIN_EXIT_UNREACHABLE 3  /* no agent could be reached */

#define TL_ADMIN_DEFAULT_AGENT "/run/twinlane/admin.sock"
#define TL_ADMIN_DEFAULT_TIMEOUT_S 5.0

/* Options shared by every admin command. */
struct tl_admin_options {
    char **agents;          /* addresses, from --agent, --agents, $TWINLANE_ADMIN or default */
    size_t agent_count;
    double timeout_s;
    char *token;            /* from --token-file; NULL without one */
    bool json;
    bool yes;
    bool dry_run;
    bool force;
    bool help;
    char **args;            /* positional arguments after the options */
    size_t arg_count;
};

/* Outcome of one request to one agent. */
struct tl_admin_reply {
    const char *agent;      /* address, borrowed from the options */
    bool reachable;         /* an HTTP response arrived */
    long http_status;
    json_t *body;           /* parsed JSON body, or NULL */
    char error[256];        /* why the agent is unreachable or the response is unusable */
};

/*
 * Parses the shared options of argv (argv[0] is the command name). Returns 0, or
 * TL_ADMIN_EXIT_USAGE after printing the problem on stderr (the options are then freed
 * already). Free them with tl_admin_options_free after a success.
 */
int tl_admin_options_parse(int argc, char **argv, struct tl_admin_options *opts);

void tl_admin_options_free(struct tl_admin_options *opts);

/*
 * Sends method path (with its query string) to every agent in parallel and fills replies[i]
 * for agents[i]. Never fails as a whole: each reply records what happened to its agent.
 */
void tl_admin_request_all(const struct tl_admin_options *opts, const char *method,
                          const char *path, struct tl_admin_reply *replies);

/* Frees the bodies of count replies. */
void tl_admin_replies_free(struct tl_admin_reply *replies, size_t count);

/*
 * Returns the error text of a reply that arrived with a non-2xx status, from the agent's
 * "error" field, or NULL for a success.
 */
const char *tl_admin_reply_error(const struct tl_admin_reply *reply);

/* Exit code for a set of replies: 0 all succeeded, 3 none reachable, 1 otherwise. */
int tl_admin_exit_code(const struct tl_admin_reply *replies, size_t count);

#endif
