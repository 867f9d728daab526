/* pool.c: jobs queued per owner, owners served round-robin by the pool's
 * threads. The pool lives as long as the process. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct job {
	cn_job_fn fn;
	void *arg;
	struct job *next;
} job;

/* One owner's pending jobs; on the ring while it has any. */
typedef struct lane {
	const void *owner;
	job *head, *tail;
	struct lane *next;
} lane;

struct cn_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	lane *head, *tail; /* the ring, as a queue of lanes */
};

static void *worker(void *arg)
{
	cn_pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->head)
			pthread_cond_wait(&p->cv, &p->mu);
		lane *l = p->head;
		p->head = l->next;
		if (!p->head)
			p->tail = NULL;
		job *j = l->head;
		l->head = j->next;
		if (l->head) { /* its next job waits for the others' turns */
			l->next = NULL;
			if (p->tail)
				p->tail->next = l;
			else
				p->head = l;
			p->tail = l;
		} else {
			free(l);
		}
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

int cn_pool_push(cn_pool *p, const void *owner, cn_job_fn fn, void *arg)
{
	job *j = malloc(sizeof(*j));
	if (!j)
		return -1;
	*j = (job){fn, arg, NULL};
	pthread_mutex_lock(&p->mu);
	lane *l = p->head;
	while (l && l->owner != owner)
		l = l->next;
	if (!l) {
		if (!(l = calloc(1, sizeof(*l)))) {
			pthread_mutex_unlock(&p->mu);
			free(j);
			return -1;
		}
		l->owner = owner;
		if (p->tail)
			p->tail->next = l;
		else
			p->head = l;
		p->tail = l;
	}
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}
