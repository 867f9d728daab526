/* test_commands.c: the commands (commands.c, the log entry format):
 * encoders validate, parsing round-trips and checks the framing. */
#include "harness.h"

#include "commands.h"

TEST(append_command_roundtrip)
{
	uint8_t id1[16], id2[16], corr[16];
	esdb_new_event evs[2] = {make_event(id1, 1, "a", "x"),
	                         make_event(id2, 2, "bb", "")};
	memset(corr, 9, 16);
	evs[1].correlation_id = corr;
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "st", 2, 5, evs, 2, &cmd));
	esdb__cmd_view v;
	REQUIRE_OK(esdb__cmd_parse(cmd.buf, cmd.len, &v));
	CHECK_EQ(v.type, ESDB_CMD_APPEND);
	CHECK_EQ(v.expected, 5);
	CHECK(v.name_len == 2 && !memcmp(v.name, "st", 2));
	CHECK_EQ(v.n_events, 2);
	CHECK(v.created_us > 0);
	const uint8_t *c = v.events;
	esdb_new_event e;
	esdb__cmd_next_event(&c, &e);
	CHECK(!memcmp(e.event_id, id1, 16) && e.event_type_len == 1);
	CHECK(e.correlation_id == NULL && e.data_len == 1);
	esdb__cmd_next_event(&c, &e);
	CHECK(!memcmp(e.event_id, id2, 16) && e.event_type_len == 2);
	CHECK(e.correlation_id && !memcmp(e.correlation_id, corr, 16));
	CHECK(e.data_len == 0 && e.metadata_len == 1);
	CHECK(c == v.events + v.events_len);
	CHECK_RC(esdb_cmd_check(cmd.buf, cmd.len), 0);

	/* Every single-bit flip and every truncation is refused. */
	for (size_t i = 0; i < cmd.len; i++) {
		cmd.buf[i] ^= 0x01;
		CHECK(esdb_cmd_check(cmd.buf, cmd.len) != 0);
		cmd.buf[i] ^= 0x01;
	}
	for (size_t l = 0; l < cmd.len; l++)
		CHECK(esdb_cmd_check(cmd.buf, l) != 0);
	CHECK_RC(esdb_cmd_check(NULL, 0), ESDB_EINVAL);
	free(cmd.buf);
}

TEST(command_encoders_validate_input)
{
	esdb_limits l;
	esdb_limits_init(&l);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd = {0};
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "", 0, ESDB_EXPECT_ANY, &ev, 1, &cmd),
	    ESDB_EINVAL);
	CHECK_RC(
	    esdb_cmd_stream_append(&l, NULL, 3, ESDB_EXPECT_ANY, &ev, 1, &cmd),
	    ESDB_EINVAL);
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, &ev, 0, &cmd),
	    ESDB_EEMPTY);
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, NULL, 1, &cmd),
	    ESDB_EINVAL);
	char big[1100];
	memset(big, 'x', sizeof(big));
	CHECK_RC(esdb_cmd_stream_append(&l, big, 1025, ESDB_EXPECT_ANY, &ev, 1,
	                                &cmd),
	         ESDB_ELIMIT);
	esdb_new_event bad = ev;
	bad.event_type_len = 0;
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, &bad, 1, &cmd),
	    ESDB_EINVAL);
	bad = ev;
	bad.event_type = big;
	bad.event_type_len = 513;
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, &bad, 1, &cmd),
	    ESDB_ELIMIT);
	bad = ev;
	bad.data = NULL;
	bad.data_len = 10;
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, &bad, 1, &cmd),
	    ESDB_EINVAL);
	/* Size limits without allocating the payload: lengths only. */
	l.max_event_bytes = 100;
	bad = ev;
	bad.data = big;
	bad.data_len = 100; /* + 1 byte metadata */
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, &bad, 1, &cmd),
	    ESDB_ELIMIT);
	esdb_limits_init(&l);
	l.max_append_events = 3;
	esdb_new_event four[4] = {ev, ev, ev, ev};
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, four, 4, &cmd),
	    ESDB_ELIMIT);
	esdb_limits_init(&l);
	l.max_append_bytes = 5;
	CHECK_RC(
	    esdb_cmd_stream_append(&l, "s", 1, ESDB_EXPECT_ANY, four, 3, &cmd),
	    ESDB_ELIMIT);
	esdb_snapshot no_uuid = {.source_version = 1,
	                         .source_type = "t",
	                         .source_type_len = 1,
	                         .data = "d",
	                         .data_len = 1};
	CHECK_RC(esdb_cmd_snapshot_put(NULL, &no_uuid, &cmd), ESDB_EINVAL);
	CHECK_RC(esdb_cmd_checkpoint_put(NULL, big, 1025, 1, NULL, 0, &cmd),
	         ESDB_ELIMIT);
	CHECK_RC(esdb_cmd_checkpoint_delete(NULL, "", 0, &cmd), ESDB_EINVAL);
	CHECK_RC(esdb_cmd_stream_delete(NULL, NULL, 0, 0, &cmd), ESDB_EINVAL);
	CHECK(cmd.buf == NULL);
}

TEST(command_reserved_bytes_must_be_zero)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, 0, &ev, 1, &cmd));
	const size_t reserved[] = {2, 3, 12, 13, 14, 15};
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		uint8_t *b = cmd.buf;
		/* an append's flags have bit 0 (retry) alone */
		b[reserved[i]] = 0x80;
		cmd_reseal(&cmd); /* only the structure is wrong */
		CHECK_RC(esdb_cmd_check(b, cmd.len), ESDB_EINVAL);
		b[reserved[i]] = 0;
	}
	free(cmd.buf);
}
