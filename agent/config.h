/*
 * Agent configuration: a libconfig file read once at start.
 *
 * Layout of the file (every setting and default is documented in docs/configuration.md):
 *
 *   agent   = { id = "..."; home_region = "..."; data_dir = "..."; log_level = "info";
 *               shutdown_timeout_ms = 10000; start_wait_ms = 5000;
 *               max_inflight_events = 100000;
 *               max_inflight_bytes = 268435456; ack = "all";
 *               when_no_region = "spool"; };
 *   wal     = { dir = "<data_dir>/wal"; fsync = "always"; fsync_interval_ms = 100;
 *               segment_bytes = 67108864; max_bytes = 8589934592L; when_full = "reject"; };
 *   breaker = { consecutive_failures = 5; failure_rate_percent = 50; rate_window_ms = 10000;
 *               min_volume = 20; stall_timeout_ms = 1500; open_ms = 1000; open_max_ms = 30000;
 *               probes_to_close = 2; rto_target_ms = 3000; backfill_events_per_sec = 50000; };
 *   heartbeat = { topic = "twinlane.heartbeats"; interval_ms = 1000; };
 *   admin   = { unix = "<data_dir>/admin.sock"; tcp = "127.0.0.1:7412";
 *               token_file = "/etc/twinlane/admin.tokens"; max_connections = 16;
 *               connection_timeout_ms = 10000; };
 *   listen  = { unix = "/path/agent.sock"; tcp = "127.0.0.1:7411";
 *               max_frame_bytes = 4194304; max_event_bytes = 1048576; max_connections = 256; };
 *   regions = ( { name = "east"; bootstrap = "embedded"; embedded_brokers = 3;
 *                 properties = [ "linger.ms=5" ]; }, { name = "west"; ... } );
 *   topics  = ( { name = "events"; partitions = 6; replication_factor = 3; } );
 *
 * Validation happens entirely in tl_config_load: a struct tl_config that loaded without error
 * holds only values the agent can run with. Read-only after loading, so any thread may read it.
 */
#ifndef TL_CONFIG_H
#define TL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

/* This version dual-writes to exactly two regions. */
#define TL_REGION_COUNT 2

/* Kafka's own limit on topic name length. */
#define TL_TOPIC_NAME_MAX 249

/* When the agent answers OK (agent.ack). */
enum tl_ack_policy {
    TL_ACK_ALL = 0,   /* every region stored the event, and the WAL holds it */
    TL_ACK_ONE = 1,   /* the first region stored it, and the WAL holds it */
    TL_ACK_LOCAL = 2, /* the WAL holds it */
};

/* When the WAL calls fsync (wal.fsync). */
enum tl_fsync_mode {
    TL_FSYNC_ALWAYS = 0,   /* before answering: one fsync covers every event written meanwhile */
    TL_FSYNC_INTERVAL = 1, /* every wal.fsync_interval_ms; answers wait only for write(2) */
    TL_FSYNC_OFF = 2,      /* never; the kernel writes back when it chooses */
};

/* Behaviour of the WAL when wal.max_bytes is reached (wal.when_full). */
enum tl_when_full {
    TL_WHEN_FULL_REJECT = 0, /* answer new events RETRYABLE until space returns */
    TL_WHEN_FULL_SHED = 1,   /* delete the oldest segment, losing it for the regions behind */
};

/* Behaviour of the agent when no region's breaker is closed (agent.when_no_region). */
enum tl_no_region {
    TL_NO_REGION_SPOOL = 0,  /* acknowledge from the WAL alone, flagged as spooled */
    TL_NO_REGION_REJECT = 1, /* answer new events RETRYABLE ("unavailable") */
};

struct tl_region_config {
    char *name;
    bool embedded;           /* bootstrap = "embedded": host a mock cluster in the agent */
    char *bootstrap;         /* comma-separated host:port list; NULL when embedded */
    int embedded_brokers;    /* brokers of the mock cluster (default 3) */
    /* librdkafka properties passed through verbatim ("key=value" split in two). */
    char **property_names;
    char **property_values;
    size_t property_count;
};

struct tl_topic_config {
    char *name;
    int partitions;          /* created with this count in embedded regions (default 6) */
    int replication_factor;  /* for embedded regions (default min(3, embedded_brokers)) */
};

struct tl_config {
    char *path;                 /* file the configuration was read from */

    char *agent_id;             /* [A-Za-z0-9._-], 1 to 64 characters */
    char *home_region;          /* names one of regions[]; written as twinlane-origin */
    char *data_dir;             /* created if missing */
    enum tl_log_level log_level;
    int shutdown_timeout_ms;    /* bound on flushing in-flight events at SIGTERM */
    int start_wait_ms;          /* wait at start for a region that does not respond */
    size_t max_inflight_events; /* accepted but not yet acknowledged, before back-pressure */
    size_t max_inflight_bytes;

    char *unix_path;            /* default "<data_dir>/agent.sock" */
    char *tcp_host;             /* NULL when the TCP listener is off; loopback only */
    char *tcp_port;
    size_t max_frame_bytes;     /* default 4 MiB */
    size_t max_event_bytes;     /* default 1 MiB; key + value + headers */
    int max_connections;        /* default 256 */

    enum tl_ack_policy ack_policy;   /* agent.ack, default "all" */

    char *wal_dir;                   /* wal.dir, default "<data_dir>/wal" */
    enum tl_fsync_mode wal_fsync;    /* wal.fsync, default "always" */
    int wal_fsync_interval_ms;       /* wal.fsync_interval_ms, default 100 */
    uint64_t wal_segment_bytes;      /* wal.segment_bytes, default 64 MiB */
    uint64_t wal_max_bytes;          /* wal.max_bytes (quota), default 8 GiB */
    enum tl_when_full wal_when_full; /* wal.when_full, default "reject" */

    enum tl_no_region when_no_region; /* agent.when_no_region, default "spool" */

    /* Circuit breaker, per region (group "breaker"). */
    int breaker_consecutive_failures; /* trip after this many failed deliveries in a row: 5 */
    int breaker_failure_rate_percent; /* trip when this share of deliveries failed: 50 */
    int breaker_rate_window_ms;       /* ... over this window: 10000 */
    int breaker_min_volume;           /* ... once it holds this many deliveries: 20 */
    int breaker_stall_timeout_ms;     /* trip when the oldest in-flight event is this old: 1500 */
    int breaker_open_ms;              /* first OPEN interval, doubled per reopen, jittered: 1000 */
    int breaker_open_max_ms;          /* longest OPEN interval: 30000 */
    int breaker_probes_to_close;      /* successful probes before backfill starts: 2 */
    int breaker_rto_target_ms;        /* acknowledgements must resume within this: 3000 */
    uint64_t backfill_events_per_sec; /* backfill rate limit per region, 0 unlimited: 50000 */

    /* Heartbeats (group "heartbeat"). */
    char *heartbeat_topic;            /* default "twinlane.heartbeats" */
    int heartbeat_interval_ms;        /* default 1000 */

    /* Admin API (group "admin"). */
    char *admin_unix_path;            /* default "<data_dir>/admin.sock", mode 0660 */
    char *admin_tcp_host;             /* NULL when off; loopback only, needs admin_token_file */
    char *admin_tcp_port;
    char *admin_token_file;           /* lines "NAME TOKEN"; NULL without admin_tcp_host */
    int admin_max_connections;        /* default 16 */
    int admin_connection_timeout_ms;  /* idle connections are closed after this: 10000 */

    struct tl_region_config regions[TL_REGION_COUNT];

    struct tl_topic_config *topics;
    size_t topic_count;
};

/*
 * Reads and validates the file at path. Returns 0 and fills cfg, or TL_EINVAL / TL_EIO /
 * TL_ENOTFOUND with err set to one message naming file, line, setting, the value found and
 * what is accepted, e.g.
 *   "agent.conf:14: regions.[1].name: "east" is already used by regions.[0]; region names
 *    must be unique"
 * On error cfg holds nothing that needs freeing.
 */
int tl_config_load(const char *path, struct tl_config *cfg, char *err, size_t errsize);

/* Same as tl_config_load, for text held in memory; name is used as the file name in messages. */
int tl_config_parse(const char *text, const char *name, struct tl_config *cfg, char *err,
                    size_t errsize);

void tl_config_free(struct tl_config *cfg);

/* Returns the index of the named region or topic, or -1. */
int tl_config_region_index(const struct tl_config *cfg, const char *name);
int tl_config_topic_index(const struct tl_config *cfg, const char *name);

/*
 * Checks a topic name against Kafka's rules: 1 to 249 characters from [A-Za-z0-9._-], and
 * not "." or "..". Returns false with the reason in err.
 */
bool tl_topic_name_valid(const char *name, size_t len, char *err, size_t errsize);

/* Returns whether host (without port or brackets) is localhost, in 127.0.0.0/8, or ::1. */
bool tl_config_is_loopback_host(const char *host);

#endif
