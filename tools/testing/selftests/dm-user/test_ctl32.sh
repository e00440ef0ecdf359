#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A 32-bit static program on the 64-bit kernel: the control ioctl, the
# wire format and the ring work, served with read()/write() and then
# through a ring (the head's layout, RING_ENTER's argument: a wait, or the
# complete-only flag in bit 31).
. "$(dirname "$0")/test_common.sh"
_prep_test
[ -x "$TEST_DIR/ctl32" ] || _skip "ctl32 not built (no gcc -m32)"

n=dmu_c32_$$
# serve32 <what> <line ctl32 must print> [ring]: a device served by ctl32,
# checked with a pattern matrix, then removed under it.
serve32() {
	_create_dev "$n" 16384
	# shellcheck disable=SC2086 # no word at all without a mode
	"$TEST_DIR/ctl32" "/dev/dm-user/$n" "$n" 16384 $3 > /tmp/$n.out 2>&1 &
	pid=$!
	DAEMONS=$pid
	sleep 0.5
	cat /tmp/$n.out
	grep -q "^ctl32: $2" /tmp/$n.out || _fail "$1: no '$2'"
	"$DMU_IO" matrix "/dev/mapper/$n" 0 $((16384 * 512)) ||
		_fail "I/O through the $1"
	dmsetup remove "$n" || _fail "remove"
	_expect_exit_after_remove $pid "ctl32 ($1)"
}
serve32 "32-bit daemon" "32-bit client: name $n, 16384 sectors"
serve32 "32-bit ring daemon" "32-bit ring: depth 8, 1048576 bytes of data" ring
exit 0
