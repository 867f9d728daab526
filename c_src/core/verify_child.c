/* verify_child.c: esdb_store_verify in a forked child, so that verify never
 * dies of a signal.
 *
 * LMDB trusts its page headers: a garbage page number in a branch page
 * makes it read outside the map before any check of ours runs. verify is
 * what people run when they suspect exactly that, so its checks run in a
 * child. The parent begins the read transaction and keeps it: the child
 * reads the same pages through its copy of the mapping and never touches
 * LMDB's reader table, so a child that dies leaves nothing pinned. The
 * child only reads and writes to a pipe, then _exits.
 *
 * Pipe records: 'P' u16 length + message (a problem), 'F' u64 address
 * (the fault), 'D' u64 problems + i32 rc (done). */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int child_fd = -1;

static void put_all(const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(child_fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(99);
		p += n;
		len -= (size_t)n;
	}
}

static void child_report(void *ctx, const char *msg)
{
	(void)ctx;
	size_t len = strlen(msg);
	uint16_t l = len > UINT16_MAX ? UINT16_MAX : (uint16_t)len;
	put_all("P", 1);
	put_all(&l, 2);
	put_all(msg, l);
}

/* Async-signal-safe: one write, then die of the signal. */
static void child_fault(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	char rec[9] = {'F'};
	uint64_t a = (uint64_t)(uintptr_t)si->si_addr;
	memcpy(rec + 1, &a, 8);
	if (write(child_fd, rec, sizeof(rec)) < 0) {
		/* nothing more to say */
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static _Noreturn void child_main(esdb_store *s, MDB_txn *txn, int fd)
{
	child_fd = fd;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = child_fault;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	uint64_t problems = 0;
	int32_t rc = esdb__verify_txn(s, txn, child_report, NULL, &problems);
	char rec[13] = {'D'};
	memcpy(rec + 1, &problems, 8);
	memcpy(rec + 9, &rc, 4);
	put_all(rec, sizeof(rec));
	/* The parent reads the outcome from the pipe. Ending by SIGKILL runs
	 * no exit handler or leak checker over memory that is the parent's
	 * copy (valgrind would report the writer thread's buffers lost). */
	kill(getpid(), SIGKILL);
	_exit(0);
}

static bool get_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

int esdb_store_verify_isolated(esdb_store *s,
                               void (*report)(void *ctx, const char *msg),
                               void *ctx, uint64_t *problems, esdb_where *fault)
{
	MDB_txn *txn;
	int fds[2];
	if (fault)
		memset(fault, 0, sizeof(*fault));
	if (problems)
		*problems = 0;
	int rc = s && s->is_open ? esdb__map_headroom(s, true) : 0;
	if (rc || (rc = esdb__read_begin(s, &txn)))
		return rc;
	pid_t pid = -1;
	if (pipe(fds) == 0) {
		pid = fork();
		if (pid == 0) {
			close(fds[0]);
			child_main(s, txn, fds[1]);
		}
		close(fds[1]);
		if (pid < 0)
			close(fds[0]);
	}
	if (pid < 0) {
		/* No child to be had (no memory, no processes): check here,
		 * as esdb_store_verify does, rather than not at all. */
		rc = esdb__verify_txn(s, txn, report, ctx, problems);
		esdb__read_end(s, txn);
		return rc;
	}

	/* Problems are reported here, in the caller, as they arrive. */
	uint64_t found = 0, addr = 0;
	int32_t child_rc = 0;
	bool done = false, faulted = false;
	char tag;
	while (!done && get_all(fds[0], &tag, 1)) {
		if (tag == 'P') {
			uint16_t l;
			char msg[UINT16_MAX + 1];
			if (!get_all(fds[0], &l, 2) || !get_all(fds[0], msg, l))
				break;
			msg[l] = 0;
			if (report)
				report(ctx, msg);
		} else if (tag == 'F') {
			faulted = get_all(fds[0], &addr, 8);
		} else if (tag == 'D') {
			done = get_all(fds[0], &found, 8) &&
			       get_all(fds[0], &child_rc, 4);
		} else {
			break;
		}
	}
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	uint64_t page;
	if (faulted && fault && esdb__page_of(s->env, (uintptr_t)addr, &page)) {
		fault->kind = ESDB_WHERE_PAGE;
		fault->number = page;
	}
	esdb__read_end(s, txn);
	if (!done) {
		/* The check died: LMDB walked a page no check could reach. */
		if (report)
			report(ctx, faulted ? "the check died of a fault: LMDB "
			                      "walked a corrupt page"
			                    : "the check died");
		found++;
		child_rc = ESDB_ECORRUPT;
	}
	if (problems)
		*problems = found;
	return child_rc ? child_rc : (found ? ESDB_ECORRUPT : 0);
}
