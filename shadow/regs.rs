// SPDX-License-Identifier: GPL-2.0
//! The BAR0 classification table: what the mediator does with each guest register access.
//!
//! Every register or range a guest driver may touch is listed once, sorted by offset:
//! - [`Class::Emulate`]: served from the vGPU's own state (`vregs`), never reaching the GPU.
//!   This covers everything global (PMC, PTIMER, interrupts, VRAM geometry, MMU control) and
//!   everything that names a physical address or channel (BAR instance blocks, PRAMIN base,
//!   channel table, runlist, kick, TLB flush), whose effects the mediator applies after
//!   translation.
//! - [`Class::Translate`]: forwarded to the GPU after the address is translated into the
//!   partition (the PRAMIN window).
//! - [`Class::Deny`]: reads 0, writes are dropped and counted. Anything not in the table is
//!   denied: GPUvm forwarded every unlisted register (digest §13.6), so one guest's PMC reset
//!   or interrupt acknowledge hit all vGPUs. A few known registers are listed as `Deny` to
//!   record why.

use crate::gf100::{mmu, pbus, pci, pfb, pfifo, pgraph, pmc, pstraps, ptimer};

/// What the guest reaches at a BAR0 offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Served from per-vGPU state.
    Emulate(Reg),
    /// Forwarded after translation.
    Translate(Window),
    /// Reads 0, writes dropped and counted.
    Deny,
}

/// BAR0 windows onto memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// 0x700000..0x800000 onto the 1 MiB of guest VRAM selected by `pbus::PraminBase`.
    Pramin,
}

/// Emulated registers (families; `vregs` finds the element from the offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Boot0,
    Endian,
    /// PMC_ENABLE, PMC's interrupt registers and PTIMER: the interrupt tree the model has
    /// too (`intr_tree`), which decodes the offset itself.
    IntrTree,
    SpoonEnable,
    Straps,
    /// FBP_COUNT / PART_COUNT.
    VramParts,
    /// FBP_DISABLED_MASK.
    VramPartsDisabled,
    /// PART_MIB_BROADCAST and `part_mib(i)`.
    VramPartMib,
    MmuCtrl,
    SysmemFlushPage,
    TlbPdb,
    TlbInvalidate,
    PraminBase,
    Bar1Inst,
    Bar3Inst,
    BarFlush,
    PfifoIntr,
    PfifoIntrEn,
    PfifoCtrl,
    SubfifoEnable,
    /// `eng_subfifo_mask(e)`, e < 6.
    EngSubfifoMask,
    UserdPollBase,
    RunlistBase,
    RunlistSubmit,
    RunlistStatus,
    ChanTableError,
    SchedError,
    VmFaultUnits,
    PbdmaIntrUnits,
    EngineIntrUnits,
    /// `engine_intr(n)`, n < `pfifo::ENGINE_INTR_COUNT`.
    EngineIntr,
    EngineIntrEn,
    Kick,
    /// The VM fault records `pfifo::VmFault*` of every unit (read-only).
    VmFaultRecord,
    IntrRunlistStatus,
    /// `pfifo::ChanInst` / `pfifo::ChanState` of the 128 channels.
    ChanTable,
    /// A PBDMA register (`pbdma_base(i) + PBDMA_*`).
    Pbdma,
    PgraphIntr,
    PgraphDataError,
    PgraphIntrEn,
    PgraphTrapped,
    PgraphIntrInst,
    MsiRearm,
}

/// One table row: `[start, end)` (byte offsets) and its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub start: u32,
    pub end: u32,
    pub class: Class,
}

const fn one(offset: u32, reg: Reg) -> Entry {
    Entry { start: offset, end: offset + 4, class: Class::Emulate(reg) }
}

const fn range(start: u32, end: u32, reg: Reg) -> Entry {
    Entry { start, end, class: Class::Emulate(reg) }
}

const fn deny(start: u32, end: u32) -> Entry {
    Entry { start, end, class: Class::Deny }
}

const fn pbdma(i: u32, reg: u32) -> Entry {
    one(pfifo::pbdma_base(i) + reg, Reg::Pbdma)
}

/// The table, sorted by offset, rows disjoint (checked by the host tests).
pub static TABLE: &[Entry] = &[
    one(pmc::Boot0::OFFSET, Reg::Boot0),
    one(pmc::ENDIAN, Reg::Endian),
    one(pmc::INTR_HOST, Reg::IntrTree),
    one(pmc::INTR_NRHOST, Reg::IntrTree),
    one(pmc::INTR_EN_HOST, Reg::IntrTree),
    one(pmc::INTR_EN_NRHOST, Reg::IntrTree),
    one(pmc::INTR_LINE_STATUS, Reg::IntrTree),
    one(pmc::ENABLE, Reg::IntrTree),
    one(pmc::SPOON_ENABLE, Reg::SpoonEnable),
    one(pmc::INTR_MASK_HOST, Reg::IntrTree),
    one(pmc::INTR_MASK_NRHOST, Reg::IntrTree),
    one(pbus::PraminBase::OFFSET, Reg::PraminBase),
    one(pbus::BAR1_INST, Reg::Bar1Inst),
    one(pbus::BAR3_INST, Reg::Bar3Inst),
    // The peephole is a third BAR-like window with its own instance block; no guest driver
    // uses it and it would need its own shadow.
    deny(pbus::PEEPHOLE_INST, pbus::PEEPHOLE_INST + 4),
    one(pfifo::INTR, Reg::PfifoIntr),
    one(pfifo::INTR_EN, Reg::PfifoIntrEn),
    one(pfifo::CTRL, Reg::PfifoCtrl),
    one(pfifo::SUBFIFO_ENABLE, Reg::SubfifoEnable),
    range(
        pfifo::eng_subfifo_mask(0),
        pfifo::eng_subfifo_mask(pfifo::ENG_SUBFIFO_MASK_COUNT),
        Reg::EngSubfifoMask,
    ),
    one(pfifo::UserdPollBase::OFFSET, Reg::UserdPollBase),
    one(pfifo::RunlistBase::OFFSET, Reg::RunlistBase),
    one(pfifo::RunlistSubmit::OFFSET, Reg::RunlistSubmit),
    one(pfifo::RunlistStatus::OFFSET, Reg::RunlistStatus),
    one(pfifo::CHAN_TABLE_ERROR, Reg::ChanTableError),
    one(pfifo::SCHED_ERROR, Reg::SchedError),
    one(pfifo::VM_FAULT_UNITS, Reg::VmFaultUnits),
    one(pfifo::PBDMA_INTR_UNITS, Reg::PbdmaIntrUnits),
    one(pfifo::ENGINE_INTR_UNITS, Reg::EngineIntrUnits),
    range(pfifo::engine_intr(0), pfifo::engine_intr(pfifo::ENGINE_INTR_COUNT), Reg::EngineIntr),
    one(pfifo::ENGINE_INTR_EN, Reg::EngineIntrEn),
    // Engine fault / freeze and engine state are recovery and status registers of the whole
    // GPU: they would show or stop other vGPUs' channels.
    deny(pfifo::ENG_FAULT, pfifo::KICK),
    one(pfifo::KICK, Reg::Kick),
    deny(pfifo::eng_state(0), pfifo::eng_state(pfifo::ENG_SUBFIFO_MASK_COUNT)),
    range(pfifo::VmFaultInst::offset(0), pfifo::VmFaultInst::offset(pfifo::VM_FAULT_UNITS_MAX), Reg::VmFaultRecord),
    one(pfifo::INTR_RUNLIST_STATUS, Reg::IntrRunlistStatus),
    range(pfifo::ChanInst::offset(0), pfifo::ChanInst::offset(pfifo::CHANNELS), Reg::ChanTable),
    one(ptimer::INTR, Reg::IntrTree),
    one(ptimer::INTR_EN, Reg::IntrTree),
    one(ptimer::CLOCK_DIV, Reg::IntrTree),
    one(ptimer::CLOCK_MUL, Reg::IntrTree),
    one(ptimer::CLOCK_SOURCE, Reg::IntrTree),
    one(ptimer::TIME_LOW, Reg::IntrTree),
    one(ptimer::TIME_HIGH, Reg::IntrTree),
    one(ptimer::ALARM, Reg::IntrTree),
    one(pfb::FBP_COUNT, Reg::VramParts),
    one(pfb::FBP_DISABLED_MASK, Reg::VramPartsDisabled),
    pbdma(0, pfifo::PBDMA_METHOD),
    pbdma(0, pfifo::PBDMA_DATA),
    pbdma(0, pfifo::PBDMA_INTR),
    pbdma(0, pfifo::PBDMA_INTR_EN),
    pbdma(0, pfifo::PBDMA_CHID),
    pbdma(0, pfifo::PBDMA_INTR_HALT_MASK),
    pbdma(1, pfifo::PBDMA_METHOD),
    pbdma(1, pfifo::PBDMA_DATA),
    pbdma(1, pfifo::PBDMA_INTR),
    pbdma(1, pfifo::PBDMA_INTR_EN),
    pbdma(1, pfifo::PBDMA_CHID),
    pbdma(1, pfifo::PBDMA_INTR_HALT_MASK),
    pbdma(2, pfifo::PBDMA_METHOD),
    pbdma(2, pfifo::PBDMA_DATA),
    pbdma(2, pfifo::PBDMA_INTR),
    pbdma(2, pfifo::PBDMA_INTR_EN),
    pbdma(2, pfifo::PBDMA_CHID),
    pbdma(2, pfifo::PBDMA_INTR_HALT_MASK),
    // The flush register acts on the whole GPU; the mediator flushes when it applies effects.
    one(pbus::FLUSH, Reg::BarFlush),
    one(pci::BAR0_MSI_REARM, Reg::MsiRearm),
    one(mmu::SYSMEM_FLUSH_PAGE, Reg::SysmemFlushPage),
    one(mmu::CTRL, Reg::MmuCtrl),
    one(mmu::InvalidatePdb::OFFSET, Reg::TlbPdb),
    one(mmu::Invalidate::OFFSET, Reg::TlbInvalidate),
    one(pstraps::STRAPS, Reg::Straps),
    one(pfb::PART_MIB_BROADCAST, Reg::VramPartMib),
    one(pfb::part_mib(0), Reg::VramPartMib),
    one(pfb::part_mib(1), Reg::VramPartMib),
    one(pfb::part_mib(2), Reg::VramPartMib),
    one(pfb::part_mib(3), Reg::VramPartMib),
    one(pfb::part_mib(4), Reg::VramPartMib),
    one(pfb::part_mib(5), Reg::VramPartMib),
    one(pfb::PART_COUNT, Reg::VramParts),
    one(pgraph::INTR, Reg::PgraphIntr),
    one(pgraph::DATA_ERROR_CODE, Reg::PgraphDataError),
    one(pgraph::INTR_EN, Reg::PgraphIntrEn),
    range(pgraph::TRAPPED_ADDR, pgraph::TRAPPED_DATA + 4, Reg::PgraphTrapped),
    one(pgraph::INTR_CHANNEL_INST, Reg::PgraphIntrInst),
    Entry {
        start: pbus::PRAMIN_WINDOW,
        end: pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE,
        class: Class::Translate(Window::Pramin),
    },
];

/// The row an offset falls in, if any (binary search; offsets must be 4-byte aligned and
/// inside BAR0).
pub fn lookup(offset: u32) -> Option<&'static Entry> {
    if !offset.is_multiple_of(4) || u64::from(offset) >= pci::BAR0_SIZE {
        return None;
    }
    let i = TABLE.partition_point(|e| e.start <= offset).checked_sub(1)?;
    TABLE.get(i).filter(|e| offset < e.end)
}

/// What the guest reaches at `offset`: unknown and unaligned offsets are denied.
pub fn classify(offset: u32) -> Class {
    lookup(offset).map_or(Class::Deny, |e| e.class)
}
