// SPDX-License-Identifier: GPL-2.0
//! Full virtualization of one vGPU: the glue between trapped guest accesses and the pure
//! logic of shadow/ (register emulation in `vregs`, shadow page tables in `shadow_vm`, shadow
//! channels and runlists in `channel`) and the host GPU.
//!
//! Every guest BAR0 access goes through `VRegs` (emulate / translate / deny). BAR1 and BAR3
//! accesses are resolved through the guest's own BAR page tables (software walk, as the GPU
//! would) into the vGPU's VRAM partition. Writes that land in a guest page directory, page
//! table or bound instance block are reported to the shadows. The guest's GP_PUT doorbell is
//! forwarded to the host channel: the submission point where a scheduler plugs in.

use crate::{
    channel::{self, ChannelSet, InstShadow, RunlistPart},
    gf100::{inst, pfifo, userd},
    host_init::{self, layout},
    host_mem::{HostTables, HostVram, PinCache, VgpuSysMem},
    memory::{Clock, GuestVram, Vram},
    pagetable::{self, Aperture, VmDesc},
    partition::Slice,
    shadow_vm::{PdeShadow, ShadowVm},
    sync_policy::{self, SyncEnv, SyncMode, UsePoint},
    vfio,
    vgpu::Vgpu,
    vregs::{self, Effect, Read, VRegs, Write},
    GpuShared, HostBar0, HOST_POLL_INTERVAL, KICK_TIMEOUT,
};
use core::sync::atomic::Ordering;
use kernel::{
    io::{poll::read_poll_timeout, Io},
    prelude::*,
};

/// Most PDEs one shadow address space mirrors (129 cover the guest driver's 16 GiB + 16 MiB;
/// a bigger limit is cut, see `ShadowVm::limit`).
const MAX_PDES: usize = 256;
/// Most distinct address spaces (page directories) one vGPU may have bound at once.
const MAX_SPACES: usize = 16;

/// One guest address space and its shadow.
struct Space {
    /// Guest VRAM address of the guest PD.
    pd: u64,
    vm: ShadowVm<KVec<PdeShadow>>,
}

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
}

/// Counters shown in sysfs and used by benchmarks.
#[derive(Default, Clone, Copy)]
pub(crate) struct VirtStats {
    pub(crate) doorbells: u64,
    pub(crate) syncs: u64,
    pub(crate) pte_writes: u64,
    pub(crate) guest_reads: u64,
    pub(crate) refused: u64,
    pub(crate) faults: u64,
    pub(crate) forwarded: u64,
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

/// The full-virtualization state of a vGPU (lives under the vGPU's state lock).
pub(crate) struct VirtState {
    pub(crate) vregs: VRegs,
    /// Guest BAR1 / BAR3 address spaces (None: direct mode, BAR offset = guest VRAM address).
    bars: [Option<VmDesc>; 2],
    /// Guest instance blocks of the BAR1 / BAR3 VMs (re-read at every guest TLB flush).
    bar_inst: [Option<u64>; 2],
    bar_tlb: [BarTlb; 2],
    /// Guest BAR1 VA of channel 0's USERD page, when doorbells are enabled.
    poll: Option<u64>,
    spaces: KVec<Space>,
    chans: KVec<Option<Chan>>,
    /// The guest channels of its last committed runlist.
    runlist: ChannelSet,
    pub(crate) pins: PinCache,
    /// While an IOVA range is being unmapped: refused to shadow syncs.
    unmapping: Option<(u64, u64)>,
    /// The guest asked for its MSI to be re-sent if its line is still asserted.
    pub(crate) msi_rearm: bool,
    pub(crate) stats: VirtStats,
}

/// The vGPU's clock for PTIMER: nanoseconds since the GPU was probed.
struct GpuClock<'a>(&'a GpuShared);

impl Clock for GpuClock<'_> {
    fn now_ns(&self) -> u64 {
        self.0.epoch.elapsed().as_nanos() as u64
    }
}

fn bar_index(bar: vregs::Bar) -> usize {
    match bar {
        vregs::Bar::Bar1 => 0,
        vregs::Bar::Bar3 => 1,
    }
}

impl VirtState {
    pub(crate) fn new(slice: Slice, boot0: u32) -> Result<Self> {
        let mut chans = KVec::with_capacity(slice.channels as usize, GFP_KERNEL)?;
        for _ in 0..slice.channels {
            chans.push(None, GFP_KERNEL)?;
        }
        Ok(Self {
            vregs: VRegs::new(slice, boot0),
            bars: [None; 2],
            bar_inst: [None; 2],
            bar_tlb: [BarTlb::default(); 2],
            poll: None,
            spaces: KVec::new(),
            chans,
            runlist: ChannelSet::default(),
            pins: PinCache::new(),
            unmapping: None,
            msi_rearm: false,
            stats: VirtStats::default(),
        })
    }

    fn slice(&self) -> Slice {
        *self.vregs.slice()
    }
}

/// Everything a guest access needs: the vGPU, its device (for pinning) and the GPU.
pub(crate) struct Ctx<'a> {
    pub(crate) gpu: &'a GpuShared,
    pub(crate) dev: &'a vfio::Device<Vgpu>,
}

impl Ctx<'_> {
    fn mode(&self) -> SyncMode {
        if self.gpu.lazy_shadow.load(Ordering::Relaxed) {
            SyncMode::Lazy
        } else {
            SyncMode::Naive
        }
    }

    fn host_wr(&self, off: u32, v: u32) {
        if let Some(b) = self.gpu.bar0.try_access() {
            let _ = b.try_write32(v, off as usize);
        }
    }

    fn host_rd(&self, off: u32) -> u32 {
        self.gpu.bar0.try_access().and_then(|b| b.try_read32(off as usize).ok()).unwrap_or(u32::MAX)
    }

    /// Flushes the host TLB for one shadow page directory.
    fn host_tlb_flush(&self, pd_host: u64) {
        if let Some(bar0) = self.gpu.bar0.try_access() {
            // A timeout leaves the old translations; the next flush or bind retries.
            if let Err(e) = host_init::tlb_flush(&HostBar0(&bar0), Some(pd_host)) {
                dev_warn!(self.gpu.pdev.as_ref(), "host TLB flush of PD {:#x} timed out ({:?})\n", pd_host, e);
            }
        }
    }

    /// Runs `f` with a sync environment for space `i` of `st`.
    fn sync_space(&self, st: &mut VirtState, i: usize, how: impl FnOnce(&mut ShadowVm<KVec<PdeShadow>>, &mut SyncEnv<'_, HostVram<'_>, VgpuSysMem<'_>, HostTables<'_>>) -> bool) {
        let slice = st.slice();
        let Some(space) = st.spaces.get_mut(i) else { return };
        let mut vram = HostVram::new(self.gpu);
        let mut sys = VgpuSysMem { dev: self.dev, pins: &mut st.pins, exclude: st.unmapping };
        let mut tables = HostTables(self.gpu.pool.lock());
        let before = space.vm.stats;
        let mut env = SyncEnv { vram: &mut vram, slice: &slice, sys: &mut sys, alloc: &mut tables };
        let synced = how(&mut space.vm, &mut env);
        drop(env);
        drop(tables);
        drop(vram);
        let after = space.vm.stats;
        st.stats.syncs += after.syncs - before.syncs;
        st.stats.pte_writes += after.shadow_writes - before.shadow_writes;
        st.stats.guest_reads += after.guest_reads - before.guest_reads;
        st.stats.refused += after.refused - before.refused;
        if synced {
            let pd = space.vm.pd_host();
            self.host_tlb_flush(pd);
        }
    }

    /// Brings every space used by `chans` up to date before the GPU may walk it.
    fn before_use(&self, st: &mut VirtState, why: UsePoint, chans: ChannelSet) {
        let mut spaces = 0u32;
        for c in chans.iter() {
            if let Some(Some(ch)) = st.chans.get(c as usize) {
                spaces |= 1 << ch.space;
            }
        }
        for i in 0..st.spaces.len() {
            if spaces & (1 << i) != 0 {
                self.sync_space(st, i, |vm, env| sync_policy::before_use(why, vm, env));
            }
        }
    }

    // ---- BAR0

    pub(crate) fn bar0_read(&self, st: &mut VirtState, off: u32) -> Option<u32> {
        match st.vregs.read(off, &GpuClock(self.gpu)) {
            Read::Value(v) => Some(v),
            Read::Vram(a) => {
                st.stats.forwarded += 1;
                Some(HostVram::new(self.gpu).read32(a.host))
            }
            Read::Denied(_) => None,
        }
    }

    /// A guest BAR0 write; `false` if it was denied.
    pub(crate) fn bar0_write(&self, st: &mut VirtState, off: u32, v: u32) -> bool {
        match st.vregs.write(off, v, &GpuClock(self.gpu)) {
            Write::Done => true,
            Write::Vram(a, v) => {
                self.guest_vram_write(st, a.guest, a.host, v);
                true
            }
            Write::Effect(e) => {
                self.apply(st, e);
                true
            }
            Write::Denied(_) => false,
        }
    }

    /// A guest write into its VRAM (through PRAMIN, BAR1 or BAR3): performed, then reported
    /// to the shadows so page-table and instance-block changes are mirrored.
    fn guest_vram_write(&self, st: &mut VirtState, guest: u64, host: u64, v: u32) {
        st.stats.forwarded += 1;
        let mut vram = HostVram::new(self.gpu);
        vram.write32(host, v);
        for s in st.spaces.iter_mut() {
            s.vm.note_guest_write(guest);
        }
        // A write into a bound instance block is mirrored into its shadow.
        let slice = st.slice();
        for ch in st.chans.iter().flatten() {
            if (ch.guest_inst..ch.guest_inst + inst::SIZE).contains(&guest) {
                let off = (guest - ch.guest_inst) as u32 & !3;
                let Some(space) = st.spaces.get(ch.space) else { continue };
                let shadow = InstShadow { pd_host: space.vm.pd_host(), limit: space.vm.limit() };
                let word = {
                    let mem = GuestVram::new(&vram, slice);
                    channel::shadow_inst_word(&mem, &slice, ch.guest_inst, off, &shadow)
                };
                if let Ok(w) = word {
                    vram.write32(ch.host_inst + u64::from(off), w);
                }
            }
        }
    }

    fn apply(&self, st: &mut VirtState, e: Effect) {
        match e {
            Effect::TlbFlush { pd, .. } => {
                let mode = self.mode();
                for i in 0..st.spaces.len() {
                    if pd.is_none_or(|p| st.spaces.get(i).is_some_and(|s| s.pd == p)) {
                        self.sync_space(st, i, |vm, env| sync_policy::on_flush(mode, vm, env));
                    }
                }
                self.refresh_bar_vms(st);
            }
            Effect::BarInst { bar, inst } => {
                st.bars[bar_index(bar)] = None;
                st.bar_tlb[bar_index(bar)].clear();
                if let Some(i) = inst {
                    let vram = HostVram::new(self.gpu);
                    st.bars[bar_index(bar)] = VmDesc::read(&GuestVram::new(&vram, st.slice()), i);
                }
                st.bar_inst[bar_index(bar)] = inst;
            }
            Effect::BarFlush => {}
            Effect::MsiRearm => st.msi_rearm = true,
            Effect::UserdPollBase { bar1_va, enabled } => st.poll = enabled.then_some(bar1_va),
            Effect::RunlistCommit { guest, count } => {
                let rl = {
                    let vram = HostVram::new(self.gpu);
                    channel::read_guest_runlist(&GuestVram::new(&vram, st.slice()), &st.slice(), guest, count)
                };
                if rl.refused > 0 {
                    st.vregs.raise_sched_error(pfifo::SCHED_ERROR_BAD_RUNLIST);
                }
                st.runlist = rl.channels;
                self.before_use(st, UsePoint::RunlistCommit, rl.channels);
                self.commit_runlist(st);
            }
            Effect::Kick { host_chid, .. } => self.host_kick(host_chid),
            Effect::ChannelBind { chid, host_chid, inst } => self.bind(st, chid, host_chid, inst),
            Effect::ChannelUnbind { chid, host_chid } => self.unbind(st, chid, host_chid),
            Effect::ChannelState { chid, host_chid, runnable } => {
                if let Some(Some(ch)) = st.chans.get_mut(chid as usize) {
                    ch.runnable = runnable;
                    self.host_wr(pfifo::chan_state(host_chid), if runnable { pfifo::CHAN_STATE_RUNNABLE } else { 0 });
                }
            }
            Effect::PfifoReset => self.release_channels(st),
        }
    }

    /// Re-reads the guest BAR VMs after a flush (the guest may have rewritten the PDB).
    fn refresh_bar_vms(&self, st: &mut VirtState) {
        st.bar_tlb[0].clear();
        st.bar_tlb[1].clear();
        let vram = HostVram::new(self.gpu);
        for i in 0..2 {
            if let Some(inst) = st.bar_inst[i] {
                st.bars[i] = VmDesc::read(&GuestVram::new(&vram, st.slice()), inst);
            }
        }
    }

    fn host_kick(&self, host_chid: u32) {
        self.host_wr(pfifo::KICK, host_chid);
        // TIMEOUT: KICK_TIMEOUT (nouveau's); past it the kick is left pending and reported.
        let done = read_poll_timeout(
            || Ok(self.host_rd(pfifo::KICK)),
            |v| v & pfifo::KICK_PENDING == 0,
            HOST_POLL_INTERVAL,
            KICK_TIMEOUT,
        );
        if let Err(e) = done {
            dev_warn!(self.gpu.pdev.as_ref(), "kick of host channel {} still pending: {:?}\n", host_chid, e);
        }
    }

    /// Finds or creates the shadow of the address space with guest PD `desc.pd`.
    fn space_for(&self, st: &mut VirtState, desc: VmDesc) -> Option<usize> {
        if let Some(i) = st.spaces.iter().position(|s| s.pd == desc.pd) {
            return Some(i);
        }
        if st.spaces.len() >= MAX_SPACES {
            return None;
        }
        let count = (desc.pde_count() as usize).min(MAX_PDES);
        let mut pdes = KVec::with_capacity(count, GFP_KERNEL).ok()?;
        for _ in 0..count {
            pdes.push(PdeShadow::default(), GFP_KERNEL).ok()?;
        }
        let mut vram = HostVram::new(self.gpu);
        let mut tables = HostTables(self.gpu.pool.lock());
        // Every guest write to VRAM is trapped in this mode, so writes are tracked.
        let vm = ShadowVm::new(desc, pdes, true, &mut vram, &mut tables)?;
        drop(tables);
        drop(vram);
        st.spaces.push(Space { pd: desc.pd, vm }, GFP_KERNEL).ok()?;
        Some(st.spaces.len() - 1)
    }

    fn bind(&self, st: &mut VirtState, chid: u32, host_chid: u32, guest_inst: u64) {
        self.unbind(st, chid, host_chid);
        let desc = {
            let vram = HostVram::new(self.gpu);
            VmDesc::read(&GuestVram::new(&vram, st.slice()), guest_inst)
        };
        let Some(desc) = desc else {
            st.vregs.raise_sched_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        };
        // Out of shadow address spaces or host VRAM: the channel stays unbound and the guest
        // is told, as the hardware reports a channel it cannot load.
        let Some(space) = self.space_for(st, desc) else {
            st.vregs.raise_sched_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        };
        let Some(host_inst) = self.gpu.pool.lock().alloc(inst::SIZE) else {
            st.vregs.raise_sched_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        };
        self.sync_space(st, space, |vm, env| sync_policy::before_use(UsePoint::ChannelBind, vm, env));
        let (pd_host, limit) = match st.spaces.get(space) {
            Some(s) => (s.vm.pd_host(), s.vm.limit()),
            None => return,
        };
        let slice = st.slice();
        let ok = {
            let mut vram = HostVram::new(self.gpu);
            channel::shadow_instance(&mut vram, &slice, guest_inst, host_inst, &InstShadow { pd_host, limit }).is_ok()
        };
        if !ok {
            self.gpu.pool.lock().free(host_inst, inst::SIZE);
            st.vregs.raise_sched_error(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
            return;
        }
        self.host_wr(pfifo::chan_inst(host_chid), pfifo::chan_inst_value(host_inst));
        if let Some(slot) = st.chans.get_mut(chid as usize) {
            *slot = Some(Chan { guest_inst, host_inst, space, runnable: false });
        }
    }

    fn unbind(&self, st: &mut VirtState, chid: u32, host_chid: u32) {
        let Some(slot) = st.chans.get_mut(chid as usize) else { return };
        let Some(ch) = slot.take() else { return };
        self.host_wr(pfifo::chan_state(host_chid), 0);
        self.host_wr(pfifo::chan_inst(host_chid), 0);
        self.gpu.pool.lock().free(ch.host_inst, inst::SIZE);
        if st.runlist.contains(chid) {
            st.runlist.remove(chid);
            self.commit_runlist(st);
        }
    }

    /// Unbinds every channel, drops the vGPU from the host runlist, frees every shadow.
    pub(crate) fn release_channels(&self, st: &mut VirtState) {
        let slice = st.slice();
        for c in 0..slice.channels {
            if let Some(host) = slice.channel_to_host(c) {
                self.unbind(st, c, host);
            }
        }
        st.runlist = ChannelSet::default();
        self.commit_runlist(st);
        let mut tables = HostTables(self.gpu.pool.lock());
        while let Some(s) = st.spaces.pop() {
            let _ = s.vm.release(&mut tables);
        }
    }

    /// Publishes this vGPU's runnable bound channels and rewrites the host runlist.
    fn commit_runlist(&self, st: &mut VirtState) {
        let mut bound = ChannelSet::default();
        for c in st.runlist.iter() {
            if matches!(st.chans.get(c as usize), Some(Some(_))) {
                bound.insert(c);
            }
        }
        let slice = st.slice();
        self.gpu.commit_runlist(RunlistPart { slice, channels: bound });
    }

    /// The user unmaps `[iova, iova + len)`: every shadow stops pointing into it (re-synced
    /// now, with the range refused, and the host TLB flushed) before its pages are unpinned,
    /// so the GPU can never reach memory that is no longer the guest's.
    pub(crate) fn dma_unmap(&self, st: &mut VirtState, iova: u64, len: u64) {
        // Nothing of the range reached a shadow: nothing to take back.
        if !st.pins.any_in(iova, len) {
            return;
        }
        // No channel bound: the GPU cannot walk any shadow, so drop them all (rebuilt at the
        // next bind) instead of re-walking every guest table (a driver unmaps its buffers
        // after closing its channels).
        if st.chans.iter().all(|c| c.is_none()) {
            let mut tables = HostTables(self.gpu.pool.lock());
            while let Some(s) = st.spaces.pop() {
                let _ = s.vm.release(&mut tables);
            }
            drop(tables);
            st.pins.unpin_range(iova, len);
            return;
        }
        st.unmapping = Some((iova, len));
        for i in 0..st.spaces.len() {
            if let Some(s) = st.spaces.get_mut(i) {
                s.vm.invalidate_all();
            }
            self.sync_space(st, i, |vm, env| {
                vm.sync(env.vram, env.slice, env.sys, env.alloc);
                true
            });
        }
        st.unmapping = None;
        st.pins.unpin_range(iova, len);
    }

    /// Host interrupt events: a non-stall interrupt goes to every vGPU with channels on the
    /// runlist (the GPU reports all of them in one slot); an MMU fault to the vGPU whose
    /// shadow instance block faulted, named by its guest instance block.
    pub(crate) fn deliver(&self, st: &mut VirtState, nonstall: bool, faults: &[Option<(u64, u64, u32)>]) {
        if nonstall && !st.runlist.is_empty() {
            st.vregs.raise_nonstall();
        }
        for (unit, f) in faults.iter().enumerate() {
            let Some((host_inst, va, info)) = *f else { continue };
            if let Some(ch) = st.chans.iter().flatten().find(|c| c.host_inst == host_inst) {
                st.stats.faults += 1;
                st.vregs.raise_vm_fault(unit as u32, ch.guest_inst, va, info);
            }
        }
    }

    // ---- BAR1 / BAR3

    /// Guest VRAM address behind guest BAR `bar` offset `off`, with its host address.
    fn bar_target(&self, st: &mut VirtState, bar: vregs::Bar, off: u64, write: bool) -> Option<(u64, u64)> {
        let slice = st.slice();
        let b = bar_index(bar);
        let guest = match st.bars[b] {
            None => off,
            Some(desc) => {
                let page = off & !(BAR_PAGE - 1);
                let (guest_page, read_only) = match st.bar_tlb[b].lookup(page) {
                    Some(hit) => hit,
                    None => {
                        let vram = HostVram::new(self.gpu);
                        let t = pagetable::translate(&GuestVram::new(&vram, slice), &desc, page).ok()?;
                        if t.aperture != Aperture::Vram {
                            return None;
                        }
                        st.bar_tlb[b].insert(page, t.addr, t.read_only);
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

    /// A guest BAR1/BAR3 read of 4 bytes; `None` if the window does not map it.
    pub(crate) fn bar_read(&self, st: &mut VirtState, bar: vregs::Bar, off: u64) -> Option<u32> {
        let (_, host) = self.bar_target(st, bar, off, false)?;
        st.stats.forwarded += 1;
        Some(HostVram::new(self.gpu).read32(host))
    }

    /// A guest BAR1/BAR3 write of 4 bytes; `false` if the window does not map it.
    pub(crate) fn bar_write(&self, st: &mut VirtState, bar: vregs::Bar, off: u64, v: u32) -> bool {
        let Some((guest, host)) = self.bar_target(st, bar, off, true) else { return false };
        self.guest_vram_write(st, guest, host, v);
        if bar == vregs::Bar::Bar1 {
            if let Some(chid) = st.poll.and_then(|base| doorbell_channel(base, off, st.slice().channels)) {
                self.doorbell(st, chid, v);
            }
        }
        true
    }

    /// The guest rang channel `chid`'s doorbell with GP_PUT `put`: the submission point.
    fn doorbell(&self, st: &mut VirtState, chid: u32, put: u32) {
        let Some(host_chid) = st.slice().channel_to_host(chid) else { return };
        if !matches!(st.chans.get(chid as usize), Some(Some(_))) {
            return;
        }
        st.stats.doorbells += 1;
        self.before_use(st, UsePoint::Doorbell, ChannelSet(1 << chid));
        // The host channel's RAMFC USERD is the guest's USERD page (moved into the
        // partition), which already holds `put`; this BAR1 write at the host poll area only
        // wakes PFIFO, which re-reads GP_PUT from there.
        let off = layout::USERD_BAR1_VA + u64::from(host_chid) * pfifo::USERD_POLL_STRIDE + u64::from(userd::GP_PUT);
        if let Some(b) = self.gpu.bar1.try_access() {
            let _ = b.try_write32(put, off as usize);
        }
    }
}

/// Guest channel whose GP_PUT doorbell sits at BAR1 offset `off`, with the poll area at
/// `base` and `channels` channels.
fn doorbell_channel(base: u64, off: u64, channels: u32) -> Option<u32> {
    let rel = off.checked_sub(base)?;
    let chid = rel / pfifo::USERD_POLL_STRIDE;
    (rel % pfifo::USERD_POLL_STRIDE == u64::from(userd::GP_PUT) && chid < u64::from(channels)).then_some(chid as u32)
}
