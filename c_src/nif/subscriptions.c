/* subscriptions.c: processes as emitter members.
 *
 * subscribe/4 makes a member for a pid, joins it to a topic of the core's
 * emitter and monitors the pid; each commit then sends the pid
 * {events, [%ExESDB.EventRecord{}]} with the events it matches, built on
 * the writer thread. A member goes when unsubscribed or when its process
 * dies.
 *
 * A NIF cannot see a mailbox, so a member may hold credit: the events it
 * may be sent before its process grants more (grant/3, as it consumes).
 * A commit that does not fit ends the member with
 * {subscription_overflow, {transient, MemberId}, FirstDroppedPosition};
 * closing the store sends every member {subscription_down,
 * {transient, MemberId}, closed}. Lock order: the emitter's lock (held while
 * delivering) before the member table's, so leaving the emitter happens without
 * the table lock. */
#include "nif.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct member {
	uint64_t id; /* slot | generation << 32; 0 when free */
	ErlNifPid pid;
	ErlNifMonitor mon;
	ERL_NIF_TERM module; /* an atom: valid in any env */
	bool decode;
	bool tagged; /* send {events, MemberId, Records}: a relay's member */
	bool ranged; /* send {events, Records, Since}: a persistent one's */
	/* deliveries vouch for nothing below this: one of this member's
	 * fan-outs could not be built */
	uint64_t floor;
	uint64_t credit; /* events it may still be sent; UNBOUNDED: no limit */
	bool overflowed; /* ended by a commit past its credit; reaped later */
} member;

#define UNBOUNDED UINT64_MAX

/* Member ids are slot | generation << 32 with one generation counter for
 * every store of the VM: a store reopened starts its slots again, and a
 * handle from before must not name a member of the new store. */
static uint32_t generations;

struct members {
	ErlNifMutex *lock;
	member *slots;
	size_t n, cap;
	/* The last list of records built: members of one topic get the same
	 * events of a commit, and copying a built list costs less than
	 * building it again. Used on the delivering thread only. */
	ErlNifEnv *cache_env;
	term_list cache_lists; /* the records, DELIVERY_CHUNK per list */
	ERL_NIF_TERM cache_module;
	uint64_t *cache_pos; /* the positions of the cached events */
	size_t cache_n, cache_cap;
	bool cache_decode, cache_valid;
};

/* Events of one commit go out in messages of at most this many records:
 * small enough for the VM's allocators to reuse memory for them rather than
 * map fresh pages for every message. */
#define DELIVERY_CHUNK 256

static ERL_NIF_TERM atom_events, atom_overflow, atom_down, atom_transient,
    atom_closed;

/* The member for an id, or NULL. Caller holds the lock. */
static member *lookup(struct members *m, uint64_t id)
{
	size_t slot = (size_t)(id & 0xffffffffu);
	if (slot >= m->n || m->slots[slot].id != id)
		return NULL;
	return &m->slots[slot];
}

/* Whether the cache holds these events: members of one topic get the
 * same events of a commit, members of different topics may get different
 * events with the same count, first and last position. */
static bool cache_holds(const struct members *m, const esdb_event *events,
                        size_t n, ERL_NIF_TERM module, bool decode)
{
	if (!m->cache_valid || m->cache_n != n || m->cache_decode != decode ||
	    !enif_is_identical(m->cache_module, module))
		return false;
	for (size_t i = 0; i < n; i++)
		if (m->cache_pos[i] != events[i].position)
			return false;
	return true;
}

/* Make sure the cache holds the records of these events. */
static bool records_cached(struct members *m, const esdb_event *events,
                           size_t n, ERL_NIF_TERM module, bool decode)
{
	if (cache_holds(m, events, n, module, decode))
		return true;
	m->cache_valid = false;
	if (!m->cache_env && !(m->cache_env = enif_alloc_env()))
		return false;
	if (n > m->cache_cap) {
		uint64_t *pos = enif_realloc(m->cache_pos, n * sizeof(*pos));
		if (!pos)
			return false;
		m->cache_pos = pos;
		m->cache_cap = n;
	}
	enif_clear_env(m->cache_env);
	m->cache_lists.n = 0;
	m->cache_valid = records_build(m->cache_env, events, n, module, decode,
	                               DELIVERY_CHUNK, &m->cache_lists);
	for (size_t i = 0; i < n; i++)
		m->cache_pos[i] = events[i].position;
	m->cache_n = n;
	m->cache_module = module;
	m->cache_decode = decode;
	return m->cache_valid;
}

/* Send {Tag, {transient, Id}, Position} (or `closed` when position is
 * NULL) to pid, from an environment of its own. */
static void notify(ErlNifPid *pid, ERL_NIF_TERM tag, uint64_t id,
                   const uint64_t *position)
{
	ErlNifEnv *env = enif_alloc_env();
	if (!env)
		return;
	ERL_NIF_TERM handle =
	    enif_make_tuple2(env, atom_transient, enif_make_uint64(env, id));
	ERL_NIF_TERM detail =
	    position ? enif_make_uint64(env, *position) : atom_closed;
	enif_send(NULL, pid, env, enif_make_tuple3(env, tag, handle, detail));
	enif_free_env(env);
}

/* Record that a fan-out to member `id` was lost: its next delivery says
 * so through its `since`. */
static void lost(struct members *m, uint64_t id, uint64_t last_position)
{
	enif_mutex_lock(m->lock);
	member *mb = lookup(m, id);
	if (mb)
		mb->floor = last_position + 1;
	enif_mutex_unlock(m->lock);
}

static void deliver(void *ctx, uint64_t id, uint64_t since,
                    const esdb_event *events, size_t n)
{
	store_res *r = ctx;
	struct members *m = r->members;
	enif_mutex_lock(m->lock);
	member *mb = lookup(m, id);
	if (!mb) {
		enif_mutex_unlock(m->lock);
		return;
	}
	ErlNifPid pid = mb->pid;
	ERL_NIF_TERM module = mb->module;
	bool decode = mb->decode, tagged = mb->tagged, ranged = mb->ranged;
	if (mb->floor > since)
		since = mb->floor;
	bool overflow = false;
	if (mb->overflowed) {
		enif_mutex_unlock(m->lock);
		return;
	}
	if (mb->credit != UNBOUNDED) {
		if (mb->credit < n)
			overflow = mb->overflowed = true;
		else
			mb->credit -= n;
	}
	enif_mutex_unlock(m->lock);
	if (overflow) {
		notify(&pid, atom_overflow, id, &events[0].position);
		return;
	}
	ErlNifEnv *env = enif_alloc_env();
	if (!env || !records_cached(m, events, n, module, decode)) {
		lost(m, id, events[n - 1].position);
		if (env)
			enif_free_env(env);
		return;
	}
	for (size_t i = 0; i < m->cache_lists.n; i++) {
		ERL_NIF_TERM list =
		    enif_make_copy(env, m->cache_lists.terms[i]);
		ERL_NIF_TERM msg =
		    tagged   ? enif_make_tuple3(env, atom_events,
		                                enif_make_uint64(env, id), list)
		    : ranged ? enif_make_tuple3(env, atom_events, list,
		                                enif_make_uint64(env, since))
		             : enif_make_tuple2(env, atom_events, list);
		enif_send(NULL, &pid, env, msg);
		/* A sent environment must be cleared before it is used
		 * again: its heap now belongs to the message. */
		enif_clear_env(env);
	}
	enif_free_env(env);
}

int subs_attach(store_res *r)
{
	struct members *m = calloc(1, sizeof(*m));
	if (!m || !(m->lock = enif_mutex_create("ex_esdb_members"))) {
		free(m);
		return ENOMEM;
	}
	r->members = m;
	return esdb_emitter_set(r->s, deliver, r);
}

void subs_notify_down(store_res *r)
{
	struct members *m = r->members;
	if (!m)
		return;
	enif_mutex_lock(m->lock);
	for (size_t i = 0; i < m->n; i++)
		if (m->slots[i].id && !m->slots[i].overflowed)
			notify(&m->slots[i].pid, atom_down, m->slots[i].id,
			       NULL);
	enif_mutex_unlock(m->lock);
}

void subs_detach(store_res *r)
{
	struct members *m = r->members;
	if (!m)
		return;
	enif_mutex_destroy(m->lock);
	if (m->cache_env)
		enif_free_env(m->cache_env);
	enif_free(m->cache_lists.terms);
	enif_free(m->cache_pos);
	free(m->slots);
	free(m);
	r->members = NULL;
}

/* A free slot (grown when full); caller holds the lock. */
static member *alloc_member(struct members *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->slots[i].id == 0)
			return &m->slots[i];
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		member *s = realloc(m->slots, cap * sizeof(*s));
		if (!s)
			return NULL;
		m->slots = s;
		m->cap = cap;
	}
	memset(&m->slots[m->n], 0, sizeof(member));
	return &m->slots[m->n++];
}

/* subscribe(Store, Pid, Source, {Module, Decode} [, Shape [, Credit]])
 *   Source: all | {stream, StreamId} | {type, EventType}
 *   Shape: false (default) | true | ranged
 *   Credit: infinity (default) | the events it may be sent before grant/3
 *   -> {ok, MemberId, LastPosition} | {error, Reason}
 * Every matching event after LastPosition will be sent to Pid, as
 * {events, Records}; with Shape true as {events, MemberId, Records} (one
 * process holding several memberships: a relay); with Shape ranged as
 * {events, Records, Since}, Since as esdb_deliver_fn says (a subscriber
 * that must notice a gap: a persistent subscription). */
ERL_NIF_TERM nif_subscribe(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	store_res *r;
	ErlNifPid pid;
	esdb_topic topic;
	ErlNifBinary name;
	ERL_NIF_TERM module;
	bool decode;
	bool tagged = argc >= 5 &&
	              enif_is_identical(argv[4], enif_make_atom(env, "true"));
	bool ranged = argc >= 5 &&
	              enif_is_identical(argv[4], enif_make_atom(env, "ranged"));
	uint64_t credit = UNBOUNDED;
	if (argc == 6 &&
	    !enif_is_identical(argv[5], enif_make_atom(env, "infinity")) &&
	    (!nif_get_u64(env, argv[5], &credit) || credit == 0 ||
	     credit == UNBOUNDED))
		return enif_make_badarg(env);
	if (!enif_get_local_pid(env, argv[1], &pid) ||
	    !records_source(env, argv[2], &topic, &name) ||
	    !records_format(env, argv[3], &module, &decode) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	if (r->closed) {
		nif_store_release(r);
		return nif_error_term(env, ESDB_ECLOSED);
	}
	struct members *m = r->members;
	enif_mutex_lock(m->lock);
	member *mb = alloc_member(m);
	int rc = ENOMEM;
	if (mb) {
		uint32_t generation =
		    __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED) | 1u;
		mb->id =
		    (uint64_t)(mb - m->slots) | ((uint64_t)generation << 32);
		mb->pid = pid;
		mb->module = module;
		mb->decode = decode;
		mb->tagged = tagged;
		mb->ranged = ranged;
		mb->floor = 0;
		mb->credit = credit;
		mb->overflowed = false;
		rc = enif_monitor_process(env, r, &pid, &mb->mon) ? ESDB_EINVAL
		                                                  : 0;
		if (rc)
			mb->id = 0; /* the process is already dead */
	}
	uint64_t id = mb ? mb->id : 0;
	enif_mutex_unlock(m->lock);
	uint64_t last = 0;
	if (rc == 0 &&
	    (rc = esdb_emitter_join(r->s, topic, (const char *)name.data,
	                            name.size, id, &last))) {
		enif_mutex_lock(m->lock);
		member *gone = lookup(m, id);
		if (gone) {
			enif_demonitor_process(env, r, &gone->mon);
			gone->id = 0;
		}
		enif_mutex_unlock(m->lock);
	} else if (rc == 0) {
		/* The process may have died between the monitor and the join:
		 * subs_down then left the emitter before the join and freed
		 * the slot. Leave again rather than keep a member for no one.
		 */
		enif_mutex_lock(m->lock);
		bool alive = lookup(m, id) != NULL;
		enif_mutex_unlock(m->lock);
		if (!alive) {
			esdb_emitter_leave_all(r->s, id, NULL);
			rc = ESDB_EINVAL;
		}
	}
	nif_store_release(r);
	if (rc == ESDB_EINVAL) /* the process is gone */
		return enif_make_tuple2(env, enif_make_atom(env, "error"),
		                        enif_make_atom(env, "noproc"));
	if (rc)
		return nif_error_term(env, rc);
	return enif_make_tuple3(env, enif_make_atom(env, "ok"),
	                        enif_make_uint64(env, id),
	                        enif_make_uint64(env, last));
}

/* Leave the emitter first (its lock comes first), then free the slot. */
static bool remove_member(ErlNifEnv *env, store_res *r, uint64_t id,
                          bool demonitor)
{
	esdb_emitter_leave_all(r->s, id, NULL);
	struct members *m = r->members;
	enif_mutex_lock(m->lock);
	member *mb = lookup(m, id);
	if (mb) {
		if (demonitor)
			enif_demonitor_process(env, r, &mb->mon);
		mb->id = 0;
	}
	enif_mutex_unlock(m->lock);
	return mb != NULL;
}

/* Free the members a commit past their credit ended: deliver() cannot
 * leave the emitter (it runs under the emitter's lock). */
static void reap(ErlNifEnv *env, store_res *r)
{
	struct members *m = r->members;
	for (;;) {
		uint64_t id = 0;
		enif_mutex_lock(m->lock);
		for (size_t i = 0; i < m->n && !id; i++)
			if (m->slots[i].id && m->slots[i].overflowed)
				id = m->slots[i].id;
		enif_mutex_unlock(m->lock);
		if (!id)
			return;
		remove_member(env, r, id, true);
	}
}

/* grant(Store, MemberId, N) -> ok | {error, not_found}
 * N more events may be sent to the member (one it ended is not found). */
ERL_NIF_TERM nif_grant(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	store_res *r;
	uint64_t id, n;
	if (!nif_get_u64(env, argv[1], &id) || !nif_get_u64(env, argv[2], &n) ||
	    n == 0 || !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	int rc = ESDB_ECLOSED;
	if (!r->closed) {
		struct members *m = r->members;
		enif_mutex_lock(m->lock);
		member *mb = lookup(m, id);
		rc = mb && !mb->overflowed ? 0 : ESDB_ENOTFOUND;
		/* saturating, below UNBOUNDED */
		if (rc == 0 && mb->credit != UNBOUNDED)
			mb->credit = n >= UNBOUNDED - 1 - mb->credit
			                 ? UNBOUNDED - 1
			                 : mb->credit + n;
		enif_mutex_unlock(m->lock);
		reap(env, r);
	}
	nif_store_release(r);
	return rc ? nif_error_term(env, rc) : enif_make_atom(env, "ok");
}

/* unsubscribe(Store, MemberId) -> ok | {error, not_found} */
ERL_NIF_TERM nif_unsubscribe(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
	store_res *r;
	uint64_t id;
	if (!nif_get_u64(env, argv[1], &id) ||
	    !nif_store_acquire(env, argv[0], &r))
		return enif_make_badarg(env);
	int rc = r->closed
	             ? ESDB_ECLOSED
	             : (remove_member(env, r, id, true) ? 0 : ESDB_ENOTFOUND);
	if (!r->closed)
		reap(env, r);
	nif_store_release(r);
	return rc ? nif_error_term(env, rc) : enif_make_atom(env, "ok");
}

/* A subscribed process died: drop its member(s). */
void subs_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon)
{
	store_res *r = obj;
	enif_rwlock_rlock(r->lock);
	if (!r->closed && r->members) {
		uint64_t id = 0;
		struct members *m = r->members;
		enif_mutex_lock(m->lock);
		for (size_t i = 0; i < m->n && !id; i++)
			if (m->slots[i].id &&
			    enif_compare_monitors(&m->slots[i].mon, mon) == 0)
				id = m->slots[i].id;
		enif_mutex_unlock(m->lock);
		if (id)
			remove_member(env, r, id, false);
	}
	enif_rwlock_runlock(r->lock);
}

void subs_init(ErlNifEnv *env)
{
	atom_events = enif_make_atom(env, "events");
	atom_overflow = enif_make_atom(env, "subscription_overflow");
	atom_down = enif_make_atom(env, "subscription_down");
	atom_transient = enif_make_atom(env, "transient");
	atom_closed = enif_make_atom(env, "closed");
}
