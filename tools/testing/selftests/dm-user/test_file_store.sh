#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The reference daemon's file store on each transport. A ring answers reads
# from a mapping of the file, the RFC protocol with pread(): both must see
# what writes left, through the device or behind the daemon's back, and a
# read the file cannot give (cut short under the daemon) must fail alone,
# with EIO, the channel serving on.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_fstore_$$
dev=/dev/mapper/$n
img=/tmp/$n.img
MiB=1048576

for t in ring rw; do
	rm -f "$img"
	truncate -s 8M "$img" || _fail "truncate $img"
	_create_dev "$n" 16384
	_start_daemon "$n" -f "$img" --transport $t 2>"/tmp/$n.err"
	grep -q "reads use pread" "/tmp/$n.err" &&
		_fail "$t: the file was not mapped: $(cat "/tmp/$n.err")"
	"$DMU_IO" write "$dev" 0 $((8 * MiB)) 7 direct || _fail "$t: write"
	"$DMU_IO" verify "$dev" 0 $((8 * MiB)) 7 direct ||
		_fail "$t: the device does not read back what was written"
	"$DMU_IO" verify "$img" 0 $((8 * MiB)) 7 ||
		_fail "$t: the file does not hold what was written"
	# Changed behind the daemon: the page cache it reads from is the file's.
	"$DMU_IO" write "$img" "$MiB" 65536 9 || _fail "$t: write to $img"
	"$DMU_IO" verify "$dev" "$MiB" 65536 9 direct ||
		_fail "$t: a change to the file not seen through the device"

	truncate -s 4M "$img" || _fail "truncate $img to 4M"
	if "$DMU_IO" verify "$dev" $((6 * MiB)) 4096 7 direct >/dev/null; then
		_fail "$t: a read past the file's end succeeded"
	fi
	[ "$(_rw_errors "$n")" -ge 1 ] || _fail "$t: the failed read not counted"
	# Only an answer from the mapping makes the kernel fail the read
	# itself (an address it cannot read): that shows the ring used it,
	# and that the RFC protocol did not.
	bad=$("$DMUSER" info --json "$n" | jq .bad_answers)
	if [ $t = ring ]; then
		[ "${bad:-0}" -ge 1 ] || _fail "ring: the read was not answered from the mapping"
	else
		[ "$bad" = 0 ] || _fail "rw: $bad answers refused"
	fi
	"$DMU_IO" verify "$dev" $((2 * MiB)) 65536 7 direct ||
		_fail "$t: a read after the failed one"
	kill -0 "$DAEMON_PID" 2>/dev/null || _fail "$t: the daemon died"
	_log "$t: reads answered, from the changed file too; past its end EIO"
	_stop_daemon "$DAEMON_PID"
	dmsetup remove "$n" || _fail "dmsetup remove $n"
	# shellcheck disable=SC2034 # read by test_common.sh's cleanup
	DEVS=""
done
rm -f "$img"
exit 0
