/* limit.c: the store's limits (esdb.h): defaults, names, ranges, and the
 * 32-byte block that carries them in the limits record and the LIMITS_SET
 * command. */
#include "limit.h"

#include "bytes.h"

void esdb_limits_init(esdb_limits *l)
{
	l->max_stream_id = 1024;
	l->max_event_type = 512;
	l->max_event_bytes = 16ull << 20;
	l->max_append_events = 10000;
	l->max_append_bytes = 64ull << 20;
	l->max_key = 1024;
}

const char *esdb_limit_name(esdb_limit_key key)
{
	switch (key) {
	case ESDB_LIMIT_STREAM_ID:
		return "max_stream_id";
	case ESDB_LIMIT_EVENT_TYPE:
		return "max_event_type";
	case ESDB_LIMIT_EVENT_BYTES:
		return "max_event_bytes";
	case ESDB_LIMIT_APPEND_EVENTS:
		return "max_append_events";
	case ESDB_LIMIT_APPEND_BYTES:
		return "max_append_bytes";
	case ESDB_LIMIT_KEY:
		return "max_key";
	default:
		return "";
	}
}

uint64_t esdb_limits_lookup(const esdb_limits *l, esdb_limit_key key)
{
	switch (key) {
	case ESDB_LIMIT_STREAM_ID:
		return l->max_stream_id;
	case ESDB_LIMIT_EVENT_TYPE:
		return l->max_event_type;
	case ESDB_LIMIT_EVENT_BYTES:
		return l->max_event_bytes;
	case ESDB_LIMIT_APPEND_EVENTS:
		return l->max_append_events;
	case ESDB_LIMIT_APPEND_BYTES:
		return l->max_append_bytes;
	case ESDB_LIMIT_KEY:
		return l->max_key;
	default:
		return 0;
	}
}

/* Record fields hold names in 16 bits and payloads in 32; 0 is "keep". */
bool esdb__limits_in_range(const esdb_limits *l)
{
	return l->max_stream_id <= UINT16_MAX &&
	       l->max_event_type <= UINT16_MAX && l->max_key <= UINT16_MAX &&
	       l->max_event_bytes <= UINT32_MAX &&
	       l->max_append_bytes <= UINT32_MAX;
}

bool esdb__limits_complete(const esdb_limits *l)
{
	return esdb__limits_in_range(l) && l->max_stream_id &&
	       l->max_event_type && l->max_key && l->max_event_bytes &&
	       l->max_append_events && l->max_append_bytes;
}

void esdb__limits_merge(esdb_limits *base, const esdb_limits *over)
{
	if (over->max_stream_id)
		base->max_stream_id = over->max_stream_id;
	if (over->max_event_type)
		base->max_event_type = over->max_event_type;
	if (over->max_event_bytes)
		base->max_event_bytes = over->max_event_bytes;
	if (over->max_append_events)
		base->max_append_events = over->max_append_events;
	if (over->max_append_bytes)
		base->max_append_bytes = over->max_append_bytes;
	if (over->max_key)
		base->max_key = over->max_key;
}

/* The limits block: stream_id(4) event_type(4) event_bytes(8)
 * append_events(4) append_bytes(8) key(4). */
void esdb__limits_block_write(uint8_t *p, const esdb_limits *l)
{
	esdb_le32_put(p, l->max_stream_id);
	esdb_le32_put(p + 4, l->max_event_type);
	esdb_le64_put(p + 8, l->max_event_bytes);
	esdb_le32_put(p + 16, l->max_append_events);
	esdb_le64_put(p + 20, l->max_append_bytes);
	esdb_le32_put(p + 28, l->max_key);
}

void esdb__limits_block_read(const uint8_t *p, esdb_limits *l)
{
	l->max_stream_id = esdb_le32_get(p);
	l->max_event_type = esdb_le32_get(p + 4);
	l->max_event_bytes = esdb_le64_get(p + 8);
	l->max_append_events = esdb_le32_get(p + 16);
	l->max_append_bytes = esdb_le64_get(p + 20);
	l->max_key = esdb_le32_get(p + 28);
}
