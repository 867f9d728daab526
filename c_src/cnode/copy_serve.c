/* copy_serve.c: the copy_* requests (copies.h): a copy of the store for
 * another C node (or any client) to pull in pieces. The copy is made on a
 * thread of its own (a whole-store read, like backup: minutes for a big
 * store), into an unlinked file, so nothing is left behind whatever ends
 * it; reads of pieces run on the connection's reader thread (one pread of
 * at most CN_COPY_PIECE). */
#include "copies.h"

#include "crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Copies held at once on this node: each is a whole store on disk. */
#define MAX_HELD 4

typedef struct held {
	bool used;
	bool dead;      /* its connection closed while it was made */
	cn_server *srv; /* the store */
	cn_conn *c;     /* the connection it belongs to (identity only) */
	uint64_t handle;
	int fd; /* -1 while it is made */
	uint64_t size;
} held;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static held table[MAX_HELD];
static uint64_t next_handle = 1;

bool cn_copy_is_request(const char *op)
{
	return strncmp(op, "copy_", 5) == 0;
}

int cn_copy_tmpfile(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd;
	/* a file system without O_TMPFILE: a named file, unlinked at once */
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/copy.XXXXXX", dir) >=
	    (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* Let go of slot h (mu held). */
static void drop(held *h)
{
	if (h->fd >= 0)
		close(h->fd);
	*h = (held){0};
	h->fd = -1;
}

void cn_copy_conn_closed(cn_conn *c)
{
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < MAX_HELD; i++) {
		if (!table[i].used || table[i].c != c)
			continue;
		if (table[i].fd >= 0)
			drop(&table[i]);
		else
			table[i].dead = true; /* its maker drops it */
	}
	pthread_mutex_unlock(&mu);
}

typedef struct maker {
	caller *k;
	size_t slot;
	uint64_t handle;
} maker;

/* The copy into an unlinked file in the store's directory; its size and
 * CRC-32C (read back: the puller checks them before it installs). */
static int make_copy(cn_server *srv, int *out, uint64_t *size, uint32_t *crc)
{
	int fd = cn_copy_tmpfile(srv->store_dir);
	if (fd < 0)
		return errno;
	pthread_rwlock_rdlock(&srv->store_lock);
	int rc = srv->closed ? ESDB_ECLOSED : esdb_store_copy(srv->store, fd);
	pthread_rwlock_unlock(&srv->store_lock);
	char *buf = rc ? NULL : malloc(CN_COPY_PIECE);
	if (!rc && !buf)
		rc = ENOMEM;
	uint64_t at = 0;
	uint32_t c = 0;
	while (!rc) {
		ssize_t n = pread(fd, buf, CN_COPY_PIECE, (off_t)at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = errno;
		if (n <= 0)
			break;
		c = esdb_crc32c(c, buf, (size_t)n);
		at += (uint64_t)n;
	}
	free(buf);
	if (rc) {
		close(fd);
		return rc;
	}
	*out = fd;
	*size = at;
	*crc = c;
	return 0;
}

static void *maker_main(void *arg)
{
	maker *mk = arg;
	caller *k = mk->k;
	int fd = -1;
	uint64_t size = 0;
	uint32_t crc = 0;
	int rc = make_copy(k->srv, &fd, &size, &crc);
	atomic_store(&k->srv->job_running, false);
	pthread_mutex_lock(&mu);
	held *h = &table[mk->slot];
	bool ours = h->used && h->handle == mk->handle;
	if (ours && (rc || h->dead)) {
		drop(h);
		ours = false;
	} else if (ours) {
		h->fd = fd;
		h->size = size;
	}
	pthread_mutex_unlock(&mu);
	if (!ours && fd >= 0)
		close(fd);
	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (rc) {
		cn_encode_rc(k->srv, &x, rc);
	} else if (!ours) { /* closed meanwhile: the reply goes nowhere */
		cn_encode_rc(k->srv, &x, ESDB_ECLOSED);
	} else {
		ei_x_encode_tuple_header(&x, 4);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_ulonglong(&x, mk->handle);
		ei_x_encode_ulonglong(&x, size);
		ei_x_encode_ulonglong(&x, crc);
	}
	cn_reply_end(k, &x);
	free(mk);
	return NULL;
}

static void copy_open(caller *k)
{
	/* one copy per connection and store: asking again lets go of the
	 * earlier one (a puller starting over) */
	size_t slot = MAX_HELD;
	uint64_t handle;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < MAX_HELD; i++)
		if (table[i].used && table[i].c == k->c &&
		    table[i].srv == k->srv && table[i].fd >= 0)
			drop(&table[i]);
	for (size_t i = 0; i < MAX_HELD && slot == MAX_HELD; i++)
		if (!table[i].used)
			slot = i;
	if (slot < MAX_HELD) {
		handle = next_handle++;
		table[slot] = (held){true, false, k->srv, k->c, handle, -1, 0};
	}
	pthread_mutex_unlock(&mu);
	if (slot == MAX_HELD) {
		cn_reply_rc(k, ESDB_EOVERLOADED);
		return;
	}
	int rc = ESDB_EOVERLOADED;
	maker *mk = NULL;
	pthread_attr_t attr;
	pthread_t tid;
	/* a whole-store read: one job per store at a time (maintenance.c) */
	if (atomic_exchange(&k->srv->job_running, true))
		goto fail;
	rc = ENOMEM;
	if (!(mk = malloc(sizeof(*mk))))
		goto fail_job;
	*mk = (maker){k, slot, handle};
	if ((rc = pthread_attr_init(&attr)))
		goto fail_job;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, maker_main, mk);
	pthread_attr_destroy(&attr);
	if (!rc)
		return;
fail_job:
	atomic_store(&k->srv->job_running, false);
fail:
	free(mk);
	pthread_mutex_lock(&mu);
	drop(&table[slot]);
	pthread_mutex_unlock(&mu);
	cn_reply_rc(k, rc);
}

/* The copy `handle` of k's connection and store: a descriptor of its
 * own (closed by the caller) and its size; -1 when there is none or
 * none could be made (*err its errno, else 0). */
static int find(caller *k, uint64_t handle, uint64_t *size, bool remove,
                int *err)
{
	int fd = -1;
	*err = 0;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < MAX_HELD; i++) {
		held *h = &table[i];
		if (!h->used || h->c != k->c || h->srv != k->srv ||
		    h->handle != handle || h->fd < 0)
			continue;
		if (remove) {
			drop(h);
			fd = 0;
		} else {
			fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
			*err = fd < 0 ? errno : 0;
			*size = h->size;
		}
		break;
	}
	pthread_mutex_unlock(&mu);
	return fd;
}

static void invalid_copy(caller *k, uint64_t handle)
{
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "error");
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "invalid_copy");
	ei_x_encode_ulonglong(&x, handle);
	cn_reply_end(k, &x);
}

static void copy_read(caller *k, uint64_t handle, uint64_t at, uint64_t len)
{
	uint64_t size = 0;
	int err;
	int fd = find(k, handle, &size, false, &err);
	if (fd < 0 && err) { /* EMFILE: the copy is there, no fd for it */
		cn_reply_rc(k, err);
		return;
	}
	if (fd < 0) {
		invalid_copy(k, handle);
		return;
	}
	if (len > CN_COPY_PIECE)
		len = CN_COPY_PIECE;
	if (at >= size)
		len = 0;
	else if (len > size - at)
		len = size - at;
	char *buf = len ? malloc(len) : NULL;
	int rc = len && !buf ? ENOMEM : 0;
	for (uint64_t got = 0; !rc && got < len;) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(at + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = n < 0 ? errno : EIO; /* the file shrank: never */
		else
			got += (uint64_t)n;
	}
	close(fd);
	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (rc) {
		cn_encode_rc(k->srv, &x, rc);
	} else {
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_binary(&x, buf ? buf : "", (long)len);
	}
	free(buf);
	cn_reply_end(k, &x);
}

void cn_copy_request(caller *k, const cn_envelope *e, const char *m)
{
	static const struct {
		const char *name;
		int args;
	} ops[] = {{"copy_open", 0}, {"copy_read", 3}, {"copy_close", 1}};
	size_t op = 0;
	while (op < 3 && strcmp(ops[op].name, e->op) != 0)
		op++;
	if (op == 3) {
		cn_reply_error(k, "invalid_request", "unknown_operation");
		return;
	}
	if (e->arity != ops[op].args + 1) {
		cn_reply_error(k, "invalid_request", "arity");
		return;
	}
	args a = {m, e->args_at};
	arg v[3] = {{0}};
	const char *why = NULL;
	for (int i = 0; i < ops[op].args; i++)
		if (!cn_arg_decode(&a, ESDB_ARG_UINT, &v[i], &why)) {
			cn_reply_error(k, "invalid_request", ops[op].name);
			return;
		}
	if (op == 0)
		copy_open(k);
	else if (op == 1)
		copy_read(k, v[0].u, v[1].u, v[2].u);
	else if (find(k, v[0].u, NULL, true, &(int){0}) < 0)
		invalid_copy(k, v[0].u);
	else
		cn_reply_rc(k, 0);
}
