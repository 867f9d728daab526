/* records.c: reads that hand Elixir its %ExESDB.EventRecord{} structs
 * directly: the map, the event id as UUID text, created_at as a
 * %DateTime{} and, for the default serializer, the data and metadata that
 * were written as terms decoded with etf.c's checks. Building them here
 * instead of in Elixir is what makes reads into structs cost little more
 * than the C read. */
#include "nif.h"

#include "etf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Keys in term order (c_src/proto), so building each map needs no
 * reordering. */
#define RECORD_KEYS   ESDB_PROTO_RECORD_FIELDS
#define DATETIME_KEYS ESDB_PROTO_DATETIME_FIELDS

enum {
#define REC_ENUM(name) REC_##name,
	RECORD_KEYS(REC_ENUM) REC_N
};
enum {
#define DT_ENUM(name) DT_##name,
	DATETIME_KEYS(DT_ENUM) DT_N
};

static ERL_NIF_TERM rec_keys[REC_N], dt_keys[DT_N];
static ERL_NIF_TERM atom_nil, atom_all, atom_stream, atom_type, atom_datetime,
    atom_iso, atom_tuples;

void records_init(ErlNifEnv *env)
{
	int i = 0;
#define REC_ATOM(name) rec_keys[i++] = enif_make_atom(env, #name);
	RECORD_KEYS(REC_ATOM)
	i = 0;
#define DT_ATOM(name) dt_keys[i++] = enif_make_atom(env, #name);
	DATETIME_KEYS(DT_ATOM)
	atom_nil = enif_make_atom(env, "nil");
	atom_all = enif_make_atom(env, "all");
	atom_stream = enif_make_atom(env, "stream");
	atom_type = enif_make_atom(env, "type");
	atom_datetime = enif_make_atom(env, "Elixir.DateTime");
	atom_iso = enif_make_atom(env, "Elixir.Calendar.ISO");
	atom_tuples = enif_make_atom(env, "tuples");
}

/* Payloads up to the VM's heap binary limit are copied into the heap.
 * A bigger one would be a refc binary of its own: a malloc under the
 * allocator's lock, from a dirty scheduler, for every event. So they are
 * copied into one binary per chunk of events instead, and handed out as
 * sub-binaries of it. A chunk holds at most CHUNK_BYTES: a record kept
 * after the rest of its page are dropped keeps at most that much alive.
 * A payload over BIG_PAYLOAD gets a binary of its own. */
#define HEAP_BIN_MAX 64
#define CHUNK_BYTES  (16u << 10)
#define BIG_PAYLOAD  (CHUNK_BYTES / 4)
#define CHUNK_EVENTS 256

/* An event whose map waits for its chunk's binary: data and metadata
 * (slice 0 and 1) are either made already (vals) or bytes in the chunk. */
typedef struct pending {
	ERL_NIF_TERM vals[REC_N];
	uint32_t off[2], len[2];
	bool sliced[2];
} pending;

typedef struct rec_ctx {
	ErlNifEnv *env;
	ERL_NIF_TERM module; /* the struct's module */
	bool decode;         /* decode payloads written as terms */
	bool tuples;         /* each record a tuple of its map's values */
	int refusal;         /* why a payload could not be decoded */
	term_list out;
	ErlNifBinary chunk; /* CHUNK_BYTES allocated; .size: bytes used */
	bool have_chunk;
	pending *pend; /* CHUNK_EVENTS of them, made on first use */
	size_t n_pend;
	/* Terms repeated from one event to the next are made once: events of
	 * one append share their stream, often their type, and always their
	 * created time. */
	name_cache stream, type;
	uint64_t created_us;
	ERL_NIF_TERM created_t;
	bool have_created;
	ERL_NIF_TERM utc, etc_utc; /* "UTC", "Etc/UTC" */
} rec_ctx;

static ERL_NIF_TERM uuid_text(ErlNifEnv *env, const uint8_t *id)
{
	ERL_NIF_TERM t;
	esdb_uuid_format(id, (char *)enif_make_new_binary(env, 36, &t));
	return t;
}

static ERL_NIF_TERM opt_uuid_text(ErlNifEnv *env, const uint8_t *id)
{
	return id ? uuid_text(env, id) : atom_nil;
}

/* %DateTime{} in UTC with microsecond precision, as
 * DateTime.from_unix!(us, :microsecond) makes it (for tuples, its date and
 * time fields as a tuple). */
static ERL_NIF_TERM datetime(rec_ctx *c, uint64_t us)
{
	ErlNifEnv *env = c->env;
	if (c->have_created && c->created_us == us)
		return c->created_t;
	esdb_proto_date d;
	esdb_proto_date_from_us(us, &d);
	if (c->tuples) {
		c->created_t = enif_make_tuple7(
		    env, enif_make_int64(env, d.year),
		    enif_make_uint(env, d.month), enif_make_uint(env, d.day),
		    enif_make_uint(env, d.hour), enif_make_uint(env, d.minute),
		    enif_make_uint(env, d.second),
		    enif_make_uint(env, d.microsecond));
		c->created_us = us;
		c->have_created = true;
		return c->created_t;
	}
	ERL_NIF_TERM vals[DT_N] = {
	    [DT___struct__] = atom_datetime,
	    [DT_calendar] = atom_iso,
	    [DT_year] = enif_make_int64(env, d.year),
	    [DT_month] = enif_make_uint(env, d.month),
	    [DT_day] = enif_make_uint(env, d.day),
	    [DT_hour] = enif_make_uint(env, d.hour),
	    [DT_minute] = enif_make_uint(env, d.minute),
	    [DT_second] = enif_make_uint(env, d.second),
	    [DT_microsecond] = enif_make_tuple2(
	        env, enif_make_uint(env, d.microsecond), enif_make_int(env, 6)),
	    [DT_std_offset] = enif_make_int(env, 0),
	    [DT_utc_offset] = enif_make_int(env, 0),
	    [DT_time_zone] = c->etc_utc,
	    [DT_zone_abbr] = c->utc,
	};
	enif_make_map_from_arrays(env, dt_keys, vals, DT_N, &c->created_t);
	c->created_us = us;
	c->have_created = true;
	return c->created_t;
}

/* A payload ready for its record: a term, or bytes to hand out as a
 * slice of the chunk (src, n). */
typedef struct prepared {
	ERL_NIF_TERM term;
	const uint8_t *src;
	size_t n;
	bool slice;
} prepared;

static void bytes_of(rec_ctx *c, const void *p, size_t len, prepared *out)
{
	out->slice = len > HEAP_BIN_MAX && len <= BIG_PAYLOAD;
	out->src = p;
	out->n = len;
	if (!out->slice)
		out->term = nif_make_bin(c->env, p, len);
}

/* The bytes of a term that is one binary and nothing else (131, 109,
 * length, bytes): it holds no fun, pid, port or reference and decodes to
 * exactly those bytes, so it needs neither the walk nor
 * enif_binary_to_term. */
static bool plain_binary_term(const uint8_t *p, size_t len,
                              const uint8_t **bytes, size_t *n)
{
	if (len < 6 || p[0] != 131 || p[1] != 109)
		return false;
	size_t k =
	    (size_t)p[2] << 24 | (size_t)p[3] << 16 | (size_t)p[4] << 8 | p[5];
	if (k != len - 6)
		return false;
	*bytes = p + 6;
	*n = k;
	return true;
}

/* Bytes as stored, or, when decoding, the term a payload written as a
 * term holds; when decoding, empty bytes are nil. A term that may not be
 * decoded sets c->refusal: the read answers {error, {undecodable, _}}
 * rather than hand out bytes the caller would take for the term. A legacy
 * payload (stored before encodings were recorded, when this API wrote
 * term_to_binary) is decoded the same way if it is external term format
 * at all, and is its bytes if not. */
static void payload(rec_ctx *c, const void *p, size_t len, esdb_encoding enc,
                    prepared *out)
{
	if (!c->decode || enc == ESDB_ENCODING_BYTES ||
	    (enc == ESDB_ENCODING_LEGACY && len == 0)) {
		if (c->decode && len == 0) {
			out->slice = false;
			out->term = atom_nil;
		} else {
			bytes_of(c, p, len, out);
		}
		return;
	}
	const uint8_t *bytes;
	size_t n;
	if (plain_binary_term(p, len, &bytes, &n)) {
		bytes_of(c, bytes, n, out);
		return;
	}
	ERL_NIF_TERM t;
	int refusal = etf_decode(c->env, p, len, &t);
	if (refusal == ETF_MALFORMED && enc == ESDB_ENCODING_LEGACY) {
		bytes_of(c, p, len, out);
		return;
	}
	if (refusal && !c->refusal)
		c->refusal = refusal;
	out->slice = false;
	out->term = refusal ? atom_nil : t;
}

/* The waiting events' maps, in order, with their slices cut from the
 * chunk, which becomes a binary now (trimmed to what it holds). */
static int flush_pending(rec_ctx *c)
{
	ErlNifEnv *env = c->env;
	ERL_NIF_TERM bin = 0;
	if (c->have_chunk) {
		if (!enif_realloc_binary(&c->chunk, c->chunk.size))
			return ENOMEM;
		bin = enif_make_binary(env, &c->chunk);
		c->have_chunk = false;
	}
	for (size_t i = 0; i < c->n_pend; i++) {
		pending *e = &c->pend[i];
		static const int field[2] = {REC_data, REC_metadata};
		for (int k = 0; k < 2; k++)
			if (e->sliced[k])
				e->vals[field[k]] = enif_make_sub_binary(
				    env, bin, e->off[k], e->len[k]);
		ERL_NIF_TERM rec;
		if (c->tuples)
			rec = enif_make_tuple_from_array(env, e->vals, REC_N);
		else
			enif_make_map_from_arrays(env, rec_keys, e->vals, REC_N,
			                          &rec);
		int rc = nif_terms_push(&c->out, rec);
		if (rc)
			return rc;
	}
	c->n_pend = 0;
	return 0;
}

/* Room in the chunk for n more bytes and in the queue for one more
 * event: flush what waits when either is full. */
static int reserve(rec_ctx *c, size_t n)
{
	if (!c->pend) {
		c->pend = enif_alloc(CHUNK_EVENTS * sizeof(*c->pend));
		if (!c->pend)
			return ENOMEM;
	}
	if (c->n_pend == CHUNK_EVENTS ||
	    (c->have_chunk && c->chunk.size + n > CHUNK_BYTES)) {
		int rc = flush_pending(c);
		if (rc)
			return rc;
	}
	if (n && !c->have_chunk) {
		if (!enif_alloc_binary(CHUNK_BYTES, &c->chunk))
			return ENOMEM;
		c->chunk.size = 0;
		c->have_chunk = true;
	}
	return 0;
}

static int collect_record(void *ctx, const esdb_event *ev)
{
	rec_ctx *c = ctx;
	ErlNifEnv *env = c->env;
	prepared pay[2];
	payload(c, ev->data, ev->data_len, ev->data_encoding, &pay[0]);
	payload(c, ev->metadata, ev->metadata_len, ev->metadata_encoding,
	        &pay[1]);
	if (c->refusal)
		return ESDB_EINVAL; /* stops the read; c->refusal says why */
	size_t need =
	    (pay[0].slice ? pay[0].n : 0) + (pay[1].slice ? pay[1].n : 0);
	int rc = reserve(c, need);
	if (rc)
		return rc;
	pending *e = &c->pend[c->n_pend++];
	static const int field[2] = {REC_data, REC_metadata};
	for (int k = 0; k < 2; k++) {
		e->sliced[k] = pay[k].slice;
		if (!pay[k].slice) {
			e->vals[field[k]] = pay[k].term;
			continue;
		}
		e->off[k] = (uint32_t)c->chunk.size;
		e->len[k] = (uint32_t)pay[k].n;
		memcpy(c->chunk.data + c->chunk.size, pay[k].src, pay[k].n);
		c->chunk.size += pay[k].n;
	}
	ERL_NIF_TERM version = enif_make_uint64(env, ev->stream_version);
	ERL_NIF_TERM *v = e->vals;
	v[REC___struct__] = c->module;
	v[REC_event_id] = uuid_text(env, ev->event_id);
	v[REC_event_type] =
	    nif_cached_name(env, &c->type, ev->event_type, ev->event_type_len);
	v[REC_stream_id] =
	    nif_cached_name(env, &c->stream, ev->stream_id, ev->stream_id_len);
	v[REC_event_number] = version;
	v[REC_stream_version] = version;
	v[REC_position] = enif_make_uint64(env, ev->position);
	v[REC_causation_id] = opt_uuid_text(env, ev->causation_id);
	v[REC_correlation_id] = opt_uuid_text(env, ev->correlation_id);
	v[REC_created_at] = datetime(c, ev->created_us);
	v[REC_created_epoch] = enif_make_uint64(env, ev->created_us);
	return 0;
}

/* The records of every event collected, in c->out; false when out of
 * memory. */
static bool rec_finish(rec_ctx *c)
{
	return flush_pending(c) == 0;
}

static void rec_free(rec_ctx *c)
{
	if (c->have_chunk)
		enif_release_binary(&c->chunk);
	c->have_chunk = false;
	enif_free(c->pend);
	c->pend = NULL;
	enif_free(c->out.terms);
	c->out.terms = NULL;
}

static void rec_init(rec_ctx *c, ErlNifEnv *env, ERL_NIF_TERM module,
                     bool decode)
{
	memset(c, 0, sizeof(*c));
	c->env = env;
	c->module = module;
	c->decode = decode;
	c->utc = nif_make_bin(env, "UTC", 3);
	c->etc_utc = nif_make_bin(env, "Etc/UTC", 7);
}

bool records_build(ErlNifEnv *env, const esdb_event *events, size_t n,
                   ERL_NIF_TERM module, bool decode, size_t chunk,
                   term_list *lists)
{
	rec_ctx c;
	rec_init(&c, env, module, decode);
	for (size_t i = 0; i < n; i++)
		if (collect_record(&c, &events[i]))
			goto fail;
	if (!rec_finish(&c))
		goto fail;
	for (size_t off = 0; off < n; off += chunk) {
		size_t k = n - off < chunk ? n - off : chunk;
		if (nif_terms_push(
		        lists, enif_make_list_from_array(env, c.out.terms + off,
		                                         (unsigned)k)))
			goto fail;
	}
	rec_free(&c);
	return true;
fail:
	rec_free(&c);
	return false;
}

bool records_format(ErlNifEnv *env, ERL_NIF_TERM t, ERL_NIF_TERM *module,
                    bool *decode)
{
	const ERL_NIF_TERM *fmt;
	int n;
	if (!enif_get_tuple(env, t, &n, &fmt) || n != 2 ||
	    !enif_is_atom(env, fmt[0]) || !enif_is_atom(env, fmt[1]))
		return false;
	*module = fmt[0];
	*decode = enif_is_identical(fmt[1], enif_make_atom(env, "true"));
	return true;
}

/* A read's format: {Module, Decode} for the maps, {Module, Decode,
 * tuples} for each record as a tuple of the values its map would hold, in
 * the same order (created_at as {Year, Month, Day, Hour, Minute, Second,
 * Microsecond}). A map built by compiled Elixir code from such a tuple
 * shares its keys tuple, a literal, with every other (EventRecord's
 * from_tuples): no send or garbage collection copies it, and nothing here
 * sorts keys. */
static bool read_format(ErlNifEnv *env, ERL_NIF_TERM t, ERL_NIF_TERM *module,
                        bool *decode, bool *tuples)
{
	const ERL_NIF_TERM *fmt;
	int n;
	*tuples = false;
	if (enif_get_tuple(env, t, &n, &fmt) && n == 3) {
		if (!enif_is_identical(fmt[2], atom_tuples))
			return false;
		*tuples = true;
		t = enif_make_tuple2(env, fmt[0], fmt[1]);
	}
	return records_format(env, t, module, decode);
}

bool records_read_format(ErlNifEnv *env, ERL_NIF_TERM t, ERL_NIF_TERM *module,
                         bool *decode, bool *tuples)
{
	return read_format(env, t, module, decode, tuples);
}

int records_list(ErlNifEnv *env, const esdb_event *events, size_t n,
                 ERL_NIF_TERM module, bool decode, bool tuples,
                 ERL_NIF_TERM *list, int *refusal)
{
	rec_ctx c;
	rec_init(&c, env, module, decode);
	c.tuples = tuples;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		rc = collect_record(&c, &events[i]);
	if (!rc && !rec_finish(&c))
		rc = ENOMEM;
	*refusal = c.refusal;
	if (!rc)
		*list = nif_terms_take(env, &c.out);
	rec_free(&c);
	return rc;
}

/* read_records(Store, Source, From, Count, Direction, {Module, Decode})
 *   Source: all | {stream, StreamId} | {type, EventType}
 *   -> {ok, [%Module{}], Next} | {error, Reason}
 *   or {Module, Decode, tuples}: -> {ok, [tuple()], Next} (read_format)
 * Next as for read_stream: eof or where the next page starts.
 * Decode = true decodes the data and metadata written as terms (etf.c);
 * one that may not be decoded fails the read with
 * {error, {undecodable, Reason}}. */
ERL_NIF_TERM nif_read_records(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
	store_res *r;
	uint64_t from;
	uint32_t count;
	esdb_direction dir;
	esdb_topic source;
	ErlNifBinary name = {0};
	ERL_NIF_TERM module;
	bool decode, tuples;
	if (!records_source(env, argv[1], &source, &name) ||
	    !nif_get_u64(env, argv[2], &from) ||
	    !nif_get_count(env, argv[3], &count) ||
	    !nif_get_direction(argv[4], &dir) ||
	    !read_format(env, argv[5], &module, &decode, &tuples) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);

	rec_ctx c;
	esdb_read_next next;
	rec_init(&c, env, module, decode);
	c.tuples = tuples;
	int rc = r->closed ? ESDB_ECLOSED
	                   : nif_read_source(r->s, source, &name, from, count,
	                                     dir, collect_record, &c, &next);
	nif_store_release(r);
	if (!rc && !rec_finish(&c))
		rc = ENOMEM;
	if (rc) {
		rec_free(&c);
		if (c.refusal)
			return etf_undecodable(env, c.refusal);
		return source == ESDB_TOPIC_STREAM
		           ? nif_stream_error_term(
		                 env, rc,
		                 nif_make_bin(env, name.data, name.size))
		           : nif_error_term(env, rc);
	}
	ERL_NIF_TERM records = nif_terms_take(env, &c.out);
	rec_free(&c);
	return enif_make_tuple3(env, enif_make_atom(env, "ok"), records,
	                        nif_next_term(env, &next));
}

int nif_read_source(esdb_store *s, esdb_topic source, const ErlNifBinary *name,
                    uint64_t from, uint32_t count, esdb_direction dir,
                    esdb_event_fn fn, void *ctx, esdb_read_next *next)
{
	const char *p = (const char *)name->data;
	switch (source) {
	case ESDB_TOPIC_ALL:
		return esdb_all_read(s, from, count, dir, fn, ctx, next);
	case ESDB_TOPIC_STREAM:
		return esdb_stream_read(s, p, name->size, from, count, dir, fn,
		                        ctx, next);
	default:
		return esdb_type_read(s, p, name->size, from, count, fn, ctx,
		                      next);
	}
}

bool records_source(ErlNifEnv *env, ERL_NIF_TERM t, esdb_topic *topic,
                    ErlNifBinary *name)
{
	const ERL_NIF_TERM *src;
	int n;
	if (enif_is_identical(t, atom_all)) {
		*topic = ESDB_TOPIC_ALL;
		name->data = NULL;
		name->size = 0;
		return true;
	}
	if (!enif_get_tuple(env, t, &n, &src) || n != 2 ||
	    !enif_inspect_binary(env, src[1], name) || name->size == 0)
		return false;
	if (enif_is_identical(src[0], atom_stream))
		*topic = ESDB_TOPIC_STREAM;
	else if (enif_is_identical(src[0], atom_type))
		*topic = ESDB_TOPIC_TYPE;
	else
		return false;
	return true;
}
