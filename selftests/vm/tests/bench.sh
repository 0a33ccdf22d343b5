# `make bench`'s VM part: every workload natively (vfio-pci, no-IOMMU) and on a gpuvm-1 vGPU
# in the four modes of the GPUvm reproduction (naive: every BAR access trapped, shadows synced
# at the guest's flush; remap: BAR3 mmapped; lazy: shadows synced at the next use; remap-lazy:
# both), one JSON record per run prefixed "BENCH <config>", the vGPU's counters prefixed
# "COUNTERS <config> <workload>", and "BENCH_SNAP <config>/<workload>/<start|end>" markers
# around each run, at which the host copies the models' own counters (selftests/vm/bench.sh).
# A failed run (native or vGPU, wrong result included) fails the bench.
. /tests/lib.sh
WORKLOADS=${BENCH_WORKLOADS:-"hotspot lud srad needle mmul"}
MODES=${BENCH_MODES:-"naive remap lazy remap-lazy"}
P=/sys/bus/pci/devices/$GPU_HOST/gpuvm
# The host copies the model counters ~1.5 s after it sees the marker; the models write them
# every second; nothing runs meanwhile. Straight to the console: /init's pipe buffers test
# output.
snap() { echo "BENCH_SNAP $1" > /dev/console; sleep 3; }
load_gpuvm
for w in $WORKLOADS; do
  snap "native/$w/start"
  ( native_workload $w ) > /tmp/b 2>&1 || { cat /tmp/b; fail "$w natively"; }
  snap "native/$w/end"
  sed -n 's/^{/BENCH native {/p' /tmp/b
  for mode in $MODES; do
    case $mode in
      naive) r=0; l=0 ;; remap) r=1; l=0 ;; lazy) r=0; l=1 ;; remap-lazy) r=1; l=1 ;;
      *) fail "unknown mode $mode" ;;
    esac
    echo $r > $P/bar_remap || fail "bar_remap $r"
    echo $l > $P/lazy_shadow || fail "lazy_shadow $l"
    snap "vgpu-$mode/$w/start"
    f0=$(cat $P/fetches); b0=$(cat $P/fetch_fallbacks)
    ( vgpu_workload 1 $w ) > /tmp/b 2>&1 || { cat /tmp/b; fail "$w on a vGPU ($mode)"; }
    f1=$(cat $P/fetches); b1=$(cat $P/fetch_fallbacks)
    snap "vgpu-$mode/$w/end"
    sed -n "s/^{/BENCH vgpu-$mode {/p" /tmp/b
    echo "COUNTERS vgpu-$mode $w $(tail -1 /tmp/b) fetches=$((f1 - f0)) fetch_fallbacks=$((b1 - b0))"
  done
done
echo 1 > $P/bar_remap; echo 1 > $P/lazy_shadow
