# The product's front door: a nested guest (L2) started by QEMU in the host VM with a gpuvm-2
# vGPU assigned as `-device vfio-pci,sysfsdev=/sys/bus/mdev/devices/UUID`. In L2 the vGPU is a
# PCI function 10de:06d8; L2's /init (selftests/vm/l2/init) binds it to vfio-pci (no-IOMMU)
# and runs the unmodified gpuvm-bench on it, which checks every result against its CPU
# reference. The vGPU runs with BAR remapping and lazy shadowing on (remap+lazy, the defaults,
# set explicitly), so QEMU maps BAR3's sparse-mmap area into L2. Passes when L2 says PASS with
# one "ok":true record per workload (all five by default) and the vGPU's counters show the work
# went through gpuvm (trapped MMIO, submissions, BAR3 pages mapped, none refused). Then the same
# workloads run on the same vGPU straight from the host VM (L1), and the per-phase times are
# printed side by side ("PHASES" lines: L1 ms, L2 ms, L2/L1; L2's phases timed by its TSC).
# Needs the host VM's disk with the trixie QEMU rootfs (VM_EXTRA_ARGS from the Makefile; skipped
# without it) and /l2/{vmlinux,initrd.gz} in the initramfs. Env: L2_BENCH (gpuvm.bench for L2,
# default hotspot,lud,srad,needle,mmul,--small), L2_TIMEOUT (seconds for the whole nested run,
# default 270).
# timeout: 360
. /tests/lib.sh
BENCH=${L2_BENCH:-hotspot,lud,srad,needle,mmul,--small,--marks}
L2_TIMEOUT=${L2_TIMEOUT:-270}
WORKLOADS=$(echo "$BENCH" | tr , '\n' | grep -v '^-' | tr '\n' ' ')
R=$ROOTFS
[ -f /l2/vmlinux ] && [ -f /l2/initrd.gz ] || fail "no /l2/vmlinux or /l2/initrd.gz in the initramfs"

U=""
cleanup() {
  umount_rootfs
  [ -n "$U" ] && [ -e /sys/bus/mdev/devices/$U ] && echo 1 > /sys/bus/mdev/devices/$U/remove
  return 0
}
trap cleanup EXIT

mount_rootfs
[ -x $R/usr/bin/qemu-system-x86_64 ] || fail "no qemu-system-x86_64 on /dev/vda"
mkdir $R/tmp/l2 && cp /l2/vmlinux /l2/initrd.gz $R/tmp/l2/
echo "L1: $(chroot $R qemu-system-x86_64 --version | head -1)"

load_gpuvm
P=/sys/bus/pci/devices/$GPU_HOST/gpuvm
echo 1 > $P/bar_remap || fail "cannot set bar_remap"
echo 1 > $P/lazy_shadow || fail "cannot set lazy_shadow"
U=$(cat /proc/sys/kernel/random/uuid)
echo $U > /sys/class/mdev_bus/$GPU_HOST/mdev_supported_types/gpuvm-2/create || fail "cannot create a gpuvm-2 vGPU"
echo "L1: vGPU $U (gpuvm-2), iommu group $(basename "$(readlink /sys/bus/mdev/devices/$U/iommu_group)")"

t0=$(cut -d' ' -f1 /proc/uptime)
echo "L1: starting L2 at ${t0}s: gpuvm.bench=$BENCH, timeout ${L2_TIMEOUT}s"
( timeout $L2_TIMEOUT chroot $R qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot \
    -nic none -vga none -kernel /tmp/l2/vmlinux -initrd /tmp/l2/initrd.gz \
    -append "console=ttyS0 panic=-1 loglevel=4 vfio.enable_unsafe_noiommu_mode=1 gpuvm.bench=$BENCH" \
    -device vfio-pci,sysfsdev=/sys/bus/mdev/devices/$U,addr=0x4 < /dev/null 2>&1
  echo $? > /tmp/l2.rc ) | while IFS= read -r line; do echo "$(cut -d' ' -f1 /proc/uptime) $line"; done \
  | tee /tmp/l2.log | sed 's/^/L2 | /'
t1=$(cut -d' ' -f1 /proc/uptime)
rc=$(cat /tmp/l2.rc)
echo "L1: L2 QEMU exited rc=$rc after $(echo "$t1 $t0" | awk '{printf "%.1f", $1 - $2}')s"

printf 'L1: vGPU counters: '
for f in mmio_traps mmio_forwarded mmio_denied submissions shadow_syncs pte_reads pte_writes pte_refused faults bar_maps bar_refused bar_pages_taken; do
  printf '%s=%s ' $f "$(cat /sys/bus/mdev/devices/$U/gpuvm/$f)"
done
echo
traps=$(cat /sys/bus/mdev/devices/$U/gpuvm/mmio_traps)
subs=$(cat /sys/bus/mdev/devices/$U/gpuvm/submissions)

[ "$rc" = 0 ] || fail "L2's QEMU exited with rc=$rc (124: timed out after ${L2_TIMEOUT}s)"
grep -q 'gpuvm-l2: PASS' /tmp/l2.log || fail "L2 did not report PASS: $(grep 'gpuvm-l2: FAIL' /tmp/l2.log)"
sed -n 's/^[0-9.]* gpuvm-l2: record: //p' /tmp/l2.log | tr -d '\r' > /tmp/l2.rec
for w in $WORKLOADS; do
  grep "\"workload\":\"$w\"" /tmp/l2.rec | grep -q '"ok":true' || fail "no \"ok\":true record for $w from L2"
done
[ "$traps" -gt 0 ] || fail "the vGPU trapped no MMIO: L2's work did not go through gpuvm"
[ "$subs" -gt 0 ] || fail "the vGPU saw no submissions"
# With bar_remap on (the default), L2's QEMU maps BAR3's sparse-mmap area into L2: L2's BAR3
# accesses fault pages in, none refused.
if [ "$(cat /sys/bus/pci/devices/$GPU_HOST/gpuvm/bar_remap)" = 1 ]; then
  [ "$(cat /sys/bus/mdev/devices/$U/gpuvm/bar_maps)" -gt 0 ] || fail "bar_remap on, but no BAR3 page was mapped for L2"
  [ "$(cat /sys/bus/mdev/devices/$U/gpuvm/bar_refused)" = 0 ] || fail "BAR3 faults refused for L2"
fi
# The same workloads on the same vGPU from L1 (the host VM's own gpuvm-bench), for the
# per-phase comparison.
t2=$(cut -d' ' -f1 /proc/uptime)
gpuvm-bench --mdev $U $(echo "$BENCH" | tr , ' ' | sed 's/--marks//') > /tmp/l1.rec 2> /tmp/l1.err || { cat /tmp/l1.err; fail "gpuvm-bench on the vGPU from L1 failed"; }
echo "L1: the same workloads from L1 took $(echo "$(cut -d' ' -f1 /proc/uptime) $t2" | awk '{printf "%.1f", $1 - $2}')s"
# phase_ms FILE WORKLOAD PHASE: the phase's time in ms from the workload's record.
phase_ms() {
  grep "\"workload\":\"$2\"" $1 | head -1 | sed -n "s/.*\"phases_us\":{[^}]*\"$3\":\([0-9]*\).*/\1/p" | awk '{printf "%.1f", $1 / 1000}'
}
# L2's own clock cannot be trusted (its lean kernel runs on jiffies under TCG in TCG and loses
# ticks: one run's records added up to 4.6 s for a run L1 saw take 21.9 s), and its console
# delivers lines late and in bursts, so its phases are timed by its TSC: gpuvm-bench --marks
# prints the counter at each phase's begin and end, and under TCG L2's TSC follows the host's,
# whose rate L1's kernel calibrated.
MHZ=$(dmesg | sed -n 's/.*Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -1)
[ -n "$MHZ" ] || MHZ=$(dmesg | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -1)
[ -n "$MHZ" ] || fail "no TSC rate in L1's kernel log"
# marks_ms WORKLOAD PHASE: the phase's summed time in ms by the TSC.
marks_ms() {
  tr -d '\r' < /tmp/l2.log | awk -v want="$1" -v ph="$2" -v list="$WORKLOADS" -v mhz="$MHZ" '
    BEGIN { split(list, ws, " ") }
    /gpuvm-mark Init begin/ { w++ }
    /gpuvm-mark [A-Za-z]* begin [0-9]/ { b = $NF }
    /gpuvm-mark [A-Za-z]* end [0-9]/ { p = $(NF - 2); if (ws[w] == want && p == ph) t += $NF - b; seen = 1 }
    END { if (seen) printf "%.1f", t / mhz / 1000 }'
}
# The marks against L1's clock: L2's whole run by the TSC must fit in the wall time L1 saw.
tscs=$(tr -d '\r' < /tmp/l2.log | awk -v mhz="$MHZ" '/gpuvm-mark Init begin [0-9]/ && !s { s = $NF } /gpuvm-mark [A-Za-z]* end [0-9]/ { e = $NF } END { printf "%.1f", (e - s) / mhz / 1e6 }')
l1s=$(awk '/gpuvm-l2: gpuvm-bench /{s=$1} /gpuvm-l2: (PASS|FAIL)/{e=$1} END{printf "%.1f", e - s}' /tmp/l2.log)
l2s=$(sed -n 's/.*"total_us":\([0-9]*\).*/\1/p' /tmp/l2.rec | awk '{t += $1} END{printf "%.1f", t / 1e6}')
echo "L1: L2's gpuvm-bench run took ${l1s}s by L1's clock (console arrival), ${tscs}s from its first to its last mark by the TSC at ${MHZ} MHz; L2's own records add up to ${l2s}s (clocksource $(sed -n 's/^[0-9.]* gpuvm-l2: clocksource //p' /tmp/l2.log | tr -d '\r'))"
echo "$tscs $l1s" | awk '{ exit !($1 > 0 && $1 <= $2 * 1.05) }' || fail "L2's marks by the TSC (${tscs}s) do not fit in the ${l1s}s L1 saw"
echo "PHASES workload phase L1_ms L2_ms L2/L1"
for w in $WORKLOADS; do
  for ph in Init MemAlloc HtoD Launch DtoH Close; do
    a=$(phase_ms /tmp/l1.rec $w $ph); b=$(marks_ms $w $ph)
    [ -n "$a" ] && [ -n "$b" ] || fail "no $ph time for $w (L1 '$a', L2 '$b')"
    echo "PHASES $w $ph $a $b $(echo "$a $b" | awk '{ if ($1 > 0) printf "%.1f", $2 / $1; else print "-" }')"
  done
done
echo 1 > /sys/bus/mdev/devices/$U/remove || fail "cannot remove vGPU $U"
U=""
echo "L1: nested-vgpu passed"
