//! The host side of an in-process model GPU for the tests of the host's own channels (the
//! scrubber, the guest-VRAM fetcher): its BARs, a clock to wait by, a kick lock that counts,
//! and the bring-up every such test starts from.
#![allow(dead_code)]

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gf100_model::{Bar, Gpu, ModelConfig};
use gpuvm_shadow_tests::host_channel::Waiter;
use gpuvm_shadow_tests::host_gpu::{self, HostBars, HostRunlist, KickLock, GUEST_CHANNELS, HOST_VRAM_RESERVED};
use gpuvm_shadow_tests::host_init::{self, layout, Mmio};
use gpuvm_shadow_tests::host_pool::HostPool;
use gpuvm_shadow_tests::memory::Clock;
use gpuvm_shadow_tests::partition::Pools;

pub const MIB: u64 = 1 << 20;
pub const BAR3_SIZE: u64 = 64 * MIB;

/// The host's BARs of a model GPU.
pub struct ModelBars {
    pub gpu: Arc<Gpu>,
    pub pramin: Mutex<Cell<Option<u32>>>,
}

impl Mmio for ModelBars {
    fn rd(&self, off: u32) -> u32 {
        self.gpu.bar_read32(Bar::Bar0, u64::from(off))
    }
    fn wr(&self, off: u32, val: u32) {
        self.gpu.bar_write32(Bar::Bar0, u64::from(off), val)
    }
}

impl HostBars for ModelBars {
    fn bar1_write32(&self, off: u64, v: u32) {
        self.gpu.bar_write32(Bar::Bar1, off, v)
    }
    fn bar3_read32(&self, off: u64) -> u32 {
        self.gpu.bar_read32(Bar::Bar3, off)
    }
    fn bar3_write32(&self, off: u64, v: u32) {
        self.gpu.bar_write32(Bar::Bar3, off, v)
    }
    fn with_pramin<R>(&self, f: impl FnOnce(&Cell<Option<u32>>) -> R) -> R {
        f(&self.pramin.lock().unwrap())
    }
}

/// Real time plus a skew a test may add (to make a pending operation old without waiting).
pub struct HostWait(pub Instant, pub Cell<u64>);

impl HostWait {
    pub fn new() -> Self {
        HostWait(Instant::now(), Cell::new(0))
    }
}

impl Clock for HostWait {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64 + self.1.get()
    }
}

impl Waiter for HostWait {
    fn pause(&self) {
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// The GPU's kick lock as the tests see it: counts the kicks made under it and fails a kick
/// made while one is in progress (the KICK register is one per GPU).
#[derive(Default)]
pub struct Kicks {
    held: Cell<bool>,
    pub count: Cell<u32>,
}

impl KickLock for Kicks {
    fn hold<R>(&self, f: impl FnOnce() -> R) -> R {
        assert!(!self.held.replace(true), "a kick under a kick");
        self.count.set(self.count.get() + 1);
        let r = f();
        self.held.set(false);
        r
    }
}

/// A model GPU brought up by the host: its BARs, the guest pool, the host pool (after the
/// runlists) and the host runlist; BAR3 maps host VRAM `[0, bar3_mapped)`.
pub struct Brought {
    pub bars: ModelBars,
    pub pools: Pools,
    pub bar3_mapped: u64,
    pub pool: HostPool,
    pub runlist: HostRunlist,
}

/// A fresh model GPU of `vram_mib` MiB, brought up for the host.
pub fn bring_up(vram_mib: u64) -> Brought {
    let gpu = Gpu::new(ModelConfig { vram_bytes: vram_mib * MIB, ..ModelConfig::default() }).unwrap();
    let bars = ModelBars { gpu, pramin: Mutex::new(Cell::new(None)) };
    let up = host_init::bring_up(&bars, HOST_VRAM_RESERVED, BAR3_SIZE).unwrap();
    let pools = Pools::new(vram_mib * MIB, HOST_VRAM_RESERVED, 0, GUEST_CHANNELS).unwrap();
    let mut pool = HostPool::new(layout::FREE, up.bar3_mapped);
    let bufs = [pool.alloc(host_gpu::RUNLIST_BYTES).unwrap(), pool.alloc(host_gpu::RUNLIST_BYTES).unwrap()];
    Brought { bars, pools, bar3_mapped: up.bar3_mapped, pool, runlist: HostRunlist::new(bufs) }
}
