# Helpers for VM test scripts (sourced; scripts run under sh -e).
fail() { echo "FAIL: $*"; exit 1; }
driver_of() { basename "$(readlink /sys/bus/pci/devices/$1/driver 2>/dev/null)" 2>/dev/null; }
load_gpuvm() {
  lsmod | grep -q '^mdev ' || insmod /lib/modules/mdev.ko
  lsmod | grep -q '^gpuvm ' || insmod /lib/modules/gpuvm.ko || fail "insmod gpuvm.ko failed"
}
# Give $GPU_NATIVE to vfio-pci in no-IOMMU mode (the native baseline) and print the group node.
bind_native_vfio() {
  echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
  if [ "$(driver_of $GPU_NATIVE)" != vfio-pci ]; then
    echo vfio-pci > /sys/bus/pci/devices/$GPU_NATIVE/driver_override
    echo $GPU_NATIVE > /sys/bus/pci/drivers_probe
  fi
  [ "$(driver_of $GPU_NATIVE)" = vfio-pci ] || fail "vfio-pci did not bind $GPU_NATIVE"
}
# Run one workload natively through vfio-pci; the JSON record goes to the console.
native_workload() {
  bind_native_vfio
  gpuvm-bench --vfio-pci $GPU_NATIVE "$@"
}
