/* commands.c: the mutations, encoded here and handed to the store's
 * commit path; the path's thread answers through the done callbacks
 * (never blocking: replies only queue on the connection). */
#include "ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The store's writer answers an append here, on its own thread. */
static void append_done(void *ctx, const esdb_result *r)
{
	caller *k = ctx;
	if (!cn_owed_settle(k))
		return;
	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (r->rc == ESDB_ELIMIT && r->limit != ESDB_LIMIT_NONE) {
		cn_encode_limit(&x, r->limit, r->limit_max);
	} else if (r->rc) {
		cn_encode_rc(k->srv, &x, r->rc);
	} else {
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_atom(&x, "ok");
		ei_x_encode_ulonglong(&x, r->version);
		ei_x_encode_ulonglong(&x, r->position);
	}
	cn_reply_end(k, &x);
}

/* {Ref, ok} or {Ref, {error, Reason}}: every other command. */
static void plain_done(void *ctx, const esdb_result *r)
{
	caller *k = ctx;
	if (!cn_owed_settle(k))
		return;
	ei_x_buff x;
	cn_reply_begin(k, &x);
	if (r->rc == ESDB_ELIMIT && r->limit != ESDB_LIMIT_NONE)
		cn_encode_limit(&x, r->limit, r->limit_max);
	else if (r->rc)
		cn_encode_rc(k->srv, &x, r->rc);
	else
		ei_x_encode_atom(&x, "ok");
	cn_reply_end(k, &x);
}

/* Queue a command its encoder made (rc: the encoder's result), or
 * answer the encoder's refusal. */
static void submit(caller *k, int rc, esdb_cmd *cmd, esdb_result_fn done)
{
	cn_server *srv = k->srv;
	if (rc) {
		ei_x_buff x;
		cn_reply_begin(k, &x);
		if (rc == ESDB_ELIMIT && cmd->limit != ESDB_LIMIT_NONE)
			cn_encode_limit(
			    &x, cmd->limit,
			    esdb_limits_lookup(&srv->limits, cmd->limit));
		else
			cn_encode_rc(srv, &x, rc);
		cn_reply_end(k, &x);
		return;
	}
	pthread_rwlock_rdlock(&srv->store_lock);
	if (srv->closed) {
		pthread_rwlock_unlock(&srv->store_lock);
		free(cmd->buf);
		cn_reply_rc(k, ESDB_ECLOSED);
		return;
	}
	/* A refusal (full queue, closed) comes through `done`. */
	cn_owed_add(k);
	esdb_store_submit(srv->store, cmd, done, k);
	pthread_rwlock_unlock(&srv->store_lock);
}

static bool invalid_id(caller *k, const arg *id)
{
	if (!esdb_stream_id_check(id->p, id->len))
		return false;
	ei_x_buff x;
	cn_reply_begin(k, &x);
	cn_encode_invalid_id(&x, id->p, id->len);
	cn_reply_end(k, &x);
	return true;
}

/* {append, StreamId, Expected, [NewEvent]} */
void cn_op_append(caller *k, const arg *v, const char *m)
{
	cn_server *srv = k->srv;
	esdb_new_event *evs;
	size_t n;
	const char *refusal = NULL;
	int rc = cn_arg_events(m, v[2].at, srv->limits.max_append_events, &evs,
	                       &n, &refusal);
	if (rc == ESDB_ELIMIT) {
		ei_x_buff x;
		cn_reply_begin(k, &x);
		cn_encode_limit(&x, ESDB_LIMIT_APPEND_EVENTS,
		                srv->limits.max_append_events);
		cn_reply_end(k, &x);
		return;
	}
	if (rc == ENOMEM) {
		cn_reply_rc(k, ENOMEM);
		return;
	}
	if (rc || refusal) {
		if (!rc)
			free(evs);
		if (refusal)
			cn_reply_error(k, "undecodable", refusal);
		else
			cn_reply_error(k, "invalid_request", "append");
		return;
	}
	if (invalid_id(k, &v[0])) {
		free(evs);
		return;
	}
	esdb_cmd cmd;
	rc = esdb_cmd_stream_append(&srv->limits, v[0].p, v[0].len, v[1].u, evs,
	                            n, &cmd);
	free(evs);
	if (rc == 0 && v[1].retry && (rc = esdb_cmd_mark_retry(&cmd)))
		free(cmd.buf);
	submit(k, rc, &cmd, append_done);
}

/* {delete_stream, StreamId, Expected} */
void cn_op_delete_stream(caller *k, const arg *v, const char *m)
{
	if (v[1].retry) { /* an append's mark only, as the NIF takes it */
		cn_reply_error(k, "invalid_request", "delete_stream");
		return;
	}
	if (invalid_id(k, &v[0]))
		return;
	esdb_cmd cmd;
	int rc = esdb_cmd_stream_delete(&k->srv->limits, v[0].p, v[0].len,
	                                v[1].u, &cmd);
	submit(k, rc, &cmd, plain_done);
}

/* A put or delete given its optional request (req->p NULL: none; rc:
 * the encoder's), as the NIF's with_request. */
static int with_request(int rc, esdb_cmd *cmd, const arg *req)
{
	if (rc || !req->p)
		return rc;
	if (!(rc = esdb_cmd_set_request(cmd, (const uint8_t *)req->p)) &&
	    req->retry)
		rc = esdb_cmd_mark_retry(cmd);
	if (rc) {
		free(cmd->buf);
		cmd->buf = NULL;
	}
	return rc;
}

/* {snapshot_put, SourceUuid, SourceVersion, SourceType, Data, Metadata
 * [, Request]} */
void cn_op_snapshot_put(caller *k, const arg *v, const char *m)
{
	esdb_snapshot sn = {
	    .source_uuid = v[0].p,
	    .source_uuid_len = v[0].len,
	    .source_version = v[1].u,
	    .source_type = v[2].p,
	    .source_type_len = v[2].len,
	    .data = v[3].p,
	    .data_len = v[3].len,
	    .data_encoding = v[3].enc,
	    .metadata = v[4].p,
	    .metadata_len = v[4].len,
	    .metadata_encoding = v[4].enc,
	};
	esdb_cmd cmd;
	int rc = with_request(esdb_cmd_snapshot_put(&k->srv->limits, &sn, &cmd),
	                      &cmd, &v[5]);
	submit(k, rc, &cmd, plain_done);
}

/* {snapshot_delete, SourceUuid[, Request]} */
void cn_op_snapshot_delete(caller *k, const arg *v, const char *m)
{
	esdb_cmd cmd;
	int rc =
	    esdb_cmd_snapshot_delete(&k->srv->limits, v[0].p, v[0].len, &cmd);
	submit(k, with_request(rc, &cmd, &v[1]), &cmd, plain_done);
}

/* Names starting "ex_esdb:" are the store's own (a cluster's member
 * records, which not_leader and the copy puller trust): refused to a
 * client as the Erlang and Elixir APIs refuse them, but for the
 * barrier's delete (a no-op no record has) and a member C node's put
 * of its own record (copy_pull.c's record_self: the definition is the
 * asking node's own name). Answered when refused. */
#define OWN_PREFIX    "ex_esdb:"
#define BARRIER       OWN_PREFIX "barrier"
#define MEMBER_RECORD OWN_PREFIX "cnode:"

static bool own_name(caller *k, const arg *name, const arg *def)
{
	if (name->len < sizeof(OWN_PREFIX) - 1 ||
	    memcmp(name->p, OWN_PREFIX, sizeof(OWN_PREFIX) - 1) != 0)
		return false;
	if (!def && name->len == sizeof(BARRIER) - 1 &&
	    memcmp(name->p, BARRIER, name->len) == 0)
		return false;
	const char *peer = cn_conn_peer(k->c);
	if (def && name->len > sizeof(MEMBER_RECORD) - 1 &&
	    memcmp(name->p, MEMBER_RECORD, sizeof(MEMBER_RECORD) - 1) == 0 &&
	    def->len == strlen(peer) && memcmp(def->p, peer, def->len) == 0)
		return false;
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "error");
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "invalid_subscription_name");
	ei_x_encode_binary(&x, name->p, (long)name->len);
	cn_reply_end(k, &x);
	return true;
}

/* {checkpoint_put, Name, Checkpoint, Definition[, Request]} */
void cn_op_checkpoint_put(caller *k, const arg *v, const char *m)
{
	if (own_name(k, &v[0], &v[2]))
		return;
	esdb_cmd cmd;
	int rc = esdb_cmd_checkpoint_put(&k->srv->limits, v[0].p, v[0].len,
	                                 v[1].u, v[2].p, v[2].len, &cmd);
	submit(k, with_request(rc, &cmd, &v[3]), &cmd, plain_done);
}

/* {checkpoint_delete, Name[, Request]} */
void cn_op_checkpoint_delete(caller *k, const arg *v, const char *m)
{
	if (own_name(k, &v[0], NULL))
		return;
	esdb_cmd cmd;
	int rc =
	    esdb_cmd_checkpoint_delete(&k->srv->limits, v[0].p, v[0].len, &cmd);
	submit(k, with_request(rc, &cmd, &v[1]), &cmd, plain_done);
}
