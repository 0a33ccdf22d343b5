# BAR remapping (bar_remap on, the default): a hostile guest's BAR3 is mmapped by its driver.
# Its BAR3 PTE moved between two of its own pages plus a BAR3 flush makes the same mapped
# address show the new page (the old one unreachable, bar_zaps rises); BAR3 PTEs naming guest
# VRAM beyond its partition (the pattern holder's buffer, unchecked), system memory or a
# read-only page are refused: the access dies with SIGBUS and bar_refused rises, while the
# pattern holder keeps its pattern and a third vGPU runs checked workloads throughout. Then the
# page-table attack of isolation-pagetable, whose PTEs the attacker's driver now writes through
# its mapped BAR3 (unseen by the mediator), must still fault on its own channel.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
load_gpuvm
[ "$(cat $PA/bar_remap)" = 1 ] || fail "bar_remap is $(cat $PA/bar_remap), not on by default"
echo 2 > $PA/bar_remap 2>/dev/null && fail "bar_remap accepted 2"
attacker_and_victim
a=$A; b=$V
v=$(vgpu_create 4)
ab=$(vgpu_counter $a vram_base_mib); bb=$(vgpu_counter $b vram_base_mib)
rm -f /tmp/pat.ready /tmp/pat.release
gpuvm-hostile --mdev $b hold-pattern --mib 16 --ready /tmp/pat.ready --release /tmp/pat.release > /tmp/pat.log 2>&1 &
hp=$!
victim_start $v mmul hotspot
wait_file /tmp/pat.ready 120 $hp
addr=$(cat /tmp/pat.ready)
target=$(( (bb - ab) * 1048576 + addr + 1048576 ))
printf 'pattern at holder guest VRAM %s; attacker targets its guest VRAM %#x\n' $addr $target
rc=0; gpuvm-hostile --mdev $a bar-remap --target $target || rc=$?
prc2=0; gpuvm-hostile --mdev $a pagetable --target $target || prc2=$?
touch /tmp/pat.release
prc=0; wait $hp || prc=$?
sed 's/^/holder: /' /tmp/pat.log
victim_stop
for u in $a $b $v; do
  printf '%s: bar_maps=%s bar_refused=%s bar_zaps=%s\n' $u "$(vgpu_counter $u bar_maps)" "$(vgpu_counter $u bar_refused)" "$(vgpu_counter $u bar_zaps)"
done
vgpu_counters $a attacker; vgpu_counters $b holder; vgpu_counters $v victim
dmesg | grep 'refused:' | tail -3
[ $rc = 0 ] || fail "bar-remap attacker checks failed (rc=$rc)"
[ $prc2 = 0 ] || fail "page-table attacker checks (through mapped BAR3) failed (rc=$prc2)"
[ $prc = 0 ] || fail "pattern holder checks failed (rc=$prc)"
[ "$(vgpu_counter $a bar_refused)" -ge 3 ] || fail "attacker bar_refused $(vgpu_counter $a bar_refused), expected at least 3"
[ "$(vgpu_counter $v bar_refused)" = 0 ] || fail "the victim had refused BAR3 faults"
[ "$(vgpu_counter $v bar_maps)" -gt 0 ] || fail "the victim's BAR3 was not mapped"
untouched $b "pattern holder"
untouched $v victim
for u in $a $b $v; do vgpu_remove $u; done
vgpu_check_empty
