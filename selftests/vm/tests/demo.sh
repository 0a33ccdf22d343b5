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
echo "--- /sys/bus/pci/devices/$GPU_HOST/gpuvm/"
for f in /sys/bus/pci/devices/$GPU_HOST/gpuvm/*; do echo "  $(basename $f) = $(cat $f)"; done
echo "--- /sys/bus/mdev/devices/$A/gpuvm/"
for f in /sys/bus/mdev/devices/$A/gpuvm/*; do echo "  $(basename $f) = $(cat $f)"; done
echo 1 > /sys/bus/mdev/devices/$A/remove
echo 1 > /sys/bus/mdev/devices/$B/remove
echo "--- removed both; free VRAM back to $(cat /sys/bus/pci/devices/$GPU_HOST/gpuvm/vram_free_mib) MiB"
