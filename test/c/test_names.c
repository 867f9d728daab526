/* test_names.c: which stream ids may be written ($-prefixed ids are
 * reserved for the store) and the order listings give names in. */
#include "harness.h"

#include "bytes.h"
#include "codec.h"
#include "crc32c.h"

/* An append command for `name` that no encoder would produce: encoded
 * for a writable name of the same length, then renamed and resealed, as
 * a command from another node or another version could arrive. */
static void forged_append(const char *name, esdb_new_event *ev, esdb_cmd *cmd)
{
	size_t len = strlen(name);
	char plain[64];
	REQUIRE(len < sizeof(plain));
	memset(plain, 'x', len);
	REQUIRE_OK(
	    esdb_cmd_append(NULL, plain, len, ESDB_EXPECT_ANY, ev, 1, cmd));
	esdb__cmd_view v;
	REQUIRE_OK(esdb__cmd_parse(cmd->buf, cmd->len, &v));
	memcpy((char *)v.name, name, len);
	uint32_t crc = esdb_crc32c(esdb_crc32c(0, cmd->buf, 8), cmd->buf + 12,
	                           cmd->len - 12);
	esdb_put_le32(cmd->buf + 8, crc);
	REQUIRE_OK(esdb_cmd_check(cmd->buf, cmd->len));
}

TEST(stream_id_rule_refuses_empty_and_dollar_ids)
{
	CHECK_RC(esdb_stream_id_check("s", 1), 0);
	CHECK_RC(esdb_stream_id_check("a$b", 3), 0);
	CHECK_RC(esdb_stream_id_check("", 0), ESDB_EINVAL);
	CHECK_RC(esdb_stream_id_check(NULL, 0), ESDB_EINVAL);
	CHECK_RC(esdb_stream_id_check("$all", 4), ESDB_EINVAL);
	CHECK_RC(esdb_stream_id_check("$", 1), ESDB_EINVAL);
	CHECK_RC(esdb_stream_id_check("$ce-orders", 10), ESDB_EINVAL);

	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd = {0};
	CHECK_RC(
	    esdb_cmd_append(NULL, "$all", 4, ESDB_EXPECT_ANY, &ev, 1, &cmd),
	    ESDB_EINVAL);
	CHECK_RC(esdb_cmd_append(NULL, "$x", 2, ESDB_EXPECT_ANY, &ev, 1, &cmd),
	         ESDB_EINVAL);
	CHECK_RC(esdb_cmd_delete_stream(NULL, "$all", 4, ESDB_EXPECT_ANY, &cmd),
	         ESDB_EINVAL);
	CHECK(cmd.buf == NULL);
}

TEST(dollar_streams_are_never_written_and_all_is_not_a_stream)
{
	esdb_store *s = open_store(tmp_dir(), false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	CHECK_RC(esdb_append(s, "$all", 4, ESDB_EXPECT_ANY, &ev, 1, NULL),
	         ESDB_EINVAL);
	CHECK_RC(esdb_delete_stream(s, "$all", 4, ESDB_EXPECT_ANY),
	         ESDB_EINVAL);

	/* apply refuses what the encoders refuse */
	esdb_cmd cmds[2];
	esdb_result r[2];
	forged_append("$all", &ev, &cmds[0]);
	forged_append("$et-t", &ev, &cmds[1]);
	REQUIRE_OK(esdb_apply(s, cmds, 2, r));
	CHECK_RC(r[0].rc, ESDB_EINVAL);
	CHECK_RC(r[1].rc, ESDB_EINVAL);
	free(cmds[0].buf);
	free(cmds[1].buf);

	esdb_stats st;
	REQUIRE_OK(esdb_stats_get(s, &st));
	CHECK_EQ(st.events, 0);
	CHECK_EQ(st.streams, 0);

	/* $all is read with esdb_read_all, never as a stream */
	uint64_t v = 7;
	collected c = {0};
	CHECK_RC(esdb_stream_info(s, "$all", 4, &v, NULL, NULL), ESDB_EINVAL);
	CHECK_RC(esdb_read_stream(s, "$all", 4, 0, 10, ESDB_FORWARD,
	                          collect_event, &c),
	         ESDB_EINVAL);
	/* other reserved ids read as absent */
	CHECK_RC(esdb_stream_info(s, "$ce-x", 5, &v, NULL, NULL), 0);
	CHECK_EQ(v, 0);
	CHECK_RC(esdb_read_stream(s, "$ce-x", 5, 0, 10, ESDB_FORWARD,
	                          collect_event, &c),
	         ESDB_ESTREAM_NOT_FOUND);
	collected_free(&c);
	esdb_close(s);
}
