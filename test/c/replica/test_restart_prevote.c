/* test_restart_prevote.c: a follower killed and restarted again and
 * again never deposes a live leader (c_src/replica/patches/0006). A node
 * that restarts waits for the leader's reconnection, may time out and
 * ask for pre-votes, and may be killed again with them out; the voters'
 * queued refusals reach the next process. raft 0.22.1 took their term
 * (the one the candidate asked for) as a follower's own and answered the
 * leader's AppendEntries with it: the leader stepped down and its
 * appends in flight were answered outcome_unknown.
 *
 * Deposed means: the leader lost its leadership to a higher term while
 * it was live, i.e. soon after a quorum acknowledged one of its appends.
 * Every voter of that quorum heard from the leader after the append was
 * requested and refuses pre-votes and votes for an election timeout
 * after hearing from it (patch 0002), and the leader itself keeps its
 * leadership that long; any two majorities share a voter, so no election
 * can be won in that window and a higher term in it can only be a
 * deposition. Later, a leader starved of CPU (a loaded machine) may
 * step down by itself in its own term, having heard from no quorum
 * within the election timeout, or learn a later term from an election
 * the others held while it was frozen: its appends answered
 * outcome_unknown (or not_leader) then are taken, the test waits for the
 * next leader and goes on with it. A step-down in its own term is never
 * a deposition. The nodes' reports of their leadership (leader_log.h)
 * tell when and in which term the leader lost it. */
#include "harness.h"

#include "cluster.h"
#include "leader_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static unsigned env_count(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

/* Whether a leader that reported `led` and then `loss` was deposed:
 * `loss` is in a higher term and was reported less than window_ms after
 * quorum_ms (when its last append a quorum acknowledged was requested; 0:
 * none was). */
static bool deposed(const leader_report *led, const leader_report *loss,
                    uint64_t quorum_ms, unsigned window_ms)
{
	return loss->term > led->term && quorum_ms &&
	       loss->at_ms < quorum_ms + window_ms;
}

TEST(a_deposition_is_a_higher_term_while_the_leader_was_live)
{
	/* {node, term, leader, self, at_ms} */
	leader_report led = {1, 2, 1, 1, 100};
	leader_report own_term = {1, 2, 0, 0, 1000};
	leader_report higher = {1, 3, 0, 0, 1000};
	leader_report higher_named = {1, 3, 2, 0, 1000};
	CHECK(!deposed(&led, &own_term, 990, 250));
	CHECK(deposed(&led, &higher, 990, 250));
	CHECK(deposed(&led, &higher_named, 990, 250));
	CHECK(deposed(&led, &higher, 751, 250));
	CHECK(!deposed(&led, &higher, 750, 250)); /* silent long enough */
	CHECK(!deposed(&led, &higher, 0, 250));   /* never acknowledged */
}

typedef struct appender {
	cluster *c;
	int leader;
	_Atomic bool stop;
	uint64_t next; /* never reused: an unknown outcome may be in */
	uint64_t done;
	/* when the last append a quorum acknowledged on this leader was
	 * requested (mono_ms), 0 before the first */
	uint64_t quorum_ms;
	size_t log_from; /* the leader_log's length when it started on it */
	_Atomic int rc;  /* the first append not acknowledged */
} appender;

/* One append in flight on the leader, until told to stop or one fails. */
static void *append_loop(void *arg)
{
	appender *a = arg;
	while (!a->stop) {
		node_info info;
		uint64_t at = mono_ms();
		node_append(a->c, a->leader, "s", a->next++, &info);
		if (info.rc) {
			a->rc = info.rc;
			break;
		}
		a->quorum_ms = at;
		a->done++;
	}
	return NULL;
}

/* The first report of node id, from the log's report `from` on, that it
 * does not lead (into *loss), and its report of leading before that
 * (into *led); whether there is one. */
static bool lost_leadership(leader_log *l, size_t from, uint64_t id,
                            leader_report *led, leader_report *loss)
{
	bool leading = false, lost = false;
	pthread_mutex_lock(&l->lock);
	for (size_t k = 0; k < l->n && !lost; k++) {
		const leader_report *r = &l->reports[k];
		if (r->node != id)
			continue;
		if (r->self)
			*led = *r;
		else if (leading && k >= from)
			*loss = *r, lost = true;
		leading = r->self;
	}
	pthread_mutex_unlock(&l->lock);
	return lost;
}

/* For a failure's diagnosis. */
static void print_reports(leader_log *l)
{
	pthread_mutex_lock(&l->lock);
	for (size_t k = 0; k < l->n; k++) {
		const leader_report *r = &l->reports[k];
		fprintf(stderr,
		        "     at %" PRIu64 " ms node %" PRIu64 " term %" PRIu64
		        ": leader %" PRIu64 "%s\n",
		        r->at_ms, r->node, r->term, r->leader,
		        r->self ? " (itself)" : "");
	}
	pthread_mutex_unlock(&l->lock);
}

/* The appender stopped, on an error or told to: an error is taken only
 * when its leader reports (within 10 s) that it stopped leading; that it
 * stopped leading is taken when it was no deposition. Else the test
 * fails and false. *lost: whether it stopped leading. */
static bool check_leader(cluster *c, leader_log *l, appender *a, bool *lost)
{
	uint64_t id = c->nodes[a->leader].id, end = mono_ms() + 10000;
	leader_report led = {0}, loss = {0};
	while (!(*lost = lost_leadership(l, a->log_from, id, &led, &loss)) &&
	       a->rc && mono_ms() < end)
		usleep(10000);
	if (a->rc && (!*lost || (a->rc != ESDB_EOUTCOME_UNKNOWN &&
	                         a->rc != ESDB_ENOT_LEADER))) {
		harness_fail(__FILE__, __LINE__,
		             "append %" PRIu64 " on node %" PRIu64
		             " answered %d, %s",
		             a->next - 1, id, a->rc,
		             *lost ? "the node no longer leading"
		                   : "the node still leading");
		print_reports(l);
		return false;
	}
	/* half the election timeout: a voter measures it from its loop's
	 * time, which lags the clock by the iteration it is in */
	unsigned window = c->election_ms / 2;
	if (*lost && deposed(&led, &loss, a->quorum_ms, window)) {
		harness_fail(__FILE__, __LINE__,
		             "node %" PRIu64 " led term %" PRIu64
		             " and lost it to term %" PRIu64 " %" PRId64
		             " ms after a quorum acknowledged an append "
		             "(deposed)",
		             id, led.term, loss.term,
		             (int64_t)(loss.at_ms - a->quorum_ms));
		print_reports(l);
		return false;
	}
	return true;
}

TEST(a_restarting_follower_never_deposes_the_leader)
{
	unsigned restarts = 8 * env_count("ESDB_REPLICA_KILLS", 5);
	cluster c;
	cluster_init(&c, 5);
	/* no snapshot in the run: a follower behind one would wait for a
	 * store copy, which this harness does not make */
	c.snapshot_threshold = 1u << 20;
	leader_log log;
	leader_log_start(&log, &c);
	appender a = {.c = &c, .leader = cluster_start_all(&c), .next = 1};
	/* its reports from before that are not of its leadership */
	a.log_from = leader_log_count(&log);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, append_loop, &a) == 0);
	int f = (a.leader + 1) % 5;
	unsigned losses = 0, k;
	bool ok = true, lost;
	/* down and up for 0-0.6 s each: some restarts time out and ask for
	 * pre-votes before the leader's reconnection reaches them */
	for (k = 0; k < restarts; k++) {
		if (a.rc) { /* its leader stopped leading: go on with the next
			     */
			pthread_join(t, NULL);
			if (!(ok = check_leader(&c, &log, &a, &lost)))
				break;
			losses++;
			a.leader = cluster_wait_leader(&c, 20000);
			REQUIRE(a.leader >= 0);
			a.rc = 0;
			a.quorum_ms = 0;
			a.log_from = leader_log_count(&log);
			REQUIRE(pthread_create(&t, NULL, append_loop, &a) == 0);
			if (f == a.leader)
				f = (a.leader + 1) % 5;
		}
		usleep(200000 + (k % 5) * 100000);
		node_kill(&c, f);
		usleep((k % 3) * 100000);
		node_start(&c, f);
	}
	if (ok) {
		a.stop = true;
		pthread_join(t, NULL);
		if ((ok = check_leader(&c, &log, &a, &lost)) && lost)
			losses++;
	}
	printf("     %u restarts, %" PRIu64 " appends, %u leaders lost "
	       "their leadership undeposed\n",
	       k, a.done, losses);
	REQUIRE(cluster_wait_leader(&c, 20000) >= 0);
	REQUIRE(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
	leader_log_stop(&log, &c);
	leader_log_free(&log);
}
