/* test_snapshots.c: marker snapshots never run ahead of the store. */
#include "harness.h"

#include "cluster.h"

#include <dirent.h>
#include <unistd.h>

static unsigned env_count(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

/* Snapshot files raft wrote in node i's raft directory. */
static int snapshots(cluster *c, int i)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/raft", c->nodes[i].dir);
	DIR *d = opendir(path);
	int n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		n += strncmp(e->d_name, "snapshot-", 9) == 0;
	closedir(d);
	return n;
}

/* A snapshot every 16 entries while the writers lag behind raft's apply
 * (20 ms before each transaction), and kill -9 (2 * ESDB_REPLICA_KILLS
 * times) of one node after another
 * in that window: on restart raft's snapshot must not be past what the
 * store committed (the replica would stop: the entries between are gone
 * from raft's log), and every replica ends with the same events. */
TEST(snapshots_never_pass_the_stores_applied_index)
{
	unsigned kills = 2 * env_count("ESDB_REPLICA_KILLS", 5);
	uint64_t rng = test_seed();
	cluster c;
	cluster_init(&c, 3);
	c.snapshot_threshold = 16;
	c.apply_delay_us = 20000;
	cluster_start_all(&c);
	for (int i = 0; i < 3; i++)
		node_writers(&c, i, 8);
	for (unsigned k = 0; k < kills; k++) {
		int leader = cluster_wait_leader(&c, 20000);
		REQUIRE(leader >= 0);
		cluster_wait_acks(&c, 100);
		/* Acks come right after a writer's commit: a jitter moves
		 * the kill into the writer's lag behind raft, at random. */
		usleep((useconds_t)(rng_next(&rng) % 40000));
		/* the leader, then a follower, in turn */
		int victim = k % 2 ? (leader + 1) % 3 : leader;
		node_kill(&c, victim);
		node_start(&c, victim);
		node_writers(&c, victim, 8);
	}
	for (int i = 0; i < 3; i++)
		node_writers(&c, i, 0);
	REQUIRE(cluster_wait_leader(&c, 20000) >= 0);
	bool converged = cluster_wait_converged(&c, 30000);
	for (int i = 0; i < 3; i++) {
		node_info info;
		node_get_info(&c, i, &info);
		if (info.failed)
			harness_fail(__FILE__, __LINE__, "node %d: %s", i + 1,
			             info.failure);
	}
	REQUIRE(converged);
	int taken = 0;
	for (int i = 0; i < 3; i++)
		taken += snapshots(&c, i);
	CHECK(taken > 0);
	cluster_check_and_free(&c);
}

/* A snapshot waits for the writer to apply and flush what raft handed
 * it. Here the writer takes 3 s before each transaction (3 election
 * timeouts): that wait must not hold up the loop thread, whose
 * heartbeats keep the followers from electing another leader. The
 * snapshot is put off (RAFT_BUSY) instead, and taken once the writer
 * keeps up again. */
TEST(a_slow_writer_at_a_snapshot_does_not_stall_raft)
{
	cluster c;
	cluster_init(&c, 3);
	c.election_ms = 1000;
	c.heartbeat_ms = 100;
	c.snapshot_threshold = 2;
	c.apply_delay_us = 3000000;
	int leader = cluster_start_all(&c);
	node_info info;
	node_get_info(&c, leader, &info);
	uint64_t term = info.term;
	node_writers(&c, leader, 8);
	/* several snapshot attempts while the writers wait on the store */
	uint64_t end = mono_ms() + 8000;
	bool moved = false;
	while (mono_ms() < end && !moved) {
		for (int i = 0; i < 3 && !moved; i++) {
			node_get_info(&c, i, &info);
			if (info.term != term) {
				harness_fail(__FILE__, __LINE__,
				             "node %d went to term %" PRIu64
				             " (from %" PRIu64 ")",
				             i + 1, info.term, term);
				moved = true;
			}
		}
		usleep(50000);
	}
	/* a writer that keeps up: the snapshot is taken */
	for (int i = 0; i < 3; i++)
		node_set_apply_delay(&c, i, 0);
	end = mono_ms() + 20000;
	while (snapshots(&c, leader) == 0 && mono_ms() < end)
		usleep(20000);
	CHECK(snapshots(&c, leader) > 0);
	node_writers(&c, leader, 0);
	REQUIRE(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
}
