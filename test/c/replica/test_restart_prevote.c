/* test_restart_prevote.c: a follower killed and restarted again and
 * again never deposes a live leader (c_src/replica/patches/0006). A node
 * that restarts waits for the leader's reconnection, may time out and
 * ask for pre-votes, and may be killed again with them out; the voters'
 * queued refusals reach the next process. raft 0.22.1 took their term
 * (the one the candidate asked for) as a follower's own and answered the
 * leader's AppendEntries with it: the leader stepped down and its
 * appends in flight were answered outcome_unknown. */
#include "harness.h"

#include "cluster.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static unsigned env_count(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

typedef struct appender {
	cluster *c;
	int leader;
	_Atomic bool stop;
	uint64_t done, first_term;
	int rc; /* the first append not acknowledged */
	node_info last;
} appender;

/* One append in flight on the leader, until told to stop or one fails. */
static void *append_loop(void *arg)
{
	appender *a = arg;
	for (uint64_t n = 1; !a->stop; n++) {
		node_append(a->c, a->leader, "s", n, &a->last);
		if (a->last.rc) {
			a->rc = a->last.rc;
			break;
		}
		a->done = n;
	}
	return NULL;
}

TEST(a_restarting_follower_never_deposes_the_leader)
{
	unsigned restarts = 8 * env_count("ESDB_REPLICA_KILLS", 5);
	cluster c;
	cluster_init(&c, 5);
	/* no snapshot in the run: a follower behind one would wait for a
	 * store copy, which this harness does not make */
	c.snapshot_threshold = 1u << 20;
	int leader = cluster_start_all(&c);
	node_info info;
	node_get_info(&c, leader, &info);
	appender a = {.c = &c, .leader = leader, .first_term = info.term};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, append_loop, &a) == 0);
	int f = (leader + 1) % 5;
	/* down and up for 0-0.6 s each: some restarts time out and ask for
	 * pre-votes before the leader's reconnection reaches them */
	for (unsigned k = 0; k < restarts && !a.rc; k++) {
		usleep(200000 + (k % 5) * 100000);
		node_kill(&c, f);
		usleep((k % 3) * 100000);
		node_start(&c, f);
	}
	a.stop = true;
	pthread_join(t, NULL);
	printf("     %u restarts, %" PRIu64 " appends\n", restarts, a.done);
	if (a.rc)
		harness_fail(__FILE__, __LINE__,
		             "append %" PRIu64 " answered %d (term %" PRIu64
		             " -> %" PRIu64 ", leader %" PRIu64 ")",
		             a.done + 1, a.rc, a.first_term, a.last.term,
		             a.last.leader_id);
	node_get_info(&c, leader, &info);
	CHECK_EQ(info.is_leader, 1);
	CHECK_EQ(info.term, a.first_term);
	REQUIRE(cluster_wait_leader(&c, 20000) >= 0);
	REQUIRE(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
}
