/* request.c: the requests this C node serves, over the core API.
 *
 * Until the binding-neutral protocol layer (c_src/proto) lands, the
 * operations are a small table here with the NIF's reply and error
 * shapes (DESIGN.md, "Error vocabulary"):
 *   {hello, Version}                          -> {ok, Version}
 *   {append, StreamId, Expected, Events}      -> {ok, Version, Position}
 *   {read_stream, StreamId, From, Count, Dir} -> {ok, [Event], Next}
 *   {read_all, From, Count, Dir}              -> {ok, [Event], Next}
 *   {stream_info, StreamId}                   -> {ok, Version, Exists, Deleted}
 * Events and event tuples are the NIF's. Subscriptions are not served
 * yet. Every term is checked by term_check.c before ei decodes it. */
#include "request.h"

#include "envelope.h"
#include "pool.h"
#include "term_check.h"

#include <errno.h>
#include <zlib.h>
#include <stdlib.h>
#include <string.h>

/* A request's caller: who gets the reply and the Ref to tag it with. */
typedef struct caller {
	cn_server *srv;
	cn_conn *c;
	erlang_pid from;
	size_t ref_len;
	uint8_t ref[]; /* Ref in external format (no version byte) */
} caller;

/* The message with its reply started: {Ref, ... */
static void reply_begin(const caller *k, ei_x_buff *x)
{
	ei_x_new_with_version(x);
	ei_x_encode_tuple_header(x, 2);
	ei_x_append_buf(x, (const char *)k->ref, (int)k->ref_len);
}

/* ... Reply}: sends and ends the request; frees k. */
static void reply_end(caller *k, ei_x_buff *x)
{
	cn_conn_reply(k->c, &k->from, x);
	free(k);
}

static void encode_error_atom(ei_x_buff *x, const char *atom)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_atom(x, atom);
}

/* {error, {Tag, Atom}} */
static void encode_error_pair(ei_x_buff *x, const char *tag, const char *atom)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, tag);
	ei_x_encode_atom(x, atom);
}

static void reply_error(caller *k, const char *tag, const char *atom)
{
	ei_x_buff x;
	reply_begin(k, &x);
	if (tag)
		encode_error_pair(&x, tag, atom);
	else
		encode_error_atom(&x, atom);
	reply_end(k, &x);
}

/* The error term of a core return code, as the NIF makes it. */
static void encode_rc(cn_server *srv, ei_x_buff *x, int rc)
{
	if (rc == ESDB_ECORRUPT) {
		static const char *const kinds[] = {
		    "unknown",  "event",      "stream", "type",
		    "snapshot", "checkpoint", "index",  "page"};
		esdb_where w;
		esdb_where_take(&w);
		unsigned k = (unsigned)w.kind < 8 ? (unsigned)w.kind : 0;
		ei_x_encode_tuple_header(x, 2);
		ei_x_encode_atom(x, "error");
		ei_x_encode_tuple_header(x, 2);
		ei_x_encode_atom(x, "corrupt");
		if ((w.kind == ESDB_WHERE_EVENT && w.number) ||
		    w.kind == ESDB_WHERE_PAGE) {
			ei_x_encode_tuple_header(x, 2);
			ei_x_encode_atom(x, kinds[k]);
			ei_x_encode_ulonglong(x, w.number);
		} else {
			ei_x_encode_atom(x, kinds[k]);
		}
	} else if (rc == ESDB_ESTORE_FAILED) {
		encode_error_pair(
		    x, "store_failed",
		    esdb_error_name(esdb_store_get_failure(srv->store)));
	} else {
		encode_error_atom(x, esdb_error_name(rc));
	}
}

static void encode_limit(ei_x_buff *x, esdb_limit_key key, uint64_t max)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 3);
	ei_x_encode_atom(x, "limit_exceeded");
	ei_x_encode_atom(x, esdb_limit_name(key));
	ei_x_encode_ulonglong(x, max);
}

/* {error, {invalid_stream_id, Id}} */
static void encode_invalid_id(ei_x_buff *x, const char *id, size_t len)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "invalid_stream_id");
	ei_x_encode_binary(x, id, (long)len);
}

/* ---- argument decoding (terms checked already) ------------------------- */

typedef struct args {
	const char *buf;
	int idx;
} args;

static bool get_atom(args *a, char out[MAXATOMLEN_UTF8])
{
	return ei_decode_atom(a->buf, &a->idx, out) == 0;
}

/* A binary, borrowed from the frame. */
static bool get_bin(args *a, const char **p, size_t *len)
{
	int type, size;
	if (ei_get_type(a->buf, &a->idx, &type, &size) != 0 ||
	    type != ERL_BINARY_EXT)
		return false;
	*p = a->buf + a->idx + 5;
	*len = (size_t)size;
	return ei_skip_term(a->buf, &a->idx) == 0;
}

static bool get_u64(args *a, uint64_t *out)
{
	unsigned long long v;
	if (ei_decode_ulonglong(a->buf, &a->idx, &v) != 0)
		return false;
	*out = v;
	return true;
}

static bool is_atom(args *a, const char *name)
{
	int save = a->idx;
	char atom[MAXATOMLEN_UTF8];
	if (get_atom(a, atom) && strcmp(atom, name) == 0)
		return true;
	a->idx = save;
	return false;
}

static bool get_expected(args *a, uint64_t *out)
{
	if (is_atom(a, "any"))
		*out = ESDB_EXPECT_ANY;
	else if (is_atom(a, "no_stream"))
		*out = ESDB_EXPECT_NO_STREAM;
	else if (is_atom(a, "stream_exists"))
		*out = ESDB_EXPECT_STREAM_EXISTS;
	else
		return get_u64(a, out) && *out < ESDB_EXPECT_STREAM_EXISTS;
	return true;
}

static bool get_direction(args *a, esdb_direction *dir)
{
	if (is_atom(a, "forward"))
		*dir = ESDB_DIRECTION_FORWARD;
	else if (is_atom(a, "backward"))
		*dir = ESDB_DIRECTION_BACKWARD;
	else
		return false;
	return true;
}

static bool get_count(args *a, uint32_t *count)
{
	uint64_t v;
	if (!get_u64(a, &v))
		return false;
	*count = v > CN_MAX_READ ? CN_MAX_READ : (uint32_t)v;
	return true;
}

/* nil or a 16-byte id. */
static bool get_opt_id(args *a, const uint8_t **out)
{
	const char *p;
	size_t len;
	if (is_atom(a, "nil")) {
		*out = NULL;
		return true;
	}
	if (!get_bin(a, &p, &len) || len != 16)
		return false;
	*out = (const uint8_t *)p;
	return true;
}

/* A compressed term payload inflates to at most this (the NIF's bound). */
#define MAX_INFLATED (16u << 20)

/* Why a term payload may not be written, in the NIF's words (NULL: it
 * may): term_check.c's checks, a compressed term inflated first. No
 * unknown_atom: which atoms exist is the reading VM's business here. */
static const char *payload_refusal(const uint8_t *p, size_t len)
{
	tc_limits l = TC_LIMITS_DEFAULT;
	l.max_depth = 256;
	size_t pos = 0;
	int rc = tc_check_versioned(p, len, &pos, &l, 1);
	if (rc == TC_COMPRESSED) {
		/* 131, 80, the inflated size, zlib's stream of the term */
		if (len < 6)
			return "malformed";
		uint32_t size = (uint32_t)p[2] << 24 | (uint32_t)p[3] << 16 |
		                (uint32_t)p[4] << 8 | p[5];
		if (size > MAX_INFLATED)
			return "too_large";
		uint8_t *out = malloc(size ? size : 1);
		if (!out)
			return "enomem";
		uLongf got = size;
		if (uncompress(out, &got, p + 6, len - 6) != Z_OK ||
		    got != size) {
			free(out);
			return "malformed";
		}
		pos = 0;
		rc = tc_check(out, size, &pos, &l);
		if (rc == TC_OK && pos != size)
			rc = TC_TRAILING;
		free(out);
	}
	if (rc == TC_OK)
		return NULL;
	if (rc == TC_FUN || rc == TC_PID || rc == TC_PORT || rc == TC_REF)
		return tc_error_name(rc);
	return "malformed";
}

/* A payload: bytes, or {term, Bytes}; *why is set (once) when a term
 * payload may not be written. */
static bool get_payload(args *a, const char **p, size_t *len,
                        esdb_encoding *enc, const char **why)
{
	int type, arity;
	if (ei_get_type(a->buf, &a->idx, &type, &arity) == 0 &&
	    type == ERL_SMALL_TUPLE_EXT && arity == 2) {
		if (ei_decode_tuple_header(a->buf, &a->idx, &arity) != 0 ||
		    !is_atom(a, "term") || !get_bin(a, p, len))
			return false;
		if (!*why)
			*why = payload_refusal((const uint8_t *)*p, *len);
		*enc = ESDB_ENCODING_TERM;
		return true;
	}
	*enc = ESDB_ENCODING_BYTES;
	return get_bin(a, p, len);
}

/* ---- operations ---------------------------------------------------------- */

static void op_hello(caller *k, args *a)
{
	uint64_t v;
	ei_x_buff x;
	reply_begin(k, &x);
	if (!get_u64(a, &v) || v != CN_PROTOCOL_VERSION) {
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "error");
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "protocol_version");
		ei_x_encode_long(&x, CN_PROTOCOL_VERSION);
	} else {
		cn_conn_set_hello(k->c);
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_long(&x, CN_PROTOCOL_VERSION);
	}
	reply_end(k, &x);
}

/* The store's writer answers an append here, on its own thread. */
static void append_done(void *ctx, const esdb_result *r)
{
	caller *k = ctx;
	ei_x_buff x;
	reply_begin(k, &x);
	if (r->rc == ESDB_ELIMIT && r->limit != ESDB_LIMIT_NONE) {
		encode_limit(&x, r->limit, r->limit_max);
	} else if (r->rc) {
		encode_rc(k->srv, &x, r->rc);
	} else {
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_ulonglong(&x, r->version);
		ei_x_encode_ulonglong(&x, r->position);
	}
	reply_end(k, &x);
}

static void op_append(caller *k, args *a)
{
	cn_server *srv = k->srv;
	const char *id;
	size_t id_len;
	uint64_t expected;
	int n;
	if (!get_bin(a, &id, &id_len) || !get_expected(a, &expected) ||
	    ei_decode_list_header(a->buf, &a->idx, &n) != 0) {
		reply_error(k, "invalid_request", "append");
		return;
	}
	if ((uint64_t)n > srv->limits.max_append_events) {
		ei_x_buff x;
		reply_begin(k, &x);
		encode_limit(&x, ESDB_LIMIT_APPEND_EVENTS,
		             srv->limits.max_append_events);
		reply_end(k, &x);
		return;
	}
	esdb_new_event *evs = calloc(n ? (size_t)n : 1, sizeof(*evs));
	if (!evs) {
		reply_error(k, NULL, "enomem");
		return;
	}
	bool ok = true;
	const char *refusal = NULL;
	for (int i = 0; ok && i < n; i++) {
		int arity;
		const char *eid;
		size_t eid_len;
		ok = ei_decode_tuple_header(a->buf, &a->idx, &arity) == 0 &&
		     arity == 6 && get_bin(a, &eid, &eid_len) &&
		     eid_len == 16 &&
		     get_bin(a, &evs[i].event_type, &evs[i].event_type_len) &&
		     get_payload(a, (const char **)&evs[i].data,
		                 &evs[i].data_len, &evs[i].data_encoding,
		                 &refusal) &&
		     get_payload(a, (const char **)&evs[i].metadata,
		                 &evs[i].metadata_len,
		                 &evs[i].metadata_encoding, &refusal) &&
		     get_opt_id(a, &evs[i].causation_id) &&
		     get_opt_id(a, &evs[i].correlation_id);
		if (ok)
			memcpy(evs[i].event_id, eid, 16);
	}
	if (ok && n > 0)
		ok = ei_skip_term(a->buf, &a->idx) == 0; /* the tail, [] */
	if (!ok || refusal) {
		free(evs);
		if (refusal)
			reply_error(k, "undecodable", refusal);
		else
			reply_error(k, "invalid_request", "append");
		return;
	}
	if (esdb_stream_id_check(id, id_len)) {
		free(evs);
		ei_x_buff x;
		reply_begin(k, &x);
		encode_invalid_id(&x, id, id_len);
		reply_end(k, &x);
		return;
	}
	esdb_cmd cmd;
	int rc = esdb_cmd_stream_append(&srv->limits, id, id_len, expected, evs,
	                                (size_t)n, &cmd);
	free(evs);
	if (rc) {
		ei_x_buff x;
		reply_begin(k, &x);
		if (rc == ESDB_ELIMIT && cmd.limit != ESDB_LIMIT_NONE)
			encode_limit(
			    &x, cmd.limit,
			    esdb_limits_lookup(&srv->limits, cmd.limit));
		else
			encode_rc(srv, &x, rc);
		reply_end(k, &x);
		return;
	}
	pthread_rwlock_rdlock(&srv->store_lock);
	if (srv->closed) {
		pthread_rwlock_unlock(&srv->store_lock);
		free(cmd.buf);
		reply_error(k, NULL, "closed");
		return;
	}
	/* A refusal (full queue, closed) comes through append_done. */
	esdb_store_submit(srv->store, &cmd, append_done, k);
	pthread_rwlock_unlock(&srv->store_lock);
}

/* A read, copied off the frame and run on the pool. */
typedef struct read_job {
	caller *k;
	esdb_topic source;
	uint64_t from;
	uint32_t count;
	esdb_direction dir;
	size_t name_len;
	char name[];
} read_job;

typedef struct read_out {
	ei_x_buff events;
	int n;
} read_out;

/* Room for `more` bytes in x, grown by doubling: ei_x grows a buffer by
 * what each encode needs (plus 100 bytes), a copy per event otherwise. */
static int reserve(ei_x_buff *x, size_t more)
{
	size_t need = (size_t)x->index + more;
	if (need <= (size_t)x->buffsz)
		return 0;
	size_t cap = (size_t)x->buffsz * 2;
	if (cap < need)
		cap = need;
	if (cap > INT32_MAX)
		return ENOMEM;
	char *b = realloc(x->buff, cap);
	if (!b)
		return ENOMEM;
	x->buff = b;
	x->buffsz = (int)cap;
	return 0;
}

/* {Position, StreamId, Version, EventId, Type, Data, Metadata,
 *  CausationId, CorrelationId, CreatedUs}, the NIF's tuple. */
static int encode_event(void *ctx, const esdb_event *ev)
{
	read_out *o = ctx;
	ei_x_buff *x = &o->events;
	/* tags, lengths and fixed fields: under 200 bytes */
	int rc = reserve(x, 200 + ev->stream_id_len + ev->event_type_len +
	                        ev->data_len + ev->metadata_len);
	if (rc)
		return rc;
	ei_x_encode_tuple_header(x, 10);
	ei_x_encode_ulonglong(x, ev->position);
	ei_x_encode_binary(x, ev->stream_id, (long)ev->stream_id_len);
	ei_x_encode_ulonglong(x, ev->stream_version);
	ei_x_encode_binary(x, ev->event_id, 16);
	ei_x_encode_binary(x, ev->event_type, (long)ev->event_type_len);
	ei_x_encode_binary(x, ev->data, (long)ev->data_len);
	ei_x_encode_binary(x, ev->metadata, (long)ev->metadata_len);
	if (ev->causation_id)
		ei_x_encode_binary(x, ev->causation_id, 16);
	else
		ei_x_encode_atom(x, "nil");
	if (ev->correlation_id)
		ei_x_encode_binary(x, ev->correlation_id, 16);
	else
		ei_x_encode_atom(x, "nil");
	ei_x_encode_ulonglong(x, ev->created_us);
	o->n++;
	return 0;
}

static void run_read(void *arg)
{
	read_job *j = arg;
	caller *k = j->k;
	cn_server *srv = k->srv;
	read_out o = {.n = 0};
	ei_x_new(&o.events);
	esdb_read_next next = {0};
	uint64_t version = 0;
	bool exists = false, deleted = false;
	int rc;
	pthread_rwlock_rdlock(&srv->store_lock);
	if (srv->closed)
		rc = ESDB_ECLOSED;
	else if (j->source == ESDB_TOPIC_STREAM && j->count == UINT32_MAX)
		rc = esdb_stream_get_info(srv->store, j->name, j->name_len,
		                          &version, &exists, &deleted);
	else if (j->source == ESDB_TOPIC_STREAM)
		rc =
		    esdb_stream_read(srv->store, j->name, j->name_len, j->from,
		                     j->count, j->dir, encode_event, &o, &next);
	else
		rc = esdb_all_read(srv->store, j->from, j->count, j->dir,
		                   encode_event, &o, &next);
	pthread_rwlock_unlock(&srv->store_lock);
	ei_x_buff x;
	reply_begin(k, &x);
	if (rc == ESDB_EINVAL && j->source == ESDB_TOPIC_STREAM) {
		encode_invalid_id(&x, j->name, j->name_len);
	} else if (rc) {
		encode_rc(srv, &x, rc);
	} else if (j->count == UINT32_MAX) {
		ei_x_encode_tuple_header(&x, 4);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_ulonglong(&x, version);
		ei_x_encode_boolean(&x, exists);
		ei_x_encode_boolean(&x, deleted);
	} else {
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_atom(&x, "ok");
		if (o.n) {
			ei_x_encode_list_header(&x, o.n);
			ei_x_append_buf(&x, o.events.buff, o.events.index);
		}
		ei_x_encode_empty_list(&x);
		if (next.end)
			ei_x_encode_atom(&x, "eof");
		else
			ei_x_encode_ulonglong(&x, next.from);
	}
	ei_x_free(&o.events);
	free(j);
	reply_end(k, &x);
}

static void queue_read(caller *k, esdb_topic source, const char *name,
                       size_t name_len, uint64_t from, uint32_t count,
                       esdb_direction dir)
{
	read_job *j = malloc(sizeof(*j) + name_len + 1);
	if (!j) {
		reply_error(k, NULL, "enomem");
		return;
	}
	*j = (read_job){k, source, from, count, dir, name_len};
	if (name_len) /* $all reads have no name */
		memcpy(j->name, name, name_len);
	j->name[name_len] = '\0';
	if (cn_pool_push(k->srv->pool, k->c, run_read, j) != 0) {
		free(j);
		reply_error(k, NULL, "enomem");
	}
}

static void op_read_stream(caller *k, args *a)
{
	const char *id;
	size_t len;
	uint64_t from;
	uint32_t count;
	esdb_direction dir;
	if (!get_bin(a, &id, &len) || !get_u64(a, &from) ||
	    !get_count(a, &count) || !get_direction(a, &dir))
		reply_error(k, "invalid_request", "read_stream");
	else
		queue_read(k, ESDB_TOPIC_STREAM, id, len, from, count, dir);
}

static void op_read_all(caller *k, args *a)
{
	uint64_t from;
	uint32_t count;
	esdb_direction dir;
	if (!get_u64(a, &from) || !get_count(a, &count) ||
	    !get_direction(a, &dir))
		reply_error(k, "invalid_request", "read_all");
	else
		queue_read(k, ESDB_TOPIC_ALL, NULL, 0, from, count, dir);
}

static void op_stream_info(caller *k, args *a)
{
	const char *id;
	size_t len;
	if (!get_bin(a, &id, &len))
		reply_error(k, "invalid_request", "stream_info");
	else /* count UINT32_MAX marks the info read */
		queue_read(k, ESDB_TOPIC_STREAM, id, len, 0, UINT32_MAX,
		           ESDB_DIRECTION_FORWARD);
}

static const struct op {
	const char *name;
	int arity; /* of the request tuple, the name included */
	void (*run)(caller *k, args *a);
} ops[] = {
    {"hello", 2, op_hello},
    {"append", 4, op_append},
    {"read_stream", 5, op_read_stream},
    {"read_all", 4, op_read_all},
    {"stream_info", 2, op_stream_info},
};

/* ---- the envelope ---------------------------------------------------- */

/* The message m[0..len): a request or not. */
static void message(cn_server *srv, cn_conn *c, const uint8_t *m, size_t len)
{
	cn_envelope e;
	/* Not a request, or from a pid of another node: replies go only
	 * to processes of the node that asked. */
	if (!cn_envelope_parse(m, len, &e) ||
	    strcmp(e.from.node, cn_conn_peer(c)) != 0) {
		atomic_fetch_add(&srv->dropped_msgs, 1);
		return;
	}
	caller *k = malloc(sizeof(*k) + e.ref_len);
	if (!k) {
		atomic_fetch_add(&srv->dropped_msgs, 1);
		return;
	}
	*k = (caller){srv, c, e.from, e.ref_len};
	memcpy(k->ref, m + e.ref_at, e.ref_len);
	cn_conn_request_begin(c);
	if (e.check) {
		reply_error(k, "invalid_request", tc_error_name(e.check));
		return;
	}
	if (!e.op[0]) {
		reply_error(k, "invalid_request", "not_a_request");
		return;
	}
	args a = {(const char *)m, e.args_at};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(ops[i].name, e.op) != 0)
			continue;
		if (ops[i].arity != e.arity)
			reply_error(k, "invalid_request", ops[i].name);
		else if (!cn_conn_hello_done(c) && ops[i].run != op_hello)
			reply_error(k, NULL, "hello_required");
		else
			ops[i].run(k, &a);
		return;
	}
	reply_error(k, "invalid_request", "unknown_operation");
}

bool cn_request_frame(cn_server *srv, cn_conn *c, const uint8_t *buf,
                      size_t len)
{
	size_t msg_at;
	int op = cn_frame_parse(buf, len, &msg_at);
	if (op < 0)
		return false;
	if (cn_frame_is_send(op))
		message(srv, c, buf + msg_at, len - msg_at);
	/* links, exits (EXIT2 too), monitors: ignored */
	return true;
}
