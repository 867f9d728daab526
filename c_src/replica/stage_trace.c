/* stage_trace.c: per-stage samples of the proposing replica
 * (stage_trace.h). */
#include "stage_trace.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#define TRACE_SAMPLES 200000

struct esdb_stage_trace {
	pthread_mutex_t lock;
	uint32_t n[STAGE_N];
	uint64_t *v[STAGE_N];
};

static const char *const names[STAGE_N] = {
    "queued", "raft",           "handoff",         "apply",  "answer",
    "total",  "cmds_per_entry", "entries_per_txn", "gather", "gather_timed"};

esdb_stage_trace *esdb_stage_trace_new(void)
{
	const char *e = getenv("ESDB_REPLICA_TRACE");
	if (!e || !*e)
		return NULL;
	esdb_stage_trace *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	for (int i = 0; i < STAGE_N; i++)
		t->v[i] = malloc(TRACE_SAMPLES * sizeof(uint64_t));
	return t;
}

void esdb_stage_trace_add(esdb_stage_trace *t, esdb_stage s, uint64_t v)
{
	if (!t || !t->v[s])
		return;
	pthread_mutex_lock(&t->lock);
	if (t->n[s] < TRACE_SAMPLES)
		t->v[s][t->n[s]++] = v;
	pthread_mutex_unlock(&t->lock);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

void esdb_stage_trace_end(esdb_stage_trace *t, uint64_t id)
{
	if (!t)
		return;
	for (int i = 0; i < STAGE_N; i++) {
		uint32_t n = t->n[i];
		if (n) {
			qsort(t->v[i], n, sizeof(uint64_t), cmp_u64);
			double sum = 0;
			for (uint32_t k = 0; k < n; k++)
				sum += (double)t->v[i][k];
			fprintf(stderr,
			        "[replica %" PRIu64 " trace] %-16s n %7u p50 "
			        "%6" PRIu64 " p90 %6" PRIu64 " p99 %7" PRIu64
			        " mean %8.1f\n",
			        id, names[i], n, t->v[i][n / 2],
			        t->v[i][n * 9 / 10], t->v[i][n * 99 / 100],
			        sum / n);
		}
		free(t->v[i]);
	}
	/* the process's context switches so far: with the callers in the
	 * same process, what the hops between threads cost per entry */
	struct rusage ru;
	if (!getrusage(RUSAGE_SELF, &ru))
		fprintf(stderr,
		        "[replica %" PRIu64 " trace] context switches: %ld "
		        "voluntary, %ld involuntary\n",
		        id, ru.ru_nvcsw, ru.ru_nivcsw);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
