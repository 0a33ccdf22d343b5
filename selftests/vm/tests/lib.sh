# Helpers for VM test scripts (sourced; scripts run under sh -e).
fail() { echo "FAIL: $*"; exit 1; }
driver_of() { basename "$(readlink /sys/bus/pci/devices/$1/driver 2>/dev/null)" 2>/dev/null; }
load_gpuvm() {
  lsmod | grep -q '^mdev ' || insmod /lib/modules/mdev.ko
  lsmod | grep -q '^gpuvm ' || insmod /lib/modules/gpuvm.ko || fail "insmod gpuvm.ko failed"
}
