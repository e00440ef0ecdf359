#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Run after the suite in the debug-kernel lane: fails if the kernel reported
# any problem so far (KASAN, lockdep, UBSAN, WARN, BUG, a hung task, list
# corruption) or if kmemleak finds unreferenced objects, then clears
# kmemleak. Reads the log that debug-tests.sh keeps in /tmp/kmsg.all; skips
# without it.
#
# With DMU_LEAK_SCOPE=dm-user (fault_report.sh, run after fault_test), only
# leaks with a dm-user function in their allocation trace count: injected
# faults also take core-kernel error paths, some of which leak on their own
# (in 6.1, a failed kmem_cache_create() from dm's bioset_init() leaks the
# cache's sysfs name); those are listed and counted apart, not hidden.
. "$(dirname "$0")/test_common.sh"
scope=${DMU_LEAK_SCOPE:-all}
log=/tmp/kmsg.all
leaks=/sys/kernel/debug/kmemleak
[ -s "$log" ] || _skip "no kernel log kept (run through debug-tests.sh)"
[ -e "$leaks" ] || _skip "no kmemleak (not the debug kernel)"

# kmemleak reports an object only once it is older than 5 s and was not
# referenced in two scans; the waits give the last test's frees time to
# land (RCU, work items) first.
sleep 6
echo scan > "$leaks" || _fail "kmemleak scan"
sleep 6
echo scan > "$leaks" || _fail "kmemleak scan"
cat "$leaks" > /tmp/leaks.all || _fail "reading $leaks"
echo clear > "$leaks" || _fail "kmemleak clear"
if [ "$scope" = dm-user ]; then
	# One record per leak, from its "unreferenced object" line on.
	awk -v ours=/tmp/leaks.txt -v core=/tmp/leaks.core '
		/^unreferenced object/ { flush(); rec = "" }
		{ rec = rec $0 "\n" }
		function flush() {
			if (rec == "") return
			printf "%s", rec > (rec ~ /dm_user/ ? ours : core)
		}
		END { flush() }' /tmp/leaks.all
	touch /tmp/leaks.txt /tmp/leaks.core
	ncore=$(grep -c '^unreferenced object' /tmp/leaks.core)
	if [ "$ncore" -gt 0 ]; then
		_log "$ncore core-kernel leaks on injected-fault paths, no dm-user frame (not counted); their allocation sites:"
		grep -A12 '^unreferenced object' /tmp/leaks.core |
			grep -oE '\] [a-z_0-9.]+\+' | sed 's/^] //; s/+$//' |
			sort | uniq -c | sort -rn | head -n 20 | sed 's/^/#   /'
	fi
else
	cp /tmp/leaks.all /tmp/leaks.txt
fi
nleaks=$(grep -c '^unreferenced object' /tmp/leaks.txt)

# /dev/kmsg records are "<prio>,<seq>,<usec>,<flags>;<text>".
sed 's/^[^;]*;//' "$log" > /tmp/kmsg.txt
pat='BUG:|WARNING:|KASAN|UBSAN|kernel BUG|Oops|general protection fault|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|list_add corruption|list_del corruption|blocked for more than|Kernel panic'
nreports=$(grep -cE "$pat" /tmp/kmsg.txt)
_log "kernel log: $(wc -l < /tmp/kmsg.txt) lines, $nreports report lines; kmemleak ($scope): $nleaks leaks"
ok=1
if [ "$nreports" -gt 0 ]; then
	ok=0
	_log "---- kernel reports (with 25 lines after each) ----"
	grep -E -A25 "$pat" /tmp/kmsg.txt | head -n 400 | sed 's/^/# /'
fi
if [ "$nleaks" -gt 0 ]; then
	ok=0
	_log "---- kmemleak ----"
	head -n 400 /tmp/leaks.txt | sed 's/^/# /'
fi
[ $ok = 1 ] || _fail "the kernel reported problems"
_log "no KASAN, lockdep, UBSAN, WARN or BUG report and no leak"
exit 0
