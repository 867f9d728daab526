/* cluster_bench.c: the store replicated by raft (c_src/replica), 3
 * replica processes on loopback, driven by the tests' process harness
 * (test/c/replica/cluster.c), each line beside the raft-alone line
 * (raft3_bench.c) it is measured against, run just before it in the same
 * invocation.
 *
 * Usage: esdb_cluster_bench [--only NAME[,NAME...]] [DIR]
 *
 * Lines: raft3_single, cluster3_append_single (1 writer, 1-event
 * appends), raft3_inflight64, cluster3_append_concurrent64 (64 writers:
 * threads blocked in esdb_stream_append), cluster3_append_concurrent64_async
 * (64 async clients: esdb_store_submit, the next append sent from the
 * completion callback, as the NIF's callers do),
 * raft3_batch30k, cluster3_append_batch100 (1 writer, 100-event appends),
 * cluster3_failover (the leader killed with SIGKILL -> the first
 * acknowledged append on a new leader; ESDB_BENCH_FAILOVER_KILLS kills,
 * 10 by default), cluster3_follower_append_single (1-event appends on
 * the leader one at a time, each until a follower applied it: p50/p99;
 * ESDB_BENCH_FOLLOWER_APPENDS, 100). A selected cluster line runs its
 * raft3 line too.
 * ESDB_BENCH_SECONDS per throughput run (3) after 0.5 s of warm-up.
 * Replicas run with the replica's default timings, snapshot threshold and
 * in-flight cap, and ESDB_DURABILITY_NO_META_SYNC (one flush per commit):
 * raft's log, fsynced on a quorum before an entry commits, is what makes an
 * acknowledged append durable, and the store is flushed before each raft
 * snapshot, so the marker never passes what is on disk (README, "Cluster
 * mode"). Events carry 250 bytes of data (about 300 B encoded, like the
 * raft3 lines' 304 B entries). Every store is checked at the end of a
 * line (the same events at the same positions, every acknowledged append
 * in place). ESDB_CLUSTER_BENCH_DURABILITY=sync or nosync runs the
 * replicas with another durability, for comparison. Exit status 0 when every
 * selected line ran and its checks passed, 1 otherwise, 2 on a usage error. */
#include "cluster.h"
#include "raft3_bench.h"
#include "replica.h"

#include <time.h>
#include <unistd.h>

void bench_harness_init(void);
bool bench_harness_take_failure(void);

#define EVENT_DATA_BYTES 250

static char event_data[EVENT_DATA_BYTES + 1];

/* ESDB_CLUSTER_BENCH_DURABILITY=sync|nosync: for comparisons only. */
static int durability = ESDB_DURABILITY_NO_META_SYNC;
static const char *durability_name = "no_meta_sync";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Three replicas as a cluster of the store would run them. */
static int cluster_up(cluster *c, unsigned batch)
{
	cluster_init(c, 3);
	c->election_ms = ESDB_REPLICA_ELECTION_TIMEOUT_MS;
	c->heartbeat_ms = ESDB_REPLICA_HEARTBEAT_MS;
	c->durability = durability;
	c->batch = batch;
	c->event_data = event_data;
	for (int i = 0; i < c->n; i++)
		node_start(c, i);
	return cluster_wait_leader(c, 20000);
}

typedef struct tput {
	const char *name, *baseline;
	unsigned writers, batch;
	double target; /* of appends/s (batch) or events/s over entries/s */
	bool async;    /* async clients instead of threads */
} tput;

static const tput tputs[] = {
    {"cluster3_append_single", "raft3_single", 1, 1, 0.5, false},
    {"cluster3_append_concurrent64", "raft3_inflight64", 64, 1, 2.0, false},
    {"cluster3_append_concurrent64_async", "raft3_inflight64", 64, 1, 2.0,
     true},
    {"cluster3_append_batch100", "raft3_batch30k", 1, 100, 0.5, false},
};

static int run_tput(const tput *t, double base, double seconds)
{
	cluster c;
	int leader = cluster_up(&c, t->batch);
	if (leader < 0) {
		fprintf(stderr, "esdb_cluster_bench: %s: no leader\n", t->name);
		cluster_check_and_free(&c);
		return -1;
	}
	node_info before, after;
	node_get_info(&c, leader, &before);
	if (t->async)
		node_writers_async(&c, leader, t->writers);
	else
		node_writers(&c, leader, t->writers);
	sleep_s(0.5);
	size_t a0 = cluster_acks(&c);
	double t0 = now_s();
	sleep_s(seconds);
	size_t a1 = cluster_acks(&c);
	double t1 = now_s();
	node_writers(&c, leader, 0);
	node_get_info(&c, leader, &after);
	/* every node holds what was acknowledged before the stores are
	 * compared */
	CHECK(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
	bool failed = bench_harness_take_failure();
	double aps = (double)(a1 - a0) / (t1 - t0);
	double eps = aps * t->batch;
	/* a batch is one raft entry in both; 1-event appends compare events
	 * with entries (group commit packs many appends per entry) */
	double mine = t->batch > 1 ? aps : eps;
	double ratio = base > 0 ? mine / base : 0;
	printf("{\"bench\":\"%s\",\"appends_per_s\":%.1f,"
	       "\"events_per_s\":%.1f,\"writers\":%u,"
	       "\"events_per_append\":%u,\"event_data_bytes\":%d,"
	       "\"durability\":\"%s\",\"voters\":3,"
	       "\"appends\":%zu,\"seconds\":%.3f,\"leader_changes\":%" PRIu64
	       ",\"baseline\":\"%s\",\"baseline_entries_per_s\":%.1f,"
	       "\"ratio\":%.3f,\"target_ratio\":%.1f,\"target_met\":%s,"
	       "\"checks\":\"%s\"}\n",
	       t->name, aps, eps, t->writers, t->batch, EVENT_DATA_BYTES,
	       durability_name, a1 - a0, t1 - t0,
	       after.leader_events - before.leader_events, t->baseline, base,
	       ratio, t->target,
	       base > 0 && ratio >= t->target ? "true" : "false",
	       failed ? "failed" : "passed");
	fflush(stdout);
	return failed ? -1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One append at a time on the leader; a sample is the time from its
 * submission until a follower's replica has applied it (polling the
 * follower's applied index): what an append through that follower waits
 * for before it answers (read-your-writes). The next append starts once
 * the sample is taken, so no later entry carries the commit index. */
static int run_follower(unsigned appends)
{
	cluster c;
	int leader = cluster_up(&c, 1);
	double *us = calloc(appends ? appends : 1, sizeof(double));
	unsigned done = 0;
	while (leader >= 0 && done < appends) {
		int follower = (leader + 1) % c.n;
		node_info info, f;
		double t0 = now_s();
		node_append(&c, leader, "follower", done + 1, &info);
		if (info.rc != 0)
			break;
		for (;;) {
			node_get_info(&c, follower, &f);
			if (f.applied >= info.applied || now_s() - t0 > 10)
				break;
			usleep(100);
		}
		if (f.applied < info.applied)
			break;
		us[done++] = (now_s() - t0) * 1e6;
	}
	CHECK(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
	bool failed = bench_harness_take_failure() || done < appends;
	unsigned n = done;
	qsort(us, n, sizeof(double), cmp_double);
	double p50 = n ? us[n / 2] : 0, p99 = n ? us[n * 99 / 100] : 0;
	printf("{\"bench\":\"cluster3_follower_append_single\","
	       "\"appends\":%u,\"p50_us\":%.0f,\"p99_us\":%.0f,"
	       "\"heartbeat_ms\":%u,\"p50_heartbeats\":%.2f,"
	       "\"durability\":\"%s\",\"checks\":\"%s\"}\n",
	       n, p50, p99, ESDB_REPLICA_HEARTBEAT_MS,
	       p50 / 1000.0 / ESDB_REPLICA_HEARTBEAT_MS, durability_name,
	       failed ? "failed" : "passed");
	fflush(stdout);
	free(us);
	return failed ? -1 : 0;
}

/* Kill the leader, then append on the other nodes in turn (a follower or
 * candidate answers not_leader at once) until one acknowledges; the time
 * from the kill to that acknowledgement is one sample. The killed node
 * is started again and caught up before the next kill. */
static int run_failover(unsigned kills)
{
	cluster c;
	int leader = cluster_up(&c, 1);
	double *ms = calloc(kills, sizeof(double));
	unsigned done = 0;
	uint64_t n = 0, term = 0, last_term = 0;
	if (leader >= 0) {
		node_info info;
		node_get_info(&c, leader, &info);
		last_term = info.term;
	}
	while (leader >= 0 && done < kills) {
		double t0 = now_s(), t1 = 0;
		node_kill(&c, leader);
		while (!t1 && now_s() - t0 < 30) {
			for (int i = 0; i < c.n && !t1; i++) {
				if (i == leader)
					continue;
				node_info info;
				node_append(&c, i, "failover",
				            0xFAull << 56 | ++n, &info);
				if (info.rc == 0) {
					t1 = now_s();
					term = info.term;
				}
			}
			if (!t1)
				usleep(1000);
		}
		if (!t1) {
			fprintf(stderr,
			        "esdb_cluster_bench: failover: no "
			        "acknowledged append 30 s after a kill\n");
			break;
		}
		ms[done++] = (t1 - t0) * 1000;
		/* a term up by more than one: an election was split */
		fprintf(
		    stderr,
		    "[esdb_cluster_bench] failover %u: %.0f ms, term %" PRIu64
		    " -> %" PRIu64 "\n",
		    done, ms[done - 1], last_term, term);
		last_term = term;
		node_start(&c, leader);
		if (!cluster_wait_converged(&c, 30000)) {
			fprintf(stderr, "esdb_cluster_bench: failover: the "
			                "restarted node did not catch up\n");
			break;
		}
		leader = cluster_wait_leader(&c, 20000);
	}
	CHECK(cluster_wait_converged(&c, 30000));
	cluster_check_and_free(&c);
	bool failed = bench_harness_take_failure() || done < kills;
	qsort(ms, done, sizeof(double), cmp_double);
	double p50 = done ? ms[done / 2] : 0, max = done ? ms[done - 1] : 0,
	       min = done ? ms[0] : 0;
	double et = ESDB_REPLICA_ELECTION_TIMEOUT_MS;
	printf("{\"bench\":\"cluster3_failover\",\"kills\":%u,"
	       "\"p50_ms\":%.1f,\"max_ms\":%.1f,\"min_ms\":%.1f,"
	       "\"election_timeout_ms\":%u,\"heartbeat_ms\":%u,"
	       "\"durability\":\"%s\","
	       "\"p50_ratio\":%.3f,\"max_ratio\":%.3f,"
	       "\"target_p50_ratio\":1.5,\"target_max_ratio\":3.0,"
	       "\"target_met\":%s,\"checks\":\"%s\"}\n",
	       done, p50, max, min, ESDB_REPLICA_ELECTION_TIMEOUT_MS,
	       ESDB_REPLICA_HEARTBEAT_MS, durability_name, p50 / et, max / et,
	       done == kills && p50 <= 1.5 * et && max <= 3 * et ? "true"
	                                                         : "false",
	       failed ? "failed" : "passed");
	fflush(stdout);
	free(ms);
	return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
	const char *only, *dir;
	double seconds;
	if (bench_args(argc, argv, "esdb_cluster_bench", &only, &dir,
	               &seconds) != 0)
		return 2;
	const char *k = getenv("ESDB_BENCH_FAILOVER_KILLS");
	unsigned kills = k && *k ? (unsigned)atoi(k) : 10;
	memset(event_data, 'x', EVENT_DATA_BYTES);
	const char *d = getenv("ESDB_CLUSTER_BENCH_DURABILITY");
	if (d && strcmp(d, "sync") == 0)
		durability = ESDB_DURABILITY_SYNC, durability_name = d;
	else if (d && strcmp(d, "nosync") == 0)
		durability = ESDB_DURABILITY_NOSYNC, durability_name = d;
	else if (d && *d && strcmp(d, "no_meta_sync") != 0) {
		fprintf(stderr, "esdb_cluster_bench: "
		                "ESDB_CLUSTER_BENCH_DURABILITY: sync, "
		                "no_meta_sync or nosync\n");
		return 2;
	}
	bench_harness_init();
	/* the replicas' directories (tmp_dir), removed at exit */
	setenv("TMPDIR", dir, 1);
	int status = 0;

	for (size_t i = 0; i < sizeof tputs / sizeof *tputs; i++) {
		const tput *t = &tputs[i];
		bool mine = bench_selected(only, t->name);
		if (!mine && !bench_selected(only, t->baseline))
			continue;
		double base = 0;
		fprintf(stderr, "[esdb_cluster_bench] %s\n", t->baseline);
		if (raft3_bench_run(t->baseline, dir, seconds, &base) != 0)
			status = 1;
		if (!mine)
			continue;
		fprintf(stderr, "[esdb_cluster_bench] %s\n", t->name);
		if (run_tput(t, base, seconds) != 0)
			status = 1;
	}
	if (bench_selected(only, "cluster3_follower_append_single")) {
		const char *a = getenv("ESDB_BENCH_FOLLOWER_APPENDS");
		fprintf(
		    stderr,
		    "[esdb_cluster_bench] cluster3_follower_append_single\n");
		if (run_follower(a && *a ? (unsigned)atoi(a) : 100) != 0)
			status = 1;
	}
	if (bench_selected(only, "cluster3_failover")) {
		fprintf(stderr, "[esdb_cluster_bench] cluster3_failover\n");
		if (run_failover(kills) != 0)
			status = 1;
	}
	return status;
}
