#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A filesystem on dm-user: mkfs.ext4, mount, copy files, remount, compare,
# unmount, and a clean fsck. Journal commits must reach the daemon as
# flushes and FUA writes.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v mkfs.ext4 >/dev/null || _skip "mkfs.ext4 not installed"

n=dmu_ext4_$$
_create_dev "$n" 262144
_start_daemon "$n" -r 128M -t 2 -S /tmp/$n.stats
mkfs.ext4 -q -F "/dev/mapper/$n" || _fail "mkfs.ext4"
mkdir -p "/mnt/$n"
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "mount"
mkdir -p "/mnt/$n/tree"
i=0
while [ $i -lt 40 ]; do
	head -c $((i * 3001 + 17)) /dev/urandom > "/mnt/$n/tree/f$i" || _fail "write f$i"
	i=$((i + 1))
done
cp "$DMUSERD" "/mnt/$n/dmuserd.copy" || _fail "cp"
(cd "/mnt/$n" && md5sum tree/* dmuserd.copy) > /tmp/$n.md5
sync
umount "/mnt/$n" || _fail "umount"
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "remount"
(cd "/mnt/$n" && md5sum -c /tmp/$n.md5 >/dev/null) || _fail "files differ after remount"
cmp "$DMUSERD" "/mnt/$n/dmuserd.copy" || _fail "copy differs"
umount "/mnt/$n" || _fail "umount"
e2fsck -fn "/dev/mapper/$n" || _fail "e2fsck found problems"
_stop_daemon "$DAEMON_PID"
f=$(_stat /tmp/$n.stats flushes)
u=$(_stat /tmp/$n.stats fua)
_log "daemon saw $f flushes and $u FUA writes"
[ "${f:-0}" -gt 0 ] || _fail "no flush reached the daemon"
exit 0
