/* nif.h: what the NIF's files share: the store resource and helpers. */
#ifndef EX_ESDB_NIF_H
#define EX_ESDB_NIF_H

#include <erl_nif.h>
#include <stdbool.h>

#include "esdb.h"

/* A read returns at most this many events, whatever is asked, so one call
 * holds a dirty scheduler for a bounded time. */
#define MAX_READ 10000

typedef struct store_res {
	esdb_store *s;
	/* Held shared by every call that uses the store, exclusive by close,
	 * so a close waits for calls in flight and later calls see it. */
	ErlNifRWLock *lock;
	bool closed;
} store_res;

/* Get the store and hold its lock shared; false for a non-store term. */
bool nif_store_acquire(ErlNifEnv *env, ERL_NIF_TERM t, store_res **out);
void nif_store_release(store_res *r);

ERL_NIF_TERM nif_error_term(ErlNifEnv *env, int rc);
bool nif_get_u64(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out);
bool nif_get_direction(ERL_NIF_TERM t, esdb_direction *dir);
bool nif_get_count(ErlNifEnv *env, ERL_NIF_TERM t, uint32_t *count);
ERL_NIF_TERM nif_make_bin(ErlNifEnv *env, const void *p, size_t len);

/* records.c: reads that build Elixir structs directly. */
void records_init(ErlNifEnv *env);
ERL_NIF_TERM nif_read_records(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);

#endif
