# Issue 11: a vGPU created on the slice of a removed one must read none of the old tenant's
# VRAM. The old tenant fills 1 MiB with a known pattern and exits without clearing it; its
# vGPU is removed; a new vGPU created on the same slice allocates the same buffer (the guest
# driver allocates the same way every time) and reads it back: no word may hold the pattern.
# The same after a VFIO_DEVICE_RESET under a running driver. A neighbour holding its own
# pattern throughout must be untouched by the scrubs. The module reports each scrub in dmesg
# ("scrub: N MiB at ADDR (why) in T us, R MiB/s"); the rates are printed.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
vgpu_setup
n=$(vgpu_create 4)   # the neighbour, right below the tenants' slice
a=$(vgpu_create 4)   # the old tenant
nb=$(vgpu_counter $n vram_base_mib); ab=$(vgpu_counter $a vram_base_mib); am=$(vgpu_counter $a vram_mib)
echo "neighbour VRAM at $nb MiB, tenants' slice at $ab MiB ($am MiB)"
# The kernel log's timestamp now: the ring buffer may wrap during a long suite, so lines are
# picked by time, not by count.
t0=$(dmesg | tail -n 1 | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p')

rm -f /tmp/pat.ready /tmp/pat.release
gpuvm-hostile --mdev $n hold-pattern --mib 16 --ready /tmp/pat.ready --release /tmp/pat.release > /tmp/pat.log 2>&1 &
hp=$!
wait_file /tmp/pat.ready 120 $hp

# The old tenant leaves its pattern and goes away.
gpuvm-hostile --mdev $a leave-pattern --mib 1 > /tmp/old.log 2>&1 || { cat /tmp/old.log; fail "old tenant could not write its pattern"; }
cat /tmp/old.log
addr=$(sed -n 's/^pattern at guest VRAM //p' /tmp/old.log)
[ -n "$addr" ] || fail "old tenant printed no pattern address"
vgpu_remove $a

# A new tenant on the same slice.
b=$(vgpu_create 4)
[ "$(vgpu_counter $b vram_base_mib)" = $ab ] || fail "the new vGPU is at $(vgpu_counter $b vram_base_mib) MiB, not on the old slice at $ab MiB"
gpuvm-hostile --mdev $b leftover --mib 1 --at $addr || fail "the new tenant read the old tenant's data"

# A VFIO reset under a running driver, then the next user of the same vGPU.
r0=$(vgpu_counter $b resets)
gpuvm-hostile --mdev $b leave-pattern --mib 1 --reset > /tmp/reset.log 2>&1 || { cat /tmp/reset.log; fail "tenant could not write its pattern and reset"; }
cat /tmp/reset.log
[ "$(vgpu_counter $b resets)" -gt $r0 ] || fail "the resets counter did not rise"
addr=$(sed -n 's/^pattern at guest VRAM //p' /tmp/reset.log)
gpuvm-hostile --mdev $b leftover --mib 1 --at $addr || fail "the user after the reset read the previous user's data"

touch /tmp/pat.release
prc=0; wait $hp || prc=$?
sed 's/^/neighbour: /' /tmp/pat.log
[ $prc = 0 ] || fail "the neighbour's pattern changed (rc=$prc)"
untouched $n neighbour
vgpu_counters $n neighbour; vgpu_counters $b tenant

# The scrubs the module reported during the test: the closes of tenants that wrote their VRAM
# and the reset at least.
dmesg | awk -v t0="${t0:-0}" '{ t = $0; sub(/^\[ */, "", t); sub(/\].*/, "", t); if (t + 0 > t0 + 0) print }' \
  | grep "gpuvm $GPU_HOST: scrub:" | sed 's/^\[[^]]*\] //' > /tmp/scrub.log || true
cat /tmp/scrub.log
[ "$(wc -l < /tmp/scrub.log)" -ge 3 ] || fail "expected at least 3 scrub lines in dmesg (the tenants' closes and the reset), got $(wc -l < /tmp/scrub.log)"
awk '{ r = ""; for (i = 2; i <= NF; i++) if ($i == "MiB/s" || $i == "MiB/s)") r = $(i - 1); if (r != "") { n++; s += r; if (min == "" || r + 0 < min) min = r + 0; if (r + 0 > max) max = r + 0 } }
     END { if (n) printf "scrub rate over %d scrubs: min %d, mean %d, max %d MiB/s\n", n, min, s / n, max }' /tmp/scrub.log

for u in $n $b; do vgpu_remove $u; done
vgpu_check_empty
