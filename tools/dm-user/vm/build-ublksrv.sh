#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the ublk server (the "ublk" tool with its null and loop targets), the
# peer make bench compares dm-user with, from an upstream release tarball:
#
#   build-ublksrv.sh
#
# The tarball is $UBLKSRV_TARBALL, or the one kept next to the repository in
# ../shared/peers/. Nothing of it enters the repository: it is unpacked and
# built under $DMUSER_BUILD/ublksrv/<hash of the tarball> (default build/), once
# per machine and tarball. The tool finds its targets next to itself
# (ublk.null, ublk.loop), so the three are installed together.
#
# On success prints the directory holding ublk, ublk.null and ublk.loop on
# stdout and exits 0. Exits 3 with one line on stderr saying why when there is
# no tarball (the caller skips the ublk rows), 1 when the build fails (log in
# <dir>/build.log).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
die() { echo "build-ublksrv: $*" >&2; exit 1; }

tarball=${UBLKSRV_TARBALL:-}
if [ -z "$tarball" ]; then
	for t in "$repo"/../shared/peers/ublksrv-*.tar.gz; do
		[ -f "$t" ] && tarball=$t
	done
fi
if [ -z "$tarball" ] || [ ! -r "$tarball" ]; then
	echo "build-ublksrv: no ublksrv tarball (set UBLKSRV_TARBALL or put ublksrv-*.tar.gz in $repo/../shared/peers)" >&2
	exit 3
fi

key=$(sha256sum <"$tarball" | cut -c1-12)
dir=${DMUSER_BUILD:-$repo/build}/ublksrv/$key
if [ -f "$dir/done" ]; then
	echo "$dir/bin"
	exit 0
fi

for t in autoreconf automake libtoolize g++ pkg-config make; do
	command -v "$t" >/dev/null ||
		die "host tool '$t' not found (run tools/dm-user/install-deps.sh)"
done
pkg-config --exists liburing ||
	die "liburing not found by pkg-config (run tools/dm-user/install-deps.sh)"

rm -rf "$dir"
mkdir -p "$dir/src" "$dir/bin"
log=$dir/build.log
echo "build-ublksrv: building $(basename "$tarball") in $dir" >&2
tar -xzf "$tarball" -C "$dir/src" --strip-components=1 ||
	die "unpacking $tarball failed"
# Static C++ runtime and library: the guest image carries liburing and the C
# library, not libstdc++ or libublksrv.so. Only the tool and the two targets
# the benchmark runs are built.
if ! (cd "$dir/src" && autoreconf -i && ./configure --disable-shared \
	LDFLAGS="-static-libstdc++ -static-libgcc" &&
	make -j"$(nproc)" -C lib &&
	make -j"$(nproc)" ublk ublk.null ublk.loop) >"$log" 2>&1; then
	tail -n 20 "$log" >&2
	die "build failed; the whole log is $log"
fi
install -m 755 "$dir/src/ublk" "$dir/src/ublk.null" "$dir/src/ublk.loop" \
	"$dir/bin/" || die "installing the binaries in $dir/bin failed"
touch "$dir/done"
echo "$dir/bin"
