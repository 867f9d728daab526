/* cluster.c: replica processes for the tests (cluster.h). */
#include "cluster.h"

#include "replica.h"
#include "spawn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the node process ------------------------------------------------- */

typedef struct node_cmd {
	/* I info, A append, T append fenced to `term`, W writers, Q quit;
	 * a add, r assign, x remove, t transfer (n: the member's id, role:
	 * its role) */
	char op;
	char role;
	char stream[30];
	uint64_t n;
	uint64_t term;
	char address[32];
} node_cmd;

extern int esdb__apply_fault[4]; /* c_src/core/internal.h */
extern unsigned esdb__replica_apply_delay_us;
extern unsigned esdb__replica_entry_version;
extern unsigned esdb__replica_command_version;
extern unsigned esdb__replica_fail_after_growth;
extern unsigned esdb__replica_fail_log_write;

typedef struct node_proc {
	esdb_store *s;
	esdb_replica *r;
	int ack_fd;
	int report_fd;
	uint64_t id;
	atomic_bool writing;
	atomic_uint_fast64_t counter;
	atomic_uint_fast64_t unknown;
	atomic_uint threads_started;
	bool retrying; /* writers append at exact versions, retrying */
	bool async;    /* writers are async clients (async_client) */
	bool async_next;
	atomic_uint async_active;
	atomic_uint_fast64_t leader_events;
	pthread_t threads[64];
	unsigned n_threads;
	unsigned batch;   /* events per writer_main append */
	const char *data; /* their data */
} node_proc;

#define WRITER_BATCH_MAX 100

static void write_all(int fd, const void *buf, size_t len)
{
	if (!fd_write_all(fd, buf, len))
		_exit(97);
}

static void *writer_main(void *arg)
{
	node_proc *np = arg;
	char stream[32];
	snprintf(stream, sizeof(stream), "w%" PRIu64 "-%u", np->id,
	         (unsigned)(uintptr_t)pthread_self() % 1000);
	unsigned batch = np->batch ? np->batch : 1;
	if (batch > WRITER_BATCH_MAX)
		batch = WRITER_BATCH_MAX;
	uint8_t ids[WRITER_BATCH_MAX][16];
	esdb_new_event evs[WRITER_BATCH_MAX];
	while (atomic_load(&np->writing)) {
		/* unique across nodes and incarnations */
		uint64_t n = np->id << 56 |
		             (uint64_t)(getpid() & 0xffffff) << 32 |
		             atomic_fetch_add(&np->counter, batch);
		for (unsigned k = 0; k < batch; k++)
			evs[k] = make_event(ids[k], n + k, "t", np->data);
		esdb_result res;
		int rc = esdb_stream_append(np->s, stream, strlen(stream),
		                            ESDB_EXPECT_ANY, evs, batch, &res);
		if (rc == 0) {
			/* the first event's number, position and version */
			ack a = {n, res.position, res.version - (batch - 1),
			         np->id};
			write_all(np->ack_fd, &a, sizeof(a)); /* atomic */
		} else if (rc == ESDB_EOUTCOME_UNKNOWN) {
			atomic_fetch_add(&np->unknown, 1);
		} else if (rc == ESDB_ENOT_LEADER) {
			usleep(2000);
		} else if (rc != ESDB_EOUTCOME_UNKNOWN && rc != ESDB_ECLOSED) {
			usleep(1000);
		}
	}
	return NULL;
}

/* A writer that keeps a version per stream: each event is appended at
 * the stream's exact version and, when the outcome is unknown or the node
 * was not leader, retried with the same id and expected version until it
 * is in (the append rules answer a retry of what is in with its original
 * result). A wrong_expected_version means an event went in twice or
 * not in order: reported, as any other error. */
static void *retry_writer_main(void *arg)
{
	node_proc *np = arg;
	char stream[48];
	snprintf(stream, sizeof(stream), "x%" PRIu64 "-%d-%u", np->id,
	         (int)getpid(), atomic_fetch_add(&np->threads_started, 1));
	uint64_t v = 0;
	while (atomic_load(&np->writing)) {
		uint64_t n = np->id << 56 |
		             (uint64_t)(getpid() & 0xffffff) << 32 |
		             atomic_fetch_add(&np->counter, 1);
		uint8_t id[16];
		esdb_new_event ev = make_event(id, n, "t", "data");
		for (;;) {
			esdb_result res;
			int rc = esdb_stream_append(
			    np->s, stream, strlen(stream), v, &ev, 1, &res);
			if (rc == 0 && res.version == v + 1) {
				ack a = {n, res.position, res.version, np->id};
				write_all(np->ack_fd, &a, sizeof(a));
				v++;
				break;
			}
			if (rc == ESDB_EOUTCOME_UNKNOWN)
				atomic_fetch_add(&np->unknown, 1);
			if (rc == ESDB_ENOT_LEADER ||
			    rc == ESDB_EOUTCOME_UNKNOWN) {
				if (!atomic_load(&np->writing))
					return NULL;
				usleep(2000);
				continue;
			}
			if (rc == ESDB_ECLOSED)
				return NULL;
			/* an error the test reports */
			ack a = {n, 0, (uint64_t)(int64_t)rc,
			         np->id | ACK_ERROR};
			write_all(np->ack_fd, &a, sizeof(a));
			return NULL;
		}
	}
	return NULL;
}

/* An async client: one append in flight, submitted with esdb_store_submit
 * and the next one sent from the completion callback (on the replica's
 * writer thread), as the NIF's callers (BEAM processes answered with a
 * message) and the single-node bench's async clients do: no thread waits
 * per append. Stops at the first error or when writing ends. */
typedef struct async_client {
	node_proc *np;
	char stream[32];
	uint64_t n;
} async_client;

static async_client async_clients[64];

static void async_done(void *ctx, const esdb_result *res);

static void async_submit(async_client *ac)
{
	node_proc *np = ac->np;
	unsigned batch = np->batch ? np->batch : 1;
	if (batch > WRITER_BATCH_MAX)
		batch = WRITER_BATCH_MAX;
	esdb_new_event evs[WRITER_BATCH_MAX];
	uint8_t ids[WRITER_BATCH_MAX][16];
	ac->n = np->id << 56 | (uint64_t)(getpid() & 0xffffff) << 32 |
	        atomic_fetch_add(&np->counter, batch);
	for (unsigned k = 0; k < batch; k++)
		evs[k] = make_event(ids[k], ac->n + k, "t", np->data);
	esdb_limits l;
	esdb_cmd cmd;
	esdb_store_get_limits(np->s, &l);
	if (esdb_cmd_stream_append(&l, ac->stream, strlen(ac->stream),
	                           ESDB_EXPECT_ANY, evs, batch, &cmd) != 0) {
		atomic_fetch_sub(&np->async_active, 1);
		return;
	}
	esdb_store_submit(np->s, &cmd, async_done, ac); /* answers errors */
}

static void async_done(void *ctx, const esdb_result *res)
{
	async_client *ac = ctx;
	node_proc *np = ac->np;
	unsigned batch = np->batch ? np->batch : 1;
	if (batch > WRITER_BATCH_MAX)
		batch = WRITER_BATCH_MAX;
	if (res->rc == 0) {
		ack a = {ac->n, res->position, res->version - (batch - 1),
		         np->id};
		write_all(np->ack_fd, &a, sizeof(a));
	} else if (res->rc == ESDB_EOUTCOME_UNKNOWN) {
		atomic_fetch_add(&np->unknown, 1);
	}
	if (res->rc == 0 && atomic_load(&np->writing))
		async_submit(ac);
	else
		atomic_fetch_sub(&np->async_active, 1);
}

/* How long stopped writers may take to finish their last appends: a
 * caller never answered (a proposer that waits for ever) fails the node
 * (exit 95) instead of hanging the test. */
#define WRITERS_STOP_MS 30000

static void set_writers(node_proc *np, unsigned threads)
{
	uint64_t until = mono_ms() + WRITERS_STOP_MS;
	if (np->async) {
		atomic_store(&np->writing, false);
		while (atomic_load(&np->async_active)) {
			if (mono_ms() > until)
				_exit(95);
			usleep(1000);
		}
		np->async = false;
	}
	if (np->n_threads) {
		atomic_store(&np->writing, false);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += WRITERS_STOP_MS / 1000;
		for (unsigned i = 0; i < np->n_threads; i++)
			if (pthread_timedjoin_np(np->threads[i], NULL, &ts))
				_exit(95);
		np->n_threads = 0;
	}
	if (threads > 64)
		threads = 64;
	atomic_store(&np->writing, threads > 0);
	if (np->async_next) {
		np->async_next = false;
		np->async = true;
		atomic_store(&np->async_active, threads);
		for (unsigned i = 0; i < threads; i++) {
			async_client *ac = &async_clients[i];
			ac->np = np;
			snprintf(ac->stream, sizeof(ac->stream),
			         "a%" PRIu64 "-%u", np->id, i);
			async_submit(ac);
		}
		return;
	}
	for (unsigned i = 0; i < threads; i++)
		if (pthread_create(&np->threads[i], NULL,
		                   np->retrying ? retry_writer_main
		                                : writer_main,
		                   np) == 0)
			np->n_threads++;
}

static void on_leader(void *ctx, uint64_t id, const char *address, bool self)
{
	node_proc *np = ctx;
	atomic_fetch_add(&np->leader_events, 1);
	if (np->report_fd >= 0) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		leader_report rep = {np->id, esdb_replica_get_term(np->r), id,
		                     self,
		                     (uint64_t)ts.tv_sec * 1000 +
		                         (uint64_t)ts.tv_nsec / 1000000};
		write_all(np->report_fd, &rep, sizeof(rep)); /* atomic */
	}
}

/* What a node process is told before its commands (node_start): the
 * cluster's settings and every node's id and address. */
#define NODE_DATA_MAX 4096

typedef struct node_config {
	int i, n, n_boot;
	unsigned election_ms, heartbeat_ms, snapshot_threshold;
	unsigned apply_delay_us, batch;
	int durability;
	int ack_fd, report_fd; /* inherited at these numbers */
	size_t data_len; /* the event data's bytes that follow; 0: "data" */
	node nodes[CLUSTER_MAX];
} node_config;

static _Noreturn void node_main(const node_config *c, const char *data,
                                int cmd_fd, int reply_fd)
{
	const node *nd = &c->nodes[c->i];
	node_proc np = {.ack_fd = c->ack_fd,
	                .report_fd = c->report_fd,
	                .id = nd->id,
	                .batch = c->batch,
	                .data = data};
	esdb_replica_member members[CLUSTER_MAX];
	for (int k = 0; k < c->n; k++)
		members[k] =
		    (esdb_replica_member){c->nodes[k].id, c->nodes[k].address};
	esdb_replica_config cfg = {
	    .id = nd->id,
	    .address = nd->address,
	    .bind_address = nd->bind_address[0] ? nd->bind_address : NULL,
	    .dir = nd->dir,
	    .members = members,
	    .n_members = (size_t)c->n_boot,
	    .on_leader = on_leader,
	    .on_leader_ctx = &np,
	    .election_timeout_ms = c->election_ms,
	    .heartbeat_ms = c->heartbeat_ms,
	    .snapshot_threshold = c->snapshot_threshold,
	};
	esdb__replica_apply_delay_us = c->apply_delay_us;
	esdb__replica_entry_version = nd->entry_version;
	esdb__replica_command_version = nd->command_version;
	int rc = esdb_store_create(&np.s);
	if (!rc)
		rc = esdb_store_set_durability(np.s, c->durability);
	if (!rc)
		rc = esdb_replica_create(np.s, &cfg, &np.r);
	if (!rc)
		rc = esdb_store_open(np.s, nd->dir);
	write_all(reply_fd, &rc, sizeof(rc));
	if (rc)
		_exit(1);
	node_cmd cmd;
	while (fd_read_all(cmd_fd, &cmd, sizeof(cmd))) {
		node_info info;
		memset(&info, 0, sizeof(info));
		if (cmd.op == 'Q')
			break;
		if (cmd.op == 'W') {
			np.retrying = cmd.role == 1;
			np.async_next = cmd.role == 2;
			set_writers(&np, (unsigned)cmd.n);
		} else if (cmd.op == 'A' || cmd.op == 'T') {
			uint8_t id[16];
			esdb_new_event ev = make_event(id, cmd.n, "t", "one");
			esdb_result res = {0};
			if (cmd.op == 'T')
				esdb_replica_fence_term(cmd.term);
			info.rc = esdb_stream_append(
			    np.s, cmd.stream, strlen(cmd.stream),
			    ESDB_EXPECT_ANY, &ev, 1, &res);
			esdb_replica_fence_term(0);
			info.position = res.position;
			info.version = res.version;
		} else if (cmd.op == 'D') {
			/* the writer's delay before each transaction */
			esdb__replica_apply_delay_us = (unsigned)cmd.n;
		} else if (cmd.op == 'L') {
			/* raft's next log write is reported failed */
			esdb__replica_fail_log_write = 1;
		} else if (cmd.op == 'G') {
			/* the next proposal fails once raft's log grew */
			esdb__replica_fail_after_growth = 1;
		} else if (cmd.op == 'F') {
			/* the store's next transaction fails with errno n */
			esdb__apply_fault[0] = (int)cmd.n;
		} else if (cmd.op == 'B') {
			/* a command with a bad checksum */
			esdb_cmd bad;
			uint8_t id[16];
			esdb_new_event ev = make_event(id, cmd.n, "t", "bad");
			if (esdb_cmd_stream_append(NULL, "s", 1,
			                           ESDB_EXPECT_ANY, &ev, 1,
			                           &bad) == 0) {
				bad.buf[bad.len - 1] ^= 1;
				info.rc = esdb_store_execute(np.s, &bad, NULL);
			}
		} else if (cmd.op == 'a') {
			info.rc = esdb_replica_add(np.r, cmd.n, cmd.address);
		} else if (cmd.op == 'r') {
			info.rc = esdb_replica_assign(np.r, cmd.n, cmd.role);
		} else if (cmd.op == 'x') {
			info.rc = esdb_replica_remove(np.r, cmd.n);
		} else if (cmd.op == 't') {
			info.rc = esdb_replica_transfer(np.r, cmd.n);
		}
		esdb_store_stats st;
		info.failed = esdb_replica_get_failure(np.r, info.failure,
		                                       sizeof(info.failure));
		info.store_failed = esdb_store_get_failure(np.s);
		info.unknown = atomic_load(&np.unknown);
		info.leader_events = atomic_load(&np.leader_events);
		info.is_leader = esdb_replica_is_leader(np.r);
		esdb_replica_get_leader(np.r, &info.leader_id, NULL, 0);
		info.events =
		    esdb_store_get_stats(np.s, &st) == 0 ? st.events : 0;
		info.applied = esdb_replica_get_applied(np.r);
		info.term = esdb_replica_get_term(np.r);
		write_all(reply_fd, &info, sizeof(info));
	}
	set_writers(&np, 0);
	esdb_store_close(np.s);
	/* exit, not _exit: under ASan the leak check runs in the node too */
	exit(0);
}

/* The node process: this binary exec'd by node_start (spawn.h). It
 * reads its node_config, then serves commands until 'Q' or the end of
 * its pipe. Runs before main, which it never reaches. */
__attribute__((constructor)) static void node_child(int argc, char **argv)
{
	int cmd_fd, reply_fd;
	if (!spawn_is_child(argc, argv, "node", &cmd_fd, &reply_fd))
		return;
	static node_config c;
	static char data[NODE_DATA_MAX + 1];
	if (!fd_read_all(cmd_fd, &c, sizeof(c)) || c.i < 0 ||
	    c.i >= CLUSTER_MAX || c.n > CLUSTER_MAX ||
	    c.data_len > NODE_DATA_MAX ||
	    !fd_read_all(cmd_fd, data, c.data_len))
		_exit(96);
	node_main(&c, c.data_len ? data : "data", cmd_fd, reply_fd);
}

/* ---- the test's side -------------------------------------------------- */

static void *ack_reader(void *arg)
{
	cluster *c = arg;
	ack a;
	while (fd_read_all(c->ack_r, &a, sizeof(a))) {
		pthread_mutex_lock(&c->lock);
		if (c->n_acks == c->cap_acks) {
			c->cap_acks = c->cap_acks ? c->cap_acks * 2 : 1024;
			c->acks = realloc(c->acks, c->cap_acks * sizeof(ack));
		}
		c->acks[c->n_acks++] = a;
		pthread_mutex_unlock(&c->lock);
	}
	return NULL;
}

/* A socket bound to 127.0.0.1:port (0: any free port) with
 * SO_REUSEADDR, not listening: the node's own bind (libuv sets
 * SO_REUSEADDR too) and listen still succeed, while connect() never picks
 * a bound port as its ephemeral one. -1 when the port is taken; the port
 * in *bound. */
static int hold_port(unsigned port, unsigned *bound)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	REQUIRE(fd >= 0);
	REQUIRE(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ==
	        0);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		close(fd);
		return -1;
	}
	*bound = ntohs(a.sin_port);
	return fd;
}

/* Hold the port node nd listens on again (it stopped or was killed). */
static void node_hold_port(node *nd)
{
	const char *at = nd->bind_address[0] ? nd->bind_address : nd->address;
	const char *colon = strrchr(at, ':');
	unsigned port;
	if (nd->hold_fd < 0 && colon)
		nd->hold_fd = hold_port((unsigned)atoi(colon + 1), &port);
}

static void node_release_port(node *nd)
{
	if (nd->hold_fd >= 0)
		close(nd->hold_fd);
	nd->hold_fd = -1;
}

void cluster_init(cluster *c, int n)
{
	memset(c, 0, sizeof(*c));
	REQUIRE(n <= CLUSTER_MAX);
	c->n = n;
	c->n_boot = n;
	c->election_ms = 500;
	c->heartbeat_ms = 50;
	c->report_fd = -1;
	c->durability = ESDB_DURABILITY_NOSYNC;
	pthread_mutex_init(&c->lock, NULL);
	for (int i = 0; i < CLUSTER_MAX; i++)
		c->nodes[i].hold_fd = -1;
	for (int i = 0; i < n; i++) {
		node *nd = &c->nodes[i];
		nd->id = (uint64_t)i + 1;
		snprintf(nd->dir, sizeof(nd->dir), "%s", tmp_dir());
		unsigned port;
		nd->hold_fd = hold_port(0, &port);
		REQUIRE(nd->hold_fd >= 0);
		snprintf(nd->address, sizeof(nd->address), "127.0.0.1:%u",
		         port);
		nd->pid = 0;
	}
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	c->ack_r = fds[0];
	c->ack_w = fds[1];
	REQUIRE(pthread_create(&c->ack_reader, NULL, ack_reader, c) == 0);
}

void node_start(cluster *c, int i)
{
	node *nd = &c->nodes[i];
	int in, out;
	REQUIRE(nd->pid == 0);
	node_config cfg = {.i = i,
	                   .n = c->n,
	                   .n_boot = c->n_boot,
	                   .election_ms = c->election_ms,
	                   .heartbeat_ms = c->heartbeat_ms,
	                   .snapshot_threshold = c->snapshot_threshold,
	                   .apply_delay_us = c->apply_delay_us,
	                   .batch = c->batch,
	                   .durability = c->durability,
	                   .ack_fd = c->ack_w,
	                   .report_fd = c->report_fd,
	                   .data_len =
	                       c->event_data ? strlen(c->event_data) : 0};
	memcpy(cfg.nodes, c->nodes, sizeof(cfg.nodes));
	int keep[2] = {c->ack_w, c->report_fd};
	pid_t pid = spawn_child("node", keep, 2, &in, &out);
	REQUIRE(fd_write_all(out, &cfg, sizeof(cfg)));
	REQUIRE(fd_write_all(out, c->event_data, cfg.data_len));
	nd->pid = pid;
	nd->cmd_fd = out;
	nd->reply_fd = in;
	nd->starts++;
	int rc = -1;
	REQUIRE(fd_read_all(nd->reply_fd, &rc, sizeof(rc)));
	node_release_port(nd); /* listening now (or failed) */
	CHECK_RC(rc, 0);
	REQUIRE(rc == 0);
}

static void node_reap(node *nd, int *status)
{
	close(nd->cmd_fd);
	close(nd->reply_fd);
	while (waitpid(nd->pid, status, 0) < 0 && errno == EINTR)
		;
	nd->pid = 0;
	node_hold_port(nd);
}

void node_kill(cluster *c, int i)
{
	node *nd = &c->nodes[i];
	int status;
	REQUIRE(nd->pid);
	kill(nd->pid, SIGKILL);
	node_reap(nd, &status);
}

void node_stop(cluster *c, int i)
{
	node *nd = &c->nodes[i];
	node_cmd cmd = {.op = 'Q'};
	int status = 0;
	REQUIRE(nd->pid);
	write_all(nd->cmd_fd, &cmd, sizeof(cmd));
	node_reap(nd, &status);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

bool node_alive(cluster *c, int i)
{
	return c->nodes[i].pid != 0;
}

/* Alive, answering and part of the cluster. */
static bool node_counts(cluster *c, int i)
{
	return node_alive(c, i) && !c->nodes[i].paused && !c->nodes[i].excluded;
}

void node_pause(cluster *c, int i, bool paused)
{
	REQUIRE(node_alive(c, i));
	kill(c->nodes[i].pid, paused ? SIGSTOP : SIGCONT);
	c->nodes[i].paused = paused;
}

static void node_call(cluster *c, int i, node_cmd *cmd, node_info *out)
{
	node *nd = &c->nodes[i];
	REQUIRE(nd->pid);
	write_all(nd->cmd_fd, cmd, sizeof(*cmd));
	REQUIRE(fd_read_all(nd->reply_fd, out, sizeof(*out)));
}

void node_get_info(cluster *c, int i, node_info *out)
{
	node_cmd cmd = {.op = 'I'};
	node_call(c, i, &cmd, out);
}

void node_append(cluster *c, int i, const char *stream, uint64_t n,
                 node_info *out)
{
	node_cmd cmd = {.op = 'A', .n = n};
	snprintf(cmd.stream, sizeof(cmd.stream), "%s", stream);
	node_call(c, i, &cmd, out);
}

void node_append_in_term(cluster *c, int i, const char *stream, uint64_t n,
                         uint64_t term, node_info *out)
{
	node_cmd cmd = {.op = 'T', .n = n, .term = term};
	snprintf(cmd.stream, sizeof(cmd.stream), "%s", stream);
	node_call(c, i, &cmd, out);
}

static void member_call(cluster *c, int i, char op, int member, int role,
                        node_info *out)
{
	node_cmd cmd = {.op = op, .role = (char)role};
	if (member >= 0) {
		cmd.n = c->nodes[member].id;
		snprintf(cmd.address, sizeof(cmd.address), "%s",
		         c->nodes[member].address);
	}
	node_call(c, i, &cmd, out);
}

void node_member_add(cluster *c, int i, int member, node_info *out)
{
	member_call(c, i, 'a', member, 0, out);
}

void node_member_assign(cluster *c, int i, int member, int role, node_info *out)
{
	member_call(c, i, 'r', member, role, out);
}

void node_member_remove(cluster *c, int i, int member, node_info *out)
{
	member_call(c, i, 'x', member, 0, out);
}

void node_transfer(cluster *c, int i, int member, node_info *out)
{
	member_call(c, i, 't', member, 0, out);
}

void node_fail_next_apply(cluster *c, int i, int err)
{
	node_cmd cmd = {.op = 'F', .n = (uint64_t)err};
	node_info info;
	node_call(c, i, &cmd, &info);
}

void node_set_apply_delay(cluster *c, int i, unsigned us)
{
	node_cmd cmd = {.op = 'D', .n = us};
	node_info info;
	node_call(c, i, &cmd, &info);
}

void node_fail_log_write(cluster *c, int i)
{
	node_cmd cmd = {.op = 'L'};
	node_info info;
	node_call(c, i, &cmd, &info);
}

void node_fail_after_growth(cluster *c, int i)
{
	node_cmd cmd = {.op = 'G'};
	node_info info;
	node_call(c, i, &cmd, &info);
}

void node_append_corrupt(cluster *c, int i, node_info *out)
{
	node_cmd cmd = {.op = 'B', .n = 1};
	node_call(c, i, &cmd, out);
}

void node_writers_retrying(cluster *c, int i, unsigned threads)
{
	node_cmd cmd = {.op = 'W', .n = threads, .role = 1};
	node_info info;
	node_call(c, i, &cmd, &info);
}

void node_writers_async(cluster *c, int i, unsigned clients)
{
	node_cmd cmd = {.op = 'W', .n = clients, .role = 2};
	node_info info;
	node_call(c, i, &cmd, &info);
}

void node_writers(cluster *c, int i, unsigned threads)
{
	node_cmd cmd = {.op = 'W', .n = threads};
	node_info info;
	node_call(c, i, &cmd, &info);
}

int cluster_start_all(cluster *c)
{
	for (int i = 0; i < c->n; i++)
		node_start(c, i);
	int leader = cluster_wait_leader(c, 20000);
	REQUIRE(leader >= 0);
	return leader;
}

void node_wait_failed(cluster *c, int i, node_info *out)
{
	for (int w = 0; w < 2000; w++) {
		node_get_info(c, i, out);
		if (out->failed)
			break;
		usleep(5000);
	}
}

bool cluster_wait_acks(cluster *c, size_t more)
{
	size_t want = cluster_acks(c) + more;
	for (int w = 0; w < 2000 && cluster_acks(c) < want; w++)
		usleep(5000);
	return cluster_acks(c) >= want;
}

int cluster_wait_leader(cluster *c, unsigned timeout_ms)
{
	uint64_t end = mono_ms() + timeout_ms;
	do {
		int leader = -1;
		bool agree = true;
		for (int i = 0; i < c->n; i++) {
			if (!node_counts(c, i))
				continue;
			node_info info;
			node_get_info(c, i, &info);
			if (info.is_leader)
				leader = i;
			if (!info.leader_id)
				agree = false;
		}
		if (leader >= 0 && agree) {
			for (int i = 0; i < c->n; i++) {
				node_info info;
				if (!node_counts(c, i))
					continue;
				node_get_info(c, i, &info);
				if (info.leader_id != c->nodes[leader].id)
					agree = false;
			}
			if (agree)
				return leader;
		}
		usleep(10000);
	} while (mono_ms() < end);
	return -1;
}

/* A fence: one more append on the leader. Raft applies in order, so a
 * node that holds the fence has applied everything committed before it
 * (comparing counts alone can stop on a node whose writer still holds
 * entries, or before a follower heard of the last commit). */
bool cluster_wait_converged(cluster *c, unsigned timeout_ms)
{
	static uint64_t fences;
	uint64_t end = mono_ms() + timeout_ms;
	uint64_t fence = 0;
	do {
		if (!fence) {
			int leader = cluster_wait_leader(c, 1000);
			if (leader < 0)
				continue;
			node_info info;
			/* ids of their own: none of the tests' numbers */
			node_append(c, leader, "fence",
			            0xFEull << 56 | ++fences, &info);
			if (info.rc == 0)
				fence = info.position;
			continue;
		}
		bool all = true;
		for (int i = 0; i < c->n; i++) {
			if (!node_counts(c, i))
				continue;
			node_info info;
			node_get_info(c, i, &info);
			if (info.events < fence)
				all = false;
		}
		if (all)
			return true;
		usleep(10000);
	} while (mono_ms() < end);
	return false;
}

size_t cluster_acks(cluster *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->n_acks;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static int cmp_ack_pos(const void *a, const void *b)
{
	const ack *x = a, *y = b;
	return x->position < y->position ? -1 : x->position > y->position;
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static uint64_t id_number(const uint8_t id[16])
{
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | id[8 + i];
	return n;
}

void cluster_check_and_free(cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		if (c->nodes[i].paused)
			node_pause(c, i, false);
		if (node_alive(c, i))
			node_stop(c, i);
	}
	for (int i = 0; i < c->n; i++)
		node_release_port(&c->nodes[i]);
	close(c->ack_w);
	pthread_join(c->ack_reader, NULL);
	close(c->ack_r);
	collected all[CLUSTER_MAX];
	memset(all, 0, sizeof(all));
	int ref = 0;
	while (ref < c->n - 1 && c->nodes[ref].excluded)
		ref++;
	for (int i = 0; i < c->n; i++) {
		if (c->nodes[i].excluded)
			continue;
		esdb_store *s;
		REQUIRE_OK(esdb_store_create(&s));
		REQUIRE_OK(esdb_store_set_readonly(s, true));
		REQUIRE_OK(esdb_store_open(s, c->nodes[i].dir));
		REQUIRE_OK(read_all_pages(s, 1, collect_event, &all[i]));
		esdb_store_close(s);
	}
	/* Every store: positions 1..N without a gap, the same events. */
	for (int i = 0; i < c->n; i++) {
		if (c->nodes[i].excluded)
			continue;
		CHECK_EQ(all[i].n, all[ref].n);
		for (size_t k = 0; k < all[i].n; k++) {
			if (all[i].positions[k] != k + 1) {
				CHECK_EQ(all[i].positions[k], k + 1);
				break;
			}
			if (k < all[ref].n &&
			    (memcmp(all[i].ids[k], all[ref].ids[k], 16) ||
			     all[i].versions[k] != all[ref].versions[k] ||
			     strcmp(all[i].streams[k], all[ref].streams[k]))) {
				harness_fail(__FILE__, __LINE__,
				             "node %d differs from node %d at "
				             "position %zu",
				             i + 1, ref + 1, k + 1);
				break;
			}
		}
	}
	/* No event id twice in the store (a retry written again). */
	if (all[ref].n) {
		uint8_t(*ids)[16] = malloc(all[ref].n * 16);
		memcpy(ids, all[ref].ids, all[ref].n * 16);
		qsort(ids, all[ref].n, 16, cmp_id);
		for (size_t k = 1; k < all[ref].n; k++) {
			if (memcmp(ids[k], ids[k - 1], 16) == 0) {
				harness_fail(__FILE__, __LINE__,
				             "event %#" PRIx64 " is in the "
				             "store twice",
				             id_number(ids[k]));
				break;
			}
		}
		free(ids);
	}
	/* Writers' errors. */
	for (size_t k = 0; k < c->n_acks; k++) {
		if (c->acks[k].node & ACK_ERROR) {
			harness_fail(__FILE__, __LINE__,
			             "a writer on node %" PRIu64 " got %s",
			             (uint64_t)(c->acks[k].node & ~ACK_ERROR),
			             esdb_error_describe(
			                 (int)(int64_t)c->acks[k].version));
			c->acks[k].position = UINT64_MAX; /* sorts last */
		}
	}
	/* Every acknowledged append at the position it was given, and no
	 * position given twice. */
	if (c->n_acks)
		qsort(c->acks, c->n_acks, sizeof(ack), cmp_ack_pos);
	for (size_t k = 0; k < c->n_acks; k++) {
		ack *a = &c->acks[k];
		if (a->node & ACK_ERROR)
			break; /* reported above */
		if (k && a->position == c->acks[k - 1].position) {
			harness_fail(__FILE__, __LINE__,
			             "position %" PRIu64 " acknowledged twice",
			             a->position);
			break;
		}
		if (a->position == 0 || a->position > all[ref].n ||
		    id_number(all[ref].ids[a->position - 1]) != a->n ||
		    all[ref].versions[a->position - 1] != a->version) {
			harness_fail(__FILE__, __LINE__,
			             "acknowledged append %#" PRIx64
			             " (position %" PRIu64 ", node %" PRIu64
			             ") is not in the stores",
			             a->n, a->position, a->node);
			break;
		}
	}
	for (int i = 0; i < c->n; i++)
		collected_free(&all[i]);
	free(c->acks);
	pthread_mutex_destroy(&c->lock);
}
