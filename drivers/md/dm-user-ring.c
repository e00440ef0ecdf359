// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user: the ring channel (DM_USER_EXT_RING).
 *
 * A ring channel shares memory with its daemon: a head (struct
 * dm_user_ring), a submission queue, a completion queue, a request header
 * per slot, and a data area. One DM_USER_IOCTL_RING_ENTER call consumes
 * the daemon's completions and fills free slots with queued requests, so a
 * batch of requests and a batch of answers cost one system call, and no
 * data goes through read() or write(): the kernel copies a write's data
 * into the data area when it posts the request, and a read's data out of
 * it when it consumes the completion.
 *
 * All of the memory is allocated when the ring is set up, none on the I/O
 * path: a ring may serve the swap device of a machine that is out of
 * memory. A request's data takes as many pages of the data area as it
 * needs, not a fixed share per slot, so the area can be much smaller than
 * the depth times the largest request; a request that does not fit waits
 * until completions free pages, which they always do, as the area holds
 * the largest request.
 *
 * Nothing the daemon can write is trusted: the kernel keeps its own queue
 * positions, slot table and page map, reads only the completion queue's
 * tail and its entries from the shared memory, and checks every entry
 * against the slot table before it touches a request.
 *
 * Locks (see also the top of dm-user-target.c): the channel's read_lock
 * serialises RING_ENTER calls, so the kernel's queue positions (sq_tail,
 * cq_head) and the busy-poll time (set by NEGOTIATE, which holds it too)
 * are its; a caller spinning for a request holds no lock. The slot table,
 * the free slots and the page map are the target lock's, as the requests
 * in them are, because teardown, request_timeout and close take requests
 * out of slots. The fault handler takes no lock: the memory does not
 * change until the ring is freed.
 *
 * Lifetime: the ring is allocated by NEGOTIATE and freed when the channel
 * is released. A mapping holds the file, so the release comes after the
 * last munmap(); a page the daemon still has pinned (O_DIRECT in flight)
 * stays until its last put_page().
 */

#include <linux/bio.h>
#include <linux/bitmap.h>
#include <linux/device-mapper.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/nospec.h>
#include <linux/pagemap.h>
#include <linux/sched/clock.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/stat.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/vmalloc.h>

#include "dm-user.h"
#include "dm-user-compat.h"

/*
 * The shared area's layout: the head, then the submission queue, the
 * completion queue and the descriptors, each aligned for its entries, then
 * the data area from a page boundary. Returns the data area's offset.
 */
static size_t dm_user_ring_layout(unsigned int depth, u32 *sq_off,
				  u32 *cq_off, u32 *desc_off)
{
	size_t off = ALIGN(sizeof(struct dm_user_ring), SMP_CACHE_BYTES);

	*sq_off = off;
	off = ALIGN(off + depth * sizeof(struct dm_user_ring_sqe),
		    SMP_CACHE_BYTES);
	*cq_off = off;
	off = ALIGN(off + depth * sizeof(struct dm_user_ring_cqe),
		    SMP_CACHE_BYTES);
	*desc_off = off;
	off += depth * sizeof(struct dm_user_message);
	return PAGE_ALIGN(off);
}

/**
 * dm_user_ring_alloc() - allocate a ring
 * @depth: slots, a power of two, at most DM_USER_RING_MAX_DEPTH.
 * @data_bytes: bytes of the data area, a multiple of PAGE_SIZE from
 *	DM_USER_MAX_IO_SECTORS sectors to DM_USER_RING_MAX_DATA.
 * @why: set to the reason when it fails.
 *
 * The memory is charged to the caller's memory cgroup and counted in its
 * locked memory (RLIMIT_MEMLOCK, unless it has CAP_IPC_LOCK), as it stays
 * in memory until the ring is freed.
 *
 * Return: the ring with every slot and page free, or an ERR_PTR():
 * -ENOMEM without the memory or past RLIMIT_MEMLOCK.
 */
struct dm_user_ring_state *dm_user_ring_alloc(unsigned int depth,
					      unsigned int data_bytes,
					      const char **why)
{
	struct dm_user_ring_state *ring;
	u32 sq_off, cq_off, desc_off;
	size_t data_off;
	unsigned int i;
	int r;

	/* The layout the uapi header promises, whatever the compiler. */
	BUILD_BUG_ON(sizeof(struct dm_user_ring) != 128);
	BUILD_BUG_ON(offsetof(struct dm_user_ring, cq_tail) != 64);
	BUILD_BUG_ON(sizeof(struct dm_user_ring_sqe) != 8);
	BUILD_BUG_ON(sizeof(struct dm_user_ring_cqe) != 32);
	BUILD_BUG_ON(offsetof(struct dm_user_ring_cqe, addr) != 16);
	BUILD_BUG_ON(offsetof(struct dm_user_ring_cqe, flags) != 24);

	*why = "cannot allocate the ring";
	ring = kzalloc(sizeof(*ring), GFP_KERNEL_ACCOUNT);
	if (!ring)
		return ERR_PTR(-ENOMEM);
	data_off = dm_user_ring_layout(depth, &sq_off, &cq_off, &desc_off);
	ring->size = data_off + data_bytes;
	r = account_locked_vm(current->mm, ring->size >> PAGE_SHIFT, true);
	if (r) {
		*why = "the ring would exceed RLIMIT_MEMLOCK";
		kfree(ring);
		return ERR_PTR(r);
	}
	ring->mm = current->mm;
	mmgrab(ring->mm);
	ring->locked_pages = ring->size >> PAGE_SHIFT;
	/* A daemon's wish, which may be refused without a fuss. */
	ring->shared = __vmalloc(ring->size, GFP_KERNEL_ACCOUNT | __GFP_ZERO |
				 __GFP_NOWARN | __GFP_RETRY_MAYFAIL);
	ring->slot_req = kcalloc(depth, sizeof(*ring->slot_req),
				 GFP_KERNEL_ACCOUNT);
	ring->free_slot = kcalloc(depth, sizeof(*ring->free_slot),
				  GFP_KERNEL_ACCOUNT);
	ring->data_pages = data_bytes >> PAGE_SHIFT;
	ring->data_map = bitmap_zalloc(ring->data_pages, GFP_KERNEL_ACCOUNT);
	if (!ring->shared || !ring->slot_req || !ring->free_slot ||
	    !ring->data_map) {
		dm_user_ring_free(ring);
		return ERR_PTR(-ENOMEM);
	}
	ring->depth = depth;
	ring->sq = (void *)ring->shared + sq_off;
	ring->cq = (void *)ring->shared + cq_off;
	ring->desc = (void *)ring->shared + desc_off;
	ring->data = (void *)ring->shared + data_off;
	/* Slot 0 on top, so a lightly loaded ring touches few pages. */
	for (i = 0; i < depth; i++)
		ring->free_slot[i] = depth - 1 - i;
	ring->nr_free = depth;

	ring->shared->depth = depth;
	ring->shared->data_size = data_bytes;
	ring->shared->sq_offset = sq_off;
	ring->shared->cq_offset = cq_off;
	ring->shared->desc_offset = desc_off;
	ring->shared->data_offset = data_off;
	return ring;
}

/**
 * dm_user_ring_free() - free a ring no request is in and nothing maps
 * @ring: the ring, or one dm_user_ring_alloc() did not finish.
 */
void dm_user_ring_free(struct dm_user_ring_state *ring)
{
	vfree(ring->shared);
	kfree(ring->slot_req);
	kfree(ring->free_slot);
	bitmap_free(ring->data_map);
	if (ring->mm) {
		account_locked_vm(ring->mm, ring->locked_pages, false);
		mmdrop(ring->mm);
	}
	kfree(ring);
}

/*
 * Sets @flags in what the daemon sees of the ring's flags. The kernel's
 * own copy is what counts: a daemon that writes the word changes nothing.
 * The target lock is held.
 */
void dm_user_ring_set_flags(struct dm_user_ring_state *ring, u32 flags)
{
	ring->flags |= flags;
	WRITE_ONCE(ring->shared->flags, ring->flags);
}

/* Clears @flags as dm_user_ring_set_flags() sets them. */
void dm_user_ring_clear_flags(struct dm_user_ring_state *ring, u32 flags)
{
	ring->flags &= ~flags;
	WRITE_ONCE(ring->shared->flags, ring->flags);
}

/* Frees the slot and the data pages @req held; the target lock is held. */
void dm_user_ring_release_slot_locked(struct dm_user_ring_state *ring,
				      struct dm_user_request *req)
{
	ring->slot_req[req->slot] = NULL;
	ring->free_slot[ring->nr_free] = req->slot;
	WRITE_ONCE(ring->nr_free, ring->nr_free + 1);
	if (req->data_count) {
		bitmap_clear(ring->data_map, req->data_first, req->data_count);
		WRITE_ONCE(ring->data_full, false);
	}
}

/* Whether a free slot and room for the oldest request's data are left. */
static bool dm_user_ring_has_room(struct dm_user_ring_state *ring)
{
	return READ_ONCE(ring->nr_free) && !READ_ONCE(ring->data_full);
}

/*
 * What RING_ENTER waits for: not the free slots, which another thread on
 * the same ring may take meanwhile; a waiter woken for a request it then
 * cannot take passes the wake-up on.
 */
static bool dm_user_ring_wakes(struct dm_user_target *t,
			       struct dm_user_channel *ch)
{
	return READ_ONCE(t->dead) || READ_ONCE(ch->reset) ||
	       !list_empty(&t->queue);
}

/* A call that leaves requests queued lets another waiter see them. */
static void dm_user_ring_pass_on(struct dm_user_target *t)
{
	if (!list_empty(&t->queue))
		wake_up(&t->wq);
}

/*
 * Copies between @req's bio and its pages of the data area: a write's data
 * into the area (@to_ring), or a read's answer out of it. No cache
 * maintenance: the ring is offered only where the data cache does not
 * alias (dm_user_compat_dcache_aliasing()).
 */
static void dm_user_ring_copy(struct dm_user_ring_state *ring,
			      struct dm_user_request *req, bool to_ring)
{
	void *p = ring->data + ((size_t)req->data_first << PAGE_SHIFT);
	struct bvec_iter iter;
	struct bio_vec bv;

	bio_for_each_segment(bv, dm_user_req_bio(req), iter) {
		if (to_ring)
			memcpy_from_bvec(p, &bv);
		else
			memcpy_to_bvec(&bv, p);
		p += bv.bv_len;
	}
}

/* The pages of the data area @req needs. */
static u32 dm_user_ring_data_pages(struct dm_user_request *req)
{
	if ((req->op != DM_USER_OP_READ && req->op != DM_USER_OP_WRITE) ||
	    req->notify)
		return 0;
	/*
	 * At most DM_USER_MAX_IO_SECTORS (user_map() cuts the rest off),
	 * which the area holds: see NEGOTIATE.
	 */
	return DIV_ROUND_UP(dm_user_req_bio(req)->bi_iter.bi_size, PAGE_SIZE);
}

/*
 * The first of @count free pages in a row, first fit, or data_pages if
 * there are none. The target lock is held.
 */
static unsigned long dm_user_ring_find_data(struct dm_user_ring_state *ring,
					    u32 count)
{
	return bitmap_find_next_zero_area(ring->data_map, ring->data_pages,
					  0, count, 0);
}

/*
 * Sets data pages aside for @req, which has none yet. Returns false if not
 * enough are free in a row. The target lock is held.
 */
static bool dm_user_ring_take_data(struct dm_user_ring_state *ring,
				   struct dm_user_request *req)
{
	u32 count = dm_user_ring_data_pages(req);
	unsigned long first;

	req->data_first = 0;
	req->data_count = 0;
	if (!count)
		return true;
	first = dm_user_ring_find_data(ring, count);
	if (first >= ring->data_pages)
		return false;
	bitmap_set(ring->data_map, first, count);
	req->data_first = first;
	req->data_count = count;
	return true;
}

/*
 * What poll() reports as POLLIN: a request waits and the ring has room
 * for it. data_full may be stale (the request that did not fit went to
 * another channel): then the request that waits now is tried.
 */
bool dm_user_ring_readable(struct dm_user_target *t,
			   struct dm_user_channel *ch)
{
	struct dm_user_ring_state *ring = ch->ring;
	struct dm_user_request *req;
	bool fits = false;

	if (READ_ONCE(t->dead) || READ_ONCE(ch->reset))
		return true;
	if (!READ_ONCE(ring->nr_free) || list_empty(&t->queue))
		return false;
	if (!READ_ONCE(ring->data_full))
		return true;
	spin_lock_irq(&t->lock);
	req = list_first_entry_or_null(&t->queue, struct dm_user_request,
				       list);
	if (req) {
		u32 count = dm_user_ring_data_pages(req);

		fits = !count || dm_user_ring_find_data(ring, count) <
				 ring->data_pages;
		if (fits)
			ring->data_full = false;
	}
	spin_unlock_irq(&t->lock);
	return fits;
}

/*
 * The request the completion @cqe completes, or NULL with the reason in
 * *@why; *@kind and *@status are dm_user_resp_status() of its type.
 */
static struct dm_user_request *
dm_user_ring_check_cqe(struct dm_user_target *t, struct dm_user_channel *ch,
		       struct dm_user_ring_state *ring,
		       const struct dm_user_ring_cqe *cqe, int *kind,
		       blk_status_t *status, const char **why)
{
	struct dm_user_request *req;
	unsigned int slot;

	*kind = dm_user_resp_status(cqe->type, status);
	*why = NULL;
	if (cqe->slot >= ring->depth) {
		*why = "slot out of range";
		return NULL;
	}
	/* The daemon's number indexes the table: not even speculatively past. */
	slot = array_index_nospec(cqe->slot, ring->depth);
	req = ring->slot_req[slot];
	if (!req)
		*why = "no request in the slot";
	else if (req->msg.seq != cqe->seq)
		*why = "seq is not the slot's request's";
	else if (*kind < 0)
		*why = "unknown response type";
	else if (cqe->reserved)
		*why = "reserved field not zero";
	else if (*kind == DM_USER_ANSWER_REMAP)
		*why = cqe->flags ? "flags on a remap" :
		       dm_user_remap_check(t, ch, req, cqe->sector);
	else if (cqe->flags & ~DM_USER_RING_CQE_ADDR)
		*why = "unknown completion flags";
	else if (cqe->flags && (req->op != DM_USER_OP_READ ||
				*status != BLK_STS_OK))
		*why = "flags on an answer that is not a read's data";
	else if (!(cqe->flags & DM_USER_RING_CQE_ADDR) && cqe->addr)
		*why = "address without DM_USER_RING_CQE_ADDR";
	else if (!IS_ENABLED(CONFIG_64BIT) && upper_32_bits(cqe->addr))
		*why = "address beyond 32 bits";
	return *why ? NULL : req;
}

/* Fault-ins in a row that may bring no progress before the copy gives up. */
#define DM_USER_RING_FAULT_TRIES	3

/*
 * Copies a read's answer from the caller's memory at @addr into @req's
 * bio, as write() does: pinned, with page faults disabled, and a fault
 * taken unpinned before the copy goes on (see dm_user_send()). Called
 * with the target lock held, which it drops. Returns:
 *  0 when the request is on @done (copied, or aborted meanwhile), with a
 *    pin added to *@pins;
 *  -EFAULT if the memory cannot be read: the request is in its slot;
 *  -EINTR if the caller is being killed: the request is in its slot;
 *  -EAGAIN if the channel failed or the request left its slot (reset,
 *    teardown) while it was unpinned.
 */
static int dm_user_ring_copy_from_addr(struct dm_user_target *t,
				       struct dm_user_channel *ch,
				       struct dm_user_ring_state *ring,
				       struct dm_user_request *req, u64 addr,
				       struct list_head *done,
				       unsigned int *pins)
	__must_hold(&t->lock)
{
	const char __user *src = u64_to_user_ptr(addr);
	size_t len = req->msg.len, off, left;
	unsigned int slot = req->slot, stalls = 0;
	u64 seq = req->msg.seq;
	struct iov_iter from;

	if (!access_ok(src, len))
		return -EFAULT;
	req->received = 0;
	req->data_iter = dm_user_req_bio(req)->bi_iter;
	for (;;) {
		dm_user_pin_locked(t, req);
		spin_unlock_irq(&t->lock);
		iov_iter_ubuf(&from, ITER_SOURCE, (void __user *)src +
			      req->received, len - req->received);
		pagefault_disable();
		if (dm_user_copy_from_user(req, &from))
			stalls = 0;
		pagefault_enable();
		cond_resched();
		spin_lock_irq(&t->lock);
		if (dm_user_unpin_locked(t, req, done)) {
			(*pins)++;
			return 0;
		}
		if (req->received == len) {
			dm_user_detach_locked(t, req, done, BLK_STS_OK);
			(*pins)++;
			return 0;
		}
		/* Stopped at a fault: the pin goes, nothing to complete. */
		if (atomic_dec_and_test(&t->nr_busy))
			wake_up(&t->busy_wq);
		if (fatal_signal_pending(current))
			return -EINTR;
		/* Pages faulted in may be reclaimed before the copy: retried. */
		if (++stalls > DM_USER_RING_FAULT_TRIES)
			return -EFAULT;
		off = req->received;
		left = len - off;
		spin_unlock_irq(&t->lock);
		left = fault_in_readable(src + off, left) == left;
		spin_lock_irq(&t->lock);
		/*
		 * Unpinned, it may have left the slot: @req is looked at only
		 * once it is found there. Only this call fills slots
		 * (read_lock), so a request found there is this one.
		 */
		if (ring->slot_req[slot] != req || req->msg.seq != seq ||
		    dm_user_channel_error_locked(t, ch))
			return -EAGAIN;
		if (left)
			return -EFAULT;
	}
}

/*
 * Takes one completion: the request in its slot goes on @done, with the
 * read's data copied out of the slot or from the daemon's memory. Called
 * with the target lock held, which a copy drops and takes again; a copy's
 * pin is added to *@pins, to be dropped once @done is completed, as
 * dm_user_finish_copy() does.
 */
static void dm_user_ring_take_cqe(struct dm_user_target *t,
				  struct dm_user_channel *ch,
				  struct dm_user_ring_state *ring,
				  const struct dm_user_ring_cqe *cqe,
				  struct list_head *done, unsigned int *pins)
	__must_hold(&t->lock)
{
	struct dm_user_request *req;
	blk_status_t status;
	const char *why;
	int kind;

	req = dm_user_ring_check_cqe(t, ch, ring, cqe, &kind, &status, &why);
	if (!req) {
		struct dm_user_message ans = {
			.seq = cqe->seq, .type = cqe->type,
		};

		dm_user_bad_answer(t, &ans, why);
		return;
	}
	/* Only a read's successful answer brings data. */
	if (req->op != DM_USER_OP_READ || status != BLK_STS_OK || kind) {
		dm_user_answer_locked(t, req, kind, status, cqe->sector, done);
		return;
	}
	if (cqe->flags & DM_USER_RING_CQE_ADDR) {
		/*
		 * The slot and seq are the request's: unlike the entries
		 * refused above, this one is failed, or the daemon, which
		 * cannot tell which entry was refused, would wait for it.
		 */
		if (dm_user_ring_copy_from_addr(t, ch, ring, req, cqe->addr,
						done, pins) == -EFAULT) {
			struct dm_user_message ans = {
				.seq = cqe->seq, .type = cqe->type,
				.len = req->msg.len,
			};

			dm_user_bad_answer(t, &ans,
					   "cannot read the data at the address");
			dm_user_detach_locked(t, req, done, BLK_STS_IOERR);
		}
		return;
	}

	dm_user_pin_locked(t, req);
	spin_unlock_irq(&t->lock);
	dm_user_ring_copy(ring, req, false);
	cond_resched();
	spin_lock_irq(&t->lock);
	if (!dm_user_unpin_locked(t, req, done))
		dm_user_detach_locked(t, req, done, BLK_STS_OK);
	(*pins)++;
}

/*
 * Consumes the completions the daemon posted. Returns 0, or why the
 * channel cannot be used (then what is left of the queue stays).
 */
static int dm_user_ring_complete(struct dm_user_target *t,
				 struct dm_user_channel *ch,
				 struct dm_user_ring_state *ring)
{
	/* Pairs with the daemon's release of the tail after its entries. */
	u32 tail = smp_load_acquire(&ring->shared->cq_tail);
	u32 mask = ring->depth - 1;
	unsigned int pins = 0;
	LIST_HEAD(done);
	int r = 0;

	if (tail == ring->cq_head)
		return 0;
	spin_lock_irq(&t->lock);
	if (tail - ring->cq_head > ring->depth) {
		struct dm_user_message ans = { .len = tail - ring->cq_head };

		dm_user_bad_answer(t, &ans,
				   "completion queue ahead of the ring's depth");
		spin_unlock_irq(&t->lock);
		return -EINVAL;
	}
	while (ring->cq_head != tail) {
		struct dm_user_ring_cqe cqe;

		r = dm_user_channel_error_locked(t, ch);
		if (r)
			break;
		/* Once: the daemon may change the entry under us. */
		memcpy(&cqe, &ring->cq[ring->cq_head & mask], sizeof(cqe));
		ring->cq_head++;
		dm_user_ring_take_cqe(t, ch, ring, &cqe, &done, &pins);
	}
	spin_unlock_irq(&t->lock);
	/* The entries are read before the daemon may reuse their places. */
	smp_store_release(&ring->shared->cq_head, ring->cq_head);
	/* The bios first, then the pins: teardown waits for those. */
	dm_user_complete_list(t, &done);
	if (pins && atomic_sub_and_test(pins, &t->nr_busy))
		wake_up(&t->busy_wq);
	return r;
}

/*
 * Fills free slots with queued requests and posts them. Returns the number
 * posted; *@err says why it stopped early, if it did for a reason the
 * caller must report.
 */
static unsigned int dm_user_ring_fill(struct dm_user_target *t,
				      struct dm_user_channel *ch,
				      struct dm_user_ring_state *ring,
				      int *err)
{
	u32 mask = ring->depth - 1;
	unsigned int posted = 0, share = 0;

	*err = 0;
	spin_lock_irq(&t->lock);
	for (;;) {
		struct dm_user_request *req;
		LIST_HEAD(done);

		*err = dm_user_channel_error_locked(t, ch);
		if (*err)
			break;
		if (unlikely(!ch->serving))
			dm_user_channel_serving_locked(t, ch);
		/*
		 * Each serving channel's share of what waits, so that one
		 * call does not take it all while other channels idle.
		 */
		if (!share)
			share = DIV_ROUND_UP(t->nr_queued,
					     max(t->nr_serving, 1U));
		if (posted >= share || !ring->nr_free)
			break;
		req = list_first_entry_or_null(&t->queue,
					       struct dm_user_request, list);
		if (!req) {
			WRITE_ONCE(ring->data_full, false);
			break;
		}
		/*
		 * Oldest first: a large request is not passed over for
		 * ever by small ones. It fits once completions free pages,
		 * as the area holds the largest request
		 * (DM_USER_MAX_IO_SECTORS).
		 */
		if (!dm_user_ring_take_data(ring, req)) {
			WRITE_ONCE(ring->data_full, true);
			break;
		}
		WRITE_ONCE(ring->data_full, false);

		list_del(&req->list);
		dm_user_insert_by_age_locked(t, req, &ch->owned);
		t->nr_queued--;
		t->nr_inflight++;
		req->state = DM_USER_REQ_RING;
		req->owner = ch;
		req->msg.seq = t->next_seq++;
		WRITE_ONCE(ring->nr_free, ring->nr_free - 1);
		req->slot = ring->free_slot[ring->nr_free];
		ring->slot_req[req->slot] = req;

		if (req->op == DM_USER_OP_WRITE && !req->notify) {
			dm_user_pin_locked(t, req);
			spin_unlock_irq(&t->lock);
			dm_user_ring_copy(ring, req, true);
			/* Up to the whole area in one call: let others run. */
			cond_resched();
			spin_lock_irq(&t->lock);
			if (dm_user_unpin_locked(t, req, &done)) {
				/* Aborted meanwhile: it is not posted. */
				spin_unlock_irq(&t->lock);
				dm_user_finish_copy(t, &done);
				spin_lock_irq(&t->lock);
				continue;
			}
			if (atomic_dec_and_test(&t->nr_busy))
				wake_up(&t->busy_wq);
		}
		memcpy(&ring->desc[req->slot], &req->msg, sizeof(req->msg));
		ring->sq[ring->sq_tail & mask] = (struct dm_user_ring_sqe){
			.slot = req->slot,
			.data = req->data_first << PAGE_SHIFT,
		};
		ring->sq_tail++;
		posted++;
	}
	spin_unlock_irq(&t->lock);
	/* Leave no request unseen if more are waiting, whatever stopped us. */
	dm_user_ring_pass_on(t);
	if (posted)
		/* The entries and descriptors before the tail that posts them. */
		smp_store_release(&ring->shared->sq_tail, ring->sq_tail);
	return posted;
}

/*
 * Waits up to *@timeout jiffies (MAX_SCHEDULE_TIMEOUT: for ever) until
 * dm_user_ring_wakes(), leaving in *@timeout the time left. Exclusive
 * and last come first woken (dm_user_prepare_to_wait_lifo()), so that a
 * request wakes one waiter; a waiter that leaves without taking it passes
 * the wake-up on. Returns 0 or -EINTR.
 */
static int dm_user_ring_wait(struct dm_user_target *t,
			     struct dm_user_channel *ch, long *timeout_left)
{
	long timeout = *timeout_left;
	DEFINE_WAIT(wait);
	int r = 0;

	for (;;) {
		dm_user_prepare_to_wait_lifo(t, &wait, TASK_INTERRUPTIBLE);
		if (dm_user_ring_wakes(t, ch) || !timeout)
			break;
		/* Not restarted: the time waited would start again. */
		if (signal_pending(current)) {
			r = -EINTR;
			break;
		}
		timeout = schedule_timeout(timeout);
	}
	finish_wait(&t->wq, &wait);
	*timeout_left = timeout;
	return r;
}

/* A RING_ENTER caller spinning for a request (DM_USER_ATTR_RING_BUSY_POLL). */
struct dm_user_ring_poller {
	struct wait_queue_entry wait;
	/* Took a wake-up (t->wq.lock). */
	bool woken;
};

/*
 * Takes the first wake-up, so that a request that comes while the caller
 * spins does not also wake a sleeping thread for nothing; the next ones
 * go on to the sleepers, which take the rest of a burst.
 */
static int dm_user_ring_poller_wake(struct wait_queue_entry *wait,
				    unsigned int mode, int sync, void *key)
{
	struct dm_user_ring_poller *p =
		container_of(wait, struct dm_user_ring_poller, wait);

	if (p->woken)
		return 0;
	p->woken = true;
	return 1;
}

/*
 * Spins up to @us microseconds, within *@timeout_left jiffies and leaving
 * there the time left, until dm_user_ring_wakes(), so that a
 * request that comes soon is taken without a sleep and a wake-up (a
 * context switch here and, where the submitter runs on another CPU, an
 * interrupt there). Meanwhile the caller is the first exclusive waiter on
 * t->wq, so the map path wakes no one else for that request. Stops early
 * for a signal or when another task could use this CPU, so it does not
 * hold up a submitter that runs here. local_clock() may step if the
 * caller moves to another CPU: jiffies bound the spin as well.
 */
static bool dm_user_ring_busy_poll(struct dm_user_target *t,
				   struct dm_user_channel *ch, unsigned int us,
				   long *timeout_left)
{
	struct dm_user_ring_poller p = { };
	unsigned long start = jiffies, spun;
	unsigned long last = start + usecs_to_jiffies(us) + 1;
	u64 end = local_clock() + (u64)us * NSEC_PER_USEC;
	bool found;

	init_waitqueue_func_entry(&p.wait, dm_user_ring_poller_wake);
	INIT_LIST_HEAD(&p.wait.entry);
	/* In front of the sleepers, but the caller stays running. */
	dm_user_prepare_to_wait_lifo(t, &p.wait, TASK_RUNNING);
	do {
		found = dm_user_ring_wakes(t, ch);
		if (found || need_resched() || !single_task_running() ||
		    signal_pending(current))
			break;
		cpu_relax();
	} while (local_clock() < end && time_before(jiffies, last));
	finish_wait(&t->wq, &p.wait);
	spun = jiffies - start;
	if (*timeout_left != MAX_SCHEDULE_TIMEOUT)
		*timeout_left -= min_t(unsigned long, spun, *timeout_left);
	/*
	 * A wake-up taken and not used (its request went to another ring):
	 * the sleep that follows checks the queue first, so none is lost.
	 */
	return found;
}

/**
 * dm_user_ring_enter() - DM_USER_IOCTL_RING_ENTER
 * @ch: the channel.
 * @arg: how long to wait for a request when none was posted, in
 *	milliseconds (DM_USER_RING_WAIT_FOREVER: without a limit), or
 *	DM_USER_RING_COMPLETE_ONLY alone.
 *
 * Return: the number of requests posted, or a negative errno (see the uapi
 * header).
 */
long dm_user_ring_enter(struct dm_user_channel *ch, unsigned long arg)
{
	struct dm_user_ring_state *ring = dm_user_channel_ring(ch);
	unsigned long wait_ms = arg & DM_USER_RING_WAIT_FOREVER;
	struct dm_user_target *t = ch->target;
	unsigned int posted = 0, busy_poll_us;
	long timeout;
	bool found;
	int r;

	if (arg > U32_MAX || !ring ||
	    ((arg & DM_USER_RING_COMPLETE_ONLY) && wait_ms))
		return -EINVAL;
	timeout = wait_ms == DM_USER_RING_WAIT_FOREVER ? MAX_SCHEDULE_TIMEOUT :
		  (long)msecs_to_jiffies(wait_ms);
	if (mutex_lock_interruptible(&ch->read_lock))
		return -ERESTARTSYS;
	busy_poll_us = ring->busy_poll_us;
	r = dm_user_ring_complete(t, ch, ring);
	while (!r && !(arg & DM_USER_RING_COMPLETE_ONLY)) {
		posted = dm_user_ring_fill(t, ch, ring, &r);
		/* Only this daemon's completions make room: not waited for. */
		if (posted || r || !timeout || !dm_user_ring_has_room(ring))
			break;
		mutex_unlock(&ch->read_lock);
		/*
		 * Once a call, within wait_ms: a request another ring took
		 * is slept for.
		 */
		busy_poll_us = min_t(u64, busy_poll_us,
				     (u64)wait_ms * USEC_PER_MSEC);
		found = busy_poll_us &&
			dm_user_ring_busy_poll(t, ch, busy_poll_us, &timeout);
		busy_poll_us = 0;
		if (!found)
			r = dm_user_ring_wait(t, ch, &timeout);
		if (!r && mutex_lock_interruptible(&ch->read_lock))
			r = -EINTR;
		if (r) {
			dm_user_ring_pass_on(t);
			return r;
		}
	}
	mutex_unlock(&ch->read_lock);
	return r ? r : posted;
}

static vm_fault_t dm_user_ring_fault(struct vm_fault *vmf)
{
	struct dm_user_ring_state *ring = vmf->vma->vm_private_data;
	struct page *page;

	/* mremap() may have grown the mapping past the ring. */
	if (vmf->pgoff >= ring->size >> PAGE_SHIFT)
		return VM_FAULT_SIGBUS;
	page = vmalloc_to_page((void *)ring->shared +
			       (vmf->pgoff << PAGE_SHIFT));
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct dm_user_ring_vm_ops = {
	.fault = dm_user_ring_fault,
};

/**
 * dm_user_ring_mmap() - map a ring channel's shared memory
 * @file: the channel.
 * @vma: shared, within DM_USER_ATTR_RING_SIZE bytes from offset 0.
 *
 * Return: 0, -EINVAL for a channel without the ring, a private mapping or
 * one past the ring's end, -EPERM for an executable one.
 */
int dm_user_ring_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct dm_user_channel *ch = file->private_data;
	struct dm_user_ring_state *ring = dm_user_channel_ring(ch);

	if (!ring || !(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	/* Data, never code. */
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	if (vma->vm_pgoff > ring->size >> PAGE_SHIFT ||
	    vma_pages(vma) > (ring->size >> PAGE_SHIFT) - vma->vm_pgoff)
		return -EINVAL;
	/*
	 * The memory is the channel's: not for a child or a core dump. Not
	 * VM_DONTEXPAND: that makes the mapping special, and mmap() then
	 * drops the VM_LOCKONFAULT of a daemon under mlockall(MCL_FUTURE |
	 * MCL_ONFAULT) but still populates it, mapping every page at once.
	 * A mapping grown by mremap() gets SIGBUS past the ring's end.
	 */
	dm_user_compat_vm_flags_mod(vma, VM_DONTCOPY | VM_DONTDUMP,
				    VM_MAYEXEC);
	vma->vm_ops = &dm_user_ring_vm_ops;
	vma->vm_private_data = ring;
	return 0;
}
