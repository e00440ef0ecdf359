// SPDX-License-Identifier: GPL-2.0
/*
 * ctl32: a client built with -m32 -static that asks the target what it is
 * through DM_USER_IOCTL_CTL, checks the answer, then serves the device from
 * RAM until the target is removed: with read() and write(), or with "ring"
 * through a ring (DM_USER_EXT_RING, DM_USER_IOCTL_RING_ENTER). It proves
 * the control layout, the wire format and the ring are the same for
 * 32-bit programs on a 64-bit kernel.
 *
 *   ctl32 <channel-path> <expected-name> <expected-sectors> [ring]
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define HDR sizeof(struct dm_user_message)

_Static_assert(sizeof(struct dm_user_message) == 40, "header is 40 bytes");
_Static_assert(sizeof(struct dm_user_ctl) == 32, "ctl header is 32 bytes");
_Static_assert(sizeof(struct dm_user_ring) == 128, "ring head is 128 bytes");
_Static_assert(sizeof(struct dm_user_ring_sqe) == 8, "sqe is 8 bytes");
_Static_assert(sizeof(struct dm_user_ring_cqe) == 32, "cqe is 32 bytes");

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

/*
 * Applies request @m to @store, with its data at @data; the answer's code.
 * A NULL @data leaves a read's data in the store.
 */
static uint32_t apply(struct dm_user_message *m, unsigned char *data,
		      unsigned char *store, uint64_t sectors)
{
	uint64_t off = m->sector * 512;

	if (m->type != DM_USER_REQ_MAP_FLUSH &&
	    (m->len > sectors * 512 || off > sectors * 512 - m->len))
		return DM_USER_RESP_ERROR;
	switch (m->type) {
	case DM_USER_REQ_MAP_READ:
		if (data)
			memcpy(data, store + off, m->len);
		break;
	case DM_USER_REQ_MAP_WRITE:
		memcpy(store + off, data, m->len);
		break;
	case DM_USER_REQ_MAP_FLUSH:
		break;
	default:
		return DM_USER_RESP_UNSUPPORTED;
	}
	return DM_USER_RESP_SUCCESS;
}

/* Serves through a ring of 8 slots until the target is removed. */
static int serve_ring(int fd, unsigned char *store, uint64_t sectors)
{
	static union { struct dm_user_ctl c; unsigned char raw[4096]; } u;
	struct dm_user_attr *a = (void *)u.c.data;
	struct dm_user_ring *h;
	uint32_t sq_head = 0, off = 0;
	uint64_t size = 0;
	char *map;

	memset(&u, 0, sizeof(u));
	u.c.size = sizeof(u);
	u.c.version = 2;
	u.c.command = DM_USER_CMD_NEGOTIATE;
	*a = (struct dm_user_attr){ .tag = DM_USER_ATTR_EXTENSIONS,
		.type = DM_USER_TYPE_U64, .len = 8 };
	*(uint64_t *)(void *)a->value = DM_USER_EXT_RING;
	a = (void *)(u.c.data + 16);
	*a = (struct dm_user_attr){ .tag = DM_USER_ATTR_RING_DEPTH,
		.type = DM_USER_TYPE_U32, .len = 4 };
	*(uint32_t *)(void *)a->value = 8;
	u.c.in_len = 32;
	if (ioctl(fd, DM_USER_IOCTL_CTL, &u)) {
		fprintf(stderr, "ctl32: NEGOTIATE the ring: %s\n", strerror(errno));
		return 1;
	}
	while (off + sizeof(*a) <= u.c.out_len) {
		a = (void *)(u.c.data + off);
		if (a->tag == DM_USER_ATTR_RING_SIZE)
			memcpy(&size, a->value, 8);
		off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	}
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (!size || map == MAP_FAILED) {
		fprintf(stderr, "ctl32: mmap of a %" PRIu64 "-byte ring: %s\n",
			size, size ? strerror(errno) : "no size");
		return 1;
	}
	h = (void *)map;
	printf("ctl32: 32-bit ring: depth %u, %u bytes of data\n", h->depth,
	       h->data_size);
	fflush(stdout);
	for (;;) {
		struct dm_user_ring_sqe *sq = (void *)(map + h->sq_offset);
		struct dm_user_ring_cqe *cq = (void *)(map + h->cq_offset);
		struct dm_user_message *desc = (void *)(map + h->desc_offset);
		int n = ioctl(fd, DM_USER_IOCTL_RING_ENTER,
			      (unsigned long)DM_USER_RING_WAIT_FOREVER);
		uint32_t cq_tail = h->cq_tail;

		if (n < 0 && errno == ENOTBLK)
			return 0;
		if (n < 0) {
			fprintf(stderr, "ctl32: RING_ENTER: %s\n", strerror(errno));
			return 1;
		}
		for (; n > 0; n--, sq_head++) {
			struct dm_user_ring_sqe e = sq[sq_head & (h->depth - 1)];
			struct dm_user_message m = desc[e.slot];
			/*
			 * Every other read is answered from the store itself
			 * (DM_USER_RING_CQE_ADDR), a 32-bit address.
			 */
			bool direct = m.type == DM_USER_REQ_MAP_READ &&
				      (m.seq & 1);
			struct dm_user_ring_cqe c = {
				.seq = m.seq, .slot = e.slot,
				.type = apply(&m, direct ? NULL :
					      (unsigned char *)map +
					      h->data_offset + e.data,
					      store, sectors),
			};

			if (direct && c.type == DM_USER_RESP_SUCCESS) {
				c.addr = (uintptr_t)(store + m.sector * 512);
				c.flags = DM_USER_RING_CQE_ADDR;
			}
			cq[cq_tail & (h->depth - 1)] = c;
			cq_tail++;
		}
		__atomic_store_n(&h->cq_tail, cq_tail, __ATOMIC_RELEASE);
		/* The answers now, and the 32-bit flag with them. */
		if (ioctl(fd, DM_USER_IOCTL_RING_ENTER,
			  (unsigned long)DM_USER_RING_COMPLETE_ONLY) < 0 &&
		    errno != ENOTBLK) {
			fprintf(stderr, "ctl32: RING_ENTER complete-only: %s\n",
				strerror(errno));
			return 1;
		}
	}
}

int main(int argc, char **argv)
{
	static unsigned char buf[HDR + (1 << 20)];
	struct dm_user_message *m = (void *)buf;
	unsigned char *store;
	uint64_t sectors;
	int fd;

	if (argc != 4 && (argc != 5 || strcmp(argv[4], "ring"))) {
		fprintf(stderr, "usage: ctl32 <channel-path> <name> <sectors> [ring]\n");
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
	if (argc == 5)
		return serve_ring(fd, store, sectors);
	for (;;) {
		struct iovec iov[2] = { { m, HDR }, { m->buf, 0 } };
		ssize_t n = read(fd, buf, sizeof(buf));
		int is_read;
		if (n < 0 && errno == ENOTBLK)
			return 0;
		if (n < (ssize_t)HDR) {
			fprintf(stderr, "ctl32: read: %s\n",
				n < 0 ? strerror(errno) : "short message");
			return 1;
		}
		is_read = m->type == DM_USER_REQ_MAP_READ;
		m->type = apply(m, m->buf, store, sectors);
		if (is_read && m->type == DM_USER_RESP_SUCCESS)
			iov[1].iov_len = m->len;
		if (writev(fd, iov, iov[1].iov_len ? 2 : 1) < 0) {
			if (errno == ENOTBLK)
				return 0;
			fprintf(stderr, "ctl32: writev: %s\n", strerror(errno));
			return 1;
		}
	}
}
