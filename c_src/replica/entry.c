/* entry.c: encoding and checking replica entries (entry.h). */
#include "entry.h"

#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

size_t esdb_entry_size(const esdb_cmd *cmds, size_t n)
{
	size_t size = ESDB_ENTRY_HEADER;
	for (size_t i = 0; i < n; i++)
		size += 8 + pad8(cmds[i].len);
	return size;
}

void esdb_entry_encode(uint8_t *out, uint64_t proposer, uint64_t seq,
                       const esdb_cmd *cmds, size_t n)
{
	put16(out, ESDB_ENTRY_VERSION);
	put16(out + 2, ESDB_ENTRY_KIND_COMMANDS);
	put32(out + 4, (uint32_t)n);
	put64(out + 8, proposer);
	put64(out + 16, seq);
	uint8_t *p = out + ESDB_ENTRY_HEADER;
	for (size_t i = 0; i < n; i++) {
		size_t len = cmds[i].len, padded = pad8(len);
		put32(p, (uint32_t)len);
		put32(p + 4, 0);
		memcpy(p + 8, cmds[i].buf, len);
		memset(p + 8 + len, 0, padded - len);
		p += 8 + padded;
	}
}

int esdb_entry_header_read(const uint8_t *buf, size_t len, esdb_entry_header *h)
{
	if (len < ESDB_ENTRY_HEADER || len % 8)
		return ESDB_ECORRUPT;
	h->version = get16(buf);
	h->kind = get16(buf + 2);
	h->count = get32(buf + 4);
	h->proposer = get64(buf + 8);
	h->seq = get64(buf + 16);
	/* The version first: a newer version may change everything after. */
	if (h->version != ESDB_ENTRY_VERSION)
		return ESDB_EFORMAT;
	if (h->kind != ESDB_ENTRY_KIND_COMMANDS || h->count == 0 ||
	    h->count > ESDB_ENTRY_MAX_COMMANDS)
		return ESDB_ECORRUPT;
	return 0;
}

int esdb_entry_decode(const uint8_t *buf, size_t len, esdb_entry_header *h,
                      esdb_cmd *cmds)
{
	int rc = esdb_entry_header_read(buf, len, h);
	if (rc)
		return rc;
	size_t off = ESDB_ENTRY_HEADER;
	for (uint32_t i = 0; i < h->count; i++) {
		if (len - off < 8)
			return ESDB_ECORRUPT;
		size_t clen = get32(buf + off);
		if (get32(buf + off + 4) != 0 || clen == 0 ||
		    pad8(clen) > len - off - 8)
			return ESDB_ECORRUPT;
		cmds[i] =
		    (esdb_cmd){.buf = (uint8_t *)buf + off + 8, .len = clen};
		off += 8 + pad8(clen);
	}
	return off == len ? 0 : ESDB_ECORRUPT;
}
