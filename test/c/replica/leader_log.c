/* leader_log.c: see leader_log.h. */
#include "leader_log.h"

#include <errno.h>
#include <unistd.h>

static void *report_reader(void *arg)
{
	leader_log *l = arg;
	leader_report rep;
	for (;;) {
		ssize_t k = read(l->r, &rep, sizeof(rep));
		if (k < 0 && errno == EINTR)
			continue;
		if (k != (ssize_t)sizeof(rep)) /* written whole (atomic) */
			break;
		pthread_mutex_lock(&l->lock);
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 64;
			l->reports =
			    realloc(l->reports, l->cap * sizeof(*l->reports));
		}
		l->reports[l->n++] = rep;
		pthread_mutex_unlock(&l->lock);
	}
	return NULL;
}

void leader_log_start(leader_log *l, cluster *c)
{
	memset(l, 0, sizeof(*l));
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	l->r = fds[0];
	c->report_fd = fds[1];
	pthread_mutex_init(&l->lock, NULL);
	REQUIRE(pthread_create(&l->reader, NULL, report_reader, l) == 0);
}

void leader_log_stop(leader_log *l, cluster *c)
{
	close(c->report_fd); /* the reader sees the end once no node holds it */
	c->report_fd = -1;
	pthread_join(l->reader, NULL);
	close(l->r);
}

void leader_log_free(leader_log *l)
{
	free(l->reports);
	l->reports = NULL;
	l->n = l->cap = 0;
	pthread_mutex_destroy(&l->lock);
}

size_t leader_log_count(leader_log *l)
{
	pthread_mutex_lock(&l->lock);
	size_t n = l->n;
	pthread_mutex_unlock(&l->lock);
	return n;
}
