#!/usr/bin/env bash
# Idempotent dependency step run before every make target.
#  - Debian packages (bookworm + the project's pinned trixie-backports entry for linux-source-7.3)
#  - bindgen-cli 0.72.1 into the cache
# Everything big lives in $GPUVM_CACHE (default ~/.cache/gpuvm).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKGS=(rustc-web rust-web-src libclang-19-dev llvm-19 clang-19 flex bison bc libelf-dev libssl-dev cpio
      rsync busybox-static debootstrap xz-utils binutils kmod e2fsprogs python3 time gzip
      pkg-config python3-venv)

BACKPORTS=/etc/apt/sources.list.d/gpuvm-trixie-backports.sources
PIN=/etc/apt/preferences.d/gpuvm-trixie-backports

need_root() { [ "$(id -u)" = 0 ] || die "dependency install needs root (apt-get)"; }

write_backports_source() {
  # Only linux-source-7.3 comes from trixie-backports; pin everything else there below
  # bookworm so nothing on the host upgrades by accident.
  local want_src want_pin
  want_src=$'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  want_pin=$'Package: *\nPin: release n=trixie-backports\nPin-Priority: 50\n'
  if [ "$(cat "$BACKPORTS" 2>/dev/null)"$'\n' != "$want_src" ] || [ "$(cat "$PIN" 2>/dev/null)"$'\n' != "$want_pin" ]; then
    printf '%s' "$want_src" > "$BACKPORTS"
    printf '%s' "$want_pin" > "$PIN"
    rm -f "$GPUVM_CACHE/.apt-updated"
  fi
}

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
mkdir -p "$GPUVM_CACHE"
if [ ! -f "$BACKPORTS" ] || [ ${#missing[@]} -gt 0 ]; then
  need_root
  write_backports_source
fi
if [ ${#missing[@]} -gt 0 ] || [ ! -f "$GPUVM_CACHE/.apt-updated" ]; then
  step "apt: installing ${missing[*]:-(index only)}"
  t0=$(date +%s)
  apt-get update -q >/dev/null
  touch "$GPUVM_CACHE/.apt-updated"
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
  done_step "$t0"
fi

# bindgen: the kernel needs >= 0.71.1; pin the measured version.
if [ ! -x "$BINDGEN" ] || ! "$BINDGEN" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
  step "cargo install bindgen-cli $BINDGEN_VERSION"
  t0=$(date +%s)
  cargo install -q bindgen-cli --version "$BINDGEN_VERSION" --locked --root "$GPUVM_CACHE/tools"
  done_step "$t0"
fi
