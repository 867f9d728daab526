/* failstop.c: after a failed flush the store takes no more writes
 * (esdb_store_get_failure in esdb.h says why and what it means). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MARKER "store_failed"

int esdb_store_get_failure(esdb_store *s)
{
	return s ? __atomic_load_n(&s->failed, __ATOMIC_ACQUIRE) : 0;
}

void esdb_store_set_failure(esdb_store *s, int cause)
{
	int none = 0;
	if (s && cause)
		__atomic_compare_exchange_n(&s->failed, &none, cause, false,
		                            __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

static int marker_path(const esdb_store *s, char out[PATH_MAX])
{
	return snprintf(out, PATH_MAX, "%s/" MARKER, s->path) >= PATH_MAX
	           ? ESDB_EINVAL
	           : 0;
}

/* LMDB reports a short write as EIO: with the disk or the file size
 * limit at its end, that is a full disk, refused before any flush. */
static bool out_of_space(const esdb_store *s)
{
	char data[PATH_MAX];
	struct statvfs fs;
	struct stat st;
	struct rlimit rl;
	if (statvfs(s->path, &fs) == 0 &&
	    (uint64_t)fs.f_bavail * fs.f_frsize < (1u << 20))
		return true;
	if (snprintf(data, sizeof(data), "%s/data.mdb", s->path) >=
	        (int)sizeof(data) ||
	    stat(data, &st) || getrlimit(RLIMIT_FSIZE, &rl))
		return false;
	return rl.rlim_cur != RLIM_INFINITY &&
	       (uint64_t)st.st_size + (1u << 20) >= (uint64_t)rl.rlim_cur;
}

/* Best effort: the disk is failing, and the in-memory state alone
 * already refuses every write of this process. */
static void write_marker(const esdb_store *s, int cause)
{
	char path[PATH_MAX];
	if (marker_path(s, path))
		return;
	int fd =
	    open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, s->file_mode);
	if (fd < 0)
		return;
	const char *name = esdb_error_name(cause);
	if (write(fd, name, strlen(name)) >= 0 && write(fd, "\n", 1) >= 0)
		fsync(fd);
	close(fd);
	esdb__fsync_path(s->path);
}

int esdb__commit_failed(esdb_store *s, int rc)
{
	switch (rc) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
	case ENOMEM:
	case ESDB_EDISK_FULL:
		return esdb__space_rc(s->path, rc);
	case EIO:
		if (out_of_space(s))
			return esdb__space_rc(s->path, rc);
		break;
	default:
		if (rc <= 0) /* LMDB's and our codes: no I/O failed */
			return rc;
	}
	int none = 0;
	if (__atomic_compare_exchange_n(&s->failed, &none, rc, false,
	                                __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		write_marker(s, rc);
	return ESDB_ESTORE_FAILED;
}

int esdb__failstop_reopen(esdb_store *s)
{
	char path[PATH_MAX];
	int rc = marker_path(s, path);
	if (rc)
		return rc;
	if (access(path, F_OK) != 0)
		return 0;
	/* Isolated: a store that failed a flush is the likeliest to hold a
	 * page LMDB walks blindly, and this runs in the opening process
	 * (the VM). */
	if ((rc = esdb_store_verify_isolated(s, NULL, NULL, NULL, NULL)))
		return rc;
	if (unlink(path) && errno != ENOENT)
		return errno;
	return esdb__fsync_path(s->path);
}
