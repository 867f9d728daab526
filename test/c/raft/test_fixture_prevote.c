/* test_fixture_prevote.c: raft 0.22.1's pre-vote can leave a cluster
 * with no leader for good (c_src/replica/patches/0002), step by step in
 * raft's in-memory fixture (raft/fixture.h, deterministic). Two of three
 * voters are up: one holds the longer log at a lower term, the other a
 * higher term and a shorter log (as a 5-node ring partition left them:
 * test_partitions.c, nodes churned to term 83 beside neighbours at term
 * 5 with more entries). The short log's pre-vote is denied for its log;
 * the long log's pre-vote is denied for its lower term, and the denial
 * carried the candidate's own next term, so it never learned the higher
 * one and asked again at the same term, forever. The test runs the
 * cluster in a child (the fixture traces every event to a file) and
 * fails unless one of the two is elected. */
#include "harness.h"

#include <raft.h>
#include <raft/fixture.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#define N          3
#define TRACE_FILE "build/raft-fixture-prevote-trace.log"

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
	(void)fsm;
	(void)buf;
	*result = NULL;
	return 0;
}

static struct raft_fsm g_fsm[N];

/* Exit 0: the long log was elected in a term above the short log's;
 * 10 + step: a step did not happen. */
static void scenario(void)
{
	struct raft_fixture f;
	struct raft_configuration conf;
	if (raft_fixture_initialize(&f) != 0)
		_exit(2);
	for (unsigned i = 0; i < N; i++) {
		g_fsm[i] = (struct raft_fsm){.version = 1, .apply = fsm_apply};
		if (raft_fixture_grow(&f, &g_fsm[i]) != 0)
			_exit(2);
	}
	if (raft_fixture_configuration(&f, N, &conf) != 0 ||
	    raft_fixture_bootstrap(&f, &conf) != 0)
		_exit(2);
	raft_configuration_close(&conf);
	/* server 0: term 2, one entry of term 2 past the configuration;
	 * server 1: term 5, only the configuration (term 1) */
	raft_fixture_set_term(&f, 0, 2);
	struct raft_entry e = {.term = 2,
	                       .type = RAFT_COMMAND,
	                       .buf = {.len = 8, .base = raft_malloc(8)}};
	if (e.buf.base == NULL)
		_exit(2);
	memset(e.buf.base, 0, 8);
	raft_fixture_add_entry(&f, 0, &e);
	raft_fixture_set_term(&f, 1, 5);
	for (unsigned i = 0; i < N; i++)
		raft_set_pre_vote(raft_fixture_get(&f, i), true);
	if (raft_fixture_start(&f) != 0)
		_exit(2);
	raft_fixture_kill(&f, 2); /* the third voter is down */

	/* twenty election timeouts (the fixture's: 1 s, randomized to
	 * at most 2 s) */
	if (!raft_fixture_step_until_has_leader(&f, 40000))
		_exit(11);
	unsigned leader = raft_fixture_leader_index(&f);
	if (leader != 0) /* the short log cannot win: its log is behind */
		_exit(12);
	if (raft_fixture_get(&f, 0)->current_term <= 5)
		_exit(13);
	_exit(0);
}

TEST(raft_fixture_prevote_elects_a_long_log_at_a_lower_term)
{
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
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
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		harness_fail(
		    __FILE__, __LINE__,
		    "%s %d (11: no leader in 40 s of fixture time, 12: "
		    "the short log led, 13: the term did not pass 5; "
		    "trace in " TRACE_FILE ")",
		    WIFEXITED(status) ? "exit" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}
