/* esdb_bench.c: throughput and latency benchmarks of the ExESDB core. */

/*
 * Usage: esdb_bench [--quick] [--only NAME[,NAME...]] [DIR]
 *
 * Prints one JSON object per line on stdout, the first describing the
 * machine; progress and errors go to stderr. Every run works in a fresh
 * directory under DIR (default build/bench-data) and removes it when done.
 * ESDB_BENCH_SECONDS sets the length of time-bounded runs (default 3, or 1
 * with --quick); --quick also scales event counts down ten times.
 * Exit status: 0 when every selected run succeeded, 1 otherwise, 2 on a
 * usage error.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h> /* mdb_version() for the machine line, nothing else */

#include "dirs.h"
#include "esdb.h"
#include "json.h"

#define MiB (1024ull * 1024)
#define GiB (1024 * MiB)

#define PAGE_EVENTS    1000 /* events per read call */
#define BUILD_THREADS  2    /* one encodes while the other's batch commits */
#define CONCURRENT     64   /* threads of the concurrent runs */
#define RANDOM_STREAMS 10000
#define READ_PASSES    5

static const char *g_dir = "build/bench-data";
static bool g_quick;
static double g_seconds = 3.0;
static double g_raw_rate; /* fdatasyncs/s from raw_fdatasync; 0: not yet */
static volatile uint64_t g_sink; /* keeps read sums alive */
static atomic_bool g_stop;       /* ends the time-bounded workers */

static const char EV_TYPE[] = "bench_event";
static uint8_t g_data[100];
static uint8_t g_meta[32];

/* ---- Errors ------------------------------------------------------------ */

static void report_rc(const char *fn, const char *what, int rc)
{
	fprintf(stderr, "esdb_bench: %s: %s failed: %s (%s, %d)\n", fn, what,
	        esdb_error_describe(rc), esdb_error_name(rc), rc);
}

/* An esdb_* call: on failure say which and leave through `fail`. */
#define TRY(call)                                                              \
	do {                                                                   \
		int rc_ = (call);                                              \
		if (rc_ != 0) {                                                \
			report_rc(__func__, #call, rc_);                       \
			goto fail;                                             \
		}                                                              \
	} while (0)

/* A helper that has already reported its failure. */
#define CHECK(call)                                                            \
	do {                                                                   \
		if ((call) != 0)                                               \
			goto fail;                                             \
	} while (0)

static void die_oom(void)
{
	fprintf(stderr, "esdb_bench: out of memory\n");
	exit(1);
}

/* ---- Time, randomness, events ----------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread: a read's cost on a shared machine,
 * where the wall clock also counts the waits for a core. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s};

	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* splitmix64: cheap, and good enough for ids and stream picks. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rng_seed(uint64_t salt)
{
	uint64_t s = now_ns() ^ ((uint64_t)getpid() << 32) ^
	             (salt * 0xd1b54a32d192ed03ull);

	return rng_next(&s);
}

static void events_init(esdb_new_event *ev, size_t n, size_t data_len,
                        size_t meta_len)
{
	memset(ev, 0, n * sizeof *ev);
	for (size_t i = 0; i < n; i++) {
		ev[i].event_type = EV_TYPE;
		ev[i].event_type_len = sizeof EV_TYPE - 1;
		ev[i].data = g_data;
		ev[i].data_len = data_len;
		ev[i].metadata = meta_len ? g_meta : NULL;
		ev[i].metadata_len = meta_len;
	}
}

/* Every appended event gets a fresh random 16-byte id. */
static void events_new_ids(esdb_new_event *ev, size_t n, uint64_t *rng)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t w[2] = {rng_next(rng), rng_next(rng)};

		memcpy(ev[i].event_id, w, sizeof w);
	}
}

/* ---- Latency samples --------------------------------------------------- */

typedef struct lat {
	uint64_t *v; /* nanoseconds per operation */
	size_t n, cap;
} lat;

static void lat_push(lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4096;
		uint64_t *v = realloc(l->v, cap * sizeof *v);

		if (!v)
			die_oom();
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
}

static void lat_append(lat *dst, const lat *src)
{
	for (size_t i = 0; i < src->n; i++)
		lat_push(dst, src->v[i]);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void lat_sort(lat *l)
{
	qsort(l->v, l->n, sizeof *l->v, cmp_u64);
}

/* Nearest-rank percentile of a sorted sample, in microseconds. */
static double lat_pct_us(const lat *l, double p)
{
	double want = p * (double)l->n;
	size_t rank = (size_t)want;

	if (l->n == 0)
		return 0.0;
	if ((double)rank < want)
		rank++;
	if (rank == 0)
		rank = 1;
	return (double)l->v[rank - 1] / 1000.0;
}

static void lat_free(lat *l)
{
	free(l->v);
	*l = (lat){0};
}

/* ---- JSON lines -------------------------------------------------------- */

/* One result line: {"bench":NAME, KEY:VALUE...}, through the tools' one
 * JSON writer (c_src/json). */
static json_writer line;

static void line_begin(const char *bench)
{
	line = (json_writer){.out = stdout};
	json_open(&line, '{');
	json_key(&line, "bench");
	json_cstr(&line, bench);
}

static void line_str(const char *key, const char *val)
{
	json_key(&line, key);
	json_cstr(&line, val);
}

static void line_f(const char *key, double v, int prec)
{
	json_key(&line, key);
	json_double(&line, v, prec);
}

static void line_u(const char *key, uint64_t v)
{
	json_key(&line, key);
	json_u64(&line, v);
}

static void line_b(const char *key, bool v)
{
	json_key(&line, key);
	json_bool(&line, v);
}

static void line_end(void)
{
	json_close(&line, '}');
	putchar('\n');
	fflush(stdout);
}

/* ---- Directories and stores -------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
	if (remove(path) != 0)
		fprintf(stderr, "esdb_bench: remove %s: %s\n", path,
		        strerror(errno));
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Flush what earlier runs and bulk loads left dirty: background writeback
 * competing for the disk would otherwise slow the next timed fdatasyncs. */
static void settle(void)
{
	sync();
}

/* A fresh, empty directory path for one run (stale leftovers removed). */
static void run_path(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s.%ld", g_dir, name, (long)getpid());
	rm_rf(buf);
}

static int store_open(const char *path, esdb_durability d, uint64_t mapsize,
                      esdb_store **out)
{
	esdb_store *s = NULL;

	*out = NULL;
	TRY(esdb_store_create(&s));
	if (mapsize)
		TRY(esdb_store_set_mapsize(s, mapsize));
	TRY(esdb_store_set_durability(s, d));
	TRY(esdb_store_open(s, path));
	*out = s;
	return 0;
fail:
	esdb_store_close(s);
	return -1;
}

/* ---- Bulk loading ------------------------------------------------------ */

/* Fills a store fast (NOSYNC): `total` events in batches of `batch`, batch
 * k going to stream "<prefix>-<k % nstreams>", from BUILD_THREADS threads. */
typedef struct builder {
	esdb_store *s;
	const char *prefix;
	uint64_t total;
	uint32_t batch, nstreams;
	size_t data_len, meta_len;
	bool progress;
	atomic_uint_fast64_t next_batch, done;
	atomic_int failed;
} builder;

static void *build_worker(void *arg)
{
	builder *b = arg;
	esdb_new_event *ev = calloc(b->batch, sizeof *ev);
	uint64_t rng = rng_seed((uint64_t)(uintptr_t)&ev);
	uint64_t nbatches = (b->total + b->batch - 1) / b->batch;

	if (!ev)
		die_oom();
	events_init(ev, b->batch, b->data_len, b->meta_len);
	while (!atomic_load(&b->failed)) {
		uint64_t k = atomic_fetch_add(&b->next_batch, 1), left, done;
		size_t n;
		char sid[64];
		int len;
		esdb_result res;

		if (k >= nbatches)
			break;
		left = b->total - k * b->batch;
		n = left < b->batch ? (size_t)left : b->batch;
		len = snprintf(sid, sizeof sid, "%s-%u", b->prefix,
		               (unsigned)(k % b->nstreams));
		events_new_ids(ev, n, &rng);
		TRY(esdb_stream_append(b->s, sid, (size_t)len, ESDB_EXPECT_ANY,
		                       ev, n, &res));
		done = atomic_fetch_add(&b->done, n) + n;
		if (b->progress && done / 1000000 != (done - n) / 1000000)
			fprintf(stderr, "  built %llu / %llu events\n",
			        (unsigned long long)done,
			        (unsigned long long)b->total);
	}
	free(ev);
	return NULL;
fail:
	atomic_store(&b->failed, 1);
	free(ev);
	return NULL;
}

static int build_events(esdb_store *s, const char *prefix, uint64_t total,
                        uint32_t batch, uint32_t nstreams, size_t data_len,
                        size_t meta_len, bool progress)
{
	builder b = {.s = s,
	             .prefix = prefix,
	             .total = total,
	             .batch = batch,
	             .nstreams = nstreams,
	             .data_len = data_len,
	             .meta_len = meta_len,
	             .progress = progress};
	pthread_t tid[BUILD_THREADS];
	int started = 0;

	for (; started < BUILD_THREADS; started++) {
		if (pthread_create(&tid[started], NULL, build_worker, &b) !=
		    0) {
			fprintf(stderr, "esdb_bench: pthread_create failed\n");
			atomic_store(&b.failed, 1);
			break;
		}
	}
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return atomic_load(&b.failed) ? -1 : 0;
}

/* ---- Time-bounded appends ---------------------------------------------- */

/* Holds the workers until every thread exists, so they start together. */
typedef struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool open;
} gate;

static void gate_wait(gate *g)
{
	pthread_mutex_lock(&g->mu);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

enum pick {
	PICK_OWN,    /* the worker's own stream, exact expected versions */
	PICK_RANDOM, /* one of RANDOM_STREAMS at random, EXPECT_ANY */
};

typedef struct worker {
	esdb_store *s;
	gate *start;
	unsigned idx;
	size_t batch;
	enum pick pick;
	uint64_t events;
	lat lat; /* per append call */
	int failed;
} worker;

static void *append_worker(void *arg)
{
	worker *w = arg;
	esdb_new_event *ev = calloc(w->batch, sizeof *ev);
	uint64_t rng = rng_seed(w->idx + 1);
	uint64_t version = 0;
	char sid[32];
	int len = snprintf(sid, sizeof sid, "w-%u", w->idx);

	if (!ev)
		die_oom();
	events_init(ev, w->batch, sizeof g_data, sizeof g_meta);
	gate_wait(w->start);
	while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
		/* Versions are 1-based; NO_STREAM says "absent" plainly. */
		uint64_t expect = version ? version : ESDB_EXPECT_NO_STREAM;
		esdb_result res;
		uint64_t t0, t1;

		if (w->pick == PICK_RANDOM) {
			expect = ESDB_EXPECT_ANY;
			len = snprintf(
			    sid, sizeof sid, "r-%u",
			    (unsigned)(rng_next(&rng) % RANDOM_STREAMS));
		}
		events_new_ids(ev, w->batch, &rng);
		t0 = now_ns();
		TRY(esdb_stream_append(w->s, sid, (size_t)len, expect, ev,
		                       w->batch, &res));
		t1 = now_ns();
		lat_push(&w->lat, t1 - t0);
		w->events += w->batch;
		if (w->pick == PICK_OWN) {
			/* Cheap check that the core counts right. */
			if (res.version != version + w->batch) {
				fprintf(stderr,
				        "esdb_bench: %s: version %llu after "
				        "%llu + %zu\n",
				        sid, (unsigned long long)res.version,
				        (unsigned long long)version, w->batch);
				goto fail;
			}
			version = res.version;
		}
	}
	free(ev);
	return NULL;
fail:
	w->failed = 1;
	atomic_store(&g_stop, true);
	free(ev);
	return NULL;
}

typedef struct timed {
	uint64_t events, commits;
	double secs;
	lat lat; /* sorted */
} timed;

/* Runs `nthreads` append_workers for g_seconds; the clock stops when the
 * last in-flight append returns, so every counted event is inside it. */
static int append_timed(esdb_store *s, unsigned nthreads, size_t batch,
                        enum pick pick, timed *out)
{
	gate start = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	              false};
	worker *w = calloc(nthreads, sizeof *w);
	pthread_t *tid = calloc(nthreads, sizeof *tid);
	esdb_store_stats st0, st1;
	unsigned started = 0;
	uint64_t t0, t1;
	int rv = -1;

	*out = (timed){0};
	if (!w || !tid)
		die_oom();
	TRY(esdb_store_get_stats(s, &st0));
	atomic_store(&g_stop, false);
	for (; started < nthreads; started++) {
		w[started] = (worker){.s = s,
		                      .start = &start,
		                      .idx = started,
		                      .batch = batch,
		                      .pick = pick};
		if (pthread_create(&tid[started], NULL, append_worker,
		                   &w[started]) != 0) {
			fprintf(stderr, "esdb_bench: pthread_create failed\n");
			atomic_store(&g_stop, true);
			break;
		}
	}
	gate_open(&start);
	t0 = now_ns();
	if (started == nthreads)
		sleep_s(g_seconds);
	atomic_store(&g_stop, true);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	t1 = now_ns();
	if (started < nthreads)
		goto fail;
	for (unsigned i = 0; i < nthreads; i++) {
		if (w[i].failed)
			goto fail;
		out->events += w[i].events;
		lat_append(&out->lat, &w[i].lat);
	}
	TRY(esdb_store_get_stats(s, &st1));
	out->commits = st1.commits - st0.commits;
	out->secs = (double)(t1 - t0) / 1e9;
	lat_sort(&out->lat);
	rv = 0;
fail:
	for (unsigned i = 0; i < started; i++)
		lat_free(&w[i].lat);
	free(w);
	free(tid);
	return rv;
}

/* ---- Asynchronous clients ---------------------------------------------- */

/*
 * The BEAM binding does not park an OS thread per caller: a process
 * submits its append and the writer thread answers it with a message. These
 * clients do the same: each keeps one append in flight and submits its next
 * from the completion callback, so 64 clients are 64 concurrent writers
 * without 64 threads competing for 2 cores.
 */
typedef struct client {
	esdb_store *s;
	struct clients *all;
	unsigned idx;
	size_t batch;
	enum pick pick;
	uint64_t rng, version, events, t0;
	esdb_new_event *ev;
	lat lat;
	int failed;
} client;

typedef struct clients {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned in_flight;
} clients;

static void client_done(void *ctx, const esdb_result *res);

static void client_submit(client *c)
{
	char sid[32];
	int len = snprintf(sid, sizeof sid, "a-%u", c->idx);
	uint64_t expect = c->version ? c->version : ESDB_EXPECT_NO_STREAM;
	esdb_cmd cmd;
	int rc;

	if (c->pick == PICK_RANDOM) {
		expect = ESDB_EXPECT_ANY;
		len = snprintf(sid, sizeof sid, "r-%u",
		               (unsigned)(rng_next(&c->rng) % RANDOM_STREAMS));
	}
	events_new_ids(c->ev, c->batch, &c->rng);
	rc = esdb_cmd_stream_append(NULL, sid, (size_t)len, expect, c->ev,
	                            c->batch, &cmd);
	if (rc) {
		esdb_result res = {.rc = rc};
		client_done(c, &res);
		return;
	}
	c->t0 = now_ns();
	esdb_store_submit(c->s, &cmd, client_done, c);
}

/* Runs on the writer thread. */
static void client_done(void *ctx, const esdb_result *res)
{
	client *c = ctx;
	lat_push(&c->lat, now_ns() - c->t0);
	if (res->rc) {
		report_rc("esdb_store_submit", "append", res->rc);
		c->failed = 1;
	} else {
		c->events += c->batch;
		if (c->pick == PICK_OWN &&
		    res->version != c->version + c->batch)
			c->failed = 1;
		c->version = res->version;
	}
	if (!c->failed &&
	    !atomic_load_explicit(&g_stop, memory_order_relaxed)) {
		client_submit(c);
		return;
	}
	pthread_mutex_lock(&c->all->mu);
	if (--c->all->in_flight == 0)
		pthread_cond_signal(&c->all->cv);
	pthread_mutex_unlock(&c->all->mu);
}

static int append_async_timed(esdb_store *s, unsigned nclients, size_t batch,
                              enum pick pick, timed *out)
{
	clients all = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	               nclients};
	client *c = calloc(nclients, sizeof *c);
	esdb_store_stats st0, st1;
	uint64_t t0, t1;
	int rv = -1;

	*out = (timed){0};
	if (!c)
		die_oom();
	TRY(esdb_store_get_stats(s, &st0));
	atomic_store(&g_stop, false);
	for (unsigned i = 0; i < nclients; i++) {
		c[i] = (client){.s = s,
		                .all = &all,
		                .idx = i,
		                .batch = batch,
		                .pick = pick,
		                .rng = rng_seed(i + 101),
		                .ev = calloc(batch, sizeof(esdb_new_event))};
		if (!c[i].ev)
			die_oom();
		events_init(c[i].ev, batch, sizeof g_data, sizeof g_meta);
	}
	t0 = now_ns();
	for (unsigned i = 0; i < nclients; i++)
		client_submit(&c[i]);
	sleep_s(g_seconds);
	atomic_store(&g_stop, true);
	pthread_mutex_lock(&all.mu);
	while (all.in_flight > 0)
		pthread_cond_wait(&all.cv, &all.mu);
	pthread_mutex_unlock(&all.mu);
	t1 = now_ns();
	for (unsigned i = 0; i < nclients; i++) {
		if (c[i].failed)
			goto fail;
		out->events += c[i].events;
		lat_append(&out->lat, &c[i].lat);
	}
	TRY(esdb_store_get_stats(s, &st1));
	out->commits = st1.commits - st0.commits;
	out->secs = (double)(t1 - t0) / 1e9;
	lat_sort(&out->lat);
	rv = 0;
fail:
	for (unsigned i = 0; i < nclients; i++) {
		lat_free(&c[i].lat);
		free(c[i].ev);
	}
	free(c);
	return rv;
}

/* ---- Runs -------------------------------------------------------------- */

static int run_raw_fdatasync(void)
{
	static char block[4096];
	char dir[PATH_MAX], file[PATH_MAX + 16];
	lat l = {0};
	uint64_t t0, end, now;
	double secs;
	int fd = -1, rv = -1;

	memset(block, 0xa5, sizeof block);
	run_path(dir, sizeof dir, "raw_fdatasync");
	if (mkdir(dir, 0755) != 0) {
		fprintf(stderr, "esdb_bench: mkdir %s: %s\n", dir,
		        strerror(errno));
		return -1;
	}
	snprintf(file, sizeof file, "%s/append.dat", dir);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (fd < 0) {
		fprintf(stderr, "esdb_bench: open %s: %s\n", file,
		        strerror(errno));
		goto fail;
	}
	t0 = now = now_ns();
	end = t0 + (uint64_t)(g_seconds * 1e9);
	while (now < end) {
		uint64_t t = now;

		if (write(fd, block, sizeof block) != (ssize_t)sizeof block ||
		    fdatasync(fd) != 0) {
			fprintf(stderr, "esdb_bench: write+fdatasync: %s\n",
			        strerror(errno));
			goto fail;
		}
		now = now_ns();
		lat_push(&l, now - t);
	}
	secs = (double)(now - t0) / 1e9;
	lat_sort(&l);
	g_raw_rate = (double)l.n / secs;
	line_begin("raw_fdatasync");
	line_f("events_per_s", g_raw_rate, 1);
	line_f("p50_us", lat_pct_us(&l, 0.50), 1);
	line_f("p99_us", lat_pct_us(&l, 0.99), 1);
	line_u("n", l.n);
	line_u("block_bytes", sizeof block);
	line_end();
	rv = 0;
fail:
	if (fd >= 0)
		close(fd);
	lat_free(&l);
	rm_rf(dir);
	return rv;
}

/* The ratios compare against this run's disk, so measure it when a run
 * needs it and raw_fdatasync was not selected. */
static int ensure_raw(void)
{
	if (g_raw_rate > 0)
		return 0;
	fprintf(stderr, "[esdb_bench] raw_fdatasync (needed for ratios)\n");
	return run_raw_fdatasync();
}

/* Rates of the default durability's runs in this process, so the
 * weak mode's line beside each says what the default costs. */
static struct {
	const char *name;
	double eps;
} g_sync_rates[8];

static double sync_rate(const char *name)
{
	for (size_t i = 0; i < 8 && g_sync_rates[i].name; i++)
		if (strcmp(g_sync_rates[i].name, name) == 0)
			return g_sync_rates[i].eps;
	return 0;
}

static void note_sync_rate(const char *name, double eps)
{
	for (size_t i = 0; i < 8; i++)
		if (!g_sync_rates[i].name) {
			g_sync_rates[i].name = name;
			g_sync_rates[i].eps = eps;
			return;
		}
}

/* One durable time-bounded append run, with durability d (the default,
 * SYNC, or the opt-in NO_META_SYNC: then `sync_name` names the default's
 * run of the same shape, and the line carries sync_ratio, the default's
 * rate over this one's, when that ran first). When ratio_key is set, the
 * line carries events_per_s / (ratio_scale * raw fdatasync rate). */
static int mode_run(const char *name, esdb_durability d, const char *sync_name,
                    unsigned nthreads, size_t batch, enum pick pick, bool async,
                    const char *ratio_key, double ratio_scale)
{
	char dir[PATH_MAX];
	esdb_store *s = NULL;
	timed r = {0};
	double eps;
	int rv = -1;

	if (ratio_key)
		CHECK(ensure_raw());
	run_path(dir, sizeof dir, name);
	/* A roomy map keeps map growth out of the latencies. */
	CHECK(store_open(dir, d, 1 * GiB, &s));
	if (async)
		CHECK(append_async_timed(s, nthreads, batch, pick, &r));
	else
		CHECK(append_timed(s, nthreads, batch, pick, &r));
	eps = (double)r.events / r.secs;
	line_begin(name);
	line_f("events_per_s", eps, 1);
	line_f("p50_us", lat_pct_us(&r.lat, 0.50), 1);
	line_f("p99_us", lat_pct_us(&r.lat, 0.99), 1);
	if (ratio_key)
		line_f(ratio_key, eps / (ratio_scale * g_raw_rate), 3);
	line_str("durability",
	         d == ESDB_DURABILITY_SYNC ? "sync" : "no_meta_sync");
	if (d == ESDB_DURABILITY_SYNC)
		note_sync_rate(name, eps);
	else if (sync_name && sync_rate(sync_name) > 0)
		line_f("sync_ratio", sync_rate(sync_name) / eps, 3);
	line_str("writers", async ? "async" : "threads");
	line_u(async ? "clients" : "threads", nthreads);
	line_u("batch", batch);
	line_u("events", r.events);
	line_u("commits", r.commits);
	line_f("events_per_commit",
	       r.commits ? (double)r.events / (double)r.commits : 0.0, 1);
	line_f("seconds", r.secs, 3);
	line_end();
	rv = 0;
fail:
	esdb_store_close(s);
	lat_free(&r.lat);
	rm_rf(dir);
	return rv;
}

static int durable_run(const char *name, unsigned nthreads, size_t batch,
                       enum pick pick, bool async, const char *ratio_key,
                       double ratio_scale)
{
	return mode_run(name, ESDB_DURABILITY_SYNC, NULL, nthreads, batch, pick,
	                async, ratio_key, ratio_scale);
}

/* The opt-in one-flush mode beside the default (esdb.h): what the
 * default's power-loss durability costs stays visible. */
static int run_append_single_no_meta_sync(void)
{
	return mode_run("append_single_no_meta_sync",
	                ESDB_DURABILITY_NO_META_SYNC, "append_single_durable",
	                1, 1, PICK_OWN, false, "ratio_to_raw", 1.0);
}

static int run_append_concurrent64_no_meta_sync(void)
{
	return mode_run("append_concurrent64_no_meta_sync",
	                ESDB_DURABILITY_NO_META_SYNC,
	                "append_concurrent64_durable", CONCURRENT, 1, PICK_OWN,
	                true, NULL, 0);
}

static int run_append_batch100_one_stream_no_meta_sync(void)
{
	return mode_run("append_batch100_one_stream_no_meta_sync",
	                ESDB_DURABILITY_NO_META_SYNC,
	                "append_batch100_one_stream_durable", 1, 100, PICK_OWN,
	                false, NULL, 0);
}

static int run_append_single_durable(void)
{
	return durable_run("append_single_durable", 1, 1, PICK_OWN, false,
	                   "ratio_to_raw", 1.0);
}

/* 64 writers with one append in flight each: the core should group them.
 * As the NIF will drive it (asynchronous clients), and with 64 blocking
 * OS threads for comparison. */
static int run_append_concurrent64_durable(void)
{
	return durable_run("append_concurrent64_durable", CONCURRENT, 1,
	                   PICK_OWN, true, NULL, 0);
}

static int run_append_concurrent64_threads_durable(void)
{
	return durable_run("append_concurrent64_threads_durable", CONCURRENT, 1,
	                   PICK_OWN, false, NULL, 0);
}

/* Target: 70% of what one fdatasync per 100-event batch would allow. */
static int run_append_batch100_one_stream_durable(void)
{
	return durable_run("append_batch100_one_stream_durable", 1, 100,
	                   PICK_OWN, false, "ratio_to_target", 0.7 * 100);
}

static int run_append_concurrent64_batch100_durable(void)
{
	return durable_run("append_concurrent64_batch100_durable", CONCURRENT,
	                   100, PICK_OWN, true, NULL, 0);
}

/* Scattered writes: every batch touches a random stream's pages. */
static int run_append_batch100_10k_streams_durable(void)
{
	return durable_run("append_batch100_10k_streams_durable", CONCURRENT,
	                   100, PICK_RANDOM, true, NULL, 0);
}

/* Read callback: touches every field a consumer would and checks that
 * keys come gap-free and in order. */
typedef struct reader {
	bool all; /* key is the global position, else the stream version */
	uint64_t n, sum, next;
} reader;

static int read_cb(void *ctx, const esdb_event *ev)
{
	reader *r = ctx;
	uint64_t key = r->all ? ev->position : ev->stream_version;

	if (key != r->next) {
		fprintf(stderr, "esdb_bench: read key %llu, expected %llu\n",
		        (unsigned long long)key, (unsigned long long)r->next);
		return ESDB_ECORRUPT;
	}
	r->next = key + 1;
	r->n++;
	r->sum += ev->data_len + ev->metadata_len + ev->event_type_len +
	          ev->stream_id_len + ev->event_id[0] + ev->created_us +
	          (uint8_t)ev->stream_id[0] + (uint8_t)ev->event_type[0];
	if (ev->data_len)
		r->sum += ((const uint8_t *)ev->data)[ev->data_len - 1];
	return 0;
}

/* One pass over a stream (sid) or $all (sid NULL) in pages. */
static int read_pass(esdb_store *s, const char *sid, uint64_t *n_out)
{
	reader r = {.all = sid == NULL, .next = 1};
	esdb_read_next next = {.from = 1};

	do {
		if (sid)
			TRY(esdb_stream_read(
			    s, sid, strlen(sid), next.from, PAGE_EVENTS,
			    ESDB_DIRECTION_FORWARD, read_cb, &r, &next));
		else
			TRY(esdb_all_read(s, next.from, PAGE_EVENTS,
			                  ESDB_DIRECTION_FORWARD, read_cb, &r,
			                  &next));
	} while (!next.end);
	g_sink += r.sum;
	*n_out = r.n;
	return 0;
fail:
	return -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int read_run(const char *name, bool all)
{
	uint64_t total = g_quick ? 10000 : 100000;
	char dir[PATH_MAX];
	esdb_store *s = NULL;
	double rate[READ_PASSES], cpu[READ_PASSES];
	uint64_t n;
	int rv = -1;

	run_path(dir, sizeof dir, name);
	CHECK(store_open(dir, ESDB_DURABILITY_NOSYNC, 1 * GiB, &s));
	/* $all spreads over 100 streams, so it interleaves them. */
	CHECK(build_events(s, "read", total, 1000, all ? 100 : 1, sizeof g_data,
	                   sizeof g_meta, false));
	/* One untimed pass: the timed ones all see a warm page cache. */
	CHECK(read_pass(s, all ? NULL : "read-0", &n));
	for (int i = 0; i < READ_PASSES; i++) {
		uint64_t t0 = now_ns(), c0 = thread_cpu_ns(), t1;

		CHECK(read_pass(s, all ? NULL : "read-0", &n));
		t1 = now_ns();
		cpu[i] = (double)(thread_cpu_ns() - c0) / (double)n;
		if (n != total) {
			fprintf(stderr, "esdb_bench: %s read %llu of %llu\n",
			        name, (unsigned long long)n,
			        (unsigned long long)total);
			goto fail;
		}
		rate[i] = (double)n / ((double)(t1 - t0) / 1e9);
	}
	qsort(rate, READ_PASSES, sizeof *rate, cmp_double);
	qsort(cpu, READ_PASSES, sizeof *cpu, cmp_double);
	line_begin(name);
	line_f("events_per_s", rate[READ_PASSES / 2], 1);
	line_str("stat", "median");
	line_f("best_events_per_s", rate[READ_PASSES - 1], 1);
	line_f("cpu_ns_per_event", cpu[READ_PASSES / 2], 1);
	line_u("passes", READ_PASSES);
	line_u("events", total);
	line_u("page", PAGE_EVENTS);
	line_end();
	rv = 0;
fail:
	esdb_store_close(s);
	rm_rf(dir);
	return rv;
}

static int run_read_stream_forward(void)
{
	return read_run("read_stream_forward", false);
}

static int run_read_all_forward(void)
{
	return read_run("read_all_forward", true);
}

/* Open time of a big store: whatever open does scales with the store
 * here. The page cache is warm (the store was just written). */
static int run_reopen_10m(void)
{
	enum { REOPENS = 3 };
	uint64_t total = g_quick ? 1000000 : 10000000;
	char dir[PATH_MAX];
	esdb_store *s = NULL;
	esdb_store_stats st;
	double secs[REOPENS], first, build_s;
	uint64_t t0;
	int rv = -1;

	run_path(dir, sizeof dir, "reopen_10m");
	CHECK(store_open(dir, ESDB_DURABILITY_NOSYNC, 16 * GiB, &s));
	fprintf(stderr, "  building %llu events\n", (unsigned long long)total);
	t0 = now_ns();
	CHECK(build_events(s, "s", total, 1000, 1000, 20, 0, true));
	build_s = (double)(now_ns() - t0) / 1e9;
	esdb_store_close(s);
	s = NULL;
	settle();
	for (int i = 0; i < REOPENS; i++) {
		t0 = now_ns();
		TRY(esdb_store_create(&s));
		TRY(esdb_store_open(s, dir));
		TRY(esdb_store_get_stats(s, &st));
		esdb_store_close(s);
		s = NULL;
		secs[i] = (double)(now_ns() - t0) / 1e9;
		if (st.events != total) {
			fprintf(stderr,
			        "esdb_bench: reopened with %llu events\n",
			        (unsigned long long)st.events);
			goto fail;
		}
	}
	first = secs[0];
	qsort(secs, REOPENS, sizeof *secs, cmp_double);
	line_begin("reopen_10m");
	line_f("seconds", secs[REOPENS / 2], 4);
	line_str("stat", "median");
	line_f("first_seconds", first, 4);
	line_u("events", st.events);
	line_u("streams", st.streams);
	line_u("bytes_used", st.bytes_used);
	line_f("build_events_per_s", (double)total / build_s, 1);
	line_end();
	rv = 0;
fail:
	esdb_store_close(s);
	rm_rf(dir);
	return rv;
}

/* One timed durable single-event append to `sid`, exact expected version. */
static int latency_append(esdb_store *s, const char *sid, uint64_t *version,
                          esdb_new_event *ev, uint64_t *rng, lat *l)
{
	esdb_result res;
	uint64_t t0;

	events_new_ids(ev, 1, rng);
	t0 = now_ns();
	TRY(esdb_stream_append(s, sid, strlen(sid),
	                       *version ? *version : ESDB_EXPECT_NO_STREAM, ev,
	                       1, &res));
	if (l)
		lat_push(l, now_ns() - t0);
	*version = res.version;
	return 0;
fail:
	return -1;
}

/* Does appending cost more at the end of a long stream? The two streams
 * alternate, first one then the other leading, so drift and ordering
 * effects hit both alike. */
static int run_append_latency(void)
{
	uint64_t long_n = g_quick ? 100000 : 1000000;
	size_t n = g_quick ? 200 : 2000;
	const char *short_sid = "short", *long_sid = "long-0";
	char dir[PATH_MAX];
	esdb_store *s = NULL;
	esdb_new_event ev;
	lat ls = {0}, ll = {0};
	uint64_t vs = 0, vl = 0, vs0, vl0, rng = rng_seed(7);
	double p50s;
	int rv = -1;

	events_init(&ev, 1, sizeof g_data, sizeof g_meta);
	run_path(dir, sizeof dir, "append_latency");
	CHECK(store_open(dir, ESDB_DURABILITY_NOSYNC, 4 * GiB, &s));
	fprintf(stderr, "  building a %llu-event stream\n",
	        (unsigned long long)long_n);
	CHECK(build_events(s, "long", long_n, 1000, 1, 20, 0, true));
	esdb_store_close(s);
	s = NULL;
	settle();
	CHECK(store_open(dir, ESDB_DURABILITY_SYNC, 4 * GiB, &s));
	TRY(esdb_stream_get_info(s, long_sid, strlen(long_sid), &vl, NULL,
	                         NULL));
	if (vl != long_n) {
		fprintf(stderr, "esdb_bench: %s at version %llu\n", long_sid,
		        (unsigned long long)vl);
		goto fail;
	}
	/* Warm-up: create the short stream and touch both paths. */
	for (int i = 0; i < 5; i++) {
		CHECK(latency_append(s, short_sid, &vs, &ev, &rng, NULL));
		CHECK(latency_append(s, long_sid, &vl, &ev, &rng, NULL));
	}
	vs0 = vs;
	vl0 = vl;
	for (size_t i = 0; i < n; i++) {
		bool short_first = (i & 1) == 0;

		for (int k = 0; k < 2; k++) {
			if ((k == 0) == short_first)
				CHECK(latency_append(s, short_sid, &vs, &ev,
				                     &rng, &ls));
			else
				CHECK(latency_append(s, long_sid, &vl, &ev,
				                     &rng, &ll));
		}
	}
	lat_sort(&ls);
	lat_sort(&ll);
	p50s = lat_pct_us(&ls, 0.50);
	line_begin("append_latency_v1");
	line_f("p50_us", p50s, 1);
	line_f("p99_us", lat_pct_us(&ls, 0.99), 1);
	line_u("n", ls.n);
	line_u("stream_version", vs0);
	line_end();
	line_begin("append_latency_v1m");
	line_f("p50_us", lat_pct_us(&ll, 0.50), 1);
	line_f("p99_us", lat_pct_us(&ll, 0.99), 1);
	line_f("ratio_p50", lat_pct_us(&ll, 0.50) / p50s, 3);
	line_u("n", ll.n);
	line_u("stream_version", vl0);
	line_end();
	rv = 0;
fail:
	esdb_store_close(s);
	lat_free(&ls);
	lat_free(&ll);
	rm_rf(dir);
	return rv;
}

/* ---- Fan-out ------------------------------------------------------------ */

static atomic_uint_fast64_t g_delivered;

static void count_delivered(void *ctx, uint64_t member, uint64_t since,
                            const esdb_event *evs, size_t n)
{
	atomic_fetch_add(&g_delivered, n);
}

/* 5,000-event appends (no flush: CPU only), answered before their fan-out:
 * the applying thread only copies the commit into the emitter's queue.
 * Median time to the answer with no member and with 100 members of $all
 * (a counting delivery), in the same run; all_delivered: append call to
 * the fan-out done. */
static int run_append_fanout_100(void)
{
	const size_t batch = 5000, members = 100;
	const int rounds = g_quick ? 5 : 21;
	char dir[PATH_MAX];
	esdb_store *s = NULL;
	esdb_new_event *ev = calloc(batch, sizeof *ev);
	lat alone = {0}, with = {0}, all = {0};
	uint64_t rng = rng_seed(7);
	int rv = -1;

	if (!ev)
		die_oom();
	run_path(dir, sizeof dir, "append_fanout_100");
	if (store_open(dir, ESDB_DURABILITY_NOSYNC, 0, &s))
		goto fail;
	events_init(ev, batch, sizeof g_data, sizeof g_meta);
	TRY(esdb_emitter_set_deliver(s, count_delivered, NULL));
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			for (uint64_t m = 1; m <= members; m++)
				TRY(esdb_emitter_join(s, ESDB_TOPIC_ALL, NULL,
				                      0, m, NULL));
		for (int r = 0; r < rounds; r++) {
			events_new_ids(ev, batch, &rng);
			uint64_t t0 = now_ns();
			TRY(esdb_stream_append(s, "f", 1, ESDB_EXPECT_ANY, ev,
			                       batch, NULL));
			uint64_t t1 = now_ns();
			TRY(esdb_emitter_flush(s));
			lat_push(pass ? &with : &alone, t1 - t0);
			if (pass)
				lat_push(&all, now_ns() - t0);
		}
	}
	if (atomic_load(&g_delivered) != members * batch * (uint64_t)rounds) {
		fprintf(stderr, "append_fanout_100: %llu events delivered\n",
		        (unsigned long long)atomic_load(&g_delivered));
		goto fail;
	}
	lat_sort(&alone);
	lat_sort(&with);
	lat_sort(&all);
	line_begin("append_fanout_100");
	line_f("ack_p50_us", lat_pct_us(&with, 0.50), 1);
	line_f("ack_alone_p50_us", lat_pct_us(&alone, 0.50), 1);
	line_f("ack_ratio", lat_pct_us(&with, 0.50) / lat_pct_us(&alone, 0.50),
	       3);
	line_f("target_ack_ratio", 1.2, 1);
	line_f("all_delivered_p50_us", lat_pct_us(&all, 0.50), 1);
	line_u("members", members);
	line_u("batch", batch);
	line_u("rounds", (uint64_t)rounds);
	line_str("durability", "nosync");
	line_end();
	rv = 0;
fail:
	esdb_store_close(s);
	rm_rf(dir);
	lat_free(&alone);
	lat_free(&with);
	lat_free(&all);
	free(ev);
	return rv;
}

/* One timed apply of a one-event :any append to sid, marked as a retry
 * or not; the result in *res. */
static int retry_apply(esdb_store *s, const char *sid, esdb_new_event *ev,
                       bool marked, lat *l, esdb_result *res)
{
	esdb_cmd cmd;
	uint64_t t0;
	int rc;

	TRY(esdb_cmd_stream_append(NULL, sid, strlen(sid), ESDB_EXPECT_ANY, ev,
	                           1, &cmd));
	rc = marked ? esdb_cmd_mark_retry(&cmd) : 0;
	t0 = now_ns();
	if (!rc)
		rc = esdb_store_apply(s, ESDB_INDEX_NEXT, &cmd, 1, res);
	lat_push(l, now_ns() - t0);
	free(cmd.buf);
	TRY(rc ? rc : res->rc);
	return 0;
fail:
	return -1;
}

/* What a marked retry (esdb_cmd_mark_retry) costs beside an unmarked
 * :any append, one event each through esdb_store_apply on a stream longer
 * than the window (nosync: the look, not the flush). miss: marked, never
 * applied before, the worst case (the whole window read, then written);
 * found: the original at the window's oldest version (the window read,
 * nothing written). Unmarked appends do no look. */
static int run_append_retry_window(void)
{
	size_t n = g_quick ? 200 : 2000, rounds = g_quick ? 20 : 100;
	const char *sid = "s-0";
	char dir[PATH_MAX];
	esdb_store *s = NULL;
	esdb_new_event ev;
	esdb_result res;
	lat plain = {0}, miss = {0}, found = {0};
	uint64_t rng = rng_seed(11);
	int rv = -1;

	events_init(&ev, 1, 20, 0);
	run_path(dir, sizeof dir, "append_retry_window");
	CHECK(store_open(dir, ESDB_DURABILITY_NOSYNC, 4 * GiB, &s));
	CHECK(build_events(s, "s", 10000, 1000, 1, 20, 0, false));
	for (size_t i = 0; i < n; i++) {
		events_new_ids(&ev, 1, &rng);
		CHECK(retry_apply(s, sid, &ev, false, &plain, &res));
		events_new_ids(&ev, 1, &rng);
		CHECK(retry_apply(s, sid, &ev, true, &miss, &res));
	}
	for (size_t i = 0; i < rounds; i++) {
		lat skip = {0};
		esdb_new_event orig;
		uint64_t version;

		events_init(&orig, 1, 20, 0);
		events_new_ids(&orig, 1, &rng);
		CHECK(retry_apply(s, sid, &orig, false, &skip, &res));
		version = res.version;
		for (size_t k = 0; k + 1 < ESDB_RETRY_WINDOW; k++) {
			events_new_ids(&ev, 1, &rng);
			CHECK(retry_apply(s, sid, &ev, false, &skip, &res));
		}
		lat_free(&skip);
		CHECK(retry_apply(s, sid, &orig, true, &found, &res));
		if (res.version != version) {
			fprintf(stderr, "esdb_bench: retry not recognised\n");
			goto fail;
		}
	}
	lat_sort(&plain);
	lat_sort(&miss);
	lat_sort(&found);
	line_begin("append_retry_window");
	line_f("plain_p50_us", lat_pct_us(&plain, 0.50), 1);
	line_f("marked_miss_p50_us", lat_pct_us(&miss, 0.50), 1);
	line_f("marked_miss_p99_us", lat_pct_us(&miss, 0.99), 1);
	line_f("marked_found_oldest_p50_us", lat_pct_us(&found, 0.50), 1);
	line_u("window", ESDB_RETRY_WINDOW);
	line_u("appends", n);
	line_u("found_rounds", rounds);
	line_str("durability", "nosync");
	line_end();
	rv = 0;
fail:
	esdb_store_close(s);
	rm_rf(dir);
	lat_free(&plain);
	lat_free(&miss);
	lat_free(&found);
	return rv;
}

/* ---- Driver ------------------------------------------------------------ */

typedef struct run {
	const char *name;
	int (*fn)(void);
	const char *lines[2]; /* other names --only accepts for this run */
} run;

static const run RUNS[] = {
    {"raw_fdatasync", run_raw_fdatasync, {NULL}},
    {"append_single_durable", run_append_single_durable, {NULL}},
    {"append_single_no_meta_sync", run_append_single_no_meta_sync, {NULL}},
    {"append_concurrent64_durable", run_append_concurrent64_durable, {NULL}},
    {"append_concurrent64_no_meta_sync",
     run_append_concurrent64_no_meta_sync,
     {NULL}},
    {"append_concurrent64_threads_durable",
     run_append_concurrent64_threads_durable,
     {NULL}},
    {"append_batch100_one_stream_durable",
     run_append_batch100_one_stream_durable,
     {NULL}},
    {"append_batch100_one_stream_no_meta_sync",
     run_append_batch100_one_stream_no_meta_sync,
     {NULL}},
    {"append_concurrent64_batch100_durable",
     run_append_concurrent64_batch100_durable,
     {NULL}},
    {"append_batch100_10k_streams_durable",
     run_append_batch100_10k_streams_durable,
     {NULL}},
    {"read_stream_forward", run_read_stream_forward, {NULL}},
    {"read_all_forward", run_read_all_forward, {NULL}},
    {"reopen_10m", run_reopen_10m, {NULL}},
    {"append_latency",
     run_append_latency,
     {"append_latency_v1", "append_latency_v1m"}},
    {"append_fanout_100", run_append_fanout_100, {NULL}},
    {"append_retry_window", run_append_retry_window, {NULL}},
};
#define NRUNS (sizeof RUNS / sizeof RUNS[0])

static bool run_named(const run *r, const char *name, size_t len)
{
	if (strlen(r->name) == len && strncmp(r->name, name, len) == 0)
		return true;
	for (int i = 0; i < 2; i++)
		if (r->lines[i] && strlen(r->lines[i]) == len &&
		    strncmp(r->lines[i], name, len) == 0)
			return true;
	return false;
}

/* Marks the runs a comma-separated list names; false on an unknown one. */
static bool select_runs(const char *list, bool *sel)
{
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ",");
		bool found = false;

		for (size_t i = 0; i < NRUNS; i++)
			if (run_named(&RUNS[i], p, len))
				sel[i] = found = true;
		if (!found && len) {
			fprintf(stderr, "esdb_bench: unknown run '%.*s'\n",
			        (int)len, p);
			return false;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return true;
}

/* Filesystem type of `path`: the longest mount point containing it. */
static void fs_type(const char *path, char *out, size_t cap)
{
	char real[PATH_MAX], line[4096], dev[1024], mnt[PATH_MAX], type[256];
	size_t best = 0;
	FILE *f;

	snprintf(out, cap, "unknown");
	if (!realpath(path, real) || !(f = fopen("/proc/self/mounts", "r")))
		return;
	while (fgets(line, sizeof line, f)) {
		size_t m;

		if (sscanf(line, "%1023s %4095s %255s", dev, mnt, type) != 3)
			continue;
		m = strlen(mnt);
		if (strncmp(real, mnt, m) == 0 &&
		    (real[m] == '\0' || real[m] == '/' || m == 1) &&
		    m >= best) {
			best = m;
			snprintf(out, cap, "%s", type);
		}
	}
	fclose(f);
}

static void cpu_model(char *out, size_t cap)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, cap, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) != 0 || !colon)
			continue;
		colon += 1 + strspn(colon + 1, " \t");
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(out, cap, "%s", colon);
		break;
	}
	fclose(f);
}

static void machine_line(void)
{
	char cpu[256], fs[256];
	struct utsname u;
	int maj, min, patch;
	double load[1];

	cpu_model(cpu, sizeof cpu);
	fs_type(g_dir, fs, sizeof fs);
	if (uname(&u) != 0)
		memset(&u, 0, sizeof u);
	mdb_version(&maj, &min, &patch);
	line_begin("machine");
	line_u("nproc", (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
	line_str("cpu", cpu);
	line_str("kernel", u.release);
	line_str("arch", u.machine);
	line_str("fs", fs);
	line_str("dir", g_dir);
	char lmdb[40];
	snprintf(lmdb, sizeof lmdb, "%d.%d.%d", maj, min, patch);
	line_str("lmdb", lmdb);
	/* Other work on the machine shows up in every number. */
	if (getloadavg(load, 1) == 1)
		line_f("loadavg_1m", load[0], 2);
	line_b("quick", g_quick);
	line_f("seconds", g_seconds, 1);
	line_end();
}

static void usage(FILE *f)
{
	fprintf(f, "usage: esdb_bench [--quick] [--only NAME[,NAME...]] "
	           "[DIR]\nruns:");
	for (size_t i = 0; i < NRUNS; i++)
		fprintf(f, " %s", RUNS[i].name);
	fprintf(f, "\nenv: ESDB_BENCH_SECONDS (default 3, 1 with --quick)\n");
}

int main(int argc, char **argv)
{
	bool sel[NRUNS] = {false}, any = false;
	const char *only = NULL, *env = getenv("ESDB_BENCH_SECONDS");
	uint64_t rng = rng_seed(0);
	int failed = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			g_quick = true;
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			only = argv[++i];
		} else if (strncmp(argv[i], "--only=", 7) == 0) {
			only = argv[i] + 7;
		} else if (strcmp(argv[i], "-h") == 0 ||
		           strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] != '-') {
			g_dir = argv[i];
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (g_quick)
		g_seconds = 1.0;
	if (env && *env) {
		char *end;
		double v = strtod(env, &end);

		if (*end || !(v > 0)) {
			fprintf(stderr, "esdb_bench: bad ESDB_BENCH_SECONDS\n");
			return 2;
		}
		g_seconds = v;
	}
	if (only && !select_runs(only, sel))
		return 2;
	for (size_t i = 0; i < NRUNS; i++) {
		if (!only)
			sel[i] = true;
		any |= sel[i];
	}
	if (!any) {
		usage(stderr);
		return 2;
	}
	if ((rc = esdb__dir_make_all(g_dir, 0755)) != 0) {
		fprintf(stderr, "esdb_bench: mkdir %s: %s\n", g_dir,
		        esdb_error_describe(rc));
		return 1;
	}
	for (size_t i = 0; i < sizeof g_data; i++)
		g_data[i] = (uint8_t)rng_next(&rng);
	for (size_t i = 0; i < sizeof g_meta; i++)
		g_meta[i] = (uint8_t)rng_next(&rng);

	machine_line();
	for (size_t i = 0; i < NRUNS; i++) {
		uint64_t t0 = now_ns();

		if (!sel[i])
			continue;
		fprintf(stderr, "[esdb_bench] %s\n", RUNS[i].name);
		settle();
		if (RUNS[i].fn() != 0) {
			fprintf(stderr, "[esdb_bench] %s FAILED\n",
			        RUNS[i].name);
			failed++;
		} else {
			fprintf(stderr, "[esdb_bench] %s done in %.1f s\n",
			        RUNS[i].name, (double)(now_ns() - t0) / 1e9);
		}
	}
	return failed ? 1 : 0;
}
