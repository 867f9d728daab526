/* commands.c: the commands (docs/FORMAT.md, "Commands"), the log entry
 * format every mutation travels in: encoders, the parser apply and the
 * fuzzer use, and the limit checks both share. */
#include "commands.h"

#include "bytes.h"
#include "crc32c.h"
#include "limit.h"
#include "records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * Command header (24 bytes): version(1) type(1) reserved(2) length(4)
 * crc32c(4) reserved(4) created_us(8). The CRC covers bytes [0,8) and
 * [12,length), i.e. everything but itself.
 */
static uint32_t cmd_crc(const uint8_t *buf, size_t len)
{
	return esdb_crc32c(esdb_crc32c(0, buf, 8), buf + 12, len - 12);
}

static int cmd_alloc(uint8_t type, size_t body, esdb_cmd *out, uint8_t **p)
{
	size_t len = ESDB_CMD_HEADER + body;
	if (len > UINT32_MAX)
		return ESDB_ELIMIT;
	uint8_t *buf = calloc(1, len);
	if (!buf)
		return ENOMEM;
	buf[0] = ESDB_CMD_VERSION;
	buf[1] = type;
	esdb_le32_put(buf + 4, (uint32_t)len);
	esdb_le64_put(buf + 16, esdb_clock_get_us());
	out->buf = buf;
	out->len = len;
	*p = buf + ESDB_CMD_HEADER;
	return 0;
}

static void cmd_seal(esdb_cmd *c)
{
	esdb_le32_put(c->buf + 8, cmd_crc(c->buf, c->len));
}

static const esdb_limits *limits_or_default(const esdb_limits *l,
                                            esdb_limits *tmp)
{
	if (l)
		return l;
	esdb_limits_init(tmp);
	return tmp;
}

/* Refuse a command for exceeding limit `key`, naming it in out. */
static int over(esdb_cmd *out, esdb_limit_key key)
{
	out->limit = key;
	return ESDB_ELIMIT;
}

/* Every encoder starts from an empty command. */
static void cmd_reset(esdb_cmd *out)
{
	out->buf = NULL;
	out->len = 0;
	out->limit = ESDB_LIMIT_NONE;
}

static int check_name(const char *name, size_t len, size_t max,
                      esdb_limit_key key, esdb_cmd *out)
{
	if (!name && len)
		return ESDB_EINVAL;
	if (len == 0)
		return ESDB_EINVAL;
	if (len > max || len > UINT16_MAX)
		return over(out, key);
	return 0;
}

int esdb_stream_id_check(const char *id, size_t len)
{
	if (!id || len == 0 || id[0] == ESDB_RESERVED_PREFIX)
		return ESDB_EINVAL;
	return 0;
}

/* A stream id an append or delete may name. */
static int check_stream_id(const char *id, size_t len, size_t max,
                           esdb_cmd *out)
{
	int rc = check_name(id, len, max, ESDB_LIMIT_STREAM_ID, out);
	return rc ? rc : esdb_stream_id_check(id, len);
}

/* Per-event encoded size inside an append command. */
static size_t cmd_event_size(const esdb_new_event *ev)
{
	return 16 + 1 + (ev->causation_id ? 16 : 0) +
	       (ev->correlation_id ? 16 : 0) + 2 + 4 + 4 + ev->event_type_len +
	       ev->data_len + ev->metadata_len;
}

static bool valid_encoding(esdb_encoding e)
{
	return e == ESDB_ENCODING_BYTES || e == ESDB_ENCODING_TERM;
}

static int check_event(const esdb_new_event *ev, const esdb_limits *l,
                       esdb_cmd *out)
{
	int rc = check_name(ev->event_type, ev->event_type_len,
	                    l->max_event_type, ESDB_LIMIT_EVENT_TYPE, out);
	if (rc)
		return rc;
	if ((!ev->data && ev->data_len) || (!ev->metadata && ev->metadata_len))
		return ESDB_EINVAL;
	if (!valid_encoding(ev->data_encoding) ||
	    !valid_encoding(ev->metadata_encoding))
		return ESDB_EINVAL;
	if (ev->data_len + ev->metadata_len > l->max_event_bytes ||
	    ev->data_len > UINT32_MAX || ev->metadata_len > UINT32_MAX)
		return over(out, ESDB_LIMIT_EVENT_BYTES);
	return 0;
}

int esdb_cmd_stream_append(const esdb_limits *limits, const char *stream_id,
                           size_t stream_len, uint64_t expected,
                           const esdb_new_event *events, size_t n,
                           esdb_cmd *out)
{
	esdb_limits tmp;
	const esdb_limits *l = limits_or_default(limits, &tmp);
	cmd_reset(out);
	int rc = check_stream_id(stream_id, stream_len, l->max_stream_id, out);
	if (rc)
		return rc;
	if (n == 0)
		return ESDB_EEMPTY;
	if (!events)
		return ESDB_EINVAL;
	if (n > l->max_append_events)
		return over(out, ESDB_LIMIT_APPEND_EVENTS);
	size_t body = 8 + 2 + 4 + stream_len;
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++) {
		if ((rc = check_event(&events[i], l, out)))
			return rc;
		bytes += events[i].data_len + events[i].metadata_len;
		body += cmd_event_size(&events[i]);
	}
	if (bytes > l->max_append_bytes)
		return over(out, ESDB_LIMIT_APPEND_BYTES);
	uint8_t *p;
	if ((rc = cmd_alloc(ESDB_CMD_APPEND, body, out, &p)))
		return rc == ESDB_ELIMIT ? over(out, ESDB_LIMIT_APPEND_BYTES)
		                         : rc;
	esdb_le64_put(p, expected);
	esdb_le16_put(p + 8, (uint16_t)stream_len);
	esdb_le32_put(p + 10, (uint32_t)n);
	p = esdb_bytes_put(p + 14, stream_id, stream_len);
	for (size_t i = 0; i < n; i++) {
		const esdb_new_event *ev = &events[i];
		p = esdb_bytes_put(p, ev->event_id, 16);
		*p++ = (ev->causation_id ? ESDB_EVENT_HAS_CAUSATION : 0) |
		       (ev->correlation_id ? ESDB_EVENT_HAS_CORRELATION : 0) |
		       (ev->data_encoding == ESDB_ENCODING_TERM
		            ? ESDB_EVENT_DATA_TERM
		            : 0) |
		       (ev->metadata_encoding == ESDB_ENCODING_TERM
		            ? ESDB_EVENT_META_TERM
		            : 0);
		if (ev->causation_id)
			p = esdb_bytes_put(p, ev->causation_id, 16);
		if (ev->correlation_id)
			p = esdb_bytes_put(p, ev->correlation_id, 16);
		esdb_le16_put(p, (uint16_t)ev->event_type_len);
		esdb_le32_put(p + 2, (uint32_t)ev->data_len);
		esdb_le32_put(p + 6, (uint32_t)ev->metadata_len);
		p = esdb_bytes_put(p + 10, ev->event_type, ev->event_type_len);
		p = esdb_bytes_put(p, ev->data, ev->data_len);
		p = esdb_bytes_put(p, ev->metadata, ev->metadata_len);
	}
	cmd_seal(out);
	return 0;
}

int esdb_cmd_stream_delete(const esdb_limits *limits, const char *stream_id,
                           size_t stream_len, uint64_t expected, esdb_cmd *out)
{
	esdb_limits tmp;
	const esdb_limits *l = limits_or_default(limits, &tmp);
	cmd_reset(out);
	int rc = check_stream_id(stream_id, stream_len, l->max_stream_id, out);
	uint8_t *p;
	if (rc ||
	    (rc = cmd_alloc(ESDB_CMD_DELETE_STREAM, 10 + stream_len, out, &p)))
		return rc;
	esdb_le64_put(p, expected);
	esdb_le16_put(p + 8, (uint16_t)stream_len);
	esdb_bytes_put(p + 10, stream_id, stream_len);
	cmd_seal(out);
	return 0;
}

int esdb_cmd_snapshot_put(const esdb_limits *limits, const esdb_snapshot *sn,
                          esdb_cmd *out)
{
	esdb_limits tmp;
	const esdb_limits *l = limits_or_default(limits, &tmp);
	if (!sn)
		return ESDB_EINVAL;
	const char *source_uuid = sn->source_uuid,
	           *source_type = sn->source_type;
	size_t uuid_len = sn->source_uuid_len, type_len = sn->source_type_len;
	const void *data = sn->data, *metadata = sn->metadata;
	size_t data_len = sn->data_len, metadata_len = sn->metadata_len;
	cmd_reset(out);
	int rc =
	    check_name(source_uuid, uuid_len, l->max_key, ESDB_LIMIT_KEY, out);
	if (rc)
		return rc;
	if ((!source_type && type_len) || (!data && data_len) ||
	    (!metadata && metadata_len) || !valid_encoding(sn->data_encoding) ||
	    !valid_encoding(sn->metadata_encoding))
		return ESDB_EINVAL;
	if (type_len > l->max_event_type)
		return over(out, ESDB_LIMIT_EVENT_TYPE);
	if (data_len + metadata_len > l->max_event_bytes)
		return over(out, ESDB_LIMIT_EVENT_BYTES);
	uint8_t *p;
	rc = cmd_alloc(ESDB_CMD_SNAPSHOT_PUT,
	               20 + uuid_len + type_len + data_len + metadata_len, out,
	               &p);
	if (rc)
		return rc;
	/* The payloads' encodings travel in the header's flags. */
	esdb_le16_put(out->buf + 2, esdb__snapshot_flags(sn));
	esdb_le64_put(p, sn->source_version);
	esdb_le16_put(p + 8, (uint16_t)uuid_len);
	esdb_le16_put(p + 10, (uint16_t)type_len);
	esdb_le32_put(p + 12, (uint32_t)data_len);
	esdb_le32_put(p + 16, (uint32_t)metadata_len);
	p = esdb_bytes_put(p + 20, source_uuid, uuid_len);
	p = esdb_bytes_put(p, source_type, type_len);
	p = esdb_bytes_put(p, data, data_len);
	esdb_bytes_put(p, metadata, metadata_len);
	cmd_seal(out);
	return 0;
}

/* A command whose body is u16 length + name (the deletes). */
static int cmd_named(uint8_t type, const char *name, size_t len, size_t max,
                     esdb_cmd *out)
{
	cmd_reset(out);
	int rc = check_name(name, len, max, ESDB_LIMIT_KEY, out);
	uint8_t *p;
	if (rc || (rc = cmd_alloc(type, 2 + len, out, &p)))
		return rc;
	esdb_le16_put(p, (uint16_t)len);
	esdb_bytes_put(p + 2, name, len);
	cmd_seal(out);
	return 0;
}

int esdb_cmd_snapshot_delete(const esdb_limits *limits, const char *source_uuid,
                             size_t uuid_len, esdb_cmd *out)
{
	esdb_limits tmp;
	return cmd_named(ESDB_CMD_SNAPSHOT_DELETE, source_uuid, uuid_len,
	                 limits_or_default(limits, &tmp)->max_key, out);
}

int esdb_cmd_checkpoint_put(const esdb_limits *limits, const char *name,
                            size_t name_len, uint64_t checkpoint,
                            const void *definition, size_t definition_len,
                            esdb_cmd *out)
{
	esdb_limits tmp;
	const esdb_limits *l = limits_or_default(limits, &tmp);
	cmd_reset(out);
	int rc = check_name(name, name_len, l->max_key, ESDB_LIMIT_KEY, out);
	if (rc)
		return rc;
	if (!definition && definition_len)
		return ESDB_EINVAL;
	if (definition_len > l->max_event_bytes)
		return over(out, ESDB_LIMIT_EVENT_BYTES);
	uint8_t *p;
	rc = cmd_alloc(ESDB_CMD_CHECKPOINT_PUT, 14 + name_len + definition_len,
	               out, &p);
	if (rc)
		return rc;
	esdb_le64_put(p, checkpoint);
	esdb_le16_put(p + 8, (uint16_t)name_len);
	esdb_le32_put(p + 10, (uint32_t)definition_len);
	p = esdb_bytes_put(p + 14, name, name_len);
	esdb_bytes_put(p, definition, definition_len);
	cmd_seal(out);
	return 0;
}

int esdb_cmd_checkpoint_delete(const esdb_limits *limits, const char *name,
                               size_t name_len, esdb_cmd *out)
{
	esdb_limits tmp;
	return cmd_named(ESDB_CMD_CHECKPOINT_DELETE, name, name_len,
	                 limits_or_default(limits, &tmp)->max_key, out);
}

int esdb_cmd_limits_set(const esdb_limits *limits, esdb_cmd *out)
{
	uint8_t *p;
	cmd_reset(out);
	if (!limits || !esdb__limits_complete(limits))
		return ESDB_EINVAL;
	int rc = cmd_alloc(ESDB_CMD_LIMITS_SET, ESDB_LIMITS_SIZE, out, &p);
	if (rc)
		return rc;
	esdb__limits_block_write(p, limits);
	cmd_seal(out);
	return 0;
}

int esdb__cmd_limits(const esdb__cmd_view *v, esdb_limits *l)
{
	if (v->type != ESDB_CMD_LIMITS_SET || v->data_len != ESDB_LIMITS_SIZE)
		return ESDB_EINVAL;
	esdb__limits_block_read(v->data, l);
	return esdb__limits_complete(l) ? 0 : ESDB_EINVAL;
}

/* ---- parsing ---------------------------------------------------------- */

/* A bounds-checked reader over a command body. */
typedef struct rd {
	const uint8_t *p, *end;
	bool bad;
} rd;

static const uint8_t *rd_take(rd *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *q = r->p;
	r->p += n;
	return q;
}

static uint64_t rd_u64(rd *r)
{
	const uint8_t *q = rd_take(r, 8);
	return q ? esdb_le64_get(q) : 0;
}

static uint32_t rd_u32(rd *r)
{
	const uint8_t *q = rd_take(r, 4);
	return q ? esdb_le32_get(q) : 0;
}

static uint16_t rd_u16(rd *r)
{
	const uint8_t *q = rd_take(r, 2);
	return q ? esdb_le16_get(q) : 0;
}

int esdb_cmd_check(const uint8_t *buf, size_t len)
{
	esdb__cmd_view v;
	return esdb__cmd_parse(buf, len, &v);
}

static int parse_events(rd *r, esdb__cmd_view *v)
{
	v->events = r->p;
	v->events_bytes = 0;
	for (uint32_t i = 0; i < v->n_events; i++) {
		rd_take(r, 16);
		const uint8_t *f = rd_take(r, 1);
		if (!f || (*f & ~ESDB_EVENT_FLAGS_KNOWN))
			return ESDB_EINVAL;
		if (*f & ESDB_EVENT_HAS_CAUSATION)
			rd_take(r, 16);
		if (*f & ESDB_EVENT_HAS_CORRELATION)
			rd_take(r, 16);
		uint16_t tl = rd_u16(r);
		uint32_t dl = rd_u32(r), ml = rd_u32(r);
		if (tl == 0)
			return ESDB_EINVAL;
		rd_take(r, (size_t)tl + dl + ml);
		if (r->bad)
			return ESDB_EINVAL;
		v->events_bytes += (uint64_t)dl + ml;
	}
	v->events_len = (size_t)(r->p - v->events);
	return 0;
}

#define REQUEST_FLAGS (ESDB_CMD_FLAG_REQUEST | ESDB_CMD_FLAG_REQUEST_RETRY)

static uint16_t known_flags(uint8_t type)
{
	switch (type) {
	case ESDB_CMD_SNAPSHOT_PUT:
		return ESDB_SNAPSHOT_FLAGS_KNOWN | REQUEST_FLAGS;
	case ESDB_CMD_SNAPSHOT_DELETE:
	case ESDB_CMD_CHECKPOINT_PUT:
	case ESDB_CMD_CHECKPOINT_DELETE:
		return REQUEST_FLAGS;
	case ESDB_CMD_APPEND:
		return ESDB_CMD_FLAG_RETRY;
	default:
		return 0;
	}
}

int esdb_cmd_mark_retry(esdb_cmd *cmd)
{
	esdb__cmd_view v;
	if (!cmd || !cmd->buf || esdb__cmd_parse(cmd->buf, cmd->len, &v))
		return ESDB_EINVAL;
	uint16_t mark = v.type == ESDB_CMD_APPEND ? ESDB_CMD_FLAG_RETRY
	                : v.request               ? ESDB_CMD_FLAG_REQUEST_RETRY
	                                          : 0;
	if (!mark)
		return ESDB_EINVAL;
	esdb_le16_put(cmd->buf + 2, v.flags | mark);
	cmd_seal(cmd);
	return 0;
}

int esdb_cmd_set_request(esdb_cmd *cmd, const uint8_t id[16])
{
	esdb__cmd_view v;
	if (!cmd || !cmd->buf || !id ||
	    esdb__cmd_parse(cmd->buf, cmd->len, &v) || v.request ||
	    !(known_flags(v.type) & ESDB_CMD_FLAG_REQUEST) ||
	    cmd->len + 16 > UINT32_MAX)
		return ESDB_EINVAL;
	uint8_t *buf = realloc(cmd->buf, cmd->len + 16);
	if (!buf)
		return ENOMEM;
	memcpy(buf + cmd->len, id, 16);
	cmd->buf = buf;
	cmd->len += 16;
	esdb_le32_put(buf + 4, (uint32_t)cmd->len);
	esdb_le16_put(buf + 2, v.flags | ESDB_CMD_FLAG_REQUEST);
	cmd_seal(cmd);
	return 0;
}

int esdb__cmd_parse(const uint8_t *buf, size_t len, esdb__cmd_view *v)
{
	if (!buf || len < ESDB_CMD_HEADER)
		return ESDB_EINVAL;
	if (buf[0] != ESDB_CMD_VERSION)
		return ESDB_EFORMAT;
	if (esdb_le32_get(buf + 4) != len)
		return ESDB_EINVAL;
	if (esdb_le32_get(buf + 8) != cmd_crc(buf, len))
		return ESDB_ECORRUPT;
	/* Reserved bytes are zero: a later format may give them meaning.
	 * Only a snapshot put (its payloads' encodings) and an append (a
	 * retry) have flags. */
	uint16_t flags = esdb_le16_get(buf + 2);
	if ((flags & ~known_flags(buf[1])) || esdb_le32_get(buf + 12))
		return ESDB_EINVAL;
	/* a retry mark without a request id to look for is malformed */
	if ((flags & REQUEST_FLAGS) == ESDB_CMD_FLAG_REQUEST_RETRY)
		return ESDB_EINVAL;
	memset(v, 0, sizeof(*v));
	v->type = buf[1];
	v->flags = flags;
	v->created_us = esdb_le64_get(buf + 16);
	rd r = {buf + ESDB_CMD_HEADER, buf + len, false};
	if (flags & ESDB_CMD_FLAG_REQUEST) { /* the body's last 16 bytes */
		if (len < ESDB_CMD_HEADER + 16)
			return ESDB_EINVAL;
		r.end -= 16;
		v->request = r.end;
	}
	int rc = 0;
	switch (v->type) {
	case ESDB_CMD_APPEND:
		v->expected = rd_u64(&r);
		v->name_len = rd_u16(&r);
		v->n_events = rd_u32(&r);
		v->name = (const char *)rd_take(&r, v->name_len);
		if (!r.bad)
			rc = parse_events(&r, v);
		break;
	case ESDB_CMD_DELETE_STREAM:
		v->expected = rd_u64(&r);
		v->name_len = rd_u16(&r);
		v->name = (const char *)rd_take(&r, v->name_len);
		break;
	case ESDB_CMD_SNAPSHOT_PUT:
		v->number = rd_u64(&r);
		v->name_len = rd_u16(&r);
		v->kind_len = rd_u16(&r);
		v->data_len = rd_u32(&r);
		v->meta_len = rd_u32(&r);
		v->name = (const char *)rd_take(&r, v->name_len);
		v->kind = (const char *)rd_take(&r, v->kind_len);
		v->data = rd_take(&r, v->data_len);
		v->meta = rd_take(&r, v->meta_len);
		break;
	case ESDB_CMD_CHECKPOINT_PUT:
		v->number = rd_u64(&r);
		v->name_len = rd_u16(&r);
		v->data_len = rd_u32(&r);
		v->name = (const char *)rd_take(&r, v->name_len);
		v->data = rd_take(&r, v->data_len);
		break;
	case ESDB_CMD_SNAPSHOT_DELETE:
	case ESDB_CMD_CHECKPOINT_DELETE:
		v->name_len = rd_u16(&r);
		v->name = (const char *)rd_take(&r, v->name_len);
		break;
	case ESDB_CMD_LIMITS_SET:
		v->data_len = ESDB_LIMITS_SIZE;
		v->data = rd_take(&r, ESDB_LIMITS_SIZE);
		if (r.bad || r.p != r.end)
			return ESDB_EINVAL;
		esdb_limits l;
		return esdb__cmd_limits(v, &l);
	default:
		return ESDB_EINVAL;
	}
	if (rc)
		return rc;
	if (r.bad || r.p != r.end || v->name_len == 0)
		return ESDB_EINVAL;
	return 0;
}

void esdb__cmd_next_event(const uint8_t **cursor, esdb_new_event *ev)
{
	const uint8_t *p = *cursor;
	memcpy(ev->event_id, p, 16);
	uint8_t f = p[16];
	p += 17;
	ev->causation_id = NULL;
	ev->correlation_id = NULL;
	ev->data_encoding =
	    f & ESDB_EVENT_DATA_TERM ? ESDB_ENCODING_TERM : ESDB_ENCODING_BYTES;
	ev->metadata_encoding =
	    f & ESDB_EVENT_META_TERM ? ESDB_ENCODING_TERM : ESDB_ENCODING_BYTES;
	if (f & ESDB_EVENT_HAS_CAUSATION) {
		ev->causation_id = p;
		p += 16;
	}
	if (f & ESDB_EVENT_HAS_CORRELATION) {
		ev->correlation_id = p;
		p += 16;
	}
	ev->event_type_len = esdb_le16_get(p);
	ev->data_len = esdb_le32_get(p + 2);
	ev->metadata_len = esdb_le32_get(p + 6);
	p += 10;
	ev->event_type = (const char *)p;
	p += ev->event_type_len;
	ev->data = p;
	p += ev->data_len;
	ev->metadata = p;
	p += ev->metadata_len;
	*cursor = p;
}

/* The first limit a parsed command exceeds, checked in the encoders'
 * order so both name the same one. */
static esdb_limit_key exceeded(const esdb__cmd_view *v, const esdb_limits *l)
{
	switch (v->type) {
	case ESDB_CMD_APPEND: {
		if (v->name_len > l->max_stream_id)
			return ESDB_LIMIT_STREAM_ID;
		if (v->n_events > l->max_append_events)
			return ESDB_LIMIT_APPEND_EVENTS;
		const uint8_t *c = v->events;
		for (uint32_t i = 0; i < v->n_events; i++) {
			esdb_new_event ev;
			esdb__cmd_next_event(&c, &ev);
			if (ev.event_type_len > l->max_event_type)
				return ESDB_LIMIT_EVENT_TYPE;
			if (ev.data_len + ev.metadata_len > l->max_event_bytes)
				return ESDB_LIMIT_EVENT_BYTES;
		}
		if (v->events_bytes > l->max_append_bytes)
			return ESDB_LIMIT_APPEND_BYTES;
		return ESDB_LIMIT_NONE;
	}
	case ESDB_CMD_DELETE_STREAM:
		return v->name_len > l->max_stream_id ? ESDB_LIMIT_STREAM_ID
		                                      : ESDB_LIMIT_NONE;
	case ESDB_CMD_SNAPSHOT_PUT:
		if (v->name_len > l->max_key)
			return ESDB_LIMIT_KEY;
		if (v->kind_len > l->max_event_type)
			return ESDB_LIMIT_EVENT_TYPE;
		return v->data_len + v->meta_len > l->max_event_bytes
		           ? ESDB_LIMIT_EVENT_BYTES
		           : ESDB_LIMIT_NONE;
	case ESDB_CMD_CHECKPOINT_PUT:
		if (v->name_len > l->max_key)
			return ESDB_LIMIT_KEY;
		return v->data_len > l->max_event_bytes ? ESDB_LIMIT_EVENT_BYTES
		                                        : ESDB_LIMIT_NONE;
	case ESDB_CMD_LIMITS_SET:
		return ESDB_LIMIT_NONE;
	default:
		return v->name_len > l->max_key ? ESDB_LIMIT_KEY
		                                : ESDB_LIMIT_NONE;
	}
}

int esdb__cmd_check_limits(const esdb__cmd_view *v, const esdb_limits *l,
                           esdb_limit_key *which)
{
	*which = ESDB_LIMIT_NONE;
	if (v->type == ESDB_CMD_APPEND && v->n_events == 0)
		return ESDB_EEMPTY;
	*which = exceeded(v, l);
	return *which == ESDB_LIMIT_NONE ? 0 : ESDB_ELIMIT;
}
