/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdmuser: create, drive and serve dm-user devices from C.
 *
 * Three parts:
 *  - devices: create, load, suspend, resume, remove and list device-mapper
 *    devices with "user" targets, through libdevmapper's task API (not by
 *    running dmsetup), synchronising with udev when udev runs and creating
 *    the nodes itself when it does not (or when DM_DISABLE_UDEV is set);
 *  - control: typed wrappers for every command of the DM_USER_IOCTL_CTL
 *    ioctl, each sending the interface version that introduced its command;
 *  - serving: a loop that reads requests on one or more channels, calls one
 *    callback per operation and sends the answers, hiding split messages,
 *    out-of-order answers and poll; callbacks may leave requests pending
 *    and complete them later from any thread, and the daemon may drive the
 *    channels from its own event loop instead of the library's threads.
 *
 * Every function returns 0 or a negative errno; none exits or prints,
 * except that failures of libdevmapper are reported by libdevmapper itself
 * on stderr. Link with -ldmuser (pkg-config --libs dmuser).
 */
#ifndef DMUSER_H
#define DMUSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/dm-user.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Devices
 */

/**
 * dmu_table_line() - format a one-target "user" table line
 * @buf: output, @len bytes
 * @sectors: length of the device in 512-byte sectors
 * @name: the target's name, which names /dev/dm-user/<name>
 * @features: feature words without their count (e.g. "block_size 4096"),
 *	or NULL
 *
 * Return: 0, or -ENAMETOOLONG if @buf is too small, -EINVAL for an empty
 * name.
 */
int dmu_table_line(char *buf, size_t len, uint64_t sectors, const char *name,
		   const char *features);

/**
 * dmu_dev_create() - create device @dev with @table and make it live
 *
 * @table may hold several lines, one target each. Waits for udev to
 * create /dev/mapper/@dev when udev runs.
 *
 * Return: 0, -EEXIST if @dev exists, -ENODEV without device-mapper, or
 * the errno of the failed ioctl.
 */
int dmu_dev_create(const char *dev, const char *table);
/** dmu_dev_load() - load @table as @dev's inactive table */
int dmu_dev_load(const char *dev, const char *table);
/** dmu_dev_suspend() - suspend @dev, with noflush semantics if asked */
int dmu_dev_suspend(const char *dev, bool noflush);
/** dmu_dev_resume() - resume @dev, making a loaded table live */
int dmu_dev_resume(const char *dev);
/** dmu_dev_remove() - remove @dev; -EBUSY while it is open */
int dmu_dev_remove(const char *dev);
/** dmu_dev_table() - the live table of @dev, one line per target */
int dmu_dev_table(const char *dev, char *buf, size_t len);

/* One user target of a device, as dmu_dev_list() reports it. */
struct dmu_target_desc {
	const char *dev;	/* device-mapper device name */
	const char *name;	/* the user target's name */
	uint64_t start;		/* first sector of the target in the device */
	uint64_t length;	/* sectors */
	const char *params;	/* the target's table parameters */
};

typedef int (*dmu_list_fn)(void *arg, const struct dmu_target_desc *t);
/**
 * dmu_dev_list() - call @fn for every user target of every live device
 *
 * Stops early and returns what @fn returned if that is not 0.
 */
int dmu_dev_list(dmu_list_fn fn, void *arg);

/**
 * dmu_attach() - put user targets under a live device, with no error seen
 * @dev: a device-mapper device whose live table is linear targets only
 *	(one or several segments: an LVM logical volume, say)
 * @prefix: the user targets' name, with "_<i>" added (i = 0, 1, ...) when
 *	there are several; NULL for @dev
 * @features: feature words for every target, without their count (e.g.
 *	"notify_writes no_daemon_timeout 60"), or NULL
 * @claim: the targets start with all of themselves claimed, so that their
 *	I/O waits for a daemon; otherwise (passthrough) it goes straight to
 *	the same place as before until a daemon claims ranges
 *
 * Each "<start> <len> linear <dev> <offset>" becomes "<start> <len> user
 * <start> <len> <name> <n> backing <dev> <offset> [passthrough]
 * [features]", loaded and made live by a noflush suspend and a resume, so
 * that I/O in flight, a mounted filesystem's included, is held and goes
 * on through the new table. Since libdmuser 1.4.
 *
 * The new table is loaded read-only if the device is. A device that is
 * suspended, or has an inactive table loaded (another tool in the middle
 * of a change), is left alone. LVM does not know of the user targets: a
 * later lvextend or lvchange --refresh loads a linear table again, so
 * detach first.
 *
 * Return: 0; -EMEDIUMTYPE if a target is not linear or the table is empty;
 * -EINVAL if the name is not one the kernel takes or @features holds a
 * control character; -ENAMETOOLONG for a name past 64 characters; -EBUSY
 * for a device suspended or with an inactive table; -EAGAIN if the table
 * changed between two looks; -ENXIO without @dev; the errno of the load
 * (EBUSY: a name in use; EINVAL: a feature or the table refused) or of the
 * suspend, which leave the live table as it was (-EUCLEAN if the loaded
 * table could not be dropped again); -EREMOTEIO if the resume failed twice
 * (the device is left suspended).
 */
int dmu_attach(const char *dev, const char *prefix, const char *features,
	       bool claim);
/**
 * dmu_detach() - put linear targets back under a device, as dmu_attach()
 * found it
 * @dev: a device-mapper device whose live table is user targets with a
 *	backing device only
 *
 * Each user target becomes "<start> <len> linear <dev> <offset>" over its
 * backing device, made live by a noflush suspend and a resume: requests
 * queued for the daemon, or given back by a daemon that died, go on
 * through the linear table; a daemon alive is waited for on the requests
 * it has started to read. What the daemon kept elsewhere (a copy-on-write
 * delta) is not the backing device's and is no longer seen. Works with
 * the daemon dead. Since libdmuser 1.4.
 *
 * Return: 0; -EMEDIUMTYPE if a target is not a user target with a backing
 * device, or the table is empty; -EBUSY, -EAGAIN, -ENXIO and the errors
 * of the load, the suspend and the resume as for dmu_attach().
 */
int dmu_detach(const char *dev);

/** dmu_wait_node() - wait up to @timeout_ms for /dev/dm-user/@name */
int dmu_wait_node(const char *name, int timeout_ms);
/**
 * dmu_open_channel() - open one channel of /dev/dm-user/@name
 * @flags: extra open(2) flags, e.g. O_NONBLOCK; O_RDWR and O_CLOEXEC
 *	are always set
 *
 * Return: the fd, or a negative errno.
 */
int dmu_open_channel(const char *name, int flags);

/* ------------------------------------------------------------------------
 * Control
 */

/* Why the kernel refused the last control command of this thread. */
struct dmu_ctl_error {
	int error;		/* errno, as returned */
	uint16_t tag;		/* attribute named in the refusal, or 0 */
	uint16_t command;	/* command not understood, or 0 */
	uint16_t kernel_version;/* the kernel's DM_USER_CTL_VERSION */
	char reason[128];	/* the kernel's reason, or "" */
};

const struct dmu_ctl_error *dmu_ctl_last_error(void);

/**
 * dmu_cmd_version() - the interface version that introduced @command
 *
 * Return: the version, or -ENOSYS for a command this library does not know:
 * it never guesses.
 */
int dmu_cmd_version(uint16_t command);

enum dmu_op {
	DMU_OP_READ,
	DMU_OP_WRITE,
	DMU_OP_FLUSH,
	DMU_OP_DISCARD,
	DMU_OP_WRITE_ZEROES,
	DMU_OP_SECURE_ERASE,
	DMU_NR_OPS,
};

struct dmu_op_stats {
	uint64_t requests;
	uint64_t bytes;
	uint64_t errors;
};

struct dmu_info {
	uint32_t version;		/* the kernel's control version */
	uint64_t features;		/* DM_USER_FEATURE_* */
	char name[DM_USER_NAME_MAX + 1];
	uint64_t size;			/* sectors */
	uint32_t block_size;
	uint32_t max_io;		/* bytes of data in one request */
	uint64_t ops;			/* 1 << DM_USER_REQ_MAP_* that are on */
	uint32_t channels;
	uint32_t queued;
	uint32_t backlog;
	uint32_t inflight;
	uint32_t daemon_state;		/* DM_USER_STATE_*; 0: kernel too old */
	uint64_t requeued;		/* given back by closing channels */
	uint64_t timeouts;		/* failed by request_timeout */
	uint64_t bad_answers;		/* answers refused (kernel v2) */
	struct dmu_op_stats stats[DMU_NR_OPS];
	/* Since libdmuser 1.3 and kernel v4. */
	uint64_t remapped;		/* remap answers taken */
	/* The backing device, "major:minor", or "" if the target has none. */
	char backing[32];
	uint64_t backing_offset;	/* its sector of the target's sector 0 */
	/* Since libdmuser 1.3 and kernel v5, with a backing device: */
	uint32_t claim_ranges;		/* claimed ranges (dmu_claim()) */
	uint64_t passed;		/* requests sent straight to it */
	/* Since libdmuser 1.4 and kernel v6, with a backing device: */
	uint64_t notified;		/* write notifications answered */
	/*
	 * Since libdmuser 1.4 and kernel v7: reloads of the target's table
	 * under its name that took effect (see dmu_ops.reload).
	 */
	uint64_t reloads;
	/*
	 * Since libdmuser 1.6 and kernel v9, with a backing device: mapped
	 * ranges, of reads and writes together (dmu_map()).
	 */
	uint32_t map_ranges;
	/*
	 * Fields are only ever added here, at the end: a program built with
	 * an older header passes its own, shorter size (dmu_get_info()), and
	 * the library fills only that much.
	 */
};

/**
 * dmu_get_info_size() - DM_USER_CMD_GET_INFO on channel @fd, into the
 * first @size bytes of @info
 * @size: sizeof(struct dmu_info) as the caller was built with
 *
 * Fills the fields that lie wholly inside @size (those @info's header
 * had), with 0 for what the kernel does not report, and zeroes the rest of
 * @size. Since libdmuser 1.6; dmu_get_info() calls it with the caller's
 * size.
 *
 * Return: 0, or a negative errno as every control command.
 */
int dmu_get_info_size(int fd, struct dmu_info *info, size_t size);
/**
 * dmu_get_info() - DM_USER_CMD_GET_INFO on channel @fd
 *
 * A macro over dmu_get_info_size() with sizeof(*@info). The function of
 * this name stays for programs built before libdmuser 1.6, and fills the
 * struct as it was then, up to @reloads.
 */
int dmu_get_info(int fd, struct dmu_info *info);
#define dmu_get_info(fd, info) \
	dmu_get_info_size((fd), (info), sizeof(*(info)))

struct dmu_params {
	uint32_t max_queued;
	/* Seconds, or DM_USER_TIMEOUT_FOREVER; see the uapi header. */
	uint32_t no_daemon_timeout;
	uint32_t request_timeout;	/* seconds, 0: off */
	/*
	 * 1 while writes outside the claimed ranges come to the daemon as
	 * notifications (struct dmu_ops.notify); 0, and 0 without a backing
	 * device or from a kernel before control interface version 6. Since
	 * libdmuser 1.4.
	 */
	uint32_t notify_writes;
};

/* Which fields of struct dmu_params dmu_set_params() sets. */
#define DMU_PARAM_MAX_QUEUED		(1U << 0)
#define DMU_PARAM_NO_DAEMON_TIMEOUT	(1U << 1)
#define DMU_PARAM_REQUEST_TIMEOUT	(1U << 2)
/*
 * The three parameters of control interface version 1, which every
 * kernel takes: notify_writes is left out, as a kernel before version 6
 * refuses it and setting it to the struct's 0 would turn off what the
 * table turned on.
 */
#define DMU_PARAM_ALL			((1U << 3) - 1)
#define DMU_PARAM_NOTIFY_WRITES		(1U << 3)

/** dmu_get_params() - DM_USER_CMD_GET_PARAMS */
int dmu_get_params(int fd, struct dmu_params *params);
/**
 * dmu_set_params() - DM_USER_CMD_SET_PARAMS: the fields in @which, all or
 * none; on refusal dmu_ctl_last_error() names the attribute
 *
 * Turning notify_writes on returns once no write mapped before the call is
 * still on its way to the backing device unnotified, as dmu_claim() does.
 *
 * Return: 0, or a negative errno: -ERANGE for a value out of range,
 * -EOPNOTSUPP for notify_writes 1 without a backing device, -ENOPROTOOPT
 * for notify_writes from a kernel before control interface version 6,
 * -EPERM from neither the node's owner nor CAP_SYS_ADMIN, -EBADF on a
 * channel not opened for reading and writing, -EINTR as for dmu_claim().
 */
int dmu_set_params(int fd, const struct dmu_params *params,
		   unsigned int which);
/**
 * dmu_claim() - DM_USER_CMD_CLAIM: serve [@offset, @offset + @len)
 * @fd: a channel, opened for reading and writing, of a target with a
 *	backing device
 * @offset: bytes from the start of the target, a multiple of its block size
 * @len: bytes, a multiple of the block size, not 0
 *
 * I/O that touches a claimed range is sent to the daemon; I/O wholly
 * outside every claimed range goes straight to the backing device. A
 * target starts with all of itself claimed, or with nothing under the
 * table's passthrough feature. Returns once no I/O mapped before the call
 * is still on its way to the backing device.
 *
 * Return: the number of claimed ranges after the change, or a negative
 * errno: -EOPNOTSUPP without a backing device, -EINVAL for a range not in
 * whole blocks or empty, -ERANGE past the end, -E2BIG for more ranges than
 * the table's max_claims, -EPERM and -EBADF as for dmu_set_params(),
 * -EPROTONOSUPPORT from a kernel before control interface version 5.
 */
int dmu_claim(int fd, uint64_t offset, uint64_t len);

/**
 * dmu_release() - DM_USER_CMD_RELEASE: stop serving [@offset, @offset +
 * @len), whose I/O then goes straight to the backing device
 *
 * As dmu_claim(). Requests of the range the daemon already holds, or that
 * wait for it, are still its own to answer.
 */
int dmu_release(int fd, uint64_t offset, uint64_t len);

/**
 * dmu_claim_ops() - dmu_claim() for some operations only
 * @ops: DM_USER_CLAIM_READS, DM_USER_CLAIM_WRITES (every operation that
 *	changes data: write, discard, write-zeroes, secure erase) or both
 *	(DM_USER_CLAIM_ALL, which is dmu_claim())
 *
 * Each sector is claimed for what claimed it and was not released since: a
 * request goes to the daemon if any of its sectors is claimed for its
 * operation, with DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED unless all are.
 * Claiming the writes of a range alone lets its reads go straight to the
 * backing device, as a copy-on-write snapshot wants for chunks never
 * written. Flushes come to the daemon while it claims writes somewhere.
 *
 * Return: as dmu_claim(); -EINVAL also for @ops 0 or with other bits, and
 * -ENOPROTOOPT from a kernel before control interface version 8 for @ops
 * other than both.
 */
int dmu_claim_ops(int fd, uint64_t offset, uint64_t len, unsigned int ops);
/** dmu_release_ops() - dmu_release() for @ops only, as dmu_claim_ops() */
int dmu_release_ops(int fd, uint64_t offset, uint64_t len, unsigned int ops);

/**
 * dmu_map() - DM_USER_CMD_MAP: send the I/O of [@offset, @offset + @len)
 * to @dest on the backing device, with no round trip
 * @fd: as for dmu_claim()
 * @offset: bytes from the start of the target, a multiple of its block size
 * @len: bytes, a multiple of the block size, not 0
 * @dest: where @offset goes, in bytes from the start of the target's
 *	range on the backing device (struct dmu_info.backing_offset), as a
 *	remap answer's sector counts; a multiple of the block size, with
 *	@dest + @len not past the end of the target
 * @ops: as for dmu_claim_ops(): the reads, the writes or both
 *
 * The remap answer the daemon would give every request of the range, given
 * once: I/O of the range that no claim for its operation takes goes from
 * the kernel's map path to @dest plus its offset in the range. A claim
 * takes precedence, so a daemon may map a range and then release its
 * claim, and no request sees a moment where neither holds. Mapping a range
 * again replaces the mapping of what it covers; requests that cross the
 * edge of a mapped range are cut there. Returns once no I/O mapped before
 * the call is still on its way to where it went before.
 *
 * Return: the number of mapped ranges after the change, of reads and
 * writes together (ranges that continue each other, on the target and on
 * the backing device, count as one); or a negative errno as dmu_claim(),
 * with -EINVAL also for @dest not in whole blocks, -ERANGE also for
 * @dest + @len past the end, -E2BIG for more mapped ranges than the
 * table's max_claims, and -EPROTONOSUPPORT from a kernel before control
 * interface version 9.
 */
int dmu_map(int fd, uint64_t offset, uint64_t len, uint64_t dest,
	    unsigned int ops);
/**
 * dmu_unmap() - DM_USER_CMD_UNMAP: [@offset, @offset + @len) no longer
 * mapped for @ops: its unclaimed I/O goes to its own sector again
 *
 * Return: as dmu_map().
 */
int dmu_unmap(int fd, uint64_t offset, uint64_t len, unsigned int ops);

/** dmu_reset_counters() - DM_USER_CMD_RESET_COUNTERS */
int dmu_reset_counters(int fd);
/**
 * dmu_negotiate() - ask for wire extensions (DM_USER_EXT_*) on channel @fd
 * @granted: what the kernel granted, a subset of @want; never the ring,
 *	which changes how the channel is used (see dmu_negotiate_ring())
 */
int dmu_negotiate(int fd, uint64_t want, uint64_t *granted);
/**
 * struct dmu_ring_params - the shape of a ring (DM_USER_EXT_RING)
 * @depth: slots, a power of two up to DM_USER_RING_MAX_DEPTH; 0 asks for
 *	DM_USER_RING_DEFAULT_DEPTH. Set to what was granted (0: no ring).
 * @data: bytes of the data area, a multiple of the page size from the
 *	target's max_io to DM_USER_RING_MAX_DATA; 0 asks for
 *	DM_USER_RING_DEFAULT_DATA. Set to what was granted (0: no ring).
 * @size: set to the bytes to mmap() from offset 0 of the channel (0: no
 *	ring).
 */
struct dmu_ring_params {
	uint32_t depth;
	uint32_t data;
	uint64_t size;
};

/**
 * dmu_negotiate_ring() - dmu_negotiate() with DM_USER_EXT_RING in @want
 * @ring: the ring asked for, and what was granted
 * @granted: what the kernel granted
 *
 * Asks for no busy-poll: on a channel that is a ring already, it turns a
 * busy-poll off (see dmu_negotiate_ring_busy_poll()).
 *
 * Return: 0, or a negative errno: -EBUSY when the channel holds a request
 * it read with read(), or is a ring and @want leaves the ring out; -ERANGE
 * for a bad @ring->depth or @ring->data; -ENOMEM without the memory or
 * when the ring would take the caller past its RLIMIT_MEMLOCK.
 */
int dmu_negotiate_ring(int fd, uint64_t want, struct dmu_ring_params *ring,
		       uint64_t *granted);
/**
 * dmu_negotiate_ring_busy_poll() - dmu_negotiate_ring() with a busy-poll
 * @busy_poll_us: in: microseconds RING_ENTER should spin for a request
 *	before it sleeps (DM_USER_ATTR_RING_BUSY_POLL), up to
 *	DM_USER_RING_MAX_BUSY_POLL, 0 for none; out: what was granted, 0
 *	without the ring or from a kernel before control interface version 3
 *	(which ignores it).
 *
 * Spinning costs CPU time while the device is idle and saves a sleep and a
 * wake-up per request that comes within it. Since libdmuser 1.2.
 *
 * Return: as dmu_negotiate_ring(); -ERANGE also for a bad @busy_poll_us.
 */
int dmu_negotiate_ring_busy_poll(int fd, uint64_t want,
				 struct dmu_ring_params *ring,
				 uint32_t *busy_poll_us, uint64_t *granted);

/* ------------------------------------------------------------------------
 * Serving
 */

/* One request, as the callbacks see it. */
struct dmu_req {
	uint64_t type;		/* DM_USER_REQ_MAP_* */
	uint64_t flags;		/* DM_USER_REQ_MAP_FLAG_* */
	uint64_t offset;	/* bytes from the start of the target */
	uint64_t len;		/* bytes */
	/*
	 * READ: @len bytes to fill, in a buffer of the library (on a ring,
	 * the request's place in the ring's data area); or the callback
	 * points @data at @len bytes of its own (the store itself) that stay
	 * as they are until the answer is sent, and the kernel copies the
	 * answer from there (on a ring too: DM_USER_RING_CQE_ADDR). Answers
	 * are sent once the callbacks of the channel's batch have returned,
	 * before the channel takes more requests, so memory reused from one
	 * request to the next (a scratch buffer) must be the library's, not
	 * the callback's. A NULL @data on success is answered as an error.
	 * A request left pending (DMU_PENDING) keeps @data, the library's
	 * buffer or the callback's memory, until dmu_complete(); memory of
	 * the callback's must then stay as it is until the answer is sent,
	 * some time after that call.
	 * WRITE: the @len bytes of data, in a buffer of the library (the
	 * data area) or where ->write_buffer asked for them. Page aligned in
	 * the data area, as O_DIRECT wants.
	 */
	void *data;
	unsigned int channel;	/* index of the channel, 0 to threads-1 */
	/*
	 * READ: nonzero when @data may be pointed at memory whose reading
	 * can fail (a mapping of a file, where an I/O error or a truncation
	 * shows as a fault): on this channel (a ring) such a fault fails
	 * this read with EIO (counted as a bad answer) and nothing else.
	 * Zero where it would fail the whole channel (the RFC protocol):
	 * there, copy from such memory into the library's buffer instead.
	 * Since libdmuser 1.1 (pkg-config dmuser >= 1.1): an older library
	 * passes a shorter struct.
	 */
	int data_may_fault;
	/*
	 * Where a callback that returns DMU_REMAP sends the request on the
	 * backing device: bytes from the start of the target's range there,
	 * a multiple of the block size, with the request's @len inside the
	 * target's size. Set to @offset before the callback,
	 * so that by default the request goes where dm-linear would send it.
	 * Since libdmuser 1.3.
	 */
	uint64_t remap_offset;
};

/*
 * A write notification (DM_USER_REQ_NOTIFY): @type is DM_USER_REQ_NOTIFY
 * added to the operation's DM_USER_REQ_MAP_*, and there is no @data.
 */
static inline bool dmu_req_is_notify(const struct dmu_req *req)
{
	return req->type & DM_USER_REQ_NOTIFY;
}

/*
 * What a callback returns to answer its request with a remap
 * (DM_USER_RESP_REMAP): the kernel sends the request, data and all, to the
 * backing device at @req->remap_offset and completes it with that device's
 * status; a READ's @data is not used. Only where dmu_serve_opts.remap was
 * asked for; elsewhere, or with a @remap_offset the kernel would refuse
 * (see struct dmu_req), the request is answered as an error.
 */
#define DMU_REMAP	1

/*
 * What a callback returns to answer its request later, from any thread,
 * with dmu_complete(): the request, @req and a READ's @data stay the
 * callback's until then. Only with dmu_serve_opts.max_pending; elsewhere
 * the request is answered as an error. Since libdmuser 1.7.
 */
#define DMU_PENDING	2
/* The largest dmu_serve_opts.max_pending. */
#define DMU_MAX_PENDING	4096

/**
 * dmu_complete() - answer a request whose callback returned DMU_PENDING
 * @req: the request, as the callback was given it
 * @rc: what the callback would have returned: 0, -EOPNOTSUPP, DMU_REMAP
 *	(with @req->remap_offset set) or another negative errno
 *
 * May be called from any thread, once per pending request, also before
 * its callback has returned (from inside it, or from a thread it handed
 * the request to), which must then return DMU_PENDING. Only for requests
 * of a server with max_pending: elsewhere @req is not the library's to
 * keep, and the call is undefined. The answer goes out on the request's channel when
 * its serving thread (or dmu_server_serve()) next runs, which this call
 * wakes; requests are answered in the order they are completed. After
 * the call, @req and its @data are the library's again. A request whose
 * channel the kernel reset meanwhile, or whose target went away, is not
 * answered: the kernel has given it to another channel or failed it, and
 * the late answer is dropped; until then it keeps its place, and counts
 * against max_pending. Since libdmuser 1.7.
 */
void dmu_complete(struct dmu_req *req, int rc);

/*
 * One callback per operation. Each returns 0 for success, -EOPNOTSUPP to
 * answer UNSUPPORTED, DMU_REMAP to send the request to the backing device,
 * DMU_PENDING to answer later with dmu_complete(), or another negative
 * errno to answer ERROR. A NULL callback answers UNSUPPORTED. Callbacks
 * run on the serving threads, one per channel, concurrently (or on the
 * thread that calls dmu_server_serve() for the channel).
 */
struct dmu_ops {
	int (*read)(void *ctx, struct dmu_req *req);
	int (*write)(void *ctx, struct dmu_req *req);
	int (*flush)(void *ctx, struct dmu_req *req);
	int (*discard)(void *ctx, struct dmu_req *req);
	int (*write_zeroes)(void *ctx, struct dmu_req *req);
	int (*secure_erase)(void *ctx, struct dmu_req *req);
	/*
	 * Optional. Where the data of a WRITE should land, asked once the
	 * request's header is in and before its data is read: return
	 * @req->len bytes of memory (the place in the store, say) and the
	 * kernel copies the data straight there, or NULL for a buffer of the
	 * library. ->write is then called with @req->data pointing there and
	 * the data in place. @req->data is NULL here. The data may have landed
	 * even if ->write is never called (the channel was reset, or the target
	 * went away mid-request): only a store that may hold anything a failed
	 * write leaves should say where. Not asked on a channel that negotiated
	 * READ_BATCH, whose reads bring whole messages, nor on a ring, where
	 * the data is in the data area before the request is seen.
	 */
	void *(*write_buffer)(void *ctx, const struct dmu_req *req);
	/*
	 * Optional. A write, discard, write-zeroes or secure erase outside
	 * the claimed ranges of a target with write notifications on
	 * (dmu_req_is_notify(): sector and length, no data) waits for this
	 * before it goes to the backing device: return 0 to let it go there
	 * as it is, DMU_REMAP to send it to @req->remap_offset instead
	 * (with dmu_serve_opts.remap, as from any callback), or a negative
	 * errno to fail it. NULL lets every write through. Since
	 * libdmuser 1.4, read from every caller as dmu_serve_opts.remap is.
	 */
	int (*notify)(void *ctx, struct dmu_req *req);
	/*
	 * Optional. The target's table was reloaded under its name and the
	 * reload took effect: the size, the backing device or the operations
	 * may have changed, and @info is what GET_INFO says then. Called
	 * after one or more reloads (several close together may come as
	 * one), one call at a time, on one of the serving threads: within
	 * 200 ms on read()/write() channels, at the next wait on a ring, and
	 * in any case before a request past the size the library knew is
	 * handed to a callback; remap offsets are checked against the new
	 * size from then on. Serving goes on across the reload without it.
	 * Since libdmuser 1.4, read from every caller as notify is.
	 */
	void (*reload)(void *ctx, const struct dmu_info *info);
};

/*
 * How dmu_serve() moves requests and answers on each channel.
 *
 * DMU_TRANSPORT_AUTO: the ring (DM_USER_EXT_RING: requests and their data
 *	in memory shared with the kernel, one ioctl a batch) where the kernel
 *	grants it, else read() and write(). Asking for batch > 1, split,
 *	read_batch or write_batch, which are about read() and write(),
 *	chooses those.
 * DMU_TRANSPORT_RING: the ring, or -EOPNOTSUPP from dmu_serve().
 * DMU_TRANSPORT_RW: read() and write(), the RFC protocol, with the
 *	batching extensions asked for.
 *
 * Options of one transport are refused (dmu_serve() returns -EINVAL) with
 * the other chosen, or with options that choose the other: ring_depth,
 * ring_data or ring_busy_poll with DMU_TRANSPORT_RW or with batch > 1,
 * split, read_batch or write_batch; and those four with
 * DMU_TRANSPORT_RING.
 */
enum dmu_transport {
	DMU_TRANSPORT_AUTO,
	DMU_TRANSPORT_RING,
	DMU_TRANSPORT_RW,
};

struct dmu_serve_opts {
	unsigned int threads;	/* channels, one thread each; 0 means 1 */
	unsigned int batch;	/* read up to this many requests, then answer
				 * them in reverse order; 0 means 1 */
	size_t split;		/* at most this many bytes per read() and
				 * write() on a channel; 0: no limit */
	bool read_batch;	/* negotiate DM_USER_EXT_READ_BATCH */
	/*
	 * Ask for DM_USER_EXT_WRITE_BATCH: the answers to the requests of one
	 * read (a batch) go out in one write(). Without it from the kernel,
	 * one write() per answer, as in the RFC protocol.
	 */
	bool write_batch;
	bool verbose;		/* log every request to stderr */
	/* Serving stops when *stop becomes non-zero (may be NULL). */
	volatile int *stop;
	/* Called once every channel is open (may be NULL). */
	void (*ready)(void *ctx);
	/* How requests travel; see enum dmu_transport. */
	enum dmu_transport transport;
	/* Slots of each ring, a power of two; 0: the kernel's default. */
	unsigned int ring_depth;
	/* Bytes of each ring's data area; 0: the kernel's default. */
	unsigned int ring_data;
	/*
	 * Microseconds each ring spins for a request before it sleeps (see
	 * dmu_negotiate_ring_busy_poll()); 0: none. A kernel before control
	 * interface version 3 serves the ring without it. Since libdmuser
	 * 1.2 (pkg-config dmuser >= 1.2). The library reads this field from
	 * every caller: a program built with an older header passes a
	 * shorter struct and must be rebuilt. libdmuser's ABI is not frozen
	 * before its first packaged release; this struct grows at its end.
	 */
	unsigned int ring_busy_poll;
	/*
	 * Negotiate DM_USER_EXT_REMAP on every channel, so that callbacks
	 * may return DMU_REMAP. The target must have a backing device:
	 * dmu_serve() returns -EOPNOTSUPP otherwise. Since libdmuser 1.3,
	 * read from every caller as ring_busy_poll is: a program built with
	 * an older header must be rebuilt.
	 */
	bool remap;
	/*
	 * The most requests each channel holds pending: handed to a
	 * callback that returned DMU_PENDING, and not answered yet. At the
	 * limit a channel takes no more requests until one is completed;
	 * they wait in the kernel (up to the table's max_queued, then in
	 * the block layer). 0: callbacks answer before they return. On
	 * read() and write() channels each pending request has a receive
	 * buffer of its own, up to 1 MiB and 4 KiB of address space
	 * (touched as far as its data goes); on a ring, its data stays in
	 * the ring's data area, and the ring is max_pending deep (rounded up
	 * to a power of two, up to DM_USER_RING_MAX_DEPTH) unless ring_depth
	 * says otherwise, which then bounds it too. Refused
	 * (-EINVAL) with batch > 1 or read_batch, whose batches are
	 * answered together. Since libdmuser 1.7; read from callers built
	 * with a 1.7 header or newer (see dmu_serve()).
	 */
	unsigned int max_pending;
};

/**
 * dmu_serve_size() - serve /dev/dm-user/@name until its target is removed
 * @name: the target's name, or a path to its node
 * @opts: NULL for the defaults
 * @opts_size: sizeof(struct dmu_serve_opts) as the caller was built with
 *
 * A channel the kernel resets (ECONNRESET, after request_timeout took a
 * request it held) is closed and opened again; the requests read on it are
 * dropped unanswered, and a batch that changes data is not applied once the
 * channel reports the reset.
 *
 * With @opts->max_pending, returns only once every pending request was
 * completed (dmu_complete()), answered or, on a channel that ended,
 * dropped: a daemon that gives up on a request completes it with an error.
 *
 * Return: 0 when the target was removed (every channel saw ENOTBLK) or
 * *stop was set, a negative errno when a channel failed; -EINVAL before
 * anything is opened for options of the two transports at once (see
 * enum dmu_transport), max_pending past DMU_MAX_PENDING or with batch > 1
 * or read_batch;
 * -EOPNOTSUPP for @opts->remap on a target the kernel grants no remap on
 * (it has no backing device, or the kernel is older than control
 * interface version 4).
 */
int dmu_serve_size(const char *name, const struct dmu_ops *ops, void *ctx,
		   const struct dmu_serve_opts *opts, size_t opts_size);
/**
 * dmu_serve() - dmu_serve_size() with the caller's struct dmu_serve_opts
 *
 * A macro since libdmuser 1.7. The function of this name stays for
 * programs built before, and reads the struct as 1.6 laid it out, up to
 * @remap.
 */
int dmu_serve(const char *name, const struct dmu_ops *ops, void *ctx,
	      const struct dmu_serve_opts *opts);
#define dmu_serve(name, ops, ctx, opts) \
	dmu_serve_size((name), (ops), (ctx), (opts), \
		       sizeof(struct dmu_serve_opts))

/*
 * The event-loop form of dmu_serve(): the daemon waits for the channels
 * itself (epoll, io_uring, another library's loop) and the library does
 * the protocol. Since libdmuser 1.7.
 */
struct dmu_server;

/**
 * dmu_server_open_size() - open @opts->threads channels of /dev/dm-user/@name
 * for dmu_server_serve(), and start no thread
 * @srv: set to the server, to be freed with dmu_server_close()
 * @opts_size: as for dmu_serve_size(); use dmu_server_open()
 *
 * @opts as for dmu_serve(), where threads counts the channels; ready is
 * not called.
 *
 * Return: 0, or a negative errno as dmu_serve() before it serves, or of
 * the channel that could not be opened.
 */
int dmu_server_open_size(struct dmu_server **srv, const char *name,
			 const struct dmu_ops *ops, void *ctx,
			 const struct dmu_serve_opts *opts, size_t opts_size);
#define dmu_server_open(srv, name, ops, ctx, opts) \
	dmu_server_open_size((srv), (name), (ops), (ctx), (opts), \
			     sizeof(struct dmu_serve_opts))

/**
 * dmu_server_fd() - the file descriptor to wait on for @channel
 * @channel: 0 to @opts->threads - 1
 *
 * Readable (EPOLLIN) when dmu_server_serve() has something to do for the
 * channel: a request (while the channel holds fewer than max_pending), a
 * completion, a reset or the target's end. It stays the same descriptor
 * across the channel's reopening after a reset; never read it or close
 * it.
 *
 * Return: the descriptor, or -EINVAL for a channel that does not exist.
 */
int dmu_server_fd(const struct dmu_server *srv, unsigned int channel);

/**
 * dmu_server_serve() - do what @channel has to do, without waiting
 *
 * Answers the requests completed since the last call, reads the requests
 * waiting and hands them to the callbacks, which run on this thread,
 * without waiting for a request or a completion (only for the rest of a
 * message the kernel is sending);
 * follows reloads as dmu_serve() does. One thread at a time per channel;
 * dmu_complete() may run anywhere meanwhile. On a channel with nothing to
 * do for a while, ->reload is heard at the next call: call it every so
 * often (every 200 ms, say) where that matters, and after setting
 * @opts->stop.
 *
 * Return: 0 while the channel serves: call again when dmu_server_fd() is
 * readable. Once the channel has ended and holds no pending request: 1
 * when its target was removed or *@opts->stop was set, a negative errno
 * when it (or another channel of @srv) failed; then do not call it again.
 */
int dmu_server_serve(struct dmu_server *srv, unsigned int channel);

/**
 * dmu_server_close_channel() - give back what @channel holds, and take
 * nothing more
 *
 * Closes the channel: the kernel gives every request it holds, read or
 * not, back to the target's queue, whole, for another channel (or this
 * one, reopened) to take, as when a daemon dies. Its pending requests are
 * dropped when they are completed. What a daemon does when it loses its
 * own back end (a server connection) for a while, so that no request
 * fails for it. dmu_server_serve() goes on taking completions; the
 * descriptor stays the same. With every channel of the target closed, the
 * kernel's no-daemon timeout runs (see the table's no_daemon_timeout).
 *
 * Return: 0, or -EINVAL for a channel that does not exist.
 */
int dmu_server_close_channel(struct dmu_server *srv, unsigned int channel);

/**
 * dmu_server_open_channel() - serve @channel again after
 * dmu_server_close_channel()
 *
 * Return: 0 (also for a channel that is open); -ENOTBLK once the target
 * was removed, -ESHUTDOWN once the channel has ended otherwise (a stop or
 * a failure); -EINVAL for a channel that does not exist; or why the node
 * could not be opened.
 */
int dmu_server_open_channel(struct dmu_server *srv, unsigned int channel);

/**
 * dmu_server_pending() - requests @channel holds pending, 0 for a
 * channel that does not exist
 */
unsigned int dmu_server_pending(const struct dmu_server *srv,
				unsigned int channel);

/**
 * dmu_server_close() - close the channels and free @srv
 *
 * Return: 0; or -EBUSY, and nothing is freed, while a request is pending
 * (complete it, and call dmu_server_serve() for its channel, until
 * dmu_server_pending() is 0).
 */
int dmu_server_close(struct dmu_server *srv);

/**
 * dmu_prepare_daemon() - what a daemon in the I/O path should do first:
 * set PR_SET_IO_FLUSHER so its allocations do not wait on the device it
 * serves, and lock its memory so it is never paged out to that device.
 *
 * Memory is locked only where the lock cannot run out: with CAP_IPC_LOCK
 * or an unlimited RLIMIT_MEMLOCK. Under a finite limit, mlockall()'s
 * MCL_FUTURE would make the daemon's own later allocations fail, so an
 * unprivileged daemon is left unlocked and gets -EPERM.
 *
 * Return: 0, or the negative errno of the first step that failed (the
 * other steps are still tried).
 */
int dmu_prepare_daemon(void);

#ifdef __cplusplus
}
#endif

#endif /* DMUSER_H */
