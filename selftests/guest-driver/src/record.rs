//! Per-phase timing and the one-line JSON record every workload prints.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The phases of the reproduction's breakdown tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Init,
    MemAlloc,
    HtoD,
    Launch,
    DtoH,
    Close,
}

impl Phase {
    pub const ALL: [Phase; 6] = [Phase::Init, Phase::MemAlloc, Phase::HtoD, Phase::Launch, Phase::DtoH, Phase::Close];
    pub fn name(self) -> &'static str {
        match self {
            Phase::Init => "Init",
            Phase::MemAlloc => "MemAlloc",
            Phase::HtoD => "HtoD",
            Phase::Launch => "Launch",
            Phase::DtoH => "DtoH",
            Phase::Close => "Close",
        }
    }
}

/// Whether [`Phases::time`] prints a `gpuvm-mark PHASE begin|end TSC` line to stderr around
/// each timed piece (`gpuvm-bench --marks`), TSC being the CPU's time-stamp counter: a guest
/// whose kernel clock cannot be trusted (the nested guest's lean kernel under TCG in TCG runs
/// on jiffies and loses ticks) has its phases timed by a host that knows the counter's rate
/// (under TCG the guest's TSC follows the host's), since the console delivers the lines late.
static MARKS: AtomicBool = AtomicBool::new(false);

/// Turns the phase marks of [`Phases::time`] on or off (process-wide).
pub fn set_marks(on: bool) {
    MARKS.store(on, Ordering::Relaxed);
}

/// The CPU's time-stamp counter (0 where there is none).
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no memory effects; every x86_64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Accumulated wall time per phase.
#[derive(Default, Clone, Debug)]
pub struct Phases {
    t: [Duration; 6],
}

impl Phases {
    /// Run `f` and charge its time to `p`.
    pub fn time<R>(&mut self, p: Phase, f: impl FnOnce() -> R) -> R {
        let marks = MARKS.load(Ordering::Relaxed);
        if marks {
            eprintln!("gpuvm-mark {} begin {}", p.name(), tsc());
        }
        let s = Instant::now();
        let r = f();
        self.t[p as usize] += s.elapsed();
        if marks {
            eprintln!("gpuvm-mark {} end {}", p.name(), tsc());
        }
        r
    }
    pub fn add(&mut self, p: Phase, d: Duration) {
        self.t[p as usize] += d;
    }
    pub fn get(&self, p: Phase) -> Duration {
        self.t[p as usize]
    }
    pub fn total(&self) -> Duration {
        self.t.iter().sum()
    }
}

/// Driver-side accesses per BAR.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarCount {
    pub reads: u64,
    pub writes: u64,
}

/// Escape a string for JSON.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The result of one workload run.
#[derive(Clone, Debug)]
pub struct Record {
    pub workload: String,
    pub device: String,
    pub ok: bool,
    /// First mismatch (or error) when !ok.
    pub error: Option<String>,
    pub phases: Phases,
    /// [bar0, bar1, bar3] driver-side access counts.
    pub bars: [BarCount; 3],
    /// Workload-specific key/values (sizes, iterations, derived figures), already JSON values.
    pub extra: Vec<(String, String)>,
}

impl Record {
    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        let _ = write!(s, "\"workload\":{},\"device\":{},\"ok\":{}", json_str(&self.workload), json_str(&self.device), self.ok);
        if let Some(e) = &self.error {
            let _ = write!(s, ",\"error\":{}", json_str(e));
        }
        s.push_str(",\"phases_us\":{");
        for (i, p) in Phase::ALL.iter().enumerate() {
            let _ = write!(s, "{}\"{}\":{}", if i > 0 { "," } else { "" }, p.name(), self.phases.get(*p).as_micros());
        }
        let _ = write!(s, "}},\"total_us\":{},\"bar_access\":{{", self.phases.total().as_micros());
        for (i, (n, c)) in ["bar0", "bar1", "bar3"].iter().zip(self.bars.iter()).enumerate() {
            let _ = write!(s, "{}\"{n}\":{{\"rd\":{},\"wr\":{}}}", if i > 0 { "," } else { "" }, c.reads, c.writes);
        }
        s.push('}');
        for (k, v) in &self.extra {
            let _ = write!(s, ",{}:{}", json_str(k), v);
        }
        s.push('}');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_shape() {
        let mut ph = Phases::default();
        ph.time(Phase::HtoD, || std::thread::sleep(Duration::from_millis(1)));
        let r = Record {
            workload: "x\"y".into(),
            device: "model".into(),
            ok: false,
            error: Some("out[3]".into()),
            phases: ph,
            bars: [BarCount { reads: 1, writes: 2 }, BarCount::default(), BarCount { reads: 0, writes: 7 }],
            extra: vec![("n".into(), "16".into())],
        };
        let j = r.to_json();
        assert!(j.starts_with("{\"workload\":\"x\\\"y\",\"device\":\"model\",\"ok\":false,\"error\":\"out[3]\""));
        assert!(j.contains("\"bar0\":{\"rd\":1,\"wr\":2}"));
        assert!(j.contains("\"bar3\":{\"rd\":0,\"wr\":7}"));
        assert!(j.contains("\"Init\":0"));
        assert!(j.ends_with(",\"n\":16}"));
        assert!(!j.contains('\n'));
    }
}
