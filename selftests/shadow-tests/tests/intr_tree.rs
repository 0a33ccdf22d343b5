//! PMC's interrupt tree and PTIMER (`uapi/intr_tree.rs`), which the model and the vGPU share:
//! the tree on its own, then the same guest sequence on the model and on a vGPU.

mod common;

use common::*;
use gpuvm_shadow_tests::gf100::{pfifo, pmc, ptimer};
use gpuvm_shadow_tests::intr_tree::{IntrTree, Written};
use gpuvm_shadow_tests::vregs::{Read, VRegs};
use proptest::prelude::*;
use std::cell::Cell;

fn rd(t: &mut IntrTree, off: u32, inputs: u32, now: u64) -> u32 {
    t.read(off, inputs, now).expect("a tree register")
}

fn wr(t: &mut IntrTree, off: u32, v: u32, now: u64) -> Written {
    t.write(off, v, now).expect("a tree register")
}

#[test]
fn unit_inputs_are_gated_by_pmc_enable_and_enabling_resets_ptimer() {
    let mut t = IntrTree::new();
    wr(&mut t, pmc::INTR_EN_HOST, pmc::INTR_EN_HW, 0);
    // PFIFO pending but disabled: invisible, no line.
    assert_eq!(rd(&mut t, pmc::INTR_HOST, pmc::INTR_PFIFO, 0), 0);
    assert!(!t.line(pmc::INTR_PFIFO));
    assert_eq!(
        wr(&mut t, pmc::ENABLE, pmc::ENABLE_PFIFO | pmc::ENABLE_PTIMER, 0),
        Written::Enabled(pmc::ENABLE_PFIFO | pmc::ENABLE_PTIMER)
    );
    assert_eq!(rd(&mut t, pmc::INTR_HOST, pmc::INTR_PFIFO, 0), pmc::INTR_PFIFO);
    assert!(t.line(pmc::INTR_PFIFO));
    assert_eq!(rd(&mut t, pmc::INTR_LINE_STATUS, pmc::INTR_PFIFO, 0), 1);
    // Only 0 -> 1 transitions are reported.
    assert_eq!(wr(&mut t, pmc::ENABLE, pmc::ENABLE_ALL, 0), Written::Enabled(!(pmc::ENABLE_PFIFO | pmc::ENABLE_PTIMER)));
    // A fired alarm is PTIMER's input; re-enabling PTIMER clears its interrupt state.
    wr(&mut t, ptimer::INTR_EN, u32::MAX, 0);
    assert_eq!(rd(&mut t, ptimer::INTR_EN, 0, 0), ptimer::INTR_ALARM);
    assert_eq!(wr(&mut t, ptimer::ALARM, 0, 0x40), Written::AlarmSet);
    assert_eq!(rd(&mut t, pmc::INTR_HOST, 0, 0x40), pmc::INTR_PTIMER);
    wr(&mut t, pmc::ENABLE, 0, 0x40);
    assert!(!t.line(0));
    wr(&mut t, pmc::ENABLE, pmc::ENABLE_PTIMER, 0x40);
    assert_eq!(rd(&mut t, ptimer::INTR, 0, 0x40), 0);
    assert_eq!(rd(&mut t, ptimer::INTR_EN, 0, 0x40), 0);
    // Owner inputs never fake the software bit.
    assert!(!t.line(pmc::INTR_SOFTWARE));
}

#[test]
fn software_interrupt_masks_and_both_lines() {
    let mut t = IntrTree::new();
    wr(&mut t, pmc::ENABLE, pmc::ENABLE_ALL, 0);
    for (intr, en, mask) in [
        (pmc::INTR_HOST, pmc::INTR_EN_HOST, pmc::INTR_MASK_HOST),
        (pmc::INTR_NRHOST, pmc::INTR_EN_NRHOST, pmc::INTR_MASK_NRHOST),
    ] {
        assert_eq!(rd(&mut t, mask, 0, 0), u32::MAX, "inputs unmasked at power-on");
        // Only the software bit of INTR is writable; it shows whatever the mask says.
        wr(&mut t, mask, 0, 0);
        wr(&mut t, intr, u32::MAX, 0);
        assert_eq!(rd(&mut t, intr, pmc::INTR_PGRAPH, 0), pmc::INTR_SOFTWARE);
        assert!(!t.line(0), "{intr:#x}: software line not enabled");
        wr(&mut t, en, u32::MAX, 0);
        assert_eq!(rd(&mut t, en, 0, 0), pmc::INTR_EN_HW | pmc::INTR_EN_SW);
        assert!(t.line(0));
        wr(&mut t, intr, 0, 0);
        assert!(!t.line(pmc::INTR_PGRAPH), "{intr:#x}: PGRAPH masked");
        wr(&mut t, mask, pmc::INTR_PGRAPH, 0);
        assert!(t.line(pmc::INTR_PGRAPH));
        wr(&mut t, en, 0, 0);
        assert!(!t.line(pmc::INTR_PGRAPH));
    }
    // Line status is read-only.
    assert_eq!(wr(&mut t, pmc::INTR_LINE_STATUS, 1, 0), Written::Done);
    assert_eq!(rd(&mut t, pmc::INTR_LINE_STATUS, 0, 0), 0);
    assert_eq!(t.read(pmc::Boot0::OFFSET, 0, 0), None);
    assert_eq!(t.write(pfifo::INTR, 0, 0), None);
}

#[test]
fn time_can_be_set_and_the_alarm_fires_once_across_the_wrap() {
    let mut t = IntrTree::new();
    wr(&mut t, pmc::ENABLE, pmc::ENABLE_ALL, 0);
    assert_eq!(t.time(0x1_2345_6789), 0x1_2345_6789 & !0x1f);
    wr(&mut t, ptimer::TIME_HIGH, 0x2000_0007, 1000);
    wr(&mut t, ptimer::TIME_LOW, 0xffff_0000, 1000);
    assert_eq!(t.time(1000), 0x7_ffff_0000, "TIME_HIGH keeps 29 bits");
    assert_eq!(rd(&mut t, ptimer::TIME_LOW, 0, 1040), 0xffff_0020, "bits 0-4 read 0");
    assert_eq!(rd(&mut t, ptimer::TIME_HIGH, 0, 1040), 7);
    // An alarm just past the wrap of TIME_LOW is in the future, not the past.
    wr(&mut t, ptimer::INTR_EN, ptimer::INTR_ALARM, 1000);
    wr(&mut t, pmc::INTR_EN_HOST, pmc::INTR_EN_HW, 1000);
    wr(&mut t, ptimer::ALARM, 0x0000_1000, 1000);
    assert!(t.alarm_armed());
    assert_eq!(rd(&mut t, ptimer::INTR, 0, 1000 + 0xf000), 0);
    assert!(!t.check_alarm(1000 + 0xf000));
    assert!(t.check_alarm(1000 + 0x1_1000), "reached after the wrap");
    assert!(!t.alarm_armed() && t.line(0));
    // Acknowledge: it does not fire again at the next pass.
    wr(&mut t, ptimer::INTR, ptimer::INTR_ALARM, 0);
    assert!(!t.check_alarm(1000 + 0x1_1000 + (1 << 32)));
    assert!(!t.line(0));
    // The ratio fields keep 16 bits; the source all 32.
    wr(&mut t, ptimer::CLOCK_DIV, u32::MAX, 0);
    wr(&mut t, ptimer::CLOCK_MUL, u32::MAX, 0);
    wr(&mut t, ptimer::CLOCK_SOURCE, u32::MAX, 0);
    assert_eq!(rd(&mut t, ptimer::CLOCK_DIV, 0, 0), ptimer::CLOCK_RATIO_MASK);
    assert_eq!(rd(&mut t, ptimer::CLOCK_MUL, 0, 0), ptimer::CLOCK_RATIO_MASK);
    assert_eq!(rd(&mut t, ptimer::CLOCK_SOURCE, 0, 0), u32::MAX);
}

/// The model and a vGPU answer the same guest sequence on the tree's registers alike.
#[test]
fn the_model_and_a_vgpu_serve_the_same_tree() {
    use gf100_model::{Bar, Gpu, ModelConfig};
    let gpu = Gpu::new(ModelConfig { vram_bytes: 64 << 20, ..ModelConfig::default() }).unwrap();
    let clock = FakeClock(Cell::new(0));
    let mut v = VRegs::new(slice(), pmc::BOOT_0_QUADRO_6000);
    let mut both = |off: u32, val: Option<u32>| -> (u32, u32) {
        match val {
            Some(x) => {
                gpu.bar_write32(Bar::Bar0, off.into(), x);
                v.write(off, x, &clock);
                (0, 0)
            }
            None => {
                let Read::Value(r) = v.read(off, &clock) else { panic!("{off:#x} denied") };
                (gpu.bar_read32(Bar::Bar0, off.into()), r)
            }
        }
    };
    let seq: &[(u32, Option<u32>)] = &[
        (pmc::ENABLE, Some(pmc::ENABLE_ALL)),
        (pmc::ENABLE, None),
        (pmc::INTR_MASK_HOST, Some(!pmc::INTR_PTIMER)),
        (pmc::INTR_EN_HOST, Some(u32::MAX)),
        (pmc::INTR_EN_HOST, None),
        (pmc::INTR_HOST, Some(pmc::INTR_SOFTWARE)),
        (pmc::INTR_HOST, None),
        (pmc::INTR_LINE_STATUS, None),
        (pmc::INTR_HOST, Some(0)),
        (pmc::INTR_LINE_STATUS, None),
        (ptimer::INTR_EN, Some(u32::MAX)),
        (ptimer::INTR_EN, None),
        // Both clocks are well below 2^31 ns: an alarm at 0 has passed and fires at once.
        (ptimer::ALARM, Some(0)),
        (ptimer::INTR, None),
        (pmc::INTR_HOST, None),
        (pmc::INTR_LINE_STATUS, None),
        (pmc::INTR_MASK_HOST, Some(u32::MAX)),
        (pmc::INTR_HOST, None),
        (pmc::INTR_LINE_STATUS, None),
        (pmc::INTR_NRHOST, None),
        (ptimer::INTR, Some(ptimer::INTR_ALARM)),
        (pmc::INTR_LINE_STATUS, None),
        (ptimer::CLOCK_DIV, Some(0x12_3456)),
        (ptimer::CLOCK_DIV, None),
        (ptimer::TIME_HIGH, Some(0x2000_0042)),
        (ptimer::TIME_HIGH, None),
        (pmc::ENABLE, Some(0)),
        (pmc::ENABLE, None),
    ];
    for &(off, val) in seq {
        let (model, vgpu) = both(off, val);
        assert_eq!(model, vgpu, "{off:#x} after {val:x?}");
    }
    assert_eq!(gpu.irq_line(), v.irq_line());
}

proptest! {
    /// Any register access to any offset with any value at any time neither panics nor sets
    /// bits that do not exist.
    #[test]
    fn any_access_is_safe(ops in proptest::collection::vec((any::<u32>(), prop_oneof![Just(pmc::INTR_HOST), Just(ptimer::ALARM), Just(pmc::ENABLE), Just(ptimer::TIME_LOW), any::<u32>()], any::<u32>(), any::<u64>(), any::<bool>()), 1..100)) {
        let mut t = IntrTree::new();
        for (inputs, off, val, now, write) in ops {
            if write {
                prop_assert_eq!(t.write(off, val, now).is_some(), IntrTree::serves(off));
            } else {
                prop_assert_eq!(t.read(off, inputs, now).is_some(), IntrTree::serves(off));
            }
            t.check_alarm(now);
            prop_assert_eq!(t.time(now) & 0x1f, 0);
            let _ = t.line(inputs);
        }
    }
}
