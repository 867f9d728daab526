/* pool.c: a FIFO of jobs and the threads that run them. The pool lives as
 * long as the process. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct job {
	cn_job_fn fn;
	void *arg;
	struct job *next;
} job;

struct cn_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	job *head, *tail;
};

static void *worker(void *arg)
{
	cn_pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->head)
			pthread_cond_wait(&p->cv, &p->mu);
		job *j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->mu);
		j->fn(j->arg);
		free(j);
	}
	return NULL;
}

cn_pool *cn_pool_start(unsigned n)
{
	cn_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (unsigned i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker, p) != 0)
			return i ? p : NULL;
		pthread_detach(t);
	}
	return p;
}

int cn_pool_push(cn_pool *p, cn_job_fn fn, void *arg)
{
	job *j = malloc(sizeof(*j));
	if (!j)
		return -1;
	*j = (job){fn, arg, NULL};
	pthread_mutex_lock(&p->mu);
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}
