// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libdmuser: serving channels of a dm-user target.
 *
 * dmu_serve() opens one channel per thread. Each thread reads requests on
 * its own channel, calls the callback for the request's operation and
 * writes the answer back on the same channel, as the protocol requires.
 * Everything the protocol allows the kernel to do is handled here: a
 * message split over several read() calls, several whole messages in one
 * read() (DM_USER_EXT_READ_BATCH), and the end of the target (ENOTBLK).
 * Where the kernel grants it, a channel is a ring (DM_USER_EXT_RING)
 * instead: requests and data in shared memory, one ioctl a batch.
 *
 * The channels are non-blocking: a thread waits in epoll with a timeout,
 * so that it notices *opts->stop, or a failed sibling, without a signal.
 * Nothing here prints, except the per-request log of opts->verbose.
 *
 * With opts->max_pending, a callback may leave its request pending and
 * answer it later from any thread (dmu_complete()). Such a request lives
 * in a slot of its channel until then: its header, and on read()/write()
 * channels a receive buffer of its own (on a ring, its data stays in the
 * ring's data area, whose mapping the slot keeps alive). dmu_complete()
 * pushes the slot on the channel's done list, a lock-free stack, and
 * wakes the channel through an eventfd; only the channel's own thread
 * (or the caller of dmu_server_serve()) takes slots off that list, answers
 * them and frees them, so everything else of a channel has one owner and
 * needs no lock. The channel's epoll set holds the eventfd and, while the
 * channel can take a request, the channel itself: it is the descriptor
 * dmu_server_fd() gives an event loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* program_invocation_short_name, strerror_r */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#include "dmuser.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER	57
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif
#ifndef MCL_ONFAULT
#define MCL_ONFAULT		4
#endif

#define HDR_SIZE	sizeof(struct dm_user_message)
/* The most data one READ or WRITE request carries (dm splits larger bios). */
#define MAX_IO		(1U << 20)
#define SECTOR_SHIFT	9
/*
 * A receive buffer holds one message of the largest size whole. The header
 * is read BUF_LEAD bytes in, so that the data of the first message of
 * every read() is page aligned (for callbacks that use O_DIRECT).
 */
#define BUF_ALIGN	4096
#define BUF_LEAD	(BUF_ALIGN - HDR_SIZE)
#define BUF_CAP		(HDR_SIZE + MAX_IO)
#define BUF_SIZE	((BUF_LEAD + BUF_CAP + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN)
/*
 * With WRITE_BATCH, the answers of one batch go out in one writev() of up
 * to this many pieces (a header and a READ's data each); the data of READs
 * answered from the library's buffer share ch->rdata until then.
 */
#define OUT_IOV		64
/* How often a thread waiting for requests looks at the stop flags. */
#define POLL_MS		200
/*
 * Rounds one dmu_server_serve() call makes at most while requests keep
 * coming, so that an event loop's other work is not starved: what is left
 * keeps the channel readable.
 */
#define SERVE_ROUNDS	16
/* Not a DM_USER_RESP_*: the callback returned DMU_PENDING. */
#define RESP_PENDING	(-1)

_Static_assert(sizeof(struct dm_user_message) == 40,
	       "the wire header is 40 bytes on every architecture");

enum chan_status {
	CHAN_OK,
	CHAN_EMPTY,	/* non-blocking read: nothing waiting */
	CHAN_STOP,	/* stop requested while waiting for a request */
	CHAN_GONE,	/* ENOTBLK: the target was removed */
	CHAN_RESET,	/* ECONNRESET: requests read on it were taken back */
	CHAN_FATAL,	/* chan->err says why */
};

/*
 * A request read completely; msg points into one of the receive buffers,
 * and a WRITE's data follows it there unless ->write_buffer placed it.
 */
struct request {
	struct dm_user_message *msg;
	void *data;		/* where ->write_buffer put a WRITE's data */
	bool oversize;		/* a WRITE larger than MAX_IO: drained */
};

struct server;
struct chan;

/* How a channel's fd is in its epoll set. */
enum watch {
	WATCH_NONE,	/* not: the channel has ended, or is closed */
	WATCH_ERRORS,	/* for a reset or the target's end only: it is full */
	WATCH_ALL,	/* for requests too */
};

/* A ring's shared memory, freed when neither its channel nor a slot uses it. */
struct ring_map {
	void *addr;
	size_t size;
	unsigned int users;	/* the channel while it is open, and slots */
};

/*
 * A request a callback may leave pending (opts->max_pending), from the
 * moment it is read until it is answered or dropped.
 */
struct slot {
	struct dmu_req req;	/* what the callback was given */
	struct dm_user_message msg;	/* the request's header */
	struct chan *ch;
	struct slot *next;	/* on the free list, the done list or unsent */
	unsigned char *buf;	/* read()/write(): BUF_SIZE, allocated once */
	struct ring_map *map;	/* ring: the mapping its data is in */
	uint32_t ring_slot;	/* ring: the kernel's slot */
	unsigned char *ring_data;	/* ring: its place in the data area */
	uint64_t gen;		/* ch->gen when it was read */
	int rc;			/* what dmu_complete() was given */
};

struct chan {
	struct server *srv;
	unsigned int id;
	int fd;
	int epfd;		/* waits for a request on fd */
	pthread_t thread;
	unsigned char **bufs;	/* srv->batch receive buffers */
	unsigned char *rdata;	/* data of READ answers; drain space */
	struct request *reqs;	/* collected, not yet answered */
	size_t nreq, reqcap;
	/* Answers not sent yet (WRITE_BATCH), their headers and data. */
	struct dm_user_message out_hdr[OUT_IOV / 2];
	struct iovec out_iov[OUT_IOV];
	unsigned int nout;
	size_t out_data;	/* bytes of ch->rdata in use by them */
	int err;		/* negative errno once CHAN_FATAL */
	bool read_batch;	/* negotiate READ_BATCH on every open */
	bool want_write_batch;	/* ask for WRITE_BATCH on every open */
	bool write_batch;	/* WRITE_BATCH granted on this open */
	unsigned long resets;	/* times the kernel reset the channel */
	/* The ring, when the channel is one (DM_USER_EXT_RING). */
	struct dm_user_ring *ring;	/* the mapping's head; NULL if none */
	struct dm_user_ring_sqe *sq;
	struct dm_user_ring_cqe *cq;
	struct dm_user_message *desc;
	unsigned char *data;	/* the data area */
	uint32_t depth, data_size;
	uint32_t sq_head, cq_tail;	/* our queue positions */
	uint64_t reload_checked;	/* ms, CLOCK_MONOTONIC: see check_reload() */
	struct ring_map *map;	/* the ring's mapping; NULL if none */
	/*
	 * With max_pending. @done is written by dmu_complete() from any
	 * thread; the rest belongs to the channel's thread.
	 */
	struct slot *slots;	/* max_pending of them */
	struct slot *free_slots;
	struct slot *unsent;	/* answered, in out_iov until sent */
	_Atomic(struct slot *) done;	/* completed, newest first */
	unsigned int pending;	/* slots handed to a callback, not freed */
	int evfd;		/* dmu_complete() makes it readable */
	atomic_uint completers;	/* dmu_complete() calls not yet returned */
	uint64_t gen;		/* opens of the fd: a reset starts a new one */
	enum watch watching;	/* how fd is in epfd */
	/* A slot buffer could not be allocated: wait for a completion. */
	bool no_memory;
	/* Takes no more requests: why (CHAN_STOP, _GONE, _FATAL), or CHAN_OK. */
	enum chan_status end;
};

struct server {
	const struct dmu_ops *ops;
	void *ctx;
	const char *path;
	unsigned int threads, batch;
	size_t split;
	bool verbose;
	volatile int *stop;
	enum dmu_transport transport;	/* what open_fd() tries */
	unsigned int ring_depth, ring_data, ring_busy_poll;
	bool remap;		/* DM_USER_EXT_REMAP on every channel */
	/* With remap: the target's block size, in bytes. */
	uint64_t block_size;
	/*
	 * The target's size in bytes as last seen (UINT64_MAX: unknown,
	 * without the control interface), read without a lock, and the
	 * reloads of its table seen so far, which reload_lock orders, with
	 * the size's updates and the ->reload calls (check_reload()).
	 */
	_Atomic uint64_t size;
	uint64_t reloads;
	pthread_mutex_t reload_lock;
	atomic_bool abort;	/* a channel failed: every thread stops */
	atomic_int first_err;	/* the first failed channel's errno */
	unsigned int max_pending;
	void (*ready)(void *ctx);
	struct chan *chans;
};

static bool stopping(struct server *srv)
{
	return (srv->stop && *srv->stop) || atomic_load(&srv->abort);
}

/* Records the first error of the channel. */
static enum chan_status chan_fail(struct chan *ch, int err)
{
	if (!ch->err)
		ch->err = err > 0 ? -err : err;
	return CHAN_FATAL;
}

/* ---- Logging (opts->verbose only) ------------------------------------ */

static const char *const type_names[] = {
	[DM_USER_REQ_MAP_READ] = "READ",
	[DM_USER_REQ_MAP_WRITE] = "WRITE",
	[DM_USER_REQ_MAP_FLUSH] = "FLUSH",
	[DM_USER_REQ_MAP_DISCARD] = "DISCARD",
	[DM_USER_REQ_MAP_SECURE_ERASE] = "SECURE_ERASE",
	[DM_USER_REQ_MAP_WRITE_SAME] = "WRITE_SAME",
	[DM_USER_REQ_MAP_WRITE_ZEROES] = "WRITE_ZEROES",
	[DM_USER_REQ_MAP_ZONE_OPEN] = "ZONE_OPEN",
	[DM_USER_REQ_MAP_ZONE_CLOSE] = "ZONE_CLOSE",
	[DM_USER_REQ_MAP_ZONE_FINISH] = "ZONE_FINISH",
	[DM_USER_REQ_MAP_ZONE_APPEND] = "ZONE_APPEND",
	[DM_USER_REQ_MAP_ZONE_RESET] = "ZONE_RESET",
	[DM_USER_REQ_MAP_ZONE_RESET_ALL] = "ZONE_RESET_ALL",
};

static const char *const resp_names[] = {
	[DM_USER_RESP_SUCCESS] = "SUCCESS",
	[DM_USER_RESP_ERROR] = "ERROR",
	[DM_USER_RESP_UNSUPPORTED] = "UNSUPPORTED",
	[DM_USER_RESP_REMAP] = "REMAP",
};

/* One fprintf() per line, so that lines of several threads never mix. */
static void log_request(const struct chan *ch, const struct dm_user_message *m)
{
	uint64_t type = m->type & ~(uint64_t)DM_USER_REQ_NOTIFY;
	const char *notify = m->type & DM_USER_REQ_NOTIFY ? "NOTIFY " : "";
	char name[48];

	if (type < sizeof(type_names) / sizeof(type_names[0]))
		snprintf(name, sizeof(name), "%s%s", notify, type_names[type]);
	else
		snprintf(name, sizeof(name), "type %" PRIu64, (uint64_t)m->type);
	fprintf(stderr, "%s: [%u] seq %" PRIu64 " %s sector %" PRIu64
		" len %" PRIu64 " flags 0x%" PRIx64 "\n",
		program_invocation_short_name, ch->id, (uint64_t)m->seq, name,
		(uint64_t)m->sector, (uint64_t)m->len, (uint64_t)m->flags);
}

static void log_answer(const struct chan *ch, const struct dm_user_message *m,
		       int resp, int rc)
{
	char why[160] = "";

	if (rc < 0) {
		char ebuf[128];

		snprintf(why, sizeof(why), " (%s)",
			 strerror_r(-rc, ebuf, sizeof(ebuf)));
	}
	fprintf(stderr, "%s: [%u] seq %" PRIu64 " -> %s%s\n",
		program_invocation_short_name, ch->id, (uint64_t)m->seq,
		resp_names[resp], why);
}

/* ---- Reloads --------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Whether a reload of the target's table under its name has taken effect
 * since this channel last asked (POLLPRI, or on a ring the head's
 * DM_USER_RING_RELOADED), or with @force in any case: then GET_INFO,
 * which clears it, and if that shows reloads not seen before, the new
 * size and ->reload, one at a time and never going back. A read()/write()
 * channel asks the kernel at most every POLL_MS unless forced; a ring
 * looks at its head, which costs nothing.
 */
static void check_reload(struct chan *ch, bool force)
{
	struct server *srv = ch->srv;
	struct dmu_info info;

	if (force) {
		/* Asked below. */
	} else if (ch->ring) {
		if (!(__atomic_load_n(&ch->ring->flags, __ATOMIC_ACQUIRE) &
		      DM_USER_RING_RELOADED))
			return;
	} else {
		struct pollfd p = { .fd = ch->fd, .events = POLLPRI };
		uint64_t now = now_ms();

		if (now - ch->reload_checked < POLL_MS)
			return;
		ch->reload_checked = now;
		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLPRI))
			return;
	}
	if (dmu_get_info(ch->fd, &info))
		return;
	pthread_mutex_lock(&srv->reload_lock);
	if (info.reloads > srv->reloads) {
		srv->reloads = info.reloads;
		atomic_store(&srv->size, info.size * 512);
		if (srv->ops->reload)
			srv->ops->reload(srv->ctx, &info);
	}
	pthread_mutex_unlock(&srv->reload_lock);
}

/* ---- Receiving ------------------------------------------------------- */

/* What an event of a channel's epoll set is about. */
enum {
	EV_CHAN,	/* the channel: a request, or its end */
	EV_DONE,	/* the eventfd: dmu_complete() was called */
};

/*
 * Waits for the channel to become readable. @can_stop: between messages,
 * where a stop request ends the wait, and so does a completion (CHAN_EMPTY:
 * the caller answers it); inside one the rest is always coming, and a
 * message is never abandoned halfway.
 */
static enum chan_status wait_readable(struct chan *ch, bool can_stop)
{
	for (;;) {
		struct epoll_event ev;
		int n;

		if (can_stop && stopping(ch->srv))
			return CHAN_STOP;
		if (can_stop) {
			n = epoll_wait(ch->epfd, &ev, 1, POLL_MS);
		} else {
			struct pollfd p = { .fd = ch->fd, .events = POLLIN };

			n = poll(&p, 1, POLL_MS);
			ev.data.u32 = EV_CHAN;
		}
		if (n < 0 && errno != EINTR)
			return chan_fail(ch, errno);
		if (!n)
			check_reload(ch, false);
		if (n > 0 && ev.data.u32 == EV_DONE)
			return CHAN_EMPTY;
		/* Readable, or an error or hang-up that read() will name. */
		if (n > 0)
			return CHAN_OK;
	}
}

/*
 * One read() of up to @room bytes (fewer with opts->split). @wait: wait
 * for a request when none is queued, rather than return CHAN_EMPTY.
 */
static enum chan_status chan_read(struct chan *ch, void *dst, size_t room,
				  bool wait, bool can_stop, size_t *got)
{
	if (ch->srv->split && room > ch->srv->split)
		room = ch->srv->split;
	for (;;) {
		ssize_t n = read(ch->fd, dst, room);
		enum chan_status st;

		if (n > 0) {
			*got = n;
			return CHAN_OK;
		}
		if (n == 0)	/* the kernel never ends a channel this way */
			return chan_fail(ch, EPROTO);
		if (errno == EINTR)
			continue;
		if (errno == ENOTBLK)
			return CHAN_GONE;
		if (errno == ECONNRESET)
			return CHAN_RESET;
		if (errno != EAGAIN)
			return chan_fail(ch, errno);
		if (!wait)
			return CHAN_EMPTY;
		st = wait_readable(ch, can_stop);
		if (st != CHAN_OK)
			return st;
	}
}

static enum chan_status add_request(struct chan *ch,
				    struct dm_user_message *m, bool oversize)
{
	if (ch->nreq == ch->reqcap) {
		size_t cap = ch->reqcap * 2;
		struct request *r = realloc(ch->reqs, cap * sizeof(*r));

		if (!r)
			return chan_fail(ch, ENOMEM);
		ch->reqs = r;
		ch->reqcap = cap;
	}
	ch->reqs[ch->nreq].msg = m;
	ch->reqs[ch->nreq].data = NULL;
	ch->reqs[ch->nreq].oversize = oversize;
	ch->nreq++;
	if (ch->srv->verbose)
		log_request(ch, m);
	return CHAN_OK;
}

static uint64_t data_to_read(const struct dm_user_message *m)
{
	return m->type == DM_USER_REQ_MAP_WRITE ? m->len : 0;
}

/*
 * Completes the message at @p, of which @have bytes are in, with at most
 * @space bytes of buffer from @p on. Each read() asks for no more than the
 * rest of this message, so that none brings bytes of the next one. A WRITE
 * that does not fit is drained, so that the channel stays in step, and
 * answered ERROR.
 */
static enum chan_status finish_message(struct chan *ch, unsigned char *p,
				       size_t have, size_t space)
{
	struct dm_user_message *m = (struct dm_user_message *)p;
	enum chan_status st;
	uint64_t data, left;
	bool oversize;
	size_t n;

	/* Only the first message of a read() can end in it, at any room. */
	if (space < HDR_SIZE)
		return chan_fail(ch, EPROTO);
	while (have < HDR_SIZE) {
		st = chan_read(ch, p + have, HDR_SIZE - have, true, false, &n);
		if (st != CHAN_OK)
			return st;
		have += n;
	}
	data = data_to_read(m);
	oversize = data > space - HDR_SIZE;
	left = data - (have - HDR_SIZE);
	while (left) {
		size_t room = left < MAX_IO ? left : MAX_IO;
		unsigned char *dst = oversize ? ch->rdata : p + have;

		st = chan_read(ch, dst, room, true, false, &n);
		if (st != CHAN_OK)
			return st;
		if (n > left)
			return chan_fail(ch, EPROTO);
		left -= n;
		if (!oversize)
			have += n;
	}
	return add_request(ch, m, oversize);
}

/* The offset of a request in bytes; false if it overflows. */
static bool byte_offset(const struct dm_user_message *m, uint64_t *offset)
{
	if (m->sector > UINT64_MAX >> SECTOR_SHIFT ||
	    m->len > UINT64_MAX - (m->sector << SECTOR_SHIFT))
		return false;
	*offset = m->sector << SECTOR_SHIFT;
	return true;
}

/*
 * With ->write_buffer: a header first, alone, so that a WRITE's data can
 * then be read straight to where the callback wants it (one copy, the
 * kernel's, instead of a second one from a buffer of ours). Anything else,
 * or a WRITE the callback leaves to us, is completed as usual.
 */
static enum chan_status recv_header_first(struct chan *ch, unsigned char *base,
					  bool wait)
{
	struct dm_user_message *m = (struct dm_user_message *)base;
	struct server *srv = ch->srv;
	struct dmu_req req = { .channel = ch->id };
	enum chan_status st;
	unsigned char *dst;
	size_t have, n;
	uint64_t left;

	st = chan_read(ch, base, HDR_SIZE, wait, true, &have);
	while (st == CHAN_OK && have < HDR_SIZE) {
		st = chan_read(ch, base + have, HDR_SIZE - have, true, false, &n);
		have += n;
	}
	if (st != CHAN_OK)
		return st;
	if (m->type != DM_USER_REQ_MAP_WRITE || m->len == 0 ||
	    m->len > MAX_IO || !byte_offset(m, &req.offset))
		return finish_message(ch, base, have, BUF_CAP);
	req.type = m->type;
	req.flags = m->flags;
	req.len = m->len;
	dst = srv->ops->write_buffer(srv->ctx, &req);
	if (!dst)
		return finish_message(ch, base, have, BUF_CAP);
	for (left = m->len; left; left -= n) {
		st = chan_read(ch, dst + (m->len - left), left, true, false, &n);
		if (st != CHAN_OK)
			return st;
		if (n > left)
			return chan_fail(ch, EPROTO);
	}
	st = add_request(ch, m, false);
	if (st == CHAN_OK)
		ch->reqs[ch->nreq - 1].data = dst;
	return st;
}

/*
 * One read() into the receive buffer at @buf (BUF_SIZE bytes): one message
 * without READ_BATCH, as many whole ones as fit with it. Whatever it ends
 * with that is not whole is completed by more reads.
 */
static enum chan_status recv_buffer(struct chan *ch, unsigned char *buf,
				    bool wait)
{
	unsigned char *base = buf + BUF_LEAD;
	size_t pos = 0, got;
	enum chan_status st;

	if (ch->srv->ops->write_buffer && !ch->read_batch)
		return recv_header_first(ch, base, wait);
	st = chan_read(ch, base, BUF_CAP, wait, true, &got);
	if (st != CHAN_OK)
		return st;
	while (pos < got) {
		struct dm_user_message *m = (struct dm_user_message *)(base + pos);
		size_t have = got - pos;

		if (have < HDR_SIZE || data_to_read(m) > have - HDR_SIZE)
			return finish_message(ch, base + pos, have,
					      BUF_CAP - pos);
		st = add_request(ch, m, false);
		if (st != CHAN_OK)
			return st;
		pos += HDR_SIZE + data_to_read(m);
	}
	return CHAN_OK;
}

/*
 * Reads up to opts->batch requests: with @wait the first waiting, the
 * others only if already queued. Each read() has a buffer of its own, as
 * the requests stay there until answered.
 */
static enum chan_status collect(struct chan *ch, bool wait)
{
	struct server *srv = ch->srv;
	enum chan_status st = CHAN_OK;
	unsigned int b;

	ch->nreq = 0;
	for (b = 0; b < srv->batch && ch->nreq < srv->batch; b++) {
		if (b > 0 && stopping(srv))
			break;
		st = recv_buffer(ch, ch->bufs[b], wait && b == 0);
		if (st != CHAN_OK)
			break;
	}
	if (ch->nreq > 0 && (st == CHAN_EMPTY || st == CHAN_STOP))
		st = CHAN_OK;
	return st;
}

/* ---- Answering ------------------------------------------------------- */

typedef int op_fn(void *ctx, struct dmu_req *req);

static op_fn *op_callback(const struct dmu_ops *ops, uint64_t type)
{
	if (type & DM_USER_REQ_NOTIFY)
		return ops->notify;
	switch (type) {
	case DM_USER_REQ_MAP_READ:
		return ops->read;
	case DM_USER_REQ_MAP_WRITE:
		return ops->write;
	case DM_USER_REQ_MAP_FLUSH:
		return ops->flush;
	case DM_USER_REQ_MAP_DISCARD:
		return ops->discard;
	case DM_USER_REQ_MAP_WRITE_ZEROES:
		return ops->write_zeroes;
	case DM_USER_REQ_MAP_SECURE_ERASE:
		return ops->secure_erase;
	default:
		return NULL;
	}
}

/*
 * The DM_USER_RESP_* answer to @m for a callback's result @rc, which is
 * changed to why where the result is refused (for the log).
 */
static int resp_of(const struct chan *ch, const struct dm_user_message *m,
		   const struct dmu_req *req, int *rc)
{
	if (*rc == DMU_REMAP) {
		const struct server *srv = ch->srv;

		/*
		 * Not asked for, or a place the kernel would refuse: the
		 * callback's bug, answered as an error rather than sent to
		 * be refused, which would fail the channel.
		 */
		uint64_t size = atomic_load(&srv->size);

		if (!srv->remap || req->remap_offset % srv->block_size ||
		    req->remap_offset > size ||
		    (m->type != DM_USER_REQ_MAP_FLUSH &&
		     m->len > size - req->remap_offset)) {
			*rc = -EINVAL;
			return DM_USER_RESP_ERROR;
		}
		return DM_USER_RESP_REMAP;
	}
	/* Pending where nothing may be, or completed as pending again. */
	if (*rc == DMU_PENDING || *rc > 0)
		*rc = -EINVAL;
	/* A read answered from nowhere is the callback's bug: not stale data. */
	if (*rc == 0 && m->type == DM_USER_REQ_MAP_READ && !req->data)
		*rc = -EFAULT;
	if (*rc == 0)
		return DM_USER_RESP_SUCCESS;
	return *rc == -EOPNOTSUPP ? DM_USER_RESP_UNSUPPORTED
				  : DM_USER_RESP_ERROR;
}

/*
 * Runs the callback; returns the DM_USER_RESP_* code, or RESP_PENDING
 * where the callback left a request in a slot (@may_pend) pending; its
 * result in @rc, and in @req what it was given (a READ's data is at
 * req->data after it).
 */
static int serve_request(struct chan *ch, const struct request *rq,
			 void *rbuf, struct dmu_req *req, int *rc,
			 bool may_pend)
{
	const struct dm_user_message *m = rq->msg;
	op_fn *fn = op_callback(ch->srv->ops, m->type);

	*req = (struct dmu_req){
		.type = m->type, .flags = m->flags, .len = m->len,
		.channel = ch->id,
		/* The kernel fails only that read: see RING_ENTER. */
		.data_may_fault = m->type == DM_USER_REQ_MAP_READ && ch->ring,
	};
	*rc = 0;
	/* A daemon that asks for no notification lets every write through. */
	if (!fn)
		return m->type & DM_USER_REQ_NOTIFY ? DM_USER_RESP_SUCCESS :
						      DM_USER_RESP_UNSUPPORTED;
	if (rq->oversize ||
	    (m->type == DM_USER_REQ_MAP_READ && m->len > MAX_IO))
		return DM_USER_RESP_ERROR;
	/* The range of a flush means nothing, whatever its sector says. */
	if (m->type != DM_USER_REQ_MAP_FLUSH && !byte_offset(m, &req->offset))
		return DM_USER_RESP_ERROR;
	/* Past the size known: a reload grew it, which ->reload hears first. */
	if (m->type != DM_USER_REQ_MAP_FLUSH &&
	    req->offset + m->len > atomic_load(&ch->srv->size))
		check_reload(ch, true);
	if (m->type == DM_USER_REQ_MAP_READ)
		req->data = rbuf;
	else if (m->type == DM_USER_REQ_MAP_WRITE)
		req->data = rq->data ? rq->data : (void *)m->buf;
	req->remap_offset = req->offset;
	*rc = fn(ch->srv->ctx, req);
	if (*rc == DMU_PENDING && may_pend)
		return RESP_PENDING;
	return resp_of(ch, m, req, rc);
}

/*
 * Sends @cnt pieces: one answer, or with WRITE_BATCH several in a row (the
 * kernel takes any number of whole answers per call then; otherwise each
 * write() must carry bytes of one answer only). At most opts->split bytes
 * per call.
 */
static enum chan_status send_answer(struct chan *ch, struct iovec *iov,
				    int cnt)
{
	size_t split = ch->srv->split;

	for (;;) {
		struct iovec part[OUT_IOV];
		size_t budget = split ? split : SIZE_MAX;
		int i, np = 0;
		ssize_t n;

		while (cnt > 0 && iov->iov_len == 0) {
			iov++;
			cnt--;
		}
		if (cnt == 0)
			return CHAN_OK;
		for (i = 0; i < cnt && i < OUT_IOV && budget; i++, np++) {
			part[i].iov_base = iov[i].iov_base;
			part[i].iov_len = iov[i].iov_len < budget ?
					  iov[i].iov_len : budget;
			budget -= part[i].iov_len;
		}
		n = writev(ch->fd, part, np);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* Answers never block today; be ready if they do. */
			struct pollfd p = { .fd = ch->fd, .events = POLLOUT };

			if (poll(&p, 1, POLL_MS) < 0 && errno != EINTR)
				return chan_fail(ch, errno);
			continue;
		}
		if (n < 0 && errno == ENOTBLK)
			return CHAN_GONE;
		if (n < 0 && errno == ECONNRESET)
			return CHAN_RESET;
		if (n < 0)
			return chan_fail(ch, errno);
		if (n == 0)
			return chan_fail(ch, EIO);
		for (; n > 0 && (size_t)n >= iov->iov_len; iov++, cnt--)
			n -= iov->iov_len;
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
}

static void free_slot(struct chan *ch, struct slot *s);

/*
 * Sends the answers gathered by queue_resp(), in one call if it can, and
 * frees the slots whose data they were, sent or not.
 */
static enum chan_status flush_answers(struct chan *ch)
{
	enum chan_status st = CHAN_OK;

	if (ch->nout)
		st = send_answer(ch, ch->out_iov, ch->nout);
	ch->nout = 0;
	ch->out_data = 0;
	while (ch->unsent) {
		struct slot *s = ch->unsent;

		ch->unsent = s->next;
		free_slot(ch, s);
	}
	return st;
}

/*
 * Adds the answer @resp to @m to those waiting to be sent; the caller
 * made room for it. A READ's data goes from @req->data.
 */
static void queue_resp(struct chan *ch, const struct dm_user_message *m,
		       const struct dmu_req *req, int resp, int rc)
{
	struct dm_user_message *hdr = &ch->out_hdr[ch->nout / 2];
	size_t data = resp == DM_USER_RESP_SUCCESS &&
		      m->type == DM_USER_REQ_MAP_READ ? m->len : 0;

	if (ch->srv->verbose && resp != DM_USER_RESP_SUCCESS)
		log_answer(ch, m, resp, rc);
	*hdr = (struct dm_user_message){
		.seq = m->seq, .type = resp, .flags = m->flags,
		.sector = resp == DM_USER_RESP_REMAP ? req->remap_offset / 512 :
						       m->sector,
		.len = m->len,
	};
	ch->out_iov[ch->nout++] = (struct iovec){ hdr, HDR_SIZE };
	/* Always a pair, so that headers and pieces stay in step. */
	ch->out_iov[ch->nout++] = (struct iovec){ req->data, data };
	if (data && req->data == ch->rdata + ch->out_data)
		ch->out_data += data;
}

/*
 * Serves @rq and adds its answer to those waiting to be sent, sending them
 * first if this one's header or data would not fit. Without WRITE_BATCH
 * the caller flushes after each answer, as the kernel then takes one answer
 * per write().
 */
static enum chan_status queue_answer(struct chan *ch, const struct request *rq)
{
	const struct dm_user_message *m = rq->msg;
	enum chan_status st;
	struct dmu_req req;
	int rc, resp;

	if (ch->nout + 2 > OUT_IOV ||
	    (m->type == DM_USER_REQ_MAP_READ &&
	     m->len > MAX_IO - ch->out_data)) {
		st = flush_answers(ch);
		if (st != CHAN_OK)
			return st;
	}
	resp = serve_request(ch, rq, ch->rdata + ch->out_data, &req, &rc,
			     false);
	queue_resp(ch, m, &req, resp, rc);
	return CHAN_OK;
}

/* Whether a request changes the store, so must not be applied late. */
static bool modifies(const struct dm_user_message *m)
{
	return m->type != DM_USER_REQ_MAP_READ &&
	       m->type != DM_USER_REQ_MAP_FLUSH;
}

/*
 * Whether the kernel has reset the channel (POLLERR, and not the target's
 * end, which read() reports as ENOTBLK). The protocol's rule: requests read
 * on a reset channel are void and must not be applied, as the kernel may
 * already have served them again.
 */
static bool chan_was_reset(struct chan *ch)
{
	struct pollfd p = { .fd = ch->fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLERR) &&
	       !(p.revents & POLLHUP);
}

/* CHAN_RESET, CHAN_GONE, or CHAN_OK, as poll() says now. */
static enum chan_status chan_error(struct chan *ch)
{
	struct pollfd p = { .fd = ch->fd, .events = POLLIN };

	if (poll(&p, 1, 0) != 1)
		return CHAN_OK;
	if (p.revents & POLLHUP)
		return CHAN_GONE;
	return p.revents & POLLERR ? CHAN_RESET : CHAN_OK;
}

static enum chan_status serve_collected(struct chan *ch)
{
	struct server *srv = ch->srv;
	size_t i;

	for (i = 0; i < ch->nreq; i++)
		if (modifies(ch->reqs[i].msg))
			break;
	if (i < ch->nreq && chan_was_reset(ch))
		return CHAN_RESET;
	/*
	 * In reverse order when batching, on purpose: the kernel must cope
	 * with answers in any order.
	 */
	for (i = 0; i < ch->nreq; i++) {
		size_t k = srv->batch > 1 ? ch->nreq - 1 - i : i;
		enum chan_status st;

		/* A failure comes from flush_answers(), which empties the queue. */
		st = queue_answer(ch, &ch->reqs[k]);
		if (st == CHAN_OK && !ch->write_batch)
			st = flush_answers(ch);
		if (st != CHAN_OK)
			return st;
	}
	return flush_answers(ch);
}

/*
 * read() and write() without pending requests: reads a batch, then
 * answers it. What was read is answered even if a later read failed,
 * unless the channel was reset: then all of it is void.
 */
static enum chan_status rw_step(struct chan *ch, bool wait, unsigned int *took)
{
	enum chan_status st = collect(ch, wait), ast;

	*took = ch->nreq;
	if (st == CHAN_EMPTY)
		st = CHAN_OK;
	ast = st == CHAN_RESET ? st : serve_collected(ch);
	if (st == CHAN_OK || st == CHAN_STOP)
		st = ast;
	check_reload(ch, false);
	return st;
}

/* ---- Pending requests (opts->max_pending) ---------------------------- */

/*
 * A ring's mapping holds its file, and the kernel gives the requests of a
 * reset channel back to the queue only when the file is released: while
 * pending slots keep the old mapping, their requests would wait for the
 * daemon's late completions (or their own timeout). So the mapping is
 * swapped, at the same address, for private memory with a copy of it:
 * what the daemon still reads there (a write's data) is as it was, what
 * it writes there goes nowhere, and the file is let go. If that fails,
 * the mapping stays, which is only slower.
 */
static void detach_map(struct ring_map *map)
{
	void *copy = mmap(NULL, map->size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (copy == MAP_FAILED)
		return;
	memcpy(copy, map->addr, map->size);
	if (mremap(copy, map->size, map->size, MREMAP_MAYMOVE | MREMAP_FIXED,
		   map->addr) == MAP_FAILED)
		munmap(copy, map->size);
}

static void put_map(struct ring_map *map)
{
	if (map && !--map->users) {
		munmap(map->addr, map->size);
		free(map);
	}
}

static struct slot *take_slot(struct chan *ch)
{
	struct slot *s = ch->free_slots;

	ch->free_slots = s->next;
	s->next = NULL;
	s->gen = ch->gen;
	ch->pending++;
	return s;
}

static void free_slot(struct chan *ch, struct slot *s)
{
	ch->no_memory = false;
	put_map(s->map);
	s->map = NULL;
	s->next = ch->free_slots;
	ch->free_slots = s;
	ch->pending--;
}

static void ring_complete(struct chan *ch, uint32_t slot, uint64_t seq,
			  uint32_t resp, const void *from, uint64_t sector);

/*
 * Adds the answer to a slot's request to those waiting to be sent (its
 * data is in the slot), and frees the slot once they are sent.
 */
static enum chan_status queue_slot_answer(struct chan *ch, struct slot *s,
					  int resp, int rc)
{
	enum chan_status st = CHAN_OK;

	if (ch->nout + 2 > OUT_IOV)
		st = flush_answers(ch);
	queue_resp(ch, &s->msg, &s->req, resp, rc);
	s->next = ch->unsent;
	ch->unsent = s;
	if (st == CHAN_OK && !ch->write_batch)
		st = flush_answers(ch);
	return st;
}

/*
 * Answers a completed slot: on a ring, a completion the next enter hands
 * in (and the slot is free at once, its data being the kernel's to copy
 * at that enter); otherwise an answer in out_iov, and the slot is freed
 * once that is sent.
 */
static enum chan_status answer_slot(struct chan *ch, struct slot *s)
{
	int rc = s->rc;
	int resp = resp_of(ch, &s->msg, &s->req, &rc);

	if (ch->ring) {
		if (ch->srv->verbose && resp != DM_USER_RESP_SUCCESS)
			log_answer(ch, &s->msg, resp, rc);
		ring_complete(ch, s->ring_slot, s->msg.seq, resp,
			      resp == DM_USER_RESP_SUCCESS &&
			      s->msg.type == DM_USER_REQ_MAP_READ &&
			      s->req.data != s->ring_data ? s->req.data : NULL,
			      s->req.remap_offset / 512);
		free_slot(ch, s);
		return CHAN_OK;
	}
	return queue_slot_answer(ch, s, resp, rc);
}

/*
 * Takes the slots dmu_complete() gave back since the last look and
 * answers them in the order they were completed; those of a channel the
 * kernel reset since they were read, or of one that ended other than by a
 * stop, are dropped.
 */
static enum chan_status take_done(struct chan *ch)
{
	enum chan_status st = CHAN_OK;
	struct slot *s, *next, *fifo = NULL;
	uint64_t count;

	if (ch->evfd < 0)
		return CHAN_OK;
	/*
	 * First, and always: a completion after it finds the eventfd
	 * readable again, and one whose write() came after its slot was
	 * taken (and the channel's last pending request answered) leaves it
	 * readable with nothing to take, which must not wake the channel for
	 * ever.
	 */
	if (read(ch->evfd, &count, sizeof(count)) < 0 && errno != EAGAIN &&
	    errno != EINTR)
		return chan_fail(ch, errno);
	s = atomic_exchange_explicit(&ch->done, NULL, memory_order_acquire);
	for (; s; s = next) {
		next = s->next;
		s->next = fifo;
		fifo = s;
	}
	for (s = fifo; s; s = next) {
		next = s->next;
		if (st == CHAN_OK && s->gen == ch->gen &&
		    (ch->end == CHAN_OK || ch->end == CHAN_STOP))
			st = answer_slot(ch, s);
		else
			free_slot(ch, s);
	}
	return st;
}

void dmu_complete(struct dmu_req *req, int rc)
{
	static const uint64_t one = 1;
	struct slot *s = (struct slot *)((char *)req -
					 offsetof(struct slot, req));
	struct chan *ch = s->ch;
	struct slot *head;

	/* The channel is not freed until this call has left it. */
	atomic_fetch_add(&ch->completers, 1);
	s->rc = rc;
	head = atomic_load_explicit(&ch->done, memory_order_relaxed);
	do {
		s->next = head;
	} while (!atomic_compare_exchange_weak_explicit(&ch->done, &head, s,
							memory_order_release,
							memory_order_relaxed));
	/*
	 * The first of a run wakes the channel; the others find it awake.
	 * An eventfd write fails only when its counter is full, when it is
	 * readable already.
	 */
	if (!head)
		while (write(ch->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	atomic_fetch_sub(&ch->completers, 1);
}

/*
 * read() and write() with pending requests: each request is read into a
 * slot's buffer, where it stays, with a READ's answer after it, until it
 * is answered. At most max_pending at once: at the limit the channel
 * leaves the rest in the kernel.
 */
static enum chan_status rw_async_step(struct chan *ch, bool wait,
				      unsigned int *took)
{
	enum chan_status st = take_done(ch), fst;

	/* Full: woken by EPOLLERR or EPOLLHUP, which read() would name. */
	if (st == CHAN_OK && (!ch->free_slots || ch->no_memory))
		st = chan_error(ch);
	while (st == CHAN_OK && ch->free_slots && !ch->end) {
		struct slot *s = ch->free_slots;
		struct request *rq;
		int rc, resp;

		/* Without memory, wait for a completion to free a buffer. */
		if (!s->buf) {
			s->buf = aligned_alloc(BUF_ALIGN, BUF_SIZE);
			if (!s->buf && !ch->pending)
				st = chan_fail(ch, ENOMEM);
			if (!s->buf) {
				ch->no_memory = true;
				break;
			}
		}
		ch->nreq = 0;
		st = recv_buffer(ch, s->buf, wait && !*took);
		if (st != CHAN_OK)
			break;
		rq = &ch->reqs[0];
		/* As serve_collected(): nothing is applied on a reset channel. */
		if (modifies(rq->msg) && chan_was_reset(ch)) {
			st = CHAN_RESET;
			break;
		}
		take_slot(ch);
		(*took)++;
		s->msg = *rq->msg;
		resp = serve_request(ch, rq, s->buf + BUF_ALIGN, &s->req, &rc,
				     true);
		if (resp != RESP_PENDING)
			st = queue_slot_answer(ch, s, resp, rc);
	}
	if (st == CHAN_EMPTY)
		st = CHAN_OK;
	fst = flush_answers(ch);
	if (st == CHAN_OK)
		st = fst;
	check_reload(ch, false);
	return st;
}

/* ---- The ring ------------------------------------------------------- */

/*
 * RING_ENTER: hands in the completions posted, takes new requests into
 * *@posted, waiting up to @wait_ms for one. A signal is a call that posted
 * nothing.
 */
static enum chan_status ring_enter(struct chan *ch, unsigned int wait_ms,
				   unsigned int *posted)
{
	int n = ioctl(ch->fd, DM_USER_IOCTL_RING_ENTER, (unsigned long)wait_ms);

	*posted = n > 0 ? (unsigned int)n : 0;
	if (n >= 0 || errno == EINTR)
		return CHAN_OK;
	if (errno == ENOTBLK)
		return CHAN_GONE;
	if (errno == ECONNRESET)
		return CHAN_RESET;
	return chan_fail(ch, errno);
}

/*
 * Posts the completion of the request in @slot; the next enter hands it in.
 * A read's data is in the data area, or at @from (not NULL) in our memory,
 * which the kernel copies from at that enter (DM_USER_RING_CQE_ADDR).
 */
static void ring_complete(struct chan *ch, uint32_t slot, uint64_t seq,
			  uint32_t resp, const void *from, uint64_t sector)
{
	struct dm_user_ring_cqe *cqe = &ch->cq[ch->cq_tail & (ch->depth - 1)];

	*cqe = (struct dm_user_ring_cqe){
		.seq = seq, .slot = slot, .type = resp,
		.addr = (uintptr_t)from,
		.flags = from ? DM_USER_RING_CQE_ADDR : 0,
	};
	if (resp == DM_USER_RESP_REMAP)
		cqe->sector = sector;
	ch->cq_tail++;
	/* The entry before the tail that publishes it. */
	__atomic_store_n(&ch->ring->cq_tail, ch->cq_tail, __ATOMIC_RELEASE);
}

/*
 * Serves the requests the kernel posted and not served yet, each from and
 * into its data: a WRITE's data is there, and a READ's answer goes there,
 * unless the callback pointed req.data at its own memory: the kernel then
 * copies from there, one copy instead of two. That memory stays as it is
 * until the next enter, as the API asks ("until the answer is sent").
 * With max_pending, each takes a slot, and the requests beyond the limit
 * wait in the submission queue for a slot to free.
 */
static enum chan_status ring_serve(struct chan *ch, unsigned int *took)
{
	uint32_t tail = __atomic_load_n(&ch->ring->sq_tail, __ATOMIC_ACQUIRE);
	uint32_t mask = ch->depth - 1;
	bool may_pend = ch->srv->max_pending;

	for (; ch->sq_head != tail; ch->sq_head++) {
		struct dm_user_ring_sqe sqe = ch->sq[ch->sq_head & mask];
		uint32_t slot = sqe.slot;
		struct request rq = { 0 };
		struct dm_user_message m;
		struct dmu_req req, *r = &req;
		struct slot *s = NULL;
		unsigned char *data;
		int rc, resp;

		if (may_pend && !ch->free_slots)
			break;
		if (slot >= ch->depth)
			return chan_fail(ch, EPROTO);
		/* Ours until completed, but copied: the memory is shared. */
		m = ch->desc[slot];
		if ((m.type == DM_USER_REQ_MAP_READ ||
		     m.type == DM_USER_REQ_MAP_WRITE) &&
		    (sqe.data > ch->data_size ||
		     m.len > ch->data_size - sqe.data))
			return chan_fail(ch, EPROTO);
		data = ch->data + sqe.data;
		if (ch->srv->verbose)
			log_request(ch, &m);
		/* As for read(): nothing is applied on a reset channel. */
		if (modifies(&m) && (__atomic_load_n(&ch->ring->flags,
						     __ATOMIC_ACQUIRE) &
				     DM_USER_RING_RESET))
			return CHAN_RESET;
		if (may_pend) {
			s = take_slot(ch);
			s->msg = m;
			s->ring_slot = slot;
			s->ring_data = data;
			s->map = ch->map;
			s->map->users++;
			r = &s->req;
		}
		(*took)++;
		rq.msg = &m;
		if (m.type == DM_USER_REQ_MAP_WRITE)
			rq.data = data;
		resp = serve_request(ch, &rq, data, r, &rc, may_pend);
		if (resp == RESP_PENDING)
			continue;
		if (ch->srv->verbose && resp != DM_USER_RESP_SUCCESS)
			log_answer(ch, &m, resp, rc);
		ring_complete(ch, slot, m.seq, resp,
			      resp == DM_USER_RESP_SUCCESS &&
			      m.type == DM_USER_REQ_MAP_READ &&
			      r->data != data ? r->data : NULL,
			      r->remap_offset / 512);
		if (s)
			free_slot(ch, s);
	}
	return CHAN_OK;
}

/* Whether completions are posted that no enter has handed in yet. */
static bool ring_unhanded(const struct chan *ch)
{
	return ch->ring && ch->cq_tail != __atomic_load_n(&ch->ring->cq_head,
							  __ATOMIC_ACQUIRE);
}

/*
 * One round on a ring: the completed requests posted, then one enter that
 * hands in every completion and takes new requests (waiting up to
 * @wait_ms for one), which are served. A channel that has ended only
 * hands in what a stop leaves to answer.
 */
static enum chan_status ring_step(struct chan *ch, unsigned int wait_ms,
				  unsigned int *took)
{
	enum chan_status st = take_done(ch);
	unsigned int posted;

	if (st != CHAN_OK)
		return st;
	if (ch->end) {
		if (ch->end == CHAN_STOP && ring_unhanded(ch))
			st = ring_enter(ch, DM_USER_RING_COMPLETE_ONLY, &posted);
		return st;
	}
	/*
	 * Full: completions handed in, nothing taken, so that what the
	 * channel cannot serve stays in the kernel for the others.
	 */
	if (ch->srv->max_pending && !ch->free_slots)
		st = ring_enter(ch, DM_USER_RING_COMPLETE_ONLY, &posted);
	else
		st = ring_enter(ch, wait_ms, &posted);
	check_reload(ch, false);
	if (st == CHAN_OK)
		st = ring_serve(ch, took);
	return st;
}

/* ---- A channel's life ------------------------------------------------ */

static int open_fd(struct server *srv, struct chan *ch);
static void close_fd(struct chan *ch);
static int chan_watch(struct chan *ch, enum watch how);

/* One round of whichever way the channel serves. */
static enum chan_status chan_step(struct chan *ch, unsigned int wait_ms,
				  unsigned int *took)
{
	*took = 0;
	/* Closed by dmu_server_close_channel(): what comes back is dropped. */
	if (ch->fd < 0)
		return take_done(ch);
	if (ch->ring)
		return ring_step(ch, wait_ms, took);
	if (ch->end) {
		enum chan_status st = take_done(ch), fst = flush_answers(ch);

		return st == CHAN_OK ? fst : st;
	}
	if (ch->srv->max_pending)
		return rw_async_step(ch, wait_ms, took);
	return rw_step(ch, wait_ms, took);
}

/*
 * Waits up to POLL_MS for the channel's epoll set: a request (while the
 * channel can take one), a completion, or the channel's end.
 */
static enum chan_status wait_event(struct chan *ch)
{
	struct epoll_event ev[2];
	int n = epoll_wait(ch->epfd, ev, 2, POLL_MS);

	if (n < 0 && errno != EINTR)
		return chan_fail(ch, errno);
	if (n == 0 && !ch->end)
		check_reload(ch, false);
	return CHAN_OK;
}

/*
 * The kernel took back a request this channel had read (its
 * request_timeout): what is left of it is void. A new channel starts
 * clean; pending requests of the old one are dropped when completed.
 */
static enum chan_status reopen(struct chan *ch)
{
	struct server *srv = ch->srv;
	int rc;

	ch->resets++;
	if (srv->verbose)
		fprintf(stderr, "%s: [%u] channel reset by the kernel: reopening\n",
			program_invocation_short_name, ch->id);
	close_fd(ch);
	rc = open_fd(srv, ch);
	return rc == -ENOTBLK || rc == -ENOENT ? CHAN_GONE :
	       rc < 0 ? chan_fail(ch, rc) : CHAN_OK;
}

/*
 * Serves @ch for a while: with @block, one wait of up to POLL_MS for
 * something to do and what it brings (a serving thread); without, what
 * is ready now (dmu_server_serve()). A channel that takes requests and
 * holds none pending waits where they come (in RING_ENTER, or in epoll
 * for the channel alone), as nothing else can come; otherwise in its
 * epoll set, which a completion wakes too.
 *
 * Return: 0 to be called again; once the channel has ended and holds
 * nothing pending, 1, or a negative errno if a channel failed.
 */
static int chan_run(struct chan *ch, bool block)
{
	struct server *srv = ch->srv;
	enum chan_status st = CHAN_OK;
	unsigned int took, round;
	enum watch how;
	int rc;

	if (!ch->end && stopping(srv))
		ch->end = CHAN_STOP;
	if (block && !ch->end && !ch->pending) {
		/* The next enter hands in what this one's answers post. */
		st = chan_step(ch, POLL_MS, &took);
	} else {
		if (block && (!ch->end || ch->pending) &&
		    !(ring_unhanded(ch) && (!ch->end || ch->end == CHAN_STOP)))
			st = wait_event(ch);
		for (round = 0; st == CHAN_OK && round < SERVE_ROUNDS; round++) {
			st = chan_step(ch, 0, &took);
			if (!took)
				break;
		}
	}
	if (st == CHAN_OK && !ch->end && stopping(srv))
		ch->end = CHAN_STOP;
	/*
	 * Nothing left unanswered while the caller waits for an event, or
	 * once the channel stops (the kernel would give the requests back
	 * at the close, their work lost).
	 */
	if (st == CHAN_OK && ring_unhanded(ch) &&
	    (!ch->end || ch->end == CHAN_STOP) &&
	    (!block || ch->end || ch->pending))
		st = ring_enter(ch, DM_USER_RING_COMPLETE_ONLY, &round);
	/*
	 * An ended channel is not reopened but closed: its pending requests
	 * are void, and the kernel takes back what the reset left it.
	 */
	if (st == CHAN_RESET && ch->end) {
		close_fd(ch);
		ch->gen++;
	} else if (st == CHAN_RESET) {
		st = reopen(ch);
	}
	if ((st == CHAN_GONE || st == CHAN_FATAL) && ch->end != CHAN_FATAL)
		ch->end = st;
	else if (st == CHAN_STOP && !ch->end)
		ch->end = CHAN_STOP;
	if (!ch->end && stopping(srv))
		ch->end = CHAN_STOP;
	/* Full, or ended: only a completion (or a reset) is waited for. */
	how = ch->end ? WATCH_NONE :
	      srv->max_pending && (!ch->free_slots || ch->no_memory) ?
	      WATCH_ERRORS : WATCH_ALL;
	rc = chan_watch(ch, how);
	if (rc) {
		chan_fail(ch, rc);
		ch->end = CHAN_FATAL;
	}
	if (ch->end == CHAN_FATAL) {
		int none = 0;

		atomic_compare_exchange_strong(&srv->first_err, &none,
					       ch->err);
		atomic_store(&srv->abort, true);
	}
	if (!ch->end || ch->pending)
		return 0;
	if (ch->end == CHAN_GONE && srv->verbose)
		fprintf(stderr, "%s: [%u] target removed\n",
			program_invocation_short_name, ch->id);
	if (ch->end == CHAN_FATAL)
		return ch->err;
	return srv->first_err ? srv->first_err : 1;
}

static void *chan_main(void *arg)
{
	struct chan *ch = arg;

	while (!chan_run(ch, true))
		;
	return NULL;
}

/* ---- Setup ----------------------------------------------------------- */

/*
 * Makes the channel a ring: negotiated and mapped. -EOPNOTSUPP if the
 * kernel does not grant it.
 */
static int open_ring(struct server *srv, struct chan *ch)
{
	struct dmu_ring_params rp = {
		.depth = srv->ring_depth, .data = srv->ring_data,
	};

	/*
	 * With max_pending, a ring no deeper than needed: what the kernel
	 * posts beyond the limit would wait in this channel, not for the
	 * others.
	 */
	if (!rp.depth && srv->max_pending) {
		rp.depth = 1;
		while (rp.depth < srv->max_pending &&
		       rp.depth < DM_USER_RING_MAX_DEPTH)
			rp.depth *= 2;
	}
	uint32_t busy_poll = srv->ring_busy_poll;
	const struct dm_user_ring *h;
	uint64_t granted;
	void *map;
	int rc;

	rc = dmu_negotiate_ring_busy_poll(ch->fd, DM_USER_EXT_RING |
					  (srv->remap ? DM_USER_EXT_REMAP : 0),
					  &rp, &busy_poll, &granted);
	/* A kernel without the control interface has no ring either. */
	if (rc == -ENOTTY)
		return -EOPNOTSUPP;
	if (rc)
		return rc;
	if (!(granted & DM_USER_EXT_RING) || !rp.depth || rp.size > SIZE_MAX)
		return -EOPNOTSUPP;
	/* dmu_serve() saw the target could: it changed since. */
	if (srv->remap && !(granted & DM_USER_EXT_REMAP))
		return -ENXIO;
	map = mmap(NULL, rp.size, PROT_READ | PROT_WRITE, MAP_SHARED, ch->fd,
		   0);
	if (map == MAP_FAILED)
		return -errno;
	/* What the kernel says must fit what it mapped. */
	h = map;
	if (h->depth != rp.depth || h->data_size != rp.data ||
	    h->data_offset > rp.size ||
	    rp.size - h->data_offset < h->data_size ||
	    h->sq_offset > h->data_offset || h->cq_offset > h->data_offset ||
	    h->desc_offset > h->data_offset) {
		munmap(map, rp.size);
		return -EPROTO;
	}
	/*
	 * Every page mapped now, so that serving takes no page fault (whose
	 * page tables are allocations that could wait for this very device,
	 * if it is swap). The memory is the kernel's already.
	 */
	if (madvise(map, rp.size, MADV_POPULATE_WRITE)) {
		size_t off;

		if (errno != EINVAL) {
			rc = -errno;
			munmap(map, rp.size);
			return rc;
		}
		/* Before Linux 5.14: touched by hand. */
		for (off = 0; off < rp.size; off += 4096)
			((volatile unsigned char *)map)[off] =
				((unsigned char *)map)[off];
	}
	ch->map = malloc(sizeof(*ch->map));
	if (!ch->map) {
		munmap(map, rp.size);
		return -ENOMEM;
	}
	*ch->map = (struct ring_map){ .addr = map, .size = rp.size, .users = 1 };
	ch->ring = map;
	ch->depth = rp.depth;
	ch->data_size = rp.data;
	ch->sq = (void *)((char *)map + h->sq_offset);
	ch->cq = (void *)((char *)map + h->cq_offset);
	ch->desc = (void *)((char *)map + h->desc_offset);
	ch->data = (unsigned char *)map + h->data_offset;
	ch->sq_head = 0;
	ch->cq_tail = 0;
	return 0;
}

/* Whether open_fd() asks for the ring. */
static bool wants_ring(const struct server *srv, const struct chan *ch)
{
	if (srv->transport == DMU_TRANSPORT_RING)
		return true;
	return srv->transport == DMU_TRANSPORT_AUTO && srv->batch == 1 &&
	       !srv->split && !ch->read_batch && !ch->want_write_batch;
}

/*
 * Puts the channel in its epoll set as @how says. All channels of a
 * target wait on one queue. Exclusive: a new request wakes one idle
 * thread, not all of them, as a blocking read() would (Linux 4.5; older
 * kernels wake all). A full channel waits for a reset or the target's end
 * alone (EPOLLERR and EPOLLHUP, which epoll always reports); epoll cannot
 * change an exclusive entry, so every change is a removal and an addition.
 */
static int chan_watch(struct chan *ch, enum watch how)
{
	struct epoll_event ev = { .data.u32 = EV_CHAN };

	if (ch->fd < 0 || how == ch->watching)
		return 0;
	if (ch->watching != WATCH_NONE) {
		ch->watching = WATCH_NONE;
		if (epoll_ctl(ch->epfd, EPOLL_CTL_DEL, ch->fd, NULL))
			return -errno;
	}
	if (how == WATCH_NONE)
		return 0;
	ev.events = how == WATCH_ALL ? EPOLLIN | EPOLLEXCLUSIVE : 0;
	if (epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->fd, &ev)) {
		ev.events &= ~(uint32_t)EPOLLEXCLUSIVE;
		if (errno != EINVAL || how != WATCH_ALL ||
		    epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->fd, &ev))
			return -errno;
	}
	ch->watching = how;
	return 0;
}

/*
 * Takes the fd out of the epoll set (the ring's mapping may keep its file
 * open after close()), drops the channel's hold on the ring's mapping and
 * closes the fd.
 */
static void close_fd(struct chan *ch)
{
	if (ch->fd < 0)
		return;
	/* Left in the set, it could wake the channel for good: fatal. */
	if (chan_watch(ch, WATCH_NONE)) {
		int none = 0;

		atomic_compare_exchange_strong(&ch->srv->first_err, &none,
					       -errno);
		atomic_store(&ch->srv->abort, true);
	}
	if (ch->map && ch->map->users > 1)
		detach_map(ch->map);
	put_map(ch->map);
	ch->map = NULL;
	ch->ring = NULL;
	close(ch->fd);
	ch->fd = -1;
}

/*
 * Opens the channel's fd and puts it in the epoll set, a ring if
 * @try_ring and the options want one; -1 on failure.
 */
static int open_fd_how(struct server *srv, struct chan *ch, bool try_ring)
{
	int rc;

	ch->fd = open(srv->path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (ch->fd < 0)
		return -errno;
	rc = chan_watch(ch, WATCH_ALL);
	if (rc)
		goto fail;
	ch->write_batch = false;
	if (try_ring && wants_ring(srv, ch)) {
		rc = open_ring(srv, ch);
		if (!rc)
			return 0;
		if (srv->transport == DMU_TRANSPORT_RING)
			goto fail;
		/*
		 * AUTO falls back to read() and write(): on a new fd if the
		 * ring was granted but could not be mapped, as a channel that
		 * is a ring stays one.
		 */
		if (rc != -EOPNOTSUPP) {
			close_fd(ch);
			return open_fd_how(srv, ch, false);
		}
	}
	if (ch->read_batch || ch->want_write_batch || srv->remap) {
		uint64_t want = 0, granted = 0;

		if (ch->read_batch)
			want |= DM_USER_EXT_READ_BATCH;
		if (ch->want_write_batch)
			want |= DM_USER_EXT_WRITE_BATCH;
		if (srv->remap)
			want |= DM_USER_EXT_REMAP;
		rc = dmu_negotiate(ch->fd, want, &granted);
		/* WRITE_BATCH is only faster: without it, one answer a call. */
		if (!rc && ch->read_batch && !(granted & DM_USER_EXT_READ_BATCH))
			rc = -EOPNOTSUPP;
		if (!rc && srv->remap && !(granted & DM_USER_EXT_REMAP)) {
			rc = -ENXIO;
			goto fail;
		}
		if (rc < 0 && (rc != -EOPNOTSUPP || ch->read_batch))
			goto fail;
		ch->write_batch = !rc && (granted & DM_USER_EXT_WRITE_BATCH);
	}
	return 0;
fail:
	close_fd(ch);
	return rc;
}

/*
 * A channel opened after a reload sees no POLLPRI for it: the reloads are
 * looked at once it is open, as ->reload must hear of every one.
 */
static int open_fd(struct server *srv, struct chan *ch)
{
	int rc = open_fd_how(srv, ch, true);

	/* Slots read on an earlier open are answered nowhere. */
	ch->gen++;
	if (!rc)
		check_reload(ch, true);
	return rc;
}

/*
 * The channel's epoll set, with the eventfd of its completions, its
 * buffers and slots, then its fd. Pending requests bring their own
 * receive buffers, so a channel with max_pending has none of the batch's.
 */
static int open_chan(struct server *srv, struct chan *ch, bool read_batch,
		     bool write_batch)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = EV_DONE };
	unsigned int b, nbufs = srv->max_pending ? 0 : srv->batch;

	ch->read_batch = read_batch;
	ch->want_write_batch = write_batch;
	ch->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ch->epfd < 0)
		return -errno;
	if (srv->max_pending) {
		ch->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (ch->evfd < 0 ||
		    epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->evfd, &ev))
			return -errno;
		ch->slots = calloc(srv->max_pending, sizeof(*ch->slots));
		if (!ch->slots)
			return -ENOMEM;
		for (b = srv->max_pending; b-- > 0;) {
			ch->slots[b].ch = ch;
			ch->slots[b].next = ch->free_slots;
			ch->free_slots = &ch->slots[b];
		}
	}
	ch->bufs = calloc(nbufs ? nbufs : 1, sizeof(*ch->bufs));
	ch->reqcap = srv->batch;
	ch->reqs = calloc(ch->reqcap, sizeof(*ch->reqs));
	ch->rdata = aligned_alloc(BUF_ALIGN, MAX_IO);
	if (!ch->bufs || !ch->reqs || !ch->rdata)
		return -ENOMEM;
	for (b = 0; b < nbufs; b++) {
		ch->bufs[b] = aligned_alloc(BUF_ALIGN, BUF_SIZE);
		if (!ch->bufs[b])
			return -ENOMEM;
	}
	return open_fd(srv, ch);
}

/*
 * Notes the target's size and reloads, and with remap its block size,
 * which the kernel checks remaps against; with remap, whether the target
 * can take remap answers (a kernel that knows them, a backing device).
 * 0, -EOPNOTSUPP, or why the node could not be asked.
 */
static int learn_target(struct server *srv)
{
	struct dmu_info info;
	int fd, rc;

	atomic_init(&srv->size, UINT64_MAX);
	fd = open(srv->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = dmu_get_info(fd, &info);
	close(fd);
	/*
	 * A kernel without the control interface has no remap, nor
	 * reloads to follow: its channels still serve.
	 */
	if (rc == -ENOTTY)
		return srv->remap ? -EOPNOTSUPP : 0;
	if (rc)
		return rc;
	atomic_store(&srv->size, info.size * 512);
	srv->reloads = info.reloads;
	if (!srv->remap)
		return 0;
	if (info.version < 4 || !info.backing[0] || !info.block_size)
		return -EOPNOTSUPP;
	srv->block_size = info.block_size;
	return 0;
}

static void close_chan(struct server *srv, struct chan *ch)
{
	unsigned int b;

	close_fd(ch);
	/* A dmu_complete() that pushed the last slot may not have left yet. */
	while (atomic_load(&ch->completers))
		sched_yield();
	if (ch->epfd >= 0)
		close(ch->epfd);
	if (ch->evfd >= 0)
		close(ch->evfd);
	for (b = 0; ch->bufs && b < srv->batch; b++)
		free(ch->bufs[b]);
	free(ch->bufs);
	free(ch->reqs);
	free(ch->rdata);
	for (b = 0; ch->slots && b < srv->max_pending; b++)
		free(ch->slots[b].buf);
	free(ch->slots);
}

/* What the event-loop form hands out; dmu_serve() has one too. */
struct dmu_server {
	struct server srv;
	char path[PATH_MAX];
	unsigned int nchans;	/* opened or tried: closed by server_free() */
};

static void server_free(struct dmu_server *d)
{
	unsigned int i;

	for (i = 0; i < d->nchans; i++)
		close_chan(&d->srv, &d->srv.chans[i]);
	free(d->srv.chans);
	pthread_mutex_destroy(&d->srv.reload_lock);
	free(d);
}

int dmu_server_open_size(struct dmu_server **out, const char *name,
			 const struct dmu_ops *ops, void *ctx,
			 const struct dmu_serve_opts *user_opts,
			 size_t opts_size)
{
	struct dmu_serve_opts opts = { 0 };
	struct dmu_server *d;
	struct server *srv;
	bool rw_opts, ring_opts;
	unsigned int i;
	int rc;

	if (!out || !name || !*name || !ops)
		return -EINVAL;
	*out = NULL;
	/* The fields the caller's header had; the others stay 0. */
	if (user_opts)
		memcpy(&opts, user_opts,
		       opts_size < sizeof(opts) ? opts_size : sizeof(opts));
	if (opts.transport > DMU_TRANSPORT_RW ||
	    opts.max_pending > DMU_MAX_PENDING ||
	    (opts.max_pending && (opts.batch > 1 || opts.read_batch)))
		return -EINVAL;
	/* Options one transport would ignore while the other is in use. */
	rw_opts = opts.batch > 1 || opts.split || opts.read_batch ||
		  opts.write_batch;
	ring_opts = opts.ring_depth || opts.ring_data || opts.ring_busy_poll;
	if ((rw_opts && opts.transport == DMU_TRANSPORT_RING) ||
	    (ring_opts && (opts.transport == DMU_TRANSPORT_RW || rw_opts)))
		return -EINVAL;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	srv = &d->srv;
	if (strchr(name, '/')) {
		rc = snprintf(d->path, sizeof(d->path), "%s", name);
	} else {
		rc = snprintf(d->path, sizeof(d->path), "/dev/dm-user/%s", name);
	}
	if (rc < 0 || (size_t)rc >= sizeof(d->path)) {
		free(d);
		return -ENAMETOOLONG;
	}
	srv->path = d->path;
	srv->ops = ops;
	srv->ctx = ctx;
	srv->threads = opts.threads ? opts.threads : 1;
	srv->batch = opts.batch ? opts.batch : 1;
	srv->split = opts.split;
	srv->verbose = opts.verbose;
	srv->stop = opts.stop;
	srv->ready = opts.ready;
	srv->transport = opts.transport;
	srv->ring_depth = opts.ring_depth;
	srv->ring_data = opts.ring_data;
	srv->ring_busy_poll = opts.ring_busy_poll;
	srv->remap = opts.remap;
	srv->max_pending = opts.max_pending;
	atomic_init(&srv->abort, false);
	atomic_init(&srv->first_err, 0);
	rc = pthread_mutex_init(&srv->reload_lock, NULL);
	if (rc) {
		free(d);
		return -rc;
	}
	srv->chans = calloc(srv->threads, sizeof(*srv->chans));
	rc = srv->chans ? learn_target(srv) : -ENOMEM;
	for (i = 0; !rc && i < srv->threads; i++) {
		struct chan *ch = &srv->chans[i];

		ch->srv = srv;
		ch->id = i;
		ch->fd = ch->epfd = ch->evfd = -1;
		atomic_init(&ch->done, NULL);
		atomic_init(&ch->completers, 0);
		d->nchans++;
		rc = open_chan(srv, ch, opts.read_batch, opts.write_batch);
	}
	if (rc) {
		server_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

int dmu_server_fd(const struct dmu_server *d, unsigned int channel)
{
	if (!d || channel >= d->srv.threads)
		return -EINVAL;
	return d->srv.chans[channel].epfd;
}

int dmu_server_serve(struct dmu_server *d, unsigned int channel)
{
	if (!d || channel >= d->srv.threads)
		return -EINVAL;
	return chan_run(&d->srv.chans[channel], false);
}

int dmu_server_close_channel(struct dmu_server *d, unsigned int channel)
{
	struct chan *ch;

	if (!d || channel >= d->srv.threads)
		return -EINVAL;
	ch = &d->srv.chans[channel];
	close_fd(ch);
	/* What it holds pending is the kernel's again: dropped when completed. */
	ch->gen++;
	return 0;
}

int dmu_server_open_channel(struct dmu_server *d, unsigned int channel)
{
	struct chan *ch;
	int rc;

	if (!d || channel >= d->srv.threads)
		return -EINVAL;
	ch = &d->srv.chans[channel];
	if (ch->end)
		return ch->end == CHAN_GONE ? -ENOTBLK : -ESHUTDOWN;
	if (ch->fd >= 0)
		return 0;
	rc = open_fd(&d->srv, ch);
	/* The node is gone: the target was removed while the channel was closed. */
	if (rc == -ENOENT || rc == -ENXIO || rc == -ENODEV || rc == -ENOTBLK) {
		ch->end = CHAN_GONE;
		return -ENOTBLK;
	}
	return rc;
}

unsigned int dmu_server_pending(const struct dmu_server *d,
				unsigned int channel)
{
	if (!d || channel >= d->srv.threads)
		return 0;
	return d->srv.chans[channel].pending;
}

int dmu_server_close(struct dmu_server *d)
{
	unsigned int i;

	if (!d)
		return 0;
	for (i = 0; i < d->srv.threads; i++)
		if (d->srv.chans[i].pending)
			return -EBUSY;
	server_free(d);
	return 0;
}

int dmu_serve_size(const char *name, const struct dmu_ops *ops, void *ctx,
		   const struct dmu_serve_opts *opts, size_t opts_size)
{
	struct dmu_server *d;
	struct server *srv;
	unsigned int i, started = 0;
	int err, rc;

	err = dmu_server_open_size(&d, name, ops, ctx, opts, opts_size);
	if (err)
		return err;
	srv = &d->srv;
	for (i = 0; i < srv->threads; i++) {
		rc = pthread_create(&srv->chans[i].thread, NULL, chan_main,
				    &srv->chans[i]);
		if (rc) {
			err = -rc;
			atomic_store(&srv->abort, true);
			break;
		}
		started++;
	}
	if (!err && srv->ready)
		srv->ready(ctx);
	for (i = 0; i < started; i++)
		pthread_join(srv->chans[i].thread, NULL);
	if (!err)
		err = atomic_load(&srv->first_err);
	server_free(d);
	return err;
}

/* For programs built before libdmuser 1.7: their struct ends at remap. */
#undef dmu_serve
int dmu_serve(const char *name, const struct dmu_ops *ops, void *ctx,
	      const struct dmu_serve_opts *opts)
{
	return dmu_serve_size(name, ops, ctx, opts,
			      offsetof(struct dmu_serve_opts, max_pending));
}

/*
 * MCL_ONFAULT locks pages as they are first touched rather than all at
 * once: a sparse store, thread stacks and receive buffers of a daemon stay
 * unpopulated until used, and are locked from then on. Kernels before 4.4
 * do not know the flag and get the plain MCL_CURRENT | MCL_FUTURE.
 */
static bool may_lock_all_memory(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	struct rlimit rl;

	if (!getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur == RLIM_INFINITY)
		return true;
	if (syscall(SYS_capget, &hdr, data))
		return false;
	return data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &
	       CAP_TO_MASK(CAP_IPC_LOCK);
}

int dmu_prepare_daemon(void)
{
	int err = 0;

	/* 1 sets the flag (the RFC's daemons passed 0, which clears it). */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0))
		err = -errno;
	/*
	 * Under a finite RLIMIT_MEMLOCK, MCL_FUTURE would make the daemon's
	 * own mmap() and thread stacks fail once the limit is reached:
	 * better not to lock at all.
	 */
	if (!may_lock_all_memory())
		return err ? err : -EPERM;
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0)
		return err;
	if (errno == EINVAL && mlockall(MCL_CURRENT | MCL_FUTURE) == 0)
		return err;
	return err ? err : -errno;
}
