#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A user target that does not start at sector 0: its daemon sees sectors
# relative to the target, so a store the size of the target is enough.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_off_$$
dmsetup create "$n" --table "0 8192 zero
8192 65536 user 8192 65536 $n" || _fail "create two-target table"
DEVS="$n"
_start_daemon "$n" -r 32M -S /tmp/$n.stats
# The last MiB of the user target: beyond the store if sectors were absolute.
"$DMU_IO" write "/dev/mapper/$n" $(( (8192 + 65536) * 512 - 1048576 )) 1048576 5 direct ||
	_fail "write at the end of the target"
"$DMU_IO" verify "/dev/mapper/$n" $(( (8192 + 65536) * 512 - 1048576 )) 1048576 5 direct ||
	_fail "verify at the end of the target"
"$DMU_IO" matrix "/dev/mapper/$n" $((8192 * 512)) $((65536 * 512)) || _fail "matrix"
_stop_daemon "$DAEMON_PID"
e=$(_stat /tmp/$n.stats errors)
[ "${e:-1}" = 0 ] || _fail "daemon answered $e requests with errors"
exit 0
