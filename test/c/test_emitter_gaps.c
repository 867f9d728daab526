/* test_emitter_gaps.c: what a delivery vouches for (`since`), so that a
 * subscriber can tell a missed event from one that did not match. */
#include "harness.h"

#include "internal.h"

typedef struct since_log {
	size_t n;
	uint64_t since[64];
	uint64_t first[64]; /* the delivery's first position */
} since_log;

static void note(void *ctx, uint64_t member, uint64_t since,
                 const esdb_event *evs, size_t n)
{
	since_log *l = ctx;
	if (l->n < 64) {
		l->since[l->n] = since;
		l->first[l->n] = evs[0].position;
		l->n++;
	}
}

static void append_type(esdb_store *s, const char *type, uint64_t n)
{
	uint8_t id[16];
	esdb_new_event ev = make_event(id, n, type, "d");
	REQUIRE_OK(
	    esdb_stream_append(s, "x", 1, ESDB_EXPECT_ANY, &ev, 1, NULL));
}

TEST(emitter_since_spans_commits_that_did_not_match)
{
	esdb_store *s = open_store(tmp_dir(), false);
	static since_log log;
	memset(&log, 0, sizeof(log));
	append_type(s, "t", 1); /* before the emitter had a member */
	REQUIRE_OK(esdb_emitter_set_deliver(s, note, &log));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_TYPE, "u", 1, 1, NULL));
	append_type(s, "t", 2);
	append_type(s, "u", 3); /* pos 3 */
	append_type(s, "t", 4);
	append_type(s, "u", 5); /* pos 5 */
	REQUIRE_OK(esdb_emitter_flush(s));
	REQUIRE(log.n == 2);
	/* every commit since the store was opened went through the emitter */
	CHECK_EQ(log.first[0], 3);
	CHECK_EQ(log.since[0], 1);
	CHECK_EQ(log.first[1], 5);
	CHECK(log.since[1] <= 4); /* seen up to 3: no gap */
	esdb_store_close(s);
}

TEST(emitter_since_moves_past_a_commit_it_did_not_see)
{
	esdb_store *s = open_store(tmp_dir(), false);
	static since_log log;
	memset(&log, 0, sizeof(log));
	REQUIRE_OK(esdb_emitter_set_deliver(s, note, &log));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_TYPE, "u", 1, 1, NULL));
	append_type(s, "u", 1);
	REQUIRE_OK(esdb_emitter_flush(s));
	/* a commit this emitter never sees, as one from another process */
	struct esdb_emitter *saved = s->emitter;
	s->emitter = NULL;
	append_type(s, "u", 2);
	s->emitter = saved;
	append_type(s, "u", 3);
	REQUIRE_OK(esdb_emitter_flush(s));
	REQUIRE(log.n == 2);
	CHECK_EQ(log.first[1], 3);
	CHECK_EQ(log.since[1], 3); /* seen up to 1: position 2 is missing */
	esdb_store_close(s);
}

TEST(emitter_since_moves_past_a_dropped_fan_out)
{
	esdb_store *s = open_store(tmp_dir(), false);
	static since_log log;
	memset(&log, 0, sizeof(log));
	REQUIRE_OK(esdb_emitter_set_deliver(s, note, &log));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, NULL));
	append_type(s, "u", 1);
	esdb__emitter_fault = true;
	append_type(s, "t", 2); /* its fan-out is dropped */
	CHECK(!esdb__emitter_fault);
	append_type(s, "u", 3);
	REQUIRE_OK(esdb_emitter_flush(s));
	REQUIRE(log.n == 2);
	CHECK_EQ(log.first[1], 3);
	CHECK_EQ(log.since[1], 3);
	esdb_store_close(s);
}
