/* test_writer.c: group commit under concurrency, async submission, close
 * with work queued, readers running beside writers. */
#include "harness.h"

#include <pthread.h>
#include <unistd.h>

typedef struct writer_arg {
	esdb_store *s;
	int idx, n;
	int failures;
} writer_arg;

static void *exact_writer(void *p)
{
	writer_arg *a = p;
	char stream[16];
	snprintf(stream, sizeof(stream), "w%d", a->idx);
	for (int i = 0; i < a->n; i++) {
		uint8_t id[16];
		esdb_new_event ev =
		    make_event(id, (uint64_t)(a->idx * 100000 + i), "t", "d");
		esdb_result r;
		if (esdb_stream_append(a->s, stream, strlen(stream),
		                       (uint64_t)i, &ev, 1, &r) ||
		    r.version != (uint64_t)i + 1)
			a->failures++;
	}
	return NULL;
}

TEST(concurrent_appends_are_group_committed)
{
	enum { T = 16, N = 40 };
	esdb_store *s = open_store(tmp_dir(), true);
	pthread_t th[T];
	writer_arg args[T];
	for (int i = 0; i < T; i++) {
		args[i] = (writer_arg){s, i, N, 0};
		pthread_create(&th[i], NULL, exact_writer, &args[i]);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(args[i].failures, 0);
	}
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, T * N);
	/* Durable commits take a flush each; while one runs the others
	 * queue up and share the next. */
	CHECK(st.commits < (uint64_t)(T * N));
	printf("  %d appends in %llu commits\n", T * N,
	       (unsigned long long)st.commits);
	uint64_t problems;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	esdb_store_close(s);
}

typedef struct async_state {
	pthread_mutex_t lock;
	int answered, ok, closed, other;
	int rc_of[2000];
} async_state;

typedef struct async_req {
	async_state *st;
	int idx;
} async_req;

static void on_done(void *ctx, const esdb_result *r)
{
	async_req *req = ctx;
	async_state *st = req->st;
	pthread_mutex_lock(&st->lock);
	st->answered++;
	st->rc_of[req->idx] = r->rc;
	if (r->rc == 0)
		st->ok++;
	else if (r->rc == ESDB_ECLOSED)
		st->closed++;
	else
		st->other++;
	pthread_mutex_unlock(&st->lock);
}

TEST(close_answers_everything_queued)
{
	enum { N = 2000 };
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, true);
	static async_state st;
	static async_req reqs[N];
	memset(&st, 0, sizeof(st));
	pthread_mutex_init(&st.lock, NULL);
	for (int i = 0; i < N; i++) {
		uint8_t id[16];
		char stream[16];
		snprintf(stream, sizeof(stream), "s%d", i);
		esdb_new_event ev = make_event(id, (uint64_t)i, "t", "d");
		esdb_cmd cmd;
		REQUIRE_OK(esdb_cmd_stream_append(NULL, stream, strlen(stream),
		                                  ESDB_EXPECT_NO_STREAM, &ev, 1,
		                                  &cmd));
		reqs[i] = (async_req){&st, i};
		REQUIRE_OK(esdb_store_submit(s, &cmd, on_done, &reqs[i]));
		CHECK(cmd.buf == NULL); /* ownership moved */
	}
	esdb_store_close(s);
	CHECK_EQ(st.answered, N);
	CHECK_EQ(st.other, 0);
	CHECK_EQ(st.ok + st.closed, N);
	/* what was acknowledged is there; what was refused is not */
	s = open_store(dir, false);
	for (int i = 0; i < N; i++) {
		char stream[16];
		bool exists;
		snprintf(stream, sizeof(stream), "s%d", i);
		REQUIRE_OK(esdb_stream_get_info(s, stream, strlen(stream), NULL,
		                                &exists, NULL));
		CHECK(exists == (st.rc_of[i] == 0));
	}
	/* after close, submission answers "closed" through the callback */
	esdb_store_close(s);
	pthread_mutex_destroy(&st.lock);
}

typedef struct reader_arg {
	esdb_store *s;
	volatile bool *stop;
	int bad, reads;
} reader_arg;

typedef struct prefix_check {
	uint64_t expect;
	bool bad;
} prefix_check;

static int check_prefix(void *ctx, const esdb_event *ev)
{
	prefix_check *c = ctx;
	if (ev->position != c->expect++)
		c->bad = true;
	return 0;
}

static void *reader(void *p)
{
	reader_arg *a = p;
	while (!*a->stop) {
		prefix_check c = {1, false};
		if (esdb_all_read(a->s, 1, UINT32_MAX, ESDB_DIRECTION_FORWARD,
		                  check_prefix, &c, NULL) ||
		    c.bad)
			a->bad++;
		a->reads++;
		usleep(200); /* let the writers run (valgrind runs one thread
		              * at a time) */
	}
	return NULL;
}

TEST(readers_see_gap_free_prefixes_while_writers_run)
{
	esdb_store *s = open_store(tmp_dir(), false);
	volatile bool stop = false;
	reader_arg ra[2] = {{s, &stop, 0, 0}, {s, &stop, 0, 0}};
	pthread_t rt[2], wt[4];
	writer_arg wa[4];
	for (int i = 0; i < 2; i++)
		pthread_create(&rt[i], NULL, reader, &ra[i]);
	for (int i = 0; i < 4; i++) {
		wa[i] = (writer_arg){s, i, 500, 0};
		pthread_create(&wt[i], NULL, exact_writer, &wa[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(wt[i], NULL);
		CHECK_EQ(wa[i].failures, 0);
	}
	stop = true;
	for (int i = 0; i < 2; i++) {
		pthread_join(rt[i], NULL);
		CHECK_EQ(ra[i].bad, 0);
		CHECK(ra[i].reads > 0);
	}
	esdb_store_close(s);
}

TEST(submit_after_close_and_bad_arguments)
{
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s)); /* never opened */
	uint8_t id[16];
	esdb_new_event ev = make_event(id, 1, "t", "d");
	esdb_cmd cmd;
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1,
	                                  &cmd));
	static async_state st;
	memset(&st, 0, sizeof(st));
	pthread_mutex_init(&st.lock, NULL);
	async_req req = {&st, 0};
	CHECK_RC(esdb_store_submit(s, &cmd, on_done, &req), ESDB_ECLOSED);
	CHECK_EQ(st.answered, 1);
	CHECK_EQ(st.closed, 1);
	CHECK_RC(esdb_store_submit(s, NULL, on_done, &req), ESDB_EINVAL);
	collected c = {0};
	CHECK_RC(esdb_all_read(s, 1, 1, ESDB_DIRECTION_FORWARD, collect_event,
	                       &c, NULL),
	         ESDB_ECLOSED);
	CHECK_RC(esdb_store_apply(s, ESDB_INDEX_NEXT, NULL, 0, NULL),
	         ESDB_ECLOSED);
	esdb_store_close(s);
	pthread_mutex_destroy(&st.lock);
}
