// SPDX-License-Identifier: GPL-2.0
/*
 * uring_daemon: serves a dm-user channel from a RAM store with io_uring
 * only: every read() of a request and every write() of an answer is an
 * io_uring operation, several reads are kept in flight on the one channel,
 * and answers are sent as they come. It shows that the channel's nonblocking
 * read path and poll() let io_uring drive it without a thread per request.
 *
 *   uring_daemon <channel-path> <store-bytes> [<reads-in-flight>]
 *
 * Exits 0 when the target is removed (ENOTBLK), 1 on any other error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define MAX_IO		(1 << 20)
#define HDR		sizeof(struct dm_user_message)
#define MAX_SLOTS	16

enum slot_state { SLOT_READING, SLOT_ANSWERING };

struct slot {
	enum slot_state state;
	struct dm_user_message *msg;	/* header + data buffer */
	struct iovec iov[2];
	struct dm_user_message answer;
	size_t answer_len;
};

static unsigned char *store;
static uint64_t store_size;

static void queue_read(struct io_uring *ring, int fd, struct slot *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	s->state = SLOT_READING;
	io_uring_prep_read(sqe, fd, s->msg, HDR + MAX_IO, 0);
	io_uring_sqe_set_data(sqe, s);
}

/* Serves the request in s->msg and queues its answer. */
static int queue_answer(struct io_uring *ring, int fd, struct slot *s,
			size_t got)
{
	struct dm_user_message *m = s->msg;
	struct io_uring_sqe *sqe;
	uint64_t off = m->sector * 512;
	size_t data = 0;
	int iovs = 1;

	if (got < HDR || (m->type == DM_USER_REQ_MAP_WRITE &&
			  got != HDR + m->len)) {
		fprintf(stderr, "uring_daemon: read returned %zu bytes for a message of type %" PRIu64 "\n",
			got, (uint64_t)m->type);
		return -1;
	}
	s->answer = *m;
	s->answer.type = DM_USER_RESP_SUCCESS;
	if (m->type != DM_USER_REQ_MAP_FLUSH &&
	    (m->len > store_size || off > store_size - m->len)) {
		s->answer.type = DM_USER_RESP_ERROR;
	} else {
		switch (m->type) {
		case DM_USER_REQ_MAP_READ:
			if (m->len > MAX_IO) {
				s->answer.type = DM_USER_RESP_ERROR;
				break;
			}
			memcpy(m->buf, store + off, m->len);
			data = m->len;
			break;
		case DM_USER_REQ_MAP_WRITE:
			memcpy(store + off, m->buf, m->len);
			break;
		case DM_USER_REQ_MAP_FLUSH:
			break;
		case DM_USER_REQ_MAP_DISCARD:
		case DM_USER_REQ_MAP_WRITE_ZEROES:
		case DM_USER_REQ_MAP_SECURE_ERASE:
			memset(store + off, 0, m->len);
			break;
		default:
			s->answer.type = DM_USER_RESP_UNSUPPORTED;
		}
	}
	s->iov[0].iov_base = &s->answer;
	s->iov[0].iov_len = HDR;
	if (data) {
		s->iov[1].iov_base = m->buf;
		s->iov[1].iov_len = data;
		iovs = 2;
	}
	s->answer_len = HDR + data;
	s->state = SLOT_ANSWERING;
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_writev(sqe, fd, s->iov, iovs, 0);
	io_uring_sqe_set_data(sqe, s);
	return 0;
}

int main(int argc, char **argv)
{
	struct slot slots[MAX_SLOTS];
	unsigned int nslots = 4, i;
	struct io_uring ring;
	char *end;
	int fd, r;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: uring_daemon <channel-path> <store-bytes> [<reads-in-flight>]\n");
		return 2;
	}
	store_size = strtoull(argv[2], &end, 0);
	if (*end || !store_size) {
		fprintf(stderr, "uring_daemon: bad store size '%s'\n", argv[2]);
		return 2;
	}
	if (argc == 4) {
		nslots = (unsigned int)strtoul(argv[3], &end, 0);
		if (*end || !nslots || nslots > MAX_SLOTS) {
			fprintf(stderr, "uring_daemon: reads in flight must be 1-%d\n",
				MAX_SLOTS);
			return 2;
		}
	}
	store = calloc(1, store_size);
	if (!store) {
		fprintf(stderr, "uring_daemon: calloc %" PRIu64 ": %s\n",
			store_size, strerror(errno));
		return 1;
	}
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "uring_daemon: open %s: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	r = io_uring_queue_init(2 * MAX_SLOTS, &ring, 0);
	if (r) {
		fprintf(stderr, "uring_daemon: io_uring_queue_init: %s\n",
			strerror(-r));
		return 1;
	}
	for (i = 0; i < nslots; i++) {
		/* aligned_alloc() wants a multiple of the alignment. */
		slots[i].msg = aligned_alloc(4096, (HDR + MAX_IO + 4095) &
					     ~(size_t)4095);
		if (!slots[i].msg) {
			fprintf(stderr, "uring_daemon: aligned_alloc: %s\n",
				strerror(errno));
			return 1;
		}
		queue_read(&ring, fd, &slots[i]);
	}

	for (;;) {
		struct io_uring_cqe *cqe;
		struct slot *s;
		int res;

		r = io_uring_submit_and_wait(&ring, 1);
		if (r < 0) {
			if (r == -EINTR)
				continue;
			fprintf(stderr, "uring_daemon: io_uring_submit_and_wait: %s\n",
				strerror(-r));
			return 1;
		}
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			s = io_uring_cqe_get_data(cqe);
			res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
			if (res == -ENOTBLK)
				return 0;
			if (res == -EINTR || res == -EAGAIN) {
				/* Not served: ask again for the same thing. */
				if (s->state == SLOT_READING)
					queue_read(&ring, fd, s);
				else
					fprintf(stderr, "uring_daemon: answer interrupted\n");
				continue;
			}
			if (res < 0) {
				fprintf(stderr, "uring_daemon: %s: %s\n",
					s->state == SLOT_READING ? "read" : "writev",
					strerror(-res));
				return 1;
			}
			if (s->state == SLOT_READING) {
				if (queue_answer(&ring, fd, s, (size_t)res))
					return 1;
			} else {
				if ((size_t)res != s->answer_len) {
					fprintf(stderr, "uring_daemon: short answer write %d of %zu\n",
						res, s->answer_len);
					return 1;
				}
				queue_read(&ring, fd, s);
			}
		}
	}
}
