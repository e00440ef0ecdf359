#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
#   packaged-payload.sh <deb-dir> <work-dir> <payload-dir>
#
# make check PACKAGED=1: turns the guest payload into one that tests the
# files of the Debian packages make deb built, not the tree's: the module
# built from dm-user-dkms's source with dkms.conf's own command, once per
# guest kernel; dmuser, dmuserd and the example daemons of the dmuser
# package; lib_test linked against libdmuser-dev's header and libdmuser1's
# shared library; the unit and its example configuration. The selftests
# themselves are built from the tree. <payload-dir>/packaged.txt says which
# packages and files went in, with their checksums; the guest runner prints
# its first line.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
die() { echo "packaged-payload: $*" >&2; exit 1; }
[ $# = 3 ] || die "usage: packaged-payload.sh <deb-dir> <work-dir> <payload-dir>"
debs=$1 work=$2 payload=$3

rm -rf "$work" "$payload"
mkdir -p "$work/root" "$payload"
work=$(cd "$work" && pwd)
payload=$(cd "$payload" && pwd)
root=$work/root
list=""
for p in dm-user-dkms libdmuser1 libdmuser-dev dmuser; do
	set -- "$debs"/"${p}"_*.deb
	if [ $# != 1 ] || [ ! -f "$1" ]; then
		die "not one ${p}_*.deb in $debs (make deb)"
	fi
	dpkg-deb -x "$1" "$root" || die "dpkg-deb -x $1"
	list="$list $(basename "$1")"
done

# The module, as DKMS builds it: dkms.conf's MAKE[0], its variables set to
# what dkms gives them, run by the shell (dkms evals it too), and the
# module where BUILT_MODULE_LOCATION[0] and BUILT_MODULE_NAME[0] say.
set -- "$root"/usr/src/dm-user-*
if [ $# != 1 ] || [ ! -f "$1/dkms.conf" ]; then
	die "no /usr/src/dm-user-<version>/dkms.conf in dm-user-dkms"
fi
dkms_src=$1
conf() { sed -n "s/^$1=\"\(.*\)\"\$/\1/p" "$dkms_src/dkms.conf"; }
make_cmd=$(conf 'MAKE\[0\]')
ko=$(conf 'BUILT_MODULE_LOCATION\[0\]')/$(conf 'BUILT_MODULE_NAME\[0\]').ko
[ -n "$make_cmd" ] || die "no MAKE[0] in $dkms_src/dkms.conf"
kernels=$("$here/kernels.sh") || die "kernels.sh failed"
[ -n "$kernels" ] || die "kernels.sh found no guest kernels"
for k in $kernels; do
	kernel_source_dir=${DMUSER_KERNEL_ROOT:-}/lib/modules/$k/build
	[ -d "$kernel_source_dir" ] || die "no kernel build tree at $kernel_source_dir"
	dkms_tree=$work/dkms-$k
	PACKAGE_NAME=$(conf PACKAGE_NAME)
	PACKAGE_VERSION=$(conf PACKAGE_VERSION)
	tree=$dkms_tree/$PACKAGE_NAME/$PACKAGE_VERSION/build
	mkdir -p "$tree"
	cp -r "$dkms_src"/. "$tree"/
	# For the eval below; the command reads them.
	export kernel_source_dir dkms_tree PACKAGE_NAME PACKAGE_VERSION
	(cd "$tree" && eval "$make_cmd") >"$work/dkms-$k.log" 2>&1 ||
		{ cat "$work/dkms-$k.log" >&2; die "the module for $k did not build"; }
	mkdir -p "$payload/$k"
	cp "$tree/$ko" "$payload/$k/dm-user.ko" ||
		die "dkms.conf's module $ko was not built for $k"
done

# The selftests, lib_test against the packaged library.
make -C "$src/tools/testing/selftests/dm-user" O="$work/tools" \
	PKGROOT="$root" install INSTALL_PATH="$payload" >"$work/selftests.log" 2>&1 ||
	{ cat "$work/selftests.log" >&2; die "the selftests did not build"; }
mkdir -p "$payload/lib"
cp -P "$root"/usr/lib/*/libdmuser.so.* "$payload/lib/"
ldd "$payload/lib_test" | grep -q "libdmuser.so.1 => $payload/lib/" ||
	die "lib_test does not load the packaged libdmuser.so.1: $(ldd "$payload/lib_test")"

for b in dmuser dmuserd dmu-cow dmu-cbt dmu-fault; do
	cp "$root/usr/bin/$b" "$payload/" || die "no /usr/bin/$b in the dmuser package"
done
for f in lib/systemd/system/dmuser@.service \
	 usr/share/doc/dmuser/examples/example.conf; do
	cp "$root/$f" "$payload/systemd/" || die "no /$f in the dmuser package"
done

{
	echo "packaged files from$list"
	(cd "$payload" && sha256sum dmuser dmuserd dmu-cow dmu-cbt dmu-fault \
		lib/libdmuser.so.* systemd/dmuser@.service systemd/example.conf \
		./*/dm-user.ko)
} >"$payload/packaged.txt"
echo "packaged-payload: $payload tests$list"
