#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Discard, write-zeroes and secure erase reach the daemon, which zeroes the
# ranges of its RAM store; data outside them is untouched.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_disc_$$
dev=/dev/mapper/$n
_create_dev "$n" 32768
_start_daemon "$n" -r 16M -S /tmp/$n.stats
for op in discard zeroout secdiscard; do
	"$DMU_IO" write "$dev" 0 8388608 11 direct || _fail "fill before $op"
	r=$("$DMU_IO" "$op" "$dev" 1048576 2097152) || _fail "$op: $r"
	"$DMU_IO" zeroes "$dev" 1048576 2097152 || _fail "$op left data behind"
	"$DMU_IO" verify "$dev" 0 1048576 11 direct || _fail "$op hit data before the range"
	"$DMU_IO" verify "$dev" 3145728 5242880 11 direct || _fail "$op hit data after the range"
done
_stop_daemon "$DAEMON_PID"
for k in discards write_zeroes secure_erases; do
	v=$(_stat /tmp/$n.stats $k)
	_log "$k: $v"
	[ "${v:-0}" -gt 0 ] || _fail "no $k reached the daemon"
done
exit 0
