# libvirt drives gpuvm the way OpenStack Nova and KubeVirt do: libvirtd (trixie-backports, with
# its QEMU and node-device drivers) and systemd-udevd run from the QEMU rootfs disk by chroot,
# as root, started here and stopped at the end (the VM has no systemd).
#  - `virsh nodedev-list --cap mdev_types` lists GPU A and only it; `nodedev-dumpxml` shows
#    gpuvm-1/2/4/8 with the name, device API and available instances sysfs has.
#  - A gpuvm-2 is defined from an mdev XML (`nodedev-define`, with a weight attribute), started
#    (`nodedev-start`); availableInstances drops to what sysfs says. A transient gpuvm-1
#    (`nodedev-create`) must then be refused: it no longer fits.
#  - Domain A (type 'qemu': TCG, the host VM has no KVM) with `<hostdev type='mdev'>` on that
#    vGPU boots the nested guest of nested-vgpu through `virsh start`; its checked workload must
#    pass (serial console log) while domain B, on the same vGPU, is refused by `virsh start`.
#    Then `virsh destroy` stops A, and the vGPU goes back (`nodedev-destroy`, `nodedev-undefine`).
#  - `nodedev-autostart` + a GPU unbind/rebind: udevd runs mdevctl's rule (its path fixed in the
#    rootfs by tools/qemu.sh), which starts the vGPU again, and libvirt sees it.
# Env: L2_BENCH (default mmul,--small), L2_TIMEOUT (seconds for L2's verdict, default 300).
# timeout: 480
. /tests/lib.sh
. /tests/vgpu-lib.sh
set -o pipefail
BENCH=${L2_BENCH:-mmul,--small}
L2_TIMEOUT=${L2_TIMEOUT:-300}
R=$ROOTFS
PARENT=pci_$(echo $GPU_HOST | tr ':.' '__')
[ -f /l2/vmlinux ] && [ -f /l2/initrd.gz ] || fail "no /l2/vmlinux or /l2/initrd.gz in the initramfs"
vgpu_setup

LVPID=""; UDPID=""; U=""
# Stop what this test started: domains (libvirt stops their QEMU), libvirtd, udevd, vGPUs.
cleanup() {
  if [ -n "$LVPID" ] && kill -0 $LVPID 2>/dev/null; then
    for d in l2-a l2-b; do virsh destroy $d > /dev/null 2>&1 || true; done
    kill $LVPID; wait_gone $LVPID libvirtd || kill -9 $LVPID
  fi
  if [ -n "$UDPID" ] && kill -0 $UDPID 2>/dev/null; then
    kill $UDPID; wait_gone $UDPID systemd-udevd || kill -9 $UDPID
  fi
  for q in $(pidof qemu-system-x86_64); do echo "killing leftover QEMU $q"; kill -9 $q; done
  # A failure between the unbind and the rebind would leave GPU A without gpuvm for later tests.
  [ "$(driver_of $GPU_HOST)" = gpuvm ] || echo $GPU_HOST > /sys/bus/pci/drivers/gpuvm/bind
  [ -n "$U" ] && [ -e $M/$U ] && echo 1 > $M/$U/remove
  umount_rootfs
  return 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# wait_gone PID NAME: up to 15 s for PID to exit.
wait_gone() {
  for _i in $(seq 150); do kill -0 $1 2>/dev/null || return 0; sleep 0.1; done
  echo "$2 ($1) still running 15 s after SIGTERM"; return 1
}
now() { cut -d' ' -f1 /proc/uptime; }
since() { echo "$(now) $1" | awk '{printf "%.1f", $1 - $2}'; }
virsh() { chroot $R /usr/bin/virsh -c qemu:///system "$@"; }
# listed DEV FLAGS...: `virsh nodedev-list --cap mdev FLAGS` lists DEV within 10 s (libvirt
# learns of a new mdev from udevd's event, after mdevctl returned).
listed() {
  _d=$1; shift
  for _i in $(seq 50); do virsh nodedev-list --cap mdev "$@" | grep -x "$_d" > /dev/null && return 0; sleep 0.2; done
  echo "nodedev-list --cap mdev $*:"; virsh nodedev-list --cap mdev "$@"
  echo "nodedev-list --cap mdev --all:"; virsh nodedev-list --cap mdev --all
  echo "udevd's log:"; tail -20 /tmp/udevd.log
  return 1
}
# A field of type $2 in a PCI parent's node-device XML $1 (libvirt quotes attributes with ').
type_field() { sed -n "/<type id='$2'>/,/<\/type>/p" $1 | sed -n "s|.*<$3>\(.*\)</$3>.*|\1|p"; }
# libvirt's availableInstances for each gpuvm type equal sysfs's, now; prints them.
check_avail() {
  virsh nodedev-dumpxml $PARENT > /tmp/parent.xml || fail "virsh nodedev-dumpxml $PARENT failed ($1)"
  _all=""
  for _n in 1 2 4 8; do
    _lv=$(type_field /tmp/parent.xml gpuvm-$_n availableInstances)
    _sys=$(cat $T/gpuvm-$_n/available_instances)
    [ "$_lv" = "$_sys" ] || { cat /tmp/parent.xml; fail "$1: libvirt says gpuvm-$_n availableInstances '$_lv', sysfs $_sys"; }
    _all="$_all $_lv"
  done
  echo "availableInstances gpuvm-1/2/4/8 ($1):$_all"
}

mount_rootfs
[ -x $R/usr/sbin/libvirtd ] || skip "no libvirtd on the rootfs disk (tools/qemu.sh installs it)"
# Writable state for the daemons over the read-only disk; the packages' /etc/libvirt and
# /etc/mdevctl.d copied to tmpfs (libvirt keeps domain definitions there, mdevctl its own).
for d in run var/lib/libvirt var/cache/libvirt var/log/libvirt; do
  mount -t tmpfs -o size=16m none $R/$d || fail "cannot mount a tmpfs on $R/$d"
done
for d in etc/libvirt etc/mdevctl.d; do
  mkdir -p /tmp/w/$d && cp -a $R/$d/. /tmp/w/$d/ && mount --bind /tmp/w/$d $R/$d || fail "cannot bind a tmpfs copy over $R/$d"
done
# Root with no systemd: no polkit (root clients only), no cgroups, namespaces, seccomp or
# security driver (the host VM's kernel has none of them), QEMU as root, its output to a file
# (no virtlogd).
cat > $R/etc/libvirt/libvirtd.conf <<'EOF'
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
cat > $R/etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
seccomp_sandbox = 0
stdio_handler = "file"
EOF
mkdir $R/tmp/l2 && cp /l2/vmlinux /l2/initrd.gz $R/tmp/l2/
# libvirt hands mdevctl its JSON as --jsonfile /dev/stdin: the links udev would make on a host.
for f in 0:stdin 1:stdout 2:stderr; do
  [ -e $R/dev/${f#*:} ] || ln -s /proc/self/fd/${f%%:*} $R/dev/${f#*:}
done
[ -e $R/dev/fd ] || ln -s /proc/self/fd $R/dev/fd
# systemd's udevd and udevadm do nothing in a chroot unless told to; their log to stderr.
SD="env SYSTEMD_IGNORE_CHROOT=1 SYSTEMD_LOG_TARGET=console"

echo "--- udevd, libvirtd"
chroot $R $SD /usr/lib/systemd/systemd-udevd > /tmp/udevd.log 2>&1 &
UDPID=$!
for i in $(seq 100); do [ -e $R/run/udev/control ] && break; sleep 0.1; done
[ -e $R/run/udev/control ] || { cat /tmp/udevd.log; fail "systemd-udevd made no /run/udev/control within 10 s"; }
chroot $R $SD udevadm trigger --type=subsystems --action=add
chroot $R $SD udevadm trigger --type=devices --action=add
chroot $R $SD udevadm settle --timeout=60 || fail "udevadm settle: events still queued after 60 s"
t0=$(now)
chroot $R $SD PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/sbin/libvirtd > /tmp/libvirtd.out 2>&1 &
LVPID=$!
for i in $(seq 300); do [ -S $R/run/libvirt/libvirt-sock ] && break; kill -0 $LVPID 2>/dev/null || break; sleep 0.1; done
[ -S $R/run/libvirt/libvirt-sock ] || { cat /tmp/libvirtd.out; fail "libvirtd made no /run/libvirt/libvirt-sock within 30 s"; }
# The first call makes the QEMU driver probe QEMU's capabilities.
virsh version || { cat /tmp/libvirtd.out $R/var/log/libvirt/libvirtd.log; fail "virsh version failed"; }
echo "libvirtd up and QEMU probed in $(since $t0)s"

echo "--- nodedev-list --cap mdev_types, nodedev-dumpxml"
virsh nodedev-list --cap mdev_types > /tmp/parents || fail "virsh nodedev-list --cap mdev_types failed"
cat /tmp/parents
[ "$(grep -c . /tmp/parents)" = 1 ] && grep -qx "$PARENT" /tmp/parents ||
  fail "nodedev-list --cap mdev_types should list $PARENT alone (GPU B is vfio-pci's)"
virsh nodedev-dumpxml $PARENT | tee /tmp/parent.xml || fail "virsh nodedev-dumpxml $PARENT failed"
grep -q "<driver>" /tmp/parent.xml && grep -q "<name>gpuvm</name>" /tmp/parent.xml || fail "$PARENT's XML does not name driver gpuvm"
for n in 1 2 4 8; do
  [ "$(type_field /tmp/parent.xml gpuvm-$n name)" = "$(cat $T/gpuvm-$n/name)" ] || fail "gpuvm-$n: libvirt's name is not sysfs's"
  [ "$(type_field /tmp/parent.xml gpuvm-$n deviceAPI)" = vfio-pci ] || fail "gpuvm-$n: deviceAPI is not vfio-pci"
done
check_avail "empty GPU"
before=$(cat $T/gpuvm-2/available_instances)

echo "--- nodedev-define, nodedev-start"
U=$(cat /proc/sys/kernel/random/uuid)
cat > /tmp/w/mdev.xml <<EOF
<device>
  <parent>$PARENT</parent>
  <capability type='mdev'>
    <type id='gpuvm-2'/>
    <uuid>$U</uuid>
    <attr name='gpuvm/weight' value='40'/>
  </capability>
</device>
EOF
cp /tmp/w/mdev.xml $R/tmp/mdev.xml
virsh nodedev-define /tmp/mdev.xml | tee /tmp/out || fail "virsh nodedev-define failed"
DEV=$(sed -n "s/^Node device '\([^']*\)' defined from.*/\1/p" /tmp/out)
[ -n "$DEV" ] || fail "nodedev-define named no device"
[ ! -e $M/$U ] || fail "nodedev-define started the vGPU"
[ -f /tmp/w/etc/mdevctl.d/$GPU_HOST/$U ] || fail "nodedev-define left no mdevctl definition /etc/mdevctl.d/$GPU_HOST/$U"
listed $DEV --inactive || fail "nodedev-list --inactive does not list $DEV"
virsh nodedev-start $DEV || fail "virsh nodedev-start $DEV failed"
[ -d $M/$U ] || fail "no $M/$U after nodedev-start"
[ "$(cat $M/$U/gpuvm/type) $(cat $M/$U/gpuvm/weight)" = "gpuvm-2 40" ] ||
  fail "vGPU $U: type $(cat $M/$U/gpuvm/type) weight $(cat $M/$U/gpuvm/weight), want gpuvm-2 40"
listed $DEV || fail "nodedev-list --cap mdev does not list $DEV active"
virsh nodedev-dumpxml $DEV | tee /tmp/dev.xml || fail "virsh nodedev-dumpxml $DEV failed"
grep -q "<uuid>$U</uuid>" /tmp/dev.xml && grep -q "<type id='gpuvm-2'/>" /tmp/dev.xml ||
  fail "$DEV's XML does not show uuid $U and type gpuvm-2"
grep -q "<iommuGroup number='$(basename "$(readlink $M/$U/iommu_group)")'/>" /tmp/dev.xml ||
  fail "$DEV's XML does not show the vGPU's IOMMU group"
check_avail "a gpuvm-2 started"
[ "$(cat $T/gpuvm-2/available_instances)" = $((before - 1)) ] || fail "gpuvm-2 available_instances did not drop by one"
check_parent "" "nodedev-start"

echo "--- a gpuvm-1 no longer fits: nodedev-create is refused"
[ "$(cat $T/gpuvm-1/available_instances)" = 0 ] || fail "gpuvm-1 still available next to a gpuvm-2"
V=$(cat /proc/sys/kernel/random/uuid)
printf "<device><parent>%s</parent><capability type='mdev'><type id='gpuvm-1'/><uuid>%s</uuid></capability></device>\n" \
  $PARENT $V > $R/tmp/full.xml
if virsh nodedev-create /tmp/full.xml > /tmp/out 2>&1; then
  cat /tmp/out; [ -e $M/$V ] && echo 1 > $M/$V/remove; fail "nodedev-create of a gpuvm-1 next to a gpuvm-2 succeeded"
fi
cat /tmp/out
[ ! -e $M/$V ] || fail "the refused nodedev-create left vGPU $V"
check_avail "a refused nodedev-create"

echo "--- domain A on the vGPU, domain B on the same vGPU refused"
domain() {  # NAME: a TCG domain booting L2 with the vGPU at 00:04.0, console to a file
  cat <<EOF
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/tmp/l2/vmlinux</kernel>
    <initrd>/tmp/l2/initrd.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4 vfio.enable_unsafe_noiommu_mode=1 gpuvm.bench=$BENCH gpuvm.hold=1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='/var/log/libvirt/$1-console.log'/>
      <target port='0'/>
    </serial>
    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
      <source>
        <address uuid='$U'/>
      </source>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </hostdev>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}
domain l2-a > $R/tmp/l2-a.xml
domain l2-b > $R/tmp/l2-b.xml
virsh define /tmp/l2-a.xml || fail "virsh define l2-a failed"
virsh define /tmp/l2-b.xml || fail "virsh define l2-b failed"
t0=$(now)
virsh start l2-a || { cat $R/var/log/libvirt/qemu/l2-a.log; fail "virsh start l2-a failed"; }
echo "l2-a started in $(since $t0)s"
[ "$(virsh domstate l2-a)" = running ] || fail "l2-a is $(virsh domstate l2-a), not running"
grep -q "sysfsdev.*/sys/bus/mdev/devices/$U" $R/var/log/libvirt/qemu/l2-a.log ||
  { cat $R/var/log/libvirt/qemu/l2-a.log; fail "l2-a's QEMU command line does not assign $M/$U"; }
if virsh start l2-b > /tmp/out 2>&1; then cat /tmp/out; fail "domain l2-b started on the vGPU l2-a uses"; fi
cat /tmp/out
grep -q "$U.*in use by .*l2-a" /tmp/out || fail "l2-b's refusal does not say the vGPU is in use by l2-a"
[ "$(virsh domstate l2-b)" = "shut off" ] || fail "l2-b is $(virsh domstate l2-b) after its refused start"
[ "$(virsh domstate l2-a)" = running ] || fail "l2-a is $(virsh domstate l2-a) after l2-b's refused start"

echo "--- L2's workload in domain A (console log), then virsh destroy"
CON=$R/var/log/libvirt/l2-a-console.log
deadline=$(echo "$t0 $L2_TIMEOUT" | awk '{print $1 + $2}')
while :; do
  grep -q 'gpuvm-l2: \(PASS\|FAIL\)' $CON 2>/dev/null && break
  [ "$(virsh domstate l2-a)" = running ] || break
  awk -v n=$(now) -v d=$deadline 'BEGIN { exit !(n >= d) }' && break
  sleep 2
done
sed 's/^/L2 | /' $CON
echo "L2 verdict after $(since $t0)s"
printf 'vGPU counters: '
for f in mmio_traps mmio_forwarded mmio_denied submissions shadow_syncs pte_reads pte_writes pte_refused faults; do
  printf '%s=%s ' $f "$(cat $M/$U/gpuvm/$f)"
done
echo
grep -q 'gpuvm-l2: PASS' $CON || fail "no PASS from L2 within ${L2_TIMEOUT}s (domain l2-a: $(virsh domstate l2-a)): $(grep 'gpuvm-l2: FAIL' $CON)"
grep 'gpuvm-l2: record: ' $CON | grep '"ok":true' > /dev/null || fail "no \"ok\":true record from L2"
[ "$(cat $M/$U/gpuvm/mmio_traps)" -gt 0 ] || fail "the vGPU trapped no MMIO: L2's work did not go through gpuvm"
[ "$(cat $M/$U/gpuvm/submissions)" -gt 0 ] || fail "the vGPU saw no submissions"
[ "$(virsh domstate l2-a)" = running ] || fail "l2-a is $(virsh domstate l2-a) after its verdict (gpuvm.hold=1 keeps it running)"
virsh destroy l2-a || fail "virsh destroy l2-a failed"
[ "$(virsh domstate l2-a)" = "shut off" ] || fail "l2-a is $(virsh domstate l2-a) after virsh destroy"
[ -z "$(pidof qemu-system-x86_64)" ] || fail "a QEMU is still running after virsh destroy: $(pidof qemu-system-x86_64)"
virsh undefine l2-a || fail "virsh undefine l2-a failed"
virsh undefine l2-b || fail "virsh undefine l2-b failed"
[ -z "$(virsh list --all --name | grep .)" ] || fail "domains left after undefine: $(virsh list --all --name)"

echo "--- nodedev-destroy, nodedev-undefine"
virsh nodedev-destroy $DEV || fail "virsh nodedev-destroy $DEV failed"
[ ! -e $M/$U ] || fail "$M/$U still there after nodedev-destroy"
check_avail "nodedev-destroy"
[ "$(cat $T/gpuvm-2/available_instances)" = $before ] || fail "gpuvm-2 available_instances not back to $before"
listed $DEV --inactive || fail "the definition of $DEV did not survive nodedev-destroy"

echo "--- nodedev-autostart: udevd's mdevctl rule starts it when the GPU comes back"
virsh nodedev-autostart $DEV || fail "virsh nodedev-autostart $DEV failed"
grep -q '"start": *"auto"' /tmp/w/etc/mdevctl.d/$GPU_HOST/$U || { cat /tmp/w/etc/mdevctl.d/$GPU_HOST/$U; fail "nodedev-autostart did not make the definition auto"; }
# udevd's debug log names each command a rule runs: it shows who started the vGPU.
chroot $R $SD udevadm control --log-level=debug || fail "udevadm control --log-level=debug failed"
echo $GPU_HOST > /sys/bus/pci/drivers/gpuvm/unbind || fail "unbinding $GPU_HOST failed"
echo $GPU_HOST > /sys/bus/pci/drivers/gpuvm/bind || fail "rebinding $GPU_HOST failed"
for i in $(seq 300); do [ -e $M/$U ] && break; sleep 0.1; done
[ -e $M/$U ] || { cat /tmp/udevd.log; fail "udev did not start the autostart vGPU within 30 s of the rebind"; }
chroot $R $SD udevadm settle --timeout=30 || fail "udevadm settle: events still queued after 30 s"
chroot $R $SD udevadm control --log-level=info || fail "udevadm control --log-level=info failed"
grep "start-parent-mdevs $GPU_HOST" /tmp/udevd.log | cut -c1-200 | sort -u | tee /tmp/ran
grep -q "/usr/sbin/mdevctl start-parent-mdevs $GPU_HOST" /tmp/ran ||
  fail "udevd ran no 'mdevctl start-parent-mdevs $GPU_HOST' for the rebound GPU"
[ "$(cat $M/$U/gpuvm/type) $(cat $M/$U/gpuvm/weight)" = "gpuvm-2 40" ] ||
  fail "autostarted vGPU: type $(cat $M/$U/gpuvm/type) weight $(cat $M/$U/gpuvm/weight)"
listed $DEV || fail "libvirt does not list the autostarted $DEV as active"
check_avail "the autostart"
virsh nodedev-destroy $DEV || fail "virsh nodedev-destroy $DEV failed"
[ ! -e $M/$U ] || fail "$M/$U still there after nodedev-destroy"
virsh nodedev-undefine $DEV || fail "virsh nodedev-undefine $DEV failed"
[ ! -e /tmp/w/etc/mdevctl.d/$GPU_HOST/$U ] || fail "nodedev-undefine left the mdevctl definition"
[ -z "$(virsh nodedev-list --cap mdev --all | grep .)" ] || fail "mdevs left in libvirt: $(virsh nodedev-list --cap mdev --all)"
U=""
check_avail "nodedev-undefine"
vgpu_check_empty
echo "libvirt-mdev passed"
