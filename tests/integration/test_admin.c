/*
 * The admin API and the twinlane commands built on it, against running agents with embedded
 * regions: every endpoint and control verb over the Unix socket, the Prometheus output parsed
 * line by line, bearer tokens on TCP, malformed and oversized requests, and the CLI against
 * two agents (one of them down), fence and unfence, and a failover and failback under load
 * that must not lose an acknowledged event.
 */
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "freeport.h"
#include "support.h"
#include "twinlane/client.h"

#define TOKEN "it-admin-token-0123456789abcdef"

static const char *const EMBEDDED[2] = {"east", "west"};

/* Agent configuration; %s is the admin group. */
static const char CONFIG_FORMAT[] =
    "agent = { id = \"%s\"; home_region = \"east\"; data_dir = \"@DIR@/data\"; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"embedded\"; embedded_brokers = 1; },\n"
    "            { name = \"west\"; bootstrap = \"embedded\"; embedded_brokers = 1; } );\n"
    "topics = ( { name = \"events\"; partitions = 3; } );\n"
    "breaker = { open_ms = 200; };\n"
    "%s\n";

struct http_reply {
    long status;
    char *body;
    size_t len;
};

static size_t collect(char *data, size_t size, size_t count, void *userdata)
{
    struct http_reply *r = userdata;
    size_t n = size * count;
    r->body = realloc(r->body, r->len + n + 1);
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/*
 * Sends one request. socket_path selects the Unix socket, otherwise url is a TCP URL.
 * header may be NULL; body_len > 0 sends that many bytes of 'x'.
 */
static struct http_reply http(const char *socket_path, const char *method, const char *url,
                              const char *header, size_t body_len)
{
    struct http_reply r = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    char *body = NULL;
    char full[512];

    if (socket_path) {
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
        snprintf(full, sizeof(full), "http://localhost%s", url);
    } else {
        snprintf(full, sizeof(full), "%s", url);
    }
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    if (header)
        headers = curl_slist_append(headers, header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (body_len > 0) {
        body = malloc(body_len);
        memset(body, 'x', body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    else
        r.status = -1;
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    free(body);
    if (!r.body)
        r.body = calloc(1, 1);
    return r;
}

static json_t *http_json(const char *socket_path, const char *method, const char *url,
                         long expected_status)
{
    struct http_reply r = http(socket_path, method, url, NULL, 0);
    if (r.status != expected_status)
        print_error("%s %s: status %ld, body %s\n", method, url, r.status, r.body);
    assert_int_equal(r.status, expected_status);
    json_error_t jerr;
    json_t *doc = json_loads(r.body, 0, &jerr);
    if (!doc)
        print_error("%s %s: not JSON: %s\n", method, url, r.body);
    assert_non_null(doc);
    free(r.body);
    return doc;
}

static void admin_path(const struct it_agent *a, char *out, size_t size)
{
    snprintf(out, size, "%s/data/admin.sock", a->dir);
}

/* Starts an agent and waits until its admin API answers /healthz. */
static void start_agent(struct it_agent *a, const char *id, const char *admin_group)
{
    char config[2048];
    snprintf(config, sizeof(config), CONFIG_FORMAT, id, admin_group);
    it_agent_start(a, id, config, EMBEDDED);

    char sock[400];
    admin_path(a, sock, sizeof(sock));
    for (int i = 0; i < 500; i++) {
        struct http_reply r = http(sock, "GET", "/healthz", NULL, 0);
        free(r.body);
        if (r.status == 200)
            return;
        usleep(20000);
    }
    it_agent_dump_log(a);
    fail_msg("the admin API of agent %s did not answer within 10 s", id);
}

static const char *region_breaker(json_t *status, const char *region)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(status, "regions"), i, item) {
        if (strcmp(json_string_value(json_object_get(item, "name")), region) == 0)
            return json_string_value(json_object_get(item, "breaker"));
    }
    return "missing";
}

/* Waits up to 20 s until region's breaker reaches state; fails the test otherwise. */
static void wait_breaker(const char *sock, const char *region, const char *state)
{
    for (int i = 0; i < 400; i++) {
        json_t *s = http_json(sock, "GET", "/v1/status", 200);
        bool reached = strcmp(region_breaker(s, region), state) == 0;
        json_decref(s);
        if (reached)
            return;
        usleep(50000);
    }
    fail_msg("region %s did not reach breaker state %s within 20 s", region, state);
}

/* --- Endpoints ---------------------------------------------------------------------------- */

static void status_and_health_endpoints(void **state)
{
    (void)state;
    struct it_agent a;
    char sock[400];
    start_agent(&a, "it-admin-status", "");
    admin_path(&a, sock, sizeof(sock));

    struct stat st;
    assert_int_equal(stat(sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);

    json_t *health = http_json(sock, "GET", "/healthz", 200);
    json_decref(health);
    json_t *ready = http_json(sock, "GET", "/readyz", 200);
    json_decref(ready);

    json_t *s = http_json(sock, "GET", "/v1/status", 200);
    assert_string_equal(json_string_value(json_object_get(s, "agent_id")), "it-admin-status");
    assert_string_equal(json_string_value(json_object_get(s, "home_region")), "east");
    assert_true(json_is_object(json_object_get(s, "ingest")));
    assert_true(json_is_object(json_object_get(s, "wal")));
    assert_int_equal(json_array_size(json_object_get(s, "regions")), 2);
    json_t *east = json_array_get(json_object_get(s, "regions"), 0);
    assert_string_equal(json_string_value(json_object_get(east, "breaker")), "closed");
    assert_string_equal(json_string_value(json_object_get(east, "breaker_reason")), "");
    assert_true(json_is_object(json_object_get(east, "counters")));
    assert_true(json_is_object(json_object_get(east, "failover_timeline")));
    json_decref(s);

    struct http_reply r = http(sock, "GET", "/no/such/path", NULL, 0);
    assert_int_equal(r.status, 404);
    free(r.body);
    r = http(sock, "GET", "/v1/drain", NULL, 0);
    assert_int_equal(r.status, 405);
    free(r.body);
    r = http(sock, "POST", "/v1/status", NULL, 0);
    assert_int_equal(r.status, 405);
    free(r.body);

    assert_int_equal(it_agent_stop(&a), 0);
}

/* Checks that name is a valid Prometheus metric name. */
static bool metric_name_valid(const char *s, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

/* Checks one sample line; returns the length of its metric name, or 0 when it is invalid. */
static size_t check_sample(const char *line)
{
    size_t name_len = strcspn(line, "{ ");
    if (!metric_name_valid(line, name_len))
        return 0;
    const char *p = line + name_len;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t label_len = strcspn(p, "=");
            if (!metric_name_valid(p, label_len) || p[label_len + 1] != '"')
                return 0;
            p += label_len + 2;
            while (*p && *p != '"')
                p += *p == '\\' ? 2 : 1;
            if (*p != '"')
                return 0;
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return 0;
        }
        p++;
    }
    if (*p != ' ')
        return 0;
    char *end;
    const char *value = p + 1;
    if (strcmp(value, "+Inf") != 0 && strcmp(value, "NaN") != 0) {
        strtod(value, &end);
        if (end == value || *end != '\0')
            return 0;
    }
    return name_len;
}

static void metrics_exposition_is_valid(void **state)
{
    (void)state;
    struct it_agent a;
    char sock[400];
    start_agent(&a, "it-admin-metrics", "");
    admin_path(&a, sock, sizeof(sock));

    /* One acknowledged event, so the latency histogram has an observation. */
    struct tl_client *client;
    char err[256];
    assert_int_equal(tl_client_connect(a.socket, NULL, &client, err, sizeof(err)), 0);
    struct tl_client_event ev = {.topic = "events", .value = "m", .value_len = 1};
    assert_int_equal(tl_client_send(client, &ev, 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(tl_client_flush(client, 30000), 0);
    tl_client_close(client);
    usleep(1100000);

    struct http_reply r = http(sock, "GET", "/metrics", NULL, 0);
    assert_int_equal(r.status, 200);

    static const char *const required[] = {
        "twinlane_region_events_acknowledged_total", "twinlane_region_events_failed_total",
        "twinlane_region_events_retried_total", "twinlane_ack_latency_seconds",
        "twinlane_breaker_state", "twinlane_breaker_transitions_total",
        "twinlane_region_backlog_events", "twinlane_acknowledged_not_in_region_events",
        "twinlane_wal_fsync_seconds", "twinlane_wal_bytes", "twinlane_ingest_connections",
        "twinlane_ingest_events_rejected_total",
    };
    bool seen[sizeof(required) / sizeof(required[0])] = {0};
    char typed[128][96];
    size_t typed_count = 0;
    double ack_count = -1;

    char *save = NULL;
    int line_number = 0;
    for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_number++;
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[96];
            char type[32];
            assert_int_equal(sscanf(line + 7, "%95s %31s", name, type), 2);
            bool known = strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                         strcmp(type, "histogram") == 0 || strcmp(type, "summary") == 0;
            if (!known)
                fail_msg("line %d: unknown type: %s", line_number, line);
            assert_true(typed_count < 128);
            snprintf(typed[typed_count++], sizeof(typed[0]), "%s", name);
            for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
                seen[i] |= strcmp(name, required[i]) == 0;
            continue;
        }
        size_t name_len = check_sample(line);
        if (name_len == 0)
            fail_msg("line %d is not a valid sample: %s", line_number, line);
        /*
         * Every sample belongs to the family whose TYPE line came last: the exposition
         * format keeps each family's lines together.
         */
        assert_true(typed_count > 0);
        const char *family = typed[typed_count - 1];
        size_t family_len = strlen(family);
        bool in_family = strncmp(line, family, family_len) == 0 &&
                         (line[family_len] == '{' || line[family_len] == ' ' ||
                          line[family_len] == '_');
        if (!in_family)
            fail_msg("line %d is not in the family %s declared just before it: %s",
                     line_number, family, line);
        if (strncmp(line, "twinlane_ack_latency_seconds_count ", 35) == 0)
            ack_count = strtod(line + 35, NULL);
    }
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!seen[i])
            fail_msg("metric %s is missing", required[i]);
    assert_true(ack_count >= 1);
    free(r.body);
    assert_int_equal(it_agent_stop(&a), 0);
}

/* --- Control verbs ------------------------------------------------------------------------ */

static void control_verbs_change_state(void **state)
{
    (void)state;
    struct it_agent a;
    char sock[400];
    start_agent(&a, "it-admin-verbs", "");
    admin_path(&a, sock, sizeof(sock));

    json_t *dry = http_json(sock, "POST", "/v1/regions/west/fence?dry_run=1", 200);
    assert_true(json_is_true(json_object_get(dry, "dry_run")));
    assert_int_equal(json_array_size(json_object_get(dry, "divergence")), 2);
    json_decref(dry);
    /* A mistyped flag is refused, never taken as "not a dry run". */
    json_t *typo = http_json(sock, "POST", "/v1/regions/west/fence?dry_run=maybe", 400);
    json_decref(typo);
    json_t *s = http_json(sock, "GET", "/v1/status", 200);
    assert_string_equal(region_breaker(s, "west"), "closed");
    json_decref(s);

    json_t *fence = http_json(sock, "POST", "/v1/regions/west/fence", 200);
    json_t *change = json_array_get(json_object_get(fence, "changes"), 0);
    assert_string_equal(json_string_value(json_object_get(change, "breaker_after")), "fenced");
    assert_non_null(strstr(json_string_value(json_object_get(fence, "requested_by")),
                           "unix:pid="));
    json_decref(fence);
    /* East is now the only region taking events: fencing it needs force. */
    json_t *conflict = http_json(sock, "POST", "/v1/regions/east/fence", 409);
    assert_non_null(strstr(json_string_value(json_object_get(conflict, "error")), "--force"));
    json_decref(conflict);
    s = http_json(sock, "GET", "/v1/status", 200);
    assert_string_equal(region_breaker(s, "east"), "closed");
    json_decref(s);
    json_decref(http_json(sock, "POST", "/v1/regions/east/fence?force=1", 200));
    json_decref(http_json(sock, "POST", "/v1/regions/east/unfence", 200));
    wait_breaker(sock, "east", "closed");
    json_decref(http_json(sock, "POST", "/v1/regions/west/unfence", 200));
    wait_breaker(sock, "west", "closed");

    json_decref(http_json(sock, "POST", "/v1/regions/north/fence", 404));
    json_decref(http_json(sock, "POST", "/v1/failover", 400));
    json_decref(http_json(sock, "POST", "/v1/failover?to=north", 404));

    json_t *failover = http_json(sock, "POST", "/v1/failover?to=east", 200);
    assert_string_equal(json_string_value(json_object_get(failover, "preferred_region")), "east");
    json_decref(failover);
    s = http_json(sock, "GET", "/v1/status", 200);
    assert_string_equal(region_breaker(s, "west"), "fenced");
    assert_string_equal(json_string_value(json_object_get(s, "preferred_region")), "east");
    json_decref(s);
    json_decref(http_json(sock, "POST", "/v1/failback", 200));
    wait_breaker(sock, "west", "closed");

    json_t *pause = http_json(sock, "POST", "/v1/ingest/pause", 200);
    assert_true(json_is_true(json_object_get(pause, "paused_after")));
    json_decref(pause);
    json_t *not_ready = http_json(sock, "GET", "/readyz", 503);
    assert_non_null(strstr(json_string_value(json_object_get(not_ready, "reason")), "paused"));
    json_decref(not_ready);
    json_decref(http_json(sock, "POST", "/v1/ingest/resume", 200));
    json_decref(http_json(sock, "GET", "/readyz", 200));

    json_t *drain_dry = http_json(sock, "POST", "/v1/drain?dry_run=1", 200);
    json_decref(drain_dry);
    assert_true(it_agent_alive(&a));
    json_decref(http_json(sock, "POST", "/v1/drain", 202));
    for (int i = 0; i < 300 && it_agent_alive(&a); i++)
        usleep(100000);
    assert_false(it_agent_alive(&a));
    assert_int_equal(it_agent_stop(&a), 0);
}

/* --- Authentication and bad requests ------------------------------------------------------ */

static void tcp_requires_valid_token(void **state)
{
    (void)state;
    char dir[256];
    it_make_dir("admin-token", dir, sizeof(dir));
    char token_file[320];
    snprintf(token_file, sizeof(token_file), "%s/tokens", dir);
    FILE *f = fopen(token_file, "w");
    assert_non_null(f);
    fprintf(f, "# on-call\noncall " TOKEN "\n");
    fclose(f);
    chmod(token_file, 0600);

    int port = tl_free_loopback_port();
    assert_true(port > 0);
    char group[512];
    snprintf(group, sizeof(group), "admin = { tcp = \"127.0.0.1:%d\"; token_file = \"%s\"; };",
             port, token_file);
    struct it_agent a;
    start_agent(&a, "it-admin-tcp", group);

    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/status", port);
    struct http_reply r = http(NULL, "GET", url, NULL, 0);
    assert_int_equal(r.status, 401);
    free(r.body);
    r = http(NULL, "GET", url, "Authorization: Bearer not-the-token-at-all", 0);
    assert_int_equal(r.status, 401);
    free(r.body);
    r = http(NULL, "GET", url, "Authorization: Bearer " TOKEN, 0);
    assert_int_equal(r.status, 200);
    free(r.body);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/regions/west/fence?dry_run=1", port);
    r = http(NULL, "POST", url, "Authorization: Bearer " TOKEN, 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "token:oncall"));
    free(r.body);

    size_t log_len;
    char *log = it_read_file(a.log, &log_len);
    assert_non_null(log);
    assert_null(strstr(log, TOKEN));
    assert_non_null(strstr(log, "by=token:oncall"));
    free(log);
    assert_int_equal(it_agent_stop(&a), 0);
}

/* Sends raw bytes to the admin socket and returns the status code of the reply, or -1. */
static int raw_request(const char *sock, const char *text)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    send(fd, text, strlen(text), MSG_NOSIGNAL);
    char buf[256] = "";
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    int status = -1;
    if (n > 0)
        sscanf(buf, "HTTP/1.%*d %d", &status);
    return status;
}

static void malformed_requests_get_4xx(void **state)
{
    (void)state;
    struct it_agent a;
    char sock[400];
    start_agent(&a, "it-admin-bad", "");
    admin_path(&a, sock, sizeof(sock));

    /* libmicrohttpd closes a connection whose request line has no URI, without a response. */
    int status = raw_request(sock, "GARBAGE\r\n\r\n");
    assert_true(status == -1 || (status >= 400 && status < 500));
    status = raw_request(sock, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: abc\r\n\r\n");
    assert_int_equal(status, 400);
    status = raw_request(sock, "GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n");
    assert_true(status >= 400 && status < 500);

    char *big_header = malloc(70000);
    strcpy(big_header, "X-Big: ");
    memset(big_header + 7, 'a', 60000);
    big_header[60007] = '\0';
    struct http_reply r = http(sock, "GET", "/healthz", big_header, 0);
    assert_true(r.status >= 400 && r.status < 500);
    free(r.body);
    free(big_header);

    r = http(sock, "POST", "/v1/failback", NULL, 200000);
    assert_int_equal(r.status, 413);
    free(r.body);

    assert_true(it_agent_alive(&a));
    json_decref(http_json(sock, "GET", "/healthz", 200));
    json_t *s = http_json(sock, "GET", "/v1/status", 200);
    assert_string_equal(region_breaker(s, "west"), "closed");
    json_decref(s);
    assert_int_equal(it_agent_stop(&a), 0);
}

/* --- The twinlane commands ---------------------------------------------------------------- */

/* Runs twinlane with args; returns its exit status and its stdout in out (caller frees). */
static int run_cli(char **out, const char *first, ...)
{
    char *argv[32] = {TL_CLI_BIN, (char *)first};
    int argc = 2;
    va_list ap;
    va_start(ap, first);
    for (char *arg = va_arg(ap, char *); arg && argc < 31; arg = va_arg(ap, char *))
        argv[argc++] = arg;
    va_end(ap);
    argv[argc] = NULL;

    char out_path[] = "/tmp/twinlane-it-admin-out-XXXXXX";
    int fd = mkstemp(out_path);
    close(fd);
    int status = it_run(argv, out_path, NULL, 60);
    size_t len;
    *out = it_read_file(out_path, &len);
    unlink(out_path);
    return status;
}

static void cli_shows_unreachable_agent(void **state)
{
    (void)state;
    struct it_agent up, down;
    char up_sock[400], down_sock[400];
    start_agent(&up, "it-admin-up", "");
    start_agent(&down, "it-admin-down", "");
    admin_path(&up, up_sock, sizeof(up_sock));
    admin_path(&down, down_sock, sizeof(down_sock));
    assert_int_equal(it_agent_stop(&down), 0);

    char *out;
    int rc = run_cli(&out, "status", "--agent", up_sock, "--agent", down_sock, "--timeout", "5",
                     NULL);
    if (rc != 1)
        print_error("output:\n%s\n", out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "it-admin-up"));
    assert_non_null(strstr(out, "unreachable"));
    assert_non_null(strstr(out, "closed"));
    free(out);

    rc = run_cli(&out, "status", "--agent", down_sock, NULL);
    assert_int_equal(rc, 3);
    free(out);

    /* A relative socket path that starts with neither '/' nor '.' is still a path. */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0);
    rc = run_cli(&out, "status", "--agent", up_sock + 1, NULL);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        print_error("output:\n%s\n", out);
    assert_int_equal(rc, 0);
    free(out);

    rc = run_cli(&out, "status", "--agent", up_sock, "--json", NULL);
    assert_int_equal(rc, 0);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    assert_non_null(doc);
    assert_true(json_is_true(json_object_get(json_array_get(json_object_get(doc, "agents"), 0),
                                             "ok")));
    json_decref(doc);
    free(out);

    /* Destructive commands without a terminal need --yes; nothing is sent without it. */
    rc = run_cli(&out, "fence", "west", "--agent", up_sock, NULL);
    assert_int_equal(rc, 2);
    free(out);
    rc = run_cli(&out, "fence", "--agent", up_sock, NULL);
    assert_int_equal(rc, 2);
    free(out);
    rc = run_cli(&out, "status", "--bogus", NULL);
    assert_int_equal(rc, 2);
    free(out);
    /* The admin API listens only on Unix sockets and loopback, so other addresses are rejected
     * before anything is sent. 0.0.0.0 is not loopback, yet reaches only this host if sent. */
    rc = run_cli(&out, "status", "--agent", "0.0.0.0:1", NULL);
    assert_int_equal(rc, 2);
    free(out);
    /* A user part must not pass the check: curl would connect to the host after the '@'. */
    rc = run_cli(&out, "status", "--agent", "127.0.0.1:1@localhost:9", NULL);
    assert_int_equal(rc, 2);
    free(out);

    rc = run_cli(&out, "fence", "west", "--yes", "--agent", up_sock, "--agent", down_sock,
                 NULL);
    assert_int_equal(rc, 1);
    free(out);
    rc = run_cli(&out, "status", "--agent", up_sock, NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "fenced"));
    assert_non_null(strstr(out, "Breakers not closed:\n  it-admin-up west: fenced by unix:"));
    free(out);
    /* Fencing east too, the last region taking events, needs --force. */
    rc = run_cli(&out, "fence", "east", "--yes", "--agent", up_sock, NULL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "--force"));
    free(out);
    rc = run_cli(&out, "fence", "east", "--yes", "--force", "--agent", up_sock, NULL);
    assert_int_equal(rc, 0);
    free(out);
    rc = run_cli(&out, "unfence", "east", "--force", "--agent", up_sock, NULL);
    assert_int_equal(rc, 2);
    free(out);
    rc = run_cli(&out, "unfence", "east", "--agent", up_sock, NULL);
    assert_int_equal(rc, 0);
    free(out);
    rc = run_cli(&out, "unfence", "west", "--agent", up_sock, NULL);
    assert_int_equal(rc, 0);
    free(out);
    wait_breaker(up_sock, "east", "closed");
    wait_breaker(up_sock, "west", "closed");

    rc = run_cli(&out, "failover", "west", "--dry-run", "--agent", up_sock, NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "would change"));
    assert_non_null(strstr(out, "divergence"));
    free(out);
    json_t *s = http_json(up_sock, "GET", "/v1/status", 200);
    assert_string_equal(region_breaker(s, "east"), "closed");
    json_decref(s);

    assert_int_equal(it_agent_stop(&up), 0);
}

/* Acknowledged event values, for the no-loss check. */
struct acks {
    char **values;
    size_t count;
    size_t failed;
};

static void on_result(void *ctx, const struct tl_client_result *r)
{
    struct acks *acks = ctx;
    if (r->status != TL_CLIENT_OK) {
        acks->failed++;
        return;
    }
    acks->values = realloc(acks->values, (acks->count + 1) * sizeof(char *));
    acks->values[acks->count] = malloc(32);
    snprintf(acks->values[acks->count++], 32, "event-%06d", (int)(intptr_t)r->opaque);
}

/* Sends count events numbered from *next and waits for their results. */
static void send_events(struct tl_client *c, int *next, int count)
{
    char err[256];
    for (int i = 0; i < count; i++) {
        char value[32];
        int number = (*next)++;
        snprintf(value, sizeof(value), "event-%06d", number);
        struct tl_client_event ev = {.topic = "events", .key = value, .key_len = strlen(value),
                                     .has_key = true, .value = value,
                                     .value_len = strlen(value),
                                     .opaque = (void *)(intptr_t)number};
        assert_int_equal(tl_client_send(c, &ev, 1, NULL, err, sizeof(err)), 0);
        tl_client_poll(c, 0);
        if (i % 50 == 49)
            assert_int_equal(tl_client_flush(c, 30000), 0);
    }
    assert_int_equal(tl_client_flush(c, 30000), 0);
}

static bool records_contain(const struct it_records *r, const char *value)
{
    for (size_t i = 0; i < r->count; i++)
        if (r->items[i].value && strcmp(r->items[i].value, value) == 0)
            return true;
    return false;
}

static void failover_and_failback_keep_events(void **state)
{
    (void)state;
    struct it_agent a;
    char sock[400];
    start_agent(&a, "it-admin-failover", "");
    admin_path(&a, sock, sizeof(sock));

    struct acks acks = {0};
    struct tl_client_options opts = {.on_result = on_result, .ctx = &acks};
    struct tl_client *c;
    char err[256];
    assert_int_equal(tl_client_connect(a.socket, &opts, &c, err, sizeof(err)), 0);
    int next = 0;

    send_events(c, &next, 200);

    char *out;
    int rc = run_cli(&out, "failover", "east", "--yes", "--agent", sock, NULL);
    if (rc != 0)
        print_error("failover output:\n%s\n", out);
    assert_int_equal(rc, 0);
    free(out);
    json_t *s = http_json(sock, "GET", "/v1/status", 200);
    assert_string_equal(region_breaker(s, "west"), "fenced");
    json_decref(s);

    send_events(c, &next, 300);

    rc = run_cli(&out, "failback", "--yes", "--agent", sock, NULL);
    assert_int_equal(rc, 0);
    free(out);
    send_events(c, &next, 200);
    wait_breaker(sock, "west", "closed");
    send_events(c, &next, 100);
    tl_client_close(c);

    /* Wait until neither region has a backlog, then read both back. */
    bool caught_up = false;
    for (int i = 0; i < 400 && !caught_up; i++) {
        json_t *st = http_json(sock, "GET", "/v1/status", 200);
        caught_up = true;
        for (size_t r = 0; r < 2; r++) {
            json_t *region = json_array_get(json_object_get(st, "regions"), r);
            caught_up &= json_integer_value(json_object_get(region, "backlog_events")) == 0;
        }
        json_decref(st);
        if (!caught_up)
            usleep(50000);
    }
    assert_true(caught_up);
    assert_int_equal(acks.failed, 0);
    assert_int_equal(acks.count, 800);

    for (int r = 0; r < 2; r++) {
        struct it_records records;
        it_consume(a.bootstrap[r], "events", &records);
        for (size_t i = 0; i < acks.count; i++)
            if (!records_contain(&records, acks.values[i]))
                fail_msg("acknowledged %s is missing in region %s", acks.values[i],
                         EMBEDDED[r]);
        it_records_free(&records);
    }
    for (size_t i = 0; i < acks.count; i++)
        free(acks.values[i]);
    free(acks.values);
    assert_int_equal(it_agent_stop(&a), 0);
}

int main(void)
{
    it_watchdog_start(540);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_and_health_endpoints),
        cmocka_unit_test(metrics_exposition_is_valid),
        cmocka_unit_test(control_verbs_change_state),
        cmocka_unit_test(tcp_requires_valid_token),
        cmocka_unit_test(malformed_requests_get_4xx),
        cmocka_unit_test(cli_shows_unreachable_agent),
        cmocka_unit_test(failover_and_failback_keep_events),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
