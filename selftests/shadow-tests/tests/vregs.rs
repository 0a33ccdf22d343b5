//! The emulated registers of a vGPU: the guest driver's bring-up as it sees it, checked
//! effects, interrupts, and a fuzz test of the decoder.

mod common;

use common::*;
use gpuvm_shadow_tests::gf100::{inst, mmu, pbus, pci, pfb, pfifo, pgraph, pmc, pstraps, ptimer, target};
use gpuvm_shadow_tests::regs::{self, Class, Reg, TABLE};
use gpuvm_shadow_tests::vregs::*;
use proptest::prelude::*;
use std::cell::Cell;

fn vgpu() -> (VRegs, FakeClock) {
    (VRegs::new(slice(), pmc::BOOT_0_QUADRO_6000), FakeClock(Cell::new(0x1_2345_6789)))
}

fn rd(r: &mut VRegs, c: &FakeClock, off: u32) -> u32 {
    match r.read(off, c) {
        Read::Value(v) => v,
        other => panic!("read {off:#x}: {other:?}"),
    }
}

fn wr(r: &mut VRegs, c: &FakeClock, off: u32, v: u32) -> Write {
    r.write(off, v, c)
}

#[test]
fn identity_time_and_vram_size_as_the_guest_driver_reads_them() {
    let (mut r, c) = vgpu();
    assert_eq!(rd(&mut r, &c, pmc::ENDIAN), 0);
    assert_eq!(rd(&mut r, &c, pmc::Boot0::OFFSET), pmc::BOOT_0_QUADRO_6000);
    assert_eq!(rd(&mut r, &c, pstraps::STRAPS) & pstraps::CRYSTAL_MASK, pstraps::CRYSTAL_27MHZ);
    // The guest driver's sum over enabled partitions is the vGPU's share.
    let fbps = rd(&mut r, &c, pfb::FBP_COUNT).min(pfb::MAX_PARTS);
    let disabled = rd(&mut r, &c, pfb::FBP_DISABLED_MASK);
    let mib: u64 = (0..fbps).filter(|f| disabled & (1 << f) == 0).map(|f| rd(&mut r, &c, pfb::part_mib(f)) as u64).sum();
    assert_eq!(mib << 20, GUEST_SIZE);
    // Old nouveau's registers agree.
    let parts = rd(&mut r, &c, pfb::PART_COUNT);
    assert_eq!(parts as u64 * rd(&mut r, &c, pfb::PART_MIB_BROADCAST) as u64, GUEST_SIZE >> 20);
    assert_eq!(rd(&mut r, &c, pfb::part_mib(pfb::MAX_PARTS - 1)) == 0, parts < pfb::MAX_PARTS);
    // PTIMER follows the clock, hi/lo/hi consistent, low 5 bits zero; the guest may set it.
    let hi = rd(&mut r, &c, ptimer::TIME_HIGH);
    let lo = rd(&mut r, &c, ptimer::TIME_LOW);
    assert_eq!((hi as u64) << 32 | lo as u64, 0x1_2345_6789 & !0x1f);
    c.0.set(c.0.get() + 1000);
    assert!(rd(&mut r, &c, ptimer::TIME_LOW) > lo);
    assert_eq!(wr(&mut r, &c, ptimer::TIME_HIGH, 7), Write::Done);
    assert_eq!(rd(&mut r, &c, ptimer::TIME_HIGH), 7);
    // Big-endian mode and 64 KiB big pages are refused; the rest of CTRL sticks.
    assert_eq!(wr(&mut r, &c, pmc::ENDIAN, pmc::ENDIAN_BIG), Write::Denied(Denial::Unsupported));
    assert_eq!(rd(&mut r, &c, pmc::ENDIAN), 0);
    assert_eq!(wr(&mut r, &c, mmu::CTRL, mmu::CTRL_BIG_PAGE_64K), Write::Denied(Denial::Unsupported));
    assert_eq!(rd(&mut r, &c, mmu::CTRL) & mmu::CTRL_BIG_PAGE_64K, 0);
    assert_eq!(r.denied, DenyStats { reads: 0, writes: 2 });
}

#[test]
fn tlb_flush_protocol_yields_a_checked_flush_effect() {
    let (mut r, c) = vgpu();
    assert_ne!(rd(&mut r, &c, mmu::CTRL) & mmu::CTRL_FLUSH_SLOTS_MASK, 0);
    assert_eq!(wr(&mut r, &c, mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(0x10_0000).with_sysram(false).raw()), Write::Done);
    assert_eq!(rd(&mut r, &c, mmu::CTRL) & mmu::CTRL_FLUSH_DONE, 0);
    let flush = mmu::Invalidate::default().with_page_all(true).with_trigger(true);
    let t = flush.raw();
    assert_eq!(wr(&mut r, &c, mmu::Invalidate::OFFSET, t), Write::Effect(Effect::TlbFlush { pd: Some(0x10_0000), hub_only: false }));
    assert_ne!(rd(&mut r, &c, mmu::CTRL) & mmu::CTRL_FLUSH_DONE, 0);
    assert_eq!(
        wr(&mut r, &c, mmu::Invalidate::OFFSET, flush.with_all_pdb(true).with_hub_only(true).raw()),
        Write::Effect(Effect::TlbFlush { pd: None, hub_only: true })
    );
    // A PD outside the partition or in system memory: no effect, but the guest's poll ends.
    wr(&mut r, &c, mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(GUEST_SIZE).with_sysram(false).raw());
    assert_eq!(wr(&mut r, &c, mmu::Invalidate::OFFSET, t), Write::Denied(Denial::OutsidePartition));
    assert_ne!(rd(&mut r, &c, mmu::CTRL) & mmu::CTRL_FLUSH_DONE, 0);
    wr(&mut r, &c, mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(0x1000).with_sysram(true).raw());
    assert_eq!(wr(&mut r, &c, mmu::Invalidate::OFFSET, t), Write::Denied(Denial::UnsupportedTarget));
    // Without the trigger bit nothing happens.
    assert_eq!(wr(&mut r, &c, mmu::Invalidate::OFFSET, flush.with_trigger(false).raw()), Write::Done);
}

/// INVALIDATE_PDB's target is bit 1 alone (envytools rnndb `memory/gf100_pffb.xml`
/// TLB_FLUSH_VSPACE: 0 VRAM, 1 system memory), not a two-bit `target::*`: a PDB word with
/// only bit 0 set names a VRAM page directory, both system-memory targets name system memory.
#[test]
fn tlb_flush_pdb_target_is_bit_1() {
    let (mut r, c) = vgpu();
    let flush = mmu::Invalidate::default().with_page_all(true).with_trigger(true).raw();
    let pd = 0x10_0000u64;
    let cases = [
        (target::VRAM, Write::Effect(Effect::TlbFlush { pd: Some(pd), hub_only: false })),
        (1, Write::Effect(Effect::TlbFlush { pd: Some(pd), hub_only: false })),
        (target::SYS_COHERENT, Write::Denied(Denial::UnsupportedTarget)),
        (target::SYS_NONCOHERENT, Write::Denied(Denial::UnsupportedTarget)),
    ];
    for (low_bits, want) in cases {
        // What nouveau writes: `pd >> 8 | target`.
        let pdb = (pd >> 8) as u32 | low_bits;
        assert_eq!(mmu::InvalidatePdb::from_raw(pdb).addr(), pd);
        assert_eq!(mmu::InvalidatePdb::from_raw(pdb).sysram(), low_bits & 2 != 0);
        wr(&mut r, &c, mmu::InvalidatePdb::OFFSET, pdb);
        assert_eq!(wr(&mut r, &c, mmu::Invalidate::OFFSET, flush), want, "PDB {pdb:#x}");
    }
}

#[test]
fn pramin_window_is_translated_into_the_partition_only() {
    let (mut r, c) = vgpu();
    let base = |a: u64| pbus::PraminBase::default().with_addr(a).raw();
    wr(&mut r, &c, pbus::PraminBase::OFFSET, base(0x30_0000));
    assert_eq!(rd(&mut r, &c, pbus::PraminBase::OFFSET), base(0x30_0000));
    let off = pbus::PRAMIN_WINDOW + 0x1234;
    let a = VramAccess { guest: 0x30_1234, host: GUEST_BASE + 0x30_1234 };
    assert_eq!(r.read(off, &c), Read::Vram(a));
    assert_eq!(r.write(off, 5, &c), Write::Vram(a, 5));
    // The last window of the partition, and the first one past it.
    wr(&mut r, &c, pbus::PraminBase::OFFSET, base(GUEST_SIZE - MIB));
    let last = pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE - 4;
    assert_eq!(r.read(last, &c), Read::Vram(VramAccess { guest: GUEST_SIZE - 4, host: GUEST_BASE + GUEST_SIZE - 4 }));
    wr(&mut r, &c, pbus::PraminBase::OFFSET, base(GUEST_SIZE));
    assert_eq!(r.read(pbus::PRAMIN_WINDOW, &c), Read::Denied(Denial::OutsidePartition));
    assert_eq!(r.write(pbus::PRAMIN_WINDOW, 1, &c), Write::Denied(Denial::OutsidePartition));
    // A window onto system memory is not offered.
    wr(&mut r, &c, pbus::PraminBase::OFFSET, pbus::PraminBase::default().with_target(target::SYS_COHERENT).raw());
    assert_eq!(r.read(pbus::PRAMIN_WINDOW, &c), Read::Denied(Denial::UnsupportedTarget));
    assert_eq!(r.denied, DenyStats { reads: 2, writes: 1 });
}

#[test]
fn bar_instance_blocks_and_poll_area() {
    let (mut r, c) = vgpu();
    assert_eq!(
        wr(&mut r, &c, pbus::BAR3_INST, pbus::BarInst::vm(0x4_0000).raw()),
        Write::Effect(Effect::BarInst { bar: Bar::Bar3, inst: Some(0x4_0000) })
    );
    assert_eq!(rd(&mut r, &c, pbus::BAR3_INST), pbus::BarInst::vm(0x4_0000).raw());
    assert_eq!(wr(&mut r, &c, pbus::BAR1_INST, pbus::BarInst::vm(GUEST_SIZE).raw()), Write::Denied(Denial::OutsidePartition));
    assert_eq!(
        wr(&mut r, &c, pbus::BAR1_INST, pbus::BarInst::vm(0x1000).with_target(target::SYS_COHERENT).raw()),
        Write::Denied(Denial::UnsupportedTarget)
    );
    assert_eq!(wr(&mut r, &c, pbus::BAR1_INST, 0), Write::Effect(Effect::BarInst { bar: Bar::Bar1, inst: None }));
    assert_eq!(wr(&mut r, &c, pbus::FLUSH, pbus::FLUSH_TRIGGER), Write::Effect(Effect::BarFlush));
    assert_eq!(rd(&mut r, &c, pbus::FLUSH) & pbus::FLUSH_BUSY, 0);
    assert_eq!(
        wr(&mut r, &c, pfifo::UserdPollBase::OFFSET, pfifo::UserdPollBase::default().with_bar1_va(0x2_0000).with_enable(true).raw()),
        Write::Effect(Effect::UserdPollBase { bar1_va: 0x2_0000, enabled: true })
    );
    assert_eq!(wr(&mut r, &c, pci::BAR0_MSI_REARM, 0), Write::Effect(Effect::MsiRearm));
}

#[test]
fn channels_runlist_and_kick_are_checked_against_the_slice() {
    let (mut r, c) = vgpu();
    assert_eq!(wr(&mut r, &c, pmc::ENABLE, pmc::ENABLE_ALL), Write::Effect(Effect::PfifoReset));
    assert_eq!(wr(&mut r, &c, pmc::ENABLE, pmc::ENABLE_ALL), Write::Done);
    wr(&mut r, &c, pfifo::UserdPollBase::OFFSET, pfifo::UserdPollBase::default().with_enable(true).raw());
    let s = slice();
    // Bind, state, unbind on the vGPU's last channel.
    let ch = s.channels - 1;
    assert_eq!(
        wr(&mut r, &c, pfifo::ChanInst::offset(ch), pfifo::ChanInst::bound(0x5_0000).raw()),
        Write::Effect(Effect::ChannelBind { chid: ch, host_chid: s.first_channel + ch, inst: 0x5_0000 })
    );
    assert_eq!(rd(&mut r, &c, pfifo::ChanInst::offset(ch)), pfifo::ChanInst::bound(0x5_0000).raw());
    assert_eq!(
        wr(&mut r, &c, pfifo::ChanState::offset(ch), pfifo::ChanState::INITIAL.raw()),
        Write::Effect(Effect::ChannelState { chid: ch, host_chid: s.first_channel + ch, runnable: true })
    );
    assert_eq!(rd(&mut r, &c, pfifo::ChanState::offset(ch)), pfifo::ChanState::INITIAL.raw());
    assert_eq!(wr(&mut r, &c, pfifo::ChanInst::offset(ch), 0), Write::Effect(Effect::ChannelUnbind { chid: ch, host_chid: s.first_channel + ch }));
    // A channel the vGPU does not own: reads 0, writes dropped.
    assert_eq!(r.read(pfifo::ChanInst::offset(s.channels), &c), Read::Denied(Denial::ForeignChannel));
    assert_eq!(wr(&mut r, &c, pfifo::ChanInst::offset(s.channels), pfifo::ChanInst::bound(0x5_0000).raw()), Write::Denied(Denial::ForeignChannel));
    // An instance block outside the partition: refused, and the guest sees a channel-table error.
    assert_eq!(wr(&mut r, &c, pfifo::ChanInst::offset(0), pfifo::ChanInst::bound(GUEST_SIZE).raw()), Write::Denied(Denial::OutsidePartition));
    assert_ne!(rd(&mut r, &c, pfifo::INTR) & pfifo::INTR_CHAN_TABLE_ERROR, 0);
    assert_eq!(rd(&mut r, &c, pfifo::CHAN_TABLE_ERROR), pfifo::CHAN_TABLE_ERROR_INVALID_TARGET);
    // Runlist in range, then one whose entries would run past the partition.
    wr(&mut r, &c, pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(0x6_0000).raw());
    assert_eq!(
        wr(&mut r, &c, pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(2).raw()),
        Write::Effect(Effect::RunlistCommit { guest: 0x6_0000, count: 2 })
    );
    assert!(!pfifo::RunlistStatus::from_raw(rd(&mut r, &c, pfifo::RunlistStatus::OFFSET)).pending());
    assert_ne!(rd(&mut r, &c, pfifo::INTR) & pfifo::INTR_RUNLIST, 0);
    wr(&mut r, &c, pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(GUEST_SIZE - 0x1000).raw());
    let most = pfifo::RunlistSubmit::commit(pfifo::RunlistSubmit::COUNT_MAX).raw();
    assert_eq!(wr(&mut r, &c, pfifo::RunlistSubmit::OFFSET, most), Write::Denied(Denial::OutsidePartition));
    assert_eq!(rd(&mut r, &c, pfifo::SCHED_ERROR), pfifo::SCHED_ERROR_BAD_RUNLIST);
    // Kick.
    assert_eq!(wr(&mut r, &c, pfifo::KICK, 3), Write::Effect(Effect::Kick { chid: 3, host_chid: s.first_channel + 3 }));
    assert_eq!(rd(&mut r, &c, pfifo::KICK), 3);
    assert_eq!(wr(&mut r, &c, pfifo::KICK, s.channels), Write::Denied(Denial::ForeignChannel));
    // A PFIFO reset clears the channel table.
    wr(&mut r, &c, pfifo::ChanInst::offset(1), pfifo::ChanInst::bound(0x5_0000).raw());
    wr(&mut r, &c, pmc::ENABLE, 0);
    assert_eq!(wr(&mut r, &c, pmc::ENABLE, pmc::ENABLE_PFIFO), Write::Effect(Effect::PfifoReset));
    assert_eq!(rd(&mut r, &c, pfifo::ChanInst::offset(1)), 0);
}

#[test]
fn interrupts_reach_the_line_and_are_acknowledged_like_on_the_model() {
    let (mut r, c) = vgpu();
    wr(&mut r, &c, pmc::ENABLE, pmc::ENABLE_ALL);
    wr(&mut r, &c, pmc::INTR_MASK_HOST, pmc::INTR_PFIFO | pmc::INTR_PGRAPH);
    wr(&mut r, &c, pfifo::INTR, u32::MAX);
    wr(&mut r, &c, pfifo::INTR_EN, u32::MAX);
    wr(&mut r, &c, pfifo::ENGINE_INTR_EN, pfifo::ENGINE_INTR_NOTIFY);
    r.raise_nonstall();
    assert_ne!(rd(&mut r, &c, pmc::INTR_HOST) & pmc::INTR_PFIFO, 0);
    assert!(!r.irq_line(), "host line not enabled yet");
    wr(&mut r, &c, pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    assert!(r.irq_line());
    assert_eq!(rd(&mut r, &c, pmc::INTR_LINE_STATUS), 1);
    // The guest driver's acknowledge sequence.
    assert_ne!(rd(&mut r, &c, pfifo::INTR) & pfifo::INTR_ENGINE, 0);
    let n = rd(&mut r, &c, pfifo::engine_intr(0));
    wr(&mut r, &c, pfifo::engine_intr(0), n);
    wr(&mut r, &c, pfifo::INTR, pfifo::INTR_ENGINE);
    assert!(!r.irq_line());
    // Masked inputs do not reach the line; the software bit does when enabled.
    r.raise_pgraph(pgraph::INTR_DATA_ERROR, 0x104, [0x300, 1], 0x7000);
    wr(&mut r, &c, pgraph::INTR_EN, u32::MAX);
    assert!(r.irq_line());
    assert_eq!(rd(&mut r, &c, pgraph::INTR_CHANNEL_INST), 7);
    assert_eq!(rd(&mut r, &c, pgraph::TRAPPED_ADDR), 0x300);
    wr(&mut r, &c, pmc::INTR_MASK_HOST, 0);
    assert!(!r.irq_line());
    wr(&mut r, &c, pmc::INTR_EN_HOST, pmc::INTR_EN_HW | pmc::INTR_EN_SW);
    wr(&mut r, &c, pmc::INTR_HOST, pmc::INTR_SOFTWARE);
    assert!(r.irq_line());
    assert_eq!(rd(&mut r, &c, pmc::INTR_HOST), pmc::INTR_SOFTWARE);
    // MMU fault records and PBDMA interrupts.
    wr(&mut r, &c, pmc::INTR_HOST, 0);
    wr(&mut r, &c, pgraph::INTR, u32::MAX);
    wr(&mut r, &c, pmc::INTR_MASK_HOST, u32::MAX);
    r.raise_vm_fault(pfifo::FAULT_UNIT_PGRAPH, 0x5000, 0x1_2345_6000, 2);
    assert_eq!(rd(&mut r, &c, pfifo::VmFaultAddrHi::offset(0)), 1);
    assert_eq!(rd(&mut r, &c, pfifo::VmFaultAddrLo::offset(0)), 0x2345_6000);
    assert_eq!(rd(&mut r, &c, pfifo::VmFaultInst::offset(0)), 5);
    assert_eq!(rd(&mut r, &c, pfifo::VmFaultInfo::offset(0)), 2);
    assert!(r.irq_line());
    wr(&mut r, &c, pfifo::VM_FAULT_UNITS, 1);
    assert!(!r.irq_line());
    r.raise_pbdma(1, pfifo::PBDMA_INTR_ILLEGAL_MTHD, 0x1234, 5, 2);
    wr(&mut r, &c, pfifo::pbdma_base(1) + pfifo::PBDMA_INTR_EN, u32::MAX);
    assert_eq!(rd(&mut r, &c, pfifo::PBDMA_INTR_UNITS), 2);
    assert_eq!(rd(&mut r, &c, pfifo::pbdma_base(1) + pfifo::PBDMA_CHID), 2);
    wr(&mut r, &c, pfifo::pbdma_base(1) + pfifo::PBDMA_INTR, u32::MAX);
    assert!(!r.irq_line());
    // Out-of-range injections are ignored.
    r.raise_vm_fault(99, 0, 0, 0);
    r.raise_pbdma(7, 1, 0, 0, 0);
    assert!(!r.irq_line());
}

#[test]
fn unknown_unaligned_and_out_of_range_offsets_are_denied_and_counted() {
    let (mut r, c) = vgpu();
    for off in [0x8, 0x201, pci::BAR0_SIZE as u32, u32::MAX, 0x409500, pfifo::eng_state(0)] {
        assert!(matches!(r.read(off, &c), Read::Denied(_)), "{off:#x}");
        assert!(matches!(r.write(off, 0xffff_ffff, &c), Write::Denied(_)), "{off:#x}");
    }
    assert_eq!(r.denied, DenyStats { reads: 6, writes: 6 });
    r.reset();
    assert_eq!(r.denied, DenyStats { reads: 6, writes: 6 });
    assert_eq!(rd(&mut r, &c, pmc::ENABLE), 0);
}

/// Every aligned BAR0 offset: one no table row holds is denied for reads and for writes of
/// all ones and of zero, and changes nothing a read shows; a read reaches VRAM only in the
/// PRAMIN window, and there only inside the partition, at the word the window shows.
#[test]
fn every_offset_outside_the_table_is_denied_and_only_pramin_reaches_vram() {
    let (mut r, c) = vgpu();
    let (mut denied, mut denied_reads) = (0, 0);
    for off in (0..pci::BAR0_SIZE as u32).step_by(4) {
        match regs::classify(off) {
            Class::Deny => {
                for v in [u32::MAX, 0] {
                    if !matches!(r.write(off, v, &c), Write::Denied(Denial::Unknown)) {
                        panic!("write of {v:#x} at {off:#x} not denied");
                    }
                }
                if !matches!(r.read(off, &c), Read::Denied(Denial::Unknown)) {
                    panic!("read at {off:#x} not denied");
                }
                denied += 1;
            }
            Class::Translate(_) => match r.read(off, &c) {
                Read::Vram(a) => assert_eq!((a.guest, a.host), (u64::from(off - pbus::PRAMIN_WINDOW), GUEST_BASE + u64::from(off - pbus::PRAMIN_WINDOW))),
                other => panic!("PRAMIN read at {off:#x}: {other:?}"),
            },
            Class::Emulate(reg) => match r.read(off, &c) {
                Read::Value(_) => {}
                // The channel table of channels the vGPU does not own.
                Read::Denied(Denial::ForeignChannel) if reg == Reg::ChanTable => denied_reads += 1,
                other => panic!("read at {off:#x} ({reg:?}): {other:?}"),
            },
        }
    }
    assert_eq!(r.denied, DenyStats { reads: denied + denied_reads, writes: 2 * denied });
    assert_eq!(denied_reads, 2 * (pfifo::CHANNELS - slice().channels) as u64);
    // Nothing a denied write hit shows: the state is power-on.
    let (mut fresh, _) = vgpu();
    for e in TABLE.iter().filter(|e| matches!(e.class, Class::Emulate(_))) {
        for off in (e.start..e.end).step_by(4).filter(|&o| o != ptimer::TIME_LOW && o != ptimer::TIME_HIGH) {
            assert_eq!(format!("{:?}", r.read(off, &c)), format!("{:?}", fresh.read(off, &c)), "{off:#x}");
        }
    }
}

/// Offsets a fuzzer should hit: every table row's edges, the PRAMIN window, near misses,
/// random.
fn offset() -> impl Strategy<Value = u32> {
    let rows: Vec<u32> = TABLE.iter().flat_map(|e| [e.start, e.end - 4, e.end]).collect();
    prop_oneof![
        6 => proptest::sample::select(rows),
        2 => (0..pfifo::CHANNELS * 2).prop_map(|i| pfifo::ChanInst::offset(0) + 4 * i),
        2 => (0..pbus::PRAMIN_WINDOW_SIZE / 4).prop_map(|w| pbus::PRAMIN_WINDOW + 4 * w),
        1 => any::<u32>(),
    ]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0..(GUEST_SIZE >> 12) + 8).prop_map(|p| pfifo::ChanInst::default().with_valid(true).with_addr(p << 12).raw()),
        (0..(GUEST_SIZE as u32 >> 16) + 4),
        Just(u32::MAX),
        Just(0u32),
        0..64u32,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random accesses never panic, and every effect or VRAM access stays inside the vGPU.
    #[test]
    fn decoder_fuzz_never_escapes_the_partition(ops in proptest::collection::vec((offset(), value(), any::<bool>()), 1..200)) {
        let (mut r, c) = vgpu();
        let s = slice();
        let inside = |a: &VramAccess| a.guest < GUEST_SIZE && a.host == GUEST_BASE + a.guest;
        let own = |chid: u32, host: u32| chid < s.channels && host == s.first_channel + chid;
        let mut denied = 0;
        for (off, v, write) in ops {
            if !write {
                match r.read(off, &c) {
                    Read::Vram(a) => prop_assert!(inside(&a), "{a:x?}"),
                    Read::Denied(_) => denied += 1,
                    Read::Value(_) => prop_assert!(regs::classify(off) != Class::Deny),
                }
                continue;
            }
            match r.write(off, v, &c) {
                Write::Vram(a, _) => prop_assert!(inside(&a), "{a:x?}"),
                Write::Denied(_) => denied += 1,
                Write::Done => prop_assert!(regs::classify(off) != Class::Deny),
                Write::Effect(e) => match e {
                    Effect::TlbFlush { pd, .. } => prop_assert!(pd.is_none_or(|p| p + 8 <= GUEST_SIZE)),
                    Effect::BarInst { inst, .. } => prop_assert!(inst.is_none_or(|i| i + inst::SIZE <= GUEST_SIZE)),
                    Effect::RunlistCommit { guest, count } => prop_assert!(guest + count as u64 * pfifo::RUNLIST_ENTRY_SIZE <= GUEST_SIZE),
                    Effect::Kick { chid, host_chid } | Effect::ChannelUnbind { chid, host_chid } => prop_assert!(own(chid, host_chid)),
                    Effect::ChannelState { chid, host_chid, .. } => prop_assert!(own(chid, host_chid)),
                    Effect::ChannelBind { chid, host_chid, inst } => {
                        prop_assert!(own(chid, host_chid));
                        prop_assert!(inst % inst::SIZE == 0 && inst + inst::SIZE <= GUEST_SIZE);
                    }
                    Effect::BarFlush | Effect::UserdPollBase { .. } | Effect::PfifoReset | Effect::MsiRearm => {}
                },
            }
            let _ = r.irq_line();
        }
        prop_assert_eq!(r.denied.reads + r.denied.writes, denied);
    }
}

/// PFIFO's engine interrupt array has 16 entries on GF100 (rnndb ENGINE_INTR, length 16):
/// every one reads and acknowledges on a vGPU and on the model, the word after it does not
/// belong to it.
#[test]
fn engine_intr_has_sixteen_entries() {
    let (mut r, c) = vgpu();
    wr(&mut r, &c, pmc::ENABLE, pmc::ENABLE_ALL);
    assert_eq!(pfifo::ENGINE_INTR_COUNT, 16);
    for n in 0..pfifo::ENGINE_INTR_COUNT {
        assert_eq!(rd(&mut r, &c, pfifo::engine_intr(n)), 0, "ENGINE_INTR[{n}]");
        assert!(!matches!(wr(&mut r, &c, pfifo::engine_intr(n), u32::MAX), Write::Denied(_)), "ENGINE_INTR[{n}] acknowledges");
    }
    assert!(matches!(r.read(pfifo::engine_intr(16), &c), Read::Denied(_)), "0x25e8 is not ENGINE_INTR[16]");
    let gpu = gf100_model::Gpu::new(gf100_model::ModelConfig { vram_bytes: 64 << 20, ..Default::default() }).unwrap();
    gpu.bar_write32(gf100_model::Bar::Bar0, u64::from(pmc::ENABLE), pmc::ENABLE_ALL);
    let before = gpu.counters().bar0_unknown;
    for n in 0..pfifo::ENGINE_INTR_COUNT {
        assert_eq!(gpu.bar_read32(gf100_model::Bar::Bar0, u64::from(pfifo::engine_intr(n))), 0);
        gpu.bar_write32(gf100_model::Bar::Bar0, u64::from(pfifo::engine_intr(n)), u32::MAX);
    }
    assert_eq!(gpu.counters().bar0_unknown, before, "the model knows all 16");
}
