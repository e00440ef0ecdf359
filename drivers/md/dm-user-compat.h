/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-user: the differences between the kernels it supports (6.1 to 6.12),
 * kept in one place.
 */
#ifndef DM_USER_COMPAT_H
#define DM_USER_COMPAT_H

#include <linux/blk_types.h>
#include <linux/blkdev.h>

/*
 * REQ_CGROUP_PUNT moved into btrfs in 6.4; report it where it exists. It is
 * a macro, so its presence is tested directly rather than the version.
 */
#ifdef REQ_CGROUP_PUNT
#define DM_USER_COMPAT_REQ_CGROUP_PUNT	REQ_CGROUP_PUNT
#else
#define DM_USER_COMPAT_REQ_CGROUP_PUNT	((__force blk_opf_t)0)
#endif

/*
 * device_type.devnode() takes a const device from 6.2 on; the top-level
 * Kbuild finds out from the headers which kind it builds against.
 */
#ifdef DM_USER_HAVE_CONST_DEVNODE
#define DM_USER_COMPAT_DEVNODE_CONST	const
#else
#define DM_USER_COMPAT_DEVNODE_CONST
#endif

/*
 * Polled I/O: dm core gives a bio-based device the support when no target
 * reports an underlying device that cannot poll, and this target reports
 * none. From 6.11 the support is a queue limit feature (BLK_FEAT_POLL, a
 * macro, so its presence is tested directly, as REQ_CGROUP_PUNT's is),
 * which io_hints can take away before the limits are stacked; before, it
 * is a queue flag dm core sets after the limits, which the target clears
 * at resume, while the device is still suspended.
 */
#ifdef BLK_FEAT_POLL
static inline void dm_user_compat_no_poll_hint(struct queue_limits *limits)
{
	limits->features &= ~BLK_FEAT_POLL;
}

static inline void dm_user_compat_no_poll_resume(struct request_queue *q)
{
}
#else
static inline void dm_user_compat_no_poll_hint(struct queue_limits *limits)
{
}

static inline void dm_user_compat_no_poll_resume(struct request_queue *q)
{
	blk_queue_flag_clear(QUEUE_FLAG_POLL, q);
}
#endif

#endif /* DM_USER_COMPAT_H */
