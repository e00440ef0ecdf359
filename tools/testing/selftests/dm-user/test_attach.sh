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

mkfs.ext4 -q "/dev/mapper/$n" || _fail "mkfs.ext4"
mkdir -p "/mnt/$n"
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "mount"
fio --name=verify --filename="/mnt/$n/data" --size=6M --direct=1 \
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
grep -q "linear targets" /tmp/$n.err || _fail "attach refusal: $(cat /tmp/$n.err)"
sleep 2

# Daemons in the path: everything claimed, every request remapped.
_start_daemon "${n}_0" --remap
d0=$DAEMON_PID
_start_daemon "${n}_1" --remap
dmsetup message "$n" 0 claim range_start=0 range_len=16384 || _fail "claim on ${n}_0"
dmsetup message "$n" 16384 claim range_start=0 range_len=16384 || _fail "claim on ${n}_1"
sleep 3
# Filter mode under SIGKILL: the claimed I/O waits for the next daemon.
_restart_daemon "${n}_1" --remap
d1=$DAEMON_PID
sleep 3
remapped=$(dmsetup status "$n" | awk '{ for (i = 1; i <= NF; i++)
	if ($i == "remapped") s += $(i + 1) } END { print s + 0 }')
[ "$remapped" -gt 0 ] || _fail "the daemons remapped nothing: $(dmsetup status "$n")"

# Detach with both daemons dead: what waits for them goes on linear.
kill -0 "$FIO_PID" 2>/dev/null || _fail "fio ended before the detach: nothing under it"
kill -9 "$d0" "$d1"
wait "$d0" "$d1" 2>/dev/null
DAEMONS=""
sleep 1
"$DMUSER" detach "$n" || _fail "dmuser detach $n"
[ "$(dmsetup table "$n")" = "$orig" ] || _fail "detached table: $(dmsetup table "$n")"
[ ! -e "/dev/dm-user/${n}_0" ] || _fail "/dev/dm-user/${n}_0 left after detach"

_verify_fio_check "$n" "fio across attach, daemons, kills and detach"
umount "/mnt/$n" || _fail "umount"
e2fsck -fn "/dev/mapper/$n" > /tmp/$n.fsck 2>&1 || { cat /tmp/$n.fsck; _fail "e2fsck"; }
_log "$FIO_KB KiB verified, $remapped requests remapped by the daemons, fio errors 0, e2fsck clean"
exit 0
