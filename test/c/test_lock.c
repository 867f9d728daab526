/* test_lock.c: one process writes a store (the writer lock), checked
 * across real processes. */
#include "harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void put_byte(int fd)
{
	char b = 1;
	REQUIRE(write(fd, &b, 1) == 1);
}

static bool got_byte(int fd)
{
	char b;
	return read(fd, &b, 1) == 1;
}

/* The child's side of one_process_writes_a_store: each failed step
 * exits with its own code. */
static int refused_child(const char *dir, int in, int out, pid_t parent)
{
	esdb_store *s;
	long pid = -1;
	const char *owner = NULL;
	if (!got_byte(in))
		return 10;
	if (esdb_store_create(&s) || esdb_store_open(s, dir) != ESDB_ELOCKED)
		return 11;
	if (esdb_store_get_lock_holder(s, &pid, &owner) ||
	    pid != (long)parent || strcmp(owner, "parent@test"))
		return 12;
	/* a read-only open runs beside the writer */
	if (esdb_store_set_readonly(s, true) || esdb_store_open(s, dir))
		return 13;
	uint64_t v = 0;
	if (esdb_stream_get_info(s, "p", 1, &v, NULL, NULL) || v != 1)
		return 14;
	esdb_store_close(s);
	char b = 1;
	if (write(out, &b, 1) != 1 || !got_byte(in))
		return 15;
	/* the writer closed: this process may write now */
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 2, "t", "child");
	if (esdb_store_create(&s) || esdb_store_open(s, dir) ||
	    esdb_stream_append(s, "c", 1, ESDB_EXPECT_ANY, &ev, 1, NULL))
		return 16;
	esdb_store_close(s);
	return 0;
}

TEST(one_process_writes_a_store)
{
	const char *dir = tmp_dir();
	int down[2], up[2];
	REQUIRE(pipe(down) == 0 && pipe(up) == 0);
	pid_t parent = getpid();
	/* fork before opening: the child must not share the lock */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(refused_child(dir, down[0], up[1], parent));
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_set_owner(s, "parent@test"));
	REQUIRE_OK(esdb_store_open(s, dir));
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "parent");
	REQUIRE_OK(
	    esdb_stream_append(s, "p", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
	put_byte(down[1]);
	CHECK(got_byte(up[0]));
	esdb_store_close(s);
	put_byte(down[1]);
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);
	s = open_store(dir, false);
	uint64_t v = 0;
	REQUIRE_OK(esdb_stream_get_info(s, "c", 1, &v, NULL, NULL));
	CHECK_EQ(v, 1);
	esdb_store_close(s);
	close(down[0]);
	close(down[1]);
	close(up[0]);
	close(up[1]);
}

TEST(a_killed_writer_leaves_no_lock)
{
	const char *dir = tmp_dir();
	int up[2];
	REQUIRE(pipe(up) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		esdb_store *s;
		if (esdb_store_create(&s) || esdb_store_open(s, dir))
			_exit(1);
		char b = 1;
		if (write(up[1], &b, 1) != 1)
			_exit(2);
		pause(); /* holds the store until killed */
		_exit(3);
	}
	close(up[1]);
	REQUIRE(got_byte(up[0]));
	close(up[0]);
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	CHECK_RC(esdb_store_open(s, dir), ESDB_ELOCKED);
	long holder = 0;
	const char *owner = NULL;
	REQUIRE_OK(esdb_store_get_lock_holder(s, &holder, &owner));
	CHECK_EQ(holder, pid);
	CHECK(owner && !strcmp(owner, ""));
	kill(pid, SIGKILL);
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	REQUIRE_OK(esdb_store_open(s, dir));
	CHECK_RC(esdb_store_get_lock_holder(s, NULL, NULL), ESDB_ENOTFOUND);
	esdb_store_close(s);
}
