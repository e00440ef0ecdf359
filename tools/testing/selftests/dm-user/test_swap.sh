#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Swap on dm-user: a device served by the reference daemon is the only swap,
# and a process confined by a memory cgroup to 48 MiB writes and reads back
# 192 MiB, so that most of it goes out to the device and comes back. It must
# finish within its bound with every page intact, and the device must have
# carried the swap traffic. The daemon runs outside the cgroup, with
# PR_SET_IO_FLUSHER and its memory locked.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v mkswap >/dev/null && command -v swapon >/dev/null ||
	_skip "no mkswap/swapon"
[ -x "$TEST_DIR/memhog" ] || _fail "memhog not built"
cg=/sys/fs/cgroup
grep -q cgroup2 /proc/filesystems || _skip "no cgroup v2 in this kernel"
mountpoint -q $cg 2>/dev/null || mount -t cgroup2 none $cg ||
	_fail "mount cgroup2"
grep -qw memory $cg/cgroup.controllers || _skip "no memory controller"
echo +memory > $cg/cgroup.subtree_control || _fail "enable the memory controller"

n=dmu_swap_$$
sectors=$((256 * 2048))
_create_dev "$n" $sectors
_start_daemon "$n" --ram $((sectors * 512)) -t 2
mkswap "/dev/mapper/$n" >/dev/null || _fail "mkswap"
swapon "/dev/mapper/$n" || _fail "swapon"
g=$cg/dmu_swap_$$
mkdir $g || _fail "mkdir $g"
cleanup_swap() {
	swapoff "/dev/mapper/$n" 2>/dev/null
	rmdir $g 2>/dev/null
	_cleanup_test
}
trap cleanup_swap EXIT
echo 48M > $g/memory.max || _fail "memory.max"

w0=$(_status_value "$n" write)
start=$(date +%s)
sh -c "echo \$\$ > $g/cgroup.procs && exec '$TEST_DIR/memhog' 192 $$" ||
	_fail "memhog under a 48 MiB limit with swap on dm-user"
secs=$(($(date +%s) - start))
w1=$(_status_value "$n" write)
r1=$(_status_value "$n" read)
peak=$(cat $g/memory.swap.peak 2>/dev/null || echo n/a)
_log "192 MiB through a 48 MiB limit in $secs s: $((w1 - w0)) writes, $r1 reads to the swap device (swap peak $peak)"
[ $((w1 - w0)) -gt 1000 ] || _fail "only $((w1 - w0)) writes reached the swap device"
[ "$r1" -gt 100 ] || _fail "only $r1 reads came back from the swap device"
swapoff "/dev/mapper/$n" || _fail "swapoff"
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
exit 0
