#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# dmuser attach and detach under a mounted ext4 with fio writing and
# verifying (crc32c) all along: a two-segment linear device gets user
# targets over the same ranges (nothing claimed: no daemon needed), then
# pass-through daemons (dmuser serve --remap) that claim everything, one
# of which is killed with SIGKILL and started again, then both are killed
# and the device is detached back to its exact linear table. fio must see
# no error, e2fsck a clean filesystem, and the daemons must have served.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"
command -v mkfs.ext4 >/dev/null || _skip "mkfs.ext4 not installed"

n=dmu_attach_$$
ram=$(_ram_disk) || _skip "no RAM disk"
[ "$(blockdev --getsz "$ram")" -ge 32768 ] || _skip "$ram is smaller than 16 MiB"

# _target_rw <line>: read and write requests the user target on that line
# of the device's status counted (passed requests count in neither).
_target_rw() {
	dmsetup status "$n" | awk -v l="$1" 'NR == l { for (i = 1; i <= NF; i++)
		if ($i == "read" || $i == "write") s += $(i + 1) } END { print s + 0 }'
}

# _clean: live, not suspended, no inactive table left behind.
_clean() {
	dmsetup info "$n" > /tmp/$n.info || _fail "dmsetup info $n"
	grep -q "^State: *ACTIVE" /tmp/$n.info && grep -q "Tables present: *LIVE\$" /tmp/$n.info ||
		_fail "$1: $n is not left clean: $(tr '\n' ' ' < /tmp/$n.info)"
}
mm=$(cat "/sys/class/block/${ram#/dev/}/dev") || _fail "no device number for $ram"

# The halves of the RAM disk, swapped: two segments, both with an offset.
dmsetup create "$n" --table "0 16384 linear $ram 16384
16384 16384 linear $ram 0" || _fail "create linear $n"
DEVS=$n
orig=$(dmsetup table "$n")
_log "linear table: $(echo "$orig" | tr '\n' '|')"

# Wrong tables are refused, with the table shown.
"$DMUSER" detach "$n" > /dev/null 2> /tmp/$n.err && _fail "detach of a linear device succeeded"
grep -q "user targets with a backing device" /tmp/$n.err || _fail "detach refusal: $(cat /tmp/$n.err)"
_clean "refused detach"

mkfs.ext4 -q "/dev/mapper/$n" || _fail "mkfs.ext4"
mkdir -p "/mnt/$n"
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "mount"
# 10 of the 16 MiB: the file lies on both segments.
fio --name=verify --filename="/mnt/$n/data" --size=10M --direct=1 \
    --rw=randwrite --bsrange=4k-64k --ioengine=libaio --iodepth=8 \
    --time_based --runtime=60 --verify=crc32c --verify_backlog=64 \
    --verify_fatal=1 --output-format=terse --terse-version=3 \
    > "/tmp/$n.fio" 2>&1 &
FIO_PID=$!
sleep 2

"$DMUSER" attach "$n" > /tmp/$n.att || _fail "dmuser attach $n"
[ "$(cat /tmp/$n.att)" = "/dev/dm-user/${n}_0
/dev/dm-user/${n}_1" ] || _fail "attach printed '$(cat /tmp/$n.att)'"
want="0 16384 user 0 16384 ${n}_0 4 backing $mm 16384 passthrough
16384 16384 user 16384 16384 ${n}_1 4 backing $mm 0 passthrough"
[ "$(dmsetup table "$n")" = "$want" ] || _fail "attached table: $(dmsetup table "$n")"
_log "attached table: $(dmsetup table "$n" | tr '\n' '|')"
# A second attach finds user targets, not linear ones.
"$DMUSER" attach "$n" > /dev/null 2> /tmp/$n.err && _fail "attach of an attached device succeeded"
grep -q "needs a live table of linear targets only" /tmp/$n.err || _fail "attach refusal: $(cat /tmp/$n.err)"
_clean "refused attach"
[ "$(_target_rw 1)" = 0 ] && [ "$(_target_rw 2)" = 0 ] ||
	_fail "with nothing claimed requests reached a daemon: $(dmsetup status "$n")"
sleep 2

# Daemons in the path: everything claimed, every request remapped.
_start_daemon "${n}_0" --remap
d0=$DAEMON_PID
_start_daemon "${n}_1" --remap
dmsetup message "$n" 0 claim range_start=0 range_len=16384 || _fail "claim on ${n}_0"
dmsetup message "$n" 16384 claim range_start=0 range_len=16384 || _fail "claim on ${n}_1"
sleep 3
# Both daemons serve data, not flushes alone.
[ "$(_target_rw 1)" -gt 0 ] && [ "$(_target_rw 2)" -gt 0 ] ||
	_fail "a daemon served no data: $(dmsetup status "$n")"
# Filter mode under SIGKILL: the claimed I/O waits for the next daemon.
_restart_daemon "${n}_1" --remap
d1=$DAEMON_PID
before=$(_target_rw 2)
sleep 3
[ "$(_target_rw 2)" -gt "$before" ] ||
	_fail "the restarted daemon served nothing: $(dmsetup status "$n")"
remapped=$(dmsetup status "$n" | awk '{ for (i = 1; i <= NF; i++)
	if ($i == "remapped") s += $(i + 1) } END { print s + 0 }')

# Detach with both daemons dead: what waits for them goes on linear.
kill -0 "$FIO_PID" 2>/dev/null || _fail "fio ended before the detach: nothing under it"
kill -9 "$d0" "$d1"
wait "$d0" "$d1" 2>/dev/null
DAEMONS=""
sleep 1
# What waits for them is what the detach must carry over.
queued=$(dmsetup status "$n" | awk '{ for (i = 1; i <= NF; i++)
	if ($i == "queued" || $i == "backlog") s += $(i + 1) } END { print s + 0 }')
[ "$queued" -gt 0 ] || _fail "nothing waited for the dead daemons: $(dmsetup status "$n")"
"$DMUSER" detach "$n" || _fail "dmuser detach $n"
[ "$(dmsetup table "$n")" = "$orig" ] || _fail "detached table: $(dmsetup table "$n")"
_clean "detach"
for t in "${n}_0" "${n}_1"; do
	[ ! -e "/dev/dm-user/$t" ] || _fail "/dev/dm-user/$t left after detach"
done

_verify_fio_check "$n" "fio across attach, daemons, kills and detach"
umount "/mnt/$n" || _fail "umount"
e2fsck -fn "/dev/mapper/$n" > /tmp/$n.fsck 2>&1 || { cat /tmp/$n.fsck; _fail "e2fsck"; }
_log "$FIO_KB KiB verified, $remapped requests remapped by the daemons, $queued waiting at the detach, fio errors 0, e2fsck clean"
exit 0
