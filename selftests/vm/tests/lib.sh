# Helpers for VM test scripts (sourced; scripts run under sh -e).
fail() { echo "FAIL: $*"; exit 1; }
# A prerequisite is missing: /init reports the test "ok ... # SKIP reason" (kselftest's exit 4).
skip() { echo "SKIP: $*"; echo "$*" > /tmp/skip-reason; exit 4; }
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
# Run workloads on a fresh vGPU of type gpuvm-$1 (the rest of the arguments go to
# gpuvm-bench), print the vGPU's counters, remove it. The guest driver is the same binary
# as for native runs; it checks every result against its CPU reference.
vgpu_workload() {
  load_gpuvm
  _t=$1; shift
  _u=$(cat /proc/sys/kernel/random/uuid)
  echo $_u > /sys/class/mdev_bus/$GPU_HOST/mdev_supported_types/gpuvm-$_t/create || fail "cannot create a gpuvm-$_t vGPU"
  _rc=0
  gpuvm-bench --mdev $_u "$@" || _rc=$?
  for _f in mmio_traps mmio_forwarded mmio_denied submissions shadow_syncs pte_reads pte_writes pte_refused faults bar_maps bar_refused bar_zaps bar_pages_taken; do
    printf '%s=%s ' $_f "$(cat /sys/bus/mdev/devices/$_u/gpuvm/$_f)"
  done
  echo
  echo 1 > /sys/bus/mdev/devices/$_u/remove || fail "cannot remove vGPU $_u"
  [ $_rc = 0 ] || fail "gpuvm-bench failed on the vGPU (rc=$_rc)"
}
# The QEMU rootfs disk (tools/qemu.sh: Debian trixie with qemu-system-x86 and mdevctl), mounted
# read-only at $ROOTFS with /proc, /sys, /dev and a writable /tmp, for chroot. Without the disk
# (run.sh started without the Makefile's VM_EXTRA_ARGS) the test is skipped.
ROOTFS=/mnt/qemu-root
mount_rootfs() {
  [ -b /dev/vda ] || skip "no QEMU rootfs disk /dev/vda (VM_EXTRA_ARGS from the Makefile's VM_ENV)"
  mkdir -p $ROOTFS
  mount -t ext4 -o ro /dev/vda $ROOTFS || fail "cannot mount /dev/vda (ext4) read-only"
  mount -t proc proc $ROOTFS/proc
  mount -t sysfs sys $ROOTFS/sys
  mount -t devtmpfs dev $ROOTFS/dev
  mount -t tmpfs -o size=64m none $ROOTFS/tmp
}
# Unmounts whatever is mounted at or under $ROOTFS, innermost first.
umount_rootfs() {
  for _m in $(awk -v r="$ROOTFS" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount $_m || echo "cannot unmount $_m"
  done
  return 0
}
