/* probe.c: connects to a C node as a C node itself and sends one frame no
 * BEAM node would send, then says what came back, for cnode_test.exs:
 *
 *   ESDB_PROBE_COOKIE=... esdb_cnode_probe NODE MODE
 *
 * MODE: big_frame (a length of 2 GiB), non_term (a frame of junk),
 * truncated_binary, huge_arity, fun_request, not_a_message (requests
 * whose terms lie; the C node must answer or drop them), hello (a
 * well-formed request), foreign_pid (hello from a pid of another node:
 * never answered), silent (sends nothing and waits up to 20 s for the
 * C node to close), flood (hello, then 300 reads of 10,000 events of
 * $all, replies never read; prints "flooded" and holds the connection
 * until stdin ends), slow_reader FILE (hello, then 3 reads of stream
 * "big" sent at once and no byte read until the C node has filled the
 * socket and stopped; then each reply's term written to FILE.1..FILE.3,
 * a tick (its answer must be a tick) and hello once more on the same
 * connection; prints "read 3" and the hello's outcome line, or
 * "bad_tick"). Prints one line: "refused" (no connection),
 * "closed" (the C node closed it), "reply TERM" or "no_reply" (nothing
 * within 2 s, the connection still open). */
#include <ei.h>
#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void put32(unsigned char *p, unsigned v)
{
	p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* 'p', {6, Self, '', esdb} and then the message bytes as given. */
static int send_raw(ei_cnode *ec, int fd, const char *msg, size_t len)
{
	ei_x_buff x;
	ei_x_new(&x);
	ei_x_append_buf(&x, "\0\0\0\0p", 5);
	ei_x_encode_version(&x);
	ei_x_encode_tuple_header(&x, 4);
	ei_x_encode_long(&x, 6);
	ei_x_encode_pid(&x, ei_self(ec));
	ei_x_encode_atom(&x, "");
	ei_x_encode_atom(&x, "esdb");
	ei_x_append_buf(&x, msg, (int)len);
	put32((unsigned char *)x.buff, (unsigned)x.index - 4);
	int rc = write(fd, x.buff, (size_t)x.index) == x.index ? 0 : -1;
	ei_x_free(&x);
	return rc;
}

/* {call, From, Ref, <Request bytes>} with the request given raw; From is
 * this node's pid or one on another node. */
static void request(ei_cnode *ec, ei_x_buff *x, const char *req, size_t len,
                    bool foreign)
{
	erlang_ref ref = {
	    .len = 3, .n = {7, 8, 9}, .creation = ei_self(ec)->creation};
	strcpy(ref.node, ei_thisnodename(ec));
	erlang_pid from = *ei_self(ec);
	if (foreign)
		strcpy(from.node, "elsewhere@vm");
	ei_x_new_with_version(x);
	ei_x_encode_tuple_header(x, 4);
	ei_x_encode_atom(x, "call");
	ei_x_encode_pid(x, &from);
	ei_x_encode_ref(x, &ref);
	ei_x_append_buf(x, req, (int)len);
}

/* What the C node did: a reply, a close, or nothing. */
static void outcome(int fd)
{
	ei_x_buff x;
	ei_x_new(&x);
	for (;;) {
		erlang_msg m;
		int rc = ei_xreceive_msg_tmo(fd, &m, &x, 2000);
		if (rc == ERL_TICK)
			continue;
		if (rc == ERL_MSG) {
			char *s = NULL;
			int i = 0, v;
			ei_decode_version(x.buff, &i, &v);
			ei_s_print_term(&s, x.buff, &i);
			printf("reply %s\n", s ? s : "?");
			free(s);
		} else if (erl_errno == ETIMEDOUT) {
			printf("no_reply\n");
		} else {
			printf("closed\n");
		}
		break;
	}
	ei_x_free(&x);
}

/* The next message (ticks skipped) into x; its term's length, or -1. */
static int next_msg(int fd, ei_x_buff *x, unsigned ms)
{
	for (;;) {
		erlang_msg m;
		int rc = ei_xreceive_msg_tmo(fd, &m, x, ms);
		if (rc == ERL_TICK)
			continue;
		if (rc != ERL_MSG)
			return -1;
		int i = 0, v;
		if (ei_decode_version(x->buff, &i, &v) ||
		    ei_skip_term(x->buff, &i))
			return -1;
		return i;
	}
}

/* Bytes waiting in fd's receive queue. */
static int unread(int fd)
{
	int n = 0;
	return ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

/* Replies larger than both socket buffers, read only once the C node
 * has stopped at a full socket: its first reply is left part written
 * for its writer to finish (c_src/cnode/conn.c, send_now). */
static int slow_reader(ei_cnode *ec, int fd, const char *file)
{
	static const char hello[] = {104, 2,   119, 5,  'h', 'e',
	                             'l', 'l', 'o', 97, 1};
	/* {read_stream, <<"big">>, 0, 10000, forward} */
	static const char read_req[] = {
	    104, 5,   119, 11, 'r', 'e', 'a', 'd', '_', 's', 't', 'r', 'e',
	    'a', 'm', 109, 0,  0,   0,   3,   'b', 'i', 'g', 97,  0,   98,
	    0,   0,   39,  16, 119, 7,   'f', 'o', 'r', 'w', 'a', 'r', 'd'};
	ei_x_buff x;
	request(ec, &x, hello, sizeof(hello), false);
	send_raw(ec, fd, x.buff, (size_t)x.index);
	ei_x_free(&x);
	ei_x_new(&x);
	if (next_msg(fd, &x, 10000) < 0)
		return printf("closed\n"), 0;
	ei_x_free(&x);
	for (int i = 0; i < 3; i++) {
		request(ec, &x, read_req, sizeof(read_req), false);
		send_raw(ec, fd, x.buff, (size_t)x.index);
		ei_x_free(&x);
	}
	/* the C node has stopped: bytes arrived, then none for 300 ms */
	int last = 0, still = 0;
	for (int waited = 0; waited < 30000 && still < 300; waited += 20) {
		usleep(20000);
		int n = unread(fd);
		still = n > 0 && n == last ? still + 20 : 0;
		last = n;
	}
	ei_x_new(&x);
	for (int r = 1; r <= 3; r++) {
		int len = next_msg(fd, &x, 30000);
		if (len < 0)
			return printf("closed\n"), 0;
		char path[4096];
		snprintf(path, sizeof(path), "%s.%d", file, r);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(x.buff, 1, (size_t)len, f) != (size_t)len ||
		    fclose(f))
			return 2;
	}
	ei_x_free(&x);
	printf("read 3\n");
	/* a tick: the C node answers 4 zero bytes (all replies are read:
	 * nothing else is on its way) */
	static const unsigned char tick[4];
	unsigned char back[4];
	struct pollfd pf = {fd, POLLIN, 0};
	if (write(fd, tick, 4) != 4 || poll(&pf, 1, 30000) != 1 ||
	    recv(fd, back, 4, MSG_WAITALL) != 4 || memcmp(back, tick, 4))
		return printf("bad_tick\n"), 0;
	request(ec, &x, hello, sizeof(hello), false);
	send_raw(ec, fd, x.buff, (size_t)x.index);
	ei_x_free(&x);
	outcome(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cookie = getenv("ESDB_PROBE_COOKIE");
	if (argc < 3 || argc > 4 || !cookie) {
		fprintf(stderr,
		        "usage: ESDB_PROBE_COOKIE=C %s NODE MODE [FILE]\n",
		        argv[0]);
		return 2;
	}
	const char *mode = argv[2];
	ei_init();
	ei_cnode ec;
	char name[64];
	snprintf(name, sizeof(name), "probe%d", (int)getpid());
	if (ei_connect_init(&ec, name, cookie, (unsigned)getpid() | 4) < 0)
		return 2;
	int fd = ei_connect(&ec, argv[1]);
	if (fd < 0) {
		printf("refused\n");
		return 0;
	}
	ei_x_buff x;
	if (strcmp(mode, "slow_reader") == 0 && argc == 4)
		return slow_reader(&ec, fd, argv[3]);
	if (strcmp(mode, "silent") == 0) {
		struct pollfd pf = {fd, POLLIN, 0};
		char b;
		bool closed = poll(&pf, 1, 20000) == 1 && read(fd, &b, 1) <= 0;
		printf("%s\n", closed ? "closed" : "open");
		return 0;
	}
	if (strcmp(mode, "flood") == 0) {
		static const char hello[] = {104, 2,   119, 5,  'h', 'e',
		                             'l', 'l', 'o', 97, 1};
		/* {read_all, 0, 10000, forward} */
		static const char read_req[] = {
		    104, 4,   119, 8,   'r', 'e', 'a', 'd', '_', 'a',
		    'l', 'l', 97,  0,   98,  0,   0,   39,  16,  119,
		    7,   'f', 'o', 'r', 'w', 'a', 'r', 'd'};
		for (int i = 0; i <= 300; i++) {
			request(&ec, &x, i ? read_req : hello,
			        i ? sizeof(read_req) : sizeof(hello), false);
			send_raw(&ec, fd, x.buff, (size_t)x.index);
			ei_x_free(&x);
		}
		printf("flooded\n");
		fflush(stdout);
		char b[64];
		while (read(STDIN_FILENO, b, sizeof(b)) > 0)
			;
		return 0;
	}
	if (strcmp(mode, "big_frame") == 0) {
		unsigned char hdr[16] = {0x80, 0, 0, 0, 'p', 131, 104, 4};
		if (write(fd, hdr, sizeof(hdr)) != sizeof(hdr))
			return 2;
	} else if (strcmp(mode, "non_term") == 0) {
		unsigned char junk[] = {0,   0, 0, 8, 'p', 131,
		                        200, 1, 2, 3, 4,   5};
		if (write(fd, junk, sizeof(junk)) != sizeof(junk))
			return 2;
	} else if (strcmp(mode, "not_a_message") == 0) {
		const char junk[] = {(char)131, (char)104, 4, (char)255, 1};
		send_raw(&ec, fd, junk, sizeof(junk));
	} else {
		/* Requests whose own term lies, after a valid envelope. */
		static const char trunc_bin[] = {104,  2,   119, 5,   'h',
		                                 'e',  'l', 'l', 'o', 109,
		                                 0x7f, 0,   0,   0,   1};
		static const char arity[] = {105,       (char)255, (char)255,
		                             (char)255, (char)255, 106};
		static const char fun[] = {104, 2,   119, 5,   'h', 'e',
		                           'l', 'l', 'o', 113, 119, 1,
		                           'm', 119, 1,   'f', 97,  0};
		static const char hello[] = {104, 2,   119, 5,  'h', 'e',
		                             'l', 'l', 'o', 97, 1};
		const char *req;
		size_t len;
		if (strcmp(mode, "truncated_binary") == 0)
			req = trunc_bin, len = sizeof(trunc_bin);
		else if (strcmp(mode, "huge_arity") == 0)
			req = arity, len = sizeof(arity);
		else if (strcmp(mode, "fun_request") == 0)
			req = fun, len = sizeof(fun);
		else if (strcmp(mode, "hello") == 0 ||
		         strcmp(mode, "foreign_pid") == 0)
			req = hello, len = sizeof(hello);
		else
			return 2;
		request(&ec, &x, req, len, strcmp(mode, "foreign_pid") == 0);
		send_raw(&ec, fd, x.buff, (size_t)x.index);
		ei_x_free(&x);
	}
	outcome(fd);
	return 0;
}
