#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Daemon crash recovery: fio writes and verifies (crc32c) while the daemon
# is killed with SIGKILL every second and started again. The requests the
# dead daemon held go back to the queue and the next daemon serves them:
# fio must see no I/O error and no verify failure.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_restart_$$
img=/tmp/$n.img
truncate -s 64M "$img" || _fail "truncate $img"
_create_dev "$n" 131072 1 queue_if_no_daemon
_start_daemon "$n" -f "$img" -t 2

_verify_fio_start "$n" 20
kills=0
while [ $kills -lt 10 ] && kill -0 $FIO_PID 2>/dev/null; do
	sleep 1
	kill -0 $FIO_PID 2>/dev/null || break
	_restart_daemon "$n" -f "$img" -t 2
	kills=$((kills + 1))
done
_verify_fio_check "$n" "fio across $kills daemon kills"
_log "$kills daemon kills, $(_status_value "$n" requeued) requests requeued, $FIO_KB KiB verified, fio errors 0"
[ "$kills" -ge 5 ] || _fail "only $kills kills: fio ended too soon to test anything"
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
_stop_daemon "$DAEMON_PID"
rm -f "$img"
exit 0
