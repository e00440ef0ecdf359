#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A daemon written only against the 2020 RFC's wire format (its own struct
# and constants, no project header) serves a device unchanged.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_rfc_$$
_create_dev "$n" 32768
"$TEST_DIR/rfc_daemon" "/dev/dm-user/$n" 16777216 &
pid=$!
DAEMONS="$pid"
sleep 0.5
kill -0 $pid 2>/dev/null || _fail "rfc_daemon exited"
"$DMU_IO" matrix "/dev/mapper/$n" 0 16777216 || _fail "matrix through the RFC daemon"
if command -v mkfs.ext4 >/dev/null; then
	mkfs.ext4 -q -F "/dev/mapper/$n" || _fail "mkfs.ext4"
	e2fsck -fn "/dev/mapper/$n" >/dev/null || _fail "e2fsck"
fi
# Removing the device ends the RFC daemon cleanly (ENOTBLK).
dmsetup remove "$n" || _fail "remove"
_expect_exit_after_remove $pid rfc_daemon
exit 0
