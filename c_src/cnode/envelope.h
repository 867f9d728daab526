/* envelope.h: a distribution frame and the request it carries, taken
 * apart without a connection (so they can be fuzzed): the control
 * message, then {call, From, Ref, Request}. Terms are checked by
 * term_check.c before ei decodes any of them. */
#ifndef ESDB_CNODE_ENVELOPE_H
#define ESDB_CNODE_ENVELOPE_H

#include <ei.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The frame (after its 4-byte length): 'p', a control message, and for
 * the sends a message. Returns the control operation (DOP_*: SEND 2,
 * REG_SEND 6, ...) and, for the four kinds of send, *msg_at: where the
 * message starts, its control message checked. -1: not a distribution
 * frame, or a send whose control message fails its checks. */
int cn_frame_parse(const uint8_t *buf, size_t len, size_t *msg_at);

/* An EXIT frame (a linked process ended: {3, From, To, Reason} or its
 * trace-token form): its pids, the control message checked. False for
 * any other frame or a malformed one. */
bool cn_frame_exit(const uint8_t *buf, size_t len, erlang_pid *from,
                   erlang_pid *to);

/* Whether a control operation carries a message (SEND, REG_SEND and
 * their trace-token forms). */
bool cn_frame_is_send(int op);

typedef struct cn_envelope {
	erlang_pid from;
	size_t ref_at, ref_len; /* Ref, in external format, within m */
	/* TC_OK, or why Request failed its checks (then nothing below). */
	int check;
	/* Request as {Op, Args...}: Op's name ("" when Request is not a
	 * tuple starting with an atom), the tuple's arity, and the index
	 * of its first argument in m. */
	char op[MAXATOMLEN_UTF8];
	int arity;
	int args_at;
} cn_envelope;

/* Take the message m[0..len) (a versioned term) apart as {call, From,
 * Ref, Request}. False: not a request (nobody to answer). True: From and
 * Ref are set; e->check says whether Request may be decoded. */
bool cn_envelope_parse(const uint8_t *m, size_t len, cn_envelope *e);

/* A checked Request {at, Store, Inner}: *name, *len the Store binary's
 * bytes within m, and e's op, arity and args_at now Inner's (as for a
 * Request: op "" when Inner is not a tuple starting with an atom).
 * False when Request is not {at, Binary, _} (e unchanged). */
bool cn_envelope_unwrap_at(const uint8_t *m, cn_envelope *e, const char **name,
                           size_t *len);

/* A checked Request {in_term, Term, Until, Inner}: Term a uint, Until a
 * uint (*until) or the atom infinity (*until UINT64_MAX), and e's op,
 * arity and args_at now Inner's (as unwrap_at's). False when Request is
 * not of that shape (e unchanged). */
bool cn_envelope_unwrap_in_term(const uint8_t *m, cn_envelope *e,
                                uint64_t *term, uint64_t *until);

/* A checked Request {as_owner, Inner}: e's op, arity and args_at now
 * Inner's (as unwrap_at's). False when Request is not of that shape (e
 * unchanged). */
bool cn_envelope_unwrap_as_owner(const uint8_t *m, cn_envelope *e);

#endif
