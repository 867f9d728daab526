/* cluster_support.c: whether this build can run cluster mode, from
 * build/gen/cluster_support.h (Makefile: raft built or not, and why not). */
#include "nif.h"

#include "cluster_support.h"

#include <string.h>

/* cluster_support() -> true | {false, Why}: Why (a binary) names what is
 * missing and how to enable it. */
ERL_NIF_TERM nif_cluster_support(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
	(void)argc;
	(void)argv;
	if (ESDB_CLUSTER_SUPPORT)
		return enif_make_atom(env, "true");
	return enif_make_tuple2(env, enif_make_atom(env, "false"),
	                        nif_make_bin(env, ESDB_CLUSTER_MISSING,
	                                     strlen(ESDB_CLUSTER_MISSING)));
}
