// SPDX-License-Identifier: GPL-2.0
//! The host GPU as the mediator drives it, pure logic over the host's BARs: host VRAM access
//! (BAR3 identity map of the reserved region, the PRAMIN window elsewhere), the host channel
//! controls (bind, runnable, kick, doorbell), the merged host runlist, host TLB flushes and
//! the top half of the host interrupt handler.
//!
//! The kernel implements [`HostBars`] over the real BARs of the GPU it owns; the host tests
//! over the in-process GF100 model. Everything above that (which register, in which order,
//! how long to wait) is here, once.

use core::cell::Cell;

use crate::channel::{self, ChannelSet, RunlistPart};
use crate::gf100::{pfifo, pgraph, pmc, target, userd};
use crate::host_init::{self, layout, InitError, Mmio};
use crate::host_channel::Waiter;
use crate::memory::Vram;
use crate::partition::{Slice, UNITS};

/// The host GPU's apertures: BAR0 registers ([`Mmio`]), BAR1 (the host USERD area, where
/// doorbells are rung) and BAR3 (identity map of the host's reserved VRAM).
pub trait HostBars: Mmio {
    /// Writes host BAR1 offset `off`.
    fn bar1_write32(&self, off: u64, v: u32);
    /// Reads host BAR3 offset `off` (= host VRAM address below the mapped size).
    fn bar3_read32(&self, off: u64) -> u32;
    /// Writes host BAR3 offset `off`.
    fn bar3_write32(&self, off: u64, v: u32);
    /// Runs `f` with the PRAMIN window's position, holding whatever serialises the users of
    /// the one window of the GPU (moving it and accessing through it must not interleave).
    fn with_pramin<R>(&self, f: impl FnOnce(&Cell<Option<u32>>) -> R) -> R;
}

/// VRAM the host keeps for its own structures (instance blocks, BAR page tables, USERD,
/// shadow page tables and instance blocks, runlists); the rest is cut into vGPU units.
pub const HOST_VRAM_RESERVED: u64 = 64 << 20;
/// Channels `0..GUEST_CHANNELS` go to vGPUs; the rest stay with the host.
pub const GUEST_CHANNELS: u32 = 120;

/// Why a host operation did not complete. The caller reports it (it names the register
/// that did not settle); the GPU state it leaves is the one a retry starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// A kick (preempt) stayed pending.
    KickTimeout,
    /// A runlist update stayed pending.
    RunlistTimeout,
    /// A TLB flush did not complete.
    TlbTimeout,
    /// A channel id below `GUEST_CHANNELS` (a vGPU's) given as one of the host's own.
    NotHostChannel,
}

/// How long the host waits for a register to settle (a kick, a runlist update, a TLB flush)
/// before it reports a timeout: nouveau allows a PFIFO preempt or runlist update 2 s.
// TIMEOUT: HOST_POLL_TIMEOUT_NS, then the operation is reported failed (never ignored).
pub const HOST_POLL_TIMEOUT_NS: u64 = 2_000_000_000;

/// Reads `off` until `done(value)`, pausing between reads, for at most
/// [`HOST_POLL_TIMEOUT_NS`] by `w`'s clock; whether it got there.
pub fn poll(m: &impl Mmio, w: &impl Waiter, off: u32, done: impl Fn(u32) -> bool) -> bool {
    let start = w.now_ns();
    loop {
        if done(m.rd(off)) {
            return true;
        }
        if w.now_ns().saturating_sub(start) > HOST_POLL_TIMEOUT_NS {
            // One last look: the pause may have outlasted the deadline.
            return done(m.rd(off));
        }
        w.pause();
    }
}

/// Host VRAM through the host's apertures.
pub struct HostVram<'a, B: HostBars> {
    bars: &'a B,
    bar3_mapped: u64,
}

impl<'a, B: HostBars> HostVram<'a, B> {
    /// Host VRAM of a GPU whose BAR3 maps `[0, bar3_mapped)` one to one.
    pub fn new(bars: &'a B, bar3_mapped: u64) -> Self {
        Self { bars, bar3_mapped }
    }

    fn in_bar3(&self, pa: u64) -> bool {
        pa.checked_add(4).is_some_and(|end| end <= self.bar3_mapped)
    }
}

impl<B: HostBars> Vram for HostVram<'_, B> {
    fn read32(&self, pa: u64) -> u32 {
        if self.in_bar3(pa) {
            return self.bars.bar3_read32(pa);
        }
        self.bars.with_pramin(|base| {
            let off = host_init::pramin_window(self.bars, base, pa);
            self.bars.rd(off)
        })
    }

    fn write32(&mut self, pa: u64, v: u32) {
        if self.in_bar3(pa) {
            return self.bars.bar3_write32(pa, v);
        }
        self.bars.with_pramin(|base| {
            let off = host_init::pramin_window(self.bars, base, pa);
            self.bars.wr(off, v)
        })
    }
}

/// Points host channel `host_chid` at the instance block at host VRAM `inst` (0: unbind).
pub fn bind_channel(m: &impl Mmio, host_chid: u32, inst: Option<u64>) {
    if inst.is_none() {
        m.wr(pfifo::ChanState::offset(host_chid), 0);
    }
    m.wr(pfifo::ChanInst::offset(host_chid), inst.map_or(pfifo::ChanInst::default(), pfifo::ChanInst::bound).raw());
}

/// Sets the RUNNABLE state of host channel `host_chid`.
pub fn set_runnable(m: &impl Mmio, host_chid: u32, runnable: bool) {
    m.wr(pfifo::ChanState::offset(host_chid), pfifo::ChanState::default().with_runnable(runnable).raw());
}

/// Whether PFIFO holds unfinished work of host channel `host_chid`: CHAN_TABLE STATE
/// PENDING (bit 28) or ACQUIRE_PENDING (bit 4), rnndb `fifo/gf100_pfifo.xml` (the words the
/// dispatcher's completion test reads too).
pub fn chan_busy(m: &impl Mmio, host_chid: u32) -> bool {
    let state = pfifo::ChanState::from_raw(m.rd(pfifo::ChanState::offset(host_chid)));
    state.pending() || state.acquire_pending()
}

/// Preempts host channel `host_chid` and waits (bounded) until PFIFO has done so. The
/// caller holds the GPU's [`KickLock`].
pub fn kick(m: &impl Mmio, w: &impl Waiter, host_chid: u32) -> Result<(), HostError> {
    m.wr(pfifo::KICK, host_chid);
    poll(m, w, pfifo::KICK, |v| v & pfifo::KICK_PENDING == 0).then_some(()).ok_or(HostError::KickTimeout)
}

/// How [`evict`] got a channel off the engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evicted {
    /// The kick completed: no engine works for the channel any more.
    Preempted,
    /// An engine (PFIFO engine id, `pfifo::ENGINE_*`) stayed busy on the channel and was reset;
    /// the work in flight and the channel's context on it are gone.
    EngineReset(u32),
}

/// Serialises the users of a GPU's one KICK register and its engine resets: a kick is a
/// write of the channel id and a poll of the same register, so a second kick written
/// meanwhile would make the first look complete (nouveau holds its runlist mutex across the
/// preempt and its wait); PMC_ENABLE is read-modify-written by a reset. Every host kick
/// ([`kick`] callers, [`evict`]) runs under it.
pub trait KickLock {
    /// Runs `f` holding the GPU's kick lock.
    fn hold<R>(&self, f: impl FnOnce() -> R) -> R;
}

/// The engine stuck on host channel `host_chid`, if ENG_STATE names one, with its
/// PMC_ENABLE bit.
pub fn engine_on(m: &impl Mmio, host_chid: u32) -> Option<(u32, u32)> {
    pfifo::RESETTABLE_ENGINES.into_iter().find(|&(e, _)| {
        let s = pfifo::EngState::from_raw(m.rd(pfifo::EngState::offset(e)));
        s.busy() && s.chid() == host_chid
    })
}

/// Resets engine `engine` (PMC_ENABLE bit `bit`) the way nouveau's GF100 recovery does
/// (NVKM `engine/fifo/gf100.c` `gf100_fifo_recover_work`): the engine frozen in ENG_FREEZE,
/// held in reset and brought back through PMC_ENABLE, its fault bit cleared, unfrozen. The
/// reset clears the engine's registers; the host's own settings there (PGRAPH's interrupt
/// enables) are written back. Other channels' contexts live in their own memory and are not
/// touched.
pub fn reset_engine(m: &impl Mmio, engine: u32, bit: u32) {
    let mask = 1 << engine;
    let pgraph_intr_en = (bit == pmc::ENABLE_PGRAPH).then(|| m.rd(pgraph::INTR_EN));
    m.wr(pfifo::ENG_FREEZE, m.rd(pfifo::ENG_FREEZE) | mask);
    let enabled = m.rd(pmc::ENABLE);
    m.wr(pmc::ENABLE, enabled & !bit);
    m.wr(pmc::ENABLE, enabled | bit);
    if let Some(v) = pgraph_intr_en {
        m.wr(pgraph::INTR, u32::MAX);
        m.wr(pgraph::INTR_EN, v);
    }
    m.wr(pfifo::ENG_FAULT, mask);
    m.wr(pfifo::ENG_FREEZE, m.rd(pfifo::ENG_FREEZE) & !mask);
}

/// Stops host channel `host_chid` so that no engine works for it any more, whatever its
/// work: not runnable, kicked (bounded by [`HOST_POLL_TIMEOUT_NS`]); a kick that does not
/// complete because an engine stays busy on the channel (endless work: the engine never
/// reaches a point where PFIFO can switch it out, nouveau's CTXSW_TIMEOUT) gets that engine
/// reset ([`reset_engine`]), after which the kick must complete (bounded again). Every
/// teardown path calls this before the channel's shadows are freed or its pages unpinned.
pub fn evict(m: &impl Mmio, w: &impl Waiter, lock: &impl KickLock, host_chid: u32) -> Result<Evicted, HostError> {
    set_runnable(m, host_chid, false);
    lock.hold(|| {
        m.wr(pfifo::KICK, host_chid);
        if kick_done(m, w) {
            return Ok(Evicted::Preempted);
        }
        let reset = engine_on(m, host_chid).map(|(engine, bit)| {
            reset_engine(m, engine, bit);
            engine
        });
        // Stuck elsewhere (or the engine let go meanwhile): either way, one more bounded wait.
        match (kick_done(m, w), reset) {
            (true, Some(engine)) => Ok(Evicted::EngineReset(engine)),
            (true, None) => Ok(Evicted::Preempted),
            (false, _) => Err(HostError::KickTimeout),
        }
    })
}

/// What each engine the watchdog watches is doing now: the host channel ENG_STATE names and
/// its GP_GET, read from that host channel's host-owned USERD page (`mediator::host_userd`,
/// which every shadow RAMFC names), where PFIFO writes it back after every GPFIFO entry; no
/// pointer a guest wrote is followed (`None`: idle).
pub fn engines_seen<B: HostBars>(bars: &B, bar3_mapped: u64) -> [Option<crate::watchdog::Seen>; crate::watchdog::ENGINES] {
    let vram = HostVram::new(bars, bar3_mapped);
    let mut out = [None; crate::watchdog::ENGINES];
    for (o, &(engine, _)) in out.iter_mut().zip(pfifo::RESETTABLE_ENGINES.iter()) {
        let s = pfifo::EngState::from_raw(bars.rd(pfifo::EngState::offset(engine)));
        if !s.busy() {
            continue;
        }
        let progress = vram.read32(crate::mediator::host_userd(s.chid()) + u64::from(userd::GP_GET));
        *o = Some(crate::watchdog::Seen { host_chid: s.chid(), progress });
    }
    out
}

/// Waits (bounded) until the last kick is no longer pending.
fn kick_done(m: &impl Mmio, w: &impl Waiter) -> bool {
    poll(m, w, pfifo::KICK, |v| v & pfifo::KICK_PENDING == 0)
}

/// Rings host channel `host_chid`'s doorbell with GP_PUT `put`: a write of its GP_PUT word
/// in the host USERD poll area of BAR1.
pub fn ring_doorbell(b: &impl HostBars, host_chid: u32, put: u32) {
    let off = layout::USERD_BAR1_VA + u64::from(host_chid) * pfifo::USERD_POLL_STRIDE + u64::from(userd::GP_PUT);
    b.bar1_write32(off, put);
}

/// Flushes the host TLB for the shadow page directory at `pd`: host VRAM, or a bus address
/// if `sysmem`.
pub fn tlb_flush(m: &impl Mmio, w: &impl Waiter, pd: u64, sysmem: bool) -> Result<(), HostError> {
    host_init::tlb_flush_with(m, Some((pd, sysmem)), |off, done| poll(m, w, off, done)).map_err(|_: InitError| HostError::TlbTimeout)
}

/// The one host runlist all vGPUs share: each vGPU's part (indexed by its first unit) and the
/// host's own channels (the scrubber's, `host_channel.rs`), double-buffered in host VRAM like
/// nouveau does, so the GPU never reads a list being rewritten.
pub struct HostRunlist {
    parts: [Option<RunlistPart>; UNITS as usize],
    /// Host channel ids (`GUEST_CHANNELS..`) listed in every commit, whatever the vGPUs do: a
    /// channel the host needs (to scrub a partition) must run even when no vGPU has work.
    host: ChannelSet,
    bufs: [u64; 2],
    next: usize,
}

/// Runlist entries one buffer holds (every channel once).
pub const RUNLIST_CAPACITY: u32 = pfifo::CHANNELS;

/// Bytes of one runlist buffer.
pub const RUNLIST_BYTES: u64 = RUNLIST_CAPACITY as u64 * pfifo::RUNLIST_ENTRY_SIZE;

impl HostRunlist {
    /// An empty runlist using the two buffers of [`RUNLIST_BYTES`] at host VRAM `bufs`.
    pub fn new(bufs: [u64; 2]) -> Self {
        Self { parts: [None; UNITS as usize], host: ChannelSet::default(), bufs, next: 0 }
    }

    /// Whether host channel `host_chid` is in the list (a vGPU's part or the host's own).
    pub fn lists(&self, host_chid: u32) -> bool {
        self.host.contains(host_chid)
            || self.parts.iter().flatten().any(|p| p.slice.channel_from_host(host_chid).is_some_and(|c| p.channels.contains(c)))
    }

    /// Replaces one vGPU's part and submits the merged list; waits (bounded) for PFIFO to
    /// take it.
    pub fn commit<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, bar3_mapped: u64, part: RunlistPart) -> Result<u32, HostError> {
        if let Some(slot) = self.parts.get_mut(part.slice.first_unit as usize) {
            *slot = (!part.channels.is_empty()).then_some(part);
        }
        self.submit(bars, w, bar3_mapped)
    }

    /// Adds (`on`) or removes host channel `host_chid` (one the host keeps, not a vGPU's) and
    /// submits the merged list.
    pub fn set_host_channel<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, bar3_mapped: u64, host_chid: u32, on: bool) -> Result<u32, HostError> {
        if !(GUEST_CHANNELS..pfifo::CHANNELS).contains(&host_chid) {
            return Err(HostError::NotHostChannel);
        }
        if on {
            self.host.insert(host_chid);
        } else {
            self.host.remove(host_chid);
        }
        self.submit(bars, w, bar3_mapped)
    }

    /// Writes the vGPUs' parts, then the host's channels, into the next buffer and submits it.
    fn submit<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, bar3_mapped: u64) -> Result<u32, HostError> {
        let none = Slice { first_unit: 0, units: 0, vram_base: 0, vram_size: 0, first_channel: 0, channels: 0 };
        let mut merged = [RunlistPart { slice: none, channels: channel::ChannelSet::default() }; UNITS as usize];
        let mut n_parts = 0;
        for p in self.parts.iter().flatten() {
            if let Some(m) = merged.get_mut(n_parts) {
                *m = *p;
                n_parts += 1;
            }
        }
        let buf = self.bufs[self.next];
        self.next ^= 1;
        let mut vram = HostVram::new(bars, bar3_mapped);
        let mut entries = channel::write_host_runlist(&mut vram, buf, RUNLIST_CAPACITY, &merged[..n_parts]);
        // Host channel ids are host ids already (no slice to translate them through), and
        // disjoint from every vGPU's (which lie below GUEST_CHANNELS).
        for chid in self.host.iter() {
            if entries >= RUNLIST_CAPACITY {
                break;
            }
            let at = buf + u64::from(entries) * pfifo::RUNLIST_ENTRY_SIZE;
            vram.write32(at, chid);
            vram.write32(at + 4, pfifo::RUNLIST_ENTRY_WORD1);
            entries += 1;
        }
        let base = pfifo::RunlistBase::default().with_addr(buf).with_target(target::VRAM);
        bars.wr(pfifo::RunlistBase::OFFSET, base.raw());
        bars.wr(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(entries).raw());
        if !poll(bars, w, pfifo::RunlistStatus::OFFSET, |v| !pfifo::RunlistStatus::from_raw(v).pending()) {
            return Err(HostError::RunlistTimeout);
        }
        Ok(entries)
    }
}

/// Fault units whose records the host reads (the PFIFO VM_FAULT unit bits).
pub const FAULT_UNITS: usize = pfifo::VM_FAULT_UNITS_MAX as usize;

/// One MMU fault as the host read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostFault {
    /// Host VRAM address of the faulting channel's (shadow) instance block.
    pub inst: u64,
    /// Faulting virtual address.
    pub va: u64,
    /// The INFO word (reason, access, client).
    pub info: u32,
    /// The host channel bound to `inst` when the record was read (`None`: none was, e.g. it
    /// was unbound since). Events are matched to a channel by it and `inst` together, so a
    /// record read after its channel went cannot be blamed on the next user of the block.
    pub host_chid: Option<u32>,
}

/// A PBDMA error as the host read it (the PBDMA's method slot and loaded channel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PbdmaError {
    /// PBDMA INTR bits.
    pub intr: u32,
    /// The method and data that caused it.
    pub method: u32,
    pub data: u32,
    /// Host channel loaded on the PBDMA.
    pub host_chid: u32,
}

/// A PGRAPH error as the host read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgraphError {
    /// PGRAPH INTR bits (errors only, not NOTIFY).
    pub intr: u32,
    pub data_error: u32,
    /// TRAPPED_ADDR / TRAPPED_DATA.
    pub trapped: [u32; 2],
    /// Host VRAM address of the (shadow) instance block of the channel that caused it.
    pub inst: u64,
    /// The host channel bound to `inst` when it was read (as for [`HostFault::host_chid`]).
    pub host_chid: Option<u32>,
}

/// PBDMAs whose errors the host reads.
pub const PBDMAS: usize = pfifo::PBDMA_COUNT as usize;

/// What one run of the interrupt handler found for the vGPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostEvents {
    /// A non-stall (fence) interrupt.
    pub nonstall: bool,
    /// MMU faults by unit.
    pub faults: [Option<HostFault>; FAULT_UNITS],
    /// PBDMA errors by PBDMA.
    pub pbdma: [Option<PbdmaError>; PBDMAS],
    /// A PGRAPH error.
    pub pgraph: Option<PgraphError>,
}

impl HostEvents {
    /// Whether there is anything to deliver.
    pub fn any(&self) -> bool {
        self.nonstall || self.faults.iter().any(Option::is_some) || self.pbdma.iter().any(Option::is_some) || self.pgraph.is_some()
    }
}

/// How often the host looks for the vGPU a non-stall interrupt belongs to (GP_GET progress,
/// `Mediator::claim_nonstall`) before it gives the interrupt to every vGPU with channels on
/// the runlist, and how long it pauses between looks (the PBDMA may not have written GP_GET
/// back yet when the interrupt is taken). A guest then at worst gets a spurious non-stall
/// interrupt, never a lost one.
pub const NONSTALL_CLAIM_TRIES: u32 = 4;
/// Microseconds between two looks.
pub const NONSTALL_CLAIM_PAUSE_US: u32 = 250;

/// The host channel whose CHAN word binds the instance block at host VRAM `inst` now (the
/// channel table read whole: only when a record names an instance block, which is rare).
fn channel_of_inst(m: &impl Mmio, inst: u64) -> Option<u32> {
    (0..pfifo::CHANNELS).find(|&c| {
        let w = pfifo::ChanInst::from_raw(m.rd(pfifo::ChanInst::offset(c)));
        w.valid() && w.addr() == inst
    })
}

/// Whether fault or PGRAPH error records wait for the interrupt handler to read them.
pub fn events_pending(m: &impl Mmio) -> bool {
    let pgraph_errors = m.rd(pmc::ENABLE) & pmc::ENABLE_PGRAPH != 0 && m.rd(pgraph::INTR) & !pgraph::INTR_NOTIFY != 0;
    m.rd(pfifo::VM_FAULT_UNITS) != 0 || pgraph_errors
}

/// How long an unbind waits for the interrupt handler to read the records its channel may
/// have left, before its shadow instance block is freed (short: the handler reads without
/// taking any vGPU's lock, unless it is still delivering an earlier event to this vGPU).
// TIMEOUT: EVENT_DRAIN_TIMEOUT_NS, then the block is freed anyway (`drain_events` says so).
pub const EVENT_DRAIN_TIMEOUT_NS: u64 = 100_000_000;

/// Waits (bounded by [`EVENT_DRAIN_TIMEOUT_NS`]) until no fault or PGRAPH error record is
/// waiting for the interrupt handler; whether none is.
pub fn drain_events(m: &impl Mmio, w: &impl Waiter) -> bool {
    let start = w.now_ns();
    while events_pending(m) {
        if w.now_ns().saturating_sub(start) > EVENT_DRAIN_TIMEOUT_NS {
            return !events_pending(m);
        }
        w.pause();
    }
    true
}

/// The top half of the host interrupt handler: reads and acknowledges every pending cause
/// (so the line drops) and returns what the vGPUs must hear about; `None` if the GPU did not
/// interrupt (a shared line) or is gone.
pub fn service_interrupt(m: &impl Mmio) -> Option<HostEvents> {
    let pending = m.rd(pmc::INTR_HOST);
    if pending == 0 || pending == crate::gf100::bad::UNIT_DISABLED {
        return None;
    }
    let mut ev = HostEvents::default();
    if pending & pmc::INTR_SOFTWARE != 0 {
        m.wr(pmc::INTR_HOST, 0);
    }
    if pending & pmc::INTR_PFIFO != 0 {
        let causes = m.rd(pfifo::INTR);
        if causes & pfifo::INTR_ENGINE != 0 {
            let units = m.rd(pfifo::ENGINE_INTR_UNITS);
            for n in (0..32).filter(|n| units & (1 << n) != 0) {
                let v = m.rd(pfifo::engine_intr(n));
                m.wr(pfifo::engine_intr(n), v);
            }
            ev.nonstall = true;
        }
        if causes & pfifo::INTR_VM_FAULT != 0 {
            let units = m.rd(pfifo::VM_FAULT_UNITS);
            for (u, rec) in ev.faults.iter_mut().enumerate() {
                let u = u as u32;
                if units & (1 << u) == 0 {
                    continue;
                }
                let lo = pfifo::VmFaultAddrLo::from_raw(m.rd(pfifo::VmFaultAddrLo::offset(u)));
                let hi = pfifo::VmFaultAddrHi::from_raw(m.rd(pfifo::VmFaultAddrHi::offset(u)));
                let inst = pfifo::VmFaultInst::from_raw(m.rd(pfifo::VmFaultInst::offset(u))).addr();
                *rec = Some(HostFault { inst, va: hi.va() | lo.va(), info: m.rd(pfifo::VmFaultInfo::offset(u)), host_chid: channel_of_inst(m, inst) });
            }
            m.wr(pfifo::VM_FAULT_UNITS, units);
        }
        if causes & pfifo::INTR_PBDMA != 0 {
            let units = m.rd(pfifo::PBDMA_INTR_UNITS);
            for (i, rec) in ev.pbdma.iter_mut().enumerate() {
                let i = i as u32;
                if units & (1 << i) == 0 {
                    continue;
                }
                let b = pfifo::pbdma_base(i);
                let intr = m.rd(b + pfifo::PBDMA_INTR);
                *rec = Some(PbdmaError {
                    intr,
                    method: m.rd(b + pfifo::PBDMA_METHOD),
                    data: m.rd(b + pfifo::PBDMA_DATA),
                    host_chid: m.rd(b + pfifo::PBDMA_CHID),
                });
                // As nouveau does: the offending method is dropped and the PBDMA goes on; the
                // guest that issued it hears of it through its own PBDMA registers.
                m.wr(b + pfifo::PBDMA_METHOD, pfifo::PBDMA_METHOD_CLEAR);
                m.wr(b + pfifo::PBDMA_INTR, intr);
            }
            m.wr(pfifo::PBDMA_INTR_UNITS, units);
        }
        m.wr(pfifo::INTR, causes);
    }
    if pending & pmc::INTR_PGRAPH != 0 {
        let g = m.rd(pgraph::INTR);
        let errors = g & !pgraph::INTR_NOTIFY;
        if errors != 0 {
            let inst = u64::from(m.rd(pgraph::INTR_CHANNEL_INST) & pgraph::INTR_CHANNEL_INST_MASK) << 12;
            ev.pgraph = Some(PgraphError {
                intr: errors,
                data_error: m.rd(pgraph::DATA_ERROR_CODE),
                trapped: [m.rd(pgraph::TRAPPED_ADDR), m.rd(pgraph::TRAPPED_DATA)],
                inst,
                host_chid: channel_of_inst(m, inst),
            });
        }
        m.wr(pgraph::INTR, g);
    }
    // MSI is sent on a rising edge of the interrupt line: a cause that arrived after the
    // reads above keeps the line high without a new message. Re-arming makes the GPU send
    // one if the line is still asserted (nouveau does the same at the end of its handler).
    m.wr(crate::gf100::pci::BAR0_MSI_REARM, 0);
    Some(ev)
}
