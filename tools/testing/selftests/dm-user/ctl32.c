// SPDX-License-Identifier: GPL-2.0
/*
 * ctl32: a client built with -m32 -static that asks the target what it is
 * through DM_USER_IOCTL_CTL, checks the answer, then serves the device from
 * RAM until the target is removed. It proves the control layout and the
 * wire format are the same for 32-bit programs on a 64-bit kernel, with no
 * compat code.
 *
 *   ctl32 <channel-path> <expected-name> <expected-sectors>
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define HDR sizeof(struct dm_user_message)

_Static_assert(sizeof(struct dm_user_message) == 40, "header is 40 bytes");
_Static_assert(sizeof(struct dm_user_ctl) == 32, "ctl header is 32 bytes");

static int get_info(int fd, const char *name, uint64_t sectors)
{
	static union { struct dm_user_ctl c; unsigned char raw[4096]; } u;
	uint64_t size = 0;
	const char *got = NULL;
	uint32_t off = 0;

	memset(&u, 0, sizeof(u));
	u.c.size = sizeof(u);
	u.c.version = 1;
	u.c.command = DM_USER_CMD_GET_INFO;
	if (ioctl(fd, DM_USER_IOCTL_CTL, &u)) {
		fprintf(stderr, "ctl32: DM_USER_IOCTL_CTL GET_INFO: %s\n",
			strerror(errno));
		return -1;
	}
	while (off + sizeof(struct dm_user_attr) <= u.c.out_len) {
		struct dm_user_attr *a = (void *)(u.c.data + off);

		if (a->tag == DM_USER_ATTR_NAME)
			got = (const char *)a->value;
		if (a->tag == DM_USER_ATTR_SIZE)
			memcpy(&size, a->value, 8);
		off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	}
	printf("ctl32: %zu-bit client: name %s, %" PRIu64 " sectors\n",
	       sizeof(long) * 8, got ? got : "?", size);
	/* It keeps serving: the test reads this line while it runs. */
	fflush(stdout);
	if (!got || strcmp(got, name) || size != sectors) {
		fprintf(stderr, "ctl32: GET_INFO answered the wrong target\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static unsigned char buf[HDR + (1 << 20)];
	struct dm_user_message *m = (void *)buf;
	unsigned char *store;
	uint64_t sectors;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: ctl32 <channel-path> <name> <sectors>\n");
		return 2;
	}
	sectors = strtoull(argv[3], NULL, 0);
	store = calloc(sectors, 512);
	if (!store) {
		fprintf(stderr, "ctl32: calloc: %s\n", strerror(errno));
		return 1;
	}
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "ctl32: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (get_info(fd, argv[2], sectors))
		return 1;
	for (;;) {
		struct iovec iov[2] = { { m, HDR }, { m->buf, 0 } };
		ssize_t n = read(fd, buf, sizeof(buf));
		uint64_t off;

		if (n < 0 && errno == ENOTBLK)
			return 0;
		if (n < (ssize_t)HDR) {
			fprintf(stderr, "ctl32: read: %s\n",
				n < 0 ? strerror(errno) : "short message");
			return 1;
		}
		off = m->sector * 512;
		if (m->type != DM_USER_REQ_MAP_FLUSH &&
		    (m->len > sectors * 512 || off > sectors * 512 - m->len)) {
			m->type = DM_USER_RESP_ERROR;
		} else if (m->type == DM_USER_REQ_MAP_READ) {
			memcpy(m->buf, store + off, m->len);
			iov[1].iov_len = m->len;
			m->type = DM_USER_RESP_SUCCESS;
		} else if (m->type == DM_USER_REQ_MAP_WRITE) {
			memcpy(store + off, m->buf, m->len);
			m->type = DM_USER_RESP_SUCCESS;
		} else if (m->type == DM_USER_REQ_MAP_FLUSH) {
			m->type = DM_USER_RESP_SUCCESS;
		} else {
			m->type = DM_USER_RESP_UNSUPPORTED;
		}
		if (writev(fd, iov, iov[1].iov_len ? 2 : 1) < 0) {
			if (errno == ENOTBLK)
				return 0;
			fprintf(stderr, "ctl32: writev: %s\n", strerror(errno));
			return 1;
		}
	}
}
