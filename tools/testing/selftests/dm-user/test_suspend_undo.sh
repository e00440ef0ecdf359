#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A suspend that is interrupted leaves the target exactly as before
# (presuspend_undo): with the daemon stopped, "dmsetup suspend" waits for
# the I/O the daemon holds and is interrupted; the daemon is then killed
# and restarted under fio. Requeued and new I/O must wait for it under
# queue_if_no_daemon and complete: no I/O error, no verify error.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_undo_$$
img=/tmp/$n.img
truncate -s 64M "$img" || _fail "truncate $img"
_create_dev "$n" 131072 1 queue_if_no_daemon
_start_daemon "$n" -f "$img" -t 2

_verify_fio_start "$n" 6
# Wait for I/O to flow (fio starts slowly on the debug kernel), stop the
# daemon, and wait for I/O that it then holds or leaves queued.
i=0
while [ "$(_status_value "$n" write)" = 0 ]; do
	kill -0 $FIO_PID 2>/dev/null || _fail "fio ended before writing"
	i=$((i + 1))
	[ $i -lt 300 ] || _fail "no write reached the daemon in 60 s"
	sleep 0.2
done
kill -STOP "$DAEMON_PID"
i=0
while [ $(($(_status_value "$n" queued) + $(_status_value "$n" inflight))) = 0 ]; do
	kill -0 $FIO_PID 2>/dev/null || _fail "fio ended too soon"
	i=$((i + 1))
	[ $i -lt 300 ] || _fail "no I/O waiting on the stopped daemon in 60 s"
	sleep 0.2
done
timeout -s KILL 3 dmsetup suspend "$n" && _fail "suspend finished with the daemon stopped"
case $(dmsetup info -c --noheadings -o attr "$n") in
??s*) _fail "the device stayed suspended after the interrupted suspend" ;;
esac
_log "suspend interrupted, device active"
kill -CONT "$DAEMON_PID"
sleep 0.5
_restart_daemon "$n" -f "$img" -t 2
# And a second time, with the new daemon under the same fio.
sleep 1
_restart_daemon "$n" -f "$img" -t 2
_verify_fio_check "$n" "fio across an interrupted suspend and two restarts"
_log "$FIO_KB KiB verified, $(_status_value "$n" requeued) requests requeued"
[ "$(_status_value "$n" daemon)" = attached ] || _fail "daemon state $(_status_value "$n" daemon)"
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
_stop_daemon "$DAEMON_PID"
rm -f "$img"
exit 0
