/* subscriptions.c: processes as emitter members.
 *
 * subscribe/4 makes a member for a pid, joins it to a topic of the core's
 * emitter and monitors the pid; each commit then sends the pid
 * {events, [%ExESDB.EventRecord{}]} with the events it matches, built on
 * the emitter's thread (after the appender was answered). A member goes
 * when unsubscribed or when its process dies: its slot is freed at once
 * (deliveries look members up by id, so none reaches it after) and the
 * emitter is told to drop it (esdb_emitter_drop), which waits for no
 * delivery, so a scheduler handling a process's death is not held up.
 *
 * A NIF cannot see a mailbox, so a member may hold credit: the events it
 * may be sent before its process grants more (grant/3, as it consumes).
 * A commit that does not fit ends the member with
 * {subscription_overflow, {transient, MemberId}, FirstDroppedPosition}.
 * So does a hole in what it was sent (a fan-out the store dropped: its
 * queue was full, or records could not be built), for members without
 * Since in their messages; a ranged member learns of it from Since.
 * Closing the store sends every member {subscription_down,
 * {transient, MemberId}, closed}; what was not yet delivered is not.
 * Ids, credit and gaps are c_src/proto's member table (members.h); this
 * file keeps each member's pid, monitor and format beside it. The member
 * table's lock is held for a few steps only, never while building or
 * sending, and never with the emitter's lock. */
#include "nif.h"

#include "members.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A member in c_src/proto's table (members.h decides ids, credit and
 * gaps), with what this binding needs to reach its process. */
typedef struct member {
	esdb_member core; /* first: the table's slots are these */
	ErlNifPid pid;
	ErlNifMonitor mon;
	ERL_NIF_TERM module; /* an atom: valid in any env */
	bool decode;
} member;

struct members {
	esdb_store *s;
	ErlNifMutex *lock;
	ErlNifCond *sent; /* `sending` went back to 0 */
	uint64_t sending; /* the member a delivery is sending to, or 0 */
	esdb_members table;
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
	return (member *)esdb_members_find(&m->table, id);
}

/* Slot i, free (id 0) or not. Caller holds the lock. */
static member *slot(struct members *m, size_t i)
{
	return (member *)esdb_members_slot(&m->table, i);
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

/* Free a member's slot and have the emitter drop it; caller holds the
 * lock. env: the calling process's, NULL on the emitter's thread. */
static void end_member(ErlNifEnv *env, store_res *r, member *mb, bool demonitor)
{
	struct members *m = r->members;
	uint64_t id = mb->core.id;
	if (demonitor)
		enif_demonitor_process(env, r, &mb->mon);
	esdb_member_end(&mb->core);
	if (esdb_emitter_drop(m->s, id) == ENOMEM)
		esdb_emitter_leave_all(m->s, id, NULL);
}

static void sending_done(struct members *m)
{
	enif_mutex_lock(m->lock);
	m->sending = 0;
	enif_cond_broadcast(m->sent);
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
	bool decode = mb->decode;
	bool tagged = mb->core.shape == ESDB_MEMBER_TAGGED;
	bool ranged = mb->core.shape == ESDB_MEMBER_RANGED;
	uint64_t hole = esdb_member_deliver(
	    &mb->core, &since, n, events[0].position, events[n - 1].position);
	if (hole) {
		end_member(NULL, r, mb, true);
		enif_mutex_unlock(m->lock);
		notify(&pid, atom_overflow, id, &hole);
		return;
	}
	m->sending = id;
	enif_mutex_unlock(m->lock);
	ErlNifEnv *env = enif_alloc_env();
	if (!env || !records_cached(m, events, n, module, decode)) {
		if (env)
			enif_free_env(env);
		enif_mutex_lock(m->lock);
		m->sending = 0;
		enif_cond_broadcast(m->sent);
		/* a ranged member's next delivery says so through Since */
		uint64_t missed = 0;
		if ((mb = lookup(m, id)) && (missed = esdb_member_undelivered(
		                                 &mb->core, events[0].position,
		                                 events[n - 1].position))) {
			end_member(NULL, r, mb, true);
			enif_mutex_unlock(m->lock);
			notify(&pid, atom_overflow, id, &missed);
			return;
		}
		enif_mutex_unlock(m->lock);
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
	sending_done(m);
}

int subs_attach(store_res *r)
{
	struct members *m = calloc(1, sizeof(*m));
	if (!m || !(m->lock = enif_mutex_create("ex_esdb_members")) ||
	    !(m->sent = enif_cond_create("ex_esdb_members_sent"))) {
		if (m && m->lock)
			enif_mutex_destroy(m->lock);
		free(m);
		return ENOMEM;
	}
	m->s = r->s;
	m->table.slot_size = sizeof(member);
	r->members = m;
	return esdb_emitter_set_deliver(r->s, deliver, r);
}

void subs_notify_down(store_res *r)
{
	struct members *m = r->members;
	if (!m)
		return;
	enif_mutex_lock(m->lock);
	for (size_t i = 0; i < m->table.n; i++)
		if (slot(m, i)->core.id)
			notify(&slot(m, i)->pid, atom_down, slot(m, i)->core.id,
			       NULL);
	enif_mutex_unlock(m->lock);
}

size_t subs_count(store_res *r)
{
	struct members *m = r->members;
	if (!m)
		return 0;
	enif_mutex_lock(m->lock);
	size_t count = esdb_members_count(&m->table);
	enif_mutex_unlock(m->lock);
	return count;
}

void subs_detach(store_res *r)
{
	struct members *m = r->members;
	if (!m)
		return;
	enif_mutex_destroy(m->lock);
	enif_cond_destroy(m->sent);
	if (m->cache_env)
		enif_free_env(m->cache_env);
	enif_free(m->cache_lists.terms);
	enif_free(m->cache_pos);
	esdb_members_free(&m->table);
	free(m);
	r->members = NULL;
}

/* subscribe(Store, Pid, Source, {Module, Decode} [, Shape [, Credit]])
 *   Source: all | {stream, StreamId} | {type, EventType}
 *   Shape: false (default) | true | ranged
 *   Credit: infinity (default) | the events it may be sent before grant/3
 *   -> {ok, MemberId, LastPosition} | {error, Reason}
 * Every matching event after LastPosition will be sent to Pid, as
 * {events, Records}; with Shape true as {events, MemberId, Records} (one
 * process holding several memberships: a relay); with Shape ranged as
 * {events, Records, Since}, Since as esdb_delivery_fn says (a subscriber
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
	uint64_t credit = ESDB_MEMBER_UNBOUNDED;
	if (argc == 6 &&
	    !enif_is_identical(argv[5], enif_make_atom(env, "infinity")) &&
	    (!nif_get_u64(env, argv[5], &credit) || credit == 0 ||
	     credit == ESDB_MEMBER_UNBOUNDED))
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
	member *mb = (member *)esdb_members_add(&m->table,
	                                        tagged   ? ESDB_MEMBER_TAGGED
	                                        : ranged ? ESDB_MEMBER_RANGED
	                                                 : ESDB_MEMBER_PLAIN,
	                                        credit);
	int rc = ENOMEM;
	if (mb) {
		mb->pid = pid;
		mb->module = module;
		mb->decode = decode;
		rc = enif_monitor_process(env, r, &pid, &mb->mon) ? ESDB_ENOPROC
		                                                  : 0;
		if (rc) /* the process is already dead */
			esdb_member_end(&mb->core);
	}
	uint64_t id = mb ? mb->core.id : 0;
	enif_mutex_unlock(m->lock);
	uint64_t last = 0;
	if (rc == 0 &&
	    (rc = esdb_emitter_join(r->s, topic, (const char *)name.data,
	                            name.size, id, &last))) {
		enif_mutex_lock(m->lock);
		member *gone = lookup(m, id);
		if (gone) {
			enif_demonitor_process(env, r, &gone->mon);
			esdb_member_end(&gone->core);
		}
		enif_mutex_unlock(m->lock);
	} else if (rc == 0) {
		/* The process may have died between the monitor and the join:
		 * subs_down then freed the slot, and the emitter may have
		 * dropped the member before the join. Leave again rather than
		 * keep a member for no one. */
		enif_mutex_lock(m->lock);
		member *mb = lookup(m, id);
		/* a delivery came before the join answered: did it follow
		 * on from `last`? */
		uint64_t missed = mb ? esdb_member_joined(&mb->core, last) : 0;
		if (missed) {
			end_member(env, r, mb, true);
			notify(&pid, atom_overflow, id, &missed);
		}
		enif_mutex_unlock(m->lock);
		if (!mb) {
			esdb_emitter_leave_all(r->s, id, NULL);
			rc = ESDB_ENOPROC;
		}
	}
	nif_store_release(r);
	if (rc)
		return nif_error_term(env, rc);
	return enif_make_tuple3(env, enif_make_atom(env, "ok"),
	                        enif_make_uint64(env, id),
	                        enif_make_uint64(env, last));
}

/* Free the member's slot and drop it from the emitter. With `wait`,
 * also wait until no delivery is sending to it, so that nothing reaches
 * its process after this returns. */
static bool remove_member(ErlNifEnv *env, store_res *r, uint64_t id,
                          bool demonitor, bool wait)
{
	struct members *m = r->members;
	enif_mutex_lock(m->lock);
	member *mb = lookup(m, id);
	if (mb)
		end_member(env, r, mb, demonitor);
	while (wait && m->sending == id)
		enif_cond_wait(m->sent, m->lock);
	enif_mutex_unlock(m->lock);
	return mb != NULL;
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
		rc = mb ? 0 : ESDB_ENOTFOUND;
		if (rc == 0)
			esdb_member_grant(&mb->core, n);
		enif_mutex_unlock(m->lock);
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
	int rc =
	    r->closed
	        ? ESDB_ECLOSED
	        : (remove_member(env, r, id, true, true) ? 0 : ESDB_ENOTFOUND);
	nif_store_release(r);
	return rc ? nif_error_term(env, rc) : enif_make_atom(env, "ok");
}

/* A subscribed process died: drop its member. Runs on a normal
 * scheduler: it takes the member table's lock for a scan and hands the
 * emitter's part to the emitter's thread (end_member), waiting for no
 * delivery. */
void subs_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon)
{
	store_res *r = obj;
	enif_rwlock_rlock(r->lock);
	if (!r->closed && r->members) {
		struct members *m = r->members;
		enif_mutex_lock(m->lock);
		for (size_t i = 0; i < m->table.n; i++)
			if (slot(m, i)->core.id &&
			    enif_compare_monitors(&slot(m, i)->mon, mon) == 0) {
				end_member(env, r, slot(m, i), false);
				break;
			}
		enif_mutex_unlock(m->lock);
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
