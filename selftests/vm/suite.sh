#!/usr/bin/env bash
# `make test`'s VM part: one boot running the named tests, then the harness self-test (a boot
# whose kernel WARN must be detected). Prints one KTAP document (version line, plan covering
# both boots, result lines, "# SKIP reason" for skipped tests, "# Totals:") and a closing
# "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# The main boot ran 10 minutes on a 2-core machine (nested-vgpu and libvirt-mdev boot nested
# guests: 2-5 minutes each, the longer under load): give each boot 30 minutes (each test keeps
# its own timeout). One boot per model VRAM size the tests declare (boots.sh; most share one).
out=$(VM_TIMEOUT=${VM_TIMEOUT:-1800} bash "$HERE/boots.sh" --name tests "$@"); rc=$?
# The plan: run.sh's (one line per test it was given, even one never reported) plus the self-test.
planned=$(echo "$out" | sed -n 's/^1\.\.\([0-9]*\)$/\1/p')
results=$(echo "$out" | grep -E '^(not )?ok ')
echo "KTAP version 1"
echo "1..$(( ${planned:-$(echo "$results" | grep -c .)} + 1 ))"
# run.sh's own header, totals and closing line are replaced by this suite's.
echo "$out" | grep -vE '^(KTAP version 1|1\.\.[0-9]+|# Totals: .*|[0-9]+ passed, [0-9]+ failed)$'
pass=$(echo "$results" | grep '^ok ' | grep -vc ' # SKIP')
skip=$(echo "$results" | grep '^ok ' | grep -c ' # SKIP')
fail=$(echo "$results" | grep -c '^not ok ')
[ $rc = 0 ] || [ $fail -gt 0 ] || fail=$((fail + 1))   # a harness-level failure counts
n=$(( $(echo "$results" | grep -c .) + 1 ))
if selftest=$(bash "$HERE/run.sh" --name harness-selftest --gpus 0 --expect-splat warn-module); then
  echo "ok $n harness-catches-warning"; pass=$((pass + 1))
else
  echo "not ok $n harness-catches-warning"; fail=$((fail + 1))
fi
echo "$selftest" | sed 's/^/# /'
echo "# Totals: pass:$pass fail:$fail xfail:0 xpass:0 skip:$skip error:0"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
