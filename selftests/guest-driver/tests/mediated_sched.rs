//! Scheduling through the mediator: several vGPUs on the in-process model, their doorbells
//! queued and dispatched by the GPU's dispatcher (`shadow/dispatch.rs`) under FIFO, CREDIT and
//! BAND, each guest running a checksummed backlog (`sched_load`). GPU time per vGPU comes
//! from the dispatcher (dispatch to completion) and is checked against the model's
//! per-channel busy counters.
//!
//! The tests run one at a time (they measure time on a shared 2-core host). The figures
//! (shares, F, latency bounds, accounting ratios) are asserted in release builds only: a debug
//! build of the model runs a job 25 times slower and its threads fight the guests for the
//! CPUs; there the tests still run every workload, checksum and hostile case and print the
//! figures. `make host-test` runs this file in release after the workspace.

use gpuvm_guest_driver::driver::chan::GP_ENTRIES;
use gpuvm_guest_driver::driver::Gpu;
use gpuvm_guest_driver::sched_load::{self, Backlog, Outcome};
use gpuvm_guest_driver::transport::mediated::{MediatedHost, VgpuShared};
use gpuvm_guest_driver::transport::Bar;
use gpuvm_guest_driver::transport::Transport;
use gpuvm_shadow::sched::knobs::{BandWait, Period, PolicyKind, Weight};
use gpuvm_uapi::gf100::userd;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// 1 GiB: 8 units of 120 MiB, enough for the guest driver on a gpuvm-8.
const VRAM_MIB: u64 = 1024;

/// Whether this build measures (release) or only runs (debug) the timing checks.
const TIMING: bool = !cfg!(debug_assertions);

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the other tests of this file off while one runs.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asserts `ok` in release builds; prints the failure in debug builds.
fn figure(ok: bool, what: impl FnOnce() -> String) {
    if !ok {
        let w = what();
        assert!(!TIMING, "{w}");
        println!("(debug build, not asserted) {w}");
    }
}
/// Job lengths on the model (measured: about 0.25 ms, 2 ms and 33 ms).
const SHORT: u32 = 4096;
const MEDIUM: u32 = 16384;
const LONG: u32 = 262_144;
/// BAND's wait here: a guest of the in-process model needs about 1 ms from its fence's
/// interrupt to its next doorbell (every register access is a trapped call into the mediator
/// and the model), twice Gdev's 500 us on a real GPU.
const BAND_WAIT_US: u32 = 2000;

fn backlog(host: &MediatedHost, v: &Arc<VgpuShared>, b: Backlog, stop: &AtomicBool, jobs: &AtomicU64) -> Result<Outcome, String> {
    let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(v)?)) };
    sched_load::run(&open, b, stop, &mut |n| jobs.store(n, Ordering::Relaxed))
}

fn endless(elems: u32) -> Backlog {
    Backlog { elems, check_every: 16, max_jobs: u64::MAX, depth: 2 }
}

/// GPU time (ns) each vGPU was charged so far.
fn gpu_times(host: &MediatedHost, vs: &[Arc<VgpuShared>]) -> Vec<u64> {
    vs.iter().map(|v| host.sched_stats(v).0.gpu_time_ns).collect()
}

/// Runs one backlog per vGPU (`elems[i]` on `vs[i]`) and, once every guest has completed a
/// job, measures each vGPU's GPU time over `window` while all are backlogged; then stops them
/// and checks every checksum. Returns the GPU time of each over the window.
fn backlogged(host: &MediatedHost, vs: &[Arc<VgpuShared>], elems: &[u32], window: Duration, during: &dyn Fn(&MediatedHost)) -> Vec<u64> {
    let stop = AtomicBool::new(false);
    let jobs: Vec<AtomicU64> = vs.iter().map(|_| AtomicU64::new(0)).collect();
    thread::scope(|s| {
        let hs: Vec<_> = vs.iter().zip(elems).zip(&jobs).map(|((v, &e), j)| { let stop = &stop; s.spawn(move || backlog(host, v, endless(e), stop, j)) }).collect();
        let t0 = Instant::now();
        while jobs.iter().any(|j| j.load(Ordering::Relaxed) == 0) {
            assert!(t0.elapsed() < Duration::from_secs(30), "every guest completes a job");
            thread::sleep(Duration::from_millis(5));
        }
        let before = gpu_times(host, vs);
        let j0: Vec<u64> = jobs.iter().map(|j| j.load(Ordering::Relaxed)).collect();
        during(host);
        thread::sleep(window);
        let after = gpu_times(host, vs);
        for (i, j) in jobs.iter().enumerate() {
            assert!(j.load(Ordering::Relaxed) > j0[i], "vGPU {i} progressed while all were backlogged");
        }
        stop.store(true, Ordering::Relaxed);
        for (i, h) in hs.into_iter().enumerate() {
            let o = h.join().expect("guest thread").unwrap_or_else(|e| panic!("vGPU {i}: {e}"));
            assert!(o.jobs > 0);
        }
        after.iter().zip(before).map(|(a, b)| a - b).collect()
    })
}

fn fairness(t: &[u64]) -> f64 {
    let max = *t.iter().max().unwrap() as f64;
    let min = *t.iter().min().unwrap() as f64;
    let avg = t.iter().sum::<u64>() as f64 / t.len() as f64;
    (max - min) / avg
}

fn vgpus(host: &MediatedHost, n: usize) -> Vec<Arc<VgpuShared>> {
    let share = [1, 2, 4, 4, 8, 8, 8, 8][n - 1];
    (0..n).map(|_| host.create(share).expect("vGPU")).collect()
}

/// Every doorbell goes through the dispatcher, one vGPU's work at a time, and the GPU time it
/// charges each vGPU matches the model's busy-time counters of that vGPU's channels.
#[test]
fn sched_accounting_matches_the_models_busy_counters() {
    let _serial = serial();
    let host = MediatedHost::new(VRAM_MIB).unwrap();
    host.set_policy(PolicyKind::Credit);
    let vs = vgpus(&host, 3);
    let m0: Vec<u64> = vs.iter().map(|v| host.model_busy_ns(v)).collect();
    let s0 = gpu_times(&host, &vs);
    let t0 = Instant::now();
    backlogged(&host, &vs, &[MEDIUM, MEDIUM, LONG / 4], Duration::from_millis(800), &|_| {});
    let wall = t0.elapsed().as_nanos() as u64;
    let s1 = gpu_times(&host, &vs);
    let mut total = 0;
    for (i, v) in vs.iter().enumerate() {
        let sched = s1[i] - s0[i];
        let model = host.model_busy_ns(v) - m0[i];
        let (st, ds) = host.sched_stats(v);
        println!("vGPU {i}: dispatcher {} us, model {} us, {st:?} {ds:?}", sched / 1000, model / 1000);
        assert!(st.dispatched > 3 && st.submissions >= st.dispatched, "vGPU {i}: its doorbells went through the dispatcher: {st:?}");
        // Dispatch-to-completion includes the model's queueing and the detection latency
        // (an interrupt, at worst the 1 ms fallback) per submission; never less than the
        // channel's busy time.
        let slack = st.completed * 1_100_000;
        figure(sched + model / 20 >= model && sched <= model + model / 10 + slack, || format!("vGPU {i}: dispatcher {sched} ns vs model {model} ns ({} submissions)", st.completed));
        figure(ds.given_up == 0, || format!("vGPU {i}: no submission given up: {ds:?}"));
        total += sched;
    }
    figure(total <= wall, || format!("one vGPU at a time: {total} ns charged in {wall} ns"));
    assert!(host.host_errors().is_empty(), "{:?}", host.host_errors());
}

/// Equal weights: CREDIT and BAND share the GPU evenly between 2 and 4 backlogged vGPUs with
/// equal jobs, and BAND between a long-job vGPU and a short-job one (FIFO gives the long one
/// more, which shows the measure can fail).
#[test]
fn sched_credit_and_band_share_evenly() {
    let _serial = serial();
    for (n, elems) in [(2, vec![MEDIUM, MEDIUM]), (4, vec![MEDIUM; 4]), (2, vec![LONG / 4, MEDIUM])] {
        for kind in PolicyKind::ALL {
            let host = MediatedHost::new(VRAM_MIB).unwrap();
            host.set_policy(kind);
            host.set_knobs(Period::DEFAULT, BandWait::from_us(BAND_WAIT_US).unwrap());
            let vs = vgpus(&host, n);
            let t = backlogged(&host, &vs, &elems, Duration::from_millis(1200), &|_| {});
            let f = fairness(&t);
            println!("{kind:?} {n} vGPUs {elems:?}: GPU ms {:?}, F = {f:.3}", t.iter().map(|x| x / 1_000_000).collect::<Vec<_>>());
            let mixed = elems[0] != elems[1];
            match kind {
                PolicyKind::Band if !mixed => figure(f <= 0.2, || format!("{kind:?} {n} vGPUs {elems:?}: F = {f:.3} ({t:?})")),
                // Long next to short jobs (measured F over runs: FIFO 0.95-1.06, CREDIT
                // 0.08-0.57, BAND 0.04-0.14 on a shared 2-core host): credit is charged in
                // lumps after long jobs; BAND's share window corrects it.
                PolicyKind::Band => figure(f <= 0.35, || format!("{kind:?} {n} vGPUs {elems:?}: F = {f:.3} ({t:?})")),
                PolicyKind::Credit if !mixed => figure(f <= 0.2, || format!("{kind:?} {n} vGPUs {elems:?}: F = {f:.3} ({t:?})")),
                PolicyKind::Credit => {}
                PolicyKind::Fifo if mixed => figure(f > 0.3, || format!("FIFO gives the long-job vGPU more: F = {f:.3}")),
                PolicyKind::Fifo => {}
            }
        }
    }
}

/// Weights 1:2 give shares of 1/3 and 2/3 under CREDIT and BAND; changing them to 2:1 under
/// load turns the shares around.
#[test]
fn sched_weights_change_shares() {
    let _serial = serial();
    for kind in [PolicyKind::Credit, PolicyKind::Band] {
        let host = MediatedHost::new(VRAM_MIB).unwrap();
        host.set_policy(kind);
        let vs = vgpus(&host, 2);
        host.set_weight(&vs[0], Weight::new(10).unwrap());
        host.set_weight(&vs[1], Weight::new(20).unwrap());
        let t = backlogged(&host, &vs, &[MEDIUM, MEDIUM], Duration::from_millis(1200), &|_| {});
        let share = t[1] as f64 / (t[0] + t[1]) as f64;
        println!("{kind:?} 1:2: GPU ms {:?}, share of the heavier {share:.3}", t.iter().map(|x| x / 1_000_000).collect::<Vec<_>>());
        figure((share - 2.0 / 3.0).abs() <= 0.05, || format!("{kind:?}: weight 2 of 3 got {share:.3}"));
        let (a, b) = (vs[0].clone(), vs[1].clone());
        let t = backlogged(&host, &vs, &[MEDIUM, MEDIUM], Duration::from_millis(1200), &|h| {
            h.set_weight(&a, Weight::new(20).unwrap());
            h.set_weight(&b, Weight::new(10).unwrap());
        });
        let share = t[0] as f64 / (t[0] + t[1]) as f64;
        println!("{kind:?} 2:1: share of the heavier {share:.3}");
        figure((share - 2.0 / 3.0).abs() <= 0.07, || format!("{kind:?} after the change: weight 2 of 3 got {share:.3}"));
    }
}

/// A short-job guest next to a backlogged long-job one: under BAND each short job completes
/// within about one long job (Fermi does not preempt, so one running long job is the floor);
/// FIFO and CREDIT bound it too (no starvation), more loosely.
#[test]
fn sched_short_job_next_to_a_long_one() {
    let _serial = serial();
    for kind in PolicyKind::ALL {
        let host = MediatedHost::new(VRAM_MIB).unwrap();
        host.set_policy(kind);
        let vs = vgpus(&host, 2);
        let stop = AtomicBool::new(false);
        let long_jobs = AtomicU64::new(0);
        let (short, long) = thread::scope(|s| {
            let l = s.spawn(|| backlog(&host, &vs[0], endless(LONG), &stop, &long_jobs));
            while long_jobs.load(Ordering::Relaxed) < 2 {
                thread::sleep(Duration::from_millis(5));
            }
            let short = backlog(&host, &vs[1], Backlog { elems: SHORT, check_every: 8, max_jobs: 30, depth: 1 }, &AtomicBool::new(false), &AtomicU64::new(0));
            stop.store(true, Ordering::Relaxed);
            (short.expect("short guest"), l.join().unwrap().expect("long guest"))
        });
        let (ls, _) = host.sched_stats(&vs[0]);
        let long_job = Duration::from_nanos(ls.gpu_time_ns / ls.completed.max(1));
        assert!(long.jobs > 0);
        let worst = *short.latencies.iter().max().unwrap();
        let mut sl = short.latencies.clone();
        sl.sort();
        // FIFO: behind whatever the long guest queued first (it keeps 2 jobs in flight).
        // CREDIT: not latency-aware, only starvation-free: measured worst cases of 2 to 5
        // long jobs (the long guest richer in credit just after a replenish). BAND: behind at most the running long job (nothing
        // is merged into a running submission while another vGPU waits), and its wait then
        // keeps the GPU for the short guest's next job.
        let bound = match kind {
            PolicyKind::Fifo => long_job * 3,
            PolicyKind::Credit => long_job * 8,
            PolicyKind::Band => long_job * 3 / 2,
        } + Duration::from_millis(20);
        println!("{kind:?}: long job {long_job:?} on the GPU; short jobs median {:?}, worst {worst:?} (bound {bound:?})", sl[sl.len() / 2]);
        figure(worst <= bound, || format!("{kind:?}: a short job waited {worst:?} next to {long_job:?} long jobs"));
    }
}

/// The policy switched every 150 ms while three vGPUs are backlogged: nothing queued is lost
/// (every checksum holds) and every vGPU progresses in every interval.
#[test]
fn sched_policy_switch_under_load() {
    let _serial = serial();
    let host = MediatedHost::new(VRAM_MIB).unwrap();
    let vs = vgpus(&host, 3);
    backlogged(&host, &vs, &[MEDIUM, SHORT, LONG / 8], Duration::from_millis(50), &|h| {
        let mut last = gpu_times(h, &vs);
        for (i, kind) in [PolicyKind::Fifo, PolicyKind::Credit, PolicyKind::Band, PolicyKind::Fifo, PolicyKind::Band, PolicyKind::Credit].into_iter().enumerate() {
            h.set_policy(kind);
            assert_eq!(h.policy(), kind);
            thread::sleep(Duration::from_millis(150));
            let now = gpu_times(h, &vs);
            for (v, (a, b)) in now.iter().zip(&last).enumerate() {
                figure(a > b, || format!("switch {i} to {kind:?}: vGPU {v} got no GPU time"));
            }
            last = now;
        }
    });
    assert!(host.host_errors().is_empty(), "{:?}", host.host_errors());
}

/// A hostile guest storms its doorbell (its current GP_PUT, GP_PUTs outside its ring, GP_PUTs
/// behind its GP_GET) and rewrites its USERD words mid-flight, while a victim runs its
/// checksummed backlog: the victim's results stay correct and it keeps at least a quarter of
/// the rate it had alone (the storm also takes CPU on a 2-core host); the attacker's out-of-ring doorbells are refused.
#[test]
fn sched_hostile_storm_does_not_stall_the_victim() {
    let _serial = serial();
    for kind in [PolicyKind::Credit, PolicyKind::Band, PolicyKind::Fifo] {
        let host = MediatedHost::new(VRAM_MIB).unwrap();
        host.set_policy(kind);
        let vs = vgpus(&host, 2);
        let alone = {
            let j = AtomicU64::new(0);
            let t = Instant::now();
            let o = backlog(&host, &vs[1], Backlog { elems: MEDIUM, check_every: 8, max_jobs: 40, depth: 1 }, &AtomicBool::new(false), &j).unwrap();
            o.jobs as f64 / t.elapsed().as_secs_f64()
        };
        let stop = AtomicBool::new(false);
        let victim_jobs = AtomicU64::new(0);
        let (rate, rings) = thread::scope(|s| {
            let attacker = s.spawn(|| {
                let t = host.open(&vs[0]).expect("attacker open");
                let mut g = Gpu::open(Box::new(t), 0, true).expect("attacker driver");
                let u = g.raw_userd_bar1();
                let mut k = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let put = match k % 5 {
                        0 => GP_ENTRIES + k,
                        1 => u32::MAX - k,
                        2 => 0,
                        _ => g.raw_gp_put(),
                    };
                    let hw = g.raw_hw();
                    hw.bar_wr(Bar::Bar1, u + u64::from(userd::GP_GET), k);
                    hw.bar_wr(Bar::Bar1, u + u64::from(userd::GP_PUT), put);
                    k = k.wrapping_add(1);
                }
                drop(g);
                k
            });
            let t = Instant::now();
            let o = backlog(&host, &vs[1], Backlog { elems: MEDIUM, check_every: 4, max_jobs: 60, depth: 1 }, &AtomicBool::new(false), &victim_jobs);
            let rate = o.expect("victim's checksummed work").jobs as f64 / t.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            (rate, attacker.join().expect("attacker"))
        });
        let refused = host.sched_stats(&vs[0]);
        println!("{kind:?}: victim alone {alone:.0} jobs/s, under a storm of {rings} doorbells {rate:.0} jobs/s; attacker {refused:?}");
        figure(rate >= alone / 4.0, || format!("{kind:?}: the victim slowed from {alone:.0} to {rate:.0} jobs/s"));
        let refused_doorbells = vs[0].stats().doorbells_refused;
        assert!(refused_doorbells > 0, "{kind:?}: out-of-ring GP_PUTs refused");
    }
}


/// A hostile guest whose submission never completes (a semaphore acquire of a value nobody
/// writes): the dispatcher sees it blocked (STATE ACQUIRE_PENDING) or gives up on it after
/// its run limit, so the victim's checksummed backlog keeps completing, under CREDIT and BAND.
#[test]
fn sched_hostile_never_completing_work_does_not_stall_the_victim() {
    let _serial = serial();
    use gpuvm_uapi::gf100::host;
    for kind in [PolicyKind::Credit, PolicyKind::Band] {
        let host = MediatedHost::new(VRAM_MIB).unwrap();
        host.set_policy(kind);
        let vs = vgpus(&host, 2);
        let t = host.open(&vs[0]).expect("attacker open");
        let mut g = Gpu::open(Box::new(t), 0, true).expect("attacker driver");
        let mut sem = g.malloc(4096).expect("semaphore");
        g.memcpy_htod(&mut sem, 0, &[0u8; 16]).expect("zero it");
        let (hi, lo) = ((sem.va >> 32) as u32, sem.va as u32);
        g.raw_submit(0, host::SEMAPHORE_A, &[hi, lo, 0xdead_beef, host::SEM_OP_ACQUIRE]).expect("acquire");
        let start = Instant::now();
        let o = backlog(&host, &vs[1], Backlog { elems: MEDIUM, check_every: 4, max_jobs: 20, depth: 1 }, &AtomicBool::new(false), &AtomicU64::new(0));
        let took = start.elapsed();
        let o = o.unwrap_or_else(|e| panic!("{kind:?}: victim: {e}"));
        let (_, ds) = host.sched_stats(&vs[0]);
        println!("{kind:?}: victim {} jobs in {took:?} next to a blocked channel; attacker {ds:?}", o.jobs);
        assert_eq!(o.jobs, 20);
        let (st, _) = host.sched_stats(&vs[0]);
        assert!(st.completed >= 1 && st.queued == 0, "{kind:?}: the blocked submission was completed (acquire pending) or given up on: {st:?} {ds:?}");
        figure(took < Duration::from_secs(10), || format!("{kind:?}: {took:?}"));
        drop(g);
    }
}
