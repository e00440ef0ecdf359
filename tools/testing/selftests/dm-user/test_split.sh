#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A daemon that splits every read() and write() of the channel into small
# odd-sized pieces still moves every byte to the right place.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_split_$$
_create_dev "$n" 16384
_start_daemon "$n" -r 8M -t 2 -s 509
"$DMU_IO" matrix "/dev/mapper/$n" 0 $((16384 * 512)) || _fail "matrix with split I/O"
_stop_daemon "$DAEMON_PID"
_start_daemon "$n" -r 8M -s 1
"$DMU_IO" write "/dev/mapper/$n" 4096 8192 3 direct || _fail "write, 1-byte pieces"
"$DMU_IO" verify "/dev/mapper/$n" 4096 8192 3 direct || _fail "verify, 1-byte pieces"
exit 0
