/* dirs.h: making directories and asking whether one is empty, once for
 * the core and the tools (dirs.c). No LMDB types, so tools may include it. */
#ifndef ESDB_DIRS_H
#define ESDB_DIRS_H

#include <stdbool.h>
#include <sys/types.h>

/* mkdir -p: make `path` and its missing parents with `mode`; each
 * directory made is flushed into its parent (a new directory survives a
 * power loss only then). Existing ones are fine. Returns 0, an errno
 * value, or ESDB_EINVAL for an empty or too long path. */
int esdb__dir_make_all(const char *path, mode_t mode);

/* *empty: `path` holds nothing but "." and ".." (and `ignore`, when not
 * NULL). Returns 0 or opendir's errno. */
int esdb__dir_empty(const char *path, const char *ignore, bool *empty);

#endif
