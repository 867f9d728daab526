/* term_check.c: the external term format walked within bounds (see
 * term_check.h). Every length read from the data is compared with what
 * is left of the buffer before it is used; every container's element
 * count with the bytes left, as each element takes at least one byte. */
#include "term_check.h"
#include "etf_tags.h"

#include <string.h>

/* An atom holds at most 255 characters: 255 bytes in Latin-1, up to 4
 * bytes each in UTF-8 (what ei's MAXATOMLEN_UTF8 buffers hold). */
#define ATOM_CHARS 255u
/* References carry at most 5 words of id (erts' ERTS_MAX_REF_NUMBERS). */
#define REF_WORDS 5u

typedef struct walk {
	const uint8_t *b;
	size_t len;
	const tc_limits *l;
} walk;

/* n more bytes from pos lie within the buffer. */
static int have(const walk *w, size_t pos, uint64_t n)
{
	return pos <= w->len && n <= w->len - pos;
}

/* Characters of a UTF-8 text, or -1 when it is not well formed (ei's
 * decoder converts it and must not read past it). */
static long utf8_chars(const uint8_t *p, size_t n)
{
	long chars = 0;
	for (size_t i = 0; i < n; chars++) {
		uint8_t c = p[i];
		size_t k = c < 0x80             ? 1
		           : (c & 0xE0) == 0xC0 ? 2
		           : (c & 0xF0) == 0xE0 ? 3
		           : (c & 0xF8) == 0xF0 ? 4
		                                : 0;
		if (!k || k > n - i)
			return -1;
		for (size_t j = 1; j < k; j++)
			if ((p[i + j] & 0xC0) != 0x80)
				return -1;
		i += k;
	}
	return chars;
}

static int atom_at(const walk *w, size_t *pos)
{
	size_t p = *pos;
	if (!have(w, p, 1))
		return TC_TRUNCATED;
	uint8_t tag = w->b[p++];
	size_t hdr = (tag == SMALL_ATOM_EXT || tag == SMALL_ATOM_UTF8_EXT) ? 1
	             : (tag == ATOM_EXT || tag == ATOM_UTF8_EXT)           ? 2
	                                                                   : 0;
	if (tag == ATOM_CACHE_REF)
		return TC_FORBIDDEN;
	if (!hdr)
		return TC_BAD_TAG;
	if (!have(w, p, hdr))
		return TC_TRUNCATED;
	size_t n = hdr == 1 ? w->b[p] : (size_t)w->b[p] << 8 | w->b[p + 1];
	p += hdr;
	if (!have(w, p, n))
		return TC_TRUNCATED;
	if (tag == ATOM_UTF8_EXT || tag == SMALL_ATOM_UTF8_EXT) {
		long chars = utf8_chars(w->b + p, n);
		if (chars < 0)
			return TC_BAD_VALUE;
		if ((unsigned long)chars > ATOM_CHARS)
			return TC_TOO_LONG;
	} else if (n > ATOM_CHARS) {
		return TC_TOO_LONG;
	}
	*pos = p + n;
	return TC_OK;
}

/* A pid, port or reference names its node with an atom, then fixed
 * fields. */
static int node_then(const walk *w, size_t *pos, uint64_t fixed)
{
	size_t p = *pos;
	int rc = atom_at(w, &p);
	if (rc)
		return rc;
	if (!have(w, p, fixed))
		return TC_TRUNCATED;
	*pos = p + fixed;
	return TC_OK;
}

static int term_at(const walk *w, size_t *pos, unsigned depth);

/* n terms in a row (tuple elements, list elements, map keys and values). */
static int terms_at(const walk *w, size_t *pos, uint64_t n, unsigned depth)
{
	/* Each term takes at least one byte: a count beyond what is left
	 * is a lie, found before looping over it. */
	if (!have(w, *pos, n))
		return TC_TRUNCATED;
	if (n && depth >= w->l->max_depth)
		return TC_TOO_DEEP;
	for (uint64_t i = 0; i < n; i++) {
		int rc = term_at(w, pos, depth + 1);
		if (rc)
			return rc;
	}
	return TC_OK;
}

static int term_at(const walk *w, size_t *pos, unsigned depth)
{
	size_t p = *pos;
	if (!have(w, p, 1))
		return TC_TRUNCATED;
	uint8_t tag = w->b[p];
	int rc = TC_OK;
	uint64_t n;
	switch (tag) {
	case SMALL_INTEGER_EXT:
		if (!have(w, p + 1, 1))
			return TC_TRUNCATED;
		p += 2;
		break;
	case INTEGER_EXT:
		if (!have(w, p + 1, 4))
			return TC_TRUNCATED;
		p += 5;
		break;
	case NEW_FLOAT_EXT:
		if (!have(w, p + 1, 8))
			return TC_TRUNCATED;
		p += 9;
		break;
	case ATOM_EXT:
	case SMALL_ATOM_EXT:
	case ATOM_UTF8_EXT:
	case SMALL_ATOM_UTF8_EXT:
		rc = atom_at(w, &p);
		break;
	case SMALL_BIG_EXT:
	case LARGE_BIG_EXT: {
		size_t hdr = tag == SMALL_BIG_EXT ? 1 : 4;
		if (!have(w, p + 1, hdr + 1))
			return TC_TRUNCATED;
		n = hdr == 1 ? w->b[p + 1] : etf_be32(w->b + p + 1);
		if (w->b[p + 1 + hdr] > 1)
			return TC_BAD_VALUE;
		if (n > w->l->max_big_bytes)
			return TC_TOO_LONG;
		p += 2 + hdr;
		if (!have(w, p, n))
			return TC_TRUNCATED;
		p += n;
		break;
	}
	case BINARY_EXT:
		if (!have(w, p + 1, 4))
			return TC_TRUNCATED;
		n = etf_be32(w->b + p + 1);
		p += 5;
		if (!have(w, p, n))
			return TC_TRUNCATED;
		p += n;
		break;
	case BIT_BINARY_EXT:
		if (!have(w, p + 1, 5))
			return TC_TRUNCATED;
		n = etf_be32(w->b + p + 1);
		if (w->b[p + 5] < 1 || w->b[p + 5] > 8 || n == 0)
			return TC_BAD_VALUE;
		p += 6;
		if (!have(w, p, n))
			return TC_TRUNCATED;
		p += n;
		break;
	case STRING_EXT:
		if (!have(w, p + 1, 2))
			return TC_TRUNCATED;
		n = (uint64_t)w->b[p + 1] << 8 | w->b[p + 2];
		p += 3;
		if (!have(w, p, n))
			return TC_TRUNCATED;
		p += n;
		break;
	case NIL_EXT:
		p += 1;
		break;
	case SMALL_TUPLE_EXT:
	case LARGE_TUPLE_EXT: {
		size_t hdr = tag == SMALL_TUPLE_EXT ? 1 : 4;
		if (!have(w, p + 1, hdr))
			return TC_TRUNCATED;
		n = hdr == 1 ? w->b[p + 1] : etf_be32(w->b + p + 1);
		p += 1 + hdr;
		rc = terms_at(w, &p, n, depth);
		break;
	}
	case LIST_EXT:
		if (!have(w, p + 1, 4))
			return TC_TRUNCATED;
		n = etf_be32(w->b + p + 1);
		p += 5;
		/* The elements and the tail (NIL_EXT for a proper list). */
		rc = terms_at(w, &p, n + 1, depth);
		break;
	case MAP_EXT:
		if (!have(w, p + 1, 4))
			return TC_TRUNCATED;
		n = etf_be32(w->b + p + 1);
		p += 5;
		rc = terms_at(w, &p, 2 * n, depth);
		break;
	case NEW_PID_EXT:
	case PID_EXT:
		if (!(w->l->allow & TC_ALLOW_PID))
			return TC_PID;
		p += 1;
		/* id, serial, creation (one byte in the old form) */
		rc = node_then(w, &p, tag == NEW_PID_EXT ? 12 : 9);
		break;
	case NEWER_REFERENCE_EXT:
	case NEW_REFERENCE_EXT: {
		if (!(w->l->allow & TC_ALLOW_REF))
			return TC_REF;
		if (!have(w, p + 1, 2))
			return TC_TRUNCATED;
		n = (uint64_t)w->b[p + 1] << 8 | w->b[p + 2];
		if (n < 1 || n > REF_WORDS)
			return TC_TOO_LONG;
		p += 3;
		uint64_t creation = tag == NEWER_REFERENCE_EXT ? 4 : 1;
		rc = node_then(w, &p, creation + 4 * n);
		break;
	}
	case NEW_FUN_EXT:
	case FUN_EXT:
	case EXPORT_EXT:
		return TC_FUN;
	case PORT_EXT:
	case NEW_PORT_EXT:
	case V4_PORT_EXT:
		return TC_PORT;
	case COMPRESSED:
		return TC_COMPRESSED;
	case REFERENCE_EXT:
	case ATOM_CACHE_REF:
		return TC_FORBIDDEN;
	case FLOAT_EXT: /* text floats: no BEAM sends them to ei (new floats) */
	default:
		return TC_BAD_TAG;
	}
	if (rc)
		return rc;
	*pos = p;
	return TC_OK;
}

int tc_check(const uint8_t *buf, size_t len, size_t *pos, const tc_limits *l)
{
	walk w = {buf, len, l};
	return term_at(&w, pos, 0);
}

int tc_check_versioned(const uint8_t *buf, size_t len, size_t *pos,
                       const tc_limits *l, int whole)
{
	size_t p = *pos;
	if (p >= len)
		return TC_TRUNCATED;
	if (buf[p] != VERSION_MAGIC)
		return TC_BAD_TAG;
	p++;
	int rc = tc_check(buf, len, &p, l);
	if (rc)
		return rc;
	if (whole && p != len)
		return TC_TRAILING;
	*pos = p;
	return TC_OK;
}

int tc_is_forbidden(int rc)
{
	return rc == TC_FORBIDDEN || (rc >= TC_FUN && rc <= TC_COMPRESSED);
}

const char *tc_error_name(int rc)
{
	static const char *const names[] = {
	    "ok",         "truncated", "bad_tag",   "forbidden_term",
	    "too_deep",   "too_long",  "bad_value", "trailing_bytes",
	    "fun",        "pid",       "port",      "reference",
	    "compressed",
	};
	return rc >= 0 && rc < (int)(sizeof(names) / sizeof(names[0]))
	           ? names[rc]
	           : "unknown";
}
