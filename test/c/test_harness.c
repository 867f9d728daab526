/* test_harness.c: the runner itself. A child a test forks that fails a
 * REQUIRE ends there; it once jumped back into the runner's loop and ran
 * the remaining tests a second time beside the runner (its output mixed
 * into the runner's), deleting the runner's directories at its exit. */
#include "harness.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(a_child_failing_a_require_ends_there)
{
	const char *dir = tmp_dir();
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* stderr shows this child's FAIL line: point it away */
		freopen("/dev/null", "w", stderr);
		REQUIRE(pid != 0);
		_exit(0); /* not reached */
	}
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), HARNESS_CHILD_ABORT);
	struct stat st;
	CHECK(stat(dir, &st) == 0); /* the runner's directory is still there */
}
