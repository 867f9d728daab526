/* bind_shim.c: an LD_PRELOAD shim for the chaos partitions (built into
 * build/esdb_bind_shim.so). With ESDB_BIND_ADDR=A.B.C.D (a loopback
 * address: all of 127.0.0.0/8 is local), every TCP connect to a loopback
 * address from a socket not bound yet is made from that address, so
 * packet filter rules can tell the nodes of one machine apart by source
 * address: BEAM distribution and raft (libuv) connect from an unbound
 * socket and would all use 127.0.0.1. Connections to epmd (port 4369)
 * are left alone. Nothing else changes; without the variable the shim
 * does nothing. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

static int unbound_tcp(int fd)
{
	int type = 0;
	socklen_t tl = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) ||
	    type != SOCK_STREAM)
		return 0;
	struct sockaddr_in self;
	socklen_t sl = sizeof(self);
	if (getsockname(fd, (struct sockaddr *)&self, &sl) ||
	    self.sin_family != AF_INET)
		return 0;
	return self.sin_port == 0 && self.sin_addr.s_addr == htonl(INADDR_ANY);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	static connect_fn real;
	if (!real)
		real = (connect_fn)dlsym(RTLD_NEXT, "connect");
	const char *bind_to = getenv("ESDB_BIND_ADDR");
	if (bind_to && addr && addr->sa_family == AF_INET &&
	    len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *to = (const struct sockaddr_in *)addr;
		int loopback = (ntohl(to->sin_addr.s_addr) >> 24) == 127;
		if (loopback && ntohs(to->sin_port) != 4369 &&
		    unbound_tcp(fd)) {
			struct sockaddr_in from;
			memset(&from, 0, sizeof(from));
			from.sin_family = AF_INET;
			if (inet_pton(AF_INET, bind_to, &from.sin_addr) == 1) {
				int saved = errno;
				/* a failed bind leaves the socket as it was */
				if (bind(fd, (struct sockaddr *)&from,
				         sizeof(from)))
					errno = saved;
			}
		}
	}
	return real(fd, addr, len);
}
