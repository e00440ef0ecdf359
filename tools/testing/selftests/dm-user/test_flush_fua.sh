#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fsync() reaches the daemon as a flush and O_SYNC writes as FUA writes.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_flush_$$
_create_dev "$n" 32768
_start_daemon "$n" -r 16M -S /tmp/$n.stats
[ "$(_queue_attr "$n" write_cache)" = "write back" ] || _fail "write_cache not 'write back'"
[ "$(_queue_attr "$n" fua)" = 1 ] || _fail "device does not declare FUA"
fio --name=fsync --filename="/dev/mapper/$n" --rw=write --bs=4k --size=64k \
    --fsync=1 --ioengine=psync >/dev/null || _fail "fio fsync"
fio --name=osync --filename="/dev/mapper/$n" --rw=write --bs=4k --size=64k \
    --sync=1 --direct=1 --ioengine=psync >/dev/null || _fail "fio sync"
_stop_daemon "$DAEMON_PID"
f=$(_stat /tmp/$n.stats flushes)
u=$(_stat /tmp/$n.stats fua)
_log "daemon saw $f flushes and $u FUA writes"
[ "${f:-0}" -ge 16 ] || _fail "expected at least 16 flushes, saw $f"
[ "${u:-0}" -ge 16 ] || _fail "expected at least 16 FUA writes, saw $u"
exit 0
