/* ops.h: what the C node's request handlers share: the caller a reply
 * goes to, the reply encoders (the NIF's shapes, DESIGN.md "Error
 * vocabulary"), arguments decoded by their proto.h kind, and the
 * handlers of the operations served. Internal to c_src/cnode. */
#ifndef ESDB_CNODE_OPS_H
#define ESDB_CNODE_OPS_H

#include "cnode.h"
#include "conn.h"
#include "proto.h"

#include <stddef.h>
#include <stdint.h>

/* A request's caller: who gets the reply and the Ref to tag it with.
 * Each request's caller is answered exactly once (reply_end frees it). */
typedef struct caller {
	cn_server *srv;
	cn_conn *c;
	erlang_pid from;
	size_t ref_len;
	/* a command's place among those the writer owes (cancel.c) */
	struct caller *owed_prev, *owed_next;
	bool abandoned;
	uint8_t ref[]; /* Ref in external format (no version byte) */
} caller;

/* {Ref, ... started in x; reply_end adds nothing, sends and frees k. */
void cn_reply_begin(const caller *k, ei_x_buff *x);
void cn_reply_end(caller *k, ei_x_buff *x);
/* {Ref, {error, Atom}}, or {Ref, {error, {Tag, Atom}}} with a tag. */
void cn_reply_error(caller *k, const char *tag, const char *atom);
/* {Ref, ok} or the error of rc. */
void cn_reply_rc(caller *k, int rc);

/* {error, ...} terms: a core return code (corrupt with its place,
 * store_failed with its cause), a limit, an invalid stream id. */
void cn_encode_rc(cn_server *srv, ei_x_buff *x, int rc);
void cn_encode_limit(ei_x_buff *x, esdb_limit_key key, uint64_t max);
void cn_encode_invalid_id(ei_x_buff *x, const char *id, size_t len);
/* A payload as read: bytes, {term, Bytes} or {legacy, Bytes}. */
void cn_encode_payload(ei_x_buff *x, const void *p, size_t len,
                       esdb_encoding enc);
/* Room for `more` bytes in x, doubling (ei_x grows by each encode's
 * need: a copy of the buffer per field otherwise). 0 or ENOMEM. */
int cn_x_reserve(ei_x_buff *x, size_t more);

/* A request's terms, checked by term_check.c: ei decodes from idx. */
typedef struct args {
	const char *buf;
	int idx;
} args;

/* A SOURCE argument's kind (arg.u); its name in arg.p. */
enum { CN_SOURCE_ALL, CN_SOURCE_STREAM, CN_SOURCE_TYPE };

/* One argument as its kind decodes it. */
typedef struct arg {
	const char *p; /* binaries, borrowed from the message; AFTER: NULL
	                * for nil */
	size_t len;
	uint64_t u;        /* UINT, EXPECTED, COUNT, DIRECTION, SOURCE's kind,
	                    * FORMAT's Decode */
	esdb_encoding enc; /* PAYLOAD */
	int at;            /* EVENTS: where the list starts */
	bool retry;        /* EXPECTED given as {retry, Expected}; REQUEST's */
} arg;

/* Decode the next argument as `kind`. False: the term is not of that
 * kind (or a kind this node does not take). *why is set, once, to why a
 * term payload may not be written, in the NIF's words. */
bool cn_arg_decode(args *a, esdb_proto_arg kind, arg *v, const char **why);
/* The NewEvents of an append, the list at m[at], borrowing from m.
 * Returns 0 (*out malloc'ed: free it), ESDB_ELIMIT (more than max),
 * EINVAL (not a list of NewEvents) or ENOMEM. *why as above. */
int cn_arg_events(const char *m, int at, uint32_t max, esdb_new_event **out,
                  size_t *n, const char **why);
bool cn_arg_bin(args *a, const char **p, size_t *len);
bool cn_arg_opt_id(args *a, const uint8_t **out);
bool cn_arg_payload(args *a, const char **p, size_t *len, esdb_encoding *enc,
                    const char **why);

/* Handlers: v holds the request's arguments (proto's, without store
 * and ref), m the message they borrow from. Each answers k once. */
typedef void (*cn_handler)(caller *k, const arg *v, const char *m);

void cn_op_append(caller *k, const arg *v, const char *m);
void cn_op_delete_stream(caller *k, const arg *v, const char *m);
void cn_op_snapshot_put(caller *k, const arg *v, const char *m);
void cn_op_snapshot_delete(caller *k, const arg *v, const char *m);
void cn_op_checkpoint_put(caller *k, const arg *v, const char *m);
void cn_op_checkpoint_delete(caller *k, const arg *v, const char *m);
/* verify and backup: on a thread of their own (maintenance.c) */
void cn_op_verify(caller *k, const arg *v, const char *m);
void cn_op_backup(caller *k, const arg *v, const char *m);
/* the replica's state and members (cluster.c) */
void cn_op_cluster_info(caller *k, const arg *v, const char *m);
void cn_op_cluster_members(caller *k, const arg *v, const char *m);
/* membership and transfer, each on a thread of its own (raft may take
 * seconds: a new voter's catch-up, an election) */
void cn_op_cluster_add(caller *k, const arg *v, const char *m);
void cn_op_cluster_assign(caller *k, const arg *v, const char *m);
void cn_op_cluster_remove(caller *k, const arg *v, const char *m);
void cn_op_cluster_transfer(caller *k, const arg *v, const char *m);
/* {cluster_add, Id, Address, Name}: cluster_add with the member's C node
 * name, replicated so that every member names it (cluster.c) */
void cn_op_cluster_add_named(caller *k, const char *m, int at, int arity);

/* {cancel, Ref}: withdraw or give up the command this caller's pid sent
 * with Ref on this connection, as the NIF's cancel/2 (cancel.c). */
void cn_op_cancel(caller *k, const char *m, int ref_at, int arity);
/* A command queued to the writer is owed its reply: cn_owed_add before
 * esdb_store_submit; its done callback asks cn_owed_settle first, and
 * sends nothing when that is false (the caller withdrew or abandoned
 * it: the request is ended and k freed). */
void cn_owed_add(caller *k);
bool cn_owed_settle(caller *k);

/* One event as a packed page holds it (docs/PROTOCOL.md, read_packed)
 * appended to x; marked: payload encodings as stored (else as bytes).
 * 0 or ENOMEM. */
int cn_encode_packed(ei_x_buff *x, const esdb_event *ev, bool marked);

/* How read_records answers (docs/PROTOCOL.md): event tuples; as
 * read_packed, its events in one binary; as read_parts, in packed parts
 * sent while the read goes on, then the rest as read_packed's reply. */
typedef enum { CN_READ_TERMS, CN_READ_PACKED, CN_READ_PARTS } cn_read_form;

/* Reads run on the pool: the arguments are copied first. `op` names
 * which (read_stream, read_all, read_type, stream_info, list_streams,
 * snapshot_get, checkpoint_get, checkpoint_list, stats, limits,
 * read_records). form: how read_records answers. stream_info and
 * limits, a look-up each, are answered at once on the calling thread
 * instead. */
void cn_read_queue(caller *k, const esdb_proto_op *op, const arg *v, unsigned n,
                   cn_read_form form);

#endif
