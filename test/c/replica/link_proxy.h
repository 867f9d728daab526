/* link_proxy.h: network partitions between replica processes without
 * root. Every node's advertised raft address is a front port of one proxy
 * process; the node itself listens on a back port. Raft's TCP transport
 * opens one connection per sender and receiver and starts it with a
 * handshake naming the sender's id, so the proxy knows each connection's
 * link (sender -> receiver) and can pass it, drop its bytes (a blackhole:
 * the sender's writes succeed, nothing arrives) or reset it. Changing a
 * link's mode closes the connections it carries, so no stream is left
 * half-forwarded; senders reconnect and meet the new mode.
 *
 * A separate process: a node started by the test must not inherit the
 * proxy's sockets (a closed connection would stay open in the child). */
#ifndef ESDB_TEST_LINK_PROXY_H
#define ESDB_TEST_LINK_PROXY_H

#include <stdint.h>
#include <sys/types.h>

#define LINK_PASS  0
#define LINK_DROP  1 /* accept, read and discard */
#define LINK_RESET 2 /* close every connection at once */

#define LINK_PROXY_MAX 8

typedef struct link_proxy {
	pid_t pid;
	int cmd_fd, reply_fd;
	int n;
} link_proxy;

/* Listen on front[i] ("ip:port") for node i, whose raft listens on
 * back[i] and whose id is ids[i]; every link passes. REQUIREs success. */
void link_proxy_start(link_proxy *p, int n, const uint64_t *ids,
                      char (*front)[32], char (*back)[32]);
/* Set the mode of the link from node `from` to node `to` (the
 * connections `from` opens to `to`). Returns once the proxy applied it. */
void link_proxy_set(link_proxy *p, int from, int to, int mode);
/* Both directions between a and b. */
void link_proxy_set_both(link_proxy *p, int a, int b, int mode);
/* Every link passes again. */
void link_proxy_heal(link_proxy *p);
/* Connections the proxy accepted, and bytes it dropped, so far. */
void link_proxy_counts(link_proxy *p, uint64_t *accepted, uint64_t *dropped);
void link_proxy_stop(link_proxy *p);

#endif
