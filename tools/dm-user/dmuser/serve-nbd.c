// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser serve --nbd <URI>: every request of the target sent to an NBD
 * server through libnbd's asynchronous API, many in flight per connection.
 *
 * One thread per connection, each with one channel of the target: its
 * loop waits in poll() for the channel (libdmuser's event-loop form,
 * dmu_server_fd()) and for the connection's socket, hands requests to
 * callbacks that start NBD commands and leave the request pending, and
 * completes a request (dmu_complete()) from libnbd's completion callback
 * once its last command is answered. libnbd forbids calls on a handle from
 * its callbacks, so a request that needs another command (a flush after a
 * write the server cannot FUA, or the next piece of a large trim) is put
 * on a list the loop works through after each call into libnbd.
 *
 * A connection that drops gives back what its channel holds: the channel
 * is closed (dmu_server_close_channel()), the kernel requeues its requests
 * for the other channels, and the late completions of libnbd's failed
 * commands are dropped. The thread reconnects with a backoff bounded by
 * BACKOFF_MAX_MS and opens its channel again; with every connection down,
 * the target's no_daemon_timeout decides when queued I/O fails.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"
#include "tool.h"

/* How long one connection attempt may take, and the waits between them. */
#define CONNECT_MS	5000
#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	5000
/* How often an idle loop looks at the stop flag and the channel's reloads. */
#define TICK_MS		200
/*
 * How long a stop waits for the server to answer what it has; then the
 * requests go back to the kernel's queue, as a lost connection's do.
 */
#define STOP_GRACE_MS	10000
/* The largest piece of one trim or zero command: NBD counts in 32 bits. */
#define MAX_PIECE	(1U << 30)

struct conn;

/* One request of the target while the NBD server works on it. */
struct nbd_req {
	struct dmu_req *req;
	struct conn *c;
	struct nbd_req *next;	/* on the free list or the continue list */
	uint64_t done;		/* bytes of the main command sent */
	uint32_t flags;		/* LIBNBD_CMD_FLAG_* of the main command */
	bool pre_flush, post_flush;	/* flushes still to send */
	int err;		/* the first error, positive */
};

struct conn {
	struct nbd_backend *be;
	unsigned int id;	/* also the channel's index */
	pthread_t thread;
	struct nbd_handle *h;	/* NULL while down */
	struct nbd_req *reqs;	/* be->queue_depth of them */
	struct nbd_req *free_reqs;
	struct nbd_req *cont;	/* ready for their next command */
	/*
	 * A command failed with the connection (or the server is shutting
	 * down): the connection is given up at the loop's next look, and
	 * its requests go back to the queue.
	 */
	bool broken;
	unsigned int backoff_ms;
	uint64_t retry_at;	/* ms, CLOCK_MONOTONIC, while down */
	uint64_t up_since;	/* ms, when it last connected */
	uint64_t stop_seen;	/* ms, when the stop was first seen; 0 */
	int ret;		/* the thread's result: 0 or a negative errno */
};

struct nbd_backend {
	const struct nbd_options *opt;
	struct dmu_server *srv;
	unsigned int nconns;
	struct conn *conns;
	/* What the server said at the first connection. */
	int64_t export_size;
	bool can_flush, can_fua, can_trim, can_zero, multi_conn, read_only;
	uint64_t max_piece;	/* the server's largest read or write */
	uint64_t target_bytes;	/* the target's size when serving began */
	uint32_t block_size;	/* the target's block size, bytes */
	atomic_uint up;		/* connections serving */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libnbd's message for the last failure on this thread. */
static const char *nbd_why(void)
{
	const char *msg = nbd_get_error();

	return msg ? msg : "unknown error";
}

/* ---- Requests ---------------------------------------------------------- */

static void put_req(struct conn *c, struct nbd_req *nr)
{
	nr->req = NULL;
	nr->next = c->free_reqs;
	c->free_reqs = nr;
}

/* The request's answer, and its nbd_req back on the free list. */
static void finish(struct nbd_req *nr, int err)
{
	struct conn *c = nr->c;
	struct dmu_req *r = nr->req;

	if (err && !nr->err)
		nr->err = err;
	serve_count_result(r, nr->err ? -nr->err : 0);
	dmu_complete(r, nr->err ? -nr->err : 0);
	put_req(c, nr);
}

/* A request given back with its closed channel: its completion is dropped. */
static void drop(struct nbd_req *nr)
{
	struct conn *c = nr->c;

	dmu_complete(nr->req, -EIO);
	put_req(c, nr);
}

/* An error that says the connection is gone, not that the command failed. */
static bool connection_error(int err)
{
	return err == ENOTCONN || err == ESHUTDOWN || err == ECONNRESET ||
	       err == EPIPE || err == ECONNABORTED;
}

/* libnbd's completion callback: the command of @user_data is answered. */
static int command_done(void *user_data, int *error)
{
	struct nbd_req *nr = user_data;
	struct conn *c = nr->c;

	if (*error && connection_error(*error)) {
		/* Given back with the channel: see give_back(). */
		c->broken = true;
		return 1;
	}
	if (*error) {
		finish(nr, *error);
		return 1;
	}
	/* No libnbd call here: the loop sends what comes next. */
	nr->next = c->cont;
	c->cont = nr;
	return 1;
}

/*
 * Sends the next command of @nr: a flush before, the main command (in
 * pieces where it is larger than the server takes), a flush after; or,
 * when none is left, answers it. 0, or the errno of a command libnbd
 * refused.
 */
static int send_next(struct nbd_req *nr)
{
	struct conn *c = nr->c;
	struct nbd_backend *be = c->be;
	struct dmu_req *r = nr->req;
	nbd_completion_callback cb = {
		.callback = command_done, .user_data = nr,
	};
	uint64_t left = r->len - nr->done, piece;
	int64_t cookie;

	if (nr->pre_flush) {
		nr->pre_flush = false;
		cookie = nbd_aio_flush(c->h, cb, 0);
	} else if (left && r->type != DM_USER_REQ_MAP_FLUSH) {
		uint64_t off = r->offset + nr->done;
		void *data = (unsigned char *)r->data + nr->done;

		piece = left;
		if (r->type == DM_USER_REQ_MAP_READ ||
		    r->type == DM_USER_REQ_MAP_WRITE)
			piece = piece < be->max_piece ? piece : be->max_piece;
		else
			piece = piece < MAX_PIECE ? piece : MAX_PIECE;
		nr->done += piece;
		switch (r->type) {
		case DM_USER_REQ_MAP_READ:
			cookie = nbd_aio_pread(c->h, data, piece, off, cb, 0);
			break;
		case DM_USER_REQ_MAP_WRITE:
			cookie = nbd_aio_pwrite(c->h, data, piece, off, cb,
						nr->flags);
			break;
		case DM_USER_REQ_MAP_DISCARD:
			cookie = nbd_aio_trim(c->h, piece, off, cb, nr->flags);
			break;
		default:	/* DM_USER_REQ_MAP_WRITE_ZEROES */
			cookie = nbd_aio_zero(c->h, piece, off, cb, nr->flags);
			break;
		}
	} else if (nr->post_flush) {
		nr->post_flush = false;
		cookie = nbd_aio_flush(c->h, cb, 0);
	} else {
		finish(nr, 0);
		return 0;
	}
	if (cookie < 0) {
		int err = nbd_get_errno();

		/* libnbd refuses commands on a dead handle with EINVAL. */
		if (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h))
			return ENOTCONN;
		return err ? err : EIO;
	}
	return 0;
}

/* Sends what the completions since the last call left to send. */
static void send_continued(struct conn *c)
{
	while (c->cont) {
		struct nbd_req *nr = c->cont;
		int err;

		c->cont = nr->next;
		err = send_next(nr);
		if (err && connection_error(err))
			c->broken = true;
		else if (err)
			finish(nr, err);
	}
}

/*
 * Every operation: checked, counted and started, then pending until
 * libnbd answers its last command. A request the server cannot do is
 * answered UNSUPPORTED at once.
 */
static int nbd_submit(void *ctx, struct dmu_req *r)
{
	struct nbd_backend *be = ctx;
	struct conn *c = &be->conns[r->channel];
	bool fua = r->flags & DM_USER_REQ_MAP_FLAG_FUA;
	struct nbd_req *nr;
	int err;

	serve_count_request(r);
	switch (r->type) {
	case DM_USER_REQ_MAP_READ:
	case DM_USER_REQ_MAP_WRITE:
	case DM_USER_REQ_MAP_FLUSH:
		break;
	case DM_USER_REQ_MAP_DISCARD:
		if (!be->can_trim)
			return serve_count_result(r, -EOPNOTSUPP);
		break;
	case DM_USER_REQ_MAP_WRITE_ZEROES:
		if (!be->can_zero)
			return serve_count_result(r, -EOPNOTSUPP);
		break;
	default:	/* secure erase: NBD has none */
		return serve_count_result(r, -EOPNOTSUPP);
	}
	if (be->read_only && r->type != DM_USER_REQ_MAP_READ &&
	    r->type != DM_USER_REQ_MAP_FLUSH)
		return serve_count_result(r, -EROFS);
	if (r->type != DM_USER_REQ_MAP_FLUSH &&
	    (r->len > (uint64_t)be->export_size ||
	     r->offset > (uint64_t)be->export_size - r->len))
		return serve_count_result(r, -ERANGE);
	/* Never empty: the channel holds at most queue_depth requests. */
	nr = c->free_reqs;
	if (!c->h || !nr)
		return serve_count_result(r, -EIO);
	c->free_reqs = nr->next;
	*nr = (struct nbd_req){ .req = r, .c = c };
	/*
	 * A flush is sent where the server has a cache to flush; without
	 * one, what it answered is on stable storage already. FUA goes with
	 * the command where the server takes it, else as a flush after it.
	 */
	if (r->type == DM_USER_REQ_MAP_FLUSH) {
		nr->post_flush = be->can_flush;
	} else if (r->type != DM_USER_REQ_MAP_READ) {
		nr->pre_flush = be->can_flush &&
				(r->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH);
		if (fua && be->can_fua)
			nr->flags |= LIBNBD_CMD_FLAG_FUA;
		else if (fua)
			nr->post_flush = be->can_flush;
		if (r->type == DM_USER_REQ_MAP_WRITE_ZEROES &&
		    (r->flags & DM_USER_REQ_MAP_FLAG_NOUNMAP))
			nr->flags |= LIBNBD_CMD_FLAG_NO_HOLE;
	}
	err = send_next(nr);
	if (err && connection_error(err)) {
		/* Pending until the connection is given up: then given back. */
		c->broken = true;
	} else if (err) {
		put_req(c, nr);
		return serve_count_result(r, -err);
	}
	return DMU_PENDING;
}

static const struct dmu_ops nbd_dmu_ops = {
	.read = nbd_submit,
	.write = nbd_submit,
	.flush = nbd_submit,
	.discard = nbd_submit,
	.write_zeroes = nbd_submit,
	.secure_erase = nbd_submit,
};

/* ---- Connections ------------------------------------------------------- */

/*
 * Drives libnbd's state machine for one poll() result: 0, or -1 when the
 * handle failed (libnbd says why).
 */
static int nbd_notify(struct nbd_handle *h, short revents)
{
	unsigned int dir = nbd_aio_get_direction(h);

	if ((dir & LIBNBD_AIO_DIRECTION_READ) &&
	    (revents & (POLLIN | POLLHUP | POLLERR)))
		return nbd_aio_notify_read(h);
	if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
	    (revents & (POLLOUT | POLLHUP | POLLERR)))
		return nbd_aio_notify_write(h);
	return 0;
}

static short nbd_events(struct nbd_handle *h)
{
	unsigned int dir = nbd_aio_get_direction(h);

	return (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
	       (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
}

/*
 * A new handle connected to the URI within CONNECT_MS, or NULL after
 * reporting why (@quiet: only with --verbose, for retries). Waits without
 * blocking the stop flag's checks for more than TICK_MS.
 */
static struct nbd_handle *nbd_open(struct nbd_backend *be, bool quiet)
{
	uint64_t deadline = now_ms() + CONNECT_MS;
	struct nbd_handle *h = nbd_create();

	if (!h) {
		report(0, "nbd_create: %s", nbd_why());
		return NULL;
	}
	if (nbd_aio_connect_uri(h, be->opt->uri) < 0)
		goto fail;
	while (!nbd_aio_is_ready(h)) {
		struct pollfd p = { .fd = nbd_aio_get_fd(h), .events = 0 };
		int n;

		if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h) || p.fd < 0)
			goto fail;
		if (serve_stopping()) {
			nbd_close(h);
			return NULL;
		}
		if (now_ms() >= deadline) {
			if (!quiet || be->opt->verbose)
				report(ETIMEDOUT, "connect to %s", be->opt->uri);
			nbd_close(h);
			return NULL;
		}
		p.events = nbd_events(h);
		n = poll(&p, 1, TICK_MS);
		if (n < 0 && errno != EINTR) {
			report(errno, "poll on the connection to %s",
			       be->opt->uri);
			nbd_close(h);
			return NULL;
		}
		if (n > 0 && nbd_notify(h, p.revents) < 0)
			goto fail;
	}
	return h;
fail:
	if (!quiet || be->opt->verbose)
		report(0, "connect to %s: %s", be->opt->uri, nbd_why());
	nbd_close(h);
	return NULL;
}

/*
 * Every request of the connection given back (the channel closed, so that
 * the kernel requeues them), and libnbd's handle closed.
 */
static void give_back(struct conn *c)
{
	struct nbd_backend *be = c->be;
	unsigned int i;
	int rc;

	/* First, so that what is completed below is dropped, not failed. */
	rc = dmu_server_close_channel(be->srv, c->id);
	if (rc)
		report(rc, "close channel %u", c->id);
	/* Commands still in flight: their callbacks are called no more. */
	nbd_close(c->h);
	c->h = NULL;
	c->cont = NULL;
	c->broken = false;
	for (i = 0; i < be->opt->queue_depth; i++)
		if (c->reqs[i].req)
			drop(&c->reqs[i]);
	atomic_fetch_sub(&be->up, 1);
}

static void lose_connection(struct conn *c, const char *why)
{
	report(0, "connection %u to %s lost (%s): its requests go back to the queue%s",
	       c->id, c->be->opt->uri, why,
	       serve_stopping() ? "" : "; reconnecting");
	give_back(c);
	if (!atomic_load(&c->be->up))
		report(0, "no connection left: I/O waits in the target's queue, up to its no_daemon_timeout");
	/* A server that drops every connection at once is tried less often. */
	if (now_ms() - c->up_since < BACKOFF_MAX_MS)
		c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ?
				BACKOFF_MAX_MS : c->backoff_ms * 2;
	else
		c->backoff_ms = BACKOFF_MIN_MS;
	c->retry_at = now_ms() + c->backoff_ms;
}

/* How long the loop may wait: TICK_MS, or until a reconnection is due. */
static int wait_ms(const struct conn *c)
{
	uint64_t now = now_ms();

	if (c->h || serve_stopping())
		return TICK_MS;
	if (c->retry_at <= now)
		return 0;
	return c->retry_at - now < TICK_MS ? (int)(c->retry_at - now) : TICK_MS;
}

/*
 * A stop waits STOP_GRACE_MS for the server's answers; what it still has
 * then goes back to the queue, for the next daemon.
 */
static void check_stop(struct conn *c)
{
	unsigned int left;

	if (!serve_stopping() || !c->h)
		return;
	if (!c->stop_seen)
		c->stop_seen = now_ms();
	left = dmu_server_pending(c->be->srv, c->id);
	if (!left || now_ms() - c->stop_seen < STOP_GRACE_MS)
		return;
	report(0, "stopping: %u request%s of connection %u still at %s after %u s: giving them back",
	       left, left == 1 ? "" : "s", c->id, c->be->opt->uri,
	       STOP_GRACE_MS / 1000);
	give_back(c);
}

/*
 * Why the export of a new connection cannot stand in for the first one's,
 * or NULL: smaller than the target, or what the first promised (flush and
 * FUA, as the durability of writes rests on them; writes at all; one
 * view across connections; block sizes) no longer holds.
 */
static const char *unlike_export(const struct nbd_backend *be,
				 struct nbd_handle *h)
{
	int64_t size = nbd_get_size(h);
	int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);

	if (size < 0 || (uint64_t)size < be->target_bytes)
		return "smaller than the target";
	if ((nbd_can_flush(h) == 1) != be->can_flush ||
	    (nbd_can_fua(h) == 1) != be->can_fua)
		return "flush or FUA changed";
	if ((nbd_is_read_only(h) == 1) != be->read_only)
		return "read-only changed";
	if (be->nconns > 1 && nbd_can_multi_conn(h) != 1)
		return "no multi-conn, with several connections";
	if ((min > 0 && (uint64_t)min > be->block_size) ||
	    (max > 0 && (uint64_t)max < be->max_piece))
		return "block sizes changed";
	return NULL;
}

/* The target's node, as the channel names it. */
static bool node_exists(const char *channel)
{
	char path[PATH_MAX];
	struct stat st;

	if (strchr(channel, '/'))
		snprintf(path, sizeof(path), "%s", channel);
	else
		snprintf(path, sizeof(path), "/dev/dm-user/%s", channel);
	return stat(path, &st) == 0 || errno != ENOENT;
}

/* A down connection's next attempt, when it is due. */
static void try_reconnect(struct conn *c)
{
	struct nbd_backend *be = c->be;
	const char *why;
	int rc;

	if (now_ms() < c->retry_at)
		return;
	/* Removed while the server was away: the channel ends. */
	if (!node_exists(be->opt->channel)) {
		dmu_server_open_channel(be->srv, c->id);
		c->retry_at = now_ms() + BACKOFF_MAX_MS;
		return;
	}
	c->h = nbd_open(be, true);
	if (!c->h) {
		c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ?
				BACKOFF_MAX_MS : c->backoff_ms * 2;
		c->retry_at = now_ms() + c->backoff_ms;
		return;
	}
	why = unlike_export(be, c->h);
	if (why) {
		report(0, "%s came back %s: not serving it", be->opt->uri, why);
		nbd_close(c->h);
		c->h = NULL;
		c->retry_at = now_ms() + BACKOFF_MAX_MS;
		return;
	}
	rc = dmu_server_open_channel(be->srv, c->id);
	if (rc) {
		/* The target is gone, or serving stops: the loop ends. */
		nbd_close(c->h);
		c->h = NULL;
		if (rc != -ENOTBLK && rc != -ESHUTDOWN)
			report(rc, "reopen channel %u", c->id);
		c->retry_at = now_ms() + BACKOFF_MAX_MS;
		return;
	}
	atomic_fetch_add(&be->up, 1);
	c->up_since = now_ms();
	report(0, "connection %u to %s is back", c->id, be->opt->uri);
}

/*
 * One connection and its channel, until the channel ends (the target was
 * removed, or a stop) with nothing pending.
 */
static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct nbd_backend *be = c->be;
	int dfd = dmu_server_fd(be->srv, c->id);
	char why[256] = "";

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = dfd, .events = POLLIN },
			{ .fd = -1 },
		};
		int n, rc;

		if (c->h) {
			p[1].fd = nbd_aio_get_fd(c->h);
			p[1].events = nbd_events(c->h);
		}
		n = poll(p, 2, wait_ms(c));
		if (n < 0 && errno != EINTR) {
			report(errno, "poll");
			c->ret = -errno;
			break;
		}
		if (c->h && n > 0 && p[1].revents &&
		    nbd_notify(c->h, p[1].revents) < 0)
			snprintf(why, sizeof(why), "%s", nbd_why());
		if (c->h && !nbd_aio_is_dead(c->h))
			send_continued(c);
		if (c->h && (c->broken || nbd_aio_is_dead(c->h) ||
			     nbd_aio_is_closed(c->h))) {
			lose_connection(c, why[0] ? why :
					"the server closed the connection");
			why[0] = 0;
		} else if (!c->h && !serve_stopping()) {
			try_reconnect(c);
		}
		check_stop(c);
		/*
		 * The answers of what completed and the requests waiting, when
		 * the channel's descriptor says so (a completion above makes it
		 * readable for the next poll), and at every tick.
		 */
		if (n > 0 && !p[0].revents)
			continue;
		rc = dmu_server_serve(be->srv, c->id);
		if (rc) {
			c->ret = rc < 0 ? rc : 0;
			break;
		}
	}
	/* Nothing is pending. Not nbd_shutdown(): it waits for the server. */
	if (c->h) {
		nbd_close(c->h);
		c->h = NULL;
	}
	return NULL;
}

/* ---- Setup ------------------------------------------------------------- */

/* The first connection: what the export is, checked against the target. */
static int learn_export(struct nbd_backend *be, struct nbd_handle *h,
			uint64_t target_bytes)
{
	char a[32], b[32];
	int64_t max, min;

	be->export_size = nbd_get_size(h);
	if (be->export_size < 0) {
		report(0, "%s: size: %s", be->opt->uri, nbd_why());
		return -1;
	}
	if (target_bytes > (uint64_t)be->export_size) {
		report(0, "%s is %s, the target %s: the export must be at least as large as the target",
		       be->opt->uri, human_bytes(be->export_size, a, sizeof(a)),
		       human_bytes(target_bytes, b, sizeof(b)));
		return -1;
	}
	be->can_flush = nbd_can_flush(h) == 1;
	be->can_fua = nbd_can_fua(h) == 1;
	be->can_trim = nbd_can_trim(h) == 1;
	be->can_zero = nbd_can_zero(h) == 1;
	be->multi_conn = nbd_can_multi_conn(h) == 1;
	be->read_only = nbd_is_read_only(h) == 1;
	/* libnbd refuses larger reads and writes than the server said. */
	max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	be->max_piece = max > 0 ? (uint64_t)max : 32U << 20;
	min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	if (min > 0 && (uint64_t)min > be->block_size) {
		report(0, "%s takes I/O in blocks of %" PRId64 " bytes, the target's are %u: give the table block_size %" PRId64,
		       be->opt->uri, min, be->block_size, min);
		return -1;
	}
	if (be->opt->verbose)
		report(0, "%s: %s, flush %s, fua %s, trim %s, zero %s, multi-conn %s",
		       be->opt->uri, human_bytes(be->export_size, a, sizeof(a)),
		       be->can_flush ? "yes" : "no", be->can_fua ? "yes" : "no",
		       be->can_trim ? "yes" : "no", be->can_zero ? "yes" : "no",
		       be->multi_conn ? "yes" : "no");
	if (be->read_only)
		report(0, "note: %s is read-only: writes are answered as errors (make the table read-only too)",
		       be->opt->uri);
	if (!be->can_trim)
		report(0, "note: %s cannot trim: discards are answered UNSUPPORTED (the table feature no_discard turns them off)",
		       be->opt->uri);
	if (!be->can_zero)
		report(0, "note: %s cannot zero: write-zeroes are answered UNSUPPORTED (no_write_zeroes turns them off)",
		       be->opt->uri);
	return 0;
}

/* The target's size and block size, from GET_INFO; -1 after reporting why not. */
static int learn_target(struct nbd_backend *be, const char *channel)
{
	char what[PATH_MAX];
	struct dmu_info info;
	int fd = open_channel(channel, what, sizeof(what)), rc;

	if (fd < 0) {
		report_hint(fd, HINT_NODE, NULL, channel, "open %s", what);
		return -1;
	}
	rc = dmu_get_info(fd, &info);
	close(fd);
	if (rc) {
		report(rc, "GET_INFO on %s", what);
		return -1;
	}
	be->target_bytes = info.size * SECTOR_SIZE;
	be->block_size = info.block_size ? info.block_size : SECTOR_SIZE;
	return 0;
}

int serve_nbd(const struct nbd_options *opt, struct dmu_serve_opts *opts)
{
	struct nbd_backend be = { .opt = opt };
	struct nbd_handle *first;
	unsigned int i, started = 0;
	int rc, ret = 0;

	if (learn_target(&be, opt->channel))
		return -1;
	first = nbd_open(&be, false);
	if (!first)
		return -1;
	if (learn_export(&be, first, be.target_bytes)) {
		nbd_close(first);
		return -1;
	}
	be.nconns = opts->threads ? opts->threads : 1;
	if (be.nconns > 1 && !be.multi_conn) {
		report(0, "note: %s does not allow several connections (no multi-conn): serving on 1",
		       opt->uri);
		be.nconns = 1;
	}
	be.conns = calloc(be.nconns, sizeof(*be.conns));
	if (!be.conns) {
		report(ENOMEM, "connections");
		nbd_close(first);
		return -1;
	}
	be.conns[0].h = first;
	opts->threads = be.nconns;
	opts->max_pending = opt->queue_depth;
	rc = dmu_server_open(&be.srv, opt->channel, &nbd_dmu_ops, &be, opts);
	if (rc) {
		report_hint(rc, HINT_NODE, NULL, opt->channel, "serve %s",
			    opt->channel);
		nbd_close(first);
		free(be.conns);
		return -1;
	}
	atomic_init(&be.up, 0);
	for (i = 0; i < be.nconns; i++) {
		struct conn *c = &be.conns[i];
		unsigned int k;

		c->be = &be;
		c->id = i;
		c->up_since = now_ms();
		c->backoff_ms = BACKOFF_MIN_MS;
		c->reqs = calloc(opt->queue_depth, sizeof(*c->reqs));
		if (!c->reqs) {
			report(ENOMEM, "requests of connection %u", i);
			ret = -1;
			break;
		}
		for (k = opt->queue_depth; k-- > 0;) {
			c->reqs[k].c = c;
			c->reqs[k].next = c->free_reqs;
			c->free_reqs = &c->reqs[k];
		}
		if (i)
			c->h = nbd_open(&be, false);
		if (!c->h) {
			ret = -1;
			break;
		}
		if (i && unlike_export(&be, c->h)) {
			report(0, "%s: connection %u %s", opt->uri, i,
			       unlike_export(&be, c->h));
			ret = -1;
			break;
		}
		atomic_fetch_add(&be.up, 1);
	}
	for (i = 0; !ret && i < be.nconns; i++) {
		rc = pthread_create(&be.conns[i].thread, NULL, conn_main,
				    &be.conns[i]);
		if (rc) {
			report(rc, "pthread_create");
			ret = -1;
			serve_request_stop();
			break;
		}
		started++;
	}
	if (!ret && opts->ready)
		opts->ready(NULL);
	for (i = 0; i < started; i++) {
		pthread_join(be.conns[i].thread, NULL);
		if (be.conns[i].ret && !ret) {
			report_hint(be.conns[i].ret, HINT_NODE, NULL,
				    opt->channel, "serve %s", opt->channel);
			ret = -1;
		}
	}
	/* Connections whose thread never ran are closed here. */
	for (i = started; i < be.nconns; i++)
		if (be.conns[i].h)
			nbd_close(be.conns[i].h);
	rc = dmu_server_close(be.srv);
	if (rc)
		report(rc, "close the server");
	for (i = 0; i < be.nconns; i++)
		free(be.conns[i].reqs);
	free(be.conns);
	return ret;
}
