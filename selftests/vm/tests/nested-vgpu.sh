# The product's front door: a nested guest (L2) started by QEMU in the host VM with a gpuvm-2
# vGPU assigned as `-device vfio-pci,sysfsdev=/sys/bus/mdev/devices/UUID`. In L2 the vGPU is a
# PCI function 10de:06d8; L2's /init (selftests/vm/l2/init) binds it to vfio-pci (no-IOMMU)
# and runs the unmodified gpuvm-bench on it, which checks every result against its CPU
# reference. Passes when L2 says PASS with "ok":true records and the vGPU's counters show the
# work went through gpuvm (trapped MMIO, submissions).
# Needs the host VM's disk with the trixie QEMU rootfs (VM_EXTRA_ARGS from the Makefile; skipped
# without it) and /l2/{vmlinux,initrd.gz} in the initramfs. Env: L2_BENCH (gpuvm.bench for L2,
# default mmul,--small), L2_TIMEOUT (seconds for the whole nested run, default 240).
. /tests/lib.sh
BENCH=${L2_BENCH:-mmul,--small}
L2_TIMEOUT=${L2_TIMEOUT:-240}
R=$ROOTFS
[ -f /l2/vmlinux ] && [ -f /l2/initrd.gz ] || fail "no /l2/vmlinux or /l2/initrd.gz in the initramfs"

U=""
cleanup() {
  umount_rootfs
  [ -n "$U" ] && [ -e /sys/bus/mdev/devices/$U ] && echo 1 > /sys/bus/mdev/devices/$U/remove
  return 0
}
trap cleanup EXIT

mount_rootfs
[ -x $R/usr/bin/qemu-system-x86_64 ] || fail "no qemu-system-x86_64 on /dev/vda"
mkdir $R/tmp/l2 && cp /l2/vmlinux /l2/initrd.gz $R/tmp/l2/
echo "L1: $(chroot $R qemu-system-x86_64 --version | head -1)"

load_gpuvm
U=$(cat /proc/sys/kernel/random/uuid)
echo $U > /sys/class/mdev_bus/$GPU_HOST/mdev_supported_types/gpuvm-2/create || fail "cannot create a gpuvm-2 vGPU"
echo "L1: vGPU $U (gpuvm-2), iommu group $(basename "$(readlink /sys/bus/mdev/devices/$U/iommu_group)")"

t0=$(cut -d' ' -f1 /proc/uptime)
echo "L1: starting L2 at ${t0}s: gpuvm.bench=$BENCH, timeout ${L2_TIMEOUT}s"
( timeout $L2_TIMEOUT chroot $R qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot \
    -nic none -vga none -kernel /tmp/l2/vmlinux -initrd /tmp/l2/initrd.gz \
    -append "console=ttyS0 panic=-1 loglevel=4 vfio.enable_unsafe_noiommu_mode=1 gpuvm.bench=$BENCH" \
    -device vfio-pci,sysfsdev=/sys/bus/mdev/devices/$U,addr=0x4 < /dev/null 2>&1
  echo $? > /tmp/l2.rc ) | tee /tmp/l2.log | sed 's/^/L2 | /'
t1=$(cut -d' ' -f1 /proc/uptime)
rc=$(cat /tmp/l2.rc)
echo "L1: L2 QEMU exited rc=$rc after $(echo "$t1 $t0" | awk '{printf "%.1f", $1 - $2}')s"

printf 'L1: vGPU counters: '
for f in mmio_traps mmio_forwarded mmio_denied submissions shadow_syncs pte_reads pte_writes pte_refused faults bar_maps bar_refused bar_pages_taken; do
  printf '%s=%s ' $f "$(cat /sys/bus/mdev/devices/$U/gpuvm/$f)"
done
echo
traps=$(cat /sys/bus/mdev/devices/$U/gpuvm/mmio_traps)
subs=$(cat /sys/bus/mdev/devices/$U/gpuvm/submissions)

[ "$rc" = 0 ] || fail "L2's QEMU exited with rc=$rc (124: timed out after ${L2_TIMEOUT}s)"
grep -q 'gpuvm-l2: PASS' /tmp/l2.log || fail "L2 did not report PASS: $(grep 'gpuvm-l2: FAIL' /tmp/l2.log)"
grep 'gpuvm-l2: record: ' /tmp/l2.log | grep -q '"ok":true' || fail "no \"ok\":true record from L2"
[ "$traps" -gt 0 ] || fail "the vGPU trapped no MMIO: L2's work did not go through gpuvm"
[ "$subs" -gt 0 ] || fail "the vGPU saw no submissions"
# With bar_remap on (the default), L2's QEMU maps BAR3's sparse-mmap area into L2: L2's BAR3
# accesses fault pages in, none refused.
if [ "$(cat /sys/bus/pci/devices/$GPU_HOST/gpuvm/bar_remap)" = 1 ]; then
  [ "$(cat /sys/bus/mdev/devices/$U/gpuvm/bar_maps)" -gt 0 ] || fail "bar_remap on, but no BAR3 page was mapped for L2"
  [ "$(cat /sys/bus/mdev/devices/$U/gpuvm/bar_refused)" = 0 ] || fail "BAR3 faults refused for L2"
fi
echo 1 > /sys/bus/mdev/devices/$U/remove || fail "cannot remove vGPU $U"
U=""
echo "L1: nested-vgpu passed"
