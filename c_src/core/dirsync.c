/* dirsync.c: flushing files and directory entries. A new file survives a
 * power loss only when the directory naming it was flushed too, and a new
 * directory only when its parent was. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

int esdb__fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int rc = fsync(fd) ? errno : 0;
	close(fd);
	return rc;
}

int esdb__fsync_parent(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf))
		return ESDB_EINVAL;
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = 0;
	char *slash = strrchr(buf, '/');
	if (!slash)
		return esdb__fsync_path(".");
	if (slash == buf)
		slash[1] = 0;
	else
		*slash = 0;
	return esdb__fsync_path(buf);
}
