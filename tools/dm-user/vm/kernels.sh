#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Print the guest kernel releases dm-user is tested on: the newest installed
# 6.1 and 6.12 Debian kernels that have both an image (to boot) and headers
# (to build dm-user.ko against). Usage: kernels.sh [6.1|6.12]
# With DMUSER_KERNEL_ROOT set (see run-guest.sh), the kernels are looked up
# under that root, and without an argument every one found there is printed.
set -eu
kroot=${DMUSER_KERNEL_ROOT:-}

newest() {
	best=""
	for img in "$kroot"/boot/vmlinuz-"$1"*; do
		[ -e "$img" ] || continue
		rel=${img#"$kroot"/boot/vmlinuz-}
		# "6.1" must not match 6.12: the series ends at a dot or a dash.
		case $rel in "$1".* | "$1"-*) ;; *) continue ;; esac
		[ -d "$kroot/lib/modules/$rel/build" ] || continue
		best="$best$rel
"
	done
	# sort -V orders 6.1.0-9 before 6.1.0-56, which plain sort does not.
	printf '%s' "$best" | sort -V | tail -n 1
}

case $# in
0) series="6.1 6.12"
   # A kernel root holds a kernel or two of our own: any series goes.
   [ -z "$kroot" ] || series=$(for img in "$kroot"/boot/vmlinuz-*; do
	[ -e "$img" ] && echo "${img#"$kroot"/boot/vmlinuz-}" | cut -d. -f1,2
   done | sort -u) ;;
1) series=$1 ;;
*) echo "usage: kernels.sh [6.1|6.12]" >&2; exit 2 ;;
esac

for s in $series; do
	rel=$(newest "$s")
	if [ -z "$rel" ]; then
		echo "kernels.sh: no installed $s kernel with both $kroot/boot/vmlinuz-$s.* and $kroot/lib/modules/<rel>/build (run tools/dm-user/install-deps.sh)" >&2
		exit 1
	fi
	echo "$rel"
done
