/* test_cnode_envelope.c: the C node's frame and request envelope parsers
 * (c_src/cnode/envelope.c) on frames as a BEAM node sends them and on
 * what it never sends. */
#include "harness.h"

#include "envelope.h"
#include "term_check.h"

/* 'p', {6, From, '', esdb}, then msg: a REG_SEND frame. */
static uint8_t *reg_send(const ei_x_buff *msg, size_t *len)
{
	erlang_pid from = {.num = 7, .creation = 99};
	strcpy(from.node, "client@vm");
	ei_x_buff x;
	ei_x_new(&x);
	ei_x_append_buf(&x, "p", 1);
	ei_x_encode_version(&x);
	ei_x_encode_tuple_header(&x, 4);
	ei_x_encode_long(&x, 6);
	ei_x_encode_pid(&x, &from);
	ei_x_encode_atom(&x, "");
	ei_x_encode_atom(&x, "esdb");
	ei_x_append_buf(&x, msg->buff, msg->index);
	uint8_t *b = malloc((size_t)x.index);
	memcpy(b, x.buff, (size_t)x.index);
	*len = (size_t)x.index;
	ei_x_free(&x);
	return b;
}

/* {call, From, Ref, {Op, 1, <<"s">>}} or, with a pid, {Op, Pid}. */
static void request(ei_x_buff *x, const char *op, bool pid_inside)
{
	erlang_pid from = {.num = 7, .creation = 99};
	erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 99};
	strcpy(from.node, "client@vm");
	strcpy(ref.node, "client@vm");
	ei_x_new_with_version(x);
	ei_x_encode_tuple_header(x, 4);
	ei_x_encode_atom(x, "call");
	ei_x_encode_pid(x, &from);
	ei_x_encode_ref(x, &ref);
	ei_x_encode_tuple_header(x, pid_inside ? 2 : 3);
	ei_x_encode_atom(x, op);
	if (pid_inside) {
		ei_x_encode_pid(x, &from);
		return;
	}
	ei_x_encode_long(x, 1);
	ei_x_encode_binary(x, "s", 1);
}

TEST(cnode_envelope_takes_a_request_apart)
{
	ei_x_buff m;
	request(&m, "read_all", false);
	size_t len, at = 0;
	uint8_t *f = reg_send(&m, &len);
	CHECK_EQ(cn_frame_parse(f, len, &at), 6);
	CHECK(cn_frame_is_send(6));
	cn_envelope e;
	REQUIRE(cn_envelope_parse(f + at, len - at, &e));
	CHECK_EQ(e.check, TC_OK);
	CHECK(strcmp(e.op, "read_all") == 0);
	CHECK_EQ(e.arity, 3);
	CHECK(strcmp(e.from.node, "client@vm") == 0);
	CHECK_EQ(e.from.num, 7);
	CHECK(e.ref_len > 0 && f[at + e.ref_at] == 90);
	/* the first argument decodes where args_at says */
	long one;
	int idx = e.args_at;
	CHECK(ei_decode_long((const char *)f + at, &idx, &one) == 0 &&
	      one == 1);
	free(f);
	ei_x_free(&m);
}

TEST(cnode_envelope_refuses_what_no_request_is)
{
	ei_x_buff m;
	cn_envelope e;
	/* a pid inside the request: a request still, refused by its check */
	request(&m, "stats", true);
	CHECK(cn_envelope_parse((uint8_t *)m.buff, (size_t)m.index, &e));
	CHECK_EQ(e.check, TC_PID);
	ei_x_free(&m);
	/* not {call, Pid, Ref, _}: nobody to answer */
	ei_x_new_with_version(&m);
	ei_x_encode_tuple_header(&m, 4);
	ei_x_encode_atom(&m, "cast");
	ei_x_encode_atom(&m, "a");
	ei_x_encode_atom(&m, "b");
	ei_x_encode_atom(&m, "c");
	CHECK(!cn_envelope_parse((uint8_t *)m.buff, (size_t)m.index, &e));
	ei_x_free(&m);
	/* frames: not 'p', a control message that lies, a link (no
	 * message: served as nothing) */
	size_t at;
	static const uint8_t not_p[] = {0, 131, 104, 1, 97, 2};
	CHECK_EQ(cn_frame_parse(not_p, sizeof(not_p), &at), -1);
	static const uint8_t lying[] = {'p', 131, 104, 3, 97, 2, 105, 255};
	CHECK_EQ(cn_frame_parse(lying, sizeof(lying), &at), -1);
	static const uint8_t link[] = {'p', 131, 104, 3, 97, 1};
	CHECK_EQ(cn_frame_parse(link, sizeof(link), &at), 1);
	CHECK(!cn_frame_is_send(1));
}

/* 'p', then the control message {Op, From, To, Reason} (or with a trace
 * token before Reason): an EXIT frame as a BEAM sends it when a process
 * linked to a pid of the C node ends. */
static uint8_t *exit_frame(long op, bool tt, size_t *len)
{
	erlang_pid from = {.num = 7, .creation = 99};
	erlang_pid to = {.num = 3, .creation = 5};
	strcpy(from.node, "client@vm");
	strcpy(to.node, "cnode@vm");
	ei_x_buff x;
	ei_x_new(&x);
	ei_x_append_buf(&x, "p", 1);
	ei_x_encode_version(&x);
	ei_x_encode_tuple_header(&x, tt ? 5 : 4);
	ei_x_encode_long(&x, op);
	ei_x_encode_pid(&x, &from);
	ei_x_encode_pid(&x, &to);
	if (tt)
		ei_x_encode_atom(&x, "token");
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "shutdown");
	ei_x_encode_pid(&x, &from);
	uint8_t *b = malloc((size_t)x.index);
	memcpy(b, x.buff, (size_t)x.index);
	*len = (size_t)x.index;
	ei_x_free(&x);
	return b;
}

TEST(cnode_envelope_reads_exit_frames_alone)
{
	size_t len;
	erlang_pid from, to;
	for (int tt = 0; tt < 2; tt++) {
		uint8_t *f = exit_frame(tt ? 13 : 3, tt, &len);
		REQUIRE(cn_frame_exit(f, len, &from, &to));
		CHECK(strcmp(from.node, "client@vm") == 0 && from.num == 7);
		CHECK(strcmp(to.node, "cnode@vm") == 0 && to.num == 3 &&
		      to.creation == 5);
		/* every cut of it is refused, never read past */
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *c = malloc(cut ? cut : 1);
			memcpy(c, f, cut);
			CHECK(!cn_frame_exit(c, cut, &from, &to));
			free(c);
		}
		free(f);
	}
	/* EXIT2 (exit/2 from afar) and links are not exits to act on */
	uint8_t *f = exit_frame(8, false, &len);
	CHECK(!cn_frame_exit(f, len, &from, &to));
	free(f);
	static const uint8_t link[] = {'p', 131, 104, 3, 97, 1};
	CHECK(!cn_frame_exit(link, sizeof(link), &from, &to));
}

TEST(cnode_envelope_unwraps_a_request_for_a_named_store)
{
	erlang_pid from = {.num = 7, .creation = 99};
	erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 99};
	strcpy(from.node, "client@vm");
	strcpy(ref.node, "client@vm");
	ei_x_buff x;
	ei_x_new_with_version(&x);
	ei_x_encode_tuple_header(&x, 4);
	ei_x_encode_atom(&x, "call");
	ei_x_encode_pid(&x, &from);
	ei_x_encode_ref(&x, &ref);
	ei_x_encode_tuple_header(&x, 3);
	ei_x_encode_atom(&x, "at");
	ei_x_encode_binary(&x, "orders", 6);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "stream_info");
	ei_x_encode_binary(&x, "s", 1);
	cn_envelope e;
	const uint8_t *m = (const uint8_t *)x.buff;
	REQUIRE(cn_envelope_parse(m, (size_t)x.index, &e));
	CHECK(strcmp(e.op, "at") == 0 && e.arity == 3);
	const char *name;
	size_t len;
	REQUIRE(cn_envelope_unwrap_at(m, &e, &name, &len));
	CHECK(len == 6 && memcmp(name, "orders", 6) == 0);
	CHECK(strcmp(e.op, "stream_info") == 0 && e.arity == 2);
	int idx = e.args_at, type, size;
	CHECK(ei_get_type(x.buff, &idx, &type, &size) == 0 &&
	      type == ERL_BINARY_EXT && size == 1);
	/* not {at, Binary, _}: refused, e as it was */
	CHECK(!cn_envelope_unwrap_at(m, &e, &name, &len));
	ei_x_free(&x);
}

/* {call, From, Ref, {in_term, 7, Until, {append, <<"s">>}}}, Until the
 * uint `until` or, when `atom` is set, that atom. */
static void in_term_request(ei_x_buff *x, unsigned long long until,
                            const char *atom)
{
	erlang_pid from = {.num = 7, .creation = 99};
	erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 99};
	strcpy(from.node, "client@vm");
	strcpy(ref.node, "client@vm");
	ei_x_new_with_version(x);
	ei_x_encode_tuple_header(x, 4);
	ei_x_encode_atom(x, "call");
	ei_x_encode_pid(x, &from);
	ei_x_encode_ref(x, &ref);
	ei_x_encode_tuple_header(x, 4);
	ei_x_encode_atom(x, "in_term");
	ei_x_encode_ulonglong(x, 7);
	if (atom)
		ei_x_encode_atom(x, atom);
	else
		ei_x_encode_ulonglong(x, until);
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "append");
	ei_x_encode_binary(x, "s", 1);
}

TEST(cnode_envelope_unwraps_a_fenced_mutation)
{
	ei_x_buff x;
	cn_envelope e;
	uint64_t term = 0, until = 0;
	in_term_request(&x, 1764633600000ULL, NULL);
	REQUIRE(cn_envelope_parse((uint8_t *)x.buff, (size_t)x.index, &e));
	REQUIRE(
	    cn_envelope_unwrap_in_term((uint8_t *)x.buff, &e, &term, &until));
	CHECK(term == 7 && until == 1764633600000ULL);
	CHECK(strcmp(e.op, "append") == 0 && e.arity == 2);
	/* unwrapped once: the inner request is no fence */
	CHECK(
	    !cn_envelope_unwrap_in_term((uint8_t *)x.buff, &e, &term, &until));
	ei_x_free(&x);

	in_term_request(&x, 0, "infinity");
	REQUIRE(cn_envelope_parse((uint8_t *)x.buff, (size_t)x.index, &e));
	REQUIRE(
	    cn_envelope_unwrap_in_term((uint8_t *)x.buff, &e, &term, &until));
	CHECK(until == UINT64_MAX && strcmp(e.op, "append") == 0);
	ei_x_free(&x);

	/* Until neither a uint nor infinity: refused, e as it was */
	in_term_request(&x, 0, "soon");
	REQUIRE(cn_envelope_parse((uint8_t *)x.buff, (size_t)x.index, &e));
	CHECK(
	    !cn_envelope_unwrap_in_term((uint8_t *)x.buff, &e, &term, &until));
	CHECK(strcmp(e.op, "in_term") == 0 && e.arity == 4);
	ei_x_free(&x);
}

/* {call, From, Ref, {as_owner, Inner}}, Inner {checkpoint_delete,
 * <<"p">>} or, when `inner_atom`, the atom inner. */
static void as_owner_request(ei_x_buff *x, bool inner_atom)
{
	erlang_pid from = {.num = 7, .creation = 99};
	erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 99};
	strcpy(from.node, "client@vm");
	strcpy(ref.node, "client@vm");
	ei_x_new_with_version(x);
	ei_x_encode_tuple_header(x, 4);
	ei_x_encode_atom(x, "call");
	ei_x_encode_pid(x, &from);
	ei_x_encode_ref(x, &ref);
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "as_owner");
	if (inner_atom) {
		ei_x_encode_atom(x, "inner");
		return;
	}
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "checkpoint_delete");
	ei_x_encode_binary(x, "p", 1);
}

TEST(cnode_envelope_unwraps_an_owners_write)
{
	ei_x_buff x;
	cn_envelope e;
	as_owner_request(&x, false);
	REQUIRE(cn_envelope_parse((uint8_t *)x.buff, (size_t)x.index, &e));
	REQUIRE(cn_envelope_unwrap_as_owner((uint8_t *)x.buff, &e));
	CHECK(strcmp(e.op, "checkpoint_delete") == 0 && e.arity == 2);
	/* unwrapped once: the inner request is no owner's write */
	CHECK(!cn_envelope_unwrap_as_owner((uint8_t *)x.buff, &e));
	ei_x_free(&x);

	/* Inner no request: unwrapped to no operation ("") */
	as_owner_request(&x, true);
	REQUIRE(cn_envelope_parse((uint8_t *)x.buff, (size_t)x.index, &e));
	REQUIRE(cn_envelope_unwrap_as_owner((uint8_t *)x.buff, &e));
	CHECK(e.op[0] == '\0');
	ei_x_free(&x);
}

/* {call, From, Ref, {Op, Ref}}: a reference inside the request. */
static void ref_request(ei_x_buff *x, const char *op, bool nested)
{
	erlang_pid from = {.num = 7, .creation = 99};
	erlang_ref ref = {.len = 3, .n = {1, 2, 3}, .creation = 99};
	strcpy(from.node, "client@vm");
	strcpy(ref.node, "client@vm");
	ei_x_new_with_version(x);
	ei_x_encode_tuple_header(x, 4);
	ei_x_encode_atom(x, "call");
	ei_x_encode_pid(x, &from);
	ei_x_encode_ref(x, &ref);
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, op);
	if (nested)
		ei_x_encode_tuple_header(x, 1);
	ei_x_encode_ref(x, &ref);
}

TEST(cnode_envelope_lets_a_ref_into_cancel_only)
{
	ei_x_buff m;
	cn_envelope e;
	ref_request(&m, "cancel", false);
	REQUIRE(cn_envelope_parse((uint8_t *)m.buff, (size_t)m.index, &e));
	CHECK_EQ(e.check, TC_OK);
	CHECK(strcmp(e.op, "cancel") == 0 && e.arity == 2);
	CHECK_EQ((uint8_t)m.buff[e.args_at], 90);
	/* every cut of it is refused, never read past */
	for (int cut = 0; cut < m.index; cut++) {
		if (cn_envelope_parse((uint8_t *)m.buff, (size_t)cut, &e))
			CHECK(e.check != TC_OK);
	}
	ei_x_free(&m);
	/* a ref anywhere else: refused */
	ref_request(&m, "stats", false);
	REQUIRE(cn_envelope_parse((uint8_t *)m.buff, (size_t)m.index, &e));
	CHECK_EQ(e.check, TC_REF);
	ei_x_free(&m);
	ref_request(&m, "cancel", true);
	REQUIRE(cn_envelope_parse((uint8_t *)m.buff, (size_t)m.index, &e));
	CHECK(e.check != TC_OK);
	ei_x_free(&m);
}
