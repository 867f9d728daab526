/* test_emitter.c: fan-out of committed events to topic members. */
#include "harness.h"

#include <pthread.h>

typedef struct delivery_log {
	pthread_mutex_t lock;
	size_t n;                 /* deliveries */
	size_t events;            /* events delivered in all */
	uint64_t member[4096];    /* member of each delivered event */
	uint64_t position[4096];  /* position of each delivered event */
	size_t delivery_of[4096]; /* which delivery it came in */
	char stream[4096][16];
} delivery_log;

static void record(void *ctx, uint64_t member, uint64_t since,
                   const esdb_event *evs, size_t n)
{
	delivery_log *l = ctx;
	pthread_mutex_lock(&l->lock);
	for (size_t i = 0; i < n && l->events < 4096; i++) {
		l->member[l->events] = member;
		l->position[l->events] = evs[i].position;
		l->delivery_of[l->events] = l->n;
		snprintf(l->stream[l->events], 16, "%.*s",
		         (int)evs[i].stream_id_len, evs[i].stream_id);
		l->events++;
	}
	l->n++;
	pthread_mutex_unlock(&l->lock);
}

static void append(esdb_store *s, const char *stream, const char *type,
                   uint64_t n)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, n, type, "d");
	REQUIRE_OK(esdb_stream_append(s, stream, strlen(stream),
	                              ESDB_EXPECT_ANY, &ev, 1, NULL));
}

TEST(emitter_routes_by_all_stream_and_type)
{
	esdb_store *s = open_store(tmp_dir(), false);
	static delivery_log log;
	memset(&log, 0, sizeof(log));
	pthread_mutex_init(&log.lock, NULL);
	REQUIRE_OK(esdb_emitter_set_deliver(s, record, &log));
	append(s, "before", "t", 1);
	uint64_t last;
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, &last));
	CHECK_EQ(last, 1);
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_STREAM, "a", 1, 2, NULL));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_TYPE, "u", 1, 3, NULL));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_TYPE, "u", 1, 3, NULL));
	append(s, "a", "t", 2); /* pos 2: members 1, 2 */
	append(s, "b", "u", 3); /* pos 3: members 1, 3 */
	append(s, "c", "t", 4); /* pos 4: member 1 */
	REQUIRE_OK(esdb_emitter_flush(s));
	REQUIRE(log.events == 5);
	uint64_t want_member[] = {1, 2, 1, 3, 1};
	uint64_t want_pos[] = {2, 2, 3, 3, 4};
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(log.member[i], want_member[i]);
		CHECK_EQ(log.position[i], want_pos[i]);
	}
	CHECK(!strcmp(log.stream[0], "a") && !strcmp(log.stream[3], "b"));
	CHECK_RC(esdb_emitter_leave(s, ESDB_TOPIC_STREAM, "a", 1, 9),
	         ESDB_ENOTFOUND);
	REQUIRE_OK(esdb_emitter_leave(s, ESDB_TOPIC_STREAM, "a", 1, 2));
	size_t left;
	REQUIRE_OK(esdb_emitter_leave_all(s, 1, &left));
	CHECK_EQ(left, 1);
	append(s, "a", "u", 5); /* only member 3 by type */
	REQUIRE_OK(esdb_emitter_flush(s));
	CHECK_EQ(log.events, 6);
	CHECK_EQ(log.member[5], 3);
	CHECK_RC(esdb_emitter_join(s, ESDB_TOPIC_STREAM, "", 0, 1, NULL),
	         ESDB_EINVAL);
	CHECK_RC(esdb_emitter_join(s, 7, "x", 1, 1, NULL), ESDB_EINVAL);
	esdb_store_close(s);
	pthread_mutex_destroy(&log.lock);
}

TEST(emitter_delivers_once_per_member_per_commit_in_order)
{
	esdb_store *s = open_store(tmp_dir(), false);
	static delivery_log log;
	memset(&log, 0, sizeof(log));
	pthread_mutex_init(&log.lock, NULL);
	REQUIRE_OK(esdb_emitter_set_deliver(s, record, &log));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 5, NULL));
	uint8_t ids[4][16];
	esdb_new_event e[4] = {
	    make_event(ids[0], 1, "t", "a"), make_event(ids[1], 2, "t", "b"),
	    make_event(ids[2], 3, "t", "c"), make_event(ids[3], 4, "t", "d")};
	esdb_cmd cmds[3];
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "x", 1, 0, e, 2, &cmds[0]));
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "x", 1, 0, &e[2], 1, &cmds[1]));
	REQUIRE_OK(esdb_cmd_stream_append(NULL, "y", 1, 0, &e[3], 1, &cmds[2]));
	esdb_result res[3];
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, cmds, 3, res));
	CHECK_RC(res[1].rc, ESDB_EWRONG_VERSION); /* refused: not emitted */
	REQUIRE_OK(esdb_emitter_flush(s));
	CHECK_EQ(log.n, 1);
	REQUIRE(log.events == 3);
	CHECK(log.position[0] == 1 && log.position[1] == 2 &&
	      log.position[2] == 3);
	for (int i = 0; i < 3; i++)
		free(cmds[i].buf);
	esdb_store_close(s);
	pthread_mutex_destroy(&log.lock);
}

static void *keep_appending(void *arg)
{
	esdb_store *s = arg;
	for (uint64_t i = 0; i < 300; i++)
		append(s, "busy", "t", 1000 + i);
	return NULL;
}

TEST(emitter_join_splits_store_and_live_without_gap)
{
	/* Whatever moment a member joins, the events after the position join
	 * returned are delivered and the ones up to it are not. */
	esdb_store *s = open_store(tmp_dir(), false);
	static delivery_log log;
	memset(&log, 0, sizeof(log));
	pthread_mutex_init(&log.lock, NULL);
	REQUIRE_OK(esdb_emitter_set_deliver(s, record, &log));
	pthread_t th;
	pthread_create(&th, NULL, keep_appending, s);
	uint64_t last = 0;
	for (int spin = 0; spin < 1000000 && last < 50; spin++) {
		esdb_store_stats st;
		REQUIRE_OK(esdb_store_get_stats(s, &st));
		last = st.events;
	}
	REQUIRE_OK(
	    esdb_emitter_join(s, ESDB_TOPIC_STREAM, "busy", 4, 7, &last));
	pthread_join(th, NULL);
	REQUIRE_OK(esdb_emitter_flush(s));
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(log.events, st.events - last);
	for (size_t i = 0; i < log.events; i++)
		CHECK_EQ(log.position[i], last + 1 + i);
	esdb_store_close(s);
	pthread_mutex_destroy(&log.lock);
}
