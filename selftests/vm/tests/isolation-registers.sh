# A hostile guest writes privileged BAR0 registers: the BAR1/BAR3 instance registers pointing
# outside its partition or at garbage, other guests' channel-table entries, global PFIFO
# engine registers, the peephole and unlisted PGRAPH registers are denied and counted
# (mmio_denied); PMC ENABLE := 0 and PFIFO CTRL := 0 land in the vGPU's own emulated copy.
# A victim vGPU runs checked workloads throughout, and the attacker's vGPU runs a checked
# workload afterwards (nothing of the host was switched off).
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
attacker_and_victim
a=$A; v=$V
victim_start $v mmul hotspot
rc=0
gpuvm-hostile --mdev $a registers || rc=$?
victim_stop
vgpu_counters $a attacker; vgpu_counters $v victim
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
[ "$(vgpu_counter $a mmio_denied)" -ge 12 ] || fail "attacker mmio_denied $(vgpu_counter $a mmio_denied), expected at least 12"
untouched $v victim
# The host GPU still works for the attacker's vGPU too, once reopened.
gpuvm-bench --mdev $a mmul || fail "mmul on the attacker's vGPU after the attack"
for u in $a $v; do vgpu_remove $u; done
vgpu_check_empty
