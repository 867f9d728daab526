/* test_requests.c: a snapshot or checkpoint put or delete given a
 * request id (esdb_cmd_set_request) and resubmitted marked as a retry
 * after an unknown outcome is not applied again when its first try was:
 * applied twice, a put would overwrite another writer's put made in
 * between, a delete the record put again since. */
#include "harness.h"

#include "commands.h"
#include "records.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

static esdb_cmd cp_put(const char *name, uint64_t value, const char *def)
{
	esdb_cmd c;
	REQUIRE_OK(esdb_cmd_checkpoint_put(NULL, name, strlen(name), value, def,
	                                   strlen(def), &c));
	return c;
}

static esdb_cmd with_request(esdb_cmd c, uint64_t n)
{
	uint8_t id[16];
	make_id(id, n);
	REQUIRE_OK(esdb_cmd_set_request(&c, id));
	return c;
}

/* A copy of c marked as a retry. */
static esdb_cmd retry_of(const esdb_cmd *c)
{
	esdb_cmd r = {.buf = malloc(c->len), .len = c->len};
	REQUIRE(r.buf);
	memcpy(r.buf, c->buf, c->len);
	REQUIRE_OK(esdb_cmd_mark_retry(&r));
	return r;
}

static int apply1(esdb_store *s, esdb_cmd c)
{
	esdb_result r;
	REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, &c, 1, &r));
	free(c.buf);
	return r.rc;
}

static int got_checkpoint(void *ctx, const esdb_checkpoint *cp)
{
	*(uint64_t *)ctx = cp->checkpoint;
	return 0;
}

/* The checkpoint's value, 0 when absent. */
static uint64_t checkpoint_of(esdb_store *s, const char *name)
{
	uint64_t v = 0;
	int rc = esdb_checkpoint_get(s, name, strlen(name), got_checkpoint, &v);
	REQUIRE(rc == 0 || rc == ESDB_ENOTFOUND);
	return v;
}

static int got_snapshot(void *ctx, const esdb_snapshot *sn)
{
	*(uint64_t *)ctx = sn->source_version;
	return 0;
}

static uint64_t snapshot_of(esdb_store *s, const char *uuid)
{
	uint64_t v = 0;
	int rc = esdb_snapshot_get(s, uuid, strlen(uuid), got_snapshot, &v);
	REQUIRE(rc == 0 || rc == ESDB_ENOTFOUND);
	return v;
}

static esdb_cmd sn_put(const char *uuid, uint64_t version)
{
	esdb_snapshot sn = {.source_uuid = uuid,
	                    .source_uuid_len = strlen(uuid),
	                    .source_version = version,
	                    .source_type = "t",
	                    .source_type_len = 1,
	                    .data = "d",
	                    .data_len = 1};
	esdb_cmd c;
	REQUIRE_OK(esdb_cmd_snapshot_put(NULL, &sn, &c));
	return c;
}

TEST(request_ids_go_on_puts_and_deletes_only)
{
	esdb_cmd c = with_request(cp_put("x", 1, "d"), 7);
	esdb__cmd_view v;
	REQUIRE_OK(esdb_cmd_check(c.buf, c.len)); /* resealed */
	REQUIRE_OK(esdb__cmd_parse(c.buf, c.len, &v));
	CHECK_EQ(v.flags, ESDB_CMD_FLAG_REQUEST);
	uint8_t id[16];
	make_id(id, 7);
	CHECK(v.request && memcmp(v.request, id, 16) == 0);
	CHECK_EQ(v.number, 1);
	CHECK_EQ(v.data_len, 1); /* the body ends before the id */
	CHECK_RC(esdb_cmd_set_request(&c, id), ESDB_EINVAL); /* one id */
	REQUIRE_OK(esdb_cmd_mark_retry(&c));
	REQUIRE_OK(esdb__cmd_parse(c.buf, c.len, &v));
	CHECK_EQ(v.flags, ESDB_CMD_FLAG_REQUEST | ESDB_CMD_FLAG_REQUEST_RETRY);
	free(c.buf);

	/* a snapshot put keeps its payload flags */
	esdb_snapshot sn = {.source_uuid = "u",
	                    .source_uuid_len = 1,
	                    .source_version = 3,
	                    .data = "d",
	                    .data_len = 1,
	                    .data_encoding = ESDB_ENCODING_TERM};
	REQUIRE_OK(esdb_cmd_snapshot_put(NULL, &sn, &c));
	c = with_request(c, 8);
	REQUIRE_OK(esdb__cmd_parse(c.buf, c.len, &v));
	CHECK_EQ(v.flags, ESDB_SNAPSHOT_DATA_TERM | ESDB_CMD_FLAG_REQUEST);
	free(c.buf);
	REQUIRE_OK(esdb_cmd_snapshot_delete(NULL, "u", 1, &c));
	free(with_request(c, 9).buf);
	REQUIRE_OK(esdb_cmd_checkpoint_delete(NULL, "x", 1, &c));
	free(with_request(c, 10).buf);

	/* not on appends, stream deletes or limits */
	esdb_cmd d;
	REQUIRE_OK(esdb_cmd_stream_delete(NULL, "s", 1, ESDB_EXPECT_ANY, &d));
	CHECK_RC(esdb_cmd_set_request(&d, id), ESDB_EINVAL);
	free(d.buf);
	uint8_t eid[16];
	esdb_new_event ev = make_event(eid, 1, "t", "d");
	REQUIRE_OK(
	    esdb_cmd_stream_append(NULL, "s", 1, ESDB_EXPECT_ANY, &ev, 1, &d));
	CHECK_RC(esdb_cmd_set_request(&d, id), ESDB_EINVAL);
	free(d.buf);
	CHECK_RC(esdb_cmd_set_request(NULL, id), ESDB_EINVAL);

	/* a put without an id cannot be marked, nor carry the mark alone */
	c = cp_put("x", 1, "d");
	CHECK_RC(esdb_cmd_mark_retry(&c), ESDB_EINVAL);
	c.buf[2] = ESDB_CMD_FLAG_REQUEST_RETRY;
	cmd_reseal(&c);
	CHECK_RC(esdb_cmd_check(c.buf, c.len), ESDB_EINVAL);
	/* an id flag on a body too short for one */
	c.buf[2] = ESDB_CMD_FLAG_REQUEST;
	cmd_reseal(&c);
	CHECK_RC(esdb_cmd_check(c.buf, c.len), ESDB_EINVAL);
	free(c.buf);
}

/* The double apply: a put's first try applied (its answer lost),
 * another writer's put, then the retry. Marked, it leaves the other
 * writer's value; unmarked (as before), it overwrote it. */
TEST(a_retried_put_leaves_a_later_writers_put)
{
	esdb_store *s = open_store(tmp_dir(), false);
	esdb_cmd a = with_request(cp_put("x", 1, "a"), 1);
	esdb_cmd again = retry_of(&a);
	esdb_cmd unmarked = {.buf = malloc(a.len), .len = a.len};
	REQUIRE(unmarked.buf);
	memcpy(unmarked.buf, a.buf, a.len);
	CHECK_RC(apply1(s, a), 0);
	CHECK_RC(apply1(s, with_request(cp_put("x", 2, "b"), 2)), 0);
	CHECK_RC(apply1(s, again), 0); /* answered as the first try */
	CHECK_EQ(checkpoint_of(s, "x"), 2);
	CHECK_RC(apply1(s, unmarked), 0);
	CHECK_EQ(checkpoint_of(s, "x"), 1);

	/* a snapshot put the same way */
	esdb_cmd sp = with_request(sn_put("u", 5), 3);
	esdb_cmd sp_again = retry_of(&sp);
	CHECK_RC(apply1(s, sp), 0);
	CHECK_RC(apply1(s, sn_put("u", 7)), 0);
	CHECK_RC(apply1(s, sp_again), 0);
	CHECK_EQ(snapshot_of(s, "u"), 7);

	/* a delete: the record put again since stays */
	esdb_cmd del;
	REQUIRE_OK(esdb_cmd_checkpoint_delete(NULL, "x", 1, &del));
	del = with_request(del, 4);
	esdb_cmd del_again = retry_of(&del);
	CHECK_RC(apply1(s, del), 0);
	CHECK_RC(apply1(s, cp_put("x", 3, "c")), 0);
	CHECK_RC(apply1(s, del_again), 0); /* ok, as the first try */
	CHECK_EQ(checkpoint_of(s, "x"), 3);
	REQUIRE_OK(esdb_cmd_snapshot_delete(NULL, "u", 1, &del));
	del = with_request(del, 5);
	del_again = retry_of(&del);
	CHECK_RC(apply1(s, del), 0);
	CHECK_RC(apply1(s, sn_put("u", 9)), 0);
	CHECK_RC(apply1(s, del_again), 0);
	CHECK_EQ(snapshot_of(s, "u"), 9);
	esdb_store_close(s);
}

/* A retry whose first try was never applied (withdrawn, or refused) is
 * applied as that try would have been; the window survives a reopen. */
TEST(a_retry_whose_first_try_was_not_applied_is_applied)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	esdb_cmd a = with_request(cp_put("x", 1, "a"), 1);
	CHECK_RC(apply1(s, retry_of(&a)), 0);
	CHECK_EQ(checkpoint_of(s, "x"), 1);
	/* refused first: nothing recorded, the retry deletes */
	esdb_cmd del;
	REQUIRE_OK(esdb_cmd_checkpoint_delete(NULL, "y", 1, &del));
	del = with_request(del, 2);
	esdb_cmd del_again = retry_of(&del);
	CHECK_RC(apply1(s, del), ESDB_ENOTFOUND);
	CHECK_RC(apply1(s, cp_put("y", 4, "b")), 0);
	CHECK_RC(apply1(s, del_again), 0);
	CHECK_EQ(checkpoint_of(s, "y"), 0);
	/* recorded durably: a retry after a reopen still finds it */
	esdb_store_close(s);
	s = open_store(dir, false);
	CHECK_RC(apply1(s, cp_put("x", 5, "c")), 0);
	CHECK_RC(apply1(s, retry_of(&a)), 0);
	CHECK_EQ(checkpoint_of(s, "x"), 5);
	free(a.buf);
	esdb_store_close(s);
}

/* The window holds the last ESDB_REQUEST_WINDOW requests applied: the
 * oldest leaves when one more is recorded. */
TEST(the_window_keeps_the_last_requests)
{
	esdb_store *s = open_store(tmp_dir(), false);
	enum { B = 128 };
	esdb_cmd first = with_request(cp_put("x", 1, "a"), 1);
	esdb_cmd first_again = retry_of(&first);
	esdb_cmd second = with_request(cp_put("x", 2, "a"), 2);
	esdb_cmd second_again = retry_of(&second);
	CHECK_RC(apply1(s, first), 0);
	CHECK_RC(apply1(s, second), 0);
	/* ESDB_REQUEST_WINDOW - 1 more: the first one leaves */
	esdb_cmd cmds[B];
	esdb_result res[B];
	for (size_t done = 0; done < ESDB_REQUEST_WINDOW - 1;) {
		size_t k = ESDB_REQUEST_WINDOW - 1 - done;
		k = k < B ? k : B;
		for (size_t i = 0; i < k; i++)
			cmds[i] = with_request(cp_put("o", done + i, "o"),
			                       1000 + done + i);
		REQUIRE_OK(esdb_store_apply(s, ESDB_INDEX_NEXT, cmds, k, res));
		for (size_t i = 0; i < k; i++) {
			CHECK_RC(res[i].rc, 0);
			free(cmds[i].buf);
		}
		done += k;
	}
	CHECK_RC(apply1(s, cp_put("x", 3, "b")), 0);
	CHECK_RC(apply1(s, second_again), 0); /* still in the window */
	CHECK_EQ(checkpoint_of(s, "x"), 3);
	CHECK_RC(apply1(s, first_again), 0); /* beyond it: applied again */
	CHECK_EQ(checkpoint_of(s, "x"), 1);
	esdb_store_close(s);
}

/* The window is in `meta`, so a copy carries it (what a lagging or new
 * replica is sent, esdb_store_copy/esdb_store_restore): a retry that
 * reaches the copy after its first try was applied on the original is
 * not applied again. */
TEST(a_copy_carries_the_window)
{
	esdb_store *a = open_store(tmp_dir(), false);
	esdb_store *b = open_store(tmp_dir(), false);
	esdb_cmd put = with_request(cp_put("x", 1, "a"), 1);
	esdb_cmd again = retry_of(&put);
	CHECK_RC(apply1(a, put), 0);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/copy.mdb", tmp_dir());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	REQUIRE_OK(esdb_store_copy(a, fd));
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	REQUIRE_OK(esdb_store_restore(b, fd));
	close(fd);
	CHECK_EQ(checkpoint_of(b, "x"), 1);
	CHECK_RC(apply1(b, cp_put("x", 2, "b")), 0); /* a later writer */
	CHECK_RC(apply1(b, again), 0); /* answered as the first try */
	CHECK_EQ(checkpoint_of(b, "x"), 2);
	esdb_store_close(a);
	esdb_store_close(b);
}

/* A window this node cannot read (a bad "requests" count) refuses a put
 * with a request id as corrupt, and the put is not applied: an answer
 * of corrupt for a put that was written (the count is read to record
 * the id, after the put) would make its caller retry or give up on a
 * write that is there. */
TEST(a_bad_window_refuses_the_put_and_writes_nothing)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	CHECK_RC(apply1(s, with_request(cp_put("x", 1, "a"), 1)), 0);
	esdb_store_close(s);
	raw_put(dir, "meta", "requests", 8, "bad", 3);
	s = open_store(dir, false);
	CHECK_RC(apply1(s, with_request(cp_put("x", 2, "b"), 2)),
	         ESDB_ECORRUPT);
	CHECK_EQ(checkpoint_of(s, "x"), 1);
	esdb_cmd del;
	REQUIRE_OK(esdb_cmd_checkpoint_delete(NULL, "x", 1, &del));
	CHECK_RC(apply1(s, with_request(del, 3)), ESDB_ECORRUPT);
	CHECK_EQ(checkpoint_of(s, "x"), 1);
	/* without a request id the put does not read the window */
	CHECK_RC(apply1(s, cp_put("x", 4, "c")), 0);
	CHECK_EQ(checkpoint_of(s, "x"), 4);
	esdb_store_close(s);
}
