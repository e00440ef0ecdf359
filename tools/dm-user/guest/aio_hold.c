// SPDX-License-Identifier: GPL-2.0
/*
 * aio_hold: submit <count> 4 KiB O_DIRECT reads to a block device with one
 * io_submit() batch after another, say "held <count>" once every read has
 * been submitted and none has completed, then wait for them all. make bench
 * uses it to measure what a request costs while a device holds it: when
 * io_submit() has returned, each bio has gone through submit_bio() and so
 * through the device's queueing, and the memory it took can be counted.
 *
 *   aio_hold <device> <count> <seconds>
 *
 * <seconds> bounds the wait for the completions. Exit status: 0 when every
 * read completed with 4096 bytes, 1 otherwise (with what failed printed), 2
 * on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BS 4096
#define BATCH 256

int main(int argc, char **argv)
{
	struct io_event events[BATCH];
	struct iocb **ptrs, *cbs;
	long count, secs, i, done = 0;
	struct timespec deadline, now;
	io_context_t ctx = 0;
	char *bufs, *end;
	int fd, ret;

	if (argc != 4) {
		fprintf(stderr, "usage: aio_hold <device> <count> <seconds>\n");
		return 2;
	}
	count = strtol(argv[2], &end, 10);
	if (*end || count <= 0 || count > 1000000) {
		fprintf(stderr, "aio_hold: bad count %s\n", argv[2]);
		return 2;
	}
	secs = strtol(argv[3], &end, 10);
	if (*end || secs <= 0) {
		fprintf(stderr, "aio_hold: bad seconds %s\n", argv[3]);
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "aio_hold: open %s: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	cbs = calloc(count, sizeof(*cbs));
	ptrs = calloc(count, sizeof(*ptrs));
	if (!cbs || !ptrs) {
		fprintf(stderr, "aio_hold: calloc: out of memory\n");
		return 1;
	}
	ret = posix_memalign((void **)&bufs, BS, (size_t)count * BS);
	if (ret) {
		fprintf(stderr, "aio_hold: posix_memalign: %s\n", strerror(ret));
		return 1;
	}
	/*
	 * Touched before the reads go, so that none faults in the middle;
	 * make bench's "used" figure counts these pages, its slab one not.
	 */
	memset(bufs, 0xa5, (size_t)count * BS);
	ret = io_setup(count, &ctx);
	if (ret) {
		fprintf(stderr, "aio_hold: io_setup(%ld): %s\n", count,
			strerror(-ret));
		return 1;
	}
	for (i = 0; i < count; i++) {
		io_prep_pread(&cbs[i], fd, bufs + (size_t)i * BS, BS,
			      (long long)i * BS);
		ptrs[i] = &cbs[i];
	}
	for (i = 0; i < count; i += ret) {
		ret = io_submit(ctx, count - i < BATCH ? count - i : BATCH,
				ptrs + i);
		if (ret <= 0) {
			fprintf(stderr, "aio_hold: io_submit at read %ld: %s\n",
				i, ret ? strerror(-ret) : "nothing submitted");
			return 1;
		}
	}
	/* A read that completed already was not held: the figure would lie. */
	ret = io_getevents(ctx, 0, BATCH, events, &(struct timespec){ 0 });
	if (ret < 0) {
		fprintf(stderr, "aio_hold: io_getevents: %s\n", strerror(-ret));
		return 1;
	}
	if (ret > 0) {
		fprintf(stderr, "aio_hold: %d reads completed before all were submitted\n",
			ret);
		return 1;
	}
	printf("held %ld\n", count);
	if (fflush(stdout)) {
		fprintf(stderr, "aio_hold: stdout: %s\n", strerror(errno));
		return 1;
	}

	if (clock_gettime(CLOCK_MONOTONIC, &deadline)) {
		fprintf(stderr, "aio_hold: clock_gettime: %s\n", strerror(errno));
		return 1;
	}
	deadline.tv_sec += secs;
	while (done < count) {
		struct timespec wait = { 1, 0 };

		if (clock_gettime(CLOCK_MONOTONIC, &now)) {
			fprintf(stderr, "aio_hold: clock_gettime: %s\n",
				strerror(errno));
			return 1;
		}
		if (now.tv_sec >= deadline.tv_sec) {
			fprintf(stderr, "aio_hold: %ld of %ld reads not completed after %ld s\n",
				count - done, count, secs);
			return 1;
		}
		ret = io_getevents(ctx, 1, BATCH, events, &wait);
		if (ret < 0 && ret != -EINTR) {
			fprintf(stderr, "aio_hold: io_getevents: %s\n",
				strerror(-ret));
			return 1;
		}
		for (i = 0; i < ret; i++) {
			if (events[i].res != BS) {
				struct iocb *cb = events[i].obj;

				fprintf(stderr, "aio_hold: read at %lld: %s\n",
					cb->u.c.offset,
					(long)events[i].res < 0 ?
					strerror(-(long)events[i].res) :
					"short read");
				return 1;
			}
		}
		if (ret > 0)
			done += ret;
	}
	return 0;
}
