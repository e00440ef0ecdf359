// SPDX-License-Identifier: GPL-2.0
/*
 * dmuserd - reference daemon for the device-mapper "user" target.
 *
 * Serves every block request of one dm-user target from a RAM store or from
 * a file or block device. Each worker thread owns one channel (one open() of
 * /dev/dm-user/<name>), reads requests from it and writes the answers back
 * on it; the wire format is described in <linux/dm-user.h>.
 *
 * The main thread does no I/O: it alone takes SIGTERM/SIGINT, so that
 * workers stop between two requests and never in the middle of one, and it
 * decides the exit status once every worker has finished.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/dm-user.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define HDR_SIZE	sizeof(struct dm_user_message)
#define MAX_IO		(1U << 20)	/* largest READ/WRITE the kernel sends */
#define REQ_BUF_SIZE	(HDR_SIZE + MAX_IO)
#define SECTOR_SHIFT	9
#define MAX_THREADS	64
#define MAX_BATCH	128
#define ZERO_CHUNK	(1U << 20)

_Static_assert(sizeof(struct dm_user_message) == 40,
	       "the wire header is 40 bytes on every architecture");

static const char *const prog = "dmuserd";

static struct options {
	const char *channel, *file, *stats_path, *pid_path;
	uint64_t ram_size;
	unsigned int threads, batch;
	size_t split;
	bool verbose;
} opt = { .threads = 1, .batch = 1 };

/* Written by the main thread only; workers look at it between requests. */
static atomic_bool stop_requested;
static pthread_t main_thread;

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

/*
 * One fprintf() per line: stdio locks the stream per call, so lines of
 * concurrent workers never interleave. strerror_r for the same reason.
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
			strerror_r(err, ebuf, sizeof(ebuf)));
	} else {
		fprintf(stderr, "%s: %s\n", prog, what);
	}
}

/* ---- Stores ---------------------------------------------------------- */

struct store;

/*
 * Indexed by request type; each returns the DM_USER_RESP_* code to answer
 * with. The range has been checked against the store's size.
 */
typedef int store_fn(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len);

struct store_ops {
	store_fn *op[DM_USER_REQ_MAP_WRITE_ZEROES + 1];
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
	unsigned char *zeroes;
	atomic_bool no_falloc[2];	/* see file_write_zeroes() */
	atomic_bool logged[F_NR];
};

static struct store store;

/*
 * The RAM store's lock only exists so that overlapping requests on two
 * channels are no data race in the C sense (the block layer orders none).
 * Failing to take it is a bug, not an I/O error.
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

static int ram_read(struct store *s, unsigned char *buf, uint64_t off,
		    uint64_t len)
{
	ram_lock(s, false);
	memcpy(buf, s->mem + off, len);
	ram_unlock(s);
	return DM_USER_RESP_SUCCESS;
}

static int ram_write(struct store *s, unsigned char *buf, uint64_t off,
		     uint64_t len)
{
	ram_lock(s, true);
	memcpy(s->mem + off, buf, len);
	ram_unlock(s);
	return DM_USER_RESP_SUCCESS;
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
	return DM_USER_RESP_SUCCESS;
}

static int ram_flush(struct store *s)
{
	(void)s;
	return DM_USER_RESP_SUCCESS;
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
	return DM_USER_RESP_ERROR;
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
	int err = pio_all(s->fd, false, buf, len, off);

	return err ? file_error(s, F_READ, err, off, len) : DM_USER_RESP_SUCCESS;
}

static int file_write(struct store *s, unsigned char *buf, uint64_t off,
		      uint64_t len)
{
	int err = pio_all(s->fd, true, buf, len, off);

	return err ? file_error(s, F_WRITE, err, off, len) : DM_USER_RESP_SUCCESS;
}

static int file_flush(struct store *s)
{
	while (fdatasync(s->fd))
		if (errno != EINTR)
			return file_error(s, F_SYNC, errno, 0, s->size);
	return DM_USER_RESP_SUCCESS;
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
	return DM_USER_RESP_SUCCESS;
}

static int file_discard(struct store *s, unsigned char *buf, uint64_t off,
			uint64_t len)
{
	int err = xfallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     off, len);

	(void)buf;
	if (!err)
		return DM_USER_RESP_SUCCESS;
	if (not_supported(err))
		return DM_USER_RESP_UNSUPPORTED;
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
			return DM_USER_RESP_SUCCESS;
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

static void file_close(struct store *s)
{
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
	.flush = file_flush,
	.close = file_close,
};

static int file_open(struct store *s, const char *path)
{
	struct stat st;
	uint64_t size;

	s->path = path;
	s->fd = open(path, O_RDWR | O_CLOEXEC);
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
	s->size = size;
	s->ops = &file_ops;
	return 0;
fail:
	close(s->fd);
	return -1;
}

/* ---- Requests -------------------------------------------------------- */

struct request {
	struct dm_user_message *msg;	/* REQ_BUF_SIZE bytes */
	bool oversize;			/* WRITE too large: data drained */
};

/* counter < 0: a type this daemon answers UNSUPPORTED. */
static const struct req_type {
	const char *name;
	int counter;
} req_types[] = {
	[DM_USER_REQ_MAP_READ] = { "READ", C_READS },
	[DM_USER_REQ_MAP_WRITE] = { "WRITE", C_WRITES },
	[DM_USER_REQ_MAP_FLUSH] = { "FLUSH", C_FLUSHES },
	[DM_USER_REQ_MAP_DISCARD] = { "DISCARD", C_DISCARDS },
	[DM_USER_REQ_MAP_SECURE_ERASE] = { "SECURE_ERASE", C_SECURE_ERASES },
	[DM_USER_REQ_MAP_WRITE_SAME] = { "WRITE_SAME", -1 },
	[DM_USER_REQ_MAP_WRITE_ZEROES] = { "WRITE_ZEROES", C_WRITE_ZEROES },
	[DM_USER_REQ_MAP_ZONE_OPEN] = { "ZONE_OPEN", -1 },
	[DM_USER_REQ_MAP_ZONE_CLOSE] = { "ZONE_CLOSE", -1 },
	[DM_USER_REQ_MAP_ZONE_FINISH] = { "ZONE_FINISH", -1 },
	[DM_USER_REQ_MAP_ZONE_APPEND] = { "ZONE_APPEND", -1 },
	[DM_USER_REQ_MAP_ZONE_RESET] = { "ZONE_RESET", -1 },
	[DM_USER_REQ_MAP_ZONE_RESET_ALL] = { "ZONE_RESET_ALL", -1 },
};

static const char *const resp_names[] = { "SUCCESS", "ERROR", "UNSUPPORTED" };

static void log_request(unsigned int id, const struct dm_user_message *m)
{
	char name[32];

	if (m->type < ARRAY_SIZE(req_types))
		snprintf(name, sizeof(name), "%s", req_types[m->type].name);
	else
		snprintf(name, sizeof(name), "type %" PRIu64, (uint64_t)m->type);
	fprintf(stderr, "%s: [%u] seq %" PRIu64 " %s sector %" PRIu64 " len %" PRIu64 " flags 0x%" PRIx64 "\n",
		prog, id, (uint64_t)m->seq, name, (uint64_t)m->sector,
		(uint64_t)m->len, (uint64_t)m->flags);
}

/* Byte offset of the request, if [sector * 512, + len) lies in the store. */
static bool range_ok(const struct dm_user_message *m, uint64_t size,
		     uint64_t *off)
{
	if (m->sector > UINT64_MAX >> SECTOR_SHIFT)
		return false;
	*off = m->sector << SECTOR_SHIFT;
	return m->len <= size && *off <= size - m->len;
}

static int serve(struct store *s, struct request *rq)
{
	struct dm_user_message *m = rq->msg;
	bool fua = m->flags & DM_USER_REQ_MAP_FLAG_FUA;
	uint64_t off;
	int rc;

	if (fua)
		count(C_FUA, 1);
	if (m->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH)
		count(C_PREFLUSH, 1);
	if (m->type >= ARRAY_SIZE(req_types) || req_types[m->type].counter < 0)
		return DM_USER_RESP_UNSUPPORTED;
	count(req_types[m->type].counter, 1);

	/* An empty flush has no range, whatever its sector says. */
	if (m->type == DM_USER_REQ_MAP_FLUSH)
		return s->ops->flush(s);
	if (rq->oversize ||
	    (m->type == DM_USER_REQ_MAP_READ && m->len > MAX_IO) ||
	    !range_ok(m, s->size, &off))
		return DM_USER_RESP_ERROR;
	if (m->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH) {
		rc = s->ops->flush(s);
		if (rc)
			return rc;
	}
	rc = s->ops->op[m->type](s, m->buf, off, m->len);
	/* FUA means nothing to a read. */
	if (!rc && fua && m->type != DM_USER_REQ_MAP_READ)
		rc = s->ops->flush(s);
	if (!rc && m->type == DM_USER_REQ_MAP_READ)
		count(C_BYTES_READ, m->len);
	if (!rc && m->type == DM_USER_REQ_MAP_WRITE)
		count(C_BYTES_WRITTEN, m->len);
	return rc;
}

/* ---- Channel I/O ----------------------------------------------------- */

enum chan_status {
	CHAN_OK,
	CHAN_EMPTY,	/* non-blocking read: nothing waiting */
	CHAN_STOP,	/* stop requested while waiting for a request */
	CHAN_GONE,	/* ENOTBLK: the target was removed */
	CHAN_FATAL,	/* already reported */
};

struct worker {
	unsigned int id;
	int fd;
	pthread_t thread;
	struct request reqs[MAX_BATCH];
	bool nonblock;
	bool failed;		/* main reads it only once done is set */
	atomic_bool done;
};

static int set_nonblock(struct worker *w, bool on)
{
	int fl = fcntl(w->fd, F_GETFL);

	if (fl < 0 ||
	    fcntl(w->fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK)) {
		report(errno, "fcntl(O_NONBLOCK) %s", opt.channel);
		return -1;
	}
	w->nonblock = on;
	return 0;
}

/*
 * One big read normally yields the whole message; the loop handles the
 * kernel splitting it (and -s). A WRITE larger than the buffer is drained,
 * so that the channel stays in step, and answered ERROR.
 */
static enum chan_status recv_request(struct worker *w, struct request *rq)
{
	unsigned char *buf = (unsigned char *)rq->msg;
	size_t pos = 0;		/* bytes stored in buf */
	uint64_t left = 0;	/* data bytes still to come, once pos >= HDR */

	rq->oversize = false;
	for (;;) {
		unsigned char *dst = buf + pos;
		size_t room = pos < HDR_SIZE ? REQ_BUF_SIZE - pos : left;
		ssize_t n;

		if (rq->oversize) {
			dst = buf + HDR_SIZE;
			room = left < MAX_IO ? left : MAX_IO;
		}
		if (opt.split && room > opt.split)
			room = opt.split;
		n = read(w->fd, dst, room);
		if (n < 0) {
			/* Never abandon half a message. */
			if (errno == EINTR && pos == 0 &&
			    atomic_load(&stop_requested))
				return CHAN_STOP;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (pos == 0)
					return CHAN_EMPTY;
				/* The rest of a message is worth waiting for. */
				if (set_nonblock(w, false))
					return CHAN_FATAL;
				continue;
			}
			if (errno == ENOTBLK)
				return CHAN_GONE;
			report(errno, "read %s", opt.channel);
			return CHAN_FATAL;
		}
		if (n == 0) {
			report(0, "read %s: unexpected end of file", opt.channel);
			return CHAN_FATAL;
		}

		if (pos >= HDR_SIZE) {
			left -= n;
			pos += rq->oversize ? 0 : n;
		} else {
			pos += n;
			if (pos < HDR_SIZE)
				continue;
			if (rq->msg->type == DM_USER_REQ_MAP_WRITE) {
				left = rq->msg->len;
				rq->oversize = left > MAX_IO;
			}
			if (pos - HDR_SIZE > left) {
				report(0, "read %s: %zu bytes beyond the end of message seq %" PRIu64,
				       opt.channel, (size_t)(pos - HDR_SIZE - left),
				       (uint64_t)rq->msg->seq);
				return CHAN_FATAL;
			}
			left -= pos - HDR_SIZE;
		}
		if (left == 0)
			return CHAN_OK;
	}
}

/* Each write() carries bytes of this one answer only, as the kernel needs. */
static enum chan_status send_answer(struct worker *w, struct iovec *iov,
				    int cnt)
{
	for (;;) {
		struct iovec part[2];
		size_t budget = opt.split ? opt.split : SIZE_MAX;
		int i, np = 0;
		ssize_t n;

		while (cnt > 0 && iov->iov_len == 0) {
			iov++;
			cnt--;
		}
		if (cnt == 0)
			return CHAN_OK;
		for (i = 0; i < cnt && i < 2 && budget; i++, np++) {
			part[i].iov_base = iov[i].iov_base;
			part[i].iov_len = iov[i].iov_len < budget ? iov[i].iov_len
								  : budget;
			budget -= part[i].iov_len;
		}
		n = writev(w->fd, part, np);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOTBLK)
			return CHAN_GONE;
		if (n <= 0) {
			report(n ? errno : 0, "write %s%s", opt.channel,
			       n ? "" : ": no byte accepted");
			return CHAN_FATAL;
		}
		for (; n > 0 && (size_t)n >= iov->iov_len; iov++, cnt--)
			n -= iov->iov_len;
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
}

static enum chan_status answer(struct worker *w, struct request *rq)
{
	struct dm_user_message *m = rq->msg;
	int resp = serve(&store, rq);
	struct dm_user_message hdr = {
		.seq = m->seq, .type = resp, .flags = m->flags,
		.sector = m->sector, .len = m->len,
	};
	/* Bounded by MAX_IO: serve() fails larger reads. */
	size_t data = resp == DM_USER_RESP_SUCCESS &&
		      m->type == DM_USER_REQ_MAP_READ ? m->len : 0;
	struct iovec iov[2] = { { &hdr, HDR_SIZE }, { m->buf, data } };

	if (resp == DM_USER_RESP_ERROR)
		count(C_ERRORS, 1);
	else if (resp == DM_USER_RESP_UNSUPPORTED)
		count(C_UNSUPPORTED, 1);
	if (opt.verbose && resp != DM_USER_RESP_SUCCESS)
		fprintf(stderr, "%s: [%u] seq %" PRIu64 " -> %s\n", prog,
			w->id, (uint64_t)m->seq, resp_names[resp]);
	return send_answer(w, iov, 2);
}

/* 1: a request is waiting, 0: none, -1: reported error. */
static int chan_pending(struct worker *w)
{
	struct pollfd p = { .fd = w->fd, .events = POLLIN };
	int n = poll(&p, 1, 0);

	if (n < 0 && errno != EINTR) {
		report(errno, "poll %s", opt.channel);
		return -1;
	}
	return n > 0 && (p.revents & POLLIN);
}

/*
 * Requests after the first of a batch are read non-blocking: with several
 * channels another worker may take the request poll() announced, and
 * blocking then would hold this batch's answers until the next I/O.
 */
static enum chan_status collect(struct worker *w, unsigned int *nr)
{
	enum chan_status st = CHAN_OK;
	int pending;

	for (*nr = 0; *nr < opt.batch; ++*nr) {
		if (*nr > 0) {
			if (atomic_load(&stop_requested))
				break;
			pending = chan_pending(w);
			if (pending <= 0) {
				st = pending ? CHAN_FATAL : CHAN_OK;
				break;
			}
			if (!w->nonblock && set_nonblock(w, true))
				return CHAN_FATAL;
		}
		st = recv_request(w, &w->reqs[*nr]);
		if (st != CHAN_OK)
			break;
		if (opt.verbose)
			log_request(w->id, w->reqs[*nr].msg);
	}
	if (*nr > 0 && (st == CHAN_EMPTY || st == CHAN_STOP))
		st = CHAN_OK;
	if (w->nonblock && st == CHAN_OK && set_nonblock(w, false))
		return CHAN_FATAL;
	return st;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	enum chan_status st = CHAN_OK;
	int rc;

	while (st == CHAN_OK && !atomic_load(&stop_requested)) {
		unsigned int nr;

		st = collect(w, &nr);
		/* Reverse order on purpose: the kernel must cope with it. */
		while (st == CHAN_OK && nr > 0)
			st = answer(w, &w->reqs[--nr]);
	}
	if (st == CHAN_GONE && opt.verbose)
		report(0, "[%u] target removed", w->id);
	w->failed = st == CHAN_FATAL;
	atomic_store(&w->done, true);
	rc = pthread_kill(main_thread, SIGUSR2);
	if (rc)
		report(rc, "pthread_kill");
	return NULL;
}

/* ---- Arguments ------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s [options] <channel-path>\n"
"Serve the I/O of a dm-user target through its channel, e.g. /dev/dm-user/foo.\n"
"\n"
"Store (exactly one):\n"
"  -r, --ram <size>      zero-filled RAM store of <size> bytes\n"
"                        (suffix K, M or G: powers of 1024)\n"
"  -f, --file <path>     regular file or block device, served with pread/pwrite\n"
"Options:\n"
"  -t, --threads <n>     open <n> channels, one thread each (default 1, max %d)\n"
"  -q, --batch <n>       read up to <n> requests, then answer them in reverse\n"
"                        order (default 1, max %d)\n"
"  -s, --split <bytes>   split every read() and write() on the channel into\n"
"                        pieces of at most <bytes> (default 0: no splitting)\n"
"  -S, --stats <path>    write counters to <path> on exit\n"
"  -p, --pidfile <path>  write the pid to <path> once every channel is open\n"
"  -v, --verbose         log every request to stderr\n"
"  -h, --help            show this help\n"
"\n"
"Exit status: 0 after SIGTERM/SIGINT or removal of the target, 1 on error,\n"
"2 on bad usage.\n", prog, MAX_THREADS, MAX_BATCH);
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
	usage(stderr);
	exit(2);
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
	if (suffix && *end && strchr("KkMmGg", *end)) {
		shift = *end == 'K' || *end == 'k' ? 10 :
			*end == 'M' || *end == 'm' ? 20 : 30;
		end++;
	}
	if (*end)
		bad_usage("%s: '%s': unexpected '%s'%s", name, s, end,
			  suffix ? " (suffixes: K, M, G)" : "");
	if (errno == ERANGE || v > UINT64_MAX >> shift)
		bad_usage("%s: '%s' is too large", name, s);
	v <<= shift;
	if (v < min || v > max)
		bad_usage("%s: '%s' is %s %" PRIu64, name, s,
			  v < min ? "below the minimum" : "above the maximum",
			  v < min ? min : max);
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ram", required_argument, NULL, 'r' },
		{ "file", required_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 't' },
		{ "batch", required_argument, NULL, 'q' },
		{ "split", required_argument, NULL, 's' },
		{ "stats", required_argument, NULL, 'S' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opterr = 0;	/* our own messages, followed by the usage */
	while ((c = getopt_long(argc, argv, ":r:f:t:q:s:S:p:vh", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'r':
			opt.ram_size = parse_number("--ram", optarg, true, 1,
						    UINT64_MAX);
			break;
		case 'f':
			opt.file = optarg;
			break;
		case 't':
			opt.threads = (unsigned int)parse_number("--threads",
						optarg, false, 1, MAX_THREADS);
			break;
		case 'q':
			opt.batch = (unsigned int)parse_number("--batch",
						optarg, false, 1, MAX_BATCH);
			break;
		case 's':
			opt.split = (size_t)parse_number("--split", optarg,
						false, 0, SSIZE_MAX);
			break;
		case 'S':
			opt.stats_path = optarg;
			break;
		case 'p':
			opt.pid_path = optarg;
			break;
		case 'v':
			opt.verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			bad_usage("option '%s' needs an argument",
				  argv[optind - 1]);
		default:
			if (optopt)
				bad_usage("unknown option '-%c'", optopt);
			bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if ((opt.ram_size != 0) == (opt.file != NULL))
		bad_usage("exactly one of --ram and --file is required");
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <channel-path>"
					 : "more than one <channel-path>");
	opt.channel = argv[optind];
}

/* ---- Setup, signals and exit ----------------------------------------- */

/* Through a temporary name, so that a poller never sees a partial file. */
static int write_file_atomically(const char *path, char *text)
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

	if (!opt.stats_path)
		return 0;
	for (i = 0; i < C_NR; i++)
		pos += snprintf(text + pos, sizeof(text) - pos, "%s %" PRIu64 "\n",
				counter_names[i], atomic_load(&counters[i]));
	return write_file_atomically(opt.stats_path, text);
}

/* Only there so that SIGUSR1 interrupts a worker's blocking read(). */
static void wake_handler(int sig)
{
	(void)sig;
}

static int setup_signals(sigset_t *waitset)
{
	/* No SA_RESTART: read() must return EINTR. */
	struct sigaction sa = { .sa_handler = wake_handler };
	int rc;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL)) {
		report(errno, "sigaction(SIGUSR1)");
		return -1;
	}
	/* Blocked before any thread exists, so that only sigwait sees them. */
	sigemptyset(waitset);
	sigaddset(waitset, SIGTERM);
	sigaddset(waitset, SIGINT);
	sigaddset(waitset, SIGUSR2);
	rc = pthread_sigmask(SIG_BLOCK, waitset, NULL);
	if (rc)
		report(rc, "pthread_sigmask");
	return rc ? -1 : 0;
}

/*
 * Waits until every worker has finished and returns the exit status.
 * A non-zero @status on entry, or a failed worker, stops all of them.
 */
static int supervise(struct worker *workers, const sigset_t *waitset,
		     int status)
{
	static const struct timespec nudge = { .tv_nsec = 100 * 1000 * 1000 };

	for (;;) {
		bool stopping = atomic_load(&stop_requested);
		unsigned int i, alive = 0;
		int sig;

		for (i = 0; i < opt.threads; i++) {
			if (!atomic_load(&workers[i].done))
				alive++;
			else if (workers[i].failed)
				status = 1;
		}
		if (!alive)
			return status;
		if (status && !stopping) {
			stopping = true;
			atomic_store(&stop_requested, true);
		}
		/*
		 * A worker may have looked at the flag just before blocking
		 * in read(): keep interrupting it until it leaves.
		 */
		for (i = 0; stopping && i < opt.threads; i++)
			if (!atomic_load(&workers[i].done))
				(void)pthread_kill(workers[i].thread, SIGUSR1);

		sig = stopping ? sigtimedwait(waitset, NULL, &nudge)
			       : sigwaitinfo(waitset, NULL);
		if (sig < 0 && errno != EAGAIN && errno != EINTR) {
			report(errno, "sigwaitinfo");
			status = 1;
		}
		if (sig == SIGTERM || sig == SIGINT) {
			if (opt.verbose)
				report(0, "%s: stopping", strsignal(sig));
			atomic_store(&stop_requested, true);
		}
	}
}

int main(int argc, char **argv)
{
	struct worker *workers;
	sigset_t waitset;
	unsigned int i, j, started = 0;
	int status = 1, rc;

	parse_args(argc, argv);
	if (setup_signals(&waitset))
		return 1;
	main_thread = pthread_self();

	/*
	 * 1 sets the flag; the RFC's daemons passed 0, which clears it. It is
	 * per thread and inherited, so it must precede the workers' creation.
	 */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0))
		report(errno, "warning: prctl(PR_SET_IO_FLUSHER, 1) (needs CAP_SYS_RESOURCE and Linux 5.6; continuing, but reclaim may deadlock on this device)");

	if (opt.file ? file_open(&store, opt.file)
		     : ram_open(&store, opt.ram_size))
		return 1;
	if (opt.verbose)
		report(0, "serving %" PRIu64 " bytes of %s on %s", store.size,
		       opt.file ? opt.file : "RAM", opt.channel);

	workers = calloc(opt.threads, sizeof(*workers));
	if (!workers) {
		report(errno, "calloc");
		goto out_store;
	}
	for (i = 0; i < opt.threads; i++)
		workers[i].fd = -1;
	for (i = 0; i < opt.threads; i++) {
		workers[i].id = i;
		for (j = 0; j < opt.batch; j++) {
			workers[i].reqs[j].msg = malloc(REQ_BUF_SIZE);
			if (!workers[i].reqs[j].msg) {
				report(errno, "malloc");
				goto out_workers;
			}
		}
		workers[i].fd = open(opt.channel, O_RDWR | O_CLOEXEC);
		if (workers[i].fd < 0) {
			report(errno, "open %s", opt.channel);
			goto out_workers;
		}
	}

	/* A worker that could not start counts as failed: all stop. */
	for (i = 0; i < opt.threads; i++) {
		rc = pthread_create(&workers[i].thread, NULL, worker_main,
				    &workers[i]);
		if (rc) {
			report(rc, "pthread_create");
			for (; i < opt.threads; i++) {
				workers[i].failed = true;
				atomic_store(&workers[i].done, true);
			}
			break;
		}
		started++;
	}
	/* Without the pidfile nobody would know we serve: give up too. */
	status = 0;
	if (started == opt.threads && opt.pid_path) {
		char pid[32];

		snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		status = write_file_atomically(opt.pid_path, pid) ? 1 : 0;
	}
	status = supervise(workers, &waitset, status);
	for (i = 0; i < started; i++) {
		rc = pthread_join(workers[i].thread, NULL);
		if (rc)
			report(rc, "pthread_join");
	}
	if (write_stats())
		status = 1;

out_workers:
	for (i = 0; i < opt.threads; i++) {
		if (workers[i].fd >= 0 && close(workers[i].fd))
			report(errno, "close %s", opt.channel);
		for (j = 0; j < opt.batch; j++)
			free(workers[i].reqs[j].msg);
	}
	free(workers);
out_store:
	store.ops->close(&store);
	return status;
}
