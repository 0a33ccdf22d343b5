# Through the real (model) device bound to vfio-pci: channel setup, GPFIFO entries whose
# pushbuffers release a semaphore with a non-stall interrupt, doorbells via BAR1, and the
# MSI reaching userspace as an eventfd. fence_latency checks the semaphore first and waits on
# the interrupt only when the fence is not yet done, then takes an interrupt still pending at
# its end (one raised for a fence it never waited for), so the record must show MSI delivery,
# at least one MSI, and one doorbell per fence.
. /tests/lib.sh
native_workload --iters 50 fence_latency > /tmp/rec
cat /tmp/rec
grep -q 'irq=Msi' /tmp/rec || fail "the device did not use MSI"
irqs=$(sed -n 's/.*"irqs":\([0-9]*\).*/\1/p' /tmp/rec)
fences=$(sed -n 's/.*"fence_n":\([0-9]*\).*/\1/p' /tmp/rec)
doorbells=$(sed -n 's/.*"doorbells":\([0-9]*\).*/\1/p' /tmp/rec)
echo "fences=$fences irqs=$irqs doorbells=$doorbells"
[ "$fences" -ge 50 ] || fail "expected >= 50 fences, got $fences"
[ "$doorbells" -ge "$fences" ] || fail "fewer doorbells ($doorbells) than fences"
[ "$irqs" -ge 1 ] || fail "no MSI arrived"
