// SPDX-License-Identifier: GPL-2.0
/*
 * libdmuser tests: a device's whole life through the library alone (no
 * dmsetup): create, list, table, control commands, serving with
 * per-operation callbacks while real block I/O checks the data, a live
 * table reload with suspend and resume, and removal.
 */
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <dmuser.h>

#include "dmu_test.h"
#include <kselftest_harness.h>

#define SECTORS	16384
#define WAIT_MS	10000

struct ram {
	unsigned char *mem;
	uint64_t size;
	volatile int stop;
	int ready;
	unsigned int flushes;
};

static int ram_read(void *ctx, struct dmu_req *r)
{
	struct ram *m = ctx;

	if (r->offset + r->len > m->size)
		return -EIO;
	memcpy(r->data, m->mem + r->offset, r->len);
	return 0;
}

static int ram_write(void *ctx, struct dmu_req *r)
{
	struct ram *m = ctx;

	if (r->offset + r->len > m->size)
		return -EIO;
	memcpy(m->mem + r->offset, r->data, r->len);
	return 0;
}

static int ram_flush(void *ctx, struct dmu_req *r)
{
	struct ram *m = ctx;

	(void)r;
	__atomic_add_fetch(&m->flushes, 1, __ATOMIC_RELAXED);
	return 0;
}

static const struct dmu_ops ram_ops = {
	.read = ram_read,
	.write = ram_write,
	.flush = ram_flush,
	/* discard, write_zeroes, secure_erase: answered UNSUPPORTED */
};

struct server {
	pthread_t thread;
	const char *name;
	struct ram *ram;
	int ret;
};

static void ram_ready(void *ctx)
{
	__atomic_store_n(&((struct ram *)ctx)->ready, 1, __ATOMIC_RELEASE);
}

static void *serve_thread(void *arg)
{
	struct server *s = arg;
	struct dmu_serve_opts opts = {
		.threads = 2, .batch = 4, .read_batch = true,
		.stop = &s->ram->stop, .ready = ram_ready,
	};

	s->ret = dmu_serve(s->name, &ram_ops, s->ram, &opts);
	return NULL;
}

static int list_find(void *arg, const struct dmu_target_desc *t)
{
	const char *want = arg;

	return !strcmp(t->dev, want) && !strcmp(t->name, want) &&
	       t->length == SECTORS ? 1 : 0;
}

TEST(device_life_through_the_library)
{
	char dev[64], dev2[64], table[256], got[512], mapper[128];
	struct ram ram = { .size = (uint64_t)SECTORS * 512 };
	struct server srv = { .ram = &ram };
	struct dmu_params params;
	struct dmu_info info;
	uint64_t granted;
	unsigned char *buf, *back;
	int ch, bdev, i;

	snprintf(dev, sizeof(dev), "dmu_lib_%d", getpid());
	snprintf(dev2, sizeof(dev2), "dmu_lib2_%d", getpid());
	snprintf(mapper, sizeof(mapper), "/dev/mapper/%s", dev);
	ASSERT_EQ(0, dmu_table_line(table, sizeof(table), SECTORS, dev,
				    "max_queued 64"));
	EXPECT_NE(NULL, strstr(table, " 2 max_queued 64"));
	EXPECT_EQ(-ENAMETOOLONG, dmu_table_line(got, 8, SECTORS, dev, NULL));
	EXPECT_EQ(-EINVAL, dmu_table_line(got, sizeof(got), SECTORS, "a/b", NULL));

	ASSERT_EQ(0, dmu_dev_create(dev, table));
	ASSERT_EQ(0, dmu_wait_node(dev, 5000));
	EXPECT_EQ(0, access(mapper, F_OK));
	ASSERT_EQ(0, dmu_dev_table(dev, got, sizeof(got)));
	EXPECT_STREQ(table, got);
	EXPECT_EQ(1, dmu_dev_list(list_find, dev));
	EXPECT_EQ(-EEXIST, dmu_dev_create(dev, table));

	/* Control commands through the typed wrappers. */
	ch = dmu_open_channel(dev, 0);
	ASSERT_LE(0, ch);
	ASSERT_EQ(0, dmu_get_info(ch, &info));
	EXPECT_STREQ(dev, info.name);
	EXPECT_EQ(SECTORS, info.size);
	EXPECT_EQ(1, info.channels);
	EXPECT_EQ(DM_USER_CTL_VERSION, info.version);
	ASSERT_EQ(0, dmu_get_params(ch, &params));
	EXPECT_EQ(64, params.max_queued);
	params.max_queued = 0;
	EXPECT_EQ(-ERANGE, dmu_set_params(ch, &params, DMU_PARAM_MAX_QUEUED));
	EXPECT_EQ(DM_USER_ATTR_MAX_QUEUED, dmu_ctl_last_error()->tag);
	EXPECT_NE(0, strlen(dmu_ctl_last_error()->reason));
	params.max_queued = 32;
	EXPECT_EQ(0, dmu_set_params(ch, &params, DMU_PARAM_MAX_QUEUED));
	ASSERT_EQ(0, dmu_get_params(ch, &params));
	EXPECT_EQ(32, params.max_queued);
	/* All or nothing across fields. */
	params.max_queued = 16;
	params.no_daemon_timeout = DM_USER_TIMEOUT_FOREVER;
	params.request_timeout = 2000000;
	EXPECT_EQ(-ERANGE, dmu_set_params(ch, &params, DMU_PARAM_ALL));
	EXPECT_EQ(DM_USER_ATTR_REQUEST_TIMEOUT, dmu_ctl_last_error()->tag);
	ASSERT_EQ(0, dmu_get_params(ch, &params));
	EXPECT_EQ(32, params.max_queued);
	EXPECT_NE(DM_USER_TIMEOUT_FOREVER, params.no_daemon_timeout);
	params.no_daemon_timeout = DM_USER_TIMEOUT_FOREVER;
	params.request_timeout = 5;
	EXPECT_EQ(0, dmu_set_params(ch, &params,
				    DMU_PARAM_NO_DAEMON_TIMEOUT |
				    DMU_PARAM_REQUEST_TIMEOUT));
	ASSERT_EQ(0, dmu_get_params(ch, &params));
	EXPECT_EQ(32, params.max_queued);
	EXPECT_EQ(DM_USER_TIMEOUT_FOREVER, params.no_daemon_timeout);
	EXPECT_EQ(5, params.request_timeout);
	ASSERT_EQ(0, dmu_get_info(ch, &info));
	EXPECT_EQ(DM_USER_STATE_WAITING, info.daemon_state);
	EXPECT_EQ(0, info.timeouts);
	ASSERT_EQ(0, dmu_negotiate(ch, ~0ULL, &granted));
	/* Not the ring: that takes a depth, which dmu_negotiate() never sends. */
	EXPECT_EQ(DM_USER_EXT_READ_BATCH | DM_USER_EXT_WRITE_BATCH, granted);
	EXPECT_EQ(0, dmu_reset_counters(ch));
	/* A command the library does not know is refused, not guessed. */
	EXPECT_EQ(-ENOSYS, dmu_cmd_version(999));
	EXPECT_EQ(1, dmu_cmd_version(DM_USER_CMD_GET_INFO));
	close(ch);

	/* A ring with a busy-poll: refused past the limit, else granted. */
	ch = dmu_open_channel(dev, 0);
	ASSERT_LE(0, ch);
	{
		struct dmu_ring_params rp = { .depth = 4 };
		uint32_t poll_us = DM_USER_RING_MAX_BUSY_POLL + 1;

		EXPECT_EQ(-ERANGE, dmu_negotiate_ring_busy_poll(ch,
				DM_USER_EXT_RING, &rp, &poll_us, &granted));
		EXPECT_EQ(DM_USER_ATTR_RING_BUSY_POLL,
			  dmu_ctl_last_error()->tag);
		poll_us = 70;
		ASSERT_EQ(0, dmu_negotiate_ring_busy_poll(ch, DM_USER_EXT_RING,
				&rp, &poll_us, &granted));
		EXPECT_EQ(DM_USER_EXT_RING, granted);
		EXPECT_EQ(4, rp.depth);
		EXPECT_EQ(70, poll_us);
		/* Asking for none gets none, and leaves the ring a ring. */
		poll_us = 0;
		ASSERT_EQ(0, dmu_negotiate_ring_busy_poll(ch, DM_USER_EXT_RING,
				&rp, &poll_us, &granted));
		EXPECT_EQ(DM_USER_EXT_RING, granted);
		EXPECT_EQ(0, poll_us);
	}
	close(ch);

	/* Serve with callbacks while block I/O checks every byte. */
	ram.mem = calloc(1, ram.size);
	ASSERT_NE(NULL, ram.mem);
	srv.name = dev;
	ASSERT_EQ(0, pthread_create(&srv.thread, NULL, serve_thread, &srv));
	for (i = 0; i < 500 && !__atomic_load_n(&ram.ready, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	ASSERT_EQ(1, ram.ready);
	buf = dmu_alloc(1 << 20);
	back = dmu_alloc(1 << 20);
	bdev = open(mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, bdev);
	for (i = 0; i < 4; i++) {
		off_t off = (off_t)i * 1536 * 1024;

		dmu_fill(buf, 1 << 20, 40 + i);
		ASSERT_EQ(1 << 20, pwrite(bdev, buf, 1 << 20, off));
		ASSERT_EQ(1 << 20, pread(bdev, back, 1 << 20, off));
		EXPECT_EQ(0, memcmp(buf, back, 1 << 20));
		EXPECT_EQ(0, memcmp(buf, ram.mem + off, 1 << 20));
	}
	EXPECT_EQ(0, fsync(bdev));
	EXPECT_LT(0, ram.flushes);
	/*
	 * No discard callback: the daemon answers UNSUPPORTED, which the
	 * target counts as a failed discard. BLKDISCARD itself succeeds:
	 * blkdev_issue_discard() treats EOPNOTSUPP from a bio as done.
	 */
	{
		uint64_t range[2] = { 0, 4096 };
		int ctl = dmu_open_channel(dev, 0);

		EXPECT_EQ(0, ioctl(bdev, BLKDISCARD, range));
		ASSERT_LE(0, ctl);
		ASSERT_EQ(0, dmu_get_info(ctl, &info));
		EXPECT_EQ(1, info.stats[DMU_OP_DISCARD].requests);
		EXPECT_EQ(1, info.stats[DMU_OP_DISCARD].errors);
		close(ctl);
	}
	close(bdev);

	/*
	 * A live reload to a user target of another name: suspend, load,
	 * resume; the old target goes with its table. (Under the same name
	 * the target and its daemon would stay: see the reloads in
	 * remap_through_the_library.)
	 */
	ASSERT_EQ(0, dmu_table_line(table, sizeof(table), SECTORS, dev2, NULL));
	ASSERT_EQ(0, dmu_dev_suspend(dev, false));
	ram.stop = 1;
	ASSERT_EQ(0, pthread_join(srv.thread, NULL));
	EXPECT_EQ(0, srv.ret);
	ASSERT_EQ(0, dmu_dev_load(dev, table));
	ASSERT_EQ(0, dmu_dev_resume(dev));
	ASSERT_EQ(0, dmu_dev_table(dev, got, sizeof(got)));
	EXPECT_STREQ(table, got);
	/* The old target's node went with it. */
	snprintf(got, sizeof(got), "/dev/dm-user/%s", dev);
	EXPECT_EQ(-1, access(got, F_OK));
	ASSERT_EQ(0, dmu_wait_node(dev2, 5000));
	srv.name = dev2;

	/* Removing it ends a serving loop with 0 (ENOTBLK on every channel). */
	ram.stop = 0;
	ram.ready = 0;
	ASSERT_EQ(0, pthread_create(&srv.thread, NULL, serve_thread, &srv));
	for (i = 0; i < 500 && !__atomic_load_n(&ram.ready, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	ASSERT_EQ(0, dmu_dev_remove(dev));
	ASSERT_EQ(0, pthread_join(srv.thread, NULL));
	EXPECT_EQ(0, srv.ret);
	EXPECT_EQ(-ENXIO, dmu_dev_table(dev, got, sizeof(got)));
	EXPECT_EQ(0, dmu_dev_list(list_find, dev));
	free(ram.mem);
	free(buf);
	free(back);
}

/*
 * In place: ->write_buffer points a WRITE's data at the store, and the read
 * callback points req->data at the store instead of copying, so no byte
 * goes through a buffer of the library. Every other placed WRITE is refused
 * (NULL), which must fall back to the library's buffer. Also with split
 * messages, with READ_BATCH and WRITE_BATCH (where reads bring whole
 * messages and ->write_buffer is not asked), and on a ring (where a
 * WRITE's data is already in its slot, so ->write_buffer is not asked, and
 * a READ placed in the store is copied to the slot).
 */
struct placed {
	unsigned char *mem;
	uint64_t size;
	volatile int stop;
	int ready;
	unsigned int asked, placed, copied;
};

static void *placed_write_buffer(void *ctx, const struct dmu_req *r)
{
	struct placed *m = ctx;
	unsigned int n = __atomic_add_fetch(&m->asked, 1, __ATOMIC_RELAXED);

	if (r->data || r->offset + r->len > m->size || (n & 1))
		return NULL;
	return m->mem + r->offset;
}

static int placed_write(void *ctx, struct dmu_req *r)
{
	struct placed *m = ctx;

	if (r->offset + r->len > m->size)
		return -EIO;
	if (r->data == m->mem + r->offset) {
		__atomic_add_fetch(&m->placed, 1, __ATOMIC_RELAXED);
		return 0;
	}
	__atomic_add_fetch(&m->copied, 1, __ATOMIC_RELAXED);
	memcpy(m->mem + r->offset, r->data, r->len);
	return 0;
}

static int placed_read(void *ctx, struct dmu_req *r)
{
	struct placed *m = ctx;

	if (r->offset + r->len > m->size)
		return -EIO;
	/* The last page: a callback that says success but gives no data. */
	r->data = r->offset == m->size - 4096 ? NULL : m->mem + r->offset;
	return 0;
}

static const struct dmu_ops placed_ops = {
	.read = placed_read,
	.write = placed_write,
	.write_buffer = placed_write_buffer,
};

static void placed_ready(void *ctx)
{
	__atomic_store_n(&((struct placed *)ctx)->ready, 1, __ATOMIC_RELEASE);
}

struct placed_server {
	pthread_t thread;
	const char *name;
	struct placed *m;
	size_t split;
	bool batches;	/* READ_BATCH and WRITE_BATCH */
	/* DMU_TRANSPORT_AUTO and nothing about read(): the ring. */
	bool ring;
	int ret;
};

static void *placed_thread(void *arg)
{
	struct placed_server *s = arg;
	struct dmu_serve_opts opts = {
		.threads = 2, .batch = s->ring ? 1 : 3, .split = s->split,
		.read_batch = s->batches, .write_batch = s->batches,
		.stop = &s->m->stop, .ready = placed_ready,
		.transport = s->ring ? DMU_TRANSPORT_AUTO : DMU_TRANSPORT_RW,
	};

	s->ret = dmu_serve(s->name, &placed_ops, s->m, &opts);
	return NULL;
}

TEST(serving_in_place)
{
	static const size_t sizes[] = { 512, 4096, 65536, 1 << 20 };
	static const size_t splits[] = { 0, 509, 0, 0 };
	struct placed m = { .size = (uint64_t)SECTORS * 512 };
	struct placed_server srv = { .m = &m };
	char dev[64], table[256], mapper[128];
	unsigned char *buf, *back;
	unsigned int sp, i, k, asked, placed, copied;
	int bdev;

	snprintf(dev, sizeof(dev), "dmu_place_%d", getpid());
	snprintf(mapper, sizeof(mapper), "/dev/mapper/%s", dev);
	ASSERT_EQ(0, dmu_table_line(table, sizeof(table), SECTORS, dev,
				    "no_flush"));
	ASSERT_EQ(0, dmu_dev_create(dev, table));
	ASSERT_EQ(0, dmu_wait_node(dev, 5000));
	m.mem = calloc(1, m.size);
	buf = dmu_alloc(1 << 20);
	back = dmu_alloc(1 << 20);
	ASSERT_NE(NULL, m.mem);
	srv.name = dev;
	for (sp = 0; sp < 4; sp++) {
		m.stop = 0;
		m.ready = 0;
		srv.split = splits[sp];
		srv.batches = sp == 2;
		srv.ring = sp == 3;
		asked = m.asked;
		placed = m.placed;
		copied = m.copied;
		ASSERT_EQ(0, pthread_create(&srv.thread, NULL, placed_thread, &srv));
		for (i = 0; i < 500 && !__atomic_load_n(&m.ready, __ATOMIC_ACQUIRE); i++)
			usleep(10000);
		ASSERT_EQ(1, m.ready);
		bdev = open(mapper, O_RDWR | O_DIRECT);
		ASSERT_LE(0, bdev);
		for (k = 0; k < 4; k++) {
			for (i = 0; i < 4; i++) {
				size_t len = sizes[i];
				off_t off = (off_t)(k * 4 + i) * 256 * 1024 +
					    (len < 4096 ? 512 : 0);

				dmu_fill(buf, len, sp * 100 + k * 10 + i);
				ASSERT_EQ((ssize_t)len, pwrite(bdev, buf, len, off));
				EXPECT_EQ(0, memcmp(buf, m.mem + off, len));
				memset(back, 0xa5, len);
				ASSERT_EQ((ssize_t)len, pread(bdev, back, len, off));
				EXPECT_EQ(0, memcmp(buf, back, len)) {
					TH_LOG("size %zu at %lld, split %zu",
					       len, (long long)off, splits[sp]);
				}
			}
		}
		/* Answered as an error, not with stale data, nor a crash. */
		errno = 0;
		EXPECT_EQ(-1, pread(bdev, back, 4096, (off_t)m.size - 4096));
		EXPECT_EQ(EIO, errno);
		close(bdev);
		m.stop = 1;
		ASSERT_EQ(0, pthread_join(srv.thread, NULL));
		EXPECT_EQ(0, srv.ret);
		asked = m.asked - asked;
		placed = m.placed - placed;
		copied = m.copied - copied;
		if (srv.batches || srv.ring) {
			/*
			 * Whole messages, or data in the slot: never asked
			 * (which shows that AUTO chose the ring).
			 */
			EXPECT_EQ(0, asked);
			EXPECT_EQ(0, placed);
			EXPECT_LT(0, copied);
		} else {
			/* Both ways taken; every WRITE asked, once. */
			EXPECT_LT(0, placed);
			EXPECT_LT(0, copied);
			EXPECT_EQ(asked, placed + copied);
		}
	}
	EXPECT_EQ(0, dmu_dev_remove(dev));
	free(m.mem);
	free(buf);
	free(back);
}

/*
 * Options of one transport with the other chosen, or with options that
 * choose the other, are refused before anything is opened: served as
 * asked, one of them would be ignored without a word.
 */
TEST(serve_refuses_options_of_the_other_transport)
{
	static const struct {
		const char *what;
		struct dmu_serve_opts o;
	} bad[] = {
		{ "busy-poll with rw",
		  { .transport = DMU_TRANSPORT_RW, .ring_busy_poll = 10 } },
		{ "ring depth with rw",
		  { .transport = DMU_TRANSPORT_RW, .ring_depth = 16 } },
		{ "read batch with ring",
		  { .transport = DMU_TRANSPORT_RING, .read_batch = true } },
		{ "write batch with ring",
		  { .transport = DMU_TRANSPORT_RING, .write_batch = true } },
		{ "batch with ring", { .transport = DMU_TRANSPORT_RING,
				       .batch = 2 } },
		{ "split with ring", { .transport = DMU_TRANSPORT_RING,
				       .split = 4096 } },
		{ "busy-poll with a read batch (auto)",
		  { .ring_busy_poll = 10, .read_batch = true } },
		{ "ring data with a batch (auto)",
		  { .ring_data = 1 << 20, .batch = 4 } },
	};
	/* Each transport's own options together pass, to the missing node. */
	static const struct dmu_serve_opts ok[] = {
		{ .ring_busy_poll = 10, .ring_depth = 16 },
		{ .transport = DMU_TRANSPORT_RING, .ring_busy_poll = 10,
		  .ring_data = 1 << 20 },
		{ .transport = DMU_TRANSPORT_RW, .batch = 4, .split = 4096,
		  .read_batch = true, .write_batch = true },
		{ .batch = 4, .read_batch = true },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		TH_LOG("%s", bad[i].what);
		EXPECT_EQ(-EINVAL, dmu_serve("dmu_no_such_target", &ram_ops,
					     NULL, &bad[i].o));
	}
	for (i = 0; i < ARRAY_SIZE(ok); i++)
		EXPECT_EQ(-ENOENT, dmu_serve("dmu_no_such_target", &ram_ops,
					     NULL, &ok[i]));
}

/*
 * Remap answers through the library (dmu_serve_opts.remap, DMU_REMAP): a
 * store that keeps nothing itself below 2 MiB sends reads there to a
 * RAM disk, the first MiB where it is and the second from 4 MiB further
 * on, and every write to the RAM disk; above 2 MiB it serves from memory.
 * On both transports, checked on the RAM disk byte for byte.
 */
#define MIB		(1 << 20)

struct remapper {
	unsigned char *mem;
	bool remap;		/* what the callbacks do; not the option */
	/* Bytes added to remap_offset: a place the kernel would refuse. */
	uint64_t skew;
	volatile int stop;
	int ready;
	/* Write notifications seen: type, offset and length of each. */
	struct dmu_req notes[16];
	unsigned int nr_notes;
	int notify_rc;		/* what ->notify answers */
	/* ->reload: how many calls, and the last size it gave. */
	int reloads;
	uint64_t reload_size;
};

static int remapper_read(void *ctx, struct dmu_req *r)
{
	struct remapper *m = ctx;

	if (m->remap && r->offset < MIB) {
		r->remap_offset += m->skew;
		return DMU_REMAP;
	}
	if (m->remap && r->offset < 2 * MIB) {
		r->remap_offset = r->offset + 4 * MIB;
		return DMU_REMAP;
	}
	memcpy(r->data, m->mem + r->offset, r->len);
	return 0;
}

static int remapper_write(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	(void)r;
	return DMU_REMAP;
}

static int remapper_notify(void *ctx, struct dmu_req *r)
{
	struct remapper *m = ctx;

	if (m->nr_notes < ARRAY_SIZE(m->notes))
		m->notes[m->nr_notes++] = *r;
	return m->notify_rc;
}

static void remapper_reload(void *ctx, const struct dmu_info *info)
{
	struct remapper *m = ctx;

	m->reload_size = info->size;
	__atomic_add_fetch(&m->reloads, 1, __ATOMIC_RELEASE);
}

static const struct dmu_ops remapper_ops = {
	.read = remapper_read,
	.write = remapper_write,
	.flush = remapper_write,
	.notify = remapper_notify,
	.reload = remapper_reload,
};

struct remap_server {
	pthread_t thread;
	const char *name;
	struct remapper *m;
	struct dmu_serve_opts opts;
	int ret;
};

static void remapper_ready(void *ctx)
{
	__atomic_store_n(&((struct remapper *)ctx)->ready, 1, __ATOMIC_RELEASE);
}

static void *remap_thread(void *arg)
{
	struct remap_server *s = arg;

	s->ret = dmu_serve(s->name, &remapper_ops, s->m, &s->opts);
	return NULL;
}

static int start_remap_server(struct remap_server *s)
{
	int i;

	if (pthread_create(&s->thread, NULL, remap_thread, s))
		return -1;
	for (i = 0; i < 500; i++) {
		if (__atomic_load_n(&s->m->ready, __ATOMIC_ACQUIRE))
			return 0;
		usleep(10000);
	}
	return -1;
}

static int stop_remap_server(struct remap_server *s)
{
	s->m->stop = 1;
	return pthread_join(s->thread, NULL) ? -1 : s->ret;
}

TEST(remap_through_the_library)
{
	static const enum dmu_transport transports[] = {
		DMU_TRANSPORT_RW, DMU_TRANSPORT_RING,
	};
	unsigned char *buf = dmu_alloc(MIB), *ram = dmu_alloc(8 * MIB);
	char dev[64], table[256], mapper[128], ram_disk[128], features[160];
	struct remapper m = { .remap = true };
	struct remap_server srv = { .m = &m };
	struct dmu_info info;
	unsigned int t;
	int bdev, rfd, ch;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, ram);
	if (dmu_ram_disk(ram_disk, sizeof(ram_disk)))
		SKIP(return, "no RAM disk");
	m.mem = dmu_alloc(SECTORS * 512);
	ASSERT_NE(NULL, m.mem);
	dmu_fill(m.mem, SECTORS * 512, 50);
	dmu_fill(ram, 8 * MIB, 51);
	rfd = open(ram_disk, O_RDWR | O_DIRECT);
	ASSERT_LE(0, rfd);
	ASSERT_EQ(8 * MIB, pwrite(rfd, ram, 8 * MIB, 0));

	/* Without a backing device there is nothing to remap to. */
	snprintf(dev, sizeof(dev), "dmu_libremap_%d", getpid());
	snprintf(mapper, sizeof(mapper), "/dev/mapper/%s", dev);
	ASSERT_EQ(0, dmu_table_line(table, sizeof(table), SECTORS, dev, NULL));
	ASSERT_EQ(0, dmu_dev_create(dev, table));
	ASSERT_EQ(0, dmu_wait_node(dev, 5000));
	srv.name = dev;
	srv.opts = (struct dmu_serve_opts){ .remap = true, .stop = &m.stop };
	EXPECT_EQ(-EOPNOTSUPP, dmu_serve(dev, &remapper_ops, &m, &srv.opts));
	ASSERT_EQ(0, dmu_dev_remove(dev));

	snprintf(features, sizeof(features), "backing %s 0", ram_disk);
	ASSERT_EQ(0, dmu_table_line(table, sizeof(table), SECTORS, dev,
				    features));
	ASSERT_EQ(0, dmu_dev_create(dev, table));
	ASSERT_EQ(0, dmu_wait_node(dev, 5000));
	bdev = open(mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, bdev);

	for (t = 0; t < 2; t++) {
		m.stop = 0;
		m.ready = 0;
		srv.opts = (struct dmu_serve_opts){
			.transport = transports[t], .remap = true,
			.stop = &m.stop, .ready = remapper_ready,
		};
		ASSERT_EQ(0, start_remap_server(&srv));

		/* Where it is, from elsewhere, from the daemon's memory. */
		ASSERT_EQ(65536, pread(bdev, buf, 65536, 4096));
		EXPECT_EQ(0, memcmp(buf, ram + 4096, 65536)) TH_LOG("t %u", t);
		ASSERT_EQ(65536, pread(bdev, buf, 65536, MIB + 8192));
		EXPECT_EQ(0, memcmp(buf, ram + 5 * MIB + 8192, 65536));
		ASSERT_EQ(65536, pread(bdev, buf, 65536, 3 * MIB));
		EXPECT_EQ(0, memcmp(buf, m.mem + 3 * MIB, 65536));

		/* Written through to the RAM disk, then read back from it. */
		dmu_fill(buf, 131072, 60 + t);
		ASSERT_EQ(131072, pwrite(bdev, buf, 131072, 6 * MIB));
		EXPECT_EQ(0, fsync(bdev));
		ASSERT_EQ(131072, pread(rfd, ram + 6 * MIB, 131072, 6 * MIB));
		EXPECT_EQ(0, memcmp(buf, ram + 6 * MIB, 131072));

		EXPECT_EQ(0, stop_remap_server(&srv));
	}
	ch = dmu_open_channel(dev, 0);
	ASSERT_LE(0, ch);
	ASSERT_EQ(0, dmu_get_info(ch, &info));
	close(ch);
	EXPECT_EQ(DM_USER_CTL_VERSION, info.version);
	{
		struct stat st;

		ASSERT_EQ(0, stat(ram_disk, &st));
		snprintf(features, sizeof(features), "%u:%u",
			 major(st.st_rdev), minor(st.st_rdev));
		EXPECT_STREQ(features, info.backing);
	}
	EXPECT_EQ(0, info.backing_offset);
	/* Two reads and at least a write and a flush per transport. */
	EXPECT_LE(8, info.remapped);
	EXPECT_EQ(0, info.bad_answers);
	EXPECT_EQ(0, info.stats[DMU_OP_READ].errors);
	EXPECT_EQ(0, info.stats[DMU_OP_WRITE].errors);

	/*
	 * A remap the kernel would refuse, not in blocks or past the end, is
	 * answered as an error; the channel goes on serving.
	 */
	m.stop = 0;
	m.ready = 0;
	srv.opts = (struct dmu_serve_opts){ .remap = true, .stop = &m.stop,
					    .ready = remapper_ready };
	ASSERT_EQ(0, start_remap_server(&srv));
	m.skew = 100;
	EXPECT_EQ(-1, pread(bdev, buf, 4096, 0));
	EXPECT_EQ(EIO, errno);
	m.skew = SECTORS * 512;
	EXPECT_EQ(-1, pread(bdev, buf, 4096, 0));
	EXPECT_EQ(EIO, errno);
	m.skew = 0;
	ASSERT_EQ(4096, pread(bdev, buf, 4096, 0));
	EXPECT_EQ(0, memcmp(buf, ram, 4096));
	EXPECT_EQ(0, stop_remap_server(&srv));

	/* DMU_REMAP without the option is the callback's bug: an error. */
	m.stop = 0;
	m.ready = 0;
	srv.opts = (struct dmu_serve_opts){ .stop = &m.stop,
					    .ready = remapper_ready };
	ASSERT_EQ(0, start_remap_server(&srv));
	EXPECT_EQ(-1, pread(bdev, buf, 4096, 0));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(0, stop_remap_server(&srv));

	/*
	 * Claims through the library: with the first MiB released, its I/O
	 * goes straight to the RAM disk, no daemon needed.
	 */
	ch = dmu_open_channel(dev, 0);
	ASSERT_LE(0, ch);
	EXPECT_EQ(1, dmu_release(ch, 0, MIB));
	EXPECT_EQ(-EINVAL, dmu_claim(ch, 100, 512));
	EXPECT_EQ(-EINVAL, dmu_claim(ch, 0, 0));
	ASSERT_EQ(65536, pread(bdev, buf, 65536, 8192));
	EXPECT_EQ(0, memcmp(buf, ram + 8192, 65536));
	ASSERT_EQ(0, dmu_get_info(ch, &info));
	EXPECT_EQ(1, info.claim_ranges);
	EXPECT_LE(1, info.passed);
	EXPECT_EQ(2, dmu_claim(ch, 0, 4096));
	/* Per operation: a range's reads claimed and released again. */
	EXPECT_EQ(-EINVAL, dmu_claim_ops(ch, 8192, 4096, 0));
	EXPECT_EQ(-EINVAL, dmu_claim_ops(ch, 8192, 4096, 4));
	EXPECT_EQ(3, dmu_claim_ops(ch, 8192, 4096, DM_USER_CLAIM_READS));
	/* Its writes too: still one range, now for both. */
	EXPECT_EQ(3, dmu_claim_ops(ch, 8192, 4096, DM_USER_CLAIM_WRITES));
	EXPECT_EQ(3, dmu_release_ops(ch, 8192, 4096, DM_USER_CLAIM_READS));
	EXPECT_EQ(2, dmu_release_ops(ch, 8192, 4096, DM_USER_CLAIM_WRITES));
	/* Mapped: reads of 64 KiB there come from 128 KiB, no daemon. */
	EXPECT_EQ(-EINVAL, dmu_map(ch, 65536, 8192, 100, DM_USER_CLAIM_READS));
	EXPECT_EQ(-EINVAL, dmu_map(ch, 65536, 8192, 131072, 0));
	EXPECT_EQ(-ERANGE, dmu_map(ch, 65536, 8192, SECTORS * 512, DM_USER_CLAIM_ALL));
	EXPECT_EQ(1, dmu_map(ch, 65536, 8192, 131072, DM_USER_CLAIM_READS));
	ASSERT_EQ(8192, pread(bdev, buf, 8192, 65536));
	EXPECT_EQ(0, memcmp(buf, ram + 131072, 8192));
	ASSERT_EQ(0, dmu_get_info(ch, &info));
	EXPECT_EQ(1, info.map_ranges);
	EXPECT_EQ(2, info.claim_ranges);
	/* A program built before 1.6 has a struct that ends at reloads. */
	info.map_ranges = 12345;
	info.claim_ranges = 0;
	ASSERT_EQ(0, (dmu_get_info)(ch, &info));
	EXPECT_EQ(2, info.claim_ranges);
	EXPECT_EQ(12345, info.map_ranges);
	EXPECT_EQ(0, dmu_unmap(ch, 0, MIB, DM_USER_CLAIM_ALL));
	ASSERT_EQ(8192, pread(bdev, buf, 8192, 65536));
	EXPECT_EQ(0, memcmp(buf, ram + 65536, 8192));

	/*
	 * Write notifications: a write in the released part reaches
	 * ->notify, with its offset and length and no data, before the RAM
	 * disk; one that ->notify fails, fails, with nothing written.
	 */
	{
		struct dmu_params p = { .notify_writes = 1 };

		ASSERT_EQ(0, dmu_set_params(ch, &p, DMU_PARAM_NOTIFY_WRITES));
		memset(&p, 0, sizeof(p));
		ASSERT_EQ(0, dmu_get_params(ch, &p));
		EXPECT_EQ(1, p.notify_writes);
	}
	for (t = 0; t < 2; t++) {
		m.stop = 0;
		m.ready = 0;
		m.nr_notes = 0;
		srv.opts = (struct dmu_serve_opts){
			.transport = transports[t], .remap = true,
			.stop = &m.stop, .ready = remapper_ready,
		};
		ASSERT_EQ(0, start_remap_server(&srv));
		dmu_fill(buf, 8192, 70 + t);
		ASSERT_EQ(8192, pwrite(bdev, buf, 8192, 16384));
		ASSERT_EQ(8192, pread(rfd, ram, 8192, 16384));
		EXPECT_EQ(0, memcmp(buf, ram, 8192)) TH_LOG("t %u", t);
		m.notify_rc = -EIO;
		dmu_fill(buf, 8192, 72 + t);
		EXPECT_EQ(-1, pwrite(bdev, buf, 8192, 16384));
		EXPECT_EQ(EIO, errno);
		m.notify_rc = 0;
		ASSERT_EQ(8192, pread(rfd, ram, 8192, 16384));
		EXPECT_NE(0, memcmp(buf, ram, 8192)) TH_LOG("t %u", t);
		EXPECT_EQ(0, stop_remap_server(&srv));
		ASSERT_EQ(2, m.nr_notes) TH_LOG("t %u", t);
		EXPECT_TRUE(dmu_req_is_notify(&m.notes[0]));
		EXPECT_EQ(DM_USER_REQ_NOTIFY | DM_USER_REQ_MAP_WRITE,
			  m.notes[0].type);
		EXPECT_EQ(16384, m.notes[0].offset);
		EXPECT_EQ(8192, m.notes[0].len);
		EXPECT_EQ(NULL, m.notes[0].data);
	}
	ASSERT_EQ(0, dmu_get_info(ch, &info));
	EXPECT_EQ(4, info.notified);

	/*
	 * Reloads under the same name while the daemon serves: ->reload
	 * comes once each, with the new size, and a remap into the new half
	 * of a grown device is taken (the library checks against the new
	 * size). Grown on one transport, shrunk back on the other.
	 */
	{
		struct dmu_params p = { .notify_writes = 0 };

		ASSERT_EQ(0, dmu_set_params(ch, &p, DMU_PARAM_NOTIFY_WRITES));
	}
	snprintf(features, sizeof(features), "backing %s 0", ram_disk);
	for (t = 0; t < 2; t++) {
		uint64_t sectors = t ? SECTORS : 2 * SECTORS;
		int waited;

		m.stop = 0;
		m.ready = 0;
		m.reloads = 0;
		srv.opts = (struct dmu_serve_opts){
			.transport = transports[t], .remap = true,
			.threads = 2, .stop = &m.stop, .ready = remapper_ready,
		};
		ASSERT_EQ(0, start_remap_server(&srv));
		ASSERT_EQ(0, dmu_table_line(table, sizeof(table), sectors, dev,
					    features));
		ASSERT_EQ(0, dmu_dev_load(dev, table));
		ASSERT_EQ(0, dmu_dev_resume(dev));
		/*
		 * At once into the new half: the library learns the size
		 * before it judges the remap, whenever it would have looked.
		 */
		if (!t) {
			dmu_fill(buf, 65536, 80);
			ASSERT_EQ(65536, pwrite(bdev, buf, 65536, 12 * MIB));
			ASSERT_EQ(65536, pread(rfd, ram, 65536, 12 * MIB));
			EXPECT_EQ(0, memcmp(buf, ram, 65536));
		}
		for (waited = 0; waited < 5000 &&
		     !__atomic_load_n(&m.reloads, __ATOMIC_ACQUIRE);
		     waited += 10)
			usleep(10000);
		/* Both channels have looked by now: one call all the same. */
		usleep(600000);
		EXPECT_EQ(1, __atomic_load_n(&m.reloads, __ATOMIC_ACQUIRE))
			TH_LOG("t %u", t);
		EXPECT_EQ(sectors, m.reload_size);
		EXPECT_EQ(0, stop_remap_server(&srv));
	}
	ASSERT_EQ(0, dmu_get_info(ch, &info));
	EXPECT_EQ(2, info.reloads);
	EXPECT_EQ(SECTORS, info.size);
	close(ch);

	close(bdev);
	close(rfd);
	EXPECT_EQ(0, dmu_dev_remove(dev));
	free(m.mem);
	free(buf);
	free(ram);
}

TEST_HARNESS_MAIN
