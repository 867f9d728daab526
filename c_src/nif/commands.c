/* commands.c: the mutations. Each is encoded here and queued to the
 * core's group-commit writer; the writer thread answers the caller with
 * enif_send(Pid, {Ref, Reply}), so no scheduler waits for a flush. */
#include "nif.h"

#include "atoms.h"

#include "etf.h"

#include <stdlib.h>
#include <string.h>

/* Appends carrying more payload or events than this are encoded on a
 * dirty scheduler: copying them would hold a normal one for too long. */
#define DIRTY_APPEND_BYTES  (256u << 10)
#define DIRTY_APPEND_EVENTS 1000

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
	    r->rc ? nif_result_error(env, c->s, r)
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
	ERL_NIF_TERM reply = r->rc ? nif_result_error(env, c->s, r) : atom_ok;
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
	return rc ? nif_result_error(env, r->s, &inline_result) : atom_ok;
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
ERL_NIF_TERM nif_cancel(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
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
			result = nif_limit_error(
			    env, cmd->limit, esdb_limits_lookup(l, cmd->limit));
		else
			result = nif_error_term(env, rc);
	} else {
		result = submit(env, r, argv[1], cmd, done);
	}
	nif_store_release(r);
	return result;
}

/* ---- commands --------------------------------------------------------- */

/* The request of a put or delete: its optional last argument (argv[at]),
 * {Id, Retry}, Id 16 bytes, Retry a boolean (the cluster gateway's, the
 * same Id on every try of one call; esdb_cmd_set_request). *id NULL
 * when there is none; false when malformed. */
static bool get_request(ErlNifEnv *env, int argc, int at,
                        const ERL_NIF_TERM argv[], const uint8_t **id,
                        bool *retry)
{
	const ERL_NIF_TERM *f;
	int arity;
	ErlNifBinary b;
	*id = NULL;
	*retry = false;
	if (argc <= at)
		return true;
	if (!enif_get_tuple(env, argv[at], &arity, &f) || arity != 2 ||
	    !enif_inspect_binary(env, f[0], &b) || b.size != 16)
		return false;
	*retry = enif_is_identical(f[1], atom_true);
	if (!*retry && !enif_is_identical(f[1], atom_false))
		return false;
	*id = b.data;
	return true;
}

/* An encoded put or delete given its request (rc: the encoder's). */
static int with_request(int rc, esdb_cmd *cmd, const uint8_t *id, bool retry)
{
	if (rc || !id)
		return rc;
	if (!(rc = esdb_cmd_set_request(cmd, id)) && retry)
		rc = esdb_cmd_mark_retry(cmd);
	if (rc) {
		free(cmd->buf);
		cmd->buf = NULL;
	}
	return rc;
}

/* Parse [{EventId, Type, Data, Metadata, CausationId, CorrelationId}];
 * Data and Metadata as nif_get_payload takes them. */
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
		    !nif_get_payload(env, f[2], &data, &evs[i].data_encoding) ||
		    !nif_get_payload(env, f[3], &meta,
		                     &evs[i].metadata_encoding) ||
		    !nif_get_opt_uuid(env, f[4], &evs[i].causation_id) ||
		    !nif_get_opt_uuid(env, f[5], &evs[i].correlation_id)) {
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

/* An append's Expected: as nif_get_expected takes it, or {retry,
 * Expected} for a resubmission after an unknown outcome (the cluster
 * gateway's; esdb_cmd_mark_retry). */
static bool get_append_expected(ErlNifEnv *env, ERL_NIF_TERM t,
                                uint64_t *expected, bool *retry)
{
	const ERL_NIF_TERM *f;
	int arity;
	*retry = enif_get_tuple(env, t, &arity, &f) && arity == 2 &&
	         enif_is_identical(f[0], atom_retry);
	return nif_get_expected(env, *retry ? f[1] : t, expected);
}

static ERL_NIF_TERM append_impl(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
	ErlNifBinary stream;
	uint64_t expected, bytes;
	bool retry;
	esdb_new_event *evs;
	unsigned n;
	store_res *r;
	esdb_limits l;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &stream) ||
	    !get_append_expected(env, argv[3], &expected, &retry) ||
	    !get_events(env, argv[4], &evs, &n, &bytes))
		return enif_make_badarg(env);
	for (unsigned i = 0; i < n; i++) {
		int refusal = nif_check_payload(
		    env, evs[i].data, evs[i].data_len, evs[i].data_encoding);
		if (!refusal)
			refusal = nif_check_payload(env, evs[i].metadata,
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
	if (rc == 0 && retry && (rc = esdb_cmd_mark_retry(&cmd)))
		free(cmd.buf);
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
		    !nif_get_payload(env, f[2], &data, &denc) ||
		    !nif_get_payload(env, f[3], &meta, &menc)) {
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
ERL_NIF_TERM nif_append(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	uint64_t expected;
	bool retry;
	store_res *r;
	esdb_limits l;
	append_scan sc;
	if (!enif_is_ref(env, argv[1]) || !enif_is_binary(env, argv[2]) ||
	    !get_append_expected(env, argv[3], &expected, &retry) ||
	    !acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	bool closed = r->closed;
	nif_store_release(r);
	scan_append(env, argv, &l, &sc);
	if (!closed && !sc.malformed && sc.over != ESDB_LIMIT_NONE)
		return nif_limit_error(env, sc.over,
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
ERL_NIF_TERM nif_delete_stream(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
	ErlNifBinary stream;
	uint64_t expected;
	store_res *r;
	esdb_limits l;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &stream) ||
	    !nif_get_expected(env, argv[3], &expected))
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
	const uint8_t *req;
	bool retry;
	if (!enif_is_ref(env, argv[1]) ||
	    !get_request(env, argc, 7, argv, &req, &retry) ||
	    !enif_inspect_binary(env, argv[2], &uuid) ||
	    !nif_get_u64(env, argv[3], &sn.source_version) ||
	    !enif_inspect_binary(env, argv[4], &type) ||
	    !nif_get_payload(env, argv[5], &data, &sn.data_encoding) ||
	    !nif_get_payload(env, argv[6], &meta, &sn.metadata_encoding))
		return enif_make_badarg(env);
	int refusal =
	    nif_check_payload(env, data.data, data.size, sn.data_encoding);
	if (!refusal)
		refusal = nif_check_payload(env, meta.data, meta.size,
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
	int rc = with_request(esdb_cmd_snapshot_put(&l, &sn, &cmd), &cmd, req,
	                      retry);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_plain);
}

/* snapshot_put(Store, Ref, SourceUuid, SourceVersion, SourceType, Data,
 * Metadata) -> ok | {error, R}; then {Ref, ok | {error, R}}. Data and
 * Metadata: a binary or {term, Binary}; large ones, and compressed terms
 * (inflated to be checked), are handled on a dirty scheduler. */
ERL_NIF_TERM nif_snapshot_put(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
	ErlNifBinary data, meta;
	esdb_encoding denc, menc;
	if (nif_get_payload(env, argv[5], &data, &denc) &&
	    nif_get_payload(env, argv[6], &meta, &menc) &&
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

/* checkpoint_put(Store, Ref, Name, Checkpoint, Definition[, Request]). */
ERL_NIF_TERM nif_checkpoint_put(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
	ErlNifBinary name, def;
	uint64_t cp;
	store_res *r;
	esdb_limits l;
	const uint8_t *req;
	bool retry;
	if (!enif_is_ref(env, argv[1]) ||
	    !get_request(env, argc, 5, argv, &req, &retry) ||
	    !enif_inspect_binary(env, argv[2], &name) ||
	    !nif_get_u64(env, argv[3], &cp) ||
	    !enif_inspect_binary(env, argv[4], &def) ||
	    !acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	esdb_cmd cmd;
	int rc = esdb_cmd_checkpoint_put(&l, (const char *)name.data, name.size,
	                                 cp, def.data, def.size, &cmd);
	rc = with_request(rc, &cmd, req, retry);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_plain);
}

typedef int (*named_encoder)(const esdb_limits *, const char *, size_t,
                             esdb_cmd *);

/* The deletes by name: snapshot_delete, checkpoint_delete (Store, Ref,
 * Name[, Request]). */
static ERL_NIF_TERM named_delete(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[],
                                 named_encoder encode)
{
	ErlNifBinary name;
	store_res *r;
	esdb_limits l;
	const uint8_t *req;
	bool retry;
	if (!enif_is_ref(env, argv[1]) ||
	    !get_request(env, argc, 3, argv, &req, &retry) ||
	    !enif_inspect_binary(env, argv[2], &name) ||
	    !acquire_limits(env, argv, &r, &l))
		return enif_make_badarg(env);
	esdb_cmd cmd;
	int rc =
	    with_request(encode(&l, (const char *)name.data, name.size, &cmd),
	                 &cmd, req, retry);
	return submit_encoded(env, argv, r, &l, rc, &cmd, reply_plain);
}

ERL_NIF_TERM nif_snapshot_delete(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
	return named_delete(env, argc, argv, esdb_cmd_snapshot_delete);
}

ERL_NIF_TERM nif_checkpoint_delete(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[])
{
	return named_delete(env, argc, argv, esdb_cmd_checkpoint_delete);
}
