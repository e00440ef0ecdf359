#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make deb builds the four Debian packages with lintian reporting no error;
# each holds what it should; installed on the host they give a working
# pkg-config file, against which the rst's example daemon compiles and links
# to the shared library, a dmuser that prints its version, a systemd unit
# that systemd-analyze verify accepts, and DKMS's entry
# for the module; removed, they leave nothing behind. make check
# PACKAGED=1's payload is assembled from them. Runs as root on the
# host and installs packages there, removing them again on every exit.
set -u

# shellcheck source=tools/dm-user/host-tests/tap.sh
. "$(dirname "$0")/tap.sh"
rst=$top/Documentation/admin-guide/device-mapper/dm-user.rst
pkgs="dm-user-dkms libdmuser1 libdmuser-dev dmuser"

[ "$(id -u)" = 0 ] || skip_all "needs root"
for t in dpkg-buildpackage dh_dkms lintian dkms; do
	command -v "$t" >/dev/null || skip_all "no $t (run tools/dm-user/install-deps.sh)"
done
# One run at a time: another would purge what this one installed.
exec 9>"${TMPDIR:-/tmp}/dm-user-test-deb.lock"
flock -n 9 || bail "another test_deb.sh is running"
# Packages of ours in any state (installed, half-installed or left by a run
# that was killed) are not this test's to purge: say so and fail.
for p in $pkgs; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)
	case $st in
	"" | un*) ;;
	*) bail "$p is on this machine (dpkg state '$st'): purge it to run this test" ;;
	esac
done

tmp=$(mktemp -d) || { echo "mktemp failed"; exit 1; }
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	# shellcheck disable=SC2086 # a list of packages
	dpkg --purge $pkgs >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
ver=$(project_version)

if make -s -C "$top" deb BUILD="$tmp" >"$tmp/deb.log" 2>&1; then
	ok "make deb"
else
	bail "make deb: $(tail -n 5 "$tmp/deb.log")"
fi
d=$tmp/deb
changes=$(find "$d" -maxdepth 1 -name '*.changes' | head -n 1)
lintian "$changes" >"$tmp/lintian.log" 2>&1
sed 's/^/# lintian: /' "$tmp/lintian.log"
if [ -n "$changes" ] && ! grep -q '^E: ' "$tmp/lintian.log"; then
	ok "lintian: no errors ($(grep -c '^W: ' "$tmp/lintian.log") warnings)"
else
	not_ok "lintian errors: $(grep '^E: ' "$tmp/lintian.log" | head -n 3)"
fi

# What each package holds.
holds() {
	deb=$d/${1}_${ver}_$2.deb
	shift 2
	list=$(dpkg-deb -c "$deb" 2>/dev/null | awk '{ print $6 }') ||
		{ not_ok "$deb: not a package"; return; }
	missing=""
	for f in "$@"; do
		echo "$list" | grep -qx "\\./$f" || missing="$missing $f"
	done
	if [ -z "$missing" ]; then
		ok "$(basename "$deb") holds $*"
	else
		not_ok "$(basename "$deb") lacks:$missing"
	fi
}
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
arch=$(dpkg --print-architecture)
holds dm-user-dkms all "usr/src/dm-user-$ver/dkms.conf" \
	"usr/src/dm-user-$ver/drivers/md/dm-user-target.c" \
	"usr/src/dm-user-$ver/include/uapi/linux/dm-user.h"
holds libdmuser1 "$arch" "usr/lib/$ma/libdmuser.so.1"
# A page, or a link to one, for the library and each of its functions.
man3=""
for fn in libdmuser $(dmuser_functions); do
	man3="$man3 usr/share/man/man3/$fn.3.gz"
done
# shellcheck disable=SC2086 # a list of files
holds libdmuser-dev "$arch" usr/include/dmuser.h usr/include/linux/dm-user.h \
	"usr/lib/$ma/libdmuser.a" "usr/lib/$ma/libdmuser.so" \
	"usr/lib/$ma/pkgconfig/dmuser.pc" $man3 usr/share/man/man4/dm-user.4.gz
holds dmuser "$arch" usr/bin/dmuser usr/bin/dmuserd usr/bin/dmu-cow \
	usr/bin/dmu-cbt usr/bin/dmu-fault usr/share/man/man8/dmuser.8.gz \
	usr/share/man/man8/dmuserd.8.gz usr/share/man/man8/dmu-cow.8.gz \
	usr/share/man/man8/dmu-cbt.8.gz usr/share/man/man8/dmu-fault.8.gz \
	lib/systemd/system/dmuser@.service \
	usr/share/man/man8/dmuser@.service.8.gz \
	usr/share/doc/dmuser/examples/example.conf

# make check PACKAGED=1's payload: the packages' files, each module built
# by dkms.conf's command for its kernel, lib_test on the packaged library.
pl=$tmp/payload
if "$top/tools/dm-user/vm/packaged-payload.sh" "$d" "$tmp/packaged" "$pl" \
	>"$tmp/payload.log" 2>&1; then
	ok "packaged-payload.sh: $(head -n 1 "$pl/packaged.txt")"
else
	not_ok "packaged-payload.sh: $(tail -n 5 "$tmp/payload.log")"
fi
bad=""
kernels=$("$top/tools/dm-user/vm/kernels.sh")
[ -n "$kernels" ] || bad=" (kernels.sh found no kernels)"
for k in $kernels; do
	vm=$(modinfo -F vermagic "$pl/$k/dm-user.ko" 2>/dev/null)
	case $vm in "$k "*) ;; *) bad="$bad $k:'$vm'" ;; esac
done
# _same <payload file> <package> <file in it>: the payload's copy is the
# package's file, as dpkg-deb reads it from the .deb.
_same() {
	dpkg-deb --fsys-tarfile "$d/$2" | tar -xO "./$3" | cmp -s - "$pl/$1"
}
so=$(ldd "$pl/lib_test" 2>/dev/null | awk '$1 == "libdmuser.so.1" { print $3 }')
v=$("$pl/dmuser" --version 2>&1)
if [ -z "$bad" ] && [ "$so" = "$pl/lib/libdmuser.so.1" ] &&
   _same lib/libdmuser.so.1 "libdmuser1_${ver}_$arch.deb" \
	"usr/lib/$ma/$(readlink "$pl/lib/libdmuser.so.1" || echo libdmuser.so.1)" &&
   _same dmuser "dmuser_${ver}_$arch.deb" usr/bin/dmuser &&
   _same systemd/dmuser@.service "dmuser_${ver}_$arch.deb" \
	lib/systemd/system/dmuser@.service &&
   [ "$v" = "dmuser $ver" ]; then
	ok "the packaged payload: modules for each kernel, lib_test on $so, $v"
else
	not_ok "the packaged payload: vermagic$bad, lib_test loads '$so', dmuser says '$v'"
fi

debs=""
for p in $pkgs; do
	case $p in dm-user-dkms) a=all ;; *) a=$arch ;; esac
	debs="$debs $d/${p}_${ver}_$a.deb"
done
# shellcheck disable=SC2086 # a list of files
if dpkg -i $debs >"$tmp/install.log" 2>&1; then
	ok "dpkg -i the four packages"
else
	bail "dpkg -i: $(tail -n 5 "$tmp/install.log")"
fi

flags=$(pkg-config --cflags --libs dmuser 2>&1)
case " $flags " in
*" -ldmuser "*) ok "pkg-config --cflags --libs dmuser: $flags" ;;
*) not_ok "pkg-config --cflags --libs dmuser: '$flags'" ;;
esac
pv=$(pkg-config --modversion dmuser 2>&1)
if [ "$pv" = "$ver" ]; then
	ok "pkg-config --modversion dmuser: $pv"
else
	not_ok "pkg-config --modversion dmuser: '$pv', not '$ver'"
fi

# The rst's complete example daemon: the indented block after its
# introduction, built as the rst says.
awk '/A complete RAM-backed device::$/ { on = 1; next }
     on && /^[^ ]/ { exit }
     on { sub(/^  /, ""); print }' "$rst" >"$tmp/ramdisk.c"
# shellcheck disable=SC2086 # pkg-config's output is a list of words
if grep -q 'dmu_serve(' "$tmp/ramdisk.c" &&
   cc -Wall -Werror -o "$tmp/ramdisk" "$tmp/ramdisk.c" $flags \
	>"$tmp/cc.log" 2>&1; then
	ok "the rst's example daemon builds against the installed package"
else
	not_ok "the rst's example daemon: $(head -n 5 "$tmp/cc.log")"
fi
so=$(ldd "$tmp/ramdisk" 2>/dev/null | awk '$1 == "libdmuser.so.1" { print $3 }')
# /lib may be a link to /usr/lib (merged /usr).
if [ -n "$so" ] &&
   [ "$(readlink -f "$so")" = "$(readlink -f "/usr/lib/$ma/libdmuser.so.1")" ]; then
	ok "it links the packaged $so"
else
	not_ok "the example links libdmuser.so.1 from '$so'"
fi

v=$(dmuser --version 2>&1)
if [ "$v" = "dmuser $ver" ]; then
	ok "dmuser --version: $v"
else
	not_ok "dmuser --version: '$v'"
fi
v=$(dmuserd --version 2>&1)
if [ "$v" = "dmuserd $ver" ]; then
	ok "dmuserd --version: $v"
else
	not_ok "dmuserd --version: '$v'"
fi
# The installed unit, as systemd would load an instance of it: its
# syntax, the programs it runs and the pages it names (no systemd needs to
# run here). The guest's test_service.sh runs its command lines.
if ! command -v systemd-analyze >/dev/null; then
	not_ok "no systemd-analyze to verify the unit (run tools/dm-user/install-deps.sh)"
elif systemd-analyze verify /lib/systemd/system/dmuser@.service \
	>"$tmp/verify.log" 2>&1 && [ ! -s "$tmp/verify.log" ]; then
	ok "systemd-analyze verify dmuser@.service: no complaint"
else
	not_ok "systemd-analyze verify dmuser@.service: $(head -n 3 "$tmp/verify.log")"
fi
# dm-user-dkms's postinst has DKMS build and install it for the running
# kernel and the newest one (for all, where the running kernel is not one
# of them, as in a container): the newest guest kernel is always one.
newest=$("$top/tools/dm-user/vm/kernels.sh" | sort -V | tail -n 1)
st=$(dkms status -m dm-user -v "$ver" -k "$newest" 2>/dev/null)
case $st in
*": installed"*) ok "dkms status: $(dkms status dm-user 2>/dev/null | tr '\n' ';')" ;;
*) not_ok "dkms status for $newest after install: '$(dkms status dm-user 2>&1)'" ;;
esac

# make dkms-source must not overwrite the tree dm-user-dkms installed.
before=$(find "/usr/src/dm-user-$ver" -type f | sort | xargs md5sum 2>/dev/null)
if make -s -C "$top" dkms-source >"$tmp/src.log" 2>&1; then
	not_ok "make dkms-source overwrote the packaged /usr/src/dm-user-$ver"
elif ! grep -q "belongs to a package (dm-user-dkms)" "$tmp/src.log"; then
	not_ok "make dkms-source over the package: '$(cat "$tmp/src.log")'"
elif [ "$(find "/usr/src/dm-user-$ver" -type f | sort | xargs md5sum 2>/dev/null)" != "$before" ]; then
	not_ok "make dkms-source refused but changed /usr/src/dm-user-$ver"
else
	ok "make dkms-source refuses the packaged tree, which stays as it was"
fi

# shellcheck disable=SC2086
if dpkg --purge $pkgs >"$tmp/purge.log" 2>&1; then
	ok "dpkg --purge the four packages"
else
	not_ok "dpkg --purge: $(tail -n 5 "$tmp/purge.log")"
fi
left=""
for f in /usr/include/dmuser.h "/usr/lib/$ma/libdmuser.so.1" /usr/bin/dmuser \
	 "/usr/src/dm-user-$ver" /var/lib/dkms/dm-user; do
	[ -e "$f" ] && left="$left $f"
done
left="$left$(find /lib/modules/*/updates -name 'dm-user.ko*' 2>/dev/null | tr '\n' ' ')"
if [ -z "${left% }" ]; then
	ok "nothing left after purge"
else
	not_ok "left after purge:$left"
fi

done_testing
