# Both shadow sync modes give correct results: naive (sync at the guest's TLB flush) and lazy
# (sync at the next doorbell/bind/runlist commit). Lazy must not sync more often than naive.
# Either way the shadow tables live in host system memory and the syncs read the guest's
# tables through copy-engine fetches (sysfs fetches), none of which falls back to PRAMIN.
. /tests/lib.sh
load_gpuvm
P=/sys/bus/pci/devices/$GPU_HOST/gpuvm
K=$P/lazy_shadow
for mode in 0 1; do
  echo $mode > $K
  [ "$(cat $K)" = $mode ] || fail "lazy_shadow did not take $mode"
  f0=$(cat $P/fetches); b0=$(cat $P/fetch_fallbacks)
  # Not through a pipe: a failed workload must fail the test.
  ( vgpu_workload 4 mmul hotspot ) > /tmp/out.$mode 2>&1 || { cat /tmp/out.$mode; fail "a workload failed (lazy_shadow $mode)"; }
  cat /tmp/out.$mode
  # The syncs read the guest's page tables in chunks the copy engine staged in host memory,
  # and with nothing else on the copy engine no fetch fell back to PRAMIN.
  f1=$(cat $P/fetches); b1=$(cat $P/fetch_fallbacks)
  echo "copy-engine fetches of guest tables: $((f1 - f0)), fallbacks to PRAMIN: $((b1 - b0))"
  [ $((f1 - f0)) -gt 0 ] || fail "no guest page-table chunk was fetched by the copy engine (lazy_shadow $mode)"
  [ $((b1 - b0)) = 0 ] || fail "$((b1 - b0)) fetches fell back to PRAMIN with the copy engine idle (lazy_shadow $mode)"
done
[ "$(cat $P/shadow_tables_sysmem_kib)" -gt 0 ] || fail "the shadow page tables are not in host system memory (shadow_tables_sysmem_kib 0)"
syncs() { sed -n 's/.*shadow_syncs=\([0-9]*\).*/\1/p' /tmp/out.$1; }
echo "shadow syncs: naive $(syncs 0), lazy $(syncs 1)"
[ "$(syncs 1)" -le "$(syncs 0)" ] || fail "lazy mode synced more often than naive"
echo 2 > $K 2>/dev/null && fail "lazy_shadow accepted 2"
echo 1 > $K
