#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fio with crc32c verification: several jobs and queue depths, served by a
# daemon with several channels that answers out of order.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_fio_$$
_create_dev "$n" 262144			# 128 MiB

run_fio() {
	_log "fio $*"
	fio --name=verify --filename="/dev/mapper/$n" --direct=1 \
	    --verify=crc32c --do_verify=1 --verify_fatal=1 \
	    --size=16M --offset_increment=32M --output-format=terse \
	    --terse-version=3 "$@" > /tmp/$n.fio 2>&1 ||
		{ cat /tmp/$n.fio; _fail "fio $*"; }
	# Terse field 6 is read I/O in KiB: verification really read data.
	kb=$(awk -F';' '{ s += $6 } END { print s }' /tmp/$n.fio)
	[ "${kb:-0}" -gt 0 ] || _fail "fio verified nothing"
}

# Both ways the reference daemon moves data with read() and write(): in
# place (the kernel copies straight to and from the RAM store) and --copy
# (through buffers); with READ_BATCH and WRITE_BATCH, many requests per
# read() and many answers per write(); and through a ring of 16 slots per
# channel, fewer than fio keeps in flight, without and with a busy-poll.
for mode in "-q 8" "-q 8 --copy" "-q 8 --read-batch --write-batch" \
	    "--transport ring --ring-depth 16" \
	    "--transport ring --ring-depth 16 --busy-poll 200"; do
	_log "daemon $mode"
	# shellcheck disable=SC2086 # options, as words
	_start_daemon "$n" -r 128M -t 4 -S /tmp/$n.stats $mode
	run_fio --rw=randwrite --bs=4k --ioengine=psync --numjobs=2
	run_fio --rw=randwrite --bsrange=4k-256k --ioengine=libaio --iodepth=16 --numjobs=4
	run_fio --rw=write --bs=1M --ioengine=libaio --iodepth=4 --numjobs=2
	if fio --enghelp 2>/dev/null | grep -q io_uring; then
		run_fio --rw=randwrite --bs=16k --ioengine=io_uring --iodepth=32 --numjobs=2
	fi
	_stop_daemon "$DAEMON_PID"
	w=$(_stat /tmp/$n.stats writes)
	r=$(_stat /tmp/$n.stats reads)
	_log "daemon served $r reads and $w writes on 4 channels"
	[ "${w:-0}" -gt 0 ] && [ "${r:-0}" -gt 0 ] || _fail "daemon counters empty"
done

# The file store reading and writing with O_DIRECT straight from the
# ring's slots: the kernel pins slot pages for the I/O. Over a loop device,
# since tmpfs has no O_DIRECT on every kernel.
truncate -s 128M /tmp/$n.img || _fail "truncate"
modprobe loop 2>/dev/null
loopdev=$(losetup -f) && losetup "$loopdev" /tmp/$n.img || _fail "losetup"
_log "daemon --file $loopdev --direct --transport ring"
_start_daemon "$n" -f "$loopdev" -d -t 2 --transport ring -S /tmp/$n.stats
run_fio --rw=randwrite --bsrange=4k-256k --ioengine=libaio --iodepth=16 --numjobs=4
run_fio --rw=write --bs=1M --ioengine=libaio --iodepth=4 --numjobs=2
_stop_daemon "$DAEMON_PID"
losetup -d "$loopdev"
rm -f /tmp/$n.img
[ "$(_stat /tmp/$n.stats writes)" -gt 0 ] || _fail "daemon counters empty"
exit 0
