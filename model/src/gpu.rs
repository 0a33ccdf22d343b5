//! The GPU object: register file (BAR0), BAR1/BAR3 windows, interrupts, and the public API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gpuvm_uapi::config_space::{ConfigSpace, Profile};
use gpuvm_uapi::gf100::{bad, mmu, pbus, pci, pfb, pfifo, pgraph, pmc, pstraps, ptimer};
use gpuvm_uapi::intr_tree::{IntrTree, Written};

use crate::bus::{PhysAddr, PhysBus};
use crate::counters::{Counters, CountersSnapshot};
use crate::mem::HostMemory;
use crate::mmu::{Fault, Tlb, VmContext};

/// The card's PCI configuration space: PCIe-sized, as BAR0 mirrors it.
pub(crate) type CardConfig = ConfigSpace<{ pci::CFG_SIZE_PCIE }>;

/// The three memory BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    Bar0,
    Bar1,
    Bar3,
}

impl Bar {
    pub fn size(self) -> u64 {
        match self {
            Bar::Bar0 => pci::BAR0_SIZE,
            Bar::Bar1 => pci::BAR1_SIZE,
            Bar::Bar3 => pci::BAR3_SIZE,
        }
    }
}

/// Model parameters.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// VRAM size in bytes; a positive multiple of 1 MiB (default 1 GiB; 6 GiB like the card).
    pub vram_bytes: u64,
    /// How long PFIFO runs one channel before switching to the next runnable one.
    pub timeslice: Duration,
    /// PBDMA worker threads: how many channels execute at once (each engine still serves
    /// one channel at a time). GF100 has 3 PBDMAs; the default is 2 (one per host core
    /// of the target machine); at most 3.
    pub pbdma_threads: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            vram_bytes: 1 << 30,
            timeslice: Duration::from_millis(2),
            pbdma_threads: 2,
        }
    }
}

/// Callback for interrupt line changes (`true` = asserted). Called with model locks held:
/// it must not call back into the model (write an eventfd, signal a condvar, ...).
pub type IrqNotifier = Arc<dyn Fn(bool) + Send + Sync>;

/// The level of the PCI interrupt output (PMC's host + non-redirectable lines).
#[derive(Default)]
pub(crate) struct IrqLine {
    state: Mutex<IrqState>,
    cv: Condvar,
}

#[derive(Default)]
struct IrqState {
    level: bool,
    notifier: Option<IrqNotifier>,
}

impl IrqLine {
    fn set(&self, level: bool, counters: &Counters) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.level == level {
            return;
        }
        st.level = level;
        if level {
            Counters::inc(&counters.irq_edges);
            self.cv.notify_all();
        }
        if let Some(n) = &st.notifier {
            n(level);
        }
    }

    fn retrigger(&self) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.level {
            if let Some(n) = &st.notifier {
                n(true);
            }
        }
    }
}

/// A fault record (`pfifo::VmFault*::offset(unit)`).
#[derive(Clone, Copy, Default)]
pub(crate) struct FaultRecord {
    pub inst: pfifo::VmFaultInst,
    pub addr_lo: pfifo::VmFaultAddrLo,
    pub addr_hi: pfifo::VmFaultAddrHi,
    pub info: pfifo::VmFaultInfo,
}

#[derive(Clone, Copy, Default)]
pub(crate) struct PbdmaRegs {
    pub method: u32,
    pub data: u32,
    pub intr: u32,
    pub intr_en: u32,
    pub chid: u32,
    pub halt_mask: u32,
}

/// One BAR's VM binding (0x1704 / 0x1714) and its cached context.
#[derive(Clone, Copy, Default)]
pub(crate) struct BarVm {
    pub reg: pbus::BarInst,
    ctx: Option<VmContext>,
    ctx_gen: u64,
}

pub(crate) struct PfifoRegs {
    pub intr: u32,
    pub intr_en: u32,
    pub ctrl: u32,
    pub subfifo_enable: u32,
    pub eng_subfifo_mask: [u32; pfifo::ENG_SUBFIFO_MASK_COUNT as usize],
    pub poll_base: pfifo::UserdPollBase,
    pub runlist_base: pfifo::RunlistBase,
    pub runlist_submit: u32,
    /// The committed runlist (chids).
    pub runlist: Vec<u32>,
    pub chan_table_error: u32,
    pub sched_error: u32,
    pub vm_fault_units: u32,
    pub vm_faults: [FaultRecord; pfifo::VM_FAULT_UNITS_MAX as usize],
    pub pbdma: [PbdmaRegs; pfifo::PBDMA_COUNT as usize],
    pub engine_intr: [u32; pfifo::ENGINE_INTR_COUNT as usize],
    pub engine_intr_en: u32,
    pub eng_fault: u32,
    pub eng_freeze: u32,
    pub kick: u32,
    pub runlist_intr: u32,
    pub chan_inst: [pfifo::ChanInst; pfifo::CHANNELS as usize],
    /// What the driver wrote (`ChanState::writable`).
    pub chan_state: [pfifo::ChanState; pfifo::CHANNELS as usize],
    /// Bumped when a channel's CHAN word is written: PFIFO reloads it from RAMFC.
    pub chan_gen: [u64; pfifo::CHANNELS as usize],
    /// Bumped when a channel is kicked (preempted): it is switched out, and PFIFO restores it
    /// from RAMFC at its next timeslice.
    pub kick_gen: [u64; pfifo::CHANNELS as usize],
    /// Status PFIFO maintains (`loaded`, `acquire_pending`, `pending`).
    pub chan_status: [pfifo::ChanState; pfifo::CHANNELS as usize],
    /// Doorbells not yet taken by a PBDMA worker (bit = chid).
    pub doorbells: u128,
    /// Channels a PBDMA worker is executing right now.
    pub running: u128,
    /// Channels with work (a doorbell was taken and they have not gone idle since).
    pub active: u128,
    /// Channels blocked on a semaphore acquire (retried after progress elsewhere).
    pub stalled: u128,
    /// Round-robin position in the runlist.
    pub next: usize,
    /// Channels stopped by an error until their CHAN word is written again.
    pub faulted: u128,
}

impl Default for PfifoRegs {
    fn default() -> Self {
        PfifoRegs {
            intr: 0,
            intr_en: 0,
            ctrl: 0,
            subfifo_enable: 0,
            eng_subfifo_mask: [0; 6],
            poll_base: pfifo::UserdPollBase::default(),
            runlist_base: pfifo::RunlistBase::default(),
            runlist_submit: 0,
            runlist: Vec::new(),
            chan_table_error: 0,
            sched_error: 0,
            vm_fault_units: 0,
            vm_faults: [FaultRecord::default(); pfifo::VM_FAULT_UNITS_MAX as usize],
            pbdma: [PbdmaRegs::default(); 3],
            engine_intr: [0; pfifo::ENGINE_INTR_COUNT as usize],
            engine_intr_en: 0,
            eng_fault: 0,
            eng_freeze: 0,
            kick: 0,
            runlist_intr: 0,
            chan_inst: [pfifo::ChanInst::default(); 128],
            chan_state: [pfifo::ChanState::default(); 128],
            chan_gen: [0; 128],
            kick_gen: [0; 128],
            chan_status: [pfifo::ChanState::default(); 128],
            doorbells: 0,
            running: 0,
            active: 0,
            stalled: 0,
            next: 0,
            faulted: 0,
        }
    }
}

impl PfifoRegs {
    pub fn pbdma_units(&self) -> u32 {
        self.pbdma.iter().enumerate().fold(0, |m, (i, p)| {
            if p.intr & p.intr_en != 0 {
                m | 1 << i
            } else {
                m
            }
        })
    }
    fn engine_units(&self) -> u32 {
        self.engine_intr
            .iter()
            .enumerate()
            .fold(0, |m, (i, v)| if *v != 0 { m | 1 << i } else { m })
    }
    /// INTR as read: latched bits plus the level bits derived from their sources.
    pub fn intr_status(&self) -> u32 {
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

#[derive(Default)]
pub(crate) struct PgraphRegs {
    pub intr: u32,
    pub intr_en: u32,
    pub data_error: u32,
    pub trapped_addr: u32,
    pub trapped_data: u32,
    pub intr_inst: u32,
}

pub(crate) struct Regs {
    /// PMC_ENABLE, PMC's interrupt tree and PTIMER (shared with the mediator's vGPUs).
    pub pmc: IntrTree,
    pub spoon_enable: u32,
    endian: u32,
    /// The interrupt output as last driven (edges are signalled on change).
    irq_line: bool,
    pramin_base: pbus::PraminBase,
    pub bar1: BarVm,
    pub bar3: BarVm,
    peephole: u32,
    pub mmu_ctrl: u32,
    flush_done: bool,
    sysmem_flush: u32,
    invalidate_pdb: mmu::InvalidatePdb,
    /// Bumped by every TLB flush: VM contexts are re-read from their instance blocks.
    pub vm_gen: u64,
    /// Bumped by a PFIFO reset or device reset: PFIFO drops all channel state.
    pub pfifo_epoch: u64,
    pub pfifo: PfifoRegs,
    pub pgraph: PgraphRegs,
    /// The channel each engine (`pfifo::ENGINE_GR`, ...) executes a method of right now
    /// (ENG_STATE).
    pub engine_busy: [Option<u32>; 3],
    pub shutdown: bool,
}

impl Regs {
    fn new() -> Regs {
        Regs {
            pmc: IntrTree::new(),
            spoon_enable: 0,
            endian: 0,
            irq_line: false,
            pramin_base: pbus::PraminBase::default(),
            bar1: BarVm::default(),
            bar3: BarVm::default(),
            peephole: 0,
            mmu_ctrl: 0,
            flush_done: true,
            sysmem_flush: 0,
            invalidate_pdb: mmu::InvalidatePdb::default(),
            vm_gen: 1,
            pfifo_epoch: 0,
            pfifo: PfifoRegs::default(),
            pgraph: PgraphRegs::default(),
            engine_busy: [None; 3],
            shutdown: false,
        }
    }

    pub fn big_page_shift(&self) -> u32 {
        if self.mmu_ctrl & mmu::CTRL_BIG_PAGE_64K != 0 {
            gpuvm_uapi::gf100::vm::BIG_PAGE_SHIFT_64K
        } else {
            gpuvm_uapi::gf100::vm::BIG_PAGE_SHIFT_128K
        }
    }

    pub fn pfifo_running(&self) -> bool {
        self.pmc.enable() & pmc::ENABLE_PFIFO != 0
            && self.pfifo.ctrl & pfifo::CTRL_ENABLE != 0
            && !self.shutdown
    }
}

/// Which unit a register belongs to, for PMC_ENABLE gating.
fn unit_enable_bit(off: u32) -> Option<u32> {
    match off {
        o if (pfifo::REGS_START..pfifo::REGS_END).contains(&o) => Some(pmc::ENABLE_PFIFO),
        o if (pfifo::PBDMA_REGS_START..pfifo::PBDMA_REGS_END).contains(&o) => {
            Some(pmc::ENABLE_PFIFO)
        }
        o if (ptimer::REGS_START..ptimer::REGS_END).contains(&o) => Some(pmc::ENABLE_PTIMER),
        o if (pgraph::REGS_START..pgraph::REGS_END).contains(&o) => Some(pmc::ENABLE_PGRAPH),
        _ => None,
    }
}

/// Shared state of one GPU; each PBDMA worker thread holds an `Arc` of it.
pub(crate) struct Inner {
    pub cfg: ModelConfig,
    pub bus: PhysBus,
    pub regs: Mutex<Regs>,
    /// Signalled (with `regs`) when PFIFO may have work: doorbell, runlist, kick, shutdown.
    pub work: Condvar,
    pub tlb: Mutex<Tlb>,
    pub config: Mutex<CardConfig>,
    /// Held while an engine executes work: PGRAPH (M2MF, compute), PCOPY0, PCOPY1.
    pub engines: [Mutex<()>; 3],
    /// Bumped when an engine is reset (its PMC_ENABLE bit cleared, a device reset) or the
    /// GPU stops: the work it is executing is abandoned (`pfifo::EngineGuard::check`).
    pub engine_resets: [AtomicU64; 3],
    irq: IrqLine,
    pub counters: Counters,
    /// Nanoseconds PFIFO spent executing each channel's timeslices (its engine work runs
    /// inside them, on the PBDMA worker): the per-channel busy time a real GPU's performance
    /// counters would give, for checking a host's GPU-time accounting.
    pub chan_busy_ns: [AtomicU64; pfifo::CHANNELS as usize],
    start: Instant,
    /// FB partition geometry: (count, MiB each).
    parts: (u32, u32),
}

impl Inner {
    pub fn lock_regs(&self) -> MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock_tlb(&self) -> MutexGuard<'_, Tlb> {
        self.tlb.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The clock PTIMER counts: ns since the GPU was created.
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// PTIMER time in ns (bits 0-4 zero).
    pub fn time_ns(&self, r: &Regs) -> u64 {
        r.pmc.time(self.now_ns())
    }

    /// Re-evaluates the interrupt output after any change of interrupt state.
    pub fn update_irq(&self, r: &mut Regs) {
        let line = r.pmc.line(Self::unit_inputs(r));
        if line != r.irq_line {
            r.irq_line = line;
            // PCI status "interrupt" mirrors the INTx pin, which is silent while MSI is on;
            // vfio-pci's INTx handler relies on it to tell whether the device asserted.
            let mut cfg = self.config.lock().unwrap_or_else(|e| e.into_inner());
            let intx = line && !cfg.msi_enabled();
            cfg.set_interrupt_status(intx);
            drop(cfg);
            self.irq.set(line, &self.counters);
        }
    }

    /// Polls the PTIMER alarm (called periodically by the PBDMA workers): the line rises
    /// without the driver reading interrupt state. Returns whether the alarm is still armed.
    pub fn poll_alarm(&self, r: &mut Regs) -> bool {
        if r.pmc.check_alarm(self.now_ns()) {
            self.update_irq(r);
        }
        r.pmc.alarm_armed()
    }

    /// The PMC inputs of the units outside the interrupt tree (the tree adds PTIMER and
    /// gates each by PMC_ENABLE).
    fn unit_inputs(r: &Regs) -> u32 {
        let mut v = 0;
        if r.pfifo.intr_status() & r.pfifo.intr_en != 0 {
            v |= pmc::INTR_PFIFO;
        }
        if r.pgraph.intr & r.pgraph.intr_en != 0 {
            v |= pmc::INTR_PGRAPH;
        }
        v
    }

    /// Records an MMU fault of `unit` for the VM of instance `inst` and raises VM_FAULT.
    pub fn record_vm_fault(&self, r: &mut Regs, unit: u32, inst: Option<PhysAddr>, f: Fault) {
        Counters::inc(&self.counters.mmu_faults);
        let rec = &mut r.pfifo.vm_faults[(unit % pfifo::VM_FAULT_UNITS_MAX) as usize];
        rec.inst = pfifo::VmFaultInst::default().with_addr(inst.map_or(0, |p| p.addr));
        rec.addr_lo = pfifo::VmFaultAddrLo::default().with_va(f.va);
        rec.addr_hi = pfifo::VmFaultAddrHi::default().with_va(f.va);
        let hub = matches!(
            unit,
            pfifo::FAULT_UNIT_BAR1 | pfifo::FAULT_UNIT_BAR3 | pfifo::FAULT_UNIT_PFIFO
        );
        rec.info = pfifo::VmFaultInfo::default()
            .with_reason(f.reason)
            .with_hub(hub)
            .with_write(f.write);
        r.pfifo.vm_fault_units |= 1 << (unit % pfifo::VM_FAULT_UNITS_MAX);
        self.update_irq(r);
    }

    /// The VM context of BAR1 or BAR3, refreshed after a TLB flush. `None` = direct VRAM.
    /// `Err` = the VM is enabled but its instance block is unusable.
    fn bar_vm(&self, r: &mut Regs, bar: Bar) -> Result<Option<(VmContext, PhysAddr)>, ()> {
        let gen = r.vm_gen;
        let b = if bar == Bar::Bar1 {
            &mut r.bar1
        } else {
            &mut r.bar3
        };
        if !b.reg.mode_vm() {
            return Ok(None);
        }
        let inst = PhysAddr::from_target(b.reg.target(), b.reg.addr()).ok_or(())?;
        if b.ctx.is_none() || b.ctx_gen != gen {
            b.ctx = VmContext::load(&self.bus, inst);
            b.ctx_gen = gen;
        }
        b.ctx.map(|c| Some((c, inst))).ok_or(())
    }

    /// BAR1/BAR3 access of `buf.len()` bytes at `off`, split at page boundaries.
    pub fn bar_window_access(&self, bar: Bar, off: u64, buf: &mut [u8], write: bool) {
        let end = off.saturating_add(buf.len() as u64);
        if end > bar.size() {
            Counters::inc(&self.counters.bar0_unknown);
            if !write {
                buf.fill(0xff);
            }
            return;
        }
        let (vm, big_shift) = {
            let mut r = self.lock_regs();
            let vm = self.bar_vm(&mut r, bar);
            (vm, r.big_page_shift())
        };
        let unit = if bar == Bar::Bar1 {
            pfifo::FAULT_UNIT_BAR1
        } else {
            pfifo::FAULT_UNIT_BAR3
        };
        let mut done = 0usize;
        while done < buf.len() {
            let va = off + done as u64;
            let chunk = ((0x1000 - (va & 0xfff)) as usize).min(buf.len() - done);
            let part = &mut buf[done..done + chunk];
            let pa = match vm {
                Ok(None) => Ok(PhysAddr::vram(va)),
                Ok(Some((ctx, _))) => self
                    .lock_tlb()
                    .translate(&self.bus, &ctx, big_shift, va, write),
                Err(()) => Err(Fault {
                    reason: mmu::FAULT_PT_NOT_PRESENT,
                    va,
                    write,
                }),
            };
            let ok = match pa {
                Ok(pa) => {
                    if write {
                        self.bus.write(pa, part)
                    } else {
                        self.bus.read(pa, part)
                    }
                }
                Err(_) => false,
            };
            if !ok {
                let fault = pa.err().unwrap_or(Fault {
                    reason: mmu::FAULT_BAD_PHYSICAL,
                    va,
                    write,
                });
                let inst = vm.ok().flatten().map(|(_, i)| i);
                let mut r = self.lock_regs();
                self.record_vm_fault(&mut r, unit, inst, fault);
                if !write {
                    fill_bad(part, bad::VM_FAULT);
                }
            }
            done += chunk;
        }
        if write && bar == Bar::Bar1 {
            self.check_doorbell(off, end);
        }
    }

    /// A BAR1 write covering GP_PUT of a USERD page in the poll area rings that channel.
    fn check_doorbell(&self, start: u64, end: u64) {
        let mut r = self.lock_regs();
        let pb = r.pfifo.poll_base;
        if !pb.enable() {
            return;
        }
        let area = pb.bar1_va();
        let area_end = area + pfifo::CHANNELS as u64 * pfifo::USERD_POLL_STRIDE;
        let put = gpuvm_uapi::gf100::userd::GP_PUT as u64;
        let mut rang = false;
        for chid in 0..pfifo::CHANNELS as u64 {
            let doorbell = area + chid * pfifo::USERD_POLL_STRIDE + put;
            if doorbell >= area_end {
                break;
            }
            if doorbell >= start && doorbell + 4 <= end {
                r.pfifo.doorbells |= 1u128 << chid;
                Counters::inc(&self.counters.doorbells);
                rang = true;
            }
        }
        if rang {
            self.work.notify_all();
        }
    }

    fn pramin_pa(&self, off: u32) -> Option<PhysAddr> {
        let base = self.lock_regs().pramin_base;
        PhysAddr::from_target(base.target(), base.addr() + (off - pbus::PRAMIN_WINDOW) as u64)
    }

    pub fn mmio_read(&self, off: u32) -> u32 {
        if (pbus::PRAMIN_WINDOW..pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE).contains(&off) {
            return self
                .pramin_pa(off)
                .and_then(|pa| self.bus.read32(pa))
                .unwrap_or(bad::VM_FAULT);
        }
        if (pci::BAR0_CONFIG_MIRROR..pci::BAR0_CONFIG_MIRROR + pci::BAR0_CONFIG_MIRROR_SIZE)
            .contains(&off)
        {
            let mut b = [0u8; 4];
            self.config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .read((off - pci::BAR0_CONFIG_MIRROR) as u64, &mut b);
            return u32::from_le_bytes(b);
        }
        let mut r = self.lock_regs();
        if let Some(bit) = unit_enable_bit(off) {
            if r.pmc.enable() & bit == 0 {
                return bad::UNIT_DISABLED;
            }
        }
        match self.read_reg(&mut r, off) {
            Some(v) => v,
            None => {
                Counters::inc(&self.counters.bar0_unknown);
                bad::NO_REGISTER
            }
        }
    }

    fn read_reg(&self, r: &mut Regs, off: u32) -> Option<u32> {
        if IntrTree::serves(off) {
            let v = r.pmc.read(off, Self::unit_inputs(r), self.now_ns());
            // Reading interrupt state may have fired the alarm.
            self.update_irq(r);
            return v;
        }
        let p = &r.pfifo;
        if let Some(v) = vm_fault_word(p, off).or_else(|| chan_table_word(p, off)) {
            return Some(v);
        }
        let v = match off {
            pmc::Boot0::OFFSET => pmc::BOOT_0_QUADRO_6000,
            pmc::ENDIAN => r.endian,
            pmc::SPOON_ENABLE => r.spoon_enable,
            pbus::PraminBase::OFFSET => r.pramin_base.raw(),
            pbus::BAR1_INST => r.bar1.reg.raw(),
            pbus::BAR3_INST => r.bar3.reg.raw(),
            pbus::PEEPHOLE_INST => r.peephole,
            pbus::FLUSH => 0,
            pstraps::STRAPS => pstraps::CRYSTAL_27MHZ,
            pfb::FBP_COUNT | pfb::PART_COUNT => self.parts.0,
            pfb::FBP_DISABLED_MASK => 0,
            pfb::PART_MIB_BROADCAST => self.parts.1,
            o if (pfb::part_mib(0)..pfb::part_mib(pfb::MAX_PARTS)).contains(&o)
                && (o - pfb::part_mib(0)).is_multiple_of(0x1000) =>
            {
                if (o - pfb::part_mib(0)) / 0x1000 < self.parts.0 {
                    self.parts.1
                } else {
                    0
                }
            }
            mmu::CTRL => {
                (r.mmu_ctrl & !(mmu::CTRL_FLUSH_SLOTS_MASK | mmu::CTRL_FLUSH_DONE))
                    | mmu::CTRL_FLUSH_SLOTS_MODEL << mmu::CTRL_FLUSH_SLOTS_SHIFT
                    | if r.flush_done {
                        mmu::CTRL_FLUSH_DONE
                    } else {
                        0
                    }
            }
            mmu::SYSMEM_FLUSH_PAGE => r.sysmem_flush,
            mmu::InvalidatePdb::OFFSET => r.invalidate_pdb.raw(),
            mmu::Invalidate::OFFSET => 0,
            pfifo::INTR => p.intr_status(),
            pfifo::INTR_EN => p.intr_en,
            pfifo::CTRL => p.ctrl,
            pfifo::SUBFIFO_ENABLE => p.subfifo_enable,
            o if (pfifo::eng_subfifo_mask(0)
                ..pfifo::eng_subfifo_mask(pfifo::ENG_SUBFIFO_MASK_COUNT))
                .contains(&o) =>
            {
                p.eng_subfifo_mask[((o - pfifo::eng_subfifo_mask(0)) / 4) as usize]
            }
            pfifo::UserdPollBase::OFFSET => p.poll_base.raw(),
            pfifo::RunlistBase::OFFSET => p.runlist_base.raw(),
            pfifo::RunlistSubmit::OFFSET => p.runlist_submit,
            pfifo::RunlistStatus::OFFSET => 0,
            pfifo::CHAN_TABLE_ERROR => p.chan_table_error,
            pfifo::SCHED_ERROR => p.sched_error,
            pfifo::VM_FAULT_UNITS => p.vm_fault_units,
            pfifo::PBDMA_INTR_UNITS => p.pbdma_units(),
            pfifo::ENGINE_INTR_UNITS => p.engine_units(),
            o if (pfifo::engine_intr(0)..pfifo::engine_intr(pfifo::ENGINE_INTR_COUNT))
                .contains(&o) =>
            {
                p.engine_intr[((o - pfifo::engine_intr(0)) / 4) as usize]
            }
            pfifo::ENGINE_INTR_EN => p.engine_intr_en,
            pfifo::ENG_FAULT => p.eng_fault,
            pfifo::ENG_FREEZE => p.eng_freeze,
            pfifo::KICK => {
                if p.running & 1u128 << p.kick != 0 {
                    p.kick | pfifo::KICK_PENDING
                } else {
                    p.kick
                }
            }
            o if (pfifo::eng_state(0)..pfifo::eng_state(pfifo::ENG_SUBFIFO_MASK_COUNT))
                .contains(&o) =>
            {
                let e = crate::pfifo::engine_index((o - pfifo::eng_state(0)) / 4);
                match e.and_then(|e| r.engine_busy[e]) {
                    Some(chid) => pfifo::EngState::default().with_busy(true).with_chid(chid).raw(),
                    None => 0,
                }
            }
            pfifo::INTR_RUNLIST_STATUS => p.runlist_intr,
            o if (pfifo::pbdma_base(0)..pfifo::pbdma_base(pfifo::PBDMA_COUNT)).contains(&o) => {
                let pb = &p.pbdma[((o - pfifo::pbdma_base(0)) / pfifo::PBDMA_STRIDE) as usize];
                match (o - pfifo::pbdma_base(0)) % pfifo::PBDMA_STRIDE {
                    pfifo::PBDMA_METHOD => pb.method,
                    pfifo::PBDMA_DATA => pb.data,
                    pfifo::PBDMA_INTR => pb.intr,
                    pfifo::PBDMA_INTR_EN => pb.intr_en,
                    pfifo::PBDMA_CHID => pb.chid,
                    pfifo::PBDMA_INTR_HALT_MASK => pb.halt_mask,
                    _ => return None,
                }
            }
            pgraph::INTR => r.pgraph.intr,
            pgraph::INTR_EN => r.pgraph.intr_en,
            pgraph::DATA_ERROR_CODE => r.pgraph.data_error,
            pgraph::TRAPPED_ADDR => r.pgraph.trapped_addr,
            pgraph::TRAPPED_DATA => r.pgraph.trapped_data,
            pgraph::INTR_CHANNEL_INST => r.pgraph.intr_inst,
            _ => return None,
        };
        Some(v)
    }

    pub fn mmio_write(&self, off: u32, v: u32) {
        if (pbus::PRAMIN_WINDOW..pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE).contains(&off) {
            if !self
                .pramin_pa(off)
                .is_some_and(|pa| self.bus.write32(pa, v))
            {
                Counters::inc(&self.counters.bar0_unknown);
            }
            return;
        }
        if off == pci::BAR0_MSI_REARM {
            self.irq.retrigger();
            return;
        }
        if (pci::BAR0_CONFIG_MIRROR..pci::BAR0_CONFIG_MIRROR + pci::BAR0_CONFIG_MIRROR_SIZE)
            .contains(&off)
        {
            self.config_write((off - pci::BAR0_CONFIG_MIRROR) as u64, &v.to_le_bytes());
            return;
        }
        let mut r = self.lock_regs();
        if let Some(bit) = unit_enable_bit(off) {
            if r.pmc.enable() & bit == 0 {
                Counters::inc(&self.counters.bar0_unknown);
                return;
            }
        }
        if !self.write_reg(&mut r, off, v) {
            Counters::inc(&self.counters.bar0_unknown);
        }
        self.update_irq(&mut r);
    }

    /// A BAR0 write narrower than a register. Only the config-space mirror (byte-granular)
    /// and the MSI re-arm register (any write) take them, as nouveau's 8-bit writes there
    /// expect; elsewhere they are dropped and counted, since a read-modify-write could
    /// trigger side effects.
    pub fn partial_mmio_write(&self, off: u64, bytes: &[u8]) {
        let mirror = pci::BAR0_CONFIG_MIRROR as u64
            ..(pci::BAR0_CONFIG_MIRROR + pci::BAR0_CONFIG_MIRROR_SIZE) as u64;
        if off & !3 == pci::BAR0_MSI_REARM as u64 {
            self.irq.retrigger();
        } else if mirror.contains(&off) {
            self.config_write(off - mirror.start, bytes);
        } else {
            Counters::inc(&self.counters.bar0_unknown);
        }
    }

    pub fn config_write(&self, off: u64, data: &[u8]) {
        let mut c = self.config.lock().unwrap_or_else(|e| e.into_inner());
        c.write(off, data);
        self.bus
            .set_bus_master(c.command() & pci::COMMAND_BUS_MASTER != 0);
    }

    /// Returns false for an unknown register.
    fn write_reg(&self, r: &mut Regs, off: u32, v: u32) -> bool {
        let enabled = r.pmc.enable();
        if let Some(w) = r.pmc.write(off, v, self.now_ns()) {
            // An engine whose PMC_ENABLE bit goes 1 -> 0 is held in reset: what it was doing
            // for a channel is abandoned, with that channel's context on the engine.
            let falling = enabled & !r.pmc.enable();
            for (i, (_, bit)) in pfifo::RESETTABLE_ENGINES.iter().enumerate() {
                if falling & bit != 0 {
                    self.engine_resets[i].fetch_add(1, Ordering::SeqCst);
                }
            }
            match w {
                Written::Done => {}
                Written::Enabled(rising) => self.units_enabled(r, rising),
                // The PBDMA workers poll an armed alarm.
                Written::AlarmSet => self.work.notify_all(),
            }
            return true;
        }
        if let Some(chid) = pfifo::ChanInst::index(off) {
            self.write_chan_inst(r, chid as usize, pfifo::ChanInst::from_raw(v));
            return true;
        }
        if let Some(chid) = pfifo::ChanState::index(off) {
            r.pfifo.chan_state[chid as usize] = pfifo::ChanState::from_raw(v).writable();
            self.work.notify_all();
            return true;
        }
        match off {
            pmc::Boot0::OFFSET => {}
            pmc::ENDIAN => {
                if v & (1 << 24) != 0 {
                    r.endian ^= pmc::ENDIAN_BIG;
                }
            }
            pmc::SPOON_ENABLE => r.spoon_enable = v & ((1 << pfifo::PBDMA_COUNT) - 1),
            pbus::PraminBase::OFFSET => r.pramin_base = pbus::PraminBase::from_raw(v),
            pbus::BAR1_INST => {
                r.bar1 = BarVm {
                    reg: pbus::BarInst::from_raw(v),
                    ctx: None,
                    ctx_gen: 0,
                };
            }
            pbus::BAR3_INST => {
                r.bar3 = BarVm {
                    reg: pbus::BarInst::from_raw(v),
                    ctx: None,
                    ctx_gen: 0,
                };
            }
            pbus::PEEPHOLE_INST => r.peephole = v,
            pbus::FLUSH => {}
            pstraps::STRAPS => {}
            mmu::CTRL => r.mmu_ctrl = v & !(mmu::CTRL_FLUSH_SLOTS_MASK | mmu::CTRL_FLUSH_DONE),
            mmu::SYSMEM_FLUSH_PAGE => r.sysmem_flush = v,
            mmu::InvalidatePdb::OFFSET => {
                r.invalidate_pdb = mmu::InvalidatePdb::from_raw(v);
                r.flush_done = false;
            }
            mmu::Invalidate::OFFSET => {
                let v = mmu::Invalidate::from_raw(v);
                if v.trigger() {
                    let pdb = r.invalidate_pdb;
                    let pd = if pdb.sysram() {
                        PhysAddr::sys(pdb.addr())
                    } else {
                        PhysAddr::vram(pdb.addr())
                    };
                    self.tlb_invalidate(r, if v.all_pdb() { None } else { Some(pd) });
                    r.flush_done = true;
                }
            }
            // Read-only geometry: writes are accepted and have no effect.
            pfb::FBP_COUNT | pfb::PART_COUNT | pfb::FBP_DISABLED_MASK | pfb::PART_MIB_BROADCAST => {
            }
            o if (pfb::part_mib(0)..pfb::part_mib(pfb::MAX_PARTS)).contains(&o) => {}
            pfifo::INTR => {
                // Latched bits are write-1-to-clear; the level bits clear at their source.
                r.pfifo.intr &= !v;
                if v & pfifo::INTR_RUNLIST != 0 {
                    r.pfifo.runlist_intr = 0;
                }
            }
            pfifo::INTR_EN => r.pfifo.intr_en = v,
            pfifo::CTRL => {
                r.pfifo.ctrl = v & pfifo::CTRL_ENABLE;
                self.work.notify_all();
            }
            pfifo::SUBFIFO_ENABLE => r.pfifo.subfifo_enable = v & ((1 << pfifo::PBDMA_COUNT) - 1),
            o if (pfifo::eng_subfifo_mask(0)
                ..pfifo::eng_subfifo_mask(pfifo::ENG_SUBFIFO_MASK_COUNT))
                .contains(&o) =>
            {
                r.pfifo.eng_subfifo_mask[((o - pfifo::eng_subfifo_mask(0)) / 4) as usize] = v;
            }
            pfifo::UserdPollBase::OFFSET => r.pfifo.poll_base = pfifo::UserdPollBase::from_raw(v),
            pfifo::RunlistBase::OFFSET => r.pfifo.runlist_base = pfifo::RunlistBase::from_raw(v),
            pfifo::RunlistSubmit::OFFSET => self.commit_runlist(r, v),
            pfifo::RunlistStatus::OFFSET => {}
            pfifo::CHAN_TABLE_ERROR => r.pfifo.chan_table_error = v,
            pfifo::SCHED_ERROR => r.pfifo.sched_error = v,
            pfifo::VM_FAULT_UNITS => r.pfifo.vm_fault_units &= !v,
            pfifo::PBDMA_INTR_UNITS | pfifo::ENGINE_INTR_UNITS => {}
            o if (pfifo::engine_intr(0)..pfifo::engine_intr(pfifo::ENGINE_INTR_COUNT))
                .contains(&o) =>
            {
                r.pfifo.engine_intr[((o - pfifo::engine_intr(0)) / 4) as usize] &= !v;
            }
            pfifo::ENGINE_INTR_EN => r.pfifo.engine_intr_en = v,
            pfifo::ENG_FAULT => r.pfifo.eng_fault &= !v,
            pfifo::ENG_FREEZE => r.pfifo.eng_freeze = v,
            pfifo::KICK => {
                Counters::inc(&self.counters.kicks);
                r.pfifo.kick = v & (pfifo::CHANNELS - 1);
                r.pfifo.kick_gen[r.pfifo.kick as usize] += 1;
                self.work.notify_all();
            }
            // The VM fault records are read-only.
            o if vm_fault_word(&r.pfifo, o).is_some() => {}
            pfifo::INTR_RUNLIST_STATUS => r.pfifo.runlist_intr &= !v,
            o if (pfifo::pbdma_base(0)..pfifo::pbdma_base(pfifo::PBDMA_COUNT)).contains(&o) => {
                let pb =
                    &mut r.pfifo.pbdma[((o - pfifo::pbdma_base(0)) / pfifo::PBDMA_STRIDE) as usize];
                match (o - pfifo::pbdma_base(0)) % pfifo::PBDMA_STRIDE {
                    pfifo::PBDMA_METHOD => pb.method = v,
                    pfifo::PBDMA_DATA => pb.data = v,
                    pfifo::PBDMA_INTR => pb.intr &= !v,
                    pfifo::PBDMA_INTR_EN => pb.intr_en = v,
                    pfifo::PBDMA_CHID => {}
                    pfifo::PBDMA_INTR_HALT_MASK => pb.halt_mask = v,
                    _ => return false,
                }
            }
            pgraph::INTR => r.pgraph.intr &= !v,
            pgraph::INTR_EN => r.pgraph.intr_en = v,
            pgraph::DATA_ERROR_CODE
            | pgraph::TRAPPED_ADDR
            | pgraph::TRAPPED_DATA
            | pgraph::INTR_CHANNEL_INST => {}
            _ => return false,
        }
        true
    }

    /// PMC_ENABLE was written; `rising` went 0 -> 1: those units reset (the interrupt tree
    /// has reset PTIMER).
    fn units_enabled(&self, r: &mut Regs, rising: u32) {
        if rising & pmc::ENABLE_PFIFO != 0 {
            // PFIFO reset: registers, channel table and runlist cleared; PFIFO drops every
            // channel's state.
            r.pfifo = PfifoRegs::default();
            r.pfifo_epoch += 1;
        }
        if rising & pmc::ENABLE_PGRAPH != 0 {
            r.pgraph = PgraphRegs::default();
        }
        self.work.notify_all();
    }

    fn write_chan_inst(&self, r: &mut Regs, chid: usize, v: pfifo::ChanInst) {
        r.pfifo.chan_inst[chid] = v;
        r.pfifo.chan_gen[chid] += 1;
        r.pfifo.chan_status[chid] = pfifo::ChanState::default();
        let others = !(1u128 << chid);
        r.pfifo.active &= others;
        r.pfifo.stalled &= others;
        r.pfifo.faulted &= others;
        if v.valid() {
            if v.target() != gpuvm_uapi::gf100::target::VRAM {
                r.pfifo.chan_table_error = pfifo::CHAN_TABLE_ERROR_INVALID_TARGET;
                r.pfifo.intr |= pfifo::INTR_CHAN_TABLE_ERROR;
            } else if v.poll_enable()
                && !r.pfifo.poll_base.enable()
            {
                r.pfifo.chan_table_error = pfifo::CHAN_TABLE_ERROR_NO_POLL;
                r.pfifo.intr |= pfifo::INTR_CHAN_TABLE_ERROR;
            }
        }
        self.work.notify_all();
    }

    fn commit_runlist(&self, r: &mut Regs, v: u32) {
        Counters::inc(&self.counters.runlist_commits);
        r.pfifo.runlist_submit = v;
        let count = pfifo::RunlistSubmit::from_raw(v).count() as u64;
        let base = r.pfifo.runlist_base;
        let list = PhysAddr::from_target(base.target(), base.addr());
        let mut chids = Vec::with_capacity(count as usize);
        let mut malformed = list.is_none();
        if let Some(list) = list {
            for i in 0..count {
                let e = list.offset(i * pfifo::RUNLIST_ENTRY_SIZE);
                match (self.bus.read32(e), self.bus.read32(e.offset(4))) {
                    (Some(chid), Some(pfifo::RUNLIST_ENTRY_WORD1)) if chid < pfifo::CHANNELS => {
                        if !chids.contains(&chid) {
                            chids.push(chid);
                        }
                    }
                    _ => malformed = true,
                }
            }
        }
        if malformed {
            r.pfifo.sched_error = pfifo::SCHED_ERROR_BAD_RUNLIST;
            r.pfifo.intr |= pfifo::INTR_SCHED_ERROR;
        }
        r.pfifo.runlist = chids;
        r.pfifo.runlist_intr |= pfifo::INTR_RUNLIST_DONE;
        r.pfifo.intr |= pfifo::INTR_RUNLIST;
        self.work.notify_all();
    }

    /// TLB invalidate (register or host MEM_OP): `None` = every address space.
    pub fn tlb_invalidate(&self, r: &mut Regs, pdb: Option<PhysAddr>) {
        Counters::inc(&self.counters.tlb_flushes);
        let mut tlb = self.lock_tlb();
        match pdb {
            Some(p) => tlb.flush_pdb(p),
            None => tlb.flush_all(),
        }
        r.vm_gen += 1;
    }

    /// Raises PFIFO's non-stall (NOTIFY) interrupt.
    pub fn raise_nonstall(&self, r: &mut Regs) {
        Counters::inc(&self.counters.nonstall_interrupts);
        r.pfifo.engine_intr[0] |= pfifo::ENGINE_INTR_NOTIFY;
        self.update_irq(r);
    }
}

fn fill_bad(buf: &mut [u8], word: u32) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = word.to_le_bytes()[i % 4];
    }
}

/// FB partitions for `mib` MiB: the largest count <= 6 that divides it evenly.
fn partition_geometry(mib: u32) -> (u32, u32) {
    let n = (1..=pfb::MAX_PARTS)
        .rev()
        .find(|n| mib.is_multiple_of(*n))
        .unwrap_or(1);
    (n, mib / n)
}

/// One model GPU. Dropping it (or [`Gpu::shutdown`]) stops its threads.
pub struct Gpu {
    pub(crate) inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

impl Gpu {
    /// Creates the GPU (VRAM zero-filled) and starts its PBDMA/engine threads.
    pub fn new(cfg: ModelConfig) -> std::io::Result<Arc<Gpu>> {
        if cfg.vram_bytes == 0
            || !cfg.vram_bytes.is_multiple_of(1 << 20)
            || cfg.vram_bytes > (1 << 37)
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "VRAM size must be a positive multiple of 1 MiB, at most 128 GiB",
            ));
        }
        let vram = Arc::new(HostMemory::new("gf100-vram", cfg.vram_bytes)?);
        let parts = partition_geometry((cfg.vram_bytes >> 20) as u32);
        let inner = Arc::new(Inner {
            cfg,
            bus: PhysBus::new(vram),
            regs: Mutex::new(Regs::new()),
            work: Condvar::new(),
            tlb: Mutex::new(Tlb::default()),
            config: Mutex::new(CardConfig::power_on(&Profile::CARD)),
            engines: Default::default(),
            engine_resets: Default::default(),
            irq: IrqLine::default(),
            counters: Counters::default(),
            chan_busy_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            start: Instant::now(),
            parts,
        });
        // In-process users have no config-space setup step: start with bus mastering on.
        inner.bus.set_bus_master(true);
        let channels = Arc::new(crate::pfifo::Channels::new());
        let mut threads = Vec::new();
        for i in 0..inner
            .cfg
            .pbdma_threads
            .clamp(1, pfifo::PBDMA_COUNT as usize)
        {
            let (worker, channels) = (inner.clone(), channels.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("gf100-pbdma{i}"))
                    .spawn(move || crate::pfifo::run(worker, channels))?,
            );
        }
        Ok(Arc::new(Gpu {
            inner,
            threads: Mutex::new(threads),
            stopped: AtomicBool::new(false),
        }))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.inner.cfg
    }

    /// 32-bit read. BAR0 offsets must be 4-byte aligned (unaligned reads return 0xbad001xx).
    pub fn bar_read32(&self, bar: Bar, off: u64) -> u32 {
        match bar {
            Bar::Bar0 => {
                Counters::inc(&self.inner.counters.bar0_reads);
                if !off.is_multiple_of(4) || off >= Bar::Bar0.size() {
                    Counters::inc(&self.inner.counters.bar0_unknown);
                    return bad::NO_REGISTER;
                }
                self.inner.mmio_read(off as u32)
            }
            _ => {
                let mut b = [0u8; 4];
                self.bar_read(bar, off, &mut b);
                u32::from_le_bytes(b)
            }
        }
    }

    pub fn bar_write32(&self, bar: Bar, off: u64, v: u32) {
        match bar {
            Bar::Bar0 => {
                Counters::inc(&self.inner.counters.bar0_writes);
                if !off.is_multiple_of(4) || off >= Bar::Bar0.size() {
                    Counters::inc(&self.inner.counters.bar0_unknown);
                    return;
                }
                self.inner.mmio_write(off as u32, v)
            }
            _ => self.bar_write(bar, off, &v.to_le_bytes()),
        }
    }

    /// Bulk read. BAR0 is accessed as a sequence of 32-bit registers (length and offset must
    /// be multiples of 4); BAR1/BAR3 go through their windows byte-exactly.
    pub fn bar_read(&self, bar: Bar, off: u64, buf: &mut [u8]) {
        let c = &self.inner.counters;
        match bar {
            Bar::Bar0 => {
                // Registers are 32-bit: each byte comes from its containing register, read once.
                let mut cached: Option<(u64, [u8; 4])> = None;
                for (i, b) in buf.iter_mut().enumerate() {
                    let addr = off.saturating_add(i as u64);
                    let reg = addr & !3;
                    let bytes = match cached {
                        Some((r, v)) if r == reg => v,
                        _ => {
                            let v = self.bar_read32(Bar::Bar0, reg).to_le_bytes();
                            cached = Some((reg, v));
                            v
                        }
                    };
                    *b = bytes[(addr & 3) as usize];
                }
            }
            Bar::Bar1 | Bar::Bar3 => {
                Counters::inc(if bar == Bar::Bar1 {
                    &c.bar1_reads
                } else {
                    &c.bar3_reads
                });
                if buf.len() > 8 {
                    Counters::add(&c.bar_bulk_bytes, buf.len() as u64);
                }
                self.inner.bar_window_access(bar, off, buf, false);
            }
        }
    }

    pub fn bar_write(&self, bar: Bar, off: u64, data: &[u8]) {
        let c = &self.inner.counters;
        match bar {
            Bar::Bar0 => {
                let mut pos = 0usize;
                while pos < data.len() {
                    let addr = off.saturating_add(pos as u64);
                    let n = ((4 - (addr & 3)) as usize).min(data.len() - pos);
                    if n == 4 {
                        let w = [data[pos], data[pos + 1], data[pos + 2], data[pos + 3]];
                        self.bar_write32(Bar::Bar0, addr, u32::from_le_bytes(w));
                    } else {
                        Counters::inc(&c.bar0_writes);
                        self.inner.partial_mmio_write(addr, &data[pos..pos + n]);
                    }
                    pos += n;
                }
            }
            Bar::Bar1 | Bar::Bar3 => {
                Counters::inc(if bar == Bar::Bar1 {
                    &c.bar1_writes
                } else {
                    &c.bar3_writes
                });
                if data.len() > 8 {
                    Counters::add(&c.bar_bulk_bytes, data.len() as u64);
                }
                let mut tmp = data.to_vec();
                self.inner.bar_window_access(bar, off, &mut tmp, true);
            }
        }
    }

    /// PCI config space access (the same space BAR0 mirrors at 0x88000).
    pub fn config_read(&self, off: u64, buf: &mut [u8]) {
        Counters::inc(&self.inner.counters.config_reads);
        self.inner
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(off, buf);
    }

    pub fn config_write(&self, off: u64, data: &[u8]) {
        Counters::inc(&self.inner.counters.config_writes);
        self.inner.config_write(off, data);
    }

    pub fn msi_enabled(&self) -> bool {
        self.inner
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .msi_enabled()
    }

    pub fn intx_disabled(&self) -> bool {
        self.inner
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .intx_disabled()
    }

    /// Makes host memory `mem` visible to the GPU at bus address `iova` (system-memory
    /// apertures). The caller keeps its own `Arc` to read/write the same bytes.
    pub fn dma_map(&self, iova: u64, mem: Arc<HostMemory>) -> Result<(), &'static str> {
        Counters::inc(&self.inner.counters.dma_maps);
        self.inner.bus.dma_map(iova, mem)
    }

    pub fn dma_unmap(&self, iova: u64) -> bool {
        self.inner.bus.dma_unmap(iova)
    }

    /// Removes every map overlapping `[iova, iova + len)`; returns how many.
    pub fn dma_unmap_range(&self, iova: u64, len: u64) -> usize {
        self.inner.bus.dma_unmap_range(iova, len)
    }

    pub fn dma_unmap_all(&self) {
        self.inner.bus.dma_unmap_all()
    }

    /// The VRAM backing (for tests and tools; a driver uses PRAMIN or BAR windows).
    pub fn vram(&self) -> &Arc<HostMemory> {
        &self.inner.bus.vram
    }

    /// Current level of the interrupt output.
    pub fn irq_line(&self) -> bool {
        self.inner
            .irq
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .level
    }

    /// Waits until the interrupt line is asserted (returns true at once if it already is)
    /// or `timeout` passes (returns false).
    pub fn irq_wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self
            .inner
            .irq
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while !st.level {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .inner
                .irq
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Installs (or removes) the interrupt-line callback. It is called once with the current
    /// level when installed.
    pub fn set_irq_notifier(&self, notifier: Option<IrqNotifier>) {
        let mut st = self
            .inner
            .irq
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = &notifier {
            n(st.level);
        }
        st.notifier = notifier;
    }

    /// Nanoseconds PFIFO spent executing channel `chid` (0 for an id past the channels).
    pub fn channel_busy_ns(&self, chid: u32) -> u64 {
        self.inner.chan_busy_ns.get(chid as usize).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn counters(&self) -> CountersSnapshot {
        let mut snap = self.inner.counters.snapshot();
        snap.tlb_misses = self.inner.lock_tlb().misses;
        snap
    }

    /// Device reset: registers, channels and TLB return to power-on state; VRAM keeps its
    /// contents; DMA maps stay.
    pub fn reset(&self) {
        let mut r = self.inner.lock_regs();
        let epoch = r.pfifo_epoch + 1;
        for g in &self.inner.engine_resets {
            g.fetch_add(1, Ordering::SeqCst);
        }
        let busy = r.engine_busy;
        *r = Regs::new();
        // Still held until the abandoned work notices.
        r.engine_busy = busy;
        r.pfifo_epoch = epoch;
        self.inner.lock_tlb().flush_all();
        self.inner.update_irq(&mut r);
        self.inner.work.notify_all();
    }

    /// Stops the engine threads (idempotent). Further register accesses still work but no
    /// channel executes.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let mut r = self.inner.lock_regs();
            r.shutdown = true;
            // Endless engine work ends too, so the threads can be joined.
            for g in &self.inner.engine_resets {
                g.fetch_add(1, Ordering::SeqCst);
            }
            self.inner.work.notify_all();
        }
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The VM fault record word at BAR0 offset `off`, if it is one.
fn vm_fault_word(p: &PfifoRegs, off: u32) -> Option<u32> {
    let rec = |unit: u32| &p.vm_faults[unit as usize];
    (pfifo::VmFaultInst::index(off).map(|u| rec(u).inst.raw()))
        .or_else(|| pfifo::VmFaultAddrLo::index(off).map(|u| rec(u).addr_lo.raw()))
        .or_else(|| pfifo::VmFaultAddrHi::index(off).map(|u| rec(u).addr_hi.raw()))
        .or_else(|| pfifo::VmFaultInfo::index(off).map(|u| rec(u).info.raw()))
}

/// The channel-table word at BAR0 offset `off`, if it is one: CHAN, or STATE as the driver
/// wrote it with the status PFIFO maintains.
fn chan_table_word(p: &PfifoRegs, off: u32) -> Option<u32> {
    (pfifo::ChanInst::index(off).map(|chid| p.chan_inst[chid as usize].raw())).or_else(|| {
        pfifo::ChanState::index(off).map(|chid| {
            let written = p.chan_state[chid as usize];
            let status = p.chan_status[chid as usize];
            status.with_runnable(written.runnable()).with_engine(written.engine()).raw()
        })
    })
}
