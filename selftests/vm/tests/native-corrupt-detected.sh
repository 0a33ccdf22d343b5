# A wrong result must fail the workload: flip one output element and expect gpuvm-bench to
# report the mismatch and exit non-zero.
. /tests/lib.sh
if native_workload --corrupt-one mmul > /tmp/out 2>&1; then cat /tmp/out; fail "corrupted result was accepted"; fi
cat /tmp/out
grep -q "mmul FAILED: .*differ" /tmp/out || fail "no element mismatch reported"
