#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The debug-kernel lane inside the guest (busybox sh), run from the payload
# dir instead of guest-tests.sh:  debug-tests.sh <testlist-file>
# It keeps every kernel message from boot on in /tmp/kmsg.all (tests clear the
# ring buffer with dmesg -c, and a full run overflows it), starts kmemleak
# from a clean slate, sets the soak test's longer durations, then runs the
# list with guest-tests.sh. In the list, kernel_report.sh and fault_report.sh
# turn any KASAN, lockdep, UBSAN, kmemleak, WARN or BUG report into a failure.
set -u

mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -e /sys/kernel/debug/kmemleak ] ||
	echo "debug-tests: no /sys/kernel/debug/kmemleak (not the debug kernel?)"

# Same session as guest-tests.sh, so its cleanup between tests leaves the
# logger alone.
cat /dev/kmsg > /tmp/kmsg.all &
echo $! > /tmp/kmsg.pid
# Objects allocated during boot and module load are not ours to judge.
echo clear > /sys/kernel/debug/kmemleak 2>/dev/null

export DMUSER_SOAK_SECONDS=${DMUSER_SOAK_SECONDS:-240}
export DMUSER_SOAK_CYCLES=${DMUSER_SOAK_CYCLES:-200}
exec ./guest-tests.sh "$@"
