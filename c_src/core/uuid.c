/* uuid.c: a 16-byte id as UUID text (esdb_uuid_format, esdb.h). */
#include "esdb.h"

void esdb_uuid_format(const uint8_t id[16], char out[36])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hex[id[i] >> 4];
		*out++ = hex[id[i] & 15];
	}
}
