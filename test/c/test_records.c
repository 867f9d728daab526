/* test_records.c: the storage records (records.c) round-trip, and one with
 * a valid CRC but fields out of range is corrupt, in the decoders and in a
 * store that holds one (issue 9, item 4). */
#include "harness.h"

#include "bytes.h"
#include "records.h"

#include <lmdb.h>

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

/* A stream record sealed with a valid CRC, whatever its fields say. */
static size_t stream_rec(uint8_t *buf, const esdb__stream_meta *m)
{
	esdb__stream_rec_write(buf, m);
	return esdb__stream_rec_size(m->name_len, m->tail_count);
}

static esdb__stream_meta good_stream(void)
{
	esdb__stream_meta m = {.name = "s",
	                       .name_len = 1,
	                       .num = 1,
	                       .version = 40,
	                       .created_us = 5,
	                       .tail_count = 3,
	                       .tail = {10, 11, 12}};
	memset(m.last_event_id, 3, 16);
	return m;
}

TEST(stream_record_fields_are_range_checked_after_the_crc)
{
	uint8_t buf[1024];
	esdb__stream_meta m = good_stream(), out;
	REQUIRE_OK(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out));

	/* A full tail is never stored: it moves to stream_index at 32. */
	m = good_stream();
	m.tail_count = ESDB_STREAM_TAIL_MAX;
	for (uint32_t i = 0; i < m.tail_count; i++)
		m.tail[i] = 100 + i;
	CHECK_RC(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out),
	         ESDB_ECORRUPT);
	/* Versions reserved for expected-version values. */
	m = good_stream();
	m.version = UINT64_MAX;
	m.tail_count = 0;
	CHECK_RC(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out),
	         ESDB_ECORRUPT);
	m.version = ESDB_EXPECT_STREAM_EXISTS;
	CHECK_RC(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out),
	         ESDB_ECORRUPT);
	/* Stream numbers start at 1; a name is never empty. */
	m = good_stream();
	m.num = 0;
	CHECK_RC(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out),
	         ESDB_ECORRUPT);
	m = good_stream();
	m.name_len = 0;
	CHECK_RC(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out),
	         ESDB_ECORRUPT);
	/* Tail positions are positions (> 0) of consecutive versions. */
	m = good_stream();
	m.tail[1] = 0;
	CHECK_RC(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out),
	         ESDB_ECORRUPT);
	m = good_stream();
	m.tail[2] = 10;
	CHECK_RC(esdb__stream_rec_read(buf, stream_rec(buf, &m), &out),
	         ESDB_ECORRUPT);
	/* Flags nobody writes. */
	m = good_stream();
	size_t len = stream_rec(buf, &m);
	esdb__rec_seal(buf, len, ESDB_REC_STREAM, 0x80);
	CHECK_RC(esdb__stream_rec_read(buf, len, &out), ESDB_ECORRUPT);
}

TEST(stream_tail_position_stays_inside_the_tail)
{
	/* Even for a meta no decoder accepted: no index past tail[]. */
	esdb__stream_meta m = {.num = 1, .version = UINT64_MAX};
	CHECK_EQ(esdb__stream_tail_position(&m, 40), 0);
	CHECK_EQ(esdb__stream_tail_position(&m, UINT64_MAX), 0);
	m.version = 5;
	CHECK_EQ(esdb__stream_tail_position(&m, 5), 0);
	CHECK_EQ(esdb__stream_tail_position(&m, 6), 0);
}

TEST(event_record_fields_are_range_checked_after_the_crc)
{
	uint8_t id[16], buf[512];
	esdb_new_event ev = make_event(id, 1, "t", "data");
	esdb_event out;
	size_t size = esdb__event_rec_size(1, &ev);
	esdb__event_rec_write(buf, size, 7, 3, 1, "s", 1, &ev);
	REQUIRE_OK(esdb__event_rec_read(buf, size, &out));
	/* position 0, version 0, a reserved version */
	esdb__event_rec_write(buf, size, 0, 3, 1, "s", 1, &ev);
	CHECK_RC(esdb__event_rec_read(buf, size, &out), ESDB_ECORRUPT);
	esdb__event_rec_write(buf, size, 7, 0, 1, "s", 1, &ev);
	CHECK_RC(esdb__event_rec_read(buf, size, &out), ESDB_ECORRUPT);
	esdb__event_rec_write(buf, size, 7, UINT64_MAX, 1, "s", 1, &ev);
	CHECK_RC(esdb__event_rec_read(buf, size, &out), ESDB_ECORRUPT);
	/* an empty stream id or type */
	size_t s0 = esdb__event_rec_size(0, &ev);
	esdb__event_rec_write(buf, s0, 7, 3, 1, "", 0, &ev);
	CHECK_RC(esdb__event_rec_read(buf, s0, &out), ESDB_ECORRUPT);
	esdb_new_event e2 = ev;
	e2.event_type_len = 0;
	size_t s2 = esdb__event_rec_size(1, &e2);
	esdb__event_rec_write(buf, s2, 7, 3, 1, "s", 1, &e2);
	CHECK_RC(esdb__event_rec_read(buf, s2, &out), ESDB_ECORRUPT);
	/* flags nobody writes */
	esdb__event_rec_write(buf, size, 7, 3, 1, "s", 1, &ev);
	esdb__rec_seal(buf, size, ESDB_REC_EVENT, 0x4000);
	CHECK_RC(esdb__event_rec_read(buf, size, &out), ESDB_ECORRUPT);
}

TEST(named_record_fields_are_range_checked_after_the_crc)
{
	uint8_t buf[512];
	uint64_t num;
	esdb__type_rec_write(buf, "t", 1, 4);
	REQUIRE_OK(esdb__type_rec_read(buf, esdb__type_rec_size(1), &num));
	esdb__type_rec_write(buf, "t", 1, 0);
	CHECK_RC(esdb__type_rec_read(buf, esdb__type_rec_size(1), &num),
	         ESDB_ECORRUPT);
	esdb__type_rec_write(buf, "", 0, 4);
	CHECK_RC(esdb__type_rec_read(buf, esdb__type_rec_size(0), &num),
	         ESDB_ECORRUPT);

	esdb_snapshot sn = {.source_uuid = "agg",
	                    .source_uuid_len = 3,
	                    .source_version = 1,
	                    .source_type = "T",
	                    .source_type_len = 1,
	                    .data = "D",
	                    .data_len = 1,
	                    .metadata = "M",
	                    .metadata_len = 1,
	                    .created_us = 9},
	              sn2;
	size_t len = esdb__snapshot_rec_size(&sn);
	esdb__snapshot_rec_write(buf, &sn);
	REQUIRE_OK(esdb__snapshot_rec_read(buf, len, &sn2));
	/* bits 0 and 1 say which payloads are terms; bit 2 nobody writes */
	esdb__rec_seal(buf, len, ESDB_REC_SNAPSHOT, 0x4);
	CHECK_RC(esdb__snapshot_rec_read(buf, len, &sn2), ESDB_ECORRUPT);
	sn.source_uuid_len = 0;
	len = esdb__snapshot_rec_size(&sn);
	esdb__snapshot_rec_write(buf, &sn);
	CHECK_RC(esdb__snapshot_rec_read(buf, len, &sn2), ESDB_ECORRUPT);

	esdb_checkpoint cp = {"sub", 3, 77, "def", 3, 8}, cp2;
	len = esdb__checkpoint_rec_size(&cp);
	esdb__checkpoint_rec_write(buf, &cp);
	REQUIRE_OK(esdb__checkpoint_rec_read(buf, len, &cp2));
	esdb__rec_seal(buf, len, ESDB_REC_CHECKPOINT, 2);
	CHECK_RC(esdb__checkpoint_rec_read(buf, len, &cp2), ESDB_ECORRUPT);
	cp.name_len = 0;
	len = esdb__checkpoint_rec_size(&cp);
	esdb__checkpoint_rec_write(buf, &cp);
	CHECK_RC(esdb__checkpoint_rec_read(buf, len, &cp2), ESDB_ECORRUPT);
}

/* Replace the record of stream "s" in a closed store with m, resealed. */
static void craft_stream_record(const char *dir, const esdb__stream_meta *m)
{
	uint8_t buf[1024];
	raw_put(dir, "streams", "s", 1, buf, stream_rec(buf, m));
}

static void ignore_report(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

TEST(store_with_crafted_stream_record_answers_corrupt)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);

	/* tail_count 32 with a valid CRC: the next append would write
	 * tail[32] on the writer thread's stack. */
	esdb__stream_meta m = good_stream();
	m.version = 40;
	m.tail_count = ESDB_STREAM_TAIL_MAX;
	for (uint32_t i = 0; i < m.tail_count; i++)
		m.tail[i] = 100 + i;
	craft_stream_record(dir, &m);
	s = open_store(dir, false);
	make_id(id, 2);
	CHECK_RC(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL),
	         ESDB_ECORRUPT);
	uint64_t version;
	CHECK_RC(esdb_stream_get_info(s, "s", 1, &version, NULL, NULL),
	         ESDB_ECORRUPT);
	CHECK_RC(esdb_store_verify(s, ignore_report, NULL, NULL),
	         ESDB_ECORRUPT);
	uint64_t problems = 0;
	esdb_where fault;
	CHECK_RC(esdb_store_verify_isolated(s, ignore_report, NULL, &problems,
	                                    &fault),
	         ESDB_ECORRUPT);
	CHECK(problems > 0);
	CHECK_EQ(fault.kind, ESDB_WHERE_UNKNOWN); /* no fault, problems */
	esdb_store_close(s);

	/* version UINT64_MAX with an empty tail */
	m = good_stream();
	m.version = UINT64_MAX;
	m.tail_count = 0;
	craft_stream_record(dir, &m);
	s = open_store(dir, false);
	collected c = {0};
	CHECK_RC(esdb_stream_read(s, "s", 1, UINT64_MAX, 10,
	                          ESDB_DIRECTION_BACKWARD, collect_event, &c,
	                          NULL),
	         ESDB_ECORRUPT);
	CHECK_RC(esdb_store_verify(s, ignore_report, NULL, NULL),
	         ESDB_ECORRUPT);
	collected_free(&c);
	esdb_store_close(s);
}

TEST(corrupt_event_says_where)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	make_id(id, 2);
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);

	/* event 2 sealed with version 0 */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	REQUIRE_OK(mdb_env_create(&env));
	REQUIRE_OK(mdb_env_set_maxdbs(env, 16));
	REQUIRE_OK(mdb_env_set_mapsize(env, 64 << 20));
	REQUIRE_OK(mdb_env_open(env, dir, 0, 0600));
	REQUIRE_OK(mdb_txn_begin(env, NULL, 0, &txn));
	REQUIRE_OK(mdb_dbi_open(txn, "events", 0, &dbi));
	uint8_t kb[8], buf[256];
	esdb_be64_put(kb, 2);
	size_t size = esdb__event_rec_size(1, &ev);
	esdb__event_rec_write(buf, size, 2, 0, 1, "s", 1, &ev);
	MDB_val k = {8, kb}, v = {size, buf};
	REQUIRE_OK(mdb_put(txn, dbi, &k, &v, 0));
	REQUIRE_OK(mdb_txn_commit(txn));
	mdb_env_close(env);

	s = open_store(dir, false);
	collected c = {0};
	CHECK_RC(esdb_all_read(s, 0, 10, ESDB_DIRECTION_FORWARD, collect_event,
	                       &c, NULL),
	         ESDB_ECORRUPT);
	esdb_where w;
	esdb_where_take(&w);
	CHECK_EQ(w.kind, ESDB_WHERE_EVENT);
	CHECK_EQ(w.number, 2);
	esdb_where_take(&w); /* reading clears it */
	CHECK_EQ(w.kind, ESDB_WHERE_UNKNOWN);
	CHECK_EQ(c.n, 1);
	collected_free(&c);
	esdb_store_close(s);
}

static void count_report(void *ctx, const char *msg)
{
	(void)msg;
	(*(int *)ctx)++;
}

TEST(isolated_verify_of_a_good_store_is_ok)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	uint64_t problems = 9;
	int reports = 0;
	CHECK_RC(esdb_store_verify_isolated(s, count_report, &reports,
	                                    &problems, NULL),
	         0);
	CHECK_EQ(problems, 0);
	CHECK_EQ(reports, 0);
	/* the store goes on: the parent's read was released */
	make_id(id, 2);
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);
}
