# Issue 11, runaway work. The attacker's endless copy (one page over and over, 2^32-1 lines)
# holds PCOPY0 and cannot be preempted; a victim running checked workloads needs the same
# engine. The module's watchdog (watchdog_ms, default 2000) must stop it: the attacker's
# channel is made unrunnable and kicked, PCOPY0 is reset when the kick cannot take it off,
# the module logs it, and the attacker alone sees SCHED_ERROR CTXSW_TIMEOUT; its fence never
# passes and its page stays unwritten afterwards. The victim's results are all correct; its
# time per run during the attack is printed next to its time per run alone. watchdog_ms
# refuses values outside 100..=60000 with EINVAL and a log line naming the range.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
attacker_and_victim
a=$A; v=$V
[ "$(cat $PA/watchdog_ms)" = 2000 ] || fail "watchdog_ms is $(cat $PA/watchdog_ms), not the default 2000"
for bad in 0 99 60001; do
  if echo $bad > $PA/watchdog_ms 2>/dev/null; then fail "watchdog_ms accepted $bad"; fi
done
dmesg | grep -q "watchdog_ms: 60001 is outside 100..=60000 (EINVAL)" || fail "no log line for the refused watchdog_ms"
[ "$(cat $PA/watchdog_ms)" = 2000 ] || fail "a refused write changed watchdog_ms to $(cat $PA/watchdog_ms)"
k0=$(cat $PA/watchdog_kills)

victim_alone $v

victim_start $v mmul hotspot
sleep 1
a0=$(up)
rc=0
gpuvm-hostile --mdev $a runaway || rc=$?
a1=$(up)
victim_stop
vgpu_counters $a attacker; vgpu_counters $v victim
victim_slowdown $a0 $a1
dmesg | grep "watchdog: host channel" | tail -n 3
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
[ "$(cat $PA/watchdog_kills)" = $((k0 + 1)) ] || fail "watchdog_kills went from $k0 to $(cat $PA/watchdog_kills), expected one stop"
dmesg | grep -q "watchdog: host channel .* stopped (Ok(EngineReset(4)))" || fail "no log of the watchdog stopping the channel by a PCOPY0 reset"
untouched $v victim
for u in $a $v; do vgpu_remove $u; done
vgpu_check_empty
