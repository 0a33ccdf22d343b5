# `make bench`'s VM part: every workload natively (vfio-pci, no-IOMMU) and on a gpuvm-1 vGPU
# in both shadow modes, one JSON record per run prefixed "BENCH <config>", plus the vGPU's
# counters prefixed "COUNTERS <config> <workload>".
. /tests/lib.sh
WORKLOADS=${BENCH_WORKLOADS:-"hotspot lud srad needle mmul"}
load_gpuvm
for w in $WORKLOADS; do
  native_workload $w | sed -n 's/^{/BENCH native {/p'
  for mode in naive lazy; do
    [ $mode = lazy ] && echo 1 > /sys/bus/pci/devices/$GPU_HOST/gpuvm/lazy_shadow || echo 0 > /sys/bus/pci/devices/$GPU_HOST/gpuvm/lazy_shadow
    vgpu_workload 1 $w > /tmp/b 2>&1 || { cat /tmp/b; fail "$w on a vGPU ($mode)"; }
    sed -n "s/^{/BENCH vgpu-$mode {/p" /tmp/b
    echo "COUNTERS vgpu-$mode $w $(tail -1 /tmp/b)"
  done
done
