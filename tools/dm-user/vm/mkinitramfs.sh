#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the base busybox initramfs for one guest kernel release:
#   mkinitramfs.sh <release> <out.cpio.gz> [<extras.cpio.gz>]
# It holds busybox, the host tools the tests and benchmarks use (with their
# shared libraries), the block/dm kernel modules and the module indexes. It has
# no /init: run-guest.sh adds that, the modules under test and the payload as
# a second cpio, so this image only changes with the release or this script.
# With DMUSER_KERNEL_ROOT set, the kernel's modules are looked up under that
# root instead of /; such a kernel (the debug kernel) builds in what the tests
# need, and modules it lacks (those of the benchmark's peers) are left out.
# <extras.cpio.gz> gets the large optional tools (qemu-nbd and qemu-img, with
# the libraries the base lacks), which run-guest.sh adds only for guests with
# the memory to unpack them: a 320 MiB guest cannot.
set -eu

if [ $# -ne 2 ] && [ $# -ne 3 ]; then
	echo "usage: mkinitramfs.sh <release> <out.cpio.gz> [<extras.cpio.gz>]" >&2
	exit 2
fi
rel=$1
out=$2
extras=${3:-}
kroot=${DMUSER_KERNEL_ROOT:-}
moddir=$kroot/lib/modules/$rel
die() { echo "mkinitramfs: $*" >&2; exit 1; }

if [ -n "$kroot" ]; then
	[ -f "$moddir/modules.order" ] || die "no module tree for $rel in $moddir"
else
	[ -d "$moddir/kernel" ] || die "no modules for $rel in $moddir"
fi
for t in busybox cpio gzip ldd depmod modprobe xz; do
	command -v "$t" >/dev/null || die "host tool '$t' not found (run tools/dm-user/install-deps.sh)"
done

root=$(mktemp -d "${TMPDIR:-/tmp}/dmuser-initramfs.XXXXXX")
xroot=$(mktemp -d "${TMPDIR:-/tmp}/dmuser-extras.XXXXXX")
trap 'rm -rf "$root" "$xroot"' EXIT

# Same merged-/usr layout as the Debian host, so binaries (and test programs
# the other scripts build on the host) find their loader and libraries at the
# paths the host linker recorded.
mkdir -p "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib "$root"/usr/lib64 \
	"$root"/proc "$root"/sys "$root"/dev "$root"/tmp "$root"/run \
	"$root"/mnt "$root"/etc "$root"/root "$root"/var
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done

install -m 755 "$(command -v busybox)" "$root/usr/bin/busybox"
for a in $(busybox --list-full); do
	case $a in */busybox) ;; */*) ln -sf /usr/bin/busybox "$root/$a" ;; esac
done

# Copy a file to the same path in the image (replacing a busybox link, which
# cp would otherwise follow and overwrite busybox with) plus every shared
# library ldd resolves for it, the dynamic loader included.
copy_with_libs() {
	local f=$1 lib
	[ -e "$f" ] || die "$f not found (run tools/dm-user/install-deps.sh)"
	mkdir -p "$root$(dirname "$f")"
	rm -f "$root$f"
	cp -L "$f" "$root$f"
	if ldd "$f" 2>/dev/null | grep -q 'not found'; then
		die "unresolved libraries for $f: $(ldd "$f" | grep 'not found' | tr -d '\t' | tr '\n' ' ')"
	fi
	for lib in $(ldd "$f" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p'); do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

# jq reads dmuser's --json output in the tests; setpriv (util-linux):
# test_service.sh runs the unit's daemon with its capability bounding set,
# as systemd would.
for b in dmsetup fio mke2fs mkfs.ext4 e2fsck fsck.ext4 nbd-client nbdkit jq \
	setpriv; do
	p=$(command -v "$b") || die "host binary '$b' not found (run tools/dm-user/install-deps.sh)"
	copy_with_libs "$p"
done
# util-linux's blkdiscard has options (-z, -s) busybox's lacks; optional.
if p=$(command -v blkdiscard) && [ ! -L "$p" ]; then copy_with_libs "$p"; fi

# nbdkit's plugins and filters that the benchmark and test_nbd.sh use.
nbddir=/usr/lib/x86_64-linux-gnu/nbdkit
for m in plugins/nbdkit-memory-plugin plugins/nbdkit-file-plugin \
	filters/nbdkit-error-filter filters/nbdkit-delay-filter \
	filters/nbdkit-nozero-filter filters/nbdkit-fua-filter; do
	found=$(dpkg -L nbdkit 2>/dev/null | grep "/${m#*/}\.so\$" | head -n 1) ||
		true
	copy_with_libs "${found:-$nbddir/$m.so}"
done

# Test programs are linked on the host against these; ship them with their
# dependencies so they run in the guest.
for l in libdevmapper.so.1.02.1 libsystemd.so.0 libjson-c.so.5 liburing.so.2 \
	libaio.so.1 libnbd.so.0; do
	copy_with_libs "/lib/x86_64-linux-gnu/$l"
done
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"

# Kernel modules with everything modprobe would load first. ublk_drv only
# exists from 6.0 on and is not built in Debian's 6.1.
mods="dm-mod dm-zero brd null_blk loop nbd ext4 crc32c_generic"
kmodprobe() {
	if [ -n "$kroot" ]; then
		modprobe -d "$kroot" -S "$rel" "$@"
	else
		modprobe -S "$rel" "$@"
	fi
}
kmodprobe -q -R ublk_drv >/dev/null 2>&1 && mods="$mods ublk_drv"
# The scratch disk of run-guest.sh -d; modules where they are not built in.
for m in virtio_pci virtio_blk; do
	kmodprobe -q -R "$m" >/dev/null 2>&1 && mods="$mods $m"
done
paths=$(for m in $mods; do
	if ! kmodprobe --show-depends "$m"; then
		[ -n "$kroot" ] || die "modprobe --show-depends $m failed for $rel"
	fi
done | awk '$1 == "insmod" { print $2 }' | sort -u)
[ -n "$paths" ] || [ -n "$kroot" ] || die "no module files found for $rel"

# 6.12 ships .ko.xz. Busybox's insmod/modprobe get those loaded only by the
# kernel's own decompression (CONFIG_MODULE_DECOMPRESS, 6.12 only) after a first
# attempt that logs "Invalid ELF header magic": decompress them here instead,
# so loading is quiet and depmod below indexes plain .ko names.
for p in $paths; do
	dst=$root/usr${p#"$kroot"}
	dst=${dst%.xz}
	mkdir -p "$(dirname "$dst")"
	case $p in
	*.ko.xz) xz -dc "$p" >"$dst" ;;
	*) cp "$p" "$dst" ;;
	esac
done
mdst=$root/usr/lib/modules/$rel
mkdir -p "$mdst"
for f in modules.order modules.builtin modules.builtin.modinfo; do
	[ -f "$moddir/$f" ] && cp "$moddir/$f" "$mdst/"
done
# Rather than copying the host's indexes and rewriting .ko.xz names, let depmod
# regenerate modules.dep/.alias/.symbols (text and .bin) for exactly the files
# in the image, so every index agrees with what is there.
sed -i 's/\.ko\.xz/.ko/g' "$mdst/modules.order"
depmod -b "$root" "$rel" || die "depmod for $rel in the image failed"
# (A kernel with every module built in has empty indexes, but has them.)
for f in modules.dep modules.alias modules.symbols modules.order modules.builtin; do
	[ -s "$mdst/$f" ] || [ "$f" = modules.symbols ] ||
		{ [ -n "$kroot" ] && [ -f "$mdst/$f" ]; } ||
		die "$f missing in the image for $rel"
done

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0 | gzip -1) >"$out.tmp" ||
	die "writing $out failed"
mv "$out.tmp" "$out"

# The extras: qemu-nbd serves a qcow2 image in test_nbd.sh (qemu-utils,
# optional). What the base has already is left out.
[ -n "$extras" ] || exit 0
base_root=$root
root=$xroot
# Through usr/ as in the base, whose bin, sbin, lib and lib64 links the
# archive must not replace: the links go before it is written.
mkdir -p "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib "$root"/usr/lib64
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
for b in qemu-nbd qemu-img; do
	if p=$(command -v "$b"); then copy_with_libs "$p"; fi
done
for d in bin sbin lib lib64; do rm "$root/$d"; done
(cd "$xroot" && find . -type f | while read -r f; do
	if [ -e "$base_root/${f#./}" ]; then rm -f "$f"; fi
done
find . -mindepth 1 -type d -empty -delete)
(cd "$xroot" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0 | gzip -1) >"$extras.tmp" ||
	die "writing $extras failed"
mv "$extras.tmp" "$extras"
