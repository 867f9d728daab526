/* test_members.c: the subscription member table of c_src/proto
 * (members.h): ids, credit and the gaps that end a member. */
#include "harness.h"

#include "members.h"

/* A binding's slot: the table's member first, its own data after. */
typedef struct slot {
	esdb_member core;
	int pid;
} slot;

TEST(members_ids_name_one_member_even_after_slot_reuse)
{
	esdb_members t = {.slot_size = sizeof(slot)};
	slot *a = (slot *)esdb_members_add(&t, ESDB_MEMBER_PLAIN, 10);
	REQUIRE(a != NULL);
	a->pid = 7;
	uint64_t ida = a->core.id;
	CHECK(ida != 0);
	CHECK(esdb_members_find(&t, ida) == &a->core);
	CHECK(esdb_members_find(&t, 0) == NULL);
	CHECK_EQ(esdb_members_count(&t), 1);
	esdb_member_end(&a->core);
	CHECK(esdb_members_find(&t, ida) == NULL);
	CHECK_EQ(esdb_members_count(&t), 0);
	/* the slot comes back with a new id and its binding part zeroed */
	slot *b = (slot *)esdb_members_add(&t, ESDB_MEMBER_RANGED,
	                                   ESDB_MEMBER_UNBOUNDED);
	REQUIRE(b != NULL);
	CHECK((ida & 0xffffffffu) == (b->core.id & 0xffffffffu));
	CHECK(b->core.id != ida);
	CHECK_EQ(b->pid, 0);
	CHECK(esdb_members_find(&t, ida) == NULL);
	/* the table grows past its first allocation; every id stays found */
	uint64_t ids[100];
	for (int i = 0; i < 100; i++) {
		esdb_member *mb = esdb_members_add(&t, ESDB_MEMBER_PLAIN,
		                                   ESDB_MEMBER_UNBOUNDED);
		REQUIRE(mb != NULL);
		ids[i] = mb->id;
	}
	for (int i = 0; i < 100; i++)
		CHECK(esdb_members_find(&t, ids[i]) != NULL &&
		      esdb_members_find(&t, ids[i])->id == ids[i]);
	CHECK_EQ(esdb_members_count(&t), 101);
	esdb_members_free(&t);
}

TEST(members_credit_is_taken_granted_and_saturates)
{
	esdb_members t = {.slot_size = sizeof(slot)};
	esdb_member *mb = esdb_members_add(&t, ESDB_MEMBER_PLAIN, 3);
	REQUIRE(mb != NULL);
	CHECK_EQ(esdb_member_joined(mb, 0), 0);
	uint64_t since = 1;
	CHECK_EQ(esdb_member_deliver(mb, &since, 2, 1, 2), 0);
	CHECK_EQ(mb->credit, 1);
	since = 3;
	/* two more do not fit one credit: the first of them is missed */
	CHECK_EQ(esdb_member_deliver(mb, &since, 2, 3, 4), 3);
	esdb_member_grant(mb, ESDB_MEMBER_UNBOUNDED);
	CHECK_EQ(mb->credit, ESDB_MEMBER_UNBOUNDED - 1);
	esdb_member *inf =
	    esdb_members_add(&t, ESDB_MEMBER_PLAIN, ESDB_MEMBER_UNBOUNDED);
	esdb_member_grant(inf, 5);
	CHECK_EQ(inf->credit, ESDB_MEMBER_UNBOUNDED);
	esdb_members_free(&t);
}

TEST(members_a_gap_ends_plain_members_and_moves_since_for_ranged_ones)
{
	esdb_members t = {.slot_size = sizeof(slot)};
	esdb_member *plain =
	    esdb_members_add(&t, ESDB_MEMBER_PLAIN, ESDB_MEMBER_UNBOUNDED);
	esdb_member *ranged =
	    esdb_members_add(&t, ESDB_MEMBER_RANGED, ESDB_MEMBER_UNBOUNDED);
	CHECK_EQ(esdb_member_joined(plain, 10), 0);
	CHECK_EQ(esdb_member_joined(ranged, 10), 0);
	uint64_t since = 11;
	CHECK_EQ(esdb_member_deliver(plain, &since, 1, 11, 11), 0);
	/* commit 12 never reached it: 13 vouches only from 13 */
	since = 13;
	CHECK_EQ(esdb_member_deliver(plain, &since, 1, 13, 13), 12);
	since = 13;
	CHECK_EQ(esdb_member_deliver(ranged, &since, 1, 13, 13), 0);
	CHECK_EQ(since, 13);
	/* a delivery that could not be built: the ranged member's next
	 * Since starts past it */
	CHECK_EQ(esdb_member_undelivered(ranged, 14, 15), 0);
	since = 14;
	CHECK_EQ(esdb_member_deliver(ranged, &since, 1, 16, 16), 0);
	CHECK_EQ(since, 16);
	esdb_member *other =
	    esdb_members_add(&t, ESDB_MEMBER_TAGGED, ESDB_MEMBER_UNBOUNDED);
	CHECK_EQ(esdb_member_undelivered(other, 14, 15), 14);
	esdb_members_free(&t);
}

TEST(members_a_delivery_before_the_join_must_follow_on_from_it)
{
	esdb_members t = {.slot_size = sizeof(slot)};
	esdb_member *ok =
	    esdb_members_add(&t, ESDB_MEMBER_PLAIN, ESDB_MEMBER_UNBOUNDED);
	esdb_member *late =
	    esdb_members_add(&t, ESDB_MEMBER_PLAIN, ESDB_MEMBER_UNBOUNDED);
	uint64_t since = 6;
	CHECK_EQ(esdb_member_deliver(ok, &since, 1, 6, 6), 0);
	CHECK_EQ(esdb_member_joined(ok, 5), 0);
	since = 8;
	CHECK_EQ(esdb_member_deliver(late, &since, 1, 8, 8), 0);
	/* joined after 5, but what came vouched only from 8: 6 missed */
	CHECK_EQ(esdb_member_joined(late, 5), 6);
	esdb_members_free(&t);
}
