#!/usr/bin/env bash
# Build (or reuse) a Debian trixie root filesystem holding qemu-system-x86 from trixie-backports:
# QEMU >= 10.1 is the first with the vfio-user client (-device vfio-user-pci), and its .deb
# does not install on bookworm. The host VM mounts it as its disk and chroots into it for the
# userspace tools the tests run: QEMU (nested-vgpu) and mdevctl (mdevctl).
# Prints the path of a wrapper script that runs its QEMU.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# The packages: from trixie-backports, and from trixie itself.
BACKPORTS_PKGS=(qemu-system-x86)
TRIXIE_PKGS=(mdevctl)
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
  touch "$root/.complete"
  done_step "$t0"
fi
echo "$root/qemu-system-x86_64"
