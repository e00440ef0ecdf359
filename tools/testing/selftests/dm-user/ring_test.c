// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user ring channel tests (DM_USER_EXT_RING): negotiation and the
 * mapping's rules, requests and their data through the shared memory, a
 * full data area, reads answered from the daemon's memory, refused
 * completions (counted, nothing else touched), a full completion queue,
 * the wait and its busy-poll, a closed channel's slots given back whole,
 * request_timeout on a ring, and a mapping that outlives its target.
 */
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "dmu_test.h"
#include "dmu_ring.h"
#include <kselftest_harness.h>

#define DEV_SECTORS	16384

FIXTURE(dev) {
	char dev[64];
	char mapper[128];
	char chan[128];
	int bdev;
};

FIXTURE_SETUP(dev)
{
	char table[256];

	snprintf(self->dev, sizeof(self->dev), "dmu_ring_%d", getpid());
	snprintf(self->mapper, sizeof(self->mapper), "/dev/mapper/%s",
		 self->dev);
	snprintf(self->chan, sizeof(self->chan), "/dev/dm-user/%s", self->dev);
	/*
	 * request_timeout: a test that fails with requests in its slots
	 * still ends, as its I/O threads hold its channels open.
	 */
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 4 no_daemon_timeout 40 request_timeout 60",
		 DEV_SECTORS, DEV_SECTORS, self->dev);
	ASSERT_EQ(0, dmu_create(self->dev, table));
	self->bdev = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bdev);
}

FIXTURE_TEARDOWN(dev)
{
	if (self->bdev >= 0)
		close(self->bdev);
	dmu_remove(self->dev);
}

TEST_F(dev, negotiate_and_mapping_rules)
{
	char *back = dmu_alloc(4096);
	struct dm_user_message m;
	struct timespec t0, t1;
	struct dmu_io io;
	struct ring r;
	long ms;
	struct ctl c;
	char buf[64];
	void *p;
	int fd;

	/*
	 * Every bit but no depth: a daemon that does not know the ring, which
	 * must not get one; its channel still reads.
	 */
	fd = open(self->chan, O_RDWR | O_NONBLOCK);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, negotiate(fd, ~0ULL, -1, &c));
	EXPECT_EQ(DM_USER_EXT_READ_BATCH | DM_USER_EXT_WRITE_BATCH,
		  ctl_num(&c, DM_USER_ATTR_EXTENSIONS));
	EXPECT_EQ(UINT64_MAX, ctl_num(&c, DM_USER_ATTR_RING_SIZE));
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	EXPECT_EQ(EAGAIN, errno);
	close(fd);

	fd = open(self->chan, O_RDWR);
	ASSERT_LE(0, fd);
	/* Nothing to map before the ring is negotiated. */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-EINVAL, ring_enter(&(struct ring){ .fd = fd }, 0));
	/* Depths that are not a power of two from 1 to 1024. */
	EXPECT_EQ(-ERANGE, negotiate(fd, DM_USER_EXT_RING, 3, &c));
	EXPECT_EQ(DM_USER_ATTR_RING_DEPTH, c.hdr.error_tag);
	EXPECT_EQ(-ERANGE, negotiate(fd, DM_USER_EXT_RING, 2048, &c));
	ASSERT_EQ(0, negotiate(fd, DM_USER_EXT_RING | DM_USER_EXT_READ_BATCH,
			       8, &c));
	EXPECT_EQ(DM_USER_EXT_RING | DM_USER_EXT_READ_BATCH,
		  ctl_num(&c, DM_USER_ATTR_EXTENSIONS));
	EXPECT_EQ(8, ctl_num(&c, DM_USER_ATTR_RING_DEPTH));
	EXPECT_EQ(DM_USER_CTL_VERSION, c.hdr.version);
	/* Once a ring, always: it cannot be given up. */
	EXPECT_EQ(-EBUSY, negotiate(fd, DM_USER_EXT_READ_BATCH, -1, &c));
	EXPECT_EQ(0, negotiate(fd, DM_USER_EXT_RING, 16, &c));
	EXPECT_EQ(8, ctl_num(&c, DM_USER_ATTR_RING_DEPTH));
	close(fd);

	/*
	 * Data areas smaller than the largest request (which would wait for
	 * ever), larger than the limit, or not whole pages.
	 */
	fd = open(self->chan, O_RDWR);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-ERANGE, negotiate_data(fd, DM_USER_EXT_RING, 0,
					  (1 << 20) - 4096, &c));
	EXPECT_EQ(DM_USER_ATTR_RING_DATA, c.hdr.error_tag);
	EXPECT_EQ(-ERANGE, negotiate_data(fd, DM_USER_EXT_RING, 0,
					  DM_USER_RING_MAX_DATA + 4096, &c));
	EXPECT_EQ(-ERANGE, negotiate_data(fd, DM_USER_EXT_RING, 0,
					  (1 << 20) + 512, &c));
	ASSERT_EQ(0, negotiate_data(fd, DM_USER_EXT_RING, 2, 3 << 20, &c));
	EXPECT_EQ(3 << 20, ctl_num(&c, DM_USER_ATTR_RING_DATA));
	EXPECT_EQ(2, ctl_num(&c, DM_USER_ATTR_RING_DEPTH));
	close(fd);

	ASSERT_EQ(0, ring_open(&r, self->chan, 0));
	EXPECT_EQ(DM_USER_RING_DEFAULT_DEPTH, r.h->depth);
	EXPECT_EQ(DM_USER_RING_DEFAULT_DATA, r.h->data_size);
	EXPECT_EQ(0, r.h->data_offset % 4096);
	EXPECT_LE(sizeof(*r.h), r.h->sq_offset);
	EXPECT_LE(r.h->sq_offset + 64 * sizeof(struct dm_user_ring_sqe),
		  r.h->cq_offset);
	EXPECT_LE(r.h->cq_offset + 64 * sizeof(struct dm_user_ring_cqe),
		  r.h->desc_offset);
	EXPECT_LE(r.h->desc_offset + 64 * DMU_HDR, r.h->data_offset);
	EXPECT_EQ(r.size, r.h->data_offset + r.h->data_size);
	/* Private, past the end, or from the middle past the end. */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE, r.fd, 0));
	EXPECT_EQ(MAP_FAILED, mmap(NULL, r.size + 4096, PROT_READ,
				   MAP_SHARED, r.fd, 0));
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 8192, PROT_READ, MAP_SHARED, r.fd,
				   r.size - 4096));
	/* A last page alone is fine, and data never written reads zero. */
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, r.fd, r.size - 4096);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, ((char *)p)[100]);
	munmap(p, 4096);
	/* read() and write() are not for a ring channel. */
	EXPECT_EQ(-1, read(r.fd, buf, sizeof(buf)));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, write(r.fd, buf, sizeof(buf)));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-EINVAL, ring_enter(&r, 1UL << 32));
	/* Nothing queued: no request, at once or after the wait. */
	EXPECT_EQ(0, ring_enter(&r, 0));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	EXPECT_EQ(0, ring_enter(&r, 300));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	EXPECT_LE(250, ms);
	ring_close(&r);

	/*
	 * A channel that polled may become a ring (an event loop registers
	 * it first); one that holds a request it read may not.
	 */
	fd = open(self->chan, O_RDWR);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(fd, 10));
	io = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PREAD,
		.buf = back, .len = 4096 };
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, dmu_read_msg(fd, &m, NULL, 0, WAIT_MS));
	EXPECT_EQ(-EBUSY, negotiate(fd, DM_USER_EXT_RING, 0, &c));
	memset(back, 0, 4096);
	EXPECT_EQ(DMU_HDR + 4096, dmu_answer(fd, &m, DM_USER_RESP_SUCCESS,
					     back, 4096));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0, negotiate(fd, DM_USER_EXT_RING, 0, &c));
	close(fd);
	/* Nor can a read-only one. */
	fd = open(self->chan, O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EBADF, negotiate(fd, DM_USER_EXT_RING, 0, &c));
	close(fd);
	free(back);
}

/*
 * Writes, then reads of what was written, through the ring: four at a
 * time, completed in reverse order, one of them with an error, and a
 * 1 MiB write and read. No two requests in slots share data pages.
 */
TEST_F(dev, requests_and_data_through_the_ring)
{
	size_t big = 1 << 20;
	char *data = dmu_alloc(4 * 4096 + big), *back = dmu_alloc(4 * 4096 + big);
	struct dmu_io io[5];
	uint32_t slots[5];
	struct ring r;
	int i, k;

	/* Room for the 1 MiB read and the three 4 KiB ones at once. */
	ASSERT_EQ(0, ring_open_data(&r, self->chan, 4, 2 << 20));
	for (i = 0; i < 4; i++) {
		dmu_fill(data + i * 4096, 4096, 90 + i);
		io[i] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE,
			.buf = data + i * 4096, .len = 4096,
			.off = (off_t)i * 65536 };
		ASSERT_EQ(0, dmu_io_start(&io[i]));
	}
	ASSERT_EQ(0, ring_take(&r, 4, slots));
	for (k = 0; k < 4; k++) {
		struct dm_user_message *m = &r.desc[slots[k]];

		ASSERT_LT(slots[k], 4);
		EXPECT_EQ(DM_USER_REQ_MAP_WRITE, m->type);
		EXPECT_EQ(0, r.data[slots[k]] % 4096);
		for (i = 0; i < k; i++)
			EXPECT_NE(r.data[slots[i]], r.data[slots[k]]);
		EXPECT_EQ(4096, m->len);
		i = (int)(m->sector / 128);
		ASSERT_LT(i, 4);
		EXPECT_EQ(0, memcmp(slot_data(&r, slots[k]), data + i * 4096,
				    4096));
	}
	/* A fifth waits: every slot is taken. */
	dmu_fill(data + 4 * 4096, big, 99);
	io[4] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE,
		.buf = data + 4 * 4096, .len = big, .off = 1 << 21 };
	ASSERT_EQ(0, dmu_io_start(&io[4]));
	usleep(200000);
	EXPECT_EQ(0, ring_enter(&r, DM_USER_RING_WAIT_FOREVER));
	for (k = 3; k >= 0; k--)
		ring_post(&r, slots[k], r.desc[slots[k]].seq,
			  r.desc[slots[k]].sector == 3 * 128 ?
			  DM_USER_RESP_ERROR : DM_USER_RESP_SUCCESS);
	/* The completions free the slots, and the fifth takes one. */
	EXPECT_EQ(1, ring_enter(&r, 0));
	ASSERT_EQ(r.sq_head + 1, r.h->sq_tail);
	slots[4] = ring_next(&r);
	EXPECT_EQ(big, r.desc[slots[4]].len);
	EXPECT_EQ(0, memcmp(slot_data(&r, slots[4]), data + 4 * 4096, big));
	EXPECT_EQ(r.h->cq_tail, r.h->cq_head);
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		if (i == 3) {
			EXPECT_EQ(-1, io[i].ret);
			EXPECT_EQ(EIO, io[i].err);
		} else {
			EXPECT_EQ(4096, io[i].ret);
		}
	}
	ring_post(&r, slots[4], r.desc[slots[4]].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io[4], WAIT_MS));
	EXPECT_EQ((ssize_t)big, io[4].ret);

	/* Reads: the daemon puts the data where the entry says. */
	for (i = 0; i < 3; i++) {
		io[i] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PREAD,
			.buf = back + i * 4096, .len = 4096,
			.off = (off_t)i * 65536 };
		ASSERT_EQ(0, dmu_io_start(&io[i]));
	}
	io[4] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PREAD,
		.buf = back + 4 * 4096, .len = big, .off = 1 << 21 };
	ASSERT_EQ(0, dmu_io_start(&io[4]));
	ASSERT_EQ(0, ring_take(&r, 4, slots));
	for (k = 0; k < 4; k++) {
		struct dm_user_message *m = &r.desc[slots[k]];

		EXPECT_EQ(DM_USER_REQ_MAP_READ, m->type);
		i = m->len == big ? 4 : (int)(m->sector / 128);
		memcpy(slot_data(&r, slots[k]), data + i * 4096, m->len);
	}
	for (k = 0; k < 4; k++)
		ring_post(&r, slots[k], r.desc[slots[k]].seq,
			  DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	for (i = 0; i < 5; i++) {
		size_t len = i == 4 ? big : 4096;

		if (i == 3)
			continue;
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		EXPECT_EQ((ssize_t)len, io[i].ret);
		EXPECT_EQ(0, memcmp(back + i * 4096, data + i * 4096, len));
	}
	EXPECT_EQ(0, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));
	EXPECT_EQ(0, info_num(r.fd, DM_USER_ATTR_INFLIGHT));
	ring_close(&r);
	free(data);
	free(back);
}

/*
 * A data area of 1 MiB, the least there is (and the default): a 4 KiB
 * write takes a page, so the 1 MiB write after it waits, and so does the
 * 4 KiB write after that (oldest first), though slots are free. RING_ENTER does not wait then, as
 * only the daemon's completions make room, and poll() does not say
 * readable. Each completion lets the next in.
 */
TEST_F(dev, full_data_area_keeps_the_order)
{
	size_t big = 1 << 20;
	char *data = dmu_alloc(big + 8192);
	struct timespec t0, t1;
	struct dmu_io io[3];
	uint32_t slot;
	struct ring r;
	long ms;
	int i;

	ASSERT_EQ(0, ring_open_data(&r, self->chan, 8, big));
	EXPECT_EQ(big, r.h->data_size);
	dmu_fill(data, big + 8192, 5);
	io[0] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE,
		.buf = data, .len = 4096, .off = 0 };
	io[1] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE,
		.buf = data + 4096, .len = big, .off = 1 << 20 };
	io[2] = (struct dmu_io){ .fd = self->bdev, .kind = DMU_PWRITE,
		.buf = data + 4096 + big, .len = 4096, .off = 1 << 22 };
	/* One at a time, so that the queue holds them in this order. */
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, dmu_io_start(&io[i]));
		usleep(100000);
	}
	EXPECT_EQ(1, ring_enter(&r, 0));
	slot = ring_next(&r);
	EXPECT_EQ(4096, r.desc[slot].len);
	EXPECT_EQ(0, memcmp(slot_data(&r, slot), data, 4096));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	EXPECT_EQ(0, ring_enter(&r, DM_USER_RING_WAIT_FOREVER));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	EXPECT_GT(1000, ms);
	EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(r.fd, 50));

	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(1, ring_enter(&r, 0));
	slot = ring_next(&r);
	EXPECT_EQ(big, r.desc[slot].len);
	EXPECT_EQ(0, r.data[slot]);
	EXPECT_EQ(0, memcmp(slot_data(&r, slot), data + 4096, big));
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(1, ring_enter(&r, 0));
	slot = ring_next(&r);
	EXPECT_EQ(4096, r.desc[slot].len);
	EXPECT_EQ(8 << 10, r.desc[slot].sector);
	EXPECT_EQ(0, memcmp(slot_data(&r, slot), data + 4096 + big, 4096));
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		EXPECT_EQ((ssize_t)io[i].len, io[i].ret);
	}
	EXPECT_EQ(0, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));
	ring_close(&r);
	free(data);
}

/*
 * Completions for a slot out of range, a free slot, the wrong seq, an
 * unknown code, and one posted twice: each refused and counted, the good
 * one in between served. A completion queue more than depth entries ahead
 * is refused whole.
 */
TEST_F(dev, bad_completions_are_refused_and_counted)
{
	char *back = dmu_alloc(4096), *data = dmu_alloc(4096);
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			     .len = 4096, .off = 8192 };
	uint32_t slot, tail;
	uint64_t seq;
	struct ring r;

	ASSERT_EQ(0, ring_open(&r, self->chan, 8));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	seq = r.desc[slot].seq;
	dmu_fill(data, 4096, 7);
	memcpy(slot_data(&r, slot), data, 4096);

	ring_post(&r, 8, seq, DM_USER_RESP_SUCCESS);
	ring_post(&r, (slot + 1) % 8, seq, DM_USER_RESP_SUCCESS);
	ring_post(&r, slot, seq + 1000, DM_USER_RESP_SUCCESS);
	ring_post(&r, slot, seq, 77);
	ring_post(&r, slot, seq, DM_USER_RESP_SUCCESS);
	ring_post(&r, slot, seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	EXPECT_EQ(r.h->cq_tail, r.h->cq_head);
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0, memcmp(back, data, 4096));
	EXPECT_EQ(5, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));

	/* Nine ahead of an eight-deep ring: nothing of it is taken. */
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	tail = r.h->cq_tail;
	__atomic_store_n(&r.h->cq_tail, tail + 9, __ATOMIC_RELEASE);
	EXPECT_EQ(-EINVAL, ring_enter(&r, 0));
	EXPECT_EQ(tail, r.h->cq_head);
	EXPECT_EQ(6, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));
	/* Put right, the ring goes on. */
	r.h->cq_tail = tail;
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_ERROR);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(EIO, io.err);
	ring_close(&r);
	free(back);
	free(data);
}

/*
 * DM_USER_RING_CQE_ADDR: a read is answered from the daemon's own memory,
 * not the data area, including memory not yet faulted in (the copy runs
 * with page faults off, then takes them unpinned and goes on). Flags and
 * addresses where they do not belong are refused and counted, the request
 * left in its slot; memory that cannot be read is counted and fails the
 * read, as the daemon could not tell which entry was refused.
 */
TEST_F(dev, read_answered_from_daemon_memory)
{
	size_t len = 3 * 4096;
	char *back = dmu_alloc(len), *mine = dmu_alloc(len), *hole;
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			     .len = len, .off = 65536 };
	struct dmu_io wr = { .fd = self->bdev, .kind = DMU_PWRITE, .buf = mine,
			     .len = 4096, .off = 0 };
	uint32_t slot, wslot;
	uint64_t seq;
	struct ring r;

	ASSERT_EQ(0, ring_open(&r, self->chan, 8));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	seq = r.desc[slot].seq;
	ASSERT_EQ(len, r.desc[slot].len);
	dmu_fill(mine, len, 4);

	/* Refused, each one: nothing completes. */
	ring_post_cqe(&r, (struct dm_user_ring_cqe){ .seq = seq, .slot = slot,
		.type = DM_USER_RESP_SUCCESS, .addr = (uintptr_t)mine });
	ring_post_cqe(&r, (struct dm_user_ring_cqe){ .seq = seq, .slot = slot,
		.type = DM_USER_RESP_SUCCESS, .addr = (uintptr_t)mine,
		.flags = DM_USER_RING_CQE_ADDR | 0x100 });
	ring_post_cqe(&r, (struct dm_user_ring_cqe){ .seq = seq, .slot = slot,
		.type = DM_USER_RESP_SUCCESS, .addr = (uintptr_t)mine,
		.flags = DM_USER_RING_CQE_ADDR, .reserved = 1 });
	ring_post_cqe(&r, (struct dm_user_ring_cqe){ .seq = seq, .slot = slot,
		.type = DM_USER_RESP_ERROR, .addr = (uintptr_t)mine,
		.flags = DM_USER_RING_CQE_ADDR });
	EXPECT_EQ(0, ring_enter(&r, 0));
	EXPECT_EQ(r.h->cq_tail, r.h->cq_head);
	EXPECT_EQ(4, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));
	usleep(100000);
	EXPECT_EQ(0, __atomic_load_n(&io.done, __ATOMIC_ACQUIRE));

	/* Kernel memory: counted, and the read fails. */
	ring_post_cqe(&r, (struct dm_user_ring_cqe){ .seq = seq, .slot = slot,
		.type = DM_USER_RESP_SUCCESS, .addr = ~0ULL << 47,
		.flags = DM_USER_RING_CQE_ADDR });
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(EIO, io.err);
	EXPECT_EQ(5, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));

	/* A range whose last page is not mapped: the same. */
	hole = mmap(NULL, len, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, hole);
	memset(hole, 5, 2 * 4096);
	ASSERT_EQ(0, munmap(hole + 2 * 4096, 4096));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = r.desc[slot].seq, .slot = slot,
		.type = DM_USER_RESP_SUCCESS, .addr = (uintptr_t)hole,
		.flags = DM_USER_RING_CQE_ADDR });
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(EIO, io.err);
	EXPECT_EQ(6, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));
	ASSERT_EQ(0, munmap(hole, 2 * 4096));

	/* Answered from our memory, not the area, which holds other bytes. */
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	dmu_fill(slot_data(&r, slot), len, 3);
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = r.desc[slot].seq, .slot = slot,
		.type = DM_USER_RESP_SUCCESS, .addr = (uintptr_t)mine,
		.flags = DM_USER_RING_CQE_ADDR });
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ((ssize_t)len, io.ret);
	EXPECT_EQ(0, memcmp(back, mine, len));

	/* Memory never touched: faulted in during the copy, zeroes. */
	hole = mmap(NULL, len, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, hole);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	dmu_fill(slot_data(&r, slot), len, 6);
	ring_post_cqe(&r, (struct dm_user_ring_cqe){
		.seq = r.desc[slot].seq, .slot = slot,
		.type = DM_USER_RESP_SUCCESS, .addr = (uintptr_t)hole,
		.flags = DM_USER_RING_CQE_ADDR });
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ((ssize_t)len, io.ret);
	memset(mine, 0, len);
	EXPECT_EQ(0, memcmp(back, mine, len));
	EXPECT_EQ(0, munmap(hole, len));
	EXPECT_EQ(6, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));

	/* A write's answer takes no flags; answered plainly, it completes. */
	ASSERT_EQ(0, dmu_io_start(&wr));
	ASSERT_EQ(0, ring_take(&r, 1, &wslot));
	seq = r.desc[wslot].seq;
	ring_post_cqe(&r, (struct dm_user_ring_cqe){ .seq = seq, .slot = wslot,
		.type = DM_USER_RESP_SUCCESS, .addr = (uintptr_t)mine,
		.flags = DM_USER_RING_CQE_ADDR });
	EXPECT_EQ(0, ring_enter(&r, 0));
	EXPECT_EQ(7, info_num(r.fd, DM_USER_ATTR_BAD_ANSWERS));
	ring_post(&r, wslot, seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&wr, WAIT_MS));
	EXPECT_EQ(4096, wr.ret);
	ring_close(&r);
	free(back);
	free(mine);
}

/*
 * DM_USER_RING_COMPLETE_ONLY hands in the answers of a daemon that stops
 * without taking the request that waits, which the next channel gets
 * under its first seq (not requeued). It takes no wait beside it.
 */
TEST_F(dev, complete_only_takes_no_request)
{
	char *back = dmu_alloc(8192);
	struct dmu_io io[2] = {
		{ .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
		  .len = 4096 },
		{ .fd = self->bdev, .kind = DMU_PREAD, .buf = back + 4096,
		  .len = 4096, .off = 4096 },
	};
	struct pollfd pfd;
	uint32_t slot, tail;
	struct ring r;

	ASSERT_EQ(0, ring_open(&r, self->chan, 4));
	/* A ring channel has no write() to be ready for. */
	pfd = (struct pollfd){ .fd = r.fd, .events = POLLIN | POLLOUT };
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	ASSERT_EQ(0, dmu_io_start(&io[0]));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	memset(slot_data(&r, slot), 0x21, 4096);
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	ASSERT_EQ(0, dmu_io_start(&io[1]));
	EXPECT_EQ(0, dmu_wait_readable(r.fd, WAIT_MS));
	tail = r.h->sq_tail;
	EXPECT_EQ(-EINVAL, ring_enter(&r, DM_USER_RING_COMPLETE_ONLY | 5));
	EXPECT_EQ(0, ring_enter(&r, DM_USER_RING_COMPLETE_ONLY));
	EXPECT_EQ(tail, r.h->sq_tail);
	EXPECT_EQ(r.h->cq_tail, r.h->cq_head);
	ASSERT_EQ(0, dmu_io_wait(&io[0], WAIT_MS));
	EXPECT_EQ(0x21, back[4095]);
	EXPECT_EQ(1, info_num(r.fd, DM_USER_ATTR_QUEUED));
	ring_close(&r);

	ASSERT_EQ(0, ring_open(&r, self->chan, 4));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	EXPECT_EQ(8, r.desc[slot].sector);
	EXPECT_EQ(0, info_num(r.fd, DM_USER_ATTR_REQUEUED));
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, DM_USER_RING_COMPLETE_ONLY));
	ASSERT_EQ(0, dmu_io_wait(&io[1], WAIT_MS));
	EXPECT_EQ(4096, io[1].ret);
	ring_close(&r);
	free(back);
}

struct enter_arg {
	struct ring *r;
	pid_t tid;
	int ret;
};

static void *enter_wait(void *arg)
{
	struct enter_arg *a = arg;

	__atomic_store_n(&a->tid, gettid(), __ATOMIC_RELEASE);
	a->ret = ring_enter(a->r, DM_USER_RING_WAIT_FOREVER);
	return NULL;
}

/* RING_ENTER sleeps until a request comes; poll() says when one waits. */
TEST_F(dev, enter_waits_for_a_request)
{
	char *back = dmu_alloc(4096);
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			     .len = 4096 };
	struct enter_arg a;
	struct timespec ts;
	pthread_t th;
	uint32_t slot;
	struct ring r;

	ASSERT_EQ(0, ring_open(&r, self->chan, 2));
	EXPECT_EQ(-ETIMEDOUT, dmu_wait_readable(r.fd, 50));
	a = (struct enter_arg){ .r = &r, .ret = -1000 };
	ASSERT_EQ(0, pthread_create(&th, NULL, enter_wait, &a));
	usleep(200000);
	EXPECT_EQ(-1000, a.ret);
	ASSERT_EQ(0, dmu_io_start(&io));
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	ASSERT_EQ(0, pthread_timedjoin_np(th, NULL, &ts));
	EXPECT_EQ(1, a.ret);
	slot = ring_next(&r);
	EXPECT_EQ(DM_USER_REQ_MAP_READ, r.desc[slot].type);
	memset(slot_data(&r, slot), 0x5a, 4096);
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0x5a, back[4095]);
	/* A second read waits on the queue: poll() says so. */
	ASSERT_EQ(0, dmu_io_start(&io));
	EXPECT_EQ(0, dmu_wait_readable(r.fd, WAIT_MS));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	ring_close(&r);
	free(back);
}

/* NEGOTIATE a ring of @depth slots with a busy-poll of @us; 0 or -errno. */
static int negotiate_poll(int fd, int depth, uint32_t us, struct ctl *c)
{
	ctl_init(c, DM_USER_CMD_NEGOTIATE);
	ctl_add(c, DM_USER_ATTR_EXTENSIONS, DM_USER_TYPE_U64, DM_USER_EXT_RING);
	ctl_add(c, DM_USER_ATTR_RING_DEPTH, DM_USER_TYPE_U32, depth);
	ctl_add(c, DM_USER_ATTR_RING_BUSY_POLL, DM_USER_TYPE_U32, us);
	return ioctl(fd, DM_USER_IOCTL_CTL, c) ? -errno : 0;
}

/* CPU time this thread has used, in microseconds. */
static long thread_cpu_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return -1;
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

/* Idle waits a round of busy_poll_spins_before_sleeping measures, rounds. */
#define POLL_WAITS	21
#define POLL_ROUNDS	3

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

/*
 * The median CPU time, in microseconds, of POLL_WAITS RING_ENTERs that each
 * wait @ms for a request none sends; -1 on an error. The median, not the
 * sum: a wait during which the emulator's host stalled the guest counts
 * the stall as CPU time of the thread, milliseconds at a time.
 */
static long idle_enter_median_cpu_us(struct ring *r, unsigned long ms)
{
	long cpu[POLL_WAITS], t0, t1;
	int i;

	for (i = 0; i < POLL_WAITS; i++) {
		t0 = thread_cpu_us();
		if (t0 < 0 || ring_enter(r, ms) != 0)
			return -1;
		t1 = thread_cpu_us();
		if (t1 < 0)
			return -1;
		cpu[i] = t1 - t0;
	}
	qsort(cpu, POLL_WAITS, sizeof(cpu[0]), cmp_long);
	return cpu[POLL_WAITS / 2];
}

/*
 * A ring that asked for a busy-poll spins that long in RING_ENTER before it
 * sleeps: CPU time it spends waiting on an idle device, which a ring
 * without one does not. The poll is checked, granted in the reply, set anew
 * by each NEGOTIATE, and requests still come through with their data.
 */
TEST_F(dev, busy_poll_spins_before_sleeping)
{
	char *back = dmu_alloc(4096);
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			     .len = 4096 };
	long polled, unpolled;
	uint32_t slot;
	struct ring r;
	struct ctl c;
	int round;

	ASSERT_EQ(0, ring_open(&r, self->chan, 2));
	/* Too long a spin is refused, and names the attribute. */
	EXPECT_EQ(-ERANGE, negotiate_poll(r.fd, 2,
					  DM_USER_RING_MAX_BUSY_POLL + 1, &c));
	EXPECT_EQ(DM_USER_ATTR_RING_BUSY_POLL, c.hdr.error_tag);

	/*
	 * Rounds of idle waits of 20 ms each, with a spin of 1 ms before each
	 * wait and then without, until the median wait of one round with the
	 * spin takes a quarter of it more CPU time than the median wait
	 * without. The margin is for spins cut short by another task (the
	 * debug kernel's workers under emulation took half of them away),
	 * the rounds for when most spins of one round were. A kernel that
	 * does not spin shows no difference in any round.
	 */
	for (round = 0; round < POLL_ROUNDS; round++) {
		ASSERT_EQ(0, negotiate_poll(r.fd, 2, DM_USER_RING_MAX_BUSY_POLL,
					    &c));
		EXPECT_EQ(DM_USER_EXT_RING, ctl_num(&c, DM_USER_ATTR_EXTENSIONS));
		EXPECT_EQ(DM_USER_RING_MAX_BUSY_POLL,
			  ctl_num(&c, DM_USER_ATTR_RING_BUSY_POLL));
		polled = idle_enter_median_cpu_us(&r, 20);
		/*
		 * The next NEGOTIATE without the attribute turns it off, and
		 * its reply, as to a daemon that knows nothing of it, leaves
		 * it out.
		 */
		ASSERT_EQ(0, negotiate(r.fd, DM_USER_EXT_RING, 2, &c));
		EXPECT_EQ(UINT64_MAX, ctl_num(&c, DM_USER_ATTR_RING_BUSY_POLL));
		unpolled = idle_enter_median_cpu_us(&r, 20);
		TH_LOG("round %d: median CPU time of %d idle waits: %ld us with a 1 ms busy-poll, %ld us without",
		       round, POLL_WAITS, polled, unpolled);
		ASSERT_LE(0, polled);
		ASSERT_LE(0, unpolled);
		if (polled - unpolled >= DM_USER_RING_MAX_BUSY_POLL / 4)
			break;
	}
	EXPECT_GT(POLL_ROUNDS, round)
		TH_LOG("no round's median wait spent a quarter of a spin");

	/* Served as before, with the poll back on. */
	ASSERT_EQ(0, negotiate_poll(r.fd, 2, 100, &c));
	EXPECT_EQ(100, ctl_num(&c, DM_USER_ATTR_RING_BUSY_POLL));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(1, ring_enter(&r, WAIT_MS));
	slot = ring_next(&r);
	EXPECT_EQ(DM_USER_REQ_MAP_READ, r.desc[slot].type);
	memset(slot_data(&r, slot), 0x3c, 4096);
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(4096, io.ret);
	EXPECT_EQ(0x3c, back[0]);
	EXPECT_EQ(0x3c, back[4095]);
	ring_close(&r);
	free(back);
}

/*
 * Rings waiting in RING_ENTER are woken last come first, like readers in
 * read(): the first request goes to the ring that went to sleep last, the
 * next, while that one is busy, to the other. Each ring answers what it
 * got with the data of the sector asked for.
 */
TEST_F(dev, last_ring_to_sleep_is_woken_first)
{
	unsigned char *back = dmu_alloc(8192);
	struct dmu_io a = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			    .len = 4096, .off = 4096 };
	struct dmu_io b = { .fd = self->bdev, .kind = DMU_PREAD,
			    .buf = back + 4096, .len = 4096, .off = 65536 };
	struct enter_arg args[2];
	bool joined[2] = { false, false };
	struct ring rings[2];
	pthread_t th[2];
	int i, woken;

	ASSERT_NE(NULL, back);
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, ring_open(&rings[i], self->chan, 2));
		args[i] = (struct enter_arg){ .r = &rings[i], .ret = -1000 };
		ASSERT_EQ(0, pthread_create(&th[i], NULL, enter_wait,
					    &args[i]));
		/* Asleep before the next: there is nothing queued. */
		ASSERT_EQ(0, dmu_wait_thread_sleeping(&args[i].tid, WAIT_MS))
			TH_LOG("ring %d did not go to sleep in RING_ENTER", i);
	}

	ASSERT_EQ(0, dmu_io_start(&a));
	woken = dmu_join_any(th, joined, 2, WAIT_MS);
	ASSERT_LE(0, woken) TH_LOG("no ring was woken");
	EXPECT_EQ(1, woken) TH_LOG("the ring that slept first was woken");
	/* The other sleeps on: one request wakes one waiter. */
	EXPECT_EQ(-1, dmu_join_any(th, joined, 2, 300));
	ASSERT_EQ(0, dmu_io_start(&b));
	ASSERT_EQ(1 - woken, dmu_join_any(th, joined, 2, WAIT_MS))
		TH_LOG("the ring still asleep was not woken");

	for (i = 0; i < 2; i++) {
		struct ring *r = &rings[i];
		uint32_t slot;
		uint64_t sector;

		ASSERT_EQ(1, args[i].ret);
		slot = ring_next(r);
		ASSERT_GT(2, slot);
		sector = r->desc[slot].sector;
		ASSERT_TRUE(sector == 8 || sector == 128);
		/* The first request, at sector 8, went to the last ring. */
		EXPECT_EQ(i == 1 ? 8 : 128, sector);
		memset(slot_data(r, slot), sector == 8 ? 0x18 : 0x80, 4096);
		ring_post(r, slot, r->desc[slot].seq, DM_USER_RESP_SUCCESS);
		EXPECT_EQ(0, ring_enter(r, 0));
	}
	ASSERT_EQ(0, dmu_io_wait(&a, WAIT_MS));
	ASSERT_EQ(0, dmu_io_wait(&b, WAIT_MS));
	EXPECT_EQ(4096, a.ret);
	EXPECT_EQ(4096, b.ret);
	EXPECT_EQ(0x18, back[0]);
	EXPECT_EQ(0x18, back[4095]);
	EXPECT_EQ(0x80, back[4096]);
	EXPECT_EQ(0x80, back[8191]);
	for (i = 0; i < 2; i++)
		ring_close(&rings[i]);
	free(back);
}

/*
 * A channel closed with requests in its slots gives them back whole: the
 * next ring channel gets the write with all its data, under a new seq.
 */
TEST_F(dev, closed_ring_gives_its_requests_back)
{
	char *data = dmu_alloc(8192);
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PWRITE, .buf = data,
			     .len = 8192, .off = 4096 };
	uint32_t slot;
	uint64_t seq;
	struct ring r;

	dmu_fill(data, 8192, 31);
	ASSERT_EQ(0, ring_open(&r, self->chan, 4));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	seq = r.desc[slot].seq;
	/* The daemon scribbles on the slot, then dies. */
	memset(slot_data(&r, slot), 0, 8192);
	ring_close(&r);

	ASSERT_EQ(0, ring_open(&r, self->chan, 4));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	EXPECT_NE(seq, r.desc[slot].seq);
	EXPECT_EQ(DM_USER_REQ_MAP_WRITE, r.desc[slot].type);
	EXPECT_EQ(8, r.desc[slot].sector);
	EXPECT_EQ(0, memcmp(slot_data(&r, slot), data, 8192));
	EXPECT_EQ(1, info_num(r.fd, DM_USER_ATTR_REQUEUED));
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(8192, io.ret);
	ring_close(&r);
	free(data);
}

/*
 * request_timeout takes a request from a slot: the I/O fails with
 * ETIMEDOUT and the channel is reset (ECONNRESET) so its daemon knows.
 */
TEST_F(dev, request_timeout_resets_a_ring)
{
	char *back = dmu_alloc(4096);
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			     .len = 4096 };
	uint32_t slot;
	struct ring r;

	ASSERT_EQ(0, dmu_run("dmsetup message %s 0 set_params request_timeout=1",
			     self->dev));
	ASSERT_EQ(0, ring_open(&r, self->chan, 4));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(-1, io.ret);
	EXPECT_EQ(ETIMEDOUT, io.err);
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(DM_USER_RING_RESET, r.h->flags);
	EXPECT_EQ(-ECONNRESET, ring_enter(&r, 0));
	EXPECT_EQ(-ECONNRESET, dmu_wait_readable(r.fd, 0));
	ring_close(&r);
	free(back);
}

/*
 * The target goes while rings are mapped: one whose fd is still open
 * (RING_ENTER then fails with ENOTBLK, poll() reports POLLHUP) and one
 * held by its mapping alone (its channel is released at munmap(), after
 * the target). The memory of both stays the daemon's until munmap().
 */
TEST_F(dev, mapping_outlives_the_target)
{
	char *back = dmu_alloc(4096);
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			     .len = 4096 };
	struct ring r, held;
	uint32_t slot;
	int fd;

	ASSERT_EQ(0, ring_open(&r, self->chan, 4));
	ASSERT_EQ(0, ring_open(&held, self->chan, 4));
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	memset(slot_data(&r, slot), 0x44, 4096);
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(0x44, back[0]);
	memset(held.map + held.h->data_offset, 0x55, 8192);
	fd = held.fd;
	held.fd = -1;
	close(fd);
	close(self->bdev);
	self->bdev = -1;
	ASSERT_EQ(0, dmu_remove(self->dev));

	EXPECT_EQ(-ENOTBLK, ring_enter(&r, 0));
	EXPECT_EQ(-ENOTBLK, dmu_wait_readable(r.fd, 0));
	memset(slot_data(&r, slot), 0x33, 1 << 20);
	EXPECT_EQ(0x33, slot_data(&r, slot)[12345]);
	EXPECT_EQ(0x55, (held.map + held.h->data_offset)[8191]);
	EXPECT_EQ(4, held.h->depth);
	ring_close(&r);
	ring_close(&held);
	free(back);
}

static long rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/*
 * A daemon that locks its memory as it is touched (dmu_prepare_daemon():
 * mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) maps a 1 MiB ring
 * without the kernel mapping it all at once, and the ring still serves.
 */
TEST_F(dev, locked_daemon_maps_ring_on_demand)
{
	char *back = dmu_alloc(4096);
	struct dmu_io io = { .fd = self->bdev, .kind = DMU_PREAD, .buf = back,
			     .len = 4096 };
	long before, after;
	uint32_t slot;
	struct ring r;

	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT))
		SKIP(return, "mlockall: %s", strerror(errno));
	before = rss_kib();
	ASSERT_EQ(0, ring_open(&r, self->chan, 0));
	after = rss_kib();
	ASSERT_LT(0, before);
	EXPECT_GT(512, after - before) TH_LOG("RSS %ld kB -> %ld kB", before, after);
	ASSERT_EQ(0, dmu_io_start(&io));
	ASSERT_EQ(0, ring_take(&r, 1, &slot));
	memset(slot_data(&r, slot), 0x66, 4096);
	ring_post(&r, slot, r.desc[slot].seq, DM_USER_RESP_SUCCESS);
	EXPECT_EQ(0, ring_enter(&r, 0));
	ASSERT_EQ(0, dmu_io_wait(&io, WAIT_MS));
	EXPECT_EQ(0x66, back[100]);
	ring_close(&r);
	munlockall();
	free(back);
}

TEST_HARNESS_MAIN
