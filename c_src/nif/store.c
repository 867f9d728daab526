/* store.c: the store resource, open (with its options) and close. */
#include "nif.h"

#include "atoms.h"

#include <string.h>

static ErlNifResourceType *store_type;

static void store_dtor(ErlNifEnv *env, void *obj)
{
	store_res *r = obj;
	if (!r->closed && r->s)
		esdb_store_close(r->s);
	nif_cluster_free(r->cluster);
	subs_detach(r);
	if (r->lock)
		enif_rwlock_destroy(r->lock);
}

bool nif_store_acquire(ErlNifEnv *env, ERL_NIF_TERM t, store_res **out)
{
	if (!enif_get_resource(env, t, store_type, (void **)out))
		return false;
	enif_rwlock_rlock((*out)->lock);
	return true;
}

bool nif_store_get(ErlNifEnv *env, ERL_NIF_TERM t, store_res **out)
{
	return enif_get_resource(env, t, store_type, (void **)out);
}

void nif_store_release(store_res *r)
{
	enif_rwlock_runlock(r->lock);
}

/* ---- open / close ----------------------------------------------------- */

/* One open option's value, decoded as the protocol table says. */
static bool get_option(ErlNifEnv *env, ERL_NIF_TERM v, esdb_proto_opt_id i,
                       esdb_proto_open *o)
{
	const esdb_proto_option *opt = &esdb_proto_options[i];
	ErlNifBinary b;
	switch (opt->kind) {
	case ESDB_OPTK_ATOM:
		for (uint64_t k = 0; opt->atoms[k]; k++)
			if (enif_is_identical(
			        v, enif_make_atom(env, opt->atoms[k]))) {
				o->value[i] = k;
				return true;
			}
		return false;
	case ESDB_OPTK_BOOL:
		if (!enif_is_identical(v, atom_true) &&
		    !enif_is_identical(v, atom_false))
			return false;
		o->value[i] = enif_is_identical(v, atom_true);
		return true;
	case ESDB_OPTK_UINT:
		return nif_get_u64(env, v, &o->value[i]) &&
		       esdb_proto_option_in_bounds(opt, o->value[i]);
	case ESDB_OPTK_TEXT:
		if (!enif_inspect_binary(env, v, &b) ||
		    !esdb_proto_option_in_bounds(opt, b.size))
			return false;
		o->text[i] = (const char *)b.data;
		o->text_len[i] = b.size;
		return true;
	}
	return false;
}

/* open(Path :: binary(), Opts :: map()) -> {ok, Store} | {error, Reason};
 * the options are c_src/proto's (docs/PROTOCOL.md). */
ERL_NIF_TERM nif_open(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	return nif_open_with(env, argv, NULL, 0);
}

ERL_NIF_TERM nif_open_with(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                           nif_open_setup setup, ERL_NIF_TERM arg)
{
	ErlNifBinary path;
	nif_cluster *cluster = NULL;
	ERL_NIF_TERM v;
	esdb_store *s;
	if (!enif_inspect_binary(env, argv[0], &path) || path.size == 0 ||
	    path.size > ESDB_PROTO_MAX_PATH || !enif_is_map(env, argv[1]) ||
	    memchr(path.data, 0, path.size))
		return enif_make_badarg(env);
	char p[ESDB_PROTO_MAX_PATH + 1];
	memcpy(p, path.data, path.size);
	p[path.size] = 0;

	int rc = esdb_store_create(&s);
	if (rc)
		return nif_error_term(env, rc);
	esdb_proto_open o = {0};
	for (int i = 0; i < ESDB_OPT_N; i++) {
		ERL_NIF_TERM key =
		    enif_make_atom(env, esdb_proto_options[i].name);
		if (!enif_get_map_value(env, argv[1], key, &v))
			continue;
		if (!get_option(env, v, (esdb_proto_opt_id)i, &o))
			goto bad_option;
		o.given[i] = true;
	}
	int limit = setup ? esdb_proto_open_limit_given(&o) : -1;
	if (limit >= 0) { /* a replica's limits come from the log */
		esdb_store_close(s);
		return enif_make_tuple2(
		    env, atom_error,
		    enif_make_tuple2(
		        env, atom_invalid_option,
		        enif_make_atom(env, esdb_proto_options[limit].name)));
	}
	if (esdb_proto_open_configure(s, &o))
		goto bad_option;
	if (setup) {
		ERL_NIF_TERM err = setup(env, s, p, arg, &cluster);
		if (err) {
			esdb_store_close(s);
			nif_cluster_free(cluster);
			return err;
		}
	}

	if ((rc = esdb_store_open(s, p))) {
		esdb_store_close(s);
		nif_cluster_free(cluster);
		return nif_error_term(env, rc);
	}
	esdb_proto_open_started(s, &o);
	store_res *r = enif_alloc_resource(store_type, sizeof(*r));
	r->s = s;
	r->closed = false;
	r->job_running = 0;
	r->members = NULL;
	r->cluster = cluster;
	r->lock = enif_rwlock_create("ex_esdb_store");
	if ((rc = subs_attach(r))) {
		/* the destructor closes the store */
		enif_release_resource(r);
		return nif_error_term(env, rc);
	}
	ERL_NIF_TERM t = enif_make_resource(env, r);
	enif_release_resource(r);
	return enif_make_tuple2(env, atom_ok, t);

bad_option:
	esdb_store_close(s);
	return enif_make_tuple2(env, atom_error, atom_invalid_option);
}

/* close(Store) -> ok. Idempotent; waits for calls in flight; queued
 * commands are answered {error, closed}. The store is marked closed under
 * the lock and closed after it: calls on normal schedulers (append,
 * a subscriber's death) that take the lock never wait for the writer
 * and the emitter to stop. */
ERL_NIF_TERM nif_close(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	store_res *r;
	if (!enif_get_resource(env, argv[0], store_type, (void **)&r))
		return enif_make_badarg(env);
	esdb_store *s = NULL;
	enif_rwlock_rwlock(r->lock);
	if (!r->closed) {
		s = r->s;
		r->s = NULL;
		r->closed = true;
	}
	enif_rwlock_rwunlock(r->lock);
	if (s) {
		esdb_store_close(s);
		subs_notify_down(r);
		subs_detach(r);
	}
	return atom_ok;
}

/* Subscribed processes are monitored through the store resource. */
static ErlNifResourceTypeInit store_init = {
    .dtor = store_dtor,
    .down = subs_down,
};

bool nif_store_type_open(ErlNifEnv *env, ErlNifResourceFlags flags)
{
	store_type = enif_open_resource_type_x(env, "ex_esdb_store",
	                                       &store_init, flags, NULL);
	return store_type != NULL;
}
