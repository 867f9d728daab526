/* peer_watch.h: tells a replica when a raft peer closes a connection it
 * opened to this node. Raft's TCP transport reads the connections its
 * peers open (a leader's AppendEntries arrive on the one the leader
 * opened) and drops a closed one without a word; a process that dies,
 * kill -9 included, has its sockets closed by the kernel, so the close is
 * the first sign that a leader is gone, long before an election timeout.
 * The watch wraps the transport's listen and each accepted connection's
 * read callback (public fields of raft_uv_transport and uv_stream_t);
 * raft's own handling of the connection is unchanged. Loop thread only. */
#ifndef ESDB_REPLICA_PEER_WATCH_H
#define ESDB_REPLICA_PEER_WATCH_H

#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>

/* id: the raft id the peer named in its handshake. */
typedef void (*esdb_peer_closed_cb)(void *ctx, uint64_t id);

typedef struct esdb_peer_watch {
	struct raft_uv_transport *t;
	int (*listen)(struct raft_uv_transport *t, raft_uv_accept_cb cb);
	raft_uv_accept_cb accept; /* raft's */
	esdb_peer_closed_cb closed;
	void *ctx;
	struct esdb_peer_watch *next;
} esdb_peer_watch;

/* Watch the connections peers open to transport t (initialized, before
 * raft_uv_init); closed(ctx, id) runs on t's loop when one ends. */
void esdb_peer_watch_start(esdb_peer_watch *w, struct raft_uv_transport *t,
                           esdb_peer_closed_cb closed, void *ctx);
/* Forget w and its connections: once raft's loop has ended. */
void esdb_peer_watch_stop(esdb_peer_watch *w);

#endif
