/* records.h: the storage records (docs/FORMAT.md, "Records"); pure
 * functions, no LMDB, no I/O, so they are testable alone. The commands
 * that change them are commands.h's. */
#ifndef ESDB_RECORDS_H
#define ESDB_RECORDS_H

#include "esdb.h"
#include "limit.h"

/* Records are written as version 2. Version 1 records (written before
 * payload encodings were recorded) are read too: a payload without its
 * term bit is ESDB_ENCODING_LEGACY there, not bytes. */
#define ESDB_REC_VERSION        2
#define ESDB_REC_VERSION_LEGACY 1
#define ESDB_REC_HEADER         8

enum esdb_rec_kind {
	ESDB_REC_EVENT = 1,
	ESDB_REC_STREAM = 2,
	ESDB_REC_TYPE = 3,
	ESDB_REC_SNAPSHOT = 4,
	ESDB_REC_CHECKPOINT = 5,
	ESDB_REC_LIMITS = 6,
};

#define ESDB_EVENT_HAS_CAUSATION   0x1
#define ESDB_EVENT_HAS_CORRELATION 0x2
/* The payload was written as an Erlang term (esdb_encoding), in event
 * records and in an append's per-event flags. */
#define ESDB_EVENT_DATA_TERM 0x4
#define ESDB_EVENT_META_TERM 0x8
#define ESDB_EVENT_FLAGS_KNOWN                                                 \
	(ESDB_EVENT_HAS_CAUSATION | ESDB_EVENT_HAS_CORRELATION |               \
	 ESDB_EVENT_DATA_TERM | ESDB_EVENT_META_TERM)
#define ESDB_STREAM_DELETED 0x1
/* Snapshot records and snapshot-put command flags. */
#define ESDB_SNAPSHOT_DATA_TERM 0x1
#define ESDB_SNAPSHOT_META_TERM 0x2
#define ESDB_SNAPSHOT_FLAGS_KNOWN                                              \
	(ESDB_SNAPSHOT_DATA_TERM | ESDB_SNAPSHOT_META_TERM)

/* Stream versions stop below the values that encode expected versions
 * (ESDB_EXPECT_*): a stored version above this is corrupt. */
#define ESDB_VERSION_MAX (ESDB_EXPECT_STREAM_EXISTS - 1)

/* Fixed part of an event record, before the variable fields. */
#define ESDB_EVENT_FIXED 60
/* The largest value the format stores: an event with both ids, the
 * longest stream id and type, and data + metadata at the largest
 * max_event_bytes (2^32 - 1). */
#define ESDB_VALUE_MAX                                                         \
	((size_t)ESDB_EVENT_FIXED + 32 + 2 * (size_t)UINT16_MAX +              \
	 (size_t)UINT32_MAX)

/* Write version, kind, flags and the CRC32C of rec[8..len) into rec[0..8). */
void esdb__rec_seal(uint8_t *rec, size_t len, uint8_t kind, uint16_t flags);
/* Check header and checksum (versions 1 and 2). Returns 0, ESDB_ECORRUPT
 * or ESDB_EFORMAT.
 * *flags (may be NULL) receives the flags. A CRC is no proof of
 * structure: every *_rec_read also checks each field's range after it. */
int esdb__rec_check(const uint8_t *rec, size_t len, uint8_t kind,
                    uint16_t *flags);

/* ---- events ----------------------------------------------------------- */

size_t esdb__event_rec_size(size_t stream_len, const esdb_new_event *ev);
/* Encode into rec (esdb__event_rec_size bytes) and seal it. */
void esdb__event_rec_write(uint8_t *rec, size_t size, uint64_t position,
                           uint64_t version, uint64_t created_us,
                           const char *stream_id, size_t stream_len,
                           const esdb_new_event *ev);
/* Check and decode; out's pointers borrow rec. */
int esdb__event_rec_read(const uint8_t *rec, size_t len, esdb_event *out);

/* ---- name-keyed records ----------------------------------------------- */

/* A stream record keeps the positions of its newest events (its tail) in
 * itself and moves them to stream_index ESDB_STREAM_TAIL_MAX at a time:
 * appends to many streams then dirty the few pages of the stream records
 * instead of one stream_index leaf per stream per commit. */
#define ESDB_STREAM_TAIL_MAX 32

typedef struct esdb__stream_meta {
	const char *name;
	size_t name_len;
	uint64_t num;
	uint64_t version;
	uint64_t created_us;
	uint8_t last_event_id[16];
	bool deleted;
	/* positions of versions version-tail_count+1 .. version */
	uint32_t tail_count;
	uint64_t tail[ESDB_STREAM_TAIL_MAX];
} esdb__stream_meta;

/* The position of `version` when it is in the tail, else 0. */
uint64_t esdb__stream_tail_position(const esdb__stream_meta *m,
                                    uint64_t version);

size_t esdb__stream_rec_size(size_t name_len, uint32_t tail_count);
void esdb__stream_rec_write(uint8_t *rec, const esdb__stream_meta *m);
int esdb__stream_rec_read(const uint8_t *rec, size_t len, esdb__stream_meta *m);

size_t esdb__type_rec_size(size_t name_len);
void esdb__type_rec_write(uint8_t *rec, const char *name, size_t len,
                          uint64_t num);
int esdb__type_rec_read(const uint8_t *rec, size_t len, uint64_t *num);

size_t esdb__snapshot_rec_size(const esdb_snapshot *sn);
void esdb__snapshot_rec_write(uint8_t *rec, const esdb_snapshot *sn);
int esdb__snapshot_rec_read(const uint8_t *rec, size_t len, esdb_snapshot *sn);
/* Which snapshot payloads are terms (ESDB_SNAPSHOT_*_TERM): the flags of
 * a snapshot record and of a snapshot-put command. */
uint16_t esdb__snapshot_flags(const esdb_snapshot *sn);

size_t esdb__checkpoint_rec_size(const esdb_checkpoint *cp);
void esdb__checkpoint_rec_write(uint8_t *rec, const esdb_checkpoint *cp);
int esdb__checkpoint_rec_read(const uint8_t *rec, size_t len,
                              esdb_checkpoint *cp);

/* ---- limits (kept in meta under "limits") ------------------------------ */

#define ESDB_LIMITS_REC_SIZE (ESDB_REC_HEADER + ESDB_LIMITS_SIZE)

void esdb__limits_rec_write(uint8_t rec[ESDB_LIMITS_REC_SIZE],
                            const esdb_limits *l);
/* Errors: ESDB_ECORRUPT (checksum, size or a value out of range),
 * ESDB_EFORMAT. */
int esdb__limits_rec_read(const uint8_t *rec, size_t len, esdb_limits *l);

#endif
