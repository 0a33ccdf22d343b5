# gpuvm.ko binds the GF100 at $GPU_HOST, reads chipset 0xc0 from PMC BOOT_0, and unbinds and
# unloads cleanly; the native-baseline GPU stays with vfio-pci.
. /tests/lib.sh
load_gpuvm
[ "$(driver_of $GPU_HOST)" = gpuvm ] || fail "GPU $GPU_HOST bound to '$(driver_of $GPU_HOST)', not gpuvm"
[ "$(driver_of $GPU_NATIVE)" != gpuvm ] || fail "gpuvm took the native-baseline GPU"
dmesg | grep -q "gpuvm $GPU_HOST: GF100 chipset 0xc0" || fail "no GF100 chipset 0xc0 line in dmesg"
dmesg | grep -q "gpuvm $GPU_HOST: host bring-up done" || fail "host bring-up did not complete"
dmesg | grep -q "gpuvm $GPU_HOST: interrupts over MSI" || fail "MSI not verified"
grep -q "PCI-MSI.*gpuvm" /proc/interrupts || fail "no gpuvm MSI in /proc/interrupts"
[ "$(cat /sys/bus/pci/devices/$GPU_HOST/gpuvm/interrupts)" -ge 1 ] || fail "interrupt counter is 0"
dmesg | grep "gpuvm $GPU_HOST"
echo $GPU_HOST > /sys/bus/pci/drivers/gpuvm/unbind
[ -z "$(driver_of $GPU_HOST)" ] || fail "unbind left a driver"
echo $GPU_HOST > /sys/bus/pci/drivers/gpuvm/bind
[ "$(driver_of $GPU_HOST)" = gpuvm ] || fail "rebind failed"
rmmod gpuvm || fail "rmmod failed"
[ -z "$(driver_of $GPU_HOST)" ] || fail "rmmod left the GPU bound"
dmesg | grep -q "gpuvm $GPU_HOST: released" || fail "no release line"
