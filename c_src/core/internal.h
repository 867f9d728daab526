/* internal.h: the store structure and helpers shared by the core's files. */
#ifndef ESDB_INTERNAL_H
#define ESDB_INTERNAL_H

#include "commit.h"
#include "esdb.h"

#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <sys/types.h>

/* On-disk format version, kept in meta under "format" (docs/FORMAT.md). */
#define ESDB_FORMAT_VERSION 1
#define ESDB_FORMAT_MAGIC   "exesdb"

/* LMDB's compile-time key limit is 511 bytes; longer names are keyed by a
 * prefix, a hash and a counter (names.c). */
#define ESDB_KEY_MAX         511
#define ESDB_NAME_INLINE_MAX ESDB_NAME_ORDERED_BYTES

struct esdb_emitter;

struct esdb_store {
	/* options, fixed once open */
	uint64_t mapsize;
	esdb_durability durability;
	/* The limits apply uses: the stored ones once open (published under
	 * limits_lock after a commit that changes them). limits_req holds
	 * what esdb_store_set_limits asked for, 0 fields meaning keep. */
	esdb_limits limits;
	esdb_limits limits_req;
	bool limits_set;
	pthread_mutex_t limits_lock;
	bool create;
	bool readonly;
	/* a cluster replica's store (replica_mark.c) */
	bool replica_marked;
	unsigned file_mode;  /* dirs: the same plus x where r */
	uint64_t read_bytes; /* byte budget of one read call */

	/* open state */
	bool is_open;
	char *path;
	dev_t dev;
	ino_t ino;
	MDB_env *env;
	/* the unnamed database: the named ones' records, and "applied" */
	MDB_dbi dbi_main;
	MDB_dbi dbi_meta, dbi_events, dbi_streams, dbi_stream_index, dbi_types,
	    dbi_type_index, dbi_snapshots, dbi_subscriptions;

	/* Readers hold it shared for a read txn; growing the map takes it
	 * exclusive, as LMDB forbids mdb_env_set_mapsize with live txns. */
	pthread_rwlock_t map_lock;
	/* Serialises write transactions (the writer and esdb_store_apply). */
	pthread_mutex_t apply_lock;
	/* A resize lost the map and reopening at lost_mapsize failed too:
	 * the next transaction tries again (map.c). */
	bool map_lost;
	uint64_t lost_mapsize;
	uint64_t commits;
	/* 0, or the error that fail-stopped writes (failstop.c); atomic. */
	int failed;
	struct esdb_emitter *emitter;

	/* the commit path (commit.h): the local writer unless set */
	esdb_commit_path commit;
	bool commit_running;
	uint64_t q_max_bytes; /* the local writer's bound, in bytes */

	struct esdb_store *registry_next;

	/* the writer lock (lock.c) */
	char owner[256]; /* label written for others to see */
	bool lock_held;
	int lock_fd;
	bool holder_known; /* after ESDB_ELOCKED: who holds it */
	long holder_pid;
	char holder_owner[256];
};

/* The writer lock (lock.c): an exclusive flock on <dir>/writer.lock,
 * ESDB_ELOCKED (holder noted in s) when another process has it. */
#define ESDB_WRITER_LOCK "writer.lock"
int esdb__writer_lock(esdb_store *s, const char *dir);
void esdb__writer_unlock(esdb_store *s);
/* Remove the lock file of a store whose creation failed, while held. */
void esdb__writer_lock_remove(esdb_store *s, const char *dir);

/* Begin/end a read-only transaction under the map lock. */
int esdb__read_begin(esdb_store *s, MDB_txn **txn);
void esdb__read_end(esdb_store *s, MDB_txn *txn);

/* The map (map.c). map_lock prefers writers. */
int esdb__map_lock_init(esdb_store *s);
/* Take map_lock shared, with the map there (0), or fail with why the map
 * cannot be had back (ENOMEM, ...). */
int esdb__map_rdlock(esdb_store *s);
/* Take the map size another process set (after MDB_MAP_RESIZED). */
int esdb__adopt_mapsize(esdb_store *s);
/* The map is full: grow it, waiting for the transactions in progress. */
int esdb__map_grow(esdb_store *s);
/* Keep the map at least twice the used size: grow when more than half is
 * used. With `wait` false it gives up when anyone holds the map lock. */
int esdb__map_headroom(esdb_store *s, bool wait);
/* Close and open the LMDB environment again with this map size, under
 * the map lock held exclusive (store.c). */
int esdb__env_reopen(esdb_store *s, uint64_t mapsize);

/* The mode of directories a store creates, from its file mode. */
unsigned esdb__dir_mode(const esdb_store *s);

/* fsync a file or directory by name; its parent directory (dirsync.c). */
int esdb__fsync_path(const char *path);
int esdb__fsync_parent(const char *path);

/* Fail-stop (failstop.c). esdb__commit_failed takes a failed commit's
 * error and answers ESDB_ESTORE_FAILED when it stopped the store, or the
 * error itself when nothing could have been lost (a full disk).
 * esdb__failstop_reopen runs at a writable open: a store that failed
 * before must verify, then its marker goes. */
int esdb__commit_failed(esdb_store *s, int rc);
int esdb__failstop_reopen(esdb_store *s);

/* The window of requests applied (requests.c): whether id is in it,
 * how many ids were recorded, and recording id as number `count` (the
 * oldest id leaves once it is full). All in the caller's write
 * transaction; LMDB errors, or ESDB_ECORRUPT (seen, count only: read
 * the count before the command writes anything, so a bad window
 * refuses the command rather than answering corrupt for one applied). */
int esdb__request_seen(MDB_txn *txn, MDB_dbi meta, const uint8_t id[16],
                       bool *seen);
int esdb__request_count(MDB_txn *txn, MDB_dbi meta, uint64_t *count);
int esdb__request_record(MDB_txn *txn, MDB_dbi meta, const uint8_t id[16],
                         uint64_t count);

/* Make l the limits readers of esdb_store_get_limits see. */
void esdb__limits_publish(esdb_store *s, const esdb_limits *l);

/* Disk space (space.c). esdb__space_rc names a full disk
 * ESDB_EDISK_FULL: ENOSPC, EDQUOT, or EIO (LMDB's short write) with the
 * disk of `path` nearly full. esdb__lock_file_prealloc allocates LMDB's
 * lock file in `dir` before LMDB maps it. esdb__first_missing_dir: the
 * first directory of `path` that does not exist ("" when none);
 * esdb__unmake_store removes a store's files and the directories from
 * `path` up to that one. */
bool esdb__disk_low(const char *path);
int esdb__space_rc(const char *path, int rc);
int esdb__lock_file_prealloc(const esdb_store *s, const char *dir);
int esdb__first_missing_dir(const char *path, char out[PATH_MAX]);
void esdb__unmake_store(const char *path, const char *made);

/* Map an LMDB code to ours where we have a better name. */
int esdb__mdb_rc(int rc);

/* Emitter (emitter.c): created at open with the last committed position;
 * esdb__emit queues a commit's events for the emitter's thread (a copy:
 * they may point into command buffers) and never waits for delivery;
 * esdb__emitter_destroy stops the thread and drops what is queued. */
int esdb__emitter_create(esdb_store *s, uint64_t last_position);
void esdb__emitter_destroy(esdb_store *s);
void esdb__emit(esdb_store *s, const esdb_event *events, size_t n);
/* The store under the emitter was replaced (a restore): go on from its
 * last position, vouching for nothing before; what is queued is dropped. */
void esdb__emitter_restart(esdb_store *s, uint64_t last_position);
/* Tests only: the next commit's fan-out is dropped as if it could not be
 * queued. */
extern bool esdb__emitter_fault;

/* The commit path's life cycle (commit.c): start at a writable open (the
 * local writer unless another was set), stop at close (answers what is
 * pending), close when the handle goes. */
int esdb__commit_start(esdb_store *s);
void esdb__commit_stop(esdb_store *s);
void esdb__commit_close(esdb_store *s);

/* Apply under the apply lock, growing the map on MDB_MAP_FULL (apply.c).
 * `index` as for esdb_store_apply. */
int esdb__apply_locked(esdb_store *s, uint64_t index, const esdb_cmd *cmds,
                       size_t n, esdb_result *results);
/* Read the replica mark into s->replica_marked (replica_mark.c). */
int esdb__replica_mark_load(esdb_store *s);
/* The applied index (0 when absent), in any txn; `main` is dbi_main. */
int esdb__applied_index(MDB_txn *txn, MDB_dbi main, uint64_t *index);
/* The last event's position (0: none) and, unless applied is NULL, the
 * applied index of the environment now open, in a read transaction of
 * its own: for callers that hold no map lock or hold it exclusive. */
int esdb__stored_last(esdb_store *s, uint64_t *last, uint64_t *applied);
/* Tests only: the rcs the next apply attempts fail with before their
 * transaction begins, in order (0 ends the list, ESDB__FAULT_PASS lets
 * one attempt go on). */
#define ESDB__FAULT_PASS (-1)
extern int esdb__apply_fault[4];

/* A compacted copy of the store into fd (copy.c; esdb_store_backup too). */
int esdb__copy_to_fd(esdb_store *s, int fd);

/* esdb_store_verify's checks inside a read transaction the caller holds. */
int esdb__verify_txn(esdb_store *s, MDB_txn *txn,
                     void (*report)(void *ctx, const char *msg), void *ctx,
                     uint64_t *problems);

/* ---- values LMDB hands back (values.c) -------------------------------- */

/* Check that v lies inside its page, or its overflow pages inside the
 * file, before anything reads it: 0, or ESDB_ECORRUPT with the place
 * recorded for esdb_where_take. */
int esdb__val_check(MDB_txn *txn, const MDB_val *v, esdb_where_kind kind,
                    uint64_t number);
/* Record where a corruption was found when rc says corrupt; returns rc,
 * ESDB_EFORMAT (a stored record of another version) as ESDB_ECORRUPT. */
int esdb__corrupt_at(int rc, esdb_where_kind kind, uint64_t number);
/* Drop what values.c cached about env (before mdb_env_close). */
void esdb__val_forget(MDB_env *env);
/* Around a write transaction on this thread (apply.c). */
void esdb__val_writing(bool on);
/* The page of env's data file at addr; false when addr is outside it. */
bool esdb__page_of(MDB_env *env, uintptr_t addr, uint64_t *page);

/* ---- name-keyed records (names.c) ------------------------------------- */

/* A record keyed by a name (stream, type, snapshot, checkpoint) starts with
 * the 8-byte record header, then u16 name length and the name itself. */
typedef struct esdb_name_key {
	uint8_t buf[ESDB_KEY_MAX];
	MDB_val val;
} esdb_name_key;

/* Find `name` in dbi. On success *found tells whether it exists; `key`
 * receives the key it has (found) or the key to insert it under (not
 * found); `val` receives the stored record when found. */
int esdb__name_find(MDB_txn *txn, MDB_dbi dbi, const char *name, size_t len,
                    esdb_name_key *key, MDB_val *val, bool *found);

/* The name stored in a name-keyed record (no checksum check). */
int esdb__name_of(const MDB_val *rec, const char **name, size_t *len);

#endif
