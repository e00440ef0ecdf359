// SPDX-License-Identifier: GPL-2.0
/*
 * dmu-cow - a copy-on-write snapshot of a block device, served by dm-user.
 *
 *   dmu-cow serve --delta <file> [options] <name>
 *   dmu-cow ctl <socket> status|merge
 *
 * The target's backing device is the origin. The daemon claims the writes
 * of the whole device and the reads of the chunks it has copied to the
 * delta file (claims per operation, control version 8): reads of chunks
 * never written go to the origin from the kernel's map path, with no round
 * trip to the daemon at all; written chunks live in the delta file. Where
 * the kernel or max_claims does not allow that, reads of chunks never
 * written come to the daemon and are answered with a remap to the origin,
 * so their data still never comes through the daemon. "merge"
 * copies the delta back to the origin while I/O goes on, and then releases
 * every claim: the device is the origin again, with no daemon in its path.
 * This is the job of the snapshot daemon of Android's Virtual A/B.
 *
 * The delta file, in chunks of --chunk bytes:
 *   chunk 0            header (struct cow_header)
 *   then groups of     one index chunk: per slot the origin chunk + 1 it
 *                      holds (0: never used; COW_MERGED: merged back)
 *                      followed by the slots' data, chunk / 8 slots
 * Slots are taken in order and never reused before a merge empties the
 * file. A write that takes new slots writes their data, makes it durable
 * (fdatasync()), and only then writes their index entries, all before it
 * is answered: so a daemon killed and started again finds every answered
 * write, and after a power loss an entry never names data that did not
 * reach the disk (a chunk copied up keeps the origin's sectors the write
 * did not cover). Writes into slots already taken, and the entries, reach
 * the disk at the next flush or FUA write. A merge makes each batch
 * durable on the origin before it marks the batch merged in the delta,
 * and the marks durable before the chunks' I/O goes to the origin.
 *
 * A chunk's reads are claimed before the first write to it is answered,
 * so that no read after that write goes to the origin; a daemon started
 * again claims everything first and then gives back the reads of the
 * chunks not in the delta.
 *
 * Locking: cow.lock, a rwlock that prefers writers. Reads hold it shared
 * from their lookup to the end of their reads of the delta, so a merge
 * never moves a chunk from under them; writes and each batch of a merge
 * hold it exclusive. The merge state (merging, waiters) is under
 * cow.merge_mutex.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "example.h"

#define COW_MAGIC	"DMUCOW1"
#define COW_MERGED	UINT64_MAX
/* Chunks a merge copies per hold of the lock. */
#define MERGE_BATCH	64

enum cow_state { COW_NORMAL, COW_MERGING, COW_DONE };
static const char *const state_names[] = { "normal", "merging", "merged" };

struct cow_header {
	char magic[8];
	uint32_t chunk;		/* bytes */
	uint32_t state;		/* enum cow_state */
	uint64_t size;		/* bytes of the snapshot (the target) */
};

static struct cow {
	uint64_t size;		/* bytes of the target */
	uint64_t backing_off;	/* bytes: the target's 0 on the origin */
	uint32_t chunk;
	uint32_t per_group;	/* slots per index chunk: chunk / 8 */
	uint64_t nr_chunks;
	uint64_t *map;		/* per chunk: its slot + 1; 0: not written */
	uint64_t next_slot;	/* slots used, merged ones included */
	uint64_t in_delta;	/* chunks in the delta */
	uint64_t merged;	/* chunks merged since the start */
	enum cow_state state;
	/* A write of the index failed half way: no more writes. */
	bool broken;
	bool copy_reads;	/* reads of the origin through the daemon */
	bool remap_reads;	/* ... answered with remaps, not passed */
	/* All reads are claimed: no claim per chunk any more. */
	bool reads_claimed;
	unsigned int merge_pause_ms;	/* between two batches of a merge */
	int delta_fd, origin_fd, chan_fd;
	const char *delta_path;
	void *zeroes;		/* a chunk of them, aligned for O_DIRECT */
	pthread_rwlock_t lock;

	pthread_mutex_t merge_mutex;
	pthread_cond_t merge_cond;
	bool merge_running;
	int merge_error;	/* of the last merge */
} cow = {
	.chunk = 4096,
	.delta_fd = -1, .origin_fd = -1, .chan_fd = -1,
	.merge_mutex = PTHREAD_MUTEX_INITIALIZER,
	.merge_cond = PTHREAD_COND_INITIALIZER,
};

/* A chunk-sized buffer per serving thread, for copy-up and merge. */
static __thread void *bounce;

/*
 * The slots a write is taking, one per chunk it writes first, in the
 * order taken (consecutive): indexed once their data is durable.
 */
static __thread struct {
	uint64_t *chunks;	/* the chunk each slot holds */
	size_t nr, max;
	uint64_t first;		/* the first slot */
} fresh;

static void *get_bounce(void)
{
	if (!bounce && posix_memalign(&bounce, 4096, cow.chunk))
		bounce = NULL;
	return bounce;
}

static uint64_t slot_data(uint64_t slot)
{
	uint64_t g = slot / cow.per_group;

	return ((uint64_t)cow.chunk) *
	       (1 + g * (cow.per_group + 1) + 1 + slot % cow.per_group);
}

static uint64_t slot_index(uint64_t slot)
{
	uint64_t g = slot / cow.per_group;

	return (uint64_t)cow.chunk * (1 + g * (cow.per_group + 1)) +
	       8 * (slot % cow.per_group);
}

static int write_header(void)
{
	struct cow_header h = { .chunk = cow.chunk, .state = cow.state,
				.size = cow.size };
	int rc;

	memcpy(h.magic, COW_MAGIC, sizeof(h.magic));
	rc = ex_pwrite(cow.delta_fd, &h, sizeof(h), 0);
	if (!rc && fdatasync(cow.delta_fd))
		rc = -errno;
	if (rc)
		ex_report(rc, "write the header of %s", cow.delta_path);
	return rc;
}

/* The chunk size is known: the map of that many chunks. */
static int fit_chunks(void)
{
	if (cow.size % cow.chunk) {
		ex_report(0, "the target's %" PRIu64 " bytes are not whole chunks of %u",
			  cow.size, cow.chunk);
		return -EINVAL;
	}
	cow.per_group = cow.chunk / 8;
	cow.nr_chunks = cow.size / cow.chunk;
	cow.map = calloc(cow.nr_chunks ? cow.nr_chunks : 1, sizeof(*cow.map));
	if (!cow.map) {
		ex_report(ENOMEM, "a map of %" PRIu64 " chunks", cow.nr_chunks);
		return -ENOMEM;
	}
	return 0;
}

/* Reads the header and index of an existing delta, or starts a new one. */
static int delta_load(bool chunk_given)
{
	uint64_t *index = NULL;
	struct cow_header h;
	uint64_t g, i;
	off_t end;
	int rc;

	end = lseek(cow.delta_fd, 0, SEEK_END);
	if (end < 0) {
		ex_report(errno, "lseek %s", cow.delta_path);
		return -errno;
	}
	if (end == 0) {
		rc = fit_chunks();
		return rc ? rc : write_header();
	}
	rc = ex_pread(cow.delta_fd, &h, sizeof(h), 0);
	if (rc) {
		ex_report(rc, "read %s", cow.delta_path);
		return rc;
	}
	if (memcmp(h.magic, COW_MAGIC, sizeof(h.magic)) || h.chunk < 4096 ||
	    (h.chunk & (h.chunk - 1)) || h.state > COW_DONE) {
		ex_report(0, "%s is not a dmu-cow delta", cow.delta_path);
		return -EINVAL;
	}
	if (chunk_given && h.chunk != cow.chunk) {
		ex_report(0, "%s has chunks of %u bytes, not %u", cow.delta_path,
			  h.chunk, cow.chunk);
		return -EINVAL;
	}
	if (h.size != cow.size) {
		ex_report(0, "%s is a snapshot of %" PRIu64 " bytes; the target has %" PRIu64,
			  cow.delta_path, h.size, cow.size);
		return -EINVAL;
	}
	cow.chunk = h.chunk;
	cow.state = h.state;
	rc = fit_chunks();
	if (rc)
		return rc;
	index = malloc(cow.chunk);
	if (!index)
		return -ENOMEM;
	for (g = 0;; g++) {
		rc = ex_pread(cow.delta_fd, index, cow.chunk,
				slot_index(g * cow.per_group));
		if (rc) {
			ex_report(rc, "read the index of %s", cow.delta_path);
			goto out;
		}
		for (i = 0; i < cow.per_group; i++) {
			uint64_t v = index[i], slot = g * cow.per_group + i;

			if (!v)
				goto out;
			cow.next_slot = slot + 1;
			if (v == COW_MERGED)
				continue;
			if (v > cow.nr_chunks || cow.map[v - 1]) {
				ex_report(0, "%s: slot %" PRIu64 " holds chunk %" PRIu64 ", which is %s",
					  cow.delta_path, slot, v - 1,
					  v > cow.nr_chunks ? "past the end" : "in another slot");
				rc = -EINVAL;
				goto out;
			}
			cow.map[v - 1] = slot + 1;
			cow.in_delta++;
		}
	}
out:
	free(index);
	return rc;
}

/*
 * Walks the chunks of [@off, @off + @len): calls @fn for each piece, one
 * chunk or part of one, with its chunk, the offset in the chunk, the bytes
 * and where the piece is in the request's buffer.
 */
typedef int (*piece_fn)(uint64_t c, uint32_t in, uint32_t n, char *buf);

static int for_each_piece(uint64_t off, uint64_t len, char *buf, piece_fn fn)
{
	while (len) {
		uint64_t c = off / cow.chunk;
		uint32_t in = off % cow.chunk;
		uint32_t n = cow.chunk - in < len ? cow.chunk - in : len;
		int rc = fn(c, in, n, buf);

		if (rc)
			return rc;
		off += n;
		len -= n;
		if (buf)
			buf += n;
	}
	return 0;
}

static bool any_in_delta(uint64_t off, uint64_t len)
{
	uint64_t c;

	for (c = off / cow.chunk; c <= (off + len - 1) / cow.chunk; c++)
		if (cow.map[c])
			return true;
	return false;
}

/* ---- reads ------------------------------------------------------------- */

static int read_piece(uint64_t c, uint32_t in, uint32_t n, char *buf)
{
	uint64_t slot = cow.map[c];

	if (slot)
		return ex_pread(cow.delta_fd, buf, n, slot_data(slot - 1) + in);
	return ex_pread(cow.origin_fd, buf, n,
			  cow.backing_off + c * cow.chunk + in);
}

static int cow_read(void *ctx, struct dmu_req *r)
{
	int rc;

	(void)ctx;
	if (ex_check_range(r->offset, r->len, cow.size, SECTOR_SIZE))
		return -ERANGE;
	pthread_rwlock_rdlock(&cow.lock);
	/*
	 * Claimed for its reads, or partly (DM_USER_REQ_MAP_FLAG_PARTLY_
	 * CLAIMED), or all reads are: what is not in the delta is on the
	 * origin, where a remap sends it (remap_offset is r->offset).
	 */
	if (!any_in_delta(r->offset, r->len) && !cow.copy_reads) {
		pthread_rwlock_unlock(&cow.lock);
		return DMU_REMAP;
	}
	rc = for_each_piece(r->offset, r->len, r->data, read_piece);
	pthread_rwlock_unlock(&cow.lock);
	return rc;
}

/* ---- writes ------------------------------------------------------------ */

/*
 * Before a merge: every written piece goes to the delta, a chunk written
 * for the first time taking the next slot (the rest of a partly written
 * chunk copied up from the origin first).
 */
static int write_piece_delta(uint64_t c, uint32_t in, uint32_t n, char *buf)
{
	const void *src = buf ? buf : cow.zeroes;
	uint64_t slot = cow.map[c];
	char *b;
	int rc;

	if (slot)
		return ex_pwrite(cow.delta_fd, src, n, slot_data(slot - 1) + in);
	if (fresh.nr == fresh.max) {
		size_t max = fresh.max ? fresh.max * 2 : 64;
		uint64_t *p = realloc(fresh.chunks, max * sizeof(*p));

		if (!p)
			return -ENOMEM;
		fresh.chunks = p;
		fresh.max = max;
	}
	slot = fresh.first + fresh.nr;
	if (n == cow.chunk) {
		rc = ex_pwrite(cow.delta_fd, src, n, slot_data(slot));
	} else {
		b = get_bounce();
		if (!b)
			return -ENOMEM;
		rc = ex_pread(cow.origin_fd, b, cow.chunk,
			      cow.backing_off + c * cow.chunk);
		if (rc)
			return rc;
		memcpy(b + in, src, n);
		rc = ex_pwrite(cow.delta_fd, b, cow.chunk, slot_data(slot));
	}
	if (!rc)
		fresh.chunks[fresh.nr++] = c;
	return rc;
}

/*
 * The reads of the chunks a write copied to the delta, claimed before it
 * is answered: from then on they must not go to the origin. A run of
 * consecutive chunks is one claim. Past max_claims, every read is claimed
 * instead (one range), and reads of chunks never written come as remaps.
 */
static int claim_all_reads(void);

static int claim_fresh_reads(void)
{
	size_t i = 0, j;
	int rc;

	while (!cow.reads_claimed && i < fresh.nr) {
		for (j = i + 1; j < fresh.nr &&
		     fresh.chunks[j] == fresh.chunks[j - 1] + 1; j++)
			;
		rc = dmu_claim_ops(cow.chan_fd, fresh.chunks[i] * cow.chunk,
				   (j - i) * cow.chunk, DM_USER_CLAIM_READS);
		if (rc == -E2BIG)
			rc = claim_all_reads();
		if (rc < 0) {
			ex_report(rc, "claim the reads of chunk %" PRIu64,
				  fresh.chunks[i]);
			return rc;
		}
		i = j;
	}
	return 0;
}

/*
 * The index entries of the slots a write took, once their data is
 * durable; a run of them in one index chunk is one pwrite(). Under the
 * exclusive lock.
 */
static int index_fresh(void)
{
	uint64_t entries[512], slot, i = 0;
	size_t n;
	int rc;

	/*
	 * First: once an entry is written its slot is taken, and nothing
	 * may fail after that but the entries themselves. A read of a chunk
	 * claimed early comes to the daemon, which sends it to the origin.
	 */
	rc = claim_fresh_reads();
	if (rc)
		return rc;
	if (fdatasync(cow.delta_fd))
		return -errno;
	while (i < fresh.nr) {
		slot = fresh.first + i;
		/* To the end of this index chunk, of the run, of entries[]. */
		n = cow.per_group - slot % cow.per_group;
		if (n > fresh.nr - i)
			n = fresh.nr - i;
		if (n > 512)
			n = 512;
		for (size_t k = 0; k < n; k++)
			entries[k] = fresh.chunks[i + k] + 1;
		rc = ex_pwrite(cow.delta_fd, entries, n * 8, slot_index(slot));
		if (rc) {
			/*
			 * Entries before this one are written: the slots can
			 * be given to no other chunk, and the index is not
			 * known to be whole. Stop writing.
			 */
			if (i)
				cow.broken = true;
			return rc;
		}
		i += n;
	}
	for (i = 0; i < fresh.nr; i++)
		cow.map[fresh.chunks[i]] = fresh.first + i + 1;
	cow.in_delta += fresh.nr;
	cow.next_slot += fresh.nr;
	return 0;
}

/*
 * From the start of a merge: the origin is becoming the device, so a
 * chunk not in the delta is written there; one still in the delta is
 * written in the delta, and the merge takes it over later.
 */
static int write_piece_merging(uint64_t c, uint32_t in, uint32_t n, char *buf)
{
	uint64_t slot = cow.map[c];

	if (slot)
		return ex_pwrite(cow.delta_fd, buf ? buf : cow.zeroes, n,
				   slot_data(slot - 1) + in);
	/* O_DIRECT: buf is the library's page-aligned buffer, or zeroes. */
	return ex_pwrite(cow.origin_fd, buf ? buf : cow.zeroes, n,
			   cow.backing_off + c * cow.chunk + in);
}

static int cow_change(struct dmu_req *r, char *data)
{
	bool fua = r->flags & DM_USER_REQ_MAP_FLAG_FUA, merging;
	int rc;

	if (ex_check_range(r->offset, r->len, cow.size, SECTOR_SIZE))
		return -ERANGE;
	pthread_rwlock_wrlock(&cow.lock);
	if (cow.broken) {
		pthread_rwlock_unlock(&cow.lock);
		return -EIO;
	}
	merging = cow.state != COW_NORMAL;
	if (merging && !any_in_delta(r->offset, r->len)) {
		pthread_rwlock_unlock(&cow.lock);
		/* Wholly on the origin now: the kernel writes it there. */
		return DMU_REMAP;
	}
	if (merging) {
		rc = for_each_piece(r->offset, r->len, data, write_piece_merging);
	} else {
		/* A failed write leaves its new slots free for the next one. */
		fresh.nr = 0;
		fresh.first = cow.next_slot;
		rc = for_each_piece(r->offset, r->len, data, write_piece_delta);
		if (!rc && fresh.nr)
			rc = index_fresh();
	}
	pthread_rwlock_unlock(&cow.lock);
	/* From a merge on, part of it may have gone to the origin. */
	if (!rc && fua && (fdatasync(cow.delta_fd) ||
			   (merging && fdatasync(cow.origin_fd))))
		rc = -errno;
	return rc;
}

static int cow_write(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	return cow_change(r, r->data);
}

static int cow_write_zeroes(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	return cow_change(r, NULL);
}

/*
 * A discard promises nothing of what is read afterwards: the snapshot
 * keeps what it had, and the delta does not grow.
 */
static int cow_discard(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	return ex_check_range(r->offset, r->len, cow.size, SECTOR_SIZE);
}

/* The kernel has sent the flush to the origin; the delta is ours. */
static int cow_flush(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	(void)r;
	return fdatasync(cow.delta_fd) ? -errno : 0;
}

static void cow_reload(void *ctx, const struct dmu_info *info)
{
	if (!ex_reload_same_backing(ctx, info))
		return;
	if (info->size * SECTOR_SIZE != cow.size)
		ex_report(0, "the target is now %" PRIu64 " bytes; this snapshot serves its first %" PRIu64
			  " and fails the rest", info->size * SECTOR_SIZE, cow.size);
}

static const struct dmu_ops cow_ops = {
	.read = cow_read,
	.write = cow_write,
	.write_zeroes = cow_write_zeroes,
	.discard = cow_discard,
	.flush = cow_flush,
	.reload = cow_reload,
};

/* ---- merge ------------------------------------------------------------- */

/* Copies up to MERGE_BATCH chunks from @*cursor on; 1 when it is done. */
static int merge_batch(uint64_t *cursor, char *buf)
{
	uint64_t done[MERGE_BATCH], c, merged = COW_MERGED;
	unsigned int n = 0, i;
	int rc = 0;

	pthread_rwlock_wrlock(&cow.lock);
	for (c = *cursor; c < cow.nr_chunks && n < MERGE_BATCH; c++) {
		uint64_t slot = cow.map[c];

		if (!slot)
			continue;
		rc = ex_pread(cow.delta_fd, buf, cow.chunk, slot_data(slot - 1));
		if (!rc)
			rc = ex_pwrite(cow.origin_fd, buf, cow.chunk,
					 cow.backing_off + c * cow.chunk);
		if (rc)
			goto out;
		done[n++] = c;
	}
	*cursor = c;
	/* On the origin's disk before the delta lets go of them. */
	if (n && fdatasync(cow.origin_fd)) {
		rc = -errno;
		goto out;
	}
	for (i = 0; i < n; i++) {
		rc = ex_pwrite(cow.delta_fd, &merged, sizeof(merged),
			       slot_index(cow.map[done[i]] - 1));
		if (rc)
			goto out;
	}
	/*
	 * Durable before the chunks' writes go to the origin: a merge taken
	 * up again after a power loss must not copy the delta over them.
	 */
	if (n && fdatasync(cow.delta_fd)) {
		rc = -errno;
		goto out;
	}
	for (i = 0; i < n; i++) {
		cow.map[done[i]] = 0;
		cow.in_delta--;
		cow.merged++;
	}
	rc = *cursor >= cow.nr_chunks;
out:
	pthread_rwlock_unlock(&cow.lock);
	return rc;
}

static int merge(void)
{
	uint64_t cursor = 0;
	char *buf;
	int rc;

	if (posix_memalign((void **)&buf, 4096, cow.chunk))
		return -ENOMEM;
	pthread_rwlock_wrlock(&cow.lock);
	rc = 0;
	if (cow.state == COW_NORMAL) {
		cow.state = COW_MERGING;
		rc = write_header();
	}
	pthread_rwlock_unlock(&cow.lock);
	/* No chunk enters the delta from here on: one pass empties it. */
	while (!rc) {
		if (ex_stop) {
			/* Taken up again by the next daemon. */
			rc = -EINTR;
			break;
		}
		rc = merge_batch(&cursor, buf);
		if (!rc && cow.merge_pause_ms)
			usleep(cow.merge_pause_ms * 1000);
	}
	free(buf);
	if (rc < 0)
		return rc;

	pthread_rwlock_wrlock(&cow.lock);
	if (cow.in_delta) {
		/* Cannot be: no chunk enters the delta while merging. */
		ex_report(0, "%" PRIu64 " chunks still in the delta after a merge",
			  cow.in_delta);
		rc = -EIO;
	} else if (ftruncate(cow.delta_fd, cow.chunk)) {
		rc = -errno;
		ex_report(rc, "truncate %s", cow.delta_path);
	} else {
		cow.next_slot = 0;
		cow.state = COW_DONE;
		rc = write_header();
	}
	pthread_rwlock_unlock(&cow.lock);
	if (rc)
		return rc;
	/* The device is the origin: nothing for the daemon to do. */
	rc = dmu_release(cow.chan_fd, 0, cow.size);
	if (rc < 0)
		ex_report(rc, "release the target's claims");
	return rc < 0 ? rc : 0;
}

static void *merge_thread(void *arg)
{
	int rc;

	(void)arg;
	rc = merge();
	if (rc)
		ex_report(rc, "merge");
	pthread_mutex_lock(&cow.merge_mutex);
	cow.merge_running = false;
	cow.merge_error = rc;
	pthread_cond_broadcast(&cow.merge_cond);
	pthread_mutex_unlock(&cow.merge_mutex);
	return NULL;
}

/* Under merge_mutex. */
static int start_merge(void)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (cow.merge_running)
		return 0;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, merge_thread, NULL);
	pthread_attr_destroy(&attr);
	if (rc)
		return -rc;
	cow.merge_running = true;
	return 0;
}

/* ---- control ----------------------------------------------------------- */

static void print_status(FILE *out)
{
	pthread_rwlock_rdlock(&cow.lock);
	fprintf(out, "state %s\nchunk %u\nchunks %" PRIu64 "\nin_delta %" PRIu64
		"\nslots %" PRIu64 "\nmerged %" PRIu64 "\n",
		state_names[cow.state], cow.chunk, cow.nr_chunks, cow.in_delta,
		cow.next_slot, cow.merged);
	pthread_rwlock_unlock(&cow.lock);
}

static void cow_ctl(void *ctx, int argc, char **argv, FILE *out)
{
	bool done;
	int rc;

	(void)ctx;
	if (argc != 1) {
		ex_ctl_error(out, "'%s' takes no arguments", argv[0]);
	} else if (!strcmp(argv[0], "status")) {
		print_status(out);
		fprintf(out, "ok\n");
	} else if (!strcmp(argv[0], "merge")) {
		pthread_mutex_lock(&cow.merge_mutex);
		pthread_rwlock_rdlock(&cow.lock);
		done = cow.state == COW_DONE;
		pthread_rwlock_unlock(&cow.lock);
		if (done && !cow.merge_running) {
			pthread_mutex_unlock(&cow.merge_mutex);
			fprintf(out, "ok nothing to merge\n");
			return;
		}
		rc = start_merge();
		while (!rc && cow.merge_running)
			pthread_cond_wait(&cow.merge_cond, &cow.merge_mutex);
		if (!rc)
			rc = cow.merge_error;
		pthread_mutex_unlock(&cow.merge_mutex);
		if (rc) {
			ex_ctl_error(out, "merge: %s", strerror(-rc));
			return;
		}
		print_status(out);
		fprintf(out, "ok merged\n");
	} else {
		ex_ctl_error(out, "unknown command '%s' (status, merge)", argv[0]);
	}
}

/* ---- claims ------------------------------------------------------------ */

/*
 * Every read to the daemon, as before claims per operation. Writes are
 * claimed everywhere until a merge is done, so claiming both is the same,
 * and works on kernels without claims per operation too.
 */
static int claim_all_reads(void)
{
	int rc = dmu_claim(cow.chan_fd, 0, cow.size);

	if (rc >= 0)
		cow.reads_claimed = true;
	return rc;
}

/*
 * With everything claimed: gives back the reads of each run of chunks
 * not in the delta, which then go to the origin without the daemon. Not
 * with --copy-reads or --remap-reads, which want them; nor past
 * max_claims or on a kernel without claims per operation, where they
 * stay claimed and come as remaps. Before serving: no lock needed.
 */
static int release_unwritten_reads(void)
{
	uint64_t c = 0, end;
	int rc;

	if (cow.copy_reads || cow.remap_reads)
		return 0;
	while (c < cow.nr_chunks) {
		for (; c < cow.nr_chunks && cow.map[c]; c++)
			;
		for (end = c; end < cow.nr_chunks && !cow.map[end]; end++)
			;
		if (c == end)
			break;
		rc = dmu_release_ops(cow.chan_fd, c * cow.chunk,
				     (end - c) * cow.chunk,
				     DM_USER_CLAIM_READS);
		if (rc == -E2BIG || rc == -ENOPROTOOPT) {
			/* Whatever was given back is claimed again. */
			ex_report(rc, "note: reads of chunks never written come to the daemon (%s)",
				  rc == -E2BIG ? "more ranges than max_claims" :
				  "the kernel has no claims per operation");
			rc = claim_all_reads();
			return rc < 0 ? rc : 0;
		}
		if (rc < 0) {
			ex_report(rc, "release the reads of chunks %" PRIu64 " to %" PRIu64,
				  c, end - 1);
			return rc;
		}
		cow.reads_claimed = false;
		c = end;
	}
	return 0;
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s serve --delta <file> [options] <name>\n"
"       %s ctl <socket> status|merge\n"
"\n"
"serve: a copy-on-write snapshot of the target's backing device (the\n"
"origin). Reads of chunks never written go to the origin without the\n"
"daemon (or, past the target's max_claims, by remap answers);\n"
"written ones live in the delta file, which is made if it is empty or\n"
"missing, and taken up again after a restart.\n"
"\n"
"  -d, --delta <file>     the delta file (required)\n"
"  -c, --chunk <size>     bytes per chunk, a power of two from 4K to 1M\n"
"                         (default 4K; an existing delta keeps its own)\n"
"  -S, --control <path>   answer \"%s ctl\" commands on this Unix socket\n"
"  -t, --threads <n>      channels, one thread each (default 1)\n"
"  -p, --pid-file <file>  write the pid here once every channel is open\n"
"      --remap-reads      reads of chunks never written come to the daemon,\n"
"                         which answers with a remap to the origin (to\n"
"                         measure what passing them saves)\n"
"      --copy-reads       ... which reads them from the origin and answers\n"
"                         with the data (to measure what the remap saves)\n"
"      --merge-pause <ms> pause between two batches of 64 chunks of a merge,\n"
"                         so that it takes less of the device from the I/O\n"
"                         (default 0)\n"
"  -h, --help             show this help\n"
"\n"
"ctl: send a command to a running daemon's control socket.\n"
"  status                 state (normal, merging, merged), chunk size,\n"
"                         chunks in the delta, slots used, chunks merged\n"
"  merge                  copy the delta to the origin while I/O goes on,\n"
"                         then release every claim: the device is the\n"
"                         origin again. Returns when the merge is done; a\n"
"                         daemon stopped during a merge (a signal, a kill)\n"
"                         goes on with it when it starts again.\n"
"\n"
"Exit status: 0 on success (serve: the target was removed or a signal\n"
"came), 1 on failure, 2 for a bad command line.\n",
		ex_prog, ex_prog, ex_prog);
}

static bool chunk_given;

static int setup(struct ex_daemon *d)
{
	int rc;

	pthread_rwlockattr_t attr;

	/* A stream of reads must not hold a write or a merge off for ever. */
	if (pthread_rwlockattr_init(&attr) ||
	    pthread_rwlockattr_setkind_np(&attr,
				PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) ||
	    pthread_rwlock_init(&cow.lock, &attr)) {
		ex_report(ENOMEM, "pthread_rwlock_init");
		return -ENOMEM;
	}
	pthread_rwlockattr_destroy(&attr);
	rc = ex_open_target(d, true, "a snapshot needs its origin there");
	if (rc)
		return rc;
	cow.chan_fd = d->chan_fd;
	cow.size = d->info.size * SECTOR_SIZE;
	cow.backing_off = d->info.backing_offset * SECTOR_SIZE;
	cow.origin_fd = ex_open_backing(&d->info, O_RDWR | O_DIRECT);
	if (cow.origin_fd < 0) {
		ex_report(cow.origin_fd, "open the backing device %s of %s",
			  d->info.backing, d->name);
		return cow.origin_fd;
	}
	cow.delta_fd = open(cow.delta_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (cow.delta_fd < 0) {
		ex_report(errno, "open %s", cow.delta_path);
		return -errno;
	}
	/* The header's chunk size counts when the delta exists. */
	rc = delta_load(chunk_given);
	if (rc)
		return rc;
	if (posix_memalign(&cow.zeroes, 4096, cow.chunk))
		return -ENOMEM;
	memset(cow.zeroes, 0, cow.chunk);
	/*
	 * Everything comes to the daemon until a merge is done, whatever
	 * the table said (passthrough); after one, nothing does. Then the
	 * reads of chunks never written go back to the origin.
	 */
	rc = cow.state == COW_DONE ? dmu_release(cow.chan_fd, 0, cow.size)
				   : dmu_claim(cow.chan_fd, 0, cow.size);
	if (rc < 0) {
		ex_report(rc, "%s the target's range",
			  cow.state == COW_DONE ? "release" : "claim");
		return rc;
	}
	cow.reads_claimed = true;
	rc = cow.state == COW_DONE ? 0 : release_unwritten_reads();
	if (rc)
		return rc;
	/* A merge that a killed daemon left half done goes on. */
	if (cow.state == COW_MERGING) {
		pthread_mutex_lock(&cow.merge_mutex);
		rc = start_merge();
		pthread_mutex_unlock(&cow.merge_mutex);
		if (rc)
			ex_report(rc, "resume the merge");
	}
	return rc;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "delta", required_argument, NULL, 'd' },
		{ "chunk", required_argument, NULL, 'c' },
		{ "copy-reads", no_argument, NULL, 'R' },
		{ "remap-reads", no_argument, NULL, 'M' },
		{ "merge-pause", required_argument, NULL, 'P' },
		EX_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ex_daemon d;
	uint64_t v;
	char *end;
	int c;

	ex_daemon_init(&d);
	d.ops = &cow_ops;
	d.setup = setup;
	d.ctl = cow_ctl;
	while ((c = getopt_long(argc, argv, "d:c:" EX_SHORTOPTS, longopts,
				NULL)) != -1) {
		if (ex_daemon_opt(&d, c, optarg))
			continue;
		switch (c) {
		case 'd':
			cow.delta_path = optarg;
			break;
		case 'c':
			if (ex_parse_size(optarg, &v) || v < 4096 || v > (1U << 20) ||
			    (v & (v - 1)))
				ex_bad_usage("--chunk: '%s' is not a power of two from 4K to 1M",
					     optarg);
			cow.chunk = v;
			chunk_given = true;
			break;
		case 'R':
			cow.copy_reads = true;
			break;
		case 'M':
			cow.remap_reads = true;
			break;
		case 'P':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || v > 10000)
				ex_bad_usage("--merge-pause: '%s' is not 0 to 10000 ms",
					     optarg);
			cow.merge_pause_ms = v;
			break;
		}
	}
	if (!cow.delta_path)
		ex_bad_usage("--delta is required");
	/* A merge still running stops with the process: the delta says so. */
	return ex_daemon_run(&d, argc, argv);
}

int main(int argc, char **argv)
{
	return ex_main(argc, argv, "dmu-cow", cmd_serve, usage);
}
