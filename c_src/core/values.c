/* values.c: bound a value LMDB hands back before anything reads it, and
 * remember where the last corruption of this thread was found.
 *
 * LMDB covers none of its page or node headers by a checksum and trusts
 * the sizes in them. A flipped size byte makes a value run past its page
 * and, near the end of the file, past what is mapped: reading it is a
 * SIGBUS that kills the whole VM. So every value is checked here first:
 *
 * - it must lie in the data file's mapping (found in /proc/self/maps,
 *   cached per thread, environment and map size), unless this thread is
 *   in a write transaction: then it may be a page the transaction copied
 *   to the heap;
 * - a value inside a leaf page must end inside that page, and that page
 *   must be in the file (a node's key size can move it pages away);
 * - a value on overflow pages starts right after a page header (offset
 *   16) and must end inside the file (LMDB's last page);
 * - no value is larger than the format's largest record.
 *
 * What stays beyond reach: LMDB itself following a garbage page number in
 * a branch page or reading a garbage key while it searches. */
#include "internal.h"

#include "records.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_HEADER 16 /* LMDB's PAGEHDRSZ */

static __thread esdb_where last_where;

int esdb__corrupt_at(int rc, esdb_where_kind kind, uint64_t number)
{
	/* The store's format was checked at open: a stored record of
	 * another version is a damaged one. */
	if (rc == ESDB_EFORMAT)
		rc = ESDB_ECORRUPT;
	if (rc == ESDB_ECORRUPT || rc == MDB_CORRUPTED ||
	    rc == MDB_PAGE_NOTFOUND || rc == MDB_BAD_TXN) {
		last_where.kind = kind;
		last_where.number = number;
	}
	return rc;
}

void esdb_where_take(esdb_where *out)
{
	if (out)
		*out = last_where;
	memset(&last_where, 0, sizeof(last_where));
}

/* Set while this thread runs a write transaction: its dirty pages are
 * LMDB's heap copies, outside the map, written by this transaction. */
static __thread bool writing;

void esdb__val_writing(bool on)
{
	writing = on;
}

/* The data file's mapping of one environment, as this thread last saw
 * it. Per thread, so that checking a value takes no lock; a thread scans
 * /proc/self/maps once per environment and map size. Closing an
 * environment bumps `generation`, so that an environment allocated at
 * the same address is never taken for the closed one. */
typedef struct map_seen {
	MDB_env *env;
	size_t mapsize;
	uint64_t generation;
	uintptr_t start, end;
} map_seen;

#define MAPS_SEEN 4
static __thread map_seen seen[MAPS_SEEN];
static __thread unsigned seen_next;
static uint64_t generation = 1;

/* Find the mapping of the file open as fd that contains addr. */
static bool find_mapping(int fd, uintptr_t addr, uintptr_t *start,
                         uintptr_t *end)
{
	struct stat st;
	if (fstat(fd, &st))
		return false;
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return false;
	char line[4096];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long s, e, off, ino;
		unsigned maj, min;
		if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &s, &e, &off,
		           &maj, &min, &ino) != 6)
			continue;
		if (addr >= s && addr < e && off == 0 &&
		    ino == (unsigned long)st.st_ino) {
			*start = s;
			*end = e;
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* Where env's data file is mapped, as long as its map size is `mapsize`
 * (LMDB maps again only when the size changes). False when addr is not
 * in that mapping. */
static bool map_of(MDB_env *env, size_t mapsize, uintptr_t addr,
                   uintptr_t *start)
{
	uint64_t gen = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
	for (int i = 0; i < MAPS_SEEN; i++)
		if (seen[i].env == env && seen[i].mapsize == mapsize &&
		    seen[i].generation == gen) {
			*start = seen[i].start;
			return addr >= seen[i].start && addr < seen[i].end;
		}
	int fd;
	uintptr_t s, e;
	if (mdb_env_get_fd(env, &fd) || !find_mapping(fd, addr, &s, &e))
		return false;
	map_seen *slot = NULL;
	for (int i = 0; i < MAPS_SEEN && !slot; i++)
		if (seen[i].env == env || seen[i].generation != gen)
			slot = &seen[i];
	if (!slot)
		slot = &seen[seen_next++ % MAPS_SEEN];
	*slot = (map_seen){env, mapsize, gen, s, e};
	*start = s;
	return true;
}

void esdb__val_forget(MDB_env *env)
{
	(void)env;
	__atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
}

int esdb__val_check(MDB_txn *txn, const MDB_val *v, esdb_where_kind kind,
                    uint64_t number)
{
	MDB_env *env = mdb_txn_env(txn);
	MDB_stat st;
	MDB_envinfo info;
	uintptr_t start, addr = (uintptr_t)v->mv_data;
	if (v->mv_size > ESDB_VALUE_MAX || mdb_env_stat(env, &st) ||
	    mdb_env_info(env, &info))
		return esdb__corrupt_at(ESDB_ECORRUPT, kind, number);
	if (!map_of(env, info.me_mapsize, addr, &start)) {
		if (writing)
			return 0; /* a page this transaction wrote */
		return esdb__corrupt_at(ESDB_ECORRUPT, kind, number);
	}
	size_t psize = st.ms_psize, off = (addr - start) % psize;
	uint64_t page = (addr - start) / psize;
	uint64_t pages = (uint64_t)info.me_last_pgno + 1;
	/* In a leaf page: ends in it. On overflow pages (right after their
	 * header): ends in the file. Either way its page is in the file: a
	 * node's key size can put a value pages past its leaf. */
	bool ok = page < pages &&
	          (off == PAGE_HEADER
	               ? v->mv_size <= (pages - page) * psize - PAGE_HEADER
	               : off > PAGE_HEADER && v->mv_size <= psize - off);
	return ok ? 0 : esdb__corrupt_at(ESDB_ECORRUPT, ESDB_WHERE_PAGE, page);
}

bool esdb__page_of(MDB_env *env, uintptr_t addr, uint64_t *page)
{
	MDB_stat st;
	MDB_envinfo info;
	uintptr_t start;
	if (mdb_env_stat(env, &st) || mdb_env_info(env, &info) ||
	    !map_of(env, info.me_mapsize, addr, &start))
		return false;
	*page = (addr - start) / st.ms_psize;
	return true;
}
