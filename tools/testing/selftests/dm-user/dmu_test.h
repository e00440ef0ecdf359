/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the dm-user selftests written in C: creating and
 * removing devices, acting as a daemon on a channel with bounded waits, and
 * submitting block I/O from a thread so the test can serve it.
 */
#ifndef DMU_TEST_H
#define DMU_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define DMU_HDR ((ssize_t)sizeof(struct dm_user_message))

/* Runs a shell command built from a format; returns its exit status. */
static inline int dmu_run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Output of a shell command, first line, newline stripped. */
static inline int dmu_capture(char *out, size_t outlen, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	out[0] = 0;
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (!fgets(out, (int)outlen, f))
		out[0] = 0;
	out[strcspn(out, "\n")] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static inline int dmu_create(const char *dev, const char *table)
{
	return dmu_run("dmsetup create %s --table '%s' 2>&1", dev, table);
}

static inline int dmu_remove(const char *dev)
{
	return dmu_run("dmsetup remove --retry %s >/dev/null 2>&1", dev);
}

/* The mark dmu_kmsg_mark() last wrote to the kernel log, 0 if none. */
static unsigned int dmu_kmsg_marks;

/*
 * Writes a mark to the kernel log: dmu_kmsg_has() then looks only at what
 * came after it, so that a line an earlier step logged cannot answer for
 * a later one.
 */
static inline int dmu_kmsg_mark(void)
{
	return dmu_run("echo 'dmu-test-mark-%d-%u' > /dev/kmsg", getpid(),
		       ++dmu_kmsg_marks);
}

/*
 * Whether the kernel log holds @text after the last mark (without one,
 * in its last lines): for a constructor's reasons, which are not rate
 * limited as those of refused answers are.
 */
static inline bool dmu_kmsg_has(const char *text)
{
	if (!dmu_kmsg_marks)
		return !dmu_run("dmesg | tail -n 20 | grep -q '%s'", text);
	return !dmu_run("dmesg | sed -n '/dmu-test-mark-%d-%u$/,$p' | grep -q '%s'",
			getpid(), dmu_kmsg_marks, text);
}

/* Reads a sysfs queue attribute of a mapped device. */
static inline int dmu_queue_attr(const char *mapper, const char *attr,
				 char *out, size_t outlen)
{
	char path[256];
	struct stat st;
	ssize_t n;
	int fd;

	if (stat(mapper, &st))
		return -errno;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s",
		 major(st.st_rdev), minor(st.st_rdev), attr);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, out, outlen - 1);
	close(fd);
	if (n < 0)
		return -errno;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

/* Waits up to @ms for @fd to become readable; 0, -ETIMEDOUT or -errno. */
static inline int dmu_wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = poll(&p, 1, ms);

	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	if (p.revents & POLLHUP)
		return -ENOTBLK;
	/* POLLERR alone: the kernel reset the channel. */
	if (p.revents & POLLERR)
		return -ECONNRESET;
	return 0;
}

/*
 * Reads one whole message: the header and, for a write, its data into
 * @data (at most @max bytes). Reads at most @chunk bytes per call when
 * @chunk is non-zero, to exercise split reads. Bounded by @ms.
 */
static inline int dmu_read_msg_split(int fd, struct dm_user_message *hdr,
				     void *data, size_t max, size_t chunk,
				     int ms)
{
	size_t got = 0, want = DMU_HDR;
	char *h = (char *)hdr;
	int r;

	while (got < want) {
		size_t left = want - got;
		ssize_t n;

		if (chunk && left > chunk)
			left = chunk;
		r = dmu_wait_readable(fd, ms);
		if (r)
			return r;
		if (got < (size_t)DMU_HDR) {
			if (left > DMU_HDR - got)
				left = DMU_HDR - got;
			n = read(fd, h + got, left);
		} else {
			n = read(fd, (char *)data + got - DMU_HDR, left);
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		got += n;
		if (got == (size_t)DMU_HDR && hdr->type == DM_USER_REQ_MAP_WRITE) {
			if (hdr->len > max)
				return -E2BIG;
			want = DMU_HDR + hdr->len;
		}
	}
	return 0;
}

static inline int dmu_read_msg(int fd, struct dm_user_message *hdr,
			       void *data, size_t max, int ms)
{
	return dmu_read_msg_split(fd, hdr, data, max, 0, ms);
}

/* Writes an answer: header with @type, then @len bytes of @data if any. */
static inline ssize_t dmu_answer(int fd, const struct dm_user_message *req,
				 uint64_t type, const void *data, size_t len)
{
	struct dm_user_message ans = *req;
	struct iovec iov[2] = {
		{ .iov_base = &ans, .iov_len = sizeof(ans) },
		{ .iov_base = (void *)data, .iov_len = len },
	};

	ans.type = type;
	return writev(fd, iov, data && len ? 2 : 1);
}

/* Block I/O running in a thread, so the test can play the daemon. */
enum dmu_io_kind { DMU_PREAD, DMU_PWRITE, DMU_FSYNC, DMU_PWRITE_DSYNC,
		   DMU_IOCTL_RANGE };

struct dmu_io {
	pthread_t thread;
	int fd;
	enum dmu_io_kind kind;
	unsigned long ioctl_req;
	void *buf;
	size_t len;
	off_t off;
	ssize_t ret;
	int err;
	int done;
};

static inline void *dmu_io_thread(void *arg)
{
	struct dmu_io *io = arg;
	struct iovec iov = { .iov_base = io->buf, .iov_len = io->len };
	uint64_t range[2] = { (uint64_t)io->off, io->len };

	errno = 0;
	switch (io->kind) {
	case DMU_PREAD:
		io->ret = pread(io->fd, io->buf, io->len, io->off);
		break;
	case DMU_PWRITE:
		io->ret = pwrite(io->fd, io->buf, io->len, io->off);
		break;
	case DMU_FSYNC:
		io->ret = fsync(io->fd);
		break;
	case DMU_PWRITE_DSYNC:
		io->ret = pwritev2(io->fd, &iov, 1, io->off, RWF_DSYNC);
		break;
	case DMU_IOCTL_RANGE:
		io->ret = ioctl(io->fd, io->ioctl_req, range);
		break;
	}
	io->err = io->ret < 0 ? errno : 0;
	__atomic_store_n(&io->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static inline int dmu_io_start(struct dmu_io *io)
{
	io->done = 0;
	return pthread_create(&io->thread, NULL, dmu_io_thread, io);
}

/* Joins the I/O thread within @ms; -ETIMEDOUT if it is still blocked. */
static inline int dmu_io_wait(struct dmu_io *io, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	if (pthread_timedjoin_np(io->thread, NULL, &ts))
		return -ETIMEDOUT;
	return 0;
}

/*
 * Waits up to @ms for one of @n threads not joined yet to end; joins it,
 * marks it in @joined and returns its index, or -1 if none ended.
 */
static inline int dmu_join_any(pthread_t *th, bool *joined, int n, int ms)
{
	int i, waited;

	for (waited = 0; waited <= ms; waited += 10) {
		for (i = 0; i < n; i++)
			if (!joined[i] && !pthread_tryjoin_np(th[i], NULL)) {
				joined[i] = true;
				return i;
			}
		usleep(10000);
	}
	return -1;
}

/*
 * Waits up to @ms for a thread of this process to sleep in dm-user, once
 * it has stored its id in *@tid: state S, and a wait channel in dm-user
 * where the kernel names it (with no symbols it reads "0" and the state
 * alone counts). 0 or -ETIMEDOUT.
 */
static inline int dmu_wait_thread_sleeping(const pid_t *tid, int ms)
{
	char path[64], buf[512], wchan[128];
	int waited;

	for (waited = 0; waited <= ms; waited += 10) {
		pid_t id = __atomic_load_n(tid, __ATOMIC_ACQUIRE);
		const char *st;
		FILE *f;

		if (!id) {
			usleep(10000);
			continue;
		}
		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", id);
		f = fopen(path, "r");
		if (f) {
			buf[0] = 0;
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
			/* The state follows the name, which may hold ')'. */
			st = strrchr(buf, ')');
			snprintf(path, sizeof(path),
				 "/proc/self/task/%d/wchan", id);
			wchan[0] = 0;
			f = fopen(path, "r");
			if (f) {
				if (!fgets(wchan, sizeof(wchan), f))
					wchan[0] = 0;
				fclose(f);
			}
			if (st && st[1] == ' ' && st[2] == 'S' &&
			    (!strcmp(wchan, "0") ||
			     !strncmp(wchan, "dm_user", 7)))
				return 0;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}

/*
 * A 16 MiB block device in RAM, for tests that need a backing device:
 * brd's /dev/ram0 where the kernel has brd (loaded here), else a loop
 * device over a file in the guest's RAM-backed root (the debug kernel has
 * loop built in, and no brd), made once and reused. Its path goes to
 * @path. 0, or -1 if there is neither.
 */
static inline int dmu_ram_disk(char *path, size_t len)
{
	const char *img = "/tmp/dmu_ram_disk.img";
	char dev[128];

	if (access("/dev/ram0", F_OK))
		dmu_run("modprobe brd rd_nr=1 rd_size=16384 max_part=0 >/dev/null 2>&1");
	if (!access("/dev/ram0", F_OK)) {
		snprintf(path, len, "/dev/ram0");
		return 0;
	}
	if (!dmu_capture(dev, sizeof(dev),
			 "losetup -a 2>/dev/null | grep %s | cut -d: -f1", img) &&
	    dev[0]) {
		snprintf(path, len, "%s", dev);
		return 0;
	}
	if (dmu_run("dd if=/dev/zero of=%s bs=1M count=16 2>/dev/null", img) ||
	    dmu_capture(dev, sizeof(dev), "losetup -f") || !dev[0] ||
	    dmu_run("losetup %s %s", dev, img))
		return -1;
	snprintf(path, len, "%s", dev);
	return 0;
}

static inline void dmu_fill(void *buf, size_t len, uint32_t seed)
{
	uint32_t *p = buf;
	size_t i;

	for (i = 0; i < len / 4; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = seed ^ (uint32_t)i;
	}
}

static inline void *dmu_alloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 4096))
		return NULL;
	memset(p, 0, len ? len : 4096);
	return p;
}

#endif /* DMU_TEST_H */
