/*
 * Scenario files of twinlane-chaos: what load to send, which backend to run the two regions
 * on, which agent settings to override, which faults to inject when, and what the run must
 * show to pass.
 *
 * A scenario is a libconfig file (see docs/chaos.md for every setting). chaos_scenario_load
 * checks every value and reports the first problem as "FILE:LINE: SETTING: problem". The
 * parsed scenario owns all its strings and is freed with chaos_scenario_free. Only the main
 * thread touches it while a run is being set up; later it is read-only.
 */
#ifndef TL_CHAOS_SCENARIO_H
#define TL_CHAOS_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum chaos_backend_type {
    CHAOS_BACKEND_MOCK = 0,  /* two twinlane-mock-cluster processes */
    CHAOS_BACKEND_KAFKA,     /* two Apache Kafka clusters started with kafka-cluster */
};

enum chaos_input_format {
    CHAOS_INPUT_GENERATED = 0, /* "key-N" keys and small JSON values made up by the harness */
    CHAOS_INPUT_TSV,           /* tab-separated lines with a header row; key_column picks the key */
    CHAOS_INPUT_JSON,          /* one JSON object per line; key_field picks the key */
};

enum chaos_action {
    CHAOS_REGION_DOWN = 0,  /* every broker of a region stops responding (killed or listeners down) */
    CHAOS_REGION_HANG,      /* the region keeps connections open but sends no responses */
    CHAOS_BROKER_KILL,      /* one broker of a region dies and comes back */
    CHAOS_PARTITION,        /* the network between this host and a region drops every packet */
    CHAOS_LATENCY,          /* every response of a region is delayed by latency_ms */
    CHAOS_AGENT_KILL,       /* the agent gets SIGKILL and is restarted after the window */
    CHAOS_DISK_FULL,        /* the file system of wal.dir fills up */
    CHAOS_PRODUCE_ERRORS,   /* a region fails the next error_count Produce requests */
    CHAOS_ACTION_COUNT,
};

/* One fault of the timeline, expanded: repeated faults appear once per repetition. */
struct chaos_fault {
    enum chaos_action action;
    int region;              /* 0 or 1; -1 for agent-kill and disk-full */
    int broker;              /* broker-kill: broker id, 1-based */
    int64_t at_ms;           /* start, relative to the start of the load */
    int64_t duration_ms;     /* the fault is healed at at_ms + duration_ms */
    int latency_ms;          /* latency */
    char error_name[64];     /* produce-errors: Kafka error name such as NOT_ENOUGH_REPLICAS */
    int error_count;         /* produce-errors */
};

/* Limits the run must respect; a negative value means "not checked". */
struct chaos_expect {
    int64_t max_missing;
    int64_t max_order_violations;
    int64_t max_unexpected;
    int64_t max_rto_ms;
    int64_t max_stall_ms;
    int64_t converge_within_ms;
    int64_t min_acknowledged;    /* minimum number of events acknowledged OK */
    bool agent_stays_up;         /* the agent never exits unless the harness stops or kills it */
};

struct chaos_scenario {
    char *path;                  /* file it was read from */
    char *name;                  /* file name without directory and ".conf" */
    char *description;

    /* load */
    int rate;                    /* new events per second */
    int64_t duration_ms;         /* how long new events are generated */
    int batch;                   /* events per request */
    int max_inflight;            /* events in flight before the generator waits */
    char *topic;
    int partitions;
    enum chaos_input_format format;
    char *input;                 /* resolved path, or NULL for generated events */
    char *key_column;
    char *key_field;
    int generated_keys;
    int64_t drain_timeout_ms;    /* time allowed after the load to get every event acknowledged */

    /* backend */
    enum chaos_backend_type backend;
    int brokers;                 /* per region */
    int kafka_base_port;         /* east uses this base port, west this + 100 */
    bool netns;                  /* kafka: start the clusters in network namespaces */
    int min_insync_replicas;     /* kafka topic setting; 0 = the tool's default */

    /* agent overrides, as libconfig text to append inside the named groups */
    char *agent_settings;        /* inside "agent = { ... }" */
    char *wal_settings;
    char *breaker_settings;
    char *heartbeat_settings;
    char **region_properties;    /* librdkafka properties for both regions */
    size_t region_property_count;
    int wal_tmpfs_mb;            /* > 0: wal.dir lies on a tmpfs of this size */

    struct chaos_fault *faults;  /* sorted by at_ms */
    size_t fault_count;

    struct chaos_expect expect;
};

/*
 * Reads and checks the scenario at path. repo_root is the directory that relative input
 * paths are resolved against. Returns 0 and fills *out, or -1 with a message in err (the
 * caller frees nothing in that case).
 */
int chaos_scenario_load(const char *path, const char *repo_root, struct chaos_scenario *out,
                        char *err, size_t errsize);

void chaos_scenario_free(struct chaos_scenario *s);

/* Returns the scenario-file name of an action, such as "region-down". */
const char *chaos_action_name(enum chaos_action action);

/* Returns whether a fault of this action needs a region. */
bool chaos_action_has_region(enum chaos_action action);

extern const char *const CHAOS_REGION_NAMES[2];

#endif
