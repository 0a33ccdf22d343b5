# vram-mib: 6144
# Issue 11, bounded resources. A gpuvm-8 attacker binds one more channel on each of up to 15
# address spaces whose shadows need far more host VRAM than its host-pool quota (1/8 of the
# pool; page directories of 256 PDEs with page tables each), while a gpuvm-4 victim, whose
# slice lies above 4 GiB (the header above gives this test 6144 MiB GPUs; two idle gpuvm-4
# vGPUs fill the slices below), runs checked workloads over and over. Filling the quota makes
# the host read some 290k guest page-table entries (in copy-engine chunks: a few seconds).
# The attacker must see guest-visible errors (a CHAN_TABLE_ERROR for the channel that no
# longer fits, an MMU fault of its own channel on a table it adds once its quota is spent,
# where one added before worked); at its peak it holds no more than its quota
# (host_pool_free_kib); the victim's results are all correct and its submissions keep reaching
# the GPU while the attacker's shadows are built (its time per run during the attack is printed
# next to its time per run alone); once the attacker closes, the host pool is back where it was.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
vgpu_setup
a=$(vgpu_create 8)
idle="$(vgpu_create 4) $(vgpu_create 4)"
v=$(vgpu_create 4)
[ "$(vgpu_counter $v vram_base_mib)" -ge 4096 ] || fail "the victim's slice at $(vgpu_counter $v vram_base_mib) MiB is not above 4 GiB (run with VRAM_MIB=6144)"
echo "attacker VRAM at $(vgpu_counter $a vram_base_mib) MiB, victim at $(vgpu_counter $v vram_base_mib) MiB"
f0=$(cat $PA/host_pool_free_kib)
quota_a=$((f0 / 8)); quota_v=$((f0 / 4))
echo "host pool: $f0 KiB free with no vGPU open; quotas: attacker (gpuvm-8) $quota_a KiB, victim (gpuvm-4) $quota_v KiB"

victim_alone $v
[ "$(cat $PA/host_pool_free_kib)" = $f0 ] || fail "host pool $(cat $PA/host_pool_free_kib) KiB free after the victim's runs, not $f0"

victim_start $v mmul hotspot
rm -f /tmp/ex.ready /tmp/ex.release
a0=$(up); sub0=$(vgpu_counter $v submissions)
gpuvm-hostile --mdev $a exhaust --ready /tmp/ex.ready --release /tmp/ex.release > /tmp/ex.log 2>&1 &
ep=$!
wait_file /tmp/ex.ready 280 $ep
peak=$(up); sub1=$(vgpu_counter $v submissions)
fp=$(cat $PA/host_pool_free_kib)
touch /tmp/ex.release
rc=0; wait $ep || rc=$?
a1=$(up)
cat /tmp/ex.log
victim_stop
f1=$(cat $PA/host_pool_free_kib)
vgpu_counters $a attacker; vgpu_counters $v victim
used=$((f0 - fp))
echo "host pool: $fp KiB free at the attacker's peak ($used KiB held by the attacker and the victim), $f1 KiB after it closed"
# Throughput: time per victim run overlapping the attack against time per run alone, and the
# runs it completed while the attacker's shadows were being built (its progress).
awk -v t0=$ALONE_T0 -v t1=$ALONE_T1 -v a0=$a0 -v p=$peak -v a1=$a1 '
  { if ($1 < a1 && $2 > a0) { n++; s += $2 - $1 } if ($2 > a0 && $2 <= p) b++ }
  END {
    alone = (t1 - t0) / 2
    printf "victim (mmul + hotspot): %.1f s per run alone; during the attack (%.1f s, %.1f s of it building the shadows) %d runs, %.1f s per run (%.2fx); %d runs completed while the shadows were built\n", alone, a1 - a0, p - a0, n, n ? s / n : 0, n ? s / n / alone : 0, b
  }' /tmp/victim.times
echo "victim: $((sub1 - sub0)) submissions reached the GPU while the attacker's shadows were built"
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
# Progress while the shadows were built: the victim's work kept reaching the GPU. (Whole runs
# completed inside that window only while building took a minute; with the shadow tables in
# host memory and the guest's tables read by the copy engine it takes a few seconds, less
# than one victim run.)
[ $((sub1 - sub0)) -ge 1 ] || fail "no submission of the victim reached the GPU while the attacker's shadows were built"
[ $used -ge $((quota_a - 8)) ] || fail "at its peak the attacker did not fill its quota ($used KiB held, quota $quota_a KiB)"
[ $used -le $((quota_a + quota_v)) ] || fail "$used KiB of the host pool held at the peak: more than the attacker's and the victim's quotas ($quota_a + $quota_v KiB)"
[ $f1 = $f0 ] || fail "the host pool is not back where it was: $f1 KiB free, $f0 before"
[ "$(vgpu_counter $a faults)" -ge 1 ] || fail "the attacker saw no MMU fault"
untouched $v victim
for u in $idle; do untouched $u "idle neighbour"; done
for u in $a $idle $v; do vgpu_remove $u; done
vgpu_check_empty
