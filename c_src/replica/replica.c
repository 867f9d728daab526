/* replica.c: the raft commit path (replica.h). Three threads touch a
 * replica: callers (submit, cancel, the getters, membership calls), the
 * loop thread (every raft_* call, the proposer and the FSM callbacks) and
 * the writer (applies committed entries to the store, answers callers). */
#include "replica.h"

#include "bytes.h"
#include "commit.h"
#include "entry.h"
#include "peer_watch.h"
#include "stage_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <raft.h>
#include <raft/uv.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define ADDRESS_MAX 256
/* Entries one writer transaction takes at most. */
#define WRITER_BATCH_ENTRIES 256
/* Entries the proposer keeps in flight: the next one packs what queued
 * meanwhile (group commit per entry). It is proposed only once the last
 * one this node proposed is applied and its callers answered (unless a
 * whole entry's worth waits): every entry costs a raft log fsync on each
 * node and a store flush on each node's writer, about the same for 1 or
 * 64 commands, so entries are made as full as the callers allow.
 * Overlapping the next raft round with the writer's commit split the
 * callers into groups that each paid both (docs/PERFORMANCE.md, "Where
 * a cluster append's time goes"). */
#define PROPOSE_INFLIGHT 1
/* How long the next entry waits at most for the callers just answered
 * to send their next commands (callers that are threads need a moment
 * to run; async callers send from their answer, before it ends). */
#define GATHER_MS 1

/* Fault injection for the tests (test/c/replica), 0 otherwise: the writer
 * sleeps this long before each transaction (widening the window between
 * raft's apply and the store's commit); entries are proposed with this
 * format version instead of ours (a node of a newer version). */
unsigned esdb__replica_apply_delay_us;
unsigned esdb__replica_entry_version;
unsigned esdb__replica_command_version;
/* Also for the tests: nonzero, the next raft_apply fails after raft's
 * log took the entry (see failing_heap); the next log write of raft is
 * reported failed (see log_write_done). */
unsigned esdb__replica_fail_after_growth;
unsigned esdb__replica_fail_log_write;

/* One proposed entry: the callers waiting for it and raft's request. */
typedef struct proposal {
	struct proposal *next;
	uint64_t seq;
	esdb_commit_req *reqs; /* in command order; NULL once answered */
	size_t n;
	int refs; /* raft's callback and the answer each drop one */
	struct raft_apply apply;
	esdb_replica *r;
	uint64_t t_submit, t_propose; /* stage_trace, µs */
} proposal;

/* A committed entry handed to the writer (a copy of raft's buffer). */
typedef struct committed {
	struct committed *next;
	uint64_t index;
	uint64_t t_commit; /* stage_trace, µs */
	size_t len;
	uint8_t buf[];
} committed;

/* A membership change or transfer waiting for the loop. */
typedef enum {
	CTL_ADD,
	CTL_ASSIGN,
	CTL_REMOVE,
	CTL_TRANSFER,
	CTL_MEMBERS
} ctl_kind;
typedef struct ctl {
	struct ctl *next;
	ctl_kind kind;
	uint64_t id;
	int role;
	const char *address;
	int rc;
	bool done;
	struct raft_change change;
	struct raft_transfer transfer;
	esdb_replica *r;
	/* CTL_MEMBERS: where the configuration is copied */
	esdb_replica_member_info *members;
	size_t cap, *n;
} ctl;

struct esdb_replica {
	/* fixed at create / start */
	esdb_replica_config cfg;
	char *address, *bind_address, *dir, *raft_dir;
	esdb_replica_member *members;
	uint64_t id;
	uint64_t proposer;    /* random per start: names our entries */
	uint64_t store_index; /* the store's applied index at start */
	esdb_store *s;

	/* loop thread only */
	uv_loop_t loop;
	uv_async_t wake;
	uv_check_t check;
	uv_timer_t gather; /* propose's wait for the callers answered */
	bool gather_expired;
	struct raft raft;
	struct raft_io io;
	struct raft_uv_transport transport;
	esdb_peer_watch peer_watch;
	bool peer_watch_started;
	struct raft_fsm fsm;
	bool raft_closing, loop_inited, io_inited, transport_inited,
	    raft_inited;
	unsigned inflight;
	uint64_t next_seq;
	uint64_t handed; /* last raft index handed to the writer */
	/* leading while waiting for a copy: leadership handed on (one
	 * raft_transfer at a time) */
	struct raft_transfer hand_over;
	bool handing_over;
	uint64_t led_by;    /* the last other leader seen (hand_over) */
	uint64_t led_since; /* loop time this node last became leader */
	pthread_t thread;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* start result, ctl done, writer progress */
	int start_rc;
	bool started;
	bool stopping;
	bool wake_open; /* the loop's async handle may be signalled */
	unsigned holds; /* esdb_replica_hold: path_stop waits for none */
	/* submitted, not yet proposed */
	esdb_commit_req *in_head, *in_tail;
	uint64_t in_bytes;
	size_t in_count;
	/* commands the writer last answered: the next entry waits for as
	 * many to queue, or for the gather timer (propose) */
	size_t gather_want;
	ctl *ctl_head;
	proposal *proposals;
	unsigned answering; /* proposals the writer is answering */
	/* what the loop last saw */
	bool leader;
	uint64_t leader_id;
	uint64_t term;
	uint64_t commit, last_index, loop_us; /* esdb_replica_get_progress */
	char leader_address[ADDRESS_MAX];
	/* fail-stop */
	int failed;
	char failure[256];
	uint64_t needs_copy; /* store index a snapshot needed, 0: none */
	/* the writer */
	pthread_t writer;
	pthread_cond_t writer_cond;
	committed *c_head, *c_tail;
	bool writer_stop;
	uint64_t applied; /* raft index applied and committed */
	/* fsm_snapshot's request: flush the store once applied reaches
	 * sync_want; synced: the raft index the store last flushed at */
	uint64_t sync_want, synced;
	/* raft_uv's append, wrapped by log_append */
	int (*uv_append)(struct raft_io *io, struct raft_io_append *req,
	                 const struct raft_entry entries[], unsigned n,
	                 raft_io_append_cb cb);
	/* ESDB_REPLICA_TRACE: per-stage samples; NULL when off */
	esdb_stage_trace *trace;
	uint64_t in_first_us;       /* lock: the queue's oldest submit */
	uint64_t t_pick, t_applied; /* writer: its current batch */
	uint64_t t_answered;        /* lock: the last answer's end */
};

/* ---- small helpers ---------------------------------------------------- */

/* What a failed raft log write names as the store's failure: a full
 * disk as such, anything else as an I/O error. */
static int log_failure_cause(int rv)
{
	return rv == RAFT_NOSPACE ? ESDB_EDISK_FULL : EIO;
}

static int raft_rc(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case RAFT_NOMEM:
		return ENOMEM;
	case RAFT_NOTLEADER:
		return ESDB_ENOT_LEADER;
	case RAFT_LEADERSHIPLOST:
		return ESDB_EOUTCOME_UNKNOWN;
	case RAFT_SHUTDOWN:
	case RAFT_CANCELED:
		return ESDB_ECLOSED;
	case RAFT_BADID:
	case RAFT_DUPLICATEID:
	case RAFT_DUPLICATEADDRESS:
	case RAFT_BADROLE:
	case RAFT_INVALID:
	case RAFT_MALFORMED:
		return ESDB_EINVAL;
	case RAFT_CANTCHANGE:
	case RAFT_BUSY:
		return ESDB_EBUSY;
	case RAFT_NOTFOUND:
		return ESDB_ENOTFOUND;
	case RAFT_NOSPACE:
		return ENOSPC;
	case RAFT_CORRUPT:
		return ESDB_ECORRUPT;
	default:
		return EIO;
	}
}

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void answer_all(esdb_commit_req *r, int rc)
{
	while (r) {
		esdb_commit_req *next = r->next;
		esdb_result res = {.rc = rc};
		esdb_commit_answer(r, &res);
		r = next;
	}
}

/* Stop for good: record why (the first reason wins) and wake the loop,
 * which leaves raft. Callable from any thread, lock not held. */
static void fail_stop(esdb_replica *r, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_stop(esdb_replica *r, int rc, const char *fmt, ...)
{
	pthread_mutex_lock(&r->lock);
	if (!r->failed) {
		r->failed = rc;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->failure, sizeof(r->failure), fmt, ap);
		va_end(ap);
		fprintf(stderr, "esdb replica %" PRIu64 " stopped: %s\n", r->id,
		        r->failure);
	}
	pthread_cond_broadcast(&r->cond);
	if (r->wake_open)
		uv_async_send(&r->wake);
	pthread_mutex_unlock(&r->lock);
}

/* ---- the writer thread ------------------------------------------------ */

/* Take the proposal of ours with this seq, NULL when none waits. */
static proposal *take_proposal(esdb_replica *r, uint64_t seq)
{
	for (proposal **pp = &r->proposals; *pp; pp = &(*pp)->next) {
		if ((*pp)->seq == seq) {
			proposal *p = *pp;
			*pp = p->next;
			return p;
		}
	}
	return NULL;
}

static void proposal_unref(esdb_replica *r, proposal *p)
{
	pthread_mutex_lock(&r->lock);
	bool last = --p->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (last)
		free(p);
}

/* Answer the callers of the entries in batch this node proposed: with
 * their commands' results, or with rc when results is NULL. */
static void answer_batch(esdb_replica *r, committed *batch,
                         const esdb_result *results, int rc)
{
	esdb_entry_header h;
	size_t k = 0;
	size_t answered = 0;
	for (committed *c = batch; c; c = c->next) {
		if (esdb_entry_header_read(c->buf, c->len, &h))
			continue;
		proposal *p = NULL;
		pthread_mutex_lock(&r->lock);
		if (h.proposer == r->proposer)
			p = take_proposal(r, h.seq);
		if (p)
			r->answering++;
		pthread_mutex_unlock(&r->lock);
		if (p && r->trace && results) {
			esdb_stage_trace_add(r->trace, STAGE_QUEUED,
			                     p->t_propose - p->t_submit);
			esdb_stage_trace_add(r->trace, STAGE_RAFT,
			                     c->t_commit - p->t_propose);
			esdb_stage_trace_add(r->trace, STAGE_HANDOFF,
			                     r->t_pick - c->t_commit);
			esdb_stage_trace_add(r->trace, STAGE_APPLY,
			                     r->t_applied - r->t_pick);
			esdb_stage_trace_add(r->trace, STAGE_CMDS, h.count);
		}
		if (p) {
			esdb_commit_req *q = p->reqs;
			for (uint32_t i = 0; q && i < h.count; i++) {
				esdb_commit_req *next = q->next;
				esdb_result res = {.rc = rc};
				esdb_commit_answer(q, results ? &results[k + i]
				                              : &res);
				q = next;
			}
			p->reqs = NULL;
			answered += h.count;
			pthread_mutex_lock(&r->lock);
			r->answering--;
			/* set with the decrement: propose, seeing none
			 * answering, must also see how many to wait for */
			r->gather_want = answered;
			if (r->trace)
				r->t_answered = esdb_clock_get_us();
			pthread_mutex_unlock(&r->lock);
			if (r->trace && results) {
				uint64_t now = esdb_clock_get_us();
				esdb_stage_trace_add(r->trace, STAGE_ANSWER,
				                     now - r->t_applied);
				esdb_stage_trace_add(r->trace, STAGE_TOTAL,
				                     now - p->t_submit);
			}
			proposal_unref(r, p);
		}
		k += h.count;
	}
	if (answered) { /* propose what queued meanwhile (propose) */
		pthread_mutex_lock(&r->lock);
		if (r->wake_open && r->in_head)
			uv_async_send(&r->wake);
		pthread_mutex_unlock(&r->lock);
	}
}

/* Apply a batch of committed entries in one transaction, then answer the
 * callers of the ones this node proposed. */
static void apply_batch(esdb_replica *r, committed *batch)
{
	size_t n_cmds = 0, n_entries = 0;
	esdb_entry_header h;
	for (committed *c = batch; c; c = c->next, n_entries++) {
		/* checked when handed over: cannot fail here */
		esdb_entry_header_read(c->buf, c->len, &h);
		n_cmds += h.count;
	}
	esdb_cmd *cmds = malloc(n_cmds * sizeof(*cmds));
	uint64_t *at = malloc(n_cmds * sizeof(*at));
	esdb_result *results = malloc(n_cmds * sizeof(*results));
	uint64_t last = 0;
	int rc = 0;
	if (!cmds || !at || !results) {
		rc = ENOMEM;
		goto out;
	}
	size_t k = 0;
	for (committed *c = batch; c; c = c->next) {
		if ((rc = esdb_entry_decode(c->buf, c->len, &h, cmds + k))) {
			fail_stop(r, rc,
			          "entry %" PRIu64 " is malformed (%s): not "
			          "applied",
			          c->index, esdb_error_describe(rc));
			goto out_failed;
		}
		for (uint32_t i = 0; i < h.count; i++) {
			/* The proposer checked every command: one this node
			 * cannot read was written by another version (or
			 * damaged here). Applying would refuse it here and
			 * accept it elsewhere: stop instead. */
			const esdb_cmd *cmd = &cmds[k + i];
			if ((rc = esdb_cmd_check(cmd->buf, cmd->len))) {
				fail_stop(r, rc,
				          "command %u of entry %" PRIu64
				          " is not readable here (%s): written "
				          "by another version of ExESDB?",
				          i, c->index, esdb_error_describe(rc));
				goto out_failed;
			}
			at[k + i] = esdb_entry_store_index(c->index, i);
		}
		k += h.count;
		last = c->index;
	}
	rc = esdb_store_apply_at(r->s, at, cmds, n_cmds, results);
	if (r->trace) {
		r->t_applied = esdb_clock_get_us();
		esdb_stage_trace_add(r->trace, STAGE_BATCH, n_entries);
	}
out:
	if (rc) {
		/* the store names the cause to every binding (a flush that
		 * failed has already named its own) */
		esdb_store_set_failure(r->s, rc);
		fail_stop(r, ESDB_ESTORE_FAILED,
		          "applying entries up to %" PRIu64 " failed: %s (%d)",
		          last, esdb_error_describe(rc), rc);
		goto out_failed;
	}
	/* applied first: a caller answered reads an applied index that
	 * covers its command (the gateway's read-your-writes waits on it) */
	pthread_mutex_lock(&r->lock);
	if (last > r->applied)
		r->applied = last;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	answer_batch(r, batch, results, 0);
	free(cmds);
	free(at);
	free(results);
	return;
out_failed:
	/* Never a result from an entry this store did not apply; the
	 * entries are committed, so the others may apply them. */
	answer_batch(r, batch, NULL, ESDB_EOUTCOME_UNKNOWN);
	free(cmds);
	free(at);
	free(results);
}

/* A flush fsm_snapshot waits for is due: the writer has applied up to
 * the index it asked for. Lock held. */
static bool sync_due(esdb_replica *r)
{
	return r->sync_want > r->synced && r->applied >= r->sync_want &&
	       !r->failed;
}

/* Flush the store for fsm_snapshot (off the loop thread: a flush can
 * take longer than a heartbeat). Lock held; released meanwhile. */
static void writer_sync(esdb_replica *r)
{
	uint64_t upto = r->applied;
	pthread_mutex_unlock(&r->lock);
	int rc = esdb_store_sync(r->s);
	if (rc)
		fail_stop(r, ESDB_ESTORE_FAILED,
		          "flushing the store before a snapshot failed: %s",
		          esdb_error_describe(rc));
	pthread_mutex_lock(&r->lock);
	if (!rc && upto > r->synced)
		r->synced = upto;
	pthread_cond_broadcast(&r->cond);
}

static void *writer_main(void *arg)
{
	esdb_replica *r = arg;
	pthread_setname_np(pthread_self(), "esdb-writer");
	pthread_mutex_lock(&r->lock);
	for (;;) {
		/* entries wait while the store waits for a copy (fsm_restore)
		 */
		while ((!r->c_head || (r->needs_copy && !r->failed)) &&
		       !r->writer_stop && !sync_due(r))
			pthread_cond_wait(&r->writer_cond, &r->lock);
		if (sync_due(r)) {
			writer_sync(r);
			continue;
		}
		if (!r->c_head)
			break;
		/* Up to WRITER_BATCH_ENTRIES entries, one transaction. */
		committed *batch = r->c_head, *tail = batch;
		for (int i = 1; i < WRITER_BATCH_ENTRIES && tail->next; i++)
			tail = tail->next;
		r->c_head = tail->next;
		if (!r->c_head)
			r->c_tail = NULL;
		tail->next = NULL;
		/* stopping without the copy: not applied here */
		int failed = r->failed || r->needs_copy;
		if (r->trace)
			r->t_pick = esdb_clock_get_us();
		pthread_mutex_unlock(&r->lock);
		if (!failed && esdb__replica_apply_delay_us)
			usleep(esdb__replica_apply_delay_us);
		if (!failed)
			apply_batch(r, batch);
		else /* committed, applied elsewhere perhaps */
			answer_batch(r, batch, NULL, ESDB_EOUTCOME_UNKNOWN);
		while (batch) {
			committed *next = batch->next;
			free(batch);
			batch = next;
		}
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Wait until the writer has applied every entry handed to it (or the
 * replica failed). Loop thread. Returns the failure, 0 when caught up. */
static int writer_drain(esdb_replica *r)
{
	pthread_mutex_lock(&r->lock);
	while (r->applied < r->handed && !r->failed && !r->needs_copy)
		pthread_cond_wait(&r->cond, &r->lock);
	int rc = r->failed;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* ---- the FSM (loop thread) -------------------------------------------- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
	esdb_replica *r = fsm->data;
	/* raft applies in order and sets last_applied after this call */
	uint64_t index = raft_last_applied(&r->raft) + 1;
	esdb_entry_header h;
	*result = NULL;
	int rc = esdb_entry_header_read(buf->base, buf->len, &h);
	if (rc == ESDB_EFORMAT) {
		fail_stop(r, ESDB_EFORMAT,
		          "entry %" PRIu64 " has format version %u; this "
		          "replica reads version %u (mixed versions: upgrade "
		          "this node)",
		          index, h.version, ESDB_ENTRY_VERSION);
		return 0;
	}
	if (rc) {
		fail_stop(r, rc, "entry %" PRIu64 " is malformed", index);
		return 0;
	}
	pthread_mutex_lock(&r->lock);
	bool failed = r->failed != 0;
	pthread_mutex_unlock(&r->lock);
	if (failed) /* stopped: nothing more reaches the store */
		return 0;
	committed *c = malloc(sizeof(*c) + buf->len);
	if (!c) {
		fail_stop(r, ENOMEM, "no memory for entry %" PRIu64, index);
		return 0;
	}
	c->next = NULL;
	c->index = index;
	c->t_commit = r->trace ? esdb_clock_get_us() : 0;
	c->len = buf->len;
	memcpy(c->buf, buf->base, buf->len);
	pthread_mutex_lock(&r->lock);
	if (r->c_tail)
		r->c_tail->next = c;
	else
		r->c_head = c;
	r->c_tail = c;
	r->handed = index;
	pthread_mutex_unlock(&r->lock);
	/* after unlocking: a writer woken with the lock still held sleeps
	 * again on it, a second wake-up per entry */
	pthread_cond_signal(&r->writer_cond);
	return 0;
}

/* A marker snapshot: version, then the store's applied index. */
#define MARKER_VERSION 1
#define MARKER_BYTES   16

/* The writer has applied everything handed to it and the store has it on
 * disk (a failed flush stops the replica): what must hold before raft
 * drops entries, at a snapshot or a restore. */
static int store_settle(esdb_replica *r, const char *before)
{
	if (writer_drain(r))
		return -1;
	int rc = esdb_store_sync(r->s);
	if (rc) {
		fail_stop(r, ESDB_ESTORE_FAILED,
		          "flushing the store before %s failed: %s", before,
		          esdb_error_describe(rc));
		return -1;
	}
	return 0;
}

/* Before a snapshot raft drops entries up to its commit index (every
 * entry handed to the writer): the store must hold them, committed and
 * on disk (the invariant in replica.h; with one flush per commit the
 * last meta page is not yet). The writer applies and flushes; the loop
 * waits at most one heartbeat interval for it, so a slow writer or disk
 * never holds up raft's heartbeats and elections: RAFT_BUSY then, and
 * raft tries again at a later commit. */
static int snapshot_settle(esdb_replica *r)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until); /* r->cond's clock */
	uint64_t ns =
	    (uint64_t)until.tv_nsec + (uint64_t)r->cfg.heartbeat_ms * 1000000u;
	until.tv_sec += (time_t)(ns / 1000000000u);
	until.tv_nsec = (long)(ns % 1000000000u);
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	if (r->needs_copy) { /* nothing to settle until the copy is in */
		pthread_mutex_unlock(&r->lock);
		return RAFT_BUSY;
	}
	if (r->sync_want < r->handed) {
		r->sync_want = r->handed;
		pthread_cond_signal(&r->writer_cond);
	}
	while (r->synced < r->handed && !r->failed && rc == 0)
		rc = pthread_cond_timedwait(&r->cond, &r->lock, &until);
	int out = r->failed                ? RAFT_IOERR
	          : r->synced >= r->handed ? 0
	                                   : RAFT_BUSY;
	pthread_mutex_unlock(&r->lock);
	return out;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
	esdb_replica *r = fsm->data;
	uint64_t applied;
	int rc = snapshot_settle(r);
	if (rc)
		return rc;
	if (esdb_store_get_applied_index(r->s, &applied))
		return RAFT_IOERR;
	*bufs = raft_malloc(sizeof(**bufs));
	uint8_t *m = raft_malloc(MARKER_BYTES);
	if (!*bufs || !m) {
		raft_free(*bufs);
		raft_free(m);
		return RAFT_NOMEM;
	}
	memset(m, 0, MARKER_BYTES);
	m[0] = MARKER_VERSION;
	esdb_le64_put(m + 8, applied);
	(*bufs)[0] = (struct raft_buffer){.base = m, .len = MARKER_BYTES};
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	esdb_replica *r = fsm->data;
	const uint8_t *m = buf->base;
	uint64_t want = 0, have = 0;
	if (buf->len != MARKER_BYTES || m[0] != MARKER_VERSION) {
		fail_stop(r, ESDB_EFORMAT,
		          "snapshot marker of %zu bytes, version %u: unknown",
		          buf->len, buf->len ? m[0] : 0);
		return RAFT_MALFORMED;
	}
	want = esdb_le64_get(m + 8);
	if (writer_drain(r) || esdb_store_get_applied_index(r->s, &have))
		return RAFT_IOERR;
	if (have < want) {
		/* The entries between are gone from raft's log: only a copy
		 * of a member's store can bring this one up to date. Raft goes
		 * on from the snapshot (this node keeps its log and vote, and
		 * the loop is not held); the writer holds the entries after it
		 * until a copy holding at least `want` is restored
		 * (esdb_store_restore, which the replica takes now;
		 * esdb_replica_get_needs_copy says so). */
		fprintf(stderr,
		        "esdb replica %" PRIu64 ": raft's snapshot needs the "
		        "store at index %" PRIu64 ", it is at %" PRIu64
		        ": waiting for a copy of a member's store\n",
		        r->id, want, have);
		pthread_mutex_lock(&r->lock);
		r->needs_copy = want;
		if ((want >> 16) > r->handed)
			r->handed = want >> 16;
		pthread_mutex_unlock(&r->lock);
		raft_free(buf->base);
		return 0;
	}
	/* Raft drops its entries up to the snapshot: the store must hold
	 * them on disk, as in fsm_snapshot. */
	if (store_settle(r, "a restore"))
		return RAFT_IOERR;
	raft_free(buf->base);
	return 0;
}

/* ---- raft's log writes (loop thread) ---------------------------------- */

/* Raft 0.22.1's legacy layer drops a failed log write's status (an
 * assertion, compiled out): raft would go on believing stored entries the
 * disk does not hold, and a follower would stop acknowledging without a
 * word. So raft_uv's append is wrapped: a write that fails stops the
 * replica; a restart reads the log from disk. The callback gets only the
 * request, so the writes in flight of every replica in the process are
 * in one list. */
typedef struct log_write {
	struct log_write *next;
	struct raft_io_append *req;
	raft_io_append_cb cb;
	esdb_replica *r;
	unsigned n;
} log_write;

static pthread_mutex_t log_writes_lock = PTHREAD_MUTEX_INITIALIZER;
static log_write *log_writes;

static log_write *log_write_take(struct raft_io_append *req)
{
	log_write *w = NULL;
	pthread_mutex_lock(&log_writes_lock);
	for (log_write **pp = &log_writes; *pp; pp = &(*pp)->next) {
		if ((*pp)->req == req) {
			w = *pp;
			*pp = w->next;
			break;
		}
	}
	pthread_mutex_unlock(&log_writes_lock);
	return w;
}

static void log_write_done(struct raft_io_append *req, int status)
{
	log_write *w = log_write_take(req);
	if (!w) /* cannot be: every wrapped write is listed */
		abort();
	esdb_replica *r = w->r;
	raft_io_append_cb cb = w->cb;
	if (esdb__replica_fail_log_write && status == 0) {
		/* the tests': written, but reported failed */
		esdb__replica_fail_log_write = 0;
		status = RAFT_IOERR;
	}
	if (status && status != RAFT_CANCELED) {
		esdb_store_set_failure(r->s, log_failure_cause(status));
		fail_stop(r, ESDB_ESTORE_FAILED,
		          "raft's log write of %u entries failed: %s (raft %d)",
		          w->n, raft_strerror(status), status);
	}
	free(w);
	cb(req, status);
}

static int log_append(struct raft_io *io, struct raft_io_append *req,
                      const struct raft_entry entries[], unsigned n,
                      raft_io_append_cb cb)
{
	struct raft *raft = io->data;
	esdb_replica *r = raft->data;
	log_write *w = malloc(sizeof(*w));
	if (!w) /* unwatched rather than failed (see failing_heap) */
		return r->uv_append(io, req, entries, n, cb);
	*w = (log_write){.req = req, .cb = cb, .r = r, .n = n};
	pthread_mutex_lock(&log_writes_lock);
	w->next = log_writes;
	log_writes = w;
	pthread_mutex_unlock(&log_writes_lock);
	int rv = r->uv_append(io, req, entries, n, log_write_done);
	if (rv)
		free(log_write_take(req));
	return rv;
}

/* ---- the proposer (loop thread) --------------------------------------- */

static void proposal_done(struct raft_apply *req, int status, void *result)
{
	proposal *p = req->data;
	esdb_replica *r = p->r;
	esdb_commit_req *reqs = NULL;
	r->inflight--;
	if (status) {
		/* Not applied here (yet): it may still commit under the
		 * next leader, so the callers cannot be told either way. */
		pthread_mutex_lock(&r->lock);
		if (take_proposal(r, p->seq)) {
			reqs = p->reqs;
			p->reqs = NULL;
			p->refs--; /* the answer's reference */
		}
		pthread_mutex_unlock(&r->lock);
		answer_all(reqs, ESDB_EOUTCOME_UNKNOWN);
	}
	proposal_unref(r, p);
	/* propose what queued meanwhile, outside raft's callback */
	if (r->wake_open && !r->raft_closing)
		uv_async_send(&r->wake);
}

/* Take the queued commands that fit one entry. Lock held. */
static esdb_commit_req *take_batch(esdb_replica *r, size_t *n, size_t *bytes)
{
	esdb_commit_req *head = r->in_head, *q = head, *last = NULL;
	size_t max = r->cfg.max_entry_bytes;
	*n = 0;
	*bytes = 0;
	while (q && *n < ESDB_ENTRY_MAX_COMMANDS &&
	       (*n == 0 || *bytes + q->cmd.len <= max)) {
		*bytes += q->cmd.len;
		(*n)++;
		last = q;
		q = q->next;
	}
	if (!last)
		return NULL;
	r->in_head = q;
	if (!q)
		r->in_tail = NULL;
	last->next = NULL;
	r->in_bytes -= *bytes;
	r->in_count -= *n;
	return head;
}

/* The tests' failure after the log's growth: raft's heap, with the
 * first calloc of one raft_entry failing. In raft 0.22.1's raft_apply
 * that is the io append's copy of the new entry (logAcquire), made once
 * the entry is in raft's log: the same state as an io append that fails
 * at once. Installed around one raft_apply on the loop thread. */
static const struct raft_heap *failing_heap_base;
static bool failing_heap_spent;

static void *failing_malloc(void *data, size_t size)
{
	return failing_heap_base->malloc(failing_heap_base->data, size);
}

static void failing_free(void *data, void *ptr)
{
	failing_heap_base->free(failing_heap_base->data, ptr);
}

static void *failing_calloc(void *data, size_t n, size_t size)
{
	if (!failing_heap_spent && n == 1 &&
	    size == sizeof(struct raft_entry)) {
		failing_heap_spent = true;
		return NULL;
	}
	return failing_heap_base->calloc(failing_heap_base->data, n, size);
}

static void *failing_realloc(void *data, void *ptr, size_t size)
{
	return failing_heap_base->realloc(failing_heap_base->data, ptr, size);
}

static void *failing_aligned_alloc(void *data, size_t align, size_t size)
{
	return failing_heap_base->aligned_alloc(failing_heap_base->data, align,
	                                        size);
}

static void failing_aligned_free(void *data, size_t align, void *ptr)
{
	failing_heap_base->aligned_free(failing_heap_base->data, align, ptr);
}

static int apply_maybe_failing(esdb_replica *r, struct raft_apply *req,
                               struct raft_buffer *rb)
{
	if (!esdb__replica_fail_after_growth)
		return raft_apply(&r->raft, req, rb, 1, proposal_done);
	esdb__replica_fail_after_growth = 0;
	static struct raft_heap failing = {
	    .malloc = failing_malloc,
	    .free = failing_free,
	    .calloc = failing_calloc,
	    .realloc = failing_realloc,
	    .aligned_alloc = failing_aligned_alloc,
	    .aligned_free = failing_aligned_free};
	failing_heap_base = raft_heap_get();
	failing_heap_spent = false;
	raft_heap_set(&failing);
	int rv = raft_apply(&r->raft, req, rb, 1, proposal_done);
	raft_heap_set((struct raft_heap *)failing_heap_base);
	return rv;
}

static void propose(esdb_replica *r);

static void gather_expired(uv_timer_t *t)
{
	esdb_replica *r = t->data;
	pthread_mutex_lock(&r->lock);
	r->gather_expired = true;
	pthread_mutex_unlock(&r->lock);
	propose(r);
}

static void propose(esdb_replica *r)
{
	while (r->inflight < PROPOSE_INFLIGHT && !r->raft_closing) {
		size_t n, bytes;
		pthread_mutex_lock(&r->lock);
		bool full = r->in_bytes >= r->cfg.max_entry_bytes;
		if ((r->proposals || r->answering) && !full) {
			/* our last entry is not yet applied and answered:
			 * hold (answer_batch wakes us), see
			 * PROPOSE_INFLIGHT */
			pthread_mutex_unlock(&r->lock);
			return;
		}
		if (r->in_head && r->in_count < r->gather_want && !full &&
		    !r->gather_expired) {
			/* the callers just answered are sending their next
			 * commands: wait for as many, at most GATHER_MS */
			pthread_mutex_unlock(&r->lock);
			if (!uv_is_active((uv_handle_t *)&r->gather))
				uv_timer_start(&r->gather, gather_expired,
				               GATHER_MS, 0);
			return;
		}
		bool leader = raft_state(&r->raft) == RAFT_LEADER;
		bool waits_copy = r->needs_copy != 0;
		esdb_commit_req *reqs =
		    leader ? take_batch(r, &n, &bytes) : NULL;
		if (reqs && r->trace && r->t_answered) {
			esdb_stage_trace_add(r->trace, STAGE_GATHER,
			                     esdb_clock_get_us() -
			                         r->t_answered);
			esdb_stage_trace_add(r->trace, STAGE_TIMED,
			                     r->gather_expired);
			r->t_answered = 0;
		}
		if (reqs) { /* this entry takes them */
			r->gather_want = 0;
			r->gather_expired = false;
			uv_timer_stop(&r->gather);
		}
		uint64_t t_submit = r->in_first_us;
		if (r->trace && r->in_head)
			r->in_first_us = esdb_clock_get_us();
		pthread_mutex_unlock(&r->lock);
		if (!reqs)
			return;
		if (waits_copy) { /* as path_submit: never proposed */
			answer_all(reqs, ESDB_ENOT_LEADER);
			continue;
		}
		esdb_cmd *cmds = malloc(n * sizeof(*cmds));
		proposal *p = calloc(1, sizeof(*p));
		size_t size = 0;
		uint8_t *buf = NULL;
		if (cmds && p) {
			size_t i = 0;
			for (esdb_commit_req *q = reqs; q; q = q->next)
				cmds[i++] = q->cmd;
			size = esdb_entry_size(cmds, n);
			buf = raft_malloc(size);
		}
		if (!buf) {
			free(cmds);
			free(p);
			answer_all(reqs, ENOMEM);
			continue;
		}
		p->seq = ++r->next_seq;
		esdb_entry_encode(buf, r->proposer, p->seq, cmds, n);
		if (esdb__replica_entry_version)
			buf[0] = (uint8_t)esdb__replica_entry_version;
		if (esdb__replica_command_version) /* the first command's */
			buf[ESDB_ENTRY_HEADER + 8] =
			    (uint8_t)esdb__replica_command_version;
		free(cmds);
		p->reqs = reqs;
		p->n = n;
		p->refs = 2;
		p->r = r;
		p->t_submit = t_submit;
		p->t_propose = r->trace ? esdb_clock_get_us() : 0;
		p->apply.data = p;
		pthread_mutex_lock(&r->lock);
		p->next = r->proposals;
		r->proposals = p;
		pthread_mutex_unlock(&r->lock);
		struct raft_buffer rb = {.base = buf, .len = size};
		raft_index last = raft_last_index(&r->raft);
		int rv = apply_maybe_failing(r, &p->apply, &rb);
		if (rv) {
			/* raft 0.22 refuses (not leader, no space, no memory)
			 * before its log grows, leaving buf ours; once the
			 * entry is in its log it frees buf itself and may
			 * still fail (an io truncate/append): then the entry
			 * may commit, and buf is not ours to free. */
			bool taken = raft_last_index(&r->raft) > last;
			if (!taken)
				raft_free(buf);
			pthread_mutex_lock(&r->lock);
			take_proposal(r, p->seq);
			pthread_mutex_unlock(&r->lock);
			/* refused: never in the log, safe to retry elsewhere */
			answer_all(reqs, taken ? ESDB_EOUTCOME_UNKNOWN
			                 : rv == RAFT_NOTLEADER
			                     ? ESDB_ENOT_LEADER
			                     : raft_rc(rv));
			free(p);
			/* Taken and failed: raft's log in memory holds the
			 * entry, its log on disk does not; going on with the
			 * two apart could lose or invent entries. Stop; a
			 * restart reads the log from disk. */
			if (taken)
				esdb_store_set_failure(r->s,
				                       log_failure_cause(rv));
			if (taken)
				fail_stop(r, ESDB_ESTORE_FAILED,
				          "raft's log took entry %" PRIu64
				          " but could not write it: %s (raft "
				          "%d); its log in memory and on disk "
				          "disagree",
				          (uint64_t)last + 1, raft_strerror(rv),
				          rv);
			continue;
		}
		r->inflight++;
	}
}

/* ---- membership (loop thread) ----------------------------------------- */

static void ctl_finish(ctl *c, int rc)
{
	esdb_replica *r = c->r;
	pthread_mutex_lock(&r->lock);
	c->rc = rc;
	c->done = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void change_done(struct raft_change *req, int status)
{
	ctl_finish(req->data, raft_rc(status));
}

static void transfer_done(struct raft_transfer *req)
{
	ctl *c = req->data;
	esdb_replica *r = c->r;
	raft_id id;
	const char *address;
	raft_leader(&r->raft, &id, &address);
	ctl_finish(c, id != 0 && id != r->id ? 0 : ETIMEDOUT);
}

static void run_ctl(esdb_replica *r, ctl *c)
{
	int rv;
	c->change.data = c;
	c->transfer.data = c;
	switch (c->kind) {
	case CTL_ADD:
		rv = raft_add(&r->raft, &c->change, c->id, c->address,
		              change_done);
		break;
	case CTL_ASSIGN:
		rv = raft_assign(&r->raft, &c->change, c->id, c->role,
		                 change_done);
		break;
	case CTL_REMOVE:
		rv = raft_remove(&r->raft, &c->change, c->id, change_done);
		break;
	case CTL_MEMBERS: {
		/* raft's configuration is read on its loop only */
		const struct raft_configuration *conf = &r->raft.configuration;
		for (unsigned i = 0; i < conf->n && i < c->cap; i++) {
			esdb_replica_member_info *m = &c->members[i];
			m->id = conf->servers[i].id;
			m->role = conf->servers[i].role;
			snprintf(m->address, sizeof(m->address), "%s",
			         conf->servers[i].address);
		}
		*c->n = conf->n;
		ctl_finish(c, 0);
		return;
	}
	default:
		rv =
		    raft_transfer(&r->raft, &c->transfer, c->id, transfer_done);
		break;
	}
	if (rv)
		ctl_finish(c, raft_rc(rv));
}

/* ---- the loop --------------------------------------------------------- */

static void raft_closed(struct raft *raft)
{
	esdb_replica *r = raft->data;
	/* After a fail-stop nothing more will be applied here: answer the
	 * callers still waiting (on a plain stop the writer answers those
	 * whose entries it has). */
	pthread_mutex_lock(&r->lock);
	int failed = r->failed;
	proposal *p = failed ? r->proposals : NULL;
	if (failed)
		r->proposals = NULL;
	pthread_mutex_unlock(&r->lock);
	while (p) {
		proposal *next = p->next;
		/* in raft's log: it may commit on the others */
		answer_all(p->reqs, ESDB_EOUTCOME_UNKNOWN);
		p->reqs = NULL;
		proposal_unref(r, p);
		p = next;
	}
	raft_uv_close(&r->io);
	raft_uv_tcp_close(&r->transport);
	pthread_mutex_lock(&r->lock);
	r->wake_open = false;
	pthread_mutex_unlock(&r->lock);
	uv_close((uv_handle_t *)&r->wake, NULL);
	uv_close((uv_handle_t *)&r->check, NULL);
	uv_close((uv_handle_t *)&r->gather, NULL);
}

static void leave_raft(esdb_replica *r)
{
	if (r->raft_closing)
		return;
	r->raft_closing = true;
	raft_close(&r->raft, raft_closed);
}

static void on_wake(uv_async_t *h)
{
	esdb_replica *r = h->data;
	pthread_mutex_lock(&r->lock);
	bool stop = r->stopping || r->failed;
	int failed = r->failed;
	ctl *ctls = r->ctl_head;
	r->ctl_head = NULL;
	esdb_commit_req *drop = NULL;
	if (stop) {
		drop = r->in_head;
		r->in_head = r->in_tail = NULL;
		r->in_bytes = 0;
		r->in_count = 0;
	}
	pthread_mutex_unlock(&r->lock);
	answer_all(drop, failed ? failed : ESDB_ECLOSED);
	while (ctls) {
		ctl *next = ctls->next;
		if (stop || r->raft_closing)
			ctl_finish(ctls, failed ? failed : ESDB_ECLOSED);
		else
			run_ctl(r, ctls);
		ctls = next;
	}
	if (stop) {
		leave_raft(r);
		return;
	}
	propose(r);
}

/* A replica waiting for a copy cannot serve writes (path_submit), but
 * its raft log is as up to date as any: raft would elect it as readily as
 * another voter. It stays a voter (it stores entries and counts toward
 * commits and votes; demoting it would leave fewer voters to lose) and
 * instead (1) campaigns late and (2) hands leadership on when it leads.
 *
 * (1) As a follower its election timer is stretched to 3 to 4 election
 * timeouts, past any other follower's (1 to 2, earlier after a leader's
 * connection closes): a voter that can win wins first. Only when none can
 * (the others' logs are behind this one's, which refuses them its vote)
 * does it campaign, so that a leader still comes. Raft draws the timer
 * again on every leader contact, so the stretch is applied after every
 * loop iteration, before the next tick reads it. Timing only: raft's
 * safety never rests on timers.
 *
 * (2) As the leader it transfers leadership to a voter holding its whole
 * log (raft_transfer sends that voter TimeoutNow at once), waiting while
 * none does: replication brings one up to date. A transfer made to it
 * (TimeoutNow) is taken, then handed on the same way. Loop thread. */
static void hand_over_done(struct raft_transfer *req)
{
	esdb_replica *r = req->data;
	r->handing_over = false;
}

static void hand_over(esdb_replica *r)
{
	struct raft *rf = &r->raft;
	const struct raft_configuration *conf = &rf->configuration;
	raft_index last = raft_last_index(rf);
	uint64_t to = 0;
	bool back = false;
	if (r->handing_over || raft_transferee(rf) != 0)
		return;
	for (unsigned i = 0; i < conf->n && !to; i++) {
		raft_index match = 0;
		raft_id id = conf->servers[i].id;
		if (conf->servers[i].role == RAFT_VOTER && id != r->id &&
		    raft_match_index(rf, id, &match) == 0 && match == last) {
			if (id == r->led_by)
				back = true;
			else
				to = id;
		}
	}
	/* Not back to the voter we took leadership from while another
	 * qualifies: two voters waiting for copies would hand it to each
	 * other for ever, the third never chosen. Back to it only after an
	 * election timeout (the others had time to answer this leader). */
	if (!to && back &&
	    uv_now(&r->loop) - r->led_since >= rf->election_timeout)
		to = r->led_by;
	if (!to)
		return; /* none holds the whole log yet */
	r->hand_over.data = r;
	if (raft_transfer(rf, &r->hand_over, to, hand_over_done) == 0) {
		r->handing_over = true;
		fprintf(
		    stderr,
		    "esdb replica %" PRIu64 ": leads while waiting for a "
		    "copy of a member's store: leadership handed to %" PRIu64
		    "\n",
		    r->id, to);
	}
}

static void defer_campaign(esdb_replica *r)
{
	struct raft *rf = &r->raft;
	unsigned t = rf->election_timeout;
	if (raft_state(rf) != RAFT_FOLLOWER ||
	    rf->follower_state.randomized_election_timeout >= 3 * t)
		return;
	uint32_t x;
	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
		x = (uint32_t)esdb_clock_get_us();
	rf->follower_state.randomized_election_timeout = 3 * t + x % t;
}

/* After every loop iteration: notice leadership changes. */
static void on_check(uv_check_t *h)
{
	esdb_replica *r = h->data;
	if (r->raft_closing)
		return;
	raft_id id;
	const char *address;
	raft_leader(&r->raft, &id, &address);
	bool leader = raft_state(&r->raft) == RAFT_LEADER;
	esdb_commit_req *drop = NULL;
	uint64_t now = esdb_clock_get_us();
	pthread_mutex_lock(&r->lock);
	uint64_t term = raft_current_term(&r->raft);
	/* leadership lost and won again between two checks shows only as a
	 * new term: what queued under the old one must not be proposed
	 * under the new (the term fence) */
	bool new_term = r->leader && term != r->term;
	r->term = term;
	r->commit = r->raft.commit_index;
	r->last_index = raft_last_index(&r->raft);
	r->loop_us = now;
	bool waits_copy = r->needs_copy != 0 && !r->failed;
	bool changed = id != r->leader_id || leader != r->leader;
	if (id && id != r->id)
		r->led_by = id;
	if (leader && (changed || new_term))
		r->led_since = uv_now(&r->loop);
	if (changed || new_term) {
		r->leader_id = id;
		r->leader = leader;
		snprintf(r->leader_address, sizeof(r->leader_address), "%s",
		         id && address ? address : "");
		if (!leader || new_term) {
			/* never proposed: the caller may retry elsewhere */
			drop = r->in_head;
			r->in_head = r->in_tail = NULL;
			r->in_bytes = 0;
			r->in_count = 0;
		}
	}
	pthread_mutex_unlock(&r->lock);
	answer_all(drop, ESDB_ENOT_LEADER);
	if (waits_copy && leader)
		hand_over(r);
	else if (waits_copy)
		defer_campaign(r);
	/* a new term led again is told too (claims of the old one go) */
	if ((changed || new_term) && r->cfg.on_leader)
		r->cfg.on_leader(r->cfg.on_leader_ctx, id, id ? address : NULL,
		                 leader);
	if (changed && leader)
		propose(r);
}

/* The node's id, kept in <raft dir>/node_id. */
static int node_id(esdb_replica *r)
{
	char path[4096], buf[32];
	snprintf(path, sizeof(path), "%s/node_id", r->raft_dir);
	FILE *f = fopen(path, "r");
	if (f) {
		uint64_t stored = 0;
		int ok = fgets(buf, sizeof(buf), f) &&
		         sscanf(buf, "%" SCNu64, &stored) == 1;
		fclose(f);
		if (!ok || stored == 0)
			return ESDB_ECORRUPT;
		if (r->id && r->id != stored)
			return ESDB_EINVAL; /* the store belongs to another */
		r->id = stored;
		return 0;
	}
	if (!r->id)
		return ESDB_EINVAL;
	bool marked = false,
	     alone = r->cfg.n_members == 1 && r->members[0].id == r->id;
	int rc = esdb_store_get_replica_mark(r->s, &marked);
	if (rc)
		return rc;
	if (r->store_index && (marked ? r->cfg.n_members != 0 : !alone)) {
		/* Commands this raft log never held: replaying the log over
		 * them would diverge from the other members. Two stores may
		 * hold commands without a raft log: a copy of a member's
		 * store (marked), which a joiner starts from, raft's entries
		 * going on from its applied index; and a single-node store
		 * (not marked) that becomes the first member of a cluster of
		 * one (others then join from copies). */
		fprintf(stderr,
		        "esdb replica %" PRIu64 ": %s already holds commands "
		        "(applied index %" PRIu64 ") but has no raft log; %s\n",
		        r->id, r->dir, r->store_index,
		        marked
		            ? "a copy of a member's store only joins"
		            : "a single-node store becomes a replica only as "
		              "the one member of a new cluster");
		return ESDB_EINVAL;
	}
	if (r->store_index && !marked) {
		/* The first member of a new cluster, keeping its events: its
		 * applied index counted its own commands; raft numbers them
		 * from here on. */
		if ((rc = esdb_store_mark_replica(r->s, true)))
			return rc;
		pthread_mutex_lock(&r->lock);
		r->store_index = r->applied = r->handed = 0;
		pthread_mutex_unlock(&r->lock);
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return errno;
	int len = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", r->id);
	rc = write(fd, buf, len) == len && fsync(fd) == 0 ? 0 : errno;
	close(fd);
	/* and its directory entry, so that the id outlives a power loss */
	int dfd = rc ? -1 : open(r->raft_dir, O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		rc = fsync(dfd) ? errno : 0;
		close(dfd);
	}
	return rc;
}

/* The leader closed the connection it sends this follower its entries
 * on: its process is gone (the kernel closes a dead process's sockets, so
 * kill -9 too) or it dropped the connection. Rather than wait a whole
 * randomized election timeout (T to 2T after the last heartbeat), this
 * follower (1) counts its leader as not heard from for T, so that it
 * grants votes and pre-votes (patch 0002's rule) to the survivor that
 * asks first, and (2) starts its own pre-vote soon, in turns: the voter
 * of lowest id (the leader left out) after 2 heartbeats, the next 3
 * heartbeats later, and so on, each within a heartbeat of random delay.
 * Survivors drawing at random in one short window asked at once too often
 * and split the vote (3 of 30 kills at load 30, each split another T to
 * 2T); by the next one's turn the first has usually won, and a vote
 * granted resets the granter's timer. A turn past T keeps raft's own
 * draw. Only timing changes: raft's safety never rests on timers.
 * Pre-vote keeps its meaning: a follower that still hears the leader
 * refuses, as does the leader, and a live leader that reconnects resets
 * this timer with its next heartbeat, within the 2 heartbeats. A leader
 * cut off without a close (a partition, SIGSTOP) is noticed at the
 * timeout as before. Fields of struct raft (public in raft.h 0.22): set
 * between raft events on the loop thread, read at the next tick. A
 * replica waiting for a copy still grants votes at once (1) but asks
 * late: on_check stretches its turn (defer_campaign). */
static void leader_connection_closed(void *ctx, uint64_t id)
{
	esdb_replica *r = ctx;
	struct raft *rf = &r->raft;
	raft_id leader;
	const char *address;
	if (r->raft_closing || raft_state(rf) != RAFT_FOLLOWER)
		return;
	raft_leader(rf, &leader, &address);
	if (leader != id)
		return;
	unsigned t = rf->election_timeout, hb = rf->heartbeat_timeout;
	raft_time now = rf->io->time(rf->io);
	if (now < t || 2 * hb >= t)
		return; /* no earlier than the timer anyway */
	unsigned rank = 0;
	const struct raft_configuration *conf = &rf->configuration;
	for (unsigned i = 0; i < conf->n; i++)
		if (conf->servers[i].role == RAFT_VOTER &&
		    conf->servers[i].id != id && conf->servers[i].id < r->id)
			rank++;
	uint32_t x;
	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
		x = (uint32_t)esdb_clock_get_us();
	uint64_t d = 2ull * hb + 3ull * hb * rank + x % hb;
	if (d >= t)
		d = t + x % t;
	rf->election_timer_start = now - t;
	rf->follower_state.randomized_election_timeout = t + (unsigned)d;
}

static int raft_setup(esdb_replica *r)
{
	int rv;
	if (mkdir(r->raft_dir, 0700) && errno != EEXIST)
		return errno;
	if ((rv = node_id(r)))
		return rv;
	/* the CLI and single-node opens must not write a replica's store */
	if ((rv = esdb_store_mark_replica(r->s, false)))
		return rv;
	if ((rv = uv_loop_init(&r->loop)))
		return EIO;
	r->loop_inited = true;
	r->wake.data = r;
	r->check.data = r;
	uv_async_init(&r->loop, &r->wake, on_wake);
	pthread_mutex_lock(&r->lock);
	r->wake_open = true;
	pthread_mutex_unlock(&r->lock);
	uv_check_init(&r->loop, &r->check);
	r->gather.data = r;
	uv_timer_init(&r->loop, &r->gather);
	r->transport.version = 1; /* the struct version raft expects */
	if ((rv = raft_uv_tcp_init(&r->transport, &r->loop)))
		return raft_rc(rv);
	r->transport_inited = true;
	if (r->bind_address &&
	    (rv = raft_uv_tcp_set_bind_address(&r->transport, r->bind_address)))
		return raft_rc(rv);
	esdb_peer_watch_start(&r->peer_watch, &r->transport,
	                      leader_connection_closed, r);
	r->peer_watch_started = true;
	if ((rv = raft_uv_init(&r->io, &r->loop, r->raft_dir, &r->transport)))
		return raft_rc(rv);
	r->io_inited = true;
	raft_uv_set_auto_recovery(&r->io, false);
	r->uv_append = r->io.append;
	r->io.append = log_append;
	r->fsm = (struct raft_fsm){
	    .version = 2,
	    .data = r,
	    .apply = fsm_apply,
	    .snapshot = fsm_snapshot,
	    .restore = fsm_restore,
	    .snapshot_finalize = NULL, /* raft frees the marker */
	};
	if ((rv = raft_init(&r->raft, &r->io, &r->fsm, r->id, r->address)))
		return raft_rc(rv);
	r->raft_inited = true;
	r->raft.data = r;
	unsigned seed;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (unsigned)esdb_clock_get_us();
	/* 0.22 seeds from the clock before it knows the id: nodes started
	 * in the same millisecond drew the same election timeouts. */
	raft_seed(&r->raft, seed ^ (unsigned)r->id);
	raft_set_election_timeout(&r->raft, r->cfg.election_timeout_ms);
	raft_set_heartbeat_timeout(&r->raft, r->cfg.heartbeat_ms);
	raft_set_pre_vote(&r->raft, true);
	raft_set_snapshot_threshold(&r->raft, r->cfg.snapshot_threshold);
	uint64_t trailing = r->cfg.trailing_bytes / r->cfg.max_entry_bytes;
	raft_set_snapshot_trailing(&r->raft,
	                           trailing < 128 ? 128 : (unsigned)trailing);
	raft_set_max_inflight_entries(&r->raft, r->cfg.max_inflight_entries);
	if (r->cfg.n_members) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		for (size_t i = 0; i < r->cfg.n_members && !rv; i++)
			rv = raft_configuration_add(&conf, r->members[i].id,
			                            r->members[i].address,
			                            RAFT_VOTER);
		if (!rv)
			rv = raft_bootstrap(&r->raft, &conf);
		raft_configuration_close(&conf);
		if (rv == RAFT_CANTBOOTSTRAP)
			rv = 0; /* the log has state: formed before */
		if (rv)
			return raft_rc(rv);
	}
	if ((rv = raft_start(&r->raft)))
		return raft_rc(rv);
	uv_check_start(&r->check, on_check);
	return 0;
}

static void close_handle(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Why raft could not listen on addr ("host:port"), found by binding it
 * again: raft's own failure says only "I/O error". NULL if it binds. */
static const char *listen_failure(const char *addr)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return NULL;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct addrinfo hints = {.ai_family = AF_INET,
	                         .ai_socktype = SOCK_STREAM},
	                *ai = NULL;
	if (getaddrinfo(host, colon + 1, &hints, &ai) || !ai)
		return "cannot resolve it";
	int err = 0, one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		err = errno;
	} else {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1))
			err = errno;
		close(fd);
	}
	freeaddrinfo(ai);
	return err ? strerror(err) : NULL;
}

static void *loop_main(void *arg)
{
	esdb_replica *r = arg;
	pthread_setname_np(pthread_self(), "esdb-raft");
	int rc = raft_setup(r);
	const char *listen = r->bind_address ? r->bind_address : r->address;
	if (rc)
		fprintf(stderr,
		        "esdb replica %" PRIu64 " at %s: raft did not start: "
		        "%s (%s)\n",
		        r->id, r->address, esdb_error_describe(rc),
		        r->raft_inited ? raft_errmsg(&r->raft) : "");
	/* raft maps many failures to EIO: the listener's is said apart */
	const char *why = rc == EIO ? listen_failure(listen) : NULL;
	if (why)
		fprintf(stderr,
		        "esdb replica %" PRIu64 ": raft cannot listen on %s: "
		        "%s\n",
		        r->id, listen, why);
	pthread_mutex_lock(&r->lock);
	r->start_rc = rc;
	r->started = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (rc && r->raft_inited) {
		leave_raft(r); /* closes io, transport and our handles */
	} else if (rc && r->loop_inited) {
		pthread_mutex_lock(&r->lock);
		r->wake_open = false;
		pthread_mutex_unlock(&r->lock);
		if (r->io_inited)
			raft_uv_close(&r->io);
		if (r->transport_inited)
			raft_uv_tcp_close(&r->transport);
		uv_walk(&r->loop, close_handle, NULL);
	} else if (rc) {
		return NULL;
	}
	uv_run(&r->loop, UV_RUN_DEFAULT);
	uv_loop_close(&r->loop);
	if (r->peer_watch_started)
		esdb_peer_watch_stop(&r->peer_watch);
	return NULL;
}

/* ---- the commit path (commit.h) --------------------------------------- */

static int path_start(esdb_commit_path *cp, esdb_store *s)
{
	esdb_replica *r = cp->impl;
	r->s = s;
	if (getrandom(&r->proposer, sizeof(r->proposer), 0) !=
	    sizeof(r->proposer))
		r->proposer = esdb_clock_get_us() ^ ((uint64_t)getpid() << 32);
	int rc = esdb_store_get_applied_index(s, &r->store_index);
	if (rc)
		return rc;
	r->applied = r->store_index >> 16;
	r->handed = r->applied;
	rc = pthread_create(&r->writer, NULL, writer_main, r);
	if (rc)
		return rc;
	if ((rc = pthread_create(&r->thread, NULL, loop_main, r))) {
		pthread_mutex_lock(&r->lock);
		r->writer_stop = true;
		pthread_cond_signal(&r->writer_cond);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->writer, NULL);
		return rc;
	}
	pthread_mutex_lock(&r->lock);
	while (!r->started)
		pthread_cond_wait(&r->cond, &r->lock);
	rc = r->start_rc;
	pthread_mutex_unlock(&r->lock);
	if (rc) {
		pthread_join(r->thread, NULL);
		pthread_mutex_lock(&r->lock);
		r->writer_stop = true;
		pthread_cond_signal(&r->writer_cond);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->writer, NULL);
	}
	return rc;
}

/* The calling thread's fence (esdb_replica_fence_term; 0: none). */
static __thread uint64_t fenced_term;

void esdb_replica_fence_term(uint64_t term)
{
	fenced_term = term;
}

static int path_submit(esdb_commit_path *cp, esdb_commit_req *req)
{
	esdb_replica *r = cp->impl;
	/* Only commands every replica can apply enter the log: a malformed
	 * one is refused here, never stops the replicas. */
	int rc = esdb_cmd_check(req->cmd.buf, req->cmd.len);
	if (rc)
		return rc;
	pthread_mutex_lock(&r->lock);
	if (r->failed)
		rc = r->failed;
	else if (r->stopping)
		rc = ESDB_ECLOSED;
	else if (!r->leader || r->needs_copy)
		/* a leader whose store waits for a copy cannot say what
		 * an append did (the copy may come in past it) */
		rc = ESDB_ENOT_LEADER;
	else if (fenced_term && r->term != fenced_term)
		/* leader and term as of on_check, which drops this queue
		 * whenever leadership is lost: what is queued here is
		 * proposed in this term or never */
		rc = ESDB_ENOT_LEADER;
	else if (r->in_bytes + req->cmd.len > r->cfg.max_queue_bytes &&
	         r->in_head)
		rc = ESDB_EOVERLOADED;
	if (!rc) {
		req->next = NULL;
		if (r->in_tail)
			r->in_tail->next = req;
		else {
			r->in_head = req;
			if (r->trace)
				r->in_first_us = esdb_clock_get_us();
		}
		r->in_tail = req;
		r->in_bytes += req->cmd.len;
		r->in_count++;
		if (r->wake_open)
			uv_async_send(&r->wake);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static int path_cancel(esdb_commit_path *cp,
                       bool (*match)(void *ctx, void *arg), void *arg,
                       esdb_commit_req **out)
{
	esdb_replica *r = cp->impl;
	int rc = ESDB_ENOTFOUND;
	pthread_mutex_lock(&r->lock);
	esdb_commit_req *prev = NULL;
	for (esdb_commit_req *q = r->in_head; q; prev = q, q = q->next) {
		if (!match(q->ctx, arg))
			continue;
		if (prev)
			prev->next = q->next;
		else
			r->in_head = q->next;
		if (r->in_tail == q)
			r->in_tail = prev;
		r->in_bytes -= q->cmd.len;
		r->in_count--;
		q->next = NULL;
		*out = q;
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* A copy of a member's store may replace the store while the replica
 * waits for one (fsm_restore). */
static bool path_may_restore(esdb_commit_path *cp)
{
	esdb_replica *r = cp->impl;
	pthread_mutex_lock(&r->lock);
	bool waiting = r->needs_copy != 0 && !r->failed;
	pthread_mutex_unlock(&r->lock);
	return waiting;
}

/* The store is now that copy (flushed): the writer goes on from its
 * index, or waits for a newer copy when it is still short. */
static void path_restored(esdb_commit_path *cp, uint64_t applied)
{
	esdb_replica *r = cp->impl;
	pthread_mutex_lock(&r->lock);
	/* swap_in refuses a copy behind the store: never backwards */
	if ((applied >> 16) > r->applied)
		r->applied = applied >> 16;
	if ((applied >> 16) > r->synced)
		r->synced = applied >> 16;
	if (applied >= r->needs_copy)
		r->needs_copy = 0;
	pthread_cond_broadcast(&r->writer_cond);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void path_stop(esdb_commit_path *cp)
{
	esdb_replica *r = cp->impl;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	if (r->wake_open)
		uv_async_send(&r->wake);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	/* Raft is closed: what it committed is with the writer, which
	 * finishes it (committed entries are applied, not dropped). */
	pthread_mutex_lock(&r->lock);
	r->writer_stop = true;
	pthread_cond_signal(&r->writer_cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->writer, NULL);
	/* Proposals still waiting were in raft's log but not applied
	 * here. */
	pthread_mutex_lock(&r->lock);
	proposal *p = r->proposals;
	r->proposals = NULL;
	esdb_commit_req *in = r->in_head;
	r->in_head = r->in_tail = NULL;
	pthread_mutex_unlock(&r->lock);
	answer_all(in, ESDB_ECLOSED);
	while (p) {
		proposal *next = p->next;
		answer_all(p->reqs, ESDB_EOUTCOME_UNKNOWN);
		p->reqs = NULL;
		proposal_unref(r, p);
		p = next;
	}
	/* Calls of holders were answered (the loop finished their
	 * changes; later ones see stopping): wait until they are out. */
	pthread_mutex_lock(&r->lock);
	while (r->holds)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

static void path_close(esdb_commit_path *cp)
{
	esdb_replica *r = cp->impl;
	esdb_stage_trace_end(r->trace, r->id);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	pthread_cond_destroy(&r->writer_cond);
	for (size_t i = 0; i < r->cfg.n_members; i++)
		free((char *)r->members[i].address);
	free(r->members);
	free(r->address);
	free(r->bind_address);
	free(r->dir);
	free(r->raft_dir);
	free(r);
	cp->impl = NULL;
}

/* ---- the API ---------------------------------------------------------- */

int esdb_replica_create(esdb_store *s, const esdb_replica_config *cfg,
                        esdb_replica **out)
{
	if (!s || !cfg || !out || !cfg->address || !cfg->dir)
		return ESDB_EINVAL;
	for (size_t i = 0; i < cfg->n_members; i++)
		if (!cfg->members || !cfg->members[i].id ||
		    !cfg->members[i].address)
			return ESDB_EINVAL;
	/* libuv does not ignore SIGPIPE: a peer that goes away while we
	 * write to it would kill the process. */
	signal(SIGPIPE, SIG_IGN);
	esdb_replica *r = calloc(1, sizeof(*r));
	if (!r)
		return ENOMEM;
	r->cfg = *cfg;
	r->id = cfg->id;
	r->trace = esdb_stage_trace_new();
	esdb_replica_config *c = &r->cfg;
#define DEFAULT(f, v)                                                          \
	if (!c->f)                                                             \
	c->f = (v)
	DEFAULT(election_timeout_ms, ESDB_REPLICA_ELECTION_TIMEOUT_MS);
	DEFAULT(heartbeat_ms, ESDB_REPLICA_HEARTBEAT_MS);
	DEFAULT(snapshot_threshold, ESDB_REPLICA_SNAPSHOT_THRESHOLD);
	DEFAULT(trailing_bytes, ESDB_REPLICA_TRAILING_BYTES);
	DEFAULT(max_entry_bytes, ESDB_REPLICA_MAX_ENTRY_BYTES);
	DEFAULT(max_inflight_entries, ESDB_REPLICA_MAX_INFLIGHT);
	DEFAULT(max_queue_bytes, ESDB_REPLICA_QUEUE_BYTES);
#undef DEFAULT
	r->address = dup_str(cfg->address);
	r->bind_address = dup_str(cfg->bind_address);
	r->dir = dup_str(cfg->dir);
	size_t dl = strlen(cfg->dir) + sizeof("/raft");
	r->raft_dir = malloc(dl);
	r->members =
	    calloc(cfg->n_members ? cfg->n_members : 1, sizeof(*r->members));
	bool ok = r->address && r->dir && r->raft_dir && r->members &&
	          (!cfg->bind_address || r->bind_address);
	for (size_t i = 0; ok && i < cfg->n_members; i++) {
		r->members[i].id = cfg->members[i].id;
		ok = (r->members[i].address =
		          dup_str(cfg->members[i].address)) != NULL;
	}
	c->address = c->bind_address = c->dir = NULL;
	c->members = NULL;
	pthread_mutex_init(&r->lock, NULL);
	/* timed waits on it (snapshot_settle) keep to the monotonic clock:
	 * a wall clock set back would stretch them */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&r->writer_cond, NULL);
	esdb_commit_path cp = {
	    .impl = r,
	    .name = "raft",
	    .replicated = true,
	    .start = path_start,
	    .submit = path_submit,
	    .cancel = path_cancel,
	    .restored = path_restored,
	    .may_restore = path_may_restore,
	    .stop = path_stop,
	    .close = path_close,
	};
	if (!ok) {
		path_close(&cp);
		return ENOMEM;
	}
	snprintf(r->raft_dir, dl, "%s/raft", cfg->dir);
	int rc = esdb_store_set_commit_path(s, &cp);
	if (rc) {
		path_close(&cp);
		return rc;
	}
	*out = r;
	return 0;
}

uint64_t esdb_replica_get_id(esdb_replica *r)
{
	return r->id;
}

int esdb_replica_get_leader(esdb_replica *r, uint64_t *id, char *address,
                            size_t len)
{
	if (!r || !id)
		return ESDB_EINVAL;
	pthread_mutex_lock(&r->lock);
	*id = r->leader_id;
	if (address && len)
		snprintf(address, len, "%s", r->leader_address);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

uint64_t esdb_replica_get_term(esdb_replica *r)
{
	pthread_mutex_lock(&r->lock);
	uint64_t term = r->term;
	pthread_mutex_unlock(&r->lock);
	return term;
}

bool esdb_replica_is_leader(esdb_replica *r)
{
	pthread_mutex_lock(&r->lock);
	bool leader = r->leader && !r->failed;
	pthread_mutex_unlock(&r->lock);
	return leader;
}

uint64_t esdb_replica_get_applied(esdb_replica *r)
{
	pthread_mutex_lock(&r->lock);
	uint64_t applied = r->applied;
	pthread_mutex_unlock(&r->lock);
	return applied;
}

void esdb_replica_get_progress(esdb_replica *r, esdb_replica_progress *out)
{
	pthread_mutex_lock(&r->lock);
	out->commit = r->commit;
	out->last_index = r->last_index;
	out->applied = r->applied;
	out->loop_us = r->loop_us;
	pthread_mutex_unlock(&r->lock);
}

uint64_t esdb_replica_get_needs_copy(esdb_replica *r)
{
	pthread_mutex_lock(&r->lock);
	uint64_t want = r->needs_copy;
	pthread_mutex_unlock(&r->lock);
	return want;
}

int esdb_replica_get_failure(esdb_replica *r, char *msg, size_t len)
{
	pthread_mutex_lock(&r->lock);
	int rc = r->failed;
	if (msg && len)
		snprintf(msg, len, "%s", r->failure);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* Hand a change to the loop and wait for its outcome. */
static int run(esdb_replica *r, ctl *c)
{
	c->r = r;
	pthread_mutex_lock(&r->lock);
	if (!r->started || r->start_rc || r->stopping || r->failed) {
		int rc = r->failed ? r->failed : ESDB_ECLOSED;
		pthread_mutex_unlock(&r->lock);
		return rc;
	}
	c->next = r->ctl_head;
	r->ctl_head = c;
	if (r->wake_open)
		uv_async_send(&r->wake);
	while (!c->done)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	return c->rc;
}

int esdb_replica_get_members(esdb_replica *r, esdb_replica_member_info *out,
                             size_t cap, size_t *n)
{
	ctl c = {.kind = CTL_MEMBERS, .members = out, .cap = cap, .n = n};
	return run(r, &c);
}

int esdb_replica_add(esdb_replica *r, uint64_t id, const char *address)
{
	if (!r || !id || !address)
		return ESDB_EINVAL;
	ctl c = {.kind = CTL_ADD, .id = id, .address = address};
	return run(r, &c);
}

int esdb_replica_assign(esdb_replica *r, uint64_t id, int role)
{
	static const int roles[] = {RAFT_STANDBY, RAFT_VOTER, RAFT_SPARE};
	if (!r || !id || role < 0 || role > 2)
		return ESDB_EINVAL;
	ctl c = {.kind = CTL_ASSIGN, .id = id, .role = roles[role]};
	return run(r, &c);
}

int esdb_replica_remove(esdb_replica *r, uint64_t id)
{
	if (!r || !id)
		return ESDB_EINVAL;
	ctl c = {.kind = CTL_REMOVE, .id = id};
	return run(r, &c);
}

int esdb_replica_transfer(esdb_replica *r, uint64_t id)
{
	if (!r)
		return ESDB_EINVAL;
	ctl c = {.kind = CTL_TRANSFER, .id = id};
	return run(r, &c);
}

void esdb_replica_hold(esdb_replica *r)
{
	pthread_mutex_lock(&r->lock);
	r->holds++;
	pthread_mutex_unlock(&r->lock);
}

void esdb_replica_release(esdb_replica *r)
{
	pthread_mutex_lock(&r->lock);
	if (--r->holds == 0)
		pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}
