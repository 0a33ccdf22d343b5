// SPDX-License-Identifier: GPL-2.0
//! gpuvm: full GPU virtualization of an NVIDIA Fermi GF100 as an mdev/VFIO parent driver.
//!
//! The crate root: the PCI driver that owns each GF100 it finds, makes it an mdev parent
//! offering vGPU types by share (`gpuvm-1`, `-2`, `-4`, `-8`), and the per-GPU and per-vGPU
//! sysfs files. The vGPU device itself is in `vgpu.rs`; hardware facts come from `uapi/`
//! (shared with the GF100 model and the guest driver); FFI lives only in `rust/`.

use core::{
    fmt::Write,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};
use gf100::{pfb, pmc};
use kernel::{
    device::Core,
    io::{poll::read_poll_timeout, Io},
    new_mutex, pci,
    prelude::*,
    time::{delay::fsleep, Delta, Instant, Monotonic},
    str::Formatter,
    sync::{aref::ARef, Arc, Mutex},
};
use host_pool::HostPool;
use partition::{Pools, Slice, UnitMap, SHARES, UNITS};
use rust_sysfs::{Attr, AttrGroup, AttrList, BoundDriverData, DeviceAttribute, GroupList, GroupsRegistration};

// uapi/ is the shared hardware contract; the module uses the part it needs.
#[path = "uapi/gf100.rs"]
#[allow(dead_code, unreachable_pub)]
mod gf100;
#[path = "uapi/pci_ids.rs"]
#[allow(dead_code, unreachable_pub)]
mod pci_ids;
#[path = "uapi/config_space.rs"]
#[allow(dead_code, unreachable_pub)]
mod config_space;
#[path = "uapi/intr_tree.rs"]
#[allow(dead_code, unreachable_pub)]
mod intr_tree;

#[path = "shadow/host_pool.rs"]
#[allow(dead_code, unreachable_pub)]
mod host_pool;
#[path = "shadow/memory.rs"]
#[allow(dead_code, unreachable_pub)]
mod memory;
#[path = "shadow/pagetable.rs"]
#[allow(dead_code, unreachable_pub)]
mod pagetable;
#[path = "shadow/shadow_vm.rs"]
#[allow(dead_code, unreachable_pub)]
mod shadow_vm;
#[path = "shadow/channel.rs"]
#[allow(dead_code, unreachable_pub)]
mod channel;
#[path = "shadow/regs.rs"]
#[allow(dead_code, unreachable_pub)]
mod regs;
#[path = "shadow/sync_policy.rs"]
#[allow(dead_code, unreachable_pub)]
mod sync_policy;
#[path = "shadow/vregs.rs"]
#[allow(dead_code, unreachable_pub)]
mod vregs;
#[path = "shadow/partition.rs"]
#[allow(dead_code, unreachable_pub)]
mod partition;
#[path = "shadow/host_init.rs"]
#[allow(dead_code, unreachable_pub)]
mod host_init;
#[path = "shadow/pci_config.rs"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod pci_config;
#[path = "shadow/host_gpu.rs"]
#[allow(dead_code, unreachable_pub)]
mod host_gpu;
#[path = "shadow/bar_remap.rs"]
#[allow(dead_code, unreachable_pub)]
mod bar_remap;
#[path = "shadow/mediator.rs"]
#[allow(dead_code, unreachable_pub)]
mod mediator;
#[path = "shadow/host_channel.rs"]
#[allow(dead_code, unreachable_pub)]
mod host_channel;
#[path = "shadow/scrub.rs"]
#[allow(dead_code, unreachable_pub)]
mod scrub;
#[path = "shadow/guest_fetch.rs"]
#[allow(dead_code, unreachable_pub)]
mod guest_fetch;
#[path = "shadow/watchdog.rs"]
#[allow(dead_code, unreachable_pub)]
mod watchdog;
// The scheduler (policy) and the submission mechanism; host_sched.rs drives them.
#[path = "sched/mod.rs"]
#[allow(dead_code, unreachable_pub)]
mod sched;
#[path = "shadow/dispatch.rs"]
#[allow(dead_code, unreachable_pub)]
mod dispatch;

#[path = "rust/bindings.rs"]
mod bindings;
#[path = "rust/dma.rs"]
mod dma_words;
#[path = "rust/eventfd.rs"]
mod eventfd;
#[path = "rust/irq.rs"]
mod irq;
#[path = "rust/periodic.rs"]
mod periodic;
#[path = "rust/mdev.rs"]
mod mdev;
#[path = "rust/sysfs.rs"]
mod rust_sysfs;
#[path = "rust/vfio.rs"]
mod vfio;

mod host_env;
mod host_sched;
mod vgpu;

module! {
    type: GpuvmModule,
    name: "gpuvm",
    authors: ["gpuvm developers"],
    description: "Full virtualization of NVIDIA Fermi GF100 GPUs as mdev/VFIO vGPUs",
    license: "GPL",
}

/// What every vGPU of a GPU shares: identity, geometry, the allocation map, the host's
/// apertures, pool and runlist.
///
/// Lock order (outer first): a vGPU's `state` → `dispatch` → `runlist` → `pramin`, a
/// vGPU's `state` → `scrubber` → `runlist`, and a vGPU's `state` → `fetch` → `pramin` (a
/// shadow sync holds `fetch` from its first fetch to its end; the fetch's channel kicks under
/// it); `pool`, `sys_pool`, `tlb` and `units` are leaves taken alone
/// (at probe only, `pool` → `runlist` while the scrubber is set up); `kick_lock` is
/// innermost: taken under any of these (the scrubber's channel kicks under `scrubber`, and
/// under `pool` → `runlist` at probe and removal), and nothing is taken under it but
/// register accesses; `vgpu_list` is never held while a vGPU's `state` is taken (the
/// interrupt thread copies the list first), nor is `dispatch` (the dispatcher's timer
/// releases it before refreshing a vGPU).
#[pin_data]
pub(crate) struct GpuShared {
    pdev: ARef<pci::Device>,
    boot0: u32,
    vram_bytes: u64,
    pools: Pools,
    #[pin]
    units: Mutex<UnitMap>,
    vgpus: AtomicU32,
    bar0: pci::DevresBar<{ gf100::pci::BAR0_SIZE as usize }>,
    /// The host's BAR3: an identity map of host VRAM `[0, bar3_mapped)`.
    bar3: pci::DevresBar<{ gf100::pci::BAR3_SIZE as usize }>,
    bar3_mapped: u64,
    /// The PRAMIN window (BAR0 0x700000) is one per GPU: whoever moves it holds this.
    #[pin]
    pramin: Mutex<host_env::PraminWindow>,
    /// Host VRAM for shadow structures.
    #[pin]
    pool: Mutex<HostPool>,
    /// Shadow page tables: host system memory the GPU walks by DMA (empty: they are in `pool`).
    sys_tables: host_env::SysTables,
    /// The pages of `sys_tables`, one pool per chunk.
    #[pin]
    sys_pool: Mutex<KVec<HostPool>>,
    /// Bytes of the pool left after bring-up (the scrubber's blocks included): each vGPU may
    /// hold its share of it, so the quotas of all vGPUs together fit in the pool. Set at
    /// probe, before any vGPU can exist.
    pool_bytes: AtomicU64,
    /// Bytes of shadow structures vGPUs hold (page tables in `sys_tables` or `pool`, instance
    /// blocks in `pool`).
    shadow_held: AtomicU64,
    /// Serialises host TLB flushes (a flush is a slot wait, two register writes and a
    /// completion wait, which must not interleave between vGPUs).
    #[pin]
    tlb: Mutex<()>,
    /// Serialises host kicks and engine resets (`host_gpu::KickLock`); a leaf, held across
    /// one kick's wait (at most two 2 s polls in `host_gpu::evict`).
    #[pin]
    kick_lock: Mutex<()>,
    /// The runaway-work watchdog (its limit is the `watchdog_ms` knob); taken alone.
    #[pin]
    watchdog: Mutex<watchdog::Watchdog>,
    /// Channels the watchdog stopped.
    watchdog_kills: AtomicU64,
    /// The host's BAR1: its USERD area, where doorbells are rung, then the BAR-remapping slots.
    bar1: pci::DevresBar<{ gf100::pci::BAR1_SIZE as usize }>,
    /// Bus address of the host's BAR1 (slots are inserted into user mappings from it).
    bar1_phys: u64,
    /// Host VRAM of BAR1's small-page table, which points each slot (None: no remapping).
    remap_spt: Option<u64>,
    /// The `bar_remap` knob: vGPUs opened while it is on offer their BAR3 for mmap.
    bar_remap: AtomicBool,
    /// Interrupts the host handled (all causes).
    interrupts: AtomicU64,
    /// Non-stall interrupts no vGPU's progress explained (given to every vGPU).
    nonstall_unclaimed: AtomicU64,
    /// Time base of the vGPUs' PTIMER.
    epoch: Instant<Monotonic>,
    /// Shadow page tables sync at the next use instead of at the guest's TLB flush.
    lazy_shadow: AtomicBool,
    /// The one host runlist all vGPUs share.
    #[pin]
    runlist: Mutex<host_gpu::HostRunlist>,
    /// Live vGPUs, for interrupt delivery.
    #[pin]
    vgpu_list: Mutex<KVec<ARef<vfio::Device<vgpu::Vgpu>>>>,
    /// The host copy-engine channel that clears partitions (None until probe set it up).
    #[pin]
    scrubber: Mutex<Option<scrub::Scrubber>>,
    /// The copy-engine fetcher shadow syncs read guest page tables through, with its staging
    /// buffer in coherent host memory (None: not set up, syncs read through PRAMIN).
    #[pin]
    fetch: Mutex<Option<host_env::FetchState>>,
    /// Units whose VRAM may hold a previous user's data (all of them at probe: nobody knows
    /// what the card held); cleared by a scrub.
    dirty_units: AtomicU32,
    /// The submission dispatcher and its scheduler (host_sched.rs): which vGPU's queued
    /// doorbell reaches the GPU next. Held only for bookkeeping and the bounded register
    /// accesses of a forward or a completion check (no sleep, no wait under it).
    #[pin]
    dispatch: Mutex<KBox<host_sched::DispatchState>>,
}


/// The GPU's kick lock as `host_gpu` asks for it.
pub(crate) struct KickLock<'a>(pub(crate) &'a GpuShared);

impl host_gpu::KickLock for KickLock<'_> {
    fn hold<R>(&self, f: impl FnOnce() -> R) -> R {
        let _serialised = self.0.kick_lock.lock();
        f()
    }
}

impl GpuShared {
    pub(crate) fn pdev(&self) -> &kernel::device::Device {
        self.pdev.as_ref()
    }
    /// BOOT_0 of the physical GPU (what a vGPU reports too).
    pub(crate) fn boot0(&self) -> u32 {
        self.boot0
    }
    pub(crate) fn bar0(&self) -> &pci::DevresBar<{ gf100::pci::BAR0_SIZE as usize }> {
        &self.bar0
    }
    pub(crate) fn bar1(&self) -> &pci::DevresBar<{ gf100::pci::BAR1_SIZE as usize }> {
        &self.bar1
    }
    pub(crate) fn bar3(&self) -> &pci::DevresBar<{ gf100::pci::BAR3_SIZE as usize }> {
        &self.bar3
    }
    /// BAR3 maps host VRAM `[0, bar3_mapped)` one to one.
    pub(crate) fn bar3_mapped(&self) -> u64 {
        self.bar3_mapped
    }
    pub(crate) fn pramin(&self) -> &Mutex<host_env::PraminWindow> {
        &self.pramin
    }
    pub(crate) fn pool(&self) -> &Mutex<HostPool> {
        &self.pool
    }
    pub(crate) fn sys_tables(&self) -> &host_env::SysTables {
        &self.sys_tables
    }
    pub(crate) fn sys_pool(&self) -> &Mutex<KVec<HostPool>> {
        &self.sys_pool
    }
    /// Counts `bytes` (in whole pool pages) of shadow structures taken (`true`) or given back
    /// by a vGPU, in the VRAM pool or the system-memory tables alike.
    pub(crate) fn shadow_held(&self, bytes: u64, taken: bool) {
        let pages = bytes.div_ceil(host_pool::PAGE).max(1) * host_pool::PAGE;
        if taken {
            self.shadow_held.fetch_add(pages, Ordering::Relaxed);
        } else {
            self.shadow_held.fetch_sub(pages, Ordering::Relaxed);
        }
    }
    /// Bytes of the host pool nobody holds: the pool left after bring-up less what vGPUs hold
    /// of shadow structures wherever they live (each vGPU's quota is a share of the former).
    fn shadow_free_bytes(&self) -> u64 {
        self.pool_bytes.load(Ordering::Relaxed).saturating_sub(self.shadow_held.load(Ordering::Relaxed))
    }
    pub(crate) fn fetch(&self) -> &Mutex<Option<host_env::FetchState>> {
        &self.fetch
    }
    /// What the fetcher did (zeros without one).
    fn fetch_stats(&self) -> guest_fetch::FetchStats {
        self.fetch.lock().as_ref().map_or_else(guest_fetch::FetchStats::default, |f| f.fetcher.stats)
    }
    /// Host-pool bytes a vGPU of `units` units may hold (its share of the GPU).
    pub(crate) fn pool_quota(&self, units: u32) -> u64 {
        self.pool_bytes.load(Ordering::Relaxed) * u64::from(units) / u64::from(UNITS)
    }
    /// Flushes the host TLB for the page directory at `pd` (host VRAM, or a bus address if
    /// `sysmem`), serialised with every other flush of this GPU.
    pub(crate) fn tlb_flush(&self, pd: u64, sysmem: bool) -> core::result::Result<(), host_gpu::HostError> {
        let _serialised = self.tlb.lock();
        host_gpu::tlb_flush(&host_env::KernelBars(self), &host_env::GpuClock(self), pd, sysmem)
    }
    /// Stops host channel `host_chid` (`host_gpu::evict`), serialised with every other kick
    /// of this GPU; an engine reset is logged.
    pub(crate) fn evict(&self, host_chid: u32) -> core::result::Result<host_gpu::Evicted, host_gpu::HostError> {
        let r = host_gpu::evict(&host_env::KernelBars(self), &host_env::GpuClock(self), &KickLock(self), host_chid);
        if let Ok(host_gpu::Evicted::EngineReset(engine)) = r {
            dev_warn!(self.pdev.as_ref(), "host channel {} would not leave engine {}: engine reset\n", host_chid, engine);
        }
        r
    }
    /// BAR1's small-page table of remapping slots, if remapping is possible.
    pub(crate) fn remap_spt(&self) -> Option<u64> {
        self.remap_spt
    }
    /// Bus address of the host's BAR1.
    pub(crate) fn bar1_phys(&self) -> u64 {
        self.bar1_phys
    }
    /// The `bar_remap` knob.
    pub(crate) fn bar_remap(&self) -> bool {
        self.bar_remap.load(Ordering::Relaxed)
    }
    /// The `lazy_shadow` knob.
    pub(crate) fn lazy_shadow(&self) -> bool {
        self.lazy_shadow.load(Ordering::Relaxed)
    }
    /// Nanoseconds since probe (the vGPUs' PTIMER base).
    pub(crate) fn uptime_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Replaces one vGPU's part of the host runlist and submits the merged list.
    pub(crate) fn commit_runlist(&self, part: channel::RunlistPart) -> core::result::Result<(), host_gpu::HostError> {
        self.runlist.lock().commit(&host_env::KernelBars(self), &host_env::GpuClock(self), self.bar3_mapped, part).map(|_| ())
    }

    /// Clears `slice`'s VRAM with the host copy engine and logs what it cost; `why` names the
    /// occasion. On failure the slice's units stay marked dirty.
    pub(crate) fn scrub(&self, slice: &Slice, why: &str) -> Result {
        let units = slice.unit_mask();
        self.dirty_units.fetch_or(units, Ordering::AcqRel);
        let mut scrubber = self.scrubber.lock();
        let Some(s) = (*scrubber).as_mut() else {
            dev_err!(self.pdev.as_ref(), "scrub ({}): no scrubber, VRAM at {:#x} not cleared\n", why, slice.vram_base);
            return Err(EIO);
        };
        match s.scrub_slice(&host_env::KernelBars(self), &host_env::GpuClock(self), &KickLock(self), slice) {
            Ok(st) => {
                self.dirty_units.fetch_and(!units, Ordering::AcqRel);
                dev_info!(
                    self.pdev.as_ref(),
                    "scrub: {} MiB at {:#x} ({}) in {} us, {} MiB/s\n",
                    slice.vram_size >> 20,
                    slice.vram_base,
                    why,
                    st.ns / 1000,
                    st.mib_per_s()
                );
                Ok(())
            }
            Err(e) => {
                dev_err!(self.pdev.as_ref(), "scrub ({}) of {} MiB at {:#x} failed: {:?}\n", why, slice.vram_size >> 20, slice.vram_base, e);
                Err(EIO)
            }
        }
    }

    /// Marks `slice` as holding its user's data: it is scrubbed before its next user can reach
    /// it ([`GpuShared::scrub_if_dirty`] at open and at creation).
    pub(crate) fn mark_dirty(&self, slice: &Slice) {
        let units = slice.unit_mask();
        self.dirty_units.fetch_or(units, Ordering::AcqRel);
    }

    /// Scrubs `slice` if any of its units may hold a previous user's data.
    pub(crate) fn scrub_if_dirty(&self, slice: &Slice, why: &str) -> Result {
        let units = slice.unit_mask();
        if self.dirty_units.load(Ordering::Acquire) & units == 0 {
            return Ok(());
        }
        self.scrub(slice, why)
    }

    fn add_vgpu(&self, dev: ARef<vfio::Device<vgpu::Vgpu>>) -> Result {
        self.vgpu_list.lock().push(dev, GFP_KERNEL)?;
        Ok(())
    }

    fn remove_vgpu(&self, dev: &vfio::Device<vgpu::Vgpu>) {
        let mut list = self.vgpu_list.lock();
        if let Some(i) = list.iter().position(|d| core::ptr::eq(&**d, dev)) {
            let _ = list.remove(i);
        }
    }
}

impl irq::Handler for GpuShared {
    /// Claims the interrupt if the GPU raised it. The line stays masked (IRQF_ONESHOT) until
    /// the thread has read and acknowledged the causes.
    fn handle(&self) -> irq::IrqReturn {
        let pending = host_init::Mmio::rd(&host_env::KernelBars(self), pmc::INTR_HOST);
        if pending == 0 || pending == gf100::bad::UNIT_DISABLED {
            return irq::IrqReturn::None;
        }
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        irq::IrqReturn::WakeThread
    }

    /// Reads and acknowledges every cause (shadow/host_gpu.rs) and delivers what the vGPUs
    /// must hear about (process context: their state locks sleep). The list lock is dropped
    /// before any vGPU's lock is taken, so one busy vGPU does not hold up the list.
    fn thread(&self) {
        let Some(ev) = host_gpu::service_interrupt(&host_env::KernelBars(self)) else { return };
        if !ev.any() {
            return;
        }
        let targets = {
            let list = self.vgpu_list.lock();
            let mut v = KVec::with_capacity(list.len(), GFP_KERNEL);
            if let Ok(v) = &mut v {
                for d in list.iter() {
                    let _ = v.push(d.clone(), GFP_KERNEL);
                }
            }
            v
        };
        let Ok(targets) = targets else {
            dev_warn!(self.pdev.as_ref(), "interrupt delivery: out of memory, events dropped\n");
            return;
        };
        // A non-stall interrupt goes to the vGPUs whose channels made progress; if none shows
        // any after a few looks, to every vGPU with channels on the runlist (a spurious
        // interrupt at worst, never a lost one).
        let mut claims: u32 = 0;
        if ev.nonstall {
            for _ in 0..host_gpu::NONSTALL_CLAIM_TRIES {
                for (i, dev) in targets.iter().enumerate() {
                    if vgpu::Vgpu::claim_nonstall(dev) {
                        claims |= 1 << (i % 32);
                    }
                }
                if claims != 0 {
                    break;
                }
                fsleep(Delta::from_micros(i64::from(host_gpu::NONSTALL_CLAIM_PAUSE_US)));
            }
            if claims == 0 {
                self.nonstall_unclaimed.fetch_add(1, Ordering::Relaxed);
                claims = u32::MAX;
            }
        }
        for (i, dev) in targets.iter().enumerate() {
            vgpu::Vgpu::deliver(dev, &ev, claims & (1 << (i % 32)) != 0);
        }
        // Any interrupt may mark the running submission's end (a fence's non-stall, a fault
        // that stopped the channel).
        if let Some(v) = self.dispatch_poll() {
            if let Some(dev) = targets.iter().find(|d| d.slot() == Some(v)) {
                vgpu::Vgpu::refresh_userd(dev);
            }
        }
    }
}

/// The watchdog's periodic check (rust/periodic.rs runs it on the GPU's own queue).
impl periodic::Tick for GpuShared {
    fn tick(&self) -> u64 {
        self.watchdog_check();
        self.watchdog.lock().period_ns() / 1000
    }
}

impl GpuShared {
    /// One watchdog check (shadow/watchdog.rs): what the engines are doing; a guest channel
    /// held past the limit is made unrunnable in its owner's mediator, evicted with no vGPU
    /// lock held (the kick may wait its full timeout, then the engine is reset), and the
    /// outcome given to its owner: killed (SCHED_ERROR CTXSW_TIMEOUT) if an engine had to be
    /// reset, else switched out and left to run on. The host's own channels (the
    /// scrubber's) are not the watchdog's: their waits are bounded already.
    fn watchdog_check(&self) {
        let seen = host_gpu::engines_seen(&host_env::KernelBars(self), self.bar3_mapped);
        let found = self.watchdog.lock().check(self.uptime_ns(), seen);
        for r in found.into_iter().flatten() {
            let owner = self.vgpu_list.lock().iter().find(|d| d.slice.channel_from_host(r.host_chid).is_some()).cloned();
            let Some(dev) = owner else { continue };
            if !vgpu::Vgpu::watchdog_stop(&dev, r.host_chid) {
                continue;
            }
            let evicted = self.evict(r.host_chid);
            let killed = !matches!(evicted, Ok(host_gpu::Evicted::Preempted));
            if killed {
                self.watchdog_kills.fetch_add(1, Ordering::Relaxed);
            }
            dev_warn!(
                self.pdev.as_ref(),
                "watchdog: host channel {} held engine {} for {} ms without progress: {} ({:?})\n",
                r.host_chid,
                r.engine,
                r.held_ns / 1_000_000,
                if killed { "stopped" } else { "switched out" },
                evicted
            );
            vgpu::Vgpu::watchdog_outcome(&dev, r.host_chid, killed);
        }
    }

    fn alloc_slice(&self, share: u32) -> Result<Slice> {
        let units = UnitMap::units_for(share).ok_or(EINVAL)?;
        let first = self.units.lock().alloc(share).ok_or(ENOSPC)?;
        self.vgpus.fetch_add(1, Ordering::Relaxed);
        Ok(self.pools.slice(first, units))
    }

    /// Gives a vGPU's slice back (called when the vGPU's device state is dropped).
    pub(crate) fn release_slice(&self, slice: &Slice) {
        if self.units.lock().free(slice.first_unit, slice.units) {
            self.vgpus.fetch_sub(1, Ordering::Relaxed);
        } else {
            dev_err!(self.pdev.as_ref(), "slice {:?} was not allocated: accounting bug\n", slice.first_unit);
        }
    }
}

/// The mdev side: types by share, vGPU creation and removal.
struct VgpuDriver;

/// What an mdev holds while it exists: its VFIO registration (device files).
struct VgpuHandle {
    reg: vfio::Registration<vgpu::Vgpu>,
}

static MDEV_DRIVER: mdev::DriverSlot<VgpuDriver> = mdev::DriverSlot::new();

impl mdev::Driver for VgpuDriver {
    type ParentData = Arc<GpuShared>;
    type TypeData = u32;
    type Data = VgpuHandle;

    const DEVICE_API: &'static CStr = c"vfio-pci";
    const SLOT: &'static mdev::DriverSlot<Self> = &MDEV_DRIVER;
    const DEV_GROUPS: Option<&'static GroupList<2>> = Some(&vgpu_sysfs::GROUPS);

    fn probe(mdev: &mdev::Device, gpu: &Arc<GpuShared>, mtype: &mdev::Type<u32>) -> Result<Pin<KBox<VgpuHandle>>> {
        let share = *mtype.data();
        let slice = gpu.alloc_slice(share).inspect_err(|_| {
            dev_info!(mdev.as_bound(), "no room for a gpuvm-{} vGPU (ENOSPC)\n", share);
        })?;
        // Nobody may read what a previous user left in the slice.
        if let Err(e) = gpu.scrub_if_dirty(&slice, "create") {
            gpu.release_slice(&slice);
            return Err(e);
        }
        // From here on the slice is owned by the vGPU state and freed when it drops.
        let dev = vfio::Device::new(mdev.as_bound(), vgpu::Vgpu::new(gpu.clone(), share, slice)?)?;
        // Removed again when the device state drops (vgpu.rs), whatever fails below.
        if let Some(v) = dev.slot() {
            gpu.dispatch_add(v);
        }
        gpu.add_vgpu(dev.clone())?;
        let reg = match vfio::Registration::new(dev.clone()) {
            Ok(r) => r,
            Err(e) => {
                gpu.remove_vgpu(&dev);
                return Err(e);
            }
        };
        dev_info!(
            mdev.as_bound(),
            "vGPU gpuvm-{}: VRAM {} MiB at {:#x}, channels {}..{}\n",
            share,
            slice.vram_size >> 20,
            slice.vram_base,
            slice.first_channel,
            slice.first_channel + slice.channels - 1
        );
        Ok(KBox::pin(VgpuHandle { reg }, GFP_KERNEL)?)
    }

    fn remove(mdev: &mdev::Device, data: Pin<KBox<VgpuHandle>>) {
        let dev = data.reg.device();
        dev.gpu.remove_vgpu(dev);
        // Dropping the registration waits until userspace closed the device.
        drop(data);
        dev_info!(mdev.as_bound(), "vGPU removed\n");
    }

    fn available(gpu: &Arc<GpuShared>, mtype: &mdev::Type<u32>) -> u32 {
        gpu.units.lock().available(*mtype.data())
    }

    fn describe(gpu: &Arc<GpuShared>, mtype: &mdev::Type<u32>, f: &mut Formatter<'_>) -> Result {
        let share = *mtype.data();
        let units = UNITS / share;
        writeln!(
            f,
            "1/{} of a GF100: VRAM {} MiB, channels {}, BAR1 {} MiB, BAR3 {} MiB",
            share,
            (units as u64 * gpu.pools.vram_per_unit) >> 20,
            units * gpu.pools.channels_per_unit,
            (gf100::pci::BAR1_SIZE / share as u64) >> 20,
            (gf100::pci::BAR3_SIZE / share as u64) >> 20
        )
        .map_err(|_| EINVAL)
    }
}

/// One physical GF100 owned by this driver. Field order is drop order: sysfs files first,
/// then the mdev parent (which removes every vGPU), then the GPU is quiesced.
struct GpuvmGpu {
    /// Dropped first: the watchdog and the dispatcher's timer stop before anything they look
    /// at goes.
    _watchdog: periodic::Periodic<GpuShared>,
    _sched_timer: periodic::Periodic<host_sched::SchedTimer>,
    _attrs: GroupsRegistration,
    _parent: Pin<KBox<mdev::Parent<VgpuDriver>>>,
    _host: HostGpu,
    shared: Arc<GpuShared>,
}

/// The host's hold on the GPU: its interrupt, and quiescing the GPU when dropped (before the
/// interrupt is freed, so no interrupt arrives for a handler that is gone).
struct HostGpu {
    shared: Arc<GpuShared>,
    _msi: irq::MsiRegistration<GpuShared>,
}

impl Drop for HostGpu {
    fn drop(&mut self) {
        // The scrubber's channel leaves the runlist and its memory goes back first.
        if let Some(s) = self.shared.scrubber.lock().take() {
            let mut pool = self.shared.pool.lock();
            let mut runlist = self.shared.runlist.lock();
            s.shut_down(&host_env::KernelBars(&self.shared), &host_env::GpuClock(&self.shared), &KickLock(&self.shared), &mut pool, &mut runlist);
        }
        if let Some(f) = self.shared.fetch.lock().take() {
            let mut pool = self.shared.pool.lock();
            let mut runlist = self.shared.runlist.lock();
            let host_env::FetchState { fetcher, staging } = f;
            if !fetcher.shut_down(&host_env::KernelBars(&self.shared), &host_env::GpuClock(&self.shared), &KickLock(&self.shared), &mut pool, &mut runlist, self.shared.bar3_mapped) {
                // A copy may still land in it: never give it back (nor the channel's block).
                dev_warn!(self.shared.pdev.as_ref(), "guest-VRAM fetcher could not be evicted: its staging buffer is leaked\n");
                core::mem::forget(staging);
            }
        }
        // The mapping is revoked once the device is unbound; before that, leave the GPU quiet.
        if let Some(bar0) = self.shared.bar0.try_access() {
            host_init::shut_down(&HostBar0(&bar0));
        }
    }
}

/// Sets up the guest-VRAM fetcher at probe: its channel from the host pool on the host
/// runlist, its staging buffer from coherent memory.
fn guest_fetch_bring_up(pdev: &pci::Device<Core<'_>>, shared: &GpuShared) -> core::result::Result<host_env::FetchState, guest_fetch::FetchError> {
    let staging = dma_words::DmaWords::zeroed(pdev.as_ref(), guest_fetch::STAGING_BYTES as usize).map_err(|_| guest_fetch::FetchError::NoHostVram)?;
    let mut pool = shared.pool.lock();
    let mut runlist = shared.runlist.lock();
    let fetcher = guest_fetch::Fetcher::bring_up(
        &host_env::KernelBars(shared),
        &host_env::GpuClock(shared),
        &KickLock(shared),
        &mut pool,
        &mut runlist,
        shared.bar3_mapped,
        host_gpu::GUEST_CHANNELS + 1,
        &shared.pools,
    )?;
    Ok(host_env::FetchState { fetcher, staging })
}

/// Proves the interrupt path at probe: a software interrupt raised through PMC must reach
/// the handler over MSI within a bounded time.
fn verify_msi(pdev: &pci::Device, bar0: &Bar0<'_>, gpu: &GpuShared) -> Result {
    let m = HostBar0(bar0);
    let before = gpu.interrupts.load(Ordering::Relaxed);
    host_init::Mmio::wr(&m, pmc::INTR_EN_HOST, pmc::INTR_EN_HW | pmc::INTR_EN_SW);
    host_init::Mmio::wr(&m, pmc::INTR_HOST, pmc::INTR_SOFTWARE);
    // TIMEOUT: see MSI_VERIFY_MS; a GPU whose interrupts do not arrive is refused.
    let arrived = read_poll_timeout(
        || Ok(gpu.interrupts.load(Ordering::Relaxed)),
        |&n| n != before,
        Delta::from_millis(1),
        Delta::from_millis(MSI_VERIFY_MS),
    );
    host_init::Mmio::wr(&m, pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    if let Err(e) = arrived {
        dev_err!(pdev, "no MSI within {} ms of a software interrupt ({:?}): refusing\n", MSI_VERIFY_MS, e);
        return Err(EIO);
    }
    Ok(())
}

/// BOOT_0 reads timed at probe.
const BAR0_TIMING_READS: u32 = 256;

/// How long probe waits for the test interrupt (a trapped MMIO round trip in the test VM is
/// ~0.2 ms; real hardware is far faster).
const MSI_VERIFY_MS: i64 = 1000;

struct GpuvmPciDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <GpuvmPciDriver as pci::Driver>::IdInfo,
    [
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_465 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480M as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480_B as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_470 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_C2050 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_M2070 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_6000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_5000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_5000M as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_6000_B as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_4000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_T20 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_M2070_Q as u32), ()),
    ]
);

/// The mdev types, one per share.
const TYPE_NAMES: [(&CStr, &CStr); 4] =
    [(c"1", c"gpuvm-1"), (c"2", c"gpuvm-2"), (c"4", c"gpuvm-4"), (c"8", c"gpuvm-8")];

/// The host bring-up runs over the real BAR0.
/// BAR0 (the register aperture) is 32 MiB on every GF100.
pub(crate) type Bar0<'bound> = pci::Bar<'bound, { gf100::pci::BAR0_SIZE as usize }>;

pub(crate) struct HostBar0<'a, 'b>(pub(crate) &'a Bar0<'b>);

impl host_init::Mmio for HostBar0<'_, '_> {
    fn rd(&self, off: u32) -> u32 {
        self.0.try_read32(off as usize).unwrap_or(gf100::bad::NO_REGISTER)
    }
    fn wr(&self, off: u32, val: u32) {
        // Offsets come from uapi/ and the host layout, all inside BAR0; an out-of-range one
        // would be a bug caught by try_write32's bounds check rather than a stray access.
        let _ = self.0.try_write32(val, off as usize);
    }
}

/// VRAM in bytes from the PFB partition registers (the way nouveau sizes GF100 VRAM).
fn vram_bytes(bar0: &Bar0<'_>) -> u64 {
    let parts = bar0.read32(pfb::FBP_COUNT as usize).min(pfb::MAX_PARTS);
    let disabled = bar0.read32(pfb::FBP_DISABLED_MASK as usize);
    (0..parts)
        .filter(|p| disabled & (1 << p) == 0)
        .map(|p| bar0.try_read32(pfb::part_mib(p) as usize).unwrap_or(0) as u64)
        .sum::<u64>()
        << 20
}

impl pci::Driver for GpuvmPciDriver {
    type IdInfo = ();
    type Data<'bound> = GpuvmGpu;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pdev.enable_device_mem()?;
        pdev.set_master();
        let bar0 = pdev.iomap_region_sized::<{ gf100::pci::BAR0_SIZE as usize }>(0, c"gpuvm-bar0")?;
        let boot0 = bar0.read32(pmc::Boot0::OFFSET as usize);
        let chipset = pmc::Boot0::from_raw(boot0).chipset();
        if chipset != pmc::CHIPSET_GF100 {
            dev_err!(pdev, "BOOT_0 {:#010x} reports chipset {:#x}, not GF100 ({:#x}): refusing\n", boot0, chipset, pmc::CHIPSET_GF100);
            return Err(ENODEV);
        }
        let vram = vram_bytes(&bar0);
        let Some(pools) = Pools::new(vram, host_gpu::HOST_VRAM_RESERVED, 0, host_gpu::GUEST_CHANNELS) else {
            dev_err!(pdev, "VRAM of {} MiB is too small to partition: refusing\n", vram >> 20);
            return Err(ENODEV);
        };
        dev_info!(pdev, "GF100 chipset {:#x} (BOOT_0 {:#010x}), VRAM {} MiB\n", chipset, boot0, vram >> 20);
        // What one trapped register access costs on this machine: every figure about the
        // mediator's overhead is in units of this.
        let t0 = Instant::<Monotonic>::now();
        let mut same = 0u32;
        for _ in 0..BAR0_TIMING_READS {
            same += u32::from(bar0.read32(pmc::Boot0::OFFSET as usize) == boot0);
        }
        let rtt_ns = t0.elapsed().as_nanos() / i64::from(BAR0_TIMING_READS);
        // Writes of the PRAMIN window base (harmless before bring-up) may be posted.
        let t0 = Instant::<Monotonic>::now();
        for _ in 0..BAR0_TIMING_READS {
            bar0.write32(0, gf100::pbus::PraminBase::OFFSET as usize);
        }
        let wr_ns = t0.elapsed().as_nanos() / i64::from(BAR0_TIMING_READS);
        dev_info!(
            pdev,
            "BAR0 read round trip {} ns, write {} ns ({} of {} reads consistent)\n",
            rtt_ns,
            wr_ns,
            same,
            BAR0_TIMING_READS
        );
        let bar3_len = pdev.resource_len(3)?;
        let host = host_init::bring_up(&HostBar0(&bar0), host_gpu::HOST_VRAM_RESERVED, bar3_len).map_err(|e| {
            dev_err!(pdev, "host bring-up failed: {:?}\n", e);
            EIO
        })?;
        dev_info!(pdev, "host bring-up done: BAR3 maps {} MiB of host VRAM, {} PBDMAs, PFIFO on\n", host.bar3_mapped >> 20, host.pbdmas);
        let bar3 = pdev.iomap_region_sized::<{ gf100::pci::BAR3_SIZE as usize }>(3, c"gpuvm-bar3")?.into_devres()?;
        let bar1 = pdev.iomap_region_sized::<{ gf100::pci::BAR1_SIZE as usize }>(1, c"gpuvm-bar1")?.into_devres()?;
        let mut pool = HostPool::new(host_init::layout::FREE, host.bar3_mapped);
        let bufs = [pool.alloc(host_gpu::RUNLIST_BYTES).ok_or(ENOMEM)?, pool.alloc(host_gpu::RUNLIST_BYTES).ok_or(ENOMEM)?];
        // BAR remapping: a small-page table for BAR1's slots (a failure only turns it off).
        let remap_spt = match pool.alloc(host_init::REMAP_SPT_BYTES) {
            Some(spt) => match host_init::map_remap_slots(&HostBar0(&bar0), spt) {
                Ok(()) => Some(spt),
                Err(e) => {
                    dev_warn!(pdev, "BAR remapping off: BAR1 slots not set up: {:?}\n", e);
                    let _ = pool.free(spt, host_init::REMAP_SPT_BYTES);
                    None
                }
            },
            None => {
                dev_warn!(pdev, "BAR remapping off: no host VRAM for BAR1's slot table (ENOMEM)\n");
                None
            }
        };
        let bar1_phys = pdev.resource_start(1)?;
        // Shadow page tables in host system memory, as much as the VRAM pool holds (so the
        // quotas, cut from the VRAM pool, fit in it too).
        let (sys_tables, sys_pool) = host_env::SysTables::new(pdev.as_ref(), pool.free_bytes());
        if sys_tables.bytes() > 0 {
            dev_info!(pdev, "shadow page tables in {} KiB of host system memory\n", sys_tables.bytes() >> 10);
        }
        let plain: &pci::Device = pdev;
        let shared = Arc::pin_init(
            try_pin_init!(GpuShared {
                pdev: plain.into(),
                boot0,
                vram_bytes: vram,
                pools,
                units <- new_mutex!(UnitMap::default()),
                vgpus: AtomicU32::new(0),
                bar0: bar0.into_devres()?,
                bar3,
                bar3_mapped: host.bar3_mapped,
                pramin <- new_mutex!(host_env::PraminWindow::new()),
                pool_bytes: AtomicU64::new(0),
                shadow_held: AtomicU64::new(0),
                pool <- new_mutex!(pool),
                sys_tables,
                sys_pool <- new_mutex!(sys_pool),
                tlb <- new_mutex!(()),
                kick_lock <- new_mutex!(()),
                watchdog <- new_mutex!(watchdog::Watchdog::default()),
                watchdog_kills: AtomicU64::new(0),
                bar1,
                bar1_phys,
                remap_spt,
                bar_remap: AtomicBool::new(remap_spt.is_some()),
                interrupts: AtomicU64::new(0),
                nonstall_unclaimed: AtomicU64::new(0),
                epoch: Instant::<Monotonic>::now(),
                lazy_shadow: AtomicBool::new(true),
                runlist <- new_mutex!(host_gpu::HostRunlist::new(bufs)),
                vgpu_list <- new_mutex!(KVec::new()),
                scrubber <- new_mutex!(None),
                fetch <- new_mutex!(None),
                dirty_units: AtomicU32::new(u32::MAX),
                dispatch <- new_mutex!(host_sched::DispatchState::new()?),
            }),
            GFP_KERNEL,
        )?;
        let msi = irq::MsiRegistration::new(pdev, c"gpuvm", shared.clone())?;
        {
            let bar0 = shared.bar0.access(pdev.as_ref())?;
            verify_msi(pdev, bar0, &shared)?;
        }
        dev_info!(pdev, "interrupts over MSI (irq {}) verified\n", msi.irq());
        // The guest-VRAM fetcher's host channel (the next host id) and its staging buffer, before
        // the vGPU quotas are cut from the pool. A failure only leaves syncs on PRAMIN reads.
        match guest_fetch_bring_up(pdev, &shared) {
            Ok(f) => *shared.fetch.lock() = Some(f),
            Err(e) => dev_warn!(pdev, "guest-VRAM fetcher not set up ({:?}): shadow syncs read through PRAMIN\n", e),
        }
        // The scrubber's host channel and zero block, before any vGPU can exist (after MSI is
        // verified: its runlist update and copies raise interrupts, which the handler takes).
        {
            let mut pool = shared.pool.lock();
            let mut runlist = shared.runlist.lock();
            let s = scrub::Scrubber::bring_up(
                &host_env::KernelBars(&shared),
                &host_env::GpuClock(&shared),
                &KickLock(&shared),
                &mut pool,
                &mut runlist,
                shared.bar3_mapped,
                host_gpu::GUEST_CHANNELS,
                &shared.pools,
            )
            .map_err(|e| {
                dev_err!(pdev, "scrubber bring-up failed: {:?}\n", e);
                EIO
            })?;
            drop(runlist);
            shared.pool_bytes.store(pool.free_bytes(), Ordering::Relaxed);
            drop(pool);
            *shared.scrubber.lock() = Some(s);
        }
        let host = HostGpu { shared: shared.clone(), _msi: msi };
        let mut types = KVec::with_capacity(SHARES.len(), GFP_KERNEL)?;
        for (share, (sysfs_name, pretty_name)) in SHARES.into_iter().zip(TYPE_NAMES) {
            types.push(mdev::TypeDesc { sysfs_name, pretty_name, data: share }, GFP_KERNEL)?;
        }
        let parent = mdev::Parent::register(pdev.as_ref(), types, shared.clone())?;
        let attrs = GroupsRegistration::new(pdev.as_ref(), &gpu_sysfs::GROUPS)?;
        let watchdog = periodic::Periodic::start(c"gpuvm-watchdog", shared.clone())?;
        let timer = periodic::Periodic::start(c"gpuvm-sched", Arc::new(host_sched::SchedTimer(shared.clone()), GFP_KERNEL)?)?;
        Ok(GpuvmGpu { _watchdog: watchdog, _sched_timer: timer, _attrs: attrs, _parent: parent, _host: host, shared })
    }
}

impl Drop for GpuvmGpu {
    fn drop(&mut self) {
        dev_info!(self.shared.pdev.as_ref(), "released (chipset {:#x})\n", pmc::CHIPSET_GF100);
    }
}

// ---- sysfs: <pci device>/gpuvm/ (documented in uapi/sysfs-gpuvm)

/// Declares a sysfs group in one place: each line is one attribute, `ro Type c"name" =>
/// |data| value;` (the type and its show are generated) or `rw Type c"name";` (the type and
/// its show/store written by hand). The macro makes every attribute's static, the
/// NULL-terminated list (counted, never by hand) and the group, in module `$m`.
macro_rules! sysfs_group {
    ($m:ident: $target:ty, $dir:literal { $( $kind:ident $ty:ident $name:literal $(=> |$d:ident| $val:expr)?; )* }) => {
        $( sysfs_group!(@show $target, $ty $(=> |$d| $val)?); )*
        mod $m {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[allow(non_upper_case_globals)]
                static $ty: DeviceAttribute = DeviceAttribute::$kind::<$target, super::$ty>($name);
            )*
            static LIST: AttrList<{ [$(stringify!($ty)),*].len() + 1 }> = AttrList::new([$($ty.attr(),)* core::ptr::null_mut()]);
            static GROUP: AttrGroup = AttrGroup::new(Some($dir), &LIST);
            pub(super) static GROUPS: GroupList<2> = GroupList::new([GROUP.as_ptr(), core::ptr::null()]);
        }
    };
    (@show $target:ty, $ty:ident => |$d:ident| $val:expr) => {
        struct $ty;
        impl Attr<$target> for $ty {
            fn show($d: <$target as rust_sysfs::AttrTarget>::Data<'_>, f: &mut Formatter<'_>) -> Result {
                writeln!(f, "{}", $val).map_err(|_| EINVAL)
            }
        }
    };
    (@show $target:ty, $ty:ident) => {};
}

type GpuAttrs = BoundDriverData<GpuvmGpu>;

sysfs_group! { gpu_sysfs: GpuAttrs, c"gpuvm" {
    rw GpuLazyShadow c"lazy_shadow";
    rw GpuBarRemap c"bar_remap";
    ro GpuInterrupts c"interrupts" => |g| g.shared.interrupts.load(Ordering::Relaxed);
    ro GpuNonstallUnclaimed c"nonstall_unclaimed" => |g| g.shared.nonstall_unclaimed.load(Ordering::Relaxed);
    ro GpuVramTotal c"vram_total_mib" => |g| (g.shared.pools.vram_per_unit * UNITS as u64) >> 20;
    ro GpuVramFree c"vram_free_mib" => |g| (g.shared.pools.vram_per_unit * g.shared.units.lock().free_units() as u64) >> 20;
    ro GpuChannelsTotal c"channels_total" => |g| g.shared.pools.channels_per_unit * UNITS;
    ro GpuChannelsFree c"channels_free" => |g| g.shared.pools.channels_per_unit * g.shared.units.lock().free_units();
    ro GpuVgpus c"vgpus" => |g| g.shared.vgpus.load(Ordering::Relaxed);
    ro GpuVramPhysical c"vram_physical_mib" => |g| g.shared.vram_bytes >> 20;
    ro GpuHostPoolFree c"host_pool_free_kib" => |g| g.shared.shadow_free_bytes() >> 10;
    ro GpuShadowTablesSysmem c"shadow_tables_sysmem_kib" => |g| g.shared.sys_tables.bytes() >> 10;
    ro GpuFetches c"fetches" => |g| g.shared.fetch_stats().fetches;
    ro GpuFetchFallbacks c"fetch_fallbacks" => |g| g.shared.fetch_stats().fallbacks;
    rw GpuWatchdogMs c"watchdog_ms";
    ro GpuWatchdogKills c"watchdog_kills" => |g| g.shared.watchdog_kills.load(Ordering::Relaxed);
    rw GpuSchedPolicy c"sched_policy";
    rw GpuSchedPeriod c"sched_period_us";
    rw GpuBandWait c"band_wait_us";
}}

/// The scheduling policy: reads as every policy with the active one in brackets
/// (`fifo [credit] band`); takes one name.
struct GpuSchedPolicy;
impl Attr<GpuAttrs> for GpuSchedPolicy {
    fn show(g: &GpuvmGpu, f: &mut Formatter<'_>) -> Result {
        let active = g.shared.sched_policy();
        for (i, k) in sched::knobs::PolicyKind::ALL.into_iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            if k == active {
                write!(f, "{}[{}]", sep, k.name()).map_err(|_| EINVAL)?;
            } else {
                write!(f, "{}{}", sep, k.name()).map_err(|_| EINVAL)?;
            }
        }
        writeln!(f).map_err(|_| EINVAL)
    }
    fn store(g: &GpuvmGpu, input: &[u8]) -> Result {
        g.shared.set_sched_policy(input)
    }
}

/// The credit replenish period, µs.
struct GpuSchedPeriod;
impl Attr<GpuAttrs> for GpuSchedPeriod {
    fn show(g: &GpuvmGpu, f: &mut Formatter<'_>) -> Result {
        writeln!(f, "{}", g.shared.sched_knobs().period.us()).map_err(|_| EINVAL)
    }
    fn store(g: &GpuvmGpu, input: &[u8]) -> Result {
        g.shared.set_sched_period(input)
    }
}

/// BAND's wait before the GPU goes to a vGPU over its share, µs.
struct GpuBandWait;
impl Attr<GpuAttrs> for GpuBandWait {
    fn show(g: &GpuvmGpu, f: &mut Formatter<'_>) -> Result {
        writeln!(f, "{}", g.shared.sched_knobs().band_wait.us()).map_err(|_| EINVAL)
    }
    fn store(g: &GpuvmGpu, input: &[u8]) -> Result {
        g.shared.set_band_wait(input)
    }
}

/// How long one piece of work may hold an engine without progress, in ms.
struct GpuWatchdogMs;
impl Attr<GpuAttrs> for GpuWatchdogMs {
    fn show(g: &GpuvmGpu, f: &mut Formatter<'_>) -> Result {
        writeln!(f, "{}", g.shared.watchdog.lock().limit_ms()).map_err(|_| EINVAL)
    }
    fn store(g: &GpuvmGpu, input: &[u8]) -> Result {
        let v = rust_sysfs::parse_u32(input)?;
        g.shared.watchdog.lock().set_limit_ms(v).map_err(|_| {
            dev_warn!(
                g.shared.pdev(),
                "watchdog_ms: {} is outside {}..={} (EINVAL)\n",
                v,
                watchdog::WATCHDOG_MS_MIN,
                watchdog::WATCHDOG_MS_MAX
            );
            EINVAL
        })
    }
}

/// Shadow sync policy: 1 = lazy (sync at the next use), 0 = naive (sync at the guest's flush).
struct GpuLazyShadow;
impl Attr<GpuAttrs> for GpuLazyShadow {
    fn show(g: &GpuvmGpu, f: &mut Formatter<'_>) -> Result {
        writeln!(f, "{}", u32::from(g.shared.lazy_shadow.load(Ordering::Relaxed))).map_err(|_| EINVAL)
    }
    fn store(g: &GpuvmGpu, input: &[u8]) -> Result {
        let on = match rust_sysfs::parse_u32(input)? {
            0 => false,
            1 => true,
            v => {
                dev_warn!(g.shared.pdev(), "lazy_shadow: {} is not 0 or 1 (EINVAL)\n", v);
                return Err(EINVAL);
            }
        };
        g.shared.lazy_shadow.store(on, Ordering::Relaxed);
        Ok(())
    }
}

/// BAR remapping: 1 = vGPUs opened from now on offer their BAR3 for mmap (0 = every BAR access
/// trapped). EINVAL for anything but 0/1, ENODEV for 1 when the slots could not be set up.
struct GpuBarRemap;
impl Attr<GpuAttrs> for GpuBarRemap {
    fn show(g: &GpuvmGpu, f: &mut Formatter<'_>) -> Result {
        writeln!(f, "{}", u32::from(g.shared.bar_remap())).map_err(|_| EINVAL)
    }
    fn store(g: &GpuvmGpu, input: &[u8]) -> Result {
        let on = match rust_sysfs::parse_u32(input)? {
            0 => false,
            1 => true,
            v => {
                dev_warn!(g.shared.pdev(), "bar_remap: {} is not 0 or 1 (EINVAL)\n", v);
                return Err(EINVAL);
            }
        };
        if on && g.shared.remap_spt.is_none() {
            dev_warn!(g.shared.pdev(), "bar_remap: no BAR1 slots were set up at probe (ENODEV)\n");
            return Err(ENODEV);
        }
        g.shared.bar_remap.store(on, Ordering::Relaxed);
        Ok(())
    }
}

// ---- sysfs: /sys/bus/mdev/devices/<uuid>/gpuvm/

type VgpuAttrs = mdev::MdevData<VgpuDriver>;

sysfs_group! { vgpu_sysfs: VgpuAttrs, c"gpuvm" {
    ro VgpuForwarded c"mmio_forwarded" => |h| h.reg.device().virt_stats().forwarded;
    ro VgpuDoorbells c"submissions" => |h| h.reg.device().virt_stats().doorbells;
    ro VgpuSyncs c"shadow_syncs" => |h| h.reg.device().virt_stats().syncs;
    ro VgpuPteWrites c"pte_writes" => |h| h.reg.device().virt_stats().pte_writes;
    ro VgpuGuestReads c"pte_reads" => |h| h.reg.device().virt_stats().guest_reads;
    ro VgpuRefused c"pte_refused" => |h| h.reg.device().virt_stats().refused;
    ro VgpuFaults c"faults" => |h| h.reg.device().virt_stats().faults;
    ro VgpuBarMaps c"bar_maps" => |h| h.reg.device().counters.bar_maps.load(Ordering::Relaxed);
    ro VgpuBarRefused c"bar_refused" => |h| h.reg.device().counters.bar_refused.load(Ordering::Relaxed);
    ro VgpuBarZaps c"bar_zaps" => |h| h.reg.device().virt_stats().bar_zaps;
    ro VgpuBarPagesTaken c"bar_pages_taken" => |h| h.reg.device().virt_stats().bar_pages_taken;
    ro VgpuNonstall c"nonstall_interrupts" => |h| h.reg.device().virt_stats().nonstall;
    ro VgpuType c"type" => |h| format_args!("gpuvm-{}", h.reg.device().share);
    ro VgpuVramMib c"vram_mib" => |h| h.reg.device().slice.vram_size >> 20;
    ro VgpuVramBase c"vram_base_mib" => |h| h.reg.device().slice.vram_base >> 20;
    ro VgpuChannels c"channels" => |h| h.reg.device().slice.channels;
    ro VgpuFirstChannel c"first_channel" => |h| h.reg.device().slice.first_channel;
    ro VgpuBar1 c"bar1_mib" => |h| h.reg.device().bar1_size >> 20;
    ro VgpuBar3 c"bar3_mib" => |h| h.reg.device().bar3_size >> 20;
    ro VgpuMmioTraps c"mmio_traps" => |h| h.reg.device().counters.mmio_traps.load(Ordering::Relaxed);
    ro VgpuMmioDenied c"mmio_denied" => |h| h.reg.device().counters.mmio_denied.load(Ordering::Relaxed);
    ro VgpuResets c"resets" => |h| h.reg.device().counters.resets.load(Ordering::Relaxed);
    rw VgpuWeight c"weight";
    ro VgpuGpuTime c"gpu_time_ns" => |h| sched_counters(h).sched.gpu_time_ns;
    ro VgpuWait c"wait_ns" => |h| sched_counters(h).sched.wait_time_ns;
    ro VgpuQueued c"queued" => |h| sched_counters(h).sched.queued;
    ro VgpuDispatched c"dispatched" => |h| sched_counters(h).sched.dispatched;
    ro VgpuGivenUp c"sched_given_up" => |h| sched_counters(h).mech.given_up;
}}

/// The vGPU's scheduler counters (zero for a vGPU outside the dispatcher's slots).
fn sched_counters(h: &VgpuHandle) -> host_sched::SchedCounters {
    let dev = h.reg.device();
    dev.slot().map(|v| dev.gpu.sched_counters(v)).unwrap_or_default()
}

/// Scheduling weight, 1..=100, read by the policy (a change takes effect at once).
struct VgpuWeight;
impl Attr<VgpuAttrs> for VgpuWeight {
    fn show(h: &VgpuHandle, f: &mut Formatter<'_>) -> Result {
        let dev = h.reg.device();
        writeln!(f, "{}", dev.slot().map_or(0, |v| dev.gpu.weight(v))).map_err(|_| EINVAL)
    }
    fn store(h: &VgpuHandle, input: &[u8]) -> Result {
        let dev = h.reg.device();
        let v = dev.slot().ok_or(ENODEV)?;
        dev.gpu.set_weight(dev.parent(), v, input)
    }
}

// ---- module

/// Field order is drop order: the PCI driver (and with it every parent and vGPU) goes before
/// the mdev driver those parents point at.
struct GpuvmModule {
    _pci: Pin<KBox<kernel::driver::Registration<pci::Adapter<GpuvmPciDriver>>>>,
    _mdev: Pin<KBox<mdev::DriverRegistration<VgpuDriver>>>,
}

impl kernel::Module for GpuvmModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let mdev = KBox::pin_init(mdev::DriverRegistration::new(c"gpuvm", module), GFP_KERNEL)?;
        let pci = KBox::pin_init(kernel::driver::Registration::new(c"gpuvm", module), GFP_KERNEL)?;
        Ok(GpuvmModule { _pci: pci, _mdev: mdev })
    }
}
