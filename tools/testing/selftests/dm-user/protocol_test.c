// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user wire protocol tests: the test plays the daemon on a channel while
 * a thread does block I/O on the mapped device, and checks every header,
 * every byte of data and every error the kernel returns.
 */
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

#include "dmu_test.h"
#include <kselftest_harness.h>

#define DEV_SECTORS	16384		/* 8 MiB */
#define WAIT_MS		10000

static void dev_names(char *dev, size_t devlen, char *mapper, size_t mlen,
		      char *chan, size_t clen, const char *tag)
{
	snprintf(dev, devlen, "dmu_%s_%d", tag, getpid());
	snprintf(mapper, mlen, "/dev/mapper/%s", dev);
	snprintf(chan, clen, "/dev/dm-user/%s", dev);
}

FIXTURE(dev) {
	char dev[64];
	char mapper[128];
	char chan[128];
	int ch;
	int bdev;
	void *buf;
	void *data;
};

FIXTURE_SETUP(dev)
{
	char table[256];

	dev_names(self->dev, sizeof(self->dev), self->mapper,
		  sizeof(self->mapper), self->chan, sizeof(self->chan), "p");
	snprintf(table, sizeof(table), "0 %d user 0 %d %s", DEV_SECTORS,
		 DEV_SECTORS, self->dev);
	ASSERT_EQ(0, dmu_create(self->dev, table));
	self->ch = open(self->chan, O_RDWR);
	ASSERT_LE(0, self->ch) TH_LOG("open %s: %s", self->chan,
				      strerror(errno));
	self->bdev = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bdev) TH_LOG("open %s: %s", self->mapper,
					strerror(errno));
	self->buf = dmu_alloc(4 << 20);
	self->data = dmu_alloc(4 << 20);
	ASSERT_NE(NULL, self->buf);
	ASSERT_NE(NULL, self->data);
}

FIXTURE_TEARDOWN(dev)
{
	if (self->bdev >= 0)
		close(self->bdev);
	if (self->ch >= 0)
		close(self->ch);
	dmu_remove(self->dev);
	free(self->buf);
	free(self->data);
}

/* Serves one request of @type at @sector/@len with success; returns hdr. */
static int serve_one(int ch, struct dm_user_message *hdr, void *data,
		     uint64_t type, uint64_t sector, uint64_t len,
		     const void *answer_data)
{
	int r = dmu_read_msg(ch, hdr, data, 4 << 20, WAIT_MS);

	if (r)
		return r;
	if (hdr->type != type || hdr->sector != sector || hdr->len != len)
		return -EPROTO;
	if (dmu_answer(ch, hdr, DM_USER_RESP_SUCCESS, answer_data,
		       answer_data ? len : 0) < 0)
		return -errno;
	return 0;
}

TEST_F(dev, write_then_read_back)
{
	struct dm_user_message hdr;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 65536,
			     .off = 3 * 4096 };

	dmu_fill(self->buf, io.len, 7);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, self->data, 4 << 20,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, hdr.type);
	EXPECT_EQ(24, hdr.sector);
	EXPECT_EQ(65536, hdr.len);
	EXPECT_NE(0, hdr.seq);
	EXPECT_EQ(0, memcmp(self->buf, self->data, io.len));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(65536, io.ret);

	/* Read it back: the daemon hands back what it was given. */
	memset(self->buf, 0, io.len);
	io.kind = DMU_PREAD;
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, serve_one(self->ch, &hdr, NULL, DM_USER_REQ_MAP_READ, 24,
			       65536, self->data));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(65536, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->data, io.len));
}

TEST_F(dev, one_message_per_read)
{
	struct dmu_io w = { .fd = self->bdev, .kind = DMU_PWRITE,
			    .buf = self->buf, .len = 8192, .off = 0 };
	struct dmu_io r = { .fd = self->bdev, .kind = DMU_PREAD,
			    .buf = (char *)self->buf + 65536, .len = 4096,
			    .off = 1 << 20 };
	struct dm_user_message *m = self->data;
	ssize_t n;
	int seen_read = 0, seen_write = 0, i;

	dmu_fill(self->buf, 8192, 3);
	ASSERT_EQ(0, dmu_io_start(&w));
	ASSERT_EQ(0, dmu_io_start(&r));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, dmu_wait_readable(self->ch, WAIT_MS));
		n = read(self->ch, self->data, 1 << 20);
		if (m->type == DM_USER_REQ_MAP_WRITE) {
			EXPECT_EQ(DMU_HDR + 8192, n);
			EXPECT_EQ(0, memcmp(m->buf, self->buf, 8192));
			seen_write++;
			ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, m,
				  DM_USER_RESP_SUCCESS, NULL, 0));
		} else {
			EXPECT_EQ(DM_USER_REQ_MAP_READ, m->type);
			EXPECT_EQ(DMU_HDR, n);
			seen_read++;
			ASSERT_EQ(DMU_HDR + 4096, dmu_answer(self->ch, m,
				  DM_USER_RESP_SUCCESS, self->buf, 4096));
		}
	}
	EXPECT_EQ(1, seen_read);
	EXPECT_EQ(1, seen_write);
	ASSERT_EQ(0, dmu_io_wait(&w, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&r, WAIT_MS));
	EXPECT_EQ(8192, w.ret);
	EXPECT_EQ(4096, r.ret);
	EXPECT_EQ(0, memcmp(r.buf, self->buf, 4096));
}

TEST_F(dev, split_reads_and_writes)
{
	struct dm_user_message hdr;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 12288, .off = 8192 };
	const char *p;
	size_t off;

	dmu_fill(self->buf, io.len, 11);
	ASSERT_EQ(0, dmu_io_start(&io));
	/* Header and data in 7-byte pieces. */
	ASSERT_EQ(0, dmu_read_msg_split(self->ch, &hdr, self->data, 4 << 20,
					7, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, hdr.type);
	EXPECT_EQ(0, memcmp(self->buf, self->data, io.len));
	/* The answer header in 3-byte pieces. */
	hdr.type = DM_USER_RESP_SUCCESS;
	for (off = 0, p = (const char *)&hdr; off < (size_t)DMU_HDR; off += 3) {
		size_t n = DMU_HDR - off < 3 ? DMU_HDR - off : 3;

		ASSERT_EQ((ssize_t)n, write(self->ch, p + off, n));
	}
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(12288, io.ret);

	/* A read answered with its data in 5-byte pieces. */
	io.kind = DMU_PREAD;
	memset(self->buf, 0, io.len);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg_split(self->ch, &hdr, NULL, 0, 1, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_READ, hdr.type);
	hdr.type = DM_USER_RESP_SUCCESS;
	ASSERT_EQ(DMU_HDR, write(self->ch, &hdr, DMU_HDR));
	for (off = 0; off < io.len; off += 5) {
		size_t n = io.len - off < 5 ? io.len - off : 5;

		ASSERT_EQ((ssize_t)n, write(self->ch, (char *)self->data + off,
					    n));
	}
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(12288, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->data, io.len));
}

TEST_F(dev, answers_out_of_order)
{
	struct dm_user_message h[4];
	struct dmu_io io[4];
	char *pattern = self->data;
	int i, j;

	for (i = 0; i < 4; i++) {
		io[i] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PREAD,
			.buf = (char *)self->buf + i * 4096, .len = 4096,
			.off = (off_t)i * 65536 };
		dmu_fill(pattern + i * 4096, 4096, 100 + i);
		ASSERT_EQ(0, dmu_io_start(&io[i]));
	}
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, dmu_read_msg(self->ch, &h[i], NULL, 0, WAIT_MS));
	/* Answer last to first; each gets the data of its own sector. */
	for (i = 3; i >= 0; i--) {
		j = (int)(h[i].sector / 128);
		ASSERT_EQ(DMU_HDR + 4096, dmu_answer(self->ch, &h[i],
			  DM_USER_RESP_SUCCESS, pattern + j * 4096, 4096));
	}
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		EXPECT_EQ(4096, io[i].ret);
		EXPECT_EQ(0, memcmp(io[i].buf, pattern + i * 4096, 4096));
	}
}

TEST_F(dev, error_and_unsupported_answers)
{
	struct dm_user_message hdr;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 4096, .off = 0 };

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr, DM_USER_RESP_ERROR,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(EIO, io.err);

	io.kind = DMU_PWRITE;
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, self->data, 4 << 20,
				  WAIT_MS));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr,
				      DM_USER_RESP_UNSUPPORTED, NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(EOPNOTSUPP, io.err);
}

/*
 * Every malformed answer is refused with EINVAL, consumes nothing and
 * leaves the request answerable; the right answer then completes it once.
 */
TEST_F(dev, bad_answers_are_refused)
{
	struct dm_user_message hdr, bad;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 4096, .off = 4096 };
	char garbage[DMU_HDR + 16];
	int other;

	other = open(self->chan, O_RDWR);
	ASSERT_LE(0, other);
	dmu_fill(self->data, 4096, 5);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));

	/* Unknown seq. */
	bad = hdr;
	bad.seq += 1000;
	EXPECT_EQ(-1, dmu_answer(self->ch, &bad, DM_USER_RESP_SUCCESS,
				 self->data, 4096));
	EXPECT_EQ(EINVAL, errno);
	/* The seq of a request read on another channel. */
	EXPECT_EQ(-1, dmu_answer(other, &hdr, DM_USER_RESP_SUCCESS,
				 self->data, 4096));
	EXPECT_EQ(EINVAL, errno);
	/* A response type that is no known code. */
	EXPECT_EQ(-1, dmu_answer(self->ch, &hdr, 7, NULL, 0));
	EXPECT_EQ(EINVAL, errno);
	/* A length that is not the request's. */
	bad = hdr;
	bad.len = 8192;
	EXPECT_EQ(-1, dmu_answer(self->ch, &bad, DM_USER_RESP_SUCCESS,
				 self->data, 8192));
	EXPECT_EQ(EINVAL, errno);
	/* More data than the request needs. */
	EXPECT_EQ(-1, dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
				 self->data, 4097));
	EXPECT_EQ(EINVAL, errno);
	/* Garbage. */
	dmu_fill(garbage, sizeof(garbage), 99);
	EXPECT_EQ(-1, write(self->ch, garbage, sizeof(garbage)));
	EXPECT_EQ(EINVAL, errno);

	/* The I/O is still waiting, untouched by all of the above. */
	usleep(100000);
	EXPECT_EQ(0, __atomic_load_n(&io.done, __ATOMIC_ACQUIRE));

	/* Header first, then too much data in the second write. */
	hdr.type = DM_USER_RESP_SUCCESS;
	ASSERT_EQ(DMU_HDR, write(self->ch, &hdr, DMU_HDR));
	EXPECT_EQ(-1, write(self->ch, self->data, 4097));
	EXPECT_EQ(EINVAL, errno);
	/* The rest of the right answer completes it. */
	ASSERT_EQ(4096, write(self->ch, self->data, 4096));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->data, 4096));

	/* A second answer to the same request is refused. */
	EXPECT_EQ(-1, dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
				 self->data, 4096));
	EXPECT_EQ(EINVAL, errno);
	close(other);
}

TEST_F(dev, channels_get_distinct_requests)
{
	struct dm_user_message h1, h2;
	struct dmu_io a = { .fd = self->bdev, .kind = DMU_PREAD,
			    .buf = self->buf, .len = 4096, .off = 0 };
	struct dmu_io b = { .fd = self->bdev, .kind = DMU_PREAD,
			    .buf = (char *)self->buf + 4096, .len = 4096,
			    .off = 8192 };
	int other = open(self->chan, O_RDWR);

	ASSERT_LE(0, other);
	ASSERT_EQ(0, dmu_io_start(&a));
	ASSERT_EQ(0, dmu_io_start(&b));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &h1, NULL, 0, WAIT_MS));
	ASSERT_EQ(0, dmu_read_msg(other, &h2, NULL, 0, WAIT_MS));
	EXPECT_NE(h1.seq, h2.seq);
	EXPECT_NE(h1.sector, h2.sector);
	dmu_fill(self->data, 8192, 1);
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(other, &h2, DM_USER_RESP_SUCCESS,
					     self->data, 4096));
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(self->ch, &h1,
			DM_USER_RESP_SUCCESS, (char *)self->data + 4096, 4096));
	ASSERT_EQ(0, dmu_io_wait(&a, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&b, WAIT_MS));
	EXPECT_EQ(4096, a.ret);
	EXPECT_EQ(4096, b.ret);
	close(other);
}

/* A read() blocked on a channel, in a thread of its own. */
struct blocked_read {
	pid_t tid;
	int fd;
	struct dm_user_message hdr;
	ssize_t ret;
	int err;
};

static void *blocked_read_thread(void *arg)
{
	struct blocked_read *b = arg;

	__atomic_store_n(&b->tid, gettid(), __ATOMIC_RELEASE);
	b->ret = read(b->fd, &b->hdr, sizeof(b->hdr));
	b->err = b->ret < 0 ? errno : 0;
	return NULL;
}

/*
 * Readers blocked in read() are woken last come first: a request goes to
 * the reader that went to sleep last, so that a daemon with little to do
 * keeps one thread busy rather than waking each in turn. The reader that
 * slept first gets a request only while the other is busy. Whoever reads
 * what, every request is answered, so that a failure cannot leave I/O
 * hanging.
 */
TEST_F(dev, last_reader_to_sleep_is_woken_first)
{
	struct blocked_read first = { .fd = self->ch }, last = { .fd = -1 };
	struct blocked_read *readers[2] = { &first, &last };
	pthread_t th[2];
	bool joined[2] = { false, false };
	struct dmu_io a = { .fd = self->bdev, .kind = DMU_PREAD,
			    .buf = self->buf, .len = 4096, .off = 4096 };
	struct dmu_io b = { .fd = self->bdev, .kind = DMU_PREAD,
			    .buf = (char *)self->buf + 4096, .len = 4096,
			    .off = 65536 };
	int i, woken;

	last.fd = open(self->chan, O_RDWR);
	ASSERT_LE(0, last.fd);
	/* One after the other into read(), where nothing waits yet. */
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_create(&th[i], NULL, blocked_read_thread,
					    readers[i]));
		ASSERT_EQ(0, dmu_wait_thread_sleeping(&readers[i]->tid,
						      WAIT_MS))
			TH_LOG("reader %d did not go to sleep in read()", i);
	}

	ASSERT_EQ(0, dmu_io_start(&a));
	woken = dmu_join_any(th, joined, 2, WAIT_MS);
	ASSERT_LE(0, woken) TH_LOG("no reader was woken");
	EXPECT_EQ(1, woken) TH_LOG("the reader that slept first was woken");
	/* The other reader sleeps on: one request wakes one reader. */
	EXPECT_EQ(-1, dmu_join_any(th, joined, 2, 300));

	/* With that one busy, the next request goes to the other. */
	ASSERT_EQ(0, dmu_io_start(&b));
	ASSERT_EQ(1 - woken, dmu_join_any(th, joined, 2, WAIT_MS))
		TH_LOG("the reader still asleep was not woken");

	/* Each answer carries the data of the sector its request names. */
	dmu_fill(self->data, 8192, 7);
	for (i = 0; i < 2; i++) {
		struct blocked_read *r = i ? &last : &first;

		ASSERT_EQ(DMU_HDR, r->ret) TH_LOG("read: %s", strerror(r->err));
		ASSERT_EQ(DM_USER_REQ_MAP_READ, r->hdr.type);
		ASSERT_TRUE(r->hdr.sector == 8 || r->hdr.sector == 128);
		ASSERT_EQ(DMU_HDR + 4096, dmu_answer(r->fd, &r->hdr,
				DM_USER_RESP_SUCCESS,
				(char *)self->data + (r->hdr.sector == 8 ? 0 : 4096),
				4096));
	}
	/* The first request, at sector 8, is the one the last reader read. */
	EXPECT_EQ(8, last.hdr.sector);
	ASSERT_EQ(0, dmu_io_wait(&a, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&b, WAIT_MS));
	EXPECT_EQ(4096, a.ret);
	EXPECT_EQ(4096, b.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->data, 8192));
	close(last.fd);
}

TEST_F(dev, poll_and_nonblocking_read)
{
	struct pollfd p = { .fd = self->ch, .events = POLLIN };
	struct dm_user_message hdr;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 4096, .off = 0 };
	struct epoll_event ev;
	int nb, ep;

	nb = open(self->chan, O_RDWR | O_NONBLOCK);
	ASSERT_LE(0, nb);
	EXPECT_EQ(0, poll(&p, 1, 0));
	EXPECT_EQ(-1, read(nb, &hdr, sizeof(hdr)));
	EXPECT_EQ(EAGAIN, errno);

	/* epoll too: nothing now, EPOLLIN once a request is queued. */
	ep = epoll_create1(0);
	ASSERT_LE(0, ep);
	ev.events = EPOLLIN;
	ev.data.fd = nb;
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, nb, &ev));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, WAIT_MS));
	EXPECT_TRUE(ev.events & EPOLLIN);
	close(ep);
	p.fd = nb;
	ASSERT_EQ(1, poll(&p, 1, WAIT_MS));
	EXPECT_TRUE(p.revents & POLLIN);
	ASSERT_EQ(DMU_HDR, read(nb, &hdr, sizeof(hdr)));
	EXPECT_EQ(DM_USER_REQ_MAP_READ, hdr.type);
	/* Nothing else is queued now. */
	EXPECT_EQ(-1, read(nb, &hdr, sizeof(hdr)));
	EXPECT_EQ(EAGAIN, errno);
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(nb, &hdr, DM_USER_RESP_SUCCESS,
					     self->data, 4096));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	close(nb);
}

TEST_F(dev, flush_and_fua_reach_the_daemon)
{
	struct dm_user_message hdr;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_FSYNC };
	char wc[64];

	ASSERT_EQ(0, dmu_queue_attr(self->mapper, "write_cache", wc,
				    sizeof(wc)));
	EXPECT_STREQ("write back", wc);

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_FLUSH, hdr.type);
	EXPECT_EQ(0, hdr.len);
	EXPECT_TRUE(hdr.flags & DM_USER_REQ_MAP_FLAG_PREFLUSH);
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(0, io.ret);

	io = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE_DSYNC,
			      .buf = self->buf, .len = 4096, .off = 4096 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, self->data, 4 << 20,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, hdr.type);
	EXPECT_TRUE(hdr.flags & DM_USER_REQ_MAP_FLAG_FUA);
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	/* The write path may follow up with a flush (generic_write_sync). */
	while (!__atomic_load_n(&io.done, __ATOMIC_ACQUIRE)) {
		if (dmu_wait_readable(self->ch, 200))
			continue;
		ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));
		EXPECT_EQ(DM_USER_REQ_MAP_FLUSH, hdr.type);
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr,
					      DM_USER_RESP_SUCCESS, NULL, 0));
	}
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
}

TEST_F(dev, discard_write_zeroes_secure_erase)
{
	static const struct {
		unsigned long req;
		uint64_t type;
	} ops[] = {
		{ BLKDISCARD, DM_USER_REQ_MAP_DISCARD },
		{ BLKZEROOUT, DM_USER_REQ_MAP_WRITE_ZEROES },
		{ BLKSECDISCARD, DM_USER_REQ_MAP_SECURE_ERASE },
	};
	struct dm_user_message hdr;
	unsigned int i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		struct dmu_io io = { .fd = self->bdev, .kind = DMU_IOCTL_RANGE,
				     .ioctl_req = ops[i].req, .off = 1 << 20,
				     .len = 1 << 20 };

		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));
		EXPECT_EQ(ops[i].type, hdr.type);
		EXPECT_EQ(2048, hdr.sector);
		EXPECT_EQ(1 << 20, hdr.len);
		if (ops[i].req == BLKZEROOUT)
			EXPECT_TRUE(hdr.flags & DM_USER_REQ_MAP_FLAG_NOUNMAP);
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
		EXPECT_EQ(0, io.ret) TH_LOG("ioctl %u: %s", i,
					    strerror(io.err));
	}
}

/*
 * No byte the daemon reads is left undefined: each read() lands in a buffer
 * filled with a pattern; every header byte must be what the request says
 * (five fields cover all 40 bytes), a write's data what was written, and
 * nothing past the returned count may change.
 */
TEST_F(dev, header_bytes_are_all_defined)
{
	static const struct {
		enum dmu_io_kind kind;
		unsigned long req;
		uint64_t type, sector, len, data;
	} ops[] = {
		{ DMU_PWRITE, 0, DM_USER_REQ_MAP_WRITE, 40, 8192, 8192 },
		{ DMU_PREAD, 0, DM_USER_REQ_MAP_READ, 64, 4096, 0 },
		{ DMU_FSYNC, 0, DM_USER_REQ_MAP_FLUSH, 0, 0, 0 },
		{ DMU_IOCTL_RANGE, BLKDISCARD, DM_USER_REQ_MAP_DISCARD, 2048, 1 << 20, 0 },
		{ DMU_IOCTL_RANGE, BLKZEROOUT, DM_USER_REQ_MAP_WRITE_ZEROES, 2048, 1 << 20, 0 },
	};
	/* Every flag bit the uapi defines; the rest must be zero. */
	const uint64_t known_flags = 0x7ffff;
	static const unsigned char fills[] = { 0xa5, 0x5a };
	size_t room = DMU_HDR + 8192 + 4096;
	unsigned char *msg = dmu_alloc(room);
	struct dm_user_message hdr;
	unsigned int i, f;
	size_t k;

	ASSERT_NE(NULL, msg);
	for (f = 0; f < sizeof(fills); f++) {
		for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
			struct dmu_io io = { .fd = self->bdev, .kind = ops[i].kind,
					     .ioctl_req = ops[i].req,
					     .buf = self->buf,
					     .off = ops[i].sector * 512,
					     .len = ops[i].len };
			ssize_t n;

			dmu_fill(self->buf, 8192, 100 + i + f);
			ASSERT_EQ(0, dmu_io_start(&io));
			ASSERT_EQ(0, dmu_wait_readable(self->ch, WAIT_MS));
			memset(msg, fills[f], room);
			n = read(self->ch, msg, room);
			ASSERT_EQ(DMU_HDR + (ssize_t)ops[i].data, n);
			memcpy(&hdr, msg, sizeof(hdr));
			EXPECT_NE(0, hdr.seq);
			EXPECT_EQ(ops[i].type, hdr.type);
			EXPECT_EQ(ops[i].sector, hdr.sector);
			EXPECT_EQ(ops[i].len, hdr.len);
			EXPECT_EQ(0, hdr.flags & ~known_flags)
				TH_LOG("op %u: flags 0x%llx", i,
				       (unsigned long long)hdr.flags);
			if (ops[i].data)
				EXPECT_EQ(0, memcmp(msg + DMU_HDR, self->buf,
						    ops[i].data));
			for (k = n; k < room; k++)
				if (msg[k] != fills[f])
					break;
			EXPECT_EQ(room, k) TH_LOG("op %u: byte %zu past the message changed", i, k);
			ASSERT_EQ(0, dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
						self->data, ops[i].type == DM_USER_REQ_MAP_READ ?
						ops[i].len : 0) < 0);
			ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
			EXPECT_LE(0, io.ret) TH_LOG("op %u: %s", i, strerror(io.err));
		}
	}
	free(msg);
}

TEST_F(dev, large_io_is_split_at_1mib)
{
	struct dm_user_message hdr;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 4 << 20, .off = 0 };
	uint64_t total = 0;

	ASSERT_EQ(0, dmu_io_start(&io));
	while (total < (4 << 20)) {
		ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));
		EXPECT_LE(hdr.len, 1 << 20);
		memset(self->data, (int)(hdr.sector & 0xff), hdr.len);
		ASSERT_EQ(DMU_HDR + (ssize_t)hdr.len,
			  dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
				     self->data, hdr.len));
		total += hdr.len;
	}
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4 << 20, io.ret);
}

TEST_F(dev, status_counts_requests)
{
	struct dm_user_message hdr;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 8192, .off = 0 };
	char line[1024], *p;

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, serve_one(self->ch, &hdr, self->data,
			       DM_USER_REQ_MAP_WRITE, 0, 8192, NULL));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	io.kind = DMU_PREAD;
	io.len = 4096;
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr, DM_USER_RESP_ERROR,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));

	ASSERT_EQ(0, dmu_capture(line, sizeof(line), "dmsetup status %s",
				 self->dev));
	p = strstr(line, "user ");
	ASSERT_NE(NULL, p) TH_LOG("status: %s", line);
	EXPECT_NE(NULL, strstr(p, "channels 1 queued 0 backlog 0 inflight 0"))
		TH_LOG("status: %s", line);
	EXPECT_NE(NULL, strstr(p, " read 1 4096 1 write 1 8192 0 "))
		TH_LOG("status: %s", line);
}

TEST_F(dev, remove_wakes_blocked_reader)
{
	struct dm_user_message hdr;
	struct pollfd p;
	pid_t pid;
	int st;

	close(self->bdev);
	self->bdev = -1;
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		ssize_t n = read(self->ch, &hdr, sizeof(hdr));

		_exit(n == -1 && errno == ENOTBLK ? 0 : 1);
	}
	usleep(300000);
	ASSERT_EQ(0, dmu_remove(self->dev));
	for (st = 0; st < 100; st++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		usleep(100000);
	}
	if (st == 100) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		ASSERT_TRUE(0) TH_LOG("reader not woken by remove");
	}
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	p = (struct pollfd){ .fd = self->ch, .events = POLLIN };
	ASSERT_EQ(1, poll(&p, 1, 0));
	EXPECT_TRUE(p.revents & POLLHUP);
	EXPECT_TRUE(p.revents & POLLERR);
	EXPECT_EQ(-1, write(self->ch, &hdr, sizeof(hdr)));
	EXPECT_EQ(ENOTBLK, errno);
}

/*
 * The last channel closing with a request it read but did not answer and
 * one queued: both wait for the next daemon (recovery_test.c has the
 * details); here the device is removed instead, and they fail.
 */
TEST_F(dev, closing_channel_keeps_requests_for_next_daemon)
{
	struct dm_user_message hdr;
	struct dmu_io a = { .fd = self->bdev, .kind = DMU_PREAD,
			    .buf = self->buf, .len = 4096, .off = 0 };
	struct dmu_io b = { .fd = self->bdev, .kind = DMU_PWRITE,
			    .buf = (char *)self->buf + 4096, .len = 4096,
			    .off = 4096 };

	ASSERT_EQ(0, dmu_io_start(&a));
	/* One read but unanswered, one never read. */
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, NULL, 0, WAIT_MS));
	ASSERT_EQ(0, dmu_io_start(&b));
	usleep(200000);
	close(self->ch);
	self->ch = -1;
	EXPECT_EQ(-ETIMEDOUT, dmu_io_wait(&a, 1000));
	EXPECT_EQ(-ETIMEDOUT, dmu_io_wait(&b, 10));
	/*
	 * A flushing suspend with no daemon waits for one no longer than
	 * no_daemon_timeout, then they fail.
	 */
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params no_daemon_timeout=1",
			     self->dev));
	EXPECT_EQ(0, dmu_run("timeout 20 dmsetup suspend %s", self->dev));
	ASSERT_EQ(0, dmu_io_wait(&a, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&b, WAIT_MS));
	EXPECT_EQ(EIO, a.err);
	EXPECT_EQ(EIO, b.err);
	EXPECT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
}

/*
 * Only a read-write open may serve: a read-only one (a group member under
 * mode 0640, say) gets EBADF from read() and POLLERR from poll(), never
 * counts as the daemon, never sees a request (write data included), and
 * may read GET_INFO but not change anything. A write-only one never serves
 * either.
 */
TEST_F(dev, only_read_write_opens_serve)
{
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 4096, .off = 0 };
	struct dm_user_message hdr;
	struct {
		struct dm_user_ctl hdr;
		__u8 data[4096];
	} ctl;
	struct pollfd p;
	char w[64];
	int ro, wo;

	close(self->ch);
	self->ch = -1;
	ro = open(self->chan, O_RDONLY);
	ASSERT_LE(0, ro);
	wo = open(self->chan, O_WRONLY);
	ASSERT_LE(0, wo);
	dmu_fill(self->buf, 4096, 9);
	ASSERT_EQ(0, dmu_io_start(&io));
	usleep(200000);

	EXPECT_EQ(-1, read(ro, &hdr, sizeof(hdr)));
	EXPECT_EQ(EBADF, errno);
	p = (struct pollfd){ .fd = ro, .events = POLLIN };
	EXPECT_EQ(1, poll(&p, 1, 0));
	EXPECT_EQ(POLLERR, p.revents);
	p = (struct pollfd){ .fd = wo, .events = POLLIN | POLLOUT };
	EXPECT_EQ(1, poll(&p, 1, 0));
	EXPECT_EQ(POLLERR, p.revents);
	ASSERT_EQ(0, dmu_capture(w, sizeof(w),
				 "dmsetup status %s | tr ' ' '\\n' | grep -A1 -x daemon | tail -n 1",
				 self->dev));
	EXPECT_STREQ("waiting", w);

	/* GET_INFO is fine; a change is not, even for root. */
	memset(&ctl, 0, sizeof(ctl));
	ctl.hdr.size = sizeof(ctl);
	ctl.hdr.version = 1;
	ctl.hdr.command = DM_USER_CMD_GET_INFO;
	EXPECT_EQ(0, ioctl(ro, DM_USER_IOCTL_CTL, &ctl));
	memset(&ctl, 0, sizeof(ctl));
	ctl.hdr.size = sizeof(ctl);
	ctl.hdr.version = 1;
	ctl.hdr.command = DM_USER_CMD_RESET_COUNTERS;
	EXPECT_EQ(-1, ioctl(ro, DM_USER_IOCTL_CTL, &ctl));
	EXPECT_EQ(EBADF, errno);

	/* The write is still waiting, whole, for a real daemon. */
	EXPECT_EQ(0, __atomic_load_n(&io.done, __ATOMIC_ACQUIRE));
	self->ch = open(self->chan, O_RDWR);
	ASSERT_LE(0, self->ch);
	ASSERT_EQ(0, dmu_read_msg(self->ch, &hdr, self->data, 4096, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, hdr.type);
	EXPECT_EQ(0, memcmp(self->buf, self->data, 4096));
	EXPECT_EQ(DMU_HDR, dmu_answer(self->ch, &hdr, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	close(ro);
	close(wo);
}

/*
 * A flushing suspend with no daemon: the I/O it waits for waits for a
 * daemon as any I/O does, no longer than no_daemon_timeout (set here while
 * it already waits), so the suspend ends, and the I/O fails.
 */
TEST_F(dev, suspend_without_daemon_does_not_hang)
{
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 4096, .off = 0 };
	struct timespec t0, t1;
	long ms;

	close(self->ch);
	self->ch = -1;
	ASSERT_EQ(0, dmu_io_start(&io));
	usleep(200000);
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params no_daemon_timeout=2",
			     self->dev));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	EXPECT_EQ(0, dmu_run("timeout 20 dmsetup suspend %s", self->dev));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	EXPECT_LE(1500, ms) TH_LOG("the suspend did not wait for a daemon");
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(EIO, io.err);
	EXPECT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
}

/* The cap holds excess requests back; daemons see at most max_queued. */
TEST(queue_cap_holds_back_excess)
{
	char dev[64], mapper[128], chan[128], table[256], line[1024];
	struct dm_user_message hdr[4];
	struct dmu_io io[4];
	char *buf = dmu_alloc(8 * 4096), *data = buf + 4 * 4096;
	int i, nb, bdev;

	dev_names(dev, sizeof(dev), mapper, sizeof(mapper), chan,
		  sizeof(chan), "cap");
	snprintf(table, sizeof(table), "0 %d user 0 %d %s 2 max_queued 2",
		 DEV_SECTORS, DEV_SECTORS, dev);
	ASSERT_EQ(0, dmu_create(dev, table));
	nb = open(chan, O_RDWR | O_NONBLOCK);
	ASSERT_LE(0, nb);
	bdev = open(mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, bdev);
	for (i = 0; i < 4; i++) {
		io[i] = (struct dmu_io){ .fd = bdev, .kind = DMU_PREAD,
			.buf = buf + i * 4096, .len = 4096,
			.off = (off_t)i * 4096 };
		ASSERT_EQ(0, dmu_io_start(&io[i]));
	}
	usleep(300000);
	ASSERT_EQ(0, dmu_capture(line, sizeof(line), "dmsetup status %s", dev));
	EXPECT_NE(NULL, strstr(line, "queued 2 backlog 2 inflight 0"))
		TH_LOG("status: %s", line);
	ASSERT_EQ(DMU_HDR, read(nb, &hdr[0], DMU_HDR));
	ASSERT_EQ(DMU_HDR, read(nb, &hdr[1], DMU_HDR));
	EXPECT_EQ(-1, read(nb, &hdr[2], DMU_HDR));
	EXPECT_EQ(EAGAIN, errno);
	/* Answering one lets one more through. */
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(nb, &hdr[0], DM_USER_RESP_SUCCESS,
					     data, 4096));
	ASSERT_EQ(0, dmu_read_msg(nb, &hdr[2], NULL, 0, WAIT_MS));
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(nb, &hdr[1], DM_USER_RESP_SUCCESS,
					     data, 4096));
	ASSERT_EQ(0, dmu_read_msg(nb, &hdr[3], NULL, 0, WAIT_MS));
	for (i = 2; i < 4; i++)
		ASSERT_EQ(DMU_HDR + 4096, dmu_answer(nb, &hdr[i],
			  DM_USER_RESP_SUCCESS, data, 4096));
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		EXPECT_EQ(4096, io[i].ret);
	}
	close(bdev);
	close(nb);
	EXPECT_EQ(0, dmu_remove(dev));
	free(buf);
}

/* The RFC sent the absolute sector; dm-user sends it relative to the target. */
TEST(sector_is_relative_to_target_start)
{
	char dev[64], mapper[128], chan[128], table[512];
	struct dm_user_message hdr;
	struct dmu_io io = { .kind = DMU_PREAD, .len = 4096 };
	void *buf = dmu_alloc(4096);
	int ch;

	dev_names(dev, sizeof(dev), mapper, sizeof(mapper), chan,
		  sizeof(chan), "off");
	snprintf(table, sizeof(table),
		 "0 2048 zero\n2048 8192 user 2048 8192 %s", dev);
	ASSERT_EQ(0, dmu_create(dev, table));
	ch = open(chan, O_RDWR);
	ASSERT_LE(0, ch);
	io.fd = open(mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, io.fd);
	io.buf = buf;
	io.off = (2048 + 16) * 512;
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch, &hdr, NULL, 0, WAIT_MS));
	EXPECT_EQ(16, hdr.sector);
	memset(buf, 0, 4096);
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(ch, &hdr, DM_USER_RESP_SUCCESS,
					     buf, 4096));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	close(io.fd);
	close(ch);
	EXPECT_EQ(0, dmu_remove(dev));
	free(buf);
}

TEST_HARNESS_MAIN
