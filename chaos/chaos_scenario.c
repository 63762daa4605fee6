/*
 * Scenario parsing: libconfig file to struct chaos_scenario.
 *
 * Every group accepts only the names listed in its table below, so a misspelt setting stops
 * the run instead of silently taking a default. Times in the file are seconds (integer or
 * float) unless the name ends in _ms; the parsed scenario stores milliseconds. Repeated faults
 * ("repeat", "every") are expanded here, so the runner sees one entry per fault window.
 */
#include "chaos_scenario.h"

#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"

const char *const CHAOS_REGION_NAMES[2] = {"east", "west"};

static const char *const ACTION_NAMES[CHAOS_ACTION_COUNT] = {
    [CHAOS_REGION_DOWN] = "region-down",   [CHAOS_REGION_HANG] = "region-hang",
    [CHAOS_BROKER_KILL] = "broker-kill",   [CHAOS_PARTITION] = "partition",
    [CHAOS_LATENCY] = "latency",           [CHAOS_AGENT_KILL] = "agent-kill",
    [CHAOS_DISK_FULL] = "disk-full",       [CHAOS_PRODUCE_ERRORS] = "produce-errors",
};

/* Most faults one scenario may expand to, so that a typo in "repeat" cannot exhaust memory. */
#define MAX_FAULTS 1000

const char *chaos_action_name(enum chaos_action action)
{
    return action < CHAOS_ACTION_COUNT ? ACTION_NAMES[action] : "unknown";
}

bool chaos_action_has_region(enum chaos_action action)
{
    return action != CHAOS_AGENT_KILL && action != CHAOS_DISK_FULL;
}

/* Parsing context: the file name for messages and the error buffer. */
struct parser {
    const char *file;
    char *err;
    size_t errsize;
};

static int fail_at(struct parser *p, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct parser *p, const config_setting_t *s, const char *fmt, ...)
{
    char path[256] = "";
    if (s) {
        /* Build "group.name" from the setting up to the root. */
        const config_setting_t *chain[16];
        int depth = 0;
        for (const config_setting_t *c = s; c && config_setting_parent(c) && depth < 16;
             c = config_setting_parent(c))
            chain[depth++] = c;
        size_t used = 0;
        for (int i = depth - 1; i >= 0; i--) {
            const char *name = config_setting_name(chain[i]);
            char piece[96];
            if (name)
                snprintf(piece, sizeof(piece), "%s%s", used ? "." : "", name);
            else
                snprintf(piece, sizeof(piece), ".[%d]", config_setting_index(chain[i]));
            used += (size_t)snprintf(path + used, sizeof(path) - used, "%s", piece);
            if (used >= sizeof(path))
                break;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    char message[512];
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errsize, "%s:%d: %s: %s", p->file, s ? config_setting_source_line(s) : 0,
             path[0] ? path : "(top level)", message);
    return -1;
}

/* Checks that every child of group has one of the names in allowed (NULL-terminated). */
static int check_names(struct parser *p, const config_setting_t *group,
                       const char *const allowed[])
{
    for (int i = 0; i < config_setting_length(group); i++) {
        const config_setting_t *child = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(child);
        bool known = false;
        for (size_t k = 0; allowed[k] && !known; k++)
            known = strcmp(name, allowed[k]) == 0;
        if (!known)
            return fail_at(p, child, "unknown setting; see docs/chaos.md for the accepted names");
    }
    return 0;
}

/* Reads an integer setting into *out when present; checks the range. */
static int get_int(struct parser *p, const config_setting_t *group, const char *name,
                   int64_t min, int64_t max, int64_t *out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (!s)
        return 0;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return fail_at(p, s, "expected an integer");
    int64_t v = config_setting_get_int64(s);
    if (v < min || v > max)
        return fail_at(p, s, "%lld is out of range; accepted: %lld to %lld", (long long)v,
                       (long long)min, (long long)max);
    *out = v;
    return 0;
}

/* Reads a time in seconds (integer or float) into *out_ms when present. */
static int get_seconds(struct parser *p, const config_setting_t *group, const char *name,
                       double max_s, int64_t *out_ms)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (!s)
        return 0;
    double v;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        v = (double)config_setting_get_int64(s);
        break;
    case CONFIG_TYPE_FLOAT:
        v = config_setting_get_float(s);
        break;
    default:
        return fail_at(p, s, "expected a number of seconds");
    }
    if (v < 0 || v > max_s)
        return fail_at(p, s, "%g s is out of range; accepted: 0 to %g seconds", v, max_s);
    *out_ms = (int64_t)(v * 1000 + 0.5);
    return 0;
}

static int get_string(struct parser *p, const config_setting_t *group, const char *name,
                      const char **out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail_at(p, s, "expected a string in double quotes");
    *out = config_setting_get_string(s);
    return 0;
}

static int get_bool(struct parser *p, const config_setting_t *group, const char *name, bool *out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return fail_at(p, s, "expected true or false");
    *out = config_setting_get_bool(s);
    return 0;
}

/* Growable text buffer for the agent overrides. */
struct text {
    char *data;
    size_t len, cap;
};

static void text_append(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_append(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)need + 1 > t->cap) {
        t->cap = (t->len + (size_t)need + 1) * 2;
        t->data = tl_xrealloc(t->data, t->cap);
    }
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)need;
}

/*
 * Copies the scalar settings of group as libconfig text ("name = value; ") into *out,
 * skipping the names in skip. The agent checks the values when it loads its configuration.
 */
static int copy_scalars(struct parser *p, const config_setting_t *group,
                        const char *const skip[], char **out)
{
    struct text t = {0};
    text_append(&t, "%s", "");
    for (int i = 0; group && i < config_setting_length(group); i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        bool skipped = false;
        for (size_t k = 0; skip && skip[k] && !skipped; k++)
            skipped = strcmp(name, skip[k]) == 0;
        if (skipped)
            continue;
        switch (config_setting_type(s)) {
        case CONFIG_TYPE_INT:
            text_append(&t, "%s = %d; ", name, config_setting_get_int(s));
            break;
        case CONFIG_TYPE_INT64:
            text_append(&t, "%s = %lldL; ", name, (long long)config_setting_get_int64(s));
            break;
        case CONFIG_TYPE_FLOAT:
            text_append(&t, "%s = %f; ", name, config_setting_get_float(s));
            break;
        case CONFIG_TYPE_BOOL:
            text_append(&t, "%s = %s; ", name, config_setting_get_bool(s) ? "true" : "false");
            break;
        case CONFIG_TYPE_STRING:
            if (strpbrk(config_setting_get_string(s), "\"\\\n")) {
                free(t.data);
                return fail_at(p, s, "quotes, backslashes and newlines are not supported here");
            }
            text_append(&t, "%s = \"%s\"; ", name, config_setting_get_string(s));
            break;
        default:
            free(t.data);
            return fail_at(p, s, "expected a number, string or boolean agent setting");
        }
    }
    *out = t.data;
    return 0;
}

static int region_index(struct parser *p, const config_setting_t *s, const char *name)
{
    for (int r = 0; r < 2; r++) {
        if (strcmp(name, CHAOS_REGION_NAMES[r]) == 0)
            return r;
    }
    return fail_at(p, s, "\"%s\" is not a region; the regions are \"east\" and \"west\"", name);
}

static int parse_load(struct parser *p, const config_setting_t *g, const char *repo_root,
                      struct chaos_scenario *s)
{
    static const char *const names[] = {"rate", "duration", "batch", "max_inflight", "topic",
                                        "partitions", "input", "format", "key_column",
                                        "key_field", "keys", "drain_timeout", NULL};
    if (!g)
        return fail_at(p, NULL, "the group \"load\" is missing");
    if (check_names(p, g, names) < 0)
        return -1;

    int64_t v = 0;
    const char *str;
    if (!config_setting_get_member(g, "rate") || !config_setting_get_member(g, "duration"))
        return fail_at(p, g, "\"rate\" and \"duration\" are required");
    if (get_int(p, g, "rate", 1, 100000, &v) < 0)
        return -1;
    s->rate = (int)v;
    if (get_seconds(p, g, "duration", 3600, &s->duration_ms) < 0)
        return -1;
    v = 10;
    if (get_int(p, g, "batch", 1, 1000, &v) < 0)
        return -1;
    s->batch = (int)v;
    v = 50000;
    if (get_int(p, g, "max_inflight", 1, 1000000, &v) < 0)
        return -1;
    s->max_inflight = (int)v;
    str = "chaos";
    if (get_string(p, g, "topic", &str) < 0)
        return -1;
    s->topic = tl_xstrdup(str);
    v = 6;
    if (get_int(p, g, "partitions", 1, 1024, &v) < 0)
        return -1;
    s->partitions = (int)v;
    v = 100;
    if (get_int(p, g, "keys", 1, 1000000, &v) < 0)
        return -1;
    s->generated_keys = (int)v;
    s->drain_timeout_ms = 60000;
    if (get_seconds(p, g, "drain_timeout", 600, &s->drain_timeout_ms) < 0)
        return -1;

    str = "generated";
    if (get_string(p, g, "format", &str) < 0)
        return -1;
    if (strcmp(str, "generated") == 0)
        s->format = CHAOS_INPUT_GENERATED;
    else if (strcmp(str, "tsv") == 0)
        s->format = CHAOS_INPUT_TSV;
    else if (strcmp(str, "json") == 0)
        s->format = CHAOS_INPUT_JSON;
    else
        return fail_at(p, config_setting_get_member(g, "format"),
                       "\"%s\" is not a format; accepted: \"generated\", \"tsv\", \"json\"", str);

    const char *input = NULL, *column = NULL, *field = NULL;
    if (get_string(p, g, "input", &input) < 0 || get_string(p, g, "key_column", &column) < 0 ||
        get_string(p, g, "key_field", &field) < 0)
        return -1;
    if (s->format != CHAOS_INPUT_GENERATED && !input)
        return fail_at(p, g, "format \"%s\" needs \"input\", the path of the file", str);
    if (s->format == CHAOS_INPUT_TSV && !column)
        return fail_at(p, g, "format \"tsv\" needs \"key_column\", the header of the key column");
    if (s->format == CHAOS_INPUT_JSON && !field)
        return fail_at(p, g, "format \"json\" needs \"key_field\", the name of the key field");
    if (input) {
        char resolved[4096];
        if (input[0] == '/')
            snprintf(resolved, sizeof(resolved), "%s", input);
        else
            snprintf(resolved, sizeof(resolved), "%s/%s", repo_root, input);
        s->input = tl_xstrdup(resolved);
    }
    s->key_column = column ? tl_xstrdup(column) : NULL;
    s->key_field = field ? tl_xstrdup(field) : NULL;
    return 0;
}

static int parse_backend(struct parser *p, const config_setting_t *g, struct chaos_scenario *s)
{
    static const char *const names[] = {"type", "brokers", "base_port", "netns",
                                        "min_insync_replicas", NULL};
    s->backend = CHAOS_BACKEND_MOCK;
    s->brokers = 3;
    s->kafka_base_port = 31092;
    if (!g)
        return 0;
    if (check_names(p, g, names) < 0)
        return -1;

    const char *type = "mock";
    int64_t v;
    if (get_string(p, g, "type", &type) < 0)
        return -1;
    if (strcmp(type, "mock") == 0)
        s->backend = CHAOS_BACKEND_MOCK;
    else if (strcmp(type, "kafka") == 0)
        s->backend = CHAOS_BACKEND_KAFKA;
    else
        return fail_at(p, config_setting_get_member(g, "type"),
                       "\"%s\" is not a backend; accepted: \"mock\", \"kafka\"", type);
    if (s->backend == CHAOS_BACKEND_KAFKA)
        s->brokers = 1;
    v = s->brokers;
    if (get_int(p, g, "brokers", 1, 9, &v) < 0)
        return -1;
    s->brokers = (int)v;
    v = s->kafka_base_port;
    if (get_int(p, g, "base_port", 1024, 65000, &v) < 0)
        return -1;
    s->kafka_base_port = (int)v;
    v = 0;
    if (get_int(p, g, "min_insync_replicas", 0, 9, &v) < 0)
        return -1;
    s->min_insync_replicas = (int)v;
    if (get_bool(p, g, "netns", &s->netns) < 0)
        return -1;
    if (s->netns && s->backend != CHAOS_BACKEND_KAFKA)
        return fail_at(p, config_setting_get_member(g, "netns"),
                       "network namespaces need type = \"kafka\"");
    return 0;
}

static int parse_agent(struct parser *p, const config_setting_t *g, struct chaos_scenario *s)
{
    static const char *const reserved[] = {"id", "home_region", "data_dir", NULL};
    static const char *const groups[] = {"wal", "breaker", "heartbeat", "properties",
                                         "wal_tmpfs_mb", NULL};

    for (size_t k = 0; g && reserved[k]; k++) {
        const config_setting_t *r = config_setting_get_member(g, reserved[k]);
        if (r)
            return fail_at(p, r, "the harness sets this agent setting itself; remove it");
    }
    if (copy_scalars(p, g, groups, &s->agent_settings) < 0)
        return -1;

    const config_setting_t *wal = g ? config_setting_get_member(g, "wal") : NULL;
    const config_setting_t *breaker = g ? config_setting_get_member(g, "breaker") : NULL;
    const config_setting_t *heartbeat = g ? config_setting_get_member(g, "heartbeat") : NULL;
    static const char *const wal_skip[] = {"dir", NULL};
    if (wal && config_setting_get_member(wal, "dir"))
        return fail_at(p, config_setting_get_member(wal, "dir"),
                       "the harness sets wal.dir; use agent.wal_tmpfs_mb for a small file system");
    if (copy_scalars(p, wal, wal_skip, &s->wal_settings) < 0 ||
        copy_scalars(p, breaker, NULL, &s->breaker_settings) < 0 ||
        copy_scalars(p, heartbeat, NULL, &s->heartbeat_settings) < 0)
        return -1;

    int64_t v = 0;
    if (g && get_int(p, g, "wal_tmpfs_mb", 0, 4096, &v) < 0)
        return -1;
    s->wal_tmpfs_mb = (int)v;

    const config_setting_t *props = g ? config_setting_get_member(g, "properties") : NULL;
    if (props) {
        if (config_setting_type(props) != CONFIG_TYPE_ARRAY)
            return fail_at(p, props, "expected an array of \"name=value\" strings");
        s->region_property_count = (size_t)config_setting_length(props);
        s->region_properties = tl_xcalloc(s->region_property_count + 1, sizeof(char *));
        for (size_t i = 0; i < s->region_property_count; i++) {
            const char *prop = config_setting_get_string_elem(props, (int)i);
            if (!prop || !strchr(prop, '=') || strpbrk(prop, "\"\\\n"))
                return fail_at(p, props, "entry %zu is not a \"name=value\" string", i);
            s->region_properties[i] = tl_xstrdup(prop);
        }
    }
    return 0;
}

static int compare_faults(const void *a, const void *b)
{
    const struct chaos_fault *x = a, *y = b;
    return x->at_ms < y->at_ms ? -1 : x->at_ms > y->at_ms;
}

static int parse_fault(struct parser *p, const config_setting_t *g, struct chaos_scenario *s,
                       size_t *cap)
{
    static const char *const names[] = {"at", "action", "region", "duration", "repeat", "every",
                                        "broker", "latency_ms", "error", "count", NULL};
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return fail_at(p, g, "expected a group { at = ...; action = ...; }");
    if (check_names(p, g, names) < 0)
        return -1;

    struct chaos_fault f = {.region = -1, .broker = 1, .error_count = 50};
    const char *action = NULL, *region = NULL, *error = "NOT_ENOUGH_REPLICAS";
    int64_t v, repeat = 1, every_ms = 0;
    if (get_string(p, g, "action", &action) < 0 || !action)
        return action ? -1 : fail_at(p, g, "\"action\" is required");
    f.action = CHAOS_ACTION_COUNT;
    for (int a = 0; a < CHAOS_ACTION_COUNT; a++) {
        if (strcmp(action, ACTION_NAMES[a]) == 0)
            f.action = (enum chaos_action)a;
    }
    if (f.action == CHAOS_ACTION_COUNT)
        return fail_at(p, config_setting_get_member(g, "action"),
                       "\"%s\" is not an action; accepted: region-down, region-hang, broker-kill, "
                       "partition, latency, agent-kill, disk-full, produce-errors", action);
    if (!config_setting_get_member(g, "at"))
        return fail_at(p, g, "\"at\" (seconds after the load starts) is required");
    if (get_seconds(p, g, "at", 3600, &f.at_ms) < 0)
        return -1;
    f.duration_ms = 5000;
    if (get_seconds(p, g, "duration", 3600, &f.duration_ms) < 0)
        return -1;
    if (get_string(p, g, "region", &region) < 0)
        return -1;
    if (chaos_action_has_region(f.action)) {
        if (!region)
            return fail_at(p, g, "action %s needs \"region\"", action);
        f.region = region_index(p, config_setting_get_member(g, "region"), region);
        if (f.region < 0)
            return -1;
    } else if (region) {
        return fail_at(p, config_setting_get_member(g, "region"),
                       "action %s acts on the agent, not on a region; remove \"region\"", action);
    }
    v = 1;
    if (get_int(p, g, "broker", 1, 9, &v) < 0)
        return -1;
    f.broker = (int)v;
    if (f.action == CHAOS_BROKER_KILL && f.broker > s->brokers)
        return fail_at(p, config_setting_get_member(g, "broker"),
                       "broker %d does not exist; the backend runs %d per region", f.broker,
                       s->brokers);
    v = 500;
    if (get_int(p, g, "latency_ms", 1, 60000, &v) < 0)
        return -1;
    f.latency_ms = (int)v;
    v = 50;
    if (get_int(p, g, "count", 1, 1000000, &v) < 0)
        return -1;
    f.error_count = (int)v;
    if (get_string(p, g, "error", &error) < 0)
        return -1;
    snprintf(f.error_name, sizeof(f.error_name), "%s", error);
    if (get_int(p, g, "repeat", 1, MAX_FAULTS, &repeat) < 0 ||
        get_seconds(p, g, "every", 3600, &every_ms) < 0)
        return -1;
    if (repeat > 1 && every_ms <= f.duration_ms)
        return fail_at(p, g, "\"every\" must exceed \"duration\" so that repeated faults do not "
                       "overlap");

    if (f.action == CHAOS_PARTITION && !s->netns)
        return fail_at(p, g, "partition needs backend type = \"kafka\" with netns = true");
    if (f.action == CHAOS_PRODUCE_ERRORS && s->backend != CHAOS_BACKEND_MOCK)
        return fail_at(p, g, "produce-errors needs backend type = \"mock\"");
    if (f.action == CHAOS_LATENCY && s->backend == CHAOS_BACKEND_KAFKA && !s->netns)
        return fail_at(p, g, "latency on kafka needs netns = true (tc netem)");
    if (f.action == CHAOS_DISK_FULL && s->wal_tmpfs_mb == 0)
        return fail_at(p, g, "disk-full needs agent.wal_tmpfs_mb, the size of the WAL's tmpfs");

    for (int64_t i = 0; i < repeat; i++) {
        if (s->fault_count == MAX_FAULTS)
            return fail_at(p, g, "more than %d faults in one scenario", MAX_FAULTS);
        if (s->fault_count == *cap) {
            *cap = *cap ? *cap * 2 : 8;
            s->faults = tl_xrealloc(s->faults, *cap * sizeof(*s->faults));
        }
        s->faults[s->fault_count] = f;
        s->faults[s->fault_count].at_ms = f.at_ms + i * every_ms;
        if (s->faults[s->fault_count].at_ms + f.duration_ms > s->duration_ms)
            return fail_at(p, g, "the fault ends at %.1f s, after the load (load.duration %.1f s); "
                           "faults must heal while the load runs",
                           (double)(s->faults[s->fault_count].at_ms + f.duration_ms) / 1000,
                           (double)s->duration_ms / 1000);
        s->fault_count++;
    }
    return 0;
}

static int parse_expect(struct parser *p, const config_setting_t *g, struct chaos_expect *e)
{
    static const char *const names[] = {"max_missing", "max_order_violations", "max_unexpected",
                                        "max_rto_ms", "max_stall_ms", "converge_within",
                                        "min_acknowledged", "agent_stays_up", NULL};
    *e = (struct chaos_expect){.max_missing = 0, .max_order_violations = 0,
                               .max_unexpected = 0, .max_rto_ms = -1, .max_stall_ms = -1,
                               .converge_within_ms = 60000, .min_acknowledged = 1,
                               .agent_stays_up = true};
    if (!g)
        return 0;
    if (check_names(p, g, names) < 0)
        return -1;
    const int64_t big = INT64_C(1) << 40;
    if (get_int(p, g, "max_missing", -1, big, &e->max_missing) < 0 ||
        get_int(p, g, "max_order_violations", -1, big, &e->max_order_violations) < 0 ||
        get_int(p, g, "max_unexpected", -1, big, &e->max_unexpected) < 0 ||
        get_int(p, g, "max_rto_ms", -1, big, &e->max_rto_ms) < 0 ||
        get_int(p, g, "max_stall_ms", -1, big, &e->max_stall_ms) < 0 ||
        get_int(p, g, "min_acknowledged", 0, big, &e->min_acknowledged) < 0 ||
        get_seconds(p, g, "converge_within", 3600, &e->converge_within_ms) < 0 ||
        get_bool(p, g, "agent_stays_up", &e->agent_stays_up) < 0)
        return -1;
    return 0;
}

int chaos_scenario_load(const char *path, const char *repo_root, struct chaos_scenario *out,
                        char *err, size_t errsize)
{
    static const char *const names[] = {"description", "load", "backend", "agent", "faults",
                                        "expect", NULL};
    struct parser p = {.file = path, .err = err, .errsize = errsize};
    struct chaos_scenario s = {0};
    config_t cfg;
    int rc = -1;

    config_init(&cfg);
    if (config_read_file(&cfg, path) != CONFIG_TRUE) {
        if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
            snprintf(err, errsize, "%s: cannot read the scenario file", path);
        else
            snprintf(err, errsize, "%s:%d: %s", path, config_error_line(&cfg),
                     config_error_text(&cfg));
        goto out;
    }
    const config_setting_t *root = config_root_setting(&cfg);
    if (check_names(&p, root, names) < 0)
        goto out;

    s.path = tl_xstrdup(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    s.name = tl_xstrdup(base);
    char *dot = strstr(s.name, ".conf");
    if (dot)
        *dot = '\0';
    const char *description = "";
    if (get_string(&p, root, "description", &description) < 0)
        goto out;
    s.description = tl_xstrdup(description);

    if (parse_load(&p, config_lookup(&cfg, "load"), repo_root, &s) < 0 ||
        parse_backend(&p, config_lookup(&cfg, "backend"), &s) < 0 ||
        parse_agent(&p, config_lookup(&cfg, "agent"), &s) < 0 ||
        parse_expect(&p, config_lookup(&cfg, "expect"), &s.expect) < 0)
        goto out;

    const config_setting_t *faults = config_lookup(&cfg, "faults");
    size_t cap = 0;
    if (faults && config_setting_type(faults) != CONFIG_TYPE_LIST) {
        fail_at(&p, faults, "expected a list ( { ... }, { ... } )");
        goto out;
    }
    for (int i = 0; faults && i < config_setting_length(faults); i++) {
        if (parse_fault(&p, config_setting_get_elem(faults, (unsigned)i), &s, &cap) < 0)
            goto out;
    }
    if (s.fault_count)
        qsort(s.faults, s.fault_count, sizeof(*s.faults), compare_faults);

    *out = s;
    rc = 0;
out:
    if (rc != 0)
        chaos_scenario_free(&s);
    config_destroy(&cfg);
    return rc;
}

void chaos_scenario_free(struct chaos_scenario *s)
{
    free(s->path);
    free(s->name);
    free(s->description);
    free(s->topic);
    free(s->input);
    free(s->key_column);
    free(s->key_field);
    free(s->agent_settings);
    free(s->wal_settings);
    free(s->breaker_settings);
    free(s->heartbeat_settings);
    for (size_t i = 0; i < s->region_property_count; i++)
        free(s->region_properties[i]);
    free(s->region_properties);
    free(s->faults);
    memset(s, 0, sizeof(*s));
}
