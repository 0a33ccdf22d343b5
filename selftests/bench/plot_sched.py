#!/usr/bin/env python3
"""Plots for `make bench-sched`: each vGPU's share of GPU time over the window (sched-share.png)
and F and throughput against the number of vGPUs (sched-scaling.png), from sched.json and
sched-timeline.json in the given directory."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "build/bench"
res = json.load(open(f"{out}/sched.json"))
tl = json.load(open(f"{out}/sched-timeline.json"))

keys = [k for k in sorted(tl) if k.endswith("-4-equal") or k.endswith("-4-weighted")]
fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.5), squeeze=False)
for ax, k in zip(axes[0], keys):
    rows = tl[k]
    if not rows:
        continue
    n = len(rows[0][1])
    for i in range(n):
        ts, shares = [], []
        for t, g in rows:
            tot = sum(g)
            if tot > 0:
                ts.append(t)
                shares.append(g[i] / tot)
        ax.plot(ts, shares, label=f"vGPU {i}")
    ax.set_title(k)
    ax.set_xlabel("s into the window")
    ax.set_ylim(0, 1)
axes[0][0].set_ylabel("share of GPU time so far")
axes[0][-1].legend(fontsize="small")
fig.tight_layout()
fig.savefig(f"{out}/sched-share.png", dpi=100)

fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
for pol, by_n in sorted(res.items()):
    ns = sorted(int(n) for n in by_n)
    a1.plot(ns, [by_n[str(n)]["fairness"] for n in ns], marker="o", label=pol)
    a2.plot(ns, [by_n[str(n)]["throughput_ratio"] for n in ns], marker="o", label=pol)
a1.axhline(0.03, color="grey", linestyle=":", label="target 0.03")
a2.axhline(0.95, color="grey", linestyle=":", label="target 0.95")
a1.set_title("fairness F = (max-min)/avg")
a2.set_title("throughput vs back to back")
for a in (a1, a2):
    a.set_xlabel("vGPUs")
    a.set_xticks([1, 2, 4, 8])
    a.legend(fontsize="small")
fig.tight_layout()
fig.savefig(f"{out}/sched-scaling.png", dpi=100)
print(f"{out}/sched-share.png {out}/sched-scaling.png")
