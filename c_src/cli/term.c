/* term.c: Erlang external term format in the CLI's output. ei's decoders
 * trust the lengths in the data and recurse as deep as it nests, so a
 * crafted record could make them read past the payload or exhaust the
 * stack: every length is checked against the bytes first, nesting is
 * bounded, and only data kinds are accepted (no pids, ports, refs, funs,
 * no compressed terms, no big integers ei cannot print). */
#include "term.h"

#include <ei.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 100
/* ei prints a big integer as hex through a 2000-byte stack buffer it
 * does not bound (ei_printterm.c, xprintf): a larger one overflowed the
 * CLI's stack. 255 bytes (the largest SMALL_BIG_EXT) print as 513
 * characters at most; larger ones are shown as bytes. */
#define MAX_BIG_BYTES 255

typedef struct cursor {
	const uint8_t *p, *end;
} cursor;

static bool skip(cursor *c, uint64_t n)
{
	if ((uint64_t)(c->end - c->p) < n)
		return false;
	c->p += n;
	return true;
}

static bool get(cursor *c, unsigned bytes, uint32_t *v)
{
	if ((size_t)(c->end - c->p) < bytes)
		return false;
	*v = 0;
	for (unsigned i = 0; i < bytes; i++)
		*v = *v << 8 | *c->p++;
	return true;
}

static bool term_ok(cursor *c, int depth);

static bool terms_ok(cursor *c, uint64_t n, int depth)
{
	/* every term takes a byte at least: a count past the data stops at
	 * the end */
	for (uint64_t i = 0; i < n; i++)
		if (!term_ok(c, depth))
			return false;
	return true;
}

static bool term_ok(cursor *c, int depth)
{
	uint32_t tag, n, x;
	if (depth > MAX_DEPTH || !get(c, 1, &tag))
		return false;
	switch (tag) {
	case 97: /* SMALL_INTEGER_EXT */
		return skip(c, 1);
	case 98: /* INTEGER_EXT */
		return skip(c, 4);
	case 70: /* NEW_FLOAT_EXT */
		return skip(c, 8);
	case 99: /* FLOAT_EXT: ei sscanf()s it, reading on past the 31
	          * bytes while they continue a number: Erlang pads with NULs,
	          * and one without a NUL is refused */
		return (size_t)(c->end - c->p) >= 31 &&
		       memchr(c->p, 0, 31) != NULL && skip(c, 31);
	case 100: /* ATOM_EXT (Latin-1) */
		return get(c, 2, &n) && n < MAXATOMLEN && skip(c, n);
	case 115: /* SMALL_ATOM_EXT */
		return get(c, 1, &n) && skip(c, n);
	case 118: /* ATOM_UTF8_EXT */
		return get(c, 2, &n) && n < MAXATOMLEN_UTF8 && skip(c, n);
	case 119: /* SMALL_ATOM_UTF8_EXT */
		return get(c, 1, &n) && skip(c, n);
	case 104: /* SMALL_TUPLE_EXT */
		return get(c, 1, &n) && terms_ok(c, n, depth + 1);
	case 105: /* LARGE_TUPLE_EXT */
		return get(c, 4, &n) && terms_ok(c, n, depth + 1);
	case 106: /* NIL_EXT */
		return true;
	case 107: /* STRING_EXT */
		return get(c, 2, &n) && skip(c, n);
	case 108: /* LIST_EXT: elements, then the tail */
		return get(c, 4, &n) && terms_ok(c, (uint64_t)n + 1, depth + 1);
	case 109: /* BINARY_EXT */
		return get(c, 4, &n) && skip(c, n);
	case 77: /* BIT_BINARY_EXT */
		return get(c, 4, &n) && get(c, 1, &x) && x >= 1 && x <= 8 &&
		       n > 0 && skip(c, n);
	case 110: /* SMALL_BIG_EXT */
		return get(c, 1, &n) && get(c, 1, &x) && x <= 1 && skip(c, n);
	case 111: /* LARGE_BIG_EXT */
		return get(c, 4, &n) && n <= MAX_BIG_BYTES && get(c, 1, &x) &&
		       x <= 1 && skip(c, n);
	case 116: /* MAP_EXT */
		return get(c, 4, &n) && terms_ok(c, 2 * (uint64_t)n, depth + 1);
	default: /* pids, ports, refs, funs, compressed, unknown */
		return false;
	}
}

static pthread_once_t ei_once = PTHREAD_ONCE_INIT;

static void ei_start(void)
{
	ei_init();
}

char *term_text(const void *buf, size_t len)
{
	cursor c = {buf, (const uint8_t *)buf + len};
	uint32_t version;
	char *s = NULL;
	int index = 1;

	if (len > TERM_PRINT_MAX || !get(&c, 1, &version) || version != 131 ||
	    !term_ok(&c, 0) || c.p != c.end)
		return NULL;
	pthread_once(&ei_once, ei_start);
	if (ei_s_print_term(&s, buf, &index) < 0 || (size_t)index != len) {
		free(s);
		return NULL;
	}
	return s;
}
