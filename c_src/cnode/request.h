/* request.h: requests {call, From, Ref, Request} taken off a connection,
 * checked, and answered From ! {Ref, Reply}. */
#ifndef ESDB_CNODE_REQUEST_H
#define ESDB_CNODE_REQUEST_H

#include "cnode.h"
#include "conn.h"

#include <stddef.h>
#include <stdint.h>

/* Handle a SEND or REG_SEND frame (buf: 'p', control, message; len
 * bytes, already size-capped). Everything needed later is copied, buf
 * stays the caller's. Returns false when the frame is malformed at the
 * distribution level (a BEAM never sends one): the connection closes.
 * A message that is not a request is dropped; a request that is
 * malformed is answered {error, Reason}. */
bool cn_request_frame(cn_server *srv, cn_conn *c, const uint8_t *buf,
                      size_t len);

#endif
