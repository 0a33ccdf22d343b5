# A hostile guest names a channel it does not own (the victim's channel, in its numbering):
# channel-table writes and reads (and every foreign id's entry), the kick register, and a
# runlist entry. The channel-table and kick accesses are denied and counted; a runlist with a
# foreign entry raises SCHED_ERROR in the attacker's PFIFO interrupt state and its own entries
# still run. The victim's channel keeps running checked workloads throughout.
. /tests/lib.sh
. /tests/vgpu-lib.sh
. /tests/isolation-lib.sh
attacker_and_victim
a=$A; v=$V
foreign=$(( $(vgpu_counter $v first_channel) - $(vgpu_counter $a first_channel) ))
echo "attacker channels $(vgpu_counter $a first_channel)+$(vgpu_counter $a channels); victim's channel 0 is the attacker's id $foreign"
victim_start $v mmul hotspot
rc=0
gpuvm-hostile --mdev $a channels --foreign $foreign || rc=$?
victim_stop
vgpu_counters $a attacker; vgpu_counters $v victim
[ $rc = 0 ] || fail "attacker checks failed (rc=$rc)"
untouched $v victim
for u in $a $v; do vgpu_remove $u; done
vgpu_check_empty
