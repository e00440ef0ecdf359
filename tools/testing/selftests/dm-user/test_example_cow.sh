#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# dmu-cow, the example copy-on-write snapshot daemon, over a RAM disk
# origin holding random data: reads of chunks never written go straight to
# the origin (the daemon claims their writes alone; with --remap-reads they
# come to it and go there by remap, no data through the daemon); reads of
# written chunks come to the daemon from the first write on; whole-chunk, part-chunk
# and chunk-straddling writes land in the delta and never on the origin;
# a daemon killed with SIGKILL and started again finds every one; a merge
# run while fio writes and verifies makes the origin equal to the
# snapshot byte for byte and releases every claim, after which I/O goes
# straight to the origin, also across a restart. Bad starts are refused
# with a reason.
. "$(dirname "$0")/test_common.sh"
_prep_test
COW=$TEST_DIR/dmu-cow
[ -x "$COW" ] || _fail "dmu-cow not built"
command -v fio >/dev/null || _skip "no fio"
origin=$(_ram_disk) || _skip "no RAM disk (brd or loop)"
sectors=$(cat "/sys/class/block/${origin#/dev/}/size")
[ "$sectors" -ge 32768 ] || _skip "RAM disk of $sectors sectors, 16 MiB needed"
sectors=32768
bytes=$((sectors * 512))
n=dmu_cow_$$
dev=/dev/mapper/$n
sock=/tmp/$n.sock
delta=/tmp/$n.delta
t=/tmp/$n
ctl() { "$COW" ctl "$sock" "$@"; }
# _cow_status <key>: a line of "status"
cow_status() { ctl status | awk -v k="$1" '$1 == k { print $2 }'; }

dd if=/dev/urandom of=$t.orig bs=1M count=16 2>/dev/null || _fail "make the origin's data"
_write_direct $t.orig "$origin" 0 || _fail "fill $origin"
cp $t.orig $t.expect
dd if=/dev/urandom of=$t.p64k bs=64K count=1 2>/dev/null
dd if=/dev/urandom of=$t.p512 bs=512 count=1 2>/dev/null
dd if=/dev/urandom of=$t.p3k bs=3K count=1 2>/dev/null
rm -f "$delta"

# Refused: a target without a backing device has no origin.
_create_dev ${n}_nb 2048
"$COW" serve --delta $t.nb ${n}_nb 2>$t.err && _fail "dmu-cow served a target with no backing device"
grep -q "backing device" $t.err || { cat $t.err; _fail "no reason for refusing a target without a backing device"; }

_create_dev $n $sectors 3 backing "$origin" 0
_start_example dmu-cow $n --delta "$delta" --control "$sock" -t 2

# 1. Everything reads as the origin, straight from it: one range, the
# whole device, claimed for writes alone.
p0=$(_status_value $n passed)
_read_direct "$dev" $t.read || _fail "read $dev"
cmp -s $t.read $t.orig || _fail "the fresh snapshot does not read as its origin"
p1=$(_status_value $n passed)
r=$(_status_value $n remapped)
[ "$p1" -gt "$p0" ] || _fail "no read went straight to the origin"
[ "${r:-0}" = 0 ] || _fail "$r reads came to the daemon and were remapped"
[ "$(_status_value $n claims)" = 1 ] || _fail "claims $(_status_value $n claims), 1 expected"
[ "$(cow_status in_delta)" = 0 ] || _fail "reads put chunks in the delta"
_log "16 MiB read as the origin, $((p1 - p0)) requests passed straight"

# 2. Writes: 16 whole chunks at 1 MiB, a sector inside chunk 512 (copied
# up), and 3 KiB across the boundary of chunks 768 and 769.
_write_direct $t.p64k "$dev" 1048576 || _fail "write 64 KiB at 1 MiB"
_patch $t.expect 1048576 $t.p64k
_write_direct $t.p512 "$dev" $((4099 * 512)) || _fail "write a sector at 4099"
_patch $t.expect $((4099 * 512)) $t.p512
_write_direct $t.p3k "$dev" $((3145728 + 2560)) || _fail "write 3 KiB at 3 MiB + 2.5 KiB"
_patch $t.expect $((3145728 + 2560)) $t.p3k
_read_direct "$dev" $t.read || _fail "read $dev"
cmp -s $t.read $t.expect || _fail "the snapshot does not hold what was written over the origin"
_read_direct "$origin" $t.oread || _fail "read $origin"
cmp -s $t.oread $t.orig || _fail "a write to the snapshot reached the origin"
c=$(cow_status in_delta)
[ "$c" = 19 ] || _fail "$c chunks in the delta, 16 + 1 + 2 expected"
# Their reads claimed too: 3 runs of both between 4 of writes alone.
[ "$(_status_value $n claims)" = 7 ] || _fail "claims $(_status_value $n claims) after the writes, 7 expected"
[ "$(_status_value $n remapped)" = 0 ] || _fail "reads were remapped after the writes"

# 3. SIGKILL and a new daemon on the same delta: nothing lost.
_kill_daemon
_start_example dmu-cow $n --delta "$delta" --control "$sock" -t 2
c=$(cow_status in_delta)
[ "$c" = 19 ] || _fail "$c chunks in the delta after a restart, 19 expected"
_read_direct "$dev" $t.read || _fail "read $dev after the restart"
cmp -s $t.read $t.expect || _fail "the snapshot lost data across a SIGKILL and restart"
[ "$(_status_value $n claims)" = 7 ] || _fail "claims $(_status_value $n claims) after a restart, 7 expected"

# --remap-reads: every read comes to the daemon, and those of chunks never
# written go to the origin by remap answers.
_stop_daemon "$DAEMON_PID"
_start_example dmu-cow $n --delta "$delta" --control "$sock" -t 2 --remap-reads
[ "$(_status_value $n claims)" = 1 ] || _fail "claims $(_status_value $n claims) with --remap-reads, 1 expected"
_read_direct "$dev" $t.read || _fail "read $dev with --remap-reads"
cmp -s $t.read $t.expect || _fail "the snapshot reads wrong with --remap-reads"
r=$(_status_value $n remapped)
[ "${r:-0}" -gt 0 ] || _fail "no read was remapped with --remap-reads"
_stop_daemon "$DAEMON_PID"
_start_example dmu-cow $n --delta "$delta" --control "$sock" -t 2
[ "$(_status_value $n claims)" = 7 ] || _fail "claims $(_status_value $n claims) after --remap-reads, 7 expected"

# A delta refuses a target of another size, and a chunk size not its own.
_create_dev ${n}_small 16384 3 backing "$origin" 0
"$COW" serve --delta "$delta" ${n}_small 2>$t.err &&
	_fail "dmu-cow took a delta of 16 MiB for an 8 MiB target"
grep -q "snapshot of $bytes bytes" $t.err || { cat $t.err; _fail "no reason for refusing the delta"; }
"$COW" serve --delta "$delta" --chunk 64K $n 2>$t.err &&
	_fail "dmu-cow took a delta of 4 KiB chunks with --chunk 64K"
grep -q "chunks of 4096 bytes" $t.err || { cat $t.err; _fail "no reason for refusing the chunk size"; }

# 4. Merge while fio writes and verifies the second half.
fio --name=merge --filename="$dev" --direct=1 --rw=randwrite --bsrange=4k-64k \
    --ioengine=libaio --iodepth=8 --offset=8M --size=8M --loops=40 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output-format=terse --terse-version=3 >$t.fio 2>&1 &
FIO_PID=$!
sleep 2
kill -0 $FIO_PID 2>/dev/null || { cat $t.fio; _fail "fio ended before the merge"; }
ctl merge >$t.merge || { cat $t.merge; _fail "merge"; }
# fio's later loops then write and verify the origin, through no daemon.
kill -0 $FIO_PID 2>/dev/null || _fail "fio ended before the merge did: nothing checked the merged data"
grep -q "^ok merged" $t.merge || { cat $t.merge; _fail "merge did not say it was done"; }
_verify_fio_check $n "fio across the merge"
[ "$(cow_status state)" = merged ] || _fail "state $(cow_status state) after the merge"
[ "$(cow_status in_delta)" = 0 ] || _fail "chunks left in the delta after the merge"
merged=$(cow_status merged)
[ "$merged" -ge 19 ] || _fail "only $merged chunks merged"
[ "$(_status_value $n claims)" = 0 ] || _fail "claims $(_status_value $n claims) after the merge, 0 expected"
_read_direct "$dev" $t.read || _fail "read $dev after the merge"
_read_direct "$origin" $t.oread || _fail "read $origin after the merge"
cmp $t.read $t.oread || _fail "the origin is not the snapshot after the merge"
cmp -s -n 8388608 $t.oread $t.expect ||
	_fail "the first 8 MiB of the origin are not what was written to the snapshot"
_log "merged $merged chunks under fio; fio verified $FIO_KB KiB with 0 errors; origin == snapshot"

# 5. Merged: I/O goes straight to the origin, also after a restart.
p0=$(_status_value $n passed)
_write_direct $t.p64k "$dev" 0 || _fail "write after the merge"
p1=$(_status_value $n passed)
[ "$p1" -gt "$p0" ] || _fail "a write after the merge did not go straight to the origin"
_read_direct "$origin" $t.oread 0 65536
cmp -s $t.oread $t.p64k || _fail "a write after the merge is not on the origin"
_kill_daemon
dmsetup message $n 0 claim range_start=0 range_len=$sectors >/dev/null || _fail "claim everything again"
_start_example dmu-cow $n --delta "$delta" --control "$sock"
[ "$(_status_value $n claims)" = 0 ] || _fail "a daemon started on a merged delta left claims"
[ "$(cow_status state)" = merged ] || _fail "state $(cow_status state) after a restart"
_stop_daemon "$DAEMON_PID"

# 6. A merge cut by SIGKILL goes on when the daemon starts again: a second
# snapshot of the origin, 4 MiB written (1024 chunks), merged in batches
# of 64 with a pause, killed in the middle.
m=${n}_m
_read_direct "$origin" $t.expect
dd if=/dev/urandom of=$t.p4m bs=1M count=4 2>/dev/null
_patch $t.expect 4194304 $t.p4m
rm -f $delta.m
_create_dev $m $sectors 3 backing "$origin" 0
_start_example dmu-cow $m --delta $delta.m --control $sock.m --merge-pause 100
_write_direct $t.p4m /dev/mapper/$m 4194304 || _fail "write 4 MiB to the second snapshot"
"$COW" ctl $sock.m merge >/dev/null 2>&1 &
ctl_pid=$!
i=0
while k=$("$COW" ctl $sock.m status | awk '$1 == "merged" { print $2 }') &&
      [ "${k:-0}" -lt 128 ]; do
	i=$((i + 1))
	[ $i -lt 200 ] || _fail "the merge did not get going in 20 s"
	sleep 0.1
done
_kill_daemon
wait $ctl_pid
_read_direct "$origin" $t.oread
cmp -s $t.oread $t.expect && _fail "the merge was done before the kill: nothing to resume"
_start_example dmu-cow $m --delta $delta.m --control $sock.m
i=0
while [ "$("$COW" ctl $sock.m status | awk '$1 == "state" { print $2 }')" != merged ]; do
	i=$((i + 1))
	[ $i -lt 300 ] || _fail "the resumed merge did not end in 30 s"
	sleep 0.1
done
_read_direct "$origin" $t.oread
cmp -s $t.oread $t.expect || _fail "the origin after a resumed merge is not the snapshot"
[ "$(_status_value $m claims)" = 0 ] || _fail "claims left after the resumed merge"
_log "a merge killed after about $k of 1024 chunks went on at the next start and ended"

_stop_daemon "$DAEMON_PID"

# 7. More runs of written chunks than max_claims (3) allows: the reads of
# every chunk are claimed again, and those never written come as remaps.
s=${n}_s
rm -f $delta.s
_read_direct "$origin" $t.expect
_create_dev $s $sectors 5 backing "$origin" 0 max_claims 3
_start_example dmu-cow $s --delta $delta.s --control $sock.s
[ "$(_status_value $s claims)" = 1 ] || _fail "claims $(_status_value $s claims) of a fresh snapshot, 1 expected"
_write_direct $t.p64k /dev/mapper/$s 1048576 || _fail "write at 1 MiB"
_patch $t.expect 1048576 $t.p64k
[ "$(_status_value $s claims)" = 3 ] || _fail "claims $(_status_value $s claims) after one run, 3 expected"
_write_direct $t.p64k /dev/mapper/$s 3145728 || _fail "write at 3 MiB past max_claims"
_patch $t.expect 3145728 $t.p64k
[ "$(_status_value $s claims)" = 1 ] || _fail "claims $(_status_value $s claims) past max_claims, 1 expected"
_read_direct /dev/mapper/$s $t.read || _fail "read the snapshot past max_claims"
cmp -s $t.read $t.expect || _fail "the snapshot reads wrong past max_claims"
r=$(_status_value $s remapped)
[ "${r:-0}" -gt 0 ] || _fail "no read remapped past max_claims"
_log "past max_claims: every read claimed, $r remapped, data as written"
_stop_daemon "$DAEMON_PID"
exit 0
