/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-user: internal definitions shared by the target glue (dm-user-target.c)
 * and the channel file operations (dm-user-channel.c).
 *
 * The locking rules are at the top of dm-user-target.c.
 */
#ifndef DM_USER_INTERNAL_H
#define DM_USER_INTERNAL_H

#include <linux/blk_types.h>
#include <linux/cdev.h>
#include <linux/device-mapper.h>
#include <linux/device.h>
#include <linux/hash.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/sizes.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <uapi/linux/dm-user.h>

#define DM_MSG_PREFIX "user"

/* Nodes are /dev/dm-user/<name>; also the class and chrdev region name. */
#define DM_USER_NODE_DIR	"dm-user"
/* Live targets at once: minors of the character device region. */
#define DM_USER_MAX_NODES	BIT(16)

/*
 * Largest read or write handed to a daemon in one request, in sectors:
 * 1 MiB, the largest chunk Android's snapuserd expects, so a daemon can size
 * its buffer once.
 */
#define DM_USER_MAX_IO_SECTORS	2048

#define DM_USER_DEFAULT_MAX_QUEUED	1024
#define DM_USER_MAX_MAX_QUEUED		SZ_1M

/* The answer hash has at least this many buckets. */
#define DM_USER_MIN_HASH_BITS	4

/* Largest no_daemon_timeout and request_timeout, in seconds (11.5 days). */
#define DM_USER_MAX_TIMEOUT	1000000
/* no_daemon_timeout until the table or the module parameter says otherwise. */
#define DM_USER_DEFAULT_NO_DAEMON_TIMEOUT	30

/* Claimed ranges a target holds at most unless the table says otherwise. */
#define DM_USER_DEFAULT_MAX_CLAIMS	1024
#define DM_USER_MAX_MAX_CLAIMS		65536

/* Room for every feature word of a table line (see enum dm_user_feature). */
#define DM_USER_MAX_FEATURES	16

/* Operations counted in status and switchable by feature words. */
enum dm_user_op {
	DM_USER_OP_READ,
	DM_USER_OP_WRITE,
	DM_USER_OP_FLUSH,
	DM_USER_OP_DISCARD,
	DM_USER_OP_WRITE_ZEROES,
	DM_USER_OP_SECURE_ERASE,
	DM_USER_NR_OPS,
};

struct dm_user_op_stats {
	u64 requests;
	u64 bytes;
	u64 errors;
};

struct dm_user_channel;
struct iov_iter;

/* Where a request is; each state names the list or pointer that holds it. */
enum dm_user_req_state {
	DM_USER_REQ_QUEUED,	/* target->queue */
	DM_USER_REQ_BACKLOG,	/* target->backlog */
	DM_USER_REQ_SENDING,	/* owner->owned, owner->sending */
	DM_USER_REQ_WAITING,	/* owner->owned, target->answer_hash */
	DM_USER_REQ_RECEIVING,	/* owner->owned, owner->receiving */
	DM_USER_REQ_RING,	/* owner->owned, owner->ring->slot_req[slot] */
};

/*
 * One request: the per-bio data of the bio it carries, so that queueing a
 * request never allocates memory. Its size is paid 32 times by every idle
 * device (dm core keeps 16 bios of each of its two biosets in reserve),
 * so fields are packed and the bio is found from the request's address.
 * The hash node and the ring fields share memory: a request is in the
 * hash (DM_USER_REQ_WAITING) or in a slot (DM_USER_REQ_RING), never both.
 */
struct dm_user_request {
	/* On the target's queue or backlog, or on the owner's list. */
	struct list_head list;
	union {
		/* DM_USER_REQ_WAITING: in the target's answer hash. */
		struct hlist_node hash_node;
		/*
		 * DM_USER_REQ_RING: the slot that holds it, and the pages of
		 * the ring's data area its data has (data_count 0: none).
		 */
		struct {
			u32 slot;
			u32 data_first;
			u32 data_count;
		};
	};
	/* Channel that read it; NULL while queued. */
	struct dm_user_channel *owner;
	/* The header sent to the daemon. */
	struct dm_user_message msg;
	/* jiffies when the request was mapped, for request_timeout. */
	unsigned long start;
	/* Bytes of header and data copied to the daemon so far. */
	u32 sent;
	/* Bytes of answer data copied from the daemon so far. */
	u32 received;
	/* Position in the bio's data of the next byte to copy. */
	struct bvec_iter data_iter;
	enum dm_user_op op:8;
	enum dm_user_req_state state:8;
	blk_status_t answer_status;
	/* Failed while busy, with this status: the busy channel completes it. */
	blk_status_t abort_status;
	/* A channel is copying to or from the bio's pages without the lock. */
	bool busy;
	/* Failed by teardown or a timeout while busy. */
	bool aborted;
	/*
	 * Answered DM_USER_RESP_REMAP: completing it sends the bio to the
	 * backing device at msg.sector, which then holds the answer's.
	 */
	bool remap;
	/*
	 * Sent straight to the backing device by the map path: 1 + the
	 * parity of the claims it was mapped under; 0 if not.
	 */
	u8 passing;
	/* Sent to the daemon as a write notification (DM_USER_REQ_NOTIFY). */
	bool notify;
	/*
	 * Where a notification goes once let through, counted as a remap
	 * answer's sector is: its own sector, or where a mapped range sends
	 * it.
	 */
	sector_t notify_dest;
};

/*
 * One range, in sectors from the start of the target: [start, end). A
 * claimed range is claimed for @ops (DM_USER_CLAIM_*, never 0); a mapped
 * range goes to the backing device at @dest (counted as a remap answer's
 * sector is) for its first sector, and on from there.
 */
struct dm_user_range {
	sector_t start;
	sector_t end;
	union {
		unsigned int ops;
		sector_t dest;
	};
};

/*
 * The claimed ranges of a target with a backing device: sorted, disjoint,
 * adjacent ones with the same ops merged. Never changed once published: a
 * change publishes a new copy and frees the old one after
 * synchronize_rcu(), so the map path looks it up under rcu_read_lock()
 * alone.
 */
struct dm_user_claims {
	/* Which of dm_user_target.passing counts the bios mapped under it. */
	unsigned int parity;
	/* Ranges claimed for writes: the daemon then gets flushes too. */
	unsigned int write_ranges;
	/*
	 * Per class (0: reads, 1: writes), what is claimed for it, merged:
	 * nr_cls[k] ranges at cls[k], in range[] after the @nr ranges, so
	 * that the map path finds a bio's cover with one binary search.
	 */
	unsigned int nr_cls[2];
	struct dm_user_range *cls[2];
	/*
	 * Writes outside the ranges come to the daemon as notifications:
	 * here, so that a bio sees it and the ranges as one.
	 */
	bool notify_writes;
	/*
	 * Per class, the mapped ranges (DM_USER_CMD_MAP) of that class:
	 * sorted, disjoint, a range that goes on where the one before it
	 * ends merged into it; nr_map[k] at map[k], after the views. A
	 * claim for the class takes precedence over them.
	 */
	unsigned int nr_map[2];
	struct dm_user_range *map[2];
	/* The claimed ranges, each with its ops; the views and maps follow. */
	unsigned int nr;
	struct dm_user_range range[];
};

/* The bio a request is the per-bio data of. */
static inline struct bio *dm_user_req_bio(struct dm_user_request *req)
{
	return dm_bio_from_per_bio_data(req, sizeof(*req));
}

/* What dmsetup status and GET_INFO say about the daemon. */
enum dm_user_daemon_state {
	DM_USER_DAEMON_ATTACHED = DM_USER_STATE_ATTACHED,
	DM_USER_DAEMON_WAITING = DM_USER_STATE_WAITING,
	DM_USER_DAEMON_FAILING = DM_USER_STATE_FAILING,
	DM_USER_NR_DAEMON_STATES,
};

/*
 * What one table line gives a target: each loaded table has its own, as
 * its dm_target's private data, and the target serves through the one that
 * is live (dm_user_target.live). A table loaded under the name of a target
 * that exists in the same device is a reload: it joins that target, node,
 * channels, daemon and all, and takes it over when it is resumed
 * (user_preresume()). Not changed once constructed, but for pending (at
 * the takeover) and, in the last table, backing and ti (at the end).
 */
struct dm_user_table {
	struct dm_user_target *t;
	struct dm_target *ti;
	/* On t->tables (registry lock). */
	struct list_head node;
	sector_t begin;
	sector_t len;
	unsigned int block_size;
	/* Owner, group and mode of the node (uid, gid, mode table words). */
	kuid_t uid;
	kgid_t gid;
	umode_t mode;
	/*
	 * The backing device (the backing feature), or NULL, and its
	 * sector that the target's sector 0 maps to.
	 */
	struct dm_dev *backing;
	sector_t backing_start;
	/*
	 * Its "major:minor", kept for GET_INFO, which may run while the
	 * destructor puts the device: the channel keeps the target alive,
	 * not its dm_dev.
	 */
	char backing_name[16];
	unsigned int max_claims;
	/* The table starts with nothing claimed. */
	bool passthrough;
	unsigned long disabled_ops;	/* bit per enum dm_user_op */
	/* The tunable parameters the line gives: see seen. */
	unsigned int max_queued;
	unsigned int no_daemon_timeout;
	unsigned int request_timeout;
	/* Feature words given, a bit per enum dm_user_feature. */
	unsigned long seen;
	/*
	 * Feature words in the order given and their values as loaded, for
	 * an exact table round trip.
	 */
	unsigned int nr_features;
	u8 feature_order[DM_USER_MAX_FEATURES];
	unsigned int feature_value[DM_USER_MAX_FEATURES];
	/* A reload that has not yet taken the target over. */
	bool pending;
};

struct dm_user_target {
	/*
	 * The node /dev/dm-user/<name>. Its reference count is the target's:
	 * each table holds one until its destructor, each channel one, and
	 * an open() in progress one through the cdev; the release frees all.
	 */
	struct device dev;
	struct cdev cdev;
	/* Node in the global list of live targets, for name uniqueness. */
	struct list_head registry_node;
	char name[DM_USER_NAME_MAX + 1];
	/* Fixed by the first table: a reload may not change them. */
	kuid_t uid;
	kgid_t gid;
	umode_t mode;
	unsigned int block_size;
	/*
	 * Its tables (registry lock), and the one it serves through,
	 * changed under the registry lock or in preresume, always under
	 * claims_lock and the target lock together; read under either of
	 * those, under the registry lock (event_work), or on a path that
	 * holds a bio of it (the live table changes only while the device
	 * is suspended). The last table stays until the target is freed.
	 */
	struct list_head tables;
	struct dm_user_table *live;
	/*
	 * Reloads taken over, for POLLPRI (dm_user_channel.reloads_seen): a
	 * word, which poll() reads without a lock.
	 */
	unsigned long nr_reloads;
	/* A table of it has been resumed: a table joining it is a reload. */
	bool resumed;
	/* The length the claims are made for (claims_lock). */
	sector_t claims_len;
	/*
	 * The claimed ranges (NULL without a backing device), read under
	 * RCU on the map path and replaced under claims_lock; at most
	 * max_claims of them.
	 */
	struct dm_user_claims __rcu *claims;
	/* Serialises claim changes; see the locking rules. */
	struct mutex claims_lock;
	/* A change was interrupted before the old parity drained. */
	bool claims_draining;
	/* Claim changes and the destructor wait here for passing, remapping. */
	wait_queue_head_t backing_wq;

	/* Tunable parameters: read locklessly, written under the lock. */
	unsigned int max_queued;
	unsigned int no_daemon_timeout;	/* s, or DM_USER_TIMEOUT_FOREVER */
	unsigned int request_timeout;	/* s, 0: off */

	/* Moves requests; see the locking rules in dm-user-target.c. */
	spinlock_t lock;
	struct list_head queue;		/* waiting for a channel to read them */
	struct list_head backlog;	/* over the cap, not yet visible */
	unsigned int nr_queued;
	unsigned int nr_backlog;
	unsigned int nr_inflight;	/* read by a channel, not completed */
	u64 next_seq;
	/*
	 * Requests waiting for their answer, by seq, in 2^hash_bits buckets:
	 * at least half the cap, so that chains stay short however full the
	 * target is. Made by the first read() (a device without a daemon or
	 * served by rings only never needs it, and NULL is its empty state);
	 * grows with max_queued, never shrinks. Written under the lock.
	 */
	struct hlist_head *answer_hash;
	unsigned int hash_bits;
	struct list_head channels;
	unsigned int nr_channels;
	/*
	 * Channels that have called read(): the daemon. A channel opened
	 * only for control commands does not count.
	 */
	unsigned int nr_serving;
	/* From presuspend to resume (or presuspend_undo). */
	bool suspending;
	/* A flushing suspend is waiting for I/O: presuspend to postsuspend. */
	bool flush_suspending;
	bool dead;
	/* No daemon for no_daemon_timeout: I/O fails until one attaches. */
	bool no_daemon_failing;
	/* jiffies when the no-daemon clock last started. */
	unsigned long no_daemon_since;
	/* timeout_work is queued or running and will look again. */
	bool timeout_armed;
	struct dm_user_op_stats stats[DM_USER_NR_OPS];
	u64 nr_requeued;	/* given back by a closing channel */
	u64 nr_timeouts;	/* failed by request_timeout */
	u64 nr_bad_answers;	/* answers and completions refused */
	u64 nr_remapped;	/* remap answers taken */
	u64 nr_notified;	/* answers to write notifications taken */

	/* Fires no_daemon_timeout after the last channel closed. */
	struct delayed_work no_daemon_work;
	/* Fails requests older than request_timeout. */
	struct delayed_work timeout_work;
	/* Raises a dm event outside the target lock. */
	struct work_struct event_work;

	/*
	 * Bios at the backing device, by how they got there: sent by the
	 * map path, by the parity of the claims they were mapped under (a
	 * claim change waits for the old parity's to drain), or remapped by
	 * the daemon's answer. Written for every such bio, so on a line of
	 * their own, away from what the map path only reads.
	 */
	atomic_t passing[2] ____cacheline_aligned_in_smp;
	atomic_t remapping;
	atomic64_t nr_passed;

	/* Readers wait here for requests; poll() too. */
	wait_queue_head_t wq ____cacheline_aligned_in_smp;
	/* Teardown waits here for channels copying request data. */
	atomic_t nr_busy;
	wait_queue_head_t busy_wq;
};

/*
 * The kernel's side of a ring channel (DM_USER_EXT_RING): the memory it
 * shares with the daemon and what it must not trust that memory for.
 * Allocated by NEGOTIATE, freed when the channel is released, which is
 * after every mapping of it is gone (a mapping holds the file).
 */
struct dm_user_ring_state {
	/*
	 * All the shared memory, from __vmalloc(): head, queues,
	 * descriptors and data area, size bytes. Mapped by the fault
	 * handler, page by page.
	 */
	struct dm_user_ring *shared;
	struct dm_user_ring_sqe *sq;
	struct dm_user_ring_cqe *cq;
	struct dm_user_message *desc;
	void *data;
	u64 size;
	unsigned int depth;
	unsigned int data_pages;
	/* Microseconds RING_ENTER spins before it sleeps (read_lock). */
	unsigned int busy_poll_us;
	/* The kernel's own queue positions (channel read_lock). */
	u32 sq_tail;
	u32 cq_head;
	/* What it shows in shared->flags, never read back (target lock). */
	u32 flags;
	/* Whose RLIMIT_MEMLOCK the memory is charged to, and how much. */
	struct mm_struct *mm;
	unsigned long locked_pages;
	/* The request in each slot, NULL when free (target lock). */
	struct dm_user_request **slot_req;
	/* A stack of free slot numbers (target lock; read locklessly). */
	unsigned int *free_slot;
	unsigned int nr_free;
	/* Data area pages in use, a bit each (target lock). */
	unsigned long *data_map;
	/*
	 * The oldest queued request did not fit in the free data pages;
	 * cleared when a request's pages are freed (target lock; read
	 * locklessly).
	 */
	bool data_full;
};

struct dm_user_channel {
	struct dm_user_target *target;
	struct list_head node;		/* in target->channels */
	/*
	 * Serialises this channel's read() calls, so that a partly read
	 * request is never copied by two calls at once. Not held while
	 * waiting for a request, so an answer never waits behind a read()
	 * that sleeps.
	 */
	struct mutex read_lock;
	/* Serialises this channel's write() calls: the partial answer. */
	struct mutex write_lock;
	/* Requests this channel has taken and not completed (target lock). */
	struct list_head owned;
	/* Request partly read by the daemon (target lock). */
	struct dm_user_request *sending;
	/* Request whose answer data is partly written (target lock). */
	struct dm_user_request *receiving;
	/*
	 * Opened for reading and writing, so it may serve and change
	 * settings; any other open may only read GET_INFO and GET_PARAMS.
	 */
	bool read_write;
	/* Has called read(), so counts in nr_serving (target lock). */
	bool serving;
	/*
	 * A request this channel had started to read was taken from it
	 * (request_timeout): every later read() and write() fails with
	 * ECONNRESET, so the daemon can tell its work on the channel is void
	 * (target lock; read locklessly by poll()).
	 */
	bool reset;
	/*
	 * DM_USER_EXT_* granted by NEGOTIATE: written (WRITE_ONCE) under
	 * read_lock, so read() reads it plainly; write() reads it once per
	 * call with READ_ONCE, not under read_lock, so a NEGOTIATE takes
	 * effect for answers from the next write().
	 */
	u64 extensions;
	/* t->nr_reloads when this channel last saw GET_INFO (target lock). */
	unsigned long reloads_seen;
	/* Answer header being assembled from split writes (write_lock). */
	struct dm_user_message answer;
	size_t answer_bytes;
	/*
	 * Set once by NEGOTIATE (smp_store_release, under read_lock and the
	 * target lock) and never cleared: a ring channel serves only
	 * through the ring.
	 */
	struct dm_user_ring_state *ring;
};

/* dm-user-channel.c */
extern const struct file_operations dm_user_fops;

/* The channel's ring, or NULL if it is not one. */
static inline struct dm_user_ring_state *
dm_user_channel_ring(struct dm_user_channel *ch)
{
	/* Pairs with the release in NEGOTIATE: the ring is seen set up. */
	return smp_load_acquire(&ch->ring);
}

/* dm_user_resp_status(): the answer is a remap (DM_USER_RESP_REMAP). */
#define DM_USER_ANSWER_REMAP	1
int dm_user_resp_status(u64 type, blk_status_t *status);
void dm_user_bad_answer(struct dm_user_target *t,
			const struct dm_user_message *ans, const char *why);
int dm_user_channel_error_locked(struct dm_user_target *t,
				 struct dm_user_channel *ch);
void dm_user_pin_locked(struct dm_user_target *t, struct dm_user_request *req);
bool dm_user_unpin_locked(struct dm_user_target *t,
			  struct dm_user_request *req, struct list_head *done);
void dm_user_finish_copy(struct dm_user_target *t, struct list_head *done);
size_t dm_user_copy_from_user(struct dm_user_request *req,
			      struct iov_iter *from);

/* dm-user-ring.c */
struct dm_user_ring_state *dm_user_ring_alloc(unsigned int depth,
					      unsigned int data_bytes,
					      const char **why);
void dm_user_ring_free(struct dm_user_ring_state *ring);
void dm_user_ring_set_flags(struct dm_user_ring_state *ring, u32 flags);
void dm_user_ring_clear_flags(struct dm_user_ring_state *ring, u32 flags);
void dm_user_ring_release_slot_locked(struct dm_user_ring_state *ring,
				      struct dm_user_request *req);
bool dm_user_ring_readable(struct dm_user_target *t,
			   struct dm_user_channel *ch);
long dm_user_ring_enter(struct dm_user_channel *ch, unsigned long arg);
int dm_user_ring_mmap(struct file *file, struct vm_area_struct *vma);

/* dm-user-target.c: claimed ranges */
/* What dm_user_change_claims() changes. */
enum dm_user_claims_op {
	DM_USER_CLAIM,
	DM_USER_RELEASE,
	DM_USER_NOTIFY_ON,
	DM_USER_NOTIFY_OFF,
	DM_USER_MAP,
	DM_USER_UNMAP,
};

int dm_user_change_claims(struct dm_user_target *t, enum dm_user_claims_op op,
			  sector_t start, sector_t len, unsigned int ops,
			  sector_t dest, unsigned int *nr);
unsigned int dm_user_map_ranges(struct dm_user_target *t);
sector_t dm_user_size(struct dm_user_target *t);
unsigned int dm_user_claim_ranges(struct dm_user_target *t,
				  bool *notify_writes);
bool dm_user_has_backing(struct dm_user_target *t);

/* dm-user-control.c */
long dm_user_ctl_ioctl(struct dm_user_target *t, struct dm_user_channel *ch,
		       struct dm_user_ctl __user *uarg);
int dm_user_ctl_message(struct dm_user_target *t, unsigned int argc,
			char **argv, char *result, unsigned int maxlen);

/* What status and GET_INFO report, read in one go under the target lock. */
struct dm_user_snapshot {
	/* Of the live table. */
	sector_t size;
	u64 ops;
	sector_t backing_start;
	char backing_name[16];	/* "" without a backing device */
	u64 reloads;
	unsigned int channels;
	unsigned int queued;
	unsigned int backlog;
	unsigned int inflight;
	enum dm_user_daemon_state state;
	u64 requeued;
	u64 timeouts;
	u64 bad_answers;
	u64 remapped;
	u64 notified;
	u64 passed;
	unsigned int claim_ranges;
	unsigned int map_ranges;
	struct dm_user_op_stats stats[DM_USER_NR_OPS];
};

/* dm-user-target.c */
/* Indexed by enum dm_user_daemon_state, for status and message text. */
extern const char *const dm_user_daemon_state_names[DM_USER_NR_DAEMON_STATES];
bool dm_user_may_change_settings(struct dm_user_target *t);
void dm_user_snapshot(struct dm_user_target *t, struct dm_user_channel *ch,
		      struct dm_user_snapshot *s);
void dm_user_prepare_to_wait_lifo(struct dm_user_target *t,
				  struct wait_queue_entry *wait, int state);
void dm_user_set_max_queued_locked(struct dm_user_target *t,
				   unsigned int max_queued);
void dm_user_insert_by_age_locked(struct dm_user_target *t,
				  struct dm_user_request *req,
				  struct list_head *list);
bool dm_user_hash_too_small(struct dm_user_target *t);
int dm_user_grow_hash(struct dm_user_target *t, unsigned int max_queued);
void dm_user_hash_add_locked(struct dm_user_target *t,
			     struct dm_user_request *req);
struct dm_user_request *dm_user_hash_find_locked(struct dm_user_target *t,
						 u64 seq);
void dm_user_set_no_daemon_timeout_locked(struct dm_user_target *t,
					  unsigned int secs,
					  struct list_head *done);
void dm_user_set_request_timeout_locked(struct dm_user_target *t,
					unsigned int secs);
void dm_user_channel_serving_locked(struct dm_user_target *t,
				    struct dm_user_channel *ch);
void dm_user_channel_closed_locked(struct dm_user_target *t,
				   struct dm_user_channel *ch,
				   struct list_head *done);
void dm_user_detach_locked(struct dm_user_target *t,
			   struct dm_user_request *req, struct list_head *done,
			   blk_status_t status);
const char *dm_user_remap_check(struct dm_user_target *t,
				struct dm_user_channel *ch,
				struct dm_user_request *req, u64 sector);
void dm_user_answer_locked(struct dm_user_target *t,
			   struct dm_user_request *req, int kind,
			   blk_status_t status, u64 sector,
			   struct list_head *done);
void dm_user_complete_list(struct dm_user_target *t, struct list_head *done);
/* Which requests dm_user_fail_requests_locked() takes. */
enum dm_user_take {
	/* Those on the queue and the backlog: no channel has them. */
	DM_USER_TAKE_QUEUED,
	/* Also those a channel took but has not started to read. */
	DM_USER_TAKE_UNSTARTED,
	/* All, for a target that is going away. */
	DM_USER_TAKE_ALL,
};

void dm_user_fail_requests_locked(struct dm_user_target *t,
				  struct list_head *done, enum dm_user_take which,
				  blk_status_t status);

#endif /* DM_USER_INTERNAL_H */
