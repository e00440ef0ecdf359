#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# bench-chart.sh <bench.csv> <chart.png>: the bench table as a chart, with
# gnuplot: a group of bars per workload, a bar per device (dm-user's rows
# and each peer's), the median IOPS on a logarithmic scale, as 4 KiB and
# 1 MiB workloads differ a thousandfold. The columns of the CSV are those
# bench.sh writes (workload,device,iops_median,...).
set -eu

[ $# = 2 ] || { echo "usage: bench-chart.sh <bench.csv> <chart.png>" >&2; exit 2; }
csv=$1 png=$2
command -v gnuplot >/dev/null ||
	{ echo "bench-chart: no gnuplot (run tools/dm-user/install-deps.sh)" >&2; exit 1; }
[ "$(head -n 1 "$csv" | cut -d, -f1-3)" = "workload,device,iops_median" ] ||
	{ echo "bench-chart: $csv is not a bench table" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A matrix for gnuplot's clustered histogram: a row per workload in the
# table's order, a column per device in order of first appearance, "-"
# where a device has no row for a workload.
awk -F, 'NR > 1 {
	if (!($1 in w)) { w[$1] = ++nw; wl[nw] = $1 }
	if (!($2 in d)) { d[$2] = ++nd; dl[nd] = $2 }
	v[w[$1], d[$2]] = $3
} END {
	if (!nw) exit 1
	printf "workload"
	for (j = 1; j <= nd; j++) printf " %s", dl[j]
	printf "\n"
	for (i = 1; i <= nw; i++) {
		printf "%s", wl[i]
		for (j = 1; j <= nd; j++)
			printf " %s", ((i, j) in v) ? v[i, j] : "-"
		printf "\n"
	}
}' "$csv" >"$tmp/matrix" || { echo "bench-chart: no rows in $csv" >&2; exit 1; }
cols=$(head -n 1 "$tmp/matrix" | wc -w)

gnuplot <<EOF
set terminal pngcairo size 1600,700 noenhanced font ",10"
set output "$png"
set title "make bench: median IOPS per workload (log scale)"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set ylabel "IOPS"
set grid ytics
set key outside right top
set xtics rotate by -30
plot for [i=2:$cols] "$tmp/matrix" using i:xtic(1) title columnheader(i)
EOF
[ -s "$png" ] || { echo "bench-chart: gnuplot wrote no $png" >&2; exit 1; }
echo "bench-chart: $png ($((cols - 1)) devices, $(($(wc -l <"$tmp/matrix") - 1)) workloads)"
