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
 *	targets never share a name, and orders misc_register() and
 *	misc_deregister() of one name. Taken in the constructor and the
 *	destructor only.
 *
 *   dm_user_channel.io_lock (mutex, dm-user-channel.c)
 *	Serialises the read() and write() calls of one channel, so that a
 *	channel's partial message state is never used by two calls at once.
 *	Taken only in syscalls, never on the map path.
 *
 *   dm_user_target.lock (spinlock, interrupts off)
 *	Protects everything that moves a request: the queue, the backlog, the
 *	answer hash, each channel's owned list and its sending/receiving
 *	pointers, the counters, the channel list and the suspending and dead
 *	flags. The map path takes only this lock. Nothing sleeps under it and
 *	bios are never completed under it: completing a bio may submit another
 *	one to this target.
 *
 * A request belongs to exactly one holder at a time (see enum
 * dm_user_req_state). Whoever removes it from its holder under the target
 * lock completes it, so no request is completed twice. A channel copying a
 * request's data does so without the lock, after marking the request busy;
 * teardown does not complete a busy request but marks it aborted, and the
 * channel completes it when its copy ends. The destructor waits until no
 * request is busy, so no bio is completed after the target is gone.
 */

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-user.h"
#include "dm-user-compat.h"

static LIST_HEAD(dm_user_registry);
static DEFINE_MUTEX(dm_user_registry_lock);

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
	DM_USER_NR_FEATURES,
};

static const char *const dm_user_feature_names[DM_USER_NR_FEATURES] = {
	[DM_USER_FEAT_NO_FLUSH] = "no_flush",
	[DM_USER_FEAT_NO_DISCARD] = "no_discard",
	[DM_USER_FEAT_NO_WRITE_ZEROES] = "no_write_zeroes",
	[DM_USER_FEAT_NO_SECURE_ERASE] = "no_secure_erase",
	[DM_USER_FEAT_BLOCK_SIZE] = "block_size",
	[DM_USER_FEAT_MAX_QUEUED] = "max_queued",
};

/* The operation each no_* feature word turns off. */
static const enum dm_user_op dm_user_feature_op[] = {
	[DM_USER_FEAT_NO_FLUSH] = DM_USER_OP_FLUSH,
	[DM_USER_FEAT_NO_DISCARD] = DM_USER_OP_DISCARD,
	[DM_USER_FEAT_NO_WRITE_ZEROES] = DM_USER_OP_WRITE_ZEROES,
	[DM_USER_FEAT_NO_SECURE_ERASE] = DM_USER_OP_SECURE_ERASE,
};

static bool dm_user_op_enabled(struct dm_user_target *t, enum dm_user_op op)
{
	return !test_bit(op, &t->disabled_ops);
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

/* Bit 1 << DM_USER_REQ_MAP_* for every request type this target sends. */
u64 dm_user_enabled_req_types(struct dm_user_target *t)
{
	u64 mask = 0;
	int op;

	for (op = 0; op < DM_USER_NR_OPS; op++)
		if (dm_user_op_enabled(t, op))
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
 * Takes @req away from whatever holds it and puts it on @done to be
 * completed with @status once the lock is dropped. @req must not be busy.
 */
void dm_user_detach_locked(struct dm_user_target *t,
			   struct dm_user_request *req, struct list_head *done,
			   blk_status_t status)
{
	struct dm_user_op_stats *st = &t->stats[req->op];
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
		hash_del(&req->hash_node);
		t->nr_inflight--;
		break;
	case DM_USER_REQ_RECEIVING:
		ch->receiving = NULL;
		t->nr_inflight--;
		break;
	}
	list_move_tail(&req->list, done);
	req->owner = NULL;
	req->answer_status = status;

	st->requests++;
	st->bytes += req->msg.len;
	if (status != BLK_STS_OK)
		st->errors++;

	if (dm_user_refill_locked(t))
		wake_up(&t->wq);
}

void dm_user_complete_list(struct list_head *done)
{
	struct dm_user_request *req, *next;

	list_for_each_entry_safe(req, next, done, list) {
		struct bio *bio = req->bio;

		list_del(&req->list);
		bio->bi_status = req->answer_status;
		/* Frees req: it is the bio's per-bio data. */
		bio_endio(bio);
	}
}

/*
 * Fails every request that is not busy and marks the busy ones aborted.
 * With @queued_only, only requests no channel has read yet are failed.
 */
void dm_user_fail_requests_locked(struct dm_user_target *t,
				  struct list_head *done, bool queued_only)
{
	struct dm_user_request *req, *next;
	struct dm_user_channel *ch;

	list_for_each_entry_safe(req, next, &t->queue, list)
		dm_user_detach_locked(t, req, done, BLK_STS_IOERR);
	list_for_each_entry_safe(req, next, &t->backlog, list)
		dm_user_detach_locked(t, req, done, BLK_STS_IOERR);
	if (queued_only)
		return;

	list_for_each_entry(ch, &t->channels, node) {
		list_for_each_entry_safe(req, next, &ch->owned, list) {
			if (req->busy)
				req->aborted = true;
			else
				dm_user_detach_locked(t, req, done,
						      BLK_STS_IOERR);
		}
	}
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

static int user_map(struct dm_target *ti, struct bio *bio)
{
	struct dm_user_target *t = ti->private;
	struct dm_user_request *req = dm_per_bio_data(bio, sizeof(*req));
	unsigned long irq_flags;
	enum dm_user_op op;
	bool wake = false;

	op = dm_user_bio_op(bio);
	if (op == DM_USER_NR_OPS) {
		bio->bi_status = BLK_STS_NOTSUPP;
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}
	if (!dm_user_op_enabled(t, op)) {
		/*
		 * The queue limits keep these away; a flush can still come
		 * from inside dm, and with no volatile cache it is done.
		 */
		if (op != DM_USER_OP_FLUSH)
			bio->bi_status = BLK_STS_NOTSUPP;
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}

	memset(req, 0, sizeof(*req));
	INIT_LIST_HEAD(&req->list);
	req->bio = bio;
	req->op = op;
	req->msg.type = dm_user_op_req_type[op];
	req->msg.flags = dm_user_bio_flags(bio);
	/* An empty flush has no meaningful sector. */
	if (op != DM_USER_OP_FLUSH)
		req->msg.sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	req->msg.len = bio->bi_iter.bi_size;

	spin_lock_irqsave(&t->lock, irq_flags);
	if (t->dead || (t->suspending && !t->nr_channels)) {
		/* Nobody will ever serve it: do not hold up suspend. */
		spin_unlock_irqrestore(&t->lock, irq_flags);
		return DM_MAPIO_KILL;
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
	spin_unlock_irqrestore(&t->lock, irq_flags);

	if (wake)
		wake_up(&t->wq);
	return DM_MAPIO_SUBMITTED;
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
	for (i = 0; i < len; i++) {
		/* Printable ASCII other than space, and no path separator. */
		if (name[i] <= ' ' || name[i] > '~' || name[i] == '/')
			return false;
	}
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

static int dm_user_parse_features(struct dm_user_target *t,
				  struct dm_arg_set *as, struct dm_target *ti)
{
	static const struct dm_arg feature_count = {
		0, 2 * DM_USER_NR_FEATURES,
		"Invalid number of feature arguments"
	};
	static const struct dm_arg block_size_arg = {
		SECTOR_SIZE, 4096, "Invalid block_size"
	};
	static const struct dm_arg max_queued_arg = {
		1, DM_USER_MAX_MAX_QUEUED, "Invalid max_queued"
	};
	unsigned long seen = 0;
	unsigned int argc;
	int r;

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
		if (__test_and_set_bit(f, &seen)) {
			ti->error = "Feature given more than once";
			return -EINVAL;
		}
		t->feature_order[t->nr_features++] = f;

		switch (f) {
		case DM_USER_FEAT_BLOCK_SIZE:
			if (!argc) {
				ti->error = "block_size needs a value";
				return -EINVAL;
			}
			argc--;
			r = dm_read_arg(&block_size_arg, as, &t->block_size,
					&ti->error);
			if (r)
				return r;
			if (!is_power_of_2(t->block_size)) {
				ti->error = "block_size must be a power of two";
				return -EINVAL;
			}
			break;
		case DM_USER_FEAT_MAX_QUEUED:
			if (!argc) {
				ti->error = "max_queued needs a value";
				return -EINVAL;
			}
			argc--;
			r = dm_read_arg(&max_queued_arg, as, &t->max_queued,
					&ti->error);
			if (r)
				return r;
			break;
		default:
			__set_bit(dm_user_feature_op[f], &t->disabled_ops);
			break;
		}
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

/*
 * <start> <len> <name> [<#features> <feature>...]
 *
 * <start> and <len> repeat the target's own start and length, as in the
 * 2020 RFC's table lines; they must match.
 */
static int user_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dm_user_target *t;
	struct dm_arg_set as;
	sector_t block_sectors;
	int r;

	if (argc < 3) {
		ti->error = "Invalid argument count: need <start> <len> <name>";
		return -EINVAL;
	}

	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t) {
		ti->error = "Cannot allocate target context";
		return -ENOMEM;
	}
	kref_init(&t->kref);
	INIT_LIST_HEAD(&t->registry_node);
	spin_lock_init(&t->lock);
	INIT_LIST_HEAD(&t->queue);
	INIT_LIST_HEAD(&t->backlog);
	INIT_LIST_HEAD(&t->channels);
	hash_init(t->answer_hash);
	init_waitqueue_head(&t->wq);
	init_waitqueue_head(&t->busy_wq);
	atomic_set(&t->nr_busy, 0);
	t->next_seq = 1;
	t->begin = ti->begin;
	t->len = ti->len;
	t->block_size = SECTOR_SIZE;
	t->max_queued = DM_USER_DEFAULT_MAX_QUEUED;

	r = dm_user_parse_sector(argv[0], ti->begin, ti, "Invalid start sector",
				 "Start argument does not match the target start");
	if (r)
		goto bad;
	r = dm_user_parse_sector(argv[1], ti->len, ti, "Invalid length",
				 "Length argument does not match the target length");
	if (r)
		goto bad;
	if (!dm_user_name_valid(argv[2])) {
		ti->error = "Invalid name: 1-64 printable characters, no '/', not '.' or '..'";
		r = -EINVAL;
		goto bad;
	}
	strscpy(t->name, argv[2], sizeof(t->name));

	as.argc = argc - 3;
	as.argv = argv + 3;
	r = dm_user_parse_features(t, &as, ti);
	if (r)
		goto bad;
	t->table_max_queued = t->max_queued;
	if (as.argc) {
		ti->error = "Unexpected arguments after the features";
		r = -EINVAL;
		goto bad;
	}

	block_sectors = t->block_size >> SECTOR_SHIFT;
	if ((ti->begin | ti->len) & (block_sectors - 1)) {
		ti->error = "Target start and length must be multiples of block_size";
		r = -EINVAL;
		goto bad;
	}

	r = dm_set_target_max_io_len(ti, DM_USER_MAX_IO_SECTORS);
	if (r) {
		ti->error = "Cannot set the maximum I/O size";
		goto bad;
	}

	ti->per_io_data_size = sizeof(struct dm_user_request);
	if (dm_user_op_enabled(t, DM_USER_OP_FLUSH)) {
		ti->num_flush_bios = 1;
		ti->flush_supported = true;
	}
	if (dm_user_op_enabled(t, DM_USER_OP_DISCARD)) {
		ti->num_discard_bios = 1;
		ti->discards_supported = true;
	}
	if (dm_user_op_enabled(t, DM_USER_OP_WRITE_ZEROES))
		ti->num_write_zeroes_bios = 1;
	if (dm_user_op_enabled(t, DM_USER_OP_SECURE_ERASE))
		ti->num_secure_erase_bios = 1;

	snprintf(t->misc_name, sizeof(t->misc_name), DM_USER_MISC_PREFIX "%s",
		 t->name);
	t->misc.minor = MISC_DYNAMIC_MINOR;
	t->misc.name = t->misc_name;
	t->misc.fops = &dm_user_fops;
	t->misc.mode = 0600;

	mutex_lock(&dm_user_registry_lock);
	if (dm_user_registry_find(t->name)) {
		mutex_unlock(&dm_user_registry_lock);
		ti->error = "Name already in use by another user target";
		r = -EBUSY;
		goto bad;
	}
	r = misc_register(&t->misc);
	if (r) {
		mutex_unlock(&dm_user_registry_lock);
		ti->error = "Cannot register the misc device";
		goto bad;
	}
	list_add_tail(&t->registry_node, &dm_user_registry);
	mutex_unlock(&dm_user_registry_lock);

	ti->private = t;
	return 0;

bad:
	kfree(t);
	return r;
}

static void user_dtr(struct dm_target *ti)
{
	struct dm_user_target *t = ti->private;
	unsigned long irq_flags;
	LIST_HEAD(done);

	/* No new channel can open once the node is gone. */
	mutex_lock(&dm_user_registry_lock);
	misc_deregister(&t->misc);
	list_del_init(&t->registry_node);
	mutex_unlock(&dm_user_registry_lock);

	spin_lock_irqsave(&t->lock, irq_flags);
	t->dead = true;
	dm_user_fail_requests_locked(t, &done, false);
	spin_unlock_irqrestore(&t->lock, irq_flags);

	/* Readers blocked in read() return ENOTBLK; pollers see POLLHUP. */
	wake_up_all(&t->wq);
	dm_user_complete_list(&done);

	/* A channel copying a request's data completes it when done. */
	wait_event(t->busy_wq, !atomic_read(&t->nr_busy));

	kref_put(&t->kref, dm_user_target_release);
}

/* ------------------------------------------------------------------------
 * Suspend
 */

static void user_presuspend(struct dm_target *ti)
{
	struct dm_user_target *t = ti->private;
	unsigned long irq_flags;
	LIST_HEAD(done);

	/*
	 * Suspend waits for every request to complete. With no daemon
	 * attached none would, so fail what is queued rather than hang.
	 */
	spin_lock_irqsave(&t->lock, irq_flags);
	t->suspending = true;
	if (!t->nr_channels)
		dm_user_fail_requests_locked(t, &done, true);
	spin_unlock_irqrestore(&t->lock, irq_flags);

	dm_user_complete_list(&done);
}

static void user_resume(struct dm_target *ti)
{
	struct dm_user_target *t = ti->private;
	unsigned long irq_flags;

	spin_lock_irqsave(&t->lock, irq_flags);
	t->suspending = false;
	spin_unlock_irqrestore(&t->lock, irq_flags);
}

/* ------------------------------------------------------------------------
 * Status and limits
 */

static void user_status(struct dm_target *ti, status_type_t type,
			unsigned int status_flags, char *result,
			unsigned int maxlen)
{
	struct dm_user_target *t = ti->private;
	struct dm_user_op_stats stats[DM_USER_NR_OPS];
	unsigned int channels, queued, backlog, inflight;
	unsigned long irq_flags;
	unsigned int sz = 0;
	unsigned int i;

	switch (type) {
	case STATUSTYPE_INFO:
		spin_lock_irqsave(&t->lock, irq_flags);
		channels = t->nr_channels;
		queued = t->nr_queued;
		backlog = t->nr_backlog;
		inflight = t->nr_inflight;
		memcpy(stats, t->stats, sizeof(stats));
		spin_unlock_irqrestore(&t->lock, irq_flags);

		DMEMIT("channels %u queued %u backlog %u inflight %u",
		       channels, queued, backlog, inflight);
		for (i = 0; i < DM_USER_NR_OPS; i++)
			DMEMIT(" %s %llu %llu %llu", dm_user_op_names[i],
			       stats[i].requests, stats[i].bytes,
			       stats[i].errors);
		break;

	case STATUSTYPE_TABLE:
		DMEMIT("%llu %llu %s", (unsigned long long)t->begin,
		       (unsigned long long)t->len, t->name);
		if (!t->nr_features)
			break;
		/* Words, not features, are counted, as dm-flakey does. */
		{
			unsigned int words = t->nr_features;

			for (i = 0; i < t->nr_features; i++)
				if (t->feature_order[i] == DM_USER_FEAT_BLOCK_SIZE ||
				    t->feature_order[i] == DM_USER_FEAT_MAX_QUEUED)
					words++;
			DMEMIT(" %u", words);
		}
		for (i = 0; i < t->nr_features; i++) {
			u8 f = t->feature_order[i];

			DMEMIT(" %s", dm_user_feature_names[f]);
			if (f == DM_USER_FEAT_BLOCK_SIZE)
				DMEMIT(" %u", t->block_size);
			else if (f == DM_USER_FEAT_MAX_QUEUED)
				DMEMIT(" %u", t->table_max_queued);
		}
		break;

	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",name=%s,block_size=%u,max_queued=%u",
		       t->name, t->block_size, READ_ONCE(t->max_queued));
		for (i = DM_USER_OP_FLUSH; i < DM_USER_NR_OPS; i++)
			DMEMIT(",%s=%c", dm_user_op_names[i],
			       dm_user_op_enabled(t, i) ? 'y' : 'n');
		DMEMIT(";");
		break;
	}
}

static int user_message(struct dm_target *ti, unsigned int argc, char **argv,
			char *result, unsigned int maxlen)
{
	return dm_user_ctl_message(ti->private, argc, argv, result, maxlen);
}

static int user_iterate_devices(struct dm_target *ti,
				iterate_devices_callout_fn fn, void *data)
{
	/*
	 * There are no underlying devices. Providing this callback anyway
	 * tells dm-table that nothing below us limits write-zeroes, secure
	 * erase or nowait: the daemon decides.
	 */
	return 0;
}

static void user_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct dm_user_target *t = ti->private;
	/* A data-less request's length must fit the 32-bit bio size. */
	unsigned int max_sectors = round_down(UINT_MAX >> SECTOR_SHIFT,
					      t->block_size >> SECTOR_SHIFT);

	limits->logical_block_size = t->block_size;
	limits->physical_block_size = t->block_size;
	limits->io_min = t->block_size;

	if (dm_user_op_enabled(t, DM_USER_OP_DISCARD)) {
		limits->max_discard_sectors = max_sectors;
		limits->max_hw_discard_sectors = max_sectors;
		limits->discard_granularity = t->block_size;
	} else {
		limits->max_discard_sectors = 0;
		limits->max_hw_discard_sectors = 0;
		limits->discard_granularity = 0;
	}
	limits->max_write_zeroes_sectors =
		dm_user_op_enabled(t, DM_USER_OP_WRITE_ZEROES) ? max_sectors : 0;
	limits->max_secure_erase_sectors =
		dm_user_op_enabled(t, DM_USER_OP_SECURE_ERASE) ? max_sectors : 0;
}

static struct target_type user_target = {
	.name = "user",
	.version = {1, 0, 0},
	.features = DM_TARGET_NOWAIT,
	.module = THIS_MODULE,
	.ctr = user_ctr,
	.dtr = user_dtr,
	.map = user_map,
	.presuspend = user_presuspend,
	.resume = user_resume,
	.status = user_status,
	.message = user_message,
	.iterate_devices = user_iterate_devices,
	.io_hints = user_io_hints,
};

static int __init dm_user_init(void)
{
	int r = dm_register_target(&user_target);

	if (r < 0)
		DMERR("register failed %d", r);
	return r;
}

static void __exit dm_user_exit(void)
{
	dm_unregister_target(&user_target);
}

module_init(dm_user_init);
module_exit(dm_user_exit);

MODULE_DESCRIPTION(DM_NAME " target serving I/O from a userspace daemon");
MODULE_LICENSE("GPL");
