/* test_read.c: stream, $all and type reads; listing; snapshots;
 * checkpoints; stats. */
#include "harness.h"

/* 3 streams interleaved: position p goes to stream "s<p%3>", type
 * "even"/"odd" by p. */
static esdb_store *populated(int n)
{
	esdb_store *s = open_store(tmp_dir(), false);
	for (int p = 1; p <= n; p++) {
		uint8_t id[16];
		char stream[8], data[16];
		snprintf(stream, sizeof(stream), "s%d", p % 3);
		snprintf(data, sizeof(data), "d%d", p);
		esdb_new_event ev =
		    make_event(id, (uint64_t)p, p % 2 ? "odd" : "even", data);
		REQUIRE_OK(esdb_stream_append(s, stream, strlen(stream),
		                              ESDB_EXPECT_ANY, &ev, 1, NULL));
	}
	return s;
}

TEST(read_stream_forward_backward_paged)
{
	esdb_store *s = populated(30); /* s1: positions 1,4,...,28 (10) */
	collected c = {0};
	REQUIRE_OK(esdb_stream_read(s, "s1", 2, 0, 4, ESDB_DIRECTION_FORWARD,
	                            collect_event, &c, NULL));
	REQUIRE(c.n == 4);
	CHECK(c.versions[0] == 1 && c.versions[3] == 4);
	CHECK(c.positions[0] == 1 && c.positions[1] == 4);
	CHECK(!strcmp(c.data[1], "d4") && !strcmp(c.streams[0], "s1"));
	/* resume after the last one seen */
	REQUIRE_OK(esdb_stream_read(s, "s1", 2, 5, 100, ESDB_DIRECTION_FORWARD,
	                            collect_event, &c, NULL));
	CHECK_EQ(c.n, 10);
	for (size_t i = 0; i < c.n; i++)
		CHECK_EQ(c.versions[i], i + 1);
	collected_free(&c);
	/* past the end: empty, not an error */
	REQUIRE_OK(esdb_stream_read(s, "s1", 2, 11, 100, ESDB_DIRECTION_FORWARD,
	                            collect_event, &c, NULL));
	CHECK_EQ(c.n, 0);
	/* backward from the end and from the middle */
	REQUIRE_OK(esdb_stream_read(s, "s1", 2, UINT64_MAX, 3,
	                            ESDB_DIRECTION_BACKWARD, collect_event, &c,
	                            NULL));
	REQUIRE(c.n == 3);
	CHECK(c.versions[0] == 10 && c.versions[2] == 8);
	collected_free(&c);
	REQUIRE_OK(esdb_stream_read(s, "s1", 2, 2, 10, ESDB_DIRECTION_BACKWARD,
	                            collect_event, &c, NULL));
	REQUIRE(c.n == 2);
	CHECK(c.versions[0] == 2 && c.versions[1] == 1);
	collected_free(&c);
	REQUIRE_OK(esdb_stream_read(s, "s1", 2, 0, 10, ESDB_DIRECTION_BACKWARD,
	                            collect_event, &c, NULL));
	CHECK_EQ(c.n, 0);
	CHECK_RC(esdb_stream_read(s, "zz", 2, 1, 10, ESDB_DIRECTION_FORWARD,
	                          collect_event, &c, NULL),
	         ESDB_ESTREAM_NOT_FOUND);
	CHECK_RC(esdb_stream_read(s, "", 0, 1, 10, ESDB_DIRECTION_FORWARD,
	                          collect_event, &c, NULL),
	         ESDB_EINVAL);
	CHECK_RC(
	    esdb_stream_read(s, "s1", 2, 1, 10, 7, collect_event, &c, NULL),
	    ESDB_EINVAL);
	CHECK_RC(esdb_stream_read(s, "s1", 2, 1, 10, ESDB_DIRECTION_FORWARD,
	                          NULL, &c, NULL),
	         ESDB_EINVAL);
	collected_free(&c);
	esdb_store_close(s);
}

static int stop_after_two(void *ctx, const esdb_event *ev)
{
	int *n = ctx;
	return ++*n == 2 ? 12345 : 0;
}

TEST(read_all_and_callback_stop)
{
	esdb_store *s = populated(25);
	collected c = {0};
	REQUIRE_OK(esdb_all_read(s, 0, 10, ESDB_DIRECTION_FORWARD,
	                         collect_event, &c, NULL));
	REQUIRE(c.n == 10);
	for (size_t i = 0; i < c.n; i++)
		CHECK_EQ(c.positions[i], i + 1);
	REQUIRE_OK(esdb_all_read(s, 11, 100, ESDB_DIRECTION_FORWARD,
	                         collect_event, &c, NULL));
	CHECK_EQ(c.n, 25);
	CHECK_EQ(c.positions[24], 25);
	collected_free(&c);
	REQUIRE_OK(esdb_all_read(s, UINT64_MAX, 5, ESDB_DIRECTION_BACKWARD,
	                         collect_event, &c, NULL));
	REQUIRE(c.n == 5);
	CHECK(c.positions[0] == 25 && c.positions[4] == 21);
	collected_free(&c);
	REQUIRE_OK(esdb_all_read(s, 3, 5, ESDB_DIRECTION_BACKWARD,
	                         collect_event, &c, NULL));
	REQUIRE(c.n == 3);
	CHECK(c.positions[0] == 3 && c.positions[2] == 1);
	collected_free(&c);
	int n = 0;
	CHECK_RC(esdb_all_read(s, 1, 100, ESDB_DIRECTION_FORWARD,
	                       stop_after_two, &n, NULL),
	         12345);
	CHECK_EQ(n, 2);
	esdb_store_close(s);
}

TEST(read_by_event_type)
{
	esdb_store *s = populated(20);
	collected c = {0};
	REQUIRE_OK(esdb_type_read(s, "odd", 3, 0, 4, collect_event, &c, NULL));
	REQUIRE(c.n == 4);
	CHECK(c.positions[0] == 1 && c.positions[3] == 7);
	/* resume from the next position */
	REQUIRE_OK(
	    esdb_type_read(s, "odd", 3, 8, 100, collect_event, &c, NULL));
	CHECK_EQ(c.n, 10);
	for (size_t i = 0; i < c.n; i++)
		CHECK(!strcmp(c.types[i], "odd"));
	collected_free(&c);
	REQUIRE_OK(
	    esdb_type_read(s, "missing", 7, 0, 100, collect_event, &c, NULL));
	CHECK_EQ(c.n, 0);
	esdb_store_close(s);
}

static int collect_stream_names(void *ctx, const esdb_stream *st)
{
	char *out = ctx;
	strncat(out, st->stream_id, st->stream_id_len);
	strcat(out, st->deleted ? "! " : " ");
	return 0;
}

TEST(list_streams_paged)
{
	esdb_store *s = populated(9);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 100, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "a", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	REQUIRE_OK(esdb_stream_delete(s, "s2", 2, ESDB_EXPECT_ANY));
	char out[256] = "";
	REQUIRE_OK(esdb_stream_list(s, NULL, 0, 2, collect_stream_names, out));
	CHECK(!strcmp(out, "a s0 "));
	REQUIRE_OK(esdb_stream_list(s, "s0", 2, 10, collect_stream_names, out));
	CHECK(!strcmp(out, "a s0 s1 s2! "));
	out[0] = 0;
	/* resuming after a name that does not exist works too */
	REQUIRE_OK(esdb_stream_list(s, "b", 1, 10, collect_stream_names, out));
	CHECK(!strcmp(out, "s0 s1 s2! "));
	esdb_store_close(s);
}

static int copy_snapshot(void *ctx, const esdb_snapshot *sn)
{
	esdb_snapshot *out = ctx;
	*out = *sn;
	out->data = strndup(sn->data, sn->data_len);
	out->source_type = strndup(sn->source_type, sn->source_type_len);
	return 0;
}

TEST(snapshots_put_get_delete)
{
	esdb_store *s = open_store(tmp_dir(), false);
	esdb_cmd cmd;
	esdb_snapshot sn = {0};
	CHECK_RC(esdb_snapshot_get(s, "agg", 3, copy_snapshot, &sn),
	         ESDB_ENOTFOUND);
	esdb_snapshot put = {.source_uuid = "agg",
	                     .source_uuid_len = 3,
	                     .source_version = 7,
	                     .source_type = "Acct",
	                     .source_type_len = 4,
	                     .data = "v1",
	                     .data_len = 2,
	                     .metadata = "m",
	                     .metadata_len = 1};
	REQUIRE_OK(esdb_cmd_snapshot_put(NULL, &put, &cmd));
	REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
	REQUIRE_OK(esdb_snapshot_get(s, "agg", 3, copy_snapshot, &sn));
	CHECK(sn.source_version == 7 && !strcmp(sn.data, "v1"));
	CHECK(!strcmp(sn.source_type, "Acct") && sn.metadata_len == 1);
	CHECK(sn.created_us > 0);
	free((void *)sn.data);
	free((void *)sn.source_type);
	/* a newer snapshot replaces the old one */
	put.source_version = 9;
	put.data = "v2";
	put.metadata = NULL;
	put.metadata_len = 0;
	REQUIRE_OK(esdb_cmd_snapshot_put(NULL, &put, &cmd));
	REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
	REQUIRE_OK(esdb_snapshot_get(s, "agg", 3, copy_snapshot, &sn));
	CHECK(sn.source_version == 9 && !strcmp(sn.data, "v2"));
	free((void *)sn.data);
	free((void *)sn.source_type);
	REQUIRE_OK(esdb_cmd_snapshot_delete(NULL, "agg", 3, &cmd));
	REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
	CHECK_RC(esdb_snapshot_get(s, "agg", 3, copy_snapshot, &sn),
	         ESDB_ENOTFOUND);
	REQUIRE_OK(esdb_cmd_snapshot_delete(NULL, "agg", 3, &cmd));
	CHECK_RC(esdb_store_execute(s, &cmd, NULL), ESDB_ENOTFOUND);
	esdb_store_close(s);
}

static int collect_checkpoint(void *ctx, const esdb_checkpoint *cp)
{
	char *out = ctx;
	char buf[128];
	snprintf(buf, sizeof(buf), "%.*s=%llu:%.*s ", (int)cp->name_len,
	         cp->name, (unsigned long long)cp->checkpoint,
	         (int)cp->definition_len, (const char *)cp->definition);
	strcat(out, buf);
	return 0;
}

TEST(checkpoints_put_get_list_delete)
{
	esdb_store *s = open_store(tmp_dir(), false);
	const char *names[] = {"b", "a", "c"};
	for (int i = 0; i < 3; i++) {
		esdb_cmd cmd;
		REQUIRE_OK(esdb_cmd_checkpoint_put(
		    NULL, names[i], 1, (uint64_t)i * 10, "def", 3, &cmd));
		REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
	}
	char out[256] = "";
	REQUIRE_OK(esdb_checkpoint_get(s, "a", 1, collect_checkpoint, out));
	CHECK(!strcmp(out, "a=10:def "));
	out[0] = 0;
	REQUIRE_OK(
	    esdb_checkpoint_list(s, NULL, 0, 2, collect_checkpoint, out));
	CHECK(!strcmp(out, "a=10:def b=0:def "));
	out[0] = 0;
	REQUIRE_OK(esdb_checkpoint_list(s, "b", 1, 2, collect_checkpoint, out));
	CHECK(!strcmp(out, "c=20:def "));
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_checkpoint_put(NULL, "a", 1, 11, NULL, 0, &cmd));
	REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
	out[0] = 0;
	REQUIRE_OK(esdb_checkpoint_get(s, "a", 1, collect_checkpoint, out));
	CHECK(!strcmp(out, "a=11: "));
	REQUIRE_OK(esdb_cmd_checkpoint_delete(NULL, "a", 1, &cmd));
	REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
	CHECK_RC(esdb_checkpoint_get(s, "a", 1, collect_checkpoint, out),
	         ESDB_ENOTFOUND);
	REQUIRE_OK(esdb_cmd_checkpoint_delete(NULL, "a", 1, &cmd));
	CHECK_RC(esdb_store_execute(s, &cmd, NULL), ESDB_ENOTFOUND);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.checkpoints, 2);
	esdb_store_close(s);
}

TEST(stats_count_everything)
{
	esdb_store *s = populated(12);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 12);
	CHECK_EQ(st.streams, 3);
	CHECK_EQ(st.event_types, 2);
	CHECK_EQ(st.snapshots, 0);
	CHECK(st.bytes_used > 0 && st.bytes_used <= st.map_size);
	CHECK_EQ(st.commits, 12);
	CHECK_RC(esdb_store_get_stats(s, NULL), ESDB_EINVAL);
	esdb_store_close(s);
}

TEST(reads_cross_the_indexed_and_tail_parts_of_a_stream)
{
	/* 100 events: 96 in stream_index, 4 in the stream record's tail. */
	esdb_store *s = open_store(tmp_dir(), false);
	for (int b = 0; b < 10; b++) {
		uint8_t ids[10][16];
		esdb_new_event evs[10];
		for (int i = 0; i < 10; i++)
			evs[i] = make_event(ids[i], (uint64_t)(b * 10 + i), "t",
			                    "d");
		REQUIRE_OK(esdb_stream_append(s, "long", 4, ESDB_EXPECT_ANY,
		                              evs, 10, NULL));
	}
	for (uint64_t from = 1; from <= 100; from++) {
		collected c = {0};
		REQUIRE_OK(esdb_stream_read(s, "long", 4, from, 7,
		                            ESDB_DIRECTION_FORWARD,
		                            collect_event, &c, NULL));
		CHECK_EQ(c.n, from + 6 <= 100 ? 7 : 101 - from);
		for (size_t i = 0; i < c.n; i++)
			CHECK_EQ(c.versions[i], from + i);
		collected_free(&c);
		REQUIRE_OK(esdb_stream_read(s, "long", 4, from, 7,
		                            ESDB_DIRECTION_BACKWARD,
		                            collect_event, &c, NULL));
		CHECK_EQ(c.n, from >= 7 ? 7 : from);
		for (size_t i = 0; i < c.n; i++)
			CHECK_EQ(c.versions[i], from - i);
		collected_free(&c);
	}
	uint64_t problems;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	esdb_store_close(s);
}
