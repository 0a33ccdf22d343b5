# vGPU stress: 1,000 create/open/close/remove cycles in one process (alternating the group and
# cdev paths, available_instances checked at every step), cycles next to other vGPUs, rmmod with
# idle vGPUs present (they go with it), rmmod refused while a vGPU is open, and a removal that
# blocks on an open vGPU until the REQ interrupt makes its holder close it.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
CYCLES=${VGPU_STRESS_CYCLES:-1000}
gpuvm-vfio-test cycle --parent $GPU_HOST --type gpuvm-8 --count $CYCLES --path both $POOL || fail "create/open/close/remove cycles"
# Cycles of every type next to a gpuvm-4 and a gpuvm-8 that stay.
k4=$(vgpu_create 4); k8=$(vgpu_create 8)
for n in 2 4 8; do
  gpuvm-vfio-test cycle --parent $GPU_HOST --type gpuvm-$n --count 20 --path both $POOL || fail "gpuvm-$n cycles next to other vGPUs"
done
check_parent "" "the cycles next to other vGPUs"

# rmmod with idle vGPUs: they are removed with the module.
i2=$(vgpu_create 2); i8=$(vgpu_create 8); idle="$k4 $k8 $i2 $i8"
check_parent "0 0 0 0" "creating idle vGPUs"
rmmod gpuvm || fail "rmmod gpuvm with idle vGPUs failed"
for u in $idle; do [ ! -e $M/$u ] || fail "vGPU $u survived rmmod"; done
[ ! -e /sys/class/mdev_bus/$GPU_HOST ] || fail "$GPU_HOST still an mdev parent after rmmod"
[ -z "$(driver_of $GPU_HOST)" ] || fail "rmmod left $GPU_HOST bound to $(driver_of $GPU_HOST)"
load_gpuvm
check_parent "1 2 4 8" "reloading gpuvm"

# An open vGPU pins the module and blocks its removal until the holder gives it back on REQ.
for path in group cdev; do
  u=$(vgpu_create 8)
  gpuvm-vfio-test hold --mdev $u --path $path --timeout 30 > /tmp/hold.log 2>&1 &
  holder=$!
  i=0
  until grep -q '^holding' /tmp/hold.log; do
    i=$((i + 1))
    [ $i -le 200 ] && kill -0 $holder 2>/dev/null || { cat /tmp/hold.log; fail "holder ($path) did not start"; }
    sleep 0.1
  done
  if rmmod gpuvm 2>/dev/null; then fail "rmmod gpuvm succeeded while vGPU $u was open ($path)"; fi
  [ "$(driver_of $GPU_HOST)" = gpuvm ] || fail "$GPU_HOST lost its driver while vGPU $u was open"
  [ -d $M/$u ] || fail "the refused rmmod removed the open vGPU $u"
  start=$(cut -d' ' -f1 /proc/uptime)
  echo 1 > $M/$u/remove || fail "removing the open vGPU $u failed ($path)"
  end=$(cut -d' ' -f1 /proc/uptime)
  rc=0; wait $holder || rc=$?
  cat /tmp/hold.log
  [ $rc = 0 ] || fail "holder ($path) exited $rc"
  grep -q '^req received' /tmp/hold.log || fail "holder ($path) got no REQ"
  grep -q '^closed' /tmp/hold.log || fail "holder ($path) did not close"
  [ ! -e $M/$u ] || fail "vGPU $u still present after its blocked removal"
  # The holder closed while the removal was under way, and the removal waited for it.
  closing=$(sed -n 's/^closing at \([0-9.]*\)s$/\1/p' /tmp/hold.log)
  awk -v s=$start -v c="$closing" -v e=$end 'BEGIN { exit !(c != "" && s <= c && c <= e) }' ||
    fail "removal ($path) ran ${start}s..${end}s but the holder closed at '${closing}'s"
  echo "blocked removal ($path): ${start}s..${end}s, holder closed at ${closing}s"
done
vgpu_check_empty
