/*
 * Control channel of twinlane-mock-cluster: a Unix stream socket that takes one text command
 * per line and sends exactly one reply line per command, "ok" or "error: <reason>".
 *
 * Commands (broker ids run from 1 to the broker count, as librdkafka's mock cluster numbers
 * them):
 *
 *   ping                                 check that the channel is alive
 *   broker-down ID | broker-up ID        close a broker's listener and connections, or reopen it
 *   all-down | all-up                    the same for every broker
 *   rtt ID|all MS                        delay every response of a broker by MS milliseconds
 *   push-errors [TOPIC] ERRNAME COUNT    fail the next COUNT Produce requests with ERRNAME
 *   clear-errors                         drop Produce errors that were pushed and not yet used
 *   create-topic TOPIC PARTITIONS RF     create a topic
 *
 * The server runs on the caller's thread with poll(2). It caps the clients, the line length
 * and the unsent replies per client, so garbage or a client that never reads cannot make it
 * grow without bound or block the other clients.
 */
#ifndef TL_MOCK_CONTROL_H
#define TL_MOCK_CONTROL_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Limits shared by the command line and the control channel. */
#define TL_MOCK_MAX_BROKERS 16
#define TL_MOCK_MAX_TOPICS 256
#define TL_MOCK_MAX_PARTITIONS 1024
/* Kafka's own limit on topic name length. */
#define TL_MOCK_MAX_TOPIC_NAME 249

/* The cluster that commands act on, and the topics created through this program. */
struct tl_mock_region {
    const char *name;
    rd_kafka_mock_cluster_t *cluster;
    int brokers;
    char *topics[TL_MOCK_MAX_TOPICS];
    size_t topic_count;
};

struct tl_mock_control;

/*
 * Checks that name is a legal Kafka topic name (1 to 249 characters from [A-Za-z0-9._-],
 * neither "." nor ".."). Returns 0, or TL_EINVAL with the reason in err.
 */
int tl_mock_check_topic_name(const char *name, char *err, size_t errsize);

/*
 * Creates a topic in the region's cluster and records its name. Returns 0, TL_EINVAL for an
 * invalid name, partition count or replication factor, or TL_EKAFKA when the cluster rejects
 * it (for example because the topic already exists). err receives the reason.
 */
int tl_mock_create_topic(struct tl_mock_region *region, const char *topic, int partitions,
                         int replication_factor, char *err, size_t errsize);

/* Frees the topic names that tl_mock_create_topic recorded. */
void tl_mock_region_free_topics(struct tl_mock_region *region);

/*
 * Runs one command line of len bytes (without its newline; NUL bytes are rejected like other
 * control bytes) against the region and writes the reply line, without a newline, into
 * reply. Returns 0 when the reply is "ok", TL_EINVAL otherwise.
 */
int tl_mock_control_execute(struct tl_mock_region *region, const char *line, size_t len,
                            char *reply, size_t replysize);

/*
 * Binds and listens on the Unix socket path. A stale socket file, where no process listens,
 * is replaced. A live socket or any other kind of file is an error. Returns 0 and a server in
 * *out, or TL_EINVAL (path too long) or TL_EIO with the reason in err. The region must
 * outlive the server.
 */
int tl_mock_control_open(const char *path, struct tl_mock_region *region,
                         struct tl_mock_control **out, char *err, size_t errsize);

/*
 * Serves control clients until stop_fd becomes readable. ctl may be NULL, in which case this
 * only waits for stop_fd. Returns 0, or TL_EIO with the reason in err when poll(2) fails.
 */
int tl_mock_control_serve(struct tl_mock_control *ctl, int stop_fd, char *err, size_t errsize);

/* Disconnects every client, closes and unlinks the socket, and frees ctl (NULL is allowed). */
void tl_mock_control_close(struct tl_mock_control *ctl);

#endif
