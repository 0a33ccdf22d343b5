# Issue 11, teardown in the right order. The attacker runs an endless copy into its own
# system-memory page (the copy engine never finishes the method, so a kick alone cannot
# take the channel off it), then tears it down: its channel unbound, a VFIO_DEVICE_RESET,
# PFIFO off in its PMC_ENABLE, and the device closed. Each teardown must stop the channel
# before it returns (the module resets the copy engine and logs it), and the page, rewritten
# by the guest, must stay unwritten afterwards (close: the log line appears before the
# attacker's process exits). A victim runs checked workloads throughout.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
resets() { dmesg | grep -c "would not leave engine 4: engine reset" || true; }
attacker_and_victim
a=$A; v=$V
k0=$(cat $PA/watchdog_kills)
victim_start $v mmul hotspot
r0=$(resets)
rc=0
gpuvm-hostile --mdev $a teardown || rc=$?
r1=$(resets)
gpuvm-hostile --mdev $a teardown --how close || rc=$?
r2=$(resets)
victim_stop
vgpu_counters $a attacker; vgpu_counters $v victim
echo "engine resets logged: $((r1 - r0)) for unbind, reset and PFIFO off; $((r2 - r1)) for close"
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
[ $((r1 - r0)) = 3 ] || fail "expected 3 engine resets for unbind, reset and PFIFO off, the log has $((r1 - r0))"
[ $((r2 - r1)) = 1 ] || fail "expected 1 engine reset for the close, the log has $((r2 - r1))"
[ "$(cat $PA/watchdog_kills)" = $k0 ] || fail "the watchdog killed $(( $(cat $PA/watchdog_kills) - k0 )) channels: the teardowns must have stopped them"
untouched $v victim
for u in $a $v; do vgpu_remove $u; done
vgpu_check_empty
