/* writer.c: the local commit path, group commit. One thread per store
 * drains everything queued into one write transaction and one flush, then
 * answers each caller. The store is its own log: a command is committed
 * when its transaction is, at the index after the last applied one. */
#include "commit.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* How much one drain takes at most: enough to amortise a flush, small
 * enough to keep LMDB's dirty page list well within bounds. */
#define BATCH_MAX_CMDS  4096
#define BATCH_MAX_BYTES (96u << 20)

typedef struct writer {
	esdb_store *s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	esdb_commit_req *head, *tail;
	uint64_t bytes;     /* encoded bytes queued */
	uint64_t max_bytes; /* bound, esdb_store_set_queue_bytes */
	bool stopping;
} writer;

static void fail_req(esdb_commit_req *r, int rc)
{
	esdb_result res = {.rc = rc};
	esdb_commit_answer(r, &res);
}

static void *writer_main(void *arg)
{
	writer *w = arg;
	esdb_store *s = w->s;
	esdb_cmd *cmds = malloc(BATCH_MAX_CMDS * sizeof(*cmds));
	esdb_result *results = malloc(BATCH_MAX_CMDS * sizeof(*results));
	esdb_commit_req **reqs = malloc(BATCH_MAX_CMDS * sizeof(*reqs));
	bool ok = cmds && results && reqs;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->head && !w->stopping)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stopping || !ok)
			break;
		/* Take a batch off the queue. */
		size_t n = 0, bytes = 0;
		while (
		    w->head && n < BATCH_MAX_CMDS &&
		    (n == 0 || bytes + w->head->cmd.len <= BATCH_MAX_BYTES)) {
			esdb_commit_req *r = w->head;
			w->head = r->next;
			w->bytes -= r->cmd.len;
			reqs[n] = r;
			cmds[n] = r->cmd;
			bytes += r->cmd.len;
			n++;
		}
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->lock);

		/* Committed and applied in one: each command takes the
		 * index after the last applied one. */
		esdb_store_apply(s, ESDB_INDEX_NEXT, cmds, n, results);
		for (size_t i = 0; i < n; i++)
			esdb_commit_answer(reqs[i], &results[i]);

		pthread_mutex_lock(&w->lock);
	}
	/* Closing (or out of memory): answer whatever is still queued. */
	esdb_commit_req *r = w->head;
	w->head = w->tail = NULL;
	w->bytes = 0;
	pthread_mutex_unlock(&w->lock);
	while (r) {
		esdb_commit_req *next = r->next;
		fail_req(r, ok ? ESDB_ECLOSED : ENOMEM);
		r = next;
	}
	free(cmds);
	free(results);
	free(reqs);
	return NULL;
}

static int writer_start(esdb_commit_path *cp, esdb_store *s)
{
	writer *w = cp->impl;
	w->s = s;
	w->head = w->tail = NULL;
	w->bytes = 0;
	w->max_bytes = s->q_max_bytes;
	w->stopping = false;
	return pthread_create(&w->thread, NULL, writer_main, w);
}

static void writer_stop(esdb_commit_path *cp)
{
	writer *w = cp->impl;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
}

static void writer_close(esdb_commit_path *cp)
{
	writer *w = cp->impl;
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
	cp->impl = NULL;
}

static int writer_submit(esdb_commit_path *cp, esdb_commit_req *r)
{
	writer *w = cp->impl;
	int rc = 0;
	r->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->stopping)
		rc = ESDB_ECLOSED;
	else if (w->head && w->bytes + r->cmd.len > w->max_bytes)
		rc = ESDB_EOVERLOADED; /* an empty queue takes any size */
	if (rc) {
		pthread_mutex_unlock(&w->lock);
		return rc;
	}
	if (w->tail)
		w->tail->next = r;
	else
		w->head = r;
	w->tail = r;
	w->bytes += r->cmd.len;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static int writer_cancel(esdb_commit_path *cp,
                         bool (*match)(void *ctx, void *arg), void *arg,
                         esdb_commit_req **out)
{
	writer *w = cp->impl;
	esdb_commit_req *found = NULL, *prev = NULL;
	pthread_mutex_lock(&w->lock);
	for (esdb_commit_req *r = w->head; r; prev = r, r = r->next)
		if (match(r->ctx, arg)) {
			found = r;
			break;
		}
	if (found) {
		if (prev)
			prev->next = found->next;
		else
			w->head = found->next;
		if (w->tail == found)
			w->tail = prev;
		w->bytes -= found->cmd.len;
	}
	pthread_mutex_unlock(&w->lock);
	*out = found;
	return found ? 0 : ESDB_ENOTFOUND;
}

int esdb_commit_path_init_local(esdb_commit_path *cp)
{
	if (!cp)
		return ESDB_EINVAL;
	writer *w = calloc(1, sizeof(*w));
	if (!w)
		return ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	*cp = (esdb_commit_path){
	    .impl = w,
	    .name = "local",
	    .start = writer_start,
	    .submit = writer_submit,
	    .cancel = writer_cancel,
	    .stop = writer_stop,
	    .close = writer_close,
	};
	return 0;
}
