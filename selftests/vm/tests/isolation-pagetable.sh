# A hostile guest's page tables point outside its partition: VRAM PTEs at guest addresses
# beyond its VRAM (where, unchecked, the neighbouring vGPU's memory would be) and
# system-memory PTEs at an IOVA it never mapped. Copy-engine reads and writes through them
# must fault on the attacker's own channel (PFIFO VM_FAULT with its instance block and the VA;
# its faults and pte_refused counters rise), bring back none of the neighbour's data and change
# none of it (the neighbour holds a known pattern and re-checks it), while a third vGPU runs
# checked workloads throughout.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
attacker_and_victim
a=$A   # attacker
b=$V   # holds the pattern, right after the attacker in host VRAM
v=$(vgpu_create 4)   # runs checked workloads
ab=$(vgpu_counter $a vram_base_mib); bb=$(vgpu_counter $b vram_base_mib); am=$(vgpu_counter $a vram_mib)
echo "attacker VRAM at $ab MiB ($am MiB), pattern holder at $bb MiB"
[ $bb -ge $((ab + am)) ] || fail "the pattern holder is not above the attacker's partition"

rm -f /tmp/pat.ready /tmp/pat.release
gpuvm-hostile --mdev $b hold-pattern --mib 16 --ready /tmp/pat.ready --release /tmp/pat.release > /tmp/pat.log 2>&1 &
hp=$!
victim_start $v mmul hotspot
wait_file /tmp/pat.ready 120 $hp
addr=$(cat /tmp/pat.ready)
# The attacker's guest address that would be the holder's buffer (+1 MiB) if PTEs were not
# confined: guest x of the attacker is host ab MiB + x.
target=$(( (bb - ab) * 1048576 + addr + 1048576 ))
printf 'pattern at holder guest VRAM %s; attacker targets its guest VRAM %#x\n' $addr $target
irq0=$(cat $PA/interrupts)
rc=0
gpuvm-hostile --mdev $a pagetable --target $target || rc=$?
echo "host interrupts during the attack: $(( $(cat $PA/interrupts) - irq0 ))"
touch /tmp/pat.release
prc=0; wait $hp || prc=$?
sed 's/^/holder: /' /tmp/pat.log
victim_stop
vgpu_counters $a attacker; vgpu_counters $b holder; vgpu_counters $v victim
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
[ $prc = 0 ] || fail "pattern holder checks failed (rc=$prc)"
[ "$(vgpu_counter $a faults)" -ge 4 ] || fail "attacker faults $(vgpu_counter $a faults), expected at least 4"
[ "$(vgpu_counter $a pte_refused)" -ge 4 ] || fail "attacker pte_refused $(vgpu_counter $a pte_refused), expected at least 4"
untouched $b "pattern holder"
untouched $v victim
for u in $a $b $v; do vgpu_remove $u; done
vgpu_check_empty
