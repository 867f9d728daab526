/* lock.c: one writing process per store. A writer holds an exclusive
 * flock on <dir>/writer.lock from open to close; LMDB would let a second
 * process write, but the first one's emitter and subscriptions would
 * never see those commits. The file names its holder (pid, owner label)
 * for the message of whoever is refused. Read-only opens take no lock.
 *
 * The file stays: unlinking a lock file races with a process that opened
 * it just before and would lock a file nobody else sees. Only a creation
 * that failed removes it, while holding it, as it removes the store. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int esdb_store_set_owner(esdb_store *s, const char *owner)
{
	if (!s || !owner || strlen(owner) >= sizeof(s->owner) ||
	    strchr(owner, '\n'))
		return ESDB_EINVAL;
	if (s->is_open)
		return ESDB_EBUSY;
	strcpy(s->owner, owner);
	return 0;
}

int esdb_store_get_lock_holder(const esdb_store *s, long *pid,
                               const char **owner)
{
	if (!s || !s->holder_known)
		return ESDB_ENOTFOUND;
	if (pid)
		*pid = s->holder_pid;
	if (owner)
		*owner = s->holder_owner;
	return 0;
}

/* Read "pid=N\nowner=TEXT\n" as the holder wrote it. A holder between
 * its flock and its write leaves the file empty or stale: pid 0. */
static void read_holder(esdb_store *s, int fd)
{
	char buf[16 + sizeof(s->owner) + 16];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	s->holder_known = true;
	s->holder_pid = 0;
	s->holder_owner[0] = 0;
	if (n <= 0)
		return;
	buf[n] = 0;
	char *owner = strstr(buf, "\nowner=");
	if (!strncmp(buf, "pid=", 4))
		s->holder_pid = strtol(buf + 4, NULL, 10);
	if (owner) {
		owner += 7;
		size_t len = strcspn(owner, "\n");
		if (len >= sizeof(s->holder_owner))
			len = sizeof(s->holder_owner) - 1;
		memcpy(s->holder_owner, owner, len);
		s->holder_owner[len] = 0;
	}
}

int esdb__writer_lock(esdb_store *s, const char *dir)
{
	char path[PATH_MAX], text[16 + sizeof(s->owner) + 16];
	s->holder_known = false;
	if (snprintf(path, sizeof(path), "%s/" ESDB_WRITER_LOCK, dir) >=
	    (int)sizeof(path))
		return ESDB_EINVAL;
	/* CLOEXEC: a child exec'd by the VM must not keep the store locked
	 * after the VM is gone. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, s->file_mode);
	if (fd < 0)
		return errno;
	while (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno == EINTR)
			continue;
		int rc = errno == EWOULDBLOCK ? ESDB_ELOCKED : errno;
		if (rc == ESDB_ELOCKED)
			read_holder(s, fd);
		close(fd);
		return rc;
	}
	int len = snprintf(text, sizeof(text), "pid=%ld\nowner=%s\n",
	                   (long)getpid(), s->owner);
	/* The text is only for messages: a failed write loses nothing. */
	if (ftruncate(fd, 0) == 0) {
		ssize_t w = pwrite(fd, text, (size_t)len, 0);
		(void)w;
	}
	s->lock_fd = fd;
	s->lock_held = true;
	return 0;
}

void esdb__writer_unlock(esdb_store *s)
{
	if (!s->lock_held)
		return;
	/* Closing releases the flock, unless a child forked (and not
	 * exec'd) while the store was open still has the descriptor. */
	close(s->lock_fd);
	s->lock_held = false;
}

void esdb__writer_lock_remove(esdb_store *s, const char *dir)
{
	char path[PATH_MAX];
	if (s->lock_held && snprintf(path, sizeof(path), "%s/" ESDB_WRITER_LOCK,
	                             dir) < (int)sizeof(path))
		unlink(path);
}
