//! The guest driver through the module's mediator (shadow/, as compiled into gpuvm.ko) onto
//! the in-process model: every workload on one vGPU, two vGPUs sharing the GPU, and the
//! mediator's bookkeeping checked after each (no host error, host pool back where it was).

use gpuvm_guest_driver::transport::mediated::{MediatedHost, VgpuShared};
use gpuvm_guest_driver::transport::Transport;
use gpuvm_guest_driver::workloads::{self, Opts, Size};
use std::io;
use std::sync::Arc;

/// Model VRAM: 64 MiB for the host, the rest cut into 8 units of 56 MiB.
const VRAM_MIB: u64 = 512;

fn opts() -> Opts {
    Opts { size: Size::Small, ..Opts::default() }
}

fn run_on(host: &MediatedHost, v: &Arc<VgpuShared>, name: &str, o: &Opts) -> gpuvm_guest_driver::record::Record {
    let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(v)?)) };
    workloads::run(name, &open, o)
}

/// Runs `name` on a fresh gpuvm-1 vGPU and checks the result and the mediator's books.
fn mediated(name: &str, lazy: bool) {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    host.set_lazy_shadow(lazy);
    let pool_before = host.pool_free_bytes();
    let v = host.create(1).expect("gpuvm-1");
    let r = run_on(&host, &v, name, &opts());
    assert!(r.ok, "{name} on a mediated vGPU: {}", r.to_json());
    assert!(r.device.starts_with("mediated vGPU gpuvm-1"), "{}", r.device);
    let s = v.stats();
    assert!(s.doorbells > 0 && s.syncs > 0 && s.pte_writes > 0, "{name}: the work went through the mediator: {s:?}");
    assert_eq!(s.faults, 0, "{name}: no MMU fault: {s:?}");
    assert_eq!(s.refused, 0, "{name}: no refused entry: {s:?}");
    assert_eq!(v.counters().denied.load(std::sync::atomic::Ordering::Relaxed), 0, "{name}: no denied access");
    assert!(host.host_errors().is_empty(), "{name}: host errors {:?}", host.host_errors());
    assert_eq!(host.pool_free_bytes(), pool_before, "{name}: every shadow went back to the host pool at close");
}

#[test]
fn mediated_hotspot() {
    mediated("hotspot", true);
}
#[test]
fn mediated_lud() {
    mediated("lud", true);
}
#[test]
fn mediated_srad() {
    mediated("srad", true);
}
#[test]
fn mediated_needle() {
    mediated("needle", true);
}
#[test]
fn mediated_mmul() {
    mediated("mmul", true);
}
/// Naive shadowing (sync at every guest TLB flush) gives the same results.
#[test]
fn mediated_mmul_naive() {
    mediated("mmul", false);
}

/// A corrupted result is caught through the mediator too (the check can fail).
#[test]
fn mediated_corrupt_detected() {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let v = host.create(2).expect("gpuvm-2");
    let r = run_on(&host, &v, "mmul", &Opts { corrupt_one: true, ..opts() });
    assert!(!r.ok && r.error.as_deref().is_some_and(|e| e.starts_with("mismatch in")), "{}", r.to_json());
}

/// Two vGPUs share the GPU: different workloads at once, each correct, each only on its own
/// slice and channels.
#[test]
fn mediated_two_vgpus() {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let a = host.create(2).expect("first gpuvm-2");
    let b = host.create(2).expect("second gpuvm-2");
    assert!(host.create(2).is_err() || host.create(8).is_ok(), "the GPU fills up");
    assert_ne!(a.slice().vram_base, b.slice().vram_base);
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| run_on(&host, &a, "mmul", &opts()));
        let tb = s.spawn(|| run_on(&host, &b, "hotspot", &opts()));
        (ta.join().expect("vGPU A thread"), tb.join().expect("vGPU B thread"))
    });
    assert!(ra.ok, "vGPU A mmul: {}", ra.to_json());
    assert!(rb.ok, "vGPU B hotspot: {}", rb.to_json());
    for (n, v) in [("A", &a), ("B", &b)] {
        let s = v.stats();
        assert!(s.doorbells > 0, "vGPU {n} submitted: {s:?}");
        assert_eq!(s.faults, 0, "vGPU {n}: {s:?}");
    }
    assert!(host.host_errors().is_empty(), "{:?}", host.host_errors());
}

/// A vGPU can be opened once at a time; after close it opens again and works.
#[test]
fn mediated_reopen() {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let v = host.create(4).expect("gpuvm-4");
    let t = host.open(&v).expect("first open");
    assert_eq!(host.open(&v).err().and_then(|e| e.raw_os_error()), Some(libc::EBUSY));
    drop(t);
    let r = run_on(&host, &v, "init_close", &opts());
    assert!(r.ok, "{}", r.to_json());
}

/// Non-stall interrupts go to the vGPU whose channel made progress: an idle vGPU with its
/// channel on the runlist hears none of a busy neighbour's fences (a storm and a side
/// channel otherwise), except the ones the host could not attribute, which it counts.
#[test]
fn mediated_interrupts_to_their_owner() {
    use gpuvm_guest_driver::driver::Gpu;
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let busy = host.create(2).expect("busy vGPU");
    let idle = host.create(2).expect("idle vGPU");
    // The idle vGPU's driver is up: its channel is bound, runnable and on the runlist.
    let mut g = Gpu::open(Box::new(host.open(&idle).expect("open idle")), 0, true).expect("idle driver");
    g.sync().expect("the idle vGPU's first (and last) fence: its channel is on the runlist");
    let (idle0, busy0, unclaimed0) = (idle.stats().nonstall, busy.stats().nonstall, host.nonstall_unclaimed());
    for name in ["mmul", "hotspot", "needle"] {
        let r = run_on(&host, &busy, name, &opts());
        assert!(r.ok, "{}", r.to_json());
    }
    let idle_msis = idle.stats().nonstall - idle0;
    let busy_msis = busy.stats().nonstall - busy0;
    let unclaimed = host.nonstall_unclaimed() - unclaimed0;
    eprintln!("non-stall interrupts raised: busy vGPU {busy_msis}, idle vGPU {idle_msis}; unattributed {unclaimed}");
    assert!(busy_msis > 0, "the busy vGPU got its interrupts");
    // The idle vGPU's own last fence may be attributed late: if its GP_GET was written back
    // after the host had looked, its progress is seen at the next interrupt (once).
    assert!(idle_msis <= unclaimed + 1, "the idle vGPU heard only unattributable interrupts and its own last fence ({idle_msis} > {unclaimed} + 1)");
    drop(g);
}

/// The module's own MMIO on top of the guest's traps (issue 13's "model MMIO" column): every
/// model BAR access made during a run, less the guest's trapped accesses, which the native
/// driver makes too. Shadow tables in host system memory make shadow writes CPU stores, and
/// the copy engine stages the guest tables a sync reads (`guest_fetch.rs`).
#[test]
fn mediated_own_mmio_per_run() {
    for lazy in [false, true] {
        let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
        host.set_lazy_shadow(lazy);
        let v = host.create(1).expect("gpuvm-1");
        let c = |h: &MediatedHost| {
            let s = h.gpu().counters();
            s.bar0_reads + s.bar0_writes + s.bar1_reads + s.bar1_writes + s.bar3_reads + s.bar3_writes
        };
        let (m0, t0) = (c(&host), v.counters().traps.load(std::sync::atomic::Ordering::Relaxed));
        let r = run_on(&host, &v, "mmul", &opts());
        assert!(r.ok, "{}", r.to_json());
        let (m1, t1) = (c(&host), v.counters().traps.load(std::sync::atomic::Ordering::Relaxed));
        let s = v.stats();
        let own = (m1 - m0).saturating_sub(t1 - t0);
        eprintln!("lazy={lazy}: guest traps {} model MMIO {} own {own} ({:.2}x) guest_reads {} pte_writes {} syncs {}", t1 - t0, m1 - m0, (m1 - m0) as f64 / (t1 - t0) as f64, s.guest_reads, s.pte_writes, s.syncs);
        assert!(s.pte_writes > 1000 && s.guest_reads > 1000, "the run synced shadow entries: {s:?}");
        // Issue 13's target: model MMIO at most 1.2x what the guest itself makes. Shadow
        // entries are written into host memory (in host VRAM they cost two or three BAR3
        // writes each: own 23 000) and guest tables are read in copy-engine chunks (through
        // PRAMIN a word each: own 9 100); both failed this bound.
        assert!(own * 5 <= t1 - t0, "lazy={lazy}: {own} model accesses of the module's own on {} guest traps ({} guest entries read)", t1 - t0, s.guest_reads);
    }
}
