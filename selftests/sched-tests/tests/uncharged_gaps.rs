//! Weighted shares when part of the GPU's time is never charged to anyone (the dispatcher's
//! forward and completion-detection steps between submissions, which a real host has too):
//! the credit earned per period then exceeds the time charged, and credit must not pile up
//! at the cap, where every vGPU holds the same credit and the weights stop mattering.
use gpuvm_sched_tests::sched::account::VgpuId;
use gpuvm_sched_tests::sched::knobs::{Knobs, PolicyKind, Weight};
use gpuvm_sched_tests::sched::policy::Decision;
use gpuvm_sched_tests::sched::scheduler::Scheduler;

const US: u64 = 1_000;
const MS: u64 = 1_000_000;

/// 8 backlogged vGPUs with weights 1:2:4:8:1:2:4:8, 2 ms jobs, `gap` uncharged between
/// jobs; returns the worst relative share error over `secs` seconds after a 1 s warm-up.
fn share_error(kind: PolicyKind, gap: u64, secs: u64) -> f64 {
    let weights = [1u32, 2, 4, 8, 1, 2, 4, 8];
    let mut s = Scheduler::new(kind, Knobs::default(), 0);
    for (i, &w) in weights.iter().enumerate() {
        let v = VgpuId::new(i).unwrap();
        s.add(v, Weight::new(w * 10).unwrap(), 0).unwrap();
        for _ in 0..4 {
            s.submit(v, 0).unwrap();
        }
    }
    let mut now = 0;
    let mut used = [0u64; 8];
    let warm = 1_000 * MS;
    while now < warm + secs * 1_000 * MS {
        match s.pick(now) {
            Decision::Run(v) => {
                let job = 2 * MS;
                now += job;
                s.complete(v, job, now).unwrap();
                if now > warm {
                    used[v.index()] += job;
                }
                s.submit(v, now).unwrap();
                now += gap;
            }
            Decision::WaitUntil(t) => now = t,
            other => panic!("{other:?} with everyone backlogged"),
        }
    }
    let total: u64 = used.iter().sum();
    let wsum: u32 = weights.iter().sum();
    used.iter()
        .zip(weights)
        .map(|(&g, w)| {
            let want = f64::from(w) / f64::from(wsum);
            (g as f64 / total as f64 - want).abs() / want
        })
        .fold(0.0, f64::max)
}

#[test]
fn weights_hold_when_part_of_the_gpu_time_is_uncharged() {
    for kind in [PolicyKind::Credit, PolicyKind::Band] {
        for gap in [0, 100 * US, 300 * US] {
            let e = share_error(kind, gap, 10);
            eprintln!("{kind:?} gap {} us: share error {e:.3}", gap / US);
            assert!(e <= 0.05, "{kind:?} with {} us uncharged per job: share error {e:.3}", gap / US);
        }
    }
}
