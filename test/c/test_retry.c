/* test_retry.c: a command resubmitted after an unknown outcome (marked
 * with esdb_cmd_mark_retry) answers its original result instead of
 * writing its events again, when they sit within the stream's last
 * ESDB_RETRY_WINDOW versions, whatever was appended after them. */
#include "harness.h"

#include "commands.h"

static esdb_cmd append_cmd(const char *stream, uint64_t expected,
                           const esdb_new_event *evs, size_t n)
{
	esdb_cmd c;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, stream, strlen(stream),
	                                  expected, evs, n, &c));
	return c;
}

static esdb_result apply1(esdb_store *s, const esdb_cmd *c)
{
	esdb_result r;
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, c, 1, &r));
	return r;
}

/* A copy of c marked as a retry. */
static esdb_cmd retry_of(const esdb_cmd *c)
{
	esdb_cmd r = {.buf = malloc(c->len), .len = c->len};
	REQUIRE(r.buf);
	memcpy(r.buf, c->buf, c->len);
	REQUIRE_OK(esdb_cmd_mark_retry(&r));
	return r;
}

static uint64_t events_in(esdb_store *s)
{
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	return st.events;
}

/* n one-event appends to stream by "another writer", ids from base. */
static void others(esdb_store *s, const char *stream, uint64_t base, size_t n)
{
	enum { B = 256 };
	esdb_cmd cmds[B];
	esdb_result res[B];
	for (size_t done = 0; done < n;) {
		size_t k = n - done < B ? n - done : B;
		for (size_t i = 0; i < k; i++) {
			uint8_t id[16];
			esdb_new_event ev =
			    make_event(id, base + done + i, "o", "x");
			cmds[i] = append_cmd(stream, ESDB_EXPECT_ANY, &ev, 1);
		}
		REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, cmds, k, res));
		for (size_t i = 0; i < k; i++) {
			CHECK_RC(res[i].rc, 0);
			free(cmds[i].buf);
		}
		done += k;
	}
}

TEST(mark_retry_sets_a_flag_appends_alone_carry)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd a = append_cmd("s", ESDB_EXPECT_ANY, &ev, 1);
	esdb__cmd_view v;
	REQUIRE_OK(esdb__cmd_parse(a.buf, a.len, &v));
	CHECK_EQ(v.flags, 0);
	REQUIRE_OK(esdb_cmd_mark_retry(&a));
	REQUIRE_OK(esdb_cmd_check(a.buf, a.len)); /* resealed */
	REQUIRE_OK(esdb__cmd_parse(a.buf, a.len, &v));
	CHECK_EQ(v.flags, ESDB_CMD_FLAG_RETRY);
	REQUIRE_OK(esdb_cmd_mark_retry(&a)); /* marking twice is harmless */
	CHECK_RC(esdb_cmd_check(a.buf, a.len), 0);
	free(a.buf);

	esdb_cmd d;
	REQUIRE_OK(esdb_cmd_stream_delete(NULL, "s", 1, ESDB_EXPECT_ANY, &d));
	CHECK_RC(esdb_cmd_mark_retry(&d), ESDB_EINVAL);
	/* a delete carrying the flag anyway is invalid */
	d.buf[2] = ESDB_CMD_FLAG_RETRY;
	cmd_reseal(&d);
	CHECK_RC(esdb_cmd_check(d.buf, d.len), ESDB_EINVAL);
	free(d.buf);
	CHECK_RC(esdb_cmd_mark_retry(NULL), ESDB_EINVAL);
	esdb_cmd empty = {0};
	CHECK_RC(esdb_cmd_mark_retry(&empty), ESDB_EINVAL);
}

/* The chaos checker's case: an :any append acknowledged once, stored
 * twice, because its retry came after another writer's append. */
TEST(retry_after_other_appends_answers_the_original)
{
	esdb_store *s = open_store(tmp_dir(), false);
	others(s, "s", 1000, 3);
	uint8_t ids[3][16];
	esdb_new_event evs[3] = {make_event(ids[0], 1, "t", "a"),
	                         make_event(ids[1], 2, "t", "b"),
	                         make_event(ids[2], 3, "t", "c")};
	uint64_t exps[2] = {ESDB_EXPECT_ANY, ESDB_EXPECT_STREAM_EXISTS};
	for (int e = 0; e < 2; e++) {
		/* one event, then three in one command */
		for (size_t n = 1; n <= 3; n += 2) {
			for (size_t i = 0; i < n; i++)
				make_id(ids[i], 100 * (e + 1) + 10 * n + i);
			esdb_cmd a = append_cmd("s", exps[e], evs, n);
			esdb_result first = apply1(s, &a);
			REQUIRE_OK(first.rc);
			others(s, "s", 2000 + 100 * e + 10 * n, 2);
			others(s, "elsewhere", 3000 + 100 * e + 10 * n, 1);
			uint64_t before = events_in(s);
			esdb_cmd r = retry_of(&a);
			esdb_result again = apply1(s, &r);
			CHECK_RC(again.rc, 0);
			CHECK_EQ(again.version, first.version);
			CHECK_EQ(again.position, first.position);
			CHECK_EQ(events_in(s), before);
			free(r.buf);
			free(a.buf);
		}
	}
	esdb_store_close(s);
}

TEST(unmarked_resubmission_keeps_the_tail_check_only)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "a");
	esdb_cmd a = append_cmd("s", ESDB_EXPECT_ANY, &ev, 1);
	esdb_result first = apply1(s, &a);
	REQUIRE_OK(first.rc);
	/* at the tail: recognised without the flag, as before */
	esdb_result again = apply1(s, &a);
	CHECK(again.rc == 0 && again.version == first.version);
	CHECK_EQ(events_in(s), 1);
	/* not at the tail and unmarked: the events are new to apply */
	others(s, "s", 50, 1);
	again = apply1(s, &a);
	CHECK(again.rc == 0 && again.version == 3);
	CHECK_EQ(events_in(s), 3);
	free(a.buf);
	esdb_store_close(s);
}

/* The window: the stream's last ESDB_RETRY_WINDOW versions. The first
 * event of the retried command must be among them. */
TEST(retry_window_is_the_streams_last_versions)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "a");
	esdb_cmd a = append_cmd("s", ESDB_EXPECT_ANY, &ev, 1);
	esdb_result first = apply1(s, &a);
	REQUIRE_OK(first.rc);
	/* the original at the window's oldest version: found */
	others(s, "s", 10000, ESDB_RETRY_WINDOW - 1);
	esdb_cmd r = retry_of(&a);
	esdb_result again = apply1(s, &r);
	CHECK(again.rc == 0 && again.version == first.version &&
	      again.position == first.position);
	CHECK_EQ(events_in(s), ESDB_RETRY_WINDOW);
	/* one version further: beyond the window, written (the documented
	 * limit) */
	others(s, "s", 20000, 1);
	again = apply1(s, &r);
	CHECK_RC(again.rc, 0);
	CHECK_EQ(again.version, ESDB_RETRY_WINDOW + 2);
	CHECK_EQ(events_in(s), ESDB_RETRY_WINDOW + 2);
	free(r.buf);
	free(a.buf);
	esdb_store_close(s);
}

TEST(retry_needs_the_whole_command_in_order)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t ids[2][16];
	esdb_new_event evs[2] = {make_event(ids[0], 1, "t", "a"),
	                         make_event(ids[1], 2, "t", "b")};
	esdb_cmd a = append_cmd("s", ESDB_EXPECT_ANY, evs, 1);
	REQUIRE_OK(apply1(s, &a).rc);
	others(s, "s", 50, 2);
	/* its first id is stored, its second is not: not a retry */
	esdb_cmd b = append_cmd("s", ESDB_EXPECT_ANY, evs, 2);
	esdb_cmd r = retry_of(&b);
	esdb_result res = apply1(s, &r);
	CHECK(res.rc == 0 && res.version == 5);
	CHECK_EQ(events_in(s), 5);
	free(r.buf);
	free(b.buf);
	free(a.buf);
	esdb_store_close(s);
}

TEST(retry_other_expectations)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t ids[3][16];
	esdb_new_event evs[3] = {make_event(ids[0], 1, "t", "a"),
	                         make_event(ids[1], 2, "t", "b"),
	                         make_event(ids[2], 3, "t", "c")};
	/* no stream: pinned at version 1, marked or not */
	esdb_cmd a = append_cmd("s", ESDB_EXPECT_NO_STREAM, evs, 1);
	esdb_result first = apply1(s, &a);
	REQUIRE_OK(first.rc);
	others(s, "s", 50, 3);
	esdb_cmd r = retry_of(&a);
	esdb_result again = apply1(s, &r);
	CHECK(again.rc == 0 && again.version == 1 && again.position == 1);
	/* exact version: unchanged, its expected version says where */
	esdb_cmd x = append_cmd("s", 4, &evs[1], 1);
	esdb_result xr = apply1(s, &x);
	REQUIRE_OK(xr.rc);
	others(s, "s", 60, 1);
	esdb_cmd xr2 = retry_of(&x);
	again = apply1(s, &xr2);
	CHECK(again.rc == 0 && again.version == 5 &&
	      again.position == xr.position);
	esdb_cmd y = append_cmd("s", 4, &evs[2], 1);
	esdb_cmd yr = retry_of(&y);
	CHECK_RC(apply1(s, &yr).rc, ESDB_EWRONG_VERSION);
	CHECK_EQ(events_in(s), 6);
	/* stream exists on an absent stream: refused, flag or not */
	esdb_cmd z = append_cmd("absent", ESDB_EXPECT_STREAM_EXISTS, evs, 1);
	esdb_cmd zr = retry_of(&z);
	CHECK_RC(apply1(s, &zr).rc, ESDB_ESTREAM_NOT_FOUND);
	/* a deleted stream stays deleted (applied directly, as everything
	 * here: the test's log commit path keeps its own indexes) */
	esdb_cmd del;
	REQUIRE_OK(esdb_cmd_stream_delete(NULL, "s", 1, ESDB_EXPECT_ANY, &del));
	REQUIRE_OK(apply1(s, &del).rc);
	free(del.buf);
	CHECK_RC(apply1(s, &r).rc, ESDB_ESTREAM_DELETED);
	esdb_cmd *all[] = {&a, &r, &x, &xr2, &y, &yr, &z, &zr};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]->buf);
	esdb_store_close(s);
}

/* Replicas apply the same log: an original and its retry in one batch,
 * on two stores, give the same results and the same events. */
TEST(retry_apply_is_deterministic)
{
	esdb_store *st[2] = {open_store(tmp_dir(), false),
	                     open_store(tmp_dir(), false)};
	uint8_t ids[4][16];
	esdb_new_event evs[4] = {
	    make_event(ids[0], 1, "t", "a"), make_event(ids[1], 2, "t", "b"),
	    make_event(ids[2], 3, "t", "c"), make_event(ids[3], 4, "t", "d")};
	esdb_cmd cmds[5];
	cmds[0] = append_cmd("s", ESDB_EXPECT_ANY, evs, 2);
	cmds[1] = append_cmd("s", ESDB_EXPECT_ANY, &evs[2], 1);
	cmds[2] = retry_of(&cmds[0]);
	cmds[3] = append_cmd("s", ESDB_EXPECT_ANY, &evs[3], 1);
	cmds[4] = retry_of(&cmds[1]);
	esdb_result res[2][5];
	for (int i = 0; i < 2; i++)
		REQUIRE_OK(
		    esdb_store_apply(st[i], ESDB_INDEX_NEXT, cmds, 5, res[i]));
	CHECK(memcmp(res[0], res[1], sizeof(res[0])) == 0);
	CHECK(res[0][2].rc == 0 && res[0][2].version == 2 &&
	      res[0][2].position == 1);
	CHECK(res[0][4].rc == 0 && res[0][4].version == 3 &&
	      res[0][4].position == 3);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(events_in(st[i]), 4);
		esdb_store_close(st[i]);
	}
	for (int i = 0; i < 5; i++)
		free(cmds[i].buf);
}

/* Event ids need not be unique in a stream: the window looks at every
 * copy of the retry's first id, not only the newest. Here the original
 * [a, b] is followed by other appends that reuse a's id ([a] alone, then
 * [a, c]); the retry of [a, b] is still the original. */
TEST(retry_window_looks_past_newer_copies_of_the_first_id)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t ids[3][16];
	esdb_new_event evs[3] = {make_event(ids[0], 1, "t", "a"),
	                         make_event(ids[1], 2, "t", "b"),
	                         make_event(ids[2], 3, "t", "c")};
	esdb_cmd a = append_cmd("s", ESDB_EXPECT_ANY, evs, 2);
	esdb_result first = apply1(s, &a);
	REQUIRE_OK(first.rc);
	others(s, "s", 50, 1);
	/* [a] alone, then [a, c]: newer copies of a's id */
	esdb_cmd lone = append_cmd("s", ESDB_EXPECT_ANY, evs, 1);
	REQUIRE_OK(apply1(s, &lone).rc);
	esdb_new_event ac[2] = {evs[0], evs[2]};
	esdb_cmd pair = append_cmd("s", ESDB_EXPECT_ANY, ac, 2);
	REQUIRE_OK(apply1(s, &pair).rc);
	others(s, "s", 60, 1);
	uint64_t before = events_in(s);
	esdb_cmd r = retry_of(&a);
	esdb_result again = apply1(s, &r);
	CHECK_RC(again.rc, 0);
	CHECK_EQ(again.version, first.version);
	CHECK_EQ(again.position, first.position);
	CHECK_EQ(events_in(s), before);
	/* the newest copy is the answer when several match in full */
	esdb_cmd dup = append_cmd("s", ESDB_EXPECT_ANY, evs, 2);
	esdb_result second = apply1(s, &dup);
	REQUIRE_OK(second.rc);
	others(s, "s", 70, 1);
	again = apply1(s, &r);
	CHECK(again.rc == 0 && again.version == second.version &&
	      again.position == second.position);
	esdb_cmd *all[] = {&a, &lone, &pair, &r, &dup};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]->buf);
	esdb_store_close(s);
}
