//! A minimal test driver: programs the model through BAR0/BAR1 like nouveau would, with
//! page tables and channel structures written straight into VRAM (the test owns it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf100_model::gpuvm_uapi::gf100::*;
use gf100_model::{Bar, Gpu, HostMemory, ModelConfig};

/// Bus address where the rig's system memory is DMA-mapped.
pub const SYS_IOVA: u64 = 0x8000_0000;
pub const SYS_SIZE: u64 = 16 << 20;
/// BAR1 VA of the 128 USERD pages (the poll area).
pub const USERD_BAR1_VA: u64 = 0x10_0000;
pub const GPFIFO_VA: u64 = 0x1000_0000;
pub const GP_ORDER: u32 = 9;
pub const PB_VA: u64 = 0x1010_0000;
pub const PB_SIZE: u64 = 256 << 10;

/// How long a wait for the model gives up after. Reached only when something is broken, so
/// generous: a debug-build kernel that takes 3 s on an idle 2-core machine takes several
/// times that while other builds and tests share the cores.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Pause between polls: short against the work waited for, long enough not to take the
/// cores from the PBDMA workers doing that work.
pub const POLL: Duration = Duration::from_micros(50);
/// How long a check that something does *not* happen gives the model to do it wrongly.
/// Not a synchronisation: however busy the machine, it can only miss a bug, never fail a
/// correct model.
pub const SETTLE: Duration = Duration::from_millis(30);

/// Gives the model [`SETTLE`] to do what it must not, before the test checks it did not.
pub fn settle() {
    std::thread::sleep(SETTLE);
}

/// The PTIMER timestamp of a four-word semaphore release at VRAM address `pa`: when the
/// releasing channel got there, as the GPU saw it (the test thread may look much later).
pub fn release_time(rig: &Rig, pa: u64) -> u64 {
    rig.r32(pa + report::TIME_LO) as u64 | (rig.r32(pa + report::TIME_HI) as u64) << 32
}

pub struct Rig {
    pub gpu: Arc<Gpu>,
    next: std::cell::Cell<u64>,
    pub sys: Arc<HostMemory>,
    pub bar1: Option<Vm>,
    pub userd_pa: u64,
    pub runlist_pa: u64,
    pub runlist: Vec<u32>,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with_vram(64 << 20)
    }

    pub fn with_vram(vram: u64) -> Rig {
        Rig::with_config(ModelConfig {
            vram_bytes: vram,
            ..ModelConfig::default()
        })
    }

    pub fn with_config(cfg: ModelConfig) -> Rig {
        let gpu = Gpu::new(cfg).unwrap();
        let sys = Arc::new(HostMemory::new("rig-sys", SYS_SIZE).unwrap());
        gpu.dma_map(SYS_IOVA, sys.clone()).unwrap();
        let rig = Rig {
            gpu,
            next: std::cell::Cell::new(1 << 20),
            sys,
            bar1: None,
            userd_pa: 0,
            runlist_pa: 0,
            runlist: vec![],
        };
        rig.set(pmc::ENABLE, pmc::ENABLE_ALL);
        rig.set(pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
        rig.set(pfifo::CTRL, pfifo::CTRL_ENABLE);
        rig.set(pfifo::INTR_EN, 0xffff_ffff);
        rig.set(pfifo::ENGINE_INTR_EN, pfifo::ENGINE_INTR_NOTIFY);
        rig.set(pfifo::pbdma_base(0) + pfifo::PBDMA_INTR_EN, 0xffff_ffff);
        rig.set(pgraph::INTR_EN, 0xffff_ffff);
        rig
    }

    pub fn reg(&self, off: u32) -> u32 {
        self.gpu.bar_read32(Bar::Bar0, off as u64)
    }

    pub fn set(&self, off: u32, v: u32) {
        self.gpu.bar_write32(Bar::Bar0, off as u64, v)
    }

    /// Bump allocation of VRAM.
    pub fn alloc(&self, size: u64, align: u64) -> u64 {
        let a = (self.next.get() + align - 1) & !(align - 1);
        self.next.set(a + size);
        assert!(a + size <= self.gpu.vram().len(), "test VRAM exhausted");
        a
    }

    pub fn w32(&self, pa: u64, v: u32) {
        assert!(self.gpu.vram().write32(pa, v));
    }

    pub fn r32(&self, pa: u64) -> u32 {
        self.gpu.vram().read32(pa).unwrap()
    }

    pub fn w64(&self, pa: u64, v: u64) {
        assert!(self.gpu.vram().write64(pa, v));
    }

    /// The TLB flush protocol of §6.2 for one PD.
    pub fn flush(&self, pd: u64, hub_only: bool) {
        assert_ne!(self.reg(mmu::CTRL) & mmu::CTRL_FLUSH_SLOTS_MASK, 0);
        self.set(
            mmu::InvalidatePdb::OFFSET,
            mmu::InvalidatePdb::default().with_addr(pd).with_sysram(false).raw(),
        );
        let flush = mmu::Invalidate::default()
            .with_page_all(true)
            .with_hub_only(hub_only)
            .with_trigger(true);
        self.set(mmu::Invalidate::OFFSET, flush.raw());
        assert_ne!(self.reg(mmu::CTRL) & mmu::CTRL_FLUSH_DONE, 0);
    }

    /// BAR1 VM covering the whole BAR with the USERD area mapped at `USERD_BAR1_VA`.
    pub fn setup_bar1(&mut self) {
        let mut vm = Vm::new(self, pci::BAR1_SIZE - 1);
        self.userd_pa = self.alloc(pfifo::CHANNELS as u64 * userd::SIZE, 0x1000);
        for c in 0..pfifo::CHANNELS as u64 {
            vm.map(
                self,
                USERD_BAR1_VA + c * 0x1000,
                self.userd_pa + c * 0x1000,
                vm::PTE_APER_VRAM,
                false,
            );
        }
        self.set(pbus::BAR1_INST, pbus::BarInst::vm(vm.inst).raw());
        self.flush(vm.pd, true);
        self.set(
            pfifo::UserdPollBase::OFFSET,
            pfifo::UserdPollBase::default()
                .with_bar1_va(USERD_BAR1_VA)
                .with_enable(true)
                .raw(),
        );
        self.runlist_pa = self.alloc(0x1000, 0x1000);
        self.bar1 = Some(vm);
    }

    pub fn commit_runlist(&self) {
        for (i, c) in self.runlist.iter().enumerate() {
            self.w32(self.runlist_pa + 8 * i as u64, *c);
            self.w32(
                self.runlist_pa + 8 * i as u64 + 4,
                pfifo::RUNLIST_ENTRY_WORD1,
            );
        }
        let base = pfifo::RunlistBase::default().with_addr(self.runlist_pa);
        self.set(pfifo::RunlistBase::OFFSET, base.raw());
        self.set(
            pfifo::RunlistSubmit::OFFSET,
            pfifo::RunlistSubmit::commit(self.runlist.len() as u32).raw(),
        );
        assert!(!pfifo::RunlistStatus::from_raw(self.reg(pfifo::RunlistStatus::OFFSET)).pending());
        // The update-complete event, acknowledged like nouveau's handler does.
        assert_ne!(
            self.reg(pfifo::INTR_RUNLIST_STATUS) & pfifo::INTR_RUNLIST_DONE,
            0
        );
        assert_ne!(self.reg(pfifo::INTR) & pfifo::INTR_RUNLIST, 0);
        self.set(pfifo::INTR_RUNLIST_STATUS, pfifo::INTR_RUNLIST_DONE);
        self.set(pfifo::INTR, pfifo::INTR_RUNLIST);
    }

    /// Creates channel `chid` with its own VM (GPFIFO and pushbuffer mapped), adds it to the
    /// runlist and commits.
    pub fn channel(&mut self, chid: u32) -> Chan {
        self.channel_with(chid, &[])
    }

    /// `channel`, with `(offset, value)` RAMFC words written after nouveau's (before the
    /// channel is bound).
    pub fn channel_with(&mut self, chid: u32, extra_ramfc: &[(u32, u32)]) -> Chan {
        if self.bar1.is_none() {
            self.setup_bar1();
        }
        let mut vm = Vm::new(self, 0xff_ffff_ffff);
        let gp_pa = self.alloc(8 << GP_ORDER, 0x1000);
        let pb_pa = self.alloc(PB_SIZE, 0x1000);
        vm.map_range(self, GPFIFO_VA, gp_pa, 8 << GP_ORDER);
        vm.map_range(self, PB_VA, pb_pa, PB_SIZE);
        let inst = vm.inst;
        let userd = self.userd_pa + chid as u64 * 0x1000;
        for off in (0..0x1000).step_by(4) {
            self.w32(userd + off, 0);
        }
        let ramfc_words = [
            (ramfc::USERD_LO, userd as u32),
            (ramfc::USERD_HI, (userd >> 32) as u32),
            (ramfc::SIGNATURE, ramfc::SIGNATURE_VALUE),
            (ramfc::ACQUIRE, ramfc::ACQUIRE_VALUE),
            (ramfc::GP_BASE, GPFIFO_VA as u32),
            (
                ramfc::GP_BASE_HI,
                ramfc::gp_base_hi_value(GPFIFO_VA, GP_ORDER),
            ),
            (ramfc::UNK54, ramfc::UNK54_VALUE),
            (ramfc::PB_HEADER, ramfc::PB_HEADER_VALUE),
            (ramfc::SUBDEVICE, ramfc::SUBDEVICE_VALUE),
            (ramfc::FORMATS, ramfc::FORMATS_VALUE),
            (ramfc::SUBCH_ENGINE_MAP0, ramfc::SUBCH_ENGINE_MAP_VALUE),
            (ramfc::SUBCH_ENGINE_MAP1, ramfc::SUBCH_ENGINE_MAP_VALUE),
            (ramfc::CURRENT_ENGINE, ramfc::CURRENT_ENGINE_VALUE),
        ];
        for &(off, v) in ramfc_words.iter().chain(extra_ramfc) {
            self.w32(inst + off as u64, v);
        }
        self.flush(vm.pd, false);
        self.set(pfifo::ChanInst::offset(chid), pfifo::ChanInst::bound(inst).raw());
        self.set(pfifo::ChanState::offset(chid), pfifo::ChanState::INITIAL.raw());
        if !self.runlist.contains(&chid) {
            self.runlist.push(chid);
        }
        self.commit_runlist();
        Chan {
            chid,
            vm,
            userd,
            gp_pa,
            pb_pa,
            put: 0,
            pb_off: 0,
        }
    }

    /// Waits for the interrupt line and returns PMC INTR_HOST.
    pub fn wait_intr(&self) -> u32 {
        assert!(
            self.gpu.irq_wait(DEADLINE),
            "no interrupt within {DEADLINE:?}"
        );
        self.reg(pmc::INTR_HOST)
    }
}

pub struct Vm {
    pub inst: u64,
    pub pd: u64,
    spts: HashMap<u64, u64>,
    lpts: HashMap<u64, u64>,
    pub big_shift: u32,
}

impl Vm {
    /// A VM with 128 KiB big pages whose instance block holds PDB and limit.
    pub fn new(rig: &Rig, limit: u64) -> Vm {
        let inst = rig.alloc(0x1000, 0x1000);
        let pd = rig.alloc(vm::PD_ENTRIES_128K * 8, 0x1000);
        for i in 0..vm::PD_ENTRIES_128K {
            rig.w64(pd + i * 8, 0);
        }
        rig.w32(inst + inst::PDB_LO as u64, pd as u32 | target::VRAM);
        rig.w32(inst + inst::PDB_HI as u64, (pd >> 32) as u32);
        rig.w32(inst + inst::LIMIT_LO as u64, limit as u32);
        rig.w32(inst + inst::LIMIT_HI as u64, (limit >> 32) as u32);
        Vm {
            inst,
            pd,
            spts: HashMap::new(),
            lpts: HashMap::new(),
            big_shift: vm::BIG_PAGE_SHIFT_128K,
        }
    }

    fn pde_shift(&self) -> u32 {
        self.big_shift + vm::PDE_SPAN_EXTRA_SHIFT
    }

    fn write_pde(&self, rig: &Rig, index: u64) {
        let spt = self.spts.get(&index).copied();
        let lpt = self.lpts.get(&index).copied();
        let pde = vm::pde(
            lpt.unwrap_or(0),
            if lpt.is_some() {
                vm::PDE_APER_VRAM
            } else {
                vm::PDE_APER_NONE
            },
            spt.unwrap_or(0),
            if spt.is_some() {
                vm::PDE_APER_VRAM
            } else {
                vm::PDE_APER_NONE
            },
        );
        rig.w64(self.pd + index * 8, pde);
    }

    fn spt(&mut self, rig: &Rig, va: u64) -> u64 {
        let index = va >> self.pde_shift();
        if let Some(t) = self.spts.get(&index) {
            return *t;
        }
        let entries = 1u64 << (self.pde_shift() - 12);
        let t = rig.alloc(entries * 8, 0x1000);
        for i in 0..entries {
            rig.w64(t + i * 8, 0);
        }
        self.spts.insert(index, t);
        self.write_pde(rig, index);
        t
    }

    fn lpt(&mut self, rig: &Rig, va: u64) -> u64 {
        let index = va >> self.pde_shift();
        if let Some(t) = self.lpts.get(&index) {
            return *t;
        }
        let t = rig.alloc(vm::LPT_ENTRIES * 8, 0x1000);
        for i in 0..vm::LPT_ENTRIES {
            rig.w64(t + i * 8, 0);
        }
        self.lpts.insert(index, t);
        self.write_pde(rig, index);
        t
    }

    /// The PTE slot of a 4 KiB page.
    pub fn pte_addr(&mut self, rig: &Rig, va: u64) -> u64 {
        let t = self.spt(rig, va);
        t + ((va >> 12) & ((1 << (self.pde_shift() - 12)) - 1)) * 8
    }

    pub fn map(&mut self, rig: &Rig, va: u64, pa: u64, aper: u64, ro: bool) {
        let slot = self.pte_addr(rig, va);
        rig.w64(slot, vm::pte(pa, aper, ro, vm::KIND_PITCH));
    }

    pub fn unmap(&mut self, rig: &Rig, va: u64) {
        let slot = self.pte_addr(rig, va);
        rig.w64(slot, 0);
    }

    pub fn map_big(&mut self, rig: &Rig, va: u64, pa: u64, aper: u64, ro: bool) {
        let t = self.lpt(rig, va);
        let slot = t + ((va >> self.big_shift) & (vm::LPT_ENTRIES - 1)) * 8;
        rig.w64(slot, vm::pte(pa, aper, ro, vm::KIND_PITCH));
    }

    pub fn map_range(&mut self, rig: &Rig, va: u64, pa: u64, len: u64) {
        for off in (0..len).step_by(0x1000) {
            self.map(rig, va + off, pa + off, vm::PTE_APER_VRAM, false);
        }
    }

    /// Allocates VRAM for `len` bytes and maps it at `va`; returns its physical address.
    pub fn buffer(&mut self, rig: &Rig, va: u64, len: u64) -> u64 {
        let pa = rig.alloc(len, 0x1000);
        self.map_range(rig, va, pa, (len + 0xfff) & !0xfff);
        pa
    }
}

pub struct Chan {
    pub chid: u32,
    pub vm: Vm,
    pub userd: u64,
    gp_pa: u64,
    pb_pa: u64,
    pub put: u32,
    pb_off: u64,
}

impl Chan {
    /// Writes `words` as one pushbuffer segment + GPFIFO entry, without ringing.
    pub fn queue(&mut self, rig: &Rig, words: &[u32]) {
        if self.pb_off + words.len() as u64 * 4 > PB_SIZE {
            self.pb_off = 0;
        }
        for (i, w) in words.iter().enumerate() {
            rig.w32(self.pb_pa + self.pb_off + 4 * i as u64, *w);
        }
        let entry = gpfifo::entry(PB_VA + self.pb_off, words.len() as u32);
        rig.w64(self.gp_pa + 8 * self.put as u64, entry);
        self.pb_off += (words.len() as u64 * 4 + 0xff) & !0xff;
        self.put = (self.put + 1) & ((1 << GP_ORDER) - 1);
    }

    /// Rings the doorbell: GP_PUT through the BAR1 poll area.
    pub fn ring(&self, rig: &Rig) {
        let off = USERD_BAR1_VA + self.chid as u64 * 0x1000 + userd::GP_PUT as u64;
        rig.gpu.bar_write32(Bar::Bar1, off, self.put);
    }

    pub fn push(&mut self, rig: &Rig, words: &[u32]) {
        self.queue(rig, words);
        self.ring(rig);
    }

    pub fn gp_get(&self, rig: &Rig) -> u32 {
        rig.r32(self.userd + userd::GP_GET as u64)
    }

    /// Rebinds the channel (PFIFO drops its state) and restarts the ring at entry 0.
    pub fn rebind(&mut self, rig: &Rig) {
        for off in (0..0x1000).step_by(4) {
            rig.w32(self.userd + off, 0);
        }
        self.put = 0;
        self.pb_off = 0;
        rig.set(
            pfifo::ChanInst::offset(self.chid),
            pfifo::ChanInst::bound(self.vm.inst).raw(),
        );
    }

    /// Waits until PFIFO consumed everything submitted.
    pub fn wait(&self, rig: &Rig) {
        let deadline = Instant::now() + DEADLINE;
        while self.gp_get(rig) != self.put {
            assert!(
                Instant::now() < deadline,
                "channel {} stuck at GP_GET {} (PUT {}) for {DEADLINE:?}",
                self.chid,
                self.gp_get(rig),
                self.put
            );
            std::thread::sleep(POLL);
        }
    }
}

/// Pushbuffer builder helpers.
pub fn incr(subch: u32, mthd: u32, data: &[u32]) -> Vec<u32> {
    let mut v = vec![pushbuf::incr(subch, mthd, data.len() as u32)];
    v.extend_from_slice(data);
    v
}

pub fn nonincr(subch: u32, mthd: u32, data: &[u32]) -> Vec<u32> {
    let mut v = vec![pushbuf::nonincr(subch, mthd, data.len() as u32)];
    v.extend_from_slice(data);
    v
}

/// Host semaphore release of `payload` at `va` (16-byte form unless `short`).
pub fn sem_release(va: u64, payload: u32, short: bool) -> Vec<u32> {
    let d = host::SEM_OP_RELEASE
        | if short {
            host::SEMAPHORE_D_RELEASE_SIZE_4
        } else {
            0
        };
    incr(
        0,
        host::SEMAPHORE_A,
        &[(va >> 32) as u32, va as u32, payload, d],
    )
}

pub fn sem_acquire(va: u64, payload: u32) -> Vec<u32> {
    incr(
        0,
        host::SEMAPHORE_A,
        &[(va >> 32) as u32, va as u32, payload, host::SEM_OP_ACQUIRE],
    )
}

/// Polls `f` until true; panics naming `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}
