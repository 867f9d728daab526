/* test_fixture_snapshot.c: the snapshot_pending crash of raft 0.22.1
 * (REPLICATION.md; c_src/replica/patches/0001), step by step in raft's
 * in-memory fixture (raft/fixture.h, deterministic): a follower starts
 * taking its own snapshot, its disk made slow so the write stays in
 * flight; cut off, it falls behind the leader's compacted log; reconnected,
 * it is sent InstallSnapshot while still taking its own. Unpatched,
 * takeSnapshotCb then passes NULL to legacyPersistSnapshotStart: the test
 * runs the cluster in a child and fails when that child dies. */
#include "harness.h"

#include <raft.h>
#include <raft/fixture.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define N          3
#define SLOW       3 /* the follower with the slow disk */
#define THRESHOLD  64
#define TRAILING   32
#define TRACE_FILE "build/raft-fixture-trace.log"

typedef struct counting_fsm {
	uint64_t applied;
	unsigned snapshots, restores;
} counting_fsm;

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
	counting_fsm *c = fsm->data;
	(void)buf;
	c->applied++;
	*result = NULL;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
	counting_fsm *c = fsm->data;
	struct raft_buffer *b = raft_malloc(sizeof *b);
	if (b == NULL)
		return RAFT_NOMEM;
	b->len = sizeof c->applied;
	b->base = raft_malloc(b->len);
	if (b->base == NULL) {
		raft_free(b);
		return RAFT_NOMEM;
	}
	memcpy(b->base, &c->applied, sizeof c->applied);
	*bufs = b;
	*n_bufs = 1;
	c->snapshots++;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	counting_fsm *c = fsm->data;
	if (buf->len != sizeof c->applied)
		return RAFT_MALFORMED;
	memcpy(&c->applied, buf->base, sizeof c->applied);
	raft_free(buf->base);
	c->restores++;
	return 0;
}

static counting_fsm g_fsm[N];
static struct raft_fsm g_raft_fsm[N];

static void submit(struct raft_fixture *f, unsigned n)
{
	struct raft *leader = raft_fixture_get(f, raft_fixture_leader_index(f));
	for (unsigned i = 0; i < n; i++) {
		struct raft_apply *req =
		    malloc(sizeof *req); /* freed at exit */
		struct raft_buffer buf = {.len = 8, .base = raft_malloc(8)};
		if (req == NULL || buf.base == NULL)
			_exit(5);
		memset(buf.base, 0, 8);
		if (raft_apply(leader, req, &buf, 1, NULL) != 0)
			_exit(6);
	}
}

static bool slow_snapshot_started(struct raft_fixture *f, void *arg)
{
	unsigned *before = arg;
	(void)f;
	return g_fsm[SLOW - 1].snapshots > *before;
}

static bool slow_restored(struct raft_fixture *f, void *arg)
{
	(void)f;
	(void)arg;
	return g_fsm[SLOW - 1].restores > 0;
}

/* The scenario, in a child. Exit 0: the follower installed the leader's
 * snapshot; 10 + step: a step did not happen. */
static void scenario(void)
{
	struct raft_fixture f;
	struct raft_configuration conf;
	if (raft_fixture_initialize(&f) != 0)
		_exit(2);
	for (unsigned i = 0; i < N; i++) {
		g_raft_fsm[i] = (struct raft_fsm){.version = 1,
		                                  .data = &g_fsm[i],
		                                  .apply = fsm_apply,
		                                  .snapshot = fsm_snapshot,
		                                  .restore = fsm_restore};
		if (raft_fixture_grow(&f, &g_raft_fsm[i]) != 0)
			_exit(2);
	}
	if (raft_fixture_configuration(&f, N, &conf) != 0 ||
	    raft_fixture_bootstrap(&f, &conf) != 0)
		_exit(2);
	raft_configuration_close(&conf);
	for (unsigned i = 0; i < N; i++) {
		struct raft *r = raft_fixture_get(&f, i);
		raft_set_snapshot_threshold(r, THRESHOLD);
		raft_set_snapshot_trailing(r, TRAILING);
	}
	/* The slow follower must not stand for election while cut off (the
	 * fixture's timeout must lie in [timeout, 2 * timeout]). */
	raft_set_election_timeout(raft_fixture_get(&f, SLOW - 1), 30000);
	raft_fixture_set_randomized_election_timeout(&f, SLOW - 1, 30000);
	if (raft_fixture_start(&f) != 0)
		_exit(2);
	raft_fixture_elect(&f, 0);

	/* 1. Entries until the slow follower is one short of its snapshot
	 *    threshold: it snapshots the first time here (index >= 64), then
	 *    every 64; stop at its next-to-last entry before the second. */
	struct raft *slow = raft_fixture_get(&f, SLOW - 1);
	while (g_fsm[SLOW - 1].snapshots == 0) {
		submit(&f, 1);
		if (!raft_fixture_step_until_applied(
		        &f, N, raft_last_index(raft_fixture_get(&f, 0)), 5000))
			_exit(11);
	}
	raft_index first = raft_last_applied(slow);
	while (raft_last_applied(slow) < first + THRESHOLD - 1) {
		submit(&f, 1);
		if (!raft_fixture_step_until_applied(
		        &f, N, raft_last_index(raft_fixture_get(&f, 0)), 5000))
			_exit(12);
	}

	/* 2. The slow follower's disk takes 20 s from now: the next entry
	 *    makes it take a snapshot whose write stays in flight. */
	raft_fixture_set_disk_latency(&f, SLOW - 1, 20000);
	unsigned before = g_fsm[SLOW - 1].snapshots;
	submit(&f, 1);
	if (!raft_fixture_step_until(&f, slow_snapshot_started, &before, 20000))
		_exit(13);

	/* 3. Cut off, it falls behind: the leader commits with the other
	 *    follower and compacts past it. */
	raft_fixture_disconnect(&f, 0, SLOW - 1);
	raft_fixture_disconnect(&f, SLOW - 1, 0);
	submit(&f, 3 * THRESHOLD);
	if (!raft_fixture_step_until_applied(
	        &f, 0, raft_last_index(raft_fixture_get(&f, 0)), 5000))
		_exit(14);

	/* 4. Reconnected while its own snapshot is still being written, it is
	 *    sent the leader's snapshot. */
	raft_fixture_reconnect(&f, 0, SLOW - 1);
	raft_fixture_reconnect(&f, SLOW - 1, 0);
	if (!raft_fixture_step_until(&f, slow_restored, NULL, 120000))
		_exit(15);
	_exit(0);
}

TEST(raft_fixture_install_snapshot_while_taking_one)
{
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* The fixture traces every event: keep them out of the
		 * suite's output, in a file for when this fails. */
		int fd = open(TRACE_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		scenario();
	}
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		harness_fail(__FILE__, __LINE__,
		             "the follower's process died of signal %d (%s); "
		             "raft's trace: " TRACE_FILE,
		             WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (WEXITSTATUS(status) != 0)
		harness_fail(__FILE__, __LINE__,
		             "scenario exit %d (10 + the step that did not "
		             "happen); raft's trace: " TRACE_FILE,
		             WEXITSTATUS(status));
}
