/* raft_bench.c: raft alone with a trivial FSM, 3 voters on loopback
 * (raft3.c): the baseline of the cluster benchmarks.
 *
 * Usage: esdb_raft_bench [--only NAME[,NAME...]] [DIR]
 *
 * One JSON object per line on stdout, like esdb_bench: raft3_single (304 B
 * entries, 1 in flight), raft3_inflight64 (304 B, 64 in flight, max
 * in-flight entries 1024), raft3_batch30k (30,000 B entries standing for
 * 100 events of 300 B, 1 in flight). ESDB_BENCH_SECONDS per run (3), after
 * 0.5 s of warm-up. Settings as REPLICATION.md: pre-vote on, snapshot
 * threshold 16,384 keeping 4,096, raft's default timeouts. Exit status 0
 * when every selected run succeeded, 1 otherwise, 2 on a usage error. */
#include "raft3.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench {
	const char *name;
	size_t entry_bytes;
	unsigned events_per_entry;
	unsigned inflight;
	unsigned max_inflight_entries;
} bench;

static const bench benches[] = {
    {"raft3_single", 304, 1, 1, 0},
    {"raft3_inflight64", 304, 1, 64, 1024},
    {"raft3_batch30k", 30000, 100, 1, 0},
};

static bool selected(const char *only, const char *name)
{
	if (only == NULL)
		return true;
	size_t n = strlen(name);
	for (const char *p = only; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p += len + (end != NULL);
	}
	return false;
}

int main(int argc, char **argv)
{
	const char *only = NULL, *dir = "build/bench-data";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else if (argv[i][0] != '-')
			dir = argv[i];
		else {
			fprintf(
			    stderr,
			    "usage: esdb_raft_bench [--only NAME,...] [DIR]\n");
			return 2;
		}
	}
	const char *s = getenv("ESDB_BENCH_SECONDS");
	double seconds = s && *s ? atof(s) : 3;
	int status = 0;

	for (size_t i = 0; i < sizeof benches / sizeof *benches; i++) {
		const bench *b = &benches[i];
		if (!selected(only, b->name))
			continue;
		fprintf(stderr, "[esdb_raft_bench] %s\n", b->name);
		raft3_opts o = {.voters = 3,
		                .dir = dir,
		                .entry_bytes = b->entry_bytes,
		                .inflight = b->inflight,
		                .max_inflight_entries = b->max_inflight_entries,
		                .snapshot_threshold = 16384,
		                .snapshot_trailing = 4096,
		                .warmup_seconds = 0.5,
		                .seconds = seconds,
		                .timeout_seconds = seconds + 60};
		raft3_result r;
		char err[256];
		if (raft3_run(&o, &r, err, sizeof err) != 0) {
			fprintf(stderr, "esdb_raft_bench: %s: %s\n", b->name,
			        err);
			status = 1;
			continue;
		}
		double eps = (double)r.entries / r.seconds;
		printf("{\"bench\":\"%s\",\"entries_per_s\":%.1f,"
		       "\"events_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
		       "\"voters\":%u,\"entry_bytes\":%zu,"
		       "\"events_per_entry\":%u,\"inflight\":%u,"
		       "\"max_inflight_entries\":%u,\"snapshot_threshold\":%u,"
		       "\"entries\":%lu,\"seconds\":%.3f}\n",
		       b->name, eps, eps * b->events_per_entry, r.p50_us,
		       r.p99_us, o.voters, b->entry_bytes, b->events_per_entry,
		       b->inflight,
		       b->max_inflight_entries ? b->max_inflight_entries : 32,
		       o.snapshot_threshold, r.entries, r.seconds);
		fflush(stdout);
	}
	return status;
}
