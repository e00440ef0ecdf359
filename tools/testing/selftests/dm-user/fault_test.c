// SPDX-License-Identifier: GPL-2.0
/*
 * Fault injection (debug kernel only): every step of a dm-user device's life
 * -- table load, activation, channel open, control command, I/O on both the
 * submitter's and the daemon's side, requeue on close, removal -- is run
 * again and again with the n-th fault point of the calling task made to
 * fail, n = 1, 2, ... until the step completes without reaching a fault
 * point. /proc/thread-self/fail-nth drives failslab (kmalloc),
 * fail_page_alloc (alloc_pages) and fail_usercopy (copy_to/from_user) this
 * way. Each failure must be clean: the step fails with an error or
 * recovers, nothing is left half set up, no request is lost, and the data
 * read back afterwards is what was written. kernel_report.sh, run after
 * this, fails the lane on any KASAN, lockdep or kmemleak report.
 *
 * Skips when the kernel has no fault injection (the stock kernels).
 */
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/dm-ioctl.h>

#include "dmu_test.h"
#include "kselftest_harness.h"

#define DEV_SECTORS	2048
#define DEV_BYTES	(DEV_SECTORS * 512)
/* More fault points than any step has: reaching it means a loop. */
#define MAX_NTH		20000

static unsigned long faults_injected;

/* --------------------------------------------------------------------
 * fail-nth of the calling thread
 */

static int nth_open(void)
{
	return open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
}

static int nth_write(int fd, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);
	int tries;

	/* Writing may itself hit a user-copy fault point: then try again. */
	for (tries = 0; tries < 3; tries++)
		if (pwrite(fd, buf, len, 0) == len)
			return 0;
	return -1;
}

/*
 * Disarms fail-nth; returns 1 if the armed fault fired, 0 if the step ended
 * before reaching it, -1 on error.
 */
static int nth_fired(int fd)
{
	char buf[16] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	int fired;

	/*
	 * The read's own copy to user space is a fault point: if that was
	 * the armed one, the step did not reach it.
	 */
	if (n < 0)
		fired = errno == EFAULT ? 0 : -1;
	else
		fired = atoi(buf) == 0;
	if (nth_write(fd, 0))
		return -1;
	if (fired == 1)
		faults_injected++;
	return fired;
}

/* Writes a debugfs fault attribute; 0 or -errno. */
static int fault_attr(const char *fault, const char *attr, const char *val)
{
	char path[128];
	int fd, r = 0;

	snprintf(path, sizeof(path), "/sys/kernel/debug/%s/%s", fault, attr);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		r = -errno;
	close(fd);
	return r;
}

/*
 * fail-nth counts only calls that pass each fault's filters: make every
 * allocation eligible, sleeping ones included, and keep the log quiet.
 */
static int setup_faults(void)
{
	static const char *const faults[] = {
		"failslab", "fail_page_alloc", "fail_usercopy",
	};
	unsigned int i;

	if (access("/proc/thread-self/fail-nth", W_OK))
		return -ENOENT;
	if (fault_attr("failslab", "ignore-gfp-wait", "N") ||
	    fault_attr("fail_page_alloc", "ignore-gfp-wait", "N") ||
	    fault_attr("fail_page_alloc", "ignore-gfp-highmem", "N") ||
	    fault_attr("fail_page_alloc", "min-order", "0"))
		return -ENOENT;
	for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		if (fault_attr(faults[i], "verbose", "0"))
			return -ENOENT;
	return 0;
}

/* --------------------------------------------------------------------
 * device-mapper ioctls, without libdevmapper, so that a fault point in
 * the step is the kernel's, not the library's
 */

struct dm_req {
	struct dm_ioctl io;
	char data[1024];
};

static int dm_fd = -1;

static void dm_req_init(struct dm_req *r, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->io.version[0] = DM_VERSION_MAJOR;
	r->io.data_size = sizeof(*r);
	r->io.data_start = sizeof(r->io);
	snprintf(r->io.name, sizeof(r->io.name), "%s", name);
}

/* Arms fail-nth @n (0: none) around one ioctl; -errno or 0. */
static int dm_cmd(unsigned long cmd, struct dm_req *r, int nth_fd,
		  unsigned int n)
{
	int ret;

	if (n && nth_write(nth_fd, n))
		return -EIO;
	ret = ioctl(dm_fd, cmd, r);
	return ret ? -errno : 0;
}

static int dm_create(const char *name, unsigned int *minor)
{
	struct dm_req r;
	int ret;

	dm_req_init(&r, name);
	ret = dm_cmd(DM_DEV_CREATE, &r, -1, 0);
	if (!ret && minor)
		*minor = minor(r.io.dev);
	return ret;
}

static int dm_load(const char *name, const char *params, int nth_fd,
		   unsigned int n)
{
	struct dm_req r;
	struct dm_target_spec *spec;

	dm_req_init(&r, name);
	spec = (struct dm_target_spec *)r.data;
	spec->sector_start = 0;
	spec->length = DEV_SECTORS;
	snprintf(spec->target_type, sizeof(spec->target_type), "user");
	snprintf((char *)(spec + 1), sizeof(r.data) - sizeof(*spec), "%s",
		 params);
	r.io.target_count = 1;
	return dm_cmd(DM_TABLE_LOAD, &r, nth_fd, n);
}

static int dm_simple(unsigned long cmd, const char *name, int nth_fd,
		     unsigned int n)
{
	struct dm_req r;

	dm_req_init(&r, name);
	return dm_cmd(cmd, &r, nth_fd, n);
}

static int node_exists(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/dev/dm-user/%s", name);
	return !stat(path, &st);
}

/*
 * devtmpfs creates and deletes nodes on behalf of device_add() and
 * device_del(), which do not report its allocation failures: under an
 * injected fault a node can be missing for a registered device, or left
 * behind for a deleted one, whatever the driver does (udev would repair
 * both from the uevent). These check that the device itself is right and
 * repair the node as udev would.
 */
static unsigned int devtmpfs_misses;

static int device_registered(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/class/dm-user/dm-user!%s", name);
	return !stat(path, &st);
}

/* A node left behind must lead nowhere; then it is removed. */
static int drop_stale_node(const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/dev/dm-user/%s", name);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return -1;
	}
	if (errno != ENXIO && errno != ENODEV)
		return -1;
	devtmpfs_misses++;
	return unlink(path);
}

static int open_node(const char *name, int flags)
{
	char path[128];

	snprintf(path, sizeof(path), "/dev/dm-user/%s", name);
	return open(path, flags | O_CLOEXEC);
}

static int open_disk(unsigned int minor)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/dm-%u", minor);
	return open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
}

/* A live device named @name with its table loaded and active. */
static int make_device(const char *name, unsigned int *minor)
{
	char params[128];
	int r;

	snprintf(params, sizeof(params), "0 %d %s 1 queue_if_no_daemon",
		 DEV_SECTORS, name);
	r = dm_create(name, minor);
	if (!r)
		r = dm_load(name, params, -1, 0);
	if (!r)
		r = dm_simple(DM_DEV_SUSPEND, name, -1, 0);
	return r;
}

/* --------------------------------------------------------------------
 * a daemon that survives its own faults: EFAULT and short transfers are
 * retried from where they stopped
 */

static int read_fully(int fd, void *buf, size_t len, size_t *done_out)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n;
		int r = dmu_wait_readable(fd, 5000);

		/* poll() copies its array from user space: a fault point. */
		if (r == -EFAULT)
			continue;
		if (r)
			return r;
		n = read(fd, (char *)buf + done, len - done);
		if (n < 0 && errno == EFAULT)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		done += n;
		if (done_out)
			*done_out = done;
	}
	return 0;
}

static int write_fully(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno == EFAULT)
			continue;
		if (n < 0)
			return -errno;
		done += n;
	}
	return 0;
}

/*
 * Serves one request from a RAM store, with fail-nth @n armed (0: none)
 * for the whole exchange. Returns the request type or -errno.
 */
static int serve_one(int fd, unsigned char *store, int nth_fd, unsigned int n)
{
	static unsigned char data[65536];
	struct dm_user_message hdr;
	int r;

	if (n && nth_write(nth_fd, n))
		return -EIO;
	r = read_fully(fd, &hdr, sizeof(hdr), NULL);
	if (!r && hdr.type == DM_USER_REQ_MAP_WRITE) {
		if (hdr.len > sizeof(data) || hdr.sector * 512 + hdr.len > DEV_BYTES)
			r = -E2BIG;
		else
			r = read_fully(fd, data, hdr.len, NULL);
		if (!r)
			memcpy(store + hdr.sector * 512, data, hdr.len);
	}
	if (!r) {
		struct dm_user_message ans = hdr;

		ans.type = DM_USER_RESP_SUCCESS;
		r = write_fully(fd, &ans, sizeof(ans));
		if (!r && hdr.type == DM_USER_REQ_MAP_READ)
			r = write_fully(fd, store + hdr.sector * 512, hdr.len);
	}
	return r ? r : (int)hdr.type;
}

/* Serves until @io is done (bounded), no faults. */
static int serve_until_done(int fd, unsigned char *store, struct dmu_io *io)
{
	int i;

	for (i = 0; i < 100 && !__atomic_load_n(&io->done, __ATOMIC_ACQUIRE);
	     i++) {
		if (dmu_wait_readable(fd, 100))
			continue;
		if (serve_one(fd, store, -1, 0) < 0)
			return -1;
	}
	return dmu_io_wait(io, 5000);
}

/* Writes then reads back a pattern through the device, served by @ch. */
static int check_data(int disk, int ch, unsigned char *store, uint32_t seed)
{
	unsigned char *out = dmu_alloc(8192), *in = dmu_alloc(8192);
	struct dmu_io io = { .fd = disk, .len = 8192, .off = 65536 };
	int ok = -1;

	if (!out || !in)
		goto out;
	dmu_fill(out, 8192, seed);
	io.kind = DMU_PWRITE;
	io.buf = out;
	if (dmu_io_start(&io) || serve_until_done(ch, store, &io) ||
	    io.ret != 8192)
		goto out;
	io.kind = DMU_PREAD;
	io.buf = in;
	if (dmu_io_start(&io) || serve_until_done(ch, store, &io) ||
	    io.ret != 8192)
		goto out;
	ok = memcmp(in, out, 8192) ? -1 : 0;
out:
	free(out);
	free(in);
	return ok;
}

/* --------------------------------------------------------------------
 * the tests
 */

/*
 * Each step walks every fault point of its path. On the slowest lane (the
 * debug kernel under emulation) the whole test took 44 s, over the
 * harness's default 30 s bound per step on a slower machine before: the
 * bound is per step (TEST_F_TIMEOUT), with room for a host several times
 * slower, and a line every 25 points shows the step is moving.
 */
#define STEP_TIMEOUT	300

static void progress(struct __test_metadata *_metadata, const char *step,
		     unsigned int n)
{
	static struct timespec t0;
	struct timespec now;

	if (n == 1)
		clock_gettime(CLOCK_MONOTONIC, &t0);
	if (n % 25)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	TH_LOG("%s: fault point %u, %ld s", step, n,
	       (long)(now.tv_sec - t0.tv_sec));
}

FIXTURE(faults) {
	int nth;
	char name[64];
	unsigned int minor;
};

FIXTURE_SETUP(faults)
{
	if (setup_faults())
		SKIP(return, "no fault injection (needs the debug kernel)");
	if (dm_fd < 0)
		dm_fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, dm_fd);
	self->nth = nth_open();
	ASSERT_LE(0, self->nth);
	snprintf(self->name, sizeof(self->name), "dmu_fault_%d", getpid());
}

FIXTURE_TEARDOWN(faults)
{
	if (self->nth >= 0) {
		nth_write(self->nth, 0);
		close(self->nth);
	}
	dmu_remove(self->name);
	TH_LOG("faults injected in this test: %lu (devtmpfs node misses: %u)",
	       faults_injected, devtmpfs_misses);
}

/* Table load and destruction of the inactive table, then activation. */
TEST_F_TIMEOUT(faults, create, STEP_TIMEOUT)
{
	char params[128];
	unsigned int n, failed = 0;
	int r, fired;

	snprintf(params, sizeof(params), "0 %d %s 6 uid 1 gid 1 mode 0660",
		 DEV_SECTORS, self->name);
	ASSERT_EQ(0, dm_create(self->name, &self->minor));
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "create 1", n);
		r = dm_load(self->name, params, self->nth, n);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);
		if (r) {
			ASSERT_EQ(1, fired) TH_LOG("load failed (%d) without a fault", r);
		}
		/*
		 * EFAULT: dm loaded the table but could not copy its reply
		 * out; the table is there as after a success.
		 */
		if (device_registered(self->name)) {
			ASSERT_TRUE(!r || r == -EFAULT) TH_LOG("load: %d", r);
			if (!node_exists(self->name)) {
				ASSERT_EQ(1, fired);
				devtmpfs_misses++;
			}
			/* Destroys the inactive table: the target's dtr. */
			ASSERT_EQ(0, dm_simple(DM_TABLE_CLEAR, self->name, -1, 0));
			ASSERT_FALSE(node_exists(self->name));
			ASSERT_FALSE(device_registered(self->name));
		} else {
			/* A failed load leaves nothing behind. */
			ASSERT_NE(0, r);
			ASSERT_FALSE(node_exists(self->name));
			failed++;
		}
		if (!fired)
			break;
	}
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("table load: %u fault points, %u loads failed cleanly", n - 1, failed);

	/* Activation (resume), with the table loaded each time. */
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "create 2", n);
		ASSERT_EQ(0, dm_load(self->name, params, -1, 0));
		r = dm_simple(DM_DEV_SUSPEND, self->name, self->nth, n);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);
		if (r) {
			ASSERT_EQ(1, fired) TH_LOG("resume failed (%d) without a fault", r);
		}
		if (!fired) {
			ASSERT_EQ(0, r);
			break;
		}
		/* Start again from an empty device. */
		ASSERT_EQ(0, dm_simple(DM_DEV_REMOVE, self->name, -1, 0));
		ASSERT_FALSE(node_exists(self->name));
		ASSERT_EQ(0, dm_create(self->name, &self->minor));
	}
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("activation: %u fault points", n - 1);
	ASSERT_TRUE(node_exists(self->name));
}

/* Opening channels and control commands. */
TEST_F_TIMEOUT(faults, open_and_control, STEP_TIMEOUT)
{
	unsigned char *store = calloc(1, DEV_BYTES);
	struct dm_user_ctl *ctl = calloc(1, 4096);
	unsigned int n;
	int fd, disk, fired;

	ASSERT_NE(NULL, store);
	ASSERT_NE(NULL, ctl);
	ASSERT_EQ(0, make_device(self->name, &self->minor));
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "open_and_control 1", n);
		ASSERT_EQ(0, nth_write(self->nth, n));
		fd = open_node(self->name, O_RDWR);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);
		if (fd < 0) {
			ASSERT_EQ(1, fired) TH_LOG("open failed (%d) without a fault", errno);
		} else {
			close(fd);
		}
		if (!fired) {
			ASSERT_LE(0, fd);
			break;
		}
	}
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("channel open: %u fault points", n - 1);

	fd = open_node(self->name, O_RDWR);
	ASSERT_LE(0, fd);
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "open_and_control 2", n);
		int r;

		memset(ctl, 0, 4096);
		ctl->size = 4096;
		ctl->version = DM_USER_CTL_VERSION;
		ctl->command = DM_USER_CMD_GET_INFO;
		ASSERT_EQ(0, nth_write(self->nth, n));
		r = ioctl(fd, DM_USER_IOCTL_CTL, ctl);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);
		if (r) {
			ASSERT_EQ(1, fired) TH_LOG("GET_INFO failed (%d) without a fault", errno);
		}
		if (!fired) {
			ASSERT_EQ(0, r);
			break;
		}
	}
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("GET_INFO: %u fault points", n - 1);

	/* The channel still serves, with the right data. */
	disk = open_disk(self->minor);
	ASSERT_LE(0, disk);
	ASSERT_EQ(0, check_data(disk, fd, store, 7));
	close(disk);
	close(fd);
	free(ctl);
	free(store);
}

/* A daemon thread, without faults, for when the test thread submits. */
struct server {
	pthread_t thread;
	int ch;
	unsigned char *store;
	int stop;
	int err;
};

static void *server_loop(void *arg)
{
	struct server *srv = arg;

	while (!__atomic_load_n(&srv->stop, __ATOMIC_ACQUIRE)) {
		if (dmu_wait_readable(srv->ch, 100))
			continue;
		if (serve_one(srv->ch, srv->store, -1, 0) < 0) {
			srv->err = 1;
			break;
		}
	}
	return NULL;
}

/*
 * I/O: faults in the submitter (a direct write) and in the daemon (reading
 * the request, writing the answer). Every write that succeeds must read
 * back; the daemon's own faults must cost nothing but a retry.
 */
TEST_F_TIMEOUT(faults, io, STEP_TIMEOUT)
{
	unsigned char *store = calloc(1, DEV_BYTES);
	unsigned char *out = dmu_alloc(4096), *in = dmu_alloc(4096);
	struct server srv = { 0 };
	unsigned int n, k, failed = 0;
	int disk, fired;
	ssize_t r;

	ASSERT_NE(NULL, store);
	ASSERT_NE(NULL, out);
	ASSERT_NE(NULL, in);
	ASSERT_EQ(0, make_device(self->name, &self->minor));
	srv.ch = open_node(self->name, O_RDWR);
	ASSERT_LE(0, srv.ch);
	srv.store = store;
	disk = open_disk(self->minor);
	ASSERT_LE(0, disk);

	/* The submitter's faults: this thread writes, armed. */
	ASSERT_EQ(0, pthread_create(&srv.thread, NULL, server_loop, &srv));
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "io 1", n);
		off_t off = (off_t)(n % 64) * 4096;

		dmu_fill(out, 4096, n);
		ASSERT_EQ(0, nth_write(self->nth, n));
		r = pwrite(disk, out, 4096, off);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);
		if (r != 4096) {
			ASSERT_EQ(1, fired) TH_LOG("write failed (%zd, %d) without a fault", r, errno);
			failed++;
		} else {
			ASSERT_EQ(4096, pread(disk, in, 4096, off));
			ASSERT_EQ(0, memcmp(in, out, 4096)) TH_LOG("fault %u: data differs", n);
		}
		if (!fired)
			break;
	}
	__atomic_store_n(&srv.stop, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(srv.thread, NULL));
	ASSERT_EQ(0, srv.err);
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("submitter: %u fault points, %u writes failed cleanly", n - 1, failed);

	/*
	 * The daemon's faults: this thread serves, armed, while a thread
	 * writes (the daemon reads data) or reads (the daemon writes data).
	 */
	for (k = 0; k < 2; k++) {
		bool write = k == 0;
		unsigned char *buf = write ? out : in;

		for (n = 1; n < MAX_NTH; n++) {
			progress(_metadata, "io 2", n);
			struct dmu_io io = {
				.fd = disk, .kind = write ? DMU_PWRITE : DMU_PREAD,
				.buf = buf, .len = 4096,
				.off = (off_t)(n % 64) * 4096,
			};
			int type;

			if (write)
				dmu_fill(out, 4096, n + 100000);
			else
				memset(in, 0, 4096);
			ASSERT_EQ(0, dmu_io_start(&io));
			ASSERT_EQ(0, dmu_wait_readable(srv.ch, 5000));
			type = serve_one(srv.ch, store, self->nth, n);
			fired = nth_fired(self->nth);
			ASSERT_LE(0, fired);
			ASSERT_EQ(write ? DM_USER_REQ_MAP_WRITE :
				  DM_USER_REQ_MAP_READ, type);
			ASSERT_EQ(0, dmu_io_wait(&io, 5000));
			ASSERT_EQ(4096, io.ret);
			ASSERT_EQ(0, memcmp(store + io.off, buf, 4096));
			if (!fired)
				break;
		}
		ASSERT_LT(n, MAX_NTH);
		TH_LOG("daemon, %s request: %u fault points, all retried",
		       write ? "write" : "read", n - 1);
	}

	ASSERT_EQ(0, check_data(disk, srv.ch, store, 11));
	close(disk);
	close(srv.ch);
	free(store);
	free(out);
	free(in);
}

/*
 * Requeue: a channel that read a write request closes (armed); the request
 * must reach the next channel whole, and complete once.
 */
TEST_F_TIMEOUT(faults, requeue, STEP_TIMEOUT)
{
	unsigned char *store = calloc(1, DEV_BYTES);
	unsigned char *out = dmu_alloc(4096);
	struct dm_user_message hdr;
	unsigned int n;
	int disk, ch, fired;

	ASSERT_NE(NULL, store);
	ASSERT_NE(NULL, out);
	ASSERT_EQ(0, make_device(self->name, &self->minor));
	disk = open_disk(self->minor);
	ASSERT_LE(0, disk);
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "requeue 1", n);
		struct dmu_io io = { .fd = disk, .kind = DMU_PWRITE, .buf = out,
				     .len = 4096, .off = (off_t)(n % 64) * 4096 };

		dmu_fill(out, 4096, n + 200000);
		ASSERT_EQ(0, dmu_io_start(&io));
		ch = open_node(self->name, O_RDWR);
		ASSERT_LE(0, ch);
		/* Read the header and half the data, then close. */
		ASSERT_EQ(0, dmu_wait_readable(ch, 5000));
		ASSERT_EQ(DMU_HDR, read(ch, &hdr, sizeof(hdr)));
		ASSERT_EQ(2048, read(ch, store, 2048));
		ASSERT_EQ(0, nth_write(self->nth, n));
		close(ch);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);

		ch = open_node(self->name, O_RDWR);
		ASSERT_LE(0, ch);
		ASSERT_EQ(0, dmu_wait_readable(ch, 5000));
		ASSERT_EQ(DM_USER_REQ_MAP_WRITE, serve_one(ch, store, -1, 0));
		ASSERT_EQ(0, dmu_io_wait(&io, 5000));
		ASSERT_EQ(4096, io.ret);
		ASSERT_EQ(0, memcmp(store + io.off, out, 4096));
		close(ch);
		if (!fired)
			break;
	}
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("requeue on close: %u fault points", n - 1);
	close(disk);
	free(store);
	free(out);
}

/* NEGOTIATE for a ring of the default depth on @fd; 0 or -errno. */
static int negotiate_ring(int fd, uint64_t *size)
{
	struct dm_user_ctl *ctl = calloc(1, 4096);
	struct dm_user_attr *a;
	uint32_t off = 0;
	int r = 0;

	if (!ctl)
		return -ENOMEM;
	ctl->size = 4096;
	ctl->version = 1;
	ctl->command = DM_USER_CMD_NEGOTIATE;
	a = (void *)ctl->data;
	*a = (struct dm_user_attr){ .tag = DM_USER_ATTR_EXTENSIONS,
		.type = DM_USER_TYPE_U64, .len = 8 };
	*(uint64_t *)a->value = DM_USER_EXT_RING;
	a = (void *)(ctl->data + 16);
	*a = (struct dm_user_attr){ .tag = DM_USER_ATTR_RING_DEPTH,
		.type = DM_USER_TYPE_U32, .len = 4 };
	ctl->in_len = 32;
	if (ioctl(fd, DM_USER_IOCTL_CTL, ctl))
		r = -errno;
	while (!r && off + sizeof(*a) <= ctl->out_len) {
		a = (void *)(ctl->data + off);
		if (a->tag == DM_USER_ATTR_RING_SIZE)
			memcpy(size, a->value, 8);
		off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	}
	free(ctl);
	return r;
}

/*
 * The ring: NEGOTIATE (the ring's allocations), armed, fails cleanly or
 * works. Then the I/O path: RING_ENTER posting a write and consuming its
 * completion must allocate nothing (the ring may serve swap), so with a
 * fault armed for its first allocation none fires, and the write is served
 * whole.
 */
TEST_F_TIMEOUT(faults, ring, STEP_TIMEOUT)
{
	unsigned char *out = dmu_alloc(4096);
	struct dm_user_ring_sqe sqe;
	struct dm_user_message *m;
	struct dm_user_ring *h;
	uint64_t size = 0, off;
	unsigned int n;
	int disk, fd, fired, r;
	struct dmu_io io;
	uint32_t tail;
	char *map;

	ASSERT_NE(NULL, out);
	ASSERT_EQ(0, make_device(self->name, &self->minor));
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "ring", n);
		fd = open_node(self->name, O_RDWR);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, nth_write(self->nth, n));
		r = negotiate_ring(fd, &size);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);
		if (r) {
			ASSERT_EQ(1, fired) TH_LOG("NEGOTIATE failed (%d) without a fault", r);
		}
		if (!fired) {
			ASSERT_EQ(0, r);
			break;
		}
		close(fd);
	}
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("ring negotiation: %u fault points", n - 1);
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map);
	h = (void *)map;
	/* Faulted in now: page tables are allocations of this task too. */
	for (off = 0; off < size; off += 4096)
		((volatile char *)map)[off] = map[off];

	disk = open_disk(self->minor);
	ASSERT_LE(0, disk);
	io = (struct dmu_io){ .fd = disk, .kind = DMU_PWRITE, .buf = out,
			      .len = 4096, .off = 8192 };
	dmu_fill(out, 4096, 300001);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_wait_readable(fd, 5000));
	ASSERT_EQ(0, nth_write(self->nth, 1));
	r = ioctl(fd, DM_USER_IOCTL_RING_ENTER, 0);
	ASSERT_EQ(1, r) TH_LOG("RING_ENTER: %s", r < 0 ? strerror(errno) : "no request");
	tail = __atomic_load_n(&h->sq_tail, __ATOMIC_ACQUIRE);
	sqe = ((struct dm_user_ring_sqe *)(map + h->sq_offset))
		[(tail - 1) & (h->depth - 1)];
	m = (struct dm_user_message *)(map + h->desc_offset) + sqe.slot;
	ASSERT_EQ(DM_USER_REQ_MAP_WRITE, m->type);
	ASSERT_EQ(0, memcmp(map + h->data_offset + sqe.data, out, 4096));
	((struct dm_user_ring_cqe *)(map + h->cq_offset))
		[h->cq_tail & (h->depth - 1)] = (struct dm_user_ring_cqe){
			.seq = m->seq, .slot = sqe.slot,
			.type = DM_USER_RESP_SUCCESS };
	__atomic_store_n(&h->cq_tail, h->cq_tail + 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, ioctl(fd, DM_USER_IOCTL_RING_ENTER, 0));
	fired = nth_fired(self->nth);
	EXPECT_EQ(0, fired) TH_LOG("the ring's I/O path allocated memory");
	ASSERT_EQ(0, nth_write(self->nth, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, 5000));
	ASSERT_EQ(4096, io.ret);
	munmap(map, size);
	close(fd);
	close(disk);
	free(out);
}

/*
 * Removal with a daemon attached: a failed remove leaves a working device;
 * a successful one wakes the daemon with ENOTBLK and leaves no node.
 */
TEST_F_TIMEOUT(faults, remove, STEP_TIMEOUT)
{
	unsigned char *store = calloc(1, DEV_BYTES);
	unsigned int n, failed = 0;
	int disk, ch, r, fired;

	ASSERT_NE(NULL, store);
	for (n = 1; n < MAX_NTH; n++) {
		progress(_metadata, "remove 1", n);
		ASSERT_EQ(0, make_device(self->name, &self->minor));
		ch = open_node(self->name, O_RDWR);
		ASSERT_LE(0, ch);
		r = dm_simple(DM_DEV_REMOVE, self->name, self->nth, n);
		fired = nth_fired(self->nth);
		ASSERT_LE(0, fired);
		if (r) {
			ASSERT_EQ(1, fired) TH_LOG("remove failed (%d) without a fault", r);
		}
		/* EFAULT: removed, but dm could not copy its reply out. */
		if (r && dm_simple(DM_DEV_STATUS, self->name, -1, 0) == 0) {
			failed++;
			/* Still a working device. */
			disk = open_disk(self->minor);
			ASSERT_LE(0, disk);
			ASSERT_EQ(0, check_data(disk, ch, store, n));
			close(disk);
			ASSERT_EQ(0, dm_simple(DM_DEV_REMOVE, self->name, -1, 0));
		}
		ASSERT_EQ(-1, read(ch, store, 4096));
		ASSERT_EQ(ENOTBLK, errno);
		close(ch);
		ASSERT_FALSE(device_registered(self->name));
		if (node_exists(self->name)) {
			ASSERT_EQ(1, fired);
			ASSERT_EQ(0, drop_stale_node(self->name));
		}
		if (!fired)
			break;
	}
	ASSERT_LT(n, MAX_NTH);
	TH_LOG("remove: %u fault points, %u removals failed cleanly", n - 1, failed);
	free(store);
}

TEST_HARNESS_MAIN
