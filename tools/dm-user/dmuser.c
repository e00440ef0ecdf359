// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser - create, inspect and serve dm-user devices, built on libdmuser.
 *
 *   dmuser create <dev> --size <size> [--name <name>] [--features "<words>"]
 *   dmuser remove <dev>
 *   dmuser list
 *   dmuser info <name>
 *   dmuser set <name> <key>=<value>...
 *   dmuser serve [options] <name-or-path>
 *
 * "dmuser serve" is the reference daemon: it serves every block request of
 * one target from a RAM store, a file or block device, or nothing at all
 * (the null store), through the library's serving loop (one thread per
 * channel). Invoked as "dmuserd",
 * the program is "dmuser serve", so that scripts written for the former
 * daemon keep working.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libdevmapper.h>
#include <linux/dm-ioctl.h>
#include <linux/fs.h>
#include <json-c/json.h>
#include <systemd/sd-daemon.h>

#include "dmuser.h"

#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define SECTOR_SIZE	512U
#define MAX_THREADS	64
#define MAX_BATCH	128
#define ZERO_CHUNK	(1U << 20)
/* The most a READ asks for: libdmuser fails larger ones. */
#define NULL_ZEROES	(1U << 20)
#define NODE_WAIT_MS	5000

static const char *prog = "dmuser";
/* The usage of the command being parsed, for bad_usage(). */
static void (*usage_fn)(FILE *f);

/*
 * One fprintf() per line: stdio locks the stream per call, so lines of
 * concurrent serving threads never interleave. strerror_r for the same
 * reason.
 */
__attribute__((format(printf, 2, 3)))
static void report(int err, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err) {
		char ebuf[128];

		fprintf(stderr, "%s: %s: %s\n", prog, what,
			strerror_r(err < 0 ? -err : err, ebuf, sizeof(ebuf)));
	} else {
		fprintf(stderr, "%s: %s\n", prog, what);
	}
}

/* What a failure of @what is about: what the hint for it looks at. */
enum hint_about {
	HINT_NODE,	/* opening /dev/dm-user/<name> */
	HINT_CREATE,	/* creating device <dev> with target <name> */
	HINT_DEVICE,	/* a device-mapper device <dev> */
};

/*
 * libdevmapper prints its own lines for a failed ioctl, and libdmuser then
 * sees no errno where the device is removed after a failed load (EIO):
 * its messages are not printed, so that an error is the one line report()
 * makes, and the errno of the last one is kept for that line.
 */
static int dm_last_errno;

__attribute__((format(printf, 5, 6)))
static void dm_log_keep_errno(int level, const char *file, int line,
			      int dm_errno_or_class, const char *f, ...)
{
	(void)file;
	(void)line;
	(void)f;
	/* Errors (syslog's LOG_ERR and worse) carry an errno. */
	if ((level & 7) <= 3 && dm_errno_or_class > 0)
		dm_last_errno = dm_errno_or_class;
}

static int match_target_name(void *arg, const struct dmu_target_desc *t)
{
	return strcmp(t->name, arg) ? 0 : 1;
}

/* Whether a live device has a user target named @name. */
static bool target_name_taken(const char *name)
{
	return name && dmu_dev_list(match_target_name, (void *)name) == 1;
}

/*
 * What a user can do about @err, or NULL: the module not loaded, a node or
 * a device that is not there, a node that belongs to someone else, a name
 * in use. @dev names the device-mapper device, @name the target.
 */
static const char *error_hint(int err, enum hint_about about, const char *dev,
			      const char *name, char *buf, size_t len)
{
	char node[PATH_MAX];
	struct stat st;

	if (err < 0)
		err = -err;
	if (access("/sys/module/dm_user", F_OK) && errno == ENOENT) {
		snprintf(buf, len, "the dm_user module is not loaded: modprobe dm_user");
		return buf;
	}
	if (name && strchr(name, '/'))
		snprintf(node, sizeof(node), "%s", name);
	else
		snprintf(node, sizeof(node), "/dev/dm-user/%s", name ? name : "");
	switch (about) {
	case HINT_NODE:
		if (err == ENOENT && strchr(name, '/'))
			snprintf(buf, len, "no node at that path (a target's is /dev/dm-user/<name>)");
		else if (err == ENOENT)
			snprintf(buf, len, "no target is named '%s' ('dmuser list' shows those there are)",
				 name);
		else if ((err == EACCES || err == EPERM) && !stat(node, &st))
			snprintf(buf, len, "%s is mode %03o, owner %u, group %u: its owner, a member of its group or root may open it%s",
				 node, st.st_mode & 07777, st.st_uid, st.st_gid,
				 err == EPERM ? ", and only its owner or CAP_SYS_ADMIN change it" : "");
		else
			return NULL;
		return buf;
	case HINT_CREATE:
		if (err == EEXIST)
			snprintf(buf, len, "a device named '%s' exists: 'dmuser remove %s' first, or --if-missing to keep it",
				 dev, dev);
		/*
		 * libdevmapper loses the table load's errno (EBUSY) on
		 * create: look at what is there instead.
		 */
		else if (err == EBUSY || target_name_taken(name))
			snprintf(buf, len, "another device's user target is named '%s' ('dmuser list'): choose another --name",
				 name);
		else if (err == EACCES || err == EPERM)
			snprintf(buf, len, "creating a device needs root (CAP_SYS_ADMIN)");
		else
			return NULL;
		return buf;
	case HINT_DEVICE:
		if (err == ENXIO || err == ENODEV)
			snprintf(buf, len, "no device is named '%s' ('dmuser list' shows those with user targets)",
				 dev);
		else if (err == EBUSY)
			snprintf(buf, len, "'%s' is open: unmount it and stop what uses it first",
				 dev);
		else if (err == EACCES || err == EPERM)
			snprintf(buf, len, "changing devices needs root (CAP_SYS_ADMIN)");
		else
			return NULL;
		return buf;
	}
	return NULL;
}

/* report(), and after the error the hint error_hint() gives, if any. */
__attribute__((format(printf, 5, 6)))
static void report_hint(int err, enum hint_about about, const char *dev,
			const char *name, const char *fmt, ...)
{
	char what[512], ebuf[128], hint[PATH_MAX + 256];
	const char *h = error_hint(err, about, dev, name, hint, sizeof(hint));
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s: %s%s%s\n", prog, what,
		strerror_r(err < 0 ? -err : err, ebuf, sizeof(ebuf)),
		h ? "; " : "", h ? h : "");
}

__attribute__((format(printf, 1, 2), noreturn))
static void bad_usage(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", prog, msg);
	if (usage_fn)
		usage_fn(stderr);
	exit(2);
}

/*
 * What getopt_long() returned @c for: an option without its argument, or
 * one it does not know (opterr is 0: the messages are ours).
 */
__attribute__((noreturn))
static void bad_option(int c, char **argv)
{
	if (c == ':')
		bad_usage("option '%s' needs an argument", argv[optind - 1]);
	if (optopt)
		bad_usage("unknown option '-%c'", optopt);
	bad_usage("unknown option '%s'", argv[optind - 1]);
}

/* K, M, G and T: powers of 1024. */
static unsigned int suffix_shift(char c)
{
	switch (c) {
	case 'K': case 'k': return 10;
	case 'M': case 'm': return 20;
	case 'G': case 'g': return 30;
	case 'T': case 't': return 40;
	default: return 0;
	}
}

/* Digits first: strtoull alone would take "-1", " 5" and "0x10". */
static uint64_t parse_number(const char *name, const char *s, bool suffix,
			     uint64_t min, uint64_t max)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		bad_usage("%s: '%s' is not a number", name, s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (suffix && *end && suffix_shift(*end)) {
		shift = suffix_shift(*end);
		end++;
	}
	if (*end)
		bad_usage("%s: '%s': unexpected '%s'%s", name, s, end,
			  suffix ? " (suffixes: K, M, G, T)" : "");
	if (errno == ERANGE || v > UINT64_MAX >> shift)
		bad_usage("%s: '%s' is too large", name, s);
	v <<= shift;
	if (v < min || v > max)
		bad_usage("%s: '%s' is %s %" PRIu64, name, s,
			  v < min ? "below the minimum" : "above the maximum",
			  v < min ? min : max);
	return v;
}

/* "--help" and "-h" anywhere a command takes no option. */
static bool wants_help(const char *arg)
{
	return !strcmp(arg, "-h") || !strcmp(arg, "--help");
}

/* Output that did not reach stdout is an error too. */
static int finish_stdout(void)
{
	if (fflush(stdout) || ferror(stdout)) {
		report(errno ? errno : EIO, "write to standard output");
		return 1;
	}
	return 0;
}

/* /dev/dm-user/<name>, or the path given. */
static int open_channel(const char *name, char *what, size_t len)
{
	if (strchr(name, '/')) {
		int fd;

		snprintf(what, len, "%s", name);
		fd = open(name, O_RDWR | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	snprintf(what, len, "/dev/dm-user/%s", name);
	return dmu_open_channel(name, 0);
}

/* ---- Stores ---------------------------------------------------------- */

struct store;

/*
 * Indexed by request type; each returns 0 or a negative errno (-EOPNOTSUPP
 * to answer UNSUPPORTED). The range has been checked against the size.
 */
typedef int store_fn(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len);

/*
 * read_place and write_place, where a store has them, give the memory that
 * holds a range, so that the kernel copies between it and the request's
 * pages directly (one copy, not two through a buffer of the library); the
 * op for a READ or WRITE is then called with that memory as its buffer.
 */
struct store_ops {
	store_fn *op[DM_USER_REQ_MAP_WRITE_ZEROES + 1];
	/* @may_fault: dmu_req.data_may_fault of the request. */
	unsigned char *(*read_place)(struct store *s, uint64_t off, uint64_t len,
				     bool may_fault);
	unsigned char *(*write_place)(struct store *s, uint64_t off, uint64_t len);
	int (*flush)(struct store *s);
	void (*close)(struct store *s);
};

enum file_op { F_READ, F_WRITE, F_SYNC, F_PUNCH, F_ZERO, F_NR };

struct store {
	const struct store_ops *ops;
	uint64_t size;
	/* RAM store */
	unsigned char *mem;
	size_t page_size;
	pthread_rwlock_t lock;
	/* file store */
	const char *path;
	int fd;
	/* The file mapped for reading (MAP_FAILED: not), map_len bytes. */
	unsigned char *map;
	size_t map_len;
	unsigned char *zeroes;
	atomic_bool no_falloc[2];	/* see file_write_zeroes() */
	atomic_bool logged[F_NR];
};

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
	int rc = exclusive ? pthread_rwlock_wrlock(&s->lock)
			   : pthread_rwlock_rdlock(&s->lock);

	if (rc) {
		report(rc, "pthread_rwlock_%slock", exclusive ? "wr" : "rd");
		abort();
	}
}

static void ram_unlock(struct store *s)
{
	int rc = pthread_rwlock_unlock(&s->lock);

	if (rc) {
		report(rc, "pthread_rwlock_unlock");
		abort();
	}
}

static unsigned char *ram_place(struct store *s, uint64_t off, uint64_t len)
{
	(void)len;
	return s->mem + off;
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
	if (buf == s->mem + off)
		return 0;
	ram_lock(s, false);
	memcpy(buf, s->mem + off, len);
	ram_unlock(s);
	return 0;
}

static int ram_write(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len)
{
	if (buf == s->mem + off)
		return 0;
	ram_lock(s, true);
	memcpy(s->mem + off, buf, len);
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
	size_t first = (start + s->page_size - 1) & ~(s->page_size - 1);
	size_t last = end & ~(s->page_size - 1);

	(void)buf;
	ram_lock(s, true);
	if (first < last) {
		memset(s->mem + start, 0, first - start);
		memset(s->mem + last, 0, end - last);
		/* Private anonymous pages read back as zeroes once dropped. */
		if (madvise(s->mem + first, last - first, MADV_DONTNEED))
			memset(s->mem + first, 0, last - first);
	} else {
		memset(s->mem + start, 0, end - start);
	}
	ram_unlock(s);
	return 0;
}

static int ram_flush(struct store *s)
{
	(void)s;
	return 0;
}

static void ram_close(struct store *s)
{
	if (munmap(s->mem, s->size))
		report(errno, "munmap");
	pthread_rwlock_destroy(&s->lock);
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
	.flush = ram_flush,
	.close = ram_close,
};

static int ram_open(struct store *s, uint64_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	int rc;

	if (page <= 0 || (page & (page - 1))) {
		report(0, "sysconf(_SC_PAGESIZE): unusable page size %ld", page);
		return -1;
	}
	/* Half the address space at most, so page rounding cannot overflow. */
	if (size > SIZE_MAX / 2) {
		report(0, "a RAM store of %" PRIu64 " bytes does not fit in this address space",
		       size);
		return -1;
	}
	/* NORESERVE: the store stays sparse until written. */
	s->mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->mem == MAP_FAILED) {
		report(errno, "mmap of a %" PRIu64 "-byte RAM store", size);
		return -1;
	}
	/*
	 * mlockall(MCL_FUTURE) locked the mapping: unlock it, or discarded
	 * pages could not be dropped (MADV_DONTNEED refuses locked pages)
	 * and the store would never shrink. Anonymous memory can only be
	 * paged out to swap, never to the device this daemon serves.
	 */
	(void)munlock(s->mem, size);
	rc = pthread_rwlock_init(&s->lock, NULL);
	if (rc) {
		report(rc, "pthread_rwlock_init");
		munmap(s->mem, size);
		return -1;
	}
	s->page_size = page;
	s->size = size;
	s->ops = &ram_ops;
	return 0;
}

/*
 * The null store keeps nothing: reads return zeroes, writes and the other
 * operations succeed at once. It measures the cost of the round trip
 * itself, like ublk's and null_blk's null devices. Reads are answered from
 * a mapping never written, so all zero pages: no memory, nothing to clear.
 */
static unsigned char *null_read_place(struct store *s, uint64_t off,
				      uint64_t len, bool may_fault)
{
	(void)off;
	(void)may_fault;
	return len <= NULL_ZEROES ? s->mem : NULL;
}

static int null_read(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len)
{
	(void)off;
	if (buf != s->mem)
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
	if (munmap(s->mem, NULL_ZEROES))
		report(errno, "munmap");
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
	.flush = ram_flush,
	.close = null_close,
};

static int null_open(struct store *s, uint64_t size)
{
	s->mem = mmap(NULL, NULL_ZEROES, PROT_READ,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->mem == MAP_FAILED) {
		report(errno, "mmap of %u bytes of zeroes", NULL_ZEROES);
		return -1;
	}
	s->size = size;
	s->ops = &null_ops;
	return 0;
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
	if (!atomic_exchange(&s->logged[op], true))
		report(err, "%s %s at %" PRIu64 "+%" PRIu64 " (further %s errors not logged)",
		       file_op_names[op], s->path, off, len, file_op_names[op]);
	return -EIO;
}

/* Returns 0 or an errno value. */
static int pio_all(int fd, bool write, unsigned char *buf, size_t len,
		   uint64_t off)
{
	while (len) {
		ssize_t n = write ? pwrite(fd, buf, len, off)
				  : pread(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)	/* the file shrank under us */
			return EIO;
		buf += n;
		len -= n;
		off += n;
	}
	return 0;
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
	int err;

	/* Answered from the mapping (file_read_place): nothing to copy. */
	if (s->map != MAP_FAILED && buf == s->map + off)
		return 0;
	err = pio_all(s->fd, false, buf, len, off);

	return err ? file_error(s, F_READ, err, off, len) : 0;
}

static int file_write(struct store *s, unsigned char *buf, uint64_t off,
		      uint64_t len)
{
	int err = pio_all(s->fd, true, buf, len, off);

	return err ? file_error(s, F_WRITE, err, off, len) : 0;
}

static int file_flush(struct store *s)
{
	while (fdatasync(s->fd))
		if (errno != EINTR)
			return file_error(s, F_SYNC, errno, 0, s->size);
	return 0;
}

static int file_write_zero_pages(struct store *s, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;
		int err = pio_all(s->fd, true, s->zeroes, n, off);

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
	int err = xfallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     off, len);

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
	} methods[ARRAY_SIZE(s->no_falloc)] = {
		{ FALLOC_FL_ZERO_RANGE, F_ZERO },
		{ FALLOC_FL_PUNCH_HOLE, F_PUNCH },
	};
	unsigned int i;

	(void)buf;
	for (i = 0; i < ARRAY_SIZE(methods); i++) {
		int err;

		if (atomic_load(&s->no_falloc[i]))
			continue;
		err = xfallocate(s->fd, methods[i].mode | FALLOC_FL_KEEP_SIZE,
				 off, len);
		if (!err)
			return 0;
		if (!not_supported(err))
			return file_error(s, methods[i].op, err, off, len);
		atomic_store(&s->no_falloc[i], true);
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
	(void)len;
	return may_fault && s->map != MAP_FAILED ? s->map + off : NULL;
}

static void file_close(struct store *s)
{
	if (s->map != MAP_FAILED && munmap(s->map, s->map_len))
		report(errno, "munmap %s", s->path);
	if (close(s->fd))
		report(errno, "close %s", s->path);
	free(s->zeroes);
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

static int file_open(struct store *s, const char *path, bool direct)
{
	struct stat st;
	uint64_t size;

	s->path = path;
	/* The serve loop's buffers are 4096-aligned, as O_DIRECT wants. */
	s->fd = open(path, O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (s->fd < 0) {
		report(errno, "open %s", path);
		return -1;
	}
	if (fstat(s->fd, &st)) {
		report(errno, "fstat %s", path);
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		size = st.st_size;
	} else if (!S_ISBLK(st.st_mode)) {
		report(0, "%s: not a regular file or a block device", path);
		goto fail;
	} else if (ioctl(s->fd, BLKGETSIZE64, &size)) {
		report(errno, "ioctl(BLKGETSIZE64) %s", path);
		goto fail;
	}
	/* Offsets reach the kernel as off_t. */
	if (size > INT64_MAX) {
		report(0, "%s: size %" PRIu64 " does not fit in off_t", path, size);
		goto fail;
	}
	s->zeroes = calloc(1, ZERO_CHUNK);
	if (!s->zeroes) {
		report(errno, "calloc");
		goto fail;
	}
	/*
	 * Not with O_DIRECT, which bypasses the page cache the mapping
	 * shows. Without a mapping (a size mmap() refuses, a file system
	 * without mmap), pread() serves every read.
	 */
	s->map = MAP_FAILED;
	if (!direct && size && size <= MAP_MAX) {
		s->map = mmap(NULL, size, PROT_READ, MAP_SHARED, s->fd, 0);
		if (s->map == MAP_FAILED)
			report(errno, "mmap %s (reads use pread)", path);
	}
	/*
	 * Not locked by mlockall(MCL_FUTURE): the file's page cache stays
	 * reclaimable, as with pread(). Reclaiming it writes to the file's
	 * own device, never to the one we serve. Kept locked, every page
	 * read would stay in memory: rather pread() then.
	 */
	if (s->map != MAP_FAILED && munlock(s->map, size)) {
		report(errno, "munlock of the mapping of %s (reads use pread)",
		       path);
		if (munmap(s->map, size))
			report(errno, "munmap %s", path);
		s->map = MAP_FAILED;
	}
	if (s->map != MAP_FAILED)
		s->map_len = size;
	s->size = size;
	s->ops = &file_ops;
	return 0;
fail:
	close(s->fd);
	return -1;
}

/* ---- Serving: the store as libdmuser callbacks ------------------------ */

enum counter {
	C_READS, C_WRITES, C_FLUSHES, C_DISCARDS, C_WRITE_ZEROES,
	C_SECURE_ERASES, C_UNSUPPORTED, C_ERRORS, C_FUA, C_PREFLUSH,
	C_BYTES_READ, C_BYTES_WRITTEN, C_NR
};

static const char *const counter_names[C_NR] = {
	"reads", "writes", "flushes", "discards", "write_zeroes",
	"secure_erases", "unsupported", "errors", "fua", "preflush",
	"bytes_read", "bytes_written",
};

static _Atomic uint64_t counters[C_NR];

static void count(enum counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

static struct serve_options {
	const char *channel, *file, *stats_path, *pid_path;
	uint64_t ram_size, null_size;
	unsigned int threads, batch;
	size_t split;
	bool read_batch, write_batch, verbose, direct, copy, remap, notify;
	enum dmu_transport transport;
	unsigned int ring_depth;
	unsigned int ring_data;
	unsigned int ring_busy_poll;
} sopt = { .threads = 1, .batch = 1 };

/* [off, off + len) lies in the store. */
static bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return len <= size && off <= size - len;
}

static int serve_op(struct store *s, struct dmu_req *r, enum counter c)
{
	bool fua = r->flags & DM_USER_REQ_MAP_FLAG_FUA;
	bool preflush = r->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH;
	int rc = 0;

	if (fua)
		count(C_FUA, 1);
	if (preflush)
		count(C_PREFLUSH, 1);
	count(c, 1);

	/* An empty flush has no range, whatever its sector says. */
	if (r->type == DM_USER_REQ_MAP_FLUSH) {
		rc = s->ops->flush(s);
	} else if (!range_ok(r->offset, r->len, s->size)) {
		rc = -ERANGE;
	} else {
		if (preflush)
			rc = s->ops->flush(s);
		/* Answered from the store itself: see struct dmu_req. */
		if (!rc && r->type == DM_USER_REQ_MAP_READ && s->ops->read_place &&
		    !sopt.copy) {
			unsigned char *p = s->ops->read_place(s, r->offset, r->len,
							      r->data_may_fault);

			if (p)
				r->data = p;
		}
		if (!rc)
			rc = s->ops->op[r->type](s, r->data, r->offset, r->len);
		/* FUA means nothing to a read. */
		if (!rc && fua && r->type != DM_USER_REQ_MAP_READ)
			rc = s->ops->flush(s);
	}

	if (!rc && r->type == DM_USER_REQ_MAP_READ)
		count(C_BYTES_READ, r->len);
	if (!rc && r->type == DM_USER_REQ_MAP_WRITE)
		count(C_BYTES_WRITTEN, r->len);
	if (rc == -EOPNOTSUPP)
		count(C_UNSUPPORTED, 1);
	else if (rc)
		count(C_ERRORS, 1);
	return rc;
}

/* The counter of each request type. */
static const enum counter by_type[] = {
	[DM_USER_REQ_MAP_READ] = C_READS,
	[DM_USER_REQ_MAP_WRITE] = C_WRITES,
	[DM_USER_REQ_MAP_FLUSH] = C_FLUSHES,
	[DM_USER_REQ_MAP_DISCARD] = C_DISCARDS,
	[DM_USER_REQ_MAP_SECURE_ERASE] = C_SECURE_ERASES,
	[DM_USER_REQ_MAP_WRITE_ZEROES] = C_WRITE_ZEROES,
};

/* Every operation goes through serve_op(); its counter follows the type. */
static int cb_serve(void *ctx, struct dmu_req *r)
{
	return serve_op(ctx, r, by_type[r->type]);
}

/*
 * --remap: nothing kept, every request sent where it is on the target's
 * backing device by a remap answer, its data never through the daemon: a
 * daemon in the I/O path that changes nothing, to test the remap path
 * and to measure it against dm-linear.
 */
static int cb_remap(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	count(by_type[r->type], 1);
	/* The kernel sent a flush to the backing device already. */
	if (r->type == DM_USER_REQ_MAP_FLUSH)
		return 0;
	if (r->type == DM_USER_REQ_MAP_READ)
		count(C_BYTES_READ, r->len);
	if (r->type == DM_USER_REQ_MAP_WRITE)
		count(C_BYTES_WRITTEN, r->len);
	return DMU_REMAP;
}

static const struct dmu_ops remap_dmu_ops = {
	.read = cb_remap,
	.write = cb_remap,
	.flush = cb_remap,
	.discard = cb_remap,
	.write_zeroes = cb_remap,
	.secure_erase = cb_remap,
};

/* A WRITE's data goes straight to its place in the store, where it has one. */
static void *cb_write_buffer(void *ctx, const struct dmu_req *r)
{
	struct store *s = ctx;

	if (!s->ops->write_place || !range_ok(r->offset, r->len, s->size))
		return NULL;
	return s->ops->write_place(s, r->offset, r->len);
}

static const struct dmu_ops store_dmu_ops = {
	.read = cb_serve,
	.write = cb_serve,
	.flush = cb_serve,
	.discard = cb_serve,
	.write_zeroes = cb_serve,
	.secure_erase = cb_serve,
	.write_buffer = cb_write_buffer,
};

/* Set by SIGTERM and SIGINT; the serving threads look at it. */
static volatile int stop_flag;
static volatile sig_atomic_t stop_signal;
/* The pid file or READY=1 could not be written: the exit status is 1. */
static bool ready_failed;

/* Through a temporary name, so that a poller never sees a partial file. */
static int write_file_atomically(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	int fd, n, err;

	n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		report(ENAMETOOLONG, "%s", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		report(errno, "open %s", tmp);
		return -1;
	}
	err = pio_all(fd, true, (unsigned char *)text, strlen(text), 0);
	if (err)
		report(err, "write %s", tmp);
	if (close(fd) && !err) {
		err = errno;
		report(err, "close %s", tmp);
	}
	if (!err && rename(tmp, path)) {
		err = errno;
		report(err, "rename %s to %s", tmp, path);
	}
	if (err)
		unlink(tmp);
	return err ? -1 : 0;
}

static int write_stats(void)
{
	char text[C_NR * 48];	/* name and a 20-digit value per line */
	size_t pos = 0;
	int i;

	if (!sopt.stats_path)
		return 0;
	for (i = 0; i < C_NR; i++)
		pos += snprintf(text + pos, sizeof(text) - pos, "%s %" PRIu64 "\n",
				counter_names[i], atomic_load(&counters[i]));
	return write_file_atomically(sopt.stats_path, text);
}

/*
 * --notify: a message to the service manager (sd_notify(3)). 0 when it
 * was sent or there is no manager to send it to (NOTIFY_SOCKET unset: the
 * command line run by hand), -1 when sending failed.
 */
static int notify_manager(const char *what)
{
	int rc;

	if (!sopt.notify)
		return 0;
	rc = sd_notify(0, what);
	if (rc < 0) {
		/* The first assignment names the message. */
		report(-rc, "sd_notify %.*s to $NOTIFY_SOCKET %s",
		       (int)strcspn(what, "\n"), what,
		       getenv("NOTIFY_SOCKET"));
		return -1;
	}
	return 0;
}

/*
 * Every channel is open: tell whoever waits for the pid file or for
 * READY=1. Without either nobody would know we serve, so failing to send
 * one stops serving.
 */
static void serve_ready(void *ctx)
{
	char pid[32], msg[128 + PATH_MAX];

	(void)ctx;
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving %s on %u channel%s",
		 sopt.channel, sopt.threads, sopt.threads == 1 ? "" : "s");
	if ((sopt.pid_path && write_file_atomically(sopt.pid_path, pid)) ||
	    notify_manager(msg)) {
		ready_failed = true;
		stop_flag = 1;
	}
}

static void stop_handler(int sig)
{
	stop_signal = sig;
	stop_flag = 1;
}

static int setup_signals(void)
{
	/* No SA_RESTART: a thread waiting in poll() looks at the flag now. */
	struct sigaction sa = { .sa_handler = stop_handler };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) {
		report(errno, "sigaction");
		return -1;
	}
	return 0;
}

/* dmu_prepare_daemon() returns the first failure: find out which it was. */
static void prepare_daemon(void)
{
	int rc = dmu_prepare_daemon();

	if (!rc)
		return;
	if (prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) == 1)
		report(rc, "warning: memory not locked: mlockall(MCL_CURRENT | MCL_FUTURE) needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK (continuing, but the daemon's memory may be paged out while the device waits for it)");
	else
		report(rc, "warning: prctl(PR_SET_IO_FLUSHER, 1) (needs CAP_SYS_RESOURCE and Linux 5.6; continuing, but reclaim may deadlock on this device)");
}

static void serve_usage(FILE *f)
{
	fprintf(f,
"Usage: %s%s [options] <name-or-path>\n"
"Serve the I/O of a dm-user target through its channels: <name> stands for\n"
"/dev/dm-user/<name>; a path (with a '/') is opened as it is.\n"
"\n"
"Store (exactly one):\n"
"  -r, --ram <size>      zero-filled RAM store of <size> bytes\n"
"                        (suffix K, M, G or T: powers of 1024)\n"
"  -f, --file <path>     regular file or block device: written with pwrite,\n"
"                        read from a mapping of it on a ring, else pread\n"
"  -n, --null <size>     keep nothing: reads return zeroes, writes are dropped\n"
"                        (for measuring the round trip)\n"
"  -m, --remap           keep nothing: every request goes where it is on the\n"
"                        target's backing device by a remap answer, its\n"
"                        data never through the daemon (a pass-through\n"
"                        daemon, for testing and measuring filters)\n"
"Options:\n"
"  -d, --direct          open the --file with O_DIRECT: no page cache, so the\n"
"                        daemon allocates nothing to write it (use it when\n"
"                        the device is swap or under memory pressure)\n"
"  -t, --threads <n>     open <n> channels, one thread each (default 1, max %d)\n"
"  -q, --batch <n>       read up to <n> requests, then answer them in reverse\n"
"                        order (default 1, max %d)\n"
"  -B, --read-batch      negotiate DM_USER_EXT_READ_BATCH: many requests per\n"
"                        read()\n"
"  -W, --write-batch     negotiate DM_USER_EXT_WRITE_BATCH, if the kernel has\n"
"                        it: the answers to one batch in one write()\n"
"  -T, --transport <t>   how requests travel: 'ring' (shared memory, one\n"
"                        ioctl a batch), 'rw' (read() and write(), the RFC\n"
"                        protocol) or 'auto' (default: the ring where the\n"
"                        kernel has it and no read()/write() option is given)\n"
"  -R, --ring-depth <n>  slots of each ring, a power of two up to 1024\n"
"                        (default: the kernel's, 64)\n"
"  -D, --ring-data <size> bytes of each ring's data area, a multiple of 4K\n"
"                        from 1M to 256M (suffix K or M; default: the\n"
"                        kernel's, 1M), all allocated when the ring is set up\n"
"  -P, --busy-poll <us>  each ring spins up to <us> microseconds (max 1000)\n"
"                        for a request before it sleeps: less latency for\n"
"                        more CPU time (default 0: never spins)\n"
"  -c, --copy            move data through buffers of the library even where\n"
"                        the kernel could copy it to and from the RAM or null\n"
"                        store in place (to measure what in-place saves)\n"
"  -s, --split <bytes>   split every read() and write() on the channel into\n"
"                        pieces of at most <bytes> (default 0: no splitting)\n"
"  -S, --stats <path>    write counters to <path> on exit\n"
"  -p, --pidfile <path>  write the pid to <path> once every channel is open\n"
"  -N, --notify          tell the service manager READY=1 once every channel\n"
"                        is open, STOPPING=1 when a signal stopped it\n"
"                        (sd_notify(3), for systemd's Type=notify; nothing\n"
"                        without $NOTIFY_SOCKET)\n"
"  -v, --verbose         log every request to stderr\n"
"  -h, --help            show this help\n"
"\n"
"Exit status: 0 after SIGTERM/SIGINT or removal of the target, 1 on error,\n"
"2 on bad usage.\n", prog, strcmp(prog, "dmuserd") ? " serve" : "",
		MAX_THREADS, MAX_BATCH);
}

static void serve_parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ram", required_argument, NULL, 'r' },
		{ "file", required_argument, NULL, 'f' },
		{ "null", required_argument, NULL, 'n' },
		{ "remap", no_argument, NULL, 'm' },
		{ "direct", no_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 't' },
		{ "batch", required_argument, NULL, 'q' },
		{ "read-batch", no_argument, NULL, 'B' },
		{ "write-batch", no_argument, NULL, 'W' },
		{ "copy", no_argument, NULL, 'c' },
		{ "transport", required_argument, NULL, 'T' },
		{ "ring-depth", required_argument, NULL, 'R' },
		{ "ring-data", required_argument, NULL, 'D' },
		{ "busy-poll", required_argument, NULL, 'P' },
		{ "split", required_argument, NULL, 's' },
		{ "stats", required_argument, NULL, 'S' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "notify", no_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ring_opt, *rw_opt;
	int c;

	while ((c = getopt_long(argc, argv, ":r:f:n:mdt:q:BWcT:R:D:P:s:S:p:Nvh",
				longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			sopt.ram_size = parse_number("--ram", optarg, true, 1,
						     UINT64_MAX);
			break;
		case 'n':
			sopt.null_size = parse_number("--null", optarg, true, 1,
						      UINT64_MAX);
			break;
		case 'm':
			sopt.remap = true;
			break;
		case 'd':
			sopt.direct = true;
			break;
		case 'f':
			sopt.file = optarg;
			break;
		case 't':
			sopt.threads = (unsigned int)parse_number("--threads",
						optarg, false, 1, MAX_THREADS);
			break;
		case 'q':
			sopt.batch = (unsigned int)parse_number("--batch",
						optarg, false, 1, MAX_BATCH);
			break;
		case 'B':
			sopt.read_batch = true;
			break;
		case 'W':
			sopt.write_batch = true;
			break;
		case 'c':
			sopt.copy = true;
			break;
		case 'T':
			if (!strcmp(optarg, "auto"))
				sopt.transport = DMU_TRANSPORT_AUTO;
			else if (!strcmp(optarg, "ring"))
				sopt.transport = DMU_TRANSPORT_RING;
			else if (!strcmp(optarg, "rw"))
				sopt.transport = DMU_TRANSPORT_RW;
			else
				bad_usage("--transport must be auto, ring or rw, not '%s'",
					  optarg);
			break;
		case 'R':
			sopt.ring_depth = (unsigned int)parse_number(
				"--ring-depth", optarg, false, 1,
				DM_USER_RING_MAX_DEPTH);
			if (sopt.ring_depth & (sopt.ring_depth - 1))
				bad_usage("--ring-depth must be a power of two");
			break;
		case 'D':
			sopt.ring_data = (unsigned int)parse_number(
				"--ring-data", optarg, true, 1 << 20,
				DM_USER_RING_MAX_DATA);
			if (sopt.ring_data % 4096)
				bad_usage("--ring-data must be a multiple of 4K");
			break;
		case 'P':
			sopt.ring_busy_poll =
				(unsigned int)parse_number("--busy-poll",
					optarg, false, 0,
					DM_USER_RING_MAX_BUSY_POLL);
			break;
		case 's':
			sopt.split = (size_t)parse_number("--split", optarg,
						false, 0, SSIZE_MAX);
			break;
		case 'S':
			sopt.stats_path = optarg;
			break;
		case 'p':
			sopt.pid_path = optarg;
			break;
		case 'N':
			sopt.notify = true;
			break;
		case 'v':
			sopt.verbose = true;
			break;
		case 'h':
			serve_usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	if ((sopt.ram_size != 0) + (sopt.file != NULL) +
	    (sopt.null_size != 0) + sopt.remap != 1)
		bad_usage("exactly one of --ram, --file, --null and --remap is required");
	if (sopt.remap && sopt.copy)
		bad_usage("--copy does not apply to --remap, which moves no data");
	if (sopt.direct && !sopt.file)
		bad_usage("--direct applies to --file only");
	/* As dmu_serve() refuses them, with the options named. */
	ring_opt = sopt.ring_depth ? "--ring-depth" :
		   sopt.ring_data ? "--ring-data" :
		   sopt.ring_busy_poll ? "--busy-poll" : NULL;
	rw_opt = sopt.batch > 1 ? "--batch" :
		 sopt.read_batch ? "--read-batch" :
		 sopt.write_batch ? "--write-batch" :
		 sopt.split ? "--split" : NULL;
	if (ring_opt && sopt.transport == DMU_TRANSPORT_RW)
		bad_usage("%s applies to the ring, not --transport rw",
			  ring_opt);
	if (rw_opt && sopt.transport == DMU_TRANSPORT_RING)
		bad_usage("%s applies to read() and write(), not --transport ring",
			  rw_opt);
	if (ring_opt && rw_opt)
		bad_usage("%s applies to the ring, which %s turns off",
			  ring_opt, rw_opt);
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <name-or-path>"
					 : "more than one <name-or-path>");
	sopt.channel = argv[optind];
}

static int cmd_serve(int argc, char **argv)
{
	struct dmu_ops ops = store_dmu_ops;
	struct dmu_serve_opts opts = { 0 };
	struct store store = { 0 };
	int status = 0, rc;

	usage_fn = serve_usage;
	serve_parse(argc, argv);
	if (setup_signals())
		return 1;
	/*
	 * Before the store is opened and the threads exist: the flush flag
	 * is per thread and inherited, and the store is allocated locked.
	 */
	prepare_daemon();
	if (sopt.remap) {
		ops = remap_dmu_ops;
		opts.remap = true;
	} else if (sopt.null_size ? null_open(&store, sopt.null_size) :
		   sopt.file ? file_open(&store, sopt.file, sopt.direct) :
		   ram_open(&store, sopt.ram_size)) {
		return 1;
	}
	if (sopt.verbose && !sopt.remap)
		report(0, "serving %" PRIu64 " bytes of %s on %s", store.size,
		       sopt.file ? sopt.file : sopt.null_size ? "nothing" : "RAM",
		       sopt.channel);

	/* --copy: every byte through the library's buffers. */
	if (sopt.copy)
		ops.write_buffer = NULL;
	opts.threads = sopt.threads;
	opts.batch = sopt.batch;
	opts.split = sopt.split;
	opts.read_batch = sopt.read_batch;
	opts.write_batch = sopt.write_batch;
	opts.transport = sopt.transport;
	opts.ring_depth = sopt.ring_depth;
	opts.ring_data = sopt.ring_data;
	opts.ring_busy_poll = sopt.ring_busy_poll;
	opts.verbose = sopt.verbose;
	opts.stop = &stop_flag;
	opts.ready = serve_ready;
	rc = dmu_serve(sopt.channel, &ops, &store, &opts);
	/* The answers in flight are sent: what is left is to close. */
	if (stop_signal && notify_manager("STOPPING=1"))
		status = 1;
	if (rc) {
		report_hint(rc, HINT_NODE, NULL, sopt.channel, "serve %s%s",
			    strchr(sopt.channel, '/') ? "" : "/dev/dm-user/",
			    sopt.channel);
		status = 1;
	}
	if (ready_failed)
		status = 1;
	if (sopt.verbose && stop_signal)
		report(0, "%s: stopped", strsignal(stop_signal));
	if (write_stats())
		status = 1;
	if (store.ops)
		store.ops->close(&store);
	return status;
}

/* ---- create, remove, list, info, set ---------------------------------- */

static void create_usage(FILE *f)
{
	fprintf(f,
"Usage: %s create <dev> --size <size> [--name <name>] [--features \"<words>\"]\n"
"                 [--if-missing]\n"
"Create device-mapper device <dev> with one user target over all of it,\n"
"and wait for /dev/dm-user/<name>.\n"
"\n"
"  -s, --size <size>       bytes, a multiple of 512: a number with an\n"
"                          optional suffix K, M, G or T (powers of 1024),\n"
"                          or 512-byte sectors with the suffix 's'\n"
"  -n, --name <name>       the target's name (default: <dev>)\n"
"  -F, --features <words>  feature words without their count, e.g.\n"
"                          \"block_size 4096 no_discard\"\n"
"  -e, --if-missing        a device <dev> that exists already is fine if its\n"
"                          table is one user target <name> of <size> (its\n"
"                          features are not compared): nothing is done\n"
"  -h, --help              show this help\n", prog);
}

/* Bytes (suffixes K, M, G, T) or sectors (suffix s); returns sectors. */
static uint64_t parse_size(const char *s)
{
	size_t len = strlen(s);
	uint64_t bytes;

	if (len > 1 && (s[len - 1] == 's' || s[len - 1] == 'S')) {
		char num[32];

		if (len - 1 >= sizeof(num))
			bad_usage("--size: '%s' is too large", s);
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		return parse_number("--size", num, false, 1,
				    UINT64_MAX / SECTOR_SIZE);
	}
	bytes = parse_number("--size", s, true, 1, UINT64_MAX);
	if (bytes % SECTOR_SIZE)
		bad_usage("--size: %" PRIu64 " bytes is not a multiple of %u",
			  bytes, SECTOR_SIZE);
	return bytes / SECTOR_SIZE;
}

/*
 * create --if-missing found @dev: 0 if its table is one user target
 * @name of @sectors, else 1 with what it is said.
 */
static int check_existing(const char *dev, const char *name, uint64_t sectors)
{
	char table[4096], tname[DM_USER_NAME_MAX + 2];
	unsigned long long start, len;
	int rc;

	rc = dmu_dev_table(dev, table, sizeof(table));
	if (rc) {
		report(rc, "create %s: it exists, but its table cannot be read", dev);
		return 1;
	}
	/* Lines are separated by newlines: one target has none. */
	if (sscanf(table, "%llu %llu user %*s %*s %65s", &start, &len,
		   tname) != 3 || start || strchr(table, '\n')) {
		report(0, "create %s: it exists, and is not one user target: %s",
		       dev, table);
		return 1;
	}
	if (strcmp(tname, name) || len != sectors) {
		report(0, "create %s: it exists as user target '%s' of %llu sectors, not '%s' of %" PRIu64,
		       dev, tname, len, name, sectors);
		return 1;
	}
	return 0;
}

static int cmd_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "name", required_argument, NULL, 'n' },
		{ "features", required_argument, NULL, 'F' },
		{ "if-missing", no_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dev, *name = NULL, *features = NULL;
	bool if_missing = false;
	uint64_t sectors = 0;
	size_t tlen;
	char *table;
	int c, rc;

	usage_fn = create_usage;
	while ((c = getopt_long(argc, argv, ":s:n:F:eh", longopts, NULL)) != -1) {
		switch (c) {
		case 'e':
			if_missing = true;
			break;
		case 's':
			sectors = parse_size(optarg);
			break;
		case 'n':
			name = optarg;
			break;
		case 'F':
			features = optarg;
			break;
		case 'h':
			create_usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <dev>" : "more than one <dev>");
	if (!sectors)
		bad_usage("--size is required");
	dev = argv[optind];
	if (!name)
		name = dev;

	tlen = strlen(name) + (features ? strlen(features) : 0) + 128;
	table = malloc(tlen);
	if (!table) {
		report(errno, "malloc");
		return 1;
	}
	rc = dmu_table_line(table, tlen, sectors, name, features);
	if (rc) {
		report(rc, "table line for target '%s'", name);
		free(table);
		return 1;
	}
	rc = dmu_dev_create(dev, table);
	free(table);
	if (rc == -EEXIST && if_missing) {
		if (check_existing(dev, name, sectors))
			return 1;
	} else if (rc) {
		if (rc == -EIO && dm_last_errno)
			rc = -dm_last_errno;
		report_hint(rc, HINT_CREATE, dev, name, "create %s", dev);
		return 1;
	}
	rc = dmu_wait_node(name, NODE_WAIT_MS);
	if (rc) {
		report(rc, "wait for /dev/dm-user/%s", name);
		return 1;
	}
	return 0;
}

/*
 * Commands without options: -h, or exactly @want arguments (after an
 * optional "--"). Returns the first of them.
 */
static char **take_args(int argc, char **argv, int want, void (*usage)(FILE *))
{
	int first = 1;

	usage_fn = usage;
	if (argc > 1 && !strcmp(argv[1], "--")) {
		first = 2;
	} else {
		int i;

		for (i = 1; i < argc; i++) {
			if (wants_help(argv[i])) {
				usage(stdout);
				exit(0);
			}
			if (argv[i][0] == '-' && argv[i][1])
				bad_usage("unknown option '%s'", argv[i]);
		}
	}
	if (argc - first < want)
		bad_usage("missing argument");
	if (argc - first > want)
		bad_usage("unexpected argument '%s'", argv[first + want]);
	return argv + first;
}

static void remove_usage(FILE *f)
{
	fprintf(f,
"Usage: %s remove <dev>\n"
"Remove device-mapper device <dev>; fails while the device is open.\n", prog);
}

static int cmd_remove(int argc, char **argv)
{
	const char *dev = take_args(argc, argv, 1, remove_usage)[0];
	int rc;

	rc = dmu_dev_remove(dev);
	if (rc) {
		report_hint(rc, HINT_DEVICE, dev, NULL, "remove %s", dev);
		return 1;
	}
	return 0;
}

/* The nodes of @arg's user targets, one a line. */
static int print_attached(void *arg, const struct dmu_target_desc *t)
{
	if (!strcmp(t->dev, arg))
		printf("/dev/dm-user/%s\n", t->name);
	return 0;
}

static void attach_usage(FILE *f)
{
	fprintf(f,
"Usage: %s attach <dev> [--name <name>] [--features \"<words>\"] [--claim]\n"
"Put user targets under live device-mapper device <dev>, whose table must be\n"
"linear targets only (an LVM logical volume, say): each becomes a user\n"
"target over the same range of the same device, made live by a noflush\n"
"suspend and a resume, so a mounted filesystem sees no error. Prints the\n"
"targets' nodes, /dev/dm-user/<name>[_<i>].\n"
"\n"
"  -n, --name <name>       the targets' name, with _0, _1... added when the\n"
"                          table has several segments (default: <dev>)\n"
"  -F, --features <words>  more feature words for every target, without\n"
"                          their count, e.g. \"notify_writes\"\n"
"  -c, --claim             start with everything claimed, so that all I/O\n"
"                          waits for a daemon (default: passthrough, I/O\n"
"                          goes where it went until a daemon claims ranges)\n"
"  -h, --help              show this help\n", prog);
}

static void detach_usage(FILE *f)
{
	fprintf(f,
"Usage: %s detach <dev>\n"
"Put linear targets back under device <dev>: each user target with a\n"
"backing device becomes a linear target over it, made live by a noflush\n"
"suspend and a resume. Works with the daemon dead; what a daemon kept\n"
"outside the backing device is no longer seen.\n", prog);
}

/* Says why a table cannot be attached to or detached from, if it can tell. */
static void explain_table(const char *dev, const char *want)
{
	char table[4096];

	if (dmu_dev_table(dev, table, sizeof(table)))
		return;
	report(0, "%s needs a live table of %s only; it is:\n%s", dev, want,
	       table[0] ? table : "(empty)");
}

static int cmd_attach(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "features", required_argument, NULL, 'F' },
		{ "claim", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *features = NULL, *dev;
	bool claim = false;
	int c, rc;

	usage_fn = attach_usage;
	while ((c = getopt_long(argc, argv, ":n:F:ch", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'F':
			features = optarg;
			break;
		case 'c':
			claim = true;
			break;
		case 'h':
			attach_usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <dev>" : "more than one <dev>");
	dev = argv[optind];
	rc = dmu_attach(dev, name, features, claim);
	if (rc) {
		report(rc, "attach %s", dev);
		if (rc == -EMEDIUMTYPE)
			explain_table(dev, "linear targets");
		if (rc == -EBUSY)
			report(0, "%s is suspended, has an inactive table, or a target name is in use",
			       dev);
		if (rc == -EREMOTEIO)
			report(0, "%s is left suspended: dmsetup resume %s", dev,
			       dev);
		return 1;
	}
	return dmu_dev_list(print_attached, (void *)dev) ? 1 : finish_stdout();
}

static int cmd_detach(int argc, char **argv)
{
	const char *dev = take_args(argc, argv, 1, detach_usage)[0];
	int rc;

	rc = dmu_detach(dev);
	if (rc) {
		report(rc, "detach %s", dev);
		if (rc == -EMEDIUMTYPE)
			explain_table(dev, "user targets with a backing device");
		if (rc == -EBUSY)
			report(0, "%s is suspended or has an inactive table", dev);
		if (rc == -EREMOTEIO)
			report(0, "%s is left suspended: dmsetup resume %s", dev,
			       dev);
		return 1;
	}
	return 0;
}

static void list_usage(FILE *f)
{
	fprintf(f,
"Usage: %s list [--json]\n"
"The user targets of every live device, a line each, as columns: DEVICE\n"
"(device-mapper name), TARGET (its name under /dev/dm-user), START and SIZE\n"
"(in the device), BLOCK (block size), DAEMON (attached, waiting or\n"
"failing), CHANNELS (the daemons' open channels) and QUEUED (requests\n"
"waiting to be read). A target whose node cannot be opened shows \"-\" in\n"
"the last four.\n"
"  -j, --json   a JSON array of objects instead: device, target, start and\n"
"               length (sectors), and block_size, daemon, channels and\n"
"               queued, or error (why the node could not be asked)\n"
"  -h, --help   show this help\n", prog);
}

/* What list shows of a target: its table entry and what GET_INFO says. */
struct list_row {
	char dev[DM_NAME_LEN];
	char name[DM_USER_NAME_MAX + 1];
	uint64_t start, length;
	int err;			/* 0: info holds GET_INFO's reply */
	struct dmu_info info;
};

struct list_rows {
	struct list_row *row;
	size_t nr, cap;
};

static int channel_info(const char *name, struct dmu_info *info);

static int collect_target(void *arg, const struct dmu_target_desc *t)
{
	struct list_rows *rows = arg;
	struct list_row *r;

	if (rows->nr == rows->cap) {
		size_t cap = rows->cap ? 2 * rows->cap : 16;
		struct list_row *n = realloc(rows->row, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		rows->row = n;
		rows->cap = cap;
	}
	r = &rows->row[rows->nr++];
	snprintf(r->dev, sizeof(r->dev), "%s", t->dev);
	snprintf(r->name, sizeof(r->name), "%s", t->name);
	r->start = t->start;
	r->length = t->length;
	return 0;
}

/* @bytes with an IEC unit, whole where it is whole: "1 GiB", "1.5 MiB". */
static const char *human_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB", "EiB" };
	unsigned int u = 0;
	double v = (double)bytes;

	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0 || bytes % (1ULL << (10 * u)) == 0)
		snprintf(buf, len, "%.0f %s", v, unit[u]);
	else
		snprintf(buf, len, "%.2f %s", v, unit[u]);
	return buf;
}

static const char *daemon_state_name(uint32_t state);

/* Prints the JSON text of @obj and frees it; 0, or 1 on an error. */
static int put_json(struct json_object *obj)
{
	const char *text;
	int rc = 1;

	if (!obj) {
		report(ENOMEM, "build the JSON output");
		return 1;
	}
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
					      JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text) {
		puts(text);
		rc = finish_stdout();
	} else {
		report(ENOMEM, "format the JSON output");
	}
	json_object_put(obj);
	return rc;
}

/* json_object_object_add() that notes a failure in *@ok. */
static void json_add(struct json_object *o, const char *key,
		     struct json_object *v, bool *ok)
{
	if (!v || json_object_object_add(o, key, v)) {
		json_object_put(v);
		*ok = false;
	}
}

static struct json_object *list_json(const struct list_rows *rows)
{
	struct json_object *arr = json_object_new_array();
	bool ok = arr != NULL;
	size_t i;

	for (i = 0; ok && i < rows->nr; i++) {
		const struct list_row *r = &rows->row[i];
		struct json_object *o = json_object_new_object();
		char ebuf[128];

		if (!o || json_object_array_add(arr, o)) {
			json_object_put(o);
			ok = false;
			break;
		}
		json_add(o, "device", json_object_new_string(r->dev), &ok);
		json_add(o, "target", json_object_new_string(r->name), &ok);
		json_add(o, "start", json_object_new_uint64(r->start), &ok);
		json_add(o, "length", json_object_new_uint64(r->length), &ok);
		if (r->err) {
			json_add(o, "error", json_object_new_string(
				 strerror_r(-r->err, ebuf, sizeof(ebuf))), &ok);
			continue;
		}
		json_add(o, "block_size",
			 json_object_new_uint64(r->info.block_size), &ok);
		json_add(o, "daemon", json_object_new_string(
			 daemon_state_name(r->info.daemon_state)), &ok);
		json_add(o, "channels",
			 json_object_new_uint64(r->info.channels), &ok);
		json_add(o, "queued",
			 json_object_new_uint64(r->info.queued), &ok);
	}
	if (!ok) {
		json_object_put(arr);
		return NULL;
	}
	return arr;
}

static void list_text(const struct list_rows *rows)
{
	int wdev = (int)strlen("DEVICE"), wname = (int)strlen("TARGET");
	char size[32], num[4][24];
	size_t i;

	for (i = 0; i < rows->nr; i++) {
		int l = (int)strlen(rows->row[i].dev);

		wdev = l > wdev ? l : wdev;
		l = (int)strlen(rows->row[i].name);
		wname = l > wname ? l : wname;
	}
	printf("%-*s  %-*s  %12s  %10s  %5s  %-8s  %8s  %6s\n", wdev, "DEVICE",
	       wname, "TARGET", "START", "SIZE", "BLOCK", "DAEMON", "CHANNELS",
	       "QUEUED");
	for (i = 0; i < rows->nr; i++) {
		const struct list_row *r = &rows->row[i];

		snprintf(num[0], sizeof(num[0]), "%" PRIu32, r->info.block_size);
		snprintf(num[1], sizeof(num[1]), "%" PRIu32, r->info.channels);
		snprintf(num[2], sizeof(num[2]), "%" PRIu32, r->info.queued);
		snprintf(num[3], sizeof(num[3]), "%" PRIu64, r->start);
		printf("%-*s  %-*s  %12s  %10s  %5s  %-8s  %8s  %6s\n", wdev,
		       r->dev, wname, r->name, num[3],
		       human_bytes(r->length * SECTOR_SIZE, size, sizeof(size)),
		       r->err ? "-" : num[0],
		       r->err ? "-" : daemon_state_name(r->info.daemon_state),
		       r->err ? "-" : num[1], r->err ? "-" : num[2]);
	}
}

static int cmd_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct list_rows rows = { 0 };
	bool json = false;
	int c, rc;
	size_t i;

	usage_fn = list_usage;
	while ((c = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			list_usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	if (optind != argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	rc = dmu_dev_list(collect_target, &rows);
	if (rc) {
		report(rc, "list devices");
		free(rows.row);
		return 1;
	}
	for (i = 0; i < rows.nr; i++)
		rows.row[i].err = channel_info(rows.row[i].name,
					       &rows.row[i].info);
	if (json) {
		rc = put_json(list_json(&rows));
	} else {
		list_text(&rows);
		rc = finish_stdout();
	}
	free(rows.row);
	return rc;
}

static void info_usage(FILE *f)
{
	fprintf(f,
"Usage: %s info [--json] <name-or-path>\n"
"What the target reports, for people: its size and block size, the\n"
"operations it serves, the daemon's state in words and its channels, the\n"
"requests queued, held back and in flight, what happened since it was\n"
"loaded, its backing device and claimed ranges, its settings with\n"
"(default) after those a table without the word would have, and a table of\n"
"requests, bytes and errors per operation.\n"
"  -j, --json   a JSON object instead, for scripts: version, features, name,\n"
"               size (sectors), block_size, max_io (bytes), ops (names),\n"
"               channels (the daemons', this command's own not counted),\n"
"               queued, backlog, inflight, daemon, requeued, timeouts,\n"
"               bad_answers, remapped, reloads; with a backing device\n"
"               backing (major:minor), backing_offset (sectors),\n"
"               claim_ranges, passed and notified; stats (per operation:\n"
"               requests, bytes, errors) and settings (max_queued,\n"
"               no_daemon_timeout (seconds, or \"forever\"), request_timeout,\n"
"               notify_writes)\n"
"  -h, --help   show this help\n", prog);
}

/*
 * GET_INFO on a channel of its own: 0 or a negative errno. The channel
 * this opens is not counted among the daemons' in info->channels.
 */
static int channel_info(const char *name, struct dmu_info *info)
{
	char what[PATH_MAX + 32];
	int fd, rc;

	fd = open_channel(name, what, sizeof(what));
	if (fd < 0)
		return fd;
	rc = dmu_get_info(fd, info);
	close(fd);
	if (!rc && info->channels)
		info->channels--;
	return rc;
}

static const char *const op_names[DMU_NR_OPS] = {
	[DMU_OP_READ] = "read",
	[DMU_OP_WRITE] = "write",
	[DMU_OP_FLUSH] = "flush",
	[DMU_OP_DISCARD] = "discard",
	[DMU_OP_WRITE_ZEROES] = "write_zeroes",
	[DMU_OP_SECURE_ERASE] = "secure_erase",
};

static const char *daemon_state_name(uint32_t state)
{
	switch (state) {
	case DM_USER_STATE_ATTACHED:
		return "attached";
	case DM_USER_STATE_WAITING:
		return "waiting";
	case DM_USER_STATE_FAILING:
		return "failing";
	default:
		return "unknown";
	}
}

/* The request types of GET_INFO's ops mask, by DM_USER_REQ_MAP_* number. */
static const char *const req_type_names[] = {
	[DM_USER_REQ_MAP_READ] = "read",
	[DM_USER_REQ_MAP_WRITE] = "write",
	[DM_USER_REQ_MAP_FLUSH] = "flush",
	[DM_USER_REQ_MAP_DISCARD] = "discard",
	[DM_USER_REQ_MAP_SECURE_ERASE] = "secure_erase",
	[DM_USER_REQ_MAP_WRITE_SAME] = "write_same",
	[DM_USER_REQ_MAP_WRITE_ZEROES] = "write_zeroes",
	[DM_USER_REQ_MAP_ZONE_OPEN] = "zone_open",
	[DM_USER_REQ_MAP_ZONE_CLOSE] = "zone_close",
	[DM_USER_REQ_MAP_ZONE_FINISH] = "zone_finish",
	[DM_USER_REQ_MAP_ZONE_APPEND] = "zone_append",
	[DM_USER_REQ_MAP_ZONE_RESET] = "zone_reset",
	[DM_USER_REQ_MAP_ZONE_RESET_ALL] = "zone_reset_all",
};

#define NR_REQ_TYPES (sizeof(req_type_names) / sizeof(req_type_names[0]))

/*
 * What a table without the word gets: the admin guide's defaults, and
 * no_daemon_timeout from the module parameter (-1: for ever). *@known is
 * false where the parameter cannot be read.
 */
static const struct dmu_params *default_params(bool *nodaemon_known)
{
	static struct dmu_params d = { .max_queued = 1024 };
	char buf[32];
	long v;
	FILE *f;

	*nodaemon_known = false;
	f = fopen("/sys/module/dm_user/parameters/no_daemon_timeout", "re");
	if (f) {
		if (fgets(buf, sizeof(buf), f)) {
			v = strtol(buf, NULL, 10);
			d.no_daemon_timeout = v < 0 ? DM_USER_TIMEOUT_FOREVER :
						      (uint32_t)v;
			*nodaemon_known = true;
		}
		fclose(f);
	}
	return &d;
}

static const char *seconds_text(uint32_t s, bool zero_off, char *buf,
				size_t len)
{
	if (s == DM_USER_TIMEOUT_FOREVER)
		snprintf(buf, len, "forever");
	else if (!s && zero_off)
		snprintf(buf, len, "off");
	else
		snprintf(buf, len, "%" PRIu32 " s", s);
	return buf;
}

static void info_text(const struct dmu_info *in, const struct dmu_params *pa,
		      int params_err)
{
	char b1[32], b2[32], b3[32];
	bool known;
	const struct dmu_params *d = default_params(&known);
	unsigned int t;
	int i;

	printf("%s: user target, control interface version %" PRIu32 "\n",
	       in->name, in->version);
	printf("  size         %s (%" PRIu64 " sectors), block size %s, at most %s a request\n",
	       human_bytes(in->size * SECTOR_SIZE, b1, sizeof(b1)), in->size,
	       human_bytes(in->block_size, b2, sizeof(b2)),
	       human_bytes(in->max_io, b3, sizeof(b3)));
	printf("  operations  ");
	for (t = 0; t < NR_REQ_TYPES; t++)
		if (in->ops & (1ULL << t) && req_type_names[t])
			printf(" %s", req_type_names[t]);
	printf("\n  daemon       %s, %" PRIu32 " channel%s\n",
	       daemon_state_name(in->daemon_state), in->channels,
	       in->channels == 1 ? "" : "s");
	printf("  requests     %" PRIu32 " queued, %" PRIu32 " held back by max_queued, %" PRIu32 " in flight\n",
	       in->queued, in->backlog, in->inflight);
	printf("  since load   %" PRIu64 " requeued, %" PRIu64 " timed out, %" PRIu64 " bad answers, %" PRIu64 " remapped, %" PRIu64 " reloads\n",
	       in->requeued, in->timeouts, in->bad_answers, in->remapped,
	       in->reloads);
	if (in->backing[0])
		printf("  backing      %s from sector %" PRIu64 ", %" PRIu32 " claimed range%s, %" PRIu64 " passed straight, %" PRIu64 " notified\n",
		       in->backing, in->backing_offset, in->claim_ranges,
		       in->claim_ranges == 1 ? "" : "s", in->passed,
		       in->notified);
	if (params_err) {
		printf("  settings     (not read: %s)\n", strerror(-params_err));
	} else {
		printf("  settings     max_queued %" PRIu32 "%s, no_daemon_timeout %s%s, request_timeout %s%s",
		       pa->max_queued,
		       pa->max_queued == d->max_queued ? " (default)" : "",
		       seconds_text(pa->no_daemon_timeout, false, b1,
				    sizeof(b1)),
		       known && pa->no_daemon_timeout == d->no_daemon_timeout ?
		       " (default)" : "",
		       seconds_text(pa->request_timeout, true, b2, sizeof(b2)),
		       !pa->request_timeout ? " (default)" : "");
		if (in->backing[0])
			printf(", notify_writes %" PRIu32 "%s", pa->notify_writes,
			       !pa->notify_writes ? " (default)" : "");
		printf("\n");
	}
	printf("  %-13s %12s %12s %8s\n", "", "requests", "bytes", "errors");
	for (i = 0; i < DMU_NR_OPS; i++)
		printf("  %-13s %12" PRIu64 " %12s %8" PRIu64 "\n", op_names[i],
		       in->stats[i].requests,
		       human_bytes(in->stats[i].bytes, b1, sizeof(b1)),
		       in->stats[i].errors);
}

static struct json_object *info_json(const struct dmu_info *in,
				     const struct dmu_params *pa,
				     int params_err)
{
	struct json_object *o = json_object_new_object();
	struct json_object *ops = json_object_new_array();
	struct json_object *stats = json_object_new_object();
	bool ok = o && ops && stats;
	unsigned int t;
	int i;

	if (!ok) {
		json_object_put(o);
		json_object_put(ops);
		json_object_put(stats);
		return NULL;
	}
	json_add(o, "name", json_object_new_string(in->name), &ok);
	json_add(o, "version", json_object_new_uint64(in->version), &ok);
	json_add(o, "features", json_object_new_uint64(in->features), &ok);
	json_add(o, "size", json_object_new_uint64(in->size), &ok);
	json_add(o, "block_size", json_object_new_uint64(in->block_size), &ok);
	json_add(o, "max_io", json_object_new_uint64(in->max_io), &ok);
	for (t = 0; t < NR_REQ_TYPES; t++)
		if (in->ops & (1ULL << t) && req_type_names[t] &&
		    json_object_array_add(ops,
				json_object_new_string(req_type_names[t])))
			ok = false;
	json_add(o, "ops", ops, &ok);
	json_add(o, "channels", json_object_new_uint64(in->channels), &ok);
	json_add(o, "queued", json_object_new_uint64(in->queued), &ok);
	json_add(o, "backlog", json_object_new_uint64(in->backlog), &ok);
	json_add(o, "inflight", json_object_new_uint64(in->inflight), &ok);
	json_add(o, "daemon", json_object_new_string(
		 daemon_state_name(in->daemon_state)), &ok);
	json_add(o, "requeued", json_object_new_uint64(in->requeued), &ok);
	json_add(o, "timeouts", json_object_new_uint64(in->timeouts), &ok);
	json_add(o, "bad_answers", json_object_new_uint64(in->bad_answers),
		 &ok);
	json_add(o, "remapped", json_object_new_uint64(in->remapped), &ok);
	json_add(o, "reloads", json_object_new_uint64(in->reloads), &ok);
	if (in->backing[0]) {
		json_add(o, "backing", json_object_new_string(in->backing), &ok);
		json_add(o, "backing_offset",
			 json_object_new_uint64(in->backing_offset), &ok);
		json_add(o, "claim_ranges",
			 json_object_new_uint64(in->claim_ranges), &ok);
		json_add(o, "passed", json_object_new_uint64(in->passed), &ok);
		json_add(o, "notified", json_object_new_uint64(in->notified),
			 &ok);
	}
	for (i = 0; i < DMU_NR_OPS; i++) {
		struct json_object *s = json_object_new_object();

		json_add(stats, op_names[i], s, &ok);
		if (!s)
			break;
		json_add(s, "requests",
			 json_object_new_uint64(in->stats[i].requests), &ok);
		json_add(s, "bytes", json_object_new_uint64(in->stats[i].bytes),
			 &ok);
		json_add(s, "errors",
			 json_object_new_uint64(in->stats[i].errors), &ok);
	}
	json_add(o, "stats", stats, &ok);
	if (!params_err) {
		struct json_object *st = json_object_new_object();

		json_add(o, "settings", st, &ok);
		if (st) {
			json_add(st, "max_queued",
				 json_object_new_uint64(pa->max_queued), &ok);
			json_add(st, "no_daemon_timeout",
				 pa->no_daemon_timeout == DM_USER_TIMEOUT_FOREVER ?
				 json_object_new_string("forever") :
				 json_object_new_uint64(pa->no_daemon_timeout),
				 &ok);
			json_add(st, "request_timeout",
				 json_object_new_uint64(pa->request_timeout),
				 &ok);
			json_add(st, "notify_writes",
				 json_object_new_uint64(pa->notify_writes), &ok);
		}
	}
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static int cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct dmu_params params = { 0 };
	char what[PATH_MAX + 32];
	struct dmu_info info;
	bool json = false;
	int c, fd, rc, prc;

	usage_fn = info_usage;
	while ((c = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			info_usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <name-or-path>" :
			  "more than one <name-or-path>");
	fd = open_channel(argv[optind], what, sizeof(what));
	if (fd < 0) {
		report_hint(fd, HINT_NODE, NULL, argv[optind], "open %s", what);
		return 1;
	}
	rc = dmu_get_info(fd, &info);
	prc = rc ? 0 : dmu_get_params(fd, &params);
	close(fd);
	if (rc) {
		report(rc, "info on %s", what);
		return 1;
	}
	/* The channel this command opened is not a daemon's. */
	if (info.channels)
		info.channels--;
	if (json)
		return put_json(info_json(&info, &params, prc));
	info_text(&info, &params, prc);
	return finish_stdout();
}

static void set_usage(FILE *f)
{
	fprintf(f,
"Usage: %s set <name-or-path> <key>=<value>...\n"
"Set tunable parameters of the target, all or none: the kernel checks\n"
"every value before it applies any. Keys:\n"
"  max_queued=<n>         requests held for daemons at once (1 to 1048576)\n"
"  no_daemon_timeout=<s>  seconds I/O waits while no daemon is attached,\n"
"                         then fails until one attaches; 0: fail at once;\n"
"                         \"forever\": wait for ever\n"
"  request_timeout=<s>    fail a request not answered within <s> seconds\n"
"                         with ETIMEDOUT; 0: off\n"
"  notify_writes=<0|1>    with a backing device: writes outside the claimed\n"
"                         ranges wait for the daemon's answer to a\n"
"                         notification (1) or go straight there (0)\n", prog);
}

/* The tunable parameters, as "dmuser set" and the kernel's text name them. */
static const struct param_key {
	const char *name;
	uint16_t tag;
	unsigned int bit;
	size_t offset;
	bool forever;	/* takes "forever" for DM_USER_TIMEOUT_FOREVER */
} param_keys[] = {
	{ "max_queued", DM_USER_ATTR_MAX_QUEUED, DMU_PARAM_MAX_QUEUED,
	  offsetof(struct dmu_params, max_queued), false },
	{ "no_daemon_timeout", DM_USER_ATTR_NO_DAEMON_TIMEOUT,
	  DMU_PARAM_NO_DAEMON_TIMEOUT,
	  offsetof(struct dmu_params, no_daemon_timeout), true },
	{ "request_timeout", DM_USER_ATTR_REQUEST_TIMEOUT,
	  DMU_PARAM_REQUEST_TIMEOUT,
	  offsetof(struct dmu_params, request_timeout), false },
	{ "notify_writes", DM_USER_ATTR_NOTIFY_WRITES,
	  DMU_PARAM_NOTIFY_WRITES,
	  offsetof(struct dmu_params, notify_writes), false },
};

static const char *attr_name(uint16_t tag)
{
	size_t k;

	for (k = 0; k < sizeof(param_keys) / sizeof(param_keys[0]); k++)
		if (param_keys[k].tag == tag)
			return param_keys[k].name;
	return NULL;
}

static int cmd_set(int argc, char **argv)
{
	struct dmu_params params = { 0 };
	unsigned int which = 0;
	const struct dmu_ctl_error *e;
	char what[PATH_MAX + 32];
	const char *name;
	int i, fd, rc;

	usage_fn = set_usage;
	for (i = 1; i < argc; i++) {
		if (wants_help(argv[i])) {
			set_usage(stdout);
			exit(0);
		}
	}
	if (argc < 2)
		bad_usage("missing <name-or-path>");
	if (argc < 3)
		bad_usage("nothing to set");
	name = argv[1];
	for (i = 2; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		const struct param_key *pk = NULL;
		uint32_t *field;
		size_t k;

		if (!eq)
			bad_usage("'%s' is not <key>=<value>", argv[i]);
		for (k = 0; k < sizeof(param_keys) / sizeof(param_keys[0]); k++)
			if (strlen(param_keys[k].name) == (size_t)(eq - argv[i]) &&
			    !strncmp(argv[i], param_keys[k].name, eq - argv[i]))
				pk = &param_keys[k];
		if (!pk)
			bad_usage("unknown parameter '%.*s'",
				  (int)(eq - argv[i]), argv[i]);
		if (which & pk->bit)
			bad_usage("%s given twice", pk->name);
		field = (uint32_t *)((char *)&params + pk->offset);
		if (pk->forever && !strcmp(eq + 1, "forever"))
			*field = DM_USER_TIMEOUT_FOREVER;
		else
			*field = (uint32_t)parse_number(pk->name, eq + 1,
							false, 0, UINT32_MAX);
		which |= pk->bit;
	}

	fd = open_channel(name, what, sizeof(what));
	if (fd < 0) {
		report_hint(fd, HINT_NODE, NULL, name, "open %s", what);
		return 1;
	}
	rc = dmu_set_params(fd, &params, which);
	e = rc ? dmu_ctl_last_error() : NULL;
	close(fd);
	if (!rc)
		return 0;
	report_hint(rc, HINT_NODE, NULL, name, "set parameters of %s", what);
	if (e && (e->reason[0] || e->tag)) {
		const char *an = attr_name(e->tag);
		char tag[64] = "";

		if (e->tag)
			snprintf(tag, sizeof(tag), " (attribute %u%s%s)",
				 e->tag, an ? ", " : "", an ? an : "");
		report(0, "the kernel says: %s%s",
		       e->reason[0] ? e->reason : "no reason given", tag);
	}
	return 1;
}

/* ---- main ------------------------------------------------------------ */

static const struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	void (*usage)(FILE *f);
} commands[] = {
	{ "create", cmd_create, create_usage },
	{ "remove", cmd_remove, remove_usage },
	{ "attach", cmd_attach, attach_usage },
	{ "detach", cmd_detach, detach_usage },
	{ "list", cmd_list, list_usage },
	{ "info", cmd_info, info_usage },
	{ "set", cmd_set, set_usage },
	{ "serve", cmd_serve, serve_usage },
};

static void main_usage(FILE *f)
{
	fprintf(f,
"Usage: %s <command> [options] [arguments]\n"
"Create, inspect and serve dm-user devices.\n"
"\n"
"Commands:\n"
"  create <dev> --size <size> [--name <name>] [--features \"<words>\"]\n"
"                     create device <dev> with one user target\n"
"  remove <dev>       remove device <dev>\n"
"  attach <dev> [--name <name>] [--features \"<words>\"] [--claim]\n"
"                     put user targets under a live linear device\n"
"  detach <dev>       put the linear targets back\n"
"  list               one line per user target: <dev> <name> <start> <length>\n"
"  info <name>        what the target reports, as \"key value\" lines\n"
"  set <name> <key>=<value>...\n"
"                     set tunable parameters of the target\n"
"  serve [options] <name-or-path>\n"
"                     serve the target's I/O from RAM or a file (the\n"
"                     reference daemon, also installed as dmuserd)\n"
"\n"
"'%s <command> -h' describes each command; '%s --version' prints the\n"
"version.\n"
"Exit status: 0 on success, 1 on error, 2 on bad usage.\n", prog, prog, prog);
}

/* "--version" or "-V", which must be the only argument. */
static bool wants_version(int argc, char **argv)
{
	if (argc < 2 ||
	    (strcmp(argv[1], "--version") && strcmp(argv[1], "-V")))
		return false;
	if (argc > 2)
		bad_usage("%s takes no arguments", argv[1]);
	return true;
}

int main(int argc, char **argv)
{
	const char *base = argv[0] ? strrchr(argv[0], '/') : NULL;
	bool as_daemon;
	unsigned int i;

	base = base ? base + 1 : argv[0] ? argv[0] : "";
	opterr = 0;	/* our own messages, followed by the usage */
	dm_log_with_errno_init(dm_log_keep_errno);
	as_daemon = !strcmp(base, "dmuserd");
	if (as_daemon)
		prog = "dmuserd";
	if (wants_version(argc, argv)) {
		printf("%s %s\n", prog, DMUSER_VERSION);
		return 0;
	}
	if (as_daemon)
		return cmd_serve(argc, argv);

	usage_fn = main_usage;
	if (argc < 2)
		bad_usage("missing <command>");
	if (wants_help(argv[1])) {
		main_usage(stdout);
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name)) {
			usage_fn = commands[i].usage;
			return commands[i].fn(argc - 1, argv + 1);
		}
	bad_usage("unknown command '%s'", argv[1]);
}
