# Issue 12: weights set GPU shares. Two gpuvm-4 vGPUs keep the same checksummed backlog queued
# (long jobs, 4 in flight) under CREDIT with weights 1:3; over a window the weight-3 vGPU's
# share of the GPU time charged to both (gpu_time_ns) is 75% within TOL; then the weights
# change live to 3:1 and the shares follow. Equal shares (50%) are outside the tolerance, so
# the test fails if weights are not read. Bad weights are refused with EINVAL and a log line.
#
# TOL = 10 points: the scheduler's own error is below 1 point over a window of hundreds of
# jobs (make bench-sched); the rest is TCG: a guest starved of CPU by the emulator can let its
# queue run dry, and CREDIT, being work-conserving, then gives its time to the other vGPU.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/sched-lib.sh
TOL=10
ELEMS=131072
WINDOW=8
vgpu_setup
A=$(vgpu_create 4)
B=$(vgpu_create 4)
[ "$(cat $M/$A/gpuvm/weight)" = 10 ] || fail "weight $(cat $M/$A/gpuvm/weight), not the default 10"
refused $M/$A/gpuvm/weight 0 "weight: 0 is outside 1..=100 (EINVAL)" 10
refused $M/$A/gpuvm/weight 101 "weight: 101 is outside 1..=100 (EINVAL)" 10
refused $M/$A/gpuvm/weight abc "weight: 'abc': not a decimal number (EINVAL)" 10
echo credit > $PA/sched_policy
echo 1 > $M/$A/gpuvm/weight
echo 3 > $M/$B/gpuvm/weight
load_start a $A --elems $ELEMS --depth 4
load_start b $B --elems $ELEMS --depth 4
load_ready a b

# share WHO: percent of the GPU time charged over $WINDOW s that went to vGPU $A (a) or $B (b).
share() {
  sleep 1
  a0=$(sched_counter $A gpu_time_ns); b0=$(sched_counter $B gpu_time_ns)
  sleep $WINDOW
  a1=$(sched_counter $A gpu_time_ns); b1=$(sched_counter $B gpu_time_ns)
  sched_line $A "a" >&2; sched_line $B "b" >&2
  awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v who=$1 'BEGIN { if (a + b == 0) print -1; else printf "%.1f\n", 100 * (who == "a" ? a : b) / (a + b) }'
}
within() {
  case "$1" in ''|*[!0-9.]*) fail "share '$1' is not a number";; esac
  awk -v s=$1 -v want=$2 -v tol=$TOL 'BEGIN { d = s - want; if (d < 0) d = -d; exit !(d <= tol) }'
}

sb=$(share b)
echo "weights a:b = 1:3: b's share ${sb}% (want 75 +- $TOL)"
within $sb 75 || fail "with weights 1:3 b got ${sb}% of the GPU time, not 75 +- $TOL"

echo 3 > $M/$A/gpuvm/weight
echo 1 > $M/$B/gpuvm/weight
[ "$(cat $M/$A/gpuvm/weight)" = 3 ] || fail "weight reads $(cat $M/$A/gpuvm/weight) after writing 3"
sa=$(share a)
echo "weights a:b = 3:1 (changed live): a's share ${sa}% (want 75 +- $TOL)"
within $sa 75 || fail "after the live change to 3:1 a got ${sa}% of the GPU time, not 75 +- $TOL"

load_stop a b
for u in $A $B; do
  [ "$(sched_counter $u sched_given_up)" = 0 ] || fail "a submission of $u was given up on"
  vgpu_remove $u
done
vgpu_check_empty
