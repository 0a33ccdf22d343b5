# A hostile guest's copy engine in physical addressing mode (class 0x90b5 ADDRESSING_MODE),
# with the physical-copy gate (RAMFC HCE_CTRL.PRIV_MODE) asked for in its own RAMFC: copies
# reading and writing the neighbour's pattern by its host VRAM address, reading and writing
# host VRAM 0 (the host's BAR3 instance block) and reading host system memory must each raise
# a PBDMA error (ILLEGAL_MTHD on LAUNCH_DMA) on the attacker's own channel and move nothing:
# the mediator keeps every guest channel's gate closed. The neighbour holds a known pattern
# and re-checks it, while a third vGPU runs checked workloads throughout (a host whose BAR3
# instance block had been overwritten would fail them).
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
attacker_and_victim
a=$A   # attacker
b=$V   # holds the pattern
v=$(vgpu_create 4)   # runs checked workloads
bb=$(vgpu_counter $b vram_base_mib)
echo "pattern holder VRAM at host $bb MiB"

rm -f /tmp/pat.ready /tmp/pat.release
gpuvm-hostile --mdev $b hold-pattern --mib 16 --ready /tmp/pat.ready --release /tmp/pat.release > /tmp/pat.log 2>&1 &
hp=$!
victim_start $v mmul hotspot
wait_file /tmp/pat.ready 120 $hp
addr=$(cat /tmp/pat.ready)
# The holder's buffer (+1 MiB) as a host VRAM address, what a physical copy names: guest x of
# the holder is host bb MiB + x.
target=$(( bb * 1048576 + addr + 1048576 ))
printf 'pattern at holder guest VRAM %s; attacker targets host VRAM %#x and 0\n' $addr $target
irq0=$(cat $PA/interrupts)
rc=0
gpuvm-hostile --mdev $a physical-copy --target $target || rc=$?
echo "host interrupts during the attack: $(( $(cat $PA/interrupts) - irq0 ))"
touch /tmp/pat.release
prc=0; wait $hp || prc=$?
sed 's/^/holder: /' /tmp/pat.log
victim_stop
vgpu_counters $a attacker; vgpu_counters $b holder; vgpu_counters $v victim
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
[ $prc = 0 ] || fail "pattern holder checks failed (rc=$prc)"
# Refused before any address was translated: no MMU fault, not even on the attacker.
[ "$(vgpu_counter $a faults)" = 0 ] || fail "attacker faults $(vgpu_counter $a faults), expected 0 (refused before translation)"
untouched $b "pattern holder"
untouched $v victim
for u in $a $b $v; do vgpu_remove $u; done
vgpu_check_empty
