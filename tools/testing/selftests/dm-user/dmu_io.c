// SPDX-License-Identifier: GPL-2.0
/*
 * dmu_io: block I/O with content checks, for the dm-user shell tests.
 *
 *   dmu_io write  <dev> <offset> <len> <seed> [direct]   write a pattern
 *   dmu_io verify <dev> <offset> <len> <seed> [direct]   compare with it
 *   dmu_io zeroes <dev> <offset> <len>                   range reads as 0
 *   dmu_io discard|zeroout|secdiscard <dev> <offset> <len>
 *   dmu_io matrix <dev> <base> <len>   patterns at many offsets and
 *                                      sizes, direct and buffered, each
 *                                      written, read back and compared
 *
 * Exit status: 0 when everything matched, 1 on a mismatch or I/O error
 * (with the failing offset printed), 2 on bad usage. For the ioctls, the
 * errno name is printed so a caller can expect EOPNOTSUPP.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/fs.h>

static const char *prog = "dmu_io";

static void fill(unsigned char *buf, size_t len, uint64_t off, uint32_t seed)
{
	size_t i;

	/*
	 * Every byte depends on its absolute offset, so misplaced data shows,
	 * and on the seed through a multiply, so that seeds one apart give
	 * unrelated bytes rather than the same stream.
	 */
	for (i = 0; i < len; i++) {
		uint64_t x = (off + i + (uint64_t)seed * 0x100000001B3ull) *
			     0x9E3779B97F4A7C15ull;

		x ^= x >> 31;
		buf[i] = (unsigned char)(x >> 24);
	}
}

static int open_dev(const char *dev, int direct)
{
	int fd = open(dev, O_RDWR | (direct ? O_DIRECT : 0));

	if (fd < 0)
		fprintf(stderr, "%s: open %s: %s\n", prog, dev,
			strerror(errno));
	return fd;
}

static unsigned char *alloc_buf(size_t len)
{
	void *p = NULL;
	int r = posix_memalign(&p, 4096, len ? len : 1);

	if (r) {
		fprintf(stderr, "%s: posix_memalign %zu: %s\n", prog, len,
			strerror(r));
		return NULL;
	}
	return p;
}

static int full_io(int fd, int write_it, unsigned char *buf, size_t len,
		   uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write_it ?
			pwrite(fd, buf + done, len - done, (off_t)(off + done)) :
			pread(fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "%s: %s at %" PRIu64 " len %zu: %s\n",
				prog, write_it ? "pwrite" : "pread",
				off + done, len - done, strerror(errno));
			return -1;
		}
		if (n == 0) {
			fprintf(stderr, "%s: unexpected end of device at %"
				PRIu64 "\n", prog, off + done);
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

/* 0 if @got matches @want, else 1 with the first differing byte printed. */
static int compare(const unsigned char *got, const unsigned char *want,
		   size_t len, uint64_t off)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (got[i] != want[i]) {
			fprintf(stderr, "%s: mismatch at byte %" PRIu64
				": got 0x%02x, want 0x%02x\n", prog,
				off + i, got[i], want[i]);
			return 1;
		}
	}
	return 0;
}

static int do_pattern(const char *dev, uint64_t off, size_t len,
		      uint32_t seed, int direct, int write_it)
{
	unsigned char *buf = alloc_buf(len), *want = alloc_buf(len);
	int fd, ret = 1;

	if (!buf || !want)
		goto out_free;
	fd = open_dev(dev, direct);
	if (fd < 0)
		goto out_free;
	fill(want, len, off, seed);
	if (write_it) {
		if (full_io(fd, 1, want, len, off))
			goto out;
		if (!direct && fsync(fd)) {
			fprintf(stderr, "%s: fsync %s: %s\n", prog, dev,
				strerror(errno));
			goto out;
		}
		ret = 0;
		goto out;
	}
	if (!direct && ioctl(fd, BLKFLSBUF, 0))
		fprintf(stderr, "%s: BLKFLSBUF %s: %s (reading cached data)\n",
			prog, dev, strerror(errno));
	if (full_io(fd, 0, buf, len, off))
		goto out;
	ret = compare(buf, want, len, off);
out:
	close(fd);
out_free:
	free(buf);
	free(want);
	return ret;
}

static int do_zeroes(const char *dev, uint64_t off, size_t len)
{
	unsigned char *buf = alloc_buf(len), *zero = alloc_buf(len);
	int fd, ret = 1;

	if (!buf || !zero)
		goto out_free;
	memset(zero, 0, len);
	fd = open_dev(dev, 1);
	if (fd < 0)
		goto out_free;
	if (!full_io(fd, 0, buf, len, off))
		ret = compare(buf, zero, len, off);
	close(fd);
out_free:
	free(buf);
	free(zero);
	return ret;
}

static int do_range_ioctl(const char *dev, const char *op, uint64_t off,
			  uint64_t len)
{
	uint64_t range[2] = { off, len };
	unsigned long req;
	int fd, r;

	if (!strcmp(op, "discard"))
		req = BLKDISCARD;
	else if (!strcmp(op, "zeroout"))
		req = BLKZEROOUT;
	else
		req = BLKSECDISCARD;
	fd = open_dev(dev, 0);
	if (fd < 0)
		return 1;
	r = ioctl(fd, req, range);
	if (r) {
		int e = errno;

		printf("%s\n", e == EOPNOTSUPP ? "EOPNOTSUPP" : strerror(e));
		fprintf(stderr, "%s: %s %s: %s\n", prog, op, dev, strerror(e));
	} else {
		printf("OK\n");
	}
	close(fd);
	return r ? 1 : 0;
}

/* Patterns at awkward offsets and sizes, through both I/O paths. */
static int do_matrix(const char *dev, uint64_t base, uint64_t size)
{
	static const size_t sizes[] = { 512, 4096, 4608, 65536, 131072 + 512,
					1 << 20, (1 << 20) + 4096, 3 << 20 };
	static const uint64_t offs[] = { 0, 512, 4096, 7 * 512, 65536 - 512,
					 (1 << 20) + 1536 };
	unsigned int s, o, checked = 0;
	int direct;

	for (direct = 1; direct >= 0; direct--) {
		for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			for (o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
				uint64_t off = base + offs[o];
				uint32_t seed = s * 131 + o * 7 + direct;

				if (offs[o] + sizes[s] > size)
					continue;
				if (do_pattern(dev, off, sizes[s], seed, direct,
					       1) ||
				    do_pattern(dev, off, sizes[s], seed, direct,
					       0)) {
					fprintf(stderr, "%s: failed: %s I/O of %zu bytes at %" PRIu64 "\n",
						prog, direct ? "direct" :
						"buffered", sizes[s], off);
					return 1;
				}
				checked++;
			}
		}
	}
	/* The end of the range, where off-by-one errors live. */
	if (do_pattern(dev, base + size - 8192, 8192, 77, 1, 1) ||
	    do_pattern(dev, base + size - 8192, 8192, 77, 1, 0))
		return 1;
	printf("%s: %u patterns written, read back and matched\n", prog,
	       checked + 1);
	return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 0);
	if (errno || !*s || *end) {
		fprintf(stderr, "%s: not a number: %s\n", prog, s);
		return -1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s write|verify <dev> <offset> <len> <seed> [direct]\n"
		"       %s zeroes|discard|zeroout|secdiscard <dev> <offset> <len>\n"
		"       %s matrix <dev> <base> <len>\n", prog, prog, prog);
}

int main(int argc, char **argv)
{
	uint64_t off, len, seed = 0;
	const char *cmd;

	if (argc < 5) {
		usage();
		return 2;
	}
	cmd = argv[1];
	if (parse_u64(argv[3], &off) || parse_u64(argv[4], &len))
		return 2;
	if (len > (1ull << 31)) {
		fprintf(stderr, "%s: length %" PRIu64 " too large\n", prog, len);
		return 2;
	}
	if (!strcmp(cmd, "write") || !strcmp(cmd, "verify")) {
		int direct = argc > 6 && !strcmp(argv[6], "direct");

		if (argc < 6 || parse_u64(argv[5], &seed)) {
			usage();
			return 2;
		}
		return do_pattern(argv[2], off, (size_t)len, (uint32_t)seed,
				  direct, cmd[0] == 'w');
	}
	if (!strcmp(cmd, "zeroes"))
		return do_zeroes(argv[2], off, (size_t)len);
	if (!strcmp(cmd, "discard") || !strcmp(cmd, "zeroout") ||
	    !strcmp(cmd, "secdiscard"))
		return do_range_ioctl(argv[2], cmd, off, len);
	if (!strcmp(cmd, "matrix"))
		return do_matrix(argv[2], off, len);
	usage();
	return 2;
}
