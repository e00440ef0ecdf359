#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# dmuser stats: per interval and per operation, the requests, bytes and
# errors the kernel counted (summed over the reports, they are what was
# done), rates that are those counts over the interval, queue depths that
# see fio's, the bios passed straight to a backing device; then its text,
# its bad usage, and its end when the target goes.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v jq >/dev/null || _skip "no jq to read --json"
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_stats_$$
_create_dev "$n" 32768
_start_daemon "$n" -r 16M -t 2

# _lines <file>: how many lines it has.
_lines() { wc -l < "$1" | tr -d ' '; }

# _wait_sum <file> <jq path> <at least> <pid>: until the reports in <file>
# sum <jq path> to <at least>, and one report more comes (the interval
# after is whole); 60 s at most.
_wait_sum() {
	_i=0
	while [ "$(jq -s "[.[]$2] | add // 0 | round" "$1")" -lt "$3" ]; do
		kill -0 "$4" 2>/dev/null || _fail "dmuser stats exited early: $(cat "$1")"
		_i=$((_i + 1))
		[ $_i -lt 600 ] || _fail "dmuser stats: $2 did not sum to $3 in 60 s: $(cat "$1")"
		sleep 0.1
	done
	_k=$(($(_lines "$1") + 1))
	while [ "$(_lines "$1")" -lt $_k ]; do
		_i=$((_i + 1))
		[ $_i -lt 600 ] || _fail "dmuser stats: no report after the I/O"
		sleep 0.1
	done
}

# Counted: 64 writes of 64 KiB and 256 reads of 4 KiB, all after the
# first sample. Nothing but this test writes the device; a probe may read
# it.
before=$("$DMUSER" info --json "$n" | jq '.stats.write.requests')
"$DMUSER" stats --json "$n" 1 > /tmp/$n.json &
spid=$!
DAEMONS="$DAEMONS $spid"
# The first report: the I/O below comes after the first sample.
_wait_sum /tmp/$n.json .elapsed 0 $spid
dd if=/dev/urandom of=/tmp/$n.data bs=64k count=64 2>/dev/null
dd if=/tmp/$n.data of="/dev/mapper/$n" bs=64k count=64 oflag=direct 2>/dev/null ||
	_fail "write the device"
dd if="/dev/mapper/$n" of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null ||
	_fail "read the device"
_wait_sum /tmp/$n.json .ops.read.requests 256 $spid
kill $spid
wait $spid 2>/dev/null
after=$("$DMUSER" info --json "$n" | jq '.stats.write.requests')
[ $((after - before)) = 64 ] || _fail "info counted $((after - before)) writes, not 64"
r=$(jq -s -c '[([.[].ops.write.requests] | add), ([.[].ops.write.bytes] | add), ([.[].ops.write.errors] | add)]' /tmp/$n.json)
[ "$r" = "[64,4194304,0]" ] || _fail "writes summed over the reports: $r"
r=$(jq -s '[.[].ops.read.bytes] | add' /tmp/$n.json)
[ "$r" -ge 1048576 ] || _fail "read bytes summed over the reports: $r"
# Each rate is its count over the interval the report measured.
r=$(jq -c '. as $o | select($o.elapsed <= 0 or $o.elapsed > 60 or
		 ([$o.ops[] | .requests_per_second * $o.elapsed - .requests
		   | fabs] | max) > 0.01 or
		 ([$o.ops[] | .mb_per_second * 1e6 * $o.elapsed - .bytes
		   | fabs] | max) > 1)' /tmp/$n.json)
[ -z "$r" ] || _fail "a rate is not its count over the interval: $r"
r=$(jq -s -c '[.[] | [.target, .daemon, .channels, .ops.flush.queue_depth,
		      .ops.write_zeroes.queue_depth, .passed_per_second]]
	      | unique' /tmp/$n.json)
[ "$r" = "[[\"$n\",\"attached\",2,null,null,null]]" ] ||
	_fail "target, daemon, channels, no queue for flush: $r"

# aqu-sz and await are the device's, as iostat has them: the block layer
# adds a request's time in flight when it completes (and counts the
# request then, or from 6.1 back when it starts). With the daemon stopped,
# 8 reads and 8 writes wait 3 s and more: over the reports around that,
# queue_depth x elapsed sums to >= 24 s (8 x 3 s) for each, and that over
# the requests answered is >= 3000 ms a request.
"$DMUSER" stats --json "$n" 1 > /tmp/$n.json &
spid=$!
DAEMONS="$DAEMONS $spid"
_wait_sum /tmp/$n.json .elapsed 0 $spid
kill -STOP "$DAEMON_PID"
fio --filename="/dev/mapper/$n" --direct=1 --bs=4k --ioengine=libaio \
    --iodepth=8 --number_ios=8 --size=8M \
    --name=r --rw=randread --offset=0 --name=w --rw=randwrite --offset=8M \
    > /tmp/$n.fio 2>&1 &
fpid=$!
DAEMONS="$DAEMONS $fpid"
# From when all 16 wait for the daemon.
i=0
while [ "$("$DMUSER" info --json "$n" | jq '.queued + .inflight')" -lt 16 ]; do
	i=$((i + 1)); [ $i -lt 300 ] || _fail "fio's 16 requests not queued in 30 s"
	sleep 0.1
done
sleep 3
kill -CONT "$DAEMON_PID"
wait $fpid || _fail "fio: $(cat /tmp/$n.fio)"
_wait_sum /tmp/$n.json .ops.write.requests 8 $spid
kill $spid
wait $spid 2>/dev/null
for op in read write; do
	r=$(jq -s -c "([.[] | .ops.$op.queue_depth * .elapsed] | add) as \$s |
		      ([.[].ops.$op.requests] | add) as \$n |
		      [\$s >= 24, \$n >= 8, \$s * 1000 / \$n >= 3000]" /tmp/$n.json)
	[ "$r" = "[true,true,true]" ] ||
		_fail "$op: aqu-sz of 8 requests held 3 s: $r ($(cat /tmp/$n.json))"
done

# For people: a line about the daemon, a header and a row per operation.
"$DMUSER" stats "$n" 1 1 > /tmp/$n.txt || _fail "dmuser stats 1 1"
[ "$(_lines /tmp/$n.txt)" = 9 ] || _fail "stats text: $(cat /tmp/$n.txt)"
head -1 /tmp/$n.txt | grep -Eq "^[0-9]{2}:[0-9]{2}:[0-9]{2}  $n: daemon attached, 2 channels, [0-9]+ queued, [0-9]+ in flight\$" ||
	_fail "stats text, first line: $(head -1 /tmp/$n.txt)"
sed -n 2p /tmp/$n.txt | grep -Eq '^operation +req/s +MB/s +err/s +aqu-sz +await$' ||
	_fail "stats text, header: $(sed -n 2p /tmp/$n.txt)"
for op in read write discard; do
	grep -Eq "^$op +[0-9]+\.[0-9] +[0-9]+\.[0-9]{2} +[0-9]+\.[0-9] +[0-9]+\.[0-9]{2} +[0-9]+\.[0-9]{2}\$" /tmp/$n.txt ||
		_fail "stats text, $op row: $(cat /tmp/$n.txt)"
done
for op in flush write_zeroes secure_erase; do
	grep -Eq "^$op +[0-9]+\.[0-9] +[0-9]+\.[0-9]{2} +[0-9]+\.[0-9] +- +-\$" /tmp/$n.txt ||
		_fail "stats text, $op row: $(cat /tmp/$n.txt)"
done

# Bad usage exits 2; a target that is not there exits 1 with its hint.
# _bad_usage <message> <argument>...: stats exits 2 and prints <message>.
_bad_usage() {
	_msg=$1
	shift
	"$DMUSER" stats "$n" "$@" >/dev/null 2>/tmp/$n.err
	[ $? = 2 ] || _fail "stats $n $* did not exit 2"
	grep -qF -- "$_msg" /tmp/$n.err || _fail "stats $n $*: $(cat /tmp/$n.err)"
}
_bad_usage "<interval>: '0' is below the minimum 1" 0
_bad_usage "<count>: '0' is below the minimum 1" 1 0
_bad_usage "unexpected argument '3'" 1 2 3
_bad_usage "<interval>: 'x' is not a number" x
"$DMUSER" stats dmu_no_such_$$ 1 1 >/dev/null 2>/tmp/$n.err
[ $? = 1 ] || _fail "stats on a missing target did not exit 1"
grep -qF "no target is named 'dmu_no_such_$$'" /tmp/$n.err ||
	_fail "stats on a missing target: $(cat /tmp/$n.err)"

# The target removed under it: stats says so and ends, with status 0.
"$DMUSER" stats "$n" 1 > /dev/null 2>/tmp/$n.err &
spid=$!
sleep 1.5
"$DMUSER" remove "$n" || _fail "dmuser remove"
_expect_exit_after_remove "$DAEMON_PID" dmuserd
i=0
while kill -0 $spid 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 50 ] || _fail "stats still runs 5 s after the target went"
	sleep 0.1
done
wait $spid || _fail "stats exited $? when the target went: $(cat /tmp/$n.err)"
[ "$(cat /tmp/$n.err)" = "dmuser: /dev/dm-user/$n: the target was removed" ] ||
	_fail "stats when the target went: $(cat /tmp/$n.err)"

# With a backing device and no daemon claiming anything, reads pass
# straight: 64 bios of 64 KiB, counted by passed_per_second.
ram=$(_ram_disk) || _skip "no RAM disk"
b=${n}_b
_create_dev "$b" 16384 4 backing "$ram" 0 passthrough
"$DMUSER" stats --json "$b" 1 > /tmp/$n.json &
spid=$!
DAEMONS="$DAEMONS $spid"
_wait_sum /tmp/$n.json .elapsed 0 $spid
dd if="/dev/mapper/$b" of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null ||
	_fail "read the backed device"
_wait_sum /tmp/$n.json '| .passed_per_second * .elapsed' 64 $spid
kill $spid
wait $spid 2>/dev/null
r=$(jq -s -c '[([.[].ops.read.requests] | add), (.[0] | has("passed_per_second"))]' /tmp/$n.json)
[ "$r" = "[0,true]" ] || _fail "passed reads counted as the daemon's: $r"
rm -f /tmp/$n.json /tmp/$n.txt /tmp/$n.err /tmp/$n.data /tmp/$n.fio
echo "# stats: counts, rates, queue depths, text, errors, removal, passed bios"
