//! Channel errors: each raises its documented interrupt and stops only its own channel.

mod common;

use common::*;
use gf100_model::gpuvm_uapi::gf100::*;

const SEM_VA: u64 = 0x2000_0000;

fn two_channels() -> (Rig, Chan, Chan, u64) {
    let mut rig = Rig::new();
    let mut bad = rig.channel(4);
    let mut good = rig.channel(9);
    let sem = rig.alloc(0x1000, 0x1000);
    bad.vm.map(&rig, SEM_VA, sem, vm::PTE_APER_VRAM, false);
    good.vm.map(&rig, SEM_VA, sem, vm::PTE_APER_VRAM, false);
    rig.flush(bad.vm.pd, false);
    rig.flush(good.vm.pd, false);
    (rig, bad, good, sem)
}

/// After an error on `bad`: `good` still runs, `bad` ignores new doorbells.
fn only_bad_is_stopped(rig: &Rig, bad: &mut Chan, good: &mut Chan, sem: u64) {
    let bad_get = bad.gp_get(rig);
    good.push(rig, &sem_release(SEM_VA, 0x600d, true));
    good.wait(rig);
    assert_eq!(rig.r32(sem), 0x600d);
    bad.push(rig, &sem_release(SEM_VA + 8, 0xbad, true));
    settle();
    assert_eq!(bad.gp_get(rig), bad_get);
    assert_eq!(rig.r32(sem + 8), 0);
}

#[test]
fn mmu_fault_stops_only_its_channel() {
    let (rig, mut bad, mut good, sem) = two_channels();
    bad.push(&rig, &sem_release(0x7700_0000, 1, true));
    let intr = rig.wait_intr();
    assert_ne!(intr & pmc::INTR_PFIFO, 0);
    assert_ne!(rig.reg(pfifo::INTR) & pfifo::INTR_VM_FAULT, 0);
    let unit = pfifo::FAULT_UNIT_PFIFO;
    assert_eq!(rig.reg(pfifo::VM_FAULT_UNITS), 1 << unit);
    assert_eq!(
        pfifo::VmFaultInst::from_raw(rig.reg(pfifo::VmFaultInst::offset(unit))).addr(),
        bad.vm.inst
    );
    assert_eq!(rig.reg(pfifo::VmFaultAddrLo::offset(unit)), 0x7700_0000);
    let info = pfifo::VmFaultInfo::from_raw(rig.reg(pfifo::VmFaultInfo::offset(unit)));
    assert_eq!(info.reason(), mmu::FAULT_PT_NOT_PRESENT);
    assert!(info.write());
    rig.set(pfifo::VM_FAULT_UNITS, 1 << unit);
    assert!(!rig.gpu.irq_line());
    only_bad_is_stopped(&rig, &mut bad, &mut good, sem);
    assert_eq!(rig.gpu.counters().mmu_faults, 1);

    // Recovery: rebinding the channel (new CHAN word) reloads it from RAMFC.
    let mut rig = rig;
    let mut again = rig.channel(4);
    let pa = again.vm.buffer(&rig, SEM_VA, 0x1000);
    rig.flush(again.vm.pd, false);
    again.push(&rig, &sem_release(SEM_VA, 5, true));
    again.wait(&rig);
    assert_eq!(rig.r32(pa), 5);
}

#[test]
fn illegal_method_class_subchannel_and_command() {
    let check_pbdma = |words: Vec<u32>, bit: u32, method: u32, subch: u32, data: u32| {
        let (rig, mut bad, mut good, sem) = two_channels();
        bad.push(&rig, &words);
        let intr = rig.wait_intr();
        assert_ne!(intr & pmc::INTR_PFIFO, 0);
        assert_eq!(rig.reg(pfifo::PBDMA_INTR_UNITS), 1);
        let base = pfifo::pbdma_base(0);
        assert_eq!(rig.reg(base + pfifo::PBDMA_INTR), bit);
        assert_eq!(
            rig.reg(base + pfifo::PBDMA_METHOD),
            method | subch << pfifo::PBDMA_METHOD_SUBCH_SHIFT
        );
        assert_eq!(rig.reg(base + pfifo::PBDMA_DATA), data);
        assert_eq!(rig.reg(base + pfifo::PBDMA_CHID), bad.chid);
        rig.set(base + pfifo::PBDMA_INTR, bit);
        assert!(!rig.gpu.irq_line());
        only_bad_is_stopped(&rig, &mut bad, &mut good, sem);
    };
    // Unknown host method.
    check_pbdma(
        incr(0, 0x0c4, &[7]),
        pfifo::PBDMA_INTR_ILLEGAL_MTHD,
        0x0c4,
        0,
        7,
    );
    // Method the class does not define (M2MF has nothing at 0x1000).
    let mut pb = incr(2, 0, &[class::M2MF]);
    pb.extend(incr(2, 0x1000, &[3]));
    check_pbdma(pb, pfifo::PBDMA_INTR_ILLEGAL_MTHD, 0x1000, 2, 3);
    // A method on a subchannel with no object.
    check_pbdma(
        incr(5, m2mf::LAUNCH_DMA, &[1]),
        pfifo::PBDMA_INTR_EMPTY_SUBC,
        m2mf::LAUNCH_DMA,
        5,
        1,
    );
    // Reserved header opcode.
    check_pbdma(vec![6 << 29], pfifo::PBDMA_INTR_ILLEGAL_CMD, 0, 0, 6 << 29);
    // Misaligned semaphore address.
    check_pbdma(
        incr(0, host::SEMAPHORE_A, &[0, 0x2000_0002, 1, 2]),
        pfifo::PBDMA_INTR_ILLEGAL_SEM,
        host::SEMAPHORE_D,
        0,
        2,
    );

    // Unknown class: PGRAPH ILLEGAL_CLASS with the trapped method/data and channel instance.
    let (rig, mut bad, mut good, sem) = two_channels();
    bad.push(&rig, &incr(1, 0, &[0x9097]));
    assert_ne!(rig.wait_intr() & pmc::INTR_PGRAPH, 0);
    assert_eq!(rig.reg(pgraph::INTR), pgraph::INTR_ILLEGAL_CLASS);
    assert_eq!(rig.reg(pgraph::TRAPPED_ADDR), 1 << 16);
    assert_eq!(rig.reg(pgraph::TRAPPED_DATA), 0x9097);
    assert_eq!(
        rig.reg(pgraph::INTR_CHANNEL_INST),
        (bad.vm.inst >> 12) as u32
    );
    rig.set(pgraph::INTR, pgraph::INTR_ILLEGAL_CLASS);
    assert!(!rig.gpu.irq_line());
    only_bad_is_stopped(&rig, &mut bad, &mut good, sem);
    // A copy class on the wrong engine is unknown too.
    let (rig, mut bad, mut good, sem) = two_channels();
    bad.push(&rig, &incr(3, 0, &[class::COPY0]));
    assert_ne!(rig.wait_intr() & pmc::INTR_PGRAPH, 0);
    only_bad_is_stopped(&rig, &mut bad, &mut good, sem);
}

#[test]
fn bad_ramfc_signature_and_channel_table_errors() {
    let mut rig = Rig::new();
    let mut ch = rig.channel(7);
    rig.w32(ch.vm.inst + ramfc::SIGNATURE as u64, 0xdead);
    // Rebind so PFIFO reloads RAMFC.
    rig.set(pfifo::ChanInst::offset(7), pfifo::ChanInst::bound(ch.vm.inst).raw());
    ch.push(&rig, &sem_release(SEM_VA, 1, true));
    rig.wait_intr();
    assert_eq!(
        rig.reg(pfifo::pbdma_base(0) + pfifo::PBDMA_INTR),
        pfifo::PBDMA_INTR_SIG_MISMATCH
    );

    // POLL_ENABLE without a poll area: CHAN_TABLE_ERROR NO_POLL.
    let rig = Rig::new();
    rig.set(pfifo::ChanInst::offset(1), pfifo::ChanInst::bound(0x10_0000).raw());
    assert_ne!(rig.reg(pfifo::INTR) & pfifo::INTR_CHAN_TABLE_ERROR, 0);
    assert_eq!(
        rig.reg(pfifo::CHAN_TABLE_ERROR),
        pfifo::CHAN_TABLE_ERROR_NO_POLL
    );
    // A malformed runlist entry: SCHED_ERROR, the entry is skipped.
    rig.w32(0x20_0000, 200);
    rig.w32(0x20_0004, pfifo::RUNLIST_ENTRY_WORD1);
    rig.set(pfifo::RunlistBase::OFFSET, 0x200);
    rig.set(pfifo::RunlistSubmit::OFFSET, 1);
    assert_ne!(rig.reg(pfifo::INTR) & pfifo::INTR_SCHED_ERROR, 0);
    assert_eq!(rig.reg(pfifo::SCHED_ERROR), pfifo::SCHED_ERROR_BAD_RUNLIST);
    // Unknown registers read 0xbad001xx and are counted.
    assert_eq!(rig.reg(0x00_2ffc), bad::NO_REGISTER);
    assert_eq!(rig.reg(0x123), bad::NO_REGISTER);
    assert!(rig.gpu.counters().bar0_unknown >= 2);
}
