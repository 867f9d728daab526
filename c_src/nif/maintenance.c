/* maintenance.c: verify (esdb_store_verify_isolated: its checks in a child
 * process) and backup on a thread of their own. Both read
 * the whole store in one read transaction and may take minutes; on a
 * dirty scheduler they would hold it (and slow every read queued behind
 * it) for all that time. The NIF starts a thread and returns at once; the
 * thread answers the caller with {Ref, Reply}. */
#include "nif.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
	store_res *r; /* kept (enif_keep_resource) until the answer */
	ErlNifPid pid;
	ErlNifEnv *env;
	ERL_NIF_TERM ref;
	char *dest; /* backup's directory; NULL for verify */
} job;

static void *job_main(void *arg)
{
	job *j = arg;
	ErlNifEnv *env = j->env;
	uint64_t problems = 0;
	ERL_NIF_TERM reply;
	/* Held shared like any call, so a close waits for the job. */
	enif_rwlock_rlock(j->r->lock);
	int rc = j->r->closed ? ESDB_ECLOSED
	         : j->dest    ? esdb_store_backup(j->r->s, j->dest)
	                      : esdb_store_verify_isolated(j->r->s, NULL, NULL,
	                                                   &problems, NULL);
	enif_rwlock_runlock(j->r->lock);
	if (rc == ESDB_ECORRUPT && !j->dest)
		reply = enif_make_tuple2(
		    env, enif_make_atom(env, "error"),
		    enif_make_tuple2(env, enif_make_atom(env, "corrupt"),
		                     enif_make_uint64(env, problems)));
	else
		reply =
		    rc ? nif_error_term(env, rc) : enif_make_atom(env, "ok");
	/* free before the answer: its caller may ask again at once */
	__atomic_store_n(&j->r->job_running, 0, __ATOMIC_RELEASE);
	enif_send(NULL, &j->pid, env, enif_make_tuple2(env, j->ref, reply));
	enif_free_env(env);
	enif_release_resource(j->r);
	free(j->dest);
	free(j);
	return NULL;
}

/* Start the job; ok, or {error, overloaded} while one runs on this store,
 * or {error, enomem | ...} when no thread starts. */
static ERL_NIF_TERM start(ErlNifEnv *env, store_res *r, ERL_NIF_TERM ref,
                          char *dest)
{
	pthread_attr_t attr;
	pthread_t tid;
	/* One job per store at a time: each reads the whole store, a
	 * thread apiece would let callers pile them up. */
	if (__atomic_exchange_n(&r->job_running, 1, __ATOMIC_ACQ_REL)) {
		free(dest);
		return nif_error_term(env, ESDB_EOVERLOADED);
	}
	job *j = calloc(1, sizeof(*j));
	int rc = ENOMEM;
	if (!j || !(j->env = enif_alloc_env()))
		goto fail;
	j->r = r;
	j->dest = dest;
	enif_self(env, &j->pid);
	j->ref = enif_make_copy(j->env, ref);
	enif_keep_resource(r);
	if ((rc = pthread_attr_init(&attr)))
		goto fail_kept;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, job_main, j);
	pthread_attr_destroy(&attr);
	if (rc)
		goto fail_kept;
	return enif_make_atom(env, "ok");
fail_kept:
	enif_release_resource(r);
fail:
	__atomic_store_n(&r->job_running, 0, __ATOMIC_RELEASE);
	if (j && j->env)
		enif_free_env(j->env);
	free(j);
	free(dest);
	return nif_error_term(env, rc);
}

ERL_NIF_TERM nif_verify(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	store_res *r;
	if (!enif_is_ref(env, argv[1]) || !nif_store_get(env, argv[0], &r))
		return enif_make_badarg(env);
	return start(env, r, argv[1], NULL);
}

ERL_NIF_TERM nif_backup(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	store_res *r;
	ErlNifBinary dest;
	if (!enif_is_ref(env, argv[1]) ||
	    !enif_inspect_binary(env, argv[2], &dest) || dest.size == 0 ||
	    dest.size > ESDB_PROTO_MAX_PATH ||
	    memchr(dest.data, 0, dest.size) || !nif_store_get(env, argv[0], &r))
		return enif_make_badarg(env);
	char *p = malloc(dest.size + 1);
	if (!p)
		return nif_error_term(env, ENOMEM);
	memcpy(p, dest.data, dest.size);
	p[dest.size] = 0;
	return start(env, r, argv[1], p);
}
