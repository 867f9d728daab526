/* handshake.c: accept, then one thread per handshake.
 *
 * ei_accept_tmo both accepts and handshakes. To run handshakes side by
 * side, the acceptor accepts itself and hands the socket to a thread,
 * whose ei_accept_tmo gets it through our accept callback instead of
 * calling accept(2). The other callbacks are ei's own TCP ones
 * (ei_default_socket_callbacks: libei exports it, ei.h does not declare
 * it); with them a connection's context is its descriptor. */
#include "handshake.h"

#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A handshake that takes longer is given up (a silent client). */
#define HANDSHAKE_MS 5000

extern ei_socket_callbacks ei_default_socket_callbacks;

static ei_socket_callbacks callbacks;
static __thread int handed_fd = -1;

/* ei's accept callback: the socket this thread was handed, not a new
 * one from the listening socket. */
static int accept_handed(void **ctx, void *addr, int *len, unsigned tmo)
{
	int fd = handed_fd;
	handed_fd = -1;
	if (fd < 0)
		return EBADF;
	socklen_t l = (socklen_t)*len;
	if (getpeername(fd, addr, &l) != 0)
		return errno;
	*len = (int)l;
	int one = 1; /* as ei's own accept: replies go out at once */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*ctx = (void *)(long)fd;
	return 0;
}

/* ei waits for the listening socket to be readable before it calls
 * accept; until accept has run, this thread's listening socket is the
 * handed one (the client speaks first in a handshake). */
static int get_fd_handed(void *ctx, int *fd)
{
	if (handed_fd >= 0) {
		*fd = handed_fd;
		return 0;
	}
	return ei_default_socket_callbacks.get_fd(ctx, fd);
}

ei_socket_callbacks *cn_handshake_callbacks(void)
{
	callbacks = ei_default_socket_callbacks;
	callbacks.EI_ACCEPT_NAME = accept_handed;
	callbacks.get_fd = get_fd_handed;
	return &callbacks;
}

typedef struct pending {
	cn_server *srv;
	int lfd, fd;
} pending;

static atomic_uint handshaking;

static void *handshake(void *arg)
{
	pending p = *(pending *)arg;
	free(arg);
	ErlConnect con;
	handed_fd = p.fd;
	/* A failure after accept closed the socket (ei's close callback);
	 * a client silent from the start never got that far. */
	int fd = ei_accept_tmo(&p.srv->ec, p.lfd, &con, HANDSHAKE_MS);
	if (handed_fd >= 0) {
		close(handed_fd);
		handed_fd = -1;
	}
	if (fd < 0) {
		/* A wrong cookie, a silent or dropped client: service goes
		 * on. */
		atomic_fetch_add(&p.srv->refused_handshakes, 1);
		cn_log("refused a connection (handshake failed: %s)",
		       strerror(erl_errno));
	} else if (atomic_load(&p.srv->conns) >= p.srv->max_conns) {
		cn_log("refused %s: %u connections already", con.nodename,
		       p.srv->max_conns);
		close(fd);
	} else if (cn_conn_start(p.srv, fd, con.nodename) != 0) {
		cn_log("cannot serve %s: no threads", con.nodename);
	}
	atomic_fetch_sub(&handshaking, 1);
	return NULL;
}

void cn_handshake_accept_loop(cn_server *srv, int lfd, unsigned max_pending)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				cn_log("accept: %s", strerror(errno));
			continue;
		}
		pending *p = malloc(sizeof(*p));
		pthread_t t;
		if (!p || atomic_fetch_add(&handshaking, 1) >= max_pending) {
			cn_log("refused a connection: %u handshakes under way",
			       max_pending);
			atomic_fetch_sub(&handshaking, 1);
			free(p);
			close(fd);
			continue;
		}
		*p = (pending){srv, lfd, fd};
		if (pthread_create(&t, NULL, handshake, p) != 0) {
			atomic_fetch_sub(&handshaking, 1);
			free(p);
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
}
