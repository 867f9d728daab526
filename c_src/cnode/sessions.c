/* sessions.c: subscription sessions (sessions.h, docs/PROTOCOL.md).
 *
 * A session is one BEAM process (per client node and store) holding
 * members of the core's emitter; committed events are pushed to it as
 * {esdb_events, MemberId, Since, Events} in chunks of at most 256, and
 * it fans them out to its node's subscribers. A session opened with
 * session_open_packed is pushed {esdb_page, MemberId, Since, Count,
 * Page} instead, the events as one read_packed page: the receiving VM
 * decodes ~35 terms an event of a list of records (atoms as text, maps:
 * ~12 us an event, more than the rest of the fan-out), a binary once. Members
 * are c_src/proto's member table (members.h), always ranged: the session
 * applies each subscriber's own gap and credit rules, so the C node never ends
 * a member for a gap, it raises its floor and Since tells.
 *
 * Flow control: a session has a window of events (credit) it returns
 * with session_credit as it takes pushes off its mailbox. A delivery
 * that does not fit the window, or that would take the connection's
 * send queue past its bound, is not queued: the member's floor moves
 * past it and the session is told once with {esdb_missed, MemberId,
 * First}. The emitter's thread never waits for a client, and a client
 * that does not keep up costs at most its window plus a notice per
 * member.
 *
 * A session ends when the EXIT of the link its process made to the
 * session's pid arrives, when its connection closes, or on
 * session_close; its members then leave the emitter. Requests run on
 * the connection's reader thread, deliveries on the emitter's thread;
 * the table's lock is held for a few steps, never while encoding. */
#include "sessions.h"

#include "cluster.h"
#include "members.h"
#include "session_ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Events in one push: the VM's allocators reuse memory for messages
 * this size rather than map fresh pages (the NIF's DELIVERY_CHUNK). */
#define PUSH_CHUNK 256

typedef struct session {
	cn_conn *c;        /* a reference held while the session lives */
	erlang_pid client; /* the session process */
	unsigned num;      /* the pid number of self */
	uint64_t credit;   /* events it may still be pushed */
	bool packed;       /* pushed pages (esdb_page), not lists */
	struct session *next;
} session;

/* A member in c_src/proto's table, with the session holding it and
 * its source: a session joining a source it holds already gets the same
 * member, one more holder (one per subscriber it serves, so stats count
 * subscriptions as the NIF's do); the last holder's leave ends it. */
typedef struct member {
	esdb_member core; /* first: the table's slots are these */
	session *s;
	bool missed;     /* an esdb_missed went out, no push since */
	uint64_t source; /* CN_SOURCE_* */
	char *name;      /* the stream or type (malloc'ed), NULL for all */
	size_t name_len;
	uint64_t holders;
	/* ended, its esdb_emitter_drop failed (ENOMEM): the slot is kept,
	 * naming nobody, until leave_later has it leave the emitter outside
	 * `mu` (1), or while it does (2) */
	int leaving;
} member;

/* A persistent subscription name a session owns on this store: one
 * owner per name (session_claim), so that two client nodes never run
 * the same subscription over one checkpoint. Ends with its session. On
 * a replica only the leader grants claims, each in the raft term it
 * leads in: a claim lives while that term does (cn_sessions_leadership
 * drops it when the node stops leading), so one name has one owner in
 * the cluster, and the owner's checkpoint writes ({as_owner, _}) are
 * fenced to that term. */
typedef struct claim {
	session *s;
	char *name;
	size_t len;
	uint64_t term; /* raft term it was granted in (0: no replica) */
	struct claim *next;
} claim;

struct cn_sessions {
	pthread_mutex_t mu;
	claim *claims;
	pthread_cond_t sent; /* `sending` went back to 0 */
	uint64_t sending;    /* the member a delivery is pushing to, or 0 */
	esdb_members table;
	session *list;
	/* The last delivery's events, encoded as lists of at most PUSH_CHUNK
	 * records, and as packed pages of as many: members of one topic get
	 * the same events of a commit. Used on the emitter's thread only. */
	struct push_cache {
		ei_x_buff *chunks;
		size_t nchunks, chunks_cap;
		uint64_t *pos;
		size_t pos_n, pos_cap;
		bool valid;
	} lists, pages;
	/* Members whose esdb_emitter_drop failed (ENOMEM) and that keep
	 * their slots (member.leaving) until leave_later, after `mu` is let
	 * go, has them leave: leaving waits for the emitter, whose deliver
	 * takes `mu`. Kept in the table, however many: no allocation. */
	size_t n_leaving;
	/* The store is closing (cn_sessions_close): members ending now
	 * leave no emitter, it goes with the store. */
	bool closing;
	/* Test hook (ESDB_CNODE_TEST_CLAIM_NEW_TERM in the environment): each
	 * claim at a leader sees the term one past the last claim's, as if
	 * the node had led again in a new term unseen (a claim reading the
	 * term before raft's loop has told the change); claims so far. */
	bool test_new_term;
	uint64_t test_claims;
};

/* Pid numbers of sessions, node-wide (from 1: 0 names no session). */
static atomic_uint next_num;

static member *slot(struct cn_sessions *t, size_t i)
{
	return (member *)esdb_members_slot(&t->table, i);
}

/* A slot's member serves a session (not free, not leaving). */
static bool in_use(const member *mb)
{
	return mb->core.id && !mb->leaving;
}

/* The member with this id that serves a session, or NULL. */
static member *lookup(struct cn_sessions *t, uint64_t id)
{
	member *mb = (member *)esdb_members_find(&t->table, id);
	return mb && !mb->leaving ? mb : NULL;
}

static bool same_pid(const erlang_pid *a, const erlang_pid *b)
{
	return a->num == b->num && a->serial == b->serial &&
	       a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

/* The session of process `client` on c, or NULL. Lock held. */
static session *find_session(struct cn_sessions *t, cn_conn *c,
                             const erlang_pid *client)
{
	for (session *s = t->list; s; s = s->next)
		if (s->c == c && same_pid(&s->client, client))
			return s;
	return NULL;
}

/* The C node's pid naming s (what its process links to). */
static void self_pid(cn_server *srv, const session *s, erlang_pid *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->node, sizeof(out->node), "%s", ei_thisnodename(&srv->ec));
	out->num = s->num;
	out->serial = 0;
	out->creation = srv->ec.creation;
}

/* Leave the emitter: the slot is free at once, the emitter drops it on
 * its thread (waiting for no delivery). When the drop finds no memory
 * the slot is kept, naming nobody, for leave_later (never a leave under
 * the lock: it waits for a fan-out whose deliver takes the lock). Lock
 * held. */
static void end_member(cn_server *srv, member *mb)
{
	uint64_t id = mb->core.id;
	free(mb->name);
	mb->name = NULL;
	struct cn_sessions *t = srv->sessions;
	if (t->closing || esdb_emitter_drop(srv->store, id) != ENOMEM) {
		esdb_member_end(&mb->core);
		return;
	}
	mb->leaving = 1;
	mb->s = NULL;
	mb->holders = 0;
	t->n_leaving++;
}

/* Member id leaves the emitter, unless the store closed. Lock not
 * held: leaving waits for the emitter, whose deliver takes it. */
static void leave_all(cn_server *srv, uint64_t id)
{
	pthread_rwlock_rdlock(&srv->store_lock);
	if (!srv->closed)
		esdb_emitter_leave_all(srv->store, id, NULL);
	pthread_rwlock_unlock(&srv->store_lock);
}

/* Leave the emitter for the members end_member could not drop, a batch
 * at a time: collected under the lock, left outside it, then their slots
 * freed. Lock not held. */
#define LEAVE_BATCH 16

static void leave_later(cn_server *srv)
{
	struct cn_sessions *t = srv->sessions;
	uint64_t ids[LEAVE_BATCH];
	size_t n;
	do {
		n = 0;
		pthread_mutex_lock(&t->mu);
		for (size_t i = 0;
		     t->n_leaving && i < t->table.n && n < LEAVE_BATCH; i++) {
			member *mb = slot(t, i);
			if (mb->core.id && mb->leaving == 1) {
				mb->leaving = 2; /* this thread's */
				ids[n++] = mb->core.id;
			}
		}
		pthread_mutex_unlock(&t->mu);
		for (size_t i = 0; i < n; i++)
			leave_all(srv, ids[i]);
		pthread_mutex_lock(&t->mu);
		for (size_t i = 0; i < n; i++) {
			member *mb =
			    (member *)esdb_members_find(&t->table, ids[i]);
			if (mb && mb->leaving == 2) {
				mb->leaving = 0;
				esdb_member_end(&mb->core);
				t->n_leaving--;
			}
		}
		pthread_mutex_unlock(&t->mu);
	} while (n == LEAVE_BATCH);
}

/* End session s: its members leave, it is unlinked from the list.
 * Returns its connection reference for the caller to release after
 * unlocking. Lock held. */
static cn_conn *end_session(cn_server *srv, session *s)
{
	struct cn_sessions *t = srv->sessions;
	for (size_t i = 0; i < t->table.n; i++)
		if (in_use(slot(t, i)) && slot(t, i)->s == s)
			end_member(srv, slot(t, i));
	for (session **p = &t->list; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	for (claim **p = &t->claims; *p;) {
		claim *cl = *p;
		if (cl->s == s) {
			*p = cl->next;
			free(cl->name);
			free(cl);
		} else {
			p = &cl->next;
		}
	}
	cn_conn *c = s->c;
	free(s);
	return c;
}

/* ---- pushes (the emitter's thread) ------------------------------------ */

static void encode_uuid(ei_x_buff *x, const uint8_t *id)
{
	char text[36];
	if (!id) {
		ei_x_encode_atom(x, "nil");
		return;
	}
	esdb_uuid_format(id, text);
	ei_x_encode_binary(x, text, 36);
}

/* %DateTime{} in UTC with microseconds, as DateTime.from_unix!(us,
 * :microsecond) makes it; keys in term order (proto.h). */
static void encode_datetime(ei_x_buff *x, uint64_t us)
{
	esdb_proto_date d;
	esdb_proto_date_from_us(us, &d);
	ei_x_encode_map_header(x, 13);
	ei_x_encode_atom(x, "__struct__");
	ei_x_encode_atom(x, "Elixir.DateTime");
	ei_x_encode_atom(x, "calendar");
	ei_x_encode_atom(x, "Elixir.Calendar.ISO");
	ei_x_encode_atom(x, "day");
	ei_x_encode_ulong(x, d.day);
	ei_x_encode_atom(x, "hour");
	ei_x_encode_ulong(x, d.hour);
	ei_x_encode_atom(x, "microsecond");
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_ulong(x, d.microsecond);
	ei_x_encode_ulong(x, 6);
	ei_x_encode_atom(x, "minute");
	ei_x_encode_ulong(x, d.minute);
	ei_x_encode_atom(x, "month");
	ei_x_encode_ulong(x, d.month);
	ei_x_encode_atom(x, "second");
	ei_x_encode_ulong(x, d.second);
	ei_x_encode_atom(x, "std_offset");
	ei_x_encode_ulong(x, 0);
	ei_x_encode_atom(x, "time_zone");
	ei_x_encode_binary(x, "Etc/UTC", 7);
	ei_x_encode_atom(x, "utc_offset");
	ei_x_encode_ulong(x, 0);
	ei_x_encode_atom(x, "year");
	ei_x_encode_longlong(x, d.year);
	ei_x_encode_atom(x, "zone_abbr");
	ei_x_encode_binary(x, "UTC", 3);
}

/* %ExESDB.EventRecord{} as the NIF builds it, keys in term order
 * (proto.h's ESDB_PROTO_RECORD_FIELDS), but for the payloads: read
 * Payloads (bytes, {term, B}, {legacy, B}) that the session decodes
 * with the store's checks (a term decoded by the distribution layer
 * could create atoms). */
static int encode_record(ei_x_buff *x, const esdb_event *ev)
{
	int rc = cn_x_reserve(x, 700 + ev->stream_id_len + ev->event_type_len +
	                             ev->data_len + ev->metadata_len);
	if (rc)
		return rc;
	ei_x_encode_map_header(x, 13);
	ei_x_encode_atom(x, "__struct__");
	ei_x_encode_atom(x, "Elixir.ExESDB.EventRecord");
	ei_x_encode_atom(x, "causation_id");
	encode_uuid(x, ev->causation_id);
	ei_x_encode_atom(x, "correlation_id");
	encode_uuid(x, ev->correlation_id);
	ei_x_encode_atom(x, "created_at");
	encode_datetime(x, ev->created_us);
	ei_x_encode_atom(x, "created_epoch");
	ei_x_encode_ulonglong(x, ev->created_us);
	ei_x_encode_atom(x, "data");
	cn_encode_payload(x, ev->data, ev->data_len, ev->data_encoding);
	ei_x_encode_atom(x, "event_id");
	encode_uuid(x, ev->event_id);
	ei_x_encode_atom(x, "event_number");
	ei_x_encode_ulonglong(x, ev->stream_version);
	ei_x_encode_atom(x, "event_type");
	ei_x_encode_binary(x, ev->event_type, (long)ev->event_type_len);
	ei_x_encode_atom(x, "metadata");
	cn_encode_payload(x, ev->metadata, ev->metadata_len,
	                  ev->metadata_encoding);
	ei_x_encode_atom(x, "position");
	ei_x_encode_ulonglong(x, ev->position);
	ei_x_encode_atom(x, "stream_id");
	ei_x_encode_binary(x, ev->stream_id, (long)ev->stream_id_len);
	ei_x_encode_atom(x, "stream_version");
	ei_x_encode_ulonglong(x, ev->stream_version);
	return 0;
}

static void cache_drop(struct push_cache *t)
{
	for (size_t i = 0; i < t->nchunks; i++)
		ei_x_free(&t->chunks[i]);
	t->nchunks = 0;
	t->valid = false;
}

/* The cache holds these events encoded, PUSH_CHUNK a list (packed: a
 * page, with the payloads' encodings). */
static bool cached(struct push_cache *t, bool packed, const esdb_event *ev,
                   size_t n)
{
	if (t->valid && t->pos_n == n) {
		size_t i = 0;
		while (i < n && t->pos[i] == ev[i].position)
			i++;
		if (i == n)
			return true;
	}
	cache_drop(t);
	size_t chunks = (n + PUSH_CHUNK - 1) / PUSH_CHUNK;
	if (n > t->pos_cap) {
		uint64_t *pos = realloc(t->pos, n * sizeof(*pos));
		if (!pos)
			return false;
		t->pos = pos;
		t->pos_cap = n;
	}
	if (chunks > t->chunks_cap) {
		ei_x_buff *c = realloc(t->chunks, chunks * sizeof(*c));
		if (!c)
			return false;
		t->chunks = c;
		t->chunks_cap = chunks;
	}
	for (size_t k = 0; k < chunks; k++) {
		ei_x_buff *x = &t->chunks[k];
		if (ei_x_new(x) != 0)
			return false;
		t->nchunks = k + 1;
		size_t from = k * PUSH_CHUNK;
		size_t to = from + PUSH_CHUNK < n ? from + PUSH_CHUNK : n;
		if (!packed)
			ei_x_encode_list_header(x, (long)(to - from));
		for (size_t i = from; i < to; i++)
			if ((packed ? cn_encode_packed(x, &ev[i], true)
			            : encode_record(x, &ev[i])) != 0)
				return false;
		if (!packed)
			ei_x_encode_empty_list(x);
	}
	for (size_t i = 0; i < n; i++)
		t->pos[i] = ev[i].position;
	t->pos_n = n;
	t->valid = true;
	return true;
}

/* {esdb_missed, Id, First}, outside the window (one per member until a
 * push succeeds). Lock held. */
static void push_missed(member *mb, uint64_t first)
{
	if (mb->missed)
		return;
	ei_x_buff x;
	if (ei_x_new_with_version(&x) != 0)
		return;
	ei_x_encode_tuple_header(&x, 3);
	ei_x_encode_atom(&x, "esdb_missed");
	ei_x_encode_ulonglong(&x, mb->core.id);
	ei_x_encode_ulonglong(&x, first);
	mb->missed = cn_conn_push(mb->s->c, &mb->s->client, &x, false);
}

static void deliver(void *ctx, uint64_t id, uint64_t since,
                    const esdb_event *events, size_t n)
{
	cn_server *srv = ctx;
	struct cn_sessions *t = srv->sessions;
	uint64_t first = events[0].position, last = events[n - 1].position;
	pthread_mutex_lock(&t->mu);
	member *mb = lookup(t, id);
	if (!mb) {
		pthread_mutex_unlock(&t->mu);
		return;
	}
	session *s = mb->s;
	if (s->credit < n) {
		/* the session is behind: its next push's Since says so */
		esdb_member_undelivered(&mb->core, first, last);
		push_missed(mb, first);
		pthread_mutex_unlock(&t->mu);
		return;
	}
	/* ranged: never a hole here; Since raised to the member's floor */
	esdb_member_deliver(&mb->core, &since, n, first, last);
	s->credit -= n;
	cn_conn *c = s->c;
	erlang_pid to = s->client;
	bool packed = s->packed;
	cn_conn_hold(c);
	t->sending = id;
	pthread_mutex_unlock(&t->mu);

	size_t pushed = 0;
	struct push_cache *pc = packed ? &t->pages : &t->lists;
	bool ok = cached(pc, packed, events, n);
	for (size_t k = 0; ok && k < pc->nchunks; k++) {
		size_t count = k + 1 < pc->nchunks ? PUSH_CHUNK
		                                   : n - k * (size_t)PUSH_CHUNK;
		ei_x_buff x;
		if (ei_x_new_with_version(&x) != 0) {
			ok = false;
			break;
		}
		int rc = 0;
		if (packed) {
			ei_x_encode_tuple_header(&x, 5);
			ei_x_encode_atom(&x, "esdb_page");
			ei_x_encode_ulonglong(&x, id);
			ei_x_encode_ulonglong(&x, since);
			ei_x_encode_ulonglong(&x, count);
			rc = ei_x_encode_binary(&x, pc->chunks[k].buff,
			                        pc->chunks[k].index);
		} else {
			ei_x_encode_tuple_header(&x, 4);
			ei_x_encode_atom(&x, "esdb_events");
			ei_x_encode_ulonglong(&x, id);
			ei_x_encode_ulonglong(&x, since);
			rc = ei_x_append_buf(&x, pc->chunks[k].buff,
			                     pc->chunks[k].index);
		}
		if (rc != 0) {
			ei_x_free(&x);
			ok = false;
			break;
		}
		if (!cn_conn_push(c, &to, &x, true)) { /* x freed */
			ok = false;
			break;
		}
		pushed += count;
	}
	pthread_mutex_lock(&t->mu);
	t->sending = 0;
	pthread_cond_broadcast(&t->sent);
	if ((mb = lookup(t, id))) {
		if (ok) {
			mb->missed = false;
		} else {
			/* what was not queued comes back to the window */
			mb->s->credit += n - pushed;
			esdb_member_undelivered(&mb->core,
			                        events[pushed].position, last);
			push_missed(mb, events[pushed].position);
		}
	}
	pthread_mutex_unlock(&t->mu);
	cn_conn_release(c);
}

/* ---- requests (a connection's reader thread) --------------------------- */

int cn_sessions_start(cn_server *srv)
{
	struct cn_sessions *t = calloc(1, sizeof(*t));
	if (!t)
		return ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->sent, NULL);
	t->table.slot_size = sizeof(member);
	t->test_new_term = getenv("ESDB_CNODE_TEST_CLAIM_NEW_TERM") != NULL;
	/* raft's loop thread may read it (cn_sessions_leadership) */
	__atomic_store_n(&srv->sessions, t, __ATOMIC_RELEASE);
	return esdb_emitter_set_deliver(srv->store, deliver, srv);
}

void cn_sessions_close(cn_server *srv)
{
	struct cn_sessions *t = srv->sessions;
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->closing = true;
	pthread_mutex_unlock(&t->mu);
}

bool cn_sessions_is_request(const char *op)
{
	return strncmp(op, "session_", 8) == 0;
}

uint64_t cn_sessions_members(cn_server *srv)
{
	struct cn_sessions *t = srv->sessions;
	uint64_t n = 0;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->table.n; i++)
		if (in_use(slot(t, i)))
			n += slot(t, i)->holders;
	pthread_mutex_unlock(&t->mu);
	return n;
}

static void reply_limit(caller *k, const char *key, uint64_t max)
{
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "error");
	ei_x_encode_tuple_header(&x, 3);
	ei_x_encode_atom(&x, "limit_exceeded");
	ei_x_encode_atom(&x, key);
	ei_x_encode_ulonglong(&x, max);
	cn_reply_end(k, &x);
}

static void session_open(caller *k, uint64_t window, bool packed)
{
	cn_server *srv = k->srv;
	struct cn_sessions *t = srv->sessions;
	pthread_mutex_lock(&t->mu);
	unsigned count = 0;
	for (session *s = t->list; s; s = s->next)
		count += s->c == k->c;
	if (find_session(t, k->c, &k->from)) {
		pthread_mutex_unlock(&t->mu);
		cn_reply_error(k, "invalid_request", "session_exists");
		return;
	}
	if (count >= srv->max_sessions) {
		pthread_mutex_unlock(&t->mu);
		reply_limit(k, "max_sessions", srv->max_sessions);
		return;
	}
	session *s = calloc(1, sizeof(*s));
	if (!s) {
		pthread_mutex_unlock(&t->mu);
		cn_reply_error(k, NULL, "enomem");
		return;
	}
	cn_conn_hold(k->c);
	unsigned num;
	while ((num = atomic_fetch_add(&next_num, 1) + 1) == 0)
		;
	*s = (session){.c = k->c,
	               .client = k->from,
	               .num = num,
	               .credit = window,
	               .packed = packed,
	               .next = t->list};
	t->list = s;
	erlang_pid self;
	self_pid(srv, s, &self);
	pthread_mutex_unlock(&t->mu);
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "ok");
	ei_x_encode_pid(&x, &self);
	cn_reply_end(k, &x);
}

/* args.c's CN_SOURCE_* kind as the emitter's topic */
static esdb_topic topic_of(uint64_t source)
{
	return source == CN_SOURCE_STREAM ? ESDB_TOPIC_STREAM
	       : source == CN_SOURCE_TYPE ? ESDB_TOPIC_TYPE
	                                  : ESDB_TOPIC_ALL;
}

/* The member of session s for src, or NULL. Lock held. */
static member *held(struct cn_sessions *t, session *s, const arg *src)
{
	for (size_t i = 0; i < t->table.n; i++) {
		member *mb = slot(t, i);
		if (in_use(mb) && mb->s == s && mb->source == src->u &&
		    mb->name_len == src->len &&
		    (!src->len || memcmp(mb->name, src->p, src->len) == 0))
			return mb;
	}
	return NULL;
}

/* Where a held member's deliveries go on from: every later event that
 * matches is pushed (or its Since says it was missed), none before.
 * Pushes up to it may still be on their way: the session skips them for
 * the new holder. Lock held. */
static uint64_t frontier(const member *mb)
{
	uint64_t f = mb->core.joined ? mb->core.joined - 1 : 0;
	if (mb->core.sent_to > f)
		f = mb->core.sent_to;
	if (mb->core.floor && mb->core.floor - 1 > f)
		f = mb->core.floor - 1;
	return f;
}

static void reply_joined(caller *k, uint64_t id, uint64_t last)
{
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 3);
	ei_x_encode_atom(&x, "ok");
	ei_x_encode_ulonglong(&x, id);
	ei_x_encode_ulonglong(&x, last);
	cn_reply_end(k, &x);
}

static void session_join(caller *k, const arg *src)
{
	cn_server *srv = k->srv;
	struct cn_sessions *t = srv->sessions;
	pthread_mutex_lock(&t->mu);
	session *s = find_session(t, k->c, &k->from);
	uint64_t count = 0; /* the connection's subscriptions */
	for (size_t i = 0; s && i < t->table.n; i++)
		if (in_use(slot(t, i)) && slot(t, i)->s->c == k->c)
			count += slot(t, i)->holders;
	if (!s) {
		pthread_mutex_unlock(&t->mu);
		cn_reply_error(k, NULL, "no_session");
		return;
	}
	if (count >= srv->max_subs) {
		pthread_mutex_unlock(&t->mu);
		reply_limit(k, "max_subscriptions", srv->max_subs);
		return;
	}
	member *mb = held(t, s, src);
	if (mb) {
		mb->holders++;
		uint64_t id = mb->core.id, last = frontier(mb);
		pthread_mutex_unlock(&t->mu);
		reply_joined(k, id, last);
		return;
	}
	char *name = src->len ? malloc(src->len) : NULL;
	if (src->len && !name) {
		pthread_mutex_unlock(&t->mu);
		cn_reply_error(k, NULL, "enomem");
		return;
	}
	if (name)
		memcpy(name, src->p, src->len);
	mb = (member *)esdb_members_add(&t->table, ESDB_MEMBER_RANGED,
	                                ESDB_MEMBER_UNBOUNDED);
	if (!mb) {
		pthread_mutex_unlock(&t->mu);
		free(name);
		cn_reply_error(k, NULL, "enomem");
		return;
	}
	mb->s = s;
	mb->source = src->u;
	mb->name = name;
	mb->name_len = src->len;
	mb->holders = 1;
	uint64_t id = mb->core.id;
	pthread_mutex_unlock(&t->mu);
	uint64_t last = 0;
	pthread_rwlock_rdlock(&srv->store_lock);
	int rc = srv->closed ? ESDB_ECLOSED
	                     : esdb_emitter_join(srv->store, topic_of(src->u),
	                                         src->p, src->len, id, &last);
	pthread_rwlock_unlock(&srv->store_lock);
	pthread_mutex_lock(&t->mu);
	mb = lookup(t, id);
	if (rc && mb) {
		free(mb->name);
		mb->name = NULL;
		esdb_member_end(&mb->core);
	} else if (mb) {
		esdb_member_joined(&mb->core, last); /* ranged: never a hole */
	}
	pthread_mutex_unlock(&t->mu);
	if (!rc && !mb) { /* its session ended meanwhile */
		leave_all(srv, id);
		rc = ESDB_ENOTFOUND;
	}
	if (rc == ESDB_ENOTFOUND)
		cn_reply_error(k, NULL, "no_session");
	else if (rc)
		cn_reply_rc(k, rc);
	else
		reply_joined(k, id, last);
}

static void session_leave(caller *k, uint64_t id)
{
	cn_server *srv = k->srv;
	struct cn_sessions *t = srv->sessions;
	pthread_mutex_lock(&t->mu);
	session *s = find_session(t, k->c, &k->from);
	member *mb = s ? lookup(t, id) : NULL;
	bool found = mb && mb->s == s;
	bool ends = found && --mb->holders == 0;
	if (ends)
		end_member(srv, mb);
	/* nothing for it is pushed after the last holder's reply */
	while (ends && t->sending == id)
		pthread_cond_wait(&t->sent, &t->mu);
	pthread_mutex_unlock(&t->mu);
	leave_later(srv);
	if (!s)
		cn_reply_error(k, NULL, "no_session");
	else if (!found)
		cn_reply_error(k, NULL, "not_found");
	else
		cn_reply_rc(k, 0);
}

static void session_credit(caller *k, uint64_t n)
{
	struct cn_sessions *t = k->srv->sessions;
	pthread_mutex_lock(&t->mu);
	session *s = find_session(t, k->c, &k->from);
	if (s)
		s->credit =
		    n > UINT64_MAX - s->credit ? UINT64_MAX : s->credit + n;
	pthread_mutex_unlock(&t->mu);
	if (s)
		cn_reply_rc(k, 0);
	else
		cn_reply_error(k, NULL, "no_session");
}

static void session_close(caller *k)
{
	struct cn_sessions *t = k->srv->sessions;
	pthread_mutex_lock(&t->mu);
	session *s = find_session(t, k->c, &k->from);
	cn_conn *c = s ? end_session(k->srv, s) : NULL;
	pthread_mutex_unlock(&t->mu);
	leave_later(k->srv);
	if (c) {
		cn_conn_release(c);
		cn_reply_rc(k, 0);
	} else {
		cn_reply_error(k, NULL, "no_session");
	}
}

/* The claim on name, or NULL; *pp: where it is linked. Lock held. */
static claim **find_claim(struct cn_sessions *t, const arg *name)
{
	claim **p = &t->claims;
	while (*p && ((*p)->len != name->len ||
	              memcmp((*p)->name, name->p, name->len) != 0))
		p = &(*p)->next;
	return p;
}

/* {esdb_claim_lost, Name, Term} to the claim's session, and the claim
 * goes. Lock held. */
static void drop_claim(claim **p)
{
	claim *cl = *p;
	ei_x_buff x;
	if (ei_x_new_with_version(&x) == 0) {
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_atom(&x, "esdb_claim_lost");
		ei_x_encode_binary(&x, cl->name, (long)cl->len);
		ei_x_encode_ulonglong(&x, cl->term);
		cn_conn_push(cl->s->c, &cl->s->client, &x, false);
	}
	*p = cl->next;
	free(cl->name);
	free(cl);
}

void cn_sessions_leadership(cn_server *srv, uint64_t term)
{
	struct cn_sessions *t =
	    __atomic_load_n(&srv->sessions, __ATOMIC_ACQUIRE);
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	for (claim **p = &t->claims; *p;)
		if (!term || (*p)->term != term)
			drop_claim(p);
		else
			p = &(*p)->next;
	pthread_mutex_unlock(&t->mu);
}

/* Whether srv's store is a replica (then *leading and *term: whether it
 * leads, in which term). Store lock held. */
static bool replica_state(cn_server *srv, bool *leading, uint64_t *term)
{
	*term = 0;
	*leading = false;
	if (srv->closed || !srv->cluster)
		return false;
	*leading = cn_cluster_leading(srv, term);
	return true;
}

/* {session_claim, Name}: ok when this session owns Name now (or did);
 * {error, subscription_already_exists} when another session does. On a
 * replica: {ok, Term} from the leader, the claim's raft term; {error,
 * {not_leader, Leader}} from any other. */
static void session_claim(caller *k, const arg *name)
{
	cn_server *srv = k->srv;
	struct cn_sessions *t = srv->sessions;
	if (!name->len || name->len > srv->limits.max_key) {
		cn_reply_error(k, "invalid_request", "session_claim");
		return;
	}
	bool leading;
	uint64_t term;
	/* `mu` held across the check and the grant: a step-down after the
	 * check drops the claim (raft changes its state, then
	 * cn_sessions_leadership takes `mu`) */
	pthread_rwlock_rdlock(&srv->store_lock);
	pthread_mutex_lock(&t->mu);
	bool replica = replica_state(srv, &leading, &term);
	if (replica && leading && t->test_new_term)
		term += t->test_claims++;
	session *s = find_session(t, k->c, &k->from);
	claim **p = s ? find_claim(t, name) : NULL;
	/* one from an earlier term is no claim any more (dropped, *p is
	 * the next claim: looked up again) */
	if (s && replica && leading && *p && (*p)->term != term) {
		drop_claim(p);
		p = find_claim(t, name);
	}
	unsigned held = 0;
	for (claim *cl = t->claims; s && cl; cl = cl->next)
		held += cl->s == s;
	const char *refused = !s                    ? "no_session"
	                      : replica && !leading ? "not_leader"
	                      : *p && (*p)->s != s
	                          ? "subscription_already_exists"
	                      : !*p && held >= srv->max_subs ? "limit"
	                                                     : NULL;
	claim *cl = NULL;
	if (!refused && !*p) {
		cl = calloc(1, sizeof(*cl));
		char *copy = cl ? malloc(name->len) : NULL;
		if (copy) {
			memcpy(copy, name->p, name->len);
			*cl = (claim){s, copy, name->len, term, t->claims};
			t->claims = cl;
		} else {
			free(cl);
			refused = "enomem";
		}
	}
	pthread_mutex_unlock(&t->mu);
	ei_x_buff x;
	if (refused && strcmp(refused, "not_leader") == 0) {
		cn_reply_begin(k, &x);
		cn_cluster_encode_not_leader(srv, &x);
		cn_reply_end(k, &x);
	}
	pthread_rwlock_unlock(&srv->store_lock);
	if (refused && strcmp(refused, "not_leader") == 0)
		return;
	if (refused && strcmp(refused, "limit") == 0)
		reply_limit(k, "max_subscriptions", srv->max_subs);
	else if (refused)
		cn_reply_error(k, NULL, refused);
	else if (replica) {
		cn_reply_begin(k, &x);
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_ulonglong(&x, term);
		cn_reply_end(k, &x);
	} else
		cn_reply_rc(k, 0);
}

const char *cn_sessions_owner(caller *k, const char *name, size_t len,
                              uint64_t *term)
{
	cn_server *srv = k->srv;
	struct cn_sessions *t = srv->sessions;
	arg a = {.p = name, .len = len};
	bool leading;
	uint64_t now;
	pthread_rwlock_rdlock(&srv->store_lock);
	pthread_mutex_lock(&t->mu);
	bool replica = replica_state(srv, &leading, &now);
	session *s = find_session(t, k->c, &k->from);
	claim **p = s ? find_claim(t, &a) : NULL;
	/* a claim of an earlier term is dropped (its session told) */
	bool stale = s && *p && (*p)->s == s && replica &&
	             (!leading || (*p)->term != now);
	const char *why = !s                             ? "no_session"
	                  : !*p || (*p)->s != s || stale ? "claim_lost"
	                                                 : NULL;
	if (!why)
		*term = (*p)->term;
	else if (stale)
		drop_claim(p);
	pthread_mutex_unlock(&t->mu);
	pthread_rwlock_unlock(&srv->store_lock);
	return why;
}

/* {session_release, Name}: the session's claim on Name goes. */
static void session_release(caller *k, const arg *name)
{
	struct cn_sessions *t = k->srv->sessions;
	pthread_mutex_lock(&t->mu);
	session *s = find_session(t, k->c, &k->from);
	claim **p = s ? find_claim(t, name) : NULL;
	claim *cl = p && *p && (*p)->s == s ? *p : NULL;
	if (cl)
		*p = cl->next;
	pthread_mutex_unlock(&t->mu);
	if (cl) {
		free(cl->name);
		free(cl);
	}
	if (!s)
		cn_reply_error(k, NULL, "no_session");
	else if (!cl)
		cn_reply_error(k, NULL, "not_found");
	else
		cn_reply_rc(k, 0);
}

void cn_sessions_request(caller *k, const cn_envelope *e, const char *m)
{
	const cn_session_op *op = cn_session_op_find(e->op);
	if (!op) {
		cn_reply_error(k, "invalid_request", "unknown_operation");
		return;
	}
	bool takes = op->kind != ESDB_ARG_N;
	if (e->arity != (takes ? 2 : 1)) {
		cn_reply_error(k, "invalid_request", "arity");
		return;
	}
	args a = {m, e->args_at};
	arg v = {0};
	const char *why = NULL;
	if (takes &&
	    (!cn_arg_decode(&a, op->kind, &v, &why) ||
	     ((op->id == CN_SESSION_OPEN || op->id == CN_SESSION_OPEN_PACKED) &&
	      (v.u == 0 || v.u > CN_SESSION_MAX_WINDOW)))) {
		cn_reply_error(k, "invalid_request", op->name);
		return;
	}
	switch (op->id) {
	case CN_SESSION_OPEN:
	case CN_SESSION_OPEN_PACKED:
		session_open(k, v.u, op->id == CN_SESSION_OPEN_PACKED);
		break;
	case CN_SESSION_JOIN:
		session_join(k, &v);
		break;
	case CN_SESSION_LEAVE:
		session_leave(k, v.u);
		break;
	case CN_SESSION_CREDIT:
		session_credit(k, v.u);
		break;
	case CN_SESSION_CLOSE:
		session_close(k);
		break;
	case CN_SESSION_CLAIM:
		session_claim(k, &v);
		break;
	case CN_SESSION_RELEASE:
		session_release(k, &v);
		break;
	}
}

static void store_exit(cn_server *srv, cn_conn *c, const erlang_pid *from,
                       const erlang_pid *to)
{
	struct cn_sessions *t = srv->sessions;
	if (strcmp(to->node, ei_thisnodename(&srv->ec)) != 0 ||
	    to->creation != srv->ec.creation)
		return;
	pthread_mutex_lock(&t->mu);
	session *s = find_session(t, c, from);
	cn_conn *held = s && s->num == to->num ? end_session(srv, s) : NULL;
	pthread_mutex_unlock(&t->mu);
	leave_later(srv);
	if (held)
		cn_conn_release(held);
}

static void store_conn_closed(cn_server *srv, cn_conn *c)
{
	struct cn_sessions *t = srv->sessions;
	if (!t)
		return;
	for (;;) {
		pthread_mutex_lock(&t->mu);
		session *s = t->list;
		while (s && s->c != c)
			s = s->next;
		cn_conn *held = s ? end_session(srv, s) : NULL;
		pthread_mutex_unlock(&t->mu);
		leave_later(srv);
		if (!held)
			return;
		cn_conn_release(held);
	}
}

void cn_sessions_exit(cn_server *srv, cn_conn *c, const erlang_pid *from,
                      const erlang_pid *to)
{
	for (cn_server *s = srv; s; s = s->next_store)
		store_exit(s, c, from, to);
}

void cn_sessions_conn_closed(cn_server *srv, cn_conn *c)
{
	for (cn_server *s = srv; s; s = s->next_store)
		store_conn_closed(s, c);
}
