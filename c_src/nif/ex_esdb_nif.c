/* ex_esdb_nif.c: the Erlang NIF binding over the C core (esdb.h): load
 * and the function table. The functions live by concern: store.c (open,
 * close), commands.c (mutations, answered {Ref, Reply} by the writer),
 * reads.c and records.c (reads on dirty IO schedulers, paged by the
 * caller), subscriptions.c, maintenance.c; args.c decodes arguments,
 * terms.c and errors.c build replies. Wrong argument types raise badarg;
 * bad values come back as {error, Reason}. */
#include "nif.h"

#include "atoms.h"
#include "etf.h"

/* ---- load ------------------------------------------------------------- */

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info)
{
	if (nif_owed_init())
		return 1;
	nif_atoms_init(env);
	records_init(env);
	subs_init(env);
	if (!pages_init(env, ERL_NIF_RT_CREATE))
		return 1;
	return nif_store_type_open(env, ERL_NIF_RT_CREATE) ? 0 : 1;
}

static int upgrade(ErlNifEnv *env, void **priv, void **old, ERL_NIF_TERM info)
{
	if (nif_owed_init())
		return 1;
	nif_atoms_init(env);
	records_init(env);
	subs_init(env);
	if (!pages_init(env, ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER))
		return 1;
	return nif_store_type_open(env, ERL_NIF_RT_TAKEOVER) ? 0 : 1;
}

#define DIRTY_IO ERL_NIF_DIRTY_JOB_IO_BOUND

/* Every entry is an operation of c_src/proto (protocol_table_test.exs). */
ErlNifFunc nif_funcs[] = {
    {"open", 2, nif_open, DIRTY_IO},
    {"close", 1, nif_close, DIRTY_IO},
    {"append", 5, nif_append, 0},
    {"delete_stream", 4, nif_delete_stream, 0},
    {"snapshot_put", 7, nif_snapshot_put, 0},
    {"snapshot_delete", 3, nif_snapshot_delete, 0},
    {"checkpoint_put", 5, nif_checkpoint_put, 0},
    {"checkpoint_delete", 3, nif_checkpoint_delete, 0},
    /* with a request ({Id, Retry}: the cluster gateway's) */
    {"snapshot_put", 8, nif_snapshot_put, 0},
    {"snapshot_delete", 4, nif_snapshot_delete, 0},
    {"checkpoint_put", 6, nif_checkpoint_put, 0},
    {"checkpoint_delete", 4, nif_checkpoint_delete, 0},
    {"read_stream", 5, nif_read_stream, DIRTY_IO},
    {"read_all", 4, nif_read_all, DIRTY_IO},
    {"read_type", 4, nif_read_type, DIRTY_IO},
    {"stream_info", 2, nif_stream_info, DIRTY_IO},
    {"list_streams", 3, nif_list_streams, DIRTY_IO},
    {"snapshot_get", 2, nif_snapshot_get, DIRTY_IO},
    {"checkpoint_get", 2, nif_checkpoint_get, DIRTY_IO},
    {"checkpoint_list", 3, nif_checkpoint_list, DIRTY_IO},
    {"stats", 1, nif_stats, DIRTY_IO},
    {"limits", 1, nif_limits, 0},
    {"cancel", 2, nif_cancel, 0},
    {"verify", 2, nif_verify, 0},
    {"backup", 3, nif_backup, 0},
    {"read_records", 6, nif_read_records, DIRTY_IO},
    {"read_page", 5, nif_read_page, DIRTY_IO},
    {"page_records", 2, nif_page_records, 0},
    {"subscribe", 4, nif_subscribe, DIRTY_IO},
    {"subscribe", 5, nif_subscribe, DIRTY_IO},
    {"subscribe", 6, nif_subscribe, DIRTY_IO},
    {"unsubscribe", 2, nif_unsubscribe, DIRTY_IO},
    {"grant", 3, nif_grant, DIRTY_IO},
    {"decode_term", 1, nif_decode_term, 0},
    {"cluster_support", 0, nif_cluster_support, 0},
    {"protocol_table", 0, nif_protocol_table, 0},
    {"cluster_open", 3, nif_cluster_open, DIRTY_IO},
    {"cluster_info", 1, nif_cluster_info, 0},
    {"cluster_members", 1, nif_cluster_members, DIRTY_IO},
    {"cluster_install_copy", 2, nif_cluster_install_copy, DIRTY_IO},
    {"cluster_add", 3, nif_cluster_add, DIRTY_IO},
    {"cluster_assign", 3, nif_cluster_assign, DIRTY_IO},
    {"cluster_remove", 2, nif_cluster_remove, DIRTY_IO},
    {"cluster_transfer", 2, nif_cluster_transfer, DIRTY_IO},
};

const size_t nif_func_count = sizeof(nif_funcs) / sizeof(nif_funcs[0]);

ERL_NIF_INIT(ex_esdb_nif, nif_funcs, load, NULL, upgrade, NULL)
