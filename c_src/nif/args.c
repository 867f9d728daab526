/* args.c: decoding the argument terms the NIF functions share. */
#include "nif.h"

#include "atoms.h"

#include "etf.h"

bool nif_get_u64(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out)
{
	ErlNifUInt64 v;
	if (!enif_get_uint64(env, t, &v))
		return false;
	*out = v;
	return true;
}

bool nif_get_expected(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out)
{
	if (enif_is_identical(t, atom_any))
		*out = ESDB_EXPECT_ANY;
	else if (enif_is_identical(t, atom_no_stream))
		*out = ESDB_EXPECT_NO_STREAM;
	else if (enif_is_identical(t, atom_stream_exists))
		*out = ESDB_EXPECT_STREAM_EXISTS;
	else
		return nif_get_u64(env, t, out) &&
		       *out < ESDB_EXPECT_STREAM_EXISTS;
	return true;
}

bool nif_get_direction(ERL_NIF_TERM t, esdb_direction *dir)
{
	if (enif_is_identical(t, atom_forward))
		*dir = ESDB_DIRECTION_FORWARD;
	else if (enif_is_identical(t, atom_backward))
		*dir = ESDB_DIRECTION_BACKWARD;
	else
		return false;
	return true;
}

/* A 16-byte binary or nil. */
bool nif_get_opt_uuid(ErlNifEnv *env, ERL_NIF_TERM t, const uint8_t **out)
{
	ErlNifBinary b;
	if (enif_is_identical(t, atom_nil)) {
		*out = NULL;
		return true;
	}
	if (!enif_inspect_binary(env, t, &b) || b.size != 16)
		return false;
	*out = b.data;
	return true;
}

/* A payload to write: a binary (bytes) or {term, Binary} (external term
 * format, checked before it is written). */
bool nif_get_payload(ErlNifEnv *env, ERL_NIF_TERM t, ErlNifBinary *b,
                     esdb_encoding *enc)
{
	const ERL_NIF_TERM *f;
	int arity;
	*enc = ESDB_ENCODING_BYTES;
	if (enif_inspect_binary(env, t, b))
		return true;
	if (!enif_get_tuple(env, t, &arity, &f) || arity != 2 ||
	    !enif_is_identical(f[0], atom_term) ||
	    !enif_inspect_binary(env, f[1], b))
		return false;
	*enc = ESDB_ENCODING_TERM;
	return true;
}

/* A payload written as a term must be one a read can decode: refused
 * now, with the reason a read would give, rather than stored. */
int nif_check_payload(ErlNifEnv *env, const void *p, size_t len,
                      esdb_encoding enc)
{
	return enc == ESDB_ENCODING_TERM ? etf_decode(env, p, len, NULL) : 0;
}

bool nif_get_count(ErlNifEnv *env, ERL_NIF_TERM t, uint32_t *count)
{
	unsigned v;
	if (!enif_get_uint(env, t, &v))
		return false;
	*count = v > MAX_READ ? MAX_READ : v;
	return true;
}

/* An optional "after" cursor: nil or a binary. */
bool nif_get_after(ErlNifEnv *env, ERL_NIF_TERM t, ErlNifBinary *b)
{
	if (enif_is_identical(t, atom_nil)) {
		b->data = NULL;
		b->size = 0;
		return true;
	}
	return enif_inspect_binary(env, t, b);
}
