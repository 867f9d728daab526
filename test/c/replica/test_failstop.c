/* test_failstop.c: a replica stops rather than misapply. */
#include "harness.h"

#include "cluster.h"

#include <errno.h>
#include <unistd.h>

/* A follower whose store fails to apply (EIO, then ENOSPC) stops: it
 * records nothing, skips nothing; the others go on; restarted, it
 * applies from where its store stopped and ends like the others. */
static void follower_apply_failure(int err, int cause)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	int f = (leader + 1) % 3;
	node_info info;
	for (uint64_t n = 1; n <= 5; n++) {
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0);
	}
	REQUIRE(cluster_wait_converged(&c, 20000)); /* 6 events */
	node_fail_next_apply(&c, f, err);
	for (uint64_t n = 6; n <= 10; n++) {
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0); /* the other follower makes a quorum */
	}
	node_wait_failed(&c, f, &info);
	CHECK_RC(info.failed, ESDB_ESTORE_FAILED);
	CHECK(strstr(info.failure, "failed") != NULL);
	/* the store names the cause ({store_failed, Cause} in the bindings) */
	CHECK_RC(info.store_failed, cause);
	CHECK_EQ(info.events, 6);
	node_append(&c, f, "s", 99, &info);
	CHECK_RC(info.rc, ESDB_ESTORE_FAILED);
	node_kill(&c, f);
	node_start(&c, f);
	REQUIRE(cluster_wait_converged(&c, 20000));
	node_get_info(&c, f, &info);
	CHECK_EQ(info.failed, 0);
	CHECK_EQ(info.events, 12); /* 10 appends and 2 fences */
	cluster_check_and_free(&c);
}

TEST(a_replica_whose_store_fails_stops_and_recovers_on_restart)
{
	follower_apply_failure(EIO, EIO);
}

TEST(a_replica_whose_disk_is_full_stops_and_recovers_on_restart)
{
	follower_apply_failure(ENOSPC, ESDB_EDISK_FULL);
}

/* Nodes of a newer version propose entries of entry format 2: every
 * replica stops at the first one, saying so, and applies nothing. */
TEST(an_entry_of_an_unknown_version_stops_every_replica)
{
	cluster c;
	cluster_init(&c, 3);
	for (int i = 0; i < 3; i++)
		c.nodes[i].entry_version = 2;
	int leader = cluster_start_all(&c);
	node_info info;
	node_append(&c, leader, "s", 1, &info);
	/* raft took it: it may be committed, never applied here */
	CHECK_RC(info.rc, ESDB_EOUTCOME_UNKNOWN);
	/* The leader commits first and applies first: it stops. The others
	 * stop when they learn the entry is committed, which they may not
	 * (the leader left raft); none applies it. */
	node_wait_failed(&c, leader, &info);
	CHECK_RC(info.failed, ESDB_EFORMAT);
	for (int i = 0; i < 3; i++) {
		node_get_info(&c, i, &info);
		CHECK(info.failed == 0 || info.failed == ESDB_EFORMAT);
		if (info.failed)
			CHECK(strstr(info.failure, "format version 2") != NULL);
		CHECK_EQ(info.events, 0);
	}
	/* later writes answer the reason */
	node_append(&c, leader, "s", 2, &info);
	CHECK_RC(info.rc, ESDB_EFORMAT);
	cluster_check_and_free(&c);
}

/* A command another version wrote (its version byte changed after the
 * proposer's check): the replicas that reach it stop, none applies it. */
TEST(a_command_of_an_unknown_version_stops_the_replicas)
{
	cluster c;
	cluster_init(&c, 3);
	for (int i = 0; i < 3; i++)
		c.nodes[i].command_version = 99;
	int leader = cluster_start_all(&c);
	node_info info;
	node_append(&c, leader, "s", 1, &info);
	/* raft took it: it may be committed, never applied here */
	CHECK_RC(info.rc, ESDB_EOUTCOME_UNKNOWN);
	node_wait_failed(&c, leader, &info);
	CHECK_RC(info.failed, ESDB_EFORMAT);
	CHECK(strstr(info.failure, "another version") != NULL);
	for (int i = 0; i < 3; i++) {
		node_get_info(&c, i, &info);
		CHECK_EQ(info.events, 0);
	}
	cluster_check_and_free(&c);
}

/* A malformed command never enters the log: refused on submission. */
TEST(a_malformed_command_is_refused_before_the_log)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	node_info info;
	node_append_corrupt(&c, leader, &info);
	CHECK_RC(info.rc, ESDB_ECORRUPT);
	CHECK_EQ(info.failed, 0);
	node_append(&c, leader, "s", 2, &info);
	CHECK_RC(info.rc, 0);
	CHECK_EQ(info.position, 1);
	REQUIRE(cluster_wait_converged(&c, 20000));
	cluster_check_and_free(&c);
}

/* A leader paused (SIGSTOP) under load is deposed; resumed, it answers
 * its pending appends (outcome unknown or, when they did commit, their
 * result) and gives no position twice. */
TEST(a_deposed_leader_answers_its_pending_appends)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	for (int i = 0; i < 3; i++)
		node_writers(&c, i, 8);
	cluster_wait_acks(&c, 100);
	node_info info;
	node_get_info(&c, leader, &info);
	uint64_t led = info.term;
	node_pause(&c, leader, true);
	int next = cluster_wait_leader(&c, 20000);
	REQUIRE(next >= 0);
	CHECK(next != leader);
	node_pause(&c, leader, false);
	/* on a busy machine another election may follow (even one the old
	 * leader wins): any leader all agree on, and the old one deposed */
	int now = cluster_wait_leader(&c, 20000);
	REQUIRE(now >= 0);
	node_get_info(&c, leader, &info);
	CHECK(info.term > led);
	CHECK(info.leader_events >= 2);
	if (now != leader)
		CHECK(!info.is_leader);
	printf("     deposed leader: %" PRIu64 " appends outcome_unknown\n",
	       info.unknown);
	/* every writer returns (none waits for ever) */
	for (int i = 0; i < 3; i++)
		node_writers(&c, i, 0);
	REQUIRE(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
}

/* Both followers paused: the leader, cut from its quorum, steps down
 * after an election timeout, and the appends it had in flight answer
 * outcome_unknown (they may or may not commit later). */
TEST(losing_leadership_answers_pending_appends_outcome_unknown)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	node_writers(&c, leader, 4);
	cluster_wait_acks(&c, 20);
	for (int i = 0; i < 3; i++)
		if (i != leader)
			node_pause(&c, i, true);
	node_info info;
	for (int w = 0; w < 2000; w++) {
		node_get_info(&c, leader, &info);
		if (info.unknown > 0 && !info.is_leader)
			break;
		usleep(5000);
	}
	CHECK(!info.is_leader);
	CHECK(info.unknown > 0);
	for (int i = 0; i < 3; i++)
		if (i != leader)
			node_pause(&c, i, false);
	node_writers(&c, leader, 0);
	REQUIRE(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
}

/* Raft took a proposal into its log, then an io step failed (here the
 * io append's allocation): raft's log in memory holds the entry, its
 * log on disk does not, and the entry may commit or not. The caller
 * gets outcome_unknown and the replica stops (it cannot go on with two
 * logs that disagree); restarted, it rejoins from its log on disk and
 * ends like the others. */
TEST(an_io_failure_after_the_log_grew_stops_the_replica)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	node_info info;
	node_append(&c, leader, "s", 1, &info);
	CHECK_RC(info.rc, 0);
	node_fail_after_growth(&c, leader);
	node_append(&c, leader, "s", 2, &info);
	CHECK_RC(info.rc, ESDB_EOUTCOME_UNKNOWN);
	node_wait_failed(&c, leader, &info);
	CHECK_RC(info.failed, ESDB_ESTORE_FAILED);
	CHECK(strstr(info.failure, "raft's log") != NULL);
	node_append(&c, leader, "s", 3, &info);
	CHECK_RC(info.rc, ESDB_ESTORE_FAILED);
	node_kill(&c, leader);
	node_start(&c, leader);
	REQUIRE(cluster_wait_converged(&c, 20000));
	node_get_info(&c, leader, &info);
	CHECK_EQ(info.failed, 0);
	cluster_check_and_free(&c);
}

/* A follower's raft log write fails (it completes with an error): raft
 * 0.22.1 drops that status, and the follower would go on believing
 * entries stored that its disk lacks, acknowledging nothing more. The
 * replica sees the status and stops instead; the others go on; restarted,
 * it catches up from its log on disk and ends like the others. */
TEST(a_failed_raft_log_write_stops_the_replica)
{
	cluster c;
	cluster_init(&c, 3);
	int leader = cluster_start_all(&c);
	int f = (leader + 1) % 3;
	node_info info;
	node_append(&c, leader, "s", 1, &info);
	CHECK_RC(info.rc, 0);
	REQUIRE(cluster_wait_converged(&c, 20000));
	node_fail_log_write(&c, f);
	for (uint64_t n = 2; n <= 5; n++) {
		node_append(&c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0); /* the other follower makes a quorum */
	}
	node_wait_failed(&c, f, &info);
	CHECK_RC(info.failed, ESDB_ESTORE_FAILED);
	CHECK(strstr(info.failure, "raft's log write") != NULL);
	CHECK_RC(info.store_failed, EIO);
	node_kill(&c, f);
	node_start(&c, f);
	REQUIRE(cluster_wait_converged(&c, 20000));
	node_get_info(&c, f, &info);
	CHECK_EQ(info.failed, 0);
	cluster_check_and_free(&c);
}
