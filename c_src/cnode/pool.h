/* pool.h: a few threads running reads, so a long read never holds a
 * connection's reader (nor the store's writer) back. */
#ifndef ESDB_CNODE_POOL_H
#define ESDB_CNODE_POOL_H

typedef struct cn_pool cn_pool;
typedef void (*cn_job_fn)(void *arg);

/* Start n threads. Returns NULL when they cannot be started. */
cn_pool *cn_pool_start(unsigned n);

/* Queue fn(arg) for `owner` (a connection). Each owner's jobs run in
 * arrival order, owners take turns: a client with many reads queued
 * delays another's by at most one job of its own per turn. Never
 * blocks: callers bound how much they queue (each connection's requests
 * in flight). Returns 0, or -1 (no memory: not queued). */
int cn_pool_push(cn_pool *p, const void *owner, cn_job_fn fn, void *arg);

#endif
