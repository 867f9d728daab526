/* test_copy.c: a replica behind raft's snapshots waits for a copy of a
 * member's store, restored under its open handle, while raft goes on.
 * Three replicas in this process, raft over TCP on loopback. */
#include "harness.h"

#include "replica.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define N 3

typedef struct node {
	char dir[512], addr[32];
	esdb_store *s;
	esdb_replica *r;
} node;

static esdb_replica_member members[N];

static int start(node *n, uint64_t id)
{
	esdb_replica_config cfg = {.id = id,
	                           .address = n->addr,
	                           .dir = n->dir,
	                           .members = members,
	                           .n_members = N,
	                           .election_timeout_ms = 1000,
	                           .heartbeat_ms = 50,
	                           .snapshot_threshold = 32,
	                           .trailing_bytes = 1};
	int rc = esdb_store_create(&n->s);
	if (!rc)
		rc = esdb_store_set_durability(n->s, ESDB_DURABILITY_NOSYNC);
	if (!rc)
		rc = esdb_replica_create(n->s, &cfg, &n->r);
	if (!rc)
		rc = esdb_store_open(n->s, n->dir);
	return rc;
}

static int leader_of(node *nodes)
{
	for (int t = 0; t < 1000; t++) {
		for (int i = 0; i < N; i++)
			if (nodes[i].s && esdb_replica_is_leader(nodes[i].r))
				return i;
		usleep(10000);
	}
	return -1;
}

static uint64_t events(esdb_store *s)
{
	esdb_store_stats st;
	return esdb_store_get_stats(s, &st) ? 0 : st.events;
}

/* Append event i on the leader; a leader change under load (outcome
 * unknown, not the leader) is retried on the next one (the event may
 * then be there twice: the checks compare replicas, not counts). Sets
 * *l to the leader. */
static int append(node *nodes, int *l, uint64_t i)
{
	uint8_t id[16];
	int rc = ESDB_ENOT_LEADER;
	for (int t = 0; t < 20 && rc; t++) {
		if (rc != ESDB_ENOT_LEADER && rc != ESDB_EOUTCOME_UNKNOWN)
			return rc;
		if ((*l = leader_of(nodes)) < 0)
			return ESDB_ENOT_LEADER;
		esdb_new_event ev = make_event(id, i, "t", "d");
		rc = esdb_stream_append(nodes[*l].s, "s", 1, ESDB_EXPECT_ANY,
		                        &ev, 1, NULL);
	}
	return rc;
}

TEST(a_replica_behind_the_snapshots_waits_for_a_restored_copy)
{
	node nodes[N] = {0};
	for (int i = 0; i < N; i++) {
		snprintf(nodes[i].dir, sizeof(nodes[i].dir), "%s", tmp_dir());
		snprintf(nodes[i].addr, sizeof(nodes[i].addr), "127.0.0.1:%u",
		         loopback_free_port());
		members[i] = (esdb_replica_member){i + 1, nodes[i].addr};
	}
	for (int i = 0; i < N; i++)
		REQUIRE_OK(start(&nodes[i], i + 1));
	int l = leader_of(nodes);
	REQUIRE(l >= 0);
	/* a copy from before anything was written: behind every store */
	char old_path[600];
	snprintf(old_path, sizeof(old_path), "%s/old", tmp_dir());
	int old = open(old_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REQUIRE(old >= 0);
	REQUIRE_OK(esdb_store_copy(nodes[l].s, old));
	REQUIRE_OK(append(nodes, &l, 1));
	int f = (l + 1) % N;
	for (int t = 0; t < 1000 && events(nodes[f].s) < 1; t++)
		usleep(10000);
	esdb_store_close(nodes[f].s);
	nodes[f].s = NULL;

	/* 400 entries: snapshots every 32, 128 kept after them */
	for (uint64_t i = 2; i <= 401; i++) {
		REQUIRE_OK(append(nodes, &l, i));
		usleep(2000);
	}
	REQUIRE_OK(start(&nodes[f], f + 1));
	uint64_t want = 0;
	for (int t = 0; t < 3000 && !want; t++, usleep(10000))
		want = esdb_replica_get_needs_copy(nodes[f].r);
	REQUIRE(want > 0);
	CHECK_EQ(esdb_replica_get_failure(nodes[f].r, NULL, 0), 0);
	CHECK_EQ(events(nodes[f].s), 1);

	/* raft goes on meanwhile: the cluster takes writes */
	REQUIRE_OK(append(nodes, &l, 402));

	/* a copy behind the waiting store is refused: its applied index
	 * (and what readers see) never goes back */
	uint64_t before = 0;
	REQUIRE_OK(esdb_store_get_applied_index(nodes[f].s, &before));
	REQUIRE(lseek(old, 0, SEEK_SET) == 0);
	CHECK_RC(esdb_store_restore(nodes[f].s, old), ESDB_EINVAL);
	close(old);
	uint64_t after = 0;
	REQUIRE_OK(esdb_store_get_applied_index(nodes[f].s, &after));
	CHECK_EQ(after, before);
	CHECK_EQ(events(nodes[f].s), 1);
	CHECK(esdb_replica_get_needs_copy(nodes[f].r) > 0);

	/* a copy of the leader's store, restored under the follower */
	char path[600];
	snprintf(path, sizeof(path), "%s/copy", tmp_dir());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	REQUIRE_OK(esdb_store_copy(nodes[l].s, fd));
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	REQUIRE_OK(esdb_store_restore(nodes[f].s, fd));
	close(fd);
	CHECK_EQ(esdb_replica_get_needs_copy(nodes[f].r), 0);

	/* not waiting any more: a restore is refused again */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	CHECK_RC(esdb_store_restore(nodes[f].s, fd), ESDB_EINVAL);
	close(fd);

	REQUIRE_OK(append(nodes, &l, 403));
	uint64_t total = events(nodes[l].s);
	CHECK(total >= 403);
	for (int i = 0; i < N; i++) {
		for (int t = 0; t < 1000 && events(nodes[i].s) < total; t++)
			usleep(10000);
		CHECK_EQ(events(nodes[i].s), total);
	}
	for (int i = 0; i < N; i++)
		esdb_store_close(nodes[i].s);
}
