/* raft3.h: raft alone, with a trivial FSM, as N processes on loopback.
 *
 * The baseline the cluster benchmarks are compared with (raft_bench.c) and
 * the harness of the tests that exercise raft itself (test/c/raft). Each
 * node is a forked process running one raft instance on its own libuv loop
 * with raft's uv I/O (segments on disk) and TCP transport on 127.0.0.1.
 * Whichever node is leader drives the load: it keeps `inflight` entries of
 * `entry_bytes` proposed for `seconds` (after `warmup_seconds`), then sends
 * its result to the parent and exits; the parent then stops the others.
 * Settings as REPLICATION.md: pre-vote on, raft_seed(random ^ id),
 * auto-recovery off, SIGPIPE ignored. */
#ifndef ESDB_RAFT3_H
#define ESDB_RAFT3_H

#include <stddef.h>

typedef struct raft3_opts {
	unsigned voters;               /* nodes, all voters */
	const char *dir;               /* parent of the nodes' directories */
	size_t entry_bytes;            /* a multiple of 8 */
	unsigned inflight;             /* entries proposed and not applied */
	unsigned max_inflight_entries; /* raft_set_max_inflight_entries; 0 keeps
	                                  raft's default */
	unsigned snapshot_threshold;
	unsigned snapshot_trailing;
	size_t snapshot_bytes; /* the FSM's snapshot size (at least 8) */
	double warmup_seconds;
	double seconds;
	double timeout_seconds; /* the whole run, parent side */
	/* When set, the run ends after this long whoever leads, with no
	 * leader's figures in the result (for tests that only watch the nodes
	 * survive: leader changes restart the leader's window). */
	double wall_seconds;
	/* Faults: every restart_every_ms a follower is killed (SIGKILL) and
	 * started again on its directory down_ms later, so that it is behind
	 * the leader's log and is sent a snapshot. 0: none. */
	unsigned restart_every_ms, down_ms;
} raft3_opts;

typedef struct raft3_result {
	unsigned long entries; /* applied in the measured window */
	double seconds;
	double p50_us, p99_us; /* propose -> applied on the leader */
	unsigned leader_id;
	/* Over all nodes: snapshots taken, snapshots installed (restores);
	 * followers restarted (restart_every_ms). */
	unsigned long snapshots, restores, restarts;
	unsigned long leaders; /* loads started: 1 + leader changes */
	/* Restarted nodes whose raft_start refused the data the kill left.
	 * Seen with 0.22.1: "last entry on disk has index A, which is behind
	 * last snapshot's index B" after a kill during a snapshot install.
	 * Counted, not a failure of the run: after one, nothing is restarted.
	 */
	unsigned long refused_starts;
} raft3_result;

/* Runs the cluster until the leader's result arrives. 0 and *res on
 * success; -1 with a message in err when a node died, a node failed to
 * start or the run timed out. Any node that died by a signal fails the
 * run, also after the leader's result (the nodes are checked before they
 * are stopped). */
int raft3_run(const raft3_opts *o, raft3_result *res, char *err, size_t cap);

#endif
