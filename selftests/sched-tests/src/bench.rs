//! The scheduler's figures from the simulator, per policy and vGPU count: the table behind
//! `make bench-sched`.
//!
//! - **F**: (max − min) / mean of the GPU time of equal-weight vGPUs, all backlogged, whose
//!   kernels differ in length (0.05–0.2, 0.5–1, 1–2, 2–4 ms by slot), over 10 s.
//! - **share error**: the largest relative error of a vGPU's share of GPU time against its
//!   weight, weights 1:2:4:8 (repeating), same kernels, all backlogged, over 10 s.
//! - **mixed**: half the vGPUs backlogged with long kernels (2–5 ms), half closed-loop with
//!   100 µs kernels and 200 µs between completion and the next doorbell, over 10 s:
//!   GPU busy fraction, kernels completed per second, and the short-kernel vGPUs' longest
//!   and mean queue wait.
extern crate std;

use std::format;
use std::string::String;
use std::vec::Vec;

use crate::sched::knobs::{Knobs, PolicyKind};
use crate::sim::{fairness_ppm, share_error_ppm, Kernel, Load, Sim, VgpuSpec, MS, S, US};

/// Kernel lengths by slot: short to long, so equal turns would not mean equal time.
pub fn kernel_of(slot: usize) -> Kernel {
    match slot % 4 {
        0 => Kernel::Uniform(50 * US, 200 * US),
        1 => Kernel::Uniform(500 * US, MS),
        2 => Kernel::Uniform(MS, 2 * MS),
        _ => Kernel::Uniform(2 * MS, 4 * MS),
    }
}

/// Weights 1, 2, 4, 8, 1, 2, ...
pub fn weight_of(slot: usize) -> u32 {
    1 << (slot % 4)
}

/// GPU time of each vGPU after `secs` seconds of `specs`.
pub fn gpu_times(kind: PolicyKind, specs: &[VgpuSpec], secs: u64, seed: u64) -> Vec<u64> {
    let mut sim = Sim::new(kind, Knobs::default(), specs, seed);
    sim.run_until(secs * S);
    (0..specs.len()).map(|i| sim.gpu_ns(i)).collect()
}

/// F in ppm for `n` equal-weight backlogged vGPUs.
pub fn fairness(kind: PolicyKind, n: usize, secs: u64, seed: u64) -> u64 {
    let specs: Vec<_> = (0..n).map(|i| VgpuSpec::new(10, kernel_of(i), Load::Backlogged { depth: 4 })).collect();
    fairness_ppm(&gpu_times(kind, &specs, secs, seed))
}

/// Share error in ppm for `n` backlogged vGPUs weighted 1:2:4:8.
pub fn share_error(kind: PolicyKind, n: usize, secs: u64, seed: u64) -> u64 {
    let specs: Vec<_> =
        (0..n).map(|i| VgpuSpec::new(weight_of(i), kernel_of(i), Load::Backlogged { depth: 4 })).collect();
    let weights: Vec<_> = specs.iter().map(|s| s.weight).collect();
    share_error_ppm(&gpu_times(kind, &specs, secs, seed), &weights)
}

/// Results of the mixed workload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mixed {
    /// GPU busy time over elapsed time, ppm.
    pub busy_ppm: u64,
    /// Kernels completed per second (all vGPUs).
    pub kernels_per_s: u64,
    /// Kernels per second of the short-kernel vGPUs.
    pub short_per_s: u64,
    /// Longest and mean queue wait of a short-kernel submission.
    pub short_max_wait: u64,
    pub short_mean_wait: u64,
}

/// The mixed workload: even slots backlogged long kernels, odd slots closed-loop short ones.
pub fn mixed_specs(n: usize) -> Vec<VgpuSpec> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                VgpuSpec::new(10, Kernel::Uniform(2 * MS, 5 * MS), Load::Backlogged { depth: 4 })
            } else {
                VgpuSpec::new(10, Kernel::Fixed(100 * US), Load::ClosedLoop { think: 200 * US })
            }
        })
        .collect()
}

pub fn mixed(kind: PolicyKind, n: usize, secs: u64, seed: u64) -> Mixed {
    let specs = mixed_specs(n);
    let mut sim = Sim::new(kind, Knobs::default(), &specs, seed);
    sim.run_until(secs * S);
    let mut m = Mixed { busy_ppm: sim.trace.busy_ns * 1_000_000 / sim.now, ..Mixed::default() };
    m.kernels_per_s = sim.trace.completions.iter().sum::<u64>() / secs;
    let (mut waited, mut dispatched) = (0, 0);
    for i in (1..n).step_by(2) {
        let st = sim.sched.stats(sim.id(i)).unwrap_or_default();
        m.short_per_s += st.completed / secs;
        m.short_max_wait = m.short_max_wait.max(st.max_wait_ns);
        waited += st.wait_time_ns;
        dispatched += st.dispatched;
    }
    m.short_mean_wait = waited.checked_div(dispatched).unwrap_or(0);
    m
}

fn ppm_pct(ppm: u64) -> String {
    format!("{}.{:02}%", ppm / 10_000, ppm % 10_000 / 100)
}

fn ms(ns: u64) -> String {
    format!("{}.{:02}", ns / MS, ns % MS / 10_000)
}

/// The table, as Markdown.
pub fn table(secs: u64, seed: u64) -> String {
    let mut out = String::from(
        "| policy | vGPUs | F (equal weights) | share error (1:2:4:8) | mixed: GPU busy | mixed: kernels/s | mixed: short kernels/s | mixed: short wait max / mean (ms) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for kind in PolicyKind::ALL {
        for n in [1, 2, 4, 8] {
            let f = fairness(kind, n, secs, seed);
            let e = share_error(kind, n, secs, seed);
            let m = mixed(kind, n, secs, seed);
            let short = if n > 1 {
                format!("{} | {} / {}", m.short_per_s, ms(m.short_max_wait), ms(m.short_mean_wait))
            } else {
                String::from("- | -")
            };
            out += &format!(
                "| {} | {} | {:.4} | {} | {} | {} | {} |\n",
                kind.name(),
                n,
                f as f64 / 1e6,
                ppm_pct(e),
                ppm_pct(m.busy_ppm),
                m.kernels_per_s,
                short
            );
        }
    }
    out
}
