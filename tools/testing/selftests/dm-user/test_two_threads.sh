#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A daemon with one thread sleeping in read() and another writing the
# answers on the same fd (the FUSE shape) serves the device: an answer never
# waits for the next request to arrive. Blocking, and O_NONBLOCK, where the
# daemon also checks that a write() after POLLOUT never fails with EAGAIN.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

for mode in block nonblock; do
	n=dmu_2t_${mode}_$$
	_create_dev "$n" 131072			# 64 MiB
	flag=""
	[ $mode = nonblock ] && flag=-n
	rm -f "/tmp/$n.pid"
	"$TEST_DIR/twothread_daemon" $flag -p "/tmp/$n.pid" $((64 << 20)) \
		"/dev/dm-user/$n" &
	pid=$!
	DAEMONS="$DAEMONS $pid"
	i=0
	while [ ! -s "/tmp/$n.pid" ]; do
		kill -0 $pid 2>/dev/null || _fail "$mode: daemon exited"
		i=$((i + 1))
		[ $i -lt 100 ] || _fail "$mode: daemon not ready in 10 s"
		sleep 0.1
	done

	# The input that hung: each write needs the previous answer in.
	timeout 60 dd if=/dev/urandom of="/dev/mapper/$n" bs=4k count=64 \
		oflag=direct 2>/tmp/$n.dd ||
		{ cat /tmp/$n.dd; _fail "$mode: dd of 64 writes did not finish in 60 s"; }
	_verify_fio_start "$n" 2
	_verify_fio_check "$n" "$mode"
	_log "$mode: fio verified $FIO_KB KiB"
	kill -0 $pid 2>/dev/null || _fail "$mode: daemon died"
	[ "$(_rw_errors "$n")" = 0 ] || _fail "$mode: the target counted errors"

	dmsetup remove "$n" || _fail "$mode: remove"
	DEVS=$(echo "$DEVS" | sed "s/ $n//")
	wait $pid || _fail "$mode: daemon exit status $? after remove"
	DAEMONS=$(echo "$DAEMONS" | sed "s/ $pid//")
done
exit 0
