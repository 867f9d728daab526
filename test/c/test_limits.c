/* test_limits.c: a store's limits: which one a command exceeds, kept in
 * the store's meta, changed at open through a command. */
#include "harness.h"

static esdb_store *open_with(const char *dir, const esdb_limits *l,
                             bool readonly)
{
	esdb_store *s;
	s = new_store();
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	if (l)
		REQUIRE_OK(esdb_store_set_limits(s, l));
	REQUIRE_OK(esdb_store_set_readonly(s, readonly));
	REQUIRE_OK(esdb_store_open(s, dir));
	return s;
}

TEST(encoders_name_the_limit_exceeded)
{
	esdb_limits l;
	esdb_limits_init(&l);
	l.max_stream_id = 4;
	l.max_event_type = 3;
	l.max_event_bytes = 10;
	l.max_append_events = 2;
	l.max_append_bytes = 15;
	l.max_key = 5;
	uint8_t id[16];
	esdb_new_event ev[3] = {make_event(id, 1, "t", "12345678"),
	                        make_event(id, 2, "t", "12345678"),
	                        make_event(id, 3, "t", "d")};
	esdb_cmd c;
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "abcde", 5, ESDB_EXPECT_ANY, ev, 1, &c),
	    ESDB_ELIMIT);
	CHECK_EQ(c.limit, ESDB_LIMIT_STREAM_ID);
	CHECK(c.buf == NULL);
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "abc", 3, ESDB_EXPECT_ANY, ev, 3, &c),
	    ESDB_ELIMIT);
	CHECK_EQ(c.limit, ESDB_LIMIT_APPEND_EVENTS);
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "abc", 3, ESDB_EXPECT_ANY, ev, 2, &c),
	    ESDB_ELIMIT);
	CHECK_EQ(c.limit, ESDB_LIMIT_APPEND_BYTES);
	esdb_new_event big = make_event(id, 4, "t", "1234567890");
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "abc", 3, ESDB_EXPECT_ANY, &big, 1, &c),
	    ESDB_ELIMIT);
	CHECK_EQ(c.limit, ESDB_LIMIT_EVENT_BYTES);
	esdb_new_event typed = make_event(id, 5, "long", "d");
	CHECK_RC(esdb_cmd_stream_append(&l, "abc", 3, ESDB_EXPECT_ANY, &typed,
	                                1, &c),
	         ESDB_ELIMIT);
	CHECK_EQ(c.limit, ESDB_LIMIT_EVENT_TYPE);
	CHECK_RC(esdb_cmd_checkpoint_put(&l, "sixsix", 6, 1, NULL, 0, &c),
	         ESDB_ELIMIT);
	CHECK_EQ(c.limit, ESDB_LIMIT_KEY);
	CHECK_RC(esdb_cmd_stream_delete(&l, "abcde", 5, ESDB_EXPECT_ANY, &c),
	         ESDB_ELIMIT);
	CHECK_EQ(c.limit, ESDB_LIMIT_STREAM_ID);
	REQUIRE_OK(
	    esdb_cmd_stream_append(&l, "abc", 3, ESDB_EXPECT_ANY, ev, 1, &c));
	CHECK_EQ(c.limit, ESDB_LIMIT_NONE);
	free(c.buf);
	CHECK(strcmp(esdb_limit_name(ESDB_LIMIT_EVENT_BYTES),
	             "max_event_bytes") == 0);
	CHECK_EQ(esdb_limits_lookup(&l, ESDB_LIMIT_APPEND_BYTES), 15);
}

TEST(apply_names_the_limit_and_its_value)
{
	const char *dir = tmp_dir();
	esdb_limits l = {.max_stream_id = 4};
	esdb_store *s = open_with(dir, &l, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd;
	esdb_result r;
	/* encoded under the defaults, applied under the store's limits */
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "abcdef", 6, ESDB_EXPECT_ANY,
	                                  &ev, 1, &cmd));
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, &cmd, 1, &r));
	CHECK_RC(r.rc, ESDB_ELIMIT);
	CHECK_EQ(r.limit, ESDB_LIMIT_STREAM_ID);
	CHECK_EQ(r.limit_max, 4);
	free(cmd.buf);
	CHECK_RC(esdb_stream_append(s, "abcde", 5, ESDB_EXPECT_ANY, &ev, 1, &r),
	         ESDB_ELIMIT);
	CHECK_EQ(r.limit, ESDB_LIMIT_STREAM_ID);
	CHECK_EQ(r.limit_max, 4);
	esdb_store_close(s);
}

/* Limits raised at open are the store's: the getter gives them and
 * commands encoded with them are applied. */
TEST(raised_limits_are_the_stores)
{
	const char *dir = tmp_dir();
	esdb_limits want = {.max_stream_id = 4096, .max_append_events = 20000};
	esdb_store *s = open_with(dir, &want, false);
	esdb_limits got;
	REQUIRE_OK(esdb_store_get_limits(s, &got));
	CHECK_EQ(got.max_stream_id, 4096);
	CHECK_EQ(got.max_append_events, 20000);
	CHECK_EQ(got.max_event_bytes, 16u << 20); /* 0: the default */
	char id[2000];
	memset(id, 'x', sizeof(id));
	uint8_t eid[16];
	esdb_new_event ev = make_event(eid, 1, "t", "d");
	esdb_result r;
	CHECK_RC(
	    esdb_stream_append(s, id, sizeof(id), ESDB_EXPECT_ANY, &ev, 1, &r),
	    0);
	esdb_store_close(s);
}

/* The limits a store was created with are kept in it: reopening without
 * limits applies them, reopening with others changes them, a read-only
 * open keeps the stored ones. */
TEST(limits_are_kept_in_the_store)
{
	const char *dir = tmp_dir();
	esdb_limits a = {.max_stream_id = 8, .max_event_bytes = 1000};
	esdb_store *s = open_with(dir, &a, false);
	esdb_store_close(s);

	esdb_limits got;
	s = open_with(dir, NULL, false);
	REQUIRE_OK(esdb_store_get_limits(s, &got));
	CHECK_EQ(got.max_stream_id, 8);
	CHECK_EQ(got.max_event_bytes, 1000);
	uint8_t eid[16];
	esdb_new_event ev = make_event(eid, 1, "t", "d");
	CHECK_RC(esdb_stream_append(s, "123456789", 9, ESDB_EXPECT_ANY, &ev, 1,
	                            NULL),
	         ESDB_ELIMIT);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.commits, 0); /* nothing to change */
	esdb_store_close(s);

	/* Only the fields given change. */
	esdb_limits b = {.max_stream_id = 16};
	s = open_with(dir, &b, false);
	REQUIRE_OK(esdb_store_get_limits(s, &got));
	CHECK_EQ(got.max_stream_id, 16);
	CHECK_EQ(got.max_event_bytes, 1000);
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.commits, 1); /* the LIMITS_SET command */
	CHECK_RC(esdb_stream_append(s, "123456789", 9, ESDB_EXPECT_ANY, &ev, 1,
	                            NULL),
	         0);
	esdb_store_close(s);

	esdb_limits c = {.max_stream_id = 2};
	s = open_with(dir, &c, true);
	REQUIRE_OK(esdb_store_get_limits(s, &got));
	CHECK_EQ(got.max_stream_id, 16);
	esdb_store_close(s);

	s = open_with(dir, NULL, false);
	REQUIRE_OK(esdb_store_get_limits(s, &got));
	CHECK_EQ(got.max_stream_id, 16);
	CHECK_EQ(got.max_event_bytes, 1000);
	esdb_store_close(s);
}

/* A LIMITS_SET is a command like any other: stores applying the same
 * commands agree on the outcome of later ones. */
TEST(limits_set_is_applied_in_order)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_with(dir, NULL, false);
	esdb_limits l;
	esdb_limits_init(&l);
	l.max_stream_id = 3;
	uint8_t eid[16];
	esdb_new_event e1 = make_event(eid, 1, "t", "d");
	esdb_cmd cmds[3];
	esdb_result r[3];
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "abcd", 4, ESDB_EXPECT_ANY, &e1,
	                                  1, &cmds[0]));
	REQUIRE_OK(esdb_cmd_limits_set(&l, &cmds[1]));
	esdb_new_event e2 = make_event(eid, 2, "t", "d");
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "abcd", 4, ESDB_EXPECT_ANY, &e2,
	                                  1, &cmds[2]));
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, cmds, 3, r));
	CHECK_RC(r[0].rc, 0);
	CHECK_RC(r[1].rc, 0);
	CHECK_RC(r[2].rc, ESDB_ELIMIT);
	CHECK_EQ(r[2].limit_max, 3);
	esdb_limits got;
	REQUIRE_OK(esdb_store_get_limits(s, &got));
	CHECK_EQ(got.max_stream_id, 3);
	for (int i = 0; i < 3; i++)
		free(cmds[i].buf);
	l.max_key = 0;
	esdb_cmd bad;
	CHECK_RC(esdb_cmd_limits_set(&l, &bad), ESDB_EINVAL);
	esdb_store_close(s);
}

TEST(set_limits_checks_ranges)
{
	esdb_store *s;
	s = new_store();
	esdb_limits l = {.max_stream_id = 70000};
	CHECK_RC(esdb_store_set_limits(s, &l), ESDB_EINVAL);
	l = (esdb_limits){.max_append_bytes = 1ull << 33};
	CHECK_RC(esdb_store_set_limits(s, &l), ESDB_EINVAL);
	CHECK_RC(esdb_store_set_limits(s, NULL), ESDB_EINVAL);
	l = (esdb_limits){.max_key = 7};
	REQUIRE_OK(esdb_store_set_limits(s, &l));
	esdb_limits got;
	REQUIRE_OK(esdb_store_get_limits(s, &got));
	CHECK_EQ(got.max_key, 7);
	CHECK_EQ(got.max_stream_id, 1024);
	esdb_store_close(s);
}

static int no_snapshot(void *ctx, const esdb_snapshot *sn)
{
	return -1;
}

/* Limits bound what is written, not what is read: after a limit is
 * lowered, what was written under the old one reads as before, and a
 * long name that was never written is absent, not "over a limit". Only a
 * name no record can hold (over 65,535 bytes) is refused. */
TEST(reads_are_not_bound_by_the_limits)
{
	const char *dir = tmp_dir();
	esdb_limits wide = {.max_stream_id = 2000, .max_event_type = 2000};
	esdb_store *s = open_with(dir, &wide, false);
	char id[1500], type[1000];
	memset(id, 'i', sizeof(id));
	memset(type, 't', sizeof(type));
	type[sizeof(type) - 1] = 0;
	uint8_t eid[16];
	esdb_new_event ev = make_event(eid, 1, type, "d");
	REQUIRE_OK(esdb_stream_append(s, id, sizeof(id), ESDB_EXPECT_ANY, &ev,
	                              1, NULL));
	esdb_store_close(s);

	esdb_limits narrow = {.max_stream_id = 1024, .max_event_type = 512};
	s = open_with(dir, &narrow, false);
	collected c = {0};
	CHECK_RC(esdb_stream_read(s, id, sizeof(id), 1, 10,
	                          ESDB_DIRECTION_FORWARD, collect_event, &c,
	                          NULL),
	         0);
	CHECK_EQ(c.n, 1);
	CHECK_RC(esdb_type_read(s, type, strlen(type), 1, 10, collect_event, &c,
	                        NULL),
	         0);
	CHECK_EQ(c.n, 2);
	collected_free(&c);
	uint64_t v;
	CHECK_RC(esdb_stream_get_info(s, id, sizeof(id), &v, NULL, NULL), 0);
	CHECK_EQ(v, 1);
	/* a long name never written: absent */
	id[0] = 'x';
	CHECK_RC(esdb_stream_read(s, id, sizeof(id), 1, 10,
	                          ESDB_DIRECTION_FORWARD, collect_event, &c,
	                          NULL),
	         ESDB_ESTREAM_NOT_FOUND);
	CHECK_RC(esdb_snapshot_get(s, id, sizeof(id), no_snapshot, NULL),
	         ESDB_ENOTFOUND);
	/* one no record can hold */
	static char huge[70000];
	memset(huge, 'h', sizeof(huge));
	CHECK_RC(esdb_stream_read(s, huge, sizeof(huge), 1, 10,
	                          ESDB_DIRECTION_FORWARD, collect_event, &c,
	                          NULL),
	         ESDB_EINVAL);
	esdb_store_close(s);
}
