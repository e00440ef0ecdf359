#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Removing a device whose daemon holds requests unanswered does not hang
# forever: once the daemon dies, its requests fail with EIO and the forced
# removal completes.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_stuck_$$
_create_dev "$n" 16384
_start_daemon "$n" -r 8M
pid=$DAEMON_PID
kill -STOP $pid
# I/O that the stopped daemon will never answer.
dd if="/dev/mapper/$n" of=/dev/null bs=4k count=1 iflag=direct 2>/tmp/$n.dd &
dd_pid=$!
sleep 1
kill -0 $dd_pid 2>/dev/null || _fail "I/O completed without a daemon"
dmsetup remove --force "$n" >/dev/null 2>&1 &
rm_pid=$!
sleep 1
kill -9 $pid
kill -CONT $pid 2>/dev/null
wait $pid 2>/dev/null
DAEMONS=""
i=0
while kill -0 $dd_pid 2>/dev/null || kill -0 $rm_pid 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 100 ] || _fail "I/O or removal still hung 20 s after the daemon died"
	sleep 0.2
done
wait $dd_pid && _fail "I/O succeeded with no daemon to serve it"
grep -qi "error" /tmp/$n.dd || _fail "dd did not report an I/O error: $(cat /tmp/$n.dd)"
wait $rm_pid
dmsetup remove "$n" >/dev/null 2>&1
dmsetup info "$n" >/dev/null 2>&1 && _fail "device still present"
DEVS=""
exit 0
