#!/usr/bin/env bash
# The trixie QEMU rootfs (tools/qemu.sh) as an ext4 image for the host VM's virtio-blk disk:
# the nested-vgpu test mounts it read-only and runs its QEMU (chroot) to start a nested guest.
# Usage: rootfs-image.sh QEMU_WRAPPER (the path qemu.sh printed). Prints the image path.
# The image sits next to the rootfs in the cache and is remade when the rootfs is newer.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
root=$(dirname "$1")
[ -f "$root/.complete" ] || die "no complete QEMU rootfs at $root"
img=$root.ext4
if [ ! -f "$img" ] || [ "$root/.complete" -nt "$img" ]; then
  step "making ext4 image of $root"
  t0=$(date +%s)
  # Room for the files plus ext4's own metadata; no journal (mounted read-only only).
  mib=$(( $(du -sm "$root" | cut -f1) * 5 / 4 + 64 ))
  rm -f "$img" "$img.tmp"
  mkfs.ext4 -q -F -O ^has_journal -L gpuvm-qemu -d "$root" "$img.tmp" "${mib}M" > /dev/null ||
    die "mkfs.ext4 -d $root failed"
  mv "$img.tmp" "$img"
  done_step "$t0"
fi
echo "$img"
