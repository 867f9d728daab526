/* fault_run.c: runs the fault child under the shim (fault.h). */
#include "fault.h"

#include "harness.h"

#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *fault_dir(void)
{
	const char *d = getenv("ESDB_FAULT_DIR");
	return d ? d : "build";
}

static bool fault_path(char out[PATH_MAX], const char *name)
{
	char rel[PATH_MAX];
	snprintf(rel, sizeof(rel), "%s/%s", fault_dir(), name);
	return realpath(rel, out) != NULL;
}

bool fault_built(void)
{
	char p[PATH_MAX];
	return fault_path(p, "esdb_io_shim.so") &&
	       fault_path(p, "esdb_fault_child");
}

char *fault_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	size_t got;
	while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (cap - n - 1 == 0) {
			char *bigger = realloc(buf, cap *= 2);
			if (!bigger)
				free(buf);
			buf = bigger;
		}
	}
	fclose(f);
	if (buf)
		buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

int fault_run(const char *const env[], const char *const args[], char **out)
{
	char shim[PATH_MAX], child[PATH_MAX];
	REQUIRE(fault_path(shim, "esdb_io_shim.so"));
	REQUIRE(fault_path(child, "esdb_fault_child"));
	const char *argv[16] = {child};
	size_t argc = 1;
	while (args[argc - 1] && argc < 15) {
		argv[argc] = args[argc - 1];
		argc++;
	}
	argv[argc] = NULL;
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		for (size_t i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		setenv("LD_PRELOAD", shim, 1);
		execv(child, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	REQUIRE(buf != NULL);
	ssize_t got;
	while ((got = read(fds[0], buf + n, cap - n - 1)) > 0) {
		n += (size_t)got;
		if (cap - n - 1 == 0) {
			buf = realloc(buf, cap *= 2);
			REQUIRE(buf != NULL);
		}
	}
	buf[n] = 0;
	close(fds[0]);
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	*out = buf;
	return status;
}
