/*
 * Partition choice, identical in both regions.
 *
 * Keyed events go to toPositive(murmur2(key)) % partitions, the rule of the Java client's
 * default partitioner (and of librdkafka's "murmur2_random" partitioner), so a Java consumer or
 * producer that reasons about keys agrees with twinlane. The agent picks the partition itself
 * and passes the same number to both regions' producers; neither librdkafka instance chooses.
 */
#ifndef TL_PARTITIONER_H
#define TL_PARTITIONER_H

#include <stddef.h>
#include <stdint.h>

/* Kafka's murmur2 hash (seed 0x9747b28c), as org.apache.kafka.common.utils.Utils.murmur2. */
int32_t tl_murmur2(const void *key, size_t len);

/* Partition for a key: toPositive(murmur2(key)) % partition_count. partition_count > 0. */
int32_t tl_partition_for_key(const void *key, size_t len, int32_t partition_count);

#endif
