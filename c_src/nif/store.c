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

static bool get_limit(ErlNifEnv *env, ERL_NIF_TERM opts, ERL_NIF_TERM key,
                      uint64_t *out)
{
	ERL_NIF_TERM v;
	if (!enif_get_map_value(env, opts, key, &v))
		return true;
	return nif_get_u64(env, v, out);
}

/* open(Path :: binary(), Opts :: map()) -> {ok, Store} | {error, Reason} */
ERL_NIF_TERM nif_open(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	ErlNifBinary path;
	ERL_NIF_TERM v;
	esdb_store *s;
	if (!enif_inspect_binary(env, argv[0], &path) || path.size == 0 ||
	    path.size > 4000 || !enif_is_map(env, argv[1]) ||
	    memchr(path.data, 0, path.size))
		return enif_make_badarg(env);
	char p[4096];
	memcpy(p, path.data, path.size);
	p[path.size] = 0;

	int rc = esdb_store_create(&s);
	if (rc)
		return nif_error_term(env, rc);
	if (enif_get_map_value(env, argv[1], atom_durability, &v)) {
		esdb_durability d;
		/* strict: the default's name before it was the default */
		if (enif_is_identical(v, atom_sync) ||
		    enif_is_identical(v, atom_strict))
			d = ESDB_DURABILITY_SYNC;
		else if (enif_is_identical(v, atom_no_meta_sync))
			d = ESDB_DURABILITY_NO_META_SYNC;
		else if (enif_is_identical(v, atom_nosync))
			d = ESDB_DURABILITY_NOSYNC;
		else
			goto bad_option;
		esdb_store_set_durability(s, d);
	}
	if (enif_get_map_value(env, argv[1], atom_map_size, &v)) {
		uint64_t size;
		if (!nif_get_u64(env, v, &size) ||
		    esdb_store_set_mapsize(s, size))
			goto bad_option;
	}
	if (enif_get_map_value(env, argv[1], atom_create, &v)) {
		if (!enif_is_identical(v, atom_true) &&
		    !enif_is_identical(v, atom_false))
			goto bad_option;
		esdb_store_set_create(s, enif_is_identical(v, atom_true));
	}
	if (enif_get_map_value(env, argv[1], atom_readonly, &v)) {
		if (!enif_is_identical(v, atom_true) &&
		    !enif_is_identical(v, atom_false))
			goto bad_option;
		esdb_store_set_readonly(s, enif_is_identical(v, atom_true));
	}
	if (enif_get_map_value(env, argv[1], atom_file_mode, &v)) {
		uint64_t mode;
		if (!nif_get_u64(env, v, &mode) || mode > 0777 ||
		    esdb_store_set_file_mode(s, (unsigned)mode))
			goto bad_option;
	}
	if (enif_get_map_value(env, argv[1], atom_owner, &v)) {
		/* shown to a process refused the store (ESDB_ELOCKED) */
		ErlNifBinary o;
		char owner[256];
		if (!enif_inspect_binary(env, v, &o) || o.size >= sizeof(owner))
			goto bad_option;
		memcpy(owner, o.data, o.size);
		owner[o.size] = 0;
		if (strlen(owner) != o.size || esdb_store_set_owner(s, owner))
			goto bad_option;
	}
	/* bytes of committed events waiting for fan-out (emitter.c) */
	uint64_t fanout_bytes = 0;
	if (enif_get_map_value(env, argv[1], atom_max_fanout_bytes, &v) &&
	    (!nif_get_u64(env, v, &fanout_bytes) || fanout_bytes == 0))
		goto bad_option;
	if (enif_get_map_value(env, argv[1], atom_max_queue_bytes, &v)) {
		uint64_t bytes;
		if (!nif_get_u64(env, v, &bytes) ||
		    esdb_store_set_queue_bytes(s, bytes))
			goto bad_option;
	}
	if (enif_get_map_value(env, argv[1], atom_max_read_bytes, &v)) {
		uint64_t bytes;
		if (!nif_get_u64(env, v, &bytes) ||
		    esdb_store_set_read_bytes(s, bytes))
			goto bad_option;
	}
	/* Limits not given keep the store's (the defaults in a new one). */
	esdb_limits l = {0};
	uint64_t sid = 0, typ = 0, evs = 0, key = 0;
	if (!get_limit(env, argv[1], atom_max_stream_id, &sid) ||
	    !get_limit(env, argv[1], atom_max_event_type, &typ) ||
	    !get_limit(env, argv[1], atom_max_event_bytes,
	               &l.max_event_bytes) ||
	    !get_limit(env, argv[1], atom_max_append_events, &evs) ||
	    !get_limit(env, argv[1], atom_max_append_bytes,
	               &l.max_append_bytes) ||
	    !get_limit(env, argv[1], atom_max_key, &key) || sid > UINT32_MAX ||
	    typ > UINT32_MAX || evs > UINT32_MAX || key > UINT32_MAX)
		goto bad_option;
	l.max_stream_id = (uint32_t)sid;
	l.max_event_type = (uint32_t)typ;
	l.max_append_events = (uint32_t)evs;
	l.max_key = (uint32_t)key;
	if ((sid || typ || evs || key || l.max_event_bytes ||
	     l.max_append_bytes) &&
	    esdb_store_set_limits(s, &l))
		goto bad_option;

	if ((rc = esdb_store_open(s, p))) {
		esdb_store_close(s);
		return nif_error_term(env, rc);
	}
	if (fanout_bytes)
		esdb_emitter_set_queue_bytes(s, fanout_bytes);
	store_res *r = enif_alloc_resource(store_type, sizeof(*r));
	r->s = s;
	r->closed = false;
	r->members = NULL;
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
