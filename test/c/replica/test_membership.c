/* test_membership.c: adding, promoting and removing members, handing
 * leadership over. */
#include "harness.h"

#include "cluster.h"

#include "replica.h"

TEST(a_member_joins_as_spare_standby_voter_and_leaves)
{
	cluster c;
	cluster_init(&c, 4);
	c.n_boot = 3; /* node 4 starts with no configuration */
	for (int i = 0; i < 4; i++)
		node_start(&c, i);
	c.nodes[3].excluded = true; /* knows no leader until added */
	int leader = cluster_wait_leader(&c, 20000);
	REQUIRE(leader >= 0 && leader < 3);
	node_info info;
	for (uint64_t n = 1; n <= 10; n++) {
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0);
	}
	/* only the leader changes membership */
	node_member_add(&c, (leader + 1) % 3, 3, &info);
	CHECK_RC(info.rc, ESDB_ENOT_LEADER);
	node_member_add(&c, leader, 3, &info);
	CHECK_RC(info.rc, 0);
	c.nodes[3].excluded = false;
	node_member_add(&c, leader, 3, &info);
	CHECK_RC(info.rc, ESDB_EINVAL); /* already a member */
	node_member_assign(&c, leader, 3, ESDB_REPLICA_STANDBY, &info);
	CHECK_RC(info.rc, 0);
	node_member_assign(&c, leader, 3, ESDB_REPLICA_VOTER, &info);
	CHECK_RC(info.rc, 0);
	for (uint64_t n = 11; n <= 20; n++) {
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0);
	}
	REQUIRE(cluster_wait_converged(&c, 20000));
	node_get_info(&c, 3, &info);
	CHECK_EQ(info.events, 21); /* and the fence */
	CHECK_EQ(info.leader_id, c.nodes[leader].id);

	/* a planned hand-over */
	node_transfer(&c, leader, -1, &info);
	CHECK_RC(info.rc, 0);
	int next = cluster_wait_leader(&c, 20000);
	REQUIRE(next >= 0);
	CHECK(next != leader);

	/* the new member leaves; later appends do not reach it */
	if (next == 3) {
		node_transfer(&c, 3, 0, &info);
		CHECK_RC(info.rc, 0);
		next = cluster_wait_leader(&c, 20000);
		REQUIRE(next >= 0 && next != 3);
	}
	node_member_remove(&c, next, 3, &info);
	CHECK_RC(info.rc, 0);
	c.nodes[3].excluded = true;
	node_stop(&c, 3);
	node_append(&c, next, "s", 21, &info);
	CHECK_RC(info.rc, 0);
	CHECK_EQ(info.position, 22);
	REQUIRE(cluster_wait_converged(&c, 20000));
	cluster_check_and_free(&c);
}
