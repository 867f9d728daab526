/* crc32c.h: CRC-32C (Castagnoli), the checksum of records and commands. */
#ifndef ESDB_CRC32C_H
#define ESDB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend `crc` (0 to start) over len bytes. Uses SSE4.2 when the CPU has
 * it, a table otherwise; both give the same value. */
uint32_t esdb_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
