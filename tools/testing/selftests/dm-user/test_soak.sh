#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Soak: for DMUSER_SOAK_SECONDS (default 30; the debug lane runs 240), fio
# writes and verifies (crc32c) round after round while the daemon is killed
# with SIGKILL every 2 to 4 seconds and started again; then
# DMUSER_SOAK_CYCLES (default 50; debug lane 200) cycles of create, serve,
# write and read back a pattern, and remove. Prints the figures. Any verify
# error, any I/O error fio sees or the target counts, or any leftover node
# fails it; the debug lane's kernel_report.sh then looks for leaks.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"

secs=${DMUSER_SOAK_SECONDS:-30}
cycles=${DMUSER_SOAK_CYCLES:-50}
n=dmu_soak_$$
img=/tmp/$n.img
truncate -s 64M "$img" || _fail "truncate $img"
_create_dev "$n" 131072 1 queue_if_no_daemon
_start_daemon "$n" -f "$img" -t 2

start=$(date +%s)
kills=0 rounds=0 kb=0
while [ $(($(date +%s) - start)) -lt "$secs" ]; do
	_verify_fio_start "$n" 16
	while kill -0 $FIO_PID 2>/dev/null; do
		# 2 to 4 s, so kills land in every phase of the I/O.
		sleep $((2 + kills % 3))
		kill -0 $FIO_PID 2>/dev/null || break
		_restart_daemon "$n" -f "$img" -t 2
		kills=$((kills + 1))
	done
	rounds=$((rounds + 1))
	_verify_fio_check "$n" "soak round $rounds (after $kills kills)"
	kb=$((kb + FIO_KB))
done
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
_log "soak: $secs s, $rounds fio rounds, $kills daemon kills survived, $(_status_value "$n" requeued) requests requeued, $kb KiB verified, 0 verify errors, 0 I/O errors"
[ "$kills" -ge 3 ] || _fail "only $kills kills: fio rounds too short to test anything"
_stop_daemon "$DAEMON_PID"
dmsetup remove "$n" || _fail "remove $n"
DEVS=""
rm -f "$img"

# Create, serve, write and read back, remove: nothing may be left behind.
c=0
while [ $c -lt "$cycles" ]; do
	m=${n}_c
	_create_dev "$m" 2048
	_start_daemon "$m" --ram 1M -t 2
	"$DMU_IO" write "/dev/mapper/$m" $(((c % 16) * 4096)) 65536 $c direct ||
		_fail "cycle $c: write"
	"$DMU_IO" verify "/dev/mapper/$m" $(((c % 16) * 4096)) 65536 $c direct ||
		_fail "cycle $c: read back"
	# Alternate: remove under a live daemon, or stop the daemon first.
	if [ $((c % 2)) = 0 ]; then
		dmsetup remove "$m" || _fail "cycle $c: remove"
		_expect_exit_after_remove "$DAEMON_PID" "cycle $c daemon"
	else
		_stop_daemon "$DAEMON_PID"
		dmsetup remove "$m" || _fail "cycle $c: remove"
		DEVS=""
	fi
	[ ! -e "/dev/dm-user/$m" ] || _fail "cycle $c: /dev/dm-user/$m left behind"
	[ ! -e "/dev/mapper/$m" ] || _fail "cycle $c: /dev/mapper/$m left behind"
	c=$((c + 1))
done
left=$(ls /sys/class/dm-user 2>/dev/null | wc -l)
[ "$left" = 0 ] || _fail "$left dm-user nodes left in /sys/class/dm-user"
_log "soak: $cycles create/serve/remove cycles, nothing left behind"
exit 0
