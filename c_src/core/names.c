/* names.c: keys for names longer than LMDB's 511-byte key limit.
 *
 * A name of up to ESDB_NAME_INLINE_MAX bytes is its own key. A longer one
 * is keyed by its first ESDB_NAME_INLINE_MAX bytes, a 64-bit hash of the
 * whole name and a 16-bit counter (510 bytes, so never equal to an inline
 * key). Every record stores the full name, so a lookup compares names and
 * a hash collision only moves the counter. */
#include "internal.h"

#include "bytes.h"

#include <string.h>

#define LONG_PREFIX (ESDB_NAME_INLINE_MAX + 8)
#define LONG_KEY    (LONG_PREFIX + 2)

/* 64-bit FNV-1a, then a final avalanche: collisions are handled, so this
 * only needs to spread names well. */
static uint64_t name_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

/* The key `name` has, without its counter: what listings order by. */
static size_t order_key(const char *name, size_t len, uint8_t *buf)
{
	if (len <= ESDB_NAME_INLINE_MAX) {
		memcpy(buf, name, len);
		return len;
	}
	memcpy(buf, name, ESDB_NAME_INLINE_MAX);
	esdb_be64_put(buf + ESDB_NAME_INLINE_MAX, name_hash(name, len));
	return LONG_PREFIX;
}

int esdb_name_compare(const char *a, size_t alen, const char *b, size_t blen)
{
	uint8_t ka[LONG_PREFIX], kb[LONG_PREFIX];
	size_t la = order_key(a, alen, ka), lb = order_key(b, blen, kb);
	int cmp = memcmp(ka, kb, la < lb ? la : lb);
	/* LMDB's default order: bytes, then the shorter key first. */
	return cmp ? cmp : (la > lb) - (la < lb);
}

int esdb__name_of(const MDB_val *rec, const char **name, size_t *len)
{
	const uint8_t *p = rec->mv_data;
	if (rec->mv_size < 10 ||
	    10 + (size_t)esdb_le16_get(p + 8) > rec->mv_size)
		return ESDB_ECORRUPT;
	*len = esdb_le16_get(p + 8);
	*name = (const char *)p + 10;
	return 0;
}

static bool name_is(const MDB_val *rec, const char *name, size_t len)
{
	const char *n;
	size_t l;
	return esdb__name_of(rec, &n, &l) == 0 && l == len &&
	       memcmp(n, name, len) == 0;
}

int esdb__name_find(MDB_txn *txn, MDB_dbi dbi, const char *name, size_t len,
                    esdb_name_key *key, MDB_val *val, bool *found)
{
	*found = false;
	if (len <= ESDB_NAME_INLINE_MAX) {
		memcpy(key->buf, name, len);
		key->val.mv_data = key->buf;
		key->val.mv_size = len;
		int rc = mdb_get(txn, dbi, &key->val, val);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc)
			return rc;
		if ((rc = esdb__val_check(txn, val, ESDB_WHERE_UNKNOWN, 0)))
			return rc;
		if (!name_is(val, name, len))
			return ESDB_ECORRUPT;
		*found = true;
		return 0;
	}

	memcpy(key->buf, name, ESDB_NAME_INLINE_MAX);
	esdb_be64_put(key->buf + LONG_PREFIX - 8, name_hash(name, len));
	key->buf[LONG_PREFIX] = 0;
	key->buf[LONG_PREFIX + 1] = 0;
	key->val.mv_data = key->buf;
	key->val.mv_size = LONG_KEY;

	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return rc;
	MDB_val k = key->val, v;
	uint32_t next_counter = 0;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == LONG_KEY &&
	       memcmp(k.mv_data, key->buf, LONG_PREFIX) == 0) {
		const uint8_t *kb = k.mv_data;
		uint32_t counter =
		    (uint32_t)(kb[LONG_PREFIX] << 8) | kb[LONG_PREFIX + 1];
		if ((rc = esdb__val_check(txn, &v, ESDB_WHERE_UNKNOWN, 0)))
			break;
		if (name_is(&v, name, len)) {
			key->buf[LONG_PREFIX] = kb[LONG_PREFIX];
			key->buf[LONG_PREFIX + 1] = kb[LONG_PREFIX + 1];
			*val = v;
			*found = true;
			mdb_cursor_close(cur);
			return 0;
		}
		next_counter = counter + 1;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if (next_counter > UINT16_MAX)
		return ESDB_ELIMIT;
	key->buf[LONG_PREFIX] = (uint8_t)(next_counter >> 8);
	key->buf[LONG_PREFIX + 1] = (uint8_t)next_counter;
	return 0;
}
