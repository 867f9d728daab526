/* reads.c: reads as tuples, lookups, listings, stats and limits, on
 * dirty IO schedulers and paged by the caller. */
#include "nif.h"

#include "atoms.h"

/* ---- reads (dirty IO) ------------------------------------------------- */

typedef struct read_ctx {
	ErlNifEnv *env;
	term_list out;
	name_cache stream, type;
} read_ctx;

/* An event as a tuple, fields in c_src/proto's order (EventTuple in
 * docs/PROTOCOL.md). */
enum {
#define EV_ENUM(name) EV_##name,
	ESDB_PROTO_EVENT_TUPLE(EV_ENUM) EV_N
#undef EV_ENUM
};
/* a field added to the protocol needs its value in collect_event */
_Static_assert(EV_N == 10, "collect_event builds every tuple field");

static int collect_event(void *ctx, const esdb_event *ev)
{
	read_ctx *c = ctx;
	ErlNifEnv *env = c->env;
	ERL_NIF_TERM f[EV_N] = {
	    [EV_position] = enif_make_uint64(env, ev->position),
	    [EV_stream_id] = nif_cached_name(env, &c->stream, ev->stream_id,
	                                     ev->stream_id_len),
	    [EV_stream_version] = enif_make_uint64(env, ev->stream_version),
	    [EV_event_id] = nif_make_bin(env, ev->event_id, 16),
	    [EV_event_type] = nif_cached_name(env, &c->type, ev->event_type,
	                                      ev->event_type_len),
	    [EV_data] = nif_make_bin(env, ev->data, ev->data_len),
	    [EV_metadata] = nif_make_bin(env, ev->metadata, ev->metadata_len),
	    [EV_causation_id] = nif_make_opt_uuid(env, ev->causation_id),
	    [EV_correlation_id] = nif_make_opt_uuid(env, ev->correlation_id),
	    [EV_created_us] = enif_make_uint64(env, ev->created_us),
	};
	return nif_terms_push(&c->out,
	                      enif_make_tuple_from_array(env, f, EV_N));
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

/* read_stream(Store, StreamId, From, Count, forward | backward)
 *   -> {ok, [Event], Next} | {error, Reason}
 * Next: eof, or the version (position for $all and type reads) the next
 * page starts at. A page holds at most Count (capped at MAX_READ) events
 * and the store's max_read_bytes; it may be short without being the
 * end: only eof is the end. */
ERL_NIF_TERM nif_read_stream(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
	return read_tuples(env, argv, ESDB_TOPIC_STREAM, 2, true);
}

/* read_all(Store, From, Count, Direction) -> {ok, [Event], Next} | {error, R}
 */
ERL_NIF_TERM nif_read_all(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	return read_tuples(env, argv, ESDB_TOPIC_ALL, 1, true);
}

/* read_type(Store, EventType, FromPosition, Count) */
ERL_NIF_TERM nif_read_type(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	return read_tuples(env, argv, ESDB_TOPIC_TYPE, 2, false);
}

/* stream_info(Store, StreamId) -> {ok, Version, Exists, Deleted} */
ERL_NIF_TERM nif_stream_info(ErlNifEnv *env, int argc,
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
	if (!nif_get_after(env, argv[1], &after) ||
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
ERL_NIF_TERM nif_list_streams(ErlNifEnv *env, int argc,
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
	    nif_make_payload(env, sn->data, sn->data_len, sn->data_encoding),
	    nif_make_payload(env, sn->metadata, sn->metadata_len,
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
ERL_NIF_TERM nif_snapshot_get(ErlNifEnv *env, int argc,
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
ERL_NIF_TERM nif_checkpoint_get(ErlNifEnv *env, int argc,
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
ERL_NIF_TERM nif_checkpoint_list(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
	return list_after(env, argv, list_checkpoints);
}

/* stats/1's keys, as c_src/proto lists them. */
enum {
#define STAT_ENUM(name) STAT_##name,
	ESDB_PROTO_STATS_FIELDS(STAT_ENUM) STAT_N
#undef STAT_ENUM
};
/* a field added to the protocol needs its value in nif_stats */
_Static_assert(STAT_N == 10, "nif_stats builds every stats field");

/* stats(Store) -> {ok, #{events := N, ...}} */
ERL_NIF_TERM nif_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
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
	ERL_NIF_TERM keys[STAT_N],
	    vals[STAT_N] = {
	        [STAT_events] = enif_make_uint64(env, st.events),
	        [STAT_streams] = enif_make_uint64(env, st.streams),
	        [STAT_event_types] = enif_make_uint64(env, st.event_types),
	        [STAT_snapshots] = enif_make_uint64(env, st.snapshots),
	        [STAT_checkpoints] = enif_make_uint64(env, st.checkpoints),
	        [STAT_bytes_used] = enif_make_uint64(env, st.bytes_used),
	        [STAT_map_size] = enif_make_uint64(env, st.map_size),
	        [STAT_commits] = enif_make_uint64(env, st.commits),
	        [STAT_store_failed] =
	            st.store_failed
	                ? enif_make_atom(env, esdb_error_name(st.store_failed))
	                : atom_nil,
	        [STAT_subscribers] = enif_make_uint64(env, subscribers),
	    };
	for (int i = 0; i < STAT_N; i++)
		keys[i] = enif_make_atom(env, esdb_proto_stats_fields[i]);
	ERL_NIF_TERM map;
	enif_make_map_from_arrays(env, keys, vals, STAT_N, &map);
	return enif_make_tuple2(env, atom_ok, map);
}

/* limits(Store) -> {ok, #{max_stream_id := N, ...}}: the limits the
 * store applies with (the stored ones). */
ERL_NIF_TERM nif_limits(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
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
