//! Shadow page tables: first build, incremental sync against a full rebuild, lazy against
//! naive syncing, isolation, allocation failure and release.

mod common;

use common::*;
use gpuvm_shadow_tests::gf100::vm;
use gpuvm_shadow_tests::memory::{GuestVram, Vram};
use gpuvm_shadow_tests::pagetable::*;
use gpuvm_shadow_tests::partition::Slice;
use gpuvm_shadow_tests::shadow_vm::{PdeShadow, ShadowVm, TableAlloc, TableMemory};
use gpuvm_shadow_tests::sync_policy::{before_use, on_flush, SyncEnv, SyncMode, UsePoint};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

const PD: u64 = 0x10_0000;
const LPT_SLOTS: [u64; 3] = [0x20_0000, 0x20_2000, 0x20_4000];
const SPT_SLOTS: [u64; 3] = [0x24_0000, 0x28_0000, 0x2c_0000];
/// Table pointers a hostile guest might write: past the end, straddling it, unaligned.
const HOSTILE_TABLES: [u64; 3] = [GUEST_SIZE, GUEST_SIZE - 0x1000, 0x20_0800];
/// Two full PDEs and a last one of 16 MiB (like the guest driver's channel VM).
const LIMIT: u64 = 2 * PDE_SPAN + (16 << 20) - 1;

type Shadow = ShadowVm<Vec<PdeShadow>>;

/// The whole host VRAM as a "partition", to walk shadow tables with the same walker.
fn host_view() -> Slice {
    Slice { vram_base: 0, vram_size: HOST_VRAM, ..slice() }
}

fn new_shadow(v: &mut ByteVram, a: &mut Alloc, tracked: bool, cap: usize) -> Shadow {
    ShadowVm::new(VmDesc { pd: PD, limit: LIMIT }, vec![PdeShadow::default(); cap], tracked, v, a).unwrap()
}

/// The shadow's contents without its host table addresses: per PDE, the presence/size/vol
/// bits and every reachable entry of each table.
fn dump(s: &Shadow, v: &ByteVram) -> Vec<(u64, Vec<u64>, Vec<u64>)> {
    let d = VmDesc { pd: s.pd_host(), limit: s.limit() };
    (0..d.pde_count())
        .map(|i| {
            let raw = v.read64(s.pd_host() + i * vm::PDE_SIZE);
            let pde = Pde::decode(raw);
            let entries = |size: PageSize| -> Vec<u64> {
                match pde.table(size) {
                    Some(t) => (0..s.desc().reachable(i, size, pde.size_shift)).map(|e| v.read64(t.addr + e * 8)).collect(),
                    None => Vec::new(),
                }
            };
            let shape = raw & (vm::PDE_APER_MASK | vm::PDE_APER_MASK << 32 | vm::PDE_SIZE_MASK << vm::PDE_SIZE_SHIFT | vm::PDE_VOL_BIG | vm::PDE_VOL_SMALL);
            (shape, entries(PageSize::Big), entries(PageSize::Small))
        })
        .collect()
}

fn shadow_walk(s: &Shadow, v: &ByteVram, va: u64) -> Result<Translation, Fault> {
    translate(&GuestVram::new(v, host_view()), &VmDesc { pd: s.pd_host(), limit: s.limit() }, va)
}

fn sync(s: &mut Shadow, v: &mut ByteVram, sys: &mut FakeSys, a: &mut Alloc) {
    s.sync(v, &slice(), sys, a);
}

/// Guest tables like the guest driver's channel VM, and its limit: 129 PDEs, big pages at
/// PDE 4 (VA 512 MiB) with one VRAM PTE, small pages in the last 16 MiB with one system-memory
/// PTE at the end.
fn driver_channel_vm() -> (ByteVram, u64) {
    let mut v = ByteVram::new();
    v.guest64(PD + 4 * 8, vm::pde(LPT_SLOTS[0], vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
    v.guest64(PD + 128 * 8, vm::pde(0, vm::PDE_APER_NONE, SPT_SLOTS[0], vm::PDE_APER_VRAM));
    v.guest64(LPT_SLOTS[0], vram_pte(0x40_0000, false));
    v.guest64(SPT_SLOTS[0] + 8 * 4095, sys_pte(0x3000));
    (v, (16u64 << 30) + (16 << 20) - 1)
}

#[test]
fn first_sync_builds_the_guest_drivers_channel_vm() {
    let (mut v, limit) = driver_channel_vm();
    v.writable = SHADOW_BASE..SHADOW_END;
    let mut a = Alloc::new(SHADOW_BASE..SHADOW_END);
    let mut sys = FakeSys::new();
    let mut s: Shadow = ShadowVm::new(VmDesc { pd: PD, limit }, vec![PdeShadow::default(); 8192], true, &mut v, &mut a).unwrap();
    assert!(s.needs_sync());
    sync(&mut s, &mut v, &mut sys, &mut a);
    assert!(!s.needs_sync());
    assert_eq!(s.limit(), limit);
    // PD of 129 entries (one page) + one 8 KiB big table + a 4096-entry small table (32 KiB).
    assert_eq!(a.live.values().sum::<u64>(), 0x1000 + 0x2000 + 0x8000);
    // 129 PDEs, 1024 + 4096 PTEs read.
    assert_eq!(s.stats.guest_reads, 129 + 1024 + 4096);
    let t = shadow_walk(&s, &v, 4 * PDE_SPAN + 0x123).unwrap();
    assert_eq!((t.addr, t.size), (GUEST_BASE + 0x40_0123, PageSize::Big));
    let t = shadow_walk(&s, &v, limit - 0xfff).unwrap();
    assert_eq!((t.addr, t.aperture), (SYS_HOST_BASE + 0x3000, Aperture::SysCoherent));
    assert_eq!(shadow_walk(&s, &v, limit + 1), Err(Fault::LimitExceeded));
    // A flush with nothing written costs nothing in tracked mode.
    let before = s.stats;
    s.flush();
    sync(&mut s, &mut v, &mut sys, &mut a);
    assert_eq!((s.stats.guest_reads, s.stats.shadow_writes), (before.guest_reads, before.shadow_writes));
    // One PTE write re-reads one entry.
    v.guest64(LPT_SLOTS[0] + 8, vram_pte(0x60_0000, true));
    assert!(s.note_guest_write(LPT_SLOTS[0] + 8));
    assert!(!s.note_guest_write(0x7_0000));
    s.flush();
    sync(&mut s, &mut v, &mut sys, &mut a);
    assert_eq!(s.stats.guest_reads, before.guest_reads + 1);
    let t = shadow_walk(&s, &v, 4 * PDE_SPAN + (1 << 17)).unwrap();
    assert_eq!((t.addr, t.read_only), (GUEST_BASE + 0x60_0000, true));
    s.release(&mut a);
    assert!(a.live.is_empty());
}

/// A page written unseen (through a BAR mapping) is reported whole: every PD and page-table
/// entry in it is re-read at the next sync, nothing outside it, and a change there reaches the
/// shadow.
#[test]
fn a_page_written_unseen_is_re_read_whole() {
    let mut v = ByteVram::new();
    let limit = (16u64 << 30) + (16 << 20) - 1;
    v.guest64(PD + 4 * 8, vm::pde(LPT_SLOTS[0], vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
    v.guest64(PD + 128 * 8, vm::pde(0, vm::PDE_APER_NONE, SPT_SLOTS[0], vm::PDE_APER_VRAM));
    v.guest64(LPT_SLOTS[0], vram_pte(0x40_0000, false));
    v.writable = SHADOW_BASE..SHADOW_END;
    let mut a = Alloc::new(SHADOW_BASE..SHADOW_END);
    let mut sys = FakeSys::new();
    let mut s: Shadow = ShadowVm::new(VmDesc { pd: PD, limit }, vec![PdeShadow::default(); 8192], true, &mut v, &mut a).unwrap();
    sync(&mut s, &mut v, &mut sys, &mut a);
    let before = s.stats.guest_reads;
    // Unseen: the second page of the 8 KiB big-page table (entries 512..1024) changes.
    v.guest64(LPT_SLOTS[0] + 0x1000 + 8, vram_pte(0x60_0000, true));
    assert!(!s.note_guest_range(0x7_0000, 0x1000), "a page holding no table");
    assert!(s.note_guest_range(LPT_SLOTS[0] + 0x1000, 0x1000));
    s.flush();
    sync(&mut s, &mut v, &mut sys, &mut a);
    assert_eq!(s.stats.guest_reads, before + 512, "the page's 512 entries, nothing else");
    let t = shadow_walk(&s, &v, 4 * PDE_SPAN + 513 * (1 << 17)).unwrap();
    assert_eq!((t.addr, t.read_only), (GUEST_BASE + 0x60_0000, true));
    // The PD's page: its 129 PDEs are re-read.
    let before = s.stats.guest_reads;
    assert!(s.note_guest_range(PD, 0x1000));
    s.flush();
    sync(&mut s, &mut v, &mut sys, &mut a);
    assert_eq!(s.stats.guest_reads - before, 129, "every PDE re-read (unchanged: their tables are not)");
    s.release(&mut a);
}

/// Shadow tables in host system memory (the module's choice): an allocator whose blocks are
/// bus addresses of its own memory.
struct SysTables {
    a: Alloc,
    mem: SysWords,
}

struct SysWords(BTreeMap<u64, u32>);

const SYS_TABLES: u64 = 0x8_0000_0000;

impl TableMemory for SysWords {
    fn read32(&self, bus: u64) -> u32 {
        assert!((SYS_TABLES..SYS_TABLES + SHADOW_END).contains(&bus), "table read outside the table memory: {bus:#x}");
        self.0.get(&bus).copied().unwrap_or(0xdead_beef)
    }
    fn write32(&mut self, bus: u64, v: u32) {
        assert!((SYS_TABLES..SYS_TABLES + SHADOW_END).contains(&bus), "table write outside the table memory: {bus:#x}");
        self.0.insert(bus, v);
    }
}

impl TableAlloc for SysTables {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        self.a.alloc(bytes).map(|a| a + SYS_TABLES)
    }
    fn free(&mut self, addr: u64, bytes: u64) {
        self.a.free(addr - SYS_TABLES, bytes)
    }
    fn memory(&mut self) -> Option<&mut dyn TableMemory> {
        Some(&mut self.mem)
    }
}

#[test]
fn tables_in_system_memory_are_written_there_and_named_sys_coherent() {
    let (mut v, limit) = driver_channel_vm();
    // Host VRAM is read-only to the shadow code here: every table word goes to system memory.
    v.writable = 0..0;
    let mut t = SysTables { a: Alloc::new(SHADOW_BASE..SHADOW_END), mem: SysWords(BTreeMap::new()) };
    let mut sys = FakeSys::new();
    let mut s: Shadow = ShadowVm::new(VmDesc { pd: PD, limit }, vec![PdeShadow::default(); 8192], true, &mut v, &mut t).unwrap();
    assert!(s.pd_in_sysmem());
    assert!(s.pd_host() >= SYS_TABLES, "the PD is a bus address of the table memory");
    s.sync(&mut v, &slice(), &mut sys, &mut t);
    assert_eq!(v.writes.get(), 0, "no host VRAM write");
    assert!(s.stats.shadow_writes > 0);
    let rd64 = |m: &SysWords, a: u64| u64::from(m.read32(a)) | u64::from(m.read32(a + 4)) << 32;
    let big = Pde::decode(rd64(&t.mem, s.pd_host() + 4 * 8));
    let small = Pde::decode(rd64(&t.mem, s.pd_host() + 128 * 8));
    let (b, sm) = (big.big.expect("big-page table"), small.small.expect("small-page table"));
    assert_eq!((b.aperture, sm.aperture), (Aperture::SysCoherent, Aperture::SysCoherent));
    assert!(b.vol && sm.vol, "host-memory tables are walked VOL, as nouveau marks them");
    assert!(big.small.is_none() && small.big.is_none());
    assert_eq!(Pte::decode(rd64(&t.mem, b.addr)).map(|p| (p.addr, p.aperture)), Some((GUEST_BASE + 0x40_0000, Aperture::Vram)), "VRAM page moved by the partition base");
    assert_eq!(Pte::decode(rd64(&t.mem, sm.addr + 8 * 4095)).map(|p| (p.addr, p.aperture)), Some((SYS_HOST_BASE + 0x3000, Aperture::SysCoherent)));
    // A guest edit plus flush is written to system memory too.
    v.guest64(LPT_SLOTS[0] + 8, vram_pte(0x50_0000, true));
    assert!(s.note_guest_write(LPT_SLOTS[0] + 8));
    s.flush();
    s.sync(&mut v, &slice(), &mut sys, &mut t);
    assert_eq!(Pte::decode(rd64(&t.mem, b.addr + 8)).map(|p| (p.addr, p.read_only)), Some((GUEST_BASE + 0x50_0000, true)));
    assert_eq!(v.writes.get(), 0, "still no host VRAM write");
    s.release(&mut t);
    assert!(t.a.live.is_empty(), "every table given back");
}

#[test]
fn hostile_guest_tables_stay_inside_the_partition() {
    let mut v = ByteVram::new();
    // PDE 0: big table outside the partition, small table in range. PDE 1: small table that
    // straddles the end. PDE 2: table in system memory.
    v.guest64(PD, vm::pde(GUEST_SIZE, vm::PDE_APER_VRAM, SPT_SLOTS[0], vm::PDE_APER_VRAM));
    v.guest64(PD + 8, vm::pde(0, vm::PDE_APER_NONE, GUEST_SIZE - 0x1000, vm::PDE_APER_VRAM));
    v.guest64(PD + 16, vm::pde(0x1000, vm::PDE_APER_SYS_COHERENT, 0, vm::PDE_APER_NONE));
    v.guest64(SPT_SLOTS[0], vram_pte(GUEST_SIZE, false)); // page outside
    v.guest64(SPT_SLOTS[0] + 8, vram_pte(GUEST_SIZE - 0x1000, false)); // last page: fine
    v.guest64(SPT_SLOTS[0] + 16, sys_pte(SYS_SIZE)); // unmapped sysmem
    v.guest64(SPT_SLOTS[0] + 24, vm::pte(0x1000, vm::PTE_APER_PEER, false, 0));
    v.writable = SHADOW_BASE..SHADOW_END;
    let mut a = Alloc::new(SHADOW_BASE..SHADOW_END);
    let mut sys = FakeSys::new();
    let mut s = new_shadow(&mut v, &mut a, true, 8);
    sync(&mut s, &mut v, &mut sys, &mut a);
    // Refused entries are written not VALID: the walk faults as for an absent page.
    assert_eq!(shadow_walk(&s, &v, 0), Err(Fault::PageNotPresent));
    assert_eq!(shadow_walk(&s, &v, 0x1000).unwrap().addr, GUEST_BASE + GUEST_SIZE - 0x1000);
    assert_eq!(shadow_walk(&s, &v, 0x2000), Err(Fault::PageNotPresent));
    assert_eq!(shadow_walk(&s, &v, 0x3000), Err(Fault::PageNotPresent));
    assert_eq!(shadow_walk(&s, &v, 0x4000), Err(Fault::PageNotPresent));
    assert_eq!(shadow_walk(&s, &v, PDE_SPAN), Err(Fault::PtNotPresent));
    assert_eq!(shadow_walk(&s, &v, 2 * PDE_SPAN), Err(Fault::PtNotPresent));
    // 3 refused tables + 3 refused PTEs.
    assert_eq!(s.stats.refused, 6);
    // Only the in-range small table was allocated (plus the PD).
    assert_eq!(a.live.len(), 2);
    s.release(&mut a);
}

#[test]
fn huge_limit_is_cut_to_the_storage_and_alloc_failure_leaves_the_half_absent() {
    let mut v = ByteVram::new();
    v.guest64(PD, vm::pde(LPT_SLOTS[0], vm::PDE_APER_VRAM, SPT_SLOTS[0], vm::PDE_APER_VRAM));
    v.guest64(LPT_SLOTS[0], vram_pte(0, false));
    v.writable = SHADOW_BASE..SHADOW_END;
    let mut a = Alloc::new(SHADOW_BASE..SHADOW_END);
    let mut sys = FakeSys::new();
    let d = VmDesc::from_words(PD as u32, 0, u32::MAX, u32::MAX).unwrap();
    let mut s: Shadow = ShadowVm::new(d, vec![PdeShadow::default(); 4], true, &mut v, &mut a).unwrap();
    assert_eq!(s.limit(), 4 * PDE_SPAN - 1);
    a.fail = true;
    sync(&mut s, &mut v, &mut sys, &mut a);
    assert_eq!(s.stats.alloc_failures, 2);
    assert_eq!(shadow_walk(&s, &v, 0), Err(Fault::PtNotPresent));
    // The next full re-walk retries.
    a.fail = false;
    s.invalidate_all();
    sync(&mut s, &mut v, &mut sys, &mut a);
    assert_eq!(shadow_walk(&s, &v, 0x10).unwrap().addr, GUEST_BASE + 0x10);
    s.release(&mut a);
    assert!(a.live.is_empty());
    a.fail = true;
    assert!(ShadowVm::new(d, vec![PdeShadow::default(); 4], true, &mut v, &mut a).is_none());
}

/// Host VRAM as the GPU sees it while a sync runs: after every word written, the shadow PD
/// reaches only live tables big enough for the entries its SIZE and limit expose, and every
/// watched VA translates into the partition or mapped system memory, or faults.
struct Watched<'a> {
    v: &'a mut ByteVram,
    live: Rc<RefCell<BTreeMap<u64, u64>>>,
    /// Tables the PD reached at the last write (a free must not be one of them).
    reached: Rc<RefCell<BTreeSet<u64>>>,
    vm: VmDesc,
    vas: Vec<u64>,
}

impl Watched<'_> {
    fn check(&self) {
        let live = self.live.borrow();
        let mut reached = self.reached.borrow_mut();
        reached.clear();
        for i in 0..self.vm.pde_count() {
            let pde = Pde::decode(self.v.read64(self.vm.pd + i * vm::PDE_SIZE));
            for size in PageSize::ALL {
                let Some(t) = pde.table(size) else { continue };
                let bytes = self.vm.reachable(i, size, pde.size_shift) * vm::PTE_SIZE;
                let block = live.range(..=t.addr).next_back().filter(|(&a, &l)| t.addr + bytes <= a + l);
                assert!(block.is_some(), "PDE {i} = {pde:x?} reaches {bytes:#x} bytes of {size:?} table {:#x}, not a live block that big", t.addr);
                reached.insert(t.addr);
            }
        }
        let host = GuestVram::new(&*self.v, host_view());
        for &va in &self.vas {
            let Ok(t) = translate(&host, &self.vm, va) else { continue };
            let ok = match t.aperture {
                Aperture::Vram => (GUEST_BASE..GUEST_BASE + GUEST_SIZE).contains(&t.addr),
                Aperture::SysCoherent | Aperture::SysNonCoherent => (SYS_HOST_BASE..SYS_HOST_BASE + SYS_SIZE).contains(&t.addr),
                Aperture::Peer => false,
            };
            assert!(ok, "VA {va:#x} translates to {t:x?} mid-sync");
        }
    }
}

impl Vram for Watched<'_> {
    fn read32(&self, pa: u64) -> u32 {
        self.v.read32(pa)
    }
    fn write32(&mut self, pa: u64, x: u32) {
        self.v.write32(pa, x);
        self.check();
    }
}

/// The test allocator, with its live blocks shared with `Watched`.
struct SharedAlloc {
    a: Alloc,
    live: Rc<RefCell<BTreeMap<u64, u64>>>,
    reached: Rc<RefCell<BTreeSet<u64>>>,
}

impl TableAlloc for SharedAlloc {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        let at = self.a.alloc(bytes)?;
        self.live.borrow_mut().insert(at, bytes);
        Some(at)
    }
    fn free(&mut self, at: u64, bytes: u64) {
        assert!(!self.reached.borrow().contains(&at), "table {at:#x} freed while the shadow PD points at it");
        self.live.borrow_mut().remove(&at);
        self.a.free(at, bytes)
    }
}

/// A guest that re-points a PDE, changes its SIZE and flips live PTEs between VRAM and system
/// memory, while the GPU may walk the shadow at any moment: a new table is filled before its
/// PDE points at it, a replaced one is freed only at `reclaim` (after the host TLB flush),
/// a SIZE change never pairs a table with a larger size, and a live PTE is never a mix of
/// the old and new entry (regressions found by the mediator fuzz, `mediator_fuzz.rs`).
#[test]
fn the_gpu_never_walks_a_half_written_or_freed_shadow() {
    let mut bytes = ByteVram::new();
    // Stale shadows of an earlier user in the pool: VALID entries at host address 0.
    for pa in (SHADOW_BASE..SHADOW_END).step_by(8) {
        bytes.poke64(pa, vram_pte(0, false));
    }
    bytes.writable = SHADOW_BASE..SHADOW_END;
    let fill = |v: &mut ByteVram, t: u64, n: u64, sys_first: bool| {
        for e in 0..n {
            let sys = (e % 2 == 0) == sys_first;
            v.guest64(t + 8 * e, if sys { sys_pte(e * 0x1000) } else { vram_pte(e * 0x1000, false) });
        }
    };
    fill(&mut bytes, SPT_SLOTS[0], 16, true);
    fill(&mut bytes, SPT_SLOTS[1], 16, false);
    bytes.guest64(LPT_SLOTS[0], vram_pte(0x20_0000, false));
    bytes.guest64(LPT_SLOTS[1], vram_pte(0x40_0000, false));
    let pde = |big: u64, small: u64, size: u64| vm::pde(big, vm::PDE_APER_VRAM, small, vm::PDE_APER_VRAM) | size << vm::PDE_SIZE_SHIFT;
    bytes.guest64(PD, pde(LPT_SLOTS[0], SPT_SLOTS[0], 0));
    let live = Rc::new(RefCell::new(BTreeMap::new()));
    let reached = Rc::new(RefCell::new(BTreeSet::new()));
    let mut a = SharedAlloc { a: Alloc::new(SHADOW_BASE..SHADOW_END), live: live.clone(), reached: reached.clone() };
    let mut sys = FakeSys::new();
    // 32 MiB: SIZE 3 (4096 small entries) reaches half of what SIZE 0 does.
    let d = VmDesc { pd: PD, limit: (32 << 20) - 1 };
    let mut s: Shadow = ShadowVm::new(d, vec![PdeShadow::default(); 1], true, &mut bytes, &mut a).unwrap();
    let vas: Vec<u64> = (0..16).map(|p| p << 12).chain((0..2).map(|p| p << 17)).collect();
    let mut v = Watched { v: &mut bytes, live, reached, vm: VmDesc { pd: s.pd_host(), limit: s.limit() }, vas };
    let mut step = |s: &mut Shadow, v: &mut Watched, writes: &[(u64, u64)]| {
        for &(gpa, x) in writes {
            v.v.guest64(gpa, x);
            s.note_guest_write(gpa);
        }
        s.flush();
        s.sync(v, &slice(), &mut sys, &mut a);
        let retired = a.live.borrow().len();
        s.reclaim(&mut a);
        retired - a.live.borrow().len()
    };
    assert_eq!(step(&mut s, &mut v, &[]), 0, "first build");
    // Both tables replaced and SIZE 0 -> 3: the old ones outlive the sync, until reclaim.
    assert_eq!(step(&mut s, &mut v, &[(PD, pde(LPT_SLOTS[1], SPT_SLOTS[1], 3))]), 2);
    // Live entries flip between VRAM and system memory.
    let flips: Vec<(u64, u64)> = (0..16).map(|e| (SPT_SLOTS[1] + 8 * e, if e % 2 == 0 { sys_pte(e * 0x1000) } else { vram_pte(e * 0x1000, true) })).collect();
    assert_eq!(step(&mut s, &mut v, &flips), 0);
    // SIZE 3 -> 0: the small table doubles.
    assert_eq!(step(&mut s, &mut v, &[(PD, pde(LPT_SLOTS[0], SPT_SLOTS[0], 0))]), 2);
    assert_eq!(shadow_walk(&s, v.v, 0x1000).unwrap().addr, GUEST_BASE + 0x1000);
    // Unbound (no channel uses it any more): everything goes back.
    a.reached.borrow_mut().clear();
    s.release(&mut a);
    assert!(a.a.live.is_empty());
}

/// A table pointer choice for a PDE half.
#[derive(Clone, Copy, Debug)]
enum Sel {
    None,
    Slot(usize),
    Hostile(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Pde { i: u64, big: Sel, small: Sel, size: u64 },
    Pte { big: bool, slot: usize, index: u64, value: u64 },
    Stray { gpa: u64, value: u32 },
    /// A TLB flush; `then_use` = followed by a doorbell, after which all shadows compare.
    Flush { then_use: bool },
}

fn sel() -> impl Strategy<Value = Sel> {
    prop_oneof![3 => Just(Sel::None), 6 => (0..3usize).prop_map(Sel::Slot), 1 => (0..3usize).prop_map(Sel::Hostile)]
}

fn pte_value(big: bool) -> impl Strategy<Value = u64> {
    let page = if big { 1u64 << 17 } else { 1 << 12 };
    prop_oneof![
        4 => (0..GUEST_SIZE / page, any::<bool>()).prop_map(move |(p, ro)| vram_pte(p * page, ro)),
        1 => (GUEST_SIZE / page - 1..GUEST_SIZE / page + 4).prop_map(move |p| vram_pte(p * page, false)),
        2 => (0..SYS_SIZE / page + 2).prop_map(move |p| sys_pte(p * page)),
        1 => Just(0u64),
        1 => any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u64, sel(), sel(), prop_oneof![6 => Just(0u64), 1 => 0..4u64])
            .prop_map(|(i, big, small, size)| Op::Pde { i, big, small, size }),
        8 => any::<bool>().prop_flat_map(|big| {
            let idx = if big { prop_oneof![0..8u64, 120..136u64, 1016..1024u64].boxed() } else { prop_oneof![0..8u64, 4090..4100u64, 32760..32768u64].boxed() };
            (Just(big), 0..3usize, idx, pte_value(big))
        }).prop_map(|(big, slot, index, value)| Op::Pte { big, slot, index, value }),
        1 => ((PD / 4)..(0x30_0000 / 4), any::<u32>()).prop_map(|(w, value)| Op::Stray { gpa: w * 4, value }),
        3 => any::<bool>().prop_map(|then_use| Op::Flush { then_use }),
    ]
}

fn table_addr(s: Sel, big: bool) -> Option<u64> {
    match s {
        Sel::None => None,
        Sel::Slot(k) => Some(if big { LPT_SLOTS[k] } else { SPT_SLOTS[k] }),
        Sel::Hostile(k) => Some(HOSTILE_TABLES[k]),
    }
}

/// Four shadows of one guest VM, fed the same event stream: (tracked, mode).
const KINDS: [(bool, SyncMode); 4] =
    [(true, SyncMode::Lazy), (true, SyncMode::Naive), (false, SyncMode::Lazy), (false, SyncMode::Naive)];

/// Isolation and completeness of one shadow against the guest tables, at sample VAs.
fn check_translations(s: &Shadow, v: &ByteVram, vas: &[u64]) -> Result<(), TestCaseError> {
    let guest = VmDesc { pd: PD, limit: LIMIT };
    for &va in vas {
        let sh = shadow_walk(s, v, va);
        if let Ok(t) = sh {
            let in_vram = t.aperture == Aperture::Vram && (GUEST_BASE..GUEST_BASE + GUEST_SIZE).contains(&t.addr);
            let in_sys = t.aperture != Aperture::Vram && (SYS_HOST_BASE..SYS_HOST_BASE + SYS_SIZE).contains(&t.addr);
            prop_assert!(in_vram || in_sys, "shadow escapes the partition at {va:#x}: {t:?}");
        }
        // Whatever the guest maps validly, the shadow maps to the same place.
        if let Ok(g) = translate(&GuestVram::new(v, slice()), &guest, va) {
            let page = g.size.bytes();
            let base = g.addr & !(page - 1);
            let expect = match g.aperture {
                Aperture::Vram if base + page <= GUEST_SIZE => Some(GUEST_BASE + g.addr),
                Aperture::SysCoherent | Aperture::SysNonCoherent if base + page <= SYS_SIZE => Some(SYS_HOST_BASE + g.addr),
                _ => None,
            };
            if let Some(h) = expect {
                let t = sh.map_err(|f| TestCaseError::fail(format!("guest maps {va:#x} -> {g:?} but shadow faults {f:?}")))?;
                prop_assert_eq!((t.addr, t.read_only, t.size), (h, g.read_only, g.size));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random guest page-table edits: tracked and untracked, lazy and naive shadows all equal a
    /// full rebuild at every doorbell after a flush, and none maps outside the partition.
    #[test]
    fn incremental_lazy_and_naive_equal_full_rebuild(ops in proptest::collection::vec(op(), 1..40), vas in proptest::collection::vec(0..(LIMIT + 2), 24)) {
        let mut v = ByteVram::new();
        v.writable = SHADOW_BASE..SHADOW_END;
        let region = (SHADOW_END - SHADOW_BASE) / 5 & !0xfff;
        let mut allocs: Vec<Alloc> = (0..5).map(|k| Alloc::new(SHADOW_BASE + k * region..SHADOW_BASE + (k + 1) * region)).collect();
        let mut sys = FakeSys::new();
        let mut shadows: Vec<Shadow> = KINDS.iter().zip(allocs.iter_mut()).map(|((tracked, _), a)| new_shadow(&mut v, a, *tracked, 8)).collect();
        let s = slice();
        // Sample the VAs the edited entries map, under every PDE that may point at them.
        let mut vas = vas;
        for op in &ops {
            if let Op::Pte { big, index, .. } = op {
                let page = if *big { 1u64 << 17 } else { 1 << 12 };
                vas.extend((0..3).map(|i| i * PDE_SPAN + index * page + 0x10));
            }
        }
        for op in ops {
            let mut writes: Vec<(u64, u32)> = Vec::new();
            match op {
                Op::Pde { i, big, small, size } => {
                    let b = table_addr(big, true);
                    let sm = table_addr(small, false);
                    let raw = vm::pde(b.unwrap_or(0), if b.is_some() { vm::PDE_APER_VRAM } else { 0 }, sm.unwrap_or(0), if sm.is_some() { vm::PDE_APER_VRAM } else { 0 })
                        | size << vm::PDE_SIZE_SHIFT;
                    writes.push((PD + 8 * i, raw as u32));
                    writes.push((PD + 8 * i + 4, (raw >> 32) as u32));
                }
                Op::Pte { big, slot, index, value } => {
                    let at = if big { LPT_SLOTS[slot] } else { SPT_SLOTS[slot] } + 8 * index;
                    writes.push((at, value as u32));
                    writes.push((at + 4, (value >> 32) as u32));
                }
                Op::Stray { gpa, value } => writes.push((gpa, value)),
                Op::Flush { then_use } => {
                    for ((sh, (_, mode)), a) in shadows.iter_mut().zip(KINDS).zip(allocs.iter_mut()) {
                        let mut env = SyncEnv { vram: &mut v, slice: &s, sys: &mut sys, alloc: a };
                        let synced = on_flush(mode, sh, &mut env);
                        prop_assert_eq!(synced, mode == SyncMode::Naive);
                        if then_use {
                            before_use(UsePoint::Doorbell, sh, &mut env);
                            prop_assert!(!sh.needs_sync());
                        }
                    }
                    if then_use {
                        let (rest, last) = allocs.split_at_mut(4);
                        let _ = rest;
                        let mut full = new_shadow(&mut v, &mut last[0], false, 8);
                        sync(&mut full, &mut v, &mut sys, &mut last[0]);
                        let want = dump(&full, &v);
                        for sh in &shadows {
                            prop_assert_eq!(&dump(sh, &v), &want);
                            check_translations(sh, &v, &vas)?;
                        }
                        full.release(&mut last[0]);
                        prop_assert!(last[0].live.is_empty());
                    }
                }
            }
            for (gpa, w) in writes {
                v.guest32(gpa, w);
                for (sh, (tracked, _)) in shadows.iter_mut().zip(KINDS) {
                    if tracked {
                        sh.note_guest_write(gpa);
                    }
                }
            }
        }
        for (sh, a) in shadows.into_iter().zip(allocs.iter_mut()) {
            sh.release(a);
            prop_assert!(a.live.is_empty());
        }
    }
}
