/* pages.c: a read in two halves, so that a reader can overlap them (the
 * read-ahead of ExESDB.Streams' lazy reads, lib/ex_esdb/read_ahead.ex):
 * read_page copies a page of events out of the store into a resource on
 * a dirty IO scheduler and makes no terms; page_records builds that
 * page's records on the caller's own scheduler. While one process builds
 * and uses page N, another reads page N+1: the core's read and the
 * building of records, done one after the other by read_records, run on
 * two cores at once (docs/PERFORMANCE.md). */
#include "nif.h"

#include "atoms.h"
#include "etf.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Buffers for a page's events and bytes, with room for ecap events and
 * bcap bytes. */
typedef struct page_buf {
	esdb_event *events;
	size_t ecap;
	uint8_t *bytes;
	size_t bcap;
} page_buf;

/* A page: n events whose pointers point into nbytes bytes, both in buf
 * (owned). Immutable once made: any number of processes may build
 * records from it. */
typedef struct page_res {
	page_buf buf;
	size_t n, nbytes;
} page_res;

static ErlNifResourceType *page_type;

/* Buffers of pages freed, kept for the pages read next: a read-ahead
 * frees a page as it reads the next, and fresh memory for each (~200 KiB
 * for 512 events) faults on its first touches and is copied as it grows.
 * At most POOL_MAX buffers, of at most POOL_BYTES each (events and
 * bytes), are kept. */
#define POOL_MAX   8
#define POOL_BYTES (1u << 20)

static ErlNifMutex *pool_lock;
static page_buf pool[POOL_MAX];
static size_t pool_n;

/* A buffer from the pool, or an empty one. */
static page_buf buf_take(void)
{
	page_buf b = {0};
	enif_mutex_lock(pool_lock);
	if (pool_n)
		b = pool[--pool_n];
	enif_mutex_unlock(pool_lock);
	return b;
}

static void buf_give(page_buf b)
{
	bool kept = false;
	if (b.bcap + b.ecap * sizeof(esdb_event) <= POOL_BYTES) {
		enif_mutex_lock(pool_lock);
		if (pool_n < POOL_MAX) {
			pool[pool_n++] = b;
			kept = true;
		}
		enif_mutex_unlock(pool_lock);
	}
	if (!kept) {
		enif_free(b.events);
		enif_free(b.bytes);
	}
}

static void page_dtor(ErlNifEnv *env, void *obj)
{
	page_res *p = obj;
	buf_give(p->buf);
}

bool pages_init(ErlNifEnv *env, ErlNifResourceFlags flags)
{
	if (!pool_lock && !(pool_lock = enif_mutex_create("esdb_page_pool")))
		return false;
	page_type = enif_open_resource_type(env, NULL, "esdb_page", page_dtor,
	                                    flags, NULL);
	return page_type != NULL;
}

/* The page being copied: pointers of events are offsets into bytes until
 * the read ends (bytes may move as it grows). */
typedef struct page_ctx {
	page_buf buf;
	size_t n, nbytes;
} page_ctx;

/* Room for len more bytes; ENOMEM when it cannot grow. */
static int room(page_ctx *c, size_t len)
{
	page_buf *b = &c->buf;
	if (c->nbytes + len <= b->bcap)
		return 0;
	size_t cap = b->bcap ? b->bcap : 64u << 10;
	while (cap < c->nbytes + len)
		cap *= 2;
	uint8_t *p = b->bytes ? enif_realloc(b->bytes, cap) : enif_alloc(cap);
	if (!p)
		return ENOMEM;
	b->bytes = p;
	b->bcap = cap;
	return 0;
}

/* Copy len bytes and answer their offset (as a pointer, fixed later);
 * NULL stays NULL (an absent causation or correlation id). */
static const void *put(page_ctx *c, const void *p, size_t len)
{
	if (!p)
		return NULL;
	uintptr_t off = c->nbytes;
	if (len)
		memcpy(c->buf.bytes + c->nbytes, p, len);
	c->nbytes += len;
	return (const void *)off;
}

static int copy_event(void *ctx, const esdb_event *ev)
{
	page_ctx *c = ctx;
	page_buf *b = &c->buf;
	if (c->n == b->ecap) {
		size_t cap = b->ecap ? b->ecap * 2 : 64;
		esdb_event *e = b->events
		                    ? enif_realloc(b->events, cap * sizeof(*e))
		                    : enif_alloc(cap * sizeof(*e));
		if (!e)
			return ENOMEM;
		b->events = e;
		b->ecap = cap;
	}
	size_t need = 16 + ev->stream_id_len + ev->event_type_len +
	              ev->data_len + ev->metadata_len +
	              (ev->causation_id ? 16 : 0) +
	              (ev->correlation_id ? 16 : 0);
	if (room(c, need))
		return ENOMEM;
	esdb_event *e = &b->events[c->n++];
	*e = *ev;
	e->event_id = put(c, ev->event_id, 16);
	e->stream_id = put(c, ev->stream_id, ev->stream_id_len);
	e->event_type = put(c, ev->event_type, ev->event_type_len);
	e->data = put(c, ev->data, ev->data_len);
	e->metadata = put(c, ev->metadata, ev->metadata_len);
	e->causation_id = put(c, ev->causation_id, 16);
	e->correlation_id = put(c, ev->correlation_id, 16);
	return 0;
}

#define FIX(field)                                                             \
	do {                                                                   \
		if (e->field)                                                  \
			e->field = (void *)(base + (uintptr_t)e->field);       \
	} while (0)

/* Offsets made pointers, now that bytes stays where it is. An id copied
 * is never at offset 0 (the first event's event id is), so 0 still means
 * an absent causation or correlation id. */
static void fix_pointers(page_ctx *c)
{
	const uint8_t *base = c->buf.bytes;
	for (size_t i = 0; i < c->n; i++) {
		esdb_event *e = &c->buf.events[i];
		e->event_id = base + (uintptr_t)e->event_id;
		e->stream_id = (const char *)base + (uintptr_t)e->stream_id;
		e->event_type = (const char *)base + (uintptr_t)e->event_type;
		e->data = base + (uintptr_t)e->data;
		e->metadata = base + (uintptr_t)e->metadata;
		FIX(causation_id);
		FIX(correlation_id);
	}
}

/* read_page(Store, Source, From, Count, Direction)
 *   -> {ok, Page, Next} | {error, Reason}
 * read_records' read (its sources, paging and errors) with the events
 * copied into Page, an opaque resource, instead of made into records. */
ERL_NIF_TERM nif_read_page(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	store_res *r;
	uint64_t from;
	uint32_t count;
	esdb_direction dir;
	esdb_topic source;
	ErlNifBinary name = {0};
	if (!records_source(env, argv[1], &source, &name) ||
	    !nif_get_u64(env, argv[2], &from) ||
	    !nif_get_count(env, argv[3], &count) ||
	    !nif_get_direction(argv[4], &dir) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	page_ctx c = {.buf = buf_take()};
	esdb_read_next next;
	int rc = r->closed ? ESDB_ECLOSED
	                   : nif_read_source(r->s, source, &name, from, count,
	                                     dir, copy_event, &c, &next);
	nif_store_release(r);
	page_res *p = NULL;
	if (!rc && !(p = enif_alloc_resource(page_type, sizeof(*p))))
		rc = ENOMEM;
	if (rc) {
		buf_give(c.buf);
		return source == ESDB_TOPIC_STREAM
		           ? nif_stream_error_term(
		                 env, rc,
		                 nif_make_bin(env, name.data, name.size))
		           : nif_error_term(env, rc);
	}
	fix_pointers(&c);
	p->buf = c.buf;
	p->n = c.n;
	p->nbytes = c.nbytes;
	ERL_NIF_TERM page = enif_make_resource(env, p);
	enif_release_resource(p);
	return enif_make_tuple3(env, atom_ok, page, nif_next_term(env, &next));
}

/* A page this big builds on a dirty CPU scheduler: records of up to
 * 256 KiB of events (decoding included) take well under a normal
 * scheduler's millisecond; the bench's 512 events are ~100 KiB. */
#define NORMAL_PAGE_BYTES (256u << 10)

static ERL_NIF_TERM build(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	page_res *p;
	ERL_NIF_TERM module, list;
	bool decode, tuples;
	int refusal;
	if (!enif_get_resource(env, argv[0], page_type, (void **)&p) ||
	    !records_read_format(env, argv[1], &module, &decode, &tuples))
		return enif_make_badarg(env);
	int rc = records_list(env, p->buf.events, p->n, module, decode, tuples,
	                      &list, &refusal);
	if (rc)
		return refusal ? etf_undecodable(env, refusal)
		               : nif_error_term(env, rc);
	return enif_make_tuple2(env, atom_ok, list);
}

/* page_records(Page, Format) -> {ok, [Record]} | {error, Reason}
 * Format and records as read_records'; {error, {undecodable, Why}} when a
 * term payload may not be decoded. */
ERL_NIF_TERM nif_page_records(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
	page_res *p;
	if (!enif_get_resource(env, argv[0], page_type, (void **)&p))
		return enif_make_badarg(env);
	if (p->nbytes > NORMAL_PAGE_BYTES)
		return enif_schedule_nif(env, "page_records",
		                         ERL_NIF_DIRTY_JOB_CPU_BOUND, build,
		                         argc, argv);
	ERL_NIF_TERM t = build(env, argc, argv);
	/* ~100-200 ns an event: a 512-event page is a tenth of a slice */
	enif_consume_timeslice(env, p->n > 5000 ? 100 : (int)(p->n / 50) + 1);
	return t;
}
