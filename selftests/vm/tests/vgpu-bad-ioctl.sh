# Malformed VFIO requests on a vGPU, through both paths, fail with the contract's errno (short
# argsz, bad indices, bad SET_IRQS flags/ranges, unaligned or out-of-range region accesses,
# size-0 regions, unknown ioctls) without a kernel report, and the device keeps working.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
for n in 1 8; do
  u=$(vgpu_create $n)
  gpuvm-vfio-test bad-ioctl --mdev $u --path both || fail "bad ioctls on a gpuvm-$n vGPU"
  vgpu_remove $u
done
vgpu_check_empty
