/* ex_esdb_nif.c: the Erlang NIF binding over the C core (esdb.h).
 *
 * Mutations are encoded here and queued to the core's group-commit writer;
 * the writer thread answers the caller with enif_send(Pid, {Ref, Reply}),
 * so no scheduler waits for a flush. Reads run on dirty IO schedulers and
 * are paged by the caller. Wrong argument types raise badarg; bad values
 * come back as {error, Reason}. */
#include "nif.h"

#include "etf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Appends carrying more payload or events than this are encoded on a
 * dirty scheduler: copying them would hold a normal one for too long. */
#define DIRTY_APPEND_BYTES  (256u << 10)
#define DIRTY_APPEND_EVENTS 1000

/* ---- atoms ------------------------------------------------------------ */

#define ATOMS(X)                                                               \
	X(ok)                                                                  \
	X(error)                                                               \
	X(nil)                                                                 \
	X(true)                                                                \
	X(false)                                                               \
	X(any)                                                                 \
	X(no_stream)                                                           \
	X(stream_exists)                                                       \
	X(forward)                                                             \
	X(backward)                                                            \
	X(durability)                                                          \
	X(sync)                                                                \
	X(strict)                                                              \
	X(nosync)                                                              \
	X(no_meta_sync)                                                        \
	X(map_size)                                                            \
	X(create)                                                              \
	X(readonly)                                                            \
	X(owner)                                                               \
	X(file_mode)                                                           \
	X(max_read_bytes)                                                      \
	X(eof)                                                                 \
	X(max_stream_id)                                                       \
	X(max_event_type)                                                      \
	X(max_event_bytes)                                                     \
	X(max_append_events)                                                   \
	X(max_append_bytes)                                                    \
	X(max_key)                                                             \
	X(events)                                                              \
	X(streams)                                                             \
	X(event_types)                                                         \
	X(snapshots)                                                           \
	X(checkpoints)                                                         \
	X(bytes_used)                                                          \
	X(commits)                                                             \
	X(subscribers)                                                         \
	X(store_failed)                                                        \
	X(closed)                                                              \
	X(invalid_option)                                                      \
	X(invalid_stream_id)                                                   \
	X(limit_exceeded)                                                      \
	X(not_queued)                                                          \
	X(abandoned)                                                           \
	X(max_queue_bytes)                                                     \
	X(max_fanout_bytes)                                                    \
	X(problems)                                                            \
	X(term)                                                                \
	X(legacy)

#define DECLARE_ATOM(name) static ERL_NIF_TERM atom_##name;
ATOMS(DECLARE_ATOM)

static void make_atoms(ErlNifEnv *env)
{
#define MAKE_ATOM(name) atom_##name = enif_make_atom(env, #name);
	ATOMS(MAKE_ATOM)
}

/* ---- the store resource ----------------------------------------------- */

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

/* Where a record or page failed its checks, as DESIGN.md's
 * {corrupt, Where}: {event, Position}, {page, Page}, or the kind. */
static ERL_NIF_TERM corrupt_where(ErlNifEnv *env)
{
	static const char *const kinds[] = {"unknown", "event",    "stream",
	                                    "type",    "snapshot", "checkpoint",
	                                    "index",   "page"};
	esdb_where w;
	esdb_where_take(&w);
	unsigned k = (unsigned)w.kind < 8 ? (unsigned)w.kind : 0;
	ERL_NIF_TERM kind = enif_make_atom(env, kinds[k]);
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
static ERL_NIF_TERM limit_error(ErlNifEnv *env, esdb_limit_key key,
                                uint64_t max)
{
	return enif_make_tuple2(
	    env, atom_error,
	    enif_make_tuple3(env, atom_limit_exceeded,
	                     enif_make_atom(env, esdb_limit_name(key)),
	                     enif_make_uint64(env, max)));
}

/* The error term of a command's outcome in store s. */
static ERL_NIF_TERM result_error(ErlNifEnv *env, esdb_store *s,
                                 const esdb_result *r)
{
	if (r->rc == ESDB_ELIMIT && r->limit != ESDB_LIMIT_NONE)
		return limit_error(env, r->limit, r->limit_max);
	return nif_store_error_term(env, s, r->rc);
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

/* ---- argument helpers ------------------------------------------------- */

bool nif_get_u64(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out)
{
	ErlNifUInt64 v;
	if (!enif_get_uint64(env, t, &v))
		return false;
	*out = v;
	return true;
}

static bool get_expected(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out)
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
static bool get_opt_uuid(ErlNifEnv *env, ERL_NIF_TERM t, const uint8_t **out)
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
static bool get_payload(ErlNifEnv *env, ERL_NIF_TERM t, ErlNifBinary *b,
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
static int check_payload(ErlNifEnv *env, const void *p, size_t len,
                         esdb_encoding enc)
{
	return enc == ESDB_ENCODING_TERM ? etf_decode(env, p, len, NULL) : 0;
}

/* A payload as read: the bytes, {term, Bytes} when written as a term,
 * {legacy, Bytes} when stored before encodings were recorded. */
static ERL_NIF_TERM make_payload(ErlNifEnv *env, const void *p, size_t len,
                                 esdb_encoding enc)
{
	ERL_NIF_TERM bin = nif_make_bin(env, p, len);
	switch (enc) {
	case ESDB_ENCODING_TERM:
		return enif_make_tuple2(env, atom_term, bin);
	case ESDB_ENCODING_LEGACY:
		return enif_make_tuple2(env, atom_legacy, bin);
	default:
		return bin;
	}
}

ERL_NIF_TERM nif_make_bin(ErlNifEnv *env, const void *p, size_t len)
{
	ERL_NIF_TERM t;
	unsigned char *dst = enif_make_new_binary(env, len, &t);
	if (len)
		memcpy(dst, p, len);
	return t;
}

static ERL_NIF_TERM make_opt_uuid(ErlNifEnv *env, const uint8_t *id)
{
	return id ? nif_make_bin(env, id, 16) : atom_nil;
}

/* ---- replies from the writer thread ----------------------------------- */

typedef struct reply_ctx {
	nif_owed owed; /* first: nif_cancel finds it from there */
	esdb_store *s; /* alive until every queued command is answered */
	ErlNifPid pid;
	ErlNifEnv *env;
	ERL_NIF_TERM ref;
} reply_ctx;

static reply_ctx *reply_new(ErlNifEnv *env, esdb_store *s, ERL_NIF_TERM ref)
{
	reply_ctx *c = enif_alloc(sizeof(*c));
	if (!c)
		return NULL;
	if (!(c->env = enif_alloc_env())) {
		enif_free(c);
		return NULL;
	}
	c->s = s;
	enif_self(env, &c->pid);
	c->ref = enif_make_copy(c->env, ref);
	nif_owed_add(&c->owed);
	return c;
}

/* A command answered on the scheduler thread that submits or withdraws
 * it (a full queue, a closed store, a cancel) is answered to that NIF
 * call, not by a message: enif_send without an env is for our own
 * threads. Only the writer's answers become messages. */
static __thread bool answer_inline;
static __thread esdb_result inline_result;

/* Whether the answer goes no further: answered inline, or given up by
 * the caller (nif_cancel). Then c is freed. */
static bool answered_inline(reply_ctx *c, const esdb_result *r)
{
	bool send = nif_owed_settle(&c->owed);
	if (send && !answer_inline)
		return false;
	if (answer_inline)
		inline_result = *r;
	enif_free_env(c->env);
	enif_free(c);
	return true;
}

/* Sends {Ref, {ok, Version, Position}} for appends, {Ref, ok} for other
 * commands, {Ref, {error, Reason}} on failure. */
static void reply_append(void *ctx, const esdb_result *r)
{
	reply_ctx *c = ctx;
	ErlNifEnv *env = c->env;
	if (answered_inline(c, r))
		return;
	ERL_NIF_TERM reply =
	    r->rc ? result_error(env, c->s, r)
	          : enif_make_tuple3(env, atom_ok,
	                             enif_make_uint64(env, r->version),
	                             enif_make_uint64(env, r->position));
	enif_send(NULL, &c->pid, env, enif_make_tuple2(env, c->ref, reply));
	enif_free_env(env);
	enif_free(c);
}

static void reply_plain(void *ctx, const esdb_result *r)
{
	reply_ctx *c = ctx;
	ErlNifEnv *env = c->env;
	if (answered_inline(c, r))
		return;
	ERL_NIF_TERM reply = r->rc ? result_error(env, c->s, r) : atom_ok;
	enif_send(NULL, &c->pid, env, enif_make_tuple2(env, c->ref, reply));
	enif_free_env(env);
	enif_free(c);
}

/* Queue an encoded command; the reply goes to the caller tagged with ref. */
static ERL_NIF_TERM submit(ErlNifEnv *env, store_res *r, ERL_NIF_TERM ref,
                           esdb_cmd *cmd, esdb_result_fn done)
{
	reply_ctx *c = reply_new(env, r->s, ref);
	if (!c) {
		free(cmd->buf);
		return enif_raise_exception(env, enif_make_atom(env, "enomem"));
	}
	/* Failures inside esdb_store_submit (a full queue, ...) are answered
	 * through `done`, here: they are this call's result. */
	answer_inline = true;
	int rc = esdb_store_submit(r->s, cmd, done, c);
	answer_inline = false;
	return rc ? result_error(env, r->s, &inline_result) : atom_ok;
}

typedef struct cancel_arg {
	ERL_NIF_TERM ref;
	ErlNifPid pid;
} cancel_arg;

static bool same_request(void *ctx, void *arg)
{
	const reply_ctx *c = ctx;
	const cancel_arg *a = arg;
	return enif_is_identical(c->ref, a->ref) &&
	       enif_compare_pids(&c->pid, &a->pid) == 0;
}

static bool same_owed(nif_owed *o, void *arg)
{
	return same_request(o, arg);
}

/* cancel(Store, Ref) -> ok | abandoned | not_queued, for a caller that
 * stops waiting for the command it sent with Ref. ok: withdrawn from the
 * writer queue, never applied; abandoned: the writer has taken it (it may
 * be applied) and its reply will not be sent; either way no reply comes.
 * not_queued: the reply was sent or is being sent: it comes. */
static ERL_NIF_TERM nif_cancel(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
	store_res *r;
	cancel_arg a = {.ref = argv[1]};
	if (!enif_is_ref(env, argv[1]) || !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	enif_self(env, &a.pid);
	int rc = ESDB_ENOTFOUND;
	if (!r->closed) {
		answer_inline = true;
		rc = esdb_store_cancel(r->s, same_request, &a);
		answer_inline = false;
	}
	nif_store_release(r);
	if (rc == 0)
		return atom_ok;
	return nif_owed_abandon(same_owed, &a) ? atom_abandoned
	                                       : atom_not_queued;
}

/* Acquire the store argv[0] (false: not a store) and get the limits to
 * encode with: the store's own, the defaults once closed. */
static bool acquire_limits(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                           store_res **r, esdb_limits *l)
{
	if (!nif_store_acquire(env, argv[0], r))
		return false;
	if ((*r)->closed)
		esdb_limits_init(l);
	else
		esdb_store_get_limits((*r)->s, l);
	return true;
}

/* Queue a command its encoder made with limits l (rc: the encoder's
 * result) to the acquired store r, answered to the caller tagged with
 * argv[1]; a closed store answers first. Releases r. */
static ERL_NIF_TERM submit_encoded(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                                   store_res *r, const esdb_limits *l, int rc,
                                   esdb_cmd *cmd, esdb_result_fn done)
{
	ERL_NIF_TERM result;
	if (r->closed || rc) {
		if (!rc)
			free(cmd->buf);
		if (r->closed)
			result = nif_error_term(env, ESDB_ECLOSED);
		else if (rc == ESDB_ELIMIT && cmd->limit != ESDB_LIMIT_NONE)
			result = limit_error(env, cmd->limit,
			                     esdb_limits_lookup(l, cmd->limit));
		else
			result = nif_error_term(env, rc);
	} else {
		result = submit(env, r, argv[1], cmd, done);
	}
	nif_store_release(r);
	return result;
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
static ERL_NIF_TERM nif_open(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
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
static ERL_NIF_TERM nif_close(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
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

/* ---- commands --------------------------------------------------------- */

/* Parse [{EventId, Type, Data, Metadata, CausationId, CorrelationId}];
 * Data and Metadata as get_payload takes them. */
static bool get_events(ErlNifEnv *env, ERL_NIF_TERM list, esdb_new_event **out,
                       unsigned *n, uint64_t *bytes)
{
	unsigned len;
	ERL_NIF_TERM head, tail = list;
	if (!enif_get_list_length(env, list, &len))
		return false;
	*n = len;
	*bytes = 0;
	*out = NULL;
	if (len == 0)
		return true;
	esdb_new_event *evs = calloc(len, sizeof(*evs));
	if (!evs)
		return false;
	for (unsigned i = 0; enif_get_list_cell(env, tail, &head, &tail); i++) {
		const ERL_NIF_TERM *f;
		int arity;
		ErlNifBinary id, type, data, meta;
		if (!enif_get_tuple(env, head, &arity, &f) || arity != 6 ||
		    !enif_inspect_binary(env, f[0], &id) || id.size != 16 ||
		    !enif_inspect_binary(env, f[1], &type) ||
		    !get_payload(env, f[2], &data, &evs[i].data_encoding) ||
		    !get_payload(env, f[3], &meta, &evs[i].metadata_encoding) ||
		    !get_opt_uuid(env, f[4], &evs[i].causation_id) ||
		    !get_opt_uuid(env, f[5], &evs[i].correlation_id)) {
			free(evs);
			return false;
		}
		memcpy(evs[i].event_id, id.data, 16);
		evs[i].event_type = (const char *)type.data;
		evs[i].event_type_len = type.size;
		evs[i].data = data.data;
		evs[i].data_len = data.size;
		evs[i].metadata = meta.data;
		evs[i].metadata_len = meta.size;
		*bytes += data.size + meta.size;
	}
	*out = evs;
	return true;
}

static ERL_NIF_TERM append_impl(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
	ErlNifBinary stream;
	uint64_t expected, bytes;
	esdb_new_event *evs;
	unsigned n;
	store_res *r;
	esdb_limits l;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &stream) ||
	    !get_expected(env, argv[3], &expected) ||
	    !get_events(env, argv[4], &evs, &n, &bytes))
		return enif_make_badarg(env);
	for (unsigned i = 0; i < n; i++) {
		int refusal = check_payload(env, evs[i].data, evs[i].data_len,
		                            evs[i].data_encoding);
		if (!refusal)
			refusal = check_payload(env, evs[i].metadata,
			                        evs[i].metadata_len,
			                        evs[i].metadata_encoding);
		if (refusal) {
			free(evs);
			return etf_undecodable(env, refusal);
		}
	}
	if (esdb_stream_id_check((const char *)stream.data, stream.size)) {
		free(evs);
		return nif_stream_error_term(env, ESDB_EINVAL, argv[2]);
	}
	if (!acquire_limits(env, argv, &r, &l)) {
		free(evs);
		return enif_make_badarg(env);
	}
	esdb_cmd cmd;
	int rc = esdb_cmd_stream_append(&l, (const char *)stream.data,
	                                stream.size, expected, evs, n, &cmd);
	free(evs);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_append);
}

/* An append's event list as far as limits go, found without allocating:
 * its length (counted to max_append_events + 1 at most), its payload
 * bytes and the first limit it exceeds, in the encoder's order. */
typedef struct append_scan {
	unsigned n;
	uint64_t bytes;
	bool compressed; /* a compressed term: its check inflates it */
	bool malformed;  /* left to the encoder's checks (badarg) */
	esdb_limit_key over;
} append_scan;

static void scan_append(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                        const esdb_limits *l, append_scan *sc)
{
	ErlNifBinary stream;
	ERL_NIF_TERM head, tail = argv[4];
	esdb_limit_key first = ESDB_LIMIT_NONE;
	bool settled = false; /* an earlier event decides per-event checks */
	*sc = (append_scan){0};
	if (enif_inspect_binary(env, argv[2], &stream) &&
	    stream.size > l->max_stream_id) {
		sc->over = ESDB_LIMIT_STREAM_ID;
		return;
	}
	while (enif_get_list_cell(env, tail, &head, &tail)) {
		if (sc->n == l->max_append_events) {
			sc->over = ESDB_LIMIT_APPEND_EVENTS;
			return;
		}
		sc->n++;
		const ERL_NIF_TERM *f;
		int arity;
		ErlNifBinary type, data, meta;
		esdb_encoding denc, menc;
		if (!enif_get_tuple(env, head, &arity, &f) || arity != 6 ||
		    !enif_inspect_binary(env, f[1], &type) ||
		    !get_payload(env, f[2], &data, &denc) ||
		    !get_payload(env, f[3], &meta, &menc)) {
			sc->malformed = true;
			return;
		}
		sc->compressed = sc->compressed ||
		                 (denc == ESDB_ENCODING_TERM &&
		                  etf_is_compressed(data.data, data.size)) ||
		                 (menc == ESDB_ENCODING_TERM &&
		                  etf_is_compressed(meta.data, meta.size));
		sc->bytes += data.size + meta.size;
		if (settled)
			continue;
		if (type.size == 0) /* invalid: the encoder says so */
			settled = true;
		else if (type.size > l->max_event_type)
			first = ESDB_LIMIT_EVENT_TYPE;
		else if (data.size + meta.size > l->max_event_bytes)
			first = ESDB_LIMIT_EVENT_BYTES;
		settled = settled || first != ESDB_LIMIT_NONE;
	}
	if (!enif_is_empty_list(env, tail))
		sc->malformed = true;
	else if (first != ESDB_LIMIT_NONE)
		sc->over = first;
	else if (!settled && sc->bytes > l->max_append_bytes)
		sc->over = ESDB_LIMIT_APPEND_BYTES;
}

/* append(Store, Ref, StreamId, Expected, Events) -> ok | {error, Reason};
 * then the caller receives {Ref, {ok, Version, FirstPosition}} or
 * {Ref, {error, Reason}}. An append over the store's limits is answered
 * at once, before its events are copied; the store checks them again. */
static ERL_NIF_TERM nif_append(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
	uint64_t expected;
	store_res *r;
	esdb_limits l;
	append_scan sc;
	if (!enif_is_ref(env, argv[1]) || !enif_is_binary(env, argv[2]) ||
	    !get_expected(env, argv[3], &expected) ||
	    !acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	bool closed = r->closed;
	nif_store_release(r);
	scan_append(env, argv, &l, &sc);
	if (!closed && !sc.malformed && sc.over != ESDB_LIMIT_NONE)
		return limit_error(env, sc.over,
		                   esdb_limits_lookup(&l, sc.over));
	/* A large payload is copied, a compressed term inflated to be
	 * checked, on a dirty scheduler. */
	if (sc.bytes > DIRTY_APPEND_BYTES || sc.n > DIRTY_APPEND_EVENTS ||
	    sc.compressed)
		return enif_schedule_nif(env, "append_dirty",
		                         ERL_NIF_DIRTY_JOB_CPU_BOUND,
		                         append_impl, argc, argv);
	return append_impl(env, argc, argv);
}

/* delete_stream(Store, Ref, StreamId, Expected) -> ok | {error, R};
 * then {Ref, ok | {error, Reason}}. */
static ERL_NIF_TERM nif_delete_stream(ErlNifEnv *env, int argc,
                                      const ERL_NIF_TERM argv[])
{
	ErlNifBinary stream;
	uint64_t expected;
	store_res *r;
	esdb_limits l;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &stream) ||
	    !get_expected(env, argv[3], &expected))
		return enif_make_badarg(env);
	if (esdb_stream_id_check((const char *)stream.data, stream.size))
		return nif_stream_error_term(env, ESDB_EINVAL, argv[2]);
	if (!acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	esdb_cmd cmd;
	int rc = esdb_cmd_stream_delete(&l, (const char *)stream.data,
	                                stream.size, expected, &cmd);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_plain);
}

static ERL_NIF_TERM snapshot_put_impl(ErlNifEnv *env, int argc,
                                      const ERL_NIF_TERM argv[])
{
	ErlNifBinary uuid, type, data, meta;
	esdb_snapshot sn = {0};
	store_res *r;
	esdb_limits l;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &uuid) ||
	    !nif_get_u64(env, argv[3], &sn.source_version) ||
	    !enif_inspect_binary(env, argv[4], &type) ||
	    !get_payload(env, argv[5], &data, &sn.data_encoding) ||
	    !get_payload(env, argv[6], &meta, &sn.metadata_encoding))
		return enif_make_badarg(env);
	int refusal =
	    check_payload(env, data.data, data.size, sn.data_encoding);
	if (!refusal)
		refusal = check_payload(env, meta.data, meta.size,
		                        sn.metadata_encoding);
	if (refusal)
		return etf_undecodable(env, refusal);
	sn.source_uuid = (const char *)uuid.data;
	sn.source_uuid_len = uuid.size;
	sn.source_type = (const char *)type.data;
	sn.source_type_len = type.size;
	sn.data = data.data;
	sn.data_len = data.size;
	sn.metadata = meta.data;
	sn.metadata_len = meta.size;
	esdb_cmd cmd;
	if (!acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	int rc = esdb_cmd_snapshot_put(&l, &sn, &cmd);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_plain);
}

/* snapshot_put(Store, Ref, SourceUuid, SourceVersion, SourceType, Data,
 * Metadata) -> ok | {error, R}; then {Ref, ok | {error, R}}. Data and
 * Metadata: a binary or {term, Binary}; large ones, and compressed terms
 * (inflated to be checked), are handled on a dirty scheduler. */
static ERL_NIF_TERM nif_snapshot_put(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
	ErlNifBinary data, meta;
	esdb_encoding denc, menc;
	if (get_payload(env, argv[5], &data, &denc) &&
	    get_payload(env, argv[6], &meta, &menc) &&
	    ((uint64_t)data.size + meta.size > DIRTY_APPEND_BYTES ||
	     (denc == ESDB_ENCODING_TERM &&
	      etf_is_compressed(data.data, data.size)) ||
	     (menc == ESDB_ENCODING_TERM &&
	      etf_is_compressed(meta.data, meta.size))))
		return enif_schedule_nif(env, "snapshot_put_dirty",
		                         ERL_NIF_DIRTY_JOB_CPU_BOUND,
		                         snapshot_put_impl, argc, argv);
	return snapshot_put_impl(env, argc, argv);
}

/* checkpoint_put(Store, Ref, Name, Checkpoint, Definition). */
static ERL_NIF_TERM nif_checkpoint_put(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[])
{
	ErlNifBinary name, def;
	uint64_t cp;
	store_res *r;
	esdb_limits l;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &name) ||
	    !nif_get_u64(env, argv[3], &cp) ||
	    !enif_inspect_binary(env, argv[4], &def) ||
	    !acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	esdb_cmd cmd;
	int rc = esdb_cmd_checkpoint_put(&l, (const char *)name.data, name.size,
	                                 cp, def.data, def.size, &cmd);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_plain);
}

typedef int (*named_encoder)(const esdb_limits *, const char *, size_t,
                             esdb_cmd *);

/* The deletes by name: snapshot_delete, checkpoint_delete. */
static ERL_NIF_TERM named_delete(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                                 named_encoder encode)
{
	ErlNifBinary name;
	store_res *r;
	esdb_limits l;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &name) ||
	    !acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	esdb_cmd cmd;
	int rc = encode(&l, (const char *)name.data, name.size, &cmd);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_plain);
}

static ERL_NIF_TERM nif_snapshot_delete(ErlNifEnv *env, int argc,
                                        const ERL_NIF_TERM argv[])
{
	return named_delete(env, argv, esdb_cmd_snapshot_delete);
}

static ERL_NIF_TERM nif_checkpoint_delete(ErlNifEnv *env, int argc,
                                          const ERL_NIF_TERM argv[])
{
	return named_delete(env, argv, esdb_cmd_checkpoint_delete);
}

/* ---- reads (dirty IO) ------------------------------------------------- */

typedef struct read_ctx {
	ErlNifEnv *env;
	term_list out;
	name_cache stream, type;
} read_ctx;

ERL_NIF_TERM nif_cached_name(ErlNifEnv *env, name_cache *c, const char *p,
                             size_t len)
{
	if (c->have && c->len == len && memcmp(c->buf, p, len) == 0)
		return c->term;
	c->term = nif_make_bin(env, p, len);
	c->have = len <= sizeof(c->buf);
	if (c->have) {
		memcpy(c->buf, p, len);
		c->len = len;
	}
	return c->term;
}

int nif_terms_push(term_list *l, ERL_NIF_TERM t)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		ERL_NIF_TERM *terms =
		    enif_realloc(l->terms, cap * sizeof(*terms));
		if (!terms)
			return ENOMEM;
		l->terms = terms;
		l->cap = cap;
	}
	l->terms[l->n++] = t;
	return 0;
}

ERL_NIF_TERM nif_terms_take(ErlNifEnv *env, term_list *l)
{
	ERL_NIF_TERM list =
	    enif_make_list_from_array(env, l->terms, (unsigned)l->n);
	enif_free(l->terms);
	*l = (term_list){0};
	return list;
}

/* {Position, StreamId, Version, EventId, Type, Data, Metadata,
 *  CausationId, CorrelationId, CreatedUs} */
static int collect_event(void *ctx, const esdb_event *ev)
{
	read_ctx *c = ctx;
	ErlNifEnv *env = c->env;
	ERL_NIF_TERM f[10] = {
	    enif_make_uint64(env, ev->position),
	    nif_cached_name(env, &c->stream, ev->stream_id, ev->stream_id_len),
	    enif_make_uint64(env, ev->stream_version),
	    nif_make_bin(env, ev->event_id, 16),
	    nif_cached_name(env, &c->type, ev->event_type, ev->event_type_len),
	    nif_make_bin(env, ev->data, ev->data_len),
	    nif_make_bin(env, ev->metadata, ev->metadata_len),
	    make_opt_uuid(env, ev->causation_id),
	    make_opt_uuid(env, ev->correlation_id),
	    enif_make_uint64(env, ev->created_us),
	};
	return nif_terms_push(&c->out, enif_make_tuple_from_array(env, f, 10));
}

/* Events of a source as tuples; the source's name is argv[1] unless it
 * is $all, and the arguments after it start at `rest`. */
static ERL_NIF_TERM read_tuples(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                                esdb_topic source, int rest, bool has_dir)
{
	store_res *r;
	ErlNifBinary name = {0};
	uint64_t from;
	uint32_t count;
	esdb_direction dir = ESDB_DIRECTION_FORWARD;
	if ((source != ESDB_TOPIC_ALL &&
	     !enif_inspect_binary(env, argv[1], &name)) ||
	    !nif_get_u64(env, argv[rest], &from) ||
	    !nif_get_count(env, argv[rest + 1], &count) ||
	    (has_dir && !nif_get_direction(argv[rest + 2], &dir)) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	read_ctx c = {.env = env};
	esdb_read_next next;
	int rc = r->closed ? ESDB_ECLOSED
	                   : nif_read_source(r->s, source, &name, from, count,
	                                     dir, collect_event, &c, &next);
	nif_store_release(r);
	if (rc) {
		enif_free(c.out.terms);
		return source == ESDB_TOPIC_STREAM
		           ? nif_stream_error_term(env, rc, argv[1])
		           : nif_error_term(env, rc);
	}
	return enif_make_tuple3(env, atom_ok, nif_terms_take(env, &c.out),
	                        nif_next_term(env, &next));
}

ERL_NIF_TERM nif_next_term(ErlNifEnv *env, const esdb_read_next *next)
{
	return next->end ? atom_eof : enif_make_uint64(env, next->from);
}

bool nif_get_count(ErlNifEnv *env, ERL_NIF_TERM t, uint32_t *count)
{
	unsigned v;
	if (!enif_get_uint(env, t, &v))
		return false;
	*count = v > MAX_READ ? MAX_READ : v;
	return true;
}

/* read_stream(Store, StreamId, From, Count, forward | backward)
 *   -> {ok, [Event], Next} | {error, Reason}
 * Next: eof, or the version (position for $all and type reads) the next
 * page starts at. A page holds at most Count (capped at MAX_READ) events
 * and the store's max_read_bytes; it may be short without being the
 * end: only eof is the end. */
static ERL_NIF_TERM nif_read_stream(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
	return read_tuples(env, argv, ESDB_TOPIC_STREAM, 2, true);
}

/* read_all(Store, From, Count, Direction) -> {ok, [Event], Next} | {error, R}
 */
static ERL_NIF_TERM nif_read_all(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
	return read_tuples(env, argv, ESDB_TOPIC_ALL, 1, true);
}

/* read_type(Store, EventType, FromPosition, Count) */
static ERL_NIF_TERM nif_read_type(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
	return read_tuples(env, argv, ESDB_TOPIC_TYPE, 2, false);
}

/* stream_info(Store, StreamId) -> {ok, Version, Exists, Deleted} */
static ERL_NIF_TERM nif_stream_info(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
	store_res *r;
	ErlNifBinary stream;
	uint64_t version = 0;
	bool exists = false, deleted = false;
	if (!enif_inspect_binary(env, argv[1], &stream) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	int rc = r->closed
	             ? ESDB_ECLOSED
	             : esdb_stream_get_info(r->s, (const char *)stream.data,
	                                    stream.size, &version, &exists,
	                                    &deleted);
	nif_store_release(r);
	if (rc)
		return nif_stream_error_term(env, rc, argv[1]);
	return enif_make_tuple4(env, atom_ok, enif_make_uint64(env, version),
	                        exists ? atom_true : atom_false,
	                        deleted ? atom_true : atom_false);
}

typedef struct list_ctx {
	ErlNifEnv *env;
	ERL_NIF_TERM list;
} list_ctx;

static int collect_stream(void *ctx, const esdb_stream *st)
{
	list_ctx *c = ctx;
	ERL_NIF_TERM t = enif_make_tuple3(
	    c->env, nif_make_bin(c->env, st->stream_id, st->stream_id_len),
	    enif_make_uint64(c->env, st->version),
	    st->deleted ? atom_true : atom_false);
	c->list = enif_make_list_cell(c->env, t, c->list);
	return 0;
}

/* An optional "after" cursor: nil or a binary. */
static bool get_after(ErlNifEnv *env, ERL_NIF_TERM t, ErlNifBinary *b)
{
	if (enif_is_identical(t, atom_nil)) {
		b->data = NULL;
		b->size = 0;
		return true;
	}
	return enif_inspect_binary(env, t, b);
}

/* A listing in name order after a cursor, gathered into a list_ctx. */
typedef int (*named_list)(esdb_store *s, const char *after, size_t len,
                          uint32_t count, list_ctx *c);

/* (Store, After | nil, Count) -> {ok, [Item]} | {error, Reason} */
static ERL_NIF_TERM list_after(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                               named_list list)
{
	store_res *r;
	ErlNifBinary after;
	uint32_t count;
	if (!get_after(env, argv[1], &after) ||
	    !nif_get_count(env, argv[2], &count) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	list_ctx c = {env, enif_make_list(env, 0)};
	int rc = r->closed ? ESDB_ECLOSED
	                   : list(r->s, (const char *)after.data, after.size,
	                          count, &c);
	nif_store_release(r);
	if (rc)
		return nif_error_term(env, rc);
	ERL_NIF_TERM in_order;
	enif_make_reverse_list(env, c.list, &in_order);
	return enif_make_tuple2(env, atom_ok, in_order);
}

static int list_streams(esdb_store *s, const char *after, size_t len,
                        uint32_t count, list_ctx *c)
{
	return esdb_stream_list(s, after, len, count, collect_stream, c);
}

/* list_streams(Store, After | nil, Count) -> {ok, [{Id, Version, Del}]} */
static ERL_NIF_TERM nif_list_streams(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
	return list_after(env, argv, list_streams);
}

static int collect_snapshot(void *ctx, const esdb_snapshot *sn)
{
	list_ctx *c = ctx;
	ErlNifEnv *env = c->env;
	c->list = enif_make_tuple6(
	    env, nif_make_bin(env, sn->source_uuid, sn->source_uuid_len),
	    enif_make_uint64(env, sn->source_version),
	    nif_make_bin(env, sn->source_type, sn->source_type_len),
	    make_payload(env, sn->data, sn->data_len, sn->data_encoding),
	    make_payload(env, sn->metadata, sn->metadata_len,
	                 sn->metadata_encoding),
	    enif_make_uint64(env, sn->created_us));
	return 0;
}

/* A lookup by name that hands its one record to a list_ctx. */
typedef int (*named_get)(esdb_store *s, const char *name, size_t len,
                         list_ctx *c);

static ERL_NIF_TERM get_by_name(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                                named_get get)
{
	store_res *r;
	ErlNifBinary name;
	if (!enif_inspect_binary(env, argv[1], &name) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	list_ctx c = {env, atom_nil};
	int rc = r->closed ? ESDB_ECLOSED
	                   : get(r->s, (const char *)name.data, name.size, &c);
	nif_store_release(r);
	return rc ? nif_error_term(env, rc)
	          : enif_make_tuple2(env, atom_ok, c.list);
}

static int get_snapshot(esdb_store *s, const char *name, size_t len,
                        list_ctx *c)
{
	return esdb_snapshot_get(s, name, len, collect_snapshot, c);
}

/* snapshot_get(Store, SourceUuid) -> {ok, {Uuid, Version, Type, Data,
 * Metadata, CreatedUs}} | {error, not_found}; Data and Metadata are
 * binaries, {term, Binary} when written as terms (not decoded here:
 * decode_term/1 does that with its checks) or {legacy, Binary} when
 * stored before encodings were recorded. */
static ERL_NIF_TERM nif_snapshot_get(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
	return get_by_name(env, argv, get_snapshot);
}

static ERL_NIF_TERM checkpoint_term(ErlNifEnv *env, const esdb_checkpoint *cp)
{
	return enif_make_tuple4(
	    env, nif_make_bin(env, cp->name, cp->name_len),
	    enif_make_uint64(env, cp->checkpoint),
	    nif_make_bin(env, cp->definition, cp->definition_len),
	    enif_make_uint64(env, cp->updated_us));
}

static int collect_checkpoint(void *ctx, const esdb_checkpoint *cp)
{
	list_ctx *c = ctx;
	c->list =
	    enif_make_list_cell(c->env, checkpoint_term(c->env, cp), c->list);
	return 0;
}

static int one_checkpoint(void *ctx, const esdb_checkpoint *cp)
{
	list_ctx *c = ctx;
	c->list = checkpoint_term(c->env, cp);
	return 0;
}

static int get_checkpoint(esdb_store *s, const char *name, size_t len,
                          list_ctx *c)
{
	return esdb_checkpoint_get(s, name, len, one_checkpoint, c);
}

/* checkpoint_get(Store, Name) -> {ok, {Name, Checkpoint, Definition,
 * UpdatedUs}} | {error, not_found} */
static ERL_NIF_TERM nif_checkpoint_get(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[])
{
	return get_by_name(env, argv, get_checkpoint);
}

static int list_checkpoints(esdb_store *s, const char *after, size_t len,
                            uint32_t count, list_ctx *c)
{
	return esdb_checkpoint_list(s, after, len, count, collect_checkpoint,
	                            c);
}

/* checkpoint_list(Store, After | nil, Count) -> {ok, [{Name, Checkpoint,
 * Definition, UpdatedUs}]} */
static ERL_NIF_TERM nif_checkpoint_list(ErlNifEnv *env, int argc,
                                        const ERL_NIF_TERM argv[])
{
	return list_after(env, argv, list_checkpoints);
}

/* stats(Store) -> {ok, #{events := N, ...}} */
static ERL_NIF_TERM nif_stats(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
	store_res *r;
	esdb_store_stats st;
	if (!nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	int rc = r->closed ? ESDB_ECLOSED : esdb_store_get_stats(r->s, &st);
	size_t subscribers = rc ? 0 : subs_count(r);
	nif_store_release(r);
	if (rc)
		return nif_error_term(env, rc);
	ERL_NIF_TERM keys[] = {atom_events,       atom_streams,
	                       atom_event_types,  atom_snapshots,
	                       atom_checkpoints,  atom_bytes_used,
	                       atom_map_size,     atom_commits,
	                       atom_store_failed, atom_subscribers};
	ERL_NIF_TERM vals[] = {
	    enif_make_uint64(env, st.events),
	    enif_make_uint64(env, st.streams),
	    enif_make_uint64(env, st.event_types),
	    enif_make_uint64(env, st.snapshots),
	    enif_make_uint64(env, st.checkpoints),
	    enif_make_uint64(env, st.bytes_used),
	    enif_make_uint64(env, st.map_size),
	    enif_make_uint64(env, st.commits),
	    st.store_failed
	        ? enif_make_atom(env, esdb_error_name(st.store_failed))
	        : atom_nil,
	    enif_make_uint64(env, subscribers),
	};
	ERL_NIF_TERM map;
	enif_make_map_from_arrays(env, keys, vals, 10, &map);
	return enif_make_tuple2(env, atom_ok, map);
}

/* limits(Store) -> {ok, #{max_stream_id := N, ...}}: the limits the
 * store applies with (the stored ones). */
static ERL_NIF_TERM nif_limits(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
	store_res *r;
	esdb_limits l;
	if (!nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	int rc = r->closed ? ESDB_ECLOSED : esdb_store_get_limits(r->s, &l);
	nif_store_release(r);
	if (rc)
		return nif_error_term(env, rc);
	ERL_NIF_TERM keys[6], vals[6];
	for (int i = 0; i < 6; i++) {
		esdb_limit_key k = (esdb_limit_key)(ESDB_LIMIT_STREAM_ID + i);
		keys[i] = enif_make_atom(env, esdb_limit_name(k));
		vals[i] = enif_make_uint64(env, esdb_limits_lookup(&l, k));
	}
	ERL_NIF_TERM map;
	enif_make_map_from_arrays(env, keys, vals, 6, &map);
	return enif_make_tuple2(env, atom_ok, map);
}

/* ---- load ------------------------------------------------------------- */

/* Subscribed processes are monitored through the store resource. */
static ErlNifResourceTypeInit store_init = {
    .dtor = store_dtor,
    .down = subs_down,
};

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info)
{
	if (nif_owed_init())
		return 1;
	make_atoms(env);
	records_init(env);
	subs_init(env);
	store_type = enif_open_resource_type_x(
	    env, "ex_esdb_store", &store_init, ERL_NIF_RT_CREATE, NULL);
	return store_type ? 0 : 1;
}

static int upgrade(ErlNifEnv *env, void **priv, void **old, ERL_NIF_TERM info)
{
	if (nif_owed_init())
		return 1;
	make_atoms(env);
	records_init(env);
	subs_init(env);
	store_type = enif_open_resource_type_x(
	    env, "ex_esdb_store", &store_init, ERL_NIF_RT_TAKEOVER, NULL);
	return store_type ? 0 : 1;
}

#define DIRTY_IO ERL_NIF_DIRTY_JOB_IO_BOUND

static ErlNifFunc funcs[] = {
    {"open", 2, nif_open, DIRTY_IO},
    {"close", 1, nif_close, DIRTY_IO},
    {"append", 5, nif_append, 0},
    {"delete_stream", 4, nif_delete_stream, 0},
    {"snapshot_put", 7, nif_snapshot_put, 0},
    {"snapshot_delete", 3, nif_snapshot_delete, 0},
    {"checkpoint_put", 5, nif_checkpoint_put, 0},
    {"checkpoint_delete", 3, nif_checkpoint_delete, 0},
    {"read_stream", 5, nif_read_stream, DIRTY_IO},
    {"read_all", 4, nif_read_all, DIRTY_IO},
    {"read_type", 4, nif_read_type, DIRTY_IO},
    {"stream_info", 2, nif_stream_info, DIRTY_IO},
    {"list_streams", 3, nif_list_streams, DIRTY_IO},
    {"snapshot_get", 2, nif_snapshot_get, DIRTY_IO},
    {"checkpoint_get", 2, nif_checkpoint_get, DIRTY_IO},
    {"checkpoint_list", 3, nif_checkpoint_list, DIRTY_IO},
    {"stats", 1, nif_stats, DIRTY_IO},
    {"limits", 1, nif_limits, 0},
    {"cancel", 2, nif_cancel, 0},
    {"verify", 2, nif_verify, 0},
    {"backup", 3, nif_backup, 0},
    {"read_records", 6, nif_read_records, DIRTY_IO},
    {"subscribe", 4, nif_subscribe, DIRTY_IO},
    {"subscribe", 5, nif_subscribe, DIRTY_IO},
    {"subscribe", 6, nif_subscribe, DIRTY_IO},
    {"unsubscribe", 2, nif_unsubscribe, DIRTY_IO},
    {"grant", 3, nif_grant, DIRTY_IO},
    {"decode_term", 1, nif_decode_term, 0},
};

ERL_NIF_INIT(ex_esdb_nif, funcs, load, NULL, upgrade, NULL)
