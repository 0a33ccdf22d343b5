//! The mediated transport: the guest driver → the module's mediator (the same `shadow/`
//! files the kernel module compiles) → the in-process GF100 model as the host GPU. Several
//! vGPUs share one model, as they share one GPU under gpuvm.ko, so isolation and sharing are
//! tested in `cargo test` without a VM.
//!
//! What the kernel glue does is done here the same way, over the model: the host brings the
//! GPU up (`host_init`), owns the host pool and the merged runlist (`host_gpu`), pins guest
//! system memory on demand (a per-vGPU IOMMU: guest IOVAs are translated to the model's bus
//! addresses, which differ per vGPU), and runs an interrupt thread that services the host
//! GPU's interrupt (`host_gpu::service_interrupt`) and delivers the events to every vGPU, whose
//! MSI is then signalled on a rising edge of its emulated line. A vGPU's VRAM slice is
//! scrubbed (`scrub.rs`, the copy engine on a host channel) when a vGPU is created on it, when
//! it is removed and on a device reset, so no tenant reads what another left.
//!
//! Guest doorbells go through the GPU's dispatcher (`shadow/dispatch.rs` over `sched/`), as
//! they will in the kernel: the mediator submits, the dispatcher forwards when the policy
//! picks the vGPU, and completion is looked for after every host interrupt and at the time the
//! dispatcher asks for (a timer thread: BAND's wait, the 1 ms fallback).

use super::{page_round, Bar, DmaBuf, IrqMode, Transport, PAGE};
use gf100_model::mem::HostMemory;
use gf100_model::{Gpu, ModelConfig};
use gpuvm_shadow::gf100::{pci, pfifo, ramfc};
use gpuvm_shadow::dispatch::{BarsHost, DispatchStats, Dispatcher, Next};
use gpuvm_shadow::host_channel::Waiter;
use gpuvm_shadow::sched::account::{VgpuId, VgpuStats};
use gpuvm_shadow::sched::knobs::{BandWait, Knobs, Period, PolicyKind, Weight};
use gpuvm_shadow::host_gpu::{self, HostBars, HostError, HostRunlist, HostVram, GUEST_CHANNELS, HOST_VRAM_RESERVED};
use gpuvm_shadow::host_init::{self, layout, Mmio};
use gpuvm_shadow::host_pool::HostPool;
use gpuvm_shadow::mediator::{Env, GuestMemory, HostChannels, Mediator, MediatorStats};
pub use gpuvm_shadow::mediator::host_userd;
use gpuvm_shadow::memory::{Clock, SysMem};
use gpuvm_shadow::partition::{Pools, Slice, UnitMap, UNITS};
use gpuvm_shadow::scrub::{ScrubError, ScrubStats, Scrubber};
use gpuvm_shadow::guest_fetch::{FetchStats, Fetcher, GuestFetch, Session, Staging, STAGING_BYTES};
use gpuvm_shadow::shadow_vm::{TableAlloc, TableMemory};
use gpuvm_shadow::HostStorage;
use gpuvm_shadow::sync_policy::SyncMode;
use gpuvm_shadow::vregs;
use gpuvm_shadow::watchdog::{BadLimit, Runaway, Watchdog};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Guest IOVAs handed out for DMA buffers (the same range in every vGPU: only the mediator's
/// translation keeps them apart).
const GUEST_IOVA_BASE: u64 = 1 << 32;
/// Model bus addresses of guest memory: vGPU n's buffers live at `(n + 1) << HOST_IOVA_SHIFT`.
const HOST_IOVA_SHIFT: u32 = 36;
/// Model bus address of the host's shadow-table memory (below every vGPU's buffers).
const SHADOW_TABLES_IOVA: u64 = 1 << 35;
/// How long the interrupt thread sleeps in one wait (it re-checks for shutdown between).
const IRQ_THREAD_SLICE: Duration = Duration::from_millis(20);
/// The host channel the scrubber uses: the first one the host keeps.
const SCRUB_CHANNEL: u32 = GUEST_CHANNELS;
/// The host channel the guest-VRAM fetcher uses (`guest_fetch.rs`): the next one.
const FETCH_CHANNEL: u32 = GUEST_CHANNELS + 1;
/// Model bus address of the fetcher's staging buffer: above every vGPU's DMA range
/// (`(n + 1) << HOST_IOVA_SHIFT`, n < 8) and inside the copy engine's 40-bit reach.
const STAGING_BUS: u64 = 0xf << HOST_IOVA_SHIFT;
/// How long the scrubber sleeps between two polls of its semaphore.
const SCRUB_POLL: Duration = Duration::from_micros(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the host owns of the GPU: the model, the host's VRAM pool and runlist, the slices.
/// Lock order: a vGPU's `state` → `dispatch` → `scrubber` → `runlist` → `pramin`, and a
/// vGPU's `state` → `fetch` → `pramin` / `kick_lock` (held from a sync's first fetch to its
/// end); `pool`, `tlb`, `units` and `scrubs` are leaves.
struct HostShared {
    gpu: Arc<Gpu>,
    boot0: u32,
    pools: Pools,
    bar3_mapped: u64,
    /// Bytes of the host pool at bring-up (vGPU quotas are shares of it).
    pool_bytes: u64,
    units: Mutex<UnitMap>,
    pool: Mutex<HostPool>,
    /// Shadow page tables: host system memory at [`SHADOW_TABLES_IOVA`], as large as the
    /// VRAM pool was after bring-up.
    sys_pool: Mutex<HostPool>,
    tables_mem: Arc<HostMemory>,
    runlist: Mutex<HostRunlist>,
    /// Where the one PRAMIN window points.
    pramin: Mutex<Cell<Option<u32>>>,
    /// Serialises host TLB flushes.
    tlb: Mutex<()>,
    /// Serialises host kicks and engine resets (`host_gpu::KickLock`).
    kick_lock: Mutex<()>,
    /// Channels `host_gpu::evict` stopped by resetting an engine: (host channel, engine).
    engine_resets: Mutex<Vec<(u32, u32)>>,
    /// The runaway-work watchdog (its limit is the `watchdog_ms` knob).
    watchdog: Mutex<Watchdog>,
    /// What the watchdog stopped.
    watchdog_kills: Mutex<Vec<WatchdogKill>>,
    lazy_shadow: AtomicBool,
    vgpus: Mutex<Vec<Weak<VgpuShared>>>,
    /// Host operations that failed (the kernel logs them): tests assert there are none.
    host_errors: Mutex<Vec<HostError>>,
    /// The copy-engine scrubber on the host's own channel.
    scrubber: Mutex<Option<Scrubber>>,
    /// The copy-engine fetcher shadow syncs read guest tables through, and its staging
    /// buffer (None once shut down).
    fetch: Mutex<Option<FetchState>>,
    /// Whether syncs use the fetcher (a test knob: off to measure PRAMIN reads alone).
    fetch_on: AtomicBool,
    /// Whether slices are scrubbed (a test knob: off only to show a test can see a leak).
    scrub_on: AtomicBool,
    /// What the scrubs did and how they failed (the kernel logs them).
    scrubs: Mutex<ScrubLog>,
    epoch: Instant,
    /// Non-stall interrupts no vGPU's progress explained (given to every vGPU).
    nonstall_unclaimed: AtomicU64,
    next_host_iova: AtomicU64,
    stop: AtomicBool,
    /// The GPU's dispatcher and when it asked to be polled next; `dispatch_wake` wakes the
    /// timer thread when that changes.
    dispatch: Mutex<DispatchState>,
    dispatch_wake: Condvar,
}

/// The dispatcher and its timer.
pub struct DispatchState {
    d: Box<Dispatcher>,
    /// When to poll next (none: at the next doorbell).
    at: Option<u64>,
    /// GPU time and counts of submissions charged before a vGPU's last reset (a reset drops
    /// its queued work by removing it from the scheduler, which forgets its counters).
    carried: [VgpuStats; 8],
}

impl DispatchState {
    fn after(&mut self, n: Next) -> bool {
        let at = match n {
            Next::At(t) => Some(t),
            Next::Idle => None,
        };
        let changed = at != self.at;
        self.at = at;
        changed
    }
}

/// The host's BARs of the model GPU.
struct ModelBars<'a>(&'a HostShared);

impl Mmio for ModelBars<'_> {
    fn rd(&self, off: u32) -> u32 {
        self.0.gpu.bar_read32(gf100_model::Bar::Bar0, u64::from(off))
    }
    fn wr(&self, off: u32, val: u32) {
        self.0.gpu.bar_write32(gf100_model::Bar::Bar0, u64::from(off), val)
    }
}

impl HostBars for ModelBars<'_> {
    fn bar1_write32(&self, off: u64, v: u32) {
        self.0.gpu.bar_write32(gf100_model::Bar::Bar1, off, v)
    }
    fn bar3_read32(&self, off: u64) -> u32 {
        self.0.gpu.bar_read32(gf100_model::Bar::Bar3, off)
    }
    fn bar3_write32(&self, off: u64, v: u32) {
        self.0.gpu.bar_write32(gf100_model::Bar::Bar3, off, v)
    }
    fn with_pramin<R>(&self, f: impl FnOnce(&Cell<Option<u32>>) -> R) -> R {
        f(&lock(&self.0.pramin))
    }
}

/// Shadow page tables from the host's system-memory pool (DMA-mapped into the model, as
/// the kernel's coherent allocation is), instance blocks from the host VRAM pool; each pool
/// locked per call, as the kernel does.
struct PoolTables<'a>(&'a HostShared, TablesMem<'a>);

impl<'a> PoolTables<'a> {
    fn new(h: &'a HostShared) -> Self {
        PoolTables(h, TablesMem(h))
    }
}

/// The system memory behind [`HostShared::sys_pool`], by model bus address.
struct TablesMem<'a>(&'a HostShared);

impl TableMemory for TablesMem<'_> {
    fn read32(&self, bus: u64) -> u32 {
        bus.checked_sub(SHADOW_TABLES_IOVA).and_then(|off| self.0.tables_mem.read32(off)).unwrap_or(u32::MAX)
    }
    fn write32(&mut self, bus: u64, v: u32) {
        if let Some(off) = bus.checked_sub(SHADOW_TABLES_IOVA) {
            self.0.tables_mem.write32(off, v);
        }
    }
}

impl TableAlloc for PoolTables<'_> {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        lock(&self.0.sys_pool).alloc(bytes)
    }
    fn free(&mut self, addr: u64, bytes: u64) {
        if !lock(&self.0.sys_pool).free(addr, bytes) {
            panic!("shadow-table pool: freeing {addr:#x}+{bytes:#x} that was not allocated");
        }
    }
    fn memory(&mut self) -> Option<&mut dyn TableMemory> {
        Some(&mut self.1)
    }
    fn alloc_inst(&mut self, bytes: u64) -> Option<u64> {
        lock(&self.0.pool).alloc(bytes)
    }
    fn free_inst(&mut self, addr: u64, bytes: u64) {
        if !lock(&self.0.pool).free(addr, bytes) {
            panic!("host pool: freeing {addr:#x}+{bytes:#x} that was not allocated");
        }
    }
}

/// The fetcher and its staging buffer.
struct FetchState {
    fetcher: Fetcher,
    staging: ModelStaging,
}

/// The staging buffer: model memory mapped for DMA at [`STAGING_BUS`].
struct ModelStaging(Arc<HostMemory>);

impl Staging for ModelStaging {
    fn bus(&self) -> u64 {
        STAGING_BUS
    }
    fn bytes(&self) -> u64 {
        self.0.len()
    }
    fn read32(&self, off: u64) -> u32 {
        self.0.read32(off).unwrap_or(u32::MAX)
    }
}

/// The GPU's fetcher as one sync uses it: locked at the sync's first fetch, let go at its
/// end, so no other vGPU's fetch overwrites a staged chunk meanwhile.
struct ModelFetch<'a> {
    h: &'a HostShared,
    held: Option<MutexGuard<'a, Option<FetchState>>>,
}

impl GuestFetch for ModelFetch<'_> {
    fn fetch(&mut self, slot: usize, pa: u64) -> bool {
        let h = self.h;
        let held = self.held.get_or_insert_with(|| lock(&h.fetch));
        let Some(FetchState { fetcher, staging }) = held.as_mut() else { return false };
        Session { fetcher, staging, bars: &ModelBars(h), w: &HostClock(h.epoch), kick_lock: &KickLock(h) }.fetch(slot, pa)
    }
    fn staged32(&self, slot: usize, off: u64) -> u32 {
        let st = self.held.as_ref().and_then(|g| g.as_ref());
        st.map_or(u32::MAX, |st| st.staging.slot32(slot, off))
    }
    fn end(&mut self) {
        self.held = None;
    }
}

/// The host channel controls over the model's registers, for vGPU `1` (its dispatcher slot),
/// with the GPU's fetcher for its syncs.
struct ModelChannels<'a>(&'a HostShared, Option<VgpuId>, ModelFetch<'a>);

impl HostChannels for ModelChannels<'_> {
    fn bind(&mut self, host_chid: u32, inst: Option<u64>) {
        host_gpu::bind_channel(&ModelBars(self.0), host_chid, inst)
    }
    fn set_runnable(&mut self, host_chid: u32, runnable: bool) {
        host_gpu::set_runnable(&ModelBars(self.0), host_chid, runnable)
    }
    fn kick(&mut self, host_chid: u32) -> Result<(), HostError> {
        use host_gpu::KickLock as _;
        KickLock(self.0).hold(|| host_gpu::kick(&ModelBars(self.0), &HostClock(self.0.epoch), host_chid))
    }
    fn evict(&mut self, host_chid: u32) -> Result<host_gpu::Evicted, HostError> {
        self.0.evict(host_chid)
    }
    fn ring_doorbell(&mut self, host_chid: u32, put: u32) {
        host_gpu::ring_doorbell(&ModelBars(self.0), host_chid, put)
    }
    fn submit(&mut self, host_chid: u32, put: u32) {
        let Some(v) = self.1 else { return self.ring_doorbell(host_chid, put) };
        let h = self.0;
        let now = h.now_ns();
        let mut ds = lock(&h.dispatch);
        let n = ds.d.submit(&mut BarsHost(&ModelBars(h), Some(&lock(&h.runlist))), v, host_chid, put, now);
        if ds.after(n) {
            h.dispatch_wake.notify_all();
        }
    }
    fn commit_runlist(&mut self, part: gpuvm_shadow::channel::RunlistPart) -> Result<(), HostError> {
        lock(&self.0.runlist).commit(&ModelBars(self.0), &HostClock(self.0.epoch), self.0.bar3_mapped, part).map(|_| ())
    }
    fn chan_busy(&mut self, host_chid: u32) -> bool {
        host_gpu::chan_busy(&ModelBars(self.0), host_chid)
    }
    fn tlb_flush(&mut self, pd: u64, sysmem: bool) -> Result<(), HostError> {
        let _serialised = lock(&self.0.tlb);
        host_gpu::tlb_flush(&ModelBars(self.0), &HostClock(self.0.epoch), pd, sysmem)
    }
    fn drain_events(&mut self) {
        host_gpu::drain_events(&ModelBars(self.0), &HostClock(self.0.epoch));
    }
    fn sync_mode(&self) -> SyncMode {
        if self.0.lazy_shadow.load(Ordering::Relaxed) {
            SyncMode::Lazy
        } else {
            SyncMode::Naive
        }
    }
    fn report(&mut self, what: HostError) {
        lock(&self.0.host_errors).push(what);
    }
    fn guest_fetch(&mut self) -> Option<&mut dyn GuestFetch> {
        if !self.0.fetch_on.load(Ordering::Relaxed) {
            return None;
        }
        Some(&mut self.2)
    }
}

struct HostClock(Instant);

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Waiter for HostClock {
    fn pause(&self) {
        std::thread::sleep(SCRUB_POLL);
    }
}

/// One channel the watchdog stopped, and how (`Preempted`: switched out, not killed).
#[derive(Clone, Copy, Debug)]
pub struct WatchdogKill {
    pub runaway: Runaway,
    /// The slice index (first unit) of the vGPU that owned it.
    pub vgpu: u32,
    pub evicted: Result<host_gpu::Evicted, HostError>,
}

/// Every scrub so far: how many, their totals, and the failures.
#[derive(Clone, Debug, Default)]
pub struct ScrubLog {
    pub scrubs: u64,
    pub total: ScrubStats,
    pub errors: Vec<ScrubError>,
}

/// The GPU's kick lock as `host_gpu` asks for it.
struct KickLock<'a>(&'a HostShared);

impl host_gpu::KickLock for KickLock<'_> {
    fn hold<R>(&self, f: impl FnOnce() -> R) -> R {
        let _serialised = lock(&self.0.kick_lock);
        f()
    }
}

impl HostShared {
    /// Stops host channel `host_chid` for good (`host_gpu::evict`), recording an engine reset.
    fn evict(&self, host_chid: u32) -> Result<host_gpu::Evicted, HostError> {
        let r = host_gpu::evict(&ModelBars(self), &HostClock(self.epoch), &KickLock(self), host_chid);
        if let Ok(host_gpu::Evicted::EngineReset(engine)) = r {
            lock(&self.engine_resets).push((host_chid, engine));
        }
        r
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Looks for the running submission's completion and dispatches what is next (after a
    /// host interrupt, or at the time the dispatcher asked for).
    fn dispatch_poll(&self) {
        let now = self.now_ns();
        let mut ds = lock(&self.dispatch);
        let n = ds.d.poll(&mut BarsHost(&ModelBars(self), Some(&lock(&self.runlist))), now);
        if ds.after(n) {
            self.dispatch_wake.notify_all();
        }
    }

    /// Zeroes `slice`'s VRAM with the copy engine (unless the test knob turned scrubbing
    /// off), recording the outcome.
    fn scrub(&self, slice: &Slice) -> Result<(), ScrubError> {
        if !self.scrub_on.load(Ordering::Relaxed) {
            return Ok(());
        }
        let r = match lock(&self.scrubber).as_mut() {
            Some(s) => s.scrub_slice(&ModelBars(self), &HostClock(self.epoch), &KickLock(self), slice),
            None => Err(ScrubError::NoHostVram),
        };
        let mut log = lock(&self.scrubs);
        match r {
            Ok(st) => {
                log.scrubs += 1;
                log.total.add(st);
            }
            Err(e) => log.errors.push(e),
        }
        r.map(|_| ())
    }
}

/// One guest DMA mapping: guest IOVA range → model bus address.
#[derive(Clone, Copy)]
struct Mapping {
    len: u64,
    host: u64,
}

/// A vGPU's IOMMU and pin cache (what VFIO's emulated IOMMU and `vfio_pin_pages` give the
/// kernel glue).
#[derive(Default)]
struct GuestSys {
    maps: BTreeMap<u64, Mapping>,
    /// Pinned guest page → model bus address.
    pinned: BTreeMap<u64, u64>,
}

impl GuestSys {
    fn translate(&self, iova: u64) -> Option<u64> {
        let (&base, m) = self.maps.range(..=iova).next_back()?;
        (iova - base < m.len).then(|| m.host + (iova - base))
    }
}

impl SysMem for GuestSys {
    fn pin(&mut self, iova: u64, len: u64) -> Option<u64> {
        let first = iova & !(PAGE as u64 - 1);
        let end = iova.checked_add(len.max(1))?;
        let base = self.translate(first)?;
        let mut page = first;
        while page < end {
            let host = self.translate(page)?;
            if host != base + (page - first) {
                return None;
            }
            self.pinned.insert(page, host);
            page += PAGE as u64;
        }
        Some(base + (iova - first))
    }
}

impl GuestMemory for GuestSys {
    fn any_pinned(&self, iova: u64, len: u64) -> bool {
        self.pinned.range(iova & !(PAGE as u64 - 1)..iova.saturating_add(len)).next().is_some()
    }
    fn unpin_range(&mut self, iova: u64, len: u64) -> u64 {
        let keys: Vec<u64> = self.pinned.range(iova..iova.saturating_add(len)).map(|(k, _)| *k).collect();
        for k in &keys {
            self.pinned.remove(k);
        }
        keys.len() as u64
    }
}

/// A vGPU's state, under its lock (the kernel's per-vGPU state mutex).
struct VgpuState {
    med: Box<Mediator<HostStorage>>,
    sys: GuestSys,
    /// MSIs signalled and not yet taken by `irq_wait`.
    msi_pending: u32,
    open: bool,
}

/// Counters the kernel keeps outside the mediator (sysfs `mmio_traps`, `mmio_denied`).
#[derive(Default)]
pub struct TrapCounters {
    pub traps: AtomicU64,
    pub denied: AtomicU64,
    /// MSIs signalled to the guest.
    pub msis: AtomicU64,
}

/// One vGPU: its slice of the GPU and its mediator.
pub struct VgpuShared {
    host: Arc<HostShared>,
    index: u32,
    share: u32,
    slice: Slice,
    state: Mutex<VgpuState>,
    irq: Condvar,
    counters: TrapCounters,
}

impl VgpuShared {
    /// Runs `f` with the mediator and an environment over the host, then signals the guest's
    /// MSI on a rising edge of its line.
    fn with_env<R>(&self, f: impl FnOnce(&mut Mediator<HostStorage>, &mut Env<'_>) -> R) -> R {
        let h = &*self.host;
        let mut st = lock(&self.state);
        let st = &mut *st;
        let bars = ModelBars(h);
        let mut vram = HostVram::new(&bars, h.bar3_mapped);
        let mut tables = PoolTables::new(h);
        let mut chans = ModelChannels(h, VgpuId::new(self.index as usize), ModelFetch { h, held: None });
        let clock = HostClock(h.epoch);
        let mut env = Env { vram: &mut vram, sys: &mut st.sys, tables: &mut tables, host: &mut chans, clock: &clock };
        let r = f(&mut st.med, &mut env);
        if st.med.take_irq_edge() {
            st.msi_pending += 1;
            self.counters.msis.fetch_add(1, Ordering::Relaxed);
            self.irq.notify_all();
        }
        r
    }

    /// The mediator's counters.
    pub fn stats(&self) -> MediatorStats {
        lock(&self.state).med.stats
    }

    /// Host-pool bytes its shadows (tables, instance blocks) hold now.
    pub fn pool_used(&self) -> u64 {
        lock(&self.state).med.pool_used()
    }

    /// Trapped and denied accesses.
    pub fn counters(&self) -> &TrapCounters {
        &self.counters
    }

    /// The vGPU's resources.
    pub fn slice(&self) -> Slice {
        self.slice
    }

    /// BAR sizes of the vGPU's type.
    fn bar_size(&self, bar: Bar) -> u64 {
        match bar {
            Bar::Bar0 => pci::BAR0_SIZE,
            Bar::Bar1 => pci::BAR1_SIZE / u64::from(self.share),
            Bar::Bar3 => pci::BAR3_SIZE / u64::from(self.share),
        }
    }
}

impl VgpuShared {
    /// VFIO_DEVICE_RESET: the device returns to power-on state (its channels leave the host,
    /// its shadows are freed) and its VRAM is scrubbed, so whoever uses the vGPU next finds
    /// none of the previous user's data.
    pub fn reset(&self) -> Result<(), ScrubError> {
        self.with_env(|med, env| med.reset(env));
        self.host.dispatch_reset(self);
        self.host.scrub(&self.slice)
    }
}

impl Drop for VgpuShared {
    /// The vGPU is removed: nothing of it may still run (a reset takes any channel off the
    /// host), then its slice is scrubbed before it goes back to the pool. A failed scrub is
    /// recorded; the next vGPU on the slice is scrubbed at creation anyway.
    fn drop(&mut self) {
        self.with_env(|med, env| med.reset(env));
        if let Some(v) = VgpuId::new(self.index as usize) {
            let h = &*self.host;
            let mut ds = lock(&h.dispatch);
            let n = ds.d.remove(&mut BarsHost(&ModelBars(h), Some(&lock(&h.runlist))), v, h.now_ns());
            ds.carried[v.index()] = VgpuStats::default();
            ds.after(n);
            h.dispatch_wake.notify_all();
        }
        let _ = self.host.scrub(&self.slice);
        let units = UnitMap::units_for(self.share).unwrap_or(0);
        assert!(lock(&self.host.units).free(self.slice.first_unit, units), "slice freed twice");
    }
}

/// The host side of one model GPU under the mediator (what gpuvm.ko is for a real GPU).
pub struct MediatedHost {
    shared: Arc<HostShared>,
    irq_thread: Option<JoinHandle<()>>,
    watchdog_thread: Option<JoinHandle<()>>,
    timer_thread: Option<JoinHandle<()>>,
}

impl MediatedHost {
    /// A fresh model GPU with `vram_mib` MiB of VRAM, brought up for the host.
    pub fn new(vram_mib: u64) -> io::Result<Self> {
        let gpu = Gpu::new(ModelConfig { vram_bytes: vram_mib << 20, ..ModelConfig::default() })?;
        Self::with_gpu(gpu)
    }

    /// Brings up `gpu` for the host (as the kernel does at probe).
    pub fn with_gpu(gpu: Arc<Gpu>) -> io::Result<Self> {
        let boot0 = gpu.bar_read32(gf100_model::Bar::Bar0, u64::from(gpuvm_shadow::gf100::pmc::Boot0::OFFSET));
        let vram = gpu.config().vram_bytes;
        let pools = Pools::new(vram, HOST_VRAM_RESERVED, 0, GUEST_CHANNELS)
            .ok_or_else(|| io::Error::other(format!("{} MiB of VRAM is too small to partition", vram >> 20)))?;
        let mut shared = HostShared {
            gpu,
            boot0,
            pools,
            bar3_mapped: 0,
            pool_bytes: 0,
            units: Mutex::new(UnitMap::default()),
            pool: Mutex::new(HostPool::new(0, 0)),
            sys_pool: Mutex::new(HostPool::new(0, 0)),
            tables_mem: Arc::new(HostMemory::new("gpuvm-shadow-tables", 0x1000)?),
            runlist: Mutex::new(HostRunlist::new([0; 2])),
            pramin: Mutex::new(Cell::new(None)),
            tlb: Mutex::new(()),
            kick_lock: Mutex::new(()),
            engine_resets: Mutex::new(Vec::new()),
            watchdog: Mutex::new(Watchdog::default()),
            watchdog_kills: Mutex::new(Vec::new()),
            lazy_shadow: AtomicBool::new(true),
            vgpus: Mutex::new(Vec::new()),
            host_errors: Mutex::new(Vec::new()),
            scrubber: Mutex::new(None),
            fetch: Mutex::new(None),
            fetch_on: AtomicBool::new(true),
            scrub_on: AtomicBool::new(true),
            scrubs: Mutex::new(ScrubLog::default()),
            epoch: Instant::now(),
            nonstall_unclaimed: AtomicU64::new(0),
            next_host_iova: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            dispatch: Mutex::new(DispatchState {
                d: Box::new(Dispatcher::new(PolicyKind::Band, Knobs::default(), 0)),
                at: None,
                carried: [VgpuStats::default(); 8],
            }),
            dispatch_wake: Condvar::new(),
        };
        let up = host_init::bring_up(&ModelBars(&shared), HOST_VRAM_RESERVED, pci::BAR3_SIZE)
            .map_err(|e| io::Error::other(format!("host bring-up: {e:?}")))?;
        shared.bar3_mapped = up.bar3_mapped;
        let mut pool = HostPool::new(layout::FREE, up.bar3_mapped);
        let bufs = [pool.alloc(host_gpu::RUNLIST_BYTES), pool.alloc(host_gpu::RUNLIST_BYTES)];
        let [Some(a), Some(b)] = bufs else { return Err(io::Error::other("no host VRAM for the runlists")) };
        let mut runlist = HostRunlist::new([a, b]);
        // The scrubber's channel and zero block come from the host pool before the vGPU
        // quotas are cut from what is left.
        let scrubber = Scrubber::bring_up(&ModelBars(&shared), &HostClock(shared.epoch), &KickLock(&shared), &mut pool, &mut runlist, up.bar3_mapped, SCRUB_CHANNEL, &shared.pools)
            .map_err(|e| io::Error::other(format!("scrubber bring-up: {e:?}")))?;
        shared.scrubber = Mutex::new(Some(scrubber));
        // The fetcher's channel too, and its staging buffer in memory the model reaches by DMA.
        let fetcher = Fetcher::bring_up(&ModelBars(&shared), &HostClock(shared.epoch), &KickLock(&shared), &mut pool, &mut runlist, up.bar3_mapped, FETCH_CHANNEL, &shared.pools)
            .map_err(|e| io::Error::other(format!("fetcher bring-up: {e:?}")))?;
        let staging = Arc::new(HostMemory::new("gpuvm-fetch-staging", STAGING_BYTES)?);
        shared.gpu.dma_map(STAGING_BUS, staging.clone()).map_err(io::Error::other)?;
        shared.fetch = Mutex::new(Some(FetchState { fetcher, staging: ModelStaging(staging) }));
        shared.pool_bytes = pool.free_bytes();
        // The shadow page tables' pool: host memory the model reaches by DMA (the kernel's
        // coherent allocation), of the VRAM pool's size, so the quotas are unchanged.
        let tables_mem = Arc::new(HostMemory::new("gpuvm-shadow-tables", shared.pool_bytes)?);
        shared.gpu.dma_map(SHADOW_TABLES_IOVA, tables_mem.clone()).map_err(io::Error::other)?;
        shared.tables_mem = tables_mem;
        shared.sys_pool = Mutex::new(HostPool::new(SHADOW_TABLES_IOVA, SHADOW_TABLES_IOVA + shared.pool_bytes));
        shared.pool = Mutex::new(pool);
        shared.runlist = Mutex::new(runlist);
        let shared = Arc::new(shared);
        let t = shared.clone();
        let irq_thread = std::thread::Builder::new().name("gpuvm-host-irq".into()).spawn(move || irq_thread(&t))?;
        let t = shared.clone();
        let watchdog_thread = std::thread::Builder::new().name("gpuvm-watchdog".into()).spawn(move || watchdog_thread(&t))?;
        let t = shared.clone();
        let timer_thread = std::thread::Builder::new().name("gpuvm-sched-timer".into()).spawn(move || timer_thread(&t))?;
        Ok(MediatedHost { shared, irq_thread: Some(irq_thread), watchdog_thread: Some(watchdog_thread), timer_thread: Some(timer_thread) })
    }

    /// The model GPU.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.shared.gpu
    }

    /// The `watchdog_ms` knob (the kernel answers EINVAL outside its range).
    pub fn set_watchdog_ms(&self, ms: u32) -> Result<(), BadLimit> {
        lock(&self.shared.watchdog).set_limit_ms(ms)
    }

    /// What the watchdog stopped so far.
    pub fn watchdog_kills(&self) -> Vec<WatchdogKill> {
        lock(&self.shared.watchdog_kills).clone()
    }

    /// Channels stopped by an engine reset so far (host channel, engine): by the watchdog
    /// or by a teardown that found an engine stuck on the channel.
    pub fn engine_resets(&self) -> Vec<(u32, u32)> {
        lock(&self.shared.engine_resets).clone()
    }

    /// The `lazy_shadow` knob.
    pub fn set_lazy_shadow(&self, on: bool) {
        self.shared.lazy_shadow.store(on, Ordering::Relaxed);
    }

    /// Non-stall interrupts that no vGPU's progress explained, so every vGPU got them.
    pub fn nonstall_unclaimed(&self) -> u64 {
        self.shared.nonstall_unclaimed.load(Ordering::Relaxed)
    }

    /// Switches the scheduling policy (sysfs `sched_policy`), queued and running work kept.
    pub fn set_policy(&self, kind: PolicyKind) {
        let h = &*self.shared;
        let mut ds = lock(&h.dispatch);
        let n = ds.d.set_policy(&mut BarsHost(&ModelBars(h), Some(&lock(&h.runlist))), kind, h.now_ns());
        ds.after(n);
        h.dispatch_wake.notify_all();
    }

    /// The policy in force.
    pub fn policy(&self) -> PolicyKind {
        lock(&self.shared.dispatch).d.scheduler().policy()
    }

    /// `sched_period_us` and `band_wait_us`.
    pub fn set_knobs(&self, period: Period, wait: BandWait) {
        let now = self.shared.now_ns();
        let mut ds = lock(&self.shared.dispatch);
        ds.d.set_period(period, now);
        ds.d.set_band_wait(wait, now);
    }

    /// A vGPU's `weight`.
    pub fn set_weight(&self, v: &VgpuShared, w: Weight) {
        let now = self.shared.now_ns();
        if let Some(id) = VgpuId::new(v.index as usize) {
            let _ = lock(&self.shared.dispatch).d.set_weight(id, w, now);
        }
    }

    /// A vGPU's scheduler counters (GPU time, wait time, submissions; since it was created)
    /// and the dispatcher's.
    pub fn sched_stats(&self, v: &VgpuShared) -> (VgpuStats, DispatchStats) {
        let Some(id) = VgpuId::new(v.index as usize) else { return Default::default() };
        let ds = lock(&self.shared.dispatch);
        let (mut s, d) = ds.d.stats(id).unwrap_or_default();
        s.accumulate(&ds.carried[id.index()]);
        (s, d)
    }

    /// Nanoseconds the model's PFIFO spent on `v`'s host channels (the per-channel busy-time
    /// counters of the model GPU).
    pub fn model_busy_ns(&self, v: &VgpuShared) -> u64 {
        let s = v.slice;
        (0..s.channels).filter_map(|c| s.channel_to_host(c)).map(|h| self.shared.gpu.channel_busy_ns(h)).sum()
    }

    /// Host operations that failed so far.
    pub fn host_errors(&self) -> Vec<HostError> {
        lock(&self.shared.host_errors).clone()
    }

    /// Free bytes of the host pool, as the kernel's `host_pool_free_kib` counts them: the
    /// pool after bring-up less what vGPUs hold in it (instance blocks) and in the
    /// shadow-table memory (which is as large as that pool).
    pub fn pool_free_bytes(&self) -> u64 {
        let held_tables = self.shared.pool_bytes - lock(&self.shared.sys_pool).free_bytes();
        lock(&self.shared.pool).free_bytes().saturating_sub(held_tables)
    }

    /// What the guest-VRAM fetcher did so far.
    pub fn fetch_stats(&self) -> FetchStats {
        lock(&self.shared.fetch).as_ref().map_or_else(FetchStats::default, |f| f.fetcher.stats)
    }

    /// Test knob: shadow syncs read guest tables through the copy engine (the default) or
    /// through PRAMIN only.
    pub fn set_fetch(&self, on: bool) {
        self.shared.fetch_on.store(on, Ordering::Relaxed);
    }

    /// Every scrub so far (count, bytes and time, failures).
    pub fn scrub_log(&self) -> ScrubLog {
        lock(&self.shared.scrubs).clone()
    }

    /// Test knob: scrub slices (the default) or not. Off only to show that a test detects
    /// the data a previous tenant left when nothing clears it.
    pub fn set_scrub(&self, on: bool) {
        self.shared.scrub_on.store(on, Ordering::Relaxed);
    }

    /// Creates a `gpuvm-share` vGPU (ENOSPC-like error when the GPU is full).
    pub fn create(&self, share: u32) -> io::Result<Arc<VgpuShared>> {
        let units = UnitMap::units_for(share).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let first = lock(&self.shared.units).alloc(share).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOSPC))?;
        let slice = self.shared.pools.slice(first, units);
        // Whatever was in the slice (a removed vGPU whose scrub failed, VRAM from before the
        // host took the GPU) is cleared before the new tenant can map any of it.
        if let Err(e) = self.shared.scrub(&slice) {
            lock(&self.shared.units).free(first, units);
            return Err(io::Error::other(format!("scrubbing the slice at {:#x}: {e:?}", slice.vram_base)));
        }
        let quota = self.shared.pool_bytes * u64::from(units) / u64::from(UNITS);
        let med = Box::new(Mediator::new(slice, self.shared.boot0, quota).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?);
        let v = Arc::new(VgpuShared {
            host: self.shared.clone(),
            index: first,
            share,
            slice,
            state: Mutex::new(VgpuState { med, sys: GuestSys::default(), msi_pending: 0, open: false }),
            irq: Condvar::new(),
            counters: TrapCounters::default(),
        });
        if let Some(id) = VgpuId::new(first as usize) {
            let now = self.shared.now_ns();
            let mut ds = lock(&self.shared.dispatch);
            ds.carried[id.index()] = VgpuStats::default();
            let _ = ds.d.add(id, Weight::DEFAULT, now);
        }
        let mut list = lock(&self.shared.vgpus);
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&v));
        Ok(v)
    }

    /// Removes vGPU `v` and returns once it is gone: its channels off the host, its slice
    /// scrubbed and free for the next creation, as the kernel's mdev `remove` does. Dropping
    /// the last `Arc` does the same, but another thread may hold one for a moment (the
    /// interrupt thread delivers to every live vGPU), and the removal then happens there,
    /// later: a creation made meanwhile gets another slice. Waits (at most 10 s) until this
    /// is the last reference, so the removal runs here.
    pub fn remove(&self, v: Arc<VgpuShared>) {
        let t0 = Instant::now();
        while Arc::strong_count(&v) > 1 {
            assert!(t0.elapsed() < Duration::from_secs(10), "vGPU still referenced elsewhere after 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(v);
    }

    /// Opens vGPU `v` (one VFIO open): the transport a guest driver uses.
    pub fn open(&self, v: &Arc<VgpuShared>) -> io::Result<MediatedTransport> {
        {
            let mut st = lock(&v.state);
            if st.open {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            st.open = true;
            st.msi_pending = 0;
        }
        // What the guest driver's VFIO transport does first: memory space and bus mastering on
        // in the PCI command register (the mediated vGPU has no config space of its own).
        v.with_env(|med, env| med.set_bus_master(env, true));
        Ok(MediatedTransport { vgpu: v.clone(), next_iova: GUEST_IOVA_BASE, irq: false })
    }
}

impl Drop for MediatedHost {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in [self.irq_thread.take(), self.watchdog_thread.take()].into_iter().flatten() {
            let _ = t.join();
        }
        self.shared.dispatch_wake.notify_all();
        if let Some(t) = self.timer_thread.take() {
            let _ = t.join();
        }
        let h = &*self.shared;
        if let Some(s) = lock(&h.scrubber).take() {
            s.shut_down(&ModelBars(h), &HostClock(h.epoch), &KickLock(h), &mut lock(&h.pool), &mut lock(&h.runlist));
        }
        if let Some(f) = lock(&h.fetch).take() {
            // A copy that may still land keeps its staging buffer mapped (the model's memory
            // goes with the GPU anyway).
            if f.fetcher.shut_down(&ModelBars(h), &HostClock(h.epoch), &KickLock(h), &mut lock(&h.pool), &mut lock(&h.runlist), h.bar3_mapped) {
                h.gpu.dma_unmap(STAGING_BUS);
            }
        }
        host_init::shut_down(&ModelBars(&self.shared));
    }
}

impl HostShared {
    /// A vGPU's device reset: its queued submissions are dropped (and a running one given
    /// up: its channels were stopped) by taking it out of the scheduler and adding it back
    /// with its weight; its counters are carried over.
    fn dispatch_reset(&self, v: &VgpuShared) {
        let Some(id) = VgpuId::new(v.index as usize) else { return };
        let now = self.now_ns();
        let mut ds = lock(&self.dispatch);
        let weight = ds.d.scheduler().account().weight(id).unwrap_or_default();
        if let Some((s, _)) = ds.d.stats(id) {
            ds.carried[id.index()].accumulate(&s);
        }
        let n = ds.d.remove(&mut BarsHost(&ModelBars(self), Some(&lock(&self.runlist))), id, now);
        let _ = ds.d.add(id, weight, now);
        ds.after(n);
        self.dispatch_wake.notify_all();
    }
}

/// The host interrupt thread: services the GPU's interrupt and delivers the events to every
/// vGPU (the kernel's hard-IRQ half plus its threaded half). It holds no list lock while it
/// takes a vGPU's lock.
fn irq_thread(h: &Arc<HostShared>) {
    while !h.stop.load(Ordering::Relaxed) {
        if !h.gpu.irq_wait(IRQ_THREAD_SLICE) {
            continue;
        }
        let Some(ev) = host_gpu::service_interrupt(&ModelBars(h)) else {
            // The line is up but nothing is pending that the host handles: do not spin.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        if !ev.any() {
            continue;
        }
        let vgpus: Vec<Arc<VgpuShared>> = lock(&h.vgpus).iter().filter_map(Weak::upgrade).collect();
        // A non-stall interrupt goes to the vGPUs whose channels made progress; if none shows
        // any after a few looks, to every vGPU with channels on the runlist.
        let mut claims = vec![false; vgpus.len()];
        if ev.nonstall {
            for _ in 0..host_gpu::NONSTALL_CLAIM_TRIES {
                for (c, v) in claims.iter_mut().zip(&vgpus) {
                    *c |= v.with_env(|med, env| med.claim_nonstall(env));
                }
                if claims.iter().any(|c| *c) {
                    break;
                }
                std::thread::sleep(Duration::from_micros(u64::from(host_gpu::NONSTALL_CLAIM_PAUSE_US)));
            }
            if !claims.iter().any(|c| *c) {
                h.nonstall_unclaimed.fetch_add(1, Ordering::Relaxed);
                claims.fill(true);
            }
        }
        for (v, nonstall) in vgpus.iter().zip(claims) {
            v.with_env(|med, _| med.deliver(&ev, nonstall));
        }
        // Any interrupt may mark the running submission's end (a fence's non-stall, a fault
        // that stopped the channel).
        h.dispatch_poll();
    }
}

/// The dispatcher's timer (the kernel's hrtimer): polls it at the time it asked for.
fn timer_thread(h: &Arc<HostShared>) {
    let mut ds = lock(&h.dispatch);
    while !h.stop.load(Ordering::Relaxed) {
        let now = h.now_ns();
        match ds.at {
            Some(t) if t <= now => {
                drop(ds);
                h.dispatch_poll();
                ds = lock(&h.dispatch);
            }
            Some(t) => ds = h.dispatch_wake.wait_timeout(ds, Duration::from_nanos(t - now).min(IRQ_THREAD_SLICE)).unwrap_or_else(|e| e.into_inner()).0,
            None => ds = h.dispatch_wake.wait_timeout(ds, IRQ_THREAD_SLICE).unwrap_or_else(|e| e.into_inner()).0,
        }
    }
}

/// The watchdog's timer: a check every `Watchdog::period_ns` (the kernel's delayed work).
fn watchdog_thread(h: &Arc<HostShared>) {
    let mut next = Instant::now();
    while !h.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(IRQ_THREAD_SLICE));
            continue;
        }
        next = now + Duration::from_nanos(lock(&h.watchdog).period_ns());
        watchdog_check(h);
    }
}

/// One watchdog check: what the engines are doing, then each guest channel held past the
/// limit is made unrunnable in its owner's mediator (if an engine is still on it with the
/// vGPU locked: a teardown that got there first has taken it off), evicted with no vGPU lock
/// held (the kick may wait its full timeout, then the engine is reset), and the outcome
/// given to the owner: killed (SCHED_ERROR CTXSW_TIMEOUT) if an engine had to be reset,
/// else switched out and left to run on. The host's own channels (the scrubber's) are not
/// the watchdog's: their waits are bounded already.
fn watchdog_check(h: &Arc<HostShared>) {
    let seen = host_gpu::engines_seen(&ModelBars(h), h.bar3_mapped);
    let now = HostClock(h.epoch).now_ns();
    let found = lock(&h.watchdog).check(now, seen);
    for r in found.into_iter().flatten() {
        let owner = lock(&h.vgpus).iter().filter_map(Weak::upgrade).find(|v| v.slice.channel_from_host(r.host_chid).is_some());
        let Some(v) = owner else { continue };
        if !v.with_env(|med, env| host_gpu::engine_on(&ModelBars(h), r.host_chid).is_some() && med.watchdog_stop(env, r.host_chid)) {
            continue;
        }
        let evicted = h.evict(r.host_chid);
        if let Err(e) = evicted {
            lock(&h.host_errors).push(e);
        }
        let killed = !matches!(evicted, Ok(host_gpu::Evicted::Preempted));
        v.with_env(|med, env| med.watchdog_outcome(env, r.host_chid, killed));
        lock(&h.watchdog_kills).push(WatchdogKill { runaway: r, vgpu: v.index, evicted });
    }
}

/// One open of a vGPU, as the guest driver sees it.
pub struct MediatedTransport {
    vgpu: Arc<VgpuShared>,
    next_iova: u64,
    irq: bool,
}

impl MediatedTransport {
    /// The vGPU behind this transport.
    pub fn vgpu(&self) -> &Arc<VgpuShared> {
        &self.vgpu
    }

    fn bar_access(&mut self, bar: Bar, off: u64, val: Option<u32>) -> u32 {
        let v = &self.vgpu;
        v.counters.traps.fetch_add(1, Ordering::Relaxed);
        let (ok, value) = v.with_env(|med, env| match (bar, val) {
            (Bar::Bar0, None) => med.bar0_read(env, off as u32).map_or((false, 0), |x| (true, x)),
            (Bar::Bar0, Some(x)) => (med.bar0_write(env, off as u32, x), 0),
            (b, None) => med.bar_read(env, vbar(b), off).map_or((false, 0), |x| (true, x)),
            (b, Some(x)) => (med.bar_write(env, vbar(b), off, x), 0),
        });
        if !ok {
            v.counters.denied.fetch_add(1, Ordering::Relaxed);
        }
        value
    }
}

fn vbar(b: Bar) -> vregs::Bar {
    match b {
        Bar::Bar1 => vregs::Bar::Bar1,
        _ => vregs::Bar::Bar3,
    }
}

impl Transport for MediatedTransport {
    fn describe(&self) -> String {
        let s = self.vgpu.slice;
        format!(
            "mediated vGPU gpuvm-{} (VRAM {} MiB at {:#x}, channels {}..{}) on the in-process model",
            self.vgpu.share,
            s.vram_size >> 20,
            s.vram_base,
            s.first_channel,
            s.first_channel + s.channels - 1
        )
    }

    fn bar_size(&self, bar: Bar) -> u64 {
        self.vgpu.bar_size(bar)
    }

    fn rd32(&mut self, bar: Bar, off: u64) -> u32 {
        if off.checked_add(4).is_none_or(|end| end > self.bar_size(bar)) {
            return u32::MAX;
        }
        self.bar_access(bar, off, None)
    }

    fn wr32(&mut self, bar: Bar, off: u64, val: u32) {
        if off.checked_add(4).is_none_or(|end| end > self.bar_size(bar)) {
            return;
        }
        self.bar_access(bar, off, Some(val));
    }

    fn dma_alloc(&mut self, len: usize) -> io::Result<DmaBuf> {
        let len = page_round(len);
        // SAFETY: plain syscall; the fd is checked, then owned by `File`.
        let fd = unsafe { libc::memfd_create(c"gpuvm-guest-dma".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len as u64)?;
        let mem = Arc::new(HostMemory::from_file(&file, 0, len as u64)?);
        // SAFETY: a shared mapping of our own memfd; the model maps the same file.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let h = &self.vgpu.host;
        let slot = h.next_host_iova.fetch_add(len as u64, Ordering::Relaxed);
        let host = ((u64::from(self.vgpu.index) + 1) << HOST_IOVA_SHIFT) + slot;
        if let Err(e) = h.gpu.dma_map(host, mem) {
            // SAFETY: the mapping made above.
            unsafe { libc::munmap(p, len) };
            return Err(io::Error::other(e));
        }
        let iova = self.next_iova;
        self.next_iova += len as u64;
        lock(&self.vgpu.state).sys.maps.insert(iova, Mapping { len: len as u64, host });
        let pages = (0..len / PAGE).map(|i| iova + (i * PAGE) as u64).collect();
        Ok(DmaBuf { ptr: p as *mut u8, len, pages, handle: iova })
    }

    fn dma_free(&mut self, buf: DmaBuf) {
        let iova = buf.handle;
        let len = buf.len as u64;
        // The unmap reaches the mediator first (VFIO's dma_unmap callback), so no shadow
        // points at the pages when they go.
        self.vgpu.with_env(|med, env| med.dma_unmap(env, iova, len));
        let m = lock(&self.vgpu.state).sys.maps.remove(&iova);
        if let Some(m) = m {
            self.vgpu.host.gpu.dma_unmap(m.host);
        }
        // SAFETY: the mapping made in dma_alloc.
        unsafe { libc::munmap(buf.ptr as *mut _, buf.len) };
    }

    fn irq_enable(&mut self) -> IrqMode {
        self.irq = true;
        IrqMode::Msi
    }

    fn irq_wait(&mut self, timeout: Duration) -> bool {
        if !self.irq {
            return false;
        }
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.vgpu.state);
        while st.msi_pending == 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.vgpu.irq.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        st.msi_pending -= 1;
        true
    }

    fn irq_disable(&mut self) {
        self.irq = false;
    }

    fn reset(&mut self) -> io::Result<()> {
        self.vgpu.reset().map_err(|e| io::Error::other(format!("scrub at reset: {e:?}")))
    }
}

impl Drop for MediatedTransport {
    /// The device is closed: its channels leave the host, its shadows are freed, its pages
    /// are unpinned, and every mapping it still had is removed (a VM's memory goes away).
    fn drop(&mut self) {
        self.vgpu.with_env(|med, env| med.close(env));
        self.vgpu.host.dispatch_reset(&self.vgpu);
        let maps: Vec<Mapping> = {
            let mut st = lock(&self.vgpu.state);
            st.open = false;
            std::mem::take(&mut st.sys.maps).into_values().collect()
        };
        for m in maps {
            self.vgpu.host.gpu.dma_unmap(m.host);
        }
    }
}

/// Units of the GPU (for tests that fill it).
pub const GPU_UNITS: u32 = UNITS;

/// A mediated vGPU as the hostile checks (`hostile::Target`) see it: the in-process tests run
/// `gpuvm-hostile`'s checks against it, with the mediator's counters and the model's channel
/// table where the VM reads sysfs.
pub struct HostileTarget<'a> {
    pub host: &'a MediatedHost,
    pub v: Arc<VgpuShared>,
}

impl HostileTarget<'_> {
    /// Removes the vGPU and returns once it is gone ([`MediatedHost::remove`]).
    pub fn remove(self) {
        self.host.remove(self.v)
    }
}

impl crate::hostile::Target for HostileTarget<'_> {
    fn open_opts(&self, opts: crate::driver::ChannelOpts) -> Result<crate::driver::Gpu, String> {
        let t = self.host.open(&self.v).map_err(|e| format!("open: {e}"))?;
        crate::driver::Gpu::open_opts(Box::new(t), 0, true, opts).map_err(|e| format!("init: {e}"))
    }
    fn counter(&self, name: &str) -> Result<u64, String> {
        let s = self.v.stats();
        Ok(match name {
            "faults" => s.faults,
            "pte_refused" => s.refused,
            "mmio_denied" => self.v.counters().denied.load(Ordering::Relaxed),
            "channels" => u64::from(self.v.slice().channels),
            "vram_base_mib" => self.v.slice().vram_base >> 20,
            "shadow_syncs" => s.syncs,
            other => return Err(format!("no counter {other}")),
        })
    }
    fn host_userd(&self, chid: u32) -> Option<u64> {
        // The host channel's instance block (the shadow), as the model's channel table has it.
        let host_chid = self.v.slice().channel_to_host(chid)?;
        let gpu = self.host.gpu();
        let word = gpu.bar_read32(gf100_model::Bar::Bar0, u64::from(pfifo::ChanInst::offset(host_chid)));
        let inst = pfifo::ChanInst::from_raw(word).addr();
        let lo = gpu.vram().read32(inst + u64::from(ramfc::USERD_LO))?;
        let hi = gpu.vram().read32(inst + u64::from(ramfc::USERD_HI))?;
        Some(u64::from(lo & ramfc::USERD_ADDR_MASK) | u64::from(hi & 0xff) << 32)
    }
    fn host_userd_page(&self, chid: u32) -> Option<u64> {
        Some(host_userd(self.v.slice().channel_to_host(chid)?))
    }
}
