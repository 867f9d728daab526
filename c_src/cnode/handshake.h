/* handshake.h: connections accepted by us and their distribution
 * handshakes run on a thread each, so a client that connects and stays
 * silent holds only its own thread (ei_accept_tmo alone would accept
 * and handshake one connection at a time). */
#ifndef ESDB_CNODE_HANDSHAKE_H
#define ESDB_CNODE_HANDSHAKE_H

#include "cnode.h"

/* The socket callbacks to give ei_connect_xinit_ussi: ei's own TCP ones,
 * except that accept takes the connection this thread was handed. */
ei_socket_callbacks *cn_handshake_callbacks(void);

/* Accept connections on lfd (from ei_xlisten) forever: each gets a
 * thread running its handshake (at most `max_pending` at once, more are
 * closed) and, when it succeeds, cn_conn_start. */
void cn_handshake_accept_loop(cn_server *srv, int lfd, unsigned max_pending);

#endif
