//! A checksummed backlog for scheduling tests and `make bench-sched`: one guest keeps its vGPU
//! busy with jobs of a chosen length, each job one `add` kernel that adds a vector of ones
//! into an accumulator (`c = a + c`) followed by a fence. After `n` jobs every element must be
//! exactly `n`: a job lost, run twice or run on someone else's data shows in the checksum.

use crate::driver::{Gpu, HwError};
use crate::transport::Transport;
use crate::workloads::Params;
use gpuvm_uapi::kernels::{self, add as ak};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Threads per block of the add kernel.
const BLOCK: u32 = 256;

/// One guest's backlog.
#[derive(Clone, Copy, Debug)]
pub struct Backlog {
    /// Elements each job adds (its length on the GPU).
    pub elems: u32,
    /// Verify the accumulator every this many jobs (and at the end).
    pub check_every: u64,
    /// Stop after this many jobs (or when the stop flag is set).
    pub max_jobs: u64,
    /// Jobs in flight: 1 waits for each job before submitting the next (a latency-bound
    /// guest); 2 or more keeps work queued behind the running job (a backlogged one).
    pub depth: usize,
}

/// What a backlog did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Jobs completed and verified.
    pub jobs: u64,
    /// Each job's submission-to-fence time, in order.
    pub latencies: Vec<Duration>,
    /// When each job completed (since the backlog started).
    pub done_at: Vec<Duration>,
}

fn hw(e: HwError) -> String {
    format!("{e}")
}

fn verify(g: &mut Gpu, c: &mut crate::driver::DevMem, elems: u32, want: u64) -> Result<(), String> {
    let mut bytes = vec![0u8; elems as usize * 4];
    g.memcpy_dtoh(&mut bytes, c, 0).map_err(hw)?;
    for (i, w) in bytes.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if v != want as f32 {
            return Err(format!("checksum: element {i} is {v} after {want} jobs"));
        }
    }
    Ok(())
}

/// Opens the device, runs the backlog until `stop` or `max_jobs`, verifying the checksum,
/// and closes it. `on_job(n)` is called after job n completed.
pub fn run(open: &dyn Fn() -> io::Result<Box<dyn Transport>>, b: Backlog, stop: &AtomicBool, on_job: &mut dyn FnMut(u64)) -> Result<Outcome, String> {
    let t = open().map_err(|e| format!("open: {e}"))?;
    let mut g = Gpu::open(t, 0, true).map_err(hw)?;
    let bytes = u64::from(b.elems) * 4;
    let mut a = g.malloc(bytes).map_err(hw)?;
    let mut c = g.malloc(bytes).map_err(hw)?;
    let ones: Vec<u8> = (0..b.elems).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    g.memcpy_htod(&mut a, 0, &ones).map_err(hw)?;
    g.memcpy_htod(&mut c, 0, &vec![0u8; bytes as usize]).map_err(hw)?;
    let p = Params::new(ak::PARAM_BYTES).ptr(ak::A, a.va).ptr(ak::B, c.va).ptr(ak::C, c.va).u32(ak::COUNT, b.elems);
    let mut out = Outcome::default();
    let start = Instant::now();
    let mut flight: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut submitted = 0u64;
    loop {
        let more = submitted < b.max_jobs && !stop.load(Ordering::Relaxed);
        if more && flight.len() < b.depth.max(1) {
            let t0 = Instant::now();
            g.launch(kernels::KERNEL_ADD, [b.elems.div_ceil(BLOCK), 1, 1], [BLOCK, 1, 1], p.bytes()).map_err(hw)?;
            flight.push_back((g.fence_emit().map_err(hw)?, t0));
            submitted += 1;
            continue;
        }
        let Some((seq, t0)) = flight.pop_front() else { break };
        g.fence_wait(seq).map_err(hw)?;
        out.latencies.push(t0.elapsed());
        out.jobs += 1;
        out.done_at.push(start.elapsed());
        on_job(out.jobs);
        // The accumulator is checked when nothing is in flight (a copy queued behind jobs
        // would read it mid-way).
        if flight.is_empty() && out.jobs.is_multiple_of(b.check_every) {
            verify(&mut g, &mut c, b.elems, out.jobs)?;
        }
    }
    verify(&mut g, &mut c, b.elems, out.jobs)?;
    g.free(a).map_err(hw)?;
    g.free(c).map_err(hw)?;
    g.close().map_err(hw)?;
    Ok(out)
}

/// What every vGPU got while all were backlogged.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Length of the window.
    pub elapsed: Duration,
    /// GPU time charged to each vGPU over the window (the dispatcher's accounting).
    pub gpu_ns: Vec<u64>,
    /// Jobs each vGPU completed over the window.
    pub jobs: Vec<u64>,
    /// Every `sample` step: (seconds into the window, GPU time of each vGPU since its start).
    pub samples: Vec<(f64, Vec<u64>)>,
    /// Each guest's whole run (every checksum verified).
    pub outcomes: Vec<Outcome>,
}

/// Runs `loads[i]` on `vs[i]` concurrently; once every guest completed a job, measures a
/// window of `window` (sampling every `sample`), calling `during` at its start; then stops
/// every guest and checks its checksum. An error names the guest that failed.
pub fn backlogged(
    host: &crate::transport::mediated::MediatedHost,
    vs: &[std::sync::Arc<crate::transport::mediated::VgpuShared>],
    loads: &[Backlog],
    window: Duration,
    sample: Duration,
    during: &dyn Fn(&crate::transport::mediated::MediatedHost),
) -> Result<Window, String> {
    use std::sync::atomic::AtomicU64;
    let gpu = |vs: &[std::sync::Arc<crate::transport::mediated::VgpuShared>]| -> Vec<u64> { vs.iter().map(|v| host.sched_stats(v).0.gpu_time_ns).collect() };
    let stop = AtomicBool::new(false);
    let jobs: Vec<AtomicU64> = vs.iter().map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = vs
            .iter()
            .zip(loads)
            .zip(&jobs)
            .map(|((v, &b), j)| {
                let stop = &stop;
                s.spawn(move || {
                    let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(v)?)) };
                    run(&open, b, stop, &mut |n| j.store(n, Ordering::Relaxed))
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut started = true;
        while jobs.iter().any(|j| j.load(Ordering::Relaxed) == 0) {
            if t0.elapsed() > Duration::from_secs(60) || hs.iter().any(|h| h.is_finished()) {
                started = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut w = Window::default();
        if started {
            let g0 = gpu(vs);
            let j0: Vec<u64> = jobs.iter().map(|j| j.load(Ordering::Relaxed)).collect();
            let start = Instant::now();
            during(host);
            while start.elapsed() < window {
                std::thread::sleep(sample.min(window.saturating_sub(start.elapsed())));
                let g = gpu(vs);
                w.samples.push((start.elapsed().as_secs_f64(), g.iter().zip(&g0).map(|(a, b)| a - b).collect()));
            }
            w.elapsed = start.elapsed();
            w.gpu_ns = gpu(vs).iter().zip(&g0).map(|(a, b)| a - b).collect();
            w.jobs = jobs.iter().zip(&j0).map(|(j, b)| j.load(Ordering::Relaxed) - b).collect();
        }
        stop.store(true, Ordering::Relaxed);
        let mut err = None;
        for (i, h) in hs.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(o)) => w.outcomes.push(o),
                Ok(Err(e)) => err = err.or(Some(format!("vGPU {i}: {e}"))),
                Err(_) => err = err.or(Some(format!("vGPU {i}: guest thread panicked"))),
            }
        }
        match err {
            Some(e) => Err(e),
            None if !started => Err("a guest never completed a job".into()),
            None => Ok(w),
        }
    })
}

/// F = (max - min) / avg.
pub fn fairness(t: &[u64]) -> f64 {
    let (Some(&max), Some(&min)) = (t.iter().max(), t.iter().min()) else { return 0.0 };
    let avg = t.iter().sum::<u64>() as f64 / t.len().max(1) as f64;
    if avg == 0.0 {
        return 0.0;
    }
    (max - min) as f64 / avg
}
