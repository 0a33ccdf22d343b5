# Every vGPU type presents the contract's PCI device through both VFIO paths (group + type1
# container, cdev + iommufd): device/region/IRQ info, config space identity and capabilities,
# the writable command bits, BAR sizing, MSI, RESET (and its sysfs counter), PMC BOOT_0.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
for n in 1 2 4 8; do
  u=$(vgpu_create $n)
  gpuvm-vfio-test config-space --mdev $u --path both || fail "config space of a gpuvm-$n vGPU"
  vgpu_remove $u
done
# Two vGPUs at once: programming one leaves the other's config space alone.
a=$(vgpu_create 2); b=$(vgpu_create 2)
gpuvm-vfio-test config-space --mdev $a --path group || fail "config space of the first of two vGPUs"
gpuvm-vfio-test config-space --mdev $b --path cdev || fail "config space of the second of two vGPUs"
vgpu_remove $a; vgpu_remove $b
vgpu_check_empty
