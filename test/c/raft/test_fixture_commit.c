/* test_fixture_commit.c: when followers learn that an entry is committed,
 * in raft's in-memory fixture (raft/fixture.h, deterministic, election
 * timeout 1000 ms, 15 ms links), with the heartbeat at 400 ms.
 *
 * A follower applies an entry only once it learns the leader committed it.
 * Raft 0.22.1 told followers the new commit index only with the next
 * AppendEntries: when nothing else is sent, the next heartbeat, a heartbeat
 * timeout or more after the last message. Patch 0005
 * (c_src/replica/patches) sends it when the commit index moves. */
#include "harness.h"

#include <raft.h>
#include <raft/fixture.h>

#define N         3
#define HEARTBEAT 400u /* < the election timeout (1000) over 2 */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
	(void)fsm;
	(void)buf;
	*result = NULL;
	return 0;
}

static void quiet_trace(struct raft_tracer *t, int type, const void *data)
{
	(void)t;
	(void)type;
	(void)data;
}

static struct raft_tracer quiet = {.version = 2, .emit = quiet_trace};
static struct raft_fsm g_fsm[N];

/* One entry proposed on the leader and committed there (applied by the
 * leader); every follower must apply it within half a heartbeat timeout
 * of that: a few link delays, not the next heartbeat. Unpatched, the
 * followers applied it 385-785 ms later. 40 entries, one after
 * another, each once the previous is everywhere. */
TEST(raft_fixture_followers_apply_a_commit_before_the_next_heartbeat)
{
	struct raft_fixture f;
	struct raft_configuration conf;
	REQUIRE(raft_fixture_initialize(&f) == 0);
	for (unsigned i = 0; i < N; i++) {
		g_fsm[i] = (struct raft_fsm){.version = 1, .apply = fsm_apply};
		REQUIRE(raft_fixture_grow(&f, &g_fsm[i]) == 0);
	}
	REQUIRE(raft_fixture_configuration(&f, N, &conf) == 0);
	REQUIRE(raft_fixture_bootstrap(&f, &conf) == 0);
	raft_configuration_close(&conf);
	for (unsigned i = 0; i < N; i++) {
		struct raft *r = raft_fixture_get(&f, i);
		raft_set_heartbeat_timeout(r, HEARTBEAT);
		r->tracer = &quiet; /* the fixture's prints every step */
	}
	REQUIRE(raft_fixture_start(&f) == 0);
	raft_fixture_elect(&f, 0);
	struct raft *leader = raft_fixture_get(&f, 0);
	raft_time slowest = 0;
	for (int k = 0; k < 40; k++) {
		/* idle for a while, the previous entry everywhere: heartbeats
		 * only, the entry proposed at every phase of the leader's tick
		 */
		raft_fixture_step_until_elapsed(&f, (unsigned)k * 37 % 1000);
		static struct raft_apply req[40];
		struct raft_buffer buf = {.len = 8, .base = raft_malloc(8)};
		REQUIRE(buf.base != NULL);
		memset(buf.base, 0, 8);
		REQUIRE(raft_apply(leader, &req[k], &buf, 1, NULL) == 0);
		raft_index index = raft_last_index(leader);
		REQUIRE(raft_fixture_step_until_applied(&f, 0, index, 1000));
		raft_time committed = raft_fixture_time(&f);
		REQUIRE(raft_fixture_step_until_applied(&f, N, index,
		                                        4 * HEARTBEAT));
		raft_time took = raft_fixture_time(&f) - committed;
		CHECK(took < HEARTBEAT / 2);
		if (took > slowest)
			slowest = took;
		CHECK_EQ(raft_state(leader), RAFT_LEADER);
	}
	printf("  40 entries: followers applied each at most %llu ms after "
	       "the leader\n",
	       (unsigned long long)slowest);
	raft_fixture_close(&f);
}
