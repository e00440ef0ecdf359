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
 * write() never spans two messages. Answers may come in any order.
 *
 * The layout and the constant values are those of the 2020 dm-user RFC, so
 * daemons written for it work unchanged. See
 * Documentation/admin-guide/device-mapper/dm-user.rst.
 */
#ifndef _UAPI_LINUX_DM_USER_H
#define _UAPI_LINUX_DM_USER_H

#include <linux/types.h>

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

/* Response codes, in &dm_user_message.type of an answer. */
#define DM_USER_RESP_SUCCESS		0
#define DM_USER_RESP_ERROR		1
#define DM_USER_RESP_UNSUPPORTED	2

/**
 * struct dm_user_message - header of every request and every answer
 * @seq: identifies the request. Chosen by the kernel, unique among the
 *	requests of one target that are not yet answered; an answer carries
 *	the @seq of the request it answers.
 * @type: in a request, one of DM_USER_REQ_MAP_*; in an answer, one of
 *	DM_USER_RESP_*.
 * @flags: in a request, the DM_USER_REQ_MAP_FLAG_* bits of the block
 *	request (FUA, PREFLUSH, ...); ignored in an answer.
 * @sector: first 512-byte sector of the request, counted from the start of
 *	the target (not of the mapped device); ignored in an answer.
 * @len: length of the request in bytes. A write request is followed by
 *	@len bytes of data. A successful answer to a read is followed by
 *	@len bytes of data, and its @len must equal the request's. Any other
 *	answer carries no data; its @len must be the request's @len or 0.
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

#endif /* _UAPI_LINUX_DM_USER_H */
