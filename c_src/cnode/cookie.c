/* cookie.c: the cookie from a descriptor or an owner-only file. */
#include "cookie.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cn_cookie_read_fd(int fd, char *out, const char **why)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = "cannot read the cookie";
			return -1;
		}
		if (r == 0 || c == '\n')
			break;
		if (n == CN_COOKIE_MAX) {
			*why = "cookie longer than 255 bytes";
			return -1;
		}
		out[n++] = c;
	}
	while (n &&
	       (out[n - 1] == '\r' || out[n - 1] == ' ' || out[n - 1] == '\t'))
		n--;
	out[n] = '\0';
	if (n == 0) {
		*why = "empty cookie";
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x21 ||
		    (unsigned char)out[i] > 0x7e) {
			*why = "cookie holds unprintable bytes";
			return -1;
		}
	return 0;
}

int cn_cookie_read_file(const char *path, char *out, const char **why)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		*why = "cannot open the cookie file";
		return -1;
	}
	struct stat st;
	int rc = -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		*why = "cookie file is not a regular file";
	else if (st.st_uid != geteuid())
		*why = "cookie file is owned by another user";
	else if (st.st_mode & 077)
		*why = "cookie file is readable by others (chmod 400 it)";
	else
		rc = cn_cookie_read_fd(fd, out, why);
	close(fd);
	return rc;
}
