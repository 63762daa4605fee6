/*
 * Configuration loader: reads the agent's libconfig file and validates every setting.
 *
 * Loading runs in three steps:
 *
 *   1. The file is read into memory (at most TL_CONFIG_MAX_FILE_BYTES) and parsed with
 *      libconfig 1.5, which reports syntax errors with a line number.
 *   2. The text is scanned once more for integer literals that do not fit in 32 bits and
 *      carry no L suffix. libconfig 1.5 reads such a literal through atoi() and silently keeps
 *      the low 32 bits, so "max_inflight_bytes = 4296015872" would become 1 MiB. The loader
 *      rejects these literals when it reads the setting that contains one.
 *   3. Each section is checked in the order agent, listen, admin, wal, breaker, regions,
 *      topics, heartbeat, together with the settings that refer to other sections (agent.home_region,
 *      topic replication factors). wal comes after listen because a WAL segment must hold the
 *      largest event. heartbeat comes last because its topic must differ from every event
 *      topic and its interval must be shorter than breaker.rto_target_ms. The first problem
 *      found stops loading.
 *
 * Every group rejects settings it does not know, so a misspelt name is reported instead of
 * silently falling back to its default. Every message has the form
 *
 *   FILE:LINE: SETTING: what is wrong with the value found; what is accepted
 *
 * where SETTING is the libconfig path of the setting ("regions.[1].bootstrap"). A missing
 * setting is reported at the line of its group. Values of librdkafka properties whose name
 * contains "password", "secret", "sasl.jaas" or "key" never appear in a message.
 *
 * The result is built in a local struct tl_config and copied to the caller only when every
 * check passed, so a failed load leaves nothing to free. Loading runs on the main thread
 * before any other thread starts.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libconfig.h>
#include <librdkafka/rdkafka.h>

#include "error.h"
#include "mem.h"

#define KIB (1024LL)
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)
#define TIB (1024LL * GIB)

/* Cap on the size of a configuration file, checked before the file is read into memory. */
#define TL_CONFIG_MAX_FILE_BYTES (8 * MIB)

#define AGENT_ID_MAX 64
#define REGION_NAME_MAX 32

/*
 * Room that a WAL segment needs besides the event itself, for the segment header and the
 * header of one record. A segment must have room for listen.max_event_bytes plus this.
 */
#define WAL_RECORD_OVERHEAD_BYTES 4096

#define WAL_DEFAULT_SEGMENT_BYTES (64 * MIB)
#define WAL_MAX_SEGMENT_BYTES GIB
#define WAL_DEFAULT_MAX_BYTES (8 * GIB)

/* Leaving wal.max_bytes or wal.segment_bytes out never makes the other one invalid. */
_Static_assert(WAL_DEFAULT_MAX_BYTES >= 2 * WAL_MAX_SEGMENT_BYTES,
               "the default WAL quota must hold two segments of the largest size");
_Static_assert(WAL_DEFAULT_SEGMENT_BYTES >= MIB + WAL_RECORD_OVERHEAD_BYTES,
               "the default WAL segment must hold an event of the default max_event_bytes");

/*
 * Time the RTO check allows for failover after a hung region is detected, while the breaker
 * opens and acknowledgements resume from the other region under agent.ack. A hung region is
 * detected after breaker.stall_timeout_ms, so stall_timeout_ms + BREAKER_FAILOVER_MS must not
 * exceed breaker.rto_target_ms.
 */
#define BREAKER_FAILOVER_MS 1000

#define BREAKER_MIN_STALL_TIMEOUT_MS 100
#define BREAKER_DEFAULT_STALL_TIMEOUT_MS 1500
#define BREAKER_DEFAULT_OPEN_MS 1000
#define BREAKER_DEFAULT_OPEN_MAX_MS 30000
#define BREAKER_DEFAULT_RTO_TARGET_MS 3000
#define HEARTBEAT_DEFAULT_TOPIC "twinlane.heartbeats"
#define HEARTBEAT_DEFAULT_INTERVAL_MS 1000

/* These keep the defaults within the cross-setting checks, so leaving settings out passes. */
_Static_assert(BREAKER_DEFAULT_STALL_TIMEOUT_MS + BREAKER_FAILOVER_MS <=
               BREAKER_DEFAULT_RTO_TARGET_MS,
               "the default stall timeout must meet the default RTO target");
_Static_assert(BREAKER_DEFAULT_OPEN_MAX_MS >= BREAKER_DEFAULT_OPEN_MS,
               "the default longest OPEN interval must not be below the default first one");
/* Every rto_target_ms that passes the RTO check is above the default heartbeat interval. */
_Static_assert(HEARTBEAT_DEFAULT_INTERVAL_MS <
               BREAKER_MIN_STALL_TIMEOUT_MS + BREAKER_FAILOVER_MS,
               "the default heartbeat interval must be below every accepted RTO target");

/* Maximum length of a socket path, so that it fits in sockaddr_un.sun_path with its NUL. */
#define UNIX_PATH_MAX_LEN (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* An integer literal that libconfig 1.5 truncated to 32 bits. */
struct wide_literal {
    unsigned int line;
    int parsed;       /* the value libconfig stored */
    char text[32];    /* the literal as written, cut at 31 characters */
};

/* State shared by the checks of one load. */
struct loader {
    const char *name;   /* file name shown in messages */
    char *err;
    size_t errsize;
    struct wide_literal *wide;
    size_t wide_count;
};

static const char *const ROOT_SETTINGS[] = {
    "agent", "wal", "breaker", "heartbeat", "listen", "regions", "topics", "admin", NULL};
static const char *const AGENT_SETTINGS[] = {
    "id", "home_region", "data_dir", "log_level", "shutdown_timeout_ms", "start_wait_ms",
    "max_inflight_events", "max_inflight_bytes", "ack", "when_no_region", NULL};
static const char *const WAL_SETTINGS[] = {
    "dir", "fsync", "fsync_interval_ms", "segment_bytes", "max_bytes", "when_full", NULL};
static const char *const BREAKER_SETTINGS[] = {
    "consecutive_failures", "failure_rate_percent", "rate_window_ms", "min_volume",
    "stall_timeout_ms", "open_ms", "open_max_ms", "probes_to_close", "rto_target_ms",
    "backfill_events_per_sec", NULL};
static const char *const HEARTBEAT_SETTINGS[] = {"topic", "interval_ms", NULL};
static const char *const LISTEN_SETTINGS[] = {
    "unix", "tcp", "max_frame_bytes", "max_event_bytes", "max_connections", NULL};
static const char *const ADMIN_SETTINGS[] = {
    "unix", "tcp", "token_file", "max_connections", "connection_timeout_ms", NULL};
static const char *const REGION_SETTINGS[] = {
    "name", "bootstrap", "embedded_brokers", "properties", NULL};
static const char *const TOPIC_SETTINGS[] = {
    "name", "partitions", "replication_factor", NULL};

/* librdkafka properties that the agent sets itself, with the reason shown to the user. */
static const struct {
    const char *name;
    const char *reason;
} OWNED_PROPERTIES[] = {
    {"bootstrap.servers", "the agent sets it from the region's bootstrap setting; put the "
                          "broker list in bootstrap"},
    {"metadata.broker.list", "the agent sets it from the region's bootstrap setting; put the "
                             "broker list in bootstrap"},
    {"enable.idempotence", "the agent always runs the idempotent producer; remove it"},
    {"acks", "the agent sets acks=all, which the idempotent producer requires; remove it"},
    {"request.required.acks", "the agent sets acks=all, which the idempotent producer "
                              "requires; remove it"},
    {"partitioner", "the agent computes the partition of every event itself; remove it"},
    {"transactional.id", "the agent does not use Kafka transactions; remove it"},
};

/* The accepted strings of a setting that selects one of a few values, ended by a NULL name. */
struct choice {
    const char *name;
    int value;
};

static const struct choice ACK_CHOICES[] = {
    {"all", TL_ACK_ALL}, {"one", TL_ACK_ONE}, {"local", TL_ACK_LOCAL}, {NULL, 0}};
static const struct choice FSYNC_CHOICES[] = {
    {"always", TL_FSYNC_ALWAYS}, {"interval", TL_FSYNC_INTERVAL}, {"off", TL_FSYNC_OFF},
    {NULL, 0}};
static const struct choice WHEN_FULL_CHOICES[] = {
    {"reject", TL_WHEN_FULL_REJECT}, {"shed", TL_WHEN_FULL_SHED}, {NULL, 0}};
static const struct choice NO_REGION_CHOICES[] = {
    {"spool", TL_NO_REGION_SPOOL}, {"reject", TL_NO_REGION_REJECT}, {NULL, 0}};

/* Name fragments that mark a property value as secret. */
static const char *const SECRET_FRAGMENTS[] = {"password", "secret", "sasl.jaas", "key"};

/* --- Messages ---------------------------------------------------------------------------- */

/* Writes the libconfig path of s ("regions.[1].name") into buf. */
static void setting_path(const config_setting_t *s, char *buf, size_t size)
{
    const config_setting_t *chain[16];
    size_t depth = 0;

    for (const config_setting_t *p = s; p && !config_setting_is_root(p); p = p->parent) {
        if (depth == sizeof(chain) / sizeof(chain[0]))
            break;
        chain[depth++] = p;
    }

    size_t used = 0;
    buf[0] = '\0';
    while (depth > 0 && used < size) {
        const config_setting_t *p = chain[--depth];
        const char *dot = used > 0 ? "." : "";
        int n;
        if (config_setting_name(p))
            n = snprintf(buf + used, size - used, "%s%s", dot, config_setting_name(p));
        else
            n = snprintf(buf + used, size - used, "%s[%d]", dot, config_setting_index(p));
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/*
 * Formats "FILE:LINE: PATH: message" into the caller's buffer and returns TL_EINVAL. PATH is
 * the path of at, followed by ".member" when member is non-NULL. The line is that of at, and
 * is left out when at is the root, which has no line.
 */
static int reject(struct loader *ld, const config_setting_t *at, const char *member,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int reject(struct loader *ld, const config_setting_t *at, const char *member,
                  const char *fmt, ...)
{
    char path[256];
    char message[768];
    va_list ap;

    setting_path(at, path, sizeof(path));
    if (member) {
        size_t used = strlen(path);
        snprintf(path + used, sizeof(path) - used, "%s%s", used > 0 ? "." : "", member);
    }

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);

    const char *file = config_setting_source_file(at) ? config_setting_source_file(at)
                                                      : ld->name;
    unsigned int line = config_setting_source_line(at);
    if (line == 0)
        return tl_error(ld->err, ld->errsize, TL_EINVAL, "%s: %s: %s", file, path, message);
    return tl_error(ld->err, ld->errsize, TL_EINVAL, "%s:%u: %s: %s", file, line, path,
                    message);
}

/*
 * Writes s[0..len) in double quotes into buf, with control and non-ASCII bytes as \xNN and a
 * long value cut to its first 64 bytes followed by "...".
 */
static const char *quote_n(const char *s, size_t len, char *buf, size_t size)
{
    size_t used = 0;
    size_t limit = size - 8;   /* room for an escape, "...", the closing quote and NUL */

    buf[used++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 64 || used >= limit) {
            memcpy(buf + used, "...", 3);
            used += 3;
            break;
        }
        if (c < 0x20 || c >= 0x7f)
            used += (size_t)snprintf(buf + used, size - used, "\\x%02x", c);
        else if (c == '"' || c == '\\')
            used += (size_t)snprintf(buf + used, size - used, "\\%c", c);
        else
            buf[used++] = (char)c;
    }
    buf[used++] = '"';
    buf[used] = '\0';
    return buf;
}

static const char *quote(const char *s, char *buf, size_t size)
{
    return quote_n(s, strlen(s), buf, size);
}

/* Describes the value of s for a type error: "an integer (42)", "a group". */
static const char *describe_value(const config_setting_t *s, char *buf, size_t size)
{
    char quoted[96];

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(buf, size, "an integer (%lld)", config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, size, "a floating-point number (%g)", config_setting_get_float(s));
        break;
    case CONFIG_TYPE_BOOL:
        snprintf(buf, size, "a boolean (%s)", config_setting_get_bool(s) ? "true" : "false");
        break;
    case CONFIG_TYPE_STRING:
        snprintf(buf, size, "a string (%s)",
                 quote(config_setting_get_string(s), quoted, sizeof(quoted)));
        break;
    case CONFIG_TYPE_GROUP:
        snprintf(buf, size, "a group { ... }");
        break;
    case CONFIG_TYPE_ARRAY:
        snprintf(buf, size, "an array [ ... ]");
        break;
    case CONFIG_TYPE_LIST:
        snprintf(buf, size, "a list ( ... )");
        break;
    default:
        snprintf(buf, size, "a value of unknown type");
        break;
    }
    return buf;
}

static void join_names(const char *const *names, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; names[i] && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i > 0 ? ", " : "", names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Writes the names of choices as a list for a message: "\"a\", \"b\" or \"c\"". */
static void join_choices(const struct choice *choices, char *buf, size_t size)
{
    size_t count = 0;
    while (choices[count].name)
        count++;

    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count && used < size; i++) {
        const char *separator = ", ";
        if (i == 0)
            separator = "";
        else if (i + 1 == count)
            separator = " or ";
        int n = snprintf(buf + used, size - used, "%s\"%s\"", separator, choices[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static const char *choice_name(const struct choice *choices, int value)
{
    for (size_t i = 0; choices[i].name; i++) {
        if (choices[i].value == value)
            return choices[i].name;
    }
    return "?";
}

/* --- Integer literals that libconfig 1.5 truncates ---------------------------------------- */

static void record_wide_literal(struct loader *ld, unsigned int line, const char *start,
                                size_t len, bool hex)
{
    ld->wide = tl_xrealloc(ld->wide, (ld->wide_count + 1) * sizeof(ld->wide[0]));
    struct wide_literal *w = &ld->wide[ld->wide_count++];

    if (len >= sizeof(w->text))
        len = sizeof(w->text) - 1;
    memcpy(w->text, start, len);
    w->text[len] = '\0';
    w->line = line;

    /* Reproduce libconfig 1.5's scanner: atoi() for decimal, strtoul() for hex, then int. */
    w->parsed = hex ? (int)strtoul(w->text, NULL, 16) : (int)strtol(w->text, NULL, 10);
}

/*
 * Scans a number token starting at text[*pos] (an optional sign, then a digit) and records
 * it when it is an integer without L suffix outside the range of int.
 */
static void scan_number(struct loader *ld, const char *text, size_t *pos, unsigned int line)
{
    size_t start = *pos;
    size_t p = start;
    bool negative = false;

    if (text[p] == '-' || text[p] == '+') {
        negative = text[p] == '-';
        p++;
    }

    bool hex = text[p] == '0' && (text[p + 1] == 'x' || text[p + 1] == 'X');
    if (hex) {
        p += 2;
        while (isxdigit((unsigned char)text[p]))
            p++;
    } else {
        while (isdigit((unsigned char)text[p]))
            p++;
        if (text[p] == '.' || text[p] == 'e' || text[p] == 'E') {
            /* A floating-point literal: skip it whole. */
            while (isdigit((unsigned char)text[p]) || strchr(".eE+-", text[p]))
                p++;
            *pos = p;
            return;
        }
    }
    *pos = p;
    if (text[p] == 'L')
        return;

    errno = 0;
    bool wide;
    if (hex) {
        unsigned long long v = strtoull(text + start + (negative || text[start] == '+'),
                                        NULL, 16);
        wide = errno == ERANGE || v > INT_MAX;
    } else {
        long long v = strtoll(text + start, NULL, 10);
        wide = errno == ERANGE || v < INT_MIN || v > INT_MAX;
    }
    if (wide)
        record_wide_literal(ld, line, text + start, p - start, hex);
}

/* Finds integer literals in text that libconfig 1.5 truncates, skipping strings and comments. */
static void scan_wide_literals(struct loader *ld, const char *text)
{
    unsigned int line = 1;
    size_t p = 0;

    while (text[p] != '\0') {
        char c = text[p];

        if (c == '\n') {
            line++;
            p++;
        } else if (c == '"') {
            for (p++; text[p] != '\0' && text[p] != '"'; p++) {
                if (text[p] == '\\' && text[p + 1] != '\0')
                    p++;
                else if (text[p] == '\n')
                    line++;
            }
            if (text[p] == '"')
                p++;
        } else if (c == '#' || (c == '/' && text[p + 1] == '/')) {
            while (text[p] != '\0' && text[p] != '\n')
                p++;
        } else if (c == '/' && text[p + 1] == '*') {
            for (p += 2; text[p] != '\0' && !(text[p] == '*' && text[p + 1] == '/'); p++) {
                if (text[p] == '\n')
                    line++;
            }
            if (text[p] != '\0')
                p += 2;
        } else if (isalpha((unsigned char)c) || c == '*' || c == '_') {
            /* A setting name, which may contain digits and '-'. */
            while (isalnum((unsigned char)text[p]) || strchr("-_*", text[p]) != NULL)
                p++;
        } else if (isdigit((unsigned char)c) ||
                   ((c == '-' || c == '+') && isdigit((unsigned char)text[p + 1]))) {
            scan_number(ld, text, &p, line);
        } else {
            p++;
        }
    }
}

/* --- Typed access to settings ------------------------------------------------------------- */

/* Rejects any member of group whose name is not in accepted. */
static int check_members(struct loader *ld, const config_setting_t *group,
                         const char *const *accepted)
{
    int count = config_setting_length(group);

    for (int i = 0; i < count; i++) {
        const config_setting_t *member = config_setting_get_elem(group, (unsigned int)i);
        const char *name = config_setting_name(member);
        bool known = false;
        for (size_t k = 0; accepted[k] && !known; k++)
            known = strcmp(name, accepted[k]) == 0;
        if (known)
            continue;

        char names[256];
        join_names(accepted, names, sizeof(names));
        return reject(ld, member, NULL, "unknown setting; the accepted settings here are: %s",
                      names);
    }
    return 0;
}

static int check_type(struct loader *ld, const config_setting_t *s, int type,
                      const char *expected)
{
    char found[160];

    if (config_setting_type(s) == type)
        return 0;
    return reject(ld, s, NULL, "expected %s, found %s", expected,
                  describe_value(s, found, sizeof(found)));
}

/* Looks up a member that must be a group { ... }. *out is NULL when it is absent. */
static int get_group(struct loader *ld, const config_setting_t *parent, const char *name,
                     bool required, config_setting_t **out)
{
    *out = config_setting_get_member(parent, name);
    if (!*out && required)
        return reject(ld, parent, name, "missing; add a group: %s = { ... };", name);
    if (!*out)
        return 0;
    return check_type(ld, *out, CONFIG_TYPE_GROUP, "a group { ... }");
}

/* Looks up a member that must be a list ( ... ). */
static int get_list(struct loader *ld, const config_setting_t *parent, const char *name,
                    config_setting_t **out)
{
    *out = config_setting_get_member(parent, name);
    if (!*out)
        return reject(ld, parent, name, "missing; add a list of groups: %s = ( { ... } );",
                      name);
    return check_type(ld, *out, CONFIG_TYPE_LIST, "a list of groups ( { ... }, { ... } )");
}

/*
 * Looks up a string member. *out is NULL (and *setting too, when non-NULL) when the member is
 * absent and not required. group may be NULL for an optional group that was left out, and
 * then the member counts as absent.
 */
static int get_string(struct loader *ld, const config_setting_t *group, const char *name,
                      bool required, const char **out, const config_setting_t **setting)
{
    const config_setting_t *s = group ? config_setting_get_member(group, name) : NULL;

    *out = NULL;
    if (setting)
        *setting = s;
    if (!s && required)
        return reject(ld, group, name, "missing; this setting is required");
    if (!s)
        return 0;

    int rc = check_type(ld, s, CONFIG_TYPE_STRING, "a string in double quotes");
    if (rc != 0)
        return rc;
    *out = config_setting_get_string(s);
    return 0;
}

/* Writes a size in bytes as "4 MiB" when it is a whole number of KiB, MiB, GiB or TiB. */
static const char *format_bytes(long long bytes, char *buf, size_t size)
{
    if (bytes >= TIB && bytes % TIB == 0)
        snprintf(buf, size, "%lld (%lld TiB)", bytes, bytes / TIB);
    else if (bytes >= GIB && bytes % GIB == 0)
        snprintf(buf, size, "%lld (%lld GiB)", bytes, bytes / GIB);
    else if (bytes >= MIB && bytes % MIB == 0)
        snprintf(buf, size, "%lld (%lld MiB)", bytes, bytes / MIB);
    else if (bytes >= KIB && bytes % KIB == 0)
        snprintf(buf, size, "%lld (%lld KiB)", bytes, bytes / KIB);
    else
        snprintf(buf, size, "%lld", bytes);
    return buf;
}

/*
 * Reads an integer member in [min, max], or def when it is absent. bytes selects the KiB/MiB
 * form of the limits in messages. *setting (when non-NULL) receives the member or NULL.
 * group may be NULL, as for get_string.
 */
static int get_integer(struct loader *ld, const config_setting_t *group, const char *name,
                       long long min, long long max, long long def, bool bytes,
                       long long *out, const config_setting_t **setting)
{
    const config_setting_t *s = group ? config_setting_get_member(group, name) : NULL;

    *out = def;
    if (setting)
        *setting = s;
    if (!s)
        return 0;

    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        char found[160];
        return reject(ld, s, NULL, "expected an integer, found %s",
                      describe_value(s, found, sizeof(found)));
    }

    long long value = config_setting_get_int64(s);
    if (type == CONFIG_TYPE_INT) {
        for (size_t i = 0; i < ld->wide_count; i++) {
            const struct wide_literal *w = &ld->wide[i];
            if (w->line != config_setting_source_line(s) || w->parsed != (int)value)
                continue;
            return reject(ld, s, NULL,
                          "%s does not fit in 32 bits, and libconfig 1.5 reads it as %d; "
                          "write %sL for a 64-bit integer",
                          w->text, w->parsed, w->text);
        }
    }

    if (value >= min && value <= max) {
        *out = value;
        return 0;
    }
    if (!bytes)
        return reject(ld, s, NULL, "%lld is out of range; accepted values are %lld to %lld",
                      value, min, max);

    char low[48];
    char high[48];
    return reject(ld, s, NULL, "%lld is out of range; accepted values are %s to %s bytes",
                  value, format_bytes(min, low, sizeof(low)),
                  format_bytes(max, high, sizeof(high)));
}

/*
 * Reads a string member that must be the name of one of choices, or def when it is absent.
 * kind names the meaning of the value in messages ("an fsync mode"). *setting (when non-NULL)
 * receives the member or NULL. group may be NULL, as for get_string.
 */
static int get_choice(struct loader *ld, const config_setting_t *group, const char *name,
                      const struct choice *choices, int def, const char *kind, int *out,
                      const config_setting_t **setting)
{
    const char *value;
    const config_setting_t *s;

    *out = def;
    int rc = get_string(ld, group, name, false, &value, &s);
    if (setting)
        *setting = s;
    if (rc != 0 || !value)
        return rc;

    for (size_t i = 0; choices[i].name; i++) {
        if (strcmp(value, choices[i].name) == 0) {
            *out = choices[i].value;
            return 0;
        }
    }

    char quoted[96];
    char accepted[128];
    join_choices(choices, accepted, sizeof(accepted));
    return reject(ld, s, NULL, "%s is not %s; use %s", quote(value, quoted, sizeof(quoted)),
                  kind, accepted);
}

/* Returns the first byte of s[0..len) outside [A-Za-z0-9] and extra, or NULL. */
static const char *find_invalid_char(const char *s, size_t len, const char *extra)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && isalnum(c))
            continue;
        if (c != '\0' && strchr(extra, c))
            continue;
        return s + i;
    }
    return NULL;
}

/* Describes one byte for a message: 'x' when printable, else \xNN. */
static const char *describe_char(char c, char *buf, size_t size)
{
    unsigned char u = (unsigned char)c;
    if (u >= 0x20 && u < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte \\x%02x", u);
    return buf;
}

/* Checks a name against [A-Za-z0-9] plus extra, 1 to max characters. */
static int check_name(struct loader *ld, const config_setting_t *s, const char *value,
                      const char *extra, size_t max, const char *accepted)
{
    char quoted[96];
    size_t len = strlen(value);

    if (len == 0)
        return reject(ld, s, NULL, "empty; use 1 to %zu characters from %s", max, accepted);
    if (len > max)
        return reject(ld, s, NULL, "%s is %zu characters long; the maximum is %zu",
                      quote(value, quoted, sizeof(quoted)), len, max);

    const char *bad = find_invalid_char(value, len, extra);
    if (bad) {
        char ch[24];
        return reject(ld, s, NULL, "%s contains %s at position %zu; use only %s",
                      quote(value, quoted, sizeof(quoted)), describe_char(*bad, ch, sizeof(ch)),
                      (size_t)(bad - value) + 1, accepted);
    }
    return 0;
}

/* --- Addresses ---------------------------------------------------------------------------- */

/*
 * Parses a port number of 1 to 65535 written in decimal digits only. Returns false for
 * anything else, including an empty string and a sign.
 */
static bool parse_port(const char *s, size_t len, long *port)
{
    if (len == 0 || len > 5)
        return false;
    long value = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        value = value * 10 + (s[i] - '0');
    }
    *port = value;
    return value >= 1 && value <= 65535;
}

/*
 * Splits "host:port" or "[v6]:port" at the last colon. *host and *host_len exclude the
 * brackets. Returns false when there is no colon or the brackets do not match.
 */
static bool split_host_port(const char *s, size_t len, const char **host, size_t *host_len,
                            const char **port, size_t *port_len, bool *bracketed)
{
    *bracketed = len > 0 && s[0] == '[';
    if (*bracketed) {
        const char *close = memchr(s, ']', len);
        if (!close || close + 1 >= s + len || close[1] != ':')
            return false;
        *host = s + 1;
        *host_len = (size_t)(close - s) - 1;
        *port = close + 2;
        *port_len = len - (size_t)(*port - s);
        return true;
    }

    const char *colon = NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ':')
            colon = s + i;
    }
    if (!colon)
        return false;
    *host = s;
    *host_len = (size_t)(colon - s);
    *port = colon + 1;
    *port_len = len - (*host_len + 1);
    return true;
}

bool tl_config_is_loopback_host(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

/*
 * Parses a loopback "host:port" (listen.tcp, admin.tcp) into *host_out and *port_out.
 * why_loopback completes the message for a non-loopback address.
 */
static int parse_loopback_address(struct loader *ld, const config_setting_t *s,
                                  const char *value, const char *why_loopback, char **host_out,
                                  char **port_out)
{
    char quoted[96];
    const char *host;
    const char *port;
    size_t host_len;
    size_t port_len;
    bool bracketed;
    long port_number;
    size_t len = strlen(value);

    quote(value, quoted, sizeof(quoted));
    if (!split_host_port(value, len, &host, &host_len, &port, &port_len, &bracketed))
        return reject(ld, s, NULL, "%s is not host:port; write \"127.0.0.1:7411\" or "
                      "\"[::1]:7411\", or remove the setting to turn the TCP listener off",
                      quoted);
    if (!bracketed && memchr(host, ':', host_len))
        return reject(ld, s, NULL, "%s has an IPv6 address without brackets; write "
                      "\"[::1]:PORT\"", quoted);
    if (!parse_port(port, port_len, &port_number))
        return reject(ld, s, NULL, "%s has an invalid port; use a number from 1 to 65535",
                      quoted);

    char *host_copy = tl_xmemdup(host, host_len + 1);
    host_copy[host_len] = '\0';
    if (!tl_config_is_loopback_host(host_copy)) {
        free(host_copy);
        return reject(ld, s, NULL, "%s is not a loopback address; %s, so it accepts only "
                      "127.0.0.0/8, [::1] or localhost", quoted, why_loopback);
    }

    *host_out = host_copy;
    *port_out = tl_xmemdup(port, port_len + 1);
    (*port_out)[port_len] = '\0';
    return 0;
}

/* Checks a bootstrap list: comma-separated host:port entries, each with a port. */
static int check_bootstrap_list(struct loader *ld, const config_setting_t *s, const char *list)
{
    const char *entry = list;
    int index = 1;

    for (;;) {
        const char *end = strchr(entry, ',');
        size_t len = end ? (size_t)(end - entry) : strlen(entry);
        char quoted[96];
        char *copy = tl_xmemdup(entry, len + 1);
        copy[len] = '\0';
        quote(copy, quoted, sizeof(quoted));
        free(copy);

        const char *host;
        const char *port;
        size_t host_len;
        size_t port_len;
        bool bracketed;
        long port_number;
        if (len == 0)
            return reject(ld, s, NULL, "entry %d is empty; write host:port entries "
                          "separated by single commas", index);
        if (!split_host_port(entry, len, &host, &host_len, &port, &port_len, &bracketed) ||
            host_len == 0)
            return reject(ld, s, NULL, "entry %d, %s, is not host:port; write "
                          "\"broker1:9092,broker2:9092\" or \"embedded\"", index, quoted);
        if (!bracketed && memchr(host, ':', host_len))
            return reject(ld, s, NULL, "entry %d, %s, has an IPv6 address without brackets; "
                          "write \"[ADDRESS]:PORT\"", index, quoted);
        if (find_invalid_char(host, host_len, bracketed ? ":.%" : ".-_"))
            return reject(ld, s, NULL, "entry %d, %s, has an invalid host name; use a DNS "
                          "name, an IPv4 address or a bracketed IPv6 address", index, quoted);
        if (!parse_port(port, port_len, &port_number))
            return reject(ld, s, NULL, "entry %d, %s, has an invalid port; use a number from "
                          "1 to 65535", index, quoted);

        if (!end)
            return 0;
        entry = end + 1;
        index++;
    }
}

/* --- librdkafka properties ---------------------------------------------------------------- */

static bool is_secret_property(const char *name)
{
    for (size_t i = 0; i < sizeof(SECRET_FRAGMENTS) / sizeof(SECRET_FRAGMENTS[0]); i++) {
        if (strcasestr(name, SECRET_FRAGMENTS[i]))
            return true;
    }
    return false;
}

/*
 * Checks one "name=value" entry and stores its halves in region. scratch is a librdkafka
 * configuration that receives every property of the region, so librdkafka checks each name
 * and value exactly as it will when the producer is created.
 */
static int parse_property(struct loader *ld, const config_setting_t *s, rd_kafka_conf_t *scratch,
                          struct tl_region_config *region, size_t index)
{
    char quoted[96];
    char found[160];

    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return reject(ld, s, NULL, "expected a string \"name=value\", found %s",
                      describe_value(s, found, sizeof(found)));

    const char *text = config_setting_get_string(s);
    const char *eq = strchr(text, '=');
    if (!eq) {
        const char *entry = is_secret_property(text) ? "\"(value hidden)\""
                                                     : quote(text, quoted, sizeof(quoted));
        return reject(ld, s, NULL, "%s has no '='; write \"name=value\", for example "
                      "\"linger.ms=5\"", entry);
    }
    if (eq == text)
        return reject(ld, s, NULL, "the property name before '=' is empty; write "
                      "\"name=value\", for example \"linger.ms=5\"");

    size_t name_len = (size_t)(eq - text);
    char *name = tl_xmemdup(text, name_len + 1);
    name[name_len] = '\0';
    const char *value = eq + 1;
    bool secret = is_secret_property(name);
    int rc = 0;

    for (size_t i = 0; i < sizeof(OWNED_PROPERTIES) / sizeof(OWNED_PROPERTIES[0]); i++) {
        if (strcmp(name, OWNED_PROPERTIES[i].name) == 0) {
            rc = reject(ld, s, NULL, "property \"%s\" cannot be set here: %s", name,
                        OWNED_PROPERTIES[i].reason);
            goto out;
        }
    }

    for (size_t i = 0; i < index; i++) {
        if (strcmp(name, region->property_names[i]) == 0) {
            rc = reject(ld, s, NULL, "property \"%s\" is already set by properties.[%zu]; "
                        "keep one of them", name, i);
            goto out;
        }
    }

    char rd_error[512] = "";
    if (rd_kafka_conf_set(scratch, name, value, rd_error, sizeof(rd_error)) !=
        RD_KAFKA_CONF_OK) {
        /* librdkafka may quote the value in its text, so a secret one shows only the name. */
        if (secret && (value[0] == '\0' || strstr(rd_error, value)))
            snprintf(rd_error, sizeof(rd_error), "invalid value for property \"%s\"", name);
        rc = reject(ld, s, NULL, "librdkafka rejected \"%s=%s\": %s", name,
                    secret ? "(value hidden)" : value, rd_error);
        goto out;
    }

    region->property_names[index] = name;
    region->property_values[index] = tl_xstrdup(value);
    return 0;

out:
    free(name);
    return rc;
}

static int parse_properties(struct loader *ld, const config_setting_t *group,
                            struct tl_region_config *region)
{
    config_setting_t *list = config_setting_get_member(group, "properties");
    if (!list)
        return 0;

    int type = config_setting_type(list);
    if (type == CONFIG_TYPE_STRING)
        return reject(ld, list, NULL, "expected an array of \"name=value\" strings, found a "
                      "single string; write properties = [ \"name=value\" ];");
    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
        char found[160];
        return reject(ld, list, NULL, "expected an array of \"name=value\" strings, found %s",
                      describe_value(list, found, sizeof(found)));
    }

    size_t count = (size_t)config_setting_length(list);
    region->property_names = tl_xcalloc(count ? count : 1, sizeof(char *));
    region->property_values = tl_xcalloc(count ? count : 1, sizeof(char *));
    region->property_count = count;

    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = parse_property(ld, config_setting_get_elem(list, (unsigned int)i), scratch, region,
                            i);
    rd_kafka_conf_destroy(scratch);
    return rc;
}

/* --- Sections ----------------------------------------------------------------------------- */

static int parse_agent(struct loader *ld, const config_setting_t *root, struct tl_config *cfg,
                       const config_setting_t **home_setting,
                       const config_setting_t **data_dir_setting)
{
    config_setting_t *agent;
    const char *value;
    const config_setting_t *s;
    long long number;
    char quoted[96];

    int rc = get_group(ld, root, "agent", true, &agent);
    if (rc != 0)
        return rc;
    rc = check_members(ld, agent, AGENT_SETTINGS);
    if (rc != 0)
        return rc;

    rc = get_string(ld, agent, "id", true, &value, &s);
    if (rc != 0)
        return rc;
    rc = check_name(ld, s, value, "._-", AGENT_ID_MAX, "[A-Za-z0-9._-]");
    if (rc != 0)
        return rc;
    cfg->agent_id = tl_xstrdup(value);

    /* Checked against the regions once they are read. */
    rc = get_string(ld, agent, "home_region", true, &value, home_setting);
    if (rc != 0)
        return rc;
    cfg->home_region = tl_xstrdup(value);

    rc = get_string(ld, agent, "data_dir", true, &value, data_dir_setting);
    if (rc != 0)
        return rc;
    if (value[0] == '\0')
        return reject(ld, *data_dir_setting, NULL, "empty; set the directory where the agent "
                      "keeps its write-ahead log, for example \"/var/lib/twinlane\"");
    cfg->data_dir = tl_xstrdup(value);

    cfg->log_level = TL_LOG_INFO;
    rc = get_string(ld, agent, "log_level", false, &value, &s);
    if (rc != 0)
        return rc;
    if (value && !tl_log_parse_level(value, &cfg->log_level))
        return reject(ld, s, NULL, "%s is not a log level; use \"error\", \"warn\", \"info\" "
                      "or \"debug\"", quote(value, quoted, sizeof(quoted)));

    rc = get_integer(ld, agent, "shutdown_timeout_ms", 0, 600000, 10000, false, &number, NULL);
    if (rc != 0)
        return rc;
    cfg->shutdown_timeout_ms = (int)number;

    rc = get_integer(ld, agent, "start_wait_ms", 1000, 30000, 5000, false, &number, NULL);
    if (rc != 0)
        return rc;
    cfg->start_wait_ms = (int)number;

    rc = get_integer(ld, agent, "max_inflight_events", 1, 10000000, 100000, false, &number,
                     NULL);
    if (rc != 0)
        return rc;
    cfg->max_inflight_events = (size_t)number;

    rc = get_integer(ld, agent, "max_inflight_bytes", MIB, 64 * GIB, 256 * MIB, true, &number,
                     NULL);
    if (rc != 0)
        return rc;
    cfg->max_inflight_bytes = (size_t)number;

    int policy;
    rc = get_choice(ld, agent, "ack", ACK_CHOICES, TL_ACK_ALL, "an acknowledgement policy",
                    &policy, NULL);
    if (rc != 0)
        return rc;
    cfg->ack_policy = (enum tl_ack_policy)policy;

    int action;
    rc = get_choice(ld, agent, "when_no_region", NO_REGION_CHOICES, TL_NO_REGION_SPOOL,
                    "an action for when no region is available", &action, NULL);
    if (rc != 0)
        return rc;
    cfg->when_no_region = (enum tl_no_region)action;
    return 0;
}

/* *event_setting receives listen.max_event_bytes, or NULL when it is left out. */
static int parse_listen(struct loader *ld, const config_setting_t *root, struct tl_config *cfg,
                        const config_setting_t *data_dir_setting,
                        const config_setting_t **event_setting)
{
    config_setting_t *listen;
    const char *value;
    const config_setting_t *s;
    long long number;

    *event_setting = NULL;

    /* Every listen setting has a default, so the group itself may be left out. */
    int rc = get_group(ld, root, "listen", false, &listen);
    if (rc != 0)
        return rc;
    if (listen) {
        rc = check_members(ld, listen, LISTEN_SETTINGS);
        if (rc != 0)
            return rc;
    }

    value = NULL;
    s = NULL;
    if (listen) {
        rc = get_string(ld, listen, "unix", false, &value, &s);
        if (rc != 0)
            return rc;
    }
    if (s && value[0] == '\0')
        return reject(ld, s, NULL, "empty; set the path of the Unix socket, or remove the "
                      "setting to use \"<data_dir>/agent.sock\"");
    if (value) {
        cfg->unix_path = tl_xstrdup(value);
    } else {
        size_t len = strlen(cfg->data_dir) + sizeof("/agent.sock");
        cfg->unix_path = tl_xmalloc(len);
        snprintf(cfg->unix_path, len, "%s/agent.sock", cfg->data_dir);
    }
    if (strlen(cfg->unix_path) > UNIX_PATH_MAX_LEN) {
        if (s)
            return reject(ld, s, NULL, "the path is %zu bytes long, but a Unix socket path "
                          "holds at most %zu bytes (sockaddr_un.sun_path); choose a shorter "
                          "path", strlen(cfg->unix_path), UNIX_PATH_MAX_LEN);
        return reject(ld, data_dir_setting, NULL, "the default socket path "
                      "\"<data_dir>/agent.sock\" is %zu bytes long, but a Unix socket path "
                      "holds at most %zu bytes (sockaddr_un.sun_path); set listen.unix to a "
                      "shorter path or shorten agent.data_dir",
                      strlen(cfg->unix_path), UNIX_PATH_MAX_LEN);
    }

    if (!listen) {
        cfg->max_frame_bytes = (size_t)(4 * MIB);
        cfg->max_event_bytes = (size_t)MIB;
        cfg->max_connections = 256;
        return 0;
    }

    rc = get_string(ld, listen, "tcp", false, &value, &s);
    if (rc != 0)
        return rc;
    if (value) {
        rc = parse_loopback_address(ld, s, value, "the TCP listener has no authentication",
                                    &cfg->tcp_host, &cfg->tcp_port);
        if (rc != 0)
            return rc;
    }

    rc = get_integer(ld, listen, "max_frame_bytes", KIB, 64 * MIB, 4 * MIB, true, &number,
                     NULL);
    if (rc != 0)
        return rc;
    cfg->max_frame_bytes = (size_t)number;

    /* The default shrinks with a small frame limit so that leaving it out stays valid. */
    long long event_default = number < MIB ? number : MIB;
    rc = get_integer(ld, listen, "max_event_bytes", 1, 64 * MIB, event_default, true, &number,
                     event_setting);
    s = *event_setting;
    if (rc != 0)
        return rc;
    if ((size_t)number > cfg->max_frame_bytes)
        return reject(ld, s, NULL, "%lld is larger than listen.max_frame_bytes (%zu); an "
                      "event must fit in one frame, so lower it or raise max_frame_bytes",
                      number, cfg->max_frame_bytes);
    cfg->max_event_bytes = (size_t)number;

    rc = get_integer(ld, listen, "max_connections", 1, 65536, 256, false, &number, NULL);
    if (rc != 0)
        return rc;
    cfg->max_connections = (int)number;
    return 0;
}

/*
 * Reads the admin group, which may be left out: the admin API then listens on
 * "<data_dir>/admin.sock" only. admin.tcp needs admin.token_file, and the token file is
 * read when the agent starts, not here.
 */
static int parse_admin(struct loader *ld, const config_setting_t *root, struct tl_config *cfg,
                       const config_setting_t *data_dir_setting)
{
    config_setting_t *admin;
    const char *value;
    const config_setting_t *s;
    const config_setting_t *tcp_setting;
    long long number;

    int rc = get_group(ld, root, "admin", false, &admin);
    if (rc != 0)
        return rc;
    if (admin) {
        rc = check_members(ld, admin, ADMIN_SETTINGS);
        if (rc != 0)
            return rc;
    }

    rc = get_string(ld, admin, "unix", false, &value, &s);
    if (rc != 0)
        return rc;
    if (s && value[0] == '\0')
        return reject(ld, s, NULL, "empty; set the path of the admin socket, or remove the "
                      "setting to use \"<data_dir>/admin.sock\"");
    if (value) {
        cfg->admin_unix_path = tl_xstrdup(value);
    } else {
        size_t len = strlen(cfg->data_dir) + sizeof("/admin.sock");
        cfg->admin_unix_path = tl_xmalloc(len);
        snprintf(cfg->admin_unix_path, len, "%s/admin.sock", cfg->data_dir);
    }
    if (strlen(cfg->admin_unix_path) > UNIX_PATH_MAX_LEN) {
        if (s)
            return reject(ld, s, NULL, "the path is %zu bytes long, but a Unix socket path "
                          "holds at most %zu bytes (sockaddr_un.sun_path); choose a shorter "
                          "path", strlen(cfg->admin_unix_path), UNIX_PATH_MAX_LEN);
        return reject(ld, data_dir_setting, NULL, "the default admin socket path "
                      "\"<data_dir>/admin.sock\" is %zu bytes long, but a Unix socket path "
                      "holds at most %zu bytes (sockaddr_un.sun_path); set admin.unix to a "
                      "shorter path or shorten agent.data_dir",
                      strlen(cfg->admin_unix_path), UNIX_PATH_MAX_LEN);
    }
    if (strcmp(cfg->admin_unix_path, cfg->unix_path) == 0)
        return reject(ld, s ? s : data_dir_setting, NULL, "\"%s\" is also the producer "
                      "socket (listen.unix); give the admin API a path of its own",
                      cfg->admin_unix_path);

    rc = get_string(ld, admin, "tcp", false, &value, &tcp_setting);
    if (rc != 0)
        return rc;
    if (value) {
        rc = parse_loopback_address(ld, tcp_setting, value, "the admin API controls the agent",
                                    &cfg->admin_tcp_host, &cfg->admin_tcp_port);
        if (rc != 0)
            return rc;
    }

    rc = get_string(ld, admin, "token_file", false, &value, &s);
    if (rc != 0)
        return rc;
    if (s && value[0] == '\0')
        return reject(ld, s, NULL, "empty; set the path of the file of bearer tokens");
    if (value && !tcp_setting)
        return reject(ld, s, NULL, "set without admin.tcp; tokens are checked only on the "
                      "TCP listener (the Unix socket is guarded by its file mode), so add "
                      "admin.tcp or remove this setting");
    if (tcp_setting && !value)
        return reject(ld, tcp_setting, NULL, "needs admin.token_file, because anyone on this "
                      "machine can connect to a loopback port; add token_file = \"PATH\" "
                      "with lines \"NAME TOKEN\"");
    if (value)
        cfg->admin_token_file = tl_xstrdup(value);

    rc = get_integer(ld, admin, "max_connections", 1, 1024, 16, false, &number, NULL);
    if (rc != 0)
        return rc;
    cfg->admin_max_connections = (int)number;

    rc = get_integer(ld, admin, "connection_timeout_ms", 1000, 600000, 10000, false, &number,
                     NULL);
    if (rc != 0)
        return rc;
    cfg->admin_connection_timeout_ms = (int)number;
    return 0;
}

/*
 * Checks that one record of the largest event fits in a WAL segment. The default segment fits
 * an event of the default size, so when wal.segment_bytes is left out the message points at
 * listen.max_event_bytes, the setting that was raised.
 */
static int check_segment_fits_event(struct loader *ld, const config_setting_t *segment_setting,
                                    const config_setting_t *event_setting, long long segment,
                                    size_t event)
{
    long long needed = (long long)event + WAL_RECORD_OVERHEAD_BYTES;
    char segment_text[48];
    char event_text[48];

    if (segment >= needed)
        return 0;

    format_bytes((long long)event, event_text, sizeof(event_text));
    if (segment_setting)
        return reject(ld, segment_setting, NULL, "%s is too small for listen.max_event_bytes "
                      "%s, because a segment must hold one record of the largest event plus "
                      "%d bytes of headers; set segment_bytes to at least %lld or lower "
                      "listen.max_event_bytes", format_bytes(segment, segment_text,
                      sizeof(segment_text)), event_text, WAL_RECORD_OVERHEAD_BYTES, needed);
    return reject(ld, event_setting, NULL, "%s does not fit in the default wal.segment_bytes "
                  "%s, because a segment must hold one record of the largest event plus %d "
                  "bytes of headers; set wal.segment_bytes to at least %lld or lower "
                  "max_event_bytes", event_text,
                  format_bytes(segment, segment_text, sizeof(segment_text)),
                  WAL_RECORD_OVERHEAD_BYTES, needed);
}

static int parse_wal(struct loader *ld, const config_setting_t *root, struct tl_config *cfg,
                     const config_setting_t *event_setting)
{
    config_setting_t *wal;
    const char *value;
    const config_setting_t *s;
    long long number;
    int choice;

    /* Every wal setting has a default, so the group may be left out, and wal is then NULL. */
    int rc = get_group(ld, root, "wal", false, &wal);
    if (rc != 0)
        return rc;
    if (wal) {
        rc = check_members(ld, wal, WAL_SETTINGS);
        if (rc != 0)
            return rc;
    }

    rc = get_string(ld, wal, "dir", false, &value, &s);
    if (rc != 0)
        return rc;
    if (value && value[0] == '\0')
        return reject(ld, s, NULL, "empty; set the directory for the write-ahead log, or "
                      "remove the setting to use \"<data_dir>/wal\"");
    if (value) {
        cfg->wal_dir = tl_xstrdup(value);
    } else {
        size_t len = strlen(cfg->data_dir) + sizeof("/wal");
        cfg->wal_dir = tl_xmalloc(len);
        snprintf(cfg->wal_dir, len, "%s/wal", cfg->data_dir);
    }

    const config_setting_t *fsync_setting;
    rc = get_choice(ld, wal, "fsync", FSYNC_CHOICES, TL_FSYNC_ALWAYS, "an fsync mode", &choice,
                    &fsync_setting);
    if (rc != 0)
        return rc;
    cfg->wal_fsync = (enum tl_fsync_mode)choice;

    rc = get_integer(ld, wal, "fsync_interval_ms", 1, 60000, 100, false, &number, &s);
    if (rc != 0)
        return rc;
    if (s && cfg->wal_fsync != TL_FSYNC_INTERVAL)
        return reject(ld, s, NULL, "set, but wal.fsync is \"%s\"%s; fsync_interval_ms applies "
                      "only with fsync = \"interval\", so remove it or set fsync = \"interval\"",
                      choice_name(FSYNC_CHOICES, cfg->wal_fsync),
                      fsync_setting ? "" : " (the default)");
    cfg->wal_fsync_interval_ms = (int)number;

    rc = get_integer(ld, wal, "segment_bytes", MIB, WAL_MAX_SEGMENT_BYTES,
                     WAL_DEFAULT_SEGMENT_BYTES, true, &number, &s);
    if (rc != 0)
        return rc;
    rc = check_segment_fits_event(ld, s, event_setting, number, cfg->max_event_bytes);
    if (rc != 0)
        return rc;
    cfg->wal_segment_bytes = (uint64_t)number;

    /* The floor of the range is two segments of the smallest size. */
    rc = get_integer(ld, wal, "max_bytes", 2 * MIB, 16 * TIB, WAL_DEFAULT_MAX_BYTES, true,
                     &number, &s);
    if (rc != 0)
        return rc;
    long long segment = (long long)cfg->wal_segment_bytes;
    if (number < 2 * segment) {
        char quota_text[48];
        char segment_text[48];
        return reject(ld, s, NULL, "%s is less than twice wal.segment_bytes %s, but the "
                      "quota must hold at least two segments; raise max_bytes to at least "
                      "%lld or lower segment_bytes",
                      format_bytes(number, quota_text, sizeof(quota_text)),
                      format_bytes(segment, segment_text, sizeof(segment_text)), 2 * segment);
    }
    cfg->wal_max_bytes = (uint64_t)number;

    rc = get_choice(ld, wal, "when_full", WHEN_FULL_CHOICES, TL_WHEN_FULL_REJECT,
                    "an action for a full WAL", &choice, NULL);
    if (rc != 0)
        return rc;
    cfg->wal_when_full = (enum tl_when_full)choice;
    return 0;
}

/* Checks that the OPEN interval can grow: breaker.open_max_ms must not be below open_ms. */
static int check_open_interval(struct loader *ld, const config_setting_t *open_setting,
                               const config_setting_t *open_max_setting,
                               const struct tl_config *cfg)
{
    int open = cfg->breaker_open_ms;
    int open_max = cfg->breaker_open_max_ms;

    if (open_max >= open)
        return 0;
    if (open_max_setting)
        return reject(ld, open_max_setting, NULL, "%d is less than breaker.open_ms = %d%s, but "
                      "the OPEN interval starts at open_ms and grows up to open_max_ms; raise "
                      "open_max_ms to at least %d or lower open_ms", open_max, open,
                      open_setting ? "" : " (the default)", open);
    return reject(ld, open_setting, NULL, "%d is greater than breaker.open_max_ms = %d (the "
                  "default), but the OPEN interval starts at open_ms and grows up to "
                  "open_max_ms; lower open_ms to at most %d or set open_max_ms to at least %d",
                  open, open_max, open_max, open);
}

/*
 * Checks that a hung region is detected and failed over within breaker.rto_target_ms. The
 * message points at stall_timeout_ms when it is set, else at rto_target_ms. The defaults pass,
 * so one of the two is always set when the check fails.
 */
static int check_rto_target(struct loader *ld, const config_setting_t *stall_setting,
                            const config_setting_t *rto_setting, const struct tl_config *cfg)
{
    long long stall = cfg->breaker_stall_timeout_ms;
    long long rto = cfg->breaker_rto_target_ms;
    long long stall_max = rto - BREAKER_FAILOVER_MS;
    long long rto_min = stall + BREAKER_FAILOVER_MS;

    if (stall <= stall_max)
        return 0;

    char fix[256];
    if (stall_max >= BREAKER_MIN_STALL_TIMEOUT_MS)
        snprintf(fix, sizeof(fix), "lower stall_timeout_ms to at most %lld or raise "
                 "rto_target_ms to at least %lld", stall_max, rto_min);
    else
        snprintf(fix, sizeof(fix), "raise rto_target_ms to at least %lld, because "
                 "stall_timeout_ms cannot go below %d", rto_min, BREAKER_MIN_STALL_TIMEOUT_MS);

    if (stall_setting)
        return reject(ld, stall_setting, NULL, "%lld cannot meet breaker.rto_target_ms = "
                      "%lld%s, because a hung region is detected after stall_timeout_ms and "
                      "failover takes up to %d ms more; %s", stall, rto,
                      rto_setting ? "" : " (the default)", BREAKER_FAILOVER_MS, fix);
    return reject(ld, rto_setting, NULL, "%lld cannot be met with breaker.stall_timeout_ms = "
                  "%lld (the default), because a hung region is detected after "
                  "stall_timeout_ms and failover takes up to %d ms more; %s", rto, stall,
                  BREAKER_FAILOVER_MS, fix);
}

/*
 * Reads the breaker group, which may be left out. *rto_setting receives
 * breaker.rto_target_ms, or NULL when it is left out.
 */
static int parse_breaker(struct loader *ld, const config_setting_t *root, struct tl_config *cfg,
                         const config_setting_t **rto_setting)
{
    config_setting_t *breaker;
    const config_setting_t *stall_setting;
    const config_setting_t *open_setting;
    const config_setting_t *open_max_setting;
    long long number;

    *rto_setting = NULL;

    int rc = get_group(ld, root, "breaker", false, &breaker);
    if (rc != 0)
        return rc;
    if (breaker) {
        rc = check_members(ld, breaker, BREAKER_SETTINGS);
        if (rc != 0)
            return rc;
    }

    /* The plain ranges, in the order of the documentation. */
    const struct {
        const char *name;
        long long min;
        long long max;
        long long def;
        int *field;
        const config_setting_t **setting;
    } ranges[] = {
        {"consecutive_failures", 1, 1000, 5, &cfg->breaker_consecutive_failures, NULL},
        {"failure_rate_percent", 1, 100, 50, &cfg->breaker_failure_rate_percent, NULL},
        {"rate_window_ms", 1000, 600000, 10000, &cfg->breaker_rate_window_ms, NULL},
        {"min_volume", 1, 1000000, 20, &cfg->breaker_min_volume, NULL},
        {"stall_timeout_ms", BREAKER_MIN_STALL_TIMEOUT_MS, 600000,
         BREAKER_DEFAULT_STALL_TIMEOUT_MS, &cfg->breaker_stall_timeout_ms, &stall_setting},
        {"open_ms", 100, 600000, BREAKER_DEFAULT_OPEN_MS, &cfg->breaker_open_ms,
         &open_setting},
        {"open_max_ms", 100, 3600000, BREAKER_DEFAULT_OPEN_MAX_MS, &cfg->breaker_open_max_ms,
         &open_max_setting},
        {"probes_to_close", 1, 100, 2, &cfg->breaker_probes_to_close, NULL},
        {"rto_target_ms", 500, 600000, BREAKER_DEFAULT_RTO_TARGET_MS,
         &cfg->breaker_rto_target_ms, rto_setting},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        rc = get_integer(ld, breaker, ranges[i].name, ranges[i].min, ranges[i].max,
                         ranges[i].def, false, &number, ranges[i].setting);
        if (rc != 0)
            return rc;
        *ranges[i].field = (int)number;
    }

    rc = get_integer(ld, breaker, "backfill_events_per_sec", 0, 10000000, 50000, false,
                     &number, NULL);
    if (rc != 0)
        return rc;
    cfg->backfill_events_per_sec = (uint64_t)number;

    rc = check_open_interval(ld, open_setting, open_max_setting, cfg);
    if (rc != 0)
        return rc;
    return check_rto_target(ld, stall_setting, *rto_setting, cfg);
}

static int parse_region(struct loader *ld, const config_setting_t *group, struct tl_config *cfg,
                        size_t index)
{
    struct tl_region_config *region = &cfg->regions[index];
    const char *value;
    const config_setting_t *s;
    long long number;
    char quoted[96];
    char found[160];

    if (config_setting_type(group) != CONFIG_TYPE_GROUP)
        return reject(ld, group, NULL, "expected a group { name = ...; bootstrap = ...; }, "
                      "found %s", describe_value(group, found, sizeof(found)));
    int rc = check_members(ld, group, REGION_SETTINGS);
    if (rc != 0)
        return rc;

    rc = get_string(ld, group, "name", true, &value, &s);
    if (rc != 0)
        return rc;
    rc = check_name(ld, s, value, "_-", REGION_NAME_MAX, "[A-Za-z0-9_-]");
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < index; i++) {
        if (strcmp(cfg->regions[i].name, value) == 0)
            return reject(ld, s, NULL, "%s is already used by regions.[%zu]; region names "
                          "must be unique", quote(value, quoted, sizeof(quoted)), i);
    }
    region->name = tl_xstrdup(value);

    rc = get_string(ld, group, "bootstrap", true, &value, &s);
    if (rc != 0)
        return rc;
    region->embedded = strcmp(value, "embedded") == 0;
    if (!region->embedded) {
        rc = check_bootstrap_list(ld, s, value);
        if (rc != 0)
            return rc;
        region->bootstrap = tl_xstrdup(value);
    }

    rc = get_integer(ld, group, "embedded_brokers", 1, 16, 3, false, &number, &s);
    if (rc != 0)
        return rc;
    if (s && !region->embedded)
        return reject(ld, s, NULL, "set, but this region's bootstrap names real brokers; "
                      "embedded_brokers applies only with bootstrap = \"embedded\", so remove "
                      "it");
    region->embedded_brokers = (int)number;

    return parse_properties(ld, group, region);
}

static int parse_regions(struct loader *ld, const config_setting_t *root, struct tl_config *cfg)
{
    config_setting_t *list;

    int rc = get_list(ld, root, "regions", &list);
    if (rc != 0)
        return rc;
    int count = config_setting_length(list);
    if (count != TL_REGION_COUNT)
        return reject(ld, list, NULL, "found %d region%s; this version writes to exactly %d "
                      "regions, so list %d groups", count, count == 1 ? "" : "s",
                      TL_REGION_COUNT, TL_REGION_COUNT);

    for (int i = 0; i < count; i++) {
        rc = parse_region(ld, config_setting_get_elem(list, (unsigned int)i), cfg, (size_t)i);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Returns the default replication factor: min(3, smallest embedded cluster), or 3. */
static int default_replication_factor(const struct tl_config *cfg)
{
    int factor = 3;
    for (size_t i = 0; i < TL_REGION_COUNT; i++) {
        if (cfg->regions[i].embedded && cfg->regions[i].embedded_brokers < factor)
            factor = cfg->regions[i].embedded_brokers;
    }
    return factor;
}

static int parse_topic(struct loader *ld, const config_setting_t *group, struct tl_config *cfg,
                       size_t index)
{
    struct tl_topic_config *topic = &cfg->topics[index];
    const char *value;
    const config_setting_t *s;
    long long number;
    char quoted[96];
    char found[160];

    if (config_setting_type(group) != CONFIG_TYPE_GROUP)
        return reject(ld, group, NULL, "expected a group { name = ...; }, found %s",
                      describe_value(group, found, sizeof(found)));
    int rc = check_members(ld, group, TOPIC_SETTINGS);
    if (rc != 0)
        return rc;

    rc = get_string(ld, group, "name", true, &value, &s);
    if (rc != 0)
        return rc;
    char reason[256];
    if (!tl_topic_name_valid(value, strlen(value), reason, sizeof(reason)))
        return reject(ld, s, NULL, "%s", reason);
    for (size_t i = 0; i < index; i++) {
        if (strcmp(cfg->topics[i].name, value) == 0)
            return reject(ld, s, NULL, "%s is already used by topics.[%zu]; topic names must "
                          "be unique", quote(value, quoted, sizeof(quoted)), i);
    }
    topic->name = tl_xstrdup(value);

    rc = get_integer(ld, group, "partitions", 1, 10000, 6, false, &number, NULL);
    if (rc != 0)
        return rc;
    topic->partitions = (int)number;

    rc = get_integer(ld, group, "replication_factor", 1, 16, default_replication_factor(cfg),
                     false, &number, &s);
    if (rc != 0)
        return rc;
    for (size_t i = 0; s && i < TL_REGION_COUNT; i++) {
        const struct tl_region_config *region = &cfg->regions[i];
        if (region->embedded && number > region->embedded_brokers)
            return reject(ld, s, NULL, "%lld is larger than the %d embedded brokers of region "
                          "\"%s\"; lower it or raise that region's embedded_brokers",
                          number, region->embedded_brokers, region->name);
    }
    topic->replication_factor = (int)number;
    return 0;
}

static int parse_topics(struct loader *ld, const config_setting_t *root, struct tl_config *cfg)
{
    config_setting_t *list;

    int rc = get_list(ld, root, "topics", &list);
    if (rc != 0)
        return rc;
    size_t count = (size_t)config_setting_length(list);
    if (count == 0)
        return reject(ld, list, NULL, "empty; list at least one topic: topics = ( { name = "
                      "\"events\"; } );");

    cfg->topics = tl_xcalloc(count, sizeof(cfg->topics[0]));
    cfg->topic_count = count;
    for (size_t i = 0; i < count; i++) {
        rc = parse_topic(ld, config_setting_get_elem(list, (unsigned int)i), cfg, i);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_home_region(struct loader *ld, const config_setting_t *home_setting,
                             const struct tl_config *cfg)
{
    char quoted[96];

    if (tl_config_region_index(cfg, cfg->home_region) >= 0)
        return 0;
    return reject(ld, home_setting, NULL, "%s is not one of the regions (\"%s\", \"%s\"); "
                  "set it to the region this agent runs in",
                  quote(cfg->home_region, quoted, sizeof(quoted)), cfg->regions[0].name,
                  cfg->regions[1].name);
}

/* Returns the name setting of topics.[index]. */
static const config_setting_t *topic_name_setting(const config_setting_t *root, int index)
{
    const config_setting_t *list = config_setting_get_member(root, "topics");
    const config_setting_t *group = config_setting_get_elem(list, (unsigned int)index);
    return config_setting_get_member(group, "name");
}

/*
 * Reads the heartbeat group, which may be left out. Runs after the topics and the breaker
 * group are read. rto_setting is breaker.rto_target_ms, or NULL when it was left out.
 */
static int parse_heartbeat(struct loader *ld, const config_setting_t *root,
                           struct tl_config *cfg, const config_setting_t *rto_setting)
{
    config_setting_t *heartbeat;
    const char *value;
    const config_setting_t *s;
    long long number;
    char quoted[96];

    int rc = get_group(ld, root, "heartbeat", false, &heartbeat);
    if (rc != 0)
        return rc;
    if (heartbeat) {
        rc = check_members(ld, heartbeat, HEARTBEAT_SETTINGS);
        if (rc != 0)
            return rc;
    }

    rc = get_string(ld, heartbeat, "topic", false, &value, &s);
    if (rc != 0)
        return rc;
    char reason[256];
    if (value && !tl_topic_name_valid(value, strlen(value), reason, sizeof(reason)))
        return reject(ld, s, NULL, "%s", reason);
    const char *topic = value ? value : HEARTBEAT_DEFAULT_TOPIC;

    /* Producers' events and heartbeats must not share a topic. */
    int clash = tl_config_topic_index(cfg, topic);
    quote(topic, quoted, sizeof(quoted));
    if (clash >= 0 && s)
        return reject(ld, s, NULL, "%s is also the name of the event topic topics.[%d]; "
                      "heartbeats need a topic of their own, so choose another name",
                      quoted, clash);
    if (clash >= 0)
        return reject(ld, topic_name_setting(root, clash), NULL, "%s is the default "
                      "heartbeat.topic, and heartbeats need a topic of their own; rename this "
                      "topic or set heartbeat.topic to another name", quoted);
    cfg->heartbeat_topic = tl_xstrdup(topic);

    /* Every rto_target_ms that loads is above the default, so s is set when this fails. */
    rc = get_integer(ld, heartbeat, "interval_ms", 100, 60000, HEARTBEAT_DEFAULT_INTERVAL_MS,
                     false, &number, &s);
    if (rc != 0)
        return rc;
    if (number >= cfg->breaker_rto_target_ms)
        return reject(ld, s, NULL, "%lld is not less than breaker.rto_target_ms = %d%s, but "
                      "heartbeats are the probes of a half-open breaker and must be sent more "
                      "often than the RTO target; lower interval_ms to at most %d or raise "
                      "breaker.rto_target_ms to at least %lld", number,
                      cfg->breaker_rto_target_ms, rto_setting ? "" : " (the default)",
                      cfg->breaker_rto_target_ms - 1, number + 1);
    cfg->heartbeat_interval_ms = (int)number;
    return 0;
}

/* --- Entry points ------------------------------------------------------------------------- */

static int validate(struct loader *ld, const config_t *lc, struct tl_config *cfg)
{
    const config_setting_t *root = config_root_setting(lc);
    const config_setting_t *home_setting = NULL;
    const config_setting_t *data_dir_setting = NULL;
    const config_setting_t *event_setting = NULL;
    const config_setting_t *rto_setting = NULL;

    int rc = check_members(ld, root, ROOT_SETTINGS);
    if (rc != 0)
        return rc;
    rc = parse_agent(ld, root, cfg, &home_setting, &data_dir_setting);
    if (rc != 0)
        return rc;
    rc = parse_listen(ld, root, cfg, data_dir_setting, &event_setting);
    if (rc != 0)
        return rc;
    rc = parse_admin(ld, root, cfg, data_dir_setting);
    if (rc != 0)
        return rc;
    rc = parse_wal(ld, root, cfg, event_setting);
    if (rc != 0)
        return rc;
    rc = parse_breaker(ld, root, cfg, &rto_setting);
    if (rc != 0)
        return rc;
    rc = parse_regions(ld, root, cfg);
    if (rc != 0)
        return rc;
    rc = check_home_region(ld, home_setting, cfg);
    if (rc != 0)
        return rc;
    rc = parse_topics(ld, root, cfg);
    if (rc != 0)
        return rc;
    return parse_heartbeat(ld, root, cfg, rto_setting);
}

/* Parses text; include_dir (or NULL) is where @include paths are resolved. */
static int parse_text(const char *text, const char *name, const char *include_dir,
                      struct tl_config *cfg, char *err, size_t errsize)
{
    struct loader ld = {.name = name, .err = err, .errsize = errsize};
    struct tl_config loaded = {0};
    config_t lc;
    int rc = 0;

    config_init(&lc);
    if (include_dir)
        config_set_include_dir(&lc, include_dir);

    if (!config_read_string(&lc, text)) {
        const char *file = config_error_file(&lc) ? config_error_file(&lc) : name;
        const char *text_error = config_error_text(&lc);
        if (strstr(text_error, "include"))
            rc = tl_error(err, errsize, TL_EIO, "%s:%d: %s; @include paths are relative to "
                          "the directory of the main configuration file", file,
                          config_error_line(&lc), text_error);
        else
            rc = tl_error(err, errsize, TL_EINVAL, "%s:%d: %s; settings are written as "
                          "name = value; with strings in double quotes",
                          file, config_error_line(&lc), text_error);
        goto out;
    }

    /* NOTE: only the main text is scanned, so a wide literal in an @include file is missed. */
    scan_wide_literals(&ld, text);
    rc = validate(&ld, &lc, &loaded);
    if (rc != 0)
        goto out;

    loaded.path = tl_xstrdup(name);
    *cfg = loaded;
    memset(&loaded, 0, sizeof(loaded));

out:
    tl_config_free(&loaded);
    free(ld.wide);
    config_destroy(&lc);
    if (rc != 0)
        memset(cfg, 0, sizeof(*cfg));
    return rc;
}

int tl_config_parse(const char *text, const char *name, struct tl_config *cfg, char *err,
                    size_t errsize)
{
    return parse_text(text, name, NULL, cfg, err, errsize);
}

/* Reads a whole regular file of at most TL_CONFIG_MAX_FILE_BYTES into a NUL-terminated buffer. */
static int read_file(const char *path, char **text, char *err, size_t errsize)
{
    char *buf = NULL;
    int rc = 0;

    *text = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int code = (errno == ENOENT || errno == ENOTDIR) ? TL_ENOTFOUND : TL_EIO;
        return tl_error(err, errsize, code, "%s: cannot open the configuration file: %s", path,
                        strerror(errno));
    }

    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = tl_error(err, errsize, TL_EIO, "%s: cannot read the configuration file: %s", path,
                      strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = tl_error(err, errsize, TL_EIO, "%s: not a regular file; give the path of the "
                      "configuration file", path);
        goto out;
    }
    if (st.st_size > TL_CONFIG_MAX_FILE_BYTES) {
        rc = tl_error(err, errsize, TL_EIO, "%s: the file is %lld bytes, larger than the "
                      "%lld-byte limit for a configuration file", path, (long long)st.st_size,
                      TL_CONFIG_MAX_FILE_BYTES);
        goto out;
    }

    size_t size = (size_t)st.st_size;
    size_t used = 0;
    buf = tl_xmalloc(size + 1);
    while (used < size) {
        ssize_t n = read(fd, buf + used, size - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = tl_error(err, errsize, TL_EIO, "%s: cannot read the configuration file: %s",
                          path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;   /* the file shrank while being read; parse what was there */
        used += (size_t)n;
    }
    buf[used] = '\0';
    if (strlen(buf) != used) {
        rc = tl_error(err, errsize, TL_EINVAL, "%s: the file contains a NUL byte; a "
                      "configuration file must be text", path);
        goto out;
    }
    *text = buf;
    buf = NULL;

out:
    free(buf);
    close(fd);
    return rc;
}

int tl_config_load(const char *path, struct tl_config *cfg, char *err, size_t errsize)
{
    char *text;

    memset(cfg, 0, sizeof(*cfg));
    int rc = read_file(path, &text, err, errsize);
    if (rc != 0)
        return rc;

    /*
     * @include paths are resolved from the directory of the main file.
     * NOTE: libconfig 1.5 prefixes this directory to absolute include paths too, so only
     * relative include paths work.
     */
    char *dir = tl_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");

    rc = parse_text(text, path, dir, cfg, err, errsize);
    free(dir);
    free(text);
    return rc;
}

void tl_config_free(struct tl_config *cfg)
{
    free(cfg->path);
    free(cfg->agent_id);
    free(cfg->home_region);
    free(cfg->data_dir);
    free(cfg->unix_path);
    free(cfg->tcp_host);
    free(cfg->tcp_port);
    free(cfg->wal_dir);
    free(cfg->heartbeat_topic);
    free(cfg->admin_unix_path);
    free(cfg->admin_tcp_host);
    free(cfg->admin_tcp_port);
    free(cfg->admin_token_file);

    for (size_t i = 0; i < TL_REGION_COUNT; i++) {
        struct tl_region_config *region = &cfg->regions[i];
        free(region->name);
        free(region->bootstrap);
        for (size_t k = 0; k < region->property_count; k++) {
            free(region->property_names[k]);
            free(region->property_values[k]);
        }
        free(region->property_names);
        free(region->property_values);
    }

    for (size_t i = 0; i < cfg->topic_count; i++)
        free(cfg->topics[i].name);
    free(cfg->topics);

    memset(cfg, 0, sizeof(*cfg));
}

int tl_config_region_index(const struct tl_config *cfg, const char *name)
{
    for (size_t i = 0; i < TL_REGION_COUNT; i++) {
        if (cfg->regions[i].name && strcmp(cfg->regions[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

int tl_config_topic_index(const struct tl_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->topic_count; i++) {
        if (cfg->topics[i].name && strcmp(cfg->topics[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

bool tl_topic_name_valid(const char *name, size_t len, char *err, size_t errsize)
{
    char quoted[96];

    if (len == 0) {
        tl_error(err, errsize, TL_EINVAL, "the topic name is empty; Kafka accepts 1 to %d "
                 "characters from [A-Za-z0-9._-]", TL_TOPIC_NAME_MAX);
        return false;
    }
    quote_n(name, len, quoted, sizeof(quoted));
    if (len > TL_TOPIC_NAME_MAX) {
        tl_error(err, errsize, TL_EINVAL, "topic name %s is %zu characters long; Kafka "
                 "accepts at most %d", quoted, len, TL_TOPIC_NAME_MAX);
        return false;
    }
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
        tl_error(err, errsize, TL_EINVAL, "topic name %s is reserved; Kafka does not accept "
                 "\".\" or \"..\" as a topic name", quoted);
        return false;
    }

    const char *bad = find_invalid_char(name, len, "._-");
    if (bad) {
        char ch[24];
        tl_error(err, errsize, TL_EINVAL, "topic name %s contains %s at position %zu; Kafka "
                 "accepts only [A-Za-z0-9._-]", quoted, describe_char(*bad, ch, sizeof(ch)),
                 (size_t)(bad - name) + 1);
        return false;
    }
    return true;
}
