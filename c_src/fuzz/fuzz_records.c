/* fuzz_records.c: libFuzzer target for the record decoders (make fuzz).
 * Each input is decoded as every record kind three times: as it is,
 * resealed with a valid CRC so that the structural checks after the CRC
 * are what is exercised, and resealed as a version 1 record. Every byte a
 * decoder hands out is read, so ASan sees a field that points outside the
 * record. */
#include "bytes.h"
#include "records.h"
#include "crc32c.h"

#include <stdlib.h>
#include <string.h>

static volatile uint8_t sink;

static void touch(const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		sink ^= b[i];
}

static void decode_all(const uint8_t *rec, size_t len)
{
	esdb_event ev;
	if (esdb__event_rec_read(rec, len, &ev) == 0) {
		touch(ev.event_id, 16);
		touch(ev.stream_id, ev.stream_id_len);
		touch(ev.event_type, ev.event_type_len);
		touch(ev.data, ev.data_len);
		touch(ev.metadata, ev.metadata_len);
		if (ev.causation_id)
			touch(ev.causation_id, 16);
		if (ev.correlation_id)
			touch(ev.correlation_id, 16);
	}
	esdb__stream_meta m;
	if (esdb__stream_rec_read(rec, len, &m) == 0) {
		touch(m.name, m.name_len);
		/* every version near the tail, and the extremes */
		for (uint64_t d = 0; d < 40; d++)
			sink ^= (uint8_t)esdb__stream_tail_position(
			    &m, m.version - d);
		sink ^= (uint8_t)esdb__stream_tail_position(&m, UINT64_MAX);
		sink ^= (uint8_t)esdb__stream_tail_position(&m, 0);
	}
	uint64_t num;
	if (esdb__type_rec_read(rec, len, &num) == 0)
		sink ^= (uint8_t)num;
	esdb_snapshot sn;
	if (esdb__snapshot_rec_read(rec, len, &sn) == 0) {
		touch(sn.source_uuid, sn.source_uuid_len);
		touch(sn.source_type, sn.source_type_len);
		touch(sn.data, sn.data_len);
		touch(sn.metadata, sn.metadata_len);
	}
	esdb_checkpoint cp;
	if (esdb__checkpoint_rec_read(rec, len, &cp) == 0) {
		touch(cp.name, cp.name_len);
		touch(cp.definition, cp.definition_len);
	}
	esdb_limits l;
	if (esdb__limits_rec_read(rec, len, &l) == 0)
		sink ^= (uint8_t)l.max_key;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size heap copy: reading past it is an ASan report */
	uint8_t *rec = malloc(size ? size : 1);
	memcpy(rec, data, size);
	decode_all(rec, size);
	if (size >= ESDB_REC_HEADER) {
		uint16_t flags = (uint16_t)(data[2] | data[3] << 8);
		esdb__rec_seal(rec, size, data[1], flags);
		decode_all(rec, size);
		/* and as a version 1 record, whose payloads are legacy */
		rec[0] = ESDB_REC_VERSION_LEGACY;
		esdb_le32_put(rec + 4, esdb_crc32c(esdb_crc32c(0, rec, 4),
		                                   rec + ESDB_REC_HEADER,
		                                   size - ESDB_REC_HEADER));
		decode_all(rec, size);
	}
	free(rec);
	return 0;
}
