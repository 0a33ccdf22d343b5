# Shared settings for the build scripts. Sourced, not run.
GPUVM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GPUVM_CACHE=${GPUVM_CACHE:-$HOME/.cache/gpuvm}
BINDGEN_VERSION=0.72.1
BINDGEN=$GPUVM_CACHE/tools/bin/bindgen
KSERIES=7.3
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
# The kernel must be built with Debian's rustc-web (it ships the matching std sources);
# rustup's rustc comes first on PATH and has no rust-src.
KRUSTC=/usr/bin/rustc

step() { printf '[gpuvm] %s ...\n' "$*" >&2; }
done_step() { printf '[gpuvm]   done in %ss\n' "$(( $(date +%s) - $1 ))" >&2; }
die() { printf '[gpuvm] error: %s\n' "$*" >&2; exit 1; }
