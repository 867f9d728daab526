/* raft3.c: raft alone as N processes on loopback (raft3.h). */
#include "raft3.h"

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_VOTERS         7
#define EXIT_START_REFUSED 8 /* raft_start failed */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Counted across the nodes, in memory shared with the parent. */
typedef struct shared_counts {
	atomic_ulong snapshots, restores;
	atomic_uint leader;   /* the node driving the load */
	atomic_ulong leaders; /* loads started: 1 + leader changes */
} shared_counts;
static shared_counts *g_counts;

/* ---- one node (a child process) ----------------------------------------- */

typedef struct node {
	const raft3_opts *o;
	unsigned id;
	int result_fd;
	uv_loop_t loop;
	uv_timer_t tick;
	struct raft_uv_transport transport;
	struct raft_io io;
	struct raft_fsm fsm;
	struct raft raft;
	uint64_t applied; /* the FSM's whole state */
	/* The load, while this node leads. */
	bool loading, measuring, stopping;
	unsigned outstanding;
	double start, measure_from, measure_until;
	unsigned long entries;
	double *lat;
	size_t nlat, caplat;
} node;

typedef struct proposal {
	struct raft_apply req;
	node *n;
	double at;
} proposal;

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
	node *n = fsm->data;
	(void)buf;
	n->applied++;
	*result = NULL;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
	node *n = fsm->data;
	struct raft_buffer *b = raft_malloc(sizeof *b);
	if (b == NULL)
		return RAFT_NOMEM;
	/* Padded to snapshot_bytes: a bigger snapshot takes longer to write. */
	b->len = n->o->snapshot_bytes > sizeof n->applied ? n->o->snapshot_bytes
	                                                  : sizeof n->applied;
	b->base = raft_calloc(1, b->len);
	if (b->base == NULL) {
		raft_free(b);
		return RAFT_NOMEM;
	}
	memcpy(b->base, &n->applied, sizeof n->applied);
	*bufs = b;
	*n_bufs = 1;
	atomic_fetch_add(&g_counts->snapshots, 1);
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	node *n = fsm->data;
	if (buf->len < sizeof n->applied)
		return RAFT_MALFORMED;
	memcpy(&n->applied, buf->base, sizeof n->applied);
	raft_free(buf->base);
	atomic_fetch_add(&g_counts->restores, 1);
	return 0;
}

static void die(node *n, const char *what, int rv)
{
	fprintf(stderr, "raft3 node %u: %s: %s (%s)\n", n->id, what,
	        raft_strerror(rv), raft_errmsg(&n->raft));
	_exit(3);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct_us(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i] * 1e6;
}

/* The leader's load is done: send the result and leave. */
static void finish(node *n)
{
	raft3_result res = {0};
	qsort(n->lat, n->nlat, sizeof *n->lat, cmp_double);
	res.entries = n->entries;
	res.seconds = n->measure_until - n->measure_from;
	res.p50_us = pct_us(n->lat, n->nlat, 0.50);
	res.p99_us = pct_us(n->lat, n->nlat, 0.99);
	res.leader_id = n->id;
	if (write(n->result_fd, &res, sizeof res) != (ssize_t)sizeof res)
		_exit(4);
	_exit(0);
}

static void propose(node *n);

static void applied_cb(struct raft_apply *req, int status, void *result)
{
	proposal *p = (proposal *)req;
	node *n = p->n;
	double t = now_s();
	(void)result;
	n->outstanding--;
	if (status != 0) {
		/* Leadership lost: this node stops; the next leader loads. */
		n->stopping = true;
	} else if (n->measuring && t < n->measure_until) {
		if (n->nlat == n->caplat) {
			n->caplat = n->caplat ? n->caplat * 2 : 65536;
			n->lat = realloc(n->lat, n->caplat * sizeof *n->lat);
			if (n->lat == NULL)
				_exit(5);
		}
		n->lat[n->nlat++] = t - p->at;
		n->entries++;
	}
	free(p);
	if (n->measuring && t >= n->measure_until)
		n->stopping = true;
	if (!n->stopping) {
		propose(n);
		return;
	}
	if (n->outstanding > 0)
		return;
	if (n->measuring && t >= n->measure_until)
		finish(n);
	n->loading = n->measuring = n->stopping = false;
}

static void propose(node *n)
{
	proposal *p = malloc(sizeof *p);
	struct raft_buffer buf;
	if (p == NULL)
		_exit(5);
	buf.len = n->o->entry_bytes;
	buf.base = raft_malloc(buf.len);
	if (buf.base == NULL)
		_exit(5);
	memset(buf.base, 'e', buf.len);
	p->n = n;
	p->at = now_s();
	int rv = raft_apply(&n->raft, &p->req, &buf, 1, applied_cb);
	if (rv != 0) {
		/* Not leader any more (or shutting down): stop this load. */
		raft_free(buf.base);
		free(p);
		n->stopping = true;
		if (n->outstanding == 0)
			n->loading = n->measuring = n->stopping = false;
		return;
	}
	n->outstanding++;
}

static void tick_cb(uv_timer_t *t)
{
	node *n = t->data;
	double now = now_s();
	if (!n->loading && raft_state(&n->raft) == RAFT_LEADER) {
		n->loading = true;
		atomic_store(&g_counts->leader, n->id);
		atomic_fetch_add(&g_counts->leaders, 1);
		n->start = now;
		n->measure_from = now + n->o->warmup_seconds;
		n->measure_until = n->measure_from + n->o->seconds;
		n->nlat = 0;
		n->entries = 0;
		for (unsigned i = 0; i < n->o->inflight && !n->stopping; i++)
			propose(n);
	}
	if (n->loading && !n->measuring && now >= n->measure_from)
		n->measuring = true;
}

static void address(char *buf, size_t cap, int port)
{
	snprintf(buf, cap, "127.0.0.1:%d", port);
}

static void node_main(const raft3_opts *o, unsigned id, int base_port,
                      int result_fd)
{
	static node nd; /* lives until _exit */
	node *n = &nd;
	char dir[4096], addr[64];
	unsigned seed;
	int rv;

	signal(SIGPIPE, SIG_IGN); /* a dead peer must not kill this node */
	n->o = o;
	n->id = id;
	n->result_fd = result_fd;
	snprintf(dir, sizeof dir, "%s/node%u", o->dir, id);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		_exit(6);
	address(addr, sizeof addr, base_port + (int)id);

	if (uv_loop_init(&n->loop) != 0)
		_exit(6);
	n->transport.version = 1;
	if ((rv = raft_uv_tcp_init(&n->transport, &n->loop)) != 0)
		die(n, "raft_uv_tcp_init", rv);
	if ((rv = raft_uv_init(&n->io, &n->loop, dir, &n->transport)) != 0)
		die(n, "raft_uv_init", rv);
	/* A corrupt segment stops the node instead of dropping entries. */
	raft_uv_set_auto_recovery(&n->io, false);
	n->fsm = (struct raft_fsm){.version = 1,
	                           .data = n,
	                           .apply = fsm_apply,
	                           .snapshot = fsm_snapshot,
	                           .restore = fsm_restore};
	if ((rv = raft_init(&n->raft, &n->io, &n->fsm, id, addr)) != 0)
		die(n, "raft_init", rv);
	/* raft seeds from the clock before it knows its id: nodes started in
	 * the same millisecond would draw the same election timeouts. */
	if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
		seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	raft_seed(&n->raft, seed ^ id);
	raft_set_pre_vote(&n->raft, true);
	raft_set_snapshot_threshold(&n->raft, o->snapshot_threshold);
	raft_set_snapshot_trailing(&n->raft, o->snapshot_trailing);
	if (o->max_inflight_entries)
		raft_set_max_inflight_entries(&n->raft,
		                              o->max_inflight_entries);

	struct raft_configuration conf;
	raft_configuration_init(&conf);
	for (unsigned i = 1; i <= o->voters; i++) {
		address(addr, sizeof addr, base_port + (int)i);
		if ((rv = raft_configuration_add(&conf, i, addr, RAFT_VOTER)) !=
		    0)
			die(n, "raft_configuration_add", rv);
	}
	/* A restarted node has its log: bootstrapping again is refused. */
	rv = raft_bootstrap(&n->raft, &conf);
	if (rv != 0 && rv != RAFT_CANTBOOTSTRAP)
		die(n, "raft_bootstrap", rv);
	raft_configuration_close(&conf);
	if ((rv = raft_start(&n->raft)) != 0) {
		fprintf(stderr, "raft3 node %u: raft_start: %s (%s)\n", n->id,
		        raft_strerror(rv), raft_errmsg(&n->raft));
		_exit(EXIT_START_REFUSED);
	}

	uv_timer_init(&n->loop, &n->tick);
	n->tick.data = n;
	uv_timer_start(&n->tick, tick_cb, 1, 1);
	uv_run(&n->loop, UV_RUN_DEFAULT);
	_exit(7);
}

/* ---- the parent -----------------------------------------------------------
 */

/* A base port whose next `voters` ports are free now (a race with other
 * programs remains; a node that cannot listen fails the run loudly). */
static int pick_ports(unsigned voters)
{
	unsigned r;
	for (int tries = 0; tries < 50; tries++) {
		if (getrandom(&r, sizeof r, 0) != sizeof r)
			r = (unsigned)getpid() * 7919u + (unsigned)tries;
		int base = 20000 + (int)(r % 30000u);
		bool ok = true;
		for (unsigned i = 1; i <= voters && ok; i++) {
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			struct sockaddr_in sa = {
			    .sin_family = AF_INET,
			    .sin_port = htons((uint16_t)(base + (int)i)),
			    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
			ok = fd >= 0 &&
			     bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
			if (fd >= 0)
				close(fd);
		}
		if (ok)
			return base;
	}
	return -1;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void describe(char *err, size_t cap, unsigned id, int status)
{
	if (WIFSIGNALED(status))
		snprintf(err, cap, "node %u died of signal %d (%s)", id,
		         WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(err, cap, "node %u exited with status %d", id,
		         WEXITSTATUS(status));
}

int raft3_run(const raft3_opts *o, raft3_result *res, char *err, size_t cap)
{
	pid_t pids[MAX_VOTERS + 1] = {0};
	int fds[2], rc = -1;
	unsigned down = 0; /* the node killed and not yet started again */
	unsigned long restarts = 0, refused = 0;
	bool restarted[MAX_VOTERS + 1] = {false};
	char dir[4096];
	raft3_opts oo = *o;

	err[0] = '\0';
	if (o->voters < 1 || o->voters > MAX_VOTERS || o->entry_bytes % 8) {
		snprintf(err, cap, "bad options");
		return -1;
	}
	snprintf(dir, sizeof dir, "%s/raft3.%ld", o->dir, (long)getpid());
	if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, cap, "mkdir %s: %s", o->dir, strerror(errno));
		return -1;
	}
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(dir, 0700) != 0) {
		snprintf(err, cap, "mkdir %s: %s", dir, strerror(errno));
		return -1;
	}
	oo.dir = dir;
	if (g_counts == NULL) {
		g_counts = mmap(NULL, sizeof *g_counts, PROT_READ | PROT_WRITE,
		                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (g_counts == MAP_FAILED) {
			g_counts = NULL;
			snprintf(err, cap, "mmap: %s", strerror(errno));
			return -1;
		}
	}
	atomic_store(&g_counts->snapshots, 0);
	atomic_store(&g_counts->restores, 0);
	atomic_store(&g_counts->leader, 0);
	atomic_store(&g_counts->leaders, 0);
	int base = pick_ports(o->voters);
	if (base < 0) {
		snprintf(err, cap, "no free loopback ports");
		return -1;
	}
	if (pipe2(fds, O_CLOEXEC) != 0) {
		snprintf(err, cap, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	for (unsigned i = 1; i <= o->voters; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(fds[0]);
			node_main(&oo, i, base, fds[1]);
		}
		if (pids[i] < 0) {
			snprintf(err, cap, "fork: %s", strerror(errno));
			goto stop;
		}
	}
	double started = now_s(), deadline = started + o->timeout_seconds;
	double next_kill = now_s() + o->restart_every_ms / 1e3, up_at = 0;
	unsigned r = (unsigned)getpid();
	for (;;) {
		double t = now_s();
		if (down && t >= up_at) {
			pids[down] = fork();
			if (pids[down] == 0) {
				close(fds[0]);
				node_main(&oo, down, base, fds[1]);
			}
			if (pids[down] < 0) {
				snprintf(err, cap, "fork: %s", strerror(errno));
				goto stop;
			}
			restarted[down] = true;
			down = 0;
			restarts++;
		}
		unsigned leader = atomic_load(&g_counts->leader);
		if (o->restart_every_ms && !down && !refused && leader &&
		    t >= next_kill) {
			r = r * 1103515245u + 12345u;
			unsigned i = 1 + (r >> 16) % (o->voters - 1);
			i += i >= leader; /* any node but the leader */
			if (i <= o->voters && pids[i] > 0) {
				kill(pids[i], SIGKILL);
				waitpid(pids[i], NULL, 0);
				pids[i] = 0;
				down = i;
				up_at = t + o->down_ms / 1e3;
			}
			next_kill = t + o->restart_every_ms / 1e3;
		}
		/* A node that ended before the leader's result is a failure. */
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);
		if (p > 0) {
			for (unsigned i = 1; i <= o->voters; i++)
				if (pids[i] == p) {
					pids[i] = 0;
					if (restarted[i] && WIFEXITED(status) &&
					    WEXITSTATUS(status) ==
					        EXIT_START_REFUSED) {
						/* raft refused the data a kill
						 * left (raft3.h): counted; no
						 * more restarts this run. */
						refused++;
						continue;
					}
					/* The leader exits 0 right after
					 * writing. */
					if (!(WIFEXITED(status) &&
					      WEXITSTATUS(status) == 0))
						describe(err, cap, i, status);
				}
			if (err[0])
				goto stop;
		}
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		int pr = poll(&pfd, 1, 5);
		if (pr > 0) {
			ssize_t got = read(fds[0], res, sizeof *res);
			if (got == (ssize_t)sizeof *res) {
				rc = 0;
				break;
			}
			snprintf(err, cap, "every node ended without a result");
			goto stop;
		}
		if (o->wall_seconds && now_s() >= started + o->wall_seconds) {
			memset(res, 0, sizeof *res);
			rc = 0;
			break;
		}
		if (now_s() > deadline) {
			snprintf(err, cap, "no result within %.0f s",
			         o->timeout_seconds);
			goto stop;
		}
	}
	/* The followers must still be alive after the load. */
	for (unsigned i = 1; i <= o->voters; i++) {
		int status;
		if (pids[i] == 0 || i == res->leader_id || i == down)
			continue;
		if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
			pids[i] = 0;
			describe(err, cap, i, status);
			rc = -1;
		}
	}
stop:
	for (unsigned i = 1; i <= o->voters; i++)
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	res->restarts = restarts;
	res->refused_starts = refused;
	res->leaders = atomic_load(&g_counts->leaders);
	res->snapshots = atomic_load(&g_counts->snapshots);
	res->restores = atomic_load(&g_counts->restores);
	close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
