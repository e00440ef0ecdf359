// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user: the control commands, and their two front ends.
 *
 * Each command has one handler. The handlers read parsed attributes and
 * emit attributes through struct dm_user_ctl_out, which either encodes them
 * as a binary tag list (the DM_USER_IOCTL_CTL ioctl on a channel) or as
 * "key=value" text (dmsetup message). The wire layout and its rules are
 * described in include/uapi/linux/dm-user.h.
 *
 * Locks: the handlers take the target lock (dm-user-target.c) to read or
 * change what it protects; NEGOTIATE takes the channel's read_lock so that an
 * extension never changes in the middle of a read().
 */

#include <linux/capability.h>
#include <linux/device-mapper.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "dm-user.h"
#include "dm-user-compat.h"

#define DM_USER_CTL_HDR		sizeof(struct dm_user_ctl)
#define DM_USER_ATTR_HDR	sizeof(struct dm_user_attr)

/* Extensions this kernel can grant. */
#define DM_USER_EXT_SUPPORTED	\
	(DM_USER_EXT_READ_BATCH | DM_USER_EXT_WRITE_BATCH | DM_USER_EXT_RING | \
	 DM_USER_EXT_REMAP)

/* ------------------------------------------------------------------------
 * Tags the kernel knows
 */

struct dm_user_tag_desc {
	u16 tag;
	u8 type;
	/* A bit mask: shown as hex in text, and taken as 0x... too. */
	bool hex;
	const char *name;	/* key in dmsetup message text */
	/* U32 timeout: DM_USER_TIMEOUT_FOREVER is "forever" in text. */
	bool forever;
	/* Text words for small enumerated values, NULL where there is none. */
	const char *const *words;
	unsigned int nr_words;
};

static const struct dm_user_tag_desc dm_user_tags[] = {
	{ DM_USER_ATTR_UNKNOWN_TAG, DM_USER_TYPE_U32, false, "unknown_tag" },
	{ DM_USER_ATTR_ERROR_REASON, DM_USER_TYPE_STRING, false, "error" },
	{ DM_USER_ATTR_VERSION, DM_USER_TYPE_U32, false, "version" },
	{ DM_USER_ATTR_FEATURES, DM_USER_TYPE_U64, true, "features" },
	{ DM_USER_ATTR_NAME, DM_USER_TYPE_STRING, false, "name" },
	{ DM_USER_ATTR_SIZE, DM_USER_TYPE_U64, false, "size" },
	{ DM_USER_ATTR_BLOCK_SIZE, DM_USER_TYPE_U32, false, "block_size" },
	{ DM_USER_ATTR_MAX_IO, DM_USER_TYPE_U32, false, "max_io" },
	{ DM_USER_ATTR_OPS, DM_USER_TYPE_U64, true, "ops" },
	{ DM_USER_ATTR_CHANNELS, DM_USER_TYPE_U32, false, "channels" },
	{ DM_USER_ATTR_QUEUED, DM_USER_TYPE_U32, false, "queued" },
	{ DM_USER_ATTR_BACKLOG, DM_USER_TYPE_U32, false, "backlog" },
	{ DM_USER_ATTR_INFLIGHT, DM_USER_TYPE_U32, false, "inflight" },
	{ DM_USER_ATTR_DAEMON_STATE, DM_USER_TYPE_U32, false, "daemon_state",
	  false, dm_user_daemon_state_names, DM_USER_NR_DAEMON_STATES },
	{ DM_USER_ATTR_REQUEUED, DM_USER_TYPE_U64, false, "requeued" },
	{ DM_USER_ATTR_TIMEOUTS, DM_USER_TYPE_U64, false, "timeouts" },
	{ DM_USER_ATTR_BAD_ANSWERS, DM_USER_TYPE_U64, false, "bad_answers" },
	{ DM_USER_ATTR_REMAPPED, DM_USER_TYPE_U64, false, "remapped" },
	{ DM_USER_ATTR_BACKING, DM_USER_TYPE_STRING, false, "backing" },
	{ DM_USER_ATTR_BACKING_OFFSET, DM_USER_TYPE_U64, false,
	  "backing_offset" },
	{ DM_USER_ATTR_CLAIM_RANGES, DM_USER_TYPE_U32, false, "claim_ranges" },
	{ DM_USER_ATTR_MAP_RANGES, DM_USER_TYPE_U32, false, "map_ranges" },
	{ DM_USER_ATTR_PASSED, DM_USER_TYPE_U64, false, "passed" },
	{ DM_USER_ATTR_READ_REQUESTS, DM_USER_TYPE_U64, false, "read_requests" },
	{ DM_USER_ATTR_READ_BYTES, DM_USER_TYPE_U64, false, "read_bytes" },
	{ DM_USER_ATTR_READ_ERRORS, DM_USER_TYPE_U64, false, "read_errors" },
	{ DM_USER_ATTR_WRITE_REQUESTS, DM_USER_TYPE_U64, false, "write_requests" },
	{ DM_USER_ATTR_WRITE_BYTES, DM_USER_TYPE_U64, false, "write_bytes" },
	{ DM_USER_ATTR_WRITE_ERRORS, DM_USER_TYPE_U64, false, "write_errors" },
	{ DM_USER_ATTR_FLUSH_REQUESTS, DM_USER_TYPE_U64, false, "flush_requests" },
	{ DM_USER_ATTR_FLUSH_BYTES, DM_USER_TYPE_U64, false, "flush_bytes" },
	{ DM_USER_ATTR_FLUSH_ERRORS, DM_USER_TYPE_U64, false, "flush_errors" },
	{ DM_USER_ATTR_DISCARD_REQUESTS, DM_USER_TYPE_U64, false, "discard_requests" },
	{ DM_USER_ATTR_DISCARD_BYTES, DM_USER_TYPE_U64, false, "discard_bytes" },
	{ DM_USER_ATTR_DISCARD_ERRORS, DM_USER_TYPE_U64, false, "discard_errors" },
	{ DM_USER_ATTR_WRITE_ZEROES_REQUESTS, DM_USER_TYPE_U64, false,
	  "write_zeroes_requests" },
	{ DM_USER_ATTR_WRITE_ZEROES_BYTES, DM_USER_TYPE_U64, false,
	  "write_zeroes_bytes" },
	{ DM_USER_ATTR_WRITE_ZEROES_ERRORS, DM_USER_TYPE_U64, false,
	  "write_zeroes_errors" },
	{ DM_USER_ATTR_SECURE_ERASE_REQUESTS, DM_USER_TYPE_U64, false,
	  "secure_erase_requests" },
	{ DM_USER_ATTR_SECURE_ERASE_BYTES, DM_USER_TYPE_U64, false,
	  "secure_erase_bytes" },
	{ DM_USER_ATTR_SECURE_ERASE_ERRORS, DM_USER_TYPE_U64, false,
	  "secure_erase_errors" },
	{ DM_USER_ATTR_MAX_QUEUED, DM_USER_TYPE_U32, false, "max_queued" },
	{ DM_USER_ATTR_NO_DAEMON_TIMEOUT, DM_USER_TYPE_U32, false,
	  "no_daemon_timeout", true },
	{ DM_USER_ATTR_REQUEST_TIMEOUT, DM_USER_TYPE_U32, false,
	  "request_timeout" },
	{ DM_USER_ATTR_NOTIFY_WRITES, DM_USER_TYPE_U32, false,
	  "notify_writes" },
	{ DM_USER_ATTR_EXTENSIONS, DM_USER_TYPE_U64, true, "extensions" },
	{ DM_USER_ATTR_RING_DEPTH, DM_USER_TYPE_U32, false, "ring_depth" },
	{ DM_USER_ATTR_RING_SIZE, DM_USER_TYPE_U64, false, "ring_size" },
	{ DM_USER_ATTR_RING_DATA, DM_USER_TYPE_U32, false, "ring_data" },
	{ DM_USER_ATTR_RING_BUSY_POLL, DM_USER_TYPE_U32, false,
	  "ring_busy_poll" },
	{ DM_USER_ATTR_RANGE_START, DM_USER_TYPE_U64, false, "range_start" },
	{ DM_USER_ATTR_RANGE_LEN, DM_USER_TYPE_U64, false, "range_len" },
	{ DM_USER_ATTR_RANGE_OPS, DM_USER_TYPE_U32, true, "range_ops" },
	{ DM_USER_ATTR_RANGE_DEST, DM_USER_TYPE_U64, false, "range_dest" },
	{ DM_USER_ATTR_NOTIFIED, DM_USER_TYPE_U64, false, "notified" },
	{ DM_USER_ATTR_RELOADS, DM_USER_TYPE_U64, false, "reloads" },
};

#define DM_USER_NR_TAGS ARRAY_SIZE(dm_user_tags)

static int dm_user_tag_index(u16 tag)
{
	unsigned int i;

	for (i = 0; i < DM_USER_NR_TAGS; i++)
		if (dm_user_tags[i].tag == tag)
			return i;
	return -1;
}

/* ------------------------------------------------------------------------
 * Parsed requests and the output emitter
 */

struct dm_user_ctl_in {
	DECLARE_BITMAP(present, DM_USER_NR_TAGS);
	u64 val[DM_USER_NR_TAGS];
	u16 unknown[DM_USER_CTL_MAX_ATTRS];
	unsigned int nr_unknown;
};

struct dm_user_ctl_out {
	/* Binary: attributes go to buf, up to cap; len counts them all. */
	u8 *buf;
	size_t cap;
	size_t len;
	/* Text: "key=value" words go to result, as DMEMIT does. */
	bool text;
	char *result;
	unsigned int maxlen;
	unsigned int sz;
	/* Refusal details for the reply. */
	u16 error_tag;
	const char *reason;
};

static bool dm_user_in_has(const struct dm_user_ctl_in *in, u16 tag)
{
	int i = dm_user_tag_index(tag);

	return i >= 0 && test_bit(i, in->present);
}

static u64 dm_user_in_val(const struct dm_user_ctl_in *in, u16 tag)
{
	return in->val[dm_user_tag_index(tag)];
}

static int dm_user_refuse(struct dm_user_ctl_out *out, int err, u16 tag,
			  const char *reason)
{
	out->error_tag = tag;
	out->reason = reason;
	return err;
}

static void dm_user_put(struct dm_user_ctl_out *out, u16 tag, u8 type,
			const void *value, u32 len, u64 num)
{
	struct dm_user_attr *a;
	size_t need = DM_USER_ATTR_HDR + DM_USER_ATTR_ALIGN(len);

	if (out->text) {
		const struct dm_user_tag_desc *d;
		char *result = out->result;
		unsigned int maxlen = out->maxlen;
		unsigned int sz = out->sz;
		int i = dm_user_tag_index(tag);

		if (i < 0)
			return;
		d = &dm_user_tags[i];
		if (sz)
			DMEMIT(" ");
		if (type == DM_USER_TYPE_STRING)
			DMEMIT("%s=%s", d->name, (const char *)value);
		else if (d->hex)
			DMEMIT("%s=0x%llx", d->name, num);
		else if (d->forever && num == DM_USER_TIMEOUT_FOREVER)
			DMEMIT("%s=forever", d->name);
		else if (num < d->nr_words && d->words[num])
			DMEMIT("%s=%s", d->name, d->words[num]);
		else
			DMEMIT("%s=%llu", d->name, num);
		out->sz = sz;
		return;
	}

	if (out->len + need <= out->cap) {
		a = (struct dm_user_attr *)(out->buf + out->len);
		a->tag = tag;
		a->type = type;
		a->flags = 0;
		a->len = len;
		memcpy(a->value, value, len);
		/* Padding is zeroed so no kernel byte leaks to userspace. */
		memset(a->value + len, 0, DM_USER_ATTR_ALIGN(len) - len);
	}
	out->len += need;
}

static void dm_user_put_u32(struct dm_user_ctl_out *out, u16 tag, u32 v)
{
	dm_user_put(out, tag, DM_USER_TYPE_U32, &v, sizeof(v), v);
}

static void dm_user_put_u64(struct dm_user_ctl_out *out, u16 tag, u64 v)
{
	dm_user_put(out, tag, DM_USER_TYPE_U64, &v, sizeof(v), v);
}

static void dm_user_put_str(struct dm_user_ctl_out *out, u16 tag,
			    const char *s)
{
	dm_user_put(out, tag, DM_USER_TYPE_STRING, s, strlen(s) + 1, 0);
}

/* ------------------------------------------------------------------------
 * The commands
 */

struct dm_user_cmd {
	u16 command;
	u16 version;		/* interface version that introduced it */
	const char *name;	/* dmsetup message word */
	bool admin;		/* changes settings: owner or CAP_SYS_ADMIN */
	bool per_channel;	/* only meaningful on a channel (ioctl) */
	/*
	 * Changes something, and emits at most this many bytes of
	 * attributes: the reply's room is checked before it runs, so that
	 * ENOSPC never comes after a change was made.
	 */
	bool changes;
	u16 reply_max;
	const u16 *inputs;	/* tags it takes, 0-terminated */
	int (*fn)(struct dm_user_target *t, struct dm_user_channel *ch,
		  const struct dm_user_ctl_in *in,
		  struct dm_user_ctl_out *out);
};

static int dm_user_cmd_get_info(struct dm_user_target *t,
				struct dm_user_channel *ch,
				const struct dm_user_ctl_in *in,
				struct dm_user_ctl_out *out)
{
	struct dm_user_snapshot snap;
	unsigned int i;

	dm_user_snapshot(t, ch, &snap);
	dm_user_put_u32(out, DM_USER_ATTR_VERSION, DM_USER_CTL_VERSION);
	dm_user_put_u64(out, DM_USER_ATTR_FEATURES,
			DM_USER_FEATURE_CTL | DM_USER_FEATURE_NEGOTIATE);
	dm_user_put_str(out, DM_USER_ATTR_NAME, t->name);
	dm_user_put_u64(out, DM_USER_ATTR_SIZE, snap.size);
	dm_user_put_u32(out, DM_USER_ATTR_BLOCK_SIZE, t->block_size);
	dm_user_put_u32(out, DM_USER_ATTR_MAX_IO,
			DM_USER_MAX_IO_SECTORS << SECTOR_SHIFT);
	dm_user_put_u64(out, DM_USER_ATTR_OPS, snap.ops);
	dm_user_put_u32(out, DM_USER_ATTR_CHANNELS, snap.channels);
	dm_user_put_u32(out, DM_USER_ATTR_QUEUED, snap.queued);
	dm_user_put_u32(out, DM_USER_ATTR_BACKLOG, snap.backlog);
	dm_user_put_u32(out, DM_USER_ATTR_INFLIGHT, snap.inflight);
	dm_user_put_u32(out, DM_USER_ATTR_DAEMON_STATE, snap.state);
	dm_user_put_u64(out, DM_USER_ATTR_REQUEUED, snap.requeued);
	dm_user_put_u64(out, DM_USER_ATTR_TIMEOUTS, snap.timeouts);
	dm_user_put_u64(out, DM_USER_ATTR_BAD_ANSWERS, snap.bad_answers);
	dm_user_put_u64(out, DM_USER_ATTR_REMAPPED, snap.remapped);
	dm_user_put_u64(out, DM_USER_ATTR_RELOADS, snap.reloads);
	if (snap.backing_name[0]) {
		dm_user_put_str(out, DM_USER_ATTR_BACKING, snap.backing_name);
		dm_user_put_u64(out, DM_USER_ATTR_BACKING_OFFSET,
				snap.backing_start);
		dm_user_put_u32(out, DM_USER_ATTR_CLAIM_RANGES,
				snap.claim_ranges);
		dm_user_put_u32(out, DM_USER_ATTR_MAP_RANGES, snap.map_ranges);
		dm_user_put_u64(out, DM_USER_ATTR_PASSED, snap.passed);
		dm_user_put_u64(out, DM_USER_ATTR_NOTIFIED, snap.notified);
	}
	/* The counter tags run requests, bytes, errors per op, in op order. */
	BUILD_BUG_ON(DM_USER_ATTR_SECURE_ERASE_ERRORS !=
		     DM_USER_ATTR_READ_REQUESTS + 3 * DM_USER_NR_OPS - 1);
	for (i = 0; i < DM_USER_NR_OPS; i++) {
		u16 tag = DM_USER_ATTR_READ_REQUESTS + 3 * i;

		dm_user_put_u64(out, tag, snap.stats[i].requests);
		dm_user_put_u64(out, tag + 1, snap.stats[i].bytes);
		dm_user_put_u64(out, tag + 2, snap.stats[i].errors);
	}
	return 0;
}

static int dm_user_cmd_get_params(struct dm_user_target *t,
				  struct dm_user_channel *ch,
				  const struct dm_user_ctl_in *in,
				  struct dm_user_ctl_out *out)
{
	dm_user_put_u32(out, DM_USER_ATTR_MAX_QUEUED, READ_ONCE(t->max_queued));
	dm_user_put_u32(out, DM_USER_ATTR_NO_DAEMON_TIMEOUT,
			READ_ONCE(t->no_daemon_timeout));
	dm_user_put_u32(out, DM_USER_ATTR_REQUEST_TIMEOUT,
			READ_ONCE(t->request_timeout));
	if (dm_user_has_backing(t)) {
		bool notify;

		dm_user_claim_ranges(t, &notify);
		dm_user_put_u32(out, DM_USER_ATTR_NOTIFY_WRITES, notify);
	}
	return 0;
}

static int dm_user_cmd_set_params(struct dm_user_target *t,
				  struct dm_user_channel *ch,
				  const struct dm_user_ctl_in *in,
				  struct dm_user_ctl_out *out)
{
	bool has_max = dm_user_in_has(in, DM_USER_ATTR_MAX_QUEUED);
	bool has_nd = dm_user_in_has(in, DM_USER_ATTR_NO_DAEMON_TIMEOUT);
	bool has_rt = dm_user_in_has(in, DM_USER_ATTR_REQUEST_TIMEOUT);
	bool has_nw = dm_user_in_has(in, DM_USER_ATTR_NOTIFY_WRITES);
	u64 max_queued = 0, nd = 0, rt = 0, nw = 0;
	unsigned long irq_flags;
	unsigned int nr;
	int r = 0;
	LIST_HEAD(done);

	/* Validate everything first: a refusal changes nothing. */
	if (has_max) {
		max_queued = dm_user_in_val(in, DM_USER_ATTR_MAX_QUEUED);
		if (!max_queued || max_queued > DM_USER_MAX_MAX_QUEUED)
			return dm_user_refuse(out, -ERANGE,
					      DM_USER_ATTR_MAX_QUEUED,
					      "max_queued must be 1 to 1048576");
	}
	if (has_nd) {
		nd = dm_user_in_val(in, DM_USER_ATTR_NO_DAEMON_TIMEOUT);
		if (nd > DM_USER_MAX_TIMEOUT && nd != DM_USER_TIMEOUT_FOREVER)
			return dm_user_refuse(out, -ERANGE,
					      DM_USER_ATTR_NO_DAEMON_TIMEOUT,
					      "no_daemon_timeout must be 0 to 1000000 s or forever");
	}
	if (has_rt) {
		rt = dm_user_in_val(in, DM_USER_ATTR_REQUEST_TIMEOUT);
		if (rt > DM_USER_MAX_TIMEOUT)
			return dm_user_refuse(out, -ERANGE,
					      DM_USER_ATTR_REQUEST_TIMEOUT,
					      "request_timeout must be 0 to 1000000 s");
	}
	if (has_nw) {
		nw = dm_user_in_val(in, DM_USER_ATTR_NOTIFY_WRITES);
		if (nw > 1)
			return dm_user_refuse(out, -ERANGE,
					      DM_USER_ATTR_NOTIFY_WRITES,
					      "notify_writes must be 0 or 1");
	}
	if (!has_max && !has_nd && !has_rt && !has_nw)
		return dm_user_refuse(out, -EINVAL, 0, "no parameter to set");
	/*
	 * Growing the hash does nothing a later failure must undo. A hash
	 * not made yet is made by the first read() for the cap then.
	 */
	if (has_max && READ_ONCE(t->answer_hash) &&
	    dm_user_grow_hash(t, max_queued))
		return dm_user_refuse(out, -ENOMEM, DM_USER_ATTR_MAX_QUEUED,
				      "cannot grow the answer hash");
	/*
	 * The last step that can fail with nothing changed; once it has
	 * published the change, only its wait can be cut short (EINTR).
	 * Without a backing device every write is the daemon's: there is
	 * nothing to notify, and nothing to turn off.
	 */
	if (has_nw) {
		r = dm_user_change_claims(t, nw ? DM_USER_NOTIFY_ON :
					  DM_USER_NOTIFY_OFF, 0, 0, 0, 0, &nr);
		if (r == -EOPNOTSUPP && nw)
			return dm_user_refuse(out, r,
					      DM_USER_ATTR_NOTIFY_WRITES,
					      "notify_writes needs a backing device");
		if (r == -EOPNOTSUPP)
			r = 0;
		if (r == -ENOMEM)
			return dm_user_refuse(out, r,
					      DM_USER_ATTR_NOTIFY_WRITES,
					      "cannot allocate the claimed ranges");
		if (r == -ERESTARTSYS)
			return r;
	}

	spin_lock_irqsave(&t->lock, irq_flags);
	if (has_max)
		dm_user_set_max_queued_locked(t, max_queued);
	if (has_nd)
		dm_user_set_no_daemon_timeout_locked(t, nd, &done);
	if (has_rt)
		dm_user_set_request_timeout_locked(t, rt);
	spin_unlock_irqrestore(&t->lock, irq_flags);

	dm_user_complete_list(t, &done);
	if (r)
		return dm_user_refuse(out, r, DM_USER_ATTR_NOTIFY_WRITES,
				      "killed while waiting for I/O to the backing device");
	return 0;
}

static int dm_user_cmd_reset_counters(struct dm_user_target *t,
				      struct dm_user_channel *ch,
				      const struct dm_user_ctl_in *in,
				      struct dm_user_ctl_out *out)
{
	unsigned long irq_flags;

	spin_lock_irqsave(&t->lock, irq_flags);
	memset(t->stats, 0, sizeof(t->stats));
	spin_unlock_irqrestore(&t->lock, irq_flags);
	return 0;
}

static int dm_user_cmd_negotiate(struct dm_user_target *t,
				 struct dm_user_channel *ch,
				 const struct dm_user_ctl_in *in,
				 struct dm_user_ctl_out *out)
{
	struct dm_user_ring_state *ring = NULL;
	u64 granted, depth = DM_USER_RING_DEFAULT_DEPTH;
	u64 data = DM_USER_RING_DEFAULT_DATA;
	u32 busy_poll = dm_user_in_val(in, DM_USER_ATTR_RING_BUSY_POLL);
	const char *busy = NULL;

	if (!ch)
		return dm_user_refuse(out, -EINVAL, 0,
				      "negotiate is per channel: use the ioctl");
	if (!dm_user_in_has(in, DM_USER_ATTR_EXTENSIONS))
		return dm_user_refuse(out, -EINVAL, DM_USER_ATTR_EXTENSIONS,
				      "extensions attribute required");
	granted = dm_user_in_val(in, DM_USER_ATTR_EXTENSIONS) &
		  DM_USER_EXT_SUPPORTED;
	/* Nowhere to remap to. */
	if (!dm_user_has_backing(t))
		granted &= ~DM_USER_EXT_REMAP;
	/*
	 * The ring changes how the channel is used, not only how messages
	 * are framed: only a daemon that says how deep (0 for the default)
	 * shows it knows, not one that sets every bit. Not offered where
	 * the kernel's and the daemon's views of it could disagree.
	 */
	if (!dm_user_in_has(in, DM_USER_ATTR_RING_DEPTH) ||
	    dm_user_compat_dcache_aliasing())
		granted &= ~DM_USER_EXT_RING;
	else if (dm_user_in_val(in, DM_USER_ATTR_RING_DEPTH))
		depth = dm_user_in_val(in, DM_USER_ATTR_RING_DEPTH);
	if ((granted & DM_USER_EXT_RING) &&
	    (depth > DM_USER_RING_MAX_DEPTH || !is_power_of_2(depth)))
		return dm_user_refuse(out, -ERANGE, DM_USER_ATTR_RING_DEPTH,
				      "ring_depth must be a power of two from 1 to 1024");
	if (dm_user_in_val(in, DM_USER_ATTR_RING_DATA))
		data = dm_user_in_val(in, DM_USER_ATTR_RING_DATA);
	/* The largest request must fit, or it would wait for ever. */
	if ((granted & DM_USER_EXT_RING) &&
	    (data < DM_USER_MAX_IO_SECTORS << SECTOR_SHIFT ||
	     data > DM_USER_RING_MAX_DATA || !PAGE_ALIGNED(data)))
		return dm_user_refuse(out, -ERANGE, DM_USER_ATTR_RING_DATA,
				      "ring_data must be a multiple of the page size from max_io to 256 MiB");
	if ((granted & DM_USER_EXT_RING) &&
	    busy_poll > DM_USER_RING_MAX_BUSY_POLL)
		return dm_user_refuse(out, -ERANGE, DM_USER_ATTR_RING_BUSY_POLL,
				      "ring_busy_poll must be from 0 to 1000 microseconds");
	/* Allocated before any lock; dropped if the channel has one. */
	if ((granted & DM_USER_EXT_RING) && !READ_ONCE(ch->ring)) {
		const char *why;

		ring = dm_user_ring_alloc(depth, data, &why);
		if (IS_ERR(ring))
			return dm_user_refuse(out, PTR_ERR(ring),
					      DM_USER_ATTR_RING_DATA, why);
	}

	if (mutex_lock_interruptible(&ch->read_lock)) {
		if (ring)
			dm_user_ring_free(ring);
		return -ERESTARTSYS;
	}
	spin_lock_irq(&t->lock);
	if (ch->ring && !(granted & DM_USER_EXT_RING))
		busy = "a ring channel stays one";
	else if (!ch->ring && ring && !list_empty(&ch->owned))
		busy = "the channel holds requests read with read()";
	if (!busy) {
		/* The write path reads it once per call, without read_lock. */
		WRITE_ONCE(ch->extensions, granted);
		if (!ch->ring && ring) {
			/* A reload this channel has not asked about yet. */
			if (ch->reloads_seen != t->nr_reloads)
				dm_user_ring_set_flags(ring,
						       DM_USER_RING_RELOADED);
			/* Set up before it is seen: dm_user_channel_ring(). */
			smp_store_release(&ch->ring, ring);
			ring = NULL;
		}
		/* RING_ENTER reads it under read_lock. */
		if (ch->ring)
			ch->ring->busy_poll_us = busy_poll;
	}
	spin_unlock_irq(&t->lock);
	mutex_unlock(&ch->read_lock);
	if (ring)
		dm_user_ring_free(ring);
	if (busy)
		return dm_user_refuse(out, -EBUSY, DM_USER_ATTR_EXTENSIONS,
				      busy);

	dm_user_put_u64(out, DM_USER_ATTR_EXTENSIONS, granted);
	if (granted & DM_USER_EXT_RING) {
		dm_user_put_u32(out, DM_USER_ATTR_RING_DEPTH, ch->ring->depth);
		dm_user_put_u64(out, DM_USER_ATTR_RING_SIZE, ch->ring->size);
		dm_user_put_u32(out, DM_USER_ATTR_RING_DATA,
				ch->ring->data_pages << PAGE_SHIFT);
		/* Only to a daemon that asked: older ones have less room. */
		if (dm_user_in_has(in, DM_USER_ATTR_RING_BUSY_POLL))
			dm_user_put_u32(out, DM_USER_ATTR_RING_BUSY_POLL,
					busy_poll);
	}
	return 0;
}

static const u16 dm_user_no_inputs[] = { 0 };
static const u16 dm_user_set_inputs[] = {
	DM_USER_ATTR_MAX_QUEUED, DM_USER_ATTR_NO_DAEMON_TIMEOUT,
	DM_USER_ATTR_REQUEST_TIMEOUT, DM_USER_ATTR_NOTIFY_WRITES, 0
};

/*
 * CLAIM, RELEASE, MAP and UNMAP (@op): the range, and for MAP its
 * destination, checked before anything changes.
 */
static int dm_user_cmd_range(struct dm_user_target *t,
			     const struct dm_user_ctl_in *in,
			     struct dm_user_ctl_out *out,
			     enum dm_user_claims_op op)
{
	u64 block = t->block_size >> SECTOR_SHIFT, start, len, dest = 0;
	unsigned int nr, ops = DM_USER_CLAIM_ALL;
	bool map = op == DM_USER_MAP || op == DM_USER_UNMAP;
	int r;

	if (!dm_user_has_backing(t))
		return dm_user_refuse(out, -EOPNOTSUPP, 0, map ?
				      "mapped ranges need a backing device" :
				      "claims need a backing device");
	if (!dm_user_in_has(in, DM_USER_ATTR_RANGE_START))
		return dm_user_refuse(out, -EINVAL, DM_USER_ATTR_RANGE_START,
				      "range_start required");
	if (!dm_user_in_has(in, DM_USER_ATTR_RANGE_LEN))
		return dm_user_refuse(out, -EINVAL, DM_USER_ATTR_RANGE_LEN,
				      "range_len required");
	start = dm_user_in_val(in, DM_USER_ATTR_RANGE_START);
	len = dm_user_in_val(in, DM_USER_ATTR_RANGE_LEN);
	if (!len || (len & (block - 1)))
		return dm_user_refuse(out, -EINVAL, DM_USER_ATTR_RANGE_LEN,
				      "range_len must be whole blocks, not 0");
	if (start & (block - 1))
		return dm_user_refuse(out, -EINVAL, DM_USER_ATTR_RANGE_START,
				      "range_start must be whole blocks");
	if (dm_user_in_has(in, DM_USER_ATTR_RANGE_OPS)) {
		u64 v = dm_user_in_val(in, DM_USER_ATTR_RANGE_OPS);

		if (!v || (v & ~(u64)DM_USER_CLAIM_ALL))
			return dm_user_refuse(out, -EINVAL,
					      DM_USER_ATTR_RANGE_OPS,
					      "range_ops must be reads, writes or both");
		ops = v;
	}
	if (op == DM_USER_MAP) {
		if (!dm_user_in_has(in, DM_USER_ATTR_RANGE_DEST))
			return dm_user_refuse(out, -EINVAL,
					      DM_USER_ATTR_RANGE_DEST,
					      "range_dest required");
		dest = dm_user_in_val(in, DM_USER_ATTR_RANGE_DEST);
		if (dest & (block - 1))
			return dm_user_refuse(out, -EINVAL,
					      DM_USER_ATTR_RANGE_DEST,
					      "range_dest must be whole blocks");
	}
	r = dm_user_change_claims(t, op, start, len, ops, dest, &nr);
	if (r == -EOPNOTSUPP)
		return dm_user_refuse(out, r, 0, map ?
				      "mapped ranges need a backing device" :
				      "claims need a backing device");
	/* Which end passed the target's: told apart for the message only. */
	if (r == -ERANGE && op == DM_USER_MAP &&
	    (dest > dm_user_size(t) || len > dm_user_size(t) - dest))
		return dm_user_refuse(out, r, DM_USER_ATTR_RANGE_DEST,
				      "range_dest + range_len past the end of the target");
	if (r == -ERANGE)
		return dm_user_refuse(out, r, DM_USER_ATTR_RANGE_LEN,
				      "range past the end of the target");
	if (r == -E2BIG)
		return dm_user_refuse(out, r, DM_USER_ATTR_RANGE_START, map ?
				      "more mapped ranges than max_claims" :
				      "more claimed ranges than max_claims");
	if (r == -EINTR)
		return dm_user_refuse(out, r, 0,
				      "killed while waiting for I/O to the backing device");
	if (r)
		return r;
	dm_user_put_u32(out, map ? DM_USER_ATTR_MAP_RANGES :
			DM_USER_ATTR_CLAIM_RANGES, nr);
	return 0;
}

static int dm_user_cmd_claim(struct dm_user_target *t,
			     struct dm_user_channel *ch,
			     const struct dm_user_ctl_in *in,
			     struct dm_user_ctl_out *out)
{
	return dm_user_cmd_range(t, in, out, DM_USER_CLAIM);
}

static int dm_user_cmd_release(struct dm_user_target *t,
			       struct dm_user_channel *ch,
			       const struct dm_user_ctl_in *in,
			       struct dm_user_ctl_out *out)
{
	return dm_user_cmd_range(t, in, out, DM_USER_RELEASE);
}

static int dm_user_cmd_map(struct dm_user_target *t,
			   struct dm_user_channel *ch,
			   const struct dm_user_ctl_in *in,
			   struct dm_user_ctl_out *out)
{
	return dm_user_cmd_range(t, in, out, DM_USER_MAP);
}

static int dm_user_cmd_unmap(struct dm_user_target *t,
			     struct dm_user_channel *ch,
			     const struct dm_user_ctl_in *in,
			     struct dm_user_ctl_out *out)
{
	return dm_user_cmd_range(t, in, out, DM_USER_UNMAP);
}

static const u16 dm_user_range_inputs[] = {
	DM_USER_ATTR_RANGE_START, DM_USER_ATTR_RANGE_LEN,
	DM_USER_ATTR_RANGE_OPS, 0
};

static const u16 dm_user_map_inputs[] = {
	DM_USER_ATTR_RANGE_START, DM_USER_ATTR_RANGE_LEN,
	DM_USER_ATTR_RANGE_OPS, DM_USER_ATTR_RANGE_DEST, 0
};

static const u16 dm_user_negotiate_inputs[] = {
	DM_USER_ATTR_EXTENSIONS, DM_USER_ATTR_RING_DEPTH,
	DM_USER_ATTR_RING_DATA, DM_USER_ATTR_RING_BUSY_POLL, 0
};

static const struct dm_user_cmd dm_user_cmds[] = {
	{
		.command = DM_USER_CMD_GET_INFO, .version = 1, .name = "info",
		.inputs = dm_user_no_inputs, .fn = dm_user_cmd_get_info,
	}, {
		.command = DM_USER_CMD_GET_PARAMS, .version = 1,
		.name = "get_params", .inputs = dm_user_no_inputs,
		.fn = dm_user_cmd_get_params,
	}, {
		.command = DM_USER_CMD_SET_PARAMS, .version = 1,
		.name = "set_params", .admin = true, .changes = true,
		.inputs = dm_user_set_inputs, .fn = dm_user_cmd_set_params,
	}, {
		.command = DM_USER_CMD_RESET_COUNTERS, .version = 1,
		.name = "reset_counters", .admin = true, .changes = true,
		.inputs = dm_user_no_inputs, .fn = dm_user_cmd_reset_counters,
	}, {
		.command = DM_USER_CMD_NEGOTIATE, .version = 1,
		.name = "negotiate", .per_channel = true, .changes = true,
		.reply_max = 5 * (DM_USER_ATTR_HDR + sizeof(u64)),
		.inputs = dm_user_negotiate_inputs,
		.fn = dm_user_cmd_negotiate,
	}, {
		.command = DM_USER_CMD_CLAIM, .version = 5, .name = "claim",
		.admin = true, .changes = true,
		.reply_max = DM_USER_ATTR_HDR + sizeof(u64),
		.inputs = dm_user_range_inputs, .fn = dm_user_cmd_claim,
	}, {
		.command = DM_USER_CMD_RELEASE, .version = 5, .name = "release",
		.admin = true, .changes = true,
		.reply_max = DM_USER_ATTR_HDR + sizeof(u64),
		.inputs = dm_user_range_inputs, .fn = dm_user_cmd_release,
	}, {
		.command = DM_USER_CMD_MAP, .version = 9, .name = "map",
		.admin = true, .changes = true,
		.reply_max = DM_USER_ATTR_HDR + sizeof(u64),
		.inputs = dm_user_map_inputs, .fn = dm_user_cmd_map,
	}, {
		.command = DM_USER_CMD_UNMAP, .version = 9, .name = "unmap",
		.admin = true, .changes = true,
		.reply_max = DM_USER_ATTR_HDR + sizeof(u64),
		.inputs = dm_user_range_inputs, .fn = dm_user_cmd_unmap,
	},
};

static const struct dm_user_cmd *dm_user_find_cmd(u16 command)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(dm_user_cmds); i++)
		if (dm_user_cmds[i].command == command)
			return &dm_user_cmds[i];
	return NULL;
}

static bool dm_user_cmd_takes(const struct dm_user_cmd *cmd, u16 tag)
{
	const u16 *p;

	for (p = cmd->inputs; *p; p++)
		if (*p == tag)
			return true;
	return false;
}

/* ------------------------------------------------------------------------
 * The ioctl front end
 */

/* Decodes and checks the request attributes in @data[0..@len). */
static int dm_user_parse_attrs(const struct dm_user_cmd *cmd, const u8 *data,
			       u32 len, struct dm_user_ctl_in *in,
			       struct dm_user_ctl_out *out)
{
	unsigned int count = 0;
	u32 off = 0;

	while (off < len) {
		const struct dm_user_attr *a;
		bool mandatory;
		int i;

		if (len - off < DM_USER_ATTR_HDR)
			return dm_user_refuse(out, -EINVAL, 0,
					      "truncated attribute header");
		a = (const struct dm_user_attr *)(data + off);
		if (++count > DM_USER_CTL_MAX_ATTRS)
			return dm_user_refuse(out, -E2BIG, 0,
					      "too many attributes");
		if (a->len > len - off - DM_USER_ATTR_HDR)
			return dm_user_refuse(out, -EINVAL, a->tag,
					      "attribute runs past in_len");
		if (a->flags & ~DM_USER_ATTR_F_MANDATORY)
			return dm_user_refuse(out, -EINVAL, a->tag,
					      "unknown attribute flags");
		mandatory = a->flags & DM_USER_ATTR_F_MANDATORY;
		i = dm_user_tag_index(a->tag);

		if (i < 0 || !dm_user_cmd_takes(cmd, a->tag)) {
			if (mandatory)
				return dm_user_refuse(out, -ENOPROTOOPT, a->tag,
					i < 0 ? "unknown mandatory attribute" :
					"mandatory attribute not taken by this command");
			in->unknown[in->nr_unknown++] = a->tag;
			goto next;
		}

		if (a->type != dm_user_tags[i].type)
			return dm_user_refuse(out, -EINVAL, a->tag,
					      "wrong type for this attribute");
		if (test_and_set_bit(i, in->present))
			return dm_user_refuse(out, -EINVAL, a->tag,
					      "attribute given twice");
		switch (a->type) {
		case DM_USER_TYPE_U32:
			if (a->len != sizeof(u32))
				return dm_user_refuse(out, -EINVAL, a->tag,
						      "U32 attribute of wrong length");
			{
				u32 v;

				memcpy(&v, a->value, sizeof(v));
				in->val[i] = v;
			}
			break;
		case DM_USER_TYPE_U64:
			if (a->len != sizeof(u64))
				return dm_user_refuse(out, -EINVAL, a->tag,
						      "U64 attribute of wrong length");
			memcpy(&in->val[i], a->value, sizeof(u64));
			break;
		default:
			/* No command takes a string yet. */
			return dm_user_refuse(out, -EINVAL, a->tag,
					      "unexpected attribute type");
		}
next:
		off += DM_USER_ATTR_HDR + DM_USER_ATTR_ALIGN(a->len);
	}
	return 0;
}

long dm_user_ctl_ioctl(struct dm_user_target *t, struct dm_user_channel *ch,
		       struct dm_user_ctl __user *uarg)
{
	struct dm_user_ctl_out out = { };
	const struct dm_user_cmd *cmd = NULL;
	struct dm_user_ctl_in *in = NULL;
	struct dm_user_ctl hdr, *buf;
	size_t copy_len;
	int r = 0;
	unsigned int i;

	if (copy_from_user(&hdr, uarg, sizeof(hdr)))
		return -EFAULT;
	/* Too small even to hold the reply header: write nothing back. */
	if (hdr.size < DM_USER_CTL_HDR)
		return -EINVAL;
	if (hdr.size > DM_USER_CTL_MAX_SIZE) {
		r = dm_user_refuse(&out, -E2BIG, 0, "size above 65536");
		buf = &hdr;
		goto reply_header;
	}

	buf = kvmalloc(hdr.size, GFP_KERNEL);
	in = kzalloc(sizeof(*in), GFP_KERNEL);
	if (!buf || !in) {
		kvfree(buf);
		kfree(in);
		return -ENOMEM;
	}
	if (copy_from_user(buf, uarg, hdr.size)) {
		r = -EFAULT;
		goto out_free;
	}
	/* Userspace may have changed the header between the two copies. */
	buf->size = hdr.size;
	out.buf = buf->data;
	out.cap = hdr.size - DM_USER_CTL_HDR;

	if (buf->flags || buf->reserved) {
		r = dm_user_refuse(&out, -EINVAL, 0, "flags and reserved must be 0");
		goto reply;
	}
	if (buf->in_len > out.cap) {
		r = dm_user_refuse(&out, -EINVAL, 0, "in_len runs past size");
		goto reply;
	}
	if (!buf->version) {
		r = dm_user_refuse(&out, -EINVAL, 0, "version 0");
		goto reply;
	}
	if (buf->version > DM_USER_CTL_VERSION) {
		r = dm_user_refuse(&out, -EPROTONOSUPPORT, 0,
				   "version newer than the kernel's");
		goto reply;
	}
	cmd = dm_user_find_cmd(buf->command);
	if (!cmd) {
		r = dm_user_refuse(&out, -EOPNOTSUPP, 0, "unknown command");
		goto reply;
	}
	if (buf->version < cmd->version) {
		r = dm_user_refuse(&out, -EPROTONOSUPPORT, 0,
				   "version older than the command");
		goto reply;
	}
	r = dm_user_parse_attrs(cmd, buf->data, buf->in_len, in, &out);
	if (r)
		goto reply;
	if (cmd->changes && !ch->read_write) {
		r = dm_user_refuse(&out, -EBADF, 0,
				   "needs the node opened for reading and writing");
		goto reply;
	}
	if (cmd->admin && !dm_user_may_change_settings(t)) {
		r = dm_user_refuse(&out, -EPERM, 0,
				   "needs the node's owner or CAP_SYS_ADMIN");
		goto reply;
	}
	if (READ_ONCE(t->dead)) {
		r = -ENOTBLK;
		goto reply;
	}
	if (cmd->changes) {
		size_t need = cmd->reply_max + in->nr_unknown *
			      (DM_USER_ATTR_HDR + DM_USER_ATTR_ALIGN(sizeof(u32)));

		if (need > out.cap) {
			/* Refused before anything changed. */
			out.len = need;
			r = -ENOSPC;
			goto reply;
		}
	}

	/* The reply replaces the request attributes, now decoded into in. */
	r = cmd->fn(t, ch, in, &out);
	if (!r)
		for (i = 0; i < in->nr_unknown; i++)
			dm_user_put_u32(&out, DM_USER_ATTR_UNKNOWN_TAG,
					in->unknown[i]);

reply:
	if (r && out.reason) {
		/* The reason alone, so it fits where the request was. */
		out.len = 0;
		dm_user_put_str(&out, DM_USER_ATTR_ERROR_REASON, out.reason);
	}
	if (!r && out.len > out.cap)
		r = -ENOSPC;
reply_header:
	buf->version = DM_USER_CTL_VERSION;
	buf->out_len = out.len;
	buf->error = -r;
	buf->error_tag = out.error_tag;
	/* Only an unknown command; a known one may refuse with EOPNOTSUPP. */
	buf->error_command = (r == -EOPNOTSUPP && !cmd) ? buf->command : 0;
	copy_len = DM_USER_CTL_HDR;
	if (buf != &hdr && r != -ENOSPC)
		copy_len += min(out.len, out.cap);
	if (copy_to_user(uarg, buf, copy_len))
		r = -EFAULT;
	if (buf == &hdr)
		return r;
out_free:
	kvfree(buf);
	kfree(in);
	return r;
}

/* ------------------------------------------------------------------------
 * The dmsetup message front end: <command> [key=value...]
 */

int dm_user_ctl_message(struct dm_user_target *t, unsigned int argc,
			char **argv, char *result, unsigned int maxlen)
{
	struct dm_user_ctl_out out = {
		.text = true, .result = result, .maxlen = maxlen,
	};
	const struct dm_user_cmd *cmd = NULL;
	struct dm_user_ctl_in *in;
	unsigned int i;
	int r;

	if (!argc)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(dm_user_cmds); i++)
		if (!strcasecmp(argv[0], dm_user_cmds[i].name))
			cmd = &dm_user_cmds[i];
	if (!cmd) {
		DMERR("%s: unrecognised message '%s'", t->name, argv[0]);
		return -EINVAL;
	}
	if (cmd->per_channel) {
		DMERR("%s: '%s' is per channel: use the ioctl on /dev/dm-user/%s",
		      t->name, cmd->name, t->name);
		return -EINVAL;
	}

	in = kzalloc(sizeof(*in), GFP_KERNEL);
	if (!in)
		return -ENOMEM;
	for (i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		unsigned long long v;
		int ti = -1, k;

		if (eq) {
			*eq = '\0';
			for (k = 0; k < DM_USER_NR_TAGS; k++)
				if (!strcmp(argv[i], dm_user_tags[k].name))
					ti = k;
		}
		if (ti < 0 || !dm_user_cmd_takes(cmd, dm_user_tags[ti].tag)) {
			DMERR("%s: %s: unrecognised parameter '%s'", t->name,
			      cmd->name, argv[i]);
			r = -EINVAL;
			goto out;
		}
		if (test_and_set_bit(ti, in->present)) {
			DMERR("%s: %s: '%s' given twice", t->name, cmd->name,
			      argv[i]);
			r = -EINVAL;
			goto out;
		}
		if (dm_user_tags[ti].forever && !strcmp(eq + 1, "forever")) {
			v = DM_USER_TIMEOUT_FOREVER;
		} else if (kstrtoull(eq + 1, dm_user_tags[ti].hex ? 0 : 10, &v) ||
			   (dm_user_tags[ti].type == DM_USER_TYPE_U32 &&
			    v > U32_MAX)) {
			DMERR("%s: %s: '%s' needs a number, not '%s'", t->name,
			      cmd->name, argv[i], eq + 1);
			r = -EINVAL;
			goto out;
		}
		in->val[ti] = v;
	}

	r = cmd->fn(t, NULL, in, &out);
	if (r) {
		DMERR("%s: %s: %s", t->name, cmd->name,
		      out.reason ? out.reason : "failed");
		goto out;
	}
	/* dm-dust's convention: 1 when there is text to return. */
	r = out.sz ? 1 : 0;
out:
	kfree(in);
	return r;
}
