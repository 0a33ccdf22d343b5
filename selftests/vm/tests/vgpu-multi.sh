# Four gpuvm-4 vGPUs (the whole GPU) run four different workloads at the same time, one
# process each, through the unchanged guest driver: every result is correct (checked against
# the CPU reference), all four were running at one moment, each vGPU submitted work, and the
# pool is whole again after they are removed.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
W="mmul hotspot needle srad"
U=""
for w in $W; do U="$U $(vgpu_create 4)"; done
[ "$(cat $PA/vgpus)" = 4 ] || fail "parent vgpus $(cat $PA/vgpus), expected 4"
[ "$(cat $T/gpuvm-4/available_instances)" = 0 ] || fail "gpuvm-4 available_instances $(cat $T/gpuvm-4/available_instances) with four created"
rm -f /tmp/multi.*
set -- $U
for w in $W; do
  u=$1; shift
  (
    cut -d' ' -f1 /proc/uptime > /tmp/multi.$w.start
    rc=0; gpuvm-bench --mdev $u $w > /tmp/multi.$w.log 2>&1 || rc=$?
    cut -d' ' -f1 /proc/uptime > /tmp/multi.$w.end
    echo $rc > /tmp/multi.$w.rc
  ) &
done
wait
set -- $U
last_start=0; first_end=999999
for w in $W; do
  u=$1; shift
  cat /tmp/multi.$w.log | cut -c1-400
  printf '%s on %s:' $w $u
  for f in mmio_traps mmio_denied submissions shadow_syncs pte_refused faults; do printf ' %s=%s' $f "$(cat $M/$u/gpuvm/$f)"; done
  echo
  rc=$(cat /tmp/multi.$w.rc)
  [ "$rc" = 0 ] || fail "$w on vGPU $u failed (rc=$rc)"
  grep -q "\"workload\":\"$w\".*\"ok\":true" /tmp/multi.$w.log || fail "$w on vGPU $u: no correct record"
  [ "$(cat $M/$u/gpuvm/submissions)" -gt 0 ] || fail "vGPU $u ($w) made no submission"
  [ "$(cat $M/$u/gpuvm/faults)" = 0 ] || fail "vGPU $u ($w) took MMU faults"
  [ "$(cat $M/$u/gpuvm/mmio_denied)" = 0 ] || fail "vGPU $u ($w): the unchanged driver had accesses denied"
  s=$(cat /tmp/multi.$w.start); e=$(cat /tmp/multi.$w.end)
  last_start=$(awk -v a=$last_start -v b=$s 'BEGIN { print (b > a) ? b : a }')
  first_end=$(awk -v a=$first_end -v b=$e 'BEGIN { print (b < a) ? b : a }')
done
echo "all four running from ${last_start}s to ${first_end}s"
awk -v s=$last_start -v e=$first_end 'BEGIN { exit !(s < e) }' || fail "the four workloads did not overlap (last start ${last_start}s, first end ${first_end}s)"
for u in $U; do vgpu_remove $u; done
vgpu_check_empty
