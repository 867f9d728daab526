/* test_queue.c: the writer queue is bounded by bytes (ESDB_EOVERLOADED
 * beyond it) and a queued command can be withdrawn (esdb_store_cancel) so that
 * it is never applied. The writer is held at the apply lock with the
 * first command in hand, so what is queued behind it stays queued. These
 * are the local writer's own (other commit paths bound and withdraw as
 * they can). */
#include "harness.h"

#include "internal.h"

#include <errno.h>
#include <pthread.h>

typedef struct answer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int count;
	esdb_result result;
} answer;

static void answered(void *ctx, const esdb_result *res)
{
	answer *a = ctx;
	pthread_mutex_lock(&a->lock);
	a->result = *res;
	a->count++;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

static void await_answer(answer *a)
{
	pthread_mutex_lock(&a->lock);
	while (a->count == 0)
		pthread_cond_wait(&a->cond, &a->lock);
	pthread_mutex_unlock(&a->lock);
}

static bool same_ctx(void *ctx, void *arg)
{
	return ctx == arg;
}

static esdb_cmd append_cmd(const char *stream, uint64_t n, size_t bytes)
{
	static char payload[64 << 10];
	uint8_t id[16];
	esdb_new_event ev = make_event(id, n, "t", "x");
	ev.data = payload;
	ev.data_len = bytes;
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, stream, strlen(stream),
	                                  ESDB_EXPECT_ANY, &ev, 1, &cmd));
	return cmd;
}

TEST(queue_is_bounded_and_queued_commands_can_be_withdrawn)
{
	const char *dir = tmp_dir();
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	CHECK_RC(esdb_store_set_queue_bytes(s, 0), ESDB_EINVAL);
	REQUIRE_OK(esdb_store_set_queue_bytes(s, 256 << 10));
	REQUIRE_OK(esdb_store_open(s, dir));

	/* The writer takes the first append and waits for the apply lock:
	 * until it has, withdrawing the append succeeds, and it is sent
	 * again. */
	pthread_mutex_lock(&s->apply_lock);
	answer first;
	esdb_cmd c;
	bool held = false;
	for (int tries = 0; tries < 1000000 && !held; tries++) {
		first = (answer){PTHREAD_MUTEX_INITIALIZER,
		                 PTHREAD_COND_INITIALIZER,
		                 0,
		                 {0}};
		c = append_cmd("first", 1, 1);
		REQUIRE_OK(esdb_store_submit(s, &c, answered, &first));
		held = esdb_store_cancel(s, same_ctx, &first) == ESDB_ENOTFOUND;
	}
	REQUIRE(held);

	/* 64 KiB commands: three fit in 256 KiB, the fourth does not. */
	enum { N = 4 };
	answer a[N];
	char name[N][8];
	for (int i = 0; i < N; i++) {
		a[i] = (answer){PTHREAD_MUTEX_INITIALIZER,
		                PTHREAD_COND_INITIALIZER,
		                0,
		                {0}};
		snprintf(name[i], sizeof(name[i]), "s%d", i);
		c = append_cmd(name[i], 10 + i, 64 << 10);
		int rc = esdb_store_submit(s, &c, answered, &a[i]);
		CHECK_RC(rc, i < 3 ? 0 : ESDB_EOVERLOADED);
	}
	CHECK_EQ(a[3].count, 1); /* answered at once */
	CHECK_RC(a[3].result.rc, ESDB_EOVERLOADED);

	/* Withdraw the second queued command: answered ETIMEDOUT at once,
	 * and room for one more. */
	REQUIRE_OK(esdb_store_cancel(s, same_ctx, &a[1]));
	CHECK_EQ(a[1].count, 1);
	CHECK_RC(a[1].result.rc, ETIMEDOUT);
	CHECK_RC(esdb_store_cancel(s, same_ctx, &a[1]), ESDB_ENOTFOUND);
	answer again = {
	    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}};
	c = append_cmd("again", 20, 64 << 10);
	CHECK_RC(esdb_store_submit(s, &c, answered, &again), 0);

	/* The command the writer holds cannot be withdrawn. */
	CHECK_RC(esdb_store_cancel(s, same_ctx, &first), ESDB_ENOTFOUND);

	pthread_mutex_unlock(&s->apply_lock);
	await_answer(&first);
	await_answer(&a[0]);
	await_answer(&a[2]);
	await_answer(&again);
	CHECK_RC(first.result.rc, 0);
	CHECK_RC(a[0].result.rc, 0);
	CHECK_RC(a[2].result.rc, 0);
	CHECK_RC(again.result.rc, 0);
	CHECK_EQ(a[1].count, 1);
	CHECK_EQ(a[3].count, 1);

	/* Withdrawn and refused commands were never applied. */
	uint64_t v;
	REQUIRE_OK(esdb_stream_get_info(s, "s1", 2, &v, NULL, NULL));
	CHECK_EQ(v, 0);
	REQUIRE_OK(esdb_stream_get_info(s, "s3", 2, &v, NULL, NULL));
	CHECK_EQ(v, 0);
	REQUIRE_OK(esdb_stream_get_info(s, "s2", 2, &v, NULL, NULL));
	CHECK_EQ(v, 1);
	esdb_store_close(s);
}

/* An idle writer takes a command larger than the bound: the bound limits
 * what waits, not what may be written. */
TEST(a_command_larger_than_the_bound_goes_when_the_queue_is_empty)
{
	const char *dir = tmp_dir();
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_set_queue_bytes(s, 1024));
	REQUIRE_OK(esdb_store_open(s, dir));
	esdb_cmd c = append_cmd("big", 1, 64 << 10);
	esdb_result r;
	CHECK_RC(esdb_store_execute(s, &c, &r), 0);
	esdb_store_close(s);
}
