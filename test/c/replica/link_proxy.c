/* link_proxy.c: a per-link TCP proxy between replica processes
 * (link_proxy.h). The proxy process runs a thread per listener, and per
 * connection one thread for each direction; a control pipe sets modes. */
#include "link_proxy.h"

#include "harness.h"
#include "spawn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* raft's TCP handshake: protocol version, then the sender's id (both
 * 64-bit little-endian), then its address. */
#define HANDSHAKE_HEAD 16

typedef struct proxy_cmd {
	char op; /* S set, C counts, Q quit */
	int from, to, mode;
} proxy_cmd;

typedef struct conn {
	struct conn *next;
	int down, up; /* from the sender; to the receiver (-1: dropping) */
	int from, to; /* node indexes; from -1: unknown sender */
	int refs;     /* threads still using it */
} conn;

static struct {
	int n;
	uint64_t ids[LINK_PROXY_MAX];
	struct sockaddr_in back[LINK_PROXY_MAX];
	int listen_fd[LINK_PROXY_MAX];
	atomic_int mode[LINK_PROXY_MAX][LINK_PROXY_MAX];
	pthread_mutex_t lock;
	conn *conns;
	atomic_uint_fast64_t accepted, dropped;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool parse_address(const char *s, struct sockaddr_in *a)
{
	char ip[32];
	unsigned port;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	return sscanf(s, "%31[^:]:%u", ip, &port) == 2 && port < 65536 &&
	       inet_pton(AF_INET, ip, &a->sin_addr) == 1 &&
	       (a->sin_port = htons((uint16_t)port), true);
}

/* Close at once (RST), waking the threads blocked on it. Under lock. */
static void conn_abort(conn *c)
{
	struct linger lg = {1, 0};
	int fds[2] = {c->down, c->up};
	for (int k = 0; k < 2; k++) {
		if (fds[k] < 0)
			continue;
		setsockopt(fds[k], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		shutdown(fds[k], SHUT_RDWR);
	}
}

/* One thread is done with c: stop the other; the last one frees it. */
static void conn_release(conn *c)
{
	pthread_mutex_lock(&P.lock);
	conn_abort(c);
	if (--c->refs == 0) {
		for (conn **pp = &P.conns; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		close(c->down);
		if (c->up >= 0)
			close(c->up);
		free(c);
	}
	pthread_mutex_unlock(&P.lock);
}

static int link_mode(conn *c)
{
	return c->from < 0 ? LINK_PASS : atomic_load(&P.mode[c->from][c->to]);
}

/* Copy src to dst while the link passes; drop what arrives otherwise. */
static void pump(conn *c, int src, int dst)
{
	char buf[65536];
	for (;;) {
		ssize_t k = read(src, buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (dst < 0 || link_mode(c) != LINK_PASS) {
			atomic_fetch_add(&P.dropped, (uint64_t)k);
			continue;
		}
		if (!fd_write_all(dst, buf, (size_t)k))
			break;
	}
	conn_release(c);
}

static void *pump_back(void *arg)
{
	conn *c = arg;
	pump(c, c->up, c->down);
	return NULL;
}

static void *conn_main(void *arg)
{
	conn *c = arg;
	uint8_t head[HANDSHAKE_HEAD];
	struct timeval tv = {5, 0};
	setsockopt(c->down, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	bool ok = fd_read_all(c->down, head, sizeof(head));
	tv.tv_sec = 0;
	setsockopt(c->down, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint64_t id = 0;
	for (int k = 7; k >= 0; k--)
		id = id << 8 | head[8 + k];
	c->from = -1;
	for (int i = 0; i < P.n; i++)
		if (P.ids[i] == id)
			c->from = i;
	int mode = ok ? link_mode(c) : LINK_RESET;
	if (mode == LINK_PASS) {
		c->up = socket(AF_INET, SOCK_STREAM, 0);
		ok = c->up >= 0 &&
		     connect(c->up, (struct sockaddr *)&P.back[c->to],
		             sizeof(P.back[c->to])) == 0 &&
		     fd_write_all(c->up, head, sizeof(head));
	}
	pthread_mutex_lock(&P.lock);
	/* a mode set meanwhile found no connection to close: check again */
	if (!ok || mode != link_mode(c) || mode == LINK_RESET) {
		conn_abort(c);
		pthread_mutex_unlock(&P.lock);
		close(c->down);
		if (c->up >= 0)
			close(c->up);
		free(c);
		return NULL;
	}
	c->refs = mode == LINK_PASS ? 2 : 1;
	c->next = P.conns;
	P.conns = c;
	pthread_mutex_unlock(&P.lock);
	pthread_t t;
	if (mode == LINK_PASS && pthread_create(&t, NULL, pump_back, c) == 0)
		pthread_detach(t);
	else if (mode == LINK_PASS)
		conn_release(c);
	pump(c, c->down, mode == LINK_PASS ? c->up : -1);
	return NULL;
}

static void *accept_main(void *arg)
{
	int to = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(P.listen_fd[to], NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			_exit(3);
		}
		atomic_fetch_add(&P.accepted, 1);
		conn *c = calloc(1, sizeof(*c));
		pthread_t t;
		if (!c) {
			close(fd);
			continue;
		}
		c->down = fd;
		c->up = -1;
		c->to = to;
		if (pthread_create(&t, NULL, conn_main, c)) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

static void set_mode(int from, int to, int mode)
{
	pthread_mutex_lock(&P.lock);
	int old = atomic_exchange(&P.mode[from][to], mode);
	for (conn *c = P.conns; old != mode && c; c = c->next)
		if (c->from == from && c->to == to)
			conn_abort(c);
	pthread_mutex_unlock(&P.lock);
}

static _Noreturn void proxy_main(int n, const uint64_t *ids, char (*front)[32],
                                 char (*back)[32], int cmd_fd, int reply_fd)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	P.n = n;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		struct sockaddr_in a;
		int one = 1;
		P.ids[i] = ids[i];
		if (!parse_address(back[i], &P.back[i]) ||
		    !parse_address(front[i], &a)) {
			rc = EINVAL;
			break;
		}
		P.listen_fd[i] = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(P.listen_fd[i], SOL_SOCKET, SO_REUSEADDR, &one,
		           sizeof(one));
		if (P.listen_fd[i] < 0 ||
		    bind(P.listen_fd[i], (struct sockaddr *)&a, sizeof(a)) ||
		    listen(P.listen_fd[i], 64)) {
			rc = errno;
			break;
		}
		pthread_t t;
		if ((rc = pthread_create(&t, NULL, accept_main,
		                         (void *)(intptr_t)i)))
			break;
		pthread_detach(t);
	}
	fd_write_all(reply_fd, &rc, sizeof(rc));
	if (rc)
		_exit(1);
	proxy_cmd cmd;
	while (fd_read_all(cmd_fd, &cmd, sizeof(cmd)) && cmd.op != 'Q') {
		uint64_t counts[2] = {0, 0};
		if (cmd.op == 'S' && cmd.from >= 0 && cmd.from < n &&
		    cmd.to >= 0 && cmd.to < n)
			set_mode(cmd.from, cmd.to, cmd.mode);
		counts[0] = atomic_load(&P.accepted);
		counts[1] = atomic_load(&P.dropped);
		fd_write_all(reply_fd, counts, sizeof(counts));
	}
	_exit(0);
}

/* What the proxy process is told first (link_proxy_start). */
typedef struct proxy_config {
	int n;
	uint64_t ids[LINK_PROXY_MAX];
	char front[LINK_PROXY_MAX][32], back[LINK_PROXY_MAX][32];
} proxy_config;

/* The proxy process: this binary exec'd by link_proxy_start (spawn.h),
 * holding none of the test's fds. Runs before main. */
__attribute__((constructor)) static void proxy_child(int argc, char **argv)
{
	int cmd_fd, reply_fd;
	if (!spawn_is_child(argc, argv, "link_proxy", &cmd_fd, &reply_fd))
		return;
	static proxy_config pc;
	if (!fd_read_all(cmd_fd, &pc, sizeof(pc)) || pc.n < 0 ||
	    pc.n > LINK_PROXY_MAX)
		_exit(96);
	proxy_main(pc.n, pc.ids, pc.front, pc.back, cmd_fd, reply_fd);
}

void link_proxy_start(link_proxy *p, int n, const uint64_t *ids,
                      char (*front)[32], char (*back)[32])
{
	int in, out;
	REQUIRE(n <= LINK_PROXY_MAX);
	proxy_config pc = {.n = n};
	memcpy(pc.ids, ids, (size_t)n * sizeof(uint64_t));
	memcpy(pc.front, front, (size_t)n * 32);
	memcpy(pc.back, back, (size_t)n * 32);
	pid_t pid = spawn_child("link_proxy", NULL, 0, &in, &out);
	REQUIRE(fd_write_all(out, &pc, sizeof(pc)));
	p->pid = pid;
	p->cmd_fd = out;
	p->reply_fd = in;
	p->n = n;
	int rc = -1;
	REQUIRE(fd_read_all(p->reply_fd, &rc, sizeof(rc)));
	CHECK_EQ(rc, 0);
	REQUIRE(rc == 0);
}

static void proxy_call(link_proxy *p, proxy_cmd *cmd, uint64_t counts[2])
{
	REQUIRE(fd_write_all(p->cmd_fd, cmd, sizeof(*cmd)));
	REQUIRE(fd_read_all(p->reply_fd, counts, 2 * sizeof(uint64_t)));
}

void link_proxy_set(link_proxy *p, int from, int to, int mode)
{
	proxy_cmd cmd = {.op = 'S', .from = from, .to = to, .mode = mode};
	uint64_t counts[2];
	proxy_call(p, &cmd, counts);
}

void link_proxy_set_both(link_proxy *p, int a, int b, int mode)
{
	link_proxy_set(p, a, b, mode);
	link_proxy_set(p, b, a, mode);
}

void link_proxy_heal(link_proxy *p)
{
	for (int a = 0; a < p->n; a++)
		for (int b = 0; b < p->n; b++)
			if (a != b)
				link_proxy_set(p, a, b, LINK_PASS);
}

void link_proxy_counts(link_proxy *p, uint64_t *accepted, uint64_t *dropped)
{
	proxy_cmd cmd = {.op = 'C'};
	uint64_t counts[2];
	proxy_call(p, &cmd, counts);
	*accepted = counts[0];
	*dropped = counts[1];
}

void link_proxy_stop(link_proxy *p)
{
	proxy_cmd cmd = {.op = 'Q'};
	int status;
	fd_write_all(p->cmd_fd, &cmd, sizeof(cmd));
	close(p->cmd_fd);
	close(p->reply_fd);
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	p->pid = 0;
}
