/* copy.c: a whole store through a file descriptor. A copy is a compacted
 * LMDB data file written while writers go on; a restore takes such a file
 * and swaps it in under the open store handle, between two transactions,
 * so readers, subscribers and the commit path carry on over it. This is
 * how a store travels out of band to a new or lagging replica. */
#include "internal.h"

#include "bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define RESTORE_FILE "restore.mdb"

int esdb__copy_to_fd(esdb_store *s, int fd)
{
	/* Its read holds the map still for long: leave appends room. */
	int rc = esdb__map_headroom(s, true);
	if (rc)
		return esdb__mdb_rc(rc);
	/* mdb_env_copyfd2 runs in its own read txn: consistent while
	 * writers go on; the map lock keeps the map from moving under it. */
	if ((rc = esdb__map_rdlock(s)) == 0) {
		rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
		pthread_rwlock_unlock(&s->map_lock);
	}
	return esdb__mdb_rc(rc);
}

int esdb_store_copy(esdb_store *s, int fd)
{
	if (!s || fd < 0)
		return ESDB_EINVAL;
	if (!s->is_open)
		return ESDB_ECLOSED;
	return esdb__copy_to_fd(s, fd);
}

/* Everything `in` holds, into `out`. */
static int pour(int in, int out)
{
	static const size_t chunk = 1u << 20;
	char *buf = malloc(chunk);
	int rc = 0;
	if (!buf)
		return ENOMEM;
	for (;;) {
		ssize_t n = read(in, buf, chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = errno;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = errno;
				goto out;
			}
			off += w;
		}
	}
out:
	free(buf);
	return rc;
}

/* Is the file at `path` a store of this format? Opened apart, read-only
 * and without a lock file, before it replaces anything. */
static int check_copy(const char *path, uint64_t mapsize, uint64_t *applied)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, main;
	MDB_val k = {6, "format"}, v;
	int rc = mdb_env_create(&env);
	if (rc)
		return rc;
	if ((rc = mdb_env_set_maxdbs(env, 16)) ||
	    (rc = mdb_env_set_mapsize(env, mapsize)) ||
	    (rc = mdb_env_open(env, path,
	                       MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0600))) {
		mdb_env_close(env);
		/* what LMDB says of a file that has no meta pages */
		return rc == ENOENT || rc == EINVAL || rc == EBADF
		           ? ESDB_EFOREIGN
		           : esdb__mdb_rc(rc);
	}
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) {
		mdb_env_close(env);
		return esdb__mdb_rc(rc);
	}
	rc = mdb_dbi_open(txn, "meta", 0, &meta);
	if (rc == 0)
		rc = mdb_get(txn, meta, &k, &v);
	if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE ||
	    (rc == 0 &&
	     (v.mv_size != 10 || memcmp(v.mv_data, ESDB_FORMAT_MAGIC, 6))))
		rc = ESDB_EFOREIGN;
	else if (rc == 0 && esdb_le32_get((const uint8_t *)v.mv_data + 6) !=
	                        ESDB_FORMAT_VERSION)
		rc = ESDB_EFORMAT;
	if (rc == 0 && (rc = mdb_dbi_open(txn, NULL, 0, &main)) == 0)
		rc = esdb__applied_index(txn, main, applied);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return esdb__mdb_rc(rc);
}

/* Whether another process has the store open: every LMDB environment
 * holds a POSIX lock on lock.mdb while open. Read from /proc/locks, as
 * opening lock.mdb to ask would drop this process's own LMDB lock when
 * closed. Unreadable: assume nobody. */
static bool open_elsewhere(const esdb_store *s)
{
	char path[PATH_MAX], line[256];
	struct stat st;
	if (snprintf(path, sizeof(path), "%s/lock.mdb", s->path) >=
	        (int)sizeof(path) ||
	    stat(path, &st))
		return false;
	FILE *f = fopen("/proc/locks", "r");
	if (!f)
		return false;
	bool other = false;
	while (!other && fgets(line, sizeof(line), f)) {
		char *posix = strstr(line, "POSIX ");
		long pid;
		unsigned maj, min;
		unsigned long ino;
		if (posix && sscanf(posix, "POSIX %*s %*s %ld %x:%x:%lu", &pid,
		                    &maj, &min, &ino) == 4)
			other = ino == (unsigned long)st.st_ino &&
			        maj == major(st.st_dev) &&
			        min == minor(st.st_dev) &&
			        pid != (long)getpid();
	}
	fclose(f);
	return other;
}

/* Swap the file at `tmp` in as data.mdb, with no transaction live: the
 * apply lock keeps the commit path out, the map lock held exclusive waits
 * for the reads in progress and holds new ones back. */
static int swap_in(esdb_store *s, const char *tmp, const char *data,
                   uint64_t copy_applied)
{
	MDB_envinfo info;
	uint64_t last = 0, applied = 0;
	int rc;
	pthread_mutex_lock(&s->apply_lock);
	/* Asked again with the commit path held out: the replica may have
	 * stopped waiting while the copy was written (another restore came
	 * in first). A copy behind the store would move its applied index
	 * back: readers would see the store go back, and the replica
	 * renumber what it applied. */
	if (s->commit.replicated) {
		uint64_t now = 0;
		if (!(s->commit.may_restore &&
		      s->commit.may_restore(&s->commit)))
			rc = ESDB_EINVAL;
		else if ((rc = esdb_store_get_applied_index(s, &now)) == 0 &&
		         copy_applied < now)
			rc = ESDB_EINVAL;
		if (rc) {
			pthread_mutex_unlock(&s->apply_lock);
			return rc;
		}
	}
	pthread_rwlock_wrlock(&s->map_lock);
	if ((rc = mdb_env_info(s->env, &info)))
		goto out;
	/* LMDB resets its lock table only when no other process has the
	 * store open. Kept, its transaction count picks the copy's meta page
	 * by the old store's parity: half the time the empty one, and the
	 * next commit writes over the copy. */
	if (open_elsewhere(s)) {
		rc = ESDB_ELOCKED;
		goto out;
	}
	if (rename(tmp, data)) {
		rc = errno;
		goto out;
	}
	/* From here the store is the copy, on disk and, once reopened, in
	 * memory; a reopen that fails is tried again by the next call. */
	rc = esdb__fsync_path(s->path);
	int rc2 = esdb__env_reopen(s, info.me_mapsize);
	if (rc2) {
		s->lost_mapsize = info.me_mapsize;
		s->map_lost = true;
		rc = rc2;
		goto out;
	}
	/* Appends go on from the copy's last position; deliveries vouch
	 * for nothing before it; the commit path numbers after its index. */
	if ((rc2 = esdb__stored_last(s, &last, &applied)) == 0)
		esdb__emitter_restart(s, last);
	rc = rc ? rc : rc2;
	pthread_rwlock_unlock(&s->map_lock);
	if (rc2 == 0 && s->commit.restored)
		s->commit.restored(&s->commit, applied);
	pthread_mutex_unlock(&s->apply_lock);
	return esdb__mdb_rc(rc);
out:
	pthread_rwlock_unlock(&s->map_lock);
	pthread_mutex_unlock(&s->apply_lock);
	return esdb__mdb_rc(rc);
}

int esdb_store_restore(esdb_store *s, int fd)
{
	char tmp[PATH_MAX], data[PATH_MAX];
	uint64_t copy_applied = 0;
	if (!s || fd < 0)
		return ESDB_EINVAL;
	if (!s->is_open)
		return ESDB_ECLOSED;
	if (s->readonly)
		return EROFS;
	/* a replica's store is at its raft log's index: a copy put in
	 * behind raft's back would diverge from the others, unless the
	 * replica waits for one (raft's snapshot passed its store) */
	if (s->commit.replicated &&
	    !(s->commit.may_restore && s->commit.may_restore(&s->commit)))
		return ESDB_EINVAL;
	if (esdb_store_get_failure(s))
		return ESDB_ESTORE_FAILED;
	if (snprintf(tmp, sizeof(tmp), "%s/" RESTORE_FILE, s->path) >=
	        (int)sizeof(tmp) ||
	    snprintf(data, sizeof(data), "%s/data.mdb", s->path) >=
	        (int)sizeof(data))
		return ESDB_EINVAL;
	unlink(tmp); /* left by a restore that did not finish */
	/* a name of its own: two restores at once write two files */
	if (snprintf(tmp, sizeof(tmp), "%s/" RESTORE_FILE ".XXXXXX", s->path) >=
	    (int)sizeof(tmp))
		return ESDB_EINVAL;
	int out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0)
		return esdb__space_rc(s->path, errno);
	if (fchmod(out, s->file_mode)) {
		int e = errno;
		close(out);
		unlink(tmp);
		return e;
	}
	int rc = pour(fd, out);
	if (!rc && fsync(out))
		rc = errno;
	if (close(out) && !rc)
		rc = errno;
	if (!rc) {
		struct stat st;
		rc = stat(tmp, &st) ? errno : 0;
		/* LMDB's two meta pages at least */
		if (!rc && st.st_size < 2 * 4096)
			rc = ESDB_EFOREIGN;
		if (!rc)
			rc = check_copy(tmp, (uint64_t)st.st_size + (1u << 20),
			                &copy_applied);
	}
	if (!rc)
		rc = swap_in(s, tmp, data, copy_applied);
	if (rc)
		unlink(tmp);
	if (rc == 0)
		esdb__map_headroom(s, true);
	return esdb__space_rc(s->path, rc);
}
