/* dirs.c: making directories and asking whether one is empty (dirs.h). */
#include "dirs.h"

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

/* Make one directory; a new one is flushed into its parent. */
static int make_one(const char *path, mode_t mode)
{
	if (mkdir(path, mode))
		return errno == EEXIST ? 0 : errno;
	return esdb__fsync_parent(path);
}

int esdb__dir_make_all(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = path ? strlen(path) : 0;
	int rc;
	if (len == 0 || len >= sizeof(buf))
		return ESDB_EINVAL;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if ((rc = make_one(buf, mode)))
			return rc;
		*p = '/';
	}
	return make_one(buf, mode);
}

int esdb__dir_empty(const char *path, const char *ignore, bool *empty)
{
	DIR *d = opendir(path);
	if (!d)
		return errno;
	struct dirent *e;
	*empty = true;
	while (*empty && (e = readdir(d)))
		*empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		         (ignore && !strcmp(e->d_name, ignore));
	closedir(d);
	return 0;
}
