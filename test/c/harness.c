/* harness.c: the test runner (main). */
#include "harness.h"

#include <stdarg.h>
#include <unistd.h>

static test_case *head, **tail = &head;
static pid_t runner_pid;
static const char *current;
static bool current_failed;
static jmp_buf abort_jmp;

void harness_register(test_case *tc)
{
	*tail = tc;
	tail = &tc->next;
}

void harness_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "FAIL %s (%s:%d): ", current, file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	current_failed = true;
}

bool harness_test_failed(void)
{
	return current_failed;
}

bool harness_is_runner(void)
{
	return getpid() == runner_pid;
}

_Noreturn void harness_abort(void)
{
	/* A forked child jumping back into the runner's loop would run the
	 * remaining tests a second time, beside the runner, and delete its
	 * directories when done. */
	if (!harness_is_runner()) {
		fflush(NULL);
		_exit(HARNESS_CHILD_ABORT);
	}
	longjmp(abort_jmp, 1);
}

int main(int argc, char **argv)
{
	volatile int passed = 0, failed = 0;
	/* Optional filter: run tests whose name contains argv[1]. */
	const char *filter = argc > 1 ? argv[1] : NULL;
	runner_pid = getpid();
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("seed %" PRIu64 " (set ESDB_SEED to change)\n", test_seed());
	for (test_case *volatile tc = head; tc; tc = tc->next) {
		if (filter && !strstr(tc->name, filter))
			continue;
		current = tc->name;
		current_failed = false;
		if (setjmp(abort_jmp) == 0)
			tc->fn();
		printf("%s %s\n", current_failed ? "FAIL" : "ok  ", tc->name);
		if (current_failed)
			failed++;
		else
			passed++;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
