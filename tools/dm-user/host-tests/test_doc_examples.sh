#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The admin guide's complete daemons (every literal block that starts with
# "#include <dmuser.h>") build against the library as they are printed,
# with -Wall -Werror: a reader who copies one gets a program.
set -u

# shellcheck source=tools/dm-user/host-tests/tap.sh
. "$(dirname "$0")/tap.sh"

command -v cc >/dev/null || skip_all "no cc (run tools/dm-user/install-deps.sh)"
tmp=$(mktemp -d) || { echo "mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
rst=$top/Documentation/admin-guide/device-mapper/dm-user.rst

if ! make -s -C "$top/tools/dm-user" O="$tmp/tools" >"$tmp/make.log" 2>&1; then
	bail "make the library: $(tail -n 5 "$tmp/make.log")"
fi
# A block runs from its "  #include <dmuser.h>" line to the first line
# that is neither empty nor indented; each goes to example-<n>.c.
awk -v dir="$tmp" '
	/^  #include <dmuser.h>$/ { n++; out = dir "/example-" n ".c" }
	out && /^[^ ]/ { close(out); out = "" }
	out { sub(/^  /, ""); print > out }
' "$rst"
count=$(find "$tmp" -maxdepth 1 -name 'example-*.c' | wc -l)
if [ "$count" -ge 2 ]; then
	ok "the guide has $count complete daemons"
else
	not_ok "the guide has $count complete daemons, expected at least 2"
fi
for src in "$tmp"/example-*.c; do
	[ -e "$src" ] || continue
	name=$(sed -n 's/.*dmu_dev_create("\([^"]*\)".*/\1/p' "$src" | head -n 1)
	if cc -Wall -Werror -D_GNU_SOURCE -I"$top/include/uapi" \
		-I"$top/tools/dm-user/lib" -o "${src%.c}" "$src" \
		"$tmp/tools/libdmuser.a" -ldevmapper -pthread >"$tmp/cc.log" 2>&1; then
		ok "the ${name:-unnamed} daemon builds"
	else
		not_ok "the ${name:-unnamed} daemon: $(head -n 5 "$tmp/cc.log")"
	fi
done
done_testing
