/* store.c: options, open/close, the per-process registry of open stores,
 * read transactions and stats. */
#include "internal.h"

#include "bytes.h"
#include "dirs.h"
#include "records.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAPSIZE (64ull << 20)

/* LMDB's behaviour is undefined when one process opens an environment
 * twice, so open stores are registered by the directory's device/inode. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static esdb_store *registry;

uint64_t esdb_clock_get_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int esdb_store_create(esdb_store **out)
{
	if (!out)
		return ESDB_EINVAL;
	esdb_store *s = calloc(1, sizeof(*s));
	if (!s)
		return ENOMEM;
	s->mapsize = DEFAULT_MAPSIZE;
	s->durability = ESDB_DURABILITY_SYNC;
	s->create = true;
	s->file_mode = 0600;
	s->q_max_bytes = ESDB_QUEUE_BYTES_DEFAULT;
	esdb_limits_init(&s->limits);
	pthread_mutex_init(&s->limits_lock, NULL);
	s->read_bytes = ESDB_READ_BYTES_DEFAULT;
	*out = s;
	return 0;
}

#define SETTER_GUARD(s)                                                        \
	do {                                                                   \
		if (!(s))                                                      \
			return ESDB_EINVAL;                                    \
		if ((s)->is_open)                                              \
			return ESDB_EBUSY;                                     \
	} while (0)

int esdb_store_set_mapsize(esdb_store *s, uint64_t bytes)
{
	SETTER_GUARD(s);
	if (bytes < (1u << 20))
		return ESDB_EINVAL;
	s->mapsize = bytes;
	return 0;
}

int esdb_store_set_durability(esdb_store *s, esdb_durability d)
{
	SETTER_GUARD(s);
	if (d != ESDB_DURABILITY_SYNC && d != ESDB_DURABILITY_NO_META_SYNC &&
	    d != ESDB_DURABILITY_NOSYNC)
		return ESDB_EINVAL;
	s->durability = d;
	return 0;
}

int esdb_store_set_limits(esdb_store *s, const esdb_limits *l)
{
	SETTER_GUARD(s);
	/* a replica's limits come from the log (esdb_store_set_commit_path) */
	if (!l || !esdb__limits_in_range(l) || s->commit.replicated)
		return ESDB_EINVAL;
	s->limits_req = *l;
	s->limits_set = true;
	return 0;
}

int esdb_store_get_limits(esdb_store *s, esdb_limits *out)
{
	if (!s || !out)
		return ESDB_EINVAL;
	pthread_mutex_lock(&s->limits_lock);
	*out = s->limits;
	if (!s->is_open && s->limits_set)
		esdb__limits_merge(out, &s->limits_req);
	pthread_mutex_unlock(&s->limits_lock);
	return 0;
}

void esdb__limits_publish(esdb_store *s, const esdb_limits *l)
{
	pthread_mutex_lock(&s->limits_lock);
	s->limits = *l;
	pthread_mutex_unlock(&s->limits_lock);
}

int esdb_store_set_queue_bytes(esdb_store *s, uint64_t bytes)
{
	SETTER_GUARD(s);
	if (bytes == 0)
		return ESDB_EINVAL;
	s->q_max_bytes = bytes;
	return 0;
}

int esdb_store_set_create(esdb_store *s, bool create)
{
	SETTER_GUARD(s);
	s->create = create;
	return 0;
}

int esdb_store_set_readonly(esdb_store *s, bool readonly)
{
	SETTER_GUARD(s);
	s->readonly = readonly;
	return 0;
}

int esdb_store_set_file_mode(esdb_store *s, unsigned mode)
{
	SETTER_GUARD(s);
	if ((mode & ~0777u) || (mode & 0600) != 0600)
		return ESDB_EINVAL;
	s->file_mode = mode;
	return 0;
}

unsigned esdb__dir_mode(const esdb_store *s)
{
	return s->file_mode | ((s->file_mode & 0444) >> 2);
}

int esdb_store_set_read_bytes(esdb_store *s, uint64_t bytes)
{
	SETTER_GUARD(s);
	if (bytes == 0)
		return ESDB_EINVAL;
	s->read_bytes = bytes;
	return 0;
}

int esdb__mdb_rc(int rc)
{
	switch (rc) {
	case MDB_INVALID:
		return ESDB_EFOREIGN;
	case MDB_VERSION_MISMATCH:
		return ESDB_EFORMAT;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	/* A cursor opened on a database whose root page LMDB refuses flags
	 * the transaction silently (mdb_cursor_init drops the error); every
	 * later call answers MDB_BAD_TXN. Nothing else of ours leaves a
	 * transaction in use after an error. */
	case MDB_BAD_TXN:
		return ESDB_ECORRUPT;
	default:
		return rc;
	}
}

int esdb__read_begin(esdb_store *s, MDB_txn **txn)
{
	if (!s || !s->is_open)
		return ESDB_ECLOSED;
	esdb_where_take(NULL); /* a corruption found later is this read's */
	for (;;) {
		int rc = esdb__map_rdlock(s);
		if (rc)
			return rc;
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&s->map_lock);
		/* Another process (the CLI, a second VM) grew the map. */
		if (rc != MDB_MAP_RESIZED || (rc = esdb__adopt_mapsize(s)))
			return esdb__mdb_rc(rc);
	}
}

void esdb__read_end(esdb_store *s, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->map_lock);
}

/* Entries other than a writer lock, which alone is left by a creation
 * that failed. */
static bool dir_has_entries(const char *path)
{
	bool empty;
	return esdb__dir_empty(path, ESDB_WRITER_LOCK, &empty) == 0 && !empty;
}

/* *fresh: no data.mdb yet (or an empty one, a creation cut short), so
 * open creates one. */
static int prepare_dir(esdb_store *s, const char *path, struct stat *st,
                       bool *fresh)
{
	char data[PATH_MAX];
	struct stat data_st;
	if (stat(path, st) != 0) {
		/* a file where one of the path's directories should be */
		if (errno == ENOTDIR)
			return ESDB_EFOREIGN;
		if (errno != ENOENT)
			return errno;
		if (!s->create || s->readonly)
			return ESDB_ENOTDIR;
		int rc = esdb__dir_make_all(path, esdb__dir_mode(s));
		if (rc)
			return rc;
		if (stat(path, st) != 0)
			return errno;
	}
	if (!S_ISDIR(st->st_mode))
		return ESDB_EFOREIGN;
	if (snprintf(data, sizeof(data), "%s/data.mdb", path) >=
	    (int)sizeof(data))
		return ESDB_EINVAL;
	if (stat(data, &data_st) == 0) {
		*fresh = data_st.st_size == 0;
		if (*fresh && (!s->create || s->readonly))
			return ESDB_ENOTDIR;
	} else {
		*fresh = true;
		if (!s->create || s->readonly)
			return dir_has_entries(path) ? ESDB_EFOREIGN
			                             : ESDB_ENOTDIR;
	}
	return 0;
}

static bool registered(const struct stat *st)
{
	for (esdb_store *r = registry; r; r = r->registry_next)
		if (r->dev == st->st_dev && r->ino == st->st_ino)
			return true;
	return false;
}

static void unregister(esdb_store *s)
{
	pthread_mutex_lock(&registry_lock);
	for (esdb_store **r = &registry; *r; r = &(*r)->registry_next)
		if (*r == s) {
			*r = s->registry_next;
			break;
		}
	pthread_mutex_unlock(&registry_lock);
}

static const char *const dbi_names[] = {
    "meta",  "events",     "streams",   "stream_index",
    "types", "type_index", "snapshots", "subscriptions",
};

static MDB_dbi *dbi_slot(esdb_store *s, int i)
{
	MDB_dbi *slots[] = {
	    &s->dbi_meta,         &s->dbi_events,        &s->dbi_streams,
	    &s->dbi_stream_index, &s->dbi_types,         &s->dbi_type_index,
	    &s->dbi_snapshots,    &s->dbi_subscriptions,
	};
	return slots[i];
}

/* Open the named databases and check (or, in a new store, write) the
 * format record: magic "exesdb" then the u32 format version. */
static int open_dbis(esdb_store *s)
{
	MDB_txn *txn;
	unsigned tflags = s->readonly ? MDB_RDONLY : 0;
	int rc = mdb_txn_begin(s->env, NULL, tflags, &txn);
	if (rc)
		return esdb__mdb_rc(rc);

	/* A new store has an empty main database; a store of ours has its
	 * meta database; anything else is not ours. */
	MDB_stat st;
	bool fresh = false;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &s->dbi_main)) ||
	    (rc = mdb_stat(txn, s->dbi_main, &st)))
		goto fail;
	if (st.ms_entries == 0)
		fresh = true;
	if (fresh && s->readonly) {
		rc = ESDB_ENOTDIR;
		goto fail;
	}
	for (int i = 0; i < (int)(sizeof(dbi_names) / sizeof(dbi_names[0]));
	     i++) {
		rc = mdb_dbi_open(txn, dbi_names[i], fresh ? MDB_CREATE : 0,
		                  dbi_slot(s, i));
		if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
			rc = ESDB_EFOREIGN;
			goto fail;
		}
		if (rc)
			goto fail;
	}
	uint8_t fmt[10];
	memcpy(fmt, ESDB_FORMAT_MAGIC, 6);
	esdb_le32_put(fmt + 6, ESDB_FORMAT_VERSION);
	MDB_val k = {6, "format"}, v;
	MDB_val lk = {6, "limits"};
	esdb_limits limits;
	esdb_limits_init(&limits);
	if (fresh) {
		/* A new store records the limits it is created with. */
		uint8_t rec[ESDB_LIMITS_REC_SIZE];
		if (s->limits_set)
			esdb__limits_merge(&limits, &s->limits_req);
		esdb__limits_rec_write(rec, &limits);
		v.mv_size = sizeof(fmt);
		v.mv_data = fmt;
		if ((rc = mdb_put(txn, s->dbi_meta, &k, &v, 0)))
			goto fail;
		v.mv_size = sizeof(rec);
		v.mv_data = rec;
		if ((rc = mdb_put(txn, s->dbi_meta, &lk, &v, 0)))
			goto fail;
		esdb__limits_publish(s, &limits);
		return esdb__mdb_rc(mdb_txn_commit(txn));
	}
	rc = mdb_get(txn, s->dbi_meta, &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && (v.mv_size != sizeof(fmt) ||
	                                       memcmp(v.mv_data, fmt, 6)))) {
		rc = ESDB_EFOREIGN;
		goto fail;
	}
	if (rc)
		goto fail;
	if (esdb_le32_get((const uint8_t *)v.mv_data + 6) !=
	    ESDB_FORMAT_VERSION) {
		rc = ESDB_EFORMAT;
		goto fail;
	}
	/* A store made before limits were recorded applied the defaults
	 * unless told otherwise; it gets its record when limits are set. */
	rc = mdb_get(txn, s->dbi_meta, &lk, &v);
	if (rc == 0)
		rc = esdb__limits_rec_read(v.mv_data, v.mv_size, &limits);
	else if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc)
		goto fail;
	esdb__limits_publish(s, &limits);
	/* Commit, not abort: handles opened in an aborted txn are closed. */
	return esdb__mdb_rc(mdb_txn_commit(txn));
fail:
	mdb_txn_abort(txn);
	return esdb__mdb_rc(rc);
}

int esdb__stored_last(esdb_store *s, uint64_t *last, uint64_t *applied)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return rc;
	*last = 0;
	if ((rc = mdb_cursor_open(txn, s->dbi_events, &cur)) == 0) {
		rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
		if (rc == 0 && k.mv_size == 8)
			*last = esdb_be64_get(k.mv_data);
		rc = rc == MDB_NOTFOUND ? 0 : rc;
		mdb_cursor_close(cur);
	}
	if (rc == 0 && applied)
		rc = esdb__applied_index(txn, s->dbi_main, applied);
	mdb_txn_abort(txn);
	return rc;
}

/* The emitter starts from the last committed position. */
static int start_emitter(esdb_store *s)
{
	uint64_t last;
	int rc = esdb__stored_last(s, &last, NULL);
	return rc ? esdb__mdb_rc(rc) : esdb__emitter_create(s, last);
}

static bool limits_equal(const esdb_limits *a, const esdb_limits *b)
{
	return a->max_stream_id == b->max_stream_id &&
	       a->max_event_type == b->max_event_type &&
	       a->max_event_bytes == b->max_event_bytes &&
	       a->max_append_events == b->max_append_events &&
	       a->max_append_bytes == b->max_append_bytes &&
	       a->max_key == b->max_key;
}

/* Limits set for an existing store that differ from its stored ones
 * are changed through a command, as replicas will change them. */
static int change_limits(esdb_store *s)
{
	esdb_limits want = s->limits;
	esdb_cmd cmd;
	esdb_result res;
	if (!s->limits_set)
		return 0;
	esdb__limits_merge(&want, &s->limits_req);
	if (limits_equal(&want, &s->limits))
		return 0;
	int rc = esdb_cmd_limits_set(&want, &cmd);
	if (rc)
		return rc;
	rc = esdb_store_apply(s, ESDB_INDEX_NEXT, &cmd, 1, &res);
	free(cmd.buf);
	return rc ? rc : res.rc;
}

/* Create, configure and open the LMDB environment. */
static int env_open(esdb_store *s, const char *path, uint64_t mapsize)
{
	unsigned flags = MDB_NOTLS;
	/* ESDB_DURABILITY_SYNC: LMDB's default, no flag (esdb.h). */
	if (s->durability == ESDB_DURABILITY_NO_META_SYNC)
		flags |= MDB_NOMETASYNC;
	else if (s->durability == ESDB_DURABILITY_NOSYNC)
		flags |= MDB_NOSYNC | MDB_NOMETASYNC;
	if (s->readonly)
		flags |= MDB_RDONLY;
	int rc = mdb_env_create(&s->env);
	if (rc)
		return rc;
	if ((rc = mdb_env_set_maxdbs(s->env, 16)) ||
	    (rc = mdb_env_set_maxreaders(s->env, 1024)) ||
	    (rc = mdb_env_set_mapsize(s->env, mapsize)) ||
	    (rc = mdb_env_open(s->env, path, flags, s->file_mode))) {
		mdb_env_close(s->env);
		s->env = NULL;
		return esdb__mdb_rc(rc);
	}
	return 0;
}

int esdb__env_reopen(esdb_store *s, uint64_t mapsize)
{
	esdb__val_forget(s->env);
	mdb_env_close(s->env);
	s->env = NULL;
	int rc = env_open(s, s->path, mapsize);
	if (rc == 0 &&
	    ((rc = open_dbis(s)) || (rc = esdb__replica_mark_load(s)))) {
		mdb_env_close(s->env);
		s->env = NULL;
	}
	return rc;
}

int esdb_store_open(esdb_store *s, const char *path)
{
	struct stat st;
	bool fresh = false;
	char made[PATH_MAX]; /* the first directory this open creates */
	int rc;
	if (!s || !path)
		return ESDB_EINVAL;
	if (s->is_open)
		return ESDB_EBUSY;
	if ((rc = esdb__first_missing_dir(path, made)) ||
	    (rc = prepare_dir(s, path, &st, &fresh)))
		return esdb__space_rc(path, rc);

	pthread_mutex_lock(&registry_lock);
	if (registered(&st)) {
		pthread_mutex_unlock(&registry_lock);
		return ESDB_EBUSY;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->registry_next = registry;
	registry = s;
	pthread_mutex_unlock(&registry_lock);

	if (!s->readonly && (rc = esdb__writer_lock(s, path)))
		goto fail_registered;
	s->map_lost = false;
	/* LMDB's lock file is sparse and written through its map, also by a
	 * read-only open: a page the disk has no room for would be a SIGBUS,
	 * not an error. */
	if ((rc = esdb__lock_file_prealloc(s, path)) ||
	    (rc = env_open(s, path, s->mapsize)))
		goto fail_registered;
	/* A new data.mdb is durable once its directory entry is. */
	if ((rc = open_dbis(s)) || (fresh && (rc = esdb__fsync_path(path))) ||
	    (rc = esdb__replica_mark_load(s)) || (rc = start_emitter(s)))
		goto fail_env;
	if (!(s->path = strdup(path))) {
		rc = ENOMEM;
		goto fail_env;
	}
	if ((rc = esdb__map_lock_init(s))) {
		free(s->path);
		s->path = NULL;
		goto fail_env;
	}
	pthread_mutex_init(&s->apply_lock, NULL);
	s->commits = 0;
	s->failed = 0;
	s->is_open = true;
	if (!s->readonly &&
	    ((rc = esdb__failstop_reopen(s)) || (rc = change_limits(s)) ||
	     (rc = esdb__commit_start(s)))) {
		s->is_open = false;
		pthread_rwlock_destroy(&s->map_lock);
		pthread_mutex_destroy(&s->apply_lock);
		free(s->path);
		s->path = NULL;
		goto fail_env;
	}
	return 0;

fail_env:
	esdb__emitter_destroy(s);
	esdb__val_forget(s->env);
	mdb_env_close(s->env);
	s->env = NULL;
fail_registered:
	unregister(s);
	/* A store that could not be made for want of space leaves nothing,
	 * its writer lock included (removed while still held). */
	if ((rc = esdb__space_rc(path, rc)) == ESDB_EDISK_FULL && fresh) {
		esdb__writer_lock_remove(s, path);
		esdb__unmake_store(path, made);
	}
	esdb__writer_unlock(s);
	return rc;
}

void esdb_store_close(esdb_store *s)
{
	if (!s)
		return;
	if (s->is_open) {
		esdb__commit_stop(s);
		esdb__emitter_destroy(s);
		s->is_open = false;
		esdb__val_forget(s->env);
		mdb_env_close(s->env);
		s->env = NULL;
		esdb__writer_unlock(s);
		pthread_rwlock_destroy(&s->map_lock);
		pthread_mutex_destroy(&s->apply_lock);
		free(s->path);
		unregister(s);
	}
	esdb__commit_close(s);
	pthread_mutex_destroy(&s->limits_lock);
	free(s);
}

int esdb_store_get_stats(esdb_store *s, esdb_store_stats *out)
{
	MDB_txn *txn;
	MDB_stat st;
	MDB_envinfo info;
	if (!out)
		return ESDB_EINVAL;
	int rc = esdb__read_begin(s, &txn);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	struct {
		MDB_dbi dbi;
		uint64_t *out;
	} counts[] = {
	    {s->dbi_events, &out->events},
	    {s->dbi_streams, &out->streams},
	    {s->dbi_types, &out->event_types},
	    {s->dbi_snapshots, &out->snapshots},
	    {s->dbi_subscriptions, &out->checkpoints},
	};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		if ((rc = mdb_stat(txn, counts[i].dbi, &st)))
			goto out;
		*counts[i].out = st.ms_entries;
	}
	if ((rc = mdb_env_info(s->env, &info)) ||
	    (rc = mdb_env_stat(s->env, &st)))
		goto out;
	out->bytes_used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	out->map_size = info.me_mapsize;
	out->last_txn_id = info.me_last_txnid;
	out->commits = __atomic_load_n(&s->commits, __ATOMIC_RELAXED);
	out->store_failed = esdb_store_get_failure(s);
out:
	esdb__read_end(s, txn);
	return esdb__mdb_rc(rc);
}
