# Issue 12: the scheduling policy switches while vGPUs run. Two gpuvm-4 vGPUs keep checksummed
# backlogs of different job lengths queued (gpuvm-sched-load: after n jobs every element of
# the accumulator must be n); sched_policy goes fifo -> credit -> band under that load and each
# vGPU's submissions and gpu_time_ns grow in every phase. Bad values of the three knobs are
# refused with EINVAL and a log line naming the reason. Then one guest dies with work queued
# (SIGKILL: its close drops its queue): the other's checksummed work keeps progressing.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/sched-lib.sh
vgpu_setup
[ "$(cat $PA/sched_policy)" = "fifo [credit] band" ] || fail "sched_policy reads '$(cat $PA/sched_policy)', expected 'fifo [credit] band' (CREDIT is the default)"
[ "$(cat $PA/sched_period_us)" = 30000 ] || fail "sched_period_us $(cat $PA/sched_period_us), not the default 30000"
[ "$(cat $PA/band_wait_us)" = 500 ] || fail "band_wait_us $(cat $PA/band_wait_us), not the default 500"
refused $PA/sched_policy bogus "sched_policy: 'bogus': unknown policy (fifo, credit, band) (EINVAL)" "fifo [credit] band"
refused $PA/sched_period_us 999 "sched_period_us: 999 is outside 1000..=1000000 (EINVAL)" 30000
refused $PA/sched_period_us x "sched_period_us: 'x': not a decimal number (EINVAL)" 30000
refused $PA/band_wait_us 10001 "band_wait_us: 10001 is outside 0..=10000 (EINVAL)" 500

A=$(vgpu_create 4)
B=$(vgpu_create 4)
load_start a $A --elems 16384 --depth 4
load_start b $B --elems 65536 --depth 2
load_ready a b
for p in fifo credit band; do
  echo $p > $PA/sched_policy
  [ "$(active_policy)" = $p ] || fail "sched_policy reads '$(cat $PA/sched_policy)' after writing $p"
  sa=$(sched_counter $A submissions); ta=$(sched_counter $A gpu_time_ns)
  sb=$(sched_counter $B submissions); tb=$(sched_counter $B gpu_time_ns)
  sleep 4
  sched_line $A "$p a"; sched_line $B "$p b"
  [ "$(sched_counter $A submissions)" -gt $sa ] || fail "under $p vGPU a made no submission"
  [ "$(sched_counter $B submissions)" -gt $sb ] || fail "under $p vGPU b made no submission"
  [ "$(sched_counter $A gpu_time_ns)" -gt $ta ] || fail "under $p vGPU a got no GPU time"
  [ "$(sched_counter $B gpu_time_ns)" -gt $tb ] || fail "under $p vGPU b got no GPU time"
done
dmesg | grep -q "sched: policy band" || fail "no log line for the switch to band"
# The period and wait change under load too.
echo 10000 > $PA/sched_period_us; echo 0 > $PA/band_wait_us
sleep 1
echo 30000 > $PA/sched_period_us; echo 500 > $PA/band_wait_us

# b's guest dies with work queued; a keeps going and stays correct.
[ "$(sched_counter $B queued)" -gt 0 ] || sleep 0.2
echo "b queued when killed: $(sched_counter $B queued)"
kill -KILL $(cat /tmp/load.b.pid) || fail "cannot kill b's guest"
_i=0; while [ ! -e /tmp/load.b.rc ]; do _i=$((_i + 1)); [ $_i -le 300 ] || fail "b's guest did not die"; sleep 0.1; done
sa=$(sched_counter $A submissions); ta=$(sched_counter $A gpu_time_ns)
sleep 3
sched_line $A "after b died, a"; sched_line $B "b (dead)"
[ "$(sched_counter $A submissions)" -gt $sa ] || fail "vGPU a made no progress after b's guest died"
[ "$(sched_counter $A gpu_time_ns)" -gt $ta ] || fail "vGPU a got no GPU time after b's guest died"
[ "$(sched_counter $B queued)" = 0 ] || fail "b's queued work was not dropped at its close ($(sched_counter $B queued) queued)"
load_stop a
[ "$(sched_counter $A queued)" = 0 ] || fail "a still has $(sched_counter $A queued) queued after its guest stopped"
[ "$(sched_counter $A sched_given_up)" = 0 ] || fail "a submission of a was given up on"
for u in $A $B; do vgpu_remove $u; done
vgpu_check_empty
