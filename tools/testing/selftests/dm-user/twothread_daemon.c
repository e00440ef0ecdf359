// SPDX-License-Identifier: GPL-2.0
/*
 * A daemon in the usual FUSE shape, served from RAM: one thread loops in
 * read() on one channel and queues what it reads; a second thread applies
 * each request and writes its answer on the same fd. The kernel must let
 * the answer through while the reader sleeps in read(), or no request
 * after the first would ever come.
 *
 *   twothread_daemon [-n] [-p <pidfile>] <bytes> <channel>
 *
 * -n opens the channel O_NONBLOCK: the reader waits in poll(POLLIN), and
 * the answerer checks that what poll() reports is what write() then does
 * (POLLOUT, then no EAGAIN). Exits 0 when the target goes away (ENOTBLK),
 * 1 on any error, naming what failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define HDR		sizeof(struct dm_user_message)
#define MAX_IO		(1U << 20)

struct msg {
	struct msg *next;
	struct dm_user_message hdr;
	unsigned char data[];
};

static unsigned char *store;
static uint64_t store_size;
static int fd;
static bool nonblock;

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static struct msg *qhead, **qtail = &qhead;
static bool reader_done;

static void die(const char *what, int err)
{
	fprintf(stderr, "twothread_daemon: %s: %s\n", what, strerror(err));
	exit(1);
}

/* Waits until @fd reports @events; dies if it reports anything else. */
static void wait_for(short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		int n = poll(&p, 1, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("poll", errno);
		if (p.revents & (POLLERR | POLLHUP))
			return;		/* the next call names the error */
		if (p.revents & events)
			return;
	}
}

/*
 * Reads exactly @len bytes of the current message. Returns 0, or -1 once
 * the target is gone.
 */
static int read_full(void *dst, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)dst + got, len - got);

		if (n > 0) {
			got += n;
			continue;
		}
		if (n == 0)
			die("read", EPROTO);
		if (errno == EINTR)
			continue;
		if (errno == ENOTBLK)
			return -1;
		if (errno == EAGAIN && nonblock) {
			wait_for(POLLIN);
			continue;
		}
		die("read", errno);
	}
	return 0;
}

static void *reader(void *arg)
{
	(void)arg;
	for (;;) {
		struct dm_user_message hdr;
		struct msg *m;
		uint64_t data;

		if (read_full(&hdr, HDR))
			break;
		data = hdr.type == DM_USER_REQ_MAP_WRITE ? hdr.len : 0;
		if (data > MAX_IO)
			die("request larger than max_io", EPROTO);
		m = malloc(sizeof(*m) + data);
		if (!m)
			die("malloc", ENOMEM);
		m->next = NULL;
		m->hdr = hdr;
		if (read_full(m->data, data)) {
			free(m);
			break;
		}
		pthread_mutex_lock(&qlock);
		*qtail = m;
		qtail = &m->next;
		pthread_cond_signal(&qcond);
		pthread_mutex_unlock(&qlock);
	}
	pthread_mutex_lock(&qlock);
	reader_done = true;
	pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
	return NULL;
}

/* Applies @m to the store; returns the response code, data in @out. */
static uint64_t apply(const struct msg *m, unsigned char *out)
{
	uint64_t off = m->hdr.sector << 9, len = m->hdr.len;

	switch (m->hdr.type) {
	case DM_USER_REQ_MAP_FLUSH:
		return DM_USER_RESP_SUCCESS;
	case DM_USER_REQ_MAP_READ:
	case DM_USER_REQ_MAP_WRITE:
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
		break;
	default:
		return DM_USER_RESP_UNSUPPORTED;
	}
	if (off > store_size || len > store_size - off)
		return DM_USER_RESP_ERROR;
	if (m->hdr.type == DM_USER_REQ_MAP_READ)
		memcpy(out, store + off, len);
	else if (m->hdr.type == DM_USER_REQ_MAP_WRITE)
		memcpy(store + off, m->data, len);
	else
		memset(store + off, 0, len);
	return DM_USER_RESP_SUCCESS;
}

/* Writes the whole answer; returns 0, or -1 once the target is gone. */
static int send_answer(struct iovec *iov, int cnt)
{
	while (cnt) {
		ssize_t n;

		if (nonblock) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			if (poll(&p, 1, 0) < 0)
				die("poll", errno);
			if (!(p.revents & POLLOUT))
				die("poll: no POLLOUT for an answer", EPROTO);
		}
		n = writev(fd, iov, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOTBLK)
			return -1;
		if (n < 0 && errno == EAGAIN)
			die("write of an answer after POLLOUT", EAGAIN);
		if (n < 0)
			die("write", errno);
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
	return 0;
}

static void *answerer(void *arg)
{
	unsigned char *out = malloc(MAX_IO);

	(void)arg;
	if (!out)
		die("malloc", ENOMEM);
	for (;;) {
		struct dm_user_message ans;
		struct iovec iov[2];
		struct msg *m;

		pthread_mutex_lock(&qlock);
		while (!qhead && !reader_done)
			pthread_cond_wait(&qcond, &qlock);
		m = qhead;
		if (m) {
			qhead = m->next;
			if (!qhead)
				qtail = &qhead;
		}
		pthread_mutex_unlock(&qlock);
		if (!m)
			break;
		ans = m->hdr;
		ans.type = apply(m, out);
		iov[0] = (struct iovec){ &ans, HDR };
		iov[1] = (struct iovec){ out, 0 };
		if (ans.type == DM_USER_RESP_SUCCESS &&
		    m->hdr.type == DM_USER_REQ_MAP_READ)
			iov[1].iov_len = m->hdr.len;
		free(m);
		if (send_answer(iov, 2))
			break;
	}
	free(out);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *pidfile = NULL;
	pthread_t rt, at;
	int opt, r;

	while ((opt = getopt(argc, argv, "np:")) != -1) {
		switch (opt) {
		case 'n':
			nonblock = true;
			break;
		case 'p':
			pidfile = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	store_size = strtoull(argv[optind], NULL, 10);
	if (!store_size)
		goto usage;
	store = calloc(1, store_size);
	if (!store)
		die("calloc of the store", ENOMEM);
	fd = open(argv[optind + 1], O_RDWR | (nonblock ? O_NONBLOCK : 0));
	if (fd < 0)
		die(argv[optind + 1], errno);
	r = pthread_create(&rt, NULL, reader, NULL);
	if (r)
		die("pthread_create", r);
	r = pthread_create(&at, NULL, answerer, NULL);
	if (r)
		die("pthread_create", r);
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");

		if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f))
			die(pidfile, errno);
	}
	pthread_join(rt, NULL);
	pthread_join(at, NULL);
	return 0;
usage:
	fprintf(stderr, "usage: twothread_daemon [-n] [-p <pidfile>] <bytes> <channel>\n");
	return 2;
}
