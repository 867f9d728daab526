/* test_json.c: the tools' one JSON writer (c_src/json) writes valid JSON
 * whatever the bytes: escapes, UTF-8 passthrough, U+FFFD for bad bytes,
 * commas, numbers, base64. */
#include "harness.h"

#include "json.h"

#include <math.h>

/* What `write` printed, as a NUL-terminated string (free it). */
static char *written(void (*write)(json_writer *w))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	REQUIRE(f != NULL);
	json_writer w = {.out = f};
	write(&w);
	fclose(f);
	return buf;
}

#define CHECK_WRITTEN(fn, want)                                                \
	do {                                                                   \
		char *got_ = written(fn);                                      \
		if (strcmp(got_, want) != 0)                                   \
			harness_fail(__FILE__, __LINE__, "wrote %s, not %s",   \
			             got_, want);                              \
		free(got_);                                                    \
	} while (0)

static void escapes(json_writer *w)
{
	/* quote, backslash, the short escapes, other controls, DEL */
	static const char s[] = "a\"b\\c\nd\re\tf\x01g\x1f\bh\fi\x7fj/";
	json_str(w, s, sizeof(s) - 1);
}

static void nul_inside(json_writer *w)
{
	json_str(w, "a\0b", 3);
}

static void non_ascii(json_writer *w)
{
	/* é, €, 😀, U+10FFFF: passed through as they are */
	json_cstr(w, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
}

static void bad_utf8(json_writer *w)
{
	/* a stray continuation, an overlong NUL, a surrogate, a lead byte
	 * cut short, 0xff, above U+10FFFF: each bad byte is one U+FFFD */
	json_cstr(w,
	          "\x80|\xc0\x80|\xed\xa0\x80|\xe2\x82|\xff|\xf4\x90\x80\x80");
}

static void document(json_writer *w)
{
	json_open(w, '{');
	json_key(w, "a");
	json_open(w, '[');
	json_u64(w, UINT64_MAX);
	json_int(w, -3);
	json_bool(w, true);
	json_bool(w, false);
	json_null(w);
	json_cstr(w, "");
	json_close(w, ']');
	json_key(w, "k\"ey");
	json_open(w, '{');
	json_close(w, '}');
	json_key(w, "d");
	json_double(w, 1.25, 2);
	json_key(w, "nan");
	json_double(w, NAN, 1);
	json_key(w, "inf");
	json_double(w, -INFINITY, 1);
	json_close(w, '}');
}

static void base64(json_writer *w)
{
	/* RFC 4648's test vectors */
	static const char *v[] = {"",     "f",     "fo",    "foo",
	                          "foob", "fooba", "foobar"};
	json_open(w, '[');
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		json_base64(w, v[i], strlen(v[i]));
	json_close(w, ']');
}

TEST(json_strings_escape_controls_quotes_and_backslash)
{
	CHECK_WRITTEN(escapes, "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001f"
	                       "\\u0008h\\u000ci\x7fj/\"");
	CHECK_WRITTEN(nul_inside, "\"a\\u0000b\"");
}

TEST(json_strings_pass_utf8_through_and_replace_bad_bytes)
{
	CHECK_WRITTEN(non_ascii, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
	                         "\xf4\x8f\xbf\xbf\"");
	CHECK_WRITTEN(bad_utf8,
	              "\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
	              "\\ufffd\\ufffd|\\ufffd|"
	              "\\ufffd\\ufffd\\ufffd\\ufffd\"");
	CHECK(json_utf8_valid("\xc3\xa9", 2));
	CHECK(!json_utf8_valid("\xc3", 1));
	CHECK(!json_utf8_valid("\xed\xa0\x80", 3));
}

TEST(json_documents_have_commas_numbers_and_nulls_in_place)
{
	CHECK_WRITTEN(document, "{\"a\":[18446744073709551615,-3,true,false,"
	                        "null,\"\"],\"k\\\"ey\":{},\"d\":1.25,"
	                        "\"nan\":null,\"inf\":null}");
	CHECK_WRITTEN(base64, "[\"\",\"Zg==\",\"Zm8=\",\"Zm9v\",\"Zm9vYg==\","
	                      "\"Zm9vYmE=\",\"Zm9vYmFy\"]");
}
