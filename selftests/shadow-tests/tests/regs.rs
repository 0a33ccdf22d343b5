//! The BAR0 classification table.

use gpuvm_shadow_tests::gf100::{mmu, pbus, pci, pfb, pfifo, pgraph, pmc, pstraps, ptimer};
use gpuvm_shadow_tests::regs::*;
use proptest::prelude::*;

#[test]
fn table_is_sorted_disjoint_aligned_and_inside_bar0() {
    for e in TABLE {
        assert!(e.start < e.end && e.start % 4 == 0 && e.end % 4 == 0, "{e:x?}");
        assert!(e.end as u64 <= pci::BAR0_SIZE, "{e:x?}");
    }
    for w in TABLE.windows(2) {
        assert!(w[0].end <= w[1].start, "unsorted or overlapping: {:x?} {:x?}", w[0], w[1]);
    }
}

#[test]
fn lookup_finds_every_row_and_nothing_between() {
    for e in TABLE {
        assert_eq!(classify(e.start), e.class);
        assert_eq!(classify(e.end - 4), e.class);
        if !TABLE.iter().any(|o| o.start == e.end) {
            assert_eq!(classify(e.end), Class::Deny, "after {e:x?}");
        }
        assert_eq!(classify(e.start + 1), Class::Deny, "unaligned");
    }
    assert_eq!(classify(pbus::PRAMIN_WINDOW + 0x1234), Class::Translate(Window::Pramin));
    assert_eq!(classify(pbus::PRAMIN_WINDOW - 4), Class::Deny);
    assert_eq!(classify(pci::BAR0_SIZE as u32), Class::Deny);
    assert_eq!(classify(u32::MAX & !3), Class::Deny);
    assert_eq!(classify(pfifo::ChanInst::offset(127)), Class::Emulate(Reg::ChanTable));
    assert_eq!(classify(pfifo::ChanState::offset(127) + 4), Class::Deny);
    assert_eq!(classify(pfifo::pbdma_base(1) + pfifo::PBDMA_INTR), Class::Emulate(Reg::Pbdma));
    assert_eq!(classify(pfifo::pbdma_base(1) + 0x100), Class::Deny);
    assert_eq!(classify(pfifo::pbdma_base(3) + pfifo::PBDMA_INTR), Class::Deny);
    // Whole-GPU registers GPUvm forwarded are not reachable: engine state, PGRAPH FECS, the
    // PCOPY falcons, the config mirror beyond the MSI re-arm byte.
    for off in [pfifo::eng_state(0), pfifo::ENG_FAULT, 0x409500, 0x104050, pci::BAR0_CONFIG_MIRROR, pbus::PEEPHOLE_INST] {
        assert_eq!(classify(off), Class::Deny, "{off:#x}");
    }
}

/// Every BAR0 byte offset, one by one, against the table walked in order: an offset is
/// emulated or translated only if it is aligned and a row holds it, translated (forwarded to
/// VRAM) only inside the PRAMIN window, denied otherwise. Past BAR0 everything is denied
/// (the lookup refuses those offsets before the table; sampled, with the last words).
#[test]
fn every_bar0_offset_is_denied_unless_a_row_holds_it() {
    let mut row = 0;
    let (mut held, mut translated) = (0u32, 0u32);
    for off in 0..pci::BAR0_SIZE as u32 {
        while TABLE.get(row).is_some_and(|e| e.end <= off) {
            row += 1;
        }
        let class = match TABLE.get(row) {
            Some(e) if e.start <= off && off % 4 == 0 => e.class,
            _ => Class::Deny,
        };
        let got = classify(off);
        if got != class {
            panic!("{off:#x}: {got:?}, the table says {class:?}");
        }
        match got {
            Class::Deny => {}
            Class::Translate(Window::Pramin) => {
                assert!((pbus::PRAMIN_WINDOW..pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE).contains(&off), "{off:#x} forwarded");
                translated += 1;
            }
            Class::Emulate(_) => held += 1,
        }
    }
    assert_eq!(translated, pbus::PRAMIN_WINDOW_SIZE / 4);
    let emulated: u32 = TABLE.iter().filter(|e| matches!(e.class, Class::Emulate(_))).map(|e| (e.end - e.start) / 4).sum();
    assert_eq!(held, emulated);
    for off in (pci::BAR0_SIZE as u32..=u32::MAX).step_by(4093).chain(u32::MAX - 7..=u32::MAX) {
        assert_eq!(classify(off), Class::Deny, "{off:#x}");
    }
}

/// `module::NAME` register constants the guest driver may name.
fn named(expr: &str) -> Option<u32> {
    Some(match expr {
        "pmc::Boot0::OFFSET" => pmc::Boot0::OFFSET,
        "pmc::ENDIAN" => pmc::ENDIAN,
        "pmc::ENABLE" => pmc::ENABLE,
        "pmc::SPOON_ENABLE" => pmc::SPOON_ENABLE,
        "pmc::INTR_HOST" => pmc::INTR_HOST,
        "pmc::INTR_EN_HOST" => pmc::INTR_EN_HOST,
        "pmc::INTR_MASK_HOST" => pmc::INTR_MASK_HOST,
        "pstraps::STRAPS" => pstraps::STRAPS,
        "ptimer::CLOCK_SOURCE" => ptimer::CLOCK_SOURCE,
        "ptimer::CLOCK_DIV" => ptimer::CLOCK_DIV,
        "ptimer::CLOCK_MUL" => ptimer::CLOCK_MUL,
        "ptimer::TIME_HIGH" => ptimer::TIME_HIGH,
        "ptimer::TIME_LOW" => ptimer::TIME_LOW,
        "pfb::FBP_COUNT" => pfb::FBP_COUNT,
        "pfb::FBP_DISABLED_MASK" => pfb::FBP_DISABLED_MASK,
        "mmu::CTRL" => mmu::CTRL,
        "mmu::InvalidatePdb::OFFSET" => mmu::InvalidatePdb::OFFSET,
        "mmu::Invalidate::OFFSET" => mmu::Invalidate::OFFSET,
        "pbus::PraminBase::OFFSET" => pbus::PraminBase::OFFSET,
        "pbus::BAR1_INST" => pbus::BAR1_INST,
        "pbus::BAR3_INST" => pbus::BAR3_INST,
        "pbus::FLUSH" => pbus::FLUSH,
        "pfifo::SUBFIFO_ENABLE" => pfifo::SUBFIFO_ENABLE,
        "pfifo::CTRL" => pfifo::CTRL,
        "pfifo::UserdPollBase::OFFSET" => pfifo::UserdPollBase::OFFSET,
        "pfifo::INTR_RUNLIST_STATUS" => pfifo::INTR_RUNLIST_STATUS,
        "pfifo::INTR" => pfifo::INTR,
        "pfifo::INTR_EN" => pfifo::INTR_EN,
        "pfifo::ENGINE_INTR_EN" => pfifo::ENGINE_INTR_EN,
        "pfifo::RunlistBase::OFFSET" => pfifo::RunlistBase::OFFSET,
        "pfifo::RunlistSubmit::OFFSET" => pfifo::RunlistSubmit::OFFSET,
        "pfifo::RunlistStatus::OFFSET" => pfifo::RunlistStatus::OFFSET,
        "pfifo::KICK" => pfifo::KICK,
        "pfifo::VM_FAULT_UNITS" => pfifo::VM_FAULT_UNITS,
        "pfifo::PBDMA_INTR_UNITS" => pfifo::PBDMA_INTR_UNITS,
        "pfifo::SCHED_ERROR" => pfifo::SCHED_ERROR,
        "pfifo::CHAN_TABLE_ERROR" => pfifo::CHAN_TABLE_ERROR,
        "pgraph::INTR" => pgraph::INTR,
        "pgraph::DATA_ERROR_CODE" => pgraph::DATA_ERROR_CODE,
        "pgraph::TRAPPED_ADDR" => pgraph::TRAPPED_ADDR,
        "pci::BAR0_MSI_REARM" => pci::BAR0_MSI_REARM,
        _ => return None,
    })
}

/// The BAR0 offsets a register expression of the driver's source can take.
fn offsets(expr: &str) -> Option<Vec<u32>> {
    let e = expr.strip_prefix("gpuvm_uapi::gf100::").unwrap_or(expr);
    if let Some(o) = named(e) {
        return Some(vec![o]);
    }
    let func = e.split('(').next().unwrap();
    let all = |n: u32, f: fn(u32) -> u32| Some((0..n).map(f).collect());
    match func {
        "pfb::part_mib" => all(pfb::MAX_PARTS, pfb::part_mib),
        "pfifo::eng_subfifo_mask" => all(pfifo::ENG_SUBFIFO_MASK_COUNT, pfifo::eng_subfifo_mask),
        "pfifo::engine_intr" => all(1, pfifo::engine_intr),
        "pfifo::VmFaultInst::offset" => all(pfifo::VmFaultInst::COUNT, pfifo::VmFaultInst::offset),
        "pfifo::VmFaultAddrLo::offset" => all(pfifo::VmFaultAddrLo::COUNT, pfifo::VmFaultAddrLo::offset),
        "pfifo::VmFaultAddrHi::offset" => all(pfifo::VmFaultAddrHi::COUNT, pfifo::VmFaultAddrHi::offset),
        "pfifo::VmFaultInfo::offset" => all(pfifo::VmFaultInfo::COUNT, pfifo::VmFaultInfo::offset),
        "pfifo::ChanInst::offset" => all(pfifo::ChanInst::COUNT, pfifo::ChanInst::offset),
        "pfifo::ChanState::offset" => all(pfifo::ChanState::COUNT, pfifo::ChanState::offset),
        // The PRAMIN window accessor (`r` = PRAMIN_WINDOW + offset within the window).
        "r" => Some(vec![pbus::PRAMIN_WINDOW, pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE - 4]),
        _ => {
            let reg = e.strip_prefix("b+")?;
            let o = match reg {
                "pfifo::PBDMA_INTR" => pfifo::PBDMA_INTR,
                "pfifo::PBDMA_INTR_EN" => pfifo::PBDMA_INTR_EN,
                "pfifo::PBDMA_METHOD" => pfifo::PBDMA_METHOD,
                "pfifo::PBDMA_DATA" => pfifo::PBDMA_DATA,
                _ => return None,
            };
            Some((0..pfifo::PBDMA_COUNT).map(|i| pfifo::pbdma_base(i) + o).collect())
        }
    }
}

/// First arguments of `.rd(`, `.wr(`, `.mask(` and `.wait(` calls in `src`, spaces removed.
fn register_args(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for call in [".rd(", ".wr(", ".mask(", ".wait("] {
        for (at, _) in src.match_indices(call) {
            let mut depth = 0;
            let mut arg = String::new();
            for c in src[at + call.len()..].chars() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => break,
                    ')' => depth -= 1,
                    ',' if depth == 0 => break,
                    _ => {}
                }
                if !c.is_whitespace() {
                    arg.push(c);
                }
            }
            out.push(arg);
        }
    }
    out
}

/// Every register the guest driver's source touches is served (emulated or translated),
/// never denied. A new register in the driver fails this test until it is classified.
#[test]
fn every_register_the_guest_driver_touches_is_classified() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-driver/src/driver");
    let mut seen = 0;
    let mut unknown = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for arg in register_args(&src) {
            // The accessors' own bodies pass their parameter on.
            if arg == "reg" {
                continue;
            }
            match offsets(&arg) {
                Some(offs) => {
                    for o in offs {
                        assert_ne!(classify(o), Class::Deny, "{arg} ({o:#x}) in {}", path.display());
                        seen += 1;
                    }
                }
                None => unknown.push(format!("{}: {arg}", path.display())),
            }
        }
    }
    assert!(unknown.is_empty(), "register expressions this test cannot resolve: {unknown:#?}");
    assert!(seen > 50, "the scan found only {seen} register uses");
}

proptest! {
    /// Classification agrees with a linear scan of the table.
    #[test]
    fn binary_search_matches_linear_scan(off in any::<u32>()) {
        let linear = TABLE.iter().find(|e| off % 4 == 0 && (e.start..e.end).contains(&off)).map_or(Class::Deny, |e| e.class);
        prop_assert_eq!(classify(off), linear);
    }
}
