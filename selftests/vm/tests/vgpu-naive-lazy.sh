# Both shadow sync modes give correct results: naive (sync at the guest's TLB flush) and lazy
# (sync at the next doorbell/bind/runlist commit). Lazy must not sync more often than naive.
. /tests/lib.sh
load_gpuvm
K=/sys/bus/pci/devices/$GPU_HOST/gpuvm/lazy_shadow
for mode in 0 1; do
  echo $mode > $K
  [ "$(cat $K)" = $mode ] || fail "lazy_shadow did not take $mode"
  # Not through a pipe: a failed workload must fail the test.
  ( vgpu_workload 4 mmul hotspot ) > /tmp/out.$mode 2>&1 || { cat /tmp/out.$mode; fail "a workload failed (lazy_shadow $mode)"; }
  cat /tmp/out.$mode
done
syncs() { sed -n 's/.*shadow_syncs=\([0-9]*\).*/\1/p' /tmp/out.$1; }
echo "shadow syncs: naive $(syncs 0), lazy $(syncs 1)"
[ "$(syncs 1)" -le "$(syncs 0)" ] || fail "lazy mode synced more often than naive"
echo 2 > $K 2>/dev/null && fail "lazy_shadow accepted 2"
echo 1 > $K
