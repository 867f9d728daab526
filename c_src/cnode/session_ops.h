/* session_ops.h: the C node's session_* requests and the kind of their
 * one argument (docs/PROTOCOL.md, "The C node's subscription sessions"),
 * shared by sessions.c and the fuzz target. */
#ifndef ESDB_CNODE_SESSION_OPS_H
#define ESDB_CNODE_SESSION_OPS_H

#include "proto.h"

#include <stddef.h>

typedef enum cn_session_op_id {
	CN_SESSION_OPEN,
	CN_SESSION_JOIN,
	CN_SESSION_LEAVE,
	CN_SESSION_CREDIT,
	CN_SESSION_CLOSE,
	CN_SESSION_CLAIM,
	CN_SESSION_RELEASE,
	CN_SESSION_OPEN_PACKED,
} cn_session_op_id;

typedef struct cn_session_op {
	const char *name;
	cn_session_op_id id;
	esdb_proto_arg kind; /* ESDB_ARG_N: none */
} cn_session_op;

/* session_open's and session_open_packed's Window: 1..CN_SESSION_MAX_WINDOW
 * events. */
#define CN_SESSION_MAX_WINDOW (1u << 20)

extern const cn_session_op cn_session_ops[];
extern const size_t cn_session_op_count;

/* The session request named op, or NULL. */
const cn_session_op *cn_session_op_find(const char *op);

#endif
