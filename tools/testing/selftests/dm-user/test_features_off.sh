#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Each no_* feature word turns exactly one operation off: the queue limits
# say so, the kernel never sends it, and the other operations still work.
. "$(dirname "$0")/test_common.sh"
_prep_test

n=dmu_feat_$$
dev=/dev/mapper/$n

check_on() {
	case $1 in
	flush) [ "$(_queue_attr "$n" write_cache)" = "write back" ] ;;
	discard) [ "$(_queue_attr "$n" discard_max_bytes)" != 0 ] ;;
	write_zeroes) [ "$(_queue_attr "$n" write_zeroes_max_bytes)" != 0 ] ;;
	secure_erase) r=$("$DMU_IO" secdiscard "$dev" 0 4096); [ "$r" = OK ] ;;
	esac
}

for off in flush discard write_zeroes secure_erase; do
	_create_dev "$n" 16384 1 "no_$off"
	_start_daemon "$n" -r 8M -S /tmp/$n.stats
	for op in flush discard write_zeroes secure_erase; do
		if [ $op = $off ]; then
			check_on $op && _fail "no_$off: $op still on"
		else
			check_on $op || _fail "no_$off: $op turned off too"
		fi
	done
	case $off in
	flush)
		[ "$(_queue_attr "$n" fua)" = 0 ] || _fail "no_flush: FUA still declared"
		fio --name=f --filename=$dev --rw=write --bs=4k --size=32k \
		    --fsync=1 --ioengine=psync >/dev/null || _fail "fsync with no_flush"
		;;
	discard)
		r=$("$DMU_IO" discard "$dev" 0 65536)
		[ "$r" = EOPNOTSUPP ] || _fail "no_discard: discard gave '$r'"
		;;
	write_zeroes)
		# The block layer falls back to writing zero pages.
		"$DMU_IO" write "$dev" 0 65536 1 direct || _fail "fill"
		r=$("$DMU_IO" zeroout "$dev" 0 65536)
		[ "$r" = OK ] || _fail "no_write_zeroes: zeroout gave '$r'"
		"$DMU_IO" zeroes "$dev" 0 65536 || _fail "zeroout fallback left data"
		;;
	secure_erase)
		r=$("$DMU_IO" secdiscard "$dev" 0 65536)
		[ "$r" = EOPNOTSUPP ] || _fail "no_secure_erase: gave '$r'"
		;;
	esac
	"$DMU_IO" write "$dev" 8192 8192 4 direct || _fail "no_$off: write"
	"$DMU_IO" verify "$dev" 8192 8192 4 direct || _fail "no_$off: verify"
	_stop_daemon "$DAEMON_PID"
	sent=$(_stat /tmp/$n.stats ${off}es)
	[ "$off" = flush ] && { [ "$(_stat /tmp/$n.stats flushes)" = 0 ] ||
		_fail "no_flush: daemon got flushes"; }
	[ "$off" = discard ] && { [ "$(_stat /tmp/$n.stats discards)" = 0 ] ||
		_fail "no_discard: daemon got discards"; }
	[ "$off" = write_zeroes ] && { [ "$(_stat /tmp/$n.stats write_zeroes)" = 0 ] ||
		_fail "no_write_zeroes: daemon got write-zeroes"; }
	[ "$off" = secure_erase ] && { [ "$(_stat /tmp/$n.stats secure_erases)" = 0 ] ||
		_fail "no_secure_erase: daemon got secure erases"; }
	: "$sent"
	dmsetup remove "$n" || _fail "remove"
	DEVS=""
	_log "no_$off: only $off is off"
done

# block_size 4096 sets the logical block size; 512-byte direct I/O is refused.
_create_dev "$n" 16384 2 block_size 4096
_start_daemon "$n" -r 8M
[ "$(_queue_attr "$n" logical_block_size)" = 4096 ] || _fail "logical_block_size"
"$DMU_IO" write "$dev" 512 512 1 direct 2>/dev/null && _fail "512-byte direct write accepted"
"$DMU_IO" write "$dev" 4096 8192 1 direct || _fail "4k write"
"$DMU_IO" verify "$dev" 4096 8192 1 direct || _fail "4k verify"
exit 0
