#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make man builds every page; man(1) formats each without a warning (the
# check lintian makes); and every command, option and key that the tool's
# --help output names appears in its page: dmuser's commands and their
# options in dmuser(8), serve's options in dmuserd(8); every function of
# the library's header in the NAME section of a libdmuser page; every
# name the wire format's header defines in dm-user(4).
set -u

# shellcheck source=tools/dm-user/host-tests/tap.sh
. "$(dirname "$0")/tap.sh"

for t in scdoc man col; do
	command -v "$t" >/dev/null || skip_all "no $t (run tools/dm-user/install-deps.sh)"
done
tmp=$(mktemp -d) || { echo "mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

if ! make -s -C "$top" man BUILD="$tmp" >"$tmp/make.log" 2>&1 ||
   ! make -s -C "$top/tools/dm-user" O="$tmp/tools" >>"$tmp/make.log" 2>&1; then
	not_ok "make man and the tools: $(tail -n 5 "$tmp/make.log")"
	done_testing
fi
ok "make man: $(cd "$tmp/man" && echo *)"

for page in "$tmp"/man/*; do
	p=$(basename "$page")
	LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
		man --warnings -E UTF-8 -l -Tutf8 -Z "$page" >/dev/null 2>"$tmp/warn"
	if [ ! -s "$tmp/warn" ]; then
		ok "$p: no warnings from man --warnings"
	else
		not_ok "$p: $(head -n 3 "$tmp/warn")"
	fi
	# One line per paragraph: no word broken at a line's end.
	MANWIDTH=2000 man -l "$page" 2>/dev/null | col -b >"$tmp/$p.txt"
done

# Each word must appear in the page, as a word of its own.
covers() {
	page=$1 what=$2 words=$3
	missing=""
	for w in $words; do
		grep -qE -- "(^|[^a-z_-])$w([^a-z_-]|\$)" "$tmp/$page.txt" ||
			missing="$missing $w"
	done
	if [ -z "$words" ]; then
		not_ok "$page: no $what found in the --help output"
	elif [ -z "$missing" ]; then
		ok "$page names every $what: $(echo "$words" | tr '\n' ' ')"
	else
		not_ok "$page lacks $what:$missing"
	fi
}
# Options as the help lists them: "  -s, --size <size>" or "      --copy-reads".
options() {
	sed -n 's/^ *\(-[A-Za-z], \)\{0,1\}\(--[a-z][a-z-]*\).*/\1\2/p' |
		tr -d ',' | tr ' ' '\n' | sort -u
}

dmuser=$tmp/tools/dmuser
cmds=$("$dmuser" --help | sed -n 's/^  \([a-z][a-z]*\)\( .*\)\{0,1\}$/\1/p')
covers dmuser.8 command "$cmds"
opts=""
for c in $cmds; do
	[ "$c" = serve ] && continue
	opts="$opts $("$dmuser" "$c" --help | options)"
done
opts="$opts $("$dmuser" --help | grep -oE -- '--version|-V' | sort -u)"
covers dmuser.8 option "$(echo "$opts" | tr ' ' '\n' | sort -u)"
keys=$("$dmuser" set --help | sed -n 's/^  \([a-z_]*\)=.*/\1/p')
covers dmuser.8 "set key" "$keys"
# Every function of the library's header is named in the NAME section of
# a page of section 3 (what man(1) finds it by, through a link).
for f in "$tmp"/*.3.txt; do
	sed -n '/^NAME/,/^SYNOPSIS/p' "$f"
done >"$tmp/the-section-3-NAMEs.txt"
covers the-section-3-NAMEs function \
	"$(dmuser_functions)"
# dm-user(4), the daemon author's reference, names every constant, macro
# and ioctl of the wire format's header: a new one needs its words there.
covers dm-user.4 "name of linux/dm-user.h" "$(sed -n \
	's/^#define \(DM_USER_[A-Z0-9_]*\).*/\1/p' "$top/include/uapi/linux/dm-user.h")"
for ex in dmu-cow dmu-cbt dmu-fault; do
	covers "$ex.8" option "$("$tmp/tools/$ex" --help | options)"
	covers "$ex.8" "ctl command" "$("$tmp/tools/$ex" --help |
		sed -n "s/^ *$ex ctl <socket> //p" | tr '|' ' ' |
		sed 's/<[a-z]*>//g')"
done
covers dmuserd.8 option "$("$tmp/tools/dmuserd" --help | options) --version -V"

done_testing
