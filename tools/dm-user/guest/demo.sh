#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make demo, inside the guest: a dm-user device served by the reference
# daemon from RAM, with ext4 on it, shown working step by step.
set -e
export DM_DISABLE_UDEV=1
say() { printf '\n==> %s\n' "$*"; }
fail() { echo "demo: FAILED: $*"; exit 1; }

say "Linux $(uname -r): dm-user module loaded"
dmsetup targets | grep '^user '

say "dmsetup create demo --table '0 262144 user 0 262144 demo'   (128 MiB)"
dmsetup create demo --table "0 262144 user 0 262144 demo"
ls -l /dev/mapper/demo /dev/dm-user/demo

say "Serving it with the reference daemon: dmuser serve --ram 128M --threads 2 demo"
./dmuser serve -r 128M -t 2 -p /tmp/demo.pid demo &
daemon=$!
i=0
while [ ! -s /tmp/demo.pid ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "daemon did not start"; sleep 0.1
done

say "mkfs.ext4 on /dev/mapper/demo, mount it, copy files in"
mkfs.ext4 -q -F /dev/mapper/demo
mkdir -p /mnt/demo
mount -t ext4 /dev/mapper/demo /mnt/demo
cp -r /bin /mnt/demo/bin-copy 2>/dev/null || true
head -c 10485760 /dev/urandom > /mnt/demo/random.bin
(cd /mnt/demo && md5sum random.bin > /tmp/demo.md5)
df -h /mnt/demo | tail -1

say "Unmount, mount again, check the file is byte for byte the same"
umount /mnt/demo
mount -t ext4 /dev/mapper/demo /mnt/demo
(cd /mnt/demo && md5sum -c /tmp/demo.md5) || fail "file changed"
ls /mnt/demo | head -5

say "dmsetup status demo   (per-operation requests, bytes, errors)"
dmsetup status demo

say "dmuser info demo   (the same, asked through the control ioctl)"
./dmuser info demo

say "dmuser list   (every user target; --json for scripts)"
./dmuser list

say "fio: 4 KiB random reads, queue depth 1, 3 seconds, through the daemon"
umount /mnt/demo
fio --name=demo --filename=/dev/mapper/demo --direct=1 --rw=randread \
    --bs=4k --ioengine=psync --runtime=3 --time_based --size=64M \
    --output-format=terse --terse-version=3 |
	awk -F';' '{ printf "    %d IOPS, %.1f MB/s\n", $8, $7 * 1024 / 1e6 }'

say "e2fsck -fn: the filesystem is clean"
e2fsck -fn /dev/mapper/demo

say "Stop the daemon and remove the device"
kill $daemon
wait $daemon || true
dmsetup remove demo
echo
echo "Demo complete: a block device was created with dmsetup, every one of"
echo "its I/O requests was served by a userspace daemon through"
echo "/dev/dm-user/demo, and an ext4 filesystem on it kept its files intact."
