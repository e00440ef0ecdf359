#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Table lines: good ones load and print back exactly; each bad one is
# refused with its own precise error in the kernel log; names are unique.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_tbl_$$

good() {
	table=$1
	dmsetup create "$n" --table "$table" || _fail "refused good table: $table"
	got=$(dmsetup table "$n")
	dmsetup remove "$n" || _fail "remove $n"
	[ "$got" = "$table" ] || _fail "round trip: gave '$table', got '$got'"
	_log "ok: $table"
}

bad() {
	table=$1
	want=$2
	dmesg -c >/dev/null
	if dmsetup create "$n" --table "$table" 2>/dev/null; then
		dmsetup remove "$n"
		_fail "accepted bad table: $table"
	fi
	dmsetup remove "$n" >/dev/null 2>&1
	dmesg | grep -q "user: $want" ||
		_fail "table '$table': no kernel error '$want'; log: $(dmesg | tail -3)"
	_log "refused ($want): $table"
}

good "0 1024 user 0 1024 $n"
good "0 2048 user 0 2048 $n 1 no_flush"
good "0 8192 user 0 8192 $n 7 max_queued 64 no_discard block_size 4096 no_write_zeroes no_secure_erase"
good "0 8192 user 0 8192 $n 4 no_secure_erase no_write_zeroes no_discard no_flush"
good "0 1024 user 0 1024 $n 4 request_timeout 7 no_daemon_timeout 0"
good "0 1024 user 0 1024 $n 3 queue_if_no_daemon request_timeout 1000000"
good "0 1024 user 0 1024 $n 6 mode 0660 uid 1000 gid 4294967294"
good "0 1024 user 0 1024 $n 2 mode 0001"
good "0 1024 user 0 1024 $n 2 max_queued 1"
good "0 1024 user 0 1024 $n 2 max_queued 1048576"
good "0 1024 user 0 1024 A-z_0.9+x:y@z"

long=$(head -c 65 /dev/zero | tr '\0' x)
bad "0 1024 user 0 1024" "Invalid argument count"
bad "0 1024 user x 1024 $n" "Invalid start sector"
bad "0 1024 user 8 1024 $n" "Start argument does not match the target start"
bad "0 1024 user 0 2048 $n" "Length argument does not match the target length"
bad "0 1024 user 0 1k $n" "Invalid length"
bad "0 1024 user 0 1024 a/b" "Invalid name"
bad "0 1024 user 0 1024 ." "Invalid name"
bad "0 1024 user 0 1024 .." "Invalid name"
bad "0 1024 user 0 1024 $long" "Invalid name"
# The driver core makes '!' a '/': neither may take the node out of
# /dev/dm-user or into a subdirectory of it.
bad "0 1024 user 0 1024 ..!evil_$$" "Invalid name"
bad "0 1024 user 0 1024 a!b_$$" "Invalid name"
bad "0 1024 user 0 1024 x\$y" "Invalid name"
bad "0 1024 user 0 1024 *" "Invalid name"
# Latin-1 letters are letters to the kernel's isalnum(), not to the rule.
bad "0 1024 user 0 1024 caf$(printf '\351')_$$" "Invalid name"
[ ! -e "/dev/evil_$$" ] && [ ! -e "/dev/dm-user/a" ] ||
	_fail "a refused name still made a node: $(ls /dev /dev/dm-user)"
bad "0 1024 user 0 1024 $n 1 sparkle" "Unrecognised feature requested"
bad "0 1024 user 0 1024 $n 2 no_flush" "Invalid number of feature arguments"
bad "0 1024 user 0 1024 $n 99 no_flush" "Invalid number of feature arguments"
bad "0 1024 user 0 1024 $n 2 no_flush no_flush" "Feature given more than once"
bad "0 1024 user 0 1024 $n 1 block_size" "block_size needs a value"
bad "0 1024 user 0 1024 $n 2 block_size 1000" "block_size must be a power of two"
bad "0 1024 user 0 1024 $n 2 block_size 8192" "Invalid block_size"
bad "0 1024 user 0 1024 $n 2 block_size 256" "Invalid block_size"
bad "0 1024 user 0 1024 $n 1 uid" "uid needs a value"
bad "0 1024 user 0 1024 $n 2 uid 4294967295" "Invalid uid"
bad "0 1024 user 0 1024 $n 2 uid -1" "Invalid uid"
bad "0 1024 user 0 1024 $n 2 gid x" "Invalid gid"
bad "0 1024 user 0 1024 $n 1 mode" "mode needs a value"
bad "0 1024 user 0 1024 $n 2 mode 660" "Invalid mode"
bad "0 1024 user 0 1024 $n 2 mode 0800" "Invalid mode"
bad "0 1024 user 0 1024 $n 2 mode 1777" "Invalid mode"
bad "0 1024 user 0 1024 $n 2 mode 00660" "Invalid mode"
# devtmpfs would make 0000 a 0600 node: refused, never widened.
bad "0 1024 user 0 1024 $n 2 mode 0000" "Invalid mode"
bad "0 1024 user 0 1024 $n 2 max_queued 0" "Invalid max_queued"
bad "0 1024 user 0 1024 $n 2 no_daemon_timeout 1000001" "Invalid no_daemon_timeout"
bad "0 1024 user 0 1024 $n 2 no_daemon_timeout -1" "Invalid no_daemon_timeout"
bad "0 1024 user 0 1024 $n 1 request_timeout" "request_timeout needs a value"
bad "0 1024 user 0 1024 $n 2 request_timeout x" "Invalid request_timeout"
bad "0 1024 user 0 1024 $n 3 queue_if_no_daemon no_daemon_timeout 5" "Both queue_if_no_daemon and no_daemon_timeout"
bad "0 1001 user 0 1001 $n 2 block_size 4096" "Target start and length must be multiples of block_size"
bad "0 1024 user 0 1024 $n 1 no_flush extra" "Unexpected arguments after the features"

# The node: root only, named after the target, not the device.
live=${n}_live
dmsetup create "$live" --table "0 1024 user 0 1024 $n" || _fail "create $live"
DEVS="$live"
mode=$(stat -c '%F %a %u %g' "/dev/dm-user/$n") || _fail "no /dev/dm-user/$n"
[ "$mode" = "character special file 600 0 0" ] || _fail "node is '$mode'"
dmsetup remove "$live" || _fail "remove $live"
# uid, gid and mode set the node's owner, group and permissions.
dmsetup create "$live" --table "0 1024 user 0 1024 $n 6 uid 1234 gid 5678 mode 0640" ||
	_fail "create $live with uid, gid and mode"
mode=$(stat -c '%F %a %u %g' "/dev/dm-user/$n") || _fail "no /dev/dm-user/$n"
[ "$mode" = "character special file 640 1234 5678" ] || _fail "node is '$mode'"

# A second target may not take a live name, alone or beside another target.
bad "0 1024 user 0 1024 $n" "Name already in use by another user target"
bad "0 1024 user 0 1024 ${n}_x
1024 1024 user 1024 1024 $n" "Name already in use by another user target"
[ ! -e "/dev/dm-user/${n}_x" ] || _fail "failed table left /dev/dm-user/${n}_x"
dmsetup remove "$live" || _fail "remove $live"
DEVS=""
[ ! -e "/dev/dm-user/$n" ] || _fail "/dev/dm-user/$n left behind after remove"
# Once removed, the name is free again.
good "0 1024 user 0 1024 $n"
# Two user targets in one table, each with its own node.
dmsetup create "$n" --table "0 1024 user 0 1024 ${n}_a
1024 1024 user 1024 1024 ${n}_b" || _fail "two-target table"
DEVS="$n"
[ -c "/dev/dm-user/${n}_a" ] && [ -c "/dev/dm-user/${n}_b" ] ||
	_fail "two-target table: nodes missing"
_log "all table checks passed"
exit 0
