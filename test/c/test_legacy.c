/* test_legacy.c: stores written before payload encodings were recorded.
 * Their records are version 1 with no term bits; a read must tell such a
 * payload ("legacy": a term or bytes, nobody said) from one recorded as
 * bytes, and new writes into the same store keep their exact encodings.
 *
 * The fixture is made, not shipped: a store written by this code is
 * rewritten into the layout the code before the encoding flags wrote
 * (every record version 1, payload term bits clear, CRC resealed). The
 * two layouts differ in nothing else (docs/FORMAT.md). */
#include "harness.h"

#include "bytes.h"
#include "records.h"
#include "crc32c.h"

#include <lmdb.h>

/* The term bits a kind's records may carry (0: none). */
static uint16_t term_bits(uint8_t kind)
{
	return kind == ESDB_REC_EVENT
	           ? ESDB_EVENT_DATA_TERM | ESDB_EVENT_META_TERM
	       : kind == ESDB_REC_SNAPSHOT
	           ? ESDB_SNAPSHOT_DATA_TERM | ESDB_SNAPSHOT_META_TERM
	           : 0;
}

/* Rewrite one record as version 1; clear its term bits unless keep. */
static void to_version_1(uint8_t *rec, size_t len, bool keep)
{
	uint16_t flags = esdb_le16_get(rec + 2);
	if (!keep)
		flags &= (uint16_t)~term_bits(rec[1]);
	rec[0] = 1;
	esdb_le16_put(rec + 2, flags);
	esdb_le32_put(rec + 4,
	              esdb_crc32c(esdb_crc32c(0, rec, 4), rec + ESDB_REC_HEADER,
	                          len - ESDB_REC_HEADER));
}

/* Every record of database `name` rewritten by to_version_1. */
static void downgrade_db(MDB_txn *txn, const char *name, bool keep)
{
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	REQUIRE_OK(mdb_dbi_open(txn, name, 0, &dbi));
	REQUIRE_OK(mdb_cursor_open(txn, dbi, &cur));
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		if (strcmp(name, "meta") == 0 &&
		    (k.mv_size != 6 || memcmp(k.mv_data, "limits", 6)))
			continue; /* "format" is no record */
		uint8_t *copy = malloc(v.mv_size);
		REQUIRE(copy != NULL);
		memcpy(copy, v.mv_data, v.mv_size);
		to_version_1(copy, v.mv_size, keep);
		MDB_val nv = {v.mv_size, copy};
		REQUIRE_OK(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT));
		free(copy);
	}
	mdb_cursor_close(cur);
}

/* A closed store rewritten into the pre-encoding layout; keep_terms
 * keeps term bits (version 1 records written by the first code that
 * recorded encodings, before the record version went to 2). */
static void downgrade(const char *dir, bool keep_terms)
{
	static const char *const dbs[] = {"events",    "streams",       "types",
	                                  "snapshots", "subscriptions", "meta"};
	MDB_env *env;
	MDB_txn *txn;
	REQUIRE_OK(mdb_env_create(&env));
	REQUIRE_OK(mdb_env_set_maxdbs(env, 16));
	REQUIRE_OK(mdb_env_set_mapsize(env, 64 << 20));
	REQUIRE_OK(mdb_env_open(env, dir, 0, 0600));
	REQUIRE_OK(mdb_txn_begin(env, NULL, 0, &txn));
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++)
		downgrade_db(txn, dbs[i], keep_terms);
	REQUIRE_OK(mdb_txn_commit(txn));
	mdb_env_close(env);
}

typedef struct seen {
	size_t n;
	esdb_encoding data[8], meta[8];
	char bytes[8][8]; /* data, NUL-terminated */
} seen;

static int see_event(void *ctx, const esdb_event *ev)
{
	seen *s = ctx;
	if (s->n < 8 && ev->data_len < 8) {
		s->data[s->n] = ev->data_encoding;
		s->meta[s->n] = ev->metadata_encoding;
		memcpy(s->bytes[s->n], ev->data, ev->data_len);
		s->bytes[s->n][ev->data_len] = 0;
		s->n++;
	}
	return 0;
}

static int see_snapshot(void *ctx, const esdb_snapshot *sn)
{
	esdb_encoding *e = ctx;
	e[0] = sn->data_encoding;
	e[1] = sn->metadata_encoding;
	return 0;
}

static void put_snapshot(esdb_store *s, const char *uuid, esdb_encoding data,
                         esdb_encoding meta)
{
	esdb_snapshot sn = {.source_uuid = uuid,
	                    .source_uuid_len = strlen(uuid),
	                    .source_type = "T",
	                    .source_type_len = 1,
	                    .data = "sd",
	                    .data_len = 2,
	                    .metadata = "sm",
	                    .metadata_len = 2,
	                    .data_encoding = data,
	                    .metadata_encoding = meta};
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_snapshot_put(NULL, &sn, &cmd));
	REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
}

static void append_two(esdb_store *s, uint64_t first)
{
	uint8_t ids[2][16];
	esdb_new_event evs[2];
	evs[0] = make_event(ids[0], first, "t", first == 1 ? "a" : "c");
	evs[1] = make_event(ids[1], first + 1, "t", first == 1 ? "b" : "d");
	evs[1].data_encoding = ESDB_ENCODING_TERM; /* data only */
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, evs, 2, NULL));
}

static int see_checkpoint(void *ctx, const esdb_checkpoint *cp)
{
	*(uint64_t *)ctx = cp->checkpoint;
	return 0;
}

TEST(records_written_before_encodings_read_as_legacy)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	append_two(s, 1);
	put_snapshot(s, "old", ESDB_ENCODING_TERM, ESDB_ENCODING_BYTES);
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_checkpoint_put(NULL, "sub", 3, 7, "def", 3, &cmd));
	REQUIRE_OK(esdb_store_execute(s, &cmd, NULL));
	esdb_store_close(s);
	downgrade(dir, false);

	s = open_store(dir, false);
	seen got = {0};
	REQUIRE_OK(esdb_stream_read(s, "s", 1, 0, 10, ESDB_DIRECTION_FORWARD,
	                            see_event, &got, NULL));
	REQUIRE(got.n == 2);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(got.data[i], ESDB_ENCODING_LEGACY);
		CHECK_EQ(got.meta[i], ESDB_ENCODING_LEGACY);
	}
	CHECK(strcmp(got.bytes[0], "a") == 0 && strcmp(got.bytes[1], "b") == 0);
	esdb_encoding sn[2];
	REQUIRE_OK(esdb_snapshot_get(s, "old", 3, see_snapshot, sn));
	CHECK_EQ(sn[0], ESDB_ENCODING_LEGACY);
	CHECK_EQ(sn[1], ESDB_ENCODING_LEGACY);
	uint64_t cp = 0;
	REQUIRE_OK(esdb_checkpoint_get(s, "sub", 3, see_checkpoint, &cp));
	CHECK_EQ(cp, 7);
	uint64_t problems = 1;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	CHECK_EQ(problems, 0);

	/* New writes into the upgraded store keep their exact encodings,
	 * beside the old records, which stay legacy. */
	append_two(s, 3);
	put_snapshot(s, "new", ESDB_ENCODING_BYTES, ESDB_ENCODING_TERM);
	memset(&got, 0, sizeof(got));
	REQUIRE_OK(esdb_all_read(s, 0, 10, ESDB_DIRECTION_FORWARD, see_event,
	                         &got, NULL));
	REQUIRE(got.n == 4);
	CHECK_EQ(got.data[0], ESDB_ENCODING_LEGACY);
	CHECK_EQ(got.data[1], ESDB_ENCODING_LEGACY);
	CHECK_EQ(got.data[2], ESDB_ENCODING_BYTES);
	CHECK_EQ(got.meta[2], ESDB_ENCODING_BYTES);
	CHECK_EQ(got.data[3], ESDB_ENCODING_TERM);
	CHECK_EQ(got.meta[3], ESDB_ENCODING_BYTES);
	REQUIRE_OK(esdb_snapshot_get(s, "new", 3, see_snapshot, sn));
	CHECK_EQ(sn[0], ESDB_ENCODING_BYTES);
	CHECK_EQ(sn[1], ESDB_ENCODING_TERM);
	REQUIRE_OK(esdb_snapshot_get(s, "old", 3, see_snapshot, sn));
	CHECK_EQ(sn[0], ESDB_ENCODING_LEGACY);
	/* A snapshot replaced after the upgrade is recorded anew. */
	put_snapshot(s, "old", ESDB_ENCODING_BYTES, ESDB_ENCODING_BYTES);
	REQUIRE_OK(esdb_snapshot_get(s, "old", 3, see_snapshot, sn));
	CHECK_EQ(sn[0], ESDB_ENCODING_BYTES);
	CHECK_EQ(sn[1], ESDB_ENCODING_BYTES);
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	CHECK_EQ(problems, 0);
	esdb_store_close(s);
}

TEST(version_1_records_with_term_bits_read_as_terms)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	append_two(s, 1);
	put_snapshot(s, "x", ESDB_ENCODING_BYTES, ESDB_ENCODING_TERM);
	esdb_store_close(s);
	downgrade(dir, true);

	s = open_store(dir, false);
	seen got = {0};
	REQUIRE_OK(esdb_all_read(s, 0, 10, ESDB_DIRECTION_FORWARD, see_event,
	                         &got, NULL));
	REQUIRE(got.n == 2);
	CHECK_EQ(got.data[0], ESDB_ENCODING_LEGACY);
	CHECK_EQ(got.data[1], ESDB_ENCODING_TERM);
	CHECK_EQ(got.meta[1], ESDB_ENCODING_LEGACY);
	esdb_encoding sn[2];
	REQUIRE_OK(esdb_snapshot_get(s, "x", 1, see_snapshot, sn));
	CHECK_EQ(sn[0], ESDB_ENCODING_LEGACY);
	CHECK_EQ(sn[1], ESDB_ENCODING_TERM);
	esdb_store_close(s);
}

TEST(record_versions_1_and_2_read_others_are_format_errors)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	ev.data_encoding = ESDB_ENCODING_TERM;
	size_t size = esdb__event_rec_size(1, &ev);
	uint8_t rec[128];
	REQUIRE(size <= sizeof(rec));
	esdb__event_rec_write(rec, size, 1, 1, 1, "s", 1, &ev);
	CHECK_EQ(rec[0], 2); /* what this code writes */
	esdb_event out;
	REQUIRE_OK(esdb__event_rec_read(rec, size, &out));
	CHECK_EQ(out.data_encoding, ESDB_ENCODING_TERM);
	CHECK_EQ(out.metadata_encoding, ESDB_ENCODING_BYTES);
	to_version_1(rec, size, false);
	REQUIRE_OK(esdb__event_rec_read(rec, size, &out));
	CHECK_EQ(out.data_encoding, ESDB_ENCODING_LEGACY);
	CHECK_EQ(out.metadata_encoding, ESDB_ENCODING_LEGACY);
	for (int v = 0; v < 256; v += v == 0 ? 3 : 1) {
		to_version_1(rec, size, false);
		rec[0] = (uint8_t)v;
		esdb_le32_put(rec + 4, esdb_crc32c(esdb_crc32c(0, rec, 4),
		                                   rec + ESDB_REC_HEADER,
		                                   size - ESDB_REC_HEADER));
		CHECK_RC(esdb__event_rec_read(rec, size, &out), ESDB_EFORMAT);
	}
}

TEST(legacy_is_never_written)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd = {0};
	ev.metadata_encoding = ESDB_ENCODING_LEGACY;
	CHECK_RC(
	    esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1, &cmd),
	    ESDB_EINVAL);
	esdb_snapshot sn = {.source_uuid = "a",
	                    .source_uuid_len = 1,
	                    .data_encoding = ESDB_ENCODING_LEGACY};
	CHECK_RC(esdb_cmd_snapshot_put(NULL, &sn, &cmd), ESDB_EINVAL);
	CHECK(cmd.buf == NULL);
}

TEST(cli_prints_legacy_payloads_that_are_terms_as_terms)
{
	/* {ok,[1,2]} in external term format */
	static const uint8_t term[] = {131, 104, 2, 119, 2, 'o', 'k', 108, 0,
	                               0,   0,   2, 97,  1, 97,  2,   106};
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "x");
	ev.data = term;
	ev.data_len = sizeof(term);
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);
	downgrade(dir, false);
	s = open_store(dir, false);
	make_id(ev.event_id, 2); /* the same bytes, recorded as bytes */
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);

	static char out[16384];
	CHECK_EQ(ctl(out, sizeof(out), "--store %s read s", dir), 0);
	static const char legacy[] =
	    "data (17 bytes, erlang term): {ok, [1, 2]}";
	char *first = strstr(out, legacy);
	CHECK(first != NULL);
	CHECK(first && strstr(first + sizeof(legacy), "erlang term") == NULL);
	CHECK(strstr(out, "data (17 bytes, hex): 836802") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s read s --raw", dir), 0);
	CHECK(strstr(out, "erlang term") == NULL);
}
