/*
 * CRC-32C: table-driven fallback plus an SSE4.2 path chosen once at first use.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

static uint32_t table[256];
static bool use_hardware;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void)
{
#if defined(__x86_64__)
    use_hardware = __builtin_cpu_supports("sse4.2");
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p,
                                                          size_t len)
{
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t tl_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&init_once, init);

    crc = ~crc;
#if defined(__x86_64__)
    if (use_hardware)
        return ~crc_hw(crc, data, len);
#endif
    return ~crc_table(crc, data, len);
}
