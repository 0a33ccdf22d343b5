#!/usr/bin/env bash
# Build (or reuse) a kernel in the cache. Usage: kernel.sh host-vm|nested-guest
# Prints the build folder on stdout. Cache key: kernel package version + config fragment +
# compiler/bindgen versions; a missing or stale entry is rebuilt from nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
flavour=${1:-host-vm}
frag=$GPUVM_ROOT/tools/kconfig/$flavour.config
[ -f "$frag" ] || die "no config fragment $frag"

# --- source: linux-source-7.3 from trixie-backports, series pinned, point release floats
srcver=$(apt-cache policy "linux-source-$KSERIES" | awk '/Candidate:/ {print $2}')
[ -n "$srcver" ] && [ "$srcver" != "(none)" ] || die "linux-source-$KSERIES not found (did tools/deps.sh run?)"
srcdir=$GPUVM_CACHE/src/linux-source-$srcver
if [ ! -f "$srcdir/.complete" ]; then
  step "fetching linux-source-$KSERIES $srcver"
  t0=$(date +%s)
  rm -rf "$srcdir" "$srcdir.tmp"; mkdir -p "$srcdir.tmp"
  (cd "$srcdir.tmp" && apt-get download -q -o APT::Sandbox::User=root "linux-source-$KSERIES=$srcver" >/dev/null &&
   dpkg -x linux-source-*.deb pkg && tar -xf pkg/usr/src/linux-source-$KSERIES.tar.xz &&
   rm -rf pkg linux-source-*.deb)
  mv "$srcdir.tmp/linux-source-$KSERIES" "$srcdir"; rm -rf "$srcdir.tmp"
  touch "$srcdir/.complete"
  done_step "$t0"
fi

# --- key
toolver="$($KRUSTC --version) $("$BINDGEN" --version 2>&1) $(gcc --version | head -1)"
key=$( { echo "$srcver"; echo "$toolver"; cat "$frag"; } | sha256sum | cut -c1-16)
out=$GPUVM_CACHE/kbuild/$flavour-$KSERIES-$key
MK=(make -C "$srcdir" O="$out" LLVM= RUSTC="$KRUSTC" BINDGEN="$BINDGEN" LIBCLANG_PATH="$LIBCLANG_PATH")

if [ ! -f "$out/.complete" ]; then
  rm -rf "$out"; mkdir -p "$out"
  step "configuring $flavour kernel $srcver (key $key)"
  "${MK[@]}" tinyconfig >/dev/null
  args=()
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=y) n=${line%%=*}; args+=(--enable "${n#CONFIG_}") ;;
      CONFIG_*=m) n=${line%%=*}; args+=(--module "${n#CONFIG_}") ;;
      "# CONFIG_"*" is not set") n=${line#\# CONFIG_}; args+=(--disable "${n%% *}") ;;
    esac
  done < "$frag"
  "$srcdir/scripts/config" --file "$out/.config" "${args[@]}"
  "${MK[@]}" olddefconfig >/dev/null
  # Every requested option must have survived dependency resolution.
  bad=0
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=[ym]) grep -qx "$line" "$out/.config" || { echo "kconfig: $line did not stick" >&2; bad=1; } ;;
      "# CONFIG_"*" is not set") n=${line#\# }; n=${n%% *}; grep -q "^$n=" "$out/.config" && { echo "kconfig: $n still set" >&2; bad=1; } ;;
    esac
  done < "$frag"
  [ $bad = 0 ] || die "config fragment $flavour does not apply cleanly"
  if grep -q '^CONFIG_RUST=y' "$out/.config"; then "${MK[@]}" rustavailable >/dev/null; fi
  step "building $flavour kernel (make -j$(nproc); several minutes cold)"
  t0=$(date +%s)
  targets=(bzImage modules)
  [ "$flavour" = nested-guest ] && targets=(vmlinux)
  if ! "${MK[@]}" -j"$(nproc)" "${targets[@]}" > "$out/build.log" 2>&1; then
    tail -40 "$out/build.log" >&2; die "kernel build failed (log: $out/build.log)"
  fi
  if [ "$flavour" = host-vm ]; then
    "${MK[@]}" headers_install INSTALL_HDR_PATH="$out/usr" >/dev/null
  fi
  touch "$out/.complete"
  done_step "$t0"
  # Older configurations of this flavour are stale now: free their space.
  for old in "$GPUVM_CACHE/kbuild/$flavour-"*; do
    [ "$old" = "$out" ] || rm -rf "$old"
  done
fi
echo "$out"
