/* test_fixture_election.c: who may refuse a vote because of a leader, in
 * raft's in-memory fixture (raft/fixture.h, deterministic, pre-vote on,
 * election timeout T = 1000 ms, heartbeat 100 ms, 15 ms links).
 *
 * The thesis (section 4.2.3) disregards RequestVote only within the minimum
 * election timeout of hearing from a current leader. Raft 0.22.1 refused as
 * long as a follower remembered its leader, until its own randomized timer
 * (in [T, 2T]) fired, so after a leader kill the first survivor to time out
 * waited for the last one (c_src/replica/patches/0002; the failover figures
 * in docs/PERFORMANCE.md). The second test keeps pre-vote's protection: a
 * server cut off from the leader alone cannot take the majority's vote
 * while the majority hears the leader. */
#include "harness.h"

#include <raft.h>
#include <raft/fixture.h>

#define N 3
#define T 1000u /* the fixture's election timeout, ms */

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

/* Three voters with pre-vote, server 0 elected and heard by both others. */
static void start_three(struct raft_fixture *f)
{
	struct raft_configuration conf;
	REQUIRE(raft_fixture_initialize(f) == 0);
	for (unsigned i = 0; i < N; i++) {
		g_fsm[i] = (struct raft_fsm){.version = 1, .apply = fsm_apply};
		REQUIRE(raft_fixture_grow(f, &g_fsm[i]) == 0);
	}
	REQUIRE(raft_fixture_configuration(f, N, &conf) == 0);
	REQUIRE(raft_fixture_bootstrap(f, &conf) == 0);
	raft_configuration_close(&conf);
	for (unsigned i = 0; i < N; i++) {
		struct raft *r = raft_fixture_get(f, i);
		REQUIRE(r->election_timeout == T);
		raft_set_pre_vote(r, true);
		r->tracer = &quiet; /* the fixture's prints every step */
	}
	REQUIRE(raft_fixture_start(f) == 0);
	raft_fixture_elect(f, 0);
	raft_fixture_step_until_elapsed(f, 3 * T);
	REQUIRE(raft_state(raft_fixture_get(f, 0)) == RAFT_LEADER);
}

static bool one_or_two_leads(struct raft_fixture *f, void *arg)
{
	(void)arg;
	return raft_state(raft_fixture_get(f, 1)) == RAFT_LEADER ||
	       raft_state(raft_fixture_get(f, 2)) == RAFT_LEADER;
}

/* Leader 0 killed; server 1's timer is set to fire 1.1 T after it last
 * heard 0, server 2's 1.9 T after. Server 2 has not heard 0 for T by the
 * time server 1 asks: it must grant, and server 1 lead well before 1.9 T.
 * Unpatched, server 2 refused until its own timer fired and then won
 * itself, ~1.95 T after the kill. */
TEST(raft_fixture_failover_first_timer_wins)
{
	struct raft_fixture f;
	start_three(&f);
	raft_fixture_get(&f, 1)->follower_state.randomized_election_timeout =
	    T * 11 / 10;
	raft_fixture_get(&f, 2)->follower_state.randomized_election_timeout =
	    T * 19 / 10;
	raft_term term = raft_current_term(raft_fixture_get(&f, 1));
	raft_time killed = raft_fixture_time(&f);
	raft_fixture_kill(&f, 0);

	REQUIRE(raft_fixture_step_until(&f, one_or_two_leads, NULL, 4 * T));
	raft_time took = raft_fixture_time(&f) - killed;
	printf("  new leader: server %u, %llu ms after the kill\n",
	       raft_state(raft_fixture_get(&f, 1)) == RAFT_LEADER ? 1u : 2u,
	       (unsigned long long)took);
	CHECK_EQ(raft_state(raft_fixture_get(&f, 1)), RAFT_LEADER);
	CHECK_EQ(raft_state(raft_fixture_get(&f, 2)), RAFT_FOLLOWER);
	/* issue 12's failover target: p50 within 1.5 T */
	CHECK(took < T * 3 / 2);
	/* one election: pre-vote kept the term until it was won */
	CHECK_EQ(raft_current_term(raft_fixture_get(&f, 1)), term + 1);
	raft_fixture_close(&f);
}

/* Only the link between leader 0 and server 2 cut, both ways, for 10 T:
 * server 2 times out again and again and asks server 1, which hears the
 * leader every heartbeat and must refuse. Nobody's term moves and 0 stays
 * leader; after the link is back, too. */
TEST(raft_fixture_prevote_cut_follower_does_not_disrupt)
{
	struct raft_fixture f;
	start_three(&f);
	raft_term term = raft_current_term(raft_fixture_get(&f, 0));
	unsigned asked = raft_fixture_n_recv(&f, 1, RAFT_REQUEST_VOTE);
	raft_fixture_disconnect(&f, 0, 2);
	raft_fixture_disconnect(&f, 2, 0);
	raft_fixture_step_until_elapsed(&f, 10 * T);
	/* the case is reached: server 2 did ask server 1 */
	CHECK(raft_fixture_n_recv(&f, 1, RAFT_REQUEST_VOTE) > asked);
	CHECK_EQ(raft_state(raft_fixture_get(&f, 0)), RAFT_LEADER);
	CHECK_EQ(raft_state(raft_fixture_get(&f, 1)), RAFT_FOLLOWER);
	CHECK_EQ(raft_current_term(raft_fixture_get(&f, 0)), term);
	CHECK_EQ(raft_current_term(raft_fixture_get(&f, 1)), term);
	CHECK_EQ(raft_current_term(raft_fixture_get(&f, 2)), term);

	raft_fixture_reconnect(&f, 0, 2);
	raft_fixture_reconnect(&f, 2, 0);
	raft_fixture_step_until_elapsed(&f, 3 * T);
	CHECK_EQ(raft_state(raft_fixture_get(&f, 0)), RAFT_LEADER);
	CHECK_EQ(raft_state(raft_fixture_get(&f, 2)), RAFT_FOLLOWER);
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(raft_current_term(raft_fixture_get(&f, i)), term);
	raft_fixture_close(&f);
}
