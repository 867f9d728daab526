/* entry.h: the bytes of one raft entry of a replica (docs/FORMAT.md,
 * "Replica entries"): a header carrying the format version, then the
 * commands a proposer packed into it (group commit), every part padded
 * to 8 bytes (raft 0.16+ refuses entries whose length is not a multiple
 * of 8). No raft or libuv types here, so the format is tested alone.
 *
 *   0  u16 version (ESDB_ENTRY_VERSION)   2  u16 kind (1: commands)
 *   4  u32 count of commands
 *   8  u64 proposer: a random number drawn per replica start
 *  16  u64 seq: the proposer's number for this entry
 *  24  count times: u32 length, u32 zero, length bytes, zeros to 8
 * All integers little-endian. (proposer, seq) lets the proposing node
 * find the callers waiting for the entry when it applies it, whatever
 * raft index it ended at. */
#ifndef ESDB_REPLICA_ENTRY_H
#define ESDB_REPLICA_ENTRY_H

#include "esdb.h"

#include <stddef.h>
#include <stdint.h>

#define ESDB_ENTRY_VERSION       1
#define ESDB_ENTRY_KIND_COMMANDS 1
#define ESDB_ENTRY_HEADER        24
/* Commands of one entry get store indexes raft_index << 16 | i. */
#define ESDB_ENTRY_MAX_COMMANDS 65536u

typedef struct esdb_entry_header {
	uint16_t version;
	uint16_t kind;
	uint32_t count;
	uint64_t proposer;
	uint64_t seq;
} esdb_entry_header;

/* Bytes an entry of these commands takes (a multiple of 8). */
size_t esdb_entry_size(const esdb_cmd *cmds, size_t n);

/* Write the entry into out (esdb_entry_size bytes). */
void esdb_entry_encode(uint8_t *out, uint64_t proposer, uint64_t seq,
                       const esdb_cmd *cmds, size_t n);

/* Read the header. ESDB_EFORMAT: another version (h->version says which);
 * ESDB_ECORRUPT: too short, not a multiple of 8 or an unknown kind. */
int esdb_entry_header_read(const uint8_t *buf, size_t len,
                           esdb_entry_header *h);

/* Check the whole entry and point cmds[0..count) into buf (cmds must hold
 * the header's count). Errors as esdb_entry_header_read, and
 * ESDB_ECORRUPT when the lengths do not add up to exactly len. */
int esdb_entry_decode(const uint8_t *buf, size_t len, esdb_entry_header *h,
                      esdb_cmd *cmds);

/* Store index of command i of the entry at raft index `index`. */
static inline uint64_t esdb_entry_store_index(uint64_t index, size_t i)
{
	return (index << 16) | (uint64_t)i;
}

#endif
