/* test_files.c: what a store leaves on disk: file and directory modes. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned mode_of(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;
	if (snprintf(path, sizeof(path), "%s%s%s", dir, name ? "/" : "",
	             name ? name : "") >= (int)sizeof(path) ||
	    stat(path, &st))
		return 07777; /* missing: no mode matches */
	return st.st_mode & 07777;
}

static void fill(esdb_store *s)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "secret");
	REQUIRE_OK(
	    esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
}

TEST(store_files_are_private_by_default)
{
	char dir[4096], dest[4096];
	mode_t old = umask(022); /* what most shells have */
	snprintf(dir, sizeof(dir), "%s/a/store", tmp_dir());
	esdb_store *s = open_store(dir, false);
	fill(s);
	snprintf(dest, sizeof(dest), "%s/backup", tmp_dir());
	REQUIRE_OK(esdb_store_backup(s, dest));
	esdb_store_close(s);
	CHECK_EQ(mode_of(dir, NULL), 0700);
	CHECK_EQ(mode_of(dir, "data.mdb"), 0600);
	CHECK_EQ(mode_of(dir, "lock.mdb"), 0600);
	CHECK_EQ(mode_of(dir, ".."), 0700); /* created parents too */
	CHECK_EQ(mode_of(dest, NULL), 0700);
	CHECK_EQ(mode_of(dest, "data.mdb"), 0600);
	umask(old);
}

TEST(store_file_mode_is_an_option)
{
	char dir[4096], dest[4096];
	mode_t old = umask(022);
	snprintf(dir, sizeof(dir), "%s/store", tmp_dir());
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	CHECK_RC(esdb_store_set_file_mode(s, 01600),
	         ESDB_EINVAL); /* no specials */
	CHECK_RC(esdb_store_set_file_mode(s, 0400), ESDB_EINVAL); /* owner rw */
	REQUIRE_OK(esdb_store_set_file_mode(s, 0640));
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_open(s, dir));
	CHECK_RC(esdb_store_set_file_mode(s, 0600), ESDB_EBUSY);
	fill(s);
	snprintf(dest, sizeof(dest), "%s/backup", tmp_dir());
	REQUIRE_OK(esdb_store_backup(s, dest));
	esdb_store_close(s);
	CHECK_EQ(mode_of(dir, NULL), 0750);
	CHECK_EQ(mode_of(dir, "data.mdb"), 0640);
	CHECK_EQ(mode_of(dir, "lock.mdb"), 0640);
	CHECK_EQ(mode_of(dest, NULL), 0750);
	CHECK_EQ(mode_of(dest, "data.mdb"), 0640);
	umask(old);
}

/* ---- a full disk (a small tmpfs) --------------------------------------- */

/* Mount a tmpfs of `size` on a fresh directory; NULL (and a message) when
 * this process may not mount. */
static const char *small_disk(const char *size)
{
	static char dir[4096];
	char opts[64];
	snprintf(dir, sizeof(dir), "%s", tmp_dir());
	snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
	if (mount("tmpfs", dir, "tmpfs", 0, opts) != 0) {
		printf("  skipped: cannot mount a tmpfs (%s)\n",
		       strerror(errno));
		return NULL;
	}
	return dir;
}

static void unmount_disk(const char *dir)
{
	CHECK(umount2(dir, MNT_DETACH) == 0);
}

/* Write a filler file until the disk is full; returns its path. */
static const char *fill_disk(const char *dir)
{
	static char path[4096], block[4096];
	snprintf(path, sizeof(path), "%s/filler", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	REQUIRE(fd >= 0);
	memset(block, 'f', sizeof(block));
	while (write(fd, block, sizeof(block)) > 0)
		;
	close(fd);
	return path;
}

/* Runs in a child, so a signal shows as a death; returns what went wrong. */
static int create_on_full_disk_child(const char *dir)
{
	char path[4096], made[4096];
	snprintf(made, sizeof(made), "%s/a", dir);
	snprintf(path, sizeof(path), "%s/a/store", dir);
	esdb_store *s;
	if (esdb_store_create(&s))
		return 10;
	int rc = esdb_store_open(s, path);
	esdb_store_close(s);
	if (rc != ESDB_EDISK_FULL) {
		fprintf(stderr, "open gave %d (%s)\n", rc,
		        esdb_error_describe(rc));
		return 11;
	}
	struct stat st;
	if (stat(made, &st) == 0)
		return 12; /* something was left behind */
	return 0;
}

static bool child_ok(pid_t pid)
{
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return false;
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "child died of signal %d\n", WTERMSIG(status));
		return false;
	}
	if (WEXITSTATUS(status))
		fprintf(stderr, "child exited %d\n", WEXITSTATUS(status));
	return WEXITSTATUS(status) == 0;
}

TEST(creating_a_store_on_a_full_disk_is_disk_full)
{
	const char *dir = small_disk("256k");
	if (!dir)
		return;
	fill_disk(dir);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(create_on_full_disk_child(dir));
	CHECK(child_ok(pid));
	unmount_disk(dir);
}

static int append_on_full_disk_child(const char *dir)
{
	char path[4096];
	static char big[20000];
	memset(big, 'b', sizeof(big) - 1);
	snprintf(path, sizeof(path), "%s/store", dir);
	esdb_store *s;
	if (esdb_store_create(&s) || esdb_store_open(s, path))
		return 10;
	const char *filler = fill_disk(dir);
	uint8_t id[16];
	uint64_t n = 0;
	int rc = 0;
	while (rc == 0 && n < 10000) {
		esdb_new_event ev = make_event(id, n, "t", big);
		if ((rc = esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1,
		                             NULL)) == 0)
			n++;
	}
	if (rc != ESDB_EDISK_FULL) {
		fprintf(stderr, "append gave %d (%s)\n", rc,
		        esdb_error_describe(rc));
		return 11;
	}
	/* reads go on; a full disk is not a failed store */
	uint64_t v;
	if (esdb_stream_get_info(s, "s", 1, &v, NULL, NULL) || v != n)
		return 12;
	esdb_new_event ev = make_event(id, n, "t", big);
	if (esdb_stream_append(s, "s", 1, n, &ev, 1, NULL) != ESDB_EDISK_FULL)
		return 13;
	/* space comes back: writing works again */
	unlink(filler);
	if (esdb_stream_append(s, "s", 1, n, &ev, 1, NULL))
		return 14;
	if (esdb_store_verify(s, NULL, NULL, NULL))
		return 15;
	esdb_store_close(s);
	return 0;
}

TEST(appends_on_a_full_disk_answer_disk_full_and_resume)
{
	const char *dir = small_disk("2m");
	if (!dir)
		return;
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(append_on_full_disk_child(dir));
	CHECK(child_ok(pid));
	unmount_disk(dir);
}

TEST(cli_creating_a_store_on_a_full_disk_says_disk_full)
{
	const char *dir = small_disk("256k");
	if (!dir)
		return;
	char payload[4200], out[4096];
	snprintf(payload, sizeof(payload), "%s/payload", tmp_dir());
	FILE *f = fopen(payload, "w");
	REQUIRE(f != NULL);
	fputs("hello", f);
	fclose(f);
	fill_disk(dir);
	int rc = ctl(out, sizeof(out),
	             "--store %s/a/store append s --type t --file %s --create",
	             dir, payload);
	/* the shell reports a signal as 128 + its number */
	CHECK(rc > 0 && rc < 128);
	CHECK(strstr(out, "disk_full") != NULL);
	char made[4200];
	struct stat st;
	snprintf(made, sizeof(made), "%s/a", dir);
	CHECK(stat(made, &st) != 0);
	unmount_disk(dir);
}

TEST(read_only_open_on_a_full_disk_is_an_error_not_a_signal)
{
	const char *dir = small_disk("1m");
	if (!dir)
		return;
	char path[4200], lock[4300];
	snprintf(path, sizeof(path), "%s/store", dir);
	esdb_store *s = open_store(path, false);
	fill(s);
	esdb_store_close(s);
	/* LMDB makes the lock file again, sparse, and writes through its map */
	snprintf(lock, sizeof(lock), "%s/lock.mdb", path);
	REQUIRE(unlink(lock) == 0);
	fill_disk(dir);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		esdb_store *r;
		uint64_t v = 0;
		if (esdb_store_create(&r) || esdb_store_set_readonly(r, true))
			_exit(10);
		int rc = esdb_store_open(r, path);
		if (rc == 0)
			rc = esdb_stream_get_info(r, "s", 1, &v, NULL, NULL);
		esdb_store_close(r);
		_exit(rc == ESDB_EDISK_FULL || (rc == 0 && v == 1) ? 0 : 11);
	}
	CHECK(child_ok(pid));
	unmount_disk(dir);
}

/* A backup onto a full disk is a full disk, like an append: it answered
 * ENOSPC (a bare errno) and left the directory it made behind. */
TEST(backup_onto_a_full_disk_is_disk_full_and_leaves_nothing)
{
	const char *dir = small_disk("128k");
	if (!dir)
		return;
	esdb_store *s = open_store(tmp_dir(), false);
	static char big[4000];
	memset(big, 'b', sizeof(big) - 1);
	for (uint64_t i = 0; i < 100; i++) {
		uint8_t id[16];
		esdb_new_event ev = make_event(id, i + 1, "t", big);
		REQUIRE_OK(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
	}
	fill_disk(dir);
	char dest[4200];
	struct stat st;
	snprintf(dest, sizeof(dest), "%s/backup", dir);
	CHECK_RC(esdb_store_backup(s, dest), ESDB_EDISK_FULL);
	CHECK(stat(dest, &st) != 0 && errno == ENOENT);
	esdb_store_close(s);
	unmount_disk(dir);
}
