/* cookie.h: reading the distribution cookie from stdin, an inherited fd or
 * an owner-only file; never from the command line (readable in ps). */
#ifndef ESDB_CNODE_COOKIE_H
#define ESDB_CNODE_COOKIE_H

#include <stddef.h>

/* Longest cookie accepted (an atom's length). */
#define CN_COOKIE_MAX 255

/* Read one line from fd (up to a newline or EOF, one byte at a time so
 * nothing after it is consumed) into out (CN_COOKIE_MAX + 1 bytes),
 * without trailing whitespace. Returns 0, or -1 with *why set (empty,
 * too long, unprintable, read error). */
int cn_cookie_read_fd(int fd, char *out, const char **why);

/* Read the cookie from the file at path, which must be a regular file
 * owned by this user with no group or other permission bits (0400 or
 * 0600). Returns 0, or -1 with *why set. */
int cn_cookie_read_file(const char *path, char *out, const char **why);

#endif
