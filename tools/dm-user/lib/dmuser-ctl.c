// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libdmuser: typed wrappers for the DM_USER_IOCTL_CTL commands.
 *
 * Each request carries the interface version that introduced its command,
 * from the table below, never the version this library was built with: a
 * newer library then works with an older module for every command the
 * module has. A command missing from the table is refused here, not sent
 * with a guessed version.
 */
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>

#include "dmuser.h"

static const struct {
	uint16_t command;
	uint16_t version;
} dmu_cmd_versions[] = {
	{ DM_USER_CMD_GET_INFO, 1 },
	{ DM_USER_CMD_GET_PARAMS, 1 },
	{ DM_USER_CMD_SET_PARAMS, 1 },
	{ DM_USER_CMD_RESET_COUNTERS, 1 },
	{ DM_USER_CMD_NEGOTIATE, 1 },
	{ DM_USER_CMD_CLAIM, 5 },
	{ DM_USER_CMD_RELEASE, 5 },
	{ DM_USER_CMD_MAP, 9 },
	{ DM_USER_CMD_UNMAP, 9 },
};

static __thread struct dmu_ctl_error dmu_last_error;

const struct dmu_ctl_error *dmu_ctl_last_error(void)
{
	return &dmu_last_error;
}

int dmu_cmd_version(uint16_t command)
{
	size_t i;

	for (i = 0; i < sizeof(dmu_cmd_versions) / sizeof(dmu_cmd_versions[0]);
	     i++)
		if (dmu_cmd_versions[i].command == command)
			return dmu_cmd_versions[i].version;
	return -ENOSYS;
}

#define DMU_CTL_BUF	4096

/* A request or reply buffer; u64 members keep the attributes aligned. */
union dmu_ctl_buf {
	struct dm_user_ctl hdr;
	uint64_t align[DMU_CTL_BUF / 8];
	uint8_t raw[DMU_CTL_BUF];
};

static void dmu_ctl_init(union dmu_ctl_buf *b, uint16_t command)
{
	memset(b, 0, sizeof(*b));
	b->hdr.size = sizeof(*b);
	b->hdr.command = command;
}

static void dmu_ctl_add(union dmu_ctl_buf *b, uint16_t tag, uint8_t type,
			const void *val, uint32_t len)
{
	struct dm_user_attr *a = (void *)(b->hdr.data + b->hdr.in_len);

	a->tag = tag;
	a->type = type;
	/* Mandatory unless dmu_ctl_add_optional() says otherwise. */
	a->flags = DM_USER_ATTR_F_MANDATORY;
	a->len = len;
	memcpy(a->value, val, len);
	b->hdr.in_len += sizeof(*a) + DM_USER_ATTR_ALIGN(len);
}

/* An attribute an older kernel may ignore: it then lists it as unknown. */
static void dmu_ctl_add_optional(union dmu_ctl_buf *b, uint16_t tag,
				 uint8_t type, const void *val, uint32_t len)
{
	struct dm_user_attr *a = (void *)(b->hdr.data + b->hdr.in_len);

	dmu_ctl_add(b, tag, type, val, len);
	a->flags = 0;
}

static const struct dm_user_attr *dmu_ctl_next(const union dmu_ctl_buf *b,
					       uint32_t *off)
{
	const struct dm_user_attr *a;
	uint32_t limit = b->hdr.out_len;

	if (limit > DMU_CTL_BUF - sizeof(b->hdr))
		limit = DMU_CTL_BUF - sizeof(b->hdr);
	if (*off + sizeof(*a) > limit)
		return NULL;
	a = (const void *)(b->hdr.data + *off);
	if (a->len > limit - *off - sizeof(*a))
		return NULL;
	*off += sizeof(*a) + DM_USER_ATTR_ALIGN(a->len);
	return a;
}

/* Sends @b as @command with its version; records why it was refused. */
static int dmu_ctl_call(int fd, union dmu_ctl_buf *b)
{
	int version = dmu_cmd_version(b->hdr.command);
	const struct dm_user_attr *a;
	uint32_t off = 0;
	int r;

	memset(&dmu_last_error, 0, sizeof(dmu_last_error));
	if (version < 0) {
		dmu_last_error.error = ENOSYS;
		dmu_last_error.command = b->hdr.command;
		snprintf(dmu_last_error.reason, sizeof(dmu_last_error.reason),
			 "command %u unknown to this library", b->hdr.command);
		return version;
	}
	b->hdr.version = (uint16_t)version;
	r = ioctl(fd, DM_USER_IOCTL_CTL, b) ? -errno : 0;
	dmu_last_error.kernel_version = b->hdr.version;
	if (!r)
		return 0;
	dmu_last_error.error = -r;
	dmu_last_error.tag = b->hdr.error_tag;
	dmu_last_error.command = b->hdr.error_command;
	while ((a = dmu_ctl_next(b, &off)))
		if (a->tag == DM_USER_ATTR_ERROR_REASON &&
		    a->type == DM_USER_TYPE_STRING && a->len)
			snprintf(dmu_last_error.reason,
				 sizeof(dmu_last_error.reason), "%.*s",
				 (int)a->len - 1, (const char *)a->value);
	return r;
}

static uint64_t dmu_attr_num(const struct dm_user_attr *a)
{
	uint64_t v64 = 0;
	uint32_t v32 = 0;

	if (a->type == DM_USER_TYPE_U32 && a->len == 4) {
		memcpy(&v32, a->value, 4);
		return v32;
	}
	if (a->type == DM_USER_TYPE_U64 && a->len == 8)
		memcpy(&v64, a->value, 8);
	return v64;
}

/* Every field of struct dmu_info that the kernel reports, into @info. */
static int dmu_get_info_all(int fd, struct dmu_info *info)
{
	union dmu_ctl_buf b;
	const struct dm_user_attr *a;
	uint32_t off = 0;
	int r;

	dmu_ctl_init(&b, DM_USER_CMD_GET_INFO);
	r = dmu_ctl_call(fd, &b);
	if (r)
		return r;
	memset(info, 0, sizeof(*info));
	while ((a = dmu_ctl_next(&b, &off))) {
		uint64_t v = dmu_attr_num(a);

		switch (a->tag) {
		case DM_USER_ATTR_VERSION:
			info->version = (uint32_t)v;
			break;
		case DM_USER_ATTR_FEATURES:
			info->features = v;
			break;
		case DM_USER_ATTR_NAME:
			if (a->type == DM_USER_TYPE_STRING && a->len)
				snprintf(info->name, sizeof(info->name), "%.*s",
					 (int)a->len - 1,
					 (const char *)a->value);
			break;
		case DM_USER_ATTR_SIZE:
			info->size = v;
			break;
		case DM_USER_ATTR_BLOCK_SIZE:
			info->block_size = (uint32_t)v;
			break;
		case DM_USER_ATTR_MAX_IO:
			info->max_io = (uint32_t)v;
			break;
		case DM_USER_ATTR_OPS:
			info->ops = v;
			break;
		case DM_USER_ATTR_CHANNELS:
			info->channels = (uint32_t)v;
			break;
		case DM_USER_ATTR_QUEUED:
			info->queued = (uint32_t)v;
			break;
		case DM_USER_ATTR_BACKLOG:
			info->backlog = (uint32_t)v;
			break;
		case DM_USER_ATTR_INFLIGHT:
			info->inflight = (uint32_t)v;
			break;
		case DM_USER_ATTR_DAEMON_STATE:
			info->daemon_state = (uint32_t)v;
			break;
		case DM_USER_ATTR_REQUEUED:
			info->requeued = v;
			break;
		case DM_USER_ATTR_TIMEOUTS:
			info->timeouts = v;
			break;
		case DM_USER_ATTR_BAD_ANSWERS:
			info->bad_answers = v;
			break;
		case DM_USER_ATTR_REMAPPED:
			info->remapped = v;
			break;
		case DM_USER_ATTR_BACKING:
			if (a->type == DM_USER_TYPE_STRING && a->len)
				snprintf(info->backing, sizeof(info->backing),
					 "%.*s", (int)a->len - 1,
					 (const char *)a->value);
			break;
		case DM_USER_ATTR_BACKING_OFFSET:
			info->backing_offset = v;
			break;
		case DM_USER_ATTR_CLAIM_RANGES:
			info->claim_ranges = (uint32_t)v;
			break;
		case DM_USER_ATTR_MAP_RANGES:
			info->map_ranges = (uint32_t)v;
			break;
		case DM_USER_ATTR_PASSED:
			info->passed = v;
			break;
		case DM_USER_ATTR_NOTIFIED:
			info->notified = v;
			break;
		case DM_USER_ATTR_RELOADS:
			info->reloads = v;
			break;
		default:
			/* The counters: three tags per operation, in order. */
			if (a->tag >= DM_USER_ATTR_READ_REQUESTS &&
			    a->tag <= DM_USER_ATTR_SECURE_ERASE_ERRORS) {
				unsigned int k = a->tag -
						 DM_USER_ATTR_READ_REQUESTS;
				struct dmu_op_stats *st = &info->stats[k / 3];

				if (k % 3 == 0)
					st->requests = v;
				else if (k % 3 == 1)
					st->bytes = v;
				else
					st->errors = v;
			}
			/* Tags of newer kernels are skipped. */
			break;
		}
	}
	return 0;
}

int dmu_get_info_size(int fd, struct dmu_info *info, size_t size)
{
	struct dmu_info all;
	int r = dmu_get_info_all(fd, &all);

	if (r)
		return r;
	/* A caller built with a newer header than this library: zeroes. */
	memset(info, 0, size);
	memcpy(info, &all, size < sizeof(all) ? size : sizeof(all));
	return 0;
}

/* The struct of libdmuser 1.5 and before ended with reloads. */
#undef dmu_get_info
int dmu_get_info(int fd, struct dmu_info *info)
{
	return dmu_get_info_size(fd, info, offsetof(struct dmu_info, reloads) +
				 sizeof(info->reloads));
}

int dmu_get_params(int fd, struct dmu_params *params)
{
	union dmu_ctl_buf b;
	const struct dm_user_attr *a;
	uint32_t off = 0;
	int r;

	dmu_ctl_init(&b, DM_USER_CMD_GET_PARAMS);
	r = dmu_ctl_call(fd, &b);
	if (r)
		return r;
	memset(params, 0, sizeof(*params));
	while ((a = dmu_ctl_next(&b, &off))) {
		uint32_t v = (uint32_t)dmu_attr_num(a);

		if (a->tag == DM_USER_ATTR_MAX_QUEUED)
			params->max_queued = v;
		else if (a->tag == DM_USER_ATTR_NO_DAEMON_TIMEOUT)
			params->no_daemon_timeout = v;
		else if (a->tag == DM_USER_ATTR_REQUEST_TIMEOUT)
			params->request_timeout = v;
		else if (a->tag == DM_USER_ATTR_NOTIFY_WRITES)
			params->notify_writes = v;
	}
	return 0;
}

int dmu_set_params(int fd, const struct dmu_params *params,
		   unsigned int which)
{
	union dmu_ctl_buf b;

	if (!which || (which & ~(DMU_PARAM_ALL | DMU_PARAM_NOTIFY_WRITES)))
		return -EINVAL;
	dmu_ctl_init(&b, DM_USER_CMD_SET_PARAMS);
	if (which & DMU_PARAM_MAX_QUEUED)
		dmu_ctl_add(&b, DM_USER_ATTR_MAX_QUEUED, DM_USER_TYPE_U32,
			    &params->max_queued, sizeof(params->max_queued));
	if (which & DMU_PARAM_NO_DAEMON_TIMEOUT)
		dmu_ctl_add(&b, DM_USER_ATTR_NO_DAEMON_TIMEOUT,
			    DM_USER_TYPE_U32, &params->no_daemon_timeout,
			    sizeof(params->no_daemon_timeout));
	if (which & DMU_PARAM_REQUEST_TIMEOUT)
		dmu_ctl_add(&b, DM_USER_ATTR_REQUEST_TIMEOUT, DM_USER_TYPE_U32,
			    &params->request_timeout,
			    sizeof(params->request_timeout));
	if (which & DMU_PARAM_NOTIFY_WRITES)
		dmu_ctl_add(&b, DM_USER_ATTR_NOTIFY_WRITES, DM_USER_TYPE_U32,
			    &params->notify_writes,
			    sizeof(params->notify_writes));
	return dmu_ctl_call(fd, &b);
}

/*
 * CLAIM, RELEASE, MAP (to @dest bytes) or UNMAP of [@offset, @offset +
 * @len) bytes for @ops; ops other than both are asked for with a mandatory
 * attribute, which a kernel before control interface version 8 refuses
 * (ENOPROTOOPT) rather than claim more than asked.
 */
static int dmu_claims(int fd, uint16_t command, uint64_t offset,
		      uint64_t len, uint64_t dest, unsigned int ops)
{
	uint64_t start = offset / 512, sectors = len / 512, to = dest / 512;
	const struct dm_user_attr *a;
	union dmu_ctl_buf b;
	uint32_t off = 0, ops32 = ops;
	uint16_t reply = command == DM_USER_CMD_MAP ||
			 command == DM_USER_CMD_UNMAP ?
			 DM_USER_ATTR_MAP_RANGES : DM_USER_ATTR_CLAIM_RANGES;
	int r;

	if (offset % 512 || len % 512 || dest % 512 || !ops ||
	    (ops & ~DM_USER_CLAIM_ALL))
		return -EINVAL;
	dmu_ctl_init(&b, command);
	dmu_ctl_add(&b, DM_USER_ATTR_RANGE_START, DM_USER_TYPE_U64, &start,
		    sizeof(start));
	dmu_ctl_add(&b, DM_USER_ATTR_RANGE_LEN, DM_USER_TYPE_U64, &sectors,
		    sizeof(sectors));
	if (ops != DM_USER_CLAIM_ALL)
		dmu_ctl_add(&b, DM_USER_ATTR_RANGE_OPS, DM_USER_TYPE_U32,
			    &ops32, sizeof(ops32));
	if (command == DM_USER_CMD_MAP)
		dmu_ctl_add(&b, DM_USER_ATTR_RANGE_DEST, DM_USER_TYPE_U64, &to,
			    sizeof(to));
	r = dmu_ctl_call(fd, &b);
	if (r)
		return r;
	while ((a = dmu_ctl_next(&b, &off)))
		if (a->tag == reply)
			return (int)dmu_attr_num(a);
	return -EPROTO;
}

int dmu_claim(int fd, uint64_t offset, uint64_t len)
{
	return dmu_claims(fd, DM_USER_CMD_CLAIM, offset, len, 0,
			  DM_USER_CLAIM_ALL);
}

int dmu_release(int fd, uint64_t offset, uint64_t len)
{
	return dmu_claims(fd, DM_USER_CMD_RELEASE, offset, len, 0,
			  DM_USER_CLAIM_ALL);
}

int dmu_claim_ops(int fd, uint64_t offset, uint64_t len, unsigned int ops)
{
	return dmu_claims(fd, DM_USER_CMD_CLAIM, offset, len, 0, ops);
}

int dmu_release_ops(int fd, uint64_t offset, uint64_t len, unsigned int ops)
{
	return dmu_claims(fd, DM_USER_CMD_RELEASE, offset, len, 0, ops);
}

int dmu_map(int fd, uint64_t offset, uint64_t len, uint64_t dest,
	    unsigned int ops)
{
	return dmu_claims(fd, DM_USER_CMD_MAP, offset, len, dest, ops);
}

int dmu_unmap(int fd, uint64_t offset, uint64_t len, unsigned int ops)
{
	return dmu_claims(fd, DM_USER_CMD_UNMAP, offset, len, 0, ops);
}

int dmu_reset_counters(int fd)
{
	union dmu_ctl_buf b;

	dmu_ctl_init(&b, DM_USER_CMD_RESET_COUNTERS);
	return dmu_ctl_call(fd, &b);
}

int dmu_negotiate_ring(int fd, uint64_t want, struct dmu_ring_params *ring,
		       uint64_t *granted)
{
	return dmu_negotiate_ring_busy_poll(fd, want, ring, NULL, granted);
}

int dmu_negotiate_ring_busy_poll(int fd, uint64_t want,
				 struct dmu_ring_params *ring,
				 uint32_t *busy_poll_us, uint64_t *granted)
{
	union dmu_ctl_buf b;
	const struct dm_user_attr *a;
	uint32_t off = 0, poll_got = 0;
	uint64_t got = 0;
	int r;

	dmu_ctl_init(&b, DM_USER_CMD_NEGOTIATE);
	dmu_ctl_add(&b, DM_USER_ATTR_EXTENSIONS, DM_USER_TYPE_U64, &want,
		    sizeof(want));
	/*
	 * The ring is granted only with a depth (0: the default). Optional:
	 * a kernel before the ring ignores them (and grants no ring), rather
	 * than refusing the whole negotiation.
	 */
	if (ring && (want & DM_USER_EXT_RING)) {
		dmu_ctl_add_optional(&b, DM_USER_ATTR_RING_DEPTH,
				     DM_USER_TYPE_U32, &ring->depth,
				     sizeof(ring->depth));
		dmu_ctl_add_optional(&b, DM_USER_ATTR_RING_DATA,
				     DM_USER_TYPE_U32, &ring->data,
				     sizeof(ring->data));
		if (busy_poll_us && *busy_poll_us)
			dmu_ctl_add_optional(&b, DM_USER_ATTR_RING_BUSY_POLL,
					     DM_USER_TYPE_U32, busy_poll_us,
					     sizeof(*busy_poll_us));
	}
	r = dmu_ctl_call(fd, &b);
	if (r)
		return r;
	if (ring)
		*ring = (struct dmu_ring_params){ 0 };
	while ((a = dmu_ctl_next(&b, &off))) {
		if (a->tag == DM_USER_ATTR_EXTENSIONS)
			got = dmu_attr_num(a);
		else if (a->tag == DM_USER_ATTR_RING_DEPTH && ring)
			ring->depth = (uint32_t)dmu_attr_num(a);
		else if (a->tag == DM_USER_ATTR_RING_DATA && ring)
			ring->data = (uint32_t)dmu_attr_num(a);
		else if (a->tag == DM_USER_ATTR_RING_SIZE && ring)
			ring->size = dmu_attr_num(a);
		else if (a->tag == DM_USER_ATTR_RING_BUSY_POLL && ring)
			poll_got = (uint32_t)dmu_attr_num(a);
	}
	if (busy_poll_us)
		*busy_poll_us = poll_got;
	if (granted)
		*granted = got;
	return 0;
}

int dmu_negotiate(int fd, uint64_t want, uint64_t *granted)
{
	return dmu_negotiate_ring(fd, want & ~DM_USER_EXT_RING, NULL, granted);
}
