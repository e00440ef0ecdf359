# shellcheck shell=sh
# SPDX-License-Identifier: GPL-2.0
#
# TAP for the host tests, sourced after "set -u": ok and not_ok number the
# checks, done prints the plan and exits 1 if any check failed, skip_all
# skips the whole test (kselftest's exit status 4), bail fails and stops.
# Sets top, the source tree's root.
# shellcheck disable=SC2034 # for the tests that source this
top=$(cd "$(dirname "$0")/../../.." && pwd)
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n $*"; }
done_testing() { echo "1..$n"; exit $failed; }
skip_all() { echo "1..0 # SKIP $*"; exit 4; }
bail() { not_ok "$*"; done_testing; }
# The project's version (the tools' Makefile), and the functions libdmuser's
# header declares, one per line.
project_version() { sed -n 's/^VERSION := //p' "$top/tools/dm-user/Makefile"; }
dmuser_functions() {
	grep -oE 'dmu_[a-z_]+\(' "$top/tools/dm-user/lib/dmuser.h" | tr -d '(' | sort -u
}

# check.sh's timeout sends SIGTERM, on which dash would end without running
# an EXIT trap: exit instead, so that the test's cleanup runs.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
echo "TAP version 13"
