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
up() { cut -d' ' -f1 /proc/uptime; }
attacker_and_victim
a=$A; v=$V
[ "$(cat $PA/watchdog_ms)" = 2000 ] || fail "watchdog_ms is $(cat $PA/watchdog_ms), not the default 2000"
for bad in 0 99 60001; do
  if echo $bad > $PA/watchdog_ms 2>/dev/null; then fail "watchdog_ms accepted $bad"; fi
done
dmesg | grep -q "watchdog_ms: 60001 is outside 100..=60000 (EINVAL)" || fail "no log line for the refused watchdog_ms"
[ "$(cat $PA/watchdog_ms)" = 2000 ] || fail "a refused write changed watchdog_ms to $(cat $PA/watchdog_ms)"
k0=$(cat $PA/watchdog_kills)

# The victim alone.
t0=$(up)
for i in 1 2; do
  gpuvm-bench --mdev $v mmul hotspot >> /tmp/alone.log 2>&1 || { cut -c1-300 /tmp/alone.log; fail "the victim failed alone"; }
done
t1=$(up)
[ "$(grep -c '"ok":true' /tmp/alone.log)" = 4 ] || fail "the victim's runs alone were not all correct"

victim_start $v mmul hotspot
sleep 1
a0=$(up)
rc=0
gpuvm-hostile --mdev $a runaway || rc=$?
a1=$(up)
victim_stop
vgpu_counters $a attacker; vgpu_counters $v victim
awk -v t0=$t0 -v t1=$t1 -v a0=$a0 -v a1=$a1 '
  { if ($1 < a1 && $2 > a0) { n++; s += $2 - $1 } }
  END {
    alone = (t1 - t0) / 2
    printf "victim (mmul + hotspot): %.1f s per run alone; during the attack (%.1f s) %d runs, %.1f s per run (%.2fx)\n", alone, a1 - a0, n, n ? s / n : 0, n ? s / n / alone : 0
  }' /tmp/victim.times
dmesg | grep "watchdog: host channel" | tail -n 3
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
[ "$(cat $PA/watchdog_kills)" = $((k0 + 1)) ] || fail "watchdog_kills went from $k0 to $(cat $PA/watchdog_kills), expected one stop"
dmesg | grep -q "watchdog: host channel .* stopped (Ok(EngineReset(4)))" || fail "no log of the watchdog stopping the channel by a PCOPY0 reset"
untouched $v victim
for u in $a $v; do vgpu_remove $u; done
vgpu_check_empty
