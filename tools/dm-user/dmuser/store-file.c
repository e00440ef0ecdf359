// SPDX-License-Identifier: GPL-2.0
/*
 * The file store: a regular file or a block device, written with pwrite()
 * and read from a shared mapping of it where the transport lets a fault
 * fail one request (else with pread()); discard and write-zeroes with
 * fallocate() where the file system has it.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>

#include "store.h"
#include "tool.h"

/* The most zeroes written by one pwrite(). */
#define ZERO_CHUNK	(1U << 20)

/* fallocate() modes that zero a range: see file_write_zeroes(). */
#define ZERO_METHODS	2

enum file_op { F_READ, F_WRITE, F_SYNC, F_PUNCH, F_ZERO, F_NR };

struct file_store {
	struct store s;
	const char *path;
	int fd;
	/* The file mapped for reading (MAP_FAILED: not), map_len bytes. */
	unsigned char *map;
	size_t map_len;
	unsigned char *zeroes;		/* ZERO_CHUNK of them */
	atomic_bool no_falloc[ZERO_METHODS];	/* see file_write_zeroes() */
	atomic_bool logged[F_NR];
};

static struct file_store *file(struct store *s)
{
	return (struct file_store *)((char *)s - offsetof(struct file_store, s));
}

static const char *const file_op_names[F_NR] = {
	"pread", "pwrite", "fdatasync", "fallocate(PUNCH_HOLE)",
	"fallocate(ZERO_RANGE)",
};

/*
 * A failing backing device fails every request: log the first error of
 * each kind so that the cause is visible, and let the counters tell the rest.
 */
static int file_error(struct store *s, enum file_op op, int err, uint64_t off,
		      uint64_t len)
{
	struct file_store *f = file(s);

	if (!atomic_exchange(&f->logged[op], true))
		report(err, "%s %s at %" PRIu64 "+%" PRIu64 " (further %s errors not logged)",
		       file_op_names[op], f->path, off, len, file_op_names[op]);
	return -EIO;
}

static int xfallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	while (fallocate(fd, mode, off, len))
		if (errno != EINTR)
			return errno;
	return 0;
}

static bool not_supported(int err)
{
	return err == EOPNOTSUPP || err == ENOSYS;
}

static int file_read(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len)
{
	struct file_store *f = file(s);
	int err;

	/* Answered from the mapping (file_read_place): nothing to copy. */
	if (f->map != MAP_FAILED && buf == f->map + off)
		return 0;
	err = pio_all(f->fd, false, buf, len, off);

	return err ? file_error(s, F_READ, err, off, len) : 0;
}

static int file_write(struct store *s, unsigned char *buf, uint64_t off,
		      uint64_t len)
{
	int err = pio_all(file(s)->fd, true, buf, len, off);

	return err ? file_error(s, F_WRITE, err, off, len) : 0;
}

static int file_flush(struct store *s)
{
	while (fdatasync(file(s)->fd))
		if (errno != EINTR)
			return file_error(s, F_SYNC, errno, 0, s->size);
	return 0;
}

static int file_write_zero_pages(struct store *s, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;
		int err = pio_all(file(s)->fd, true, file(s)->zeroes, n, off);

		if (err)
			return file_error(s, F_WRITE, err, off, n);
		off += n;
		len -= n;
	}
	return 0;
}

static int file_discard(struct store *s, unsigned char *buf, uint64_t off,
			uint64_t len)
{
	int err = xfallocate(file(s)->fd,
			     FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);

	(void)buf;
	if (!err)
		return 0;
	if (not_supported(err))
		return -EOPNOTSUPP;
	return file_error(s, F_PUNCH, err, off, len);
}

/*
 * Cheapest method first. Lack of support is remembered, so that a store
 * without ZERO_RANGE (tmpfs, for one) does not pay a failing syscall per
 * request. A punched hole reads back as zeroes, on files and on bdevs.
 */
static int file_write_zeroes(struct store *s, unsigned char *buf,
			     uint64_t off, uint64_t len)
{
	static const struct {
		int mode;
		enum file_op op;
	} methods[ZERO_METHODS] = {
		{ FALLOC_FL_ZERO_RANGE, F_ZERO },
		{ FALLOC_FL_PUNCH_HOLE, F_PUNCH },
	};
	struct file_store *f = file(s);
	unsigned int i;

	(void)buf;
	for (i = 0; i < ZERO_METHODS; i++) {
		int err;

		if (atomic_load(&f->no_falloc[i]))
			continue;
		err = xfallocate(f->fd, methods[i].mode | FALLOC_FL_KEEP_SIZE,
				 off, len);
		if (!err)
			return 0;
		if (!not_supported(err))
			return file_error(s, methods[i].op, err, off, len);
		atomic_store(&f->no_falloc[i], true);
	}
	return file_write_zero_pages(s, off, len);
}

/* Overwrite rather than deallocate: a hole may leave old blocks readable. */
static int file_secure_erase(struct store *s, unsigned char *buf,
			     uint64_t off, uint64_t len)
{
	int rc = file_write_zero_pages(s, off, len);

	(void)buf;
	return rc ? rc : file_flush(s);
}

/*
 * A read is answered from the page cache through a shared mapping of the
 * file: the kernel copies from the cache into the request's pages, one copy
 * instead of pread()'s copy plus the answer's. Only where a fault on the
 * mapping (an I/O error, the file cut short) fails that read alone: on the
 * RFC protocol it would fail the channel, so pread() serves those.
 */
static unsigned char *file_read_place(struct store *s, uint64_t off,
				      uint64_t len, bool may_fault)
{
	struct file_store *f = file(s);

	(void)len;
	return may_fault && f->map != MAP_FAILED ? f->map + off : NULL;
}

static void file_close(struct store *s)
{
	struct file_store *f = file(s);

	if (f->map != MAP_FAILED && munmap(f->map, f->map_len))
		report(errno, "munmap %s", f->path);
	if (close(f->fd))
		report(errno, "close %s", f->path);
	free(f->zeroes);
	free(f);
}

static const struct store_ops file_ops = {
	.op = {
		[DM_USER_REQ_MAP_READ] = file_read,
		[DM_USER_REQ_MAP_WRITE] = file_write,
		[DM_USER_REQ_MAP_DISCARD] = file_discard,
		[DM_USER_REQ_MAP_WRITE_ZEROES] = file_write_zeroes,
		[DM_USER_REQ_MAP_SECURE_ERASE] = file_secure_erase,
	},
	.read_place = file_read_place,
	.flush = file_flush,
	.close = file_close,
};


/*
 * The largest file mapped for reading: a quarter of the address space, so
 * that a file as large as a 32-bit daemon's whole address space leaves
 * room for its rings, stacks and buffers. Larger files are read with
 * pread().
 */
#define MAP_MAX (SIZE_MAX / 4)

/* The flags of file_store_type, by bit. */
#define FILE_DIRECT	(1U << 0)

static struct store *file_open(const char *path, uint64_t unused,
			       unsigned int flags)
{
	bool direct = flags & FILE_DIRECT;
	struct file_store *f;
	struct stat st;
	uint64_t size;

	(void)unused;
	f = calloc(1, sizeof(*f));
	if (!f) {
		report(errno, "calloc");
		return NULL;
	}
	f->path = path;
	/* The serve loop's buffers are 4096-aligned, as O_DIRECT wants. */
	f->fd = open(path, O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (f->fd < 0) {
		report(errno, "open %s", path);
		free(f);
		return NULL;
	}
	if (fstat(f->fd, &st)) {
		report(errno, "fstat %s", path);
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		size = st.st_size;
	} else if (!S_ISBLK(st.st_mode)) {
		report(0, "%s: not a regular file or a block device", path);
		goto fail;
	} else if (ioctl(f->fd, BLKGETSIZE64, &size)) {
		report(errno, "ioctl(BLKGETSIZE64) %s", path);
		goto fail;
	}
	/* Offsets reach the kernel as off_t. */
	if (size > INT64_MAX) {
		report(0, "%s: size %" PRIu64 " does not fit in off_t", path, size);
		goto fail;
	}
	f->zeroes = calloc(1, ZERO_CHUNK);
	if (!f->zeroes) {
		report(errno, "calloc");
		goto fail;
	}
	/*
	 * Not with O_DIRECT, which bypasses the page cache the mapping
	 * shows. Without a mapping (a size mmap() refuses, a file system
	 * without mmap), pread() serves every read.
	 */
	f->map = MAP_FAILED;
	if (!direct && size && size <= MAP_MAX) {
		f->map = mmap(NULL, size, PROT_READ, MAP_SHARED, f->fd, 0);
		if (f->map == MAP_FAILED)
			report(errno, "mmap %s (reads use pread)", path);
	}
	/*
	 * Not locked by mlockall(MCL_FUTURE): the file's page cache stays
	 * reclaimable, as with pread(). Reclaiming it writes to the file's
	 * own device, never to the one we serve. Kept locked, every page
	 * read would stay in memory: rather pread() then.
	 */
	if (f->map != MAP_FAILED && munlock(f->map, size)) {
		report(errno, "munlock of the mapping of %s (reads use pread)",
		       path);
		if (munmap(f->map, size))
			report(errno, "munmap %s", path);
		f->map = MAP_FAILED;
	}
	if (f->map != MAP_FAILED)
		f->map_len = size;
	f->s.size = size;
	f->s.ops = &file_ops;
	return &f->s;
fail:
	close(f->fd);
	free(f);
	return NULL;
}

static const struct store_flag file_flags[] = {
	{ "direct", 'd',
	  "open the --file with O_DIRECT: no page cache, so the\n"
	  "daemon allocates nothing to write it (use it when\n"
	  "the device is swap or under memory pressure)" },
	{ NULL, 0, NULL },
};

const struct store_type file_store_type = {
	.name = "file",
	.short_opt = 'f',
	.arg = "<path>",
	.help = "regular file or block device: written with pwrite,\n"
		"read from a mapping of it on a ring, else pread",
	.flags = file_flags,
	.open = file_open,
};
