/* codec.c: record and command encodings; see docs/FORMAT.md. */
#include "codec.h"

#include "bytes.h"
#include "crc32c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The CRC covers the whole record but its own four bytes. */
static uint32_t rec_crc(const uint8_t *rec, size_t len)
{
	return esdb_crc32c(esdb_crc32c(0, rec, 4), rec + ESDB_REC_HEADER,
	                   len - ESDB_REC_HEADER);
}

void esdb__rec_seal(uint8_t *rec, size_t len, uint8_t kind, uint16_t flags)
{
	rec[0] = ESDB_REC_VERSION;
	rec[1] = kind;
	esdb_le16_put(rec + 2, flags);
	esdb_le32_put(rec + 4, rec_crc(rec, len));
}

int esdb__rec_check(const uint8_t *rec, size_t len, uint8_t kind,
                    uint16_t *flags)
{
	if (len < ESDB_REC_HEADER)
		return ESDB_ECORRUPT;
	if (rec[0] != ESDB_REC_VERSION && rec[0] != ESDB_REC_VERSION_LEGACY)
		return ESDB_EFORMAT;
	if (rec[1] != kind)
		return ESDB_ECORRUPT;
	if (esdb_le32_get(rec + 4) != rec_crc(rec, len))
		return ESDB_ECORRUPT;
	if (flags)
		*flags = esdb_le16_get(rec + 2);
	return 0;
}

/* A payload's encoding: its term bit says term; otherwise bytes, except
 * in a version 1 record, written before clear bits meant bytes. */
static esdb_encoding payload_encoding(const uint8_t *rec, uint16_t flags,
                                      uint16_t term_bit)
{
	if (flags & term_bit)
		return ESDB_ENCODING_TERM;
	return rec[0] == ESDB_REC_VERSION_LEGACY ? ESDB_ENCODING_LEGACY
	                                         : ESDB_ENCODING_BYTES;
}

/* ---- events ----------------------------------------------------------- */

/*
 * Event record: header(8) position(8) version(8) created_us(8)
 * event_id(16) stream_len(2) type_len(2) data_len(4) metadata_len(4)
 * [causation(16)] [correlation(16)] stream type data metadata
 */
size_t esdb__event_rec_size(size_t stream_len, const esdb_new_event *ev)
{
	return ESDB_EVENT_FIXED + (ev->causation_id ? 16 : 0) +
	       (ev->correlation_id ? 16 : 0) + stream_len + ev->event_type_len +
	       ev->data_len + ev->metadata_len;
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t len)
{
	if (len)
		memcpy(p, src, len);
	return p + len;
}

void esdb__event_rec_write(uint8_t *rec, size_t size, uint64_t position,
                           uint64_t version, uint64_t created_us,
                           const char *stream_id, size_t stream_len,
                           const esdb_new_event *ev)
{
	uint16_t flags = 0;
	esdb_le64_put(rec + 8, position);
	esdb_le64_put(rec + 16, version);
	esdb_le64_put(rec + 24, created_us);
	memcpy(rec + 32, ev->event_id, 16);
	esdb_le16_put(rec + 48, (uint16_t)stream_len);
	esdb_le16_put(rec + 50, (uint16_t)ev->event_type_len);
	esdb_le32_put(rec + 52, (uint32_t)ev->data_len);
	esdb_le32_put(rec + 56, (uint32_t)ev->metadata_len);
	uint8_t *p = rec + ESDB_EVENT_FIXED;
	if (ev->causation_id) {
		flags |= ESDB_EVENT_HAS_CAUSATION;
		p = put_bytes(p, ev->causation_id, 16);
	}
	if (ev->correlation_id) {
		flags |= ESDB_EVENT_HAS_CORRELATION;
		p = put_bytes(p, ev->correlation_id, 16);
	}
	if (ev->data_encoding == ESDB_ENCODING_TERM)
		flags |= ESDB_EVENT_DATA_TERM;
	if (ev->metadata_encoding == ESDB_ENCODING_TERM)
		flags |= ESDB_EVENT_META_TERM;
	p = put_bytes(p, stream_id, stream_len);
	p = put_bytes(p, ev->event_type, ev->event_type_len);
	p = put_bytes(p, ev->data, ev->data_len);
	p = put_bytes(p, ev->metadata, ev->metadata_len);
	(void)p;
	esdb__rec_seal(rec, size, ESDB_REC_EVENT, flags);
}

int esdb__event_rec_read(const uint8_t *rec, size_t len, esdb_event *out)
{
	uint16_t flags;
	int rc = esdb__rec_check(rec, len, ESDB_REC_EVENT, &flags);
	if (rc)
		return rc;
	if (len < ESDB_EVENT_FIXED)
		return ESDB_ECORRUPT;
	out->position = esdb_le64_get(rec + 8);
	out->stream_version = esdb_le64_get(rec + 16);
	out->created_us = esdb_le64_get(rec + 24);
	out->event_id = rec + 32;
	out->stream_id_len = esdb_le16_get(rec + 48);
	out->event_type_len = esdb_le16_get(rec + 50);
	out->data_len = esdb_le32_get(rec + 52);
	out->metadata_len = esdb_le32_get(rec + 56);
	const uint8_t *p = rec + ESDB_EVENT_FIXED;
	size_t need = ESDB_EVENT_FIXED + out->stream_id_len +
	              out->event_type_len + out->data_len + out->metadata_len;
	out->causation_id = NULL;
	out->correlation_id = NULL;
	out->data_encoding = payload_encoding(rec, flags, ESDB_EVENT_DATA_TERM);
	out->metadata_encoding =
	    payload_encoding(rec, flags, ESDB_EVENT_META_TERM);
	if (flags & ESDB_EVENT_HAS_CAUSATION) {
		out->causation_id = p;
		p += 16;
		need += 16;
	}
	if (flags & ESDB_EVENT_HAS_CORRELATION) {
		out->correlation_id = p;
		p += 16;
		need += 16;
	}
	if (need != len || (flags & ~ESDB_EVENT_FLAGS_KNOWN) ||
	    out->position == 0 || out->stream_version == 0 ||
	    out->stream_version > ESDB_VERSION_MAX || out->stream_id_len == 0 ||
	    out->event_type_len == 0)
		return ESDB_ECORRUPT;
	out->stream_id = (const char *)p;
	p += out->stream_id_len;
	out->event_type = (const char *)p;
	p += out->event_type_len;
	out->data = p;
	p += out->data_len;
	out->metadata = p;
	return 0;
}

/* ---- name-keyed records ----------------------------------------------- */

/* Common head of a name-keyed record: header, u16 name length, name. */
static uint8_t *name_head_write(uint8_t *rec, const char *name, size_t len)
{
	esdb_le16_put(rec + 8, (uint16_t)len);
	return put_bytes(rec + 10, name, len);
}

/* Check a name-keyed record and return a pointer past its name, or NULL
 * when it is shorter than `fixed` bytes after the name, its name is empty
 * or it has flags outside `known_flags`. */
static const uint8_t *name_head_read(const uint8_t *rec, size_t len,
                                     uint8_t kind, size_t fixed,
                                     uint16_t known_flags, uint16_t *flags,
                                     const char **name, size_t *name_len,
                                     int *rc)
{
	*rc = esdb__rec_check(rec, len, kind, flags);
	if (*rc)
		return NULL;
	if (len < 10 || esdb_le16_get(rec + 8) == 0 ||
	    10 + (size_t)esdb_le16_get(rec + 8) + fixed > len ||
	    (*flags & ~known_flags)) {
		*rc = ESDB_ECORRUPT;
		return NULL;
	}
	*name_len = esdb_le16_get(rec + 8);
	*name = (const char *)rec + 10;
	return rec + 10 + *name_len;
}

size_t esdb__stream_rec_size(size_t name_len, uint32_t tail_count)
{
	return 10 + name_len + 8 + 8 + 8 + 16 + 2 + 8 * (size_t)tail_count;
}

uint64_t esdb__stream_tail_position(const esdb__stream_meta *m,
                                    uint64_t version)
{
	/* tail_count <= version keeps `first` from wrapping. */
	if (m->tail_count == 0 || m->tail_count > ESDB_STREAM_TAIL_MAX ||
	    m->tail_count > m->version)
		return 0;
	uint64_t first = m->version - m->tail_count + 1;
	if (version < first || version > m->version)
		return 0;
	return m->tail[version - first];
}

void esdb__stream_rec_write(uint8_t *rec, const esdb__stream_meta *m)
{
	uint8_t *p = name_head_write(rec, m->name, m->name_len);
	esdb_le64_put(p, m->num);
	esdb_le64_put(p + 8, m->version);
	esdb_le64_put(p + 16, m->created_us);
	memcpy(p + 24, m->last_event_id, 16);
	esdb_le16_put(p + 40, (uint16_t)m->tail_count);
	for (uint32_t i = 0; i < m->tail_count; i++)
		esdb_le64_put(p + 42 + 8 * i, m->tail[i]);
	esdb__rec_seal(rec, esdb__stream_rec_size(m->name_len, m->tail_count),
	               ESDB_REC_STREAM, m->deleted ? ESDB_STREAM_DELETED : 0);
}

int esdb__stream_rec_read(const uint8_t *rec, size_t len, esdb__stream_meta *m)
{
	int rc;
	uint16_t flags;
	const uint8_t *p =
	    name_head_read(rec, len, ESDB_REC_STREAM, 42, ESDB_STREAM_DELETED,
	                   &flags, &m->name, &m->name_len, &rc);
	if (!p)
		return rc;
	m->num = esdb_le64_get(p);
	m->version = esdb_le64_get(p + 8);
	m->created_us = esdb_le64_get(p + 16);
	memcpy(m->last_event_id, p + 24, 16);
	m->tail_count = esdb_le16_get(p + 40);
	/* A full tail moves to stream_index, so 32 is never stored. */
	if (m->num == 0 || m->version > ESDB_VERSION_MAX ||
	    m->tail_count >= ESDB_STREAM_TAIL_MAX ||
	    m->tail_count > m->version ||
	    len != esdb__stream_rec_size(m->name_len, m->tail_count))
		return ESDB_ECORRUPT;
	/* Positions of consecutive versions: nonzero and increasing. */
	for (uint32_t i = 0; i < m->tail_count; i++) {
		m->tail[i] = esdb_le64_get(p + 42 + 8 * i);
		if (m->tail[i] <= (i ? m->tail[i - 1] : 0))
			return ESDB_ECORRUPT;
	}
	m->deleted = (flags & ESDB_STREAM_DELETED) != 0;
	return 0;
}

size_t esdb__type_rec_size(size_t name_len)
{
	return 10 + name_len + 8;
}

void esdb__type_rec_write(uint8_t *rec, const char *name, size_t len,
                          uint64_t num)
{
	esdb_le64_put(name_head_write(rec, name, len), num);
	esdb__rec_seal(rec, esdb__type_rec_size(len), ESDB_REC_TYPE, 0);
}

int esdb__type_rec_read(const uint8_t *rec, size_t len, uint64_t *num)
{
	int rc;
	uint16_t flags;
	const char *name;
	size_t name_len;
	const uint8_t *p = name_head_read(rec, len, ESDB_REC_TYPE, 8, 0, &flags,
	                                  &name, &name_len, &rc);
	if (!p)
		return rc;
	if (len != esdb__type_rec_size(name_len))
		return ESDB_ECORRUPT;
	*num = esdb_le64_get(p);
	return *num ? 0 : ESDB_ECORRUPT; /* type numbers start at 1 */
}

/* Which snapshot payloads were written as terms. */
static uint16_t snapshot_flags(const esdb_snapshot *sn)
{
	return (sn->data_encoding == ESDB_ENCODING_TERM
	            ? ESDB_SNAPSHOT_DATA_TERM
	            : 0) |
	       (sn->metadata_encoding == ESDB_ENCODING_TERM
	            ? ESDB_SNAPSHOT_META_TERM
	            : 0);
}

/* Snapshot: head, source_version(8) created_us(8) type_len(2)
 * data_len(4) metadata_len(4), type, data, metadata. */
size_t esdb__snapshot_rec_size(const esdb_snapshot *sn)
{
	return 10 + sn->source_uuid_len + 26 + sn->source_type_len +
	       sn->data_len + sn->metadata_len;
}

void esdb__snapshot_rec_write(uint8_t *rec, const esdb_snapshot *sn)
{
	uint8_t *p = name_head_write(rec, sn->source_uuid, sn->source_uuid_len);
	esdb_le64_put(p, sn->source_version);
	esdb_le64_put(p + 8, sn->created_us);
	esdb_le16_put(p + 16, (uint16_t)sn->source_type_len);
	esdb_le32_put(p + 18, (uint32_t)sn->data_len);
	esdb_le32_put(p + 22, (uint32_t)sn->metadata_len);
	p = put_bytes(p + 26, sn->source_type, sn->source_type_len);
	p = put_bytes(p, sn->data, sn->data_len);
	put_bytes(p, sn->metadata, sn->metadata_len);
	esdb__rec_seal(rec, esdb__snapshot_rec_size(sn), ESDB_REC_SNAPSHOT,
	               snapshot_flags(sn));
}

int esdb__snapshot_rec_read(const uint8_t *rec, size_t len, esdb_snapshot *sn)
{
	int rc;
	uint16_t flags;
	const uint8_t *p = name_head_read(
	    rec, len, ESDB_REC_SNAPSHOT, 26, ESDB_SNAPSHOT_FLAGS_KNOWN, &flags,
	    &sn->source_uuid, &sn->source_uuid_len, &rc);
	if (!p)
		return rc;
	sn->source_version = esdb_le64_get(p);
	sn->created_us = esdb_le64_get(p + 8);
	sn->source_type_len = esdb_le16_get(p + 16);
	sn->data_len = esdb_le32_get(p + 18);
	sn->metadata_len = esdb_le32_get(p + 22);
	if (len != esdb__snapshot_rec_size(sn))
		return ESDB_ECORRUPT;
	p += 26;
	sn->source_type = (const char *)p;
	sn->data = p + sn->source_type_len;
	sn->metadata = p + sn->source_type_len + sn->data_len;
	sn->data_encoding =
	    payload_encoding(rec, flags, ESDB_SNAPSHOT_DATA_TERM);
	sn->metadata_encoding =
	    payload_encoding(rec, flags, ESDB_SNAPSHOT_META_TERM);
	return 0;
}

/* Checkpoint: head, checkpoint(8) updated_us(8) definition_len(4), def. */
size_t esdb__checkpoint_rec_size(const esdb_checkpoint *cp)
{
	return 10 + cp->name_len + 20 + cp->definition_len;
}

void esdb__checkpoint_rec_write(uint8_t *rec, const esdb_checkpoint *cp)
{
	uint8_t *p = name_head_write(rec, cp->name, cp->name_len);
	esdb_le64_put(p, cp->checkpoint);
	esdb_le64_put(p + 8, cp->updated_us);
	esdb_le32_put(p + 16, (uint32_t)cp->definition_len);
	put_bytes(p + 20, cp->definition, cp->definition_len);
	esdb__rec_seal(rec, esdb__checkpoint_rec_size(cp), ESDB_REC_CHECKPOINT,
	               0);
}

int esdb__checkpoint_rec_read(const uint8_t *rec, size_t len,
                              esdb_checkpoint *cp)
{
	int rc;
	uint16_t flags;
	const uint8_t *p =
	    name_head_read(rec, len, ESDB_REC_CHECKPOINT, 20, 0, &flags,
	                   &cp->name, &cp->name_len, &rc);
	if (!p)
		return rc;
	cp->checkpoint = esdb_le64_get(p);
	cp->updated_us = esdb_le64_get(p + 8);
	cp->definition_len = esdb_le32_get(p + 16);
	if (len != esdb__checkpoint_rec_size(cp))
		return ESDB_ECORRUPT;
	cp->definition = p + 20;
	return 0;
}

/* ---- commands --------------------------------------------------------- */

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
	p = put_bytes(p + 14, stream_id, stream_len);
	for (size_t i = 0; i < n; i++) {
		const esdb_new_event *ev = &events[i];
		p = put_bytes(p, ev->event_id, 16);
		*p++ = (ev->causation_id ? ESDB_EVENT_HAS_CAUSATION : 0) |
		       (ev->correlation_id ? ESDB_EVENT_HAS_CORRELATION : 0) |
		       (ev->data_encoding == ESDB_ENCODING_TERM
		            ? ESDB_EVENT_DATA_TERM
		            : 0) |
		       (ev->metadata_encoding == ESDB_ENCODING_TERM
		            ? ESDB_EVENT_META_TERM
		            : 0);
		if (ev->causation_id)
			p = put_bytes(p, ev->causation_id, 16);
		if (ev->correlation_id)
			p = put_bytes(p, ev->correlation_id, 16);
		esdb_le16_put(p, (uint16_t)ev->event_type_len);
		esdb_le32_put(p + 2, (uint32_t)ev->data_len);
		esdb_le32_put(p + 6, (uint32_t)ev->metadata_len);
		p = put_bytes(p + 10, ev->event_type, ev->event_type_len);
		p = put_bytes(p, ev->data, ev->data_len);
		p = put_bytes(p, ev->metadata, ev->metadata_len);
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
	put_bytes(p + 10, stream_id, stream_len);
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
	esdb_le16_put(out->buf + 2, snapshot_flags(sn));
	esdb_le64_put(p, sn->source_version);
	esdb_le16_put(p + 8, (uint16_t)uuid_len);
	esdb_le16_put(p + 10, (uint16_t)type_len);
	esdb_le32_put(p + 12, (uint32_t)data_len);
	esdb_le32_put(p + 16, (uint32_t)metadata_len);
	p = put_bytes(p + 20, source_uuid, uuid_len);
	p = put_bytes(p, source_type, type_len);
	p = put_bytes(p, data, data_len);
	put_bytes(p, metadata, metadata_len);
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
	put_bytes(p + 2, name, len);
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
	p = put_bytes(p + 14, name, name_len);
	put_bytes(p, definition, definition_len);
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

/* ---- limits ------------------------------------------------------------ */

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
static void limits_put(uint8_t *p, const esdb_limits *l)
{
	esdb_le32_put(p, l->max_stream_id);
	esdb_le32_put(p + 4, l->max_event_type);
	esdb_le64_put(p + 8, l->max_event_bytes);
	esdb_le32_put(p + 16, l->max_append_events);
	esdb_le64_put(p + 20, l->max_append_bytes);
	esdb_le32_put(p + 28, l->max_key);
}

static void limits_get(const uint8_t *p, esdb_limits *l)
{
	l->max_stream_id = esdb_le32_get(p);
	l->max_event_type = esdb_le32_get(p + 4);
	l->max_event_bytes = esdb_le64_get(p + 8);
	l->max_append_events = esdb_le32_get(p + 16);
	l->max_append_bytes = esdb_le64_get(p + 20);
	l->max_key = esdb_le32_get(p + 28);
}

void esdb__limits_rec_write(uint8_t rec[ESDB_LIMITS_REC_SIZE],
                            const esdb_limits *l)
{
	limits_put(rec + ESDB_REC_HEADER, l);
	esdb__rec_seal(rec, ESDB_LIMITS_REC_SIZE, ESDB_REC_LIMITS, 0);
}

int esdb__limits_rec_read(const uint8_t *rec, size_t len, esdb_limits *l)
{
	int rc = esdb__rec_check(rec, len, ESDB_REC_LIMITS, NULL);
	if (rc)
		return rc;
	if (len != ESDB_LIMITS_REC_SIZE)
		return ESDB_ECORRUPT;
	limits_get(rec + ESDB_REC_HEADER, l);
	return esdb__limits_complete(l) ? 0 : ESDB_ECORRUPT;
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
	limits_put(p, limits);
	cmd_seal(out);
	return 0;
}

int esdb__cmd_limits(const esdb__cmd_view *v, esdb_limits *l)
{
	if (v->type != ESDB_CMD_LIMITS_SET || v->data_len != ESDB_LIMITS_SIZE)
		return ESDB_EINVAL;
	limits_get(v->data, l);
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
	 * Only a snapshot put has flags (its payloads' encodings). */
	uint16_t flags = esdb_le16_get(buf + 2);
	if ((flags &
	     ~(buf[1] == ESDB_CMD_SNAPSHOT_PUT ? ESDB_SNAPSHOT_FLAGS_KNOWN
	                                       : 0)) ||
	    esdb_le32_get(buf + 12))
		return ESDB_EINVAL;
	memset(v, 0, sizeof(*v));
	v->type = buf[1];
	v->flags = flags;
	v->created_us = esdb_le64_get(buf + 16);
	rd r = {buf + ESDB_CMD_HEADER, buf + len, false};
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

void esdb_uuid_format(const uint8_t id[16], char out[36])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hex[id[i] >> 4];
		*out++ = hex[id[i] & 15];
	}
}
