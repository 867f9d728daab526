/* copy_pull.c: a replica's puller of store copies (copies.h). One thread
 * per C node replica: it asks the replica every PERIOD_MS whether raft's
 * marker snapshot passed the store and, when it did, pulls a copy from
 * the member C node that applied most, as a client of that C node (ei
 * connect, hello, cluster_info, copy_open, copy_read in pieces,
 * copy_close: the requests every client makes, checked there as any).
 * The copy goes to an unlinked file beside the store (nothing left behind
 * by a failed or killed pull), is checked against the size and CRC-32C
 * the source announced, then restored under the open store
 * (esdb_store_restore; the store checks it is a store of this format,
 * and the replica takes it only while it waits for one). Raft's loop is
 * never involved: it goes on, and the writer resumes from the copy.
 * Replies are read here, size-capped and checked by term_check.c before
 * ei decodes them, as requests are on the serving side. */
#include "copies.h"

#include "cluster.h"
#include "crc32c.h"
#include "term_check.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_MS 200
/* After a failed pull: waits doubling from RETRY_MS up to RETRY_MAX_MS. */
#define RETRY_MS      1000
#define RETRY_MAX_MS  16000
#define CONNECT_MS    3000
#define SHORT_CALL_MS 5000
#define PIECE_CALL_MS 60000
/* Making the copy reads the whole store on the source. */
#define OPEN_CALL_MS (30 * 60 * 1000)
/* Silent waits send a tick this often: the source closes a connection
 * idle for its --idle-ms (its --net-ticktime at least, 1 s or more). */
#define TICK_MS 500
/* A reply frame: a piece and its envelope. */
#define REPLY_CAP (CN_COPY_PIECE + (64u << 10))

typedef struct puller {
	cn_server *srv;
	const char *const *sources;
	unsigned n;
} puller;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* A connection to a member C node, its requests tagged with refs. */
typedef struct peer {
	ei_cnode *ec;
	int fd;
	const char *name;
	char ref[64]; /* the last request's Ref, external format */
	size_t ref_len;
} peer;

/* Exactly len bytes by the deadline, ticking while silent. -1: EOF,
 * error or out of time. */
static int read_full(peer *l, uint8_t *buf, size_t len, uint64_t deadline)
{
	static const char tick[4] = {0};
	while (len) {
		uint64_t now = now_ms();
		if (now >= deadline)
			return -1;
		uint64_t wait = deadline - now;
		struct pollfd pf = {l->fd, POLLIN, 0};
		int pr = poll(&pf, 1, (int)(wait < TICK_MS ? wait : TICK_MS));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -1;
		if (pr == 0) {
			if (send(l->fd, tick, 4, MSG_NOSIGNAL) != 4)
				return -1;
			continue;
		}
		ssize_t n = recv(l->fd, buf, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send Request (encoded by enc into x, after {call, Self, Ref, ) and
 * wait for {Ref, Reply}: *out holds the frame (free it), *at where Reply
 * starts. 0, or -1 (the link is then useless). */
static int call(peer *l, void (*enc)(ei_x_buff *, const void *),
                const void *ctx, unsigned ms, char **out, int *at)
{
	ei_x_buff x;
	erlang_ref ref;
	if (ei_x_new_with_version(&x))
		return -1;
	ei_x_encode_tuple_header(&x, 4);
	ei_x_encode_atom(&x, "call");
	ei_x_encode_pid(&x, ei_self(l->ec));
	int ref_at = x.index;
	if (ei_make_ref(l->ec, &ref) || ei_x_encode_ref(&x, &ref) ||
	    (size_t)(x.index - ref_at) > sizeof(l->ref)) {
		ei_x_free(&x);
		return -1;
	}
	l->ref_len = (size_t)(x.index - ref_at);
	memcpy(l->ref, x.buff + ref_at, l->ref_len);
	enc(&x, ctx);
	int rc = ei_reg_send_tmo(l->ec, l->fd, "esdb", x.buff, x.index, ms);
	ei_x_free(&x);
	if (rc < 0)
		return -1;
	uint64_t deadline = now_ms() + ms;
	for (;;) {
		uint8_t hdr[4];
		if (read_full(l, hdr, 4, deadline))
			return -1;
		size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
		             (size_t)hdr[2] << 8 | hdr[3];
		if (len == 0)
			continue; /* a tick */
		if (len > REPLY_CAP)
			return -1;
		uint8_t *buf = malloc(len);
		if (!buf || read_full(l, buf, len, deadline)) {
			free(buf);
			return -1;
		}
		/* {Ref, Reply}: 131, a 2-tuple, our Ref, a checked term */
		static const tc_limits lim = {TC_ALLOW_REF, 16, 64};
		size_t msg_at = 0, pos = 0;
		int op = cn_frame_parse(buf, len, &msg_at);
		if (op >= 0 && cn_frame_is_send(op) && (pos = msg_at) &&
		    tc_check_versioned(buf, len, &pos, &lim, 1) == TC_OK &&
		    len - msg_at > 3 + l->ref_len && buf[msg_at + 1] == 104 &&
		    buf[msg_at + 2] == 2 &&
		    memcmp(buf + msg_at + 3, l->ref, l->ref_len) == 0) {
			*out = (char *)buf;
			*at = (int)(msg_at + 3 + l->ref_len);
			return 0;
		}
		free(buf); /* not the reply: a stale one, a link, ... */
	}
}

static bool is_atom(const char *m, int *at, const char *name)
{
	char a[MAXATOMLEN_UTF8];
	int i = *at;
	if (ei_decode_atom(m, &i, a) || strcmp(a, name) != 0)
		return false;
	*at = i;
	return true;
}

/* {ok, ...}: past the tuple and ok, its arity in *arity. */
static bool ok_tuple(const char *m, int *at, int *arity)
{
	return ei_decode_tuple_header(m, at, arity) == 0 && *arity >= 2 &&
	       is_atom(m, at, "ok");
}

/* ---- requests ----------------------------------------------------------- */

typedef struct req {
	const char *op;
	int n;
	uint64_t a[3];
} req;

static void enc_req(ei_x_buff *x, const void *ctx)
{
	const req *r = ctx;
	ei_x_encode_tuple_header(x, 1 + r->n);
	ei_x_encode_atom(x, r->op);
	for (int i = 0; i < r->n; i++)
		ei_x_encode_ulonglong(x, r->a[i]);
}

/* What l's C node says of its replica (hello, cluster_info), each call
 * within ms. */
static int ask_state(peer *l, cn_member_state *st, unsigned ms)
{
	char *m;
	int at, arity, n;
	req hello = {"hello", 1, {1}}, info = {"cluster_info", 0, {0}};
	uint64_t deadline = now_ms() + ms;
	if (call(l, enc_req, &hello, ms, &m, &at))
		return -1;
	bool ok = ok_tuple(m, &at, &arity);
	free(m);
	uint64_t now = now_ms();
	if (!ok || now >= deadline ||
	    call(l, enc_req, &info, (unsigned)(deadline - now), &m, &at))
		return -1;
	*st = (cn_member_state){0, 0, true};
	ok = ok_tuple(m, &at, &arity) && ei_decode_map_header(m, &at, &n) == 0;
	for (int i = 0; ok && i < n; i++) {
		char key[MAXATOMLEN_UTF8];
		unsigned long long u;
		int b;
		if (ei_decode_atom(m, &at, key)) {
			ok = false;
		} else if (strcmp(key, "applied") == 0) {
			ok = ei_decode_ulonglong(m, &at, &u) == 0;
			st->applied = ok ? u : 0;
		} else if (strcmp(key, "id") == 0) {
			ok = ei_decode_ulonglong(m, &at, &u) == 0;
			st->id = ok ? u : 0;
		} else if (strcmp(key, "needs_copy") == 0) {
			ok = ei_decode_boolean(m, &at, &b) == 0;
			st->usable &= ok && !b;
		} else if (strcmp(key, "failure") == 0 &&
		           !is_atom(m, &at, "nil")) { /* {Code, Why} */
			st->usable = false;
			ok = ei_skip_term(m, &at) == 0;
		} else if (strcmp(key, "failure") != 0) {
			ok = ei_skip_term(m, &at) == 0;
		}
	}
	free(m);
	return ok ? 0 : -1;
}

int cn_copy_ask_member(ei_cnode *ec, const char *node, unsigned ms,
                       cn_member_state *st)
{
	uint64_t deadline = now_ms() + ms;
	int fd = ei_connect_tmo(ec, (char *)node, ms);
	if (fd < 0)
		return -1;
	peer l = {ec, fd, node, {0}, 0};
	uint64_t now = now_ms();
	int rc =
	    now < deadline ? ask_state(&l, st, (unsigned)(deadline - now)) : -1;
	close(fd);
	return rc;
}

int cn_peer_call(ei_cnode *ec, const char *node, unsigned ms,
                 void (*enc)(ei_x_buff *, const void *), const void *ctx,
                 int (*take)(const char *m, int at, void *out), void *out)
{
	uint64_t deadline = now_ms() + ms;
	int fd = ei_connect_tmo(ec, (char *)node, ms);
	if (fd < 0)
		return -1;
	peer l = {ec, fd, node, {0}, 0};
	char *m;
	int at, arity, rc = -1;
	req hello = {"hello", 1, {1}};
	if (call(&l, enc_req, &hello, ms, &m, &at) == 0) {
		bool ok = ok_tuple(m, &at, &arity);
		free(m);
		uint64_t now = now_ms();
		if (ok && now < deadline &&
		    call(&l, enc, ctx, (unsigned)(deadline - now), &m, &at) ==
		        0) {
			rc = take(m, at, out);
			free(m);
		}
	}
	close(fd);
	return rc;
}

/* ---- one pull -------------------------------------------------------- */

/* Names replicated in the store, as sources besides the configured. */
#define MAX_STORED 16

/* The usable member that applied most, connected (l->fd), or -1: asked
 * are the configured sources and the member names replicated in the
 * store (a member added at run time and restarted without
 * --raft-copy-from finds the others so). */
static int pick_source(puller *p, peer *l)
{
	static char stored[MAX_STORED][MAXATOMLEN]; /* this thread only */
	const char *names[2 * CN_CLUSTER_MAX_MEMBERS + MAX_STORED];
	unsigned n = 0, ns = 0;
	for (unsigned i = 0; i < p->n && n < 2 * CN_CLUSTER_MAX_MEMBERS; i++)
		names[n++] = p->sources[i];
	pthread_rwlock_rdlock(&p->srv->store_lock);
	if (!p->srv->closed)
		ns = cn_cluster_stored_names(p->srv, stored, MAX_STORED);
	pthread_rwlock_unlock(&p->srv->store_lock);
	for (unsigned i = 0; i < ns; i++) {
		bool known = false;
		for (unsigned j = 0; j < n && !known; j++)
			known = strcmp(names[j], stored[i]) == 0;
		if (!known)
			names[n++] = stored[i];
	}
	uint64_t best = 0;
	l->fd = -1;
	for (unsigned i = 0; i < n; i++) {
		int fd =
		    ei_connect_tmo(&p->srv->ec, (char *)names[i], CONNECT_MS);
		if (fd < 0)
			continue;
		peer c = {l->ec, fd, names[i], {0}, 0};
		cn_member_state st;
		if (ask_state(&c, &st, SHORT_CALL_MS) == 0 && st.usable &&
		    (l->fd < 0 || st.applied > best)) {
			if (l->fd >= 0)
				close(l->fd);
			*l = c;
			best = st.applied;
		} else {
			close(fd);
		}
	}
	return l->fd;
}

/* Pull the copy from l into fd: 0 once its size and CRC match. */
static int pull(peer *l, int fd, uint64_t *size_out)
{
	char *m;
	int at, arity;
	req open = {"copy_open", 0, {0}};
	if (call(l, enc_req, &open, OPEN_CALL_MS, &m, &at))
		return EIO;
	unsigned long long handle, size, crc;
	bool ok = ok_tuple(m, &at, &arity) && arity == 4 &&
	          ei_decode_ulonglong(m, &at, &handle) == 0 &&
	          ei_decode_ulonglong(m, &at, &size) == 0 &&
	          ei_decode_ulonglong(m, &at, &crc) == 0;
	free(m);
	if (!ok) {
		cn_log("copy: %s refused a copy (busy or failed)", l->name);
		return ESDB_EOVERLOADED;
	}
	uint64_t got = 0;
	uint32_t c = 0;
	int rc = 0;
	char *piece = malloc(CN_COPY_PIECE);
	if (!piece)
		rc = ENOMEM;
	while (!rc && got < size) {
		req rd = {"copy_read", 3, {handle, got, CN_COPY_PIECE}};
		int type, len;
		if (call(l, enc_req, &rd, PIECE_CALL_MS, &m, &at)) {
			rc = EIO;
			break;
		}
		long blen;
		ok = ok_tuple(m, &at, &arity) && arity == 2 &&
		     ei_get_type(m, &at, &type, &len) == 0 &&
		     type == ERL_BINARY_EXT && len > 0 &&
		     (uint64_t)len <= CN_COPY_PIECE &&
		     (uint64_t)len <= size - got &&
		     ei_decode_binary(m, &at, piece, &blen) == 0;
		free(m);
		if (!ok) {
			rc = EIO;
			break;
		}
		for (long off = 0; !rc && off < blen;) {
			ssize_t w =
			    pwrite(fd, piece + off, (size_t)(blen - off),
			           (off_t)(got + (uint64_t)off));
			if (w < 0 && errno != EINTR)
				rc = errno;
			else if (w > 0)
				off += w;
		}
		c = esdb_crc32c(c, piece, (size_t)blen);
		got += (uint64_t)blen;
	}
	free(piece);
	/* let go of it at once (its connection's end would too) */
	req close_req = {"copy_close", 1, {handle}};
	if (call(l, enc_req, &close_req, SHORT_CALL_MS, &m, &at) == 0)
		free(m);
	if (!rc && (got != size || c != (uint32_t)crc)) {
		cn_log("copy: %s's copy arrived with %llu bytes, CRC %08x; "
		       "announced %llu, %08x: not installed",
		       l->name, (unsigned long long)got, c, size,
		       (unsigned)crc);
		rc = ESDB_ECORRUPT;
	}
	*size_out = got;
	return rc;
}

static int pull_once(puller *p)
{
	peer l = {&p->srv->ec, -1, NULL, {0}, 0};
	if (pick_source(p, &l) < 0) {
		cn_log("copy: no member C node answered with a store to copy");
		return ENOENT;
	}
	int fd = cn_copy_tmpfile(p->srv->store_dir);
	if (fd < 0) {
		int e = errno;
		close(l.fd);
		return e;
	}
	cn_log("copy: the store is behind raft's snapshot: pulling a copy "
	       "of %s's store",
	       l.name);
	uint64_t size = 0;
	int rc = pull(&l, fd, &size);
	close(l.fd);
	if (!rc && lseek(fd, 0, SEEK_SET) != 0)
		rc = errno;
	if (!rc) {
		pthread_rwlock_rdlock(&p->srv->store_lock);
		rc = p->srv->closed ? ESDB_ECLOSED
		                    : esdb_store_restore(p->srv->store, fd);
		pthread_rwlock_unlock(&p->srv->store_lock);
	}
	close(fd); /* unlinked: its space goes with it */
	if (rc)
		cn_log("copy: pulling %s's store failed: %s", l.name,
		       esdb_error_describe(rc));
	else
		cn_log("copy: installed a copy of %s's store (%llu bytes)",
		       l.name, (unsigned long long)size);
	return rc;
}

/* ---- a member's record (cluster.h) ------------------------------------ */

typedef struct ckpt_req {
	const char *key, *def; /* def NULL: checkpoint_get */
} ckpt_req;

static void enc_ckpt(ei_x_buff *x, const void *ctx)
{
	const ckpt_req *r = ctx;
	ei_x_encode_tuple_header(x, r->def ? 4 : 2);
	ei_x_encode_atom(x, r->def ? "checkpoint_put" : "checkpoint_get");
	ei_x_encode_binary(x, r->key, (long)strlen(r->key));
	if (r->def) {
		ei_x_encode_ulong(x, 0);
		ei_x_encode_binary(x, r->def, (long)strlen(r->def));
	}
}

int cn_copy_call_checkpoint(ei_cnode *ec, const char *node, const char *key,
                            const char *def)
{
	int fd = ei_connect_tmo(ec, (char *)node, CONNECT_MS);
	if (fd < 0)
		return -1;
	peer l = {ec, fd, node, {0}, 0};
	char *m;
	int at, arity, rc = -1;
	req hello = {"hello", 1, {1}};
	ckpt_req r = {key, def};
	if (call(&l, enc_req, &hello, SHORT_CALL_MS, &m, &at) == 0) {
		bool ok = ok_tuple(m, &at, &arity);
		free(m);
		if (ok && call(&l, enc_ckpt, &r, SHORT_CALL_MS, &m, &at) == 0) {
			int t = at;
			rc = is_atom(m, &t, "ok") || ok_tuple(m, &at, &arity);
			free(m);
		}
	}
	close(fd);
	return rc;
}

/* Once this member has a leader, its record goes into the store (the
 * leader writes it; a follower asks the leader's C node): true once it
 * is there. */
static bool record_self(puller *p)
{
	char key[64], leader[MAXATOMLEN];
	const char *self = NULL;
	int r = cn_cluster_record_self(p->srv, key, sizeof(key), &self, leader);
	if (r == 1)
		cn_copy_call_checkpoint(&p->srv->ec, leader, key, self);
	return r == 0; /* 1: seen in this store on a later round */
}

static void *puller_main(void *arg)
{
	puller *p = arg;
	unsigned retry = RETRY_MS, round = 0;
	bool recorded = false;
	for (;;) {
		sleep_ms(PERIOD_MS);
		pthread_rwlock_rdlock(&p->srv->store_lock);
		bool closed = p->srv->closed;
		uint64_t want = closed ? 0 : cn_cluster_needs_copy(p->srv);
		pthread_rwlock_unlock(&p->srv->store_lock);
		if (closed)
			break;
		if (!recorded && round++ % 5 == 0)
			recorded = record_self(p);
		if (!want)
			continue;
		if (pull_once(p) == 0) {
			retry = RETRY_MS;
		} else {
			sleep_ms(retry);
			retry =
			    retry * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry * 2;
		}
	}
	free(p);
	return NULL;
}

int cn_copy_pull_start(cn_server *srv, const char *const *sources, unsigned n)
{
	puller *p = malloc(sizeof(*p));
	if (!p)
		return ENOMEM;
	*p = (puller){srv, sources, n};
	pthread_attr_t attr;
	pthread_t tid;
	int rc = pthread_attr_init(&attr);
	if (!rc) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&tid, &attr, puller_main, p);
		pthread_attr_destroy(&attr);
	}
	if (rc)
		free(p);
	return rc;
}
