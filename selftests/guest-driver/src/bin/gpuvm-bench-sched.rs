//! `make bench-sched`: the schedulers measured over the mediated transport in process (the
//! module's shadow/ and sched/ code on the in-process model, no VM). For FIFO, CREDIT and
//! BAND and 1, 2, 4 and 8 vGPUs: fairness F = (max - min) / avg of per-vGPU GPU time while all
//! are backlogged with the same job, aggregate throughput against the same jobs back to back
//! on one vGPU, share error with weights 1:2:4:8, and a mix (one long-job vGPU next to
//! short-job ones: F and the short jobs' latency). Writes `<out>/sched.json`,
//! `<out>/sched.md` and `<out>/sched-timeline.json` (for the plots).
//!
//! Usage: gpuvm-bench-sched [OUT_DIR] [WINDOW_MS]

use gpuvm_guest_driver::sched_load::{self, fairness, Backlog};
use gpuvm_guest_driver::transport::mediated::{MediatedHost, VgpuShared};
use gpuvm_shadow::sched::knobs::{PolicyKind, Weight};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// 1 GiB model: 8 units of 120 MiB (the guest driver needs about 100 MiB).
const VRAM_MIB: u64 = 1024;
/// The same job everywhere (about 2 ms on the model), and the mix's long and short jobs.
const JOB: u32 = 16384;
const LONG: u32 = 131_072;
const SHORT: u32 = 4096;
const COUNTS: [usize; 4] = [1, 2, 4, 8];
const WEIGHTS: [u32; 4] = [1, 2, 4, 8];
const SAMPLE: Duration = Duration::from_millis(50);
/// Jobs each backlogged guest keeps in flight: enough that its queue never runs dry while
/// the guests share 2 host CPUs with the model.
const DEPTH: usize = 4;

#[derive(Default, Clone)]
struct Cell {
    fairness: f64,
    throughput_ratio: f64,
    share_error: Option<f64>,
    mix_fairness: Option<f64>,
    short_latency_ms: Option<(f64, f64)>,
    jobs_per_s: f64,
    /// Submissions the dispatcher gave up on (ran past its run limit), over all runs.
    given_up: u64,
}

fn vgpus(host: &MediatedHost, n: usize) -> Vec<Arc<VgpuShared>> {
    let share = match n {
        1 => 1,
        2 => 2,
        3 | 4 => 4,
        _ => 8,
    };
    (0..n).map(|_| host.create(share).expect("vGPU")).collect()
}

fn backlog(elems: u32, depth: usize) -> Backlog {
    Backlog { elems, check_every: 64, max_jobs: u64::MAX, depth }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "build/bench".into()));
    let window = Duration::from_millis(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000));
    std::fs::create_dir_all(&out).expect("output directory");

    // Back to back on one vGPU: the same jobs, one guest keeping two in flight.
    let baseline = {
        let host = MediatedHost::new(VRAM_MIB).expect("host");
        host.set_policy(PolicyKind::Fifo);
        let vs = vgpus(&host, 1);
        let w = sched_load::backlogged(&host, &vs, &[backlog(JOB, DEPTH)], window, SAMPLE, &|_| {}).expect("baseline");
        w.jobs[0] as f64 / w.elapsed.as_secs_f64()
    };
    eprintln!("back to back on one vGPU: {baseline:.0} jobs/s");

    let mut cells: BTreeMap<&str, BTreeMap<usize, Cell>> = BTreeMap::new();
    let mut timelines = String::from("{");
    // BENCH_SCHED_POLICIES=band,credit and BENCH_SCHED_COUNTS=4,8 restrict a run.
    let only = |var: &str, name: &str| std::env::var(var).map_or(true, |v| v.split(',').any(|x| x == name));
    for kind in PolicyKind::ALL.into_iter().filter(|k| only("BENCH_SCHED_POLICIES", k.name())) {
        for n in COUNTS.into_iter().filter(|n| only("BENCH_SCHED_COUNTS", &n.to_string())) {
            let mut c = Cell::default();
            // Same job everywhere, equal weights.
            let host = MediatedHost::new(VRAM_MIB).expect("host");
            host.set_policy(kind);
            let vs = vgpus(&host, n);
            let w = sched_load::backlogged(&host, &vs, &vec![backlog(JOB, DEPTH); n], window, SAMPLE, &|_| {}).unwrap_or_else(|e| panic!("{kind:?} x{n}: {e}"));
            c.fairness = fairness(&w.gpu_ns);
            c.given_up += vs.iter().map(|v| host.sched_stats(v).1.given_up).sum::<u64>();
            if std::env::var_os("BENCH_SCHED_DEBUG").is_some() {
                for v in &vs {
                    eprintln!("  {:?}", host.sched_stats(v));
                }
                eprintln!("  window gpu ns {:?} jobs {:?}", w.gpu_ns, w.jobs);
            }
            c.jobs_per_s = w.jobs.iter().sum::<u64>() as f64 / w.elapsed.as_secs_f64();
            c.throughput_ratio = c.jobs_per_s / baseline;
            if n == 4 || n == 8 {
                let _ = write!(timelines, "{}\"{}-{n}-equal\": {}", if timelines.len() > 1 { ", " } else { "" }, kind.name(), samples_json(&w.samples));
            }
            drop(vs);
            drop(host);
            if n >= 2 {
                // Weights 1:2:4:8 (repeated for 8).
                let host = MediatedHost::new(VRAM_MIB).expect("host");
                host.set_policy(kind);
                let vs = vgpus(&host, n);
                let ws: Vec<u32> = (0..n).map(|i| WEIGHTS[i % 4]).collect();
                for (v, &w) in vs.iter().zip(&ws) {
                    host.set_weight(v, Weight::new(w * 10).expect("weight"));
                }
                let w = sched_load::backlogged(&host, &vs, &vec![backlog(JOB, DEPTH); n], window, SAMPLE, &|_| {}).unwrap_or_else(|e| panic!("{kind:?} x{n} weighted: {e}"));
                let total: u64 = w.gpu_ns.iter().sum();
                let wsum: u32 = ws.iter().sum();
                let err = w
                    .gpu_ns
                    .iter()
                    .zip(&ws)
                    .map(|(&g, &wt)| {
                        let want = f64::from(wt) / f64::from(wsum);
                        (g as f64 / total as f64 - want).abs() / want
                    })
                    .fold(0.0, f64::max);
                c.share_error = Some(err);
                if n == 4 {
                    let _ = write!(timelines, ", \"{}-{n}-weighted\": {}", kind.name(), samples_json(&w.samples));
                }
                drop(vs);
                drop(host);
                // The mix: vGPU 0 long jobs (backlogged), the others short jobs one at a time.
                let host = MediatedHost::new(VRAM_MIB).expect("host");
                host.set_policy(kind);
                let vs = vgpus(&host, n);
                let mut loads = vec![backlog(SHORT, 1); n];
                loads[0] = backlog(LONG, 2);
                let w = sched_load::backlogged(&host, &vs, &loads, window, SAMPLE, &|_| {}).unwrap_or_else(|e| panic!("{kind:?} x{n} mix: {e}"));
                c.mix_fairness = Some(fairness(&w.gpu_ns));
                let mut lat: Vec<Duration> = w.outcomes.iter().skip(1).flat_map(|o| o.latencies.iter().copied()).collect();
                lat.sort();
                if let (Some(&worst), false) = (lat.last(), lat.is_empty()) {
                    c.short_latency_ms = Some((ms(lat[lat.len() / 2]), ms(worst)));
                }
            }
            eprintln!(
                "{:6} x{n}: F {:.3}, throughput {:.3} ({:.0} jobs/s), share error {}, mix F {}, short latency {}, given up {}",
                kind.name(),
                c.fairness,
                c.throughput_ratio,
                c.jobs_per_s,
                c.share_error.map_or("-".into(), |e| format!("{e:.3}")),
                c.mix_fairness.map_or("-".into(), |e| format!("{e:.3}")),
                c.short_latency_ms.map_or("-".into(), |(m, w)| format!("median {m:.2} ms, worst {w:.1} ms")),
                c.given_up
            );
            cells.entry(kind.name()).or_default().insert(n, c);
        }
    }
    timelines.push('}');

    // JSON: {policy: {vgpus: {"fairness", "throughput_ratio", "share_error", ...}}}
    let mut json = String::from("{\n");
    for (pi, (p, by_n)) in cells.iter().enumerate() {
        let _ = write!(json, "  \"{p}\": {{");
        for (i, (n, c)) in by_n.iter().enumerate() {
            let opt = |x: Option<f64>| x.map_or("null".to_string(), |v| format!("{v:.4}"));
            let _ = write!(
                json,
                "{}\n    \"{n}\": {{\"fairness\": {:.4}, \"throughput_ratio\": {:.4}, \"share_error\": {}, \"mix_fairness\": {}, \"short_latency_median_ms\": {}, \"short_latency_worst_ms\": {}, \"jobs_per_s\": {:.1}}}",
                if i > 0 { "," } else { "" },
                c.fairness,
                c.throughput_ratio,
                opt(c.share_error),
                opt(c.mix_fairness),
                opt(c.short_latency_ms.map(|x| x.0)),
                opt(c.short_latency_ms.map(|x| x.1)),
                c.jobs_per_s
            );
        }
        let _ = write!(json, "\n  }}{}\n", if pi + 1 < cells.len() { "," } else { "" });
    }
    json.push_str("}\n");
    std::fs::write(out.join("sched.json"), &json).expect("sched.json");
    std::fs::write(out.join("sched-timeline.json"), &timelines).expect("sched-timeline.json");

    // Markdown with the targets.
    let mut md = String::new();
    let _ = writeln!(md, "# Scheduling benchmark (mediated transport, in-process model)\n");
    let _ = writeln!(md, "Window {} ms per run while every vGPU is backlogged; job = one `add` kernel of {JOB} elements + fence (~2 ms on the model), {DEPTH} in flight per guest; back to back on one vGPU: {baseline:.0} jobs/s. Mix: vGPU 0 runs {LONG}-element jobs (2 in flight), the others {SHORT}-element jobs one at a time. Targets: F <= 0.03 for CREDIT/BAND at 2/4/8, 8-vGPU throughput >= 0.95, weighted share error <= 0.05 (max over vGPUs of |share - w/W| / (w/W), weights 1:2:4:8).\n", window.as_millis());
    let _ = writeln!(md, "| policy | vGPUs | F | target | throughput ratio | share error 1:2:4:8 | mix: short job median / worst (ms) | given up |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (p, by_n) in &cells {
        for (n, c) in by_n {
            let target = if *p != "fifo" && *n >= 2 { if c.fairness <= 0.03 { "met" } else { "MISSED" } } else { "-" };
            let _ = writeln!(
                md,
                "| {p} | {n} | {:.3} | {target} | {:.3}{} | {} | {} | {} |",
                c.fairness,
                c.throughput_ratio,
                if *n == 8 { if c.throughput_ratio >= 0.95 { " (met)" } else { " (MISSED)" } } else { "" },
                c.share_error.map_or("-".into(), |e| format!("{e:.3}{}", if e <= 0.05 { "" } else { " (MISSED)" })),
                c.short_latency_ms.map_or("-".into(), |(m, w)| format!("{m:.2} / {w:.1}")),
                c.given_up,
            );
        }
    }
    let _ = writeln!(md, "\nPlots: sched-share.png (per-vGPU share of GPU time over the window, 4 vGPUs equal and weighted), sched-scaling.png (F and throughput against the number of vGPUs).");
    std::fs::write(out.join("sched.md"), &md).expect("sched.md");
    print!("{md}");
}

/// `[[t, [gpu ns...]], ...]`
fn samples_json(s: &[(f64, Vec<u64>)]) -> String {
    let rows: Vec<String> = s.iter().map(|(t, g)| format!("[{t:.3}, [{}]]", g.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))).collect();
    format!("[{}]", rows.join(", "))
}
