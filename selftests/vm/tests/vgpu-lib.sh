# Helpers for the vgpu-* tests (sourced after lib.sh). The checks themselves are in
# gpuvm-vfio-test (selftests/vfio-client).
T=/sys/class/mdev_bus/$GPU_HOST/mdev_supported_types
PA=/sys/bus/pci/devices/$GPU_HOST/gpuvm
M=/sys/bus/mdev/devices

# Create a gpuvm-$1 vGPU and print its UUID (errors go to stderr: callers capture stdout).
vgpu_create() {
  _u=$(cat /proc/sys/kernel/random/uuid)
  echo $_u > $T/gpuvm-$1/create || fail "creating a gpuvm-$1 vGPU failed" >&2
  [ -d $M/$_u ] || fail "no $M/$_u after creating it" >&2
  echo $_u
}
vgpu_remove() {
  echo 1 > $M/$1/remove || fail "removing vGPU $1 failed"
  [ ! -e $M/$1 ] || fail "vGPU $1 still present after remove"
}
# UUIDs of the parent's vGPUs, all types.
vgpu_list() {
  for _d in $T/*/devices/*; do [ -e "$_d" ] && basename "$_d"; done
  return 0
}
# Where the guest pool starts in host VRAM and channels, as gpuvm-vfio-test options ($POOL) and
# numbers ($POOL_VRAM MiB, $POOL_CH); set by vgpu_setup.
POOL=""; POOL_VRAM=0; POOL_CH=0
# The parent's state is self-consistent; with $1, available_instances of gpuvm-1/2/4/8 is "$1".
# $2 says when (for the message).
check_parent() {
  if [ -n "$1" ]; then
    gpuvm-vfio-test check-parent --parent $GPU_HOST $POOL --expect-avail "$1" > /tmp/check.log 2>&1 || { cat /tmp/check.log; fail "parent check after $2"; }
  else
    gpuvm-vfio-test check-parent --parent $GPU_HOST $POOL > /tmp/check.log 2>&1 || { cat /tmp/check.log; fail "parent check after $2"; }
  fi
  tail -1 /tmp/check.log | grep -v ' 0 failed$' || true
}
# gpuvm loaded, GPU A an mdev parent with an empty pool (leftovers of a failed test removed).
vgpu_setup() {
  load_gpuvm
  [ "$(driver_of $GPU_HOST)" = gpuvm ] || fail "GPU $GPU_HOST bound to '$(driver_of $GPU_HOST)', not gpuvm"
  [ -d $T ] || fail "$GPU_HOST is not an mdev parent (no $T)"
  for _u in $(vgpu_list); do echo "note: removing leftover vGPU $_u"; vgpu_remove $_u; done
  [ "$(cat $T/gpuvm-1/available_instances)" = 1 ] || fail "gpuvm-1 available_instances $(cat $T/gpuvm-1/available_instances) on an empty GPU"
  POOL=$(gpuvm-vfio-test pool-origin --parent $GPU_HOST) || fail "finding the pool origin: $POOL"
  set -- $POOL; POOL_VRAM=$2; POOL_CH=$4
  echo "guest pool at $POOL_VRAM MiB of host VRAM, host channel $POOL_CH"
  check_parent "1 2 4 8" "loading gpuvm"
}
# The pool is whole again and no vGPU is left.
vgpu_check_empty() {
  [ -z "$(vgpu_list)" ] || fail "vGPUs left at the end: $(vgpu_list)"
  [ "$(cat $PA/vgpus)" = 0 ] || fail "parent vgpus $(cat $PA/vgpus) at the end"
  [ "$(cat $PA/vram_free_mib)" = "$(cat $PA/vram_total_mib)" ] || fail "vram_free_mib $(cat $PA/vram_free_mib) != vram_total_mib $(cat $PA/vram_total_mib) at the end"
  [ "$(cat $PA/channels_free)" = "$(cat $PA/channels_total)" ] || fail "channels_free $(cat $PA/channels_free) != channels_total $(cat $PA/channels_total) at the end"
  check_parent "1 2 4 8" "the end"
}
