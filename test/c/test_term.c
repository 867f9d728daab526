/* test_term.c: the CLI's Erlang term printer (c_src/cli/term.c) on
 * well-formed and mutated external term format. Every input sits in a
 * buffer of its exact size, so a read past it shows under ASan (our
 * checks) and valgrind (ei too). ESDB_TERM_FUZZ sets the mutation count. */
#include "harness.h"

#include "term.h"

#include <sys/wait.h>
#include <unistd.h>

static const uint8_t seeds[][40] = {
    /* {ok,42,<<"hi">>,[1,2],#{a => -1}} */
    {131, 104, 5,   119, 2, 'o', 'k', 97,  42, 109, 0,   0,   0,
     2,   'h', 'i', 108, 0, 0,   0,   2,   97, 1,   97,  2,   106,
     116, 0,   0,   0,   1, 119, 1,   'a', 98, 255, 255, 255, 255},
    /* [3.5, "abc", abc, 16#0102 bignum, <<1:3>>] */
    {131, 108, 0, 0, 0,   5,   70,  64,  12, 0, 0,   0,   0,   0,
     0,   107, 0, 3, 'a', 'b', 'c', 100, 0,  3, 'a', 'b', 'c', 110,
     2,   0,   2, 1, 77,  0,   0,   0,   1,  3, 32,  106},
};
static const size_t seed_len[] = {39, 40};

static char *text_of(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	REQUIRE(copy);
	memcpy(copy, p, n);
	char *t = term_text(copy, n);
	free(copy);
	return t;
}

TEST(term_text_prints_well_formed_terms)
{
	char *t = text_of(seeds[0], seed_len[0]);
	CHECK(t && !strcmp(t, "{ok, 42, #Bin<104,105>, [1, 2], #{a => -1}}"));
	free(t);
	t = text_of(seeds[1], seed_len[1]);
	CHECK(t != NULL);
	free(t);
	/* every strict prefix is refused */
	for (int s = 0; s < 2; s++)
		for (size_t n = 0; n < seed_len[s]; n++) {
			t = text_of(seeds[s], n);
			CHECK(t == NULL);
			free(t);
		}
}

TEST(term_text_survives_mutations)
{
	const char *env = getenv("ESDB_TERM_FUZZ");
	long runs = env ? atol(env) : 20000;
	uint64_t rng = test_seed() ^ 0x7e4a;
	uint8_t buf[64];
	long printed = 0;
	for (long i = 0; i < runs; i++) {
		int s = (int)(rng_next(&rng) % 2);
		size_t n = seed_len[s];
		memcpy(buf, seeds[s], n);
		int edits = 1 + (int)(rng_next(&rng) % 4);
		for (int e = 0; e < edits; e++) {
			size_t at = rng_next(&rng) % n;
			switch (rng_next(&rng) % 4) {
			case 0: /* any byte */
				buf[at] = (uint8_t)rng_next(&rng);
				break;
			case 1: /* a length byte pushed up */
				buf[at] = 0xff;
				break;
			case 2: /* cut */
				n = at + 1;
				break;
			default: /* a tag byte anywhere */
				buf[at] = (uint8_t)(97 + rng_next(&rng) % 23);
				break;
			}
		}
		char *t = text_of(buf, n);
		printed += t != NULL;
		free(t);
	}
	if (runs >= 1000)
		CHECK(printed > 0); /* some mutations stay terms */
}

/* A big integer of `bytes` bytes, all 0xff, as LARGE_BIG_EXT. */
static uint8_t *big_term(size_t bytes, size_t *len)
{
	uint8_t *b = malloc(bytes + 7);
	REQUIRE(b);
	b[0] = 131;
	b[1] = 111;
	b[2] = (uint8_t)(bytes >> 24);
	b[3] = (uint8_t)(bytes >> 16);
	b[4] = (uint8_t)(bytes >> 8);
	b[5] = (uint8_t)bytes;
	b[6] = 0;
	memset(b + 7, 0xff, bytes);
	*len = bytes + 7;
	return b;
}

/* ei prints a big integer in hex through a 2000-byte stack buffer with
 * no bound (ei_printterm.c xprintf): a valid term such as 1 bsl 80000
 * smashed the CLI's stack. Run in a child: the fault fails this test
 * instead of ending the suite. */
TEST(term_text_big_integers_ei_cannot_print_are_refused)
{
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		int bad = 0;
		size_t len;
		uint8_t *b = big_term(255, &len); /* the largest SMALL_BIG */
		char *t = term_text(b, len);
		bad |= !t || strlen(t) != 3 + 2 * 255 ||
		       strncmp(t, "16#FFFF", 7) != 0;
		free(t);
		free(b);
		size_t sizes[] = {1000, 10000, 100000};
		for (int i = 0; i < 3; i++) {
			b = big_term(sizes[i], &len);
			t = term_text(b, len);
			bad |= t != NULL; /* shown as bytes instead */
			free(t);
			free(b);
		}
		_exit(bad);
	}
	int status;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ei reads FLOAT_EXT's 31 bytes with sscanf, which stops only at a byte
 * that cannot continue the number: 31 digits and no NUL made it read on
 * past the term (into the bytes after it in the record, or past the end
 * of the mapped file). Such a float is refused (shown as bytes). */
TEST(term_text_float_ext_is_read_within_its_bytes)
{
	uint8_t buf[2 + 31 + 10];
	buf[0] = 131;
	buf[1] = 99;
	memset(buf + 2, '1', 31);
	memset(buf + 33, '9', 10); /* past the term */
	char *t = term_text(buf, 33);
	if (t) {
		double d = strtod(t, NULL);
		CHECK(d < 1e31); /* 31 digits at most */
	}
	free(t);
	/* a float as Erlang writes it ("%.20e", NUL padded) still prints */
	uint8_t ok[2 + 31] = {131, 99};
	memcpy(ok + 2, "1.50000000000000000000e+00", 26);
	t = text_of(ok, sizeof(ok));
	CHECK(t && !strcmp(t, "1.500000"));
	free(t);
}
