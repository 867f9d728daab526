/* test_append.c: appends, expected versions, retries, deletes, limits. */
#include "harness.h"

static esdb_result append1(esdb_store *s, const char *stream, uint64_t expected,
                           uint64_t n)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, n, "t", "d");
	esdb_result r;
	esdb_stream_append(s, stream, strlen(stream), expected, &ev, 1, &r);
	return r;
}

TEST(append_assigns_versions_and_positions)
{
	esdb_store *s = open_store(tmp_dir(), false);
	esdb_result r = append1(s, "a", ESDB_EXPECT_ANY, 1);
	CHECK_RC(r.rc, 0);
	CHECK_EQ(r.version, 1);
	CHECK_EQ(r.position, 1);
	r = append1(s, "b", ESDB_EXPECT_ANY, 2);
	CHECK_EQ(r.version, 1);
	CHECK_EQ(r.position, 2);
	uint8_t ids[3][16];
	esdb_new_event evs[3] = {make_event(ids[0], 10, "t", "x"),
	                         make_event(ids[1], 11, "u", "y"),
	                         make_event(ids[2], 12, "t", "z")};
	REQUIRE_OK(esdb_stream_append(s, "a", 1, 1, evs, 3, &r));
	CHECK_EQ(r.version, 4);
	CHECK_EQ(r.position, 3);
	uint64_t v;
	bool exists, deleted;
	REQUIRE_OK(esdb_stream_get_info(s, "a", 1, &v, &exists, &deleted));
	CHECK(v == 4 && exists && !deleted);
	REQUIRE_OK(esdb_stream_get_info(s, "nope", 4, &v, &exists, &deleted));
	CHECK(v == 0 && !exists && !deleted);
	esdb_store_close(s);
}

TEST(expected_version_rules)
{
	esdb_store *s = open_store(tmp_dir(), false);
	/* absent stream */
	CHECK_RC(append1(s, "s", ESDB_EXPECT_STREAM_EXISTS, 1).rc,
	         ESDB_ESTREAM_NOT_FOUND);
	CHECK_RC(append1(s, "s", 1, 1).rc, ESDB_EWRONG_VERSION);
	CHECK_RC(append1(s, "s", ESDB_EXPECT_NO_STREAM, 1).rc, 0);
	/* existing stream at version 1 */
	CHECK_RC(append1(s, "s", ESDB_EXPECT_NO_STREAM, 2).rc,
	         ESDB_ESTREAM_EXISTS);
	CHECK_RC(append1(s, "s", 0, 2).rc, ESDB_EWRONG_VERSION);
	CHECK_RC(append1(s, "s", 2, 2).rc, ESDB_EWRONG_VERSION);
	CHECK_RC(append1(s, "s", 1, 2).rc, 0);
	CHECK_RC(append1(s, "s", ESDB_EXPECT_STREAM_EXISTS, 3).rc, 0);
	CHECK_RC(append1(s, "s", ESDB_EXPECT_ANY, 4).rc, 0);
	/* exact 0 on an absent stream is "no stream" */
	CHECK_RC(append1(s, "t", 0, 5).rc, 0);
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, "s", 1, &v, NULL, NULL));
	CHECK_EQ(v, 4);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 5); /* refused appends wrote nothing */
	esdb_store_close(s);
}

TEST(idempotent_retries_return_the_original_result)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t ids[4][16];
	esdb_new_event evs[4] = {
	    make_event(ids[0], 1, "t", "a"), make_event(ids[1], 2, "t", "b"),
	    make_event(ids[2], 3, "t", "c"), make_event(ids[3], 4, "t", "d")};
	esdb_result r, r2;
	REQUIRE_OK(
	    esdb_stream_append(s, "other", 5, ESDB_EXPECT_ANY, &evs[3], 1, &r));
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_NO_STREAM, evs, 2, &r));
	CHECK(r.version == 2 && r.position == 2);
	/* exact-version retry, no_stream retry, any retry (tail) */
	REQUIRE_OK(esdb_stream_append(s, "s", 1, 0, evs, 2, &r2));
	CHECK(r2.version == 2 && r2.position == 2);
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_NO_STREAM, evs, 2, &r2));
	CHECK(r2.version == 2 && r2.position == 2);
	REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, evs, 2, &r2));
	CHECK(r2.version == 2 && r2.position == 2);
	REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_STREAM_EXISTS, evs,
	                              2, &r2));
	CHECK(r2.version == 2 && r2.position == 2);
	/* a later event moves on; an exact retry of the first batch still
	 * answers the original */
	REQUIRE_OK(esdb_stream_append(s, "s", 1, 2, &evs[2], 1, &r));
	CHECK(r.version == 3 && r.position == 4);
	REQUIRE_OK(esdb_stream_append(s, "s", 1, 0, evs, 2, &r2));
	CHECK(r2.version == 2 && r2.position == 2);
	/* a retry of part of a batch at its own version */
	REQUIRE_OK(esdb_stream_append(s, "s", 1, 1, &evs[1], 1, &r2));
	CHECK(r2.version == 2 && r2.position == 3);
	/* different ids at a taken version: refused */
	CHECK_RC(esdb_stream_append(s, "s", 1, 0, &evs[2], 1, &r2),
	         ESDB_EWRONG_VERSION);
	/* ids in another order: not a retry */
	esdb_new_event swapped[2] = {evs[1], evs[0]};
	CHECK_RC(esdb_stream_append(s, "s", 1, 0, swapped, 2, &r2),
	         ESDB_EWRONG_VERSION);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 4);
	esdb_store_close(s);
}

TEST(deleted_streams_refuse_reads_and_appends)
{
	esdb_store *s = open_store(tmp_dir(), false);
	CHECK_RC(esdb_stream_delete(s, "s", 1, ESDB_EXPECT_ANY),
	         ESDB_ESTREAM_NOT_FOUND);
	REQUIRE_OK(append1(s, "s", ESDB_EXPECT_ANY, 1).rc);
	REQUIRE_OK(append1(s, "s", ESDB_EXPECT_ANY, 2).rc);
	CHECK_RC(esdb_stream_delete(s, "s", 1, 1), ESDB_EWRONG_VERSION);
	REQUIRE_OK(esdb_stream_delete(s, "s", 1, 2));
	CHECK_RC(esdb_stream_delete(s, "s", 1, ESDB_EXPECT_ANY),
	         ESDB_ESTREAM_DELETED);
	CHECK_RC(append1(s, "s", ESDB_EXPECT_ANY, 3).rc, ESDB_ESTREAM_DELETED);
	CHECK_RC(append1(s, "s", 2, 3).rc, ESDB_ESTREAM_DELETED);
	collected c = {0};
	CHECK_RC(esdb_stream_read(s, "s", 1, 1, 10, ESDB_DIRECTION_FORWARD,
	                          collect_event, &c, NULL),
	         ESDB_ESTREAM_DELETED);
	bool exists, deleted;
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, "s", 1, &v, &exists, &deleted));
	CHECK(exists && deleted && v == 2);
	/* its events stay in $all */
	REQUIRE_OK(esdb_all_read(s, 1, 100, ESDB_DIRECTION_FORWARD,
	                         collect_event, &c, NULL));
	CHECK_EQ(c.n, 2);
	collected_free(&c);
	esdb_store_close(s);
}

TEST(long_stream_ids_beyond_the_lmdb_key_limit)
{
	esdb_store *s = open_store(tmp_dir(), false);
	char a[1024], b[1024];
	memset(a, 'x', sizeof(a));
	memcpy(b, a, sizeof(b));
	b[1023] = 'y'; /* same 500-byte prefix, different name */
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_result r;
	REQUIRE_OK(
	    esdb_stream_append(s, a, 1024, ESDB_EXPECT_NO_STREAM, &ev, 1, &r));
	make_id(ev.event_id, 2);
	REQUIRE_OK(
	    esdb_stream_append(s, b, 1024, ESDB_EXPECT_NO_STREAM, &ev, 1, &r));
	make_id(ev.event_id, 3);
	REQUIRE_OK(
	    esdb_stream_append(s, a, 1000, ESDB_EXPECT_NO_STREAM, &ev, 1, &r));
	make_id(ev.event_id, 4);
	REQUIRE_OK(esdb_stream_append(s, a, 1024, 1, &ev, 1, &r));
	CHECK_EQ(r.version, 2);
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, b, 1024, &v, NULL, NULL));
	CHECK_EQ(v, 1);
	collected c = {0};
	REQUIRE_OK(esdb_stream_read(s, a, 1024, 1, 10, ESDB_DIRECTION_FORWARD,
	                            collect_event, &c, NULL));
	CHECK_EQ(c.n, 2);
	CHECK(c.n == 2 && strlen(c.streams[0]) == 1024);
	collected_free(&c);
	CHECK_RC(esdb_stream_append(s, a, 1025, ESDB_EXPECT_ANY, &ev, 1, &r),
	         ESDB_ELIMIT);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.streams, 3);
	uint64_t problems;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	CHECK_EQ(problems, 0);
	esdb_store_close(s);
}

TEST(batch_apply_fails_commands_alone)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t ids[3][16];
	esdb_new_event e[3] = {make_event(ids[0], 1, "t", "a"),
	                       make_event(ids[1], 2, "t", "b"),
	                       make_event(ids[2], 3, "t", "c")};
	esdb_cmd cmds[4];
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, 0, &e[0], 1, &cmds[0]));
	/* wrong version after the first applied in the same txn */
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, 0, &e[1], 1, &cmds[1]));
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, 1, &e[2], 1, &cmds[2]));
	/* a corrupted command */
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "q", 1, 0, &e[1], 1, &cmds[3]));
	cmds[3].buf[cmds[3].len - 1] ^= 0xff;
	esdb_result res[4];
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, cmds, 4, res));
	CHECK_RC(res[0].rc, 0);
	CHECK_RC(res[1].rc, ESDB_EWRONG_VERSION);
	CHECK_RC(res[2].rc, 0);
	CHECK_RC(res[3].rc, ESDB_ECORRUPT);
	CHECK(res[2].version == 2 && res[2].position == 2);
	CHECK(res[1].version == 0 && res[1].position == 0);
	for (int i = 0; i < 4; i++)
		free(cmds[i].buf);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 2);
	CHECK_EQ(st.streams, 1);
	esdb_store_close(s);
}

TEST(apply_is_deterministic)
{
	/* The same command bytes on two stores: same results, same events. */
	esdb_store *a = open_store(tmp_dir(), false);
	esdb_store *b = open_store(tmp_dir(), false);
	uint64_t rng = test_seed();
	enum { N = 300 };
	esdb_cmd cmds[N];
	for (int i = 0; i < N; i++) {
		uint8_t id[16];
		char stream[16], type[16];
		snprintf(stream, sizeof(stream), "s%d",
		         (int)(rng_next(&rng) % 7));
		snprintf(type, sizeof(type), "t%d", (int)(rng_next(&rng) % 3));
		esdb_new_event ev =
		    make_event(id, rng_next(&rng) % 50, type, "payload");
		uint64_t exp =
		    rng_next(&rng) % 2 ? ESDB_EXPECT_ANY : rng_next(&rng) % 5;
		if (i % 17 == 16)
			REQUIRE_OK(esdb_cmd_stream_delete(
			    NULL, stream, strlen(stream), exp, &cmds[i]));
		else
			REQUIRE_OK(esdb_cmd_stream_append(NULL, stream,
			                                  strlen(stream), exp,
			                                  &ev, 1, &cmds[i]));
	}
	esdb_result ra[N], rb[N];
	for (int i = 0; i < N; i += 25) {
		REQUIRE_OK(
		    esdb_store_apply(a, ESDB_INDEX_NEXT, cmds + i, 25, ra + i));
		REQUIRE_OK(
		    esdb_store_apply(b, ESDB_INDEX_NEXT, cmds + i, 25, rb + i));
	}
	CHECK(memcmp(ra, rb, sizeof(ra)) == 0);
	collected ca = {0}, cb = {0};
	REQUIRE_OK(esdb_all_read(a, 1, 100000, ESDB_DIRECTION_FORWARD,
	                         collect_event, &ca, NULL));
	REQUIRE_OK(esdb_all_read(b, 1, 100000, ESDB_DIRECTION_FORWARD,
	                         collect_event, &cb, NULL));
	REQUIRE(ca.n == cb.n && ca.n > 0);
	for (size_t i = 0; i < ca.n; i++) {
		CHECK(ca.versions[i] == cb.versions[i]);
		CHECK(!strcmp(ca.streams[i], cb.streams[i]));
		CHECK(!memcmp(ca.ids[i], cb.ids[i], 16));
	}
	collected_free(&ca);
	collected_free(&cb);
	for (int i = 0; i < N; i++)
		free(cmds[i].buf);
	esdb_store_close(a);
	esdb_store_close(b);
}

TEST(store_limits_are_enforced_in_apply)
{
	const char *dir = tmp_dir();
	esdb_store *s;
	s = new_store();
	esdb_limits l;
	esdb_limits_init(&l);
	l.max_stream_id = 4;
	l.max_append_events = 2;
	REQUIRE_OK(esdb_store_set_limits(s, &l));
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_open(s, dir));
	uint8_t id[16];
	esdb_new_event ev[3] = {make_event(id, 1, "t", "d"),
	                        make_event(id, 2, "t", "d"),
	                        make_event(id, 3, "t", "d")};
	CHECK_RC(
	    esdb_stream_append(s, "abcde", 5, ESDB_EXPECT_ANY, ev, 1, NULL),
	    ESDB_ELIMIT);
	CHECK_RC(esdb_stream_append(s, "abc", 3, ESDB_EXPECT_ANY, ev, 3, NULL),
	         ESDB_ELIMIT);
	/* A command encoded under looser limits is refused by apply too. */
	esdb_cmd cmd;
	esdb_result r;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "abcdef", 6, ESDB_EXPECT_ANY,
	                                  ev, 1, &cmd));
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, &cmd, 1, &r));
	CHECK_RC(r.rc, ESDB_ELIMIT);
	free(cmd.buf);
	esdb_limits bad = l;
	bad.max_stream_id = 70000;
	CHECK_RC(esdb_store_set_limits(s, &bad), ESDB_EBUSY); /* open already */
	esdb_store_close(s);
	s = new_store();
	CHECK_RC(esdb_store_set_limits(s, &bad), ESDB_EINVAL);
	CHECK_RC(esdb_store_set_limits(s, NULL), ESDB_EINVAL);
	esdb_store_close(s);
}
