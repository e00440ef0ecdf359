// SPDX-License-Identifier: GPL-2.0
/*
 * libdmuser's asynchronous serving: callbacks that return DMU_PENDING and
 * requests completed later, from another thread, with dmu_complete(). On
 * the ring and on read()/write() channels (with and without WRITE_BATCH):
 * completion out of order, the in-flight limit, a late completion after
 * the kernel reset the channel, a stop with requests pending, the
 * event-loop form (dmu_server_*), a channel closed and opened again while
 * it holds requests, and what a synchronous server does with DMU_PENDING. Every test checks the data the block device returns.
 */
#include <libaio.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <dmuser.h>

#include "dmu_test.h"
#include <kselftest_harness.h>

#define SECTORS		16384
#define BLK		4096
#define NIO		32
#define MAXHELD		256
#define WAIT_MS		10000

/*
 * A RAM store whose callbacks leave every request pending for a completer
 * thread, which takes what is held in batches and completes each batch in
 * reverse order.
 */
struct astore {
	unsigned char *mem;
	uint64_t size;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct dmu_req *held[MAXHELD];
	unsigned int nheld;
	unsigned int max_held;	/* the most held at once */
	unsigned int handed;	/* callbacks called */
	unsigned int completed;
	unsigned int inversions;	/* batches completed newest first */
	bool hold;		/* the completer leaves them held */
	bool quit;
	pid_t serving_tid, completer_tid;
	/* Reads of this offset: how often handed, and the first kept aside. */
	uint64_t victim;
	unsigned int victim_calls;
	struct dmu_req *victim_req;
	volatile int stop;
	int ready;
	pthread_t completer;
};

static pid_t tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static int a_hold(void *ctx, struct dmu_req *r)
{
	struct astore *s = ctx;

	pthread_mutex_lock(&s->lock);
	s->serving_tid = tid();
	s->handed++;
	if (r->type == DM_USER_REQ_MAP_READ && r->offset == s->victim &&
	    s->victim_calls++ == 0) {
		/* Kept aside: completed only once its channel is gone. */
		s->victim_req = r;
	} else if (s->nheld < MAXHELD) {
		s->held[s->nheld++] = r;
	}
	if (s->nheld + (s->victim_req ? 1 : 0) > s->max_held)
		s->max_held = s->nheld + (s->victim_req ? 1 : 0);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return DMU_PENDING;
}

static void a_apply(struct astore *s, struct dmu_req *r)
{
	int rc = 0;

	if (r->offset + r->len > s->size && r->type != DM_USER_REQ_MAP_FLUSH)
		rc = -EIO;
	else if (r->type == DM_USER_REQ_MAP_READ)
		memcpy(r->data, s->mem + r->offset, r->len);
	else if (r->type == DM_USER_REQ_MAP_WRITE)
		memcpy(s->mem + r->offset, r->data, r->len);
	dmu_complete(r, rc);
}

static void *a_completer(void *arg)
{
	struct astore *s = arg;
	struct dmu_req *batch[MAXHELD];

	s->completer_tid = tid();
	pthread_mutex_lock(&s->lock);
	for (;;) {
		unsigned int n, i;
		struct timespec ts;

		while (!s->quit && (s->hold || !s->nheld))
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->quit)
			break;
		/* Let more come, so that a batch has several to reorder. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->hold)
			continue;
		n = s->nheld;
		memcpy(batch, s->held, n * sizeof(*batch));
		s->nheld = 0;
		if (n > 1)
			s->inversions++;
		pthread_mutex_unlock(&s->lock);
		for (i = n; i-- > 0;) {
			a_apply(s, batch[i]);
			__atomic_add_fetch(&s->completed, 1, __ATOMIC_RELAXED);
		}
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static const struct dmu_ops a_ops = {
	.read = a_hold, .write = a_hold, .flush = a_hold,
};

static void a_ready(void *ctx)
{
	__atomic_store_n(&((struct astore *)ctx)->ready, 1, __ATOMIC_RELEASE);
}

static void a_set_hold(struct astore *s, bool hold)
{
	pthread_mutex_lock(&s->lock);
	s->hold = hold;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Waits up to @ms for @n requests held; returns how many are. */
static unsigned int a_wait_held(struct astore *s, unsigned int n, int ms)
{
	unsigned int got;
	int waited;

	for (waited = 0;; waited += 10) {
		pthread_mutex_lock(&s->lock);
		got = s->nheld;
		pthread_mutex_unlock(&s->lock);
		if (got >= n || waited >= ms)
			return got;
		usleep(10000);
	}
}

struct serve_run {
	pthread_t thread;
	const char *name;
	struct astore *store;
	struct dmu_serve_opts opts;
	bool old_symbol;	/* the 1.6 dmu_serve symbol */
	int ret;
	int done;
};

static void *serve_main(void *arg)
{
	struct serve_run *r = arg;

	r->opts.stop = &r->store->stop;
	r->opts.ready = a_ready;
	if (r->old_symbol)
		r->ret = (dmu_serve)(r->name, &a_ops, r->store, &r->opts);
	else
		r->ret = dmu_serve(r->name, &a_ops, r->store, &r->opts);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool wait_flag(int *flag, int ms)
{
	int waited;

	for (waited = 0; waited <= ms; waited += 10) {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
			return true;
		usleep(10000);
	}
	return false;
}

/*
 * Control blocks live until their events are read, which name them: one
 * per block number (modulo the array) of the requests in flight together.
 */
static struct iocb aio_cbs[2 * NIO];

/* Submits @n requests of @len bytes at block @first on, with a pattern. */
static int aio_blocks(int fd, io_context_t ctx, bool write, unsigned int n,
		      unsigned int first, size_t len, unsigned char **bufs,
		      uint32_t seed)
{
	struct iocb *list[NIO];
	unsigned int i;

	for (i = 0; i < n; i++) {
		struct iocb *cb = &aio_cbs[(first + i) % (2 * NIO)];
		off_t off = (off_t)(first + i) * (off_t)len;

		if (write) {
			dmu_fill(bufs[i], len, seed + i);
			io_prep_pwrite(cb, fd, bufs[i], len, off);
		} else {
			memset(bufs[i], 0x5a, len);
			io_prep_pread(cb, fd, bufs[i], len, off);
		}
		list[i] = cb;
	}
	return io_submit(ctx, n, list);
}

/* Collects @n events within @ms; how many of them moved @len bytes. */
static int aio_reap(io_context_t ctx, unsigned int n, size_t len, int ms,
		    int *errors)
{
	struct io_event ev[NIO];
	struct timespec ts = { .tv_sec = ms / 1000 };
	unsigned int got = 0;
	int ok = 0, i, r;

	*errors = 0;
	while (got < n) {
		r = io_getevents(ctx, 1, n - got, ev, &ts);
		if (r <= 0)
			break;
		for (i = 0; i < r; i++) {
			if (ev[i].res == len)
				ok++;
			else
				(*errors)++;
		}
		got += r;
	}
	return ok;
}

FIXTURE(async)
{
	char dev[64], mapper[96];
	struct astore store;
	struct serve_run run;
	io_context_t aio;
	int bfd;
	unsigned char *bufs[NIO];
	bool created, serving;
};

FIXTURE_VARIANT(async)
{
	enum dmu_transport transport;
	bool write_batch;
};

FIXTURE_VARIANT_ADD(async, ring)
{
	.transport = DMU_TRANSPORT_RING,
};

FIXTURE_VARIANT_ADD(async, rw)
{
	.transport = DMU_TRANSPORT_RW,
};

FIXTURE_VARIANT_ADD(async, rw_write_batch)
{
	.transport = DMU_TRANSPORT_RW, .write_batch = true,
};

static int create_dev(struct __test_metadata *_metadata,
		      FIXTURE_DATA(async) *self, const char *features)
{
	char table[256];
	int rc;

	rc = dmu_table_line(table, sizeof(table), SECTORS, self->dev,
			    features);
	if (!rc)
		rc = dmu_dev_create(self->dev, table);
	if (!rc) {
		self->created = true;
		rc = dmu_wait_node(self->dev, 5000);
	}
	EXPECT_EQ(0, rc);
	return rc;
}

FIXTURE_SETUP(async)
{
	unsigned int i;

	memset(self, 0, sizeof(*self));
	self->bfd = -1;
	snprintf(self->dev, sizeof(self->dev), "dmu_async_%d", getpid());
	snprintf(self->mapper, sizeof(self->mapper), "/dev/mapper/%s",
		 self->dev);
	self->store.size = (uint64_t)SECTORS * 512;
	self->store.mem = calloc(1, self->store.size);
	ASSERT_NE(NULL, self->store.mem);
	self->store.victim = UINT64_MAX;
	pthread_mutex_init(&self->store.lock, NULL);
	pthread_cond_init(&self->store.cond, NULL);
	ASSERT_EQ(0, pthread_create(&self->store.completer, NULL, a_completer,
				    &self->store));
	for (i = 0; i < NIO; i++) {
		self->bufs[i] = dmu_alloc(256 * 1024);
		ASSERT_NE(NULL, self->bufs[i]);
	}
	ASSERT_EQ(0, io_setup(NIO, &self->aio));
	self->run.name = self->dev;
	self->run.store = &self->store;
	self->run.opts.transport = variant->transport;
	self->run.opts.write_batch = variant->write_batch;
}

FIXTURE_TEARDOWN(async)
{
	unsigned int i;

	if (self->bfd >= 0)
		close(self->bfd);
	/* Nothing may stay held, or the server never returns. */
	self->store.stop = 1;
	a_set_hold(&self->store, false);
	if (self->store.victim_req) {
		dmu_complete(self->store.victim_req, -EIO);
		self->store.victim_req = NULL;
	}
	if (self->serving && !wait_flag(&self->run.done, WAIT_MS))
		TH_LOG("the server did not stop");
	else if (self->serving)
		pthread_join(self->run.thread, NULL);
	pthread_mutex_lock(&self->store.lock);
	self->store.quit = true;
	pthread_cond_broadcast(&self->store.cond);
	pthread_mutex_unlock(&self->store.lock);
	pthread_join(self->store.completer, NULL);
	if (self->created)
		dmu_dev_remove(self->dev);
	io_destroy(self->aio);
	for (i = 0; i < NIO; i++)
		free(self->bufs[i]);
	free(self->store.mem);
}

static void start_serving(struct __test_metadata *_metadata,
			  FIXTURE_DATA(async) *self)
{
	ASSERT_EQ(0, pthread_create(&self->run.thread, NULL, serve_main,
				    &self->run));
	self->serving = true;
	ASSERT_TRUE(wait_flag(&self->store.ready, WAIT_MS));
	self->bfd = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bfd);
}

/*
 * Many requests in flight on one channel, completed from another thread in
 * an order unlike the one they came in; every byte read back.
 */
TEST_F(async, out_of_order_completion_from_another_thread)
{
	unsigned int i;
	int errors;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	self->run.opts.threads = 1;
	self->run.opts.max_pending = 64;
	start_serving(_metadata, self);

	ASSERT_EQ(NIO, aio_blocks(self->bfd, self->aio, true, NIO, 0, BLK,
				  self->bufs, 100));
	EXPECT_EQ(NIO, aio_reap(self->aio, NIO, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
	/* The store holds what was written, block by block. */
	for (i = 0; i < NIO; i++)
		EXPECT_EQ(0, memcmp(self->store.mem + (size_t)i * BLK,
				    self->bufs[i], BLK));
	ASSERT_EQ(NIO, aio_blocks(self->bfd, self->aio, false, NIO, 0, BLK,
				  self->bufs, 0));
	EXPECT_EQ(NIO, aio_reap(self->aio, NIO, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
	for (i = 0; i < NIO; i++) {
		unsigned char *want = dmu_alloc(BLK);

		ASSERT_NE(NULL, want);
		dmu_fill(want, BLK, 100 + i);
		EXPECT_EQ(0, memcmp(self->bufs[i], want, BLK));
		free(want);
	}
	/* Large requests: the whole of a pending request's buffer. */
	ASSERT_EQ(4, aio_blocks(self->bfd, self->aio, true, 4, 0, 256 * 1024,
				self->bufs, 500));
	EXPECT_EQ(4, aio_reap(self->aio, 4, 256 * 1024, WAIT_MS, &errors));
	ASSERT_EQ(4, aio_blocks(self->bfd, self->aio, false, 4, 0, 256 * 1024,
				self->bufs + 4, 0));
	EXPECT_EQ(4, aio_reap(self->aio, 4, 256 * 1024, WAIT_MS, &errors));
	for (i = 0; i < 4; i++)
		EXPECT_EQ(0, memcmp(self->bufs[i], self->bufs[4 + i],
				    256 * 1024));
	EXPECT_EQ(0, fsync(self->bfd));

	/* Several at once on the one channel, answered out of order. */
	EXPECT_LE(2, self->store.max_held);
	EXPECT_LT(0, self->store.inversions);
	EXPECT_NE(self->store.serving_tid, self->store.completer_tid);
	EXPECT_EQ(self->store.handed, self->store.completed);
	self->store.stop = 1;
	ASSERT_TRUE(wait_flag(&self->run.done, WAIT_MS));
	EXPECT_EQ(0, self->run.ret);
}

/*
 * At max_pending a channel takes no more: the rest wait in the kernel,
 * and come once some are completed.
 */
TEST_F(async, in_flight_limit)
{
	unsigned int i;
	int errors;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	for (i = 0; i < NIO; i++)
		dmu_fill(self->store.mem + (size_t)i * BLK, BLK, 700 + i);
	self->run.opts.threads = 1;
	self->run.opts.max_pending = 4;
	self->store.hold = true;
	start_serving(_metadata, self);

	ASSERT_EQ(16, aio_blocks(self->bfd, self->aio, false, 16, 0, BLK,
				 self->bufs, 0));
	EXPECT_EQ(4, a_wait_held(&self->store, 4, WAIT_MS));
	usleep(500 * 1000);
	/* No fifth handed out while four are pending. */
	EXPECT_EQ(4, a_wait_held(&self->store, 5, 0));
	EXPECT_EQ(4, self->store.handed);
	a_set_hold(&self->store, false);
	EXPECT_EQ(16, aio_reap(self->aio, 16, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
	EXPECT_EQ(4, self->store.max_held);
	EXPECT_EQ(16, self->store.handed);
	for (i = 0; i < 16; i++) {
		EXPECT_EQ(0, memcmp(self->bufs[i],
				    self->store.mem + (size_t)i * BLK, BLK));
	}
}

/*
 * request_timeout resets the channel that holds a request too long: that
 * one fails, the library reopens the channel, the kernel gives it the
 * channel's other requests again, and the late completions of the old
 * copies (with wrong data) are dropped without harm.
 */
TEST_F(async, late_completion_after_reset_is_dropped)
{
	struct dmu_req *old[MAXHELD];
	unsigned int i, nold;
	int errors;

	ASSERT_EQ(0, create_dev(_metadata, self, "request_timeout 2"));
	for (i = 0; i < 8; i++)
		dmu_fill(self->store.mem + (size_t)i * BLK, BLK, 900 + i);
	self->run.opts.threads = 1;
	/* Room for the old copies, which keep their slots until completed. */
	self->run.opts.max_pending = 16;
	self->store.hold = true;
	self->store.victim = 0;
	start_serving(_metadata, self);

	/*
	 * Block 0 is kept aside for good, and times out after 2 s; blocks 1
	 * to 7, a second younger, are held then, so that the reset channel
	 * has them: their copies are set aside, and the ones the reopened
	 * channel gets are completed.
	 */
	ASSERT_EQ(1, aio_blocks(self->bfd, self->aio, false, 1, 0, BLK,
				self->bufs, 0));
	usleep(1000 * 1000);
	ASSERT_EQ(7, aio_blocks(self->bfd, self->aio, false, 7, 1, BLK,
				self->bufs + 1, 0));
	EXPECT_EQ(7, a_wait_held(&self->store, 7, WAIT_MS));
	pthread_mutex_lock(&self->store.lock);
	nold = self->store.nheld;
	memcpy(old, self->store.held, nold * sizeof(*old));
	self->store.nheld = 0;
	self->store.hold = false;
	pthread_mutex_unlock(&self->store.lock);
	ASSERT_NE(NULL, self->store.victim_req);

	/* The timeout fails block 0; the others come again, and are served. */
	{
		struct io_event ev[8];
		struct timespec ts = { .tv_sec = 15 };
		int n, got = 0, failed = 0, ok = 0;

		while (got < 8) {
			n = io_getevents(self->aio, 1, 8 - got, ev, &ts);
			if (n <= 0)
				break;
			for (i = 0; i < (unsigned int)n; i++) {
				struct iocb *cb = ev[i].obj;

				if (cb->u.c.offset == 0 && (long)ev[i].res < 0)
					failed++;
				else if (ev[i].res == BLK)
					ok++;
			}
			got += n;
		}
		EXPECT_EQ(8, got);
		EXPECT_EQ(1, failed);
		EXPECT_EQ(7, ok);
	}
	EXPECT_EQ(1, self->store.victim_calls);
	EXPECT_EQ(15, self->store.handed);
	/* The old copies, completed late with data that must not arrive. */
	for (i = 0; i < nold; i++) {
		memset(old[i]->data, 0xee, old[i]->len);
		dmu_complete(old[i], 0);
	}
	memset(self->store.victim_req->data, 0xee,
	       self->store.victim_req->len);
	dmu_complete(self->store.victim_req, 0);
	self->store.victim_req = NULL;
	for (i = 1; i < 8; i++)
		EXPECT_EQ(0, memcmp(self->bufs[i],
				    self->store.mem + (size_t)i * BLK, BLK));
	/* Still serving on the reopened channel, with the right data. */
	ASSERT_EQ(8, aio_blocks(self->bfd, self->aio, false, 8, 0, BLK,
				self->bufs, 0));
	EXPECT_EQ(8, aio_reap(self->aio, 8, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
	for (i = 0; i < 8; i++)
		EXPECT_EQ(0, memcmp(self->bufs[i],
				    self->store.mem + (size_t)i * BLK, BLK));
	self->store.stop = 1;
	ASSERT_TRUE(wait_flag(&self->run.done, WAIT_MS));
	EXPECT_EQ(0, self->run.ret);
}

/*
 * A stop with requests pending: dmu_serve() answers them once they are
 * completed, and only then returns.
 */
TEST_F(async, stop_waits_for_pending_requests)
{
	unsigned int i;
	int errors;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	self->run.opts.threads = 2;
	self->run.opts.max_pending = 8;
	self->store.hold = true;
	start_serving(_metadata, self);

	ASSERT_EQ(6, aio_blocks(self->bfd, self->aio, true, 6, 0, BLK,
				self->bufs, 300));
	EXPECT_EQ(6, a_wait_held(&self->store, 6, WAIT_MS));
	self->store.stop = 1;
	usleep(600 * 1000);
	EXPECT_FALSE(__atomic_load_n(&self->run.done, __ATOMIC_ACQUIRE));
	a_set_hold(&self->store, false);
	EXPECT_EQ(6, aio_reap(self->aio, 6, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
	ASSERT_TRUE(wait_flag(&self->run.done, WAIT_MS));
	EXPECT_EQ(0, self->run.ret);
	for (i = 0; i < 6; i++)
		EXPECT_EQ(0, memcmp(self->store.mem + (size_t)i * BLK,
				    self->bufs[i], BLK));
}

/*
 * Without max_pending, DMU_PENDING is a callback's bug, answered as an
 * error; so it is through the 1.6 dmu_serve symbol, which does not read
 * max_pending.
 */
TEST_F(async, pending_without_max_pending_is_an_error)
{
	int round;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	/* The completer must not touch what a synchronous server hands out. */
	self->store.hold = true;
	for (round = 0; round < 2; round++) {
		unsigned char *buf = self->bufs[0];

		memset(&self->run.opts, 0, sizeof(self->run.opts));
		self->run.opts.transport = variant->transport;
		self->run.opts.write_batch = variant->write_batch;
		self->run.old_symbol = round == 1;
		if (round == 1)
			self->run.opts.max_pending = 8;
		self->run.done = 0;
		self->store.stop = 0;
		self->store.ready = 0;
		start_serving(_metadata, self);
		errno = 0;
		EXPECT_EQ(-1, pread(self->bfd, buf, BLK, 0));
		EXPECT_EQ(EIO, errno);
		/* Nothing was kept: the request was answered at once. */
		pthread_mutex_lock(&self->store.lock);
		self->store.nheld = 0;
		pthread_mutex_unlock(&self->store.lock);
		close(self->bfd);
		self->bfd = -1;
		self->store.stop = 1;
		ASSERT_TRUE(wait_flag(&self->run.done, WAIT_MS));
		pthread_join(self->run.thread, NULL);
		self->serving = false;
		EXPECT_EQ(0, self->run.ret);
	}
}

TEST_F(async, options_refused)
{
	struct dmu_serve_opts o = { .max_pending = 4, .batch = 2,
				    .transport = DMU_TRANSPORT_RW };
	struct dmu_server *srv = (struct dmu_server *)&o;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	EXPECT_EQ(-EINVAL, dmu_serve(self->dev, &a_ops, &self->store, &o));
	o.batch = 0;
	o.read_batch = true;
	EXPECT_EQ(-EINVAL, dmu_serve(self->dev, &a_ops, &self->store, &o));
	o.read_batch = false;
	o.max_pending = DMU_MAX_PENDING + 1;
	EXPECT_EQ(-EINVAL, dmu_server_open(&srv, self->dev, &a_ops,
					   &self->store, &o));
	EXPECT_EQ(NULL, srv);
	o.max_pending = 4;
	o.threads = 2;
	o.transport = variant->transport;
	ASSERT_EQ(0, dmu_server_open(&srv, self->dev, &a_ops, &self->store,
				     &o));
	EXPECT_LE(0, dmu_server_fd(srv, 1));
	EXPECT_EQ(-EINVAL, dmu_server_fd(srv, 2));
	EXPECT_EQ(-EINVAL, dmu_server_serve(srv, 2));
	EXPECT_EQ(0, dmu_server_pending(srv, 0));
	EXPECT_EQ(0, dmu_server_close(srv));
}

/* The event-loop form: one thread waits for both channels in its epoll. */
struct loop {
	struct dmu_server *srv;
	struct astore *store;
	int ret[2];
	int busy_close;		/* dmu_server_close() while pending */
	int done;
};

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	struct epoll_event ev = { .events = EPOLLIN }, got[2];
	bool ended[2] = { false, false };
	unsigned int c;
	int ep = epoll_create1(0);

	if (ep < 0)
		goto out;
	for (c = 0; c < 2; c++) {
		ev.data.u32 = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, dmu_server_fd(l->srv, c), &ev))
			goto out;
	}
	while (!ended[0] || !ended[1]) {
		int n = epoll_wait(ep, got, 2, 200), i;

		if (n < 0)
			break;
		/* Every channel now and then: that is how a stop is heard. */
		for (i = 0; i < 2; i++) {
			if (ended[i])
				continue;
			l->ret[i] = dmu_server_serve(l->srv, i);
			if (l->ret[i])
				ended[i] = true;
			if (l->store->stop && dmu_server_pending(l->srv, i) &&
			    !l->busy_close)
				l->busy_close = dmu_server_close(l->srv);
		}
	}
out:
	if (ep >= 0)
		close(ep);
	__atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST_F(async, event_loop)
{
	struct dmu_serve_opts o = {
		.threads = 2, .max_pending = 16,
		.transport = variant->transport,
		.write_batch = variant->write_batch,
	};
	struct loop l = { .store = &self->store };
	pthread_t th;
	unsigned int i;
	int errors;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	o.stop = &self->store.stop;
	ASSERT_EQ(0, dmu_server_open(&l.srv, self->dev, &a_ops, &self->store,
				     &o));
	ASSERT_EQ(0, pthread_create(&th, NULL, loop_main, &l));
	self->bfd = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bfd);

	ASSERT_EQ(NIO, aio_blocks(self->bfd, self->aio, true, NIO, 8, BLK,
				  self->bufs, 40));
	EXPECT_EQ(NIO, aio_reap(self->aio, NIO, BLK, WAIT_MS, &errors));
	ASSERT_EQ(NIO, aio_blocks(self->bfd, self->aio, false, NIO, 8, BLK,
				  self->bufs, 0));
	EXPECT_EQ(NIO, aio_reap(self->aio, NIO, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
	for (i = 0; i < NIO; i++)
		EXPECT_EQ(0, memcmp(self->bufs[i],
				    self->store.mem + (size_t)(8 + i) * BLK,
				    BLK));
	EXPECT_LE(2, self->store.max_held);

	/* A stop with one request pending: answered, then the loop ends. */
	a_set_hold(&self->store, true);
	ASSERT_EQ(1, aio_blocks(self->bfd, self->aio, false, 1, 8, BLK,
				self->bufs, 0));
	EXPECT_EQ(1, a_wait_held(&self->store, 1, WAIT_MS));
	self->store.stop = 1;
	usleep(600 * 1000);
	EXPECT_FALSE(__atomic_load_n(&l.done, __ATOMIC_ACQUIRE));
	EXPECT_EQ(-EBUSY, l.busy_close);
	a_set_hold(&self->store, false);
	EXPECT_EQ(1, aio_reap(self->aio, 1, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, memcmp(self->bufs[0], self->store.mem + 8 * BLK, BLK));
	ASSERT_TRUE(wait_flag(&l.done, WAIT_MS));
	pthread_join(th, NULL);
	EXPECT_EQ(1, l.ret[0]);
	EXPECT_EQ(1, l.ret[1]);
	EXPECT_EQ(0, dmu_server_close(l.srv));
}

/*
 * A daemon that loses its back end closes the channel: the kernel takes
 * back what the channel held, pending or not, and gives it again once the
 * channel is open; the late completions of the old copies are dropped.
 */
struct one_loop {
	struct dmu_server *srv;
	int cmd;		/* 1: close the channel, 2: open it; then 0 */
	int cmd_ret;
	int ret;
	int done;
};

static void *one_loop_main(void *arg)
{
	struct one_loop *l = arg;
	struct pollfd p = { .fd = dmu_server_fd(l->srv, 0), .events = POLLIN };

	for (;;) {
		int cmd = __atomic_load_n(&l->cmd, __ATOMIC_ACQUIRE);

		if (cmd) {
			l->cmd_ret = cmd == 1 ?
				     dmu_server_close_channel(l->srv, 0) :
				     dmu_server_open_channel(l->srv, 0);
			__atomic_store_n(&l->cmd, 0, __ATOMIC_RELEASE);
		}
		if (poll(&p, 1, 50) < 0 && errno != EINTR)
			break;
		l->ret = dmu_server_serve(l->srv, 0);
		if (l->ret)
			break;
	}
	__atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int loop_cmd(struct one_loop *l, int cmd)
{
	__atomic_store_n(&l->cmd, cmd, __ATOMIC_RELEASE);
	while (__atomic_load_n(&l->cmd, __ATOMIC_ACQUIRE))
		usleep(1000);
	return l->cmd_ret;
}

TEST_F(async, closed_channel_gives_requests_back)
{
	struct dmu_serve_opts o = {
		.threads = 1, .max_pending = 16,
		.transport = variant->transport,
		.write_batch = variant->write_batch,
	};
	struct one_loop l = { 0 };
	struct dmu_req *old[MAXHELD];
	struct io_event ev[4];
	struct timespec zero = { 0 };
	unsigned int i, nold;
	pthread_t th;
	int errors;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	for (i = 0; i < 4; i++)
		dmu_fill(self->store.mem + (size_t)i * BLK, BLK, 60 + i);
	o.stop = &self->store.stop;
	ASSERT_EQ(0, dmu_server_open(&l.srv, self->dev, &a_ops, &self->store,
				     &o));
	ASSERT_EQ(0, pthread_create(&th, NULL, one_loop_main, &l));
	self->bfd = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bfd);

	self->store.hold = true;
	ASSERT_EQ(4, aio_blocks(self->bfd, self->aio, false, 4, 0, BLK,
				self->bufs, 0));
	ASSERT_EQ(4, a_wait_held(&self->store, 4, WAIT_MS));
	pthread_mutex_lock(&self->store.lock);
	nold = self->store.nheld;
	memcpy(old, self->store.held, nold * sizeof(*old));
	self->store.nheld = 0;
	pthread_mutex_unlock(&self->store.lock);

	/* Closed: nothing comes, nothing fails. */
	EXPECT_EQ(0, loop_cmd(&l, 1));
	EXPECT_EQ(0, loop_cmd(&l, 1));
	usleep(300 * 1000);
	EXPECT_EQ(4, self->store.handed);
	EXPECT_EQ(0, io_getevents(self->aio, 0, 4, ev, &zero));
	EXPECT_EQ(4, dmu_server_pending(l.srv, 0));

	/* Open again: the same four come again, and are served. */
	a_set_hold(&self->store, false);
	EXPECT_EQ(0, loop_cmd(&l, 2));
	EXPECT_EQ(0, loop_cmd(&l, 2));
	EXPECT_EQ(4, aio_reap(self->aio, 4, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
	EXPECT_EQ(8, self->store.handed);
	for (i = 0; i < nold; i++) {
		memset(old[i]->data, 0xee, old[i]->len);
		dmu_complete(old[i], 0);
	}
	usleep(200 * 1000);
	for (i = 0; i < 4; i++)
		EXPECT_EQ(0, memcmp(self->bufs[i],
				    self->store.mem + (size_t)i * BLK, BLK));
	EXPECT_EQ(0, dmu_server_pending(l.srv, 0));
	EXPECT_EQ(-EINVAL, dmu_server_close_channel(l.srv, 1));
	EXPECT_EQ(-EINVAL, dmu_server_open_channel(l.srv, 1));

	self->store.stop = 1;
	ASSERT_TRUE(wait_flag(&l.done, WAIT_MS));
	pthread_join(th, NULL);
	EXPECT_EQ(1, l.ret);
	EXPECT_EQ(-ESHUTDOWN, dmu_server_open_channel(l.srv, 0));
	EXPECT_EQ(0, dmu_server_close(l.srv));
}

/*
 * A full channel leaves what it cannot serve to the other channels: on a
 * ring the kernel must not post more to it than it may hold. The requests
 * are queued before any channel opens, so that the first to look could
 * take them all.
 */
TEST_F(async, full_channel_leaves_requests_to_the_others)
{
	int errors;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	self->bfd = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bfd);
	ASSERT_EQ(8, aio_blocks(self->bfd, self->aio, false, 8, 0, BLK,
				self->bufs, 0));
	self->run.opts.threads = 2;
	self->run.opts.max_pending = 4;
	self->store.hold = true;
	ASSERT_EQ(0, pthread_create(&self->run.thread, NULL, serve_main,
				    &self->run));
	self->serving = true;
	/* Four to each channel, none held back where no callback sees it. */
	EXPECT_EQ(8, a_wait_held(&self->store, 8, WAIT_MS));
	EXPECT_EQ(8, self->store.handed);
	a_set_hold(&self->store, false);
	EXPECT_EQ(8, aio_reap(self->aio, 8, BLK, WAIT_MS, &errors));
	EXPECT_EQ(0, errors);
}

/*
 * A callback that answers and then sees the stop: its answer reaches the
 * kernel before dmu_serve() returns, rather than being given back to the
 * queue at the close. With no_daemon_timeout 0, a request given back
 * would fail at once.
 */
static int answer_then_stop(void *ctx, struct dmu_req *r)
{
	struct astore *s = ctx;

	memcpy(r->data, s->mem + r->offset, r->len);
	s->stop = 1;
	return 0;
}

static const struct dmu_ops stop_ops = { .read = answer_then_stop };

struct stop_run {
	struct astore *store;
	struct dmu_serve_opts opts;
	const char *name;
	int ret, done;
};

static void *stop_main(void *arg)
{
	struct stop_run *r = arg;

	r->ret = dmu_serve(r->name, &stop_ops, r->store, &r->opts);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST_F(async, stop_sends_what_was_answered)
{
	struct stop_run r = { .store = &self->store, .name = self->dev };
	pthread_t th;
	int fd;

	ASSERT_EQ(0, create_dev(_metadata, self, "no_daemon_timeout 0"));
	dmu_fill(self->store.mem, BLK, 77);
	r.opts.transport = variant->transport;
	r.opts.write_batch = variant->write_batch;
	r.opts.stop = &self->store.stop;
	r.opts.ready = a_ready;
	ASSERT_EQ(0, pthread_create(&th, NULL, stop_main, &r));
	/* With no daemon, the read would fail at once. */
	ASSERT_TRUE(wait_flag(&self->store.ready, WAIT_MS));
	fd = open(self->mapper, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, fd);
	EXPECT_EQ(BLK, pread(fd, self->bufs[0], BLK, 0));
	EXPECT_EQ(0, memcmp(self->bufs[0], self->store.mem, BLK));
	close(fd);
	ASSERT_TRUE(wait_flag(&r.done, WAIT_MS));
	pthread_join(th, NULL);
	EXPECT_EQ(0, r.ret);
}

/*
 * dmu_complete() pushes its slot, then writes the eventfd. If the channel
 * takes the slot and answers it in between, the write lands on a channel
 * with nothing pending: the eventfd must still be drained, or the
 * channel's descriptor stays readable for ever (an event loop that spins).
 * The write is delayed here (the library is linked with --wrap=write) to
 * make that order certain.
 */
static int delay_eventfd_ms;
static int delayed_eventfd_writes;
ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);

ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	int ms = __atomic_load_n(&delay_eventfd_ms, __ATOMIC_ACQUIRE);

	if (ms && len == sizeof(uint64_t)) {
		char link[64], target[64];
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = 0;
			if (strstr(target, "eventfd")) {
				__atomic_add_fetch(&delayed_eventfd_writes, 1,
						   __ATOMIC_RELAXED);
				usleep(ms * 1000);
			}
		}
	}
	return __real_write(fd, buf, len);
}

TEST_F(async, late_wakeup_leaves_no_event)
{
	struct dmu_serve_opts o = {
		.threads = 1, .max_pending = 4,
		.transport = variant->transport,
		.write_batch = variant->write_batch,
	};
	struct dmu_server *srv;
	struct pollfd p;
	int i, rc = 0;

	ASSERT_EQ(0, create_dev(_metadata, self, NULL));
	dmu_fill(self->store.mem, BLK, 5);
	ASSERT_EQ(0, dmu_server_open(&srv, self->dev, &a_ops, &self->store,
				     &o));
	p = (struct pollfd){ .fd = dmu_server_fd(srv, 0), .events = POLLIN };
	self->bfd = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->bfd);
	__atomic_store_n(&delay_eventfd_ms, 300, __ATOMIC_RELEASE);
	ASSERT_EQ(1, aio_blocks(self->bfd, self->aio, false, 1, 0, BLK,
				self->bufs, 0));
	/* Served every 20 ms, not only when the descriptor says so. */
	for (i = 0; i < 100 && !rc; i++) {
		struct io_event ev;
		struct timespec zero = { 0 };

		rc = dmu_server_serve(srv, 0);
		if (io_getevents(self->aio, 0, 1, &ev, &zero) == 1) {
			EXPECT_EQ(BLK, ev.res);
			break;
		}
		usleep(20 * 1000);
	}
	ASSERT_GT(100, i);
	EXPECT_EQ(0, memcmp(self->bufs[0], self->store.mem, BLK));
	/* The delayed write lands now, on a channel with nothing pending. */
	usleep(500 * 1000);
	__atomic_store_n(&delay_eventfd_ms, 0, __ATOMIC_RELEASE);
	if (!__atomic_load_n(&delayed_eventfd_writes, __ATOMIC_ACQUIRE)) {
		dmu_server_close(srv);
		SKIP(return, "libdmuser is shared: its write() is not ours to delay");
	}
	EXPECT_EQ(0, dmu_server_pending(srv, 0));
	EXPECT_EQ(0, dmu_server_serve(srv, 0));
	/* One call took it: nothing left to wake an event loop. */
	EXPECT_EQ(0, poll(&p, 1, 100));
	self->store.stop = 1;
	EXPECT_EQ(0, dmu_server_close(srv));
}

TEST_HARNESS_MAIN
