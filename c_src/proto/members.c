/* members.c: the subscription member table (members.h). */
#include "members.h"

#include <stdlib.h>
#include <string.h>

static uint32_t generations;

esdb_member *esdb_members_slot(esdb_members *t, size_t i)
{
	return (esdb_member *)(t->slots + i * t->slot_size);
}

esdb_member *esdb_members_add(esdb_members *t, esdb_member_shape shape,
                              uint64_t credit)
{
	size_t i = 0;
	while (i < t->n && esdb_members_slot(t, i)->id != 0)
		i++;
	if (i == t->n) {
		if (t->n == t->cap) {
			size_t cap = t->cap ? t->cap * 2 : 16;
			unsigned char *s =
			    realloc(t->slots, cap * t->slot_size);
			if (!s)
				return NULL;
			t->slots = s;
			t->cap = cap;
		}
		t->n++;
	}
	esdb_member *mb = esdb_members_slot(t, i);
	memset(mb, 0, t->slot_size);
	/* odd (never 0), and by 2: n | 1 and (n + 1) | 1 are equal for an
	 * even n */
	uint32_t generation =
	    __atomic_add_fetch(&generations, 2, __ATOMIC_RELAXED) | 1u;
	mb->id = (uint64_t)i | ((uint64_t)generation << 32);
	mb->shape = shape;
	mb->credit = credit;
	return mb;
}

esdb_member *esdb_members_find(esdb_members *t, uint64_t id)
{
	size_t slot = (size_t)(id & 0xffffffffu);
	if (id == 0 || slot >= t->n || esdb_members_slot(t, slot)->id != id)
		return NULL;
	return esdb_members_slot(t, slot);
}

size_t esdb_members_count(const esdb_members *t)
{
	size_t count = 0;
	for (size_t i = 0; i < t->n; i++)
		if (((const esdb_member *)(t->slots + i * t->slot_size))->id)
			count++;
	return count;
}

void esdb_members_free(esdb_members *t)
{
	free(t->slots);
	t->slots = NULL;
	t->n = t->cap = 0;
}

void esdb_member_end(esdb_member *mb)
{
	mb->id = 0;
}

void esdb_member_grant(esdb_member *mb, uint64_t n)
{
	if (mb->credit == ESDB_MEMBER_UNBOUNDED)
		return;
	mb->credit = n >= ESDB_MEMBER_UNBOUNDED - 1 - mb->credit
	                 ? ESDB_MEMBER_UNBOUNDED - 1
	                 : mb->credit + n;
}

/* Where a member's deliveries must go on from: everything before it was
 * sent (0: not known yet). */
static uint64_t next_due(const esdb_member *mb)
{
	uint64_t next = mb->sent_to ? mb->sent_to + 1 : 0;
	return mb->joined > next ? mb->joined : next;
}

uint64_t esdb_member_joined(esdb_member *mb, uint64_t last)
{
	mb->joined = last + 1;
	if (mb->shape != ESDB_MEMBER_RANGED && mb->early_since > mb->joined)
		return mb->joined;
	return 0;
}

uint64_t esdb_member_deliver(esdb_member *mb, uint64_t *since, size_t n,
                             uint64_t first, uint64_t last)
{
	if (mb->floor > *since)
		*since = mb->floor;
	uint64_t next = next_due(mb);
	/* The first position it may have missed, or 0. */
	uint64_t hole =
	    mb->shape != ESDB_MEMBER_RANGED && next && *since > next ? next : 0;
	if (!next && !mb->early_since)
		mb->early_since = *since;
	if (!hole && mb->credit != ESDB_MEMBER_UNBOUNDED) {
		if (mb->credit < n)
			hole = first;
		else
			mb->credit -= n;
	}
	if (!hole)
		mb->sent_to = last;
	return hole;
}

uint64_t esdb_member_undelivered(esdb_member *mb, uint64_t first, uint64_t last)
{
	if (mb->shape == ESDB_MEMBER_RANGED) {
		mb->floor = last + 1;
		return 0;
	}
	return first;
}
