/* test_powerloss.c: power loss after acknowledged appends. The child
 * (build/esdb_fault_child) appends under build/esdb_io_shim.so, which logs
 * the pre-image of every write to data.mdb since the last completed flush
 * and kills the child (SIGKILL) just before a chosen write or flush. The
 * parent then undoes a random subset of those unflushed writes, page by
 * page, as a power loss may, reopens the store and checks that every
 * acknowledged append is there, whole, and that the store verifies.
 * ESDB_POWERLOSS_SEEDS sets the rounds per durability mode (0 skips,
 * as `make valgrind` does). */
#include "fault.h"
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096

typedef struct ack {
	long batch;
	unsigned long long position, version;
	size_t n;
	unsigned stream;
} ack;

/* Undo a random subset of the logged writes, newest first, each page of
 * each write kept or lost by a coin. Returns the pages lost. */
static size_t lose_writes(const char *data, const char *undo, uint64_t *rng)
{
	size_t len, lost = 0;
	char *log = fault_slurp(undo, &len);
	REQUIRE(log != NULL);
	/* index the records; a torn last one was never followed by its
	 * write */
	size_t cap = 1024, n = 0, *at = malloc(cap * sizeof(*at));
	REQUIRE(at != NULL);
	for (size_t p = 0; p + 24 <= len;) {
		uint64_t h[3];
		memcpy(h, log + p, sizeof(h));
		size_t have = h[0] < h[2] ? (size_t)(h[2] - h[0]) : 0;
		if (have > h[1])
			have = (size_t)h[1];
		if (p + 24 + have > len)
			break;
		if (n == cap)
			REQUIRE((at = realloc(at, (cap *= 2) * sizeof(*at))));
		at[n++] = p;
		p += 24 + have;
	}
	int fd = open(data, O_WRONLY);
	REQUIRE(fd >= 0);
	static char zeros[PAGE];
	while (n-- > 0) {
		uint64_t h[3];
		memcpy(h, log + at[n], sizeof(h));
		const char *pre = log + at[n] + 24;
		uint64_t off = h[0], end = h[0] + h[1], old_size = h[2];
		for (uint64_t a = off; a < end;) {
			uint64_t b = (a / PAGE + 1) * PAGE;
			if (b > end)
				b = end;
			if (rng_next(rng) & 1) {
				lost++;
				for (uint64_t x = a; x < b;) {
					uint64_t y =
					    x < old_size && b > old_size
					        ? old_size
					        : b;
					const char *src = x < old_size
					                      ? pre + (x - off)
					                      : zeros;
					REQUIRE(
					    pwrite(fd, src, y - x, (off_t)x) ==
					    (ssize_t)(y - x));
					x = y;
				}
			}
			a = b;
		}
	}
	close(fd);
	free(at);
	free(log);
	return lost;
}

static size_t parse_acks(char *out, ack *acks, size_t cap)
{
	size_t n = 0;
	char *save, *line = strtok_r(out, "\n", &save);
	for (; line; line = strtok_r(NULL, "\n", &save)) {
		ack k;
		if (sscanf(line, "ack %ld %llu %zu %llu %u", &k.batch,
		           &k.position, &k.n, &k.version, &k.stream) == 5 &&
		    n < cap)
			acks[n++] = k;
		else
			CHECK(strncmp(line, "ack ", 4) == 0);
	}
	return n;
}

/* Whether batch `k` is in c whole, where its ack said. */
static bool acked_present(const collected *c, const ack *k)
{
	for (size_t j = 0; j < k->n; j++) {
		uint64_t pos = k->position + j;
		char want[64];
		snprintf(want, sizeof(want), "%ld:%zu/%zu", k->batch, j, k->n);
		if (pos > c->n || strcmp(c->data[pos - 1], want) != 0 ||
		    c->versions[pos - 1] != k->version - k->n + 1 + j)
			return false;
	}
	return true;
}

/* Every batch in the store is whole (no commit half there). */
static bool batches_whole(const collected *c)
{
	for (size_t i = 0; i < c->n;) {
		long b, b2;
		size_t k, n, k2, n2;
		if (sscanf(c->data[i], "%ld:%zu/%zu", &b, &k, &n) != 3 ||
		    k != 0 || i + n > c->n)
			return false;
		for (size_t j = 1; j < n; j++)
			if (sscanf(c->data[i + j], "%ld:%zu/%zu", &b2, &k2,
			           &n2) != 3 ||
			    b2 != b || k2 != j || n2 != n)
				return false;
		i += n;
	}
	return true;
}

typedef struct outcome {
	size_t rounds, acks, lost_acks, lost_pages, bad_open, bad_verify, torn,
	    most_lost_at_once;
} outcome;

static void one_round(const char *mode, uint64_t seed, outcome *o)
{
	char store[4200], undo[4300], data[4300], env_undo[4400], env_crash[64],
	    seed_s[32];
	uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
	snprintf(store, sizeof(store), "%s/pl-%s-%llu", tmp_dir(), mode,
	         (unsigned long long)seed);
	snprintf(undo, sizeof(undo), "%s.undo", store);
	snprintf(data, sizeof(data), "%s/data.mdb", store);
	snprintf(env_undo, sizeof(env_undo), "ESDB_SHIM_UNDO=%s", undo);
	snprintf(env_crash, sizeof(env_crash), "ESDB_SHIM_CRASH_AT=%llu",
	         (unsigned long long)(1 + rng_next(&rng) % 240));
	snprintf(seed_s, sizeof(seed_s), "%llu", (unsigned long long)seed);
	esdb_store_close(open_store(store, false));

	const char *env[] = {env_undo, env_crash, NULL};
	const char *args[] = {"append", store, mode, "100000", seed_s, NULL};
	char *out;
	int status = fault_run(env, args, &out);
	REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	static ack acks[100000];
	size_t n_acks = parse_acks(out, acks, 100000);
	free(out);
	o->lost_pages += lose_writes(data, undo, &rng);

	o->rounds++;
	o->acks += n_acks;
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	if (esdb_store_open(s, store)) {
		o->bad_open++;
		esdb_store_close(s);
		return;
	}
	collected c = {0};
	REQUIRE_OK(read_all_pages(s, 1, collect_event, &c));
	size_t lost = 0;
	for (size_t i = 0; i < n_acks; i++)
		if (!acked_present(&c, &acks[i]))
			lost++;
	o->lost_acks += lost;
	if (lost > o->most_lost_at_once)
		o->most_lost_at_once = lost;
	if (!batches_whole(&c))
		o->torn++;
	uint64_t problems;
	if (esdb_store_verify(s, NULL, NULL, &problems))
		o->bad_verify++;
	collected_free(&c);
	esdb_store_close(s);
	rm_rf(store);
	unlink(undo);
}

static long seeds(void)
{
	const char *v = getenv("ESDB_POWERLOSS_SEEDS");
	return v ? atol(v) : 100;
}

static outcome run_mode(const char *mode)
{
	outcome o = {0};
	uint64_t base = test_seed();
	for (long i = 0; i < seeds(); i++)
		one_round(mode, base + (uint64_t)i, &o);
	printf("  %s: %zu power losses, %zu acknowledged appends, %zu pages "
	       "lost, %zu acknowledged appends lost, %zu bad opens, %zu "
	       "failed verifies, %zu torn\n",
	       mode, o.rounds, o.acks, o.lost_pages, o.lost_acks, o.bad_open,
	       o.bad_verify, o.torn);
	return o;
}

TEST(power_loss_keeps_every_acknowledged_append)
{
	if (seeds() <= 0) {
		printf("  skipped (ESDB_POWERLOSS_SEEDS=0)\n");
		return;
	}
	REQUIRE(fault_built());
	outcome o = run_mode("default");
	CHECK(o.acks > 0 && o.lost_pages > 0);
	CHECK_EQ(o.lost_acks, 0);
	CHECK_EQ(o.bad_open, 0);
	CHECK_EQ(o.bad_verify, 0);
	CHECK_EQ(o.torn, 0);
}

/* The same check catches the weak mode losing acknowledged appends: the
 * test can fail. That mode never corrupts the store. */
TEST(power_loss_can_roll_back_the_last_commit_without_meta_sync)
{
	if (seeds() <= 0) {
		printf("  skipped (ESDB_POWERLOSS_SEEDS=0)\n");
		return;
	}
	REQUIRE(fault_built());
	outcome o = run_mode("no_meta_sync");
	/* about one round in three loses its last commit: 20 rounds all
	 * but never miss it */
	if (o.rounds >= 20)
		CHECK(o.lost_acks > 0);
	CHECK(o.most_lost_at_once <= 1); /* only ever the last one */
	CHECK_EQ(o.bad_open, 0);
	CHECK_EQ(o.bad_verify, 0);
	CHECK_EQ(o.torn, 0);
}
