// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user recovery tests: what happens to requests when the daemon goes
 * away, comes back, gets stuck, or the table is suspended. The test plays
 * the daemon on channels while threads do block I/O, and checks data,
 * errors, counters, the daemon state and dm events.
 */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

#include "dmu_test.h"
#include <kselftest_harness.h>

#define DEV_SECTORS	16384		/* 8 MiB */
#define WAIT_MS		10000

struct rdev {
	char dev[64];
	char mapper[128];
	char chan[128];
	int bdev;
	char *buf;
	char *data;
};

/* Creates a device with @features ("" or "<n> <words>...") and opens it. */
static int rdev_setup(struct rdev *r, const char *tag, const char *features)
{
	char table[256];

	snprintf(r->dev, sizeof(r->dev), "dmu_r%s_%d", tag, getpid());
	snprintf(r->mapper, sizeof(r->mapper), "/dev/mapper/%s", r->dev);
	snprintf(r->chan, sizeof(r->chan), "/dev/dm-user/%s", r->dev);
	snprintf(table, sizeof(table), "0 %d user 0 %d %s %s", DEV_SECTORS,
		 DEV_SECTORS, r->dev, features);
	r->bdev = -1;
	r->buf = dmu_alloc(4 << 20);
	r->data = dmu_alloc(4 << 20);
	if (!r->buf || !r->data)
		return -ENOMEM;
	if (dmu_create(r->dev, table))
		return -EIO;
	r->bdev = open(r->mapper, O_RDWR | O_DIRECT);
	return r->bdev < 0 ? -errno : 0;
}

static void rdev_teardown(struct rdev *r)
{
	if (r->bdev >= 0)
		close(r->bdev);
	dmu_remove(r->dev);
	free(r->buf);
	free(r->data);
}

/*
 * A channel that has not read yet does not count as a daemon. Close on
 * exec: a dmsetup the test starts must not keep the channel open.
 */
static int open_chan(struct rdev *r)
{
	return open(r->chan, O_RDWR | O_CLOEXEC);
}

/* The value after @key in "dmsetup status", as a string. */
static int status_word(struct rdev *r, const char *key, char *out,
		       size_t len)
{
	return dmu_capture(out, len,
			   "dmsetup status %s | tr ' ' '\\n' | grep -A1 -x %s | tail -n 1",
			   r->dev, key);
}

static long status_num(struct rdev *r, const char *key)
{
	char w[64];

	if (status_word(r, key, w, sizeof(w)) || !w[0])
		return -1;
	return strtol(w, NULL, 10);
}

static long event_nr(struct rdev *r)
{
	char w[64];

	if (dmu_capture(w, sizeof(w),
			"dmsetup info -c --noheadings -o events %s", r->dev) ||
	    !w[0])
		return -1;
	return strtol(w, NULL, 10);
}

/* Milliseconds of CLOCK_MONOTONIC. */
static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * Plays the daemon for one 4 KiB read that @io (already started) is doing
 * into r->buf: reads the request on @ch into @h, answers it with a pattern
 * from @seed, and checks that the I/O returns exactly those bytes.
 */
static void serve_read_4k(struct __test_metadata *_metadata, struct rdev *r,
			  int ch, struct dmu_io *io, uint32_t seed,
			  struct dm_user_message *h)
{
	dmu_fill(r->data, 4096, seed);
	ASSERT_EQ(0, dmu_read_msg(ch, h, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_READ, h->type);
	EXPECT_EQ(DMU_HDR + 4096,
		  dmu_answer(ch, h, DM_USER_RESP_SUCCESS, r->data, 4096));
	ASSERT_EQ(0, dmu_io_wait(io, WAIT_MS));
	EXPECT_EQ(4096, io->ret);
	EXPECT_EQ(0, memcmp(r->buf, r->data, 4096));
}

/*
 * A request read but not answered, and one never read, both go back to the
 * queue when the channel closes; a new channel gets them whole, oldest
 * first, under new seqs, the write with all its data.
 */
TEST(close_requeues_unanswered_requests)
{
	struct rdev r;
	struct dm_user_message h1, h2, h3;
	struct dmu_io a, b;
	int ch, ch2;

	ASSERT_EQ(0, rdev_setup(&r, "rq", "1 queue_if_no_daemon"));
	dmu_fill(r.buf + 65536, 65536, 7);
	a = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PWRITE,
			     .buf = r.buf + 65536, .len = 65536, .off = 0 };
	b = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD, .buf = r.buf,
			     .len = 4096, .off = 1 << 20 };
	ch = open_chan(&r);
	ASSERT_LE(0, ch);

	ASSERT_EQ(0, dmu_io_start(&a));
	/* The header and a third of the write's data, then the daemon dies. */
	ASSERT_EQ(0, dmu_wait_readable(ch, WAIT_MS));
	ASSERT_EQ(DMU_HDR, read(ch, &h1, sizeof(h1)));
	ASSERT_EQ(DM_USER_REQ_MAP_WRITE, h1.type);
	ASSERT_EQ(20000, read(ch, r.data, 20000));
	ASSERT_EQ(0, dmu_io_start(&b));
	usleep(200000);
	close(ch);

	usleep(300000);
	EXPECT_EQ(0, __atomic_load_n(&a.done, __ATOMIC_ACQUIRE));
	EXPECT_EQ(0, __atomic_load_n(&b.done, __ATOMIC_ACQUIRE));
	EXPECT_EQ(1, status_num(&r, "requeued"));
	EXPECT_EQ(2, status_num(&r, "queued"));

	ch2 = open_chan(&r);
	ASSERT_LE(0, ch2);
	memset(r.data, 0, 65536);
	ASSERT_EQ(0, dmu_read_msg(ch2, &h2, r.data, 4 << 20, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, h2.type);
	EXPECT_EQ(0, h2.sector);
	EXPECT_EQ(65536, h2.len);
	EXPECT_NE(h1.seq, h2.seq);
	EXPECT_EQ(0, memcmp(r.data, r.buf + 65536, 65536));
	ASSERT_EQ(0, dmu_read_msg(ch2, &h3, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_READ, h3.type);
	EXPECT_EQ(2048, h3.sector);

	dmu_fill(r.data, 4096, 9);
	EXPECT_EQ(DMU_HDR + 4096,
		  dmu_answer(ch2, &h3, DM_USER_RESP_SUCCESS, r.data, 4096));
	EXPECT_EQ(DMU_HDR, dmu_answer(ch2, &h2, DM_USER_RESP_SUCCESS, NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&a, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&b, WAIT_MS));
	EXPECT_EQ(65536, a.ret);
	EXPECT_EQ(4096, b.ret);
	EXPECT_EQ(0, memcmp(r.buf, r.data, 4096));
	/* The old delivery's seq means nothing now. */
	EXPECT_EQ(-1, dmu_answer(ch2, &h1, DM_USER_RESP_SUCCESS, NULL, 0));
	EXPECT_EQ(EINVAL, errno);
	close(ch2);
	rdev_teardown(&r);
}

/* no_daemon_timeout: I/O waits, then fails, then works once one attaches. */
TEST(no_daemon_timeout_fails_then_recovers)
{
	struct rdev r;
	struct dm_user_message h;
	struct dmu_io io;
	char w[64];
	long t0;
	int ch;

	/*
	 * Before the device exists: its clock starts at resume, inside the
	 * setup, which a debug kernel under emulation may take a second to
	 * finish.
	 */
	t0 = now_ms();
	ASSERT_EQ(0, rdev_setup(&r, "nd", "2 no_daemon_timeout 2"));
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("waiting", w);

	io = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD, .buf = r.buf,
			      .len = 4096, .off = 0 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_io_wait(&io, 8000));
	EXPECT_EQ(EIO, io.err);
	/* Failed by the clock started at resume, not at once. */
	EXPECT_LE(1900, now_ms() - t0);
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("failing", w);

	/* While failing, new I/O fails at once. */
	t0 = now_ms();
	EXPECT_EQ(-1, pread(r.bdev, r.buf, 4096, 0));
	EXPECT_EQ(EIO, errno);
	EXPECT_GT(1000, now_ms() - t0);

	/* A daemon attaches: I/O is served again. */
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	/* Waiting for a request is serving: poll() marks the channel. */
	EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(ch, 100));
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("attached", w);
	ASSERT_EQ(0, dmu_io_start(&io));
	serve_read_4k(_metadata, &r, ch, &io, 3, &h);
	close(ch);
	rdev_teardown(&r);
}

/* no_daemon_timeout 0 fails at once; queue_if_no_daemon waits for ever. */
TEST(zero_timeout_fails_at_once_and_forever_waits)
{
	struct rdev r, q;
	struct dm_user_message h;
	struct dmu_io io;
	long t0;
	int ch;

	ASSERT_EQ(0, rdev_setup(&r, "z", "2 no_daemon_timeout 0"));
	t0 = now_ms();
	EXPECT_EQ(-1, pread(r.bdev, r.buf, 4096, 0));
	EXPECT_EQ(EIO, errno);
	EXPECT_GT(1000, now_ms() - t0);
	rdev_teardown(&r);

	ASSERT_EQ(0, rdev_setup(&q, "f", "1 queue_if_no_daemon"));
	io = (struct dmu_io){ .fd = q.bdev, .kind = DMU_PREAD, .buf = q.buf,
			      .len = 4096, .off = 8192 };
	ASSERT_EQ(0, dmu_io_start(&io));
	/* Longer than the 2 s of the previous test: still waiting. */
	EXPECT_EQ(-ETIMEDOUT, dmu_io_wait(&io, 3000));
	ch = open_chan(&q);
	ASSERT_LE(0, ch);
	serve_read_4k(_metadata, &q, ch, &io, 5, &h);
	EXPECT_EQ(16, h.sector);
	close(ch);
	rdev_teardown(&q);
}

/* Checks that @ch was reset: read, write and poll all say so. */
static void expect_reset(struct __test_metadata *_metadata, int ch,
			 const struct dm_user_message *h)
{
	struct pollfd p = { .fd = ch, .events = POLLIN | POLLOUT };
	char byte;

	EXPECT_EQ(1, poll(&p, 1, 0));
	EXPECT_TRUE(p.revents & POLLERR);
	EXPECT_FALSE(p.revents & POLLHUP);
	EXPECT_EQ(-1, read(ch, &byte, 1));
	EXPECT_EQ(ECONNRESET, errno);
	EXPECT_EQ(-1, dmu_answer(ch, h, DM_USER_RESP_ERROR, NULL, 0));
	EXPECT_EQ(ECONNRESET, errno);
}

/*
 * request_timeout: a daemon reads a write and never answers. The write
 * fails with ETIMEDOUT and the channel is reset, so the daemon learns at
 * once that its copy is void: the late answer fails with ECONNRESET. A
 * newer write to the same sector, served on a new channel, is acknowledged
 * and nothing of the old one comes back, even when the old channel closes.
 */
TEST(request_timeout_resets_the_channel)
{
	struct rdev r;
	struct dm_user_message h, h2;
	struct dmu_io io;
	long t0, requeued;
	int ch, ch2;

	ASSERT_EQ(0, rdev_setup(&r, "rt", "2 request_timeout 1"));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	dmu_fill(r.buf, 4096, 1);
	io = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PWRITE, .buf = r.buf,
			      .len = 4096, .off = 0 };
	t0 = now_ms();
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch, &h, r.data, 4096, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&io, 8000));
	EXPECT_EQ(ETIMEDOUT, io.err);
	EXPECT_LE(900, now_ms() - t0);
	EXPECT_EQ(1, status_num(&r, "timeouts"));
	expect_reset(_metadata, ch, &h);
	requeued = status_num(&r, "requeued");

	/* The newer write, on a new channel, while the old one is open. */
	ch2 = open_chan(&r);
	ASSERT_LE(0, ch2);
	dmu_fill(r.buf, 4096, 2);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch2, &h2, r.data, 4096, WAIT_MS));
	EXPECT_EQ(0, memcmp(r.buf, r.data, 4096));
	EXPECT_NE(h.seq, h2.seq);
	EXPECT_EQ(DMU_HDR, dmu_answer(ch2, &h2, DM_USER_RESP_SUCCESS, NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);

	/* Closing the reset channel gives nothing back to be served again. */
	close(ch);
	EXPECT_EQ(requeued, status_num(&r, "requeued"));
	EXPECT_EQ(-ETIMEDOUT, dmu_read_msg(ch2, &h, NULL, 0, 300));
	EXPECT_EQ(1, status_num(&r, "timeouts"));
	close(ch2);
	rdev_teardown(&r);
}

/*
 * request_timeout fires after the daemon read a write's header and part of
 * its data: the channel is reset rather than handing the daemon the next
 * header where it expects data. A new channel then gets the next write
 * whole, at its own sector.
 */
TEST(timeout_in_a_split_read)
{
	struct rdev r;
	struct dm_user_message h;
	struct dmu_io io;
	int ch;

	ASSERT_EQ(0, rdev_setup(&r, "rs", "2 request_timeout 1"));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	dmu_fill(r.buf, 8192, 3);
	io = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PWRITE, .buf = r.buf,
			      .len = 8192, .off = 4096 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_wait_readable(ch, WAIT_MS));
	ASSERT_EQ(DMU_HDR, read(ch, &h, DMU_HDR));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, h.type);
	ASSERT_EQ(1000, read(ch, r.data, 1000));
	ASSERT_EQ(0, dmu_io_wait(&io, 8000));
	EXPECT_EQ(ETIMEDOUT, io.err);

	/* A second write is waiting: the reset channel must not show it. */
	dmu_fill(r.buf, 8192, 4);
	ASSERT_EQ(0, dmu_io_start(&io));
	usleep(100000);
	expect_reset(_metadata, ch, &h);
	close(ch);

	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	ASSERT_EQ(0, dmu_read_msg_split(ch, &h, r.data, 8192, 509, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, h.type);
	EXPECT_EQ(8, h.sector);
	EXPECT_EQ(8192, h.len);
	EXPECT_EQ(0, memcmp(r.buf, r.data, 8192));
	EXPECT_EQ(DMU_HDR, dmu_answer(ch, &h, DM_USER_RESP_SUCCESS, NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(8192, io.ret);
	close(ch);
	rdev_teardown(&r);
}

/*
 * request_timeout fires after the daemon wrote a read's answer header and
 * part of its data: the channel is reset, so the rest of that answer is
 * never taken as the header of another. A new channel serves the next
 * read with the right bytes.
 */
TEST(timeout_in_a_split_answer)
{
	struct rdev r;
	struct dm_user_message h, ans;
	struct dmu_io io;
	int ch;

	ASSERT_EQ(0, rdev_setup(&r, "ra", "2 request_timeout 1"));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	io = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD, .buf = r.buf,
			      .len = 4096, .off = 8192 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch, &h, NULL, 0, WAIT_MS));
	ans = h;
	ans.type = DM_USER_RESP_SUCCESS;
	ASSERT_EQ(DMU_HDR, write(ch, &ans, DMU_HDR));
	dmu_fill(r.data, 4096, 5);
	ASSERT_EQ(1000, write(ch, r.data, 1000));
	ASSERT_EQ(0, dmu_io_wait(&io, 8000));
	EXPECT_EQ(ETIMEDOUT, io.err);
	expect_reset(_metadata, ch, &h);
	close(ch);

	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	ASSERT_EQ(0, dmu_io_start(&io));
	serve_read_4k(_metadata, &r, ch, &io, 6, &h);
	EXPECT_EQ(16, h.sector);
	close(ch);
	rdev_teardown(&r);
}

struct stuck_reader {
	pthread_t thread;
	int fd;
	void *buf;
	ssize_t ret;
	int err;
};

static void *stuck_read(void *arg)
{
	struct stuck_reader *sr = arg;

	sr->ret = read(sr->fd, sr->buf, 4096 + DMU_HDR);
	sr->err = sr->ret < 0 ? errno : 0;
	return NULL;
}

/*
 * The daemon reads into a buffer whose pages never arrive (userfaultfd that
 * nobody serves, as a FUSE mapping or a network-backed buffer may be). The
 * kernel must not wait for that fault with the request pinned: the request
 * still times out, and the device can still be removed. Once the fault is
 * released the read() returns ENOTBLK.
 */
TEST(fault_on_the_daemon_buffer_holds_nothing_up)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct stuck_reader sr = { 0 };
	struct timespec ts;
	struct dmu_io io;
	struct rdev r;
	size_t len = 64 << 10;
	int uffd;

	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		SKIP(return, "userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	sr.buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sr.buf);
	reg.range.start = (unsigned long)sr.buf;
	reg.range.len = len;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));

	ASSERT_EQ(0, rdev_setup(&r, "uf", "2 request_timeout 1"));
	sr.fd = open_chan(&r);
	ASSERT_LE(0, sr.fd);
	dmu_fill(r.buf, 4096, 10);
	io = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PWRITE, .buf = r.buf,
			      .len = 4096, .off = 0 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_wait_readable(sr.fd, WAIT_MS));
	ASSERT_EQ(0, pthread_create(&sr.thread, NULL, stuck_read, &sr));

	ASSERT_EQ(0, dmu_io_wait(&io, 8000))
		TH_LOG("the request stayed pinned by a fault on the daemon's buffer");
	EXPECT_EQ(ETIMEDOUT, io.err);
	close(r.bdev);
	r.bdev = -1;
	EXPECT_EQ(0, dmu_run("timeout 20 dmsetup remove %s", r.dev));

	/* Release the fault: the reader finds the target gone. */
	close(uffd);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	ASSERT_EQ(0, pthread_timedjoin_np(sr.thread, NULL, &ts));
	EXPECT_EQ(-1, sr.ret);
	EXPECT_EQ(ENOTBLK, sr.err);
	close(sr.fd);
	munmap(sr.buf, len);
	rdev_teardown(&r);
}

/*
 * Both timeouts changed while the target runs: a request already older
 * than a new request_timeout fails at once; a no_daemon_timeout of 0 fails
 * waiting I/O at once, and "forever" makes a failing target wait again.
 */
TEST(timeouts_set_at_run_time)
{
	struct rdev r;
	struct dm_user_message h, h2;
	struct dmu_io io;
	char w[64];
	long t0;
	int ch;

	ASSERT_EQ(0, rdev_setup(&r, "rs", ""));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	io = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD, .buf = r.buf,
			      .len = 4096, .off = 0 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch, &h, NULL, 0, WAIT_MS));
	/*
	 * 3.5 s old, then a 3 s timeout: failed at once, not 3 s later. The
	 * margin is for dmsetup and the wake-up, which on a debug kernel
	 * under emulation took 1.3 s.
	 */
	usleep(3500000);
	t0 = now_ms();
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params request_timeout=3",
			     r.dev));
	ASSERT_EQ(0, dmu_io_wait(&io, 8000));
	EXPECT_EQ(ETIMEDOUT, io.err);
	EXPECT_GT(3000, now_ms() - t0);
	EXPECT_EQ(1, status_num(&r, "timeouts"));
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params request_timeout=0",
			     r.dev));

	/* The daemon goes; 0 fails what waits, now. */
	close(ch);
	ASSERT_EQ(0, dmu_io_start(&io));
	usleep(200000);
	EXPECT_EQ(0, __atomic_load_n(&io.done, __ATOMIC_ACQUIRE));
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("waiting", w);
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params no_daemon_timeout=0",
			     r.dev));
	ASSERT_EQ(0, dmu_io_wait(&io, 2000));
	EXPECT_EQ(EIO, io.err);
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("failing", w);

	/* "forever": I/O waits again, and the next daemon serves it. */
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params no_daemon_timeout=forever",
			     r.dev));
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("waiting", w);
	ASSERT_EQ(0, dmu_io_start(&io));
	EXPECT_EQ(-ETIMEDOUT, dmu_io_wait(&io, 1500));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	serve_read_4k(_metadata, &r, ch, &io, 4, &h2);
	close(ch);
	rdev_teardown(&r);
}

/*
 * A noflush suspend gives back to dm core the requests no channel has
 * started to read, but waits for the answer of one a channel has read, as
 * for any I/O in flight: taking it back would leave a copy with the daemon
 * that it could apply after the request was served again. After resume the
 * given-back one comes back under a new seq and completes.
 */
TEST(noflush_suspend_waits_for_started_requests)
{
	struct rdev r;
	struct dm_user_message h1, h2, h3;
	struct dmu_io a, b;
	char w[64];
	pid_t pid;
	int ch, st;

	ASSERT_EQ(0, rdev_setup(&r, "ns", ""));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	dmu_fill(r.buf, 4096, 7);
	a = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PWRITE, .buf = r.buf,
			     .len = 4096, .off = 0 };
	b = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD,
			     .buf = r.buf + 4096, .len = 4096, .off = 4096 };
	ASSERT_EQ(0, dmu_io_start(&a));
	ASSERT_EQ(0, dmu_read_msg(ch, &h1, r.data, 4096, WAIT_MS));
	ASSERT_EQ(0, dmu_io_start(&b));
	usleep(200000);

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(dmu_run("timeout 20 dmsetup suspend --noflush %s",
			      r.dev));
	usleep(1000000);
	/* Still waiting for the write the daemon holds. */
	EXPECT_EQ(0, waitpid(pid, &st, WNOHANG));
	ASSERT_EQ(0, dmu_capture(w, sizeof(w),
				 "dmsetup info -c --noheadings -o attr %s",
				 r.dev));
	EXPECT_EQ('-', w[2]) TH_LOG("suspended with a request in flight: %s",
				    w);
	EXPECT_EQ(DMU_HDR, dmu_answer(ch, &h1, DM_USER_RESP_SUCCESS, NULL, 0));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ASSERT_EQ(0, dmu_io_wait(&a, WAIT_MS));
	EXPECT_EQ(4096, a.ret);
	/* The queued read went back to dm core, not to the daemon. */
	EXPECT_EQ(0, __atomic_load_n(&b.done, __ATOMIC_ACQUIRE));
	EXPECT_EQ(-ETIMEDOUT, dmu_read_msg(ch, &h2, NULL, 0, 300));
	EXPECT_EQ(0, dmu_run("dmsetup resume %s", r.dev));

	ASSERT_EQ(0, dmu_read_msg(ch, &h2, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_READ, h2.type);
	EXPECT_EQ(8, h2.sector);
	EXPECT_NE(h1.seq, h2.seq);
	dmu_fill(r.data, 4096, 8);
	EXPECT_EQ(DMU_HDR + 4096,
		  dmu_answer(ch, &h2, DM_USER_RESP_SUCCESS, r.data, 4096));
	ASSERT_EQ(0, dmu_io_wait(&b, WAIT_MS));
	EXPECT_EQ(4096, b.ret);
	EXPECT_EQ(0, memcmp(r.buf + 4096, r.data, 4096));
	/* Nothing is left over, the write least of all. */
	EXPECT_EQ(-ETIMEDOUT, dmu_read_msg(ch, &h3, NULL, 0, 300));
	close(ch);
	rdev_teardown(&r);
}

/*
 * The answer hash grows with max_queued: requests waiting for their answer
 * when the cap is raised are found in the new buckets, and so are requests
 * read after.
 */
TEST(raising_the_cap_keeps_waiting_requests)
{
	enum { NR = 6 };
	struct dm_user_message h[NR * 2];
	struct dmu_io io[NR * 2];
	struct rdev r;
	int ch, i;

	ASSERT_EQ(0, rdev_setup(&r, "hg", "2 max_queued 8"));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	for (i = 0; i < NR; i++) {
		io[i] = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD,
					 .buf = r.buf + i * 4096, .len = 4096,
					 .off = i * 4096 };
		ASSERT_EQ(0, dmu_io_start(&io[i]));
		ASSERT_EQ(0, dmu_read_msg(ch, &h[i], NULL, 0, WAIT_MS));
	}
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params max_queued=65536",
			     r.dev));
	for (i = NR; i < NR * 2; i++) {
		io[i] = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD,
					 .buf = r.buf + i * 4096, .len = 4096,
					 .off = i * 4096 };
		ASSERT_EQ(0, dmu_io_start(&io[i]));
		ASSERT_EQ(0, dmu_read_msg(ch, &h[i], NULL, 0, WAIT_MS));
	}
	/* Answered newest first, each with its own pattern. */
	for (i = NR * 2 - 1; i >= 0; i--) {
		unsigned int k = h[i].sector / 8;

		ASSERT_GT(NR * 2, k);
		dmu_fill(r.data + k * 4096, 4096, 100 + k);
		EXPECT_EQ(DMU_HDR + 4096,
			  dmu_answer(ch, &h[i], DM_USER_RESP_SUCCESS,
				     r.data + k * 4096, 4096));
	}
	for (i = 0; i < NR * 2; i++) {
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		EXPECT_EQ(4096, io[i].ret);
	}
	EXPECT_EQ(0, memcmp(r.buf, r.data, NR * 2 * 4096));
	close(ch);
	rdev_teardown(&r);
}

/* Attach and detach raise dm events and show in status. */
TEST(attach_and_detach_raise_events)
{
	struct rdev r;
	struct dm_user_message h;
	long e0, e1;
	char w[64];
	int ch, ctl;

	ASSERT_EQ(0, rdev_setup(&r, "ev", "1 queue_if_no_daemon"));
	e0 = event_nr(&r);
	ASSERT_LE(0, e0);

	/* A control-only open is not a daemon. */
	ctl = open_chan(&r);
	ASSERT_LE(0, ctl);
	usleep(200000);
	EXPECT_EQ(e0, event_nr(&r));
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("waiting", w);
	close(ctl);

	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	EXPECT_EQ(-ETIMEDOUT, dmu_read_msg(ch, &h, NULL, 0, 100));
	EXPECT_EQ(0, dmu_run("timeout 10 dmsetup wait %s %ld", r.dev, e0));
	e1 = event_nr(&r);
	EXPECT_LT(e0, e1);
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("attached", w);

	close(ch);
	EXPECT_EQ(0, dmu_run("timeout 10 dmsetup wait %s %ld", r.dev, e1));
	EXPECT_LT(e1, event_nr(&r));
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("waiting", w);
	rdev_teardown(&r);
}

struct closer {
	pthread_t thread;
	int fd;
};

static void *close_fd(void *arg)
{
	struct closer *c = arg;

	close(c->fd);
	return NULL;
}

/*
 * The channel holding every request closes (requeueing them) while the
 * device is force-removed, again and again: every bio completes, nothing
 * hangs, the node goes away, and the name can be used again at once.
 */
TEST(close_races_forced_remove)
{
	enum { NR_IO = 8, ROUNDS = 6 };
	struct dm_user_message h;
	int round, i;

	for (round = 0; round < ROUNDS; round++) {
		struct dmu_io io[NR_IO];
		struct closer c;
		struct rdev r;
		char tag[16];
		long t0;

		/* A name per round: a remove still retrying must not meet the next. */
		snprintf(tag, sizeof(tag), "race%d", round);
		/*
		 * The forced remove's flushing suspend waits for a daemon
		 * as long as I/O does: one second.
		 */
		ASSERT_EQ(0, rdev_setup(&r, tag, "2 no_daemon_timeout 1"));
		c.fd = open_chan(&r);
		ASSERT_LE(0, c.fd);
		for (i = 0; i < NR_IO; i++) {
			io[i] = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD,
						 .buf = r.buf + i * 4096,
						 .len = 4096, .off = i * 4096 };
			ASSERT_EQ(0, dmu_io_start(&io[i]));
		}
		/* Every request in flight on the channel. */
		for (i = 0; i < NR_IO; i++)
			ASSERT_EQ(0, dmu_read_msg(c.fd, &h, NULL, 0, WAIT_MS));
		/* Odd rounds close first, even rounds remove first. */
		if (round % 2)
			ASSERT_EQ(0, pthread_create(&c.thread, NULL, close_fd, &c));
		t0 = now_ms();
		EXPECT_EQ(0, dmu_run("dmsetup remove --force %s >/dev/null 2>&1 &",
				     r.dev));
		if (!(round % 2))
			ASSERT_EQ(0, pthread_create(&c.thread, NULL, close_fd, &c));
		ASSERT_EQ(0, pthread_join(c.thread, NULL));
		for (i = 0; i < NR_IO; i++) {
			ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS))
				TH_LOG("round %d: I/O %d still blocked", round, i);
			/* The error table or the dead target fails it. */
			EXPECT_EQ(-1, io[i].ret);
			EXPECT_EQ(EIO, io[i].err);
		}
		close(r.bdev);
		r.bdev = -1;
		rdev_teardown(&r);
		EXPECT_NE(0, access(r.chan, F_OK)) TH_LOG("round %d: node left", round);
		TH_LOG("round %d: all %d bios completed in %ld ms", round, NR_IO,
		       now_ms() - t0);
	}
}

/* For tests longer than the harness's default 30 s bound. */
FIXTURE(slow) {
	int unused;
};

FIXTURE_SETUP(slow)
{
}

FIXTURE_TEARDOWN(slow)
{
}

/*
 * A flushing suspend bounds queue_if_no_daemon by the default timeout (30
 * s) only while it runs: a target left suspended longer than that, with no
 * daemon, must still hold I/O for a daemon after resume, not fail it.
 */
TEST_F_TIMEOUT(slow, queue_if_no_daemon_outlasts_a_flushing_suspend, 120)
{
	struct rdev r;
	struct dm_user_message h;
	struct dmu_io io;
	char w[64];
	int ch;

	ASSERT_EQ(0, rdev_setup(&r, "qs", "1 queue_if_no_daemon"));
	ASSERT_EQ(0, dmu_run("dmsetup suspend %s", r.dev));
	sleep(35);
	ASSERT_EQ(0, status_word(&r, "daemon", w, sizeof(w)));
	EXPECT_STREQ("waiting", w);
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", r.dev));
	io = (struct dmu_io){ .fd = r.bdev, .kind = DMU_PREAD, .buf = r.buf,
			      .len = 4096, .off = 4096 };
	ASSERT_EQ(0, dmu_io_start(&io));
	EXPECT_EQ(-ETIMEDOUT, dmu_io_wait(&io, 2000));
	ch = open_chan(&r);
	ASSERT_LE(0, ch);
	serve_read_4k(_metadata, &r, ch, &io, 9, &h);
	EXPECT_EQ(8, h.sector);
	close(ch);
	rdev_teardown(&r);
}

TEST_HARNESS_MAIN
