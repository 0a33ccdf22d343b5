//! Property tests: random mixes of vGPUs (weights, kernel lengths, backlogged / closed-loop /
//! bursty / idle guests, queues deep enough to merge doorbells) under every policy. The
//! simulator itself fails a run in which the scheduler runs a vGPU with nothing queued,
//! says `Idle` while work is queued, or waits where it may not.
use gpuvm_sched_tests::bench::weight_of;
use gpuvm_sched_tests::sched::account::QUEUE_DEPTH;
use gpuvm_sched_tests::sched::knobs::{Knobs, PolicyKind};
use gpuvm_sched_tests::sim::{fairness_ppm, share_error_ppm, Kernel, Load, Sim, VgpuSpec, MS, S, US};
use proptest::prelude::*;

const P: u64 = 30 * MS;

fn kind() -> impl Strategy<Value = PolicyKind> {
    prop_oneof![Just(PolicyKind::Fifo), Just(PolicyKind::Credit), Just(PolicyKind::Band)]
}

fn kernel() -> impl Strategy<Value = Kernel> {
    prop_oneof![
        (10 * US..=5 * MS).prop_map(Kernel::Fixed),
        (10 * US..=2 * MS, 0..=3 * MS).prop_map(|(lo, d)| Kernel::Uniform(lo, lo + d)),
    ]
}

fn load() -> impl Strategy<Value = Load> {
    prop_oneof![
        3 => (1..=QUEUE_DEPTH as u32 + 4).prop_map(|depth| Load::Backlogged { depth }),
        2 => (0..=2 * MS).prop_map(|think| Load::ClosedLoop { think }),
        2 => (1..=3 * QUEUE_DEPTH as u32, MS..=100 * MS).prop_map(|(count, every)| Load::Bursts { count, every }),
        1 => Just(Load::Idle),
    ]
}

fn specs(max: usize) -> impl Strategy<Value = Vec<VgpuSpec>> {
    prop::collection::vec((1..=100u32, kernel(), load()).prop_map(|(w, k, l)| VgpuSpec::new(w, k, l)), 1..=max)
}

/// The starvation bound of vGPU `i` (see `policies.rs::nobody_starves` for the argument):
/// in credit terms it needs 2P over W/w_i periods; BAND adds the time for the under-share
/// vGPUs in debt that may go ahead of it to pass their share (11 periods per halving of
/// W/w_i) and a wait; FIFO waits at most for every other vGPU's full queue.
fn starvation_bound(kind: PolicyKind, specs: &[VgpuSpec], i: usize, longest: u64) -> u64 {
    let w_all: u64 = specs.iter().map(|s| u64::from(s.weight)).sum();
    let ratio = w_all.div_ceil(u64::from(specs[i].weight));
    match kind {
        PolicyKind::Fifo => (specs.len() as u64 * QUEUE_DEPTH as u64 + 1) * longest,
        PolicyKind::Credit => (2 * ratio + 4) * P + 2 * longest,
        PolicyKind::Band => (2 * ratio + 11 * u64::from(ratio.next_power_of_two().ilog2()) + 6) * P + 2 * longest + 10 * MS,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Work conservation, no starvation, and nothing lost: after 2 s the guests stop and
    /// every doorbell they rang completes.
    #[test]
    fn any_mix_is_served(kind in kind(), specs in specs(8), seed in any::<u64>()) {
        let mut sim = Sim::new(kind, Knobs::default(), &specs, seed);
        sim.trace.record = kind == PolicyKind::Fifo;
        sim.run_until(2 * S);
        let t = &sim.trace;
        match kind {
            PolicyKind::Band => {
                let wait = Knobs::default().band_wait.ns();
                for &(from, to, done) in &t.idle_gaps {
                    prop_assert!(from >= done && to <= done + wait, "idle {}..{} after completion at {}", from, to, done);
                }
            }
            _ => prop_assert_eq!(t.idle_with_work_ns, 0),
        }
        if kind == PolicyKind::Fifo {
            prop_assert!(t.dispatches.windows(2).all(|w| w[0].seq < w[1].seq), "FIFO out of arrival order");
        }
        let longest = t.max_submission_ns.max(specs.iter().map(|s| s.kernel.max()).max().unwrap_or(0));
        for i in 0..specs.len() {
            let gap = sim.service_gap(i);
            let bound = starvation_bound(kind, &specs, i, longest);
            prop_assert!(gap <= bound, "vGPU {} ({:?}) waited {} ns, bound {}", i, specs[i], gap, bound);
        }
        prop_assert!(sim.drain(3_600 * S), "drains");
        for i in 0..specs.len() {
            prop_assert_eq!(sim.trace.doorbells_done[i], sim.trace.doorbells[i]);
            let st = sim.sched.stats(sim.id(i)).unwrap();
            prop_assert_eq!(st.submissions, sim.trace.doorbells[i]);
            prop_assert_eq!((st.queued, st.dispatched), (0, st.completed));
        }
    }

    /// Switching policy at random times under load loses no doorbell.
    #[test]
    fn switching_loses_nothing(
        specs in specs(8),
        switches in prop::collection::vec((1..=200 * MS, kind()), 1..=12),
        first in kind(),
        seed in any::<u64>(),
    ) {
        let mut sim = Sim::new(first, Knobs::default(), &specs, seed);
        for (dt, kind) in switches {
            sim.run_until(sim.now + dt);
            sim.set_policy(kind);
        }
        prop_assert!(sim.drain(3_600 * S));
        for i in 0..specs.len() {
            prop_assert_eq!(sim.trace.doorbells_done[i], sim.trace.doorbells[i]);
        }
    }

    /// Backlogged vGPUs with random kernels: equal weights give F ≤ 0.03 and weights
    /// 1:2:4:8 give each share within 5% of itself, for CREDIT and BAND, over 10 s.
    #[test]
    fn backlogged_shares_follow_weights(
        band in any::<bool>(),
        weighted in any::<bool>(),
        kernels in prop::collection::vec((10 * US..=2 * MS, 0..=2 * MS), 2..=8),
        depth in 1..=8u32,
        seed in any::<u64>(),
    ) {
        let kind = if band { PolicyKind::Band } else { PolicyKind::Credit };
        let specs: Vec<_> = kernels
            .iter()
            .enumerate()
            .map(|(i, &(lo, d))| {
                let w = if weighted { weight_of(i) } else { 10 };
                VgpuSpec::new(w, Kernel::Uniform(lo, lo + d), Load::Backlogged { depth })
            })
            .collect();
        let mut sim = Sim::new(kind, Knobs::default(), &specs, seed);
        sim.run_until(10 * S);
        let times: Vec<_> = (0..specs.len()).map(|i| sim.gpu_ns(i)).collect();
        if weighted {
            let weights: Vec<_> = specs.iter().map(|s| s.weight).collect();
            let e = share_error_ppm(&times, &weights);
            prop_assert!(e <= 50_000, "{:?}: share error {} ppm, {:?}", kind, e, times);
        } else {
            let f = fairness_ppm(&times);
            prop_assert!(f <= 30_000, "{:?}: F {} ppm, {:?}", kind, f, times);
        }
    }
}
