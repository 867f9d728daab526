/* fuzz_commands.c: libFuzzer target for the command decoder (make fuzz).
 * Each input is parsed as it is and with its length and CRC fixed, so
 * that the bounds and structure checks are what is exercised; a parsed
 * command has its events walked, its bytes read and its limits checked,
 * as apply does. */
#include "bytes.h"
#include "commands.h"
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

static void parse_and_walk(const uint8_t *buf, size_t len)
{
	esdb__cmd_view v;
	if (esdb__cmd_parse(buf, len, &v))
		return;
	touch(v.name, v.name_len);
	touch(v.kind, v.kind_len);
	touch(v.data, v.data_len);
	touch(v.meta, v.meta_len);
	if (v.type == ESDB_CMD_APPEND) {
		const uint8_t *c = v.events;
		for (uint32_t i = 0; i < v.n_events; i++) {
			esdb_new_event ev;
			esdb__cmd_next_event(&c, &ev);
			touch(ev.event_id, 16);
			touch(ev.event_type, ev.event_type_len);
			touch(ev.data, ev.data_len);
			touch(ev.metadata, ev.metadata_len);
			if (ev.causation_id)
				touch(ev.causation_id, 16);
			if (ev.correlation_id)
				touch(ev.correlation_id, 16);
		}
		if (c != v.events + v.events_len)
			abort(); /* parse and walk disagree */
	}
	esdb_limits l;
	esdb_limit_key which;
	esdb_limits_init(&l);
	sink ^= (uint8_t)esdb__cmd_check_limits(&v, &l, &which);
	sink ^= (uint8_t)esdb__cmd_limits(&v, &l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	parse_and_walk(buf, size);
	if (size >= ESDB_CMD_HEADER && size <= UINT32_MAX) {
		buf[0] = ESDB_CMD_VERSION;
		esdb_le32_put(buf + 4, (uint32_t)size);
		esdb_le32_put(buf + 8, esdb_crc32c(esdb_crc32c(0, buf, 8),
		                                   buf + 12, size - 12));
		parse_and_walk(buf, size);
	}
	free(buf);
	return 0;
}
