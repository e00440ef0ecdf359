#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make bench, inside the guest: fio against dm-user (reference daemon, RAM
# store) and the in-kernel and userspace peers, all in this one boot so the
# ratios compare like with like. Each figure is the median of $RUNS runs.
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

: > /tmp/bench.results
for t in $TESTS; do
	IFS=: read -r tname rw bs eng qd <<EOT
$t
EOT
	for d in $DEVICES; do
		dname=${d%%:*}
		dev=${d#*:}
		: > /tmp/iops; : > /tmp/bw
		i=0
		while [ $i -lt "$RUNS" ]; do
			set -- $(run_fio "$dev" "$rw" "$bs" "$eng" "$qd")
			echo "${1:-0}" >> /tmp/iops
			echo "${2:-0}" >> /tmp/bw
			i=$((i + 1))
		done
		echo "$tname $dname $(median < /tmp/iops) $(median < /tmp/bw)" >> /tmp/bench.results
		echo "# $tname $dname done" >&2
	done
done

kill $daemon; wait $daemon
dmsetup remove bench_user
nbd-client -d /dev/nbd0 >/dev/null 2>&1
losetup -d "$loopdev"
dmsetup remove bench_linear

echo
echo "fio, $SECS s per run, median of $RUNS runs; Linux $(uname -r) under QEMU"
echo "ratio = device / dm-user (above 1: faster than dm-user)"
awk '
{ iops[$1, $2] = $3; bw[$1, $2] = $4
  if (!($1 in seen)) { seen[$1] = 1; tests[++nt] = $1 }
  if (!($2 in dseen)) { dseen[$2] = 1; devs[++nd] = $2 } }
END {
  for (i = 1; i <= nt; i++) {
    t = tests[i]
    printf "\n%-14s %10s %9s %7s\n", t, "IOPS", "MB/s", "ratio"
    base = iops[t, "dm-user"]
    for (j = 1; j <= nd; j++) {
      d = devs[j]
      # Parenthesised: a bare ">" in printf arguments is a redirection.
      printf "%-14s %10d %9.1f %7.2f\n", d, iops[t, d], bw[t, d] * 1024 / 1e6,
        (base > 0 ? iops[t, d] / base : 0)
    }
  }
  q = iops["rr4k-qd1", "nbd/nbdkit"]
  if (q > 0)
    printf "\ngoal: dm-user / nbd at QD1 4 KiB random read = %.2f (want >= 2)\n",
      iops["rr4k-qd1", "dm-user"] / q
}' /tmp/bench.results
