//! Shadow instance blocks and runlist translation.

mod common;

use common::*;
use gpuvm_shadow_tests::channel::*;
use gpuvm_shadow_tests::gf100::{inst, pfifo, ramfc, target, userd};
use gpuvm_shadow_tests::memory::{GuestVram, Vram};
use gpuvm_shadow_tests::partition::Slice;
use proptest::prelude::*;

const GUEST_INST: u64 = 0x4_0000;
const HOST_INST: u64 = 0x2_0000;
const USERD: u64 = 0x8_0000 + 5 * userd::SIZE;
const SHADOW: InstShadow = InstShadow { pd_host: 0x10_0000, pd_sys: false, limit: (16 << 30) + (16 << 20) - 1 };

/// A guest instance block as the guest driver fills it, plus junk where nothing belongs.
fn guest_inst(v: &mut ByteVram) {
    let w = |v: &mut ByteVram, off: u32, x: u32| v.guest32(GUEST_INST + off as u64, x);
    for off in (0..inst::SIZE as u32).step_by(4) {
        w(v, off, 0xdead_0000 | off);
    }
    w(v, ramfc::USERD_LO, USERD as u32 | target::VRAM);
    w(v, ramfc::USERD_HI, 0);
    w(v, ramfc::SIGNATURE, ramfc::SIGNATURE_VALUE);
    w(v, ramfc::GP_BASE, 0x1000);
    write_inst_vm(v, GUEST_INST, 0x20_0000, 0xff_ffff_ffff);
    w(v, inst::GR_CTX_LO, 0x3000_0000 | inst::CTX_VALID);
}

#[test]
fn instance_block_is_copied_with_pointers_rewritten_and_the_rest_zeroed() {
    let mut v = ByteVram::new();
    guest_inst(&mut v);
    v.writable = HOST_INST..HOST_INST + inst::SIZE;
    shadow_instance(&mut v, &slice(), GUEST_INST, HOST_INST, &SHADOW).unwrap();
    let h = |off: u32| v.read32(HOST_INST + off as u64);
    let host_userd = GUEST_BASE + USERD;
    assert_eq!(h(ramfc::USERD_LO), host_userd as u32 | target::VRAM);
    assert_eq!(h(ramfc::USERD_HI), (host_userd >> 32) as u32);
    assert_eq!(h(ramfc::SIGNATURE), ramfc::SIGNATURE_VALUE);
    assert_eq!(h(ramfc::GP_BASE), 0x1000);
    assert_eq!(h(ramfc::UNKFC), 0xdead_0000 | ramfc::UNKFC, "whitelisted RAMFC words are copied");
    assert_eq!(h(inst::PDB_LO), 0x10_0000 | target::VRAM);
    assert_eq!(h(inst::PDB_HI), 0);
    assert_eq!((h(inst::LIMIT_LO), h(inst::LIMIT_HI)), (SHADOW.limit as u32, (SHADOW.limit >> 32) as u32));
    assert_eq!(h(inst::GR_CTX_LO), 0x3000_0000 | inst::CTX_VALID);
    assert_eq!(h(inst::PCOPY1_CTX_HI), 0xdead_0000 | inst::PCOPY1_CTX_HI);
    for off in [0x100, 0x1fc, inst::PCOPY1_CTX_HI + 4, 0x800, 0xffc] {
        assert_eq!(h(off), 0, "word {off:#x} must not be copied");
    }
    // Mirroring one guest write.
    v.guest32(GUEST_INST + ramfc::GP_BASE as u64, 0x2000);
    let m = GuestVram::new(&v, slice());
    assert_eq!(shadow_inst_word(&m, &slice(), GUEST_INST, ramfc::GP_BASE, &SHADOW), Ok(0x2000));
    assert_eq!(shadow_inst_word(&m, &slice(), GUEST_INST, inst::PDB_LO, &SHADOW), Ok(0x10_0000));
}

/// The RAMFC words a shadow may hold a guest value in: the copied ones and USERD (moved).
fn ramfc_guest_word(off: u32) -> bool {
    RAMFC_COPIED.contains(&off) || off == ramfc::USERD_LO || off == ramfc::USERD_HI
}

#[test]
fn only_whitelisted_ramfc_words_are_copied_and_the_physical_copy_gate_is_closed() {
    let mut v = ByteVram::new();
    guest_inst(&mut v);
    // The guest opens the gate (and sets every other bit of HCE_CTRL and of CONFIG, 0xf4).
    v.guest32(GUEST_INST + ramfc::HCE_CTRL as u64, u32::MAX);
    v.guest32(GUEST_INST + 0xf4, u32::MAX);
    v.writable = HOST_INST..HOST_INST + inst::SIZE;
    shadow_instance(&mut v, &slice(), GUEST_INST, HOST_INST, &SHADOW).unwrap();
    let h = |off: u32| v.read32(HOST_INST + off as u64);
    let g = |off: u32| v.read32(GUEST_BASE + GUEST_INST + off as u64);
    assert_eq!(h(ramfc::HCE_CTRL), 0, "the physical-copy gate is closed in the shadow");
    assert_eq!(h(0xf4), 0);
    for off in (0..0x100).step_by(4) {
        if RAMFC_COPIED.contains(&off) {
            assert_eq!(h(off), g(off), "RAMFC word {off:#x} is copied");
        } else if !ramfc_guest_word(off) {
            assert_eq!(h(off), 0, "RAMFC word {off:#x} (guest {:#x}) must be 0", g(off));
        }
    }
    // nouveau's fill is in the whitelist, so a well-behaved guest loses nothing.
    for off in [ramfc::SIGNATURE, ramfc::ACQUIRE, ramfc::GP_BASE, ramfc::GP_BASE_HI, ramfc::UNK54, ramfc::PB_HEADER, ramfc::SUBDEVICE, ramfc::FORMATS] {
        assert!(RAMFC_COPIED.contains(&off));
    }
    assert!(!RAMFC_COPIED.contains(&ramfc::HCE_CTRL));
    // A mirrored guest write of the gate keeps it closed.
    let m = GuestVram::new(&v, slice());
    assert_eq!(shadow_inst_word(&m, &slice(), GUEST_INST, ramfc::HCE_CTRL, &SHADOW), Ok(0));
    assert_eq!(shadow_inst_word(&m, &slice(), GUEST_INST, 0x20, &SHADOW), Ok(0));
}

#[test]
fn engine_context_pointers_are_kept_only_as_virtual_addresses() {
    let mut v = ByteVram::new();
    guest_inst(&mut v);
    let w = |v: &mut ByteVram, off: u32, x: u32| v.guest32(GUEST_INST + off as u64, x);
    // GR: virtual, with junk in the target bits; PCOPY0: physical in VRAM; PCOPY1: physical
    // in system memory.
    w(&mut v, inst::GR_CTX_LO, 0x3000_0000 | inst::CTX_VALID | target::SYS_NONCOHERENT);
    w(&mut v, inst::GR_CTX_HI, 0x12);
    w(&mut v, inst::PCOPY0_CTX_LO, 0x0000_1000 | target::VRAM);
    w(&mut v, inst::PCOPY0_CTX_HI, 0);
    w(&mut v, inst::PCOPY1_CTX_LO, 0x0004_0000 | target::SYS_COHERENT);
    v.writable = HOST_INST..HOST_INST + inst::SIZE;
    shadow_instance(&mut v, &slice(), GUEST_INST, HOST_INST, &SHADOW).unwrap();
    let h = |off: u32| v.read32(HOST_INST + off as u64);
    assert_eq!(h(inst::GR_CTX_LO), 0x3000_0000 | inst::CTX_VALID);
    assert_eq!(h(inst::GR_CTX_HI), 0x12);
    assert_eq!(h(inst::PCOPY0_CTX_LO), 0, "a physical context pointer is dropped");
    assert_eq!(h(inst::PCOPY1_CTX_LO), 0, "a physical context pointer is dropped");
    // Between and after the pointers: nothing.
    for off in (inst::GR_CTX_HI + 4..inst::PCOPY0_CTX_LO).step_by(4).chain([inst::PCOPY0_CTX_HI + 4, inst::PCOPY1_CTX_HI + 4]) {
        assert_eq!(h(off), 0, "word {off:#x} must not be copied");
    }
    // A mirrored guest write turning a pointer physical drops it.
    v.guest32(GUEST_INST + inst::GR_CTX_LO as u64, 0x3000_0000);
    let m = GuestVram::new(&v, slice());
    assert_eq!(shadow_inst_word(&m, &slice(), GUEST_INST, inst::GR_CTX_LO, &SHADOW), Ok(0));
}

#[test]
fn hostile_instance_blocks_are_refused_without_writing_anything() {
    let s = slice();
    let mut v = ByteVram::new();
    guest_inst(&mut v);
    // Nothing may be written on refusal.
    v.writable = 0..0;
    let set_userd = |v: &mut ByteVram, lo: u32, hi: u32| {
        v.guest32(GUEST_INST + ramfc::USERD_LO as u64, lo);
        v.guest32(GUEST_INST + ramfc::USERD_HI as u64, hi);
    };
    set_userd(&mut v, GUEST_SIZE as u32, 0);
    assert_eq!(shadow_instance(&mut v, &s, GUEST_INST, HOST_INST, &SHADOW), Err(InstError::UserdOutside));
    set_userd(&mut v, 0x1000, 1);
    assert_eq!(shadow_instance(&mut v, &s, GUEST_INST, HOST_INST, &SHADOW), Err(InstError::UserdOutside));
    set_userd(&mut v, 0x1000 | target::SYS_COHERENT, 0);
    assert_eq!(shadow_instance(&mut v, &s, GUEST_INST, HOST_INST, &SHADOW), Err(InstError::UserdNotVram));
    set_userd(&mut v, 0x1000, 0);
    assert_eq!(shadow_instance(&mut v, &s, GUEST_SIZE, HOST_INST, &SHADOW), Err(InstError::InstOutside));
    assert_eq!(shadow_instance(&mut v, &s, GUEST_INST + 0x800, HOST_INST, &SHADOW), Err(InstError::InstOutside));
    assert_eq!(shadow_instance(&mut v, &s, GUEST_SIZE - 0x800, HOST_INST, &SHADOW), Err(InstError::InstOutside));
    assert_eq!(shadow_instance(&mut v, &s, GUEST_INST, HOST_INST + 4, &SHADOW), Err(InstError::HostUnaligned));
    // The last USERD page of the partition is fine.
    set_userd(&mut v, (GUEST_SIZE - userd::SIZE) as u32, 0);
    v.writable = HOST_INST..HOST_INST + inst::SIZE;
    assert_eq!(shadow_instance(&mut v, &s, GUEST_INST, HOST_INST, &SHADOW), Ok(()));
    // A mirrored word of an instance block near the end never reads past the partition.
    let m = GuestVram::new(&v, s);
    assert_eq!(shadow_inst_word(&m, &s, u64::MAX - 3, 0x10, &SHADOW), Err(InstError::InstOutside));
}

fn runlist(v: &mut ByteVram, at: u64, entries: &[(u32, u32)]) {
    for (i, &(c, w1)) in entries.iter().enumerate() {
        v.guest32(at + 8 * i as u64, c);
        v.guest32(at + 8 * i as u64 + 4, w1);
    }
}

#[test]
fn guest_runlists_keep_only_the_vgpus_own_channels() {
    let s = slice();
    let mut v = ByteVram::new();
    let w1 = pfifo::RUNLIST_ENTRY_WORD1;
    runlist(&mut v, 0x6_0000, &[(0, w1), (15, w1), (16, w1), (3, 0), (0, w1), (127, w1), (u32::MAX, w1), (7, w1)]);
    let r = read_guest_runlist(&GuestVram::new(&v, s), &s, 0x6_0000, 8);
    assert_eq!(r.channels.iter().collect::<Vec<_>>(), vec![0, 7, 15]);
    assert_eq!(r.refused, 5);
    // Entries past the partition's end are refused, not read.
    runlist(&mut v, GUEST_SIZE - 8, &[(1, w1)]);
    let r = read_guest_runlist(&GuestVram::new(&v, s), &s, GUEST_SIZE - 8, 3);
    assert_eq!((r.channels.len(), r.refused), (1, 2));
    let r = read_guest_runlist(&GuestVram::new(&v, s), &s, u64::MAX - 7, 2);
    assert_eq!((r.channels.len(), r.refused), (0, 2));
}

#[test]
fn host_runlist_interleaves_vgpus_and_respects_capacity() {
    let a = Slice { first_channel: 0, channels: 16, ..slice() };
    let b = Slice { first_channel: 16, channels: 16, ..slice() };
    let set = |ids: &[u32]| {
        let mut s = ChannelSet::default();
        for &i in ids {
            assert!(s.insert(i));
        }
        s
    };
    let parts = [RunlistPart { slice: a, channels: set(&[1, 2, 3]) }, RunlistPart { slice: b, channels: set(&[0, 20]) }];
    let mut v = ByteVram::new();
    let n = write_host_runlist(&mut v, 0x1000, 64, &parts);
    let got: Vec<(u32, u32)> = (0..n as u64).map(|i| (v.read32(0x1000 + 8 * i), v.read32(0x1004 + 8 * i))).collect();
    // vGPU b's channel 20 is not its own: skipped.
    assert_eq!(got, vec![(1, 4), (16, 4), (2, 4), (3, 4)]);
    assert_eq!(write_host_runlist(&mut v, 0x1000, 2, &parts), 2);
    let mut s = ChannelSet::default();
    assert!(!s.insert(pfifo::CHANNELS));
    assert!(s.is_empty());
    s.insert(5);
    s.remove(5);
    s.remove(500);
    assert!(s.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever a guest writes into its instance block, the shadow's gate is closed, no RAMFC
    /// word outside the whitelist holds a value, and engine context pointers are virtual or 0.
    #[test]
    fn shadow_never_opens_the_gate_or_carries_unlisted_words(words in proptest::collection::vec(any::<u32>(), 1024)) {
        let mut v = ByteVram::new();
        for (i, &x) in words.iter().enumerate() {
            v.guest32(GUEST_INST + 4 * i as u64, x);
        }
        // A valid USERD, so the block is shadowed at all.
        v.guest32(GUEST_INST + ramfc::USERD_LO as u64, USERD as u32 | target::VRAM);
        v.guest32(GUEST_INST + ramfc::USERD_HI as u64, 0);
        v.writable = HOST_INST..HOST_INST + inst::SIZE;
        shadow_instance(&mut v, &slice(), GUEST_INST, HOST_INST, &SHADOW).unwrap();
        let h = |off: u32| v.read32(HOST_INST + off as u64);
        prop_assert_eq!(h(ramfc::HCE_CTRL), 0);
        for off in (0..0x100).step_by(4).filter(|&o| !ramfc_guest_word(o)) {
            prop_assert_eq!(h(off), 0, "RAMFC word {:#x}", off);
        }
        for lo in [inst::GR_CTX_LO, inst::PCOPY0_CTX_LO, inst::PCOPY1_CTX_LO] {
            prop_assert!(h(lo) == 0 || h(lo) & (inst::CTX_VALID | !inst::CTX_ADDR_MASK) == inst::CTX_VALID, "{:#x}: {:#x}", lo, h(lo));
        }
    }
}

proptest! {
    /// Every host runlist entry is a channel of the vGPU that listed it, at most once.
    #[test]
    fn merged_runlist_only_names_owned_channels(sets in proptest::collection::vec(any::<u128>(), 1..8), cap in 0u32..300) {
        let parts: Vec<RunlistPart> = sets.iter().enumerate().map(|(k, &bits)| RunlistPart {
            slice: Slice { first_unit: k as u32, units: 1, vram_base: 0, vram_size: 0, first_channel: 15 * k as u32, channels: 15 },
            channels: ChannelSet(bits),
        }).collect();
        let mut v = ByteVram::new();
        let n = write_host_runlist(&mut v, 0, cap, &parts);
        prop_assert!(n <= cap);
        let mut seen = ChannelSet::default();
        for i in 0..n as u64 {
            let host = v.read32(8 * i);
            prop_assert_eq!(v.read32(8 * i + 4), pfifo::RUNLIST_ENTRY_WORD1);
            let owner = parts.iter().find(|p| p.slice.channel_from_host(host).is_some_and(|c| p.channels.contains(c)));
            prop_assert!(owner.is_some(), "host channel {} listed by nobody", host);
            prop_assert!(seen.insert(host), "host channel {} twice", host);
        }
        let owned: u32 = parts.iter().map(|p| p.channels.iter().filter(|&c| c < 15).count() as u32).sum();
        prop_assert_eq!(n, owned.min(cap));
    }
}

/// Guest VRAM addresses of a structure: 4 KiB pages and words around the partition's end,
/// unaligned ones, and anything.
fn placement() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0..GUEST_SIZE >> 12).prop_map(|p| p << 12),
        2 => (GUEST_SIZE - 0x2000..GUEST_SIZE + 0x1000).prop_map(|a| a & !3),
        1 => (0..GUEST_SIZE).prop_map(|a| a & !3),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(512)))]

    /// An instance block anywhere with any USERD words: shadowed exactly when the block is an
    /// aligned 4 KiB inside the partition and USERD names a VRAM page inside it; then the
    /// shadow's USERD is that page moved by `vram_base` and its gate is closed whatever the
    /// guest wrote there; otherwise nothing at all is written.
    #[test]
    fn shadow_instance_accepts_exactly_blocks_and_userd_inside(
        at in placement(), userd in placement(), target in prop_oneof![3 => Just(target::VRAM), 1 => 0u32..4],
        hi in prop_oneof![3 => Just(0u32), 1 => any::<u32>()], gate in any::<u32>(),
    ) {
        let s = slice();
        let mut v = ByteVram::new();
        let lo = (userd as u32 & ramfc::USERD_ADDR_MASK) | target;
        for (off, x) in [(ramfc::USERD_LO, lo), (ramfc::USERD_HI, hi), (ramfc::HCE_CTRL, gate)] {
            if let Some(a) = at.checked_add(u64::from(off)).filter(|a| a + 4 <= GUEST_SIZE) {
                v.guest32(a, x);
            }
        }
        v.writable = HOST_INST..HOST_INST + inst::SIZE;
        let before = v.writes.get();
        let r = shadow_instance(&mut v, &s, at, HOST_INST, &SHADOW);
        let page = u64::from(lo & ramfc::USERD_ADDR_MASK) | u64::from(hi & 0xff) << 32;
        let inside = at.is_multiple_of(inst::SIZE) && at.checked_add(inst::SIZE).is_some_and(|e| e <= GUEST_SIZE);
        let userd_ok = target == target::VRAM && page + userd::SIZE <= GUEST_SIZE;
        prop_assert_eq!(r.is_ok(), inside && userd_ok, "{:?}", r);
        if r.is_err() {
            prop_assert_eq!(v.writes.get(), before, "a refused block left writes behind");
            return Ok(());
        }
        let h = |off: u32| v.read32(HOST_INST + u64::from(off));
        let host = u64::from(h(ramfc::USERD_LO) & ramfc::USERD_ADDR_MASK) | u64::from(h(ramfc::USERD_HI)) << 32;
        prop_assert_eq!(host, GUEST_BASE + page);
        prop_assert_eq!(h(ramfc::USERD_LO) & ramfc::USERD_TARGET_MASK, target::VRAM);
        prop_assert_eq!(h(ramfc::HCE_CTRL), 0);
    }

    /// A runlist anywhere, of any length, with any entries: only the vGPU's own channels, each
    /// once, each from an entry that names it with the right second word inside the
    /// partition; every entry up to the count either listed or refused; nothing read outside.
    #[test]
    fn guest_runlist_of_any_placement_and_length(
        at in placement(), count in prop_oneof![0u32..16, any::<u32>()],
        entries in proptest::collection::vec((prop_oneof![0u32..20, any::<u32>()], prop_oneof![3 => Just(pfifo::RUNLIST_ENTRY_WORD1), 1 => any::<u32>()]), 0..16),
    ) {
        let s = slice();
        let mut v = ByteVram::new();
        for (i, &(c, w1)) in entries.iter().enumerate() {
            if let Some(a) = at.checked_add(8 * i as u64).filter(|a| a + 8 <= GUEST_SIZE) {
                v.guest32(a, c);
                v.guest32(a + 4, w1);
            }
        }
        let f = Fenced::new(&v);
        let r = read_guest_runlist(&GuestVram::new(&f, s), &s, at, count);
        prop_assert_eq!(f.outside.get(), 0);
        let n = count.min(pfifo::RunlistSubmit::COUNT_MAX);
        prop_assert_eq!(r.channels.len() + r.refused, n);
        for c in r.channels.iter() {
            prop_assert!(c < s.channels, "foreign channel {}", c);
            let named = (0..u64::from(n)).any(|i| {
                at.checked_add(8 * i).filter(|a| a + 8 <= GUEST_SIZE).is_some_and(|a| v.read32(GUEST_BASE + a) == c && v.read32(GUEST_BASE + a + 4) == pfifo::RUNLIST_ENTRY_WORD1)
            });
            prop_assert!(named, "channel {} listed without an entry naming it", c);
        }
    }
}
