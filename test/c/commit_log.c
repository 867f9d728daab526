/* commit_log.c: a second commit path for the tests, shaped like a
 * replicated log: a command gets its log index when submitted, an applier
 * thread of its own applies what the log holds with esdb_store_apply at those
 * indexes, one call per run of consecutive indexes. Every 8th index is
 * left to an entry that is no command (as raft's configuration entries),
 * so indexes jump. ESDB_TEST_COMMIT_PATH=log runs the store suite on it
 * (helpers.c, open_store). */
#include "harness.h"

#include "commit.h"

#include <errno.h>
#include <pthread.h>

#define LOG_BATCH 1024

typedef struct test_log {
	esdb_store *s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	esdb_commit_req *head, *tail;
	uint64_t next_index; /* the index the next command gets */
	bool stopping;
} test_log;

/* The index after `i`, leaving every 8th to a non-command entry. */
static uint64_t index_after(uint64_t i)
{
	return (i + 1) % 8 == 0 ? i + 2 : i + 1;
}

static void *applier(void *arg)
{
	test_log *l = arg;
	esdb_cmd cmds[LOG_BATCH];
	esdb_result results[LOG_BATCH];
	esdb_commit_req *reqs[LOG_BATCH];
	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (!l->head && !l->stopping)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->stopping)
			break;
		/* A run of consecutive indexes, applied in one call. */
		size_t n = 0;
		uint64_t first = l->head->index;
		while (l->head && n < LOG_BATCH &&
		       l->head->index == first + n) {
			reqs[n] = l->head;
			cmds[n] = l->head->cmd;
			l->head = l->head->next;
			n++;
		}
		if (!l->head)
			l->tail = NULL;
		pthread_mutex_unlock(&l->lock);
		esdb_store_apply(l->s, first, cmds, n, results);
		for (size_t i = 0; i < n; i++)
			esdb_commit_answer(reqs[i], &results[i]);
		pthread_mutex_lock(&l->lock);
	}
	esdb_commit_req *r = l->head;
	l->head = l->tail = NULL;
	pthread_mutex_unlock(&l->lock);
	while (r) {
		esdb_commit_req *next = r->next;
		esdb_result res = {.rc = ESDB_ECLOSED};
		esdb_commit_answer(r, &res);
		r = next;
	}
	return NULL;
}

static int log_start(esdb_commit_path *cp, esdb_store *s)
{
	test_log *l = cp->impl;
	uint64_t applied;
	int rc = esdb_store_get_applied_index(s, &applied);
	if (rc)
		return rc;
	l->s = s;
	l->head = l->tail = NULL;
	l->next_index = index_after(applied);
	l->stopping = false;
	return pthread_create(&l->thread, NULL, applier, l);
}

static int log_submit(esdb_commit_path *cp, esdb_commit_req *r)
{
	test_log *l = cp->impl;
	pthread_mutex_lock(&l->lock);
	if (l->stopping) {
		pthread_mutex_unlock(&l->lock);
		return ESDB_ECLOSED;
	}
	r->next = NULL;
	r->index = l->next_index;
	l->next_index = index_after(l->next_index);
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* Commands taken after a restore go on after the copy's index. */
static void log_restored(esdb_commit_path *cp, uint64_t applied)
{
	test_log *l = cp->impl;
	pthread_mutex_lock(&l->lock);
	l->next_index = index_after(applied);
	pthread_mutex_unlock(&l->lock);
}

static void log_stop(esdb_commit_path *cp)
{
	test_log *l = cp->impl;
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
}

static void log_close(esdb_commit_path *cp)
{
	test_log *l = cp->impl;
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
	cp->impl = NULL;
}

int test_commit_log(esdb_commit_path *cp)
{
	test_log *l = calloc(1, sizeof(*l));
	if (!l)
		return ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	*cp = (esdb_commit_path){
	    .impl = l,
	    .name = "log",
	    .start = log_start,
	    .submit = log_submit,
	    .cancel = NULL, /* in the log once submitted */
	    .restored = log_restored,
	    .stop = log_stop,
	    .close = log_close,
	};
	return 0;
}
