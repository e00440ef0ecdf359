#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the guest test list on each kernel and print one summary line:
#   check.sh <payload-dir> <testlist-file> [<release>...]
# <payload-dir> holds the tests, the list and <release>/dm-user.ko per kernel;
# the releases default to kernels.sh's. The test list may be given relative to
# the payload dir or as a host path. This copies guest-tests.sh into the
# payload dir so the runner always matches the harness.
# Environment: DMUSER_GUEST_TIMEOUT overrides the per-guest bound (default:
# the sum of the per-test bounds plus 300 s for boot and cleanup).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "check: $*" >&2; exit 2; }
[ $# -ge 2 ] || die "usage: check.sh <payload-dir> <testlist-file> [<release>...]"
payload=$1 list=$2
shift 2
[ -d "$payload" ] || die "payload dir '$payload' not found"
if [ $# -gt 0 ]; then
	releases=("$@")
else
	mapfile -t releases < <("$here/kernels.sh") && [ ${#releases[@]} -gt 0 ] ||
		die "kernels.sh found no guest kernels"
fi

# The guest runs the list from the payload dir, so it must be inside it.
if [ -f "$payload/$list" ]; then
	glist=$list
elif [ -f "$list" ]; then
	abs=$(realpath "$list") pabs=$(realpath "$payload")
	case $abs in
	"$pabs"/*) glist=${abs#"$pabs"/} ;;
	*) cp "$list" "$payload/.check-testlist"; glist=.check-testlist ;;
	esac
else
	die "test list '$list' not found (neither in '$payload' nor on the host)"
fi
install -m 755 "$here/guest-tests.sh" "$payload/guest-tests.sh"

gtmo=${DMUSER_GUEST_TIMEOUT:-$(sed 's/#.*//' "$payload/$glist" |
	awk 'NF { s += (NF > 1 ? $2 : 300) } END { print s + 300 }')}

pass=0 fail=0 skip=0 problems=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for rel in "${releases[@]}"; do
	echo "# kernel: $rel"
	args=(-k "$rel" -p "$payload" -t "$gtmo")
	if [ -f "$payload/$rel/dm-user.ko" ]; then
		args+=(-m "$payload/$rel/dm-user.ko")
	else
		echo "# kernel $rel: no $payload/$rel/dm-user.ko, running without it"
	fi
	"$here/run-guest.sh" "${args[@]}" -- ./guest-tests.sh "$glist" 2>&1 |
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

for p in ${problems[@]+"${problems[@]}"}; do echo "# FAILED $p"; done
line="$pass passed, $fail failed"
[ "$skip" = 0 ] || line="$line, $skip skipped"
echo "$line"
[ "$fail" = 0 ]
