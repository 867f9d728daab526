/* envelope.c: frames and request envelopes taken apart within bounds. */
#include "envelope.h"

#include "term_check.h"

#include <string.h>

enum {
	DOP_SEND = 2,
	DOP_EXIT = 3,
	DOP_EXIT_TT = 13,
	DOP_REG_SEND = 6,
	DOP_SEND_TT = 12,
	DOP_REG_SEND_TT = 16,
};
#define PASS_THROUGH 112

bool cn_frame_is_send(int op)
{
	return op == DOP_SEND || op == DOP_REG_SEND || op == DOP_SEND_TT ||
	       op == DOP_REG_SEND_TT;
}

int cn_frame_parse(const uint8_t *buf, size_t len, size_t *msg_at)
{
	/* 'p', then the control message: 131, a small tuple, its
	 * operation as a small integer. */
	if (len < 6 || buf[0] != PASS_THROUGH || buf[1] != 131 ||
	    buf[2] != 104 || buf[3] < 1 || buf[4] != 97)
		return -1;
	int op = buf[5];
	if (!cn_frame_is_send(op))
		return op; /* links, exits, monitors: not read further */
	/* The control message holds pids, a trace token, the
	 * destination's name; the message follows it. */
	static const tc_limits control = {TC_ALLOW_PID | TC_ALLOW_REF, 8, 64};
	size_t pos = 1;
	if (tc_check_versioned(buf, len, &pos, &control, 0) != TC_OK ||
	    pos >= len)
		return -1;
	*msg_at = pos;
	return op;
}

bool cn_frame_exit(const uint8_t *buf, size_t len, erlang_pid *from,
                   erlang_pid *to)
{
	if (len < 6 || buf[0] != PASS_THROUGH || buf[1] != 131 ||
	    buf[2] != 104 || buf[4] != 97 ||
	    (buf[5] != DOP_EXIT && buf[5] != DOP_EXIT_TT) ||
	    buf[3] != (buf[5] == DOP_EXIT ? 4 : 5))
		return false;
	/* the reason may hold anything a process exits with */
	static const tc_limits control = {TC_ALLOW_PID | TC_ALLOW_REF, 32, 64};
	size_t pos = 1;
	if (tc_check_versioned(buf, len, &pos, &control, 1) != TC_OK)
		return false;
	int idx = 6; /* past 'p', 131, the tuple header and the op */
	return ei_decode_pid((const char *)buf, &idx, from) == 0 &&
	       ei_decode_pid((const char *)buf, &idx, to) == 0;
}

static const tc_limits plain = TC_LIMITS_DEFAULT;
static const tc_limits pid_only = {TC_ALLOW_PID, 1, 0};
static const tc_limits ref_only = {TC_ALLOW_REF, 1, 0};
/* {cancel, Ref} names the Ref of an earlier request */
static const tc_limits cancel_request = {TC_ALLOW_REF, 1, 0};

/* Whether m[at..len) starts {cancel, _}: its bytes compared, nothing
 * decoded (the term is not checked yet). */
static bool is_cancel(const uint8_t *m, size_t len, size_t at)
{
	if (at + 3 > len || m[at] != 104 || m[at + 1] != 2)
		return false;
	at += 2;
	size_t n, hdr;
	if (m[at] == 119 || m[at] == 115) /* SMALL_ATOM_UTF8, SMALL_ATOM */
		hdr = 2, n = at + 1 < len ? m[at + 1] : 0;
	else if ((m[at] == 118 || m[at] == 100) && at + 2 < len)
		hdr = 3, n = (size_t)m[at + 1] << 8 | m[at + 2];
	else
		return false;
	return n == 6 && at + hdr + n <= len &&
	       memcmp(m + at + hdr, "cancel", 6) == 0;
}

/* Check the term at *pos with l; *start: where it began. */
static bool checked(const uint8_t *m, size_t len, size_t *pos,
                    const tc_limits *l, size_t *start)
{
	*start = *pos;
	return tc_check(m, len, pos, l) == TC_OK;
}

/* The tuple at m[*idx] as {Op, Args...}: e's op, arity, args_at. */
static void take_request(const uint8_t *m, int idx, cn_envelope *e)
{
	int type, arity = 0;
	if (ei_get_type((const char *)m, &idx, &type, &arity) == 0 &&
	    (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT) &&
	    arity >= 1 &&
	    ei_decode_tuple_header((const char *)m, &idx, &arity) == 0 &&
	    ei_decode_atom((const char *)m, &idx, e->op) == 0) {
		e->arity = arity;
		e->args_at = idx;
	} else {
		e->op[0] = '\0';
	}
}

bool cn_envelope_unwrap_at(const uint8_t *m, cn_envelope *e, const char **name,
                           size_t *len)
{
	int idx = e->args_at, type, size;
	if (e->check || strcmp(e->op, "at") != 0 || e->arity != 3 ||
	    ei_get_type((const char *)m, &idx, &type, &size) != 0 ||
	    type != ERL_BINARY_EXT)
		return false;
	*name = (const char *)m + idx + 5; /* the tag and the length */
	*len = (size_t)size;
	if (ei_skip_term((const char *)m, &idx) != 0)
		return false;
	take_request(m, idx, e);
	return true;
}

bool cn_envelope_unwrap_in_term(const uint8_t *m, cn_envelope *e,
                                uint64_t *term, uint64_t *until)
{
	int idx = e->args_at;
	unsigned long long t, u;
	char atom[MAXATOMLEN_UTF8];
	if (e->check || strcmp(e->op, "in_term") != 0 || e->arity != 4 ||
	    ei_decode_ulonglong((const char *)m, &idx, &t) != 0)
		return false;
	if (ei_decode_ulonglong((const char *)m, &idx, &u) == 0)
		*until = u;
	else if (ei_decode_atom((const char *)m, &idx, atom) == 0 &&
	         strcmp(atom, "infinity") == 0)
		*until = UINT64_MAX;
	else
		return false;
	*term = t;
	take_request(m, idx, e);
	return true;
}

bool cn_envelope_unwrap_as_owner(const uint8_t *m, cn_envelope *e)
{
	if (e->check || strcmp(e->op, "as_owner") != 0 || e->arity != 2)
		return false;
	take_request(m, e->args_at, e);
	return true;
}

bool cn_envelope_parse(const uint8_t *m, size_t len, cn_envelope *e)
{
	size_t pos = 3, at, pid_at;
	char atom[MAXATOMLEN_UTF8];
	int idx;
	memset(e, 0, sizeof(*e));
	/* A 4-tuple: the atom call, a pid, a reference, the request. */
	if (len < 3 || m[0] != 131 || m[1] != 104 || m[2] != 4)
		return false;
	if (!checked(m, len, &pos, &plain, &at) ||
	    (idx = (int)at, ei_decode_atom((const char *)m, &idx, atom)) != 0 ||
	    strcmp(atom, "call") != 0 ||
	    !checked(m, len, &pos, &pid_only, &pid_at) ||
	    (idx = (int)pid_at,
	     ei_decode_pid((const char *)m, &idx, &e->from)) != 0 ||
	    !checked(m, len, &pos, &ref_only, &e->ref_at) ||
	    (m[e->ref_at] != 90 && m[e->ref_at] != 114))
		return false;
	e->ref_len = pos - e->ref_at;
	size_t req_at = pos;
	e->check = tc_check(
	    m, len, &pos, is_cancel(m, len, req_at) ? &cancel_request : &plain);
	if (e->check == TC_OK && pos != len)
		e->check = TC_TRAILING;
	if (e->check)
		return true;
	take_request(m, (int)req_at, e);
	return true;
}
