/* proto.h: the ExESDB protocol as data, for every binding.
 *
 * The operations (name, arity, argument kinds, where they run, how they
 * answer), the open options and their bounds, the fields of an event as a
 * tuple and as an %ExESDB.EventRecord{}, the stats fields, the date an
 * event's time stamp is shown as, and the names of a corruption's place.
 * members.h is the subscription member table (ids, credit, gaps).
 * The NIF (c_src/nif, over erl_nif) decodes arguments and builds terms
 * over these tables; the C node (c_src/cnode, over ei) does the same, so
 * neither holds a second copy of what a term is. docs/PROTOCOL.md writes
 * every request and reply term down. No Erlang, ei or libuv header here:
 * only the core's esdb.h. */
#ifndef ESDB_PROTO_H
#define ESDB_PROTO_H

#include "esdb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever a request or reply term changes shape. */
#define ESDB_PROTO_VERSION 1

/* A read or listing returns at most this many items, whatever Count
 * asks (capped, not refused), so one call is bounded. */
#define ESDB_PROTO_MAX_READ 10000
/* A path (open, backup): 1 to this many bytes, no NUL. */
#define ESDB_PROTO_MAX_PATH 4000

/* ---- operations ------------------------------------------------------- */

/* What an argument is, as a term. The binding decodes each kind one way
 * (the NIF: args.c and the decoders named there); a wrong kind is badarg
 * in the NIF, {error, badarg} in the C node. */
typedef enum esdb_proto_arg {
	ESDB_ARG_STORE,     /* the store handle (the C node serves one) */
	ESDB_ARG_REF,       /* a reference tagging the {Ref, Reply} message */
	ESDB_ARG_PID,       /* a local pid: the subscriber */
	ESDB_ARG_PATH,      /* binary, 1..ESDB_PROTO_MAX_PATH bytes, no NUL */
	ESDB_ARG_OPTIONS,   /* map of open options (esdb_proto_options) */
	ESDB_ARG_STREAM_ID, /* binary */
	ESDB_ARG_NAME,     /* binary: event type, snapshot source, checkpoint */
	ESDB_ARG_EXPECTED, /* any | no_stream | stream_exists | Version */
	ESDB_ARG_EVENTS,   /* [{Id, Type, Data, Metadata, Causation,
	                    * Correlation}] */
	ESDB_ARG_PAYLOAD,  /* binary | {term, Binary} */
	ESDB_ARG_BINARY,   /* binary, opaque */
	ESDB_ARG_UINT,     /* integer in 0..2^64-1: version, position */
	ESDB_ARG_COUNT,    /* integer >= 0, capped at ESDB_PROTO_MAX_READ */
	ESDB_ARG_DIRECTION, /* forward | backward */
	ESDB_ARG_AFTER,     /* nil | binary: where a listing goes on from */
	ESDB_ARG_SOURCE,    /* all | {stream, Id} | {type, Type} */
	ESDB_ARG_FORMAT,    /* {Module, Decode}: two atoms */
	ESDB_ARG_SHAPE,     /* false | true | ranged */
	ESDB_ARG_CREDIT,    /* infinity | 1..2^64-2 */
	ESDB_ARG_MEMBER,    /* a member id from subscribe */
	ESDB_ARG_GRANT,     /* integer in 1..2^64-1 */
	ESDB_ARG_CLUSTER,   /* map: a replica's id, address, members, ... */
	ESDB_ARG_ADDRESS,   /* binary "ip:port", a raft member's address */
	ESDB_ARG_ROLE,      /* voter | standby | spare */
	ESDB_ARG_REQUEST,   /* {Id, Retry}: 16 bytes, a boolean: a put's or
	                     * delete's request (esdb_cmd_set_request) */
	ESDB_ARG_PAGE,      /* a page read_page made (an in-VM resource) */
	ESDB_ARG_N
} esdb_proto_arg;

/* Where an operation runs. A binding without schedulers (the C node)
 * reads DIRTY_IO as "on a thread that may wait for the disk". */
typedef enum esdb_proto_sched {
	ESDB_SCHED_NORMAL,   /* short: decoding, queueing, a lookup in memory */
	ESDB_SCHED_DIRTY_IO, /* may read the disk or wait for a thread */
	/* normal, moved to a dirty CPU scheduler by the call itself when
	 * its input is large (a big append, a compressed term) */
	ESDB_SCHED_ADAPTIVE,
	ESDB_SCHED_N
} esdb_proto_sched;

/* How an operation answers. */
typedef enum esdb_proto_reply {
	ESDB_REPLY_DIRECT, /* the call's value */
	/* ok (or {error, Reason}) at once, then {Ref, Reply} to the caller */
	ESDB_REPLY_ASYNC,
	/* {ok, MemberId, LastPosition}, then event messages to the pid */
	ESDB_REPLY_SUBSCRIPTION,
	ESDB_REPLY_N
} esdb_proto_reply;

#define ESDB_PROTO_MAX_ARITY 8

typedef struct esdb_proto_op {
	const char *name;
	unsigned arity;
	esdb_proto_sched sched;
	esdb_proto_reply reply;
	esdb_proto_arg args[ESDB_PROTO_MAX_ARITY]; /* the first `arity` */
} esdb_proto_op;

/* Every operation, one entry per name and arity. */
extern const esdb_proto_op esdb_proto_ops[];
extern const size_t esdb_proto_op_count;

/* The operation name/arity, or NULL. */
const esdb_proto_op *esdb_proto_op_find(const char *name, unsigned arity);

/* The atom-like names of the enums above ("store", "dirty_io", ...),
 * as protocol_table/0 and docs/PROTOCOL.md write them. */
const char *esdb_proto_arg_name(esdb_proto_arg a);
const char *esdb_proto_sched_name(esdb_proto_sched s);
const char *esdb_proto_reply_name(esdb_proto_reply r);

/* ---- open options ----------------------------------------------------- */

typedef enum esdb_proto_opt_kind {
	ESDB_OPTK_ATOM, /* one of `atoms` */
	ESDB_OPTK_BOOL, /* true | false */
	ESDB_OPTK_UINT, /* integer in [min, max] */
	ESDB_OPTK_TEXT, /* binary of at most max bytes, no NUL */
} esdb_proto_opt_kind;

/* In the order they are applied; the store may refuse a value within
 * the bounds too (e.g. a map size below what is in use). */
#define ESDB_PROTO_OPTIONS(X)                                                  \
	X(DURABILITY, durability)                                              \
	X(MAP_SIZE, map_size)                                                  \
	X(CREATE, create)                                                      \
	X(READONLY, readonly)                                                  \
	X(FILE_MODE, file_mode)                                                \
	X(OWNER, owner)                                                        \
	X(MAX_FANOUT_BYTES, max_fanout_bytes)                                  \
	X(MAX_QUEUE_BYTES, max_queue_bytes)                                    \
	X(MAX_READ_BYTES, max_read_bytes)                                      \
	X(MAX_STREAM_ID, max_stream_id)                                        \
	X(MAX_EVENT_TYPE, max_event_type)                                      \
	X(MAX_EVENT_BYTES, max_event_bytes)                                    \
	X(MAX_APPEND_EVENTS, max_append_events)                                \
	X(MAX_APPEND_BYTES, max_append_bytes)                                  \
	X(MAX_KEY, max_key)

typedef enum esdb_proto_opt_id {
#define ESDB_PROTO_OPT_ENUM(id, name) ESDB_OPT_##id,
	ESDB_PROTO_OPTIONS(ESDB_PROTO_OPT_ENUM) ESDB_OPT_N
#undef ESDB_PROTO_OPT_ENUM
} esdb_proto_opt_id;

typedef struct esdb_proto_option {
	const char *name;
	esdb_proto_opt_kind kind;
	uint64_t min, max;        /* UINT: bounds; TEXT: max bytes */
	const char *const *atoms; /* ATOM: the accepted atoms, NULL-ended */
} esdb_proto_option;

extern const esdb_proto_option esdb_proto_options[ESDB_OPT_N];

/* Open options as a binding decoded them. value[i]: ATOM the index into
 * atoms, BOOL 0 or 1, UINT the integer; TEXT in text/text_len. Options not
 * given keep the store's. */
typedef struct esdb_proto_open {
	bool given[ESDB_OPT_N];
	uint64_t value[ESDB_OPT_N];
	const char *text[ESDB_OPT_N];
	size_t text_len[ESDB_OPT_N];
} esdb_proto_open;

/* Whether v is within option o's bounds (UINT; TEXT: as a length). */
bool esdb_proto_option_in_bounds(const esdb_proto_option *o, uint64_t v);

/* Configure a created, not yet opened store with the given options.
 * ESDB_EINVAL when the store refuses one (the binding answers
 * {error, invalid_option}). */
int esdb_proto_open_configure(esdb_store *s, const esdb_proto_open *o);

/* The first limit option given (max_stream_id ... max_key), -1 when none:
 * a cluster store refuses them (its limits change through the log). */
int esdb_proto_open_limit_given(const esdb_proto_open *o);

/* What applies once the store is open (the fan-out queue's bound). */
void esdb_proto_open_started(esdb_store *s, const esdb_proto_open *o);

/* ---- events ----------------------------------------------------------- */

/* An event as read_stream, read_all and read_type return it: a tuple of
 * these, in this order. */
#define ESDB_PROTO_EVENT_TUPLE(X)                                              \
	X(position)                                                            \
	X(stream_id)                                                           \
	X(stream_version)                                                      \
	X(event_id)                                                            \
	X(event_type)                                                          \
	X(data)                                                                \
	X(metadata)                                                            \
	X(causation_id)                                                        \
	X(correlation_id)                                                      \
	X(created_us)

/* The keys of an %ExESDB.EventRecord{} as read_records and deliveries
 * build it (pinned to the struct by event_record_keys_test.exs), in term
 * order (atoms sort by name) so a map is built without reordering. */
#define ESDB_PROTO_RECORD_FIELDS(X)                                            \
	X(__struct__)                                                          \
	X(causation_id)                                                        \
	X(correlation_id)                                                      \
	X(created_at)                                                          \
	X(created_epoch)                                                       \
	X(data)                                                                \
	X(event_id)                                                            \
	X(event_number)                                                        \
	X(event_type)                                                          \
	X(metadata)                                                            \
	X(position)                                                            \
	X(stream_id)                                                           \
	X(stream_version)

/* The keys of created_at, a %DateTime{} in UTC, in term order. */
#define ESDB_PROTO_DATETIME_FIELDS(X)                                          \
	X(__struct__)                                                          \
	X(calendar)                                                            \
	X(day)                                                                 \
	X(hour)                                                                \
	X(microsecond)                                                         \
	X(minute)                                                              \
	X(month)                                                               \
	X(second)                                                              \
	X(std_offset)                                                          \
	X(time_zone)                                                           \
	X(utc_offset)                                                          \
	X(year)                                                                \
	X(zone_abbr)

/* stats/1's keys, in the order the NIF builds the map. */
#define ESDB_PROTO_STATS_FIELDS(X)                                             \
	X(events)                                                              \
	X(streams)                                                             \
	X(event_types)                                                         \
	X(snapshots)                                                           \
	X(checkpoints)                                                         \
	X(bytes_used)                                                          \
	X(map_size)                                                            \
	X(commits)                                                             \
	X(store_failed)                                                        \
	X(subscribers)

/* The same lists as NULL-ended arrays of names, for bindings that walk
 * them and for protocol_table/0. */
extern const char *const esdb_proto_event_tuple[];
extern const char *const esdb_proto_record_fields[];
extern const char *const esdb_proto_datetime_fields[];
extern const char *const esdb_proto_stats_fields[];

/* A time stamp (microseconds since 1970-01-01T00:00:00Z) as the UTC
 * calendar date and time DateTime.from_unix!(us, :microsecond) gives. */
typedef struct esdb_proto_date {
	int64_t year;
	unsigned month, day, hour, minute, second;
	uint32_t microsecond;
} esdb_proto_date;

void esdb_proto_date_from_us(uint64_t us, esdb_proto_date *d);

/* ---- errors ----------------------------------------------------------- */

/* The name of where corruption was found, as in {corrupt, Where}:
 * "event", "page", ... ("unknown" for a kind out of range). */
const char *esdb_proto_where_name(esdb_where_kind kind);

#endif
