#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The dmuser tool: create, list, info, set, serve and remove a device, with
# the numbers it prints checked against what the kernel says elsewhere.
. "$(dirname "$0")/test_common.sh"
_prep_test
DMUSER=$TEST_DIR/dmuser
[ -x "$DMUSER" ] || _fail "dmuser not installed in $TEST_DIR"

n=dmu_cli_$$
"$DMUSER" create "$n" --size 16M --features "max_queued 99" || _fail "dmuser create"
DEVS=$n
[ -c "/dev/dm-user/$n" ] || _fail "no /dev/dm-user/$n after create"
[ "$(dmsetup table "$n")" = "0 32768 user 0 32768 $n 2 max_queued 99" ] ||
	_fail "table is '$(dmsetup table "$n")'"
command -v jq >/dev/null || _skip "no jq to read --json"

# list: columns under a header, sizes in units; --json the same numbers.
"$DMUSER" list > /tmp/$n.list || _fail "dmuser list"
head -n 1 /tmp/$n.list | grep -Eq '^DEVICE +TARGET +START +SIZE +BLOCK +DAEMON +CHANNELS +QUEUED$' ||
	_fail "list header: $(head -n 1 /tmp/$n.list)"
grep -Eq "^$n +$n +0 +16 MiB +512 +waiting +0 +0\$" /tmp/$n.list ||
	_fail "list: $(cat /tmp/$n.list)"
"$DMUSER" list --json > /tmp/$n.json || _fail "dmuser list --json"
r=$(jq -c ".[] | select(.target == \"$n\") | [.device, .start, .length, .block_size, .daemon, .channels, .queued]" /tmp/$n.json)
[ "$r" = "[\"$n\",0,32768,512,\"waiting\",0,0]" ] || _fail "list --json: $r"

# info: a block for people, --json for scripts, the same numbers.
"$DMUSER" info "$n" > /tmp/$n.info || _fail "dmuser info"
for line in "^$n: user target, control interface version [0-9]+\$" \
	"^  size +16 MiB \(32768 sectors\), block size 512 B, at most 1 MiB a request\$" \
	"^  operations +read write flush discard secure_erase write_zeroes\$" \
	"^  daemon +waiting, 0 channels\$" \
	"^  requests +0 queued, 0 held back by max_queued, 0 in flight\$" \
	"^  settings +max_queued 99, no_daemon_timeout 30 s \(default\), request_timeout off \(default\)\$" \
	"^ +requests +bytes +errors\$" \
	"^  read +0 +0 B +0\$"; do
	grep -Eq "$line" /tmp/$n.info || _fail "info lacks /$line/: $(cat /tmp/$n.info)"
done
grep -q "backing" /tmp/$n.info && _fail "info names a backing device: $(cat /tmp/$n.info)"
"$DMUSER" info --json "$n" > /tmp/$n.json || _fail "dmuser info --json"
r=$(jq -c '[.name, .size, .block_size, .max_io, .queued, .daemon, .remapped, .channels, .settings.max_queued, .settings.no_daemon_timeout, .stats.read.requests, has("backing")]' /tmp/$n.json)
[ "$r" = "[\"$n\",32768,512,1048576,0,\"waiting\",0,0,99,30,0,false]" ] ||
	_fail "info --json: $r"
r=$(jq -c .ops /tmp/$n.json)
[ "$r" = '["read","write","flush","discard","secure_erase","write_zeroes"]' ] ||
	_fail "info --json ops: $r"

# A target over a backing device (this one) says which, as major:minor.
"$DMUSER" create "${n}_up" --size 8M --features "backing /dev/mapper/$n 2048" ||
	_fail "dmuser create with a backing device"
DEVS="${n}_up $n"
mm=$(dmsetup info -c --noheadings -o major,minor "$n" | tr -d ' ')
"$DMUSER" info --json "${n}_up" > /tmp/$n.json || _fail "dmuser info --json ${n}_up"
r=$(jq -c '[.backing, .backing_offset, .remapped, .claim_ranges, .map_ranges, .passed]' /tmp/$n.json)
[ "$r" = "[\"$mm\",2048,0,1,0,0]" ] || _fail "info --json ${n}_up: $r"
"$DMUSER" info "${n}_up" > /tmp/$n.info || _fail "dmuser info ${n}_up"
grep -Eq "^  backing +$mm from sector 2048, 1 claimed range, 0 mapped, 0 passed straight, 0 notified\$" /tmp/$n.info ||
	_fail "info ${n}_up: $(cat /tmp/$n.info)"
grep -Eq "notify_writes 0 \(default\)" /tmp/$n.info ||
	_fail "info ${n}_up lacks notify_writes: $(cat /tmp/$n.info)"
"$DMUSER" remove "${n}_up" || _fail "dmuser remove ${n}_up"
DEVS=$n

"$DMUSER" set "$n" max_queued=7 no_daemon_timeout=forever request_timeout=9 ||
	_fail "dmuser set"
[ "$(dmsetup message "$n" 0 get_params)" = "max_queued=7 no_daemon_timeout=forever request_timeout=9" ] ||
	_fail "set did not apply: $(dmsetup message "$n" 0 get_params)"
if "$DMUSER" set "$n" max_queued=0 2>/tmp/$n.err; then
	_fail "set accepted max_queued=0"
fi
grep -q "max_queued" /tmp/$n.err || _fail "refusal does not name the parameter: $(cat /tmp/$n.err)"
# All or nothing: the good values beside a bad one are not applied.
if "$DMUSER" set "$n" max_queued=8 request_timeout=3000000 2>/tmp/$n.err; then
	_fail "set accepted request_timeout=3000000"
fi
grep -q "request_timeout" /tmp/$n.err || _fail "refusal does not name request_timeout: $(cat /tmp/$n.err)"
[ "$(dmsetup message "$n" 0 get_params)" = "max_queued=7 no_daemon_timeout=forever request_timeout=9" ] ||
	_fail "a refused set changed something: $(dmsetup message "$n" 0 get_params)"
"$DMUSER" set "$n" request_timeout=0 || _fail "dmuser set request_timeout=0"

"$DMUSER" serve -r 16M -t 2 -B -p /tmp/$n.pid "$n" &
pid=$!
DAEMONS=$pid
i=0
while [ ! -s /tmp/$n.pid ]; do
	i=$((i + 1)); [ $i -lt 100 ] || _fail "dmuser serve did not start"; sleep 0.1
done
"$DMU_IO" matrix "/dev/mapper/$n" 0 16777216 || _fail "I/O through dmuser serve"
"$DMUSER" info "$n" > /tmp/$n.info
grep -Eq "^  daemon +attached, 2 channels\$" /tmp/$n.info ||
	_fail "info: not the daemon's 2 channels: $(cat /tmp/$n.info)"
# The matrix's reads and writes, counted and shown in units.
"$DMUSER" info --json "$n" > /tmp/$n.json
r=$(jq -r '.stats.write.bytes' /tmp/$n.json)
[ "${r:-0}" -gt 0 ] || _fail "info --json: no bytes written: $r"
grep -Eq "^  write +[1-9][0-9]* +[0-9.]+ (KiB|MiB|GiB) +0\$" /tmp/$n.info ||
	_fail "info: write row: $(cat /tmp/$n.info)"
r=$("$DMUSER" list --json | jq -c ".[] | select(.target == \"$n\") | [.daemon, .channels]")
[ "$r" = '["attached",2]' ] || _fail "list --json with the daemon: $r"

# --version names the program and a version, alone; with more, bad usage.
v=$("$DMUSER" --version) || _fail "dmuser --version failed"
echo "$v" | grep -Eqx 'dmuser [0-9]+\.[0-9]+\.[0-9]+' || _fail "dmuser --version printed '$v'"
v=$("$DMUSERD" -V) || _fail "dmuserd -V failed"
echo "$v" | grep -Eqx 'dmuserd [0-9]+\.[0-9]+\.[0-9]+' || _fail "dmuserd -V printed '$v'"
"$DMUSER" --version extra >/dev/null 2>&1
[ $? = 2 ] || _fail "dmuser --version with an argument did not exit 2"

# Bad usage exits 2 with a message; a missing device exits 1.
"$DMUSER" frobnicate >/dev/null 2>&1
[ $? = 2 ] || _fail "unknown subcommand did not exit 2"
"$DMUSER" info dmu_no_such_$$ >/dev/null 2>/tmp/$n.err
[ $? = 1 ] || _fail "info on a missing device did not exit 1"
# One line: what failed, why, and what to do about it.
[ "$(cat /tmp/$n.err)" = "dmuser: open /dev/dm-user/dmu_no_such_$$: No such file or directory; no target is named 'dmu_no_such_$$' ('dmuser list' shows those there are)" ] ||
	_fail "info on a missing device: $(cat /tmp/$n.err)"
"$DMUSER" serve -r 1M -n 1M "$n" >/dev/null 2>/tmp/$n.err
[ $? = 2 ] || _fail "serve with two stores did not exit 2"
grep -q "exactly one of --ram, --file, --null, --remap and --nbd" /tmp/$n.err ||
	_fail "serve with two stores: $(cat /tmp/$n.err)"
for bad in "--transport pipe:--transport must be auto, ring or rw" \
	   "--ring-depth 3:--ring-depth must be a power of two" \
	   "--ring-depth 2048:--ring-depth" \
	   "--ring-depth 4 --transport rw:--ring-depth applies to the ring" \
	   "--ring-data 512K:--ring-data" \
	   "--ring-data 1026K:--ring-data must be a multiple of 4K" \
	   "--ring-data 2M --transport rw:--ring-data applies to the ring" \
	   "--busy-poll 1001:--busy-poll" \
	   "--busy-poll 10 --transport rw:--busy-poll applies to the ring" \
	   "--batch 2 --transport ring:--batch applies to read() and write(), not --transport ring" \
	   "--read-batch --transport ring:--read-batch applies to read() and write()" \
	   "--split 4096 --transport ring:--split applies to read() and write()" \
	   "--busy-poll 10 --read-batch:--busy-poll applies to the ring, which --read-batch turns off" \
	   "--ring-depth 16 --write-batch:--ring-depth applies to the ring, which --write-batch" \
	   "--ring-data 2M --batch 4:--ring-data applies to the ring, which --batch"; do
	# shellcheck disable=SC2086 # options, as words
	"$DMUSER" serve -r 1M ${bad%%:*} "$n" >/dev/null 2>/tmp/$n.err
	[ $? = 2 ] || _fail "serve ${bad%%:*} did not exit 2"
	grep -q -- "${bad#*:}" /tmp/$n.err ||
		_fail "serve ${bad%%:*}: $(cat /tmp/$n.err)"
done

"$DMUSER" remove "$n" || _fail "dmuser remove"
_expect_exit_after_remove $pid "dmuser serve"
dmsetup info "$n" >/dev/null 2>&1 && _fail "device still present"

# The null store: writes succeed and are dropped, reads return zeroes.
"$DMUSER" create "$n" --size 1M || _fail "dmuser create (null store)"
rm -f /tmp/$n.pid
"$DMUSER" serve -n 1M -S /tmp/$n.stats -p /tmp/$n.pid "$n" &
pid=$!
DAEMONS=$pid
i=0
while [ ! -s /tmp/$n.pid ]; do
	i=$((i + 1)); [ $i -lt 100 ] || _fail "dmuser serve -n did not start"; sleep 0.1
done
head -c 65536 /dev/urandom > /tmp/$n.rand
dd if=/tmp/$n.rand of="/dev/mapper/$n" bs=64k count=1 oflag=direct 2>/dev/null ||
	_fail "write to the null store"
head -c 65536 /dev/zero > /tmp/$n.zero
dd if="/dev/mapper/$n" of=/tmp/$n.back bs=64k count=1 iflag=direct 2>/dev/null ||
	_fail "read from the null store"
cmp -s /tmp/$n.back /tmp/$n.zero || _fail "the null store read back non-zero data"
"$DMUSER" remove "$n" || _fail "dmuser remove (null store)"
_expect_exit_after_remove $pid "dmuser serve -n"
# Something else (a probe) may read the device too, but nothing writes it.
[ "$(_stat /tmp/$n.stats writes)" = 1 ] &&
	[ "$(_stat /tmp/$n.stats bytes_read)" -ge 65536 ] ||
	_fail "null store counters: $(cat /tmp/$n.stats)"
rm -f /tmp/$n.rand /tmp/$n.zero /tmp/$n.back /tmp/$n.stats

# Errors with their hints: a device name taken, a target name taken, a
# device that is not there, and (last) the module not loaded.
"$DMUSER" create "$n" --size 1M || _fail "dmuser create (hints)"
DEVS=$n
# _expect_error <text> <command...>: exits 1, stderr one line equal to <text>.
_expect_error() {
	_want=$1
	shift
	"$@" >/dev/null 2>/tmp/$n.err
	_st=$?
	[ $_st = 1 ] || _fail "$*: exit status $_st, not 1"
	[ "$(cat /tmp/$n.err)" = "$_want" ] ||
		_fail "$*: '$(cat /tmp/$n.err)', not '$_want'"
}
_expect_error "dmuser: create $n: File exists; a device named '$n' exists: 'dmuser remove $n' first, or --if-missing to keep it" \
	"$DMUSER" create "$n" --size 1M
# libdevmapper gives no errno for a table it could not load (EIO): the
# hint comes from what is there.
"$DMUSER" create "${n}_b" --size 1M --name "$n" >/dev/null 2>/tmp/$n.err &&
	_fail "create with a target name in use succeeded"
[ "$(wc -l < /tmp/$n.err)" = 1 ] && grep -q "^dmuser: create ${n}_b: " /tmp/$n.err &&
	grep -qF "; another device's user target is named '$n' ('dmuser list'): choose another --name" /tmp/$n.err ||
	_fail "create with a target name in use: $(cat /tmp/$n.err)"
dmsetup info "${n}_b" >/dev/null 2>&1 && _fail "a refused create left ${n}_b"
_expect_error "dmuser: remove dmu_no_such_$$: No such device or address; no device is named 'dmu_no_such_$$' ('dmuser list' shows those with user targets)" \
	"$DMUSER" remove "dmu_no_such_$$"
"$DMUSER" remove "$n" || _fail "dmuser remove (hints)"
DEVS=""
ko=$(find /lib/modules -name dm-user.ko | head -n 1)
if [ -n "$ko" ] && rmmod dm_user 2>/dev/null; then
	_expect_error "dmuser: open /dev/dm-user/$n: No such file or directory; the dm_user module is not loaded: modprobe dm_user" \
		"$DMUSER" info "$n"
	insmod "$ko" || _fail "insmod $ko after the test took the module away"
	_log "hints checked, with the module unloaded and loaded again"
else
	_log "the module could not be unloaded here: its hint not checked"
fi
exit 0
