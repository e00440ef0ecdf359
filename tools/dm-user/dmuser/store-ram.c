// SPDX-License-Identifier: GPL-2.0
/*
 * The RAM store: a zero-filled anonymous mapping the size of the device,
 * sparse until written. The kernel copies requests' data straight from
 * and to it (read_place and write_place).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store.h"
#include "tool.h"

struct ram_store {
	struct store s;
	unsigned char *mem;
	size_t page_size;
	pthread_rwlock_t lock;
};

static struct ram_store *ram(struct store *s)
{
	return (struct ram_store *)((char *)s - offsetof(struct ram_store, s));
}

/*
 * The RAM store's lock only exists so that overlapping requests on two
 * channels are no data race in the C sense (the block layer orders none).
 * Reads and writes the kernel copies straight from and to the store (its
 * read_place and write_place) take no lock: only the kernel touches those
 * bytes then, and overlapping requests are unordered by the block layer's
 * contract anyway. Failing to take it is a bug, not an I/O error.
 */
static void ram_lock(struct store *s, bool exclusive)
{
	int rc = exclusive ? pthread_rwlock_wrlock(&ram(s)->lock)
			   : pthread_rwlock_rdlock(&ram(s)->lock);

	if (rc) {
		report(rc, "pthread_rwlock_%slock", exclusive ? "wr" : "rd");
		abort();
	}
}

static void ram_unlock(struct store *s)
{
	int rc = pthread_rwlock_unlock(&ram(s)->lock);

	if (rc) {
		report(rc, "pthread_rwlock_unlock");
		abort();
	}
}

static unsigned char *ram_place(struct store *s, uint64_t off, uint64_t len)
{
	(void)len;
	return ram(s)->mem + off;
}

static unsigned char *ram_read_place(struct store *s, uint64_t off,
				     uint64_t len, bool may_fault)
{
	(void)may_fault;
	return ram_place(s, off, len);
}

/* Nothing to copy when the data is already in place (ram_place). */
static int ram_read(struct store *s, unsigned char *buf, uint64_t off,
		    uint64_t len)
{
	if (buf == ram(s)->mem + off)
		return 0;
	ram_lock(s, false);
	memcpy(buf, ram(s)->mem + off, len);
	ram_unlock(s);
	return 0;
}

static int ram_write(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len)
{
	if (buf == ram(s)->mem + off)
		return 0;
	ram_lock(s, true);
	memcpy(ram(s)->mem + off, buf, len);
	ram_unlock(s);
	return 0;
}

/*
 * Whole pages are dropped rather than cleared, so that a multi-GiB discard
 * of a sparse store does not fault in every page it zeroes.
 */
static int ram_zero(struct store *s, unsigned char *buf, uint64_t off,
		    uint64_t len)
{
	size_t start = off, end = off + len;
	size_t first = (start + ram(s)->page_size - 1) & ~(ram(s)->page_size - 1);
	size_t last = end & ~(ram(s)->page_size - 1);

	(void)buf;
	ram_lock(s, true);
	if (first < last) {
		memset(ram(s)->mem + start, 0, first - start);
		memset(ram(s)->mem + last, 0, end - last);
		/* Private anonymous pages read back as zeroes once dropped. */
		if (madvise(ram(s)->mem + first, last - first, MADV_DONTNEED))
			memset(ram(s)->mem + first, 0, last - first);
	} else {
		memset(ram(s)->mem + start, 0, end - start);
	}
	ram_unlock(s);
	return 0;
}

static void ram_close(struct store *s)
{
	if (munmap(ram(s)->mem, s->size))
		report(errno, "munmap");
	pthread_rwlock_destroy(&ram(s)->lock);
	free(ram(s));
}

static const struct store_ops ram_ops = {
	.op = {
		[DM_USER_REQ_MAP_READ] = ram_read,
		[DM_USER_REQ_MAP_WRITE] = ram_write,
		[DM_USER_REQ_MAP_DISCARD] = ram_zero,
		[DM_USER_REQ_MAP_WRITE_ZEROES] = ram_zero,
		[DM_USER_REQ_MAP_SECURE_ERASE] = ram_zero,
	},
	.read_place = ram_read_place,
	.write_place = ram_place,
	.flush = store_nothing_to_flush,
	.close = ram_close,
};


static struct store *ram_open(const char *arg, uint64_t size,
			      unsigned int flags)
{
	long page = sysconf(_SC_PAGESIZE);
	struct ram_store *r;
	int rc;

	(void)arg;
	(void)flags;
	if (page <= 0 || (page & (page - 1))) {
		report(0, "sysconf(_SC_PAGESIZE): unusable page size %ld", page);
		return NULL;
	}
	/* Half the address space at most, so page rounding cannot overflow. */
	if (size > SIZE_MAX / 2) {
		report(0, "a RAM store of %" PRIu64 " bytes does not fit in this address space",
		       size);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		report(errno, "calloc");
		return NULL;
	}
	/* NORESERVE: the store stays sparse until written. */
	r->mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->mem == MAP_FAILED) {
		report(errno, "mmap of a %" PRIu64 "-byte RAM store", size);
		free(r);
		return NULL;
	}
	/*
	 * mlockall(MCL_FUTURE) locked the mapping: unlock it, or discarded
	 * pages could not be dropped (MADV_DONTNEED refuses locked pages)
	 * and the store would never shrink. Anonymous memory can only be
	 * paged out to swap, never to the device this daemon serves.
	 */
	(void)munlock(r->mem, size);
	rc = pthread_rwlock_init(&r->lock, NULL);
	if (rc) {
		report(rc, "pthread_rwlock_init");
		munmap(r->mem, size);
		free(r);
		return NULL;
	}
	r->page_size = page;
	r->s.size = size;
	r->s.ops = &ram_ops;
	return &r->s;
}

const struct store_type ram_store_type = {
	.name = "ram",
	.short_opt = 'r',
	.arg = "<size>",
	.arg_is_size = true,
	.help = "zero-filled RAM store of <size> bytes\n"
		"(suffix K, M, G or T: powers of 1024)",
	.contents = "RAM",
	.open = ram_open,
};
