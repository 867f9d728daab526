/* etf.c: stored Erlang terms, decoded without trusting them.
 *
 * binary_to_term(_, [safe]) still makes local funs (callable code), and
 * pids, ports and references that point into whichever node reads them;
 * it inflates a compressed term to whatever size the term declares. So a
 * payload written as a term is walked here before it is decoded: every
 * length is checked against the bytes, funs, pids, ports and references
 * are refused, every atom must already exist in this VM, and a compressed
 * term must declare at most ETF_MAX_INFLATED bytes before anything is
 * inflated. Only then does enif_binary_to_term see it. The walk is a loop
 * over a count of terms still to read, not a recursion, so nesting depth
 * costs no stack. */
#include "etf.h"
#include "etf_tags.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct walk {
	const uint8_t *p, *end;
	ErlNifEnv *env;       /* NULL: atoms are not looked up */
	bool unchecked_atoms; /* atoms this VM's NIF API cannot look up */
} walk;

/* n bytes, or NULL when fewer are left. */
static const uint8_t *take(walk *w, size_t n)
{
	if ((size_t)(w->end - w->p) < n)
		return NULL;
	const uint8_t *q = w->p;
	w->p += n;
	return q;
}

/* A length field of `width` bytes (1, 2 or 4), big-endian. */
static bool take_len(walk *w, int width, uint64_t *out)
{
	const uint8_t *q = take(w, (size_t)width);
	if (!q)
		return false;
	*out = width == 1   ? q[0]
	       : width == 2 ? (uint64_t)q[0] << 8 | q[1]
	                    : etf_be32(q);
	return true;
}

/* A UTF-8 atom name as Latin-1 when every character fits (OTP 25's NIF
 * API looks atoms up by Latin-1 only). False when one does not. */
static bool utf8_to_latin1(const uint8_t *s, size_t len, char *out,
                           size_t *out_len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x80) {
			out[n++] = (char)s[i];
		} else if ((s[i] & 0xFE) == 0xC2 && i + 1 < len &&
		           (s[i + 1] & 0xC0) == 0x80) {
			out[n++] =
			    (char)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3F));
			i++;
		} else {
			return false;
		}
	}
	*out_len = n;
	return true;
}

/* An atom of `len` bytes at w->p must exist in this VM. */
static int atom(walk *w, uint64_t len, bool utf8)
{
	/* At most 255 characters: bytes in Latin-1, up to 4 each in UTF-8. */
	const uint8_t *name = take(w, len);
	if (!name || len > (utf8 ? 255 * 4 : 255))
		return ETF_MALFORMED;
	if (!w->env)
		return 0;
	char latin1[255 * 4];
	size_t n = len;
	if (utf8 && !utf8_to_latin1(name, len, latin1, &n)) {
		/* binary_to_term [safe] still refuses it if it is unknown. */
		w->unchecked_atoms = true;
		return 0;
	}
	if (n > 255)
		return ETF_MALFORMED;
	ERL_NIF_TERM a;
	if (!enif_make_existing_atom_len(w->env,
	                                 utf8 ? latin1 : (const char *)name, n,
	                                 &a, ERL_NIF_LATIN1))
		return ETF_UNKNOWN_ATOM;
	return 0;
}

/* Walk one complete term (without the version byte) filling w. */
static int walk_term(walk *w)
{
	uint64_t pending = 1, len;
	while (pending > 0) {
		const uint8_t *tag = take(w, 1);
		if (!tag)
			return ETF_MALFORMED;
		pending--;
		uint64_t children = 0;
		int rc = 0;
		switch (*tag) {
		case SMALL_INTEGER_EXT:
			rc = take(w, 1) ? 0 : ETF_MALFORMED;
			break;
		case INTEGER_EXT:
			rc = take(w, 4) ? 0 : ETF_MALFORMED;
			break;
		case NEW_FLOAT_EXT:
			rc = take(w, 8) ? 0 : ETF_MALFORMED;
			break;
		case FLOAT_EXT:
			rc = take(w, 31) ? 0 : ETF_MALFORMED;
			break;
		case ATOM_EXT:
		case ATOM_UTF8_EXT:
			rc = take_len(w, 2, &len)
			         ? atom(w, len, *tag == ATOM_UTF8_EXT)
			         : ETF_MALFORMED;
			break;
		case SMALL_ATOM_EXT:
		case SMALL_ATOM_UTF8_EXT:
			rc = take_len(w, 1, &len)
			         ? atom(w, len, *tag == SMALL_ATOM_UTF8_EXT)
			         : ETF_MALFORMED;
			break;
		case SMALL_TUPLE_EXT:
			rc = take_len(w, 1, &children) ? 0 : ETF_MALFORMED;
			break;
		case LARGE_TUPLE_EXT:
			rc = take_len(w, 4, &children) ? 0 : ETF_MALFORMED;
			break;
		case MAP_EXT:
			rc = take_len(w, 4, &len) ? 0 : ETF_MALFORMED;
			children = 2 * len;
			break;
		case NIL_EXT:
			break;
		case STRING_EXT:
			rc = take_len(w, 2, &len) && take(w, len)
			         ? 0
			         : ETF_MALFORMED;
			break;
		case LIST_EXT:
			rc = take_len(w, 4, &len) ? 0 : ETF_MALFORMED;
			children = len + 1; /* the elements and the tail */
			break;
		case BINARY_EXT:
			rc = take_len(w, 4, &len) && take(w, len)
			         ? 0
			         : ETF_MALFORMED;
			break;
		case BIT_BINARY_EXT:
			rc = take_len(w, 4, &len) && take(w, 1) && take(w, len)
			         ? 0
			         : ETF_MALFORMED;
			break;
		case SMALL_BIG_EXT:
			rc = take_len(w, 1, &len) && take(w, 1 + len)
			         ? 0
			         : ETF_MALFORMED;
			break;
		case LARGE_BIG_EXT:
			rc = take_len(w, 4, &len) && take(w, 1 + len)
			         ? 0
			         : ETF_MALFORMED;
			break;
		case NEW_FUN_EXT:
		case FUN_EXT:
		case EXPORT_EXT:
			return ETF_FUN;
		case PID_EXT:
		case NEW_PID_EXT:
			return ETF_PID;
		case PORT_EXT:
		case NEW_PORT_EXT:
		case V4_PORT_EXT:
			return ETF_PORT;
		case REFERENCE_EXT:
		case NEW_REFERENCE_EXT:
		case NEWER_REFERENCE_EXT:
			return ETF_REFERENCE;
		default:
			/* ATOM_CACHE_REF, LOCAL_EXT, a nested COMPRESSED,
			 * distribution headers and unknown tags. */
			return ETF_MALFORMED;
		}
		if (rc)
			return rc;
		/* Every term takes at least one byte: more pending terms than
		 * bytes left cannot be, and the count cannot overflow. */
		if (children > (uint64_t)(w->end - w->p) ||
		    pending + children > (uint64_t)(w->end - w->p))
			return ETF_MALFORMED;
		pending += children;
	}
	return 0;
}

/* Inflate a compressed term's body into out (exactly `size` bytes). */
static bool inflate_exact(const uint8_t *in, size_t in_len, uint8_t *out,
                          size_t size)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (inflateInit(&z) != Z_OK)
		return false;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)size;
	int zr = inflate(&z, Z_FINISH);
	bool ok = zr == Z_STREAM_END && z.avail_out == 0 && z.avail_in == 0;
	inflateEnd(&z);
	return ok;
}

int etf_decode(ErlNifEnv *env, const void *data, size_t len, ERL_NIF_TERM *out)
{
	const uint8_t *p = data;
	uint8_t *inflated = NULL;
	if (len < 2 || p[0] != VERSION_MAGIC)
		return ETF_MALFORMED;
	if (p[1] == COMPRESSED) {
		if (len < 6)
			return ETF_MALFORMED;
		uint32_t size = etf_be32(p + 2);
		/* Refused on the declared size, before inflating anything. */
		if (size > ETF_MAX_INFLATED)
			return ETF_TOO_LARGE;
		if (size == 0 || !(inflated = malloc((size_t)size + 1)))
			return size ? ETF_NOMEM : ETF_MALFORMED;
		inflated[0] = VERSION_MAGIC;
		if (!inflate_exact(p + 6, len - 6, inflated + 1, size)) {
			free(inflated);
			return ETF_MALFORMED;
		}
		p = inflated;
		len = (size_t)size + 1;
	}
	/* Decoding, binary_to_term [safe] refuses unknown atoms itself: the
	 * walk looks atoms up only to say why a decode failed. Checking before
	 * a write, it looks them up, and decodes only when it could not. */
	walk w = {p + 1, p + len, out ? NULL : env, false};
	int rc = walk_term(&w);
	if (!rc && w.p != w.end)
		rc = ETF_MALFORMED; /* trailing bytes */
	ERL_NIF_TERM scratch;
	if (!rc && (out || w.unchecked_atoms) &&
	    enif_binary_to_term(env, p, len, out ? out : &scratch,
	                        ERL_NIF_BIN2TERM_SAFE) != len) {
		walk again = {p + 1, p + len, env, false};
		rc = walk_term(&again);
		if (!rc)
			rc = again.unchecked_atoms ? ETF_UNKNOWN_ATOM
			                           : ETF_MALFORMED;
	}
	free(inflated);
	return rc;
}

bool etf_is_compressed(const void *data, size_t len)
{
	const uint8_t *p = data;
	return len > 1 && p[0] == VERSION_MAGIC && p[1] == COMPRESSED;
}

static const char *const reasons[] = {
    [ETF_FUN] = "fun",
    [ETF_PID] = "pid",
    [ETF_PORT] = "port",
    [ETF_REFERENCE] = "reference",
    [ETF_UNKNOWN_ATOM] = "unknown_atom",
    [ETF_TOO_LARGE] = "too_large",
    [ETF_MALFORMED] = "malformed",
    [ETF_NOMEM] = "enomem",
};

ERL_NIF_TERM etf_undecodable(ErlNifEnv *env, int refusal)
{
	const char *why = refusal > 0 && refusal <= ETF_NOMEM ? reasons[refusal]
	                                                      : "malformed";
	return enif_make_tuple2(
	    env, enif_make_atom(env, "error"),
	    enif_make_tuple2(env, enif_make_atom(env, "undecodable"),
	                     enif_make_atom(env, why)));
}

static ERL_NIF_TERM decode_term(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
	ErlNifBinary b;
	ERL_NIF_TERM t;
	if (!enif_inspect_binary(env, argv[0], &b))
		return enif_make_badarg(env);
	int rc = etf_decode(env, b.data, b.size, &t);
	return rc ? etf_undecodable(env, rc)
	          : enif_make_tuple2(env, enif_make_atom(env, "ok"), t);
}

/* Terms up to this size decode on the calling scheduler; larger ones, and
 * compressed ones (up to ETF_MAX_INFLATED once inflated), on a dirty one. */
#define DIRTY_DECODE_BYTES (64u << 10)

/* decode_term(Bin) -> {ok, Term} | {error, {undecodable, Reason}}: the
 * checked decoder on its own, for payloads read as bytes. */
ERL_NIF_TERM nif_decode_term(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
	ErlNifBinary b;
	if (!enif_inspect_binary(env, argv[0], &b))
		return enif_make_badarg(env);
	if (b.size > DIRTY_DECODE_BYTES || etf_is_compressed(b.data, b.size))
		return enif_schedule_nif(env, "decode_term_dirty",
		                         ERL_NIF_DIRTY_JOB_CPU_BOUND,
		                         decode_term, argc, argv);
	return decode_term(env, argc, argv);
}
