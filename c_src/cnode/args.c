/* args.c: request arguments decoded by their proto.h kind. The terms
 * were checked by term_check.c, so ei reads them within bounds; a term
 * of another kind is refused here. */
#include "ops.h"

#include "term_check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static bool get_atom(args *a, char out[MAXATOMLEN_UTF8])
{
	return ei_decode_atom(a->buf, &a->idx, out) == 0;
}

static bool is_atom(args *a, const char *name)
{
	int save = a->idx;
	char atom[MAXATOMLEN_UTF8];
	if (get_atom(a, atom) && strcmp(atom, name) == 0)
		return true;
	a->idx = save;
	return false;
}

bool cn_arg_bin(args *a, const char **p, size_t *len)
{
	int type, size;
	if (ei_get_type(a->buf, &a->idx, &type, &size) != 0 ||
	    type != ERL_BINARY_EXT)
		return false;
	*p = a->buf + a->idx + 5; /* the tag and the length */
	*len = (size_t)size;
	return ei_skip_term(a->buf, &a->idx) == 0;
}

static bool get_u64(args *a, uint64_t *out)
{
	unsigned long long v;
	if (ei_decode_ulonglong(a->buf, &a->idx, &v) != 0)
		return false;
	*out = v;
	return true;
}

bool cn_arg_opt_id(args *a, const uint8_t **out)
{
	const char *p;
	size_t len;
	if (is_atom(a, "nil")) {
		*out = NULL;
		return true;
	}
	if (!cn_arg_bin(a, &p, &len) || len != 16)
		return false;
	*out = (const uint8_t *)p;
	return true;
}

/* A compressed term payload inflates to at most this (the NIF's bound). */
#define MAX_INFLATED (16u << 20)

/* Why a term payload may not be written, in the NIF's words (NULL: it
 * may): term_check.c's checks, a compressed term inflated first. No
 * unknown_atom: which atoms exist is the reading VM's business here. */
static const char *payload_refusal(const uint8_t *p, size_t len)
{
	tc_limits l = TC_LIMITS_DEFAULT;
	l.max_depth = 256;
	size_t pos = 0;
	int rc = tc_check_versioned(p, len, &pos, &l, 1);
	if (rc == TC_COMPRESSED) {
		/* 131, 80, the inflated size, zlib's stream of the term */
		if (len < 6)
			return "malformed";
		uint32_t size = (uint32_t)p[2] << 24 | (uint32_t)p[3] << 16 |
		                (uint32_t)p[4] << 8 | p[5];
		if (size > MAX_INFLATED)
			return "too_large";
		uint8_t *out = malloc(size ? size : 1);
		if (!out)
			return "enomem";
		uLongf got = size;
		if (uncompress(out, &got, p + 6, len - 6) != Z_OK ||
		    got != size) {
			free(out);
			return "malformed";
		}
		pos = 0;
		rc = tc_check(out, size, &pos, &l);
		if (rc == TC_OK && pos != size)
			rc = TC_TRAILING;
		free(out);
	}
	if (rc == TC_OK)
		return NULL;
	if (rc == TC_FUN || rc == TC_PID || rc == TC_PORT || rc == TC_REF)
		return tc_error_name(rc);
	return "malformed";
}

bool cn_arg_payload(args *a, const char **p, size_t *len, esdb_encoding *enc,
                    const char **why)
{
	int type, arity;
	if (ei_get_type(a->buf, &a->idx, &type, &arity) == 0 &&
	    type == ERL_SMALL_TUPLE_EXT && arity == 2) {
		if (ei_decode_tuple_header(a->buf, &a->idx, &arity) != 0 ||
		    !is_atom(a, "term") || !cn_arg_bin(a, p, len))
			return false;
		if (!*why)
			*why = payload_refusal((const uint8_t *)*p, *len);
		*enc = ESDB_ENCODING_TERM;
		return true;
	}
	*enc = ESDB_ENCODING_BYTES;
	return cn_arg_bin(a, p, len);
}

int cn_arg_events(const char *m, int at, uint32_t max, esdb_new_event **out,
                  size_t *n, const char **why)
{
	args a = {m, at};
	int count;
	if (ei_decode_list_header(a.buf, &a.idx, &count) != 0 || count < 0)
		return EINVAL;
	*n = (size_t)count;
	if (*n > max)
		return ESDB_ELIMIT;
	esdb_new_event *evs = calloc(*n ? *n : 1, sizeof(*evs));
	if (!evs)
		return ENOMEM;
	bool ok = true;
	for (size_t i = 0; ok && i < *n; i++) {
		int arity;
		const char *eid;
		size_t eid_len;
		esdb_new_event *e = &evs[i];
		ok = ei_decode_tuple_header(a.buf, &a.idx, &arity) == 0 &&
		     arity == 6 && cn_arg_bin(&a, &eid, &eid_len) &&
		     eid_len == 16 &&
		     cn_arg_bin(&a, &e->event_type, &e->event_type_len) &&
		     cn_arg_payload(&a, (const char **)&e->data, &e->data_len,
		                    &e->data_encoding, why) &&
		     cn_arg_payload(&a, (const char **)&e->metadata,
		                    &e->metadata_len, &e->metadata_encoding,
		                    why) &&
		     cn_arg_opt_id(&a, &e->causation_id) &&
		     cn_arg_opt_id(&a, &e->correlation_id);
		if (ok)
			memcpy(e->event_id, eid, 16);
	}
	if (!ok) {
		free(evs);
		return EINVAL;
	}
	*out = evs;
	return 0;
}

bool cn_arg_decode(args *a, esdb_proto_arg kind, arg *v, const char **why)
{
	int type, size;
	*v = (arg){0};
	switch (kind) {
	case ESDB_ARG_STREAM_ID:
	case ESDB_ARG_NAME:
	case ESDB_ARG_BINARY:
		return cn_arg_bin(a, &v->p, &v->len);
	case ESDB_ARG_PAYLOAD:
		return cn_arg_payload(a, &v->p, &v->len, &v->enc, why);
	case ESDB_ARG_REQUEST: {
		/* {Id, Retry}: v->p the 16-byte id, v->retry */
		int arity;
		if (ei_decode_tuple_header(a->buf, &a->idx, &arity) != 0 ||
		    arity != 2 || !cn_arg_bin(a, &v->p, &v->len) ||
		    v->len != 16)
			return false;
		v->retry = is_atom(a, "true");
		return v->retry || is_atom(a, "false");
	}
	case ESDB_ARG_EXPECTED: {
		/* {retry, Expected}: an append sent again after an unknown
		 * outcome (esdb_cmd_mark_retry) */
		int save = a->idx, arity;
		if (ei_decode_tuple_header(a->buf, &a->idx, &arity) == 0) {
			if (arity != 2 || !is_atom(a, "retry"))
				return false;
			v->retry = true;
		} else {
			a->idx = save;
		}
		if (is_atom(a, "any"))
			v->u = ESDB_EXPECT_ANY;
		else if (is_atom(a, "no_stream"))
			v->u = ESDB_EXPECT_NO_STREAM;
		else if (is_atom(a, "stream_exists"))
			v->u = ESDB_EXPECT_STREAM_EXISTS;
		else
			return get_u64(a, &v->u) &&
			       v->u < ESDB_EXPECT_STREAM_EXISTS;
		return true;
	}
	case ESDB_ARG_UINT:
		return get_u64(a, &v->u);
	case ESDB_ARG_COUNT:
		if (!get_u64(a, &v->u))
			return false;
		if (v->u > ESDB_PROTO_MAX_READ)
			v->u = ESDB_PROTO_MAX_READ;
		return true;
	case ESDB_ARG_DIRECTION:
		if (is_atom(a, "forward"))
			v->u = ESDB_DIRECTION_FORWARD;
		else if (is_atom(a, "backward"))
			v->u = ESDB_DIRECTION_BACKWARD;
		else
			return false;
		return true;
	case ESDB_ARG_AFTER:
		return is_atom(a, "nil") || cn_arg_bin(a, &v->p, &v->len);
	case ESDB_ARG_EVENTS:
		/* decoded by the append itself, from here */
		v->at = a->idx;
		return ei_get_type(a->buf, &a->idx, &type, &size) == 0 &&
		       (type == ERL_LIST_EXT || type == ERL_NIL_EXT) &&
		       ei_skip_term(a->buf, &a->idx) == 0;
	case ESDB_ARG_PATH:
		/* 1..ESDB_PROTO_MAX_PATH bytes without NUL */
		return cn_arg_bin(a, &v->p, &v->len) && v->len > 0 &&
		       v->len <= ESDB_PROTO_MAX_PATH &&
		       !memchr(v->p, 0, v->len);
	case ESDB_ARG_SOURCE: {
		/* all | {stream, Id} | {type, Type}: v->u the kind */
		int arity;
		if (is_atom(a, "all")) {
			v->u = CN_SOURCE_ALL;
			return true;
		}
		if (ei_decode_tuple_header(a->buf, &a->idx, &arity) != 0 ||
		    arity != 2)
			return false;
		if (is_atom(a, "stream"))
			v->u = CN_SOURCE_STREAM;
		else if (is_atom(a, "type"))
			v->u = CN_SOURCE_TYPE;
		else
			return false;
		return cn_arg_bin(a, &v->p, &v->len) && v->len > 0;
	}
	case ESDB_ARG_FORMAT: {
		/* {Module, Decode}: only Decode matters here (v->u) */
		int arity;
		char module[MAXATOMLEN_UTF8];
		if (ei_decode_tuple_header(a->buf, &a->idx, &arity) != 0 ||
		    arity != 2 || !get_atom(a, module))
			return false;
		if (is_atom(a, "true"))
			v->u = 1;
		else if (is_atom(a, "false"))
			v->u = 0;
		else
			return false;
		return true;
	}
	case ESDB_ARG_MEMBER:
		return get_u64(a, &v->u);
	case ESDB_ARG_ADDRESS:
		/* "ip:port": 1..255 bytes without NUL */
		return cn_arg_bin(a, &v->p, &v->len) && v->len > 0 &&
		       v->len < 256 && !memchr(v->p, 0, v->len);
	case ESDB_ARG_ROLE:
		/* v->u: 0 standby, 1 voter, 2 spare (replica.h's values) */
		if (is_atom(a, "standby"))
			v->u = 0;
		else if (is_atom(a, "voter"))
			v->u = 1;
		else if (is_atom(a, "spare"))
			v->u = 2;
		else
			return false;
		return true;
	case ESDB_ARG_GRANT:
		return get_u64(a, &v->u) && v->u > 0;
	default: /* pids, options: not served here */
		return false;
	}
}
