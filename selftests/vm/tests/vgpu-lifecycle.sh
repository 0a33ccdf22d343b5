# vGPU lifecycle through sysfs: gpuvm.ko makes GPU A an mdev parent with types gpuvm-1/2/4/8;
# every type can be created and removed, its attributes give its share, available_instances
# follows the aligned 8-unit pool after every step (gpuvm-vfio-test check-parent compares it with
# the units the vGPUs occupy), a duplicate UUID gets EEXIST, no room gets ENOSPC (also when the
# free units are not aligned), weight is validated, and the pool is whole again at the end.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
[ "$(ls $T | tr '\n' ' ')" = "gpuvm-1 gpuvm-2 gpuvm-4 gpuvm-8 " ] || fail "mdev types: $(ls $T | tr '\n' ' ')"
for n in 1 2 4 8; do
  [ "$(cat $T/gpuvm-$n/device_api)" = vfio-pci ] || fail "gpuvm-$n device_api '$(cat $T/gpuvm-$n/device_api)'"
  echo "gpuvm-$n: $(cat $T/gpuvm-$n/name): $(cat $T/gpuvm-$n/description)"
done
vram=$(cat $PA/vram_total_mib); ch=$(cat $PA/channels_total)
echo "pool: $vram MiB VRAM, $ch channels"
unit=$((vram / 8))
attr() { cat $M/$1/gpuvm/$2; }
expect_attr() { [ "$(attr $1 $2)" = "$3" ] || fail "vGPU $1 $2: '$(attr $1 $2)', want '$3'"; }
expect_errno() { gpuvm-vfio-test sysfs-write "$1" "$2" --expect-errno $3 || fail "writing '$2' to $1 did not fail with $3"; }

# Each type alone: attributes, availability, weight.
for n in 1 2 4 8; do
  u=$(vgpu_create $n)
  case $n in 1) want="0 0 0 0";; 2) want="0 1 2 4";; 4) want="0 1 3 6";; 8) want="0 1 3 7";; esac
  check_parent "$want" "creating one gpuvm-$n"
  expect_attr $u type gpuvm-$n
  expect_attr $u vram_mib $((vram / n))
  expect_attr $u channels $((ch / n))
  expect_attr $u bar1_mib $((128 / n))
  expect_attr $u bar3_mib $((64 / n))
  expect_attr $u resets 0
  expect_attr $u weight 10
  [ "$(cat $PA/vgpus)" = 1 ] || fail "parent vgpus $(cat $PA/vgpus) with one vGPU"
  [ "$(cat $PA/vram_free_mib)" = $((vram - vram / n)) ] || fail "vram_free_mib $(cat $PA/vram_free_mib) with one gpuvm-$n"
  [ "$(cat $PA/channels_free)" = $((ch - ch / n)) ] || fail "channels_free $(cat $PA/channels_free) with one gpuvm-$n"
  [ "$(basename $(readlink $M/$u/mdev_type))" = gpuvm-$n ] || fail "mdev_type link of $u"
  for w in 1 100 37; do
    echo $w > $M/$u/gpuvm/weight || fail "writing weight $w failed"
    expect_attr $u weight $w
  done
  for w in 0 101 -1 abc 4294967297; do expect_errno $M/$u/gpuvm/weight "$w" EINVAL; done
  expect_attr $u weight 37
  vgpu_remove $u
  check_parent "1 2 4 8" "removing the gpuvm-$n"
done

# Duplicate UUIDs (same and other type) and malformed ones.
u=$(vgpu_create 8)
expect_errno $T/gpuvm-8/create $u EEXIST
expect_errno $T/gpuvm-2/create $u EEXIST
expect_errno $T/gpuvm-8/create not-a-uuid EINVAL
check_parent "0 1 3 7" "the duplicate creates"
vgpu_remove $u

# Full pool: eight gpuvm-8, then nothing fits.
all=""
for i in 1 2 3 4 5 6 7 8; do all="$all $(vgpu_create 8)"; done
check_parent "0 0 0 0" "filling the pool with gpuvm-8"
[ "$(cat $PA/vram_free_mib)" = 0 ] || fail "vram_free_mib $(cat $PA/vram_free_mib) with a full pool"
[ "$(cat $PA/channels_free)" = 0 ] || fail "channels_free $(cat $PA/channels_free) with a full pool"
for n in 8 4 2 1; do expect_errno $T/gpuvm-$n/create $(cat /proc/sys/kernel/random/uuid) ENOSPC; done
# The vGPU at each pool unit (by vram_base_mib).
at_unit() { for _u in $all; do [ -e $M/$_u ] && [ $(( ($(attr $_u vram_base_mib) - POOL_VRAM) / unit )) = $1 ] && echo $_u; done; return 0; }
u0=$(at_unit 0); u1=$(at_unit 1); u2=$(at_unit 2)
[ -n "$u0" ] && [ -n "$u1" ] && [ -n "$u2" ] || fail "no gpuvm-8 at pool units 0/1/2 of a full pool"
# Free units 0 and 2: two units, but no aligned pair for a gpuvm-4.
vgpu_remove $u0; vgpu_remove $u2
check_parent "0 0 0 2" "freeing units 0 and 2"
expect_errno $T/gpuvm-4/create $(cat /proc/sys/kernel/random/uuid) ENOSPC
# Free unit 1 too: the pair 0-1 takes a gpuvm-4, at unit 0.
vgpu_remove $u1
check_parent "0 0 1 3" "freeing unit 1"
u4=$(vgpu_create 4)
expect_attr $u4 vram_base_mib $POOL_VRAM
expect_attr $u4 first_channel $POOL_CH
check_parent "0 0 0 1" "a gpuvm-4 in units 0-1"
for u in $(vgpu_list); do vgpu_remove $u; done

# A mix: gpuvm-2 + gpuvm-4 + gpuvm-8 leave one unit whatever the placement.
a=$(vgpu_create 2); check_parent "0 1 2 4" "a gpuvm-2"
b=$(vgpu_create 4); check_parent "" "a gpuvm-2 and a gpuvm-4"
c=$(vgpu_create 8); check_parent "0 0 0 1" "a gpuvm-2, a gpuvm-4 and a gpuvm-8"
vgpu_remove $b; check_parent "" "removing the gpuvm-4"
vgpu_remove $a; check_parent "0 1 3 7" "removing the gpuvm-2"
vgpu_remove $c
vgpu_check_empty
