/* helpers.c: temporary directories, stores, events and collectors. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include "bytes.h"
#include "commit.h"
#include "crc32c.h"

#include <arpa/inet.h>
#include <lmdb.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *dirs[4096];
static int ndirs;

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
	return remove(path);
}

void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
	/* a forked child leaves the runner's directories alone */
	if (getenv("ESDB_KEEP_TMP") || !harness_is_runner())
		return;
	for (int i = 0; i < ndirs; i++) {
		rm_rf(dirs[i]);
		free(dirs[i]);
	}
}

const char *tmp_dir(void)
{
	static bool registered;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s/esdb-test-XXXXXX", base);
	REQUIRE(mkdtemp(buf) != NULL);
	REQUIRE(ndirs < (int)(sizeof(dirs) / sizeof(dirs[0])));
	dirs[ndirs] = strdup(buf);
	if (!registered) {
		atexit(cleanup);
		registered = true;
	}
	return dirs[ndirs++];
}

const char *test_commit_path(void)
{
	const char *p = getenv("ESDB_TEST_COMMIT_PATH");
	return p && *p ? p : "local";
}

/* The commit path the store suite runs on: ESDB_TEST_COMMIT_PATH, "local"
 * (the writer, by default) or "log" (commit_log.c). */
static void set_commit_path(esdb_store *s)
{
	esdb_commit_path cp;
	const char *name = test_commit_path();
	if (strcmp(name, "local") == 0)
		return;
	REQUIRE(strcmp(name, "log") == 0);
	REQUIRE_OK(test_commit_log(&cp));
	REQUIRE_OK(esdb_store_set_commit_path(s, &cp));
}

esdb_store *new_store(void)
{
	esdb_store *s;
	REQUIRE_OK(esdb_store_create(&s));
	set_commit_path(s);
	return s;
}

esdb_store *open_store(const char *dir, bool durable)
{
	esdb_store *s = new_store();
	REQUIRE_OK(esdb_store_set_durability(
	    s, durable ? ESDB_DURABILITY_SYNC : ESDB_DURABILITY_NOSYNC));
	REQUIRE_OK(esdb_store_open(s, dir));
	return s;
}

void make_id(uint8_t id[16], uint64_t n)
{
	memset(id, 0xA5, 16);
	for (int i = 0; i < 8; i++)
		id[8 + i] = (uint8_t)(n >> (8 * i));
}

esdb_new_event make_event(uint8_t id[16], uint64_t n, const char *type,
                          const char *data)
{
	make_id(id, n);
	esdb_new_event ev = {0};
	memcpy(ev.event_id, id, 16);
	ev.event_type = type;
	ev.event_type_len = strlen(type);
	ev.data = data;
	ev.data_len = strlen(data);
	ev.metadata = "m";
	ev.metadata_len = 1;
	return ev;
}

static char *dup_n(const void *p, size_t n)
{
	char *s = malloc(n + 1);
	memcpy(s, p, n);
	s[n] = 0;
	return s;
}

int collect_event(void *ctx, const esdb_event *ev)
{
	collected *c = ctx;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->positions = realloc(c->positions, c->cap * 8);
		c->versions = realloc(c->versions, c->cap * 8);
		c->streams = realloc(c->streams, c->cap * sizeof(char *));
		c->types = realloc(c->types, c->cap * sizeof(char *));
		c->data = realloc(c->data, c->cap * sizeof(char *));
		c->ids = realloc(c->ids, c->cap * 16);
	}
	c->positions[c->n] = ev->position;
	c->versions[c->n] = ev->stream_version;
	c->streams[c->n] = dup_n(ev->stream_id, ev->stream_id_len);
	c->types[c->n] = dup_n(ev->event_type, ev->event_type_len);
	c->data[c->n] = dup_n(ev->data, ev->data_len);
	memcpy(c->ids[c->n], ev->event_id, 16);
	c->n++;
	return 0;
}

void collected_free(collected *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->streams[i]);
		free(c->types[i]);
		free(c->data[i]);
	}
	free(c->positions);
	free(c->versions);
	free(c->streams);
	free(c->types);
	free(c->data);
	free(c->ids);
	memset(c, 0, sizeof(*c));
}

uint64_t test_seed(void)
{
	const char *s = getenv("ESDB_SEED");
	return s ? strtoull(s, NULL, 0) : 20261126u;
}

/* splitmix64 */
uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

int read_all_pages(esdb_store *s, uint64_t from, esdb_event_fn fn, void *ctx)
{
	esdb_read_next next = {.from = from};
	int rc;
	do
		rc = esdb_all_read(s, next.from, 10000, ESDB_DIRECTION_FORWARD,
		                   fn, ctx, &next);
	while (rc == 0 && !next.end);
	return rc;
}

static int run_ctl(bool with_stderr, char *out, size_t cap, const char *fmt,
                   va_list ap)
{
	const char *bin =
	    getenv("ESDB_CTL") ? getenv("ESDB_CTL") : "priv/ex_esdb_ctl";
	char args[8192], cmd[8400];
	REQUIRE(vsnprintf(args, sizeof(args), fmt, ap) < (int)sizeof(args));
	snprintf(cmd, sizeof(cmd), "%s %s %s", bin, args,
	         with_stderr ? "2>&1" : "2>/dev/null");
	FILE *p = popen(cmd, "r");
	REQUIRE(p != NULL);
	size_t n = fread(out, 1, cap - 1, p);
	out[n] = 0;
	char sink[4096]; /* the rest, so the CLI never sees SIGPIPE */
	while (fread(sink, 1, sizeof(sink), p) > 0)
		;
	int status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int ctl(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = run_ctl(true, out, cap, fmt, ap);
	va_end(ap);
	return rc;
}

int ctl_stdout(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = run_ctl(false, out, cap, fmt, ap);
	va_end(ap);
	return rc;
}

void cmd_reseal(esdb_cmd *c)
{
	esdb_le32_put(c->buf + 8, esdb_crc32c(esdb_crc32c(0, c->buf, 8),
	                                      c->buf + 12, c->len - 12));
}

uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	REQUIRE(f != NULL);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	uint8_t *buf = malloc(*len ? *len : 1);
	REQUIRE(buf && fread(buf, 1, *len, f) == *len);
	fclose(f);
	return buf;
}

void spill(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	REQUIRE(f != NULL);
	REQUIRE(fwrite(buf, 1, len, f) == len);
	fclose(f);
}

static bool fd_io_all(int fd, void *buf, size_t len, bool reading)
{
	char *p = buf;
	while (len) {
		ssize_t n = reading ? read(fd, p, len) : write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

bool fd_read_all(int fd, void *buf, size_t len)
{
	return fd_io_all(fd, buf, len, true);
}

bool fd_write_all(int fd, const void *buf, size_t len)
{
	return fd_io_all(fd, (void *)buf, len, false);
}

pid_t fork_piped(int *in, int *out)
{
	int cmd[2], reply[2];
	REQUIRE(pipe(cmd) == 0 && pipe(reply) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(cmd[1]);
		close(reply[0]);
		*in = cmd[0];
		*out = reply[1];
	} else {
		close(cmd[0]);
		close(reply[1]);
		*in = reply[0];
		*out = cmd[1];
	}
	return pid;
}

uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The first port of the kernel's ephemeral range, 32768 if unknown. */
static unsigned ephemeral_low(void)
{
	unsigned low = 32768, high = 0;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		if (fscanf(f, "%u %u", &low, &high) != 2 || low < 11000)
			low = 32768;
		fclose(f);
	}
	return low;
}

/* A port free on every address now, below the ephemeral range: one the
 * OS picks (bind to 0) is ephemeral, and any outgoing connection may take
 * it as its source port before the test binds it. Each process walks the
 * range from its own random start, so it never repeats a port. */
unsigned loopback_free_port(void)
{
	enum { FIRST = 10000 };
	static unsigned next, span;
	if (!span) {
		span = ephemeral_low() - FIRST;
		/* random, not pid ^ time: test binaries started together
		 * had nearby starts and walked over each other's ports */
		unsigned seed;
		if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			seed = (unsigned)getpid() * 2654435761u ^
			       (unsigned)mono_ms();
		next = seed % span;
	}
	for (int tries = 0; tries < 2000; tries++) {
		unsigned port = FIRST + next++ % span;
		int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
		                        .sin_port = htons((uint16_t)port),
		                        .sin_addr.s_addr = htonl(INADDR_ANY)};
		REQUIRE(fd >= 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		         listen(fd, 1) == 0;
		close(fd);
		if (ok)
			return port;
	}
	REQUIRE(!"no free port below the ephemeral range");
	return 0;
}

void raw_put(const char *dir, const char *db, const void *key, size_t klen,
             const void *value, size_t vlen)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	REQUIRE_OK(mdb_env_create(&env));
	REQUIRE_OK(mdb_env_set_maxdbs(env, 16));
	REQUIRE_OK(mdb_env_set_mapsize(env, 64 << 20));
	REQUIRE_OK(mdb_env_open(env, dir, 0, 0600));
	REQUIRE_OK(mdb_txn_begin(env, NULL, 0, &txn));
	REQUIRE_OK(mdb_dbi_open(txn, db, 0, &dbi));
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)value};
	REQUIRE_OK(mdb_put(txn, dbi, &k, &v, 0));
	REQUIRE_OK(mdb_txn_commit(txn));
	mdb_env_close(env);
}
