/* test_open.c: which stores may become replicas. */
#include "harness.h"

#include "replica.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* A store written without raft has commands no raft log holds: made a
 * replica of a cluster of several, or joining one, replaying the log
 * over them would diverge. Refused, and the store is left as it was. */
TEST(a_store_with_data_and_no_raft_log_is_refused)
{
	const char *dir = tmp_dir();
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_open(s, dir));
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);

	esdb_replica *r;
	esdb_replica_member m[2] = {{1, "127.0.0.1:1"}, {2, "127.0.0.1:2"}};
	esdb_replica_config cfg = {.id = 1,
	                           .address = "127.0.0.1:1",
	                           .dir = dir,
	                           .members = m,
	                           .n_members = 2};
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_replica_create(s, &cfg, &r));
	CHECK_RC(esdb_store_open(s, dir), ESDB_EINVAL);
	esdb_store_close(s);
	cfg.n_members = 0; /* joining: a member's copy only */
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_replica_create(s, &cfg, &r));
	CHECK_RC(esdb_store_open(s, dir), ESDB_EINVAL);
	esdb_store_close(s);

	char path[600];
	struct stat st;
	snprintf(path, sizeof(path), "%s/raft/node_id", dir);
	CHECK(stat(path, &st) != 0);
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_open(s, dir));
	esdb_store_stats stats;
	REQUIRE_OK(esdb_store_get_stats(s, &stats));
	CHECK_EQ(stats.events, 1);
	esdb_store_close(s);
}

static void wait_leader(esdb_replica *r)
{
	for (int i = 0; i < 1000 && !esdb_replica_is_leader(r); i++)
		usleep(10000);
	CHECK(esdb_replica_is_leader(r));
}

/* A single-node store becomes the first member of a cluster of one,
 * keeping its events (others join from copies of it): its applied index
 * restarts for raft's, and it is marked a replica's store, which a
 * single-node open reads but does not write. */
TEST(a_single_node_store_becomes_the_one_member_of_a_new_cluster)
{
	const char *dir = tmp_dir();
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_open(s, dir));
	uint8_t id[16];
	for (uint64_t i = 1; i <= 3; i++) {
		esdb_new_event ev = make_event(id, i, "t", "d");
		REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
	}
	esdb_store_close(s);

	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", loopback_free_port());
	esdb_replica *r;
	esdb_replica_member m = {1, addr};
	esdb_replica_config cfg = {.id = 1,
	                           .address = addr,
	                           .dir = dir,
	                           .members = &m,
	                           .n_members = 1,
	                           .election_timeout_ms = 200,
	                           .heartbeat_ms = 20};
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_replica_create(s, &cfg, &r));
	REQUIRE_OK(esdb_store_open(s, dir));
	wait_leader(r);
	bool marked = false;
	REQUIRE_OK(esdb_store_get_replica_mark(s, &marked));
	CHECK(marked);
	esdb_new_event ev = make_event(id, 4, "t", "d");
	esdb_result res;
	REQUIRE_OK(esdb_stream_append(s, "s", 1, 3, &ev, 1, &res));
	CHECK_EQ(res.version, 4);
	CHECK_EQ(res.position, 4);
	CHECK(esdb_replica_get_applied(r) >= 2);
	esdb_store_close(s);

	/* reopened as a replica: a restart from its raft log */
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_replica_create(s, &cfg, &r));
	REQUIRE_OK(esdb_store_open(s, dir));
	wait_leader(r);
	ev = make_event(id, 5, "t", "d");
	REQUIRE_OK(esdb_stream_append(s, "s", 1, 4, &ev, 1, &res));
	CHECK_EQ(res.position, 5);
	esdb_store_close(s);

	/* opened without its replica: read, not written */
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_open(s, dir));
	esdb_store_stats stats;
	REQUIRE_OK(esdb_store_get_stats(s, &stats));
	CHECK_EQ(stats.events, 5);
	ev = make_event(id, 6, "t", "d");
	CHECK_RC(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL),
	         ESDB_ENOT_LEADER);
	esdb_store_close(s);
}

TEST(replica_create_checks_its_configuration)
{
	esdb_store *s;
	esdb_replica *r;
	REQUIRE_OK(esdb_store_create(&s));
	esdb_replica_config cfg = {.id = 1, .address = "127.0.0.1:1"};
	CHECK_RC(esdb_replica_create(s, &cfg, &r), ESDB_EINVAL); /* no dir */
	cfg.dir = tmp_dir();
	esdb_replica_member bad = {0, "127.0.0.1:2"};
	cfg.members = &bad;
	cfg.n_members = 1;
	CHECK_RC(esdb_replica_create(s, &cfg, &r), ESDB_EINVAL); /* id 0 */
	esdb_store_close(s);
}

/* Limits decide what apply answers: a replica's come from the log (a
 * LIMITS_SET command), never from its own options, which would make its
 * results differ from the others'. */
TEST(a_replica_refuses_node_local_limits)
{
	esdb_store *s;
	esdb_replica *r;
	esdb_limits l = {.max_event_bytes = 100};
	esdb_replica_config cfg = {
	    .id = 1, .address = "127.0.0.1:1", .dir = tmp_dir()};
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_limits(s, &l));
	CHECK_RC(esdb_replica_create(s, &cfg, &r), ESDB_EINVAL);
	esdb_store_close(s);
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_replica_create(s, &cfg, &r));
	CHECK_RC(esdb_store_set_limits(s, &l), ESDB_EINVAL);
	esdb_store_close(s);
}

/* A store opened with a one-member replica in a new directory (its
 * replica in *r). */
static esdb_store *open_one_member(esdb_replica **r)
{
	char address[32];
	snprintf(address, sizeof(address), "127.0.0.1:%u",
	         loopback_free_port());
	esdb_replica_member m = {1, address};
	esdb_replica_config cfg = {.id = 1,
	                           .address = address,
	                           .dir = tmp_dir(),
	                           .members = &m,
	                           .n_members = 1,
	                           .election_timeout_ms = 200,
	                           .heartbeat_ms = 20};
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_replica_create(s, &cfg, r));
	REQUIRE_OK(esdb_store_open(s, cfg.dir));
	return s;
}

/* A replica's store holds what raft's log says it applied: replacing it
 * by a copy behind raft's back (esdb_store_restore on the handle a
 * replica runs on) would leave it at another index than its log, and
 * diverge. Refused, and the store is left as it was. */
TEST(a_running_replicas_store_refuses_a_restore)
{
	/* a copy of a plain store with one event */
	esdb_store *plain;
	REQUIRE_OK(esdb_store_create(&plain));
	REQUIRE_OK(esdb_store_open(plain, tmp_dir()));
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(plain, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	char path[600];
	snprintf(path, sizeof(path), "%s/copy", tmp_dir());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	REQUIRE_OK(esdb_store_copy(plain, fd));
	esdb_store_close(plain);

	esdb_replica *r;
	esdb_store *s = open_one_member(&r);
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	CHECK_RC(esdb_store_restore(s, fd), ESDB_EINVAL);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 0);
	esdb_store_close(s);
	close(fd);
}

/* The same for esdb_store_apply on the handle a replica runs on: it
 * would write commands raft's log never held, numbered by the store
 * itself, and this replica would diverge from the others. Only the
 * replica's writer writes it (esdb_store_apply_at). Refused with
 * ESDB_ENOT_LEADER, as on a replica's store opened without its replica;
 * nothing written. */
TEST(a_running_replicas_store_refuses_a_direct_apply)
{
	esdb_replica *r;
	esdb_store *s = open_one_member(&r);
	wait_leader(r);
	/* one event through the replica */
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	uint64_t before = st.events;
	ev = make_event(id, 2, "t", "d");
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1,
	                                  &cmd));
	esdb_result res;
	CHECK_RC(esdb_store_apply(s, ESDB_INDEX_NEXT, &cmd, 1, &res),
	         ESDB_ENOT_LEADER);
	free(cmd.buf);
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, before);
	esdb_store_close(s);
}
