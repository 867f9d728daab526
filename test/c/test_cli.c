/* test_cli.c: the operator CLI (priv/ex_esdb_ctl, or $ESDB_CTL), run as
 * a process: output, JSON and exit codes. */
#include "harness.h"

#include <unistd.h>

TEST(cli_append_read_stats_json)
{
	const char *dir = tmp_dir();
	char out[8192], file[4200];
	snprintf(file, sizeof(file), "%s/payload", dir);
	FILE *f = fopen(file, "w");
	fputs("hello-cli", f);
	fclose(f);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/store stats", dir), 3);
	CHECK(strstr(out, "no store") != NULL);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s/store append acct-1 --type opened "
	             "--file %s --create",
	             dir, file),
	         0);
	CHECK(strstr(out, "version 1, position 1") != NULL);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s/store append acct-1 --type deposited "
	             "--expected 1 --file %s",
	             dir, file),
	         0);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s/store append acct-1 --type deposited "
	             "--expected 1 --file %s",
	             dir, file),
	         1);
	CHECK(strstr(out, "wrong_expected_version") != NULL);
	CHECK_EQ(
	    ctl(out, sizeof(out), "--store %s/store --json read acct-1", dir),
	    0);
	CHECK(strstr(out, "\"data\":\"hello-cli\"") != NULL);
	CHECK(strstr(out, "\"count\":2") != NULL);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s/store --json read acct-1 --backward "
	             "--count 1",
	             dir),
	         0);
	CHECK(strstr(out, "\"type\":\"deposited\"") != NULL);
	CHECK(strstr(out, "\"count\":1") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/store --json stats", dir),
	         0);
	CHECK(strstr(out, "\"events\":2") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/store read nope", dir), 1);
	CHECK(strstr(out, "stream_not_found") != NULL);
	CHECK_EQ(
	    ctl(out, sizeof(out), "--store %s/store read-type opened", dir), 0);
	CHECK(strstr(out, "acct-1") != NULL);
}

TEST(cli_streams_lists_long_ids_in_listing_order)
{
	/* Ids past 500 bytes sharing a prefix are listed by hash, not by
	 * byte order: the CLI's order check must take that order. */
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	char id[1000];
	uint8_t eid[16];
	esdb_new_event ev = make_event(eid, 1, "t", "d");
	memset(id, 'p', sizeof(id));
	for (int i = 0; i < 8; i++) {
		id[999] = (char)('a' + i);
		make_id(ev.event_id, (uint64_t)i + 1);
		REQUIRE_OK(esdb_stream_append(s, id, sizeof(id),
		                              ESDB_EXPECT_ANY, &ev, 1, NULL));
	}
	esdb_store_close(s);
	static char out[65536];
	CHECK_EQ(ctl(out, sizeof(out), "--store %s streams", dir), 0);
	CHECK(strstr(out, "-- 8 streams") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --json streams", dir), 0);
	CHECK(strstr(out, "\"count\":8") != NULL);
	/* --after each long id resumes after it: 0..7 streams follow */
	unsigned seen = 0;
	for (int i = 0; i < 8; i++) {
		id[999] = (char)('a' + i);
		CHECK_EQ(ctl(out, sizeof(out),
		             "--store %s streams --after %.1000s", dir, id),
		         0);
		char *tail = strstr(out, "\n-- ");
		unsigned n = 99;
		CHECK(tail && sscanf(tail, "\n-- %u", &n) == 1);
		if (n < 8)
			seen |= 1u << n;
	}
	CHECK_EQ(seen, 0xff);
}

/* A store directory whose data.mdb is empty: "no store", exit 3 as the
 * help says, not a system error with exit 1. */
TEST(cli_empty_data_file_is_no_store)
{
	const char *dir = tmp_dir();
	char out[8192], path[4200];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	fclose(fopen(path, "w"));
	CHECK_EQ(ctl(out, sizeof(out), "--store %s stats", dir), 3);
	CHECK(strstr(out, "no store") != NULL);
	snprintf(path, sizeof(path), "%s/data.mdb/below", dir);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s stats", path), 3);
}

/* --data-dir means what ExESDB's data_dir option means: the directory
 * stores live in, the store being DIR/ID (--store-id, default ex_esdb).
 * --store names a store's own directory, as ex_esdb:open/2 takes it. */
TEST(cli_data_dir_means_what_elixir_means)
{
	const char *dir = tmp_dir();
	char out[8192], file[4200];
	snprintf(file, sizeof(file), "%s/payload", dir);
	FILE *f = fopen(file, "w");
	fputs("x", f);
	fclose(f);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--data-dir %s --store-id orders append o-1 --type t "
	             "--file %s --create",
	             dir, file),
	         0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/orders stats", dir), 0);
	CHECK(strstr(out, "events:      1") != NULL);
	CHECK_EQ(
	    ctl(out, sizeof(out), "stats --data-dir=%s --store-id=orders", dir),
	    0);
	/* the default store id is ExESDB's */
	CHECK_EQ(ctl(out, sizeof(out), "--data-dir %s stats", dir), 3);
	CHECK(strstr(out, "/ex_esdb") != NULL);
	/* a store's own directory given as --data-dir: say what to use */
	CHECK_EQ(ctl(out, sizeof(out), "--data-dir %s/orders stats", dir), 3);
	CHECK(strstr(out, "--store") != NULL);
	/* one way to name the store; store ids are names, not paths */
	CHECK_EQ(
	    ctl(out, sizeof(out), "--store %s --data-dir %s stats", dir, dir),
	    2);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --store-id x stats", dir),
	         2);
	CHECK_EQ(
	    ctl(out, sizeof(out), "--data-dir %s --store-id ../x stats", dir),
	    2);
	CHECK_EQ(ctl(out, sizeof(out), "stats"), 2);
}

TEST(cli_usage_errors_exit_2)
{
	const char *dir = tmp_dir();
	char out[8192];
	CHECK_EQ(ctl(out, sizeof(out), "--store %s frobnicate", dir), 2);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s read s --from 12x", dir), 2);
	CHECK_EQ(ctl(out, sizeof(out), "stats"), 2);
	CHECK_EQ(ctl(out, sizeof(out), "--help"), 0);
	CHECK(strstr(out, "usage:") != NULL);
}

TEST(cli_verify_and_backup)
{
	const char *dir = tmp_dir();
	char out[8192];
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s/st append s --type t --create "
	             "< /dev/null",
	             dir),
	         0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/st verify", dir), 0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/st backup %s/bk", dir, dir),
	         0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/bk --json stats", dir), 0);
	CHECK(strstr(out, "\"events\":1") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s/st backup %s/bk", dir, dir),
	         1);
}

TEST(cli_writes_beside_a_store_open_read_only_in_this_process)
{
	/* LMDB lets processes share a store; when another one grows the
	 * map, this one adopts the new size (MDB_MAP_RESIZED). */
	const char *dir = tmp_dir();
	char out[8192], file[4200];
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s append own --type t --create < /dev/null",
	             dir),
	         0);
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_mapsize(s, 1 << 20));
	REQUIRE_OK(esdb_store_set_readonly(s, true));
	REQUIRE_OK(esdb_store_open(s, dir));
	snprintf(file, sizeof(file), "%s.payload", dir);
	FILE *f = fopen(file, "w");
	for (int i = 0; i < 300000; i++)
		fputc('a' + i % 26, f);
	fclose(f);
	/* 8 x 300 KB from the CLI: past this process's 1 MiB map */
	for (int i = 0; i < 8; i++)
		CHECK_EQ(ctl(out, sizeof(out),
		             "--store %s append other --type big --file %s",
		             dir, file),
		         0);
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, "other", 5, &v, NULL, NULL));
	CHECK_EQ(v, 8);
	collected c = {0};
	REQUIRE_OK(esdb_all_read(s, 1, 100, ESDB_DIRECTION_FORWARD,
	                         collect_event, &c, NULL));
	CHECK_EQ(c.n, 9);
	collected_free(&c);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK(st.map_size > (1 << 20));
	esdb_store_close(s);
	remove(file);
}

TEST(cli_writing_commands_refuse_a_store_another_process_writes)
{
	/* One process writes a store: the VM's subscriptions would never
	 * see events the CLI wrote beside it. */
	const char *dir = tmp_dir();
	static char out[16384];
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_set_owner(s, "app@host1"));
	REQUIRE_OK(esdb_store_open(s, dir));
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "mine");
	REQUIRE_OK(
	    esdb_stream_append(s, "own", 3, ESDB_EXPECT_ANY, &ev, 1, NULL));
	char pid[64];
	snprintf(pid, sizeof(pid), "by pid %ld (app@host1)", (long)getpid());

	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s append other --type t < /dev/null", dir),
	         1);
	CHECK(strstr(out, pid) != NULL);
	CHECK(strstr(out, "(locked)") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s delete own", dir), 1);
	CHECK(strstr(out, pid) != NULL);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s --json append other --type t < /dev/null",
	             dir),
	         1);
	CHECK(strstr(out, "\"name\":\"locked\"") != NULL);
	/* read-only commands run beside the writer */
	CHECK_EQ(ctl(out, sizeof(out), "--store %s read own", dir), 0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s stats", dir), 0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s streams", dir), 0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s verify", dir), 0);
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, "other", 5, &v, NULL, NULL));
	CHECK_EQ(v, 0);
	esdb_store_close(s);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s append other --type t < /dev/null", dir),
	         0);
}

/* Pages the byte budget cuts short are not the end: every read command
 * goes on where the store says the next page starts. */
TEST(cli_reads_page_past_pages_cut_by_bytes)
{
	const char *dir = tmp_dir();
	char out[16384], data[3000];
	memset(data, 'z', sizeof(data) - 1);
	data[sizeof(data) - 1] = 0;
	esdb_store *s = open_store(dir, false);
	for (int i = 1; i <= 6; i++) {
		uint8_t id[16];
		esdb_new_event ev = make_event(id, (uint64_t)i, "big", data);
		REQUIRE_OK(esdb_stream_append(s, "b", 1, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
	}
	esdb_store_close(s);
	/* 3000-byte events, a 7000-byte budget: pages of 2 */
	static const char *reads[] = {"read b", "read b --backward", "read-all",
	                              "read-all --backward", "read-type big"};
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		CHECK_EQ(ctl(out, sizeof(out),
		             "--store %s --read-bytes 7000 %s", dir, reads[i]),
		         0);
		if (!strstr(out, "-- 6 events"))
			harness_fail(__FILE__, __LINE__, "%s: %s", reads[i],
			             strrchr(out, '-') ? strrchr(out, '-')
			                               : out);
	}
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s --read-bytes 7000 read b "
	             "--count 3",
	             dir),
	         0);
	CHECK(strstr(out, "-- 3 events") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --read-bytes 0 read b", dir),
	         2);
}

/* A payload file over a size: written in blocks. */
static void write_payload(const char *path, size_t size)
{
	static char block[65536];
	memset(block, 'p', sizeof(block));
	FILE *f = fopen(path, "w");
	REQUIRE(f != NULL);
	for (size_t left = size; left;) {
		size_t n = left < sizeof(block) ? left : sizeof(block);
		REQUIRE(fwrite(block, 1, n, f) == n);
		left -= n;
	}
	fclose(f);
}

/* The CLI appends within the store's own limits: a payload the store's
 * raised max_event_bytes allows is written whole (reading stopped past
 * the default 16 MiB, at 32 MiB, and the cut payload was stored), one
 * over a lowered limit is refused naming the limit. */
TEST(cli_append_uses_the_stores_limits)
{
	const char *dir = tmp_dir();
	char out[8192], file[4200];
	esdb_store *s;
	esdb_limits l = {.max_event_bytes = 40u << 20};
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_limits(s, &l));
	REQUIRE_OK(esdb_store_open(s, dir));
	esdb_store_close(s);
	snprintf(file, sizeof(file), "%s.payload", dir);
	write_payload(file, (33u << 20) + 5);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s append big --type t --file %s", dir, file),
	         0);
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_readonly(s, true));
	REQUIRE_OK(esdb_store_open(s, dir));
	collected c = {0};
	REQUIRE_OK(esdb_stream_read(s, "big", 3, 1, 1, ESDB_DIRECTION_FORWARD,
	                            collect_event, &c, NULL));
	REQUIRE(c.n == 1);
	CHECK_EQ(strlen(c.data[0]), (33u << 20) + 5);
	collected_free(&c);
	esdb_store_close(s);

	/* lowered: refused, and the message names the limit */
	const char *small = tmp_dir();
	l = (esdb_limits){.max_event_bytes = 100};
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_limits(s, &l));
	REQUIRE_OK(esdb_store_open(s, small));
	esdb_store_close(s);
	write_payload(file, 200);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s append s --type t --file %s",
	             small, file),
	         1);
	CHECK(strstr(out, "max_event_bytes is 100") != NULL);
	remove(file);
}

TEST(cli_refuses_to_write_a_replica_store)
{
	/* A replica's store is marked in its data file (the replica marks it
	 * when it starts): the CLI reads it but never writes it, whether the
	 * VM that runs it is running (the store is locked) or not. */
	const char *dir = tmp_dir();
	char out[8192];
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s/store append s --type t --create < /dev/null",
	             dir),
	         0);
	char path[4200];
	snprintf(path, sizeof(path), "%s/store", dir);
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_open(s, path));
	bool marked = true;
	REQUIRE_OK(esdb_store_get_replica_mark(s, &marked));
	CHECK(!marked);
	REQUIRE_OK(esdb_store_mark_replica(s, false));
	REQUIRE_OK(esdb_store_get_replica_mark(s, &marked));
	CHECK(marked);
	/* opened without its replica, the store refuses writes itself */
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "x");
	CHECK_EQ(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL),
	         ESDB_ENOT_LEADER);
	/* the VM running: locked */
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s append s --type t < /dev/null", path),
	         1);
	CHECK(strstr(out, "(locked)") != NULL);
	esdb_store_close(s);

	/* the VM stopped */
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s append s --type t < /dev/null", path),
	         1);
	CHECK(strstr(out, "cluster replica's store") != NULL);
	CHECK(strstr(out, "not_leader") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s delete s", path), 1);
	CHECK(strstr(out, "cluster replica's store") != NULL);
	CHECK_EQ(ctl(out, sizeof(out),
	             "--store %s --json append s --type t < /dev/null", path),
	         1);
	CHECK(strstr(out, "\"name\":\"not_leader\"") != NULL);
	/* reads go on; nothing was written */
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --json stats", path), 0);
	CHECK(strstr(out, "\"events\":1") != NULL);
}
