/* ex_esdb_ctl: operator command line over the ExESDB core API (esdb.h). */
#include <ctype.h>
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esdb.h"
#include "json.h"
#include "term.h"

#define PROG       "ex_esdb_ctl"
#define PAGE       1000 /* events or streams asked of the core per call */
#define SHOW_BYTES 200  /* event data shown per event in human output */

/* Exit codes scripts may rely on; the help text documents them. */
enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_NO_STORE = 3,
	EXIT_CORRUPT = 4,
};

enum {
	OPT_AFTER = 1 << 0,
	OPT_COUNT = 1 << 1,
	OPT_FROM = 1 << 2,
	OPT_BACKWARD = 1 << 3,
	OPT_TYPE = 1 << 4,
	OPT_EXPECTED = 1 << 5,
	OPT_FILE = 1 << 6,
	OPT_METADATA_FILE = 1 << 7,
	OPT_CREATE = 1 << 8,
	OPT_DATA_DIR = 1 << 9,
	OPT_JSON = 1 << 10,
	OPT_HELP = 1 << 11,
	OPT_STORE = 1 << 12,
	OPT_STORE_ID = 1 << 13,
	OPT_RAW = 1 << 14,
	OPT_READ_BYTES = 1 << 15,
};

/* Options every command accepts, before or after its name. */
#define OPT_GLOBAL                                                             \
	(OPT_DATA_DIR | OPT_STORE | OPT_STORE_ID | OPT_JSON | OPT_HELP)

/* ExESDB's default store_id, and the longest one it accepts. */
#define DEFAULT_STORE_ID "ex_esdb"
#define MAX_STORE_ID     200

static const struct option_def {
	const char *name;
	unsigned bit;
	bool has_arg;
} option_defs[] = {
    {"after", OPT_AFTER, true},    {"count", OPT_COUNT, true},
    {"from", OPT_FROM, true},      {"backward", OPT_BACKWARD, false},
    {"type", OPT_TYPE, true},      {"expected", OPT_EXPECTED, true},
    {"file", OPT_FILE, true},      {"metadata-file", OPT_METADATA_FILE, true},
    {"create", OPT_CREATE, false}, {"data-dir", OPT_DATA_DIR, true},
    {"json", OPT_JSON, false},     {"help", OPT_HELP, false},
    {"store", OPT_STORE, true},    {"store-id", OPT_STORE_ID, true},
    {"raw", OPT_RAW, false},       {"read-bytes", OPT_READ_BYTES, true},
};

struct command;

struct cli {
	const struct command *cmd;
	const char *dir;      /* the store's own directory */
	const char *data_dir; /* --data-dir: where stores live */
	const char *store_id; /* --store-id: which one under data_dir */
	char dir_buf[4096];   /* data_dir/store_id */
	const char *arg;      /* the command's STREAM, TYPE or DEST */
	unsigned seen;        /* OPT_* bits given */
	bool json;
	const char *after;
	uint64_t count; /* UINT64_MAX: no limit */
	uint64_t from;
	uint64_t read_bytes; /* 0: the core's default */
	const char *type;
	uint64_t expected;
	const char *file;
	const char *metadata_file;
	esdb_store *s;
};

struct command {
	const char *name;
	const char *arg; /* name of its one positional argument, or NULL */
	unsigned opts;   /* options it accepts besides OPT_GLOBAL */
	unsigned need;   /* options it requires */
	int (*run)(struct cli *c);
};

static void usage(FILE *f)
{
	fputs("usage: " PROG " (--store DIR | --data-dir DIR [--store-id ID])\n"
	      "       [--json] COMMAND [ARGS...]\n"
	      "\n"
	      "Inspect and operate an ExESDB event store.\n"
	      "\n"
	      "Commands:\n"
	      "  stats                store statistics\n"
	      "  streams [--after ID] [--count N]\n"
	      "                       streams in id order, after ID\n"
	      "  read STREAM [--from N] [--count N] [--backward]\n"
	      "                       a stream's events from version N\n"
	      "  read-all [--from N] [--count N] [--backward]\n"
	      "                       all events from global position N\n"
	      "  read-type TYPE [--from N] [--count N]\n"
	      "                       events of one type from position N\n"
	      "  (reads also take --read-bytes N: the byte budget of one\n"
	      "   page asked of the store, default 16 MiB)\n"
	      "  append STREAM --type T [--expected E] [--file F]\n"
	      "         [--metadata-file F] [--create]\n"
	      "                       append one event (data from F or\n"
	      "                       stdin); prints version and position\n"
	      "  delete STREAM [--expected E]\n"
	      "                       tombstone a stream\n"
	      "  verify               check every checksum and index\n"
	      "  backup DEST          consistent compacted copy into DEST\n"
	      "\n"
	      "append and delete refuse a store another process (a VM)\n"
	      "has open for writing, naming it; the other commands only\n"
	      "read and run beside it.\n"
	      "\n"
	      "Options:\n"
	      "  --store DIR          the store's own directory (the path\n"
	      "                       ex_esdb:open/2 takes)\n"
	      "  --data-dir DIR       the directory stores live in, as\n"
	      "                       ExESDB's data_dir option: the store\n"
	      "                       is DIR/ID\n"
	      "  --store-id ID        with --data-dir: the store's id\n"
	      "                       (default " DEFAULT_STORE_ID ")\n"
	      "                       One of --store and --data-dir is\n"
	      "                       required; only append --create\n"
	      "                       makes a missing store\n"
	      "  --json               print one JSON document on stdout;\n"
	      "                       a failure adds an \"error\" member\n"
	      "                       (a usage error: {\"error\":{\"name\":\n"
	      "                       \"usage\",\"message\":...}})\n"
	      "  --raw                reads: data as bytes, never as terms\n"
	      "  --count N            at most N results (default: all)\n"
	      "  --expected E         any (default), no_stream,\n"
	      "                       stream_exists or the current version\n"
	      "  --file F             event data file; - is stdin\n"
	      "  --help               this text\n"
	      "\n"
	      "Reads show data as text when it is printable UTF-8, else as\n"
	      "hex, cut to the first 200 bytes; --json gives all of it as\n"
	      "text or base64, named by \"data_encoding\". Data written as\n"
	      "an Erlang term (or stored before encodings were recorded)\n"
	      "is shown as Erlang prints it (\"data_term\" with --json)\n"
	      "when it checks out as one well-formed term;\n"
	      "--raw shows the bytes instead. A stream id or event type\n"
	      "that is not UTF-8 is JSON text with U+FFFD for each bad\n"
	      "byte plus a KEY_base64 member with its exact bytes (e.g.\n"
	      "\"stream_base64\", \"id_base64\").\n"
	      "\n"
	      "Exit status:\n"
	      "  0  success\n"
	      "  1  the operation failed (reason on stderr)\n"
	      "  2  usage error\n"
	      "  3  no store at the path, or it holds no store of this\n"
	      "     format\n"
	      "  4  verify found problems, or the store is too damaged to\n"
	      "     open or to check (verify never dies of a signal)\n",
	      f);
}

/* The last usage error, for --json to print as its document. */
static char usage_msg[512];

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(usage_msg, sizeof(usage_msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\nTry '" PROG " --help'.\n", usage_msg);
	return EXIT_USAGE;
}

/* ---- Text ------------------------------------------------------------- */

/* Characters fit to show as they are: no control codes but whitespace. */
static bool printable(uint32_t cp)
{
	if (cp == '\t' || cp == '\n' || cp == '\r')
		return true;
	return cp >= 0x20 && cp != 0x7f && (cp < 0x80 || cp >= 0xa0);
}

static bool is_text(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		n = json_utf8_next(p + i, len - i, &cp);
		if (!n || !printable(cp))
			return false;
		i += n;
	}
	return true;
}

/* Bytes for a terminal: whitespace escaped so a value stays on its line,
 * anything else unprintable as \xHH. */
static void put_human(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		n = json_utf8_next(p + i, len - i, &cp);
		if (n && cp == '\n')
			fputs("\\n", stdout);
		else if (n && cp == '\r')
			fputs("\\r", stdout);
		else if (n && cp == '\t')
			fputs("\\t", stdout);
		else if (n && printable(cp))
			fwrite(p + i, 1, n, stdout);
		else
			printf("\\x%02x", p[i]);
		i += n ? n : 1;
	}
}

static void uuid_str(const uint8_t *id, char out[37])
{
	esdb_uuid_format(id, out);
	out[36] = '\0';
}

/* ISO-8601 UTC with microseconds, as the store keeps them. */
static void iso_time(uint64_t us, char out[40])
{
	time_t sec = (time_t)(us / 1000000);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%06uZ", (unsigned)(us % 1000000));
}

/* ---- JSON ------------------------------------------------------------- */

/* The --json document on stdout (main points it there). */
static json_writer jw;

/* An id (stream, type): a JSON string, U+FFFD for each byte that is not
 * UTF-8; then, for such an id only, KEY_base64 with its exact bytes. */
static void jid(const char *key, const void *buf, size_t len)
{
	char k[32];

	json_key(&jw, key);
	json_str(&jw, buf, len);
	if (json_utf8_valid(buf, len))
		return;
	snprintf(k, sizeof(k), "%s_base64", key);
	json_key(&jw, k);
	json_base64(&jw, buf, len);
}

/* NAME_size, NAME_encoding ("text" or "base64") and NAME members; for
 * a payload written as an Erlang term, NAME_term as Erlang prints it
 * (when it checks out as one). */
static void jdata(const char *name, const void *buf, size_t len,
                  const char *term)
{
	bool text = is_text(buf, len);
	char key[32];

	snprintf(key, sizeof(key), "%s_size", name);
	json_key(&jw, key);
	json_u64(&jw, len);
	snprintf(key, sizeof(key), "%s_encoding", name);
	json_key(&jw, key);
	json_cstr(&jw, text ? "text" : "base64");
	json_key(&jw, name);
	if (text)
		json_str(&jw, buf, len);
	else
		json_base64(&jw, buf, len);
	if (term) {
		snprintf(key, sizeof(key), "%s_term", name);
		json_key(&jw, key);
		json_cstr(&jw, term);
	}
}

static void juuid(const char *key, const uint8_t *id)
{
	char s[37];

	json_key(&jw, key);
	if (!id) {
		json_null(&jw);
		return;
	}
	uuid_str(id, s);
	json_cstr(&jw, s);
}

/* ---- Store ------------------------------------------------------------ */

/* Print a failure to stderr and, with --json, as the document's "error"
 * member. Returns the exit code to use. */
static int __attribute__((format(printf, 4, 5)))
report(struct cli *c, int code, int rc, const char *fmt, ...)
{
	char what[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s: %s (%s)\n", what, esdb_error_describe(rc),
	        esdb_error_name(rc));
	if (c->json) {
		json_key(&jw, "error");
		json_open(&jw, '{');
		json_key(&jw, "code");
		json_int(&jw, rc);
		json_key(&jw, "name");
		json_cstr(&jw, esdb_error_name(rc));
		json_key(&jw, "message");
		json_cstr(&jw, esdb_error_describe(rc));
		json_key(&jw, "context");
		json_cstr(&jw, what);
		json_close(&jw, '}');
	}
	return code;
}

/* --data-dir pointed at a store's own directory (the old meaning). */
static bool data_dir_is_store(const struct cli *c)
{
	char data[4200];
	if (!c->data_dir)
		return false;
	snprintf(data, sizeof(data), "%s/data.mdb", c->data_dir);
	return access(data, F_OK) == 0;
}

/* Another process (a VM, another ex_esdb_ctl) writes the store: name it,
 * as its subscriptions would never see what this one wrote. */
static int locked(struct cli *c, int rc)
{
	const char *owner = "";
	char pid[32] = "unknown";
	long holder = 0;

	esdb_store_get_lock_holder(c->s, &holder, &owner);
	if (holder)
		snprintf(pid, sizeof(pid), "%ld", holder);
	return report(c, EXIT_FAILED, rc,
	              "%s is open for writing by pid %s%s%s%s; stop it first "
	              "(read-only commands may run beside it)",
	              c->dir, pid, *owner ? " (" : "", owner,
	              *owner ? ")" : "");
}

/* A cluster replica's store (marked in its data file) is written through
 * its cluster only: writing here would make it differ from the other
 * members (the core refuses too, with not_leader). */
static int refuse_replica(struct cli *c)
{
	bool marked = false;
	int rc = esdb_store_get_replica_mark(c->s, &marked);
	if (rc)
		return report(c, EXIT_FAILED, rc, "cannot read the store at %s",
		              c->dir);
	if (!marked)
		return EXIT_OK;
	return report(c, EXIT_FAILED, ESDB_ENOT_LEADER,
	              "%s is a cluster replica's store (cluster mode): write "
	              "through the cluster, not the CLI",
	              c->dir);
}

/* Never creates the store unless append got --create: a mistyped
 * --data-dir must not leave an empty store behind. */
static int open_store(struct cli *c, bool writes)
{
	int rc;

	rc = esdb_store_create(&c->s);
	if (!rc)
		rc = esdb_store_set_create(c->s,
		                           writes && (c->seen & OPT_CREATE));
	if (!rc && c->read_bytes)
		rc = esdb_store_set_read_bytes(c->s, c->read_bytes);
	if (!rc)
		rc = esdb_store_set_readonly(c->s, !writes);
	if (!rc)
		rc = esdb_store_set_owner(c->s, PROG);
	if (rc)
		return report(c, EXIT_FAILED, rc, "cannot set up a store");
	rc = esdb_store_open(c->s, c->dir);
	switch (rc) {
	case 0:
		return writes ? refuse_replica(c) : EXIT_OK;
	case ESDB_ENOTDIR:
		return report(
		    c, EXIT_NO_STORE, rc, "no store at %s%s%s%s", c->dir,
		    c->cmd->opts & OPT_CREATE ? " (--create makes one)" : "",
		    data_dir_is_store(c) ? "; --data-dir is itself a store: "
		                           "use --store "
		                         : "",
		    data_dir_is_store(c) ? c->data_dir : "");
	case ESDB_EFOREIGN:
		return report(c, EXIT_NO_STORE, rc, "%s is not an esdb store",
		              c->dir);
	case ESDB_EFORMAT:
		return report(c, EXIT_NO_STORE, rc,
		              "%s holds a store of another format", c->dir);
	case ESDB_ELOCKED:
		return locked(c, rc);
	default:
		return report(c, EXIT_FAILED, rc, "cannot open the store at %s",
		              c->dir);
	}
}

/* ---- Commands --------------------------------------------------------- */

static int cmd_stats(struct cli *c)
{
	esdb_store_stats st;
	int rc;

	rc = open_store(c, false);
	if (rc)
		return rc;
	rc = esdb_store_get_stats(c->s, &st);
	if (rc)
		return report(c, EXIT_FAILED, rc, "stats");
	if (!c->json) {
		printf("events:      %" PRIu64 "\n"
		       "streams:     %" PRIu64 "\n"
		       "event_types: %" PRIu64 "\n"
		       "snapshots:   %" PRIu64 "\n"
		       "checkpoints: %" PRIu64 "\n"
		       "bytes_used:  %" PRIu64 "\n"
		       "map_size:    %" PRIu64 "\n"
		       "last_txn_id: %" PRIu64 "\n",
		       st.events, st.streams, st.event_types, st.snapshots,
		       st.checkpoints, st.bytes_used, st.map_size,
		       st.last_txn_id);
		return EXIT_OK;
	}
	json_key(&jw, "events");
	json_u64(&jw, st.events);
	json_key(&jw, "streams");
	json_u64(&jw, st.streams);
	json_key(&jw, "event_types");
	json_u64(&jw, st.event_types);
	json_key(&jw, "snapshots");
	json_u64(&jw, st.snapshots);
	json_key(&jw, "checkpoints");
	json_u64(&jw, st.checkpoints);
	json_key(&jw, "bytes_used");
	json_u64(&jw, st.bytes_used);
	json_key(&jw, "map_size");
	json_u64(&jw, st.map_size);
	/* not st.commits: this process's own, always 0 here */
	json_key(&jw, "last_txn_id");
	json_u64(&jw, st.last_txn_id);
	return EXIT_OK;
}

struct lister {
	struct cli *c;
	char *last; /* id of the last stream seen: where the next page starts */
	size_t last_len;
	uint32_t got; /* streams in the current page */
	uint64_t total;
	bool disorder;
};

static int on_stream(void *ctx, const esdb_stream *st)
{
	struct lister *l = ctx;
	size_t n = st->stream_id_len;
	char at[40];
	char *id;
	int cmp;

	/* Ids must ascend in listing order (byte order, but by hash among
	 * long ids sharing a prefix: esdb_name_compare), or paging on from
	 * the last one might not end. */
	if (l->last) {
		cmp = esdb_name_compare(l->last, l->last_len, st->stream_id, n);
		if (cmp > 0 || (!cmp && n == l->last_len &&
		                !memcmp(st->stream_id, l->last, n))) {
			l->disorder = true;
			return ESDB_ECORRUPT;
		}
	}
	id = realloc(l->last, n + 1);
	if (!id)
		return ENOMEM;
	memcpy(id, st->stream_id, n);
	l->last = id;
	l->last_len = n;
	l->got++;
	l->total++;

	iso_time(st->created_us, at);
	if (l->c->json) {
		json_open(&jw, '{');
		jid("id", st->stream_id, n);
		json_key(&jw, "version");
		json_u64(&jw, st->version);
		json_key(&jw, "deleted");
		json_bool(&jw, st->deleted);
		json_key(&jw, "created");
		json_cstr(&jw, at);
		json_close(&jw, '}');
		return 0;
	}
	printf("%10" PRIu64 "  %-27s  ", st->version, at);
	put_human(st->stream_id, n);
	puts(st->deleted ? " (deleted)" : "");
	return 0;
}

static int cmd_streams(struct cli *c)
{
	struct lister l = {.c = c};
	uint64_t left = c->count;
	uint32_t n;
	int rc;

	rc = open_store(c, false);
	if (rc)
		return rc;
	if (c->after) {
		l.last = strdup(c->after);
		if (!l.last)
			return report(c, EXIT_FAILED, ENOMEM, "streams");
		l.last_len = strlen(c->after);
	}
	if (c->json) {
		json_key(&jw, "streams");
		json_open(&jw, '[');
	} else {
		printf("%10s  %-27s  %s\n", "VERSION", "CREATED", "STREAM");
	}
	do {
		n = left < PAGE ? (uint32_t)left : PAGE;
		l.got = 0;
		rc = esdb_stream_list(c->s, l.last, l.last_len, n, on_stream,
		                      &l);
		left -= l.got;
	} while (!rc && l.got == n && left);
	free(l.last);
	if (c->json) {
		json_close(&jw, ']');
		json_key(&jw, "count");
		json_u64(&jw, l.total);
	}
	if (l.disorder)
		return report(c, EXIT_FAILED, rc, "streams: ids out of order");
	if (rc)
		return report(c, EXIT_FAILED, rc, "streams");
	if (!c->json)
		printf("-- %" PRIu64 " stream%s\n", l.total,
		       l.total == 1 ? "" : "s");
	return EXIT_OK;
}

/* The payload as Erlang prints it, if it was written as a term (or
 * stored before encodings were recorded, when the Elixir API wrote
 * terms), --raw was not given and it checks out as one term; else NULL.
 * Free it. */
static char *payload_term(const struct cli *c, const void *buf, size_t len,
                          esdb_encoding enc)
{
	if (enc == ESDB_ENCODING_BYTES || (c->seen & OPT_RAW))
		return NULL;
	return term_text(buf, len);
}

static void human_data(const char *label, const void *buf, size_t len,
                       const char *term)
{
	const uint8_t *p = buf;
	size_t shown = 0, n;
	uint32_t cp;

	if (term) {
		size_t tlen = strlen(term);
		printf("  %s (%zu bytes, erlang term): ", label, len);
		put_human(term, tlen < SHOW_BYTES ? tlen : SHOW_BYTES);
		if (tlen > SHOW_BYTES)
			printf(" ... (%zu more characters)", tlen - SHOW_BYTES);
		putchar('\n');
		return;
	}
	if (is_text(buf, len)) {
		/* Cut at a character boundary. */
		while (shown < len) {
			n = json_utf8_next(p + shown, len - shown, &cp);
			if (shown + n > SHOW_BYTES)
				break;
			shown += n;
		}
		printf("  %s (%zu bytes, text): ", label, len);
		put_human(p, shown);
	} else {
		printf("  %s (%zu bytes, hex): ", label, len);
		for (; shown < len && shown < SHOW_BYTES; shown++)
			printf("%02x", p[shown]);
	}
	if (shown < len)
		printf(" ... (%zu more bytes)", len - shown);
	putchar('\n');
}

static void print_event(const struct cli *c, const esdb_event *ev)
{
	char id[37], at[40];
	char *data = payload_term(c, ev->data, ev->data_len, ev->data_encoding);
	char *meta = payload_term(c, ev->metadata, ev->metadata_len,
	                          ev->metadata_encoding);

	uuid_str(ev->event_id, id);
	iso_time(ev->created_us, at);
	if (c->json) {
		json_open(&jw, '{');
		json_key(&jw, "position");
		json_u64(&jw, ev->position);
		jid("stream", ev->stream_id, ev->stream_id_len);
		json_key(&jw, "version");
		json_u64(&jw, ev->stream_version);
		jid("type", ev->event_type, ev->event_type_len);
		json_key(&jw, "event_id");
		json_cstr(&jw, id);
		json_key(&jw, "created");
		json_cstr(&jw, at);
		json_key(&jw, "created_us");
		json_u64(&jw, ev->created_us);
		jdata("data", ev->data, ev->data_len, data);
		jdata("metadata", ev->metadata, ev->metadata_len, meta);
		juuid("causation_id", ev->causation_id);
		juuid("correlation_id", ev->correlation_id);
		json_close(&jw, '}');
		goto out;
	}
	printf("position %" PRIu64 "  stream ", ev->position);
	put_human(ev->stream_id, ev->stream_id_len);
	printf("  version %" PRIu64 "  type ", ev->stream_version);
	put_human(ev->event_type, ev->event_type_len);
	printf("\n  id %s  created %s\n", id, at);
	human_data("data", ev->data, ev->data_len, data);
	if (ev->metadata_len)
		human_data("metadata", ev->metadata, ev->metadata_len, meta);
	if (ev->causation_id) {
		uuid_str(ev->causation_id, id);
		printf("  causation_id %s\n", id);
	}
	if (ev->correlation_id) {
		uuid_str(ev->correlation_id, id);
		printf("  correlation_id %s\n", id);
	}
out:
	free(data);
	free(meta);
}

enum read_kind { READ_STREAM, READ_ALL, READ_TYPE };

struct pager {
	const struct cli *c;
	esdb_direction dir;
	bool by_version; /* stream reads page by version, others by position */
	uint64_t cursor; /* the last version or position printed, + or - 1 */
	uint64_t total;
	bool disorder;
};

static int on_event(void *ctx, const esdb_event *ev)
{
	struct pager *p = ctx;
	uint64_t key = p->by_version ? ev->stream_version : ev->position;

	/* A key that does not advance would page forever. */
	if (p->dir == ESDB_DIRECTION_FORWARD ? key < p->cursor
	                                     : key > p->cursor || !key) {
		p->disorder = true;
		return ESDB_ECORRUPT;
	}
	p->cursor = p->dir == ESDB_DIRECTION_FORWARD ? key + 1 : key - 1;
	p->total++;
	print_event(p->c, ev);
	return 0;
}

static int read_events(struct cli *c, enum read_kind kind)
{
	struct pager p = {
	    .c = c,
	    .dir = c->seen & OPT_BACKWARD ? ESDB_DIRECTION_BACKWARD
	                                  : ESDB_DIRECTION_FORWARD,
	    .by_version = kind == READ_STREAM,
	    .cursor = c->from,
	};
	uint64_t left = c->count, before;
	esdb_read_next next = {.from = c->from};
	uint32_t n;
	int rc;

	rc = open_store(c, false);
	if (rc)
		return rc;
	if (c->json) {
		if (kind != READ_ALL) {
			jid(kind == READ_STREAM ? "stream" : "type", c->arg,
			    strlen(c->arg));
		}
		json_key(&jw, "events");
		json_open(&jw, '[');
	}
	/* Page on where the store says the next page starts: a page the
	 * byte budget cut short is not the end. */
	do {
		n = left < PAGE ? (uint32_t)left : PAGE;
		before = p.total;
		if (kind == READ_STREAM)
			rc = esdb_stream_read(c->s, c->arg, strlen(c->arg),
			                      next.from, n, p.dir, on_event, &p,
			                      &next);
		else if (kind == READ_ALL)
			rc = esdb_all_read(c->s, next.from, n, p.dir, on_event,
			                   &p, &next);
		else
			rc = esdb_type_read(c->s, c->arg, strlen(c->arg),
			                    next.from, n, on_event, &p, &next);
		left -= p.total - before;
		/* a continuation behind what was printed would page forever */
		if (!rc && !next.end &&
		    (p.dir == ESDB_DIRECTION_FORWARD ? next.from < p.cursor
		                                     : next.from > p.cursor)) {
			p.disorder = true;
			rc = ESDB_ECORRUPT;
		}
	} while (!rc && !next.end && left);
	if (c->json) {
		json_close(&jw, ']');
		json_key(&jw, "count");
		json_u64(&jw, p.total);
	}
	if (p.disorder)
		return report(c, EXIT_FAILED, rc, "%s: events out of order",
		              c->cmd->name);
	if (rc)
		return report(c, EXIT_FAILED, rc, "%s%s%s", c->cmd->name,
		              c->arg ? " " : "", c->arg ? c->arg : "");
	if (!c->json)
		printf("-- %" PRIu64 " event%s\n", p.total,
		       p.total == 1 ? "" : "s");
	return EXIT_OK;
}

static int cmd_read(struct cli *c)
{
	return read_events(c, READ_STREAM);
}

static int cmd_read_all(struct cli *c)
{
	return read_events(c, READ_ALL);
}

static int cmd_read_type(struct cli *c)
{
	return read_events(c, READ_TYPE);
}

struct buf {
	uint8_t *p;
	size_t len;
};

/* Read a whole file (NULL or "-": stdin). Stops once past `cap`: the core
 * rejects such an event anyway, and stdin need not end. */
static int slurp(const char *path, uint64_t cap, struct buf *b)
{
	size_t size = 0;
	ssize_t n;
	uint8_t *p;
	int fd = 0, rc = 0;

	if (path && strcmp(path, "-")) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return errno;
	}
	for (;;) {
		if (b->len == size) {
			size = size ? size * 2 : 65536;
			p = realloc(b->p, size);
			if (!p) {
				rc = ENOMEM;
				break;
			}
			b->p = p;
		}
		n = read(fd, b->p + b->len, size - b->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = errno;
			break;
		}
		b->len += (size_t)n;
		if (!n || b->len > cap)
			break;
	}
	if (fd)
		close(fd);
	return rc;
}

static int random_uuid(uint8_t id[16])
{
	int fd, rc = 0;

	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	/* urandom never answers a read this small short. */
	if (read(fd, id, 16) != 16)
		rc = errno ? errno : EIO;
	close(fd);
	id[6] = (id[6] & 0x0f) | 0x40; /* version 4 */
	id[8] = (id[8] & 0x3f) | 0x80; /* RFC 4122 variant */
	return rc;
}

/* The limits of the store at c->dir without changing it (a read-only
 * open); the defaults a new store gets when there is none. */
static void store_limits(struct cli *c, esdb_limits *lim)
{
	esdb_store *s;
	esdb_limits_init(lim);
	if (esdb_store_create(&s))
		return;
	if (!esdb_store_set_create(s, false) &&
	    !esdb_store_set_readonly(s, true) && !esdb_store_open(s, c->dir))
		esdb_store_get_limits(s, lim);
	esdb_store_close(s);
}

static int cmd_append(struct cli *c)
{
	struct buf data = {0}, meta = {0};
	esdb_new_event ev = {0};
	esdb_result res = {0};
	esdb_limits lim;
	char id[37];
	int rc, code;

	/* Inputs first, so a bad file leaves no store created behind; read
	 * up to the store's own limit (a longer input is refused whole). */
	store_limits(c, &lim);
	rc = slurp(c->file, lim.max_event_bytes, &data);
	if (rc) {
		code = report(c, EXIT_FAILED, rc, "cannot read %s",
		              c->file ? c->file : "stdin");
		goto out;
	}
	if (c->metadata_file) {
		rc = slurp(c->metadata_file, lim.max_event_bytes, &meta);
		if (rc) {
			code = report(c, EXIT_FAILED, rc, "cannot read %s",
			              c->metadata_file);
			goto out;
		}
	}
	rc = random_uuid(ev.event_id);
	if (rc) {
		code = report(c, EXIT_FAILED, rc, "cannot read /dev/urandom");
		goto out;
	}
	code = open_store(c, true);
	if (code)
		goto out;
	ev.event_type = c->type;
	ev.event_type_len = strlen(c->type);
	ev.data = data.p;
	ev.data_len = data.len;
	ev.metadata = meta.p;
	ev.metadata_len = meta.len;
	rc = esdb_stream_append(c->s, c->arg, strlen(c->arg), c->expected, &ev,
	                        1, &res);
	if (rc == ESDB_ELIMIT && res.limit != ESDB_LIMIT_NONE) {
		code =
		    report(c, EXIT_FAILED, rc, "append to %s: %s is %" PRIu64,
		           c->arg, esdb_limit_name(res.limit), res.limit_max);
		goto out;
	}
	if (rc) {
		code = report(c, EXIT_FAILED, rc, "append to %s", c->arg);
		goto out;
	}
	uuid_str(ev.event_id, id);
	if (c->json) {
		jid("stream", c->arg, strlen(c->arg));
		json_key(&jw, "version");
		json_u64(&jw, res.version);
		json_key(&jw, "position");
		json_u64(&jw, res.position);
		json_key(&jw, "event_id");
		json_cstr(&jw, id);
	} else {
		printf("appended %s to %s: version %" PRIu64
		       ", position %" PRIu64 "\n",
		       id, c->arg, res.version, res.position);
	}
out:
	free(data.p);
	free(meta.p);
	return code;
}

static int cmd_delete(struct cli *c)
{
	int rc;

	rc = open_store(c, true);
	if (rc)
		return rc;
	rc = esdb_stream_delete(c->s, c->arg, strlen(c->arg), c->expected);
	if (rc)
		return report(c, EXIT_FAILED, rc, "delete %s", c->arg);
	if (c->json) {
		jid("stream", c->arg, strlen(c->arg));
		json_key(&jw, "deleted");
		json_bool(&jw, true);
	} else {
		printf("deleted %s\n", c->arg);
	}
	return EXIT_OK;
}

static void on_problem(void *ctx, const char *msg)
{
	const struct cli *c = ctx;

	if (c->json)
		json_cstr(&jw, msg);
	else
		printf("problem: %s\n", msg);
}

static uintptr_t fault_map_start, fault_map_end;
static int fault_fd = -1;

/* Where data.mdb is mapped in this process (left 0 if not found), so
 * that a fault can name the page it hit. */
static void find_data_map(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	if (!f)
		return;
	while (!fault_map_start && fgets(line, sizeof(line), f)) {
		unsigned long s, e, off;
		size_t n = strcspn(line, "\n");
		line[n] = 0;
		if (sscanf(line, "%lx-%lx %*s %lx", &s, &e, &off) == 3 &&
		    off == 0 && n >= 9 &&
		    strcmp(line + n - 9, "/data.mdb") == 0) {
			fault_map_start = s;
			fault_map_end = e;
		}
	}
	fclose(f);
}

/* verify in this process: open, check, print. */
static int verify_here(struct cli *c)
{
	uint64_t problems = 0;
	bool corrupt;
	int rc;

	rc = esdb_store_create(&c->s);
	if (!rc)
		rc = esdb_store_set_create(c->s, false);
	if (!rc)
		rc = esdb_store_set_readonly(c->s, true);
	if (!rc)
		rc = esdb_store_open(c->s, c->dir);
	/* A store that cannot even be opened is corrupt, unless it is
	 * missing or out of reach. */
	switch (rc) {
	case 0:
		break;
	case ESDB_ENOTDIR:
		return report(c, EXIT_NO_STORE, rc, "no store at %s", c->dir);
	case EACCES:
	case ENOMEM:
	case EMFILE:
	case ENFILE:
	case ESDB_EBUSY:
	case ESDB_ELOCKED:
		return report(c, EXIT_FAILED, rc, "cannot open the store at %s",
		              c->dir);
	default:
		return report(c, EXIT_CORRUPT, rc,
		              "cannot open the store at %s: it is corrupt",
		              c->dir);
	}
	find_data_map();
	if (c->json) {
		json_key(&jw, "problems");
		json_open(&jw, '[');
	}
	rc = esdb_store_verify(c->s, on_problem, c, &problems);
	corrupt = rc == ESDB_ECORRUPT || rc == MDB_CORRUPTED ||
	          rc == MDB_PAGE_NOTFOUND || problems;
	if (c->json) {
		json_close(&jw, ']');
		json_key(&jw, "problem_count");
		json_u64(&jw, problems);
		json_key(&jw, "ok");
		json_bool(&jw, !rc && !corrupt);
	}
	if (rc && !corrupt)
		return report(c, EXIT_FAILED, rc, "verify");
	if (!c->json) {
		if (corrupt)
			printf("verify: %" PRIu64 " problem%s found\n",
			       problems, problems == 1 ? "" : "s");
		else
			puts("verify: ok");
	}
	return corrupt ? EXIT_CORRUPT : EXIT_OK;
}

/* In the child: say which page the fault hit (UINT64_MAX: an address
 * outside data.mdb, e.g. a garbage page number), then die of the
 * signal. */
static void on_fault(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	uintptr_t a = (uintptr_t)si->si_addr;
	uint64_t page = a >= fault_map_start && a < fault_map_end
	                    ? (a - fault_map_start) / 4096
	                    : UINT64_MAX;
	if (write(fault_fd, &page, sizeof(page)) < 0) {
		/* nothing more to say */
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* LMDB trusts the page headers it walks; a garbage branch page can make
 * it fault where no check of ours runs. So verify runs in a child: if
 * the child dies of a signal, the store is reported corrupt (exit 4),
 * with the page that faulted, and verify itself never dies of one. */
static int cmd_verify(struct cli *c)
{
	int fds[2];
	fflush(stdout);
	fflush(stderr);
	if (pipe(fds))
		return verify_here(c);
	FILE *out = tmpfile();
	pid_t pid = out ? fork() : -1;
	if (pid < 0) {
		if (out)
			fclose(out);
		close(fds[0]);
		close(fds[1]);
		return verify_here(c);
	}
	if (pid == 0) {
		close(fds[0]);
		fault_fd = fds[1];
		dup2(fileno(out), STDOUT_FILENO);
		struct sigaction sa = {0};
		sa.sa_sigaction = on_fault;
		sa.sa_flags = SA_SIGINFO;
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		int code = verify_here(c);
		fflush(stdout);
		_exit(code);
	}
	close(fds[1]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	uint64_t page = UINT64_MAX;
	bool said = read(fds[0], &page, sizeof(page)) == sizeof(page);
	close(fds[0]);
	if (WIFEXITED(status)) {
		/* the child's output is whole: pass it on */
		char buf[65536];
		size_t n;
		rewind(out);
		while ((n = fread(buf, 1, sizeof(buf), out)) > 0)
			fwrite(buf, 1, n, stdout);
		fclose(out);
		/* its JSON members went to stdout; ours must follow them */
		if (c->json)
			jw.comma = true;
		return WEXITSTATUS(status);
	}
	fclose(out); /* partial output of a dead check is dropped */
	int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	char where[80] = "";
	if (said && page != UINT64_MAX)
		snprintf(where, sizeof(where), " reading page %" PRIu64, page);
	else if (said)
		snprintf(where, sizeof(where),
		         " following a page number outside data.mdb");
	fprintf(stderr,
	        PROG ": verify: the check died of signal %d%s: LMDB walked a "
	             "corrupt page; the store is corrupt\n",
	        sig, where);
	if (c->json) {
		json_key(&jw, "ok");
		json_bool(&jw, false);
		json_key(&jw, "crashed_signal");
		json_int(&jw, sig);
		json_key(&jw, "crashed_page");
		if (said && page != UINT64_MAX)
			json_u64(&jw, page);
		else
			json_null(&jw);
	} else {
		printf("verify: the check died of signal %d%s: store corrupt\n",
		       sig, where);
	}
	return EXIT_CORRUPT;
}

static int cmd_backup(struct cli *c)
{
	int rc;

	rc = open_store(c, false);
	if (rc)
		return rc;
	rc = esdb_store_backup(c->s, c->arg);
	if (rc)
		return report(c, EXIT_FAILED, rc, "backup to %s", c->arg);
	if (c->json) {
		json_key(&jw, "backup");
		json_cstr(&jw, c->arg);
	} else {
		printf("backup of %s written to %s\n", c->dir, c->arg);
	}
	return EXIT_OK;
}

static const struct command commands[] = {
    {"stats", NULL, 0, 0, cmd_stats},
    {"streams", NULL, OPT_AFTER | OPT_COUNT, 0, cmd_streams},
    {"read", "STREAM",
     OPT_FROM | OPT_COUNT | OPT_BACKWARD | OPT_RAW | OPT_READ_BYTES, 0,
     cmd_read},
    {"read-all", NULL,
     OPT_FROM | OPT_COUNT | OPT_BACKWARD | OPT_RAW | OPT_READ_BYTES, 0,
     cmd_read_all},
    {"read-type", "TYPE", OPT_FROM | OPT_COUNT | OPT_RAW | OPT_READ_BYTES, 0,
     cmd_read_type},
    {"append", "STREAM",
     OPT_TYPE | OPT_EXPECTED | OPT_FILE | OPT_METADATA_FILE | OPT_CREATE,
     OPT_TYPE, cmd_append},
    {"delete", "STREAM", OPT_EXPECTED, 0, cmd_delete},
    {"verify", NULL, 0, 0, cmd_verify},
    {"backup", "DEST", 0, 0, cmd_backup},
};

/* ---- Arguments -------------------------------------------------------- */

/* The whole string as a decimal number: strtoull alone would accept
 * signs, blanks and trailing junk. */
static bool parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_expected(const char *s, uint64_t *out)
{
	if (!strcmp(s, "any"))
		*out = ESDB_EXPECT_ANY;
	else if (!strcmp(s, "no_stream"))
		*out = ESDB_EXPECT_NO_STREAM;
	else if (!strcmp(s, "stream_exists"))
		*out = ESDB_EXPECT_STREAM_EXISTS;
	else
		/* The top values are the sentinels, not versions. */
		return parse_u64(s, out) && *out < ESDB_EXPECT_STREAM_EXISTS;
	return true;
}

static const struct option_def *find_option(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]); i++)
		if (strlen(option_defs[i].name) == len &&
		    !strncmp(option_defs[i].name, name, len))
			return &option_defs[i];
	return NULL;
}

static const char *option_name(unsigned bit)
{
	size_t i;

	for (i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]); i++)
		if (option_defs[i].bit == bit)
			return option_defs[i].name;
	return "?";
}

static int set_option(struct cli *c, const struct option_def *o,
                      const char *val)
{
	/* A repeated flag is harmless; a repeated value is ambiguous. */
	if ((c->seen & o->bit) && o->has_arg)
		return usage_error("--%s given twice", o->name);
	c->seen |= o->bit;
	switch (o->bit) {
	case OPT_STORE:
		c->dir = val;
		break;
	case OPT_DATA_DIR:
		c->data_dir = val;
		break;
	case OPT_STORE_ID:
		c->store_id = val;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_HELP:
		usage(stdout);
		exit(EXIT_OK);
	case OPT_AFTER:
		c->after = val;
		break;
	case OPT_COUNT:
		if (!parse_u64(val, &c->count) || !c->count)
			return usage_error("--count wants a positive number, "
			                   "not '%s'",
			                   val);
		break;
	case OPT_FROM:
		if (!parse_u64(val, &c->from))
			return usage_error("--from wants a number, not '%s'",
			                   val);
		break;
	case OPT_READ_BYTES:
		if (!parse_u64(val, &c->read_bytes) || !c->read_bytes)
			return usage_error("--read-bytes wants a positive "
			                   "number, not '%s'",
			                   val);
		break;
	case OPT_TYPE:
		c->type = val;
		break;
	case OPT_EXPECTED:
		if (!parse_expected(val, &c->expected))
			return usage_error("--expected wants any, no_stream, "
			                   "stream_exists or a version, "
			                   "not '%s'",
			                   val);
		break;
	case OPT_FILE:
		c->file = val;
		break;
	case OPT_METADATA_FILE:
		c->metadata_file = val;
		break;
	}
	return EXIT_OK;
}

static int set_positional(struct cli *c, const char *a)
{
	size_t i;

	if (c->cmd) {
		if (!c->cmd->arg || c->arg)
			return usage_error("%s: unexpected argument '%s'",
			                   c->cmd->name, a);
		c->arg = a;
		return EXIT_OK;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (!strcmp(a, commands[i].name)) {
			c->cmd = &commands[i];
			return EXIT_OK;
		}
	}
	return usage_error("unknown command '%s'", a);
}

static int parse_option(struct cli *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i] + 2, *eq = strchr(a, '='), *val = NULL;
	const struct option_def *o;

	o = find_option(a, eq ? (size_t)(eq - a) : strlen(a));
	if (!o)
		return usage_error("unknown option '%s'", argv[*i]);
	if (o->has_arg && eq) {
		val = eq + 1;
	} else if (o->has_arg) {
		if (*i + 1 >= argc)
			return usage_error("--%s needs a value", o->name);
		val = argv[++*i];
	} else if (eq) {
		return usage_error("--%s takes no value", o->name);
	}
	return set_option(c, o, val);
}

/* A store id as ExESDB accepts it: a plain name, never a path. */
static bool valid_store_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > MAX_STORE_ID || id[0] == '.' || id[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && !strchr("_.-", id[i]))
			return false;
	return true;
}

/* c->dir from --store DIR, or from --data-dir DIR [--store-id ID] as
 * ExESDB resolves data_dir and store_id: DIR/ID. */
static int store_path(struct cli *c)
{
	const char *id = c->store_id ? c->store_id : DEFAULT_STORE_ID;

	if ((c->seen & OPT_STORE) && (c->seen & (OPT_DATA_DIR | OPT_STORE_ID)))
		return usage_error("--store DIR names the store itself; give "
		                   "it or --data-dir DIR [--store-id ID]");
	if ((c->seen & OPT_STORE_ID) && !(c->seen & OPT_DATA_DIR))
		return usage_error("--store-id needs --data-dir");
	if (c->seen & OPT_DATA_DIR) {
		if (!*c->data_dir)
			return usage_error("--data-dir needs a directory");
		if (!valid_store_id(id))
			return usage_error("--store-id '%s' is not a store id: "
			                   "letters, digits, _, . and -, not "
			                   "first . or -",
			                   id);
		if (snprintf(c->dir_buf, sizeof(c->dir_buf), "%s/%s",
		             c->data_dir, id) >= (int)sizeof(c->dir_buf))
			return usage_error("--data-dir is too long");
		c->dir = c->dir_buf;
	}
	if (!c->dir || !*c->dir)
		return usage_error("--store DIR or --data-dir DIR is required");
	return EXIT_OK;
}

/* Options may come before or after the command; "--" ends them. */
static int parse(int argc, char **argv, struct cli *c)
{
	bool options = true;
	unsigned bad;
	int i, code;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 1; i < argc; i++) {
		if (options && !strcmp(argv[i], "--"))
			options = false;
		else if (options && !strcmp(argv[i], "-h"))
			code = set_option(c, find_option("help", 4), NULL);
		else if (options && !strncmp(argv[i], "--", 2))
			code = parse_option(c, argc, argv, &i);
		else
			code = set_positional(c, argv[i]);
		if (code)
			return code;
	}
	if (!c->cmd)
		return usage_error("no command given");
	if ((code = store_path(c)))
		return code;
	bad = c->seen & ~(c->cmd->opts | OPT_GLOBAL);
	if (bad)
		return usage_error("%s does not take --%s", c->cmd->name,
		                   option_name(bad & -bad));
	bad = c->cmd->need & ~c->seen;
	if (bad)
		return usage_error("%s needs --%s", c->cmd->name,
		                   option_name(bad & -bad));
	if (c->cmd->arg && !c->arg)
		return usage_error("%s needs %s", c->cmd->name, c->cmd->arg);
	if (c->metadata_file && !strcmp(c->metadata_file, "-") &&
	    (!c->file || !strcmp(c->file, "-")))
		return usage_error("data and metadata cannot both come from "
		                   "stdin");
	if (!(c->seen & OPT_FROM) && (c->seen & OPT_BACKWARD))
		c->from = UINT64_MAX;
	return EXIT_OK;
}

/* --json among the options (before "--"), however the rest parsed. */
static bool asks_for_json(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			return true;
	return false;
}

/* A usage error with --json: still one JSON document on stdout. */
static void usage_error_as_json(void)
{
	json_open(&jw, '{');
	json_key(&jw, "error");
	json_open(&jw, '{');
	json_key(&jw, "name");
	json_cstr(&jw, "usage");
	json_key(&jw, "message");
	json_cstr(&jw, usage_msg);
	json_close(&jw, '}');
	json_close(&jw, '}');
	putchar('\n');
}

int main(int argc, char **argv)
{
	struct cli c = {.count = UINT64_MAX, .expected = ESDB_EXPECT_ANY};
	int code;

	jw.out = stdout;
	code = parse(argc, argv, &c);
	if (code) {
		if (code == EXIT_USAGE && usage_msg[0] &&
		    asks_for_json(argc, argv))
			usage_error_as_json();
		return code;
	}
	if (c.json)
		json_open(&jw, '{');
	code = c.cmd->run(&c);
	esdb_store_close(c.s);
	if (c.json) {
		json_close(&jw, '}');
		putchar('\n');
	}
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write output\n");
		if (!code)
			code = EXIT_FAILED;
	}
	return code;
}
