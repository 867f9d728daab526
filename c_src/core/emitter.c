/* emitter.c: fan-out of committed events to topic members (:pg style).
 *
 * Topics ($all, a stream, an event type) live in a hash table of member
 * lists. A commit's events are copied into a bounded queue on the thread
 * that applied it (esdb__emit); the emitter's own thread takes commits
 * off the queue, matches every event against its three possible topics
 * and groups the (member, event) pairs by member (a counting sort over a
 * small hash table of the commit's members), so each member gets one
 * delivery per commit with its events in position order.
 *
 * Two locks. `lock` guards the topics; the thread holds it while it
 * matches one commit, never while it delivers. `q_lock` guards the queue
 * and the positions, and is held for a few steps only: esdb__emit takes
 * nothing else, so a commit never waits for fan-out. Order: lock, then
 * q_lock. A join holds both, so it falls either before a queued commit is
 * matched (which then reaches the new member) or after (and the position
 * it answers covers that commit). */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096

bool esdb__emitter_fault;

typedef struct topic {
	struct topic *next;
	esdb_topic kind;
	uint64_t hash;
	char *name;
	size_t len;
	uint64_t *members;
	size_t n, cap;
} topic;

typedef struct pair {
	uint64_t member; /* then the index of its group */
	size_t event;
} pair;

/* The events of one member in one commit: batch[start, start + count). */
typedef struct group {
	uint64_t member;
	size_t count, start;
} group;

/* One commit waiting for fan-out: its events, and the bytes they point
 * to, copied into one allocation. */
typedef struct entry {
	struct entry *next;
	uint64_t since; /* contiguous_from when it was queued */
	size_t bytes;   /* the allocation, counted against the bound */
	size_t n;
	esdb_event events[];
} entry;

struct esdb_emitter {
	pthread_mutex_t lock; /* the topics */
	topic *buckets[BUCKETS];
	size_t topics;
	size_t memberships; /* in all topics: bounds a commit's groups */
	/* under both locks (read under either) */
	esdb_delivery_fn deliver;
	void *ctx;
	size_t any_topics; /* = topics, for esdb__emit */

	/* under q_lock */
	pthread_mutex_t q_lock;
	pthread_cond_t work; /* for the thread: a commit, a drop, stop */
	pthread_cond_t idle; /* from the thread: nothing in hand */
	entry *head, *tail;
	uint64_t q_commits, q_bytes, q_max;
	uint64_t last_position;
	/* the first position of the unbroken run of commits fanned out */
	uint64_t contiguous_from;
	uint64_t dropped;
	uint64_t *leaving; /* members esdb_emitter_drop was told of */
	size_t n_leaving, cap_leaving;
	bool busy; /* the thread has a commit in hand */
	bool running, stopping;
	pthread_t thread;

	/* the thread's own */
	uint64_t floor; /* later deliveries vouch for nothing below it */
	/* scratch reused from commit to commit */
	pair *pairs;
	size_t pairs_cap;
	esdb_event *batch;
	size_t batch_cap;
	group *groups;
	size_t groups_cap;
	uint32_t *table; /* group index + 1 by member hash; 0 = empty */
	size_t table_cap;
};

static uint64_t topic_hash(esdb_topic kind, const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)kind;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

int esdb__emitter_create(esdb_store *s, uint64_t last_position)
{
	struct esdb_emitter *e = calloc(1, sizeof(*e));
	if (!e)
		return ENOMEM;
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->q_lock, NULL);
	pthread_cond_init(&e->work, NULL);
	pthread_cond_init(&e->idle, NULL);
	e->q_max = ESDB_EMITTER_QUEUE_BYTES_DEFAULT;
	e->last_position = last_position;
	e->contiguous_from = last_position + 1;
	e->floor = 0;
	s->emitter = e;
	return 0;
}

static void free_entries(entry *q)
{
	while (q) {
		entry *next = q->next;
		free(q);
		q = next;
	}
}

void esdb__emitter_destroy(esdb_store *s)
{
	struct esdb_emitter *e = s->emitter;
	if (!e)
		return;
	/* What is still queued is dropped: closing waits for one delivery
	 * at most, not for a backlog. */
	pthread_mutex_lock(&e->q_lock);
	bool running = e->running;
	__atomic_store_n(&e->stopping, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&e->work);
	pthread_mutex_unlock(&e->q_lock);
	if (running)
		pthread_join(e->thread, NULL);
	free_entries(e->head);
	for (size_t b = 0; b < BUCKETS; b++) {
		topic *t = e->buckets[b];
		while (t) {
			topic *next = t->next;
			free(t->name);
			free(t->members);
			free(t);
			t = next;
		}
	}
	pthread_mutex_destroy(&e->lock);
	pthread_mutex_destroy(&e->q_lock);
	pthread_cond_destroy(&e->work);
	pthread_cond_destroy(&e->idle);
	free(e->leaving);
	free(e->pairs);
	free(e->batch);
	free(e->groups);
	free(e->table);
	free(e);
	s->emitter = NULL;
}

static topic **find(struct esdb_emitter *e, esdb_topic kind, const char *name,
                    size_t len, uint64_t hash)
{
	topic **p = &e->buckets[hash % BUCKETS];
	for (; *p; p = &(*p)->next)
		if ((*p)->hash == hash && (*p)->kind == kind &&
		    (*p)->len == len &&
		    (len == 0 || memcmp((*p)->name, name, len) == 0))
			return p;
	return p;
}

static bool valid(esdb_store *s, esdb_topic kind, const char *name, size_t len)
{
	if (!s || !s->emitter)
		return false;
	if (kind == ESDB_TOPIC_ALL)
		return true;
	return (kind == ESDB_TOPIC_STREAM || kind == ESDB_TOPIC_TYPE) && name &&
	       len > 0;
}

static void *emitter_main(void *arg);

/* The topic count esdb__emit reads; caller holds lock. */
static void publish_topics(struct esdb_emitter *e)
{
	pthread_mutex_lock(&e->q_lock);
	e->any_topics = e->topics;
	pthread_mutex_unlock(&e->q_lock);
}

int esdb_emitter_set_deliver(esdb_store *s, esdb_delivery_fn deliver, void *ctx)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	struct esdb_emitter *e = s->emitter;
	int rc = 0;
	pthread_mutex_lock(&e->lock);
	pthread_mutex_lock(&e->q_lock);
	if (deliver && !e->running && !e->stopping) {
		if ((rc = pthread_create(&e->thread, NULL, emitter_main, e)))
			goto out;
		e->running = true;
	}
	e->deliver = deliver;
	e->ctx = ctx;
out:
	pthread_mutex_unlock(&e->q_lock);
	pthread_mutex_unlock(&e->lock);
	if (rc)
		return rc;
	/* A commit in hand may still be going to the old function. */
	pthread_mutex_lock(&e->q_lock);
	while (e->busy && e->running)
		pthread_cond_wait(&e->idle, &e->q_lock);
	pthread_mutex_unlock(&e->q_lock);
	return 0;
}

int esdb_emitter_join(esdb_store *s, esdb_topic kind, const char *name,
                      size_t len, uint64_t member, uint64_t *last_position)
{
	if (!valid(s, kind, name, len))
		return s && !s->emitter ? ESDB_ECLOSED : ESDB_EINVAL;
	if (kind == ESDB_TOPIC_ALL)
		len = 0;
	struct esdb_emitter *e = s->emitter;
	uint64_t hash = topic_hash(kind, name, len);
	int rc = 0;
	pthread_mutex_lock(&e->lock);
	topic **p = find(e, kind, name, len, hash);
	topic *t = *p;
	if (!t) {
		if (!(t = calloc(1, sizeof(*t))) ||
		    (len && !(t->name = malloc(len)))) {
			free(t);
			rc = ENOMEM;
			goto out;
		}
		t->kind = kind;
		t->hash = hash;
		t->len = len;
		if (len)
			memcpy(t->name, name, len);
		*p = t;
		e->topics++;
	}
	for (size_t i = 0; i < t->n; i++)
		if (t->members[i] == member)
			goto out;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 4;
		uint64_t *m = realloc(t->members, cap * sizeof(*m));
		if (!m) {
			rc = ENOMEM;
			if (t->n == 0) { /* just made: no empty topic left */
				*p = t->next;
				free(t->name);
				free(t);
				e->topics--;
			}
			goto out;
		}
		t->members = m;
		t->cap = cap;
	}
	t->members[t->n++] = member;
	e->memberships++;
out:
	pthread_mutex_lock(&e->q_lock);
	e->any_topics = e->topics;
	/* Holding `lock`, no commit is being matched: the queued ones will
	 * be matched with this member, the others were. */
	if (rc == 0 && last_position)
		*last_position = e->head ? e->head->events[0].position - 1
		                         : e->last_position;
	pthread_mutex_unlock(&e->q_lock);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/* Remove member from *p's topic; frees the topic when it empties. */
static bool remove_member(struct esdb_emitter *e, topic **p, uint64_t member)
{
	topic *t = *p;
	for (size_t i = 0; i < t->n; i++) {
		if (t->members[i] != member)
			continue;
		t->members[i] = t->members[--t->n];
		e->memberships--;
		if (t->n == 0) {
			*p = t->next;
			free(t->name);
			free(t->members);
			free(t);
			e->topics--;
		}
		return true;
	}
	return false;
}

int esdb_emitter_leave(esdb_store *s, esdb_topic kind, const char *name,
                       size_t len, uint64_t member)
{
	if (!valid(s, kind, name, len))
		return s && !s->emitter ? ESDB_ECLOSED : ESDB_EINVAL;
	if (kind == ESDB_TOPIC_ALL)
		len = 0;
	struct esdb_emitter *e = s->emitter;
	pthread_mutex_lock(&e->lock);
	topic **p = find(e, kind, name, len, topic_hash(kind, name, len));
	bool left = *p && remove_member(e, p, member);
	publish_topics(e);
	pthread_mutex_unlock(&e->lock);
	return left ? 0 : ESDB_ENOTFOUND;
}

/* Caller holds lock. */
static size_t leave_all_locked(struct esdb_emitter *e, uint64_t member)
{
	size_t n = 0;
	for (size_t b = 0; b < BUCKETS && e->topics; b++) {
		topic **p = &e->buckets[b];
		while (*p) {
			topic *t = *p;
			if (remove_member(e, p, member)) {
				n++;
				if (*p != t) /* freed: *p is the next already */
					continue;
			}
			p = &(*p)->next;
		}
	}
	return n;
}

int esdb_emitter_leave_all(esdb_store *s, uint64_t member, size_t *count)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	struct esdb_emitter *e = s->emitter;
	pthread_mutex_lock(&e->lock);
	size_t n = leave_all_locked(e, member);
	publish_topics(e);
	pthread_mutex_unlock(&e->lock);
	if (count)
		*count = n;
	return 0;
}

/* Room for one more member in e->leaving; caller holds q_lock. */
static bool reserve_leaving(struct esdb_emitter *e)
{
	if (e->n_leaving < e->cap_leaving)
		return true;
	size_t cap = e->cap_leaving ? e->cap_leaving * 2 : 16;
	uint64_t *l = realloc(e->leaving, cap * sizeof(*l));
	if (!l)
		return false;
	e->leaving = l;
	e->cap_leaving = cap;
	return true;
}

int esdb_emitter_drop(esdb_store *s, uint64_t member)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	struct esdb_emitter *e = s->emitter;
	pthread_mutex_lock(&e->q_lock);
	if (!e->running || e->stopping) {
		/* no thread to hand it to, and none holding `lock` long */
		pthread_mutex_unlock(&e->q_lock);
		return esdb_emitter_leave_all(s, member, NULL);
	}
	if (!reserve_leaving(e)) {
		pthread_mutex_unlock(&e->q_lock);
		return ENOMEM;
	}
	e->leaving[e->n_leaving++] = member;
	pthread_cond_signal(&e->work);
	pthread_mutex_unlock(&e->q_lock);
	return 0;
}

int esdb_emitter_flush(esdb_store *s)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	struct esdb_emitter *e = s->emitter;
	pthread_mutex_lock(&e->q_lock);
	while (e->running && !e->stopping &&
	       (e->head || e->busy || e->n_leaving))
		pthread_cond_wait(&e->idle, &e->q_lock);
	pthread_mutex_unlock(&e->q_lock);
	return 0;
}

int esdb_emitter_set_queue_bytes(esdb_store *s, uint64_t bytes)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	if (bytes == 0)
		return ESDB_EINVAL;
	pthread_mutex_lock(&s->emitter->q_lock);
	s->emitter->q_max = bytes;
	pthread_mutex_unlock(&s->emitter->q_lock);
	return 0;
}

int esdb_emitter_get_stats(esdb_store *s, esdb_emitter_stats *out)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	if (!out)
		return ESDB_EINVAL;
	struct esdb_emitter *e = s->emitter;
	pthread_mutex_lock(&e->lock);
	pthread_mutex_lock(&e->q_lock);
	*out = (esdb_emitter_stats){
	    .topics = e->topics,
	    .memberships = e->memberships,
	    .queued_commits = e->q_commits,
	    .queued_bytes = e->q_bytes,
	    .dropped = e->dropped,
	};
	pthread_mutex_unlock(&e->q_lock);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static int add_pairs(struct esdb_emitter *e, size_t *n, topic *t, size_t ev)
{
	if (!t)
		return 0;
	if (*n + t->n > e->pairs_cap) {
		size_t cap = (*n + t->n) * 2;
		pair *p = realloc(e->pairs, cap * sizeof(*p));
		if (!p)
			return ENOMEM;
		e->pairs = p;
		e->pairs_cap = cap;
	}
	for (size_t i = 0; i < t->n; i++)
		e->pairs[(*n)++] = (pair){t->members[i], ev};
	return 0;
}

/* Make room for n items of size sz in *p (capacity *cap). */
static bool reserve(void **p, size_t *cap, size_t n, size_t sz)
{
	if (n <= *cap)
		return true;
	void *q = realloc(*p, n * sz);
	if (!q)
		return false;
	*p = q;
	*cap = n;
	return true;
}

/* Group the pairs by member, keeping event order within each member:
 * counts per member, then each pair's event placed at its group's next
 * slot of e->batch. Returns the number of groups, or 0 when out of
 * memory. */
static size_t group_pairs(struct esdb_emitter *e, const esdb_event *events,
                          size_t np)
{
	/* a commit's distinct members: no more than its pairs or all members */
	size_t most = np < e->memberships ? np : e->memberships;
	size_t cap = 16;
	while (cap < 2 * most)
		cap *= 2;
	if (!reserve((void **)&e->table, &e->table_cap, cap,
	             sizeof(*e->table)) ||
	    !reserve((void **)&e->groups, &e->groups_cap, most,
	             sizeof(*e->groups)) ||
	    !reserve((void **)&e->batch, &e->batch_cap, np, sizeof(*e->batch)))
		return 0;
	memset(e->table, 0, cap * sizeof(*e->table));
	size_t ng = 0;
	for (size_t i = 0; i < np; i++) {
		uint64_t m = e->pairs[i].member;
		size_t h =
		    (size_t)((m * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
		while (e->table[h] && e->groups[e->table[h] - 1].member != m)
			h = (h + 1) & (cap - 1);
		if (!e->table[h]) {
			e->groups[ng] = (group){m, 0, 0};
			e->table[h] = (uint32_t)++ng;
		}
		size_t g = e->table[h] - 1;
		e->groups[g].count++;
		e->pairs[i].member = g;
	}
	for (size_t g = 0, start = 0; g < ng; g++) {
		e->groups[g].start = start;
		start += e->groups[g].count;
		e->groups[g].count = 0;
	}
	for (size_t i = 0; i < np; i++) {
		group *g = &e->groups[e->pairs[i].member];
		e->batch[g->start + g->count++] = events[e->pairs[i].event];
	}
	return ng;
}

void esdb__emitter_restart(esdb_store *s, uint64_t last_position)
{
	struct esdb_emitter *e = s->emitter;
	pthread_mutex_lock(&e->q_lock);
	entry *q = e->head;
	e->head = e->tail = NULL;
	e->dropped += e->q_commits;
	e->q_commits = e->q_bytes = 0;
	e->last_position = last_position;
	e->contiguous_from = last_position + 1;
	pthread_mutex_unlock(&e->q_lock);
	free_entries(q);
}

/* Bytes a field needs in an entry; repeats of the previous event's
 * stream id or type (the events of one append share them) need none. */
static size_t field_bytes(const void *p, size_t len, const void *prev)
{
	return p && p != prev ? len : 0;
}

/* Copy the commit's events and what they point to into one allocation:
 * the views point into command buffers freed once the appenders are
 * answered. */
static entry *copy_commit(const esdb_event *events, size_t n)
{
	size_t bytes = sizeof(entry) + n * sizeof(esdb_event);
	for (size_t i = 0; i < n; i++) {
		const esdb_event *ev = &events[i];
		const esdb_event *pv = i ? &events[i - 1] : NULL;
		bytes += 16 + ev->data_len + ev->metadata_len +
		         (ev->causation_id ? 16 : 0) +
		         (ev->correlation_id ? 16 : 0) +
		         field_bytes(ev->stream_id, ev->stream_id_len,
		                     pv ? pv->stream_id : NULL) +
		         field_bytes(ev->event_type, ev->event_type_len,
		                     pv ? pv->event_type : NULL);
	}
	entry *q = malloc(bytes);
	if (!q)
		return NULL;
	q->next = NULL;
	q->bytes = bytes;
	q->n = n;
	char *at = (char *)(q->events + n);
#define COPY(dst, src, len)                                                    \
	do {                                                                   \
		if (len)                                                       \
			memcpy(at, src, len);                                  \
		dst = (void *)at;                                              \
		at += len;                                                     \
	} while (0)
	for (size_t i = 0; i < n; i++) {
		const esdb_event *ev = &events[i];
		esdb_event *c = &q->events[i];
		*c = *ev;
		COPY(c->event_id, ev->event_id, 16);
		COPY(c->data, ev->data, ev->data_len);
		COPY(c->metadata, ev->metadata, ev->metadata_len);
		if (ev->causation_id)
			COPY(c->causation_id, ev->causation_id, 16);
		if (ev->correlation_id)
			COPY(c->correlation_id, ev->correlation_id, 16);
		if (i && ev->stream_id == events[i - 1].stream_id)
			c->stream_id = q->events[i - 1].stream_id;
		else
			COPY(c->stream_id, ev->stream_id, ev->stream_id_len);
		if (i && ev->event_type == events[i - 1].event_type)
			c->event_type = q->events[i - 1].event_type;
		else
			COPY(c->event_type, ev->event_type, ev->event_type_len);
	}
#undef COPY
	return q;
}

void esdb__emit(esdb_store *s, const esdb_event *events, size_t n)
{
	struct esdb_emitter *e = s->emitter;
	if (!e || n == 0)
		return;
	uint64_t first = events[0].position, last = events[n - 1].position;
	/* Copy before taking q_lock, so that nobody waits on the copy; a
	 * member that joins meanwhile is caught below. */
	pthread_mutex_lock(&e->q_lock);
	bool want = e->deliver && (e->any_topics || e->head);
	pthread_mutex_unlock(&e->q_lock);
	entry *q = want && !esdb__emitter_fault ? copy_commit(events, n) : NULL;

	pthread_mutex_lock(&e->q_lock);
	/* A commit that does not follow the last one seen: another process
	 * wrote in between, and its events reached no member. */
	if (first != e->last_position + 1)
		e->contiguous_from = first;
	e->last_position = last;
	/* Nothing to match now nor queued before it: the commit is done
	 * with (a join from here on answers at least `last`). */
	if (!e->deliver || (!e->any_topics && !e->head)) {
		pthread_mutex_unlock(&e->q_lock);
		free(q);
		return;
	}
	esdb__emitter_fault = false;
	if (!q || e->stopping ||
	    (e->head && e->q_bytes + q->bytes > e->q_max)) {
		/* Dropped, never waited for: later deliveries vouch only for
		 * commits after this one. */
		e->contiguous_from = last + 1;
		e->dropped++;
		pthread_mutex_unlock(&e->q_lock);
		free(q);
		return;
	}
	q->since = e->contiguous_from;
	if (e->tail)
		e->tail->next = q;
	else
		e->head = q;
	e->tail = q;
	e->q_commits++;
	e->q_bytes += q->bytes;
	pthread_cond_signal(&e->work);
	pthread_mutex_unlock(&e->q_lock);
}

/* Match a commit against the topics and group the pairs by member into
 * e->groups / e->batch. Caller holds lock. Returns the number of groups;
 * *ok false when memory ran out. */
static size_t match(struct esdb_emitter *e, const entry *q, bool *ok)
{
	const esdb_event *events = q->events;
	size_t n = q->n, np = 0;
	*ok = true;
	if (e->topics == 0)
		return 0;
	topic *all = *find(e, ESDB_TOPIC_ALL, NULL, 0,
	                   topic_hash(ESDB_TOPIC_ALL, NULL, 0));
	for (size_t i = 0; i < n; i++) {
		const esdb_event *ev = &events[i];
		topic *st = *find(e, ESDB_TOPIC_STREAM, ev->stream_id,
		                  ev->stream_id_len,
		                  topic_hash(ESDB_TOPIC_STREAM, ev->stream_id,
		                             ev->stream_id_len));
		topic *ty = *find(e, ESDB_TOPIC_TYPE, ev->event_type,
		                  ev->event_type_len,
		                  topic_hash(ESDB_TOPIC_TYPE, ev->event_type,
		                             ev->event_type_len));
		if (add_pairs(e, &np, all, i) || add_pairs(e, &np, st, i) ||
		    add_pairs(e, &np, ty, i)) {
			*ok = false;
			return 0;
		}
	}
	if (np == 0)
		return 0;
	size_t ng = group_pairs(e, events, np);
	*ok = ng > 0;
	return ng;
}

static void *emitter_main(void *arg)
{
	struct esdb_emitter *e = arg;
	uint64_t *leaving = NULL;
	size_t cap_leaving = 0;
	pthread_mutex_lock(&e->q_lock);
	for (;;) {
		e->busy = false;
		while (!e->stopping && !e->head && !e->n_leaving) {
			pthread_cond_broadcast(&e->idle);
			pthread_cond_wait(&e->work, &e->q_lock);
		}
		if (e->stopping)
			break;
		/* Members dropped: out of the topics before the next match. */
		size_t nl = e->n_leaving;
		if (nl) {
			uint64_t *t = leaving;
			leaving = e->leaving;
			e->leaving = t;
			size_t c = cap_leaving;
			cap_leaving = e->cap_leaving;
			e->cap_leaving = c;
			e->n_leaving = 0;
		}
		e->busy = true;
		pthread_mutex_unlock(&e->q_lock);

		pthread_mutex_lock(&e->lock);
		for (size_t i = 0; i < nl; i++)
			leave_all_locked(e, leaving[i]);
		pthread_mutex_lock(&e->q_lock);
		e->any_topics = e->topics;
		entry *q = e->head;
		if (q) {
			e->head = q->next;
			if (!e->head)
				e->tail = NULL;
			e->q_commits--;
			e->q_bytes -= q->bytes;
		}
		esdb_delivery_fn deliver = e->deliver;
		void *ctx = e->ctx;
		pthread_mutex_unlock(&e->q_lock);
		bool ok = true;
		size_t ng = q && deliver ? match(e, q, &ok) : 0;
		pthread_mutex_unlock(&e->lock);

		if (q) {
			uint64_t since =
			    q->since > e->floor ? q->since : e->floor;
			/* Out of memory drops this commit's fan-out, never a
			 * commit: subscribers catch up from the store. */
			if (!ok || !deliver)
				e->floor = q->events[q->n - 1].position + 1;
			for (size_t g = 0; g < ng; g++) {
				if (__atomic_load_n(&e->stopping,
				                    __ATOMIC_RELAXED))
					break;
				deliver(ctx, e->groups[g].member, since,
				        e->batch + e->groups[g].start,
				        e->groups[g].count);
			}
			free(q);
		}
		pthread_mutex_lock(&e->q_lock);
	}
	e->busy = false;
	pthread_cond_broadcast(&e->idle);
	pthread_mutex_unlock(&e->q_lock);
	free(leaving);
	return NULL;
}
