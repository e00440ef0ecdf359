// SPDX-License-Identifier: GPL-2.0
/*
 * rfc_daemon - a dm-user daemon written as a daemon of the 2020 RFC was.
 *
 * It knows only the RFC's wire format and deliberately includes no header of
 * this project: if the kernel module still serves it, daemons written for
 * the RFC (and for Android's version of it) keep working. Hence its style:
 * the header is read with one read() of 40 bytes, write data with further
 * reads, and an answer is written as two write() calls, header then data.
 *
 * Usage: rfc_daemon <channel-path> <size-bytes>
 * Serves a zero-filled RAM store on one channel; exits 0 when the target is
 * removed (ENOTBLK).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The RFC's message: native endian, no padding. */
struct rfc_message {
	uint64_t seq;
	uint64_t type;
	uint64_t flags;
	uint64_t sector;
	uint64_t len;
	/* uint8_t buf[len] follows for write requests and read answers */
};

_Static_assert(sizeof(struct rfc_message) == 40, "the RFC header is 40 bytes");

#define RFC_REQ_MAP_READ	0
#define RFC_REQ_MAP_WRITE	1
#define RFC_REQ_MAP_FLUSH	2
#define RFC_RESP_SUCCESS	0
#define RFC_RESP_ERROR		1
#define RFC_RESP_UNSUPPORTED	2
#define RFC_SECTOR_SHIFT	9

static const char *channel;

/* The target was removed: the one clean way for a daemon to end. */
static void check_gone(void)
{
	if (errno == ENOTBLK)
		exit(0);
}

/* @err 0: the call returned 0, which no channel operation should. */
static void __attribute__((noreturn)) die(const char *what, int err)
{
	fprintf(stderr, "rfc_daemon: %s %s: %s\n", what, channel,
		err ? strerror(err) : "returned 0");
	exit(1);
}

static void read_all(int fd, unsigned char *buf, uint64_t len)
{
	while (len) {
		ssize_t n = read(fd, buf, len < SSIZE_MAX ? len : SSIZE_MAX);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			check_gone();
		if (n <= 0)
			die("read", n ? errno : 0);
		buf += n;
		len -= n;
	}
}

static void write_all(int fd, const void *buf, uint64_t len)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len < SSIZE_MAX ? len : SSIZE_MAX);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			check_gone();
		if (n <= 0)
			die("write", n ? errno : 0);
		p += n;
		len -= n;
	}
}

/* Data of a write that cannot be stored must still leave the channel. */
static void drain(int fd, uint64_t len)
{
	static unsigned char scratch[65536];

	while (len) {
		uint64_t n = len < sizeof(scratch) ? len : sizeof(scratch);

		read_all(fd, scratch, n);
		len -= n;
	}
}

static int parse_size(const char *s, size_t *size)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v == 0 || v > SIZE_MAX)
		return -1;
	*size = v;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char *store;
	size_t size;
	int fd;

	if (argc != 3 || parse_size(argv[2], &size)) {
		fprintf(stderr, "usage: rfc_daemon <channel-path> <size-bytes>\n"
				"  serves a zero-filled RAM store of <size-bytes> (> 0) bytes\n");
		return 2;
	}
	channel = argv[1];
	store = calloc(1, size);
	if (!store) {
		fprintf(stderr, "rfc_daemon: calloc of %zu bytes: %s\n", size,
			strerror(errno));
		return 1;
	}
	fd = open(channel, O_RDWR);
	if (fd < 0)
		die("open", errno);

	for (;;) {
		struct rfc_message msg;
		uint64_t req, off = 0;
		int in_range;
		ssize_t n;

		n = read(fd, &msg, sizeof(msg));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			check_gone();
			die("read", errno);
		}
		/* An RFC kernel gave the whole header to one read of 40. */
		if (n != (ssize_t)sizeof(msg)) {
			fprintf(stderr, "rfc_daemon: read %s: %zd bytes instead of a %zu-byte header\n",
				channel, n, sizeof(msg));
			return 1;
		}

		/* sector * 512 + len, without overflow. */
		in_range = msg.sector <= UINT64_MAX >> RFC_SECTOR_SHIFT;
		if (in_range) {
			off = msg.sector << RFC_SECTOR_SHIFT;
			in_range = msg.len <= size && off <= size - msg.len;
		}

		req = msg.type;
		switch (req) {
		case RFC_REQ_MAP_READ:
			msg.type = in_range ? RFC_RESP_SUCCESS : RFC_RESP_ERROR;
			break;
		case RFC_REQ_MAP_WRITE:
			if (in_range)
				read_all(fd, store + off, msg.len);
			else
				drain(fd, msg.len);
			msg.type = in_range ? RFC_RESP_SUCCESS : RFC_RESP_ERROR;
			break;
		case RFC_REQ_MAP_FLUSH:
			/* Nothing is more durable than it already is in RAM. */
			msg.type = RFC_RESP_SUCCESS;
			break;
		default:
			msg.type = RFC_RESP_UNSUPPORTED;
			break;
		}

		/* Two writes, as RFC daemons answered: header, then data. */
		write_all(fd, &msg, sizeof(msg));
		if (req == RFC_REQ_MAP_READ && msg.type == RFC_RESP_SUCCESS)
			write_all(fd, store + off, msg.len);
	}
}
