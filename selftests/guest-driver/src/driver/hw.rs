//! Register access for the driver: BAR0 registers, BAR1/BAR3 windows and the PRAMIN window,
//! all counted per BAR (the record's `bar_access`).

use crate::record::BarCount;
use crate::transport::{Bar, Transport};
use gpuvm_uapi::gf100::{bad, pbus};
use std::time::{Duration, Instant};

/// How long a register poll may take before the driver gives up (nouveau uses 2 s).
pub const POLL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct HwError(pub String);

impl std::fmt::Display for HwError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for HwError {}

pub type Result<T> = std::result::Result<T, HwError>;

pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(HwError(msg.into()))
}

pub struct Hw {
    t: Box<dyn Transport>,
    counts: [BarCount; 3],
    /// Current PRAMIN window base (VRAM address of the 1 MiB window), if set by us.
    pramin: Option<u64>,
}

impl Hw {
    pub fn new(t: Box<dyn Transport>) -> Self {
        Hw { t, counts: Default::default(), pramin: None }
    }

    pub fn transport(&mut self) -> &mut dyn Transport {
        &mut *self.t
    }

    pub fn counts(&self) -> [BarCount; 3] {
        self.counts
    }

    pub fn rd(&mut self, reg: u32) -> u32 {
        self.bar_rd(Bar::Bar0, reg as u64)
    }

    pub fn wr(&mut self, reg: u32, v: u32) {
        self.bar_wr(Bar::Bar0, reg as u64, v)
    }

    /// Read-modify-write: clear `clear`, then set `set`.
    pub fn mask(&mut self, reg: u32, clear: u32, set: u32) -> u32 {
        let old = self.rd(reg);
        self.wr(reg, (old & !clear) | set);
        old
    }

    pub fn bar_rd(&mut self, bar: Bar, off: u64) -> u32 {
        self.counts[bar as usize].reads += 1;
        self.t.rd32(bar, off)
    }

    pub fn bar_wr(&mut self, bar: Bar, off: u64, v: u32) {
        self.counts[bar as usize].writes += 1;
        self.t.wr32(bar, off, v)
    }

    pub fn bar_write_block(&mut self, bar: Bar, off: u64, data: &[u8]) {
        self.counts[bar as usize].writes += data.len() as u64 / 4;
        self.t.write_block(bar, off, data)
    }

    pub fn bar_read_block(&mut self, bar: Bar, off: u64, data: &mut [u8]) {
        self.counts[bar as usize].reads += data.len() as u64 / 4;
        self.t.read_block(bar, off, data)
    }

    /// Poll `reg` until `cond(value)` holds.
    pub fn wait(&mut self, reg: u32, what: &str, cond: impl Fn(u32) -> bool) -> Result<u32> {
        let start = Instant::now();
        loop {
            let v = self.rd(reg);
            if cond(v) {
                return Ok(v);
            }
            if start.elapsed() > POLL_TIMEOUT {
                return fail(format!("timeout waiting for {what} (reg {reg:#08x} = {v:#010x})"));
            }
            self.t.pump();
            std::thread::yield_now();
        }
    }

    /// Point the PRAMIN window at the 1 MiB of VRAM containing `addr`; returns the BAR0 offset.
    fn pramin_at(&mut self, addr: u64) -> u32 {
        let base = addr & !(pbus::PRAMIN_WINDOW_SIZE as u64 - 1);
        if self.pramin != Some(base) {
            self.wr(pbus::PraminBase::OFFSET, pbus::PraminBase::default().with_addr(base).raw());
            self.pramin = Some(base);
        }
        pbus::PRAMIN_WINDOW + (addr - base) as u32
    }

    pub fn pramin_wr32(&mut self, addr: u64, v: u32) {
        let r = self.pramin_at(addr);
        self.wr(r, v)
    }

    pub fn pramin_rd32(&mut self, addr: u64) -> u32 {
        let r = self.pramin_at(addr);
        self.rd(r)
    }

    /// Flush BAR writes (PFLUSH).
    pub fn bar_flush(&mut self) -> Result<()> {
        self.wr(pbus::FLUSH, pbus::FLUSH_TRIGGER);
        self.wait(pbus::FLUSH, "BAR flush", |v| v & pbus::FLUSH_BUSY == 0).map(|_| ())
    }

    /// A read that returned one of the model's error patterns.
    pub fn is_bad(v: u32) -> bool {
        v & 0xffff_ff00 == bad::NO_REGISTER || v & 0xffff_ff00 == bad::UNIT_DISABLED || v & 0xffff_ff00 == bad::VM_FAULT
    }
}
