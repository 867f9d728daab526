/* test_model.c: random operations against the store and against a
 * simple in-memory model, compared after every step. ESDB_SEED picks the
 * seed, ESDB_MODEL_OPS the number of operations. */
#include "harness.h"

#define STREAMS    64
#define TYPES      4
#define MAX_EVENTS 200000
#define KEYS       5

typedef struct mev {
	uint64_t stream, version, id, type;
} mev;

static struct model {
	mev events[MAX_EVENTS]; /* index = position - 1 */
	uint64_t n_events;
	uint64_t stream_version[STREAMS];
	bool exists[STREAMS], deleted[STREAMS];
	uint64_t stream_pos[STREAMS][MAX_EVENTS / STREAMS * 4];
	bool snap[KEYS];
	uint64_t snap_version[KEYS];
	bool cp[KEYS];
	uint64_t cp_value[KEYS];
} M;

static uint64_t rng;
static uint64_t next_id = 1;
/* The store's read byte budget, drawn at each open: small enough that
 * pages are cut by bytes as often as by count. */
static uint64_t read_budget;

static void name_of(char *buf, const char *prefix, uint64_t i)
{
	sprintf(buf, "%s%llu", prefix, (unsigned long long)i);
}

/* The model's verdict for an append of ids[0..n) to stream st. */
static int model_append(uint64_t st, uint64_t exp, const uint64_t *ids,
                        uint64_t n, esdb_result *r)
{
	uint64_t cur = M.stream_version[st];
	bool ex = M.exists[st];
	memset(r, 0, sizeof(*r));
	if (ex && M.deleted[st])
		return ESDB_ESTREAM_DELETED;
	/* retry: the same ids already at versions start+1..start+n */
	uint64_t start;
	bool check = false;
	int refusal = 0;
	if (exp == ESDB_EXPECT_ANY || exp == ESDB_EXPECT_STREAM_EXISTS) {
		if (!ex && exp == ESDB_EXPECT_STREAM_EXISTS)
			return ESDB_ESTREAM_NOT_FOUND;
		check = ex && cur >= n;
		start = cur - n;
	} else if (exp == ESDB_EXPECT_NO_STREAM) {
		check = ex;
		start = 0;
		refusal = ex ? ESDB_ESTREAM_EXISTS : 0;
	} else {
		check = ex && exp != cur;
		start = exp;
		refusal = exp != cur ? ESDB_EWRONG_VERSION : 0;
	}
	if (check && start + n <= cur) {
		bool same = true;
		for (uint64_t i = 0; i < n && same; i++)
			same = M.events[M.stream_pos[st][start + i] - 1].id ==
			       ids[i];
		if (same) {
			r->version = start + n;
			r->position = M.stream_pos[st][start];
			return 0;
		}
	}
	if (refusal)
		return refusal;
	return 1; /* to be appended */
}

static void do_append(esdb_store *s)
{
	uint64_t st = rng_next(&rng) % STREAMS;
	uint64_t n = 1 + rng_next(&rng) % 4;
	uint64_t ids[8], types[8];
	uint64_t cur = M.stream_version[st];
	uint64_t choice = rng_next(&rng) % 8;
	uint64_t exp = choice == 0          ? ESDB_EXPECT_ANY
	               : choice == 1        ? ESDB_EXPECT_NO_STREAM
	               : choice == 2        ? ESDB_EXPECT_STREAM_EXISTS
	               : choice == 3        ? cur + 1 + rng_next(&rng) % 2
	               : choice == 4 && cur ? rng_next(&rng) % cur
	                                    : cur;
	bool retry = cur >= n && rng_next(&rng) % 6 == 0;
	if (retry) {
		/* resend events already stored, at their own start version */
		uint64_t from = rng_next(&rng) % (cur - n + 1);
		for (uint64_t i = 0; i < n; i++) {
			mev *e = &M.events[M.stream_pos[st][from + i] - 1];
			ids[i] = e->id;
			types[i] = e->type;
		}
		exp = from;
	} else {
		for (uint64_t i = 0; i < n; i++) {
			ids[i] = next_id++;
			types[i] = rng_next(&rng) % TYPES;
		}
	}
	char stream[32], type_names[8][16], data[8][24];
	esdb_new_event evs[8];
	uint8_t idb[8][16];
	name_of(stream, "stream-", st);
	for (uint64_t i = 0; i < n; i++) {
		name_of(type_names[i], "type-", types[i]);
		name_of(data[i], "data-", ids[i]);
		evs[i] = make_event(idb[i], ids[i], type_names[i], data[i]);
	}
	esdb_result want, got;
	int want_rc = model_append(st, exp, ids, n, &want);
	esdb_stream_append(s, stream, strlen(stream), exp, evs, n, &got);
	if (want_rc == 1) {
		want.position = M.n_events + 1;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t pos = ++M.n_events;
			uint64_t v = ++M.stream_version[st];
			M.events[pos - 1] = (mev){st, v, ids[i], types[i]};
			M.stream_pos[st][v - 1] = pos;
		}
		M.exists[st] = true;
		want.version = M.stream_version[st];
		want_rc = 0;
	}
	CHECK_RC(got.rc, want_rc);
	CHECK_EQ(got.version, want.version);
	CHECK_EQ(got.position, want.position);
}

static void do_delete(esdb_store *s)
{
	uint64_t st = rng_next(&rng) % STREAMS;
	char stream[32];
	name_of(stream, "stream-", st);
	int want = !M.exists[st]   ? ESDB_ESTREAM_NOT_FOUND
	           : M.deleted[st] ? ESDB_ESTREAM_DELETED
	                           : 0;
	CHECK_RC(esdb_stream_delete(s, stream, strlen(stream), ESDB_EXPECT_ANY),
	         want);
	if (want == 0)
		M.deleted[st] = true;
}

static esdb_store *model_open(const char *dir)
{
	read_budget = 30 + rng_next(&rng) % 300;
	/* on the commit path ESDB_TEST_COMMIT_PATH names (make test-c-log) */
	esdb_store *s = new_store();
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_set_read_bytes(s, read_budget));
	REQUIRE_OK(esdb_store_open(s, dir));
	return s;
}

/* A page as the model fills it: at most `count` events and, past the
 * first, at most read_budget bytes (data, metadata, stream id, type). */
typedef struct mpage {
	uint32_t count, n;
	uint64_t bytes;
} mpage;

static bool mpage_take(mpage *pg, uint64_t pos)
{
	mev *e = &M.events[pos - 1];
	char stream[32], type[16], data[24];
	name_of(stream, "stream-", e->stream);
	name_of(type, "type-", e->type);
	name_of(data, "data-", e->id);
	uint64_t size = strlen(data) + 1 + strlen(stream) + strlen(type);
	if (pg->n == pg->count || (pg->n > 0 && pg->bytes + size > read_budget))
		return false;
	pg->n++;
	pg->bytes += size;
	return true;
}

static void check_event(const collected *c, size_t i, uint64_t pos)
{
	mev *e = &M.events[pos - 1];
	char stream[32], type[16], data[24];
	uint8_t id[16];
	name_of(stream, "stream-", e->stream);
	name_of(type, "type-", e->type);
	name_of(data, "data-", e->id);
	make_id(id, e->id);
	CHECK_EQ(c->positions[i], pos);
	CHECK_EQ(c->versions[i], e->version);
	CHECK(!strcmp(c->streams[i], stream));
	CHECK(!strcmp(c->types[i], type));
	CHECK(!strcmp(c->data[i], data));
	CHECK(!memcmp(c->ids[i], id, 16));
}

/* The continuation a read must give: the end, or the next key. */
static void check_next(const esdb_read_next *next, bool end, uint64_t from)
{
	CHECK_EQ(next->end, end);
	if (!end)
		CHECK_EQ(next->from, from);
}

static void do_read_stream(esdb_store *s)
{
	uint64_t st = rng_next(&rng) % STREAMS;
	char stream[32];
	name_of(stream, "stream-", st);
	uint64_t v = M.stream_version[st];
	uint64_t from = rng_next(&rng) % (v + 3);
	uint32_t count = (uint32_t)(rng_next(&rng) % 20);
	bool back = rng_next(&rng) % 2;
	collected c = {0};
	esdb_read_next next = {0};
	int rc = esdb_stream_read(s, stream, strlen(stream), from, count,
	                          back ? ESDB_DIRECTION_BACKWARD
	                               : ESDB_DIRECTION_FORWARD,
	                          collect_event, &c, &next);
	int want = !M.exists[st]   ? ESDB_ESTREAM_NOT_FOUND
	           : M.deleted[st] ? ESDB_ESTREAM_DELETED
	                           : 0;
	CHECK_RC(rc, want);
	size_t n = 0;
	uint64_t ver;
	mpage pg = {.count = count};
	if (rc != want)
		want = -1; /* reported above; nothing more to compare */
	if (want == 0 && !back) {
		for (ver = from ? from : 1;
		     ver <= v && mpage_take(&pg, M.stream_pos[st][ver - 1]);
		     ver++, n++)
			if (n < c.n)
				check_event(&c, n, M.stream_pos[st][ver - 1]);
		check_next(&next, ver > v, ver);
	} else if (want == 0) {
		for (ver = from > v ? v : from;
		     ver >= 1 && mpage_take(&pg, M.stream_pos[st][ver - 1]);
		     ver--, n++)
			if (n < c.n)
				check_event(&c, n, M.stream_pos[st][ver - 1]);
		check_next(&next, ver == 0, ver);
	}
	CHECK_EQ(c.n, n);
	collected_free(&c);
}

static void do_read_all(esdb_store *s)
{
	uint64_t from = rng_next(&rng) % (M.n_events + 3);
	uint32_t count = (uint32_t)(rng_next(&rng) % 50);
	bool back = rng_next(&rng) % 2;
	collected c = {0};
	esdb_read_next next;
	REQUIRE_OK(esdb_all_read(s, from, count,
	                         back ? ESDB_DIRECTION_BACKWARD
	                              : ESDB_DIRECTION_FORWARD,
	                         collect_event, &c, &next));
	size_t n = 0;
	uint64_t p;
	mpage pg = {.count = count};
	if (!back) {
		for (p = from ? from : 1; p <= M.n_events && mpage_take(&pg, p);
		     p++, n++)
			if (n < c.n)
				check_event(&c, n, p);
		check_next(&next, p > M.n_events, p);
	} else {
		for (p = from > M.n_events ? M.n_events : from;
		     p >= 1 && mpage_take(&pg, p); p--, n++)
			if (n < c.n)
				check_event(&c, n, p);
		check_next(&next, p == 0, p);
	}
	CHECK_EQ(c.n, n);
	collected_free(&c);
}

static void do_read_type(esdb_store *s)
{
	uint64_t t = rng_next(&rng) % TYPES;
	uint64_t from = rng_next(&rng) % (M.n_events + 2);
	uint32_t count = (uint32_t)(rng_next(&rng) % 30);
	char type[16];
	name_of(type, "type-", t);
	collected c = {0};
	esdb_read_next next;
	REQUIRE_OK(esdb_type_read(s, type, strlen(type), from, count,
	                          collect_event, &c, &next));
	size_t n = 0;
	uint64_t p = from ? from : 1;
	mpage pg = {.count = count};
	for (; p <= M.n_events; p++)
		if (M.events[p - 1].type == t) {
			if (!mpage_take(&pg, p))
				break;
			if (n < c.n)
				check_event(&c, n, p);
			n++;
		}
	check_next(&next, p > M.n_events, p);
	CHECK_EQ(c.n, n);
	collected_free(&c);
}

static int snap_version(void *ctx, const esdb_snapshot *sn)
{
	*(uint64_t *)ctx = sn->source_version;
	return 0;
}

static int cp_value(void *ctx, const esdb_checkpoint *cp)
{
	*(uint64_t *)ctx = cp->checkpoint;
	return 0;
}

static void do_keyed(esdb_store *s)
{
	uint64_t k = rng_next(&rng) % KEYS, op = rng_next(&rng) % 6;
	uint64_t val = rng_next(&rng) % 1000;
	char key[16];
	name_of(key, "key-", k);
	esdb_cmd cmd;
	uint64_t got = 0;
	switch (op) {
	case 0:
		REQUIRE_OK(esdb_cmd_snapshot_put(
		    NULL,
		    &(esdb_snapshot){.source_uuid = key,
		                     .source_uuid_len = strlen(key),
		                     .source_version = val,
		                     .source_type = "T",
		                     .source_type_len = 1,
		                     .data = "d",
		                     .data_len = 1},
		    &cmd));
		CHECK_RC(esdb_store_execute(s, &cmd, NULL), 0);
		M.snap[k] = true;
		M.snap_version[k] = val;
		break;
	case 1:
		REQUIRE_OK(
		    esdb_cmd_snapshot_delete(NULL, key, strlen(key), &cmd));
		CHECK_RC(esdb_store_execute(s, &cmd, NULL),
		         M.snap[k] ? 0 : ESDB_ENOTFOUND);
		M.snap[k] = false;
		break;
	case 2:
		CHECK_RC(
		    esdb_snapshot_get(s, key, strlen(key), snap_version, &got),
		    M.snap[k] ? 0 : ESDB_ENOTFOUND);
		CHECK_EQ(got, M.snap[k] ? M.snap_version[k] : 0);
		break;
	case 3:
		REQUIRE_OK(esdb_cmd_checkpoint_put(NULL, key, strlen(key), val,
		                                   NULL, 0, &cmd));
		CHECK_RC(esdb_store_execute(s, &cmd, NULL), 0);
		M.cp[k] = true;
		M.cp_value[k] = val;
		break;
	case 4:
		REQUIRE_OK(
		    esdb_cmd_checkpoint_delete(NULL, key, strlen(key), &cmd));
		CHECK_RC(esdb_store_execute(s, &cmd, NULL),
		         M.cp[k] ? 0 : ESDB_ENOTFOUND);
		M.cp[k] = false;
		break;
	default:
		CHECK_RC(
		    esdb_checkpoint_get(s, key, strlen(key), cp_value, &got),
		    M.cp[k] ? 0 : ESDB_ENOTFOUND);
		CHECK_EQ(got, M.cp[k] ? M.cp_value[k] : 0);
	}
}

TEST(model_based_random_operations)
{
	const char *env = getenv("ESDB_MODEL_OPS");
	long ops = env ? atol(env) : 20000;
	memset(&M, 0, sizeof(M));
	rng = test_seed();
	next_id = 1;
	const char *dir = tmp_dir();
	esdb_store *s = model_open(dir);
	for (long i = 0; i < ops && M.n_events + 8 < MAX_EVENTS; i++) {
		uint64_t op = rng_next(&rng) % 100;
		if (op < 45)
			do_append(s);
		else if (op < 47 && rng_next(&rng) % 8 == 0)
			do_delete(s); /* rare, or every stream ends deleted */
		else if (op < 62)
			do_read_stream(s);
		else if (op < 77)
			do_read_all(s);
		else if (op < 87)
			do_read_type(s);
		else if (op < 99)
			do_keyed(s);
		else {
			/* close and reopen: the store comes back as it was */
			uint64_t before, after;
			esdb_store_stats st;
			REQUIRE_OK(esdb_store_get_applied_index(s, &before));
			esdb_store_close(s);
			s = model_open(dir);
			REQUIRE_OK(esdb_store_get_applied_index(s, &after));
			REQUIRE_OK(esdb_store_get_stats(s, &st));
			if (after != before || st.events != M.n_events)
				harness_fail(
				    __FILE__, __LINE__,
				    "reopen at operation %ld: applied "
				    "index %" PRIu64 " (was %" PRIu64
				    "), %" PRIu64 " events (model %" PRIu64 ")",
				    i, after, before, st.events, M.n_events);
		}
		/* The model goes on as if each operation succeeded: stop at
		 * the first difference, which says what happened, rather than
		 * report every later one it causes. */
		if (harness_test_failed()) {
			harness_fail(__FILE__, __LINE__,
			             "first difference at operation %ld of %ld "
			             "(seed %" PRIu64 ")",
			             i, ops, test_seed());
			break;
		}
	}
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	CHECK_EQ(st.events, M.n_events);
	uint64_t problems;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	printf("  %ld operations, %llu events\n", ops,
	       (unsigned long long)M.n_events);
	esdb_store_close(s);
}
