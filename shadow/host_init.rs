// SPDX-License-Identifier: GPL-2.0
//! Host bring-up of a GF100 before any vGPU exists: the host's own BAR3 (kernel) and BAR1
//! (user) windows, PFIFO, and the host USERD area, laid out in the VRAM the host reserves.
//!
//! Pure logic over [`Mmio`] (BAR0 register access): the kernel runs it over the real BAR0,
//! the host tests over the in-process GF100 model. It follows nouveau's GF100 order
//! (shared/docs/gf100-interface.md §15, §8.9), reduced to what the mediator needs.

use crate::bar_remap::Slots;
use crate::partition::UNITS;
use crate::gf100::{inst, mmu, pbus, pfifo, pmc, target, vm};
use core::cell::Cell;

/// 32-bit BAR0 register access.
pub trait Mmio {
    /// Reads the register at byte offset `off`.
    fn rd(&self, off: u32) -> u32;
    /// Writes the register at byte offset `off`.
    fn wr(&self, off: u32, val: u32);
}

/// Where the host keeps its structures inside its reserved VRAM (all offsets are host VRAM
/// addresses; the reserved region starts at 0).
pub mod layout {
    /// BAR3 instance block.
    pub const BAR3_INST: u64 = 0x0000;
    /// BAR1 instance block.
    pub const BAR1_INST: u64 = 0x1000;
    /// BAR3 page directory (one PDE in use: the window is below one PDE's 128 MiB span).
    pub const BAR3_PD: u64 = 0x2000;
    /// BAR1 page directory.
    pub const BAR1_PD: u64 = 0x3000;
    /// BAR3 big-page table (1024 entries).
    pub const BAR3_LPT: u64 = 0x4000;
    /// BAR1 big-page table.
    pub const BAR1_LPT: u64 = 0x6000;
    /// USERD pages of all 128 channels, big-page aligned so BAR1 can map them.
    pub const USERD: u64 = 0x2_0000;
    /// Bytes of USERD (128 channels x 4 KiB).
    pub const USERD_SIZE: u64 = 128 * 0x1000;
    /// BAR1 virtual address of the USERD area.
    pub const USERD_BAR1_VA: u64 = 0;
    /// First byte free for later host structures (shadow tables).
    pub const FREE: u64 = USERD + USERD_SIZE;
}

/// Why bring-up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The reserved VRAM is smaller than the BAR3 identity map plus the layout.
    ReservedTooSmall,
    /// A BAR flush did not complete.
    FlushTimeout,
    /// The MMU did not signal TLB-flush completion.
    TlbTimeout,
    /// PFIFO reported no PBDMA.
    NoPbdma,
}

/// Polls bounded by this many reads: a dead or hostile device cannot hang the caller.
const POLL_LIMIT: u32 = 100_000;

const BIG_PAGE: u64 = 1 << vm::BIG_PAGE_SHIFT_128K;

/// BAR0 offset of host VRAM `addr` in the PRAMIN window. `base` remembers where the window
/// points (None: unknown); it is moved (one register write) only when `addr` lies outside.
pub fn pramin_window(m: &impl Mmio, base: &Cell<Option<u32>>, addr: u64) -> u32 {
    let (want, off) = pbus::PraminBase::window(addr);
    if base.get() != Some(want.raw()) {
        m.wr(pbus::PraminBase::OFFSET, want.raw());
        base.set(Some(want.raw()));
    }
    off
}

/// Host VRAM access through the PRAMIN window, moving the 1 MiB window only when an access
/// falls outside it (every BAR0 write costs a trap on a virtualized or modelled GPU).
pub struct Pramin<'a, M: Mmio> {
    m: &'a M,
    base: Cell<Option<u32>>,
}

impl<'a, M: Mmio> Pramin<'a, M> {
    /// A window user over `m`; the first access positions the window.
    pub fn new(m: &'a M) -> Self {
        Self { m, base: Cell::new(None) }
    }

    fn window_offset(&self, addr: u64) -> u32 {
        pramin_window(self.m, &self.base, addr)
    }

    /// Writes `val` at host VRAM address `addr`.
    pub fn wr32(&self, addr: u64, val: u32) {
        let off = self.window_offset(addr);
        self.m.wr(off, val);
    }

    /// Reads host VRAM address `addr`.
    pub fn rd32(&self, addr: u64) -> u32 {
        let off = self.window_offset(addr);
        self.m.rd(off)
    }

    /// Writes a 64-bit entry (low word first).
    pub fn wr64(&self, addr: u64, val: u64) {
        self.wr32(addr, val as u32);
        self.wr32(addr + 4, (val >> 32) as u32);
    }

    /// Zeroes `len` bytes from `addr`.
    pub fn zero(&self, addr: u64, len: u64) {
        for off in (0..len).step_by(4) {
            self.wr32(addr + off, 0);
        }
    }
}

/// Builds a BAR address space: instance block -> PD (one PDE) -> big-page table mapping
/// `[0, size)` of the BAR to VRAM `phys_base + x`. Entries beyond the instance block's limit
/// are never read by the MMU, so only the used ones are written.
fn build_bar_vm<M: Mmio>(p: &Pramin<'_, M>, inst_addr: u64, pd: u64, lpt: u64, size: u64, phys_base: u64) {
    p.zero(inst_addr, inst::SIZE);
    p.wr32(inst_addr + inst::PDB_LO as u64, (pd as u32 & inst::PDB_ADDR_MASK) | target::VRAM);
    p.wr32(inst_addr + inst::PDB_HI as u64, (pd >> 32) as u32);
    let limit = size - 1;
    p.wr32(inst_addr + inst::LIMIT_LO as u64, limit as u32);
    p.wr32(inst_addr + inst::LIMIT_HI as u64, (limit >> 32) as u32);
    p.wr64(pd, vm::pde(lpt, vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
    for i in 0..size.div_ceil(BIG_PAGE) {
        p.wr64(lpt + i * vm::PTE_SIZE, vm::pte(phys_base + i * BIG_PAGE, vm::PTE_APER_VRAM, false, vm::KIND_PITCH));
    }
}

/// Makes the CPU's BAR1/BAR3 writes visible to the GPU (they may be posted): trigger, then
/// wait (bounded) until the flush is no longer busy. Needed before the GPU reads what the CPU
/// wrote through a BAR (page tables, a pushbuffer and its GPFIFO entry).
pub fn flush_bar_writes(m: &impl Mmio) -> Result<(), InitError> {
    m.wr(pbus::FLUSH, pbus::FLUSH_TRIGGER);
    (0..POLL_LIMIT).find(|_| m.rd(pbus::FLUSH) & pbus::FLUSH_BUSY == 0).map(|_| ()).ok_or(InitError::FlushTimeout)
}

/// Invalidates the TLB entries of the page directory at host VRAM `pd`, or of every PDB
/// (`None`), with the hardware's protocol: wait for a free flush slot, trigger, wait for
/// completion (all bounded).
pub fn tlb_flush(m: &impl Mmio, pd: Option<u64>) -> Result<(), InitError> {
    let pd = pd.map(|pd| (pd, false));
    tlb_flush_with(m, pd, |off, done| (0..POLL_LIMIT).any(|_| done(m.rd(off))))
}

/// [`tlb_flush`] of a page directory in VRAM or (`(pd, true)`) in system memory, with the
/// caller's way of waiting: `poll(off, done)` reads register `off`
/// until `done(value)` and says whether it got there (bring-up counts reads; the mediator
/// waits by the clock).
pub fn tlb_flush_with(m: &impl Mmio, pd: Option<(u64, bool)>, poll: impl Fn(u32, &dyn Fn(u32) -> bool) -> bool) -> Result<(), InitError> {
    if !poll(mmu::CTRL, &|v| v & mmu::CTRL_FLUSH_SLOTS_MASK != 0) {
        return Err(InitError::TlbTimeout);
    }
    if let Some((pd, sysram)) = pd {
        m.wr(mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(pd).with_sysram(sysram).raw());
    }
    let flush = mmu::Invalidate::default().with_page_all(true).with_all_pdb(pd.is_none()).with_trigger(true);
    m.wr(mmu::Invalidate::OFFSET, flush.raw());
    if !poll(mmu::CTRL, &|v| v & mmu::CTRL_FLUSH_DONE != 0) {
        return Err(InitError::TlbTimeout);
    }
    Ok(())
}

/// What bring-up set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostGpu {
    /// BAR3 maps host VRAM `[0, bar3_mapped)` one to one.
    pub bar3_mapped: u64,
    /// Number of PBDMAs PFIFO reported.
    pub pbdmas: u32,
}

/// Brings the GPU up for the host. `reserved` is the VRAM the host owns (from 0); `bar3_size`
/// the BAR3 aperture. BAR3 maps the whole reserved region (or the aperture, if smaller).
pub fn bring_up(m: &impl Mmio, reserved: u64, bar3_size: u64) -> Result<HostGpu, InitError> {
    let bar3_mapped = reserved.min(bar3_size) / BIG_PAGE * BIG_PAGE;
    if bar3_mapped < layout::FREE || bar3_mapped / BIG_PAGE > vm::LPT_ENTRIES {
        return Err(InitError::ReservedTooSmall);
    }
    // PMC: every unit on (0 -> 1 resets them), interrupts from the hardware lines.
    m.wr(pmc::ENABLE, pmc::ENABLE_ALL);
    m.wr(pmc::INTR_EN_HOST, 0);
    // 128 KiB big pages.
    m.wr(mmu::CTRL, m.rd(mmu::CTRL) & !mmu::CTRL_BIG_PAGE_64K);

    let p = Pramin::new(m);
    // BAR3: identity map of the host's reserved VRAM, so the host reaches its structures.
    build_bar_vm(&p, layout::BAR3_INST, layout::BAR3_PD, layout::BAR3_LPT, bar3_mapped, 0);
    // BAR1: the USERD area at USERD_BAR1_VA (doorbells are BAR1 writes there). A channel's
    // USERD page is cleared when the channel is set up, not here: 512 KiB through PRAMIN
    // would cost 128k register writes.
    build_bar_vm(&p, layout::BAR1_INST, layout::BAR1_PD, layout::BAR1_LPT, layout::USERD_SIZE, layout::USERD);
    flush_bar_writes(m)?;
    m.wr(pbus::BAR3_INST, pbus::BarInst::vm(layout::BAR3_INST).raw());
    m.wr(pbus::BAR1_INST, pbus::BarInst::vm(layout::BAR1_INST).raw());
    tlb_flush(m, None)?;

    // PFIFO (§8.9): reset, enable the PBDMAs that exist, enable, USERD poll area, interrupts.
    m.wr(pmc::ENABLE, pmc::ENABLE_ALL & !pmc::ENABLE_PFIFO);
    m.wr(pmc::ENABLE, pmc::ENABLE_ALL);
    m.wr(pfifo::SUBFIFO_ENABLE, u32::MAX);
    let pbdmas = m.rd(pfifo::SUBFIFO_ENABLE).count_ones();
    if pbdmas == 0 {
        return Err(InitError::NoPbdma);
    }
    let pbdma_mask = if pbdmas >= 32 { u32::MAX } else { (1 << pbdmas) - 1 };
    m.wr(pmc::SPOON_ENABLE, pbdma_mask);
    m.wr(pfifo::SUBFIFO_ENABLE, pbdma_mask);
    // PBDMA errors (an illegal method, a refused physical copy) interrupt the host, which
    // hands each to the vGPU owning the channel (`host_gpu::service_interrupt`). Cleared,
    // then all enabled (§8.2; nouveau leaves bit 8, ENGINE_PULL_TIMEOUT, off).
    for i in 0..pbdmas.min(pfifo::PBDMA_COUNT) {
        m.wr(pfifo::pbdma_base(i) + pfifo::PBDMA_INTR, u32::MAX);
        m.wr(pfifo::pbdma_base(i) + pfifo::PBDMA_INTR_EN, u32::MAX);
    }
    m.wr(pfifo::CTRL, m.rd(pfifo::CTRL) | pfifo::CTRL_ENABLE);
    m.wr(pfifo::UserdPollBase::OFFSET, pfifo::UserdPollBase::default().with_bar1_va(layout::USERD_BAR1_VA).with_enable(true).raw());
    m.wr(pfifo::INTR, u32::MAX);
    m.wr(pfifo::INTR_EN, u32::MAX);
    m.wr(pfifo::ENGINE_INTR_EN, 1);
    m.wr(pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    Ok(HostGpu { bar3_mapped, pbdmas })
}

/// BAR1 virtual address of the first BAR-remapping slot: the first big page after the USERD
/// area (see `bar_remap`).
pub const REMAP_BAR1_VA: u64 = (layout::USERD_BAR1_VA + layout::USERD_SIZE).div_ceil(BIG_PAGE) * BIG_PAGE;
/// Slot bytes per partition unit: a gpuvm-N vGPU gets as many as its BAR3 has (the BAR3 of a
/// gpuvm-1 over the units), so all vGPUs' slots together span one BAR3 size of BAR1.
pub const REMAP_UNIT: u64 = crate::gf100::pci::BAR3_SIZE / UNITS as u64;
/// Bytes of the BAR1 small-page table that holds the slots (one per 4 KiB of the PDE's span).
pub const REMAP_SPT_BYTES: u64 = vm::SPT_ENTRIES_128K * vm::PTE_SIZE;
/// Small pages of the BAR1 PDE.
const SMALL_PAGE: u64 = 0x1000;

/// The slots of a vGPU owning `units` partition units from `first_unit`.
pub fn remap_slots(first_unit: u32, units: u32) -> Slots {
    Slots { bar_off: REMAP_BAR1_VA + u64::from(first_unit) * REMAP_UNIT, len: u64::from(units) * REMAP_UNIT }
}

/// Host VRAM address of the small-page PTE of the slot at host BAR1 offset `slot`, in the
/// table at `spt`.
pub fn remap_pte_addr(spt: u64, slot: u64) -> u64 {
    spt + slot / SMALL_PAGE * vm::PTE_SIZE
}

/// The small-page PTE that shows host VRAM page `host_page` through a slot.
pub fn remap_pte(host_page: u64) -> u64 {
    vm::pte(host_page, vm::PTE_APER_VRAM, false, vm::KIND_PITCH)
}

/// Adds the slots to the host's BAR1 address space (after [`bring_up`]): a small-page table
/// at host VRAM `spt` (reserved VRAM, [`REMAP_SPT_BYTES`], 4 KiB aligned) beside the big-page
/// one in BAR1's PDE, every entry that can be reached not VALID (the USERD area's big pages
/// still show through), and the limit raised over every slot. A slot shows nothing until a
/// fault points it (`bar_remap`).
pub fn map_remap_slots(m: &impl Mmio, spt: u64) -> Result<(), InitError> {
    let end = REMAP_BAR1_VA + UNITS as u64 * REMAP_UNIT;
    let p = Pramin::new(m);
    for i in 0..end / SMALL_PAGE {
        p.wr64(spt + i * vm::PTE_SIZE, 0);
    }
    p.wr64(layout::BAR1_PD, vm::pde(layout::BAR1_LPT, vm::PDE_APER_VRAM, spt, vm::PDE_APER_VRAM));
    let limit = end - 1;
    p.wr32(layout::BAR1_INST + inst::LIMIT_LO as u64, limit as u32);
    p.wr32(layout::BAR1_INST + inst::LIMIT_HI as u64, (limit >> 32) as u32);
    flush_bar_writes(m)?;
    // The BAR1 binding is written again so the new limit is loaded, then its TLB flushed.
    m.wr(pbus::BAR1_INST, pbus::BarInst::vm(layout::BAR1_INST).raw());
    tlb_flush(m, None)?;
    Ok(())
}

/// Quiesces the GPU when the host lets go of it: no interrupts, PFIFO off, no doorbells, the
/// BAR windows back to their reset (direct) mode. Every vGPU must be gone already.
pub fn shut_down(m: &impl Mmio) {
    m.wr(pmc::INTR_EN_HOST, 0);
    m.wr(pfifo::INTR_EN, 0);
    m.wr(pfifo::UserdPollBase::OFFSET, 0);
    m.wr(pfifo::CTRL, m.rd(pfifo::CTRL) & !pfifo::CTRL_ENABLE);
    m.wr(pbus::BAR1_INST, 0);
    m.wr(pbus::BAR3_INST, 0);
}
