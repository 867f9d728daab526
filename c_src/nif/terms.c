/* terms.c: building the reply terms the NIF functions share. */
#include "nif.h"

#include "atoms.h"

#include <errno.h>
#include <string.h>

/* A payload as read: the bytes, {term, Bytes} when written as a term,
 * {legacy, Bytes} when stored before encodings were recorded. */
ERL_NIF_TERM nif_make_payload(ErlNifEnv *env, const void *p, size_t len,
                              esdb_encoding enc)
{
	ERL_NIF_TERM bin = nif_make_bin(env, p, len);
	switch (enc) {
	case ESDB_ENCODING_TERM:
		return enif_make_tuple2(env, atom_term, bin);
	case ESDB_ENCODING_LEGACY:
		return enif_make_tuple2(env, atom_legacy, bin);
	default:
		return bin;
	}
}

ERL_NIF_TERM nif_make_bin(ErlNifEnv *env, const void *p, size_t len)
{
	ERL_NIF_TERM t;
	unsigned char *dst = enif_make_new_binary(env, len, &t);
	if (len)
		memcpy(dst, p, len);
	return t;
}

ERL_NIF_TERM nif_make_opt_uuid(ErlNifEnv *env, const uint8_t *id)
{
	return id ? nif_make_bin(env, id, 16) : atom_nil;
}

ERL_NIF_TERM nif_cached_name(ErlNifEnv *env, name_cache *c, const char *p,
                             size_t len)
{
	if (c->have && c->len == len && memcmp(c->buf, p, len) == 0)
		return c->term;
	c->term = nif_make_bin(env, p, len);
	c->have = len <= sizeof(c->buf);
	if (c->have) {
		memcpy(c->buf, p, len);
		c->len = len;
	}
	return c->term;
}

int nif_terms_push(term_list *l, ERL_NIF_TERM t)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		ERL_NIF_TERM *terms =
		    enif_realloc(l->terms, cap * sizeof(*terms));
		if (!terms)
			return ENOMEM;
		l->terms = terms;
		l->cap = cap;
	}
	l->terms[l->n++] = t;
	return 0;
}

ERL_NIF_TERM nif_terms_take(ErlNifEnv *env, term_list *l)
{
	ERL_NIF_TERM list =
	    enif_make_list_from_array(env, l->terms, (unsigned)l->n);
	enif_free(l->terms);
	*l = (term_list){0};
	return list;
}

ERL_NIF_TERM nif_next_term(ErlNifEnv *env, const esdb_read_next *next)
{
	return next->end ? atom_eof : enif_make_uint64(env, next->from);
}
