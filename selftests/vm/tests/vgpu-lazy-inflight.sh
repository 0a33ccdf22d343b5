# Lazy shadowing and a channel already past its doorbell (issue 13, item 3): on a gpuvm-2 vGPU
# the guest's channel waits on a semaphore acquire, the guest moves a page under a mapped VA
# (PTE rewrite + TLB flush), then its CPU releases the semaphore with a plain write to system
# memory, which no trap shows. The channel's write must reach the new page and nothing the old
# one; with the channel idle, a flush syncs nothing until the next doorbell
# (gpuvm-hostile lazy-inflight; hostile::lazy_in_flight). Run in lazy mode, then in naive mode.
. /tests/lib.sh
load_gpuvm
P=/sys/bus/pci/devices/$GPU_HOST/gpuvm
for mode in lazy naive; do
  case $mode in lazy) l=1; flag= ;; naive) l=0; flag=--naive ;; esac
  echo $l > $P/lazy_shadow || fail "cannot set lazy_shadow $l"
  U=$(cat /proc/sys/kernel/random/uuid)
  echo $U > /sys/class/mdev_bus/$GPU_HOST/mdev_supported_types/gpuvm-2/create || fail "cannot create a gpuvm-2 vGPU"
  rc=0; gpuvm-hostile --mdev $U lazy-inflight $flag || rc=$?
  echo "$mode: shadow_syncs=$(cat /sys/bus/mdev/devices/$U/gpuvm/shadow_syncs) faults=$(cat /sys/bus/mdev/devices/$U/gpuvm/faults)"
  echo 1 > /sys/bus/mdev/devices/$U/remove || fail "cannot remove vGPU $U"
  [ $rc = 0 ] || { echo 1 > $P/lazy_shadow; fail "lazy-inflight checks failed in $mode mode (rc=$rc)"; }
done
echo 1 > $P/lazy_shadow
