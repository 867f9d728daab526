/* term.h: Erlang terms in the CLI's output (term.c). */
#ifndef ESDB_CTL_TERM_H
#define ESDB_CTL_TERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Terms above this size are shown as bytes: printing one expands it
 * several times over. */
#define TERM_PRINT_MAX (1u << 20)

/* The payload as Erlang prints it (ei_s_print_term), malloc'ed, or NULL
 * when it is not exactly one well-formed term of the kinds ei prints
 * (checked within `len` first: ei's decoders trust lengths in the data),
 * nests deeper than 100, is compressed, holds a big integer of more than
 * 255 bytes (ei cannot print it safely) or is larger than TERM_PRINT_MAX. */
char *term_text(const void *buf, size_t len);

#endif
