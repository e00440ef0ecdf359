#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make bench, inside the guest: fio against dm-user (reference daemon, RAM
# store) and the in-kernel and userspace peers, all in this one boot so the
# ratios compare like with like. Each figure is the median of $RUNS runs,
# taken in rounds that visit every device once.
export DM_DISABLE_UDEV=1
RUNS=${RUNS:-3}
SECS=${SECS:-4}
SIZE_MB=256
fail() { echo "bench: $*" >&2; exit 1; }

# --- devices -------------------------------------------------------------
modprobe brd rd_nr=2 rd_size=$((SIZE_MB * 1024)) || fail "modprobe brd"
modprobe null_blk nr_devices=1 || fail "modprobe null_blk"
dmsetup create bench_linear --table "0 $((SIZE_MB * 2048)) linear /dev/ram1 0" ||
	fail "dm-linear"
modprobe loop || fail "modprobe loop"
truncate -s ${SIZE_MB}M /tmp/loop.img || fail "truncate /tmp/loop.img"
loopdev=$(losetup -f) && losetup "$loopdev" /tmp/loop.img || fail "losetup"
nbdkit -U /tmp/nbd.sock memory ${SIZE_MB}M || fail "nbdkit"
modprobe nbd || fail "modprobe nbd"
nbd-client -u /tmp/nbd.sock /dev/nbd0 -b 4096 >/dev/null 2>&1 || fail "nbd-client"
dmsetup create bench_user --table "0 $((SIZE_MB * 2048)) user 0 $((SIZE_MB * 2048)) bench" ||
	fail "dm-user create"
./dmuserd -r ${SIZE_MB}M -t 4 -p /tmp/bench.pid /dev/dm-user/bench &
daemon=$!
i=0
while [ ! -s /tmp/bench.pid ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "dmuserd did not start"; sleep 0.1
done

DEVICES="dm-user:/dev/mapper/bench_user brd:/dev/ram0 null_blk:/dev/nullb0 dm-linear/brd:/dev/mapper/bench_linear loop/tmpfs:$loopdev nbd/nbdkit:/dev/nbd0"
# name rw bs engine depth
TESTS="rr4k-qd1:randread:4k:psync:1 rw4k-qd1:randwrite:4k:psync:1 rr4k-qd16:randread:4k:io_uring:16 rw4k-qd16:randwrite:4k:io_uring:16 seq128k:read:128k:io_uring:4"

# Prints "iops kib_per_s" of one run.
run_fio() {
	fio --name=b --filename="$1" --direct=1 --rw="$2" --bs="$3" \
	    --ioengine="$4" --iodepth="$5" --runtime="$SECS" --time_based \
	    --size=$((SIZE_MB / 2))M --output-format=terse --terse-version=3 \
	    2>/dev/null | awk -F';' '{ print $8 + $49, $7 + $48 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

: > /tmp/bench.raw
: > /tmp/bench.results
for t in $TESTS; do
	IFS=: read -r tname rw bs eng qd <<EOT
$t
EOT
	# Rounds go over all devices in turn, so that a slow spell of the
	# emulator (the host is shared) lands on every device, not on one.
	r=0
	while [ $r -lt "$RUNS" ]; do
		for d in $DEVICES; do
			echo "${d%%:*} $(run_fio "${d#*:}" "$rw" "$bs" "$eng" "$qd")" >> /tmp/bench.raw
		done
		r=$((r + 1))
	done
	for d in $DEVICES; do
		dname=${d%%:*}
		awk -v d="$dname" '$1 == d { print $2 + 0 }' /tmp/bench.raw > /tmp/iops
		awk -v d="$dname" '$1 == d { print $3 + 0 }' /tmp/bench.raw > /tmp/bw
		echo "$tname $dname $(median < /tmp/iops) $(median < /tmp/bw) $(sort -n /tmp/iops | head -n 1) $(sort -n /tmp/iops | tail -n 1)" >> /tmp/bench.results
	done
	: > /tmp/bench.raw
	echo "# $tname done" >&2
done

kill $daemon; wait $daemon
dmsetup remove bench_user
nbd-client -d /dev/nbd0 >/dev/null 2>&1
losetup -d "$loopdev"
dmsetup remove bench_linear

echo
echo "fio, $SECS s per run, median of $RUNS runs; Linux $(uname -r) under QEMU"
echo "ratio = device / dm-user (above 1: faster than dm-user); IOPS range = slowest and fastest run"
awk '
{ iops[$1, $2] = $3; bw[$1, $2] = $4; lo[$1, $2] = $5; hi[$1, $2] = $6
  if (!($1 in seen)) { seen[$1] = 1; tests[++nt] = $1 }
  if (!($2 in dseen)) { dseen[$2] = 1; devs[++nd] = $2 } }
END {
  for (i = 1; i <= nt; i++) {
    t = tests[i]
    printf "\n%-14s %10s %9s %7s %17s\n", t, "IOPS", "MB/s", "ratio", "IOPS range"
    base = iops[t, "dm-user"]
    for (j = 1; j <= nd; j++) {
      d = devs[j]
      # Parenthesised: a bare ">" in printf arguments is a redirection.
      printf "%-14s %10d %9.1f %7.2f %8d-%-8d\n", d, iops[t, d],
        bw[t, d] * 1024 / 1e6, (base > 0 ? iops[t, d] / base : 0),
        lo[t, d], hi[t, d]
    }
  }
  q = iops["rr4k-qd1", "nbd/nbdkit"]
  if (q > 0)
    printf "\ngoal: dm-user / nbd at QD1 4 KiB random read = %.2f (want >= 2)\n",
      iops["rr4k-qd1", "dm-user"] / q
}' /tmp/bench.results
