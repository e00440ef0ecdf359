/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The stores "dmuser serve" keeps a device's data in. Each lives in its
 * own store-<name>.c and is one line of store_types[] (stores.c): its
 * option, its help, the flags it takes and how to open it. cmd-serve.c
 * builds its command line and its usage from that table, and calls a
 * store only through struct store_ops, so that a new store touches one
 * new file and one table line.
 */
#ifndef DMUSER_STORE_H
#define DMUSER_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/dm-user.h>

struct store;

/*
 * Indexed by request type; each returns 0 or a negative errno (-EOPNOTSUPP
 * to answer UNSUPPORTED). The range has been checked against the size. A
 * store may leave a type NULL: those requests are answered UNSUPPORTED.
 */
typedef int store_fn(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len);

/*
 * read_place and write_place, where a store has them, give the memory that
 * holds a range, so that the kernel copies between it and the request's
 * pages directly (one copy, not two through a buffer of the library); the
 * op for a READ or WRITE is then called with that memory as its buffer.
 * Called from every serving thread at once: a store does its own locking.
 */
struct store_ops {
	store_fn *op[DM_USER_REQ_MAP_WRITE_ZEROES + 1];
	/* @may_fault: dmu_req.data_may_fault of the request. */
	unsigned char *(*read_place)(struct store *s, uint64_t off, uint64_t len,
				     bool may_fault);
	unsigned char *(*write_place)(struct store *s, uint64_t off, uint64_t len);
	/* Makes every write answered so far durable: 0 or a negative errno. */
	int (*flush)(struct store *s);
	/* Releases everything, @s included. */
	void (*close)(struct store *s);
};

/* What every store has; each embeds it in its own struct. */
struct store {
	const struct store_ops *ops;
	uint64_t size;		/* bytes */
};

/* A flag a store takes besides its own option, as "--direct" for --file. */
struct store_flag {
	const char *name;	/* long option, without "--" */
	int short_opt;
	const char *help;	/* lines of usage text, '\n' between them */
};

#define STORE_MAX_FLAGS 8

struct store_type {
	const char *name;	/* its long option, without "--" */
	int short_opt;
	const char *arg;	/* what its argument is: "<size>", "<path>" */
	bool arg_is_size;	/* bytes, with a suffix K, M, G or T */
	const char *help;	/* lines of usage text, '\n' between them */
	/* What is served, for --verbose; NULL: the argument says it. */
	const char *contents;
	/* Up to STORE_MAX_FLAGS, ended by a NULL name; NULL: none. */
	const struct store_flag *flags;
	/*
	 * @arg as given; @size parsed from it if arg_is_size, else 0;
	 * @flags bit i set if flags[i] was given. The store, or NULL after
	 * its reason was reported.
	 */
	struct store *(*open)(const char *arg, uint64_t size,
			      unsigned int flags);
};

/* Every store, in the order serve's usage lists them; NULL at the end. */
extern const struct store_type *const store_types[];

extern const struct store_type ram_store_type;
extern const struct store_type file_store_type;
extern const struct store_type null_store_type;

/* For stores whose data is gone with the process anyway. */
int store_nothing_to_flush(struct store *s);

#endif /* DMUSER_STORE_H */
