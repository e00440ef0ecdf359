#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# dmuser@.service without systemd: the guest has none, so this test runs
# the command lines of the unit the packages ship, as systemd would run
# them: the Environment= defaults, then /etc/dmuser/<name>.conf (the
# shipped example with this test's store), %i the instance, "${VAR}" one
# word and "$VAR" split at spaces, ExecStart under the unit's capability
# bounding set with no new privileges, and $NOTIFY_SOCKET read by
# notify_listen. It checks that the device comes up as the file says, that
# READY=1 comes once every channel is open, that fio verify sees no error
# while the daemon is killed and the unit's commands start it again (as
# Restart=on-failure does), that SIGTERM ends the daemon with status 0
# after STOPPING=1 and leaves the device, and that create --if-missing
# refuses a device that is not the one the file describes.
. "$(dirname "$0")/test_common.sh"
_prep_test
command -v fio >/dev/null || _skip "fio not installed"
# util-linux's, by its path: busybox sh runs its own applet of that name,
# which cannot bound capabilities, for a bare "setpriv".
SETPRIV=/usr/bin/setpriv
if [ ! -x "$SETPRIV" ] || [ -L "$SETPRIV" ]; then
	_skip "no util-linux setpriv"
fi

unit=$TEST_DIR/systemd/dmuser@.service
[ -r "$unit" ] || _fail "no unit file at $unit"
n=dmu_svc_$$
img=/tmp/$n.img
conf=/etc/dmuser/$n.conf
msgs=/tmp/$n.notify.log
sock=/tmp/$n.notify
LISTEN_PID=""

# shellcheck disable=SC2317 # run by the EXIT trap
_cleanup_service() {
	[ -z "$LISTEN_PID" ] || kill "$LISTEN_PID" 2>/dev/null
	rm -f "$conf" "$sock" "$img"
	_cleanup_test
}
trap _cleanup_service EXIT

truncate -s 64M "$img" || _fail "truncate $img"
mkdir -p /etc/dmuser || _fail "mkdir /etc/dmuser"
# The example, with this test's store and size.
sed -e "s|^DMUSER_STORE=.*|DMUSER_STORE=\"--file $img\"|" \
    -e "s|^DMUSER_SIZE=.*|DMUSER_SIZE=64M|" \
    "$TEST_DIR/systemd/example.conf" > "$conf" || _fail "write $conf"
grep -q "^DMUSER_FEATURES=" "$conf" || _fail "the example sets no DMUSER_FEATURES"

# _unit_values <key>: the values of <key>= lines of [Service], in order.
_unit_values() {
	sed -n "s/^$1=//p" "$unit"
}

# The environment systemd gives the commands: defaults, then the file.
for a in $(_unit_values Environment); do
	export "${a?}"
done
set -a
# shellcheck disable=SC1090 # the file the test wrote
. "$conf"
set +a

# _unit_cmd <command line>: as systemd reads an Exec line: its "+" prefix
# dropped (it only lifts the sandbox), %i the instance, our build of
# dmuser for the installed one, ${VAR} one word and $VAR split at spaces
# (the variables are exported), ready for "sh -c 'exec ...'".
_unit_cmd() {
	echo "$1" | sed -e 's/^+//' -e "s/%i/$n/g" \
		-e "s|/usr/bin/dmuser |$DMUSER |" \
		-e 's/\${\([A-Z_]*\)}/"${\1}"/g'
}

# _start_unit: ExecStartPre lines, then ExecStart in the background under
# the unit's bounding set (DAEMON_PID); waits for the next READY=1.
_start_unit() {
	_unit_values ExecStartPre > "/tmp/$n.pre"
	while read -r _line; do
		case $_line in
		# The guest loaded the module with insmod: modprobe has no
		# index of it. Being loaded is what the line ensures.
		*/modprobe\ dm_user)
			grep -q '^dm_user ' /proc/modules ||
				_fail "ExecStartPre: dm_user not loaded" ;;
		*)
			sh -c "exec $(_unit_cmd "$_line")" ||
				_fail "ExecStartPre failed: $_line" ;;
		esac
	done < "/tmp/$n.pre"
	_ready_before=$(grep -c '^READY=1$' "$msgs")
	_caps=$(_unit_values CapabilityBoundingSet | tr '[:upper:]' '[:lower:]' |
		sed -e 's/cap_/+/g' -e 's/ /,/g')
	_nnp=""
	[ "$(_unit_values NoNewPrivileges)" = yes ] && _nnp=--no-new-privs
	# shellcheck disable=SC2086 # _nnp is one option or none
	NOTIFY_SOCKET=$sock "$SETPRIV" $_nnp --inh-caps=-all \
		--bounding-set="-all,$_caps" \
		sh -c "exec $(_unit_cmd "$(_unit_values ExecStart)")" &
	DAEMON_PID=$!
	DAEMONS="$DAEMONS $DAEMON_PID"
	_i=0
	while [ "$(grep -c '^READY=1$' "$msgs")" -le "$_ready_before" ]; do
		kill -0 "$DAEMON_PID" 2>/dev/null || _fail "ExecStart exited before READY=1"
		_i=$((_i + 1))
		[ $_i -lt 100 ] || _fail "no READY=1 in 10 s"
		sleep 0.1
	done
}

: > "$msgs"
"$TEST_DIR/notify_listen" "$sock" "$msgs" 300 &
LISTEN_PID=$!
_i=0
until [ -S "$sock" ]; do
	_i=$((_i + 1))
	[ $_i -lt 50 ] || _fail "notify_listen made no socket"
	sleep 0.1
done

DEVS="$DEVS $n"
_start_unit
grep -q "^STATUS=serving $n on 2 channels$" "$msgs" ||
	_fail "no STATUS line for 2 channels: $(cat "$msgs")"
# The device is what the file describes.
t=$(dmsetup table "$n")
case $t in
"0 131072 user 0 131072 $n 8 uid 0 gid 6 mode 0660 no_daemon_timeout 60") ;;
*) _fail "table: $t" ;;
esac
m=$(stat -c '%a %u %g' "/dev/dm-user/$n")
[ "$m" = "660 0 6" ] || _fail "node mode and owner: $m"
# It serves with the unit's bounds: CAP_DAC_OVERRIDE (1), CAP_IPC_LOCK
# (14) and CAP_SYS_RESOURCE (24), and no new privileges.
b=$(sed -n 's/^CapBnd:[[:space:]]*//p' "/proc/$DAEMON_PID/status")
[ "$b" = 0000000001004002 ] || _fail "the daemon's bounding set: $b"
p=$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' "/proc/$DAEMON_PID/status")
[ "$p" = 1 ] || _fail "the daemon's NoNewPrivs: $p"
_log "started: $t; node $m; capabilities bounded to $b"

# Restart=on-failure: the daemon killed, the unit's commands again, with
# fio verify running across; the device is kept, so nothing is lost.
_verify_fio_start "$n" 8
restarts=0
while [ $restarts -lt 3 ] && kill -0 "$FIO_PID" 2>/dev/null; do
	sleep 1
	_kill_daemon
	sleep "$(_unit_values RestartSec | tr -d s)"
	_start_unit
	restarts=$((restarts + 1))
done
_verify_fio_check "$n" "fio across $restarts restarts"
[ "$restarts" -ge 2 ] || _fail "only $restarts restarts: fio ended too soon"
e=$(_rw_errors "$n")
[ "${e:-none}" = 0 ] || _fail "the target counted $e failed reads or writes"
_log "$restarts restarts, $(grep -c '^READY=1$' "$msgs") READY=1, $FIO_KB KiB verified, 0 errors"

# systemctl stop: SIGTERM, status 0 after STOPPING=1, the device stays.
[ "$(_unit_values KillSignal)" = SIGTERM ] || _fail "KillSignal is not SIGTERM"
_stop_daemon "$DAEMON_PID"
grep -q '^STOPPING=1$' "$msgs" || _fail "no STOPPING=1: $(cat "$msgs")"
dmsetup info "$n" >/dev/null 2>&1 || _fail "the stop removed the device"

# create --if-missing takes the device it would make, and nothing else.
"$DMUSER" create "$n" --if-missing --size 64M || _fail "--if-missing on the same device"
out=$("$DMUSER" create "$n" --if-missing --size 32M 2>&1) &&
	_fail "--if-missing took a device of another size"
case $out in
*"exists as user target '$n' of 131072 sectors, not '$n' of 65536"*) ;;
*) _fail "--if-missing, other size: $out" ;;
esac
out=$("$DMUSER" create "$n" --if-missing --size 64M --name other 2>&1) &&
	_fail "--if-missing took a device with another target name"
case $out in
*"not 'other' of 131072"*) ;;
*) _fail "--if-missing, other name: $out" ;;
esac
lin=${n}_lin
dmsetup create "$lin" --table "0 8 zero" || _fail "dmsetup create $lin"
DEVS="$DEVS $lin"
out=$("$DMUSER" create "$lin" --if-missing --size 4K 2>&1) &&
	_fail "--if-missing took a zero device"
case $out in
*"exists, and is not one user target: 0 8 zero"*) ;;
*) _fail "--if-missing, zero target: $out" ;;
esac

# --notify with a socket nobody listens on: the daemon says so and stops.
NOTIFY_SOCKET=/tmp/$n.nobody "$DMUSERD" --notify -f "$img" "$n" \
	2> "/tmp/$n.err" && _fail "--notify to a missing socket exited 0"
grep -q "sd_notify READY=1" "/tmp/$n.err" ||
	_fail "no error naming sd_notify: $(cat "/tmp/$n.err")"
# Run by hand, without $NOTIFY_SOCKET, --notify changes nothing.
_start_daemon "$n" --notify -f "$img"
_stop_daemon "$DAEMON_PID"
exit 0
