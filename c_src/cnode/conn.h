/* conn.h: one connected BEAM node: a reader thread taking frames off the
 * socket (size-capped before anything is allocated for them) and a
 * writer thread draining the connection's own reply queue, so a slow
 * client stalls nobody else. */
#ifndef ESDB_CNODE_CONN_H
#define ESDB_CNODE_CONN_H

#include "cnode.h"

#include <stddef.h>

typedef struct cn_conn cn_conn;

/* Serve the connection fd (handshake done by ei_accept) from peer node
 * `peer`. Starts its threads; closes fd on failure. Returns 0 or -1. */
int cn_conn_start(cn_server *srv, int fd, const char *peer);

/* The peer's node name (requests' pids must be on it). */
const char *cn_conn_peer(const cn_conn *c);

/* Whether the peer has said hello with our protocol version; set by
 * the reader thread only. */
bool cn_conn_hello_done(const cn_conn *c);
void cn_conn_set_hello(cn_conn *c);

/* A request was taken: it holds a reference on c and counts against
 * the connection's in-flight bound until cn_conn_reply answers it. */
void cn_conn_request_begin(cn_conn *c);

/* Answer a request begun with cn_conn_request_begin: queue msg (a whole
 * external term; the queue takes x's buffer, x is emptied) to `to`.
 * Never blocks: callable from the store's writer thread and the read
 * pool. On a closed connection the reply is dropped. Drops the
 * request's reference. */
void cn_conn_reply(cn_conn *c, const erlang_pid *to, ei_x_buff *x);

/* A part of the answer to a request begun with cn_conn_request_begin,
 * sent ahead of its reply (cn_conn_reply, which must follow): queued
 * in order, as cn_conn_reply's; keeps the request's reference. */
void cn_conn_reply_part(cn_conn *c, const erlang_pid *to, ei_x_buff *x);

/* End a request begun with cn_conn_request_begin without a reply (its
 * caller gave it up: cancel). Drops the request's reference. */
void cn_conn_request_end(cn_conn *c);

/* A reference on c for something that outlives a request (a
 * subscription session), dropped by cn_conn_release. */
void cn_conn_hold(cn_conn *c);
void cn_conn_release(cn_conn *c);

/* Queue msg (a whole external term; x is emptied either way) to `to`,
 * outside any request: a push. Never blocks. False when the connection
 * is dead or, when `bounded`, when its queue would pass max_queue_bytes
 * (a push that must wait is not queued: the pusher decides what that
 * means). */
bool cn_conn_push(cn_conn *c, const erlang_pid *to, ei_x_buff *x, bool bounded);

#endif
