# Interrupts go to the vGPU whose channel caused them and to no other. A vGPU whose driver is
# up (its channel bound, runnable and on the runlist: it holds a pattern, idle) must hear none
# of a busy neighbour's non-stall (fence) interrupts beyond the ones the host could not
# attribute (parent nonstall_unclaimed) and its own last fence, and none of the MMU faults
# of an attacker whose page tables point outside its partition.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
attacker_and_victim
a=$A   # faults on purpose
i=$V   # idle, listening
v=$(vgpu_create 4)   # busy: checked workloads with fences and interrupts

rm -f /tmp/pat.ready /tmp/pat.release
gpuvm-hostile --mdev $i hold-pattern --mib 1 --ready /tmp/pat.ready --release /tmp/pat.release > /tmp/pat.log 2>&1 &
hp=$!
wait_file /tmp/pat.ready 120 $hp
i0=$(vgpu_counter $i nonstall_interrupts); u0=$(cat $PA/nonstall_unclaimed); v0=$(vgpu_counter $v nonstall_interrupts)
for w in mmul hotspot needle; do
  gpuvm-bench --mdev $v $w > /tmp/busy.log 2>&1 || { cat /tmp/busy.log; fail "busy vGPU: $w failed"; }
done
gpuvm-hostile --mdev $a pagetable --target $(( 512 * 1048576 )) > /tmp/att.log 2>&1 || { cat /tmp/att.log; fail "the attacker's faults were not reported to it"; }
di=$(( $(vgpu_counter $i nonstall_interrupts) - i0 )); du=$(( $(cat $PA/nonstall_unclaimed) - u0 ))
dv=$(( $(vgpu_counter $v nonstall_interrupts) - v0 ))
echo "non-stall interrupts raised: busy vGPU $dv, idle vGPU $di; unattributed $du"
touch /tmp/pat.release
prc=0; wait $hp || prc=$?
sed 's/^/idle: /' /tmp/pat.log
[ $prc = 0 ] || fail "the idle vGPU's pattern changed (rc=$prc)"
[ $dv -gt 0 ] || fail "the busy vGPU got no non-stall interrupt"
[ $di -le $((du + 1)) ] || fail "the idle vGPU heard $di non-stall interrupts, more than the $du unattributed (+ its own last fence)"
[ "$(vgpu_counter $a faults)" -ge 4 ] || fail "the attacker's faults: $(vgpu_counter $a faults), expected at least 4"
for u in $i $v; do
  [ "$(vgpu_counter $u faults)" = 0 ] || fail "vGPU $u got $(vgpu_counter $u faults) of the attacker's faults"
done
vgpu_counters $a attacker; vgpu_counters $i idle; vgpu_counters $v busy
for u in $a $i $v; do vgpu_remove $u; done
vgpu_check_empty
