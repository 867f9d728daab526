/* rejoin.c: a C node replica whose data directory was lost, started with
 * --raft-wiped rejoin, comes back as a new member (cluster.h). It runs
 * under a new raft id (the replica keeps it in raft/node_id; later starts
 * run under it again, with the flag or without) and no bootstrap, and a thread
 * of its own asks the cluster, as a client of the member C nodes (the
 * requests any client makes: cluster_members, cluster_remove,
 * cluster_add with its name, cluster_assign), until this replica is a
 * voter: its old id removed (and any other member recorded under its C
 * node name: a second loss), its new id added (a spare), made a standby
 * (sent the log, no vote), then, once the copy puller installed a
 * member's store if one was needed (copy_pull.c) and something is
 * applied, made a voter. Each step is asked again until the leader's
 * configuration shows it: a crash midway resumes where it stopped. A
 * follower answers {error, {not_leader, Leader}} and the request goes on
 * to Leader. */
#include "cluster.h"
#include "copies.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define ROUND_MS  500
#define ASK_MS    5000
#define CHANGE_MS 60000
#define MAX_SEEN  64

uint64_t cn_rejoin_new_id(void)
{
	uint64_t id = 0;
	while (id == 0) {
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
		/* above the ids configured by hand (1, 2, 3, ...), within
		 * 2^53 (exact as a JSON or float number) */
		id = (id & ((1ull << 52) - 1)) | (1ull << 32);
	}
	return id;
}

uint64_t cn_rejoin_stored_id(const char *store_dir)
{
	char path[4096], buf[32];
	unsigned long long id = 0;
	snprintf(path, sizeof(path), "%s/raft/node_id", store_dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%llu", &id) != 1)
		id = 0;
	fclose(f);
	return id;
}

typedef struct rejoiner {
	cn_server *srv;
	cn_rejoin r;
	char leader[MAXATOMLEN]; /* the leader's C node name, or "" */
} rejoiner;

/* ---- requests ---------------------------------------------------------- */

typedef struct change_req {
	const char *op; /* cluster_remove, cluster_add, cluster_assign */
	uint64_t id;
	const char *address, *name; /* cluster_add; name: cluster_assign's
	                             * role */
} change_req;

static void enc_change(ei_x_buff *x, const void *ctx)
{
	const change_req *q = ctx;
	bool add = strcmp(q->op, "cluster_add") == 0,
	     assign = strcmp(q->op, "cluster_assign") == 0;
	ei_x_encode_tuple_header(x, add ? 4 : assign ? 3 : 2);
	ei_x_encode_atom(x, q->op);
	ei_x_encode_ulonglong(x, q->id);
	if (add) {
		ei_x_encode_binary(x, q->address, (long)strlen(q->address));
		ei_x_encode_atom(x, q->name);
	} else if (assign) {
		ei_x_encode_atom(x, q->name); /* the role */
	}
}

static void enc_members(ei_x_buff *x, const void *ctx)
{
	ei_x_encode_tuple_header(x, 1);
	ei_x_encode_atom(x, "cluster_members");
}

static void enc_info(ei_x_buff *x, const void *ctx)
{
	ei_x_encode_tuple_header(x, 1);
	ei_x_encode_atom(x, "cluster_info");
}

static void enc_name_get(ei_x_buff *x, const void *ctx)
{
	char key[64];
	int len = snprintf(key, sizeof(key), "ex_esdb:cnode:%llu",
	                   (unsigned long long)*(const uint64_t *)ctx);
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "checkpoint_get");
	ei_x_encode_binary(x, key, len);
}

/* A node name decoded as an atom into out (MAXATOMLEN), nil as "":
 * false when too long for one. */
static bool node_name(char *out, const char *a)
{
	size_t len = strcmp(a, "nil") == 0 ? 0 : strlen(a);
	if (len >= MAXATOMLEN)
		return false;
	memcpy(out, a, len);
	out[len] = '\0';
	return true;
}

/* Replies: 0 ok, 1 {error, {not_leader, Name}} (Name into out, "" for
 * nil), 2 another error or shape. */
static int take_status(const char *m, int at, void *out)
{
	char a[MAXATOMLEN_UTF8];
	int i = at, arity;
	if (ei_decode_atom(m, &i, a) == 0)
		return strcmp(a, "ok") == 0 ? 0 : 2;
	i = at;
	if (ei_decode_tuple_header(m, &i, &arity) || arity != 2 ||
	    ei_decode_atom(m, &i, a) || strcmp(a, "error") != 0 ||
	    ei_decode_tuple_header(m, &i, &arity) || arity != 2 ||
	    ei_decode_atom(m, &i, a) || strcmp(a, "not_leader") != 0 ||
	    ei_decode_atom(m, &i, a))
		return 2;
	return node_name(out, a) ? 1 : 2;
}

/* {ok, [{Id, Address, Role}]}: up to MAX_SEEN into out. */
enum { ROLE_SPARE, ROLE_STANDBY, ROLE_VOTER };

typedef struct seen_members {
	uint64_t id[MAX_SEEN];
	int role[MAX_SEEN];
	unsigned n;
} seen_members;

static int take_members(const char *m, int at, void *out)
{
	seen_members *sm = out;
	char a[MAXATOMLEN_UTF8];
	int i = at, arity, n;
	sm->n = 0;
	if (ei_decode_tuple_header(m, &i, &arity) || arity != 2 ||
	    ei_decode_atom(m, &i, a) || strcmp(a, "ok") != 0 ||
	    ei_decode_list_header(m, &i, &n))
		return 2;
	for (int k = 0; k < n; k++) {
		unsigned long long id;
		if (ei_decode_tuple_header(m, &i, &arity) || arity != 3 ||
		    ei_decode_ulonglong(m, &i, &id) || ei_skip_term(m, &i) ||
		    ei_decode_atom(m, &i, a))
			return 2;
		if (sm->n < MAX_SEEN) {
			sm->id[sm->n] = id;
			sm->role[sm->n++] = strcmp(a, "voter") == 0 ? ROLE_VOTER
			                    : strcmp(a, "standby") == 0
			                        ? ROLE_STANDBY
			                        : ROLE_SPARE;
		}
	}
	return 0;
}

/* {ok, {Name, Checkpoint, Definition, UpdatedUs}}: whether Definition
 * is the C node name in out (0 yes, 2 no or not found). */
static int take_named(const char *m, int at, void *out)
{
	char a[MAXATOMLEN_UTF8], def[MAXATOMLEN];
	int i = at, arity, type, size;
	long len;
	if (ei_decode_tuple_header(m, &i, &arity) || arity != 2 ||
	    ei_decode_atom(m, &i, a) || strcmp(a, "ok") != 0 ||
	    ei_decode_tuple_header(m, &i, &arity) || arity != 4 ||
	    ei_skip_term(m, &i) || ei_skip_term(m, &i) ||
	    ei_get_type(m, &i, &type, &size) || type != ERL_BINARY_EXT ||
	    size >= (int)sizeof(def) || ei_decode_binary(m, &i, def, &len))
		return 2;
	def[len] = '\0';
	return strcmp(def, out) == 0 ? 0 : 2;
}

int cn_rejoin_recorded_as(ei_cnode *ec, const char *member, const char *self,
                          uint64_t *id)
{
	seen_members sm = {.n = 0};
	if (cn_peer_call(ec, member, ASK_MS, enc_members, NULL, take_members,
	                 &sm) != 0)
		return -1;
	char name[MAXATOMLEN];
	snprintf(name, sizeof(name), "%s", self);
	for (unsigned i = 0; i < sm.n; i++) {
		if (cn_peer_call(ec, member, ASK_MS, enc_name_get, &sm.id[i],
		                 take_named, name) == 0) {
			*id = sm.id[i];
			return 1;
		}
	}
	return 0;
}

/* {ok, #{leader := Bool, leader_node := Name | nil, ...}}: the leader's
 * C node name into out ("" when none is known). */
static int take_leader(const char *m, int at, void *out)
{
	char a[MAXATOMLEN_UTF8], key[MAXATOMLEN_UTF8], node[MAXATOMLEN] = "",
	                                               leader[MAXATOMLEN] = "";
	int i = at, arity, n, b = 0;
	if (ei_decode_tuple_header(m, &i, &arity) || arity != 2 ||
	    ei_decode_atom(m, &i, a) || strcmp(a, "ok") != 0 ||
	    ei_decode_map_header(m, &i, &n))
		return 2;
	for (int k = 0; k < n; k++) {
		if (ei_decode_atom(m, &i, key))
			return 2;
		if (strcmp(key, "leader") == 0) {
			if (ei_decode_boolean(m, &i, &b))
				return 2;
		} else if (strcmp(key, "node") == 0 ||
		           strcmp(key, "leader_node") == 0) {
			if (ei_decode_atom(m, &i, a) ||
			    !node_name(strcmp(key, "node") == 0 ? node : leader,
			               a))
				return 2;
		} else if (ei_skip_term(m, &i)) {
			return 2;
		}
	}
	memcpy(out, b ? node : leader, MAXATOMLEN);
	return 0;
}

/* The leader's C node name into j->leader, asked of the last one named,
 * else of each member C node in turn: true when one is named. */
static bool find_leader(rejoiner *j)
{
	ei_cnode *ec = &j->srv->ec;
	char named[MAXATOMLEN] = "";
	for (unsigned i = 0; i <= j->r.n_sources; i++) {
		const char *to = i == 0 ? j->leader : j->r.sources[i - 1];
		if (to[0] &&
		    cn_peer_call(ec, to, ASK_MS, enc_info, NULL, take_leader,
		                 named) == 0 &&
		    named[0]) {
			snprintf(j->leader, sizeof(j->leader), "%s", named);
			return true;
		}
	}
	j->leader[0] = '\0';
	return false;
}

/* One change at the leader: 0 done; else the leader is asked for again. */
static int change_at_leader(rejoiner *j, const change_req *q)
{
	char named[MAXATOMLEN] = "";
	int st = cn_peer_call(&j->srv->ec, j->leader, CHANGE_MS, enc_change, q,
	                      take_status, named);
	if (st != 0) {
		cn_log("rejoin: %s %llu at %s: %s", q->op,
		       (unsigned long long)q->id, j->leader,
		       st < 0 ? "no answer" : "refused");
		j->leader[0] = '\0';
	}
	return st;
}

static bool closed(cn_server *srv)
{
	pthread_rwlock_rdlock(&srv->store_lock);
	bool c = srv->closed;
	pthread_rwlock_unlock(&srv->store_lock);
	return c;
}

/* This replica holds a store: a copy installed when one was needed, and
 * something applied. */
static bool holds_store(cn_server *srv)
{
	pthread_rwlock_rdlock(&srv->store_lock);
	bool ok = !srv->closed && !cn_cluster_needs_copy(srv) &&
	          cn_cluster_applied(srv) > 0;
	pthread_rwlock_unlock(&srv->store_lock);
	return ok;
}

/* One round: true once this replica is a voter and no other member is
 * recorded under its name. */
static bool reconcile(rejoiner *j)
{
	seen_members sm = {.n = 0};
	if (!find_leader(j) ||
	    cn_peer_call(&j->srv->ec, j->leader, ASK_MS, enc_members, NULL,
	                 take_members, &sm) != 0)
		return false;
	bool in = false;
	int role = ROLE_SPARE;
	for (unsigned i = 0; i < sm.n; i++) {
		uint64_t id = sm.id[i];
		if (id == j->r.id) {
			in = true;
			role = sm.role[i];
			continue;
		}
		/* the old id, or one recorded under this name (a member
		 * that came back before and lost its data again) */
		char self[MAXATOMLEN];
		snprintf(self, sizeof(self), "%s", j->r.self);
		if (id == j->r.old_id ||
		    cn_peer_call(&j->srv->ec, j->leader, ASK_MS, enc_name_get,
		                 &id, take_named, self) == 0) {
			change_req q = {"cluster_remove", id, NULL, NULL};
			return change_at_leader(j, &q), false;
		}
	}
	if (!in) {
		change_req q = {"cluster_add", j->r.id, j->r.address,
		                j->r.self};
		return change_at_leader(j, &q), false;
	}
	if (role == ROLE_VOTER)
		return true;
	/* a spare is sent nothing: a standby is sent the log (and pulls
	 * a copy when raft's snapshot passed its store), without a vote */
	if (role == ROLE_STANDBY && !holds_store(j->srv))
		return false;
	change_req q = {"cluster_assign", j->r.id, NULL,
	                role == ROLE_SPARE ? "standby" : "voter"};
	return change_at_leader(j, &q) == 0 && role == ROLE_STANDBY;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void *rejoin_main(void *arg)
{
	rejoiner *j = arg;
	while (!closed(j->srv)) {
		if (reconcile(j)) {
			cn_log("rejoin: a voter of the cluster as raft id %llu",
			       (unsigned long long)j->r.id);
			break;
		}
		sleep_ms(ROUND_MS);
	}
	free(j);
	return NULL;
}

int cn_rejoin_start(cn_server *srv, const cn_rejoin *r)
{
	rejoiner *j = calloc(1, sizeof(*j));
	if (!j)
		return ENOMEM;
	j->srv = srv;
	j->r = *r;
	pthread_attr_t attr;
	pthread_t tid;
	int rc = pthread_attr_init(&attr);
	if (!rc) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&tid, &attr, rejoin_main, j);
		pthread_attr_destroy(&attr);
	}
	if (rc)
		free(j);
	return rc;
}
