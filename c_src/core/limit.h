/* limit.h (not limits.h, which would hide <limits.h>): helpers for the store's
 * limits (esdb_limits, esdb.h). */
#ifndef ESDB_LIMIT_H
#define ESDB_LIMIT_H

#include "esdb.h"

/* Every nonzero field fits the record format. */
bool esdb__limits_in_range(const esdb_limits *l);
/* In range and no field 0. */
bool esdb__limits_complete(const esdb_limits *l);
/* Copy over's nonzero fields into base. */
void esdb__limits_merge(esdb_limits *base, const esdb_limits *over);

/* The limits as ESDB_LIMITS_SIZE bytes, the body of the limits record and
 * of the LIMITS_SET command. */
#define ESDB_LIMITS_SIZE 32
void esdb__limits_block_write(uint8_t *p, const esdb_limits *l);
void esdb__limits_block_read(const uint8_t *p, esdb_limits *l);

#endif
