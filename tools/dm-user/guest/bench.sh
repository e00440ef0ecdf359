#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make bench, inside the guest: fio against dm-user (the reference daemon
# with its null, RAM and file stores, its NBD back end over the nbdkit that
# the kernel's nbd client serves too), ublk (null and loop, when make bench
# could build ublksrv) and the in-kernel and userspace peers, all in this one
# boot so that the ratios compare like with like. Each figure is the median
# of $RUNS runs, taken in rounds that visit every device once, with the
# slowest and fastest run beside it and the guest CPU time per I/O.
#
# Then the memory of idle devices and of queued requests.
#
# Lines starting "csv <file>: " are the tables again as CSV; the host writes
# them to build/<file>.
export DM_DISABLE_UDEV=1
RUNS=${RUNS:-3}
SECS=${SECS:-4}
SIZE_MB=256
# Like for like: dm-user serves with THREADS channels (one thread each);
# ublk gets THREADS queues of UBLK_DEPTH requests. One, the reference
# daemon's default: in a guest of two vCPUs fio keeps one busy. The -2t
# and -2q rows serve with two for both.
THREADS=1
UBLK_DEPTH=64
IDLE_DEVICES=64
MEM_ROUNDS=3
QUEUED=10000
fail() { echo "bench: $*" >&2; exit 1; }
csv() { echo "csv $1: $2"; }
# Whether the kernel's user copies run "rep movsb" (see BENCH_CPU in the
# Makefile): it changes every figure that copies to or from userspace.
if grep -qw erms /proc/cpuinfo; then
	echo "bench: guest CPU has ERMS: user copies run rep movsb (slow under TCG)"
else
	echo "bench: guest CPU without ERMS: user copies run rep movsq"
fi

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

# wait_file <path> <what>: up to 10 s for a daemon's pid file.
wait_file() {
	_wf=0	# its own counter: callers loop on i
	while [ ! -s "$1" ]; do
		_wf=$((_wf + 1)); [ $_wf -lt 100 ] || fail "$2 did not start"; sleep 0.1
	done
}

# user_dev <name> <daemon options...>: a dm-user device and its daemon
# (THREADS threads unless the options say otherwise).
DAEMONS=""
user_dev() {
	_n=$1
	shift
	dmsetup create "$_n" --table "0 $((SIZE_MB * 2048)) user 0 $((SIZE_MB * 2048)) $_n" ||
		fail "dm-user create $_n"
	./dmuserd -t $THREADS "$@" -p "/tmp/$_n.pid" "/dev/dm-user/$_n" &
	DAEMONS="$DAEMONS $!"
	wait_file "/tmp/$_n.pid" "dmuserd for $_n"
}
user_dev bench_null -n ${SIZE_MB}M
user_dev bench_null_2t -n ${SIZE_MB}M -t 2
user_dev bench_null_poll -n ${SIZE_MB}M --busy-poll 200
user_dev bench_null_rw -n ${SIZE_MB}M -T rw
user_dev bench_null_rb -n ${SIZE_MB}M -B
user_dev bench_null_copy -n ${SIZE_MB}M -c -T rw
user_dev bench_null_rbwb -n ${SIZE_MB}M -B -W
user_dev bench_ram -r ${SIZE_MB}M
truncate -s ${SIZE_MB}M /tmp/user.img || fail "truncate /tmp/user.img"
user_dev bench_file -f /tmp/user.img
# The nbdkit memory server that the kernel's nbd client serves as
# nbd/nbdkit, behind dm-user's NBD back end instead: one connection each.
user_dev bench_nbd --nbd "nbd+unix:///?socket=/tmp/nbd.sock"
# Over the brd that dm-linear/brd maps: everything claimed and remapped by
# a daemon that changes nothing (no data through it), and nothing claimed
# with no daemon at all (the map path straight to the backing device).
_s=$((SIZE_MB * 2048))
dmsetup create bench_remap --table "0 $_s user 0 $_s bench_remap 3 backing /dev/ram1 0" ||
	fail "dm-user create bench_remap"
./dmuserd -t $THREADS --remap -p /tmp/bench_remap.pid /dev/dm-user/bench_remap &
DAEMONS="$DAEMONS $!"
wait_file /tmp/bench_remap.pid "dmuserd --remap"
# The same with the ring's busy-poll: no sleep and wake-up per request.
dmsetup create bench_remap_poll --table "0 $_s user 0 $_s bench_remap_poll 3 backing /dev/ram1 0" ||
	fail "dm-user create bench_remap_poll"
./dmuserd -t $THREADS --remap --busy-poll 200 -p /tmp/bench_remap_poll.pid \
	/dev/dm-user/bench_remap_poll &
DAEMONS="$DAEMONS $!"
wait_file /tmp/bench_remap_poll.pid "dmuserd --remap --busy-poll"
# Every request remapped to the other half of the same brd, said once for
# all of them as a daemon that relocates data would: the halves swapped by
# two mapped ranges (DM_USER_CMD_MAP, here through dmsetup message) and
# nothing claimed. A remapping daemon stays attached, and is asked nothing.
dmsetup create bench_mapped --table "0 $_s user 0 $_s bench_mapped 4 backing /dev/ram1 0 passthrough" ||
	fail "dm-user create bench_mapped"
_h=$((_s / 2))
dmsetup message bench_mapped 0 map range_start=0 range_len=$_h range_dest=$_h >/dev/null &&
	dmsetup message bench_mapped 0 map range_start=$_h range_len=$_h range_dest=0 >/dev/null ||
	fail "dmsetup message bench_mapped 0 map"
./dmuserd -t $THREADS --remap -p /tmp/bench_mapped.pid /dev/dm-user/bench_mapped &
DAEMONS="$DAEMONS $!"
wait_file /tmp/bench_mapped.pid "dmuserd --remap for bench_mapped"
dmsetup create bench_pass --table "0 $_s user 0 $_s bench_pass 4 backing /dev/ram1 0 passthrough" ||
	fail "dm-user create bench_pass"
# Copy-on-write snapshots of the same brd (the example daemon dmu-cow,
# deltas in /tmp), for reads of chunks never written: passed to the origin
# by the kernel (the daemon claims writes alone there), answered with a
# remap to it (--remap-reads), or read by the daemon and sent up with the
# data (--copy-reads). Write workloads skip them, so that every chunk they
# read stays unchanged (the other rows writing the origin change only its
# contents).
for c in cow:"" cow_remap:--remap-reads cow_copy:--copy-reads; do
	_n=bench_${c%%:*}
	dmsetup create $_n --table "0 $_s user 0 $_s $_n 3 backing /dev/ram1 0" ||
		fail "dm-user create $_n"
	rm -f /tmp/$_n.delta
	# shellcheck disable=SC2086 # an option, or nothing
	./dmu-cow serve -t $THREADS --delta /tmp/$_n.delta -p /tmp/$_n.pid ${c#*:} $_n &
	DAEMONS="$DAEMONS $!"
	wait_file /tmp/$_n.pid "dmu-cow for $_n"
done

DEVICES="dm-user/null:/dev/mapper/bench_null dm-user/null-2t:/dev/mapper/bench_null_2t dm-user/null+poll:/dev/mapper/bench_null_poll dm-user/null-rw:/dev/mapper/bench_null_rw dm-user/null+RB:/dev/mapper/bench_null_rb dm-user/null+RB+WB:/dev/mapper/bench_null_rbwb dm-user/null-copy:/dev/mapper/bench_null_copy"
UBLK=""
if [ -f ublk.skip ]; then
	echo "bench: ublk rows skipped: $(cat ublk.skip)"
elif ! modprobe ublk_drv 2>/dev/null; then
	echo "bench: ublk rows skipped: this kernel has no ublk_drv module"
else
	UBLK=./ublk/ublk
	"$UBLK" add -t null -n 0 -q $THREADS -d $UBLK_DEPTH >/dev/null ||
		fail "ublk add -t null"
	truncate -s ${SIZE_MB}M /tmp/ublk.img || fail "truncate /tmp/ublk.img"
	"$UBLK" add -t loop -n 1 -q $THREADS -d $UBLK_DEPTH -f /tmp/ublk.img >/dev/null ||
		fail "ublk add -t loop"
	"$UBLK" add -t null -n 2 -q 2 -d $UBLK_DEPTH >/dev/null ||
		fail "ublk add -t null -q 2"
	DEVICES="$DEVICES ublk/null:/dev/ublkb0 ublk/null-2q:/dev/ublkb2"
fi
DEVICES="$DEVICES dm-user/RAM:/dev/mapper/bench_ram dm-user/file:/dev/mapper/bench_file"
[ -z "$UBLK" ] || DEVICES="$DEVICES ublk/loop:/dev/ublkb1"
DEVICES="$DEVICES loop:$loopdev brd:/dev/ram0 null_blk:/dev/nullb0 dm-linear/brd:/dev/mapper/bench_linear dm-user/remap:/dev/mapper/bench_remap dm-user/remap+poll:/dev/mapper/bench_remap_poll dm-user/mapped:/dev/mapper/bench_mapped dm-user/pass:/dev/mapper/bench_pass dm-user/cow:/dev/mapper/bench_cow dm-user/cow-remap:/dev/mapper/bench_cow_remap dm-user/cow-copy:/dev/mapper/bench_cow_copy nbd/nbdkit:/dev/nbd0 dm-user/nbd:/dev/mapper/bench_nbd"

# ONLY="<device> ...": the rows of those devices alone (names as in the
# table), for a quicker look at some of them; the ratios need both sides.
if [ -n "${ONLY:-}" ]; then
	_all=$DEVICES
	DEVICES=""
	for d in $_all; do
		case " $ONLY " in *" ${d%%:*} "*) DEVICES="$DEVICES $d" ;; esac
	done
	[ -n "$DEVICES" ] || fail "ONLY names none of the devices"
	echo "bench: only $ONLY"
fi

# name rw bs engine depth
TESTS="rr4k-qd1:randread:4k:psync:1
rw4k-qd1:randwrite:4k:psync:1
rr4k-qd16:randread:4k:io_uring:16
rw4k-qd16:randwrite:4k:io_uring:16
rr4k-qd16-aio:randread:4k:libaio:16
rr4k-qd64:randread:4k:io_uring:64
rw4k-qd64:randwrite:4k:io_uring:64
sr128k-qd4:read:128k:io_uring:4
sw128k-qd4:write:128k:io_uring:4
sr1m-qd4:read:1m:io_uring:4"

# CPU time of all CPUs in ticks of USER_HZ (user, system, and irq +
# softirq + steal: everything but idle and iowait), then the context
# switches and the interrupts since boot.
stat_snap() {
	awk '$1 == "cpu" { u = $2 + $3; s = $4; i = $7 + $8 + $9 }
	     $1 == "ctxt" { c = $2 } $1 == "intr" { n = $2 }
	     END { print u, s, i, c, n }' /proc/stat
}
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

# fio_terse <path> <rw> <bs> <engine> <depth>: one run of $SECS seconds,
# under the command $FIO_WRAP if set (the profile's perf); prints
# "iops kib_per_s".
FIO_WRAP=""
fio_terse() {
	# shellcheck disable=SC2086 # a command line, or nothing
	$FIO_WRAP fio --name=b --filename="$1" --direct=1 --rw="$2" --bs="$3" \
	    --ioengine="$4" --iodepth="$5" --runtime="$SECS" --time_based \
	    --size=$((SIZE_MB / 2))M --output-format=terse --terse-version=3 \
	    2>/dev/null | awk -F';' '{ print $8 + $49, $7 + $48 }'
}

# Prints "iops kib_per_s cpu_us_per_io context_switches_per_io" of one run.
run_fio() {
	_s0=$(stat_snap)
	_r=$(fio_terse "$@")
	_s1=$(stat_snap)
	# Parenthesised: a bare ">" in printf arguments is a redirection.
	echo "$_r $_s0 $_s1" | awk -v hz="$HZ" -v s="$SECS" \
		'{ ios = $1 * s; t = $8 + $9 + $10 - $3 - $4 - $5; c = $11 - $6
		   printf "%d %d %.1f %.2f\n", $1, $2,
		   (ios > 0 ? t * 1e6 / hz / ios : 0), (ios > 0 ? c / ios : 0) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# --- profile (make bench-profile) ------------------------------------------
# PROFILE="<workload>@<device> ...": instead of the tables, where the time
# of each named run goes. A run without perf gives the figures per I/O from
# /proc/stat (CPU time by kind, context switches, interrupts); a second run
# under "perf record -a" (a CPU clock sample on every CPU, idle included)
# gives the share of each task and function.
profile_case() {
	_spec=$(echo "$TESTS" | grep "^$1:") || fail "profile: no workload $1"
	_path=""
	for d in $DEVICES; do [ "${d%%:*}" != "$2" ] || _path=${d#*:}; done
	[ -n "$_path" ] || fail "profile: no device $2 here"
	IFS=: read -r _t _rw _bs _eng _qd <<EOT
$_spec
EOT
	_s0=$(stat_snap)
	_iops=$(fio_terse "$_path" "$_rw" "$_bs" "$_eng" "$_qd" | cut -d' ' -f1)
	_s1=$(stat_snap)
	echo
	echo "== $1 on $2: $_iops IOPS"
	echo "$_s0 $_s1" | awk -v n=$((${_iops:-0} * SECS)) -v hz="$HZ" '
	n > 0 { t = 1e6 / hz / n
	  printf "   per I/O: CPU us user %.1f, system %.1f, irq+softirq %.1f; context switches %.2f; interrupts %.2f\n",
	    ($6 - $1) * t, ($7 - $2) * t, ($8 - $3) * t, ($9 - $4) / n, ($10 - $5) / n }'
	# The same run again, with every CPU sampled while it lasts.
	rm -f /tmp/perf.data
	FIO_WRAP="$PERF record -q -a -F 997 -e cpu-clock -o /tmp/perf.data --"
	_iops=$(fio_terse "$_path" "$_rw" "$_bs" "$_eng" "$_qd" | cut -d' ' -f1)
	FIO_WRAP=""
	[ -s /tmp/perf.data ] || fail "profile: perf record wrote nothing"
	# The samples are of all CPUs, idle included: a task's share of them
	# times the CPUs is its share of one CPU, per I/O in microseconds.
	echo "   under perf, $_iops IOPS; share of samples by task (all CPUs,"
	echo "   idle included), and that task's CPU time per I/O:"
	$PERF report -i /tmp/perf.data --stdio --sort comm --percent-limit 2 2>/dev/null |
		awk -v c="$(nproc)" -v n="${_iops:-0}" '/^ +[0-9.]+%/ {
		  p = $1; sub("%", "", p)
		  printf "     %8s  %-16s %7.1f us/IO\n", $1, $2,
		    (n > 0 ? p / 100 * c * 1e6 / n : 0) }'
	echo "   by function (>= 1%):"
	$PERF report -i /tmp/perf.data --stdio --sort comm,dso,sym --percent-limit 1 2>/dev/null |
		awk '/^ +[0-9.]+%/ { printf "     %s\n", $0 }'
}
if [ -n "${PROFILE:-}" ]; then
	[ -x perf/perf ] || fail "profile: no perf in the payload"
	PERF="env LD_LIBRARY_PATH=$PWD/perf/lib $PWD/perf/perf"
	echo 0 > /proc/sys/kernel/kptr_restrict
	echo -1 > /proc/sys/kernel/perf_event_paranoid
	echo "profile: fio $SECS s per run; Linux $(uname -r) under QEMU ($(nproc) vCPUs)"
	echo "clock source: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
	for c in $PROFILE; do profile_case "${c%@*}" "${c#*@}"; done
	exit 0
fi

: > /tmp/bench.raw
: > /tmp/bench.results
rm -f /tmp/bench.failed
for t in $TESTS; do
	IFS=: read -r tname rw bs eng qd <<EOT
$t
EOT
	# Rounds go over all devices in turn, so that a slow spell of the
	# emulator (the host is shared) lands on every device, not on one.
	r=0
	while [ $r -lt "$RUNS" ]; do
		for d in $DEVICES; do
			case $rw:$d in *write:dm-user/cow*) continue ;; esac
			res=$(run_fio "${d#*:}" "$rw" "$bs" "$eng" "$qd")
			echo "${d%%:*} $res" >> /tmp/bench.raw
			# A run that moved nothing is a failure, not a zero.
			case $res in
			"" | 0\ *)
				echo "bench: $tname on ${d%%:*}: fio did no I/O" >&2
				: > /tmp/bench.failed ;;
			esac
		done
		r=$((r + 1))
	done
	for d in $DEVICES; do
		dname=${d%%:*}
		grep -q "^$dname " /tmp/bench.raw || continue
		for f in 2 3 4 5; do
			awk -v d="$dname" -v f=$f '$1 == d { print $f + 0 }' /tmp/bench.raw > /tmp/col$f
		done
		echo "$tname $dname $(median < /tmp/col2) $(median < /tmp/col3) $(sort -n /tmp/col2 | head -n 1) $(sort -n /tmp/col2 | tail -n 1) $(median < /tmp/col4) $(median < /tmp/col5)" >> /tmp/bench.results
	done
	: > /tmp/bench.raw
	echo "# $tname done" >&2
done

# --- speed report -----------------------------------------------------------
# Printed before the memory section, so that a failure there loses nothing.
echo
echo "fio, $SECS s per run, median of $RUNS interleaved rounds; Linux $(uname -r) under QEMU ($(nproc) vCPUs)"
echo "dm-user: reference daemon, $THREADS channel(s) (one thread each; -2t: two); its default transport, the"
echo "  ring (default depth and data area), unless named: +poll = ring with a 200 us busy-poll,"
echo "  rw = read() and write() (RFC protocol), RB, WB = READ_BATCH,"
echo "  WRITE_BATCH (on read() and write()), copy = rw with --copy (data through the"
echo "  library's buffers instead of in place); remap = over brd, every request"
echo "  remapped there by a daemon (dmuserd --remap; +poll: with a 200 us busy-poll), mapped = over"
echo "  brd, its two halves swapped by two mapped ranges, nothing claimed; pass = over brd,"
echo "  nothing claimed, no daemon;"
echo "  cow = dmu-cow over brd, reads of chunks never written passed to it by the kernel (writes"
echo "  claimed alone), cow-remap = the same remapped by the daemon (--remap-reads), cow-copy ="
echo "  read by the daemon and sent with the data (--copy-reads); no write workloads"
[ -z "$UBLK" ] || echo "ublk: ublksrv, $THREADS queue(s) of depth $UBLK_DEPTH (-2q: two); loop rows: a tmpfs file"
echo "IOPS range = slowest and fastest run; CPU = guest CPU time (all of it, fio's too) per I/O;"
echo "cs = context switches (all of the guest's) per I/O"
awk '
{ iops[$1, $2] = $3; bw[$1, $2] = $4; lo[$1, $2] = $5; hi[$1, $2] = $6
  cpu[$1, $2] = $7; cs[$1, $2] = $8
  if (!($1 in seen)) { seen[$1] = 1; tests[++nt] = $1 }
  if (!($2 in dseen)) { dseen[$2] = 1; devs[++nd] = $2 } }
END {
  for (i = 1; i <= nt; i++) {
    t = tests[i]
    printf "\n%-20s %9s %9s %17s %8s %6s\n", t, "IOPS", "MB/s", "IOPS range", "CPU us", "cs"
    for (j = 1; j <= nd; j++) {
      d = devs[j]
      if (!((t SUBSEP d) in iops)) continue
      printf "%-20s %9d %9.1f %8d-%-8d %8.1f %6.2f\n", d, iops[t, d],
        bw[t, d] * 1024 / 1e6, lo[t, d], hi[t, d], cpu[t, d], cs[t, d]
    }
  }
}' /tmp/bench.results

# Each goal of the performance issue, from this boot.
echo
echo "ratios (goal in brackets)"
awk '
function r(t, a, b) { return iops[t, b] > 0 ? iops[t, a] / iops[t, b] : -1 }
function show(t, a, b, want,   v) {
  if (!((t SUBSEP a) in iops) || !((t SUBSEP b) in iops)) return
  v = r(t, a, b)
  printf "  %-14s %-18s / %-14s %6.2f  [>= %g] %s\n", t, a, b, v, want,
    (v >= want ? "met" : "NOT met")
}
{ iops[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; tests[++nt] = $1 } }
END {
  for (i = 1; i <= nt; i++) {
    t = tests[i]
    show(t, "dm-user/null", "ublk/null", t ~ /^s/ ? 1.0 : 1.3)
  }
  for (i = 1; i <= nt; i++) {
    t = tests[i]
    show(t, "dm-user/null-2t", "ublk/null-2q", t ~ /^s/ ? 1.0 : 1.3)
  }
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/file", "ublk/loop", 1.0)
  show("rr4k-qd16", "dm-user/file", "loop", 0.9)
  show("rw4k-qd16", "dm-user/file", "loop", 0.9)
  show("sr128k-qd4", "dm-user/file", "loop", 0.8)
  show("rr4k-qd16", "dm-user/null", "null_blk", 0.6)
  show("rw4k-qd16", "dm-user/null", "null_blk", 0.6)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/null", "dm-user/null-rw", 1.0)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/null+poll", "dm-user/null-rw", 1.0)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/null+RB", "dm-user/null-rw", 1.0)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/null+RB+WB", "dm-user/null-rw", 1.0)
  show("rr4k-qd1", "dm-user/remap", "dm-linear/brd", 0.9)
  show("rr4k-qd16", "dm-user/remap", "dm-linear/brd", 0.9)
  show("rr4k-qd1", "dm-user/remap+poll", "dm-linear/brd", 0.9)
  show("rr4k-qd16", "dm-user/remap+poll", "dm-linear/brd", 0.9)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/mapped", "dm-linear/brd", 0.9)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/pass", "dm-linear/brd", 0.95)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/cow", "dm-user/cow-copy", 1.0)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/cow-remap", "dm-user/cow-copy", 1.0)
  for (i = 1; i <= nt; i++)
    show(tests[i], "dm-user/cow", "dm-linear/brd", 0.95)
  show("rr4k-qd16", "dm-user/nbd", "nbd/nbdkit", 1.0)
  show("rw4k-qd16", "dm-user/nbd", "nbd/nbdkit", 1.0)
  show("sr128k-qd4", "dm-user/nbd", "nbd/nbdkit", 1.0)
  show("sw128k-qd4", "dm-user/nbd", "nbd/nbdkit", 1.0)
  q = iops["rr4k-qd1", "nbd/nbdkit"]
  if (q > 0)
    printf "  %-14s %-18s / %-14s %6.2f  [>= 2.0] %s\n", "rr4k-qd1",
      "dm-user/RAM", "nbd/nbdkit", iops["rr4k-qd1", "dm-user/RAM"] / q,
      (iops["rr4k-qd1", "dm-user/RAM"] / q >= 2 ? "met" : "NOT met")
}' /tmp/bench.results

csv bench.csv "workload,device,iops_median,mb_per_s_median,iops_min,iops_max,cpu_us_per_io,context_switches_per_io"
awk '{ printf "%s,%s,%d,%.1f,%d,%d,%.1f,%.2f\n", $1, $2, $3, $4 * 1024 / 1e6, $5, $6, $7, $8 }' /tmp/bench.results |
	while read -r l; do csv bench.csv "$l"; done

# --- memory ----------------------------------------------------------------
# /proc/meminfo fields in KiB.
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
# used: memory no longer free, less what the page cache took (tmpfs files
# and nodes count in Shmem/Cached and do not change here).
mem_snapshot() { echo "$(meminfo Slab) $(( $(meminfo MemTotal) - $(meminfo MemFree) - $(meminfo Cached) - $(meminfo Buffers) ))"; }
settle() { sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1; }

: > /tmp/bench.mem.raw
# mem_row <what> <count> <before> <after>: per-item slab and used memory.
mem_row() {
	# shellcheck disable=SC2086 # two words each
	set -- "$1" "$2" $3 $4
	echo "$1 $2 $(( ($5 - $3) * 1024 / $2 )) $(( ($6 - $4) * 1024 / $2 ))" >> /tmp/bench.mem.raw
}

# idle_items <what> <add> <del>: the memory of $IDLE_DEVICES idle devices,
# each made by "<add> <i>" and taken away by "<del> <i>".
idle_items() {
	settle
	_m0=$(mem_snapshot)
	_i=0	# its own counter: the callers' loops use i
	while [ $_i -lt $IDLE_DEVICES ]; do
		$2 $_i || fail "$1: $2 $_i"
		_i=$((_i + 1))
	done
	settle
	mem_row "$1" $IDLE_DEVICES "$_m0" "$(mem_snapshot)"
	_i=0
	while [ $_i -lt $IDLE_DEVICES ]; do
		$3 $_i || fail "$1: $3 $_i"
		_i=$((_i + 1))
	done
}
# A dm-zero device is the baseline: what device-mapper itself costs.
add_zero() { dmsetup create "idle$1" --table "0 2048 zero"; }
add_user() { dmsetup create "idle$1" --table "0 2048 user 0 2048 idle$1"; }
# With a daemon each, as ublk has: its channels (rings by default) and
# the daemon's own memory.
idle_pids=""
add_user_daemon() {
	add_user "$1" || return
	./dmuserd -n 1M -t $THREADS -p "/tmp/idle$1.pid" "/dev/dm-user/idle$1" &
	idle_pids="$idle_pids $!"
	wait_file "/tmp/idle$1.pid" "dmuserd for idle$1"
}
del_dm() { dmsetup remove "idle$1"; }
add_ublk() { "$UBLK" add -t null -n $(($1 + 10)) -q $THREADS -d $UBLK_DEPTH >/dev/null; }
del_ublk() { "$UBLK" del -n $(($1 + 10)) >/dev/null; }

# Interleaved rounds, medians: kernel worker threads come and go between
# runs and move the slab by a few KiB a device.
r=0
while [ $r -lt $MEM_ROUNDS ]; do
	idle_items dm-zero-idle-device add_zero del_dm
	idle_items dm-user-idle-device add_user del_dm
	r=$((r + 1))
done
idle_items "dm-user-idle-device(with-its-daemon)" add_user_daemon del_dm
# shellcheck disable=SC2086 # a list of pids
wait $idle_pids
[ -z "$UBLK" ] ||
	idle_items "ublk-idle-device(with-its-daemon)" add_ublk del_ublk

# queued_reads <what> <device>: the memory of $QUEUED 4 KiB reads held by
# <device>, counted once aio_hold says each has been submitted and none has
# completed. The caller lets the reads go and waits for $hold (which
# checks that every one completed).
queued_reads() {
	settle
	_m0=$(mem_snapshot)
	rm -f /tmp/hold.out
	./aio_hold "$2" $QUEUED 120 > /tmp/hold.out &
	hold=$!
	_i=0
	until grep -q "^held $QUEUED\$" /tmp/hold.out 2>/dev/null; do
		kill -0 $hold 2>/dev/null || fail "$1: aio_hold ended before holding $QUEUED reads"
		_i=$((_i + 1)); [ $_i -lt 600 ] || fail "$1: $QUEUED reads not held after 60 s"
		sleep 0.1
	done
	# "used" counts the reads' 4 KiB buffers too (aio_hold touches them
	# after the first snapshot); slab does not.
	sleep 1
	mem_row "$1" $QUEUED "$_m0" "$(mem_snapshot)"
}

# Two baselines. A suspended device-mapper device: each read waits in
# device-mapper as the bio the caller submitted, with nothing allocated for
# it, so the figure is the caller's own aio and bio objects. And dm-linear
# over that suspended device: each read is cloned by device-mapper (its
# dm_io with the clone bio, as for every bio-based target) and the clone
# waits below, so the difference is device-mapper's own cost.
dmsetup create bench_q --table "0 $((SIZE_MB * 2048)) zero" &&
	dmsetup suspend bench_q || fail "dm-zero create and suspend bench_q"
queued_reads "bio-held-by-suspended-dm" /dev/mapper/bench_q
dmsetup resume bench_q || fail "dmsetup resume bench_q"
wait $hold || fail "reads held by the suspended device failed"
dmsetup create bench_q_top --table "0 $((SIZE_MB * 2048)) linear /dev/mapper/bench_q 0" &&
	dmsetup suspend bench_q || fail "dm-linear over suspended bench_q"
queued_reads "dm-linear-clone-held-below" /dev/mapper/bench_q_top
dmsetup resume bench_q || fail "dmsetup resume bench_q"
wait $hold || fail "reads held below dm-linear failed"
dmsetup remove bench_q_top && dmsetup remove bench_q ||
	fail "dmsetup remove bench_q_top bench_q"

# dm-user: reads waiting for a daemon that is not there yet.
dmsetup create bench_q --table "0 $((SIZE_MB * 2048)) user 0 $((SIZE_MB * 2048)) bench_q 3 max_queued 16384 queue_if_no_daemon" ||
	fail "dm-user create bench_q"
queued_reads "dm-user-queued-read" /dev/mapper/bench_q
./dmuserd -n ${SIZE_MB}M -t $THREADS /dev/dm-user/bench_q &
qd=$!
wait $hold || fail "reads queued on dm-user failed"
kill $qd; wait $qd
dmsetup remove bench_q || fail "dmsetup remove bench_q"

# --- teardown --------------------------------------------------------------
# shellcheck disable=SC2086 # a list of pids
kill $DAEMONS; wait
for n in bench_null bench_null_2t bench_null_poll bench_null_rw bench_null_rb bench_null_rbwb bench_null_copy bench_ram bench_file bench_remap bench_remap_poll bench_mapped bench_pass bench_cow bench_cow_copy; do
	dmsetup remove $n || fail "dmsetup remove $n"
done
[ -z "$UBLK" ] || "$UBLK" del -a >/dev/null
nbd-client -d /dev/nbd0 >/dev/null 2>&1
losetup -d "$loopdev"
dmsetup remove bench_linear

# --- memory report ----------------------------------------------------------
# The median of each item's rounds
# (slab and used each have their own median), in the order measured.
awk '
function median(list,   a, k, i, j, t) {
  k = split(list, a, " ")
  for (i = 2; i <= k; i++)
    for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
  return a[int((k + 1) / 2)]
}
!($1 in cnt) { order[++n] = $1 }
{ cnt[$1] = $2; slab[$1] = slab[$1] " " $3; used[$1] = used[$1] " " $4 }
END { for (i = 1; i <= n; i++) print order[i], cnt[order[i]], median(slab[order[i]]), median(used[order[i]]) }
' /tmp/bench.mem.raw > /tmp/bench.mem
echo
echo "memory per item: slab bytes, and all memory taken (slab, pages, daemons);"
echo "medians of $MEM_ROUNDS rounds where an item has several; a held or"
echo "queued read's \"used\" includes the caller's 4 KiB buffer"
awk '{ printf "  %-42s x%-6d slab %7d B   used %8d B\n", $1, $2, $3, $4 }' /tmp/bench.mem
echo "goals (slab): dm-user's own memory: an idle device beyond a dm-zero"
echo "device, a queued read beyond dm-linear's clone of it"
awk '{ slab[$1] = $3 } END {
  goal("idle device", "dm-user-idle-device", "dm-zero-idle-device", 16384)
  goal("queued request", "dm-user-queued-read", "dm-linear-clone-held-below", 256)
  if ("dm-user-queued-read" in slab && "bio-held-by-suspended-dm" in slab)
    printf "  (with the clone of device-mapper: %d B beyond the bio of the caller)\n",
      slab["dm-user-queued-read"] - slab["bio-held-by-suspended-dm"]
}
function goal(what, a, b, max) {
  if (!(a in slab) || !(b in slab)) { printf "  %-16s no baseline\n", what; return }
  d = slab[a] - slab[b]
  printf "  %-16s %7d B (%s - %s)  [<= %d] %s\n", what, d, a, b, max,
    d <= max ? "met" : "NOT met"
}' /tmp/bench.mem

csv bench-memory.csv "item,count,slab_bytes_each,used_bytes_each"
awk '{ printf "%s,%d,%d,%d\n", $1, $2, $3, $4 }' /tmp/bench.mem |
	while read -r l; do csv bench-memory.csv "$l"; done
if [ -e /tmp/bench.failed ]; then
	echo "bench: some runs did no I/O (see above): the figures are not valid" >&2
	exit 1
fi
