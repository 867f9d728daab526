/* test_applied.c: the applied index. esdb_store_apply stores the log index of
 * what it applied in the same transaction, so a log replayed after a
 * crash applies nothing twice. */
#include "harness.h"

#include "commit.h"
#include "internal.h"

#include <errno.h>
#include <lmdb.h>

/* An append of one event numbered n to `stream`, any version. */
static esdb_cmd one_append(const char *stream, uint64_t n)
{
	uint8_t id[16];
	esdb_cmd cmd;
	esdb_new_event ev = make_event(id, n, "t", "d");
	REQUIRE_OK(esdb_cmd_stream_append(NULL, stream, strlen(stream),
	                                  ESDB_EXPECT_ANY, &ev, 1, &cmd));
	return cmd;
}

static void free_cmds(esdb_cmd *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(cmds[i].buf);
}

static uint64_t applied(esdb_store *s)
{
	uint64_t index = UINT64_MAX;
	REQUIRE_OK(esdb_store_get_applied_index(s, &index));
	return index;
}

static uint64_t events(esdb_store *s)
{
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	return st.events;
}

TEST(applied_index_follows_the_local_writer)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	CHECK_EQ(applied(s), 0);
	for (uint64_t i = 1; i <= 3; i++) {
		esdb_new_event ev = make_event(id, i, "t", "d");
		REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
		CHECK_EQ(applied(s), i);
	}
	/* A refused command changes nothing, the index included. */
	esdb_new_event ev = make_event(id, 9, "t", "d");
	CHECK_RC(esdb_stream_append(s, "s", 1, 1, &ev, 1, NULL),
	         ESDB_EWRONG_VERSION);
	CHECK_EQ(applied(s), 3);
	esdb_store_close(s);
	s = open_store(dir, false);
	CHECK_EQ(applied(s), 3);
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	CHECK_EQ(applied(s), 4);
	esdb_store_close(s);
}

TEST(applying_at_or_below_the_applied_index_is_a_no_op)
{
	esdb_store *s = open_store(tmp_dir(), false);
	esdb_cmd cmds[3] = {one_append("a", 1), one_append("b", 2),
	                    one_append("c", 3)};
	esdb_result r[3];
	REQUIRE_OK(esdb_store_apply(s, 10, cmds, 3, r));
	CHECK_EQ(applied(s), 12);
	CHECK_EQ(events(s), 3);
	CHECK_EQ(r[2].position, 3);

	/* The same batch again, and one wholly below: nothing happens. */
	uint64_t commits;
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	commits = st.commits;
	REQUIRE_OK(esdb_store_apply(s, 10, cmds, 3, r));
	for (int i = 0; i < 3; i++) {
		CHECK_RC(r[i].rc, ESDB_EOUTCOME_UNKNOWN);
		CHECK_EQ(r[i].position, 0);
	}
	REQUIRE_OK(esdb_store_apply(s, 1, cmds, 1, r));
	CHECK_EQ(events(s), 3);
	CHECK_EQ(applied(s), 12);
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.commits, commits);

	/* A batch that straddles it: only what lies above is applied. */
	esdb_cmd more[3] = {one_append("c", 3), one_append("d", 4),
	                    one_append("e", 5)};
	REQUIRE_OK(esdb_store_apply(s, 12, more, 3, r));
	CHECK_EQ(r[0].position, 0);
	CHECK_EQ(r[1].position, 4);
	CHECK_EQ(r[2].position, 5);
	CHECK_EQ(events(s), 5);
	CHECK_EQ(applied(s), 14);

	/* Indexes may jump; the local numbering goes on after them. */
	esdb_cmd later = one_append("f", 6);
	REQUIRE_OK(esdb_store_apply(s, 100, &later, 1, r));
	CHECK_EQ(applied(s), 100);
	esdb_cmd next = one_append("g", 7);
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, &next, 1, r));
	CHECK_EQ(applied(s), 101);
	CHECK_EQ(events(s), 7);

	CHECK_RC(esdb_store_apply(s, UINT64_MAX, cmds, 2, r), ESDB_EINVAL);
	free_cmds(cmds, 3);
	free_cmds(more, 3);
	free(later.buf);
	free(next.buf);
	esdb_store_close(s);
}

TEST(a_batch_split_on_txn_full_records_each_part_s_index)
{
	esdb_store *s = open_store(tmp_dir(), false);
	esdb_cmd cmds[4] = {one_append("a", 1), one_append("b", 2),
	                    one_append("c", 3), one_append("d", 4)};
	esdb_result r[4];
	/* Too big as a whole, so it goes in halves; the first half
	 * commits, the second fails: the index says how far it got. */
	esdb__apply_fault[0] = MDB_TXN_FULL;
	esdb__apply_fault[1] = ESDB__FAULT_PASS;
	esdb__apply_fault[2] = EIO;
	CHECK_RC(esdb_store_apply(s, 20, cmds, 4, r), EIO);
	CHECK_EQ(esdb__apply_fault[0], 0);
	CHECK_RC(r[1].rc, 0);
	CHECK_RC(r[2].rc, EIO);
	CHECK_EQ(applied(s), 21);
	CHECK_EQ(events(s), 2);

	/* The log replayed from the batch's start: the rest goes in once. */
	REQUIRE_OK(esdb_store_apply(s, 20, cmds, 4, r));
	CHECK_EQ(r[0].position, 0);
	CHECK_EQ(r[1].position, 0);
	CHECK_EQ(r[2].position, 3);
	CHECK_EQ(r[3].position, 4);
	CHECK_EQ(applied(s), 23);
	CHECK_EQ(events(s), 4);

	/* The same split with the store numbering the commands. */
	esdb_cmd more[4] = {one_append("a", 5), one_append("b", 6),
	                    one_append("c", 7), one_append("d", 8)};
	esdb__apply_fault[0] = MDB_TXN_FULL;
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, more, 4, r));
	CHECK_EQ(applied(s), 27);
	CHECK_EQ(events(s), 8);
	free_cmds(cmds, 4);
	free_cmds(more, 4);
	esdb_store_close(s);
}

/* A store made before the index was recorded has no "applied" key. */
TEST(a_store_without_an_applied_index_reads_as_zero)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);

	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi main_db;
	REQUIRE_OK(mdb_env_create(&env));
	REQUIRE_OK(mdb_env_set_maxdbs(env, 16));
	REQUIRE_OK(mdb_env_open(env, dir, 0, 0600));
	REQUIRE_OK(mdb_txn_begin(env, NULL, 0, &txn));
	REQUIRE_OK(mdb_dbi_open(txn, NULL, 0, &main_db));
	MDB_val k = {7, "applied"};
	REQUIRE_OK(mdb_del(txn, main_db, &k, NULL));
	REQUIRE_OK(mdb_txn_commit(txn));
	mdb_env_close(env);

	s = open_store(dir, false);
	CHECK_EQ(applied(s), 0);
	ev = make_event(id, 2, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	CHECK_EQ(applied(s), 1);
	CHECK_EQ(events(s), 2);
	esdb_store_close(s);
}

/* open_store opens on the path ESDB_TEST_COMMIT_PATH names; on "log"
 * (commit_log.c) every 8th index is no command, so indexes jump. */
TEST(open_store_commits_through_the_chosen_path)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t id[16];
	CHECK(strcmp(esdb_commit_path_name(s), test_commit_path()) == 0);
	for (uint64_t i = 1; i <= 10; i++) {
		esdb_new_event ev = make_event(id, i, "t", "d");
		REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
	}
	CHECK_EQ(events(s), 10);
	CHECK_EQ(applied(s), strcmp(test_commit_path(), "log") ? 10 : 11);
	esdb_store_close(s);
}

TEST(apply_at_takes_an_index_per_command)
{
	esdb_store *s = open_store(tmp_dir(), false);
	esdb_cmd cmds[4] = {one_append("a", 1), one_append("b", 2),
	                    one_append("c", 3), one_append("d", 4)};
	esdb_result r[4];
	/* Two log entries' commands (entry 5: two, entry 9: two) in one
	 * transaction, numbered entry << 16 | i. */
	uint64_t at[4] = {5 << 16, (5 << 16) | 1, 9 << 16, (9 << 16) | 1};
	REQUIRE_OK(esdb_store_apply_at(s, at, cmds, 4, r));
	CHECK_EQ(applied(s), (9 << 16) | 1);
	CHECK_EQ(events(s), 4);
	CHECK_EQ(r[3].position, 4);
	/* Replayed from the middle of entry 9: only what is above goes. */
	esdb_cmd again[2] = {one_append("c", 3), one_append("e", 5)};
	uint64_t at2[2] = {(9 << 16) | 1, 10 << 16};
	REQUIRE_OK(esdb_store_apply_at(s, at2, again, 2, r));
	CHECK_EQ(r[0].position, 0);
	CHECK_EQ(r[0].version, 0);
	/* never a zeroed success for a command applied before */
	CHECK_RC(r[0].rc, ESDB_EOUTCOME_UNKNOWN);
	CHECK_RC(r[1].rc, 0);
	CHECK_EQ(r[1].position, 5);
	CHECK_EQ(events(s), 5);
	CHECK_EQ(applied(s), 10 << 16);
	/* Indexes must increase and be nonzero. */
	uint64_t bad[2] = {20 << 16, 20 << 16};
	CHECK_RC(esdb_store_apply_at(s, bad, again, 2, r), ESDB_EINVAL);
	uint64_t zero[1] = {0};
	CHECK_RC(esdb_store_apply_at(s, zero, again, 1, r), ESDB_EINVAL);
	free_cmds(cmds, 4);
	free_cmds(again, 2);
	esdb_store_close(s);
}

TEST(apply_at_records_the_index_of_a_refused_batch)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd;
	/* Expects version 3 of an absent stream: refused. */
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, 3, &ev, 1, &cmd));
	esdb_result r;
	uint64_t at = 7 << 16;
	REQUIRE_OK(esdb_store_apply_at(s, &at, &cmd, 1, &r));
	CHECK_RC(r.rc, ESDB_EWRONG_VERSION);
	CHECK_EQ(applied(s), 7 << 16);
	CHECK_EQ(events(s), 0);
	free(cmd.buf);
	esdb_store_close(s);
}
