// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user: a device-mapper target whose I/O is served by a userspace daemon
 * through the misc device /dev/dm-user/<name>.
 *
 * This file holds the target glue: table parsing, the map path, status,
 * queue limits and teardown. The channel file operations are in
 * dm-user-channel.c.
 *
 * Locking, in the order the locks nest:
 *
 *   dm_user_registry_lock (mutex)
 *	Protects dm_user_registry, the list of live targets, so that two
 *	targets never share a name, orders adding and deleting the node of
 *	one name, and protects each target's list of tables (a reload under
 *	the same name joins the target it names). Taken in the constructor,
 *	the destructor, and by event_work to keep the live table while it
 *	raises a dm event.
 *
 *   dm_user_channel.read_lock, dm_user_channel.write_lock (mutexes,
 *   dm-user-channel.c)
 *	Serialise the read() calls and the write() calls of one channel
 *	respectively, so that a channel's partial message state is never used
 *	by two calls at once. Never nested in each other, never held while
 *	waiting for a request, taken only in syscalls, never on the map path.
 *
 *   dm_user_channel.ring (dm-user-ring.c)
 *	A ring channel's queue positions and busy-poll time are the
 *	read_lock's; its slot table, free slots and data page map are the
 *	target lock's. The fault handler takes no lock: the ring's memory is
 *	fixed from NEGOTIATE on. A RING_ENTER caller spinning for a request
 *	holds no lock; it waits on t->wq as a sleeper does, without sleeping.
 *
 *   dm_user_target.claims_lock (mutex)
 *	Serialises changes of the claimed and mapped ranges and of write
 *	notifications (CLAIM, RELEASE, MAP, UNMAP, SET_PARAMS
 *	notify_writes), all kept in one struct dm_user_claims: each change
 *	publishes a new copy with rcu_assign_pointer() and then waits for
 *	the bios mapped under the old one to leave (synchronize_rcu(), then
 *	dm_user_target.passing[] of the old parity). The map path reads the
 *	claims under rcu_read_lock() alone, and never waits for this; its
 *	read-side section lasts until the bio is queued (user_map()), so
 *	that a change's synchronize_rcu() also waits for what it queues. Also
 *	held, with the target lock inside it, to change the live table
 *	(user_preresume(), and a destructor under the registry lock), so
 *	that a claim sees one length throughout. Taken by control commands
 *	(the ioctl and dmsetup message) with no other lock held.
 *
 *   dm_user_target.lock (spinlock, interrupts off)
 *	Protects everything that moves a request: the queue, the backlog, the
 *	answer hash, each channel's owned list and its sending/receiving
 *	pointers, the counters, the channel list, the live table pointer and
 *	the suspending, flush_suspending and dead flags. The map path takes only this lock.
 *	Nothing sleeps under it and bios are never completed under it:
 *	completing a bio may submit another one to this target. Interrupts
 *	are off wherever it is taken because the map path runs wherever a bio
 *	is submitted, and a stacked driver may submit one from its own
 *	completion handler in interrupt context.
 *
 *   dm_user_target.wq.lock (the wait queue's spinlock)
 *	Innermost: wake_up() takes it under the target lock, and
 *	dm_user_prepare_to_wait_lifo() takes it alone, to put a reader in
 *	front of the other exclusive waiters.
 *
 * Work items (no_daemon_work, timeout_work, event_work) take the target
 * lock themselves and are queued only under it while the target is not
 * dead; the destructor marks it dead and then cancels them synchronously,
 * so none runs once the target is gone.
 *
 * A request belongs to exactly one holder at a time (see enum
 * dm_user_req_state). Whoever removes it from its holder under the target
 * lock completes it, so no request is completed twice. A channel copying a
 * request's data does so without the lock, after marking the request busy;
 * teardown does not complete a busy request but marks it aborted, and the
 * channel completes it when its copy ends. The destructor waits until no
 * request is busy, so no bio is completed after the target is gone.
 *
 * A write notification is a request like any other until its answer, and
 * one that lets the write through is taken as a remap to where the mapped
 * ranges send it, counted in passing[] rather than remapping, so that a
 * change of the claims waits for it as for the map path's own bios.
 *
 * A request answered with a remap leaves every holder: it is owned by the
 * backing device from then on, and counted in remapping until user_end_io()
 * sees it complete, as the bios the map path sends there are counted in
 * passing[]. end_io drops its count and wakes backing_wq inside an RCU
 * read section; the destructor waits for every count to reach zero, then
 * for a grace period, before it puts the backing device, so no end_io
 * touches the target after that.
 *
 * A request a channel has started to read is never taken back from it
 * while the channel is open, so the byte stream of a channel is never cut
 * in the middle of a message and no request is served twice at once: a
 * noflush suspend waits for such requests as for any I/O in flight. The
 * one exception is request_timeout, which fails the request and resets the
 * channel (dm_user_channel.reset): from then on its read() and write() fail
 * with ECONNRESET until the daemon closes it.
 */

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/cred.h>
#include <linux/ctype.h>
#include <linux/device-mapper.h>
#include <linux/idr.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-user.h"
#include "dm-user-compat.h"

static LIST_HEAD(dm_user_registry);
static DEFINE_MUTEX(dm_user_registry_lock);

/* The nodes: one character device region, one minor per live target. */
static dev_t dm_user_devt;
static DEFINE_IDA(dm_user_minors);
static struct class dm_user_class = {
	.name = DM_USER_NODE_DIR,
};

/* The target a table's dm_target serves. */
static struct dm_user_target *dm_user_of(struct dm_target *ti)
{
	return ((struct dm_user_table *)ti->private)->t;
}

static int no_daemon_timeout = DM_USER_DEFAULT_NO_DAEMON_TIMEOUT;
module_param(no_daemon_timeout, int, 0644);
MODULE_PARM_DESC(no_daemon_timeout,
		 "Seconds a new target keeps I/O queued while no daemon is attached; -1: for ever (default 30)");

const char *const dm_user_daemon_state_names[DM_USER_NR_DAEMON_STATES] = {
	[DM_USER_DAEMON_ATTACHED] = "attached",
	[DM_USER_DAEMON_WAITING] = "waiting",
	[DM_USER_DAEMON_FAILING] = "failing",
};

static const char *const dm_user_op_names[DM_USER_NR_OPS] = {
	[DM_USER_OP_READ] = "read",
	[DM_USER_OP_WRITE] = "write",
	[DM_USER_OP_FLUSH] = "flush",
	[DM_USER_OP_DISCARD] = "discard",
	[DM_USER_OP_WRITE_ZEROES] = "write_zeroes",
	[DM_USER_OP_SECURE_ERASE] = "secure_erase",
};

/* Feature words of the table line. */
enum dm_user_feature {
	DM_USER_FEAT_NO_FLUSH,
	DM_USER_FEAT_NO_DISCARD,
	DM_USER_FEAT_NO_WRITE_ZEROES,
	DM_USER_FEAT_NO_SECURE_ERASE,
	DM_USER_FEAT_BLOCK_SIZE,
	DM_USER_FEAT_MAX_QUEUED,
	DM_USER_FEAT_NO_DAEMON_TIMEOUT,
	DM_USER_FEAT_QUEUE_IF_NO_DAEMON,
	DM_USER_FEAT_REQUEST_TIMEOUT,
	DM_USER_FEAT_UID,
	DM_USER_FEAT_GID,
	DM_USER_FEAT_MODE,
	DM_USER_FEAT_BACKING,
	DM_USER_FEAT_PASSTHROUGH,
	DM_USER_FEAT_MAX_CLAIMS,
	DM_USER_FEAT_NOTIFY_WRITES,
	DM_USER_NR_FEATURES,
};

static const char *const dm_user_feature_names[DM_USER_NR_FEATURES] = {
	[DM_USER_FEAT_NO_FLUSH] = "no_flush",
	[DM_USER_FEAT_NO_DISCARD] = "no_discard",
	[DM_USER_FEAT_NO_WRITE_ZEROES] = "no_write_zeroes",
	[DM_USER_FEAT_NO_SECURE_ERASE] = "no_secure_erase",
	[DM_USER_FEAT_BLOCK_SIZE] = "block_size",
	[DM_USER_FEAT_MAX_QUEUED] = "max_queued",
	[DM_USER_FEAT_NO_DAEMON_TIMEOUT] = "no_daemon_timeout",
	[DM_USER_FEAT_QUEUE_IF_NO_DAEMON] = "queue_if_no_daemon",
	[DM_USER_FEAT_REQUEST_TIMEOUT] = "request_timeout",
	[DM_USER_FEAT_UID] = "uid",
	[DM_USER_FEAT_GID] = "gid",
	[DM_USER_FEAT_MODE] = "mode",
	[DM_USER_FEAT_BACKING] = "backing",
	[DM_USER_FEAT_PASSTHROUGH] = "passthrough",
	[DM_USER_FEAT_MAX_CLAIMS] = "max_claims",
	[DM_USER_FEAT_NOTIFY_WRITES] = "notify_writes",
};

/*
 * Feature words followed by a number: its range and error messages. An
 * octal value is written as four digits with a leading zero (0660), so that
 * the table reads back exactly as it was given.
 */
struct dm_user_feature_value {
	struct dm_arg range;
	char *missing;
	bool octal;
};

static const struct dm_user_feature_value dm_user_feature_values[DM_USER_NR_FEATURES] = {
	[DM_USER_FEAT_BLOCK_SIZE] = {
		{ SECTOR_SIZE, 4096, "Invalid block_size" },
		"block_size needs a value"
	},
	[DM_USER_FEAT_MAX_QUEUED] = {
		{ 1, DM_USER_MAX_MAX_QUEUED, "Invalid max_queued" },
		"max_queued needs a value"
	},
	[DM_USER_FEAT_NO_DAEMON_TIMEOUT] = {
		{ 0, DM_USER_MAX_TIMEOUT, "Invalid no_daemon_timeout" },
		"no_daemon_timeout needs a value"
	},
	[DM_USER_FEAT_REQUEST_TIMEOUT] = {
		{ 0, DM_USER_MAX_TIMEOUT, "Invalid request_timeout" },
		"request_timeout needs a value"
	},
	/* (uid_t)-1 and (gid_t)-1 mean "no change" to chown(): never valid. */
	[DM_USER_FEAT_UID] = {
		{ 0, UINT_MAX - 1, "Invalid uid" },
		"uid needs a value"
	},
	[DM_USER_FEAT_GID] = {
		{ 0, UINT_MAX - 1, "Invalid gid" },
		"gid needs a value"
	},
	/*
	 * devtmpfs reads a mode of 0 as "not set" and makes the node 0600, so
	 * 0000 cannot be honoured: refused rather than silently widened.
	 */
	[DM_USER_FEAT_MODE] = {
		{ 1, 0777, "Invalid mode: four octal digits from 0001 to 0777" },
		"mode needs a value",
		true
	},
	[DM_USER_FEAT_MAX_CLAIMS] = {
		{ 1, DM_USER_MAX_MAX_CLAIMS, "Invalid max_claims" },
		"max_claims needs a value"
	},
};

static bool dm_user_feature_has_value(enum dm_user_feature f)
{
	return dm_user_feature_values[f].missing;
}

/* The operation each no_* feature word turns off. */
static const enum dm_user_op dm_user_feature_op[] = {
	[DM_USER_FEAT_NO_FLUSH] = DM_USER_OP_FLUSH,
	[DM_USER_FEAT_NO_DISCARD] = DM_USER_OP_DISCARD,
	[DM_USER_FEAT_NO_WRITE_ZEROES] = DM_USER_OP_WRITE_ZEROES,
	[DM_USER_FEAT_NO_SECURE_ERASE] = DM_USER_OP_SECURE_ERASE,
};

static bool dm_user_op_enabled(const struct dm_user_table *tt,
			       enum dm_user_op op)
{
	return !test_bit(op, &tt->disabled_ops);
}

/* The wire type of each operation. */
static const u64 dm_user_op_req_type[DM_USER_NR_OPS] = {
	[DM_USER_OP_READ] = DM_USER_REQ_MAP_READ,
	[DM_USER_OP_WRITE] = DM_USER_REQ_MAP_WRITE,
	[DM_USER_OP_FLUSH] = DM_USER_REQ_MAP_FLUSH,
	[DM_USER_OP_DISCARD] = DM_USER_REQ_MAP_DISCARD,
	[DM_USER_OP_WRITE_ZEROES] = DM_USER_REQ_MAP_WRITE_ZEROES,
	[DM_USER_OP_SECURE_ERASE] = DM_USER_REQ_MAP_SECURE_ERASE,
};

/* Bit 1 << DM_USER_REQ_MAP_* for every request type @tt sends. */
static u64 dm_user_enabled_req_types(const struct dm_user_table *tt)
{
	u64 mask = 0;
	int op;

	for (op = 0; op < DM_USER_NR_OPS; op++)
		if (dm_user_op_enabled(tt, op))
			mask |= 1ULL << dm_user_op_req_type[op];
	return mask;
}

/* ------------------------------------------------------------------------
 * Completing requests
 */

/* Moves requests from the backlog to the queue while there is room. */
static bool dm_user_refill_locked(struct dm_user_target *t)
{
	struct dm_user_request *req;
	bool moved = false;

	while (t->nr_backlog && t->nr_queued + t->nr_inflight < t->max_queued) {
		req = list_first_entry(&t->backlog, struct dm_user_request, list);
		list_move_tail(&req->list, &t->queue);
		req->state = DM_USER_REQ_QUEUED;
		t->nr_backlog--;
		t->nr_queued++;
		moved = true;
	}
	return moved;
}

/*
 * Puts @req on @list in arrival order, which request_timeout's scan relies
 * on, looking from the tail: a request taken from the queue is normally
 * the youngest its channel holds, and goes last at once; one that a closed
 * channel gave back walks past the younger ones.
 */
void dm_user_insert_by_age_locked(struct dm_user_target *t,
				  struct dm_user_request *req,
				  struct list_head *list)
{
	struct dm_user_request *pos;

	lockdep_assert_held(&t->lock);
	list_for_each_entry_reverse(pos, list, list)
		if (!time_after(pos->start, req->start))
			break;
	/* After pos, or first if none is as old (pos is then the head). */
	list_add(&req->list, &pos->list);
}

/* ------------------------------------------------------------------------
 * The answer hash
 */

/* Buckets for at least half of @max_queued (1 to 1M), and at least 16. */
static unsigned int dm_user_hash_bits_for(unsigned int max_queued)
{
	unsigned int bits = order_base_2(max_queued);

	return bits > DM_USER_MIN_HASH_BITS + 1 ? bits - 1 :
						   DM_USER_MIN_HASH_BITS;
}

/*
 * The daemon allocates here (read(), a control command): it must not wait
 * for writeback that may need its own device.
 */
static struct hlist_head *dm_user_alloc_hash(unsigned int bits)
{
	unsigned int noio_flags = memalloc_noio_save();
	struct hlist_head *hash;
	unsigned int i;

	hash = kvmalloc_array(1U << bits, sizeof(*hash), GFP_KERNEL);
	memalloc_noio_restore(noio_flags);
	if (hash)
		for (i = 0; i < (1U << bits); i++)
			INIT_HLIST_HEAD(&hash[i]);
	return hash;
}

void dm_user_hash_add_locked(struct dm_user_target *t,
			     struct dm_user_request *req)
{
	lockdep_assert_held(&t->lock);
	hlist_add_head(&req->hash_node,
		       &t->answer_hash[hash_64(req->msg.seq, t->hash_bits)]);
}

struct dm_user_request *dm_user_hash_find_locked(struct dm_user_target *t,
						 u64 seq)
{
	struct dm_user_request *req;

	lockdep_assert_held(&t->lock);
	/* No read() yet: nothing can be waiting for an answer. */
	if (!t->answer_hash)
		return NULL;
	hlist_for_each_entry(req, &t->answer_hash[hash_64(seq, t->hash_bits)],
			     hash_node)
		if (req->msg.seq == seq)
			return req;
	return NULL;
}

/* Whether the answer hash is missing or smaller than the cap wants. */
bool dm_user_hash_too_small(struct dm_user_target *t)
{
	return READ_ONCE(t->hash_bits) <
	       dm_user_hash_bits_for(READ_ONCE(t->max_queued));
}

/*
 * Makes the answer hash, or makes it big enough for @max_queued before the
 * cap is raised to it. Called without the target lock, as it allocates; the
 * requests move to the new buckets under it. Returns 0 or -ENOMEM, with
 * nothing changed.
 */
int dm_user_grow_hash(struct dm_user_target *t, unsigned int max_queued)
{
	unsigned int bits = dm_user_hash_bits_for(max_queued), old_bits, i;
	struct hlist_head *hash, *old;
	struct dm_user_request *req;
	struct hlist_node *tmp;
	unsigned long irq_flags;

	if (bits <= READ_ONCE(t->hash_bits))
		return 0;
	hash = dm_user_alloc_hash(bits);
	if (!hash)
		return -ENOMEM;

	spin_lock_irqsave(&t->lock, irq_flags);
	old = t->answer_hash;
	old_bits = t->hash_bits;
	if (bits <= old_bits) {
		/* Another caller made or grew it meanwhile. */
		spin_unlock_irqrestore(&t->lock, irq_flags);
		kvfree(hash);
		return 0;
	}
	for (i = 0; old && i < (1U << old_bits); i++)
		hlist_for_each_entry_safe(req, tmp, &old[i], hash_node)
			hlist_add_head(&req->hash_node,
				       &hash[hash_64(req->msg.seq, bits)]);
	WRITE_ONCE(t->answer_hash, hash);
	WRITE_ONCE(t->hash_bits, bits);
	spin_unlock_irqrestore(&t->lock, irq_flags);
	kvfree(old);
	return 0;
}

/**
 * dm_user_prepare_to_wait_lifo() - queue a request waiter, last come first
 * @t: the target whose wait queue (t->wq) the caller sleeps on.
 * @wait: the caller's entry, made by DEFINE_WAIT(): autoremove_wake_function
 *	takes a woken entry off the queue, so that the next call puts it back
 *	in front. Paired with finish_wait(&t->wq, @wait).
 * @state: the task state to sleep in.
 *
 * As prepare_to_wait_exclusive(), but the entry goes before the other
 * exclusive waiters, not after them: a request wakes the read() or
 * RING_ENTER caller that went to sleep last. A daemon's threads then share
 * the work only when it is more than one can keep up with; with little of
 * it, the same thread takes request after request while its cache is warm,
 * rather than every thread in turn, each woken for one.
 *
 * t->wq also holds poll() and epoll entries. Non-exclusive ones stay ahead
 * of every exclusive entry, so that each wake-up still reaches them;
 * EPOLLEXCLUSIVE ones (exclusive, added last) are woken only when no
 * read() or RING_ENTER caller sleeps. A queue of their own would spare
 * this walk over the poll entries, paid when a reader goes to sleep, but
 * would cost every request a second wake-up, paid on the map path.
 *
 * A caller that returns without taking a request it may have been woken
 * for (a signal, an error) passes the wake-up on.
 */
void dm_user_prepare_to_wait_lifo(struct dm_user_target *t,
				  struct wait_queue_entry *wait, int state)
{
	struct list_head *where = &t->wq.head;
	struct wait_queue_entry *pos;
	unsigned long flags;

	wait->flags |= WQ_FLAG_EXCLUSIVE;
	spin_lock_irqsave(&t->wq.lock, flags);
	if (list_empty(&wait->entry)) {
		/*
		 * Before the first exclusive entry, or last if there is none.
		 * Priority entries (first by rule) are not passed.
		 */
		list_for_each_entry(pos, &t->wq.head, entry) {
			if ((pos->flags & WQ_FLAG_EXCLUSIVE) &&
			    !(pos->flags & WQ_FLAG_PRIORITY)) {
				where = &pos->entry;
				break;
			}
		}
		list_add_tail(&wait->entry, where);
	}
	set_current_state(state);
	spin_unlock_irqrestore(&t->wq.lock, flags);
}

/* A larger cap lets backlogged requests through at once. */
void dm_user_set_max_queued_locked(struct dm_user_target *t,
				   unsigned int max_queued)
{
	lockdep_assert_held(&t->lock);
	WRITE_ONCE(t->max_queued, max_queued);
	if (dm_user_refill_locked(t))
		wake_up(&t->wq);
}

/*
 * Takes @req off whatever holds it (enum dm_user_req_state), leaving it on
 * no list and owned by nobody. @req must not be busy.
 */
static void dm_user_unlink_locked(struct dm_user_target *t,
				  struct dm_user_request *req)
{
	struct dm_user_channel *ch = req->owner;

	lockdep_assert_held(&t->lock);
	WARN_ON_ONCE(req->busy);

	switch (req->state) {
	case DM_USER_REQ_QUEUED:
		t->nr_queued--;
		break;
	case DM_USER_REQ_BACKLOG:
		t->nr_backlog--;
		break;
	case DM_USER_REQ_SENDING:
		ch->sending = NULL;
		t->nr_inflight--;
		break;
	case DM_USER_REQ_WAITING:
		hlist_del_init(&req->hash_node);
		t->nr_inflight--;
		break;
	case DM_USER_REQ_RECEIVING:
		ch->receiving = NULL;
		t->nr_inflight--;
		break;
	case DM_USER_REQ_RING:
		dm_user_ring_release_slot_locked(ch->ring, req);
		t->nr_inflight--;
		break;
	}
	list_del_init(&req->list);
	req->owner = NULL;
}

/*
 * Takes @req away from whatever holds it and puts it on @done to be
 * completed with @status once the lock is dropped. @req must not be busy.
 */
void dm_user_detach_locked(struct dm_user_target *t,
			   struct dm_user_request *req, struct list_head *done,
			   blk_status_t status)
{
	struct dm_user_op_stats *st = &t->stats[req->op];

	dm_user_unlink_locked(t, req);
	list_add_tail(&req->list, done);
	req->answer_status = status;

	/* A request pushed back to dm core is counted when it comes back. */
	if (status != BLK_STS_DM_REQUEUE) {
		st->requests++;
		st->bytes += req->msg.len;
		if (status != BLK_STS_OK)
			st->errors++;
	}

	if (dm_user_refill_locked(t))
		wake_up(&t->wq);
}

/**
 * dm_user_remap_check() - whether a remap answer may be taken
 * @t: the target.
 * @ch: the channel the answer came on.
 * @req: the request it answers, held by @ch.
 * @sector: the answer's sector, counted from the start of the target's
 *	range on the backing device.
 *
 * Return: NULL, or why the answer is refused.
 */
const char *dm_user_remap_check(struct dm_user_target *t,
				struct dm_user_channel *ch,
				struct dm_user_request *req, u64 sector)
{
	u64 sectors = req->msg.len >> SECTOR_SHIFT;

	lockdep_assert_held(&t->lock);
	if (!(READ_ONCE(ch->extensions) & DM_USER_EXT_REMAP))
		return "remap on a channel that did not negotiate it";
	/* Granted over a backing device, which a reload may take away. */
	if (!t->live->backing)
		return "remap on a target without a backing device";
	/* An empty flush has no sector: it is passed down as it is. */
	if (req->op == DM_USER_OP_FLUSH)
		return NULL;
	if (sector & ((t->block_size >> SECTOR_SHIFT) - 1))
		return "remap sector not a multiple of block_size";
	if (sector > t->live->len || sectors > t->live->len - sector)
		return "remap past the end of the backing range";
	return NULL;
}

/*
 * Takes @req, to be sent to @sector of the backing device, from its holder
 * onto @done, where completing it submits it there. Counted in remapping
 * until user_end_io(), so that the destructor keeps the backing device
 * until the bio is back.
 */
static void dm_user_remap_locked(struct dm_user_target *t,
				 struct dm_user_request *req, u64 sector,
				 struct list_head *done)
{
	lockdep_assert_held(&t->lock);
	atomic_inc(&t->remapping);
	dm_user_detach_locked(t, req, done, BLK_STS_OK);
	if (req->op != DM_USER_OP_FLUSH)
		req->msg.sector = sector;
	req->remap = true;
}

static sector_t dm_user_mapped_dest(const struct dm_user_claims *c,
				    unsigned int k, sector_t start,
				    sector_t end, sector_t *split);

/*
 * Takes the notification @req, let through, onto @done to be sent where
 * the mapped ranges in force send it, or, if a mapped range now begins or
 * ends inside it (changed while a channel held it), where they sent it
 * when it was mapped. Counted in passing[] as the map path's bios are, so
 * that a claim or map change that comes after waits for it to reach the
 * backing device.
 */
static void dm_user_let_through_locked(struct dm_user_target *t,
				       struct dm_user_request *req,
				       struct list_head *done)
{
	sector_t start = req->msg.sector, split, dest = req->notify_dest;
	sector_t end = start + (req->msg.len >> SECTOR_SHIFT);
	const struct dm_user_claims *c;

	lockdep_assert_held(&t->lock);
	rcu_read_lock();
	c = rcu_dereference(t->claims);
	if (c) {
		sector_t now = dm_user_mapped_dest(c, 1, start, end, &split);

		if (split == end)
			dest = now;
		req->passing = c->parity + 1;
		atomic_inc(&t->passing[c->parity]);
	} else {
		atomic_inc(&t->remapping);
	}
	rcu_read_unlock();
	dm_user_detach_locked(t, req, done, BLK_STS_OK);
	req->msg.sector = dest;
	req->remap = true;
}

/**
 * dm_user_answer_locked() - take an answer that brings no data
 * @t: the target.
 * @req: the request it answers, which no channel is copying.
 * @kind: dm_user_resp_status() of the answer's type, not negative.
 * @status: the status that gave.
 * @sector: for a remap, where the request goes, which
 *	dm_user_remap_check() accepted.
 * @done: where @req goes, to be completed or sent to the backing device
 *	once the lock is dropped.
 *
 * A write notification let through (DM_USER_RESP_SUCCESS) goes to the
 * backing device where it was going (dm_user_let_through_locked()).
 */
void dm_user_answer_locked(struct dm_user_target *t,
			   struct dm_user_request *req, int kind,
			   blk_status_t status, u64 sector,
			   struct list_head *done)
{
	lockdep_assert_held(&t->lock);
	if (kind == DM_USER_ANSWER_REMAP)
		t->nr_remapped++;
	if (req->notify) {
		t->nr_notified++;
		if (kind != DM_USER_ANSWER_REMAP && status == BLK_STS_OK) {
			dm_user_let_through_locked(t, req, done);
			return;
		}
	}
	if (kind == DM_USER_ANSWER_REMAP)
		dm_user_remap_locked(t, req, sector, done);
	else
		dm_user_detach_locked(t, req, done, status);
}

/*
 * Sends a remapped request's bio to the backing device. The caller keeps
 * the target alive (a channel holds its node). The bio keeps the live
 * table live: a suspend, which a table change needs, waits for it.
 */
static void dm_user_submit_remap(struct dm_user_target *t,
				 struct dm_user_request *req)
{
	struct dm_user_table *tt = READ_ONCE(t->live);
	struct bio *bio = dm_user_req_bio(req);

	bio_set_dev(bio, tt->backing->bdev);
	if (req->op != DM_USER_OP_FLUSH)
		bio->bi_iter.bi_sector = tt->backing_start + req->msg.sector;
	/* The bio may be completed, and req freed, before this returns. */
	dm_submit_bio_remap(bio, NULL);
}

/*
 * Completes the requests on @done, which no lock may be held over: a
 * completion may submit another bio to this target. A remapped request
 * is submitted to the backing device instead.
 */
void dm_user_complete_list(struct dm_user_target *t, struct list_head *done)
{
	struct dm_user_request *req, *next;

	list_for_each_entry_safe(req, next, done, list) {
		struct bio *bio = dm_user_req_bio(req);

		list_del(&req->list);
		if (req->remap) {
			dm_user_submit_remap(t, req);
			continue;
		}
		bio->bi_status = req->answer_status;
		/* Frees req: it is the bio's per-bio data. */
		bio_endio(bio);
	}
}

/*
 * Whether a daemon may have seen any byte of @req, or be copying one: then
 * only its channel's answer or close, or a timeout that resets the
 * channel, ends it.
 */
static bool dm_user_req_started(const struct dm_user_request *req)
{
	return req->busy || req->state != DM_USER_REQ_SENDING || req->sent;
}

/*
 * Resets @ch: a request it had started to read was taken from it, so the
 * daemon's view of the channel no longer matches the kernel's. Its read()
 * and write() fail from now on; readers and pollers wake to see it.
 */
static void dm_user_reset_channel_locked(struct dm_user_target *t,
					 struct dm_user_channel *ch)
{
	lockdep_assert_held(&t->lock);
	if (ch->reset)
		return;
	WRITE_ONCE(ch->reset, true);
	if (ch->ring)
		dm_user_ring_set_flags(ch->ring, DM_USER_RING_RESET);
	wake_up_all(&t->wq);
}

/*
 * Completes the requests @which selects with @status; of those, the busy
 * ones are marked aborted instead, for their channel to complete.
 */
void dm_user_fail_requests_locked(struct dm_user_target *t,
				  struct list_head *done, enum dm_user_take which,
				  blk_status_t status)
{
	struct dm_user_request *req, *next;
	struct dm_user_channel *ch;

	/* The backlog first: while it is not empty the queue is full. */
	list_for_each_entry_safe(req, next, &t->backlog, list)
		dm_user_detach_locked(t, req, done, status);
	list_for_each_entry_safe(req, next, &t->queue, list)
		dm_user_detach_locked(t, req, done, status);
	if (which == DM_USER_TAKE_QUEUED)
		return;

	list_for_each_entry(ch, &t->channels, node) {
		list_for_each_entry_safe(req, next, &ch->owned, list) {
			/* A reset channel has no byte stream left to keep. */
			if (which == DM_USER_TAKE_UNSTARTED && !ch->reset &&
			    dm_user_req_started(req))
				continue;
			if (!req->busy) {
				dm_user_detach_locked(t, req, done, status);
			} else if (!req->aborted) {
				req->aborted = true;
				req->abort_status = status;
			}
		}
	}
}

/* ------------------------------------------------------------------------
 * Daemon state: channels coming and going, the no-daemon clock, events
 */

static void dm_user_raise_event_locked(struct dm_user_target *t)
{
	lockdep_assert_held(&t->lock);
	if (!t->dead)
		queue_work(system_wq, &t->event_work);
}

/*
 * dm_table_event() takes a mutex, so it cannot run under the target lock.
 * The registry lock keeps the live table: a destructor takes it to change
 * the live table, and the last one cancels this work.
 */
static void dm_user_event_work(struct work_struct *work)
{
	struct dm_user_target *t = container_of(work, struct dm_user_target,
						 event_work);

	mutex_lock(&dm_user_registry_lock);
	dm_table_event(t->live->ti->table);
	mutex_unlock(&dm_user_registry_lock);
}

/*
 * What status and GET_INFO report, in one go. @ch, the channel that asks
 * or NULL, has then seen the last reload (no more POLLPRI).
 */
void dm_user_snapshot(struct dm_user_target *t, struct dm_user_channel *ch,
		      struct dm_user_snapshot *s)
{
	const struct dm_user_table *tt;
	unsigned long irq_flags;
	bool notify;

	spin_lock_irqsave(&t->lock, irq_flags);
	tt = t->live;
	s->size = tt->len;
	s->ops = dm_user_enabled_req_types(tt);
	s->backing_start = tt->backing_start;
	strscpy(s->backing_name, tt->backing_name, sizeof(s->backing_name));
	s->reloads = t->nr_reloads;
	if (ch) {
		WRITE_ONCE(ch->reloads_seen, t->nr_reloads);
		if (ch->ring)
			dm_user_ring_clear_flags(ch->ring,
						 DM_USER_RING_RELOADED);
	}
	s->channels = t->nr_channels;
	s->queued = t->nr_queued;
	s->backlog = t->nr_backlog;
	s->inflight = t->nr_inflight;
	if (t->nr_serving)
		s->state = DM_USER_DAEMON_ATTACHED;
	else if (t->no_daemon_failing)
		s->state = DM_USER_DAEMON_FAILING;
	else
		s->state = DM_USER_DAEMON_WAITING;
	s->requeued = t->nr_requeued;
	s->timeouts = t->nr_timeouts;
	s->bad_answers = t->nr_bad_answers;
	s->remapped = t->nr_remapped;
	s->notified = t->nr_notified;
	s->passed = atomic64_read(&t->nr_passed);
	s->claim_ranges = dm_user_claim_ranges(t, &notify);
	s->map_ranges = dm_user_map_ranges(t);
	memcpy(s->stats, t->stats, sizeof(s->stats));
	spin_unlock_irqrestore(&t->lock, irq_flags);
}

/* No daemon for too long: fail what waits, and new I/O until one comes. */
static void dm_user_give_up_locked(struct dm_user_target *t,
				   struct list_head *done)
{
	if (!t->no_daemon_failing) {
		t->no_daemon_failing = true;
		dm_user_raise_event_locked(t);
	}
	dm_user_fail_requests_locked(t, done, DM_USER_TAKE_QUEUED,
				     BLK_STS_IOERR);
}

/*
 * How long requests wait for a daemon, in seconds. A flushing suspend waits
 * for every request, the filesystem's freeze writes among them, so during
 * one even queue_if_no_daemon waits no longer than the default timeout:
 * the suspend stays bounded, and fails rather than hang.
 */
static unsigned int dm_user_no_daemon_secs(struct dm_user_target *t)
{
	unsigned int secs = t->no_daemon_timeout;

	if (secs == DM_USER_TIMEOUT_FOREVER && t->flush_suspending)
		return DM_USER_DEFAULT_NO_DAEMON_TIMEOUT;
	return secs;
}

/*
 * (Re)starts the no-daemon clock from now. Called with no channel open: at
 * resume, when the last channel closes, when a flushing suspend starts and
 * when no_daemon_timeout changes.
 */
static void dm_user_start_no_daemon_clock_locked(struct dm_user_target *t,
						 struct list_head *done)
{
	unsigned int secs;

	lockdep_assert_held(&t->lock);
	if (t->dead || t->nr_serving)
		return;
	secs = dm_user_no_daemon_secs(t);
	t->no_daemon_since = jiffies;
	if (!secs) {
		dm_user_give_up_locked(t, done);
		return;
	}
	t->no_daemon_failing = false;
	if (secs == DM_USER_TIMEOUT_FOREVER)
		cancel_delayed_work(&t->no_daemon_work);
	else
		mod_delayed_work(system_wq, &t->no_daemon_work,
				 (unsigned long)secs * HZ);
}

static void dm_user_no_daemon_work(struct work_struct *work)
{
	struct dm_user_target *t = container_of(to_delayed_work(work),
						 struct dm_user_target,
						 no_daemon_work);
	bool gave_up = false, notify;
	unsigned long deadline;
	unsigned int secs;
	LIST_HEAD(done);

	spin_lock_irq(&t->lock);
	if (t->dead || t->nr_serving || t->no_daemon_failing)
		goto out;
	secs = dm_user_no_daemon_secs(t);
	if (secs == DM_USER_TIMEOUT_FOREVER)
		goto out;
	/*
	 * Over a backing device with nothing claimed and no notifications,
	 * all I/O flows without a daemon: nothing to give up on. Looked at
	 * again a period later, for a change made meanwhile.
	 */
	if (t->live->backing && !dm_user_claim_ranges(t, &notify) && !notify) {
		mod_delayed_work(system_wq, &t->no_daemon_work,
				 (unsigned long)secs * HZ);
		goto out;
	}
	/* A channel came and went since this run was queued: look later. */
	deadline = t->no_daemon_since + (unsigned long)secs * HZ;
	if (time_before(jiffies, deadline)) {
		mod_delayed_work(system_wq, &t->no_daemon_work,
				 deadline - jiffies);
		goto out;
	}
	dm_user_give_up_locked(t, &done);
	gave_up = true;
out:
	spin_unlock_irq(&t->lock);
	dm_user_complete_list(t, &done);
	if (gave_up)
		DMWARN("%s: no daemon for %u s: failing I/O until one attaches",
		       t->name, secs);
}

void dm_user_set_no_daemon_timeout_locked(struct dm_user_target *t,
					  unsigned int secs,
					  struct list_head *done)
{
	WRITE_ONCE(t->no_daemon_timeout, secs);
	dm_user_start_no_daemon_clock_locked(t, done);
}

/* @ch calls read() for the first time: a daemon is attached. */
void dm_user_channel_serving_locked(struct dm_user_target *t,
				    struct dm_user_channel *ch)
{
	lockdep_assert_held(&t->lock);
	WRITE_ONCE(ch->serving, true);
	if (t->nr_serving++)
		return;
	t->no_daemon_failing = false;
	cancel_delayed_work(&t->no_daemon_work);
	dm_user_raise_event_locked(t);
}

/*
 * Whether a request given back by a channel can wait on our own queue, or
 * else the status to complete it with.
 */
static blk_status_t dm_user_giveback_status_locked(struct dm_user_target *t)
{
	if (t->dead)
		return BLK_STS_IOERR;
	/* dm core holds it and maps it again after resume. */
	if (t->suspending && dm_noflush_suspending(t->live->ti))
		return BLK_STS_DM_REQUEUE;
	/*
	 * Otherwise the no-daemon policy holds, during a flushing suspend
	 * too: the filesystem's freeze writes wait for a daemon.
	 */
	if (!t->nr_serving && t->no_daemon_failing)
		return BLK_STS_IOERR;
	return BLK_STS_OK;
}

/*
 * Puts the requests @ch read, back on the queue, in age order and with
 * nothing of their old delivery kept: the next channel gets each whole, a
 * write with all its data, under a new seq, so that no answer meant for
 * the old delivery can complete it. Both lists are in age order, so one
 * forward pass merges them: the given-back requests, older than what
 * waits, normally all go at the head.
 */
static void dm_user_requeue_owned_locked(struct dm_user_target *t,
					 struct dm_user_channel *ch,
					 struct list_head *done)
{
	blk_status_t status = dm_user_giveback_status_locked(t);
	struct dm_user_request *req, *next;
	struct list_head *pos = t->queue.next;

	list_for_each_entry_safe(req, next, &ch->owned, list) {
		if (status != BLK_STS_OK) {
			dm_user_detach_locked(t, req, done, status);
			continue;
		}
		/* In flight becomes queued: the cap's count does not change. */
		dm_user_unlink_locked(t, req);
		/*
		 * Strictly older ones only: with the same start (one jiffy)
		 * the given-back request goes first, as it was taken first.
		 */
		while (pos != &t->queue &&
		       time_before(list_entry(pos, struct dm_user_request,
					      list)->start, req->start))
			pos = pos->next;
		list_add_tail(&req->list, pos);
		req->state = DM_USER_REQ_QUEUED;
		t->nr_queued++;
		t->nr_requeued++;
	}
}

/* The last channel is gone: what waits on the queue follows the policy. */
static void dm_user_orphaned_locked(struct dm_user_target *t,
				    struct list_head *done)
{
	blk_status_t status = dm_user_giveback_status_locked(t);

	dm_user_raise_event_locked(t);
	if (status != BLK_STS_OK)
		dm_user_fail_requests_locked(t, done, DM_USER_TAKE_QUEUED,
					     status);
	/* A suspended target's clock starts at resume. */
	else if (!t->suspending || t->flush_suspending)
		dm_user_start_no_daemon_clock_locked(t, done);
}

/*
 * @ch is closing. No call on it is running, so none of its requests is
 * busy: they go back to the head of the queue, oldest first.
 */
void dm_user_channel_closed_locked(struct dm_user_target *t,
				   struct dm_user_channel *ch,
				   struct list_head *done)
{
	lockdep_assert_held(&t->lock);
	list_del_init(&ch->node);
	t->nr_channels--;
	if (!ch->serving)
		return;
	t->nr_serving--;
	dm_user_requeue_owned_locked(t, ch, done);
	if (!t->nr_serving)
		dm_user_orphaned_locked(t, done);
	if (!list_empty(&t->queue))
		wake_up(&t->wq);
}

/* ------------------------------------------------------------------------
 * request_timeout
 */

/*
 * Fails @req if it is older than @timeout. Returns false if it is not due
 * yet, with its deadline kept in @next if that is the earliest (valid when
 * *@pending).
 */
static bool dm_user_expire_locked(struct dm_user_target *t,
				  struct dm_user_request *req,
				  unsigned long now, unsigned long timeout,
				  unsigned long *next, bool *pending,
				  unsigned int *expired, struct list_head *done)
{
	unsigned long deadline = req->start + timeout;

	if (req->aborted)
		return true;
	if (time_before(now, deadline)) {
		if (!*pending || time_before(deadline, *next))
			*next = deadline;
		*pending = true;
		return false;
	}
	t->nr_timeouts++;
	(*expired)++;
	/*
	 * Its channel cannot finish the message it started, nor tell its
	 * copy from one served again: it is reset.
	 */
	if (req->owner && dm_user_req_started(req))
		dm_user_reset_channel_locked(t, req->owner);
	if (req->busy) {
		/* The channel copying its data completes it. */
		req->aborted = true;
		req->abort_status = BLK_STS_TIMEOUT;
	} else {
		dm_user_detach_locked(t, req, done, BLK_STS_TIMEOUT);
	}
	return true;
}

/*
 * Fails the requests of @list that are due. Every list that holds requests
 * is kept in the order they arrived (see dm_user_insert_by_age_locked()),
 * so the scan stops at the first one not due: its work is bounded by what
 * expired, not by how many requests wait.
 */
static void dm_user_expire_list_locked(struct dm_user_target *t,
				       struct list_head *list,
				       unsigned long now, unsigned long timeout,
				       unsigned long *next, bool *pending,
				       unsigned int *expired,
				       struct list_head *done)
{
	struct dm_user_request *req, *tmp;

	list_for_each_entry_safe(req, tmp, list, list)
		if (!dm_user_expire_locked(t, req, now, timeout, next, pending,
					   expired, done))
			break;
}

static void dm_user_timeout_work(struct work_struct *work)
{
	struct dm_user_target *t = container_of(to_delayed_work(work),
						 struct dm_user_target,
						 timeout_work);
	unsigned long now, timeout, next = 0;
	struct dm_user_channel *ch;
	unsigned int expired = 0, secs;
	bool pending = false;
	LIST_HEAD(done);

	spin_lock_irq(&t->lock);
	secs = t->request_timeout;
	if (t->dead || !secs) {
		t->timeout_armed = false;
		spin_unlock_irq(&t->lock);
		return;
	}
	now = jiffies;
	timeout = (unsigned long)secs * HZ;
	/* The backlog first: while it is not empty the queue is full. */
	dm_user_expire_list_locked(t, &t->backlog, now, timeout, &next,
				   &pending, &expired, &done);
	dm_user_expire_list_locked(t, &t->queue, now, timeout, &next,
				   &pending, &expired, &done);
	list_for_each_entry(ch, &t->channels, node)
		dm_user_expire_list_locked(t, &ch->owned, now, timeout, &next,
					   &pending, &expired, &done);
	t->timeout_armed = pending;
	/*
	 * Timeouts are in seconds: looking again at most ten times a second
	 * bounds the number of scans however the deadlines are spread.
	 */
	if (pending)
		queue_delayed_work(system_wq, &t->timeout_work,
				   max(next - now, (unsigned long)HZ / 10));
	if (expired)
		dm_user_raise_event_locked(t);
	spin_unlock_irq(&t->lock);

	dm_user_complete_list(t, &done);
	if (expired)
		DMWARN_LIMIT("%s: %u request%s not answered within %u s failed",
			     t->name, expired, expired == 1 ? "" : "s", secs);
}

/* Looks at once: requests may already be older than the new timeout. */
void dm_user_set_request_timeout_locked(struct dm_user_target *t,
					unsigned int secs)
{
	lockdep_assert_held(&t->lock);
	WRITE_ONCE(t->request_timeout, secs);
	if (!secs || t->dead ||
	    !(t->nr_queued + t->nr_backlog + t->nr_inflight))
		return;
	t->timeout_armed = true;
	mod_delayed_work(system_wq, &t->timeout_work, 0);
}

/* ------------------------------------------------------------------------
 * Claimed ranges
 */

/* The index of the first of @nr ranges that ends after @sector, or @nr. */
static unsigned int dm_user_claims_find(const struct dm_user_range *range,
					unsigned int nr, sector_t sector)
{
	unsigned int lo = 0, hi = nr;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (range[mid].end <= sector)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Room for @nr claimed ranges and views, then for @nr_map mapped ranges,
 * which start at map[0] (map[1] is left for the caller to place). The
 * control ioctl allocates here: never waiting on writeback to us.
 */
static struct dm_user_claims *dm_user_alloc_claims(unsigned int nr,
						   unsigned int nr_map)
{
	unsigned int noio_flags = memalloc_noio_save();
	struct dm_user_claims *c;

	c = kvmalloc(struct_size(c, range, size_add(nr, nr_map)), GFP_KERNEL);
	memalloc_noio_restore(noio_flags);
	if (c) {
		c->nr = 0;
		c->write_ranges = 0;
		memset(c->nr_cls, 0, sizeof(c->nr_cls));
		memset(c->cls, 0, sizeof(c->cls));
		memset(c->nr_map, 0, sizeof(c->nr_map));
		c->map[0] = c->range + nr;
		c->map[1] = c->map[0];
	}
	return c;
}

/*
 * Appends [@start, @end) claimed for @ops, after the ranges @c has: merged
 * into the last one where it ends at @start with the same ops, left out
 * where it is empty or claimed for nothing.
 */
static void dm_user_claims_add(struct dm_user_claims *c, sector_t start,
			       sector_t end, unsigned int ops)
{
	struct dm_user_range *last = c->nr ? &c->range[c->nr - 1] : NULL;

	if (start >= end || !ops)
		return;
	if (last && last->end == start && last->ops == ops) {
		last->end = end;
		return;
	}
	c->range[c->nr].start = start;
	c->range[c->nr].end = end;
	c->range[c->nr].ops = ops;
	c->nr++;
	if (ops & DM_USER_CLAIM_WRITES)
		c->write_ranges++;
}

/* The class of @ops's view: its index in dm_user_claims.cls. */
static const unsigned int dm_user_claim_class[2] = {
	DM_USER_CLAIM_READS, DM_USER_CLAIM_WRITES
};

/*
 * Appends [@start, @end) mapped to @dest to the @*nr mapped ranges at @m:
 * merged into the last one where it goes on from it on both sides, left
 * out where it is empty.
 */
static void dm_user_map_add(struct dm_user_range *m, unsigned int *nr,
			    sector_t start, sector_t end, sector_t dest)
{
	struct dm_user_range *last = *nr ? &m[*nr - 1] : NULL;

	if (start >= end)
		return;
	if (last && last->end == start &&
	    last->dest + (last->end - last->start) == dest) {
		last->end = end;
		return;
	}
	m[*nr].start = start;
	m[*nr].end = end;
	m[*nr].dest = dest;
	(*nr)++;
}

/*
 * The @n mapped ranges @old of one class, into @m (room for @n + 2: one
 * range cut in two, and the new one), with [@start, @end) mapped to @dest
 * if @map, or no longer mapped (as when @dest is @start). Returns how many
 * @m holds.
 */
static unsigned int dm_user_map_edit(const struct dm_user_range *old,
				     unsigned int n, struct dm_user_range *m,
				     bool map, sector_t start, sector_t end,
				     sector_t dest)
{
	/* Mapped to itself is not mapped: no range, no cut. */
	bool placed = !map || dest == start;
	unsigned int i, nr = 0;
	sector_t from;

	for (i = 0; i < n; i++) {
		const struct dm_user_range *r = &old[i];

		if (r->end <= start) {
			dm_user_map_add(m, &nr, r->start, r->end, r->dest);
			continue;
		}
		/* It ends after @start: the change goes before the rest. */
		if (r->start < start)
			dm_user_map_add(m, &nr, r->start, start, r->dest);
		if (!placed) {
			dm_user_map_add(m, &nr, start, end, dest);
			placed = true;
		}
		from = max(r->start, end);
		if (r->end > from)
			dm_user_map_add(m, &nr, from, r->end,
					r->dest + (from - r->start));
	}
	if (!placed)
		dm_user_map_add(m, &nr, start, end, dest);
	return nr;
}

/*
 * The claimed ranges of @c (made with room for no more) in a new copy of
 * exactly their size, with the view of each class after them and the
 * mapped ranges @c points to after those; @c is freed. NULL without the
 * memory.
 */
static struct dm_user_claims *dm_user_claims_seal(struct dm_user_claims *c)
{
	unsigned int k, i, n[2] = { 0, 0 };
	struct dm_user_claims *s;

	/* A class's ranges merge where they touch: count what remains. */
	for (k = 0; k < 2; k++)
		for (i = 0; i < c->nr; i++)
			if ((c->range[i].ops & dm_user_claim_class[k]) &&
			    !(i && (c->range[i - 1].ops & dm_user_claim_class[k]) &&
			      c->range[i - 1].end == c->range[i].start))
				n[k]++;
	s = dm_user_alloc_claims(c->nr + n[0] + n[1],
				 c->nr_map[0] + c->nr_map[1]);
	if (!s) {
		kvfree(c);
		return NULL;
	}
	s->parity = c->parity;
	s->notify_writes = c->notify_writes;
	s->write_ranges = c->write_ranges;
	s->nr = c->nr;
	memcpy(s->range, c->range, c->nr * sizeof(c->range[0]));
	s->cls[0] = s->range + c->nr;
	s->cls[1] = s->cls[0] + n[0];
	for (k = 0; k < 2; k++) {
		struct dm_user_range *v = s->cls[k];
		unsigned int m = 0;

		for (i = 0; i < c->nr; i++) {
			const struct dm_user_range *r = &c->range[i];

			if (!(r->ops & dm_user_claim_class[k]))
				continue;
			if (m && v[m - 1].end == r->start) {
				v[m - 1].end = r->end;
				continue;
			}
			v[m].start = r->start;
			v[m].end = r->end;
			v[m].ops = dm_user_claim_class[k];
			m++;
		}
		s->nr_cls[k] = m;
	}
	s->map[1] = s->map[0] + c->nr_map[0];
	for (k = 0; k < 2; k++) {
		memcpy(s->map[k], c->map[k], c->nr_map[k] * sizeof(c->map[k][0]));
		s->nr_map[k] = c->nr_map[k];
	}
	kvfree(c);
	return s;
}

/*
 * Whether @a and @b claim and map the same (field by field: claimed
 * ranges have padding).
 */
static bool dm_user_claims_same(const struct dm_user_claims *a,
				const struct dm_user_claims *b)
{
	unsigned int i, k;

	if (a->nr != b->nr || a->notify_writes != b->notify_writes)
		return false;
	for (i = 0; i < a->nr; i++)
		if (a->range[i].start != b->range[i].start ||
		    a->range[i].end != b->range[i].end ||
		    a->range[i].ops != b->range[i].ops)
			return false;
	for (k = 0; k < 2; k++) {
		if (a->nr_map[k] != b->nr_map[k])
			return false;
		for (i = 0; i < a->nr_map[k]; i++)
			if (a->map[k][i].start != b->map[k][i].start ||
			    a->map[k][i].end != b->map[k][i].end ||
			    a->map[k][i].dest != b->map[k][i].dest)
				return false;
	}
	return true;
}

/* How much of [@start, @end) the claims for @ops cover. */
enum dm_user_cover { DM_USER_COVER_NONE, DM_USER_COVER_PART,
		     DM_USER_COVER_ALL };

/*
 * One binary search in the view of the class of @ops (reads, or the
 * operations that change data), whose touching ranges are merged: the
 * first range that ends after @start either misses [@start, @end), or
 * covers all of it, or some.
 */
static enum dm_user_cover dm_user_claims_cover(const struct dm_user_claims *c,
					       sector_t start, sector_t end,
					       unsigned int ops)
{
	unsigned int k = ops == DM_USER_CLAIM_READS ? 0 : 1;
	const struct dm_user_range *v = c->cls[k];
	unsigned int i = dm_user_claims_find(v, c->nr_cls[k], start);

	if (i == c->nr_cls[k] || v[i].start >= end)
		return DM_USER_COVER_NONE;
	if (v[i].start <= start && v[i].end >= end)
		return DM_USER_COVER_ALL;
	return DM_USER_COVER_PART;
}

/*
 * Where the bio [@start, @end) of class @k goes on the backing device,
 * counted as a remap answer's sector is: from where a mapped range sends
 * @start, or from @start itself; *@split is where that stops holding (a
 * mapped range begins or ends there), or @end. One binary search.
 */
static sector_t dm_user_mapped_dest(const struct dm_user_claims *c,
				    unsigned int k, sector_t start,
				    sector_t end, sector_t *split)
{
	const struct dm_user_range *m = c->map[k];
	unsigned int i = dm_user_claims_find(m, c->nr_map[k], start);

	if (i == c->nr_map[k] || m[i].start >= end) {
		*split = end;
		return start;
	}
	if (m[i].start > start) {
		*split = m[i].start;
		return start;
	}
	*split = min(end, m[i].end);
	return m[i].dest + (start - m[i].start);
}

/*
 * @old changed by @op, in a new copy: with [@start, @end) claimed for
 * @ops besides what it was claimed for, or released for @ops, sorted,
 * disjoint, adjacent ranges with the same ops merged; or mapped to @dest
 * for the classes of @ops, or no longer mapped for them; or with write
 * notifications turned on or off. A claim makes at most 2n + 1 ranges of
 * n (W, RW, W, ... RW, W where it spans n ranges claimed for reads alone),
 * a release n + 2 (one range split in three): 2n + 2 entries suffice; the
 * copy published has exactly what it needs (dm_user_claims_seal()).
 * ERR_PTR(-E2BIG) past @max claimed ranges, or past @max mapped ranges of
 * both classes together; or -ENOMEM.
 */
static struct dm_user_claims *
dm_user_claims_edit(const struct dm_user_claims *old,
		    enum dm_user_claims_op op, sector_t start, sector_t end,
		    unsigned int ops, sector_t dest, unsigned int max)
{
	struct dm_user_claims *c =
		dm_user_alloc_claims(2 * old->nr + 2, old->nr_map[0] +
				     old->nr_map[1] + 4);
	bool claim = op == DM_USER_CLAIM;
	bool edit = claim || op == DM_USER_RELEASE;
	bool map = op == DM_USER_MAP || op == DM_USER_UNMAP;
	/* Where the part of [start, end) no old range covers resumes. */
	sector_t gap = start;
	unsigned int i, k;

	if (!c)
		return ERR_PTR(-ENOMEM);
	c->notify_writes = op == DM_USER_NOTIFY_ON ? true :
			   op == DM_USER_NOTIFY_OFF ? false :
			   old->notify_writes;
	for (i = 0; i < old->nr; i++) {
		const struct dm_user_range *r = &old->range[i];
		sector_t from, to;

		if (!edit || r->end <= start || r->start >= end) {
			/* Before it, a gap of the change's range. */
			if (claim && r->start >= end && gap < end) {
				dm_user_claims_add(c, gap, end, ops);
				gap = end;
			}
			dm_user_claims_add(c, r->start, r->end, r->ops);
			continue;
		}
		from = max(r->start, start);
		to = min(r->end, end);
		dm_user_claims_add(c, r->start, from, r->ops);
		if (claim)
			dm_user_claims_add(c, gap, from, ops);
		dm_user_claims_add(c, from, to,
				   claim ? r->ops | ops : r->ops & ~ops);
		gap = to;
		dm_user_claims_add(c, to, r->end, r->ops);
	}
	if (claim)
		dm_user_claims_add(c, gap, end, ops);
	/* Each class can gain two mapped ranges (one cut in two, one new). */
	c->map[1] = c->map[0] + old->nr_map[0] + 2;
	for (k = 0; k < 2; k++) {
		if (map && (ops & dm_user_claim_class[k])) {
			c->nr_map[k] = dm_user_map_edit(old->map[k],
							old->nr_map[k],
							c->map[k],
							op == DM_USER_MAP,
							start, end, dest);
			continue;
		}
		memcpy(c->map[k], old->map[k],
		       old->nr_map[k] * sizeof(old->map[k][0]));
		c->nr_map[k] = old->nr_map[k];
	}
	/*
	 * A reload may have left more than a lower max: a change that does
	 * not add to them is still taken, so that releases bring them under.
	 * Claimed and mapped ranges are bounded each on their own.
	 */
	if ((c->nr > max && c->nr > old->nr) ||
	    (c->nr_map[0] + c->nr_map[1] > max &&
	     c->nr_map[0] + c->nr_map[1] > old->nr_map[0] + old->nr_map[1])) {
		kvfree(c);
		return ERR_PTR(-E2BIG);
	}
	c = dm_user_claims_seal(c);
	return c ? c : ERR_PTR(-ENOMEM);
}

/*
 * Notifications still queued that the claims @c now cover become what
 * they would be if mapped now: claimed writes, which go to the daemon with
 * their data, so that once a claim returns nothing the daemon has not
 * seen reaches the range. So do those that a mapped range of @c now begins
 * or ends inside, which the map path would have cut and no longer can;
 * they are marked PARTLY_CLAIMED, as not all of them is claimed. Those a
 * channel has read are its own to answer.
 */
static void dm_user_claim_notifications(struct dm_user_target *t,
					const struct dm_user_claims *c)
{
	struct list_head *lists[] = { &t->queue, &t->backlog };
	struct dm_user_request *req;
	enum dm_user_cover cover;
	sector_t start, end, split;
	unsigned int k;

	spin_lock_irq(&t->lock);
	for (k = 0; k < ARRAY_SIZE(lists); k++) {
		list_for_each_entry(req, lists[k], list) {
			if (!req->notify)
				continue;
			start = req->msg.sector;
			end = start + (req->msg.len >> SECTOR_SHIFT);
			cover = dm_user_claims_cover(c, start, end,
						     DM_USER_CLAIM_WRITES);
			if (cover == DM_USER_COVER_NONE) {
				dm_user_mapped_dest(c, 1, start, end, &split);
				if (split == end)
					continue;
				cover = DM_USER_COVER_PART;
			}
			req->notify = false;
			req->msg.type &= ~(u64)DM_USER_REQ_NOTIFY;
			if (cover == DM_USER_COVER_PART)
				req->msg.flags |=
					DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED;
		}
	}
	spin_unlock_irq(&t->lock);
}

/* Waits for the bios mapped under claims of @parity to leave. */
static int dm_user_claims_drain(struct dm_user_target *t,
				unsigned int parity)
{
	return wait_event_killable(t->backing_wq,
				   !atomic_read(&t->passing[parity]));
}

/**
 * dm_user_change_claims() - claim, release, map or unmap a range of a
 *	target, or turn its write notifications on or off
 * @t: the target.
 * @op: claim the range (its I/O goes to the daemon), release it (its I/O
 *	goes straight to the backing device), map it (its I/O not claimed
 *	goes to the backing device at @dest), unmap it (at its own sector
 *	again), or turn notifications on or off (@start, @len, @ops and
 *	@dest are not used).
 * @start: first sector, from the start of the target, in whole blocks.
 * @len: sectors, in whole blocks, not 0.
 * @ops: for which I/O: DM_USER_CLAIM_READS, DM_USER_CLAIM_WRITES or both.
 * @dest: for a map, where @start goes, in whole blocks from the start of
 *	the target's range on the backing device, as a remap answer's
 *	sector.
 * @nr: out: the claimed ranges after the change; for a map or an unmap,
 *	the mapped ranges of both classes.
 *
 * Publishes the new claims, then waits until no bio mapped under the old
 * ones is still on its way to the backing device: once a claim returns,
 * only the daemon reaches the range, once a map or unmap returns, nothing
 * goes where the range was mapped before, and once notifications are on,
 * no write reaches the backing device without one.
 *
 * Return: 0; -EOPNOTSUPP without a backing device, -ERANGE for a range
 * (or, mapped, its destination) past the end of the target, -E2BIG for
 * more ranges than max_claims, -ENOMEM, all with nothing changed;
 * -ERESTARTSYS if the caller was killed while it waited for the lock
 * (nothing changed); -EINTR if it was killed while it waited for those
 * bios (the change is made, and the next one finishes the wait).
 */
int dm_user_change_claims(struct dm_user_target *t, enum dm_user_claims_op op,
			  sector_t start, sector_t len, unsigned int ops,
			  sector_t dest, unsigned int *nr)
{
	struct dm_user_claims *old, *c;
	bool map;
	int r;

	/* Killed: nothing changed, and the caller never sees this. */
	if (mutex_lock_killable(&t->claims_lock))
		return -ERESTARTSYS;
	old = rcu_dereference_protected(t->claims,
					lockdep_is_held(&t->claims_lock));
	/*
	 * The live table changes under this lock too; between a swap and a
	 * takeover it may be one whose claims are not made yet.
	 */
	r = -EOPNOTSUPP;
	if (!old || !t->live->backing)
		goto out;
	r = -ERANGE;
	if (op != DM_USER_NOTIFY_ON && op != DM_USER_NOTIFY_OFF &&
	    (start > t->claims_len || len > t->claims_len - start))
		goto out;
	if (op == DM_USER_MAP &&
	    (dest > t->claims_len || len > t->claims_len - dest))
		goto out;
	map = op == DM_USER_MAP || op == DM_USER_UNMAP;
	*nr = map ? old->nr_map[0] + old->nr_map[1] : old->nr;
	r = 0;
	/* Nothing to change, nor to wait for. */
	if ((op == DM_USER_NOTIFY_ON && old->notify_writes) ||
	    (op == DM_USER_NOTIFY_OFF && !old->notify_writes))
		goto out;
	/* The parity flipped to must have drained from the change before. */
	if (t->claims_draining) {
		r = dm_user_claims_drain(t, old->parity ^ 1);
		if (r)
			goto out;
		t->claims_draining = false;
	}
	c = dm_user_claims_edit(old, op, start, start + len, ops, dest,
				t->live->max_claims);
	if (IS_ERR(c)) {
		r = PTR_ERR(c);
		goto out;
	}
	/*
	 * Nothing changes: what it asks is in force, and the change that
	 * made it so has waited (or the wait above finished it). No grace
	 * period then, which a daemon claiming what it has pays often.
	 */
	if (dm_user_claims_same(c, old)) {
		kvfree(c);
		goto out;
	}
	c->parity = old->parity ^ 1;
	rcu_assign_pointer(t->claims, c);
	*nr = map ? c->nr_map[0] + c->nr_map[1] : c->nr;
	/* Every bio that saw the old claims has counted itself by now. */
	synchronize_rcu();
	kvfree(old);
	/* Only a claim or map change for writes takes notifications. */
	if ((op == DM_USER_CLAIM || map) && (ops & DM_USER_CLAIM_WRITES))
		dm_user_claim_notifications(t, c);
	/*
	 * Turning notifications off promises nothing about I/O on its way:
	 * the next change waits for it.
	 */
	if (op == DM_USER_NOTIFY_OFF) {
		t->claims_draining = true;
		goto out;
	}
	r = dm_user_claims_drain(t, c->parity ^ 1);
	if (r) {
		t->claims_draining = true;
		r = -EINTR;
	}
out:
	mutex_unlock(&t->claims_lock);
	return r;
}

/* Whether the live table has a backing device; a reload may change it. */
bool dm_user_has_backing(struct dm_user_target *t)
{
	unsigned long irq_flags;
	bool r;

	spin_lock_irqsave(&t->lock, irq_flags);
	r = t->live->backing;
	spin_unlock_irqrestore(&t->lock, irq_flags);
	return r;
}

/* The length of the live table, in sectors; a reload may change it. */
sector_t dm_user_size(struct dm_user_target *t)
{
	unsigned long irq_flags;
	sector_t len;

	spin_lock_irqsave(&t->lock, irq_flags);
	len = t->live->len;
	spin_unlock_irqrestore(&t->lock, irq_flags);
	return len;
}

/*
 * The number of claimed ranges, and in *@notify_writes whether writes
 * outside them are notified; 0 and false without a backing device.
 */
unsigned int dm_user_claim_ranges(struct dm_user_target *t,
				  bool *notify_writes)
{
	const struct dm_user_claims *c;
	unsigned int nr = 0;

	*notify_writes = false;
	rcu_read_lock();
	c = rcu_dereference(t->claims);
	if (c) {
		nr = c->nr;
		*notify_writes = c->notify_writes;
	}
	rcu_read_unlock();
	return nr;
}

/* The number of mapped ranges, both classes; 0 without a backing device. */
unsigned int dm_user_map_ranges(struct dm_user_target *t)
{
	const struct dm_user_claims *c;
	unsigned int nr = 0;

	rcu_read_lock();
	c = rcu_dereference(t->claims);
	if (c)
		nr = c->nr_map[0] + c->nr_map[1];
	rcu_read_unlock();
	return nr;
}

/* ------------------------------------------------------------------------
 * The map path: never sleeps, never allocates, takes only the target lock.
 */

static u64 dm_user_bio_flags(struct bio *bio)
{
	blk_opf_t opf = bio->bi_opf;
	u64 flags = 0;

	if (opf & REQ_FAILFAST_DEV)
		flags |= DM_USER_REQ_MAP_FLAG_FAILFAST_DEV;
	if (opf & REQ_FAILFAST_TRANSPORT)
		flags |= DM_USER_REQ_MAP_FLAG_FAILFAST_TRANSPORT;
	if (opf & REQ_FAILFAST_DRIVER)
		flags |= DM_USER_REQ_MAP_FLAG_FAILFAST_DRIVER;
	if (opf & REQ_SYNC)
		flags |= DM_USER_REQ_MAP_FLAG_SYNC;
	if (opf & REQ_META)
		flags |= DM_USER_REQ_MAP_FLAG_META;
	if (opf & REQ_PRIO)
		flags |= DM_USER_REQ_MAP_FLAG_PRIO;
	if (opf & REQ_NOMERGE)
		flags |= DM_USER_REQ_MAP_FLAG_NOMERGE;
	if (opf & REQ_IDLE)
		flags |= DM_USER_REQ_MAP_FLAG_IDLE;
	if (opf & REQ_INTEGRITY)
		flags |= DM_USER_REQ_MAP_FLAG_INTEGRITY;
	if (opf & REQ_FUA)
		flags |= DM_USER_REQ_MAP_FLAG_FUA;
	if (opf & REQ_PREFLUSH)
		flags |= DM_USER_REQ_MAP_FLAG_PREFLUSH;
	if (opf & REQ_RAHEAD)
		flags |= DM_USER_REQ_MAP_FLAG_RAHEAD;
	if (opf & REQ_BACKGROUND)
		flags |= DM_USER_REQ_MAP_FLAG_BACKGROUND;
	if (opf & REQ_NOWAIT)
		flags |= DM_USER_REQ_MAP_FLAG_NOWAIT;
	if (opf & DM_USER_COMPAT_REQ_CGROUP_PUNT)
		flags |= DM_USER_REQ_MAP_FLAG_CGROUP_PUNT;
	if (opf & REQ_NOUNMAP)
		flags |= DM_USER_REQ_MAP_FLAG_NOUNMAP;
	if (opf & REQ_POLLED)
		flags |= DM_USER_REQ_MAP_FLAG_HIPRI;
	if (opf & REQ_DRV)
		flags |= DM_USER_REQ_MAP_FLAG_DRV;
	if (opf & REQ_SWAP)
		flags |= DM_USER_REQ_MAP_FLAG_SWAP;
	return flags;
}

/* Returns the operation of @bio, or DM_USER_NR_OPS if it has none we serve. */
static enum dm_user_op dm_user_bio_op(struct bio *bio)
{
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		return DM_USER_OP_READ;
	case REQ_OP_WRITE:
		if (!bio->bi_iter.bi_size && (bio->bi_opf & REQ_PREFLUSH))
			return DM_USER_OP_FLUSH;
		return DM_USER_OP_WRITE;
	case REQ_OP_DISCARD:
		return DM_USER_OP_DISCARD;
	case REQ_OP_WRITE_ZEROES:
		return DM_USER_OP_WRITE_ZEROES;
	case REQ_OP_SECURE_ERASE:
		return DM_USER_OP_SECURE_ERASE;
	default:
		return DM_USER_NR_OPS;
	}
}

/*
 * dm_user_map_backing(): the bio is the daemon's, as a request wholly or
 * partly claimed, or as a write notification.
 */
#define DM_USER_MAP_CLAIMED	(-1)
#define DM_USER_MAP_PARTLY	(-2)
#define DM_USER_MAP_NOTIFY	(-3)

/*
 * Over a backing device, sends @bio straight there unless it touches a
 * claimed range or is a write to notify, under rcu_read_lock() alone: to
 * its own sector, or where a mapped range sends it, cut where a mapped
 * range begins or ends. An empty flush comes twice (num_flush_bios): the
 * first goes to the backing device, the second to the daemon, whose cache
 * holds what it serves, if it holds a claim. Returns a DM_MAPIO_* code or
 * a DM_USER_MAP_* one; for DM_USER_MAP_NOTIFY, *@notify_dest is where the
 * write goes once let through.
 */
static int dm_user_map_backing(struct dm_target *ti, struct dm_user_table *tt,
			       struct bio *bio, struct dm_user_request *req,
			       enum dm_user_op op, sector_t *notify_dest)
{
	struct dm_user_target *t = tt->t;
	const struct dm_user_claims *c;
	enum dm_user_cover cover;
	sector_t start, end, split, dest = 0;
	unsigned int writes;

	rcu_read_lock();
	c = rcu_dereference(t->claims);
	if (op == DM_USER_OP_FLUSH) {
		if (dm_bio_get_target_bio_nr(bio) == 0)
			goto pass;
		/*
		 * A second copy comes only with flushes on (user_ctr()); the
		 * daemon holds written data only where it claims writes.
		 */
		writes = c->write_ranges;
		rcu_read_unlock();
		if (writes)
			return DM_USER_MAP_CLAIMED;
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}
	start = dm_target_offset(ti, bio->bi_iter.bi_sector);
	end = start + bio_sectors(bio);
	/* Every operation left but a read changes data. */
	cover = dm_user_claims_cover(c, start, end, op == DM_USER_OP_READ ?
				     DM_USER_CLAIM_READS :
				     DM_USER_CLAIM_WRITES);
	if (cover == DM_USER_COVER_NONE) {
		dest = dm_user_mapped_dest(c, op == DM_USER_OP_READ ? 0 : 1,
					   start, end, &split);
		/* dm core maps the rest as a new bio, looked up anew. */
		if (split < end)
			dm_accept_partial_bio(bio, split - start);
		if (c->notify_writes && op != DM_USER_OP_READ) {
			rcu_read_unlock();
			*notify_dest = dest;
			return DM_USER_MAP_NOTIFY;
		}
		goto pass;
	}
	rcu_read_unlock();
	return cover == DM_USER_COVER_PART ? DM_USER_MAP_PARTLY :
					     DM_USER_MAP_CLAIMED;

pass:
	/* Counted before the claims can change: see dm_user_change_claims(). */
	req->passing = c->parity + 1;
	atomic_inc(&t->passing[c->parity]);
	rcu_read_unlock();
	atomic64_inc(&t->nr_passed);
	bio_set_dev(bio, tt->backing->bdev);
	if (op != DM_USER_OP_FLUSH)
		bio->bi_iter.bi_sector = tt->backing_start + dest;
	return DM_MAPIO_REMAPPED;
}

static int dm_user_map_bio(struct dm_target *ti, struct bio *bio)
{
	struct dm_user_table *tt = ti->private;
	struct dm_user_target *t = tt->t;
	struct dm_user_request *req = dm_per_bio_data(bio, sizeof(*req));
	unsigned long irq_flags;
	int how = DM_USER_MAP_CLAIMED;
	sector_t notify_dest = 0;
	enum dm_user_op op;
	bool wake = false;

	/*
	 * What user_end_io() looks at, before any completion; the rest is
	 * set only for a request that goes to the daemon.
	 */
	req->remap = false;
	req->passing = 0;
	op = dm_user_bio_op(bio);
	if (op == DM_USER_NR_OPS) {
		bio->bi_status = BLK_STS_NOTSUPP;
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}
	/* The queue limits keep these away. */
	if (op != DM_USER_OP_FLUSH && !dm_user_op_enabled(tt, op)) {
		bio->bi_status = BLK_STS_NOTSUPP;
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}
	if (tt->backing) {
		how = dm_user_map_backing(ti, tt, bio, req, op,
					  &notify_dest);
		if (how >= 0)
			return how;
	} else if (!dm_user_op_enabled(tt, op)) {
		/*
		 * A flush can still come from inside dm, and with no
		 * volatile cache it is done.
		 */
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}
	/*
	 * A request carries at most DM_USER_MAX_IO_SECTORS of data: the
	 * target takes that much and dm core maps the rest as a new bio.
	 * Cut here rather than by ti->max_io_len, which would also cut
	 * every bio at the queue's max_sectors, those that go straight to
	 * the backing device as well. The front part is looked up again:
	 * it may lie wholly inside or wholly outside the claimed ranges.
	 * A notification is cut too, though it carries no data: a claim
	 * makes a queued one a write with its data
	 * (dm_user_claim_notifications()).
	 */
	if ((op == DM_USER_OP_READ || op == DM_USER_OP_WRITE) &&
	    bio_sectors(bio) > DM_USER_MAX_IO_SECTORS) {
		dm_accept_partial_bio(bio, DM_USER_MAX_IO_SECTORS);
		if (tt->backing) {
			how = dm_user_map_backing(ti, tt, bio, req, op,
						  &notify_dest);
			if (how >= 0)
				return how;
		}
	}

	memset(req, 0, sizeof(*req));
	INIT_LIST_HEAD(&req->list);
	req->op = op;
	req->msg.type = dm_user_op_req_type[op];
	req->msg.flags = dm_user_bio_flags(bio);
	if (how == DM_USER_MAP_PARTLY)
		req->msg.flags |= DM_USER_REQ_MAP_FLAG_PARTLY_CLAIMED;
	if (how == DM_USER_MAP_NOTIFY) {
		req->msg.type |= DM_USER_REQ_NOTIFY;
		req->notify = true;
		req->notify_dest = notify_dest;
	}
	/* An empty flush has no meaningful sector. */
	if (op != DM_USER_OP_FLUSH)
		req->msg.sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	req->msg.len = bio->bi_iter.bi_size;

	spin_lock_irqsave(&t->lock, irq_flags);
	/* Under the lock, so that the lists stay in the order of start. */
	req->start = jiffies;
	if (unlikely(t->suspending || t->dead || !t->nr_serving)) {
		blk_status_t status = dm_user_giveback_status_locked(t);

		if (status != BLK_STS_OK) {
			/*
			 * dm core keeps it for after a noflush suspend;
			 * otherwise nobody will serve it.
			 */
			spin_unlock_irqrestore(&t->lock, irq_flags);
			return status == BLK_STS_DM_REQUEUE ? DM_MAPIO_REQUEUE :
							      DM_MAPIO_KILL;
		}
	}
	if (t->nr_queued + t->nr_inflight >= t->max_queued ||
	    t->nr_backlog) {
		if (bio->bi_opf & REQ_NOWAIT) {
			spin_unlock_irqrestore(&t->lock, irq_flags);
			bio_wouldblock_error(bio);
			return DM_MAPIO_SUBMITTED;
		}
		req->state = DM_USER_REQ_BACKLOG;
		list_add_tail(&req->list, &t->backlog);
		t->nr_backlog++;
	} else {
		req->state = DM_USER_REQ_QUEUED;
		list_add_tail(&req->list, &t->queue);
		t->nr_queued++;
		wake = true;
	}
	if (t->request_timeout && !t->timeout_armed) {
		t->timeout_armed = true;
		queue_delayed_work(system_wq, &t->timeout_work,
				   (unsigned long)t->request_timeout * HZ);
	}
	spin_unlock_irqrestore(&t->lock, irq_flags);

	if (wake)
		wake_up(&t->wq);
	return DM_MAPIO_SUBMITTED;
}

static int user_map(struct dm_target *ti, struct bio *bio)
{
	int r;

	/*
	 * One RCU read-side section from the lookup of the claims to the
	 * queue (mapping never sleeps): a write notification mapped under
	 * claims that a CLAIM replaces is then queued by the time that
	 * CLAIM's synchronize_rcu() returns, where
	 * dm_user_claim_notifications() turns it into a claimed write.
	 */
	rcu_read_lock();
	r = dm_user_map_bio(ti, bio);
	rcu_read_unlock();
	return r;
}

/* ------------------------------------------------------------------------
 * Constructor and destructor
 */

static bool dm_user_name_valid(const char *name)
{
	size_t len = strlen(name);
	size_t i;

	if (!len || len > DM_USER_NAME_MAX)
		return false;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	/*
	 * The name becomes a device name, a sysfs name and a path under
	 * /dev/dm-user, and the driver core turns '!' into '/': only
	 * characters that mean nothing to any of them.
	 */
	for (i = 0; i < len; i++)
		if (!(isascii(name[i]) && isalnum(name[i])) &&
		    !strchr("-_.+:@", name[i]))
			return false;
	return true;
}

static int dm_user_parse_sector(const char *arg, sector_t expected,
				struct dm_target *ti, char *bad,
				char *mismatch)
{
	unsigned long long val;

	if (kstrtoull(arg, 10, &val)) {
		ti->error = bad;
		return -EINVAL;
	}
	if (val != expected) {
		ti->error = mismatch;
		return -EINVAL;
	}
	return 0;
}

static int dm_user_read_feature_value(const struct dm_user_feature_value *v,
				      struct dm_arg_set *as, unsigned int *val,
				      char **error)
{
	const char *word;

	if (!v->octal)
		return dm_read_arg(&v->range, as, val, error);

	word = dm_shift_arg(as);
	if (!word || strlen(word) != 4 || word[0] != '0' ||
	    kstrtouint(word, 8, val) || *val < v->range.min ||
	    *val > v->range.max) {
		*error = v->range.error;
		return -EINVAL;
	}
	return 0;
}

/*
 * backing <dev_path> <offset>: the device, taken as dm-linear takes its
 * own, and its sector that the target's first sector maps to. dm core
 * checks that the range fits the device and is aligned to its blocks.
 */
static int dm_user_parse_backing(struct dm_user_table *tt,
				 struct dm_arg_set *as, unsigned int *argc,
				 struct dm_target *ti)
{
	unsigned long long start;
	const char *path;
	int r;

	if (*argc < 2) {
		ti->error = "backing needs a device and an offset";
		return -EINVAL;
	}
	*argc -= 2;
	path = dm_shift_arg(as);
	if (kstrtoull(dm_shift_arg(as), 10, &start) ||
	    start != (sector_t)start) {
		ti->error = "Invalid backing device offset";
		return -EINVAL;
	}
	r = dm_get_device(ti, path, dm_table_get_mode(ti->table), &tt->backing);
	if (r) {
		ti->error = "Backing device lookup failed";
		return r;
	}
	tt->backing_start = start;
	snprintf(tt->backing_name, sizeof(tt->backing_name), "%u:%u",
		 MAJOR(tt->backing->bdev->bd_dev),
		 MINOR(tt->backing->bdev->bd_dev));
	return 0;
}

/* Sets the feature words of @as on @tt, and a bit per word in tt->seen. */
static int dm_user_parse_features(struct dm_user_table *tt,
				  struct dm_arg_set *as, struct dm_target *ti)
{
	/* Every feature with a value, backing with two. */
	static const struct dm_arg feature_count = {
		0, 2 * DM_USER_NR_FEATURES + 1,
		"Invalid number of feature arguments"
	};
	unsigned long *seen = &tt->seen;
	unsigned int argc, val;
	int r;

	BUILD_BUG_ON(DM_USER_NR_FEATURES > DM_USER_MAX_FEATURES);
	if (!as->argc)
		return 0;

	r = dm_read_arg_group(&feature_count, as, &argc, &ti->error);
	if (r)
		return r;

	while (argc) {
		const char *word = dm_shift_arg(as);
		enum dm_user_feature f;

		argc--;
		for (f = 0; f < DM_USER_NR_FEATURES; f++)
			if (!strcasecmp(word, dm_user_feature_names[f]))
				break;
		if (f == DM_USER_NR_FEATURES) {
			ti->error = "Unrecognised feature requested";
			return -EINVAL;
		}
		if (__test_and_set_bit(f, seen)) {
			ti->error = "Feature given more than once";
			return -EINVAL;
		}

		val = 0;
		if (dm_user_feature_has_value(f)) {
			if (!argc) {
				ti->error = dm_user_feature_values[f].missing;
				return -EINVAL;
			}
			argc--;
			r = dm_user_read_feature_value(&dm_user_feature_values[f],
						       as, &val, &ti->error);
			if (r)
				return r;
		}
		tt->feature_value[tt->nr_features] = val;
		tt->feature_order[tt->nr_features++] = f;

		switch (f) {
		case DM_USER_FEAT_BLOCK_SIZE:
			if (!is_power_of_2(val)) {
				ti->error = "block_size must be a power of two";
				return -EINVAL;
			}
			tt->block_size = val;
			break;
		case DM_USER_FEAT_MAX_QUEUED:
			tt->max_queued = val;
			break;
		case DM_USER_FEAT_NO_DAEMON_TIMEOUT:
		case DM_USER_FEAT_QUEUE_IF_NO_DAEMON:
			if (test_bit(DM_USER_FEAT_NO_DAEMON_TIMEOUT, seen) &&
			    test_bit(DM_USER_FEAT_QUEUE_IF_NO_DAEMON, seen)) {
				ti->error = "Both queue_if_no_daemon and no_daemon_timeout";
				return -EINVAL;
			}
			tt->no_daemon_timeout =
				f == DM_USER_FEAT_QUEUE_IF_NO_DAEMON ?
				DM_USER_TIMEOUT_FOREVER : val;
			break;
		case DM_USER_FEAT_REQUEST_TIMEOUT:
			tt->request_timeout = val;
			break;
		case DM_USER_FEAT_UID:
			/* Numbers as seen by the process loading the table. */
			tt->uid = make_kuid(current_user_ns(), val);
			if (!uid_valid(tt->uid)) {
				ti->error = "uid is not mapped in the caller's user namespace";
				return -EINVAL;
			}
			break;
		case DM_USER_FEAT_GID:
			tt->gid = make_kgid(current_user_ns(), val);
			if (!gid_valid(tt->gid)) {
				ti->error = "gid is not mapped in the caller's user namespace";
				return -EINVAL;
			}
			break;
		case DM_USER_FEAT_MODE:
			tt->mode = val;
			break;
		case DM_USER_FEAT_BACKING:
			r = dm_user_parse_backing(tt, as, &argc, ti);
			if (r)
				return r;
			break;
		case DM_USER_FEAT_PASSTHROUGH:
			tt->passthrough = true;
			break;
		case DM_USER_FEAT_NOTIFY_WRITES:
			break;
		case DM_USER_FEAT_MAX_CLAIMS:
			tt->max_claims = val;
			break;
		default:
			__set_bit(dm_user_feature_op[f], &tt->disabled_ops);
			break;
		}
	}
	if ((test_bit(DM_USER_FEAT_PASSTHROUGH, seen) ||
	     test_bit(DM_USER_FEAT_MAX_CLAIMS, seen) ||
	     test_bit(DM_USER_FEAT_NOTIFY_WRITES, seen)) && !tt->backing) {
		ti->error = "passthrough, max_claims and notify_writes need a backing device";
		return -EINVAL;
	}
	return 0;
}

static struct dm_user_target *dm_user_registry_find(const char *name)
{
	struct dm_user_target *t;

	lockdep_assert_held(&dm_user_registry_lock);
	list_for_each_entry(t, &dm_user_registry, registry_node)
		if (!strcmp(t->name, name))
			return t;
	return NULL;
}

/* ------------------------------------------------------------------------
 * The node /dev/dm-user/<name>
 */

/*
 * Sets the node's owner, group and mode. It returns no name, so that the
 * device name "dm-user!<name>" gives the path "dm-user/<name>": the callback
 * then allocates nothing, and no allocation failure can make devtmpfs fall
 * back to a node at another path.
 */
static char *dm_user_devnode(DM_USER_COMPAT_DEVNODE_CONST struct device *dev,
			     umode_t *mode, kuid_t *uid, kgid_t *gid)
{
	const struct dm_user_target *t = container_of(dev,
						       struct dm_user_target, dev);

	/* devtmpfs and the uevent (DEVMODE, DEVUID, DEVGID) take these. */
	if (mode)
		*mode = t->mode;
	if (uid)
		*uid = t->uid;
	if (gid)
		*gid = t->gid;
	return NULL;
}

/*
 * Last: a control command may use the claims until the last channel goes,
 * and the map path uses them no more once the target is destroyed.
 */
static void dm_user_free(struct dm_user_target *t)
{
	kvfree(rcu_dereference_protected(t->claims, 1));
	kvfree(t->answer_hash);
	/* The last table, kept for control commands: see user_dtr(). */
	kfree(t->live);
	kfree(t);
}

/*
 * What a table line took, when its table goes or its constructor failed:
 * later there is no dm_target to put the backing device with.
 */
static void dm_user_free_table(struct dm_user_table *tt)
{
	if (tt->backing)
		dm_put_device(tt->ti, tt->backing);
	kfree(tt);
}

static void dm_user_dev_release(struct device *dev)
{
	struct dm_user_target *t = container_of(dev, struct dm_user_target,
						 dev);

	ida_free(&dm_user_minors, MINOR(dev->devt));
	dm_user_free(t);
}

static const struct device_type dm_user_node_type = {
	.name = "dm-user-node",
	.devnode = dm_user_devnode,
	.release = dm_user_dev_release,
};

/*
 * Whether the caller may change @t's settings: the node's owner, so that an
 * unprivileged daemon can tune the device it serves, or an administrator.
 */
bool dm_user_may_change_settings(struct dm_user_target *t)
{
	return uid_eq(current_fsuid(), t->uid) || capable(CAP_SYS_ADMIN);
}

/*
 * Adds the node of a fully set up @t. On failure t is freed, through the
 * device's release once the device is initialised.
 */
static int dm_user_add_node(struct dm_user_target *t, struct dm_target *ti)
{
	int minor, r;

	lockdep_assert_held(&dm_user_registry_lock);
	minor = ida_alloc_max(&dm_user_minors, DM_USER_MAX_NODES - 1,
			      GFP_KERNEL);
	if (minor < 0) {
		ti->error = minor == -ENOSPC ? "Too many user targets" :
			    "Cannot allocate a minor number";
		dm_user_free(t);
		return minor;
	}

	device_initialize(&t->dev);
	/* A character node has no power state: no power/ in its sysfs. */
	device_set_pm_not_required(&t->dev);
	t->dev.class = &dm_user_class;
	t->dev.type = &dm_user_node_type;
	t->dev.devt = MKDEV(MAJOR(dm_user_devt), minor);
	cdev_init(&t->cdev, &dm_user_fops);
	t->cdev.owner = THIS_MODULE;
	r = dev_set_name(&t->dev, DM_USER_NODE_DIR "!%s", t->name);
	if (!r)
		r = cdev_device_add(&t->cdev, &t->dev);
	if (r) {
		ti->error = "Cannot add the device node";
		put_device(&t->dev);
	}
	return r;
}

/* The claims a first table gives: everything, or with passthrough nothing. */
static struct dm_user_claims *
dm_user_initial_claims(const struct dm_user_table *tt)
{
	struct dm_user_claims *c = dm_user_alloc_claims(1, 0);

	if (!c)
		return NULL;
	c->parity = 0;
	c->notify_writes = test_bit(DM_USER_FEAT_NOTIFY_WRITES, &tt->seen);
	if (!tt->passthrough)
		dm_user_claims_add(c, 0, tt->len, DM_USER_CLAIM_ALL);
	return dm_user_claims_seal(c);
}

/*
 * The claims @old, made for @old_len sectors, fitted to the reload @tt:
 * cut at its end, and, where it is longer and has no passthrough, with the
 * new sectors claimed as a first table claims them all; mapped ranges cut
 * where they or their destination pass its end; notifications on if they
 * were or if it says notify_writes.
 */
static struct dm_user_claims *
dm_user_claims_fit(const struct dm_user_claims *old, sector_t old_len,
		   const struct dm_user_table *tt)
{
	struct dm_user_claims *c =
		dm_user_alloc_claims(old->nr + 1, old->nr_map[0] +
				     old->nr_map[1]);
	/* Nothing is claimed past @old_len, but the ranges must stay sorted. */
	sector_t end = min(old_len, tt->len);
	unsigned int i, k;

	if (!c)
		return NULL;
	c->map[1] = c->map[0] + old->nr_map[0];
	for (k = 0; k < 2; k++) {
		for (i = 0; i < old->nr_map[k]; i++) {
			const struct dm_user_range *m = &old->map[k][i];

			if (m->start >= end || m->dest >= tt->len)
				continue;
			dm_user_map_add(c->map[k], &c->nr_map[k], m->start,
					min3(m->end, end,
					     m->start + (tt->len - m->dest)),
					m->dest);
		}
	}
	c->parity = old->parity;
	c->notify_writes = old->notify_writes ||
			   test_bit(DM_USER_FEAT_NOTIFY_WRITES, &tt->seen);
	for (i = 0; i < old->nr && old->range[i].start < end; i++)
		dm_user_claims_add(c, old->range[i].start,
				   min(old->range[i].end, end),
				   old->range[i].ops);
	/* Merged into the last range where that is claimed for all. */
	if (!tt->passthrough && tt->len > old_len)
		dm_user_claims_add(c, old_len, tt->len, DM_USER_CLAIM_ALL);
	return dm_user_claims_seal(c);
}

/*
 * <start> <len> <name> [<#features> <feature>...] into @tt, and the name
 * into @name.
 *
 * <start> and <len> repeat the target's own start and length, as in the
 * 2020 RFC's table lines; they must match.
 */
static int dm_user_parse_table(struct dm_user_table *tt, struct dm_target *ti,
			       unsigned int argc, char **argv, char *name)
{
	struct dm_arg_set as;
	sector_t block_sectors;
	int r;

	if (argc < 3) {
		ti->error = "Invalid argument count: need <start> <len> <name>";
		return -EINVAL;
	}
	r = dm_user_parse_sector(argv[0], ti->begin, ti, "Invalid start sector",
				 "Start argument does not match the target start");
	if (r)
		return r;
	r = dm_user_parse_sector(argv[1], ti->len, ti, "Invalid length",
				 "Length argument does not match the target length");
	if (r)
		return r;
	if (!dm_user_name_valid(argv[2])) {
		ti->error = "Invalid name: 1-64 of A-Z a-z 0-9 - _ . + : @, not '.' or '..'";
		return -EINVAL;
	}
	strscpy(name, argv[2], DM_USER_NAME_MAX + 1);

	as.argc = argc - 3;
	as.argv = argv + 3;
	r = dm_user_parse_features(tt, &as, ti);
	if (r)
		return r;
	if (as.argc) {
		ti->error = "Unexpected arguments after the features";
		return -EINVAL;
	}

	block_sectors = tt->block_size >> SECTOR_SHIFT;
	if ((ti->begin | ti->len) & (block_sectors - 1)) {
		ti->error = "Target start and length must be multiples of block_size";
		return -EINVAL;
	}
	/* A block the daemon serves must be one the backing device can take. */
	if (tt->backing &&
	    bdev_logical_block_size(tt->backing->bdev) > tt->block_size) {
		ti->error = "block_size below the backing device's logical block size";
		return -EINVAL;
	}
	if (tt->backing_start & (block_sectors - 1)) {
		ti->error = "Backing device offset must be a multiple of block_size";
		return -EINVAL;
	}

	ti->per_io_data_size = sizeof(struct dm_user_request);
	if (dm_user_op_enabled(tt, DM_USER_OP_FLUSH)) {
		ti->num_flush_bios = 1;
		ti->flush_supported = true;
	}
	/*
	 * Over a backing device, a flush goes to it straight, so that what
	 * was written there, by the daemon's remaps or around the claimed
	 * ranges, is as durable as through dm-linear; a second copy goes to
	 * the daemon for its own cache (dm_user_map_backing()).
	 */
	if (tt->backing)
		ti->num_flush_bios = dm_user_op_enabled(tt, DM_USER_OP_FLUSH) ?
				     2 : 1;
	if (dm_user_op_enabled(tt, DM_USER_OP_DISCARD)) {
		ti->num_discard_bios = 1;
		/*
		 * Without a backing device the daemon alone decides; with
		 * one, discards are offered where the backing device takes
		 * them, as dm-linear offers them.
		 */
		ti->discards_supported = !tt->backing;
	}
	if (dm_user_op_enabled(tt, DM_USER_OP_WRITE_ZEROES))
		ti->num_write_zeroes_bios = 1;
	if (dm_user_op_enabled(tt, DM_USER_OP_SECURE_ERASE))
		ti->num_secure_erase_bios = 1;
	return 0;
}

/* A new target named @name, served through @tt, with its node. */
static int dm_user_create(struct dm_user_table *tt, struct dm_target *ti,
			  const char *name)
{
	struct dm_user_target *t;
	int r, val;

	lockdep_assert_held(&dm_user_registry_lock);
	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t) {
		ti->error = "Cannot allocate target context";
		return -ENOMEM;
	}
	INIT_LIST_HEAD(&t->registry_node);
	INIT_LIST_HEAD(&t->tables);
	spin_lock_init(&t->lock);
	INIT_LIST_HEAD(&t->queue);
	INIT_LIST_HEAD(&t->backlog);
	INIT_LIST_HEAD(&t->channels);
	init_waitqueue_head(&t->wq);
	init_waitqueue_head(&t->busy_wq);
	init_waitqueue_head(&t->backing_wq);
	mutex_init(&t->claims_lock);
	atomic_set(&t->nr_busy, 0);
	t->next_seq = 1;
	strscpy(t->name, name, sizeof(t->name));
	t->block_size = tt->block_size;
	t->uid = tt->uid;
	t->gid = tt->gid;
	t->mode = tt->mode;
	t->claims_len = tt->len;
	t->max_queued = test_bit(DM_USER_FEAT_MAX_QUEUED, &tt->seen) ?
			tt->max_queued : DM_USER_DEFAULT_MAX_QUEUED;
	val = READ_ONCE(no_daemon_timeout);
	t->no_daemon_timeout = val < 0 ? DM_USER_TIMEOUT_FOREVER :
			       min(val, DM_USER_MAX_TIMEOUT);
	if (test_bit(DM_USER_FEAT_NO_DAEMON_TIMEOUT, &tt->seen) ||
	    test_bit(DM_USER_FEAT_QUEUE_IF_NO_DAEMON, &tt->seen))
		t->no_daemon_timeout = tt->no_daemon_timeout;
	t->request_timeout = tt->request_timeout;
	INIT_DELAYED_WORK(&t->no_daemon_work, dm_user_no_daemon_work);
	INIT_DELAYED_WORK(&t->timeout_work, dm_user_timeout_work);
	INIT_WORK(&t->event_work, dm_user_event_work);
	if (tt->backing) {
		struct dm_user_claims *c = dm_user_initial_claims(tt);

		if (!c) {
			ti->error = "Cannot allocate the claimed ranges";
			dm_user_free(t);
			return -ENOMEM;
		}
		RCU_INIT_POINTER(t->claims, c);
	}
	/* From here on t->dev owns t: on failure it is freed by its release. */
	r = dm_user_add_node(t, ti);
	if (r)
		return r;
	tt->t = t;
	list_add_tail(&tt->node, &t->tables);
	t->live = tt;
	list_add_tail(&t->registry_node, &dm_user_registry);
	return 0;
}

/*
 * A table line that names the target @t: a reload, which joins it until
 * its table is resumed and takes it over (user_preresume()), if @t is in
 * the same device and not already in this table, and if the line keeps
 * what the node and the daemon serving it rely on.
 */
static int dm_user_join(struct dm_user_target *t, struct dm_user_table *tt,
			struct dm_target *ti)
{
	struct dm_user_table *other;

	lockdep_assert_held(&dm_user_registry_lock);
	list_for_each_entry(other, &t->tables, node) {
		if (other->ti->table == ti->table) {
			ti->error = "Name already in use by another user target";
			return -EBUSY;
		}
	}
	if (dm_table_get_md(t->live->ti->table) != dm_table_get_md(ti->table)) {
		ti->error = "Name already in use by another user target";
		return -EBUSY;
	}
	if (tt->block_size != t->block_size) {
		ti->error = "A reload cannot change block_size";
		return -EINVAL;
	}
	if (!uid_eq(tt->uid, t->uid) || !gid_eq(tt->gid, t->gid) ||
	    tt->mode != t->mode) {
		ti->error = "A reload cannot change uid, gid or mode";
		return -EINVAL;
	}
	get_device(&t->dev);
	tt->t = t;
	tt->pending = true;
	list_add_tail(&tt->node, &t->tables);
	return 0;
}

static int user_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	char name[DM_USER_NAME_MAX + 1];
	struct dm_user_table *tt;
	struct dm_user_target *t;
	int r;

	tt = kzalloc(sizeof(*tt), GFP_KERNEL);
	if (!tt) {
		ti->error = "Cannot allocate target context";
		return -ENOMEM;
	}
	INIT_LIST_HEAD(&tt->node);
	tt->ti = ti;
	tt->begin = ti->begin;
	tt->len = ti->len;
	tt->block_size = SECTOR_SIZE;
	tt->uid = GLOBAL_ROOT_UID;
	tt->gid = GLOBAL_ROOT_GID;
	tt->mode = 0600;
	tt->max_claims = DM_USER_DEFAULT_MAX_CLAIMS;
	r = dm_user_parse_table(tt, ti, argc, argv, name);
	if (r)
		goto bad;

	mutex_lock(&dm_user_registry_lock);
	t = dm_user_registry_find(name);
	r = t ? dm_user_join(t, tt, ti) : dm_user_create(tt, ti, name);
	mutex_unlock(&dm_user_registry_lock);
	if (r)
		goto bad;
	ti->private = tt;
	return 0;

bad:
	dm_user_free_table(tt);
	return r;
}

static void user_dtr(struct dm_target *ti)
{
	struct dm_user_table *tt = ti->private;
	struct dm_user_target *t = tt->t;
	unsigned long irq_flags;
	LIST_HEAD(done);
	bool last;

	mutex_lock(&dm_user_registry_lock);
	list_del(&tt->node);
	last = list_empty(&t->tables);
	if (last) {
		/* No new channel can open once the node is gone. */
		cdev_device_del(&t->cdev, &t->dev);
		list_del_init(&t->registry_node);
	} else if (t->live == tt) {
		/*
		 * The device was resumed with the table that replaces this
		 * one, and the resume failed before that table took the
		 * target over (dm core destroys the old table all the same):
		 * the target waits, suspended, for that one's preresume. It
		 * is the oldest left: tables join in the order they are
		 * made, and any older one was the inactive table it
		 * replaced. Or the table was loaded and replaced before any
		 * resume, and the next one starts the target afresh.
		 */
		mutex_lock(&t->claims_lock);
		spin_lock_irqsave(&t->lock, irq_flags);
		t->live = list_first_entry(&t->tables, struct dm_user_table,
					   node);
		spin_unlock_irqrestore(&t->lock, irq_flags);
		mutex_unlock(&t->claims_lock);
	}
	mutex_unlock(&dm_user_registry_lock);

	if (!last) {
		/*
		 * Never live, or swapped out after a suspend: none of its
		 * I/O is left, and the target goes on without it.
		 */
		dm_user_free_table(tt);
		put_device(&t->dev);
		return;
	}

	spin_lock_irqsave(&t->lock, irq_flags);
	t->dead = true;
	dm_user_fail_requests_locked(t, &done, DM_USER_TAKE_ALL, BLK_STS_IOERR);
	spin_unlock_irqrestore(&t->lock, irq_flags);

	/* Readers blocked in read() return ENOTBLK; pollers see POLLHUP. */
	wake_up_all(&t->wq);
	dm_user_complete_list(t, &done);

	/* Dead, so none of these is queued again. */
	cancel_delayed_work_sync(&t->no_daemon_work);
	cancel_delayed_work_sync(&t->timeout_work);
	cancel_work_sync(&t->event_work);

	/* A channel copying a request's data completes it when done. */
	wait_event(t->busy_wq, !atomic_read(&t->nr_busy));
	/*
	 * Bios at the backing device, passed or remapped, are counted until
	 * user_end_io(), which drops its count inside an RCU read section:
	 * once the counts are zero and a grace period has passed, no end_io
	 * touches the target again.
	 */
	wait_event(t->backing_wq,
		   !atomic_read(&t->passing[0]) &&
		   !atomic_read(&t->passing[1]) &&
		   !atomic_read(&t->remapping));
	synchronize_rcu();

	/*
	 * A control command that looked before the target died may still
	 * read the live table: it stays, without its backing device, until
	 * the last channel goes (dm_user_free()).
	 */
	if (tt->backing)
		dm_put_device(ti, tt->backing);
	mutex_lock(&t->claims_lock);
	spin_lock_irqsave(&t->lock, irq_flags);
	tt->backing = NULL;
	tt->ti = NULL;
	spin_unlock_irqrestore(&t->lock, irq_flags);
	mutex_unlock(&t->claims_lock);
	put_device(&t->dev);
}

/* ------------------------------------------------------------------------
 * Suspend
 */

static void user_presuspend(struct dm_target *ti)
{
	struct dm_user_target *t = dm_user_of(ti);
	unsigned long irq_flags;
	LIST_HEAD(done);

	spin_lock_irqsave(&t->lock, irq_flags);
	t->suspending = true;
	if (dm_noflush_suspending(ti)) {
		/*
		 * dm core maps these again after resume, perhaps to a new
		 * table. Requests a channel has started to read stay with
		 * it, and the suspend waits for their answers as for any I/O
		 * in flight: taking them back would cut the channel's byte
		 * stream and leave a copy with the daemon.
		 */
		dm_user_fail_requests_locked(t, &done, DM_USER_TAKE_UNSTARTED,
					     BLK_STS_DM_REQUEUE);
	} else {
		t->flush_suspending = true;
		/* Under queue_if_no_daemon the clock was not running. */
		if (!t->nr_serving && !t->no_daemon_failing &&
		    t->no_daemon_timeout == DM_USER_TIMEOUT_FOREVER)
			dm_user_start_no_daemon_clock_locked(t, &done);
	}
	spin_unlock_irqrestore(&t->lock, irq_flags);

	dm_user_complete_list(t, &done);
}

/* Ends the bound a flushing suspend put on queue_if_no_daemon. */
static void dm_user_end_flush_suspend_locked(struct dm_user_target *t)
{
	lockdep_assert_held(&t->lock);
	if (!t->flush_suspending)
		return;
	t->flush_suspending = false;
	if (t->no_daemon_timeout == DM_USER_TIMEOUT_FOREVER) {
		cancel_delayed_work(&t->no_daemon_work);
		t->no_daemon_failing = false;
	}
}

static void user_postsuspend(struct dm_target *ti)
{
	struct dm_user_target *t = dm_user_of(ti);
	unsigned long irq_flags;

	spin_lock_irqsave(&t->lock, irq_flags);
	dm_user_end_flush_suspend_locked(t);
	spin_unlock_irqrestore(&t->lock, irq_flags);
}

/*
 * A reload takes its target over, with nothing in flight: its device is
 * suspended, and dm core has swapped the old table out. The claims are
 * fitted to its length (cut at a shorter one; at a longer one the new
 * sectors are claimed, unless it has passthrough), write notifications
 * are turned on if it says notify_writes, the parameters it gives are
 * set, and its backing device and features serve from now on. Daemons
 * see a dm event, POLLPRI on their channels and the new GET_INFO.
 * Everything that can fail comes first: a failure changes nothing, and
 * the next resume tries again.
 */
static int user_preresume(struct dm_target *ti)
{
	struct dm_user_table *tt = ti->private;
	struct dm_user_target *t = tt->t;
	struct dm_user_claims *old, *c = NULL;
	struct dm_user_channel *ch;
	unsigned long irq_flags;
	LIST_HEAD(done);
	bool fresh;

	if (!tt->pending)
		return 0;
	if (mutex_lock_killable(&t->claims_lock))
		return -EINTR;
	/*
	 * A target never resumed (its first table was loaded and replaced
	 * before any resume) has served nothing: the line starts it afresh.
	 */
	fresh = !READ_ONCE(t->resumed);
	old = rcu_dereference_protected(t->claims,
					lockdep_is_held(&t->claims_lock));
	if (tt->backing) {
		c = old && !fresh ? dm_user_claims_fit(old, t->claims_len, tt) :
				    dm_user_initial_claims(tt);
		if (!c)
			goto nomem;
	}
	if (test_bit(DM_USER_FEAT_MAX_QUEUED, &tt->seen) &&
	    READ_ONCE(t->answer_hash) && dm_user_grow_hash(t, tt->max_queued))
		goto nomem;

	spin_lock_irqsave(&t->lock, irq_flags);
	t->live = tt;
	t->claims_len = tt->len;
	if (!fresh) {
		WRITE_ONCE(t->nr_reloads, t->nr_reloads + 1);
		list_for_each_entry(ch, &t->channels, node)
			if (ch->ring)
				dm_user_ring_set_flags(ch->ring,
						       DM_USER_RING_RELOADED);
	}
	if (test_bit(DM_USER_FEAT_MAX_QUEUED, &tt->seen))
		dm_user_set_max_queued_locked(t, tt->max_queued);
	if (test_bit(DM_USER_FEAT_NO_DAEMON_TIMEOUT, &tt->seen) ||
	    test_bit(DM_USER_FEAT_QUEUE_IF_NO_DAEMON, &tt->seen))
		dm_user_set_no_daemon_timeout_locked(t, tt->no_daemon_timeout,
						     &done);
	if (test_bit(DM_USER_FEAT_REQUEST_TIMEOUT, &tt->seen))
		dm_user_set_request_timeout_locked(t, tt->request_timeout);
	dm_user_raise_event_locked(t);
	spin_unlock_irqrestore(&t->lock, irq_flags);
	/* The counts of both parities are zero: nothing is in flight. */
	rcu_assign_pointer(t->claims, c);
	t->claims_draining = false;
	tt->pending = false;
	mutex_unlock(&t->claims_lock);

	synchronize_rcu();
	kvfree(old);
	wake_up_all(&t->wq);
	dm_user_complete_list(t, &done);
	if (!fresh)
		DMINFO("%s: reloaded, %llu sectors", t->name,
		       (unsigned long long)tt->len);
	return 0;

nomem:
	mutex_unlock(&t->claims_lock);
	kvfree(c);
	return -ENOMEM;
}

/*
 * Back to normal service, after a resume or a suspend that failed or was
 * interrupted (presuspend_undo): what presuspend changed is undone, and
 * with no daemon the no-daemon clock starts afresh under the target's own
 * policy, unless that policy has already given up.
 */
static void user_resume(struct dm_target *ti)
{
	struct dm_user_target *t = dm_user_of(ti);
	unsigned long irq_flags;
	LIST_HEAD(done);

	spin_lock_irqsave(&t->lock, irq_flags);
	dm_user_end_flush_suspend_locked(t);
	t->suspending = false;
	WRITE_ONCE(t->resumed, true);
	if (!t->nr_serving && !t->no_daemon_failing)
		dm_user_start_no_daemon_clock_locked(t, &done);
	spin_unlock_irqrestore(&t->lock, irq_flags);

	dm_user_complete_list(t, &done);
}

/*
 * Nothing here can be polled: a REQ_POLLED bio would make its submitter
 * spin for the whole round trip to the daemon. See dm-user-compat.h for
 * why the support is taken away here on some kernels and in io_hints on
 * others.
 */
static void user_resume_table(struct dm_target *ti)
{
	user_resume(ti);
	dm_user_compat_no_poll_resume(dm_disk(dm_table_get_md(ti->table))->queue);
}

/* ------------------------------------------------------------------------
 * Status and limits
 */

static void user_status(struct dm_target *ti, status_type_t type,
			unsigned int status_flags, char *result,
			unsigned int maxlen)
{
	struct dm_user_table *tt = ti->private;
	struct dm_user_target *t = tt->t;
	struct dm_user_snapshot snap;
	unsigned int sz = 0;
	unsigned int i, words;

	switch (type) {
	case STATUSTYPE_INFO:
		dm_user_snapshot(t, NULL, &snap);
		DMEMIT("channels %u queued %u backlog %u inflight %u",
		       snap.channels, snap.queued, snap.backlog, snap.inflight);
		for (i = 0; i < DM_USER_NR_OPS; i++)
			DMEMIT(" %s %llu %llu %llu", dm_user_op_names[i],
			       snap.stats[i].requests, snap.stats[i].bytes,
			       snap.stats[i].errors);
		DMEMIT(" daemon %s requeued %llu timeouts %llu remapped %llu",
		       dm_user_daemon_state_names[snap.state], snap.requeued,
		       snap.timeouts, snap.remapped);
		DMEMIT(" claims %u passed %llu notified %llu maps %u",
		       snap.claim_ranges, snap.passed, snap.notified,
		       snap.map_ranges);
		break;

	case STATUSTYPE_TABLE:
		DMEMIT("%llu %llu %s", (unsigned long long)tt->begin,
		       (unsigned long long)tt->len, t->name);
		if (!tt->nr_features)
			break;
		/* Words, not features, are counted, as dm-flakey does. */
		words = tt->nr_features;
		for (i = 0; i < tt->nr_features; i++)
			if (tt->feature_order[i] == DM_USER_FEAT_BACKING)
				words += 2;
			else if (dm_user_feature_has_value(tt->feature_order[i]))
				words++;
		DMEMIT(" %u", words);
		for (i = 0; i < tt->nr_features; i++) {
			u8 f = tt->feature_order[i];

			DMEMIT(" %s", dm_user_feature_names[f]);
			/* As dm-linear shows its device: major:minor. */
			if (f == DM_USER_FEAT_BACKING)
				DMEMIT(" %s %llu", tt->backing_name,
				       (unsigned long long)tt->backing_start);
			if (!dm_user_feature_has_value(f))
				continue;
			if (dm_user_feature_values[f].octal)
				DMEMIT(" %04o", tt->feature_value[i]);
			else
				DMEMIT(" %u", tt->feature_value[i]);
		}
		break;

	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",name=%s,block_size=%u,max_queued=%u",
		       t->name, tt->block_size, READ_ONCE(t->max_queued));
		if (READ_ONCE(t->no_daemon_timeout) == DM_USER_TIMEOUT_FOREVER)
			DMEMIT(",no_daemon_timeout=forever");
		else
			DMEMIT(",no_daemon_timeout=%u",
			       READ_ONCE(t->no_daemon_timeout));
		DMEMIT(",request_timeout=%u", READ_ONCE(t->request_timeout));
		if (tt->backing) {
			bool notify;

			dm_user_claim_ranges(t, &notify);
			DMEMIT(",backing_name=%s,backing_start=%llu",
			       tt->backing_name,
			       (unsigned long long)tt->backing_start);
			DMEMIT(",passthrough=%c,max_claims=%u,notify_writes=%c",
			       tt->passthrough ? 'y' : 'n', tt->max_claims,
			       notify ? 'y' : 'n');
		}
		for (i = DM_USER_OP_FLUSH; i < DM_USER_NR_OPS; i++)
			DMEMIT(",%s=%c", dm_user_op_names[i],
			       dm_user_op_enabled(tt, i) ? 'y' : 'n');
		DMEMIT(";");
		break;
	}
}

static int user_message(struct dm_target *ti, unsigned int argc, char **argv,
			char *result, unsigned int maxlen)
{
	return dm_user_ctl_message(dm_user_of(ti), argc, argv, result, maxlen);
}

static int user_iterate_devices(struct dm_target *ti,
				iterate_devices_callout_fn fn, void *data)
{
	struct dm_user_table *tt = ti->private;

	/*
	 * Without a backing device there is nothing below us. Providing
	 * this callback anyway tells dm-table that nothing limits
	 * write-zeroes, secure erase or nowait: the daemon decides.
	 */
	if (!tt->backing)
		return 0;
	return fn(ti, tt->backing, tt->backing_start, ti->len, data);
}

static void user_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct dm_user_table *tt = ti->private;
	/* A data-less request's length must fit the 32-bit bio size. */
	unsigned int max_sectors = round_down(UINT_MAX >> SECTOR_SHIFT,
					      tt->block_size >> SECTOR_SHIFT);

	dm_user_compat_no_poll_hint(limits);
	/* Never below the backing device's, which the constructor checked. */
	limits->logical_block_size = tt->block_size;
	limits->physical_block_size = max(limits->physical_block_size,
					  tt->block_size);
	limits->io_min = max(limits->io_min, tt->block_size);

	if (tt->backing) {
		unsigned int block_sectors = tt->block_size >> SECTOR_SHIFT;

		/*
		 * The limits are the backing device's, stacked by dm core as
		 * for dm-linear: a remapped bio must suit it. The table only
		 * takes operations away, and the daemon's block is the unit:
		 * dm core rounds the data limits to it, not these.
		 */
		limits->discard_granularity = max(limits->discard_granularity,
						  tt->block_size);
		limits->max_discard_sectors =
			round_down(limits->max_discard_sectors, block_sectors);
		limits->max_hw_discard_sectors =
			round_down(limits->max_hw_discard_sectors,
				   block_sectors);
		limits->max_write_zeroes_sectors =
			round_down(limits->max_write_zeroes_sectors,
				   block_sectors);
		limits->max_secure_erase_sectors =
			round_down(limits->max_secure_erase_sectors,
				   block_sectors);
		if (!dm_user_op_enabled(tt, DM_USER_OP_DISCARD)) {
			limits->max_discard_sectors = 0;
			limits->max_hw_discard_sectors = 0;
			limits->discard_granularity = 0;
		}
		if (!dm_user_op_enabled(tt, DM_USER_OP_WRITE_ZEROES))
			limits->max_write_zeroes_sectors = 0;
		if (!dm_user_op_enabled(tt, DM_USER_OP_SECURE_ERASE))
			limits->max_secure_erase_sectors = 0;
		return;
	}
	if (dm_user_op_enabled(tt, DM_USER_OP_DISCARD)) {
		limits->max_discard_sectors = max_sectors;
		limits->max_hw_discard_sectors = max_sectors;
		limits->discard_granularity = tt->block_size;
	} else {
		limits->max_discard_sectors = 0;
		limits->max_hw_discard_sectors = 0;
		limits->discard_granularity = 0;
	}
	limits->max_write_zeroes_sectors =
		dm_user_op_enabled(tt, DM_USER_OP_WRITE_ZEROES) ? max_sectors : 0;
	limits->max_secure_erase_sectors =
		dm_user_op_enabled(tt, DM_USER_OP_SECURE_ERASE) ? max_sectors : 0;
}

/*
 * A bio is back from the backing device: a remapped request's error is
 * counted, and a claim change or the destructor may be waiting for the
 * last of its kind.
 */
static int user_end_io(struct dm_target *ti, struct bio *bio,
		       blk_status_t *error)
{
	struct dm_user_request *req = dm_per_bio_data(bio, sizeof(*req));
	struct dm_user_target *t = dm_user_of(ti);
	unsigned long irq_flags;
	atomic_t *count;

	if (!req->passing && !req->remap)
		return DM_ENDIO_DONE;
	/* A notification let through is both: a remap, counted in passing[]. */
	count = req->passing ? &t->passing[req->passing - 1] : &t->remapping;
	if (req->remap && *error) {
		spin_lock_irqsave(&t->lock, irq_flags);
		t->stats[req->op].errors++;
		spin_unlock_irqrestore(&t->lock, irq_flags);
	}
	/* The destructor frees nothing before a grace period after this. */
	rcu_read_lock();
	if (atomic_dec_and_test(count) && wq_has_sleeper(&t->backing_wq))
		wake_up(&t->backing_wq);
	rcu_read_unlock();
	return DM_ENDIO_DONE;
}

static struct target_type user_target = {
	.name = "user",
	.version = {1, 5, 0},
	.features = DM_TARGET_NOWAIT,
	.module = THIS_MODULE,
	.ctr = user_ctr,
	.dtr = user_dtr,
	.map = user_map,
	.end_io = user_end_io,
	.presuspend = user_presuspend,
	.presuspend_undo = user_resume,
	.postsuspend = user_postsuspend,
	.preresume = user_preresume,
	.resume = user_resume_table,
	.status = user_status,
	.message = user_message,
	.iterate_devices = user_iterate_devices,
	.io_hints = user_io_hints,
};

static int __init dm_user_init(void)
{
	int r;

	r = alloc_chrdev_region(&dm_user_devt, 0, DM_USER_MAX_NODES,
				DM_USER_NODE_DIR);
	if (r) {
		DMERR("cannot allocate device numbers: %d", r);
		return r;
	}
	r = class_register(&dm_user_class);
	if (r) {
		DMERR("cannot register the device class: %d", r);
		goto bad_class;
	}
	r = dm_register_target(&user_target);
	if (r) {
		DMERR("register failed %d", r);
		goto bad_target;
	}
	return 0;

bad_target:
	class_unregister(&dm_user_class);
bad_class:
	unregister_chrdev_region(dm_user_devt, DM_USER_MAX_NODES);
	return r;
}

static void __exit dm_user_exit(void)
{
	/* No target is left: each holds a reference on this module. */
	dm_unregister_target(&user_target);
	class_unregister(&dm_user_class);
	unregister_chrdev_region(dm_user_devt, DM_USER_MAX_NODES);
	ida_destroy(&dm_user_minors);
}

module_init(dm_user_init);
module_exit(dm_user_exit);

MODULE_DESCRIPTION(DM_NAME " target serving I/O from a userspace daemon");
MODULE_LICENSE("GPL");
