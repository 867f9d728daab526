/* reads.c: the reads, run on the pool (so a long read holds neither the
 * connection's reader nor the store's writer; a look-up is answered on
 * the reader), answered with the NIF's terms. The arguments are copied off the
 * frame before it is freed. */
#include "ops.h"

#include "pool.h"
#include "sessions.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
	caller *k;
	const esdb_proto_op *op;
	cn_read_form form; /* how read_records answers */
	arg v[ESDB_PROTO_MAX_ARITY];
	char data[]; /* the binaries v points into */
} job;

/* A reply being built, and how many items its list has. */
typedef struct out {
	ei_x_buff items;
	int n;
	/* read_records with Decode: payloads as read (bytes, {term, Bytes},
	 * {legacy, Bytes}), so the caller decodes what was written as a
	 * term, with its own checks (the distribution layer would decode an
	 * embedded term without them, making atoms) */
	bool marked;
	/* read_records: ids as UUID text, as records hold them (formatted
	 * here costs a fraction of what it costs in the reading VM) */
	bool text_ids;
	/* read_packed: the events as raw bytes in items (see encode_packed) */
	bool packed;
	/* read_parts: items sent to k as a part once they hold PART_BYTES */
	caller *parts;
} out;

/* read_parts sends a part per this many bytes of events: the reading VM
 * cuts one into records while this thread reads the next. Smaller parts
 * cost more CPU on both sides than the overlap saves (16 KiB: +30% a
 * page at load 12; 64 KiB: the same CPU as one piece;
 * docs/PERFORMANCE.md). */
#define PART_BYTES (64u << 10)

/* {Ref, {esdb_part, Events}}: the events packed so far, ahead of the
 * reply; items emptied. */
static void send_part(out *o)
{
	ei_x_buff x;
	cn_reply_begin(o->parts, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "esdb_part");
	ei_x_encode_binary(&x, o->items.buff, o->items.index);
	cn_conn_reply_part(o->parts->c, &o->parts->from, &x);
	o->items.index = 0;
}

/* An id: 16 bytes, or UUID text; nil when absent. */
static void encode_id(const out *o, ei_x_buff *x, const uint8_t *id)
{
	char text[36];
	if (!id) {
		ei_x_encode_atom(x, "nil");
	} else if (o->text_ids) {
		esdb_uuid_format(id, text);
		ei_x_encode_binary(x, text, 36);
	} else {
		ei_x_encode_binary(x, id, 16);
	}
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
	return p + bytes;
}

/* One event of a packed page (docs/PROTOCOL.md, read_packed): a fixed
 * header of PACKED_HEAD bytes, big-endian, then the variable bytes.
 * The receiving VM cuts the page into sub-binaries with one binary
 * match per event, instead of decoding ~12 terms per event from the
 * distribution message (what made reads cost 3-5x the NIF's). */
#define PACKED_HEAD 57
int cn_encode_packed(ei_x_buff *x, const esdb_event *ev, bool marked)
{
	size_t ids =
	    36 + (ev->causation_id ? 36 : 0) + (ev->correlation_id ? 36 : 0);
	if (ev->stream_id_len > UINT32_MAX || ev->event_type_len > UINT32_MAX ||
	    ev->data_len > UINT32_MAX || ev->metadata_len > UINT32_MAX)
		return ENOMEM; /* no binary of the page could hold it */
	int rc = cn_x_reserve(x, PACKED_HEAD + ids + ev->stream_id_len +
	                             ev->event_type_len + ev->data_len +
	                             ev->metadata_len);
	if (rc)
		return rc;
	esdb_proto_date d;
	esdb_proto_date_from_us(ev->created_us, &d);
	uint8_t *p = (uint8_t *)x->buff + x->index;
	p = put_be(p, ev->position, 8);
	p = put_be(p, ev->stream_version, 8);
	p = put_be(p, ev->created_us, 8);
	p = put_be(p, (uint64_t)d.year, 4);
	*p++ = (uint8_t)d.month;
	*p++ = (uint8_t)d.day;
	*p++ = (uint8_t)d.hour;
	*p++ = (uint8_t)d.minute;
	*p++ = (uint8_t)d.second;
	p = put_be(p, d.microsecond, 4);
	/* payloads as read (0 bytes, 1 term, 2 legacy) when decoding:
	 * the client decodes terms with its own checks */
	*p++ = marked ? (uint8_t)ev->data_encoding : 0;
	*p++ = marked ? (uint8_t)ev->metadata_encoding : 0;
	*p++ = ev->causation_id ? 36 : 0;
	*p++ = ev->correlation_id ? 36 : 0;
	p = put_be(p, ev->stream_id_len, 4);
	p = put_be(p, ev->event_type_len, 4);
	p = put_be(p, ev->data_len, 4);
	p = put_be(p, ev->metadata_len, 4);
	esdb_uuid_format(ev->event_id, (char *)p);
	p += 36;
	memcpy(p, ev->stream_id, ev->stream_id_len);
	p += ev->stream_id_len;
	memcpy(p, ev->event_type, ev->event_type_len);
	p += ev->event_type_len;
	if (ev->causation_id) {
		esdb_uuid_format(ev->causation_id, (char *)p);
		p += 36;
	}
	if (ev->correlation_id) {
		esdb_uuid_format(ev->correlation_id, (char *)p);
		p += 36;
	}
	if (ev->data_len)
		memcpy(p, ev->data, ev->data_len);
	p += ev->data_len;
	if (ev->metadata_len)
		memcpy(p, ev->metadata, ev->metadata_len);
	p += ev->metadata_len;
	x->index = (int)(p - (uint8_t *)x->buff);
	return 0;
}

/* {Position, StreamId, Version, EventId, Type, Data, Metadata,
 *  CausationId, CorrelationId, CreatedUs}: proto's event tuple. */
static int encode_event(void *ctx, const esdb_event *ev)
{
	out *o = ctx;
	if (o->packed) {
		int rc = cn_encode_packed(&o->items, ev, o->marked);
		o->n += rc == 0;
		if (rc == 0 && o->parts && (size_t)o->items.index >= PART_BYTES)
			send_part(o);
		return rc;
	}
	ei_x_buff *x = &o->items;
	/* tags, lengths and fixed fields: under 200 bytes */
	int rc = cn_x_reserve(x, 200 + ev->stream_id_len + ev->event_type_len +
	                             ev->data_len + ev->metadata_len);
	if (rc)
		return rc;
	ei_x_encode_tuple_header(x, 10);
	ei_x_encode_ulonglong(x, ev->position);
	ei_x_encode_binary(x, ev->stream_id, (long)ev->stream_id_len);
	ei_x_encode_ulonglong(x, ev->stream_version);
	encode_id(o, x, ev->event_id);
	ei_x_encode_binary(x, ev->event_type, (long)ev->event_type_len);
	if (o->marked) {
		cn_encode_payload(x, ev->data, ev->data_len, ev->data_encoding);
		cn_encode_payload(x, ev->metadata, ev->metadata_len,
		                  ev->metadata_encoding);
	} else {
		ei_x_encode_binary(x, ev->data, (long)ev->data_len);
		ei_x_encode_binary(x, ev->metadata, (long)ev->metadata_len);
	}
	encode_id(o, x, ev->causation_id);
	encode_id(o, x, ev->correlation_id);
	ei_x_encode_ulonglong(x, ev->created_us);
	o->n++;
	return 0;
}

/* {StreamId, Version, Deleted} */
static int encode_stream(void *ctx, const esdb_stream *st)
{
	out *o = ctx;
	int rc = cn_x_reserve(&o->items, 64 + st->stream_id_len);
	if (rc)
		return rc;
	ei_x_encode_tuple_header(&o->items, 3);
	ei_x_encode_binary(&o->items, st->stream_id, (long)st->stream_id_len);
	ei_x_encode_ulonglong(&o->items, st->version);
	ei_x_encode_boolean(&o->items, st->deleted);
	o->n++;
	return 0;
}

/* {Name, Checkpoint, Definition, UpdatedUs} */
static int encode_checkpoint(void *ctx, const esdb_checkpoint *cp)
{
	out *o = ctx;
	int rc =
	    cn_x_reserve(&o->items, 64 + cp->name_len + cp->definition_len);
	if (rc)
		return rc;
	ei_x_encode_tuple_header(&o->items, 4);
	ei_x_encode_binary(&o->items, cp->name, (long)cp->name_len);
	ei_x_encode_ulonglong(&o->items, cp->checkpoint);
	ei_x_encode_binary(&o->items, cp->definition, (long)cp->definition_len);
	ei_x_encode_ulonglong(&o->items, cp->updated_us);
	o->n++;
	return 0;
}

/* {SourceUuid, SourceVersion, SourceType, Data, Metadata, CreatedUs} */
static int encode_snapshot(void *ctx, const esdb_snapshot *sn)
{
	out *o = ctx;
	int rc = cn_x_reserve(&o->items, 128 + sn->source_uuid_len +
	                                     sn->source_type_len +
	                                     sn->data_len + sn->metadata_len);
	if (rc)
		return rc;
	ei_x_encode_tuple_header(&o->items, 6);
	ei_x_encode_binary(&o->items, sn->source_uuid,
	                   (long)sn->source_uuid_len);
	ei_x_encode_ulonglong(&o->items, sn->source_version);
	ei_x_encode_binary(&o->items, sn->source_type,
	                   (long)sn->source_type_len);
	cn_encode_payload(&o->items, sn->data, sn->data_len, sn->data_encoding);
	cn_encode_payload(&o->items, sn->metadata, sn->metadata_len,
	                  sn->metadata_encoding);
	ei_x_encode_ulonglong(&o->items, sn->created_us);
	o->n = 1;
	return 0;
}

/* The items as a list: [Item, ...] */
static void encode_list(ei_x_buff *x, const out *o)
{
	if (o->n) {
		ei_x_encode_list_header(x, o->n);
		ei_x_append_buf(x, o->items.buff, o->items.index);
	}
	ei_x_encode_empty_list(x);
}

static void encode_stats(ei_x_buff *x, const esdb_store_stats *st,
                         uint64_t subscribers)
{
	const uint64_t vals[] = {
	    st->events,      st->streams,    st->event_types, st->snapshots,
	    st->checkpoints, st->bytes_used, st->map_size,    st->commits};
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "ok");
	ei_x_encode_map_header(x, 10);
	for (int i = 0; i < 8; i++) {
		ei_x_encode_atom(x, esdb_proto_stats_fields[i]);
		ei_x_encode_ulonglong(x, vals[i]);
	}
	ei_x_encode_atom(x, "store_failed");
	ei_x_encode_atom(x, st->store_failed ? esdb_error_name(st->store_failed)
	                                     : "nil");
	ei_x_encode_atom(x, "subscribers"); /* members held by sessions */
	ei_x_encode_ulonglong(x, subscribers);
}

static void encode_limits(ei_x_buff *x, const esdb_limits *l)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "ok");
	ei_x_encode_map_header(x, 6);
	for (int i = 0; i < 6; i++) {
		esdb_limit_key key = (esdb_limit_key)(ESDB_LIMIT_STREAM_ID + i);
		ei_x_encode_atom(x, esdb_limit_name(key));
		ei_x_encode_ulonglong(x, esdb_limits_lookup(l, key));
	}
}

static bool is(const job *j, const char *name)
{
	return strcmp(j->op->name, name) == 0;
}

static void run(void *arg)
{
	job *j = arg;
	caller *k = j->k;
	cn_server *srv = k->srv;
	const struct arg *v = j->v;
	out o = {.n = 0};
	ei_x_new(&o.items);
	esdb_read_next next = {0};
	esdb_store_stats st;
	esdb_limits lim;
	uint64_t version = 0;
	bool exists = false, deleted = false;
	/* read_records: its source read, payloads marked when decoding */
	bool records = is(j, "read_records");
	uint64_t source = records ? v[0].u : 0;
	if (records) {
		o.marked = v[4].u != 0;
		o.text_ids = true;
		o.packed = j->form != CN_READ_TERMS;
		o.parts = j->form == CN_READ_PARTS ? k : NULL;
		v = j->v +
		    1; /* From, Count, Direction as the reads take them */
	}
	/* EINVAL names the stream id, as the NIF's reply does */
	bool stream_id = is(j, "read_stream") || is(j, "stream_info") ||
	                 (records && source == CN_SOURCE_STREAM);
	int rc;
	pthread_rwlock_rdlock(&srv->store_lock);
	if (srv->closed)
		rc = ESDB_ECLOSED;
	else if (records && source == CN_SOURCE_STREAM)
		rc =
		    esdb_stream_read(srv->store, j->v[0].p, j->v[0].len, v[0].u,
		                     (uint32_t)v[1].u, (esdb_direction)v[2].u,
		                     encode_event, &o, &next);
	else if (records && source == CN_SOURCE_ALL)
		rc = esdb_all_read(srv->store, v[0].u, (uint32_t)v[1].u,
		                   (esdb_direction)v[2].u, encode_event, &o,
		                   &next);
	else if (records) /* a type source reads forward, as the NIF's */
		rc = esdb_type_read(srv->store, j->v[0].p, j->v[0].len, v[0].u,
		                    (uint32_t)v[1].u, encode_event, &o, &next);
	else if (is(j, "read_stream"))
		rc = esdb_stream_read(srv->store, v[0].p, v[0].len, v[1].u,
		                      (uint32_t)v[2].u, (esdb_direction)v[3].u,
		                      encode_event, &o, &next);
	else if (is(j, "read_all"))
		rc = esdb_all_read(srv->store, v[0].u, (uint32_t)v[1].u,
		                   (esdb_direction)v[2].u, encode_event, &o,
		                   &next);
	else if (is(j, "read_type"))
		rc = esdb_type_read(srv->store, v[0].p, v[0].len, v[1].u,
		                    (uint32_t)v[2].u, encode_event, &o, &next);
	else if (is(j, "stream_info"))
		rc = esdb_stream_get_info(srv->store, v[0].p, v[0].len,
		                          &version, &exists, &deleted);
	else if (is(j, "list_streams"))
		rc = esdb_stream_list(srv->store, v[0].p, v[0].len,
		                      (uint32_t)v[1].u, encode_stream, &o);
	else if (is(j, "checkpoint_list"))
		rc = esdb_checkpoint_list(srv->store, v[0].p, v[0].len,
		                          (uint32_t)v[1].u, encode_checkpoint,
		                          &o);
	else if (is(j, "checkpoint_get"))
		rc = esdb_checkpoint_get(srv->store, v[0].p, v[0].len,
		                         encode_checkpoint, &o);
	else if (is(j, "snapshot_get"))
		rc = esdb_snapshot_get(srv->store, v[0].p, v[0].len,
		                       encode_snapshot, &o);
	else if (is(j, "stats"))
		rc = esdb_store_get_stats(srv->store, &st);
	else
		rc = esdb_store_get_limits(srv->store, &lim);
	pthread_rwlock_unlock(&srv->store_lock);

	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (rc == ESDB_EINVAL && stream_id) {
		cn_encode_invalid_id(&x, j->v[0].p, j->v[0].len);
	} else if (rc) {
		cn_encode_rc(srv, &x, rc);
	} else if (is(j, "stream_info")) {
		ei_x_encode_tuple_header(&x, 4);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_ulonglong(&x, version);
		ei_x_encode_boolean(&x, exists);
		ei_x_encode_boolean(&x, deleted);
	} else if (is(j, "stats")) {
		encode_stats(&x, &st, cn_sessions_members(k->srv));
	} else if (is(j, "limits")) {
		encode_limits(&x, &lim);
	} else if (is(j, "checkpoint_get") || is(j, "snapshot_get")) {
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "ok");
		ei_x_append_buf(&x, o.items.buff, o.items.index);
	} else if (is(j, "list_streams") || is(j, "checkpoint_list")) {
		ei_x_encode_tuple_header(&x, 2);
		ei_x_encode_atom(&x, "ok");
		encode_list(&x, &o);
	} else { /* the event reads */
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_atom(&x, "ok");
		if (o.packed)
			ei_x_encode_binary(&x, o.items.buff, o.items.index);
		else
			encode_list(&x, &o);
		if (next.end)
			ei_x_encode_atom(&x, "eof");
		else
			ei_x_encode_ulonglong(&x, next.from);
	}
	ei_x_free(&o.items);
	free(j);
	cn_reply_end(k, &x);
}

void cn_read_queue(caller *k, const esdb_proto_op *op, const arg *v, unsigned n,
                   cn_read_form form)
{
	size_t bytes = 0;
	for (unsigned i = 0; i < n; i++)
		bytes += v[i].p ? v[i].len : 0;
	job *j = malloc(sizeof(*j) + bytes + 1);
	if (!j) {
		cn_reply_rc(k, ENOMEM);
		return;
	}
	j->k = k;
	j->op = op;
	j->form = form;
	char *d = j->data;
	for (unsigned i = 0; i < ESDB_PROTO_MAX_ARITY; i++) {
		j->v[i] = i < n ? v[i] : (arg){0};
		if (i < n && v[i].p) { /* $all and nil have no name */
			memcpy(d, v[i].p, v[i].len);
			j->v[i].p = d;
			d += v[i].len;
		}
	}
	/* a look-up costs less than the pool thread's wake-up (6-7 us at
	 * load 9, more on an idle machine: docs/PERFORMANCE.md): the
	 * connection's reader answers it */
	if (is(j, "stream_info") || is(j, "limits")) {
		run(j);
		return;
	}
	if (cn_pool_push(k->srv->pool, k->c, run, j) != 0) {
		free(j);
		cn_reply_rc(k, ENOMEM);
	}
}
