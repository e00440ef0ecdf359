/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of the tests that play a daemon on the control interface and on
 * a ring channel (DM_USER_EXT_RING): building control requests, reading
 * replies, and the daemon's side of a ring.
 */
#ifndef DMU_RING_H
#define DMU_RING_H

#include <sys/ioctl.h>
#include <sys/mman.h>

#include "dmu_test.h"

#ifndef WAIT_MS
#define WAIT_MS		10000
#endif

struct ctl {
	union {
		struct dm_user_ctl hdr;
		uint8_t raw[4096];
	};
};

static inline void ctl_init(struct ctl *c, uint16_t command)
{
	memset(c, 0, sizeof(*c));
	c->hdr.size = sizeof(*c);
	c->hdr.command = command;
	c->hdr.version = 1;
}

static inline void ctl_add(struct ctl *c, uint16_t tag, uint8_t type,
			   uint64_t v)
{
	struct dm_user_attr *a = (void *)(c->hdr.data + c->hdr.in_len);
	uint32_t len = type == DM_USER_TYPE_U32 ? 4 : 8;

	a->tag = tag;
	a->type = type;
	a->flags = DM_USER_ATTR_F_MANDATORY;
	a->len = len;
	if (len == 4)
		*(uint32_t *)a->value = (uint32_t)v;
	else
		memcpy(a->value, &v, 8);
	c->hdr.in_len += sizeof(*a) + DM_USER_ATTR_ALIGN(len);
}

static inline uint64_t ctl_num(const struct ctl *c, uint16_t tag)
{
	uint32_t off = 0;

	while (off + sizeof(struct dm_user_attr) <= c->hdr.out_len) {
		const struct dm_user_attr *a = (const void *)(c->hdr.data + off);
		uint64_t v = 0;

		if (a->tag == tag) {
			if (a->type == DM_USER_TYPE_U32)
				v = *(const uint32_t *)a->value;
			else
				memcpy(&v, a->value, 8);
			return v;
		}
		off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	}
	return UINT64_MAX;
}

/*
 * NEGOTIATE @ext with @depth slots (0: the default; below 0: no depth
 * attribute) and @data bytes of data area (0: the default, not sent);
 * 0 or -errno.
 */
static inline int negotiate_data(int fd, uint64_t ext, int depth,
				 uint32_t data, struct ctl *c)
{
	ctl_init(c, DM_USER_CMD_NEGOTIATE);
	ctl_add(c, DM_USER_ATTR_EXTENSIONS, DM_USER_TYPE_U64, ext);
	if (depth >= 0)
		ctl_add(c, DM_USER_ATTR_RING_DEPTH, DM_USER_TYPE_U32, depth);
	if (data)
		ctl_add(c, DM_USER_ATTR_RING_DATA, DM_USER_TYPE_U32, data);
	return ioctl(fd, DM_USER_IOCTL_CTL, c) ? -errno : 0;
}

static inline int negotiate(int fd, uint64_t ext, int depth, struct ctl *c)
{
	return negotiate_data(fd, ext, depth, 0, c);
}

static inline uint64_t info_num(int fd, uint16_t tag)
{
	struct ctl c;

	ctl_init(&c, DM_USER_CMD_GET_INFO);
	if (ioctl(fd, DM_USER_IOCTL_CTL, &c))
		return UINT64_MAX;
	return ctl_num(&c, tag);
}

/* CLAIM or RELEASE of sectors [start, start + len): the ranges, or -errno. */
/* CLAIM or RELEASE for @ops (DM_USER_CLAIM_*; 0: no RANGE_OPS at all). */
/*
 * CLAIM, RELEASE, MAP or UNMAP of [@start, @start + @len) for @ops (0:
 * leave the default), MAP to @dest: the claimed ranges after it (mapped
 * ones for MAP and UNMAP), or -errno.
 */
static inline int range_cmd(int fd, uint16_t command, uint64_t start,
			    uint64_t len, uint64_t dest, uint32_t ops)
{
	bool map = command == DM_USER_CMD_MAP || command == DM_USER_CMD_UNMAP;
	struct ctl c;

	ctl_init(&c, command);
	c.hdr.version = map ? 9 : 5;
	ctl_add(&c, DM_USER_ATTR_RANGE_START, DM_USER_TYPE_U64, start);
	ctl_add(&c, DM_USER_ATTR_RANGE_LEN, DM_USER_TYPE_U64, len);
	if (ops)
		ctl_add(&c, DM_USER_ATTR_RANGE_OPS, DM_USER_TYPE_U32, ops);
	if (command == DM_USER_CMD_MAP)
		ctl_add(&c, DM_USER_ATTR_RANGE_DEST, DM_USER_TYPE_U64, dest);
	if (ioctl(fd, DM_USER_IOCTL_CTL, &c))
		return -errno;
	return (int)ctl_num(&c, map ? DM_USER_ATTR_MAP_RANGES :
			    DM_USER_ATTR_CLAIM_RANGES);
}

static inline int claims_ops_cmd(int fd, uint16_t command, uint64_t start,
				 uint64_t len, uint32_t ops)
{
	return range_cmd(fd, command, start, len, 0, ops);
}

static inline int claims_cmd(int fd, uint16_t command, uint64_t start,
			     uint64_t len)
{
	return range_cmd(fd, command, start, len, 0, 0);
}

/*
 * notify_writes from GET_PARAMS: UINT64_MAX where the reply has none (no
 * backing device), UINT64_MAX - 1 if the command failed.
 */
static inline uint64_t get_notify(int fd)
{
	struct ctl c;

	ctl_init(&c, DM_USER_CMD_GET_PARAMS);
	if (ioctl(fd, DM_USER_IOCTL_CTL, &c))
		return UINT64_MAX - 1;
	return ctl_num(&c, DM_USER_ATTR_NOTIFY_WRITES);
}

/* The daemon's view of a ring. */
struct ring {
	int fd;
	size_t size;
	char *map;
	struct dm_user_ring *h;
	struct dm_user_ring_sqe *sq;
	struct dm_user_ring_cqe *cq;
	struct dm_user_message *desc;
	uint32_t sq_head;
	/* Where the request in each slot has its data, as last posted. */
	uint32_t data[DM_USER_RING_MAX_DEPTH];
};

static inline int ring_open_data(struct ring *r, const char *chan, int depth,
			  uint32_t data)
{
	struct ctl c;

	memset(r, 0, sizeof(*r));
	r->fd = open(chan, O_RDWR);
	if (r->fd < 0 ||
	    negotiate_data(r->fd, DM_USER_EXT_RING, depth, data, &c))
		return -1;
	r->size = ctl_num(&c, DM_USER_ATTR_RING_SIZE);
	r->map = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      r->fd, 0);
	if (r->map == MAP_FAILED)
		return -1;
	r->h = (void *)r->map;
	r->sq = (void *)(r->map + r->h->sq_offset);
	r->cq = (void *)(r->map + r->h->cq_offset);
	r->desc = (void *)(r->map + r->h->desc_offset);
	return 0;
}

static inline int ring_open(struct ring *r, const char *chan, int depth)
{
	return ring_open_data(r, chan, depth, 0);
}

static inline void ring_close(struct ring *r)
{
	if (r->map && r->map != MAP_FAILED)
		munmap(r->map, r->size);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->map = NULL;
}

/* The data of the request last posted in @slot. */
static inline char *slot_data(struct ring *r, uint32_t slot)
{
	return r->map + r->h->data_offset + r->data[slot];
}

/* Takes the next submission entry the kernel posted: its slot. */
static inline uint32_t ring_next(struct ring *r)
{
	struct dm_user_ring_sqe e = r->sq[r->sq_head++ & (r->h->depth - 1)];

	if (e.slot < DM_USER_RING_MAX_DEPTH)
		r->data[e.slot] = e.data;
	return e.slot;
}

/* Enters until @want requests are posted in all, within WAIT_MS. */
static inline int ring_take(struct ring *r, unsigned int want,
			    uint32_t *slots)
{
	unsigned int got = 0;
	int tries;

	/* Set whatever happens, which the compiler cannot tell otherwise. */
	memset(slots, 0, want * sizeof(*slots));
	for (tries = 0; got < want && tries < WAIT_MS / 10; tries++) {
		uint32_t tail;

		if (ioctl(r->fd, DM_USER_IOCTL_RING_ENTER, 0) < 0)
			return -errno;
		tail = __atomic_load_n(&r->h->sq_tail, __ATOMIC_ACQUIRE);
		while (r->sq_head != tail && got < want)
			slots[got++] = ring_next(r);
		if (got < want)
			usleep(10000);
	}
	return got == want ? 0 : -ETIMEDOUT;
}

/* Posts a completion; the kernel sees it at the next RING_ENTER. */
static inline void ring_post(struct ring *r, uint32_t slot, uint64_t seq,
		      uint32_t type)
{
	uint32_t tail = r->h->cq_tail;

	r->cq[tail & (r->h->depth - 1)] = (struct dm_user_ring_cqe){
		.seq = seq, .slot = slot, .type = type,
	};
	__atomic_store_n(&r->h->cq_tail, tail + 1, __ATOMIC_RELEASE);
}

/* Posts @c as it is, flags and address included. */
static inline void ring_post_cqe(struct ring *r, struct dm_user_ring_cqe c)
{
	uint32_t tail = r->h->cq_tail;

	r->cq[tail & (r->h->depth - 1)] = c;
	__atomic_store_n(&r->h->cq_tail, tail + 1, __ATOMIC_RELEASE);
}

static inline int ring_enter(struct ring *r, unsigned long wait_ms)
{
	int n = ioctl(r->fd, DM_USER_IOCTL_RING_ENTER, wait_ms);

	return n < 0 ? -errno : n;
}

#endif /* DMU_RING_H */
