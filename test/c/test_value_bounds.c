/* test_value_bounds.c: crafted LMDB node headers and node offsets (LMDB
 * checks none of them): values.c's bounds on a value LMDB hands back, and
 * the verify a writable open runs after a failed flush. */
#include "harness.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static int count_stream(void *ctx, const esdb_stream *st)
{
	(*(uint64_t *)ctx)++;
	return 0;
}

/* The next node at or after `from` of a leaf page holding stream `name`
 * in the streams database: an LMDB node header (u16 size lo, u16 size hi,
 * u16 flags, u16 key size) then the key (the name), then the value, our
 * stream record (8-byte header, u16 name length, the name). Its offset in
 * the file, or 0. Older copies of the page (from earlier commits) hold
 * it too. */
static size_t stream_node(const uint8_t *buf, size_t len, size_t from,
                          const char *name)
{
	size_t n = strlen(name);
	for (size_t p = from + 8; p + n + 10 + n <= len; p++) {
		const uint8_t *k = buf + p;
		if (memcmp(k, name, n) || le16(k - 2) != n ||
		    le16(k - 4) != 0 || le16(k + n + 8) != n ||
		    memcmp(k + n + 10, name, n))
			continue;
		return p - 8;
	}
	return 0;
}

/* A leaf node's key size moved so that its value starts past the end of
 * data.mdb, at an offset inside a page where a value of its size fits:
 * values.c checked such a value against its page only, not that the page
 * is in the file, and the listing read it: SIGBUS (the VM's death, in the
 * NIF). It must read as corrupt. */
TEST(value_past_the_end_of_the_file_reads_as_corrupt)
{
	const char *dir = tmp_dir();
	const char *name = "value-bounds-stream";
	esdb_store *s = open_store(dir, false);
	for (uint64_t i = 0; i < 5; i++) {
		uint8_t id[16];
		char stream[64];
		snprintf(stream, sizeof(stream), "%s-%llu", name,
		         (unsigned long long)i);
		esdb_new_event ev = make_event(id, i + 1, "t", "{}");
		REQUIRE_OK(esdb_stream_append(s, stream, strlen(stream),
		                              ESDB_EXPECT_ANY, &ev, 1, NULL));
	}
	esdb_store_close(s);

	char path[4200];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	size_t len;
	uint8_t *buf = slurp(path, &len);
	size_t psize = (size_t)sysconf(_SC_PAGESIZE);
	/* value = node + 8 + key size: put it 64 bytes into the first page
	 * past the file's end, in every copy of the node */
	size_t target = (len + psize - 1) / psize * psize + 64, nodes = 0;
	for (size_t node = 0;
	     (node = stream_node(buf, len, node, "value-bounds-stream-2"));
	     nodes++) {
		REQUIRE(target - node - 8 <= UINT16_MAX);
		uint16_t ksize = (uint16_t)(target - node - 8);
		buf[node + 6] = (uint8_t)ksize;
		buf[node + 7] = (uint8_t)(ksize >> 8);
	}
	REQUIRE(nodes > 0);
	spill(path, buf, len);
	free(buf);

	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		esdb_store *r = new_store();
		uint64_t seen = 0;
		if (esdb_store_set_readonly(r, true) || esdb_store_open(r, dir))
			_exit(2);
		int rc = esdb_stream_list(r, NULL, 0, 100, count_stream, &seen);
		if (rc != ESDB_ECORRUPT)
			fprintf(stderr, "listing: rc %d, %llu streams\n", rc,
			        (unsigned long long)seen);
		_exit(rc == ESDB_ECORRUPT ? 0 : 1);
	}
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		harness_fail(__FILE__, __LINE__, "listing died of signal %d",
		             WTERMSIG(status));
	else
		CHECK_EQ(WEXITSTATUS(status), 0);
}

/* The first node of every branch page near the end of the file moved
 * past that end (LMDB checks neither the page's node offsets nor the page
 * numbers it finds there against the file). A walk from the first key
 * (verify's) faults; an open (which reads the last event) does not. */
static size_t break_branch_pages(uint8_t *buf, size_t len, size_t psize)
{
	size_t broken = 0, end = (len + psize - 1) / psize * psize;
	for (size_t pg = 2; (pg + 1) * psize <= len; pg++) {
		uint8_t *p = buf + pg * psize;
		uint16_t flags = le16(p + 10), lower = le16(p + 12);
		size_t off = end - pg * psize + 64;
		if (flags != 0x01 || lower < 16 + 4 || off > UINT16_MAX)
			continue; /* not a branch page with nodes, or far */
		p[16] = (uint8_t)off;
		p[17] = (uint8_t)(off >> 8);
		broken++;
	}
	return broken;
}

/* A store that failed a flush verifies at its next writable open. That
 * verify ran in the opening process: a page LMDB walks blindly killed
 * the VM opening the store (the store most likely to hold a bad page).
 * It must run isolated, as esdb_store_verify_isolated, and refuse the open. */
TEST(open_after_store_failed_verifies_without_dying)
{
	if (RUNNING_ON_VALGRIND)
		return; /* the isolated check's child faults on purpose */
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	for (uint64_t b = 0; b < 12; b++) {
		uint8_t ids[50][16];
		esdb_new_event evs[50];
		for (uint64_t i = 0; i < 50; i++)
			evs[i] = make_event(ids[i], b * 50 + i + 1, "t",
			                    "{\"some\":\"payload\"}");
		REQUIRE_OK(esdb_stream_append(s, "branchy", 7, ESDB_EXPECT_ANY,
		                              evs, 50, NULL));
	}
	esdb_store_close(s);

	char path[4200];
	snprintf(path, sizeof(path), "%s/store_failed", dir);
	FILE *f = fopen(path, "w");
	REQUIRE(f && fputs("io_error\n", f) >= 0 && fclose(f) == 0);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	size_t len;
	uint8_t *buf = slurp(path, &len);
	REQUIRE(break_branch_pages(buf, len, (size_t)sysconf(_SC_PAGESIZE)) >
	        0);
	spill(path, buf, len);
	free(buf);

	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		esdb_store *r = new_store();
		int rc = esdb_store_open(r, dir);
		if (rc != ESDB_ECORRUPT)
			fprintf(stderr, "open: rc %d\n", rc);
		_exit(rc == ESDB_ECORRUPT ? 0 : 1);
	}
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		harness_fail(__FILE__, __LINE__, "open died of signal %d",
		             WTERMSIG(status));
	else
		CHECK_EQ(WEXITSTATUS(status), 0);
}
