/* stage_trace.h: where an append's time goes on the proposing replica,
 * by stage, for the cluster benchmarks (docs/PERFORMANCE.md). Off unless
 * ESDB_REPLICA_TRACE is set when the replica is created; then each stage's
 * samples (µs) are kept and their p50/p90/p99/mean printed to stderr when
 * the replica stops. */
#ifndef ESDB_REPLICA_STAGE_TRACE_H
#define ESDB_REPLICA_STAGE_TRACE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
	STAGE_QUEUED,  /* first submit -> raft_apply */
	STAGE_RAFT,    /* raft_apply -> fsm_apply (committed) */
	STAGE_HANDOFF, /* fsm_apply -> the writer takes the batch */
	STAGE_APPLY,   /* the writer's transaction and flush */
	STAGE_ANSWER,  /* applied -> callers answered */
	STAGE_TOTAL,   /* first submit -> answered */
	STAGE_CMDS,    /* commands per entry (a count, not µs) */
	STAGE_BATCH,   /* entries per writer transaction (a count) */
	STAGE_GATHER,  /* last entry's callers answered -> next raft_apply */
	STAGE_TIMED,   /* 1 when the gather timer sent the entry, else 0 */
	STAGE_N
} esdb_stage;

typedef struct esdb_stage_trace esdb_stage_trace;

/* NULL (tracing off) unless ESDB_REPLICA_TRACE is set. */
esdb_stage_trace *esdb_stage_trace_new(void);
/* A sample; t may be NULL (does nothing). Any thread. */
void esdb_stage_trace_add(esdb_stage_trace *t, esdb_stage s, uint64_t v);
/* Print to stderr, labelled, and free. */
void esdb_stage_trace_end(esdb_stage_trace *t, uint64_t id);

#endif
