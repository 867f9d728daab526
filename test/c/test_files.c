/* test_files.c: what a store leaves on disk: file and directory modes. */
#include "harness.h"

#include <errno.h>
#include <sys/stat.h>

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
	REQUIRE_OK(esdb_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
}

TEST(store_files_are_private_by_default)
{
	char dir[4096], dest[4096];
	mode_t old = umask(022); /* what most shells have */
	snprintf(dir, sizeof(dir), "%s/a/store", tmp_dir());
	esdb_store *s = open_store(dir, false);
	fill(s);
	snprintf(dest, sizeof(dest), "%s/backup", tmp_dir());
	REQUIRE_OK(esdb_backup(s, dest));
	esdb_close(s);
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
	REQUIRE_OK(esdb_create(&s));
	CHECK_RC(esdb_set_file_mode(s, 01600), ESDB_EINVAL); /* no specials */
	CHECK_RC(esdb_set_file_mode(s, 0400), ESDB_EINVAL);  /* owner rw */
	REQUIRE_OK(esdb_set_file_mode(s, 0640));
	REQUIRE_OK(esdb_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_open(s, dir));
	CHECK_RC(esdb_set_file_mode(s, 0600), ESDB_EBUSY);
	fill(s);
	snprintf(dest, sizeof(dest), "%s/backup", tmp_dir());
	REQUIRE_OK(esdb_backup(s, dest));
	esdb_close(s);
	CHECK_EQ(mode_of(dir, NULL), 0750);
	CHECK_EQ(mode_of(dir, "data.mdb"), 0640);
	CHECK_EQ(mode_of(dir, "lock.mdb"), 0640);
	CHECK_EQ(mode_of(dest, NULL), 0750);
	CHECK_EQ(mode_of(dest, "data.mdb"), 0640);
	umask(old);
}
