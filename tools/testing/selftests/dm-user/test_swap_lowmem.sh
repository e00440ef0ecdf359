#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Swap on dm-user in a small guest (tests.list boots it with -M 320M and a
# scratch disk): the reference daemon serves the disk with O_DIRECT (so it
# needs no page cache to write it), the device is the only swap, and a
# process writes and twice reads back twice the guest's RAM. The whole
# guest is short of memory -- the daemon too -- so this is where a daemon
# whose allocations waited on its own device, or whose pages were swapped
# to it, would deadlock. It must finish within its bound with every page
# intact.
. "$(dirname "$0")/test_common.sh"
_prep_test
[ -b /dev/vda ] || _skip "no scratch disk /dev/vda (needs a guest booted with run-guest.sh -d)"
command -v mkswap >/dev/null && command -v swapon >/dev/null ||
	_skip "no mkswap/swapon"
[ -x "$TEST_DIR/memhog" ] || _fail "memhog not built"

total_kb=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
hog_mb=$((total_kb * 2 / 1024))
disk_sectors=$(($(cat /sys/block/vda/size) / 8 * 8))
[ $((disk_sectors / 2048)) -gt $((hog_mb + 64)) ] ||
	_skip "scratch disk too small for ${hog_mb} MiB of swap"

n=dmu_lowmem_$$
_create_dev "$n" $disk_sectors
_start_daemon "$n" -f /dev/vda --direct -t 2
mkswap "/dev/mapper/$n" >/dev/null || _fail "mkswap"
swapon "/dev/mapper/$n" || _fail "swapon"
trap 'swapoff "/dev/mapper/$n" 2>/dev/null; _cleanup_test' EXIT
_log "guest RAM $((total_kb / 1024)) MiB, $(awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo) MiB available; memhog ${hog_mb} MiB"

start=$(date +%s)
"$TEST_DIR/memhog" $hog_mb $$ || _fail "memhog ${hog_mb} MiB with swap on dm-user"
secs=$(($(date +%s) - start))
kill -0 "$DAEMON_PID" 2>/dev/null || _fail "the daemon died under memory pressure"
w=$(_status_value "$n" write)
r=$(_status_value "$n" read)
_log "${hog_mb} MiB written and read back twice in $secs s: $w writes and $r reads through dm-user swap"
[ "$w" -gt 1000 ] || _fail "only $w writes reached the swap device"
[ "$r" -gt 1000 ] || _fail "only $r reads came back from the swap device"
swapoff "/dev/mapper/$n" || _fail "swapoff"
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
exit 0
