/* members.h: the subscription member table, the same in every binding.
 *
 * A member is one subscription of one subscriber to the core's emitter.
 * This table gives members their ids and decides, for each delivery,
 * whether it may be sent (credit, and no gap since what the member was
 * last sent) or ends the member with the first position it missed. The
 * binding keeps what it needs to reach the subscriber (the NIF: a pid, a
 * monitor and the record format) in a slot struct that begins with an
 * esdb_member, sends the messages and does the locking: every call here
 * needs the binding's lock held. No Erlang header. */
#ifndef ESDB_PROTO_MEMBERS_H
#define ESDB_PROTO_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a member's events messages look (docs/PROTOCOL.md, subscribe/5). */
typedef enum esdb_member_shape {
	ESDB_MEMBER_PLAIN,  /* {events, Records} */
	ESDB_MEMBER_TAGGED, /* {events, MemberId, Records}: a relay's */
	/* {events, Records, Since}: a persistent subscription's; it learns
	 * of a gap from Since and is never ended for one */
	ESDB_MEMBER_RANGED,
} esdb_member_shape;

/* Credit meaning "no limit". */
#define ESDB_MEMBER_UNBOUNDED UINT64_MAX

typedef struct esdb_member {
	/* slot | generation << 32; 0 when the slot is free. One generation
	 * counter for the whole process: a store reopened starts its slots
	 * again, and an id from before must not name a member of the new
	 * store. */
	uint64_t id;
	esdb_member_shape shape;
	uint64_t credit; /* events it may still be sent, or UNBOUNDED */
	/* deliveries vouch for nothing below this: one of this member's
	 * fan-outs could not be built */
	uint64_t floor;
	/* Gap detection: everything before max(joined, sent_to + 1) was
	 * sent. joined is 0 until the join answers; a delivery before that
	 * leaves its `since` in early_since, checked then. */
	uint64_t joined, sent_to, early_since;
} esdb_member;

/* Slots of slot_size bytes each, every one beginning with an
 * esdb_member. Zero-initialize, then set slot_size. */
typedef struct esdb_members {
	size_t slot_size;
	unsigned char *slots;
	size_t n, cap;
} esdb_members;

/* A new member in a free slot (the table grows when full), its binding
 * part zeroed; NULL when out of memory. credit: ESDB_MEMBER_UNBOUNDED or
 * the events it may be sent before a grant. */
esdb_member *esdb_members_add(esdb_members *t, esdb_member_shape shape,
                              uint64_t credit);
/* The member with this id, or NULL (ended, or never was). */
esdb_member *esdb_members_find(esdb_members *t, uint64_t id);
/* Slot i (0 <= i < t->n), free or not: for scans (id 0 when free). */
esdb_member *esdb_members_slot(esdb_members *t, size_t i);
/* Members in use. */
size_t esdb_members_count(const esdb_members *t);
/* Free the table's memory (not the binding's per-member resources). */
void esdb_members_free(esdb_members *t);

/* The member is gone: its slot is free, its id names nothing. */
void esdb_member_end(esdb_member *mb);
/* n more events may be sent (saturating below UNBOUNDED). */
void esdb_member_grant(esdb_member *mb, uint64_t n);
/* The join answered: the member gets what follows position `last`.
 * Returns 0, or the first position it missed (a delivery before the
 * join did not follow on from `last`): then end it and tell it. */
uint64_t esdb_member_joined(esdb_member *mb, uint64_t last);
/* A delivery of n >= 1 events, positions first..last, every commit from
 * *since on having reached the member (esdb_delivery_fn). Returns 0 when
 * it may be sent (credit taken, *since raised to what this member can
 * vouch for) or the first position the member missed: then end it and
 * send {subscription_overflow, ..., Position}. */
uint64_t esdb_member_deliver(esdb_member *mb, uint64_t *since, size_t n,
                             uint64_t first, uint64_t last);
/* A delivery that could not be built or sent (first..last). Returns 0
 * for a ranged member (its next Since says so), else `first`: end it
 * and tell it. */
uint64_t esdb_member_undelivered(esdb_member *mb, uint64_t first,
                                 uint64_t last);

#endif
