// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user reloads under the same name: a table loaded with the name of the
 * device's live user target takes that target over at resume, keeping its
 * node, its channels and the daemon behind them. Checked here: the size
 * grows and shrinks with the daemon's channel open throughout, the daemon
 * sees POLLPRI (a ring DM_USER_RING_RELOADED) until it asks GET_INFO,
 * requests in flight across a noflush swap complete, lines that would
 * change what the daemon relies on are refused, and claims and write
 * notifications are fitted to the new line.
 */
#include <poll.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

#include "dmu_test.h"
#include "dmu_ring.h"
#include <kselftest_harness.h>

#define SECTORS		8192		/* 4 MiB */
#define RAM_START	2048

/* A shell command in a thread, to see whether it waits. */
struct bg_cmd {
	pthread_t thread;
	char cmd[512];
	int ret;
	int done;
};

static void *bg_thread(void *arg)
{
	struct bg_cmd *b = arg;

	b->ret = dmu_run("%s", b->cmd);
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* poll() for POLLPRI alone, up to WAIT_MS, in a thread. */
struct pri_wait {
	pthread_t thread;
	int fd;
	int ret;
	short revents;
};

static void *pri_thread(void *arg)
{
	struct pri_wait *w = arg;
	struct pollfd p = { .fd = w->fd, .events = POLLPRI };

	w->ret = poll(&p, 1, WAIT_MS);
	w->revents = p.revents;
	return NULL;
}

/* Whether POLLPRI shows on @fd now. */
static bool pollpri(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLPRI };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLPRI);
}

/* The device's size in sectors, from the block device itself. */
static uint64_t dev_sectors(const char *mapper)
{
	uint64_t bytes = 0;
	int fd = open(mapper, O_RDONLY);

	if (fd < 0)
		return 0;
	if (ioctl(fd, BLKGETSIZE64, &bytes))
		bytes = 0;
	close(fd);
	return bytes / 512;
}

/* Loads the table "0 @sectors user 0 @sectors <name> @features". */
static int load(const char *dev, const char *name, uint64_t sectors,
		const char *features)
{
	return dmu_run("dmsetup load %s --table '0 %llu user 0 %llu %s %s' 2>&1",
		       dev, (unsigned long long)sectors,
		       (unsigned long long)sectors, name, features);
}

FIXTURE(reload) {
	char dev[64];
	char mapper[128];
	char chan[128];
	int ch;
	void *buf;
	void *data;
};

FIXTURE_SETUP(reload)
{
	char table[256];

	self->ch = -1;
	snprintf(self->dev, sizeof(self->dev), "dmu_reload_%d", getpid());
	snprintf(self->mapper, sizeof(self->mapper), "/dev/mapper/%s",
		 self->dev);
	snprintf(self->chan, sizeof(self->chan), "/dev/dm-user/%s", self->dev);
	snprintf(table, sizeof(table), "0 %d user 0 %d %s 2 request_timeout 60",
		 SECTORS, SECTORS, self->dev);
	ASSERT_EQ(0, dmu_create(self->dev, table));
	self->ch = open(self->chan, O_RDWR);
	ASSERT_LE(0, self->ch);
	self->buf = dmu_alloc(1 << 20);
	self->data = dmu_alloc(1 << 20);
	ASSERT_NE(NULL, self->buf);
	ASSERT_NE(NULL, self->data);
}

FIXTURE_TEARDOWN(reload)
{
	if (self->ch >= 0)
		close(self->ch);
	dmu_remove(self->dev);
	free(self->buf);
	free(self->data);
}

/* Serves one write of @len bytes at @sector on @ch: its data checked. */
static int serve_write(int ch, const char *mapper, void *buf, void *data,
		       uint64_t sector, size_t len, uint32_t seed)
{
	struct dm_user_message req;
	struct dmu_io io;
	int fd = open(mapper, O_RDWR | O_DIRECT);

	if (fd < 0)
		return -1;
	io = (struct dmu_io){ .fd = fd, .kind = DMU_PWRITE, .buf = buf,
			      .len = len, .off = sector * 512 };
	dmu_fill(buf, len, seed);
	if (dmu_io_start(&io) ||
	    dmu_read_msg(ch, &req, data, 1 << 20, WAIT_MS) ||
	    req.type != DM_USER_REQ_MAP_WRITE || req.sector != sector ||
	    req.len != len || memcmp(data, buf, len) ||
	    dmu_answer(ch, &req, DM_USER_RESP_SUCCESS, NULL, 0) != DMU_HDR ||
	    dmu_io_wait(&io, WAIT_MS) || io.ret != (ssize_t)len) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Grown and shrunk with the daemon's channel open: the node stays (same
 * device number), the channel keeps serving, the size is the new line's
 * in the block device and in GET_INFO, and POLLPRI says so once.
 */
TEST_F(reload, resize_keeps_node_channel_and_daemon)
{
	struct pri_wait waiter = { .fd = self->ch };
	struct stat before, after;
	char out[512];

	ASSERT_EQ(0, stat(self->chan, &before));
	ASSERT_EQ(0, serve_write(self->ch, self->mapper, self->buf,
				 self->data, 0, 4096, 1));

	ASSERT_EQ(0, load(self->dev, self->dev, 2 * SECTORS,
			  "2 request_timeout 60"));
	/* Loaded, not live: the old line serves. */
	EXPECT_EQ(SECTORS, info_num(self->ch, DM_USER_ATTR_SIZE));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out), "dmsetup table --inactive %s",
				 self->dev));
	EXPECT_NE(NULL, strstr(out, "16384 user 0 16384")) TH_LOG("%s", out);
	EXPECT_FALSE(pollpri(self->ch));
	/* A poller asleep before the resume is woken by it. */
	ASSERT_EQ(0, pthread_create(&waiter.thread, NULL, pri_thread,
				    &waiter));
	usleep(200000);
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	ASSERT_EQ(0, pthread_join(waiter.thread, NULL));
	EXPECT_EQ(1, waiter.ret);
	EXPECT_TRUE(waiter.revents & POLLPRI);

	ASSERT_EQ(0, stat(self->chan, &after));
	EXPECT_EQ(before.st_rdev, after.st_rdev);
	EXPECT_EQ(2 * SECTORS, dev_sectors(self->mapper));
	EXPECT_TRUE(pollpri(self->ch));
	EXPECT_EQ(2 * SECTORS, info_num(self->ch, DM_USER_ATTR_SIZE));
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_RELOADS));
	/* Asked: seen. */
	EXPECT_FALSE(pollpri(self->ch));
	/* The same channel serves the new sectors. */
	ASSERT_EQ(0, serve_write(self->ch, self->mapper, self->buf,
				 self->data, SECTORS + 512, 65536, 2));
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_WRITE_REQUESTS));

	/* Shrunk, with another request_timeout. */
	ASSERT_EQ(0, load(self->dev, self->dev, SECTORS / 2,
			  "2 request_timeout 30"));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(SECTORS / 2, dev_sectors(self->mapper));
	EXPECT_TRUE(pollpri(self->ch));
	EXPECT_EQ(SECTORS / 2, info_num(self->ch, DM_USER_ATTR_SIZE));
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_RELOADS));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_NE(NULL, strstr(out, "request_timeout=30")) TH_LOG("%s", out);
	ASSERT_EQ(0, serve_write(self->ch, self->mapper, self->buf,
				 self->data, 8, 8192, 3));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out), "dmsetup table %s",
				 self->dev));
	EXPECT_NE(NULL, strstr(out, "4096 user 0 4096")) TH_LOG("%s", out);
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_WRITE_ERRORS));
}

/*
 * A noflush swap with one write read by the daemon and one still queued:
 * the suspend waits for the first's answer, the second comes back through
 * the new table under a new seq, and both complete.
 */
TEST_F(reload, requests_in_flight_across_the_swap)
{
	struct dmu_io w1, w2;
	struct dm_user_message r1, r2;
	struct bg_cmd swap = { 0 };
	char *b2 = (char *)self->buf + 65536;
	int fd, waited;

	fd = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, fd);
	dmu_fill(self->buf, 4096, 10);
	dmu_fill(b2, 4096, 11);
	w1 = (struct dmu_io){ .fd = fd, .kind = DMU_PWRITE,
			      .buf = self->buf, .len = 4096, .off = 0 };
	w2 = (struct dmu_io){ .fd = fd, .kind = DMU_PWRITE, .buf = b2,
			      .len = 4096, .off = 4096 };
	ASSERT_EQ(0, dmu_io_start(&w1));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &r1, self->data, 1 << 20,
				  WAIT_MS));
	ASSERT_EQ(0, dmu_io_start(&w2));
	for (waited = 0; info_num(self->ch, DM_USER_ATTR_QUEUED) != 1 &&
	     waited < WAIT_MS; waited += 10)
		usleep(10000);
	ASSERT_EQ(1, info_num(self->ch, DM_USER_ATTR_QUEUED));

	ASSERT_EQ(0, load(self->dev, self->dev, 2 * SECTORS,
			  "2 request_timeout 60"));
	snprintf(swap.cmd, sizeof(swap.cmd),
		 "dmsetup suspend --noflush %s && dmsetup resume %s",
		 self->dev, self->dev);
	ASSERT_EQ(0, pthread_create(&swap.thread, NULL, bg_thread, &swap));
	/*
	 * The suspend gives the queued request back to device-mapper (once
	 * dmsetup gets there, which a debug kernel takes its time over),
	 * and waits for the one the daemon holds: nothing is left to read.
	 */
	for (waited = 0; info_num(self->ch, DM_USER_ATTR_QUEUED) &&
	     waited < WAIT_MS; waited += 10)
		usleep(10000);
	usleep(200000);
	EXPECT_EQ(0, __atomic_load_n(&swap.done, __ATOMIC_ACQUIRE));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_QUEUED));
	EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(self->ch, 0));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &r1, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, pthread_join(swap.thread, NULL));
	EXPECT_EQ(0, swap.ret);
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_RELOADS));

	ASSERT_EQ(0, dmu_read_msg(self->ch, &r2, self->data, 1 << 20,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, r2.type);
	EXPECT_EQ(8, r2.sector);
	EXPECT_EQ(0, memcmp(self->data, b2, 4096));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &r2, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&w1, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&w2, WAIT_MS));
	EXPECT_EQ(4096, w1.ret);
	EXPECT_EQ(4096, w2.ret);
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_WRITE_REQUESTS));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_WRITE_ERRORS));
	close(fd);
}

/*
 * Lines that would change what the node or the daemon relies on are
 * refused at load, and so are names used twice; the live line serves on.
 */
TEST_F(reload, refusals)
{
	char other[80], table[256];

	ASSERT_EQ(0, dmu_kmsg_mark());
	EXPECT_NE(0, load(self->dev, self->dev, SECTORS, "2 block_size 4096"));
	EXPECT_TRUE(dmu_kmsg_has("A reload cannot change block_size"));
	ASSERT_EQ(0, dmu_kmsg_mark());
	EXPECT_NE(0, load(self->dev, self->dev, SECTORS, "2 mode 0666"));
	EXPECT_TRUE(dmu_kmsg_has("A reload cannot change uid, gid or mode"));
	ASSERT_EQ(0, dmu_kmsg_mark());
	EXPECT_NE(0, load(self->dev, self->dev, SECTORS, "2 uid 1"));
	EXPECT_TRUE(dmu_kmsg_has("A reload cannot change uid, gid or mode"));
	/* Twice in one table. */
	ASSERT_EQ(0, dmu_kmsg_mark());
	EXPECT_NE(0, dmu_run("dmsetup load %s --table '0 %d user 0 %d %s\n%d %d user %d %d %s' 2>&1",
			     self->dev, SECTORS, SECTORS, self->dev, SECTORS,
			     SECTORS, SECTORS, SECTORS, self->dev));
	EXPECT_TRUE(dmu_kmsg_has("Name already in use by another user target"));
	/* In another device. */
	ASSERT_EQ(0, dmu_kmsg_mark());
	snprintf(other, sizeof(other), "%s_other", self->dev);
	snprintf(table, sizeof(table), "0 %d user 0 %d %s", SECTORS, SECTORS,
		 self->dev);
	EXPECT_NE(0, dmu_create(other, table));
	EXPECT_TRUE(dmu_kmsg_has("Name already in use by another user target"));
	dmu_remove(other);

	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_RELOADS));
	ASSERT_EQ(0, serve_write(self->ch, self->mapper, self->buf,
				 self->data, 0, 4096, 4));
}

/* A ring sees the reload in its head's flags, until GET_INFO. */
TEST_F(reload, ring_sees_the_reload)
{
	struct ring r;

	ASSERT_EQ(0, ring_open(&r, self->chan, 0));
	EXPECT_EQ(0, r.h->flags & DM_USER_RING_RELOADED);
	ASSERT_EQ(0, load(self->dev, self->dev, 2 * SECTORS,
			  "2 request_timeout 60"));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(DM_USER_RING_RELOADED,
		  __atomic_load_n(&r.h->flags, __ATOMIC_ACQUIRE) &
		  DM_USER_RING_RELOADED);
	/* Another channel's GET_INFO clears only its own. */
	EXPECT_EQ(2 * SECTORS, info_num(self->ch, DM_USER_ATTR_SIZE));
	EXPECT_EQ(DM_USER_RING_RELOADED,
		  r.h->flags & DM_USER_RING_RELOADED);
	EXPECT_EQ(2 * SECTORS, info_num(r.fd, DM_USER_ATTR_SIZE));
	EXPECT_EQ(0, r.h->flags & DM_USER_RING_RELOADED);
	ring_close(&r);
}

/*
 * Over a backing device: the claims stay, cut at a shorter length, with
 * the new sectors of a longer one claimed unless the line has passthrough;
 * notify_writes turns notifications on; a line without a backing device
 * takes the claims and remaps away, one with it brings them back.
 */
TEST_F(reload, claims_and_notifications_fitted)
{
	char ram[128], features[256];
	struct ctl c;

	if (dmu_ram_disk(ram, sizeof(ram)))
		SKIP(return, "no RAM disk");
	snprintf(features, sizeof(features), "4 backing %s %d passthrough",
		 ram, RAM_START);
	ASSERT_EQ(0, load(self->dev, self->dev, SECTORS, features));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	ASSERT_EQ(1, claims_cmd(self->ch, DM_USER_CMD_CLAIM, 0, 8));
	ASSERT_EQ(2, claims_cmd(self->ch, DM_USER_CMD_CLAIM, SECTORS - 8, 8));

	/*
	 * Longer, without passthrough: the new sectors are claimed, and
	 * join the range that ended where they start: [0, 8) and
	 * [SECTORS - 8, 2 * SECTORS).
	 */
	snprintf(features, sizeof(features), "3 backing %s %d", ram,
		 RAM_START);
	ASSERT_EQ(0, load(self->dev, self->dev, 2 * SECTORS, features));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	/* Releasing the new sectors leaves [SECTORS - 8, SECTORS). */
	EXPECT_EQ(2, claims_cmd(self->ch, DM_USER_CMD_RELEASE, SECTORS,
				SECTORS));
	EXPECT_EQ(1, claims_cmd(self->ch, DM_USER_CMD_RELEASE, SECTORS - 8,
				8));
	EXPECT_EQ(2, claims_cmd(self->ch, DM_USER_CMD_CLAIM, SECTORS + 8, 8));
	EXPECT_EQ(0, get_notify(self->ch));

	/* Shorter, with notify_writes: cut, notifications on. */
	snprintf(features, sizeof(features),
		 "5 backing %s %d passthrough notify_writes", ram, RAM_START);
	ASSERT_EQ(0, load(self->dev, self->dev, SECTORS, features));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	EXPECT_EQ(1, get_notify(self->ch));
	EXPECT_EQ(-ERANGE, claims_cmd(self->ch, DM_USER_CMD_CLAIM, SECTORS,
				      8));

	/* No backing device: no claims, no remap. */
	ASSERT_EQ(0, load(self->dev, self->dev, SECTORS, "2 request_timeout 60"));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(UINT64_MAX, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	EXPECT_EQ(-EOPNOTSUPP, claims_cmd(self->ch, DM_USER_CMD_CLAIM, 0, 8));
	ASSERT_EQ(0, negotiate(self->ch, DM_USER_EXT_REMAP, -1, &c));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_EXTENSIONS));
	/* The daemon serves everything again. */
	ASSERT_EQ(0, serve_write(self->ch, self->mapper, self->buf,
				 self->data, 64, 4096, 5));

	/* Back over it: everything claimed, as a first table would. */
	snprintf(features, sizeof(features), "3 backing %s %d", ram,
		 RAM_START);
	ASSERT_EQ(0, load(self->dev, self->dev, SECTORS, features));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	EXPECT_EQ(1, claims_cmd(self->ch, DM_USER_CMD_RELEASE, 0, 8));
	EXPECT_EQ(5, info_num(self->ch, DM_USER_ATTR_RELOADS));
}

/* Reads 4 KiB of @mapper at @sector into @buf: 0, or -1. */
static int read_at(const char *mapper, void *buf, uint64_t sector)
{
	int fd = open(mapper, O_RDONLY | O_DIRECT);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, buf, 4096, sector * 512);
	close(fd);
	return n == 4096 ? 0 : -1;
}

/*
 * Mapped ranges stay across a reload, cut where they or their destination
 * pass a shorter table's end, and the I/O of what was cut away goes to its
 * own sector again.
 */
TEST_F(reload, mapped_ranges_fitted)
{
	char ram[128], features[256];
	char *want = self->data;
	int fd;

	if (dmu_ram_disk(ram, sizeof(ram)))
		SKIP(return, "no RAM disk");
	/* The RAM disk's 1 MiB from RAM_START, then the mapper's view. */
	dmu_fill(want, 1 << 20, 60);
	fd = open(ram, O_RDWR | O_DIRECT);
	ASSERT_LE(0, fd);
	ASSERT_EQ(1 << 20, pwrite(fd, want, 1 << 20, RAM_START * 512));
	ASSERT_EQ(1 << 20, pwrite(fd, want, 1 << 20,
				  (RAM_START + SECTORS - 1024) * 512));
	close(fd);
	snprintf(features, sizeof(features), "4 backing %s %d passthrough",
		 ram, RAM_START);
	ASSERT_EQ(0, load(self->dev, self->dev, 2 * SECTORS, features));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	/* Destination past the shorter end; one across it; a source across. */
	ASSERT_EQ(1, range_cmd(self->ch, DM_USER_CMD_MAP, 0, 8, SECTORS + 8,
			       DM_USER_CLAIM_READS));
	ASSERT_EQ(2, range_cmd(self->ch, DM_USER_CMD_MAP, 16, 16, SECTORS - 8,
			       DM_USER_CLAIM_READS));
	ASSERT_EQ(3, range_cmd(self->ch, DM_USER_CMD_MAP, SECTORS - 8, 16, 0,
			       DM_USER_CLAIM_READS));
	/* Sector 16 reads SECTORS - 8: 1016 sectors into the second copy. */
	ASSERT_EQ(0, read_at(self->mapper, self->buf, 16));
	EXPECT_EQ(0, memcmp(self->buf, want + 1016 * 512, 4096));

	snprintf(features, sizeof(features), "4 backing %s %d passthrough",
		 ram, RAM_START);
	ASSERT_EQ(0, load(self->dev, self->dev, SECTORS, features));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_MAP_RANGES));
	/* [0, 8) lost its mapping: its own sector. */
	ASSERT_EQ(0, read_at(self->mapper, self->buf, 0));
	EXPECT_EQ(0, memcmp(self->buf, want, 4096));
	/* [16, 24) kept it; [24, 32) went past the end there and lost it. */
	ASSERT_EQ(0, read_at(self->mapper, self->buf, 16));
	EXPECT_EQ(0, memcmp(self->buf, want + 1016 * 512, 4096));
	ASSERT_EQ(0, read_at(self->mapper, self->buf, 24));
	EXPECT_EQ(0, memcmp(self->buf, want + 24 * 512, 4096));
	/* [SECTORS - 8, SECTORS) kept its own: to 0. */
	ASSERT_EQ(0, read_at(self->mapper, self->buf, SECTORS - 8));
	EXPECT_EQ(0, memcmp(self->buf, want, 4096));
	EXPECT_EQ(0, range_cmd(self->ch, DM_USER_CMD_UNMAP, 0, SECTORS, 0, 0));
	ASSERT_EQ(0, read_at(self->mapper, self->buf, 16));
	EXPECT_EQ(0, memcmp(self->buf, want + 16 * 512, 4096));
}

TEST_HARNESS_MAIN
