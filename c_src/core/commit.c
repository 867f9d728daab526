/* commit.c: the core's side of the commit path (commit.h): submitting,
 * withdrawing and waiting for commands, whichever path commits them. */
#include "commit.h"
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int esdb_store_set_commit_path(esdb_store *s, const esdb_commit_path *cp)
{
	if (!s || !cp || !cp->submit || !cp->stop || !cp->start)
		return ESDB_EINVAL;
	if (s->is_open)
		return ESDB_EBUSY;
	/* Limits decide what apply answers: a replica takes them from the
	 * log (a LIMITS_SET command), never from its own options. */
	if (cp->replicated && s->limits_set)
		return ESDB_EINVAL;
	if (s->commit.close)
		s->commit.close(&s->commit);
	s->commit = *cp;
	return 0;
}

const char *esdb_commit_path_name(const esdb_store *s)
{
	return s && s->commit.name ? s->commit.name : "local";
}

void esdb_commit_answer(esdb_commit_req *req, const esdb_result *res)
{
	free(req->cmd.buf);
	if (req->done)
		req->done(req->ctx, res);
	free(req);
}

int esdb__commit_start(esdb_store *s)
{
	bool local = !s->commit.submit;
	int rc;
	if (local && (rc = esdb_commit_path_init_local(&s->commit)))
		return rc;
	if ((rc = s->commit.start(&s->commit, s))) {
		/* a path set by the caller stays for the next open */
		if (local)
			esdb__commit_close(s);
		return rc;
	}
	s->commit_running = true;
	return 0;
}

void esdb__commit_stop(esdb_store *s)
{
	if (!s->commit_running)
		return;
	s->commit.stop(&s->commit);
	s->commit_running = false;
}

void esdb__commit_close(esdb_store *s)
{
	if (s->commit.close)
		s->commit.close(&s->commit);
	memset(&s->commit, 0, sizeof(s->commit));
}

static void fail_req(esdb_commit_req *r, int rc)
{
	esdb_result res = {.rc = rc};
	esdb_commit_answer(r, &res);
}

int esdb_store_submit(esdb_store *s, esdb_cmd *cmd, esdb_result_fn done,
                      void *ctx)
{
	if (!cmd)
		return ESDB_EINVAL;
	esdb_commit_req *r = malloc(sizeof(*r));
	if (!r) {
		esdb_result res = {.rc = ENOMEM};
		free(cmd->buf);
		cmd->buf = NULL;
		if (done)
			done(ctx, &res);
		return ENOMEM;
	}
	r->next = NULL;
	r->index = 0;
	r->cmd = *cmd;
	r->done = done;
	r->ctx = ctx;
	cmd->buf = NULL;
	int rc = 0;
	if (!s || !s->is_open)
		rc = ESDB_ECLOSED;
	else if (s->readonly)
		rc = EROFS;
	else if (esdb_store_get_failure(s))
		rc = ESDB_ESTORE_FAILED;
	else if (s->replica_marked && !s->commit.replicated)
		rc = ESDB_ENOT_LEADER; /* replica_mark.c */
	else
		rc = s->commit.submit(&s->commit, r);
	if (rc)
		fail_req(r, rc);
	return rc;
}

int esdb_store_cancel(esdb_store *s, bool (*match)(void *ctx, void *arg),
                      void *arg)
{
	esdb_commit_req *found = NULL;
	if (!s || !match)
		return ESDB_EINVAL;
	if (!s->is_open || s->readonly || !s->commit.cancel)
		return ESDB_ENOTFOUND;
	int rc = s->commit.cancel(&s->commit, match, arg, &found);
	if (rc)
		return rc;
	fail_req(found, ETIMEDOUT);
	return 0;
}

/* A caller waiting for its own command. Shared by the caller and the
 * thread that answers it, freed by whichever lets go last: the answer
 * signals after unlocking (a caller woken while the lock is still held
 * sleeps again on it, a second wake-up and context switch per answer,
 * paid by the writer answering its callers one by one), so the caller
 * may have returned by the time the signal is sent. */
typedef struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	atomic_int refs;
	esdb_result result;
} waiter;

static void waiter_unref(waiter *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1) {
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
		free(w);
	}
}

static void wake(void *ctx, const esdb_result *res)
{
	waiter *w = ctx;
	pthread_mutex_lock(&w->lock);
	w->result = *res;
	w->done = true;
	pthread_mutex_unlock(&w->lock);
	pthread_cond_signal(&w->cond);
	waiter_unref(w);
}

int esdb_store_execute(esdb_store *s, esdb_cmd *cmd, esdb_result *result)
{
	if (!cmd)
		return ESDB_EINVAL;
	waiter *w = malloc(sizeof(*w));
	if (!w) {
		free(cmd->buf);
		cmd->buf = NULL;
		if (result)
			*result = (esdb_result){.rc = ENOMEM};
		return ENOMEM;
	}
	w->done = false;
	atomic_init(&w->refs, 2);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	esdb_store_submit(s, cmd, wake, w);
	pthread_mutex_lock(&w->lock);
	while (!w->done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	esdb_result res = w->result;
	waiter_unref(w);
	if (result)
		*result = res;
	return res.rc;
}

int esdb_stream_append(esdb_store *s, const char *stream_id,
                       size_t stream_id_len, uint64_t expected_version,
                       const esdb_new_event *events, size_t n,
                       esdb_result *result)
{
	esdb_cmd cmd;
	esdb_limits l;
	if (!s)
		return ESDB_EINVAL;
	esdb_store_get_limits(s, &l);
	int rc = esdb_cmd_stream_append(&l, stream_id, stream_id_len,
	                                expected_version, events, n, &cmd);
	if (rc) {
		if (result)
			*result = (esdb_result){
			    .rc = rc,
			    .limit = cmd.limit,
			    .limit_max = esdb_limits_lookup(&l, cmd.limit),
			};
		return rc;
	}
	return esdb_store_execute(s, &cmd, result);
}

int esdb_stream_delete(esdb_store *s, const char *stream_id,
                       size_t stream_id_len, uint64_t expected_version)
{
	esdb_cmd cmd;
	esdb_limits l;
	if (!s)
		return ESDB_EINVAL;
	esdb_store_get_limits(s, &l);
	int rc = esdb_cmd_stream_delete(&l, stream_id, stream_id_len,
	                                expected_version, &cmd);
	return rc ? rc : esdb_store_execute(s, &cmd, NULL);
}
