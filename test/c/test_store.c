/* test_store.c: open/close life cycle and the errors around it, map
 * growth, on-disk corruption, verify and backup. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

TEST(open_errors_are_clear)
{
	const char *base = tmp_dir();
	char path[4096], other_file[4200];
	esdb_store *s;
	/* missing directory, creation disabled */
	snprintf(path, sizeof(path), "%s/missing", base);
	s = new_store();
	REQUIRE_OK(esdb_store_set_create(s, false));
	CHECK_RC(esdb_store_open(s, path), ESDB_ENOTDIR);
	CHECK(access(path, F_OK) != 0);
	/* a directory holding something else is not a store */
	snprintf(path, sizeof(path), "%s/other", base);
	mkdir(path, 0755);
	snprintf(other_file, sizeof(other_file), "%s/notes.txt", path);
	fclose(fopen(other_file, "w"));
	CHECK_RC(esdb_store_open(s, path), ESDB_EFOREIGN);
	/* the handle is still usable after a failed open */
	REQUIRE_OK(esdb_store_set_create(s, true));
	snprintf(path, sizeof(path), "%s/nested/deeper", base);
	REQUIRE_OK(esdb_store_open(s, path));
	/* the same path twice in one process */
	esdb_store *t;
	t = new_store();
	CHECK_RC(esdb_store_open(t, path), ESDB_EBUSY);
	/* ... also through another spelling of the path */
	char other[4200];
	snprintf(other, sizeof(other), "%s/nested/../nested/deeper", base);
	CHECK_RC(esdb_store_open(t, other), ESDB_EBUSY);
	CHECK_RC(esdb_store_set_mapsize(s, 1 << 30), ESDB_EBUSY);
	esdb_store_close(s);
	REQUIRE_OK(esdb_store_open(t, path)); /* free again after close */
	esdb_store_close(t);
	/* a regular file where the directory should be */
	snprintf(path, sizeof(path), "%s/file", base);
	int fd = open(path, O_CREAT | O_WRONLY, 0644);
	close(fd);
	s = new_store();
	CHECK_RC(esdb_store_open(s, path), ESDB_EFOREIGN);
	CHECK_RC(esdb_store_open(s, NULL), ESDB_EINVAL);
	esdb_store_close(s);
	esdb_store_close(NULL);
	CHECK_RC(esdb_store_create(NULL), ESDB_EINVAL);
}

/* A 0-byte data.mdb (a creation cut short) is no store yet: opening it
 * without creation says so instead of a system error; with creation it
 * becomes a store. A path running through a file is not a store. */
TEST(empty_data_file_is_no_store)
{
	const char *dir = tmp_dir();
	char path[4200];
	esdb_store *s;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	s = new_store();
	REQUIRE_OK(esdb_store_set_readonly(s, true));
	CHECK_RC(esdb_store_open(s, dir), ESDB_ENOTDIR);
	esdb_store_close(s);
	s = new_store();
	REQUIRE_OK(esdb_store_set_create(s, false));
	CHECK_RC(esdb_store_open(s, dir), ESDB_ENOTDIR);
	REQUIRE_OK(esdb_store_set_create(s, true));
	REQUIRE_OK(esdb_store_open(s, dir));
	esdb_store_close(s);
	/* data_dir a file, the store below it */
	snprintf(path, sizeof(path), "%s/data.mdb/store", dir);
	s = new_store();
	CHECK_RC(esdb_store_open(s, path), ESDB_EFOREIGN);
	esdb_store_close(s);
}

TEST(foreign_and_other_format_stores_are_refused)
{
	const char *dir = tmp_dir();
	char path[4096];
	/* data.mdb that is not LMDB at all */
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 10000; i++)
		fputs("not an lmdb file ", f);
	fclose(f);
	esdb_store *s;
	s = new_store();
	CHECK_RC(esdb_store_open(s, dir), ESDB_EFOREIGN);
	esdb_store_close(s);

	/* an LMDB environment that some other program wrote */
	const char *dir2 = tmp_dir();
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	REQUIRE_OK(mdb_env_create(&env));
	REQUIRE_OK(mdb_env_open(env, dir2, 0, 0644));
	REQUIRE_OK(mdb_txn_begin(env, NULL, 0, &txn));
	REQUIRE_OK(mdb_dbi_open(txn, NULL, 0, &dbi));
	MDB_val k = {3, "key"}, v = {5, "value"};
	REQUIRE_OK(mdb_put(txn, dbi, &k, &v, 0));
	REQUIRE_OK(mdb_txn_commit(txn));
	mdb_env_close(env);
	s = new_store();
	CHECK_RC(esdb_store_open(s, dir2), ESDB_EFOREIGN);
	esdb_store_close(s);

	/* one of ours, but from a future format version */
	const char *dir3 = tmp_dir();
	s = open_store(dir3, false);
	esdb_store_close(s);
	REQUIRE_OK(mdb_env_create(&env));
	REQUIRE_OK(mdb_env_set_maxdbs(env, 16));
	REQUIRE_OK(mdb_env_open(env, dir3, 0, 0644));
	REQUIRE_OK(mdb_txn_begin(env, NULL, 0, &txn));
	REQUIRE_OK(mdb_dbi_open(txn, "meta", 0, &dbi));
	MDB_val fk = {6, "format"}, fv;
	REQUIRE_OK(mdb_get(txn, dbi, &fk, &fv));
	uint8_t fmt[10];
	memcpy(fmt, fv.mv_data, 10);
	fmt[6] = 99;
	fv.mv_data = fmt;
	REQUIRE_OK(mdb_put(txn, dbi, &fk, &fv, 0));
	REQUIRE_OK(mdb_txn_commit(txn));
	mdb_env_close(env);
	s = new_store();
	CHECK_RC(esdb_store_open(s, dir3), ESDB_EFORMAT);
	esdb_store_close(s);
}

TEST(readonly_store_refuses_writes)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);
	s = new_store();
	REQUIRE_OK(esdb_store_set_readonly(s, true));
	REQUIRE_OK(esdb_store_open(s, dir));
	CHECK_RC(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL),
	         EROFS);
	esdb_cmd cmd;
	esdb_result r;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1,
	                                  &cmd));
	CHECK_RC(esdb_store_apply(s, ESDB_INDEX_NEXT, &cmd, 1, &r), EROFS);
	free(cmd.buf);
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, "s", 1, &v, NULL, NULL));
	CHECK_EQ(v, 1);
	esdb_store_close(s);
	/* read-only never creates */
	s = new_store();
	REQUIRE_OK(esdb_store_set_readonly(s, true));
	CHECK_RC(esdb_store_open(s, tmp_dir()), ESDB_ENOTDIR);
	esdb_store_close(s);
}

TEST(map_grows_when_full)
{
	const char *dir = tmp_dir();
	esdb_store *s;
	s = new_store();
	REQUIRE_OK(esdb_store_set_mapsize(s, 1 << 20));
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_open(s, dir));
	static char data[4000];
	memset(data, 'z', sizeof(data) - 1);
	/* ~8 MB through a 1 MiB map, in batches of 20 */
	for (int b = 0; b < 100; b++) {
		uint8_t ids[20][16];
		esdb_new_event evs[20];
		for (int i = 0; i < 20; i++)
			evs[i] = make_event(ids[i], (uint64_t)(b * 20 + i), "t",
			                    data);
		REQUIRE_OK(esdb_stream_append(s, "big", 3, ESDB_EXPECT_ANY, evs,
		                              20, NULL));
	}
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 2000);
	CHECK(st.map_size > (1 << 20));
	esdb_store_close(s);
	s = open_store(dir, false);
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 2000);
	esdb_store_close(s);
}

/* Find `needle` in the file and flip one byte in it. */
static bool corrupt_file(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r+b");
	if (!f)
		return false;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	char *buf = malloc((size_t)size);
	fseek(f, 0, SEEK_SET);
	bool ok = fread(buf, 1, (size_t)size, f) == (size_t)size;
	char *hit =
	    ok ? memmem(buf, (size_t)size, needle, strlen(needle)) : NULL;
	if (hit) {
		fseek(f, hit - buf + 2, SEEK_SET);
		fputc(hit[2] ^ 0x20, f);
	}
	fclose(f);
	free(buf);
	return hit != NULL;
}

/* A replicated command (apply_at) that meets a record this node cannot
 * read aborts its batch: its result would be this node's alone. The
 * single-node apply answers the command ECORRUPT, as before. */
TEST(apply_at_meeting_a_corrupt_record_aborts_the_batch)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "MARKER-REPLICATED-EV");
	esdb_cmd cmd;
	esdb_result r;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, 0, &ev, 1, &cmd));
	uint64_t at = 1 << 16, applied;
	REQUIRE_OK(esdb_store_apply_at(s, &at, &cmd, 1, &r));
	REQUIRE_OK(r.rc);
	esdb_store_close(s);
	char path[4096];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	REQUIRE(corrupt_file(path, "MARKER-REPLICATED-EV"));
	s = open_store(dir, false);
	/* a retry reads the stored event's id */
	REQUIRE_OK(esdb_cmd_mark_retry(&cmd));
	at = 2 << 16;
	CHECK_RC(esdb_store_apply_at(s, &at, &cmd, 1, &r), ESDB_ECORRUPT);
	REQUIRE_OK(esdb_store_get_applied_index(s, &applied));
	CHECK_EQ(applied, 1 << 16);
	CHECK_RC(esdb_store_apply(s, ESDB_INDEX_NEXT, &cmd, 1, &r), 0);
	CHECK_RC(r.rc, ESDB_ECORRUPT);
	free(cmd.buf);
	esdb_store_close(s);
}

static void count_report(void *ctx, const char *msg)
{
	(*(int *)ctx)++;
}

TEST(corrupt_records_are_reported_never_returned)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "first-event");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	ev = make_event(id, 2, "t", "MARKER-SECOND-EVENT");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	uint64_t problems;
	REQUIRE_OK(esdb_store_verify(s, NULL, NULL, &problems));
	esdb_store_close(s);
	char path[4096];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	REQUIRE(corrupt_file(path, "MARKER-SECOND-EVENT"));
	s = open_store(dir, false);
	collected c = {0};
	CHECK_RC(esdb_stream_read(s, "s", 1, 1, 10, ESDB_DIRECTION_FORWARD,
	                          collect_event, &c, NULL),
	         ESDB_ECORRUPT);
	CHECK_EQ(c.n, 1); /* the good event came out, the bad one did not */
	collected_free(&c);
	CHECK_RC(esdb_all_read(s, 2, 10, ESDB_DIRECTION_FORWARD, collect_event,
	                       &c, NULL),
	         ESDB_ECORRUPT);
	CHECK_EQ(c.n, 0);
	CHECK_RC(esdb_type_read(s, "t", 1, 0, 10, collect_event, &c, NULL),
	         ESDB_ECORRUPT);
	collected_free(&c);
	int reports = 0;
	CHECK_RC(esdb_store_verify(s, count_report, &reports, &problems),
	         ESDB_ECORRUPT);
	CHECK(problems >= 1);
	CHECK_EQ(reports, problems);
	/* appends go on: the store stays usable */
	ev = make_event(id, 3, "t", "third");
	esdb_result r;
	REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, &r));
	CHECK_EQ(r.position, 3);
	esdb_store_close(s);
}

TEST(backup_is_a_consistent_compacted_copy)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	for (int i = 0; i < 50; i++) {
		uint8_t id[16];
		esdb_new_event ev = make_event(id, (uint64_t)i, "t", "data");
		REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
	}
	char dest[4096];
	snprintf(dest, sizeof(dest), "%s/backup", tmp_dir());
	REQUIRE_OK(esdb_store_backup(s, dest));
	CHECK_RC(esdb_store_backup(s, dest), EEXIST); /* not empty any more */
	esdb_store_close(s);
	s = open_store(dest, false);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, 50);
	uint64_t problems;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	esdb_store_close(s);
}
