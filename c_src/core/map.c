/* map.c: the LMDB map and its size: the lock that keeps the map from
 * moving under a transaction, growth ahead of need, and recovery when a
 * new map cannot be had.
 *
 * LMDB forbids mdb_env_set_mapsize while any transaction of the process is
 * live, as it unmaps the file and maps it again. Every transaction (read or
 * write) therefore holds map_lock shared, and resizing holds it exclusive.
 * The lock prefers writers, so a resize waits for the transactions in
 * progress, not for every reader that comes after. A long read (a backup,
 * verify) still holds it for its whole length: the map is kept at least
 * twice the used size, grown at commit boundaries when nobody reads and
 * before a backup or verify starts, so appends rarely need to wait. */
#include "internal.h"

#include <errno.h>

int esdb__map_lock_init(esdb_store *s)
{
	pthread_rwlockattr_t attr;
	int rc = pthread_rwlockattr_init(&attr);
	if (rc)
		return rc;
	pthread_rwlockattr_setkind_np(
	    &attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = pthread_rwlock_init(&s->map_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return rc;
}

/* Used and mapped bytes; the caller holds map_lock (either way). */
static int map_usage(esdb_store *s, uint64_t *used, uint64_t *mapped)
{
	MDB_envinfo info;
	MDB_stat st;
	int rc = mdb_env_info(s->env, &info);
	if (rc || (rc = mdb_env_stat(s->env, &st)))
		return rc;
	*used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	*mapped = info.me_mapsize;
	return 0;
}

/* Reopen a lost map; map_lock held exclusive. */
static int recover_locked(esdb_store *s)
{
	if (!s->map_lost)
		return 0;
	int rc = esdb__env_reopen(s, s->lost_mapsize);
	if (rc == 0)
		s->map_lost = false;
	return rc;
}

int esdb__map_rdlock(esdb_store *s)
{
	for (;;) {
		pthread_rwlock_rdlock(&s->map_lock);
		if (!s->map_lost)
			return 0;
		pthread_rwlock_unlock(&s->map_lock);
		pthread_rwlock_wrlock(&s->map_lock);
		int rc = recover_locked(s);
		pthread_rwlock_unlock(&s->map_lock);
		if (rc)
			return rc;
	}
}

/* Resize with map_lock held exclusive (size 0: adopt the size another
 * process set). When the new map cannot be had (address space, RLIMIT_AS)
 * LMDB has already unmapped the old one and left the environment without
 * a map: reopen it at the old size, or mark the map lost so that every
 * call tries that again and fails cleanly until it works, instead of
 * touching a missing map. */
static int set_mapsize_locked(esdb_store *s, uint64_t size)
{
	MDB_envinfo info;
	int rc = recover_locked(s);
	if (rc || (rc = mdb_env_info(s->env, &info)))
		return rc;
	if ((rc = mdb_env_set_mapsize(s->env, size)) == 0)
		return 0;
	s->lost_mapsize = info.me_mapsize;
	s->map_lost = true;
	recover_locked(s);
	return rc;
}

int esdb__adopt_mapsize(esdb_store *s)
{
	pthread_rwlock_wrlock(&s->map_lock);
	int rc = set_mapsize_locked(s, 0);
	pthread_rwlock_unlock(&s->map_lock);
	return rc;
}

/* Double the map until it is at least twice the used size; when `full`
 * (a transaction found no room) at least once, whatever is used. */
static int grow_locked(esdb_store *s, bool full)
{
	uint64_t used, mapped;
	int rc = map_usage(s, &used, &mapped);
	if (rc)
		return rc;
	uint64_t size = full ? mapped * 2 : mapped;
	while (size < 2 * used && size < (UINT64_MAX >> 2))
		size *= 2;
	return size == mapped ? 0 : set_mapsize_locked(s, size);
}

int esdb__map_grow(esdb_store *s)
{
	pthread_rwlock_wrlock(&s->map_lock);
	int rc = recover_locked(s);
	if (rc == 0)
		rc = grow_locked(s, true);
	pthread_rwlock_unlock(&s->map_lock);
	return rc;
}

int esdb__map_headroom(esdb_store *s, bool wait)
{
	uint64_t used = 0, mapped = 0;
	if (s->readonly)
		return 0;
	int rc = esdb__map_rdlock(s);
	if (rc)
		return rc;
	rc = map_usage(s, &used, &mapped);
	pthread_rwlock_unlock(&s->map_lock);
	if (rc || used <= mapped / 2)
		return rc;
	if (wait)
		pthread_rwlock_wrlock(&s->map_lock);
	else if (pthread_rwlock_trywrlock(&s->map_lock))
		return 0; /* someone reads: the next commit tries again */
	rc = grow_locked(s, false);
	pthread_rwlock_unlock(&s->map_lock);
	return rc;
}
