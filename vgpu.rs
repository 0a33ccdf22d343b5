// SPDX-License-Identifier: GPL-2.0
//! A vGPU: the VFIO device one mdev presents to its VM.
//!
//! It looks like a Quadro 6000: an emulated config space (shadow/pci_config.rs) with the
//! type's BAR sizes, the VFIO regions of a PCI device, INTx/MSI/REQ interrupts delivered
//! through eventfds, and reset. BAR accesses are trapped here and handed to the vGPU's
//! mediator (shadow/mediator.rs), which reaches the host through `host_env`. With `bar_remap`
//! on, BAR3 is also offered for mmap: a fault points one of the vGPU's host BAR1 slots at the
//! guest page its BAR3 page table names (shadow/bar_remap.rs) and maps the slot.

use crate::{
    bar_remap::{self, BarView, MapDecision},
    eventfd::EventFd,
    gf100,
    host_env::{self, BarRemapSink, DispatchSlot, KernelBars, KernelStorage, PinCache},
    host_sched,
    host_gpu::HostVram,
    host_init,
    memory::Vram,
    pagetable::VmDesc,
    mediator::{Mediator, MediatorStats},
    partition::Slice,
    pci_config::{ConfigSpace, COMMAND_BUS_MASTER, CONFIG_SIZE},
    sched::account::VgpuId,
    vfio::{self, DeviceFlag, IrqFlag, IrqFlags, IrqIndex, Region, RegionFlag, RegionFlags},
    vregs, GpuShared,
};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::{mm::virt::VmaNew, new_mutex, prelude::*, sync::Arc, sync::Mutex};

/// What the VM's interrupt wiring looks like right now.
#[derive(Default)]
struct Irqs {
    intx: Option<EventFd>,
    intx_masked: bool,
    msi: Option<EventFd>,
    req: Option<EventFd>,
}

struct VgpuState {
    config: ConfigSpace,
    irqs: Irqs,
    /// Boxed: it holds 128-bit channel sets, and the VFIO core only guarantees 8-byte
    /// alignment for the memory the vGPU lives in.
    med: KBox<Mediator<KernelStorage>>,
    /// Guest pages pinned for the GPU, until unmapped or closed.
    pins: PinCache<Vgpu>,
}

/// Counters shown in sysfs.
#[derive(Default)]
pub(crate) struct VgpuCounters {
    pub(crate) mmio_traps: AtomicU64,
    pub(crate) mmio_denied: AtomicU64,
    pub(crate) resets: AtomicU64,
    /// BAR3 pages mapped through a slot (faults served).
    pub(crate) bar_maps: AtomicU64,
    /// BAR3 faults refused (SIGBUS).
    pub(crate) bar_refused: AtomicU64,
}

/// BAR remapping state a fault reads and writes (under `Vgpu::remap`).
struct RemapState {
    /// The guest's BAR3 root as the mediator last published it (None: direct mode).
    root: Option<VmDesc>,
    /// Per BAR3 page: 1 + the guest VRAM page index it is mapped onto, 0 if not mapped;
    /// reported to the mediator and cleared (with a zap) before each shadow sync.
    mapped: KVVec<u32>,
    /// Some entry of `mapped` is set.
    any: bool,
}

/// One vGPU's device state.
///
/// Lock order (outer first): `state` → the faulting process's `mmap_lock` (pinning guest
/// pages, DMA) → `remap` → the device file's `i_mmap_rwsem` (zapping) → page-table locks; a
/// BAR3 fault runs under `mmap_lock` and takes `remap` only (then the GPU's `pramin` and
/// `tlb`, leaves), never `state`, so pinning under `state` cannot deadlock with a fault.
#[pin_data(PinnedDrop)]
pub(crate) struct Vgpu {
    pub(crate) gpu: Arc<GpuShared>,
    pub(crate) share: u32,
    pub(crate) slice: Slice,
    pub(crate) bar1_size: u64,
    pub(crate) bar3_size: u64,
    pub(crate) counters: VgpuCounters,
    #[pin]
    state: Mutex<VgpuState>,
    /// `bar_remap` as it was when the device was opened (BAR3 offered for mmap).
    remap_on: AtomicBool,
    /// What a BAR3 fault needs and leaves behind; held across a fault's slot update and
    /// insertion, and across a zap.
    #[pin]
    remap: Mutex<RemapState>,
    /// A refused BAR3 fault was logged since the device was opened.
    refusal_logged: AtomicBool,
}

impl Vgpu {
    /// A vGPU of type `gpuvm-share` owning `slice` of `gpu`. The slice goes back to the GPU
    /// when the vGPU is dropped.
    pub(crate) fn new(gpu: Arc<GpuShared>, share: u32, slice: Slice) -> Result<impl PinInit<Self, Error>> {
        let bar1_size = gf100::pci::BAR1_SIZE / share as u64;
        let bar3_size = gf100::pci::BAR3_SIZE / share as u64;
        let config = ConfigSpace::new(bar1_size, bar3_size);
        let med = KBox::new(Mediator::new(slice, gpu.boot0(), gpu.pool_quota(slice.units)).ok_or(ENOMEM)?, GFP_KERNEL)?;
        let mapped = KVVec::from_elem(0u32, (bar3_size / bar_remap::PAGE) as usize, GFP_KERNEL)?;
        Ok(try_pin_init!(Self {
            gpu,
            share,
            slice,
            bar1_size,
            bar3_size,
            counters: VgpuCounters::default(),
            state <- new_mutex!(VgpuState { config, irqs: Irqs::default(), med, pins: PinCache::new() }),
            remap_on: AtomicBool::new(false),
            remap <- new_mutex!(RemapState { root: None, mapped, any: false }),
            refusal_logged: AtomicBool::new(false),
        }))
    }

    /// Signals the guest on a rising edge of its virtual interrupt line: MSI if set up, else
    /// INTx (masked automatically until the guest unmasks it).
    fn update_irq(st: &mut VgpuState) {
        if !st.med.take_irq_edge() {
            return;
        }
        // As with vfio-pci, an installed MSI trigger means MSI is on: userspace drivers
        // enable it through SET_IRQS, QEMU does so when its guest sets the MSI enable bit.
        if let Some(e) = &st.irqs.msi {
            e.signal();
        } else if !st.config.intx_disabled() && !st.irqs.intx_masked {
            if let Some(e) = &st.irqs.intx {
                st.irqs.intx_masked = true;
                st.config.set_interrupt_status(true);
                e.signal();
            }
        }
    }

    /// Host interrupt events for this vGPU (from the host IRQ thread): a non-stall interrupt
    /// and MMU faults `(host instance block, VA, info)` per fault unit.
    pub(crate) fn deliver(dev: &vfio::Device<Self>, ev: &crate::host_gpu::HostEvents, nonstall: bool) {
        let mut st = dev.state.lock();
        st.med.deliver(ev, nonstall);
        Self::update_irq(&mut st);
    }

    /// Whether a non-stall interrupt the host just took may be this vGPU's (its channels
    /// made progress since the last look).
    pub(crate) fn claim_nonstall(dev: &vfio::Device<Self>) -> bool {
        let mut guard = dev.state.lock();
        let st = &mut *guard;
        let med = &mut st.med;
        host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.claim_nonstall(env))
    }

    /// The GPU's dispatcher completed a submission of this vGPU: its guest's USERD pages
    /// show the host channels' progress (for a guest that polls them without a trap).
    pub(crate) fn refresh_userd(dev: &vfio::Device<Self>) {
        let mut guard = dev.state.lock();
        let st = &mut *guard;
        let med = &mut st.med;
        host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.refresh_userd(env));
    }

    /// The vGPU's slot in the GPU's dispatcher.
    pub(crate) fn slot(&self) -> Option<VgpuId> {
        host_sched::slot(self.slice.first_unit)
    }

    /// The watchdog stops host channel `host_chid` (this vGPU's): unrunnable while it is
    /// evicted. Whether it was one of this vGPU's bound channels and an engine is still on it
    /// now (with the state lock held: a teardown that got there first has taken it off).
    pub(crate) fn watchdog_stop(dev: &vfio::Device<Self>, host_chid: u32) -> bool {
        let mut guard = dev.state.lock();
        if crate::host_gpu::engine_on(&host_env::KernelBars(&dev.gpu), host_chid).is_none() {
            return false;
        }
        let st = &mut *guard;
        let med = &mut st.med;
        host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.watchdog_stop(env, host_chid))
    }

    /// The eviction the watchdog began ended: killed (an engine was reset; the guest gets
    /// its error) or switched out (runs on).
    pub(crate) fn watchdog_outcome(dev: &vfio::Device<Self>, host_chid: u32, killed: bool) {
        let mut guard = dev.state.lock();
        let st = &mut *guard;
        let med = &mut st.med;
        host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.watchdog_outcome(env, host_chid, killed));
        Self::update_irq(st);
    }

    fn region_size(&self, region: Region) -> u64 {
        match region {
            Region::Bar0 => gf100::pci::BAR0_SIZE,
            Region::Bar1 => self.bar1_size,
            Region::Bar3 => self.bar3_size,
            Region::Config => CONFIG_SIZE as u64,
            _ => 0,
        }
    }

    /// Checks that an access of `len` bytes at `off` lies inside `region`.
    fn check_access(&self, region: Region, off: u64, len: usize) -> Result {
        let size = self.region_size(region);
        match off.checked_add(len as u64) {
            Some(end) if size != 0 && end <= size => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// One 32-bit guest access to BAR0, BAR1 or BAR3 (`val` for writes); the read value.
    fn mmio(dev: &vfio::Device<Self>, region: Region, off: u64, val: Option<u32>) -> u32 {
        let mut guard = dev.state.lock();
        Self::mmio_locked(dev, &mut guard, region, off, val)
    }

    /// [`Vgpu::mmio`] with the state lock held (a run of accesses takes it once).
    fn mmio_locked(dev: &vfio::Device<Self>, st: &mut VgpuState, region: Region, off: u64, val: Option<u32>) -> u32 {
        dev.counters.mmio_traps.fetch_add(1, Ordering::Relaxed);
        let bar = match region {
            Region::Bar1 => Some(vregs::Bar::Bar1),
            Region::Bar3 => Some(vregs::Bar::Bar3),
            _ => None,
        };
        let med = &mut st.med;
        let (ok, value) = host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| match (bar, val) {
            (None, None) => med.bar0_read(env, off as u32).map_or((false, 0), |v| (true, v)),
            (None, Some(v)) => (med.bar0_write(env, off as u32, v), 0),
            (Some(b), None) => med.bar_read(env, b, off).map_or((false, 0), |v| (true, v)),
            (Some(b), Some(v)) => (med.bar_write(env, b, off, v), 0),
        });
        if !ok {
            dev.counters.mmio_denied.fetch_add(1, Ordering::Relaxed);
        }
        Self::update_irq(st);
        value
    }

    /// Whether a run of BAR1/BAR3 accesses can be done word by word under one lock: whole,
    /// aligned 32-bit words inside the region (anything else takes the per-access path, which
    /// applies the per-access rules and errors).
    fn word_run(&self, region: Region, off: u64, len: usize) -> bool {
        matches!(region, Region::Bar1 | Region::Bar3)
            && off % 4 == 0
            && len % 4 == 0
            && self.check_access(region, off, len).is_ok()
    }

    /// Counters of the mediator (sysfs).
    pub(crate) fn virt_stats(&self) -> MediatorStats {
        self.state.lock().med.stats
    }

    fn reset_state(dev: &vfio::Device<Self>, st: &mut VgpuState) {
        st.config = ConfigSpace::new(dev.bar1_size, dev.bar3_size);
        st.irqs.intx_masked = false;
        let med = &mut st.med;
        host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.reset(env));
        // Its channels are stopped: what it had queued is dropped, others' work untouched.
        if let Some(v) = dev.slot() {
            dev.gpu.dispatch_reset(v);
        }
    }
}

impl DispatchSlot for vfio::Device<Vgpu> {
    fn dispatch_slot(&self) -> Option<VgpuId> {
        self.slot()
    }
}

/// The mediator's BAR-remapping calls (made under `state`).
impl BarRemapSink for vfio::Device<Vgpu> {
    fn bar_remap(&self) -> bool {
        self.remap_on.load(Ordering::Relaxed)
    }

    fn bar_changed(&self, bar: vregs::Bar, desc: Option<VmDesc>) {
        if bar != vregs::Bar::Bar3 {
            return;
        }
        // Under `remap`, so no fault can insert a page decided over the old root after the
        // zap: every later fault walks `desc`. What was mapped stays to be reported (the guest
        // may have written it before the zap).
        let mut r = self.remap.lock();
        r.root = desc;
        self.zap(Region::Bar3, 0, self.bar3_size);
    }

    fn take_mapped(&self, f: &mut dyn FnMut(u64) -> bool) {
        let mut r = self.remap.lock();
        if !r.any {
            return;
        }
        // A page taken is unmapped before the sync that follows reads it (its entries were
        // just marked for re-reading): a write after that faults (under `remap`, held here)
        // and is recorded again. A page kept stays mapped and recorded.
        let mut left = false;
        for (i, e) in r.mapped.iter_mut().enumerate() {
            if *e == 0 {
                continue;
            }
            if f(u64::from(*e - 1) * bar_remap::PAGE) {
                self.zap(Region::Bar3, i as u64 * bar_remap::PAGE, bar_remap::PAGE);
                *e = 0;
            } else {
                left = true;
            }
        }
        r.any = left;
    }
}

impl Vgpu {
    /// A fault on BAR3 page `off`: resolve it over the published root, point the slot, map it.
    fn bar3_fault(dev: &vfio::Device<Self>, off: u64, fault: &vfio::Fault<'_>) -> Result {
        let spt = dev.gpu.remap_spt().ok_or(EINVAL)?;
        let slots = host_init::remap_slots(dev.slice.first_unit, dev.slice.units);
        let mut r = dev.remap.lock();
        let bars = KernelBars(&dev.gpu);
        let mut vram = HostVram::new(&bars, dev.gpu.bar3_mapped());
        let view = BarView { on: dev.remap_on.load(Ordering::Relaxed), bar: vregs::Bar::Bar3, desc: r.root, size: dev.bar3_size };
        match bar_remap::resolve(&vram, &dev.slice, &view, off, &slots) {
            MapDecision::Map { host_bar1_off, host_page, guest_page } => {
                // Recorded before the page can be written through the mapping.
                let slot = r.mapped.get_mut((off / bar_remap::PAGE) as usize).ok_or(EINVAL)?;
                *slot = u32::try_from(guest_page / bar_remap::PAGE + 1).map_err(|_| EINVAL)?;
                r.any = true;
                vram.write64(host_init::remap_pte_addr(spt, host_bar1_off), host_init::remap_pte(host_page));
                dev.gpu.tlb_flush(host_init::layout::BAR1_PD, false).map_err(|e| {
                    dev_warn!(dev.parent(), "BAR3 fault at {:#x}: host BAR1 TLB flush failed: {:?} (SIGBUS)\n", off, e);
                    EIO
                })?;
                fault.insert_pfn((dev.gpu.bar1_phys() + host_bar1_off) >> kernel::page::PAGE_SHIFT)?;
                dev.counters.bar_maps.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            MapDecision::Refuse(why) => {
                dev.counters.bar_refused.fetch_add(1, Ordering::Relaxed);
                if !dev.refusal_logged.swap(true, Ordering::Relaxed) {
                    dev_warn!(dev.parent(), "BAR3 mmap fault at {:#x} refused: {:?} (SIGBUS; logged once per open)\n", off, why);
                }
                Err(EFAULT)
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Vgpu {
    fn drop(self: Pin<&mut Self>) {
        // Out of the dispatcher before the slot can go to a new vGPU (its channels were
        // stopped at close).
        if let Some(v) = self.slot() {
            self.gpu.dispatch_remove(v);
        }
        self.gpu.release_slice(&self.slice);
    }
}

/// Whether the guest has bus mastering on in its PCI command register.
fn bus_master(config: &ConfigSpace) -> bool {
    let mut cmd = [0u8; 2];
    config.read(PCI_COMMAND, &mut cmd) && u16::from_le_bytes(cmd) & COMMAND_BUS_MASTER != 0
}

/// The PCI command register's offset in config space.
const PCI_COMMAND: u64 = 0x04;

/// Installs or removes the eventfd of a one-vector IRQ index.
fn set_eventfd(slot: &mut Option<EventFd>, fd: i32) -> Result {
    *slot = match fd {
        -1 => None,
        fd => Some(EventFd::from_fd(fd)?),
    };
    Ok(())
}

#[vtable]
impl vfio::Ops for Vgpu {
    const NAME: &'static CStr = c"gpuvm-vgpu";

    fn open_device(dev: &vfio::Device<Self>) -> Result {
        // What the previous user of this vGPU left (marked at its close) is cleared before
        // this one can read anything; if it cannot be, the open fails.
        dev.gpu.scrub_if_dirty(&dev.slice, "open")?;
        // Latched per open: the shadows' write tracking and the region info follow it.
        let on = dev.gpu.bar_remap() && dev.gpu.remap_spt().is_some();
        let mut r = dev.remap.lock();
        r.root = None;
        r.any = false;
        r.mapped.iter_mut().for_each(|e| *e = 0);
        drop(r);
        dev.remap_on.store(on, Ordering::Relaxed);
        dev.refusal_logged.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn mmap(dev: &vfio::Device<Self>, region: Region, offset: u64, vma: &VmaNew) -> Result {
        let len = (vma.end() - vma.start()) as u64;
        let inside = offset.checked_add(len).is_some_and(|end| end <= dev.bar3_size);
        if region != Region::Bar3 || !dev.remap_on.load(Ordering::Relaxed) || !inside {
            return Err(EINVAL);
        }
        // A private mapping would let the user's writes go to copies, not the device.
        if vma.flags() & kernel::mm::virt::flags::SHARED == 0 {
            return Err(EINVAL);
        }
        dev.map_for_faults(vma);
        Ok(())
    }

    fn fault(dev: &vfio::Device<Self>, region: Region, offset: u64, fault: &vfio::Fault<'_>) -> Result {
        match region {
            Region::Bar3 => Self::bar3_fault(dev, offset, fault),
            _ => Err(EINVAL),
        }
    }

    fn close_device(dev: &vfio::Device<Self>) {
        // The VM is gone: its channels leave the host, its pinned pages are released (only
        // possible while the device still counts as open), and nothing signals a dead eventfd.
        let mut guard = dev.state.lock();
        let st = &mut *guard;
        st.config = ConfigSpace::new(dev.bar1_size, dev.bar3_size);
        let med = &mut st.med;
        host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.close(env));
        // Its channels are stopped: its queued submissions are dropped (counters kept).
        if let Some(v) = dev.slot() {
            dev.gpu.dispatch_reset(v);
        }
        st.irqs = Irqs::default();
        // The next user of this vGPU must not read what this one left: the slice is marked
        // dirty and scrubbed before anyone can reach it again, at the next open of this vGPU or
        // the next creation on the slice, not in this VM's shutdown (a scrub of a whole slice
        // is hundreds of milliseconds, and nobody can reach the slice in between).
        if st.med.take_touched() {
            dev.gpu.mark_dirty(&dev.slice);
        }
    }

    fn dma_unmap(dev: &vfio::Device<Self>, iova: u64, length: u64) {
        let mut guard = dev.state.lock();
        let st = &mut *guard;
        let med = &mut st.med;
        host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.dma_unmap(env, iova, length));
    }

    fn device_info(_dev: &vfio::Device<Self>) -> vfio::DeviceInfo {
        vfio::DeviceInfo { flags: DeviceFlag::Pci | DeviceFlag::Reset }
    }

    fn region_info(dev: &vfio::Device<Self>, region: Region) -> Result<vfio::RegionInfo> {
        let size = dev.region_size(region);
        let mut flags = if size == 0 { RegionFlags::empty() } else { RegionFlag::Read | RegionFlag::Write };
        let mut sparse = None;
        if region == Region::Bar3 && dev.remap_on.load(Ordering::Relaxed) {
            flags = flags | RegionFlag::Mmap;
            sparse = Some((0, size));
        }
        Ok(vfio::RegionInfo { size, flags, sparse })
    }

    fn irq_info(_dev: &vfio::Device<Self>, index: IrqIndex) -> Result<vfio::IrqInfo> {
        let (flags, count) = match index {
            IrqIndex::Intx => (IrqFlag::Eventfd | IrqFlag::Maskable | IrqFlag::Automasked, 1),
            IrqIndex::Msi | IrqIndex::Req => (IrqFlag::Eventfd | IrqFlag::Noresize, 1),
            _ => (IrqFlags::empty(), 0),
        };
        Ok(vfio::IrqInfo { flags, count })
    }

    fn set_irqs(dev: &vfio::Device<Self>, set: &vfio::IrqSet<'_>) -> Result {
        use vfio::{IrqAction::*, IrqData};
        let mut guard = dev.state.lock();
        let st = &mut *guard;
        let slot = match set.index {
            IrqIndex::Intx => &mut st.irqs.intx,
            IrqIndex::Msi => &mut st.irqs.msi,
            IrqIndex::Req => &mut st.irqs.req,
            _ => return Err(EINVAL),
        };
        // Count 0 with no data: tear the index down (vfio-pci semantics).
        if set.count == 0 {
            return match (set.action, &set.data) {
                (Trigger, IrqData::None) => {
                    *slot = None;
                    Ok(())
                }
                _ => Err(EINVAL),
            };
        }
        let fire = match (set.action, &set.data) {
            (Trigger, IrqData::Eventfd(fds)) => {
                set_eventfd(slot, fds[0])?;
                false
            }
            (Trigger, IrqData::None) => true,
            (Trigger, IrqData::Bool(b)) => b[0] != 0,
            (Mask | Unmask, IrqData::Eventfd(_)) => return Err(EINVAL),
            (Mask | Unmask, _) if set.index != IrqIndex::Intx => return Err(EINVAL),
            (action, data) => {
                let apply = match data {
                    IrqData::Bool(b) => b[0] != 0,
                    _ => true,
                };
                if apply {
                    st.irqs.intx_masked = action == Mask;
                    if action == Unmask {
                        st.config.set_interrupt_status(false);
                    }
                }
                false
            }
        };
        if fire {
            match set.index {
                IrqIndex::Req => {
                    if let Some(e) = &st.irqs.req {
                        e.signal();
                    }
                }
                IrqIndex::Msi => {
                    if let Some(e) = &st.irqs.msi {
                        e.signal();
                    }
                }
                _ => {
                    if let Some(e) = &st.irqs.intx {
                        st.irqs.intx_masked = true;
                        e.signal();
                    }
                }
            }
        }
        Ok(())
    }

    fn reset(dev: &vfio::Device<Self>) -> Result {
        let mut st = dev.state.lock();
        Self::reset_state(dev, &mut st);
        dev.counters.resets.fetch_add(1, Ordering::Relaxed);
        // After a reset the device holds nothing of its previous user.
        if st.med.take_touched() {
            dev.gpu.scrub(&dev.slice, "reset")?;
        }
        Ok(())
    }

    fn read(dev: &vfio::Device<Self>, region: Region, off: u64, buf: &mut [u8]) -> Result {
        dev.check_access(region, off, buf.len())?;
        match region {
            Region::Config => {
                dev.state.lock().config.read(off, buf).then_some(()).ok_or(EINVAL)
            }
            // BAR0 registers are 32 bits wide; BAR1/BAR3 take 32- and 64-bit accesses.
            Region::Bar0 if buf.len() != 4 => Err(EINVAL),
            _ if buf.len() != 4 && buf.len() != 8 => Err(EINVAL),
            _ => {
                for (i, word) in buf.chunks_mut(4).enumerate() {
                    let v = Self::mmio(dev, region, off + 4 * i as u64, None);
                    word.copy_from_slice(&v.to_le_bytes());
                }
                Ok(())
            }
        }
    }

    fn write(dev: &vfio::Device<Self>, region: Region, off: u64, data: &[u8]) -> Result {
        dev.check_access(region, off, data.len())?;
        match region {
            Region::Config => {
                let mut guard = dev.state.lock();
                let st = &mut *guard;
                if !st.config.write(off, data) {
                    return Err(EINVAL);
                }
                // Bus mastering off stops the vGPU's DMA: its channels leave the GPU.
                let bus_master = bus_master(&st.config);
                let med = &mut st.med;
                host_env::with_env(&dev.gpu, dev, &mut st.pins, |env| med.set_bus_master(env, bus_master));
                Ok(())
            }
            Region::Bar0 if data.len() != 4 => Err(EINVAL),
            _ if data.len() != 4 && data.len() != 8 => Err(EINVAL),
            _ => {
                for (i, word) in data.chunks(4).enumerate() {
                    let v = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    Self::mmio(dev, region, off + 4 * i as u64, Some(v));
                }
                Ok(())
            }
        }
    }

    fn read_run(dev: &vfio::Device<Self>, region: Region, off: u64, buf: &mut [u8]) -> (usize, Result) {
        if !dev.word_run(region, off, buf.len()) {
            return vfio::split_run(off, buf.len(), |o, at, w| match buf.get_mut(at..at + w) {
                Some(b) => Self::read(dev, region, o, b),
                None => Err(EINVAL),
            });
        }
        let mut guard = dev.state.lock();
        for (i, word) in buf.chunks_exact_mut(4).enumerate() {
            let v = Self::mmio_locked(dev, &mut guard, region, off + 4 * i as u64, None);
            word.copy_from_slice(&v.to_le_bytes());
        }
        (buf.len(), Ok(()))
    }

    fn write_run(dev: &vfio::Device<Self>, region: Region, off: u64, data: &[u8]) -> (usize, Result) {
        if !dev.word_run(region, off, data.len()) {
            return vfio::split_run(off, data.len(), |o, at, w| match data.get(at..at + w) {
                Some(d) => Self::write(dev, region, o, d),
                None => Err(EINVAL),
            });
        }
        let mut guard = dev.state.lock();
        for (i, word) in data.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            Self::mmio_locked(dev, &mut guard, region, off + 4 * i as u64, Some(v));
        }
        (data.len(), Ok(()))
    }

    fn request(dev: &vfio::Device<Self>, count: u32) {
        let st = dev.state.lock();
        match &st.irqs.req {
            Some(e) => {
                if count == 0 {
                    dev_info!(dev.parent(), "removal requested: asking the user to release the vGPU\n");
                }
                e.signal();
            }
            None => {
                if count == 0 {
                    dev_info!(dev.parent(), "removal blocked: device open and no REQ eventfd\n");
                }
            }
        }
    }
}
