/* fuzz_cnode_frames.c: libFuzzer target for what the C node takes off a
 * connection (make fuzz): the term validator (c_src/cnode/term_check.c),
 * the frame and request envelope parsers (envelope.c) and the request
 * arguments' decoders by protocol kind (args.c, an append's events too),
 * with ei decoding whatever they accept. Each input is taken four ways:
 * as a frame, as a message, as the Request of a well-formed {call, From,
 * Ref, Request} frame (so the fuzzer reaches request terms without
 * having to find an envelope first), and as the arguments of the
 * operation its first byte picks. Every buffer has its exact size, so
 * a read past it shows under ASan, in ei too. */
#include "envelope.h"
#include "ops.h"
#include "session_ops.h"
#include "term_check.h"

#include <stdlib.h>
#include <string.h>

/* Decode an accepted term the ways ei will: skipped to where the
 * validator says it ends, and printed whole (every decoder; printing may
 * refuse, e.g. an atom beyond Latin-1, but never reads past the end). */
static void decode_with_ei(const uint8_t *m, size_t len, int at, size_t end)
{
	int idx = at;
	if (ei_skip_term((const char *)m, &idx) != 0 || (size_t)idx != end)
		abort(); /* the validator and ei disagree on the term */
	char *s = NULL;
	idx = at;
	if (ei_s_print_term(&s, (const char *)m, &idx) >= 0 &&
	    (size_t)idx != end)
		abort();
	free(s);
}

static volatile uint8_t sink;

static void touch(const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; b && i < len; i++)
		sink ^= b[i];
}

/* Decode the arguments as the operations of that name and arity take
 * them (the C node's dispatch); every byte handed out is read. */
static void decode_args(const uint8_t *m, const cn_envelope *e)
{
	for (size_t i = 0; i < esdb_proto_op_count; i++) {
		const esdb_proto_op *op = &esdb_proto_ops[i];
		if (strcmp(op->name, e->op) != 0)
			continue;
		args a = {(const char *)m, e->args_at};
		const char *why = NULL;
		for (unsigned k = 0; k < op->arity; k++) {
			arg v;
			if (op->args[k] == ESDB_ARG_STORE ||
			    op->args[k] == ESDB_ARG_REF)
				continue;
			if (!cn_arg_decode(&a, op->args[k], &v, &why))
				break;
			touch(v.p, v.len);
			esdb_new_event *evs;
			size_t n;
			if (op->args[k] == ESDB_ARG_EVENTS &&
			    cn_arg_events(a.buf, v.at, 10000, &evs, &n, &why) ==
			        0) {
				for (size_t j = 0; j < n; j++) {
					touch(evs[j].event_type,
					      evs[j].event_type_len);
					touch(evs[j].data, evs[j].data_len);
					touch(evs[j].metadata,
					      evs[j].metadata_len);
					touch(evs[j].causation_id,
					      evs[j].causation_id ? 16 : 0);
				}
				free(evs);
			}
		}
	}
}

/* A session_* request's argument, as sessions.c decodes it. */
static void decode_session_arg(const uint8_t *m, const cn_envelope *e)
{
	const cn_session_op *op = cn_session_op_find(e->op);
	if (!op || op->kind == ESDB_ARG_N || e->arity != 2)
		return;
	args a = {(const char *)m, e->args_at};
	const char *why = NULL;
	arg v;
	if (cn_arg_decode(&a, op->kind, &v, &why))
		touch(v.p, v.len);
}

static void message(const uint8_t *m, size_t len)
{
	cn_envelope e;
	if (!cn_envelope_parse(m, len, &e) || e.check)
		return;
	decode_with_ei(m, len, 1, len);
	if (!e.op[0])
		return;
	int idx = e.args_at;
	for (int i = 1; i < e.arity; i++)
		if (ei_skip_term((const char *)m, &idx) != 0 ||
		    (size_t)idx > len)
			abort();
	decode_args(m, &e);
	decode_session_arg(m, &e);
	/* {at, Store, Request}: the inner request's arguments */
	const char *name;
	size_t name_len;
	if (cn_envelope_unwrap_at(m, &e, &name, &name_len)) {
		touch(name, name_len);
		decode_args(m, &e);
		decode_session_arg(m, &e);
	}
	/* {as_owner, Mutation}: the mutation's arguments */
	if (cn_envelope_unwrap_as_owner(m, &e))
		decode_args(m, &e);
}

static void frame(const uint8_t *buf, size_t len)
{
	size_t at;
	int op = cn_frame_parse(buf, len, &at);
	erlang_pid from, to;
	if (op >= 0 && cn_frame_is_send(op)) {
		decode_with_ei(buf, len, 2, at); /* the control message */
		message(buf + at, len - at);
	} else if (cn_frame_exit(buf, len, &from, &to)) {
		decode_with_ei(buf, len, 2, len);
	}
}

static uint8_t *copy(const uint8_t *a, size_t alen, const uint8_t *b,
                     size_t blen)
{
	uint8_t *p = malloc(alen + blen ? alen + blen : 1);
	if (!p)
		abort();
	memcpy(p, a, alen);
	if (blen)
		memcpy(p + alen, b, blen);
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *b = copy(data, size, NULL, 0);
	frame(b, size);
	message(b, size);
	free(b);

	/* 'p', {6, Pid, '', esdb}, then {call, Pid, Ref, <input>} */
	static const uint8_t pid[] = {88, 119, 4, 'a', '@', 'v', 'm', 0, 0, 0,
	                              1,  0,   0, 0,   0,   0,   0,   0, 5};
	static const uint8_t ref[] = {90, 0, 1, 119, 4, 'a', '@', 'v', 'm',
	                              0,  0, 0, 5,   0, 0,   0,   9};
	uint8_t head[160];
	size_t n = 0;
	head[n++] = 112, head[n++] = 131, head[n++] = 104, head[n++] = 4;
	head[n++] = 97, head[n++] = 6;
	memcpy(head + n, pid, sizeof(pid)), n += sizeof(pid);
	head[n++] = 119, head[n++] = 0;
	head[n++] = 119, head[n++] = 4;
	memcpy(head + n, "esdb", 4), n += 4;
	head[n++] = 131, head[n++] = 104, head[n++] = 4;
	head[n++] = 119, head[n++] = 4;
	memcpy(head + n, "call", 4), n += 4;
	memcpy(head + n, pid, sizeof(pid)), n += sizeof(pid);
	memcpy(head + n, ref, sizeof(ref)), n += sizeof(ref);
	b = copy(head, n, data, size);
	frame(b, n + size);
	free(b);

	/* {call, Pid, Ref, {Op, <the rest of the input>}}: the first byte
	 * picks the operation, so the argument decoders are reached. */
	if (size == 0)
		return 0;
	/* (the session requests after the table's operations) */
	size_t pick = data[0] % (esdb_proto_op_count + cn_session_op_count);
	const char *name;
	unsigned carried = 0;
	if (pick < esdb_proto_op_count) {
		const esdb_proto_op *op = &esdb_proto_ops[pick];
		name = op->name;
		for (unsigned k = 0; k < op->arity; k++)
			carried += op->args[k] != ESDB_ARG_STORE &&
			           op->args[k] != ESDB_ARG_REF;
	} else {
		const cn_session_op *op =
		    &cn_session_ops[pick - esdb_proto_op_count];
		name = op->name;
		carried = op->kind != ESDB_ARG_N;
	}
	size_t name_len = strlen(name);
	head[n++] = 104, head[n++] = (uint8_t)(carried + 1);
	head[n++] = 119, head[n++] = (uint8_t)name_len;
	memcpy(head + n, name, name_len), n += name_len;
	b = copy(head, n, data + 1, size - 1);
	frame(b, n + size - 1);
	free(b);
	return 0;
}
