#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The device does not claim polled I/O: nothing of a round trip to the
# daemon can be polled, and a REQ_POLLED bio would make its submitter spin
# until the answer. queue/io_poll reads 0, on a fresh table and after a
# reload, and fio --hipri with io_uring still moves the right data.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_poll_$$
_create_dev "$n" 16384
_start_daemon "$n" -r 8M -t 2
old=$DAEMON_PID
[ "$(_queue_attr "$n" io_poll)" = 0 ] ||
	_fail "io_poll is $(_queue_attr "$n" io_poll) on a user target"
# A reload to a new target (and daemon) sets the queue's flags afresh.
dmsetup load "$n" --table "0 16384 user 0 16384 ${n}_b" || _fail "load"
_start_daemon "${n}_b" -r 8M -t 2
dmsetup suspend "$n" || _fail "suspend"
dmsetup resume "$n" || _fail "resume"
wait "$old" || _fail "the old daemon exited with status $?"
DAEMONS=$DAEMON_PID
[ "$(_queue_attr "$n" io_poll)" = 0 ] || _fail "io_poll is set again after a reload"
_log "io_poll 0, also after a reload"

# What a device that cannot poll gets: 6.1 clears REQ_POLLED and does the
# I/O unpolled; later kernels fail the polled bio with EOPNOTSUPP at once.
# Either way nothing spins, and what is done is right.
if command -v fio >/dev/null && fio --enghelp 2>/dev/null | grep -q io_uring; then
	fio --name=hipri --filename="/dev/mapper/$n" --direct=1 \
	    --ioengine=io_uring --hipri --rw=randwrite --bs=4k --size=4M \
	    --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 \
	    --output-format=terse --terse-version=3 > /tmp/$n.fio 2>&1
	st=$?
	# Terse v3: field 5 is the job's error, 6 the KiB read (verified).
	err=$(awk -F';' '{ print $5 }' /tmp/$n.fio | tail -n 1)
	kb=$(awk -F';' '{ s += $6 } END { print s }' /tmp/$n.fio)
	if [ "$st" = 0 ]; then
		[ "${kb:-0}" -gt 0 ] || _fail "fio --hipri verified nothing"
		_log "fio --hipri io_uring: done unpolled, $kb KiB verified"
	elif [ "$err" = 95 ]; then
		_log "fio --hipri io_uring: refused with EOPNOTSUPP, as on any device that cannot poll"
	else
		cat /tmp/$n.fio
		_fail "fio --hipri: status $st, error ${err:-none}"
	fi
fi
_stop_daemon "$DAEMON_PID"
exit 0
