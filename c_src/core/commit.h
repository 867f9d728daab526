/* commit.h: the commit path, how a command reaches the log, learns that it
 * is committed and is applied to the store (no LMDB, libuv or raft types).
 *
 * esdb_store_submit hands each command to the store's commit path. The path
 * puts it in its log and, once the log has committed it, applies it with
 * esdb_store_apply at its log index (many per call: one LMDB transaction) and
 * answers its caller with esdb_commit_answer. In the spirit of
 * canonical/raft's struct raft_io, the core only sees the function
 * pointers below; the implementation keeps its state behind `impl`.
 *
 * Implementations: the local group-commit writer (writer.c, the default:
 * the store itself is the log, committed when its transaction is) and,
 * outside c_src/core, the raft proposer (committed by a quorum, applied on
 * every replica). A path is set with esdb_store_set_commit_path before
 * esdb_store_open.
 */
#ifndef ESDB_COMMIT_H
#define ESDB_COMMIT_H

#include "esdb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One submitted command on its way. esdb_store_submit allocates it and fills
 * cmd, done and ctx; esdb_commit_answer frees it. `next` and `index`
 * belong to the path (its queue, the log index it gave the command). */
typedef struct esdb_commit_req {
	struct esdb_commit_req *next;
	uint64_t index;
	esdb_cmd cmd;
	esdb_result_fn done;
	void *ctx;
} esdb_commit_req;

typedef struct esdb_commit_path esdb_commit_path;
struct esdb_commit_path {
	void *impl;       /* the implementation's state */
	const char *name; /* "local", "raft", ...: for logs and tests */
	/* Applied on other nodes too: the store refuses node-local limits
	 * (they would change its results; the log's LIMITS_SET does). */
	bool replicated;

	/* Called by esdb_store_open once the store is open for writing (its
	 * applied index readable, esdb_store_apply callable), before any
	 * submit. Returns 0 or an error that fails the open (after which `stop`
	 * is not called). */
	int (*start)(esdb_commit_path *cp, esdb_store *s);

	/* Take one command, from any thread. Returns 0 when taken: from
	 * then on the path owns req and answers it exactly once, through
	 * esdb_commit_answer, usually after esdb_store_apply gave its result.
	 * Otherwise returns why not (ESDB_EOVERLOADED, ESDB_ECLOSED,
	 * {not leader}, ...) and leaves req alone: the core answers it with
	 * that error on the calling thread. Must not call `done` itself. */
	int (*submit)(esdb_commit_path *cp, esdb_commit_req *req);

	/* Withdraw the first command not yet in the log whose ctx `match`
	 * accepts (match runs under the path's lock and must not call the
	 * store). Returns 0 with *out set when withdrawn (the core answers it
	 * ETIMEDOUT; it is never applied), ESDB_ENOTFOUND when none can be.
	 * NULL: nothing can be withdrawn. */
	int (*cancel)(esdb_commit_path *cp, bool (*match)(void *ctx, void *arg),
	              void *arg, esdb_commit_req **out);

	/* Called by esdb_store_restore after the store was replaced by a
	 * copy whose applied index is `applied`, before any command is
	 * applied to it: a path that numbers commands goes on after that
	 * index. Runs with the apply lock held: must not call esdb_store_apply.
	 * NULL: nothing to do (the local writer numbers from the store). */
	void (*restored)(esdb_commit_path *cp, uint64_t applied);

	/* Whether a replicated path takes esdb_store_restore now (it refuses
	 * otherwise: a copy put in behind the log's back diverges): a replica
	 * waiting for a copy of a member's store does. NULL: never. */
	bool (*may_restore)(esdb_commit_path *cp);

	/* Called by esdb_store_close: answer everything still pending
	 * (ESDB_ECLOSED for what never reached the log,
	 * ESDB_EOUTCOME_UNKNOWN for what did but was not applied) and
	 * return when no thread of the path touches the store any more. */
	void (*stop)(esdb_commit_path *cp);

	/* Free impl. Called once, after stop (or when start failed, or by
	 * esdb_store_close for a path that was never started). */
	void (*close)(esdb_commit_path *cp);
};

/* Commit commands through `cp` instead of the local writer. The store
 * takes *cp over (copied; cp->close runs in esdb_store_close). Before
 * esdb_store_open only. Errors: ESDB_EINVAL (no submit or stop; a
 * replicated path on a store given limits),
 * ESDB_EBUSY. */
int esdb_store_set_commit_path(esdb_store *s, const esdb_commit_path *cp);

/* The name of the store's commit path ("local" by default). */
const char *esdb_commit_path_name(const esdb_store *s);

/* Answer a request with its result and free it (and its command). Runs
 * `done` on the calling thread; call it without the path's locks held. */
void esdb_commit_answer(esdb_commit_req *req, const esdb_result *res);

/* The default path: the local group-commit writer (writer.c). Fills *cp;
 * the writer's queue is bounded by esdb_store_set_queue_bytes. */
int esdb_commit_path_init_local(esdb_commit_path *cp);

#ifdef __cplusplus
}
#endif
#endif
