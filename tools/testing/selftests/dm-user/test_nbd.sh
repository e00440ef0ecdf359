#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# dmuserd --nbd: a dm-user device served from NBD servers through libnbd.
# nbdkit's memory plugin over a Unix socket and its file plugin over TCP on
# the loopback, with fio crc32c verification at QD1 and QD32, ext4 and
# fsck, the data checked in the server's file; discard and write-zeroes,
# with a server that has no zero; the server killed and restarted under
# fio verify (nothing lost, no error); errors and slow requests from
# nbdkit's error and delay filters; a qcow2 image served by qemu-nbd read
# back byte for byte; and the refusals of a bad start.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v nbdkit >/dev/null || _skip "nbdkit not installed"
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_nbd_$$
sock=/tmp/$n.sock
img=/tmp/$n.img
NBDKIT_PID=""

# Loopback, for nbd:// over TCP (the guest's init leaves it down).
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null

cleanup() {
	[ -n "$NBDKIT_PID" ] && kill "$NBDKIT_PID" 2>/dev/null
	[ -n "${QEMU_PID:-}" ] && kill "$QEMU_PID" 2>/dev/null
	_cleanup_test
	rm -f "$sock" "$img" /tmp/$n.*
}
trap cleanup EXIT

# nbdkit_start <nbdkit args...>: in the foreground of a background job, so
# that its pid is ours to kill; waits for its socket or port.
nbdkit_start() {
	rm -f "/tmp/$n.nbdkit.pid" "$sock"
	nbdkit -f -P "/tmp/$n.nbdkit.pid" "$@" 2>>"/tmp/$n.nbdkit.log" &
	NBDKIT_PID=$!
	_i=0
	while [ ! -s "/tmp/$n.nbdkit.pid" ]; do
		kill -0 "$NBDKIT_PID" 2>/dev/null ||
			{ cat "/tmp/$n.nbdkit.log"; _fail "nbdkit $* exited"; }
		_i=$((_i + 1))
		[ $_i -lt 100 ] || _fail "nbdkit $* not ready in 10 s"
		sleep 0.1
	done
}

nbdkit_stop() {
	kill "$NBDKIT_PID" 2>/dev/null
	wait "$NBDKIT_PID" 2>/dev/null
	NBDKIT_PID=""
}

# serve <uri> <dmuserd options...>: as _start_daemon, its log kept.
serve() {
	_uri=$1
	shift
	rm -f "/tmp/$n.pid"
	"$DMUSERD" -p "/tmp/$n.pid" -S "/tmp/$n.stats" --nbd "$_uri" "$@" \
		"/dev/dm-user/$n" 2>"/tmp/$n.log" &
	DAEMON_PID=$!
	DAEMONS="$DAEMONS $DAEMON_PID"
	_wait_ready "$n" "dmuserd --nbd" || { cat "/tmp/$n.log"; exit 1; }
}

run_fio() {
	_log "fio $*"
	fio --name=verify --filename="/dev/mapper/$n" --direct=1 \
	    --verify=crc32c --do_verify=1 --verify_fatal=1 \
	    --size=8M --offset_increment=16M --output-format=terse \
	    --terse-version=3 "$@" > "/tmp/$n.fio" 2>&1 ||
		{ cat "/tmp/$n.fio" "/tmp/$n.log"; _fail "fio $*"; }
	kb=$(awk -F';' '{ s += $6 } END { print s }' "/tmp/$n.fio")
	[ "${kb:-0}" -gt 0 ] || _fail "fio verified nothing"
}

_create_dev "$n" 65536			# 32 MiB

# ---- Refusals: bad usage, no server, an export smaller than the target. --
# bad_usage <message> <dmuserd args...>: exit status 2 and the message.
bad_usage() {
	_msg=$1
	shift
	"$DMUSERD" "$@" 2>"/tmp/$n.err"
	_st=$?
	if [ "$_st" != 2 ] || ! grep -q -- "$_msg" "/tmp/$n.err"; then
		cat "/tmp/$n.err"
		_fail "dmuserd $*: status $_st, not bad usage"
	fi
}
bad_usage "--batch does not apply to --nbd" --nbd "nbd+unix:///?socket=$sock" --batch 4 "$n"
bad_usage "--queue-depth applies to --nbd only" --ram 1M --queue-depth 4 "$n"
"$DMUSERD" --nbd "nbd+unix:///?socket=$sock" "$n" 2>"/tmp/$n.err" &&
	_fail "served with no server"
grep -q "connect to nbd+unix" "/tmp/$n.err" ||
	{ cat "/tmp/$n.err"; _fail "no server: no message naming the URI"; }
nbdkit_start -U "$sock" memory 16M
"$DMUSERD" --nbd "nbd+unix:///?socket=$sock" "$n" 2>"/tmp/$n.err" &&
	_fail "served a 16 MiB export as a 32 MiB device"
grep -q "16 MiB, the target 32 MiB" "/tmp/$n.err" ||
	{ cat "/tmp/$n.err"; _fail "small export: no message with both sizes"; }
nbdkit_stop
_log "refused: no server, and an export smaller than the target"

# ---- Memory over a Unix socket: fio at QD1 and QD32, two connections. ---
nbdkit_start -U "$sock" memory 32M
serve "nbd+unix:///?socket=$sock" -t 2 -v
grep -q "multi-conn yes" "/tmp/$n.log" ||
	{ cat "/tmp/$n.log"; _fail "the memory plugin's multi-conn not seen"; }
run_fio --rw=randwrite --bs=4k --ioengine=psync --numjobs=2
run_fio --rw=randwrite --bsrange=4k-256k --ioengine=libaio --iodepth=32 --numjobs=2
run_fio --rw=write --bs=1M --ioengine=libaio --iodepth=4 --numjobs=2

# Discard and write-zeroes reach the server as trim and zero; NBD has no
# secure erase.
dev=/dev/mapper/$n
"$DMU_IO" write "$dev" 0 1048576 11 direct || _fail "write the pattern"
r=$("$DMU_IO" discard "$dev" 0 262144) || _fail "discard: $r"
r=$("$DMU_IO" zeroout "$dev" 262144 262144) || _fail "zeroout: $r"
"$DMU_IO" zeroes "$dev" 0 524288 || _fail "discarded and zeroed data is not zero"
"$DMU_IO" verify "$dev" 524288 524288 11 direct || _fail "data past the zeroes changed"
r=$("$DMU_IO" secdiscard "$dev" 0 4096) && _fail "secure erase succeeded"
echo "$r" | grep -q EOPNOTSUPP || _fail "secure erase: $r, not EOPNOTSUPP"
_stop_daemon "$DAEMON_PID"
[ "$(_stat "/tmp/$n.stats" errors)" = 0 ] || _fail "errors answered"
[ "$(_stat "/tmp/$n.stats" unsupported)" -ge 1 ] || _fail "secure erase not answered UNSUPPORTED"
_log "memory: $(_stat "/tmp/$n.stats" reads) reads, $(_stat "/tmp/$n.stats" writes) writes on 2 connections"
nbdkit_stop

# ---- A file over TCP on the loopback: ext4, fsck, the data in the file. --
truncate -s 32M "$img" || _fail "truncate"
nbdkit_start -i 127.0.0.1 -p 10809 file "$img"
serve "nbd://127.0.0.1:10809/" --transport rw -W
mkfs.ext4 -q -F "/dev/mapper/$n" || _fail "mkfs.ext4"
mkdir -p "/mnt/$n"
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "mount"
dd if=/dev/urandom of="/mnt/$n/data" bs=64k count=64 2>/dev/null || _fail "write a file"
cp "/mnt/$n/data" "/tmp/$n.data"
umount "/mnt/$n" || _fail "umount"
e2fsck -f -n "/dev/mapper/$n" >"/tmp/$n.fsck" 2>&1 || { cat "/tmp/$n.fsck"; _fail "e2fsck"; }
mount -t ext4 "/dev/mapper/$n" "/mnt/$n" || _fail "mount again"
cmp -s "/mnt/$n/data" "/tmp/$n.data" || _fail "the file changed across a remount"
umount "/mnt/$n"
_stop_daemon "$DAEMON_PID"
nbdkit_stop
# Everything the device held is in the server's file, byte for byte.
e2fsck -f -n "$img" >"/tmp/$n.fsck" 2>&1 || { cat "/tmp/$n.fsck"; _fail "e2fsck of the server's file"; }
_log "file over TCP: ext4 clean on the device and in the server's file"

# ---- The server killed and restarted under fio verify. -------------------
# No FUA on the server (the fua filter's default): FUA writes become a
# write and a flush.
rm -f "$sock"
nbdkit_start -U "$sock" --filter=fua file "$img"
serve "nbd+unix:///?socket=$sock" -t 2
# Long enough to span the restart; fio must still be running at the kill.
_verify_fio_start "$n" 40
sleep 2
kill -0 "$FIO_PID" 2>/dev/null || _fail "fio ended before the server was killed"
kill -9 "$NBDKIT_PID"
wait "$NBDKIT_PID" 2>/dev/null
NBDKIT_PID=""
sleep 2
nbdkit_start -U "$sock" --filter=fua file "$img"
_i=0
until grep -q "is back" "/tmp/$n.log"; do
	kill -0 "$DAEMON_PID" 2>/dev/null ||
		{ cat "/tmp/$n.log"; _fail "dmuserd died while the server was away"; }
	_i=$((_i + 1))
	[ $_i -lt 150 ] || { cat "/tmp/$n.log"; _fail "no reconnection in 15 s"; }
	sleep 0.1
done
_verify_fio_check "$n" "fio across an nbdkit restart"
grep -q "lost" "/tmp/$n.log" || { cat "/tmp/$n.log"; _fail "the lost connection was not noticed"; }
_log "nbdkit killed and restarted: fio verified $FIO_KB KiB, 0 errors"

# Away longer than no_daemon_timeout: I/O fails, with the kernel's word
# for it, and is served again once the server is back.
"$DMUSER" set "$n" no_daemon_timeout=2 || _fail "dmuser set no_daemon_timeout=2"
"$DMU_IO" write "$dev" 0 65536 21 direct || _fail "write before the outage"
kill -9 "$NBDKIT_PID"
wait "$NBDKIT_PID" 2>/dev/null
NBDKIT_PID=""
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null &&
	_fail "a read with the server gone past no_daemon_timeout succeeded"
dmesg | grep -q "$n: no daemon for 2 s" || _fail "no kernel message for the failed I/O"
nbdkit_start -U "$sock" --filter=fua file "$img"
_i=0
until [ "$(grep -c "is back" "/tmp/$n.log")" -ge 4 ]; do
	_i=$((_i + 1))
	[ $_i -lt 150 ] || { cat "/tmp/$n.log"; _fail "no reconnection after the outage"; }
	sleep 0.1
done
"$DMU_IO" verify "$dev" 0 65536 21 direct || _fail "data after the outage differs"
_stop_daemon "$DAEMON_PID"
[ "$(_stat "/tmp/$n.stats" errors)" = 0 ] || _fail "errors answered by the daemon"
_log "server away past no_daemon_timeout: I/O failed, then served again"
"$DMUSER" set "$n" no_daemon_timeout=30 || _fail "dmuser set no_daemon_timeout=30"
nbdkit_stop

# ---- Errors and slow requests: nbdkit's error and delay filters. ---------
rm -f "/tmp/$n.trigger" "$sock"
nbdkit_start -U "$sock" --filter=error --filter=delay memory 32M \
	error=EIO error-rate=100% error-file="/tmp/$n.trigger" delay-read=1
serve "nbd+unix:///?socket=$sock" -Q 16
"$DMU_IO" write "$dev" 0 1048576 12 direct || _fail "write under the filters"
touch "/tmp/$n.trigger"
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null &&
	_fail "a read the server failed succeeded"
rm -f "/tmp/$n.trigger"
"$DMU_IO" verify "$dev" 0 1048576 12 direct || _fail "data read after the errors differs"
# 8 reads of 1 s each in flight at once on one connection: far less than
# the 8 s one at a time would take.
start=$(date +%s)
fio --name=slow --filename="/dev/mapper/$n" --direct=1 --rw=randread \
    --bs=4k --ioengine=libaio --iodepth=8 --number_ios=8 --size=4M \
    --output-format=terse --terse-version=3 >"/tmp/$n.fio" 2>&1 ||
	{ cat "/tmp/$n.fio"; _fail "fio under the delay filter"; }
took=$(($(date +%s) - start))
[ "$took" -lt 6 ] || _fail "8 delayed reads took $took s: not in flight together"
_stop_daemon "$DAEMON_PID"
[ "$(_stat "/tmp/$n.stats" errors)" -ge 1 ] || _fail "the failed read was not counted"
_log "error filter: read failed, then served; delay filter: 8 reads of 1 s in $took s"
nbdkit_stop

# ESHUTDOWN from the server is a server going down: the request goes back
# to the queue (it neither fails nor hangs) and is served once the server
# serves again.
nbdkit_start -U "$sock" --filter=error memory 32M \
	error=ESHUTDOWN error-rate=100% error-file="/tmp/$n.trigger"
serve "nbd+unix:///?socket=$sock"
"$DMU_IO" write "$dev" 0 65536 14 direct || _fail "write before ESHUTDOWN"
touch "/tmp/$n.trigger"
"$DMU_IO" verify "$dev" 0 65536 14 direct &
VERIFY_PID=$!
sleep 2
kill -0 "$VERIFY_PID" 2>/dev/null || _fail "a read the server shut down on ended"
rm -f "/tmp/$n.trigger"
wait "$VERIFY_PID" || _fail "the read given back after ESHUTDOWN failed or differs"
grep -q "lost" "/tmp/$n.log" || { cat "/tmp/$n.log"; _fail "ESHUTDOWN not taken as a lost connection"; }
_stop_daemon "$DAEMON_PID"
[ "$(_stat "/tmp/$n.stats" errors)" = 0 ] || _fail "ESHUTDOWN answered as an error"
_log "ESHUTDOWN: the read went back to the queue and was served later"
nbdkit_stop

# ---- A server without write-zeroes: answered UNSUPPORTED, zeroes all the same.
rm -f "$sock"
nbdkit_start -U "$sock" --filter=nozero memory 32M zeromode=none
serve "nbd+unix:///?socket=$sock"
grep -q "cannot zero" "/tmp/$n.log" || _fail "no note about the missing zero"
"$DMU_IO" write "$dev" 0 1048576 13 direct || _fail "write the pattern"
# The block layer writes the zeroes itself once write-zeroes comes back
# UNSUPPORTED.
r=$("$DMU_IO" zeroout "$dev" 0 262144) || _fail "zeroout: $r"
"$DMU_IO" zeroes "$dev" 0 262144 || _fail "zeroed data is not zero"
"$DMU_IO" verify "$dev" 262144 786432 13 direct || _fail "data past the zeroes changed"
_stop_daemon "$DAEMON_PID"
[ "$(_stat "/tmp/$n.stats" unsupported)" -ge 1 ] ||
	_fail "write-zeroes was not answered UNSUPPORTED"
nbdkit_stop

# ---- A qcow2 image served by qemu-nbd, read back byte for byte. ----------
if command -v qemu-nbd >/dev/null && command -v qemu-img >/dev/null; then
	dd if=/dev/urandom of="/tmp/$n.raw" bs=1M count=32 2>/dev/null
	qemu-img convert -f raw -O qcow2 "/tmp/$n.raw" "/tmp/$n.qcow2" ||
		_fail "qemu-img convert"
	rm -f "$sock"
	qemu-nbd -t -k "$sock" -f qcow2 "/tmp/$n.qcow2" 2>"/tmp/$n.qemu" &
	QEMU_PID=$!
	_i=0
	while [ ! -S "$sock" ]; do
		_i=$((_i + 1))
		[ $_i -lt 100 ] || { cat "/tmp/$n.qemu"; _fail "qemu-nbd not ready"; }
		sleep 0.1
	done
	serve "nbd+unix:///?socket=$sock"
	_read_direct "/dev/mapper/$n" "/tmp/$n.got"
	cmp "/tmp/$n.got" "/tmp/$n.raw" || _fail "the qcow2 image read back differs"
	_stop_daemon "$DAEMON_PID"
	kill "$QEMU_PID"
	wait "$QEMU_PID" 2>/dev/null
	QEMU_PID=""
	_log "qcow2 through qemu-nbd: 32 MiB read back byte for byte"
else
	_log "no qemu-nbd: the qcow2 part is left out"
fi

# ---- The target removed: the daemon ends by itself. ----------------------
rm -f "$sock"
nbdkit_start -U "$sock" memory 32M
serve "nbd+unix:///?socket=$sock"
dmsetup remove "$n" || _fail "dmsetup remove"
_expect_exit_after_remove "$DAEMON_PID" "dmuserd --nbd"
nbdkit_stop
echo "# PASS"
