/* test_cli_output.c: what the operator CLI prints: stats, JSON usage
 * errors, ids that are not UTF-8, and event data written as Erlang terms
 * (well-formed or crafted). Runs priv/ex_esdb_ctl (or $ESDB_CTL). */
#include "harness.h"

/* Append one event with data of the given encoding, then close. */
static void put_event(const char *dir, const char *stream, size_t len,
                      const char *type, const void *data, size_t data_len,
                      esdb_encoding enc)
{
	static uint64_t n;
	esdb_store *s = open_store(dir, false);
	uint8_t id[16];
	esdb_new_event ev = make_event(id, ++n, type, "");
	ev.data = data;
	ev.data_len = data_len;
	ev.data_encoding = enc;
	REQUIRE_OK(
	    esdb_stream_append(s, stream, len, ESDB_EXPECT_ANY, &ev, 1, NULL));
	esdb_store_close(s);
}

TEST(cli_stats_counts_the_stores_commits)
{
	const char *dir = tmp_dir();
	static char out[8192];
	for (int i = 0; i < 3; i++)
		CHECK_EQ(
		    ctl(out, sizeof(out),
		        "--store %s append s --type t --create < /dev/null",
		        dir),
		    0);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s stats", dir), 0);
	CHECK(strstr(out, "commits:     0") == NULL);
	unsigned long long txn = 0;
	char *at = strstr(out, "last_txn_id: ");
	CHECK(at && sscanf(at, "last_txn_id: %llu", &txn) == 1 && txn >= 3);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --json stats", dir), 0);
	at = strstr(out, "\"last_txn_id\":");
	CHECK(at && sscanf(at, "\"last_txn_id\":%llu", &txn) == 1 && txn >= 3);
}

TEST(cli_json_usage_errors_are_json_on_stdout)
{
	const char *dir = tmp_dir();
	static char out[8192];
	const char *cases[] = {
	    "--json --store %s read s --from 12x",
	    "--store %s frobnicate --json",
	    "--json --store %s append s",
	    "--json read s",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_EQ(ctl_stdout(out, sizeof(out), cases[i], dir), 2);
		CHECK(!strncmp(out, "{\"error\":{", 10));
		CHECK(strstr(out, "\"name\":\"usage\"") != NULL);
		CHECK(strstr(out, "\"message\":\"") != NULL);
		size_t n = strlen(out);
		CHECK(n > 2 && !strcmp(out + n - 2, "}\n"));
	}
	/* after "--" it is an argument, not the option */
	CHECK_EQ(ctl_stdout(out, sizeof(out), "--store %s frobnicate -- --json",
	                    dir),
	         2);
	CHECK_EQ(strlen(out), 0);
}

TEST(cli_json_gives_ids_that_are_not_utf8_exactly)
{
	const char *dir = tmp_dir();
	static char out[16384];
	put_event(dir,
	          "\xff\xfe"
	          "ab",
	          4, "t\xc3", "d", 1, ESDB_ENCODING_BYTES);
	put_event(dir, "ok-\xc3\xa9", 5, "t", "d", 1, ESDB_ENCODING_BYTES);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --json streams", dir), 0);
	/* text for reading, U+FFFD per bad byte; base64 for the bytes */
	CHECK(strstr(out, "\"id\":\"\\ufffd\\ufffdab\",\"id_base64\":"
	                  "\"//5hYg==\"") != NULL);
	CHECK(strstr(out, "\"id\":\"ok-\xc3\xa9\",\"version\"") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --json read-all", dir), 0);
	CHECK(strstr(out, "\"stream_base64\":\"//5hYg==\"") != NULL);
	CHECK(strstr(out, "\"type_base64\":\"dMM=\"") != NULL);
	CHECK(strstr(out, "\"stream\":\"ok-\xc3\xa9\",\"version\"") != NULL);
}

/* {ok,42,<<"hi">>,[1,2],#{a => -1}} in external term format */
static const uint8_t good_term[] = {
    131, 104, 5,   119, 2, 'o', 'k', 97,  42, 109, 0,   0,   0,
    2,   'h', 'i', 108, 0, 0,   0,   2,   97, 1,   97,  2,   106,
    116, 0,   0,   0,   1, 119, 1,   'a', 98, 255, 255, 255, 255,
};

TEST(cli_read_prints_erlang_terms_as_terms)
{
	const char *dir = tmp_dir();
	static char out[16384];
	put_event(dir, "s", 1, "t", good_term, sizeof(good_term),
	          ESDB_ENCODING_TERM);
	/* the same bytes written as plain bytes stay bytes */
	put_event(dir, "s", 1, "t", good_term, sizeof(good_term),
	          ESDB_ENCODING_BYTES);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s read s", dir), 0);
	/* as ei_s_print_term prints it */
	CHECK(strstr(out,
	             "data (39 bytes, erlang term): "
	             "{ok, 42, #Bin<104,105>, [1, 2], #{a => -1}}") != NULL);
	CHECK(strstr(out, "data (39 bytes, hex): 836805") != NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s read s --raw", dir), 0);
	CHECK(strstr(out, "erlang term") == NULL);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --json read s", dir), 0);
	CHECK(strstr(out, "\"data_term\":\"{ok, 42, #Bin<104,105>, [1, 2], "
	                  "#{a => -1}}\"") != NULL);
	CHECK(strstr(out, "\"data_encoding\":\"base64\"") != NULL);
}

TEST(cli_read_survives_crafted_terms)
{
	/* Records flagged as terms whose bytes lie about their lengths,
	 * nest without end or carry what ei cannot print: hex, exit 0. */
	const char *dir = tmp_dir();
	static char out[1 << 16];
	static const uint8_t list_past_end[] = {131, 108, 255, 255,
	                                        255, 255, 97,  1};
	static const uint8_t bin_past_end[] = {131, 109, 127, 255,
	                                       255, 255, 'a'};
	static const uint8_t atom_past_end[] = {131, 119, 200, 'a'};
	static const uint8_t map_past_end[] = {131, 116, 0, 0, 0, 9, 97, 1};
	static const uint8_t big_past_end[] = {131, 111, 255, 255,
	                                       255, 0,   0,   1};
	static const uint8_t trailing[] = {131, 97, 1, 97, 2};
	static const uint8_t not_a_term[] = {130, 97, 1};
	static const uint8_t compressed[] = {131, 80, 0, 0, 0, 9, 1, 2, 3};
	static const uint8_t pid[] = {131, 88, 119, 1, 'n', 0, 0, 0, 1,
	                              0,   0,  0,   0, 0,   0, 0, 0};
	static const uint8_t empty[] = {131};
	const struct {
		const uint8_t *p;
		size_t n;
	} bad[] = {
	    {list_past_end, sizeof(list_past_end)},
	    {bin_past_end, sizeof(bin_past_end)},
	    {atom_past_end, sizeof(atom_past_end)},
	    {map_past_end, sizeof(map_past_end)},
	    {big_past_end, sizeof(big_past_end)},
	    {trailing, sizeof(trailing)},
	    {not_a_term, sizeof(not_a_term)},
	    {compressed, sizeof(compressed)},
	    {pid, sizeof(pid)},
	    {empty, sizeof(empty)},
	};
	size_t nbad = sizeof(bad) / sizeof(bad[0]);
	for (size_t i = 0; i < nbad; i++)
		put_event(dir, "s", 1, "t", bad[i].p, bad[i].n,
		          ESDB_ENCODING_TERM);
	/* 100,000 nested 1-tuples: a recursive printer's stack */
	size_t deep_n = 1 + 2 * 100000 + 1;
	uint8_t *deep = malloc(deep_n);
	REQUIRE(deep);
	deep[0] = 131;
	for (size_t i = 0; i < 100000; i++) {
		deep[1 + 2 * i] = 104;
		deep[2 + 2 * i] = 1;
	}
	deep[deep_n - 1] = 106;
	put_event(dir, "s", 1, "t", deep, deep_n, ESDB_ENCODING_TERM);
	free(deep);

	CHECK_EQ(ctl(out, sizeof(out), "--store %s read s", dir), 0);
	CHECK(strstr(out, "erlang term") == NULL);
	size_t hex = 0;
	for (char *p = out; (p = strstr(p, "bytes, hex)")); p++)
		hex++;
	CHECK_EQ(hex, nbad + 1);
	CHECK_EQ(ctl(out, sizeof(out), "--store %s --json read s", dir), 0);
	CHECK(strstr(out, "data_term") == NULL);
}
