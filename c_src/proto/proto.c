/* proto.c: the protocol tables of proto.h and the little logic that is
 * the same in every binding (applying open options, the date of a time
 * stamp). */
#include "proto.h"

#include <string.h>

/* ---- operations ------------------------------------------------------- */

#define S   ESDB_ARG_STORE
#define REF ESDB_ARG_REF

/* In the order of the NIF's function table. */
const esdb_proto_op esdb_proto_ops[] = {
    {"open",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {ESDB_ARG_PATH, ESDB_ARG_OPTIONS}},
    {"close", 1, ESDB_SCHED_DIRTY_IO, ESDB_REPLY_DIRECT, {S}},
    {"append",
     5,
     ESDB_SCHED_ADAPTIVE,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_STREAM_ID, ESDB_ARG_EXPECTED, ESDB_ARG_EVENTS}},
    {"delete_stream",
     4,
     ESDB_SCHED_NORMAL,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_STREAM_ID, ESDB_ARG_EXPECTED}},
    {"snapshot_put",
     7,
     ESDB_SCHED_ADAPTIVE,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME, ESDB_ARG_UINT, ESDB_ARG_NAME, ESDB_ARG_PAYLOAD,
      ESDB_ARG_PAYLOAD}},
    {"snapshot_delete",
     3,
     ESDB_SCHED_NORMAL,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME}},
    {"checkpoint_put",
     5,
     ESDB_SCHED_NORMAL,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME, ESDB_ARG_UINT, ESDB_ARG_BINARY}},
    {"checkpoint_delete",
     3,
     ESDB_SCHED_NORMAL,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME}},
    /* the same with a request: a resend whose first try was applied is
     * not applied again (the cluster gateway's) */
    {"snapshot_put",
     8,
     ESDB_SCHED_ADAPTIVE,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME, ESDB_ARG_UINT, ESDB_ARG_NAME, ESDB_ARG_PAYLOAD,
      ESDB_ARG_PAYLOAD, ESDB_ARG_REQUEST}},
    {"snapshot_delete",
     4,
     ESDB_SCHED_NORMAL,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME, ESDB_ARG_REQUEST}},
    {"checkpoint_put",
     6,
     ESDB_SCHED_NORMAL,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME, ESDB_ARG_UINT, ESDB_ARG_BINARY, ESDB_ARG_REQUEST}},
    {"checkpoint_delete",
     4,
     ESDB_SCHED_NORMAL,
     ESDB_REPLY_ASYNC,
     {S, REF, ESDB_ARG_NAME, ESDB_ARG_REQUEST}},
    {"read_stream",
     5,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_STREAM_ID, ESDB_ARG_UINT, ESDB_ARG_COUNT,
      ESDB_ARG_DIRECTION}},
    {"read_all",
     4,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_UINT, ESDB_ARG_COUNT, ESDB_ARG_DIRECTION}},
    {"read_type",
     4,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_NAME, ESDB_ARG_UINT, ESDB_ARG_COUNT}},
    {"stream_info",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_STREAM_ID}},
    {"list_streams",
     3,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_AFTER, ESDB_ARG_COUNT}},
    {"snapshot_get",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_NAME}},
    {"checkpoint_get",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_NAME}},
    {"checkpoint_list",
     3,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_AFTER, ESDB_ARG_COUNT}},
    {"stats", 1, ESDB_SCHED_DIRTY_IO, ESDB_REPLY_DIRECT, {S}},
    {"limits", 1, ESDB_SCHED_NORMAL, ESDB_REPLY_DIRECT, {S}},
    {"cancel", 2, ESDB_SCHED_NORMAL, ESDB_REPLY_DIRECT, {S, REF}},
    {"verify", 2, ESDB_SCHED_NORMAL, ESDB_REPLY_ASYNC, {S, REF}},
    {"backup", 3, ESDB_SCHED_NORMAL, ESDB_REPLY_ASYNC, {S, REF, ESDB_ARG_PATH}},
    {"read_records",
     6,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_SOURCE, ESDB_ARG_UINT, ESDB_ARG_COUNT, ESDB_ARG_DIRECTION,
      ESDB_ARG_FORMAT}},
    {"read_page",
     5,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_SOURCE, ESDB_ARG_UINT, ESDB_ARG_COUNT, ESDB_ARG_DIRECTION}},
    {"page_records",
     2,
     ESDB_SCHED_ADAPTIVE,
     ESDB_REPLY_DIRECT,
     {ESDB_ARG_PAGE, ESDB_ARG_FORMAT}},
    {"subscribe",
     4,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_SUBSCRIPTION,
     {S, ESDB_ARG_PID, ESDB_ARG_SOURCE, ESDB_ARG_FORMAT}},
    {"subscribe",
     5,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_SUBSCRIPTION,
     {S, ESDB_ARG_PID, ESDB_ARG_SOURCE, ESDB_ARG_FORMAT, ESDB_ARG_SHAPE}},
    {"subscribe",
     6,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_SUBSCRIPTION,
     {S, ESDB_ARG_PID, ESDB_ARG_SOURCE, ESDB_ARG_FORMAT, ESDB_ARG_SHAPE,
      ESDB_ARG_CREDIT}},
    {"unsubscribe",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_MEMBER}},
    {"grant",
     3,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_MEMBER, ESDB_ARG_GRANT}},
    {"decode_term",
     1,
     ESDB_SCHED_ADAPTIVE,
     ESDB_REPLY_DIRECT,
     {ESDB_ARG_BINARY}},
    {"cluster_support", 0, ESDB_SCHED_NORMAL, ESDB_REPLY_DIRECT, {0}},
    {"protocol_table", 0, ESDB_SCHED_NORMAL, ESDB_REPLY_DIRECT, {0}},
    {"cluster_open",
     3,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {ESDB_ARG_PATH, ESDB_ARG_OPTIONS, ESDB_ARG_CLUSTER}},
    {"cluster_info", 1, ESDB_SCHED_NORMAL, ESDB_REPLY_DIRECT, {S}},
    {"cluster_members", 1, ESDB_SCHED_DIRTY_IO, ESDB_REPLY_DIRECT, {S}},
    {"cluster_install_copy",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_PATH}},
    {"cluster_add",
     3,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_UINT, ESDB_ARG_ADDRESS}},
    {"cluster_assign",
     3,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_UINT, ESDB_ARG_ROLE}},
    {"cluster_remove",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_UINT}},
    {"cluster_transfer",
     2,
     ESDB_SCHED_DIRTY_IO,
     ESDB_REPLY_DIRECT,
     {S, ESDB_ARG_UINT}},
};

#undef S
#undef REF

const size_t esdb_proto_op_count =
    sizeof(esdb_proto_ops) / sizeof(esdb_proto_ops[0]);

const esdb_proto_op *esdb_proto_op_find(const char *name, unsigned arity)
{
	for (size_t i = 0; i < esdb_proto_op_count; i++)
		if (esdb_proto_ops[i].arity == arity &&
		    strcmp(esdb_proto_ops[i].name, name) == 0)
			return &esdb_proto_ops[i];
	return NULL;
}

static const char *const arg_names[ESDB_ARG_N] = {
    [ESDB_ARG_STORE] = "store",     [ESDB_ARG_REF] = "ref",
    [ESDB_ARG_PID] = "pid",         [ESDB_ARG_PATH] = "path",
    [ESDB_ARG_OPTIONS] = "options", [ESDB_ARG_STREAM_ID] = "stream_id",
    [ESDB_ARG_NAME] = "name",       [ESDB_ARG_EXPECTED] = "expected",
    [ESDB_ARG_EVENTS] = "events",   [ESDB_ARG_PAYLOAD] = "payload",
    [ESDB_ARG_BINARY] = "binary",   [ESDB_ARG_UINT] = "uint",
    [ESDB_ARG_COUNT] = "count",     [ESDB_ARG_DIRECTION] = "direction",
    [ESDB_ARG_AFTER] = "after",     [ESDB_ARG_SOURCE] = "source",
    [ESDB_ARG_FORMAT] = "format",   [ESDB_ARG_SHAPE] = "shape",
    [ESDB_ARG_CREDIT] = "credit",   [ESDB_ARG_MEMBER] = "member",
    [ESDB_ARG_GRANT] = "grant",     [ESDB_ARG_CLUSTER] = "cluster",
    [ESDB_ARG_ADDRESS] = "address", [ESDB_ARG_ROLE] = "role",
    [ESDB_ARG_REQUEST] = "request", [ESDB_ARG_PAGE] = "page",
};

const char *esdb_proto_arg_name(esdb_proto_arg a)
{
	return (unsigned)a < ESDB_ARG_N ? arg_names[a] : "unknown";
}

const char *esdb_proto_sched_name(esdb_proto_sched s)
{
	static const char *const names[ESDB_SCHED_N] = {"normal", "dirty_io",
	                                                "adaptive"};
	return (unsigned)s < ESDB_SCHED_N ? names[s] : "unknown";
}

const char *esdb_proto_reply_name(esdb_proto_reply r)
{
	static const char *const names[ESDB_REPLY_N] = {"direct", "async",
	                                                "subscription"};
	return (unsigned)r < ESDB_REPLY_N ? names[r] : "unknown";
}

/* ---- open options ----------------------------------------------------- */

/* strict: the default's name before it was the default */
static const char *const durability_atoms[] = {"sync", "strict", "no_meta_sync",
                                               "nosync", NULL};
static const esdb_durability durability_values[] = {
    ESDB_DURABILITY_SYNC, ESDB_DURABILITY_SYNC, ESDB_DURABILITY_NO_META_SYNC,
    ESDB_DURABILITY_NOSYNC};

#define U32 UINT32_MAX
#define U64 UINT64_MAX

const esdb_proto_option esdb_proto_options[ESDB_OPT_N] = {
    [ESDB_OPT_DURABILITY] = {"durability", ESDB_OPTK_ATOM, 0, 0,
                             durability_atoms},
    [ESDB_OPT_MAP_SIZE] = {"map_size", ESDB_OPTK_UINT, 0, U64, NULL},
    [ESDB_OPT_CREATE] = {"create", ESDB_OPTK_BOOL, 0, 1, NULL},
    [ESDB_OPT_READONLY] = {"readonly", ESDB_OPTK_BOOL, 0, 1, NULL},
    [ESDB_OPT_FILE_MODE] = {"file_mode", ESDB_OPTK_UINT, 0, 0777, NULL},
    /* shown to a process refused the store (ESDB_ELOCKED) */
    [ESDB_OPT_OWNER] = {"owner", ESDB_OPTK_TEXT, 0, 255, NULL},
    /* bytes of committed events waiting for fan-out (emitter.c) */
    [ESDB_OPT_MAX_FANOUT_BYTES] = {"max_fanout_bytes", ESDB_OPTK_UINT, 1, U64,
                                   NULL},
    [ESDB_OPT_MAX_QUEUE_BYTES] = {"max_queue_bytes", ESDB_OPTK_UINT, 0, U64,
                                  NULL},
    [ESDB_OPT_MAX_READ_BYTES] = {"max_read_bytes", ESDB_OPTK_UINT, 0, U64,
                                 NULL},
    /* limits: 0 keeps the store's (the defaults in a new one) */
    [ESDB_OPT_MAX_STREAM_ID] = {"max_stream_id", ESDB_OPTK_UINT, 0, U32, NULL},
    [ESDB_OPT_MAX_EVENT_TYPE] = {"max_event_type", ESDB_OPTK_UINT, 0, U32,
                                 NULL},
    [ESDB_OPT_MAX_EVENT_BYTES] = {"max_event_bytes", ESDB_OPTK_UINT, 0, U64,
                                  NULL},
    [ESDB_OPT_MAX_APPEND_EVENTS] = {"max_append_events", ESDB_OPTK_UINT, 0, U32,
                                    NULL},
    [ESDB_OPT_MAX_APPEND_BYTES] = {"max_append_bytes", ESDB_OPTK_UINT, 0, U64,
                                   NULL},
    [ESDB_OPT_MAX_KEY] = {"max_key", ESDB_OPTK_UINT, 0, U32, NULL},
};

#undef U32
#undef U64

bool esdb_proto_option_in_bounds(const esdb_proto_option *o, uint64_t v)
{
	return v >= o->min && v <= o->max;
}

int esdb_proto_open_configure(esdb_store *s, const esdb_proto_open *o)
{
	const uint64_t *v = o->value;
	const bool *given = o->given;
	if (given[ESDB_OPT_DURABILITY]) {
		if (v[ESDB_OPT_DURABILITY] >=
		    sizeof(durability_values) / sizeof(durability_values[0]))
			return ESDB_EINVAL;
		esdb_store_set_durability(
		    s, durability_values[v[ESDB_OPT_DURABILITY]]);
	}
	if (given[ESDB_OPT_MAP_SIZE] &&
	    esdb_store_set_mapsize(s, v[ESDB_OPT_MAP_SIZE]))
		return ESDB_EINVAL;
	if (given[ESDB_OPT_CREATE])
		esdb_store_set_create(s, v[ESDB_OPT_CREATE] != 0);
	if (given[ESDB_OPT_READONLY])
		esdb_store_set_readonly(s, v[ESDB_OPT_READONLY] != 0);
	if (given[ESDB_OPT_FILE_MODE] &&
	    esdb_store_set_file_mode(s, (unsigned)v[ESDB_OPT_FILE_MODE]))
		return ESDB_EINVAL;
	if (given[ESDB_OPT_OWNER]) {
		char owner[256];
		size_t len = o->text_len[ESDB_OPT_OWNER];
		if (len >= sizeof(owner) ||
		    memchr(o->text[ESDB_OPT_OWNER], 0, len))
			return ESDB_EINVAL;
		memcpy(owner, o->text[ESDB_OPT_OWNER], len);
		owner[len] = 0;
		if (esdb_store_set_owner(s, owner))
			return ESDB_EINVAL;
	}
	if (given[ESDB_OPT_MAX_QUEUE_BYTES] &&
	    esdb_store_set_queue_bytes(s, v[ESDB_OPT_MAX_QUEUE_BYTES]))
		return ESDB_EINVAL;
	if (given[ESDB_OPT_MAX_READ_BYTES] &&
	    esdb_store_set_read_bytes(s, v[ESDB_OPT_MAX_READ_BYTES]))
		return ESDB_EINVAL;
	/* Limits not given (or 0) keep the store's. */
	esdb_limits l = {0};
	l.max_stream_id = (uint32_t)v[ESDB_OPT_MAX_STREAM_ID];
	l.max_event_type = (uint32_t)v[ESDB_OPT_MAX_EVENT_TYPE];
	l.max_event_bytes = v[ESDB_OPT_MAX_EVENT_BYTES];
	l.max_append_events = (uint32_t)v[ESDB_OPT_MAX_APPEND_EVENTS];
	l.max_append_bytes = v[ESDB_OPT_MAX_APPEND_BYTES];
	l.max_key = (uint32_t)v[ESDB_OPT_MAX_KEY];
	if ((l.max_stream_id || l.max_event_type || l.max_append_events ||
	     l.max_key || l.max_event_bytes || l.max_append_bytes) &&
	    esdb_store_set_limits(s, &l))
		return ESDB_EINVAL;
	return 0;
}

int esdb_proto_open_limit_given(const esdb_proto_open *o)
{
	static const esdb_proto_opt_id limits[] = {
	    ESDB_OPT_MAX_STREAM_ID,    ESDB_OPT_MAX_EVENT_TYPE,
	    ESDB_OPT_MAX_EVENT_BYTES,  ESDB_OPT_MAX_APPEND_EVENTS,
	    ESDB_OPT_MAX_APPEND_BYTES, ESDB_OPT_MAX_KEY,
	};
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		if (o->given[limits[i]])
			return (int)limits[i];
	return -1;
}

void esdb_proto_open_started(esdb_store *s, const esdb_proto_open *o)
{
	if (o->given[ESDB_OPT_MAX_FANOUT_BYTES])
		esdb_emitter_set_queue_bytes(
		    s, o->value[ESDB_OPT_MAX_FANOUT_BYTES]);
}

/* ---- events ----------------------------------------------------------- */

#define NAME_OF(name) #name,
const char *const esdb_proto_event_tuple[] = {ESDB_PROTO_EVENT_TUPLE(NAME_OF)
                                                  NULL};
const char *const esdb_proto_record_fields[] = {
    ESDB_PROTO_RECORD_FIELDS(NAME_OF) NULL};
const char *const esdb_proto_datetime_fields[] = {
    ESDB_PROTO_DATETIME_FIELDS(NAME_OF) NULL};
const char *const esdb_proto_stats_fields[] = {ESDB_PROTO_STATS_FIELDS(NAME_OF)
                                                   NULL};
#undef NAME_OF

/* Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void esdb_proto_date_from_us(uint64_t us, esdb_proto_date *d)
{
	int64_t secs = (int64_t)(us / 1000000u);
	int64_t days = secs / 86400, rem = secs % 86400;
	civil_from_days(days, &d->year, &d->month, &d->day);
	d->hour = (unsigned)(rem / 3600);
	d->minute = (unsigned)(rem % 3600 / 60);
	d->second = (unsigned)(rem % 60);
	d->microsecond = (uint32_t)(us % 1000000u);
}

/* ---- errors ----------------------------------------------------------- */

const char *esdb_proto_where_name(esdb_where_kind kind)
{
	static const char *const kinds[] = {"unknown", "event",    "stream",
	                                    "type",    "snapshot", "checkpoint",
	                                    "index",   "page"};
	unsigned k = (unsigned)kind;
	return k < sizeof(kinds) / sizeof(kinds[0]) ? kinds[k] : kinds[0];
}
