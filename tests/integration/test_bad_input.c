/*
 * Bad input against a running agent: malformed, oversized and truncated frames, rejected
 * events, and start-up checks on the regions' topics. Valid traffic on other connections (and
 * on the same connection after a malformed frame) must land in both regions, and the agent
 * must stay up.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "frame.h"
#include "support.h"
#include "twinlane/client.h"

static const char *const CONFIG =
    "agent = { id = \"it-bad\"; home_region = \"east\"; data_dir = \"@DIR@/data\"; };\n"
    "listen = { max_frame_bytes = 65536; max_event_bytes = 1024; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"embedded\"; embedded_brokers = 1; },\n"
    "            { name = \"west\"; bootstrap = \"embedded\"; embedded_brokers = 1; } );\n"
    "topics = ( { name = \"events\"; partitions = 3; } );\n";

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads one response frame; returns NULL at end of stream. */
static Twinlane__ProduceResponse *read_response(int fd)
{
    struct tl_frame_reader r;
    const uint8_t *payload;
    size_t len;
    uint8_t buf[4096];
    Twinlane__ProduceResponse *resp = NULL;

    tl_frame_reader_init(&r, 1 << 20);
    for (;;) {
        if (tl_frame_reader_next(&r, &payload, &len, NULL, 0) == 1) {
            assert_int_equal(tl_frame_decode_response(payload, len, &resp, NULL, 0), 0);
            break;
        }
        /* One byte at a time, so no byte of a following frame is consumed here. */
        ssize_t n = recv(fd, buf, 1, 0);
        if (n <= 0)
            break;
        tl_frame_reader_feed(&r, buf, (size_t)n);
    }
    tl_frame_reader_free(&r);
    return resp;
}

/* Sends a request with one keyed event to topic "events". */
static void send_one_event(int fd, uint64_t batch_id, const char *value)
{
    Twinlane__Event ev = TWINLANE__EVENT__INIT;
    Twinlane__Event *evs[1] = {&ev};
    Twinlane__ProduceRequest req = TWINLANE__PRODUCE_REQUEST__INIT;
    struct tl_buf buf;

    ev.topic = "events";
    ev.has_key = true;
    ev.key.data = (uint8_t *)"raw";
    ev.key.len = 3;
    ev.has_value = true;
    ev.value.data = (uint8_t *)value;
    ev.value.len = strlen(value);
    req.batch_id = batch_id;
    req.n_events = 1;
    req.events = evs;
    tl_buf_init(&buf);
    tl_frame_append(&buf, &req.base);
    send_all(fd, buf.data, buf.len);
    tl_buf_free(&buf);
}

struct tally {
    size_t by_status[8];
    int status_of[16]; /* per opaque index for the mixed batch */
    size_t regions_of[16]; /* regions holding the event when it was answered */
};

static void on_result(void *ctx, const struct tl_client_result *r)
{
    struct tally *t = ctx;
    t->by_status[r->status]++;
    intptr_t idx = (intptr_t)r->opaque;
    if (idx > 0 && idx < 16) {
        t->status_of[idx] = r->status;
        t->regions_of[idx] = r->region_count;
    }
}

static size_t count_in_log(const char *log_path, const char *needle)
{
    char *text = it_read_file(log_path, NULL);
    size_t n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p++)
        n++;
    free(text);
    return n;
}

static void malformed_frames_leave_agent_serving(void **state)
{
    (void)state;
    static const char *const embedded[2] = {"east", "west"};
    struct it_agent agent;
    char err[256];
    struct tally tally = {0};

    it_agent_start(&agent, "bad", CONFIG, embedded);

    /* A well-behaved client pipelines 500 events while the others misbehave. */
    struct tl_client_options opts = {.on_result = on_result, .ctx = &tally};
    struct tl_client *good;
    assert_int_equal(tl_client_connect(agent.socket, &opts, &good, err, sizeof(err)), 0);
    for (int b = 0; b < 5; b++) {
        struct tl_client_event evs[100];
        char values[100][32];
        for (int i = 0; i < 100; i++) {
            snprintf(values[i], sizeof(values[i]), "good-%d-%d", b, i);
            evs[i] = (struct tl_client_event){.topic = "events", .value = values[i],
                                              .value_len = strlen(values[i])};
        }
        assert_int_equal(tl_client_send(good, evs, 100, NULL, err, sizeof(err)), 0);
    }

    /* Undecodable payload: an error answer, then the same connection still works. */
    int a = connect_unix(agent.socket);
    const uint8_t junk[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    send_all(a, junk, sizeof(junk));
    Twinlane__ProduceResponse *resp = read_response(a);
    assert_non_null(resp);
    assert_non_null(resp->error);
    assert_int_equal(resp->error_status, TWINLANE__STATUS__INVALID);
    twinlane__produce_response__free_unpacked(resp, NULL);
    send_one_event(a, 77, "after-junk");
    resp = read_response(a);
    assert_non_null(resp);
    assert_int_equal(resp->batch_id, 77);
    assert_int_equal(resp->n_results, 1);
    assert_int_equal(resp->results[0]->status, TWINLANE__STATUS__OK);
    assert_int_equal(resp->results[0]->n_regions, 2);
    twinlane__produce_response__free_unpacked(resp, NULL);
    close(a);

    /* Declared length over listen.max_frame_bytes: an error answer, then a clean close. */
    int b = connect_unix(agent.socket);
    const uint8_t huge[] = {0x40, 0, 0, 0};
    send_all(b, huge, sizeof(huge));
    resp = read_response(b);
    assert_non_null(resp);
    assert_int_equal(resp->error_status, TWINLANE__STATUS__TOO_LARGE);
    assert_non_null(strstr(resp->error, "65536"));
    twinlane__produce_response__free_unpacked(resp, NULL);
    assert_null(read_response(b));
    close(b);

    /* Truncated header and truncated payload, then hang up. */
    int c = connect_unix(agent.socket);
    send_all(c, "\0\0", 2);
    close(c);
    int d = connect_unix(agent.socket);
    const uint8_t partial[] = {0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    send_all(d, partial, sizeof(partial));
    close(d);

    /* Per-event rejections next to a valid event in one request. */
    char big[2000];
    memset(big, 'x', sizeof(big));
    struct tl_client_header reserved = {.name = "twinlane-id", .value = "forged", .value_len = 6};
    struct tl_client_event mixed[5] = {
        {.topic = "no-such-topic", .value = "v", .value_len = 1, .opaque = (void *)1},
        {.topic = "bad topic!", .value = "v", .value_len = 1, .opaque = (void *)2},
        {.topic = "events", .value = big, .value_len = sizeof(big), .opaque = (void *)3},
        {.topic = "events", .value = "v", .value_len = 1, .headers = &reserved,
         .header_count = 1, .opaque = (void *)4},
        {.topic = "events", .value = "mixed-good", .value_len = 10, .opaque = (void *)5},
    };
    assert_int_equal(tl_client_send(good, mixed, 5, NULL, err, sizeof(err)), 0);
    assert_int_equal(tl_client_flush(good, 60000), 0);
    tl_client_close(good);

    assert_int_equal(tally.by_status[TL_CLIENT_OK], 501);
    assert_int_equal(tally.status_of[1], TL_CLIENT_UNKNOWN_TOPIC);
    assert_int_equal(tally.status_of[2], TL_CLIENT_INVALID);
    assert_int_equal(tally.status_of[3], TL_CLIENT_TOO_LARGE);
    assert_int_equal(tally.status_of[4], TL_CLIENT_INVALID);
    assert_int_equal(tally.status_of[5], TL_CLIENT_OK);
    assert_true(it_agent_alive(&agent));

    /* 500 pipelined + 1 after the junk frame + 1 from the mixed request, in each region. */
    struct it_records east, west;
    it_consume(agent.bootstrap[0], "events", &east);
    it_consume(agent.bootstrap[1], "events", &west);
    assert_int_equal(east.count, 502);
    assert_int_equal(west.count, 502);
    it_records_free(&east);
    it_records_free(&west);

    assert_int_equal(it_agent_stop(&agent), 0);
    assert_true(count_in_log(agent.log, "bad frame") >= 3);
}

/* A NUL byte in a topic would be cut off by C strings: the request must be refused instead. */
static void nul_in_topic_rejected(void **state)
{
    (void)state;
    static const char *const embedded[2] = {"east", "west"};
    struct it_agent agent;
    /* batch_id 9, one event with topic "events\0x" and value "v". */
    static const uint8_t payload[] = {0x08, 0x09, 0x12, 0x0d, 0x0a, 0x08, 'e', 'v', 'e', 'n',
                                      't', 's', 0x00, 'x', 0x1a, 0x01, 'v'};
    uint8_t frame[4 + sizeof(payload)] = {0, 0, 0, sizeof(payload)};
    memcpy(frame + 4, payload, sizeof(payload));

    it_agent_start(&agent, "nul", CONFIG, embedded);
    int fd = connect_unix(agent.socket);
    send_all(fd, frame, sizeof(frame));
    Twinlane__ProduceResponse *resp = read_response(fd);
    assert_non_null(resp);
    assert_int_equal(resp->batch_id, 9);
    assert_int_equal(resp->error_status, TWINLANE__STATUS__INVALID);
    assert_non_null(strstr(resp->error, "NUL"));
    twinlane__produce_response__free_unpacked(resp, NULL);
    close(fd);

    struct it_records east;
    it_consume(agent.bootstrap[0], "events", &east);
    assert_int_equal(east.count, 0);
    it_records_free(&east);
    assert_int_equal(it_agent_stop(&agent), 0);
}

/* Clients that send far more than they read must not hold up a well-behaved client. */
enum { FLOODERS = 50 };

struct flood {
    int fds[FLOODERS];
    uint8_t *data;
    size_t len;
    atomic_bool stop;
};

/* Keeps every flooding connection's socket buffer full until told to stop. */
static void *flood_thread(void *arg)
{
    struct flood *f = arg;
    size_t off[FLOODERS] = {0};
    while (!atomic_load(&f->stop)) {
        struct pollfd pfd[FLOODERS];
        for (int i = 0; i < FLOODERS; i++)
            pfd[i] = (struct pollfd){.fd = f->fds[i], .events = POLLOUT};
        if (poll(pfd, FLOODERS, 50) <= 0)
            continue;
        for (int i = 0; i < FLOODERS; i++) {
            if (!(pfd[i].revents & POLLOUT))
                continue;
            ssize_t n = send(f->fds[i], f->data + off[i], f->len - off[i],
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                off[i] = (off[i] + (size_t)n) % f->len;
        }
    }
    return NULL;
}

static void flooding_clients_leave_others_served(void **state)
{
    (void)state;
    static const char *const embedded[2] = {"east", "west"};
    struct it_agent agent;
    struct flood f = {0};
    char err[256];

    /* Empty requests with a 2-byte batch id: 7 bytes each, so the buffer holds whole frames. */
    size_t frame_count = 1u << 14;
    f.data = malloc(frame_count * 7);
    for (size_t i = 0; i < frame_count; i++) {
        uint8_t *p = f.data + f.len;
        p[0] = 0;
        p[1] = 0;
        p[2] = 0;
        p[3] = 3;
        p[4] = 0x08;
        p[5] = (uint8_t)(0x80 | (i & 0x7f));
        p[6] = (uint8_t)((i >> 7) & 0x7f);
        f.len += 7;
    }

    it_agent_start(&agent, "flood", CONFIG, embedded);
    for (int i = 0; i < FLOODERS; i++)
        f.fds[i] = connect_unix(agent.socket);
    pthread_t thread;
    pthread_create(&thread, NULL, flood_thread, &f);
    sleep(2);

    /* Three probes, each on its own connection; every one must be answered promptly. */
    for (int probe = 0; probe < 3; probe++) {
        struct tally tally = {0};
        struct tl_client_options opts = {.on_result = on_result, .ctx = &tally};
        struct tl_client *c;
        assert_int_equal(tl_client_connect(agent.socket, &opts, &c, err, sizeof(err)), 0);
        struct tl_client_event ev = {.topic = "events", .value = "probe", .value_len = 5,
                                     .opaque = (void *)1};
        assert_int_equal(tl_client_send(c, &ev, 1, NULL, err, sizeof(err)), 0);
        /* Generous bound: seconds, not the minutes a starved client would wait. */
        assert_int_equal(tl_client_flush(c, 5000), 0);
        tl_client_close(c);
        assert_int_equal(tally.status_of[1], TL_CLIENT_OK);
    }

    atomic_store(&f.stop, true);
    pthread_join(thread, NULL);
    for (int i = 0; i < FLOODERS; i++)
        close(f.fds[i]);
    free(f.data);
    assert_true(it_agent_alive(&agent));
    assert_int_equal(it_agent_stop(&agent), 0);
}

/* Runs the agent against two test-owned mock clusters; returns its exit status and log. */
static int run_against_clusters(int east_partitions, int west_partitions, char *log_out,
                                size_t log_size)
{
    char errstr[256];
    rd_kafka_t *owners[2];
    rd_kafka_mock_cluster_t *clusters[2];
    int counts[2] = {east_partitions, west_partitions};
    char config[2048];
    char dir[256];

    for (int i = 0; i < 2; i++) {
        owners[i] = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr, sizeof(errstr));
        clusters[i] = rd_kafka_mock_cluster_new(owners[i], 1);
        if (counts[i] > 0)
            rd_kafka_mock_topic_create(clusters[i], "events", counts[i], 1);
    }
    it_make_dir("topics", dir, sizeof(dir));
    snprintf(config, sizeof(config),
             "agent = { id = \"it-topics\"; home_region = \"east\"; data_dir = \"%s/data\"; };\n"
             "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
             "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
             "topics = ( { name = \"events\"; } );\n",
             dir, rd_kafka_mock_cluster_bootstraps(clusters[0]),
             rd_kafka_mock_cluster_bootstraps(clusters[1]));

    char path[400];
    snprintf(path, sizeof(path), "%s/agent.conf", dir);
    FILE *f = fopen(path, "w");
    fputs(config, f);
    fclose(f);
    snprintf(log_out, log_size, "%s/agent.log", dir);
    char *argv[] = {TL_AGENT_BIN, "-c", path, NULL};
    int rc = it_run(argv, NULL, log_out, 120);

    for (int i = 0; i < 2; i++) {
        rd_kafka_mock_cluster_destroy(clusters[i]);
        rd_kafka_destroy(owners[i]);
    }
    return rc;
}

/* Agents started by hand below; killed at exit in case a failed assert skipped their stop. */
static pid_t forked_agents[8];
static size_t forked_agent_count;

static void kill_forked_agents(void)
{
    for (size_t i = 0; i < forked_agent_count; i++)
        if (forked_agents[i] > 0)
            kill(forked_agents[i], SIGKILL);
}

static void remember_agent(pid_t pid)
{
    if (forked_agent_count < sizeof(forked_agents) / sizeof(forked_agents[0]))
        forked_agents[forked_agent_count++] = pid;
}

/* Two in-process mock clusters, east and west, each with the topics the agent needs. */
struct mock_pair {
    rd_kafka_t *owners[2];
    rd_kafka_mock_cluster_t *clusters[2];
};

static void mock_pair_start(struct mock_pair *m)
{
    char errstr[256];
    for (int i = 0; i < 2; i++) {
        m->owners[i] = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr,
                                    sizeof(errstr));
        m->clusters[i] = rd_kafka_mock_cluster_new(m->owners[i], 1);
        rd_kafka_mock_topic_create(m->clusters[i], "events", 1, 1);
        rd_kafka_mock_topic_create(m->clusters[i], "twinlane.heartbeats", 1, 1);
    }
}

static void mock_pair_stop(struct mock_pair *m)
{
    for (int i = 0; i < 2; i++) {
        rd_kafka_mock_cluster_destroy(m->clusters[i]);
        rd_kafka_destroy(m->owners[i]);
    }
}

/*
 * Starts the agent in a new directory named after name, against the mock pair. agent_fields
 * go inside the agent group and extra after the topics. Waits up to 60 s for its socket.
 */
static void start_forked_agent(struct it_agent *agent, const char *name, const char *agent_fields,
                               const char *extra, const struct mock_pair *m)
{
    char config[2048], path[300];

    memset(agent, 0, sizeof(*agent));
    it_make_dir(name, agent->dir, sizeof(agent->dir));
    snprintf(config, sizeof(config),
             "agent = { id = \"it-%s\"; home_region = \"east\"; data_dir = \"%s/data\";\n"
             "          %s };\n"
             "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
             "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
             "topics = ( { name = \"events\"; } );\n%s",
             name, agent->dir, agent_fields, rd_kafka_mock_cluster_bootstraps(m->clusters[0]),
             rd_kafka_mock_cluster_bootstraps(m->clusters[1]), extra);
    snprintf(path, sizeof(path), "%s/agent.conf", agent->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(config, f);
    fclose(f);
    snprintf(agent->log, sizeof(agent->log), "%s/agent.log", agent->dir);
    snprintf(agent->socket, sizeof(agent->socket), "%s/data/agent.sock", agent->dir);

    agent->pid = fork();
    if (agent->pid == 0) {
        it_child_dies_with_parent();
        freopen(agent->log, "w", stderr);
        execl(TL_AGENT_BIN, "twinlane-agent", "-c", path, (char *)NULL);
        _exit(127);
    }
    remember_agent(agent->pid);
    for (int i = 0; i < 1200 && access(agent->socket, F_OK) != 0; i++)
        usleep(50000);
}

/* Every request gets exactly one answer when the agent stops, taken or not. */
static void shutdown_answers_every_request(void **state)
{
    (void)state;
    struct mock_pair m;
    struct it_agent agent;

    /* Slow regions keep events in flight, so the pipeline fills and requests queue up. */
    mock_pair_start(&m);
    start_forked_agent(&agent, "stop", "max_inflight_events = 50; shutdown_timeout_ms = 500;",
                       "breaker = { stall_timeout_ms = 60000; rto_target_ms = 120000; };\n", &m);
    for (int i = 0; i < 2; i++)
        rd_kafka_mock_broker_set_rtt(m.clusters[i], 1, 5000);

    int fd = connect_unix(agent.socket);
    /*
     * About 140 KB in one write: more than one 64 KB read of the agent, so some requests still
     * wait in the socket when it stops. One write keeps the socket's per-write overhead small
     * enough for all of them to fit in its buffer.
     */
    enum { REQUESTS = 300 };
    struct tl_buf buf;
    tl_buf_init(&buf);
    for (uint64_t b = 1; b <= REQUESTS; b++) {
        Twinlane__Event evs[30];
        Twinlane__Event *ptrs[30];
        for (int i = 0; i < 30; i++) {
            twinlane__event__init(&evs[i]);
            evs[i].topic = "events";
            evs[i].has_value = true;
            evs[i].value.data = (uint8_t *)"v";
            evs[i].value.len = 1;
            ptrs[i] = &evs[i];
        }
        Twinlane__ProduceRequest req = TWINLANE__PRODUCE_REQUEST__INIT;
        req.batch_id = b;
        req.n_events = 30;
        req.events = ptrs;
        tl_frame_append(&buf, &req.base);
    }
    send_all(fd, buf.data, buf.len);
    tl_buf_free(&buf);
    usleep(500000);
    kill(agent.pid, SIGTERM);

    bool answered[REQUESTS + 1] = {false};
    size_t responses = 0;
    Twinlane__ProduceResponse *resp;
    while ((resp = read_response(fd)) != NULL) {
        assert_true(resp->batch_id >= 1 && resp->batch_id <= REQUESTS);
        assert_false(answered[resp->batch_id]);
        answered[resp->batch_id] = true;
        responses++;
        bool retryable = resp->error ? resp->error_status == TWINLANE__STATUS__RETRYABLE
                                     : resp->results[0]->status == TWINLANE__STATUS__RETRYABLE;
        assert_true(retryable);
        twinlane__produce_response__free_unpacked(resp, NULL);
    }
    close(fd);
    assert_int_equal(responses, REQUESTS);
    assert_int_equal(it_agent_stop(&agent), 0);
    mock_pair_stop(&m);
}

static void partition_mismatch_stops_start(void **state)
{
    (void)state;
    char log[400];

    assert_int_equal(run_against_clusters(3, 6, log, sizeof(log)), 1);
    assert_true(count_in_log(log, "topic events has 3 partitions in region east but 6 in "
                                       "region west") >= 1);
}

static void missing_topic_stops_start(void **state)
{
    (void)state;
    char log[400];

    assert_int_equal(run_against_clusters(3, 0, log, sizeof(log)), 1);
    assert_true(count_in_log(log, "topic events does not exist in region west") >= 1);
}

static void invalid_config_exits_two(void **state)
{
    (void)state;
    char dir[256], path[400], log[400];

    it_make_dir("config", dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/agent.conf", dir);
    snprintf(log, sizeof(log), "%s/agent.log", dir);
    FILE *f = fopen(path, "w");
    fputs("agent = { id = \"x\"; home_region = \"east\"; data_dir = \"/tmp\"; };\n"
          "regions = ( { name = \"east\"; bootstrap = \"embedded\"; } );\n"
          "topics = ( { name = \"events\"; } );\n", f);
    fclose(f);

    char *argv[] = {TL_AGENT_BIN, "-c", path, NULL};
    assert_int_equal(it_run(argv, NULL, log, 30), 2);
    assert_true(count_in_log(log, "agent.conf:") >= 1);
}

static const char *const DEFAULT_LIMITS_CONFIG =
    "agent = { id = \"it-big\"; home_region = \"east\"; data_dir = \"@DIR@/data\"; };\n"
    "regions = ( { name = \"east\"; bootstrap = \"embedded\"; embedded_brokers = 1; },\n"
    "            { name = \"west\"; bootstrap = \"embedded\"; embedded_brokers = 1; } );\n"
    "topics = ( { name = \"events\"; partitions = 1; } );\n";

/* librdkafka's own message.max.bytes (1000000) must not undercut listen.max_event_bytes. */
static void event_near_size_limit_accepted(void **state)
{
    (void)state;
    static const char *const embedded[2] = {"east", "west"};
    struct it_agent agent;
    struct tally tally = {0};
    char err[256];
    size_t size = 1040000; /* over 1000000, under the default 1 MiB limit */
    char *value = malloc(size);
    memset(value, 'x', size);

    it_agent_start(&agent, "big", DEFAULT_LIMITS_CONFIG, embedded);
    struct tl_client_options opts = {.on_result = on_result, .ctx = &tally};
    struct tl_client *c;
    assert_int_equal(tl_client_connect(agent.socket, &opts, &c, err, sizeof(err)), 0);
    struct tl_client_event ev = {.topic = "events", .value = value, .value_len = size,
                                 .opaque = (void *)1};
    assert_int_equal(tl_client_send(c, &ev, 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(tl_client_flush(c, 60000), 0);
    tl_client_close(c);

    assert_int_equal(tally.status_of[1], TL_CLIENT_OK);
    assert_int_equal(it_agent_stop(&agent), 0);
    free(value);
}

/* The WAL stores header counts and name lengths in 16 bits: larger ones are refused. */
static void header_limits_enforced(void **state)
{
    (void)state;
    static const char *const embedded[2] = {"east", "west"};
    struct it_agent agent;
    struct tally tally = {0};
    char err[256];
    size_t count = 65536;
    struct tl_client_header *headers = calloc(count, sizeof(*headers));
    for (size_t i = 0; i < count; i++)
        headers[i] = (struct tl_client_header){.name = "h", .value = "", .value_len = 0};
    char *long_name = malloc(70000);
    memset(long_name, 'n', 69999);
    long_name[69999] = '\0';
    struct tl_client_header long_header = {.name = long_name};

    it_agent_start(&agent, "headers", DEFAULT_LIMITS_CONFIG, embedded);
    struct tl_client_options opts = {.on_result = on_result, .ctx = &tally};
    struct tl_client *c;
    assert_int_equal(tl_client_connect(agent.socket, &opts, &c, err, sizeof(err)), 0);
    struct tl_client_event evs[3] = {
        {.topic = "events", .value = "v", .value_len = 1, .headers = headers,
         .header_count = count, .opaque = (void *)1},
        {.topic = "events", .value = "v", .value_len = 1, .headers = &long_header,
         .header_count = 1, .opaque = (void *)2},
        {.topic = "events", .value = "v", .value_len = 1, .headers = headers,
         .header_count = count - 1, .opaque = (void *)3},
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(tl_client_send(c, &evs[i], 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(tl_client_flush(c, 60000), 0);
    tl_client_close(c);

    assert_int_equal(tally.status_of[1], TL_CLIENT_INVALID);
    assert_int_equal(tally.status_of[2], TL_CLIENT_INVALID);
    assert_int_equal(tally.status_of[3], TL_CLIENT_OK);
    assert_int_equal(it_agent_stop(&agent), 0);
    free(headers);
    free(long_name);
}

/*
 * A fresh producer's first requests can be slow (metadata, producer id); a region that answers
 * slowly from the start must not be declared stalled before its first delivery report.
 */
static void slow_first_delivery_keeps_breaker_closed(void **state)
{
    (void)state;
    struct mock_pair m;
    struct it_agent agent;
    struct tally tally = {0};

    /*
     * West responds to every request 1 s late from the start, longer than the 0.4 s stall
     * deadline, so the producer's first delivery comes only after it. Its start-up requests
     * (API versions, metadata, producer id, the first produce) then take about 4 s, well
     * inside the first-delivery deadline even on a loaded machine. start_wait_ms gives west's
     * first metadata round at start the same margin, so that the agent does not start
     * without it.
     */
    mock_pair_start(&m);
    rd_kafka_mock_broker_set_rtt(m.clusters[1], 1, 1000);
    start_forked_agent(&agent, "slow", "start_wait_ms = 20000;",
                       "breaker = { stall_timeout_ms = 400; };\n", &m);

    char err[256];
    struct tl_client_options opts = {.on_result = on_result, .ctx = &tally};
    struct tl_client *c;
    assert_int_equal(tl_client_connect(agent.socket, &opts, &c, err, sizeof(err)), 0);
    struct tl_client_event ev = {.topic = "events", .value = "v", .value_len = 1,
                                 .opaque = (void *)1};
    assert_int_equal(tl_client_send(c, &ev, 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(tl_client_flush(c, 60000), 0);
    tl_client_close(c);
    assert_int_equal(tally.status_of[1], TL_CLIENT_OK);
    /*
     * Both regions held the event when it was answered: west's breaker did not open before
     * its first delivery. (It may open later, since every later request is slow as well.)
     */
    assert_int_equal(tally.regions_of[1], 2);
    assert_int_equal(it_agent_stop(&agent), 0);
    mock_pair_stop(&m);
}

/*
 * A WAL record damaged while a region was down: when the region returns, the agent fences it
 * with an error that names the fix, instead of stalling it, and producers still get responses.
 */
static void damaged_wal_record_fences_region(void **state)
{
    (void)state;
    static const char *const topics[] = {"events:1", NULL};
    char dir[200], config[2048], err[256];
    struct tally tally = {0};
    struct it_mock mocks[2];

    it_make_dir("wal-damage", dir, sizeof(dir));
    it_mock_start(&mocks[0], dir, "east", topics);
    it_mock_start(&mocks[1], dir, "west", topics);
    snprintf(config, sizeof(config),
             "agent = { id = \"it-damage\"; home_region = \"east\"; data_dir = \"@DIR@/data\";\n"
             "          ack = \"all\"; };\n"
             "wal = { segment_bytes = 1048576; };\n"
             "listen = { max_event_bytes = 65536; };\n"
             "regions = ( { name = \"east\"; bootstrap = \"%s\"; },\n"
             "            { name = \"west\"; bootstrap = \"%s\"; } );\n"
             "topics = ( { name = \"events\"; partitions = 1; } );\n",
             mocks[0].bootstrap, mocks[1].bootstrap);
    struct it_agent agent;
    it_agent_start(&agent, "wal-damage-agent", config, NULL);

    /* West is down while 40 events of 20 KB go to east alone. */
    it_mock_command(&mocks[1], "all-down");
    static char value[20000];
    memset(value, 'v', sizeof(value));
    struct tl_client_options opts = {.on_result = on_result, .ctx = &tally};
    struct tl_client *c;
    assert_int_equal(tl_client_connect(agent.socket, &opts, &c, err, sizeof(err)), 0);
    struct tl_client_event ev = {.topic = "events", .value = value, .value_len = sizeof(value)};
    for (int i = 0; i < 40; i++)
        assert_int_equal(tl_client_send(c, &ev, 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(tl_client_flush(c, 60000), 0);
    assert_int_equal(tally.by_status[TL_CLIENT_OK], 40);

    /* One byte in the middle of the first segment goes bad, then west returns. */
    char segment[400];
    snprintf(segment, sizeof(segment), "%s/data/wal/%020d.wal", agent.dir, 1);
    FILE *f = fopen(segment, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 300000, SEEK_SET), 0);
    int byte = fgetc(f);
    assert_int_equal(fseek(f, 300000, SEEK_SET), 0);
    fputc(byte ^ 0xff, f);
    fclose(f);
    it_mock_command(&mocks[1], "all-up");

    const char *needle = "damaged WAL record, fencing the region region=west";
    for (int i = 0; i < 300 && count_in_log(agent.log, needle) == 0; i++)
        usleep(100000);
    if (count_in_log(agent.log, needle) == 0)
        it_agent_dump_log(&agent);
    assert_int_equal(count_in_log(agent.log, needle), 1);
    assert_true(count_in_log(agent.log, "--salvage-wal") >= 1);

    /* With west fenced, east alone acknowledges a new event. */
    struct tl_client_event last = ev;
    last.opaque = (void *)1;
    assert_int_equal(tl_client_send(c, &last, 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(tl_client_flush(c, 20000), 0);
    assert_int_equal(tally.status_of[1], TL_CLIENT_OK);
    assert_int_equal(tally.regions_of[1], 1);
    tl_client_close(c);

    assert_int_equal(it_agent_stop(&agent), 0);
    for (int r = 0; r < 2; r++)
        it_mock_stop(&mocks[r]);
}

/* CPU time (user + system) of a process in clock ticks, from /proc/PID/stat. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(buf, sizeof(buf), f))
        fail_msg("cannot read %s", path);
    fclose(f);
    /* Fields after the command name, which ends at the last ')'. */
    char *p = strrchr(buf, ')');
    long utime = 0, stime = 0;
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime);
    return utime + stime;
}

/* A region that is down must not make its thread spin while the breaker is open. */
static void open_breaker_does_not_spin(void **state)
{
    (void)state;
    struct mock_pair m;
    struct it_agent agent;

    mock_pair_start(&m);
    start_forked_agent(&agent, "spin", "", "", &m);
    const char *log = agent.log;

    rd_kafka_mock_broker_set_down(m.clusters[1], 1);
    for (int i = 0; i < 100 && count_in_log(log, "region=west from=closed to=open") == 0; i++)
        usleep(100000);
    assert_true(count_in_log(log, "region=west from=closed to=open") >= 1);

    /* Over 2 s with west open, an idle agent uses a small share of one core. */
    long before = cpu_ticks(agent.pid);
    sleep(2);
    long used = cpu_ticks(agent.pid) - before;
    long ticks_per_s = sysconf(_SC_CLK_TCK);
    fprintf(stderr, "agent used %ld ticks of CPU in 2 s (%ld ticks per second)\n", used,
            ticks_per_s);
    assert_true(used < ticks_per_s / 2);

    assert_int_equal(it_agent_stop(&agent), 0);
    mock_pair_stop(&m);
}

/*
 * A start-up failure after the region threads started (here: a missing admin token file)
 * exits 1 with the cause, instead of crashing while the regions are torn down.
 */
static void late_startup_failure_exits_one(void **state)
{
    (void)state;
    char dir[200], path[300], log[300], config[1024];

    it_make_dir("late-failure", dir, sizeof(dir));
    snprintf(config, sizeof(config),
             "agent = { id = \"it-late\"; home_region = \"east\"; data_dir = \"%s/data\"; };\n"
             "admin = { tcp = \"127.0.0.1:1\"; token_file = \"%s/no-such-tokens\"; };\n"
             "regions = ( { name = \"east\"; bootstrap = \"embedded\"; embedded_brokers = 1; },\n"
             "            { name = \"west\"; bootstrap = \"embedded\"; embedded_brokers = 1; } );\n"
             "topics = ( { name = \"events\"; } );\n", dir, dir);
    snprintf(path, sizeof(path), "%s/agent.conf", dir);
    snprintf(log, sizeof(log), "%s/agent.log", dir);
    FILE *f = fopen(path, "w");
    fputs(config, f);
    fclose(f);

    char *argv[] = {TL_AGENT_BIN, "-c", path, NULL};
    assert_int_equal(it_run(argv, NULL, log, 60), 1);
    assert_true(count_in_log(log, "no-such-tokens") >= 1);
}

int main(void)
{
    it_watchdog_start(540);
    atexit(kill_forked_agents);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_frames_leave_agent_serving),
        cmocka_unit_test(event_near_size_limit_accepted),
        cmocka_unit_test(nul_in_topic_rejected),
        cmocka_unit_test(header_limits_enforced),
        cmocka_unit_test(flooding_clients_leave_others_served),
        cmocka_unit_test(shutdown_answers_every_request),
        cmocka_unit_test(partition_mismatch_stops_start),
        cmocka_unit_test(missing_topic_stops_start),
        cmocka_unit_test(invalid_config_exits_two),
        cmocka_unit_test(late_startup_failure_exits_one),
        cmocka_unit_test(slow_first_delivery_keeps_breaker_closed),
        cmocka_unit_test(damaged_wal_record_fences_region),
        cmocka_unit_test(open_breaker_does_not_spin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
