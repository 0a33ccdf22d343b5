//! The page-table walker, entry formats and the validation of guest entries.

mod common;

use common::*;
use gpuvm_shadow_tests::gf100::{mmu, vm};
use gpuvm_shadow_tests::memory::GuestVram;
use gpuvm_shadow_tests::pagetable::*;
use gpuvm_shadow_tests::partition::Slice;
use proptest::prelude::*;

const PD: u64 = 0x10_0000;
const LPT: u64 = 0x11_0000;
const SPT: u64 = 0x12_0000;
/// The guest driver's channel VM: 16 GiB + 16 MiB.
const CHAN_LIMIT: u64 = (16 << 30) + (16 << 20) - 1;

fn walk(v: &ByteVram, vmd: &VmDesc, va: u64) -> Result<Translation, Fault> {
    translate(&GuestVram::new(v, slice()), vmd, va)
}

#[test]
fn vm_desc_reads_pd_and_limit_and_sizes_the_pd_from_the_limit() {
    let mut v = ByteVram::new();
    write_inst_vm(&mut v, 0x1000, PD, CHAN_LIMIT);
    let d = VmDesc::read(&GuestVram::new(&v, slice()), 0x1000).unwrap();
    assert_eq!(d, VmDesc { pd: PD, limit: CHAN_LIMIT });
    // 128 full PDEs plus one for the last 16 MiB: never 8192.
    assert_eq!(d.pde_count(), 129);
    assert_eq!(d.reachable(0, PageSize::Big, 0), 1024);
    assert_eq!(d.reachable(128, PageSize::Small, 0), 4096);
    assert_eq!(d.reachable(128, PageSize::Big, 0), 128);
    assert_eq!(d.reachable(129, PageSize::Small, 0), 0);
    // SIZE shrinks both tables.
    assert_eq!(d.reachable(0, PageSize::Small, 2), 32768 >> 2);
    // A PD in system memory is not shadowed; an instance block outside is unreadable.
    assert_eq!(VmDesc::from_words(0x2000 | 2, 0, 0, 0), None);
    assert_eq!(VmDesc::read(&GuestVram::new(&v, slice()), GUEST_SIZE), None);
    assert_eq!(VmDesc::read(&GuestVram::new(&v, slice()), 0x1002), None);
    // A huge limit is capped to the 40-bit VA space.
    assert_eq!(VmDesc::from_words(0, 0, u32::MAX, u32::MAX).unwrap().limit, VA_MAX);
    assert_eq!(VmDesc::from_words(0, 0, u32::MAX, u32::MAX).unwrap().pde_count(), vm::PD_ENTRIES_128K);
}

fn setup_dual(v: &mut ByteVram) -> VmDesc {
    // PDE 0: both tables; PDE 1: small only.
    v.guest64(PD, vm::pde(LPT, vm::PDE_APER_VRAM, SPT, vm::PDE_APER_VRAM));
    v.guest64(PD + 8, vm::pde(0, vm::PDE_APER_NONE, SPT + 0x40000, vm::PDE_APER_VRAM));
    v.guest64(LPT, vram_pte(0x20_0000, false)); // big page 0 -> 2 MiB
    v.guest64(LPT + 8, vram_pte(0x40_0000, true)); // big page 1, read-only
    v.guest64(SPT + 8 * 3, sys_pte(0x5000)); // small page 3 -> sysmem
    v.guest64(SPT + 0x40000 + 8 * 2, vram_pte(0x30_0000, false));
    VmDesc { pd: PD, limit: 2 * PDE_SPAN - 1 }
}

#[test]
fn walks_both_page_sizes_both_targets_read_only_and_dual_pde_precedence() {
    let mut v = ByteVram::new();
    let d = setup_dual(&mut v);
    let t = walk(&v, &d, 0x1_2345).unwrap();
    assert_eq!((t.addr, t.aperture, t.size, t.read_only), (0x21_2345, Aperture::Vram, PageSize::Big, false));
    let t = walk(&v, &d, (1 << 17) + 0x10).unwrap();
    assert_eq!((t.addr, t.read_only), (0x40_0010, true));
    // The small page wins over the big page it overlaps.
    let t = walk(&v, &d, 0x3004).unwrap();
    assert_eq!((t.addr, t.aperture, t.size), (0x5004, Aperture::SysCoherent, PageSize::Small));
    let t = walk(&v, &d, PDE_SPAN + 0x2ffc).unwrap();
    assert_eq!(t.addr, 0x30_0ffc);
    assert_eq!(walk(&v, &d, PDE_SPAN + 0x5000), Err(Fault::PageNotPresent));
    assert_eq!(walk(&v, &d, 2 << 17), Err(Fault::PageNotPresent));
    assert_eq!(walk(&v, &d, 2 * PDE_SPAN), Err(Fault::LimitExceeded));
    assert_eq!(Fault::LimitExceeded.reason(), mmu::FAULT_VM_LIMIT_EXCEEDED);
    // SIZE = half: indices in the upper half of the tables are too short.
    v.guest64(PD, vm::pde(LPT, vm::PDE_APER_VRAM, SPT, vm::PDE_APER_VRAM) | 1 << vm::PDE_SIZE_SHIFT);
    assert_eq!(walk(&v, &d, PDE_SPAN / 2 + 0x1000), Err(Fault::PtTooShort));
    assert!(walk(&v, &d, 0x1_0000).is_ok());
    // No tables at all.
    v.guest64(PD + 8, 0);
    assert_eq!(walk(&v, &d, PDE_SPAN), Err(Fault::PtNotPresent));
}

#[test]
fn walker_never_reads_outside_the_partition() {
    let mut v = ByteVram::new();
    // PD entry pointing at a table beyond the partition: unreadable, not host memory.
    v.guest64(PD, vm::pde(GUEST_SIZE, vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE));
    let d = VmDesc { pd: PD, limit: PDE_SPAN - 1 };
    assert_eq!(walk(&v, &d, 0), Err(Fault::BadPhysical));
    // PD itself outside.
    let d = VmDesc { pd: GUEST_SIZE - 4, limit: VA_MAX };
    assert_eq!(walk(&v, &d, 0), Err(Fault::BadPhysical));
    // Tables in system memory are not walked.
    v.guest64(PD, vm::pde(0x1000, vm::PDE_APER_SYS_COHERENT, 0, vm::PDE_APER_NONE));
    assert_eq!(walk(&v, &VmDesc { pd: PD, limit: VA_MAX }, 0), Err(Fault::BadPhysical));
}

#[test]
fn shadow_pte_translates_vram_and_sysmem_and_refuses_the_rest() {
    let s = slice();
    let mut sys = FakeSys::new();
    // VRAM inside: moved by vram_base, flags kept.
    let g = vm::pte(0x20_0000, vm::PTE_APER_VRAM, true, vm::KIND_GENERIC_BLOCKLINEAR) | vm::PTE_PRIVILEGE;
    let h = Pte::decode(shadow_pte(g, PageSize::Big, &s, &mut sys)).unwrap();
    assert_eq!(h.addr, GUEST_BASE + 0x20_0000);
    assert!(h.read_only && h.privileged);
    assert_eq!(h.kind as u64, vm::KIND_GENERIC_BLOCKLINEAR);
    assert_eq!(h.aperture, Aperture::Vram);
    // Last small page inside; a big page that would straddle the end is refused.
    assert!(shadow_pte(vram_pte(GUEST_SIZE - 0x1000, false), PageSize::Small, &s, &mut sys) != REFUSED_PTE);
    assert_eq!(shadow_pte(vram_pte(GUEST_SIZE - 0x1000, false), PageSize::Big, &s, &mut sys), REFUSED_PTE);
    assert_eq!(shadow_pte(vram_pte(GUEST_SIZE, false), PageSize::Small, &s, &mut sys), REFUSED_PTE);
    // Peer-index bits of a VRAM PTE do not wrap into the partition.
    let peer_bits = vram_pte(0x1000, false) | (1 << 29);
    assert_eq!(shadow_pte(peer_bits, PageSize::Small, &s, &mut sys), REFUSED_PTE);
    // System memory: pinned and translated; unmapped, misaligned big, or peer: refused.
    let h = Pte::decode(shadow_pte(sys_pte(0x7000), PageSize::Small, &s, &mut sys)).unwrap();
    assert_eq!((h.addr, h.aperture, h.vol), (SYS_HOST_BASE + 0x7000, Aperture::SysCoherent, true));
    assert_eq!(shadow_pte(sys_pte(SYS_SIZE), PageSize::Small, &s, &mut sys), REFUSED_PTE);
    assert_eq!(shadow_pte(sys_pte(0x1000), PageSize::Big, &s, &mut sys), REFUSED_PTE);
    assert!(shadow_pte(sys_pte(0x2_0000), PageSize::Big, &s, &mut sys) != REFUSED_PTE);
    let peer = vm::pte(0, vm::PTE_APER_PEER, false, 0);
    assert_eq!(shadow_pte(peer, PageSize::Small, &s, &mut sys), REFUSED_PTE);
    // Invalid stays invalid; compression tags are never passed on.
    assert_eq!(shadow_pte(0x1234_5670, PageSize::Small, &s, &mut sys), 0);
    let tagged = vram_pte(0x1000, false) | 0x7f << vm::PTE_COMPTAG_SHIFT;
    assert_eq!(shadow_pte(tagged, PageSize::Small, &s, &mut sys) >> vm::PTE_COMPTAG_SHIFT, 0);
    // The refused entry is not VALID: any GF100 faults on it (no aperture a card may map).
    assert!(Pte::decode(REFUSED_PTE).is_none());
    assert_eq!(REFUSED_PTE & vm::PTE_VALID, 0);
}

#[test]
fn table_to_host_checks_size_alignment_and_aperture() {
    let s = slice();
    let t = TableRef { addr: GUEST_SIZE - 0x2000, aperture: Aperture::Vram, vol: false };
    assert_eq!(table_to_host(&t, 1024, &s), Some(GUEST_BASE + GUEST_SIZE - 0x2000));
    assert_eq!(table_to_host(&t, 1025, &s), None);
    assert_eq!(table_to_host(&TableRef { addr: 0x800, ..t }, 1, &s), None);
    assert_eq!(table_to_host(&TableRef { aperture: Aperture::SysCoherent, ..t }, 1, &s), None);
    let big = Slice { vram_size: u64::MAX - GUEST_BASE, ..s };
    assert_eq!(table_to_host(&TableRef { addr: u64::MAX & !0xfff, ..t }, 32768, &big), None);
}

proptest! {
    #[test]
    fn pte_and_pde_round_trip(raw in any::<u64>()) {
        // Everything but the compression tag survives a PTE decode/encode.
        if let Some(p) = Pte::decode(raw) {
            let keep = !(u64::MAX << vm::PTE_COMPTAG_SHIFT) & !vm::PTE_LOCK;
            prop_assert_eq!(p.encode(), raw & keep);
        }
        let d = Pde::decode(raw);
        let again = Pde::decode(d.encode());
        prop_assert_eq!(again, d);
    }

    /// Random guest tables: a walk never panics and a VRAM result is the guest's own address.
    #[test]
    fn walker_is_total(pdes in proptest::collection::vec(any::<u64>(), 4), ptes in proptest::collection::vec(any::<u64>(), 16), va in 0u64..(4 * PDE_SPAN), limit in any::<u64>()) {
        let mut v = ByteVram::new();
        for (i, p) in pdes.iter().enumerate() {
            v.guest64(PD + 8 * i as u64, *p);
        }
        for (i, p) in ptes.iter().enumerate() {
            v.guest64(LPT + 8 * i as u64, *p);
        }
        let d = VmDesc::from_words(PD as u32, 0, limit as u32, (limit >> 32) as u32).unwrap();
        let _ = walk(&v, &d, va);
    }
}

/// A guest entry: VRAM inside and beyond the partition, system memory, peer, or anything.
fn guest_entry() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => (0..GUEST_SIZE >> 12).prop_map(|p| vram_pte(p << 12, p % 3 == 0)),
        1 => (GUEST_SIZE >> 12..1 << 28).prop_map(|p| vram_pte(p << 12, false)),
        1 => (0..SYS_SIZE >> 11).prop_map(|p| sys_pte(p << 12)),
        1 => (0..SYS_SIZE >> 16).prop_map(|p| sys_pte(p << 17)),
        1 => (0u64..1 << 28).prop_map(|p| vm::pte(p << 12, vm::PTE_APER_PEER, false, 0)),
        2 => (0..GUEST_SIZE >> 12, 0..GUEST_SIZE >> 12, 0u64..4, 0u64..4, 0u64..4)
            .prop_map(|(b, s, ab, as_, z)| vm::pde(b << 12, ab, s << 12, as_) | z << vm::PDE_SIZE_SHIFT),
        2 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(1024)))]

    /// Any instance-block words (PD anywhere, any limit), any VA, guest entries placed where
    /// the walk will look: the walk reads nothing outside the partition and never panics, and
    /// a translation it returns is within the limit and not a peer's.
    #[test]
    fn walker_reads_only_the_partition_whatever_the_guest_wrote(
        pd_page in prop_oneof![0..GUEST_SIZE >> 12, 0u64..1 << 28], pdb_hi in prop_oneof![Just(0u32), any::<u32>()],
        limit in prop_oneof![Just(CHAN_LIMIT), Just(VA_MAX), any::<u64>()],
        va in prop_oneof![0..4 * PDE_SPAN, any::<u64>()],
        pde in guest_entry(), big in guest_entry(), small in guest_entry(),
    ) {
        let mut v = ByteVram::new();
        let Some(d) = VmDesc::from_words((pd_page << 12) as u32, pdb_hi, limit as u32, (limit >> 32) as u32) else { return Ok(()) };
        let put = |v: &mut ByteVram, at: Option<u64>, x: u64| {
            if let Some(at) = at.filter(|&a| a.is_multiple_of(8) && a.checked_add(8).is_some_and(|e| e <= GUEST_SIZE)) {
                v.guest64(at, x);
            }
        };
        put(&mut v, (va >> PDE_SHIFT).checked_mul(8).and_then(|o| d.pd.checked_add(o)), pde);
        let p = Pde::decode(pde);
        for (size, x) in [(PageSize::Big, big), (PageSize::Small, small)] {
            let at = p.table(size).map(|t| t.addr + ((va >> size.shift()) & (size.full_entries() - 1)) * 8);
            put(&mut v, at, x);
        }
        let f = Fenced::new(&v);
        let r = translate(&GuestVram::new(&f, slice()), &d, va);
        prop_assert_eq!(f.outside.get(), 0, "read outside the partition");
        if let Ok(t) = r {
            prop_assert!(va <= d.limit && t.aperture != Aperture::Peer, "{:x?}", t);
        }
    }

    /// Any guest PTE of either size, a partition anywhere a VRAM PTE can name, a pinning that
    /// returns any host address: the shadow entry of an invalid PTE is 0; a VALID one points
    /// wholly inside the partition with no peer-index bits (VRAM), or at exactly the host
    /// address pinning returned, aligned to the page and representable (system memory); never
    /// at a peer, never with a compression tag, with the guest's read-only bit and kind.
    #[test]
    fn shadow_pte_is_inside_pinned_or_not_valid(
        raw in prop_oneof![guest_entry(), any::<u64>().prop_map(|x| x | vm::PTE_VALID)], big in any::<bool>(),
        base_units in 0u64..1 << 15, units in 1u64..64,
        sys_base in prop_oneof![Just(SYS_HOST_BASE), (0u64..1 << 30).prop_map(|p| p << 12), any::<u64>()], sys_size in prop_oneof![Just(SYS_SIZE), any::<u64>()],
    ) {
        // 2 MiB units up to 2^36 + 128 MiB: within the 25-bit VRAM address of a PTE.
        let s = Slice { vram_base: base_units << 21, vram_size: units << 21, ..slice() };
        let size = if big { PageSize::Big } else { PageSize::Small };
        let mut sys = FakeSys { host_base: sys_base, size: sys_size, pins: 0 };
        let e = shadow_pte(raw, size, &s, &mut sys);
        let Some(g) = Pte::decode(raw) else {
            prop_assert_eq!(e, 0);
            return Ok(());
        };
        if e & vm::PTE_VALID == 0 {
            prop_assert_eq!(e, REFUSED_PTE);
            return Ok(());
        }
        let h = Pte::decode(e).unwrap();
        prop_assert_eq!(e >> vm::PTE_COMPTAG_SHIFT, 0);
        prop_assert_eq!((h.read_only, h.kind, h.aperture), (g.read_only, g.kind, g.aperture));
        let page = size.bytes();
        match h.aperture {
            Aperture::Vram => {
                prop_assert_eq!((e >> vm::PTE_ADDR_SHIFT) & !vm::PTE_VRAM_ADDR_MASK & vm::PTE_ADDR_MASK, 0, "peer-index bits");
                let lo = h.addr & !(page - 1);
                prop_assert!(lo >= s.vram_base && h.addr + page <= s.vram_base + s.vram_size, "{:#x} outside {:x?}", h.addr, s);
                prop_assert_eq!(h.addr, s.vram_base + g.addr);
            }
            Aperture::SysCoherent | Aperture::SysNonCoherent => {
                prop_assert!(g.addr.checked_add(page).is_some_and(|end| end <= sys_size), "unmapped IOVA {:#x} accepted", g.addr);
                prop_assert_eq!(h.addr, sys_base.wrapping_add(g.addr));
                prop_assert!(h.addr.is_multiple_of(page) && h.addr + page <= 1 << 40);
            }
            Aperture::Peer => prop_assert!(false, "a peer PTE shadowed VALID: {:#x}", e),
        }
    }
}
