//! Workloads: Rodinia-like applications (hotspot, lud, srad, needle) and mmul, plus micro
//! benchmarks. Each runs the phases Init, MemAlloc, HtoD, Launch, DtoH, Close against a
//! device, checks the device's result against a CPU reference and yields one [`Record`].

pub mod micro;
pub mod rodinia;

use crate::driver::{Gpu, HwError};
use crate::record::{Phase, Phases, Record};
use crate::transport::Transport;
use std::io;

/// Opens a fresh transport to the device under test (called once per device open).
pub type Opener<'a> = &'a dyn Fn() -> io::Result<Box<dyn Transport>>;

/// Problem sizes: the runner's Rodinia-like defaults, or small ones for host tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Default,
    Small,
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub size: Size,
    /// Flip one element of the device's result before checking (shows the checker failing).
    pub corrupt_one: bool,
    /// Interrupt-driven fence waits (with the poll fallback); false = poll only.
    pub use_irq: bool,
    /// Channel id to use.
    pub chid: u32,
    /// Override of the iteration count of loop-style micro benchmarks.
    pub iters: Option<u32>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { size: Size::Default, corrupt_one: false, use_irq: true, chid: 0, iters: None }
    }
}

/// A workload's outcome before it becomes a record: Ok(()) or the first mismatch.
pub type Check = std::result::Result<(), String>;

/// What a workload body gets: the open device, the phase clock and a place for extra fields.
pub struct Ctx<'a> {
    pub gpu: &'a mut Gpu,
    pub ph: &'a mut Phases,
    pub extra: &'a mut Vec<(String, String)>,
    pub opts: &'a Opts,
}

impl Ctx<'_> {
    /// Run `f` on the device and charge it to phase `p`.
    pub fn timed<R>(&mut self, p: Phase, f: impl FnOnce(&mut Gpu) -> Result<R, HwError>) -> Result<R, HwError> {
        let gpu = &mut *self.gpu;
        self.ph.time(p, || f(gpu))
    }
    pub fn put(&mut self, k: &str, v: impl ToString) {
        self.extra.push((k.to_string(), v.to_string()));
    }
}

/// The workloads by name.
pub const NAMES: &[&str] = &[
    "hotspot",
    "lud",
    "srad",
    "needle",
    "mmul",
    "init_close",
    "malloc_free",
    "copy",
    "launch_latency",
    "fence_latency",
];

/// Run workload `name` against the device `open` gives.
pub fn run(name: &str, open: Opener, opts: &Opts) -> Record {
    let body: fn(&mut Ctx) -> Result<Check, HwError> = match name {
        "hotspot" => rodinia::hotspot,
        "lud" => rodinia::lud,
        "srad" => rodinia::srad,
        "needle" => rodinia::needle,
        "mmul" => rodinia::mmul,
        "malloc_free" => micro::malloc_free,
        "copy" => micro::copy,
        "launch_latency" => micro::launch_latency,
        "fence_latency" => micro::fence_latency,
        "init_close" => return micro::init_close(open, opts),
        _ => return failed(name, "?", format!("unknown workload (known: {})", NAMES.join(", "))),
    };
    run_body(name, open, opts, body)
}

fn failed(name: &str, device: &str, error: String) -> Record {
    Record { workload: name.into(), device: device.into(), ok: false, error: Some(error), phases: Phases::default(), bars: Default::default(), extra: vec![] }
}

/// Open (Init), run the body, close (Close), and build the record.
pub fn run_body(name: &str, open: Opener, opts: &Opts, body: fn(&mut Ctx) -> Result<Check, HwError>) -> Record {
    let mut ph = Phases::default();
    let mut extra = Vec::new();
    let gpu = ph.time(Phase::Init, || -> Result<Gpu, String> {
        let t = open().map_err(|e| format!("open: {e}"))?;
        Gpu::open(t, opts.chid, opts.use_irq).map_err(|e| format!("init: {e}"))
    });
    let mut gpu = match gpu {
        Ok(g) => g,
        Err(e) => return failed(name, "?", e),
    };
    let device = gpu.describe();
    let res = body(&mut Ctx { gpu: &mut gpu, ph: &mut ph, extra: &mut extra, opts });
    let (words, doorbells) = gpu.channel_counts();
    let ptes = gpu.pte_writes();
    let closed = ph.time(Phase::Close, || gpu.close());
    let bars = closed.as_ref().map(|c| c.counts).unwrap_or_default();
    if let Ok(c) = &closed {
        extra.extend(c.stats_fields());
    }
    let (ok, error) = match (res, closed) {
        (Ok(Ok(())), Ok(_)) => (true, None),
        (Ok(Err(mismatch)), _) => (false, Some(mismatch)),
        (Err(e), _) => (false, Some(format!("device error: {e}"))),
        (Ok(Ok(())), Err(e)) => (false, Some(format!("close: {e}"))),
    };
    extra.push(("pushbuf_words".into(), words.to_string()));
    extra.push(("doorbells".into(), doorbells.to_string()));
    extra.push(("pte_writes".into(), ptes.to_string()));
    Record { workload: name.into(), device, ok, error, phases: ph, bars, extra }
}

// ---- helpers shared by the workloads ------------------------------------------------------

/// Deterministic xorshift64* generator (inputs must be identical run to run).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Kernel parameters laid out at the byte offsets uapi::kernels declares.
pub struct Params(Vec<u8>);

impl Params {
    pub fn new(bytes: u32) -> Self {
        Params(vec![0; (bytes as usize).next_multiple_of(4)])
    }
    pub fn ptr(mut self, off: u32, va: u64) -> Self {
        self.0[off as usize..off as usize + 8].copy_from_slice(&va.to_le_bytes());
        self
    }
    pub fn u32(mut self, off: u32, v: u32) -> Self {
        self.0[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(self, off: u32, v: i32) -> Self {
        self.u32(off, v as u32)
    }
    pub fn f32(self, off: u32, v: f32) -> Self {
        self.u32(off, v.to_bits())
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Element types the checker compares (bit-exact: the model's arithmetic is specified to the
/// operation order, so the CPU reference reproduces it exactly).
pub trait Elem: Copy + PartialEq + std::fmt::Debug {
    fn to_bytes(v: &[Self]) -> Vec<u8>;
    fn from_bytes(b: &[u8]) -> Vec<Self>;
    fn same(a: Self, b: Self) -> bool;
    /// A different value (for --corrupt-one).
    fn corrupt(self) -> Self;
}

impl Elem for f32 {
    fn to_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    fn from_bytes(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4).map(|w| f32::from_le_bytes(w.try_into().unwrap())).collect()
    }
    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits()
    }
    fn corrupt(self) -> f32 {
        f32::from_bits(self.to_bits() ^ 1)
    }
}

/// Integer elements compare exactly; corrupting flips the lowest bit.
macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn to_bytes(v: &[$t]) -> Vec<u8> {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
            fn from_bytes(b: &[u8]) -> Vec<$t> {
                b.chunks_exact(std::mem::size_of::<$t>()).map(|w| <$t>::from_le_bytes(w.try_into().unwrap())).collect()
            }
            fn same(a: $t, b: $t) -> bool {
                a == b
            }
            fn corrupt(self) -> $t {
                self ^ 1
            }
        }
    )*};
}
int_elem!(i32, u32, u8);

/// Compare a device result with the reference; `cols` > 0 reports (row, col). With
/// `corrupt`, one element (the middle one) of `got` is altered first.
pub fn check<T: Elem>(what: &str, got: &mut [T], want: &[T], cols: usize, corrupt: bool) -> Check {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} != {}", got.len(), want.len()));
    }
    if corrupt && !got.is_empty() {
        let i = got.len() / 2;
        got[i] = got[i].corrupt();
    }
    let bad: Vec<usize> = (0..got.len()).filter(|&i| !T::same(got[i], want[i])).collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => {
            let at = if cols > 0 { format!("[{}][{}] (index {i})", i / cols, i % cols) } else { format!("[{i}]") };
            Err(format!("mismatch in {what}{at}: got {:?}, want {:?} ({} of {} elements differ)", got[i], want[i], bad.len(), got.len()))
        }
    }
}
