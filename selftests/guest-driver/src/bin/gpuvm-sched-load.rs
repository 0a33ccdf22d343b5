//! gpuvm-sched-load: one guest's checksummed backlog (selftests' `sched_load`) on a vGPU, for
//! the VM's `sched-*` tests. Each job adds a vector of ones into an accumulator and is fenced;
//! after n jobs every element must be n, so a job lost, run twice or run on other data fails
//! the run. Prints one JSON line: jobs, correctness, submission-to-fence latency figures.
//! Exit status 1 if the checksum or the device failed.

use gpuvm_guest_driver::sched_load::{self, Backlog};
use gpuvm_guest_driver::transport::model::ModelTransport;
use gpuvm_guest_driver::transport::vfio::{VfioPath, VfioTarget, VfioTransport};
use gpuvm_guest_driver::transport::Transport;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: gpuvm-sched-load (--mdev UUID | --model) [options]
  --elems N        elements each job adds (its length on the GPU; default 16384)
  --depth N        jobs in flight (1: wait for each job; default 4)
  --jobs N         stop after N jobs
  --seconds S      stop after S seconds
  --stop-file P    stop once file P exists (checked every 10 ms)
  --ready-file P   create file P after the first job completed
At least one of --jobs, --seconds, --stop-file.";

fn main() -> ExitCode {
    match run(&std::env::args().skip(1).collect::<Vec<_>>()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gpuvm-sched-load: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut mdev = None;
    let mut model = false;
    let mut b = Backlog { elems: 16384, check_every: 64, max_jobs: u64::MAX, depth: 4 };
    let mut seconds = None;
    let mut stop_file: Option<PathBuf> = None;
    let mut ready_file: Option<PathBuf> = None;
    let mut it = args.iter();
    let val = |it: &mut std::slice::Iter<String>, o: &str| it.next().cloned().ok_or(format!("{o} needs a value"));
    let num = |s: String, o: &str| s.parse::<u64>().map_err(|e| format!("{o}: {e}"));
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mdev" => mdev = Some(val(&mut it, a)?),
            "--model" => model = true,
            "--elems" => b.elems = num(val(&mut it, a)?, a)?.try_into().map_err(|_| "--elems too large")?,
            "--depth" => b.depth = num(val(&mut it, a)?, a)? as usize,
            "--jobs" => b.max_jobs = num(val(&mut it, a)?, a)?,
            "--seconds" => seconds = Some(Duration::from_secs_f64(val(&mut it, a)?.parse::<f64>().map_err(|e| format!("{a}: {e}"))?)),
            "--stop-file" => stop_file = Some(val(&mut it, a)?.into()),
            "--ready-file" => ready_file = Some(val(&mut it, a)?.into()),
            o => return Err(format!("unknown argument {o}")),
        }
    }
    if b.max_jobs == u64::MAX && seconds.is_none() && stop_file.is_none() {
        return Err("no end given".into());
    }
    if b.elems == 0 || b.depth == 0 {
        return Err("--elems and --depth must be positive".into());
    }
    let gpu = if model { Some(ModelTransport::new(1024).map_err(|e| format!("model: {e}"))?.gpu().clone()) } else { None };
    if gpu.is_none() && mdev.is_none() {
        return Err("no device given".into());
    }
    let open = || -> io::Result<Box<dyn Transport>> {
        match (&gpu, &mdev) {
            (Some(g), _) => Ok(Box::new(ModelTransport::with_gpu(g.clone()))),
            (None, Some(u)) => Ok(Box::new(VfioTransport::open(VfioTarget::Mdev(u.clone()), VfioPath::Auto)?)),
            (None, None) => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        }
    };
    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let timed_out = seconds.is_some_and(|d| start.elapsed() >= d);
                if timed_out || stop_file.as_ref().is_some_and(|p| p.exists()) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let mut ready = ready_file.clone();
        let r = sched_load::run(&open, b, &stop, &mut |_| {
            if let Some(p) = ready.take() {
                let _ = std::fs::write(p, b"");
            }
        });
        done.store(true, Ordering::Relaxed);
        r
    });
    let elapsed = start.elapsed().as_secs_f64();
    match r {
        Ok(o) => {
            let mut lat: Vec<f64> = o.latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
            lat.sort_by(f64::total_cmp);
            let pick = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
            println!(
                "{{\"jobs\":{},\"elems\":{},\"depth\":{},\"seconds\":{:.2},\"lat_median_ms\":{:.2},\"lat_p90_ms\":{:.2},\"lat_max_ms\":{:.2},\"ok\":true}}",
                o.jobs,
                b.elems,
                b.depth,
                elapsed,
                pick(0.5),
                pick(0.9),
                pick(1.0)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{{\"elems\":{},\"depth\":{},\"seconds\":{elapsed:.2},\"ok\":false,\"error\":{:?}}}", b.elems, b.depth, e);
            Ok(ExitCode::FAILURE)
        }
    }
}
