/* requests.c: the ids of the last ESDB_REQUEST_WINDOW requests applied
 * (snapshot and checkpoint puts and deletes given one with
 * esdb_cmd_set_request), so that a resubmission marked as a retry whose
 * first try was applied is not applied again. Kept in `meta` (copies
 * carry them; every replica applies the same commands, so every replica
 * has the same window): "request" ‖ slot u16 BE → the id, and
 * "requests" → u64 LE, how many were recorded (the next slot is that
 * count modulo the window). Only a marked retry looks (at most the
 * window's entries, one cursor walk); a request recorded costs two puts
 * in `meta`. */
#include "internal.h"

#include "bytes.h"

#include <string.h>

#define SLOT_PREFIX     "request"
#define SLOT_PREFIX_LEN 7
#define SLOT_KEY_LEN    (SLOT_PREFIX_LEN + 2)

static const MDB_val count_key = {8, "requests"};

static void slot_key(uint8_t key[SLOT_KEY_LEN], uint64_t slot)
{
	memcpy(key, SLOT_PREFIX, SLOT_PREFIX_LEN);
	key[SLOT_PREFIX_LEN] = (uint8_t)(slot >> 8);
	key[SLOT_PREFIX_LEN + 1] = (uint8_t)slot;
}

int esdb__request_seen(MDB_txn *txn, MDB_dbi meta, const uint8_t id[16],
                       bool *seen)
{
	*seen = false;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, meta, &cur);
	if (rc)
		return rc;
	uint8_t first[SLOT_KEY_LEN];
	slot_key(first, 0);
	MDB_val k = {sizeof(first), first}, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	/* the slots sort together, before "requests" (a longer key with
	 * the same first 7 bytes and 's' > any slot's high byte) */
	while (rc == 0 && k.mv_size == SLOT_KEY_LEN &&
	       memcmp(k.mv_data, SLOT_PREFIX, SLOT_PREFIX_LEN) == 0) {
		if (v.mv_size != 16) {
			rc = ESDB_ECORRUPT;
			break;
		}
		if (memcmp(v.mv_data, id, 16) == 0) {
			*seen = true;
			break;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int esdb__request_count(MDB_txn *txn, MDB_dbi meta, uint64_t *count)
{
	MDB_val v;
	*count = 0;
	int rc = mdb_get(txn, meta, (MDB_val *)&count_key, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (v.mv_size != 8)
		return ESDB_ECORRUPT;
	*count = esdb_le64_get(v.mv_data);
	return 0;
}

int esdb__request_record(MDB_txn *txn, MDB_dbi meta, const uint8_t id[16],
                         uint64_t count)
{
	uint8_t key[SLOT_KEY_LEN], n[8];
	slot_key(key, count % ESDB_REQUEST_WINDOW);
	MDB_val k = {sizeof(key), key}, d = {16, (void *)id};
	int rc = mdb_put(txn, meta, &k, &d, 0);
	if (rc)
		return rc;
	esdb_le64_put(n, count + 1);
	MDB_val c = {8, n};
	return mdb_put(txn, meta, (MDB_val *)&count_key, &c, 0);
}
