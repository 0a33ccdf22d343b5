# The demo's VM part: load gpuvm, show the GPUs, create vGPUs, open one through VFIO, show
# the per-GPU and per-vGPU sysfs counters, and clean up.
. /tests/lib.sh
load_gpuvm
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x10de ] || continue
  echo "PCI $(basename $d) $(cat $d/vendor):$(cat $d/device) class $(cat $d/class) driver: $(driver_of $(basename $d))"
done
dmesg | grep "gpuvm $GPU_HOST" | sed 's/^\[[^]]*\] //'
T=/sys/class/mdev_bus/$GPU_HOST/mdev_supported_types
echo "--- vGPU types"
for t in $T/*; do echo "$(basename $t): $(cat $t/description) (available: $(cat $t/available_instances))"; done
A=2f0e0c3a-0000-4000-8000-000000000001; B=2f0e0c3a-0000-4000-8000-000000000002
echo $A > $T/gpuvm-2/create
echo $B > $T/gpuvm-8/create
echo "--- created $A (gpuvm-2) and $B (gpuvm-8); available now:"
for t in $T/*; do echo "  $(basename $t): $(cat $t/available_instances)"; done
echo "--- opening $A through VFIO (cdev + iommufd and legacy group) and checking its config space"
gpuvm-vfio-test config-space --mdev $A --path both | tail -3
echo "--- the unchanged guest driver runs mmul on $A (gpuvm-2) and hotspot on $B (gpuvm-8) at once"
gpuvm-bench --mdev $A mmul > /tmp/a.json 2>&1 & pa=$!
gpuvm-bench --mdev $B hotspot > /tmp/b.json 2>&1 & pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
for f in /tmp/a.json /tmp/b.json; do
  sed -n 's/^{"workload":"\([a-z]*\)".*"ok":\([a-z]*\).*"total_us":\([0-9]*\).*/  \1: ok=\2, \3 us/p' $f
done
[ $ra = 0 ] && [ $rb = 0 ] || { cat /tmp/a.json /tmp/b.json; fail "a workload failed"; }
echo "--- /sys/bus/pci/devices/$GPU_HOST/gpuvm/"
for f in /sys/bus/pci/devices/$GPU_HOST/gpuvm/*; do echo "  $(basename $f) = $(cat $f)"; done
echo "--- /sys/bus/mdev/devices/$A/gpuvm/"
for f in /sys/bus/mdev/devices/$A/gpuvm/*; do echo "  $(basename $f) = $(cat $f)"; done
echo 1 > /sys/bus/mdev/devices/$A/remove
echo 1 > /sys/bus/mdev/devices/$B/remove
echo "--- removed both; free VRAM back to $(cat /sys/bus/pci/devices/$GPU_HOST/gpuvm/vram_free_mib) MiB"
