/* sessions.h: subscriptions on the C node, through one session process
 * per client node (docs/PROTOCOL.md, "The C node's subscription
 * sessions"): the session_* requests, the pushes of committed events,
 * and the ends of sessions (an EXIT through the session's link, the
 * connection closing). */
#ifndef ESDB_CNODE_SESSIONS_H
#define ESDB_CNODE_SESSIONS_H

#include "cnode.h"
#include "conn.h"
#include "envelope.h"
#include "ops.h"

/* Set up the sessions of srv's store and its emitter's delivery. 0 or
 * an error code. */
int cn_sessions_start(cn_server *srv);

/* Before srv's store closes: sessions that end from now on (their
 * connections closing as the node stops) leave the emitter no more,
 * it is freed with the store. */
void cn_sessions_close(cn_server *srv);

/* Whether a request's operation is a session one (session_*). */
bool cn_sessions_is_request(const char *op);

/* Serve a session_* request (after hello): answers k once. */
void cn_sessions_request(caller *k, const cn_envelope *e, const char *m);

/* An EXIT frame on c from `from` to `to` (a pid of this node): when `to`
 * names a session of c held by `from` (on any of srv's stores), the
 * session ends. */
void cn_sessions_exit(cn_server *srv, cn_conn *c, const erlang_pid *from,
                      const erlang_pid *to);

/* c closed: every session it held, on any of srv's stores, ends. */
void cn_sessions_conn_closed(cn_server *srv, cn_conn *c);

/* Raft's loop thread: srv's replica leads in `term` now (0: it does not
 * lead). Every claim taken in another term is dropped and its session
 * pushed {esdb_claim_lost, Name, Term}. */
void cn_sessions_leadership(cn_server *srv, uint64_t term);

/* Whether the session of k's From owns the claim on name here: NULL,
 * *term the claim's raft term (0 on a store that is no replica), or why
 * not: "no_session", or "claim_lost" (no claim, another session's, or
 * one taken in an earlier raft term: that one is dropped now, its
 * session told). {as_owner, Mutation}'s check (request.c). */
const char *cn_sessions_owner(caller *k, const char *name, size_t len,
                              uint64_t *term);

/* Members held by every session (stats' `subscribers`). */
uint64_t cn_sessions_members(cn_server *srv);

#endif
