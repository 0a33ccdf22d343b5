// SPDX-License-Identifier: GPL-2.0
//! The emulated BAR0 registers of one vGPU: state and read/write logic, pure.
//!
//! An access is classified by `regs`; emulated registers are served here and a write may
//! produce one [`Effect`] for the glue to apply to the host GPU (bind a shadow channel,
//! commit the host runlist, sync shadow page tables, ...). Every guest VRAM address and guest
//! channel id in an effect has been checked against the vGPU's [`Slice`]; an access that
//! names anything outside is [`Write::Denied`] (and counted), never an effect. The semantics
//! follow the GF100 model (`model/src/gpu.rs`), which the guest driver is tested against, so
//! that the mediator stays invisible to it.
//!
//! Interrupt sources the host sees for the vGPU's channels (non-stall notifications, MMU
//! faults, PBDMA and PGRAPH errors) are injected by the glue through the `raise_*` methods;
//! after any access or injection, [`VRegs::irq_line`] says whether the vGPU's interrupt line
//! (MSI/INTx eventfd) should be asserted. PMC's interrupt tree and PTIMER are served by the
//! implementation the model uses too (`uapi/intr_tree.rs`), fed with the vGPU's PFIFO/PGRAPH
//! state and the kernel's clock.

use crate::gf100::{inst, mmu, pbus, pfb, pfifo, pgraph, pmc, pstraps, target, vm};
use crate::intr_tree::{IntrTree, Written};
use crate::memory::Clock;
use crate::partition::Slice;
use crate::regs::{self, Class, Reg, Window};

/// One of the two BAR windows with a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// User window (BAR1).
    Bar1,
    /// Kernel window (BAR3).
    Bar3,
}

/// A translated access to guest VRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VramAccess {
    /// Guest VRAM address (for write tracking of shadowed structures).
    pub guest: u64,
    /// Host VRAM address to access.
    pub host: u64,
}

/// What the glue does for a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Return this value.
    Value(u32),
    /// Read host VRAM and return it.
    Vram(VramAccess),
    /// Return 0 (counted).
    Denied(Denial),
}

/// What the glue does for a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing outside the emulated state changes.
    Done,
    /// Apply this to the host.
    Effect(Effect),
    /// Write the value to host VRAM (and report the guest address to write tracking).
    Vram(VramAccess, u32),
    /// Dropped (counted).
    Denied(Denial),
}

/// Why an access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// Not in the classification table, or unaligned.
    Unknown,
    /// A guest VRAM address outside the partition.
    OutsidePartition,
    /// A channel id the vGPU does not own.
    ForeignChannel,
    /// A target other than VRAM where only VRAM is supported.
    UnsupportedTarget,
    /// A mode the vGPU does not offer (big-endian, 64 KiB big pages).
    Unsupported,
}

/// Host-side consequences of a guest write, all in checked guest terms plus host channel ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// TLB flush of the guest PD at `pd` (guest VRAM), or of every PD of the vGPU.
    TlbFlush {
        /// Guest PD, `None` = all.
        pd: Option<u64>,
        /// The guest asked for a HUB-only flush (BAR VMs).
        hub_only: bool,
    },
    /// The guest bound a BAR VM to the instance block at `inst` (guest VRAM), or switched
    /// the BAR back to direct VRAM mode (`None`).
    BarInst {
        /// Which BAR.
        bar: Bar,
        /// Guest instance block.
        inst: Option<u64>,
    },
    /// The guest flushed BAR writes.
    BarFlush,
    /// The USERD poll area moved: doorbells are GP_PUT writes at
    /// `bar1_va + chid * USERD_POLL_STRIDE + GP_PUT` of the guest's BAR1.
    UserdPollBase {
        /// Guest BAR1 VA of channel 0's USERD page.
        bar1_va: u64,
        /// Doorbells are recognised.
        enabled: bool,
    },
    /// The guest committed a runlist of `count` entries at guest VRAM `guest` (the range is
    /// inside the partition; the entries are checked by `channel::read_guest_runlist`).
    RunlistCommit {
        /// Guest VRAM address.
        guest: u64,
        /// Entries.
        count: u32,
    },
    /// Preempt a channel.
    Kick {
        /// Guest channel id.
        chid: u32,
        /// Host channel id.
        host_chid: u32,
    },
    /// Shadow the instance block at guest VRAM `inst` and bind it to the host channel.
    ChannelBind {
        /// Guest channel id.
        chid: u32,
        /// Host channel id.
        host_chid: u32,
        /// Guest instance block (4 KiB, inside the partition).
        inst: u64,
    },
    /// Unbind the channel.
    ChannelUnbind {
        /// Guest channel id.
        chid: u32,
        /// Host channel id.
        host_chid: u32,
    },
    /// The channel's STATE word changed.
    ChannelState {
        /// Guest channel id.
        chid: u32,
        /// Host channel id.
        host_chid: u32,
        /// RUNNABLE bit.
        runnable: bool,
    },
    /// The guest reset its PFIFO: unbind all its channels and drop them from the runlist.
    PfifoReset,
    /// Re-send the MSI if the line is still asserted.
    MsiRearm,
}

/// Counters for sysfs (`mmio_denied`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenyStats {
    /// Reads answered with 0.
    pub reads: u64,
    /// Writes dropped.
    pub writes: u64,
}

const PBDMA_COUNT: usize = pfifo::PBDMA_COUNT as usize;
const CHANNELS: usize = pfifo::CHANNELS as usize;

/// A PBDMA's emulated registers.
#[derive(Clone, Copy, Debug, Default)]
struct Pbdma {
    method: u32,
    data: u32,
    intr: u32,
    intr_en: u32,
    chid: u32,
    halt_mask: u32,
}

/// A VM fault record.
#[derive(Clone, Copy, Debug, Default)]
struct FaultRecord {
    inst: pfifo::VmFaultInst,
    addr_lo: pfifo::VmFaultAddrLo,
    addr_hi: pfifo::VmFaultAddrHi,
    info: pfifo::VmFaultInfo,
}

/// PFIFO's emulated state (cleared by a PFIFO reset).
#[derive(Clone, Copy, Debug)]
struct Pfifo {
    /// Latched INTR bits (the level bits are derived from their sources).
    intr: u32,
    intr_en: u32,
    ctrl: u32,
    subfifo_enable: u32,
    eng_subfifo_mask: [u32; pfifo::ENG_SUBFIFO_MASK_COUNT as usize],
    poll_base: pfifo::UserdPollBase,
    runlist_base: pfifo::RunlistBase,
    runlist_submit: pfifo::RunlistSubmit,
    runlist_intr: u32,
    chan_table_error: u32,
    sched_error: u32,
    vm_fault_units: u32,
    vm_faults: [FaultRecord; pfifo::VM_FAULT_UNITS_MAX as usize],
    engine_intr: [u32; pfifo::ENGINE_INTR_COUNT as usize],
    engine_intr_en: u32,
    kick: u32,
    chan_inst: [pfifo::ChanInst; CHANNELS],
    chan_state: [pfifo::ChanState; CHANNELS],
    pbdma: [Pbdma; PBDMA_COUNT],
}

impl Default for Pfifo {
    fn default() -> Self {
        Pfifo {
            intr: 0,
            intr_en: 0,
            ctrl: 0,
            subfifo_enable: 0,
            eng_subfifo_mask: [0; pfifo::ENG_SUBFIFO_MASK_COUNT as usize],
            poll_base: pfifo::UserdPollBase::default(),
            runlist_base: pfifo::RunlistBase::default(),
            runlist_submit: pfifo::RunlistSubmit::default(),
            runlist_intr: 0,
            chan_table_error: 0,
            sched_error: 0,
            vm_fault_units: 0,
            vm_faults: [FaultRecord::default(); pfifo::VM_FAULT_UNITS_MAX as usize],
            engine_intr: [0; pfifo::ENGINE_INTR_COUNT as usize],
            engine_intr_en: 0,
            kick: 0,
            chan_inst: [pfifo::ChanInst::default(); CHANNELS],
            chan_state: [pfifo::ChanState::default(); CHANNELS],
            pbdma: [Pbdma::default(); PBDMA_COUNT],
        }
    }
}

impl Pfifo {
    fn pbdma_units(&self) -> u32 {
        (0..PBDMA_COUNT).fold(0, |m, i| if self.pbdma[i].intr & self.pbdma[i].intr_en != 0 { m | 1 << i } else { m })
    }

    fn engine_units(&self) -> u32 {
        (0..pfifo::ENGINE_INTR_COUNT as usize).fold(0, |m, i| if self.engine_intr[i] != 0 { m | 1 << i } else { m })
    }

    /// INTR as read: latched bits plus the level bits from their sources.
    fn intr_status(&self) -> u32 {
        let mut v = self.intr & !(pfifo::INTR_VM_FAULT | pfifo::INTR_PBDMA | pfifo::INTR_ENGINE);
        if self.vm_fault_units != 0 {
            v |= pfifo::INTR_VM_FAULT;
        }
        if self.pbdma_units() != 0 {
            v |= pfifo::INTR_PBDMA;
        }
        if self.engine_intr_en & pfifo::ENGINE_INTR_NOTIFY != 0 && self.engine_units() != 0 {
            v |= pfifo::INTR_ENGINE;
        }
        v
    }
}

/// PGRAPH's emulated interrupt state.
#[derive(Clone, Copy, Debug, Default)]
struct Pgraph {
    intr: u32,
    intr_en: u32,
    data_error: u32,
    trapped: [u32; 2],
    intr_inst: u32,
}

/// The emulated registers of one vGPU.
pub struct VRegs {
    slice: Slice,
    boot0: u32,
    /// VRAM geometry as reported: partitions and MiB each.
    parts: u32,
    part_mib: u32,
    /// PMC_ENABLE, PMC's interrupt tree and PTIMER.
    pmc: IntrTree,
    spoon_enable: u32,
    pramin_base: u32,
    bar_inst: [u32; 2],
    mmu_ctrl: u32,
    flush_done: bool,
    sysmem_flush: u32,
    invalidate_pdb: u32,
    pfifo: Pfifo,
    pgraph: Pgraph,
    /// Denied accesses.
    pub denied: DenyStats,
}

/// The "one flush slot free" value of MMU CTRL's slot field.
const FLUSH_SLOT_FREE: u32 = 1 << mmu::CTRL_FLUSH_SLOTS_MASK.trailing_zeros();
/// PBDMA enable bits (one per PBDMA).
const PBDMA_BITS: u32 = (1 << pfifo::PBDMA_COUNT) - 1;

/// `(partitions, MiB each)` reporting `vram_bytes`: the most partitions (up to the GF100's
/// six) that divide the size evenly, so the guest's sum is exact.
fn vram_geometry(vram_bytes: u64) -> (u32, u32) {
    let mib = (vram_bytes >> 20).min(u64::from(u32::MAX)) as u32;
    let parts = (1..=pfb::MAX_PARTS).rev().find(|p| mib.is_multiple_of(*p)).unwrap_or(1);
    (parts, mib / parts)
}

impl VRegs {
    /// Power-on state of a vGPU owning `slice`, identifying as `boot0`.
    pub fn new(slice: Slice, boot0: u32) -> VRegs {
        let (parts, part_mib) = vram_geometry(slice.vram_size);
        VRegs {
            slice,
            boot0,
            parts,
            part_mib,
            pmc: IntrTree::new(),
            spoon_enable: 0,
            pramin_base: 0,
            bar_inst: [0; 2],
            mmu_ctrl: 0,
            flush_done: false,
            sysmem_flush: 0,
            invalidate_pdb: 0,
            pfifo: Pfifo::default(),
            pgraph: Pgraph::default(),
            denied: DenyStats::default(),
        }
    }

    /// The vGPU's resources.
    pub fn slice(&self) -> &Slice {
        &self.slice
    }

    /// Back to power-on state (device reset), keeping the counters.
    pub fn reset(&mut self) {
        let denied = self.denied;
        *self = VRegs::new(self.slice, self.boot0);
        self.denied = denied;
    }

    /// The PMC inputs of the units the vGPU emulates outside the interrupt tree: PFIFO and
    /// PGRAPH, from the state the glue injected (the tree adds PTIMER and gates by
    /// PMC_ENABLE).
    fn unit_inputs(&self) -> u32 {
        let mut v = 0;
        if self.pfifo.intr_status() & self.pfifo.intr_en != 0 {
            v |= pmc::INTR_PFIFO;
        }
        if self.pgraph.intr & self.pgraph.intr_en != 0 {
            v |= pmc::INTR_PGRAPH;
        }
        v
    }

    /// Whether the guest's PFIFO may run channels: its PMC enable bit is set and PFIFO is
    /// enabled. When it is not, the mediator keeps the vGPU's channels off the host GPU.
    pub fn pfifo_running(&self) -> bool {
        self.pmc.enable() & pmc::ENABLE_PFIFO != 0 && self.pfifo.ctrl & pfifo::CTRL_ENABLE != 0
    }

    /// Whether the vGPU's interrupt line is asserted.
    pub fn irq_line(&self) -> bool {
        self.pmc.line(self.unit_inputs())
    }

    /// Guest VRAM address behind PRAMIN window offset `off` (BAR0 offset), translated.
    fn pramin(&self, off: u32) -> Result<VramAccess, Denial> {
        let b = pbus::PraminBase::from_raw(self.pramin_base);
        if b.target() != target::VRAM {
            return Err(Denial::UnsupportedTarget);
        }
        let guest = b.addr() + u64::from(off.wrapping_sub(pbus::PRAMIN_WINDOW));
        let host = self.slice.vram_to_host(guest, 4).ok_or(Denial::OutsidePartition)?;
        Ok(VramAccess { guest, host })
    }

    /// A guest read of BAR0 offset `off` (32-bit).
    pub fn read<C: Clock + ?Sized>(&mut self, off: u32, clock: &C) -> Read {
        let e = regs::lookup(off);
        let r = match e.map(|e| (e.class, off - e.start)) {
            Some((Class::Emulate(reg), rel)) => self.read_reg(reg, off, rel, clock),
            Some((Class::Translate(Window::Pramin), _)) => self.pramin(off).map(Read::Vram),
            Some((Class::Deny, _)) | None => Err(Denial::Unknown),
        };
        r.unwrap_or_else(|d| {
            self.denied.reads += 1;
            Read::Denied(d)
        })
    }

    fn read_reg<C: Clock + ?Sized>(&mut self, reg: Reg, off: u32, rel: u32, clock: &C) -> Result<Read, Denial> {
        let p = &self.pfifo;
        let v = match reg {
            Reg::Boot0 => self.boot0,
            Reg::Endian => 0,
            Reg::IntrTree => {
                let inputs = self.unit_inputs();
                self.pmc.read(off, inputs, clock.now_ns()).ok_or(Denial::Unknown)?
            }
            Reg::SpoonEnable => self.spoon_enable,
            Reg::Straps => pstraps::CRYSTAL_27MHZ,
            Reg::VramParts => self.parts,
            Reg::VramPartsDisabled => 0,
            Reg::VramPartMib => {
                if off == pfb::PART_MIB_BROADCAST || (off - pfb::part_mib(0)) / 0x1000 < self.parts {
                    self.part_mib
                } else {
                    0
                }
            }
            Reg::MmuCtrl => {
                (self.mmu_ctrl & !(mmu::CTRL_FLUSH_SLOTS_MASK | mmu::CTRL_FLUSH_DONE))
                    | FLUSH_SLOT_FREE
                    | if self.flush_done { mmu::CTRL_FLUSH_DONE } else { 0 }
            }
            Reg::SysmemFlushPage => self.sysmem_flush,
            Reg::TlbPdb => self.invalidate_pdb,
            Reg::TlbInvalidate => 0,
            Reg::PraminBase => self.pramin_base,
            Reg::Bar1Inst => self.bar_inst[0],
            Reg::Bar3Inst => self.bar_inst[1],
            Reg::BarFlush => 0,
            Reg::PfifoIntr => p.intr_status(),
            Reg::PfifoIntrEn => p.intr_en,
            Reg::PfifoCtrl => p.ctrl,
            Reg::SubfifoEnable => p.subfifo_enable,
            Reg::EngSubfifoMask => *p.eng_subfifo_mask.get((rel / 4) as usize).ok_or(Denial::Unknown)?,
            Reg::UserdPollBase => p.poll_base.raw(),
            Reg::RunlistBase => p.runlist_base.raw(),
            Reg::RunlistSubmit => p.runlist_submit.raw(),
            Reg::RunlistStatus => 0,
            Reg::ChanTableError => p.chan_table_error,
            Reg::SchedError => p.sched_error,
            Reg::VmFaultUnits => p.vm_fault_units,
            Reg::PbdmaIntrUnits => p.pbdma_units(),
            Reg::EngineIntrUnits => p.engine_units(),
            Reg::EngineIntr => *p.engine_intr.get((rel / 4) as usize).ok_or(Denial::Unknown)?,
            Reg::EngineIntrEn => p.engine_intr_en,
            Reg::Kick => p.kick,
            Reg::VmFaultRecord => {
                let rec = |unit: u32| p.vm_faults.get(unit as usize).ok_or(Denial::Unknown);
                if let Some(u) = pfifo::VmFaultInst::index(off) {
                    rec(u)?.inst.raw()
                } else if let Some(u) = pfifo::VmFaultAddrLo::index(off) {
                    rec(u)?.addr_lo.raw()
                } else if let Some(u) = pfifo::VmFaultAddrHi::index(off) {
                    rec(u)?.addr_hi.raw()
                } else {
                    rec(pfifo::VmFaultInfo::index(off).ok_or(Denial::Unknown)?)?.info.raw()
                }
            }
            Reg::IntrRunlistStatus => p.runlist_intr,
            Reg::ChanTable => {
                let (chid, word) = chan_table_word(off).ok_or(Denial::Unknown)?;
                self.slice.channel_to_host(chid).ok_or(Denial::ForeignChannel)?;
                let c = chid as usize;
                match word {
                    ChanWord::Inst => p.chan_inst.get(c).ok_or(Denial::ForeignChannel)?.raw(),
                    ChanWord::State => p.chan_state.get(c).ok_or(Denial::ForeignChannel)?.raw(),
                }
            }
            Reg::Pbdma => {
                let (i, r) = pbdma_reg(off).ok_or(Denial::Unknown)?;
                let b = &p.pbdma[i];
                match r {
                    pfifo::PBDMA_METHOD => b.method,
                    pfifo::PBDMA_DATA => b.data,
                    pfifo::PBDMA_INTR => b.intr,
                    pfifo::PBDMA_INTR_EN => b.intr_en,
                    pfifo::PBDMA_CHID => b.chid,
                    _ => b.halt_mask,
                }
            }
            Reg::PgraphIntr => self.pgraph.intr,
            Reg::PgraphDataError => self.pgraph.data_error,
            Reg::PgraphIntrEn => self.pgraph.intr_en,
            Reg::PgraphTrapped => *self.pgraph.trapped.get((rel / 4) as usize).ok_or(Denial::Unknown)?,
            Reg::PgraphIntrInst => self.pgraph.intr_inst,
            Reg::MsiRearm => 0,
        };
        Ok(Read::Value(v))
    }

    /// A guest write of `v` to BAR0 offset `off` (32-bit).
    pub fn write<C: Clock + ?Sized>(&mut self, off: u32, v: u32, clock: &C) -> Write {
        let e = regs::lookup(off);
        let r = match e.map(|e| (e.class, off - e.start)) {
            Some((Class::Emulate(reg), rel)) => self.write_reg(reg, off, rel, v, clock),
            Some((Class::Translate(Window::Pramin), _)) => self.pramin(off).map(|a| Write::Vram(a, v)),
            Some((Class::Deny, _)) | None => Err(Denial::Unknown),
        };
        r.unwrap_or_else(|d| {
            self.denied.writes += 1;
            Write::Denied(d)
        })
    }

    fn write_reg<C: Clock + ?Sized>(&mut self, reg: Reg, off: u32, rel: u32, v: u32, clock: &C) -> Result<Write, Denial> {
        let p = &mut self.pfifo;
        match reg {
            Reg::Boot0 | Reg::Straps | Reg::VramParts | Reg::VramPartsDisabled => {}
            Reg::VramPartMib | Reg::RunlistStatus | Reg::PbdmaIntrUnits | Reg::EngineIntrUnits => {}
            Reg::VmFaultRecord | Reg::PgraphDataError | Reg::PgraphTrapped | Reg::PgraphIntrInst => {}
            Reg::Endian => {
                // Big-endian mode would need byte-swapping every trapped access.
                if v & pmc::ENDIAN_BIG != 0 {
                    return Err(Denial::Unsupported);
                }
            }
            Reg::IntrTree => match self.pmc.write(off, v, clock.now_ns()).ok_or(Denial::Unknown)? {
                // The alarm is looked at when the guest reads interrupt state (no guest
                // driver of this project arms it); nothing polls it.
                Written::Done | Written::AlarmSet => {}
                Written::Enabled(rising) => return Ok(self.units_enabled(rising)),
            },
            Reg::SpoonEnable => self.spoon_enable = v & PBDMA_BITS,
            Reg::MmuCtrl => {
                // The big-page size is global (the host's, 128 KiB): the bit cannot be set.
                self.mmu_ctrl = v & !(mmu::CTRL_FLUSH_SLOTS_MASK | mmu::CTRL_FLUSH_DONE | mmu::CTRL_BIG_PAGE_64K);
                if v & mmu::CTRL_BIG_PAGE_64K != 0 {
                    return Err(Denial::Unsupported);
                }
            }
            Reg::SysmemFlushPage => self.sysmem_flush = v,
            Reg::TlbPdb => {
                self.invalidate_pdb = v;
                self.flush_done = false;
            }
            Reg::TlbInvalidate => return self.tlb_invalidate(v),
            Reg::PraminBase => self.pramin_base = v,
            Reg::Bar1Inst => return self.bar_inst(Bar::Bar1, v),
            Reg::Bar3Inst => return self.bar_inst(Bar::Bar3, v),
            Reg::BarFlush => {
                if v & pbus::FLUSH_TRIGGER != 0 {
                    return Ok(Write::Effect(Effect::BarFlush));
                }
            }
            Reg::PfifoIntr => {
                // Latched bits are write-1-to-clear; the level bits clear at their source.
                p.intr &= !v;
                if v & pfifo::INTR_RUNLIST != 0 {
                    p.runlist_intr = 0;
                }
            }
            Reg::PfifoIntrEn => p.intr_en = v,
            Reg::PfifoCtrl => p.ctrl = v & pfifo::CTRL_ENABLE,
            Reg::SubfifoEnable => p.subfifo_enable = v & PBDMA_BITS,
            Reg::EngSubfifoMask => *p.eng_subfifo_mask.get_mut((rel / 4) as usize).ok_or(Denial::Unknown)? = v,
            Reg::UserdPollBase => {
                p.poll_base = pfifo::UserdPollBase::from_raw(v);
                return Ok(Write::Effect(Effect::UserdPollBase {
                    bar1_va: p.poll_base.bar1_va(),
                    enabled: p.poll_base.enable(),
                }));
            }
            Reg::RunlistBase => p.runlist_base = pfifo::RunlistBase::from_raw(v),
            Reg::RunlistSubmit => return self.runlist_submit(v),
            Reg::ChanTableError => p.chan_table_error = v,
            Reg::SchedError => p.sched_error = v,
            Reg::VmFaultUnits => p.vm_fault_units &= !v,
            Reg::EngineIntr => *p.engine_intr.get_mut((rel / 4) as usize).ok_or(Denial::Unknown)? &= !v,
            Reg::EngineIntrEn => p.engine_intr_en = v,
            Reg::Kick => {
                let host_chid = self.slice.channel_to_host(v).ok_or(Denial::ForeignChannel)?;
                p.kick = v;
                return Ok(Write::Effect(Effect::Kick { chid: v, host_chid }));
            }
            Reg::IntrRunlistStatus => p.runlist_intr &= !v,
            Reg::ChanTable => return self.chan_table(off, v),
            Reg::Pbdma => {
                let (i, r) = pbdma_reg(off).ok_or(Denial::Unknown)?;
                let b = &mut p.pbdma[i];
                match r {
                    pfifo::PBDMA_METHOD => b.method = v,
                    pfifo::PBDMA_DATA => b.data = v,
                    pfifo::PBDMA_INTR => b.intr &= !v,
                    pfifo::PBDMA_INTR_EN => b.intr_en = v,
                    pfifo::PBDMA_CHID => {}
                    _ => b.halt_mask = v,
                }
            }
            Reg::PgraphIntr => self.pgraph.intr &= !v,
            Reg::PgraphIntrEn => self.pgraph.intr_en = v,
            Reg::MsiRearm => return Ok(Write::Effect(Effect::MsiRearm)),
        }
        Ok(Write::Done)
    }

    /// PMC_ENABLE bits `rising` went 0 -> 1: those units reset (the tree has reset PTIMER).
    fn units_enabled(&mut self, rising: u32) -> Write {
        if rising & pmc::ENABLE_PGRAPH != 0 {
            self.pgraph = Pgraph::default();
        }
        if rising & pmc::ENABLE_PFIFO != 0 {
            self.pfifo = Pfifo::default();
            return Write::Effect(Effect::PfifoReset);
        }
        Write::Done
    }

    fn tlb_invalidate(&mut self, v: u32) -> Result<Write, Denial> {
        let v = mmu::Invalidate::from_raw(v);
        if !v.trigger() {
            return Ok(Write::Done);
        }
        // The guest polls for FLUSH_DONE: a refused flush completes too (it just does
        // nothing), so a confused guest does not hang in its own poll loop.
        self.flush_done = true;
        let hub_only = v.hub_only();
        if v.all_pdb() {
            return Ok(Write::Effect(Effect::TlbFlush { pd: None, hub_only }));
        }
        let pdb = mmu::InvalidatePdb::from_raw(self.invalidate_pdb);
        if pdb.sysram() {
            return Err(Denial::UnsupportedTarget);
        }
        let pd = pdb.addr();
        self.slice.vram_to_host(pd, vm::PDE_SIZE).ok_or(Denial::OutsidePartition)?;
        Ok(Write::Effect(Effect::TlbFlush { pd: Some(pd), hub_only }))
    }

    fn bar_inst(&mut self, bar: Bar, v: u32) -> Result<Write, Denial> {
        self.bar_inst[match bar {
            Bar::Bar1 => 0,
            Bar::Bar3 => 1,
        }] = v;
        let v = pbus::BarInst::from_raw(v);
        if !v.mode_vm() {
            return Ok(Write::Effect(Effect::BarInst { bar, inst: None }));
        }
        if v.target() != target::VRAM {
            return Err(Denial::UnsupportedTarget);
        }
        let a = v.addr();
        self.slice.vram_to_host(a, inst::SIZE).ok_or(Denial::OutsidePartition)?;
        Ok(Write::Effect(Effect::BarInst { bar, inst: Some(a) }))
    }

    fn runlist_submit(&mut self, v: u32) -> Result<Write, Denial> {
        let p = &mut self.pfifo;
        p.runlist_submit = pfifo::RunlistSubmit::from_raw(v);
        p.runlist_intr |= pfifo::INTR_RUNLIST_DONE;
        p.intr |= pfifo::INTR_RUNLIST;
        let count = p.runlist_submit.count();
        let guest = p.runlist_base.addr();
        let vram = p.runlist_base.target() == target::VRAM;
        let inside = self.slice.vram_to_host(guest, u64::from(count) * pfifo::RUNLIST_ENTRY_SIZE).is_some();
        if !(vram && inside) {
            self.raise_sched_error(pfifo::SCHED_ERROR_BAD_RUNLIST);
            return Err(if vram { Denial::OutsidePartition } else { Denial::UnsupportedTarget });
        }
        Ok(Write::Effect(Effect::RunlistCommit { guest, count }))
    }

    fn chan_table(&mut self, off: u32, v: u32) -> Result<Write, Denial> {
        let (chid, word) = chan_table_word(off).ok_or(Denial::Unknown)?;
        let host_chid = self.slice.channel_to_host(chid).ok_or(Denial::ForeignChannel)?;
        let p = &mut self.pfifo;
        let c = chid as usize;
        if word == ChanWord::State {
            let state = pfifo::ChanState::from_raw(v).writable();
            *p.chan_state.get_mut(c).ok_or(Denial::ForeignChannel)? = state;
            let runnable = state.runnable();
            return Ok(Write::Effect(Effect::ChannelState { chid, host_chid, runnable }));
        }
        let v = pfifo::ChanInst::from_raw(v);
        *p.chan_inst.get_mut(c).ok_or(Denial::ForeignChannel)? = v;
        if !v.valid() {
            return Ok(Write::Effect(Effect::ChannelUnbind { chid, host_chid }));
        }
        let inst = v.addr();
        let vram = v.target() == target::VRAM;
        if !vram || self.slice.vram_to_host(inst, inst::SIZE).is_none() {
            p.chan_table_error = pfifo::CHAN_TABLE_ERROR_INVALID_TARGET;
            p.intr |= pfifo::INTR_CHAN_TABLE_ERROR;
            return Err(if vram { Denial::OutsidePartition } else { Denial::UnsupportedTarget });
        }
        if v.poll_enable() && !p.poll_base.enable() {
            p.chan_table_error = pfifo::CHAN_TABLE_ERROR_NO_POLL;
            p.intr |= pfifo::INTR_CHAN_TABLE_ERROR;
        }
        Ok(Write::Effect(Effect::ChannelBind { chid, host_chid, inst }))
    }

    // ---- interrupt sources injected by the glue ------------------------------------------

    /// A non-stall interrupt (fence) on one of the vGPU's channels.
    pub fn raise_nonstall(&mut self) {
        self.pfifo.engine_intr[0] |= pfifo::ENGINE_INTR_NOTIFY;
    }

    /// An MMU fault of `unit` in the vGPU's channel whose guest instance block is `inst`.
    pub fn raise_vm_fault(&mut self, unit: u32, inst: u64, va: u64, info: u32) {
        let Some(rec) = self.pfifo.vm_faults.get_mut(unit as usize) else { return };
        *rec = FaultRecord {
            inst: pfifo::VmFaultInst::default().with_addr(inst),
            addr_lo: pfifo::VmFaultAddrLo::default().with_va(va),
            addr_hi: pfifo::VmFaultAddrHi::default().with_va(va),
            info: pfifo::VmFaultInfo::from_raw(info),
        };
        self.pfifo.vm_fault_units |= 1 << unit;
    }

    /// A PBDMA interrupt while one of the vGPU's channels (guest id `chid`) was loaded.
    pub fn raise_pbdma(&mut self, pbdma: u32, intr: u32, method: u32, data: u32, chid: u32) {
        let Some(b) = self.pfifo.pbdma.get_mut(pbdma as usize) else { return };
        b.intr |= intr;
        b.method = method;
        b.data = data;
        b.chid = chid;
    }

    /// A CHAN_TABLE_ERROR with `code` (a channel the vGPU bound cannot be loaded), as PFIFO
    /// reports a channel-table entry it cannot use.
    pub fn raise_chan_table_error(&mut self, code: u32) {
        self.pfifo.chan_table_error = code;
        self.pfifo.intr |= pfifo::INTR_CHAN_TABLE_ERROR;
    }

    /// A SCHED_ERROR with `code` (e.g. a runlist with refused entries).
    pub fn raise_sched_error(&mut self, code: u32) {
        self.pfifo.sched_error = code;
        self.pfifo.intr |= pfifo::INTR_SCHED_ERROR;
    }

    /// A PGRAPH interrupt caused by the vGPU's channel (guest instance block `inst`).
    pub fn raise_pgraph(&mut self, intr: u32, data_error: u32, trapped: [u32; 2], inst: u64) {
        let g = &mut self.pgraph;
        g.intr |= intr;
        g.data_error = data_error;
        g.trapped = trapped;
        g.intr_inst = (inst >> vm::SMALL_PAGE_SHIFT) as u32 & pgraph::INTR_CHANNEL_INST_MASK;
    }
}

/// The two words of a channel-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChanWord {
    /// `pfifo::ChanInst`.
    Inst,
    /// `pfifo::ChanState`.
    State,
}

/// `(channel, word)` of a BAR0 offset inside the channel table.
fn chan_table_word(off: u32) -> Option<(u32, ChanWord)> {
    pfifo::ChanInst::index(off)
        .map(|chid| (chid, ChanWord::Inst))
        .or_else(|| pfifo::ChanState::index(off).map(|chid| (chid, ChanWord::State)))
}

/// `(PBDMA index, register offset within the PBDMA)` of a BAR0 offset the table marks as a
/// PBDMA register.
fn pbdma_reg(off: u32) -> Option<(usize, u32)> {
    let rel = off.checked_sub(pfifo::pbdma_base(0))?;
    let stride = pfifo::pbdma_base(1) - pfifo::pbdma_base(0);
    let i = (rel / stride) as usize;
    (i < PBDMA_COUNT).then_some((i, rel % stride))
}
