/* replica_mark.c: the mark saying a store is a cluster replica's (a key
 * in the unnamed database, beside "applied", so copies carry it). Such
 * a store is written through its replica only: opened without one (the
 * CLI, a single-node open), its writes answer ESDB_ENOT_LEADER, as its
 * replica's would on a node that does not lead. Applying them here
 * would diverge from the other members. */
#include "internal.h"

#include <errno.h>

static const MDB_val mark_key = {7, "replica"};

static int mark_read(MDB_txn *txn, MDB_dbi main, bool *marked)
{
	MDB_val v;
	int rc = mdb_get(txn, main, (MDB_val *)&mark_key, &v);
	*marked = rc == 0;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int esdb__replica_mark_load(esdb_store *s)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return esdb__mdb_rc(rc);
	rc = mark_read(txn, s->dbi_main, &s->replica_marked);
	mdb_txn_abort(txn);
	return esdb__mdb_rc(rc);
}

int esdb_store_get_replica_mark(esdb_store *s, bool *marked)
{
	if (!s || !marked)
		return ESDB_EINVAL;
	if (!s->is_open)
		return ESDB_ECLOSED;
	*marked = s->replica_marked;
	return 0;
}

int esdb_store_mark_replica(esdb_store *s, bool restart_index)
{
	if (!s)
		return ESDB_EINVAL;
	if (!s->is_open && !s->env)
		return ESDB_ECLOSED;
	if (s->readonly)
		return EROFS;
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc)
		return esdb__mdb_rc(rc);
	bool marked;
	uint8_t zero[8] = {0};
	MDB_val one = {1, "1"}, applied_key = {7, "applied"},
	        applied = {8, zero};
	if ((rc = mark_read(txn, s->dbi_main, &marked)))
		goto abort;
	if (marked) {
		mdb_txn_abort(txn);
		s->replica_marked = true;
		return 0;
	}
	if ((rc = mdb_put(txn, s->dbi_main, (MDB_val *)&mark_key, &one, 0)))
		goto abort;
	if (restart_index &&
	    (rc = mdb_put(txn, s->dbi_main, &applied_key, &applied, 0)))
		goto abort;
	if ((rc = mdb_txn_commit(txn)))
		return esdb__mdb_rc(rc);
	/* the mark must outlive a power loss before raft writes anything */
	if ((rc = mdb_env_sync(s->env, 1)))
		return esdb__mdb_rc(rc);
	s->replica_marked = true;
	return 0;
abort:
	mdb_txn_abort(txn);
	return esdb__mdb_rc(rc);
}
