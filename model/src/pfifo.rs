//! PFIFO: the PBDMA worker threads, GPFIFO fetch, pushbuffer decoding and the host class
//! (0x906f).
//!
//! `ModelConfig::pbdma_threads` workers (default 2) share the committed runlist: each picks
//! the next runnable channel with work round-robin, runs it for at most one timeslice (or
//! until it idles or blocks on a semaphore acquire), and executes its engine work (M2MF,
//! copy, compute) itself while holding that engine's lock. So engines run asynchronously to
//! MMIO, a copy on one channel overlaps a kernel on another (PGRAPH and PCOPY are separate
//! engines), each engine serves one channel at a time, and a long kernel is not preempted
//! (as on Fermi).
//!
//! Channel life cycle (model choices, see uapi/gf100.rs): writing CHAN_TABLE[c].CHAN drops
//! any state PFIFO had for c; on its first timeslice PFIFO loads RAMFC (USERD address,
//! signature, GPFIFO base/order and GP_GET, the physical-copy gate HCE_CTRL) and the VM
//! context (instance block PDB/limit). A kick (preemption) switches the channel out: its
//! state lives in RAMFC again (GP_GET is kept there after every entry) and PFIFO restores it
//! from RAMFC at the channel's next timeslice, so RAMFC words written while it was out take
//! effect then (envytools `hw/fifo/intro.rst`: the PFIFO switcher "saves / restores the state
//! of the channels between PFIFO registers and RAMFC memory"; RAMFC stores it "when channel is
//! not currently active"). **Choice:** the switch-out happens at a GPFIFO entry boundary (a
//! segment the model is in the middle of is finished first, as it keeps no pushbuffer
//! position in RAMFC). A channel runs only while it is VALID, RUNNABLE, on the runlist and PFIFO is
//! enabled (PMC_ENABLE bit 8 and PFIFO_CTRL bit 0). After a doorbell PFIFO reads GP_PUT
//! from USERD and executes entries until GP_GET == GP_PUT, writing GP_GET back after each
//! entry. Any channel error stops the channel until its CHAN word is written again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpuvm_uapi::gf100::{class, gpfifo, host, mmu, pfifo, pgraph, pushbuf, ramfc, report, userd};

use crate::bus::PhysAddr;
use crate::counters::Counters;
use crate::engines::Object;
use crate::gpu::{Inner, Regs};
use crate::mem::HostMemory;
use crate::mmu::{Fault, VmContext};

/// Why executing a method failed; the channel stops and the matching interrupt is raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExecError {
    /// MMU fault of the given fault unit (`pfifo::FAULT_UNIT_*`).
    Mmu { unit: u32, fault: Fault },
    /// PBDMA interrupt bits (`pfifo::PBDMA_INTR_*`).
    Pbdma { bits: u32 },
    /// PGRAPH interrupt bit with an optional DATA_ERROR code.
    Pgraph { bit: u32, code: u32 },
    /// The engine executing the method was reset (or the GPU stopped): the work and the
    /// channel's context on the engine are gone. No interrupt: the host that reset the
    /// engine knows.
    EngineReset,
}

/// Result of one method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Done,
    /// Cannot complete yet (semaphore acquire): retry the same method later.
    Stall,
    /// Completed; end the timeslice (YIELD).
    Yield,
}

/// A memory location for engines: a channel VA or (copy engine physical mode) a physical one.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Loc {
    Virt(u64),
    Phys(PhysAddr),
}

impl Loc {
    pub fn offset(self, n: u64) -> Loc {
        match self {
            Loc::Virt(va) => Loc::Virt(va.wrapping_add(n)),
            Loc::Phys(pa) => Loc::Phys(pa.offset(n)),
        }
    }
    fn addr(self) -> u64 {
        match self {
            Loc::Virt(va) => va,
            Loc::Phys(pa) => pa.addr,
        }
    }
}

/// Indices of `Inner::engines`.
pub(crate) const ENGINE_GR: usize = 0;
pub(crate) const ENGINE_CE0: usize = 1;
pub(crate) const ENGINE_CE1: usize = 2;

/// `Inner::engines` index of PFIFO engine id `e` (ENG_STATE index, `pfifo::ENGINE_*`).
pub(crate) fn engine_index(e: u32) -> Option<usize> {
    pfifo::RESETTABLE_ENGINES.iter().position(|&(id, _)| id == e)
}

/// Exclusive use of an engine by one channel while it executes one method; ENG_STATE shows
/// the channel meanwhile. An engine held in reset (PMC_ENABLE bit 0) takes no work.
pub(crate) struct EngineGuard<'a> {
    gpu: &'a Inner,
    engine: usize,
    reset_gen: u64,
    _lock: std::sync::MutexGuard<'a, ()>,
}

impl EngineGuard<'_> {
    /// `Err(EngineReset)` once the engine was reset since the work started: long work checks
    /// between chunks, so a reset abandons it within one chunk.
    pub fn check(&self) -> Result<(), ExecError> {
        if self.gpu.engine_resets[self.engine].load(std::sync::atomic::Ordering::SeqCst) != self.reset_gen {
            return Err(ExecError::EngineReset);
        }
        Ok(())
    }
}

impl Drop for EngineGuard<'_> {
    fn drop(&mut self) {
        self.gpu.lock_regs().engine_busy[self.engine] = None;
    }
}
/// What an engine needs to touch memory on behalf of a channel.
pub(crate) struct ChanCtx<'a> {
    pub gpu: &'a Inner,
    /// The channel the work is for (ENG_STATE while an engine executes it).
    pub chid: u32,
    pub inst: PhysAddr,
    pub vm: VmContext,
    pub big_shift: u32,
    /// RAMFC HCE_CTRL.PRIV_MODE as loaded: copy-engine physical addressing is allowed.
    pub phys_copy: bool,
}

impl ChanCtx<'_> {
    /// Exclusive use of an engine (`ENGINE_*`) while it executes work for this channel;
    /// waits while the engine is held in reset.
    pub fn engine(&self, engine: usize) -> EngineGuard<'_> {
        let lock = self.gpu.engines[engine]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let bit = pfifo::RESETTABLE_ENGINES[engine].1;
        loop {
            let mut r = self.gpu.lock_regs();
            if r.pmc.enable() & bit != 0 || r.shutdown {
                r.engine_busy[engine] = Some(self.chid);
                let reset_gen = self.gpu.engine_resets[engine].load(std::sync::atomic::Ordering::SeqCst);
                return EngineGuard {
                    gpu: self.gpu,
                    engine,
                    reset_gen,
                    _lock: lock,
                };
            }
            drop(r);
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    pub fn time_ns(&self) -> u64 {
        let r = self.gpu.lock_regs();
        self.gpu.time_ns(&r)
    }

    /// The host memory behind `loc`, valid for at most `max` bytes up to the next 4 KiB
    /// boundary.
    pub fn resolve(
        &self,
        unit: u32,
        loc: Loc,
        max: u64,
        write: bool,
    ) -> Result<(Arc<HostMemory>, u64, u64), ExecError> {
        let chunk = max.min(0x1000 - (loc.addr() & 0xfff));
        let pa = match loc {
            Loc::Virt(va) => self
                .gpu
                .lock_tlb()
                .translate(&self.gpu.bus, &self.vm, self.big_shift, va, write)
                .map_err(|fault| ExecError::Mmu { unit, fault })?,
            Loc::Phys(pa) => pa,
        };
        let (mem, off) = self.gpu.bus.resolve(pa, chunk).ok_or(ExecError::Mmu {
            unit,
            fault: Fault {
                reason: mmu::FAULT_BAD_PHYSICAL,
                va: loc.addr(),
                write,
            },
        })?;
        Ok((mem, off, chunk))
    }

    pub fn read(&self, unit: u32, loc: Loc, buf: &mut [u8]) -> Result<(), ExecError> {
        let mut done = 0u64;
        while (done as usize) < buf.len() {
            let (mem, off, n) =
                self.resolve(unit, loc.offset(done), buf.len() as u64 - done, false)?;
            mem.read(off, &mut buf[done as usize..(done + n) as usize]);
            done += n;
        }
        Ok(())
    }

    pub fn write(&self, unit: u32, loc: Loc, buf: &[u8]) -> Result<(), ExecError> {
        let mut done = 0u64;
        while (done as usize) < buf.len() {
            let (mem, off, n) =
                self.resolve(unit, loc.offset(done), buf.len() as u64 - done, true)?;
            mem.write(off, &buf[done as usize..(done + n) as usize]);
            done += n;
        }
        Ok(())
    }

    pub fn read32(&self, unit: u32, va: u64) -> Result<u32, ExecError> {
        let mut b = [0u8; 4];
        self.read(unit, Loc::Virt(va), &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Copies `len` bytes between two locations, page chunk by page chunk, on the engine
    /// `eng` holds (a reset of it stops the copy between chunks). Returns bytes copied
    /// before a fault in the error case too (as part of the error's effect).
    pub fn copy(
        &self,
        eng: &EngineGuard,
        unit: u32,
        dst: Loc,
        src: Loc,
        len: u64,
    ) -> Result<(), ExecError> {
        let mut done = 0u64;
        while done < len {
            eng.check()?;
            let (smem, soff, sn) = self.resolve(unit, src.offset(done), len - done, false)?;
            let (dmem, doff, dn) = self.resolve(unit, dst.offset(done), sn, true)?;
            dmem.copy_from(doff, &smem, soff, dn);
            done += dn;
        }
        Ok(())
    }

    /// Writes a semaphore/report: payload only, or {payload, 0, time_lo, time_hi}.
    pub fn release(
        &self,
        unit: u32,
        va: u64,
        payload: u32,
        four_words: bool,
    ) -> Result<(), ExecError> {
        Counters::inc(&self.gpu.counters.semaphore_releases);
        if four_words {
            let t = self.time_ns();
            let mut b = [0u8; report::SIZE_FOUR_WORDS as usize];
            b[report::PAYLOAD as usize..][..4].copy_from_slice(&payload.to_le_bytes());
            b[report::TIME_LO as usize..][..8].copy_from_slice(&t.to_le_bytes());
            self.write(unit, Loc::Virt(va), &b)
        } else {
            self.write(unit, Loc::Virt(va), &payload.to_le_bytes())
        }
    }

    /// Raises PFIFO's non-stall interrupt.
    pub fn nonstall(&self) {
        let mut r = self.gpu.lock_regs();
        self.gpu.raise_nonstall(&mut r);
    }

    /// Raises PGRAPH NOTIFY (the channel keeps running).
    pub fn pgraph_notify(&self) {
        let mut r = self.gpu.lock_regs();
        r.pgraph.intr |= pgraph::INTR_NOTIFY;
        r.pgraph.intr_inst = (self.inst.addr >> 12) as u32 & pgraph::INTR_CHANNEL_INST_MASK;
        self.gpu.update_irq(&mut r);
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Increasing,
    NonIncreasing,
    IncreaseOnce,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    method: u32,
    subch: u32,
    remaining: u32,
    mode: Mode,
}

struct Segment {
    va: u64,
    words: Vec<u32>,
    pos: usize,
    main_level: bool,
}

#[derive(Clone, Copy)]
struct Loaded {
    inst: PhysAddr,
    vm: VmContext,
    vm_gen: u64,
    userd: PhysAddr,
    gp_base: u64,
    gp_mask: u32,
    gp_get: u32,
    phys_copy: bool,
}

/// PFIFO's execution state of one channel (its scheduling state lives in `PfifoRegs`).
#[derive(Default)]
struct Channel {
    /// The CHAN-word generation and PFIFO epoch this state belongs to.
    gen: u64,
    epoch: u64,
    /// The kick generation `loaded` was restored at (a later kick switches the channel out).
    kick_gen: u64,
    loaded: Option<Loaded>,
    seg: Option<Segment>,
    pending: Option<Pending>,
    subch: [Option<Object>; 8],
    sem_addr_hi: u32,
    sem_addr_lo: u32,
    sem_payload: u32,
    mem_op_a: u32,
}

/// Every channel's execution state, shared by the PBDMA workers. A worker locks a channel
/// only after marking it running (under the register lock), so the locks never contend;
/// lock order is channel -> engine -> registers.
pub(crate) struct Channels(Vec<Mutex<Channel>>);

impl Channels {
    pub fn new() -> Channels {
        Channels(
            (0..pfifo::CHANNELS)
                .map(|_| Mutex::new(Channel::default()))
                .collect(),
        )
    }
}

enum SliceEnd {
    Idle,
    Stalled,
    Budget,
    Stopped(ExecError, u32, u32, u32),
}

/// What the scheduler copies out of the registers for one timeslice.
struct Pick {
    chid: u32,
    chan_inst: pfifo::ChanInst,
    chan_gen: u64,
    kick_gen: u64,
    epoch: u64,
    vm_gen: u64,
    big_shift: u32,
}

/// One PBDMA worker thread: picks a runnable channel, runs its timeslice, repeats.
pub(crate) fn run(gpu: Arc<Inner>, channels: Arc<Channels>) {
    loop {
        let pick = {
            let mut r = gpu.lock_regs();
            loop {
                if r.shutdown {
                    return;
                }
                let alarm_armed = gpu.poll_alarm(&mut r);
                if let Some(p) = choose(&mut r) {
                    break p;
                }
                // Idle, or only blocked channels: wait for news (poll acquires and the alarm).
                let p = &r.pfifo;
                let blocked = p.active & p.stalled & !p.faulted != 0;
                let wait = if blocked || alarm_armed {
                    Duration::from_micros(200)
                } else {
                    Duration::from_millis(100)
                };
                let (g, timeout) = gpu
                    .work
                    .wait_timeout(r, wait)
                    .unwrap_or_else(|e| e.into_inner());
                r = g;
                if timeout.timed_out() {
                    r.pfifo.stalled = 0;
                }
            }
        };
        let bit = 1u128 << pick.chid;
        let started = Instant::now();
        let mut guard = channels.0[pick.chid as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let ch = &mut *guard;
        if ch.gen != pick.chan_gen || ch.epoch != pick.epoch {
            *ch = Channel {
                gen: pick.chan_gen,
                epoch: pick.epoch,
                ..Channel::default()
            };
        }
        // A model bug must not take the GPU down with it: the channel is stopped instead
        // (the panic message has gone to stderr) and the other channels keep running.
        let slice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_slice(&gpu, ch, &pick, started + gpu.cfg.timeslice)
        }));
        let end = slice.unwrap_or_else(|_| {
            *ch = Channel {
                gen: pick.chan_gen,
                epoch: pick.epoch,
                ..Channel::default()
            };
            SliceEnd::Stopped(
                ExecError::Pbdma {
                    bits: pfifo::PBDMA_INTR_ILLEGAL_CMD,
                },
                0,
                0,
                0,
            )
        });
        let busy = started.elapsed().as_nanos() as u64;
        Counters::add(&gpu.counters.busy_ns_pfifo, busy);
        Counters::add(&gpu.chan_busy_ns[pick.chid as usize], busy);
        let mut r = gpu.lock_regs();
        r.pfifo.running &= !bit;
        if r.pfifo.chan_gen[pick.chid as usize] != pick.chan_gen || r.pfifo_epoch != pick.epoch {
            // Rebound or reset while running: the outcome belongs to the old binding.
            gpu.work.notify_all();
            continue;
        }
        if let SliceEnd::Stopped(ExecError::EngineReset, ..) = end {
            // The engine was reset under it: its context and the entry in flight are gone
            // (restored from RAMFC if it runs again); it waits for new work.
            *ch = Channel {
                gen: pick.chan_gen,
                epoch: pick.epoch,
                ..Channel::default()
            };
            r.pfifo.active &= !bit;
            r.pfifo.chan_status[pick.chid as usize] = pfifo::ChanState::default();
            gpu.work.notify_all();
            continue;
        }
        let p = &mut r.pfifo;
        let mut status = pfifo::ChanState::default().with_loaded(ch.loaded.is_some());
        if !matches!(end, SliceEnd::Stalled) {
            // Progress here may have released what blocked channels wait for.
            p.stalled = 0;
        }
        match end {
            SliceEnd::Idle => p.active &= !bit,
            SliceEnd::Stalled => {
                p.stalled |= bit;
                status = status.with_acquire_pending(true).with_pending(true);
            }
            SliceEnd::Budget => status = status.with_pending(true),
            SliceEnd::Stopped(..) => {
                p.faulted |= bit;
                p.active &= !bit;
            }
        }
        p.chan_status[pick.chid as usize] = status;
        if let SliceEnd::Stopped(err, method, subch, data) = end {
            let inst = ch
                .loaded
                .map(|l| l.inst)
                .or_else(|| chan_inst_pa(pick.chan_inst));
            report_error(&gpu, &mut r, pick.chid, inst, err, method, subch, data);
        }
        gpu.work.notify_all();
    }
}

fn chan_inst_pa(word: pfifo::ChanInst) -> Option<PhysAddr> {
    PhysAddr::from_target(word.target(), word.addr())
}

/// Next runnable channel with work, round-robin in runlist order; marks it running.
/// Doorbells of channels that are not running become "active" here (a running channel keeps
/// its doorbell pending so that going idle at the end of its slice cannot lose it).
fn choose(r: &mut Regs) -> Option<Pick> {
    if !r.pfifo_running() || r.pfifo.runlist.is_empty() {
        return None;
    }
    let (epoch, vm_gen, big_shift) = (r.pfifo_epoch, r.vm_gen, r.big_page_shift());
    let p = &mut r.pfifo;
    let taken = p.doorbells & !p.running;
    p.doorbells &= !taken;
    p.active |= taken;
    p.stalled &= !taken;
    let eligible = p.active & !p.stalled & !p.faulted & !p.running;
    let n = p.runlist.len();
    for i in 0..n {
        let idx = (p.next + i) % n;
        let chid = p.runlist[idx];
        let bit = 1u128 << chid;
        if eligible & bit == 0
            || !p.chan_inst[chid as usize].valid()
            || !p.chan_state[chid as usize].runnable()
        {
            continue;
        }
        p.next = (idx + 1) % n;
        p.running |= bit;
        let (chan_inst, chan_gen) = (p.chan_inst[chid as usize], p.chan_gen[chid as usize]);
        return Some(Pick {
            chid,
            chan_inst,
            chan_gen,
            kick_gen: p.kick_gen[chid as usize],
            epoch,
            vm_gen,
            big_shift,
        });
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn report_error(
    gpu: &Inner,
    r: &mut Regs,
    chid: u32,
    inst: Option<PhysAddr>,
    err: ExecError,
    method: u32,
    subch: u32,
    data: u32,
) {
    match err {
        // Handled by the caller (no interrupt).
        ExecError::EngineReset => {}
        ExecError::Mmu { unit, fault } => gpu.record_vm_fault(r, unit, inst, fault),
        ExecError::Pbdma { bits } => {
            Counters::inc(&gpu.counters.channel_errors);
            let pb = &mut r.pfifo.pbdma[0];
            pb.intr |= bits;
            pb.method =
                (method & pfifo::PBDMA_METHOD_ADDR_MASK) | subch << pfifo::PBDMA_METHOD_SUBCH_SHIFT;
            pb.data = data;
            pb.chid = chid;
        }
        ExecError::Pgraph { bit, code } => {
            Counters::inc(&gpu.counters.channel_errors);
            let g = &mut r.pgraph;
            g.intr |= bit;
            g.data_error = code;
            g.trapped_addr = method | subch << 16;
            g.trapped_data = data;
            g.intr_inst =
                inst.map_or(0, |p| (p.addr >> 12) as u32) & pgraph::INTR_CHANNEL_INST_MASK;
        }
    }
    gpu.update_irq(r);
}

const PBDMA_UNIT: u32 = pfifo::FAULT_UNIT_PFIFO;

fn load_channel(gpu: &Inner, chan_inst: pfifo::ChanInst) -> Result<Loaded, ExecError> {
    let bad = |bits| ExecError::Pbdma { bits };
    let inst = chan_inst_pa(chan_inst).ok_or(bad(pfifo::PBDMA_INTR_SIG_MISMATCH))?;
    let rd = |off: u32| {
        gpu.bus
            .read32(inst.offset(off as u64))
            .ok_or(bad(pfifo::PBDMA_INTR_SIG_MISMATCH))
    };
    if rd(ramfc::SIGNATURE)? & ramfc::SIGNATURE_MASK != ramfc::SIGNATURE_VALUE {
        return Err(bad(pfifo::PBDMA_INTR_SIG_MISMATCH));
    }
    let ud_lo = rd(ramfc::USERD_LO)?;
    let ud_hi = rd(ramfc::USERD_HI)?;
    let userd = PhysAddr::from_target(
        ud_lo & ramfc::USERD_TARGET_MASK,
        (ud_lo & ramfc::USERD_ADDR_MASK) as u64 | ((ud_hi & 0xff) as u64) << 32,
    )
    .ok_or(bad(pfifo::PBDMA_INTR_SIG_MISMATCH))?;
    let gp_lo = rd(ramfc::GP_BASE)?;
    let gp_hi = rd(ramfc::GP_BASE_HI)?;
    let order = (gp_hi >> ramfc::GP_BASE_HI_ORDER_SHIFT) & ramfc::GP_BASE_HI_ORDER_MASK;
    if order > ramfc::GP_ORDER_MAX || gp_lo & 7 != 0 {
        return Err(bad(pfifo::PBDMA_INTR_IB_ENTRY_INVALID));
    }
    let vm = VmContext::load(&gpu.bus, inst).ok_or(ExecError::Mmu {
        unit: PBDMA_UNIT,
        fault: Fault {
            reason: mmu::FAULT_PT_NOT_PRESENT,
            va: 0,
            write: false,
        },
    })?;
    Ok(Loaded {
        inst,
        vm,
        vm_gen: 0,
        userd,
        gp_base: gp_lo as u64 | ((gp_hi & ramfc::GP_BASE_HI_ADDR_MASK) as u64) << 32,
        gp_mask: (1u32 << order) - 1,
        gp_get: rd(ramfc::GP_GET)? & ((1u32 << order) - 1),
        phys_copy: rd(ramfc::HCE_CTRL)? & ramfc::HCE_CTRL_PRIV_MODE != 0,
    })
}

fn run_slice(gpu: &Inner, ch: &mut Channel, pick: &Pick, deadline: Instant) -> SliceEnd {
    let stop = |e| SliceEnd::Stopped(e, 0, 0, 0);
    // Kicked since it was restored, and between two GPFIFO entries: switched out, so it is
    // restored from RAMFC below.
    if ch.kick_gen != pick.kick_gen && ch.seg.is_none() && ch.pending.is_none() {
        ch.loaded = None;
    }
    if ch.loaded.is_none() {
        match load_channel(gpu, pick.chan_inst) {
            Ok(mut l) => {
                ch.kick_gen = pick.kick_gen;
                l.vm_gen = pick.vm_gen;
                gpu.bus
                    .write32(l.userd.offset(userd::GP_GET as u64), l.gp_get);
                ch.loaded = Some(l);
            }
            Err(e) => return stop(e),
        }
    }
    let Some(mut l) = ch.loaded else {
        return SliceEnd::Idle;
    };
    if l.vm_gen != pick.vm_gen {
        // A TLB flush happened since the last slice: re-read the VM context.
        match VmContext::load(&gpu.bus, l.inst) {
            Some(vm) => l.vm = vm,
            None => {
                return stop(ExecError::Mmu {
                    unit: PBDMA_UNIT,
                    fault: Fault {
                        reason: mmu::FAULT_PT_NOT_PRESENT,
                        va: 0,
                        write: false,
                    },
                })
            }
        }
        l.vm_gen = pick.vm_gen;
        ch.loaded = Some(l);
    }
    let ctx = ChanCtx {
        gpu,
        chid: pick.chid,
        inst: l.inst,
        vm: l.vm,
        big_shift: pick.big_shift,
        phys_copy: l.phys_copy,
    };
    let mut budget_check = 0u32;
    loop {
        if ch.seg.is_none() {
            let Some(put) = gpu.bus.read32(l.userd.offset(userd::GP_PUT as u64)) else {
                return stop(ExecError::Mmu {
                    unit: PBDMA_UNIT,
                    fault: Fault {
                        reason: mmu::FAULT_BAD_PHYSICAL,
                        va: l.userd.addr,
                        write: false,
                    },
                });
            };
            let l = ch.loaded.as_mut().expect("loaded above");
            if l.gp_get == put & l.gp_mask {
                return SliceEnd::Idle;
            }
            let mut e = [0u8; 8];
            if let Err(err) = ctx.read(
                PBDMA_UNIT,
                Loc::Virt(l.gp_base + l.gp_get as u64 * gpfifo::ENTRY_SIZE),
                &mut e,
            ) {
                return stop(err);
            }
            let w0 = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let w1 = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            let len = (w1 >> gpfifo::W1_LENGTH_SHIFT) & gpfifo::W1_LENGTH_MASK;
            if len == 0 {
                if w1 & gpfifo::W1_ADDR_HI_MASK != gpfifo::CONTROL_OPCODE_NOP {
                    return stop(ExecError::Pbdma {
                        bits: pfifo::PBDMA_INTR_IB_ENTRY_INVALID,
                    });
                }
                finish_entry(gpu, l, None);
                continue;
            }
            let va =
                (w0 & gpfifo::W0_ADDR_MASK) as u64 | ((w1 & gpfifo::W1_ADDR_HI_MASK) as u64) << 32;
            let mut bytes = vec![0u8; len as usize * 4];
            if let Err(err) = ctx.read(PBDMA_UNIT, Loc::Virt(va), &mut bytes) {
                return stop(err);
            }
            let words = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            ch.seg = Some(Segment {
                va,
                words,
                pos: 0,
                main_level: w1 & gpfifo::W1_LEVEL_SUBROUTINE == 0,
            });
        }
        // Execute the segment's words.
        loop {
            let seg = ch.seg.as_ref().expect("segment present");
            if seg.pos >= seg.words.len() {
                break;
            }
            budget_check += 1;
            if budget_check.is_multiple_of(64) && Instant::now() >= deadline {
                return SliceEnd::Budget;
            }
            match step(ch, &ctx) {
                Ok(Flow::Done) => {}
                Ok(Flow::Yield) => {
                    if ch.seg.as_ref().is_some_and(|s| s.pos < s.words.len()) {
                        return SliceEnd::Budget;
                    }
                }
                Ok(Flow::Stall) => return SliceEnd::Stalled,
                Err((e, m, s, d)) => return SliceEnd::Stopped(e, m, s, d),
            }
        }
        let seg = ch.seg.take().expect("segment present");
        let l = ch.loaded.as_mut().expect("loaded");
        finish_entry(gpu, l, Some(&seg));
        if Instant::now() >= deadline {
            return SliceEnd::Budget;
        }
    }
}

/// Advances GP_GET past a completed entry and writes the progress words back to USERD.
fn finish_entry(gpu: &Inner, l: &mut Loaded, seg: Option<&Segment>) {
    Counters::inc(&gpu.counters.gp_entries);
    l.gp_get = (l.gp_get + 1) & l.gp_mask;
    if let Some(seg) = seg {
        let end = seg.va + seg.words.len() as u64 * 4;
        gpu.bus
            .write32(l.userd.offset(userd::GET as u64), end as u32);
        gpu.bus
            .write32(l.userd.offset(userd::GET_HI as u64), (end >> 32) as u32);
        if seg.main_level {
            gpu.bus
                .write32(l.userd.offset(userd::TOP_LEVEL_GET as u64), end as u32);
            gpu.bus.write32(
                l.userd.offset(userd::TOP_LEVEL_GET_HI as u64),
                (end >> 32) as u32 | userd::TOP_LEVEL_GET_HI_VALID,
            );
        }
    }
    gpu.bus
        .write32(l.userd.offset(userd::GP_GET as u64), l.gp_get);
    // The context copy: a rebind of the same instance block resumes from here.
    gpu.bus
        .write32(l.inst.offset(ramfc::GP_GET as u64), l.gp_get);
}

type StepError = (ExecError, u32, u32, u32);

/// Consumes one pushbuffer word (a header or one method's data).
fn step(ch: &mut Channel, ctx: &ChanCtx) -> Result<Flow, StepError> {
    let seg = ch.seg.as_mut().expect("segment present");
    let word = seg.words[seg.pos];
    if let Some(p) = ch.pending {
        let flow = method(ch, ctx, p.subch, p.method, word)?;
        if flow == Flow::Stall {
            return Ok(flow);
        }
        let seg = ch.seg.as_mut().expect("segment present");
        seg.pos += 1;
        let mut p = p;
        p.remaining -= 1;
        match p.mode {
            Mode::Increasing => p.method += 4,
            Mode::NonIncreasing => {}
            Mode::IncreaseOnce => {
                p.method += 4;
                p.mode = Mode::NonIncreasing;
            }
        }
        ch.pending = (p.remaining > 0).then_some(p);
        return Ok(flow);
    }
    let opcode = (word >> pushbuf::OPCODE_SHIFT) & pushbuf::OPCODE_MASK;
    let subch = (word >> pushbuf::SUBCH_SHIFT) & pushbuf::SUBCH_MASK;
    let mthd = (word & pushbuf::METHOD_MASK) << 2;
    let count = (word >> pushbuf::COUNT_SHIFT) & pushbuf::COUNT_MASK;
    let tert = (word >> pushbuf::TERT_SHIFT) & pushbuf::TERT_MASK;
    let old_count = (word >> pushbuf::OLD_COUNT_SHIFT) & pushbuf::OLD_COUNT_MASK;
    let old_mthd = word & pushbuf::OLD_METHOD_MASK;
    let illegal = Err((
        ExecError::Pbdma {
            bits: pfifo::PBDMA_INTR_ILLEGAL_CMD,
        },
        0,
        0,
        word,
    ));
    let start = |mode, method, count| {
        (count > 0).then_some(Pending {
            method,
            subch,
            remaining: count,
            mode,
        })
    };
    let pending = match opcode {
        pushbuf::OP_GRP0 if word == 0 => None,
        pushbuf::OP_GRP0 if tert == 0 => start(Mode::Increasing, old_mthd, old_count),
        pushbuf::OP_GRP0 => None, // subdevice-mask operations: one subdevice, nothing to do
        pushbuf::OP_GRP2 if tert == 0 => start(Mode::NonIncreasing, old_mthd, old_count),
        pushbuf::OP_INCREASING => start(Mode::Increasing, mthd, count),
        pushbuf::OP_NON_INCREASING => start(Mode::NonIncreasing, mthd, count),
        pushbuf::OP_INCREASE_ONCE => start(Mode::IncreaseOnce, mthd, count),
        pushbuf::OP_IMMEDIATE => {
            let flow = method(ch, ctx, subch, mthd, count)?;
            if flow != Flow::Stall {
                ch.seg.as_mut().expect("segment").pos += 1;
            }
            return Ok(flow);
        }
        pushbuf::OP_END_PB_SEGMENT => {
            let seg = ch.seg.as_mut().expect("segment");
            seg.pos = seg.words.len();
            return Ok(Flow::Done);
        }
        _ => return illegal,
    };
    ch.pending = pending;
    ch.seg.as_mut().expect("segment").pos += 1;
    Ok(Flow::Done)
}

fn method(
    ch: &mut Channel,
    ctx: &ChanCtx,
    subch: u32,
    mthd: u32,
    data: u32,
) -> Result<Flow, StepError> {
    Counters::inc(&ctx.gpu.counters.methods);
    let wrap = |e: ExecError| (e, mthd, subch, data);
    if mthd < pushbuf::HOST_METHOD_END {
        return host_method(ch, ctx, subch, mthd, data).map_err(wrap);
    }
    match ch.subch[subch as usize].as_mut() {
        None => Err(wrap(ExecError::Pbdma {
            bits: pfifo::PBDMA_INTR_EMPTY_SUBC,
        })),
        Some(obj) => obj.method(ctx, mthd, data).map_err(wrap),
    }
}

fn host_method(
    ch: &mut Channel,
    ctx: &ChanCtx,
    subch: u32,
    mthd: u32,
    data: u32,
) -> Result<Flow, ExecError> {
    let illegal = ExecError::Pbdma {
        bits: pfifo::PBDMA_INTR_ILLEGAL_MTHD,
    };
    match mthd {
        host::SET_OBJECT => {
            let cls = data & class::OBJECT_CLASS_MASK;
            let engine = (data >> class::OBJECT_ENGINE_SHIFT) & class::OBJECT_ENGINE_MASK;
            let obj = Object::new(cls, engine).ok_or(ExecError::Pgraph {
                bit: pgraph::INTR_ILLEGAL_CLASS,
                code: 0,
            })?;
            ch.subch[subch as usize] = Some(obj);
        }
        host::NOP | host::FB_FLUSH | host::CRC_CHECK => {}
        host::SEMAPHORE_A => ch.sem_addr_hi = data & host::SEMAPHORE_A_ADDR_HI_MASK,
        host::SEMAPHORE_B => ch.sem_addr_lo = data,
        host::SEMAPHORE_C => ch.sem_payload = data,
        host::SEMAPHORE_D => return semaphore(ch, ctx, data),
        host::NON_STALL_INTERRUPT => ctx.nonstall(),
        host::MEM_OP_A => ch.mem_op_a = data,
        host::MEM_OP_B => {
            let op = (data >> host::MEM_OP_B_OP_SHIFT) & host::MEM_OP_B_OP_MASK;
            if op == host::MEM_OP_MMU_TLB_INVALIDATE {
                let a = ch.mem_op_a;
                let pdb = PhysAddr::from_target(
                    a >> host::MEM_OP_A_TLB_TARGET_SHIFT,
                    (((a >> host::MEM_OP_A_TLB_PDB_SHIFT) & host::MEM_OP_A_TLB_PDB_MASK) as u64)
                        << 12,
                );
                let all = data & host::MEM_OP_B_TLB_ALL_PDB != 0;
                let mut r = ctx.gpu.lock_regs();
                ctx.gpu.tlb_invalidate(&mut r, if all { None } else { pdb });
            }
        }
        host::SET_REFERENCE => {
            let l = ch.loaded.as_ref().expect("running channel is loaded");
            ctx.gpu.bus.write32(l.userd.offset(userd::REF as u64), data);
        }
        host::YIELD => return Ok(Flow::Yield),
        _ => return Err(illegal),
    }
    Ok(Flow::Done)
}

fn semaphore(ch: &mut Channel, ctx: &ChanCtx, data: u32) -> Result<Flow, ExecError> {
    if ch.sem_addr_lo & 3 != 0 {
        return Err(ExecError::Pbdma {
            bits: pfifo::PBDMA_INTR_ILLEGAL_SEM,
        });
    }
    let va =
        (ch.sem_addr_hi as u64) << 32 | (ch.sem_addr_lo & host::SEMAPHORE_B_ADDR_LO_MASK) as u64;
    let payload = ch.sem_payload;
    let unit = PBDMA_UNIT;
    match data & host::SEMAPHORE_D_OP_MASK {
        host::SEM_OP_RELEASE => {
            ctx.release(
                unit,
                va,
                payload,
                data & host::SEMAPHORE_D_RELEASE_SIZE_4 == 0,
            )?;
            Ok(Flow::Done)
        }
        op @ (host::SEM_OP_ACQUIRE | host::SEM_OP_ACQ_GEQ | host::SEM_OP_ACQ_AND) => {
            let cur = ctx.read32(unit, va)?;
            let met = match op {
                host::SEM_OP_ACQUIRE => cur == payload,
                host::SEM_OP_ACQ_GEQ => cur.wrapping_sub(payload) as i32 >= 0,
                _ => cur & payload != 0,
            };
            if met {
                Counters::inc(&ctx.gpu.counters.semaphore_acquires);
                Ok(Flow::Done)
            } else {
                Ok(Flow::Stall)
            }
        }
        _ => Err(ExecError::Pbdma {
            bits: pfifo::PBDMA_INTR_ILLEGAL_SEM,
        }),
    }
}
