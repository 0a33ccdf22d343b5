# Helpers for the sched-* tests (sourced after lib.sh and vgpu-lib.sh): checksummed backlogs
# (gpuvm-sched-load) on vGPUs, and the scheduler's sysfs counters.

# load_start NAME UUID ARGS...: gpuvm-sched-load on vGPU UUID in the background until
# load_stop NAME (ARGS: --elems, --depth). /tmp/load.NAME.ready appears after its first job,
# /tmp/load.NAME.pid holds the guest process's id.
load_start() {
  _n=$1; _u=$2; shift 2
  rm -f /tmp/load.$_n.stop /tmp/load.$_n.ready /tmp/load.$_n.rc /tmp/load.$_n.log
  (
    gpuvm-sched-load --mdev $_u --stop-file /tmp/load.$_n.stop --ready-file /tmp/load.$_n.ready "$@" > /tmp/load.$_n.log 2>&1 &
    _p=$!
    echo $_p > /tmp/load.$_n.pid
    _rc=0; wait $_p || _rc=$?
    echo $_rc > /tmp/load.$_n.rc
  ) &
}
# Waits (at most 60 s) until every named load completed a job.
load_ready() {
  for _n; do
    _i=0
    while [ ! -e /tmp/load.$_n.ready ]; do
      [ ! -e /tmp/load.$_n.rc ] || { cat /tmp/load.$_n.log; fail "load $_n ended before its first job"; }
      _i=$((_i + 1)); [ $_i -le 600 ] || fail "load $_n completed no job within 60 s"
      sleep 0.1
    done
  done
}
# Stops the named loads (each after its jobs in flight) and fails unless every checksum held.
load_stop() {
  for _n; do touch /tmp/load.$_n.stop; done
  for _n; do
    _i=0
    while [ ! -e /tmp/load.$_n.rc ]; do
      _i=$((_i + 1)); [ $_i -le 600 ] || fail "load $_n did not stop within 60 s"
      sleep 0.1
    done
    echo "load $_n: $(cat /tmp/load.$_n.log | cut -c1-300)"
    [ "$(cat /tmp/load.$_n.rc)" = 0 ] || fail "load $_n failed (rc=$(cat /tmp/load.$_n.rc))"
    grep -q '"ok":true' /tmp/load.$_n.log || fail "load $_n: no correct record"
  done
}
# A JSON field of a load's record (or of file $1 when it is a path).
load_field() {
  _f=/tmp/load.$1.log; [ -e "$1" ] && _f=$1
  sed -n "s/.*\"$2\":\\([0-9.]*\\).*/\\1/p" $_f
}
# One scheduler counter of vGPU $1.
sched_counter() { cat $M/$1/gpuvm/$2; }
# The active policy (the bracketed name of sched_policy).
active_policy() { sed -n 's/.*\[\([a-z]*\)\].*/\1/p' $PA/sched_policy; }
# Writing $2 to $1 must fail (EINVAL) and log line $3; the value stays $4.
refused() {
  if echo "$2" > $1 2>/tmp/refused.err; then fail "$1 accepted '$2'"; fi
  grep -q "Invalid argument" /tmp/refused.err || fail "$1 refused '$2' but not with EINVAL: $(cat /tmp/refused.err)"
  dmesg | grep -qF "$3" || fail "no log line '$3' for '$2' written to $1"
  [ "$(cat $1)" = "$4" ] || fail "a refused write changed $1 to $(cat $1)"
}
# Prints vGPU $1's scheduler counters on one line prefixed by $2.
sched_line() {
  printf '%s:' "$2"
  for _f in weight gpu_time_ns wait_ns submissions dispatched queued sched_given_up; do printf ' %s=%s' $_f "$(cat $M/$1/gpuvm/$_f)"; done
  echo
}
