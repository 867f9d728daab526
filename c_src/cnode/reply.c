/* reply.c: replies {Ref, Reply} and the error terms, as the NIF makes
 * them. */
#include "ops.h"

#include "cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cn_reply_begin(const caller *k, ei_x_buff *x)
{
	ei_x_new_with_version(x);
	ei_x_encode_tuple_header(x, 2);
	ei_x_append_buf(x, (const char *)k->ref, (int)k->ref_len);
}

void cn_reply_end(caller *k, ei_x_buff *x)
{
	cn_conn_reply(k->c, &k->from, x);
	free(k);
}

static void encode_error_atom(ei_x_buff *x, const char *atom)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_atom(x, atom);
}

static void encode_error_pair(ei_x_buff *x, const char *tag, const char *atom)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, tag);
	ei_x_encode_atom(x, atom);
}

void cn_reply_error(caller *k, const char *tag, const char *atom)
{
	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (tag)
		encode_error_pair(&x, tag, atom);
	else
		encode_error_atom(&x, atom);
	cn_reply_end(k, &x);
}

void cn_reply_rc(caller *k, int rc)
{
	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (rc)
		cn_encode_rc(k->srv, &x, rc);
	else
		ei_x_encode_atom(&x, "ok");
	cn_reply_end(k, &x);
}

void cn_encode_rc(cn_server *srv, ei_x_buff *x, int rc)
{
	if (rc == ESDB_ECORRUPT) {
		esdb_where w;
		esdb_where_take(&w);
		ei_x_encode_tuple_header(x, 2);
		ei_x_encode_atom(x, "error");
		ei_x_encode_tuple_header(x, 2);
		ei_x_encode_atom(x, "corrupt");
		if ((w.kind == ESDB_WHERE_EVENT && w.number) ||
		    w.kind == ESDB_WHERE_PAGE) {
			ei_x_encode_tuple_header(x, 2);
			ei_x_encode_atom(x, esdb_proto_where_name(w.kind));
			ei_x_encode_ulonglong(x, w.number);
		} else {
			ei_x_encode_atom(x, esdb_proto_where_name(w.kind));
		}
	} else if (rc == ESDB_ENOT_LEADER) {
		cn_cluster_encode_not_leader(srv, x);
	} else if (rc == ESDB_ESTORE_FAILED) {
		encode_error_pair(
		    x, "store_failed",
		    esdb_error_name(esdb_store_get_failure(srv->store)));
	} else {
		encode_error_atom(x, esdb_error_name(rc));
	}
}

void cn_encode_limit(ei_x_buff *x, esdb_limit_key key, uint64_t max)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 3);
	ei_x_encode_atom(x, "limit_exceeded");
	ei_x_encode_atom(x, esdb_limit_name(key));
	ei_x_encode_ulonglong(x, max);
}

void cn_encode_invalid_id(ei_x_buff *x, const char *id, size_t len)
{
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "error");
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "invalid_stream_id");
	ei_x_encode_binary(x, id, (long)len);
}

void cn_encode_payload(ei_x_buff *x, const void *p, size_t len,
                       esdb_encoding enc)
{
	if (enc == ESDB_ENCODING_TERM || enc == ESDB_ENCODING_LEGACY) {
		ei_x_encode_tuple_header(x, 2);
		ei_x_encode_atom(x,
		                 enc == ESDB_ENCODING_TERM ? "term" : "legacy");
	}
	ei_x_encode_binary(x, p, (long)len);
}

int cn_x_reserve(ei_x_buff *x, size_t more)
{
	size_t need = (size_t)x->index + more;
	if (need <= (size_t)x->buffsz)
		return 0;
	size_t cap = (size_t)x->buffsz * 2;
	if (cap < need)
		cap = need;
	if (cap > INT32_MAX)
		return ENOMEM;
	char *b = realloc(x->buff, cap);
	if (!b)
		return ENOMEM;
	x->buff = b;
	x->buffsz = (int)cap;
	return 0;
}
