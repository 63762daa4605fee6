/*
 * Regions on twinlane-mock-cluster processes or on real Kafka clusters, and region faults.
 *
 * Fault mapping, inject / heal:
 *
 *   action          mock (control socket)               kafka (kafka-cluster command)
 *   region-down     all-down / all-up                   kill NAME / restart NAME
 *   region-hang     rtt all 20000 / rtt all 0           pause NAME / resume NAME
 *   broker-kill     broker-down B / broker-up B         kill NAME B / restart NAME B
 *   partition       (not available)                     cut NAME / heal NAME (--netns)
 *   latency         rtt all MS / rtt all 0              netem NAME --delay MS / --clear
 *   produce-errors  push-errors TOPIC ERR N / clear     (not available)
 *
 * The Kafka clusters use base ports P (east) and P + 100 (west), so two 3-broker clusters
 * take P to P + 5 and P + 100 to P + 105.
 */
#include "chaos_backend.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chaos_util.h"

#define MOCK_START_TIMEOUT_MS 30000
#define KAFKA_START_TIMEOUT_MS 240000
#define KAFKA_COMMAND_TIMEOUT_MS 180000

static int start_mock(struct chaos_backend *b, int r, char *err, size_t errsize)
{
    const struct chaos_scenario *s = b->scenario;
    struct chaos_region *reg = &b->regions[r];
    char bootstrap_file[600], topic[300], heartbeat[300], brokers[16];
    snprintf(bootstrap_file, sizeof(bootstrap_file), "%s/%s.bootstrap", b->dir, reg->name);
    snprintf(reg->control, sizeof(reg->control), "%s/%s.control", b->dir, reg->name);
    snprintf(reg->log, sizeof(reg->log), "%s/%s-mock.log", b->dir, reg->name);
    snprintf(topic, sizeof(topic), "%s:%d", s->topic, s->partitions);
    snprintf(heartbeat, sizeof(heartbeat), "%s:1", CHAOS_HEARTBEAT_TOPIC);
    snprintf(brokers, sizeof(brokers), "%d", s->brokers);
    char *argv[] = {b->mock_bin, "--name", (char *)reg->name, "--brokers", brokers,
                    "--topic", topic, "--topic", heartbeat, "--bootstrap-file", bootstrap_file,
                    "--control", reg->control, NULL};

    reg->mock_pid = chaos_spawn(argv, NULL, reg->log, false, NULL);
    if (reg->mock_pid < 0) {
        snprintf(err, errsize, "starting %s failed", b->mock_bin);
        return -1;
    }
    int64_t deadline = chaos_now_ms() + MOCK_START_TIMEOUT_MS;
    while (!chaos_read_first_line(bootstrap_file, reg->bootstrap, sizeof(reg->bootstrap))) {
        int status;
        if (chaos_exited(reg->mock_pid, &status)) {
            reg->mock_pid = 0;
            snprintf(err, errsize, "twinlane-mock-cluster for region %s exited with status %d "
                     "during start-up; see %s", reg->name, status, reg->log);
            return -1;
        }
        if (chaos_now_ms() > deadline) {
            snprintf(err, errsize, "twinlane-mock-cluster for region %s not ready after %d s; "
                     "see %s", reg->name, MOCK_START_TIMEOUT_MS / 1000, reg->log);
            return -1;
        }
        chaos_sleep_ms(20);
    }
    return 0;
}

/* Runs kafka-cluster with args; its output goes to RUN_DIR/kafka-cluster.log. */
static int kafka_tool(struct chaos_backend *b, char *const args[], const char *out_path)
{
    char *argv[24] = {b->kafka_tool};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char log[600];
    snprintf(log, sizeof(log), "%s/kafka-cluster.log", b->dir);
    /* Append both streams to the tool log unless stdout is wanted on its own. */
    pid_t pid = chaos_spawn(argv, out_path ? out_path : log, log, true, b->kafka_env);
    if (pid < 0)
        return -1;
    int rc = chaos_wait(pid, KAFKA_COMMAND_TIMEOUT_MS);
    if (rc == -1) {
        kill(pid, SIGKILL);
        chaos_wait(pid, 10000);
    }
    return rc;
}

static int start_kafka(struct chaos_backend *b, char *err, size_t errsize)
{
    const struct chaos_scenario *s = b->scenario;
    char log[600], brokers[16], out[2][600], ports[2][16];
    snprintf(log, sizeof(log), "%s/kafka-cluster.log", b->dir);
    snprintf(brokers, sizeof(brokers), "%d", s->brokers);

    /* Start both clusters in parallel: a 3-broker cluster alone takes about 8 s. */
    pid_t pids[2];
    b->kafka_started = true;
    for (int r = 0; r < 2; r++) {
        snprintf(out[r], sizeof(out[r]), "%s/%s.bootstrap", b->dir, b->regions[r].name);
        snprintf(ports[r], sizeof(ports[r]), "%d", s->kafka_base_port + 100 * r);
        char *argv[] = {b->kafka_tool, "start", (char *)b->regions[r].name, "--brokers", brokers,
                        "--base-port", ports[r], "--timeout", "180",
                        s->netns ? "--netns" : NULL, NULL};
        pids[r] = chaos_spawn(argv, out[r], log, true, b->kafka_env);
    }
    int failed = -1, status = 0;
    for (int r = 0; r < 2; r++) {
        int rc = pids[r] < 0 ? -1 : chaos_wait(pids[r], KAFKA_START_TIMEOUT_MS);
        if (rc != 0 && failed < 0) {
            failed = r;
            status = rc;
        }
    }
    if (failed >= 0) {
        snprintf(err, errsize, "kafka-cluster start %s failed with exit status %d; see %s",
                 b->regions[failed].name, status, log);
        return -1;
    }

    char partitions[16], rf[16], isr[16];
    snprintf(partitions, sizeof(partitions), "%d", s->partitions);
    snprintf(rf, sizeof(rf), "%d", s->brokers < 3 ? s->brokers : 3);
    snprintf(isr, sizeof(isr), "%d", s->min_insync_replicas);
    for (int r = 0; r < 2; r++) {
        struct chaos_region *reg = &b->regions[r];
        if (!chaos_read_first_line(out[r], reg->bootstrap, sizeof(reg->bootstrap))) {
            snprintf(err, errsize, "kafka-cluster start %s printed no bootstrap servers",
                     reg->name);
            return -1;
        }
        char *topic[] = {"create-topic", (char *)reg->name, s->topic, "--partitions", partitions,
                         "--replication-factor", rf,
                         s->min_insync_replicas ? "--min-isr" : NULL, isr, NULL};
        char *heartbeat[] = {"create-topic", (char *)reg->name, CHAOS_HEARTBEAT_TOPIC,
                             "--partitions", "1", "--replication-factor", rf, NULL};
        if (kafka_tool(b, topic, NULL) != 0 || kafka_tool(b, heartbeat, NULL) != 0) {
            snprintf(err, errsize, "creating the topics in region %s failed; see %s", reg->name,
                     log);
            return -1;
        }
    }
    return 0;
}

int chaos_backend_start(struct chaos_backend *b, const struct chaos_scenario *s, const char *dir,
                        const char *mock_bin, const char *kafka_tool_path, char *err,
                        size_t errsize)
{
    memset(b, 0, sizeof(*b));
    b->scenario = s;
    snprintf(b->dir, sizeof(b->dir), "%s", dir);
    snprintf(b->mock_bin, sizeof(b->mock_bin), "%s", mock_bin);
    snprintf(b->kafka_tool, sizeof(b->kafka_tool), "%s", kafka_tool_path);
    snprintf(b->kafka_env, sizeof(b->kafka_env), "TWINLANE_KAFKA_RUN=%s/kafka-run", dir);
    for (int r = 0; r < 2; r++)
        b->regions[r].name = CHAOS_REGION_NAMES[r];

    if (s->backend == CHAOS_BACKEND_KAFKA)
        return start_kafka(b, err, errsize);
    for (int r = 0; r < 2; r++) {
        if (start_mock(b, r, err, errsize) < 0)
            return -1;
    }
    return 0;
}

static int mock_command(struct chaos_region *reg, const char *command, char *err, size_t errsize)
{
    char reply[512];
    if (chaos_unix_request(reg->control, command, reply, sizeof(reply)) < 0) {
        snprintf(err, errsize, "region %s: %s", reg->name, reply);
        return -1;
    }
    if (strcmp(reply, "ok") != 0) {
        snprintf(err, errsize, "region %s: control command '%s' failed: %s", reg->name, command,
                 reply);
        return -1;
    }
    return 0;
}

static int inject_mock(struct chaos_backend *b, const struct chaos_fault *f, bool heal,
                       char *err, size_t errsize)
{
    struct chaos_region *reg = &b->regions[f->region];
    char command[256];
    switch (f->action) {
    case CHAOS_REGION_DOWN:
        snprintf(command, sizeof(command), "%s", heal ? "all-up" : "all-down");
        break;
    case CHAOS_REGION_HANG:
        snprintf(command, sizeof(command), "rtt all %d", heal ? 0 : 20000);
        break;
    case CHAOS_BROKER_KILL:
        snprintf(command, sizeof(command), "broker-%s %d", heal ? "up" : "down", f->broker);
        break;
    case CHAOS_LATENCY:
        snprintf(command, sizeof(command), "rtt all %d", heal ? 0 : f->latency_ms);
        break;
    case CHAOS_PRODUCE_ERRORS:
        if (heal)
            snprintf(command, sizeof(command), "clear-errors");
        else
            snprintf(command, sizeof(command), "push-errors %s %s %d", b->scenario->topic,
                     f->error_name, f->error_count);
        break;
    default:
        snprintf(err, errsize, "action %s is not available on the mock backend",
                 chaos_action_name(f->action));
        return -1;
    }
    return mock_command(reg, command, err, errsize);
}

static int inject_kafka(struct chaos_backend *b, const struct chaos_fault *f, bool heal,
                        char *err, size_t errsize)
{
    char *name = (char *)b->regions[f->region].name;
    char broker[16], delay[16];
    snprintf(broker, sizeof(broker), "%d", f->broker);
    snprintf(delay, sizeof(delay), "%d", f->latency_ms);
    char *args[8] = {NULL};
    switch (f->action) {
    case CHAOS_REGION_DOWN:
        args[0] = heal ? "restart" : "kill";
        args[1] = name;
        break;
    case CHAOS_REGION_HANG:
        args[0] = heal ? "resume" : "pause";
        args[1] = name;
        break;
    case CHAOS_BROKER_KILL:
        args[0] = heal ? "restart" : "kill";
        args[1] = name;
        args[2] = broker;
        break;
    case CHAOS_PARTITION:
        args[0] = heal ? "heal" : "cut";
        args[1] = name;
        break;
    case CHAOS_LATENCY:
        args[0] = "netem";
        args[1] = name;
        args[2] = heal ? "--clear" : "--delay";
        args[3] = heal ? NULL : delay;
        break;
    default:
        snprintf(err, errsize, "action %s is not available on the kafka backend",
                 chaos_action_name(f->action));
        return -1;
    }
    int rc = kafka_tool(b, args, NULL);
    if (rc == 7 && f->action == CHAOS_LATENCY)
        return CHAOS_FAULT_UNAVAILABLE;
    if (rc != 0) {
        snprintf(err, errsize, "kafka-cluster %s %s failed with exit status %d; see %s/"
                 "kafka-cluster.log", args[0], name, rc, b->dir);
        return -1;
    }
    return 0;
}

int chaos_backend_inject(struct chaos_backend *b, const struct chaos_fault *f, bool heal,
                         char *err, size_t errsize)
{
    if (b->scenario->backend == CHAOS_BACKEND_KAFKA)
        return inject_kafka(b, f, heal, err, errsize);
    return inject_mock(b, f, heal, err, errsize);
}

void chaos_backend_stop(struct chaos_backend *b)
{
    for (int r = 0; r < 2; r++) {
        struct chaos_region *reg = &b->regions[r];
        if (reg->mock_pid <= 0)
            continue;
        kill(reg->mock_pid, SIGTERM);
        if (chaos_wait(reg->mock_pid, 30000) == -1) {
            kill(reg->mock_pid, SIGKILL);
            chaos_wait(reg->mock_pid, 10000);
        }
        reg->mock_pid = 0;
    }
    if (b->kafka_started) {
        char *args[] = {"down", NULL};
        if (kafka_tool(b, args, NULL) != 0)
            chaos_note("kafka-cluster down failed; run %s %s down by hand", b->kafka_env,
                       b->kafka_tool);
        b->kafka_started = false;
    }
}

bool chaos_netem_available(void)
{
    char name[64];
    snprintf(name, sizeof(name), "twinlane-chaos-probe-%d", (int)getpid());
    char *add[] = {"ip", "netns", "add", name, NULL};
    if (chaos_run_command(add, NULL, NULL, 10000, NULL) != 0)
        return false;
    char *up[] = {"ip", "netns", "exec", name, "ip", "link", "set", "lo", "up", NULL};
    char *netem[] = {"ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root",
                     "netem", "delay", "1ms", NULL};
    bool available = chaos_run_command(up, NULL, NULL, 10000, NULL) == 0 &&
                     chaos_run_command(netem, NULL, NULL, 10000, NULL) == 0;
    char *del[] = {"ip", "netns", "delete", name, NULL};
    chaos_run_command(del, NULL, NULL, 10000, NULL);
    return available;
}
