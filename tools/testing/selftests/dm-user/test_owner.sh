#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Access: root creates a device whose node belongs to an unprivileged user;
# that user's daemon serves it and may tune it, a group member may open it
# but not change settings, and anyone else cannot open it at all.
. "$(dirname "$0")/test_common.sh"
_prep_test
RUN_AS=$TEST_DIR/run_as
[ -x "$RUN_AS" ] || _fail "run_as not built"

OWNER=1000 GROUP=2000 MEMBER=1001 STRANGER=1002
n=dmu_own_$$
sectors=65536
_create_dev "$n" $sectors 6 uid $OWNER gid $GROUP mode 0660
node=/dev/dm-user/$n
got=$(stat -c '%a %u %g' "$node") || _fail "no $node"
[ "$got" = "660 $OWNER $GROUP" ] || _fail "node is '$got'"

# A stranger (neither owner nor in the group) cannot open the node, so can
# neither serve it nor read what passes through it.
if "$RUN_AS" $STRANGER $STRANGER "$DMUSER" info "$node" > /tmp/$n.out 2>&1; then
	_fail "a stranger opened $node"
fi
grep -q "Permission denied; $node is mode 660, owner $OWNER, group $GROUP: its owner, a member of its group or root may open it\$" /tmp/$n.out ||
	_fail "stranger refused, but not with EACCES and the node's owner: $(cat /tmp/$n.out)"

# The owner, with no capability at all, serves the device.
DAEMON_WRAPPER="$RUN_AS $OWNER $OWNER" _start_daemon "$n" --ram $((sectors * 512)) \
	--threads 2
pid=$DAEMON_PID
uid=$(awk '/^Uid:/ { print $2 }' /proc/$pid/status)
[ "$uid" = $OWNER ] || _fail "daemon runs as uid $uid"
"$DMU_IO" matrix "/dev/mapper/$n" 0 $((sectors * 512)) ||
	_fail "I/O served by the unprivileged daemon"
_log "unprivileged daemon served the pattern matrix"

# The owner may change settings; a group member may look but not touch.
"$RUN_AS" $OWNER $OWNER "$DMUSER" set "$node" max_queued=77 ||
	_fail "owner could not set max_queued"
[ "$(dmsetup message "$n" 0 get_params | tr ' ' '\n' | grep '^max_queued=')" = max_queued=77 ] ||
	_fail "owner's max_queued not applied"
"$RUN_AS" $MEMBER $GROUP "$DMUSER" info "$node" > /tmp/$n.out 2>&1 ||
	_fail "group member could not open $node: $(cat /tmp/$n.out)"
grep -q "^$n: user target" /tmp/$n.out || _fail "group member's info: $(cat /tmp/$n.out)"
if "$RUN_AS" $MEMBER $GROUP "$DMUSER" set "$node" max_queued=99 > /tmp/$n.out 2>&1; then
	_fail "group member changed settings"
fi
grep -q "Operation not permitted" /tmp/$n.out ||
	_fail "group member refused, but not with EPERM: $(cat /tmp/$n.out)"
[ "$(dmsetup message "$n" 0 get_params | tr ' ' '\n' | grep '^max_queued=')" = max_queued=77 ] ||
	_fail "group member's refused set changed max_queued"
_log "owner may set, group member may not, stranger cannot open"

# The owner's daemon cannot open another device that is not its own.
n2=${n}_root
_create_dev "$n2" 2048
if "$RUN_AS" $OWNER $OWNER "$DMUSER" info "/dev/dm-user/$n2" 2>/dev/null; then
	_fail "uid $OWNER opened root's /dev/dm-user/$n2"
fi

dmsetup remove "$n2" || _fail "remove $n2"
dmsetup remove "$n" || _fail "remove $n"
_expect_exit_after_remove $pid "unprivileged dmuserd"
exit 0
