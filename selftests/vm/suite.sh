#!/usr/bin/env bash
# `make test`'s VM part: one boot running the named tests (plus one per model VRAM size a test
# declares, see boots.sh), then the harness self-test (a boot whose kernel WARN must be
# detected). Prints TAP and a closing "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
out=$(bash "$HERE/boots.sh" --name tests "$@"); rc=$?
echo "$out" | grep -v ' passed, .* failed$'
pass=$(echo "$out" | grep -c '^ok '); fail=$(echo "$out" | grep -c '^not ok ')
[ $rc = 0 ] || [ $fail -gt 0 ] || fail=$((fail + 1))   # a harness-level failure counts
n=$((pass + fail + 1))
if selftest=$(bash "$HERE/run.sh" --name harness-selftest --gpus 0 --expect-splat warn-module); then
  echo "ok $n - harness-catches-warning"; pass=$((pass + 1))
else
  echo "not ok $n - harness-catches-warning"; fail=$((fail + 1))
fi
echo "$selftest" | sed 's/^/# /'
echo "$pass passed, $fail failed"
[ $fail = 0 ]
