/* spawn.c: child processes by fork+exec of this binary (spawn.h). */
#include "spawn.h"

#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#define SPAWN_FLAG "--esdb-child"

pid_t spawn_child(const char *role, const int *keep, int n_keep, int *in,
                  int *out)
{
	int cmd[2], reply[2];
	REQUIRE(pipe2(cmd, O_CLOEXEC) == 0 && pipe2(reply, O_CLOEXEC) == 0);
	/* everything the child needs, made before the fork: between fork
	 * and exec only async-signal-safe calls */
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	REQUIRE(len > 0);
	exe[len] = 0;
	char cmd_s[16], reply_s[16];
	snprintf(cmd_s, sizeof(cmd_s), "%d", cmd[0]);
	snprintf(reply_s, sizeof(reply_s), "%d", reply[1]);
	char *argv[] = {exe, SPAWN_FLAG, (char *)role, cmd_s, reply_s, NULL};
	long max_fd = sysconf(_SC_OPEN_MAX);
	if (max_fd < 0 || max_fd > 65536)
		max_fd = 65536;
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* no fd of the test reaches the child but these (an ack
		 * pipe held open there would never see its end) */
		if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) != 0)
			for (int fd = 3; fd < max_fd; fd++)
				fcntl(fd, F_SETFD, FD_CLOEXEC);
		fcntl(cmd[0], F_SETFD, 0);
		fcntl(reply[1], F_SETFD, 0);
		for (int k = 0; k < n_keep; k++)
			if (keep[k] >= 0)
				fcntl(keep[k], F_SETFD, 0);
		execv(exe, argv);
		_exit(127);
	}
	close(cmd[0]);
	close(reply[1]);
	*in = reply[0];
	*out = cmd[1];
	return pid;
}

bool spawn_is_child(int argc, char **argv, const char *role, int *cmd_fd,
                    int *reply_fd)
{
	if (argc != 5 || strcmp(argv[1], SPAWN_FLAG) != 0 ||
	    strcmp(argv[2], role) != 0)
		return false;
	*cmd_fd = atoi(argv[3]);
	*reply_fd = atoi(argv[4]);
	return true;
}
