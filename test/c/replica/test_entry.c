/* test_entry.c: the replica entry format (c_src/replica/entry.h): padded
 * to 8 bytes, versioned, every malformed entry refused. */
#include "harness.h"

#include "entry.h"

static esdb_cmd cmd_of(const char *s)
{
	return (esdb_cmd){.buf = (uint8_t *)s, .len = strlen(s)};
}

TEST(entry_round_trip_padded_to_8)
{
	const char *texts[] = {"a", "12345678", "123456789", "xyz", ""};
	for (size_t n = 1; n <= 4; n++) {
		esdb_cmd cmds[4];
		for (size_t i = 0; i < n; i++)
			cmds[i] = cmd_of(texts[i]);
		size_t size = esdb_entry_size(cmds, n);
		CHECK_EQ(size % 8, 0);
		uint8_t *buf = malloc(size);
		esdb_entry_encode(buf, 0x1122334455667788ull, 42, cmds, n);
		esdb_entry_header h;
		esdb_cmd out[4];
		REQUIRE_OK(esdb_entry_decode(buf, size, &h, out));
		CHECK_EQ(h.version, ESDB_ENTRY_VERSION);
		CHECK_EQ(h.count, n);
		CHECK_EQ(h.proposer, 0x1122334455667788ull);
		CHECK_EQ(h.seq, 42);
		for (size_t i = 0; i < n; i++) {
			CHECK_EQ(out[i].len, cmds[i].len);
			CHECK(memcmp(out[i].buf, cmds[i].buf, cmds[i].len) ==
			      0);
		}
		free(buf);
	}
}

TEST(entry_of_another_version_is_named)
{
	esdb_cmd c = cmd_of("command");
	size_t size = esdb_entry_size(&c, 1);
	uint8_t *buf = malloc(size);
	esdb_entry_encode(buf, 1, 1, &c, 1);
	buf[0] = ESDB_ENTRY_VERSION + 1;
	esdb_entry_header h;
	esdb_cmd out[1];
	CHECK_RC(esdb_entry_header_read(buf, size, &h), ESDB_EFORMAT);
	CHECK_EQ(h.version, ESDB_ENTRY_VERSION + 1);
	CHECK_RC(esdb_entry_decode(buf, size, &h, out), ESDB_EFORMAT);
	free(buf);
}

TEST(entry_malformed_is_refused)
{
	esdb_cmd cmds[2] = {cmd_of("first command"), cmd_of("second")};
	size_t size = esdb_entry_size(cmds, 2);
	uint8_t *buf = malloc(size);
	esdb_entry_encode(buf, 1, 1, cmds, 2);
	esdb_entry_header h;
	esdb_cmd out[2];
	/* every shorter length: not a multiple of 8, or lengths that do
	 * not add up */
	for (size_t len = 0; len < size; len++)
		CHECK(esdb_entry_decode(buf, len, &h, out) != 0);
	/* a length past the end */
	uint8_t *bad = malloc(size);
	memcpy(bad, buf, size);
	bad[ESDB_ENTRY_HEADER] = 0xff;
	CHECK_RC(esdb_entry_decode(bad, size, &h, out), ESDB_ECORRUPT);
	/* a count larger than what the entry holds */
	memcpy(bad, buf, size);
	bad[4] = 3;
	CHECK_RC(esdb_entry_decode(bad, size, &h, out), ESDB_ECORRUPT);
	/* an unknown kind, a zero count */
	memcpy(bad, buf, size);
	bad[2] = 9;
	CHECK_RC(esdb_entry_header_read(bad, size, &h), ESDB_ECORRUPT);
	memcpy(bad, buf, size);
	memset(bad + 4, 0, 4);
	CHECK_RC(esdb_entry_header_read(bad, size, &h), ESDB_ECORRUPT);
	free(bad);
	free(buf);
}

TEST(entry_store_indexes_increase_across_entries)
{
	CHECK(esdb_entry_store_index(5, 65535) < esdb_entry_store_index(6, 0));
	CHECK_EQ(esdb_entry_store_index(6, 3) >> 16, 6);
}
