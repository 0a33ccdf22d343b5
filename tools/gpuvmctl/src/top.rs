//! `gpuvmctl top`: per-vGPU rates from the difference of two counter samples.
//!
//! Three shares per vGPU: the one the scheduler is asked for (its weight over the weights on
//! its GPU), its part of the GPU's submissions in the interval, and its part of the GPU time
//! the module charged in the interval (`gpu_time_ns`; "-" with a module that does not count
//! it, or when no vGPU got GPU time).

use crate::error::Result;
use crate::sysfs::{Gpu, Sysfs};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

pub struct Sample {
    pub at: Instant,
    pub gpus: Vec<Gpu>,
}

impl Sample {
    pub fn take(sysfs: &Sysfs) -> Result<Self> {
        Ok(Self { at: Instant::now(), gpus: sysfs.gpus()? })
    }
}

/// One vGPU's line.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub uuid: String,
    pub mdev_type: String,
    pub vram_mib: Option<u64>,
    pub weight: Option<u64>,
    /// weight / sum of the weights of the vGPUs on its GPU, in percent.
    pub weight_share: Option<f64>,
    /// Its share of its GPU's submissions in the interval, in percent (None: no submissions).
    pub subm_share: Option<f64>,
    /// Its share of the GPU time charged on its GPU in the interval, in percent.
    pub gpu_share: Option<f64>,
    pub subm_per_s: f64,
    pub traps_per_s: f64,
    pub denied_per_s: f64,
    pub syncs_per_s: f64,
    pub faults: u64,
    pub faults_new: u64,
}

pub struct GpuRows {
    pub header: String,
    pub rows: Vec<Row>,
}

/// The growth of counter `name` of vGPU `uuid` from `prev` to `cur`. A vGPU that is new (or
/// was removed and made again under the same UUID, so its counters restarted) counts from 0.
fn delta(prev: Option<&BTreeMap<String, u64>>, cur: &BTreeMap<String, u64>, name: &str) -> u64 {
    let c = cur.get(name).copied().unwrap_or(0);
    let p = prev.and_then(|p| p.get(name).copied()).unwrap_or(0);
    if c >= p {
        c - p
    } else {
        c
    }
}

pub fn rows(prev: &Sample, cur: &Sample) -> Vec<GpuRows> {
    let dt = cur.at.duration_since(prev.at).as_secs_f64().max(1e-6);
    let before: BTreeMap<&str, BTreeMap<String, u64>> =
        prev.gpus.iter().flat_map(|g| g.vgpus.iter()).map(|v| (v.uuid.as_str(), v.counters())).collect();
    // Per-GPU counters shown as rates in the GPU's line, when the module has them.
    let gpu_before: BTreeMap<(&str, &str), u64> = prev
        .gpus
        .iter()
        .flat_map(|g| crate::sysfs::GPU_COUNTERS.iter().filter_map(move |&n| g.num(n).map(|v| ((g.pci.as_str(), n), v))))
        .collect();
    cur.gpus
        .iter()
        .map(|g| {
            let weights: u64 = g.vgpus.iter().filter_map(|v| v.num("weight")).sum();
            let subs: Vec<u64> =
                g.vgpus.iter().map(|v| delta(before.get(v.uuid.as_str()), &v.counters(), "submissions")).collect();
            let all_subs: u64 = subs.iter().sum();
            let gpu: Vec<Option<u64>> = g
                .vgpus
                .iter()
                .map(|v| v.num("gpu_time_ns").map(|_| delta(before.get(v.uuid.as_str()), &v.counters(), "gpu_time_ns")))
                .collect();
            let all_gpu: u64 = gpu.iter().flatten().sum();
            let rows = g
                .vgpus
                .iter()
                .zip(&subs)
                .zip(&gpu)
                .map(|((v, &s), &t)| {
                    let c = v.counters();
                    let p = before.get(v.uuid.as_str());
                    let rate = |n: &str| delta(p, &c, n) as f64 / dt;
                    Row {
                        uuid: v.uuid.clone(),
                        mdev_type: v.text("type"),
                        vram_mib: v.num("vram_mib"),
                        weight: v.num("weight"),
                        weight_share: v
                            .num("weight")
                            .filter(|_| weights > 0)
                            .map(|w| 100.0 * w as f64 / weights as f64),
                        subm_share: (all_subs > 0).then(|| 100.0 * s as f64 / all_subs as f64),
                        gpu_share: t.filter(|_| all_gpu > 0).map(|t| 100.0 * t as f64 / all_gpu as f64),
                        subm_per_s: s as f64 / dt,
                        traps_per_s: rate("mmio_traps"),
                        denied_per_s: rate("mmio_denied"),
                        syncs_per_s: rate("shadow_syncs"),
                        faults: c.get("faults").copied().unwrap_or(0),
                        faults_new: delta(p, &c, "faults"),
                    }
                })
                .collect();
            let gpu_rate = |n: &str| match (gpu_before.get(&(g.pci.as_str(), n)), g.num(n)) {
                (Some(&a), Some(b)) if b >= a => format!("{:.1}", (b - a) as f64 / dt),
                _ => "-".into(),
            };
            let unclaimed = match g.num("nonstall_unclaimed") {
                Some(_) => format!("  unclaimed non-stall/s {}", gpu_rate("nonstall_unclaimed")),
                None => String::new(),
            };
            let sched = match g.sched() {
                Some(k) => k.iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(", "),
                None => "no scheduler knobs".into(),
            };
            let header = format!(
                "GPU {}  vGPUs {}  VRAM free {}/{} MiB  channels free {}/{}  interrupts/s {}{}  {}",
                g.pci,
                g.vgpus.len(),
                g.text("vram_free_mib"),
                g.text("vram_total_mib"),
                g.text("channels_free"),
                g.text("channels_total"),
                gpu_rate("interrupts"),
                unclaimed,
                sched
            );
            GpuRows { header, rows }
        })
        .collect()
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "-".into())
}

pub fn render(frames: &[GpuRows], interval_s: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "gpuvmctl top: rates over the last {interval_s:.1}s");
    if frames.is_empty() {
        let _ = writeln!(s, "no GPU bound to gpuvm");
    }
    for g in frames {
        let _ = writeln!(s, "{}", g.header);
        let _ = writeln!(
            s,
            "  {:<36} {:<8} {:>8} {:>6} {:>7} {:>6} {:>8} {:>9} {:>8} {:>7} {:>7} {:>6}",
            "UUID",
            "TYPE",
            "VRAM MiB",
            "WEIGHT",
            "SHARE",
            "SUBM%",
            "SUBM/s",
            "TRAPS/s",
            "DENIED/s",
            "SYNCS/s",
            "FAULTS",
            "GPU%"
        );
        if g.rows.is_empty() {
            let _ = writeln!(s, "  (no vGPUs)");
        }
        for r in &g.rows {
            let faults = if r.faults_new > 0 { format!("{}+{}", r.faults, r.faults_new) } else { r.faults.to_string() };
            let _ = writeln!(
                s,
                "  {:<36} {:<8} {:>8} {:>6} {:>7} {:>6} {:>8.1} {:>9.1} {:>8.1} {:>7.1} {:>7} {:>6}",
                r.uuid,
                r.mdev_type,
                opt(r.vram_mib),
                opt(r.weight),
                pct(r.weight_share),
                pct(r.subm_share),
                r.subm_per_s,
                r.traps_per_s,
                r.denied_per_s,
                r.syncs_per_s,
                faults,
                pct(r.gpu_share)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::Vgpu;
    use serde_json::Value;
    use std::time::Duration;

    fn vgpu(uuid: &str, weight: u64, subs: u64, traps: u64, faults: u64) -> Vgpu {
        let mut attrs = crate::sysfs::Attrs::new();
        for (k, v) in
            [("weight", weight), ("submissions", subs), ("mmio_traps", traps), ("faults", faults), ("vram_mib", 480)]
        {
            attrs.insert(k.into(), Value::from(v));
        }
        attrs.insert("type".into(), Value::from("gpuvm-2"));
        Vgpu { uuid: uuid.into(), parent: "p".into(), attrs }
    }

    fn sample(at: Instant, vgpus: Vec<Vgpu>, irqs: u64) -> Sample {
        let mut attrs = crate::sysfs::Attrs::new();
        attrs.insert("interrupts".into(), Value::from(irqs));
        Sample { at, gpus: vec![Gpu { pci: "p".into(), attrs, types: vec![], vgpus }] }
    }

    #[test]
    fn rates_and_shares_come_from_deltas() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let a = sample(t0, vec![vgpu("a", 10, 100, 1000, 0), vgpu("b", 30, 50, 0, 1)], 5);
        let b = sample(t1, vec![vgpu("a", 10, 130, 3000, 0), vgpu("b", 30, 60, 0, 3)], 9);
        let f = rows(&a, &b);
        let r = &f[0].rows;
        assert_eq!(r[0].subm_per_s, 15.0);
        assert_eq!(r[0].traps_per_s, 1000.0);
        assert_eq!(r[0].weight_share, Some(25.0));
        assert_eq!(r[0].subm_share, Some(75.0));
        assert_eq!(r[1].subm_share, Some(25.0));
        assert_eq!((r[1].faults, r[1].faults_new), (3, 2));
        assert_eq!(r[0].gpu_share, None, "no gpu_time_ns in this module");
        assert!(f[0].header.contains("interrupts/s 2.0"), "{}", f[0].header);
        assert!(f[0].header.contains("no scheduler knobs"));
    }

    #[test]
    fn unclaimed_nonstall_rate_when_the_module_counts_it() {
        let t0 = Instant::now();
        let mut a = sample(t0, vec![], 0);
        let mut b = sample(t0 + Duration::from_secs(4), vec![], 0);
        a.gpus[0].attrs.insert("nonstall_unclaimed".into(), Value::from(10u64));
        b.gpus[0].attrs.insert("nonstall_unclaimed".into(), Value::from(12u64));
        let f = rows(&a, &b);
        assert!(f[0].header.contains("interrupts/s 0.0  unclaimed non-stall/s 0.5  no scheduler knobs"), "{}", f[0].header);
    }

    #[test]
    fn a_new_or_recreated_vgpu_counts_from_zero() {
        let t0 = Instant::now();
        let a = sample(t0, vec![vgpu("a", 10, 500, 0, 0)], 0);
        let b = sample(t0 + Duration::from_secs(1), vec![vgpu("a", 10, 7, 0, 0), vgpu("n", 10, 3, 0, 0)], 0);
        let r = &rows(&a, &b)[0].rows;
        assert_eq!(r[0].subm_per_s, 7.0);
        assert_eq!(r[1].subm_per_s, 3.0);
    }

    #[test]
    fn gpu_share_from_gpu_time_deltas() {
        let t0 = Instant::now();
        let with = |v: Vgpu, ns: u64| {
            let mut v = v;
            v.attrs.insert("gpu_time_ns".into(), Value::from(ns));
            v
        };
        let a = sample(t0, vec![with(vgpu("a", 10, 0, 0, 0), 1_000), with(vgpu("b", 30, 0, 0, 0), 9_000)], 0);
        let b = sample(t0 + Duration::from_secs(1), vec![with(vgpu("a", 10, 0, 0, 0), 2_000), with(vgpu("b", 30, 0, 0, 0), 12_000)], 0);
        let f = rows(&a, &b);
        assert_eq!(f[0].rows[0].gpu_share, Some(25.0));
        assert_eq!(f[0].rows[1].gpu_share, Some(75.0));
        assert!(render(&f, 1.0).contains(" 75.0%\n"), "{}", render(&f, 1.0));
    }

    #[test]
    fn idle_gpu_has_no_submission_share() {
        let t0 = Instant::now();
        let a = sample(t0, vec![vgpu("a", 10, 5, 0, 0)], 0);
        let b = sample(t0 + Duration::from_secs(1), vec![vgpu("a", 10, 5, 0, 0)], 0);
        let f = rows(&a, &b);
        assert_eq!(f[0].rows[0].subm_share, None);
        assert!(render(&f, 1.0).contains("100.0%      -"));
    }
}
