/* main.c: priv/ex_esdb_cnode, one store served to BEAM nodes as a C node.
 *
 *   ex_esdb_cnode --name NAME@HOST --store [NAME=]DIR [--store NAME=DIR ...]
 *                 (--cookie-stdin | --cookie-fd N | --cookie-file PATH)
 *                 [--listen 127.0.0.1] [--port 0] [--no-epmd]
 *                 [--creation N] [--idle-ms 120000] [--net-ticktime 60]
 *                 [--max-conns 64]
 *                 [--durability sync|no_meta_sync|nosync] [--stop-on-eof]
 *                 [--max-sessions 8] [--max-subscriptions 1024]
 *                 [--raft-id N --raft-address IP:PORT [--raft-bind IP:PORT]
 *                  --raft-member ID,IP:PORT,NAME@HOST ...
 *                  [--raft-election-timeout-ms 1000] [--raft-heartbeat-ms 100]
 *                  [--raft-snapshot-threshold N] [--raft-trailing-bytes N]
 *                  [--raft-copy-from NAME@HOST ...]
 *                  [--raft-wiped refuse|rejoin]]
 *
 * --raft-*: the first store is a raft replica (cluster.c), as the NIF's
 * cluster_open/3 makes one; --raft-member lists every member, this one
 * included, with its C node name (the same list on every member); a
 * store behind raft's snapshot pulls a copy from one of them or from a
 * --raft-copy-from C node (copies.h; a member added at run time starts
 * with no --raft-member and names its sources so). --raft-wiped: what a
 * replica whose data directory was lost does (cluster.h): exit 3
 * (refuse, the default) or come back as a new member (rejoin.c). A
 * store directory holding another member's raft state: exit 4.
 * The first --store is served to requests that name none; each store is
 * named by NAME= or by its directory's last component, and requests
 * {at, Name, Request} go to the one named so (at most MAX_STORES).
 * Prints "ready NAME PORT" on stdout once it accepts connections. The
 * cookie is never an argument (any user can read /proc/PID/cmdline).
 * Every start picks a fresh 32-bit creation (ei_publish drops epmd's),
 * so pids and refs of an earlier instance never match this one's. With
 * --no-epmd it does not register: BEAM nodes reach it through an
 * -epmd_module that knows the port. --stop-on-eof: stdin reaching its end
 * stops the node (the Port that started it closed). */
#include "cnode.h"

#include "cluster.h"
#include "conn.h"
#include "cookie.h"
#include "handshake.h"
#include "pool.h"
#include "sessions.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define READ_THREADS 2

void cn_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ex_esdb_cnode: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

_Noreturn static void usage(const char *why)
{
	fprintf(stderr,
	        "ex_esdb_cnode: %s\n"
	        "usage: ex_esdb_cnode --name NAME@HOST --store [NAME=]DIR "
	        "[--store NAME=DIR ...]\n"
	        "         (--cookie-stdin | --cookie-fd N | --cookie-file "
	        "PATH)\n"
	        "         [--listen ADDR] [--port N] [--no-epmd] "
	        "[--creation N]\n"
	        "         [--idle-ms MS] [--net-ticktime S] [--max-conns N] "
	        "[--durability "
	        "sync|no_meta_sync|nosync]\n"
	        "         [--stop-on-eof] [--max-sessions N] "
	        "[--max-subscriptions N]\n"
	        "         [--raft-id N --raft-address IP:PORT [--raft-bind "
	        "IP:PORT]\n"
	        "          --raft-member ID,IP:PORT,NAME@HOST ... "
	        "[--raft-election-timeout-ms MS]\n"
	        "          [--raft-heartbeat-ms MS] [--raft-snapshot-threshold "
	        "N] [--raft-trailing-bytes N]\n"
	        "          [--raft-copy-from NAME@HOST ...] [--raft-wiped "
	        "refuse|rejoin]]\n",
	        why);
	exit(2);
}

#define MAX_STORES 16

typedef struct opts {
	const char *name, *listen, *cookie_file, *durability;
	const char *stores[MAX_STORES]; /* [NAME=]DIR */
	unsigned n_stores;
	int cookie_fd; /* -1: none */
	bool cookie_stdin, no_epmd, stop_on_eof;
	unsigned port, max_conns, max_sessions, max_subs;
	/* --idle-ms (ULLONG_MAX: not given) and the clients' --net-ticktime
	 * in seconds */
	unsigned long long idle_ms, net_ticktime;
	unsigned long long creation; /* 0: pick one */
	cn_cluster_opts cluster;     /* --raft-*: the first store's replica */
} opts;

static unsigned long long number(const char *flag, const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || !*s || *end || *s == '-') {
		fprintf(stderr, "ex_esdb_cnode: %s wants a number, not %s\n",
		        flag, s);
		exit(2);
	}
	return v;
}

static void parse(int argc, char **argv, opts *o)
{
	*o = (opts){.listen = "127.0.0.1",
	            .cookie_fd = -1,
	            .idle_ms = ULLONG_MAX,
	            .net_ticktime = 60,
	            .max_conns = 64,
	            .max_sessions = 8,
	            .max_subs = 1024};
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;
		if (strcmp(f, "--cookie-stdin") == 0)
			o->cookie_stdin = true, takes = false;
		else if (strcmp(f, "--no-epmd") == 0)
			o->no_epmd = true, takes = false;
		else if (strcmp(f, "--stop-on-eof") == 0)
			o->stop_on_eof = true, takes = false;
		else if (!v)
			usage("an option lacks its value");
		else if (cn_cluster_arg(&o->cluster, f, v))
			;
		else if (strcmp(f, "--name") == 0)
			o->name = v;
		else if (strcmp(f, "--store") == 0 && o->n_stores == MAX_STORES)
			usage("too many --store");
		else if (strcmp(f, "--store") == 0)
			o->stores[o->n_stores++] = v;
		else if (strcmp(f, "--listen") == 0)
			o->listen = v;
		else if (strcmp(f, "--port") == 0)
			o->port = (unsigned)number(f, v);
		else if (strcmp(f, "--cookie-fd") == 0)
			o->cookie_fd = (int)number(f, v);
		else if (strcmp(f, "--cookie-file") == 0)
			o->cookie_file = v;
		else if (strcmp(f, "--creation") == 0)
			o->creation = number(f, v);
		else if (strcmp(f, "--idle-ms") == 0)
			o->idle_ms = number(f, v);
		else if (strcmp(f, "--net-ticktime") == 0)
			o->net_ticktime = number(f, v);
		else if (strcmp(f, "--max-conns") == 0)
			o->max_conns = (unsigned)number(f, v);
		else if (strcmp(f, "--max-sessions") == 0)
			o->max_sessions = (unsigned)number(f, v);
		else if (strcmp(f, "--max-subscriptions") == 0)
			o->max_subs = (unsigned)number(f, v);
		else if (strcmp(f, "--durability") == 0)
			o->durability = v;
		else if (strcmp(f, "--cookie") == 0)
			usage("the cookie is never an argument (ps shows it): "
			      "use --cookie-stdin, --cookie-fd or "
			      "--cookie-file");
		else
			usage("unknown option");
		if (takes)
			i++;
	}
	if (!o->name || !strchr(o->name, '@') || !o->n_stores)
		usage("--name NAME@HOST and --store DIR are required");
	if ((o->cookie_stdin ? 1 : 0) + (o->cookie_fd >= 0 ? 1 : 0) +
	        (o->cookie_file ? 1 : 0) !=
	    1)
		usage("give exactly one of --cookie-stdin, --cookie-fd, "
		      "--cookie-file");
	if (o->port > 65535 || o->creation > UINT32_MAX)
		usage("--port or --creation out of range");
	/* A BEAM node idle on a connection sends a tick every net_ticktime
	 * / 4 and takes the peer for dead after net_ticktime: a limit under
	 * the clients' net tick time would drop healthy idle nodes. poll()
	 * takes an int. */
	if (o->net_ticktime < 1 || o->net_ticktime > INT_MAX / 2000)
		usage("--net-ticktime out of range (1.. seconds; the clients' "
		      "net_ticktime, 60 by default)");
	/* not given: 120 s, or twice the tick time when that is more */
	if (o->idle_ms == ULLONG_MAX)
		o->idle_ms =
		    o->net_ticktime > 60 ? o->net_ticktime * 2000 : 120000;
	if (o->idle_ms > INT_MAX)
		usage("--idle-ms out of range");
	if (o->idle_ms < o->net_ticktime * 1000)
		usage("--idle-ms below the net tick time (--net-ticktime, 60 s "
		      "by default): healthy idle clients would be dropped");
}

/* A creation no earlier instance is likely to have had. Values under 4
 * are avoided: old nodes used 1..3. */
static unsigned pick_creation(void)
{
	uint32_t c = 0;
	while (c < 4)
		if (getrandom(&c, sizeof(c), 0) != sizeof(c))
			c = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	return c;
}

cn_server *cn_store_find(cn_server *srv, const char *name, size_t len)
{
	for (cn_server *s = srv; s; s = s->next_store)
		if (strlen(s->store_name) == len &&
		    memcmp(s->store_name, name, len) == 0)
			return s;
	return NULL;
}

/* Open the store `spec` ([NAME=]DIR) into srv. */
static int open_store(cn_server *srv, const opts *o, const char *spec,
                      bool first)
{
	const char *eq = strchr(spec, '=');
	const char *dir = eq ? eq + 1 : spec;
	const char *slash = strrchr(dir, '/');
	size_t name_len = eq ? (size_t)(eq - spec) : strlen(dir);
	const char *name = eq ? spec : dir;
	if (!eq && slash && slash[1]) {
		name = slash + 1;
		name_len = strlen(name);
	}
	char *copy = strndup(name, name_len);
	if (!copy || !name_len || !*dir)
		usage("--store: [NAME=]DIR with a name and a directory");
	srv->store_name = copy;
	srv->store_dir = dir;
	pthread_rwlock_init(&srv->store_lock, NULL);
	int rc = esdb_store_create(&srv->store);
	if (!rc)
		rc = esdb_store_set_owner(srv->store, o->name);
	if (!rc && o->durability) {
		esdb_durability d = ESDB_DURABILITY_SYNC;
		if (strcmp(o->durability, "sync") == 0)
			d = ESDB_DURABILITY_SYNC;
		else if (strcmp(o->durability, "no_meta_sync") == 0)
			d = ESDB_DURABILITY_NO_META_SYNC;
		else if (strcmp(o->durability, "nosync") == 0)
			d = ESDB_DURABILITY_NOSYNC;
		else
			usage("--durability: sync, no_meta_sync or nosync");
		rc = esdb_store_set_durability(srv->store, d);
	}
	if (!rc && first)
		rc = cn_cluster_setup(srv, &o->cluster, o->name);
	if (!rc)
		rc = esdb_store_open(srv->store, dir);
	if (!rc)
		rc = esdb_store_get_limits(srv->store, &srv->limits);
	if (rc) {
		cn_log("cannot open the store in %s: %s", dir,
		       esdb_error_describe(rc));
		return -1;
	}
	return 0;
}

/* Open every store: the first into srv, the others into cn_servers
 * chained from it, sharing its node fields (copied once those are
 * set: see share_node). The frame cap is the largest store's. */
static int open_stores(cn_server *srv, const opts *o)
{
	cn_server *last = srv;
	for (unsigned i = 0; i < o->n_stores; i++) {
		cn_server *s = i ? calloc(1, sizeof(*s)) : srv;
		if (!s || open_store(s, o, o->stores[i], i == 0) != 0)
			return -1;
		/* s is not chained yet */
		for (cn_server *t = s == srv ? NULL : srv; t; t = t->next_store)
			if (strcmp(t->store_name, s->store_name) == 0) {
				cn_log("two stores named %s", s->store_name);
				return -1;
			}
		uint64_t cap = s->limits.max_append_bytes + (1u << 20);
		if (cap > srv->frame_cap)
			srv->frame_cap = cap;
		if (s != srv) {
			last->next_store = s;
			last = s;
		}
	}
	return 0;
}

/* The node's fields, set on the first store, copied to the others. */
static void share_node(cn_server *srv)
{
	for (cn_server *s = srv->next_store; s; s = s->next_store) {
		s->frame_cap = srv->frame_cap;
		s->idle_ms = srv->idle_ms;
		s->max_inflight = srv->max_inflight;
		s->max_queue_bytes = srv->max_queue_bytes;
		s->max_conns = srv->max_conns;
		s->max_sessions = srv->max_sessions;
		s->max_subs = srv->max_subs;
		s->ec = srv->ec;
		s->pool = srv->pool;
	}
}

typedef struct acceptor {
	cn_server *srv;
	int lfd;
} acceptor;

/* Handshakes under way at once; more connections wait in the backlog
 * or are closed. */
#define MAX_HANDSHAKES 32

static void *accept_loop(void *arg)
{
	acceptor *a = arg;
	cn_handshake_accept_loop(a->srv, a->lfd, MAX_HANDSHAKES);
	return NULL;
}

static void *eof_watch(void *arg)
{
	char buf[256];
	while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
		;
	kill(getpid(), SIGTERM);
	return NULL;
}

int main(int argc, char **argv)
{
	opts o;
	parse(argc, argv, &o);

	/* Signals go to sigwait below; writes to a closed peer fail with
	 * EPIPE instead of killing the node. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	char cookie[CN_COOKIE_MAX + 1];
	const char *why = NULL;
	int crc =
	    o.cookie_file
	        ? cn_cookie_read_file(o.cookie_file, cookie, &why)
	        : cn_cookie_read_fd(o.cookie_stdin ? STDIN_FILENO : o.cookie_fd,
	                            cookie, &why);
	if (crc != 0) {
		cn_log("%s", why);
		return 2;
	}
	if (o.cookie_fd >= 0 && o.cookie_fd != STDIN_FILENO)
		close(o.cookie_fd);

	static cn_server srv;
	srv.idle_ms = (unsigned)o.idle_ms;
	srv.max_conns = o.max_conns;
	srv.max_sessions = o.max_sessions;
	srv.max_subs = o.max_subs;
	srv.max_inflight = 64;
	srv.max_queue_bytes = 64u << 20;
	/* before the stores: a replica with no raft state asks the other
	 * members (cn_cluster_guard_wiped) */
	struct in_addr addr;
	if (inet_pton(AF_INET, o.listen, &addr) != 1)
		usage("--listen wants an IPv4 address");
	char alive[MAXNODELEN + 1], host[MAXNODELEN + 1];
	snprintf(alive, sizeof(alive), "%.*s",
	         (int)(strchr(o.name, '@') - o.name), o.name);
	snprintf(host, sizeof(host), "%s", strchr(o.name, '@') + 1);
	unsigned creation = o.creation ? (unsigned)o.creation : pick_creation();
	if (ei_init() != 0 ||
	    ei_connect_xinit_ussi(&srv.ec, host, alive, o.name,
	                          (Erl_IpAddr)&addr, cookie, creation,
	                          cn_handshake_callbacks(),
	                          sizeof(ei_socket_callbacks), NULL) < 0) {
		cn_log("cannot set up the node %s", o.name);
		return 1;
	}
	memset(cookie, 0, sizeof(cookie));
	if (open_stores(&srv, &o) != 0)
		return 1;
	int port = (int)o.port;
	int lfd = ei_xlisten(&srv.ec, (Erl_IpAddr)&addr, &port, 16);
	if (lfd < 0) {
		cn_log("cannot listen on %s:%u: %s", o.listen, o.port,
		       strerror(erl_errno));
		return 1;
	}
	/* epmd keeps the name registered while this fd stays open. */
	int epmd_fd = -1;
	if (!o.no_epmd && (epmd_fd = ei_publish(&srv.ec, port)) < 0) {
		cn_log("cannot register with epmd (is it running? or "
		       "--no-epmd): %s",
		       strerror(erl_errno));
		return 1;
	}
	srv.pool = cn_pool_start(READ_THREADS);
	share_node(&srv);
	if (cn_cluster_start(&srv) != 0) {
		cn_log("cannot start the replica's copy puller");
		return 1;
	}
	for (cn_server *s = &srv; s; s = s->next_store)
		if (cn_sessions_start(s) != 0) {
			cn_log("cannot start the fan-out of store %s",
			       s->store_name);
			return 1;
		}
	static acceptor acc;
	acc = (acceptor){&srv, lfd};
	pthread_t t;
	if (!srv.pool || pthread_create(&t, NULL, accept_loop, &acc) != 0) {
		cn_log("cannot start threads");
		return 1;
	}
	if (o.stop_on_eof && pthread_create(&t, NULL, eof_watch, NULL) != 0) {
		cn_log("cannot start threads");
		return 1;
	}
	printf("ready %s %d\n", o.name, port);
	fflush(stdout);

	int sig;
	sigwait(&stop, &sig);
	/* Queued commands are answered closed; acknowledged ones are on
	 * disk already. */
	for (cn_server *s = &srv; s; s = s->next_store) {
		cn_sessions_close(s);
		pthread_rwlock_wrlock(&s->store_lock);
		s->closed = true;
		esdb_store_close(s->store);
		pthread_rwlock_unlock(&s->store_lock);
	}
	if (epmd_fd >= 0)
		close(epmd_fd);
	cn_log("stopped (%s); refused: %lu handshakes, %lu connections "
	       "for bad frames, %lu messages that were not requests",
	       sig == SIGINT ? "SIGINT" : "SIGTERM",
	       atomic_load(&srv.refused_handshakes),
	       atomic_load(&srv.closed_frames), atomic_load(&srv.dropped_msgs));
	return 0;
}
