/* raft3_bench.c: the raft3 benchmark lines (raft3_bench.h). */
#include "raft3_bench.h"

#include "raft3.h"

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

const char *const raft3_bench_names[] = {"raft3_single", "raft3_inflight64",
                                         "raft3_batch30k", NULL};

bool bench_selected(const char *only, const char *name)
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

int bench_args(int argc, char **argv, const char *prog, const char **only,
               const char **dir, double *seconds)
{
	*only = NULL;
	*dir = "build/bench-data";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			*only = argv[++i];
		else if (argv[i][0] != '-')
			*dir = argv[i];
		else {
			fprintf(stderr, "usage: %s [--only NAME,...] [DIR]\n",
			        prog);
			return 2;
		}
	}
	const char *s = getenv("ESDB_BENCH_SECONDS");
	*seconds = s && *s ? atof(s) : 3;
	return 0;
}

int raft3_bench_run(const char *name, const char *dir, double seconds,
                    double *entries_per_s)
{
	const bench *b = NULL;
	for (size_t i = 0; i < sizeof benches / sizeof *benches; i++)
		if (strcmp(benches[i].name, name) == 0)
			b = &benches[i];
	if (b == NULL) {
		fprintf(stderr, "raft3 bench: unknown %s\n", name);
		return -1;
	}
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
		fprintf(stderr, "raft3 bench: %s: %s\n", b->name, err);
		return -1;
	}
	double eps = (double)r.entries / r.seconds;
	printf("{\"bench\":\"%s\",\"entries_per_s\":%.1f,"
	       "\"events_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
	       "\"voters\":%u,\"entry_bytes\":%zu,"
	       "\"events_per_entry\":%u,\"inflight\":%u,"
	       "\"max_inflight_entries\":%u,\"snapshot_threshold\":%u,"
	       "\"entries\":%lu,\"seconds\":%.3f}\n",
	       b->name, eps, eps * b->events_per_entry, r.p50_us, r.p99_us,
	       o.voters, b->entry_bytes, b->events_per_entry, b->inflight,
	       b->max_inflight_entries ? b->max_inflight_entries : 32,
	       o.snapshot_threshold, r.entries, r.seconds);
	fflush(stdout);
	if (entries_per_s)
		*entries_per_s = eps;
	return 0;
}
