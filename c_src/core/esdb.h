/* esdb.h: the ExESDB core, an event store on LMDB (no Erlang headers here). */
#ifndef ESDB_H
#define ESDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions
 *
 * Names: esdb_<noun>_<verb>[_<attribute>], as LMDB's mdb_txn_begin and
 * mdb_env_set_mapsize. The noun is what the call acts on (store, stream,
 * type, all for $all, snapshot, checkpoint, emitter, cmd, limits, error,
 * ...), the verb what it does; an attribute's accessors are
 * <noun>_get_<attr> and <noun>_set_<attr>. Command encoders are
 * esdb_cmd_<noun>_<verb>, named after what the command does. Types are
 * esdb_<noun>, callbacks esdb_<what they receive>_fn, constants
 * ESDB_<GROUP>_<NAME>. Names with two underscores (esdb__x) are internal.
 *
 * Every call returns int: 0 on success, one of the ESDB_E* codes below (a
 * reserved negative range), an errno value (positive, e.g. ENOSPC, EINVAL)
 * or an LMDB code (MDB_*, -30799..-30780) passed through. esdb_error_describe()
 * names them all. Outputs come last, as pointers.
 *
 * Life cycle: esdb_store_create() -> esdb_store_set_*() -> esdb_store_open() ->
 * ... -> esdb_store_close(). A store handle may be shared by any number of
 * threads once open; esdb_store_close() must not race with other calls on the
 * same handle.
 *
 * Versions are 1-based: a stream's first event has version 1, version 0
 * means the stream is empty or absent. Global positions are 1-based and
 * gap-free across the whole store.
 */

/* ---- Error codes ------------------------------------------------------ */

#define ESDB_OK                0
#define ESDB_ERANGE_FIRST      (-31999)
#define ESDB_EWRONG_VERSION    (-31999) /* expected version did not match */
#define ESDB_ESTREAM_NOT_FOUND (-31998)
#define ESDB_ESTREAM_DELETED   (-31997) /* tombstoned stream */
#define ESDB_ESTREAM_EXISTS    (-31996) /* NO_STREAM expected, stream exists */
#define ESDB_ECORRUPT          (-31995) /* a checksum or structure check failed */
#define ESDB_EFORMAT           (-31994) /* store written by another format */
#define ESDB_EBUSY             (-31993) /* path already open in this process */
#define ESDB_ECLOSED           (-31992) /* store closed or closing */
#define ESDB_ELIMIT            (-31991) /* a configured size or count limit */
#define ESDB_EINVAL            (-31990) /* malformed argument or command */
#define ESDB_ENOTFOUND         (-31989) /* snapshot or checkpoint absent */
#define ESDB_ENOTDIR           (-31988) /* path missing and creation disabled */
#define ESDB_EFOREIGN          (-31987) /* path holds something not an esdb store */
#define ESDB_EEMPTY            (-31986) /* an append with no events */
#define ESDB_EOVERLOADED       (-31985) /* the writer queue is full */
#define ESDB_ESTORE_FAILED     (-31984) /* writes refused after a failed flush */
#define ESDB_EDISK_FULL        (-31983) /* no space left for the store */
#define ESDB_ELOCKED           (-31982) /* another process writes this store */
#define ESDB_EOUTCOME_UNKNOWN  (-31981) /* may or may not have been applied */
#define ESDB_ENOT_LEADER       (-31980) /* a replica that cannot write now */
#define ESDB_ENOPROC           (-31979) /* the subscriber or owner process is gone */
#define ESDB_ERANGE_LAST       (-31979)

/* Name of any code this API returns. Never NULL; static storage. */
const char *esdb_error_describe(int rc);

/* Short stable identifier of a code ("wrong_expected_version", ...), for
 * bindings that map codes to atoms. Never NULL; static storage. */
const char *esdb_error_name(int rc);

/* ---- Options ---------------------------------------------------------- */

/* What an acknowledged commit survives. "Acknowledged" means its reply
 * (esdb_store_execute, the esdb_store_submit callback, the NIF's message) was
 * given. */
typedef enum esdb_durability {
	/* The default, LMDB's two flushes per commit: the commit's pages are
	 * fdatasync'ed, then its meta page is written through an O_DSYNC
	 * descriptor, both before anyone is answered. Every acknowledged
	 * commit survives a crash of the process, of the OS and a power loss
	 * (on a disk that honours flushes). */
	ESDB_DURABILITY_SYNC = 0,
	/* The old name of ESDB_DURABILITY_SYNC, from when it was not the
	 * default. */
	ESDB_DURABILITY_STRICT = ESDB_DURABILITY_SYNC,
	/* No flush at all (MDB_NOSYNC): tests and benchmarks only. A crash of
	 * the process loses nothing, but a power loss or OS crash can lose
	 * acknowledged commits and corrupt the store. */
	ESDB_DURABILITY_NOSYNC = 2,
	/* Opt-in, one flush per commit (MDB_NOMETASYNC): the commit's pages
	 * are fdatasync'ed before the reply, its meta page is written without
	 * a flush and reaches the disk with the next commit's flush or the
	 * OS's writeback. Acknowledged commits survive a crash of the
	 * process. A power loss or OS crash can roll back the latest
	 * acknowledged commit (its events were delivered to subscribers, and
	 * their positions are given to other events after the restart) but
	 * never corrupts the store. `make bench` shows what it saves
	 * (the *_no_meta_sync lines beside the default's). */
	ESDB_DURABILITY_NO_META_SYNC = 3,
} esdb_durability;

/*
 * Limits decide what apply accepts, so a store keeps them in its meta
 * database (written at creation) and every replica applies with the same
 * ones. esdb_store_set_limits() before esdb_store_open() gives the limits a new
 * store is created with; opening an existing store with limits set changes the
 * stored ones through a command (esdb_cmd_limits_set), as any other
 * mutation, unless the store is opened read-only, where the stored ones
 * win. A field of 0 means "keep": the stored value, or the default in a
 * new store. Lowered limits apply to later commands only: reads look any
 * name up whatever the limits (one over 65,535 bytes, which no record
 * can hold, is ESDB_EINVAL), so what was written stays readable.
 */
typedef struct esdb_limits {
	uint32_t max_stream_id;     /* bytes, default 1024 */
	uint32_t max_event_type;    /* bytes, default 512 */
	uint64_t max_event_bytes;   /* data + metadata of one event, 16 MiB */
	uint32_t max_append_events; /* events in one append, 10,000 */
	uint64_t max_append_bytes;  /* data + metadata of one append, 64 MiB */
	uint32_t max_key; /* snapshot source_uuid, subscription name, 1024 */
} esdb_limits;

/* One limit, as named when a command exceeds it (ESDB_ELIMIT). */
typedef enum esdb_limit_key {
	ESDB_LIMIT_NONE = 0,
	ESDB_LIMIT_STREAM_ID = 1,
	ESDB_LIMIT_EVENT_TYPE = 2,
	ESDB_LIMIT_EVENT_BYTES = 3,
	ESDB_LIMIT_APPEND_EVENTS = 4,
	ESDB_LIMIT_APPEND_BYTES = 5,
	ESDB_LIMIT_KEY = 6,
} esdb_limit_key;

/* Fill *limits with the defaults above. */
void esdb_limits_init(esdb_limits *limits);

/* The option name of a limit ("max_event_bytes", ...), "" for
 * ESDB_LIMIT_NONE. Static storage. */
const char *esdb_limit_name(esdb_limit_key key);

/* The value of one limit in *limits (0 for ESDB_LIMIT_NONE). */
uint64_t esdb_limits_lookup(const esdb_limits *limits, esdb_limit_key key);

/* ---- Store life cycle ------------------------------------------------- */

typedef struct esdb_store esdb_store;

/* Allocate an unopened store with default options. */
int esdb_store_create(esdb_store **out);

/* Initial LMDB map size in bytes (default 64 MiB). The map is kept at
 * least twice the used size: it doubles after a commit that leaves it more
 * than half used (when no read is in progress), before a backup or verify
 * starts, and whenever a commit finds it full. A growth that cannot get
 * its address space keeps the old map and answers ENOMEM. */
int esdb_store_set_mapsize(esdb_store *s, uint64_t bytes);
int esdb_store_set_durability(esdb_store *s, esdb_durability d);
/* The limits to create a new store with or to change an existing one's
 * to (see esdb_limits above; 0 fields keep). ESDB_EINVAL for a value out
 * of the record format's range (names 65535 bytes, payloads 4 GiB - 1)
 * and for a replica (a replicated commit path set: its limits change
 * through a LIMITS_SET command in the log). */
int esdb_store_set_limits(esdb_store *s, const esdb_limits *limits);
/* Bytes of encoded commands that may wait in the writer queue (default
 * 256 MiB, 4 appends of the largest default size); a submit beyond it is
 * answered ESDB_EOVERLOADED. A command larger than the bound is taken
 * when the queue is empty. Local to this process, not stored. */
#define ESDB_QUEUE_BYTES_DEFAULT (256ull << 20)
int esdb_store_set_queue_bytes(esdb_store *s, uint64_t bytes);
/* Create the directory when missing (default true). */
int esdb_store_set_create(esdb_store *s, bool create);
/* Open read-only: every mutation answers EROFS (default false). */
int esdb_store_set_readonly(esdb_store *s, bool readonly);
/* Permission bits of the files a store creates: data.mdb, lock.mdb and
 * backups (default 0600, owner only; the umask still applies). The
 * directories it creates get the same bits plus search (x) wherever read
 * is allowed: 0700 by default. Existing files and directories keep their
 * modes. Errors: ESDB_EINVAL (bits outside 0777, or owner lacks rw). */
int esdb_store_set_file_mode(esdb_store *s, unsigned mode);
/* Byte budget of one read call (default ESDB_READ_BYTES_DEFAULT): a read
 * hands out no more event bytes than this, except that it always hands
 * out at least one event, however big, so that paging makes progress.
 * An event's bytes are its data, metadata, stream id and event type.
 * Errors: ESDB_EINVAL for 0. */
int esdb_store_set_read_bytes(esdb_store *s, uint64_t bytes);
#define ESDB_READ_BYTES_DEFAULT (16ull << 20)

/* A label naming this process to others (an Erlang node name, a tool),
 * written beside its pid into the store's writer lock. At most 255
 * bytes, no newline. Errors: ESDB_EINVAL, ESDB_EBUSY (open already). */
int esdb_store_set_owner(esdb_store *s, const char *owner);

/* After esdb_store_open answered ESDB_ELOCKED: the pid (0: not yet written)
 * and owner label ("" if none) of the process that holds the store for
 * writing, as it wrote them. *owner points into the handle and lives
 * until the next open or close. Either output may be NULL.
 * Errors: ESDB_ENOTFOUND (the last open was not refused ESDB_ELOCKED). */
int esdb_store_get_lock_holder(const esdb_store *s, long *pid,
                               const char **owner);

/* Open the store in directory `path` (created when allowed) and start its
 * writer thread. One process writes a store: a writable open takes an
 * exclusive lock on <path>/writer.lock until esdb_store_close (read-only opens
 * take none and may run beside the writer).
 * Errors: ESDB_ELOCKED (another process has it open for writing: see
 * esdb_store_get_lock_holder), ESDB_EBUSY (already open in this process),
 * ESDB_ENOTDIR (no store and creation off: the directory or its data.mdb
 * missing, or data.mdb empty), ESDB_EFORMAT (another format version),
 * ESDB_EFOREIGN (not a store, or a file where a directory of the path
 * should be), ESDB_ECORRUPT, errno values. On failure the handle stays
 * unopened and may be opened again or closed. */
int esdb_store_open(esdb_store *s, const char *path);

/* The limits the store applies with: after esdb_store_open() the stored ones,
 * before it those esdb_store_set_limits() gave over the defaults. Encode
 * commands with them. Threading: any thread, any time before close. */
int esdb_store_get_limits(esdb_store *s, esdb_limits *out);

/* Stop the writer (queued commands are answered ESDB_ECLOSED), close LMDB
 * and free the handle. Accepts an unopened handle and NULL. */
void esdb_store_close(esdb_store *s);

/* ---- Events ----------------------------------------------------------- */

/* Expected-version sentinels; any other value is an exact version. */
#define ESDB_EXPECT_ANY           UINT64_MAX
#define ESDB_EXPECT_NO_STREAM     (UINT64_MAX - 1)
#define ESDB_EXPECT_STREAM_EXISTS (UINT64_MAX - 2)

/* How a payload's bytes were made. Recorded with each payload (event data
 * and metadata, snapshot data and metadata) so that readers decode only
 * what was written as a term and hand everything else out as bytes. */
typedef enum esdb_encoding {
	ESDB_ENCODING_BYTES = 0, /* opaque bytes: never decoded */
	ESDB_ENCODING_TERM = 1,  /* Erlang external term format */
	/* Read only, never written: a payload stored before encodings were
	 * recorded (record version 1). Bytes, or a term if the writer's
	 * serializer made one; nobody said which. */
	ESDB_ENCODING_LEGACY = 2,
} esdb_encoding;

/* An event to append. All pointers are borrowed for the call only. */
typedef struct esdb_new_event {
	uint8_t event_id[16];
	const char *event_type;
	size_t event_type_len;
	const void *data;
	size_t data_len;
	const void *metadata;
	size_t metadata_len;
	const uint8_t *causation_id;   /* NULL or 16 bytes */
	const uint8_t *correlation_id; /* NULL or 16 bytes */
	esdb_encoding data_encoding, metadata_encoding;
} esdb_new_event;

/* A stored event as a read hands it out. Every pointer borrows LMDB's
 * memory and is valid only inside the callback that receives it. */
typedef struct esdb_event {
	uint64_t position;       /* global, 1-based */
	uint64_t stream_version; /* 1-based */
	uint64_t created_us;     /* microseconds since the Unix epoch */
	const uint8_t *event_id; /* 16 bytes */
	const char *stream_id;
	size_t stream_id_len;
	const char *event_type;
	size_t event_type_len;
	const void *data;
	size_t data_len;
	const void *metadata;
	size_t metadata_len;
	const uint8_t *causation_id;   /* NULL or 16 bytes */
	const uint8_t *correlation_id; /* NULL or 16 bytes */
	esdb_encoding data_encoding, metadata_encoding;
} esdb_event;

/* Read callback: return 0 to go on, anything else stops the read and is
 * returned by the read call. */
typedef int (*esdb_event_fn)(void *ctx, const esdb_event *ev);

/* A 16-byte id as UUID text (8-4-4-4-12 lowercase hex): 36 characters,
 * no terminating NUL. */
void esdb_uuid_format(const uint8_t id[16], char out[36]);

/* ---- Commands --------------------------------------------------------- */

/*
 * Every mutation is an encoded command (docs/FORMAT.md). Encoders return a
 * malloc'ed buffer the caller owns (free() it, or hand it to
 * esdb_store_submit). Commands carry the time stamp they were encoded with, so
 * applying the same bytes anywhere gives the same state.
 */
typedef struct esdb_cmd {
	uint8_t *buf;
	size_t len;
	/* Set by the encoders: on ESDB_ELIMIT the limit exceeded (buf is
	 * then NULL), else ESDB_LIMIT_NONE. */
	esdb_limit_key limit;
} esdb_cmd;

/* The outcome of one command. For an append: the new stream version and
 * the global position of its first event (both 0 on failure). When rc is
 * ESDB_ELIMIT, `limit` names the limit and `limit_max` is its value in
 * the limits the command was applied with. */
typedef struct esdb_result {
	int rc;
	uint64_t version;
	uint64_t position;
	esdb_limit_key limit;
	uint64_t limit_max;
} esdb_result;

/* Stream ids are 1 to max_stream_id bytes, any bytes, except that ids
 * beginning with '$' are reserved for the store's own streams: `$all`
 * (every event, read with esdb_all_read) and system streams to come, as
 * EventStoreDB/KurrentDB reserve them. Appends and deletes refuse an
 * empty or reserved id with ESDB_EINVAL, in the encoders and again in
 * apply; stream reads refuse `$all` (it is not a stream) and read other
 * reserved ids like any absent stream.
 * Returns 0 when `id` may be written, else ESDB_EINVAL. Lengths are
 * checked against the limits by the encoders, not here. */
#define ESDB_RESERVED_PREFIX '$'
int esdb_stream_id_check(const char *id, size_t len);

/* Encode an append. Validates against `limits` (NULL: defaults; pass the
 * store's, esdb_store_get_limits). On ESDB_ELIMIT out->limit names the limit.
 * Errors: ESDB_EINVAL (also an empty or reserved stream id), ESDB_ELIMIT,
 * ESDB_EEMPTY, ENOMEM. */
int esdb_cmd_stream_append(const esdb_limits *limits, const char *stream_id,
                           size_t stream_id_len, uint64_t expected_version,
                           const esdb_new_event *events, size_t n,
                           esdb_cmd *out);
/* Tombstone a stream: reads and appends then answer ESDB_ESTREAM_DELETED;
 * its events stay in $all. expected_version as for appends. */
int esdb_cmd_stream_delete(const esdb_limits *limits, const char *stream_id,
                           size_t stream_id_len, uint64_t expected_version,
                           esdb_cmd *out);
/* Store (replace) the snapshot of sn->source_uuid; sn->created_us is
 * ignored (the command's time stamp becomes it). */
struct esdb_snapshot;
int esdb_cmd_snapshot_put(const esdb_limits *limits,
                          const struct esdb_snapshot *sn, esdb_cmd *out);
int esdb_cmd_snapshot_delete(const esdb_limits *limits, const char *source_uuid,
                             size_t uuid_len, esdb_cmd *out);
/* A subscription's durable state: its last acknowledged position (or
 * version) and an opaque definition the subscription layer owns. */
int esdb_cmd_checkpoint_put(const esdb_limits *limits, const char *name,
                            size_t name_len, uint64_t checkpoint,
                            const void *definition, size_t definition_len,
                            esdb_cmd *out);
int esdb_cmd_checkpoint_delete(const esdb_limits *limits, const char *name,
                               size_t name_len, esdb_cmd *out);

/* Change a store's limits (every field nonzero and in range, else
 * ESDB_EINVAL). Applied like any command, so replicas change them at the
 * same point; esdb_store_open() submits it when limits were set. */
int esdb_cmd_limits_set(const esdb_limits *limits, esdb_cmd *out);

/* Mark an encoded append as a resubmission after an unknown outcome
 * (ESDB_EOUTCOME_UNKNOWN, a leader change, an unreachable leader): apply
 * then recognises an :any, stream-exists or no-stream append whose
 * events already sit contiguously within the stream's last
 * ESDB_RETRY_WINDOW versions, and answers its original result instead of
 * writing them again (an exact expected version pins where to look, so
 * its retries are recognised with or without the mark). Unmarked
 * appends only check the stream's tail. Sets the command's retry flag
 * and reseals it; marking twice is harmless. A snapshot or checkpoint
 * put or delete with a request id (esdb_cmd_set_request) is marked the
 * same way. ESDB_EINVAL for anything else. Stores older than this flag
 * refuse a marked command (ESDB_EINVAL): docs/FORMAT.md. */
#define ESDB_RETRY_WINDOW 1024
int esdb_cmd_mark_retry(esdb_cmd *cmd);

/* Give an encoded snapshot or checkpoint put or delete a request id: 16
 * bytes unique to one call, the same in every try of it (the cluster
 * gateway's). A store that applies it records the id among the last
 * ESDB_REQUEST_WINDOW requests it applied; a try marked with
 * esdb_cmd_mark_retry whose id is there is answered ok and not applied
 * again (a put applied twice would overwrite another writer's put made
 * in between; a delete, a record put again since). A refused command
 * records nothing (its retry is refused or applied as a first try would
 * be). Unmarked, the id is only recorded. Reseals the command;
 * ESDB_EINVAL for other commands or one that has an id. Stores older
 * than this flag refuse the command (ESDB_EINVAL): docs/FORMAT.md. */
#define ESDB_REQUEST_WINDOW 1024
int esdb_cmd_set_request(esdb_cmd *cmd, const uint8_t id[16]);

/* Check a command's framing and checksum without applying it.
 * Errors: ESDB_EINVAL (truncated/unknown), ESDB_ECORRUPT (checksum),
 * ESDB_EFORMAT (command of another version). */
int esdb_cmd_check(const uint8_t *buf, size_t len);

/* Apply n commands in one LMDB write transaction, deterministically: the
 * same commands on the same state give the same state and results. Each
 * command's outcome goes to results[i]; a command that fails validation
 * fails alone. The return value is 0 when the transaction committed, or
 * the error that aborted it (ENOSPC, EIO, ...), in which case every
 * result carries that error and nothing was written.
 *
 * Commands come from a log: cmds[i] is the entry at log index
 * `index + i` (ESDB_INDEX_NEXT: the store numbers them itself, from the
 * one after its applied index, as the local writer does). The index of
 * the batch's last command is stored in the same transaction as its
 * effects (esdb_store_get_applied_index), so a command at or below the stored
 * index was applied before and is skipped: its result is
 * ESDB_EOUTCOME_UNKNOWN with version and position 0 (what it did then is
 * not known here), and a batch wholly at or below it is a no-op.
 * Replaying a log after a crash is thus idempotent. A batch that
 * changes nothing (every command refused) commits nothing and leaves the
 * index where it was. Indexes may jump (log entries that are not
 * commands) but never go back. When LMDB cannot hold a batch in one
 * transaction it is applied in parts, each recording its own last index.
 * Errors: ESDB_EINVAL (index + n - 1 overflows).
 * Threading: serialised with the writer thread; callable from any thread. */
#define ESDB_INDEX_NEXT 0
int esdb_store_apply(esdb_store *s, uint64_t index, const esdb_cmd *cmds,
                     size_t n, esdb_result *results);

/* esdb_store_apply with each command's log index given: cmds[i] is at
 * indexes[i], strictly increasing and nonzero (ESDB_EINVAL otherwise), so
 * commands of many log entries with gaps between them apply in one
 * transaction. Unlike esdb_store_apply, a batch whose commands were all
 * refused still records its last index when that moves the stored one
 * on (one commit), so the stored index tells how far the log was
 * applied. A replicated log numbers an entry's commands within it
 * (c_src/replica). */
int esdb_store_apply_at(esdb_store *s, const uint64_t *indexes,
                        const esdb_cmd *cmds, size_t n, esdb_result *results);

/* The log index of the last applied batch, as committed (0 in a new
 * store, or one made before the index was recorded). Any thread. */
int esdb_store_get_applied_index(esdb_store *s, uint64_t *index);

/* A cluster replica's store is marked so in its data file (copies carry
 * the mark). Opened without a replicated commit path (the CLI, a
 * single-node open), a marked store reads as any other, but
 * esdb_store_submit and esdb_store_apply answer ESDB_ENOT_LEADER: only
 * its replica writes it (esdb_store_apply answers so on the handle the
 * replica runs on too: it writes with esdb_store_apply_at).
 * esdb_store_mark_replica marks an open, writable store (the replica does, when
 * it starts) and flushes; `restart_index` also sets its applied index to 0: a
 * single-node store becoming a cluster's first member, whose commands raft's
 * log numbers from there on. A marked store stays marked (no-op). Errors:
 * ESDB_EINVAL, ESDB_ECLOSED, EROFS, LMDB's. */
int esdb_store_mark_replica(esdb_store *s, bool restart_index);
int esdb_store_get_replica_mark(esdb_store *s, bool *marked);

/* Completion callback for esdb_store_submit, called once on the commit path's
 * thread (the writer's, by default) or on the submitting thread when
 * submission fails. Keep it short. */
typedef void (*esdb_result_fn)(void *ctx, const esdb_result *result);

/* Hand a command to the store's commit path (commit.h; by default the
 * local group-commit writer), which answers through `done` once it is
 * committed and applied. Takes ownership of cmd->buf in every case.
 * Errors from the path itself (ESDB_ECLOSED; the local writer's
 * ESDB_EOVERLOADED when its queue holds its bound in bytes) are reported
 * through `done`, on the calling thread, as well as returned. */
int esdb_store_submit(esdb_store *s, esdb_cmd *cmd, esdb_result_fn done,
                      void *ctx);

/* Withdraw a submitted command the commit path has not taken into its
 * log yet, for a caller that gives up waiting: the first such command
 * whose ctx `match` accepts is removed and answered through its `done`,
 * on the calling thread, with ETIMEDOUT; it is never applied. Returns 0
 * when withdrawn, ESDB_ENOTFOUND when no command matched (the path has
 * taken it, or it was answered): its outcome then comes through `done`
 * as usual. `match` runs under the path's lock and must not call the
 * store. */
int esdb_store_cancel(esdb_store *s, bool (*match)(void *ctx, void *arg),
                      void *arg);

/* Submit and wait: the synchronous form. `result` may be NULL. Returns
 * the command's rc. */
int esdb_store_execute(esdb_store *s, esdb_cmd *cmd, esdb_result *result);

/* Convenience: encode + execute. */
int esdb_stream_append(esdb_store *s, const char *stream_id,
                       size_t stream_id_len, uint64_t expected_version,
                       const esdb_new_event *events, size_t n,
                       esdb_result *result);
int esdb_stream_delete(esdb_store *s, const char *stream_id,
                       size_t stream_id_len, uint64_t expected_version);

/* ---- Reads ------------------------------------------------------------ */

/* Reads run in their own read-only LMDB transaction on the calling
 * thread and never wait for the writer. Each hands one page of events to
 * `fn`, in order: at most max_count events and at most the store's byte
 * budget (esdb_store_set_read_bytes; the first event always goes). It stops
 * early when `fn` returns nonzero and returns that value.
 *
 * A page can be short without reaching the end (the byte budget cut it),
 * so a caller that pages must not take a short page for the end: it
 * resumes where `*next` says. `next` may be NULL for a caller that reads
 * one page only. */

typedef enum esdb_direction {
	ESDB_DIRECTION_FORWARD = 0,
	ESDB_DIRECTION_BACKWARD = 1,
} esdb_direction;

/* Where a read stopped, valid when the read returned 0: `end` when the
 * source holds nothing past the last event handed out (in the read's
 * direction, as of the read's transaction); otherwise `from` is the
 * version (stream reads) or global position ($all and type reads) of the
 * next event, to pass as `from` to the next call. */
typedef struct esdb_read_next {
	bool end;
	uint64_t from;
} esdb_read_next;

/* Read a stream from version `from` (inclusive; forward: 0 and 1 both
 * mean the start; backward: UINT64_MAX means the end).
 * Errors: ESDB_ESTREAM_NOT_FOUND, ESDB_ESTREAM_DELETED, ESDB_ECORRUPT,
 * ESDB_EINVAL (an empty id, or `$all`: see esdb_stream_id_check). */
int esdb_stream_read(esdb_store *s, const char *stream_id, size_t len,
                     uint64_t from, uint32_t max_count, esdb_direction dir,
                     esdb_event_fn fn, void *ctx, esdb_read_next *next);

/* Read $all from position `from` (inclusive, same conventions). */
int esdb_all_read(esdb_store *s, uint64_t from, uint32_t max_count,
                  esdb_direction dir, esdb_event_fn fn, void *ctx,
                  esdb_read_next *next);

/* Events of one type, forward, from global position `from` inclusive.
 * An unknown type reads as empty (and `end`). */
int esdb_type_read(esdb_store *s, const char *event_type, size_t len,
                   uint64_t from, uint32_t max_count, esdb_event_fn fn,
                   void *ctx, esdb_read_next *next);

/* Stream state. *version is 0 for an absent stream; *deleted tells a
 * tombstone. Either output may be NULL. `$all` is not a stream:
 * ESDB_EINVAL. */
int esdb_stream_get_info(esdb_store *s, const char *stream_id, size_t len,
                         uint64_t *version, bool *exists, bool *deleted);

/* One listed stream; pointers valid inside the callback only. */
typedef struct esdb_stream {
	const char *stream_id;
	size_t stream_id_len;
	uint64_t version;
	uint64_t created_us;
	bool deleted;
} esdb_stream;
typedef int (*esdb_stream_fn)(void *ctx, const esdb_stream *st);

/* Streams in listing order of their ids (esdb_name_compare), strictly
 * after `after` (NULL: from the first), at most max_count. Resume with
 * the last id seen. */
int esdb_stream_list(esdb_store *s, const char *after, size_t after_len,
                     uint32_t max_count, esdb_stream_fn fn, void *ctx);

/* Names longer than LMDB's key limit are keyed by a prefix and a hash
 * (docs/FORMAT.md, "Name keys"), so listings (streams, checkpoints) give
 * names in byte order except that names longer than
 * ESDB_NAME_ORDERED_BYTES sharing their first ESDB_NAME_ORDERED_BYTES
 * bytes come in a stable but unspecified order among themselves (by a
 * hash of the whole name). */
#define ESDB_NAME_ORDERED_BYTES 500

/* Compare two names in listing order: <0, 0 or >0. 0 for equal names,
 * and for long names whose prefix and hash tie (listed in the order they
 * were created). */
int esdb_name_compare(const char *a, size_t alen, const char *b, size_t blen);

/* ---- Snapshots -------------------------------------------------------- */

typedef struct esdb_snapshot {
	const char *source_uuid;
	size_t source_uuid_len;
	uint64_t source_version;
	const char *source_type;
	size_t source_type_len;
	const void *data;
	size_t data_len;
	const void *metadata;
	size_t metadata_len;
	uint64_t created_us;
	esdb_encoding data_encoding, metadata_encoding;
} esdb_snapshot;
typedef int (*esdb_snapshot_fn)(void *ctx, const esdb_snapshot *snap);

/* Errors: ESDB_ENOTFOUND, ESDB_ECORRUPT. fn runs once, inside the read. */
int esdb_snapshot_get(esdb_store *s, const char *source_uuid, size_t len,
                      esdb_snapshot_fn fn, void *ctx);

/* ---- Subscription checkpoints ----------------------------------------- */

typedef struct esdb_checkpoint {
	const char *name;
	size_t name_len;
	uint64_t checkpoint;
	const void *definition;
	size_t definition_len;
	uint64_t updated_us;
} esdb_checkpoint;
typedef int (*esdb_checkpoint_fn)(void *ctx, const esdb_checkpoint *cp);

int esdb_checkpoint_get(esdb_store *s, const char *name, size_t len,
                        esdb_checkpoint_fn fn, void *ctx);
/* Paged like esdb_stream_list. */
int esdb_checkpoint_list(esdb_store *s, const char *after, size_t after_len,
                         uint32_t max_count, esdb_checkpoint_fn fn, void *ctx);

/* ---- Emitter: committed events to subscriber groups --------------------- */

/*
 * After every commit the store fans the committed events out to the
 * members of three kinds of topic, in the style of Erlang's :pg: all
 * events, one stream's events, one event type's events. Members are
 * opaque 64-bit ids chosen by the binding (the NIF maps them to pids);
 * delivery calls the binding's function once per member per commit with
 * that member's events in position order. A member that joined two topics
 * an event matches gets it once per topic.
 *
 * Threading: fan-out runs on a thread of the emitter's own (started by
 * the first esdb_emitter_set_deliver with a function), never on the thread that
 * applies commits: a commit copies its events into a bounded queue and
 * is acknowledged without waiting for delivery. `deliver` runs on that
 * thread without the emitter's lock held; it may call esdb_emitter_leave,
 * esdb_emitter_leave_all and esdb_emitter_drop, not esdb_emitter_set_deliver or
 * esdb_emitter_flush. The event views are valid during the call only.
 *
 * The queue holds at most esdb_emitter_set_queue_bytes bytes of copied
 * events (a commit larger than that is taken when the queue is empty).
 * A commit that does not fit, or cannot be copied, is not fanned out:
 * the appender is never held up by delivery, and the members learn of
 * the hole through `since`. Closing the store drops what is still queued.
 */
typedef enum esdb_topic {
	ESDB_TOPIC_ALL = 0,
	ESDB_TOPIC_STREAM = 1,
	ESDB_TOPIC_TYPE = 2,
} esdb_topic;

/* `since`: every commit from global position `since` up to this one went
 * through this emitter to the member's topics, so whatever matched in that
 * range was delivered (in this call or earlier ones). A member that has
 * seen everything up to position S goes on without a gap when
 * since <= S + 1; otherwise events may be missing from its deliveries
 * (committed by another process, or a fan-out dropped: queue full, no
 * memory) and it must read them from the store. */
typedef void (*esdb_delivery_fn)(void *ctx, uint64_t member, uint64_t since,
                                 const esdb_event *events, size_t n);

/* Set the delivery function (NULL turns fan-out off). Once it returns,
 * the previous function is no longer running or called. Starts the
 * emitter's thread the first time. Errors: ESDB_ECLOSED, or
 * pthread_create's. */
int esdb_emitter_set_deliver(esdb_store *s, esdb_delivery_fn deliver,
                             void *ctx);

/* Join a topic. `name` is the stream id or event type (ignored for
 * ESDB_TOPIC_ALL). *last_position (may be NULL) receives a position such
 * that every later event that matches is delivered (or reported missing
 * through `since`) and no earlier one is: those are in the store. Commits
 * queued but not yet fanned out count as later. Joining twice is a
 * no-op. May wait while the emitter's thread matches one commit against
 * the topics (not while it delivers). Errors: ESDB_EINVAL, ENOMEM. */
int esdb_emitter_join(esdb_store *s, esdb_topic topic, const char *name,
                      size_t len, uint64_t member, uint64_t *last_position);

/* Leave one topic (ESDB_ENOTFOUND when not a member). */
int esdb_emitter_leave(esdb_store *s, esdb_topic topic, const char *name,
                       size_t len, uint64_t member);

/* Leave every topic; returns how many were left through *count. */
int esdb_emitter_leave_all(esdb_store *s, uint64_t member, size_t *count);

/* Leave every topic soon: the emitter's thread does it before its next
 * fan-out. Never waits for a fan-out, so it suits a thread that must not
 * block (a scheduler handling a process's death); deliveries matched
 * before may still reach `deliver` for this member. Without a running
 * emitter thread it leaves at once. Errors: ESDB_ECLOSED, ENOMEM. */
int esdb_emitter_drop(esdb_store *s, uint64_t member);

/* Wait until every commit made so far has been fanned out (or dropped)
 * and every esdb_emitter_drop done. For tests and orderly hand-overs. */
int esdb_emitter_flush(esdb_store *s);

/* Bytes of copied events the fan-out queue may hold (default
 * ESDB_EMITTER_QUEUE_BYTES_DEFAULT). Errors: ESDB_EINVAL for 0. */
#define ESDB_EMITTER_QUEUE_BYTES_DEFAULT (64ull << 20)
int esdb_emitter_set_queue_bytes(esdb_store *s, uint64_t bytes);

typedef struct esdb_emitter_stats {
	uint64_t topics;
	uint64_t memberships; /* (member, topic) pairs */
	uint64_t queued_commits;
	uint64_t queued_bytes;
	uint64_t dropped; /* commits not fanned out since open */
} esdb_emitter_stats;

int esdb_emitter_get_stats(esdb_store *s, esdb_emitter_stats *out);

/* ---- Stats and maintenance -------------------------------------------- */

typedef struct esdb_store_stats {
	uint64_t events; /* = last global position */
	uint64_t streams;
	uint64_t event_types;
	uint64_t snapshots;
	uint64_t checkpoints;
	uint64_t bytes_used; /* pages in use * page size */
	uint64_t map_size;
	uint64_t commits; /* write transactions since open */
	/* LMDB's id of the last committed write transaction: grows by one
	 * per commit over the store's whole life (creation included). */
	uint64_t last_txn_id;
	int store_failed; /* 0, or what stopped writes: esdb_store_get_failure
	                   */
} esdb_store_stats;

int esdb_store_get_stats(esdb_store *s, esdb_store_stats *out);

/* 0 while the store takes writes. After a commit's flush or write failed
 * (EIO, ...), that error: the store is fail-stopped. Linux marks pages
 * whose write-back failed clean, so what they held may never reach the
 * disk while reads still show it; no later commit could make the store
 * whole again. From then on every write (esdb_store_submit, esdb_store_apply
 * and the commands already queued) answers ESDB_ESTORE_FAILED; reads go on. A
 * marker file (store_failed in the store's directory) outlives the
 * process: the next writable esdb_store_open runs esdb_store_verify_isolated
 * first (a bad page cannot take the opening process down), removes the marker
 * when the store verifies and answers ESDB_ECORRUPT when it does not (a
 * read-only open still works, to salvage). With the default durability every
 * commit acknowledged before the failure was flushed whole; with
 * ESDB_DURABILITY_NO_META_SYNC the last one rode on the failed flush and may be
 * lost although the store verifies: restore from a backup (or a replica) when
 * in doubt. A full disk (ENOSPC, EDQUOT, EFBIG, or a short write with the disk
 * or file size limit reached) refuses a commit before its flush and does not
 * fail-stop the store. Any thread. */
int esdb_store_get_failure(esdb_store *s);

/* Fail-stops the store in this process with `cause` (an ESDB_ or errno
 * code), as a failed flush would, but without the marker file: for a
 * user of the store that stops on a failure of its own (a replica whose
 * apply or raft log write failed), so that every write answers
 * ESDB_ESTORE_FAILED and esdb_store_get_failure names the cause. The
 * first cause stays; 0 does nothing. The next esdb_store_open starts
 * clean. Any thread. */
void esdb_store_set_failure(esdb_store *s, int cause);

/* Flush every commit made so far to the disk, meta page included, whatever
 * the durability: with ESDB_DURABILITY_NO_META_SYNC (or NOSYNC) the last
 * commits are then durable too. A replica calls it before raft takes a
 * snapshot, which must not pass what the store holds on disk. A failed
 * flush fail-stops the store as a failed commit does (ESDB_ESTORE_FAILED).
 * Read-only stores: 0. Errors: ESDB_ECLOSED. Any thread. */
int esdb_store_sync(esdb_store *s);

/* Where the last ESDB_ECORRUPT answered on the calling thread was found
 * (kind ESDB_WHERE_UNKNOWN when nothing recorded it). Reading clears it. */
typedef enum esdb_where_kind {
	ESDB_WHERE_UNKNOWN = 0,
	ESDB_WHERE_EVENT = 1,      /* number: the event's global position */
	ESDB_WHERE_STREAM = 2,     /* a stream record (number 0) */
	ESDB_WHERE_TYPE = 3,       /* an event type record (number 0) */
	ESDB_WHERE_SNAPSHOT = 4,   /* number 0 */
	ESDB_WHERE_CHECKPOINT = 5, /* number 0 */
	ESDB_WHERE_INDEX = 6,      /* a stream or type index entry */
	ESDB_WHERE_PAGE = 7,       /* number: an LMDB page of data.mdb */
} esdb_where_kind;
typedef struct esdb_where {
	esdb_where_kind kind;
	uint64_t number;
} esdb_where;
void esdb_where_take(esdb_where *out);

/* Check every record's checksum and that every index agrees with the
 * events. `problems` (may be NULL) receives the number of problems found;
 * `report` (may be NULL) is called with a message for each.
 * Returns ESDB_ECORRUPT when problems were found. */
int esdb_store_verify(esdb_store *s, void (*report)(void *ctx, const char *msg),
                      void *ctx, uint64_t *problems);

/* esdb_store_verify with its checks run in a forked child of this process,
 * over a read transaction of this one: LMDB trusts its page headers, and
 * a garbage page can make it fault where no check of ours runs. A child
 * that dies counts as one more problem (ESDB_ECORRUPT) and, when it
 * faulted inside data.mdb, *fault (may be NULL) names the page
 * (ESDB_WHERE_PAGE; else ESDB_WHERE_UNKNOWN). Never dies of a signal
 * itself. `report` runs in the caller as the child reports. When no
 * child can be forked (ENOMEM, EAGAIN) the checks run in this process. */
int esdb_store_verify_isolated(esdb_store *s,
                               void (*report)(void *ctx, const char *msg),
                               void *ctx, uint64_t *problems,
                               esdb_where *fault);

/* Consistent, compacted copy into directory `dest` (must be empty or
 * absent) while writers go on. A failed backup leaves no file (nor the
 * directory, when it made it); a full disk is ESDB_EDISK_FULL. */
int esdb_store_backup(esdb_store *s, const char *dest);

/* A consistent, compacted copy of the whole store (an LMDB data file,
 * docs/FORMAT.md) written to `fd` while writers go on: what a lagging or
 * new replica is sent. Writes from the fd's current offset and neither
 * flushes nor closes it. fd may be a pipe or a socket. Errors: EINVAL,
 * ESDB_ECLOSED, errno values of the writes. Any thread. */
int esdb_store_copy(esdb_store *s, int fd);

/* Replace the store's contents with a copy read from `fd` (to its end)
 * as esdb_store_copy made it, under the open handle. The copy is written
 * beside data.mdb, flushed and checked (ESDB_EFOREIGN: not a store;
 * ESDB_EFORMAT: another format version) before anything changes; then,
 * between two commits and once the reads in progress have finished, it
 * replaces data.mdb. Readers, subscribers and submitters need not stop:
 * reads started after the swap see the copy, commands applied after it
 * apply to the copy (their indexes go on from its applied index), and
 * the emitter goes on from the copy's last position (the next delivery's
 * `since` is that position + 1, so a subscriber that saw more must read
 * again). No other process may have the store open meanwhile (a CLI
 * reading beside it): LMDB would keep its lock table's transaction count
 * and could read the copy as empty; the restore answers ESDB_ELOCKED and
 * changes nothing (one opening the store during the swap is not seen). A
 * swap whose reopen fails leaves the copy in place and every later call
 * retries the reopen. A store a replica runs on (a replicated commit
 * path) is refused, ESDB_EINVAL: its contents follow its raft log.
 * Errors: EINVAL, ESDB_EINVAL, ESDB_ECLOSED, EROFS, ESDB_ELOCKED,
 * ESDB_ESTORE_FAILED, ESDB_EFOREIGN, ESDB_EFORMAT, ESDB_EDISK_FULL,
 * errno values. */
int esdb_store_restore(esdb_store *s, int fd);

/* The microsecond clock commands are stamped with. */
uint64_t esdb_clock_get_us(void);

#ifdef __cplusplus
}
#endif
#endif /* ESDB_H */
