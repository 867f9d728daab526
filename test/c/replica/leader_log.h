/* leader_log.h: the leadership reports of a cluster's nodes (each node's
 * leader callback, with its term; cluster.h leader_report), collected
 * from the nodes' shared report pipe by a thread of the test. */
#ifndef ESDB_TEST_LEADER_LOG_H
#define ESDB_TEST_LEADER_LOG_H

#include "cluster.h"

typedef struct leader_log {
	int r; /* the pipe's read end; c->report_fd its write end */
	pthread_t reader;
	pthread_mutex_t lock;
	leader_report *reports; /* in the order they arrived */
	size_t n, cap;
} leader_log;

/* Before any node of c starts: the nodes report into the log. */
void leader_log_start(leader_log *l, cluster *c);
/* After every node stopped (cluster_check_and_free): the log holds every
 * report made. Keeps the reports (free them with leader_log_free). */
void leader_log_stop(leader_log *l, cluster *c);
void leader_log_free(leader_log *l);
/* The number of reports so far. */
size_t leader_log_count(leader_log *l);

#endif
