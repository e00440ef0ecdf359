// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user control interface tests: the DM_USER_IOCTL_CTL tag-list ioctl on
 * a channel and the same commands through dmsetup message, every refusal
 * with its errno and the tag or command it names, atomic settings, per
 * channel negotiation, the fd bound to its instance, and a fuzz run after
 * which the device must still serve I/O correctly.
 */
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "dmu_test.h"
#include <kselftest_harness.h>

#define DEV_SECTORS	16384
#define WAIT_MS		10000
#define BUF_SIZE	4096

struct ctl {
	union {
		struct dm_user_ctl hdr;
		uint8_t raw[BUF_SIZE];
	};
};

static void ctl_init(struct ctl *c, uint16_t command, uint16_t version)
{
	memset(c, 0, sizeof(*c));
	c->hdr.size = sizeof(*c);
	c->hdr.command = command;
	c->hdr.version = version;
}

static void ctl_add(struct ctl *c, uint16_t tag, uint8_t type, uint8_t flags,
		    const void *val, uint32_t len)
{
	struct dm_user_attr *a = (void *)(c->hdr.data + c->hdr.in_len);

	a->tag = tag;
	a->type = type;
	a->flags = flags;
	a->len = len;
	memcpy(a->value, val, len);
	c->hdr.in_len += sizeof(*a) + DM_USER_ATTR_ALIGN(len);
}

static void ctl_add_u32(struct ctl *c, uint16_t tag, uint8_t flags, uint32_t v)
{
	ctl_add(c, tag, DM_USER_TYPE_U32, flags, &v, sizeof(v));
}

static void ctl_add_u64(struct ctl *c, uint16_t tag, uint8_t flags, uint64_t v)
{
	ctl_add(c, tag, DM_USER_TYPE_U64, flags, &v, sizeof(v));
}

static int ctl_do(int fd, struct ctl *c)
{
	return ioctl(fd, DM_USER_IOCTL_CTL, c) ? -errno : 0;
}

/* The n-th reply attribute with @tag, or NULL. */
static const struct dm_user_attr *ctl_find(const struct ctl *c, uint16_t tag,
					   int n)
{
	uint32_t off = 0;

	while (off + sizeof(struct dm_user_attr) <= c->hdr.out_len &&
	       off + sizeof(struct dm_user_attr) <= BUF_SIZE - sizeof(c->hdr)) {
		const struct dm_user_attr *a = (const void *)(c->hdr.data + off);

		if (a->tag == tag && n-- == 0)
			return a;
		off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	}
	return NULL;
}

static uint64_t ctl_num(const struct ctl *c, uint16_t tag)
{
	const struct dm_user_attr *a = ctl_find(c, tag, 0);
	uint64_t v = 0;
	uint32_t v32;

	if (!a)
		return ~0ULL;
	if (a->type == DM_USER_TYPE_U32) {
		memcpy(&v32, a->value, 4);
		return v32;
	}
	memcpy(&v, a->value, 8);
	return v;
}

static const char *ctl_str(const struct ctl *c, uint16_t tag)
{
	const struct dm_user_attr *a = ctl_find(c, tag, 0);

	return a && a->type == DM_USER_TYPE_STRING ? (const char *)a->value : "";
}

FIXTURE(dev) {
	char dev[64];
	char mapper[128];
	char chan[128];
	int ch;
};

FIXTURE_SETUP(dev)
{
	char table[256];

	snprintf(self->dev, sizeof(self->dev), "dmu_ctl_%d", getpid());
	snprintf(self->mapper, sizeof(self->mapper), "/dev/mapper/%s",
		 self->dev);
	snprintf(self->chan, sizeof(self->chan), "/dev/dm-user/%s", self->dev);
	snprintf(table, sizeof(table),
		 "0 %d user 0 %d %s 4 max_queued 100 no_daemon_timeout 40",
		 DEV_SECTORS, DEV_SECTORS, self->dev);
	ASSERT_EQ(0, dmu_create(self->dev, table));
	self->ch = open(self->chan, O_RDWR);
	ASSERT_LE(0, self->ch);
}

FIXTURE_TEARDOWN(dev)
{
	if (self->ch >= 0)
		close(self->ch);
	dmu_remove(self->dev);
}

/* Serves one read request with zeroes, from a thread doing the I/O. */
static int do_served_read(int ch, const char *mapper)
{
	struct dm_user_message hdr;
	static char zero[4096];
	void *buf = dmu_alloc(4096);
	struct dmu_io io = { .kind = DMU_PREAD, .buf = buf, .len = 4096 };
	int r;

	io.fd = open(mapper, O_RDWR | O_DIRECT);
	if (io.fd < 0 || dmu_io_start(&io))
		return -1;
	r = dmu_read_msg(ch, &hdr, NULL, 0, WAIT_MS);
	if (!r && dmu_answer(ch, &hdr, DM_USER_RESP_SUCCESS, zero, 4096) < 0)
		r = -1;
	if (dmu_io_wait(&io, WAIT_MS) || io.ret != 4096)
		r = -1;
	close(io.fd);
	free(buf);
	return r;
}

TEST_F(dev, get_info_describes_the_target)
{
	struct ctl c;
	uint64_t ops;

	ASSERT_EQ(0, do_served_read(self->ch, self->mapper));
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(0, c.hdr.error);
	EXPECT_EQ(DM_USER_CTL_VERSION, c.hdr.version);
	EXPECT_EQ(DM_USER_CTL_VERSION, ctl_num(&c, DM_USER_ATTR_VERSION));
	EXPECT_TRUE(ctl_num(&c, DM_USER_ATTR_FEATURES) & DM_USER_FEATURE_CTL);
	EXPECT_STREQ(self->dev, ctl_str(&c, DM_USER_ATTR_NAME));
	EXPECT_EQ(DEV_SECTORS, ctl_num(&c, DM_USER_ATTR_SIZE));
	EXPECT_EQ(512, ctl_num(&c, DM_USER_ATTR_BLOCK_SIZE));
	EXPECT_EQ(1 << 20, ctl_num(&c, DM_USER_ATTR_MAX_IO));
	ops = ctl_num(&c, DM_USER_ATTR_OPS);
	EXPECT_EQ((1ULL << DM_USER_REQ_MAP_READ) | (1ULL << DM_USER_REQ_MAP_WRITE) |
		  (1ULL << DM_USER_REQ_MAP_FLUSH) | (1ULL << DM_USER_REQ_MAP_DISCARD) |
		  (1ULL << DM_USER_REQ_MAP_SECURE_ERASE) |
		  (1ULL << DM_USER_REQ_MAP_WRITE_ZEROES), ops);
	EXPECT_EQ(1, ctl_num(&c, DM_USER_ATTR_CHANNELS));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_QUEUED));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_INFLIGHT));
	EXPECT_EQ(1, ctl_num(&c, DM_USER_ATTR_READ_REQUESTS));
	EXPECT_EQ(4096, ctl_num(&c, DM_USER_ATTR_READ_BYTES));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_READ_ERRORS));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_WRITE_REQUESTS));
	EXPECT_EQ(NULL, ctl_find(&c, DM_USER_ATTR_UNKNOWN_TAG, 0));
}

TEST_F(dev, params_get_set_and_refusals_change_nothing)
{
	char line[1024];
	struct ctl c;

	ctl_init(&c, DM_USER_CMD_GET_PARAMS, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(100, ctl_num(&c, DM_USER_ATTR_MAX_QUEUED));

	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 7);
	ASSERT_EQ(0, ctl_do(self->ch, &c));

	/* Out of range: ERANGE, the tag named, a reason, nothing applied. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 0);
	EXPECT_EQ(-ERANGE, ctl_do(self->ch, &c));
	EXPECT_EQ(ERANGE, c.hdr.error);
	EXPECT_EQ(DM_USER_ATTR_MAX_QUEUED, c.hdr.error_tag);
	EXPECT_NE(0, strlen(ctl_str(&c, DM_USER_ATTR_ERROR_REASON)));

	/* A good value beside an unknown mandatory tag: refused whole. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 55);
	ctl_add_u64(&c, 999, DM_USER_ATTR_F_MANDATORY, 1);
	EXPECT_EQ(-ENOPROTOOPT, ctl_do(self->ch, &c));
	EXPECT_EQ(999, c.hdr.error_tag);
	/* The same good value given twice: refused whole. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, 0, 55);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, 0, 56);
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	EXPECT_EQ(DM_USER_ATTR_MAX_QUEUED, c.hdr.error_tag);
	/* A tag of another command, mandatory: refused, named. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, 0, 55);
	ctl_add_u64(&c, DM_USER_ATTR_EXTENSIONS, DM_USER_ATTR_F_MANDATORY, 1);
	EXPECT_EQ(-ENOPROTOOPT, ctl_do(self->ch, &c));
	EXPECT_EQ(DM_USER_ATTR_EXTENSIONS, c.hdr.error_tag);

	ctl_init(&c, DM_USER_CMD_GET_PARAMS, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(7, ctl_num(&c, DM_USER_ATTR_MAX_QUEUED));

	/* The same command table answers dmsetup message. */
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_STREQ("max_queued=7 no_daemon_timeout=40 request_timeout=0", line);
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params max_queued=9",
			     self->dev));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_STREQ("max_queued=9 no_daemon_timeout=40 request_timeout=0", line);
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 set_params max_queued=0 2>/dev/null",
			     self->dev));
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 set_params colour=blue 2>/dev/null",
			     self->dev));
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 frobnicate 2>/dev/null",
			     self->dev));
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 negotiate extensions=1 2>/dev/null",
			     self->dev));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_STREQ("max_queued=9 no_daemon_timeout=40 request_timeout=0", line);
	/* The table line stays as loaded. */
	ASSERT_EQ(0, dmu_capture(line, sizeof(line), "dmsetup table %s",
				 self->dev));
	EXPECT_NE(NULL, strstr(line, " 4 max_queued 100 no_daemon_timeout 40"));
}

/*
 * Several attributes in one SET_PARAMS: one bad value refuses the whole
 * request, names the bad attribute, and none of the good ones is applied;
 * the same through dmsetup message.
 */
TEST_F(dev, set_params_is_atomic)
{
	char line[1024];
	struct ctl c;

	/* Good, good, bad (above the limit): nothing changes. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 5);
	ctl_add_u32(&c, DM_USER_ATTR_NO_DAEMON_TIMEOUT,
		    DM_USER_ATTR_F_MANDATORY, 7);
	ctl_add_u32(&c, DM_USER_ATTR_REQUEST_TIMEOUT,
		    DM_USER_ATTR_F_MANDATORY, 2000000);
	EXPECT_EQ(-ERANGE, ctl_do(self->ch, &c));
	EXPECT_EQ(DM_USER_ATTR_REQUEST_TIMEOUT, c.hdr.error_tag);
	EXPECT_NE(NULL, strstr(ctl_str(&c, DM_USER_ATTR_ERROR_REASON),
			       "request_timeout"));
	/* Bad first, good after: the same. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_NO_DAEMON_TIMEOUT,
		    DM_USER_ATTR_F_MANDATORY, 1000001);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 5);
	ctl_add_u32(&c, DM_USER_ATTR_REQUEST_TIMEOUT,
		    DM_USER_ATTR_F_MANDATORY, 3);
	EXPECT_EQ(-ERANGE, ctl_do(self->ch, &c));
	EXPECT_EQ(DM_USER_ATTR_NO_DAEMON_TIMEOUT, c.hdr.error_tag);

	ctl_init(&c, DM_USER_CMD_GET_PARAMS, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(100, ctl_num(&c, DM_USER_ATTR_MAX_QUEUED));
	EXPECT_EQ(40, ctl_num(&c, DM_USER_ATTR_NO_DAEMON_TIMEOUT));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_REQUEST_TIMEOUT));

	/* All good: all applied, "forever" included. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 5);
	ctl_add_u32(&c, DM_USER_ATTR_NO_DAEMON_TIMEOUT,
		    DM_USER_ATTR_F_MANDATORY, DM_USER_TIMEOUT_FOREVER);
	ctl_add_u32(&c, DM_USER_ATTR_REQUEST_TIMEOUT,
		    DM_USER_ATTR_F_MANDATORY, 3);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_STREQ("max_queued=5 no_daemon_timeout=forever request_timeout=3",
		     line);

	/* Text: one bad word refuses the message; nothing is applied. */
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 set_params max_queued=9 request_timeout=2000000 2>/dev/null",
			     self->dev));
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 set_params request_timeout=4 no_daemon_timeout=never 2>/dev/null",
			     self->dev));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_STREQ("max_queued=5 no_daemon_timeout=forever request_timeout=3",
		     line);
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params no_daemon_timeout=12 request_timeout=0",
			     self->dev));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_STREQ("max_queued=5 no_daemon_timeout=12 request_timeout=0",
		     line);
	/* Numbers are decimal, as in the table: 010 is ten; 0x10 is no number. */
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 set_params max_queued=010",
			     self->dev));
	EXPECT_NE(0, dmu_run("dmsetup message %s 0 set_params max_queued=0x10 2>/dev/null",
			     self->dev));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 get_params", self->dev));
	EXPECT_STREQ("max_queued=10 no_daemon_timeout=12 request_timeout=0",
		     line);
}

/* Adds @n unknown optional attributes of no value: 8 bytes each. */
static void ctl_add_unknown(struct ctl *c, unsigned int n)
{
	static const uint32_t none;
	unsigned int k;

	for (k = 0; k < n; k++)
		ctl_add(c, 900 + k, DM_USER_TYPE_U32, 0, &none, 0);
}

/*
 * Each ignored optional attribute is listed in the reply in 16 bytes, so a
 * request of empty unknown attributes in a buffer that just holds it has no
 * room for its reply. A command that changes something is then refused
 * with ENOSPC before it changes anything, and out_len says what it needs.
 */
TEST_F(dev, no_reply_room_changes_nothing)
{
	struct ctl c;

	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 7);
	ctl_add_unknown(&c, 20);
	c.hdr.size = sizeof(c.hdr) + c.hdr.in_len;
	EXPECT_EQ(-ENOSPC, ctl_do(self->ch, &c));
	EXPECT_EQ(20 * 16, c.hdr.out_len);
	ctl_init(&c, DM_USER_CMD_GET_PARAMS, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(100, ctl_num(&c, DM_USER_ATTR_MAX_QUEUED));

	/* With the room it asked for, the same request is applied. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 7);
	ctl_add_unknown(&c, 20);
	c.hdr.size = sizeof(c.hdr) + 20 * 16;
	EXPECT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(900, ctl_num(&c, DM_USER_ATTR_UNKNOWN_TAG));
	ctl_init(&c, DM_USER_CMD_GET_PARAMS, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(7, ctl_num(&c, DM_USER_ATTR_MAX_QUEUED));

	/* The counters are not reset by a refused reset. */
	ASSERT_EQ(0, do_served_read(self->ch, self->mapper));
	ctl_init(&c, DM_USER_CMD_RESET_COUNTERS, 1);
	ctl_add_unknown(&c, 10);
	c.hdr.size = sizeof(c.hdr) + c.hdr.in_len;
	EXPECT_EQ(-ENOSPC, ctl_do(self->ch, &c));
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(1, ctl_num(&c, DM_USER_ATTR_READ_REQUESTS));

	/*
	 * A ring's reply has five attributes with its busy-poll: room for
	 * four is refused before the channel becomes a ring, which it can
	 * be made once the room is there.
	 */
	ctl_init(&c, DM_USER_CMD_NEGOTIATE, 1);
	ctl_add_u64(&c, DM_USER_ATTR_EXTENSIONS, DM_USER_ATTR_F_MANDATORY,
		    DM_USER_EXT_RING);
	ctl_add_u32(&c, DM_USER_ATTR_RING_DEPTH, DM_USER_ATTR_F_MANDATORY, 2);
	ctl_add_u32(&c, DM_USER_ATTR_RING_BUSY_POLL, DM_USER_ATTR_F_MANDATORY,
		    10);
	c.hdr.size = sizeof(c.hdr) + 4 * 16;
	EXPECT_EQ(-ENOSPC, ctl_do(self->ch, &c));
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ, MAP_SHARED,
				   self->ch, 0));
	EXPECT_EQ(EINVAL, errno);
	c.hdr.size = sizeof(c.hdr) + 5 * 16;
	EXPECT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(10, ctl_num(&c, DM_USER_ATTR_RING_BUSY_POLL));
}


TEST_F(dev, message_info_and_reset_counters)
{
	char line[2048], want[128];
	struct ctl c;

	ASSERT_EQ(0, do_served_read(self->ch, self->mapper));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line),
				 "dmsetup message %s 0 info", self->dev));
	snprintf(want, sizeof(want), "name=%s size=%d block_size=512",
		 self->dev, DEV_SECTORS);
	EXPECT_NE(NULL, strstr(line, want)) TH_LOG("info: %s", line);
	EXPECT_NE(NULL, strstr(line, "read_requests=1 read_bytes=4096"))
		TH_LOG("info: %s", line);

	/* By ioctl, then by message: counters go to zero both ways. */
	ctl_init(&c, DM_USER_CMD_RESET_COUNTERS, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(0, ctl_num(&c, DM_USER_ATTR_READ_REQUESTS));
	ASSERT_EQ(0, do_served_read(self->ch, self->mapper));
	EXPECT_EQ(0, dmu_run("dmsetup message %s 0 reset_counters", self->dev));
	ASSERT_EQ(0, dmu_capture(line, sizeof(line), "dmsetup status %s",
				 self->dev));
	EXPECT_NE(NULL, strstr(line, " read 0 0 0 ")) TH_LOG("status: %s", line);
}

TEST_F(dev, unknown_command_tag_and_versions)
{
	struct ctl c;

	ctl_init(&c, 77, 1);
	EXPECT_EQ(-EOPNOTSUPP, ctl_do(self->ch, &c));
	EXPECT_EQ(77, c.hdr.error_command);
	EXPECT_EQ(EOPNOTSUPP, c.hdr.error);

	/* An unknown optional tag is ignored and listed. */
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ctl_add_u64(&c, 999, 0, 5);
	ctl_add_u32(&c, 1000, 0, 6);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(999, ctl_num(&c, DM_USER_ATTR_UNKNOWN_TAG));
	ASSERT_NE(NULL, ctl_find(&c, DM_USER_ATTR_UNKNOWN_TAG, 1));
	EXPECT_STREQ(self->dev, ctl_str(&c, DM_USER_ATTR_NAME));

	/* An unknown mandatory tag refuses the request. */
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ctl_add_u64(&c, 999, DM_USER_ATTR_F_MANDATORY, 5);
	EXPECT_EQ(-ENOPROTOOPT, ctl_do(self->ch, &c));
	EXPECT_EQ(999, c.hdr.error_tag);

	/* A version from the future, and version 0. */
	ctl_init(&c, DM_USER_CMD_GET_INFO, DM_USER_CTL_VERSION + 1);
	EXPECT_EQ(-EPROTONOSUPPORT, ctl_do(self->ch, &c));
	EXPECT_EQ(DM_USER_CTL_VERSION, c.hdr.version);
	ctl_init(&c, DM_USER_CMD_GET_INFO, 0);
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));

	EXPECT_EQ(-1, ioctl(self->ch, _IO(DM_USER_IOC_MAGIC, 99), 0));
	EXPECT_EQ(ENOTTY, errno);
}

TEST_F(dev, malformed_buffers_get_their_errno)
{
	struct ctl c;
	uint32_t i;

	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	c.hdr.size = sizeof(c.hdr) - 1;
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	c.hdr.size = DM_USER_CTL_MAX_SIZE + 1;
	EXPECT_EQ(-E2BIG, ctl_do(self->ch, &c));
	EXPECT_EQ(E2BIG, c.hdr.error);
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	c.hdr.in_len = BUF_SIZE;
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	c.hdr.flags = 1;
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	c.hdr.reserved = 1;
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));

	/* An attribute whose length runs past in_len. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, 0, 5);
	((struct dm_user_attr *)c.hdr.data)->len = 4000;
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	/* Truncated attribute header. */
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	c.hdr.in_len = 5;
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	/* Wrong type and wrong length for a known tag. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u64(&c, DM_USER_ATTR_MAX_QUEUED, 0, 5);
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	EXPECT_EQ(DM_USER_ATTR_MAX_QUEUED, c.hdr.error_tag);
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_TYPE_U32, 0, "abcdefgh", 8);
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	/* A string where a number belongs. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add(&c, DM_USER_ATTR_MAX_QUEUED, DM_USER_TYPE_STRING, 0, "12", 2);
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	/* Unknown attribute flags. */
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ctl_add_u32(&c, 999, 0x80, 1);
	EXPECT_EQ(-EINVAL, ctl_do(self->ch, &c));
	/* Absurd attribute counts. */
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	for (i = 0; i < DM_USER_CTL_MAX_ATTRS + 1; i++) {
		struct dm_user_attr *a = (void *)(c.hdr.data + c.hdr.in_len);

		a->tag = 2000;
		a->type = DM_USER_TYPE_U32;
		a->len = 0;
		c.hdr.in_len += sizeof(*a);
	}
	EXPECT_EQ(-E2BIG, ctl_do(self->ch, &c));

	/* A reply that does not fit: ENOSPC, with the size it needs. */
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	c.hdr.size = sizeof(c.hdr) + 16;
	EXPECT_EQ(-ENOSPC, ctl_do(self->ch, &c));
	EXPECT_LT(16, c.hdr.out_len);

	/* A buffer the kernel cannot read. */
	EXPECT_EQ(-1, ioctl(self->ch, DM_USER_IOCTL_CTL, (void *)8));
	EXPECT_EQ(EFAULT, errno);
}

/* No byte the kernel writes back is left uninitialised. */
TEST_F(dev, reply_bytes_are_all_defined)
{
	struct ctl c;
	uint32_t off = 0, i;

	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	memset(c.hdr.data, 0xa5, BUF_SIZE - sizeof(c.hdr));
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	ASSERT_LT(0, c.hdr.out_len);
	while (off < c.hdr.out_len) {
		const struct dm_user_attr *a = (const void *)(c.hdr.data + off);

		/* Padding after each value is zero. */
		for (i = a->len; i < DM_USER_ATTR_ALIGN(a->len); i++)
			EXPECT_EQ(0, a->value[i]);
		EXPECT_EQ(0, a->flags);
		off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	}
	EXPECT_EQ(c.hdr.out_len, off);
	/* Past the reply the buffer is untouched. */
	for (i = sizeof(c.hdr) + c.hdr.out_len; i < BUF_SIZE; i++)
		if (c.raw[i] != 0xa5) {
			EXPECT_EQ(0xa5, c.raw[i]) TH_LOG("byte %u written", i);
			break;
		}
	EXPECT_EQ(0, c.hdr.error_tag);
	EXPECT_EQ(0, c.hdr.reserved);
}

TEST_F(dev, negotiate_is_per_channel)
{
	struct dm_user_message *m;
	struct ctl c;
	char *buf = dmu_alloc(1 << 16), *wbuf = dmu_alloc(8192);
	struct dmu_io w[2];
	int batch, bdev, i;
	ssize_t n;

	batch = open(self->chan, O_RDWR);
	ASSERT_LE(0, batch);
	ctl_init(&c, DM_USER_CMD_NEGOTIATE, 1);
	ctl_add_u64(&c, DM_USER_ATTR_EXTENSIONS, DM_USER_ATTR_F_MANDATORY,
		    DM_USER_EXT_READ_BATCH | (1ULL << 63));
	ASSERT_EQ(0, ctl_do(batch, &c));
	/* Only what the kernel has is granted. */
	EXPECT_EQ(DM_USER_EXT_READ_BATCH, ctl_num(&c, DM_USER_ATTR_EXTENSIONS));

	bdev = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, bdev);
	/* Two writes queued: the plain channel (RFC protocol) gets one. */
	for (i = 0; i < 2; i++) {
		w[i] = (struct dmu_io){ .fd = bdev, .kind = DMU_PWRITE,
			.buf = wbuf + i * 4096, .len = 4096,
			.off = (off_t)i * 65536 };
		dmu_fill(w[i].buf, 4096, i + 1);
		ASSERT_EQ(0, dmu_io_start(&w[i]));
	}
	usleep(300000);
	ASSERT_EQ(0, dmu_wait_readable(self->ch, WAIT_MS));
	n = read(self->ch, buf, 1 << 16);
	EXPECT_EQ(DMU_HDR + 4096, n);
	m = (void *)buf;
	ASSERT_EQ(DMU_HDR, dmu_answer(self->ch, m, DM_USER_RESP_SUCCESS, NULL, 0));
	ASSERT_EQ(0, dmu_io_wait(&w[m->sector ? 1 : 0], WAIT_MS));

	/* Two more: the batching channel gets both in one read. */
	for (i = 0; i < 2; i++) {
		if (!__atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE))
			continue;
		ASSERT_EQ(0, dmu_io_start(&w[i]));
	}
	usleep(300000);
	ASSERT_EQ(0, dmu_wait_readable(batch, WAIT_MS));
	n = read(batch, buf, 1 << 16);
	EXPECT_EQ(2 * (DMU_HDR + 4096), n);
	for (i = 0; i < 2 && n == 2 * (DMU_HDR + 4096); i++) {
		m = (void *)(buf + i * (DMU_HDR + 4096));
		EXPECT_EQ(DM_USER_REQ_MAP_WRITE, m->type);
		EXPECT_EQ(0, memcmp(m->buf, wbuf + (m->sector ? 4096 : 0), 4096));
		ASSERT_EQ(DMU_HDR, dmu_answer(batch, m, DM_USER_RESP_SUCCESS,
					      NULL, 0));
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, dmu_io_wait(&w[i], WAIT_MS));
		EXPECT_EQ(4096, w[i].ret);
	}
	close(bdev);
	close(batch);
	free(buf);
	free(wbuf);
}

/* Negotiates @ext on @fd and returns what was granted, or -1. */
static int64_t negotiate(int fd, uint64_t ext)
{
	struct ctl c;

	ctl_init(&c, DM_USER_CMD_NEGOTIATE, 1);
	ctl_add_u64(&c, DM_USER_ATTR_EXTENSIONS, DM_USER_ATTR_F_MANDATORY, ext);
	if (ctl_do(fd, &c))
		return -1;
	return (int64_t)ctl_num(&c, DM_USER_ATTR_EXTENSIONS);
}

/* Puts an answer to @req (header, then @len bytes of @data) at @p. */
static size_t put_answer(char *p, const struct dm_user_message *req,
			 uint64_t type, const void *data, size_t len)
{
	struct dm_user_message ans = *req;

	ans.type = type;
	memcpy(p, &ans, DMU_HDR);
	if (len)
		memcpy(p + DMU_HDR, data, len);
	return DMU_HDR + len;
}

/*
 * WRITE_BATCH: several answers in one write(), the last one split over
 * two; a refused answer ends a write() short and fails the next; a channel
 * without the extension still takes one answer per write().
 */
TEST_F(dev, write_batch_answers_in_one_write)
{
	char *data = dmu_alloc(4 * 4096), *back = dmu_alloc(4 * 4096);
	char *out = dmu_alloc(1 << 16);
	struct dm_user_message req[4];
	struct dmu_io io[4];
	size_t len, cut;
	int bdev, i, k;
	ssize_t n;

	ASSERT_EQ(DM_USER_EXT_WRITE_BATCH,
		  negotiate(self->ch, DM_USER_EXT_WRITE_BATCH));
	bdev = open(self->mapper, O_RDWR | O_DIRECT);
	ASSERT_LE(0, bdev);
	for (i = 0; i < 4; i++) {
		io[i] = (struct dmu_io){ .fd = bdev, .kind = DMU_PREAD,
			.buf = back + i * 4096, .len = 4096,
			.off = (off_t)i * 65536 };
		dmu_fill(data + i * 4096, 4096, 70 + i);
		ASSERT_EQ(0, dmu_io_start(&io[i]));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req[i], NULL, 0, WAIT_MS));
		ASSERT_EQ(DM_USER_REQ_MAP_READ, req[i].type);
	}
	/* Which read is which: by sector. */
#define IDX(m) ((int)((m).sector / 128))
	/*
	 * Answer 0 and answer 1 (ERROR) whole, then the first 1000 bytes of
	 * answer 2: one call takes all of it; the second call ends it.
	 */
	len = put_answer(out, &req[0], DM_USER_RESP_SUCCESS,
			 data + IDX(req[0]) * 4096, 4096);
	len += put_answer(out + len, &req[1], DM_USER_RESP_ERROR, NULL, 0);
	cut = len;
	len += put_answer(out + len, &req[2], DM_USER_RESP_SUCCESS,
			  data + IDX(req[2]) * 4096, 4096);
	EXPECT_EQ((ssize_t)(cut + DMU_HDR + 1000),
		  write(self->ch, out, cut + DMU_HDR + 1000));
	EXPECT_EQ((ssize_t)(len - cut - DMU_HDR - 1000),
		  write(self->ch, out + cut + DMU_HDR + 1000,
			len - cut - DMU_HDR - 1000));
	for (k = 0; k < 3; k++) {
		i = IDX(req[k]);
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		if (k == 1) {
			EXPECT_EQ(-1, io[i].ret);
			EXPECT_EQ(EIO, io[i].err);
		} else {
			EXPECT_EQ(4096, io[i].ret);
			EXPECT_EQ(0, memcmp(back + i * 4096, data + i * 4096,
					    4096));
		}
	}

	/*
	 * An answer for a request never sent between two good ones: the
	 * call stops before it, the next call fails with EINVAL, and the
	 * good answer after it still lands on a call of its own.
	 */
	ASSERT_EQ(0, dmu_io_start(&io[IDX(req[0])]));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req[0], NULL, 0, WAIT_MS));
	len = put_answer(out, &req[3], DM_USER_RESP_SUCCESS,
			 data + IDX(req[3]) * 4096, 4096);
	cut = len;
	req[1].seq = 1ULL << 60;
	len += put_answer(out + len, &req[1], DM_USER_RESP_SUCCESS, NULL, 0);
	n = write(self->ch, out, len + put_answer(out + len, &req[0],
						   DM_USER_RESP_SUCCESS,
						   data + IDX(req[0]) * 4096,
						   4096));
	EXPECT_EQ((ssize_t)cut, n);
	EXPECT_EQ(-1, write(self->ch, out + cut, len - cut));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(DMU_HDR + 4096, write(self->ch, out + len, DMU_HDR + 4096));
	for (k = 0; k < 4; k += 3) {
		i = IDX(req[k]);
		ASSERT_EQ(0, dmu_io_wait(&io[i], WAIT_MS));
		EXPECT_EQ(4096, io[i].ret);
		EXPECT_EQ(0, memcmp(back + i * 4096, data + i * 4096, 4096));
	}

	/* A batch that ends inside a header: the next write() completes it. */
	for (k = 0; k < 2; k++) {
		ASSERT_EQ(0, dmu_io_start(&io[k]));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req[k], NULL, 0, WAIT_MS));
	}
	len = put_answer(out, &req[0], DM_USER_RESP_SUCCESS,
			 data + IDX(req[0]) * 4096, 4096);
	cut = len + 20;
	len += put_answer(out + len, &req[1], DM_USER_RESP_SUCCESS,
			  data + IDX(req[1]) * 4096, 4096);
	EXPECT_EQ((ssize_t)cut, write(self->ch, out, cut));
	EXPECT_EQ((ssize_t)(len - cut), write(self->ch, out + cut, len - cut));
	for (k = 0; k < 2; k++) {
		ASSERT_EQ(0, dmu_io_wait(&io[k], WAIT_MS));
		EXPECT_EQ(4096, io[k].ret);
		EXPECT_EQ(0, memcmp(back + k * 4096, data + k * 4096, 4096));
	}

	/*
	 * A refused answer whose header began in the write() before: that
	 * write() counted its first bytes, the one completing it fails, and
	 * the channel then takes the next answer as usual.
	 */
	ASSERT_EQ(0, dmu_io_start(&io[0]));
	ASSERT_EQ(0, dmu_read_msg(self->ch, &req[0], NULL, 0, WAIT_MS));
	req[1].seq = 1ULL << 61;
	len = put_answer(out, &req[1], DM_USER_RESP_SUCCESS, NULL, 0);
	EXPECT_EQ(20, write(self->ch, out, 20));
	EXPECT_EQ(-1, write(self->ch, out + 20, len - 20));
	EXPECT_EQ(EINVAL, errno);
	len = put_answer(out, &req[0], DM_USER_RESP_SUCCESS,
			 data + IDX(req[0]) * 4096, 4096);
	EXPECT_EQ((ssize_t)len, write(self->ch, out, len));
	ASSERT_EQ(0, dmu_io_wait(&io[0], WAIT_MS));
	EXPECT_EQ(4096, io[0].ret);
	EXPECT_EQ(0, memcmp(back, data, 4096));

	/* Without the extension, two answers in one write() are refused. */
	ASSERT_EQ(0, negotiate(self->ch, 0));
	for (k = 0; k < 2; k++) {
		ASSERT_EQ(0, dmu_io_start(&io[k]));
		ASSERT_EQ(0, dmu_read_msg(self->ch, &req[k], NULL, 0, WAIT_MS));
	}
	len = put_answer(out, &req[0], DM_USER_RESP_SUCCESS,
			 data + IDX(req[0]) * 4096, 4096);
	len += put_answer(out + len, &req[1], DM_USER_RESP_SUCCESS,
			  data + IDX(req[1]) * 4096, 4096);
	EXPECT_EQ(-1, write(self->ch, out, len));
	EXPECT_EQ(EINVAL, errno);
	for (k = 0; k < 2; k++)
		EXPECT_EQ(DMU_HDR + 4096,
			  write(self->ch, out + k * (DMU_HDR + 4096),
				DMU_HDR + 4096));
	for (k = 0; k < 2; k++) {
		ASSERT_EQ(0, dmu_io_wait(&io[k], WAIT_MS));
		EXPECT_EQ(4096, io[k].ret);
		EXPECT_EQ(0, memcmp(back + k * 4096, data + k * 4096, 4096));
	}
#undef IDX
	close(bdev);
	free(data);
	free(back);
	free(out);
}

/* The fd is bound to the target it was opened on, not to the name. */
TEST_F(dev, removed_target_fd_gets_enotblk)
{
	char table[256];
	struct ctl c;
	int fresh;

	ASSERT_EQ(0, dmu_remove(self->dev));
	snprintf(table, sizeof(table), "0 2048 user 0 2048 %s", self->dev);
	ASSERT_EQ(0, dmu_create(self->dev, table));
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	EXPECT_EQ(-ENOTBLK, ctl_do(self->ch, &c));
	EXPECT_EQ(ENOTBLK, c.hdr.error);
	fresh = open(self->chan, O_RDWR);
	ASSERT_LE(0, fresh);
	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ASSERT_EQ(0, ctl_do(fresh, &c));
	EXPECT_EQ(2048, ctl_num(&c, DM_USER_ATTR_SIZE));
	close(fresh);
}

/*
 * Thousands of random and mutated buffers, then the device must still
 * answer GET_INFO and serve a read with the right data.
 */
TEST_F_TIMEOUT(dev, fuzz_then_serve, 240)
{
	struct ctl c, good;
	unsigned int seed = 12345, i, ok = 0, refused = 0;

	ctl_init(&good, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&good, DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_F_MANDATORY, 50);
	ctl_add_u64(&good, 999, 0, 1);
	for (i = 0; i < 20000; i++) {
		unsigned int k, flips;

		if (i % 2) {
			/* Mutate a valid request a few bytes at a time. */
			c = good;
			flips = 1 + rand_r(&seed) % 8;
			for (k = 0; k < flips; k++)
				c.raw[rand_r(&seed) % (sizeof(c.hdr) + 64)] =
					(uint8_t)rand_r(&seed);
		} else {
			/* Random, with a plausible header some of the time. */
			for (k = 0; k < sizeof(c.hdr) + 256; k++)
				c.raw[k] = (uint8_t)rand_r(&seed);
			if (i % 4 == 0) {
				c.hdr.size = BUF_SIZE;
				c.hdr.version = 1;
				c.hdr.flags = 0;
				c.hdr.reserved = 0;
				c.hdr.command = 1 + rand_r(&seed) % 6;
				c.hdr.in_len %= 256;
			}
		}
		/* Keep the size within this buffer: the point is the parser. */
		if (c.hdr.size > BUF_SIZE && c.hdr.size <= DM_USER_CTL_MAX_SIZE)
			c.hdr.size = BUF_SIZE;
		if (ioctl(self->ch, DM_USER_IOCTL_CTL, &c) == 0)
			ok++;
		else
			refused++;
	}
	TH_LOG("fuzz: %u accepted, %u refused", ok, refused);
	/* Both paths were exercised, not just the first checks. */
	EXPECT_LT(100, ok);
	EXPECT_LT(100, refused);

	ctl_init(&c, DM_USER_CMD_GET_INFO, 1);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_STREQ(self->dev, ctl_str(&c, DM_USER_ATTR_NAME));
	/* Whatever the fuzz set, a sane cap lets I/O through. */
	ctl_init(&c, DM_USER_CMD_SET_PARAMS, 1);
	ctl_add_u32(&c, DM_USER_ATTR_MAX_QUEUED, 0, 64);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	ctl_init(&c, DM_USER_CMD_NEGOTIATE, 1);
	ctl_add_u64(&c, DM_USER_ATTR_EXTENSIONS, 0, 0);
	ASSERT_EQ(0, ctl_do(self->ch, &c));
	EXPECT_EQ(0, do_served_read(self->ch, self->mapper));
}

TEST_HARNESS_MAIN
