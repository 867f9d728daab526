/* cancel.c: {cancel, Ref}, the NIF's cancel/2 on the C node: a caller
 * that stops waiting for the command it sent with Ref (same pid, same
 * connection) withdraws it from the writer queue (ok: never applied, no
 * reply comes), or gives up the reply of a command the writer has taken
 * (abandoned: it may be applied, its reply is not sent), or learns that
 * the reply was sent or is being sent (not_queued: it comes). The
 * replies the writer owes are listed here for that. */
#include "ops.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static caller *head;
/* Set while esdb_store_cancel runs: the command it withdraws is
 * answered through its done callback on this thread, and that answer
 * goes nowhere. */
static __thread bool withdrawing;

void cn_owed_add(caller *k)
{
	k->abandoned = false;
	k->owed_prev = NULL;
	pthread_mutex_lock(&lock);
	k->owed_next = head;
	if (head)
		head->owed_prev = k;
	head = k;
	pthread_mutex_unlock(&lock);
}

static void unlink_owed(caller *k)
{
	if (k->owed_prev)
		k->owed_prev->owed_next = k->owed_next;
	else
		head = k->owed_next;
	if (k->owed_next)
		k->owed_next->owed_prev = k->owed_prev;
}

bool cn_owed_settle(caller *k)
{
	pthread_mutex_lock(&lock);
	bool send = !k->abandoned;
	if (send)
		unlink_owed(k);
	pthread_mutex_unlock(&lock);
	if (send && !withdrawing)
		return true;
	cn_conn_request_end(k->c);
	free(k);
	return false;
}

/* Who asks and for which Ref; the owed caller that sent it, if any. */
typedef struct target {
	const caller *by;
	const uint8_t *ref;
	size_t ref_len;
	const caller *sent;
} target;

static bool same_pid(const erlang_pid *a, const erlang_pid *b)
{
	return a->num == b->num && a->serial == b->serial &&
	       a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

static bool same_request(const caller *k, const target *t)
{
	return k->c == t->by->c && same_pid(&k->from, &t->by->from) &&
	       k->ref_len == t->ref_len &&
	       memcmp(k->ref, t->ref, t->ref_len) == 0;
}

/* The writer queue's match. Not every queued ctx is a caller (the
 * cluster's esdb_store_execute queues commit.c's waiter): only the one
 * found owed is looked into, as a caller, once its address matched. */
static bool queued_request(void *ctx, void *arg)
{
	const target *t = arg;
	return ctx == t->sent && same_request(ctx, t);
}

static const caller *find_owed(const target *t)
{
	pthread_mutex_lock(&lock);
	const caller *k = head;
	while (k && !same_request(k, t))
		k = k->owed_next;
	pthread_mutex_unlock(&lock);
	return k;
}

static bool abandon(const target *t)
{
	caller *k;
	pthread_mutex_lock(&lock);
	for (k = head; k && !same_request(k, t); k = k->owed_next)
		;
	if (k) {
		unlink_owed(k);
		k->abandoned = true;
	}
	pthread_mutex_unlock(&lock);
	return k != NULL;
}

void cn_op_cancel(caller *k, const char *m, int ref_at, int arity)
{
	int idx = ref_at, type, size;
	/* a reference, as the envelope's (the request's check let refs in) */
	if (arity != 2 || ei_get_type(m, &idx, &type, &size) != 0 ||
	    (type != ERL_NEWER_REFERENCE_EXT &&
	     type != ERL_NEW_REFERENCE_EXT) ||
	    ei_skip_term(m, &idx) != 0) {
		cn_reply_error(k, "invalid_request", "cancel");
		return;
	}
	target t = {k, (const uint8_t *)m + ref_at, (size_t)(idx - ref_at),
	            NULL};
	cn_server *srv = k->srv;
	int rc = ESDB_ENOTFOUND;
	pthread_rwlock_rdlock(&srv->store_lock);
	t.sent = find_owed(&t);
	if (!srv->closed && t.sent) {
		withdrawing = true;
		rc = esdb_store_cancel(srv->store, queued_request, &t);
		withdrawing = false;
	}
	pthread_rwlock_unlock(&srv->store_lock);
	ei_x_buff x;
	cn_reply_begin(k, &x);
	ei_x_encode_atom(&x, rc == 0       ? "ok"
	                     : abandon(&t) ? "abandoned"
	                                   : "not_queued");
	cn_reply_end(k, &x);
}
