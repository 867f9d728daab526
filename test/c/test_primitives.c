/* test_primitives.c: CRC32C, UUID text and error names, without a disk. */
#include "harness.h"

#include "crc32c.h"

TEST(crc32c_known_vectors)
{
	/* RFC 3720 B.4 and the usual check value. */
	CHECK_EQ(esdb_crc32c(0, "123456789", 9), 0xE3069283u);
	uint8_t zeros[32] = {0}, ones[32];
	memset(ones, 0xff, sizeof(ones));
	CHECK_EQ(esdb_crc32c(0, zeros, 32), 0x8A9136AAu);
	CHECK_EQ(esdb_crc32c(0, ones, 32), 0x62A8AB43u);
	/* Incremental equals one shot, across odd split points. */
	const char *msg = "the quick brown fox jumps over the lazy dog";
	size_t len = strlen(msg);
	for (size_t cut = 0; cut <= len; cut++)
		CHECK_EQ(
		    esdb_crc32c(esdb_crc32c(0, msg, cut), msg + cut, len - cut),
		    esdb_crc32c(0, msg, len));
}

TEST(uuid_text_is_8_4_4_4_12_lowercase_hex)
{
	const uint8_t id[16] = {0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3,
	                        0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0xff};
	char out[37];
	memset(out, '#', sizeof(out));
	esdb_uuid_format(id, out);
	CHECK(memcmp(out, "123e4567-e89b-12d3-a456-4266141740ff", 36) == 0);
	CHECK(out[36] == '#'); /* no terminator written */
}

TEST(error_names_cover_every_code)
{
	for (int rc = ESDB_ERANGE_FIRST; rc <= ESDB_ERANGE_LAST; rc++) {
		CHECK(strcmp(esdb_error_name(rc), "storage_error") != 0);
		CHECK(esdb_error_describe(rc)[0] != 0);
	}
	CHECK(strcmp(esdb_error_name(ESDB_EWRONG_VERSION),
	             "wrong_expected_version") == 0);
	CHECK(strcmp(esdb_error_name(28 /* ENOSPC */), "disk_full") == 0);
	/* a binding's subscriber or owner that is gone, not a bad argument */
	CHECK(strcmp(esdb_error_name(ESDB_ENOPROC), "noproc") == 0);
}
