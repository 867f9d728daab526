/* io_shim.c: an LD_PRELOAD shim for the durability tests (built into
 * build/esdb_io_shim.so). It watches a store's data.mdb and, as the
 * environment asks:
 *
 *   ESDB_SHIM_TRACE=FILE      append "fsync PATH" for every fsync/fdatasync
 *                             of any file or directory;
 *   ESDB_SHIM_FAIL_SYNC=N     make the Nth flush of data.mdb fail with EIO
 *                             (without flushing), as a dying disk does;
 *   ESDB_SHIM_FAIL_SYNC_IF=FILE  every flush of data.mdb fails so while
 *                             FILE exists (a test picks the moment);
 *   ESDB_SHIM_UNDO=FILE       power-loss simulation: before each write to
 *                             data.mdb, log its pre-image to FILE; a flush
 *                             of data.mdb (not really done: the page cache
 *                             stands for the disk) empties the log, and a
 *                             write through an O_DSYNC descriptor (opened
 *                             without O_DSYNC) is durable at once. What
 *                             FILE holds is what a power loss may undo;
 *   ESDB_SHIM_CRASH_AT=N      with UNDO: SIGKILL the process just before
 *                             its Nth write or flush of data.mdb;
 *   ESDB_SHIM_HOLD_SYNC=FILE  a flush of data.mdb waits while FILE exists,
 *                             after creating FILE.held: the writer is held
 *                             with the commands it has taken.
 *
 * Undo log record: u64 offset, u64 length, u64 file size before, then the
 * bytes the write replaces that existed (length or fewer). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 4096

enum { UNTRACKED = 0, TRACKED = 1, TRACKED_DSYNC = 2 };

/* Recursive: the trace opens and closes its file under it. */
static pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static unsigned char tracked[MAX_FD];
static int read_fd = -1; /* data.mdb, for pre-images */
static int undo_fd = -1;
static const char *trace_path, *hold_path, *fail_if_path;
static long fail_sync_at, crash_at;
static long syncs, ops;

#define REAL(ret, name, ...)                                                   \
	static ret (*real_##name)(__VA_ARGS__);                                \
	if (!real_##name)                                                      \
		real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);

static long env_long(const char *name)
{
	const char *v = getenv(name);
	return v ? atol(v) : 0;
}

__attribute__((constructor)) static void shim_init(void)
{
	trace_path = getenv("ESDB_SHIM_TRACE");
	hold_path = getenv("ESDB_SHIM_HOLD_SYNC");
	fail_if_path = getenv("ESDB_SHIM_FAIL_SYNC_IF");
	fail_sync_at = env_long("ESDB_SHIM_FAIL_SYNC");
	crash_at = env_long("ESDB_SHIM_CRASH_AT");
	const char *undo = getenv("ESDB_SHIM_UNDO");
	if (undo)
		undo_fd = open(
		    undo, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		    0600);
}

static bool is_data_file(const char *path)
{
	size_t n = path ? strlen(path) : 0;
	return n >= 8 && strcmp(path + n - 8, "data.mdb") == 0 &&
	       (n == 8 || path[n - 9] == '/');
}

static int track(int fd, const char *path, int flags)
{
	if (fd < 0 || fd >= MAX_FD || !is_data_file(path))
		return fd;
	pthread_mutex_lock(&lock);
	tracked[fd] = (flags & O_DSYNC) ? TRACKED_DSYNC : TRACKED;
	if (read_fd < 0 && undo_fd >= 0)
		read_fd = open(path, O_RDONLY | O_CLOEXEC);
	pthread_mutex_unlock(&lock);
	return fd;
}

/* In the power-loss mode O_DSYNC is taken off (the shim does its work). */
static int open_flags(const char *path, int flags)
{
	if (undo_fd >= 0 && is_data_file(path))
		flags &= ~(O_DSYNC | O_SYNC);
	return flags;
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
	REAL(int, openat, int, const char *, int, ...);
	int fd = real_openat(dirfd, path, open_flags(path, flags), mode);
	return track(fd, path, flags);
}

#define MODE_ARG(flags, mode)                                                  \
	mode_t mode = 0;                                                       \
	if (((flags)&O_CREAT) || ((flags)&O_TMPFILE) == O_TMPFILE) {           \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode = va_arg(ap, mode_t);                                     \
		va_end(ap);                                                    \
	}

int open(const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	return do_open(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	return do_open(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	return do_open(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	return do_open(dirfd, path, flags, mode);
}

int close(int fd)
{
	REAL(int, close, int);
	if (fd >= 0 && fd < MAX_FD) {
		pthread_mutex_lock(&lock);
		tracked[fd] = UNTRACKED;
		pthread_mutex_unlock(&lock);
	}
	return real_close(fd);
}

static int kind(int fd)
{
	return fd >= 0 && fd < MAX_FD ? tracked[fd] : UNTRACKED;
}

/* Count an operation on data.mdb; die at the chosen one. Lock held. */
static void count_op(void)
{
	if (crash_at > 0 && ++ops == crash_at)
		kill(getpid(), SIGKILL);
}

static void write_all(int fd, const void *p, size_t n)
{
	REAL(ssize_t, write, int, const void *, size_t);
	const char *c = p;
	while (n > 0) {
		ssize_t w = real_write(fd, c, n);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			abort(); /* a test that cannot log must not pass */
		}
		c += w;
		n -= (size_t)w;
	}
}

/* Log the pre-image of [off, off+len) before it is overwritten. */
static void log_undo(int fd, off_t off, size_t len)
{
	REAL(ssize_t, pread, int, void *, size_t, off_t);
	if (undo_fd < 0 || kind(fd) != TRACKED || len == 0)
		return;
	struct stat st;
	if (fstat(read_fd, &st))
		abort();
	uint64_t hdr[3] = {(uint64_t)off, len, (uint64_t)st.st_size};
	size_t have = off < st.st_size ? (size_t)(st.st_size - off) : 0;
	if (have > len)
		have = len;
	char *pre = malloc(have ? have : 1);
	if (!pre || real_pread(read_fd, pre, have, off) != (ssize_t)have)
		abort();
	write_all(undo_fd, hdr, sizeof(hdr));
	write_all(undo_fd, pre, have);
	free(pre);
}

/* Before a write of len bytes at off (-1: the descriptor's offset). */
static void before_write(int fd, off_t off, size_t len)
{
	if (kind(fd) == UNTRACKED)
		return;
	if (off < 0)
		off = lseek(fd, 0, SEEK_CUR);
	count_op();
	log_undo(fd, off, len);
}

static size_t iov_len(const struct iovec *iov, int n)
{
	size_t len = 0;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, write, int, const void *, size_t);
	pthread_mutex_lock(&lock);
	before_write(fd, -1, n);
	ssize_t r = real_write(fd, buf, n);
	pthread_mutex_unlock(&lock);
	return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
	pthread_mutex_lock(&lock);
	before_write(fd, off, n);
	ssize_t r = real_pwrite(fd, buf, n, off);
	pthread_mutex_unlock(&lock);
	return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(ssize_t, writev, int, const struct iovec *, int);
	pthread_mutex_lock(&lock);
	before_write(fd, -1, iov_len(iov, cnt));
	ssize_t r = real_writev(fd, iov, cnt);
	pthread_mutex_unlock(&lock);
	return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
	pthread_mutex_lock(&lock);
	before_write(fd, off, iov_len(iov, cnt));
	ssize_t r = real_pwritev(fd, iov, cnt, off);
	pthread_mutex_unlock(&lock);
	return r;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return pwritev(fd, iov, cnt, off);
}

static void trace_sync(int fd)
{
	char link[64], path[PATH_MAX], line[PATH_MAX + 16];
	if (!trace_path)
		return;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return;
	path[n] = 0;
	int t =
	    open(trace_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (t < 0)
		abort();
	int len = snprintf(line, sizeof(line), "fsync %s\n", path);
	write_all(t, line, (size_t)len);
	close(t);
}

/* Wait while hold_path exists, saying so in hold_path.held. Not under
 * the lock: other threads go on writing and closing. */
static void hold(void)
{
	char held[PATH_MAX];
	if (access(hold_path, F_OK) != 0)
		return;
	snprintf(held, sizeof(held), "%s.held", hold_path);
	int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	close(fd);
	while (access(hold_path, F_OK) == 0)
		usleep(1000);
}

/* A flush: traced; of data.mdb, maybe held, failed or (simulating)
 * absorbed. */
static int do_sync(int fd, int (*real)(int))
{
	pthread_mutex_lock(&lock);
	bool data = kind(fd) != UNTRACKED;
	pthread_mutex_unlock(&lock);
	if (data && hold_path)
		hold();
	pthread_mutex_lock(&lock);
	int k = kind(fd), rc;
	if (k != UNTRACKED)
		count_op();
	if (k != UNTRACKED &&
	    ((fail_sync_at > 0 && ++syncs == fail_sync_at) ||
	     (fail_if_path && access(fail_if_path, F_OK) == 0))) {
		rc = -1;
		errno = EIO;
	} else if (k != UNTRACKED && undo_fd >= 0) {
		/* everything written so far is now on the "disk" */
		rc = ftruncate(undo_fd, 0);
	} else {
		rc = real(fd);
	}
	int saved = errno;
	if (rc == 0)
		trace_sync(fd);
	pthread_mutex_unlock(&lock);
	errno = saved;
	return rc;
}

int fsync(int fd)
{
	REAL(int, fsync, int);
	return do_sync(fd, real_fsync);
}

int fdatasync(int fd)
{
	REAL(int, fdatasync, int);
	return do_sync(fd, real_fdatasync);
}
