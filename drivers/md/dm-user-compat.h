/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-user: the differences between the kernels it supports (6.1 to 6.12),
 * kept in one place.
 */
#ifndef DM_USER_COMPAT_H
#define DM_USER_COMPAT_H

#include <linux/blk_types.h>

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

#endif /* DM_USER_COMPAT_H */
