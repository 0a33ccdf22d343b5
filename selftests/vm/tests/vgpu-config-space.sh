# Every vGPU type presents the contract's PCI device through both VFIO paths (group + type1
# container, cdev + iommufd): device/region/IRQ info, config space identity and capabilities,
# the writable command bits, BAR sizing, MSI, RESET (and its sysfs counter), PMC BOOT_0; and
# two vGPUs open at once keep their config space, reset counts and MSIs apart.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
for n in 1 2 4 8; do
  u=$(vgpu_create $n)
  gpuvm-vfio-test config-space --mdev $u --path both || fail "config space of a gpuvm-$n vGPU"
  vgpu_remove $u
done
# Two vGPUs open at once keep apart: config space, resets, MSI.
a=$(vgpu_create 2); b=$(vgpu_create 4)
gpuvm-vfio-test isolation --mdev $a --other $b --path both || fail "two vGPUs open at once share state"
vgpu_remove $a; vgpu_remove $b
vgpu_check_empty
