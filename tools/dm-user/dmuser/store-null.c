// SPDX-License-Identifier: GPL-2.0
/*
 * The null store keeps nothing: reads return zeroes, writes and the other
 * operations succeed at once. It measures the cost of the round trip
 * itself, like ublk's and null_blk's null devices. Reads are answered from
 * a mapping never written, so all zero pages: no memory, nothing to clear.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store.h"
#include "tool.h"

/* The most a READ asks for: libdmuser fails larger ones. */
#define NULL_ZEROES	(1U << 20)

struct null_store {
	struct store s;
	unsigned char *zeroes;	/* NULL_ZEROES bytes, read-only */
};

static struct null_store *null(struct store *s)
{
	return (struct null_store *)((char *)s - offsetof(struct null_store, s));
}

static unsigned char *null_read_place(struct store *s, uint64_t off,
				      uint64_t len, bool may_fault)
{
	(void)off;
	(void)may_fault;
	return len <= NULL_ZEROES ? null(s)->zeroes : NULL;
}

static int null_read(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len)
{
	(void)off;
	if (buf != null(s)->zeroes)
		memset(buf, 0, len);
	return 0;
}

static int null_nothing(struct store *s, unsigned char *buf, uint64_t off,
			uint64_t len)
{
	(void)s;
	(void)buf;
	(void)off;
	(void)len;
	return 0;
}

static void null_close(struct store *s)
{
	if (munmap(null(s)->zeroes, NULL_ZEROES))
		report(errno, "munmap");
	free(null(s));
}

static const struct store_ops null_ops = {
	.op = {
		[DM_USER_REQ_MAP_READ] = null_read,
		[DM_USER_REQ_MAP_WRITE] = null_nothing,
		[DM_USER_REQ_MAP_DISCARD] = null_nothing,
		[DM_USER_REQ_MAP_WRITE_ZEROES] = null_nothing,
		[DM_USER_REQ_MAP_SECURE_ERASE] = null_nothing,
	},
	.read_place = null_read_place,
	.flush = store_nothing_to_flush,
	.close = null_close,
};

static struct store *null_open(const char *arg, uint64_t size,
			       unsigned int flags)
{
	struct null_store *n = calloc(1, sizeof(*n));

	(void)arg;
	(void)flags;
	if (!n) {
		report(errno, "calloc");
		return NULL;
	}
	n->zeroes = mmap(NULL, NULL_ZEROES, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (n->zeroes == MAP_FAILED) {
		report(errno, "mmap of %u bytes of zeroes", NULL_ZEROES);
		free(n);
		return NULL;
	}
	n->s.size = size;
	n->s.ops = &null_ops;
	return &n->s;
}

const struct store_type null_store_type = {
	.name = "null",
	.short_opt = 'n',
	.arg = "<size>",
	.arg_is_size = true,
	.help = "keep nothing: reads return zeroes, writes are dropped\n"
		"(for measuring the round trip)",
	.contents = "nothing",
	.open = null_open,
};
