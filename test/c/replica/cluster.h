/* cluster.h: replica processes for the tests. Each node is a process
 * (this binary exec'd, spawn.h) with its own store and raft over TCP on
 * loopback, driven by the test through a pipe; appends acknowledged by
 * any node are reported on one shared pipe, so what was acknowledged
 * outlives a kill -9. */
#ifndef ESDB_TEST_CLUSTER_H
#define ESDB_TEST_CLUSTER_H

#include "harness.h"

#include <pthread.h>
#include <sys/types.h>

#define CLUSTER_MAX 5

typedef struct node {
	uint64_t id;
	char dir[512];
	char address[32];
	char bind_address[32]; /* "" or where raft listens (behind a proxy) */
	pid_t pid;
	int cmd_fd, reply_fd;
	unsigned starts;
	unsigned entry_version;   /* 0, or propose entries of this version */
	unsigned command_version; /* 0, or commands of this version */
	bool paused;              /* SIGSTOPped: left out of the waits */
	bool excluded; /* removed from the cluster: left out of the checks */
	/* -1, or a socket bound (SO_REUSEADDR, not listening) to the port
	 * the node listens on while it is not running: no connection's
	 * ephemeral port can take it meanwhile (the node's raft bind then
	 * failed, EADDRINUSE, reported as an I/O error) */
	int hold_fd;
} node;

/* A leadership change as a node's callback saw it, with its term. */
typedef struct leader_report {
	uint64_t node, term, leader, self;
	uint64_t at_ms; /* CLOCK_MONOTONIC, the same in every process */
} leader_report;

/* One acknowledged append, as its node reported it. */
typedef struct ack {
	uint64_t n; /* the event's number (its id, make_id) */
	uint64_t position;
	uint64_t version;
	uint64_t node; /* | ACK_ERROR: an error, its code in version */
} ack;
#define ACK_ERROR (1ull << 63)

typedef struct node_info {
	int failed;
	int is_leader;
	uint64_t leader_id;
	uint64_t events;  /* the store's last position */
	uint64_t applied; /* the replica's applied raft index */
	int rc;           /* of an append or a membership call */
	int store_failed; /* esdb_store_get_failure */
	uint64_t position, version;
	uint64_t unknown;       /* appends answered outcome_unknown */
	uint64_t leader_events; /* leadership changes the callback saw */
	uint64_t term;          /* the raft term the node is in */
	char failure[160];
} node_info;

typedef struct cluster {
	int n;
	node nodes[CLUSTER_MAX];
	int n_boot; /* nodes 0..n_boot-1 bootstrap the cluster (default n) */
	unsigned election_ms, heartbeat_ms, snapshot_threshold;
	unsigned apply_delay_us; /* the writers' injected delay */
	int durability; /* the stores' (cluster_init: ESDB_DURABILITY_NOSYNC) */
	/* node_writers' appends: events per append (0: 1, at most 100) and
	 * each event's data (NULL: "data"). For the benchmarks. */
	unsigned batch;
	const char *event_data;
	int ack_r, ack_w;
	int report_fd; /* -1, or where nodes write their leader_reports */
	pthread_t ack_reader;
	pthread_mutex_t lock;
	ack *acks;
	size_t n_acks, cap_acks;
} cluster;

/* n nodes with fresh directories and free loopback ports, not started. */
void cluster_init(cluster *c, int n);
/* Start node i (again, after a kill: same directory and id). REQUIREs
 * that its store opened. */
void node_start(cluster *c, int i);
void node_kill(cluster *c, int i);
/* Close its store and let it exit; REQUIREs a clean exit. */
void node_stop(cluster *c, int i);
bool node_alive(cluster *c, int i);
/* SIGSTOP / SIGCONT node i. */
void node_pause(cluster *c, int i, bool paused);
void node_get_info(cluster *c, int i, node_info *out);
/* Append one event numbered n to `stream` on node i. */
void node_append(cluster *c, int i, const char *stream, uint64_t n,
                 node_info *out);
/* node_append fenced to raft term `term` (esdb_replica_fence_term). */
void node_append_in_term(cluster *c, int i, const char *stream, uint64_t n,
                         uint64_t term, node_info *out);
/* Start or stop `threads` writers looping appends on node i (they
 * report every acknowledged append). */
void node_writers(cluster *c, int i, unsigned threads);
/* Node i's store fails its next transaction with errno err. */
void node_fail_next_apply(cluster *c, int i, int err);
/* The same with writers that append at exact versions, retrying an
 * unknown outcome with the same event until it is in. */
void node_writers_retrying(cluster *c, int i, unsigned threads);
/* The same with async clients (esdb_store_submit, the next append sent
 * from the completion callback) instead of threads; 0 stops them. */
void node_writers_async(cluster *c, int i, unsigned clients);
/* Node i's writer waits `us` before each transaction from now on. */
void node_set_apply_delay(cluster *c, int i, unsigned us);
/* Raft's next log write on node i completes with an error. */
void node_fail_log_write(cluster *c, int i);
/* Node i's next proposal fails in raft after raft's log took it (an
 * allocation raft's io append makes fails). */
void node_fail_after_growth(cluster *c, int i);
/* Submit an append whose checksum is wrong on node i. */
void node_append_corrupt(cluster *c, int i, node_info *out);
/* Membership calls on node i (esdb_replica_add/assign/remove/transfer);
 * the rc in out->rc. */
void node_member_add(cluster *c, int i, int member, node_info *out);
void node_member_assign(cluster *c, int i, int member, int role,
                        node_info *out);
void node_member_remove(cluster *c, int i, int member, node_info *out);
void node_transfer(cluster *c, int i, int member, node_info *out);
/* The node leading, -1 after timeout_ms without one all live nodes
 * agree on. */
int cluster_wait_leader(cluster *c, unsigned timeout_ms);
/* Append a fence event on the leader and wait until every live node
 * holds it (and so everything committed before it); false after
 * timeout_ms. */
bool cluster_wait_converged(cluster *c, unsigned timeout_ms);
size_t cluster_acks(cluster *c);
/* Start every node of c (set up by cluster_init and any settings) and
 * wait up to 20 s for a leader (REQUIREd); the leader's index. */
int cluster_start_all(cluster *c);
/* Wait up to 10 s for node i to stop (info.failed set); its last info
 * in out either way. */
void node_wait_failed(cluster *c, int i, node_info *out);
/* Wait up to 10 s for `more` acknowledgements past those counted now;
 * whether they came. */
bool cluster_wait_acks(cluster *c, size_t more);
/* Stop every live node, then open each store read-only and check they
 * hold the same events at the same positions and versions, gap-free,
 * and every acknowledged append at the position it was acknowledged
 * with. Frees the cluster. */
void cluster_check_and_free(cluster *c);

#endif
