#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A flushing suspend of a mounted ext4 (lockfs, as LVM snapshots do) while
# no daemon is attached: device-mapper calls presuspend before it freezes
# the filesystem, and the freeze's own writes must wait for a daemon as
# any I/O does under queue_if_no_daemon, not fail and abort the journal.
# The daemon is restarted during the suspend, which then completes.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v mkfs.ext4 >/dev/null || _skip "mkfs.ext4 not installed"

n=dmu_freeze_$$
img=/tmp/$n.img
truncate -s 64M "$img" || _fail "truncate $img"
_create_dev "$n" 131072 1 queue_if_no_daemon
_start_daemon "$n" -f "$img" -t 2
mkfs.ext4 -q "/dev/mapper/$n" || _fail "mkfs.ext4"
mkdir -p "/mnt/$n"
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "mount"
dmesg -c >/dev/null
dd if=/dev/urandom of="/mnt/$n/a" bs=64k count=64 2>/dev/null || _fail "write a"
sync
sum_a=$(md5sum < "/mnt/$n/a")
# Dirty data and journal the freeze must write.
dd if=/dev/urandom of="/mnt/$n/b" bs=64k count=64 2>/dev/null || _fail "write b"
sum_b=$(md5sum < "/mnt/$n/b")

kill -9 "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
DAEMONS=""
timeout 60 dmsetup suspend "$n" &
sp=$!
sleep 2
kill -0 $sp 2>/dev/null || _fail "the suspend finished with no daemon to write the freeze"
_start_daemon "$n" -f "$img" -t 2
wait $sp || _fail "dmsetup suspend failed or took over 60 s"
dmsetup resume "$n" || _fail "resume"
_log "suspended with the daemon gone, restarted it, resumed"

touch "/mnt/$n/c" || _fail "the filesystem is read-only after the suspend"
sync || _fail "sync"
dmesg | grep -E "EXT4-fs (error|warning)|Aborting journal|I/O error" &&
	_fail "ext4 saw errors during the suspend"
umount "/mnt/$n" || _fail "umount"
fsck.ext4 -fn "/dev/mapper/$n" >/tmp/$n.fsck 2>&1 ||
	{ cat /tmp/$n.fsck; _fail "fsck found damage"; }
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "mount again"
[ "$(md5sum < "/mnt/$n/a")" = "$sum_a" ] || _fail "file a changed"
[ "$(md5sum < "/mnt/$n/b")" = "$sum_b" ] || _fail "file b changed"
umount "/mnt/$n"
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
_stop_daemon "$DAEMON_PID"
rm -f "$img"
exit 0
