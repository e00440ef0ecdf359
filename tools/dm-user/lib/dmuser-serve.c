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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
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
	size_t ring_size;
	struct dm_user_ring_sqe *sq;
	struct dm_user_ring_cqe *cq;
	struct dm_user_message *desc;
	unsigned char *data;	/* the data area */
	uint32_t depth, data_size;
	uint32_t sq_head, cq_tail;	/* our queue positions */
	uint64_t reload_checked;	/* ms, CLOCK_MONOTONIC: see check_reload() */
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

/*
 * Waits for the channel to become readable. @can_stop: between messages,
 * where a stop request ends the wait; inside one the rest is always
 * coming, and a message is never abandoned halfway.
 */
static enum chan_status wait_readable(struct chan *ch, bool can_stop)
{
	for (;;) {
		struct epoll_event ev;
		int n;

		if (can_stop && stopping(ch->srv))
			return CHAN_STOP;
		n = epoll_wait(ch->epfd, &ev, 1, POLL_MS);
		if (n < 0 && errno != EINTR)
			return chan_fail(ch, errno);
		if (!n)
			check_reload(ch, false);
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
 * One read() into receive buffer @b: one message without READ_BATCH, as
 * many whole ones as fit with it. Whatever it ends with that is not whole
 * is completed by more reads.
 */
static enum chan_status recv_buffer(struct chan *ch, unsigned int b, bool wait)
{
	unsigned char *base = ch->bufs[b] + BUF_LEAD;
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
 * Reads up to opts->batch requests: the first waiting, the others only if
 * already queued. Each read() has a buffer of its own, as the requests
 * stay there until answered.
 */
static enum chan_status collect(struct chan *ch)
{
	struct server *srv = ch->srv;
	enum chan_status st = CHAN_OK;
	unsigned int b;

	ch->nreq = 0;
	for (b = 0; b < srv->batch && ch->nreq < srv->batch; b++) {
		if (b > 0 && stopping(srv))
			break;
		st = recv_buffer(ch, b, b == 0);
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
 * Runs the callback; returns the DM_USER_RESP_* code, its result in @rc,
 * and in @req what it was given (a READ's data is at req->data after it).
 */
static int serve_request(struct chan *ch, const struct request *rq,
			 void *rbuf, struct dmu_req *req, int *rc)
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
	/* A read answered from nowhere is the callback's bug: not stale data. */
	if (*rc == 0 && m->type == DM_USER_REQ_MAP_READ && !req->data)
		*rc = -EFAULT;
	if (*rc == 0)
		return DM_USER_RESP_SUCCESS;
	return *rc == -EOPNOTSUPP ? DM_USER_RESP_UNSUPPORTED
				  : DM_USER_RESP_ERROR;
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

/* Sends the answers gathered by queue_answer(), in one call if it can. */
static enum chan_status flush_answers(struct chan *ch)
{
	enum chan_status st;

	if (!ch->nout)
		return CHAN_OK;
	st = send_answer(ch, ch->out_iov, ch->nout);
	ch->nout = 0;
	ch->out_data = 0;
	return st;
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
	struct dm_user_message *hdr;
	enum chan_status st;
	struct dmu_req req;
	int rc, resp;
	size_t data;

	if (ch->nout + 2 > OUT_IOV ||
	    (m->type == DM_USER_REQ_MAP_READ &&
	     m->len > MAX_IO - ch->out_data)) {
		st = flush_answers(ch);
		if (st != CHAN_OK)
			return st;
	}
	resp = serve_request(ch, rq, ch->rdata + ch->out_data, &req, &rc);
	data = resp == DM_USER_RESP_SUCCESS &&
	       m->type == DM_USER_REQ_MAP_READ ? m->len : 0;
	if (ch->srv->verbose && resp != DM_USER_RESP_SUCCESS)
		log_answer(ch, m, resp, rc);
	hdr = &ch->out_hdr[ch->nout / 2];
	*hdr = (struct dm_user_message){
		.seq = m->seq, .type = resp, .flags = m->flags,
		.sector = resp == DM_USER_RESP_REMAP ? req.remap_offset / 512 :
						       m->sector,
		.len = m->len,
	};
	ch->out_iov[ch->nout++] = (struct iovec){ hdr, HDR_SIZE };
	/* Always a pair, so that headers and pieces stay in step. */
	ch->out_iov[ch->nout++] = (struct iovec){ req.data, data };
	if (data && req.data == ch->rdata + ch->out_data)
		ch->out_data += data;
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
 * Serves the requests the kernel posted since the last call, each from and
 * into its data: a WRITE's data is there, and a READ's answer goes there,
 * unless the callback pointed req.data at its own memory: the kernel then
 * copies from there, one copy instead of two. That memory stays as it is
 * until the next enter, as the API asks ("until the answer is sent").
 */
static enum chan_status ring_serve(struct chan *ch)
{
	uint32_t tail = __atomic_load_n(&ch->ring->sq_tail, __ATOMIC_ACQUIRE);
	uint32_t mask = ch->depth - 1;

	for (; ch->sq_head != tail; ch->sq_head++) {
		struct dm_user_ring_sqe sqe = ch->sq[ch->sq_head & mask];
		uint32_t slot = sqe.slot;
		struct request rq = { 0 };
		struct dm_user_message m;
		unsigned char *data;
		struct dmu_req req;
		int rc, resp;

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
		rq.msg = &m;
		if (m.type == DM_USER_REQ_MAP_WRITE)
			rq.data = data;
		resp = serve_request(ch, &rq, data, &req, &rc);
		if (ch->srv->verbose && resp != DM_USER_RESP_SUCCESS)
			log_answer(ch, &m, resp, rc);
		ring_complete(ch, slot, m.seq, resp,
			      resp == DM_USER_RESP_SUCCESS &&
			      m.type == DM_USER_REQ_MAP_READ &&
			      req.data != data ? req.data : NULL,
			      req.remap_offset / 512);
	}
	return CHAN_OK;
}

/*
 * Serves a ring channel until it fails, is reset, or the server stops.
 * One call a round: it hands in the last round's answers and takes the
 * next round's requests.
 */
static enum chan_status ring_main(struct chan *ch)
{
	enum chan_status st = CHAN_OK;
	unsigned int posted;

	while (st == CHAN_OK && !stopping(ch->srv)) {
		st = ring_enter(ch, POLL_MS, &posted);
		check_reload(ch, false);
		if (st == CHAN_OK && posted)
			st = ring_serve(ch);
	}
	/* Answers not handed in yet, without taking new requests. */
	if ((st == CHAN_OK || st == CHAN_STOP) &&
	    ch->cq_tail != __atomic_load_n(&ch->ring->cq_head,
					   __ATOMIC_ACQUIRE))
		st = ring_enter(ch, DM_USER_RING_COMPLETE_ONLY, &posted);
	return st == CHAN_OK ? CHAN_STOP : st;
}

static int open_fd(struct server *srv, struct chan *ch);
static void close_fd(struct chan *ch);

static void *chan_main(void *arg)
{
	struct chan *ch = arg;
	struct server *srv = ch->srv;
	enum chan_status st = CHAN_OK;

	while (st == CHAN_OK && !stopping(srv)) {
		enum chan_status ast;
		int rc;

		if (ch->ring) {
			st = ring_main(ch);
		} else {
			st = collect(ch);
			/*
			 * What was read is answered even if a later read
			 * failed, unless the channel was reset: then all of
			 * it is void.
			 */
			ast = st == CHAN_RESET ? st : serve_collected(ch);
			if (st == CHAN_OK || st == CHAN_STOP)
				st = ast;
			check_reload(ch, false);
		}
		if (st != CHAN_RESET)
			continue;
		/*
		 * The kernel took back a request this channel had read (its
		 * request_timeout): what is left of it is void. A new channel
		 * starts clean.
		 */
		ch->resets++;
		if (srv->verbose)
			fprintf(stderr, "%s: [%u] channel reset by the kernel: reopening\n",
				program_invocation_short_name, ch->id);
		close_fd(ch);
		rc = open_fd(srv, ch);
		st = rc == -ENOTBLK || rc == -ENOENT ? CHAN_GONE :
		     rc < 0 ? chan_fail(ch, rc) : CHAN_OK;
	}
	if (st == CHAN_GONE && srv->verbose)
		fprintf(stderr, "%s: [%u] target removed\n",
			program_invocation_short_name, ch->id);
	if (st == CHAN_FATAL)
		atomic_store(&srv->abort, true);
	else
		ch->err = 0;	/* only a failed channel fails dmu_serve() */
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
	ch->ring = map;
	ch->ring_size = rp.size;
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

/* Unmaps the ring, closes the fd and its epoll set. */
static void close_fd(struct chan *ch)
{
	if (ch->ring)
		munmap(ch->ring, ch->ring_size);
	ch->ring = NULL;
	if (ch->epfd >= 0)
		close(ch->epfd);
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = ch->epfd = -1;
}

/*
 * Opens the channel's fd and its epoll set, a ring if @try_ring and the
 * options want one; both -1 on failure.
 */
static int open_fd_how(struct server *srv, struct chan *ch, bool try_ring)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
	int rc;

	ch->epfd = -1;
	ch->fd = open(srv->path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (ch->fd < 0)
		return -errno;
	/*
	 * All channels of a target wait on one queue. Exclusive: a new
	 * request wakes one idle thread, not all of them, as a blocking
	 * read() would (Linux 4.5; older kernels wake all).
	 */
	ch->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ch->epfd < 0) {
		rc = -errno;
		goto fail;
	}
	if (epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->fd, &ev)) {
		ev.events = EPOLLIN;
		if (errno != EINVAL ||
		    epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->fd, &ev)) {
			rc = -errno;
			goto fail;
		}
	}
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

	if (!rc)
		check_reload(ch, true);
	return rc;
}

static int open_chan(struct server *srv, struct chan *ch, bool read_batch,
		     bool write_batch)
{
	unsigned int b;
	int rc;

	ch->read_batch = read_batch;
	ch->want_write_batch = write_batch;
	rc = open_fd(srv, ch);
	if (rc < 0)
		return rc;
	ch->bufs = calloc(srv->batch, sizeof(*ch->bufs));
	ch->reqcap = srv->batch;
	ch->reqs = calloc(ch->reqcap, sizeof(*ch->reqs));
	ch->rdata = aligned_alloc(BUF_ALIGN, MAX_IO);
	if (!ch->bufs || !ch->reqs || !ch->rdata)
		return -ENOMEM;
	for (b = 0; b < srv->batch; b++) {
		ch->bufs[b] = aligned_alloc(BUF_ALIGN, BUF_SIZE);
		if (!ch->bufs[b])
			return -ENOMEM;
	}
	return 0;
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
	for (b = 0; ch->bufs && b < srv->batch; b++)
		free(ch->bufs[b]);
	free(ch->bufs);
	free(ch->reqs);
	free(ch->rdata);
}

int dmu_serve(const char *name, const struct dmu_ops *ops, void *ctx,
	      const struct dmu_serve_opts *opts)
{
	static const struct dmu_serve_opts defaults;
	struct server srv = { .ops = ops, .ctx = ctx };
	char path[PATH_MAX];
	unsigned int i, started = 0;
	bool rw_opts, ring_opts;
	int err = 0, rc;

	if (!name || !*name || !ops)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	if (strchr(name, '/')) {
		srv.path = name;
	} else {
		rc = snprintf(path, sizeof(path), "/dev/dm-user/%s", name);
		if (rc < 0 || (size_t)rc >= sizeof(path))
			return -ENAMETOOLONG;
		srv.path = path;
	}
	srv.threads = opts->threads ? opts->threads : 1;
	srv.batch = opts->batch ? opts->batch : 1;
	srv.split = opts->split;
	srv.verbose = opts->verbose;
	srv.stop = opts->stop;
	srv.transport = opts->transport;
	srv.ring_depth = opts->ring_depth;
	srv.ring_data = opts->ring_data;
	srv.ring_busy_poll = opts->ring_busy_poll;
	srv.remap = opts->remap;
	if (srv.transport > DMU_TRANSPORT_RW)
		return -EINVAL;
	/* Options one transport would ignore while the other is in use. */
	rw_opts = srv.batch > 1 || srv.split || opts->read_batch ||
		  opts->write_batch;
	ring_opts = srv.ring_depth || srv.ring_data || srv.ring_busy_poll;
	if ((rw_opts && srv.transport == DMU_TRANSPORT_RING) ||
	    (ring_opts && (srv.transport == DMU_TRANSPORT_RW || rw_opts)))
		return -EINVAL;
	rc = learn_target(&srv);
	if (rc)
		return rc;
	atomic_init(&srv.abort, false);
	rc = pthread_mutex_init(&srv.reload_lock, NULL);
	if (rc)
		return -rc;

	srv.chans = calloc(srv.threads, sizeof(*srv.chans));
	if (!srv.chans) {
		pthread_mutex_destroy(&srv.reload_lock);
		return -ENOMEM;
	}
	for (i = 0; i < srv.threads; i++) {
		srv.chans[i].srv = &srv;
		srv.chans[i].id = i;
		srv.chans[i].fd = -1;
		srv.chans[i].epfd = -1;
	}
	for (i = 0; i < srv.threads && !err; i++)
		err = open_chan(&srv, &srv.chans[i], opts->read_batch,
				opts->write_batch);

	for (i = 0; i < srv.threads && !err; i++) {
		rc = pthread_create(&srv.chans[i].thread, NULL, chan_main,
				    &srv.chans[i]);
		if (rc) {
			err = -rc;
			atomic_store(&srv.abort, true);
			break;
		}
		started++;
	}
	if (!err && opts->ready)
		opts->ready(ctx);
	for (i = 0; i < started; i++)
		pthread_join(srv.chans[i].thread, NULL);
	for (i = 0; i < started && !err; i++)
		err = srv.chans[i].err;

	for (i = 0; i < srv.threads; i++)
		close_chan(&srv, &srv.chans[i]);
	free(srv.chans);
	pthread_mutex_destroy(&srv.reload_lock);
	return err;
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
