/* maintenance.c: verify (its checks in a forked child) and backup, each on
 * a thread of its own, as the NIF runs them: both read the whole store in
 * one read transaction and may take minutes; on the read pool they would
 * hold a reader that other clients' reads wait for. The thread answers
 * the caller when done, however long that takes. */
#include "ops.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
	caller *k;
	char *dest; /* backup's directory; NULL for verify */
} job;

static void *job_main(void *arg)
{
	job *j = arg;
	caller *k = j->k;
	cn_server *srv = k->srv;
	uint64_t problems = 0;
	/* Held shared like any call, so the shutdown waits for the job. */
	pthread_rwlock_rdlock(&srv->store_lock);
	int rc = srv->closed ? ESDB_ECLOSED
	         : j->dest   ? esdb_store_backup(srv->store, j->dest)
	                   : esdb_store_verify_isolated(srv->store, NULL, NULL,
	                                                &problems, NULL);
	pthread_rwlock_unlock(&srv->store_lock);
	/* free before the answer: its caller may ask again at once */
	atomic_store(&srv->job_running, false);
	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (rc == ESDB_ECORRUPT && !j->dest) {
		/* {error, {corrupt, Problems}}, as the NIF's verify */
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "error");
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "corrupt");
		ei_x_encode_ulonglong(&x, problems);
	} else if (rc) {
		cn_encode_rc(srv, &x, rc);
	} else {
		ei_x_encode_atom(&x, "ok");
	}
	cn_reply_end(k, &x);
	free(j->dest);
	free(j);
	return NULL;
}

/* Start the job, or answer why no thread started. */
static void start(caller *k, char *dest)
{
	pthread_attr_t attr;
	pthread_t tid;
	job *j = NULL;
	int rc = ESDB_EOVERLOADED;
	/* One job per store at a time, as the NIF: each reads the whole
	 * store, a thread apiece would let callers pile them up. */
	if (atomic_exchange(&k->srv->job_running, true))
		goto busy;
	rc = ENOMEM;
	if (!(j = malloc(sizeof(*j))))
		goto fail;
	*j = (job){k, dest};
	if ((rc = pthread_attr_init(&attr)))
		goto fail;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, job_main, j);
	pthread_attr_destroy(&attr);
	if (rc)
		goto fail;
	return;
fail:
	atomic_store(&k->srv->job_running, false);
busy:
	free(j);
	free(dest);
	cn_reply_rc(k, rc);
}

void cn_op_verify(caller *k, const arg *v, const char *m)
{
	(void)v;
	(void)m;
	start(k, NULL);
}

void cn_op_backup(caller *k, const arg *v, const char *m)
{
	(void)m;
	char *dest = malloc(v[0].len + 1);
	if (!dest) {
		cn_reply_rc(k, ENOMEM);
		return;
	}
	memcpy(dest, v[0].p, v[0].len);
	dest[v[0].len] = 0;
	start(k, dest);
}
