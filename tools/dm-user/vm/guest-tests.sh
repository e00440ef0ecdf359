#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Test runner for inside the guest (busybox sh), run from the payload dir:
#   guest-tests.sh <testlist-file> [<per-test-timeout-s, 300>]
# Each list line is "<path relative to the payload dir> [<timeout-s>]"; blank
# lines and lines starting with # are ignored. Prints TAP 13; a test exiting 4
# (kselftest's skip code) is a SKIP. Exits 0 when no test failed.
set -u

list=${1:?usage: guest-tests.sh <testlist-file> [<per-test-timeout-s>]}
deftmo=${2:-300}
# The cleanup kills every process outside this session: never on a real host.
if [ ! -e /etc/dmuser-guest.conf ]; then
	echo "guest-tests: refusing to run outside a run-guest.sh guest"
	exit 1
fi
[ -r "$list" ] || { echo "guest-tests: cannot read test list '$list'"; exit 1; }

tests=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list")
total=$(printf '%s\n' "$tests" | grep -c .)
tmp=$(mktemp -d)
mysid=$(sed 's/.*) //' /proc/$$/stat | cut -d' ' -f4)

# Every process a test starts lives in the test's own session (setsid below),
# even daemons that re-parent to init, while this runner, its output reader
# and /init's watchdog stay in ours: so a leftover is any process of another
# session that is not a kernel thread (PF_KTHREAD in the stat flags).
leftovers() {
	for d in /proc/[0-9]*; do
		st=$(cat "$d/stat" 2>/dev/null) || continue
		set -- ${st##*) }
		[ "$4" = "$mysid" ] || [ $(($7 & 0x200000)) != 0 ] ||
			echo "${d#/proc/}"
	done
}

cleanup() {
	p=$(leftovers)
	if [ -n "$p" ]; then
		kill -TERM $p 2>/dev/null
		sleep 1
		p=$(leftovers)
		[ -z "$p" ] || kill -KILL $p 2>/dev/null
	fi
	awk '$2 ~ "^/mnt/" { print $2 }' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	dmsetup remove_all --force >/dev/null 2>&1
	# Module parameters (brd size, null_blk config) must not leak into the
	# next test; a module still in use just stays.
	for m in ublk_drv nbd null_blk brd loop; do rmmod "$m" 2>/dev/null; done
}

echo "TAP version 13"
echo "1..$total"
# make check PACKAGED=1 (packaged-payload.sh): say so, and from which.
[ -r packaged.txt ] && echo "# $(head -n 1 packaged.txt)"
n=0 pass=0 fail=0 skip=0
printf '%s\n' "$tests" | {
while read -r name tmo rest; do
	n=$((n + 1))
	tmo=${tmo:-$deftmo}
	case $name in /*) cmd=$name ;; *) cmd=./$name ;; esac
	echo "# running: $name"
	rm -f "$tmp/out" "$tmp/timedout"
	mkfifo "$tmp/out"
	sed 's/^/# /' <"$tmp/out" &
	rpid=$!
	start=$(date +%s)
	setsid "$cmd" >"$tmp/out" 2>&1 </dev/null &
	tpid=$!
	# Own session for the watchdog too, so killing its group also ends
	# its sleep.
	setsid sh -c 'sleep "$1"; : >"$2"; kill -TERM -"$3"; sleep 2;
		kill -KILL -"$3"' sh "$tmo" "$tmp/timedout" "$tpid" 2>/dev/null &
	wpid=$!
	wait "$tpid" 2>/dev/null
	rc=$?
	kill -KILL -"$wpid" 2>/dev/null
	wait "$wpid" 2>/dev/null
	kill -TERM -"$tpid" 2>/dev/null
	cleanup
	# A process stuck in the kernel may keep the pipe open: don't wait
	# on the reader forever.
	i=0
	while kill -0 "$rpid" 2>/dev/null && [ $i -lt 10 ]; do
		sleep 0.5; i=$((i + 1))
	done
	if kill -0 "$rpid" 2>/dev/null; then
		echo "# (unkillable processes left behind by $name)"
		kill "$rpid" 2>/dev/null
	fi
	wait "$rpid" 2>/dev/null
	echo "# $name: exit $rc after $(($(date +%s) - start)) s"
	if [ -e "$tmp/timedout" ]; then
		echo "not ok $n $name # TIMEOUT ${tmo}s"
		fail=$((fail + 1))
	elif [ "$rc" = 0 ]; then
		echo "ok $n $name"
		pass=$((pass + 1))
	elif [ "$rc" = 4 ]; then
		echo "ok $n $name # SKIP"
		skip=$((skip + 1))
	else
		echo "not ok $n $name"
		fail=$((fail + 1))
	fi
done
echo "# dm-user-summary: pass=$pass fail=$fail skip=$skip"
rm -rf "$tmp"
[ "$fail" = 0 ]
}
