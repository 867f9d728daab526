/* peer_watch.c: see peer_watch.h. The transport's accept callback and a
 * stream's read callback carry no pointer of ours (raft owns their data
 * fields), so watches and watched streams are found in lists shared by
 * every replica of the process. */
#include "peer_watch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

typedef struct watched {
	struct watched *next;
	uv_stream_t *stream;
	uv_read_cb read; /* raft's */
	esdb_peer_watch *w;
	uint64_t id;
} watched;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static esdb_peer_watch *watches;
static watched *streams;
/* raft_uv reads every accepted stream with one callback of its own */
static uv_read_cb raft_read;

static esdb_peer_watch *watch_of(struct raft_uv_transport *t)
{
	pthread_mutex_lock(&lock);
	esdb_peer_watch *w = watches;
	while (w && w->t != t)
		w = w->next;
	pthread_mutex_unlock(&lock);
	return w;
}

/* The stream's entry, unlinked when `take`. */
static watched *stream_find(uv_stream_t *stream, watched *copy, bool take)
{
	pthread_mutex_lock(&lock);
	watched **pp = &streams;
	while (*pp && (*pp)->stream != stream)
		pp = &(*pp)->next;
	watched *s = *pp;
	if (s) {
		*copy = *s;
		if (take) {
			*pp = s->next;
			free(s);
		}
	}
	pthread_mutex_unlock(&lock);
	return s ? copy : NULL;
}

static void watched_read(uv_stream_t *stream, ssize_t nread,
                         const uv_buf_t *buf)
{
	watched s;
	/* a read error or EOF ends the connection: raft closes it */
	bool found = stream_find(stream, &s, nread < 0) != NULL;
	if (!found) { /* cannot be: only watched streams read here */
		pthread_mutex_lock(&lock);
		s.read = raft_read;
		pthread_mutex_unlock(&lock);
	}
	s.read(stream, nread, buf);
	if (found && nread < 0)
		s.w->closed(s.w->ctx, s.id);
}

/* An accepted stream is raft's, from its heap, given to the callback. */
static void free_stream(uv_handle_t *h)
{
	raft_free(h);
}

static void watched_accept(struct raft_uv_transport *t, raft_id id,
                           const char *address, struct uv_stream_s *stream)
{
	esdb_peer_watch *w = watch_of(t);
	if (!w) { /* cannot be: only watched transports accept here */
		fprintf(stderr, "esdb replica: a connection accepted on an "
		                "unwatched transport: closed\n");
		uv_close((uv_handle_t *)stream, free_stream);
		return;
	}
	w->accept(t, id, address, stream);
	/* raft started reading, or closes the stream (out of memory) */
	if (uv_is_closing((uv_handle_t *)stream) || !stream->read_cb)
		return;
	watched *s = malloc(sizeof(*s));
	if (!s) /* unwatched: the leader's death is seen at the timeout */
		return;
	pthread_mutex_lock(&lock);
	/* a stream raft closed on its own left its entry; its memory may be
	 * this one's */
	for (watched **pp = &streams; *pp; pp = &(*pp)->next) {
		if ((*pp)->stream == stream) {
			watched *old = *pp;
			*pp = old->next;
			free(old);
			break;
		}
	}
	*s = (watched){.next = streams,
	               .stream = stream,
	               .read = stream->read_cb,
	               .w = w,
	               .id = id};
	streams = s;
	raft_read = stream->read_cb;
	stream->read_cb = watched_read;
	pthread_mutex_unlock(&lock);
}

static int watched_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
	esdb_peer_watch *w = watch_of(t);
	if (!w) { /* cannot be: only watched transports listen here */
		fprintf(stderr, "esdb replica: listen on an unwatched "
		                "transport\n");
		return RAFT_INVALID;
	}
	w->accept = cb;
	return w->listen(t, watched_accept);
}

void esdb_peer_watch_start(esdb_peer_watch *w, struct raft_uv_transport *t,
                           esdb_peer_closed_cb closed, void *ctx)
{
	*w = (esdb_peer_watch){
	    .t = t, .listen = t->listen, .closed = closed, .ctx = ctx};
	t->listen = watched_listen;
	pthread_mutex_lock(&lock);
	w->next = watches;
	watches = w;
	pthread_mutex_unlock(&lock);
}

void esdb_peer_watch_stop(esdb_peer_watch *w)
{
	pthread_mutex_lock(&lock);
	for (esdb_peer_watch **pp = &watches; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	for (watched **pp = &streams; *pp;) {
		watched *s = *pp;
		if (s->w == w) {
			*pp = s->next;
			free(s);
		} else {
			pp = &s->next;
		}
	}
	pthread_mutex_unlock(&lock);
}
