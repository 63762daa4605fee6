/*
 * Unit tests of the configuration loader: one test per rejected input, each checking the
 * status, the FILE:LINE: SETTING: prefix and the part of the message that names the fix.
 * Further tests cover a full valid file, the defaults and the look-up helpers.
 *
 * Most tests fill a fixed seven-line template, so the line in an expected message is the
 * template line of the group under test. The optional groups wal, breaker, heartbeat and
 * admin follow, in that order and one line each, only when a test sets them, so the first one
 * set is at line 8:
 *
 *   1 agent = { ... };
 *   2 listen = { ... };
 *   3 regions = (
 *   4   { east region },
 *   5   { west region }
 *   6 );
 *   7 topics = ( { ... } );
 *   8 wal = { ... };
 *   9 breaker = { ... };
 *  10 heartbeat = { ... };
 *  11 admin = { ... };
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "error.h"

#define AGENT_DEFAULT "id = \"a1\"; home_region = \"east\"; data_dir = \"/tmp/tl\";"
#define EAST_DEFAULT "name = \"east\"; bootstrap = \"embedded\";"
#define WEST_DEFAULT "name = \"west\"; bootstrap = \"embedded\";"
#define TOPIC_DEFAULT "name = \"events\";"

/* Contents of each group in the template. NULL selects the default above. */
struct parts {
    const char *agent;
    const char *listen;
    const char *east;
    const char *west;
    const char *topic;
    const char *wal;       /* NULL leaves the wal group out */
    const char *breaker;   /* NULL leaves the breaker group out */
    const char *heartbeat; /* NULL leaves the heartbeat group out */
    const char *admin;     /* NULL leaves the admin group out */
};

static struct tl_config cfg;
static char err[1024];

static int parse_text(const char *text)
{
    memset(err, 0, sizeof(err));
    return tl_config_parse(text, "test.conf", &cfg, err, sizeof(err));
}

static int parse_parts(struct parts p)
{
    char text[8192];

    int used = snprintf(text, sizeof(text),
                        "agent = { %s };\n"
                        "listen = { %s };\n"
                        "regions = (\n"
                        "  { %s },\n"
                        "  { %s }\n"
                        ");\n"
                        "topics = ( { %s } );\n",
                        p.agent ? p.agent : AGENT_DEFAULT, p.listen ? p.listen : "",
                        p.east ? p.east : EAST_DEFAULT, p.west ? p.west : WEST_DEFAULT,
                        p.topic ? p.topic : TOPIC_DEFAULT);
    if (p.wal)
        used += snprintf(text + used, sizeof(text) - (size_t)used, "wal = { %s };\n", p.wal);
    if (p.breaker)
        used += snprintf(text + used, sizeof(text) - (size_t)used, "breaker = { %s };\n",
                         p.breaker);
    if (p.heartbeat)
        used += snprintf(text + used, sizeof(text) - (size_t)used, "heartbeat = { %s };\n",
                         p.heartbeat);
    if (p.admin)
        snprintf(text + used, sizeof(text) - (size_t)used, "admin = { %s };\n", p.admin);
    return parse_text(text);
}

/* Fails with the whole message when err does not contain needle. */
static void assert_err_contains(const char *needle)
{
    if (strstr(err, needle))
        return;
    print_error("message: %s\nexpected to contain: %s\n", err, needle);
    fail();
}

static void assert_err_lacks(const char *needle)
{
    if (!strstr(err, needle))
        return;
    print_error("message: %s\nexpected not to contain: %s\n", err, needle);
    fail();
}

static int free_config(void **state)
{
    (void)state;
    tl_config_free(&cfg);
    return 0;
}

/* --- Valid files ------------------------------------------------------------------------ */

static void full_config_fills_every_field(void **state)
{
    (void)state;
    const char *text =
        "agent = {\n"
        "  id = \"node-1.a_b\"; home_region = \"west\"; data_dir = \"/var/lib/tl\";\n"
        "  log_level = \"debug\"; shutdown_timeout_ms = 2500; start_wait_ms = 12000;\n"
        "  max_inflight_events = 5000; max_inflight_bytes = 68719476736L; ack = \"one\";\n"
        "  when_no_region = \"reject\";\n"
        "};\n"
        "breaker = {\n"
        "  consecutive_failures = 7; failure_rate_percent = 40; rate_window_ms = 20000;\n"
        "  min_volume = 50; stall_timeout_ms = 2000; open_ms = 500; open_max_ms = 60000;\n"
        "  probes_to_close = 3; rto_target_ms = 4000; backfill_events_per_sec = 0;\n"
        "};\n"
        "heartbeat = { topic = \"tl.probes\"; interval_ms = 250; };\n"
        "wal = {\n"
        "  dir = \"/srv/tl-wal\"; fsync = \"interval\"; fsync_interval_ms = 250;\n"
        "  segment_bytes = 16777216; max_bytes = 17592186044416L; when_full = \"shed\";\n"
        "};\n"
        "listen = {\n"
        "  unix = \"/run/tl.sock\"; tcp = \"127.0.0.1:7411\";\n"
        "  max_frame_bytes = 2097152; max_event_bytes = 65536; max_connections = 32;\n"
        "};\n"
        "regions = (\n"
        "  { name = \"east\"; bootstrap = \"embedded\"; embedded_brokers = 4;\n"
        "    properties = [ \"linger.ms=5\", \"compression.type=lz4\" ]; },\n"
        "  { name = \"west\"; bootstrap = \"k1.example:9092,[2001:db8::1]:9093\";\n"
        "    properties = [ \"linger.ms=10\" ]; }\n"
        ");\n"
        "topics = ( { name = \"orders\"; partitions = 12; replication_factor = 4; },\n"
        "           { name = \"audit.log\"; } );\n";

    assert_int_equal(parse_text(text), 0);
    assert_string_equal(cfg.path, "test.conf");
    assert_string_equal(cfg.agent_id, "node-1.a_b");
    assert_string_equal(cfg.home_region, "west");
    assert_string_equal(cfg.data_dir, "/var/lib/tl");
    assert_int_equal(cfg.log_level, TL_LOG_DEBUG);
    assert_int_equal(cfg.shutdown_timeout_ms, 2500);
    assert_int_equal(cfg.start_wait_ms, 12000);
    assert_int_equal(cfg.max_inflight_events, 5000);
    assert_int_equal(cfg.max_inflight_bytes, 68719476736ULL);
    assert_int_equal(cfg.ack_policy, TL_ACK_ONE);
    assert_int_equal(cfg.when_no_region, TL_NO_REGION_REJECT);
    assert_int_equal(cfg.breaker_consecutive_failures, 7);
    assert_int_equal(cfg.breaker_failure_rate_percent, 40);
    assert_int_equal(cfg.breaker_rate_window_ms, 20000);
    assert_int_equal(cfg.breaker_min_volume, 50);
    assert_int_equal(cfg.breaker_stall_timeout_ms, 2000);
    assert_int_equal(cfg.breaker_open_ms, 500);
    assert_int_equal(cfg.breaker_open_max_ms, 60000);
    assert_int_equal(cfg.breaker_probes_to_close, 3);
    assert_int_equal(cfg.breaker_rto_target_ms, 4000);
    assert_int_equal(cfg.backfill_events_per_sec, 0);
    assert_string_equal(cfg.heartbeat_topic, "tl.probes");
    assert_int_equal(cfg.heartbeat_interval_ms, 250);
    assert_string_equal(cfg.wal_dir, "/srv/tl-wal");
    assert_int_equal(cfg.wal_fsync, TL_FSYNC_INTERVAL);
    assert_int_equal(cfg.wal_fsync_interval_ms, 250);
    assert_int_equal(cfg.wal_segment_bytes, 16777216);
    assert_int_equal(cfg.wal_max_bytes, 17592186044416ULL);
    assert_int_equal(cfg.wal_when_full, TL_WHEN_FULL_SHED);
    assert_string_equal(cfg.unix_path, "/run/tl.sock");
    assert_string_equal(cfg.tcp_host, "127.0.0.1");
    assert_string_equal(cfg.tcp_port, "7411");
    assert_int_equal(cfg.max_frame_bytes, 2097152);
    assert_int_equal(cfg.max_event_bytes, 65536);
    assert_int_equal(cfg.max_connections, 32);

    assert_string_equal(cfg.regions[0].name, "east");
    assert_true(cfg.regions[0].embedded);
    assert_null(cfg.regions[0].bootstrap);
    assert_int_equal(cfg.regions[0].embedded_brokers, 4);
    assert_int_equal(cfg.regions[0].property_count, 2);
    assert_string_equal(cfg.regions[0].property_names[1], "compression.type");
    assert_string_equal(cfg.regions[0].property_values[1], "lz4");
    assert_string_equal(cfg.regions[1].name, "west");
    assert_false(cfg.regions[1].embedded);
    assert_string_equal(cfg.regions[1].bootstrap, "k1.example:9092,[2001:db8::1]:9093");
    assert_int_equal(cfg.regions[1].property_count, 1);
    assert_string_equal(cfg.regions[1].property_names[0], "linger.ms");
    assert_string_equal(cfg.regions[1].property_values[0], "10");

    assert_int_equal(cfg.topic_count, 2);
    assert_string_equal(cfg.topics[0].name, "orders");
    assert_int_equal(cfg.topics[0].partitions, 12);
    assert_int_equal(cfg.topics[0].replication_factor, 4);
    assert_string_equal(cfg.topics[1].name, "audit.log");
}

static void minimal_config_gets_defaults(void **state)
{
    (void)state;
    const char *text =
        "agent = { id = \"a1\"; home_region = \"east\"; data_dir = \"/tmp/tl\"; };\n"
        "regions = ( { name = \"east\"; bootstrap = \"embedded\"; },\n"
        "            { name = \"west\"; bootstrap = \"embedded\"; } );\n"
        "topics = ( { name = \"events\"; } );\n";

    assert_int_equal(parse_text(text), 0);
    assert_int_equal(cfg.log_level, TL_LOG_INFO);
    assert_int_equal(cfg.shutdown_timeout_ms, 10000);
    assert_int_equal(cfg.start_wait_ms, 5000);
    assert_int_equal(cfg.max_inflight_events, 100000);
    assert_int_equal(cfg.max_inflight_bytes, 256 * 1024 * 1024);
    assert_string_equal(cfg.unix_path, "/tmp/tl/agent.sock");
    assert_null(cfg.tcp_host);
    assert_null(cfg.tcp_port);
    assert_int_equal(cfg.max_frame_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg.max_event_bytes, 1024 * 1024);
    assert_int_equal(cfg.max_connections, 256);
    assert_int_equal(cfg.ack_policy, TL_ACK_ALL);
    assert_string_equal(cfg.wal_dir, "/tmp/tl/wal");
    assert_int_equal(cfg.wal_fsync, TL_FSYNC_ALWAYS);
    assert_int_equal(cfg.wal_fsync_interval_ms, 100);
    assert_int_equal(cfg.wal_segment_bytes, 64 * 1024 * 1024);
    assert_int_equal(cfg.wal_max_bytes, 8ULL * 1024 * 1024 * 1024);
    assert_int_equal(cfg.wal_when_full, TL_WHEN_FULL_REJECT);
    assert_int_equal(cfg.when_no_region, TL_NO_REGION_SPOOL);
    assert_int_equal(cfg.breaker_consecutive_failures, 5);
    assert_int_equal(cfg.breaker_failure_rate_percent, 50);
    assert_int_equal(cfg.breaker_rate_window_ms, 10000);
    assert_int_equal(cfg.breaker_min_volume, 20);
    assert_int_equal(cfg.breaker_stall_timeout_ms, 1500);
    assert_int_equal(cfg.breaker_open_ms, 1000);
    assert_int_equal(cfg.breaker_open_max_ms, 30000);
    assert_int_equal(cfg.breaker_probes_to_close, 2);
    assert_int_equal(cfg.breaker_rto_target_ms, 3000);
    assert_int_equal(cfg.backfill_events_per_sec, 50000);
    assert_string_equal(cfg.heartbeat_topic, "twinlane.heartbeats");
    assert_int_equal(cfg.heartbeat_interval_ms, 1000);
    assert_int_equal(cfg.regions[0].embedded_brokers, 3);
    assert_int_equal(cfg.regions[0].property_count, 0);
    assert_int_equal(cfg.topics[0].partitions, 6);
    assert_int_equal(cfg.topics[0].replication_factor, 3);
}

static void replication_default_follows_smallest_cluster(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = "name = \"west\"; bootstrap = \"embedded\"; "
                                 "embedded_brokers = 2;"}),
                     0);
    assert_int_equal(cfg.topics[0].replication_factor, 2);
}

static void replication_default_without_embedded(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .east = "name = \"east\"; bootstrap = \"e1:9092\";",
                         .west = "name = \"west\"; bootstrap = \"w1:9092\";"}),
                     0);
    assert_int_equal(cfg.topics[0].replication_factor, 3);
}

static void event_default_shrinks_with_frame(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "max_frame_bytes = 4096;"}), 0);
    assert_int_equal(cfg.max_event_bytes, 4096);
}

static void tcp_accepts_ipv6_loopback(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"[::1]:7411\";"}), 0);
    assert_string_equal(cfg.tcp_host, "::1");
    assert_string_equal(cfg.tcp_port, "7411");
}

static void tcp_accepts_localhost(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"localhost:1\";"}), 0);
    assert_string_equal(cfg.tcp_host, "localhost");
}

static void tcp_accepts_whole_loopback_net(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"127.9.8.7:65535\";"}), 0);
    assert_string_equal(cfg.tcp_host, "127.9.8.7");
}

static void unix_path_at_limit_accepted(void **state)
{
    (void)state;
    char listen[256];
    char path[108];
    memset(path, 'p', 107);
    path[0] = '/';
    path[107] = '\0';
    snprintf(listen, sizeof(listen), "unix = \"%s\";", path);

    assert_int_equal(parse_parts((struct parts){.listen = listen}), 0);
    assert_int_equal(strlen(cfg.unix_path), 107);
}

static void ack_accepts_each_policy(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum tl_ack_policy policy;
    } cases[] = {
        {AGENT_DEFAULT " ack = \"all\";", TL_ACK_ALL},
        {AGENT_DEFAULT " ack = \"one\";", TL_ACK_ONE},
        {AGENT_DEFAULT " ack = \"local\";", TL_ACK_LOCAL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse_parts((struct parts){.agent = cases[i].text}), 0);
        assert_int_equal(cfg.ack_policy, cases[i].policy);
        tl_config_free(&cfg);
    }
}

static void wal_empty_group_gets_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = ""}), 0);
    assert_string_equal(cfg.wal_dir, "/tmp/tl/wal");
    assert_int_equal(cfg.wal_fsync, TL_FSYNC_ALWAYS);
    assert_int_equal(cfg.wal_fsync_interval_ms, 100);
    assert_int_equal(cfg.wal_segment_bytes, 64 * 1024 * 1024);
    assert_int_equal(cfg.wal_max_bytes, 8ULL * 1024 * 1024 * 1024);
    assert_int_equal(cfg.wal_when_full, TL_WHEN_FULL_REJECT);
}

static void wal_fsync_off_accepted(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "fsync = \"off\";"}), 0);
    assert_int_equal(cfg.wal_fsync, TL_FSYNC_OFF);
}

static void wal_fsync_interval_bounds_accepted(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .wal = "fsync = \"interval\"; fsync_interval_ms = 1;"}),
                     0);
    assert_int_equal(cfg.wal_fsync_interval_ms, 1);
    tl_config_free(&cfg);

    assert_int_equal(parse_parts((struct parts){
                         .wal = "fsync = \"interval\"; fsync_interval_ms = 60000;"}),
                     0);
    assert_int_equal(cfg.wal_fsync_interval_ms, 60000);
}

static void wal_interval_mode_keeps_default(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "fsync = \"interval\";"}), 0);
    assert_int_equal(cfg.wal_fsync, TL_FSYNC_INTERVAL);
    assert_int_equal(cfg.wal_fsync_interval_ms, 100);
}

static void wal_segment_fits_event_exactly(void **state)
{
    (void)state;
    /* 1048576 + 4096: one event of the default max_event_bytes plus its headers. */
    assert_int_equal(parse_parts((struct parts){.wal = "segment_bytes = 1052672;"}), 0);
    assert_int_equal(cfg.wal_segment_bytes, 1052672);
}

static void wal_segment_follows_small_event(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "max_event_bytes = 4096;",
                                                .wal = "segment_bytes = 1048576;"}),
                     0);
    assert_int_equal(cfg.wal_segment_bytes, 1048576);
}

static void wal_segment_bounds_accepted(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .wal = "segment_bytes = 1073741824; max_bytes = 2147483648L;"}),
                     0);
    assert_int_equal(cfg.wal_segment_bytes, 1073741824);
    assert_int_equal(cfg.wal_max_bytes, 2147483648ULL);
}

static void wal_max_bytes_two_segments_accepted(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "max_bytes = 134217728;"}), 0);
    assert_int_equal(cfg.wal_max_bytes, 134217728);
}

static void when_no_region_accepts_each_action(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " when_no_region = \"spool\";"}),
                     0);
    assert_int_equal(cfg.when_no_region, TL_NO_REGION_SPOOL);
    tl_config_free(&cfg);

    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " when_no_region = \"reject\";"}),
                     0);
    assert_int_equal(cfg.when_no_region, TL_NO_REGION_REJECT);
}

static void breaker_empty_group_gets_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.breaker = "", .heartbeat = ""}), 0);
    assert_int_equal(cfg.breaker_consecutive_failures, 5);
    assert_int_equal(cfg.breaker_stall_timeout_ms, 1500);
    assert_int_equal(cfg.breaker_open_max_ms, 30000);
    assert_int_equal(cfg.breaker_rto_target_ms, 3000);
    assert_int_equal(cfg.backfill_events_per_sec, 50000);
    assert_string_equal(cfg.heartbeat_topic, "twinlane.heartbeats");
    assert_int_equal(cfg.heartbeat_interval_ms, 1000);
}

static void breaker_lower_bounds_accepted(void **state)
{
    (void)state;
    /* rto_target_ms = 1100 is the lowest target that stall_timeout_ms = 100 can meet. */
    assert_int_equal(parse_parts((struct parts){
                         .breaker = "consecutive_failures = 1; failure_rate_percent = 1; "
                                    "rate_window_ms = 1000; min_volume = 1; "
                                    "stall_timeout_ms = 100; open_ms = 100; open_max_ms = 100; "
                                    "probes_to_close = 1; rto_target_ms = 1100; "
                                    "backfill_events_per_sec = 0;",
                         .heartbeat = "interval_ms = 100;"}),
                     0);
    assert_int_equal(cfg.breaker_consecutive_failures, 1);
    assert_int_equal(cfg.breaker_failure_rate_percent, 1);
    assert_int_equal(cfg.breaker_rate_window_ms, 1000);
    assert_int_equal(cfg.breaker_min_volume, 1);
    assert_int_equal(cfg.breaker_stall_timeout_ms, 100);
    assert_int_equal(cfg.breaker_open_ms, 100);
    assert_int_equal(cfg.breaker_open_max_ms, 100);
    assert_int_equal(cfg.breaker_probes_to_close, 1);
    assert_int_equal(cfg.breaker_rto_target_ms, 1100);
    assert_int_equal(cfg.backfill_events_per_sec, 0);
    assert_int_equal(cfg.heartbeat_interval_ms, 100);
}

static void breaker_upper_bounds_accepted(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .breaker = "consecutive_failures = 1000; failure_rate_percent = 100; "
                                    "rate_window_ms = 600000; min_volume = 1000000; "
                                    "stall_timeout_ms = 599000; open_ms = 600000; "
                                    "open_max_ms = 3600000; probes_to_close = 100; "
                                    "rto_target_ms = 600000; "
                                    "backfill_events_per_sec = 10000000;",
                         .heartbeat = "interval_ms = 60000;"}),
                     0);
    assert_int_equal(cfg.breaker_consecutive_failures, 1000);
    assert_int_equal(cfg.breaker_failure_rate_percent, 100);
    assert_int_equal(cfg.breaker_rate_window_ms, 600000);
    assert_int_equal(cfg.breaker_min_volume, 1000000);
    assert_int_equal(cfg.breaker_stall_timeout_ms, 599000);
    assert_int_equal(cfg.breaker_open_ms, 600000);
    assert_int_equal(cfg.breaker_open_max_ms, 3600000);
    assert_int_equal(cfg.breaker_probes_to_close, 100);
    assert_int_equal(cfg.breaker_rto_target_ms, 600000);
    assert_int_equal(cfg.backfill_events_per_sec, 10000000);
    assert_int_equal(cfg.heartbeat_interval_ms, 60000);
}

static void breaker_stall_meets_rto_exactly(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .breaker = "stall_timeout_ms = 2000; rto_target_ms = 3000;"}),
                     0);
    assert_int_equal(cfg.breaker_stall_timeout_ms, 2000);
    assert_int_equal(cfg.breaker_rto_target_ms, 3000);
}

static void breaker_open_max_equal_to_open(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .breaker = "open_ms = 30000; open_max_ms = 30000;"}),
                     0);
    assert_int_equal(cfg.breaker_open_ms, 30000);
    assert_int_equal(cfg.breaker_open_max_ms, 30000);
}

static void heartbeat_interval_just_below_rto(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .breaker = "rto_target_ms = 2500;",
                         .heartbeat = "interval_ms = 2499;"}),
                     0);
    assert_int_equal(cfg.heartbeat_interval_ms, 2499);
}

static void region_and_topic_lookup(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = "name = \"t1\"; }, { name = \"t2\";"}),
                     0);
    assert_int_equal(tl_config_region_index(&cfg, "east"), 0);
    assert_int_equal(tl_config_region_index(&cfg, "west"), 1);
    assert_int_equal(tl_config_region_index(&cfg, "north"), -1);
    assert_int_equal(tl_config_topic_index(&cfg, "t2"), 1);
    assert_int_equal(tl_config_topic_index(&cfg, "t3"), -1);
}

static void failed_parse_leaves_config_empty(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = "name = \"..\";"}), TL_EINVAL);
    assert_null(cfg.agent_id);
    assert_null(cfg.regions[0].name);
    assert_null(cfg.topics);
    assert_int_equal(cfg.topic_count, 0);
}

/* --- Files ------------------------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void load_reads_file_and_include(void **state)
{
    (void)state;
    char dir[] = "/tmp/tl-config-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char main_path[128];
    char include_path[128];
    snprintf(main_path, sizeof(main_path), "%s/agent.conf", dir);
    snprintf(include_path, sizeof(include_path), "%s/topics.conf", dir);
    write_file(include_path, "topics = ( { name = \"included\"; } );\n");
    write_file(main_path,
               "agent = { " AGENT_DEFAULT " };\n"
               "regions = ( { " EAST_DEFAULT " }, { " WEST_DEFAULT " } );\n"
               "@include \"topics.conf\"\n");

    int rc = tl_config_load(main_path, &cfg, err, sizeof(err));
    unlink(include_path);
    unlink(main_path);
    rmdir(dir);

    assert_int_equal(rc, 0);
    assert_string_equal(cfg.path, main_path);
    assert_string_equal(cfg.topics[0].name, "included");
}

static void load_missing_file_not_found(void **state)
{
    (void)state;
    assert_int_equal(tl_config_load("/nonexistent/agent.conf", &cfg, err, sizeof(err)),
                     TL_ENOTFOUND);
    assert_err_contains("/nonexistent/agent.conf: ");
    assert_err_contains("No such file or directory");
}

static void load_directory_is_io_error(void **state)
{
    (void)state;
    assert_int_equal(tl_config_load("/tmp", &cfg, err, sizeof(err)), TL_EIO);
    assert_err_contains("/tmp: not a regular file");
}

static void load_reports_path_on_syntax_error(void **state)
{
    (void)state;
    char path[] = "/tmp/tl-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, "agent = {\n  id = ;\n};\n");

    int rc = tl_config_load(path, &cfg, err, sizeof(err));
    unlink(path);

    assert_int_equal(rc, TL_EINVAL);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s:2: syntax error", path);
    assert_err_contains(prefix);
}

/* --- Syntax and structure --------------------------------------------------------------- */

static void syntax_error_names_line(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = {\n  id = \"a1\"\n  home_region = ;\n};\n"), TL_EINVAL);
    assert_err_contains("test.conf:3: syntax error");
}

static void unknown_top_level_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agnet = { };\n"), TL_EINVAL);
    assert_err_contains("test.conf:1: agnet: unknown setting");
    assert_err_contains("agent, wal, breaker, heartbeat, listen, regions, topics");
}

static void agent_group_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_text("topics = ( );\n"), TL_EINVAL);
    assert_err_contains("test.conf: agent: missing");
}

static void agent_not_a_group(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = 5;\n"), TL_EINVAL);
    assert_err_contains("test.conf:1: agent: expected a group { ... }, found an integer (5)");
}

/* --- agent ------------------------------------------------------------------------------ */

static void agent_unknown_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.agent = AGENT_DEFAULT " log_lvl = \"info\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.log_lvl: unknown setting");
    assert_err_contains("id, home_region, data_dir, log_level");
}

static void agent_id_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = "home_region = \"east\"; data_dir = \"/tmp/tl\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.id: missing");
}

static void agent_id_wrong_type(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = "id = 7; home_region = \"east\"; data_dir = \"/tmp/tl\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.id: expected a string");
    assert_err_contains("found an integer (7)");
}

static void agent_id_invalid_character(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = "id = \"a/b\"; home_region = \"east\"; data_dir = \"/x\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.id: \"a/b\" contains '/' at position 2");
    assert_err_contains("[A-Za-z0-9._-]");
}

static void agent_id_too_long(void **state)
{
    (void)state;
    char agent[256];
    char id[66];
    memset(id, 'i', 65);
    id[65] = '\0';
    snprintf(agent, sizeof(agent), "id = \"%s\"; home_region = \"east\"; data_dir = \"/x\";",
             id);

    assert_int_equal(parse_parts((struct parts){.agent = agent}), TL_EINVAL);
    assert_err_contains("agent.id: ");
    assert_err_contains("is 65 characters long; the maximum is 64");
}

static void agent_id_empty(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = "id = \"\"; home_region = \"east\"; data_dir = \"/x\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.id: empty");
}

static void home_region_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.agent = "id = \"a1\"; data_dir = \"/x\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.home_region: missing");
}

static void home_region_not_a_region(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = "id = \"a1\"; home_region = \"north\"; data_dir = \"/x\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.home_region: \"north\" is not one of the regions "
                        "(\"east\", \"west\")");
}

static void data_dir_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = "id = \"a1\"; home_region = \"east\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.data_dir: missing");
}

static void data_dir_empty(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = "id = \"a1\"; home_region = \"east\"; data_dir = \"\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.data_dir: empty");
}

static void log_level_unknown_name(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.agent = AGENT_DEFAULT " log_level = \"trace\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.log_level: \"trace\" is not a log level");
    assert_err_contains("\"error\", \"warn\", \"info\" or \"debug\"");
}

static void shutdown_timeout_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " shutdown_timeout_ms = 600001;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.shutdown_timeout_ms: 600001 is out of range; "
                        "accepted values are 0 to 600000");
}

static void start_wait_below_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " start_wait_ms = 999;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.start_wait_ms: 999 is out of range; "
                        "accepted values are 1000 to 30000");
}

static void shutdown_timeout_negative(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " shutdown_timeout_ms = -1;"}),
                     TL_EINVAL);
    assert_err_contains("agent.shutdown_timeout_ms: -1 is out of range");
}

static void shutdown_timeout_float_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " shutdown_timeout_ms = 1.5;"}),
                     TL_EINVAL);
    assert_err_contains("agent.shutdown_timeout_ms: expected an integer, found a "
                        "floating-point number (1.5)");
}

static void inflight_events_zero_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " max_inflight_events = 0;"}),
                     TL_EINVAL);
    assert_err_contains("agent.max_inflight_events: 0 is out of range; accepted values are 1 "
                        "to 10000000");
}

static void inflight_bytes_below_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " max_inflight_bytes = 1048575;"}),
                     TL_EINVAL);
    assert_err_contains("agent.max_inflight_bytes: 1048575 is out of range; accepted values "
                        "are 1048576 (1 MiB) to 68719476736 (64 GiB) bytes");
}

static void inflight_bytes_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " max_inflight_bytes = 68719476737L;"}),
                     TL_EINVAL);
    assert_err_contains("agent.max_inflight_bytes: 68719476737 is out of range");
}

static void wide_integer_needs_suffix(void **state)
{
    (void)state;
    /* libconfig 1.5 would read 4296015872 as 1048576, a valid value. */
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " max_inflight_bytes = 4296015872;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.max_inflight_bytes: 4296015872 does not fit in "
                        "32 bits");
    assert_err_contains("write 4296015872L");
}

static void ack_unknown_policy(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.agent = AGENT_DEFAULT " ack = \"quorum\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.ack: \"quorum\" is not an acknowledgement policy");
    assert_err_contains("use \"all\", \"one\" or \"local\"");
}

static void ack_wrong_type(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.agent = AGENT_DEFAULT " ack = 1;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.ack: expected a string");
    assert_err_contains("found an integer (1)");
}

/* --- wal -------------------------------------------------------------------------------- */

static void wal_not_a_group(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "wal = \"/var/lib/wal\";\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: wal: expected a group { ... }, found a string");
}

static void wal_unknown_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "fsync_ms = 100;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.fsync_ms: unknown setting");
    assert_err_contains("dir, fsync, fsync_interval_ms, segment_bytes, max_bytes, when_full");
}

static void wal_dir_empty(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "dir = \"\";"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.dir: empty");
    assert_err_contains("remove the setting to use \"<data_dir>/wal\"");
}

static void wal_dir_wrong_type(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "dir = [ \"/a\" ];"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.dir: expected a string");
    assert_err_contains("found an array");
}

static void wal_fsync_unknown_mode(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "fsync = \"sometimes\";"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.fsync: \"sometimes\" is not an fsync mode");
    assert_err_contains("use \"always\", \"interval\" or \"off\"");
}

static void wal_fsync_boolean_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "fsync = true;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.fsync: expected a string");
    assert_err_contains("found a boolean (true)");
}

static void wal_fsync_interval_zero(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .wal = "fsync = \"interval\"; fsync_interval_ms = 0;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: wal.fsync_interval_ms: 0 is out of range; accepted "
                        "values are 1 to 60000");
}

static void wal_fsync_interval_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .wal = "fsync = \"interval\"; fsync_interval_ms = 60001;"}),
                     TL_EINVAL);
    assert_err_contains("wal.fsync_interval_ms: 60001 is out of range");
}

static void wal_fsync_interval_without_mode(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "fsync_interval_ms = 50;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: wal.fsync_interval_ms: set, but wal.fsync is "
                        "\"always\" (the default)");
    assert_err_contains("remove it or set fsync = \"interval\"");
}

static void wal_fsync_interval_with_off(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .wal = "fsync = \"off\"; fsync_interval_ms = 50;"}),
                     TL_EINVAL);
    assert_err_contains("wal.fsync_interval_ms: set, but wal.fsync is \"off\";");
    assert_err_lacks("(the default)");
}

static void wal_segment_below_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "segment_bytes = 1048575;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: wal.segment_bytes: 1048575 is out of range; accepted "
                        "values are 1048576 (1 MiB) to 1073741824 (1 GiB) bytes");
}

static void wal_segment_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "segment_bytes = 1073741825;"}),
                     TL_EINVAL);
    assert_err_contains("wal.segment_bytes: 1073741825 is out of range");
}

static void wal_segment_smaller_than_event(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "max_event_bytes = 2097152;",
                                                .wal = "segment_bytes = 2097152;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: wal.segment_bytes: 2097152 (2 MiB) is too small for "
                        "listen.max_event_bytes 2097152 (2 MiB)");
    assert_err_contains("plus 4096 bytes of headers");
    assert_err_contains("at least 2101248");
}

static void wal_default_segment_smaller_than_event(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .listen = "max_frame_bytes = 67108864; max_event_bytes = 67108864;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: listen.max_event_bytes: 67108864 (64 MiB) does not fit "
                        "in the default wal.segment_bytes 67108864 (64 MiB)");
    assert_err_contains("set wal.segment_bytes to at least 67112960");
}

static void wal_max_bytes_below_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "max_bytes = 0;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.max_bytes: 0 is out of range; accepted values are "
                        "2097152 (2 MiB) to 17592186044416 (16 TiB) bytes");
}

static void wal_max_bytes_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "max_bytes = 17592186044417L;"}),
                     TL_EINVAL);
    assert_err_contains("wal.max_bytes: 17592186044417 is out of range");
}

static void wal_max_bytes_below_two_segments(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .wal = "segment_bytes = 16777216; max_bytes = 33554431;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: wal.max_bytes: 33554431 is less than twice "
                        "wal.segment_bytes 16777216 (16 MiB)");
    assert_err_contains("raise max_bytes to at least 33554432 or lower segment_bytes");
}

static void wal_max_bytes_below_default_segments(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "max_bytes = 67108864;"}), TL_EINVAL);
    assert_err_contains("wal.max_bytes: 67108864 (64 MiB) is less than twice "
                        "wal.segment_bytes 67108864 (64 MiB)");
}

static void wal_max_bytes_needs_suffix(void **state)
{
    (void)state;
    /* libconfig 1.5 would read 8589934592 (8 GiB) as 0. */
    assert_int_equal(parse_parts((struct parts){.wal = "max_bytes = 8589934592;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.max_bytes: 8589934592 does not fit in 32 bits");
    assert_err_contains("write 8589934592L");
}

static void wal_when_full_unknown(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.wal = "when_full = \"block\";"}), TL_EINVAL);
    assert_err_contains("test.conf:8: wal.when_full: \"block\" is not an action for a full "
                        "WAL; use \"reject\" or \"shed\"");
}

static void when_no_region_unknown_action(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .agent = AGENT_DEFAULT " when_no_region = \"drop\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:1: agent.when_no_region: \"drop\" is not an action for "
                        "when no region is available; use \"spool\" or \"reject\"");
}

/* --- breaker ---------------------------------------------------------------------------- */

/* Parses breaker = { text }, which lands on template line 8, and expects TL_EINVAL and expected. */
static void assert_breaker_rejected(const char *text, const char *expected)
{
    assert_int_equal(parse_parts((struct parts){.breaker = text}), TL_EINVAL);
    assert_err_contains(expected);
}

static void breaker_not_a_group(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "breaker = ( );\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: breaker: expected a group { ... }, found a list");
}

static void breaker_unknown_setting(void **state)
{
    (void)state;
    assert_breaker_rejected("open_timeout_ms = 1000;",
                            "test.conf:8: breaker.open_timeout_ms: unknown setting");
    assert_err_contains("consecutive_failures, failure_rate_percent, rate_window_ms, "
                        "min_volume, stall_timeout_ms, open_ms, open_max_ms, probes_to_close, "
                        "rto_target_ms, backfill_events_per_sec");
}

static void breaker_value_wrong_type(void **state)
{
    (void)state;
    assert_breaker_rejected("failure_rate_percent = 0.5;",
                            "test.conf:8: breaker.failure_rate_percent: expected an integer, "
                            "found a floating-point number (0.5)");
}

static void breaker_failures_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("consecutive_failures = 0;",
                            "test.conf:8: breaker.consecutive_failures: 0 is out of range; "
                            "accepted values are 1 to 1000");
}

static void breaker_failures_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("consecutive_failures = 1001;",
                            "breaker.consecutive_failures: 1001 is out of range");
}

static void breaker_rate_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("failure_rate_percent = 0;",
                            "test.conf:8: breaker.failure_rate_percent: 0 is out of range; "
                            "accepted values are 1 to 100");
}

static void breaker_rate_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("failure_rate_percent = 101;",
                            "breaker.failure_rate_percent: 101 is out of range");
}

static void breaker_window_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("rate_window_ms = 999;",
                            "test.conf:8: breaker.rate_window_ms: 999 is out of range; "
                            "accepted values are 1000 to 600000");
}

static void breaker_window_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("rate_window_ms = 600001;",
                            "breaker.rate_window_ms: 600001 is out of range");
}

static void breaker_volume_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("min_volume = 0;",
                            "test.conf:8: breaker.min_volume: 0 is out of range; accepted "
                            "values are 1 to 1000000");
}

static void breaker_volume_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("min_volume = 1000001;",
                            "breaker.min_volume: 1000001 is out of range");
}

static void breaker_stall_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("stall_timeout_ms = 99;",
                            "test.conf:8: breaker.stall_timeout_ms: 99 is out of range; "
                            "accepted values are 100 to 600000");
}

static void breaker_stall_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("stall_timeout_ms = 600001;",
                            "breaker.stall_timeout_ms: 600001 is out of range");
}

static void breaker_open_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("open_ms = 99;",
                            "test.conf:8: breaker.open_ms: 99 is out of range; accepted "
                            "values are 100 to 600000");
}

static void breaker_open_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("open_ms = 600001;", "breaker.open_ms: 600001 is out of range");
}

static void breaker_open_max_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("open_max_ms = 99;",
                            "test.conf:8: breaker.open_max_ms: 99 is out of range; accepted "
                            "values are 100 to 3600000");
}

static void breaker_open_max_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("open_max_ms = 3600001;",
                            "breaker.open_max_ms: 3600001 is out of range");
}

static void breaker_probes_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("probes_to_close = 0;",
                            "test.conf:8: breaker.probes_to_close: 0 is out of range; "
                            "accepted values are 1 to 100");
}

static void breaker_probes_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("probes_to_close = 101;",
                            "breaker.probes_to_close: 101 is out of range");
}

static void breaker_rto_below_range(void **state)
{
    (void)state;
    assert_breaker_rejected("rto_target_ms = 499;",
                            "test.conf:8: breaker.rto_target_ms: 499 is out of range; "
                            "accepted values are 500 to 600000");
}

static void breaker_rto_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("rto_target_ms = 600001;",
                            "breaker.rto_target_ms: 600001 is out of range");
}

static void breaker_backfill_negative(void **state)
{
    (void)state;
    assert_breaker_rejected("backfill_events_per_sec = -1;",
                            "test.conf:8: breaker.backfill_events_per_sec: -1 is out of "
                            "range; accepted values are 0 to 10000000");
}

static void breaker_backfill_above_range(void **state)
{
    (void)state;
    assert_breaker_rejected("backfill_events_per_sec = 10000001;",
                            "breaker.backfill_events_per_sec: 10000001 is out of range");
}

static void breaker_open_max_below_open(void **state)
{
    (void)state;
    assert_breaker_rejected("open_ms = 5000; open_max_ms = 4999;",
                            "test.conf:8: breaker.open_max_ms: 4999 is less than "
                            "breaker.open_ms = 5000, but the OPEN interval starts at open_ms");
    assert_err_contains("raise open_max_ms to at least 5000 or lower open_ms");
    assert_err_lacks("(the default)");
}

static void breaker_open_max_below_default_open(void **state)
{
    (void)state;
    assert_breaker_rejected("open_max_ms = 500;",
                            "test.conf:8: breaker.open_max_ms: 500 is less than "
                            "breaker.open_ms = 1000 (the default)");
}

static void breaker_open_above_default_max(void **state)
{
    (void)state;
    assert_breaker_rejected("open_ms = 60000;",
                            "test.conf:8: breaker.open_ms: 60000 is greater than "
                            "breaker.open_max_ms = 30000 (the default)");
    assert_err_contains("lower open_ms to at most 30000 or set open_max_ms to at least 60000");
}

static void breaker_stall_misses_rto(void **state)
{
    (void)state;
    assert_breaker_rejected("stall_timeout_ms = 2500;",
                            "test.conf:8: breaker.stall_timeout_ms: 2500 cannot meet "
                            "breaker.rto_target_ms = 3000 (the default), because a hung region "
                            "is detected after stall_timeout_ms and failover takes up to "
                            "1000 ms more; lower stall_timeout_ms to at most 2000 or raise "
                            "rto_target_ms to at least 3500");
}

static void breaker_rto_misses_default_stall(void **state)
{
    (void)state;
    assert_breaker_rejected("rto_target_ms = 2000;",
                            "test.conf:8: breaker.rto_target_ms: 2000 cannot be met with "
                            "breaker.stall_timeout_ms = 1500 (the default), because a hung "
                            "region is detected after stall_timeout_ms");
    assert_err_contains("lower stall_timeout_ms to at most 1000 or raise rto_target_ms to at "
                        "least 2500");
}

static void breaker_rto_check_names_stall_line(void **state)
{
    (void)state;
    /* rto_target_ms sits on line 8 and stall_timeout_ms on line 9. */
    assert_breaker_rejected("rto_target_ms = 4000;\n stall_timeout_ms = 3500;",
                            "test.conf:9: breaker.stall_timeout_ms: 3500 cannot meet "
                            "breaker.rto_target_ms = 4000, because");
    assert_err_lacks("(the default)");
    assert_err_contains("lower stall_timeout_ms to at most 3000 or raise rto_target_ms to at "
                        "least 4500");
}

static void breaker_rto_below_any_stall(void **state)
{
    (void)state;
    /* No stall_timeout_ms of 100 or more meets a target below 1100. */
    assert_breaker_rejected("stall_timeout_ms = 100; rto_target_ms = 800;",
                            "test.conf:8: breaker.stall_timeout_ms: 100 cannot meet "
                            "breaker.rto_target_ms = 800");
    assert_err_contains("raise rto_target_ms to at least 1100, because stall_timeout_ms "
                        "cannot go below 100");
    assert_err_lacks("lower stall_timeout_ms");
}

/* --- heartbeat -------------------------------------------------------------------------- */

static void heartbeat_not_a_group(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "regions = ( { " EAST_DEFAULT " }, { " WEST_DEFAULT " } );\n"
                                "topics = ( { " TOPIC_DEFAULT " } );\n"
                                "heartbeat = 1000;\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:4: heartbeat: expected a group { ... }, found an integer "
                        "(1000)");
}

static void heartbeat_unknown_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.heartbeat = "interval = 500;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: heartbeat.interval: unknown setting");
    assert_err_contains("topic, interval_ms");
}

static void heartbeat_topic_wrong_type(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.heartbeat = "topic = 7;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: heartbeat.topic: expected a string");
}

static void heartbeat_topic_invalid_name(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.heartbeat = "topic = \"beats/1\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: heartbeat.topic: topic name \"beats/1\" contains '/' at "
                        "position 6; Kafka accepts only [A-Za-z0-9._-]");
}

static void heartbeat_topic_empty(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.heartbeat = "topic = \"\";"}), TL_EINVAL);
    assert_err_contains("test.conf:8: heartbeat.topic: the topic name is empty");
}

static void heartbeat_topic_is_event_topic(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .topic = "name = \"t1\"; }, { name = \"t2\";",
                         .heartbeat = "topic = \"t2\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: heartbeat.topic: \"t2\" is also the name of the event "
                        "topic topics.[1]; heartbeats need a topic of their own");
}

static void default_heartbeat_topic_is_event_topic(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = "name = \"twinlane.heartbeats\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:7: topics.[0].name: \"twinlane.heartbeats\" is the default "
                        "heartbeat.topic");
    assert_err_contains("rename this topic or set heartbeat.topic to another name");
}

static void heartbeat_interval_below_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.heartbeat = "interval_ms = 99;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: heartbeat.interval_ms: 99 is out of range; accepted "
                        "values are 100 to 60000");
}

static void heartbeat_interval_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.heartbeat = "interval_ms = 60001;"}),
                     TL_EINVAL);
    assert_err_contains("heartbeat.interval_ms: 60001 is out of range");
}

static void heartbeat_interval_not_below_rto(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.heartbeat = "interval_ms = 3000;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: heartbeat.interval_ms: 3000 is not less than "
                        "breaker.rto_target_ms = 3000 (the default)");
    assert_err_contains("lower interval_ms to at most 2999 or raise breaker.rto_target_ms to "
                        "at least 3001");
}

static void heartbeat_interval_above_set_rto(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.breaker = "rto_target_ms = 2500;",
                                                .heartbeat = "interval_ms = 4000;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:9: heartbeat.interval_ms: 4000 is not less than "
                        "breaker.rto_target_ms = 2500, but heartbeats are the probes");
    assert_err_lacks("(the default)");
}

/* --- admin ------------------------------------------------------------------------------ */

static void admin_defaults_without_group(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){0}), 0);
    assert_string_equal(cfg.admin_unix_path, "/tmp/tl/admin.sock");
    assert_null(cfg.admin_tcp_host);
    assert_null(cfg.admin_token_file);
    assert_int_equal(cfg.admin_max_connections, 16);
    assert_int_equal(cfg.admin_connection_timeout_ms, 10000);
}

static void admin_tcp_with_token_file(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .admin = "unix = \"/run/tl-admin.sock\"; tcp = \"127.0.0.1:7412\"; "
                                  "token_file = \"/etc/tl/tokens\"; max_connections = 4; "
                                  "connection_timeout_ms = 2000;"}),
                     0);
    assert_string_equal(cfg.admin_unix_path, "/run/tl-admin.sock");
    assert_string_equal(cfg.admin_tcp_host, "127.0.0.1");
    assert_string_equal(cfg.admin_tcp_port, "7412");
    assert_string_equal(cfg.admin_token_file, "/etc/tl/tokens");
    assert_int_equal(cfg.admin_max_connections, 4);
    assert_int_equal(cfg.admin_connection_timeout_ms, 2000);
}

static void admin_unknown_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.admin = "port = 1;"}), TL_EINVAL);
    assert_err_contains("test.conf:8: admin.port: unknown setting");
    assert_err_contains("unix, tcp, token_file");
}

static void admin_tcp_requires_token_file(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.admin = "tcp = \"127.0.0.1:7412\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: admin.tcp: needs admin.token_file");
}

static void admin_token_file_without_tcp(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.admin = "token_file = \"/etc/tl/t\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: admin.token_file: set without admin.tcp");
}

static void admin_tcp_rejects_public_address(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.admin = "tcp = \"192.0.2.1:7412\"; "
                                                         "token_file = \"/t\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: admin.tcp: \"192.0.2.1:7412\" is not a loopback address");
}

static void admin_unix_same_as_listen(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "unix = \"/run/tl.sock\";",
                                                .admin = "unix = \"/run/tl.sock\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: admin.unix: \"/run/tl.sock\" is also the producer socket");
}

static void admin_timeout_below_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.admin = "connection_timeout_ms = 10;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:8: admin.connection_timeout_ms:");
}

/* --- listen ----------------------------------------------------------------------------- */

static void listen_unknown_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "port = 7411;"}), TL_EINVAL);
    assert_err_contains("test.conf:2: listen.port: unknown setting");
    assert_err_contains("unix, tcp, max_frame_bytes");
}

static void unix_path_empty(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "unix = \"\";"}), TL_EINVAL);
    assert_err_contains("test.conf:2: listen.unix: empty");
}

static void unix_path_too_long(void **state)
{
    (void)state;
    char listen[256];
    char path[109];
    memset(path, 'p', 108);
    path[0] = '/';
    path[108] = '\0';
    snprintf(listen, sizeof(listen), "unix = \"%s\";", path);

    assert_int_equal(parse_parts((struct parts){.listen = listen}), TL_EINVAL);
    assert_err_contains("test.conf:2: listen.unix: the path is 108 bytes long");
    assert_err_contains("at most 107 bytes");
}

static void default_unix_path_too_long(void **state)
{
    (void)state;
    char agent[256];
    char dir[101];
    memset(dir, 'd', 100);
    dir[0] = '/';
    dir[100] = '\0';
    snprintf(agent, sizeof(agent), "id = \"a1\"; home_region = \"east\"; data_dir = \"%s\";",
             dir);

    assert_int_equal(parse_parts((struct parts){.agent = agent}), TL_EINVAL);
    assert_err_contains("test.conf:1: agent.data_dir: the default socket path");
    assert_err_contains("is 111 bytes long");
    assert_err_contains("set listen.unix to a shorter path");
}

static void tcp_rejects_public_address(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"0.0.0.0:7411\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: listen.tcp: \"0.0.0.0:7411\" is not a loopback address");
}

static void tcp_rejects_missing_port(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"127.0.0.1\";"}), TL_EINVAL);
    assert_err_contains("listen.tcp: \"127.0.0.1\" is not host:port");
}

static void tcp_rejects_port_zero(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"127.0.0.1:0\";"}),
                     TL_EINVAL);
    assert_err_contains("listen.tcp: \"127.0.0.1:0\" has an invalid port; use a number from 1 "
                        "to 65535");
}

static void tcp_rejects_port_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"127.0.0.1:65536\";"}),
                     TL_EINVAL);
    assert_err_contains("has an invalid port");
}

static void tcp_rejects_unbracketed_ipv6(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "tcp = \"::1:7411\";"}), TL_EINVAL);
    assert_err_contains("listen.tcp: \"::1:7411\" has an IPv6 address without brackets");
}

static void frame_bytes_below_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "max_frame_bytes = 1023;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: listen.max_frame_bytes: 1023 is out of range; accepted "
                        "values are 1024 (1 KiB) to 67108864 (64 MiB) bytes");
}

static void event_bytes_above_frame(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .listen = "max_frame_bytes = 65536; max_event_bytes = 65537;"}),
                     TL_EINVAL);
    assert_err_contains("listen.max_event_bytes: 65537 is larger than listen.max_frame_bytes "
                        "(65536)");
}

static void event_bytes_zero_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "max_event_bytes = 0;"}), TL_EINVAL);
    assert_err_contains("listen.max_event_bytes: 0 is out of range");
}

static void connections_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.listen = "max_connections = 65537;"}),
                     TL_EINVAL);
    assert_err_contains("listen.max_connections: 65537 is out of range; accepted values are 1 "
                        "to 65536");
}

/* --- regions ---------------------------------------------------------------------------- */

static void regions_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"), TL_EINVAL);
    assert_err_contains("test.conf: regions: missing");
}

static void regions_not_a_list(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\nregions = { };\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: regions: expected a list of groups");
    assert_err_contains("found a group");
}

static void regions_count_not_two(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "regions = ( { " EAST_DEFAULT " } );\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: regions: found 1 region; this version writes to exactly "
                        "2 regions");
}

static void region_not_a_group(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "regions = ( \"east\", \"west\" );\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:2: regions.[0]: expected a group");
    assert_err_contains("found a string (\"east\")");
}

static void region_unknown_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.west = WEST_DEFAULT " brokers = 3;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:5: regions.[1].brokers: unknown setting");
    assert_err_contains("name, bootstrap, embedded_brokers, properties");
}

static void region_name_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.east = "bootstrap = \"embedded\";"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:4: regions.[0].name: missing");
}

static void region_name_invalid_character(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .east = "name = \"us.east\"; bootstrap = \"embedded\";"}),
                     TL_EINVAL);
    assert_err_contains("regions.[0].name: \"us.east\" contains '.' at position 3; use only "
                        "[A-Za-z0-9_-]");
}

static void region_name_duplicate(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.west = EAST_DEFAULT}), TL_EINVAL);
    assert_err_contains("test.conf:5: regions.[1].name: \"east\" is already used by "
                        "regions.[0]; region names must be unique");
}

static void bootstrap_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.west = "name = \"west\";"}), TL_EINVAL);
    assert_err_contains("test.conf:5: regions.[1].bootstrap: missing");
}

static void bootstrap_entry_without_port(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = "name = \"west\"; bootstrap = \"w1:9092,w2\";"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].bootstrap: entry 2, \"w2\", is not host:port");
}

static void bootstrap_entry_bad_port(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = "name = \"west\"; bootstrap = \"w1:90920\";"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].bootstrap: entry 1, \"w1:90920\", has an invalid port");
}

static void bootstrap_empty_entry(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = "name = \"west\"; bootstrap = \"w1:9092,,w2:9092\";"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].bootstrap: entry 2 is empty");
}

static void bootstrap_invalid_host(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = "name = \"west\"; bootstrap = \"w 1:9092\";"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].bootstrap: entry 1, \"w 1:9092\", has an invalid host");
}

static void embedded_brokers_with_real_bootstrap(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = "name = \"west\"; bootstrap = \"w1:9092\"; "
                                 "embedded_brokers = 3;"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].embedded_brokers: set, but this region's bootstrap names "
                        "real brokers");
}

static void embedded_brokers_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.west = WEST_DEFAULT " embedded_brokers = 17;"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].embedded_brokers: 17 is out of range; accepted values are "
                        "1 to 16");
}

static void properties_single_string(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = \"sasl.password=hunter2\";"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].properties: expected an array of \"name=value\" strings, "
                        "found a single string");
    assert_err_lacks("hunter2");
}

static void property_not_a_string(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.west = WEST_DEFAULT " properties = ( 5 );"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].properties.[0]: expected a string \"name=value\", found an "
                        "integer (5)");
}

static void property_without_equals(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"linger.ms\" ];"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:5: regions.[1].properties.[0]: \"linger.ms\" has no '='");
}

static void property_without_equals_hides_secret(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"sasl.password:hunter2\" ];"}),
                     TL_EINVAL);
    assert_err_contains("\"(value hidden)\" has no '='");
    assert_err_lacks("hunter2");
}

static void property_empty_name(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"=hunter2\" ];"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].properties.[0]: the property name before '=' is empty");
    assert_err_lacks("hunter2");
}

static void property_unknown_to_librdkafka(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"linger.mss=5\" ];"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].properties.[0]: librdkafka rejected \"linger.mss=5\": No "
                        "such configuration property");
}

static void property_invalid_value(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"compression.type=zzz\" ];"}),
                     TL_EINVAL);
    assert_err_contains("librdkafka rejected \"compression.type=zzz\": Invalid value");
}

static void property_secret_value_hidden(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"my.secret=hunter2\" ];"}),
                     TL_EINVAL);
    assert_err_contains("librdkafka rejected \"my.secret=(value hidden)\"");
    assert_err_lacks("hunter2");
}

static void property_callback_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"dr_msg_cb=x\" ];"}),
                     TL_EINVAL);
    assert_err_contains("librdkafka rejected \"dr_msg_cb=x\"");
}

static void property_owned_bootstrap_servers(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"bootstrap.servers=a:1\" ];"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].properties.[0]: property \"bootstrap.servers\" cannot be "
                        "set here");
    assert_err_contains("put the broker list in bootstrap");
}

static void property_owned_by_agent(void **state)
{
    (void)state;
    static const char *const owned[] = {"metadata.broker.list=a:1", "enable.idempotence=false",
                                        "acks=1", "request.required.acks=1",
                                        "partitioner=random", "transactional.id=t"};

    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
        char west[256];
        snprintf(west, sizeof(west), WEST_DEFAULT " properties = [ \"%s\" ];", owned[i]);
        assert_int_equal(parse_parts((struct parts){.west = west}), TL_EINVAL);
        assert_err_contains("cannot be set here");
    }
}

static void property_set_twice(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " properties = [ \"linger.ms=5\", "
                                              "\"linger.ms=6\" ];"}),
                     TL_EINVAL);
    assert_err_contains("regions.[1].properties.[1]: property \"linger.ms\" is already set by "
                        "properties.[0]");
}

/* --- topics ----------------------------------------------------------------------------- */

static void topics_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "regions = ( { " EAST_DEFAULT " }, { " WEST_DEFAULT " } );\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf: topics: missing");
}

static void topics_empty(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "regions = ( { " EAST_DEFAULT " }, { " WEST_DEFAULT " } );\n"
                                "topics = ( );\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:3: topics: empty");
}

static void topic_not_a_group(void **state)
{
    (void)state;
    assert_int_equal(parse_text("agent = { " AGENT_DEFAULT " };\n"
                                "regions = ( { " EAST_DEFAULT " }, { " WEST_DEFAULT " } );\n"
                                "topics = ( \"events\" );\n"),
                     TL_EINVAL);
    assert_err_contains("test.conf:3: topics.[0]: expected a group");
}

static void topic_unknown_setting(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = TOPIC_DEFAULT " replicas = 3;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:7: topics.[0].replicas: unknown setting");
    assert_err_contains("name, partitions, replication_factor");
}

static void topic_name_missing(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = "partitions = 3;"}), TL_EINVAL);
    assert_err_contains("test.conf:7: topics.[0].name: missing");
}

static void topic_name_invalid_character(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = "name = \"my topic\";"}), TL_EINVAL);
    assert_err_contains("test.conf:7: topics.[0].name: topic name \"my topic\" contains ' ' at "
                        "position 3");
}

static void topic_name_reserved(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = "name = \"..\";"}), TL_EINVAL);
    assert_err_contains("topics.[0].name: topic name \"..\" is reserved");
}

static void topic_name_duplicate(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .topic = "name = \"t1\"; }, { name = \"t1\";"}),
                     TL_EINVAL);
    assert_err_contains("topics.[1].name: \"t1\" is already used by topics.[0]");
}

static void partitions_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){.topic = TOPIC_DEFAULT " partitions = 10001;"}),
                     TL_EINVAL);
    assert_err_contains("topics.[0].partitions: 10001 is out of range; accepted values are 1 "
                        "to 10000");
}

static void replication_above_range(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .topic = TOPIC_DEFAULT " replication_factor = 17;"}),
                     TL_EINVAL);
    assert_err_contains("topics.[0].replication_factor: 17 is out of range");
}

static void replication_exceeds_embedded_brokers(void **state)
{
    (void)state;
    assert_int_equal(parse_parts((struct parts){
                         .west = WEST_DEFAULT " embedded_brokers = 2;",
                         .topic = TOPIC_DEFAULT " replication_factor = 3;"}),
                     TL_EINVAL);
    assert_err_contains("test.conf:7: topics.[0].replication_factor: 3 is larger than the 2 "
                        "embedded brokers of region \"west\"");
}

/* --- tl_topic_name_valid ---------------------------------------------------------------- */

static void topic_name_valid_accepts_max_length(void **state)
{
    (void)state;
    char name[TL_TOPIC_NAME_MAX];
    memset(name, 'a', sizeof(name));
    assert_true(tl_topic_name_valid(name, sizeof(name), err, sizeof(err)));
}

static void topic_name_valid_rejects_250_chars(void **state)
{
    (void)state;
    char name[TL_TOPIC_NAME_MAX + 1];
    memset(name, 'a', sizeof(name));
    assert_false(tl_topic_name_valid(name, sizeof(name), err, sizeof(err)));
    assert_err_contains("is 250 characters long; Kafka accepts at most 249");
}

static void topic_name_valid_rejects_empty(void **state)
{
    (void)state;
    assert_false(tl_topic_name_valid("", 0, err, sizeof(err)));
    assert_err_contains("the topic name is empty");
}

static void topic_name_valid_rejects_dot(void **state)
{
    (void)state;
    assert_false(tl_topic_name_valid(".", 1, err, sizeof(err)));
    assert_err_contains("is reserved");
}

static void topic_name_valid_rejects_control_byte(void **state)
{
    (void)state;
    assert_false(tl_topic_name_valid("a\nb", 3, err, sizeof(err)));
    assert_err_contains("contains byte \\x0a at position 2");
}

static void topic_name_valid_honours_length(void **state)
{
    (void)state;
    /* Only the first len bytes count, so a longer buffer is fine. */
    assert_true(tl_topic_name_valid("a.b-c_D9 ignored", 8, err, sizeof(err)));
}

#define CONFIG_TEST(fn) cmocka_unit_test_teardown(fn, free_config)

int main(void)
{
    const struct CMUnitTest tests[] = {
        CONFIG_TEST(full_config_fills_every_field),
        CONFIG_TEST(minimal_config_gets_defaults),
        CONFIG_TEST(replication_default_follows_smallest_cluster),
        CONFIG_TEST(replication_default_without_embedded),
        CONFIG_TEST(event_default_shrinks_with_frame),
        CONFIG_TEST(tcp_accepts_ipv6_loopback),
        CONFIG_TEST(tcp_accepts_localhost),
        CONFIG_TEST(tcp_accepts_whole_loopback_net),
        CONFIG_TEST(unix_path_at_limit_accepted),
        CONFIG_TEST(ack_accepts_each_policy),
        CONFIG_TEST(wal_empty_group_gets_defaults),
        CONFIG_TEST(wal_fsync_off_accepted),
        CONFIG_TEST(wal_fsync_interval_bounds_accepted),
        CONFIG_TEST(wal_interval_mode_keeps_default),
        CONFIG_TEST(wal_segment_fits_event_exactly),
        CONFIG_TEST(wal_segment_follows_small_event),
        CONFIG_TEST(wal_segment_bounds_accepted),
        CONFIG_TEST(wal_max_bytes_two_segments_accepted),
        CONFIG_TEST(when_no_region_accepts_each_action),
        CONFIG_TEST(breaker_empty_group_gets_defaults),
        CONFIG_TEST(breaker_lower_bounds_accepted),
        CONFIG_TEST(breaker_upper_bounds_accepted),
        CONFIG_TEST(breaker_stall_meets_rto_exactly),
        CONFIG_TEST(breaker_open_max_equal_to_open),
        CONFIG_TEST(heartbeat_interval_just_below_rto),
        CONFIG_TEST(region_and_topic_lookup),
        CONFIG_TEST(failed_parse_leaves_config_empty),
        CONFIG_TEST(load_reads_file_and_include),
        CONFIG_TEST(load_missing_file_not_found),
        CONFIG_TEST(load_directory_is_io_error),
        CONFIG_TEST(load_reports_path_on_syntax_error),
        CONFIG_TEST(syntax_error_names_line),
        CONFIG_TEST(unknown_top_level_setting),
        CONFIG_TEST(agent_group_missing),
        CONFIG_TEST(agent_not_a_group),
        CONFIG_TEST(agent_unknown_setting),
        CONFIG_TEST(agent_id_missing),
        CONFIG_TEST(agent_id_wrong_type),
        CONFIG_TEST(agent_id_invalid_character),
        CONFIG_TEST(agent_id_too_long),
        CONFIG_TEST(agent_id_empty),
        CONFIG_TEST(home_region_missing),
        CONFIG_TEST(home_region_not_a_region),
        CONFIG_TEST(data_dir_missing),
        CONFIG_TEST(data_dir_empty),
        CONFIG_TEST(log_level_unknown_name),
        CONFIG_TEST(shutdown_timeout_above_range),
        CONFIG_TEST(shutdown_timeout_negative),
        CONFIG_TEST(start_wait_below_range),
        CONFIG_TEST(shutdown_timeout_float_rejected),
        CONFIG_TEST(inflight_events_zero_rejected),
        CONFIG_TEST(inflight_bytes_below_range),
        CONFIG_TEST(inflight_bytes_above_range),
        CONFIG_TEST(wide_integer_needs_suffix),
        CONFIG_TEST(ack_unknown_policy),
        CONFIG_TEST(ack_wrong_type),
        CONFIG_TEST(wal_not_a_group),
        CONFIG_TEST(wal_unknown_setting),
        CONFIG_TEST(wal_dir_empty),
        CONFIG_TEST(wal_dir_wrong_type),
        CONFIG_TEST(wal_fsync_unknown_mode),
        CONFIG_TEST(wal_fsync_boolean_rejected),
        CONFIG_TEST(wal_fsync_interval_zero),
        CONFIG_TEST(wal_fsync_interval_above_range),
        CONFIG_TEST(wal_fsync_interval_without_mode),
        CONFIG_TEST(wal_fsync_interval_with_off),
        CONFIG_TEST(wal_segment_below_range),
        CONFIG_TEST(wal_segment_above_range),
        CONFIG_TEST(wal_segment_smaller_than_event),
        CONFIG_TEST(wal_default_segment_smaller_than_event),
        CONFIG_TEST(wal_max_bytes_below_range),
        CONFIG_TEST(wal_max_bytes_above_range),
        CONFIG_TEST(wal_max_bytes_below_two_segments),
        CONFIG_TEST(wal_max_bytes_below_default_segments),
        CONFIG_TEST(wal_max_bytes_needs_suffix),
        CONFIG_TEST(wal_when_full_unknown),
        CONFIG_TEST(when_no_region_unknown_action),
        CONFIG_TEST(breaker_not_a_group),
        CONFIG_TEST(breaker_unknown_setting),
        CONFIG_TEST(breaker_value_wrong_type),
        CONFIG_TEST(breaker_failures_below_range),
        CONFIG_TEST(breaker_failures_above_range),
        CONFIG_TEST(breaker_rate_below_range),
        CONFIG_TEST(breaker_rate_above_range),
        CONFIG_TEST(breaker_window_below_range),
        CONFIG_TEST(breaker_window_above_range),
        CONFIG_TEST(breaker_volume_below_range),
        CONFIG_TEST(breaker_volume_above_range),
        CONFIG_TEST(breaker_stall_below_range),
        CONFIG_TEST(breaker_stall_above_range),
        CONFIG_TEST(breaker_open_below_range),
        CONFIG_TEST(breaker_open_above_range),
        CONFIG_TEST(breaker_open_max_below_range),
        CONFIG_TEST(breaker_open_max_above_range),
        CONFIG_TEST(breaker_probes_below_range),
        CONFIG_TEST(breaker_probes_above_range),
        CONFIG_TEST(breaker_rto_below_range),
        CONFIG_TEST(breaker_rto_above_range),
        CONFIG_TEST(breaker_backfill_negative),
        CONFIG_TEST(breaker_backfill_above_range),
        CONFIG_TEST(breaker_open_max_below_open),
        CONFIG_TEST(breaker_open_max_below_default_open),
        CONFIG_TEST(breaker_open_above_default_max),
        CONFIG_TEST(breaker_stall_misses_rto),
        CONFIG_TEST(breaker_rto_misses_default_stall),
        CONFIG_TEST(breaker_rto_check_names_stall_line),
        CONFIG_TEST(breaker_rto_below_any_stall),
        CONFIG_TEST(heartbeat_not_a_group),
        CONFIG_TEST(heartbeat_unknown_setting),
        CONFIG_TEST(heartbeat_topic_wrong_type),
        CONFIG_TEST(heartbeat_topic_invalid_name),
        CONFIG_TEST(heartbeat_topic_empty),
        CONFIG_TEST(heartbeat_topic_is_event_topic),
        CONFIG_TEST(default_heartbeat_topic_is_event_topic),
        CONFIG_TEST(heartbeat_interval_below_range),
        CONFIG_TEST(heartbeat_interval_above_range),
        CONFIG_TEST(heartbeat_interval_not_below_rto),
        CONFIG_TEST(heartbeat_interval_above_set_rto),
        CONFIG_TEST(admin_defaults_without_group),
        CONFIG_TEST(admin_tcp_with_token_file),
        CONFIG_TEST(admin_unknown_setting),
        CONFIG_TEST(admin_tcp_requires_token_file),
        CONFIG_TEST(admin_token_file_without_tcp),
        CONFIG_TEST(admin_tcp_rejects_public_address),
        CONFIG_TEST(admin_unix_same_as_listen),
        CONFIG_TEST(admin_timeout_below_range),
        CONFIG_TEST(listen_unknown_setting),
        CONFIG_TEST(unix_path_empty),
        CONFIG_TEST(unix_path_too_long),
        CONFIG_TEST(default_unix_path_too_long),
        CONFIG_TEST(tcp_rejects_public_address),
        CONFIG_TEST(tcp_rejects_missing_port),
        CONFIG_TEST(tcp_rejects_port_zero),
        CONFIG_TEST(tcp_rejects_port_above_range),
        CONFIG_TEST(tcp_rejects_unbracketed_ipv6),
        CONFIG_TEST(frame_bytes_below_range),
        CONFIG_TEST(event_bytes_above_frame),
        CONFIG_TEST(event_bytes_zero_rejected),
        CONFIG_TEST(connections_above_range),
        CONFIG_TEST(regions_missing),
        CONFIG_TEST(regions_not_a_list),
        CONFIG_TEST(regions_count_not_two),
        CONFIG_TEST(region_not_a_group),
        CONFIG_TEST(region_unknown_setting),
        CONFIG_TEST(region_name_missing),
        CONFIG_TEST(region_name_invalid_character),
        CONFIG_TEST(region_name_duplicate),
        CONFIG_TEST(bootstrap_missing),
        CONFIG_TEST(bootstrap_entry_without_port),
        CONFIG_TEST(bootstrap_entry_bad_port),
        CONFIG_TEST(bootstrap_empty_entry),
        CONFIG_TEST(bootstrap_invalid_host),
        CONFIG_TEST(embedded_brokers_with_real_bootstrap),
        CONFIG_TEST(embedded_brokers_above_range),
        CONFIG_TEST(properties_single_string),
        CONFIG_TEST(property_not_a_string),
        CONFIG_TEST(property_without_equals),
        CONFIG_TEST(property_without_equals_hides_secret),
        CONFIG_TEST(property_empty_name),
        CONFIG_TEST(property_unknown_to_librdkafka),
        CONFIG_TEST(property_invalid_value),
        CONFIG_TEST(property_secret_value_hidden),
        CONFIG_TEST(property_callback_rejected),
        CONFIG_TEST(property_owned_bootstrap_servers),
        CONFIG_TEST(property_owned_by_agent),
        CONFIG_TEST(property_set_twice),
        CONFIG_TEST(topics_missing),
        CONFIG_TEST(topics_empty),
        CONFIG_TEST(topic_not_a_group),
        CONFIG_TEST(topic_unknown_setting),
        CONFIG_TEST(topic_name_missing),
        CONFIG_TEST(topic_name_invalid_character),
        CONFIG_TEST(topic_name_reserved),
        CONFIG_TEST(topic_name_duplicate),
        CONFIG_TEST(partitions_above_range),
        CONFIG_TEST(replication_above_range),
        CONFIG_TEST(replication_exceeds_embedded_brokers),
        CONFIG_TEST(topic_name_valid_accepts_max_length),
        CONFIG_TEST(topic_name_valid_rejects_250_chars),
        CONFIG_TEST(topic_name_valid_rejects_empty),
        CONFIG_TEST(topic_name_valid_rejects_dot),
        CONFIG_TEST(topic_name_valid_rejects_control_byte),
        CONFIG_TEST(topic_name_valid_honours_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
