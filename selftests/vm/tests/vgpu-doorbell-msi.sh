# On a vGPU: doorbells reach the host channel, the host's non-stall interrupt is routed back
# to the vGPU's emulated PFIFO/PMC state, and the vGPU's MSI eventfd fires.
. /tests/lib.sh
vgpu_workload 8 --iters 50 fence_latency > /tmp/rec
cat /tmp/rec
grep -q 'irq=Msi' /tmp/rec || fail "the vGPU did not use MSI"
irqs=$(sed -n 's/.*"irqs":\([0-9]*\).*/\1/p' /tmp/rec)
subs=$(sed -n 's/.*submissions=\([0-9]*\).*/\1/p' /tmp/rec)
echo "irqs=$irqs submissions=$subs"
[ "$subs" -ge 50 ] || fail "only $subs doorbells reached the module"
[ "$irqs" -ge 1 ] || fail "no MSI reached the guest"
