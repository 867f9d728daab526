/* test_dirs.c: the one mkdir -p and "directory empty" (c_src/core/dirs.c)
 * that the store, backup and the bench share. */
#include "harness.h"

#include "dirs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

TEST(dir_make_all_makes_missing_parents_and_accepts_existing_ones)
{
	const char *base = tmp_dir();
	char path[PATH_MAX], file[PATH_MAX + 32];
	struct stat st;
	snprintf(path, sizeof(path), "%s/a/b/c", base);
	REQUIRE_OK(esdb__dir_make_all(path, 0700));
	REQUIRE(stat(path, &st) == 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0700);
	CHECK_RC(esdb__dir_make_all(path, 0700), 0); /* again: fine */
	/* a file where a directory of the path should be */
	snprintf(file, sizeof(file), "%s/f", base);
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/f/x", base);
	CHECK_RC(esdb__dir_make_all(path, 0700), ENOTDIR);
	CHECK_RC(esdb__dir_make_all("", 0700), ESDB_EINVAL);
}

TEST(dir_empty_sees_entries_but_the_ignored_one)
{
	const char *base = tmp_dir();
	char path[PATH_MAX], file[PATH_MAX + 32];
	bool empty = false;
	snprintf(path, sizeof(path), "%s/d", base);
	REQUIRE_OK(esdb__dir_make_all(path, 0700));
	REQUIRE_OK(esdb__dir_empty(path, NULL, &empty));
	CHECK(empty);
	snprintf(file, sizeof(file), "%s/writer.lock", path);
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	REQUIRE_OK(esdb__dir_empty(path, NULL, &empty));
	CHECK(!empty);
	REQUIRE_OK(esdb__dir_empty(path, "writer.lock", &empty));
	CHECK(empty);
	snprintf(path, sizeof(path), "%s/absent", base);
	CHECK_RC(esdb__dir_empty(path, NULL, &empty), ENOENT);
}
