#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# DKMS builds dm-user.ko from `make dkms-source`'s tree for each guest kernel
# (kernels.sh), with modules for that kernel (vermagic), installs and removes
# it, and declines kernels outside 6.1 to 6.12. Runs on the host, as root,
# with DKMS's trees in a temporary directory: nothing is loaded, and the
# system's /usr/src, /var/lib/dkms and /lib/modules are left alone (but for
# the signing key DKMS makes itself once per machine).
set -u

# shellcheck source=tools/dm-user/host-tests/tap.sh
. "$(dirname "$0")/tap.sh"
# Runs a command with its output in $tmp/cmd.log, shown only if it fails.
check() {
	desc=$1
	shift
	if "$@" >"$tmp/cmd.log" 2>&1; then
		ok "$desc"
	else
		not_ok "$desc: $(tail -n 5 "$tmp/cmd.log")"
	fi
}

[ "$(id -u)" = 0 ] || skip_all "needs root"
command -v dkms >/dev/null || skip_all "no dkms (run tools/dm-user/install-deps.sh)"
kernels=$("$top/tools/dm-user/vm/kernels.sh") || skip_all "no kernels with headers"

tmp=$(mktemp -d) || { echo "mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
# --no-depmod: depmod would run on the system's /lib/modules/<release>.
trees="--sourcetree $tmp/usr/src --dkmstree $tmp/var/lib/dkms --installtree $tmp/lib/modules --no-depmod"
mkdir -p "$tmp/var/lib/dkms" "$tmp/lib/modules"

# One version for the whole project: the packages, the library and DKMS.
ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' "$top/dkms.conf")
tools_ver=$(project_version)
# The Debian package's version, from its changelog's first line.
deb_ver=$(sed -n '1s/^dm-user (\([^)]*\)).*/\1/p' "$top/debian/changelog")
if [ -n "$ver" ] && [ "$ver" = "$tools_ver" ]; then
	ok "dkms.conf's version $ver is the tools' version"
else
	not_ok "dkms.conf's version '$ver' differs from tools/dm-user/Makefile's '$tools_ver'"
fi
if [ "$deb_ver" = "$tools_ver" ]; then
	ok "debian/changelog's version $deb_ver is the tools' version"
else
	not_ok "debian/changelog's version '$deb_ver' differs from tools/dm-user/Makefile's '$tools_ver'"
fi

# The kernels dkms.conf lets DKMS build for: the 6.1 to 6.12 series.
excl=$(sed -n 's/^BUILD_EXCLUSIVE_KERNEL="\(.*\)"$/\1/p' "$top/dkms.conf")
bad=""
for rel in 6.1.0-57-amd64 6.1.192 6.5.0-1 6.9.12 6.10.3 6.12.117+deb12-amd64; do
	echo "$rel" | grep -Eq "$excl" || bad="$bad $rel(refused)"
done
for rel in 6.0.19 6.13.0-1-amd64 6.18.44 5.10.0-30-amd64 7.0.1 16.1.0 61.0; do
	echo "$rel" | grep -Eq "$excl" && bad="$bad $rel(accepted)"
done
if [ -n "$excl" ] && [ -z "$bad" ]; then
	ok "BUILD_EXCLUSIVE_KERNEL takes 6.1 to 6.12 only"
else
	not_ok "BUILD_EXCLUSIVE_KERNEL '$excl' wrong for:$bad"
fi

src=$tmp/usr/src/dm-user-$ver
if make -s -C "$top" dkms-source DESTDIR="$tmp" >"$tmp/source.log" 2>&1 &&
   [ -f "$src/dkms.conf" ] && [ -f "$src/drivers/md/dm-user-target.c" ] &&
   [ -f "$src/include/uapi/linux/dm-user.h" ]; then
	ok "make dkms-source lays out $src"
else
	not_ok "make dkms-source: $(tail -n 3 "$tmp/source.log")"
	done_testing
fi
# shellcheck disable=SC2086 # $trees is a list of options
check "dkms add" dkms add -m dm-user -v "$ver" $trees

for rel in $kernels; do
	# shellcheck disable=SC2086
	if ! dkms build -m dm-user -v "$ver" -k "$rel" $trees \
	     >"$tmp/build.log" 2>&1; then
		not_ok "dkms build -k $rel: $(tail -n 5 "$tmp/build.log")"
		continue
	fi
	ko=$(find "$tmp/var/lib/dkms/dm-user/$ver/$rel" -name 'dm-user.ko*' | head -n 1)
	vermagic=$(modinfo -F vermagic "$ko" 2>/dev/null)
	name=$(modinfo -F name "$ko" 2>/dev/null)
	lic=$(modinfo -F license "$ko" 2>/dev/null)
	case $vermagic in
	"$rel "*) ok "dkms build -k $rel: vermagic '$vermagic'" ;;
	*) not_ok "dkms build -k $rel: module '$ko' has vermagic '$vermagic'" ;;
	esac
	if [ "$name" = dm_user ] && [ "$lic" = GPL ]; then
		ok "$rel: module dm_user, license GPL"
	else
		not_ok "$rel: module '$name', license '$lic'"
	fi
	mkdir -p "$tmp/lib/modules/$rel"
	# shellcheck disable=SC2086
	if dkms install -m dm-user -v "$ver" -k "$rel" $trees \
	   >"$tmp/install.log" 2>&1 &&
	   [ -n "$(find "$tmp/lib/modules/$rel/updates/dkms" -name 'dm-user.ko*')" ]; then
		ok "dkms install -k $rel: in updates/dkms"
	else
		not_ok "dkms install -k $rel: $(tail -n 5 "$tmp/install.log")"
	fi
done

# Kernels outside the range are declined before any compiler runs: DKMS's
# status 77.
# shellcheck disable=SC2086
dkms build -m dm-user -v "$ver" -k 6.13.0-1-amd64 $trees >"$tmp/excl.log" 2>&1
rc=$?
if [ "$rc" = 77 ] && grep -q BUILD_EXCLUSIVE "$tmp/excl.log"; then
	ok "dkms build -k 6.13.0-1-amd64 declined (77)"
else
	not_ok "dkms build -k 6.13.0-1-amd64: status $rc, $(tail -n 3 "$tmp/excl.log")"
fi

# shellcheck disable=SC2086
dkms remove -m dm-user -v "$ver" --all $trees >"$tmp/remove.log" 2>&1
left=$(find "$tmp/lib/modules" "$tmp/var/lib/dkms" -name 'dm-user*')
if [ -z "$left" ]; then
	ok "dkms remove --all leaves nothing"
else
	not_ok "dkms remove --all left: $left"
fi

done_testing
