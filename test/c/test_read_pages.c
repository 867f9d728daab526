/* test_read_pages.c: reads bounded by bytes as well as by count, and the
 * explicit continuation (esdb_read_next) that pages follow: a short page
 * is not the end, only `end` is. */
#include "harness.h"

#define BUDGET 10000

enum source { SRC_STREAM, SRC_ALL, SRC_TYPE };

/* Stream "big" gets events of `sizes` bytes of data, type "big"; a small
 * event of stream "o", type "small", sits between each two, so versions
 * and positions differ. */
static esdb_store *store_with(const size_t *sizes, size_t n, uint64_t budget)
{
	esdb_store *s;
	s = new_store();
	REQUIRE_OK(esdb_store_set_durability(s, ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_set_read_bytes(s, budget));
	REQUIRE_OK(esdb_store_open(s, tmp_dir()));
	for (size_t i = 0; i < n; i++) {
		uint8_t id[16];
		char *data = malloc(sizes[i] + 1);
		memset(data, 'a' + (int)(i % 26), sizes[i]);
		data[sizes[i]] = 0;
		esdb_new_event ev = make_event(id, 2 * i + 1, "big", data);
		REQUIRE_OK(esdb_stream_append(s, "big", 3, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
		free(data);
		ev = make_event(id, 2 * i + 2, "small", "x");
		REQUIRE_OK(esdb_stream_append(s, "o", 1, ESDB_EXPECT_ANY, &ev,
		                              1, NULL));
	}
	return s;
}

typedef struct page {
	collected c;
	uint64_t bytes, first_bytes;
} page;

static int on_event(void *ctx, const esdb_event *ev)
{
	page *p = ctx;
	uint64_t size = ev->data_len + ev->metadata_len + ev->stream_id_len +
	                ev->event_type_len;
	if (p->c.n == 0)
		p->first_bytes = size;
	p->bytes += size;
	return collect_event(&p->c, ev);
}

static int read_page(esdb_store *s, enum source src, uint64_t from,
                     uint32_t count, esdb_direction dir, page *p,
                     esdb_read_next *next)
{
	switch (src) {
	case SRC_STREAM:
		return esdb_stream_read(s, "big", 3, from, count, dir, on_event,
		                        p, next);
	case SRC_ALL:
		return esdb_all_read(s, from, count, dir, on_event, p, next);
	default:
		return esdb_type_read(s, "big", 3, from, count, on_event, p,
		                      next);
	}
}

/* Page through a source following `next` until `end`, checking each
 * page against the budget; returns the keys read, in order, in keys[]
 * and how many pages were short of `count` without being the end. */
static size_t read_paged(esdb_store *s, enum source src, uint64_t from,
                         uint32_t count, esdb_direction dir, uint64_t *keys,
                         size_t cap, size_t *n_keys)
{
	size_t short_pages = 0, n = 0;
	for (int guard = 0; guard < 1000; guard++) {
		page p = {0};
		esdb_read_next next = {.end = true, .from = 12345};
		REQUIRE_OK(read_page(s, src, from, count, dir, &p, &next));
		/* over the budget only when one event alone is */
		CHECK(p.bytes <= BUDGET || p.c.n == 1);
		size_t got = p.c.n;
		for (size_t i = 0; i < got && n < cap; i++)
			keys[n++] = src == SRC_STREAM ? p.c.versions[i]
			                              : p.c.positions[i];
		collected_free(&p.c);
		if (next.end) {
			*n_keys = n;
			return short_pages;
		}
		REQUIRE(got > 0 || count == 0);
		if (got < count)
			short_pages++;
		/* the page resumes right after its last event */
		if (got > 0 && src != SRC_TYPE)
			CHECK_EQ(next.from, dir == ESDB_DIRECTION_FORWARD
			                        ? keys[n - 1] + 1
			                        : keys[n - 1] - 1);
		from = next.from;
	}
	REQUIRE(!"paging did not end");
	return 0;
}

static const size_t sizes[] = {3000, 3000, 3000, 3000, 25000, 3000,
                               3000, 100,  100,  100,  3000,  3000};
#define N (sizeof(sizes) / sizeof(sizes[0]))

TEST(read_pages_cut_by_bytes_resume_from_next)
{
	esdb_store *s = store_with(sizes, N, BUDGET);
	uint64_t keys[64];
	size_t n;
	/* a stream, forward and backward */
	CHECK(read_paged(s, SRC_STREAM, 0, 100, ESDB_DIRECTION_FORWARD, keys,
	                 64, &n) > 0);
	CHECK_EQ(n, N);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(keys[i], i + 1);
	CHECK(read_paged(s, SRC_STREAM, UINT64_MAX, 100,
	                 ESDB_DIRECTION_BACKWARD, keys, 64, &n) > 0);
	CHECK_EQ(n, N);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(keys[i], N - i);
	/* $all both ways: the small events of "o" come along */
	CHECK(read_paged(s, SRC_ALL, 1, 100, ESDB_DIRECTION_FORWARD, keys, 64,
	                 &n) > 0);
	CHECK_EQ(n, 2 * N);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(keys[i], i + 1);
	CHECK(read_paged(s, SRC_ALL, UINT64_MAX, 100, ESDB_DIRECTION_BACKWARD,
	                 keys, 64, &n) > 0);
	CHECK_EQ(n, 2 * N);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(keys[i], 2 * N - i);
	/* by type: positions 1, 3, 5, ... */
	CHECK(read_paged(s, SRC_TYPE, 0, 100, ESDB_DIRECTION_FORWARD, keys, 64,
	                 &n) > 0);
	CHECK_EQ(n, N);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(keys[i], 2 * i + 1);
	esdb_store_close(s);
}

TEST(read_page_bigger_than_the_budget_comes_alone)
{
	esdb_store *s = store_with(sizes, N, BUDGET);
	/* version 5 is 25000 bytes: first in its page, it still comes */
	page p = {0};
	esdb_read_next next;
	REQUIRE_OK(read_page(s, SRC_STREAM, 5, 100, ESDB_DIRECTION_FORWARD, &p,
	                     &next));
	REQUIRE(p.c.n == 1);
	CHECK_EQ(p.c.versions[0], 5);
	CHECK(!next.end);
	CHECK_EQ(next.from, 6);
	collected_free(&p.c);
	/* three events of 3000 fit the budget, a fourth does not */
	p = (page){0};
	REQUIRE_OK(read_page(s, SRC_STREAM, 1, 100, ESDB_DIRECTION_FORWARD, &p,
	                     &next));
	CHECK_EQ(p.c.n, 3);
	CHECK(!next.end);
	CHECK_EQ(next.from, 4);
	collected_free(&p.c);
	esdb_store_close(s);
}

TEST(read_next_by_count_knows_the_end)
{
	esdb_store *s = store_with(sizes, N, 1ull << 30);
	page p = {0};
	esdb_read_next next;
	/* a full page that ends exactly at the last version is the end */
	REQUIRE_OK(read_page(s, SRC_STREAM, N - 2, 3, ESDB_DIRECTION_FORWARD,
	                     &p, &next));
	CHECK_EQ(p.c.n, 3);
	CHECK(next.end);
	collected_free(&p.c);
	p = (page){0};
	REQUIRE_OK(
	    read_page(s, SRC_STREAM, 1, 3, ESDB_DIRECTION_FORWARD, &p, &next));
	CHECK(!next.end);
	CHECK_EQ(next.from, 4);
	collected_free(&p.c);
	p = (page){0};
	REQUIRE_OK(
	    read_page(s, SRC_STREAM, 3, 3, ESDB_DIRECTION_BACKWARD, &p, &next));
	CHECK_EQ(p.c.n, 3);
	CHECK(next.end);
	collected_free(&p.c);
	/* $all: 2N events, a full page at the last is the end */
	p = (page){0};
	REQUIRE_OK(read_page(s, SRC_ALL, 2 * N - 1, 2, ESDB_DIRECTION_FORWARD,
	                     &p, &next));
	CHECK(next.end);
	collected_free(&p.c);
	p = (page){0};
	REQUIRE_OK(read_page(s, SRC_ALL, 2 * N, 2, ESDB_DIRECTION_BACKWARD, &p,
	                     &next));
	CHECK(!next.end);
	CHECK_EQ(next.from, 2 * N - 2);
	collected_free(&p.c);
	/* by type the next event of that type, not the next position */
	p = (page){0};
	REQUIRE_OK(
	    read_page(s, SRC_TYPE, 1, 2, ESDB_DIRECTION_FORWARD, &p, &next));
	CHECK(!next.end);
	CHECK_EQ(next.from, 5);
	collected_free(&p.c);
	p = (page){0};
	REQUIRE_OK(read_page(s, SRC_TYPE, 2 * N - 1, 2, ESDB_DIRECTION_FORWARD,
	                     &p, &next));
	CHECK_EQ(p.c.n, 1);
	CHECK(next.end);
	collected_free(&p.c);
	/* count 0 reads nothing and says where to go on */
	p = (page){0};
	REQUIRE_OK(
	    read_page(s, SRC_ALL, 0, 0, ESDB_DIRECTION_FORWARD, &p, &next));
	CHECK_EQ(p.c.n, 0);
	CHECK(!next.end);
	CHECK_EQ(next.from, 1);
	/* past the end, and an unknown type: empty and the end */
	REQUIRE_OK(read_page(s, SRC_STREAM, N + 1, 5, ESDB_DIRECTION_FORWARD,
	                     &p, &next));
	CHECK(next.end);
	REQUIRE_OK(esdb_type_read(s, "nope", 4, 0, 5, on_event, &p, &next));
	CHECK(next.end);
	CHECK_EQ(p.c.n, 0);
	esdb_store_close(s);
}

TEST(read_bytes_budget_rejects_zero)
{
	esdb_store *s;
	s = new_store();
	CHECK_RC(esdb_store_set_read_bytes(s, 0), ESDB_EINVAL);
	CHECK_RC(esdb_store_set_read_bytes(NULL, 1), ESDB_EINVAL);
	esdb_store_close(s);
}
