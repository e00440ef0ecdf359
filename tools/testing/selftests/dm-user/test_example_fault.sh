#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# dmu-fault, the example fault-injection daemon, over a RAM disk holding
# random data: with no rule nothing is claimed; each rule claims its range
# alone and does exactly what it says there (an error on reads only, the
# first byte of each sector flipped on reads or on writes, a delay of at
# least its length) while the next block is untouched; a 50% rule fails
# about half of 200 writes; bad rules are refused with a reason. Then
# rules are added and deleted 40 times (claims and releases) while fio
# writes and verifies the whole device: no error, and the claims end
# empty.
. "$(dirname "$0")/test_common.sh"
_prep_test
FAULT=$TEST_DIR/dmu-fault
[ -x "$FAULT" ] || _fail "dmu-fault not built"
command -v fio >/dev/null || _skip "no fio"
origin=$(_ram_disk) || _skip "no RAM disk (brd or loop)"
sectors=32768
n=dmu_fault_$$
dev=/dev/mapper/$n
sock=/tmp/$n.sock
t=/tmp/$n
ctl() { "$FAULT" ctl "$sock" "$@"; }
# add <rule...>: RULE is the new rule's id (not in a subshell, so that
# _fail ends the test).
add() {
	ctl add "$@" >$t.add || { cat $t.add; _fail "add $*"; }
	RULE=$(sed -n 's/^ok rule //p' $t.add)
	[ -n "$RULE" ] || { cat $t.add; _fail "add $*: no rule id in the answer"; }
}
# uptime_cs: centiseconds since boot.
uptime_cs() { awk '{ split($1, a, "."); print a[1] * 100 + a[2] }' /proc/uptime; }

dd if=/dev/urandom of=$t.orig bs=1M count=16 2>/dev/null || _fail "make data"
_write_direct $t.orig "$origin" 0 || _fail "fill $origin"
dd if=/dev/urandom of=$t.p4k bs=4K count=1 2>/dev/null

_create_dev $n $sectors 3 backing "$origin" 0
_start_example dmu-fault $n --control "$sock" --seed 7 -t 2
[ "$(_status_value $n claims)" = 0 ] || _fail "claims $(_status_value $n claims) with no rule"
_read_direct "$dev" $t.read
cmp -s $t.read $t.orig || _fail "the device with no rule does not read as its backing device"

# error on reads of one 4 KiB block: its reads fail, its writes and the
# next block do not.
add error read 1M+4K
id_err=$RULE
[ "$(_status_value $n claims)" = 1 ] || _fail "claims $(_status_value $n claims) with one rule, 1 expected"
_read_direct "$dev" $t.r 1048576 4096 && _fail "a read of the error rule's range succeeded"
_read_direct "$dev" $t.r $((1048576 + 4096)) 4096 || _fail "a read next to the error rule failed"
dd if=$t.orig of=$t.want bs=4096 skip=257 count=1 2>/dev/null
cmp -s $t.r $t.want || _fail "the block next to the error rule reads wrong"
_write_direct $t.p4k "$dev" 1048576 || _fail "a write in a read-error range failed"
_read_direct "$origin" $t.r 1048576 4096
cmp -s $t.r $t.p4k || _fail "the write in the read-error range did not reach the backing device"
dd if=$t.p4k of=$t.orig bs=4096 seek=256 conv=notrunc 2>/dev/null

# corrupt on reads of 8 KiB at 2 MiB: one 16 KiB read from 4 KiB before
# it differs from the backing device in exactly the first byte of each of
# the rule's 16 sectors (bytes 4096 to 12287 of the read).
add corrupt read 2M+8K
dd if="$dev" of=$t.r bs=16384 skip=$((2097152 - 4096)) count=1 iflag=direct,skip_bytes \
   2>/dev/null || _fail "read over the corrupt rule"
dd if=$t.orig of=$t.want bs=4096 skip=511 count=4 2>/dev/null
cmp -l $t.r $t.want >$t.diff
[ "$(wc -l <$t.diff)" = 16 ] || { head $t.diff; _fail "$(wc -l <$t.diff) bytes corrupted, 16 expected"; }
awk '($1 - 1) % 512 != 0 || $1 <= 4096 || $1 > 12288 { bad = 1 } END { exit bad }' $t.diff ||
	{ head $t.diff; _fail "corrupted bytes outside the first byte of the rule's sectors"; }
_read_direct "$origin" $t.r $((2097152 - 4096)) 16384
cmp -s $t.r $t.want || _fail "a corrupting read changed the backing device"

# corrupt on writes of 4 KiB at 3 MiB: what lands there has 8 bytes flipped.
add corrupt write 3M+4K
_write_direct $t.p4k "$dev" 3145728 || _fail "write over the corrupt rule"
_read_direct "$origin" $t.r 3145728 4096
cmp -l $t.r $t.p4k >$t.diff
[ "$(wc -l <$t.diff)" = 8 ] || _fail "a corrupting write flipped $(wc -l <$t.diff) bytes, 8 expected"
awk '($1 - 1) % 512 != 0 { bad = 1 } END { exit bad }' $t.diff ||
	{ cat $t.diff; _fail "a corrupting write flipped bytes other than the sectors' first"; }

# delay of 500 ms on writes of 4 KiB at 4 MiB.
add delay write 4M+4K 500ms
t0=$(uptime_cs)
_write_direct $t.p4k "$dev" 4194304 || _fail "write over the delay rule"
t1=$(uptime_cs)
[ $((t1 - t0)) -ge 50 ] || _fail "a write under a 500 ms delay took $(((t1 - t0) * 10)) ms"
_log "delayed write: $(((t1 - t0) * 10)) ms"
[ "$(_status_value $n claims)" = 4 ] || _fail "claims $(_status_value $n claims) with four rules of disjoint ranges"

ctl list >$t.list || _fail "list"
grep -q "^rule $id_err error read 1048576+4096 100% hits [1-9]" $t.list ||
	{ cat $t.list; _fail "list does not show the error rule with its hits"; }
[ "$(grep -c '^claimed ' $t.list)" = 4 ] || { cat $t.list; _fail "list does not show 4 claimed ranges"; }

# Half of 200 writes fail under a 50% rule (binomial: 100 +- 7).
add error write all 50%
id_half=$RULE
[ "$(_status_value $n claims)" = 1 ] || _fail "a rule over all did not claim all of the device in one range"
i=0 failed=0
while [ $i -lt 200 ]; do
	dd if=$t.p4k of="$dev" bs=4K seek=$((2048 + i % 64)) oflag=direct conv=notrunc 2>/dev/null ||
		failed=$((failed + 1))
	i=$((i + 1))
done
{ [ $failed -ge 60 ] && [ $failed -le 140 ]; } || _fail "$failed of 200 writes failed under a 50% rule"
_log "50% rule: $failed of 200 writes failed"
ctl del "$id_half" >/dev/null || _fail "del $id_half"

# Bad rules and commands are refused, each with its reason.
bad() {
	_want=$1
	shift
	ctl "$@" >$t.bad && _fail "taken: $*"
	grep -q "^error: .*$_want" $t.bad || { cat $t.bad; _fail "no reason '$_want' for: $*"; }
}
# "all" operations with a range are those that have one.
add error all 6M+4K
ctl list | grep -q "^rule $RULE error all 6291456+4096 " || _fail "a ranged rule over all operations"
ctl del "$RULE" >/dev/null || _fail "del $RULE"
bad "unknown operation" add error frob 0+4K
bad "not whole blocks" add error read 1M+100
bad "not whole blocks" add error read 20M+4K
bad "flush has no range" add error flush 0+4K
bad "needs <n>ms" add delay read 0+4K
bad "read and write only" add corrupt discard 0+4K
bad "1 to 100" add error read 0+4K 150%
bad "unknown rule" add explode read 0+4K
bad "no rule 999" del 999
"$FAULT" serve --rule "error read 0+100" $n 2>$t.err && _fail "a bad --rule was taken"
grep -q "not whole blocks" $t.err || { cat $t.err; _fail "no reason for a bad --rule"; }

# Claims and releases under fio verify over the whole device.
ctl clear >/dev/null || _fail "clear"
[ "$(_status_value $n claims)" = 0 ] || _fail "claims left after clear"
start_fio() {
	fio --name=claims --filename="$dev" --direct=1 --rw=randwrite --bsrange=4k-64k \
	    --ioengine=libaio --iodepth=8 --size=16M --loops=20 \
	    --verify=crc32c --do_verify=1 --verify_fatal=1 \
	    --output-format=terse --terse-version=3 >$t.fio 2>&1 &
	FIO_PID=$!
}
r0=$(_status_value $n remapped)
e0=$(_rw_errors $n)
start_fio
i=0
kb=0
runs=1
# However fast the emulator runs fio against the rule changes, all 40 are
# made under I/O: a run that ends first is checked and another started.
while [ $i -lt 40 ]; do
	if ! kill -0 $FIO_PID 2>/dev/null; then
		_verify_fio_check $n "fio run $runs across claims and releases"
		kb=$((kb + FIO_KB))
		start_fio
		runs=$((runs + 1))
	fi
	off=$(((i * 7 % 60) * 256))K
	add delay read,write "$off"+512K 1ms
	id=$RULE
	if [ $((i % 5)) = 0 ]; then
		add delay all all 1ms 20%
		ctl del "$RULE" >/dev/null || _fail "del $RULE"
	fi
	ctl del "$id" >/dev/null || _fail "del $id"
	i=$((i + 1))
done
_verify_fio_check $n "fio run $runs across claims and releases"
kb=$((kb + FIO_KB))
r1=$(_status_value $n remapped)
[ "$r1" -gt "$r0" ] || _fail "no request of fio went through the daemon: the claims took no effect"
[ "$(_status_value $n claims)" = 0 ] || _fail "claims $(_status_value $n claims) left, 0 expected"
e=$(($(_rw_errors $n) - e0))
[ "$e" = 0 ] || _fail "the target counted $e failed reads or writes under fio"
_log "$i rule changes under fio verify ($runs runs): $kb KiB verified, $((r1 - r0)) requests through the daemon, 0 errors"
_stop_daemon "$DAEMON_PID"
exit 0
