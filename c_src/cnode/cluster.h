/* cluster.h: the C node's store as a raft replica (c_src/replica), set
 * up from --raft-* options; its followers name the leader by its C node
 * name in {error, {not_leader, Name | nil}}. Built with the replica when
 * raft is (the Makefile defines ESDB_CNODE_CLUSTER); otherwise the
 * options are refused and cluster_* requests answer
 * {error, {no_cluster_support, Why}}. */
#ifndef ESDB_CNODE_CLUSTER_H
#define ESDB_CNODE_CLUSTER_H

#include "cnode.h"

#include <ei.h>
#include <stdbool.h>
#include <stdint.h>

/* Members a C node may be told of by --raft-member. */
#define CN_CLUSTER_MAX_MEMBERS 16

/* A member: raft id, raft address, C node name. */
typedef struct cn_cluster_member {
	uint64_t id;
	const char *address;
	const char *cnode;
} cn_cluster_member;

/* The --raft-* options. */
typedef struct cn_cluster_opts {
	uint64_t id; /* 0: not a replica */
	const char *address, *bind;
	cn_cluster_member members[CN_CLUSTER_MAX_MEMBERS];
	unsigned n_members;
	unsigned long long election_ms, heartbeat_ms, snapshot_threshold;
	unsigned long long trailing_bytes;
	/* --raft-copy-from NAME@HOST: C nodes asked for a store copy besides
	 * the --raft-member ones (a member added at run time has none) */
	const char *copy_from[CN_CLUSTER_MAX_MEMBERS];
	unsigned n_copy_from;
	/* --raft-wiped rejoin (default refuse): a replica whose data
	 * directory was lost comes back as a new member (rejoin.c) */
	bool wiped_rejoin;
} cn_cluster_opts;

/* Whether flag (with value v) is a --raft-* option, taken into o. Exits
 * with a usage line on a bad value. */
bool cn_cluster_arg(cn_cluster_opts *o, const char *flag, const char *v);

/* Make srv's store (created, not open) a replica. 0 or an esdb code. */
int cn_cluster_setup(cn_server *srv, const cn_cluster_opts *o,
                     const char *self_name);

/* Start what runs beside srv's replica once srv->ec is set up: the
 * puller of store copies (copies.h). 0 or an errno value. */
int cn_cluster_start(cn_server *srv);

/* The store index raft's snapshot needs srv's store to hold before the
 * replica goes on (0: none): esdb_replica_get_needs_copy. Under the
 * store's lock. */
uint64_t cn_cluster_needs_copy(cn_server *srv);

/* The C node names of members replicated in srv's store (cluster.c,
 * "ex_esdb:cnode:<id>"), this node's left out, each once, of the
 * members in raft's configuration (every record when raft cannot say):
 * up to cap into out, how many returned. Under the store's lock. */
unsigned cn_cluster_stored_names(cn_server *srv, char (*out)[MAXATOMLEN],
                                 unsigned cap);

/* Exit status of a C node that refuses to start as the voter it was
 * (cn_cluster_guard_wiped). */
#define CN_EXIT_WAS_MEMBER 3

/* Exit status of a C node replica whose store directory holds the raft
 * state of another --raft-member than its --raft-id (raft/node_id):
 * another member's store, or a member list whose order changed (ids
 * number it). Started again it would refuse again. */
#define CN_EXIT_NOT_ITS_STORE 4

/* A replica started with --raft-member and no raft state in its store
 * directory (raft/node_id): when another member answers that it holds
 * this id's record (cn_cluster_record_self), the data directory was lost
 * and this node must not come back as that voter (an empty log and term:
 * it could vote twice in a term and be counted for commits it no longer
 * holds): it says so on stderr and exits CN_EXIT_WAS_MEMBER, or, with
 * --raft-wiped rejoin, returns true (it is to come back as a new member,
 * rejoin.c). Members that do not answer are not waited for
 * (docs/CLUSTER.md). srv->ec set up and srv->store_dir set. */
bool cn_cluster_guard_wiped(cn_server *srv, const cn_cluster_opts *o,
                            const char *self_name);

/* ---- rejoin.c: a wiped replica back as a new member ---------------- */

/* A new raft id for a member coming back (random, never 0). */
uint64_t cn_rejoin_new_id(void);

/* The raft id kept in srv's store directory (raft/node_id), or 0. */
uint64_t cn_rejoin_stored_id(const char *store_dir);

/* Whether a member of the cluster, as C node `member` lists them, is
 * recorded under C node name self (its record "ex_esdb:cnode:<id>"
 * there): 1 yes (its id into *id), 0 no, -1 no answer. A replica back
 * under a new id (a rejoin) is recorded so, its --raft-id no longer. */
int cn_rejoin_recorded_as(ei_cnode *ec, const char *member, const char *self,
                          uint64_t *id);

/* What a replica back as a new member asks of the cluster. */
typedef struct cn_rejoin {
	uint64_t old_id, id; /* --raft-id, and the id it runs as */
	const char *address, *self;
	const char *const *sources; /* member C nodes to ask */
	unsigned n_sources;
} cn_rejoin;

/* Start the thread that, until this replica is a voter under id
 * r->id, asks the leader (through any member C node) to remove r->old_id
 * and any other member recorded under this C node's name, to add r->id
 * (named, a spare), to make it a standby, and, once this replica holds a
 * store (a copy installed if one was needed, something applied), a
 * voter. 0 or an errno
 * value. r is copied. */
int cn_rejoin_start(cn_server *srv, const cn_rejoin *r);

/* This replica's applied index (0 without one). Under the store's
 * lock. */
uint64_t cn_cluster_applied(cn_server *srv);

/* Whether srv's replica failed (fail-stop, esdb_replica_get_failure):
 * its store applies nothing more, so what it holds may be stale. false
 * without a replica. Takes the store's lock. */
bool cn_cluster_failed(cn_server *srv);

/* This member's record, the checkpoint "ex_esdb:cnode:<id>" naming its C
 * node (key into key): 0 it is in srv's store (or was written now, this
 * node leading); 1 the leader is another, its C node name into leader
 * (MAXATOMLEN) and this node's into *self, for the caller to ask it to
 * write it; -1 not yet (no leader known, closed, a failure). */
int cn_cluster_record_self(cn_server *srv, char *key, size_t key_size,
                           const char **self, char *leader);

/* {error, {not_leader, Name | nil}}: the leader srv's replica knows, by
 * the C node name its member was given under. */
void cn_cluster_encode_not_leader(cn_server *srv, ei_x_buff *x);

/* Whether srv's replica is in raft term `term` now (false without a
 * replica, or built without raft). Under the store's lock. */
bool cn_cluster_in_term(cn_server *srv, uint64_t term);

/* Whether srv's replica leads now, its raft term into *term (false
 * without a replica, or built without raft). Under the store's lock. */
bool cn_cluster_leading(cn_server *srv, uint64_t *term);

/* Fence the calling thread's next submissions to raft term `term` (0:
 * lift it; esdb_replica_fence_term): queued only while the replica
 * leads in that term, checked where it queues them. */
void cn_cluster_fence_term(uint64_t term);

#endif
