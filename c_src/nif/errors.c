/* errors.c: core return codes as DESIGN.md's error terms. */
#include "nif.h"

#include "atoms.h"

#include <string.h>

/* Where a record or page failed its checks, as DESIGN.md's
 * {corrupt, Where}: {event, Position}, {page, Page}, or the kind. */
static ERL_NIF_TERM corrupt_where(ErlNifEnv *env)
{
	esdb_where w;
	esdb_where_take(&w);
	ERL_NIF_TERM kind = enif_make_atom(env, esdb_proto_where_name(w.kind));
	if ((w.kind == ESDB_WHERE_EVENT && w.number) ||
	    w.kind == ESDB_WHERE_PAGE)
		return enif_make_tuple2(env, kind,
		                        enif_make_uint64(env, w.number));
	return kind;
}

ERL_NIF_TERM nif_error_term(ErlNifEnv *env, int rc)
{
	if (strcmp(esdb_error_name(rc), "corrupt") == 0)
		return enif_make_tuple2(
		    env, atom_error,
		    enif_make_tuple2(env, enif_make_atom(env, "corrupt"),
		                     corrupt_where(env)));
	return enif_make_tuple2(env, atom_error,
	                        enif_make_atom(env, esdb_error_name(rc)));
}

/* {error, {store_failed, Cause}} names what stopped the store. */
ERL_NIF_TERM nif_store_error_term(ErlNifEnv *env, esdb_store *s, int rc)
{
	if (rc != ESDB_ESTORE_FAILED)
		return nif_error_term(env, rc);
	ERL_NIF_TERM cause =
	    enif_make_atom(env, esdb_error_name(esdb_store_get_failure(s)));
	return enif_make_tuple2(
	    env, atom_error, enif_make_tuple2(env, atom_store_failed, cause));
}

ERL_NIF_TERM nif_stream_error_term(ErlNifEnv *env, int rc, ERL_NIF_TERM id)
{
	if (rc != ESDB_EINVAL)
		return nif_error_term(env, rc);
	return enif_make_tuple2(
	    env, atom_error, enif_make_tuple2(env, atom_invalid_stream_id, id));
}

/* {error, {limit_exceeded, Key, Max}}: which limit and its value. */
ERL_NIF_TERM nif_limit_error(ErlNifEnv *env, esdb_limit_key key, uint64_t max)
{
	return enif_make_tuple2(
	    env, atom_error,
	    enif_make_tuple3(env, atom_limit_exceeded,
	                     enif_make_atom(env, esdb_limit_name(key)),
	                     enif_make_uint64(env, max)));
}

/* The error term of a command's outcome in store s. */
ERL_NIF_TERM nif_result_error(ErlNifEnv *env, esdb_store *s,
                              const esdb_result *r)
{
	if (r->rc == ESDB_ELIMIT && r->limit != ESDB_LIMIT_NONE)
		return nif_limit_error(env, r->limit, r->limit_max);
	return nif_store_error_term(env, s, r->rc);
}
