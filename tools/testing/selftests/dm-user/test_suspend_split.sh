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

fio --name=verify --filename="/dev/mapper/$n" --direct=1 \
    --rw=randwrite --bsrange=4k-64k --ioengine=libaio --iodepth=8 \
    --numjobs=2 --size=16M --offset_increment=32M --time_based \
    --runtime=40 --verify=crc32c --verify_backlog=16 --verify_fatal=1 \
    --output-format=terse --terse-version=3 > /tmp/$n.fio 2>&1 &
FIO_PID=$!
sleep 2
i=0
while [ $i -lt 30 ]; do
	timeout 20 dmsetup suspend --noflush "$n" ||
		_fail "suspend --noflush $i did not finish in 20 s"
	dmsetup resume "$n" || _fail "resume $i"
	kill -0 $FIO_PID 2>/dev/null || break
	i=$((i + 1))
	sleep 0.2
done
[ $i = 30 ] || _fail "fio ended after $i of 30 suspend cycles: $(cat /tmp/$n.fio)"
_log "30 noflush suspend/resume cycles under fio"
_verify_fio_check "$n" "fio across suspends"
_log "fio verified $FIO_KB KiB"
kill -0 $pid 2>/dev/null || _fail "daemon died"
[ "$(_rw_errors "$n")" = 0 ] || _fail "the target counted errors: $(dmsetup status "$n")"
_stop_daemon "$pid"
exit 0
