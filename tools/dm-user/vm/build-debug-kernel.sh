#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the debug guest kernel (Linux 6.1 from Debian's linux-source-6.1, with
# KASAN, lockdep, kmemleak, UBSAN and fault injection) once per machine:
#
#   build-debug-kernel.sh [-p]
#
# The result lives outside the repository, under $DMUSER_DEBUG_CACHE
# (default /var/cache/dm-user), in a directory named after a hash of the
# source package version and debug-kernel.config, laid out like
# a system root so run-guest.sh can boot it with DMUSER_KERNEL_ROOT=<dir>:
#
#   <dir>/boot/vmlinuz-<release>
#   <dir>/lib/modules/<release>/{build -> ../../../obj, modules.*}
#
# A finished build is reused; an interrupted one is resumed (make is
# incremental). Prints nothing but the root directory on stdout, so
#   root=$(build-debug-kernel.sh)
# works; -p prints the root it would use without building. Progress and make
# output go to stderr and to <dir>/build.log.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "build-debug-kernel: $*" >&2; exit 1; }

print_only=0
case "${1:-}" in
-p) print_only=1 ;;
"") ;;
*) die "usage: build-debug-kernel.sh [-p]" ;;
esac

tarball=/usr/src/linux-source-6.1.tar.xz
frag=$here/debug-kernel.config
pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) ||
	die "package linux-source-6.1 is not installed (run tools/dm-user/install-deps.sh)"
[ -r "$tarball" ] || die "$tarball not found (reinstall linux-source-6.1)"
# Not this script: changing how the tree is installed must not throw away a
# finished two-hour build. Bump the "layout" word when the layout changes.
key=$( { echo "layout 1 $pkgver"; cat "$frag"; } | sha256sum | cut -c1-12)
root=${DMUSER_DEBUG_CACHE:-/var/cache/dm-user}/linux-6.1-debug-$key

if [ "$print_only" = 1 ]; then
	echo "$root"
	exit 0
fi
if [ -f "$root/done" ]; then
	echo "$root"
	exit 0
fi

for t in gcc make flex bison bc xz; do
	command -v "$t" >/dev/null ||
		die "host tool '$t' not found (run tools/dm-user/install-deps.sh)"
done
[ -f /usr/include/libelf.h ] || [ -f /usr/include/gelf.h ] ||
	die "libelf headers not found (objtool needs libelf-dev; run tools/dm-user/install-deps.sh)"

mkdir -p "$root"
# One builder at a time per cache entry.
exec 8>"$root/.lock"
flock 8 || die "cannot lock $root/.lock"
if [ -f "$root/done" ]; then
	echo "$root"
	exit 0
fi

log=$root/build.log
src=$root/src obj=$root/obj
echo "build-debug-kernel: building in $root (log: $log); this takes a while" >&2
if [ ! -f "$src/.unpacked" ]; then
	rm -rf "$src"
	mkdir -p "$src"
	tar -xf "$tarball" -C "$src" --strip-components=1 ||
		die "unpacking $tarball failed"
	: >"$src/.unpacked"
fi

mkdir -p "$obj"
jobs=$(nproc)
# allnoconfig with our lines as the "all" values: everything not named stays
# off, which keeps the build small.
{
	make -C "$src" O="$obj" KCONFIG_ALLCONFIG="$frag" allnoconfig
} >>"$log" 2>&1 || die "configuring failed; see $log"

# Kconfig drops a line whose dependencies are not met without a word: check
# that every option we asked for came out as asked.
bad=""
while IFS= read -r line; do
	case $line in
	CONFIG_*=n) opt=${line%=n}
		grep -q "^$opt=" "$obj/.config" && bad="$bad $line" ;;
	CONFIG_*) grep -qxF "$line" "$obj/.config" || bad="$bad $line" ;;
	esac
done <"$frag"
[ -z "$bad" ] || die "options not set as asked (unmet dependencies?):$bad"

make -C "$src" O="$obj" -j"$jobs" bzImage modules >>"$log" 2>&1 ||
	die "kernel build failed; last lines of $log:
$(tail -n 30 "$log")"
rel=$(make -s -C "$src" O="$obj" kernelrelease)
[ -n "$rel" ] || die "no kernel release from $obj"

rm -rf "${root:?}/boot" "${root:?}/lib"
mkdir -p "$root/boot"
cp "$obj/arch/x86/boot/bzImage" "$root/boot/vmlinuz-$rel"
cp "$obj/System.map" "$root/boot/System.map-$rel"
cp "$obj/.config" "$root/boot/config-$rel"
make -C "$src" O="$obj" INSTALL_MOD_PATH="$root" DEPMOD=/bin/true \
	modules_install >>"$log" 2>&1 || die "modules_install failed; see $log"
# The modules tree's build link points at the object tree, as Debian's
# headers packages do for /lib/modules/<release>/build.
ln -sfn ../../../obj "$root/lib/modules/$rel/build"
: >"$root/done"
echo "build-debug-kernel: built $rel" >&2
echo "$root"
