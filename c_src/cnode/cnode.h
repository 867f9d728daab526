/* cnode.h: the C node's shared state: one store served to BEAM nodes
 * over Erlang distribution (docs in README, "The C node"). */
#ifndef ESDB_CNODE_H
#define ESDB_CNODE_H

#include "esdb.h"

#include <ei.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The protocol version a client names in its hello. */
#define CN_PROTOCOL_VERSION 1

/* Events one read hands out at most (as the NIF's MAX_READ). */
#define CN_MAX_READ 10000

typedef struct cn_pool cn_pool;
typedef struct cn_sessions cn_sessions;
typedef struct cn_cluster cn_cluster;

/* The node and the store it serves by default; each further store is a
 * cn_server of its own (its store, lock, limits, sessions and name)
 * sharing the node's fields, chained from the first through
 * next_store. Connections hold the first. */
typedef struct cn_server {
	esdb_store *store;
	const char *store_name; /* what {at, Name, Request} names it by */
	const char *store_dir;
	cn_cluster
	    *cluster; /* the first store's replica (cluster.h), or NULL */
	struct cn_server *next_store;
	/* Held shared by every call into the store, exclusive by the
	 * shutdown that closes it: no call runs on a closed handle. */
	pthread_rwlock_t store_lock;
	bool closed;
	atomic_bool job_running;  /* a verify or backup (maintenance.c) */
	esdb_limits limits;       /* the store's, read at open */
	uint64_t frame_cap;       /* bytes: max_append_bytes + 1 MiB */
	unsigned idle_ms;         /* a connection silent this long is closed */
	unsigned max_inflight;    /* requests per connection not answered */
	uint64_t max_queue_bytes; /* replies queued per connection */
	unsigned max_conns;
	unsigned max_sessions; /* sessions per connection and store */
	unsigned max_subs;     /* their subscriptions, likewise */
	cn_sessions *sessions;
	ei_cnode ec;
	cn_pool *pool;
	atomic_uint conns;
	/* What was refused, logged when the node stops. */
	atomic_ulong dropped_msgs;  /* no caller to answer */
	atomic_ulong closed_frames; /* connections closed for a bad frame */
	atomic_ulong refused_handshakes;
} cn_server;

/* The store named name[0..len) among srv's, or NULL. */
cn_server *cn_store_find(cn_server *srv, const char *name, size_t len);

/* Log a line to stderr, prefixed with the program's name. */
void cn_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
