#!/usr/bin/env bash
# Build (or reuse) a Debian trixie root filesystem holding qemu-system-x86 from trixie-backports:
# QEMU >= 10.1 is the first with the vfio-user client (-device vfio-user-pci), and its .deb
# does not install on bookworm. The host VM mounts it as its disk and chroots into it for the
# userspace tools the tests run: QEMU (nested-vgpu), mdevctl (mdevctl) and libvirt with udev
# (libvirt-mdev: libvirtd with its QEMU and node-device drivers, virsh, systemd-udevd).
# Prints the path of a wrapper script that runs its QEMU.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# The packages: from trixie-backports, and from trixie itself. libvirt comes from backports
# too, the release made for this QEMU (trixie's own 11.3 predates QEMU 11). Only what libvirtd
# needs to run QEMU domains and list/create mdevs: the daemon, its QEMU and nodedev drivers,
# virsh; udev because the nodedev driver learns of new devices from udevd's events.
BACKPORTS_PKGS=(qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-nodedev libvirt-clients)
TRIXIE_PKGS=(mdevctl udev)
# The cache key is this script's hash, so a changed package list (or any other change to how
# the rootfs is made) builds a new rootfs; rootfs-image.sh then makes a new image from it.
key=$(sha256sum "$0" | cut -c1-16)
root=$GPUVM_CACHE/qemu-rootfs-$key
if [ ! -f "$root/.complete" ]; then
  step "building trixie rootfs with ${BACKPORTS_PKGS[*]} from trixie-backports and ${TRIXIE_PKGS[*]}"
  t0=$(date +%s)
  rm -rf "$root"
  debootstrap --variant=minbase trixie "$root" http://deb.debian.org/debian > "$root.log" 2>&1 ||
    { tail -20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<'EOS'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
  rm -f "$root/etc/apt/sources.list"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  {
    chroot "$root" apt-get update -q
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -t trixie-backports "${BACKPORTS_PKGS[@]}"
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${TRIXIE_PKGS[@]}"
    chroot "$root" apt-get clean
  } >> "$root.log" 2>&1 || { tail -20 "$root.log" >&2; die "package install failed (log: $root.log)"; }
  rm -rf "$root/var/lib/apt/lists/"*
  # mdevctl's udev rule starts a parent's --auto vGPUs when the kernel announces the parent.
  # Trixie's mdevctl 1.4.0-2 rule runs /usr/sbin/mdevctl but the package installs
  # /usr/bin/mdevctl, so nothing would start: give the rule the path it names (either way round).
  for bin in $(cat "$root"/usr/lib/udev/rules.d/*mdevctl*.rules | grep -o '/usr/s*bin/mdevctl' | sort -u); do
    [ -e "$root$bin" ] && continue
    for have in /usr/bin/mdevctl /usr/sbin/mdevctl; do
      # Relative (../bin/mdevctl), so it resolves inside the rootfs as well as in a chroot.
      [ -e "$root$have" ] && { ln -s "../$(basename "$(dirname "$have")")/mdevctl" "$root$bin"; echo "mdevctl udev rule path: $bin -> $have" >> "$root.log"; break; }
    done
    [ -e "$root$bin" ] || die "mdevctl's udev rule runs $bin, which the rootfs does not have"
  done
  # Run it without chroot through trixie's own loader and libraries.
  cat > "$root/qemu-system-x86_64" <<EOS
#!/bin/sh
R=$root
export QEMU_MODULE_DIR=\$R/usr/lib/x86_64-linux-gnu/qemu
exec \$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path \$R/usr/lib/x86_64-linux-gnu \\
  \$R/usr/bin/qemu-system-x86_64 -L \$R/usr/share/qemu -L \$R/usr/share/seabios "\$@"
EOS
  chmod +x "$root/qemu-system-x86_64"
  "$root/qemu-system-x86_64" --version | head -1 >&2
  "$root/qemu-system-x86_64" -device help 2>/dev/null | grep -q vfio-user-pci || die "this QEMU has no vfio-user-pci"
  chroot "$root" env PATH=/usr/sbin:/usr/bin mdevctl --version >&2 || die "mdevctl does not run in the rootfs"
  chroot "$root" /usr/sbin/libvirtd --version >&2 || die "libvirtd does not run in the rootfs"
  chroot "$root" /usr/bin/virsh --version >&2 || die "virsh does not run in the rootfs"
  for drv in qemu nodedev; do
    [ -f "$root/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_$drv.so" ] ||
      die "no libvirt $drv driver in the rootfs"
  done
  [ -x "$root/usr/lib/systemd/systemd-udevd" ] || die "no systemd-udevd in the rootfs"
  touch "$root/.complete"
  done_step "$t0"
fi
echo "$root/qemu-system-x86_64"
