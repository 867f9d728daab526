/* test_cnode_cookie.c: the C node reads its cookie from a descriptor or
 * an owner-only file (c_src/cnode/cookie.c), never anything looser. */
#include "harness.h"

#include "cookie.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* The cookie read from a pipe holding `text`, or NULL with *why set. */
static const char *from_pipe(const char *text, char *out, const char **why)
{
	int p[2];
	REQUIRE(pipe(p) == 0);
	REQUIRE(write(p[1], text, strlen(text)) == (ssize_t)strlen(text));
	close(p[1]);
	int rc = cn_cookie_read_fd(p[0], out, why);
	close(p[0]);
	return rc == 0 ? out : NULL;
}

TEST(cnode_cookie_from_a_descriptor_is_one_trimmed_line)
{
	char out[CN_COOKIE_MAX + 1];
	const char *why = NULL;
	CHECK(from_pipe("secret\n", out, &why) && strcmp(out, "secret") == 0);
	CHECK(from_pipe("secret \r\nrest", out, &why) &&
	      strcmp(out, "secret") == 0);
	CHECK(from_pipe("at-eof", out, &why) && strcmp(out, "at-eof") == 0);
	CHECK(!from_pipe("\n", out, &why) && strstr(why, "empty"));
	CHECK(!from_pipe("has space\n", out, &why) && strstr(why, "unprint"));
	char longer[CN_COOKIE_MAX + 3];
	memset(longer, 'c', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	CHECK(!from_pipe(longer, out, &why) && strstr(why, "longer"));
}

TEST(cnode_cookie_file_must_be_the_owners_alone)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/cookie", tmp_dir());
	spill(path, "filecookie\n", 11);
	char out[CN_COOKIE_MAX + 1];
	const char *why = NULL;
	static const struct {
		mode_t mode;
		bool ok;
	} modes[] = {{0400, true},
	             {0600, true},
	             {0640, false},
	             {0604, false},
	             {0444, false}};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		REQUIRE(chmod(path, modes[i].mode) == 0);
		int rc = cn_cookie_read_file(path, out, &why);
		if ((rc == 0) != modes[i].ok)
			harness_fail(__FILE__, __LINE__, "mode %o: rc %d",
			             (unsigned)modes[i].mode, rc);
		if (rc == 0)
			CHECK(strcmp(out, "filecookie") == 0);
		else
			CHECK(strstr(why, "readable by others") != NULL);
	}
	/* a symlink to it is not followed */
	char link[600];
	snprintf(link, sizeof(link), "%s/cookie-link", tmp_dir());
	REQUIRE(chmod(path, 0400) == 0);
	REQUIRE(symlink(path, link) == 0);
	CHECK(cn_cookie_read_file(link, out, &why) != 0);
	/* a directory is not a cookie file */
	CHECK(cn_cookie_read_file(tmp_dir(), out, &why) != 0);
}
