/* session_ops.c: the session_* requests (session_ops.h). */
#include "session_ops.h"

#include <string.h>

const cn_session_op cn_session_ops[] = {
    {"session_open", CN_SESSION_OPEN, ESDB_ARG_UINT},
    {"session_join", CN_SESSION_JOIN, ESDB_ARG_SOURCE},
    {"session_leave", CN_SESSION_LEAVE, ESDB_ARG_MEMBER},
    {"session_credit", CN_SESSION_CREDIT, ESDB_ARG_GRANT},
    {"session_close", CN_SESSION_CLOSE, ESDB_ARG_N},
    {"session_claim", CN_SESSION_CLAIM, ESDB_ARG_NAME},
    {"session_release", CN_SESSION_RELEASE, ESDB_ARG_NAME},
    {"session_open_packed", CN_SESSION_OPEN_PACKED, ESDB_ARG_UINT},
};

const size_t cn_session_op_count =
    sizeof(cn_session_ops) / sizeof(cn_session_ops[0]);

const cn_session_op *cn_session_op_find(const char *op)
{
	for (size_t i = 0; i < cn_session_op_count; i++)
		if (strcmp(cn_session_ops[i].name, op) == 0)
			return &cn_session_ops[i];
	return NULL;
}
