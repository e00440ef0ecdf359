// SPDX-License-Identifier: GPL-2.0
/*
 * dmu-cbt - change-block tracking for a block device, served by dm-user.
 *
 *   dmu-cbt serve --bitmap <file> [options] <name>
 *   dmu-cbt ctl <socket> status|dump|dump-clear|clear
 *
 * Every request of the target goes straight to its backing device: the
 * daemon releases every claim and turns write notifications on, so it sees
 * each write, discard, write-zeroes and secure erase as a header (sector
 * and length, no data) before the request goes down, and sets the bits of
 * the granules it touches in a bitmap. "dump" lists the changed ranges,
 * "dump-clear" lists them and starts a new period: what an incremental
 * backup reads. Reads never reach the daemon.
 *
 * The bitmap file: a 4 KiB header (struct cbt_header), then one bit per
 * granule in 64-bit words, mapped shared: a bit is set before its write
 * is let through, and it stays in the page cache if the daemon is killed.
 * The file reaches its disk when the daemon exits (and whenever the kernel
 * writes it back): after a crash of the machine, take a full backup.
 *
 * Locking: bits are set and taken with atomic operations on their words,
 * so notifications and a dump-clear never wait for each other; the mapping
 * itself (which a resize replaces) is under cbt.lock, held shared by both
 * and exclusive by a resize.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "example.h"

#define CBT_MAGIC	"DMUCBT1"
#define HEADER_BYTES	4096

struct cbt_header {
	char magic[8];
	uint32_t granularity;	/* bytes per bit */
	uint32_t reserved;
	uint64_t size;		/* bytes the bitmap covers */
};

static struct cbt {
	uint64_t size;		/* bytes of the target */
	uint32_t granularity;
	uint32_t shift;		/* log2(granularity) */
	uint64_t nr_words;
	void *map;		/* the file: header, then the words */
	size_t map_len;
	uint64_t *words;
	int bitmap_fd;
	const char *bitmap_path;
	pthread_rwlock_t lock;
	uint64_t notified;	/* notifications seen */
} cbt = {
	.granularity = 65536,
	.bitmap_fd = -1,
	.lock = PTHREAD_RWLOCK_INITIALIZER,
};

static uint64_t words_for(uint64_t size)
{
	uint64_t granules = (size + cbt.granularity - 1) >> cbt.shift;

	return (granules + 63) / 64;
}

/* Maps the file for @size bytes of device, growing it if need be. */
static int bitmap_map(uint64_t size)
{
	uint64_t nr_words = words_for(size);
	size_t len = HEADER_BYTES + nr_words * 8;
	struct cbt_header *h;
	struct stat st;
	void *m;

	if (fstat(cbt.bitmap_fd, &st))
		return -errno;
	/* Never shrunk: a device made smaller and then bigger keeps its bits. */
	if ((uint64_t)st.st_size < len && ftruncate(cbt.bitmap_fd, len))
		return -errno;
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, cbt.bitmap_fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	if (cbt.map) {
		msync(cbt.map, cbt.map_len, MS_SYNC);
		munmap(cbt.map, cbt.map_len);
	}
	cbt.map = m;
	cbt.map_len = len;
	cbt.words = (uint64_t *)((char *)m + HEADER_BYTES);
	cbt.nr_words = nr_words;
	cbt.size = size;
	h = m;
	memcpy(h->magic, CBT_MAGIC, sizeof(h->magic));
	h->granularity = cbt.granularity;
	if (size > h->size)
		h->size = size;
	return 0;
}

static int bitmap_open(bool granularity_given)
{
	struct cbt_header h;
	ssize_t n;

	cbt.bitmap_fd = open(cbt.bitmap_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (cbt.bitmap_fd < 0) {
		ex_report(errno, "open %s", cbt.bitmap_path);
		return -errno;
	}
	n = pread(cbt.bitmap_fd, &h, sizeof(h), 0);
	if (n < 0) {
		ex_report(errno, "read %s", cbt.bitmap_path);
		return -errno;
	}
	if (n > 0) {
		if ((size_t)n < sizeof(h) || memcmp(h.magic, CBT_MAGIC, sizeof(h.magic)) ||
		    h.granularity < SECTOR_SIZE ||
		    (h.granularity & (h.granularity - 1))) {
			ex_report(0, "%s is not a dmu-cbt bitmap", cbt.bitmap_path);
			return -EINVAL;
		}
		if (granularity_given && h.granularity != cbt.granularity) {
			ex_report(0, "%s tracks granules of %u bytes, not %u",
				  cbt.bitmap_path, h.granularity, cbt.granularity);
			return -EINVAL;
		}
		cbt.granularity = h.granularity;
	}
	cbt.shift = __builtin_ctz(cbt.granularity);
	return 0;
}

/* Sets the bits of every granule [@off, @off + @len) touches. */
static void mark(uint64_t off, uint64_t len)
{
	uint64_t g, last;

	if (!len)
		return;
	pthread_rwlock_rdlock(&cbt.lock);
	last = (off + len - 1) >> cbt.shift;
	for (g = off >> cbt.shift; g <= last && g / 64 < cbt.nr_words; g++)
		__atomic_fetch_or(&cbt.words[g / 64], 1ULL << (g % 64),
				  __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&cbt.lock);
}

/* ---- serving ----------------------------------------------------------- */

/*
 * A notification: the range is marked before the answer lets the write
 * go down, so no write reaches the disk unrecorded.
 */
static int cbt_notify(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	if (ex_check_range(r->offset, r->len, cbt.size, SECTOR_SIZE))
		return -ERANGE;
	mark(r->offset, r->len);
	__atomic_fetch_add(&cbt.notified, 1, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Requests that come whole: the daemon releases every claim at its start,
 * but what was mapped before it did still comes here. Changes are marked
 * as notifications are; everything goes where it was going.
 */
static int cbt_change(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	if (ex_check_range(r->offset, r->len, cbt.size, SECTOR_SIZE))
		return -ERANGE;
	mark(r->offset, r->len);
	return DMU_REMAP;
}

static int cbt_read(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	(void)r;
	return DMU_REMAP;
}

/* The kernel passed the flush down already. */
static int cbt_flush(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	(void)r;
	return 0;
}

/*
 * A bigger device: a bigger bitmap, and the new sectors, which the reload
 * claimed, released (notifications stay on across reloads).
 */
static void cbt_reload(void *ctx, const struct dmu_info *info)
{
	struct ex_daemon *d = ctx;
	uint64_t size = info->size * SECTOR_SIZE, old;
	int rc = 0;

	if (!ex_reload_same_backing(d, info))
		return;
	pthread_rwlock_wrlock(&cbt.lock);
	old = cbt.size;
	if (size > old)
		rc = bitmap_map(size);
	else
		cbt.size = size;
	pthread_rwlock_unlock(&cbt.lock);
	if (rc) {
		ex_report(rc, "grow the bitmap to %" PRIu64 " bytes of device; writes past %" PRIu64
			  " fail", size, old);
		return;
	}
	if (size > old) {
		rc = dmu_release(d->chan_fd, old, size - old);
		if (rc < 0)
			ex_report(rc, "release the %" PRIu64 " bytes the reload added", size - old);
	}
}

static const struct dmu_ops cbt_ops = {
	.read = cbt_read,
	.write = cbt_change,
	.discard = cbt_change,
	.write_zeroes = cbt_change,
	.secure_erase = cbt_change,
	.flush = cbt_flush,
	.notify = cbt_notify,
	.reload = cbt_reload,
};

/* ---- control ----------------------------------------------------------- */

/*
 * Prints the set bits of @words as "<offset> <length>" lines in bytes,
 * runs of granules joined, the last clipped to the device's end.
 */
static void print_extents(FILE *out, const uint64_t *words, uint64_t nr_words,
			  uint64_t size)
{
	uint64_t g, nr = nr_words * 64, start = 0, extents = 0, bytes = 0;
	bool in = false;

	for (g = 0; g <= nr; g++) {
		bool set = g < nr && (words[g / 64] >> (g % 64) & 1);

		if (set && !in) {
			start = g;
			in = true;
		} else if (!set && in) {
			uint64_t off = start << cbt.shift;
			uint64_t end = g << cbt.shift;

			if (end > size)
				end = size;
			if (off < end) {
				fprintf(out, "%" PRIu64 " %" PRIu64 "\n", off, end - off);
				extents++;
				bytes += end - off;
			}
			in = false;
		}
	}
	fprintf(out, "ok %" PRIu64 " extents %" PRIu64 " bytes\n", extents, bytes);
}

static void cbt_ctl(void *ctx, int argc, char **argv, FILE *out)
{
	uint64_t *copy, i, nr_words, size;
	bool take = false;

	(void)ctx;
	if (argc != 1) {
		ex_ctl_error(out, "'%s' takes no arguments", argv[0]);
		return;
	}
	if (!strcmp(argv[0], "status")) {
		uint64_t set = 0;

		pthread_rwlock_rdlock(&cbt.lock);
		for (i = 0; i < cbt.nr_words; i++)
			set += __builtin_popcountll(__atomic_load_n(&cbt.words[i],
								   __ATOMIC_RELAXED));
		fprintf(out, "size %" PRIu64 "\ngranularity %u\ngranules_changed %" PRIu64
			"\nnotified %" PRIu64 "\nok\n", cbt.size, cbt.granularity, set,
			__atomic_load_n(&cbt.notified, __ATOMIC_RELAXED));
		pthread_rwlock_unlock(&cbt.lock);
		return;
	}
	if (!strcmp(argv[0], "dump-clear") || !strcmp(argv[0], "clear"))
		take = true;
	else if (strcmp(argv[0], "dump")) {
		ex_ctl_error(out, "unknown command '%s' (status, dump, dump-clear, clear)",
			     argv[0]);
		return;
	}
	pthread_rwlock_rdlock(&cbt.lock);
	/* Of this mapping: a resize may come once the lock is dropped. */
	nr_words = cbt.nr_words;
	size = cbt.size;
	copy = malloc(nr_words * 8 + 8);
	if (!copy) {
		pthread_rwlock_unlock(&cbt.lock);
		ex_ctl_error(out, "no memory for a copy of the bitmap");
		return;
	}
	/*
	 * Word by word: a bit set after its word was taken belongs to the
	 * next period, and none is lost between the two.
	 */
	for (i = 0; i < nr_words; i++)
		copy[i] = take ? __atomic_exchange_n(&cbt.words[i], 0, __ATOMIC_RELAXED)
			       : __atomic_load_n(&cbt.words[i], __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&cbt.lock);
	if (strcmp(argv[0], "clear"))
		print_extents(out, copy, nr_words, size);
	else
		fprintf(out, "ok\n");
	free(copy);
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s serve --bitmap <file> [options] <name>\n"
"       %s ctl <socket> status|dump|dump-clear|clear\n"
"\n"
"serve: track the changes of the target's backing device. Every request\n"
"goes straight to it; writes, discards, write-zeroes and secure erases are\n"
"notified to the daemon first (turned on here), which marks their granules\n"
"in the bitmap file. Notifications stay on when the daemon stops, so the\n"
"writes made while it is down wait for the next one (or fail after the\n"
"target's no_daemon_timeout); for a table with passthrough, give it the\n"
"notify_writes feature too, so that none goes by before the first daemon.\n"
"The file is made if it is empty or missing and taken up again after a\n"
"restart.\n"
"\n"
"  -b, --bitmap <file>      the bitmap file (required)\n"
"  -g, --granularity <size> bytes per bit, a power of two from 512 (default\n"
"                           64K; an existing bitmap keeps its own)\n"
"  -S, --control <path>     answer \"%s ctl\" commands on this Unix socket\n"
"  -t, --threads <n>        channels, one thread each (default 1)\n"
"  -p, --pid-file <file>    write the pid here once every channel is open\n"
"  -h, --help               show this help\n"
"\n"
"ctl: send a command to a running daemon's control socket.\n"
"  status       size, granularity, granules changed, notifications seen\n"
"  dump         the changed ranges, one \"<offset> <length>\" line each in\n"
"               bytes, then \"ok <n> extents <bytes> bytes\"\n"
"  dump-clear   the same, and start a new period: a write answered after\n"
"               its granule was taken is in the next dump. For a backup\n"
"               consistent with the dump, take it with the device\n"
"               suspended or from a snapshot taken at that moment.\n"
"  clear        start a new period without a dump\n"
"\n"
"Exit status: 0 on success (serve: the target was removed or a signal\n"
"came), 1 on failure, 2 for a bad command line.\n",
		ex_prog, ex_prog, ex_prog);
}

static bool granularity_given;

static int setup(struct ex_daemon *d)
{
	struct dmu_params p = { .notify_writes = 1 };
	int rc;

	rc = ex_open_target(d, true, "nothing to track");
	if (rc)
		return rc;
	rc = bitmap_open(granularity_given);
	if (rc)
		return rc;
	rc = bitmap_map(d->info.size * SECTOR_SIZE);
	if (rc) {
		ex_report(rc, "map %s", cbt.bitmap_path);
		return rc;
	}
	/* On before the release, so that no write passes unseen. */
	rc = dmu_set_params(d->chan_fd, &p, DMU_PARAM_NOTIFY_WRITES);
	if (rc) {
		ex_report(rc, "turn write notifications on for %s", d->name);
		return rc;
	}
	rc = dmu_release(d->chan_fd, 0, cbt.size);
	if (rc < 0) {
		ex_report(rc, "release the claims of %s", d->name);
		return rc;
	}
	return 0;
}

/* What the page cache holds of the bitmap, on its disk. */
static int finish(struct ex_daemon *d)
{
	(void)d;
	if (msync(cbt.map, cbt.map_len, MS_SYNC)) {
		ex_report(errno, "msync %s", cbt.bitmap_path);
		return -errno;
	}
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bitmap", required_argument, NULL, 'b' },
		{ "granularity", required_argument, NULL, 'g' },
		EX_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ex_daemon d;
	uint64_t v;
	int c;

	ex_daemon_init(&d);
	d.ops = &cbt_ops;
	d.setup = setup;
	d.finish = finish;
	d.ctl = cbt_ctl;
	while ((c = getopt_long(argc, argv, "b:g:" EX_SHORTOPTS, longopts,
				NULL)) != -1) {
		if (ex_daemon_opt(&d, c, optarg))
			continue;
		switch (c) {
		case 'b':
			cbt.bitmap_path = optarg;
			break;
		case 'g':
			if (ex_parse_size(optarg, &v) || v < SECTOR_SIZE ||
			    v > (1ULL << 30) || (v & (v - 1)))
				ex_bad_usage("--granularity: '%s' is not a power of two from 512 to 1G",
					     optarg);
			cbt.granularity = v;
			granularity_given = true;
			break;
		}
	}
	if (!cbt.bitmap_path)
		ex_bad_usage("--bitmap is required");
	return ex_daemon_run(&d, argc, argv);
}

int main(int argc, char **argv)
{
	return ex_main(argc, argv, "dmu-cbt", cmd_serve, usage);
}
