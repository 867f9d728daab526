/* conn.c: a connection's reader and writer threads and its send queue.
 *
 * ei's own receive reallocates to whatever length a frame claims, so the
 * reader reads frames itself: the 4-byte length first, checked against
 * the server's cap, then the frame, whose terms request.c checks before
 * ei decodes them. The connection lives until its last reference goes:
 * the reader's, the writer's and one per request in flight. */
#include "conn.h"

#include "copies.h"
#include "request.h"
#include "sessions.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* A reply the peer does not take within this is its death. */
#define SEND_TIMEOUT_MS 30000
/* a frame header: length, pass-through, version, {SEND, '', To} (a pid
 * with a node name of up to 255 characters of up to 4 bytes) */
#define FRAME_HDR_MAX 1200

typedef struct outmsg {
	erlang_pid to;
	char *buf; /* NULL: a tick (4 zero bytes) */
	size_t len;
	size_t sent; /* bytes of its frame (header and buf) written */
	struct outmsg *next;
} outmsg;

struct cn_conn {
	cn_server *srv;
	int fd;
	char peer[MAXNODELEN + 1];
	bool hello;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* queue changed, a request ended, or dead */
	outmsg *head, *tail;
	uint64_t queued_bytes;
	unsigned inflight;
	bool dead;
	bool sending; /* a message is being written (writer or send_now) */
	unsigned refs;
};

static void conn_unref(cn_conn *c)
{
	pthread_mutex_lock(&c->mu);
	bool last = --c->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (!last)
		return;
	while (c->head) {
		outmsg *m = c->head;
		c->head = m->next;
		free(m->buf);
		free(m);
	}
	close(c->fd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	atomic_fetch_sub(&c->srv->conns, 1);
	free(c);
}

/* Stop serving: the writer stops, queued and later replies are dropped,
 * and the peer sees the connection close. */
static void conn_kill(cn_conn *c)
{
	pthread_mutex_lock(&c->mu);
	if (!c->dead) {
		c->dead = true;
		shutdown(c->fd, SHUT_RDWR);
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

const char *cn_conn_peer(const cn_conn *c)
{
	return c->peer;
}

bool cn_conn_hello_done(const cn_conn *c)
{
	return c->hello;
}

void cn_conn_set_hello(cn_conn *c)
{
	c->hello = true;
}

void cn_conn_request_begin(cn_conn *c)
{
	pthread_mutex_lock(&c->mu);
	c->refs++;
	c->inflight++;
	pthread_mutex_unlock(&c->mu);
}

/* Queue m; false when the connection is dead (m not taken). */
static bool enqueue(cn_conn *c, outmsg *m, bool ends_request)
{
	pthread_mutex_lock(&c->mu);
	bool alive = !c->dead;
	if (alive) {
		if (c->tail)
			c->tail->next = m;
		else
			c->head = m;
		c->tail = m;
		c->queued_bytes += m->len;
	}
	if (ends_request)
		c->inflight--;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return alive;
}

static void send_msg(cn_conn *c, const erlang_pid *to, ei_x_buff *x,
                     bool ends_request)
{
	outmsg *m = malloc(sizeof(*m));
	if (m) {
		*m = (outmsg){
		    .to = *to, .buf = x->buff, .len = (size_t)x->index};
		x->buff = NULL;
		if (!enqueue(c, m, ends_request)) {
			free(m->buf);
			free(m);
		}
	} else {
		/* No memory for the reply: the caller would wait forever,
		 * so the connection goes (its node sees nodedown). */
		cn_log("%s: no memory for a reply; closing", c->peer);
		conn_kill(c);
		if (ends_request) {
			pthread_mutex_lock(&c->mu);
			c->inflight--;
			pthread_mutex_unlock(&c->mu);
		}
	}
	ei_x_free(x);
}

/* A message's frame header, as ei_send_tmo writes it: the length,
 * pass-through, then the control message {SEND, Cookie, To} (the cookie
 * ei sends on an accepted connection is ''; the BEAM ignores it). Its
 * length, or -1. */
static int frame_header(const erlang_pid *to, size_t msglen,
                        char hdr[FRAME_HDR_MAX])
{
	int i = 5;
	if (ei_encode_version(hdr, &i) || ei_encode_tuple_header(hdr, &i, 3) ||
	    ei_encode_long(hdr, &i, ERL_SEND) || ei_encode_atom(hdr, &i, "") ||
	    ei_encode_pid(hdr, &i, (erlang_pid *)to))
		return -1;
	uint32_t n = (uint32_t)((size_t)i - 4 + msglen);
	hdr[0] = (char)(n >> 24);
	hdr[1] = (char)(n >> 16);
	hdr[2] = (char)(n >> 8);
	hdr[3] = (char)n;
	hdr[4] = ERL_PASS_THROUGH;
	return i;
}

/* Write what is left of m's frame (a tick: 4 zero bytes) from byte
 * m->sent on, in one sendmsg a turn (ei_send_tmo with a timeout makes
 * six system calls a message: fcntl around a select and a writev).
 * wait: when the socket is full, wait for room up to SEND_TIMEOUT_MS;
 * otherwise stop there. 1 (all written), 0 (stopped at a full socket;
 * m->sent: how far it got) or -1 (the socket failed, or had no room in
 * time). */
static int write_frame(int fd, outmsg *m, bool wait)
{
	/* left uninitialised: a hot path, and only a tick's 4 bytes are
	 * not written by frame_header */
	char hdr[FRAME_HDR_MAX];
	int hl = 4;
	if (m->buf)
		hl = frame_header(&m->to, m->len, hdr);
	else
		memset(hdr, 0, 4);
	if (hl < 0)
		return -1;
	size_t total = (size_t)hl + (m->buf ? m->len : 0);
	while (m->sent < total) {
		struct iovec v[2];
		int n = 0;
		if (m->sent < (size_t)hl)
			v[n++] =
			    (struct iovec){hdr + m->sent, (size_t)hl - m->sent};
		if (m->buf) {
			size_t at = m->sent > (size_t)hl ? m->sent - hl : 0;
			v[n++] = (struct iovec){m->buf + at, m->len - at};
		}
		struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			m->sent += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return -1;
		if (!wait)
			return 0;
		struct pollfd pf = {fd, POLLOUT, 0};
		int pr = poll(&pf, 1, SEND_TIMEOUT_MS);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return -1;
	}
	return 1;
}

/* A reply written by the thread that made it when nothing is queued or
 * being written ahead of it, as far as the socket takes it without
 * waiting; the rest, if any, goes to the head of the queue for the
 * writer. Without the writer's wake-up, which cost 0.4-1.7 ms a read
 * page on the loaded test machine (docs/PERFORMANCE.md). False: not
 * its turn, queue it. ends_request: a reply (not a part of one). */
static bool send_now(cn_conn *c, const erlang_pid *to, ei_x_buff *x,
                     bool ends_request)
{
	pthread_mutex_lock(&c->mu);
	bool mine = !c->dead && !c->head && !c->sending;
	if (mine)
		c->sending = true;
	pthread_mutex_unlock(&c->mu);
	if (!mine)
		return false;
	outmsg now = {.to = *to, .buf = x->buff, .len = (size_t)x->index};
	int rc = write_frame(c->fd, &now, false);
	outmsg *rest = NULL;
	if (rc == 0) {
		/* the socket is full: the writer writes the rest */
		rest = malloc(sizeof(*rest));
		if (rest) {
			*rest = now;
			x->buff = NULL;
		} else {
			rc = -1;
		}
	}
	pthread_mutex_lock(&c->mu);
	if (rest && !c->dead) {
		rest->next = c->head;
		c->head = rest;
		if (!c->tail)
			c->tail = rest;
		c->queued_bytes += rest->len;
		rest = NULL;
	}
	c->sending = false;
	if (ends_request)
		c->inflight--;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (rest) { /* dead meanwhile */
		free(rest->buf);
		free(rest);
	}
	if (rc < 0) {
		cn_log("%s: send failed; closing", c->peer);
		conn_kill(c);
	}
	ei_x_free(x);
	return true;
}

void cn_conn_reply(cn_conn *c, const erlang_pid *to, ei_x_buff *x)
{
	if (!send_now(c, to, x, true))
		send_msg(c, to, x, true);
	conn_unref(c);
}

void cn_conn_reply_part(cn_conn *c, const erlang_pid *to, ei_x_buff *x)
{
	if (!send_now(c, to, x, false))
		send_msg(c, to, x, false);
}

void cn_conn_request_end(cn_conn *c)
{
	pthread_mutex_lock(&c->mu);
	c->inflight--;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	conn_unref(c);
}

void cn_conn_hold(cn_conn *c)
{
	pthread_mutex_lock(&c->mu);
	c->refs++;
	pthread_mutex_unlock(&c->mu);
}

void cn_conn_release(cn_conn *c)
{
	conn_unref(c);
}

bool cn_conn_push(cn_conn *c, const erlang_pid *to, ei_x_buff *x, bool bounded)
{
	outmsg *m = malloc(sizeof(*m));
	bool queued = false;
	if (m) {
		*m = (outmsg){
		    .to = *to, .buf = x->buff, .len = (size_t)x->index};
		pthread_mutex_lock(&c->mu);
		if (!c->dead && (!bounded || c->queued_bytes + m->len <=
		                                 c->srv->max_queue_bytes)) {
			if (c->tail)
				c->tail->next = m;
			else
				c->head = m;
			c->tail = m;
			c->queued_bytes += m->len;
			queued = true;
			pthread_cond_broadcast(&c->cv);
		}
		pthread_mutex_unlock(&c->mu);
		if (queued)
			x->buff = NULL;
		else
			free(m);
	}
	ei_x_free(x);
	return queued;
}

/* ---- writer ------------------------------------------------------------ */

static void *writer(void *arg)
{
	cn_conn *c = arg;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		while ((!c->head || c->sending) && !c->dead)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->dead) {
			pthread_mutex_unlock(&c->mu);
			break;
		}
		outmsg *m = c->head;
		c->head = m->next;
		if (!c->head)
			c->tail = NULL;
		c->sending = true;
		pthread_mutex_unlock(&c->mu);
		int rc = write_frame(c->fd, m, true) == 1 ? 0 : -1;
		pthread_mutex_lock(&c->mu);
		c->queued_bytes -= m->len;
		c->sending = false;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
		free(m->buf);
		free(m);
		if (rc < 0) {
			cn_log("%s: send failed; closing", c->peer);
			conn_kill(c);
			break;
		}
	}
	conn_unref(c);
	return NULL;
}

/* ---- reader ------------------------------------------------------------ */

/* Read exactly len bytes; -1 on EOF, error or idle limit. */
static int read_all(cn_conn *c, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		struct pollfd pf = {c->fd, POLLIN, 0};
		int pr = poll(&pf, 1, (int)c->srv->idle_ms);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			cn_log("%s: idle for %u ms; closing", c->peer,
			       c->srv->idle_ms);
			return -1;
		}
		if (pr < 0)
			return -1;
		ssize_t r = recv(c->fd, p, len, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* Wait until the connection may take another request: fewer than
 * max_inflight unanswered and its queue under its bound. False once
 * dead. */
static bool wait_for_room(cn_conn *c)
{
	pthread_mutex_lock(&c->mu);
	while (!c->dead && (c->inflight >= c->srv->max_inflight ||
	                    c->queued_bytes > c->srv->max_queue_bytes))
		pthread_cond_wait(&c->cv, &c->mu);
	bool alive = !c->dead;
	pthread_mutex_unlock(&c->mu);
	return alive;
}

static void *reader(void *arg)
{
	cn_conn *c = arg;
	while (wait_for_room(c)) {
		uint8_t hdr[4];
		if (read_all(c, hdr, 4) != 0)
			break;
		uint64_t len = (uint64_t)hdr[0] << 24 | (uint64_t)hdr[1] << 16 |
		               (uint64_t)hdr[2] << 8 | hdr[3];
		if (len == 0) { /* a tick: answer it */
			outmsg *m = calloc(1, sizeof(*m));
			if (m && !enqueue(c, m, false))
				free(m);
			continue;
		}
		if (len > c->srv->frame_cap) {
			cn_log("%s: frame of %llu bytes over the cap of %llu; "
			       "closing",
			       c->peer, (unsigned long long)len,
			       (unsigned long long)c->srv->frame_cap);
			atomic_fetch_add(&c->srv->closed_frames, 1);
			break;
		}
		uint8_t *buf = malloc(len);
		if (!buf) {
			cn_log("%s: no memory for a frame of %llu bytes; "
			       "closing",
			       c->peer, (unsigned long long)len);
			break;
		}
		bool ok = read_all(c, buf, len) == 0;
		if (ok && !cn_request_frame(c->srv, c, buf, len)) {
			cn_log("%s: malformed distribution frame; closing",
			       c->peer);
			atomic_fetch_add(&c->srv->closed_frames, 1);
			ok = false;
		}
		free(buf);
		if (!ok)
			break;
	}
	conn_kill(c);
	/* its sessions end with it: their members leave the emitter */
	cn_sessions_conn_closed(c->srv, c);
	cn_copy_conn_closed(c); /* and the store copies it pulled */
	conn_unref(c);
	return NULL;
}

int cn_conn_start(cn_server *srv, int fd, const char *peer)
{
	cn_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -1;
	}
	c->srv = srv;
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->refs = 2; /* reader and writer */
	atomic_fetch_add(&srv->conns, 1);
	pthread_t r, w;
	if (pthread_create(&w, NULL, writer, c) != 0) {
		c->refs = 1;
		conn_unref(c);
		return -1;
	}
	pthread_detach(w);
	if (pthread_create(&r, NULL, reader, c) != 0) {
		conn_kill(c);
		conn_unref(c);
		return -1;
	}
	pthread_detach(r);
	return 0;
}
