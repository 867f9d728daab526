/* request.c: requests {call, From, Ref, Request} dispatched through the
 * protocol table (c_src/proto, docs/PROTOCOL.md): Request is {Name,
 * Args...}, the operation Name with its arguments less the store and
 * the ref (the C node serves one store; Ref travels in the envelope),
 * answered once, From ! {Ref, Reply}, with the NIF's reply (for async
 * operations the message's). Plus {hello, Version}, required first on
 * every connection. Served: the mutations, reads, listings, lookups,
 * stats, limits, record reads (as event tuples, packed in one
 * binary by read_packed, or in parts by read_parts: see reads.c), verify
 * and backup, subscriptions through the session_* requests
 * (sessions.c), store copies through the copy_* ones (copies.h), and
 * cancel ({cancel, Ref}: cancel.c); open/close are not ({error,
 * {invalid_request, not_served}}). A mutation may come fenced as
 * {in_term, Term, Until, Mutation} (in_term below).
 * Every term is checked by term_check.c before ei decodes it. */
#include "request.h"

#include "cluster.h"
#include "copies.h"
#include "envelope.h"
#include "ops.h"
#include "sessions.h"
#include "term_check.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct served {
	const char *name;
	cn_handler run; /* NULL: a read, on the pool */
} served[] = {
    {"append", cn_op_append},
    {"delete_stream", cn_op_delete_stream},
    {"snapshot_put", cn_op_snapshot_put},
    {"snapshot_delete", cn_op_snapshot_delete},
    {"checkpoint_put", cn_op_checkpoint_put},
    {"checkpoint_delete", cn_op_checkpoint_delete},
    {"read_stream", NULL},
    {"read_all", NULL},
    {"read_type", NULL},
    {"read_records", NULL},
    {"verify", cn_op_verify},
    {"backup", cn_op_backup},
    {"stream_info", NULL},
    {"list_streams", NULL},
    {"snapshot_get", NULL},
    {"checkpoint_get", NULL},
    {"checkpoint_list", NULL},
    {"stats", NULL},
    {"limits", NULL},
    {"cluster_info", cn_op_cluster_info},
    {"cluster_members", cn_op_cluster_members},
    {"cluster_add", cn_op_cluster_add},
    {"cluster_assign", cn_op_cluster_assign},
    {"cluster_remove", cn_op_cluster_remove},
    {"cluster_transfer", cn_op_cluster_transfer},
};

static const struct served *find_served(const char *name)
{
	for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++)
		if (strcmp(served[i].name, name) == 0)
			return &served[i];
	return NULL;
}

/* The arguments a request carries: the operation's less store and ref. */
static unsigned carried(const esdb_proto_op *op)
{
	unsigned n = 0;
	for (unsigned i = 0; i < op->arity; i++)
		n += op->args[i] != ESDB_ARG_STORE &&
		     op->args[i] != ESDB_ARG_REF;
	return n;
}

static void hello(caller *k, const cn_envelope *e, const char *m)
{
	args a = {m, e->args_at};
	unsigned long long v;
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	if (e->arity != 2 || ei_decode_ulonglong(a.buf, &a.idx, &v) != 0 ||
	    v != ESDB_PROTO_VERSION) {
		ei_x_encode_atom(&x, "error");
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "protocol_version");
		ei_x_encode_long(&x, ESDB_PROTO_VERSION);
	} else {
		cn_conn_set_hello(k->c);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_long(&x, ESDB_PROTO_VERSION);
	}
	cn_reply_end(k, &x);
}

/* A read of the store's data (every served read but stats, limits). */
static bool reads_data(const char *op)
{
	return strcmp(op, "stats") != 0 && strcmp(op, "limits") != 0;
}

/* Find Name with as many arguments as the request carries, decode them
 * by kind, run it. */
static void dispatch(caller *k, const cn_envelope *e, const char *m)
{
	const esdb_proto_op *op = NULL;
	bool named = false;
	/* read_packed, read_parts: read_records' arguments, its page as
	 * one binary or in parts (reads.c; C node requests, not the NIF's) */
	cn_read_form form = strcmp(e->op, "read_packed") == 0  ? CN_READ_PACKED
	                    : strcmp(e->op, "read_parts") == 0 ? CN_READ_PARTS
	                                                       : CN_READ_TERMS;
	const char *name = form != CN_READ_TERMS ? "read_records" : e->op;
	for (size_t i = 0; i < esdb_proto_op_count && !op; i++) {
		if (strcmp(esdb_proto_ops[i].name, name) != 0)
			continue;
		named = true;
		if (carried(&esdb_proto_ops[i]) == (unsigned)e->arity - 1)
			op = &esdb_proto_ops[i];
	}
	if (!op) {
		cn_reply_error(k, "invalid_request",
		               named ? "arity" : "unknown_operation");
		return;
	}
	const struct served *s = find_served(op->name);
	if (!s) {
		cn_reply_error(k, "invalid_request", "not_served");
		return;
	}
	if (!cn_conn_hello_done(k->c)) {
		cn_reply_error(k, NULL, "hello_required");
		return;
	}
	/* zeroed: an optional trailing argument not given reads as absent
	 * (a put's or delete's request, commands.c) */
	arg v[ESDB_PROTO_MAX_ARITY] = {{0}};
	unsigned n = 0;
	const char *why = NULL;
	args a = {m, e->args_at};
	for (unsigned i = 0; i < op->arity; i++) {
		esdb_proto_arg kind = op->args[i];
		if (kind == ESDB_ARG_STORE || kind == ESDB_ARG_REF)
			continue;
		if (!cn_arg_decode(&a, kind, &v[n++], &why)) {
			/* the NIF's badarg: which operation, not which
			 * argument (the NIF does not say either) */
			cn_reply_error(k, "invalid_request", e->op);
			return;
		}
	}
	if (why) {
		cn_reply_error(k, "undecodable", why);
		return;
	}
	if (s->run)
		s->run(k, v, m);
	else if (reads_data(op->name) && cn_cluster_failed(k->srv))
		/* a failed replica's store is stale (it applies nothing
		 * more): its data is not served, the client reads at
		 * another member (stats and limits still answer) */
		cn_reply_rc(k, ESDB_ESTORE_FAILED);
	else
		cn_read_queue(k, op, v, n, form);
}

static void serve(caller *k, const cn_envelope *e, const uint8_t *m);

/* {at, Store, Request}: Request for the store named Store. */
static void at_store(caller *k, cn_envelope *e, const uint8_t *m)
{
	const char *name;
	size_t len;
	cn_server *st;
	if (!cn_envelope_unwrap_at(m, e, &name, &len) ||
	    strcmp(e->op, "at") == 0 || strcmp(e->op, "hello") == 0)
		cn_reply_error(k, "invalid_request", "at");
	else if (!cn_conn_hello_done(k->c))
		cn_reply_error(k, NULL, "hello_required");
	else if (!(st = cn_store_find(k->srv, name, len)))
		cn_reply_error(k, NULL, "no_store");
	else {
		k->srv = st;
		serve(k, e, m);
	}
}

static bool is_mutation(const char *op)
{
	static const char *const names[] = {
	    "append",          "delete_stream",  "snapshot_put",
	    "snapshot_delete", "checkpoint_put", "checkpoint_delete"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(op, names[i]) == 0)
			return true;
	return false;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* {in_term, Term, Until, Mutation}: Mutation only while this C node's
 * replica is in raft term Term (else {error, {not_leader, Leader}}) and
 * before Until, wall-clock ms since the epoch or infinity (else {error,
 * timeout}); refused, it is never applied. A try held in a connection
 * (a C node stopped, a partition) may arrive after its client gave it
 * up and sent it again marked to another leader: applied here in a
 * later term, or after the client's deadline, it would be written
 * twice (PROTOCOL.md, "The C node as a replica"). */
static void in_term(caller *k, const cn_envelope *fenced, const uint8_t *m)
{
	uint64_t term, until;
	cn_envelope inner = *fenced, *e = &inner;
	if (!cn_envelope_unwrap_in_term(m, e, &term, &until) ||
	    !is_mutation(e->op)) {
		cn_reply_error(k, "invalid_request", "in_term");
		return;
	}
	if (!cn_conn_hello_done(k->c)) {
		cn_reply_error(k, NULL, "hello_required");
		return;
	}
	cn_server *srv = k->srv;
	pthread_rwlock_rdlock(&srv->store_lock);
	bool closed = srv->closed, cluster = srv->cluster != NULL;
	bool same = !closed && cn_cluster_in_term(srv, term);
	pthread_rwlock_unlock(&srv->store_lock);
	if (closed) {
		cn_reply_rc(k, ESDB_ECLOSED);
	} else if (!cluster) {
		cn_reply_error(k, NULL, "not_cluster");
	} else if (!same) {
		ei_x_buff x;
		cn_reply_begin(k, &x);
		cn_cluster_encode_not_leader(srv, &x);
		cn_reply_end(k, &x);
	} else if (until != UINT64_MAX && wall_ms() >= until) {
		cn_reply_error(k, NULL, "timeout");
	} else {
		/* the term checked again where the command is queued: this
		 * thread held here while leadership left and came back would
		 * queue it in the later term */
		cn_cluster_fence_term(term);
		dispatch(k, e, (const char *)m);
		cn_cluster_fence_term(0);
	}
}

/* {as_owner, Mutation}: a persistent subscription's checkpoint_put or
 * checkpoint_delete of Name, served only while the session of From owns
 * Name's claim here (sessions.c), and on a replica queued for raft only
 * in the claim's term: an owner that lost its claim (the leader stepped
 * down, the name went to another session) writes nothing more. Refused
 * ({error, no_session | claim_lost}), it is never applied. */
static void as_owner(caller *k, const cn_envelope *wrapped, const uint8_t *m)
{
	cn_envelope inner = *wrapped, *e = &inner;
	int idx, type, size;
	if (!cn_envelope_unwrap_as_owner(m, e) ||
	    (strcmp(e->op, "checkpoint_put") != 0 &&
	     strcmp(e->op, "checkpoint_delete") != 0) ||
	    e->arity < 2 ||
	    (idx = e->args_at,
	     ei_get_type((const char *)m, &idx, &type, &size) != 0) ||
	    type != ERL_BINARY_EXT) {
		cn_reply_error(k, "invalid_request", "as_owner");
		return;
	}
	if (!cn_conn_hello_done(k->c)) {
		cn_reply_error(k, NULL, "hello_required");
		return;
	}
	/* the tag and the length before the name's bytes */
	const char *name = (const char *)m + idx + 5;
	uint64_t term = 0;
	const char *why = cn_sessions_owner(k, name, (size_t)size, &term);
	if (why) {
		cn_reply_error(k, NULL, why);
	} else {
		/* the claim's term checked again where it is queued: one
		 * that moved on since refuses it */
		cn_cluster_fence_term(term);
		dispatch(k, e, (const char *)m);
		cn_cluster_fence_term(0);
	}
}

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
	*k = (caller){.srv = srv, .c = c, .from = e.from, .ref_len = e.ref_len};
	memcpy(k->ref, m + e.ref_at, e.ref_len);
	cn_conn_request_begin(c);
	if (e.check)
		cn_reply_error(k, "invalid_request", tc_error_name(e.check));
	else if (!e.op[0])
		cn_reply_error(k, "invalid_request", "not_a_request");
	else if (strcmp(e.op, "hello") == 0)
		hello(k, &e, (const char *)m);
	else if (strcmp(e.op, "at") == 0)
		at_store(k, &e, m);
	else
		serve(k, &e, m);
}

/* The request for the store k->srv. */
static void serve(caller *k, const cn_envelope *e, const uint8_t *m)
{
	if (!e->op[0])
		cn_reply_error(k, "invalid_request", "not_a_request");
	else if (cn_sessions_is_request(e->op) && !cn_conn_hello_done(k->c))
		cn_reply_error(k, NULL, "hello_required");
	else if (cn_sessions_is_request(e->op))
		cn_sessions_request(k, e, (const char *)m);
	else if (strcmp(e->op, "cancel") == 0 && !cn_conn_hello_done(k->c))
		cn_reply_error(k, NULL, "hello_required");
	else if (strcmp(e->op, "cancel") == 0)
		cn_op_cancel(k, (const char *)m, e->args_at, e->arity);
	else if (strcmp(e->op, "cluster_add") == 0 && e->arity == 4 &&
	         !cn_conn_hello_done(k->c))
		cn_reply_error(k, NULL, "hello_required");
	else if (strcmp(e->op, "cluster_add") == 0 && e->arity == 4)
		cn_op_cluster_add_named(k, (const char *)m, e->args_at,
		                        e->arity);
	else if (cn_copy_is_request(e->op) && !cn_conn_hello_done(k->c))
		cn_reply_error(k, NULL, "hello_required");
	else if (cn_copy_is_request(e->op))
		cn_copy_request(k, e, (const char *)m);
	else if (strcmp(e->op, "in_term") == 0)
		in_term(k, e, m);
	else if (strcmp(e->op, "as_owner") == 0)
		as_owner(k, e, m);
	else
		dispatch(k, e, (const char *)m);
}

bool cn_request_frame(cn_server *srv, cn_conn *c, const uint8_t *buf,
                      size_t len)
{
	size_t msg_at;
	int op = cn_frame_parse(buf, len, &msg_at);
	if (op < 0)
		return false;
	erlang_pid from, to;
	if (cn_frame_is_send(op))
		message(srv, c, buf + msg_at, len - msg_at);
	else if (cn_frame_exit(buf, len, &from, &to))
		/* a session process linked to its session's pid ended */
		cn_sessions_exit(srv, c, &from, &to);
	/* links, other exits (EXIT2 too), monitors: ignored */
	return true;
}
