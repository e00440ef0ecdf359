#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Shared by the dm-user shell tests: create a device, serve it with the
# reference daemon, clean up whatever happens, report in kselftest terms
# (exit 0 pass, 1 fail, 4 skip). Runs under busybox sh in the guest.

KSFT_SKIP=4
TEST_DIR=$(cd "$(dirname "$0")" && pwd)
DMUSERD=${DMUSERD:-$TEST_DIR/dmuserd}
DMUSER=${DMUSER:-$TEST_DIR/dmuser}
DMU_IO=${DMU_IO:-$TEST_DIR/dmu_io}
export DM_DISABLE_UDEV=1

DEVS=""
DAEMONS=""

_log() { echo "# $*"; }

_fail() {
	echo "# FAIL: $*"
	exit 1
}

_skip() {
	echo "# SKIP: $*"
	exit $KSFT_SKIP
}

_cleanup_test() {
	for p in $DAEMONS; do
		kill "$p" 2>/dev/null
		# A test may fail while it holds a daemon stopped.
		kill -CONT "$p" 2>/dev/null
	done
	for p in $DAEMONS; do
		wait "$p" 2>/dev/null
	done
	for d in $DEVS; do
		umount "/mnt/$d" 2>/dev/null
		dmsetup remove --retry "$d" >/dev/null 2>&1
	done
}

_prep_test() {
	[ "$(id -u)" = 0 ] || _skip "needs root"
	dmsetup targets | grep -q '^user ' || _skip "the user target is not loaded"
	trap _cleanup_test EXIT
}

# _create_dev <name> <sectors> [<#features> <feature>...]: through the
# dmuser tool (libdmuser), which counts the feature words itself.
_create_dev() {
	_name=$1
	_sectors=$2
	shift 2
	[ $# -eq 0 ] || shift
	if [ $# -eq 0 ]; then
		"$DMUSER" create "$_name" --size "${_sectors}s"
	else
		"$DMUSER" create "$_name" --size "${_sectors}s" --features "$*"
	fi || _fail "dmuser create $_name"
	DEVS="$DEVS $_name"
}

# _start_daemon <name> <dmuserd options...>: serves /dev/dm-user/<name> and
# waits until every channel is open (the daemon writes its pid file then).
# DAEMON_WRAPPER, if set, runs it (say "run_as 1000 1000"); DAEMON_PID is
# then still the daemon's own pid, as the wrapper execs it.
_start_daemon() {
	_name=$1
	shift
	rm -f "/tmp/$_name.pid"
	# shellcheck disable=SC2086 # the wrapper is words
	${DAEMON_WRAPPER:-} "$DMUSERD" -p "/tmp/$_name.pid" "$@" "/dev/dm-user/$_name" &
	DAEMON_PID=$!
	DAEMONS="$DAEMONS $DAEMON_PID"
	_wait_ready "$_name" dmuserd
}

# _wait_ready <name> <program>: until DAEMON_PID has written its pid file.
_wait_ready() {
	_i=0
	while [ ! -s "/tmp/$1.pid" ]; do
		kill -0 "$DAEMON_PID" 2>/dev/null || _fail "$2 for $1 exited"
		_i=$((_i + 1))
		[ $_i -lt 100 ] || _fail "$2 for $1 not ready in 10 s"
		sleep 0.1
	done
}

# _start_example <program> <name> <serve options...>: one of the example
# daemons (dmu-cow, dmu-cbt, dmu-fault) serving <name>, as _start_daemon.
_start_example() {
	_prog=$1
	_name=$2
	shift 2
	rm -f "/tmp/$_name.pid"
	"$TEST_DIR/$_prog" serve -p "/tmp/$_name.pid" "$@" "$_name" &
	DAEMON_PID=$!
	DAEMONS="$DAEMONS $DAEMON_PID"
	_wait_ready "$_name" "$_prog"
}

# _kill_daemon: SIGKILL DAEMON_PID and reap it.
_kill_daemon() {
	kill -9 "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	DAEMONS=$(echo "$DAEMONS" | sed "s/ $DAEMON_PID\$//; s/ $DAEMON_PID / /")
}

# _stop_daemon <pid>: SIGTERM, and the daemon must exit cleanly.
# _restart_daemon <name> <dmuserd options...>: SIGKILL the daemon
# DAEMON_PID and, after a moment with no daemon attached (I/O queues),
# start another with the same options.
_restart_daemon() {
	_kill_daemon
	sleep 0.3
	_start_daemon "$@"
}

_stop_daemon() {
	kill "$1" || _fail "kill $1"
	wait "$1"
	_st=$?
	DAEMONS=$(echo "$DAEMONS" | sed "s/ $1\$//; s/ $1 / /")
	[ "$_st" = 0 ] || _fail "the daemon exited with status $_st on SIGTERM"
}

# _expect_exit_after_remove <pid> <what>: once the device is gone, the
# daemon must see ENOTBLK and exit 0 by itself. The wait is bounded by the
# test runner's per-test timeout.
_expect_exit_after_remove() {
	DEVS=""
	wait "$1"
	_st=$?
	DAEMONS=""
	[ "$_st" = 0 ] || _fail "$2 exit status $_st after remove"
}

# _stat <file> <key>: a counter from dmuserd's --stats file.
_stat() {
	awk -v k="$2" '$1 == k { print $2 }' "$1"
}

_queue_attr() {
	_mm=$(dmsetup info -c --noheadings -o major,minor "$1" | tr -d ' ')
	cat "/sys/dev/block/$_mm/queue/$2"
}

# _verify_fio_start <dev> <loops>: fio writing and verifying (crc32c) two
# 16 MiB regions of /dev/mapper/<dev> in the background; FIO_PID is its pid.
_verify_fio_start() {
	fio --name=verify --filename="/dev/mapper/$1" --direct=1 \
	    --rw=randwrite --bsrange=4k-64k --ioengine=libaio --iodepth=8 \
	    --numjobs=2 --size=16M --offset_increment=32M --loops="$2" \
	    --verify=crc32c --do_verify=1 --verify_fatal=1 \
	    --output-format=terse --terse-version=3 > "/tmp/$1.fio" 2>&1 &
	FIO_PID=$!
}

# _verify_fio_check <dev> <what>: waits for that fio; it must have exited
# 0, with no job error and some data verified. Sets FIO_KB.
_verify_fio_check() {
	wait "$FIO_PID"
	_st=$?
	[ "$_st" = 0 ] || { cat "/tmp/$1.fio"; _fail "$2: fio failed (status $_st)"; }
	# Terse v3: field 5 is the job's error, 6 the KiB read (verified).
	_err=$(awk -F';' '{ s += $5 } END { print s }' "/tmp/$1.fio")
	FIO_KB=$(awk -F';' '{ s += $6 } END { print s }' "/tmp/$1.fio")
	[ "${_err:-1}" = 0 ] || _fail "$2: fio error $_err"
	[ "${FIO_KB:-0}" -gt 0 ] || _fail "$2: fio verified nothing"
}

# _ram_disk: prints a 16 MiB block device in RAM, as dmu_ram_disk() in
# dmu_test.h finds one: brd's /dev/ram0, else a loop device over a file in
# /tmp (the debug kernel has loop built in but no brd).
_ram_disk() {
	[ -b /dev/ram0 ] || modprobe brd rd_nr=1 rd_size=16384 max_part=0 >/dev/null 2>&1
	if [ -b /dev/ram0 ]; then
		echo /dev/ram0
		return 0
	fi
	_img=/tmp/dmu_ram_disk.img
	_dev=$(losetup -a 2>/dev/null | grep "$_img" | cut -d: -f1)
	if [ -z "$_dev" ]; then
		dd if=/dev/zero of="$_img" bs=1M count=16 2>/dev/null || return 1
		_dev=$(losetup -f) && losetup "$_dev" "$_img" || return 1
	fi
	echo "$_dev"
}

# _read_direct <dev-path> <file> [<offset-bytes> <length-bytes>]: the
# device's bytes (all, or that range, in 512-byte units) read with
# O_DIRECT, past any page cache, into <file>.
_read_direct() {
	if [ $# -gt 2 ]; then
		dd if="$1" of="$2" bs=512 skip=$(($3 / 512)) count=$(($4 / 512)) \
		   iflag=direct 2>/dev/null
	else
		dd if="$1" of="$2" bs=1M iflag=direct 2>/dev/null
	fi
}

# _write_direct <file> <dev-path> <offset-bytes> [<length-bytes>]: <file>
# (or its first <length> bytes) written at <offset> with O_DIRECT, in the
# largest of 64 KiB, 4 KiB and 512 bytes that both are multiples of.
_write_direct() {
	_len=${4:-$(wc -c <"$1")}
	_bs=512
	for _b in 65536 4096; do
		if [ $(($3 % _b)) = 0 ] && [ $((_len % _b)) = 0 ]; then
			_bs=$_b
			break
		fi
	done
	dd if="$1" of="$2" bs=$_bs seek=$(($3 / _bs)) count=$((_len / _bs)) \
	   oflag=direct conv=notrunc 2>/dev/null
}

# _patch <file> <offset-bytes> <from-file>: what _write_direct does to a
# device, done to the image <file> that a test expects it to hold.
_patch() {
	dd if="$3" of="$1" bs=512 seek=$(($2 / 512)) conv=notrunc 2>/dev/null
}

# _status_value <dev> <key>: the word after <key> in dmsetup status.
_status_value() {
	dmsetup status "$1" | tr ' ' '\n' | grep -A1 -x "$2" | tail -n 1
}

# _rw_errors <dev>: failed reads plus failed writes the target counted.
_rw_errors() {
	dmsetup status "$1" | awk '{ for (i = 1; i <= NF; i++)
		if ($i == "read" || $i == "write") s += $(i + 3) } END { if (NR) print s + 0 }'
}
