/* read.c: reads, each in its own read-only transaction (MDB_NOTLS), so
 * they run on any thread and never wait for the writer. */
#include "internal.h"

#include "bytes.h"
#include "records.h"

#include <string.h>

/* One page being handed out: counts what went to fn and, once the page
 * is full, the key (version or position) of the first event left out. */
typedef struct pager {
	esdb_event_fn fn;
	void *ctx;
	uint32_t max_count;
	uint64_t max_bytes;
	uint32_t n;
	uint64_t bytes;
	bool full;
	uint64_t at;
} pager;

static void pager_init(pager *p, const esdb_store *s, uint32_t max_count,
                       esdb_event_fn fn, void *ctx)
{
	*p = (pager){.fn = fn,
	             .ctx = ctx,
	             .max_count = max_count,
	             .max_bytes = s->read_bytes};
}

/* Whether the page has room for one more event, the one at `key`; when
 * it has not, remember where the next page starts. Checked before the
 * event is fetched, so a page never decodes what it does not hand out. */
static bool pager_full(pager *p, uint64_t key)
{
	if (p->n < p->max_count)
		return false;
	p->full = true;
	p->at = key;
	return true;
}

/* Hand ev to fn unless it would overrun the byte budget; the first event
 * of a page always goes, so pages of big events still progress. */
static int pager_emit(pager *p, uint64_t key, const esdb_event *ev)
{
	uint64_t size = (uint64_t)ev->data_len + ev->metadata_len +
	                ev->stream_id_len + ev->event_type_len;
	if (p->n > 0 &&
	    (p->bytes >= p->max_bytes || size > p->max_bytes - p->bytes)) {
		p->full = true;
		p->at = key;
		return 0;
	}
	p->n++;
	p->bytes += size;
	return p->fn(p->ctx, ev);
}

static void pager_done(const pager *p, esdb_read_next *next)
{
	if (next)
		*next = (esdb_read_next){.end = !p->full,
		                         .from = p->full ? p->at : 0};
}

/* Check and decode the event record v stored at position pos. */
static int event_read(MDB_txn *txn, const MDB_val *v, uint64_t pos,
                      esdb_event *ev)
{
	int rc = esdb__val_check(txn, v, ESDB_WHERE_EVENT, pos);
	if (rc)
		return rc;
	if ((rc = esdb__event_rec_read(v->mv_data, v->mv_size, ev)) ||
	    (rc = ev->position != pos ? ESDB_ECORRUPT : 0))
		return esdb__corrupt_at(rc, ESDB_WHERE_EVENT, pos);
	return 0;
}

/* Fetch, check and hand one event to the page; `key` is what the page
 * resumes from when the event does not fit. */
static int emit_event(esdb_store *s, MDB_txn *txn, const uint8_t pos_be[8],
                      uint64_t key, pager *p)
{
	if (pager_full(p, key))
		return 0;
	uint64_t pos = esdb_be64_get(pos_be);
	MDB_val k = {8, (void *)pos_be}, v;
	int rc = mdb_get(txn, s->dbi_events, &k, &v);
	if (rc)
		return esdb__corrupt_at(rc == MDB_NOTFOUND ? ESDB_ECORRUPT
		                                           : esdb__mdb_rc(rc),
		                        ESDB_WHERE_EVENT, pos);
	esdb_event ev;
	if ((rc = event_read(txn, &v, pos, &ev)))
		return rc;
	return pager_emit(p, key, &ev);
}

static int stream_meta(esdb_store *s, MDB_txn *txn, const char *id, size_t len,
                       esdb__stream_meta *m, bool *exists)
{
	esdb_name_key key;
	MDB_val val;
	int rc =
	    esdb__name_find(txn, s->dbi_streams, id, len, &key, &val, exists);
	if (rc || !*exists)
		return esdb__mdb_rc(rc);
	return esdb__corrupt_at(
	    esdb__stream_rec_read(val.mv_data, val.mv_size, m),
	    ESDB_WHERE_STREAM, 0);
}

/* Reads look a name up whatever the store's limits say now: limits bound
 * what is written (lowered ones apply to later writes only), and a name
 * never written is absent. Only a name no record can hold is refused. */
static int check_name_arg(const esdb_store *s, const char *name, size_t len)
{
	if (!s)
		return ESDB_EINVAL;
	if (!name || len == 0 || len > UINT16_MAX)
		return ESDB_EINVAL;
	return 0;
}

/* $all is read with esdb_all_read: as a stream id it is refused, not
 * read as an absent stream. */
static int check_stream_arg(const esdb_store *s, const char *id, size_t len)
{
	if (len == 4 && id && !memcmp(id, "$all", 4))
		return ESDB_EINVAL;
	return check_name_arg(s, id, len);
}

/* Hand the events at stream_index keys (num, v) for v in [lo, hi] to the
 * page, ascending or descending, until it is full. */
static int read_indexed(esdb_store *s, MDB_txn *txn, uint64_t num, uint64_t lo,
                        uint64_t hi, esdb_direction dir, pager *p)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, s->dbi_stream_index, &cur);
	if (rc)
		return rc;
	uint8_t kb[16];
	uint64_t ver = dir == ESDB_DIRECTION_FORWARD ? lo : hi;
	esdb_be64_put(kb, num);
	esdb_be64_put(kb + 8, ver);
	MDB_val k = {16, kb}, v;
	MDB_cursor_op op = dir == ESDB_DIRECTION_FORWARD ? MDB_NEXT : MDB_PREV;
	uint64_t left = hi - lo + 1;
	rc = esdb__corrupt_at(mdb_cursor_get(cur, &k, &v, MDB_SET_KEY),
	                      ESDB_WHERE_INDEX, 0);
	while (rc == 0 && left > 0 && !p->full) {
		/* the stream record says these versions are indexed */
		if (k.mv_size != 16 || memcmp(k.mv_data, kb, 8) != 0 ||
		    esdb_be64_get((const uint8_t *)k.mv_data + 8) != ver ||
		    v.mv_size != 8 ||
		    esdb__val_check(txn, &v, ESDB_WHERE_INDEX, 0)) {
			rc = esdb__corrupt_at(ESDB_ECORRUPT, ESDB_WHERE_INDEX,
			                      0);
			break;
		}
		if ((rc = emit_event(s, txn, v.mv_data, ver, p)))
			break;
		left--;
		ver = dir == ESDB_DIRECTION_FORWARD ? ver + 1 : ver - 1;
		if (left > 0 && !p->full)
			rc = esdb__corrupt_at(mdb_cursor_get(cur, &k, &v, op),
			                      ESDB_WHERE_INDEX, 0);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? ESDB_ECORRUPT : rc;
}

/* Hand the events of tail versions [lo, hi] to the page. */
static int read_tail(esdb_store *s, MDB_txn *txn, const esdb__stream_meta *m,
                     uint64_t lo, uint64_t hi, esdb_direction dir, pager *p)
{
	if (lo > hi)
		return 0;
	for (uint64_t i = 0; i <= hi - lo && !p->full; i++) {
		uint64_t v = dir == ESDB_DIRECTION_FORWARD ? lo + i : hi - i;
		uint8_t pk[8];
		esdb_be64_put(pk, esdb__stream_tail_position(m, v));
		int rc = emit_event(s, txn, pk, v, p);
		if (rc)
			return rc;
	}
	return 0;
}

int esdb_stream_read(esdb_store *s, const char *stream_id, size_t len,
                     uint64_t from, uint32_t max_count, esdb_direction dir,
                     esdb_event_fn fn, void *ctx, esdb_read_next *next)
{
	MDB_txn *txn;
	esdb__stream_meta m;
	bool exists;
	pager p;
	int rc = check_stream_arg(s, stream_id, len);
	if (rc)
		return rc;
	if (!fn ||
	    (dir != ESDB_DIRECTION_FORWARD && dir != ESDB_DIRECTION_BACKWARD))
		return ESDB_EINVAL;
	pager_init(&p, s, max_count, fn, ctx);
	if ((rc = esdb__read_begin(s, &txn)))
		return rc;
	if ((rc = stream_meta(s, txn, stream_id, len, &m, &exists)))
		goto out;
	if (!exists) {
		rc = ESDB_ESTREAM_NOT_FOUND;
		goto out;
	}
	if (m.deleted) {
		rc = ESDB_ESTREAM_DELETED;
		goto out;
	}
	if (dir == ESDB_DIRECTION_FORWARD && from == 0)
		from = 1;
	if (dir == ESDB_DIRECTION_BACKWARD && from > m.version)
		from = m.version;
	if (from == 0 || from > m.version)
		goto out;
	/* Versions up to `indexed` are in stream_index, the rest in the
	 * record's tail. */
	uint64_t indexed = m.version - m.tail_count;
	if (dir == ESDB_DIRECTION_FORWARD) {
		if (from <= indexed)
			rc =
			    read_indexed(s, txn, m.num, from, indexed, dir, &p);
		if (rc == 0)
			rc = read_tail(s, txn, &m,
			               from > indexed ? from : indexed + 1,
			               m.version, dir, &p);
	} else {
		if (from > indexed)
			rc = read_tail(s, txn, &m, indexed + 1, from, dir, &p);
		if (rc == 0 && indexed > 0)
			rc = read_indexed(s, txn, m.num, 1,
			                  from < indexed ? from : indexed, dir,
			                  &p);
	}
out:
	esdb__read_end(s, txn);
	rc = esdb__mdb_rc(rc);
	if (rc == 0)
		pager_done(&p, next);
	return rc;
}

int esdb_all_read(esdb_store *s, uint64_t from, uint32_t max_count,
                  esdb_direction dir, esdb_event_fn fn, void *ctx,
                  esdb_read_next *next)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	pager p;
	if (!s || !fn ||
	    (dir != ESDB_DIRECTION_FORWARD && dir != ESDB_DIRECTION_BACKWARD))
		return ESDB_EINVAL;
	pager_init(&p, s, max_count, fn, ctx);
	int rc = esdb__read_begin(s, &txn);
	if (rc)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi_events, &cur)))
		goto out;
	uint8_t kb[8];
	MDB_val k = {8, kb}, v;
	if (dir == ESDB_DIRECTION_FORWARD) {
		esdb_be64_put(kb, from);
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else {
		/* Start at `from` or, past the end, at the last event. */
		esdb_be64_put(kb, from);
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND)
			rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
		else if (rc == 0 && esdb_be64_get(k.mv_data) > from)
			rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
		if (from == 0)
			rc = MDB_NOTFOUND;
	}
	MDB_cursor_op op = dir == ESDB_DIRECTION_FORWARD ? MDB_NEXT : MDB_PREV;
	while (rc == 0) {
		esdb_event ev;
		if (k.mv_size != 8) {
			rc = esdb__corrupt_at(ESDB_ECORRUPT, ESDB_WHERE_EVENT,
			                      0);
			break;
		}
		uint64_t pos = esdb_be64_get(k.mv_data);
		if (pager_full(&p, pos))
			break;
		if ((rc = event_read(txn, &v, pos, &ev)) ||
		    (rc = pager_emit(&p, pos, &ev)) || p.full)
			break;
		rc = mdb_cursor_get(cur, &k, &v, op);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
	mdb_cursor_close(cur);
out:
	esdb__read_end(s, txn);
	rc = esdb__mdb_rc(rc);
	if (rc == 0)
		pager_done(&p, next);
	return rc;
}

int esdb_type_read(esdb_store *s, const char *event_type, size_t len,
                   uint64_t from, uint32_t max_count, esdb_event_fn fn,
                   void *ctx, esdb_read_next *next)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	esdb_name_key key;
	MDB_val val;
	bool found;
	uint64_t num;
	pager p;
	int rc = check_name_arg(s, event_type, len);
	if (rc)
		return rc;
	if (!fn)
		return ESDB_EINVAL;
	pager_init(&p, s, max_count, fn, ctx);
	if ((rc = esdb__read_begin(s, &txn)))
		return rc;
	rc = esdb__name_find(txn, s->dbi_types, event_type, len, &key, &val,
	                     &found);
	if (rc || !found)
		goto out;
	if ((rc = esdb__corrupt_at(
	         esdb__type_rec_read(val.mv_data, val.mv_size, &num),
	         ESDB_WHERE_TYPE, 0)))
		goto out;
	if ((rc = mdb_cursor_open(txn, s->dbi_type_index, &cur)))
		goto out;
	uint8_t kb[16];
	esdb_be64_put(kb, num);
	esdb_be64_put(kb + 8, from);
	MDB_val k = {16, kb}, v;
	rc = esdb__corrupt_at(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE),
	                      ESDB_WHERE_INDEX, 0);
	while (rc == 0) {
		if (k.mv_size != 16 || memcmp(k.mv_data, kb, 8) != 0)
			break;
		const uint8_t *pos_be = (const uint8_t *)k.mv_data + 8;
		if ((rc = emit_event(s, txn, pos_be, esdb_be64_get(pos_be),
		                     &p)) ||
		    p.full)
			break;
		rc = esdb__corrupt_at(mdb_cursor_get(cur, &k, &v, MDB_NEXT),
		                      ESDB_WHERE_INDEX, 0);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
out:
	if (cur)
		mdb_cursor_close(cur);
	esdb__read_end(s, txn);
	rc = esdb__mdb_rc(rc);
	if (rc == 0)
		pager_done(&p, next);
	return rc;
}

int esdb_stream_get_info(esdb_store *s, const char *stream_id, size_t len,
                         uint64_t *version, bool *exists, bool *deleted)
{
	MDB_txn *txn;
	esdb__stream_meta m = {0};
	bool found;
	int rc = check_stream_arg(s, stream_id, len);
	if (rc)
		return rc;
	if ((rc = esdb__read_begin(s, &txn)))
		return rc;
	rc = stream_meta(s, txn, stream_id, len, &m, &found);
	esdb__read_end(s, txn);
	if (rc)
		return rc;
	if (version)
		*version = found ? m.version : 0;
	if (exists)
		*exists = found;
	if (deleted)
		*deleted = found && m.deleted;
	return 0;
}

/* Walk a name-keyed database in key order strictly after `after`. */
typedef int (*record_fn)(void *ctx, const MDB_val *rec);

static int list_names(esdb_store *s, MDB_dbi dbi, const char *after,
                      size_t after_len, uint32_t max_count, record_fn fn,
                      void *ctx)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	if (!s || !fn || (!after && after_len))
		return ESDB_EINVAL;
	int rc = esdb__read_begin(s, &txn);
	if (rc)
		return rc;
	if ((rc = mdb_cursor_open(txn, dbi, &cur)))
		goto out;
	esdb_name_key key;
	MDB_val k, v;
	if (after && after_len) {
		bool found;
		if ((rc = esdb__name_find(txn, dbi, after, after_len, &key, &v,
		                          &found)))
			goto close;
		k = key.val;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && found)
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	for (uint32_t n = 0; rc == 0 && n < max_count; n++) {
		if ((rc = esdb__val_check(txn, &v, ESDB_WHERE_UNKNOWN, 0)) ||
		    (rc = fn(ctx, &v)))
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
close:
	mdb_cursor_close(cur);
out:
	esdb__read_end(s, txn);
	return esdb__mdb_rc(rc);
}

typedef struct stream_list_ctx {
	esdb_stream_fn fn;
	void *ctx;
} stream_list_ctx;

static int stream_rec(void *ctx, const MDB_val *rec)
{
	stream_list_ctx *c = ctx;
	esdb__stream_meta m;
	int rc = esdb__stream_rec_read(rec->mv_data, rec->mv_size, &m);
	if (rc)
		return esdb__corrupt_at(rc, ESDB_WHERE_STREAM, 0);
	esdb_stream st = {m.name, m.name_len, m.version, m.created_us,
	                  m.deleted};
	return c->fn(c->ctx, &st);
}

int esdb_stream_list(esdb_store *s, const char *after, size_t after_len,
                     uint32_t max_count, esdb_stream_fn fn, void *ctx)
{
	if (!fn)
		return ESDB_EINVAL;
	stream_list_ctx c = {fn, ctx};
	return list_names(s, s ? s->dbi_streams : 0, after, after_len,
	                  max_count, stream_rec, &c);
}

typedef struct cp_list_ctx {
	esdb_checkpoint_fn fn;
	void *ctx;
} cp_list_ctx;

static int checkpoint_rec(void *ctx, const MDB_val *rec)
{
	cp_list_ctx *c = ctx;
	esdb_checkpoint cp;
	int rc = esdb__checkpoint_rec_read(rec->mv_data, rec->mv_size, &cp);
	return rc ? esdb__corrupt_at(rc, ESDB_WHERE_CHECKPOINT, 0)
	          : c->fn(c->ctx, &cp);
}

int esdb_checkpoint_list(esdb_store *s, const char *after, size_t after_len,
                         uint32_t max_count, esdb_checkpoint_fn fn, void *ctx)
{
	if (!fn)
		return ESDB_EINVAL;
	cp_list_ctx c = {fn, ctx};
	return list_names(s, s ? s->dbi_subscriptions : 0, after, after_len,
	                  max_count, checkpoint_rec, &c);
}

/* Look one name up and hand its record to fn. */
static int get_named(esdb_store *s, MDB_dbi dbi, const char *name, size_t len,
                     record_fn fn, void *ctx)
{
	MDB_txn *txn;
	esdb_name_key key;
	MDB_val val;
	bool found;
	int rc = check_name_arg(s, name, len);
	if (rc)
		return rc;
	if ((rc = esdb__read_begin(s, &txn)))
		return rc;
	rc = esdb__name_find(txn, dbi, name, len, &key, &val, &found);
	if (rc == 0)
		rc = found ? fn(ctx, &val) : ESDB_ENOTFOUND;
	esdb__read_end(s, txn);
	return esdb__mdb_rc(rc);
}

typedef struct snap_ctx {
	esdb_snapshot_fn fn;
	void *ctx;
} snap_ctx;

static int snapshot_rec(void *ctx, const MDB_val *rec)
{
	snap_ctx *c = ctx;
	esdb_snapshot sn;
	int rc = esdb__snapshot_rec_read(rec->mv_data, rec->mv_size, &sn);
	return rc ? esdb__corrupt_at(rc, ESDB_WHERE_SNAPSHOT, 0)
	          : c->fn(c->ctx, &sn);
}

int esdb_snapshot_get(esdb_store *s, const char *source_uuid, size_t len,
                      esdb_snapshot_fn fn, void *ctx)
{
	if (!fn)
		return ESDB_EINVAL;
	snap_ctx c = {fn, ctx};
	return get_named(s, s ? s->dbi_snapshots : 0, source_uuid, len,
	                 snapshot_rec, &c);
}

int esdb_checkpoint_get(esdb_store *s, const char *name, size_t len,
                        esdb_checkpoint_fn fn, void *ctx)
{
	if (!fn)
		return ESDB_EINVAL;
	cp_list_ctx c = {fn, ctx};
	return get_named(s, s ? s->dbi_subscriptions : 0, name, len,
	                 checkpoint_rec, &c);
}
