/* emitter.c: fan-out of committed events to topic members (:pg style).
 *
 * Topics ($all, a stream, an event type) live in a hash table of member
 * lists. After a commit, every event is matched against its three
 * possible topics; the (member, event) pairs are grouped by member (a
 * counting sort over a small hash table of the commit's members) so each
 * member gets one delivery per commit with its events in position order. */
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

struct esdb_emitter {
	pthread_mutex_t lock;
	topic *buckets[BUCKETS];
	size_t topics;
	esdb_deliver_fn deliver;
	void *ctx;
	uint64_t last_position;
	/* the first position of the unbroken run of commits fanned out */
	uint64_t contiguous_from;
	size_t memberships; /* in all topics: bounds a commit's groups */
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
	e->last_position = last_position;
	e->contiguous_from = last_position + 1;
	s->emitter = e;
	return 0;
}

void esdb__emitter_destroy(esdb_store *s)
{
	struct esdb_emitter *e = s->emitter;
	if (!e)
		return;
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

int esdb_emitter_set(esdb_store *s, esdb_deliver_fn deliver, void *ctx)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	pthread_mutex_lock(&s->emitter->lock);
	s->emitter->deliver = deliver;
	s->emitter->ctx = ctx;
	pthread_mutex_unlock(&s->emitter->lock);
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
	if (rc == 0 && last_position)
		*last_position = e->last_position;
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
	pthread_mutex_unlock(&e->lock);
	return left ? 0 : ESDB_ENOTFOUND;
}

int esdb_emitter_leave_all(esdb_store *s, uint64_t member, size_t *count)
{
	if (!s || !s->emitter)
		return ESDB_ECLOSED;
	struct esdb_emitter *e = s->emitter;
	size_t n = 0;
	pthread_mutex_lock(&e->lock);
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
	pthread_mutex_unlock(&e->lock);
	if (count)
		*count = n;
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
	pthread_mutex_lock(&e->lock);
	e->last_position = last_position;
	e->contiguous_from = last_position + 1;
	pthread_mutex_unlock(&e->lock);
}

void esdb__emit(esdb_store *s, const esdb_event *events, size_t n)
{
	struct esdb_emitter *e = s->emitter;
	if (!e || n == 0)
		return;
	pthread_mutex_lock(&e->lock);
	/* A commit that does not follow the last one seen: another process
	 * wrote in between, and its events reached no member. */
	if (events[0].position != e->last_position + 1)
		e->contiguous_from = events[0].position;
	e->last_position = events[n - 1].position;
	if (!e->deliver || e->topics == 0)
		goto out;
	if (esdb__emitter_fault) {
		esdb__emitter_fault = false;
		goto dropped;
	}
	size_t np = 0;
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
		/* Out of memory drops this commit's fan-out, never a commit:
		 * subscribers catch up from the store. */
		if (add_pairs(e, &np, all, i) || add_pairs(e, &np, st, i) ||
		    add_pairs(e, &np, ty, i))
			goto dropped;
	}
	if (np == 0)
		goto out;
	size_t ng = group_pairs(e, events, np);
	if (ng == 0)
		goto dropped;
	for (size_t g = 0; g < ng; g++)
		e->deliver(e->ctx, e->groups[g].member, e->contiguous_from,
		           e->batch + e->groups[g].start, e->groups[g].count);
	goto out;
dropped:
	/* Later deliveries vouch only for commits after this one. */
	e->contiguous_from = e->last_position + 1;
out:
	pthread_mutex_unlock(&e->lock);
}
