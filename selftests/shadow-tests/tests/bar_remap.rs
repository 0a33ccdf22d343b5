//! BAR remapping: which guest BAR3 pages the mediator lets the kernel map straight onto the
//! host aperture, which it refuses (an attacker's BAR page table pointing at another vGPU's
//! or the host's VRAM, system memory, read-only pages), that a guest page-table change plus
//! flush removes the old mappings before the mediator goes on, and that once a page is mapped
//! the guest's page-table writes through it (unseen) still reach the shadows at the next sync.

mod common;

use common::{vram_pte, sys_pte, write_inst_vm, Alloc, ByteVram, FakeClock, GUEST_BASE, GUEST_SIZE, MIB};
use gpuvm_shadow_tests::bar_remap::{decide, MapDecision, Refusal, Slots, PAGE};
use gpuvm_shadow_tests::channel::RunlistPart;
use gpuvm_shadow_tests::gf100::{inst, mmu, pbus, pfifo, pmc, ramfc, target, vm};
use gpuvm_shadow_tests::host_gpu::{Evicted, HostError};
use gpuvm_shadow_tests::mediator::{Env, GuestMemory, HostChannels, Mediator};
use gpuvm_shadow_tests::memory::SysMem;
use gpuvm_shadow_tests::pagetable::{Aperture, PageSize, Translation};
use gpuvm_shadow_tests::sync_policy::SyncMode;
use gpuvm_shadow_tests::vregs::Bar;
use gpuvm_shadow_tests::HostStorage;

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
    Zap(Bar),
    Flush,
    Other,
}

struct Host {
    remap: bool,
    ops: Vec<Op>,
    /// Guest pages the test "mapped" (reported at the next sync, as the kernel does).
    mapped: Vec<u64>,
}

impl HostChannels for Host {
    fn bind(&mut self, _: u32, _: Option<u64>) {
        self.ops.push(Op::Other);
    }
    fn set_runnable(&mut self, _: u32, _: bool) {}
    fn kick(&mut self, _: u32) -> Result<(), HostError> {
        Ok(())
    }
    fn evict(&mut self, _: u32) -> Result<Evicted, HostError> {
        Ok(Evicted::Preempted)
    }
    fn drain_events(&mut self) {}
    fn ring_doorbell(&mut self, _: u32, _: u32) {}
    fn commit_runlist(&mut self, _: RunlistPart) -> Result<(), HostError> {
        Ok(())
    }
    fn tlb_flush(&mut self, _: u64, _: bool) -> Result<(), HostError> {
        self.ops.push(Op::Flush);
        Ok(())
    }
    fn sync_mode(&self) -> SyncMode {
        SyncMode::Lazy
    }
    fn report(&mut self, _: HostError) {}
    fn bar_remap(&self) -> bool {
        self.remap
    }
    fn bar_changed(&mut self, bar: Bar, _desc: Option<gpuvm_shadow_tests::pagetable::VmDesc>) {
        self.ops.push(Op::Zap(bar));
    }
    fn take_mapped(&mut self, f: &mut dyn FnMut(u64) -> bool) {
        self.mapped.retain(|&p| !f(p));
    }
}

/// Guest layout (guest VRAM): BAR3 instance block, PD and big-page table; data big pages.
const BAR3_INST: u64 = 0x1000;
const BAR3_PD: u64 = 0x2000;
const BAR3_LPT: u64 = 0x4000;
const BAR3_SIZE: u64 = 16 * MIB;
const BIG: u64 = 128 << 10;
/// The vGPU's host BAR1 slots: as many as its BAR3 has pages.
const SLOTS: Slots = Slots { bar_off: 0x8_0000, len: BAR3_SIZE };

struct Rig {
    med: Mediator<HostStorage>,
    vram: ByteVram,
    sys: NoSys,
    tables: Alloc,
    host: Host,
    clock: FakeClock,
}

impl Rig {
    fn new() -> Rig {
        let mut r = Rig {
            med: Mediator::new(common::slice(), 0x0c0c_00a3, MIB).unwrap(),
            vram: ByteVram::new(),
            sys: NoSys,
            tables: Alloc::new(common::SHADOW_BASE..common::SHADOW_END),
            host: Host { remap: true, ops: Vec::new(), mapped: Vec::new() },
            clock: FakeClock(Default::default()),
        };
        write_inst_vm(&mut r.vram, BAR3_INST, BAR3_PD, BAR3_SIZE - 1);
        r.vram.guest64(BAR3_PD, vm::pde(BAR3_LPT, vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
        r.bar0(pbus::BAR3_INST, pbus::BarInst::vm(BAR3_INST).raw());
        r
    }
    fn reset(&mut self) {
        let mut env = Env { vram: &mut self.vram, sys: &mut self.sys, tables: &mut self.tables, host: &mut self.host, clock: &self.clock };
        self.med.reset(&mut env);
    }
    fn bus_master(&mut self) {
        let mut env = Env { vram: &mut self.vram, sys: &mut self.sys, tables: &mut self.tables, host: &mut self.host, clock: &self.clock };
        self.med.set_bus_master(&mut env, true);
    }
    fn bar0(&mut self, off: u32, v: u32) -> bool {
        let mut env = Env { vram: &mut self.vram, sys: &mut self.sys, tables: &mut self.tables, host: &mut self.host, clock: &self.clock };
        self.med.bar0_write(&mut env, off, v)
    }
    /// BAR3 big page `i` -> guest PTE `pte`, written the way a guest with a mapped page
    /// table writes it: straight into VRAM, unseen by the mediator.
    fn bar3_pte(&mut self, i: u64, pte: u64) {
        self.vram.guest64(BAR3_LPT + i * vm::PTE_SIZE, pte);
    }
    fn map(&mut self, bar: Bar, off: u64) -> MapDecision {
        let mut env = Env { vram: &mut self.vram, sys: &mut self.sys, tables: &mut self.tables, host: &mut self.host, clock: &self.clock };
        self.med.bar_map(&mut env, bar, off, BAR3_SIZE, &SLOTS)
    }
    fn flush(&mut self, pd: Option<u64>) {
        match pd {
            Some(pd) => {
                assert!(self.bar0(mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(pd).raw()));
                assert!(self.bar0(mmu::Invalidate::OFFSET, mmu::Invalidate::default().with_page_all(true).with_trigger(true).raw()));
            }
            None => assert!(self.bar0(
                mmu::Invalidate::OFFSET,
                mmu::Invalidate::default().with_page_all(true).with_all_pdb(true).with_trigger(true).raw()
            )),
        }
    }
}

/// The channel VM of [`Rig::running_channel`]: its instance block, PD and big-page table.
const INST: u64 = 0x1_0000;
const PD: u64 = 0x20_0000;
const LPT: u64 = 0x21_0000;
const RUNLIST: u64 = 0x5_0000;

impl Rig {
    /// Channel 0 bound and on the runlist, its VM (limit `limit`) with a PD at [`PD`] whose
    /// first PDE names one big-page table at [`LPT`], mapping big page 0 to 0x30_0000.
    fn running_channel(&mut self, limit: u64) {
        write_inst_vm(&mut self.vram, INST, PD, limit);
        self.vram.guest32(INST + u64::from(ramfc::USERD_LO), 0x6_0000 | target::VRAM);
        self.vram.guest32(INST + u64::from(ramfc::SIGNATURE), ramfc::SIGNATURE_VALUE);
        self.vram.guest64(PD, vm::pde(LPT, vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
        self.vram.guest64(LPT, vram_pte(0x30_0000, false));
        self.bus_master();
        assert!(self.bar0(pmc::ENABLE, pmc::ENABLE_ALL));
        assert!(self.bar0(pfifo::CTRL, pfifo::CTRL_ENABLE));
        assert!(self.bar0(pfifo::ChanInst::offset(0), pfifo::ChanInst::bound(INST).raw()));
        self.vram.guest32(RUNLIST, 0);
        self.vram.guest32(RUNLIST + 4, pfifo::RUNLIST_ENTRY_WORD1);
        assert!(self.bar0(pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(RUNLIST).with_target(target::VRAM).raw()));
        assert!(self.bar0(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(1).raw()));
    }
}

/// BAR3 page `page` shown through its slot, onto guest VRAM page `guest`.
fn mapped(page: u64, guest: u64) -> MapDecision {
    MapDecision::Map { host_bar1_off: SLOTS.bar_off + page, host_page: GUEST_BASE + guest, guest_page: guest }
}

#[test]
fn decide_maps_only_own_writable_vram() {
    let s = common::slice();
    let t = |addr, aperture, read_only| Some(Ok(Translation { addr, aperture, read_only, size: PageSize::Big }));
    assert_eq!(decide(t(0x10_1234, Aperture::Vram, false), 0x3000, &s, &SLOTS), mapped(0x3000, 0x10_1000));
    assert_eq!(decide(None, 0x20_0000, &s, &SLOTS), mapped(0x20_0000, 0x20_0000), "direct mode: offset = guest VRAM");
    assert_eq!(decide(t(0x10_0000, Aperture::Vram, true), 0, &s, &SLOTS), MapDecision::Refuse(Refusal::ReadOnly));
    for ap in [Aperture::SysCoherent, Aperture::SysNonCoherent, Aperture::Peer] {
        assert_eq!(decide(t(0x10_0000, ap, false), 0, &s, &SLOTS), MapDecision::Refuse(Refusal::SystemMemory));
    }
    // Past the partition's end: the next vGPU's VRAM or the host's, never mapped.
    for a in [GUEST_SIZE, GUEST_SIZE + PAGE, u64::MAX & !(PAGE - 1)] {
        assert_eq!(decide(t(a, Aperture::Vram, false), 0, &s, &SLOTS), MapDecision::Refuse(Refusal::OutsidePartition), "{a:#x}");
    }
    assert_eq!(decide(None, GUEST_SIZE, &s, &SLOTS), MapDecision::Refuse(Refusal::OutsidePartition), "direct mode past the partition");
    assert_eq!(decide(t(GUEST_SIZE - PAGE, Aperture::Vram, false), 0, &s, &SLOTS), mapped(0, GUEST_SIZE - PAGE), "last own page");
    assert_eq!(decide(Some(Err(gpuvm_shadow_tests::pagetable::Fault::PageNotPresent)), 0, &s, &SLOTS), MapDecision::Refuse(Refusal::NotMapped));
    // A BAR page without a slot is refused.
    let few = Slots { bar_off: 0, len: MIB };
    assert_eq!(decide(t(0, Aperture::Vram, false), MIB, &s, &few), MapDecision::Refuse(Refusal::NoSlot));
    assert_eq!(decide(t(0, Aperture::Vram, false), MIB - PAGE, &s, &few), MapDecision::Map { host_bar1_off: MIB - PAGE, host_page: GUEST_BASE, guest_page: 0 });
}

/// Each vGPU's slots are its own: the slot ranges of the units never overlap, start after the
/// host's USERD pages, and each is as large as the BAR3 of a vGPU of that many units.
#[test]
fn slots_of_different_units_are_disjoint() {
    use gpuvm_shadow_tests::gf100::pci;
    use gpuvm_shadow_tests::host_init::{layout, remap_slots, REMAP_BAR1_VA};
    assert!(REMAP_BAR1_VA >= layout::USERD_BAR1_VA + layout::USERD_SIZE);
    for units in [1u32, 2, 4, 8] {
        let share = 8 / units;
        for first in (0..8).step_by(units as usize) {
            let s = remap_slots(first, units);
            assert_eq!(s.len, pci::BAR3_SIZE / u64::from(share), "as many slots as a gpuvm-{share} BAR3 has pages");
            assert!(s.bar_off + s.len <= pci::BAR1_SIZE);
            for other in 0..8u32 {
                if other < first || other >= first + units {
                    let o = remap_slots(other, 1);
                    assert!(o.bar_off + o.len <= s.bar_off || o.bar_off >= s.bar_off + s.len, "unit {other} vs {first}+{units}");
                }
            }
        }
    }
}

/// The attacker's BAR3 page table points at another vGPU's VRAM, the host's, system memory,
/// a read-only page: every fault is refused and nothing is mapped; its own data page maps.
#[test]
fn attacker_bar_ptes_are_refused() {
    let mut r = Rig::new();
    r.bar3_pte(0, vram_pte(0x10_0000, false));
    r.bar3_pte(1, vram_pte(GUEST_SIZE, false)); // the next partition
    r.bar3_pte(2, vram_pte(GUEST_SIZE + 64 * MIB, false)); // far beyond: host or another GPU user
    r.bar3_pte(3, sys_pte(0x1000));
    r.bar3_pte(4, vram_pte(0x20_0000, true));
    r.bar3_pte(5, vram_pte(GUEST_SIZE - BIG, false)); // its own last big page
    r.flush(Some(BAR3_PD));
    assert_eq!(r.map(Bar::Bar3, 0x2345), mapped(0x2000, 0x10_2000));
    assert_eq!(r.map(Bar::Bar3, BIG + 0x10), MapDecision::Refuse(Refusal::OutsidePartition));
    assert_eq!(r.map(Bar::Bar3, 2 * BIG), MapDecision::Refuse(Refusal::OutsidePartition));
    assert_eq!(r.map(Bar::Bar3, 3 * BIG), MapDecision::Refuse(Refusal::SystemMemory));
    assert_eq!(r.map(Bar::Bar3, 4 * BIG), MapDecision::Refuse(Refusal::ReadOnly));
    assert_eq!(r.map(Bar::Bar3, 5 * BIG + PAGE), mapped(5 * BIG + PAGE, GUEST_SIZE - BIG + PAGE));
    assert_eq!(r.map(Bar::Bar3, 6 * BIG), MapDecision::Refuse(Refusal::NotMapped), "no PTE");
    assert_eq!(r.map(Bar::Bar3, BAR3_SIZE), MapDecision::Refuse(Refusal::OutsideBar));
    assert_eq!(r.map(Bar::Bar1, 0), MapDecision::Refuse(Refusal::NotOffered), "BAR1 (doorbells) is never mapped");
    r.host.remap = false;
    assert_eq!(r.map(Bar::Bar3, 0), MapDecision::Refuse(Refusal::NotOffered), "bar_remap off");
    assert_eq!(r.med.stats.bar_maps, 2);
    assert_eq!(r.med.stats.bar_refused, 8);
}

/// A PTE change + flush of the BAR's PD, a BAR rebind and a reset remove the mappings before
/// the mediator answers again; the refault gets the new page. A flush of another PD (a channel
/// VM) leaves them.
#[test]
fn flush_rebind_and_reset_zap_the_old_mappings() {
    let mut r = Rig::new();
    r.bar3_pte(0, vram_pte(0x10_0000, false));
    r.flush(Some(BAR3_PD));
    assert_eq!(r.map(Bar::Bar3, 0), mapped(0, 0x10_0000));
    r.host.ops.clear();
    r.flush(Some(0x40_0000));
    assert!(!r.host.ops.contains(&Op::Zap(Bar::Bar3)), "another PD's flush keeps BAR3's mappings: {:?}", r.host.ops);
    r.bar3_pte(0, vram_pte(0x30_0000, false));
    r.flush(Some(BAR3_PD));
    assert_eq!(r.host.ops, [Op::Zap(Bar::Bar3)], "the old page is unreachable once the flush is done");
    assert_eq!(r.map(Bar::Bar3, 0), mapped(0, 0x30_0000), "refault follows the new PTE");
    r.host.ops.clear();
    r.flush(None);
    assert!(r.host.ops.contains(&Op::Zap(Bar::Bar3)), "a flush of every PD zaps too: {:?}", r.host.ops);
    assert_eq!(r.map(Bar::Bar3, 0), mapped(0, 0x30_0000));
    r.host.ops.clear();
    assert!(r.bar0(pbus::BAR3_INST, pbus::BarInst::vm(BAR3_INST).raw()));
    assert_eq!(r.host.ops, [Op::Zap(Bar::Bar3)], "rebind");
    assert_eq!(r.map(Bar::Bar3, 0), mapped(0, 0x30_0000));
    r.host.ops.clear();
    r.reset();
    assert_eq!(r.host.ops.get(1), Some(&Op::Zap(Bar::Bar3)), "reset zaps BAR1 and BAR3 first: {:?}", r.host.ops);
    assert_eq!(r.med.stats.bar_zaps, 1 + 3 + 1 + 2, "set-up bind, three BAR3 flushes, rebind, reset (BAR1 and BAR3)");
    // After the reset BAR3 is in direct mode again: offset = guest VRAM address.
    assert_eq!(r.map(Bar::Bar3, 0x5000), mapped(0x5000, 0x5000));
}

/// A channel's page table sits in a page the guest writes through a mapping. Its PTEs written
/// unseen still reach the shadow at the next use after a flush, because the host reports the
/// mapped page before the sync (an entry pointing outside the partition is refused there);
/// without that report the same unseen write is not re-read (write tracking), which shows the
/// test can fail.
#[test]
fn unseen_page_table_writes_reach_the_shadow_once_a_page_is_mapped() {
    for mapped in [true, false] {
        let mut r = Rig::new();
        r.bar3_pte(0, vram_pte(0x10_0000, false));
        r.flush(Some(BAR3_PD));
        if !mapped {
            r.host.remap = false;
        }
        r.running_channel(128 * MIB - 1);
        let refused = r.med.stats.refused;
        // Unseen: PTE 1 now points past the partition (the next vGPU's VRAM), written through
        // BAR3 page 0, which maps the table's page.
        r.bar3_pte(0, vram_pte(LPT, false));
        r.flush(Some(BAR3_PD));
        if mapped {
            assert!(matches!(r.map(Bar::Bar3, 0), MapDecision::Map { guest_page: LPT, .. }));
            r.host.mapped.push(LPT);
        }
        r.vram.guest64(LPT + vm::PTE_SIZE, vram_pte(GUEST_SIZE, false));
        r.flush(Some(PD));
        assert!(r.bar0(pfifo::KICK, 0));
        let seen = r.med.stats.refused - refused;
        if mapped {
            assert_eq!(seen, 1, "the unseen entry was re-read at the kick and refused");
            assert!(r.host.mapped.is_empty(), "the mapped page was taken");
            assert_eq!(r.med.stats.bar_pages_taken, 1);
        } else {
            assert_eq!(seen, 0, "tracked: an unseen write is not re-read");
        }
        let _ = inst::SIZE;
    }
}

/// Only pages holding page tables are taken at a sync: a mapped page of plain data stays
/// mapped (no refault for the guest). If the guest later points a PDE at that page, the sync
/// that finds the PDE reads the new table whole (what was written through the mapping before
/// is seen: an entry past the partition is refused), and from the next sync on the page is
/// taken like any table page.
#[test]
fn a_mapped_page_stays_mapped_until_it_holds_a_table() {
    let mut r = Rig::new();
    const DATA: u64 = 0x22_0000;
    r.running_channel(256 * MIB - 1);
    // A data page (the guest's pushbuffer, say) and the PD's page are mapped.
    r.host.mapped.extend([DATA, PD]);
    r.flush(Some(PD));
    assert!(r.bar0(pfifo::KICK, 0));
    assert_eq!(r.host.mapped, [DATA], "the PD's page was taken, the data page kept mapped");
    assert_eq!(r.med.stats.bar_pages_taken, 1);
    // Unseen, through the mappings: the data page gets an entry past the partition, then PDE 1
    // names it as a big-page table (the PD's page is mapped again).
    r.vram.guest64(DATA + vm::PTE_SIZE, vram_pte(GUEST_SIZE, false));
    r.vram.guest64(PD + vm::PDE_SIZE, vm::pde(DATA, vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
    r.host.mapped.push(PD);
    let refused = r.med.stats.refused;
    r.flush(Some(PD));
    assert!(r.bar0(pfifo::KICK, 0));
    assert_eq!(r.med.stats.refused - refused, 1, "the new table was read whole, its unseen entry refused");
    assert_eq!(r.host.mapped, [DATA], "not yet a table when offered: still mapped");
    // Now it holds a table: the next sync takes it.
    r.flush(Some(PD));
    assert!(r.bar0(pfifo::KICK, 0));
    assert!(r.host.mapped.is_empty(), "the new table's page was taken");
    assert_eq!(r.med.stats.bar_pages_taken, 3);
}

/// Lazy shadowing: a channel made runnable may be scheduled before any doorbell, so a flush
/// the guest made before is applied when the channel becomes runnable (item 3 of issue 13:
/// the runnable sync point); a flush alone leaves the shadow stale until then.
#[test]
fn making_a_channel_runnable_syncs_its_space_first() {
    let mut r = Rig::new();
    r.host.remap = false;
    write_inst_vm(&mut r.vram, INST, PD, 128 * MIB - 1);
    r.vram.guest32(INST + u64::from(ramfc::USERD_LO), 0x6_0000 | target::VRAM);
    r.vram.guest32(INST + u64::from(ramfc::SIGNATURE), ramfc::SIGNATURE_VALUE);
    r.vram.guest64(PD, vm::pde(LPT, vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
    r.vram.guest64(LPT, vram_pte(0x30_0000, false));
    r.bus_master();
    assert!(r.bar0(pmc::ENABLE, pmc::ENABLE_ALL));
    assert!(r.bar0(pfifo::CTRL, pfifo::CTRL_ENABLE));
    assert!(r.bar0(pfifo::ChanInst::offset(0), pfifo::ChanInst::bound(INST).raw()));
    // A PTE written through PRAMIN (seen) to point past the partition, then a flush: lazy, so
    // nothing is read yet.
    let refused = r.med.stats.refused;
    let (base, off) = pbus::PraminBase::window(LPT + vm::PTE_SIZE);
    assert!(r.bar0(pbus::PraminBase::OFFSET, base.raw()));
    assert!(r.bar0(off, vram_pte(GUEST_SIZE, false) as u32));
    r.flush(Some(PD));
    assert_eq!(r.med.stats.refused, refused, "lazy: the flush alone synced nothing");
    assert!(r.bar0(pfifo::ChanState::offset(0), pfifo::ChanState::INITIAL.raw()));
    assert_eq!(r.med.stats.refused, refused + 1, "made runnable: the stale entry was synced (and refused) first");
}
