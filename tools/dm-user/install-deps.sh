#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Install the Debian 12 packages dm-user's build, tests, demo and benchmark
# need. Idempotent: packages already present are not downloaded again, and
# nothing is done at all when every package is installed.
set -eu

# flex, bison and libelf-dev build the debug kernel (make check-debug);
# autoconf, automake, libtool and g++ build ublksrv for make bench;
# linux-perf profiles it (make bench-profile); dkms builds the module in
# make check's host test of dkms.conf; debhelper, dh-dkms and lintian build
# and check the Debian packages (make deb); scdoc makes the man pages, and
# man-db and bsdextrautils (col) check them. libnbd-dev builds serve --nbd;
# nbdkit and qemu-utils (qemu-nbd) are the NBD servers its tests use.
# The 6.12 kernel comes from bookworm's security/updates archive as a
# meta-package that follows the newest 6.12 build.
pkgs="build-essential make gcc gcc-multilib libc6-dev-i386 bc kmod
 linux-image-amd64 linux-headers-amd64
 linux-image-6.12-amd64 linux-headers-6.12-amd64
 linux-source-6.1
 qemu-system-x86 busybox-static cpio xz-utils
 dmsetup libdevmapper-dev libsystemd-dev libjson-c-dev libaio-dev liburing-dev
 pkg-config jq
 systemd
 fio e2fsprogs sparse linux-perf
 nbdkit nbd-client libnbd-dev qemu-utils
 flex bison libelf-dev
 dkms debhelper dh-dkms lintian scdoc man-db bsdextrautils gnuplot-nox
 autoconf automake libtool g++"

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	     grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: need root to install:$missing" >&2
	exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
