/* test_encoding.c: every payload records how it was encoded (bytes or an
 * Erlang term), through the command, the record and back out of reads,
 * the emitter and snapshots; readers decode only what says "term". */
#include "harness.h"

#include "bytes.h"
#include "records.h"

typedef struct encodings {
	size_t n;
	esdb_encoding data[8], meta[8];
} encodings;

static int collect_encodings(void *ctx, const esdb_event *ev)
{
	encodings *e = ctx;
	if (e->n < 8) {
		e->data[e->n] = ev->data_encoding;
		e->meta[e->n] = ev->metadata_encoding;
		e->n++;
	}
	return 0;
}

static void deliver_encodings(void *ctx, uint64_t member, uint64_t since,
                              const esdb_event *events, size_t n)
{
	for (size_t i = 0; i < n; i++)
		collect_encodings(ctx, &events[i]);
}

TEST(event_payload_encodings_are_stored_and_read_back)
{
	esdb_store *s = open_store(tmp_dir(), false);
	encodings emitted = {0};
	REQUIRE_OK(esdb_emitter_set_deliver(s, deliver_encodings, &emitted));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, NULL));
	uint8_t ids[4][16];
	esdb_new_event evs[4];
	for (int i = 0; i < 4; i++) {
		evs[i] = make_event(ids[i], (uint64_t)i + 1, "t", "d");
		evs[i].data_encoding =
		    i & 1 ? ESDB_ENCODING_TERM : ESDB_ENCODING_BYTES;
		evs[i].metadata_encoding =
		    i & 2 ? ESDB_ENCODING_TERM : ESDB_ENCODING_BYTES;
	}
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, evs, 4, NULL));
	REQUIRE_OK(esdb_emitter_flush(s));
	encodings got = {0};
	REQUIRE_OK(esdb_stream_read(s, "s", 1, 0, 10, ESDB_DIRECTION_FORWARD,
	                            collect_encodings, &got, NULL));
	CHECK_EQ(got.n, 4);
	CHECK_EQ(emitted.n, 4);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(got.data[i], evs[i].data_encoding);
		CHECK_EQ(got.meta[i], evs[i].metadata_encoding);
		CHECK_EQ(emitted.data[i], evs[i].data_encoding);
		CHECK_EQ(emitted.meta[i], evs[i].metadata_encoding);
	}
	esdb_store_close(s);
}

TEST(event_record_flags_say_which_payloads_are_terms)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	ev.metadata_encoding = ESDB_ENCODING_TERM;
	size_t size = esdb__event_rec_size(1, &ev);
	uint8_t rec[128];
	REQUIRE(size <= sizeof(rec));
	esdb__event_rec_write(rec, size, 1, 1, 1, "s", 1, &ev);
	CHECK_EQ(esdb_le16_get(rec + 2), ESDB_EVENT_META_TERM);
	esdb_event out;
	REQUIRE_OK(esdb__event_rec_read(rec, size, &out));
	CHECK_EQ(out.data_encoding, ESDB_ENCODING_BYTES);
	CHECK_EQ(out.metadata_encoding, ESDB_ENCODING_TERM);
}

static int copy_encodings(void *ctx, const esdb_snapshot *sn)
{
	esdb_encoding *e = ctx;
	e[0] = sn->data_encoding;
	e[1] = sn->metadata_encoding;
	return 0;
}

TEST(snapshot_payload_encodings_are_stored_and_read_back)
{
	esdb_store *s = open_store(tmp_dir(), false);
	esdb_snapshot sn = {.source_uuid = "a",
	                    .source_uuid_len = 1,
	                    .source_type = "T",
	                    .source_type_len = 1,
	                    .data = "d",
	                    .data_len = 1,
	                    .metadata = "m",
	                    .metadata_len = 1,
	                    .data_encoding = ESDB_ENCODING_TERM};
	esdb_cmd cmd;
	esdb_encoding got[2];
	for (int i = 0; i < 4; i++) {
		sn.data_encoding =
		    i & 1 ? ESDB_ENCODING_TERM : ESDB_ENCODING_BYTES;
		sn.metadata_encoding =
		    i & 2 ? ESDB_ENCODING_TERM : ESDB_ENCODING_BYTES;
		REQUIRE_OK(esdb_cmd_snapshot_put(NULL, &sn, &cmd));
		REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
		REQUIRE_OK(esdb_snapshot_get(s, "a", 1, copy_encodings, got));
		CHECK_EQ(got[0], sn.data_encoding);
		CHECK_EQ(got[1], sn.metadata_encoding);
	}
	esdb_store_close(s);
}

TEST(unknown_encodings_and_command_flags_are_refused)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd = {0};
	ev.data_encoding = (esdb_encoding)2;
	CHECK_RC(
	    esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1, &cmd),
	    ESDB_EINVAL);
	ev.data_encoding = ESDB_ENCODING_BYTES;
	ev.metadata_encoding = (esdb_encoding)7;
	CHECK_RC(
	    esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1, &cmd),
	    ESDB_EINVAL);
	esdb_snapshot sn = {.source_uuid = "a",
	                    .source_uuid_len = 1,
	                    .data_encoding = (esdb_encoding)3};
	CHECK_RC(esdb_cmd_snapshot_put(NULL, &sn, &cmd), ESDB_EINVAL);
	CHECK(cmd.buf == NULL);

	/* Header flags: a snapshot put has its two, an append its retry
	 * flag (test_retry.c), nothing else has any. */
	sn.data_encoding = ESDB_ENCODING_TERM;
	REQUIRE_OK(esdb_cmd_snapshot_put(NULL, &sn, &cmd));
	CHECK_EQ(esdb_le16_get(cmd.buf + 2), ESDB_SNAPSHOT_DATA_TERM);
	CHECK_RC(esdb_cmd_check(cmd.buf, cmd.len), 0);
	esdb_le16_put(cmd.buf + 2, 0x4);
	cmd_reseal(&cmd);
	CHECK_RC(esdb_cmd_check(cmd.buf, cmd.len), ESDB_EINVAL);
	free(cmd.buf);
	ev.metadata_encoding = ESDB_ENCODING_TERM;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1,
	                                  &cmd));
	esdb_le16_put(cmd.buf + 2, ESDB_SNAPSHOT_META_TERM);
	cmd_reseal(&cmd);
	CHECK_RC(esdb_cmd_check(cmd.buf, cmd.len), ESDB_EINVAL);
	free(cmd.buf);
}
