/* cluster.c: the C node's first store as a raft replica, from --raft-*
 * options (the NIF's cluster_open/3 map as flags), and the requests
 * cluster_info and cluster_members. The leader is named to clients by
 * its C node name, known from the --raft-member list (every member is
 * given the same list: raft ids carry no names), or, for a member added
 * at run time with its name, from the name the leader replicated. */
#include "cluster.h"

#include "copies.h"
#include "ops.h"
#include "sessions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn static void bad(const char *flag, const char *v, const char *want)
{
	fprintf(stderr, "ex_esdb_cnode: %s %s: %s\n", flag, v, want);
	exit(2);
}

static unsigned long long num(const char *flag, const char *v,
                              unsigned long long max)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || !*v || *end || *v == '-' || n > max)
		bad(flag, v, "wants a number in range");
	return n;
}

/* "ip:port", no NUL, under 256 bytes, with a port. */
static const char *address(const char *flag, const char *v)
{
	const char *colon = strrchr(v, ':');
	if (!colon || colon == v || !colon[1] || strlen(v) >= 256)
		bad(flag, v, "wants IP:PORT");
	num(flag, colon + 1, 65535);
	return v;
}

bool cn_cluster_arg(cn_cluster_opts *o, const char *f, const char *v)
{
	if (strncmp(f, "--raft-", 7) != 0)
		return false;
	if (strcmp(f, "--raft-id") == 0) {
		o->id = num(f, v, UINT64_MAX);
		if (!o->id)
			bad(f, v, "wants a nonzero id");
	} else if (strcmp(f, "--raft-address") == 0) {
		o->address = address(f, v);
	} else if (strcmp(f, "--raft-bind") == 0) {
		o->bind = address(f, v);
	} else if (strcmp(f, "--raft-member") == 0) {
		/* ID,IP:PORT,NAME@HOST */
		const char *c1 = strchr(v, ','),
		           *c2 = c1 ? strchr(c1 + 1, ',') : 0;
		if (!c2 || !strchr(c2 + 1, '@') || strchr(c2 + 1, ','))
			bad(f, v, "wants ID,IP:PORT,NAME@HOST");
		if (o->n_members == CN_CLUSTER_MAX_MEMBERS)
			bad(f, v, "too many members");
		cn_cluster_member *m = &o->members[o->n_members++];
		char *id = strndup(v, (size_t)(c1 - v));
		char *addr = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
		if (!id || !addr)
			bad(f, v, "out of memory");
		m->id = num(f, id, UINT64_MAX);
		if (!m->id)
			bad(f, v, "wants a nonzero id");
		m->address = address(f, addr);
		m->cnode = c2 + 1;
		free(id);
	} else if (strcmp(f, "--raft-copy-from") == 0) {
		if (!strchr(v, '@') || strlen(v) >= MAXNODELEN)
			bad(f, v, "wants NAME@HOST");
		if (o->n_copy_from == CN_CLUSTER_MAX_MEMBERS)
			bad(f, v, "too many copy sources");
		o->copy_from[o->n_copy_from++] = v;
	} else if (strcmp(f, "--raft-wiped") == 0) {
		if (strcmp(v, "rejoin") != 0 && strcmp(v, "refuse") != 0)
			bad(f, v, "wants rejoin or refuse");
		o->wiped_rejoin = strcmp(v, "rejoin") == 0;
	} else if (strcmp(f, "--raft-election-timeout-ms") == 0) {
		o->election_ms = num(f, v, 600000);
	} else if (strcmp(f, "--raft-heartbeat-ms") == 0) {
		o->heartbeat_ms = num(f, v, 600000);
	} else if (strcmp(f, "--raft-snapshot-threshold") == 0) {
		o->snapshot_threshold = num(f, v, UINT32_MAX);
	} else if (strcmp(f, "--raft-trailing-bytes") == 0) {
		o->trailing_bytes = num(f, v, UINT64_MAX >> 1);
	} else {
		bad(f, v, "unknown raft option");
	}
	return true;
}

#ifdef ESDB_CNODE_CLUSTER

#include "replica.h"

struct cn_cluster {
	esdb_replica *rep;
	const char *self;
	cn_cluster_member members[CN_CLUSTER_MAX_MEMBERS];
	unsigned n_members;
	/* where copies are pulled from: the other members, --raft-copy-from */
	const char *sources[2 * CN_CLUSTER_MAX_MEMBERS];
	unsigned n_sources;
	/* back as a new member (--raft-wiped rejoin): the id it was (0:
	 * not), its address */
	uint64_t old_id;
	const char *address;
};

/* Whether id is one of the --raft-member ids. */
static bool listed_id(const cn_cluster_opts *o, uint64_t id)
{
	for (unsigned i = 0; i < o->n_members; i++)
		if (o->members[i].id == id)
			return true;
	return false;
}

/* Raft's loop thread, on every change of the leader this node knows: a
 * node that no longer leads drops the persistent subscription names its
 * sessions claimed (sessions.h), and tells their sessions. */
static void on_leader(void *ctx, uint64_t id, const char *address, bool self)
{
	cn_server *srv = ctx;
	cn_sessions_leadership(
	    srv, self ? esdb_replica_get_term(srv->cluster->rep) : 0);
}

int cn_cluster_setup(cn_server *srv, const cn_cluster_opts *o,
                     const char *self_name)
{
	if (!o->id)
		return 0;
	if (!o->address) {
		cn_log("--raft-id wants --raft-address");
		return ESDB_EINVAL;
	}
	/* a replica whose data directory was lost comes back, with
	 * --raft-wiped rejoin, under a new id (kept in raft/node_id by the
	 * replica, so later starts find it), no bootstrap: the cluster adds
	 * it (rejoin.c) */
	uint64_t id = o->id, old_id = 0, stored;
	if (cn_cluster_guard_wiped(srv, o, self_name)) {
		id = cn_rejoin_new_id();
		old_id = o->id;
	} else if ((stored = cn_rejoin_stored_id(srv->store_dir)) &&
	           stored != o->id) {
		/* Another listed member's raft state: never run as it (two
		 * replicas under one id) nor as --raft-id (its log is not
		 * this id's); said once, with a status the launcher does not
		 * start again on. */
		if (listed_id(o, stored)) {
			fprintf(
			    stderr,
			    "ex_esdb_cnode: %s holds the raft state of "
			    "member raft id %llu (raft/node_id), not of "
			    "--raft-id %llu: another member's store, or a "
			    "member list whose order changed. It does not "
			    "start: give it its own store directory, or the "
			    "--raft-id its raft/node_id names\n",
			    srv->store_dir, (unsigned long long)stored,
			    (unsigned long long)o->id);
			exit(CN_EXIT_NOT_ITS_STORE);
		}
		/* Rejoined once (raft state under the id it came back as):
		 * that member, with or without the flag, which only decides
		 * what a replica without raft state does. */
		id = stored;
		old_id = o->id;
	}
	cn_cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	c->self = self_name;
	c->old_id = old_id;
	c->address = o->address;
	memcpy(c->members, o->members, sizeof(c->members));
	c->n_members = o->n_members;
	for (unsigned i = 0; i < o->n_members; i++)
		if (strcmp(o->members[i].cnode, self_name) != 0)
			c->sources[c->n_sources++] = o->members[i].cnode;
	for (unsigned i = 0; i < o->n_copy_from; i++)
		if (strcmp(o->copy_from[i], self_name) != 0)
			c->sources[c->n_sources++] = o->copy_from[i];
	esdb_replica_member members[CN_CLUSTER_MAX_MEMBERS];
	for (unsigned i = 0; i < o->n_members; i++)
		members[i] = (esdb_replica_member){o->members[i].id,
		                                   o->members[i].address};
	unsigned n_members = old_id ? 0 : o->n_members;
	esdb_replica_config cfg = {
	    .id = id,
	    .address = o->address,
	    .bind_address = o->bind,
	    .dir = srv->store_dir,
	    .members = n_members ? members : NULL,
	    .n_members = n_members,
	    .election_timeout_ms = (unsigned)o->election_ms,
	    .heartbeat_ms = (unsigned)o->heartbeat_ms,
	    .snapshot_threshold = (unsigned)o->snapshot_threshold,
	    .trailing_bytes = o->trailing_bytes,
	    .on_leader = on_leader,
	    .on_leader_ctx = srv,
	};
	int rc = esdb_replica_create(srv->store, &cfg, &c->rep);
	if (rc) {
		free(c);
		return rc;
	}
	srv->cluster = c; /* before raft starts (the store's open) */
	return 0;
}

int cn_cluster_start(cn_server *srv)
{
	cn_cluster *c = srv->cluster;
	int rc = c ? cn_copy_pull_start(srv, c->sources, c->n_sources) : 0;
	if (!rc && c && c->old_id) {
		cn_rejoin r = {c->old_id,  esdb_replica_get_id(c->rep),
		               c->address, c->self,
		               c->sources, c->n_sources};
		cn_log("raft id %llu (was %llu): joining the cluster as a new "
		       "member",
		       (unsigned long long)r.id, (unsigned long long)r.old_id);
		rc = cn_rejoin_start(srv, &r);
	}
	return rc;
}

uint64_t cn_cluster_needs_copy(cn_server *srv)
{
	return srv->cluster ? esdb_replica_get_needs_copy(srv->cluster->rep)
	                    : 0;
}

uint64_t cn_cluster_applied(cn_server *srv)
{
	return srv->cluster ? esdb_replica_get_applied(srv->cluster->rep) : 0;
}

bool cn_cluster_failed(cn_server *srv)
{
	pthread_rwlock_rdlock(&srv->store_lock);
	bool failed = !srv->closed && srv->cluster &&
	              esdb_replica_get_failure(srv->cluster->rep, NULL, 0);
	pthread_rwlock_unlock(&srv->store_lock);
	return failed;
}

/* The C node name of raft member id from this node's own list, or
 * NULL. */
static const char *listed_name(const cn_cluster *c, uint64_t id)
{
	if (id && id == esdb_replica_get_id(c->rep))
		return c->self;
	for (unsigned i = 0; i < c->n_members; i++)
		if (c->members[i].id == id)
			return c->members[i].cnode;
	return NULL;
}

/* Member names replicated in the store: the checkpoint
 * "ex_esdb:cnode:<id>", its definition the name, written by the leader
 * that added a member named in {cluster_add, Id, Address, Name} (for
 * that member and every member it knew by name), so every replica,
 * the added one too, names them without a restart. */
#define NAME_KEY "ex_esdb:cnode:"

static size_t name_key(char *buf, size_t size, uint64_t id)
{
	return (size_t)snprintf(buf, size, NAME_KEY "%llu",
	                        (unsigned long long)id);
}

/* A node name as an atom may hold it: under 256 bytes, NAME@HOST. */
static bool node_name_ok(const char *p, size_t len)
{
	return len > 2 && len < MAXATOMLEN && memchr(p, '@', len) &&
	       !memchr(p, '\0', len);
}

typedef struct name_buf {
	char name[MAXATOMLEN];
	bool found;
} name_buf;

static int take_name(void *ctx, const esdb_checkpoint *cp)
{
	name_buf *b = ctx;
	if (node_name_ok(cp->definition, cp->definition_len)) {
		memcpy(b->name, cp->definition, cp->definition_len);
		b->name[cp->definition_len] = '\0';
		b->found = true;
	}
	return 0;
}

typedef struct stored_names {
	char (*out)[MAXATOMLEN];
	unsigned n, cap;
	const char *self;
	const esdb_replica_member_info *live; /* raft's members, or NULL */
	size_t n_live;
} stored_names;

static bool is_live(const stored_names *sn, uint64_t id)
{
	if (!sn->live)
		return true; /* raft's configuration unknown: every record */
	for (size_t i = 0; i < sn->n_live; i++)
		if (sn->live[i].id == id)
			return true;
	return false;
}

/* Each record's name once, of members raft's configuration has: a
 * removed member's (a record left by an older node) or the same name
 * under two ids takes no place in out. */
static int take_stored(void *ctx, const esdb_checkpoint *cp)
{
	stored_names *sn = ctx;
	const size_t pre = sizeof(NAME_KEY) - 1;
	if (cp->name_len < pre || memcmp(cp->name, NAME_KEY, pre) != 0 ||
	    sn->n == sn->cap)
		return 1; /* past the names: stop */
	char digits[24];
	size_t dl = cp->name_len - pre;
	if (dl == 0 || dl >= sizeof(digits))
		return 0;
	memcpy(digits, (const char *)cp->name + pre, dl);
	digits[dl] = '\0';
	char *end;
	uint64_t id = strtoull(digits, &end, 10);
	const char *p = cp->definition;
	size_t len = cp->definition_len;
	if (*end || !is_live(sn, id) || !node_name_ok(p, len) ||
	    (strlen(sn->self) == len && memcmp(sn->self, p, len) == 0))
		return 0;
	for (unsigned i = 0; i < sn->n; i++)
		if (strlen(sn->out[i]) == len &&
		    memcmp(sn->out[i], p, len) == 0)
			return 0;
	memcpy(sn->out[sn->n], p, len);
	sn->out[sn->n++][len] = '\0';
	return 0;
}

unsigned cn_cluster_stored_names(cn_server *srv, char (*out)[MAXATOMLEN],
                                 unsigned cap)
{
	if (!srv->cluster)
		return 0;
	/* raft answers on its loop, which takes no store lock */
	esdb_replica_member_info live[64];
	size_t n_live = 0;
	int rc = esdb_replica_get_members(srv->cluster->rep, live, 64, &n_live);
	stored_names sn = {
	    out,   0, cap, srv->cluster->self, rc || n_live > 64 ? NULL : live,
	    n_live};
	/* names sort after their prefix: from it, until one lacks it */
	esdb_checkpoint_list(srv->store, NAME_KEY, sizeof(NAME_KEY) - 1, 256,
	                     take_stored, &sn);
	return sn.n;
}

/* Encode member id's C node name (listed, else replicated), or nil. */
static void encode_member_name(cn_server *srv, ei_x_buff *x, uint64_t id)
{
	const cn_cluster *c = srv->cluster;
	const char *listed = c ? listed_name(c, id) : NULL;
	name_buf b = {.found = false};
	char key[64];
	if (!listed && c && id)
		esdb_checkpoint_get(srv->store, key,
		                    name_key(key, sizeof(key), id), take_name,
		                    &b);
	ei_x_encode_atom(x, listed ? listed : b.found ? b.name : "nil");
}

static void encode_name(ei_x_buff *x, const char *name)
{
	ei_x_encode_atom(x, name ? name : "nil");
}

void cn_cluster_encode_not_leader(cn_server *srv, ei_x_buff *x)
{
	uint64_t id = 0;
	if (srv->cluster)
		esdb_replica_get_leader(srv->cluster->rep, &id, NULL, 0);
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "not_leader");
	encode_member_name(srv, x, id);
}

bool cn_cluster_in_term(cn_server *srv, uint64_t term)
{
	return srv->cluster && esdb_replica_get_term(srv->cluster->rep) == term;
}

bool cn_cluster_leading(cn_server *srv, uint64_t *term)
{
	if (!srv->cluster)
		return false;
	esdb_replica *rep = srv->cluster->rep;
	bool leading;
	do {
		*term = esdb_replica_get_term(rep);
		leading = esdb_replica_is_leader(rep);
	} while (*term != esdb_replica_get_term(rep));
	return leading;
}

void cn_cluster_fence_term(uint64_t term)
{
	esdb_replica_fence_term(term);
}

/* The replica with the store's lock held shared, or NULL having
 * answered k. */
static esdb_replica *acquire(caller *k)
{
	cn_server *srv = k->srv;
	pthread_rwlock_rdlock(&srv->store_lock);
	if (srv->closed || !srv->cluster) {
		bool closed = srv->closed;
		pthread_rwlock_unlock(&srv->store_lock);
		if (closed)
			cn_reply_rc(k, ESDB_ECLOSED);
		else
			cn_reply_error(k, NULL, "not_cluster");
		return NULL;
	}
	return srv->cluster->rep;
}

/* {cluster_info}: the NIF's map, plus this node's and the leader's C
 * node names (node, leader_node: an atom or nil). */
void cn_op_cluster_info(caller *k, const arg *v, const char *m)
{
	esdb_replica *rep = acquire(k);
	if (!rep)
		return;
	cn_cluster *c = k->srv->cluster;
	char addr[256], why[256];
	uint64_t leader = 0, term;
	bool is_leader;
	esdb_replica_get_leader(rep, &leader, addr, sizeof(addr));
	int failed = esdb_replica_get_failure(rep, why, sizeof(why));
	do {
		term = esdb_replica_get_term(rep);
		is_leader = esdb_replica_is_leader(rep);
	} while (term != esdb_replica_get_term(rep));
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "ok");
	ei_x_encode_map_header(&x, 10);
	ei_x_encode_atom(&x, "id");
	ei_x_encode_ulonglong(&x, esdb_replica_get_id(rep));
	ei_x_encode_atom(&x, "leader_id");
	ei_x_encode_ulonglong(&x, leader);
	ei_x_encode_atom(&x, "leader_address");
	if (leader)
		ei_x_encode_binary(&x, addr, (long)strlen(addr));
	else
		ei_x_encode_atom(&x, "nil");
	ei_x_encode_atom(&x, "leader");
	ei_x_encode_boolean(&x, is_leader);
	ei_x_encode_atom(&x, "term");
	ei_x_encode_ulonglong(&x, term);
	ei_x_encode_atom(&x, "applied");
	ei_x_encode_ulonglong(&x, esdb_replica_get_applied(rep));
	ei_x_encode_atom(&x, "failure");
	if (failed) {
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, esdb_error_name(failed));
		ei_x_encode_binary(&x, why, (long)strlen(why));
	} else {
		ei_x_encode_atom(&x, "nil");
	}
	ei_x_encode_atom(&x, "needs_copy");
	ei_x_encode_boolean(&x, esdb_replica_get_needs_copy(rep) != 0);
	ei_x_encode_atom(&x, "node");
	encode_name(&x, c->self);
	ei_x_encode_atom(&x, "leader_node");
	encode_member_name(k->srv, &x, leader);
	pthread_rwlock_unlock(&k->srv->store_lock);
	cn_reply_end(k, &x);
}

/* {cluster_members}: {ok, [{Id, Address, Role}]}, as the NIF's. */
void cn_op_cluster_members(caller *k, const arg *v, const char *m)
{
	esdb_replica *rep = acquire(k);
	if (!rep)
		return;
	esdb_replica_member_info info[64];
	size_t n = 0;
	/* raft answers on its loop: held, not under the store's lock */
	esdb_replica_hold(rep);
	pthread_rwlock_unlock(&k->srv->store_lock);
	int rc = esdb_replica_get_members(rep, info, 64, &n);
	esdb_replica_release(rep);
	if (rc) {
		cn_reply_rc(k, rc);
		return;
	}
	if (n > 64)
		n = 64;
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "ok");
	for (size_t i = 0; i < n; i++) {
		if (i == 0)
			ei_x_encode_list_header(&x, (long)n);
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_ulonglong(&x, info[i].id);
		ei_x_encode_binary(&x, info[i].address,
		                   (long)strlen(info[i].address));
		ei_x_encode_atom(
		    &x, info[i].role == ESDB_REPLICA_VOTER     ? "voter"
		        : info[i].role == ESDB_REPLICA_STANDBY ? "standby"
		                                               : "spare");
	}
	ei_x_encode_empty_list(&x);
	cn_reply_end(k, &x);
}

/* A membership change or transfer, as the NIF's change(). */
typedef enum { CH_ADD, CH_ASSIGN, CH_REMOVE, CH_TRANSFER } change_op;

typedef struct change {
	caller *k;
	esdb_replica *rep; /* held */
	change_op op;
	uint64_t id;
	int role;
	char address[256];
	char name[MAXATOMLEN]; /* an added member's C node name, or "" */
} change;

/* Replicate the name of member id (through raft, as any write: only
 * the leader takes it), unless the store has it already. */
static int record_name(cn_server *srv, uint64_t id, const char *name)
{
	name_buf b = {.found = false};
	char key[64];
	size_t klen = name_key(key, sizeof(key), id);
	esdb_checkpoint_get(srv->store, key, klen, take_name, &b);
	if (b.found && strcmp(b.name, name) == 0)
		return 0;
	esdb_cmd cmd;
	int rc = esdb_cmd_checkpoint_put(&srv->limits, key, klen, 0, name,
	                                 strlen(name), &cmd);
	return rc ? rc : esdb_store_execute(srv->store, &cmd, NULL);
}

/* Once a named member was added: its name and every name this node
 * lists, so that the added member (which lists none) names them too.
 * After the add, never before: an add raft refuses (a taken id or
 * address) names nothing. Under the store's lock: a close waits. */
static int record_names(change *c)
{
	cn_server *srv = c->k->srv;
	pthread_rwlock_rdlock(&srv->store_lock);
	int rc = srv->closed ? ESDB_ECLOSED : 0;
	const cn_cluster *cl = srv->cluster;
	if (!rc)
		rc = record_name(srv, esdb_replica_get_id(cl->rep), cl->self);
	for (unsigned i = 0; !rc && i < cl->n_members; i++)
		rc = record_name(srv, cl->members[i].id, cl->members[i].cnode);
	if (!rc)
		rc = record_name(srv, c->id, c->name);
	pthread_rwlock_unlock(&srv->store_lock);
	return rc;
}

int cn_cluster_record_self(cn_server *srv, char *key, size_t key_size,
                           const char **self, char *leader)
{
	pthread_rwlock_rdlock(&srv->store_lock);
	const cn_cluster *c = srv->cluster;
	int r = -1;
	if (!srv->closed && c) {
		uint64_t me = esdb_replica_get_id(c->rep), lid = 0;
		size_t klen = name_key(key, key_size, me);
		name_buf b = {.found = false};
		esdb_checkpoint_get(srv->store, key, klen, take_name, &b);
		esdb_replica_get_leader(c->rep, &lid, NULL, 0);
		*self = c->self;
		if (b.found)
			r = 0;
		else if (lid == me)
			r = record_name(srv, me, c->self) ? -1 : 0;
		else if (lid) {
			b.found = false;
			const char *l = listed_name(c, lid);
			if (!l) {
				char lkey[64];
				esdb_checkpoint_get(
				    srv->store, lkey,
				    name_key(lkey, sizeof(lkey), lid),
				    take_name, &b);
				l = b.found ? b.name : NULL;
			}
			if (l) {
				snprintf(leader, MAXATOMLEN, "%s", l);
				r = 1;
			}
		}
	}
	pthread_rwlock_unlock(&srv->store_lock);
	return r;
}

static int found_any(void *ctx, const esdb_checkpoint *cp)
{
	*(bool *)ctx = true;
	return 0;
}

/* Once member c->id was removed: its name record, if any, goes. */
static int forget_name(change *c)
{
	cn_server *srv = c->k->srv;
	pthread_rwlock_rdlock(&srv->store_lock);
	int rc = srv->closed ? ESDB_ECLOSED : 0;
	bool found = false;
	char key[64];
	size_t klen = name_key(key, sizeof(key), c->id);
	if (!rc)
		esdb_checkpoint_get(srv->store, key, klen, found_any, &found);
	esdb_cmd cmd;
	if (!rc && found)
		rc = esdb_cmd_checkpoint_delete(&srv->limits, key, klen, &cmd);
	if (!rc && found)
		rc = esdb_store_execute(srv->store, &cmd, NULL);
	pthread_rwlock_unlock(&srv->store_lock);
	return rc;
}

/* A transfer to no voter in particular goes to the voter that applied
 * most among those whose C node answers within PICK_MS and can serve
 * (no failure, not waiting for a copy), as the NIF's
 * ExESDB.Cluster.transfer(store, nil): raft's own choice, the first
 * voter in its configuration holding the whole log, may be stopped (the
 * transfer then times out) or waiting for a copy (it takes leadership
 * only to hand it on). 0 (raft's choice) when none answers or this node
 * does not lead. The voters are asked at once, a thread each. */
#define PICK_MS 1000

typedef struct candidate {
	cn_server *srv;
	uint64_t id;
	char name[MAXATOMLEN];
	cn_member_state st;
	bool answered, started;
	pthread_t tid;
} candidate;

static void *ask_candidate(void *arg)
{
	candidate *d = arg;
	d->answered =
	    cn_copy_ask_member(&d->srv->ec, d->name, PICK_MS, &d->st) == 0 &&
	    d->st.id == d->id;
	return NULL;
}

static uint64_t pick_transferee(change *c)
{
	cn_server *srv = c->k->srv;
	esdb_replica_member_info ms[64];
	size_t n = 0;
	if (!esdb_replica_is_leader(c->rep) ||
	    esdb_replica_get_members(c->rep, ms, 64, &n))
		return 0;
	candidate *ds = calloc(n < 64 ? n : 64, sizeof(*ds));
	if (!ds)
		return 0;
	uint64_t self = esdb_replica_get_id(c->rep);
	size_t nd = 0;
	pthread_rwlock_rdlock(&srv->store_lock);
	for (size_t i = 0; !srv->closed && i < n && i < 64; i++) {
		if (ms[i].role != ESDB_REPLICA_VOTER || ms[i].id == self)
			continue;
		const char *l = listed_name(srv->cluster, ms[i].id);
		name_buf b = {.found = false};
		char key[64];
		if (!l)
			esdb_checkpoint_get(
			    srv->store, key,
			    name_key(key, sizeof(key), ms[i].id), take_name,
			    &b);
		if (!l && !b.found)
			continue; /* a voter this node cannot name */
		candidate *d = &ds[nd++];
		d->srv = srv;
		d->id = ms[i].id;
		snprintf(d->name, sizeof(d->name), "%s", l ? l : b.name);
	}
	pthread_rwlock_unlock(&srv->store_lock);
	for (size_t i = 0; i < nd; i++)
		ds[i].started = pthread_create(&ds[i].tid, NULL, ask_candidate,
		                               &ds[i]) == 0;
	uint64_t best = 0, best_applied = 0;
	for (size_t i = 0; i < nd; i++) {
		candidate *d = &ds[i];
		if (d->started)
			pthread_join(d->tid, NULL);
		else
			ask_candidate(d);
		if (d->answered && d->st.usable &&
		    (!best || d->st.applied > best_applied)) {
			best = d->id;
			best_applied = d->st.applied;
		}
	}
	free(ds);
	return best;
}

static void *change_main(void *arg)
{
	change *c = arg;
	int rc;
	if (c->op == CH_TRANSFER && c->id == 0)
		c->id = pick_transferee(c);
	switch (c->op) {
	case CH_ADD:
		rc = esdb_replica_add(c->rep, c->id, c->address);
		if (!rc && c->name[0])
			rc = record_names(c);
		break;
	case CH_ASSIGN:
		rc = esdb_replica_assign(c->rep, c->id, c->role);
		break;
	case CH_REMOVE:
		rc = esdb_replica_remove(c->rep, c->id);
		if (!rc)
			rc = forget_name(c);
		break;
	default:
		rc = esdb_replica_transfer(c->rep, c->id);
		break;
	}
	esdb_replica_release(c->rep);
	/* ETIMEDOUT: a transfer no node took up; EBUSY: another change */
	if (rc == ETIMEDOUT)
		cn_reply_error(c->k, NULL, "timeout");
	else if (rc == ESDB_EBUSY)
		cn_reply_error(c->k, NULL, "change_in_progress");
	else
		cn_reply_rc(c->k, rc);
	free(c);
	return NULL;
}

/* Hold the replica (not the store's lock: a close meanwhile answers the
 * change instead of waiting for it) and run the change on its own
 * thread, which answers k. */
static void start_change(caller *k, change_op op, uint64_t id, const arg *addr,
                         int role, const char *name)
{
	esdb_replica *rep = acquire(k);
	if (!rep)
		return;
	change *c = calloc(1, sizeof(*c));
	if (c) {
		*c = (change){
		    .k = k, .rep = rep, .op = op, .id = id, .role = role};
		if (addr)
			memcpy(c->address, addr->p, addr->len);
		if (name)
			snprintf(c->name, sizeof(c->name), "%s", name);
		esdb_replica_hold(rep);
	}
	pthread_rwlock_unlock(&k->srv->store_lock);
	pthread_attr_t attr;
	pthread_t tid;
	int rc = c ? pthread_attr_init(&attr) : ENOMEM;
	if (!rc) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&tid, &attr, change_main, c);
		pthread_attr_destroy(&attr);
	}
	if (rc) {
		if (c) {
			esdb_replica_release(rep);
			free(c);
		}
		cn_reply_rc(k, rc);
	}
}

/* {cluster_add, Id, Address} */
void cn_op_cluster_add(caller *k, const arg *v, const char *m)
{
	start_change(k, CH_ADD, v[0].u, &v[1], 0, NULL);
}

/* {cluster_add, Id, Address, Name}: Name the member's C node name
 * (NAME@HOST), replicated once the member is added. */
void cn_op_cluster_add_named(caller *k, const char *m, int at, int arity)
{
	unsigned long long id;
	char addr[256], name[MAXATOMLEN_UTF8];
	long len;
	int idx = at, type, size;
	if (arity != 4 || ei_decode_ulonglong(m, &idx, &id) != 0 ||
	    ei_get_type(m, &idx, &type, &size) != 0 || type != ERL_BINARY_EXT ||
	    size < 1 || size >= (int)sizeof(addr) ||
	    ei_decode_binary(m, &idx, addr, &len) != 0 ||
	    memchr(addr, '\0', (size_t)len) ||
	    ei_decode_atom(m, &idx, name) != 0 ||
	    !node_name_ok(name, strlen(name))) {
		cn_reply_error(k, "invalid_request", "cluster_add");
		return;
	}
	arg a = {.p = addr, .len = (size_t)len};
	start_change(k, CH_ADD, id, &a, 0, name);
}

/* {cluster_assign, Id, voter | standby | spare} */
void cn_op_cluster_assign(caller *k, const arg *v, const char *m)
{
	int role = v[1].u == 1   ? ESDB_REPLICA_VOTER
	           : v[1].u == 0 ? ESDB_REPLICA_STANDBY
	                         : ESDB_REPLICA_SPARE;
	start_change(k, CH_ASSIGN, v[0].u, NULL, role, NULL);
}

/* {cluster_remove, Id} */
void cn_op_cluster_remove(caller *k, const arg *v, const char *m)
{
	start_change(k, CH_REMOVE, v[0].u, NULL, 0, NULL);
}

/* {cluster_transfer, Id}: Id 0, the voter that applied most among those
 * whose C node answers (pick_transferee) */
void cn_op_cluster_transfer(caller *k, const arg *v, const char *m)
{
	start_change(k, CH_TRANSFER, v[0].u, NULL, 0, NULL);
}

#else /* no raft in this build */

#define NO_SUPPORT                                                             \
	"this C node was built without raft: `make raft` then rebuild it"

int cn_cluster_setup(cn_server *srv, const cn_cluster_opts *o,
                     const char *self_name)
{
	if (!o->id)
		return 0;
	cn_log("%s", NO_SUPPORT);
	return ESDB_EINVAL;
}

void cn_cluster_encode_not_leader(cn_server *srv, ei_x_buff *x)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "not_leader");
	ei_x_encode_atom(x, "nil");
}

int cn_cluster_start(cn_server *srv)
{
	return 0;
}

bool cn_cluster_in_term(cn_server *srv, uint64_t term)
{
	return false;
}

bool cn_cluster_leading(cn_server *srv, uint64_t *term)
{
	return false;
}

void cn_cluster_fence_term(uint64_t term)
{
}

uint64_t cn_cluster_needs_copy(cn_server *srv)
{
	return 0;
}

uint64_t cn_cluster_applied(cn_server *srv)
{
	return 0;
}

bool cn_cluster_failed(cn_server *srv)
{
	return false;
}

unsigned cn_cluster_stored_names(cn_server *srv, char (*out)[MAXATOMLEN],
                                 unsigned cap)
{
	return 0;
}

static void no_support(caller *k)
{
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "error");
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "no_cluster_support");
	ei_x_encode_binary(&x, NO_SUPPORT, (long)strlen(NO_SUPPORT));
	cn_reply_end(k, &x);
}

int cn_cluster_record_self(cn_server *srv, char *key, size_t key_size,
                           const char **self, char *leader)
{
	return -1;
}

void cn_op_cluster_info(caller *k, const arg *v, const char *m)
{
	no_support(k);
}

void cn_op_cluster_members(caller *k, const arg *v, const char *m)
{
	no_support(k);
}

void cn_op_cluster_add(caller *k, const arg *v, const char *m)
{
	no_support(k);
}

void cn_op_cluster_add_named(caller *k, const char *m, int at, int arity)
{
	no_support(k);
}

void cn_op_cluster_assign(caller *k, const arg *v, const char *m)
{
	no_support(k);
}

void cn_op_cluster_remove(caller *k, const arg *v, const char *m)
{
	no_support(k);
}

void cn_op_cluster_transfer(caller *k, const arg *v, const char *m)
{
	no_support(k);
}

#endif
