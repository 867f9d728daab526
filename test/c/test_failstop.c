/* test_failstop.c: a failed flush stops the store. The shim fails the
 * Nth fdatasync of data.mdb with EIO, as a dying disk does; Linux then
 * marks the pages clean, so nothing written later can be trusted: every
 * later write must be refused (never acknowledged), stats must say so,
 * and the next writable open must verify the store first. */
#include "fault.h"
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Append 12 batches with the 5th flush failing; check what the child
 * was told. Returns the number of events acknowledged. */
static uint64_t run_failing_child(const char *store)
{
	/* the store exists first, so the child's flushes are its appends */
	esdb_store *s = open_store(store, true);
	esdb_store_close(s);
	const char *env[] = {"ESDB_SHIM_FAIL_SYNC=5", NULL};
	const char *args[] = {"append", store, "default", "12", "1", NULL};
	char *out;
	int status = fault_run(env, args, &out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	uint64_t acked = 0, errors = 0, acks_after_error = 0;
	char *save, *line = strtok_r(out, "\n", &save);
	for (; line; line = strtok_r(NULL, "\n", &save)) {
		long b;
		unsigned long long pos, ver;
		size_t n;
		unsigned st;
		char name[64];
		if (sscanf(line, "ack %ld %llu %zu %llu %u", &b, &pos, &n, &ver,
		           &st) == 5) {
			if (errors)
				acks_after_error++;
			else
				acked += n;
		} else if (sscanf(line, "err %ld %63s", &b, name) == 2) {
			errors++;
			CHECK(strcmp(name, "store_failed") == 0);
		} else if (sscanf(line, "failed %63s", name) == 1) {
			CHECK(strcmp(name, "io_error") == 0);
		} else {
			CHECK(!"unexpected output from the child");
			fprintf(stderr, "  child said: %s\n", line);
		}
	}
	free(out);
	CHECK_EQ(errors, 8); /* batches 4..11 */
	CHECK_EQ(acks_after_error, 0);
	return acked;
}

TEST(failed_flush_stops_every_later_write)
{
	REQUIRE(fault_built());
	char store[4200], marker[4300];
	snprintf(store, sizeof(store), "%s/store", tmp_dir());
	snprintf(marker, sizeof(marker), "%s/store_failed", store);
	uint64_t acked = run_failing_child(store);
	CHECK(acked > 0);
	CHECK(access(marker, F_OK) == 0);
	/* a writable open verifies, then takes writes again */
	esdb_store *s = open_store(store, true);
	CHECK(access(marker, F_OK) != 0);
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, acked);
	CHECK_EQ(st.store_failed, 0);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1000, "t", "after");
	CHECK_RC(esdb_stream_append(s, "s", 1, ESDB_EXPECT_ANY, &ev, 1, NULL),
	         0);
	esdb_store_close(s);
}

/* Flip one byte of every copy of `needle` in the file: older copies of a
 * page (freed, not yet reused) may come before the live one. */
static bool corrupt_file(const char *path, const char *needle)
{
	size_t len, nlen = strlen(needle);
	char *data = fault_slurp(path, &len);
	if (!data)
		return false;
	int fd = open(path, O_WRONLY);
	bool ok = fd >= 0, any = false;
	for (char *p = data;
	     ok && (p = memmem(p, len - (size_t)(p - data), needle, nlen));
	     p += nlen) {
		char c = (char)(p[0] ^ 0x40);
		ok = pwrite(fd, &c, 1, p - data) == 1;
		any = true;
	}
	if (fd >= 0)
		close(fd);
	free(data);
	return ok && any;
}

TEST(failed_store_that_does_not_verify_stays_closed_to_writers)
{
	REQUIRE(fault_built());
	char store[4200], data[4300];
	snprintf(store, sizeof(store), "%s/store", tmp_dir());
	snprintf(data, sizeof(data), "%s/data.mdb", store);
	CHECK(run_failing_child(store) > 0);
	REQUIRE(corrupt_file(data, "1:0/"));
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	CHECK_RC(esdb_store_open(s, store), ESDB_ECORRUPT);
	/* read-only, to salvage what can be read */
	REQUIRE_OK(esdb_store_set_readonly(s, true));
	CHECK_RC(esdb_store_open(s, store), 0);
	esdb_store_close(s);
}
