#!/usr/bin/env bash
# `make bench`: one VM boot running selftests/vm/tests/bench.sh, then a markdown report of
# per-phase times, vGPU/native ratios measured in that same run, and the counts behind them
# (guest traps, forwarded MMIO, shadow work) in build/bench/results.md.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/run.sh" --name bench bench || { echo "bench run failed (console: $OUT_DIR/bench/console.log)"; exit 1; }
mkdir -p "$OUT_DIR/../bench"
python3 - "$OUT_DIR/bench/console.log" "$OUT_DIR/../bench/results.md" <<'PY'
import json, re, sys
log, out = sys.argv[1], sys.argv[2]
runs, counters = {}, {}
for line in open(log, errors="replace"):
    line = line.strip()
    if line.startswith("| "):
        line = line[2:]
    m = re.match(r"BENCH (\S+) (\{.*\})$", line)
    if m:
        r = json.loads(m.group(2)); runs[(m.group(1), r["workload"])] = r
    m = re.match(r"COUNTERS (\S+) (\S+) (.*)$", line)
    if m:
        counters[(m.group(1), m.group(2))] = dict(kv.split("=") for kv in m.group(3).split())
phases = ["Init", "MemAlloc", "HtoD", "Launch", "DtoH", "Close"]
workloads = sorted({w for _, w in runs})
L = ["# gpuvm benchmark: vGPU vs native on identical model GPUs, one run", "",
     "Times in ms (guest-measured). Ratio = vGPU total / native total.", ""]
L.append("| workload | config | " + " | ".join(phases) + " | total | ratio |")
L.append("|---" * (len(phases) + 4) + "|")
for w in workloads:
    nat = runs.get(("native", w))
    for cfg in ["native", "vgpu-naive", "vgpu-lazy"]:
        r = runs.get((cfg, w))
        if not r: continue
        ph = r["phases_us"]; tot = r["total_us"]
        ratio = f"{tot / nat['total_us']:.2f}" if nat else "-"
        L.append(f"| {w} | {cfg} | " + " | ".join(f"{ph.get(p, 0) / 1000:.1f}" for p in phases) + f" | {tot / 1000:.1f} | {ratio} |")
L += ["", "Counts (independent of machine noise): driver-side BAR accesses, and on the vGPU the",
      "module's traps, MMIO it forwarded to the GPU, denied accesses, doorbells, shadow syncs,",
      "guest page-table entries read, shadow entries written.", ""]
keys = ["mmio_traps", "mmio_forwarded", "mmio_denied", "submissions", "shadow_syncs", "pte_reads", "pte_writes", "pte_refused", "faults"]
L.append("| workload | config | bar0 rd/wr | bar1 rd/wr | bar3 rd/wr | " + " | ".join(keys) + " |")
L.append("|---" * (len(keys) + 5) + "|")
for w in workloads:
    for cfg in ["native", "vgpu-naive", "vgpu-lazy"]:
        r = runs.get((cfg, w))
        if not r: continue
        b = r["bar_access"]; c = counters.get((cfg, w), {})
        L.append(f"| {w} | {cfg} | " + " | ".join(f"{b[x]['rd']}/{b[x]['wr']}" for x in ["bar0", "bar1", "bar3"]) + " | " + " | ".join(c.get(k, "-") for k in keys) + " |")
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
