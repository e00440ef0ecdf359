/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-user: the differences between the kernels it supports (6.1 to 6.12),
 * kept in one place.
 */
#ifndef DM_USER_COMPAT_H
#define DM_USER_COMPAT_H

#include <linux/blk_types.h>
#include <linux/blkdev.h>
#include <linux/cacheinfo.h>
#include <linux/mm.h>

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

/*
 * vm_area_struct.vm_flags is changed through vm_flags_mod() and its kind
 * from 6.3 on, which assert the mmap lock; the top-level Kbuild finds out
 * which kind it has.
 */
#ifdef DM_USER_HAVE_VM_FLAGS_SET
static inline void dm_user_compat_vm_flags_mod(struct vm_area_struct *vma,
					       vm_flags_t set, vm_flags_t clear)
{
	vm_flags_mod(vma, set, clear);
}
#else
static inline void dm_user_compat_vm_flags_mod(struct vm_area_struct *vma,
					       vm_flags_t set, vm_flags_t clear)
{
	vma->vm_flags = (vma->vm_flags | set) & ~clear;
}
#endif

/*
 * Whether the data cache may hold one page under two addresses, so that
 * the kernel's view of memory it shares with a process and the process's
 * view can disagree; the ring is not offered there. Asked of the kernel
 * from 6.9 on; before, the architectures known not to alias say no.
 */
#ifdef DM_USER_HAVE_DCACHE_IS_ALIASING
static inline bool dm_user_compat_dcache_aliasing(void)
{
	return cpu_dcache_is_aliasing();
}
#else
static inline bool dm_user_compat_dcache_aliasing(void)
{
	return !(IS_ENABLED(CONFIG_X86) || IS_ENABLED(CONFIG_ARM64) ||
		 IS_ENABLED(CONFIG_S390) || IS_ENABLED(CONFIG_PPC64) ||
		 IS_ENABLED(CONFIG_RISCV) || IS_ENABLED(CONFIG_LOONGARCH));
}
#endif

#endif /* DM_USER_COMPAT_H */
