#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Daemon upgrade without errors, under fio with crc32c verification:
#  1. a new daemon attaches, the old one gets SIGTERM, answers what it
#     holds and exits;
#  2. a live table reload to a new user target (suspend, load, resume) with
#     a daemon on the new target, once with a flushing suspend and once
#     with --noflush; the old daemon sees its target go and exits.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

n=dmu_handoff_$$
img=/tmp/$n.img
truncate -s 64M "$img" || _fail "truncate $img"
_create_dev "$n" 131072 1 queue_if_no_daemon
_start_daemon "$n" -f "$img" -t 2
old=$DAEMON_PID

# 1. Hand-off between daemons on the same target.
_verify_fio_start "$n" 2
i=0
while [ $i -lt 3 ]; do
	sleep 1
	_start_daemon "$n" -f "$img" -t 2
	_stop_daemon "$old"
	old=$DAEMON_PID
	i=$((i + 1))
done
_verify_fio_check "$n" "3 daemon hand-offs"
_log "3 daemon hand-offs: $FIO_KB KiB verified, no errors"

# 2. Table reloads to a new target name, with fio running.
sectors=131072
name=$n
for mode in flush noflush; do
	new=${n}_$mode
	_verify_fio_start "$n" 1
	sleep 1
	if [ $mode = noflush ]; then
		dmsetup suspend --noflush "$n" || _fail "suspend --noflush"
	else
		dmsetup suspend "$n" || _fail "suspend"
	fi
	dmsetup load "$n" --table "0 $sectors user 0 $sectors $new 1 queue_if_no_daemon" ||
		_fail "load the table with target $new"
	_start_daemon "$new" -f "$img" -t 2
	next=$DAEMON_PID
	dmsetup resume "$n" || _fail "resume onto $new"
	# The old target is gone: its daemon sees ENOTBLK and exits by itself.
	wait "$old"
	_st=$?
	[ "$_st" = 0 ] || _fail "the daemon of $name exited with status $_st"
	DAEMONS=" $next"
	old=$next
	name=$new
	dmsetup table "$n" | grep -q " $new " || _fail "table does not name $new"
	_verify_fio_check "$n" "reload with a $mode suspend"
	_log "reload with a $mode suspend: $FIO_KB KiB verified, no errors"
done

_stop_daemon "$old"
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
rm -f "$img"
exit 0
