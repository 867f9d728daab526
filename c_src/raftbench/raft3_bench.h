/* raft3_bench.h: the raft3 benchmark lines (raft alone, 3 voters on
 * loopback, trivial FSM), shared by esdb_raft_bench and esdb_cluster_bench
 * (which interleaves them with the cluster lines they are the baseline
 * of). */
#ifndef ESDB_RAFT3_BENCH_H
#define ESDB_RAFT3_BENCH_H

#include <stdbool.h>

/* raft3_single, raft3_inflight64, raft3_batch30k, NULL-terminated. */
extern const char *const raft3_bench_names[];

/* Runs the named benchmark under dir for `seconds` (after 0.5 s of
 * warm-up), prints its JSON line on stdout and stores its entries/s in
 * *entries_per_s. 0, or -1 with the reason on stderr. */
int raft3_bench_run(const char *name, const char *dir, double seconds,
                    double *entries_per_s);

/* Whether `name` is in the comma-separated list `only` (NULL: all). */
bool bench_selected(const char *only, const char *name);

/* The command line both benchmark programs take, [--only NAME,...] [DIR]
 * (dir defaults to build/bench-data), and ESDB_BENCH_SECONDS (3) in
 * *seconds. 0, or 2 (the exit status) after printing the usage of
 * `prog` on stderr. */
int bench_args(int argc, char **argv, const char *prog, const char **only,
               const char **dir, double *seconds);

#endif
