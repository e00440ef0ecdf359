// SPDX-License-Identifier: GPL-2.0
/*
 * dm-user: the channel file operations of /dev/dm-user/<name>.
 *
 * Every open() is a channel. read() hands the daemon the next request: the
 * header, then for a write the data. write() takes the answer: the header,
 * then for a successful read the data. Either may be split into pieces of
 * any size; one call never spans two messages, unless the channel
 * negotiated READ_BATCH (read) or WRITE_BATCH (write). The rules for locks are at
 * the top of dm-user-target.c; this file owns dm_user_channel.read_lock
 * and write_lock, which serialise the read() and the write() calls of one
 * channel, are never held while waiting for a request and are never taken
 * on the map path. A read() and a write() of one channel run concurrently.
 */

#include <linux/bio.h>
#include <linux/device-mapper.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uio.h>

#include "dm-user.h"
#include "dm-user-compat.h"

#define DM_USER_HDR_SIZE	sizeof(struct dm_user_message)

static bool dm_user_nonblocking(struct kiocb *iocb)
{
	return (iocb->ki_flags & IOCB_NOWAIT) ||
	       (iocb->ki_filp->f_flags & O_NONBLOCK);
}

/*
 * Takes one of the channel's mutexes. They are held only while a call
 * copies a message, never while it waits for a request, so an O_NONBLOCK
 * call may sleep on them as briefly as on a page fault; only IOCB_NOWAIT
 * (io_uring's first attempt, which it retries from a worker) must not.
 */
static int dm_user_lock_channel(struct mutex *lock, struct kiocb *iocb)
{
	if (iocb->ki_flags & IOCB_NOWAIT)
		return mutex_trylock(lock) ? 0 : -EAGAIN;
	return mutex_lock_interruptible(lock) ? -ERESTARTSYS : 0;
}

/* Why a call on @ch must fail at once, or 0. */
int dm_user_channel_error_locked(struct dm_user_target *t,
				 struct dm_user_channel *ch)
{
	lockdep_assert_held(&t->lock);
	if (t->dead)
		return -ENOTBLK;
	if (ch->reset)
		return -ECONNRESET;
	return 0;
}

/* Marks @req busy so that teardown leaves its pages alone. */
void dm_user_pin_locked(struct dm_user_target *t, struct dm_user_request *req)
{
	lockdep_assert_held(&t->lock);
	req->busy = true;
	atomic_inc(&t->nr_busy);
}

/*
 * Ends a copy started by dm_user_pin_locked(). Returns true if teardown
 * aborted the request meanwhile; it is then on @done, to be completed.
 */
bool dm_user_unpin_locked(struct dm_user_target *t,
			  struct dm_user_request *req, struct list_head *done)
{
	lockdep_assert_held(&t->lock);
	req->busy = false;
	if (!req->aborted)
		return false;
	dm_user_detach_locked(t, req, done, req->abort_status);
	return true;
}

/*
 * Completes @done, then drops the busy count taken by the pin: in this
 * order, so that the destructor, which waits for the count, never returns
 * before the bio it aborted has been completed.
 */
void dm_user_finish_copy(struct dm_user_target *t, struct list_head *done)
{
	dm_user_complete_list(t, done);
	if (atomic_dec_and_test(&t->nr_busy))
		wake_up(&t->busy_wq);
}

/* ------------------------------------------------------------------------
 * open and release
 */

static int dm_user_open(struct inode *inode, struct file *file)
{
	/*
	 * chrdev_open() holds a reference on the cdev and through it on
	 * t->dev, so t stays allocated; t->dead says whether it is torn down.
	 */
	struct dm_user_target *t = container_of(inode->i_cdev,
						 struct dm_user_target, cdev);
	struct dm_user_channel *ch;
	unsigned long irq_flags;

	ch = kzalloc(sizeof(*ch), GFP_KERNEL);
	if (!ch)
		return -ENOMEM;
	mutex_init(&ch->read_lock);
	mutex_init(&ch->write_lock);
	INIT_LIST_HEAD(&ch->owned);
	INIT_LIST_HEAD(&ch->node);
	ch->target = t;
	ch->read_write = (file->f_mode & (FMODE_READ | FMODE_WRITE)) ==
			 (FMODE_READ | FMODE_WRITE);

	spin_lock_irqsave(&t->lock, irq_flags);
	if (t->dead) {
		spin_unlock_irqrestore(&t->lock, irq_flags);
		kfree(ch);
		return -ENOTBLK;
	}
	get_device(&t->dev);
	list_add_tail(&ch->node, &t->channels);
	t->nr_channels++;
	ch->reloads_seen = t->nr_reloads;
	spin_unlock_irqrestore(&t->lock, irq_flags);

	file->private_data = ch;
	stream_open(inode, file);
	/* read() and write() honour IOCB_NOWAIT, so io_uring need not punt. */
	file->f_mode |= FMODE_NOWAIT;
	return 0;
}

static int dm_user_release(struct inode *inode, struct file *file)
{
	struct dm_user_channel *ch = file->private_data;
	struct dm_user_target *t = ch->target;
	unsigned long irq_flags;
	LIST_HEAD(done);

	/*
	 * The requests this channel read and did not answer go back to the
	 * queue for another channel or a later daemon; see
	 * dm_user_channel_closed_locked() for what happens when this was the
	 * last channel.
	 */
	spin_lock_irqsave(&t->lock, irq_flags);
	dm_user_channel_closed_locked(t, ch, &done);
	spin_unlock_irqrestore(&t->lock, irq_flags);

	dm_user_complete_list(t, &done);
	/* No mapping is left: each holds the file, so this runs after. */
	if (ch->ring)
		dm_user_ring_free(ch->ring);
	kfree(ch);
	put_device(&t->dev);
	return 0;
}

/* ------------------------------------------------------------------------
 * read(): requests to the daemon
 */

/* A write's data follows its header; a write notification's does not. */
static size_t dm_user_data_len_to_user(struct dm_user_request *req)
{
	return req->op == DM_USER_OP_WRITE && !req->notify ? req->msg.len : 0;
}

/*
 * Takes the next queued request for @ch, if there is one: -EAGAIN if not.
 * The caller holds ch->read_lock.
 */
static int dm_user_take_request_locked(struct dm_user_target *t,
				       struct dm_user_channel *ch)
{
	struct dm_user_request *req;

	lockdep_assert_held(&t->lock);
	req = list_first_entry_or_null(&t->queue, struct dm_user_request,
				       list);
	if (!req)
		return -EAGAIN;

	list_del(&req->list);
	dm_user_insert_by_age_locked(t, req, &ch->owned);
	t->nr_queued--;
	t->nr_inflight++;
	req->state = DM_USER_REQ_SENDING;
	req->owner = ch;
	req->msg.seq = t->next_seq++;
	req->sent = 0;
	req->data_iter = dm_user_req_bio(req)->bi_iter;
	ch->sending = req;
	/* Leave no request unseen if more than one is waiting. */
	if (!list_empty(&t->queue))
		wake_up(&t->wq);
	return 0;
}

/* What a reader sleeping in read() waits for. */
static bool dm_user_readable(struct dm_user_target *t,
			     struct dm_user_channel *ch)
{
	return READ_ONCE(t->dead) || READ_ONCE(ch->reset) ||
	       READ_ONCE(ch->sending) || !list_empty(&t->queue);
}

/*
 * Sleeps until dm_user_readable(). Exclusive, so that a request wakes one
 * reader, and last come first woken (dm_user_prepare_to_wait_lifo()).
 * Returns 0 or -ERESTARTSYS.
 */
static int dm_user_wait_readable(struct dm_user_target *t,
				 struct dm_user_channel *ch)
{
	DEFINE_WAIT(wait);
	int r = 0;

	for (;;) {
		dm_user_prepare_to_wait_lifo(t, &wait, TASK_INTERRUPTIBLE);
		if (dm_user_readable(t, ch))
			break;
		if (signal_pending(current)) {
			r = -ERESTARTSYS;
			break;
		}
		schedule();
	}
	finish_wait(&t->wq, &wait);
	return r;
}

/* Copies what fits of @req's header and data to @to. */
static size_t dm_user_copy_to_user(struct dm_user_request *req,
				   struct iov_iter *to)
{
	size_t total = DM_USER_HDR_SIZE + dm_user_data_len_to_user(req);
	struct bio *bio = dm_user_req_bio(req);
	size_t copied = 0;

	if (req->sent < DM_USER_HDR_SIZE) {
		/*
		 * The header lives in the bio's slab object, which hardened
		 * usercopy rightly refuses to expose; copy it via the stack.
		 */
		struct dm_user_message msg = req->msg;
		size_t n = min_t(size_t, DM_USER_HDR_SIZE - req->sent,
				 iov_iter_count(to));
		size_t done = copy_to_iter((u8 *)&msg + req->sent, n, to);

		req->sent += done;
		copied += done;
		if (done < n)
			return copied;
	}

	while (req->sent < total && iov_iter_count(to)) {
		struct bio_vec bv = bio_iter_iovec(bio, req->data_iter);
		size_t n = min_t(size_t, bv.bv_len, iov_iter_count(to));
		size_t done = copy_page_to_iter(bv.bv_page, bv.bv_offset, n,
						to);

		bio_advance_iter_single(bio, &req->data_iter, done);
		req->sent += done;
		copied += done;
		if (done < n)
			break;
	}
	return copied;
}

/*
 * Copies what fits of ch->sending to @to. Returns the bytes copied; when
 * the request is now completely read it can be answered.
 *
 * The copy runs with page faults disabled, because the request is pinned
 * and teardown waits for pins: a fault on the daemon's buffer (userfaultfd,
 * a FUSE mapping) must not hold it up. A fault is then taken with the
 * request unpinned, and the copy goes on where it stopped.
 */
static size_t dm_user_send(struct dm_user_target *t,
			   struct dm_user_channel *ch, struct iov_iter *to)
	__must_hold(&t->lock)
{
	struct dm_user_request *req = ch->sending;
	size_t total = DM_USER_HDR_SIZE + dm_user_data_len_to_user(req);
	size_t copied = 0;
	LIST_HEAD(done);

	bool faulted_in = false;

	for (;;) {
		size_t want = min(total - req->sent, iov_iter_count(to));
		size_t n;

		dm_user_pin_locked(t, req);
		spin_unlock_irq(&t->lock);
		pagefault_disable();
		n = dm_user_copy_to_user(req, to);
		pagefault_enable();
		spin_lock_irq(&t->lock);
		copied += n;
		if (dm_user_unpin_locked(t, req, &done)) {
			/* Aborted meanwhile: complete it outside the lock. */
			spin_unlock_irq(&t->lock);
			dm_user_finish_copy(t, &done);
			spin_lock_irq(&t->lock);
			return copied;
		}
		/* Nothing to complete: the pin goes without dropping the lock. */
		if (atomic_dec_and_test(&t->nr_busy))
			wake_up(&t->busy_wq);
		if (req->sent == total) {
			/* Fully read: now, and only now, it can be answered. */
			ch->sending = NULL;
			req->state = DM_USER_REQ_WAITING;
			dm_user_hash_add_locked(t, req);
			return copied;
		}
		/*
		 * Done, or stopped at a fault: take it, unless it cannot be
		 * taken or taking it did not help (a fault finer than a page)
		 * or the caller is being killed.
		 */
		if (n == want || (!n && faulted_in) ||
		    fatal_signal_pending(current))
			return copied;
		want -= n;
		spin_unlock_irq(&t->lock);
		n = fault_in_iov_iter_writeable(to, want);
		spin_lock_irq(&t->lock);
		/* Unpinned, an unstarted request may have been taken back. */
		if (n == want || ch->sending != req ||
		    dm_user_channel_error_locked(t, ch))
			return copied;
		faulted_in = true;
	}
}

/* With READ_BATCH, whether the next queued request fits @room whole. */
static bool dm_user_next_fits_locked(struct dm_user_target *t, size_t room)
{
	struct dm_user_request *req;

	req = list_first_entry_or_null(&t->queue, struct dm_user_request,
				       list);
	return req && DM_USER_HDR_SIZE + dm_user_data_len_to_user(req) <= room;
}

/*
 * Locks @ch for reading with a request to send in ch->sending, waiting for
 * one unless @nonblock. Returns 0 with ch->read_lock held, or an error
 * without it.
 */
static int dm_user_read_begin(struct kiocb *iocb, struct dm_user_channel *ch,
			      bool nonblock)
{
	struct dm_user_target *t = ch->target;
	bool pass_on;
	int r;

	for (;;) {
		r = dm_user_lock_channel(&ch->read_lock, iocb);
		if (r) {
			/* It may have been woken for a request: pass it on. */
			if (!list_empty(&t->queue))
				wake_up(&t->wq);
			return r;
		}
		spin_lock_irq(&t->lock);
		r = dm_user_channel_error_locked(t, ch);
		/* It became a ring after read() looked: nothing to read. */
		if (!r && ch->ring)
			r = -EINVAL;
		if (!r) {
			if (unlikely(!ch->serving))
				dm_user_channel_serving_locked(t, ch);
			if (ch->sending) {
				/*
				 * Another reader of this channel started it:
				 * a wake-up meant for a queued request goes
				 * to another reader.
				 */
				if (!list_empty(&t->queue))
					wake_up(&t->wq);
				spin_unlock_irq(&t->lock);
				return 0;
			}
			if (!dm_user_take_request_locked(t, ch)) {
				spin_unlock_irq(&t->lock);
				return 0;
			}
			r = -EAGAIN;
		}
		/* A failing reader passes a wake-up it got on to another. */
		pass_on = r != -EAGAIN && !list_empty(&t->queue);
		spin_unlock_irq(&t->lock);
		mutex_unlock(&ch->read_lock);
		if (pass_on)
			wake_up(&t->wq);
		if (r != -EAGAIN || nonblock)
			return r;
		/*
		 * No channel mutex is held: this channel's answers and its
		 * other readers never wait for a request to arrive.
		 */
		r = dm_user_wait_readable(t, ch);
		if (r) {
			if (!list_empty(&t->queue))
				wake_up(&t->wq);
			return r;
		}
	}
}

static ssize_t dm_user_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct dm_user_channel *ch = iocb->ki_filp->private_data;
	struct dm_user_target *t = ch->target;
	size_t copied = 0, n;
	int r;

	/*
	 * A request may carry a write's data and must be answered on the
	 * same channel: only a read-write open may take one.
	 */
	if (!ch->read_write)
		return -EBADF;
	/* A ring channel's requests go through the ring only. */
	if (dm_user_channel_ring(ch))
		return -EINVAL;
	if (!iov_iter_count(to))
		return 0;
	/*
	 * A request handed out here waits in the answer hash: the first
	 * read() makes it. A cap raised while it did, which did not grow
	 * it then, has it grown here. Without a hash nothing can be handed
	 * out; a small one only has longer chains until a later read().
	 */
	if (unlikely(dm_user_hash_too_small(t))) {
		r = dm_user_grow_hash(t, READ_ONCE(t->max_queued));
		if (r && !READ_ONCE(t->answer_hash))
			return r;
	}

	for (;;) {
		r = dm_user_read_begin(iocb, ch, dm_user_nonblocking(iocb));
		if (r)
			return r;
		spin_lock_irq(&t->lock);
		/*
		 * The lock was dropped: the channel may have been reset, and
		 * a request not started yet may have been taken back, here
		 * or while a fault on the buffer was taken in dm_user_send().
		 */
		r = dm_user_channel_error_locked(t, ch);
		if (likely(!r && ch->sending)) {
			n = dm_user_send(t, ch, to);
			if (n || ch->sending)
				break;
		}
		spin_unlock_irq(&t->lock);
		mutex_unlock(&ch->read_lock);
		if (r)
			return r;
	}
	copied += n;

	/*
	 * A channel that negotiated READ_BATCH gets more whole requests in
	 * the same call, never waiting for them; others get one message.
	 */
	while ((ch->extensions & DM_USER_EXT_READ_BATCH) && n && !ch->sending &&
	       !dm_user_channel_error_locked(t, ch) &&
	       dm_user_next_fits_locked(t, iov_iter_count(to))) {
		if (dm_user_take_request_locked(t, ch))
			break;
		n = dm_user_send(t, ch, to);
		copied += n;
	}
	/* Nothing copied: the channel may have failed while a fault was taken. */
	r = copied ? 0 : dm_user_channel_error_locked(t, ch);
	spin_unlock_irq(&t->lock);
	mutex_unlock(&ch->read_lock);
	if (copied)
		return copied;
	return r ? r : -EFAULT;
}

/* ------------------------------------------------------------------------
 * write(): answers from the daemon
 */

/* Counts and reports a refused answer; the caller holds the target lock. */
void dm_user_bad_answer(struct dm_user_target *t,
			const struct dm_user_message *ans, const char *why)
{
	lockdep_assert_held(&t->lock);
	t->nr_bad_answers++;
	DMERR_LIMIT("%s: rejected answer for seq %llu (type %llu, len %llu): %s",
		    t->name, ans->seq, ans->type, ans->len, why);
}

/*
 * The status a DM_USER_RESP_* code completes a bio with: 0, or
 * DM_USER_ANSWER_REMAP for a remap (which the backing device completes,
 * so *@status is BLK_STS_OK), or -EINVAL for an unknown code.
 */
int dm_user_resp_status(u64 type, blk_status_t *status)
{
	switch (type) {
	case DM_USER_RESP_REMAP:
		*status = BLK_STS_OK;
		return DM_USER_ANSWER_REMAP;
	case DM_USER_RESP_SUCCESS:
		*status = BLK_STS_OK;
		return 0;
	case DM_USER_RESP_ERROR:
		*status = BLK_STS_IOERR;
		return 0;
	case DM_USER_RESP_UNSUPPORTED:
		*status = BLK_STS_NOTSUPP;
		return 0;
	}
	return -EINVAL;
}

/*
 * Validates the complete answer header in ch->answer, followed by @rest
 * more bytes in this write: all of them this answer's unless @batch
 * (WRITE_BATCH), where more answers may follow. Returns the request, now
 * receiving or detached onto @done, or an ERR_PTR.
 */
static struct dm_user_request *
dm_user_accept_answer_locked(struct dm_user_target *t,
			     struct dm_user_channel *ch, size_t rest,
			     bool batch, struct list_head *done)
{
	const struct dm_user_message *ans = &ch->answer;
	struct dm_user_request *req;
	blk_status_t status;
	const char *why;
	int kind;
	u64 need;

	req = dm_user_hash_find_locked(t, ans->seq);
	if (!req) {
		dm_user_bad_answer(t, ans, "no such request waiting for an answer");
		return ERR_PTR(-EINVAL);
	}
	if (req->owner != ch) {
		dm_user_bad_answer(t, ans, "request was read on another channel");
		return ERR_PTR(-EINVAL);
	}
	kind = dm_user_resp_status(ans->type, &status);
	if (kind < 0) {
		dm_user_bad_answer(t, ans, "unknown response type");
		return ERR_PTR(-EINVAL);
	}
	if (kind == DM_USER_ANSWER_REMAP) {
		why = dm_user_remap_check(t, ch, req, ans->sector);
		if (why) {
			dm_user_bad_answer(t, ans, why);
			return ERR_PTR(-EINVAL);
		}
	}

	/* Only a read's own data follows an answer; a remap carries none. */
	need = (req->op == DM_USER_OP_READ && status == BLK_STS_OK && !kind) ?
		req->msg.len : 0;
	if (need && ans->len != need) {
		dm_user_bad_answer(t, ans, "length differs from the request's");
		return ERR_PTR(-EINVAL);
	}
	if (!need && ans->len && ans->len != req->msg.len) {
		dm_user_bad_answer(t, ans, "length differs from the request's");
		return ERR_PTR(-EINVAL);
	}
	if (rest > need && !batch) {
		dm_user_bad_answer(t, ans, "more data than the request needs");
		return ERR_PTR(-EINVAL);
	}

	if (!need) {
		dm_user_answer_locked(t, req, kind, status, ans->sector, done);
		return req;
	}
	hlist_del_init(&req->hash_node);
	req->state = DM_USER_REQ_RECEIVING;
	req->received = 0;
	req->data_iter = dm_user_req_bio(req)->bi_iter;
	ch->receiving = req;
	return req;
}

/* Copies answer data from @from into @req's pages, from req->data_iter. */
size_t dm_user_copy_from_user(struct dm_user_request *req,
			      struct iov_iter *from)
{
	struct bio *bio = dm_user_req_bio(req);
	size_t copied = 0;

	while (req->received < req->msg.len && iov_iter_count(from)) {
		struct bio_vec bv = bio_iter_iovec(bio, req->data_iter);
		size_t n = min_t(size_t, bv.bv_len, iov_iter_count(from));
		size_t done = copy_page_from_iter(bv.bv_page, bv.bv_offset, n,
						  from);

		/* As loop does, for caches that alias the page. */
		flush_dcache_page(bv.bv_page);
		bio_advance_iter_single(bio, &req->data_iter, done);
		req->received += done;
		copied += done;
		if (done < n)
			break;
	}
	return copied;
}

/*
 * Copies answer data from @from into ch->receiving, @req, and completes it
 * once whole; with WRITE_BATCH @from may hold more answers after it, which
 * stay there. Called with the target lock held, which it drops. Page
 * faults are taken unpinned, as in dm_user_send(). Returns bytes copied.
 */
static size_t dm_user_receive(struct dm_user_target *t,
			      struct dm_user_channel *ch,
			      struct dm_user_request *req,
			      struct iov_iter *from)
	__releases(&t->lock)
{
	bool faulted_in = false;
	size_t copied = 0;
	LIST_HEAD(done);

	for (;;) {
		/* This answer's bytes only: a fault-in stops there too. */
		size_t want = min_t(size_t, iov_iter_count(from),
				    req->msg.len - req->received);
		size_t n;

		dm_user_pin_locked(t, req);
		spin_unlock_irq(&t->lock);
		pagefault_disable();
		n = dm_user_copy_from_user(req, from);
		pagefault_enable();
		copied += n;
		spin_lock_irq(&t->lock);
		if (dm_user_unpin_locked(t, req, &done))
			break;
		if (req->received == req->msg.len) {
			dm_user_detach_locked(t, req, &done, BLK_STS_OK);
			break;
		}
		/* As in dm_user_send(). */
		if (n == want || (!n && faulted_in) ||
		    fatal_signal_pending(current))
			break;
		want -= n;
		spin_unlock_irq(&t->lock);
		dm_user_finish_copy(t, &done);
		n = fault_in_iov_iter_readable(from, want);
		spin_lock_irq(&t->lock);
		if (n == want || ch->receiving != req ||
		    dm_user_channel_error_locked(t, ch)) {
			spin_unlock_irq(&t->lock);
			return copied;
		}
		faulted_in = true;
	}
	spin_unlock_irq(&t->lock);
	dm_user_finish_copy(t, &done);
	return copied;
}

/*
 * Takes the bytes of one answer from @from: what is missing of its header,
 * then of its data. With @batch, bytes after the answer are left in @from
 * for the next; without, they are an error. Called with ch->write_lock
 * held. Returns the bytes taken, or a negative errno with none taken;
 * @whole says whether the answer is now complete.
 */
static ssize_t dm_user_write_answer(struct dm_user_target *t,
				    struct dm_user_channel *ch,
				    struct iov_iter *from, bool batch,
				    bool *whole)
{
	struct dm_user_request *req;
	size_t consumed = 0, got, left;
	ssize_t ret = 0;
	LIST_HEAD(done);

	*whole = false;
	spin_lock_irq(&t->lock);
	ret = dm_user_channel_error_locked(t, ch);
	if (ret)
		goto out_unlock;

	req = ch->receiving;
	if (!req) {
		size_t n = min_t(size_t, DM_USER_HDR_SIZE - ch->answer_bytes,
				 iov_iter_count(from));

		spin_unlock_irq(&t->lock);
		if (!copy_from_iter_full((u8 *)&ch->answer + ch->answer_bytes,
					 n, from))
			return -EFAULT;
		ch->answer_bytes += n;
		consumed = n;
		if (ch->answer_bytes < DM_USER_HDR_SIZE)
			return consumed;

		/* Header complete: whatever happens, the next write starts anew. */
		ch->answer_bytes = 0;
		spin_lock_irq(&t->lock);
		ret = dm_user_channel_error_locked(t, ch);
		if (ret) {
			consumed = 0;
			goto out_unlock;
		}
		req = dm_user_accept_answer_locked(t, ch, iov_iter_count(from),
						   batch, &done);
		if (IS_ERR(req)) {
			ret = PTR_ERR(req);
			consumed = 0;
			goto out_unlock;
		}
		if (req->state != DM_USER_REQ_RECEIVING) {
			/* Answer without data: already detached. */
			spin_unlock_irq(&t->lock);
			dm_user_complete_list(t, &done);
			*whole = true;
			return consumed;
		}
	} else if (!batch &&
		   iov_iter_count(from) > req->msg.len - req->received) {
		dm_user_bad_answer(t, &ch->answer,
				   "more data than the request needs");
		ret = -EINVAL;
		goto out_unlock;
	}

	if (!iov_iter_count(from))
		goto out_unlock;

	/*
	 * Copies this answer's data only: the rest of @from stays. Once
	 * @left bytes are in, @req is completed and must not be looked at.
	 */
	left = req->msg.len - req->received;
	got = dm_user_receive(t, ch, req, from);
	*whole = got == left;
	consumed += got;
	if (!got) {
		/* The channel may have failed while a fault was taken. */
		spin_lock_irq(&t->lock);
		ret = dm_user_channel_error_locked(t, ch);
		spin_unlock_irq(&t->lock);
	}
	return consumed ? consumed : ret ? ret : -EFAULT;

out_unlock:
	spin_unlock_irq(&t->lock);
	return consumed ? consumed : ret ? ret : -EFAULT;
}

static ssize_t dm_user_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct dm_user_channel *ch = iocb->ki_filp->private_data;
	struct dm_user_target *t = ch->target;
	size_t total = 0;
	bool batch, whole;
	ssize_t n;
	int r;

	if (dm_user_channel_ring(ch))
		return -EINVAL;
	if (!iov_iter_count(from))
		return 0;

	/* Answers never wait for anything but this lock: no O_NONBLOCK case. */
	r = dm_user_lock_channel(&ch->write_lock, iocb);
	if (r)
		return r;
	batch = READ_ONCE(ch->extensions) & DM_USER_EXT_WRITE_BATCH;
	/*
	 * With WRITE_BATCH, answer after answer while the call has bytes and
	 * the last answer is whole. One that is refused ends the call short:
	 * its bytes are not counted, so a daemon that writes the rest again
	 * starts with it and gets the error.
	 */
	do {
		n = dm_user_write_answer(t, ch, from, batch, &whole);
		if (n <= 0)
			break;
		total += n;
	} while (batch && whole && iov_iter_count(from));
	mutex_unlock(&ch->write_lock);
	return total ? total : n;
}

/* ------------------------------------------------------------------------
 * poll()
 */

static __poll_t dm_user_poll(struct file *file, poll_table *wait)
{
	struct dm_user_channel *ch = file->private_data;
	struct dm_user_target *t = ch->target;
	struct dm_user_ring_state *ring = dm_user_channel_ring(ch);
	/* A ring channel has no write() to be ready for. */
	__poll_t mask = ring ? 0 : EPOLLOUT | EPOLLWRNORM;

	/* read() fails at once, and such a channel never serves. */
	if (!ch->read_write)
		return EPOLLERR;
	poll_wait(file, &t->wq, wait);

	/* Waiting for requests is serving, as read() is. */
	if (unlikely(!READ_ONCE(ch->serving))) {
		spin_lock_irq(&t->lock);
		if (!ch->serving && !t->dead)
			dm_user_channel_serving_locked(t, ch);
		spin_unlock_irq(&t->lock);
	}

	if (READ_ONCE(t->dead))
		return EPOLLERR | EPOLLHUP;
	/* read() and write() fail at once, as POLLERR says. */
	if (READ_ONCE(ch->reset))
		return mask | EPOLLIN | EPOLLRDNORM | EPOLLERR;
	if (ring) {
		if (dm_user_ring_readable(t, ch))
			mask |= EPOLLIN | EPOLLRDNORM;
	} else if (READ_ONCE(ch->sending) || !list_empty(&t->queue)) {
		mask |= EPOLLIN | EPOLLRDNORM;
	}
	/* A reload took effect that this channel has not asked about. */
	if (READ_ONCE(ch->reloads_seen) != READ_ONCE(t->nr_reloads))
		mask |= EPOLLPRI;
	return mask;
}

static long dm_user_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct dm_user_channel *ch = file->private_data;

	switch (cmd) {
	case DM_USER_IOCTL_CTL:
		return dm_user_ctl_ioctl(ch->target, ch, (void __user *)arg);
	case DM_USER_IOCTL_RING_ENTER:
		return dm_user_ring_enter(ch, arg);
	}
	return -ENOTTY;
}

/* The RING_ENTER argument is flags, not a pointer: no conversion. */
static long dm_user_compat_ioctl(struct file *file, unsigned int cmd,
				 unsigned long arg)
{
	if (cmd == DM_USER_IOCTL_RING_ENTER)
		return dm_user_ioctl(file, cmd, arg);
	return compat_ptr_ioctl(file, cmd, arg);
}

const struct file_operations dm_user_fops = {
	.owner = THIS_MODULE,
	.open = dm_user_open,
	.release = dm_user_release,
	.read_iter = dm_user_read_iter,
	.write_iter = dm_user_write_iter,
	.poll = dm_user_poll,
	.unlocked_ioctl = dm_user_ioctl,
	/* The layout has no pointers and no longs: the same for 32 bits. */
	.compat_ioctl = dm_user_compat_ioctl,
	.mmap = dm_user_ring_mmap,
};
