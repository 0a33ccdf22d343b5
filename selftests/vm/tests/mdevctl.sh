# Debian's mdevctl (trixie's package, in the QEMU rootfs disk that tools/qemu.sh builds, run by
# chroot) manages gpuvm vGPUs: `types` lists gpuvm-1/2/4/8 as sysfs shows them; a persistent
# vGPU is defined (its weight as an mdevctl attribute), started, seen in sysfs, `list` and
# gpuvmctl, stopped, and undefined; an `--auto` definition survives the GPU's unbind/rebind and
# is started by `start-parent-mdevs`, what mdevctl's udev rule runs when a parent registers.
. /tests/lib.sh
. /tests/vgpu-lib.sh
vgpu_setup
U=""
cleanup() {
  [ -n "$U" ] && [ -e $M/$U ] && echo 1 > $M/$U/remove
  umount_rootfs
}
trap cleanup EXIT
mount_rootfs
[ -x $ROOTFS/usr/bin/mdevctl ] || fail "no /usr/bin/mdevctl on the rootfs disk (tools/qemu.sh installs it)"
# `define` writes /etc/mdevctl.d/<parent>/<uuid>: a tmpfs copy of the package's (read-only) one.
mkdir -p /tmp/mdevctl.d && cp -a $ROOTFS/etc/mdevctl.d/. /tmp/mdevctl.d/
mount --bind /tmp/mdevctl.d $ROOTFS/etc/mdevctl.d || fail "cannot bind a tmpfs over /etc/mdevctl.d"
mdevctl() { chroot $ROOTFS /usr/bin/mdevctl "$@"; }
mdevctl --version

echo "--- mdevctl types"
mdevctl types > /tmp/types || fail "mdevctl types failed"
cat /tmp/types
grep -qx "$GPU_HOST" /tmp/types || fail "mdevctl types does not list $GPU_HOST"
for n in 1 2 4 8; do
  grep -A4 -x "  gpuvm-$n" /tmp/types > /tmp/type || fail "mdevctl types does not list gpuvm-$n"
  for want in "    Available instances: $(cat $T/gpuvm-$n/available_instances)" "    Device API: vfio-pci" \
      "    Description: $(cat $T/gpuvm-$n/description)"; do
    grep -qxF "$want" /tmp/type || fail "mdevctl types, gpuvm-$n: no '$want'"
  done
done

echo "--- define, modify, start"
U=$(cat /proc/sys/kernel/random/uuid)
mdevctl define -u $U -p $GPU_HOST -t gpuvm-4 || fail "mdevctl define failed"
mdevctl modify -u $U --addattr=gpuvm/weight --value=25 || fail "mdevctl modify --addattr failed"
cat /tmp/mdevctl.d/$GPU_HOST/$U || fail "mdevctl define wrote no /etc/mdevctl.d/$GPU_HOST/$U"
echo
[ ! -e $M/$U ] || fail "mdevctl define started the vGPU"
mdevctl list -d -v | tee /tmp/list
grep -qx "$U $GPU_HOST gpuvm-4 manual" /tmp/list || fail "mdevctl list -d does not show the definition"
grep -q '"gpuvm/weight":"25"' /tmp/list || fail "mdevctl list -d -v does not show the weight attribute"
mdevctl start -u $U || fail "mdevctl start -u $U failed"
[ -d $M/$U ] || fail "no $M/$U after mdevctl start"
[ "$(cat $M/$U/gpuvm/type)" = gpuvm-4 ] || fail "vGPU type $(cat $M/$U/gpuvm/type), want gpuvm-4"
[ "$(cat $M/$U/gpuvm/weight)" = 25 ] || fail "weight $(cat $M/$U/gpuvm/weight): mdevctl did not write its attribute"
check_parent "0 1 3 6" "mdevctl start of a gpuvm-4"
mdevctl list | tee /tmp/list
grep -qx "$U $GPU_HOST gpuvm-4 manual (defined)" /tmp/list || fail "mdevctl list does not show $U active"
mdevctl list -d | grep -qx "$U $GPU_HOST gpuvm-4 manual (active)" || fail "mdevctl list -d does not show $U active"
gpuvmctl list | grep -qE "^  $U +gpuvm-4 .* 25$" || fail "gpuvmctl list does not show $U with weight 25"
if mdevctl start -u $U 2> /tmp/err; then fail "a second mdevctl start of $U succeeded"; fi
cat /tmp/err

echo "--- stop, undefine"
mdevctl stop -u $U || fail "mdevctl stop failed"
[ ! -e $M/$U ] || fail "$M/$U still there after mdevctl stop"
[ -z "$(mdevctl list)" ] || fail "mdevctl list not empty after stop: $(mdevctl list)"
mdevctl list -d | grep -qx "$U $GPU_HOST gpuvm-4 manual" || fail "the definition did not survive stop"
mdevctl undefine -u $U || fail "mdevctl undefine failed"
[ ! -e /tmp/mdevctl.d/$GPU_HOST/$U ] || fail "mdevctl undefine left /etc/mdevctl.d/$GPU_HOST/$U"
[ -z "$(mdevctl list -d)" ] || fail "mdevctl list -d not empty after undefine: $(mdevctl list -d)"

echo "--- an --auto definition comes back with its parent"
U=$(cat /proc/sys/kernel/random/uuid)
mdevctl define -a -u $U -p $GPU_HOST -t gpuvm-8 || fail "mdevctl define --auto failed"
mdevctl modify -u $U --addattr=gpuvm/weight --value=70 || fail "mdevctl modify --addattr failed"
echo $GPU_HOST > /sys/bus/pci/drivers/gpuvm/unbind || fail "unbinding $GPU_HOST failed"
[ ! -e /sys/class/mdev_bus/$GPU_HOST ] || fail "$GPU_HOST still an mdev parent after unbind"
echo $GPU_HOST > /sys/bus/pci/drivers/gpuvm/bind || fail "rebinding $GPU_HOST failed"
[ -d $T ] || fail "$GPU_HOST is no mdev parent after rebinding"
[ ! -e $M/$U ] || fail "$U exists before start-parent-mdevs"
# What the package's udev rule runs must exist (Debian trixie's 1.4.0-2 names /usr/sbin/mdevctl
# and installs /usr/bin/mdevctl: tools/qemu.sh links the one to the other; the libvirt-mdev test
# has udevd run the rule).
bin=$(cat $ROOTFS/usr/lib/udev/rules.d/*mdevctl*.rules | grep -o '[^ ]*/mdevctl start-parent-mdevs' | head -1 | cut -d' ' -f1)
[ -n "$bin" ] || fail "no mdevctl udev rule running start-parent-mdevs in the rootfs"
chroot $ROOTFS $bin --version > /dev/null || fail "the mdevctl udev rule runs $bin, which does not run in the rootfs"
mdevctl start-parent-mdevs $GPU_HOST || fail "mdevctl start-parent-mdevs failed"
[ -d $M/$U ] || fail "start-parent-mdevs did not start the --auto vGPU"
[ "$(cat $M/$U/gpuvm/type) $(cat $M/$U/gpuvm/weight)" = "gpuvm-8 70" ] || fail "auto-started vGPU: $(cat $M/$U/gpuvm/type) weight $(cat $M/$U/gpuvm/weight)"
mdevctl list | tee /tmp/list
grep -qx "$U $GPU_HOST gpuvm-8 auto (defined)" /tmp/list || fail "mdevctl list does not show the auto-started $U"
mdevctl stop -u $U || fail "mdevctl stop failed"
mdevctl undefine -u $U || fail "mdevctl undefine failed"
U=""
vgpu_check_empty
