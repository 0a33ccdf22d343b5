//! The mediator against recording stand-ins for the host: the order in which a channel is
//! taken off the GPU, whole-pointer mirroring of instance-block writes, and that every
//! shadow goes back to the pool.

mod common;

use std::collections::BTreeMap;

use common::{Alloc, FakeClock, MIB};
use gpuvm_shadow_tests::channel::RunlistPart;
use gpuvm_shadow_tests::gf100::{copy, inst, pfifo, pmc, ramfc, target, userd, vm};
use gpuvm_shadow_tests::host_gpu::{HostError, HostEvents, PbdmaError};
use gpuvm_shadow_tests::mediator::{Env, GuestMemory, HostChannels, Mediator};
use gpuvm_shadow_tests::memory::{SysMem, Vram};
use gpuvm_shadow_tests::partition::Slice;
use gpuvm_shadow_tests::sync_policy::SyncMode;
use gpuvm_shadow_tests::HostStorage;

/// Sparse host VRAM (the partition may sit above 4 GiB).
#[derive(Default)]
struct SparseVram(BTreeMap<u64, u32>);

impl Vram for SparseVram {
    fn read32(&self, pa: u64) -> u32 {
        *self.0.get(&pa).unwrap_or(&0)
    }
    fn write32(&mut self, pa: u64, v: u32) {
        self.0.insert(pa, v);
    }
}

#[derive(Default)]
struct NoSys;
impl SysMem for NoSys {
    fn pin(&mut self, _: u64, _: u64) -> Option<u64> {
        None
    }
}
impl GuestMemory for NoSys {
    fn any_pinned(&self, _: u64, _: u64) -> bool {
        false
    }
    fn unpin_range(&mut self, _: u64, _: u64) -> u64 {
        0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Bind(u32, Option<u64>),
    Runnable(u32, bool),
    Kick(u32),
    Doorbell(u32, u32),
    Runlist(u128),
    Flush(u64),
}

#[derive(Default)]
struct Recorder {
    ops: Vec<Op>,
    errors: Vec<HostError>,
}

impl HostChannels for Recorder {
    fn bind(&mut self, h: u32, inst: Option<u64>) {
        self.ops.push(Op::Bind(h, inst));
    }
    fn set_runnable(&mut self, h: u32, r: bool) {
        self.ops.push(Op::Runnable(h, r));
    }
    fn kick(&mut self, h: u32) -> Result<(), HostError> {
        self.ops.push(Op::Kick(h));
        Ok(())
    }
    /// Recorded as what `host_gpu::evict` does when the kick completes.
    fn evict(&mut self, h: u32) -> Result<gpuvm_shadow_tests::host_gpu::Evicted, HostError> {
        self.set_runnable(h, false);
        self.kick(h).map(|()| gpuvm_shadow_tests::host_gpu::Evicted::Preempted)
    }
    fn ring_doorbell(&mut self, h: u32, put: u32) {
        self.ops.push(Op::Doorbell(h, put));
    }
    fn commit_runlist(&mut self, part: RunlistPart) -> Result<(), HostError> {
        self.ops.push(Op::Runlist(part.channels.0));
        Ok(())
    }
    fn tlb_flush(&mut self, pd: u64, _sysmem: bool) -> Result<(), HostError> {
        self.ops.push(Op::Flush(pd));
        Ok(())
    }
    fn drain_events(&mut self) {}
    fn sync_mode(&self) -> SyncMode {
        SyncMode::Lazy
    }
    fn report(&mut self, what: HostError) {
        self.errors.push(what);
    }
}

/// A vGPU whose partition is `[base, base + 16 MiB)` of host VRAM, channels 8..12.
struct Rig {
    med: Mediator<HostStorage>,
    vram: SparseVram,
    sys: NoSys,
    tables: Alloc,
    host: Recorder,
    clock: FakeClock,
    slice: Slice,
}

/// Host-pool bytes the test vGPU may hold.
const QUOTA: u64 = MIB;
const INST: u64 = 0x10_0000;
const PD: u64 = 0x20_0000;
const USERD: u64 = 0x30_0000;
const RUNLIST: u64 = 0x40_0000;

impl Rig {
    fn new(base: u64) -> Rig {
        let slice = Slice { first_unit: 1, units: 1, vram_base: base, vram_size: 16 * MIB, first_channel: 8, channels: 4 };
        Rig {
            med: Mediator::new(slice, 0x0c0c_00a3, QUOTA).expect("mediator"),
            vram: SparseVram::default(),
            sys: NoSys,
            tables: Alloc::new(0x1000..4 * MIB),
            host: Recorder::default(),
            clock: FakeClock(Default::default()),
            slice,
        }
    }
    fn guest32(&mut self, gpa: u64, v: u32) {
        self.vram.write32(self.slice.vram_base + gpa, v);
    }
    /// A guest BAR0 write through the mediator; false if denied.
    fn bar0(&mut self, off: u32, v: u32) -> bool {
        let mut env = Env { vram: &mut self.vram, sys: &mut self.sys, tables: &mut self.tables, host: &mut self.host, clock: &self.clock };
        self.med.bar0_write(&mut env, off, v)
    }
    /// A guest PRAMIN write (how a driver writes its instance block).
    fn pramin(&mut self, gpa: u64, v: u32) {
        use gpuvm_shadow_tests::gf100::pbus;
        let (base, off) = pbus::PraminBase::window(gpa);
        assert!(self.bar0(pbus::PraminBase::OFFSET, base.raw()));
        assert!(self.bar0(off, v));
    }
    fn bus_master(&mut self, on: bool) {
        let mut env = Env { vram: &mut self.vram, sys: &mut self.sys, tables: &mut self.tables, host: &mut self.host, clock: &self.clock };
        self.med.set_bus_master(&mut env, on);
    }
    /// Channel 0 bound to a valid instance block, runnable, on the runlist, with the guest's
    /// bus mastering, PMC units and PFIFO on.
    fn channel_up(&mut self) {
        self.bus_master(true);
        assert!(self.bar0(pmc::ENABLE, pmc::ENABLE_ALL));
        assert!(self.bar0(pfifo::CTRL, pfifo::CTRL_ENABLE));
        self.guest32(INST + u64::from(inst::PDB_LO), PD as u32 | target::VRAM);
        self.guest32(INST + u64::from(inst::LIMIT_LO), (16 * MIB - 1) as u32);
        self.guest32(INST + u64::from(ramfc::USERD_LO), USERD as u32 | target::VRAM);
        self.guest32(INST + u64::from(ramfc::SIGNATURE), ramfc::SIGNATURE_VALUE);
        assert!(self.bar0(pfifo::ChanInst::offset(0), pfifo::ChanInst::bound(INST).raw()));
        assert!(self.bar0(pfifo::ChanState::offset(0), pfifo::ChanState::INITIAL.raw()));
        self.guest32(RUNLIST, 0);
        self.guest32(RUNLIST + 4, pfifo::RUNLIST_ENTRY_WORD1);
        assert!(self.bar0(pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(RUNLIST).with_target(target::VRAM).raw()));
        assert!(self.bar0(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(1).raw()));
        let _ = userd::SIZE;
    }
    /// A guest BAR0 read through the mediator.
    fn rd(&mut self, off: u32) -> Option<u32> {
        let mut env = Env { vram: &mut self.vram, sys: &mut self.sys, tables: &mut self.tables, host: &mut self.host, clock: &self.clock };
        self.med.bar0_read(&mut env, off)
    }
    fn host_inst(&self) -> u64 {
        self.host.ops.iter().rev().find_map(|o| match o { Op::Bind(8, Some(i)) => Some(*i), _ => None }).expect("bound")
    }
}

#[test]
fn unbind_stops_the_channel_before_freeing_it() {
    let mut r = Rig::new(64 * MIB);
    r.channel_up();
    let live = r.tables.live.len();
    assert!(r.host.ops.contains(&Op::Runlist(1)), "on the runlist: {:?}", r.host.ops);
    r.host.ops.clear();
    assert!(r.bar0(pfifo::ChanInst::offset(0), 0));
    let expect = [Op::Runlist(0), Op::Runnable(8, false), Op::Kick(8), Op::Bind(8, None)];
    assert_eq!(r.host.ops, expect, "off the runlist, stopped, preempted, unbound, in that order");
    assert_eq!(r.tables.live.len(), live - 1, "the shadow instance block was freed after");
    assert!(r.host.errors.is_empty());
}

#[test]
fn reset_flushes_each_shadow_pd_before_freeing_it() {
    let mut r = Rig::new(64 * MIB);
    r.channel_up();
    r.host.ops.clear();
    let mut env = Env { vram: &mut r.vram, sys: &mut r.sys, tables: &mut r.tables, host: &mut r.host, clock: &r.clock };
    r.med.reset(&mut env);
    let ops = &r.host.ops;
    let unbind = ops.iter().position(|o| *o == Op::Bind(8, None)).expect("unbound");
    let flush = ops.iter().position(|o| matches!(o, Op::Flush(_))).expect("host TLB flushed for the shadow PD");
    assert!(ops[0] == Op::Runlist(0) && unbind < flush, "{ops:?}");
    assert!(r.tables.live.is_empty(), "every shadow table and instance block back in the pool: {:?}", r.tables.live);
}

/// The host channel's USERD is the host's page of its host channel id, whatever the guest's
/// RAMFC names; the guest's own USERD page shows the host channel's progress (the words PFIFO
/// writes back) when the guest reads it, also after the guest moved it, and a guest writing
/// its USERD changes nothing the GPU reads.
#[test]
fn host_channels_use_host_userd_and_the_guest_sees_their_progress() {
    use gpuvm_shadow_tests::mediator::host_userd;
    let base = (4 << 30) - 8 * MIB; // the partition straddles 4 GiB
    let mut r = Rig::new(base);
    r.channel_up();
    let hi = r.host_inst();
    let shadow_userd = |r: &Rig| u64::from(r.vram.read32(hi + u64::from(ramfc::USERD_LO)) & ramfc::USERD_ADDR_MASK) | u64::from(r.vram.read32(hi + u64::from(ramfc::USERD_HI))) << 32;
    let host = host_userd(8);
    assert_eq!(shadow_userd(&r), host, "the shadow names host channel 8's own USERD page");
    // PFIFO's write-back in the host page is what the guest reads in its page.
    r.vram.write32(host + u64::from(userd::GP_GET), 5);
    r.vram.write32(host + u64::from(userd::REF), 0x77);
    r.guest32(USERD + u64::from(userd::GP_PUT), 9);
    let read = |r: &mut Rig, gpa: u64| {
        use gpuvm_shadow_tests::gf100::pbus;
        let (b, off) = pbus::PraminBase::window(gpa);
        assert!(r.bar0(pbus::PraminBase::OFFSET, b.raw()));
        r.rd(off).expect("PRAMIN read")
    };
    assert_eq!(read(&mut r, USERD + u64::from(userd::GP_GET)), 5);
    assert_eq!(read(&mut r, USERD + u64::from(userd::REF)), 0x77);
    assert_eq!(read(&mut r, USERD + u64::from(userd::GP_PUT)), 9, "GP_PUT reads what the guest wrote");
    // A guest rewriting GP_GET or GP_PUT in its page does not reach the host page.
    r.pramin(USERD + u64::from(userd::GP_GET), 100);
    r.pramin(USERD + u64::from(userd::GP_PUT), 200);
    assert_eq!(r.vram.read32(host + u64::from(userd::GP_GET)), 5);
    assert_ne!(r.vram.read32(host + u64::from(userd::GP_PUT)), 200);
    assert_eq!(read(&mut r, USERD + u64::from(userd::GP_GET)), 5, "the guest's view is the host's progress");
    r.host.ops.clear();
    // The guest moves USERD to 12 MiB (across 4 GiB of host VRAM): the shadow stays on the
    // host page, the channel is not stopped, and the guest's view follows its page.
    let new = 12 * MIB;
    r.pramin(INST + u64::from(ramfc::USERD_LO), new as u32 | target::VRAM);
    assert_eq!(shadow_userd(&r), host);
    assert!(!r.host.ops.iter().any(|o| matches!(o, Op::Kick(_) | Op::Runnable(..))), "{:?}", r.host.ops);
    r.vram.write32(host + u64::from(userd::GP_GET), 6);
    assert_eq!(read(&mut r, new + u64::from(userd::GP_GET)), 6);
    // A USERD outside the partition is refused: the view stays at the last valid page.
    r.pramin(INST + u64::from(ramfc::USERD_LO), (17 * MIB) as u32 | target::VRAM);
    r.pramin(INST + u64::from(ramfc::USERD_HI), 1);
    assert_eq!(shadow_userd(&r), host);
    r.vram.write32(host + u64::from(userd::GP_GET), 7);
    assert_eq!(read(&mut r, new + u64::from(userd::GP_GET)), 7);
}

/// A doorbell whose GP_PUT lies outside the channel's GPFIFO ring is refused (the GPU would
/// mask it into the ring and run entries the guest never put); one inside is submitted.
#[test]
fn doorbells_outside_the_ring_are_refused() {
    use gpuvm_shadow_tests::vregs::Bar;
    let mut r = Rig::new(64 * MIB);
    // An 8-entry ring.
    r.guest32(INST + u64::from(ramfc::GP_BASE_HI), ramfc::gp_base_hi_value(0, 3));
    r.channel_up();
    // Doorbells need the poll area; direct BAR1 (no BAR1 VM) maps offset = guest VRAM.
    assert!(r.bar0(pfifo::UserdPollBase::OFFSET, pfifo::UserdPollBase::default().with_bar1_va(USERD).with_enable(true).raw()));
    r.host.ops.clear();
    let mut env = Env { vram: &mut r.vram, sys: &mut r.sys, tables: &mut r.tables, host: &mut r.host, clock: &r.clock };
    for put in [3, 8, 0xffff_ffff, 7] {
        assert!(r.med.bar_write(&mut env, Bar::Bar1, USERD + u64::from(userd::GP_PUT), put));
    }
    let rung: Vec<Op> = r.host.ops.iter().filter(|o| matches!(o, Op::Doorbell(..))).cloned().collect();
    assert_eq!(rung, [Op::Doorbell(8, 3), Op::Doorbell(8, 7)]);
    assert_eq!(r.med.stats.doorbells_refused, 2);
    assert_eq!(r.med.stats.doorbells, 2);
}

/// The guest turning off its PFIFO, its PMC PFIFO bit or bus mastering takes its channels
/// off the GPU (runlist part emptied, channel stopped); turning them back on restores them.
#[test]
fn guest_disables_stop_its_host_channels() {
    let mut r = Rig::new(64 * MIB);
    r.channel_up();
    let stop = [Op::Runlist(0), Op::Runnable(8, false), Op::Kick(8)];
    let start = [Op::Runlist(1), Op::Runnable(8, true)];
    let (off, on) = (pfifo::CTRL, pfifo::CTRL_ENABLE);
    r.host.ops.clear();
    assert!(r.bar0(off, 0));
    assert_eq!(r.host.ops, stop, "PFIFO off");
    r.host.ops.clear();
    // A runnable write while disabled changes nothing on the host.
    assert!(r.bar0(pfifo::ChanState::offset(0), pfifo::ChanState::INITIAL.raw()));
    assert_eq!(r.host.ops, [Op::Runnable(8, false)], "stays stopped");
    r.host.ops.clear();
    assert!(r.bar0(off, on));
    assert_eq!(r.host.ops, start, "PFIFO on again");
    r.host.ops.clear();
    r.bus_master(false);
    assert_eq!(r.host.ops, stop, "bus master off");
    r.host.ops.clear();
    r.bus_master(true);
    assert_eq!(r.host.ops, start, "bus master on");
}

/// PMC's PFIFO bit off stops the channels; back on (0 -> 1 resets the unit) they are gone, as
/// on the hardware, and nothing of the vGPU stays on the host.
#[test]
fn pmc_pfifo_off_then_on_resets_the_guest_pfifo() {
    let mut r = Rig::new(64 * MIB);
    r.channel_up();
    r.host.ops.clear();
    assert!(r.bar0(pmc::ENABLE, pmc::ENABLE_ALL & !pmc::ENABLE_PFIFO));
    assert_eq!(r.host.ops, [Op::Runlist(0), Op::Runnable(8, false), Op::Kick(8)]);
    r.host.ops.clear();
    assert!(r.bar0(pmc::ENABLE, pmc::ENABLE_ALL));
    assert!(r.host.ops.contains(&Op::Bind(8, None)), "the reset unbound the channel: {:?}", r.host.ops);
    assert!(r.tables.live.is_empty(), "and freed its shadows: {:?}", r.tables.live);
}

/// A guest whose address space needs more shadow tables than its quota gets part of it
/// shadowed, then an unloadable channel (a CHAN_TABLE error it can see), and the pool keeps
/// the rest for the others.
#[test]
fn host_pool_quota_bounds_one_guest() {
    let mut r = Rig::new(64 * MIB);
    r.bus_master(true);
    // A page directory whose limit spans 256 PDEs, each with a full small-page table
    // (256 KiB of shadow table each): far beyond the 1 MiB quota.
    r.guest32(INST + u64::from(inst::PDB_LO), PD as u32 | target::VRAM);
    r.guest32(INST + u64::from(inst::LIMIT_LO), u32::MAX);
    r.guest32(INST + u64::from(inst::LIMIT_HI), 0x1f);
    for i in 0..256u64 {
        let pt = 0x80_0000 + i * 0x4_0000 % (8 * MIB);
        let pde = vm::pde(0, vm::PDE_APER_NONE, pt, vm::PDE_APER_VRAM);
        r.guest32(PD + i * 8, pde as u32);
        r.guest32(PD + i * 8 + 4, (pde >> 32) as u32);
    }
    r.guest32(INST + u64::from(ramfc::USERD_LO), USERD as u32 | target::VRAM);
    assert!(r.bar0(pfifo::ChanInst::offset(0), pfifo::ChanInst::bound(INST).raw()));
    assert!(r.med.pool_used() <= QUOTA, "held {} of a {} quota", r.med.pool_used(), QUOTA);
    assert!(r.med.pool_used() > QUOTA / 2, "it did fill its quota: {}", r.med.pool_used());
    assert!(r.tables.live.values().sum::<u64>() <= QUOTA);
    // Two more channels, each on an address space of its own whose PDEs hold big-page tables
    // (8 KiB of shadow each): the first takes what is left of the quota, the second cannot be
    // loaded and the guest sees it as the GPU reports such a channel: CHAN_TABLE_ERROR
    // INVALID_TARGET (PFIFO INTR bit 0), not a SCHED_ERROR.
    for (chid, inst_at, pd_at) in [(1u32, INST + 0x1000, PD + 0x1000), (2, INST + 0x2000, PD + 0x2000)] {
        r.guest32(inst_at + u64::from(inst::PDB_LO), pd_at as u32 | target::VRAM);
        r.guest32(inst_at + u64::from(inst::LIMIT_LO), u32::MAX);
        r.guest32(inst_at + u64::from(inst::LIMIT_HI), 0x1f);
        r.guest32(inst_at + u64::from(ramfc::USERD_LO), USERD as u32 | target::VRAM);
        for i in 0..256u64 {
            let pde = vm::pde(0x60_0000 + i * 0x2000, vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE);
            r.guest32(pd_at + i * 8, pde as u32);
            r.guest32(pd_at + i * 8 + 4, (pde >> 32) as u32);
        }
        // (The Rig never enables the USERD poll area: each bind also reports NO_POLL.)
        assert!(r.bar0(pfifo::INTR, u32::MAX));
        assert!(r.bar0(pfifo::ChanInst::offset(chid), pfifo::ChanInst::bound(inst_at).raw()));
        let intr = r.rd(pfifo::INTR).unwrap();
        let code = r.rd(pfifo::CHAN_TABLE_ERROR);
        let host_chid = 8 + chid;
        let bound = r.host.ops.iter().any(|o| matches!(o, Op::Bind(h, Some(_)) if *h == host_chid));
        if chid == 1 {
            assert_ne!(code, Some(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET), "channel 1 still fits");
            assert!(bound, "channel 1 bound on the host");
            assert!(r.med.pool_used() <= QUOTA && r.med.pool_used() > QUOTA - 0x2000, "the quota is spent: {}", r.med.pool_used());
        } else {
            assert_ne!(intr & pfifo::INTR_CHAN_TABLE_ERROR, 0, "channel 2: PFIFO INTR {intr:#x}");
            assert_eq!(code, Some(pfifo::CHAN_TABLE_ERROR_INVALID_TARGET));
            assert_eq!(intr & pfifo::INTR_SCHED_ERROR, 0, "not a scheduler error");
            assert!(!bound, "channel 2 not bound on the host");
        }
    }
    assert!(r.med.pool_used() <= QUOTA);
    let live_before_reset = r.tables.live.len();
    let mut env = Env { vram: &mut r.vram, sys: &mut r.sys, tables: &mut r.tables, host: &mut r.host, clock: &r.clock };
    r.med.reset(&mut env);
    assert!(live_before_reset > 0 && r.tables.live.is_empty() && r.med.pool_used() == 0, "all given back");
}

/// A guest that opens the physical-copy gate in its RAMFC (before binding, and by a write to
/// the bound instance block) never gets it: the shadow's HCE_CTRL stays 0. The PBDMA error
/// its physical copy then raises on the host reaches it, under its own channel id, and no
/// other vGPU.
#[test]
fn guest_channels_never_get_the_physical_copy_gate() {
    let mut r = Rig::new(64 * MIB);
    r.guest32(INST + u64::from(ramfc::HCE_CTRL), ramfc::HCE_CTRL_PRIV_MODE);
    r.channel_up();
    let hi = r.host_inst();
    let shadow = |r: &Rig, off: u32| r.vram.read32(hi + u64::from(off));
    assert_eq!(shadow(&r, ramfc::HCE_CTRL), 0, "closed at bind");
    assert_eq!(shadow(&r, ramfc::SIGNATURE), ramfc::SIGNATURE_VALUE);
    r.pramin(INST + u64::from(ramfc::HCE_CTRL), u32::MAX);
    assert_eq!(shadow(&r, ramfc::HCE_CTRL), 0, "closed after a guest write to the bound block");
    r.pramin(INST + 0xf4, u32::MAX);
    assert_eq!(shadow(&r, 0xf4), 0, "an unlisted RAMFC word is not mirrored");
    // The model's error for the refused copy, as the host interrupt handler reads it.
    let err = PbdmaError { intr: pfifo::PBDMA_INTR_ILLEGAL_MTHD, method: copy::LAUNCH_DMA | 3 << pfifo::PBDMA_METHOD_SUBCH_SHIFT, data: copy::LAUNCH_COPY_PITCH, host_chid: 8 };
    let ev = HostEvents { pbdma: [Some(err), None, None], ..HostEvents::default() };
    assert!(r.bar0(pfifo::INTR_EN, u32::MAX));
    assert!(r.bar0(pfifo::pbdma_base(0) + pfifo::PBDMA_INTR_EN, u32::MAX));
    r.med.deliver(&ev, false);
    let b = pfifo::pbdma_base(0);
    assert_ne!(r.rd(pfifo::INTR).unwrap() & pfifo::INTR_PBDMA, 0);
    assert_eq!(r.rd(b + pfifo::PBDMA_INTR), Some(pfifo::PBDMA_INTR_ILLEGAL_MTHD));
    assert_eq!(r.rd(b + pfifo::PBDMA_METHOD), Some(err.method));
    assert_eq!(r.rd(b + pfifo::PBDMA_DATA), Some(err.data));
    assert_eq!(r.rd(b + pfifo::PBDMA_CHID), Some(0), "its own (guest) channel id");
    // Another vGPU (host channels 12..16) does not hear of it.
    let mut other = Rig::new(128 * MIB);
    other.slice = Slice { first_channel: 12, ..other.slice };
    other.med = Mediator::new(other.slice, 0x0c0c_00a3, QUOTA).expect("mediator");
    assert!(other.bar0(pfifo::pbdma_base(0) + pfifo::PBDMA_INTR_EN, u32::MAX));
    other.med.deliver(&ev, false);
    assert_eq!(other.rd(b + pfifo::PBDMA_INTR), Some(0));
}

/// A pointer whose two shadow words both change (USERD moved across 4 GiB of host VRAM) is
/// mirrored with the channel stopped around it; with the guest's PFIFO off, the channel must
/// stay stopped afterwards, not be made runnable behind the guest's back (found by the
/// mediator fuzz).
#[test]
fn a_mirrored_pointer_does_not_restart_a_channel_the_guest_stopped() {
    let base = (4 << 30) - 8 * MIB;
    let mut r = Rig::new(base);
    r.channel_up();
    let hi = r.host_inst();
    for (off, on) in [(pfifo::CTRL, pfifo::CTRL_ENABLE), (pmc::ENABLE, pmc::ENABLE_ALL)] {
        assert!(r.bar0(off, 0));
        r.host.ops.clear();
        let new = if off == pfifo::CTRL { 12 * MIB } else { USERD };
        r.pramin(INST + u64::from(ramfc::USERD_LO), new as u32 | target::VRAM);
        // The shadow keeps naming the host's USERD page.
        assert_eq!(u64::from(r.vram.read32(hi + u64::from(ramfc::USERD_LO)) & ramfc::USERD_ADDR_MASK) | u64::from(r.vram.read32(hi + u64::from(ramfc::USERD_HI))) << 32, gpuvm_shadow_tests::mediator::host_userd(8));
        let _ = base;
        assert!(!r.host.ops.contains(&Op::Runnable(8, true)), "made runnable with the guest's PFIFO off: {:?}", r.host.ops);
        if off == pmc::ENABLE {
            break;
        }
        assert!(r.bar0(off, on));
        assert!(r.host.ops.contains(&Op::Runnable(8, true)), "back on when the guest enables it: {:?}", r.host.ops);
    }
}

/// A BAR1/BAR3 word at an unaligned offset is refused (reads nothing, writes nothing): host
/// VRAM takes aligned words, and a word straddling two page-table entries would change the
/// second unseen by write tracking (found by the mediator fuzz).
#[test]
fn unaligned_bar_words_are_refused() {
    use gpuvm_shadow_tests::vregs::Bar;
    let mut r = Rig::new(64 * MIB);
    let mut env = Env { vram: &mut r.vram, sys: &mut r.sys, tables: &mut r.tables, host: &mut r.host, clock: &r.clock };
    for bar in [Bar::Bar1, Bar::Bar3] {
        for off in [1, 2, 3, 0x1006, 16 * MIB - 2] {
            assert!(!r.med.bar_write(&mut env, bar, off, u32::MAX), "{bar:?} write at {off:#x}");
            assert_eq!(r.med.bar_read(&mut env, bar, off), None, "{bar:?} read at {off:#x}");
        }
        assert!(r.med.bar_write(&mut env, bar, 0x1004, 7));
        assert_eq!(r.med.bar_read(&mut env, bar, 0x1004), Some(7));
    }
    assert_eq!(r.vram.0.keys().copied().collect::<Vec<_>>(), [64 * MIB + 0x1004], "only the aligned word was written");
}
