/*
 * Embedded regions: a librdkafka mock cluster hosted inside the agent.
 *
 * `bootstrap = "embedded"` makes the agent start a mock cluster for that region: brokers that
 * speak the real Kafka protocol on loopback TCP ports chosen by the kernel, run by librdkafka's
 * own threads. The configured topics are created with their partition count and replication
 * factor. The bootstrap address is logged and written to DATA_DIR/REGION.bootstrap, so that
 * kcat, tests and the demo can read the region from outside the agent.
 *
 * The cluster keeps its data in memory and dies with the agent. It serves demos and tests; it
 * is not a place to keep data.
 */
#ifndef TL_EMBEDDED_H
#define TL_EMBEDDED_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"

struct tl_embedded {
    char *region;
    rd_kafka_t *rk;                  /* handle that owns the mock cluster */
    rd_kafka_mock_cluster_t *cluster;
    char *bootstrap;                 /* comma-separated host:port list */
    char *bootstrap_file;            /* DATA_DIR/REGION.bootstrap */
};

/*
 * Starts the mock cluster for region index `region` of cfg and creates the configured topics.
 * Returns 0 and a cluster the caller stops with tl_embedded_stop, or TL_EKAFKA / TL_EIO with
 * err set.
 */
int tl_embedded_start(const struct tl_config *cfg, int region, struct tl_embedded **out,
                      char *err, size_t errsize);

/* Stops the cluster (its brokers close their sockets) and frees it. Accepts NULL. */
void tl_embedded_stop(struct tl_embedded *e);

#endif
