/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dm-user: a device-mapper target whose I/O is served by a userspace daemon.
 *
 * Every open() of /dev/dm-user/<name> is a channel. read() on a channel
 * yields the next request: a struct dm_user_message header followed, for
 * writes only, by the data. The daemon answers on the same channel with
 * write(): the header with the request's @seq and @type set to one of the
 * DM_USER_RESP_* codes, followed, for a successful read only, by the data.
 * Reads and writes may be split into pieces of any size; one read() or
 * write() never spans two messages unless the channel negotiated
 * DM_USER_EXT_READ_BATCH or DM_USER_EXT_WRITE_BATCH respectively. Answers
 * may come in any order. A read()
 * and a write() of one channel may run concurrently. read() and write()
 * fail with ENOTBLK once the target is destroyed, and with ECONNRESET once
 * the channel was reset because request_timeout took a request it had
 * started to read: the daemon must then apply none of the requests it read
 * on that channel, and open a new one.
 *
 * The layout and the constant values are those of the 2020 dm-user RFC, so
 * daemons written for it work unchanged. See
 * Documentation/admin-guide/device-mapper/dm-user.rst.
 */
#ifndef _UAPI_LINUX_DM_USER_H
#define _UAPI_LINUX_DM_USER_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* Longest target name: the node is /dev/dm-user/<name>. */
#define DM_USER_NAME_MAX	64

/* Request types, in &dm_user_message.type of a request. */
#define DM_USER_REQ_MAP_READ		0
#define DM_USER_REQ_MAP_WRITE		1
#define DM_USER_REQ_MAP_FLUSH		2
#define DM_USER_REQ_MAP_DISCARD		3
#define DM_USER_REQ_MAP_SECURE_ERASE	4
#define DM_USER_REQ_MAP_WRITE_SAME	5
#define DM_USER_REQ_MAP_WRITE_ZEROES	6
#define DM_USER_REQ_MAP_ZONE_OPEN	7
#define DM_USER_REQ_MAP_ZONE_CLOSE	8
#define DM_USER_REQ_MAP_ZONE_FINISH	9
#define DM_USER_REQ_MAP_ZONE_APPEND	10
#define DM_USER_REQ_MAP_ZONE_RESET	11
#define DM_USER_REQ_MAP_ZONE_RESET_ALL	12

/* Request flags, in &dm_user_message.flags of a request. */
#define DM_USER_REQ_MAP_FLAG_FAILFAST_DEV	0x00001
#define DM_USER_REQ_MAP_FLAG_FAILFAST_TRANSPORT	0x00002
#define DM_USER_REQ_MAP_FLAG_FAILFAST_DRIVER	0x00004
#define DM_USER_REQ_MAP_FLAG_SYNC		0x00008
#define DM_USER_REQ_MAP_FLAG_META		0x00010
#define DM_USER_REQ_MAP_FLAG_PRIO		0x00020
#define DM_USER_REQ_MAP_FLAG_NOMERGE		0x00040
#define DM_USER_REQ_MAP_FLAG_IDLE		0x00080
#define DM_USER_REQ_MAP_FLAG_INTEGRITY		0x00100
#define DM_USER_REQ_MAP_FLAG_FUA		0x00200
#define DM_USER_REQ_MAP_FLAG_PREFLUSH		0x00400
#define DM_USER_REQ_MAP_FLAG_RAHEAD		0x00800
#define DM_USER_REQ_MAP_FLAG_BACKGROUND		0x01000
#define DM_USER_REQ_MAP_FLAG_NOWAIT		0x02000
#define DM_USER_REQ_MAP_FLAG_CGROUP_PUNT	0x04000
#define DM_USER_REQ_MAP_FLAG_NOUNMAP		0x08000
#define DM_USER_REQ_MAP_FLAG_HIPRI		0x10000
#define DM_USER_REQ_MAP_FLAG_DRV		0x20000
#define DM_USER_REQ_MAP_FLAG_SWAP		0x40000
/*
 * Not a block request flag: the request touches a claimed range but is not
 * wholly inside the claimed ranges (DM_USER_CMD_CLAIM). Only on a target
 * whose claims are not the whole target, which only a daemon that claims
 * and releases ranges, or a table with the passthrough feature, makes.
 */
#define DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED	0x80000

/*
 * Added to the type of a write notification: on a target with write
 * notifications on (the notify_writes table feature, or
 * DM_USER_ATTR_NOTIFY_WRITES), a request that changes data
 * (DM_USER_REQ_MAP_WRITE, _DISCARD, _WRITE_ZEROES or _SECURE_ERASE) and
 * touches no claimed range comes to the daemon as a header with this bit
 * set in @type, before it goes to the backing device: @sector and @len say
 * what it covers and @flags are its own, and no data follows, whatever the
 * operation. The request waits for the answer: DM_USER_RESP_SUCCESS lets
 * it go to the backing device where it was going, DM_USER_RESP_REMAP (on
 * a channel that negotiated DM_USER_EXT_REMAP) sends it to the answer's
 * @sector, ERROR and UNSUPPORTED fail it. An answer carries no data. A
 * daemon that does not know the bit sees an unknown request type; what it
 * answers then decides as above.
 */
#define DM_USER_REQ_NOTIFY		0x100

/* Response codes, in &dm_user_message.type of an answer. */
#define DM_USER_RESP_SUCCESS		0
#define DM_USER_RESP_ERROR		1
#define DM_USER_RESP_UNSUPPORTED	2
/*
 * Only on a channel that negotiated DM_USER_EXT_REMAP: the kernel sends
 * the request, data and all, to the target's backing device, and
 * completes it with that device's status. See DM_USER_EXT_REMAP.
 */
#define DM_USER_RESP_REMAP		3

/**
 * struct dm_user_message - header of every request and every answer
 * @seq: identifies the request. Chosen by the kernel, unique among the
 *	requests of one target that are not yet answered; an answer carries
 *	the @seq of the request it answers.
 * @type: in a request, one of DM_USER_REQ_MAP_*, with DM_USER_REQ_NOTIFY
 *	added for a write notification; in an answer, one of DM_USER_RESP_*.
 * @flags: in a request, the DM_USER_REQ_MAP_FLAG_* bits of the block
 *	request (FUA, PREFLUSH, ...); ignored in an answer.
 * @sector: first 512-byte sector of the request, counted from the start of
 *	the target (not of the mapped device); in an answer ignored, but for
 *	DM_USER_RESP_REMAP, where it says where on the backing device the
 *	request goes, counted the same way.
 * @len: length of the request in bytes. A write request is followed by
 *	@len bytes of data; a write notification is not. A successful
 *	answer to a read is followed by @len bytes of data, and its @len
 *	must equal the request's. Any other answer carries no data; its @len
 *	must be the request's @len or 0.
 * @buf: the data that follows the header, where there is any.
 *
 * Native endian, no padding: the header is 40 bytes on every architecture.
 */
struct dm_user_message {
	__u64 seq;
	__u64 type;
	__u64 flags;
	__u64 sector;
	__u64 len;
	__u8 buf[];
};

/*
 * The control interface: ioctl(fd, DM_USER_IOCTL_CTL, buf) on an open
 * channel of /dev/dm-user/<name>. The fd is the handle: it stays bound to
 * the target it was opened on, and fails with ENOTBLK once that target is
 * gone, even if a new target has taken the same name.
 *
 * buf is one flat buffer: a struct dm_user_ctl header, then in_len bytes of
 * request attributes. The kernel reads it in one copy, and in one copy
 * writes back the header and the reply attributes, which replace the
 * request attributes in the same buffer. There are no pointers in it, only
 * fixed-width fields in natural alignment, so 32-bit and 64-bit programs use
 * the same layout.
 *
 * Rules that keep old and new programs and kernels working together:
 *  - Command and tag numbers are never reused, and never change meaning.
 *  - A request carries, in @version, the interface version that introduced
 *    its command (not the version the program was built against). The
 *    kernel refuses only versions newer than its own.
 *  - An attribute is mandatory or optional. A request with an unknown
 *    command, or with a mandatory attribute the kernel does not know, is
 *    refused as a whole; unknown optional attributes are ignored and listed
 *    in the reply (DM_USER_ATTR_UNKNOWN_TAG).
 *  - A command that sets several attributes is atomic: all are validated
 *    before any is applied.
 *
 * Errors (ioctl returns -1, errno set; the header and a reason are still
 * written back whenever the buffer could be read):
 *  EFAULT	buf is not readable or writable
 *  EINVAL	malformed: size below the header, in_len past size, an
 *		attribute running past in_len, a wrong type or length for a
 *		known tag, a string without its NUL, a tag given twice, flags
 *		or reserved fields not zero, version 0 (error_tag names the
 *		attribute, where there is one)
 *  E2BIG	size above DM_USER_CTL_MAX_SIZE or more than
 *		DM_USER_CTL_MAX_ATTRS attributes
 *  EOPNOTSUPP	unknown command (error_command names it)
 *  ENOPROTOOPT	unknown mandatory attribute, or a mandatory attribute the
 *		command does not take (error_tag names it)
 *  EPROTONOSUPPORT @version newer than the kernel's, or older than the
 *		command (the reply's @version is the kernel's)
 *  ERANGE	a value out of range (error_tag names it)
 *  ENOSPC	the reply does not fit in size; out_len says how many bytes of
 *		attributes it needs. A command that changes something is
 *		checked for room before it runs, so it has then changed
 *		nothing
 *  EPERM	a command that changes settings, from neither the node's owner
 *		nor a process with CAP_SYS_ADMIN
 *  EBADF	a command that changes something, on an fd not opened for
 *		reading and writing
 *  ENOTBLK	the target this fd was opened on has been destroyed
 */

/*
 * The kernel's control interface version. 2 added the ring
 * (DM_USER_EXT_RING, its attributes and DM_USER_ATTR_BAD_ANSWERS), 3 the
 * ring's busy-poll (DM_USER_ATTR_RING_BUSY_POLL), 4 the backing device
 * (DM_USER_EXT_REMAP, DM_USER_RESP_REMAP and DM_USER_ATTR_REMAPPED to
 * DM_USER_ATTR_BACKING_OFFSET), 5 claimed ranges (DM_USER_CMD_CLAIM,
 * DM_USER_CMD_RELEASE and their attributes), 6 write notifications
 * (DM_USER_REQ_NOTIFY, DM_USER_ATTR_NOTIFY_WRITES, DM_USER_ATTR_NOTIFIED),
 * 7 same-name reloads (DM_USER_ATTR_RELOADS, POLLPRI), 8 claims per
 * operation (DM_USER_ATTR_RANGE_OPS), 9 mapped ranges (DM_USER_CMD_MAP,
 * DM_USER_CMD_UNMAP, DM_USER_ATTR_RANGE_DEST, DM_USER_ATTR_MAP_RANGES).
 */
#define DM_USER_CTL_VERSION	9

#define DM_USER_CTL_MAX_SIZE	65536
#define DM_USER_CTL_MAX_ATTRS	256

/**
 * struct dm_user_ctl - header of a control request and of its reply
 * @size: in: bytes of the whole buffer, this header included; the reply
 *	never writes past it.
 * @version: in: the interface version that introduced @command; out: the
 *	kernel's DM_USER_CTL_VERSION.
 * @command: in: one of DM_USER_CMD_*.
 * @flags: in: must be 0.
 * @in_len: in: bytes of request attributes after the header.
 * @out_len: out: bytes of reply attributes after the header (with ENOSPC,
 *	the bytes needed).
 * @error: out: 0, or the errno of the refusal.
 * @error_tag: out: the attribute that caused the refusal, or 0.
 * @error_command: out: the command that was not understood, or 0.
 * @reserved: must be 0.
 * @data: the attributes.
 */
struct dm_user_ctl {
	__u32 size;
	__u16 version;
	__u16 command;
	__u32 flags;
	__u32 in_len;
	__u32 out_len;
	__u32 error;
	__u16 error_tag;
	__u16 error_command;
	__u32 reserved;
	__u8 data[];
};

/**
 * struct dm_user_attr - one typed attribute: tag, type, length, value
 * @tag: one of DM_USER_ATTR_*.
 * @type: one of DM_USER_TYPE_*; must be the type the tag is defined with.
 * @flags: DM_USER_ATTR_F_MANDATORY or 0.
 * @len: bytes of @value (4 for U32, 8 for U64, string length plus its NUL
 *	for STRING).
 * @value: the value, followed by zero padding to the next multiple of 8
 *	bytes; the next attribute starts there.
 */
struct dm_user_attr {
	__u16 tag;
	__u8 type;
	__u8 flags;
	__u32 len;
	__u8 value[];
};

#define DM_USER_ATTR_ALIGN(len)	(((len) + 7) & ~7U)

/* Attribute types. */
#define DM_USER_TYPE_U32	1
#define DM_USER_TYPE_U64	2
#define DM_USER_TYPE_STRING	3

/* Attribute flags. */
#define DM_USER_ATTR_F_MANDATORY	0x01

/*
 * Commands, with the interface version that introduced each. Numbers are
 * never reused.
 */
#define DM_USER_CMD_GET_INFO		1	/* v1: describe the target */
#define DM_USER_CMD_GET_PARAMS		2	/* v1: the tunable parameters */
#define DM_USER_CMD_SET_PARAMS		3	/* v1: set them, all or nothing */
#define DM_USER_CMD_RESET_COUNTERS	4	/* v1: zero the per-op counters */
#define DM_USER_CMD_NEGOTIATE		5	/* v1: wire extensions, per channel */
/*
 * v5, on a target with a backing device: claim or release the range
 * DM_USER_ATTR_RANGE_START, DM_USER_ATTR_RANGE_LEN (both required). I/O
 * that touches a claimed range goes to the daemon; I/O wholly outside
 * goes to the backing device as through dm-linear, without a round trip.
 * The reply gives DM_USER_ATTR_CLAIM_RANGES. Needs the node's owner or
 * CAP_SYS_ADMIN and a channel opened for reading and writing. Atomic
 * against I/O: each bio is mapped under the claims before or after the
 * change, never some of each, and CLAIM returns only once no bio mapped
 * before it is still on its way to the backing device, so that from then
 * on the daemon alone reaches the range. Errors: EOPNOTSUPP without a
 * backing device, EINVAL for a range that is empty or not in whole
 * blocks, ERANGE for one past the target's end, E2BIG when the claimed
 * ranges would be more than max_claims (table feature), EINTR when the
 * caller was killed while CLAIM waited for that I/O (the claim is made).
 *
 * v8: DM_USER_ATTR_RANGE_OPS (optional, default both) claims or releases
 * the range for reads, for writes (every operation that changes data:
 * write, discard, write-zeroes, secure erase) or both, so that a daemon
 * sees only the writes of a range whose reads go straight to the backing
 * device (a copy-on-write snapshot's chunks never written) or the
 * reverse; CLAIM's promise then holds for the operations claimed. Each
 * sector is claimed for the union of what claimed it and not since
 * released; a bio goes to the daemon if any of its sectors is
 * claimed for its operation, marked DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED
 * unless all are. The second copy of a flush goes to the daemon while it
 * holds a claim for writes. EINVAL for a mask that is 0 or has other bits.
 */
#define DM_USER_CMD_CLAIM		6
#define DM_USER_CMD_RELEASE		7
/*
 * v9, on a target with a backing device: map the range
 * DM_USER_ATTR_RANGE_START, DM_USER_ATTR_RANGE_LEN (both required) to
 * DM_USER_ATTR_RANGE_DEST (required) for the operations of
 * DM_USER_ATTR_RANGE_OPS (optional, default both), or unmap it for them.
 * I/O of a mapped range that its operation's claims do not take goes to
 * the backing device at the range's destination (counted as a
 * DM_USER_RESP_REMAP answer's sector is) plus its offset in the range,
 * with no round trip: the remap answer a daemon would give each request,
 * given once for all of them. A bio that crosses the edge of a mapped
 * range is cut there. A claim for the operation takes precedence; unmapped
 * and unclaimed I/O goes to its own sector, as through dm-linear. Mapping
 * a range replaces what of it was mapped for those operations, and mapping
 * it to itself unmaps it. A write notification let through goes where the
 * mappings in force at its answer send it; one still queued that a changed
 * edge falls inside becomes a write for the daemon, marked
 * DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED. The reply
 * gives DM_USER_ATTR_MAP_RANGES. Needs what CLAIM needs, and is atomic
 * against I/O as CLAIM is: MAP and UNMAP return only once no bio mapped
 * before them is on its way to the backing device. Errors as for CLAIM;
 * EINVAL also for a destination not in whole blocks, ERANGE for one whose
 * range passes the target's end; E2BIG when the mapped ranges of reads
 * and writes together would be more than max_claims. Ranges that join
 * end to start on both sides count as one.
 */
#define DM_USER_CMD_MAP			8
#define DM_USER_CMD_UNMAP		9

/*
 * Attribute tags, with their types and the version that introduced them.
 * Numbers are never reused.
 */
/* In replies. */
#define DM_USER_ATTR_UNKNOWN_TAG	1	/* U32, v1: an ignored optional tag */
#define DM_USER_ATTR_ERROR_REASON	2	/* STRING, v1: why it was refused */
/* GET_INFO replies. */
#define DM_USER_ATTR_VERSION		10	/* U32, v1: DM_USER_CTL_VERSION */
#define DM_USER_ATTR_FEATURES		11	/* U64, v1: DM_USER_FEATURE_* */
#define DM_USER_ATTR_NAME		12	/* STRING, v1: the target's name */
#define DM_USER_ATTR_SIZE		13	/* U64, v1: length in sectors */
#define DM_USER_ATTR_BLOCK_SIZE		14	/* U32, v1: logical block size */
#define DM_USER_ATTR_MAX_IO		15	/* U32, v1: max data bytes a request */
#define DM_USER_ATTR_OPS		16	/* U64, v1: 1 << DM_USER_REQ_MAP_* on */
#define DM_USER_ATTR_CHANNELS		17	/* U32, v1: open channels */
#define DM_USER_ATTR_QUEUED		18	/* U32, v1: waiting to be read */
#define DM_USER_ATTR_BACKLOG		19	/* U32, v1: held back by the cap */
#define DM_USER_ATTR_INFLIGHT		20	/* U32, v1: read, not answered */
#define DM_USER_ATTR_DAEMON_STATE	21	/* U32, v1: DM_USER_STATE_* */
#define DM_USER_ATTR_REQUEUED		22	/* U64, v1: requeued on close */
#define DM_USER_ATTR_TIMEOUTS		23	/* U64, v1: request_timeout hits */
#define DM_USER_ATTR_BAD_ANSWERS	24	/* U64, v2: answers refused */
#define DM_USER_ATTR_REMAPPED		25	/* U64, v4: remap answers taken */
/*
 * STRING, v4: the backing device as "major:minor"; only in the reply of a
 * target that has one.
 */
#define DM_USER_ATTR_BACKING		26
/* U64, v4: the backing device's sector the target's sector 0 maps to. */
#define DM_USER_ATTR_BACKING_OFFSET	27
/*
 * U32, v5: claimed ranges, in a GET_INFO reply of a target with a
 * backing device and in the reply of CLAIM and RELEASE.
 */
#define DM_USER_ATTR_CLAIM_RANGES	28
/* U64, v5: requests sent straight to the backing device. */
#define DM_USER_ATTR_PASSED		29
/* Per-operation counters in GET_INFO replies: U64, v1. */
#define DM_USER_ATTR_READ_REQUESTS		30
#define DM_USER_ATTR_READ_BYTES			31
#define DM_USER_ATTR_READ_ERRORS		32
#define DM_USER_ATTR_WRITE_REQUESTS		33
#define DM_USER_ATTR_WRITE_BYTES		34
#define DM_USER_ATTR_WRITE_ERRORS		35
#define DM_USER_ATTR_FLUSH_REQUESTS		36
#define DM_USER_ATTR_FLUSH_BYTES		37
#define DM_USER_ATTR_FLUSH_ERRORS		38
#define DM_USER_ATTR_DISCARD_REQUESTS		39
#define DM_USER_ATTR_DISCARD_BYTES		40
#define DM_USER_ATTR_DISCARD_ERRORS		41
#define DM_USER_ATTR_WRITE_ZEROES_REQUESTS	42
#define DM_USER_ATTR_WRITE_ZEROES_BYTES		43
#define DM_USER_ATTR_WRITE_ZEROES_ERRORS	44
#define DM_USER_ATTR_SECURE_ERASE_REQUESTS	45
#define DM_USER_ATTR_SECURE_ERASE_BYTES		46
#define DM_USER_ATTR_SECURE_ERASE_ERRORS	47
/* Tunable parameters: GET_PARAMS replies, SET_PARAMS requests. */
#define DM_USER_ATTR_MAX_QUEUED		60	/* U32, v1: the queue cap */
/*
 * U32, v1: seconds to keep requests queued while no channel is open, then
 * fail them and any new ones with EIO until a channel opens;
 * DM_USER_TIMEOUT_FOREVER queues forever, 0 fails at once.
 */
#define DM_USER_ATTR_NO_DAEMON_TIMEOUT	61
/*
 * U32, v1: seconds after which a request not yet answered fails with
 * ETIMEDOUT, counted from when the target received it; 0 turns it off.
 */
#define DM_USER_ATTR_REQUEST_TIMEOUT	62
/*
 * U32, v6, on a target with a backing device: 1 while writes outside the
 * claimed ranges come to the daemon as notifications (DM_USER_REQ_NOTIFY)
 * before they go to the backing device, 0 while they go there straight.
 * Setting it is atomic against I/O as DM_USER_CMD_CLAIM is: SET_PARAMS
 * returns once no write mapped before it is still on its way to the
 * backing device unnotified. Errors: EOPNOTSUPP for 1 without a backing
 * device, ERANGE above 1, EINTR as for CLAIM (the change is made).
 */
#define DM_USER_ATTR_NOTIFY_WRITES	63
/* NEGOTIATE: asked for in the request, granted in the reply. */
#define DM_USER_ATTR_EXTENSIONS		70	/* U64, v1: DM_USER_EXT_* */
/*
 * U32, v2: slots of the ring; in a NEGOTIATE request that asks for
 * DM_USER_EXT_RING a power of two up to DM_USER_RING_MAX_DEPTH, or 0 for
 * DM_USER_RING_DEFAULT_DEPTH, and required for the ring to be granted;
 * in the reply the depth granted.
 */
#define DM_USER_ATTR_RING_DEPTH		71
/* U64, v2: in a NEGOTIATE reply granting the ring, bytes to mmap(). */
#define DM_USER_ATTR_RING_SIZE		72
/*
 * U32, v2: bytes of the ring's data area; in a NEGOTIATE request asking
 * for the ring (optional) a multiple of the page size from
 * DM_USER_ATTR_MAX_IO to DM_USER_RING_MAX_DATA, or 0 for
 * DM_USER_RING_DEFAULT_DATA; in the reply the size granted.
 */
#define DM_USER_ATTR_RING_DATA		73
/*
 * U32, v3: microseconds RING_ENTER spins, waiting for a request, before it
 * sleeps; in a NEGOTIATE request asking for the ring (optional, 0: never
 * spin) up to DM_USER_RING_MAX_BUSY_POLL, in the reply what was granted.
 * Each NEGOTIATE that grants the ring sets it anew. Spinning trades CPU
 * time for latency: a request that comes within it is taken without the
 * sleep and the wake-up. It stops early when another task wants the CPU.
 */
#define DM_USER_ATTR_RING_BUSY_POLL	74
/*
 * CLAIM and RELEASE (and, v9, MAP and UNMAP): U64, v5, sectors from the
 * start of the target.
 */
#define DM_USER_ATTR_RANGE_START	80
#define DM_USER_ATTR_RANGE_LEN		81
/*
 * CLAIM and RELEASE (and, v9, MAP and UNMAP): U32, v8, what of the range:
 * DM_USER_CLAIM_*.
 */
#define DM_USER_ATTR_RANGE_OPS		82
/*
 * MAP: U64, v9, where the range goes, in sectors from the start of the
 * target's range on the backing device (DM_USER_ATTR_BACKING_OFFSET).
 */
#define DM_USER_ATTR_RANGE_DEST		83
/* U64, v6, in GET_INFO replies: answers taken to write notifications. */
#define DM_USER_ATTR_NOTIFIED		90
/*
 * U64, v7, in GET_INFO replies: reloads of the target's table under its
 * name that have taken effect. Each makes POLLPRI show on every channel
 * opened for reading and writing until that channel asks for GET_INFO:
 * the size, the backing device and the operations may have changed.
 */
#define DM_USER_ATTR_RELOADS		91
/*
 * U32, v9: mapped ranges, of reads and writes together, in a GET_INFO
 * reply of a target with a backing device and in the reply of MAP and
 * UNMAP.
 */
#define DM_USER_ATTR_MAP_RANGES		92

/* DM_USER_ATTR_RANGE_OPS */
#define DM_USER_CLAIM_READS	_BITUL(0)	/* reads */
#define DM_USER_CLAIM_WRITES	_BITUL(1)	/* what changes data */
#define DM_USER_CLAIM_ALL	(DM_USER_CLAIM_READS | DM_USER_CLAIM_WRITES)

/* DM_USER_ATTR_NO_DAEMON_TIMEOUT: keep requests queued until a daemon comes. */
#define DM_USER_TIMEOUT_FOREVER		0xffffffffU

/* DM_USER_ATTR_DAEMON_STATE */
#define DM_USER_STATE_ATTACHED	1	/* at least one channel serves */
#define DM_USER_STATE_WAITING	2	/* none: requests wait for one */
#define DM_USER_STATE_FAILING	3	/* none for no_daemon_timeout: EIO */

/* Feature bits in DM_USER_ATTR_FEATURES. */
#define DM_USER_FEATURE_CTL		_BITULL(0)	/* this interface */
#define DM_USER_FEATURE_NEGOTIATE	_BITULL(1)	/* wire extensions */

/*
 * Wire extensions a channel may ask for with DM_USER_CMD_NEGOTIATE. A
 * channel that negotiates none gets exactly the RFC protocol.
 *
 * DM_USER_EXT_READ_BATCH: one read() returns as many whole requests as fit
 * in its buffer, one after the other (each a header, then its data for a
 * write); it never ends inside a request unless the first one alone does
 * not fit, which then continues as without the extension.
 */
#define DM_USER_EXT_READ_BATCH		_BITULL(0)
/*
 * DM_USER_EXT_WRITE_BATCH: one write() may carry several answers one after
 * the other (each a header, then its data for a successful read), the last
 * of them possibly incomplete, to be continued by the next write(). Bytes
 * after an answer are always taken as the next header. A write() that
 * reaches an answer the kernel refuses returns the bytes of the answers
 * before it (a short write); the refused answer is dropped whole, and
 * writing it again fails with its error. Takes effect from the next
 * write(): negotiate before answering.
 */
#define DM_USER_EXT_WRITE_BATCH		_BITULL(1)
/*
 * DM_USER_EXT_RING: requests and answers go through memory the channel
 * shares with the kernel, described by struct dm_user_ring, instead of
 * read() and write(), which then fail with EINVAL. Granted only to a
 * request that also carries DM_USER_ATTR_RING_DEPTH, so a daemon that sets
 * every bit does not get a channel it cannot use, and not where the data
 * cache may alias (the kernel's and the daemon's views of the memory could
 * disagree). Asked for while the channel holds no request read with
 * read(), and never given up: NEGOTIATE fails with EBUSY otherwise, and
 * with ENOMEM without the memory or when it would take the caller past
 * its RLIMIT_MEMLOCK (the ring's memory is locked; CAP_IPC_LOCK lifts the
 * limit). See struct dm_user_ring.
 */
#define DM_USER_EXT_RING		_BITULL(2)
/*
 * DM_USER_EXT_REMAP: the channel may answer a request with
 * DM_USER_RESP_REMAP. Granted only on a target with a backing device
 * (DM_USER_ATTR_BACKING). The kernel then sends the request's own bio to
 * the backing device at the answer's @sector (a ring completion's
 * @sector), counted from the start of the target's range there, so an
 * answer that keeps the request's @sector sends it where dm-linear would;
 * the data never passes through the daemon again, and the request
 * completes when the backing device completes it, with its status. Any
 * request may be remapped: a read, a write (the daemon saw its data, the
 * backing device writes the bio's pages, which the daemon was sent a copy
 * of), a flush (passed down; its @sector is ignored), a discard,
 * write-zeroes or secure erase (offered only where the backing device
 * takes them). The answer carries no data and its @len
 * is the request's or 0. Refused and counted (DM_USER_ATTR_BAD_ANSWERS),
 * with the request left waiting as for any refused answer, when the
 * channel did not negotiate the extension, when @sector is not a multiple
 * of the block size, and when the request would end past the target's
 * length.
 */
#define DM_USER_EXT_REMAP		_BITULL(3)

#define DM_USER_RING_DEFAULT_DEPTH	64
#define DM_USER_RING_MAX_DEPTH		1024
#define DM_USER_RING_DEFAULT_DATA	(1024U * 1024)
#define DM_USER_RING_MAX_DATA		(256U << 20)
#define DM_USER_RING_MAX_BUSY_POLL	1000U

/**
 * struct dm_user_ring - the head of a ring channel's shared memory
 * @depth: slots, a power of two: the requests the channel holds at most.
 * @data_size: bytes of the data area, a multiple of the page size and at
 *	least DM_USER_ATTR_MAX_IO: the data of the requests in the slots.
 * @sq_offset: where the submission queue starts: @depth struct
 *	dm_user_ring_sqe.
 * @cq_offset: where the completion queue starts: @depth struct
 *	dm_user_ring_cqe.
 * @desc_offset: where the request headers start: @depth struct
 *	dm_user_message, one per slot.
 * @flags: written by the kernel: DM_USER_RING_RESET once the channel is
 *	reset (request_timeout), so a daemon can see it without a call, and
 *	DM_USER_RING_RELOADED.
 * @data_offset: where the data area starts, page aligned.
 * @sq_tail: written by the kernel: submission entries posted so far
 *	(wrapping); entry n is at index n & (@depth - 1).
 * @cq_head: written by the kernel: completion entries it has consumed; the
 *	daemon may reuse their places.
 * @cq_tail: written by the daemon: completion entries posted so far
 *	(wrapping), the same way.
 * @reserved: zero.
 * @reserved2: zero.
 *
 * 128 bytes: what the kernel writes and what the daemon writes are on
 * cache lines of their own. mmap() the channel, MAP_SHARED, from offset 0,
 * with the length DM_USER_ATTR_RING_SIZE of the NEGOTIATE reply; offsets
 * here are from the start of that mapping. All of it is allocated by
 * NEGOTIATE, none of it later; a daemon that serves swap should touch all
 * of its mapping once (MADV_POPULATE_WRITE), so that it takes no page
 * fault while it serves. Then
 * ioctl(fd, DM_USER_IOCTL_RING_ENTER, wait_ms):
 *  1. the kernel consumes the completions from @cq_head to @cq_tail: each
 *     names a slot and the @seq of its request, and a DM_USER_RESP_* code;
 *     for a successful read, the request's data area must hold the data,
 *     or the entry names, with DM_USER_RING_CQE_ADDR, the daemon's own
 *     memory that holds it, which the kernel then copies straight into the
 *     request (one copy: a daemon that answers from its store need not
 *     copy into the data area first). Bad entries (a slot out of range or
 *     not in use, a @seq that is not the slot's, an unknown code, flags or
 *     an address where they do not belong) are refused and counted
 *     (DM_USER_ATTR_BAD_ANSWERS), and change nothing else: a request in
 *     the slot stays there. An address the caller cannot read is counted
 *     too, and fails the request with an I/O error;
 *  2. it fills free slots with queued requests, oldest first: the header
 *     in the slot's descriptor, for a read or a write (not a write
 *     notification) @len bytes of the data area set aside (a write's
 *     data copied there), and posts a
 *     struct dm_user_ring_sqe naming both. A request whose data does not
 *     fit in what is free of the area waits, and so do the younger ones;
 *  3. if it posted nothing, and a slot and room for the oldest request's
 *     data are free, it waits up to wait_ms milliseconds (0: not at all;
 *     DM_USER_RING_WAIT_FOREVER: no limit) for a request, a signal, or
 *     the channel's failure, and posts what came. A full ring is not
 *     waited on: only the daemon's completions make room. With a
 *     busy-poll (DM_USER_ATTR_RING_BUSY_POLL) and a nonzero wait_ms, it
 *     first spins that long for a request before it sleeps.
 * It returns the number of requests posted. With DM_USER_RING_COMPLETE_ONLY
 * it does step 1 alone and returns 0. A slot and its data are the daemon's
 * from its posting until its completion is consumed; the daemon must not
 * post more than @depth completions beyond @cq_head. poll() reports POLLIN
 * when a request waits and the ring has room for it, never POLLOUT. A
 * READ's answer must fill its @len bytes: the area keeps whatever it last
 * held, another request's data included.
 *
 * The ioctl fails with ENOTBLK and ECONNRESET as read() does, EINVAL for
 * an argument above 32 bits or DM_USER_RING_COMPLETE_ONLY with a wait, a
 * channel without the ring, or a completion queue more than @depth entries
 * ahead (then nothing of it is consumed), and EINTR when a signal came
 * while it waited. Closing the channel gives
 * its slots' requests back as closing an RFC channel does; a mapping holds
 * the channel open, so that happens at the last of close() and munmap().
 * The mapping stays valid after the target is gone.
 */
struct dm_user_ring {
	__u32 depth;
	__u32 data_size;
	__u32 sq_offset;
	__u32 cq_offset;
	__u32 desc_offset;
	__u32 flags;
	__u64 data_offset;
	__u32 sq_tail;
	__u32 cq_head;
	__u32 reserved[6];
	/* The daemon's word, on a cache line of its own. */
	__u32 cq_tail;
	__u32 reserved2[15];
};

/* &dm_user_ring.flags */
#define DM_USER_RING_RESET		0x1
/*
 * A reload of the target's table under its name has taken effect since
 * this channel last asked for GET_INFO, which clears it: what POLLPRI
 * says on a channel without a ring. v7.
 */
#define DM_USER_RING_RELOADED		0x2

/**
 * struct dm_user_ring_sqe - one request on the submission queue
 * @slot: the slot whose descriptor holds the request's header.
 * @data: where the request's data is, in bytes from &dm_user_ring.data_offset,
 *	page aligned: a write's data, or the place for a read's answer.
 *	0 for a request without data.
 */
struct dm_user_ring_sqe {
	__u32 slot;
	__u32 data;
};

/**
 * struct dm_user_ring_cqe - one completion on the completion queue
 * @seq: the @seq of the request in the slot.
 * @slot: the slot, as posted on the submission queue.
 * @type: DM_USER_RESP_*.
 * @addr: with DM_USER_RING_CQE_ADDR, the address in the memory of the
 *	process that calls RING_ENTER of the read's @len bytes of data;
 *	they must stay as they are until that call returns. 0 otherwise.
 * @sector: with DM_USER_RESP_REMAP (in the place of @addr), where the
 *	request goes on the backing device, as &dm_user_message.sector.
 * @flags: DM_USER_RING_CQE_*, only on the DM_USER_RESP_SUCCESS of a
 *	read; 0 otherwise.
 * @reserved: zero.
 */
struct dm_user_ring_cqe {
	__u64 seq;
	__u32 slot;
	__u32 type;
	union {
		__u64 addr;
		__u64 sector;
	};
	__u32 flags;
	__u32 reserved;
};

/* &dm_user_ring_cqe.flags: the read's data is at @addr, not in the area. */
#define DM_USER_RING_CQE_ADDR		0x1

/*
 * The DM_USER_IOCTL_RING_ENTER argument: a wait in milliseconds below
 * DM_USER_RING_WAIT_FOREVER, which waits without a time limit, or
 * DM_USER_RING_COMPLETE_ONLY alone: consume the completions, post nothing
 * (for a daemon that stops and hands in its last answers).
 */
#define DM_USER_RING_WAIT_FOREVER	0x7fffffffU
#define DM_USER_RING_COMPLETE_ONLY	0x80000000U

/* Not taken in ioctl-number.rst (0xDD is zfcp's, 0xFD device-mapper's). */
#define DM_USER_IOC_MAGIC	0xde
#define DM_USER_IOCTL_CTL	_IOWR(DM_USER_IOC_MAGIC, 1, struct dm_user_ctl)
/* The argument is a time in milliseconds, not a pointer. */
#define DM_USER_IOCTL_RING_ENTER	_IO(DM_USER_IOC_MAGIC, 2)

#endif /* _UAPI_LINUX_DM_USER_H */
