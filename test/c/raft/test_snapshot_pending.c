/* test_snapshot_pending.c: the same crash as test_fixture_snapshot.c
 * (which reproduces it deterministically), here with raft's real uv I/O
 * and TCP: 3 voters on loopback (raft3.c), 64 entries in flight, a
 * snapshot every 64 entries keeping 32, 1 MiB snapshots, and a follower
 * killed (SIGKILL) every 150 ms and started again 50 ms later, behind the
 * leader's log, so it is sent snapshots. Unpatched, a round crashed a node
 * (SIGSEGV) ~40% of the time on a loaded 2-core machine; patched, none
 * did. ESDB_RAFT_SNAPSHOT_ROUNDS (2) rounds of ESDB_RAFT_SNAPSHOT_SECONDS
 * (6), more (up to ESDB_RAFT_SNAPSHOT_MAX_ROUNDS, 6) while no follower
 * installed a snapshot. Real processes and kills: not under valgrind. A
 * restarted node that raft refuses to start is counted, not failed (raft3.h).
 */
#include "harness.h"
#include "raft3.h"

static unsigned env_u(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

TEST(raft_follower_survives_install_snapshot_while_snapshotting)
{
	unsigned rounds = env_u("ESDB_RAFT_SNAPSHOT_ROUNDS", 2);
	raft3_opts o = {
	    .voters = 3,
	    .dir = getenv("ESDB_RAFT_TEST_DIR") ? getenv("ESDB_RAFT_TEST_DIR")
	                                        : "build/raft-test-data",
	    .entry_bytes = 304,
	    .inflight = 64,
	    .max_inflight_entries = 1024,
	    .snapshot_threshold = 64,
	    .snapshot_trailing = 32,
	    .warmup_seconds = 0,
	    .seconds = 1e6,
	    .wall_seconds = env_u("ESDB_RAFT_SNAPSHOT_SECONDS", 6),
	    .timeout_seconds = 120,
	    /* A restarted follower is behind the leader's
	     * trailing entries: it is sent a snapshot while it
	     * applies its own log and snapshots that. */
	    .restart_every_ms = 150,
	    .down_ms = 50,
	    /* Snapshots that take a while to write widen the race. */
	    .snapshot_bytes = 1 << 20};
	unsigned long restores = 0;
	/* On a loaded machine a round may send no follower a snapshot
	 * (3 snapshots in 6 s, none installed): more rounds, bounded,
	 * until one is. */
	unsigned max_rounds =
	    env_u("ESDB_RAFT_SNAPSHOT_MAX_ROUNDS", rounds + 4);
	for (unsigned i = 0; i < rounds || (restores == 0 && i < max_rounds);
	     i++) {
		raft3_result res = {0};
		char err[256];
		int rc = raft3_run(&o, &res, err, sizeof err);
		printf("  round %u: %s%s leaders %lu, restarts %lu (refused to "
		       "start %lu), snapshots %lu, installed %lu\n",
		       i + 1, rc == 0 ? "ok" : "FAILED: ", rc == 0 ? "" : err,
		       res.leaders, res.restarts, res.refused_starts,
		       res.snapshots, res.restores);
		if (rc != 0) {
			harness_fail(__FILE__, __LINE__, "round %u: %s", i + 1,
			             err);
			return;
		}
		CHECK(res.snapshots > 0);
		restores += res.restores;
	}
	/* The race needs followers sent snapshots: the test must reach it. */
	CHECK(restores > 0);
}
