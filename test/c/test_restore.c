/* test_restore.c: a whole store through a file descriptor. A copy taken
 * while writers run is restored under an open handle while readers read
 * and a subscriber listens: nobody crashes, reads after the swap see the
 * copy, and the emitter goes on from the copy's last position. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static void append_n(esdb_store *s, uint64_t from, uint64_t n)
{
	uint8_t id[16];
	for (uint64_t i = from; i < from + n; i++) {
		char stream[16];
		snprintf(stream, sizeof(stream), "s-%u", (unsigned)(i % 5));
		esdb_new_event ev = make_event(id, i, "t", "payload");
		REQUIRE_OK(esdb_stream_append(s, stream, strlen(stream),
		                              ESDB_EXPECT_ANY, &ev, 1, NULL));
	}
}

static uint64_t event_count(esdb_store *s)
{
	esdb_store_stats st;
	REQUIRE_OK(esdb_store_get_stats(s, &st));
	return st.events;
}

/* A file in a fresh directory holding a copy of s. */
static int copy_to_file(esdb_store *s, char *path, size_t size)
{
	snprintf(path, size, "%s/copy.mdb", tmp_dir());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	REQUIRE_OK(esdb_store_copy(s, fd));
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	return fd;
}

typedef struct readers {
	esdb_store *s;
	volatile bool stop;
	uint64_t reads, bad;
} readers;

typedef struct page_check {
	uint64_t expect, n;
	bool ok;
} page_check;

static int check_gap_free(void *ctx, const esdb_event *ev)
{
	page_check *c = ctx;
	if (ev->position != c->expect++)
		c->ok = false;
	c->n++;
	return 0;
}

/* Read $all and a stream over and over: every read answers 0 with a
 * gap-free page from position 1 (of the store before or after). */
static void *read_loop(void *arg)
{
	readers *r = arg;
	while (!r->stop) {
		page_check c = {.expect = 1, .ok = true};
		int rc = esdb_all_read(r->s, 1, 1000, ESDB_DIRECTION_FORWARD,
		                       check_gap_free, &c, NULL);
		uint64_t version;
		int rc2 =
		    esdb_stream_get_info(r->s, "s-1", 3, &version, NULL, NULL);
		__atomic_add_fetch(&r->reads, 1, __ATOMIC_RELAXED);
		if (rc || rc2 || !c.ok || c.n == 0)
			__atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

typedef struct heard {
	pthread_mutex_t lock;
	uint64_t last_position, last_since, deliveries;
} heard;

static void listen(void *ctx, uint64_t member, uint64_t since,
                   const esdb_event *events, size_t n)
{
	heard *h = ctx;
	pthread_mutex_lock(&h->lock);
	h->last_position = events[n - 1].position;
	h->last_since = since;
	h->deliveries++;
	pthread_mutex_unlock(&h->lock);
}

TEST(restore_swaps_the_store_under_readers_and_subscribers)
{
	esdb_store *s = open_store(tmp_dir(), false);
	append_n(s, 1, 50);
	uint64_t copy_applied;
	REQUIRE_OK(esdb_store_get_applied_index(s, &copy_applied));
	char path[4200];
	int fd = copy_to_file(s, path, sizeof(path));
	append_n(s, 51, 30);
	CHECK_EQ(event_count(s), 80);

	heard h = {.deliveries = 0};
	pthread_mutex_init(&h.lock, NULL);
	REQUIRE_OK(esdb_emitter_set_deliver(s, listen, &h));
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 1, NULL));

	readers r = {.s = s};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, read_loop, &r) == 0);
	/* Let the readers get going before the swap. */
	while (__atomic_load_n(&r.reads, __ATOMIC_RELAXED) < 20)
		sched_yield();
	REQUIRE_OK(esdb_store_restore(s, fd));
	uint64_t before = __atomic_load_n(&r.reads, __ATOMIC_RELAXED);
	while (__atomic_load_n(&r.reads, __ATOMIC_RELAXED) < before + 20)
		sched_yield();
	r.stop = true;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(r.bad, 0);
	close(fd);

	/* Reads see the copy. */
	CHECK_EQ(event_count(s), 50);
	collected c = {0};
	REQUIRE_OK(read_all_pages(s, 0, collect_event, &c));
	CHECK_EQ(c.n, 50);
	CHECK_EQ(c.positions[49], 50);
	collected_free(&c);
	uint64_t version;
	REQUIRE_OK(esdb_stream_get_info(s, "s-1", 3, &version, NULL, NULL));
	CHECK_EQ(version, 10);
	uint64_t applied;
	REQUIRE_OK(esdb_store_get_applied_index(s, &applied));
	CHECK_EQ(applied, copy_applied);

	/* The emitter goes on from the copy: a join sees its last position,
	 * the next append is delivered at 51 and vouches from 51 only. */
	uint64_t last;
	REQUIRE_OK(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL, 0, 2, &last));
	CHECK_EQ(last, 50);
	append_n(s, 1000, 1);
	REQUIRE_OK(esdb_emitter_flush(s));
	pthread_mutex_lock(&h.lock);
	CHECK_EQ(h.last_position, 51);
	CHECK_EQ(h.last_since, 51);
	pthread_mutex_unlock(&h.lock);
	REQUIRE_OK(esdb_store_get_applied_index(s, &applied));
	CHECK(applied > copy_applied && applied < copy_applied + 3);

	/* and it all holds after a reopen */
	uint64_t problems = 1;
	REQUIRE_OK(esdb_store_verify(s, NULL, NULL, &problems));
	CHECK_EQ(problems, 0);
	esdb_store_close(s);
	pthread_mutex_destroy(&h.lock);
}

TEST(restore_refuses_what_is_not_a_copy_and_changes_nothing)
{
	const char *dir = tmp_dir();
	esdb_store *s = open_store(dir, false);
	append_n(s, 1, 3);
	char path[4200];
	snprintf(path, sizeof(path), "%s/junk", tmp_dir());
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	REQUIRE(fd >= 0);
	char junk[8192];
	memset(junk, 'x', sizeof(junk));
	REQUIRE(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	CHECK_RC(esdb_store_restore(s, fd), ESDB_EFOREIGN);
	close(fd);
	/* an empty input is no copy either */
	fd = open(path, O_RDWR | O_TRUNC);
	REQUIRE(fd >= 0);
	CHECK_RC(esdb_store_restore(s, fd), ESDB_EFOREIGN);
	close(fd);
	CHECK_EQ(event_count(s), 3);
	append_n(s, 4, 1);
	CHECK_EQ(event_count(s), 4);
	char leftover[4200];
	snprintf(leftover, sizeof(leftover), "%s/restore.mdb", dir);
	CHECK(access(leftover, F_OK) != 0);

	CHECK_RC(esdb_store_restore(s, -1), ESDB_EINVAL);
	CHECK_RC(esdb_store_copy(NULL, 1), ESDB_EINVAL);
	esdb_store_close(s);

	/* read-only stores copy out but take nothing in */
	esdb_store *ro = new_store();
	REQUIRE_OK(esdb_store_set_readonly(ro, true));
	REQUIRE_OK(esdb_store_open(ro, dir));
	fd = copy_to_file(ro, path, sizeof(path));
	CHECK_RC(esdb_store_restore(ro, fd), EROFS);
	close(fd);
	esdb_store_close(ro);
}

/* A copy restored into another store, through a pipe, as a replica that
 * lags would receive it. */
typedef struct pipe_copy {
	esdb_store *s;
	int fd;
	int rc;
} pipe_copy;

static void *copy_into_pipe(void *arg)
{
	pipe_copy *p = arg;
	p->rc = esdb_store_copy(p->s, p->fd);
	close(p->fd);
	return NULL;
}

TEST(a_copy_travels_through_a_pipe_to_another_store)
{
	esdb_store *a = open_store(tmp_dir(), false);
	esdb_store *b = open_store(tmp_dir(), false);
	append_n(a, 1, 20);
	append_n(b, 100, 3);
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	pipe_copy p = {.s = a, .fd = fds[1]};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, copy_into_pipe, &p) == 0);
	int rc = esdb_store_restore(b, fds[0]);
	pthread_join(t, NULL);
	close(fds[0]);
	REQUIRE_OK(p.rc);
	REQUIRE_OK(rc);
	CHECK_EQ(event_count(b), 20);
	uint64_t ia, ib;
	REQUIRE_OK(esdb_store_get_applied_index(a, &ia));
	REQUIRE_OK(esdb_store_get_applied_index(b, &ib));
	CHECK_EQ(ia, ib);
	append_n(b, 21, 1);
	CHECK_EQ(event_count(b), 21);
	esdb_store_close(a);
	esdb_store_close(b);
}

/* A copy's meta pages have transaction ids 0 (empty) and 1. When another
 * process has the store open (the CLI reading beside the VM), LMDB keeps
 * the lock table's transaction count across the reopen and picks the
 * meta page by its parity: half the time the restored store read as
 * empty, and the next append wrote over the copy (5 events restored, 1
 * left). A restore must refuse while another process has the store open,
 * and leave the store as it was. */
TEST(restore_refuses_while_another_process_has_the_store_open)
{
	const char *dir = tmp_dir();
	int start[2], ready[2], done[2];
	REQUIRE(pipe(start) == 0 && pipe(ready) == 0 && pipe(done) == 0);
	pid_t pid = fork(); /* before this process opens the store */
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char c;
		if (read(start[0], &c, 1) != 1)
			_exit(1);
		esdb_store *r;
		c = esdb_store_create(&r) || esdb_store_set_readonly(r, true) ||
		            esdb_store_open(r, dir)
		        ? 'x'
		        : 'o';
		if (write(ready[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	esdb_store *src = open_store(tmp_dir(), false);
	append_n(src, 1, 5);
	char path[4200];
	int fd = copy_to_file(src, path, sizeof(path));
	esdb_store_close(src);

	esdb_store *s = open_store(dir, false);
	/* both parities of the transaction count */
	for (int round = 0; round < 2; round++) {
		append_n(s, 100 + (uint64_t)round * 20, 20 + (uint64_t)round);
		if (round == 0) {
			char c = 's';
			REQUIRE(write(start[1], &c, 1) == 1);
			REQUIRE(read(ready[0], &c, 1) == 1 && c == 'o');
		}
		uint64_t before = event_count(s);
		REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
		CHECK_RC(esdb_store_restore(s, fd), ESDB_ELOCKED);
		CHECK_EQ(event_count(s), before);
	}
	REQUIRE(write(done[1], "d", 1) == 1);
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* alone again, the restore goes through */
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	REQUIRE_OK(esdb_store_restore(s, fd));
	CHECK_EQ(event_count(s), 5);
	append_n(s, 500, 1);
	CHECK_EQ(event_count(s), 6);
	esdb_store_close(s);
	close(fd);
}
