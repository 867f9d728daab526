/* test_codec.c: CRC32C, record and command encodings, without a disk. */
#include "harness.h"

#include "codec.h"
#include "crc32c.h"

TEST(crc32c_known_vectors)
{
	/* RFC 3720 B.4 and the usual check value. */
	CHECK_EQ(esdb_crc32c(0, "123456789", 9), 0xE3069283u);
	uint8_t zeros[32] = {0}, ones[32];
	memset(ones, 0xff, sizeof(ones));
	CHECK_EQ(esdb_crc32c(0, zeros, 32), 0x8A9136AAu);
	CHECK_EQ(esdb_crc32c(0, ones, 32), 0x62A8AB43u);
	/* Incremental equals one shot, across odd split points. */
	const char *msg = "the quick brown fox jumps over the lazy dog";
	size_t len = strlen(msg);
	for (size_t cut = 0; cut <= len; cut++)
		CHECK_EQ(
		    esdb_crc32c(esdb_crc32c(0, msg, cut), msg + cut, len - cut),
		    esdb_crc32c(0, msg, len));
}

TEST(uuid_text_is_8_4_4_4_12_lowercase_hex)
{
	const uint8_t id[16] = {0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3,
	                        0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0xff};
	char out[37];
	memset(out, '#', sizeof(out));
	esdb_uuid_format(id, out);
	CHECK(memcmp(out, "123e4567-e89b-12d3-a456-4266141740ff", 36) == 0);
	CHECK(out[36] == '#'); /* no terminator written */
}

TEST(event_record_roundtrip_and_corruption)
{
	uint8_t id[16], caus[16], corr[16];
	esdb_new_event ev = make_event(id, 7, "deposited", "{\"amount\":5}");
	memset(caus, 1, 16);
	memset(corr, 2, 16);
	ev.causation_id = caus;
	ev.correlation_id = corr;
	size_t size = esdb__event_rec_size(6, &ev);
	uint8_t *rec = malloc(size);
	esdb__event_rec_write(rec, size, 42, 3, 1234567, "acct-1", 6, &ev);
	esdb_event out;
	REQUIRE_OK(esdb__event_rec_read(rec, size, &out));
	CHECK_EQ(out.position, 42);
	CHECK_EQ(out.stream_version, 3);
	CHECK_EQ(out.created_us, 1234567);
	CHECK(memcmp(out.event_id, id, 16) == 0);
	CHECK(out.stream_id_len == 6 && !memcmp(out.stream_id, "acct-1", 6));
	CHECK(out.event_type_len == 9 &&
	      !memcmp(out.event_type, "deposited", 9));
	CHECK(out.data_len == 12 && !memcmp(out.data, "{\"amount\":5}", 12));
	CHECK(out.metadata_len == 1);
	CHECK(out.causation_id && !memcmp(out.causation_id, caus, 16));
	CHECK(out.correlation_id && !memcmp(out.correlation_id, corr, 16));

	/* Any flipped bit anywhere is caught. */
	for (size_t i = 0; i < size; i++) {
		rec[i] ^= 0x10;
		int rc = esdb__event_rec_read(rec, size, &out);
		CHECK(rc == ESDB_ECORRUPT || rc == ESDB_EFORMAT);
		rec[i] ^= 0x10;
	}
	/* Truncation is caught. */
	for (size_t l = 0; l < size; l++)
		CHECK(esdb__event_rec_read(rec, l, &out) != 0);
	/* Another record version is a format error, not garbage. */
	rec[0] = 3;
	CHECK_RC(esdb__event_rec_read(rec, size, &out), ESDB_EFORMAT);
	free(rec);
}

TEST(named_records_roundtrip)
{
	esdb__stream_meta m = {.name = "s",
	                       .name_len = 1,
	                       .num = 9,
	                       .version = 100,
	                       .created_us = 5,
	                       .deleted = true,
	                       .tail_count = 3,
	                       .tail = {500, 600, 700}};
	memset(m.last_event_id, 3, 16);
	uint8_t buf[512];
	esdb__stream_rec_write(buf, &m);
	esdb__stream_meta m2;
	size_t size = esdb__stream_rec_size(1, 3);
	REQUIRE_OK(esdb__stream_rec_read(buf, size, &m2));
	CHECK(m2.num == 9 && m2.version == 100 && m2.created_us == 5);
	CHECK(m2.deleted && m2.name_len == 1 && m2.name[0] == 's');
	CHECK(!memcmp(m2.last_event_id, m.last_event_id, 16));
	CHECK_EQ(m2.tail_count, 3);
	CHECK_EQ(esdb__stream_tail_position(&m2, 98), 500);
	CHECK_EQ(esdb__stream_tail_position(&m2, 100), 700);
	CHECK_EQ(esdb__stream_tail_position(&m2, 97), 0);
	CHECK_EQ(esdb__stream_tail_position(&m2, 101), 0);
	CHECK(esdb__stream_rec_read(buf, size - 8, &m2) != 0);
	buf[12] ^= 1;
	CHECK_RC(esdb__stream_rec_read(buf, size, &m2), ESDB_ECORRUPT);

	esdb_snapshot sn = {.source_uuid = "agg-1",
	                    .source_uuid_len = 5,
	                    .source_version = 17,
	                    .source_type = "Elixir.Acct",
	                    .source_type_len = 11,
	                    .data = "DATA",
	                    .data_len = 4,
	                    .metadata = "META",
	                    .metadata_len = 4,
	                    .created_us = 99};
	size = esdb__snapshot_rec_size(&sn);
	esdb__snapshot_rec_write(buf, &sn);
	esdb_snapshot sn2;
	REQUIRE_OK(esdb__snapshot_rec_read(buf, size, &sn2));
	CHECK(sn2.source_version == 17 && sn2.created_us == 99);
	CHECK(sn2.source_type_len == 11 &&
	      !memcmp(sn2.source_type, "Elixir.Acct", 11));
	CHECK(sn2.data_len == 4 && !memcmp(sn2.data, "DATA", 4));
	CHECK(sn2.metadata_len == 4 && !memcmp(sn2.metadata, "META", 4));
	CHECK(esdb__snapshot_rec_read(buf, size - 1, &sn2) != 0);

	esdb_checkpoint cp = {"sub", 3, 77, "def", 3, 8};
	size = esdb__checkpoint_rec_size(&cp);
	esdb__checkpoint_rec_write(buf, &cp);
	esdb_checkpoint cp2;
	REQUIRE_OK(esdb__checkpoint_rec_read(buf, size, &cp2));
	CHECK(cp2.checkpoint == 77 && cp2.updated_us == 8);
	CHECK(cp2.definition_len == 3 && !memcmp(cp2.definition, "def", 3));
}

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

TEST(error_names_cover_every_code)
{
	for (int rc = ESDB_ERANGE_FIRST; rc <= ESDB_ERANGE_LAST; rc++) {
		CHECK(strcmp(esdb_error_name(rc), "storage_error") != 0);
		CHECK(esdb_error_describe(rc)[0] != 0);
	}
	CHECK(strcmp(esdb_error_name(ESDB_EWRONG_VERSION),
	             "wrong_expected_version") == 0);
	CHECK(strcmp(esdb_error_name(28 /* ENOSPC */), "disk_full") == 0);
	/* a binding's subscriber or owner that is gone, not a bad argument */
	CHECK(strcmp(esdb_error_name(ESDB_ENOPROC), "noproc") == 0);
}
