#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Data integrity: patterns at many offsets and sizes, through direct and
# buffered I/O, written and read back through a device served from RAM;
# then the same after the daemon is restarted on the same store file.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_int_$$
_create_dev "$n" 131072			# 64 MiB
_start_daemon "$n" -r 64M -t 2
"$DMU_IO" matrix "/dev/mapper/$n" 0 67108864 || _fail "pattern matrix"
"$DMU_IO" write "/dev/mapper/$n" 33554432 1048576 42 direct || _fail "write"
"$DMU_IO" verify "/dev/mapper/$n" 33554432 1048576 42 direct || _fail "verify"
# A different seed must not match: the check can fail.
if "$DMU_IO" verify "/dev/mapper/$n" 33554432 1048576 43 direct 2>/dev/null; then
	_fail "verify matched the wrong pattern"
fi

# A file store survives a daemon restart.
dd if=/dev/zero of=/tmp/$n.img bs=1M count=0 seek=64 2>/dev/null ||
	_fail "create store file"
_stop_daemon "$DAEMON_PID"
_start_daemon "$n" -f /tmp/$n.img -t 2
"$DMU_IO" write "/dev/mapper/$n" 4096 1052672 9 direct || _fail "write to file store"
_stop_daemon "$DAEMON_PID"
_start_daemon "$n" -f /tmp/$n.img
"$DMU_IO" verify "/dev/mapper/$n" 4096 1052672 9 direct || _fail "file store after restart"
rm -f /tmp/$n.img
exit 0
