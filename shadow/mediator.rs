// SPDX-License-Identifier: GPL-2.0
//! The mediator of one vGPU: what a trapped guest access, a guest TLB flush, a doorbell, a
//! DMA unmap, a reset or a host interrupt does. Pure logic over the host, which it reaches
//! only through an [`Env`] of small traits (host VRAM, guest system memory, shadow-table
//! allocation, host channel controls, clock). The kernel builds an `Env` over the real GPU
//! and VFIO pinning for each trapped access; the host tests over the in-process GF100 model,
//! so the guest driver runs through this very code in `cargo test`.
//!
//! Every guest BAR0 access goes through `VRegs` (emulate / translate / deny). BAR1 and BAR3
//! accesses are resolved through the guest's own BAR page tables (a software walk, as the GPU
//! would) into the vGPU's VRAM partition. Writes that land in a guest page directory, page
//! table or bound instance block are reported to the shadows. The guest's GP_PUT doorbell is
//! submitted to the host (its dispatcher decides when the host channel's GP_PUT advances)
//! after the shadows are brought up to date.
//!
//! Host channels use host-owned USERD pages (`host_init::layout::USERD`, one per host channel
//! id), never the guest's: the guest's GP_PUT reaches the GPU only through a doorbell the
//! mediator accepted, and a guest rewriting its USERD changes nothing the GPU reads. The
//! guest's own USERD page shows the host channel's progress: the words PFIFO writes back
//! ([`USERD_PFIFO_WORDS`]) are copied from the host page when the guest reads them and at
//! non-stall interrupts; GP_PUT reads what the guest wrote.

use core::ops::DerefMut;

use crate::bar_remap::{self, MapDecision, Slots};
use crate::channel::{self, ChannelSet, InstShadow, RunlistPart};
use crate::gf100::{inst, pfifo, ramfc, userd};
use crate::guest_fetch::{FetchedVram, GuestFetch};
use crate::host_gpu::{Evicted, HostError, HostEvents};
use crate::host_init::layout;
use crate::memory::{Clock, GuestVram, SysMem, Vram};
use crate::pagetable::{self, Aperture, VmDesc};
use crate::partition::Slice;
use crate::shadow_vm::{PdeShadow, ShadowVm, TableAlloc};
use crate::sync_policy::{self, SyncEnv, SyncMode, UsePoint};
use crate::vregs::{self, Effect, Read, VRegs, Write};

/// Most PDEs one shadow address space mirrors (129 cover the guest driver's 16 GiB + 16 MiB;
/// a bigger limit is cut, see `ShadowVm::limit`).
pub const MAX_PDES: usize = 256;
/// Most distinct address spaces (page directories) one vGPU may have bound at once.
pub const MAX_SPACES: usize = 16;
/// Most channels a vGPU can own (all of the GPU's).
const MAX_CHANNELS: usize = pfifo::CHANNELS as usize;

/// Guest system memory as the mediator needs it: pinning (idempotent, see [`SysMem`]) plus
/// the bookkeeping of what is pinned, so that an unmap can take it back.
pub trait GuestMemory: SysMem {
    /// Whether any page of `[iova, iova + len)` is pinned.
    fn any_pinned(&self, iova: u64, len: u64) -> bool;
    /// Unpins every page of `[iova, iova + len)`; returns how many were pinned.
    fn unpin_range(&mut self, iova: u64, len: u64) -> u64;
}

/// The host GPU's channel and FIFO controls the mediator uses (host channel ids).
pub trait HostChannels {
    /// Binds host channel `host_chid` to the instance block at host VRAM `inst`, or unbinds
    /// it (`None`, which also makes it not runnable).
    fn bind(&mut self, host_chid: u32, inst: Option<u64>);
    /// Sets the channel's RUNNABLE state.
    fn set_runnable(&mut self, host_chid: u32, runnable: bool);
    /// Preempts the channel (bounded wait).
    fn kick(&mut self, host_chid: u32) -> Result<(), HostError>;
    /// Stops the channel so no engine works for it any more: not runnable, preempted, and an
    /// engine that stays busy on it reset (`host_gpu::evict`; bounded).
    fn evict(&mut self, host_chid: u32) -> Result<Evicted, HostError>;
    /// Rings the host doorbell of the channel with GP_PUT `put` (a write of GP_PUT in the
    /// channel's host USERD page through the host poll area).
    fn ring_doorbell(&mut self, host_chid: u32, put: u32);
    /// The guest rang host channel `host_chid` with GP_PUT `put` (inside its GPFIFO ring):
    /// a submission. A host with a scheduler queues it (`dispatch.rs`); without one it is
    /// forwarded at once.
    fn submit(&mut self, host_chid: u32, put: u32) {
        self.ring_doorbell(host_chid, put)
    }
    /// Replaces this vGPU's part of the host runlist and submits the merged list.
    fn commit_runlist(&mut self, part: RunlistPart) -> Result<(), HostError>;
    /// Whether PFIFO still holds work of host channel `host_chid` it has not finished
    /// (CHAN_TABLE STATE PENDING or ACQUIRE_PENDING: `host_gpu::chan_busy`). Asked only when
    /// the channel's GP_GET has reached its last doorbell; a host that cannot tell keeps the
    /// default, which says yes (a lazy flush then syncs at once, as naive mode does).
    fn chan_busy(&mut self, _host_chid: u32) -> bool {
        true
    }
    /// Flushes the host TLB for the shadow page directory at `pd` (a host VRAM address, or a
    /// bus address if `sysmem`).
    fn tlb_flush(&mut self, pd: u64, sysmem: bool) -> Result<(), HostError>;
    /// Waits (bounded) until the interrupt handler has read every fault and engine-error
    /// record (`host_gpu::drain_events`): an unbound channel's records are then resolved to
    /// no channel, before its shadow instance block can go to another vGPU.
    fn drain_events(&mut self);
    /// The shadow sync mode in force (the `lazy_shadow` knob).
    fn sync_mode(&self) -> SyncMode;
    /// A host operation failed; the implementation reports it (e.g. a dmesg line).
    fn report(&mut self, what: HostError);
    /// Whether guest BAR3 pages may be mapped straight onto the host aperture (the
    /// `bar_remap` knob). A host that maps nothing keeps the default.
    fn bar_remap(&self) -> bool {
        false
    }
    /// The guest's `bar` now translates through `desc` (None: direct mode, offset = guest
    /// VRAM address): every direct mapping made before must be removed before this returns
    /// (later accesses fault and are decided again with `bar_remap::resolve` over `desc`).
    /// Called under the vGPU's state lock, only while [`HostChannels::bar_remap`] is on. A
    /// host that maps nothing keeps the default.
    fn bar_changed(&mut self, _bar: vregs::Bar, _desc: Option<VmDesc>) {}
    /// Hands `f` every guest VRAM page (page aligned) mapped straight through a BAR, and
    /// removes the mapping of each page for which `f` says true before returning, so that a
    /// later write to it faults and is reported again; a page for which `f` says false (it
    /// holds no page table) stays mapped and is handed over again at the next call. Called
    /// under the vGPU's state lock before every shadow sync that reads the guest's tables
    /// (the guest may have written them through such a page unseen). A host that maps
    /// nothing keeps the default.
    fn take_mapped(&mut self, _f: &mut dyn FnMut(u64) -> bool) {}
    /// The copy-engine fetcher a shadow sync reads the guest's tables through
    /// (`guest_fetch.rs`), if the host has one: a sync wraps its reads in a fresh
    /// `FetchedVram` over it. A host without one keeps the default (PRAMIN reads).
    fn guest_fetch(&mut self) -> Option<&mut dyn GuestFetch> {
        None
    }
}

/// Heap storage the mediator asks its host for (`KVec` in the kernel, `Vec` on the host): the
/// per-PDE state of each shadow address space and the channel and space tables, kept off the
/// stack (a kernel stack is 16 KiB).
pub trait Storage {
    /// A vector of `T`.
    type Vec<T: Default>: DerefMut<Target = [T]>;
    /// `len` default entries; `None` when out of memory.
    fn with_len<T: Default>(len: usize) -> Option<Self::Vec<T>>;
}

/// Per-PDE shadow state of one address space.
type Pdes<S> = <S as Storage>::Vec<PdeShadow>;

/// What the mediator reaches the host through, for the duration of one call.
pub struct Env<'a> {
    /// Host VRAM.
    pub vram: &'a mut dyn Vram,
    /// Guest system memory (pinning).
    pub sys: &'a mut dyn GuestMemory,
    /// Host VRAM for shadow tables and instance blocks.
    pub tables: &'a mut dyn TableAlloc,
    /// Host channel and FIFO controls.
    pub host: &'a mut dyn HostChannels,
    /// The vGPU's PTIMER time base.
    pub clock: &'a dyn Clock,
}

/// One guest address space and its shadow.
struct Space<P: DerefMut<Target = [PdeShadow]>> {
    /// Guest VRAM address of the guest PD.
    pd: u64,
    vm: ShadowVm<P>,
}

/// A slot of the mediator's address-space table.
pub struct SpaceSlot<P: DerefMut<Target = [PdeShadow]>>(Option<Space<P>>);

impl<P: DerefMut<Target = [PdeShadow]>> Default for SpaceSlot<P> {
    fn default() -> Self {
        Self(None)
    }
}

/// A slot of the mediator's channel table (by guest channel id).
#[derive(Clone, Copy, Default)]
pub struct ChanSlot(Option<Chan>);

/// A guest channel bound on the host.
#[derive(Clone, Copy)]
struct Chan {
    /// Guest instance block (guest VRAM).
    guest_inst: u64,
    /// Shadow instance block (host VRAM, host pool).
    host_inst: u64,
    /// Index in `spaces`.
    space: usize,
    runnable: bool,
    /// Host VRAM address of the host-owned USERD page the shadow RAMFC names.
    userd_host: u64,
    /// Host VRAM address of the guest's USERD page (its RAMFC's, inside the partition): the
    /// guest's view of the channel.
    userd_guest: u64,
    /// GPFIFO entries of the guest's ring (from its RAMFC): a GP_PUT at or past it is refused.
    gp_entries: u32,
    /// GP_PUT of the guest's last accepted doorbell (at bind: the ring position the RAMFC
    /// restores): the host channel has unfinished work while its GP_GET is not there.
    put: u32,
    /// GP_GET as last seen in the host page: progress since tells which vGPU a non-stall
    /// interrupt belongs to.
    last_get: u32,
    /// Stopped by the watchdog: it stays off the engines until the guest binds it again.
    killed: bool,
}

/// The USERD words PFIFO writes back (§8.7): the guest sees them as the host channel has them.
pub const USERD_PFIFO_WORDS: [u32; 6] =
    [userd::GET, userd::REF, userd::TOP_LEVEL_GET, userd::TOP_LEVEL_GET_HI, userd::GET_HI, userd::GP_GET];

/// Host VRAM address of host channel `host_chid`'s host-owned USERD page.
pub const fn host_userd(host_chid: u32) -> u64 {
    layout::USERD + host_chid as u64 * userd::SIZE
}

/// GPFIFO entries of the ring a RAMFC GP_BASE_HI word declares (0 if the order is invalid,
/// which refuses every doorbell: the model and the hardware would not load the channel).
fn gp_entries(gp_base_hi: u32) -> u32 {
    let order = (gp_base_hi >> ramfc::GP_BASE_HI_ORDER_SHIFT) & ramfc::GP_BASE_HI_ORDER_MASK;
    if order > ramfc::GP_ORDER_MAX {
        0
    } else {
        1 << order
    }
}

/// Counters shown in sysfs and used by benchmarks.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediatorStats {
    /// Doorbells submitted to the host.
    pub doorbells: u64,
    /// Doorbells refused: GP_PUT outside the channel's GPFIFO ring.
    pub doorbells_refused: u64,
    /// Shadow syncs that did something.
    pub syncs: u64,
    /// Shadow entries written.
    pub pte_writes: u64,
    /// Guest page-table entries read.
    pub guest_reads: u64,
    /// Guest entries refused.
    pub refused: u64,
    /// MMU faults delivered.
    pub faults: u64,
    /// Non-stall interrupts raised in the guest.
    pub nonstall: u64,
    /// Guest accesses forwarded to host VRAM.
    pub forwarded: u64,
    /// Channels the watchdog stopped.
    pub killed: u64,
    /// Guest BAR pages mapped straight onto the host aperture (BAR remapping).
    pub bar_maps: u64,
    /// Faults on mapped BAR pages refused (see `bar_remap::Refusal`).
    pub bar_refused: u64,
    /// Times the direct mappings of a BAR were removed.
    pub bar_zaps: u64,
    /// Directly mapped guest pages marked for re-reading at a sync (their mappings removed).
    pub bar_pages_taken: u64,
}

/// Recent guest BAR translations (4 KiB page of BAR offset -> guest VRAM page), so a run of
/// accesses to one page walks the guest's BAR page tables once. Emptied whenever the guest
/// flushes its TLB or rebinds a BAR, which is exactly when the GPU's own TLB would drop them.
#[derive(Clone, Copy, Default)]
struct BarTlb {
    entries: [(u64, u64, bool); BAR_TLB_ENTRIES],
    valid: u32,
    next: usize,
}

const BAR_TLB_ENTRIES: usize = 16;
const BAR_PAGE: u64 = 0x1000;

impl BarTlb {
    fn lookup(&self, page: u64) -> Option<(u64, bool)> {
        (0..BAR_TLB_ENTRIES)
            .filter(|&i| self.valid & (1 << i) != 0)
            .find_map(|i| self.entries.get(i).filter(|e| e.0 == page).map(|e| (e.1, e.2)))
    }

    fn insert(&mut self, page: u64, guest_page: u64, read_only: bool) {
        if let Some(e) = self.entries.get_mut(self.next) {
            *e = (page, guest_page, read_only);
            self.valid |= 1 << self.next;
        }
        self.next = (self.next + 1) % BAR_TLB_ENTRIES;
    }

    fn clear(&mut self) {
        self.valid = 0;
    }
}

/// Guest system memory with one IOVA range refused: while a range is being unmapped, a sync
/// must stop pointing into it instead of pinning it again.
struct Excluding<'a> {
    inner: &'a mut dyn GuestMemory,
    exclude: Option<(u64, u64)>,
}

impl SysMem for Excluding<'_> {
    fn pin(&mut self, iova: u64, len: u64) -> Option<u64> {
        if let Some((x, xlen)) = self.exclude {
            let end = iova.checked_add(len.max(1))?;
            if iova < x.saturating_add(xlen) && x < end {
                return None;
            }
        }
        self.inner.pin(iova, len)
    }
}

/// The host pool as one vGPU may use it: allocations beyond its quota fail (the guest sees
/// an unloadable channel or a fault in its own address space), so one guest's page tables
/// cannot take the pool from the others.
struct Quota<'a> {
    inner: &'a mut dyn TableAlloc,
    used: &'a mut u64,
    quota: u64,
}

impl Quota<'_> {
    /// `bytes` from `take` if they fit the quota, counted.
    fn charge(&mut self, bytes: u64, take: impl FnOnce(&mut dyn TableAlloc) -> Option<u64>) -> Option<u64> {
        if self.used.checked_add(bytes)? > self.quota {
            return None;
        }
        let a = take(&mut *self.inner)?;
        *self.used += bytes;
        Some(a)
    }
}

impl TableAlloc for Quota<'_> {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        self.charge(bytes, |a| a.alloc(bytes))
    }
    fn free(&mut self, addr: u64, bytes: u64) {
        self.inner.free(addr, bytes);
        *self.used = self.used.saturating_sub(bytes);
    }
    fn memory(&mut self) -> Option<&mut dyn crate::shadow_vm::TableMemory> {
        self.inner.memory()
    }
    fn alloc_inst(&mut self, bytes: u64) -> Option<u64> {
        self.charge(bytes, |a| a.alloc_inst(bytes))
    }
    fn free_inst(&mut self, addr: u64, bytes: u64) {
        self.inner.free_inst(addr, bytes);
        *self.used = self.used.saturating_sub(bytes);
    }
}

/// What a sync of one shadow address space is for.
#[derive(Clone, Copy)]
enum SyncOp {
    /// A guest TLB flush, in the given mode.
    Flush(SyncMode),
    /// The GPU is about to use the space.
    Use(UsePoint),
    /// Everything re-read now (an unmap takes pages back).
    Full,
}

fn bar_index(bar: vregs::Bar) -> usize {
    match bar {
        vregs::Bar::Bar1 => 0,
        vregs::Bar::Bar3 => 1,
    }
}

/// The full-virtualization state of one vGPU.
pub struct Mediator<S: Storage> {
    vregs: VRegs,
    /// Guest BAR1 / BAR3 address spaces (None: direct mode, BAR offset = guest VRAM address).
    bars: [Option<VmDesc>; 2],
    /// Guest instance blocks of the BAR1 / BAR3 VMs (re-read at every guest TLB flush).
    bar_inst: [Option<u64>; 2],
    bar_tlb: [BarTlb; 2],
    /// A BAR has pages mapped directly since its last zap.
    bar_mapped: [bool; 2],
    /// Guest BAR1 VA of channel 0's USERD page, when doorbells are enabled.
    poll: Option<u64>,
    spaces: S::Vec<SpaceSlot<Pdes<S>>>,
    chans: S::Vec<ChanSlot>,
    /// The guest channels of its last committed runlist.
    runlist: ChannelSet,
    /// While an IOVA range is being unmapped: refused to shadow syncs.
    unmapping: Option<(u64, u64)>,
    /// The guest asked for its MSI to be re-sent if its line is still asserted.
    msi_rearm: bool,
    /// The interrupt line level last signalled (MSI is sent on rising edges).
    irq_level: bool,
    /// Host-pool bytes this vGPU may hold (shadow tables and instance blocks), in proportion
    /// to its share of the GPU, and what it holds.
    pool_quota: u64,
    pool_used: u64,
    /// Bus mastering is on in the vGPU's PCI command register.
    bus_master: bool,
    /// The guest wrote its VRAM or bound a channel (whose engines may write it) since this
    /// was last taken: its partition may hold its data.
    touched: bool,
    /// Whether the vGPU's channels are on the host GPU (bus master, PMC and PFIFO enabled),
    /// as last applied.
    host_work: bool,
    /// Counters.
    pub stats: MediatorStats,
}

impl<S: Storage> Mediator<S> {
    /// The power-on state of a vGPU owning `slice`, identifying as `boot0`, that may hold
    /// `pool_quota` bytes of the host pool; `None` when its tables cannot be allocated.
    pub fn new(slice: Slice, boot0: u32, pool_quota: u64) -> Option<Self> {
        let chans = S::with_len((slice.channels as usize).min(MAX_CHANNELS))?;
        let spaces = S::with_len(MAX_SPACES)?;
        Some(Self {
            vregs: VRegs::new(slice, boot0),
            bars: [None; 2],
            bar_inst: [None; 2],
            bar_tlb: [BarTlb::default(); 2],
            bar_mapped: [false; 2],
            poll: None,
            spaces,
            chans,
            runlist: ChannelSet::default(),
            unmapping: None,
            msi_rearm: false,
            irq_level: false,
            pool_quota,
            pool_used: 0,
            bus_master: false,
            touched: false,
            host_work: false,
            stats: MediatorStats::default(),
        })
    }

    /// The vGPU's resources.
    pub fn slice(&self) -> Slice {
        *self.vregs.slice()
    }

    /// The emulated registers (counters of denied accesses live there).
    pub fn vregs(&self) -> &VRegs {
        &self.vregs
    }

    /// Whether the guest may have left data in its VRAM since the last call (then its
    /// partition must be scrubbed before another user can read it).
    pub fn take_touched(&mut self) -> bool {
        core::mem::take(&mut self.touched)
    }

    /// Host-pool bytes the vGPU holds.
    pub fn pool_used(&self) -> u64 {
        self.pool_used
    }

    /// The host pool as this vGPU may use it (within its quota).
    fn quota<'b>(&'b mut self, env: &'b mut Env<'_>) -> Quota<'b> {
        Quota { inner: &mut *env.tables, used: &mut self.pool_used, quota: self.pool_quota }
    }

    /// Whether the guest's interrupt line is asserted.
    pub fn irq_line(&self) -> bool {
        self.vregs.irq_line()
    }

    /// Whether the guest must be signalled now: a rising edge of its interrupt line, or the
    /// line still asserted after the guest asked for its MSI to be re-sent. Call after every
    /// access or delivery; it consumes the edge.
    pub fn take_irq_edge(&mut self) -> bool {
        let level = self.vregs.irq_line();
        let rearm = core::mem::take(&mut self.msi_rearm);
        let rising = level && (!self.irq_level || rearm);
        self.irq_level = level;
        rising
    }

    /// Guest channels bound on the host.
    pub fn bound_channels(&self) -> ChannelSet {
        let mut s = ChannelSet::default();
        for (c, ch) in self.chans.iter().enumerate() {
            if ch.0.is_some() {
                s.insert(c as u32);
            }
        }
        s
    }

    fn space_count(&self) -> usize {
        self.spaces.iter().filter(|s| s.0.is_some()).count()
    }

    /// Applies `op` to space `i`, keeps the counters, and flushes the host TLB for the shadow
    /// if it was synced.
    fn sync_space(&mut self, env: &mut Env<'_>, i: usize, op: SyncOp) {
        // Only a sync that reads the guest's tables needs what was written through mappings.
        let reads = match (op, self.spaces.get(i)) {
            (_, Some(SpaceSlot(None)) | None) => false,
            (SyncOp::Flush(SyncMode::Lazy), _) => false,
            (SyncOp::Use(_), Some(SpaceSlot(Some(s)))) => s.vm.needs_sync(),
            _ => true,
        };
        if reads {
            self.take_mapped(env);
        }
        let slice = self.slice();
        let Some(SpaceSlot(Some(space))) = self.spaces.get_mut(i) else { return };
        let before = space.vm.stats;
        let mut sys = Excluding { inner: &mut *env.sys, exclude: self.unmapping };
        let mut tables = Quota { inner: &mut *env.tables, used: &mut self.pool_used, quota: self.pool_quota };
        let synced = {
            // Guest tables are read through the copy engine's staged chunks when the host has
            // a fetcher; the view (and what it staged) lives for this sync only.
            let mut fetched;
            let vram: &mut dyn Vram = match env.host.guest_fetch() {
                Some(f) => {
                    fetched = FetchedVram::new(&mut *env.vram, f, &slice);
                    &mut fetched
                }
                None => &mut *env.vram,
            };
            let mut senv = SyncEnv { vram, slice: &slice, sys: &mut sys, alloc: &mut tables };
            match op {
                SyncOp::Flush(mode) => sync_policy::on_flush(mode, &mut space.vm, &mut senv),
                SyncOp::Use(why) => sync_policy::before_use(why, &mut space.vm, &mut senv),
                SyncOp::Full => {
                    space.vm.sync(senv.vram, senv.slice, senv.sys, senv.alloc);
                    true
                }
            }
        };
        let after = space.vm.stats;
        let (pd, pd_sys) = (space.vm.pd_host(), space.vm.pd_in_sysmem());
        self.stats.syncs += after.syncs - before.syncs;
        self.stats.pte_writes += after.shadow_writes - before.shadow_writes;
        self.stats.guest_reads += after.guest_reads - before.guest_reads;
        self.stats.refused += after.refused - before.refused;
        if synced {
            if let Err(e) = env.host.tlb_flush(pd, pd_sys) {
                env.host.report(e);
            }
        }
        // Tables the sync replaced go back to the pool only after that flush.
        space.vm.reclaim(&mut tables);
    }

    /// Brings every space used by `chans` up to date before the GPU may walk it.
    fn before_use(&mut self, env: &mut Env<'_>, why: UsePoint, chans: ChannelSet) {
        let mut spaces = 0u32;
        for c in chans.iter() {
            if let Some(ChanSlot(Some(ch))) = self.chans.get(c as usize) {
                spaces |= 1 << ch.space;
            }
        }
        for i in 0..MAX_SPACES {
            if spaces & (1 << i) != 0 {
                self.sync_space(env, i, SyncOp::Use(why));
            }
        }
    }

    /// Whether a channel of space `i` may run on the host now with work submitted that the
    /// GPU has not finished: runnable, on the guest's runlist, not killed, and its host GP_GET
    /// short of its last doorbell or PFIFO still holding its work (`HostChannels::chan_busy`;
    /// on a real GF100 GP_GET moves when an entry is fetched, not when it has executed). A
    /// channel that is not is brought up to date by the next use point that can start it
    /// (doorbell, kick, made runnable, runlist commit, rebind).
    fn space_in_flight(&self, env: &mut Env<'_>, i: usize) -> bool {
        let slice = self.slice();
        self.chans.iter().enumerate().any(|(c, slot)| {
            let Some(ch) = slot.0.as_ref() else { return false };
            let Some(host_chid) = slice.channel_to_host(c as u32) else { return false };
            if ch.space != i || !ch.runnable || ch.killed || !self.runlist.contains(c as u32) {
                return false;
            }
            env.vram.read32(ch.userd_host + u64::from(userd::GP_GET)) != ch.put || env.host.chan_busy(host_chid)
        })
    }

    // ---- BAR0

    /// A guest BAR0 read of 32 bits; `None` if it was denied (the guest reads 0).
    pub fn bar0_read(&mut self, env: &mut Env<'_>, off: u32) -> Option<u32> {
        match self.vregs.read(off, env.clock) {
            Read::Value(v) => Some(v),
            Read::Vram(a) => {
                self.stats.forwarded += 1;
                Some(self.userd_view(env, a.host).unwrap_or_else(|| env.vram.read32(a.host)))
            }
            Read::Denied(_) => None,
        }
    }

    /// A guest BAR0 write of 32 bits; `false` if it was denied.
    pub fn bar0_write(&mut self, env: &mut Env<'_>, off: u32, v: u32) -> bool {
        let ok = self.bar0_write_inner(env, off, v);
        self.apply_enables(env);
        ok
    }

    /// The guest turned bus mastering on or off (its PCI command register).
    pub fn set_bus_master(&mut self, env: &mut Env<'_>, on: bool) {
        self.bus_master = on;
        self.apply_enables(env);
    }

    /// Whether the vGPU's channels may run on the host GPU now.
    fn may_run(&self) -> bool {
        self.bus_master && self.vregs.pfifo_running()
    }

    /// Follows the guest's disables: with bus mastering, its PMC PFIFO enable or PFIFO off,
    /// its channels leave the host runlist and are stopped (so no engine does DMA for it);
    /// when all are back on, they return as the guest left them.
    fn apply_enables(&mut self, env: &mut Env<'_>) {
        let run = self.may_run();
        if run == self.host_work {
            return;
        }
        self.host_work = run;
        self.commit_runlist(env);
        let slice = self.slice();
        for (c, ch) in self.chans.iter().enumerate() {
            let (Some(ch), Some(host)) = (ch.0, slice.channel_to_host(c as u32)) else { continue };
            if !run {
                stop_channel(env, host);
            } else if ch.runnable && !ch.killed {
                env.host.set_runnable(host, true);
            }
        }
    }

    fn bar0_write_inner(&mut self, env: &mut Env<'_>, off: u32, v: u32) -> bool {
        match self.vregs.write(off, v, env.clock) {
            Write::Done => true,
            Write::Vram(a, v) => {
                self.guest_vram_write(env, a.guest, a.host, v);
                true
            }
            Write::Effect(e) => {
                self.apply(env, e);
                true
            }
            Write::Denied(_) => false,
        }
    }

    /// A guest write into its VRAM (through PRAMIN, BAR1 or BAR3): performed, then reported
    /// to the shadows so page-table and instance-block changes are mirrored.
    fn guest_vram_write(&mut self, env: &mut Env<'_>, guest: u64, host: u64, v: u32) {
        self.stats.forwarded += 1;
        self.touched = true;
        env.vram.write32(host, v);
        for s in self.spaces.iter_mut().filter_map(|s| s.0.as_mut()) {
            s.vm.note_guest_write(guest);
        }
        // A write into a bound instance block is mirrored into its shadow.
        let slice = self.slice();
        let mut moved_userd = 0u128;
        let may_run = self.may_run();
        for (chid, ch) in self.chans.iter().enumerate() {
            // Runnable on the host only if the guest's enables allow it (a torn pointer
            // update restarts only a channel that was running).
            let Some(ch) = ch.0.map(|c| Chan { runnable: c.runnable && may_run && !c.killed, ..c }) else { continue };
            if !(ch.guest_inst..ch.guest_inst + inst::SIZE).contains(&guest) {
                continue;
            }
            let Some(SpaceSlot(Some(space))) = self.spaces.get(ch.space) else { continue };
            let shadow = space.vm.inst_shadow();
            let Some(host_chid) = slice.channel_to_host(chid as u32) else { continue };
            mirror_inst_write(env, &slice, &ch, host_chid, (guest - ch.guest_inst) as u32 & !3, &shadow);
            moved_userd |= 1u128 << chid;
        }
        // A write into a bound instance block may have moved the guest's USERD or resized its
        // ring: follow both (the shadow keeps naming the host's USERD page).
        for (chid, slot) in self.chans.iter_mut().enumerate() {
            if moved_userd & (1u128 << chid) != 0 {
                if let Some(ch) = slot.0.as_mut() {
                    let mem = GuestVram::new(&*env.vram, slice);
                    let word = |o| channel::shadow_inst_word(&mem, &slice, ch.guest_inst, o, &InstShadow { pd_host: 0, pd_sys: false, limit: 0 }).ok();
                    if let (Some(lo), Some(hi)) = (word(ramfc::USERD_LO), word(ramfc::USERD_HI)) {
                        ch.userd_guest = u64::from(lo & ramfc::USERD_ADDR_MASK) | u64::from(hi) << 32;
                    }
                    ch.gp_entries = gp_entries(env.vram.read32(ch.host_inst + u64::from(ramfc::GP_BASE_HI)));
                }
            }
        }
    }

    fn apply(&mut self, env: &mut Env<'_>, e: Effect) {
        match e {
            Effect::TlbFlush { pd, .. } => {
                let mode = env.host.sync_mode();
                for i in 0..MAX_SPACES {
                    let hit = match self.spaces.get(i) {
                        Some(SpaceSlot(Some(s))) => pd.is_none_or(|p| s.pd == p),
                        _ => false,
                    };
                    if hit {
                        self.sync_space(env, i, SyncOp::Flush(mode));
                        // Lazy: a channel of the space already past its doorbell may go on
                        // with no further trap (a semaphore the CPU releases by a plain
                        // write): the flush is the last event the mediator sees before it.
                        if mode == SyncMode::Lazy && self.space_in_flight(env, i) {
                            self.sync_space(env, i, SyncOp::Use(UsePoint::InFlight));
                        }
                    }
                }
                self.refresh_bar_vms(env, pd);
            }
            Effect::BarInst { bar, inst } => {
                let b = bar_index(bar);
                self.bars[b] = None;
                self.bar_tlb[b].clear();
                if let Some(i) = inst {
                    self.bars[b] = VmDesc::read(&GuestVram::new(&*env.vram, self.slice()), i);
                }
                self.bar_inst[b] = inst;
                self.zap_bar(env, bar);
            }
            Effect::BarFlush => {}
            Effect::MsiRearm => self.msi_rearm = true,
            Effect::UserdPollBase { bar1_va, enabled } => self.poll = enabled.then_some(bar1_va),
            Effect::RunlistCommit { guest, count } => {
                let slice = self.slice();
                let rl = channel::read_guest_runlist(&GuestVram::new(&*env.vram, slice), &slice, guest, count);
                if rl.refused > 0 {
                    self.vregs.raise_sched_error(pfifo::SCHED_ERROR_BAD_RUNLIST);
                }
                self.runlist = rl.channels;
                self.before_use(env, UsePoint::RunlistCommit, rl.channels);
                self.commit_runlist(env);
            }
            Effect::Kick { chid, host_chid } => {
                self.before_use(env, UsePoint::Kick, ChannelSet(1 << chid));
                if let Err(e) = env.host.kick(host_chid) {
                    env.host.report(e);
                }
            }
            Effect::ChannelBind { chid, host_chid, inst } => self.bind(env, chid, host_chid, inst),
            Effect::ChannelUnbind { chid, host_chid } => self.unbind(env, chid, host_chid),
            Effect::ChannelState { chid, host_chid, runnable } => {
                // A channel made runnable may be scheduled before any doorbell: its space must
                // not hold translations older than the guest's last flush.
                if runnable {
                    self.before_use(env, UsePoint::Runnable, ChannelSet(1 << chid));
                }
                let may_run = self.may_run();
                if let Some(ChanSlot(Some(ch))) = self.chans.get_mut(chid as usize) {
                    ch.runnable = runnable;
                    env.host.set_runnable(host_chid, runnable && may_run && !ch.killed);
                }
            }
            Effect::PfifoReset => self.release_channels(env),
        }
    }

    /// Re-reads the guest BAR VMs after a flush of `pd` (None: all; the guest may have
    /// rewritten the PDB). A BAR whose translations the flush may change loses its direct
    /// mappings first, so the old pages are unreachable once the flush is done.
    fn refresh_bar_vms(&mut self, env: &mut Env<'_>, pd: Option<u64>) {
        self.bar_tlb[0].clear();
        self.bar_tlb[1].clear();
        let slice = self.slice();
        for (i, bar) in [(0, vregs::Bar::Bar1), (1, vregs::Bar::Bar3)] {
            let old = self.bars[i];
            let new = self.bar_inst[i].and_then(|inst| VmDesc::read(&GuestVram::new(&*env.vram, slice), inst));
            // A BAR in direct mode translates nothing a flush could change.
            let hit = self.bar_inst[i].is_some()
                && match (pd, old) {
                    (None, _) | (_, None) => true,
                    (Some(p), Some(d)) => d.pd == p || new.is_none_or(|n| n.pd != d.pd || n.limit != d.limit),
                };
            if self.bar_inst[i].is_some() {
                self.bars[i] = new;
            }
            if hit {
                self.zap_bar(env, bar);
            }
        }
    }

    /// Marks what the guest may have written through directly mapped pages for re-reading
    /// (their mappings go, so later writes fault and are reported again).
    fn take_mapped(&mut self, env: &mut Env<'_>) {
        let spaces = &mut self.spaces;
        let mut pages = 0u64;
        // Only a page holding a page directory or table of a shadowed space is taken (its
        // entries re-read, its mapping removed). A page holding none (a pushbuffer, data)
        // stays mapped: should it become a table later, the sync that finds its PDE reads it
        // whole, and from then on it is taken at every sync like any other table page.
        env.host.take_mapped(&mut |page| {
            let mut table = false;
            for s in spaces.iter_mut().filter_map(|s| s.0.as_mut()) {
                table |= s.vm.note_guest_range(page, bar_remap::PAGE);
            }
            pages += u64::from(table);
            table
        });
        self.stats.bar_pages_taken += pages;
    }

    /// Tells the host that `bar` translates anew (its direct mappings go), when remapping is on.
    fn zap_bar(&mut self, env: &mut Env<'_>, bar: vregs::Bar) {
        let b = bar_index(bar);
        self.bar_mapped[b] = false;
        if env.host.bar_remap() {
            self.stats.bar_zaps += 1;
            env.host.bar_changed(bar, self.bars[b]);
        }
    }

    /// Finds or creates the shadow of the address space with guest PD `desc.pd`.
    fn space_for(&mut self, env: &mut Env<'_>, desc: VmDesc) -> Option<usize> {
        if let Some(i) = self.spaces.iter().position(|s| s.0.as_ref().is_some_and(|s| s.pd == desc.pd)) {
            return Some(i);
        }
        let free = self.spaces.iter().position(|s| s.0.is_none())?;
        let count = (desc.pde_count() as usize).min(MAX_PDES);
        let pdes = S::with_len(count)?;
        // Guest writes to VRAM are tracked: trapped ones one by one, those through a page
        // mapped straight through a BAR page by page (`take_mapped`).
        let mut tables = Quota { inner: &mut *env.tables, used: &mut self.pool_used, quota: self.pool_quota };
        let vm = ShadowVm::new(desc, pdes, true, &mut *env.vram, &mut tables)?;
        if let Some(slot) = self.spaces.get_mut(free) {
            *slot = SpaceSlot(Some(Space { pd: desc.pd, vm }));
        }
        Some(free)
    }

    fn bind(&mut self, env: &mut Env<'_>, chid: u32, host_chid: u32, guest_inst: u64) {
        self.unbind(env, chid, host_chid);
        let slice = self.slice();
        // Out of shadow address spaces or host VRAM (its pool quota): the channel stays
        // unbound and the guest is told, as the hardware reports a channel it cannot load
        // (CHAN_TABLE_ERROR INVALID_TARGET, PFIFO INTR bit 0).
        let Some(desc) = VmDesc::read(&GuestVram::new(&*env.vram, slice), guest_inst) else {
            self.vregs.raise_chan_table_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        };
        let Some(space) = self.space_for(env, desc) else {
            self.vregs.raise_chan_table_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        };
        let Some(host_inst) = self.quota(env).alloc_inst(inst::SIZE) else {
            self.vregs.raise_chan_table_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        };
        self.sync_space(env, space, SyncOp::Use(UsePoint::ChannelBind));
        let Some(SpaceSlot(Some(s))) = self.spaces.get(space) else {
            self.quota(env).free_inst(host_inst, inst::SIZE);
            return;
        };
        let shadow = s.vm.inst_shadow();
        if channel::shadow_instance(&mut *env.vram, &slice, guest_inst, host_inst, &shadow).is_err() {
            self.quota(env).free_inst(host_inst, inst::SIZE);
            self.vregs.raise_chan_table_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        }
        // The shadow names the host's USERD page of this host channel, which starts with no
        // work: GP_PUT = GP_GET = the ring position the RAMFC restores.
        let userd_guest = shadow_userd(&*env.vram, host_inst);
        let userd_host = host_userd(host_chid);
        let get = env.vram.read32(host_inst + u64::from(ramfc::GP_GET));
        for off in [userd::PUT, userd::PUT_HI, userd::REF_THRESHOLD, userd::GP_PUT].into_iter().chain(USERD_PFIFO_WORDS) {
            let v = if off == userd::GP_GET || off == userd::GP_PUT { get } else { 0 };
            env.vram.write32(userd_host + u64::from(off), v);
        }
        env.vram.write32(host_inst + u64::from(ramfc::USERD_LO), (userd_host as u32 & ramfc::USERD_ADDR_MASK) | crate::gf100::target::VRAM);
        env.vram.write32(host_inst + u64::from(ramfc::USERD_HI), (userd_host >> 32) as u32);
        let gp_entries = gp_entries(env.vram.read32(host_inst + u64::from(ramfc::GP_BASE_HI)));
        env.host.bind(host_chid, Some(host_inst));
        self.touched = true;
        if let Some(slot) = self.chans.get_mut(chid as usize) {
            *slot = ChanSlot(Some(Chan { guest_inst, host_inst, space, runnable: false, userd_host, userd_guest, gp_entries, put: get, last_get: get, killed: false }));
        }
    }

    /// Takes a channel off the host in the order that keeps the GPU off its memory: off the
    /// runlist, not runnable, preempted (the engines leave it; bounded, a timeout reported),
    /// unbound; only then is its shadow instance block freed.
    fn unbind(&mut self, env: &mut Env<'_>, chid: u32, host_chid: u32) {
        let Some(slot) = self.chans.get_mut(chid as usize) else { return };
        let Some(ch) = slot.0.take() else { return };
        if self.runlist.contains(chid) {
            self.runlist.remove(chid);
            self.commit_runlist(env);
        }
        stop_channel(env, host_chid);
        env.host.bind(host_chid, None);
        env.host.drain_events();
        self.quota(env).free_inst(ch.host_inst, inst::SIZE);
    }

    /// Frees every shadow address space. No channel may use them any more; the host TLB is
    /// flushed for each page directory before its memory can go to anyone else.
    fn drop_spaces(&mut self, env: &mut Env<'_>) {
        for slot in self.spaces.iter_mut() {
            if let Some(s) = slot.0.take() {
                if let Err(e) = env.host.tlb_flush(s.vm.pd_host(), s.vm.pd_in_sysmem()) {
                    env.host.report(e);
                }
                let _ = s.vm.release(&mut Quota { inner: &mut *env.tables, used: &mut self.pool_used, quota: self.pool_quota });
            }
        }
    }

    /// Drops the vGPU from the host runlist (once), stops and unbinds every channel, frees
    /// every shadow.
    fn release_channels(&mut self, env: &mut Env<'_>) {
        self.runlist = ChannelSet::default();
        self.commit_runlist(env);
        let slice = self.slice();
        for c in 0..slice.channels {
            if let Some(host) = slice.channel_to_host(c) {
                self.unbind(env, c, host);
            }
        }
        self.drop_spaces(env);
    }

    /// Publishes this vGPU's runnable bound channels and rewrites the host runlist (none
    /// while the guest has its PFIFO or bus mastering off).
    fn commit_runlist(&mut self, env: &mut Env<'_>) {
        let mut bound = ChannelSet::default();
        for c in self.runlist.iter().filter(|_| self.host_work) {
            if matches!(self.chans.get(c as usize), Some(ChanSlot(Some(_)))) {
                bound.insert(c);
            }
        }
        if let Err(e) = env.host.commit_runlist(RunlistPart { slice: self.slice(), channels: bound }) {
            env.host.report(e);
        }
    }

    /// Device reset (VFIO reset, or the device being closed): every channel leaves the host,
    /// every shadow is freed, and the registers are back at power-on (counters kept).
    pub fn reset(&mut self, env: &mut Env<'_>) {
        self.bars = [None; 2];
        self.zap_bar(env, vregs::Bar::Bar1);
        self.zap_bar(env, vregs::Bar::Bar3);
        self.release_channels(env);
        self.vregs.reset();
        self.bar_inst = [None; 2];
        self.bar_tlb = [BarTlb::default(); 2];
        self.poll = None;
        self.msi_rearm = false;
        self.irq_level = false;
        self.bus_master = false;
        self.host_work = false;
    }

    /// The device is closed: reset, then every pinned page is released.
    pub fn close(&mut self, env: &mut Env<'_>) {
        self.reset(env);
        env.sys.unpin_range(0, u64::MAX);
    }

    /// The user unmaps `[iova, iova + len)`: every shadow stops pointing into it (re-synced
    /// now, with the range refused, and the host TLB flushed) before its pages are unpinned,
    /// so the GPU can never reach memory that is no longer the guest's.
    pub fn dma_unmap(&mut self, env: &mut Env<'_>, iova: u64, len: u64) {
        // Nothing of the range reached a shadow: nothing to take back.
        if !env.sys.any_pinned(iova, len) {
            return;
        }
        // No channel bound: the GPU cannot walk any shadow, so drop them all (rebuilt at the
        // next bind) instead of re-walking every guest table (a driver unmaps its buffers
        // after closing its channels).
        if self.chans.iter().all(|c| c.0.is_none()) {
            self.drop_spaces(env);
            env.sys.unpin_range(iova, len);
            return;
        }
        self.unmapping = Some((iova, len));
        for i in 0..MAX_SPACES {
            if let Some(SpaceSlot(Some(s))) = self.spaces.get_mut(i) {
                s.vm.invalidate_all();
            }
            self.sync_space(env, i, SyncOp::Full);
        }
        self.unmapping = None;
        // An engine may still be in the middle of work that translated before the flush:
        // every channel is taken off the engines before the pages go.
        self.quiesce(env);
        env.sys.unpin_range(iova, len);
    }

    /// Takes every bound channel off the engines (`HostChannels::evict`) and lets each run
    /// again as the guest left it. One whose engine had to be reset (its work would not let
    /// go) is killed as the watchdog kills: unrunnable until rebound, SCHED_ERROR
    /// CTXSW_TIMEOUT.
    fn quiesce(&mut self, env: &mut Env<'_>) {
        let slice = self.slice();
        let may_run = self.may_run();
        let mut killed = false;
        for (c, slot) in self.chans.iter_mut().enumerate() {
            let (Some(ch), Some(host)) = (slot.0.as_mut(), slice.channel_to_host(c as u32)) else { continue };
            match env.host.evict(host) {
                Ok(Evicted::Preempted) => env.host.set_runnable(host, ch.runnable && may_run && !ch.killed),
                Ok(Evicted::EngineReset(_)) => {
                    ch.killed = true;
                    killed = true;
                }
                Err(e) => env.host.report(e),
            }
        }
        if killed {
            self.stats.killed += 1;
            self.vregs.raise_sched_error(pfifo::SCHED_ERROR_CTXSW_TIMEOUT);
        }
    }

    /// Whether a non-stall interrupt just taken by the host may be this vGPU's: GP_GET of one
    /// of its channels on the runlist moved since the last look (the GPU's non-stall slot
    /// names no channel; a channel that issued NON_STALL_INTERRUPT has fetched the entry that
    /// held it). Updates what was seen.
    pub fn claim_nonstall(&mut self, env: &mut Env<'_>) -> bool {
        let mut claimed = false;
        let runlist = self.runlist;
        for (chid, slot) in self.chans.iter_mut().enumerate() {
            let Some(ch) = slot.0.as_mut() else { continue };
            if !runlist.contains(chid as u32) {
                continue;
            }
            let get = env.vram.read32(ch.userd_host + u64::from(userd::GP_GET));
            if get != ch.last_get {
                ch.last_get = get;
                claimed = true;
                copy_userd_view(env, ch);
            }
        }
        claimed
    }

    /// Brings the guest's USERD pages up to date with their host channels' progress (at a
    /// completion the host's dispatcher saw, for guests that poll USERD without reading it
    /// through a trapped access).
    pub fn refresh_userd(&mut self, env: &mut Env<'_>) {
        for ch in self.chans.iter().filter_map(|c| c.0.as_ref()) {
            copy_userd_view(env, ch);
        }
    }

    /// The guest's view of a word of a bound channel's USERD page at host VRAM `host`: the
    /// words PFIFO writes back come from the host channel's page (and are stored in the
    /// guest's page); `None` for any other address.
    fn userd_view(&self, env: &mut Env<'_>, host: u64) -> Option<u32> {
        let ch = self.chans.iter().filter_map(|c| c.0.as_ref()).find(|c| (c.userd_guest..c.userd_guest + userd::SIZE).contains(&host))?;
        let off = (host - ch.userd_guest) as u32;
        if !USERD_PFIFO_WORDS.contains(&off) {
            return None;
        }
        let v = env.vram.read32(ch.userd_host + u64::from(off));
        env.vram.write32(host, v);
        Some(v)
    }

    /// Host interrupt events. A non-stall interrupt is raised if `nonstall` says it is this
    /// vGPU's (see [`Mediator::claim_nonstall`]) and it has channels on the runlist; an MMU
    /// fault, a PGRAPH error and a PBDMA error go only to the vGPU whose channel caused them
    /// (named by its shadow instance block or its host channel id), with the guest's own
    /// names.
    pub fn deliver(&mut self, ev: &HostEvents, nonstall: bool) {
        if nonstall && !self.runlist.is_empty() {
            self.stats.nonstall += 1;
            self.vregs.raise_nonstall();
        }
        for (unit, f) in ev.faults.iter().enumerate() {
            let Some(f) = *f else { continue };
            if let Some(ch) = self.chan_of(f.host_chid, f.inst) {
                self.stats.faults += 1;
                self.vregs.raise_vm_fault(unit as u32, ch.guest_inst, f.va, f.info);
            }
        }
        let slice = self.slice();
        for (pbdma, e) in ev.pbdma.iter().enumerate() {
            let Some(e) = *e else { continue };
            if let Some(chid) = slice.channel_from_host(e.host_chid) {
                self.vregs.raise_pbdma(pbdma as u32, e.intr, e.method, e.data, chid);
            }
        }
        if let Some(g) = ev.pgraph {
            if let Some(ch) = self.chan_of(g.host_chid, g.inst) {
                self.vregs.raise_pgraph(g.intr, g.data_error, g.trapped, ch.guest_inst);
            }
        }
    }

    /// The watchdog found host channel `host_chid` (this vGPU's) holding an engine too long:
    /// the channel is made unrunnable. The caller then evicts it (`host_gpu::evict`: a kick,
    /// and an engine reset if the kick cannot take it off) without holding this vGPU, since
    /// that may take the kick's full timeout, and reports the outcome with
    /// [`Mediator::watchdog_outcome`]. Whether the channel was this vGPU's and bound.
    pub fn watchdog_stop(&mut self, env: &mut Env<'_>, host_chid: u32) -> bool {
        let Some(chid) = self.slice().channel_from_host(host_chid) else { return false };
        if !matches!(self.chans.get(chid as usize), Some(ChanSlot(Some(_)))) {
            return false;
        }
        env.host.set_runnable(host_chid, false);
        true
    }

    /// How the eviction [`Mediator::watchdog_stop`] began ended. `killed`: an engine had to
    /// be reset (the work never let go of it): the channel stays off the engines until the
    /// guest binds it again, and the guest hears what a GF100 reports when a channel cannot
    /// be switched out, SCHED_ERROR CTXSW_TIMEOUT. Otherwise the work left the engine within
    /// the kick's bound (Fermi preempts compute only between kernels, so a long kernel ends
    /// there): the channel is switched out, not killed, and runs again as the guest left it.
    pub fn watchdog_outcome(&mut self, env: &mut Env<'_>, host_chid: u32, killed: bool) {
        let Some(chid) = self.slice().channel_from_host(host_chid) else { return };
        let may_run = self.may_run();
        let Some(ChanSlot(Some(ch))) = self.chans.get_mut(chid as usize) else { return };
        if killed {
            ch.killed = true;
            self.stats.killed += 1;
            env.host.set_runnable(host_chid, false);
            self.vregs.raise_sched_error(pfifo::SCHED_ERROR_CTXSW_TIMEOUT);
        } else {
            env.host.set_runnable(host_chid, ch.runnable && may_run && !ch.killed);
        }
    }

    /// This vGPU's channel that was host channel `host_chid` bound to shadow instance block
    /// `host_inst` when the host read the event (both must match: the block may have been
    /// freed and reused since).
    fn chan_of(&self, host_chid: Option<u32>, host_inst: u64) -> Option<Chan> {
        let chid = self.slice().channel_from_host(host_chid?)?;
        self.chans.get(chid as usize).and_then(|c| c.0).filter(|c| c.host_inst == host_inst)
    }

    // ---- BAR1 / BAR3

    /// Guest VRAM address behind guest BAR `bar` offset `off`, with its host address. An
    /// unaligned word is refused: host VRAM takes aligned words, and one straddling two
    /// entries would change the second unseen by write tracking.
    fn bar_target(&mut self, env: &mut Env<'_>, bar: vregs::Bar, off: u64, write: bool) -> Option<(u64, u64)> {
        if !off.is_multiple_of(4) {
            return None;
        }
        let slice = self.slice();
        let b = bar_index(bar);
        let guest = match self.bars[b] {
            None => off,
            Some(desc) => {
                let page = off & !(BAR_PAGE - 1);
                let (guest_page, read_only) = match self.bar_tlb[b].lookup(page) {
                    Some(hit) => hit,
                    None => {
                        let t = pagetable::translate(&GuestVram::new(&*env.vram, slice), &desc, page).ok()?;
                        if t.aperture != Aperture::Vram {
                            return None;
                        }
                        self.bar_tlb[b].insert(page, t.addr, t.read_only);
                        (t.addr, t.read_only)
                    }
                };
                if write && read_only {
                    return None;
                }
                guest_page + (off - page)
            }
        };
        let host = slice.vram_to_host(guest, 4)?;
        Some((guest, host))
    }

    /// A fault on guest BAR `bar` at offset `off` of a vGPU whose BAR is `bar_size` bytes and
    /// whose host BAR1 slots are `slots`: the slot to point and map, or a refusal (the kernel's
    /// fault path uses `bar_remap::resolve` on its own copy of the BAR root instead; this is
    /// the same decision with the bookkeeping, for in-process hosts). A host that maps the
    /// page must report it through [`HostChannels::take_mapped`]. Only BAR3 is
    /// offered (BAR1 holds the doorbells, which must be seen). A page that maps makes every
    /// shadow address space re-read its tables at each sync from now on (the guest may write
    /// them through the mapping), and marks the partition as written.
    pub fn bar_map(&mut self, env: &mut Env<'_>, bar: vregs::Bar, off: u64, bar_size: u64, slots: &Slots) -> MapDecision {
        let d = self.bar_map_inner(env, bar, off, bar_size, slots);
        match d {
            MapDecision::Map { .. } => {
                self.stats.bar_maps += 1;
                self.bar_mapped[bar_index(bar)] = true;
                self.touched = true;
            }
            MapDecision::Refuse(_) => self.stats.bar_refused += 1,
        }
        d
    }

    fn bar_map_inner(&mut self, env: &mut Env<'_>, bar: vregs::Bar, off: u64, bar_size: u64, slots: &Slots) -> MapDecision {
        let view = bar_remap::BarView { on: env.host.bar_remap(), bar, desc: self.bars[bar_index(bar)], size: bar_size };
        bar_remap::resolve(&*env.vram, &self.slice(), &view, off, slots)
    }

    /// A guest BAR1/BAR3 read of 4 bytes; `None` if the window does not map it.
    pub fn bar_read(&mut self, env: &mut Env<'_>, bar: vregs::Bar, off: u64) -> Option<u32> {
        let (_, host) = self.bar_target(env, bar, off, false)?;
        self.stats.forwarded += 1;
        Some(self.userd_view(env, host).unwrap_or_else(|| env.vram.read32(host)))
    }

    /// A guest BAR1/BAR3 write of 4 bytes; `false` if the window does not map it.
    pub fn bar_write(&mut self, env: &mut Env<'_>, bar: vregs::Bar, off: u64, v: u32) -> bool {
        let Some((guest, host)) = self.bar_target(env, bar, off, true) else { return false };
        self.guest_vram_write(env, guest, host, v);
        if bar == vregs::Bar::Bar1 {
            if let Some(chid) = self.poll.and_then(|base| doorbell_channel(base, off, self.slice().channels)) {
                self.doorbell(env, chid, v);
            }
        }
        true
    }

    /// The guest rang channel `chid`'s doorbell with GP_PUT `put`: the submission point.
    fn doorbell(&mut self, env: &mut Env<'_>, chid: u32, put: u32) {
        let Some(host_chid) = self.slice().channel_to_host(chid) else { return };
        let Some(ChanSlot(Some(ch))) = self.chans.get(chid as usize) else { return };
        // A GP_PUT outside the ring would make PFIFO run entries the guest never put there
        // (the GPU masks it into the ring): refused, the channel stays where it was.
        if put >= ch.gp_entries {
            self.stats.doorbells_refused += 1;
            return;
        }
        self.stats.doorbells += 1;
        if let Some(ChanSlot(Some(ch))) = self.chans.get_mut(chid as usize) {
            ch.put = put;
        }
        self.before_use(env, UsePoint::Doorbell, ChannelSet(1 << chid));
        // The host channel's USERD is the host's page: `put` reaches it only through the
        // host's submission path (queued or forwarded at once).
        env.host.submit(host_chid, put);
    }

    /// Shadow address spaces in use (for tests and sysfs).
    pub fn spaces_in_use(&self) -> usize {
        self.space_count()
    }
}

/// Copies the words PFIFO writes back from `ch`'s host USERD page into the guest's page.
fn copy_userd_view(env: &mut Env<'_>, ch: &Chan) {
    for off in USERD_PFIFO_WORDS {
        let v = env.vram.read32(ch.userd_host + u64::from(off));
        env.vram.write32(ch.userd_guest + u64::from(off), v);
    }
}

/// Host VRAM address of the USERD page a shadow instance block at `host_inst` names.
fn shadow_userd(vram: &dyn Vram, host_inst: u64) -> u64 {
    let lo = vram.read32(host_inst + u64::from(ramfc::USERD_LO));
    let hi = vram.read32(host_inst + u64::from(ramfc::USERD_HI));
    u64::from(lo & ramfc::USERD_ADDR_MASK) | u64::from(hi) << 32
}

/// Stops host channel `host_chid`: not runnable, then preempted so no engine still works
/// for it, an engine stuck on it reset (`HostChannels::evict`; bounded, a timeout is
/// reported and the caller goes on, the channel being unrunnable).
fn stop_channel(env: &mut Env<'_>, host_chid: u32) {
    if let Err(e) = env.host.evict(host_chid) {
        env.host.report(e);
    }
}

/// The instance-block words that hold one pointer (low, high): a guest write to either is
/// mirrored as a whole, never leaving a shadow pointer made of an old and a new half.
fn pointer_words(off: u32) -> Option<(u32, u32)> {
    const PAIRS: [(u32, u32); 6] = [
        (ramfc::USERD_LO, ramfc::USERD_HI),
        (ramfc::GP_BASE, ramfc::GP_BASE_HI),
        (inst::GR_CTX_LO, inst::GR_CTX_HI),
        (inst::PCOPY0_CTX_LO, inst::PCOPY0_CTX_HI),
        (inst::PCOPY1_CTX_LO, inst::PCOPY1_CTX_HI),
        (inst::PDB_LO, inst::PDB_HI),
    ];
    PAIRS.into_iter().find(|&(lo, hi)| off == lo || off == hi)
}

/// Mirrors a guest write at offset `off` of bound channel `ch`'s instance block into its
/// shadow. A pointer is recomputed (and validated) whole; if both of its shadow words change
/// while the channel may run, the channel is stopped around the update, so the GPU loads
/// either the old or the new pointer. A word that does not validate leaves the shadow as it
/// was (the last valid value).
fn mirror_inst_write(env: &mut Env<'_>, slice: &Slice, ch: &Chan, host_chid: u32, off: u32, shadow: &InstShadow) {
    let (lo, hi) = pointer_words(off).unwrap_or((off, off));
    // The shadow's USERD is the host's page whatever the guest writes (the caller follows the
    // guest's page for its view).
    if lo == ramfc::USERD_LO {
        return;
    }
    let value = |env: &Env<'_>, o: u32| {
        let mem = GuestVram::new(&*env.vram, *slice);
        channel::shadow_inst_word(&mem, slice, ch.guest_inst, o, shadow).ok()
    };
    let (Some(new_lo), Some(new_hi)) = (value(env, lo), value(env, hi)) else { return };
    let (at_lo, at_hi) = (ch.host_inst + u64::from(lo), ch.host_inst + u64::from(hi));
    let torn = lo != hi && env.vram.read32(at_lo) != new_lo && env.vram.read32(at_hi) != new_hi;
    if torn && ch.runnable {
        stop_channel(env, host_chid);
    }
    env.vram.write32(at_lo, new_lo);
    if hi != lo {
        env.vram.write32(at_hi, new_hi);
    }
    if torn && ch.runnable {
        env.host.set_runnable(host_chid, true);
    }
}

/// Guest channel whose GP_PUT doorbell sits at BAR1 offset `off`, with the poll area at
/// `base` and `channels` channels.
fn doorbell_channel(base: u64, off: u64, channels: u32) -> Option<u32> {
    let rel = off.checked_sub(base)?;
    let chid = rel / pfifo::USERD_POLL_STRIDE;
    (rel % pfifo::USERD_POLL_STRIDE == u64::from(userd::GP_PUT) && chid < u64::from(channels)).then_some(chid as u32)
}
