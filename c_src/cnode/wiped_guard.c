/* wiped_guard.c: a C node replica whose data directory was lost must not
 * come back as the voter it was (cluster.h, cn_cluster_guard_wiped). The
 * BEAM replicas' counterpart is ExESDB.Cluster.Seeding. Members record
 * themselves once they have a leader (cn_cluster_record_self): a member
 * that answers it holds this id's record proves this id took part, as
 * does a member recorded under this C node's name (a replica that came
 * back under a new id, --raft-wiped rejoin, and lost its data again: the
 * rejoin removed its --raft-id, and that id's record with it); a first
 * formation, or a member started late into it, finds neither. */
#include "cluster.h"
#include "copies.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Member m recorded this C node as raft id `was`: true with --raft-wiped
 * rejoin, else the line and exit. */
static bool was_member(cn_server *srv, const cn_cluster_opts *o,
                       const char *self_name, const char *m, uint64_t was)
{
	if (o->wiped_rejoin) {
		fprintf(stderr,
		        "ex_esdb_cnode: %s was a member of this cluster (raft "
		        "id %llu, recorded by %s) and has no raft state in %s: "
		        "its data directory was lost. --raft-wiped rejoin: it "
		        "comes back as a new member\n",
		        self_name, (unsigned long long)was, m, srv->store_dir);
		return true;
	}
	fprintf(stderr,
	        "ex_esdb_cnode: %s was a member of this cluster (raft id "
	        "%llu, recorded by %s) and has no raft state in %s: its data "
	        "directory was lost. It does not start as a voter under "
	        "--raft-id %llu (an empty log and term could vote twice in a "
	        "term). Remove id %llu from the cluster and add this node as "
	        "a new member (a new --raft-id, no --raft-member, "
	        "--raft-copy-from a member; docs/CLUSTER.md), or start it "
	        "with --raft-wiped rejoin\n",
	        self_name, (unsigned long long)was, m, srv->store_dir,
	        (unsigned long long)o->id, (unsigned long long)was);
	exit(CN_EXIT_WAS_MEMBER);
}

bool cn_cluster_guard_wiped(cn_server *srv, const cn_cluster_opts *o,
                            const char *self_name)
{
	char path[4096], key[64];
	struct stat st;
	if (!o->id || !o->n_members)
		return false;
	snprintf(path, sizeof(path), "%s/raft/node_id", srv->store_dir);
	if (stat(path, &st) == 0 || errno != ENOENT)
		return false; /* raft state (or unreadable: the replica says
		               * so) */
	/* the key cluster.c records member names under */
	snprintf(key, sizeof(key), "ex_esdb:cnode:%llu",
	         (unsigned long long)o->id);
	for (unsigned i = 0; i < o->n_members; i++) {
		const char *m = o->members[i].cnode;
		if (strcmp(m, self_name) != 0 &&
		    cn_copy_call_checkpoint(&srv->ec, m, key, NULL) == 1)
			return was_member(srv, o, self_name, m, o->id);
	}
	/* this id's record gone: a member recorded under this name */
	for (unsigned i = 0; i < o->n_members; i++) {
		const char *m = o->members[i].cnode;
		uint64_t was;
		if (strcmp(m, self_name) != 0 &&
		    cn_rejoin_recorded_as(&srv->ec, m, self_name, &was) == 1)
			return was_member(srv, o, self_name, m, was);
	}
	return false;
}
