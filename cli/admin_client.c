/*
 * Admin API client: shared options and parallel requests with libcurl's multi interface.
 */
#include "admin_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mem.h"

/* Largest response body read from an agent; the status of two regions is a few KiB. */
#define MAX_REPLY_BYTES (4u << 20)
#define MAX_AGENTS 4096
#define TOKEN_FILE_MAX_BYTES 65536

static void add_agent(struct tl_admin_options *opts, const char *address)
{
    opts->agents = tl_xrealloc(opts->agents, (opts->agent_count + 1) * sizeof(*opts->agents));
    opts->agents[opts->agent_count++] = tl_xstrdup(address);
}

/*
 * Returns whether address is a Unix socket path or a loopback host:port (127.0.0.0/8, ::1 or
 * localhost), the only places an agent's admin API listens.
 */
static bool address_is_local(const char *address)
{
    if (strncmp(address, "unix:", 5) == 0)
        return true;
    bool http = strncmp(address, "http://", 7) == 0;
    if (!http && strchr(address, '/'))
        return true;
    const char *host = http ? address + 7 : address;
    size_t len = strcspn(host, "/");
    /* user@host and other URL syntax would let curl connect somewhere else than checked. */
    for (size_t i = 0; i < len; i++)
        if (strchr("@?#\\ \t", host[i]))
            return false;
    char name[256];
    if (host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (!close)
            return false;
        snprintf(name, sizeof(name), "%.*s", (int)(close - host - 1), host + 1);
    } else {
        const char *colon = memchr(host, ':', len);
        size_t name_len = colon ? (size_t)(colon - host) : len;
        if (name_len >= sizeof(name))
            return false;
        snprintf(name, sizeof(name), "%.*s", (int)name_len, host);
    }
    return tl_config_is_loopback_host(name);
}

/* Reads one address per line; blank lines and lines starting with # are skipped. */
static int read_agents_file(struct tl_admin_options *opts, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "twinlane: cannot open --agents file %s: %s\n", path, strerror(errno));
        return TL_ADMIN_EXIT_USAGE;
    }
    char line[1024];
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        char *start = line + strspn(line, " \t");
        start[strcspn(start, " \t\r\n")] = '\0';
        if (start[0] == '\0' || start[0] == '#')
            continue;
        if (opts->agent_count == MAX_AGENTS) {
            fprintf(stderr, "twinlane: %s lists more than %d agents\n", path, MAX_AGENTS);
            rc = TL_ADMIN_EXIT_USAGE;
            break;
        }
        add_agent(opts, start);
    }
    fclose(f);
    return rc;
}

/*
 * Reads the bearer token: the file holds one line "TOKEN" or "NAME TOKEN" (the agent's token
 * file format, so a file with one line serves both sides).
 */
static int read_token_file(struct tl_admin_options *opts, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "twinlane: cannot open --token-file %s: %s\n", path, strerror(errno));
        return TL_ADMIN_EXIT_USAGE;
    }
    char line[TOKEN_FILE_MAX_BYTES];
    char *token = NULL;
    while (!token && fgets(line, sizeof(line), f)) {
        char *save = NULL;
        char *first = strtok_r(line, " \t\r\n", &save);
        if (!first || first[0] == '#')
            continue;
        char *second = strtok_r(NULL, " \t\r\n", &save);
        token = tl_xstrdup(second ? second : first);
    }
    fclose(f);
    explicit_bzero(line, sizeof(line));
    if (!token) {
        fprintf(stderr, "twinlane: --token-file %s holds no token; write \"NAME TOKEN\" or "
                "\"TOKEN\" on one line\n", path);
        return TL_ADMIN_EXIT_USAGE;
    }
    opts->token = token;
    return 0;
}

int tl_admin_options_parse(int argc, char **argv, struct tl_admin_options *opts)
{
    enum { OPT_AGENT = 256, OPT_AGENTS, OPT_TIMEOUT, OPT_TOKEN_FILE, OPT_JSON, OPT_YES,
           OPT_DRY_RUN, OPT_FORCE, OPT_HELP };
    static const struct option long_options[] = {
        {"agent", required_argument, NULL, OPT_AGENT},
        {"agents", required_argument, NULL, OPT_AGENTS},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"json", no_argument, NULL, OPT_JSON},
        {"yes", no_argument, NULL, OPT_YES},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
    };

    *opts = (struct tl_admin_options){.timeout_s = TL_ADMIN_DEFAULT_TIMEOUT_S};
    optind = 1;
    opterr = 0;
    int rc = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "", long_options, NULL);
        if (c == -1)
            break;
        switch (c) {
        case OPT_AGENT:
            add_agent(opts, optarg);
            break;
        case OPT_AGENTS:
            rc = read_agents_file(opts, optarg);
            break;
        case OPT_TIMEOUT: {
            char *end;
            errno = 0;
            double t = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !(t > 0) || t > 3600) {
                fprintf(stderr, "twinlane %s: --timeout \"%s\" is invalid; give seconds "
                        "above 0 and at most 3600, such as 2.5\n", argv[0], optarg);
                rc = TL_ADMIN_EXIT_USAGE;
            }
            opts->timeout_s = t;
            break;
        }
        case OPT_TOKEN_FILE:
            rc = read_token_file(opts, optarg);
            break;
        case OPT_JSON:
            opts->json = true;
            break;
        case OPT_YES:
            opts->yes = true;
            break;
        case OPT_DRY_RUN:
            opts->dry_run = true;
            break;
        case OPT_FORCE:
            opts->force = true;
            break;
        case OPT_HELP:
            opts->help = true;
            break;
        default:
            fprintf(stderr, "twinlane %s: invalid option \"%s\"; run `twinlane %s --help`\n",
                    argv[0], argv[optind - 1], argv[0]);
            rc = TL_ADMIN_EXIT_USAGE;
            break;
        }
        if (rc != 0) {
            tl_admin_options_free(opts);
            return rc;
        }
    }

    if (opts->agent_count == 0) {
        const char *env = getenv("TWINLANE_ADMIN");
        add_agent(opts, env && env[0] ? env : TL_ADMIN_DEFAULT_AGENT);
    }
    for (size_t i = 0; i < opts->agent_count; i++) {
        if (!address_is_local(opts->agents[i])) {
            fprintf(stderr, "twinlane %s: agent address \"%s\" is neither a Unix socket path "
                    "nor a loopback host:port; the admin API listens only on those, so run "
                    "twinlane on the agent's host\n", argv[0], opts->agents[i]);
            tl_admin_options_free(opts);
            return TL_ADMIN_EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc; i++) {
        opts->args = tl_xrealloc(opts->args, (opts->arg_count + 1) * sizeof(*opts->args));
        opts->args[opts->arg_count++] = argv[i];
    }
    return 0;
}

void tl_admin_options_free(struct tl_admin_options *opts)
{
    for (size_t i = 0; i < opts->agent_count; i++)
        free(opts->agents[i]);
    free(opts->agents);
    free(opts->args);
    if (opts->token) {
        explicit_bzero(opts->token, strlen(opts->token));
        free(opts->token);
    }
    memset(opts, 0, sizeof(*opts));
}

/* One transfer in flight. */
struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t len;
    bool too_large;
    bool unix_socket;
    char curl_error[CURL_ERROR_SIZE];
};

static size_t on_data(char *data, size_t size, size_t count, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * count;
    if (t->len + n > MAX_REPLY_BYTES) {
        t->too_large = true;
        return 0;
    }
    t->body = tl_xrealloc(t->body, t->len + n + 1);
    memcpy(t->body + t->len, data, n);
    t->len += n;
    t->body[t->len] = '\0';
    return n;
}

/*
 * Builds the URL and sets the Unix socket path when the address is one. Returns whether it
 * is.
 */
static bool set_target(CURL *easy, const char *address, const char *path)
{
    char url[2048];
    const char *unix_path = NULL;

    /* A host:port never contains '/', so any other address with one is a relative path. */
    if (strncmp(address, "unix:", 5) == 0)
        unix_path = address + 5;
    else if (strncmp(address, "http://", 7) != 0 && strchr(address, '/'))
        unix_path = address;

    if (unix_path) {
        curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH, unix_path);
        snprintf(url, sizeof(url), "http://localhost%s", path);
    } else if (strncmp(address, "http://", 7) == 0) {
        size_t len = strlen(address);
        while (len > 7 && address[len - 1] == '/')
            len--;
        snprintf(url, sizeof(url), "%.*s%s", (int)len, address, path);
    } else {
        snprintf(url, sizeof(url), "http://%s%s", address, path);
    }
    curl_easy_setopt(easy, CURLOPT_URL, url);
    return unix_path != NULL;
}

void tl_admin_request_all(const struct tl_admin_options *opts, const char *method,
                          const char *path, struct tl_admin_reply *replies)
{
    size_t n = opts->agent_count;
    struct transfer *transfers = tl_xcalloc(n, sizeof(*transfers));
    CURLM *multi = curl_multi_init();
    char auth[4200] = "";

    if (opts->token)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", opts->token);
    /* Enough parallel connections for a fleet, without opening thousands at once. */
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 64L);

    for (size_t i = 0; i < n; i++) {
        struct transfer *t = &transfers[i];
        replies[i] = (struct tl_admin_reply){.agent = opts->agents[i]};
        t->easy = curl_easy_init();
        if (!t->easy)
            tl_panic("curl_easy_init failed");
        t->unix_socket = set_target(t->easy, opts->agents[i], path);
        curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, method);
        if (strcmp(method, "POST") == 0) {
            curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
            curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE, 0L);
        }
        curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)(opts->timeout_s * 1000));
        curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(opts->timeout_s * 1000));
        curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
        curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->curl_error);
        curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
        /* Tokens must not follow a redirect to another address. */
        curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http");
        if (auth[0])
            t->headers = curl_slist_append(t->headers, auth);
        t->headers = curl_slist_append(t->headers, "Accept: application/json");
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
        curl_multi_add_handle(multi, t->easy);
    }

    int running = 0;
    do {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_poll(multi, NULL, 0, 200, NULL);
    } while (running);

    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct transfer *t;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        struct tl_admin_reply *r = &replies[t - transfers];
        if (msg->data.result == CURLE_COULDNT_CONNECT && t->unix_socket) {
            /* curl's text names "localhost port 80", which misleads for a socket path. */
            snprintf(r->error, sizeof(r->error), "cannot connect to the Unix socket; check "
                     "that the agent runs and that the path is its admin.unix");
            continue;
        }
        if (msg->data.result != CURLE_OK) {
            snprintf(r->error, sizeof(r->error), "%s", t->too_large ? "response too large"
                     : t->curl_error[0] ? t->curl_error : curl_easy_strerror(msg->data.result));
            continue;
        }
        r->reachable = true;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &r->http_status);
        json_error_t jerr;
        r->body = t->body ? json_loadb(t->body, t->len, 0, &jerr) : NULL;
        if (!r->body && r->http_status / 100 == 2)
            snprintf(r->error, sizeof(r->error), "the response is not JSON (HTTP %ld)",
                     r->http_status);
        else if (r->http_status / 100 != 2 && r->http_status != 401 &&
                 !json_is_string(json_object_get(r->body, "error")))
            snprintf(r->error, sizeof(r->error), "HTTP %ld without a twinlane error message; "
                     "check that the address is a twinlane agent's admin API", r->http_status);
    }

    for (size_t i = 0; i < n; i++) {
        curl_multi_remove_handle(multi, transfers[i].easy);
        curl_easy_cleanup(transfers[i].easy);
        curl_slist_free_all(transfers[i].headers);
        free(transfers[i].body);
    }
    curl_multi_cleanup(multi);
    free(transfers);
}

void tl_admin_replies_free(struct tl_admin_reply *replies, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        json_decref(replies[i].body);
        replies[i].body = NULL;
    }
}

const char *tl_admin_reply_error(const struct tl_admin_reply *reply)
{
    if (!reply->reachable)
        return reply->error;
    if (reply->http_status / 100 == 2)
        return reply->error[0] ? reply->error : NULL;
    const char *text = json_string_value(json_object_get(reply->body, "error"));
    if (text)
        return text;
    if (reply->http_status == 401)
        return "HTTP 401: missing or invalid token; pass --token-file";
    return reply->error;
}

int tl_admin_exit_code(const struct tl_admin_reply *replies, size_t count)
{
    size_t reachable = 0;
    size_t failed = 0;
    for (size_t i = 0; i < count; i++) {
        reachable += replies[i].reachable;
        failed += tl_admin_reply_error(&replies[i]) != NULL;
    }
    if (count > 0 && reachable == 0)
        return TL_ADMIN_EXIT_UNREACHABLE;
    return failed ? TL_ADMIN_EXIT_PARTIAL : TL_ADMIN_EXIT_OK;
}
