/* etf.h: checked decoding of payloads stored as Erlang terms (etf.c). */
#ifndef EX_ESDB_ETF_H
#define EX_ESDB_ETF_H

#include <erl_nif.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a stored term may not be decoded: the Reason of
 * {error, {undecodable, Reason}}. */
enum etf_refusal {
	ETF_OK = 0,
	ETF_FUN = 1,       /* a fun (local or export): code */
	ETF_PID = 2,       /* pids, ports, references: */
	ETF_PORT = 3,      /* handles into whichever node */
	ETF_REFERENCE = 4, /* reads them */
	ETF_UNKNOWN_ATOM = 5,
	ETF_TOO_LARGE = 6, /* a compressed term declaring too much */
	ETF_MALFORMED = 7, /* not external term format, or bad lengths */
	ETF_NOMEM = 8,
};

/* The most a compressed term may declare it inflates to: the default
 * max_event_bytes, what one event's payload may hold uncompressed. */
#define ETF_MAX_INFLATED (16u << 20)

/* Check the external term format in data[0..len) and decode it into *out
 * in env. With out NULL only check (before a write): the walk, and the
 * atoms looked up in this VM. Returns 0 or an etf_refusal. */
int etf_decode(ErlNifEnv *env, const void *data, size_t len, ERL_NIF_TERM *out);

/* Whether bytes are a compressed term: checking it inflates up to
 * ETF_MAX_INFLATED bytes, work for a dirty scheduler. */
bool etf_is_compressed(const void *data, size_t len);

/* {error, {undecodable, Reason}} for a refusal. */
ERL_NIF_TERM etf_undecodable(ErlNifEnv *env, int refusal);

ERL_NIF_TERM nif_decode_term(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);

#endif
