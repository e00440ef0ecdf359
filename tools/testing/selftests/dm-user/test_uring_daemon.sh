#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A daemon that does all its channel I/O through io_uring, with several
# reads in flight on one channel, serves a device correctly.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_uring_$$
_create_dev "$n" 32768
"$TEST_DIR/uring_daemon" "/dev/dm-user/$n" 16777216 4 &
pid=$!
DAEMONS="$pid"
sleep 0.5
kill -0 $pid 2>/dev/null || _fail "uring_daemon exited"
"$DMU_IO" matrix "/dev/mapper/$n" 0 16777216 || _fail "matrix through io_uring"
if command -v fio >/dev/null; then
	fio --name=v --filename="/dev/mapper/$n" --direct=1 --rw=randwrite \
	    --bs=4k --ioengine=libaio --iodepth=16 --size=8M \
	    --verify=crc32c --do_verify=1 --verify_fatal=1 >/dev/null ||
		_fail "fio verify through io_uring"
fi
dmsetup remove "$n" || _fail "remove"
_expect_exit_after_remove $pid "uring_daemon"
exit 0
