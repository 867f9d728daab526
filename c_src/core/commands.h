/* commands.h: the commands (docs/FORMAT.md, "Commands"), the log entry
 * format every mutation travels in (the encoders are esdb.h's
 * esdb_cmd_*); pure functions, no LMDB, no I/O. */
#ifndef ESDB_COMMANDS_H
#define ESDB_COMMANDS_H

#include "esdb.h"

#define ESDB_CMD_VERSION 1
#define ESDB_CMD_HEADER  24

enum esdb_cmd_type {
	ESDB_CMD_APPEND = 1,
	ESDB_CMD_DELETE_STREAM = 2,
	ESDB_CMD_SNAPSHOT_PUT = 3,
	ESDB_CMD_SNAPSHOT_DELETE = 4,
	ESDB_CMD_CHECKPOINT_PUT = 5,
	ESDB_CMD_CHECKPOINT_DELETE = 6,
	ESDB_CMD_LIMITS_SET = 7,
};

/* Header flags of an append (esdb_cmd_mark_retry). */
#define ESDB_CMD_FLAG_RETRY 0x1
/* Header flags of a snapshot or checkpoint put or delete: the body ends
 * with a 16-byte request id (esdb_cmd_set_request), and the command is
 * a resubmission of that request (esdb_cmd_mark_retry). */
#define ESDB_CMD_FLAG_REQUEST       0x4
#define ESDB_CMD_FLAG_REQUEST_RETRY 0x8

/* A parsed command; pointers borrow the command buffer. */
typedef struct esdb__cmd_view {
	uint8_t type;
	uint16_t flags; /* snapshot put: ESDB_SNAPSHOT_*_TERM; append:
	                 * ESDB_CMD_FLAG_RETRY */
	uint64_t created_us;
	uint64_t expected; /* append, delete */
	uint64_t number;   /* snapshot source_version, checkpoint value */
	const char *name;  /* stream id, source_uuid or subscription name */
	size_t name_len;
	uint32_t n_events; /* append */
	const uint8_t *events;
	size_t events_len;
	uint64_t events_bytes; /* sum of data + metadata */
	const char *kind;      /* snapshot source_type */
	size_t kind_len;
	const void *data; /* snapshot data, checkpoint definition */
	size_t data_len;
	const void *meta;
	size_t meta_len;
	const uint8_t *request; /* 16 bytes (ESDB_CMD_FLAG_REQUEST), or NULL */
} esdb__cmd_view;

/* Check framing, checksum and every field's bounds, and fill v.
 * Errors: ESDB_EINVAL, ESDB_ECORRUPT, ESDB_EFORMAT. Limits are not
 * checked here. */
int esdb__cmd_parse(const uint8_t *buf, size_t len, esdb__cmd_view *v);

/* Iterate the events of a parsed append: *cursor starts at v->events.
 * Bounds were checked by esdb__cmd_parse. */
void esdb__cmd_next_event(const uint8_t **cursor, esdb_new_event *ev);

/* Check a parsed command against limits: 0, ESDB_ELIMIT (*which names
 * the limit) or ESDB_EEMPTY. */
int esdb__cmd_check_limits(const esdb__cmd_view *v, const esdb_limits *l,
                           esdb_limit_key *which);

/* The limits a parsed LIMITS_SET carries (ESDB_EINVAL when invalid). */
int esdb__cmd_limits(const esdb__cmd_view *v, esdb_limits *l);

#endif
