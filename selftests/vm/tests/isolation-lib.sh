# Helpers for the isolation-* tests (sourced after lib.sh and vgpu-lib.sh): a victim vGPU
# running checked workloads while a hostile guest (gpuvm-hostile) attacks from another.

# Print a vGPU's counters on one line, prefixed by $2.
vgpu_counters() {
  printf '%s:' "$2"
  for _f in mmio_traps mmio_denied mmio_forwarded submissions pte_refused faults; do
    printf ' %s=%s' $_f "$(cat $M/$1/gpuvm/$_f)"
  done
  echo
}
# One counter of vGPU $1.
vgpu_counter() { cat $M/$1/gpuvm/$2; }

# Seconds of uptime.
up() { cut -d' ' -f1 /proc/uptime; }

# victim_alone UUID: two checked runs of mmul + hotspot on vGPU UUID before any attack, timed:
# ALONE_T0 and ALONE_T1 (uptime) bound them, for victim_slowdown. Fails unless all 4 are correct.
victim_alone() {
  rm -f /tmp/alone.log
  ALONE_T0=$(up)
  for _i in 1 2; do
    gpuvm-bench --mdev $1 mmul hotspot >> /tmp/alone.log 2>&1 || { cut -c1-300 /tmp/alone.log; fail "the victim failed alone"; }
  done
  ALONE_T1=$(up)
  [ "$(grep -c '"ok":true' /tmp/alone.log)" = 4 ] || fail "the victim's runs alone were not all correct"
}

# victim_slowdown A0 A1: the victim's time per run (from /tmp/victim.times) over the runs that
# overlap the attack [A0, A1], against its time per run alone (victim_alone).
victim_slowdown() {
  awk -v t0=$ALONE_T0 -v t1=$ALONE_T1 -v a0=$1 -v a1=$2 '
    { if ($1 < a1 && $2 > a0) { n++; s += $2 - $1 } }
    END {
      alone = (t1 - t0) / 2
      printf "victim (mmul + hotspot): %.1f s per run alone; during the attack (%.1f s) %d runs, %.1f s per run (%.2fx)\n", alone, a1 - a0, n, n ? s / n : 0, n ? s / n / alone : 0
    }' /tmp/victim.times
}

# victim_start UUID WORKLOAD...: run the workloads (gpuvm-bench, results checked against the
# CPU reference) on vGPU UUID over and over in the background until victim_stop. Start it
# before the attack: its runs then cover the whole attack. Each completed run appends its
# start and end (seconds of uptime) to /tmp/victim.times.
victim_start() {
  _vu=$1; shift
  rm -f /tmp/victim.stop /tmp/victim.rc /tmp/victim.log /tmp/victim.times
  (
    _n=0; _rc=0
    while :; do
      _t=$(cut -d' ' -f1 /proc/uptime)
      gpuvm-bench --mdev $_vu "$@" >> /tmp/victim.log 2>&1 || { _rc=$?; break; }
      echo "$_t $(cut -d' ' -f1 /proc/uptime)" >> /tmp/victim.times
      _n=$((_n + 1))
      [ -e /tmp/victim.stop ] && break
    done
    echo "$_rc $_n" > /tmp/victim.rc
  ) &
  VICTIM_PID=$!
  VICTIM_WORKLOADS=$#
}
# Stop the victim after its current run; fail unless every run was correct.
victim_stop() {
  touch /tmp/victim.stop
  wait $VICTIM_PID || true
  read _rc _n < /tmp/victim.rc
  sed 's/^/victim: /' /tmp/victim.log | cut -c1-300
  [ "$_rc" = 0 ] || fail "the victim's workload failed during the attack (rc=$_rc after $_n good runs)"
  [ "$_n" -ge 1 ] || fail "the victim completed no run"
  _ok=$(grep -c '"ok":true' /tmp/victim.log || true)
  [ "$_ok" = $((_n * VICTIM_WORKLOADS)) ] || fail "victim: $_ok correct records, expected $((_n * VICTIM_WORKLOADS))"
  echo "victim: $_n runs of $VICTIM_WORKLOADS workloads, all correct"
}
# Wait up to $2 seconds for file $1 (written by a background process $3 that must stay alive).
wait_file() {
  _i=0
  while [ ! -e "$1" ]; do
    kill -0 $3 2>/dev/null || fail "process $3 exited before writing $1"
    _i=$((_i + 1)); [ $_i -le $(($2 * 10)) ] || fail "$1 did not appear within $2 s"
    sleep 0.1
  done
}
# Set up for an attack: gpuvm loaded, an empty pool, then the attacker's vGPU ($A) and the
# victim's ($V), gpuvm-4 each, created in that order (the victim's VRAM and channels follow
# the attacker's).
attacker_and_victim() {
  vgpu_setup
  A=$(vgpu_create 4)
  V=$(vgpu_create 4)
}
# Vgpu $1 saw nothing of an attack: no denied access, no MMU fault, no refused PTE.
untouched() {
  for _f in mmio_denied faults pte_refused; do
    [ "$(vgpu_counter $1 $_f)" = 0 ] || fail "vGPU $1 ($2): $_f $(vgpu_counter $1 $_f)"
  done
}
