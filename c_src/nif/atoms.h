/* atoms.h: the atoms shared by the NIF's files (subscriptions.c and
 * records.c keep their own), made once at load by nif_atoms_init. */
#ifndef EX_ESDB_NIF_ATOMS_H
#define EX_ESDB_NIF_ATOMS_H

#include <erl_nif.h>

#define NIF_ATOMS(X)                                                           \
	X(ok)                                                                  \
	X(error)                                                               \
	X(nil)                                                                 \
	X(true)                                                                \
	X(false)                                                               \
	X(any)                                                                 \
	X(no_stream)                                                           \
	X(stream_exists)                                                       \
	X(retry)                                                               \
	X(forward)                                                             \
	X(backward)                                                            \
	X(durability)                                                          \
	X(sync)                                                                \
	X(strict)                                                              \
	X(nosync)                                                              \
	X(no_meta_sync)                                                        \
	X(map_size)                                                            \
	X(create)                                                              \
	X(readonly)                                                            \
	X(owner)                                                               \
	X(file_mode)                                                           \
	X(max_read_bytes)                                                      \
	X(eof)                                                                 \
	X(max_stream_id)                                                       \
	X(max_event_type)                                                      \
	X(max_event_bytes)                                                     \
	X(max_append_events)                                                   \
	X(max_append_bytes)                                                    \
	X(max_key)                                                             \
	X(events)                                                              \
	X(streams)                                                             \
	X(event_types)                                                         \
	X(snapshots)                                                           \
	X(checkpoints)                                                         \
	X(bytes_used)                                                          \
	X(commits)                                                             \
	X(subscribers)                                                         \
	X(store_failed)                                                        \
	X(closed)                                                              \
	X(invalid_option)                                                      \
	X(invalid_stream_id)                                                   \
	X(limit_exceeded)                                                      \
	X(not_queued)                                                          \
	X(abandoned)                                                           \
	X(max_queue_bytes)                                                     \
	X(max_fanout_bytes)                                                    \
	X(problems)                                                            \
	X(term)                                                                \
	X(legacy)

#define DECLARE_ATOM(name) extern ERL_NIF_TERM atom_##name;
NIF_ATOMS(DECLARE_ATOM)
#undef DECLARE_ATOM

void nif_atoms_init(ErlNifEnv *env);

#endif
