#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the guest test list on each kernel and print one summary line:
#   check.sh [-H <host-testlist>] <payload-dir> <testlist-file> [<release>...]
# -H first runs the host tests listed there ("<script> [<timeout s>]" per
# line, relative to the list's directory): tests that build or install but
# load nothing, so they need no guest. Each counts as one test: exit 0
# passes, 4 skips, anything else (a timeout too) fails.
# <payload-dir> holds the tests, the list and <release>/dm-user.ko per kernel;
# the releases default to kernels.sh's. The test list may be given relative to
# the payload dir or as a host path. This copies guest-tests.sh into the
# payload dir so the runner always matches the harness.
# Environment: DMUSER_GUEST_TIMEOUT overrides the per-guest bound (default:
# the sum of the per-test bounds plus 300 s for boot and cleanup);
# DMUSER_GUEST_RUNNER runs the list in the guest instead of guest-tests.sh
# (the debug lane's debug-tests.sh, which ends by calling it).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "check: $*" >&2; exit 2; }
host_list=""
if [ "${1:-}" = -H ]; then
	[ $# -ge 2 ] || die "-H needs a host test list"
	host_list=$2
	shift 2
	[ -f "$host_list" ] || die "host test list '$host_list' not found"
fi
[ $# -ge 2 ] || die "usage: check.sh [-H <host-testlist>] <payload-dir> <testlist-file> [<release>...]"
payload=$1 list=$2
shift 2
[ -d "$payload" ] || die "payload dir '$payload' not found"
if [ $# -gt 0 ]; then
	releases=("$@")
else
	mapfile -t releases < <("$here/kernels.sh") && [ ${#releases[@]} -gt 0 ] ||
		die "kernels.sh found no guest kernels"
fi

[ -f "$payload/$list" ] && list=$payload/$list
[ -f "$list" ] || die "test list '$list' not found (neither in '$payload' nor on the host)"
install -m 755 "$here/guest-tests.sh" "$payload/guest-tests.sh"

# A line "@guest <run-guest.sh options>" starts a section of the list that
# runs in a guest of its own, booted with those options (say -M 256M -d 2G
# for a test that needs a small guest). Each section becomes a list in the
# payload dir, where the guest runs it from.
rm -f "$payload"/.check-section-*
sections=() sargs=()
while IFS= read -r line; do
	case $line in
	@guest*)
		sections+=(".check-section-${#sections[@]}")
		sargs+=("${line#@guest}")
		continue ;;
	esac
	if [ ${#sections[@]} = 0 ]; then
		sections+=(.check-section-0)
		sargs+=("")
	fi
	printf '%s\n' "$line" >>"$payload/${sections[-1]}"
done <"$list"
[ ${#sections[@]} -gt 0 ] || die "test list '$list' is empty"

pass=0 fail=0 skip=0 problems=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -n "$host_list" ]; then
	hdir=$(cd "$(dirname "$host_list")" && pwd)
	while read -r name tmo _; do
		case $name in "" | "#"*) continue ;; esac
		echo "# host: running $name"
		rc=0
		timeout -k 10 "${tmo:-300}" "$hdir/$name" </dev/null >"$log" 2>&1 || rc=$?
		sed 's/^/# /' "$log"
		case $rc in
		0) pass=$((pass + 1)); echo "# host: ok $name" ;;
		4) skip=$((skip + 1)); echo "# host: skip $name" ;;
		124 | 137) fail=$((fail + 1)); problems+=("host: $name timed out after ${tmo:-300} s") ;;
		*) fail=$((fail + 1)); problems+=("host: $name (exit status $rc)") ;;
		esac
	done <"$host_list"
fi

for rel in "${releases[@]}"; do
	for i in "${!sections[@]}"; do
		glist=${sections[$i]}
		touch "$payload/$glist"
		gtmo=${DMUSER_GUEST_TIMEOUT:-$(sed 's/#.*//' "$payload/$glist" |
			awk 'NF { s += (NF > 1 ? $2 : 300) } END { print s + 300 }')}
		# shellcheck disable=SC2206 # the options are words
		opts=(${sargs[$i]})
		echo "# kernel: $rel${opts[*]:+ (guest ${opts[*]})}"
		args=(-k "$rel" -p "$payload" -t "$gtmo" ${opts[@]+"${opts[@]}"})
		if [ -f "$payload/$rel/dm-user.ko" ]; then
			args+=(-m "$payload/$rel/dm-user.ko")
		else
			echo "# kernel $rel: no $payload/$rel/dm-user.ko, running without it"
		fi
		"$here/run-guest.sh" "${args[@]}" -- "${DMUSER_GUEST_RUNNER:-./guest-tests.sh}" "$glist" 2>&1 |
			tee "$log"
		rc=${PIPESTATUS[0]}
		sum=$(sed -n 's/^# dm-user-summary: pass=\([0-9]*\) fail=\([0-9]*\) skip=\([0-9]*\).*/\1 \2 \3/p' "$log" | tail -n 1)
		if [ -n "$sum" ]; then
			read -r p f s <<<"$sum"
			pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
			while read -r l; do problems+=("$rel: $l"); done < <(grep '^not ok' "$log" || true)
		fi
		# A summary only counts if the guest also finished normally: guest-tests
		# exits 1 for failed tests, anything else is the guest's own trouble.
		if [ -z "$sum" ] || { [ "$rc" != 0 ] && [ "$rc" != 1 ]; } ||
		   { [ "$rc" = 1 ] && [ "${f:-0}" = 0 ]; }; then
			case $rc in
			124) why="guest timed out" ;;
			125) why="guest crashed or QEMU failed" ;;
			*) why="guest ended with status $rc" ;;
			esac
			[ -n "$sum" ] || why="$why, no test summary"
			problems+=("$rel: $why")
			fail=$((fail + 1))
		fi
		unset f
	done
done

for p in ${problems[@]+"${problems[@]}"}; do echo "# FAILED $p"; done
line="$pass passed, $fail failed"
[ "$skip" = 0 ] || line="$line, $skip skipped"
echo "$line"
[ "$fail" = 0 ]
