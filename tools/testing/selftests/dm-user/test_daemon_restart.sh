#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Daemon crash recovery: fio writes and verifies (crc32c) while the daemon
# is killed with SIGKILL every couple of seconds and started again. The
# requests the dead daemon held go back to the queue and the next daemon
# serves them: fio must see no I/O error and no verify failure.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_restart_$$
img=/tmp/$n.img
truncate -s 64M "$img" || _fail "truncate $img"
_create_dev "$n" 131072 1 queue_if_no_daemon
_start_daemon "$n" -f "$img" -t 2

fio --name=restart --filename="/dev/mapper/$n" --direct=1 \
    --rw=randwrite --bsrange=4k-64k --ioengine=libaio --iodepth=8 \
    --numjobs=2 --size=16M --offset_increment=32M --loops=20 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output-format=terse --terse-version=3 > /tmp/$n.fio 2>&1 &
fio_pid=$!

kills=0
while [ $kills -lt 10 ] && kill -0 $fio_pid 2>/dev/null; do
	sleep 1
	kill -0 $fio_pid 2>/dev/null || break
	kill -9 "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	kills=$((kills + 1))
	sleep 0.3
	_start_daemon "$n" -f "$img" -t 2
done
wait $fio_pid
st=$?
[ "$st" = 0 ] || { cat /tmp/$n.fio; _fail "fio failed (status $st) across $kills daemon kills"; }
# Terse v3: field 5 is the job's error, 6 the KiB read (verified).
err=$(awk -F';' '{ s += $5 } END { print s }' /tmp/$n.fio)
kb=$(awk -F';' '{ s += $6 } END { print s }' /tmp/$n.fio)
requeued=$(dmsetup status "$n" | tr ' ' '\n' | grep -A1 -x requeued | tail -n 1)
_log "$kills daemon kills, $requeued requests requeued, $kb KiB verified, fio errors $err"
[ "$kills" -ge 5 ] || _fail "only $kills kills: fio ended too soon to test anything"
[ "${err:-1}" = 0 ] || _fail "fio reported error $err"
[ "${kb:-0}" -gt 0 ] || _fail "fio verified nothing"
e=$(dmsetup status "$n" | awk '{ for (i = 1; i <= NF; i++) if ($i == "read" || $i == "write") s += $(i + 3) } END { print s }')
[ "${e:-1}" = 0 ] || _fail "the target counted $e failed reads or writes"
_stop_daemon "$DAEMON_PID"
rm -f "$img"
exit 0
