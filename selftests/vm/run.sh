#!/usr/bin/env bash
# VM harness: boots the host VM (QEMU TCG, shared memfd RAM) with model GPUs served over
# vfio-user, runs the named tests inside, and reports KTAP (version line, plan, one result line
# per test, "# SKIP reason" for a skipped one, "# Totals:") plus a closing "N passed, N failed".
# A run fails on any kernel WARNING/BUG/Oops/lockdep/KFENCE/UBSAN/panic line in the console,
# and every wait has a timeout.
#
# Usage: run.sh [--name RUN] [--gpus N] [--expect-splat] TEST...
# A TEST is NAME (selftests/vm/tests/NAME.sh) or NAME@PARAM (the same script, given PARAM).
# Env (set by the Makefile): KBUILD QEMU MODEL_BIN INITRAMFS_DIR OUT_DIR
#   VM_SMP (2) VM_MEM_MIB (1024) VRAM_MIB (1024) VM_TIMEOUT (seconds, whole boot; 600)
#   TEST_TIMEOUT (seconds, per test inside the VM; 300) PIN_CPUS (taskset list; empty = unpinned)
#   MODEL_START_TIMEOUT (seconds until a model server says it listens, or exits after TERM; 30)
#   VM_EXTRA_ARGS (more QEMU arguments, split on blanks; e.g. the nested-vgpu test's disk)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
name=vm; gpus=2; expect_splat=0; tests=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    --expect-splat) expect_splat=1; shift ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) tests+=("$1"); shift ;;
  esac
done
[ ${#tests[@]} -gt 0 ] || { echo "run.sh: no tests named" >&2; exit 2; }
: "${KBUILD:?}" "${QEMU:?}" "${MODEL_BIN:?}" "${INITRAMFS_DIR:?}" "${OUT_DIR:?}"
SMP=${VM_SMP:-2}; MEM=${VM_MEM_MIB:-1024}; VRAM=${VRAM_MIB:-1024}
VM_TIMEOUT=${VM_TIMEOUT:-600}; TEST_TIMEOUT=${TEST_TIMEOUT:-300}; MODEL_START_TIMEOUT=${MODEL_START_TIMEOUT:-30}
pin=(); [ -n "${PIN_CPUS:-}" ] && pin=(taskset -c "$PIN_CPUS")
extra=(); [ -n "${VM_EXTRA_ARGS:-}" ] && read -ra extra <<< "$VM_EXTRA_ARGS"

run=$OUT_DIR/$name; rm -rf "$run"; mkdir -p "$run"
console=$run/console.log

# The initramfs: busybox, /init, test scripts, modules, static binaries (prepared by the Makefile).
initrd=$run/initrd.gz
(cd "$INITRAMFS_DIR" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd" || { echo "initramfs failed" >&2; exit 1; }

# One model server per GPU; each exits when QEMU disconnects. A server is ready when it
# says so: the socket file appears at bind(), a moment before listen(), and QEMU connecting
# in between would be refused.
pids=(); devs=(); NS_PER_S=1000000000
# Stops the servers; one that outlives TERM by MODEL_START_TIMEOUT gets KILL, so the final
# wait cannot block.
cleanup() {
  local p deadline
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  deadline=$(( $(date +%s%N) + MODEL_START_TIMEOUT * NS_PER_S ))
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ "$(date +%s%N)" -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
}
trap cleanup EXIT
for i in $(seq 0 $((gpus - 1))); do
  sock=$run/gpu$i.sock; log=$run/gpu$i.log
  "${pin[@]}" "$MODEL_BIN" --socket "$sock" --vram-mib "$VRAM" --stats "$run/gpu$i.stats.json" \
    < /dev/null > "$log" 2>&1 &
  pids+=($!)
  ready="gf100-model: listening on $sock"   # server::READY_LINE_PREFIX + the socket path
  deadline=$(( $(date +%s%N) + MODEL_START_TIMEOUT * NS_PER_S ))   # whole seconds would round
  until grep -qF "$ready" "$log"; do
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "model server $i exited before \"$ready\" (log: $log)" >&2; cat "$log" >&2; exit 1
    fi
    if [ "$(date +%s%N)" -ge $deadline ]; then
      echo "model server $i: no \"$ready\" within ${MODEL_START_TIMEOUT}s (log: $log)" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  devs+=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$sock\",\"type\":\"unix\"},\"addr\":\"$(printf 0x%x $((4 + i)))\"}")
done

t0=$(date +%s)
# log_buf_len: tests read boot-time lines from dmesg (nested-vgpu the TSC rate, others their own
# lines); with 40 tests in one boot the default ring wraps before the last ones run.
accel=tcg; [ "$SMP" -gt 1 ] && accel=tcg,thread=multi
timeout --foreground -k 10 "$VM_TIMEOUT" "${pin[@]}" "$QEMU" -accel "$accel" -smp "$SMP" -m "$MEM" \
  -nographic -no-reboot -nic none -vga none \
  -object "memory-backend-memfd,id=mem,share=on,size=${MEM}M" -machine pc,memory-backend=mem \
  -kernel "$KBUILD/arch/x86/boot/bzImage" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 oops=panic loglevel=7 log_buf_len=8M gpuvm.tests=$(IFS=,; echo "${tests[*]}") gpuvm.timeout=$TEST_TIMEOUT" \
  "${devs[@]}" "${extra[@]}" < /dev/null > "$console" 2>&1
qemu_rc=$?
wall=$(( $(date +%s) - t0 ))
cleanup; trap - EXIT

# --- verdicts
# Kernel reports: console lines carry a "[ time]" prefix; test output is indented by /init.
# Lockdep reports have their own headlines; its boot banner ("RCU lockdep checking is
# enabled") is not one of them.
splat_re='^\[ *[0-9]+\.[0-9]+\] .*(WARNING:|BUG:|Oops|Kernel panic|KFENCE:|UBSAN:|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|bad unlock balance|held lock freed|lock held when returning|lockdep is turned off|DEBUG_LOCKS_WARN_ON|general protection fault|Call Trace:|blocked for more than|self-detected stall|RCU stall|panicked at)'
splats=$(grep -aE "$splat_re" "$console" || true)
pass=0; fail=0; n=0; lines=()
declare -A seen=()
while IFS= read -r l; do
  l=${l#*gpuvm-tap: }; l=${l%$'\r'}
  t=$(sed -E 's/^(not )?ok [0-9]+ ([^ ]+).*/\2/' <<< "$l")
  seen[$t]=1
  # A test during which the kernel complained fails, whatever it reported.
  if [[ $l == ok* ]] && [ -n "$splats" ] && RE="$splat_re" awk -v t="$t" '
      $0 ~ "gpuvm-vm: begin "t"\r?$" {on=1; next}
      $0 ~ "gpuvm-vm: end "t"\r?$" {on=0}
      on && $0 ~ ENVIRON["RE"] {bad=1}
      END {exit !bad}' "$console"; then
    l=${l#ok }; l="not ok ${l/ \# SKIP/ \# skipped:} (kernel report during test)"
  fi
  lines+=("$l")
done < <(grep -a 'gpuvm-tap: ' "$console")
done_ok=0; grep -aq 'gpuvm-vm: done' "$console" && done_ok=1

skip=0
report() {  # KTAP, renumbered for this run
  local i=0
  echo "KTAP version 1"
  echo "1..${#tests[@]}"
  for l in "${lines[@]}"; do
    i=$((i + 1)); local rest=${l#not ok }; rest=${rest#ok }; rest=${rest#* }
    if [[ $l == ok* ]]; then
      echo "ok $i $rest"
      if [[ $rest == *" # SKIP"* ]]; then skip=$((skip + 1)); else pass=$((pass + 1)); fi
    else
      echo "not ok $i $rest"; fail=$((fail + 1))
    fi
  done
  for t in "${tests[@]}"; do
    if [ -z "${seen[$t]:-}" ]; then i=$((i + 1)); echo "not ok $i $t # never reported (qemu rc=$qemu_rc)"; fail=$((fail + 1)); fi
  done
}

if [ $expect_splat = 1 ]; then
  # Self-test mode: the boot is expected to contain a kernel report; report whether it did.
  if [ -n "$splats" ]; then echo "harness: detected the expected kernel report:"; echo "$splats" | head -3 | sed 's/^/  /'; exit 0; fi
  echo "harness: expected a kernel report, found none (console: $console)"; exit 1
fi

# report's counts are needed here, so it does not run in a subshell.
report > "$run/tap.txt"
cat "$run/tap.txt"
# Everything else is a KTAP diagnostic line.
if [ -n "$splats" ]; then
  echo "# harness: kernel reported problems (console: $console):"; echo "$splats" | head -20 | sed 's/^/#   /'
  fail=$((fail + 1))
fi
[ $done_ok = 1 ] || { echo "# harness: VM did not finish (qemu rc=$qemu_rc, ${wall}s; console: $console)"; tail -30 "$console" | sed 's/^/#   /'; }
echo "# harness: $name: ${wall}s wall, console log $console"
echo "# Totals: pass:$pass fail:$fail xfail:0 xpass:0 skip:$skip error:0"
echo "$pass passed, $fail failed" | tee "$run/summary.txt"
[ $fail = 0 ] && [ $done_ok = 1 ]
