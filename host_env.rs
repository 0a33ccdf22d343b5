// SPDX-License-Identifier: GPL-2.0
//! How the mediator (shadow/mediator.rs) reaches the host from the kernel: the GPU's BARs
//! ([`KernelBars`], over which shadow/host_gpu.rs gives host VRAM, channel controls, the runlist
//! and TLB flushes), the host pool for shadow tables, the `lazy_shadow` knob, and guest system
//! memory pinned through VFIO. [`env`] puts them together for one trapped access.

use crate::{
    channel::RunlistPart,
    dma_words::DmaWords,
    guest_fetch::{Fetcher, GuestFetch, Session, Staging},
    host_channel::Waiter,
    host_gpu::{self, HostBars, HostError, HostVram},
    host_init::Mmio,
    mediator::{Env, GuestMemory, HostChannels, Storage},
    pagetable::VmDesc,
    vregs,
    memory::{Clock, SysMem},
    shadow_vm::{TableAlloc, TableMemory},
    host_pool::HostPool,
    sched::account::VgpuId,
    sync_policy::SyncMode,
    vfio, GpuShared,
};
use core::cell::Cell;
use kernel::{
    io::Io,
    prelude::*,
    sync::MutexGuard,
    rbtree::RBTree,
    time::{delay::fsleep, Delta},
};

/// The host GPU's BARs. Each access takes the BAR's revocable mapping for just that access;
/// an access after the GPU was unbound reads all-ones and writes nothing.
pub(crate) struct KernelBars<'a>(pub(crate) &'a GpuShared);

impl Mmio for KernelBars<'_> {
    fn rd(&self, off: u32) -> u32 {
        self.0.bar0().try_access().and_then(|b| b.try_read32(off as usize).ok()).unwrap_or(u32::MAX)
    }
    fn wr(&self, off: u32, val: u32) {
        // Offsets come from uapi/ and the host layout, all inside BAR0; an out-of-range one
        // would be a bug caught by try_write32's bounds check rather than a stray access.
        if let Some(b) = self.0.bar0().try_access() {
            let _ = b.try_write32(val, off as usize);
        }
    }
}

impl HostBars for KernelBars<'_> {
    fn bar1_write32(&self, off: u64, v: u32) {
        if let Some(b) = self.0.bar1().try_access() {
            let _ = b.try_write32(v, off as usize);
        }
    }
    fn bar3_read32(&self, off: u64) -> u32 {
        self.0.bar3().try_access().and_then(|b| b.try_read32(off as usize).ok()).unwrap_or(u32::MAX)
    }
    fn bar3_write32(&self, off: u64, v: u32) {
        if let Some(b) = self.0.bar3().try_access() {
            let _ = b.try_write32(v, off as usize);
        }
    }
    fn with_pramin<R>(&self, f: impl FnOnce(&Cell<Option<u32>>) -> R) -> R {
        f(&self.0.pramin().lock().base)
    }
}

/// Where the PRAMIN window points (None: unknown, e.g. after probe). A `Cell` because reads
/// (`&self` in `Vram`) may have to move the window; the mutex around it makes that safe.
pub(crate) struct PraminWindow {
    base: Cell<Option<u32>>,
}

impl PraminWindow {
    pub(crate) const fn new() -> Self {
        Self { base: Cell::new(None) }
    }
}

/// Bytes of one chunk of shadow-table memory: one coherent allocation, well below the
/// largest the page allocator hands out (order 9), and a whole number of the largest table
/// (a full small-page table, 256 KiB), so no table straddles two chunks.
pub(crate) const TABLE_CHUNK_BYTES: usize = 2 << 20;

/// Shadow page tables in host system memory: coherent chunks the GPU walks by DMA, each cut
/// into 4 KiB pages by its own [`HostPool`] (whose addresses are the chunk's bus addresses).
/// Empty if the memory could not be had at probe: the tables then live in the VRAM pool.
pub(crate) struct SysTables {
    chunks: KVec<DmaWords>,
}

impl SysTables {
    /// Coherent chunks for at least `bytes` of tables (none if any allocation fails: a
    /// partial set would make the quotas lie), and their pools.
    pub(crate) fn new(dev: &kernel::device::Device<kernel::device::Bound>, bytes: u64) -> (SysTables, KVec<HostPool>) {
        let count = usize::try_from(bytes).unwrap_or(usize::MAX).div_ceil(TABLE_CHUNK_BYTES);
        let mut chunks = KVec::new();
        let mut pools = KVec::new();
        for _ in 0..count {
            let chunk = match DmaWords::zeroed(dev, TABLE_CHUNK_BYTES) {
                Ok(c) => c,
                Err(e) => {
                    dev_warn!(dev, "shadow page tables stay in host VRAM: no coherent memory for chunk {} of {} ({:?})\n", chunks.len(), count, e);
                    return (SysTables { chunks: KVec::new() }, KVec::new());
                }
            };
            let pool = HostPool::new(chunk.bus(), chunk.bus() + chunk.bytes());
            if chunks.push(chunk, GFP_KERNEL).is_err() || pools.push(pool, GFP_KERNEL).is_err() {
                dev_warn!(dev, "shadow page tables stay in host VRAM: no memory for the chunk list (ENOMEM)\n");
                return (SysTables { chunks: KVec::new() }, KVec::new());
            }
        }
        (SysTables { chunks }, pools)
    }

    /// Bytes of system memory holding shadow tables (0: they are in VRAM).
    pub(crate) fn bytes(&self) -> u64 {
        self.chunks.iter().map(DmaWords::bytes).sum()
    }

    fn chunk(&self, bus: u64) -> Option<&DmaWords> {
        self.chunks.iter().find(|c| bus >= c.bus() && bus - c.bus() < c.bytes())
    }
}

impl TableMemory for &SysTables {
    fn read32(&self, bus: u64) -> u32 {
        self.chunk(bus).map_or(u32::MAX, |c| c.read32(bus - c.bus()))
    }
    fn write32(&mut self, bus: u64, v: u32) {
        if let Some(c) = self.chunk(bus) {
            c.write32(bus - c.bus(), v)
        }
    }
}

/// Shadow page tables from the system-memory chunks (or the host VRAM pool if there are
/// none), shadow instance blocks from the host VRAM pool; each pool locked per call.
pub(crate) struct PoolTables<'a>(&'a GpuShared, &'a SysTables);

impl<'a> PoolTables<'a> {
    pub(crate) fn new(gpu: &'a GpuShared) -> Self {
        PoolTables(gpu, gpu.sys_tables())
    }
}

impl TableAlloc for PoolTables<'_> {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        if self.1.chunks.is_empty() {
            return self.alloc_inst(bytes);
        }
        let a = self.0.sys_pool().lock().iter_mut().find_map(|p| p.alloc(bytes))?;
        self.0.shadow_held(bytes, true);
        Some(a)
    }
    fn free(&mut self, addr: u64, bytes: u64) {
        if self.1.chunks.is_empty() {
            return self.free_inst(addr, bytes);
        }
        if self.0.sys_pool().lock().iter_mut().any(|p| p.free(addr, bytes)) {
            self.0.shadow_held(bytes, false);
        } else {
            pr_err!("gpuvm: shadow-table memory: {:#x}+{:#x} freed but not allocated (accounting bug)\n", addr, bytes);
        }
    }
    fn memory(&mut self) -> Option<&mut dyn TableMemory> {
        if self.1.chunks.is_empty() {
            None
        } else {
            Some(&mut self.1)
        }
    }
    fn alloc_inst(&mut self, bytes: u64) -> Option<u64> {
        let a = self.0.pool().lock().alloc(bytes)?;
        self.0.shadow_held(bytes, true);
        Some(a)
    }
    fn free_inst(&mut self, addr: u64, bytes: u64) {
        if self.0.pool().lock().free(addr, bytes) {
            self.0.shadow_held(bytes, false);
        } else {
            pr_err!("gpuvm: host pool: {:#x}+{:#x} freed but not allocated (accounting bug)\n", addr, bytes);
        }
    }
}

/// What the mediator's BAR-remapping calls reach in the vGPU (implemented in vgpu.rs): whether
/// its BAR3 is offered for mmap, and the new BAR root with the zap of its old mappings.
pub(crate) trait BarRemapSink {
    /// `bar_remap` as latched when the vGPU was opened.
    fn bar_remap(&self) -> bool;
    /// See `HostChannels::bar_changed`.
    fn bar_changed(&self, bar: vregs::Bar, desc: Option<VmDesc>);
    /// See `HostChannels::take_mapped`.
    fn take_mapped(&self, f: &mut dyn FnMut(u64) -> bool);
}

/// The vGPU's slot in its GPU's dispatcher (host_sched.rs), implemented in vgpu.rs.
pub(crate) trait DispatchSlot {
    /// None only for a vGPU outside the dispatcher's slots (its doorbells go straight on).
    fn dispatch_slot(&self) -> Option<VgpuId>;
}

/// The host channel controls of shadow/host_gpu.rs over the GPU's BARs, the vGPU's BAR
/// remapping, and its slot in the GPU's dispatcher (where its doorbells go).
pub(crate) struct KernelChannels<'a>(pub(crate) &'a GpuShared, pub(crate) &'a dyn BarRemapSink, pub(crate) Option<VgpuId>, pub(crate) KernelFetch<'a>);

impl HostChannels for KernelChannels<'_> {
    fn bind(&mut self, host_chid: u32, inst: Option<u64>) {
        host_gpu::bind_channel(&KernelBars(self.0), host_chid, inst)
    }
    fn set_runnable(&mut self, host_chid: u32, runnable: bool) {
        host_gpu::set_runnable(&KernelBars(self.0), host_chid, runnable)
    }
    fn kick(&mut self, host_chid: u32) -> Result<(), HostError> {
        use host_gpu::KickLock as _;
        crate::KickLock(self.0).hold(|| host_gpu::kick(&KernelBars(self.0), &GpuClock(self.0), host_chid))
    }
    fn evict(&mut self, host_chid: u32) -> Result<host_gpu::Evicted, HostError> {
        self.0.evict(host_chid)
    }
    fn ring_doorbell(&mut self, host_chid: u32, put: u32) {
        host_gpu::ring_doorbell(&KernelBars(self.0), host_chid, put)
    }
    /// The doorbell is queued in the GPU's dispatcher, which forwards it when the policy
    /// picks this vGPU (under the vGPU's state lock: the order is state → dispatch →
    /// runlist).
    fn submit(&mut self, host_chid: u32, put: u32) {
        match self.2 {
            Some(v) => self.0.dispatch_submit(v, host_chid, put),
            None => self.ring_doorbell(host_chid, put),
        }
    }
    fn commit_runlist(&mut self, part: RunlistPart) -> Result<(), HostError> {
        self.0.commit_runlist(part)
    }
    fn chan_busy(&mut self, host_chid: u32) -> bool {
        host_gpu::chan_busy(&KernelBars(self.0), host_chid)
    }
    fn tlb_flush(&mut self, pd: u64, sysmem: bool) -> Result<(), HostError> {
        self.0.tlb_flush(pd, sysmem)
    }
    fn drain_events(&mut self) {
        if !host_gpu::drain_events(&KernelBars(self.0), &GpuClock(self.0)) {
            dev_warn!(self.0.pdev(), "unbind: fault records still unread after {} ms; freeing the channel's instance block anyway\n", host_gpu::EVENT_DRAIN_TIMEOUT_NS / 1_000_000);
        }
    }
    fn sync_mode(&self) -> SyncMode {
        if self.0.lazy_shadow() {
            SyncMode::Lazy
        } else {
            SyncMode::Naive
        }
    }
    fn report(&mut self, what: HostError) {
        dev_warn!(self.0.pdev(), "host GPU operation failed: {:?} (the GPU did not settle in time)\n", what);
    }
    fn bar_remap(&self) -> bool {
        self.1.bar_remap()
    }
    fn bar_changed(&mut self, bar: vregs::Bar, desc: Option<VmDesc>) {
        self.1.bar_changed(bar, desc)
    }
    fn take_mapped(&mut self, f: &mut dyn FnMut(u64) -> bool) {
        self.1.take_mapped(f)
    }
    fn guest_fetch(&mut self) -> Option<&mut dyn GuestFetch> {
        Some(&mut self.3)
    }
}

/// The GPU's guest-VRAM fetcher (`shadow/guest_fetch.rs`) and its staging buffer in coherent
/// host memory.
pub(crate) struct FetchState {
    pub(crate) fetcher: Fetcher,
    pub(crate) staging: DmaWords,
}

impl Staging for DmaWords {
    fn bus(&self) -> u64 {
        DmaWords::bus(self)
    }
    fn bytes(&self) -> u64 {
        DmaWords::bytes(self)
    }
    fn read32(&self, off: u64) -> u32 {
        DmaWords::read32(self, off)
    }
}

/// The GPU's fetcher as one sync uses it: its mutex is taken at the sync's first fetch and
/// let go at the sync's end (`GuestFetch::end`), so no other vGPU's fetch overwrites a staged
/// chunk meanwhile (lock order: a vGPU's `state` → `fetch` → `pramin` / `kick_lock`).
pub(crate) struct KernelFetch<'a> {
    gpu: &'a GpuShared,
    held: Option<MutexGuard<'a, Option<FetchState>>>,
}

impl<'a> KernelFetch<'a> {
    pub(crate) fn new(gpu: &'a GpuShared) -> Self {
        Self { gpu, held: None }
    }
}

impl GuestFetch for KernelFetch<'_> {
    fn fetch(&mut self, slot: usize, pa: u64) -> bool {
        let gpu = self.gpu;
        let held = self.held.get_or_insert_with(|| gpu.fetch().lock());
        let Some(FetchState { fetcher, staging }) = &mut **held else { return false };
        // The semaphore was read through BAR3 (an MMIO read, ordered after the copy engine's
        // flushed writes by the GPU): the staged words are in memory when it shows the payload.
        Session { fetcher, staging, bars: &KernelBars(gpu), w: &GpuClock(gpu), kick_lock: &crate::KickLock(gpu) }.fetch(slot, pa)
    }
    fn staged32(&self, slot: usize, off: u64) -> u32 {
        let st: Option<&FetchState> = self.held.as_ref().and_then(|g| (**g).as_ref());
        st.map_or(u32::MAX, |st| st.staging.slot32(slot, off))
    }
    fn end(&mut self) {
        self.held = None;
    }
}

/// The vGPUs' PTIMER: nanoseconds since the GPU was probed.
pub(crate) struct GpuClock<'a>(pub(crate) &'a GpuShared);

impl Clock for GpuClock<'_> {
    fn now_ns(&self) -> u64 {
        self.0.uptime_ns()
    }
}

impl Waiter for GpuClock<'_> {
    /// Between polls of a host channel's progress (process context: it sleeps).
    fn pause(&self) {
        fsleep(Delta::from_micros(HOST_POLL_PAUSE_US));
    }
}

/// Microseconds between polls of a host channel's progress.
const HOST_POLL_PAUSE_US: i64 = 20;

/// The mediator's tables live in kernel vectors.
pub(crate) struct KernelStorage;

impl Storage for KernelStorage {
    type Vec<T: Default> = KVec<T>;
    fn with_len<T: Default>(len: usize) -> Option<KVec<T>> {
        let mut v = KVec::with_capacity(len, GFP_KERNEL).ok()?;
        for _ in 0..len {
            v.push(T::default(), GFP_KERNEL).ok()?;
        }
        Some(v)
    }
}

const PAGE: u64 = kernel::page::PAGE_SIZE as u64;

/// Guest system memory pinned through VFIO: IOVA page -> pinned page (a guard that unpins
/// when dropped), kept until the IOVA is unmapped or the device closes.
pub(crate) struct PinCache<T: vfio::Ops> {
    pages: RBTree<u64, vfio::PinnedPage<T>>,
}

impl<T: vfio::Ops> PinCache<T> {
    pub(crate) fn new() -> Self {
        Self { pages: RBTree::new() }
    }
}

/// [`GuestMemory`] of one open VFIO device.
pub(crate) struct VfioGuestMemory<'a, T: vfio::Ops> {
    pub(crate) dev: &'a vfio::Device<T>,
    pub(crate) pins: &'a mut PinCache<T>,
}

impl<T: vfio::Ops> VfioGuestMemory<'_, T> {
    fn pin_one(&mut self, page_iova: u64) -> Option<u64> {
        if let Some(pinned) = self.pins.pages.get(&page_iova) {
            return Some(pinned.phys());
        }
        let pinned = self.dev.pin_page(page_iova, true).ok()?;
        let phys = pinned.phys();
        // On failure the guard is dropped, which unpins the page.
        self.pins.pages.try_create_and_insert(page_iova, pinned, GFP_KERNEL).ok()?;
        Some(phys)
    }
}

impl<T: vfio::Ops> SysMem for VfioGuestMemory<'_, T> {
    fn pin(&mut self, iova: u64, len: u64) -> Option<u64> {
        let first = iova & !(PAGE - 1);
        let end = iova.checked_add(len.max(1))?;
        let base = self.pin_one(first)?;
        // The GPU sees one contiguous range: every page after the first must follow it.
        let mut page = first + PAGE;
        while page < end {
            if self.pin_one(page)? != base + (page - first) {
                return None;
            }
            page += PAGE;
        }
        Some(base + (iova - first))
    }
}

impl<T: vfio::Ops> GuestMemory for VfioGuestMemory<'_, T> {
    fn any_pinned(&self, iova: u64, len: u64) -> bool {
        self.pins.pages.cursor_lower_bound(&(iova & !(PAGE - 1))).is_some_and(|c| *c.current().0 < iova.saturating_add(len))
    }

    fn unpin_range(&mut self, iova: u64, len: u64) -> u64 {
        let end = iova.saturating_add(len);
        let mut n = 0;
        loop {
            let Some(key) = self.pins.pages.cursor_lower_bound(&iova).map(|c| *c.current().0) else { break };
            if key >= end {
                break;
            }
            // Dropping the guard unpins the page.
            self.pins.pages.remove(&key);
            n += 1;
        }
        n
    }
}

/// Runs `f` with an [`Env`] over `gpu` and the guest memory of `dev`.
pub(crate) fn with_env<T: vfio::Ops, R>(
    gpu: &GpuShared,
    dev: &vfio::Device<T>,
    pins: &mut PinCache<T>,
    f: impl FnOnce(&mut Env<'_>) -> R,
) -> R
where
    vfio::Device<T>: BarRemapSink + DispatchSlot,
{
    let bars = KernelBars(gpu);
    let mut vram = HostVram::new(&bars, gpu.bar3_mapped());
    let mut sys = VfioGuestMemory { dev, pins };
    let mut tables = PoolTables::new(gpu);
    let mut host = KernelChannels(gpu, dev, dev.dispatch_slot(), KernelFetch::new(gpu));
    let clock = GpuClock(gpu);
    let mut env = Env { vram: &mut vram, sys: &mut sys, tables: &mut tables, host: &mut host, clock: &clock };
    f(&mut env)
}
