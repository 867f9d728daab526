/* test_cluster.c: three replica processes, raft over TCP on loopback. */
#include "harness.h"

#include "cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned env_count(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

TEST(three_replicas_form_and_replicate_appends)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	for (uint64_t n = 1; n <= 50; n++) {
		node_info info;
		node_append(&c, leader, n % 2 ? "odd" : "even", n, &info);
		CHECK_RC(info.rc, 0);
		CHECK_EQ(info.position, n);
		CHECK_EQ(info.version, (n + 1) / 2);
	}
	REQUIRE(cluster_wait_converged(&c, 20000));
	for (int i = 0; i < 3; i++) {
		node_info info;
		node_get_info(&c, i, &info);
		CHECK_EQ(info.events, 51); /* and the fence */
		CHECK_EQ(info.failed, 0);
	}
	cluster_check_and_free(&c);
}

TEST(a_follower_answers_not_leader_and_names_the_leader)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	int follower = (leader + 1) % 3;
	node_info info;
	node_append(&c, follower, "s", 1, &info);
	CHECK_RC(info.rc, ESDB_ENOT_LEADER);
	CHECK_EQ(info.position, 0);
	CHECK_EQ(info.leader_id, c.nodes[leader].id);
	CHECK_EQ(info.events, 0);
	/* ... and wrote nothing: the leader's next append is position 1 */
	node_append(&c, leader, "s", 2, &info);
	CHECK_RC(info.rc, 0);
	CHECK_EQ(info.position, 1);
	REQUIRE(cluster_wait_converged(&c, 20000));
	cluster_check_and_free(&c);
}

/* Leadership moved to node `to` by transfers from whichever node leads,
 * tried again while it is elsewhere: under load a transfer can time out
 * or an unrelated election pick another node. */
static bool move_leader(cluster *c, int to)
{
	for (int try = 0; try < 10; try++) {
		int l = cluster_wait_leader(c, 20000);
		if (l == to)
			return true;
		if (l < 0)
			continue;
		node_info info;
		node_transfer(c, l, to, &info);
		uint64_t until = mono_ms() + 5000;
		while (mono_ms() < until)
			if (cluster_wait_leader(c, 1000) == to)
				return true;
	}
	return false;
}

/* A command fenced to a raft term (esdb_replica_fence_term, the C node's
 * in_term) is queued only while its node leads in that term, checked
 * under the lock that queues it. The C node checked the term and queued
 * in two steps: a thread held between them while leadership left and
 * came back queued it in the later term, after its client could have
 * given it up and resent it elsewhere. Modelled: the term read, then
 * leadership moved away and back, then the fenced append. */
TEST(a_command_fenced_to_a_term_is_queued_only_in_that_term)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	node_info info;
	node_get_info(&c, leader, &info);
	uint64_t term = info.term;
	node_append_in_term(&c, leader, "s", 1, term, &info);
	CHECK_RC(info.rc, 0);
	CHECK_EQ(info.version, 1);
	node_append_in_term(&c, leader, "s", 2, term + 1, &info);
	CHECK_RC(info.rc, ESDB_ENOT_LEADER);
	/* the same node leads again, in a later term */
	int other = (leader + 1) % 3;
	REQUIRE(move_leader(&c, other));
	REQUIRE(move_leader(&c, leader));
	node_get_info(&c, leader, &info);
	uint64_t later = info.term;
	REQUIRE(later > term);
	node_append_in_term(&c, leader, "s", 3, term, &info);
	CHECK_RC(info.rc, ESDB_ENOT_LEADER);
	/* 3 was not written: the next is version 2 */
	node_append_in_term(&c, leader, "s", 4, later, &info);
	CHECK_RC(info.rc, 0);
	CHECK_EQ(info.version, 2);
	/* the fence is the calling thread's only while set */
	node_append(&c, leader, "s", 5, &info);
	CHECK_RC(info.rc, 0);
	CHECK_EQ(info.version, 3);
	REQUIRE(cluster_wait_converged(&c, 20000));
	cluster_check_and_free(&c);
}

/* A follower applies a committed entry when the leader commits it, not
 * at the leader's next heartbeat: the gateway's read-your-writes on a
 * follower waits for exactly that. Heartbeat 2 s (raft's ticks fire every
 * heartbeat, so a follower that learns the commit index only from
 * heartbeats learns it 2-4 s late); every follower must have applied each
 * append within 1 s of its acknowledgement on the leader. */
TEST(a_follower_applies_a_commit_before_the_next_heartbeat)
{
	cluster c;
	cluster_init(&c, 3);
	c.heartbeat_ms = 2000;
	c.election_ms = 5000; /* > the longest gap between heartbeats */
	int leader = cluster_start_all(&c);
	for (uint64_t n = 1; n <= 3; n++) {
		node_info info;
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0);
		uint64_t want = info.applied, end = mono_ms() + 1000;
		for (int i = 0; i < 3; i++) {
			if (i == leader)
				continue;
			node_info f;
			for (;;) {
				node_get_info(&c, i, &f);
				if (f.applied >= want || mono_ms() >= end)
					break;
				usleep(2000);
			}
			CHECK(f.applied >= want);
		}
	}
	REQUIRE(cluster_wait_converged(&c, 20000));
	cluster_check_and_free(&c);
}

/* kill -9 the leader: the survivors see the connection it sent them
 * entries on close, and one of them leads well before an election
 * timeout (3 s here) has passed; waiting for the timer, no survivor can
 * even ask for votes until T after its last heartbeat. Twice, the killed
 * node restarted and caught up in between. */
TEST(a_killed_leaders_followers_elect_before_the_election_timeout)
{
	cluster c;
	cluster_init(&c, 3);
	c.election_ms = 3000;
	int leader = cluster_start_all(&c);
	for (uint64_t n = 1; n <= 2; n++) {
		node_info info;
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0);
		node_kill(&c, leader);
		uint64_t t0 = mono_ms();
		int next = cluster_wait_leader(&c, c.election_ms * 4 / 5);
		uint64_t took = mono_ms() - t0;
		printf("     a new leader %" PRIu64 " ms after the kill\n",
		       took);
		CHECK(next >= 0);
		node_start(&c, leader);
		if (next < 0)
			break;
		REQUIRE(cluster_wait_converged(&c, 20000));
		leader = next;
	}
	REQUIRE(cluster_wait_leader(&c, 20000) >= 0);
	REQUIRE(cluster_wait_converged(&c, 20000));
	cluster_check_and_free(&c);
}

TEST(a_restarted_replica_catches_up)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	int follower = (leader + 1) % 3;
	node_stop(&c, follower);
	node_info info;
	for (uint64_t n = 1; n <= 20; n++) {
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0);
	}
	node_start(&c, follower);
	REQUIRE(cluster_wait_converged(&c, 20000));
	node_get_info(&c, follower, &info);
	CHECK_EQ(info.events, 21); /* and the fence */
	cluster_check_and_free(&c);
}

/* kill -9 the leader under load, ESDB_REPLICA_KILLS times (restarting
 * it each time): every acknowledged append is on every replica at the
 * position it was acknowledged with, positions gap-free, none twice. */
TEST(killing_the_leader_under_load_loses_no_acknowledged_append)
{
	unsigned kills = env_count("ESDB_REPLICA_KILLS", 5);
	cluster c;
	cluster_init(&c, 3);
	cluster_start_all(&c);
	for (int i = 0; i < 3; i++)
		node_writers(&c, i, 8);
	for (unsigned k = 0; k < kills; k++) {
		int leader = cluster_wait_leader(&c, 20000);
		REQUIRE(leader >= 0);
		/* under load: wait for the new leader's acknowledgements */
		CHECK(cluster_wait_acks(&c, 100));
		node_kill(&c, leader);
		node_start(&c, leader);
		node_writers(&c, leader, 8);
	}
	for (int i = 0; i < 3; i++)
		node_writers(&c, i, 0);
	REQUIRE(cluster_wait_leader(&c, 20000) >= 0);
	REQUIRE(cluster_wait_converged(&c, 30000));
	for (int i = 0; i < 3; i++) {
		node_info info;
		node_get_info(&c, i, &info);
		CHECK_EQ(info.failed, 0);
	}
	CHECK(cluster_acks(&c) > 0);
	node_info info;
	node_get_info(&c, 0, &info);
	printf("     %u leader kills, %zu acknowledged appends, %" PRIu64
	       " events\n",
	       kills, cluster_acks(&c), info.events);
	cluster_check_and_free(&c);
}

/* Writers at exact versions retrying outcome_unknown (and not_leader)
 * with the same event while leadership moves, ESDB_REPLICA_KILLS rounds
 * of: the leader paused (SIGSTOP) until another leads, resumed and handed
 * leadership back (its writers' retries then reach a log that may already
 * hold their event), and the leader killed. No event is written twice or
 * out of order (a retry of what is in gets its original result), every
 * acknowledged one is present. */
TEST(retries_across_leader_changes_write_nothing_twice)
{
	unsigned rounds = env_count("ESDB_REPLICA_KILLS", 5);
	cluster c;
	cluster_init(&c, 3);
	cluster_start_all(&c);
	for (int i = 0; i < 3; i++)
		node_writers_retrying(&c, i, 8);
	uint64_t unknown = 0;
	for (unsigned k = 0; k < rounds; k++) {
		int leader = cluster_wait_leader(&c, 20000);
		REQUIRE(leader >= 0);
		cluster_wait_acks(&c, 100);
		node_pause(&c, leader, true);
		int next = cluster_wait_leader(&c, 20000);
		REQUIRE(next >= 0);
		node_pause(&c, leader, false);
		REQUIRE(cluster_wait_leader(&c, 20000) == next);
		node_info info;
		node_transfer(&c, next, leader, &info);
		if (cluster_wait_leader(&c, 20000) == leader) {
			cluster_wait_acks(&c, 100);
		}
		node_get_info(&c, leader, &info);
		unknown += info.unknown;
		leader = cluster_wait_leader(&c, 20000);
		REQUIRE(leader >= 0);
		node_kill(&c, leader);
		node_start(&c, leader);
		node_writers_retrying(&c, leader, 8);
	}
	for (int i = 0; i < 3; i++)
		node_writers(&c, i, 0);
	REQUIRE(cluster_wait_converged(&c, 30000));
	printf("     %zu acknowledged appends at exact versions, %" PRIu64
	       " outcome_unknown answers retried\n",
	       cluster_acks(&c), unknown);
	cluster_check_and_free(&c);
}

/* Whether a socket of another (connect()'s ephemeral port, here an
 * explicit bind) can take node i's port: its raft bind would then fail. */
static bool port_free_to_others(cluster *c, int i)
{
	const char *colon = strrchr(c->nodes[i].address, ':');
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)atoi(colon + 1)),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(fd >= 0);
	bool took = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return took;
}

TEST(a_nodes_port_is_held_while_it_is_not_running)
{
	cluster c;
	cluster_init(&c, 3);
	for (int i = 0; i < 3; i++)
		CHECK(!port_free_to_others(&c, i));
	int leader = cluster_start_all(&c);
	int follower = (leader + 1) % 3;
	node_kill(&c, follower);
	CHECK(!port_free_to_others(&c, follower));
	node_start(&c, follower);
	REQUIRE(cluster_wait_converged(&c, 20000));
	cluster_check_and_free(&c);
}

/* The proposer waits, at most a millisecond, for as many commands as
 * callers it just answered (they send their next at once). When most of
 * them stop, the one left must not wait for the others: its appends go
 * on at the pace of raft rounds. */
TEST(a_caller_left_alone_after_many_stop_is_answered)
{
	cluster c;
	cluster_init(&c, 3);
	c.election_ms = 3000; /* no election meanwhile, on a loaded machine */
	c.heartbeat_ms = 100;
	int leader = cluster_start_all(&c);
	REQUIRE(leader >= 0);
	node_writers(&c, leader, 16);
	REQUIRE(cluster_wait_acks(&c, 200));
	/* 16 answered together, then one writer only */
	node_writers(&c, leader, 1);
	size_t start = cluster_acks(&c);
	uint64_t until = mono_ms() + 10000;
	while (cluster_acks(&c) < start + 20 && mono_ms() < until)
		usleep(1000);
	CHECK(cluster_acks(&c) >= start + 20);
	node_writers(&c, leader, 0);
	cluster_check_and_free(&c);
}

/* Group commit: the callers answered from one entry send their next
 * appends at once (async clients send from their answer), and all of
 * them travel in the next entry. Before, the first of them woke the
 * proposer while the writer was still answering the others, so the
 * callers split into groups of about half, each group paying a raft round
 * and a store flush (docs/PERFORMANCE.md, "Where a cluster append's time
 * goes"). The writer is slowed (2 ms before each transaction) to make the
 * window wide. */
TEST(callers_answered_together_travel_in_one_entry)
{
	cluster c;
	cluster_init(&c, 3);
	/* an election in the window would add its entry: long timeouts,
	 * and another window if one happens anyway (a loaded machine) */
	c.election_ms = 3000;
	c.heartbeat_ms = 100;
	int leader = cluster_start_all(&c);
	unsigned clients = 16;
	bool measured = false;
	for (int attempt = 0; attempt < 3 && !measured; attempt++) {
		leader = cluster_wait_leader(&c, 20000);
		REQUIRE(leader >= 0);
		node_set_apply_delay(&c, leader, 2000);
		node_writers_async(&c, leader, clients);
		node_info a, b;
		/* past the first entries (the clients start one by one) */
		size_t start = cluster_acks(&c);
		uint64_t until = mono_ms() + 30000;
		while (cluster_acks(&c) < start + 4 * clients &&
		       mono_ms() < until)
			usleep(1000);
		node_get_info(&c, leader, &a);
		size_t acks = cluster_acks(&c);
		while (cluster_acks(&c) < acks + 30 * clients &&
		       mono_ms() < until)
			usleep(1000);
		node_get_info(&c, leader, &b);
		node_writers(&c, leader, 0);
		node_set_apply_delay(&c, leader, 0);
		uint64_t appends = b.events - a.events,
		         entries = b.applied - a.applied;
		printf("     %" PRIu64 " appends in %" PRIu64
		       " entries, term %" PRIu64 " -> %" PRIu64 "\n",
		       appends, entries, a.term, b.term);
		if (b.term != a.term || !b.is_leader)
			continue; /* election entries between: again */
		REQUIRE(entries > 2);
		/* every entry but the first and last carries all the
		 * clients */
		CHECK(appends >= (entries - 2) * clients);
		measured = true;
	}
	CHECK(measured);
	REQUIRE(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
}
