/* fault_child.c: the process the durability tests run under io_shim.so
 * (build/esdb_fault_child). It reports on stdout, one line per fact:
 *
 *   create DIR                    open (creating) and close a store
 *   backup SRC DEST               append to SRC, back it up into DEST
 *   append DIR MODE COUNT SEED    COUNT appends of 1-4 events to 4
 *                                 streams ("pl-0".."pl-3"), durability
 *                                 MODE (default, no_meta_sync); prints
 *                                 "ack BATCH POSITION N VERSION STREAM"
 *                                 or "err BATCH NAME", then
 *                                 "failed NAME" (the store's failure).
 *   sync DIR MODE                 one append, then esdb_store_sync:
 *                                 "sync NAME" (its rc by name).
 *
 * Event data is "BATCH:I/N", so a reader can tell every batch apart. */
#include "esdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, int rc)
{
	printf("error %s %s\n", what, esdb_error_name(rc));
	return 1;
}

static int open_at(const char *dir, const char *mode, esdb_store **s)
{
	int rc = esdb_store_create(s);
	if (rc)
		return rc;
	if (mode && strcmp(mode, "no_meta_sync") == 0)
		rc =
		    esdb_store_set_durability(*s, ESDB_DURABILITY_NO_META_SYNC);
	else if (mode && strcmp(mode, "default") != 0)
		rc = ESDB_EINVAL;
	return rc ? rc : esdb_store_open(*s, dir);
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int append_loop(esdb_store *s, long count, uint64_t seed)
{
	uint64_t rng = seed * 2654435761u + 1;
	for (long b = 0; b < count; b++) {
		esdb_new_event ev[4];
		char data[4][40], stream[8];
		size_t n = 1 + next(&rng) % 4;
		unsigned st = (unsigned)(next(&rng) % 4);
		snprintf(stream, sizeof(stream), "pl-%u", st);
		memset(ev, 0, sizeof(ev));
		for (size_t i = 0; i < n; i++) {
			snprintf(data[i], sizeof(data[i]), "%ld:%zu/%zu", b, i,
			         n);
			memset(ev[i].event_id, 0x5A, 16);
			memcpy(ev[i].event_id, &b, sizeof(b));
			ev[i].event_id[15] = (uint8_t)i;
			ev[i].event_type = "pl";
			ev[i].event_type_len = 2;
			ev[i].data = data[i];
			ev[i].data_len = strlen(data[i]);
		}
		esdb_result r;
		int rc = esdb_stream_append(s, stream, strlen(stream),
		                            ESDB_EXPECT_ANY, ev, n, &r);
		if (rc)
			printf("err %ld %s\n", b, esdb_error_name(rc));
		else
			printf("ack %ld %llu %zu %llu %u\n", b,
			       (unsigned long long)r.position, n,
			       (unsigned long long)r.version, st);
	}
	esdb_store_stats stats;
	int rc = esdb_store_get_stats(s, &stats);
	if (rc)
		return fail("stats", rc);
	printf("failed %s\n", esdb_error_name(stats.store_failed));
	return 0;
}

int main(int argc, char **argv)
{
	esdb_store *s;
	int rc;
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 3 && strcmp(argv[1], "create") == 0) {
		if ((rc = open_at(argv[2], NULL, &s)))
			return fail("open", rc);
		esdb_store_close(s);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "backup") == 0) {
		if ((rc = open_at(argv[2], NULL, &s)))
			return fail("open", rc);
		if ((rc = append_loop(s, 3, 1)) == 0 &&
		    (rc = esdb_store_backup(s, argv[3])))
			rc = fail("backup", rc);
		esdb_store_close(s);
		return rc;
	}
	if (argc == 4 && strcmp(argv[1], "sync") == 0) {
		if ((rc = open_at(argv[2], argv[3], &s)))
			return fail("open", rc);
		rc = append_loop(s, 1, 1);
		if (!rc)
			printf("sync %s\n",
			       esdb_error_name(esdb_store_sync(s)));
		esdb_store_close(s);
		return rc;
	}
	if (argc == 6 && strcmp(argv[1], "append") == 0) {
		if ((rc = open_at(argv[2], argv[3], &s)))
			return fail("open", rc);
		rc = append_loop(s, atol(argv[4]), strtoull(argv[5], NULL, 10));
		esdb_store_close(s);
		return rc;
	}
	fprintf(stderr, "usage: see fault_child.c\n");
	return 2;
}
