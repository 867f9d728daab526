/* errors.c: names for every code the API returns. */
#include "esdb.h"

#include <errno.h>
#include <lmdb.h>
#include <string.h>

static const struct {
	int rc;
	const char *name;
	const char *text;
} codes[] = {
    {ESDB_OK, "ok", "success"},
    {ESDB_EWRONG_VERSION, "wrong_expected_version",
     "expected version does not match the stream"},
    {ESDB_ESTREAM_NOT_FOUND, "stream_not_found", "stream not found"},
    {ESDB_ESTREAM_DELETED, "stream_deleted", "stream deleted"},
    {ESDB_ESTREAM_EXISTS, "stream_exists", "stream already exists"},
    {ESDB_ECORRUPT, "corrupt", "stored data failed a checksum or check"},
    {ESDB_EFORMAT, "unsupported_format",
     "written by an unsupported format version"},
    {ESDB_EBUSY, "already_open", "store already open in this process"},
    {ESDB_ECLOSED, "closed", "store is closed"},
    {ESDB_ELIMIT, "limit_exceeded", "a size or count limit was exceeded"},
    {ESDB_EINVAL, "invalid_argument", "invalid argument or command"},
    {ESDB_ENOTFOUND, "not_found", "not found"},
    {ESDB_ENOTDIR, "no_store", "no store at this path"},
    {ESDB_EFOREIGN, "not_a_store", "path holds something that is not a store"},
    {ESDB_EEMPTY, "no_events", "an append needs at least one event"},
    {ESDB_EOVERLOADED, "overloaded", "the writer queue is full"},
    {ESDB_ESTORE_FAILED, "store_failed",
     "the store refuses writes after a failed flush"},
    {ESDB_EDISK_FULL, "disk_full", "no space left on the store's disk"},
    {ESDB_ELOCKED, "locked", "another process has the store open for writing"},
    {ESDB_EOUTCOME_UNKNOWN, "outcome_unknown",
     "the command may or may not have been applied"},
    {ESDB_ENOT_LEADER, "not_leader",
     "this replica is not the leader: write through the leader"},
    {ESDB_ENOPROC, "noproc",
     "the subscriber or owner process no longer exists"},
};

const char *esdb_error_describe(int rc)
{
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (codes[i].rc == rc)
			return codes[i].text;
	/* LMDB codes and errno values: LMDB names both. */
	return mdb_strerror(rc);
}

const char *esdb_error_name(int rc)
{
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (codes[i].rc == rc)
			return codes[i].name;
	switch (rc) {
	case ENOSPC:
		return "disk_full";
	case EFBIG:
		return "file_too_large";
	case EIO:
		return "io_error";
	case ENOMEM:
		return "out_of_memory";
	case EROFS:
		return "read_only";
	case EACCES:
		return "permission_denied";
	case MDB_MAP_FULL:
		return "map_full";
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_BAD_TXN: /* after a page LMDB refused (store.c) */
		return "corrupt";
	case MDB_READERS_FULL:
		return "too_many_readers";
	default:
		return rc > 0 ? "system_error" : "storage_error";
	}
}
