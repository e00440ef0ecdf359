#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# dmu-cbt, the example change-block tracking daemon, over a RAM disk: with
# every claim released and write notifications on, writes and write-zeroes
# pass straight through (the data lands on the backing device) while the
# bitmap records exactly the 64 KiB granules they touched, and reads
# record nothing; the bitmap survives a SIGKILL; a write made while no
# daemon runs waits for the next one and is recorded; dump-clear hands
# over a period and starts the next. Bad starts are refused with a reason.
. "$(dirname "$0")/test_common.sh"
_prep_test
CBT=$TEST_DIR/dmu-cbt
[ -x "$CBT" ] || _fail "dmu-cbt not built"
origin=$(_ram_disk) || _skip "no RAM disk (brd or loop)"
sectors=32768
n=dmu_cbt_$$
dev=/dev/mapper/$n
sock=/tmp/$n.sock
bm=/tmp/$n.bitmap
t=/tmp/$n
ctl() { "$CBT" ctl "$sock" "$@"; }
# expect_dump <what> [<extents-file>]: "dump" prints the extents of the
# file (none without one), then their count and bytes.
expect_dump() {
	: >$t.want
	[ $# -gt 1 ] && cat "$2" >$t.want
	echo "ok $(grep -c . $t.want) extents $(awk '{ s += $2 } END { print s + 0 }' $t.want) bytes" >>$t.want
	ctl dump >$t.dump || { cat $t.dump; _fail "dump ($1)"; }
	cmp -s $t.dump $t.want || {
		echo "# got:"; sed 's/^/#   /' $t.dump
		echo "# expected:"; sed 's/^/#   /' $t.want
		_fail "dump $1"
	}
}

dd if=/dev/urandom of=$t.orig bs=1M count=16 2>/dev/null || _fail "make data"
_write_direct $t.orig "$origin" 0 || _fail "fill $origin"
cp $t.orig $t.expect
dd if=/dev/urandom of=$t.p4k bs=4K count=1 2>/dev/null
dd if=/dev/urandom of=$t.p128k bs=128K count=1 2>/dev/null
rm -f "$bm"

# Refused: a target without a backing device has nothing to track.
_create_dev ${n}_nb 2048
"$CBT" serve --bitmap $t.nb ${n}_nb 2>$t.err && _fail "dmu-cbt served a target with no backing device"
grep -q "no backing device" $t.err || { cat $t.err; _fail "no reason for refusing a target without a backing device"; }

# All claimed by the table; the daemon releases it and turns notifications
# on. notify_writes in the table keeps writes waiting while no daemon runs.
_create_dev $n $sectors 4 backing "$origin" 0 notify_writes
_start_example dmu-cbt $n --bitmap "$bm" --granularity 64K --control "$sock" -t 2
[ "$(_status_value $n claims)" = 0 ] || _fail "claims $(_status_value $n claims) under dmu-cbt, 0 expected"
expect_dump "of a fresh bitmap"

# A granule, a write inside one granule, one across three granules, and
# write-zeroes over two.
_write_direct $t.p4k "$dev" 0 || _fail "write 4 KiB at 0"
_patch $t.expect 0 $t.p4k
_write_direct $t.p4k "$dev" $((1048576 + 61440)) || _fail "write 4 KiB at 1 MiB + 60 KiB"
_patch $t.expect $((1048576 + 61440)) $t.p4k
_write_direct $t.p128k "$dev" $((5242880 + 32768)) || _fail "write 128 KiB at 5 MiB + 32 KiB"
_patch $t.expect $((5242880 + 32768)) $t.p128k
# BLKZEROOUT: write-zeroes where the stack has it, else written zeroes.
"$DMU_IO" zeroout "$dev" $((8388608 + 4096)) 126976 >/dev/null || _fail "zeroout 124 KiB at 8 MiB + 4 KiB"
dd if=/dev/zero of=$t.expect bs=4096 seek=$(((8388608 + 4096) / 4096)) count=31 \
   conv=notrunc 2>/dev/null
_read_direct "$dev" $t.read
cmp -s $t.read $t.expect || _fail "the device does not hold what was written"
_read_direct "$origin" $t.oread
cmp -s $t.oread $t.expect || _fail "the writes did not pass through to the backing device"
{
	echo "0 65536"
	echo "1048576 65536"
	echo "5242880 196608"
	echo "8388608 131072"
} >$t.ext
expect_dump "after the writes" $t.ext
nf=$(_status_value $n notified)
[ "${nf:-0}" -ge 3 ] || _fail "notified ${nf:-none}: the writes were not notified"
p=$(_status_value $n passed)
[ "${p:-0}" -gt 0 ] || _fail "nothing passed straight to the backing device"
_log "$nf notifications, $p requests passed straight through"

# Reads are not changes.
_read_direct "$dev" $t.read
expect_dump "after reads" $t.ext

# SIGKILL: the bitmap is kept. A write while no daemon runs waits for the
# next one, which records it.
_kill_daemon
dd if=$t.p4k of="$dev" bs=4K seek=$((12582912 / 4096)) oflag=direct conv=notrunc 2>/dev/null &
dd_pid=$!
sleep 1
kill -0 $dd_pid 2>/dev/null || _fail "a write went by while no daemon tracked it"
_start_example dmu-cbt $n --bitmap "$bm" --control "$sock" -t 2
wait $dd_pid || _fail "the write held for the daemon failed"
_read_direct "$origin" $t.r 12582912 4096
cmp -s $t.r $t.p4k || _fail "the write held for the daemon did not reach the backing device"
echo "12582912 65536" >>$t.ext
expect_dump "after a SIGKILL and a write held for the next daemon" $t.ext

# dump-clear hands the period over; the next starts empty.
ctl dump-clear >$t.dc || _fail "dump-clear"
cmp -s $t.dc $t.want || { cat $t.dc; _fail "dump-clear did not list the period"; }
expect_dump "after dump-clear"
_write_direct $t.p4k "$dev" $((2097152 + 65536)) || _fail "write after dump-clear"
echo "2162688 65536" >$t.ext
expect_dump "of the new period" $t.ext
ctl clear >/dev/null || _fail "clear"
expect_dump "after clear"

# Bad control commands are refused with a reason.
ctl frobnicate >$t.bad && _fail "an unknown command was taken"
grep -q "^error: unknown command" $t.bad || { cat $t.bad; _fail "no reason for an unknown command"; }
ctl dump extra >$t.bad && _fail "dump with an argument was taken"
grep -q "^error:" $t.bad || _fail "no error line for dump with an argument"
_stop_daemon "$DAEMON_PID"
exit 0
