/* test_proto.c: the binding-neutral protocol tables (c_src/proto): the
 * date of a time stamp, the tables' shape, open options applied to a
 * store. Which functions the NIF has is checked against the table in
 * test/ex_esdb/protocol_table_test.exs. */
#include "harness.h"

#include "proto.h"

static void check_date(uint64_t us, int64_t y, unsigned mo, unsigned d,
                       unsigned h, unsigned mi, unsigned s, uint32_t usec)
{
	esdb_proto_date date;
	esdb_proto_date_from_us(us, &date);
	CHECK_EQ(date.year, y);
	CHECK_EQ(date.month, mo);
	CHECK_EQ(date.day, d);
	CHECK_EQ(date.hour, h);
	CHECK_EQ(date.minute, mi);
	CHECK_EQ(date.second, s);
	CHECK_EQ(date.microsecond, usec);
}

TEST(proto_date_from_us_matches_the_calendar)
{
	check_date(0, 1970, 1, 1, 0, 0, 0, 0);
	check_date(951782400000000ull, 2000, 2, 29, 0, 0, 0, 0);
	check_date(1709296496000001ull, 2024, 3, 1, 12, 34, 56, 1);
	check_date(4102444799999999ull, 2099, 12, 31, 23, 59, 59, 999999);
	check_date(253402300799000000ull, 9999, 12, 31, 23, 59, 59, 0);
	/* the day after each of 1,000 days in a row follows it */
	esdb_proto_date a, b;
	for (uint64_t day = 10950; day < 11950; day++) {
		esdb_proto_date_from_us(day * 86400000000ull, &a);
		esdb_proto_date_from_us((day + 1) * 86400000000ull, &b);
		bool next_day = b.year == a.year && b.month == a.month &&
		                b.day == a.day + 1;
		bool next_month =
		    b.year == a.year && b.month == a.month + 1 && b.day == 1;
		bool next_year = b.year == a.year + 1 && b.month == 1 &&
		                 a.month == 12 && b.day == 1 && a.day == 31;
		CHECK(next_day || next_month || next_year);
	}
}

TEST(proto_operations_are_unique_and_fully_described)
{
	REQUIRE(esdb_proto_op_count > 0);
	for (size_t i = 0; i < esdb_proto_op_count; i++) {
		const esdb_proto_op *op = &esdb_proto_ops[i];
		CHECK(op->arity <= ESDB_PROTO_MAX_ARITY);
		CHECK(esdb_proto_op_find(op->name, op->arity) == op);
		CHECK(strcmp(esdb_proto_sched_name(op->sched), "unknown") != 0);
		CHECK(strcmp(esdb_proto_reply_name(op->reply), "unknown") != 0);
		for (unsigned a = 0; a < op->arity; a++)
			CHECK(strcmp(esdb_proto_arg_name(op->args[a]),
			             "unknown") != 0);
		/* an asynchronous reply is tagged with a ref argument */
		if (op->reply == ESDB_REPLY_ASYNC)
			CHECK(op->arity >= 2 && op->args[1] == ESDB_ARG_REF);
	}
	CHECK(esdb_proto_op_find("append", 5) != NULL);
	CHECK(esdb_proto_op_find("append", 4) == NULL);
	CHECK(esdb_proto_op_find("no_such_op", 1) == NULL);
}

TEST(proto_options_are_named_and_bounded)
{
	for (int i = 0; i < ESDB_OPT_N; i++) {
		const esdb_proto_option *o = &esdb_proto_options[i];
		REQUIRE(o->name != NULL);
		CHECK(o->min <= o->max || o->kind == ESDB_OPTK_ATOM);
		if (o->kind == ESDB_OPTK_ATOM)
			CHECK(o->atoms && o->atoms[0]);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(o->name, esdb_proto_options[j].name) != 0);
	}
	const esdb_proto_option *mode = &esdb_proto_options[ESDB_OPT_FILE_MODE];
	CHECK(esdb_proto_option_in_bounds(mode, 0600));
	CHECK(!esdb_proto_option_in_bounds(mode, 01000));
	CHECK(!esdb_proto_option_in_bounds(
	    &esdb_proto_options[ESDB_OPT_MAX_FANOUT_BYTES], 0));
}

TEST(proto_open_options_configure_the_store)
{
	const char *dir = tmp_dir();
	esdb_store *s = new_store();
	esdb_proto_open o = {0};
	o.given[ESDB_OPT_DURABILITY] = true;
	o.value[ESDB_OPT_DURABILITY] = 3; /* nosync */
	o.given[ESDB_OPT_MAX_STREAM_ID] = true;
	o.value[ESDB_OPT_MAX_STREAM_ID] = 77;
	o.given[ESDB_OPT_OWNER] = true;
	o.text[ESDB_OPT_OWNER] = "proto-test";
	o.text_len[ESDB_OPT_OWNER] = 10;
	REQUIRE_OK(esdb_proto_open_configure(s, &o));
	REQUIRE_OK(esdb_store_open(s, dir));
	esdb_proto_open_started(s, &o);
	esdb_limits l;
	REQUIRE_OK(esdb_store_get_limits(s, &l));
	CHECK_EQ(l.max_stream_id, 77);
	esdb_store_close(s);

	/* refused: an owner with a NUL, a durability index out of range */
	s = new_store();
	esdb_proto_open bad = {0};
	bad.given[ESDB_OPT_OWNER] = true;
	bad.text[ESDB_OPT_OWNER] = "a\0b";
	bad.text_len[ESDB_OPT_OWNER] = 3;
	CHECK_RC(esdb_proto_open_configure(s, &bad), ESDB_EINVAL);
	bad = (esdb_proto_open){0};
	bad.given[ESDB_OPT_DURABILITY] = true;
	bad.value[ESDB_OPT_DURABILITY] = 4;
	CHECK_RC(esdb_proto_open_configure(s, &bad), ESDB_EINVAL);
	esdb_store_close(s);
}

TEST(proto_where_names_cover_every_kind)
{
	CHECK(strcmp(esdb_proto_where_name(ESDB_WHERE_EVENT), "event") == 0);
	CHECK(strcmp(esdb_proto_where_name(ESDB_WHERE_PAGE), "page") == 0);
	CHECK(strcmp(esdb_proto_where_name((esdb_where_kind)99), "unknown") ==
	      0);
}
