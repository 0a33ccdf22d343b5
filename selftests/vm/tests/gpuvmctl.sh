# gpuvmctl against the real module: `list` (text and --json) agrees with sysfs, `create` and
# `remove` make and remove vGPUs, `sched` shows the knobs (or says the module has none) and
# sets weights, a refused write names the errno, the path and gpuvm.ko's own log line,
# `top --once` shows per-second rates of a vGPU running work, and `stats --json` its counters.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
vram=$(cat $PA/vram_total_mib); ch=$(cat $PA/channels_total)
# The command must fail; its stderr goes to /tmp/err.
refused() { if "$@" > /tmp/out 2> /tmp/err; then cat /tmp/out; fail "'$*' succeeded"; fi; cat /tmp/err; }
has() { grep -qE -- "$2" "$1" || { cat "$1"; fail "$1 lacks /$2/"; }; }

echo "--- gpuvmctl list (no vGPUs)"
gpuvmctl list > /tmp/list || fail "gpuvmctl list failed"
cat /tmp/list
has /tmp/list "^GPU $GPU_HOST: VRAM $(cat $PA/vram_physical_mib) MiB, guest pool $vram MiB \\($vram free\\), channels $ch \\($ch free\\), 0 vGPU"
for n in 1 2 4 8; do has /tmp/list "^  gpuvm-$n +$n  1/$n of a GF100: VRAM $((vram / n)) MiB, channels $((ch / n))"; done
has /tmp/list "^  no vGPUs$"

echo "--- gpuvmctl create"
u=$(gpuvmctl create gpuvm-2) || fail "gpuvmctl create gpuvm-2 failed"
[ -d $M/$u ] || fail "no $M/$u after gpuvmctl create printed '$u'"
[ "$(cat $M/$u/gpuvm/type)" = gpuvm-2 ] || fail "vGPU $u has type $(cat $M/$u/gpuvm/type)"
want=$(cat /proc/sys/kernel/random/uuid)
u2=$(gpuvmctl create 4 --uuid $want --parent $GPU_HOST) || fail "gpuvmctl create 4 --uuid failed"
[ "$u2" = "$want" ] && [ -d $M/$u2 ] || fail "create --uuid $want printed '$u2'"
check_parent "" "gpuvmctl's creates"
gpuvmctl list > /tmp/list || fail "gpuvmctl list failed"
cat /tmp/list
has /tmp/list "^  $u +gpuvm-2 +$((vram / 2)) +$(cat $M/$u/gpuvm/vram_base_mib) +$((ch / 2)) +$(cat $M/$u/gpuvm/first_channel) +10$"
has /tmp/list "^  $u2 +gpuvm-4 +$((vram / 4)) +$(cat $M/$u2/gpuvm/vram_base_mib) +$((ch / 4)) +$(cat $M/$u2/gpuvm/first_channel) +10$"
has /tmp/list "^  gpuvm-1 +$(cat $T/gpuvm-1/available_instances)  "
has /tmp/list "^  gpuvm-8 +$(cat $T/gpuvm-8/available_instances)  "
has /tmp/list "\\($(cat $PA/vram_free_mib) free\\), channels $ch \\($(cat $PA/channels_free) free\\), 2 vGPU"

echo "--- gpuvmctl list --json"
gpuvmctl list --json > /tmp/json || fail "gpuvmctl list --json failed"
head -40 /tmp/json
has /tmp/json "\"pci\": \"$GPU_HOST\""
has /tmp/json "\"vram_free_mib\": $(cat $PA/vram_free_mib),"
has /tmp/json "\"uuid\": \"$u\""
has /tmp/json "\"uuid\": \"$u2\""
has /tmp/json "\"vram_mib\": $((vram / 4)),"
has /tmp/json "\"available_instances\": $(cat $T/gpuvm-8/available_instances),"
[ "$(grep -c '"device_api": "vfio-pci"' /tmp/json)" = 4 ] || fail "not four vfio-pci types in the JSON"

echo "--- create refused: the errno, the path and the module's reason"
refused gpuvmctl create gpuvm-1
has /tmp/err "writing '[0-9a-f-]{36}' to $T/gpuvm-1/create: ENOSPC \\(No space left on device\\): no aligned run of free pool units"
has /tmp/err "kernel: .*no room for a gpuvm-1 vGPU \\(ENOSPC\\)"
refused gpuvmctl create 8 --uuid $u
has /tmp/err "to $T/gpuvm-8/create: EEXIST \\(File exists\\): a vGPU with this UUID exists already"

echo "--- gpuvmctl sched"
gpuvmctl sched > /tmp/sched || fail "gpuvmctl sched failed"
cat /tmp/sched
if [ -e $PA/sched_policy ]; then
  has /tmp/sched "^  policy: credit \\(sched_policy: fifo \\[credit\\] band\\)"
  echo "--- gpuvmctl sched sets the real knobs"
  gpuvmctl sched --policy band --period-us 20000 --band-wait-us 0 > /tmp/sched || fail "gpuvmctl sched --policy band ... failed"
  cat /tmp/sched
  [ "$(cat $PA/sched_policy)" = "fifo credit [band]" ] || fail "sched_policy reads '$(cat $PA/sched_policy)' after gpuvmctl set band"
  [ "$(cat $PA/sched_period_us) $(cat $PA/band_wait_us)" = "20000 0" ] || fail "period/wait $(cat $PA/sched_period_us)/$(cat $PA/band_wait_us) after gpuvmctl set 20000/0"
  has /tmp/sched "^  policy: band \\(sched_policy: fifo credit \\[band\\]\\)"
  refused gpuvmctl sched --policy bogus
  has /tmp/err "writing 'bogus' to .*/gpuvm/sched_policy: EINVAL \\(Invalid argument\\): a policy is one of"
  has /tmp/err "kernel: .*sched_policy: 'bogus': unknown policy \\(fifo, credit, band\\) \\(EINVAL\\)"
  refused gpuvmctl sched --period-us 5
  has /tmp/err "kernel: .*sched_period_us: 5 is outside 1000\\.\\.=1000000 \\(EINVAL\\)"
  gpuvmctl sched --period-us 30000 --band-wait-us 500 > /dev/null || fail "gpuvmctl sched --period-us 30000 --band-wait-us 500 failed"
else
  has /tmp/sched "^  scheduler: no knobs in this gpuvm.ko \\(no sched_policy, sched_period_us, band_wait_us in /sys/class/mdev_bus/$GPU_HOST/gpuvm\\)"
  refused gpuvmctl sched --policy credit
  has /tmp/err "this gpuvm.ko has no scheduler knob sched_policy \\(no /sys/class/mdev_bus/$GPU_HOST/gpuvm/sched_policy\\)"
fi
has /tmp/sched "^  $u +gpuvm-2 +10 +50.0%$"
if [ -e $PA/sched_policy ]; then
  gpuvmctl sched --policy credit --weight $u=40 > /tmp/sched || fail "gpuvmctl sched --policy credit --weight $u=40 failed"
  [ "$(cat $PA/sched_policy)" = "fifo [credit] band" ] || fail "sched_policy reads '$(cat $PA/sched_policy)' after gpuvmctl set credit"
else
  gpuvmctl sched --weight $u=40 > /tmp/sched || fail "gpuvmctl sched --weight $u=40 failed"
fi
cat /tmp/sched
[ "$(cat $M/$u/gpuvm/weight)" = 40 ] || fail "weight of $u is $(cat $M/$u/gpuvm/weight) after setting 40"
has /tmp/sched "^  $u +gpuvm-2 +40 +80.0%$"
has /tmp/sched "^  $u2 +gpuvm-4 +10 +20.0%$"
refused gpuvmctl sched --weight $u=0
has /tmp/err "writing '0' to $M/$u/gpuvm/weight: EINVAL \\(Invalid argument\\): a weight is an integer 1..100"
has /tmp/err "kernel: .*weight: 0 is outside 1\\.\\.=100 \\(EINVAL\\)"
[ "$(cat $M/$u/gpuvm/weight)" = 40 ] || fail "a refused weight changed it to $(cat $M/$u/gpuvm/weight)"

echo "--- gpuvmctl top --once while $u runs work"
( gpuvm-bench --mdev $u --small mmul mmul mmul mmul mmul mmul mmul mmul > /tmp/bench.out 2>&1; echo $? > /tmp/bench.rc ) &
for _ in $(seq 600); do [ "$(cat $M/$u/gpuvm/mmio_traps)" -gt 0 ] && break; sleep 0.1; done
gpuvmctl top --once --interval 3 > /tmp/top || fail "gpuvmctl top --once failed"
cat /tmp/top
wait
cat /tmp/bench.out | tail -3
[ "$(cat /tmp/bench.rc)" = 0 ] || fail "gpuvm-bench on $u failed"
has /tmp/top "^gpuvmctl top: rates over the last [0-9]+\\.[0-9]s$"
has /tmp/top "^GPU $GPU_HOST  vGPUs 2  VRAM free $(cat $PA/vram_free_mib)/$vram MiB  channels free $(cat $PA/channels_free)/$ch  interrupts/s [0-9.]+  "
has /tmp/top "^  UUID +TYPE +VRAM MiB +WEIGHT +SHARE +SUBM% +SUBM/s +TRAPS/s +DENIED/s +SYNCS/s +FAULTS +GPU%$"
set -- $(grep "^  $u " /tmp/top)
[ "$2 $3 $4 $5" = "gpuvm-2 $((vram / 2)) 40 80.0%" ] || fail "top's row of $u: $*"
awk -v t="$8" 'BEGIN { exit !(t > 0) }' || fail "top shows no traps/s for $u while it ran work: $*"
[ "${11}" = 0 ] || fail "top shows faults of $u: ${11}"
[ "${12}" = "100.0%" ] || fail "top's GPU% of $u, the only vGPU running work, is ${12}: $*"
set -- $(grep "^  $u2 " /tmp/top)
[ "$2 $3 $4 $5 $7 $8" = "gpuvm-4 $((vram / 4)) 10 20.0% 0.0 0.0" ] || fail "top's row of the idle $u2: $*"
subs=$(cat $M/$u/gpuvm/submissions)
[ "$subs" -gt 0 ] || fail "no submissions counted on $u"

echo "--- gpuvmctl stats (--json)"
gpuvmctl stats > /tmp/stats || fail "gpuvmctl stats failed"
cat /tmp/stats
has /tmp/stats "^GPU $GPU_HOST: interrupts=[0-9]+ nonstall_unclaimed=[0-9]+$"
has /tmp/stats "^  $u gpuvm-2 bar_maps=$(cat $M/$u/gpuvm/bar_maps) .*faults=0 gpu_time_ns=[1-9][0-9]* mmio_denied=$(cat $M/$u/gpuvm/mmio_denied) mmio_forwarded=$(cat $M/$u/gpuvm/mmio_forwarded) mmio_traps=$(cat $M/$u/gpuvm/mmio_traps) .* submissions=$subs wait_ns=[0-9]+$"
gpuvmctl stats --json > /tmp/json || fail "gpuvmctl stats --json failed"
has /tmp/json "\"time_unix_ms\": [0-9]+"
has /tmp/json "\"interrupts\": [0-9]+"
has /tmp/json "\"submissions\": $subs"
has /tmp/json "\"gpu_time_ns\": [1-9][0-9]*"
has /tmp/json "\"mmio_traps\": $(cat $M/$u/gpuvm/mmio_traps)"
grep -q '"weight"' /tmp/json && fail "stats --json lists weight as a counter"

echo "--- gpuvmctl remove"
gpuvmctl remove $u || fail "gpuvmctl remove $u failed"
[ ! -e $M/$u ] || fail "$u still present after gpuvmctl remove"
refused gpuvmctl remove $u
has /tmp/err "no gpuvm vGPU $u \\(no $M/$u/gpuvm\\)"
gpuvmctl remove $u2 || fail "gpuvmctl remove $u2 failed"
gpuvmctl list | grep -q "^  no vGPUs$" || fail "gpuvmctl list shows vGPUs after removing both"
vgpu_check_empty
