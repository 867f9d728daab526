/* test_crash.c: kill -9 during durable appends. A child appends batches
 * from several threads and reports each acknowledged batch over a pipe;
 * the parent kills it at random moments, reopens the store and checks
 * that every acknowledged event is there, no batch is partial and
 * positions are gap-free. ESDB_CRASH_KILLS sets the number of kills. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4

/* Written whole to a pipe: no padding, so no uninitialised bytes for
 * valgrind to report in the children. */
typedef struct ack {
	uint64_t batch, position, version, n, stream;
} ack;
_Static_assert(sizeof(ack) == 5 * sizeof(uint64_t), "ack has no padding");

typedef struct child_arg {
	esdb_store *s;
	int fd;
	uint64_t base;
} child_arg;

static void *child_writer(void *p)
{
	child_arg *a = p;
	uint64_t rng = a->base;
	for (uint64_t seq = 0;; seq++) {
		uint64_t batch = a->base + seq;
		uint64_t n = 1 + rng_next(&rng) % 8;
		uint32_t stream = (uint32_t)(rng_next(&rng) % 16);
		char name[16], data[8][48];
		uint8_t ids[8][16];
		esdb_new_event evs[8];
		snprintf(name, sizeof(name), "crash-%u", stream);
		for (uint64_t i = 0; i < n; i++) {
			snprintf(data[i], sizeof(data[i]), "%llu:%llu/%llu",
			         (unsigned long long)batch,
			         (unsigned long long)i, (unsigned long long)n);
			evs[i] =
			    make_event(ids[i], batch * 8 + i, "crash", data[i]);
		}
		esdb_result r;
		if (esdb_stream_append(a->s, name, strlen(name),
		                       ESDB_EXPECT_ANY, evs, n, &r))
			_exit(3);
		ack k = {batch, r.position, r.version, n, stream};
		if (write(a->fd, &k, sizeof(k)) != sizeof(k))
			_exit(4);
	}
	return NULL;
}

static _Noreturn void child_main(const char *dir, int fd, uint64_t round)
{
	esdb_store *s;
	if (esdb_store_create(&s) || esdb_store_open(s, dir))
		_exit(2);
	pthread_t th[THREADS];
	child_arg args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] =
		    (child_arg){s, fd, (round << 32) | ((uint64_t)i << 24)};
		pthread_create(&th[i], NULL, child_writer, &args[i]);
	}
	for (;;)
		pause();
}

/* Parse "batch:i/n" from event data. */
static bool parse_data(const char *d, uint64_t *batch, uint64_t *i, uint64_t *n)
{
	unsigned long long b, x, y;
	if (sscanf(d, "%llu:%llu/%llu", &b, &x, &y) != 3)
		return false;
	*batch = b;
	*i = x;
	*n = y;
	return true;
}

TEST(kill_9_loses_no_acknowledged_append)
{
	const char *env = getenv("ESDB_CRASH_KILLS");
	int kills = env ? atoi(env) : 20;
	const char *dir = tmp_dir();
	uint64_t rng = test_seed() ^ 0xC4A5;
	static ack acks[200000];
	size_t n_acks = 0;

	for (int round = 1; round <= kills; round++) {
		int fds[2];
		REQUIRE(pipe(fds) == 0);
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			child_main(dir, fds[1], (uint64_t)round);
		}
		close(fds[1]);
		/* wait for its first acknowledgement (slow under valgrind),
		 * let it run 5-60 ms more, then kill it mid-flight */
		ack k;
		ssize_t got = read(fds[0], &k, sizeof(k));
		REQUIRE(got == sizeof(k));
		acks[n_acks++] = k;
		struct timespec ts = {0, (long)(5 + rng_next(&rng) % 55) *
		                             1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		/* drain every report written before the kill */
		while ((got = read(fds[0], &k, sizeof(k))) == sizeof(k))
			if (n_acks < sizeof(acks) / sizeof(acks[0]))
				acks[n_acks++] = k;
		close(fds[0]);
		int status;
		waitpid(pid, &status, 0);
		REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}
	REQUIRE(n_acks > 0);

	esdb_store *s = open_store(dir, false);
	collected c = {0};
	REQUIRE_OK(read_all_pages(s, 1, collect_event, &c));
	/* gap-free, and every batch whole and contiguous */
	for (size_t i = 0; i < c.n; i++) {
		CHECK_EQ(c.positions[i], i + 1);
		uint64_t b, k, n;
		REQUIRE(parse_data(c.data[i], &b, &k, &n));
		if (k == 0) {
			REQUIRE(i + n <= c.n);
			for (uint64_t j = 1; j < n; j++) {
				uint64_t b2, k2, n2;
				REQUIRE(
				    parse_data(c.data[i + j], &b2, &k2, &n2));
				CHECK(b2 == b && k2 == j && n2 == n);
			}
		}
	}
	/* every acknowledged batch is where its ack said */
	size_t missing = 0;
	for (size_t a = 0; a < n_acks; a++) {
		ack *k = &acks[a];
		for (uint64_t j = 0; j < k->n; j++) {
			uint64_t pos = k->position + j, b, i, n;
			if (pos > c.n ||
			    !parse_data(c.data[pos - 1], &b, &i, &n) ||
			    b != k->batch || i != j ||
			    c.versions[pos - 1] != k->version - k->n + 1 + j) {
				missing++;
				break;
			}
		}
	}
	CHECK_EQ(missing, 0);
	uint64_t problems;
	CHECK_RC(esdb_store_verify(s, NULL, NULL, &problems), 0);
	printf("  %d kills, %zu acknowledged batches checked, %zu events\n",
	       kills, n_acks, c.n);
	collected_free(&c);
	esdb_store_close(s);
}
