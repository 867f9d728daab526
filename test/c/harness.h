/* harness.h: a small test harness. Tests register themselves; the runner
 * prints each failure and closes with "N passed, N failed". */
#ifndef ESDB_HARNESS_H
#define ESDB_HARNESS_H

#include "esdb.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef struct test_case {
	const char *name;
	void (*fn)(void);
	struct test_case *next;
} test_case;

void harness_register(test_case *tc);
void harness_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Abandon the current test after a failed REQUIRE. In a process a test
 * forked, end that process with HARNESS_CHILD_ABORT instead: it must not
 * go on to run the rest of the suite beside the runner. */
_Noreturn void harness_abort(void);
#define HARNESS_CHILD_ABORT 98
/* True in the runner's own process, false in a child a test forked. */
bool harness_is_runner(void);
/* Whether the current test has failed a check so far. */
bool harness_test_failed(void);

#define TEST(fn_name)                                                          \
	static void fn_name(void);                                             \
	static test_case tc_##fn_name = {#fn_name, fn_name, NULL};             \
	__attribute__((constructor)) static void reg_##fn_name(void)           \
	{                                                                      \
		harness_register(&tc_##fn_name);                               \
	}                                                                      \
	static void fn_name(void)

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			harness_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);  \
	} while (0)

#define REQUIRE(cond)                                                          \
	do {                                                                   \
		if (!(cond)) {                                                 \
			harness_fail(__FILE__, __LINE__, "REQUIRE(%s)",        \
			             #cond);                                   \
			harness_abort();                                       \
		}                                                              \
	} while (0)

#define CHECK_EQ(a, b)                                                         \
	do {                                                                   \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);               \
		if (a_ != b_)                                                  \
			harness_fail(__FILE__, __LINE__,                       \
			             "%s == %s: %" PRIu64 " != %" PRIu64, #a,  \
			             #b, a_, b_);                              \
	} while (0)

/* Compare return codes and name both sides on failure. */
#define CHECK_RC(expr, want)                                                   \
	do {                                                                   \
		int got_ = (expr), want_ = (want);                             \
		if (got_ != want_)                                             \
			harness_fail(__FILE__, __LINE__,                       \
			             "%s: got %d (%s), want %d (%s)", #expr,   \
			             got_, esdb_error_describe(got_), want_,   \
			             esdb_error_describe(want_));              \
	} while (0)

#define REQUIRE_OK(expr)                                                       \
	do {                                                                   \
		int got_ = (expr);                                             \
		if (got_ != 0) {                                               \
			harness_fail(__FILE__, __LINE__, "%s: %d (%s)", #expr, \
			             got_, esdb_error_describe(got_));         \
			harness_abort();                                       \
		}                                                              \
	} while (0)

/* ---- shared helpers (helpers.c) --------------------------------------- */

/* A fresh directory under $TMPDIR (or /tmp); removed at exit. */
const char *tmp_dir(void);
void rm_rf(const char *path);

/* Open a store in dir; NOSYNC unless durable. REQUIREs success. The
 * store commits through the path ESDB_TEST_COMMIT_PATH names (the local
 * writer by default): the store suite runs on any commit path. */
esdb_store *open_store(const char *dir, bool durable);
/* An unopened store on that path, for tests that set options first. */
esdb_store *new_store(void);
/* The commit path open_store uses: "local" or "log". */
const char *test_commit_path(void);
/* commit_log.c: a log-shaped commit path with its own indexes. */
struct esdb_commit_path;
int test_commit_log(struct esdb_commit_path *cp);

/* An event with id derived from n, type and data given as strings. */
esdb_new_event make_event(uint8_t id[16], uint64_t n, const char *type,
                          const char *data);
void make_id(uint8_t id[16], uint64_t n);

/* Collect events read into an array (copying what the test needs). */
typedef struct collected {
	size_t n, cap;
	uint64_t *positions, *versions;
	char **streams, **types, **data;
	uint8_t (*ids)[16];
} collected;
int collect_event(void *ctx, const esdb_event *ev);
/* Every event of $all from position `from` on, page after page as the
 * continuation says (a page the byte budget cuts short is not the end). */
int read_all_pages(esdb_store *s, uint64_t from, esdb_event_fn fn, void *ctx);
void collected_free(collected *c);

/* A file's whole content (malloc'ed), and a file written with buf;
 * both REQUIRE success. */
uint8_t *slurp(const char *path, size_t *len);
void spill(const char *path, const void *buf, size_t len);

/* All len bytes read from / written to fd, retrying after EINTR; false
 * at end of file or on an error. For the pipes between a test and the
 * processes it forks. */
bool fd_read_all(int fd, void *buf, size_t len);
bool fd_write_all(int fd, const void *buf, size_t len);

/* A child process driven over a command pipe and a reply pipe (stdio
 * flushed first, fork REQUIREd). Returns 0 in the child, with *in the
 * command pipe's read end and *out the reply pipe's write end; in the
 * parent the child's pid, with *in the reply pipe's read end and *out
 * the command pipe's write end. The other ends are closed. */
pid_t fork_piped(int *in, int *out);

/* CLOCK_MONOTONIC in milliseconds, for bounded waits. */
uint64_t mono_ms(void);

/* A TCP port nobody listens on now, below the ephemeral range (REQUIREd). */
unsigned loopback_free_port(void);

/* Puts key -> value into the named database `db` of the closed store in
 * dir, bypassing the store (LMDB directly): crafted bad data for tests. */
void raw_put(const char *dir, const char *db, const void *key, size_t klen,
             const void *value, size_t vlen);

/* Rewrite a command's CRC after editing its bytes, so that only the
 * edit, not the checksum, is what a check sees. */
void cmd_reseal(esdb_cmd *c);

/* Run the operator CLI (priv/ex_esdb_ctl, or $ESDB_CTL) with `fmt` as
 * its shell words; capture its stdout and stderr (ctl) or its stdout
 * alone (ctl_stdout) into out, NUL-terminated, the rest read and dropped
 * so the CLI never sees SIGPIPE. Returns the exit status, -1 for a death
 * by signal. */
int ctl(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ctl_stdout(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Seed for randomized tests: ESDB_SEED or a fixed default. */
uint64_t test_seed(void);
uint64_t rng_next(uint64_t *state);

#endif
