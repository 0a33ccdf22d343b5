//! Shadow syncs reading guest page tables through the copy engine (shadow/guest_fetch.rs) in
//! the mediated transport: the workloads stay correct with the same shadow work, the model
//! MMIO per sync drops, and a hostile guest holding the copy engine with an endless copy
//! only sends a victim's syncs to PRAMIN (correct results), after which fetching recovers.

use gpuvm_guest_driver::hostile;
use gpuvm_guest_driver::transport::mediated::{HostileTarget as Mediated, MediatedHost, VgpuShared};
use gpuvm_guest_driver::transport::Transport;
use gpuvm_guest_driver::workloads::{self, Opts, Size};
use gpuvm_shadow::mediator::MediatorStats;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VRAM_MIB: u64 = 512;

fn opts() -> Opts {
    Opts { size: Size::Small, ..Opts::default() }
}

fn run_on(host: &MediatedHost, v: &Arc<VgpuShared>, name: &str) -> gpuvm_guest_driver::record::Record {
    let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(v)?)) };
    workloads::run(name, &open, &opts())
}

/// Every BAR access the host made to the model so far.
fn model_mmio(host: &MediatedHost) -> u64 {
    let c = host.gpu().counters();
    c.bar0_reads + c.bar0_writes + c.bar1_reads + c.bar1_writes + c.bar3_reads + c.bar3_writes
}

/// One run of `name` on a fresh vGPU with fetching on or off: its mediator counters and the
/// model MMIO the run cost.
fn measured(name: &str, fetch: bool) -> (MediatorStats, u64) {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    host.set_fetch(fetch);
    let v = host.create(1).expect("gpuvm-1");
    let before = model_mmio(&host);
    let r = run_on(&host, &v, name);
    let mmio = model_mmio(&host) - before;
    assert!(r.ok, "{name} (fetch {fetch}): {}", r.to_json());
    let s = v.stats();
    assert_eq!((s.faults, s.refused), (0, 0), "{name} (fetch {fetch}): {s:?}");
    assert!(host.host_errors().is_empty(), "{name}: host errors {:?}", host.host_errors());
    let f = host.fetch_stats();
    if fetch {
        assert!(f.fetches > 0, "{name}: syncs fetched: {f:?}");
        assert_eq!(f.fallbacks, 0, "{name}: no fallback on an idle copy engine: {f:?}");
    } else {
        assert_eq!(f.fetches, 0, "{name}: the knob is off: {f:?}");
    }
    (s, mmio)
}

/// Each workload with and without fetching: correct results, the same shadow work (entries
/// read and written: the syncs saw the same guest tables), and less model MMIO with it.
#[test]
fn mediated_fetch_workloads_stay_exact_and_cost_less_mmio() {
    for name in ["mmul", "hotspot"] {
        let (off, mmio_off) = measured(name, false);
        let (on, mmio_on) = measured(name, true);
        eprintln!(
            "{name}: {} syncs, {} guest entries read; model MMIO of the run {mmio_off} with PRAMIN reads, {mmio_on} with fetching ({} fewer, {} per sync; the rest is shadow-table writes and the guest's own trapped accesses)",
            on.syncs,
            on.guest_reads,
            mmio_off.saturating_sub(mmio_on),
            mmio_off.saturating_sub(mmio_on) / on.syncs.max(1),
        );
        assert_eq!((on.syncs, on.guest_reads, on.pte_writes), (off.syncs, off.guest_reads, off.pte_writes), "{name}: the same shadow work");
        assert!(on.syncs > 0);
        // Most of a run's guest-table reads are whole fresh tables; they cost at least one
        // BAR access each through PRAMIN.
        assert!(mmio_on + on.guest_reads / 2 < mmio_off, "{name}: model MMIO {mmio_on} with fetching vs {mmio_off} without");
    }
}

/// A hostile guest's endless copy holds the copy engine (watchdog at its longest limit, so
/// nothing stops it) while a victim runs a checked workload: the victim's syncs wait a
/// bounded time for their fetch, fall back to PRAMIN (one submission, never resubmitted while
/// in flight), and the victim's results are correct once the attacker is gone. Then fetching
/// recovers: the late copy completes, the next syncs fetch again without falling back.
#[test]
fn mediated_fetch_survives_an_endless_copy_and_recovers() {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    host.set_watchdog_ms(gpuvm_shadow::watchdog::WATCHDOG_MS_MAX).expect("longest limit");
    let attacker = Mediated { host: &host, v: host.create(4).expect("attacker") };
    let victim = host.create(4).expect("victim");
    let (g, _src, _dst, _) = hostile::start_endless(&attacker).expect("endless copy");
    let before = host.fetch_stats();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let r = run_on(&host, &victim, "mmul");
            done.store(true, Ordering::Relaxed);
            r
        });
        // The victim binds its channels and rings (syncs) while the copy engine is held.
        let start = Instant::now();
        while host.fetch_stats().fallbacks == before.fallbacks && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        let during = host.fetch_stats();
        assert!(during.fallbacks > before.fallbacks, "the victim's syncs fell back: {during:?}");
        assert_eq!(during.timeouts, before.timeouts + 1, "one fetch submitted and timed out, none after it while in flight: {during:?}");
        assert_eq!(during.fetches, before.fetches, "nothing fetched while the copy engine is held: {during:?}");
        assert!(!done.load(Ordering::Relaxed), "the victim's run needs the copy engine too");
        // The attacker goes: its channel is evicted (the copy engine reset).
        drop(g);
        let r = t.join().expect("victim thread");
        assert!(r.ok, "victim during and after the attack: {}", r.to_json());
    });
    assert_eq!(victim.stats().refused, 0);
    assert_eq!(victim.stats().faults, 0);
    // Recovered: a fresh run fetches and never falls back.
    let mid = host.fetch_stats();
    let r = run_on(&host, &victim, "mmul");
    assert!(r.ok, "victim after the attack: {}", r.to_json());
    let after = host.fetch_stats();
    assert!(after.fetches > mid.fetches, "fetching resumed: {mid:?} -> {after:?}");
    assert_eq!(after.fallbacks, mid.fallbacks, "no fallback after the attack: {mid:?} -> {after:?}");
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
    eprintln!("fetch stats: during the attack {mid:?}, after {after:?}");
}
