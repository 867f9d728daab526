/* records.c: the storage records (docs/FORMAT.md, "Records"): what the
 * store keeps in LMDB, written and checked here and nowhere else. */
#include "records.h"

#include "bytes.h"
#include "crc32c.h"

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
		p = esdb_bytes_put(p, ev->causation_id, 16);
	}
	if (ev->correlation_id) {
		flags |= ESDB_EVENT_HAS_CORRELATION;
		p = esdb_bytes_put(p, ev->correlation_id, 16);
	}
	if (ev->data_encoding == ESDB_ENCODING_TERM)
		flags |= ESDB_EVENT_DATA_TERM;
	if (ev->metadata_encoding == ESDB_ENCODING_TERM)
		flags |= ESDB_EVENT_META_TERM;
	p = esdb_bytes_put(p, stream_id, stream_len);
	p = esdb_bytes_put(p, ev->event_type, ev->event_type_len);
	p = esdb_bytes_put(p, ev->data, ev->data_len);
	p = esdb_bytes_put(p, ev->metadata, ev->metadata_len);
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
	return esdb_bytes_put(rec + 10, name, len);
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
uint16_t esdb__snapshot_flags(const esdb_snapshot *sn)
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
	p = esdb_bytes_put(p + 26, sn->source_type, sn->source_type_len);
	p = esdb_bytes_put(p, sn->data, sn->data_len);
	esdb_bytes_put(p, sn->metadata, sn->metadata_len);
	esdb__rec_seal(rec, esdb__snapshot_rec_size(sn), ESDB_REC_SNAPSHOT,
	               esdb__snapshot_flags(sn));
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
	esdb_bytes_put(p + 20, cp->definition, cp->definition_len);
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

/* ---- limits ------------------------------------------------------------ */

void esdb__limits_rec_write(uint8_t rec[ESDB_LIMITS_REC_SIZE],
                            const esdb_limits *l)
{
	esdb__limits_block_write(rec + ESDB_REC_HEADER, l);
	esdb__rec_seal(rec, ESDB_LIMITS_REC_SIZE, ESDB_REC_LIMITS, 0);
}

int esdb__limits_rec_read(const uint8_t *rec, size_t len, esdb_limits *l)
{
	int rc = esdb__rec_check(rec, len, ESDB_REC_LIMITS, NULL);
	if (rc)
		return rc;
	if (len != ESDB_LIMITS_REC_SIZE)
		return ESDB_ECORRUPT;
	esdb__limits_block_read(rec + ESDB_REC_HEADER, l);
	return esdb__limits_complete(l) ? 0 : ESDB_ECORRUPT;
}
