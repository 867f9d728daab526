/* test_dirsync.c: a new store and a backup are on the disk when the call
 * returns: the files, their directories and the directories' entries in
 * their parents are flushed (traced by build/esdb_io_shim.so). */
#include "fault.h"
#include "harness.h"

#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Position of "fsync PATH\n" (PATH resolved) in the trace, or -1. */
static long synced_at(const char *trace, const char *path)
{
	char real[PATH_MAX], line[PATH_MAX + 16];
	if (!realpath(path, real))
		return -1;
	snprintf(line, sizeof(line), "fsync %s\n", real);
	const char *p = strstr(trace, line);
	return p ? p - trace : -1;
}

static char *traced_run(const char *dir, const char *const args[])
{
	char trace[4200], env[4300], *out;
	snprintf(trace, sizeof(trace), "%s/trace", dir);
	snprintf(env, sizeof(env), "ESDB_SHIM_TRACE=%s", trace);
	const char *envs[] = {env, NULL};
	int status = fault_run(envs, args, &out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(out);
	char *t = fault_slurp(trace, NULL);
	REQUIRE(t != NULL);
	return t;
}

TEST(new_store_directory_and_parents_are_flushed)
{
	REQUIRE(fault_built());
	const char *dir = tmp_dir();
	char a[4200], b[4200], store[4200];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/a/b", dir);
	snprintf(store, sizeof(store), "%s/a/b/store", dir);
	const char *args[] = {"create", store, NULL};
	char *t = traced_run(dir, args);
	/* each new directory's entry, and the store's files' entries */
	CHECK(synced_at(t, dir) >= 0);
	CHECK(synced_at(t, a) >= 0);
	CHECK(synced_at(t, b) >= 0);
	CHECK(synced_at(t, store) >= 0);
	free(t);
}

TEST(backup_flushes_its_file_and_directories)
{
	REQUIRE(fault_built());
	const char *dir = tmp_dir();
	char src[4200], parent[4200], dest[4200], data[4300];
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(parent, sizeof(parent), "%s/backups", dir);
	snprintf(dest, sizeof(dest), "%s/backups/one", dir);
	snprintf(data, sizeof(data), "%s/data.mdb", dest);
	REQUIRE(mkdir(parent, 0755) == 0);
	const char *args[] = {"backup", src, dest, NULL};
	char *t = traced_run(dir, args);
	long file = synced_at(t, data), d = synced_at(t, dest),
	     p = synced_at(t, parent);
	CHECK(file >= 0);
	CHECK(d > file);
	CHECK(p > file);
	free(t);
}

/* Flushes of data.mdb in a trace. */
static int data_syncs(const char *trace, const char *store)
{
	char path[4300], real[PATH_MAX], line[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/data.mdb", store);
	REQUIRE(realpath(path, real) != NULL);
	snprintf(line, sizeof(line), "fsync %s\n", real);
	int n = 0;
	for (const char *p = trace; (p = strstr(p, line)); p += strlen(line))
		n++;
	return n;
}

/* esdb_store_sync flushes data.mdb once more than the commits did (with
 * one flush per commit, no_meta_sync, the meta page rides on it), and a
 * failed flush fail-stops the store. */
TEST(store_sync_flushes_and_a_failed_flush_stops_the_store)
{
	REQUIRE(fault_built());
	const char *dir = tmp_dir();
	char a[4200], b[4200];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	const char *append[] = {"append", a, "no_meta_sync", "1", "1", NULL};
	char *t = traced_run(dir, append);
	int commits = data_syncs(t, a);
	free(t);
	char trace[4200]; /* the next run traces afresh */
	snprintf(trace, sizeof(trace), "%s/trace", dir);
	unlink(trace);
	const char *sync[] = {"sync", b, "no_meta_sync", NULL};
	t = traced_run(dir, sync);
	CHECK_EQ(data_syncs(t, b), commits + 1);
	free(t);

	char c[4200], fail[64], *out;
	snprintf(c, sizeof(c), "%s/c", dir);
	snprintf(fail, sizeof(fail), "ESDB_SHIM_FAIL_SYNC=%d", commits + 1);
	const char *envs[] = {fail, NULL};
	const char *sync_c[] = {"sync", c, "no_meta_sync", NULL};
	int status = fault_run(envs, sync_c, &out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "sync store_failed\n") != NULL);
	free(out);
}
