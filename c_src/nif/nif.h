/* nif.h: what the NIF's files share: the store resource and helpers. */
#ifndef EX_ESDB_NIF_H
#define EX_ESDB_NIF_H

#include <erl_nif.h>
#include <stdbool.h>

#include "esdb.h"
#include "proto.h"

/* A read returns at most this many events, whatever is asked, so one call
 * holds a dirty scheduler for a bounded time. */
#define MAX_READ ESDB_PROTO_MAX_READ

struct members;
typedef struct nif_cluster nif_cluster;

typedef struct store_res {
	esdb_store *s;
	/* Held shared by every call that uses the store, exclusive by close,
	 * so a close waits for calls in flight and later calls see it. */
	ErlNifRWLock *lock;
	bool closed;
	int job_running; /* a verify or backup (maintenance.c), atomic */
	struct members *members; /* subscriptions.c */
	nif_cluster *cluster;    /* cluster.c: NULL for a single-node store */
} store_res;

/* store.c: the store resource type, opened (or taken over) at load. */
bool nif_store_type_open(ErlNifEnv *env, ErlNifResourceFlags flags);
ERL_NIF_TERM nif_open(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_close(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
/* open/2's work with a step between configuring the store and opening
 * it: setup returns 0, or the error term that refuses the open, and may
 * leave a cluster part for the resource. argv: Path, Options. */
typedef ERL_NIF_TERM (*nif_open_setup)(ErlNifEnv *env, esdb_store *s,
                                       const char *path, ERL_NIF_TERM arg,
                                       nif_cluster **out);
ERL_NIF_TERM nif_open_with(ErlNifEnv *env, const ERL_NIF_TERM argv[],
                           nif_open_setup setup, ERL_NIF_TERM arg);
/* Get the store and hold its lock shared; false for a non-store term. */
bool nif_store_acquire(ErlNifEnv *env, ERL_NIF_TERM t, store_res **out);
void nif_store_release(store_res *r);
/* Get the store without taking its lock. */
bool nif_store_get(ErlNifEnv *env, ERL_NIF_TERM t, store_res **out);

/* errors.c */
ERL_NIF_TERM nif_error_term(ErlNifEnv *env, int rc);
/* The error of a call naming one stream: ESDB_EINVAL (an id the core
 * refuses: empty, reserved, $all read as a stream) is
 * {error, {invalid_stream_id, Id}}, anything else nif_error_term. */
ERL_NIF_TERM nif_stream_error_term(ErlNifEnv *env, int rc, ERL_NIF_TERM id);
/* nif_error_term, but ESDB_ESTORE_FAILED as {store_failed, Cause}. */
ERL_NIF_TERM nif_store_error_term(ErlNifEnv *env, esdb_store *s, int rc);
/* {error, {limit_exceeded, Key, Max}} */
ERL_NIF_TERM nif_limit_error(ErlNifEnv *env, esdb_limit_key key, uint64_t max);
/* The error term of a command's outcome in store s. */
ERL_NIF_TERM nif_result_error(ErlNifEnv *env, esdb_store *s,
                              const esdb_result *r);

/* args.c: argument decoding; false for a term of the wrong kind. */
bool nif_get_u64(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out);
/* any | no_stream | stream_exists | Version */
bool nif_get_expected(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *out);
bool nif_get_direction(ERL_NIF_TERM t, esdb_direction *dir);
/* A count, capped at MAX_READ. */
bool nif_get_count(ErlNifEnv *env, ERL_NIF_TERM t, uint32_t *count);
/* A 16-byte binary or nil (NULL). */
bool nif_get_opt_uuid(ErlNifEnv *env, ERL_NIF_TERM t, const uint8_t **out);
/* A binary (bytes) or {term, Binary}. */
bool nif_get_payload(ErlNifEnv *env, ERL_NIF_TERM t, ErlNifBinary *b,
                     esdb_encoding *enc);
/* 0, or why a payload written as a term could not be read back. */
int nif_check_payload(ErlNifEnv *env, const void *p, size_t len,
                      esdb_encoding enc);
/* nil (no data) or a binary. */
bool nif_get_after(ErlNifEnv *env, ERL_NIF_TERM t, ErlNifBinary *b);

/* terms.c: term building. */
ERL_NIF_TERM nif_make_bin(ErlNifEnv *env, const void *p, size_t len);
/* Bytes, {term, Bytes} or {legacy, Bytes} by encoding. */
ERL_NIF_TERM nif_make_payload(ErlNifEnv *env, const void *p, size_t len,
                              esdb_encoding enc);
/* A 16-byte binary, nil for NULL. */
ERL_NIF_TERM nif_make_opt_uuid(ErlNifEnv *env, const uint8_t *id);

/* A name (stream id, event type) made into a binary once while it repeats
 * from one event to the next, as it does within an append. */
typedef struct name_cache {
	char buf[1100];
	size_t len;
	bool have;
	ERL_NIF_TERM term;
} name_cache;
ERL_NIF_TERM nif_cached_name(ErlNifEnv *env, name_cache *c, const char *p,
                             size_t len);

/* Terms gathered one by one and made a list at the end. */
typedef struct term_list {
	ERL_NIF_TERM *terms;
	size_t n, cap;
} term_list;
/* ENOMEM when it cannot grow. */
int nif_terms_push(term_list *l, ERL_NIF_TERM t);
/* The list (in push order); frees the array. */
ERL_NIF_TERM nif_terms_take(ErlNifEnv *env, term_list *l);

/* commands.c: the mutations and cancel. */
ERL_NIF_TERM nif_append(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_delete_stream(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_snapshot_put(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_snapshot_delete(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_checkpoint_put(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_checkpoint_delete(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cancel(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* reads.c: reads as tuples, lookups, listings, stats, limits. */
ERL_NIF_TERM nif_read_stream(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_read_all(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_read_type(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_stream_info(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_list_streams(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_snapshot_get(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_checkpoint_get(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_checkpoint_list(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_limits(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* ex_esdb_nif.c: the function table (checked against c_src/proto's
 * operations by protocol_table_test.exs). */
extern ErlNifFunc nif_funcs[];
extern const size_t nif_func_count;
/* protocol.c */
ERL_NIF_TERM nif_protocol_table(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);

/* records.c: reads that build Elixir structs directly. */
void records_init(ErlNifEnv *env);
ERL_NIF_TERM nif_read_records(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
/* Read one page of the events of a source into fn (a stream, $all or a
 * type); *next says where the next page starts. */
int nif_read_source(esdb_store *s, esdb_topic source, const ErlNifBinary *name,
                    uint64_t from, uint32_t count, esdb_direction dir,
                    esdb_event_fn fn, void *ctx, esdb_read_next *next);
/* A read's continuation as a term: eof, or where the next page starts. */
ERL_NIF_TERM nif_next_term(ErlNifEnv *env, const esdb_read_next *next);
/* all | {stream, Name} | {type, Name} */
bool records_source(ErlNifEnv *env, ERL_NIF_TERM t, esdb_topic *topic,
                    ErlNifBinary *name);
/* {Module, Decode} */
bool records_format(ErlNifEnv *env, ERL_NIF_TERM t, ERL_NIF_TERM *module,
                    bool *decode);
/* %Module{} records for events, pushed to lists as lists of at most
 * chunk records each; false when out of memory. */
bool records_build(ErlNifEnv *env, const esdb_event *events, size_t n,
                   ERL_NIF_TERM module, bool decode, size_t chunk,
                   term_list *lists);

/* read_records' Format: {Module, Decode} or {Module, Decode, tuples}. */
bool records_read_format(ErlNifEnv *env, ERL_NIF_TERM t, ERL_NIF_TERM *module,
                         bool *decode, bool *tuples);
/* The records (tuples when tuples) of events as one list in *list: 0, or
 * ENOMEM, or ESDB_EINVAL with *refusal saying why a payload may not be
 * decoded (etf_undecodable). */
int records_list(ErlNifEnv *env, const esdb_event *events, size_t n,
                 ERL_NIF_TERM module, bool decode, bool tuples,
                 ERL_NIF_TERM *list, int *refusal);

/* pages.c: a read in two halves (read_page on a dirty IO scheduler,
 * page_records on the caller's), for a read-ahead. */
bool pages_init(ErlNifEnv *env, ErlNifResourceFlags flags);
ERL_NIF_TERM nif_read_page(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_page_records(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);

/* maintenance.c: verify(Store, Ref) and backup(Store, Ref, Dest) return
 * ok at once and answer {Ref, ok | {error, Reason}} from a thread of
 * their own. */
ERL_NIF_TERM nif_verify(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_backup(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* owed.c: replies the writer owes, embedded in each reply context. */
typedef struct nif_owed {
	struct nif_owed *prev, *next;
	bool abandoned; /* the caller gave it up: not to be sent */
} nif_owed;
int nif_owed_init(void);
/* A reply is owed from now on. */
void nif_owed_add(nif_owed *o);
/* The answer is due: true to send it (no longer owed), false when the
 * caller gave it up. Send it before anything else tells the caller. */
bool nif_owed_settle(nif_owed *o);
/* The caller gives up the reply match() finds: true when it was still
 * owed (it will never be sent), false when it was sent or is being sent
 * (it reaches the caller). */
bool nif_owed_abandon(bool (*match)(nif_owed *o, void *arg), void *arg);

/* subscriptions.c: emitter members that are processes. */
void subs_init(ErlNifEnv *env);
int subs_attach(store_res *r);
void subs_detach(store_res *r);
/* Tell every member the store is closing: {subscription_down, _, closed}. */
void subs_notify_down(store_res *r);
/* Emitter members held for processes now: a process that died is no
 * longer counted once its monitor fired. */
size_t subs_count(store_res *r);
ERL_NIF_TERM nif_grant(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
void subs_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon);
ERL_NIF_TERM nif_subscribe(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_unsubscribe(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);

/* cluster_support.c */
ERL_NIF_TERM nif_cluster_support(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);

/* cluster.c: a store replicated by raft (c_src/replica), when built. */
ERL_NIF_TERM nif_cluster_open(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cluster_info(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cluster_members(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cluster_add(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cluster_assign(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cluster_remove(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cluster_transfer(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_cluster_install_copy(ErlNifEnv *env, int argc,
                                      const ERL_NIF_TERM argv[]);
/* Free what cluster_open kept (after the store is closed); NULL is fine. */
void nif_cluster_free(nif_cluster *c);

#endif
