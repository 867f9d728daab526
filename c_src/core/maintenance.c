/* maintenance.c: verify (checksums and index agreement) and backup. */
#include "internal.h"

#include "bytes.h"
#include "dirs.h"
#include "records.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct verify_ctx {
	esdb_store *s;
	MDB_txn *txn;
	void (*report)(void *ctx, const char *msg);
	void *rctx;
	uint64_t problems;
} verify_ctx;

__attribute__((format(printf, 2, 3))) static void problem(verify_ctx *v,
                                                          const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->problems++;
	if (v->report)
		v->report(v->rctx, msg);
}

/* Each event: checksum, position = key, positions gap-free, its stream
 * knows it at its version, its type index entry exists. */
static int verify_events(verify_ctx *v)
{
	MDB_cursor *cur;
	MDB_val k, d;
	uint64_t expect = 1;
	int rc = mdb_cursor_open(v->txn, v->s->dbi_events, &cur);
	if (rc)
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0) {
		uint64_t pos = k.mv_size == 8 ? esdb_be64_get(k.mv_data) : 0;
		esdb_event ev;
		if (pos != expect)
			problem(v, "event key %llu: expected position %llu",
			        (unsigned long long)pos,
			        (unsigned long long)expect);
		expect = pos + 1;
		if (esdb__val_check(v->txn, &d, ESDB_WHERE_EVENT, pos) ||
		    esdb__event_rec_read(d.mv_data, d.mv_size, &ev) ||
		    ev.position != pos) {
			problem(v, "event %llu: bad checksum or record",
			        (unsigned long long)pos);
			continue;
		}
		esdb_name_key key;
		MDB_val sv;
		bool found;
		esdb__stream_meta m;
		rc = esdb__name_find(v->txn, v->s->dbi_streams, ev.stream_id,
		                     ev.stream_id_len, &key, &sv, &found);
		if (rc && rc != ESDB_ECORRUPT)
			break;
		if (rc || !found ||
		    esdb__stream_rec_read(sv.mv_data, sv.mv_size, &m)) {
			problem(v, "event %llu: its stream is missing",
			        (unsigned long long)pos);
			continue;
		}
		if (ev.stream_version == 0 || ev.stream_version > m.version)
			problem(v, "event %llu: version %llu beyond stream's",
			        (unsigned long long)pos,
			        (unsigned long long)ev.stream_version);
		uint8_t ik[16];
		esdb_be64_put(ik, m.num);
		esdb_be64_put(ik + 8, ev.stream_version);
		MDB_val ikv = {16, ik}, iv;
		uint64_t tail_pos =
		    esdb__stream_tail_position(&m, ev.stream_version);
		if (tail_pos
		        ? tail_pos != pos
		        : (mdb_get(v->txn, v->s->dbi_stream_index, &ikv, &iv) ||
		           iv.mv_size != 8 ||
		           esdb__val_check(v->txn, &iv, ESDB_WHERE_INDEX, 0) ||
		           esdb_be64_get(iv.mv_data) != pos))
			problem(v, "event %llu: stream index disagrees",
			        (unsigned long long)pos);
		MDB_val tv;
		uint64_t tnum;
		rc = esdb__name_find(v->txn, v->s->dbi_types, ev.event_type,
		                     ev.event_type_len, &key, &tv, &found);
		if (rc && rc != ESDB_ECORRUPT)
			break;
		if (rc || !found ||
		    esdb__type_rec_read(tv.mv_data, tv.mv_size, &tnum)) {
			problem(v, "event %llu: its type is missing",
			        (unsigned long long)pos);
			continue;
		}
		uint8_t tk[16];
		esdb_be64_put(tk, tnum);
		esdb_be64_put(tk + 8, pos);
		MDB_val tkv = {16, tk};
		if (mdb_get(v->txn, v->s->dbi_type_index, &tkv, &tv))
			problem(v, "event %llu: type index entry missing",
			        (unsigned long long)pos);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Checksums of every name-keyed record. */
static int verify_named(verify_ctx *v, MDB_dbi dbi, uint8_t kind,
                        const char *what)
{
	MDB_cursor *cur;
	MDB_val k, d;
	int rc = mdb_cursor_open(v->txn, dbi, &cur);
	if (rc)
		return rc;
	uint64_t n = 0;
	while ((rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0) {
		n++;
		if (esdb__val_check(v->txn, &d, ESDB_WHERE_UNKNOWN, 0) ||
		    esdb__rec_check(d.mv_data, d.mv_size, kind, NULL))
			problem(v, "%s record %llu: bad checksum", what,
			        (unsigned long long)n);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Events indexed by the stream records' tails. */
static int sum_tails(verify_ctx *v, uint64_t *sum)
{
	MDB_cursor *cur;
	MDB_val k, d;
	int rc = mdb_cursor_open(v->txn, v->s->dbi_streams, &cur);
	if (rc)
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0) {
		esdb__stream_meta m;
		if (esdb__val_check(v->txn, &d, ESDB_WHERE_STREAM, 0) == 0 &&
		    esdb__stream_rec_read(d.mv_data, d.mv_size, &m) == 0)
			*sum += m.tail_count;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static uint64_t count(verify_ctx *v, MDB_dbi dbi)
{
	MDB_stat st;
	return mdb_stat(v->txn, dbi, &st) ? 0 : st.ms_entries;
}

int esdb_store_verify(esdb_store *s, void (*report)(void *ctx, const char *msg),
                      void *ctx, uint64_t *problems)
{
	MDB_txn *txn;
	/* Its read holds the map still for long: leave appends room. */
	int rc = s && s->is_open ? esdb__map_headroom(s, true) : 0;
	if (rc || (rc = esdb__read_begin(s, &txn)))
		return rc;
	rc = esdb__verify_txn(s, txn, report, ctx, problems);
	esdb__read_end(s, txn);
	return rc;
}

int esdb__verify_txn(esdb_store *s, MDB_txn *txn,
                     void (*report)(void *ctx, const char *msg), void *ctx,
                     uint64_t *problems)
{
	verify_ctx v = {.s = s, .txn = txn, .report = report, .rctx = ctx};
	int rc;
	if ((rc = verify_events(&v)) ||
	    (rc =
	         verify_named(&v, s->dbi_streams, ESDB_REC_STREAM, "stream")) ||
	    (rc = verify_named(&v, s->dbi_types, ESDB_REC_TYPE, "type")) ||
	    (rc = verify_named(&v, s->dbi_snapshots, ESDB_REC_SNAPSHOT,
	                       "snapshot")) ||
	    (rc = verify_named(&v, s->dbi_subscriptions, ESDB_REC_CHECKPOINT,
	                       "checkpoint")))
		goto out;
	/* Every event has one entry in each index (checked above), so equal
	 * counts mean the indexes hold nothing else. */
	uint64_t events = count(&v, s->dbi_events), tails = 0;
	if ((rc = sum_tails(&v, &tails)))
		goto out;
	if (count(&v, s->dbi_stream_index) + tails != events)
		problem(&v,
		        "stream index has %llu entries and tails %llu for "
		        "%llu events",
		        (unsigned long long)count(&v, s->dbi_stream_index),
		        (unsigned long long)tails, (unsigned long long)events);
	if (count(&v, s->dbi_type_index) != events)
		problem(&v, "type index has %llu entries for %llu events",
		        (unsigned long long)count(&v, s->dbi_type_index),
		        (unsigned long long)events);
out:
	/* LMDB refusing a page (and the transaction after that) is a
	 * finding of verify, not a failure to run it. */
	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
	    rc == MDB_BAD_TXN || rc == ESDB_ECORRUPT) {
		problem(&v, "LMDB: %s", esdb_error_describe(rc));
		rc = 0;
	}
	if (problems)
		*problems = v.problems;
	if (rc)
		return esdb__mdb_rc(rc);
	return v.problems ? ESDB_ECORRUPT : 0;
}

int esdb_store_backup(esdb_store *s, const char *dest)
{
	bool empty = false;
	char file[4096];
	if (!s || !dest)
		return ESDB_EINVAL;
	if (!s->is_open)
		return ESDB_ECLOSED;
	if (snprintf(file, sizeof(file), "%s/data.mdb", dest) >=
	    (int)sizeof(file))
		return ESDB_EINVAL;
	/* A backup that fails leaves nothing: its file, and the directory
	 * when it made it. A full disk is ESDB_EDISK_FULL, as for appends. */
	bool made = mkdir(dest, esdb__dir_mode(s)) == 0;
	if (!made && errno != EEXIST)
		return esdb__space_rc(dest, errno);
	int rc = esdb__dir_empty(dest, NULL, &empty);
	if (!rc && !empty)
		rc = EEXIST;
	if (rc)
		goto fail_dir;
	/* Created here, not by LMDB, for its mode (LMDB's is 0666). */
	int fd =
	    open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, s->file_mode);
	if (fd < 0) {
		rc = errno;
		goto fail_dir;
	}
	rc = esdb__copy_to_fd(s, fd);
	/* The backup is done when its file, its directory and the
	 * directory's entry in its parent are on the disk. */
	if (!rc && fsync(fd))
		rc = errno;
	if (close(fd) && !rc)
		rc = errno;
	if (!rc)
		rc = esdb__fsync_path(dest);
	if (!rc)
		rc = esdb__fsync_parent(dest);
	if (rc)
		unlink(file);
fail_dir:
	if (rc && made)
		rmdir(dest);
	return esdb__space_rc(dest, esdb__mdb_rc(rc));
}

int esdb_store_sync(esdb_store *s)
{
	if (!s || !s->is_open)
		return ESDB_ECLOSED;
	if (s->readonly)
		return 0;
	if (esdb_store_get_failure(s))
		return ESDB_ESTORE_FAILED;
	/* the map lock keeps a resize or a restore from swapping the
	 * environment under the flush */
	int rc = esdb__map_rdlock(s);
	if (rc)
		return rc;
	rc = mdb_env_sync(s->env, 1);
	pthread_rwlock_unlock(&s->map_lock);
	return rc ? esdb__commit_failed(s, rc) : 0;
}
