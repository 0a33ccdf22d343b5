//! `gf100-model --socket PATH [--vram-mib N] [--stats PATH]`: serves one model GPU to one
//! vfio-user client and exits 0 when the client disconnects.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gf100_model::server::{GpuServer, READY_LINE_PREFIX};
use gf100_model::{Gpu, ModelConfig};

const USAGE: &str = "usage: gf100-model --socket PATH [--vram-mib N] [--stats PATH]
  --socket PATH   vfio-user socket to create (must not exist)
  --vram-mib N    VRAM size in MiB (default 1024; 6144 like a Quadro 6000)
  --stats PATH    write counters as JSON to PATH every second and at exit
Prints \"gf100-model: listening on PATH ...\" on stderr once PATH accepts connections.";

struct Args {
    socket: PathBuf,
    vram_mib: u64,
    stats: Option<PathBuf>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut socket, mut vram_mib, mut stats) = (None, 1024u64, None);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--socket" => socket = Some(PathBuf::from(value("--socket")?)),
            "--vram-mib" => {
                let v = value("--vram-mib")?;
                vram_mib = v
                    .parse()
                    .map_err(|_| format!("--vram-mib: not a number: {v}"))?;
                if vram_mib == 0 || vram_mib > 128 * 1024 {
                    return Err(format!("--vram-mib: {vram_mib} out of range (1..=131072)"));
                }
            }
            "--stats" => stats = Some(PathBuf::from(value("--stats")?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(Args {
        socket: socket.ok_or("--socket is required")?,
        vram_mib,
        stats,
    })
}

fn write_stats(gpu: &Gpu, path: &PathBuf) {
    let json = format!(
        "{{\"vram_bytes\": {}, \"counters\": {}}}\n",
        gpu.config().vram_bytes,
        gpu.counters().to_json()
    );
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        eprintln!("gf100-model: cannot write stats to {}", path.display());
    }
}

/// Warnings and errors (of the server and the vfio-user crate) to stderr; more with
/// `GF100_MODEL_LOG=info|debug`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("gf100-model: {}: {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn init_log() {
    let level = match std::env::var("GF100_MODEL_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    if log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(level);
    }
}

fn main() -> ExitCode {
    init_log();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("gf100-model: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cfg = ModelConfig {
        vram_bytes: args.vram_mib << 20,
        ..ModelConfig::default()
    };
    let gpu = match Gpu::new(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gf100-model: cannot create the GPU: {e}");
            return ExitCode::from(1);
        }
    };
    let server = match GpuServer::bind(&args.socket, gpu.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "gf100-model: cannot listen on {}: {e}",
                args.socket.display()
            );
            return ExitCode::from(1);
        }
    };
    // The readiness signal harnesses wait for: printed only now that the socket listens.
    eprintln!(
        "{READY_LINE_PREFIX}{} ({} MiB VRAM)",
        args.socket.display(),
        args.vram_mib
    );
    let done = Arc::new(AtomicBool::new(false));
    let stats_thread = args.stats.clone().map(|path| {
        let (gpu, done) = (gpu.clone(), done.clone());
        std::thread::spawn(move || {
            // Rewrite every second; notice the end within 100 ms.
            let mut tick = 0u32;
            while !done.load(Ordering::Relaxed) {
                if tick.is_multiple_of(10) {
                    write_stats(&gpu, &path);
                }
                tick = tick.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let result = server.serve();
    done.store(true, Ordering::Relaxed);
    if let Some(t) = stats_thread {
        let _ = t.join();
    }
    gpu.shutdown();
    if let Some(path) = &args.stats {
        write_stats(&gpu, path);
    }
    match result {
        Ok(()) => {
            eprintln!("gf100-model: client disconnected; exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gf100-model: server error: {e}");
            ExitCode::from(1)
        }
    }
}
