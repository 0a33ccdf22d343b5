#!/usr/bin/env bash
# `make demo`: boot the host VM with two model GPUs and show what gpuvm does with them.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/run.sh" --name demo demo > /dev/null; rc=$?
echo "---- inside the VM ----"
grep -a '^  | ' "$OUT_DIR/demo/console.log" | sed 's/^  | //'
echo "---- model GPU counters (host side) ----"
for f in "$OUT_DIR"/demo/gpu*.stats.json; do [ -f "$f" ] && echo "$(basename "$f"): $(head -c 400 "$f")"; done
echo "console log: $OUT_DIR/demo/console.log"
exit $rc
