/* copies.h: store copies between C nodes (docs/CLUSTER.md, "Store
 * copies between C nodes"; docs/PROTOCOL.md).
 *
 * Serving (copy_serve.c, any store, raft or not): the requests
 *   {copy_open}                      -> {ok, Handle, Size, Crc32c}
 *   {copy_read, Handle, Offset, Len} -> {ok, Bytes} (at most 1 MiB;
 *                                       <<>> at or past the end)
 *   {copy_close, Handle}             -> ok
 * A copy is a consistent compacted copy of the store (esdb_store_copy)
 * in an unlinked file beside it: nothing is left on disk when its
 * connection closes, the C node dies, or copy_close. It belongs to the
 * connection that opened it (one per connection and store; another
 * connection's handle is {error, {invalid_copy, Handle}}); making one is
 * a job like backup (one per store at a time, else {error, overloaded}).
 *
 * Pulling (copy_pull.c, a replica's first store): a thread of its own
 * watches the replica and, when raft's marker snapshot passed its store
 * (esdb_replica_get_needs_copy), connects to the member C nodes it knows,
 * picks the one that applied most, pulls a copy in pieces into an
 * unlinked file, checks its size and CRC-32C, and restores it under the
 * open store (esdb_store_restore). Raft's loop is never held. The same
 * thread has the replica's record written once it has a leader
 * (cn_cluster_record_self). */
#ifndef ESDB_CNODE_COPIES_H
#define ESDB_CNODE_COPIES_H

#include "cnode.h"
#include "conn.h"
#include "envelope.h"
#include "ops.h"

/* Bytes one copy_read answers at most. */
#define CN_COPY_PIECE (1u << 20)

/* Whether a request's operation is a copy one (copy_*). */
bool cn_copy_is_request(const char *op);
/* Serve a copy_* request (after hello): answers k once. */
void cn_copy_request(caller *k, const cn_envelope *e, const char *m);
/* c closed: the copies it held, on any store, are let go. */
void cn_copy_conn_closed(cn_conn *c);

/* An unlinked file for a copy in directory dir, open read-write; -1 with
 * errno set. */
int cn_copy_tmpfile(const char *dir);

/* A checkpoint request to C node `node` (ec set up): checkpoint_put of
 * key with definition def, or checkpoint_get of key (def NULL). 1: it
 * answered ok (the get found it), 0: an error, -1: no answer. */
int cn_copy_call_checkpoint(ei_cnode *ec, const char *node, const char *key,
                            const char *def);

/* What a member C node says of its replica (its cluster_info). */
typedef struct cn_member_state {
	uint64_t id, applied;
	bool usable; /* no failure, not waiting for a copy itself */
} cn_member_state;

/* Ask C node `node` (ec set up) of its replica, as a client (connect,
 * hello, cluster_info), all within ms: 0 with *st set, -1 no answer. */
int cn_copy_ask_member(ei_cnode *ec, const char *node, unsigned ms,
                       cn_member_state *st);

/* One request to C node `node` as a client (connect, hello, Request
 * encoded by enc into x after {call, Self, Ref, ), all within ms; its
 * reply (checked by term_check.c) handed to take at m[at]. take's
 * return, or -1 with no answer. */
int cn_peer_call(ei_cnode *ec, const char *node, unsigned ms,
                 void (*enc)(ei_x_buff *, const void *), const void *ctx,
                 int (*take)(const char *m, int at, void *out), void *out);

/* Start the puller of srv's replica (srv->cluster), once srv->ec is set
 * up: `sources` (n of them) are the C node names asked for a copy, self
 * excluded. 0 or an errno value. */
int cn_copy_pull_start(cn_server *srv, const char *const *sources, unsigned n);

#endif
