#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make bench's chart: bench-chart.sh draws a PNG from a table in bench.sh's
# CSV columns, with a device missing from some workloads (as the write
# workloads of read-only rows are), and refuses what is not such a table.
set -u

# shellcheck source=tools/dm-user/host-tests/tap.sh
. "$(dirname "$0")/tap.sh"
chart=$top/tools/dm-user/vm/bench-chart.sh

command -v gnuplot >/dev/null || skip_all "no gnuplot (run tools/dm-user/install-deps.sh)"
tmp=$(mktemp -d) || { echo "mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/bench.csv" <<'EOT'
workload,device,iops_median,mb_per_s_median,iops_min,iops_max,cpu_us_per_io,context_switches_per_io
rr4k-qd1,dm-linear/brd,63472,260.0,59068,64399,19.4,0.01
rr4k-qd1,dm-user/pass,66960,274.3,58802,67500,17.4,0.01
rr4k-qd1,dm-user/cow,8681,35.6,8664,8818,70.8,4.05
rw4k-qd1,dm-linear/brd,56299,230.6,48962,56939,20.3,0.01
rw4k-qd1,dm-user/pass,54607,223.7,54477,58759,21.5,0.01
sr1m-qd4,dm-linear/brd,1463,1534.3,1326,1830,820.2,0.45
sr1m-qd4,dm-user/cow,1419,1488.8,1390,1640,884.4,2.32
EOT
if out=$("$chart" "$tmp/bench.csv" "$tmp/bench.png" 2>&1); then
	ok "bench-chart.sh: $out"
else
	not_ok "bench-chart.sh failed: $out"
fi
case $out in
*"(3 devices, 3 workloads)") ok "it counts 3 devices and 3 workloads" ;;
*) not_ok "devices and workloads: '$out'" ;;
esac
# A PNG image, of the size the script asks for.
sig=$(head -c 8 "$tmp/bench.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')
size=$(od -An -tu1 -j16 -N8 "$tmp/bench.png" 2>/dev/null |
	awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 "x" $5 * 16777216 + $6 * 65536 + $7 * 256 + $8 }')
if [ "$sig" = 89504e470d0a1a0a ] && [ "$size" = 1600x700 ]; then
	ok "a PNG image of $size"
else
	not_ok "not the PNG expected: signature '$sig', size '$size'"
fi

printf 'a,b,c\n1,2,3\n' >"$tmp/other.csv"
if out=$("$chart" "$tmp/other.csv" "$tmp/other.png" 2>&1); then
	not_ok "another table was drawn: $out"
elif [ "$out" = "bench-chart: $tmp/other.csv is not a bench table" ] &&
     [ ! -e "$tmp/other.png" ]; then
	ok "another table is refused: $out"
else
	not_ok "another table: '$out'"
fi
head -n 1 "$tmp/bench.csv" >"$tmp/empty.csv"
if out=$("$chart" "$tmp/empty.csv" "$tmp/empty.png" 2>&1); then
	not_ok "a table with no rows was drawn: $out"
else
	ok "a table with no rows is refused: $out"
fi
done_testing
