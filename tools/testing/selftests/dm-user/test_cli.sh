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
"$DMUSER" list | grep -q "^$n $n 0 32768\$" || _fail "list: $("$DMUSER" list)"

"$DMUSER" info "$n" > /tmp/$n.info || _fail "dmuser info"
for kv in "name $n" "size 32768" "block_size 512" "max_io 1048576" "queued 0"; do
	grep -q "^$kv\$" /tmp/$n.info || _fail "info lacks '$kv': $(cat /tmp/$n.info)"
done

grep -q "^daemon waiting\$" /tmp/$n.info || _fail "info: no daemon should be attached: $(cat /tmp/$n.info)"
grep -q "^remapped 0\$" /tmp/$n.info || _fail "info lacks 'remapped 0': $(cat /tmp/$n.info)"
grep -q "^backing" /tmp/$n.info && _fail "info names a backing device: $(cat /tmp/$n.info)"

# A target over a backing device (this one) says which, as major:minor.
"$DMUSER" create "${n}_up" --size 8M --features "backing /dev/mapper/$n 2048" ||
	_fail "dmuser create with a backing device"
DEVS="${n}_up $n"
mm=$(dmsetup info -c --noheadings -o major,minor "$n" | tr -d ' ')
"$DMUSER" info "${n}_up" > /tmp/$n.info || _fail "dmuser info ${n}_up"
for kv in "backing $mm" "backing_offset 2048" "remapped 0"; do
	grep -q "^$kv\$" /tmp/$n.info || _fail "info lacks '$kv': $(cat /tmp/$n.info)"
done
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
grep -q "^channels 3\$" /tmp/$n.info || _fail "info does not count 2 serving channels + itself"
grep -q "^daemon attached\$" /tmp/$n.info || _fail "info: daemon not attached: $(cat /tmp/$n.info)"

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
"$DMUSER" info dmu_no_such_$$ >/dev/null 2>&1
[ $? = 1 ] || _fail "info on a missing device did not exit 1"
"$DMUSER" serve -r 1M -n 1M "$n" >/dev/null 2>/tmp/$n.err
[ $? = 2 ] || _fail "serve with two stores did not exit 2"
grep -q "exactly one of --ram, --file, --null and --remap" /tmp/$n.err ||
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
exit 0
