/* test_uv_reconnect.c: raft's TCP transport after a peer restarts (patch
 * 0004). Server A has sent to server B over its outgoing connection; B
 * stops and starts again on the same address (its process killed and
 * restarted, as the failover bench and the chaos runs do). Raft 0.22.1
 * never read from its outgoing connections, so it noticed B's restart
 * only when a write to the dead one failed: A's next message was written
 * into it and lost. Followers write to each other only in elections, so
 * that message was a vote or a pre-vote grant, and the election waited
 * for another timeout (docs/PERFORMANCE.md, failover). Real raft_io
 * instances (raft_uv over TCP on loopback) on one libuv loop. */
#include "harness.h"

#include <raft.h>
#include <raft/uv.h>

#include <stddef.h>
#include <uv.h>

typedef struct peer {
	struct raft_uv_transport transport;
	struct raft_io io;
	unsigned received;
	bool closed;
} peer;

/* io->data stays NULL: raft's uv io takes a non-NULL one for the struct
 * raft of its legacy layer. */
#define PEER_OF(iop) ((peer *)((char *)(iop)-offsetof(peer, io)))

static void on_tick(struct raft_io *io)
{
	(void)io;
}

static void on_recv(struct raft_io *io, struct raft_message *m)
{
	peer *p = PEER_OF(io);
	if (m->type == RAFT_REQUEST_VOTE)
		p->received++;
}

static void on_close(struct raft_io *io)
{
	PEER_OF(io)->closed = true;
}

static void peer_start(uv_loop_t *loop, peer *p, raft_id id,
                       const char *address)
{
	memset(p, 0, sizeof *p);
	p->transport.version = 1; /* raft_uv_tcp_init checks it */
	REQUIRE(raft_uv_tcp_init(&p->transport, loop) == 0);
	REQUIRE(raft_uv_init(&p->io, loop, tmp_dir(), &p->transport) == 0);
	raft_uv_set_connect_retry_delay(&p->io, 20);
	REQUIRE(p->io.init(&p->io, id, address) == 0);
	REQUIRE(p->io.start(&p->io, 100, on_tick, on_recv) == 0);
}

static void peer_stop(uv_loop_t *loop, peer *p)
{
	p->io.close(&p->io, on_close);
	while (!p->closed)
		uv_run(loop, UV_RUN_ONCE);
	raft_uv_close(&p->io);
	raft_uv_tcp_close(&p->transport);
}

/* Run the loop until *count reaches want or ms pass. */
static bool run_until(uv_loop_t *loop, const unsigned *count, unsigned want,
                      uint64_t ms)
{
	uint64_t end = uv_now(loop) + ms;
	while (*count < want && uv_now(loop) < end)
		uv_run(loop,
		       UV_RUN_ONCE); /* the 100 ms ticks bound each turn */
	return *count >= want;
}

static void send_vote(peer *from, raft_id to, const char *to_address)
{
	struct raft_io_send *req = calloc(1, sizeof *req); /* freed at exit */
	REQUIRE(req != NULL);
	struct raft_message m = {.type = RAFT_REQUEST_VOTE,
	                         .server_id = to,
	                         .server_address = to_address};
	m.request_vote = (struct raft_request_vote){
	    .version = 2, .term = 2, .candidate_id = 1, .pre_vote = true};
	REQUIRE(from->io.send(&from->io, req, &m, NULL) == 0);
}

TEST(raft_uv_message_after_peer_restart_is_delivered)
{
	uv_loop_t loop;
	REQUIRE(uv_loop_init(&loop) == 0);
	char a_addr[32], b_addr[32];
	snprintf(a_addr, sizeof a_addr, "127.0.0.1:%u", loopback_free_port());
	snprintf(b_addr, sizeof b_addr, "127.0.0.1:%u", loopback_free_port());
	peer a, b;
	peer_start(&loop, &a, 1, a_addr);
	peer_start(&loop, &b, 2, b_addr);

	/* A's connection to B is up and used. */
	send_vote(&a, 2, b_addr);
	REQUIRE(run_until(&loop, &b.received, 1, 5000));

	/* B restarts on the same address; A keeps running (its loop turns
	 * for a few ticks, as a follower's would, before it next writes). */
	peer_stop(&loop, &b);
	peer_start(&loop, &b, 2, b_addr);
	unsigned never = 0;
	run_until(&loop, &never, 1, 300);

	/* A's first message after the restart reaches the new B. */
	send_vote(&a, 2, b_addr);
	CHECK(run_until(&loop, &b.received, 1, 3000));

	peer_stop(&loop, &a);
	peer_stop(&loop, &b);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&loop) == 0);
}
