/* apply.c: the one deterministic function every mutation goes through.
 *
 * A batch of commands is applied in one LMDB write transaction. Each
 * command is validated completely before it writes anything, so a command
 * that fails leaves no trace and fails alone; only storage errors (a full
 * map, a full disk) abort the whole transaction. Everything the outcome
 * depends on comes from the command bytes and the stored state, never the
 * clock or the host, so every replica applying the same batch agrees. */
#include "internal.h"

#include "bytes.h"
#include "commands.h"
#include "records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct apply_ctx {
	esdb_store *s;
	MDB_txn *txn;
	uint64_t last_pos;
	bool dirty;
	/* the limits commands are checked against; a LIMITS_SET changes
	 * them for the rest of the batch, and for the store once committed */
	esdb_limits limits;
	bool limits_changed;
	/* the last event type looked up, as appends repeat types */
	char type_name[ESDB_KEY_MAX + 1];
	size_t type_len;
	uint64_t type_num;
	/* the events written, for the emitter once committed; they point
	 * into the command buffers */
	esdb_event *written;
	size_t n_written, cap_written;
} apply_ctx;

/* A storage failure that must abort the transaction, as opposed to a
 * command that is refused. */
static bool is_fatal(int rc)
{
	return rc > 0 || (rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE);
}

/* Replicated commands (esdb_store_apply_at) must get the same result on
 * every replica: a stored record this node cannot read (its bytes, not
 * the command's) aborts the batch, so the replica stops, not diverges. */
static bool is_fatal_at(const esdb_cmd *cmd, int rc)
{
	return rc == ESDB_ECORRUPT && esdb_cmd_check(cmd->buf, cmd->len) == 0;
}

static uint64_t entries(MDB_txn *txn, MDB_dbi dbi, int *rc)
{
	MDB_stat st;
	*rc = mdb_stat(txn, dbi, &st);
	return *rc ? 0 : st.ms_entries;
}

/* Position of the last event, 0 in an empty store. */
static int last_position(MDB_txn *txn, MDB_dbi dbi, uint64_t *pos)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return rc;
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND) {
		*pos = 0;
		return 0;
	}
	if (rc)
		return rc;
	if (k.mv_size != 8)
		return ESDB_ECORRUPT;
	*pos = esdb_be64_get(k.mv_data);
	return 0;
}

/* The index of the last applied batch, 0 in a store made before it was
 * recorded or that never committed. It lives in the unnamed database,
 * beside the named databases' records: that page is written by every
 * commit anyway, where a key in `meta` would add a page to each. */
int esdb__applied_index(MDB_txn *txn, MDB_dbi main, uint64_t *index)
{
	MDB_val k = {7, "applied"}, v;
	int rc = mdb_get(txn, main, &k, &v);
	if (rc == MDB_NOTFOUND) {
		*index = 0;
		return 0;
	}
	if (rc)
		return rc;
	if (v.mv_size != 8)
		return ESDB_ECORRUPT;
	*index = esdb_le64_get(v.mv_data);
	return 0;
}

static int put_applied_index(apply_ctx *c, uint64_t index)
{
	uint8_t b[8];
	esdb_le64_put(b, index);
	MDB_val k = {7, "applied"}, v = {8, b};
	return mdb_put(c->txn, c->s->dbi_main, &k, &v, 0);
}

static void index_key(uint8_t key[16], uint64_t a, uint64_t b)
{
	esdb_be64_put(key, a);
	esdb_be64_put(key + 8, b);
}

/* The position of a stream's event: in its record's tail, or indexed. */
static int position_at(apply_ctx *c, const esdb__stream_meta *m,
                       uint64_t version, uint64_t *pos)
{
	if ((*pos = esdb__stream_tail_position(m, version)))
		return 0;
	uint8_t kb[16];
	index_key(kb, m->num, version);
	MDB_val k = {16, kb}, v;
	int rc = mdb_get(c->txn, c->s->dbi_stream_index, &k, &v);
	if (rc)
		return rc == MDB_NOTFOUND ? ESDB_ECORRUPT : rc;
	if (v.mv_size != 8 || esdb__val_check(c->txn, &v, ESDB_WHERE_INDEX, 0))
		return ESDB_ECORRUPT;
	*pos = esdb_be64_get(v.mv_data);
	return 0;
}

/* The event id stored at a stream's version. */
static int event_id_at(apply_ctx *c, const esdb__stream_meta *m,
                       uint64_t version, const uint8_t **id)
{
	uint64_t pos;
	int rc = position_at(c, m, version, &pos);
	if (rc)
		return rc;
	uint8_t pk[8];
	esdb_be64_put(pk, pos);
	MDB_val ek = {8, pk}, ev;
	if ((rc = mdb_get(c->txn, c->s->dbi_events, &ek, &ev)))
		return rc == MDB_NOTFOUND ? ESDB_ECORRUPT : rc;
	esdb_event e;
	if ((rc = esdb__val_check(c->txn, &ev, ESDB_WHERE_EVENT, pos)) ||
	    (rc = esdb__event_rec_read(ev.mv_data, ev.mv_size, &e)))
		return rc;
	*id = e.event_id;
	return 0;
}

/* Is this append a retry of the events stored at versions start+1..?
 * If so, fill the original result. */
static int is_retry(apply_ctx *c, const esdb__stream_meta *m,
                    const esdb__cmd_view *v, uint64_t start, esdb_result *res,
                    bool *retry)
{
	*retry = false;
	if (start > m->version || m->version - start < v->n_events)
		return 0;
	const uint8_t *cursor = v->events;
	for (uint32_t i = 0; i < v->n_events; i++) {
		esdb_new_event ev;
		const uint8_t *id;
		esdb__cmd_next_event(&cursor, &ev);
		int rc = event_id_at(c, m, start + 1 + i, &id);
		if (rc)
			return rc;
		if (memcmp(id, ev.event_id, 16) != 0)
			return 0;
	}
	int rc = position_at(c, m, start + 1, &res->position);
	if (rc)
		return rc;
	res->version = start + v->n_events;
	*retry = true;
	return 0;
}

/* The id of the last event of an append command, for a cheap tail check. */
static const uint8_t *last_event_id(const esdb__cmd_view *v)
{
	const uint8_t *cursor = v->events, *id = NULL;
	for (uint32_t i = 0; i < v->n_events; i++) {
		esdb_new_event ev;
		id = cursor;
		esdb__cmd_next_event(&cursor, &ev);
	}
	return id;
}

/* Is this append, marked as a retry (esdb_cmd_mark_retry), one whose
 * events already sit within the stream's last ESDB_RETRY_WINDOW
 * versions? Its first event id is looked for from the newest version
 * back, and every copy is tried: ids need not be unique in a stream, so
 * a newer copy (an unmarked resubmission, another append reusing the
 * id) may not be followed by the retry's other events while an older
 * one is. Only marked commands pay this, at most the window's reads. */
static int is_retry_in_window(apply_ctx *c, const esdb__stream_meta *m,
                              const esdb__cmd_view *v, esdb_result *res,
                              bool *retry)
{
	uint64_t oldest = m->version > ESDB_RETRY_WINDOW
	                      ? m->version - ESDB_RETRY_WINDOW + 1
	                      : 1;
	*retry = false;
	for (uint64_t ver = m->version; ver >= oldest && ver > 0; ver--) {
		const uint8_t *id;
		int rc = event_id_at(c, m, ver, &id);
		if (rc)
			return rc;
		/* an append's events start with the first one's id */
		if (memcmp(id, v->events, 16) == 0) {
			if ((rc = is_retry(c, m, v, ver - 1, res, retry)) ||
			    *retry)
				return rc;
		}
	}
	return 0;
}

/* Decide whether an append may go on (returns 0 and *retry false), is a
 * retry already applied (0 and *retry true, res filled) or is refused. */
static int check_expected(apply_ctx *c, const esdb__cmd_view *v,
                          const esdb__stream_meta *m, bool exists,
                          esdb_result *res, bool *retry)
{
	uint64_t exp = v->expected;
	uint64_t cur = exists ? m->version : 0;
	*retry = false;
	if (exists && m->deleted)
		return ESDB_ESTREAM_DELETED;
	switch (exp) {
	case ESDB_EXPECT_ANY:
	case ESDB_EXPECT_STREAM_EXISTS:
		if (!exists && exp == ESDB_EXPECT_STREAM_EXISTS)
			return ESDB_ESTREAM_NOT_FOUND;
		if (!exists || v->type != ESDB_CMD_APPEND)
			return 0;
		if (memcmp(m->last_event_id, last_event_id(v), 16) == 0) {
			int rc =
			    is_retry(c, m, v, cur - v->n_events, res, retry);
			if (rc || *retry)
				return rc;
		}
		if (v->flags & ESDB_CMD_FLAG_RETRY)
			return is_retry_in_window(c, m, v, res, retry);
		return 0;
	case ESDB_EXPECT_NO_STREAM:
		if (!exists)
			return 0;
		if (v->type == ESDB_CMD_APPEND) {
			int rc = is_retry(c, m, v, 0, res, retry);
			if (rc || *retry)
				return rc;
		}
		return ESDB_ESTREAM_EXISTS;
	default:
		if (exp == cur)
			return 0;
		if (v->type == ESDB_CMD_APPEND && exists) {
			int rc = is_retry(c, m, v, exp, res, retry);
			if (rc || *retry)
				return rc;
		}
		return ESDB_EWRONG_VERSION;
	}
}

/* The number of an event type, creating it on first use. */
static int type_number(apply_ctx *c, const char *name, size_t len,
                       uint64_t *num)
{
	if (len == c->type_len && memcmp(name, c->type_name, len) == 0) {
		*num = c->type_num;
		return 0;
	}
	esdb_name_key key;
	MDB_val val;
	bool found;
	int rc = esdb__name_find(c->txn, c->s->dbi_types, name, len, &key, &val,
	                         &found);
	if (rc)
		return rc;
	if (found) {
		if ((rc = esdb__type_rec_read(val.mv_data, val.mv_size, num)))
			return rc;
	} else {
		*num = entries(c->txn, c->s->dbi_types, &rc) + 1;
		if (rc)
			return rc;
		MDB_val data = {esdb__type_rec_size(len), NULL};
		rc = mdb_put(c->txn, c->s->dbi_types, &key.val, &data,
		             MDB_RESERVE);
		if (rc)
			return rc;
		esdb__type_rec_write(data.mv_data, name, len, *num);
	}
	if (len <= ESDB_KEY_MAX) {
		memcpy(c->type_name, name, len);
		c->type_len = len;
		c->type_num = *num;
	}
	return 0;
}

static int put_stream_meta(apply_ctx *c, esdb_name_key *key,
                           const esdb__stream_meta *m)
{
	MDB_val data = {esdb__stream_rec_size(m->name_len, m->tail_count),
	                NULL};
	int rc =
	    mdb_put(c->txn, c->s->dbi_streams, &key->val, &data, MDB_RESERVE);
	if (rc)
		return rc;
	esdb__stream_rec_write(data.mv_data, m);
	return 0;
}

/* Move a full tail into stream_index: consecutive keys, one or two
 * leaf pages. */
static int flush_tail(apply_ctx *c, esdb__stream_meta *m)
{
	uint64_t first = m->version - m->tail_count + 1;
	for (uint32_t i = 0; i < m->tail_count; i++) {
		uint8_t ik[16], pv[8];
		index_key(ik, m->num, first + i);
		esdb_be64_put(pv, m->tail[i]);
		MDB_val k = {16, ik}, v = {8, pv};
		int rc = mdb_put(c->txn, c->s->dbi_stream_index, &k, &v, 0);
		if (rc)
			return rc;
	}
	m->tail_count = 0;
	return 0;
}

static int reserve_written(apply_ctx *c, size_t n)
{
	if (c->n_written + n <= c->cap_written)
		return 0;
	size_t cap = (c->n_written + n) * 2;
	esdb_event *w = realloc(c->written, cap * sizeof(*w));
	if (!w)
		return ENOMEM;
	c->written = w;
	c->cap_written = cap;
	return 0;
}

static int apply_append(apply_ctx *c, const esdb__cmd_view *v, esdb_result *res)
{
	esdb_name_key key;
	MDB_val val;
	bool exists, retry;
	esdb__stream_meta m = {0};
	int rc = esdb__name_find(c->txn, c->s->dbi_streams, v->name,
	                         v->name_len, &key, &val, &exists);
	if (rc)
		return rc;
	if (exists &&
	    (rc = esdb__stream_rec_read(val.mv_data, val.mv_size, &m)))
		return rc;
	if ((rc = check_expected(c, v, &m, exists, res, &retry)) || retry)
		return rc;

	if (!exists) {
		m.num = entries(c->txn, c->s->dbi_streams, &rc) + 1;
		if (rc)
			return rc;
		m.version = 0;
		m.created_us = v->created_us;
	}
	/* m.name may point into LMDB memory that our writes move. */
	m.name = v->name;
	m.name_len = v->name_len;

	res->position = c->last_pos + 1;
	if ((rc = reserve_written(c, v->n_events)))
		return rc;
	const uint8_t *cursor = v->events;
	for (uint32_t i = 0; i < v->n_events; i++) {
		esdb_new_event ev;
		uint64_t type_num;
		const uint8_t *id = cursor; /* an event starts with its id */
		esdb__cmd_next_event(&cursor, &ev);
		if ((rc = type_number(c, ev.event_type, ev.event_type_len,
		                      &type_num)))
			return rc;
		uint64_t pos = ++c->last_pos;
		uint64_t version = ++m.version;

		uint8_t pk[8];
		esdb_be64_put(pk, pos);
		MDB_val k = {8, pk};
		MDB_val d = {esdb__event_rec_size(v->name_len, &ev), NULL};
		rc = mdb_put(c->txn, c->s->dbi_events, &k, &d,
		             MDB_RESERVE | MDB_APPEND);
		if (rc)
			return rc == MDB_KEYEXIST ? ESDB_ECORRUPT : rc;
		esdb__event_rec_write(d.mv_data, d.mv_size, pos, version,
		                      v->created_us, v->name, v->name_len, &ev);

		c->written[c->n_written++] = (esdb_event){
		    .position = pos,
		    .stream_version = version,
		    .created_us = v->created_us,
		    .event_id = id,
		    .stream_id = v->name,
		    .stream_id_len = v->name_len,
		    .event_type = ev.event_type,
		    .event_type_len = ev.event_type_len,
		    .data = ev.data,
		    .data_len = ev.data_len,
		    .metadata = ev.metadata,
		    .metadata_len = ev.metadata_len,
		    .causation_id = ev.causation_id,
		    .correlation_id = ev.correlation_id,
		    .data_encoding = ev.data_encoding,
		    .metadata_encoding = ev.metadata_encoding,
		};
		m.tail[m.tail_count++] = pos;
		if (m.tail_count == ESDB_STREAM_TAIL_MAX &&
		    (rc = flush_tail(c, &m)))
			return rc;

		uint8_t tk[16];
		index_key(tk, type_num, pos);
		MDB_val tkv = {16, tk}, tv = {0, NULL};
		if ((rc = mdb_put(c->txn, c->s->dbi_type_index, &tkv, &tv, 0)))
			return rc;
		memcpy(m.last_event_id, ev.event_id, 16);
	}
	if ((rc = put_stream_meta(c, &key, &m)))
		return rc;
	res->version = m.version;
	c->dirty = true;
	return 0;
}

static int apply_delete_stream(apply_ctx *c, const esdb__cmd_view *v,
                               esdb_result *res)
{
	esdb_name_key key;
	MDB_val val;
	bool exists, retry;
	esdb__stream_meta m = {0};
	int rc = esdb__name_find(c->txn, c->s->dbi_streams, v->name,
	                         v->name_len, &key, &val, &exists);
	if (rc)
		return rc;
	if (!exists)
		return ESDB_ESTREAM_NOT_FOUND;
	if ((rc = esdb__stream_rec_read(val.mv_data, val.mv_size, &m)))
		return rc;
	if ((rc = check_expected(c, v, &m, exists, res, &retry)))
		return rc;
	m.name = v->name;
	m.deleted = true;
	if ((rc = put_stream_meta(c, &key, &m)))
		return rc;
	res->version = m.version;
	c->dirty = true;
	return 0;
}

/* Room for a record of `size` bytes under v's name in dbi (a new key or
 * the name's existing one), written in place by the caller. */
static int reserve_named(apply_ctx *c, MDB_dbi dbi, const esdb__cmd_view *v,
                         size_t size, void **out)
{
	esdb_name_key key;
	MDB_val val;
	bool found;
	int rc = esdb__name_find(c->txn, dbi, v->name, v->name_len, &key, &val,
	                         &found);
	if (rc)
		return rc;
	MDB_val d = {size, NULL};
	if ((rc = mdb_put(c->txn, dbi, &key.val, &d, MDB_RESERVE)))
		return rc;
	*out = d.mv_data;
	c->dirty = true;
	return 0;
}

static int apply_snapshot_put(apply_ctx *c, const esdb__cmd_view *v)
{
	esdb_snapshot sn = {
	    .source_uuid = v->name,
	    .source_uuid_len = v->name_len,
	    .source_version = v->number,
	    .source_type = v->kind,
	    .source_type_len = v->kind_len,
	    .data = v->data,
	    .data_len = v->data_len,
	    .metadata = v->meta,
	    .metadata_len = v->meta_len,
	    .created_us = v->created_us,
	    .data_encoding = v->flags & ESDB_SNAPSHOT_DATA_TERM
	                         ? ESDB_ENCODING_TERM
	                         : ESDB_ENCODING_BYTES,
	    .metadata_encoding = v->flags & ESDB_SNAPSHOT_META_TERM
	                             ? ESDB_ENCODING_TERM
	                             : ESDB_ENCODING_BYTES,
	};
	void *rec;
	int rc = reserve_named(c, c->s->dbi_snapshots, v,
	                       esdb__snapshot_rec_size(&sn), &rec);
	if (rc == 0)
		esdb__snapshot_rec_write(rec, &sn);
	return rc;
}

static int apply_checkpoint_put(apply_ctx *c, const esdb__cmd_view *v)
{
	esdb_checkpoint cp = {
	    .name = v->name,
	    .name_len = v->name_len,
	    .checkpoint = v->number,
	    .definition = v->data,
	    .definition_len = v->data_len,
	    .updated_us = v->created_us,
	};
	void *rec;
	int rc = reserve_named(c, c->s->dbi_subscriptions, v,
	                       esdb__checkpoint_rec_size(&cp), &rec);
	if (rc == 0)
		esdb__checkpoint_rec_write(rec, &cp);
	return rc;
}

static int apply_named_delete(apply_ctx *c, MDB_dbi dbi,
                              const esdb__cmd_view *v)
{
	esdb_name_key key;
	MDB_val val;
	bool found;
	int rc = esdb__name_find(c->txn, dbi, v->name, v->name_len, &key, &val,
	                         &found);
	if (rc)
		return rc;
	if (!found)
		return ESDB_ENOTFOUND;
	if ((rc = mdb_del(c->txn, dbi, &key.val, NULL)))
		return rc;
	c->dirty = true;
	return 0;
}

/* Record new limits in meta; they hold from the next command on. */
static int apply_limits_set(apply_ctx *c, const esdb__cmd_view *v)
{
	esdb_limits l;
	int rc = esdb__cmd_limits(v, &l);
	if (rc)
		return rc;
	uint8_t rec[ESDB_LIMITS_REC_SIZE];
	esdb__limits_rec_write(rec, &l);
	MDB_val k = {6, "limits"}, d = {sizeof(rec), rec};
	if ((rc = mdb_put(c->txn, c->s->dbi_meta, &k, &d, 0)))
		return rc;
	c->limits = l;
	c->limits_changed = true;
	c->dirty = true;
	return 0;
}

static int apply_command(apply_ctx *c, const esdb__cmd_view *v,
                         esdb_result *res);
static int apply_request(apply_ctx *c, const esdb__cmd_view *v,
                         esdb_result *res);

static int apply_one(apply_ctx *c, const esdb_cmd *cmd, esdb_result *res)
{
	esdb__cmd_view v;
	int rc = esdb__cmd_parse(cmd->buf, cmd->len, &v);
	if (rc)
		return rc;
	if ((rc = esdb__cmd_check_limits(&v, &c->limits, &res->limit))) {
		res->limit_max = esdb_limits_lookup(&c->limits, res->limit);
		return rc;
	}
	/* Encoders refuse reserved stream ids; so must a command that
	 * arrives encoded (a replica, another version). */
	if ((v.type == ESDB_CMD_APPEND || v.type == ESDB_CMD_DELETE_STREAM) &&
	    (rc = esdb_stream_id_check(v.name, v.name_len)))
		return rc;
	if (v.request)
		return apply_request(c, &v, res);
	return apply_command(c, &v, res);
}

static int apply_command(apply_ctx *c, const esdb__cmd_view *v,
                         esdb_result *res)
{
	switch (v->type) {
	case ESDB_CMD_APPEND:
		return apply_append(c, v, res);
	case ESDB_CMD_DELETE_STREAM:
		return apply_delete_stream(c, v, res);
	case ESDB_CMD_SNAPSHOT_PUT:
		return apply_snapshot_put(c, v);
	case ESDB_CMD_SNAPSHOT_DELETE:
		return apply_named_delete(c, c->s->dbi_snapshots, v);
	case ESDB_CMD_CHECKPOINT_PUT:
		return apply_checkpoint_put(c, v);
	case ESDB_CMD_CHECKPOINT_DELETE:
		return apply_named_delete(c, c->s->dbi_subscriptions, v);
	case ESDB_CMD_LIMITS_SET:
		return apply_limits_set(c, v);
	default:
		return ESDB_EINVAL;
	}
}

/* A put or delete with a request id (esdb_cmd_set_request): a retry
 * whose id is among the last requests applied was applied by an earlier
 * try; it answers ok and changes nothing (another writer may have
 * written the record since). Applied, its id is recorded. The window is
 * read before the command writes: a refusal (a bad window is corrupt)
 * must leave nothing written, as the transaction still commits the
 * batch's other commands; recording then fails only as storage does,
 * which aborts the transaction. */
static int apply_request(apply_ctx *c, const esdb__cmd_view *v,
                         esdb_result *res)
{
	bool seen = false;
	uint64_t count;
	int rc = 0;
	if (v->flags & ESDB_CMD_FLAG_REQUEST_RETRY)
		rc = esdb__request_seen(c->txn, c->s->dbi_meta, v->request,
		                        &seen);
	if (rc || seen)
		return rc;
	if ((rc = esdb__request_count(c->txn, c->s->dbi_meta, &count)) ||
	    (rc = apply_command(c, v, res)))
		return rc;
	return esdb__request_record(c->txn, c->s->dbi_meta, v->request, count);
}

static void fail_all(esdb_result *results, size_t n, int rc, bool only_ok)
{
	for (size_t i = 0; i < n; i++) {
		if (only_ok && results[i].rc)
			continue;
		results[i] = (esdb_result){.rc = rc};
	}
}

/* Test hook (internal.h). Plain ints: tests set it while no write runs. */
int esdb__apply_fault[4];

static int take_fault(void)
{
	int rc = esdb__apply_fault[0];
	if (!rc)
		return 0;
	memmove(esdb__apply_fault, esdb__apply_fault + 1,
	        sizeof(esdb__apply_fault) - sizeof(int));
	esdb__apply_fault[3] = 0;
	return rc == ESDB__FAULT_PASS ? 0 : rc;
}

/* One attempt: one transaction, with the map lock held shared so that no
 * reader resizes the map under it (map.c). Command i is at log index
 * index + i (ESDB_INDEX_NEXT: the one after the stored index); those at
 * or below the stored index were applied before and are skipped. */
static int apply_txn(esdb_store *s, uint64_t index, const uint64_t *at,
                     const esdb_cmd *cmds, size_t n, esdb_result *results)
{
	apply_ctx c = {.s = s, .limits = s->limits};
	uint64_t applied;
	int rc = take_fault();
	if (rc)
		return rc;
	if ((rc = esdb__map_rdlock(s)))
		return rc;
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &c.txn))) {
		pthread_rwlock_unlock(&s->map_lock);
		return rc;
	}
	if ((rc = last_position(c.txn, s->dbi_events, &c.last_pos)) ||
	    (rc = esdb__applied_index(c.txn, s->dbi_main, &applied)))
		goto abort;
	if (index == ESDB_INDEX_NEXT)
		index = applied + 1;
	for (size_t i = 0; i < n; i++) {
		esdb_result *r = &results[i];
		memset(r, 0, sizeof(*r));
		/* Applied before (a replay, or a copy that came in past
		 * it): its result then is not known here, and a caller
		 * waiting for it must not read a zeroed success. */
		if ((at ? at[i] : index + i) <= applied) {
			r->rc = ESDB_EOUTCOME_UNKNOWN;
			continue;
		}
		r->rc = apply_one(&c, &cmds[i], r);
		if (r->rc) {
			if (is_fatal(r->rc) ||
			    (at && is_fatal_at(&cmds[i], r->rc))) {
				rc = r->rc;
				goto abort;
			}
			r->version = 0;
			r->position = 0;
		}
	}
	/* A batch that changed nothing leaves the index where it was:
	 * applied again it is refused again, the same way. With indexes
	 * given per command (esdb_apply_at) a log that moved on is recorded
	 * all the same: the caller asks how far its log was applied. */
	uint64_t last = at ? at[n - 1] : index + n - 1;
	if (!c.dirty && !(at && last > applied)) {
		mdb_txn_abort(c.txn);
		pthread_rwlock_unlock(&s->map_lock);
		free(c.written);
		return 0;
	}
	if ((rc = put_applied_index(&c, last)))
		goto abort;
	rc = mdb_txn_commit(c.txn);
	pthread_rwlock_unlock(&s->map_lock);
	if (rc) {
		rc = esdb__commit_failed(s, rc);
		fail_all(results, n, rc, true);
		free(c.written);
		return rc;
	}
	__atomic_add_fetch(&s->commits, 1, __ATOMIC_RELAXED);
	if (c.limits_changed)
		esdb__limits_publish(s, &c.limits);
	esdb__emit(s, c.written, c.n_written);
	free(c.written);
	/* Grow now, while it costs nobody a wait, rather than when full. */
	esdb__map_headroom(s, false);
	return 0;
abort:
	mdb_txn_abort(c.txn);
	pthread_rwlock_unlock(&s->map_lock);
	free(c.written);
	return rc;
}

static int apply_locked(esdb_store *s, uint64_t index, const uint64_t *at,
                        const esdb_cmd *cmds, size_t n, esdb_result *results);

int esdb__apply_locked(esdb_store *s, uint64_t index, const esdb_cmd *cmds,
                       size_t n, esdb_result *results)
{
	return apply_locked(s, index, NULL, cmds, n, results);
}

static int apply_locked(esdb_store *s, uint64_t index, const uint64_t *at,
                        const esdb_cmd *cmds, size_t n, esdb_result *results)
{
	if (esdb_store_get_failure(s)) {
		fail_all(results, n, ESDB_ESTORE_FAILED, false);
		return ESDB_ESTORE_FAILED;
	}
	for (;;) {
		esdb__val_writing(true);
		int rc = apply_txn(s, index, at, cmds, n, results);
		esdb__val_writing(false);
		if (rc == MDB_MAP_RESIZED) {
			if ((rc = esdb__adopt_mapsize(s)) == 0)
				continue;
		} else if (rc == MDB_MAP_FULL) {
			if ((rc = esdb__map_grow(s)) == 0)
				continue;
		} else if (rc == MDB_TXN_FULL && n > 1) {
			/* Too many dirty pages for one txn: halve the batch.
			 * Each half keeps its commands' indexes, so the
			 * first half's commit records its own last one. */
			size_t h = n / 2;
			uint64_t second = index == ESDB_INDEX_NEXT
			                      ? ESDB_INDEX_NEXT
			                      : index + h;
			rc = apply_locked(s, index, at, cmds, h, results);
			int rc2 = apply_locked(s, second, at ? at + h : NULL,
			                       cmds + h, n - h, results + h);
			return rc ? rc : rc2;
		}
		if (rc) {
			/* a page spilled mid-transaction can meet a full disk
			 */
			rc = esdb__space_rc(s->path, rc);
			fail_all(results, n, rc, false);
		}
		return rc;
	}
}

int esdb_store_apply(esdb_store *s, uint64_t index, const esdb_cmd *cmds,
                     size_t n, esdb_result *results)
{
	if (!s || !s->is_open)
		return ESDB_ECLOSED;
	if ((!cmds || !results) && n)
		return ESDB_EINVAL;
	if (s->readonly)
		return EROFS;
	/* a replica's store: only its replica writes it, through
	 * esdb_store_apply_at, in its log's order (replica_mark.c) */
	if (s->replica_marked || s->commit.replicated)
		return ESDB_ENOT_LEADER;
	if (n == 0)
		return 0;
	if (index != ESDB_INDEX_NEXT && index > UINT64_MAX - (n - 1))
		return ESDB_EINVAL;
	pthread_mutex_lock(&s->apply_lock);
	int rc = esdb__apply_locked(s, index, cmds, n, results);
	pthread_mutex_unlock(&s->apply_lock);
	return rc;
}

int esdb_store_apply_at(esdb_store *s, const uint64_t *indexes,
                        const esdb_cmd *cmds, size_t n, esdb_result *results)
{
	if (!s || !s->is_open)
		return ESDB_ECLOSED;
	if ((!cmds || !results || !indexes) && n)
		return ESDB_EINVAL;
	if (s->readonly)
		return EROFS;
	for (size_t i = 0; i < n; i++)
		if (indexes[i] == 0 || (i && indexes[i] <= indexes[i - 1]))
			return ESDB_EINVAL;
	if (n == 0)
		return 0;
	pthread_mutex_lock(&s->apply_lock);
	int rc = apply_locked(s, 0, indexes, cmds, n, results);
	pthread_mutex_unlock(&s->apply_lock);
	return rc;
}

int esdb_store_get_applied_index(esdb_store *s, uint64_t *index)
{
	MDB_txn *txn;
	if (!index)
		return ESDB_EINVAL;
	int rc = esdb__read_begin(s, &txn);
	if (rc)
		return rc;
	rc = esdb__applied_index(txn, s->dbi_main, index);
	esdb__read_end(s, txn);
	return esdb__mdb_rc(rc);
}
