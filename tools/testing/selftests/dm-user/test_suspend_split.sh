#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Noflush suspend and resume, 30 times, under fio with crc32c verification,
# while the daemon moves every message in odd-sized pieces: a suspend never
# takes back a request a channel has started to read, so the channel's byte
# stream is never cut in the middle of a message and no data lands at the
# wrong sector. No I/O error, no verify error, the daemon stays up.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_ssplit_$$
_create_dev "$n" 131072			# 64 MiB
_start_daemon "$n" -r 64M -t 2 -s 509
pid=$DAEMON_PID

# The cycles run in the background; fio runs, each writing and verifying,
# until they are done: as many runs as the speed of the machine needs.
rm -f /tmp/$n.cycles /tmp/$n.cycerr
(
	i=0
	while [ $i -lt 30 ]; do
		timeout 20 dmsetup suspend --noflush "$n" ||
			{ echo "suspend --noflush $i did not finish in 20 s" > /tmp/$n.cycerr; exit 1; }
		dmsetup resume "$n" || { echo "resume $i failed" > /tmp/$n.cycerr; exit 1; }
		i=$((i + 1))
		echo $i > /tmp/$n.cycles
		sleep 0.2
	done
) &
cyc=$!
runs=0 kb=0
while kill -0 $cyc 2>/dev/null; do
	fio --name=verify --filename="/dev/mapper/$n" --direct=1 \
	    --rw=randwrite --bsrange=4k-64k --ioengine=libaio --iodepth=8 \
	    --numjobs=2 --size=16M --offset_increment=32M --verify=crc32c \
	    --verify_backlog=16 --do_verify=1 --verify_fatal=1 \
	    --output-format=terse --terse-version=3 > /tmp/$n.fio 2>&1 &
	FIO_PID=$!
	_verify_fio_check "$n" "fio run $((runs + 1)) across suspends"
	runs=$((runs + 1)) kb=$((kb + FIO_KB))
done
wait $cyc || _fail "$(cat /tmp/$n.cycerr 2>/dev/null)"
[ "$(cat /tmp/$n.cycles)" = 30 ] || _fail "only $(cat /tmp/$n.cycles) cycles"
[ $runs -gt 0 ] || _fail "no fio run overlapped the cycles"
_log "30 noflush suspend/resume cycles under $runs fio runs; $kb KiB verified"
kill -0 $pid 2>/dev/null || _fail "daemon died"
[ "$(_rw_errors "$n")" = 0 ] || _fail "the target counted errors: $(dmsetup status "$n")"
_stop_daemon "$pid"
exit 0
