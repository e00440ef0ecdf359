#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# A ring's memory is locked memory of the daemon that negotiates it. An
# unprivileged daemon gets rings within its RLIMIT_MEMLOCK, counted in its
# VmLck while it serves; past the limit NEGOTIATE fails with ENOMEM, so
# "--transport ring" stops and says so, and the default transport falls
# back to read() and write() and serves all the same.
. "$(dirname "$0")/test_common.sh"
_prep_test
RUN_AS=$TEST_DIR/run_as
[ -x "$RUN_AS" ] || _fail "run_as not built"

OWNER=1000
n=dmu_mlk_$$
sectors=65536
_create_dev "$n" $sectors 2 uid $OWNER
node=/dev/dm-user/$n
# The test runs as root: the limits bind only the daemons it starts.
vmlck() { awk '/^VmLck:/ { print $2 }' "/proc/$1/status"; }
ring_maps() { grep -c "$node" "/proc/$1/maps"; }

# Within the limit: two rings of 1 MiB of data, plus a few pages of queues
# each, locked and mapped.
ulimit -l 8192 || _fail "ulimit -l 8192"
DAEMON_WRAPPER="$RUN_AS $OWNER $OWNER" _start_daemon "$n" --ram $((sectors * 512)) \
	--threads 2
pid=$DAEMON_PID
lck=$(vmlck $pid)
[ "$lck" -ge 2048 ] && [ "$lck" -le 2176 ] ||
	_fail "two rings count $lck KiB of locked memory, not 2 MiB and their queues"
[ "$(ring_maps $pid)" = 2 ] || _fail "rings mapped: $(ring_maps $pid), not 2"
"$DMU_IO" matrix "/dev/mapper/$n" 0 $((sectors * 512)) ||
	_fail "I/O through the rings"
_stop_daemon $pid
_log "two rings within an 8 MiB limit: $lck KiB locked"

# Past it: a ring is refused with ENOMEM, and the daemon that insists on
# one says why and exits.
ulimit -l 512 || _fail "ulimit -l 512"
if "$RUN_AS" $OWNER $OWNER "$DMUSERD" --transport ring --ram $((sectors * 512)) \
	"$node" > /tmp/$n.out 2>&1; then
	_fail "a ring past RLIMIT_MEMLOCK was granted"
fi
grep -q "Cannot allocate memory" /tmp/$n.out ||
	_fail "refused, but not with ENOMEM: $(cat /tmp/$n.out)"

# The default transport serves without a ring, locking nothing.
DAEMON_WRAPPER="$RUN_AS $OWNER $OWNER" _start_daemon "$n" --ram $((sectors * 512)) \
	--threads 2
pid=$DAEMON_PID
[ "$(ring_maps $pid)" = 0 ] || _fail "a ring mapped past the limit"
[ "$(vmlck $pid)" = 0 ] || _fail "$(vmlck $pid) KiB locked without a ring"
"$DMU_IO" matrix "/dev/mapper/$n" 0 $((sectors * 512)) ||
	_fail "I/O through read() and write() after the fallback"
_stop_daemon $pid
_log "past a 512 KiB limit: ring refused with ENOMEM, read()/write() serve"

dmsetup remove "$n" || _fail "remove $n"
exit 0
