/* writer.c: group commit. One thread per store drains everything queued
 * into one write transaction and one flush, then answers each caller. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* How much one drain takes at most: enough to amortise a flush, small
 * enough to keep LMDB's dirty page list well within bounds. */
#define BATCH_MAX_CMDS  4096
#define BATCH_MAX_BYTES (96u << 20)

struct esdb_req {
	struct esdb_req *next;
	esdb_cmd cmd;
	esdb_done_fn done;
	void *ctx;
};

static void answer(struct esdb_req *r, const esdb_result *res)
{
	free(r->cmd.buf);
	if (r->done)
		r->done(r->ctx, res);
	free(r);
}

static void fail_req(struct esdb_req *r, int rc)
{
	esdb_result res = {.rc = rc};
	answer(r, &res);
}

static void *writer_main(void *arg)
{
	esdb_store *s = arg;
	esdb_cmd *cmds = malloc(BATCH_MAX_CMDS * sizeof(*cmds));
	esdb_result *results = malloc(BATCH_MAX_CMDS * sizeof(*results));
	struct esdb_req **reqs = malloc(BATCH_MAX_CMDS * sizeof(*reqs));
	bool ok = cmds && results && reqs;

	pthread_mutex_lock(&s->q_lock);
	for (;;) {
		while (!s->q_head && !s->stopping)
			pthread_cond_wait(&s->q_cond, &s->q_lock);
		if (s->stopping || !ok)
			break;
		/* Take a batch off the queue. */
		size_t n = 0, bytes = 0;
		while (
		    s->q_head && n < BATCH_MAX_CMDS &&
		    (n == 0 || bytes + s->q_head->cmd.len <= BATCH_MAX_BYTES)) {
			struct esdb_req *r = s->q_head;
			s->q_head = r->next;
			s->q_bytes -= r->cmd.len;
			reqs[n] = r;
			cmds[n] = r->cmd;
			bytes += r->cmd.len;
			n++;
		}
		if (!s->q_head)
			s->q_tail = NULL;
		pthread_mutex_unlock(&s->q_lock);

		pthread_mutex_lock(&s->apply_lock);
		/* The local log is the store itself: each command takes
		 * the index after the last applied one. */
		esdb__apply_locked(s, ESDB_INDEX_NEXT, cmds, n, results);
		pthread_mutex_unlock(&s->apply_lock);
		for (size_t i = 0; i < n; i++)
			answer(reqs[i], &results[i]);

		pthread_mutex_lock(&s->q_lock);
	}
	/* Closing (or out of memory): answer whatever is still queued. */
	struct esdb_req *r = s->q_head;
	s->q_head = s->q_tail = NULL;
	s->q_bytes = 0;
	pthread_mutex_unlock(&s->q_lock);
	while (r) {
		struct esdb_req *next = r->next;
		fail_req(r, ok ? ESDB_ECLOSED : ENOMEM);
		r = next;
	}
	free(cmds);
	free(results);
	free(reqs);
	return NULL;
}

int esdb__writer_start(esdb_store *s)
{
	s->q_head = s->q_tail = NULL;
	s->q_bytes = 0;
	s->stopping = false;
	pthread_mutex_init(&s->q_lock, NULL);
	pthread_cond_init(&s->q_cond, NULL);
	int rc = pthread_create(&s->writer, NULL, writer_main, s);
	if (rc) {
		pthread_mutex_destroy(&s->q_lock);
		pthread_cond_destroy(&s->q_cond);
		return rc;
	}
	s->writer_running = true;
	return 0;
}

void esdb__writer_stop(esdb_store *s)
{
	if (!s->writer_running)
		return;
	pthread_mutex_lock(&s->q_lock);
	s->stopping = true;
	pthread_cond_signal(&s->q_cond);
	pthread_mutex_unlock(&s->q_lock);
	pthread_join(s->writer, NULL);
	s->writer_running = false;
	pthread_mutex_destroy(&s->q_lock);
	pthread_cond_destroy(&s->q_cond);
}

int esdb_submit(esdb_store *s, esdb_cmd *cmd, esdb_done_fn done, void *ctx)
{
	if (!cmd)
		return ESDB_EINVAL;
	struct esdb_req *r = malloc(sizeof(*r));
	if (!r) {
		esdb_result res = {.rc = ENOMEM};
		free(cmd->buf);
		cmd->buf = NULL;
		if (done)
			done(ctx, &res);
		return ENOMEM;
	}
	r->next = NULL;
	r->cmd = *cmd;
	r->done = done;
	r->ctx = ctx;
	cmd->buf = NULL;
	int rc = 0;
	if (!s || !s->is_open)
		rc = ESDB_ECLOSED;
	else if (s->readonly)
		rc = EROFS;
	else if (esdb_store_failure(s))
		rc = ESDB_ESTORE_FAILED;
	if (rc) {
		fail_req(r, rc);
		return rc;
	}
	pthread_mutex_lock(&s->q_lock);
	if (s->stopping)
		rc = ESDB_ECLOSED;
	else if (s->q_head && s->q_bytes + r->cmd.len > s->q_max_bytes)
		rc = ESDB_EOVERLOADED; /* an empty queue takes any size */
	if (rc) {
		pthread_mutex_unlock(&s->q_lock);
		fail_req(r, rc);
		return rc;
	}
	if (s->q_tail)
		s->q_tail->next = r;
	else
		s->q_head = r;
	s->q_tail = r;
	s->q_bytes += r->cmd.len;
	pthread_cond_signal(&s->q_cond);
	pthread_mutex_unlock(&s->q_lock);
	return 0;
}

int esdb_cancel(esdb_store *s, bool (*match)(void *ctx, void *arg), void *arg)
{
	struct esdb_req *found = NULL, *prev = NULL;
	if (!s || !match)
		return ESDB_EINVAL;
	if (!s->is_open || s->readonly)
		return ESDB_ENOTFOUND;
	pthread_mutex_lock(&s->q_lock);
	for (struct esdb_req *r = s->q_head; r; prev = r, r = r->next)
		if (match(r->ctx, arg)) {
			found = r;
			break;
		}
	if (found) {
		if (prev)
			prev->next = found->next;
		else
			s->q_head = found->next;
		if (s->q_tail == found)
			s->q_tail = prev;
		s->q_bytes -= found->cmd.len;
	}
	pthread_mutex_unlock(&s->q_lock);
	if (!found)
		return ESDB_ENOTFOUND;
	fail_req(found, ETIMEDOUT);
	return 0;
}

/* A caller waiting for its own command. */
typedef struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	esdb_result result;
} waiter;

static void wake(void *ctx, const esdb_result *res)
{
	waiter *w = ctx;
	pthread_mutex_lock(&w->lock);
	w->result = *res;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int esdb_execute(esdb_store *s, esdb_cmd *cmd, esdb_result *result)
{
	waiter w = {.done = false};
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	esdb_submit(s, cmd, wake, &w);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	if (result)
		*result = w.result;
	return w.result.rc;
}

int esdb_append(esdb_store *s, const char *stream_id, size_t stream_id_len,
                uint64_t expected_version, const esdb_new_event *events,
                size_t n, esdb_result *result)
{
	esdb_cmd cmd;
	esdb_limits l;
	if (!s)
		return ESDB_EINVAL;
	esdb_limits_get(s, &l);
	int rc = esdb_cmd_append(&l, stream_id, stream_id_len, expected_version,
	                         events, n, &cmd);
	if (rc) {
		if (result)
			*result = (esdb_result){
			    .rc = rc,
			    .limit = cmd.limit,
			    .limit_max = esdb_limit_value(&l, cmd.limit),
			};
		return rc;
	}
	return esdb_execute(s, &cmd, result);
}

int esdb_delete_stream(esdb_store *s, const char *stream_id,
                       size_t stream_id_len, uint64_t expected_version)
{
	esdb_cmd cmd;
	esdb_limits l;
	if (!s)
		return ESDB_EINVAL;
	esdb_limits_get(s, &l);
	int rc = esdb_cmd_delete_stream(&l, stream_id, stream_id_len,
	                                expected_version, &cmd);
	return rc ? rc : esdb_execute(s, &cmd, NULL);
}
