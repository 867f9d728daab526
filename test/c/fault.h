/* fault.h: running build/esdb_fault_child under build/esdb_io_shim.so
 * (test/c/fault/), for the durability tests. $ESDB_FAULT_DIR names the
 * directory holding both (default "build", the plain build's). */
#ifndef ESDB_FAULT_H
#define ESDB_FAULT_H

#include <stdbool.h>
#include <stddef.h>

/* Run the child with `args` (NULL-terminated, after the program name)
 * and the shim preloaded with the NULL-terminated "NAME=VALUE" list
 * `env`. *out receives its stdout (malloc'ed, NUL-terminated; free it).
 * Returns the wait status. REQUIREs that it could run. */
int fault_run(const char *const env[], const char *const args[], char **out);

/* A file's whole content (malloc'ed, NUL-terminated) or NULL. */
char *fault_slurp(const char *path, size_t *len);

/* Whether the fault programs were built (REQUIREd by the tests). */
bool fault_built(void);

#endif
