/* term_check.h: bounds checks of Erlang external-format terms received by
 * the C node, run before any ei_decode_* sees them (ei's decoders trust
 * lengths in the data). No allocation, no ei. */
#ifndef ESDB_CNODE_TERM_CHECK_H
#define ESDB_CNODE_TERM_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* What a term may contain besides plain data (numbers, atoms, binaries,
 * strings, lists, tuples, maps). Funs, ports, compressed terms, atom
 * cache references and old-style references are never accepted (a
 * compressed term is inflated and checked by its caller, if at all). */
enum {
	TC_ALLOW_PID = 1u << 0,
	TC_ALLOW_REF = 1u << 1,
};

typedef struct tc_limits {
	unsigned allow;         /* TC_ALLOW_* bits */
	unsigned max_depth;     /* nesting of tuples, lists and maps */
	uint32_t max_big_bytes; /* digits of a bignum, in bytes */
} tc_limits;

/* Defaults: no pids or refs, depth 32, bignums up to 64 bytes. */
#define TC_LIMITS_DEFAULT ((tc_limits){0, 32, 64})

/* Outcomes. Names for replies and logs: tc_error_name(). */
enum {
	TC_OK = 0,
	TC_TRUNCATED = 1, /* a length or element runs past the buffer */
	TC_BAD_TAG = 2,   /* not a term tag (or a version byte missing) */
	TC_FORBIDDEN = 3, /* an atom cache reference or old-style ref */
	TC_TOO_DEEP = 4,  /* nesting over max_depth */
	TC_TOO_LONG = 5,  /* an atom, bignum or reference over its bound */
	TC_BAD_VALUE = 6, /* a malformed field (bit count, sign, utf8 atom) */
	TC_TRAILING = 7,  /* bytes after the term */
	/* Kinds refused where the limits do not allow them (funs, ports
	 * and compressed terms never), named as the NIF names them. */
	TC_FUN = 8,
	TC_PID = 9,
	TC_PORT = 10,
	TC_REF = 11,
	TC_COMPRESSED = 12,
};

/* Whether rc refuses a kind of term rather than malformed bytes. */
int tc_is_forbidden(int rc);

/* Check the term starting at buf[*pos] (a tag, no version byte), which
 * must lie wholly within buf[0..len). On TC_OK *pos is the offset just
 * past it; on failure *pos is unchanged. Runs in time linear in the
 * term's size and uses stack in proportion to max_depth. */
int tc_check(const uint8_t *buf, size_t len, size_t *pos, const tc_limits *l);

/* Check a whole external term: the version byte 131 at buf[*pos], one
 * term, and (when `whole`) nothing after it. *pos as for tc_check. */
int tc_check_versioned(const uint8_t *buf, size_t len, size_t *pos,
                       const tc_limits *l, int whole);

/* "truncated", "bad_tag", ...: a stable name of an outcome. */
const char *tc_error_name(int rc);

#endif
