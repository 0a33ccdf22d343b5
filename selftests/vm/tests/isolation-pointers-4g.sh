# vram-mib: 6144
# Issue 11, whole pointers, on a GPU of more than 4 GiB (the header above makes the suite boot
# this test with 6144 MiB models). Four gpuvm-4 vGPUs: a pattern holder at the bottom, an idle
# neighbour, the attacker whose slice straddles 4 GiB and a victim whose slice lies above it.
# The victim and the attacker first run checked workloads alone. Then, while the victim's
# checked workloads run over and over, the attacker rewrites its bound channel's USERD words
# through PRAMIN one word at a time: to a page of its VRAM whose host address needs a carry
# into the high word, chosen so that a carry-less translation would land on the holder's
# pattern, and to values outside its partition, preempting its channel and submitting after
# each word. Its channel must keep working on the last valid whole USERD page or fault on
# itself; the pattern must be intact, the victim's results correct, the others untouched.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
MIB=1048576; FOUR_GIB=4096   # MiB
vgpu_setup
[ "$(cat $PA/vram_physical_mib)" -gt $FOUR_GIB ] || fail "the GPU has $(cat $PA/vram_physical_mib) MiB of VRAM, not more than 4 GiB (run with VRAM_MIB=6144)"
h=$(vgpu_create 4); n=$(vgpu_create 4); a=$(vgpu_create 4); v=$(vgpu_create 4)
for u in $h $n $a $v; do echo "vGPU $u: VRAM at $(vgpu_counter $u vram_base_mib) MiB, $(vgpu_counter $u vram_mib) MiB"; done
hb=$(vgpu_counter $h vram_base_mib); ab=$(vgpu_counter $a vram_base_mib); am=$(vgpu_counter $a vram_mib)
vb=$(vgpu_counter $v vram_base_mib)
[ $ab -lt $FOUR_GIB ] && [ $((ab + am)) -gt $FOUR_GIB ] || fail "the attacker's slice ($ab MiB + $am MiB) does not straddle 4 GiB"
[ $vb -ge $FOUR_GIB ] || fail "the victim's slice at $vb MiB is not above 4 GiB"

# Above 4 GiB, alone: checked workloads on the victim's slice and on the attacker's.
t0=$(cut -d' ' -f1 /proc/uptime)
gpuvm-bench --mdev $v mmul hotspot > /tmp/alone.log 2>&1 || { cut -c1-300 /tmp/alone.log; fail "checked workloads on the vGPU above 4 GiB failed"; }
t1=$(cut -d' ' -f1 /proc/uptime)
gpuvm-bench --mdev $a mmul >> /tmp/alone.log 2>&1 || { cut -c1-300 /tmp/alone.log; fail "a checked workload on the vGPU straddling 4 GiB failed"; }
cut -c1-300 /tmp/alone.log
[ "$(grep -c '"ok":true' /tmp/alone.log)" = 3 ] || fail "expected 3 correct records alone"
untouched $v "victim, alone"

rm -f /tmp/pat.ready /tmp/pat.release
gpuvm-hostile --mdev $h hold-pattern --mib 16 --ready /tmp/pat.ready --release /tmp/pat.release > /tmp/pat.log 2>&1 &
hp=$!
wait_file /tmp/pat.ready 120 $hp
addr=$(cat /tmp/pat.ready)
# The holder's buffer (+1 MiB) in host VRAM, and the attacker's guest page whose host address
# is 4 GiB above it: guest x of the attacker is host ab MiB + x.
carry_less=$(( hb * MIB + addr + MIB ))
cross=$(( carry_less + FOUR_GIB * MIB - ab * MIB ))
[ $cross -lt $(( am * MIB )) ] || fail "no carry page inside the attacker's VRAM"
printf 'pattern at host VRAM %#x; attacker carry page guest %#x (host %#x)\n' $carry_less $cross $((ab * MIB + cross))

victim_start $v mmul hotspot
a0=$(cut -d' ' -f1 /proc/uptime)
rc=0
gpuvm-hostile --mdev $a pointers --target $cross || rc=$?
a1=$(cut -d' ' -f1 /proc/uptime)
touch /tmp/pat.release
prc=0; wait $hp || prc=$?
sed 's/^/holder: /' /tmp/pat.log
victim_stop
awk -v a=$t0 -v b=$t1 -v c=$a0 -v d=$a1 'BEGIN { printf "victim alone: one run of mmul+hotspot in %.1f s; the attack took %.1f s\n", b - a, d - c }'
for u in $h $n $a $v; do vgpu_counters $u "$(vgpu_counter $u vram_base_mib) MiB"; done
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
[ $prc = 0 ] || fail "the pattern holder's pattern changed (rc=$prc)"
untouched $h "pattern holder"
untouched $n "idle neighbour"
untouched $v victim
for u in $h $n $a $v; do vgpu_remove $u; done
vgpu_check_empty
