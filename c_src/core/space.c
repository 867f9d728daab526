/* space.c: disk space. A full disk must answer ESDB_EDISK_FULL, never a
 * signal: LMDB maps its lock file and writes through the map, and a page
 * of a sparse file that cannot be allocated raises SIGBUS. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* More than LMDB's lock file needs for the 1024 readers store.c asks
 * for (64 bytes a reader plus a header); LMDB uses a larger file whole,
 * as more reader slots. */
#define LOCK_FILE_BYTES (128u << 10)

/* Less free than this after a failed write: the disk is full. */
#define LOW_SPACE_BYTES (1u << 20)

bool esdb__disk_low(const char *path)
{
	struct statvfs fs;
	if (statvfs(path, &fs))
		return false;
	/* root may write into the blocks reserved for it */
	uint64_t blocks = geteuid() == 0 ? fs.f_bfree : fs.f_bavail;
	return blocks * fs.f_frsize < LOW_SPACE_BYTES;
}

int esdb__space_rc(const char *path, int rc)
{
	if (rc == ENOSPC || rc == EDQUOT)
		return ESDB_EDISK_FULL;
	/* LMDB reports a short write as EIO */
	if (rc == EIO && path && esdb__disk_low(path))
		return ESDB_EDISK_FULL;
	return rc;
}

int esdb__lock_file_prealloc(const esdb_store *s, const char *dir)
{
	char path[PATH_MAX];
	struct stat st;
	if (snprintf(path, sizeof(path), "%s/lock.mdb", dir) >=
	    (int)sizeof(path))
		return ESDB_EINVAL;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, s->file_mode);
	if (fd < 0)
		return errno == EACCES || errno == EROFS ? 0 : errno;
	int rc = fstat(fd, &st) ? errno : 0;
	/* Allocate every block, also of a sparse file LMDB made before. */
	if (rc == 0)
		rc = posix_fallocate(fd, 0,
		                     st.st_size > (off_t)LOCK_FILE_BYTES
		                         ? st.st_size
		                         : (off_t)LOCK_FILE_BYTES);
	/* a file system without fallocate: LMDB's own way, as before */
	if (rc == EOPNOTSUPP || rc == EINVAL)
		rc = 0;
	close(fd);
	return esdb__space_rc(dir, rc);
}

int esdb__first_missing_dir(const char *path, char out[PATH_MAX])
{
	size_t len = strlen(path);
	struct stat st;
	out[0] = 0;
	if (len == 0 || len >= PATH_MAX)
		return 0;
	memcpy(out, path, len + 1);
	for (char *p = out + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = 0;
		if (stat(out, &st) != 0) {
			/* other errors are prepare_dir's to name */
			if (errno != ENOENT)
				out[0] = 0;
			return 0;
		}
		if (!c)
			break;
		*p = c;
	}
	out[0] = 0; /* nothing missing */
	return 0;
}

void esdb__unmake_store(const char *path, const char *made)
{
	char f[PATH_MAX];
	if (snprintf(f, sizeof(f), "%s/data.mdb", path) < (int)sizeof(f))
		unlink(f);
	if (snprintf(f, sizeof(f), "%s/lock.mdb", path) < (int)sizeof(f))
		unlink(f);
	if (!made || !made[0])
		return;
	/* the directories made for it, deepest first; rmdir keeps any
	 * that something else has used meanwhile */
	size_t top = strlen(made), len = strlen(path);
	if (len >= sizeof(f) || top > len)
		return;
	memcpy(f, path, len + 1);
	while (len >= top) {
		if (rmdir(f) != 0)
			return;
		while (len > 0 && f[len - 1] != '/')
			len--;
		if (len == 0)
			return;
		f[--len] = 0;
	}
}
