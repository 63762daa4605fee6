/*
 * Embedded regions: start a librdkafka mock cluster and publish its address.
 */
#include "embedded.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "mem.h"

static int write_bootstrap_file(struct tl_embedded *e, char *err, size_t errsize)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", e->bootstrap_file);

    FILE *f = fopen(tmp, "w");
    if (!f)
        return tl_error(err, errsize, TL_EIO, "cannot create %s: %s", tmp, strerror(errno));
    fprintf(f, "%s\n", e->bootstrap);
    if (fclose(f) != 0 || rename(tmp, e->bootstrap_file) != 0)
        return tl_error(err, errsize, TL_EIO, "cannot write %s: %s", e->bootstrap_file,
                        strerror(errno));
    return 0;
}

int tl_embedded_start(const struct tl_config *cfg, int region, struct tl_embedded **out,
                      char *err, size_t errsize)
{
    const struct tl_region_config *rc = &cfg->regions[region];
    struct tl_embedded *e = tl_xcalloc(1, sizeof(*e));
    char errstr[512];
    int rv = TL_EKAFKA;

    e->region = tl_xstrdup(rc->name);

    /* The mock cluster needs a client instance to own it; this one never connects anywhere. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    e->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!e->rk) {
        rd_kafka_conf_destroy(conf);
        tl_error(err, errsize, TL_EKAFKA, "region %s: cannot create the mock cluster's client: %s",
                 rc->name, errstr);
        goto fail;
    }

    e->cluster = rd_kafka_mock_cluster_new(e->rk, rc->embedded_brokers);
    if (!e->cluster) {
        tl_error(err, errsize, TL_EKAFKA, "region %s: cannot start a mock cluster of %d brokers",
                 rc->name, rc->embedded_brokers);
        goto fail;
    }
    e->bootstrap = tl_xstrdup(rd_kafka_mock_cluster_bootstraps(e->cluster));

    for (size_t t = 0; t < cfg->topic_count; t++) {
        const struct tl_topic_config *tc = &cfg->topics[t];
        rd_kafka_resp_err_t kerr = rd_kafka_mock_topic_create(e->cluster, tc->name,
                                                              tc->partitions,
                                                              tc->replication_factor);
        if (kerr) {
            tl_error(err, errsize, TL_EKAFKA, "region %s: cannot create topic %s (%d partitions, "
                     "replication factor %d) in the mock cluster: %s", rc->name, tc->name,
                     tc->partitions, tc->replication_factor, rd_kafka_err2str(kerr));
            goto fail;
        }
    }

    rd_kafka_resp_err_t hb_err = rd_kafka_mock_topic_create(e->cluster, cfg->heartbeat_topic, 1,
                                                            rc->embedded_brokers < 3
                                                                ? rc->embedded_brokers : 3);
    if (hb_err) {
        tl_error(err, errsize, TL_EKAFKA, "region %s: cannot create heartbeat topic %s in the "
                 "mock cluster: %s", rc->name, cfg->heartbeat_topic, rd_kafka_err2str(hb_err));
        goto fail;
    }

    size_t len = strlen(cfg->data_dir) + strlen(rc->name) + sizeof("/.bootstrap");
    e->bootstrap_file = tl_xmalloc(len);
    snprintf(e->bootstrap_file, len, "%s/%s.bootstrap", cfg->data_dir, rc->name);
    rv = write_bootstrap_file(e, err, errsize);
    if (rv != 0)
        goto fail;

    tl_log_info("embedded", "mock cluster started region=%s brokers=%d bootstrap=%s file=%s",
                rc->name, rc->embedded_brokers, e->bootstrap, e->bootstrap_file);
    *out = e;
    return 0;

fail:
    tl_embedded_stop(e);
    return rv;
}

void tl_embedded_stop(struct tl_embedded *e)
{
    if (!e)
        return;
    if (e->bootstrap_file)
        unlink(e->bootstrap_file);
    if (e->cluster)
        rd_kafka_mock_cluster_destroy(e->cluster);
    if (e->rk)
        rd_kafka_destroy(e->rk);
    free(e->region);
    free(e->bootstrap);
    free(e->bootstrap_file);
    free(e);
}
