/* json.c: the one JSON writer of the tools; see json.h. */
#include "json.h"

#include <inttypes.h>
#include <string.h>

static void sep(json_writer *w)
{
	if (w->comma)
		putc(',', w->out);
	w->comma = true;
}

void json_open(json_writer *w, char bracket)
{
	sep(w);
	putc(bracket, w->out);
	w->comma = false;
}

void json_close(json_writer *w, char bracket)
{
	putc(bracket, w->out);
	w->comma = true;
}

void json_key(json_writer *w, const char *key)
{
	json_cstr(w, key);
	putc(':', w->out);
	w->comma = false;
}

size_t json_utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint32_t c, min;
	size_t len;

	if (n == 0)
		return 0;
	c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		len = 2, c &= 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, c &= 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

bool json_utf8_valid(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t cp;

	for (size_t i = 0, n; i < len; i += n)
		if (!(n = json_utf8_next(p + i, len - i, &cp)))
			return false;
	return true;
}

void json_str(json_writer *w, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	FILE *f = w->out;
	uint32_t cp;

	sep(w);
	putc('"', f);
	for (size_t i = 0, n; i < len; i += n ? n : 1) {
		n = json_utf8_next(p + i, len - i, &cp);
		if (!n)
			fputs("\\ufffd", f);
		else if (cp == '"' || cp == '\\')
			fprintf(f, "\\%c", (char)cp);
		else if (cp == '\n')
			fputs("\\n", f);
		else if (cp == '\r')
			fputs("\\r", f);
		else if (cp == '\t')
			fputs("\\t", f);
		else if (cp < 0x20)
			fprintf(f, "\\u%04x", (unsigned)cp);
		else
			fwrite(p + i, 1, n, f);
	}
	putc('"', f);
}

void json_cstr(json_writer *w, const char *s)
{
	json_str(w, s, strlen(s));
}

void json_u64(json_writer *w, uint64_t v)
{
	sep(w);
	fprintf(w->out, "%" PRIu64, v);
}

void json_int(json_writer *w, int v)
{
	sep(w);
	fprintf(w->out, "%d", v);
}

void json_double(json_writer *w, double v, int prec)
{
	sep(w);
	if (v != v || v > 1e300 || v < -1e300)
		fputs("null", w->out);
	else
		fprintf(w->out, "%.*f", prec, v);
}

void json_bool(json_writer *w, bool v)
{
	sep(w);
	fputs(v ? "true" : "false", w->out);
}

void json_null(json_writer *w)
{
	sep(w);
	fputs("null", w->out);
}

void json_base64(json_writer *w, const void *buf, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                          "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *p = buf;
	FILE *f = w->out;
	uint32_t v;
	size_t i;

	sep(w);
	putc('"', f);
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)p[i] << 16 | p[i + 1] << 8 | p[i + 2];
		putc(tab[v >> 18], f);
		putc(tab[v >> 12 & 63], f);
		putc(tab[v >> 6 & 63], f);
		putc(tab[v & 63], f);
	}
	if (i < len) {
		v = (uint32_t)p[i] << 16 | (i + 1 < len ? p[i + 1] << 8 : 0);
		putc(tab[v >> 18], f);
		putc(tab[v >> 12 & 63], f);
		putc(i + 1 < len ? tab[v >> 6 & 63] : '=', f);
		putc('=', f);
	}
	putc('"', f);
}
