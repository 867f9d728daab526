/* json.h: the one JSON writer of the tools (the CLI's --json, the bench's
 * result lines). Strings come out as valid JSON whatever their bytes:
 * quote and backslash escaped, control characters escaped (\n, \r, \t,
 * else \u00XX), valid UTF-8 (non-ASCII included) passed through, and each
 * byte that is not part of valid UTF-8 replaced by \ufffd. */
#ifndef ESDB_JSON_H
#define ESDB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A document being written to `out`. `comma` is set after a value: the
 * next member or element is preceded by a comma. Start with
 * {.out = stdout}. */
typedef struct json_writer {
	FILE *out;
	bool comma;
} json_writer;

/* Open and close an object ('{', '}') or array ('[', ']'). */
void json_open(json_writer *w, char bracket);
void json_close(json_writer *w, char bracket);
/* A member's key (a string, escaped as any); its value follows. */
void json_key(json_writer *w, const char *key);

void json_str(json_writer *w, const void *buf, size_t len);
void json_cstr(json_writer *w, const char *s);
void json_u64(json_writer *w, uint64_t v);
void json_int(json_writer *w, int v);
/* `prec` digits after the point; null for NaN and infinities, which JSON
 * cannot write. */
void json_double(json_writer *w, double v, int prec);
void json_bool(json_writer *w, bool v);
void json_null(json_writer *w);
/* Bytes as a base64 string (RFC 4648, padded). */
void json_base64(json_writer *w, const void *buf, size_t len);

/* Length of the valid UTF-8 sequence at p (n bytes available) and its
 * code point in *cp; 0 for a malformed, truncated, overlong or surrogate
 * sequence. */
size_t json_utf8_next(const uint8_t *p, size_t n, uint32_t *cp);
/* Every byte is part of valid UTF-8. */
bool json_utf8_valid(const void *buf, size_t len);

#endif
