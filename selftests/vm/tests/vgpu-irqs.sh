# vGPU interrupts through both VFIO paths: INTx, MSI and REQ eventfds installed with SET_IRQS
# are signalled when fired (DATA_NONE|TRIGGER), only their own, and no more once removed or
# torn down; MSI-X and ERR take none.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
for n in 1 8; do
  u=$(vgpu_create $n)
  gpuvm-vfio-test irqs --mdev $u --path both || fail "interrupts of a gpuvm-$n vGPU"
  vgpu_remove $u
done
vgpu_check_empty
