/* owed.c: the replies the writer owes to callers. A caller that stops
 * waiting for a command the writer has already taken gives its reply
 * up here, so that no late {Ref, Reply} reaches its mailbox. */
#include "nif.h"

static ErlNifMutex *lock;
static nif_owed *head;

int nif_owed_init(void)
{
	if (!lock)
		lock = enif_mutex_create("ex_esdb_owed");
	return lock ? 0 : 1;
}

void nif_owed_add(nif_owed *o)
{
	o->abandoned = false;
	o->prev = NULL;
	enif_mutex_lock(lock);
	o->next = head;
	if (head)
		head->prev = o;
	head = o;
	enif_mutex_unlock(lock);
}

static void unlink_owed(nif_owed *o)
{
	if (o->prev)
		o->prev->next = o->next;
	else
		head = o->next;
	if (o->next)
		o->next->prev = o->prev;
}

bool nif_owed_settle(nif_owed *o)
{
	enif_mutex_lock(lock);
	bool send = !o->abandoned;
	if (send)
		unlink_owed(o);
	enif_mutex_unlock(lock);
	return send;
}

bool nif_owed_abandon(bool (*match)(nif_owed *o, void *arg), void *arg)
{
	nif_owed *o;
	enif_mutex_lock(lock);
	for (o = head; o && !match(o, arg); o = o->next)
		;
	if (o) {
		unlink_owed(o);
		o->abandoned = true;
	}
	enif_mutex_unlock(lock);
	return o != NULL;
}
