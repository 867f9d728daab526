/* spawn.h: the replica tests' child processes (nodes, the link proxy),
 * started by fork+exec of this very binary. A child forked from the
 * multi-threaded test process and not exec'd can block for ever on a
 * lock another thread held at the fork: a CI run hung that way, the
 * node's first pthread_create waiting on ASan's allocator lock. After
 * exec the child is a fresh process. */
#ifndef ESDB_TEST_SPAWN_H
#define ESDB_TEST_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

/* Start this binary again as child `role`, talking over two pipes: the
 * child reads commands from what *out writes and replies to *in. `keep`
 * lists n_keep more fds of this process the child inherits at the same
 * numbers; no other fd reaches it. */
pid_t spawn_child(const char *role, const int *keep, int n_keep, int *in,
                  int *out);

/* In the exec'd process, before main (a constructor with glibc's
 * argc/argv): whether it was started as `role`, and its pipe ends. */
bool spawn_is_child(int argc, char **argv, const char *role, int *cmd_fd,
                    int *reply_fd);

#endif
