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
#include "raft3_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *only, *dir;
	double seconds;
	if (bench_args(argc, argv, "esdb_raft_bench", &only, &dir, &seconds) !=
	    0)
		return 2;
	int status = 0;

	for (size_t i = 0; raft3_bench_names[i]; i++) {
		const char *name = raft3_bench_names[i];
		if (!bench_selected(only, name))
			continue;
		fprintf(stderr, "[esdb_raft_bench] %s\n", name);
		if (raft3_bench_run(name, dir, seconds, NULL) != 0)
			status = 1;
	}
	return status;
}
