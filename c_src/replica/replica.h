/* replica.h: a store replicated by raft (cowsql/raft 0.22.1 over TCP).
 *
 * A replica is the store's second commit path (c_src/core/commit.h): a
 * command submitted on the leader waits in a queue; the commands queued
 * while the previous raft entry was in flight travel as one entry (group
 * commit, entry.h); once a quorum has the entry, every replica hands it
 * with its raft index to its writer thread, which applies many entries in
 * one LMDB transaction (esdb_store_apply_at) and records the applied
 * index in it. A caller's result comes from that apply, on the node it
 * submitted to. Each store has one libuv thread that makes every raft_*
 * call; other threads reach it through a queue and uv_async_send.
 *
 * Raft traffic is neither authenticated nor encrypted: bind it to
 * loopback (the default) or a private network.
 *
 * Files: the raft log, its metadata and snapshots in <dir>/raft/, the
 * node's id in <dir>/raft/node_id (a store answers to one id for life).
 *
 * Snapshots are markers (the store's applied index): raft never copies
 * the store. A snapshot is taken only once the writer has applied and
 * committed every entry up to it and the store is flushed
 * (esdb_store_sync, on the writer's thread), so raft's snapshot index
 * never passes the store's durably applied index. The raft loop waits for
 * that at most one heartbeat interval; a writer or disk slower than that
 * puts the snapshot off to a later commit (heartbeats go on). The store may
 * thus use one flush per commit (ESDB_DURABILITY_NO_META_SYNC): a power loss
 * can roll back its last commits, which raft's log, on a quorum's disks, still
 * holds. ESDB_DURABILITY_NOSYNC can tear the store on a power loss: tests only.
 * A member that needs entries raft no longer keeps must receive a copy of the
 * store out of band (esdb_store_copy): raft installs the leader's marker
 * and goes on (this node keeps its log, term and vote; the loop is not
 * held) while the writer holds the entries after it, until a copy
 * holding at least the marker's index replaces the store
 * (esdb_store_restore, which the replica takes only then;
 * esdb_replica_get_needs_copy says which index it needs). The writer goes
 * on from the copy's index. Meanwhile it refuses writes and does not
 * lead while another voter can: it campaigns only after 3 to 4 election
 * timeouts without a leader, and leading all the same (only its log was
 * up to date enough, or a transfer named it) it hands leadership to a
 * voter holding its whole log as soon as one does. A joiner (no members given)
 * may also open a store holding such a copy. The bindings' cluster mode moves
 * copies (ExESDB.Cluster.Seeding, over BEAM distribution).
 *
 * Fail-stop: when the writer cannot apply a committed entry for a reason
 * of this node (EIO, ENOSPC, a map that cannot grow) or an entry carries a
 * format version this code does not know, the replica stops taking part
 * in raft and answers every write with the reason (ESDB_ESTORE_FAILED,
 * ESDB_EFORMAT); it never skips an entry. Restarting the process retries
 * from the last applied index. Raft's own log fails the same way: a log
 * write that fails (raft 0.22.1 drops its status), or a proposal raft
 * took into its log before an io step failed, leaves raft's log in
 * memory and on disk apart; the replica stops (ESDB_ESTORE_FAILED) and a
 * restart reads the log from disk.
 */
#ifndef ESDB_REPLICA_H
#define ESDB_REPLICA_H

#include "esdb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct esdb_replica esdb_replica;

/* A member of the raft configuration. */
typedef struct esdb_replica_member {
	uint64_t id;         /* nonzero, unique in the cluster */
	const char *address; /* "ip:port" its raft listens on */
} esdb_replica_member;

/* Member roles (raft's). */
#define ESDB_REPLICA_STANDBY 0 /* gets the log, does not vote */
#define ESDB_REPLICA_VOTER   1
#define ESDB_REPLICA_SPARE   2 /* neither */

/* Called on the replica's loop thread on every change of the leader this
 * node knows, and when this node leads again in a new term (the same
 * leader_id): leader_id 0 (address NULL) while none is known; `self`
 * when this node became the leader. Keep it short; it must not call the
 * replica (esdb_replica_get_term excepted). */
typedef void (*esdb_replica_leader_fn)(void *ctx, uint64_t leader_id,
                                       const char *address, bool self);

/* Defaults of the options below. */
#define ESDB_REPLICA_ELECTION_TIMEOUT_MS 1000
#define ESDB_REPLICA_HEARTBEAT_MS        100
#define ESDB_REPLICA_SNAPSHOT_THRESHOLD  16384
#define ESDB_REPLICA_TRAILING_BYTES      (1ull << 30)
#define ESDB_REPLICA_MAX_ENTRY_BYTES     (1u << 20)
#define ESDB_REPLICA_MAX_INFLIGHT        1024
#define ESDB_REPLICA_QUEUE_BYTES         (256ull << 20)

typedef struct esdb_replica_config {
	/* This node's id (nonzero; 0: the one in <dir>/raft/node_id). */
	uint64_t id;
	/* "ip:port" other members reach this node at. */
	const char *address;
	/* "ip:port" to listen on (NULL: address). Same port as address. */
	const char *bind_address;
	/* The store's directory (the one given to esdb_store_open). */
	const char *dir;
	/* The initial configuration, all voters, this node among them:
	 * written once into a pristine raft log (every member given the
	 * same list forms one cluster); ignored when the log has state.
	 * NULL/0: join an existing cluster (added by its leader). */
	const esdb_replica_member *members;
	size_t n_members;
	/* Raft timing; 0 takes the default above. A follower that hears
	 * no leader for a random time between 1 and 2 election timeouts
	 * starts an election (with pre-vote, which keeps a node coming back
	 * from a partition from deposing a healthy leader). */
	unsigned election_timeout_ms;
	unsigned heartbeat_ms;
	/* Entries between snapshots (0: 16,384; fewer is for tests: each
	 * snapshot closes raft's open segment) and the byte budget of the
	 * entries kept after one for lagging followers (0: 1 GiB; divided
	 * by max_entry_bytes, at least 128 entries). Raft 0.22 keeps the
	 * entries since the last snapshot in memory too: up to
	 * (threshold + trailing) entries, each up to max_entry_bytes. */
	unsigned snapshot_threshold;
	uint64_t trailing_bytes;
	/* Bytes of commands one entry carries (0: 1 MiB; a larger command
	 * travels alone). */
	size_t max_entry_bytes;
	/* Entries the leader sends a follower before hearing back (0:
	 * 1024; raft's own default of 32 caps throughput). */
	unsigned max_inflight_entries;
	/* Bytes of commands waiting for the next entry (0: 256 MiB);
	 * beyond it submits answer ESDB_EOVERLOADED. */
	uint64_t max_queue_bytes;
	esdb_replica_leader_fn on_leader;
	void *on_leader_ctx;
} esdb_replica_config;

/* Make `s` (created, not yet open) a replica: its commit path becomes the
 * raft proposer. Raft starts in esdb_store_open (joining or bootstrapping
 * the cluster) and stops in esdb_store_close, which also frees the
 * replica: *out is valid from here until esdb_store_close. Strings in
 * cfg are copied. Ignores SIGPIPE for the process (a peer closing its
 * socket must not kill it). Errors: ESDB_EINVAL (no address or dir, bad
 * members), ESDB_EBUSY (store open), ENOMEM. */
int esdb_replica_create(esdb_store *s, const esdb_replica_config *cfg,
                        esdb_replica **out);

/* This node's id (after esdb_store_open: also when read from node_id). */
uint64_t esdb_replica_get_id(esdb_replica *r);

/* The leader this node knows: *id 0 when none; address copied into
 * `address` (may be NULL) of `len` bytes, NUL-terminated. Any thread. */
int esdb_replica_get_leader(esdb_replica *r, uint64_t *id, char *address,
                            size_t len);

/* The raft term this node is in, as of the loop's last iteration (0
 * before it starts). Any thread; also from on_leader, where it is the
 * term of the change reported. */
uint64_t esdb_replica_get_term(esdb_replica *r);

/* Fence the calling thread's next commands (esdb_store_submit and what
 * calls it, on any replica's store) to raft term `term`: one is queued
 * only while its node leads in that term, checked under the lock that
 * queues it, else answered ESDB_ENOT_LEADER and never proposed. 0 lifts
 * the fence. A term checked first and a command queued after could be
 * proposed in a later term this node leads again, after its client gave
 * it up and sent it again elsewhere (the C node's in_term). */
void esdb_replica_fence_term(uint64_t term);

/* Whether this node is the leader now. Any thread. */
bool esdb_replica_is_leader(esdb_replica *r);

/* The last raft index the writer applied and committed to the store. */
uint64_t esdb_replica_get_applied(esdb_replica *r);

/* Raft's progress as the loop saw it after its last iteration, for
 * samplers (issue 14's stall hunt): commit and last log index, the index
 * applied to the store, and when the loop last ran (esdb_clock_get_us;
 * it runs at least every heartbeat, so an old loop_us is a loop held).
 * The loop thread is named "esdb-raft", the writer "esdb-writer" (in
 * /proc/<pid>/task/<tid>/comm). Any thread. */
typedef struct esdb_replica_progress {
	uint64_t commit, last_index, applied, loop_us;
} esdb_replica_progress;
void esdb_replica_get_progress(esdb_replica *r, esdb_replica_progress *out);

/* 0 while the replica runs; after a fail-stop the reason (its code) and,
 * when msg is not NULL, a sentence saying what happened. */
int esdb_replica_get_failure(esdb_replica *r, char *msg, size_t len);

/* 0, or the store index a snapshot from the leader needs this store to
 * hold: the replica waits for a copy of a member's store holding at least
 * that much, put in with esdb_store_restore (refused otherwise under a
 * replica). Any thread. */
uint64_t esdb_replica_get_needs_copy(esdb_replica *r);

/* A member as this node's raft configuration has it. */
typedef struct esdb_replica_member_info {
	uint64_t id;
	int role; /* ESDB_REPLICA_VOTER, _STANDBY or _SPARE */
	char address[256];
} esdb_replica_member_info;

/* The members of the latest configuration this node knows (it may not be
 * committed yet): up to `cap` copied into out, *n set to how many there
 * are. Runs on the replica's loop (waits for it). Errors: ESDB_ECLOSED,
 * the fail-stop reason. */
int esdb_replica_get_members(esdb_replica *r, esdb_replica_member_info *out,
                             size_t cap, size_t *n);

/* Membership, on the leader (else ESDB_ENOT_LEADER). Each waits until the
 * change is committed. A member joins as a spare (add), is assigned
 * standby to receive the log and voter once caught up (assign; raft
 * catches a new voter up before the change). Errors: ESDB_ENOT_LEADER,
 * ESDB_EINVAL (unknown or duplicate id/address, bad role), ESDB_EBUSY
 * (another change in progress), ESDB_EOUTCOME_UNKNOWN (leadership lost
 * meanwhile), ESDB_ECLOSED. */
int esdb_replica_add(esdb_replica *r, uint64_t id, const char *address);
int esdb_replica_assign(esdb_replica *r, uint64_t id, int role);
int esdb_replica_remove(esdb_replica *r, uint64_t id);

/* Hand leadership to voter `id` (0: the most up-to-date voter), for a
 * planned stop. Returns once another node leads (0) or after an election
 * timeout without one (ETIMEDOUT). Errors as above. */
int esdb_replica_transfer(esdb_replica *r, uint64_t id);

/* Keep r from being freed while a call runs without the binding's own
 * lock: a binding that keeps esdb_store_close from running under its
 * calls (the NIF's store lock) holds the replica under that lock, drops
 * the lock for a call that waits on raft (the membership calls, members,
 * transfer: a voter's catch-up takes seconds), and releases after. A
 * close meanwhile answers those calls ESDB_ECLOSED (or what raft says of
 * a change it abandons) and waits for every release. */
void esdb_replica_hold(esdb_replica *r);
void esdb_replica_release(esdb_replica *r);

#ifdef __cplusplus
}
#endif
#endif
