#!/usr/bin/env bash
# Generate the module's vfio/mdev bindings with the same bindgen and clang flags the kernel used
# for its own rust/bindings (recorded by kbuild in .bindings_generated.rs.cmd), so struct layouts
# match this kernel's configuration. Everything outside vfio/mdev is imported from
# kernel::bindings (see rust/bindings.rs), so pointers interoperate without casts.
# Usage: gen_bindings.sh KBUILD OUT.rs
set -euo pipefail
KBUILD=${1:?kernel build dir}; OUT=${2:?output file}
HERE=$(cd "$(dirname "$0")" && pwd)
cmdfile=$KBUILD/rust/bindings/.bindings_generated.rs.cmd
[ -f "$cmdfile" ] || { echo "gen_bindings: $cmdfile missing (kernel built without Rust?)" >&2; exit 1; }
cmd=$(head -1 "$cmdfile" | sed 's/^savedcmd_[^ ]* := //; s/\$(pound)/#/g')
bindgen_part=${cmd%% -- *}
clang_part=${cmd#* -- }; clang_part=${clang_part%%;*}

eval "set -- $bindgen_part"
bindgen=$1; shift 2          # the kernel's bindgen and its input header
bindgen_flags=()
while [ $# -gt 0 ]; do
  if [ "$1" = -o ]; then shift 2; else bindgen_flags+=("$1"); shift; fi
done
eval "set -- $clang_part"
clang_flags=()
for f in "$@"; do
  case "$f" in
    -Wp,-MMD,*) ;;   # would write a dependency file into the kernel tree
    -DKBUILD_MODFILE=*|-DKBUILD_BASENAME=*|-DKBUILD_MODNAME=*|-D__KBUILD_MODNAME=*) ;;
    -I./*) clang_flags+=("-I$KBUILD/${f#-I./}") ;;
    -Irust) clang_flags+=("-I$KBUILD/rust") ;;
    *) clang_flags+=("$f") ;;
  esac
done
clang_flags+=(-DKBUILD_MODNAME='"gpuvm"' -D__KBUILD_MODNAME=gpuvm -I"$HERE")
mkdir -p "$(dirname "$OUT")"
"$bindgen" "$HERE/bindings_input.h" "${bindgen_flags[@]}" \
  --allowlist-type 'vfio_.*|mdev_.*|kvm|iommufd_access|iommufd_device|iommufd_ctx|eventfd_ctx|virqfd' \
  --allowlist-function '_?vfio_.*|mdev_.*|gpuvm_helper_.*' \
  --allowlist-var 'VFIO_.*|RUST_CONST_HELPER_.*' \
  --no-recursive-allowlist \
  -o "$OUT.tmp" -- "${clang_flags[@]}"
# ioctl numbers are function-like macros: bindings_input.h exposes them as RUST_CONST_HELPER_X.
sed -Ei 's/pub const RUST_CONST_HELPER_([A-Za-z0-9_]*)/pub const \1/g' "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
