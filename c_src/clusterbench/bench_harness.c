/* bench_harness.c: what test/c/harness.h asks of a runner, for a benchmark
 * that drives replica processes with the tests' own harness
 * (test/c/replica/cluster.c) instead of a copy of it. A failed CHECK is
 * reported and fails the current benchmark line; a failed REQUIRE ends
 * the run (the node processes see their command pipe close and exit). */
#include "harness.h"

#include <stdarg.h>
#include <unistd.h>

static pid_t main_pid;
static bool failed;

void bench_harness_init(void)
{
	main_pid = getpid();
}

/* Whether a CHECK failed since the last call; clears it. */
bool bench_harness_take_failure(void)
{
	bool f = failed;
	failed = false;
	return f;
}

void harness_register(test_case *tc)
{
	(void)tc;
}

void harness_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "esdb_cluster_bench: check failed (%s:%d): ", file,
	        line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failed = true;
}

_Noreturn void harness_abort(void)
{
	fflush(NULL);
	if (!harness_is_runner())
		_exit(HARNESS_CHILD_ABORT);
	exit(1);
}

bool harness_is_runner(void)
{
	return getpid() == main_pid;
}

bool harness_test_failed(void)
{
	return failed;
}
