/* cluster.c: a store replicated by raft (c_src/replica/replica.h), opened
 * by cluster_open/3, and its leader, membership and transfer. Built with
 * the replica when raft is (build/gen/cluster_support.h); otherwise every
 * function answers {error, {no_cluster_support, Why}}. */
#include "nif.h"

#include "atoms.h"
#include "cluster_support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if ESDB_CLUSTER_SUPPORT

#include "replica.h"

/* An address "ip:port" (or "host:port") is at most this long. */
#define ADDR_MAX 256

struct nif_cluster {
	esdb_replica *rep;
	/* whom leader changes are told: {ex_esdb_leader, Id, Address, Self} */
	bool notify;
	ErlNifPid pid;
};

void nif_cluster_free(nif_cluster *c)
{
	enif_free(c);
}

/* On the replica's loop thread: tell the owner who leads now. */
static void on_leader(void *ctx, uint64_t id, const char *address, bool self)
{
	nif_cluster *c = ctx;
	if (!c->notify)
		return;
	ErlNifEnv *env = enif_alloc_env();
	ERL_NIF_TERM addr =
	    address ? nif_make_bin(env, address, strlen(address)) : atom_nil;
	ERL_NIF_TERM msg = enif_make_tuple4(
	    env, enif_make_atom(env, "ex_esdb_leader"),
	    enif_make_uint64(env, id), addr, self ? atom_true : atom_false);
	enif_send(NULL, &c->pid, env, msg);
	enif_free_env(env);
}

/* A binary "ip:port" copied NUL-terminated into buf. */
static bool get_address(ErlNifEnv *env, ERL_NIF_TERM t, char *buf)
{
	ErlNifBinary b;
	if (!enif_inspect_binary(env, t, &b) || b.size == 0 ||
	    b.size >= ADDR_MAX || memchr(b.data, 0, b.size))
		return false;
	memcpy(buf, b.data, b.size);
	buf[b.size] = 0;
	return true;
}

static bool get_uint_key(ErlNifEnv *env, ERL_NIF_TERM map, const char *key,
                         uint64_t max, uint64_t *out)
{
	ERL_NIF_TERM v;
	if (!enif_get_map_value(env, map, enif_make_atom(env, key), &v))
		return true; /* absent: the default */
	return nif_get_u64(env, v, out) && *out <= max;
}

static ERL_NIF_TERM invalid(ErlNifEnv *env, const char *what, ERL_NIF_TERM v)
{
	return enif_make_tuple2(
	    env, atom_error,
	    enif_make_tuple2(env, enif_make_atom(env, what), v));
}

/* The cluster map (docs/PROTOCOL.md, cluster_open/3) made the replica's
 * configuration, and the store made a replica. */
static ERL_NIF_TERM setup(ErlNifEnv *env, esdb_store *s, const char *path,
                          ERL_NIF_TERM map, nif_cluster **out)
{
	char address[ADDR_MAX], bind[ADDR_MAX];
	ERL_NIF_TERM v, head, list;
	esdb_replica_config cfg = {0};
	uint64_t u;

	if (!enif_is_map(env, map))
		return invalid(env, "invalid_cluster", map);
	if (!enif_get_map_value(env, map, enif_make_atom(env, "id"), &v) ||
	    !nif_get_u64(env, v, &cfg.id) || cfg.id == 0)
		return invalid(env, "invalid_cluster", map);
	if (!enif_get_map_value(env, map, enif_make_atom(env, "address"), &v) ||
	    !get_address(env, v, address))
		return invalid(env, "invalid_address", map);
	cfg.address = address;
	cfg.dir = path;
	if (enif_get_map_value(env, map, enif_make_atom(env, "bind_address"),
	                       &v)) {
		if (!get_address(env, v, bind))
			return invalid(env, "invalid_address", v);
		cfg.bind_address = bind;
	}
	u = 0;
	if (!get_uint_key(env, map, "election_timeout_ms", 600000, &u))
		return invalid(env, "invalid_cluster", map);
	cfg.election_timeout_ms = (unsigned)u;
	u = 0;
	if (!get_uint_key(env, map, "heartbeat_ms", 600000, &u))
		return invalid(env, "invalid_cluster", map);
	cfg.heartbeat_ms = (unsigned)u;
	u = 0;
	if (!get_uint_key(env, map, "snapshot_threshold", UINT32_MAX, &u))
		return invalid(env, "invalid_cluster", map);
	cfg.snapshot_threshold = (unsigned)u;
	u = 0;
	if (!get_uint_key(env, map, "trailing_bytes", UINT64_MAX >> 1, &u))
		return invalid(env, "invalid_cluster", map);
	cfg.trailing_bytes = u;

	/* members: [{Id, Address}], all voters, this node among them */
	unsigned n = 0;
	if (enif_get_map_value(env, map, enif_make_atom(env, "members"),
	                       &list) &&
	    (!enif_get_list_length(env, list, &n) || n > 255))
		return invalid(env, "invalid_members", list);
	esdb_replica_member *members = NULL;
	char *addrs = NULL;
	ERL_NIF_TERM err = 0;
	if (n) {
		members = calloc(n, sizeof(*members));
		addrs = malloc((size_t)n * ADDR_MAX);
		if (!members || !addrs) {
			err = nif_error_term(env, ENOMEM);
			goto out;
		}
		for (unsigned i = 0; i < n; i++) {
			const ERL_NIF_TERM *t;
			int arity;
			enif_get_list_cell(env, list, &head, &list);
			if (!enif_get_tuple(env, head, &arity, &t) ||
			    arity != 2 ||
			    !nif_get_u64(env, t[0], &members[i].id) ||
			    members[i].id == 0 ||
			    !get_address(env, t[1], addrs + i * ADDR_MAX)) {
				err = invalid(env, "invalid_members", head);
				goto out;
			}
			members[i].address = addrs + i * ADDR_MAX;
		}
	}
	cfg.members = members;
	cfg.n_members = n;

	nif_cluster *c = enif_alloc(sizeof(*c));
	if (!c) {
		err = nif_error_term(env, ENOMEM);
		goto out;
	}
	c->rep = NULL;
	c->notify =
	    enif_get_map_value(env, map, enif_make_atom(env, "notify"), &v) &&
	    enif_get_local_pid(env, v, &c->pid);
	cfg.on_leader = on_leader;
	cfg.on_leader_ctx = c;
	*out = c;
	int rc = esdb_replica_create(s, &cfg, &c->rep);
	if (rc)
		err = rc == ESDB_EINVAL ? invalid(env, "invalid_cluster", map)
		                        : nif_error_term(env, rc);
out:
	free(members);
	free(addrs);
	return err;
}

/* cluster_open(Path, Options, Cluster) -> {ok, Store} | {error, Reason} */
ERL_NIF_TERM nif_cluster_open(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
	return nif_open_with(env, argv, setup, argv[2]);
}

/* The replica of an open cluster store, its lock held shared; NULL with
 * *err set otherwise. */
static esdb_replica *acquire(ErlNifEnv *env, ERL_NIF_TERM t, store_res **r,
                             ERL_NIF_TERM *err)
{
	if (!nif_store_acquire(env, t, r)) {
		*err = enif_make_badarg(env);
		return NULL;
	}
	if ((*r)->closed) {
		nif_store_release(*r);
		*err = nif_error_term(env, ESDB_ECLOSED);
		return NULL;
	}
	if (!(*r)->cluster) {
		nif_store_release(*r);
		*err = enif_make_tuple2(env, atom_error,
		                        enif_make_atom(env, "not_cluster"));
		return NULL;
	}
	return (*r)->cluster->rep;
}

/* cluster_info(Store) -> {ok, #{id, leader_id, leader_address, leader,
 * term, applied, failure, needs_copy}}; `leader` is about `term` (both
 * read again until the term did not move in between). */
ERL_NIF_TERM nif_cluster_info(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
	store_res *r;
	ERL_NIF_TERM err;
	esdb_replica *rep = acquire(env, argv[0], &r, &err);
	if (!rep)
		return err;
	char addr[ADDR_MAX], why[256];
	uint64_t leader = 0;
	esdb_replica_get_leader(rep, &leader, addr, sizeof(addr));
	int failed = esdb_replica_get_failure(rep, why, sizeof(why));
	uint64_t term;
	bool is_leader;
	do {
		term = esdb_replica_get_term(rep);
		is_leader = esdb_replica_is_leader(rep);
	} while (term != esdb_replica_get_term(rep));
	esdb_replica_progress pg;
	esdb_replica_get_progress(rep, &pg);
	uint64_t now = esdb_clock_get_us();
	ERL_NIF_TERM keys[] = {
	    enif_make_atom(env, "id"),
	    enif_make_atom(env, "leader_id"),
	    enif_make_atom(env, "leader_address"),
	    enif_make_atom(env, "leader"),
	    enif_make_atom(env, "term"),
	    enif_make_atom(env, "applied"),
	    enif_make_atom(env, "failure"),
	    enif_make_atom(env, "needs_copy"),
	    enif_make_atom(env, "commit"),
	    enif_make_atom(env, "last_index"),
	    enif_make_atom(env, "loop_age_us"),
	};
	ERL_NIF_TERM vals[] = {
	    enif_make_uint64(env, esdb_replica_get_id(rep)),
	    enif_make_uint64(env, leader),
	    leader ? nif_make_bin(env, addr, strlen(addr)) : atom_nil,
	    is_leader ? atom_true : atom_false,
	    enif_make_uint64(env, term),
	    enif_make_uint64(env, esdb_replica_get_applied(rep)),
	    failed ? enif_make_tuple2(
	                 env, enif_make_atom(env, esdb_error_name(failed)),
	                 nif_make_bin(env, why, strlen(why)))
	           : atom_nil,
	    esdb_replica_get_needs_copy(rep) ? atom_true : atom_false,
	    enif_make_uint64(env, pg.commit),
	    enif_make_uint64(env, pg.last_index),
	    enif_make_uint64(
	        env, pg.loop_us && now > pg.loop_us ? now - pg.loop_us : 0),
	};
	nif_store_release(r);
	ERL_NIF_TERM m;
	enif_make_map_from_arrays(env, keys, vals, sizeof(keys) / sizeof(*keys),
	                          &m);
	return enif_make_tuple2(env, atom_ok, m);
}

/* ETIMEDOUT (a transfer no node took up) is the vocabulary's timeout;
 * EBUSY is another membership change in progress. */
static ERL_NIF_TERM change_reply(ErlNifEnv *env, int rc)
{
	if (rc == ETIMEDOUT)
		return enif_make_tuple2(env, atom_error,
		                        enif_make_atom(env, "timeout"));
	if (rc == ESDB_EBUSY) /* the core's name for it is already_open */
		return enif_make_tuple2(
		    env, atom_error, enif_make_atom(env, "change_in_progress"));
	return rc ? nif_error_term(env, rc) : atom_ok;
}

/* cluster_members(Store) -> {ok, [{Id, Address, voter | standby | spare}]} */
ERL_NIF_TERM nif_cluster_members(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
	store_res *r;
	ERL_NIF_TERM err;
	esdb_replica *rep = acquire(env, argv[0], &r, &err);
	if (!rep)
		return err;
	esdb_replica_member_info m[64];
	size_t n = 0;
	esdb_replica_hold(rep); /* see change() */
	nif_store_release(r);
	int rc = esdb_replica_get_members(rep, m, 64, &n);
	esdb_replica_release(rep);
	if (rc)
		return nif_error_term(env, rc);
	if (n > 64)
		n = 64;
	ERL_NIF_TERM list = enif_make_list(env, 0);
	for (size_t i = n; i-- > 0;) {
		const char *role = m[i].role == ESDB_REPLICA_VOTER ? "voter"
		                   : m[i].role == ESDB_REPLICA_STANDBY
		                       ? "standby"
		                       : "spare";
		ERL_NIF_TERM t = enif_make_tuple3(
		    env, enif_make_uint64(env, m[i].id),
		    nif_make_bin(env, m[i].address, strlen(m[i].address)),
		    enif_make_atom(env, role));
		list = enif_make_list_cell(env, t, list);
	}
	return enif_make_tuple2(env, atom_ok, list);
}

/* One membership change; the cluster_* functions below differ only in
 * their arguments. */
typedef enum {
	CHANGE_ADD,
	CHANGE_ASSIGN,
	CHANGE_REMOVE,
	CHANGE_TRANSFER
} change_op;

/* Runs op on Store's replica (its arguments already checked) and replies
 * ok | {error, Reason}. */
static ERL_NIF_TERM change(ErlNifEnv *env, ERL_NIF_TERM store, change_op op,
                           uint64_t id, const char *addr, int role)
{
	store_res *r;
	ERL_NIF_TERM err;
	esdb_replica *rep = acquire(env, store, &r, &err);
	if (!rep)
		return err;
	/* Raft may take seconds (a new voter's catch-up): hold the replica,
	 * not the store's lock, so a close is not held up meanwhile (it
	 * answers this call instead), nor the calls queued behind it. */
	esdb_replica_hold(rep);
	nif_store_release(r);
	int rc;
	switch (op) {
	case CHANGE_ADD:
		rc = esdb_replica_add(rep, id, addr);
		break;
	case CHANGE_ASSIGN:
		rc = esdb_replica_assign(rep, id, role);
		break;
	case CHANGE_REMOVE:
		rc = esdb_replica_remove(rep, id);
		break;
	default:
		rc = esdb_replica_transfer(rep, id);
		break;
	}
	esdb_replica_release(rep);
	return change_reply(env, rc);
}

/* cluster_add(Store, Id, Address) -> ok | {error, Reason} */
ERL_NIF_TERM nif_cluster_add(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
	uint64_t id;
	char addr[ADDR_MAX];
	if (!nif_get_u64(env, argv[1], &id) || !get_address(env, argv[2], addr))
		return enif_make_badarg(env);
	return change(env, argv[0], CHANGE_ADD, id, addr, 0);
}

/* cluster_assign(Store, Id, voter | standby | spare) -> ok | {error, _} */
ERL_NIF_TERM nif_cluster_assign(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
	uint64_t id;
	int role;
	if (!nif_get_u64(env, argv[1], &id))
		return enif_make_badarg(env);
	if (enif_is_identical(argv[2], enif_make_atom(env, "voter")))
		role = ESDB_REPLICA_VOTER;
	else if (enif_is_identical(argv[2], enif_make_atom(env, "standby")))
		role = ESDB_REPLICA_STANDBY;
	else if (enif_is_identical(argv[2], enif_make_atom(env, "spare")))
		role = ESDB_REPLICA_SPARE;
	else
		return enif_make_badarg(env);
	return change(env, argv[0], CHANGE_ASSIGN, id, NULL, role);
}

/* cluster_remove(Store, Id) -> ok | {error, Reason} */
ERL_NIF_TERM nif_cluster_remove(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
	uint64_t id;
	if (!nif_get_u64(env, argv[1], &id))
		return enif_make_badarg(env);
	return change(env, argv[0], CHANGE_REMOVE, id, NULL, 0);
}

/* cluster_transfer(Store, Id) -> ok | {error, Reason}; Id 0: any voter */
ERL_NIF_TERM nif_cluster_transfer(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
	uint64_t id;
	if (!nif_get_u64(env, argv[1], &id))
		return enif_make_badarg(env);
	return change(env, argv[0], CHANGE_TRANSFER, id, NULL, 0);
}

/* cluster_install_copy(Store, Path) -> ok | {error, Reason}: replace the
 * store by the copy of a member's store in file Path (esdb_store_copy's
 * output), which the replica takes only while it waits for one
 * (cluster_info's needs_copy); else {error, invalid_argument}. */
ERL_NIF_TERM nif_cluster_install_copy(ErlNifEnv *env, int argc,
                                      const ERL_NIF_TERM argv[])
{
	ErlNifBinary b;
	char path[ESDB_PROTO_MAX_PATH + 1];
	if (!enif_inspect_binary(env, argv[1], &b) || b.size == 0 ||
	    b.size > ESDB_PROTO_MAX_PATH || memchr(b.data, 0, b.size))
		return enif_make_badarg(env);
	memcpy(path, b.data, b.size);
	path[b.size] = 0;
	store_res *r;
	ERL_NIF_TERM err;
	if (!acquire(env, argv[0], &r, &err))
		return err;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = fd < 0 ? errno : esdb_store_restore(r->s, fd);
	if (fd >= 0)
		close(fd);
	nif_store_release(r);
	return rc ? nif_error_term(env, rc) : atom_ok;
}

#else /* no raft in this build */

static ERL_NIF_TERM unsupported(ErlNifEnv *env)
{
	return enif_make_tuple2(
	    env, atom_error,
	    enif_make_tuple2(env, enif_make_atom(env, "no_cluster_support"),
	                     nif_make_bin(env, ESDB_CLUSTER_MISSING,
	                                  strlen(ESDB_CLUSTER_MISSING))));
}

void nif_cluster_free(nif_cluster *c)
{
	(void)c;
}

#define UNSUPPORTED(fn)                                                        \
	ERL_NIF_TERM fn(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])   \
	{                                                                      \
		return unsupported(env);                                       \
	}
UNSUPPORTED(nif_cluster_install_copy)
UNSUPPORTED(nif_cluster_open)
UNSUPPORTED(nif_cluster_info)
UNSUPPORTED(nif_cluster_members)
UNSUPPORTED(nif_cluster_add)
UNSUPPORTED(nif_cluster_assign)
UNSUPPORTED(nif_cluster_remove)
UNSUPPORTED(nif_cluster_transfer)

#endif
