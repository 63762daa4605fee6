/*
 * CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of WAL
 * records and of Kafka's own record batches. Uses the SSE4.2 crc32 instruction when the CPU has
 * it, a table otherwise; both give the same values. Any thread may call it.
 */
#ifndef TL_CRC32C_H
#define TL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes at data. */
uint32_t tl_crc32c(uint32_t crc, const void *data, size_t len);

#endif
