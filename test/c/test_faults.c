/* test_faults.c: a full disk. The file size limit (RLIMIT_FSIZE) makes
 * every write past it fail, as a full disk does, in a child process. */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char big[100000];

/* A write past the limit fails whole (EFBIG/ENOSPC) or short, which LMDB
 * reports as EIO. */
static bool full_disk_error(int rc)
{
	return rc == EFBIG || rc == ENOSPC || rc == EIO;
}

/* Returns what went wrong, or 0. Runs in the child. */
static int disk_full_child(const char *dir, int fd)
{
	esdb_store *s;
	if (esdb_store_create(&s) || esdb_store_open(s, dir))
		return 10;
	uint8_t id[16];
	uint64_t n = 0;
	for (; n < 10; n++) {
		esdb_new_event ev = make_event(id, n, "t", "small");
		if (esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1,
		                       NULL))
			return 11;
	}
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (stat(path, &st))
		return 12;
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl;
	getrlimit(RLIMIT_FSIZE, &rl);
	rlim_t hard = rl.rlim_max;
	rl.rlim_cur = (rlim_t)st.st_size + 300000;
	if (setrlimit(RLIMIT_FSIZE, &rl))
		return 13;
	int rc = 0;
	memset(big, 'b', sizeof(big) - 1);
	for (int i = 0; i < 100 && rc == 0; i++) {
		esdb_new_event ev = make_event(id, 100 + n, "t", big);
		rc = esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1,
		                        NULL);
		if (rc == 0)
			n++;
	}
	if (!full_disk_error(rc)) {
		fprintf(stderr, "disk full gave %d (%s)\n", rc,
		        esdb_error_describe(rc));
		return 14;
	}
	/* the store answers reads and refuses writes cleanly */
	uint64_t v;
	if (esdb_stream_get_info(s, "s", 1, &v, NULL, NULL) || v != n)
		return 15;
	esdb_new_event ev = make_event(id, 999, "t", big);
	rc = esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL);
	if (!full_disk_error(rc))
		return 16;
	/* space comes back: writing works again */
	rl.rlim_cur = hard;
	if (setrlimit(RLIMIT_FSIZE, &rl))
		return 17;
	if (esdb_stream_append(s, "s", 1, n, &ev, 1, NULL))
		return 18;
	n++;
	if (write(fd, &n, sizeof(n)) != sizeof(n))
		return 19;
	esdb_store_close(s);
	return 0;
}

TEST(disk_full_is_an_error_and_loses_nothing)
{
	const char *dir = tmp_dir();
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		_exit(disk_full_child(dir, fds[1]));
	}
	close(fds[1]);
	uint64_t acked = 0;
	CHECK(read(fds[0], &acked, sizeof(acked)) == sizeof(acked));
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);
	esdb_store *s = open_store(dir, false);
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, "s", 1, &v, NULL, NULL));
	CHECK_EQ(v, acked);
	CHECK(acked > 10);
	uint64_t problems;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	esdb_store_close(s);
}
