/*
 * Partitioner tests: murmur2 against the values Kafka's Java client tests assert
 * (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2), and the
 * partition choice against librdkafka's own murmur2 partitioner.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "partitioner.h"

static void murmur2_matches_java_client(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int32_t hash;
    } cases[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(tl_murmur2(cases[i].key, strlen(cases[i].key)), cases[i].hash);
}

static void partition_is_non_negative(void **state)
{
    (void)state;
    /* "21" hashes to a negative value; toPositive must clear the sign bit, not negate. */
    int32_t expected = (int32_t)(((uint32_t)-973932308 & 0x7fffffffu) % 7u);
    assert_int_equal(tl_partition_for_key("21", 2, 7), expected);
}

static void partition_matches_librdkafka_murmur2(void **state)
{
    (void)state;
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "partitioner-test", NULL);
    assert_non_null(rkt);

    /* An empty key is still a key: librdkafka and the Java client hash it, not spread it. */
    for (int32_t partitions = 1; partitions <= 64; partitions *= 2)
        assert_int_equal(tl_partition_for_key("", 0, partitions),
                         rd_kafka_msg_partitioner_murmur2(rkt, "", 0, partitions, NULL, NULL));

    char key[32];
    for (int i = 0; i < 2000; i++) {
        int len = snprintf(key, sizeof(key), "client-%08x", (unsigned)i * 2654435761u);
        for (int32_t partitions = 1; partitions <= 64; partitions *= 2) {
            int32_t theirs = rd_kafka_msg_partitioner_murmur2(rkt, key, (size_t)len,
                                                              partitions, NULL, NULL);
            assert_int_equal(tl_partition_for_key(key, (size_t)len, partitions), theirs);
        }
    }

    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(murmur2_matches_java_client),
        cmocka_unit_test(partition_is_non_negative),
        cmocka_unit_test(partition_matches_librdkafka_murmur2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
