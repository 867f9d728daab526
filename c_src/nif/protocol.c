/* protocol.c: protocol_table/0, c_src/proto's tables as terms, with the
 * NIF's own function table beside them, so a test can hold the two
 * against each other and against the Erlang stubs. */
#include "nif.h"

#include "atoms.h"

static ERL_NIF_TERM names_list(ErlNifEnv *env, const char *const *names)
{
	ERL_NIF_TERM list = enif_make_list(env, 0);
	size_t n = 0;
	while (names[n])
		n++;
	while (n--)
		list = enif_make_list_cell(env, enif_make_atom(env, names[n]),
		                           list);
	return list;
}

/* [{Name, Arity, Scheduler, Reply, [ArgKind]}] */
static ERL_NIF_TERM operations(ErlNifEnv *env)
{
	ERL_NIF_TERM list = enif_make_list(env, 0);
	for (size_t i = esdb_proto_op_count; i-- > 0;) {
		const esdb_proto_op *op = &esdb_proto_ops[i];
		ERL_NIF_TERM args[ESDB_PROTO_MAX_ARITY];
		for (unsigned a = 0; a < op->arity; a++)
			args[a] = enif_make_atom(
			    env, esdb_proto_arg_name(op->args[a]));
		ERL_NIF_TERM t = enif_make_tuple5(
		    env, enif_make_atom(env, op->name),
		    enif_make_uint(env, op->arity),
		    enif_make_atom(env, esdb_proto_sched_name(op->sched)),
		    enif_make_atom(env, esdb_proto_reply_name(op->reply)),
		    enif_make_list_from_array(env, args, op->arity));
		list = enif_make_list_cell(env, t, list);
	}
	return list;
}

/* [{Name, atom, [Atom]} | {Name, boolean} | {Name, integer, Min, Max} |
 *  {Name, binary, MaxBytes}] */
static ERL_NIF_TERM options(ErlNifEnv *env)
{
	ERL_NIF_TERM list = enif_make_list(env, 0);
	for (int i = ESDB_OPT_N; i-- > 0;) {
		const esdb_proto_option *o = &esdb_proto_options[i];
		ERL_NIF_TERM name = enif_make_atom(env, o->name), t;
		switch (o->kind) {
		case ESDB_OPTK_ATOM:
			t = enif_make_tuple3(env, name,
			                     enif_make_atom(env, "atom"),
			                     names_list(env, o->atoms));
			break;
		case ESDB_OPTK_BOOL:
			t = enif_make_tuple2(env, name,
			                     enif_make_atom(env, "boolean"));
			break;
		case ESDB_OPTK_UINT:
			t = enif_make_tuple4(env, name,
			                     enif_make_atom(env, "integer"),
			                     enif_make_uint64(env, o->min),
			                     enif_make_uint64(env, o->max));
			break;
		default:
			t = enif_make_tuple3(env, name,
			                     enif_make_atom(env, "binary"),
			                     enif_make_uint64(env, o->max));
		}
		list = enif_make_list_cell(env, t, list);
	}
	return list;
}

/* [{Name, Arity, normal | dirty_io | dirty_cpu}] of the function table. */
static ERL_NIF_TERM nif_functions(ErlNifEnv *env)
{
	ERL_NIF_TERM list = enif_make_list(env, 0);
	for (size_t i = nif_func_count; i-- > 0;) {
		const ErlNifFunc *f = &nif_funcs[i];
		const char *sched =
		    f->flags == ERL_NIF_DIRTY_JOB_IO_BOUND    ? "dirty_io"
		    : f->flags == ERL_NIF_DIRTY_JOB_CPU_BOUND ? "dirty_cpu"
		                                              : "normal";
		ERL_NIF_TERM t = enif_make_tuple3(
		    env, enif_make_atom(env, f->name),
		    enif_make_uint(env, f->arity), enif_make_atom(env, sched));
		list = enif_make_list_cell(env, t, list);
	}
	return list;
}

/* protocol_table() -> #{version, operations, nif_functions, options,
 * event_tuple, record_fields, datetime_fields, stats_fields} */
ERL_NIF_TERM nif_protocol_table(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
	ERL_NIF_TERM keys[] = {
	    enif_make_atom(env, "version"),
	    enif_make_atom(env, "operations"),
	    enif_make_atom(env, "nif_functions"),
	    enif_make_atom(env, "options"),
	    enif_make_atom(env, "event_tuple"),
	    enif_make_atom(env, "record_fields"),
	    enif_make_atom(env, "datetime_fields"),
	    enif_make_atom(env, "stats_fields"),
	};
	ERL_NIF_TERM vals[] = {
	    enif_make_uint(env, ESDB_PROTO_VERSION),
	    operations(env),
	    nif_functions(env),
	    options(env),
	    names_list(env, esdb_proto_event_tuple),
	    names_list(env, esdb_proto_record_fields),
	    names_list(env, esdb_proto_datetime_fields),
	    names_list(env, esdb_proto_stats_fields),
	};
	ERL_NIF_TERM map;
	enif_make_map_from_arrays(env, keys, vals, sizeof(keys) / sizeof(*keys),
	                          &map);
	return map;
}
