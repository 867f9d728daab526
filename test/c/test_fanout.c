/* test_fanout.c: fan-out runs on the emitter's thread. An append is
 * acknowledged while its delivery is held, members can leave meanwhile,
 * the queue between commit and delivery is bounded (a commit that does
 * not fit is dropped and `since` says so), and a join while commits are
 * queued neither misses nor duplicates. Delivery is held by a gate the
 * test opens. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

typedef struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool closed;
	size_t entered; /* deliveries begun */
	size_t n;       /* deliveries logged */
	uint64_t member[64], since[64], first[64], count[64];
} gate;

static gate g;

static void gate_init(void)
{
	memset(&g, 0, sizeof(g));
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	g.closed = true;
}

static void gate_open(void)
{
	pthread_mutex_lock(&g.lock);
	g.closed = false;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
}

static void held(void *ctx, uint64_t member, uint64_t since,
                 const esdb_event *evs, size_t n)
{
	pthread_mutex_lock(&g.lock);
	g.entered++;
	pthread_cond_broadcast(&g.cond);
	while (g.closed)
		pthread_cond_wait(&g.cond, &g.lock);
	if (g.n < 64) {
		g.member[g.n] = member;
		g.since[g.n] = since;
		g.first[g.n] = evs[0].position;
		g.count[g.n] = n;
		g.n++;
	}
	pthread_mutex_unlock(&g.lock);
}

/* Wait until `entered` deliveries have begun. */
static void await_entered(size_t entered)
{
	pthread_mutex_lock(&g.lock);
	while (g.entered < entered)
		pthread_cond_wait(&g.cond, &g.lock);
	pthread_mutex_unlock(&g.lock);
}

static void append1(esdb_store *s, const char *stream, uint64_t n)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, n, "t", "d");
	REQUIRE_OK(esdb_stream_append(s, stream, strlen(stream),
	                              ESDB_EXPECT_ANY, &ev, 1, NULL));
}

/* A call made on another thread, waited for at most 30 s: a call that
 * waits for the held delivery shows as not done instead of hanging the
 * run (the gate is opened then, so it ends). */
typedef struct call {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
	esdb_store *s;
	int what;
	pthread_t th;
} call;

enum { CALL_APPEND, CALL_LEAVE_ALL };

static void *call_main(void *arg)
{
	call *c = arg;
	int rc = 0;
	if (c->what == CALL_APPEND) {
		uint8_t id[16];
		esdb_new_event ev = make_event(id, 99, "t", "d");
		rc = esdb_stream_append(c->s, "late", 4, ESDB_EXPECT_ANY, &ev,
		                        1, NULL);
	} else {
		rc = esdb_emitter_leave_all(c->s, 1, NULL);
	}
	pthread_mutex_lock(&c->lock);
	c->rc = rc;
	c->done = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void call_start(call *c, esdb_store *s, int what)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->s = s;
	c->what = what;
	REQUIRE(pthread_create(&c->th, NULL, call_main, c) == 0);
}

/* Whether the call ended within 30 s while the gate stayed closed. */
static bool call_done_while_held(call *c)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&c->lock);
	while (!c->done &&
	       pthread_cond_timedwait(&c->cond, &c->lock, &until) != ETIMEDOUT)
		;
	bool done = c->done;
	pthread_mutex_unlock(&c->lock);
	return done;
}

static void call_join(call *c)
{
	pthread_join(c->th, NULL);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
}

TEST(fanout_an_append_is_acknowledged_while_its_delivery_is_held)
{
	esdb_store *s = open_store(tmp_dir(), false);
	gate_init();
	REQUIRE_OK(esdb_emitter_set_deliver(s, held, NULL));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, NULL));
	call c;
	call_start(&c, s, CALL_APPEND);
	bool acked = call_done_while_held(&c);
	CHECK(acked);
	gate_open();
	call_join(&c);
	CHECK_RC(c.rc, 0);
	REQUIRE_OK(esdb_emitter_flush(s));
	CHECK_EQ(g.n, 1);
	esdb_store_close(s);
}

TEST(fanout_members_leave_while_a_delivery_is_held)
{
	esdb_store *s = open_store(tmp_dir(), false);
	gate_init();
	REQUIRE_OK(esdb_emitter_set_deliver(s, held, NULL));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, NULL));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 2, NULL));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_STREAM, "a", 1, 2, NULL));
	append1(s, "a", 1);
	await_entered(1);
	/* a member leaving (a process that died) waits for no delivery */
	call c;
	call_start(&c, s, CALL_LEAVE_ALL);
	CHECK(call_done_while_held(&c));
	REQUIRE_OK(esdb_emitter_drop(s, 2));
	esdb_emitter_stats st;
	REQUIRE_OK(esdb_emitter_get_stats(s, &st));
	CHECK_EQ(st.memberships, 2); /* member 2's: dropped, not yet swept */
	gate_open();
	call_join(&c);
	REQUIRE_OK(esdb_emitter_flush(s));
	REQUIRE_OK(esdb_emitter_get_stats(s, &st));
	CHECK_EQ(st.memberships, 0);
	CHECK_EQ(st.topics, 0);
	size_t before = g.n;
	append1(s, "a", 2);
	REQUIRE_OK(esdb_emitter_flush(s));
	CHECK_EQ(g.n, before);
	esdb_store_close(s);
}

TEST(fanout_queue_is_bounded_and_a_dropped_commit_moves_since)
{
	esdb_store *s = open_store(tmp_dir(), false);
	gate_init();
	REQUIRE_OK(esdb_emitter_set_deliver(s, held, NULL));
	CHECK_RC(esdb_emitter_set_queue_bytes(s, 0), ESDB_EINVAL);
	/* one commit waits at most: an empty queue takes any size */
	REQUIRE_OK(esdb_emitter_set_queue_bytes(s, 1));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, NULL));
	append1(s, "a", 1); /* in the thread's hand, held */
	await_entered(1);
	append1(s, "a", 2); /* queued */
	append1(s, "a", 3); /* does not fit: dropped */
	esdb_emitter_stats st;
	REQUIRE_OK(esdb_emitter_get_stats(s, &st));
	CHECK_EQ(st.queued_commits, 1);
	CHECK(st.queued_bytes > 0);
	CHECK_EQ(st.dropped, 1);
	gate_open();
	/* 2 delivered first: else 4 may find 2 still queued and be dropped
	 * too (it was, in most runs under load) */
	REQUIRE_OK(esdb_emitter_flush(s));
	append1(s, "a", 4);
	REQUIRE_OK(esdb_emitter_flush(s));
	REQUIRE(g.n == 3);
	CHECK_EQ(g.first[0], 1);
	CHECK_EQ(g.first[1], 2);
	CHECK(g.since[1] <= 2);
	CHECK_EQ(g.first[2], 4);
	CHECK_EQ(g.since[2], 4); /* seen up to 2: position 3 is missing */
	REQUIRE_OK(esdb_emitter_get_stats(s, &st));
	CHECK_EQ(st.queued_commits, 0);
	CHECK_EQ(st.queued_bytes, 0);
	esdb_store_close(s);
}

TEST(fanout_a_join_while_commits_are_queued_neither_misses_nor_duplicates)
{
	esdb_store *s = open_store(tmp_dir(), false);
	gate_init();
	REQUIRE_OK(esdb_emitter_set_deliver(s, held, NULL));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, NULL));
	append1(s, "a", 1); /* held */
	await_entered(1);
	append1(s, "a", 2); /* queued */
	append1(s, "a", 3); /* queued */
	uint64_t last;
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 2, &last));
	CHECK_EQ(last, 1); /* 2 and 3 are yet to be matched: it gets them */
	gate_open();
	append1(s, "a", 4);
	REQUIRE_OK(esdb_emitter_flush(s));
	uint64_t next[3] = {0, 1, last + 1};
	for (size_t i = 0; i < g.n; i++) {
		uint64_t m = g.member[i];
		REQUIRE(m == 1 || m == 2);
		CHECK_EQ(g.first[i], next[m]);
		CHECK(g.since[i] <= next[m]);
		next[m] = g.first[i] + g.count[i];
	}
	CHECK_EQ(next[1], 5);
	CHECK_EQ(next[2], 5);
	/* once idle, a join answers the last commit */
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 3, &last));
	CHECK_EQ(last, 4);
	esdb_store_close(s);
}
