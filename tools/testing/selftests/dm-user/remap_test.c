// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user backing device and remap answers (DM_USER_EXT_REMAP): the
 * backing feature's table round trip, deps and refusals; the extension
 * granted only where there is a backing device; reads and writes remapped
 * to the same and to other sectors, on read()/write() channels and on a
 * ring, checked byte for byte on the backing device; every operation
 * remapped onto a second dm-user device whose channel the test also plays,
 * so the request that reaches the backing device is seen whole; errors of
 * the backing device passed up and counted; and bad remap answers
 * refused, counted, with the request left to a good answer.
 *
 * The backing device is a RAM disk: brd's /dev/ram0, or a loop device
 * over a file in RAM where the kernel has no brd (dmu_ram_disk()).
 */
#include <libaio.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <linux/fs.h>

#include "dmu_test.h"
#include "dmu_ring.h"
#include <kselftest_harness.h>

#define DEV_SECTORS	8192		/* 4 MiB */
#define RAM_START	2048		/* the target's sector 0 on the RAM disk */

/* The RAM disk's path, "" until ram_ready() found one. */
static char ram[128];

static int ram_ready(void)
{
	return dmu_ram_disk(ram, sizeof(ram));
}

/* In a test of a fixture whose setup skipped: the harness runs it anyway. */
#define NEED_RAM()							\
	do {								\
		if (!ram[0])						\
			SKIP(return, "no RAM disk");			\
	} while (0)

/* Writes or reads @len bytes of the RAM disk at @sector, bypassing caches. */
static int ram_io(bool write, void *buf, size_t len, uint64_t sector)
{
	int fd = open(ram, O_RDWR | O_DIRECT);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write ? pwrite(fd, buf, len, sector * 512) :
		    pread(fd, buf, len, sector * 512);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

/* A number that follows @key in `dmsetup status`, or -1. */
static long status_num(const char *dev, const char *key)
{
	char out[1024], *p;
	char pat[64];

	if (dmu_capture(out, sizeof(out), "dmsetup status %s", dev))
		return -1;
	snprintf(pat, sizeof(pat), " %s ", key);
	p = strstr(out, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

/* A string attribute of a GET_INFO reply, or NULL. */
static const char *ctl_str(const struct ctl *c, uint16_t tag)
{
	uint32_t off = 0;

	while (off + sizeof(struct dm_user_attr) <= c->hdr.out_len) {
		const struct dm_user_attr *a = (const void *)(c->hdr.data + off);

		if (a->tag == tag && a->type == DM_USER_TYPE_STRING)
			return (const char *)a->value;
		off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	}
	return NULL;
}

/* Answers @req with a remap to @sector on a read()/write() channel. */
static ssize_t answer_remap(int ch, const struct dm_user_message *req,
			    uint64_t sector)
{
	struct dm_user_message ans = *req;

	ans.type = DM_USER_RESP_REMAP;
	ans.sector = sector;
	return write(ch, &ans, sizeof(ans));
}

/* A device a test makes besides its fixture's. */
struct side_dev {
	char name[80];
	int ch;		/* a channel, O_RDWR */
	int bdev;	/* the mapped device, O_RDWR | O_DIRECT */
};

/*
 * Creates <@base>_<@suffix>, DEV_SECTORS long, with the feature words
 * @fmt gives (their count first, or "" for none), and opens a channel
 * and the mapped device. 0, or -1 with what is open left in @d.
 */
static int __attribute__((format(printf, 4, 5)))
side_create(struct side_dev *d, const char *base, const char *suffix,
	    const char *fmt, ...)
{
	char table[512], features[160], path[160];
	va_list ap;

	d->ch = d->bdev = -1;
	snprintf(d->name, sizeof(d->name), "%s_%s", base, suffix);
	va_start(ap, fmt);
	vsnprintf(features, sizeof(features), fmt, ap);
	va_end(ap);
	snprintf(table, sizeof(table), "0 %d user 0 %d %s %s", DEV_SECTORS,
		 DEV_SECTORS, d->name, features);
	if (dmu_create(d->name, table))
		return -1;
	snprintf(path, sizeof(path), "/dev/dm-user/%s", d->name);
	d->ch = open(path, O_RDWR);
	snprintf(path, sizeof(path), "/dev/mapper/%s", d->name);
	d->bdev = open(path, O_RDWR | O_DIRECT);
	return d->ch >= 0 && d->bdev >= 0 ? 0 : -1;
}

static int side_remove(struct side_dev *d)
{
	if (d->bdev >= 0)
		close(d->bdev);
	if (d->ch >= 0)
		close(d->ch);
	d->ch = d->bdev = -1;
	return dmu_remove(d->name);
}

FIXTURE(dev) {
	char dev[64];
	char mapper[128];
	char chan[128];
	int ch;
	int bdev;
	void *buf;
	void *data;
	void *ram;
};

FIXTURE_SETUP(dev)
{
	char table[512];
	struct ctl c;

	self->ch = self->bdev = -1;
	if (ram_ready())
		SKIP(return, "no RAM disk");
	snprintf(self->dev, sizeof(self->dev), "dmu_remap_%d", getpid());
	snprintf(self->mapper, sizeof(self->mapper), "/dev/mapper/%s",
		 self->dev);
	snprintf(self->chan, sizeof(self->chan), "/dev/dm-user/%s", self->dev);
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 5 backing %s %d request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, self->dev, ram, RAM_START);
	ASSERT_EQ(0, dmu_create(self->dev, table));
	self->ch = open(self->chan, O_RDWR);
	ASSERT_LE(0, self->ch);
	ASSERT_EQ(0, negotiate(self->ch, DM_USER_EXT_REMAP, -1, &c));
	ASSERT_EQ(DM_USER_EXT_REMAP, ctl_num(&c, DM_USER_ATTR_EXTENSIONS));
	self->bdev = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bdev);
	self->buf = dmu_alloc(1 << 20);
	self->data = dmu_alloc(1 << 20);
	self->ram = dmu_alloc(1 << 20);
	ASSERT_NE(NULL, self->buf);
	ASSERT_NE(NULL, self->data);
	ASSERT_NE(NULL, self->ram);
}

FIXTURE_TEARDOWN(dev)
{
	if (self->bdev >= 0)
		close(self->bdev);
	if (self->ch >= 0)
		close(self->ch);
	if (self->dev[0])
		dmu_remove(self->dev);
	free(self->buf);
	free(self->data);
	free(self->ram);
}

/* The table reads back with the device as major:minor, and loads again. */
TEST_F(dev, table_round_trip_deps_and_info)
{
	NEED_RAM();
	char out[512], want[512], table[512], dev2[80];
	struct stat st;
	struct ctl c;

	ASSERT_EQ(0, stat(ram, &st));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out), "dmsetup table %s",
				 self->dev));
	snprintf(want, sizeof(want),
		 "0 %d user 0 %d %s 5 backing %u:%u %d request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, self->dev, major(st.st_rdev),
		 minor(st.st_rdev), RAM_START);
	EXPECT_STREQ(want, out);

	/* dmsetup deps: the RAM disk, as (major, minor). */
	ASSERT_EQ(0, dmu_capture(out, sizeof(out), "dmsetup deps %s",
				 self->dev));
	snprintf(want, sizeof(want), "(%u, %u)", major(st.st_rdev),
		 minor(st.st_rdev));
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "1 dependencies")) TH_LOG("%s", out);

	/* What dmsetup table printed loads as it is, under another name. */
	snprintf(dev2, sizeof(dev2), "%s_2", self->dev);
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 5 backing %u:%u %d request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, dev2, major(st.st_rdev),
		 minor(st.st_rdev), RAM_START);
	ASSERT_EQ(0, dmu_create(dev2, table));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out), "dmsetup table %s", dev2));
	EXPECT_STREQ(table, out);
	EXPECT_EQ(0, dmu_remove(dev2));

	ctl_init(&c, DM_USER_CMD_GET_INFO);
	ASSERT_EQ(0, ioctl(self->ch, DM_USER_IOCTL_CTL, &c));
	EXPECT_EQ(DM_USER_CTL_VERSION, c.hdr.version);
	snprintf(want, sizeof(want), "%u:%u", major(st.st_rdev),
		 minor(st.st_rdev));
	ASSERT_NE(NULL, ctl_str(&c, DM_USER_ATTR_BACKING));
	EXPECT_STREQ(want, ctl_str(&c, DM_USER_ATTR_BACKING));
	EXPECT_EQ(RAM_START, ctl_num(&c, DM_USER_ATTR_BACKING_OFFSET));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_REMAPPED));
}

/*
 * Tables the backing feature refuses, each with its reason: a dmsetup
 * create each, seconds apiece under a debug kernel.
 */
TEST_F_TIMEOUT(dev, bad_tables, 180)
{
	NEED_RAM();
	static const struct {
		const char *features;
		const char *why;
	} bad[] = {
		{ "1 backing", "backing needs a device and an offset" },
		{ "2 backing %1$s", "backing needs a device and an offset" },
		{ "3 backing %1$s 1x", "Invalid backing device offset" },
		{ "3 backing %1$s -1", "Invalid backing device offset" },
		{ "3 backing /dev/dmu_no_such_disk 0",
		  "Backing device lookup failed" },
		{ "6 backing %1$s 0 backing %1$s 0",
		  "Feature given more than once" },
		/* 16 MiB of RAM disk: the range must fit it. */
		{ "3 backing %1$s 30000", "too small for target" },
		{ "5 block_size 4096 backing %1$s 1",
		  "Backing device offset must be a multiple of block_size" },
		{ "5 backing %1$s 0 max_claims 0", "Invalid max_claims" },
		{ "5 backing %1$s 0 max_claims 65537", "Invalid max_claims" },
		{ "2 max_claims 4",
		  "passthrough, max_claims and notify_writes need a backing device" },
		{ "1 notify_writes",
		  "passthrough, max_claims and notify_writes need a backing device" },
	};
	char name[80], node[128], table[256], features[128];
	unsigned int i;

	snprintf(name, sizeof(name), "%s_bad", self->dev);
	snprintf(node, sizeof(node), "/dev/dm-user/%s", name);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(features, sizeof(features), bad[i].features, ram);
		snprintf(table, sizeof(table), "0 %d user 0 %d %s %s",
			 DEV_SECTORS, DEV_SECTORS, name, features);
		EXPECT_NE(0, dmu_create(name, table)) TH_LOG("%s", table);
		EXPECT_TRUE(dmu_kmsg_has(bad[i].why)) TH_LOG("%s", bad[i].why);
		EXPECT_NE(0, access(node, F_OK));
		dmu_remove(name);
	}
	/*
	 * Every refusal let go of the device it had taken: dm core names a
	 * table destroyed with a device still held.
	 */
	EXPECT_FALSE(dmu_kmsg_has("dm_put_device call missing"));
}

/* A backing device with 4 KiB blocks needs a block_size of 4 KiB. */
TEST_F(dev, block_size_below_the_backing_device)
{
	NEED_RAM();
	char lower[80], upper[80], table[256];

	snprintf(lower, sizeof(lower), "%s_4k", self->dev);
	snprintf(upper, sizeof(upper), "%s_up", self->dev);
	snprintf(table, sizeof(table), "0 %d user 0 %d %s 2 block_size 4096",
		 DEV_SECTORS, DEV_SECTORS, lower);
	ASSERT_EQ(0, dmu_create(lower, table));
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 3 backing /dev/mapper/%s 0",
		 DEV_SECTORS, DEV_SECTORS, upper, lower);
	EXPECT_NE(0, dmu_create(upper, table));
	EXPECT_TRUE(dmu_kmsg_has("block_size below the backing device"));
	dmu_remove(upper);
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 5 block_size 4096 backing /dev/mapper/%s 0",
		 DEV_SECTORS, DEV_SECTORS, upper, lower);
	EXPECT_EQ(0, dmu_create(upper, table));
	EXPECT_EQ(0, dmu_remove(upper));
	EXPECT_EQ(0, dmu_remove(lower));
}

/* Only a target with a backing device grants the extension. */
TEST_F(dev, remap_needs_a_backing_device)
{
	NEED_RAM();
	struct dm_user_message req;
	struct side_dev d;
	struct dmu_io io;
	struct ctl c;
	int ch;

	ASSERT_EQ(0, side_create(&d, self->dev, "nb", "2 request_timeout 60"));
	ch = d.ch;
	ASSERT_EQ(0, negotiate(ch, DM_USER_EXT_REMAP | DM_USER_EXT_READ_BATCH,
			       -1, &c));
	EXPECT_EQ(DM_USER_EXT_READ_BATCH,
		  ctl_num(&c, DM_USER_ATTR_EXTENSIONS));
	ctl_init(&c, DM_USER_CMD_GET_INFO);
	ASSERT_EQ(0, ioctl(ch, DM_USER_IOCTL_CTL, &c));
	EXPECT_EQ(NULL, ctl_str(&c, DM_USER_ATTR_BACKING));
	EXPECT_EQ(UINT64_MAX, ctl_num(&c, DM_USER_ATTR_BACKING_OFFSET));

	/* A remap answer there is refused; the request waits for another. */
	io = (struct dmu_io){ .fd = d.bdev, .kind = DMU_PREAD,
			      .buf = self->buf, .len = 4096, .off = 0 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch, &req, NULL, 0, WAIT_MS));
	errno = 0;
	EXPECT_EQ(-1, answer_remap(ch, &req, req.sector));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(1, info_num(ch, DM_USER_ATTR_BAD_ANSWERS));
	dmu_fill(self->data, 4096, 5);
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(ch, &req, DM_USER_RESP_SUCCESS,
					     self->data, 4096));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->data, 4096));
	EXPECT_EQ(0, side_remove(&d));
}

/*
 * Starts @io, takes its request on @ch into @req (a write's data into
 * @data, 1 MiB at most), answers it with a remap to @to and waits for @io
 * to end. 0, or -errno of the step that failed.
 */
static int remap_one(int ch, struct dmu_io *io, struct dm_user_message *req,
		     void *data, uint64_t to)
{
	int r = dmu_io_start(io);

	if (r)
		return -r;
	r = dmu_read_msg(ch, req, data, 1 << 20, WAIT_MS);
	if (r)
		return r;
	if (answer_remap(ch, req, to) != DMU_HDR)
		return -errno;
	return dmu_io_wait(io, WAIT_MS);
}

/*
 * A read and a write remapped to their own sectors, then to others: the
 * data is the RAM disk's, and what was written lands there, at the
 * target's range on it.
 */
TEST_F(dev, read_and_write_remapped)
{
	NEED_RAM();
	struct dm_user_message req;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 8192, .off = 16 * 512 };

	dmu_fill(self->ram, 1 << 20, 11);
	ASSERT_EQ(0, ram_io(true, self->ram, 1 << 20, RAM_START));

	ASSERT_EQ(0, remap_one(self->ch, &io, &req, NULL, 16));
	EXPECT_EQ(DM_USER_REQ_MAP_READ, req.type);
	EXPECT_EQ(16, req.sector);
	EXPECT_EQ(8192, req.len);
	EXPECT_EQ(8192, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, (char *)self->ram + 16 * 512, 8192));

	/* Sector 0 of the target read from its sector 100. */
	io.off = 0;
	io.len = 4096;
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));
	EXPECT_EQ(0, req.sector);
	/* An answer's @len may be 0 as well as the request's. */
	req.len = 0;
	ASSERT_EQ(DMU_HDR, answer_remap(self->ch, &req, 100));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, (char *)self->ram + 100 * 512, 4096));

	/* A write: the daemon sees its data, the RAM disk gets it. */
	dmu_fill(self->buf, 65536, 12);
	io = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE,
			      .buf = self->buf, .len = 65536, .off = 64 * 512 };
	ASSERT_EQ(0, remap_one(self->ch, &io, &req, self->data, 64));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, req.type);
	EXPECT_EQ(64, req.sector);
	EXPECT_EQ(0, memcmp(self->data, self->buf, 65536));
	EXPECT_EQ(65536, io.ret);
	ASSERT_EQ(0, ram_io(false, self->ram, 65536, RAM_START + 64));
	EXPECT_EQ(0, memcmp(self->ram, self->buf, 65536));

	/* Written elsewhere: the last 4 KiB of the target's range. */
	dmu_fill(self->buf, 4096, 13);
	io.len = 4096;
	io.off = 0;
	ASSERT_EQ(0, remap_one(self->ch, &io, &req, self->data,
			       DEV_SECTORS - 8));
	EXPECT_EQ(4096, io.ret);
	ASSERT_EQ(0, ram_io(false, self->ram, 4096,
			    RAM_START + DEV_SECTORS - 8));
	EXPECT_EQ(0, memcmp(self->ram, self->buf, 4096));

	/* A flush, passed down. */
	io = (struct dmu_io){ .fd = self->bdev, .kind = DMU_FSYNC };
	ASSERT_EQ(0, remap_one(self->ch, &io, &req, NULL, 0));
	EXPECT_EQ(DM_USER_REQ_MAP_FLUSH, req.type);
	EXPECT_EQ(0, io.ret);

	EXPECT_EQ(5, status_num(self->dev, "remapped"));
	EXPECT_EQ(5, info_num(self->ch, DM_USER_ATTR_REMAPPED));
	EXPECT_EQ(2, status_num(self->dev, "read"));
	EXPECT_EQ(2, status_num(self->dev, "write"));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_BAD_ANSWERS));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_READ_ERRORS));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_WRITE_ERRORS));
}

/*
 * Remap answers the kernel refuses: each is counted, and the request
 * stays for an answer that is taken.
 */
TEST_F(dev, bad_remap_answers)
{
	NEED_RAM();
	struct dm_user_message req, ans;
	char two[2 * sizeof(ans)];
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 4096,
			     .off = (DEV_SECTORS - 8) * 512 };
	int ch2;

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));

	/* Past the end, or ending past it. */
	errno = 0;
	EXPECT_EQ(-1, answer_remap(self->ch, &req, DEV_SECTORS));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, answer_remap(self->ch, &req, DEV_SECTORS - 7));
	EXPECT_EQ(-1, answer_remap(self->ch, &req, UINT64_MAX - 3));
	/* A length that is neither the request's nor 0. */
	ans = req;
	ans.type = DM_USER_RESP_REMAP;
	ans.len = 512;
	EXPECT_EQ(-1, write(self->ch, &ans, sizeof(ans)));
	/* Data after it. */
	ans.len = req.len;
	memcpy(two, &ans, sizeof(ans));
	memcpy(two + sizeof(ans), &ans, sizeof(ans));
	EXPECT_EQ(-1, write(self->ch, two, sizeof(two)));
	/* On another channel than the one that read it. */
	ch2 = open(self->chan, O_RDWR);
	ASSERT_LE(0, ch2);
	EXPECT_EQ(-1, answer_remap(ch2, &req, req.sector));
	close(ch2);
	EXPECT_EQ(6, info_num(self->ch, DM_USER_ATTR_BAD_ANSWERS));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_REMAPPED));

	/* The request is still there: this answer is taken. */
	dmu_fill(self->data, 4096, 3);
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(self->ch, &req,
					     DM_USER_RESP_SUCCESS, self->data,
					     4096));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->data, 4096));

	/*
	 * A channel of this target that did not negotiate the extension
	 * reads a request: its remap is refused, its success taken.
	 */
	ch2 = open(self->chan, O_RDWR);
	ASSERT_LE(0, ch2);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch2, &req, NULL, 0, WAIT_MS));
	errno = 0;
	EXPECT_EQ(-1, answer_remap(ch2, &req, req.sector));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(7, info_num(ch2, DM_USER_ATTR_BAD_ANSWERS));
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(ch2, &req, DM_USER_RESP_SUCCESS,
					     self->data, 4096));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	close(ch2);
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_REMAPPED));
}

/*
 * A noflush suspend waits for a request the daemon holds; answered with a
 * remap meanwhile, it reaches the RAM disk and the suspend ends.
 */
TEST_F(dev, remap_during_a_noflush_suspend)
{
	NEED_RAM();
	struct dm_user_message req;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 8192, .off = 40 * 512 };
	pid_t pid;
	int st;

	dmu_fill(self->buf, 8192, 70);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, self->data, 1 << 20,
				  WAIT_MS));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(dmu_run("timeout 20 dmsetup suspend --noflush %s",
				     self->dev));
	/* It waits for the request this channel holds. */
	usleep(300000);
	EXPECT_EQ(0, waitpid(pid, &st, WNOHANG));
	ASSERT_EQ(DMU_HDR, answer_remap(self->ch, &req, req.sector));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	EXPECT_TRUE(WIFEXITED(st) && !WEXITSTATUS(st));
	ASSERT_EQ(0, dmu_run("dmsetup resume %s", self->dev));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(8192, io.ret);
	ASSERT_EQ(0, ram_io(false, self->ram, 8192, RAM_START + 40));
	EXPECT_EQ(0, memcmp(self->ram, self->buf, 8192));
}

/*
 * The queue limits are the backing device's, in the daemon's blocks; with
 * no_flush a flush goes to the backing device without the daemon.
 */
TEST_F(dev, limits_and_flushes_over_a_backing_device)
{
	NEED_RAM();
	char lower[80], upper[80], path[128], table[256], v[64];
	struct dm_user_message low;
	struct dmu_io io;
	int low_ch, up_ch, bdev;
	struct ctl c;

	snprintf(lower, sizeof(lower), "%s_lo", self->dev);
	snprintf(upper, sizeof(upper), "%s_hi", self->dev);
	snprintf(table, sizeof(table), "0 %d user 0 %d %s 2 request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, lower);
	ASSERT_EQ(0, dmu_create(lower, table));
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 5 block_size 4096 backing /dev/mapper/%s 0",
		 DEV_SECTORS, DEV_SECTORS, upper, lower);
	ASSERT_EQ(0, dmu_create(upper, table));
	snprintf(path, sizeof(path), "/dev/mapper/%s", upper);
	ASSERT_EQ(0, dmu_queue_attr(path, "logical_block_size", v, sizeof(v)));
	EXPECT_STREQ("4096", v);
	ASSERT_EQ(0, dmu_queue_attr(path, "discard_granularity", v, sizeof(v)));
	EXPECT_STREQ("4096", v);
	ASSERT_EQ(0, dmu_queue_attr(path, "discard_max_bytes", v, sizeof(v)));
	EXPECT_NE(0, strtoull(v, NULL, 10));
	EXPECT_EQ(0, strtoull(v, NULL, 10) % 4096) TH_LOG("%s", v);
	ASSERT_EQ(0, dmu_queue_attr(path, "write_zeroes_max_bytes", v,
				    sizeof(v)));
	EXPECT_NE(0, strtoull(v, NULL, 10));
	EXPECT_EQ(0, strtoull(v, NULL, 10) % 4096) TH_LOG("%s", v);
	EXPECT_EQ(0, dmu_remove(upper));

	/* no_discard and no_flush take those away from the daemon. */
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 5 no_discard no_flush backing /dev/mapper/%s 0",
		 DEV_SECTORS, DEV_SECTORS, upper, lower);
	ASSERT_EQ(0, dmu_create(upper, table));
	ASSERT_EQ(0, dmu_queue_attr(path, "discard_max_bytes", v, sizeof(v)));
	EXPECT_STREQ("0", v);
	snprintf(path, sizeof(path), "/dev/dm-user/%s", lower);
	low_ch = open(path, O_RDWR);
	ASSERT_LE(0, low_ch);
	snprintf(path, sizeof(path), "/dev/dm-user/%s", upper);
	up_ch = open(path, O_RDWR);
	ASSERT_LE(0, up_ch);
	ASSERT_EQ(0, negotiate(up_ch, DM_USER_EXT_REMAP, -1, &c));
	snprintf(path, sizeof(path), "/dev/mapper/%s", upper);
	bdev = open(path, O_RDWR | O_DIRECT);
	ASSERT_LE(0, bdev);
	/* The backing device has a cache: fsync reaches it, not the daemon. */
	io = (struct dmu_io){ .fd = bdev, .kind = DMU_FSYNC };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(low_ch, &low, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_FLUSH, low.type);
	ASSERT_EQ(DMU_HDR, dmu_answer(low_ch, &low, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(0, io.ret);
	EXPECT_EQ(0, info_num(up_ch, DM_USER_ATTR_QUEUED));
	EXPECT_EQ(0, info_num(up_ch, DM_USER_ATTR_FLUSH_REQUESTS));
	close(bdev);
	close(up_ch);
	close(low_ch);
	EXPECT_EQ(0, dmu_remove(upper));
	EXPECT_EQ(0, dmu_remove(lower));
}

/* With block_size 4096, a remap sector must be a multiple of 8. */
TEST_F(dev, remap_sector_aligned_to_block_size)
{
	NEED_RAM();
	struct dm_user_message req;
	struct side_dev d;
	struct dmu_io io;
	struct ctl c;
	int ch;

	ASSERT_EQ(0, side_create(&d, self->dev, "4k",
				 "7 block_size 4096 backing %s %d request_timeout 60",
				 ram, RAM_START));
	ch = d.ch;
	ASSERT_EQ(0, negotiate(ch, DM_USER_EXT_REMAP, -1, &c));

	dmu_fill(self->ram, 8192, 21);
	ASSERT_EQ(0, ram_io(true, self->ram, 8192, RAM_START + 8));
	io = (struct dmu_io){ .fd = d.bdev, .kind = DMU_PREAD,
			      .buf = self->buf, .len = 4096, .off = 0 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(ch, &req, NULL, 0, WAIT_MS));
	EXPECT_EQ(-1, answer_remap(ch, &req, 4));
	EXPECT_EQ(1, info_num(ch, DM_USER_ATTR_BAD_ANSWERS));
	ASSERT_EQ(DMU_HDR, answer_remap(ch, &req, 8));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->ram, 4096));
	EXPECT_EQ(0, side_remove(&d));
}

/* The same on a ring: the completion's @sector says where. */
TEST_F(dev, remap_on_a_ring)
{
	NEED_RAM();
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 8192, .off = 8 * 512 };
	struct dm_user_message *d;
	uint32_t slot;
	struct ring r;
	struct ctl c;

	dmu_fill(self->ram, 1 << 20, 31);
	ASSERT_EQ(0, ram_io(true, self->ram, 1 << 20, RAM_START));
	memset(&r, 0, sizeof(r));
	r.fd = open(self->chan, O_RDWR);
	ASSERT_LE(0, r.fd);
	ASSERT_EQ(0, negotiate(r.fd, DM_USER_EXT_RING | DM_USER_EXT_REMAP, 0,
			       &c));
	ASSERT_EQ(DM_USER_EXT_RING | DM_USER_EXT_REMAP,
		  ctl_num(&c, DM_USER_ATTR_EXTENSIONS));
	r.size = ctl_num(&c, DM_USER_ATTR_RING_SIZE);
	r.map = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd,
		     0);
	ASSERT_NE(MAP_FAILED, r.map);
	r.h = (void *)r.map;
	r.sq = (void *)(r.map + r.h->sq_offset);
	r.cq = (void *)(r.map + r.h->cq_offset);
	r.desc = (void *)(r.map + r.h->desc_offset);

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	d = &r.desc[slot];
	EXPECT_EQ(DM_USER_REQ_MAP_READ, d->type);
	EXPECT_EQ(8, d->sector);

	/* Refused: flags, past the end, reserved; the slot keeps it. */
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = d->seq, .slot = slot, .type = DM_USER_RESP_REMAP,
		.sector = 8, .flags = DM_USER_RING_CQE_ADDR });
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = d->seq, .slot = slot, .type = DM_USER_RESP_REMAP,
		.sector = DEV_SECTORS - 8 });
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = d->seq, .slot = slot, .type = DM_USER_RESP_REMAP,
		.sector = 8, .reserved = 1 });
	ASSERT_EQ(0, ring_enter(&r, 0));
	EXPECT_EQ(3, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));

	/* Taken: to sector 200. */
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = d->seq, .slot = slot, .type = DM_USER_RESP_REMAP,
		.sector = 200 });
	ASSERT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(8192, io.ret);
	EXPECT_EQ(0, memcmp(self->buf, (char *)self->ram + 200 * 512, 8192));

	/* A write remapped from the ring lands on the RAM disk. */
	dmu_fill(self->buf, 16384, 32);
	io = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE,
			      .buf = self->buf, .len = 16384, .off = 512 * 512 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	d = &r.desc[slot];
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, d->type);
	EXPECT_EQ(0, memcmp(slot_data(&r, slot), self->buf, 16384));
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = d->seq, .slot = slot, .type = DM_USER_RESP_REMAP,
		.sector = d->sector });
	ASSERT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(16384, io.ret);
	ASSERT_EQ(0, ram_io(false, self->ram, 16384, RAM_START + 512));
	EXPECT_EQ(0, memcmp(self->ram, self->buf, 16384));
	EXPECT_EQ(2, info_num(r.fd, DM_USER_ATTR_REMAPPED));
	ring_close(&r);
}

/*
 * Every operation remapped onto a second dm-user device, "lower", whose
 * channel the test plays too: the request that reaches the backing device
 * has the type, sector, length and data of the one remapped, and its
 * answer, an error included, is the remapped request's.
 */
FIXTURE(stacked) {
	char upper[64];
	char lower[80];
	int up_ch;
	int low_ch;
	int bdev;
	void *buf;
	void *data;
};

FIXTURE_SETUP(stacked)
{
	char path[128], table[256];
	struct ctl c;

	self->up_ch = self->low_ch = self->bdev = -1;
	snprintf(self->upper, sizeof(self->upper), "dmu_up_%d", getpid());
	snprintf(self->lower, sizeof(self->lower), "dmu_low_%d", getpid());
	snprintf(table, sizeof(table), "0 %d user 0 %d %s 2 request_timeout 60",
		 2 * DEV_SECTORS, 2 * DEV_SECTORS, self->lower);
	ASSERT_EQ(0, dmu_create(self->lower, table));
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 5 backing /dev/mapper/%s %d request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, self->upper, self->lower,
		 DEV_SECTORS);
	ASSERT_EQ(0, dmu_create(self->upper, table));
	snprintf(path, sizeof(path), "/dev/dm-user/%s", self->lower);
	self->low_ch = open(path, O_RDWR);
	ASSERT_LE(0, self->low_ch);
	snprintf(path, sizeof(path), "/dev/dm-user/%s", self->upper);
	self->up_ch = open(path, O_RDWR);
	ASSERT_LE(0, self->up_ch);
	ASSERT_EQ(0, negotiate(self->up_ch, DM_USER_EXT_REMAP, -1, &c));
	snprintf(path, sizeof(path), "/dev/mapper/%s", self->upper);
	self->bdev = open(path, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bdev);
	self->buf = dmu_alloc(1 << 20);
	self->data = dmu_alloc(1 << 20);
	ASSERT_NE(NULL, self->buf);
	ASSERT_NE(NULL, self->data);
}

FIXTURE_TEARDOWN(stacked)
{
	if (self->bdev >= 0)
		close(self->bdev);
	if (self->up_ch >= 0)
		close(self->up_ch);
	if (self->low_ch >= 0)
		close(self->low_ch);
	dmu_remove(self->upper);
	dmu_remove(self->lower);
	free(self->buf);
	free(self->data);
}

/*
 * Answers FLUSH requests on either channel until @io ends: 0, or -errno
 * for anything else or no end within WAIT_MS.
 */
static int serve_flushes(struct dmu_io *io, int up_ch, int low_ch)
{
	struct dm_user_message m;
	int waited, i;

	for (waited = 0; waited < WAIT_MS; waited += 10) {
		int fds[2] = { up_ch, low_ch };

		if (__atomic_load_n(&io->done, __ATOMIC_ACQUIRE))
			return dmu_io_wait(io, WAIT_MS);
		for (i = 0; i < 2; i++) {
			if (dmu_wait_readable(fds[i], 0))
				continue;
			if (dmu_read_msg(fds[i], &m, NULL, 0, WAIT_MS))
				return -EIO;
			if (m.type != DM_USER_REQ_MAP_FLUSH)
				return -EPROTO;
			if (dmu_answer(fds[i], &m, DM_USER_RESP_SUCCESS, NULL,
				       0) != DMU_HDR)
				return -errno;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}

TEST_F(stacked, every_operation_reaches_the_backing_device)
{
	static const struct {
		enum dmu_io_kind kind;
		unsigned long ioctl_req;
		uint64_t type;
		uint64_t off;
		uint64_t len;
		uint64_t to;	/* the remap answer's sector */
	} ops[] = {
		{ DMU_PREAD, 0, DM_USER_REQ_MAP_READ, 4096, 8192, 8 },
		{ DMU_PWRITE, 0, DM_USER_REQ_MAP_WRITE, 8192, 65536, 16 },
		{ DMU_FSYNC, 0, DM_USER_REQ_MAP_FLUSH, 0, 0, 0 },
		{ DMU_IOCTL_RANGE, BLKDISCARD, DM_USER_REQ_MAP_DISCARD,
		  1 << 20, 1 << 20, 2048 },
		{ DMU_IOCTL_RANGE, BLKZEROOUT, DM_USER_REQ_MAP_WRITE_ZEROES,
		  2 << 20, 65536, 4096 },
		{ DMU_IOCTL_RANGE, BLKSECDISCARD,
		  DM_USER_REQ_MAP_SECURE_ERASE, 3 << 20, 4096, 0 },
	};
	struct dm_user_message req, low;
	unsigned int i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		struct dmu_io io = { .fd = self->bdev, .kind = ops[i].kind,
				     .ioctl_req = ops[i].ioctl_req,
				     .buf = self->buf, .len = ops[i].len,
				     .off = ops[i].off };

		dmu_fill(self->buf, ops[i].len, 40 + i);
		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->up_ch, &req, self->data,
					  1 << 20, WAIT_MS));
		EXPECT_EQ(ops[i].type, req.type) TH_LOG("op %u", i);
		if (ops[i].type != DM_USER_REQ_MAP_FLUSH) {
			EXPECT_EQ(ops[i].off / 512, req.sector);
			EXPECT_EQ(ops[i].len, req.len);
		}
		ASSERT_EQ(DMU_HDR, answer_remap(self->up_ch, &req, ops[i].to));

		/*
		 * What the lower device gets: at the offset, same length. A
		 * flush comes twice: the kernel's own to the backing device,
		 * then the one the daemon remapped.
		 */
		if (ops[i].type == DM_USER_REQ_MAP_FLUSH) {
			ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, NULL, 0,
						  WAIT_MS));
			EXPECT_EQ(DM_USER_REQ_MAP_FLUSH, low.type);
			ASSERT_EQ(DMU_HDR, dmu_answer(self->low_ch, &low,
						      DM_USER_RESP_SUCCESS,
						      NULL, 0));
		}
		ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data,
					  1 << 20, WAIT_MS));
		EXPECT_EQ(ops[i].type, low.type) TH_LOG("op %u", i);
		if (ops[i].type != DM_USER_REQ_MAP_FLUSH) {
			EXPECT_EQ(DEV_SECTORS + ops[i].to, low.sector);
			EXPECT_EQ(ops[i].len, low.len);
		}
		if (ops[i].type == DM_USER_REQ_MAP_WRITE)
			EXPECT_EQ(0, memcmp(self->data, self->buf,
					    ops[i].len));
		if (ops[i].type == DM_USER_REQ_MAP_READ) {
			dmu_fill(self->data, ops[i].len, 90);
			ASSERT_EQ(DMU_HDR + (ssize_t)ops[i].len,
				  dmu_answer(self->low_ch, &low,
					     DM_USER_RESP_SUCCESS, self->data,
					     ops[i].len));
		} else {
			ASSERT_EQ(DMU_HDR, dmu_answer(self->low_ch, &low,
						      DM_USER_RESP_SUCCESS,
						      NULL, 0));
		}
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS)) TH_LOG("op %u", i);
		EXPECT_EQ(0, io.err) TH_LOG("op %u: %s", i, strerror(io.err));
		if (ops[i].type == DM_USER_REQ_MAP_READ)
			EXPECT_EQ(0, memcmp(self->buf, self->data,
					    ops[i].len));
	}
	EXPECT_EQ(6, info_num(self->up_ch, DM_USER_ATTR_REMAPPED));

	/* A FUA write keeps its FUA on the way down. */
	{
		struct dmu_io io = { .fd = self->bdev,
				     .kind = DMU_PWRITE_DSYNC,
				     .buf = self->buf, .len = 4096,
				     .off = 4096 };

		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->up_ch, &req, self->data,
					  1 << 20, WAIT_MS));
		EXPECT_TRUE(req.flags & DM_USER_REQ_MAP_FLAG_FUA);
		ASSERT_EQ(DMU_HDR, answer_remap(self->up_ch, &req, 0));
		ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data,
					  1 << 20, WAIT_MS));
		EXPECT_EQ(DM_USER_REQ_MAP_WRITE, low.type);
		EXPECT_EQ(DEV_SECTORS, low.sector);
		EXPECT_TRUE(low.flags & DM_USER_REQ_MAP_FLAG_FUA);
		ASSERT_EQ(DMU_HDR, dmu_answer(self->low_ch, &low,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		/* The O_DSYNC write's fsync of the device, if any, after. */
		ASSERT_EQ(0, serve_flushes(&io, self->up_ch, self->low_ch));
		EXPECT_EQ(4096, io.ret);
	}

	/* The backing device fails a remapped write: so does the device. */
	{
		struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
				     .buf = self->buf, .len = 4096, .off = 0 };

		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->up_ch, &req, self->data,
					  1 << 20, WAIT_MS));
		ASSERT_EQ(DMU_HDR, answer_remap(self->up_ch, &req, 0));
		ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data,
					  1 << 20, WAIT_MS));
		ASSERT_EQ(DMU_HDR, dmu_answer(self->low_ch, &low,
					      DM_USER_RESP_ERROR, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
		EXPECT_EQ(-1, io.ret);
		EXPECT_EQ(EIO, io.err);
		EXPECT_EQ(1, info_num(self->up_ch, DM_USER_ATTR_WRITE_ERRORS));
		EXPECT_EQ(3, info_num(self->up_ch,
				      DM_USER_ATTR_WRITE_REQUESTS));
	}
}

/*
 * Claimed ranges (DM_USER_CMD_CLAIM, DM_USER_CMD_RELEASE) on a target that
 * starts with nothing claimed (passthrough), 4 KiB blocks and room for 4
 * ranges: I/O outside the claims reaches the RAM disk with no daemon at
 * all, I/O inside goes to the daemon, I/O across a boundary goes to it
 * whole, marked.
 */
FIXTURE(claims) {
	char dev[64];
	char mapper[128];
	char chan[128];
	int ch;
	int bdev;
	void *buf;
	void *data;
	void *ram;
};

FIXTURE_SETUP(claims)
{
	char table[512];

	self->ch = self->bdev = -1;
	if (ram_ready())
		SKIP(return, "no RAM disk");
	snprintf(self->dev, sizeof(self->dev), "dmu_claim_%d", getpid());
	snprintf(self->mapper, sizeof(self->mapper), "/dev/mapper/%s",
		 self->dev);
	snprintf(self->chan, sizeof(self->chan), "/dev/dm-user/%s", self->dev);
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 10 block_size 4096 backing %s %d passthrough max_claims 4 request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, self->dev, ram, RAM_START);
	ASSERT_EQ(0, dmu_create(self->dev, table));
	self->ch = open(self->chan, O_RDWR);
	ASSERT_LE(0, self->ch);
	self->bdev = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bdev);
	self->buf = dmu_alloc(1 << 20);
	self->data = dmu_alloc(1 << 20);
	self->ram = dmu_alloc(1 << 20);
	ASSERT_NE(NULL, self->buf);
	ASSERT_NE(NULL, self->data);
	ASSERT_NE(NULL, self->ram);
	dmu_fill(self->ram, 1 << 20, 80);
	ASSERT_EQ(0, ram_io(true, self->ram, 1 << 20, RAM_START));
}

FIXTURE_TEARDOWN(claims)
{
	char lin[96];

	if (self->bdev >= 0)
		close(self->bdev);
	if (self->ch >= 0)
		close(self->ch);
	/* passed_io_cut_as_dm_linear_cuts_it's, if it stopped early. */
	snprintf(lin, sizeof(lin), "%s_lin", self->dev);
	dmu_run("dmsetup remove %s >/dev/null 2>&1", lin);
	if (self->dev[0])
		dmu_remove(self->dev);
	free(self->buf);
	free(self->data);
	free(self->ram);
}

static int claim(int fd, uint64_t start, uint64_t len)
{
	return claims_cmd(fd, DM_USER_CMD_CLAIM, start, len);
}

static int release(int fd, uint64_t start, uint64_t len)
{
	return claims_cmd(fd, DM_USER_CMD_RELEASE, start, len);
}

/* Nothing claimed: the device is dm-linear, with no daemon at all. */
TEST_F(claims, passthrough_without_a_daemon)
{
	NEED_RAM();
	char out[512], want[512];
	struct stat st;

	ASSERT_EQ(0, stat(ram, &st));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out), "dmsetup table %s",
				 self->dev));
	snprintf(want, sizeof(want),
		 "0 %d user 0 %d %s 10 block_size 4096 backing %u:%u %d passthrough max_claims 4 request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, self->dev, major(st.st_rdev),
		 minor(st.st_rdev), RAM_START);
	EXPECT_STREQ(want, out);

	ASSERT_EQ(65536, pread(self->bdev, self->buf, 65536, 8192));
	EXPECT_EQ(0, memcmp(self->buf, (char *)self->ram + 8192, 65536));
	dmu_fill(self->buf, 131072, 81);
	ASSERT_EQ(131072, pwrite(self->bdev, self->buf, 131072, 1 << 20));
	EXPECT_EQ(0, fsync(self->bdev));
	ASSERT_EQ(0, ram_io(false, self->data, 131072, RAM_START + 2048));
	EXPECT_EQ(0, memcmp(self->data, self->buf, 131072));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	EXPECT_LE(3, info_num(self->ch, DM_USER_ATTR_PASSED));
	EXPECT_LE(3, status_num(self->dev, "passed"));
	EXPECT_EQ(0, status_num(self->dev, "claims"));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_READ_REQUESTS));
}

/*
 * Sectors 64 to 128 claimed: I/O inside goes to the daemon, I/O across
 * either edge goes to it whole with DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED,
 * I/O outside never does; released, the range goes straight again.
 */
TEST_F(claims, claimed_and_unclaimed_with_straddling_io)
{
	NEED_RAM();
	static const struct {
		uint64_t sector, len;
		bool daemon, partly;
	} io_at[] = {
		{ 0, 8192, false, false },
		{ 64, 8192, true, false },
		{ 56, 8192, true, true },	/* across the start */
		{ 120, 8192, true, true },	/* across the end */
		{ 48, 65536, true, true },	/* over all of it */
		{ 128, 8192, false, false },
		{ 40, 12288, false, false },	/* ends where it starts */
	};
	struct dm_user_message req;
	unsigned int i;

	ASSERT_EQ(1, claim(self->ch, 64, 64));
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	for (i = 0; i < sizeof(io_at) / sizeof(io_at[0]); i++) {
		struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
				     .buf = self->buf, .len = io_at[i].len,
				     .off = io_at[i].sector * 512 };
		const char *want = (char *)self->ram + io_at[i].sector * 512;

		memset(self->buf, 0, io.len);
		ASSERT_EQ(0, dmu_io_start(&io));
		if (io_at[i].daemon) {
			ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0,
						  WAIT_MS)) TH_LOG("io %u", i);
			EXPECT_EQ(io_at[i].sector, req.sector);
			EXPECT_EQ(io_at[i].len, req.len);
			EXPECT_EQ(io_at[i].partly,
				  !!(req.flags &
				     DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED))
				TH_LOG("io %u", i);
			dmu_fill(self->data, io.len, 90 + i);
			want = self->data;
			ASSERT_EQ(DMU_HDR + (ssize_t)io.len,
				  dmu_answer(self->ch, &req,
					     DM_USER_RESP_SUCCESS, self->data,
					     io.len));
		}
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS)) TH_LOG("io %u", i);
		EXPECT_EQ((ssize_t)io.len, io.ret) TH_LOG("io %u", i);
		EXPECT_EQ(0, memcmp(self->buf, want, io.len)) TH_LOG("io %u", i);
	}
	EXPECT_EQ(4, info_num(self->ch, DM_USER_ATTR_READ_REQUESTS));

	/* A flush reaches the daemon now that it serves something. */
	{
		struct dmu_io io = { .fd = self->bdev, .kind = DMU_FSYNC };

		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));
		EXPECT_EQ(DM_USER_REQ_MAP_FLUSH, req.type);
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
		EXPECT_EQ(0, io.ret);
	}

	/* Released: straight to the RAM disk, the daemon sees nothing. */
	ASSERT_EQ(0, release(self->ch, 64, 64));
	ASSERT_EQ(8192, pread(self->bdev, self->buf, 8192, 64 * 512));
	EXPECT_EQ(0, memcmp(self->buf, (char *)self->ram + 64 * 512, 8192));
	EXPECT_EQ(0, fsync(self->bdev));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_QUEUED));
	EXPECT_EQ(4, info_num(self->ch, DM_USER_ATTR_READ_REQUESTS));
}

/* Ranges merge and split; refusals change nothing. */
TEST_F(claims, claim_and_release_rules)
{
	NEED_RAM();
	struct side_dev d;
	int ro;

	EXPECT_EQ(1, claim(self->ch, 0, 8));
	EXPECT_EQ(2, claim(self->ch, 16, 8));
	EXPECT_EQ(1, claim(self->ch, 8, 8));		/* fills the gap */
	EXPECT_EQ(1, claim(self->ch, 0, 24));		/* already claimed */
	EXPECT_EQ(2, release(self->ch, 8, 8));	/* splits it */
	EXPECT_EQ(2, release(self->ch, 64, 8));	/* nothing there */
	EXPECT_EQ(3, claim(self->ch, 40, 8));
	EXPECT_EQ(4, claim(self->ch, 56, 8));
	/* A fifth range is one more than max_claims. */
	EXPECT_EQ(-E2BIG, claim(self->ch, 80, 8));
	EXPECT_EQ(4, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	EXPECT_EQ(3, claim(self->ch, 48, 8));		/* joins two */
	/* Splitting one in two would make a fifth range too. */
	EXPECT_EQ(4, claim(self->ch, 80, 8));
	EXPECT_EQ(-E2BIG, release(self->ch, 48, 8));
	EXPECT_EQ(3, release(self->ch, 80, 8));
	/* Not whole blocks, empty, past the end. */
	EXPECT_EQ(-EINVAL, claim(self->ch, 4, 8));
	EXPECT_EQ(-EINVAL, claim(self->ch, 0, 4));
	EXPECT_EQ(-EINVAL, claim(self->ch, 0, 0));
	EXPECT_EQ(-ERANGE, claim(self->ch, DEV_SECTORS - 8, 16));
	EXPECT_EQ(-ERANGE, release(self->ch, DEV_SECTORS + 8, 8));
	EXPECT_EQ(-ERANGE, claim(self->ch, 8, UINT64_MAX - 7));
	EXPECT_EQ(3, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	/* A read-only open may not change them. */
	ro = open(self->chan, O_RDONLY);
	ASSERT_LE(0, ro);
	EXPECT_EQ(-EBADF, claim(ro, 80, 8));
	close(ro);
	/* dmsetup message reaches the same commands. */
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 claim range_start=80 range_len=8",
			     self->dev));
	EXPECT_EQ(4, status_num(self->dev, "claims"));
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 release range_start=0 range_len=8192",
			     self->dev));
	EXPECT_EQ(0, status_num(self->dev, "claims"));

	/* Without a backing device there are no claims. */
	ASSERT_EQ(0, side_create(&d, self->dev, "nb", "%s", ""));
	EXPECT_EQ(-EOPNOTSUPP, claim(d.ch, 0, 8));
	EXPECT_EQ(0, side_remove(&d));
	/* Nor passthrough or max_claims in its table. */
	EXPECT_NE(0, side_create(&d, self->dev, "nb", "1 passthrough"));
	EXPECT_TRUE(dmu_kmsg_has("passthrough, max_claims and notify_writes need a backing device"));
	side_remove(&d);
}

static int set_notify(int fd, uint32_t on);

/* What op_io() expects of a request: where it goes, and how marked. */
enum op_way { OP_PASS, OP_DAEMON, OP_PARTLY, OP_NOTIFY };

/*
 * A read or write of @len bytes at @sector through @bdev that must take
 * @way: to the daemon on @ch (answered SUCCESS, a read with @fill's
 * bytes), or straight to the RAM disk (a read must see @ram's bytes, a
 * write land there). 0, or the line of the check that failed.
 */
static int op_io(int bdev, int ch, void *buf, void *fill, const void *ram,
		 bool write, uint64_t sector, size_t len, enum op_way way)
{
	struct dmu_io io = { .fd = bdev, .kind = write ? DMU_PWRITE : DMU_PREAD,
			     .buf = buf, .len = len, .off = sector * 512 };
	struct dm_user_message req;
	static unsigned char seed = 100;
	bool daemon = way != OP_PASS;

	dmu_fill(buf, len, write ? ++seed : 0);
	dmu_fill(fill, len, ++seed);
	if (dmu_io_start(&io))
		return __LINE__;
	if (daemon) {
		bool notify;

		if (dmu_read_msg(ch, &req, write && way != OP_NOTIFY ? fill : NULL,
				 write ? len : 0, WAIT_MS))
			return __LINE__;
		notify = req.type & DM_USER_REQ_NOTIFY;
		if (req.sector != sector || req.len != len ||
		    (req.type & ~(uint64_t)DM_USER_REQ_NOTIFY) !=
		    (write ? DM_USER_REQ_MAP_WRITE : DM_USER_REQ_MAP_READ))
			return __LINE__;
		if (notify != (way == OP_NOTIFY) ||
		    !!(req.flags & DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED) !=
		    (way == OP_PARTLY))
			return __LINE__;
		/* A write's data, read into @fill, must be what was written. */
		if (write && !notify && memcmp(fill, buf, len))
			return __LINE__;
		if (write && !notify)
			dmu_fill(fill, len, ++seed);
		if (dmu_answer(ch, &req, DM_USER_RESP_SUCCESS,
			       write ? NULL : fill, write ? 0 : len) < 0)
			return __LINE__;
	}
	if (dmu_io_wait(&io, WAIT_MS) || io.ret != (ssize_t)len)
		return __LINE__;
	if (!write && memcmp(buf, daemon ? fill : (const char *)ram +
			     sector * 512, len))
		return __LINE__;
	if (write) {
		/* Passed (or notified): on the RAM disk; else not there. */
		if (ram_io(false, fill, len, RAM_START + sector))
			return __LINE__;
		if (!memcmp(fill, buf, len) != (way == OP_PASS ||
						way == OP_NOTIFY))
			return __LINE__;
	}
	return 0;
}

/*
 * Claims per operation (control version 8): a range's writes alone, its
 * reads alone, both; each sector claimed for the union of its claims, a
 * request the daemon's where any sector is claimed for its operation;
 * flushes only while writes are claimed; bad masks refused.
 */
TEST_F(claims, claims_per_operation)
{
	NEED_RAM();
	static const struct {
		uint32_t ops;		/* 0: release all; else claim or release */
		bool release;
		uint64_t sector, len;
		int ranges;
	} steps[] = {
		{ DM_USER_CLAIM_WRITES, false, 64, 64, 1 },
		{ DM_USER_CLAIM_READS, false, 96, 32, 2 },
	};
	const struct {
		int step;		/* after steps[0..step] */
		bool write;
		uint64_t sector;
		size_t len;
		enum op_way way;
	} io[] = {
		/* [64, 128) claimed for writes: reads pass. */
		{ 0, false, 64, 8192, OP_PASS },
		{ 0, true, 64, 8192, OP_DAEMON },
		{ 0, true, 56, 8192, OP_PARTLY },
		{ 0, true, 128, 8192, OP_PASS },
		/* and [96, 128) for reads too. */
		{ 1, false, 64, 8192, OP_PASS },
		{ 1, false, 96, 8192, OP_DAEMON },
		{ 1, false, 88, 8192, OP_PARTLY },
		{ 1, true, 88, 8192, OP_DAEMON },
	};
	unsigned int s, i;

	for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		ASSERT_EQ(steps[s].ranges,
			  claims_ops_cmd(self->ch, steps[s].release ?
					 DM_USER_CMD_RELEASE : DM_USER_CMD_CLAIM,
					 steps[s].sector, steps[s].len,
					 steps[s].ops)) TH_LOG("step %u", s);
		for (i = 0; i < sizeof(io) / sizeof(io[0]); i++) {
			if (io[i].step != (int)s)
				continue;
			EXPECT_EQ(0, op_io(self->bdev, self->ch, self->buf,
					   self->data, self->ram, io[i].write,
					   io[i].sector, io[i].len, io[i].way))
				TH_LOG("io %u", i);
			/* What passed changed the RAM disk: keep up. */
			if (io[i].write && io[i].way == OP_PASS)
				ASSERT_EQ(0, ram_io(false, self->ram, 1 << 20,
						    RAM_START));
		}
	}
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));

	/* Writes released: [96, 128) is claimed for reads alone. */
	ASSERT_EQ(1, claims_ops_cmd(self->ch, DM_USER_CMD_RELEASE, 64, 64,
				    DM_USER_CLAIM_WRITES));
	EXPECT_EQ(0, op_io(self->bdev, self->ch, self->buf, self->data,
			   self->ram, true, 96, 8192, OP_PASS));
	ASSERT_EQ(0, ram_io(false, self->ram, 1 << 20, RAM_START));
	EXPECT_EQ(0, op_io(self->bdev, self->ch, self->buf, self->data,
			   self->ram, false, 96, 8192, OP_DAEMON));
	/* With reads alone claimed, a flush is no business of the daemon. */
	EXPECT_EQ(0, fsync(self->bdev));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_FLUSH_REQUESTS));
	/* A write there is notified, as outside every claim. */
	ASSERT_EQ(0, set_notify(self->ch, 1));
	EXPECT_EQ(0, op_io(self->bdev, self->ch, self->buf, self->data,
			   self->ram, true, 96, 8192, OP_NOTIFY));
	ASSERT_EQ(0, set_notify(self->ch, 0));
	ASSERT_EQ(0, ram_io(false, self->ram, 1 << 20, RAM_START));

	/* Merging: both of [96, 128), then [64, 96) a part at a time. */
	EXPECT_EQ(1, claim(self->ch, 96, 32));
	EXPECT_EQ(2, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 64, 32,
				    DM_USER_CLAIM_WRITES));
	EXPECT_EQ(1, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 64, 32,
				    DM_USER_CLAIM_READS));
	/* Released for reads over more than the range: its writes stay. */
	EXPECT_EQ(1, claims_ops_cmd(self->ch, DM_USER_CMD_RELEASE, 0, 256,
				    DM_USER_CLAIM_READS));
	EXPECT_EQ(0, op_io(self->bdev, self->ch, self->buf, self->data,
			   self->ram, false, 64, 65536 - 32768, OP_PASS));
	/* Writes claimed anywhere: flushes come to the daemon. */
	{
		struct dmu_io f = { .fd = self->bdev, .kind = DMU_FSYNC };
		struct dm_user_message req;

		ASSERT_EQ(0, dmu_io_start(&f));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));
		EXPECT_EQ(DM_USER_REQ_MAP_FLUSH, req.type);
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&f, WAIT_MS));
		EXPECT_EQ(0, f.ret);
	}
	/* Splits count against max_claims (4) as whole claims do. */
	EXPECT_EQ(2, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 0, 8,
				    DM_USER_CLAIM_READS));
	/* [64, 72) W, [72, 80) both, [80, 128) W: one range in three. */
	EXPECT_EQ(4, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 72, 8,
				    DM_USER_CLAIM_READS));
	EXPECT_EQ(-E2BIG, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 200, 8,
					 DM_USER_CLAIM_ALL));
	EXPECT_EQ(-E2BIG, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 104, 8,
					 DM_USER_CLAIM_READS));
	/* One that adds no range is taken: [0, 8) for both. */
	EXPECT_EQ(4, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 0, 8,
				    DM_USER_CLAIM_WRITES));
	EXPECT_EQ(4, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	/* Masks that claim nothing, or more than there is. */
	EXPECT_EQ(-EINVAL, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 0, 8,
					  4));
	EXPECT_EQ(-EINVAL, claims_ops_cmd(self->ch, DM_USER_CMD_RELEASE, 0, 8,
					  (uint32_t)-1));
	EXPECT_EQ(4, info_num(self->ch, DM_USER_ATTR_CLAIM_RANGES));
	/* dmsetup message takes the mask too: reads, then writes. */
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 release range_start=0 range_len=8192 range_ops=1",
			     self->dev));
	/* [0, 8) and [64, 128) for writes. */
	EXPECT_EQ(2, status_num(self->dev, "claims"));
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 release range_start=0 range_len=8192 range_ops=2",
			     self->dev));
	EXPECT_EQ(0, status_num(self->dev, "claims"));
}

static int map(int fd, uint64_t start, uint64_t len, uint64_t dest,
	       uint32_t ops)
{
	return range_cmd(fd, DM_USER_CMD_MAP, start, len, dest, ops);
}

static int unmap(int fd, uint64_t start, uint64_t len, uint32_t ops)
{
	return range_cmd(fd, DM_USER_CMD_UNMAP, start, len, 0, ops);
}

/* Whether @len bytes of the RAM disk at target sector @sector equal @want. */
static bool ram_holds(void *scratch, const void *want, size_t len,
		      uint64_t sector)
{
	return !ram_io(false, scratch, len, RAM_START + sector) &&
	       !memcmp(scratch, want, len);
}

/*
 * Mapped ranges (control version 9): reads of [0, 64) go to sector 256
 * with no daemon, a read across the edge is cut there and each part read
 * from its own place, writes follow their own mapping, a claim takes
 * precedence, a notified write let through lands where its mapping sends
 * it, and unmapping sends I/O to its own sector again.
 */
TEST_F(claims, mapped_ranges_route_io)
{
	NEED_RAM();
	const char *ram_bytes = self->ram;
	void *scratch = (char *)self->data + (512 << 10);
	struct dm_user_message req;

	ASSERT_EQ(1, map(self->ch, 0, 64, 256, DM_USER_CLAIM_READS));
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_MAP_RANGES));
	EXPECT_EQ(1, status_num(self->dev, "maps"));
	/* Whole, and across the end of the range: 4 KiB from each place. */
	ASSERT_EQ(32768, pread(self->bdev, self->buf, 32768, 0));
	EXPECT_EQ(0, memcmp(self->buf, ram_bytes + 256 * 512, 32768));
	ASSERT_EQ(8192, pread(self->bdev, self->buf, 8192, 56 * 512));
	EXPECT_EQ(0, memcmp(self->buf, ram_bytes + 312 * 512, 4096));
	EXPECT_EQ(0, memcmp((char *)self->buf + 4096, ram_bytes + 64 * 512,
			    4096));
	/* Writes are not mapped: they land on their own sector. */
	dmu_fill(self->buf, 4096, 140);
	ASSERT_EQ(4096, pwrite(self->bdev, self->buf, 4096, 8 * 512));
	EXPECT_TRUE(ram_holds(scratch, self->buf, 4096, 8));
	EXPECT_FALSE(ram_holds(scratch, self->buf, 4096, 264));

	/* Writes of [0, 64) to 512: one more range, of the other class. */
	ASSERT_EQ(2, map(self->ch, 0, 64, 512, DM_USER_CLAIM_WRITES));
	dmu_fill(self->buf, 8192, 141);
	ASSERT_EQ(8192, pwrite(self->bdev, self->buf, 8192, 56 * 512));
	EXPECT_TRUE(ram_holds(scratch, self->buf, 4096, 568));
	EXPECT_TRUE(ram_holds(scratch, (char *)self->buf + 4096, 4096, 64));
	/* Reads still follow their own mapping, not the writes'. */
	ASSERT_EQ(0, ram_io(false, self->ram, 1 << 20, RAM_START));
	ASSERT_EQ(4096, pread(self->bdev, self->buf, 4096, 56 * 512));
	EXPECT_EQ(0, memcmp(self->buf, ram_bytes + 312 * 512, 4096));

	/* A claim takes precedence: the daemon gets the read. */
	ASSERT_EQ(1, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 0, 8,
				    DM_USER_CLAIM_READS));
	EXPECT_EQ(0, op_io(self->bdev, self->ch, self->buf, self->data,
			   self->ram, false, 0, 4096, OP_DAEMON));
	ASSERT_EQ(0, release(self->ch, 0, 8));
	ASSERT_EQ(4096, pread(self->bdev, self->buf, 4096, 0));
	EXPECT_EQ(0, memcmp(self->buf, ram_bytes + 256 * 512, 4096));

	/* A notified write, let through, goes where its mapping sends it. */
	ASSERT_EQ(0, set_notify(self->ch, 1));
	{
		struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
				     .buf = self->buf, .len = 4096,
				     .off = 16 * 512 };

		dmu_fill(self->buf, 4096, 142);
		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));
		EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE,
			  req.type);
		/* The daemon sees the target's sector, not the mapped one. */
		EXPECT_EQ(16, req.sector);
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
		EXPECT_EQ(4096, io.ret);
		EXPECT_TRUE(ram_holds(scratch, self->buf, 4096, 528));
		EXPECT_FALSE(ram_holds(scratch, self->buf, 4096, 16));
	}
	ASSERT_EQ(0, set_notify(self->ch, 0));

	/* Unmapped reads go to their own sector again; writes still not. */
	ASSERT_EQ(0, ram_io(false, self->ram, 1 << 20, RAM_START));
	ASSERT_EQ(1, unmap(self->ch, 0, 64, DM_USER_CLAIM_READS));
	ASSERT_EQ(4096, pread(self->bdev, self->buf, 4096, 0));
	EXPECT_EQ(0, memcmp(self->buf, ram_bytes, 4096));
	dmu_fill(self->buf, 4096, 143);
	ASSERT_EQ(4096, pwrite(self->bdev, self->buf, 4096, 0));
	EXPECT_TRUE(ram_holds(scratch, self->buf, 4096, 512));
	ASSERT_EQ(0, unmap(self->ch, 0, 8192, 0));
	EXPECT_EQ(0, status_num(self->dev, "maps"));
	/* The one read the daemon served is the claimed one. */
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_READ_REQUESTS));
	EXPECT_EQ(0, fsync(self->bdev));
}

/*
 * Mapped ranges merge where one goes on from the other on both sides, cut
 * in two where part is unmapped or mapped elsewhere, count against
 * max_claims apart from claims, and bad input is refused with the
 * attribute named and nothing changed.
 */
TEST_F(claims, mapped_range_rules)
{
	NEED_RAM();
	struct side_dev d;
	struct ctl c;
	int ro;

	/* Each class counts: [0, 32) to 1024 for reads and for writes. */
	EXPECT_EQ(2, map(self->ch, 0, 24, 1024, 0));
	EXPECT_EQ(2, map(self->ch, 24, 8, 1048, 0));	/* goes on from it */
	EXPECT_EQ(-EINVAL, map(self->ch, 8, 8, 2052, DM_USER_CLAIM_READS));
	/* Reads [0, 8) to 2048, [8, 32) to 1032; writes as they were. */
	EXPECT_EQ(3, map(self->ch, 0, 8, 2048, DM_USER_CLAIM_READS));
	EXPECT_EQ(4, map(self->ch, 4096, 8, 0, DM_USER_CLAIM_WRITES));
	/* One range cut in three, or in two, is more than max_claims. */
	EXPECT_EQ(-E2BIG, map(self->ch, 16, 8, 3000, DM_USER_CLAIM_READS));
	EXPECT_EQ(-E2BIG, unmap(self->ch, 16, 8, DM_USER_CLAIM_READS));
	/* Replacing what is there adds no range: taken at max_claims. */
	EXPECT_EQ(4, map(self->ch, 0, 8, 16, DM_USER_CLAIM_READS));
	EXPECT_EQ(3, unmap(self->ch, 4096, 8, DM_USER_CLAIM_WRITES));
	EXPECT_EQ(3, info_num(self->ch, DM_USER_ATTR_MAP_RANGES));
	/* Claims are bounded on their own: four still fit. */
	EXPECT_EQ(1, claim(self->ch, 0, 8));
	EXPECT_EQ(2, claim(self->ch, 16, 8));
	EXPECT_EQ(3, claim(self->ch, 32, 8));
	EXPECT_EQ(4, claim(self->ch, 48, 8));
	EXPECT_EQ(0, release(self->ch, 0, 8192));

	/* Refusals, each naming its attribute. */
	EXPECT_EQ(-EINVAL, map(self->ch, 0, 8, 4, 0));
	ctl_init(&c, DM_USER_CMD_MAP);
	c.hdr.version = 9;
	ctl_add(&c, DM_USER_ATTR_RANGE_START, DM_USER_TYPE_U64, 0);
	ctl_add(&c, DM_USER_ATTR_RANGE_LEN, DM_USER_TYPE_U64, 8);
	EXPECT_EQ(-1, ioctl(self->ch, DM_USER_IOCTL_CTL, &c));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(DM_USER_ATTR_RANGE_DEST, c.hdr.error_tag);
	EXPECT_STREQ("range_dest required",
		     ctl_str(&c, DM_USER_ATTR_ERROR_REASON));
	ctl_init(&c, DM_USER_CMD_MAP);
	c.hdr.version = 9;
	ctl_add(&c, DM_USER_ATTR_RANGE_START, DM_USER_TYPE_U64, 0);
	ctl_add(&c, DM_USER_ATTR_RANGE_LEN, DM_USER_TYPE_U64, 16);
	ctl_add(&c, DM_USER_ATTR_RANGE_DEST, DM_USER_TYPE_U64,
		DEV_SECTORS - 8);
	EXPECT_EQ(-1, ioctl(self->ch, DM_USER_IOCTL_CTL, &c));
	EXPECT_EQ(ERANGE, errno);
	EXPECT_EQ(DM_USER_ATTR_RANGE_DEST, c.hdr.error_tag);
	EXPECT_EQ(-ERANGE, map(self->ch, DEV_SECTORS - 8, 16, 0, 0));
	EXPECT_EQ(-ERANGE, map(self->ch, 0, 8, UINT64_MAX - 7, 0));
	EXPECT_EQ(-EINVAL, map(self->ch, 0, 8, 0, 4));
	EXPECT_EQ(-EINVAL, unmap(self->ch, 0, 4, 0));
	EXPECT_EQ(3, info_num(self->ch, DM_USER_ATTR_MAP_RANGES));
	ro = open(self->chan, O_RDONLY);
	ASSERT_LE(0, ro);
	EXPECT_EQ(-EBADF, map(ro, 0, 8, 0, 0));
	close(ro);
	/* dmsetup message reaches the same commands. */
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 unmap range_start=0 range_len=8192",
			     self->dev));
	EXPECT_EQ(0, status_num(self->dev, "maps"));
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 map range_start=0 range_len=64 range_dest=128 range_ops=0x1",
			     self->dev));
	EXPECT_EQ(1, status_num(self->dev, "maps"));
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 map range_start=0 range_len=64 >/dev/null 2>&1",
			     self->dev));
	EXPECT_TRUE(dmu_kmsg_has("range_dest required"));
	EXPECT_EQ(1, status_num(self->dev, "maps"));
	/* Without a backing device there is nothing to map to. */
	ASSERT_EQ(0, side_create(&d, self->dev, "nb", "%s", ""));
	EXPECT_EQ(-EOPNOTSUPP, map(d.ch, 0, 8, 8, 0));
	EXPECT_EQ(0, side_remove(&d));
}

/*
 * Notifications queued when the mapping of writes changes: one wholly
 * inside a mapped range goes where the range sends it when let through;
 * one that a new edge falls inside, which the map path can no longer cut,
 * becomes a write the daemon serves, with its data, marked PARTLY_CLAIMED.
 */
TEST_F(claims, map_changes_take_queued_notifications)
{
	NEED_RAM();
	void *scratch = (char *)self->data + (512 << 10);
	struct dmu_io a = { .fd = self->bdev, .kind = DMU_PWRITE,
			    .buf = self->buf, .len = 4096, .off = 16 * 512 };
	struct dmu_io b = { .fd = self->bdev, .kind = DMU_PWRITE,
			    .buf = (char *)self->buf + 65536, .len = 8192,
			    .off = 24 * 512 };
	struct dm_user_message req;
	int waited;

	ASSERT_EQ(0, set_notify(self->ch, 1));
	dmu_fill(a.buf, a.len, 150);
	dmu_fill(b.buf, b.len, 151);
	ASSERT_EQ(0, dmu_io_start(&a));
	ASSERT_EQ(0, dmu_wait_readable(self->ch, WAIT_MS));
	ASSERT_EQ(0, dmu_io_start(&b));
	for (waited = 0; waited < WAIT_MS &&
	     info_num(self->ch, DM_USER_ATTR_QUEUED) < 2; waited += 10)
		usleep(10000);
	/* Both queued, neither read: [16, 24) to 600, an edge at 32. */
	ASSERT_EQ(1, map(self->ch, 16, 8, 600, DM_USER_CLAIM_WRITES));
	ASSERT_EQ(2, map(self->ch, 32, 8, 704, DM_USER_CLAIM_WRITES));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, self->data, 512 << 10,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE, req.type);
	EXPECT_EQ(16, req.sector);
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&a, WAIT_MS));
	EXPECT_EQ(4096, a.ret);
	EXPECT_TRUE(ram_holds(scratch, a.buf, 4096, 600));
	EXPECT_FALSE(ram_holds(scratch, a.buf, 4096, 16));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, self->data, 512 << 10,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, req.type);
	EXPECT_EQ(24, req.sector);
	EXPECT_EQ(8192, req.len);
	EXPECT_TRUE(req.flags & DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED);
	EXPECT_EQ(0, memcmp(self->data, b.buf, 8192));
	/* The daemon keeps it: nothing reaches the disk. */
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&b, WAIT_MS));
	EXPECT_EQ(8192, b.ret);
	EXPECT_FALSE(ram_holds(scratch, b.buf, 4096, 24));
	EXPECT_FALSE(ram_holds(scratch, (char *)b.buf + 4096, 4096, 704));
	ASSERT_EQ(0, set_notify(self->ch, 0));
	/* Mapped to itself is not mapped: no range. */
	EXPECT_EQ(2, map(self->ch, 64, 8, 64, DM_USER_CLAIM_ALL));
	EXPECT_EQ(1, map(self->ch, 16, 8, 16, DM_USER_CLAIM_WRITES));
}

/*
 * With no daemon and no_daemon_timeout 0, claimed I/O fails at once and
 * the rest keeps flowing; the claims outlive the channel that made them.
 */
TEST_F(claims, daemon_gone)
{
	NEED_RAM();
	struct side_dev d;

	ASSERT_EQ(0, side_create(&d, self->dev, "nd",
				 "6 backing %s %d passthrough no_daemon_timeout 0",
				 ram, RAM_START));
	ASSERT_EQ(1, claim(d.ch, 0, 8));
	close(d.ch);
	d.ch = -1;
	EXPECT_EQ(-1, pread(d.bdev, self->buf, 4096, 0));
	EXPECT_EQ(EIO, errno);
	ASSERT_EQ(65536, pread(d.bdev, self->buf, 65536, 4096));
	EXPECT_EQ(0, memcmp(self->buf, (char *)self->ram + 4096, 65536));
	EXPECT_EQ(1, status_num(d.name, "claims"));
	EXPECT_EQ(0, side_remove(&d));
}

/* Reads completed on the mapped device @mapper (its sysfs stat), or -1. */
static long reads_completed(const char *mapper)
{
	char path[128];
	struct stat st;
	long n = -1;
	FILE *f;

	if (stat(mapper, &st))
		return -1;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/stat",
		 major(st.st_rdev), minor(st.st_rdev));
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

/*
 * I/O that goes straight to the backing device is cut only where
 * dm-linear would cut it: reads just larger than the queue's max_sectors
 * (127 KiB over brd) reach the backing device as one bio each, not as
 * max_sectors and the rest, counted by the mapped devices' own
 * statistics, with the same data as through dm-linear.
 */
TEST_F(claims, passed_io_cut_as_dm_linear_cuts_it)
{
	NEED_RAM();
	char v[32], lin[96], lin_path[128], table[256];
	long user_reads, lin_reads;
	void *ubuf, *lbuf;
	unsigned long kb;
	int fd, i;
	size_t len;

	ASSERT_EQ(0, dmu_queue_attr(self->mapper, "max_sectors_kb", v,
				    sizeof(v)));
	kb = strtoul(v, NULL, 10);
	/* The next whole block above max_sectors. */
	len = (kb + 4) / 4 * 4096;
	if (len > 2 << 20)
		SKIP(return, "max_sectors_kb %lu: no read above it fits", kb);
	snprintf(lin, sizeof(lin), "%s_lin", self->dev);
	snprintf(lin_path, sizeof(lin_path), "/dev/mapper/%s", lin);
	snprintf(table, sizeof(table), "0 %d linear %s %d", DEV_SECTORS, ram,
		 RAM_START);
	ASSERT_EQ(0, dmu_create(lin, table));
	fd = open(lin_path, O_RDONLY | O_DIRECT);
	ubuf = dmu_alloc(len);
	lbuf = dmu_alloc(len);
	ASSERT_LE(0, fd);
	ASSERT_NE(NULL, ubuf);
	ASSERT_NE(NULL, lbuf);

	user_reads = reads_completed(self->mapper);
	lin_reads = reads_completed(lin_path);
	ASSERT_LE(0, user_reads);
	ASSERT_LE(0, lin_reads);
	for (i = 0; i < 8; i++) {
		ASSERT_EQ((ssize_t)len, pread(self->bdev, ubuf, len, i * 4096));
		ASSERT_EQ((ssize_t)len, pread(fd, lbuf, len, i * 4096));
		EXPECT_EQ(0, memcmp(ubuf, lbuf, len)) TH_LOG("read %d", i);
		/* The fixture wrote its pattern to the first 1 MiB. */
		EXPECT_EQ(0, memcmp(ubuf, (char *)self->ram + i * 4096,
				    len < (size_t)(256 - i) * 4096 ?
				    len : (size_t)(256 - i) * 4096));
	}
	user_reads = reads_completed(self->mapper) - user_reads;
	lin_reads = reads_completed(lin_path) - lin_reads;
	TH_LOG("8 reads of %zu bytes, max_sectors_kb %lu: %ld bios through dm-user, %ld through dm-linear",
	       len, kb, user_reads, lin_reads);
	EXPECT_EQ(lin_reads, user_reads);
	EXPECT_LE(8, lin_reads);
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_READ_REQUESTS));

	close(fd);
	EXPECT_EQ(0, dmu_remove(lin));
	free(ubuf);
	free(lbuf);
}

/*
 * A read of 3 MiB from 512 KiB comes to the daemon as requests of at most
 * 1 MiB, the whole of it while the device is claimed, and only the part
 * that touches a claimed block while that block alone is: each part cut
 * off is looked up on its own, so a request is flagged partly claimed
 * only when it is, and the parts outside come from the backing device.
 */
TEST_F(claims, daemon_requests_cut_at_max_io)
{
	NEED_RAM();
	static const struct {
		uint64_t start, len;
	} claimed[] = {
		{ 0, DEV_SECTORS },
		{ 4096, 8 },
	};
	const size_t len = 3 << 20, at = 512 << 10;
	char *disk, *buf, *want;
	struct dm_user_message req;
	unsigned int r;

	disk = dmu_alloc(DEV_SECTORS * 512);
	buf = dmu_alloc(len);
	want = dmu_alloc(len);
	ASSERT_NE(NULL, disk);
	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, want);
	dmu_fill(disk, DEV_SECTORS * 512, 85);
	ASSERT_EQ(0, ram_io(true, disk, DEV_SECTORS * 512, RAM_START));

	for (r = 0; r < sizeof(claimed) / sizeof(claimed[0]); r++) {
		struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD,
				     .buf = buf, .len = len, .off = at };
		uint64_t c_start = claimed[r].start;
		uint64_t c_end = c_start + claimed[r].len;
		size_t served = 0, nr = 0;
		bool touched = false;
		int waited;

		memcpy(want, disk + at, len);
		memset(buf, 0, len);
		ASSERT_EQ(1, claim(self->ch, c_start, claimed[r].len));
		ASSERT_EQ(0, dmu_io_start(&io));
		for (waited = 0; waited < WAIT_MS; waited += 10) {
			uint64_t s, e;

			if (__atomic_load_n(&io.done, __ATOMIC_ACQUIRE))
				break;
			if (dmu_wait_readable(self->ch, 10))
				continue;
			ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0,
						  WAIT_MS));
			s = req.sector;
			e = s + req.len / 512;
			EXPECT_EQ(DM_USER_REQ_MAP_READ, req.type);
			EXPECT_GE(1 << 20, req.len) TH_LOG("round %u", r);
			ASSERT_LE(at / 512, s);
			ASSERT_GE((at + len) / 512, e);
			EXPECT_TRUE(s < c_end && e > c_start)
				TH_LOG("round %u: sectors %llu-%llu claim nothing",
				       r, (unsigned long long)s,
				       (unsigned long long)e);
			EXPECT_EQ(s < c_start || e > c_end,
				  !!(req.flags & DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED))
				TH_LOG("round %u: sectors %llu-%llu", r,
				       (unsigned long long)s,
				       (unsigned long long)e);
			touched |= s <= c_start && e >= c_end;
			dmu_fill(self->data, req.len, 100 + nr);
			memcpy(want + s * 512 - at, self->data, req.len);
			ASSERT_EQ(DMU_HDR + (ssize_t)req.len,
				  dmu_answer(self->ch, &req,
					     DM_USER_RESP_SUCCESS, self->data,
					     req.len));
			served += req.len;
			nr++;
		}
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS)) TH_LOG("round %u", r);
		EXPECT_EQ((ssize_t)len, io.ret);
		EXPECT_EQ(0, memcmp(buf, want, len)) TH_LOG("round %u", r);
		TH_LOG("round %u: %zu requests, %zu bytes through the daemon",
		       r, nr, served);
		if (r == 0) {
			EXPECT_EQ(len, served);
			/*
			 * Direct I/O makes bios of 256 pages or more but the
			 * last, so at most 3, each cut into at most its size
			 * in MiB rounded up: 6 requests at most, not the 25
			 * or more of a cut at the queue's max_sectors.
			 */
			EXPECT_LE(3, nr);
			EXPECT_GE(6, nr);
		} else {
			EXPECT_TRUE(touched);
			EXPECT_GE(1 << 20, served);
		}
		ASSERT_EQ(0, release(self->ch, c_start, claimed[r].len));
	}
	free(disk);
	free(buf);
	free(want);
}

/* SET_PARAMS notify_writes=@on: 0 or -errno. */
static int set_notify(int fd, uint32_t on)
{
	struct ctl c;

	ctl_init(&c, DM_USER_CMD_SET_PARAMS);
	ctl_add(&c, DM_USER_ATTR_NOTIFY_WRITES, DM_USER_TYPE_U32, on);
	return ioctl(fd, DM_USER_IOCTL_CTL, &c) ? -errno : 0;
}

/* Answers @req with @type and a @len of 0 or the request's, no data. */
static ssize_t answer_len(int ch, const struct dm_user_message *req,
			  uint64_t type, uint64_t len)
{
	struct dm_user_message ans = *req;

	ans.type = type;
	ans.len = len;
	return write(ch, &ans, sizeof(ans));
}

/*
 * With notifications on and sectors 64 to 128 claimed, every write comes
 * to the daemon: outside the claims as a notification (sector, length,
 * no data) that holds the write until it is answered, inside them as a
 * request with its data. Reads still go straight to the RAM disk.
 */
TEST_F(claims, write_notifications_complete)
{
	NEED_RAM();
	enum { NOTIFIED, CLAIMED, PARTLY };
	static const struct {
		uint64_t sector;
		size_t len;
		int kind;
	} w[] = {
		{ 0, 4096, NOTIFIED },
		{ 8, 8192, NOTIFIED },
		{ 0, 4096, NOTIFIED },		/* the same sector again */
		{ 64, 4096, CLAIMED },
		{ 56, 8192, PARTLY },
		{ 256, 65536, NOTIFIED },
		{ 0, 4096, NOTIFIED },
		{ 128, 4096, NOTIFIED },	/* just past the claim */
	};
	struct dm_user_message req;
	unsigned int i, notified = 0;

	EXPECT_EQ(0, get_notify(self->ch));
	ASSERT_EQ(0, set_notify(self->ch, 1));
	EXPECT_EQ(1, get_notify(self->ch));
	ASSERT_EQ(1, claim(self->ch, 64, 64));
	for (i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
				     .buf = self->buf, .len = w[i].len,
				     .off = w[i].sector * 512 };
		void *scratch = (char *)self->data + (512 << 10);

		dmu_fill(self->buf, io.len, 100 + i);
		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req, self->data,
					  512 << 10, WAIT_MS)) TH_LOG("write %u", i);
		EXPECT_EQ(w[i].sector, req.sector) TH_LOG("write %u", i);
		EXPECT_EQ(w[i].len, req.len) TH_LOG("write %u", i);
		if (w[i].kind == NOTIFIED) {
			EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE,
				  req.type) TH_LOG("write %u", i);
			/* No data follows, and none reached the disk yet. */
			EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(self->ch, 0));
			EXPECT_FALSE(ram_holds(scratch, self->buf, io.len,
					       w[i].sector));
			EXPECT_EQ(0, __atomic_load_n(&io.done,
						     __ATOMIC_ACQUIRE));
			/* Both lengths an answer without data may have. */
			ASSERT_EQ(DMU_HDR, answer_len(self->ch, &req,
						      DM_USER_RESP_SUCCESS,
						      i % 2 ? req.len : 0));
			notified++;
		} else {
			EXPECT_EQ(DM_USER_REQ_MAP_WRITE, req.type);
			EXPECT_EQ(w[i].kind == PARTLY,
				  !!(req.flags &
				     DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED));
			EXPECT_EQ(0, memcmp(self->data, self->buf, io.len));
			/* The daemon keeps it: the disk never sees it. */
			ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req,
						      DM_USER_RESP_SUCCESS,
						      NULL, 0));
		}
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS)) TH_LOG("write %u", i);
		EXPECT_EQ((ssize_t)io.len, io.ret) TH_LOG("write %u", i);
		EXPECT_EQ(w[i].kind == NOTIFIED,
			  ram_holds(scratch, self->buf, io.len, w[i].sector))
			TH_LOG("write %u", i);
	}

	/* Reads go straight, unseen by the daemon. */
	ASSERT_EQ(65536, pread(self->bdev, self->buf, 65536, 256 * 512));
	ASSERT_EQ(0, ram_io(false, self->data, 65536, RAM_START + 256));
	EXPECT_EQ(0, memcmp(self->buf, self->data, 65536));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_QUEUED));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_READ_REQUESTS));

	EXPECT_EQ(notified, info_num(self->ch, DM_USER_ATTR_NOTIFIED));
	EXPECT_EQ(notified, status_num(self->dev, "notified"));
	/* Let through, a notified write counts as a write too. */
	EXPECT_EQ(sizeof(w) / sizeof(w[0]),
		  info_num(self->ch, DM_USER_ATTR_WRITE_REQUESTS));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_REMAPPED));

	/* A flush is no write: with nothing claimed it goes straight. */
	ASSERT_EQ(0, release(self->ch, 64, 64));
	EXPECT_EQ(0, fsync(self->bdev));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_FLUSH_REQUESTS));
}

/*
 * Writes submitted together (aio, O_DIRECT) are notified in the order they
 * were submitted, each completing once its own notification is answered;
 * the last write to a sector is what the disk holds.
 */
TEST_F(claims, notifications_in_submission_order)
{
	NEED_RAM();
	enum { N = 9 };
	struct iocb cbs[N], *list[N];
	struct timespec now = { 0, 0 }, bound = { WAIT_MS / 1000, 0 };
	struct io_event ev;
	struct dm_user_message req[N];
	io_context_t ctx = 0;
	void *scratch = (char *)self->data + (512 << 10);
	unsigned int i, j;

	ASSERT_EQ(0, set_notify(self->ch, 1));
	ASSERT_EQ(0, io_setup(N, &ctx));
	/* Three sectors, each written three times with a distinct length. */
	for (i = 0; i < N; i++) {
		char *b = (char *)self->buf + i * 16384;

		dmu_fill(b, 16384, 120 + i);
		io_prep_pwrite(&cbs[i], self->bdev, b, 4096 * (1 + i / 3),
			       (i % 3) * 32 * 512);
		list[i] = &cbs[i];
	}
	ASSERT_EQ(N, io_submit(ctx, N, list));
	for (i = 0; i < N; i++) {
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req[i], NULL, 0, WAIT_MS))
			TH_LOG("notification %u", i);
		EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE,
			  req[i].type);
		EXPECT_EQ((i % 3) * 32, req[i].sector) TH_LOG("notification %u", i);
		EXPECT_EQ(4096 * (1 + i / 3), req[i].len) TH_LOG("notification %u", i);
	}
	/* Nothing completes unanswered; each answer completes its write. */
	EXPECT_EQ(0, io_getevents(ctx, 0, 1, &ev, &now));
	for (i = 0; i < N; i++) {
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req[i],
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(1, io_getevents(ctx, 1, 1, &ev, &bound));
		EXPECT_EQ(&cbs[i], ev.obj) TH_LOG("write %u", i);
		EXPECT_EQ(4096 * (1 + i / 3), ev.res) TH_LOG("write %u", i);
	}
	io_destroy(ctx);
	for (j = 0; j < 3; j++)
		EXPECT_TRUE(ram_holds(scratch, (char *)self->buf +
				      (6 + j) * 16384, 12288, j * 32))
			TH_LOG("sector %u", j * 32);
	EXPECT_EQ(N, info_num(self->ch, DM_USER_ATTR_NOTIFIED));
}

/*
 * What an answer to a notification does: ERROR and UNSUPPORTED fail the
 * write with nothing written, a remap sends it elsewhere (on a channel
 * that negotiated it), and answers the kernel refuses change nothing.
 */
TEST_F(claims, notification_answers)
{
	NEED_RAM();
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 8192, .off = 16 * 512 };
	void *scratch = (char *)self->data + (512 << 10);
	struct dm_user_message req;
	struct dm_user_ring_cqe cqe;
	struct ring r;
	uint32_t slot;
	struct ctl c;
	char junk[DMU_HDR + 8192];

	ASSERT_EQ(0, set_notify(self->ch, 1));
	dmu_fill(self->buf, 8192, 140);

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req, DM_USER_RESP_ERROR,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(EIO, io.err);

	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req,
				      DM_USER_RESP_UNSUPPORTED, NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(EOPNOTSUPP, io.err);
	EXPECT_FALSE(ram_holds(scratch, self->buf, 8192, 16));
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_WRITE_ERRORS));

	/* Refused, each changing nothing: then answered for real. */
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, NULL, 0, WAIT_MS));
	EXPECT_EQ(-1, answer_remap(self->ch, &req, 16));
	EXPECT_EQ(EINVAL, errno);	/* the channel did not negotiate it */
	EXPECT_EQ(-1, answer_len(self->ch, &req, DM_USER_RESP_SUCCESS, 4096));
	EXPECT_EQ(EINVAL, errno);
	memcpy(junk, &req, DMU_HDR);
	((struct dm_user_message *)junk)->type = DM_USER_RESP_SUCCESS;
	EXPECT_EQ(-1, write(self->ch, junk, sizeof(junk)));
	EXPECT_EQ(EINVAL, errno);	/* data after it */
	EXPECT_EQ(3, info_num(self->ch, DM_USER_ATTR_BAD_ANSWERS));
	EXPECT_EQ(2, info_num(self->ch, DM_USER_ATTR_NOTIFIED));
	EXPECT_EQ(0, __atomic_load_n(&io.done, __ATOMIC_ACQUIRE));
	ASSERT_EQ(0, negotiate(self->ch, DM_USER_EXT_REMAP, -1, &c));
	ASSERT_EQ(DMU_HDR, answer_remap(self->ch, &req, 1024));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(8192, io.ret);
	EXPECT_TRUE(ram_holds(scratch, self->buf, 8192, 1024));
	EXPECT_FALSE(ram_holds(scratch, self->buf, 8192, 16));
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_REMAPPED));
	EXPECT_EQ(3, info_num(self->ch, DM_USER_ATTR_NOTIFIED));

	/* On a ring: a slot with no data, answered by a completion. */
	ASSERT_EQ(0, ring_open(&r, self->chan, 0));
	dmu_fill(self->buf, 8192, 141);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE,
		  r.desc[slot].type);
	EXPECT_EQ(16, r.desc[slot].sector);
	EXPECT_EQ(8192, r.desc[slot].len);
	/* No data: none in the area, where it would be the first there. */
	EXPECT_EQ(0, r.data[slot]);
	EXPECT_NE(0, memcmp(r.map + r.h->data_offset, self->buf, 8192));
	cqe = (struct dm_user_ring_cqe){ .seq = r.desc[slot].seq,
					 .slot = slot,
					 .type = DM_USER_RESP_SUCCESS };
	ring_post_cqe(&r, cqe);
	ASSERT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(8192, io.ret);
	EXPECT_TRUE(ram_holds(scratch, self->buf, 8192, 16));
	ring_close(&r);
	EXPECT_EQ(4, info_num(self->ch, DM_USER_ATTR_NOTIFIED));
}

/*
 * A notification still queued when a claim covers its range becomes the
 * claimed write it would be if it came now, data and all: once CLAIM
 * returns, nothing the daemon has not seen reaches the range.
 */
TEST_F(claims, claim_takes_queued_notifications)
{
	NEED_RAM();
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 8192, .off = 0 };
	void *scratch = (char *)self->data + (512 << 10);
	struct dm_user_message req;
	int waited;

	ASSERT_EQ(0, set_notify(self->ch, 1));
	dmu_fill(self->buf, 8192, 160);
	ASSERT_EQ(0, dmu_io_start(&io));
	for (waited = 0; info_num(self->ch, DM_USER_ATTR_QUEUED) != 1 &&
	     waited < WAIT_MS; waited += 10)
		usleep(10000);
	ASSERT_EQ(1, info_num(self->ch, DM_USER_ATTR_QUEUED));
	/* Half of it: the rest stays outside. */
	ASSERT_EQ(1, claim(self->ch, 8, 8));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req, self->data, 512 << 10,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, req.type);
	EXPECT_TRUE(req.flags & DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED);
	EXPECT_EQ(0, req.sector);
	EXPECT_EQ(8192, req.len);
	EXPECT_EQ(0, memcmp(self->data, self->buf, 8192));
	/* The daemon keeps it: the disk never sees it. */
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(8192, io.ret);
	EXPECT_FALSE(ram_holds(scratch, (char *)self->buf + 4096, 4096, 8));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_NOTIFIED));
}

/*
 * A claim for reads alone leaves a queued write notification as it is; a
 * claim for writes makes it a claimed write, data and all.
 */
TEST_F(claims, only_write_claims_take_queued_notifications)
{
	NEED_RAM();
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 8192, .off = 0 };
	struct dm_user_message req;
	unsigned int round;
	int waited;

	ASSERT_EQ(0, set_notify(self->ch, 1));
	for (round = 0; round < 2; round++) {
		uint32_t ops = round ? DM_USER_CLAIM_WRITES :
				       DM_USER_CLAIM_READS;

		dmu_fill(self->buf, 8192, 200 + round);
		ASSERT_EQ(0, dmu_io_start(&io));
		for (waited = 0; info_num(self->ch, DM_USER_ATTR_QUEUED) != 1 &&
		     waited < WAIT_MS; waited += 10)
			usleep(10000);
		ASSERT_EQ(1, info_num(self->ch, DM_USER_ATTR_QUEUED));
		ASSERT_EQ(1, claims_ops_cmd(self->ch, DM_USER_CMD_CLAIM, 0, 16,
					    ops)) TH_LOG("round %u", round);
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req, self->data,
					  512 << 10, WAIT_MS));
		EXPECT_EQ(round ? DM_USER_REQ_MAP_WRITE :
			  DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE, req.type)
			TH_LOG("round %u", round);
		EXPECT_FALSE(req.flags & DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED);
		if (round)
			EXPECT_EQ(0, memcmp(self->data, self->buf, 8192));
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
		EXPECT_EQ(8192, io.ret);
		/* Notified: on the disk; claimed: the daemon's alone. */
		ASSERT_EQ(0, ram_io(false, self->data, 8192, RAM_START));
		EXPECT_EQ(!round, !memcmp(self->data, self->buf, 8192))
			TH_LOG("round %u", round);
		ASSERT_EQ(0, release(self->ch, 0, 16));
	}
	EXPECT_EQ(1, info_num(self->ch, DM_USER_ATTR_NOTIFIED));
}

/*
 * Notifications are cut at max_io like requests with data, as a claim
 * makes queued ones writes with their data: 3 MiB written from a buffer in
 * huge pages (so that direct I/O makes bios of more than 1 MiB where the
 * kernel gives huge pages) while nothing is claimed are notifications of at
 * most 1 MiB; claiming everything makes the queued ones writes of at most
 * 1 MiB, with the data of their sectors.
 */
TEST_F(claims, notifications_cut_at_max_io)
{
	NEED_RAM();
	const size_t len = 3 << 20, at = 512 << 10;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE, .len = len,
			     .off = at };
	size_t written = 0, biggest = 0;
	struct dm_user_message req;
	unsigned int nr = 0;
	int waited;
	void *buf;

	ASSERT_EQ(0, posix_memalign(&buf, 2 << 20, 4 << 20));
	madvise(buf, 4 << 20, MADV_HUGEPAGE);
	dmu_fill(buf, len, 170);
	io.buf = buf;
	ASSERT_EQ(0, set_notify(self->ch, 1));
	ASSERT_EQ(0, dmu_io_start(&io));
	for (waited = 0; info_num(self->ch, DM_USER_ATTR_QUEUED) < 1 &&
	     waited < WAIT_MS; waited += 10)
		usleep(10000);
	/* The rest of the parts, mapped on the heels of the first. */
	usleep(200000);
	ASSERT_LE(1, info_num(self->ch, DM_USER_ATTR_QUEUED));
	ASSERT_EQ(1, claim(self->ch, 0, DEV_SECTORS));
	for (waited = 0; waited < WAIT_MS; waited += 10) {
		if (__atomic_load_n(&io.done, __ATOMIC_ACQUIRE))
			break;
		if (dmu_wait_readable(self->ch, 10))
			continue;
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req, self->data, 1 << 20,
					  WAIT_MS)) TH_LOG("message %u", nr);
		EXPECT_EQ(DM_USER_REQ_MAP_WRITE, req.type);
		EXPECT_GE(1 << 20, req.len);
		ASSERT_LE(at / 512, req.sector);
		ASSERT_GE((at + len) / 512, req.sector + req.len / 512);
		EXPECT_EQ(0, memcmp(self->data,
				    (char *)buf + req.sector * 512 - at,
				    req.len)) TH_LOG("message %u", nr);
		biggest = req.len > biggest ? req.len : biggest;
		written += req.len;
		nr++;
		/* The daemon keeps it: the disk never sees it. */
		ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, &req,
					      DM_USER_RESP_SUCCESS, NULL, 0));
	}
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ((ssize_t)len, io.ret);
	EXPECT_EQ(len, written);
	TH_LOG("%u writes, the largest %zu bytes", nr, biggest);
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_NOTIFIED));
	free(buf);
}

/*
 * A known command that refuses with EOPNOTSUPP (CLAIM without a backing
 * device) does not name itself in error_command, which means "unknown".
 */
TEST_F(claims, refusing_command_is_not_unknown)
{
	NEED_RAM();
	struct side_dev d;
	struct ctl c;

	ASSERT_EQ(0, side_create(&d, self->dev, "nb", "%s", ""));
	ctl_init(&c, DM_USER_CMD_CLAIM);
	c.hdr.version = 5;
	ctl_add(&c, DM_USER_ATTR_RANGE_START, DM_USER_TYPE_U64, 0);
	ctl_add(&c, DM_USER_ATTR_RANGE_LEN, DM_USER_TYPE_U64, 8);
	EXPECT_EQ(-1, ioctl(d.ch, DM_USER_IOCTL_CTL, &c));
	EXPECT_EQ(EOPNOTSUPP, errno);
	EXPECT_EQ(0, c.hdr.error_command);
	EXPECT_EQ(0, side_remove(&d));
}

/*
 * The setting: checked, per target, off and on at run time and from the
 * table, refused without a backing device; with no daemon, notified
 * writes wait and fail as claimed I/O does, and reads keep flowing.
 */
TEST_F(claims, notify_writes_setting)
{
	NEED_RAM();
	char out[512], want[512];
	struct side_dev d;
	struct stat st;
	int ro;

	EXPECT_EQ(-ERANGE, set_notify(self->ch, 2));
	ro = open(self->chan, O_RDONLY);
	ASSERT_LE(0, ro);
	EXPECT_EQ(0, get_notify(ro));
	EXPECT_EQ(-EBADF, set_notify(ro, 1));
	close(ro);
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params notify_writes=1",
			     self->dev));
	EXPECT_EQ(1, get_notify(self->ch));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_NE(NULL, strstr(out, "notify_writes=1")) TH_LOG("%s", out);
	EXPECT_EQ(0, set_notify(self->ch, 0));
	/* Off again: a write goes straight. */
	dmu_fill(self->buf, 4096, 150);
	ASSERT_EQ(4096, pwrite(self->bdev, self->buf, 4096, 0));
	EXPECT_TRUE(ram_holds(self->data, self->buf, 4096, 0));
	EXPECT_EQ(0, info_num(self->ch, DM_USER_ATTR_NOTIFIED));

	/* From the table, with no daemon and no_daemon_timeout 0. */
	ASSERT_EQ(0, side_create(&d, self->dev, "nw",
				 "7 backing %s %d passthrough notify_writes no_daemon_timeout 0",
				 ram, RAM_START));
	ASSERT_EQ(0, stat(ram, &st));
	ASSERT_EQ(0, dmu_capture(out, sizeof(out), "dmsetup table %s", d.name));
	snprintf(want, sizeof(want),
		 "0 %d user 0 %d %s 7 backing %u:%u %d passthrough notify_writes no_daemon_timeout 0",
		 DEV_SECTORS, DEV_SECTORS, d.name, major(st.st_rdev),
		 minor(st.st_rdev), RAM_START);
	EXPECT_STREQ(want, out);
	EXPECT_EQ(1, get_notify(d.ch));
	close(d.ch);
	d.ch = -1;
	dmu_fill(self->buf, 4096, 151);
	EXPECT_EQ(-1, pwrite(d.bdev, self->buf, 4096, 0));
	EXPECT_EQ(EIO, errno);
	EXPECT_FALSE(ram_holds(self->data, self->buf, 4096, 0));
	ASSERT_EQ(65536, pread(d.bdev, self->buf, 65536, 4096));
	ASSERT_EQ(0, ram_io(false, self->data, 65536, RAM_START + 8));
	EXPECT_EQ(0, memcmp(self->buf, self->data, 65536));
	EXPECT_EQ(0, side_remove(&d));

	/*
	 * With a no_daemon_timeout of 1 s the target gives up on the daemon
	 * a second on: it has writes to notify, though nothing is claimed.
	 */
	ASSERT_EQ(0, side_create(&d, self->dev, "nw1",
				 "7 backing %s %d passthrough notify_writes no_daemon_timeout 1",
				 ram, RAM_START));
	close(d.ch);
	d.ch = -1;
	{
		struct dmu_io io = { .fd = d.bdev, .kind = DMU_PWRITE,
				     .buf = self->buf, .len = 4096, .off = 0 };

		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
		EXPECT_EQ(-1, io.ret);
		EXPECT_EQ(EIO, io.err);
	}
	EXPECT_EQ(0, side_remove(&d));

	/* Without a backing device: nothing to notify, and said so. */
	ASSERT_EQ(0, side_create(&d, self->dev, "nb", "%s", ""));
	EXPECT_EQ(-EOPNOTSUPP, set_notify(d.ch, 1));
	EXPECT_EQ(0, set_notify(d.ch, 0));
	EXPECT_EQ(UINT64_MAX, get_notify(d.ch));
	EXPECT_EQ(0, side_remove(&d));
}

/*
 * CLAIM of sectors [0, 8), or with @notify SET_PARAMS notify_writes=1, in
 * a thread, to see whether it waits.
 */
struct claim_call {
	pthread_t thread;
	int fd;
	bool notify;
	bool unmap;
	int ret;
	int done;
};

static void *claim_thread(void *arg)
{
	struct claim_call *c = arg;

	c->ret = c->notify ? set_notify(c->fd, 1) :
		 c->unmap ? unmap(c->fd, 0, DEV_SECTORS, 0) :
		 claim(c->fd, 0, 8);
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Runs @c's change in a thread while the lower channel @low_ch holds @low,
 * the write @io waits for: the change must still be waiting after half a
 * second, and return @want once @low is answered, and @io then end with
 * its 4096 bytes. 0, or the line of the first check that failed.
 */
static int change_waits_for(struct claim_call *c, int low_ch,
			    struct dm_user_message *low, struct dmu_io *io,
			    int want)
{
	int line = 0;

	if (pthread_create(&c->thread, NULL, claim_thread, c))
		return __LINE__;
	usleep(500000);
	if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE))
		line = __LINE__;
	if (dmu_answer(low_ch, low, DM_USER_RESP_SUCCESS, NULL, 0) != DMU_HDR &&
	    !line)
		line = __LINE__;
	if (pthread_join(c->thread, NULL) && !line)
		line = __LINE__;
	if (c->ret != want && !line)
		line = __LINE__;
	if ((dmu_io_wait(io, WAIT_MS) || io->ret != 4096) && !line)
		line = __LINE__;
	return line;
}

/*
 * A claim killed while it waits for that I/O is made; the next change
 * finishes the wait before it changes anything.
 */
TEST_F(stacked, killed_claim_still_drains)
{
	struct dm_user_message low;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 4096, .off = 0 };
	struct claim_call c = { .fd = self->up_ch };
	char path[128];
	pid_t pid;
	int st;

	ASSERT_EQ(0, release(self->up_ch, 0, DEV_SECTORS));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data, 1 << 20,
				  WAIT_MS));
	snprintf(path, sizeof(path), "/dev/dm-user/%s", self->upper);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		int fd = open(path, O_RDWR);

		_exit(fd < 0 ? 2 : claim(fd, 64, 8) == 1 ? 0 : 1);
	}
	usleep(500000);
	ASSERT_EQ(0, waitpid(pid, &st, WNOHANG));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	EXPECT_TRUE(WIFSIGNALED(st));
	EXPECT_EQ(1, info_num(self->up_ch, DM_USER_ATTR_CLAIM_RANGES));

	/* This one waits for the write all the same. */
	c.fd = self->up_ch;
	EXPECT_EQ(0, change_waits_for(&c, self->low_ch, &low, &io, 2));
}

/*
 * A claim returns only once I/O mapped before it has left the backing
 * device: here a write held by the lower dm-user device's channel.
 */
TEST_F(stacked, claim_waits_for_io_on_its_way)
{
	struct dm_user_message low;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 4096, .off = 0 };
	struct claim_call c = { .fd = self->up_ch };

	/* The fixture's upper device claims all of itself: release it. */
	ASSERT_EQ(0, release(self->up_ch, 0, DEV_SECTORS));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data, 1 << 20,
				  WAIT_MS));
	EXPECT_EQ(DEV_SECTORS, low.sector);
	EXPECT_EQ(0, change_waits_for(&c, self->low_ch, &low, &io, 1));
	/* Claimed now: the next write is the upper daemon's. */
	io.off = 0;
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->up_ch, &low, self->data, 1 << 20,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, low.type);
	ASSERT_EQ(DMU_HDR, dmu_answer(self->up_ch, &low, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
}

/*
 * A notification let through goes where the mapped ranges send it when it
 * is answered, and an unmap returns only once it has left the backing
 * device: here held by the lower dm-user device's channel.
 */
TEST_F(stacked, unmap_waits_for_notifications_let_through)
{
	struct dm_user_message up, low;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 4096, .off = 0 };
	struct claim_call c = { .fd = self->up_ch, .unmap = true };

	ASSERT_EQ(0, release(self->up_ch, 0, DEV_SECTORS));
	ASSERT_EQ(0, set_notify(self->up_ch, 1));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->up_ch, &up, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE, up.type);
	/* Mapped while the daemon holds it: the answer goes by the map. */
	ASSERT_EQ(1, map(self->up_ch, 0, 8, 64, DM_USER_CLAIM_WRITES));
	ASSERT_EQ(DMU_HDR, dmu_answer(self->up_ch, &up, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data, 1 << 20,
				  WAIT_MS));
	EXPECT_EQ(DEV_SECTORS + 64, low.sector);
	EXPECT_EQ(0, change_waits_for(&c, self->low_ch, &low, &io, 0));
}

/* Every operation that changes data, as the stacked tests submit it. */
static const struct write_op {
	enum dmu_io_kind kind;
	unsigned long ioctl_req;
	uint64_t type;
	uint64_t off;
	uint64_t len;
} write_ops[] = {
	{ DMU_PWRITE, 0, DM_USER_REQ_MAP_WRITE, 8192, 65536 },
	{ DMU_IOCTL_RANGE, BLKDISCARD, DM_USER_REQ_MAP_DISCARD,
	  1 << 20, 1 << 20 },
	{ DMU_IOCTL_RANGE, BLKZEROOUT, DM_USER_REQ_MAP_WRITE_ZEROES,
	  2 << 20, 65536 },
	{ DMU_IOCTL_RANGE, BLKSECDISCARD, DM_USER_REQ_MAP_SECURE_ERASE,
	  3 << 20, 4096 },
};

/*
 * Every operation that changes data is notified, with its own type plus
 * DM_USER_REQ_NOTIFY, its sector and length and no data, and then reaches
 * the backing device as it was.
 */
TEST_F(stacked, every_write_operation_notified)
{
	const struct write_op *ops = write_ops;
	struct dm_user_message req, low;
	unsigned int i;

	ASSERT_EQ(0, release(self->up_ch, 0, DEV_SECTORS));
	ASSERT_EQ(0, set_notify(self->up_ch, 1));
	for (i = 0; i < ARRAY_SIZE(write_ops); i++) {
		struct dmu_io io = { .fd = self->bdev, .kind = ops[i].kind,
				     .ioctl_req = ops[i].ioctl_req,
				     .buf = self->buf, .len = ops[i].len,
				     .off = ops[i].off };

		dmu_fill(self->buf, ops[i].len, 170 + i);
		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->up_ch, &req, NULL, 0, WAIT_MS))
			TH_LOG("op %u", i);
		EXPECT_EQ(DM_USER_REQ_NOTIFY | ops[i].type, req.type)
			TH_LOG("op %u", i);
		EXPECT_EQ(ops[i].off / 512, req.sector);
		EXPECT_EQ(ops[i].len, req.len);
		EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(self->up_ch, 0));
		ASSERT_EQ(DMU_HDR, dmu_answer(self->up_ch, &req,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data,
					  1 << 20, WAIT_MS));
		EXPECT_EQ(ops[i].type, low.type) TH_LOG("op %u", i);
		EXPECT_EQ(DEV_SECTORS + ops[i].off / 512, low.sector);
		EXPECT_EQ(ops[i].len, low.len);
		if (ops[i].type == DM_USER_REQ_MAP_WRITE)
			EXPECT_EQ(0, memcmp(self->data, self->buf,
					    ops[i].len));
		ASSERT_EQ(DMU_HDR, dmu_answer(self->low_ch, &low,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS)) TH_LOG("op %u", i);
		EXPECT_EQ(0, io.err) TH_LOG("op %u: %s", i, strerror(io.err));
	}
	EXPECT_EQ(4, info_num(self->up_ch, DM_USER_ATTR_NOTIFIED));
	EXPECT_EQ(0, info_num(self->up_ch, DM_USER_ATTR_REMAPPED));
}

/*
 * Claimed for writes alone: every operation that changes data comes to
 * the daemon (none reaches the lower device), and a read goes there
 * straight.
 */
TEST_F(stacked, write_claims_take_every_write_operation)
{
	const struct write_op *ops = write_ops;
	struct dmu_io rd = { .fd = self->bdev, .kind = DMU_PREAD,
			     .buf = self->buf, .len = 4096, .off = 4096 };
	struct dm_user_message req, low;
	unsigned int i;

	ASSERT_EQ(0, release(self->up_ch, 0, DEV_SECTORS));
	ASSERT_EQ(1, claims_ops_cmd(self->up_ch, DM_USER_CMD_CLAIM, 0,
				    DEV_SECTORS, DM_USER_CLAIM_WRITES));
	for (i = 0; i < ARRAY_SIZE(write_ops); i++) {
		struct dmu_io io = { .fd = self->bdev, .kind = ops[i].kind,
				     .ioctl_req = ops[i].ioctl_req,
				     .buf = self->buf, .len = ops[i].len,
				     .off = ops[i].off };

		dmu_fill(self->buf, ops[i].len, 180 + i);
		ASSERT_EQ(0, dmu_io_start(&io));
		ASSERT_EQ(0, dmu_read_msg(self->up_ch, &req, self->data,
					  1 << 20, WAIT_MS)) TH_LOG("op %u", i);
		EXPECT_EQ(ops[i].type, req.type) TH_LOG("op %u", i);
		EXPECT_EQ(ops[i].off / 512, req.sector);
		EXPECT_EQ(ops[i].len, req.len);
		EXPECT_FALSE(req.flags & DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED);
		ASSERT_EQ(DMU_HDR, dmu_answer(self->up_ch, &req,
					      DM_USER_RESP_SUCCESS, NULL, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS)) TH_LOG("op %u", i);
		EXPECT_EQ(0, io.err) TH_LOG("op %u: %s", i, strerror(io.err));
		EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(self->low_ch, 0))
			TH_LOG("op %u reached the lower device", i);
	}
	/* A read passes, to the lower device's sector behind it. */
	ASSERT_EQ(0, dmu_io_start(&rd));
	ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_READ, low.type);
	EXPECT_EQ(DEV_SECTORS + 8, low.sector);
	EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(self->up_ch, 0));
	dmu_fill(self->data, 4096, 190);
	ASSERT_EQ(DMU_HDR + 4096, dmu_answer(self->low_ch, &low,
					     DM_USER_RESP_SUCCESS, self->data,
					     4096));
	ASSERT_EQ(0, dmu_io_wait(&rd, WAIT_MS));
	EXPECT_EQ(4096, rd.ret);
	EXPECT_EQ(0, memcmp(self->buf, self->data, 4096));
	EXPECT_EQ(4, info_num(self->up_ch, DM_USER_ATTR_WRITE_REQUESTS) +
		     info_num(self->up_ch, DM_USER_ATTR_DISCARD_REQUESTS) +
		     info_num(self->up_ch, DM_USER_ATTR_WRITE_ZEROES_REQUESTS) +
		     info_num(self->up_ch, DM_USER_ATTR_SECURE_ERASE_REQUESTS));
	EXPECT_EQ(0, info_num(self->up_ch, DM_USER_ATTR_READ_REQUESTS));
}

/*
 * Every operation that changes data, across the start of a range whose
 * writes are mapped, is cut there: the part before reaches the lower
 * device at its own sector, the part after at the mapped one, each with
 * its type and a write with its own part of the data; the upper daemon
 * sees none of it.
 */
TEST_F(stacked, mapped_ranges_cut_every_write_operation)
{
	const struct write_op *ops = write_ops;
	struct dm_user_message low;
	unsigned int i;

	ASSERT_EQ(0, release(self->up_ch, 0, DEV_SECTORS));
	for (i = 0; i < ARRAY_SIZE(write_ops); i++) {
		struct dmu_io io = { .fd = self->bdev, .kind = ops[i].kind,
				     .ioctl_req = ops[i].ioctl_req,
				     .buf = self->buf, .len = ops[i].len,
				     .off = ops[i].off };
		uint64_t sector = ops[i].off / 512, n = ops[i].len / 512;
		/* Mapped from halfway (in whole blocks), or all of it. */
		uint64_t mid = sector + (n >= 16 ? n / 2 / 8 * 8 : 0);
		uint64_t rlen = sector + n - mid, dest = DEV_SECTORS - rlen;
		uint64_t got_before = 0, got_after = 0;
		int waited;

		ASSERT_EQ(1, map(self->up_ch, mid, rlen, dest,
				 DM_USER_CLAIM_WRITES)) TH_LOG("op %u", i);
		dmu_fill(self->buf, ops[i].len, 200 + i);
		ASSERT_EQ(0, dmu_io_start(&io));
		for (waited = 0; waited < WAIT_MS &&
		     !__atomic_load_n(&io.done, __ATOMIC_ACQUIRE);
		     waited += 10) {
			const char *want;
			uint64_t at;

			if (dmu_wait_readable(self->low_ch, 10))
				continue;
			ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low,
						  self->data, 1 << 20,
						  WAIT_MS));
			EXPECT_EQ(ops[i].type, low.type) TH_LOG("op %u", i);
			if (low.sector >= DEV_SECTORS + dest) {
				at = low.sector - DEV_SECTORS - dest;
				EXPECT_LE(at * 512 + low.len, rlen * 512);
				want = (char *)self->buf +
				       (mid - sector + at) * 512;
				got_after += low.len;
			} else {
				at = low.sector - DEV_SECTORS - sector;
				EXPECT_LE(at * 512 + low.len,
					  (mid - sector) * 512)
					TH_LOG("op %u: sector %llu", i,
					       (unsigned long long)low.sector);
				want = (char *)self->buf + at * 512;
				got_before += low.len;
			}
			if (ops[i].type == DM_USER_REQ_MAP_WRITE)
				EXPECT_EQ(0, memcmp(self->data, want, low.len));
			ASSERT_EQ(DMU_HDR, dmu_answer(self->low_ch, &low,
						      DM_USER_RESP_SUCCESS,
						      NULL, 0));
		}
		ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS)) TH_LOG("op %u", i);
		EXPECT_EQ(0, io.err) TH_LOG("op %u: %s", i, strerror(io.err));
		EXPECT_EQ((mid - sector) * 512, got_before) TH_LOG("op %u", i);
		EXPECT_EQ(rlen * 512, got_after) TH_LOG("op %u", i);
		EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(self->up_ch, 0));
		ASSERT_EQ(0, unmap(self->up_ch, 0, DEV_SECTORS, 0));
	}
}

/*
 * Turning notifications on returns only once no write mapped before it,
 * and so not notified, is still on its way to the backing device.
 */
TEST_F(stacked, notify_on_waits_for_io_on_its_way)
{
	struct dm_user_message low;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE,
			     .buf = self->buf, .len = 4096, .off = 0 };
	struct claim_call c = { .fd = self->up_ch, .notify = true };

	ASSERT_EQ(0, release(self->up_ch, 0, DEV_SECTORS));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data, 1 << 20,
				  WAIT_MS));
	EXPECT_EQ(0, change_waits_for(&c, self->low_ch, &low, &io, 0));
	/* On now: the next write is notified first. */
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(self->up_ch, &low, NULL, 0, WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE, low.type);
	ASSERT_EQ(DMU_HDR, dmu_answer(self->up_ch, &low, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_read_msg(self->low_ch, &low, self->data, 1 << 20,
				  WAIT_MS));
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, low.type);
	EXPECT_EQ(DEV_SECTORS, low.sector);
	ASSERT_EQ(DMU_HDR, dmu_answer(self->low_ch, &low, DM_USER_RESP_SUCCESS,
				      NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
}

TEST_HARNESS_MAIN
