/* test_cnode_term_check.c: the C node's term validator
 * (c_src/cnode/term_check.c) on well-formed terms ei encodes, hand-made
 * lies (lengths, arities, nesting) and mutations. Whenever it accepts,
 * ei must skip the term to the same end; every input sits in a buffer of
 * its exact size, so a read past it shows under ASan and valgrind.
 * ESDB_CNODE_TERM_FUZZ sets the mutation count. */
#include "harness.h"

#include "term_check.h"

#include <ei.h>

static const tc_limits plain = TC_LIMITS_DEFAULT;

/* A copy of x's bytes in a malloc'ed buffer of exactly that size. */
static uint8_t *exact(const ei_x_buff *x, size_t *len)
{
	uint8_t *b = malloc((size_t)x->index);
	REQUIRE(b);
	memcpy(b, x->buff, (size_t)x->index);
	*len = (size_t)x->index;
	return b;
}

static int check_whole(const uint8_t *b, size_t len, const tc_limits *l)
{
	size_t pos = 0;
	return tc_check_versioned(b, len, &pos, l, 1);
}

/* A request as a BEAM node sends it, {call, Pid, Ref, {append, ...}},
 * with a fifth element holding a map, a negative integer and a float. */
static void encode_request(ei_x_buff *x)
{
	erlang_pid pid = {.num = 80, .serial = 0, .creation = 0xabcdef01};
	erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 0xabcdef01};
	strcpy(pid.node, "client@vm");
	strcpy(ref.node, "client@vm");
	REQUIRE(ei_x_new_with_version(x) == 0);
	ei_x_encode_tuple_header(x, 5);
	ei_x_encode_atom(x, "call");
	ei_x_encode_pid(x, &pid);
	ei_x_encode_ref(x, &ref);
	ei_x_encode_tuple_header(x, 4);
	ei_x_encode_atom(x, "append");
	ei_x_encode_binary(x, "stream-1", 8);
	ei_x_encode_atom(x, "any");
	ei_x_encode_list_header(x, 1);
	ei_x_encode_tuple_header(x, 6);
	ei_x_encode_binary(x, "0123456789abcdef", 16);
	ei_x_encode_binary(x, "Type", 4);
	ei_x_encode_binary(x, "data", 4);
	ei_x_encode_binary(x, "", 0);
	ei_x_encode_atom(x, "nil");
	ei_x_encode_atom(x, "nil");
	ei_x_encode_empty_list(x);
	ei_x_encode_map_header(x, 1);
	ei_x_encode_long(x, -5);
	ei_x_encode_double(x, 2.5);
}

static const tc_limits with_pids = {TC_ALLOW_PID | TC_ALLOW_REF, 32, 64};

TEST(cnode_term_check_accepts_what_ei_encodes)
{
	ei_x_buff x;
	encode_request(&x);
	size_t len;
	uint8_t *b = exact(&x, &len);
	CHECK_EQ(check_whole(b, len, &with_pids), TC_OK);
	/* The request part alone, with no pids or refs allowed. */
	CHECK_EQ(check_whole(b, len, &plain), TC_PID);
	/* A big integer, a string, a utf8 atom. */
	ei_x_buff y;
	ei_x_new_with_version(&y);
	ei_x_encode_tuple_header(&y, 3);
	ei_x_encode_ulonglong(&y, UINT64_MAX);
	ei_x_encode_string(&y, "abc");
	ei_x_encode_atom_as(&y, "\xc3\xa9t\xc3\xa9", ERLANG_UTF8, ERLANG_UTF8);
	size_t ylen;
	uint8_t *yb = exact(&y, &ylen);
	CHECK_EQ(check_whole(yb, ylen, &plain), TC_OK);
	free(yb);
	free(b);
	ei_x_free(&y);
	ei_x_free(&x);
}

TEST(cnode_term_check_refuses_every_truncation_and_trailing_bytes)
{
	ei_x_buff x;
	encode_request(&x);
	size_t len;
	uint8_t *full = exact(&x, &len);
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *b = malloc(cut ? cut : 1);
		memcpy(b, full, cut);
		int rc = check_whole(b, cut, &with_pids);
		if (rc != TC_TRUNCATED)
			harness_fail(__FILE__, __LINE__, "cut at %zu: %s", cut,
			             tc_error_name(rc));
		free(b);
	}
	uint8_t *more = malloc(len + 1);
	memcpy(more, full, len);
	more[len] = 106;
	CHECK_EQ(check_whole(more, len + 1, &with_pids), TC_TRAILING);
	size_t pos = 0;
	CHECK_EQ(tc_check_versioned(more, len + 1, &pos, &with_pids, 0), TC_OK);
	CHECK_EQ(pos, len);
	free(more);
	free(full);
	ei_x_free(&x);
}

TEST(cnode_term_check_refuses_lying_lengths_and_code)
{
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t len;
		int want;
	} cases[] = {
	    {"tuple of arity 2^32-1",
	     {131, 105, 255, 255, 255, 255, 106},
	     7,
	     TC_TRUNCATED},
	    {"list of 2^32-1",
	     {131, 108, 255, 255, 255, 255, 106},
	     7,
	     TC_TRUNCATED},
	    {"map of 2^32-1 pairs",
	     {131, 116, 255, 255, 255, 255, 106},
	     7,
	     TC_TRUNCATED},
	    {"binary of 2 GiB", {131, 109, 128, 0, 0, 0, 'a'}, 7, TC_TRUNCATED},
	    {"string past the end", {131, 107, 0, 9, 'a'}, 5, TC_TRUNCATED},
	    {"bit binary of 0 bits",
	     {131, 77, 0, 0, 0, 1, 0, 7},
	     8,
	     TC_BAD_VALUE},
	    {"bignum of 2^32-1 bytes",
	     {131, 111, 255, 255, 255, 255, 0},
	     7,
	     TC_TOO_LONG},
	    {"bignum sign 2", {131, 110, 1, 2, 1}, 5, TC_BAD_VALUE},
	    {"export fun m:f/0",
	     {131, 113, 119, 1, 'm', 119, 1, 'f', 97, 0},
	     10,
	     TC_FUN},
	    {"new fun", {131, 112, 0, 0, 0, 9, 0, 0, 0, 0}, 10, TC_FUN},
	    {"port", {131, 102, 119, 1, 'n', 0, 0, 0, 1, 0}, 10, TC_PORT},
	    {"compressed", {131, 80, 0, 0, 0, 1, 120, 156}, 8, TC_COMPRESSED},
	    {"atom cache reference", {131, 82, 0}, 3, TC_FORBIDDEN},
	    {"pid where none belong",
	     {131, 88, 119, 1, 'n', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
	     16,
	     TC_PID},
	    {"no version byte", {104, 0}, 2, TC_BAD_TAG},
	    {"unknown tag", {131, 200}, 2, TC_BAD_TAG},
	    {"utf8 atom cut inside a character",
	     {131, 119, 1, 0xc3},
	     4,
	     TC_BAD_VALUE},
	    {"reference of 6 words",
	     {131, 90, 0, 6, 119, 1, 'n'},
	     7,
	     TC_TOO_LONG},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *b = malloc(cases[i].len);
		memcpy(b, cases[i].bytes, cases[i].len);
		/* Pids allowed, except in the case about them. */
		bool pid_case = strncmp(cases[i].what, "pid", 3) == 0;
		int rc = check_whole(b, cases[i].len,
		                     pid_case ? &plain : &with_pids);
		if (rc != cases[i].want)
			harness_fail(__FILE__, __LINE__, "%s: %s, want %s",
			             cases[i].what, tc_error_name(rc),
			             tc_error_name(cases[i].want));
		free(b);
	}
}

TEST(cnode_term_check_bounds_depth_and_atoms)
{
	/* [[[...]]] 40 deep: over the default 32, under 64. */
	ei_x_buff x;
	ei_x_new_with_version(&x);
	for (int i = 0; i < 40; i++)
		ei_x_encode_list_header(&x, 1);
	ei_x_encode_empty_list(&x);
	for (int i = 0; i < 40; i++)
		ei_x_encode_empty_list(&x);
	size_t len;
	uint8_t *b = exact(&x, &len);
	CHECK_EQ(check_whole(b, len, &plain), TC_TOO_DEEP);
	tc_limits deep = {0, 64, 64};
	CHECK_EQ(check_whole(b, len, &deep), TC_OK);
	free(b);
	ei_x_free(&x);
	/* A Latin-1 atom of 256 bytes (ei refuses to encode one). */
	uint8_t *a = malloc(4 + 256);
	a[0] = 131, a[1] = 100, a[2] = 1, a[3] = 0;
	memset(a + 4, 'a', 256);
	CHECK_EQ(check_whole(a, 4 + 256, &plain), TC_TOO_LONG);
	a[2] = 0, a[3] = 255; /* 255 bytes and one left over */
	CHECK_EQ(check_whole(a, 4 + 256, &plain), TC_TRAILING);
	free(a);
}

/* Mutated requests: never a read out of bounds; whatever is accepted,
 * ei decodes to the same end. */
TEST(cnode_term_check_survives_mutations_and_agrees_with_ei)
{
	const char *env = getenv("ESDB_CNODE_TERM_FUZZ");
	long runs = env ? atol(env) : 20000;
	uint64_t rng = test_seed() ^ 0xc0de;
	ei_x_buff x;
	encode_request(&x);
	size_t len0 = (size_t)x.index;
	long accepted = 0;
	for (long i = 0; i < runs; i++) {
		size_t n = len0;
		uint8_t *b = malloc(n);
		memcpy(b, x.buff, n);
		int edits = 1 + (int)(rng_next(&rng) % 4);
		for (int e = 0; e < edits; e++) {
			size_t at = rng_next(&rng) % n;
			switch (rng_next(&rng) % 4) {
			case 0:
				b[at] = (uint8_t)rng_next(&rng);
				break;
			case 1:
				b[at] = 0xff;
				break;
			case 2:
				b[at] = 0;
				break;
			default: /* cut */
				n = at + 1;
				break;
			}
		}
		uint8_t *c = malloc(n);
		memcpy(c, b, n);
		free(b);
		size_t pos = 0;
		if (tc_check_versioned(c, n, &pos, &with_pids, 0) == TC_OK) {
			accepted++;
			int idx = 1;
			if (ei_skip_term((const char *)c, &idx) != 0 ||
			    (size_t)idx != pos) {
				harness_fail(
				    __FILE__, __LINE__,
				    "run %ld: ei disagrees (%d vs %zu)", i, idx,
				    pos);
				for (size_t k = 0; k < n; k++)
					fprintf(stderr, "%d,", c[k]);
				fprintf(stderr, "\n");
			}
		}
		free(c);
	}
	CHECK(runs < 100 || accepted > 0);
	ei_x_free(&x);
}
