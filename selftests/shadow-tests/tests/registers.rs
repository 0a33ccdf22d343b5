//! The registers declared with `register!` in `uapi/gf100.rs`: their offsets and field
//! layouts are the ones envytools' rnndb gives, and the values the mediator and the drivers
//! build are bit for bit the ones the `*_MASK`/`*_SHIFT` constants they replace built.

use gpuvm_shadow_tests::gf100::{mmu, pbus, pci, pfifo, pmc, target};
use proptest::prelude::*;

#[test]
fn boot0_of_the_quadro_6000() {
    assert_eq!(pmc::Boot0::OFFSET, 0x000000);
    assert_eq!(pmc::BOOT_0_QUADRO_6000, 0x0c0c_00a3);
    let b = pmc::Boot0::from_raw(pmc::BOOT_0_QUADRO_6000);
    assert_eq!((b.chipset(), b.device_id(), b.stepping(), b.foundry()), (pmc::CHIPSET_GF100, 0x18, 0xa3, 0));
    assert_eq!(b.stepping(), u32::from(pci::REVISION));
    assert_eq!(b.device_id(), u32::from(pci::DEVICE_QUADRO_6000) & 0x1f);
}

#[test]
fn offsets_match_rnndb() {
    assert_eq!(pbus::PraminBase::OFFSET, 0x001700);
    assert_eq!((pbus::BAR1_INST, pbus::BAR3_INST, pbus::PEEPHOLE_INST), (0x001704, 0x001714, 0x001718));
    assert_eq!((mmu::InvalidatePdb::OFFSET, mmu::Invalidate::OFFSET), (0x100cb8, 0x100cbc));
    assert_eq!(
        (pfifo::RunlistBase::OFFSET, pfifo::RunlistSubmit::OFFSET, pfifo::RunlistStatus::OFFSET),
        (0x002270, 0x002274, 0x00227c)
    );
    for chid in 0..pfifo::CHANNELS {
        assert_eq!(pfifo::ChanInst::offset(chid), 0x003000 + 8 * chid);
        assert_eq!(pfifo::ChanState::offset(chid), 0x003004 + 8 * chid);
    }
    assert_eq!(pfifo::ChanInst::offset(pfifo::ChanInst::COUNT), 0x003400);
    assert_eq!(pfifo::UserdPollBase::OFFSET, 0x002254);
    for unit in 0..pfifo::VM_FAULT_UNITS_MAX {
        let base = 0x002800 + 0x10 * unit;
        assert_eq!(pfifo::VmFaultInst::offset(unit), base);
        assert_eq!(pfifo::VmFaultAddrLo::offset(unit), base + 4);
        assert_eq!(pfifo::VmFaultAddrHi::offset(unit), base + 8);
        assert_eq!(pfifo::VmFaultInfo::offset(unit), base + 0xc);
    }
    assert_eq!(pfifo::VmFaultInst::COUNT, 32);
}

#[test]
fn values_the_drivers_write_are_unchanged() {
    // What `chan_inst_value`, `CHAN_STATE_INITIAL`, `RUNLIST_COMMIT_UNK | n` and nouveau's
    // flush trigger were.
    assert_eq!(pfifo::ChanInst::bound(0x5_0000).raw(), 0xc000_0050);
    assert_eq!(pfifo::ChanState::INITIAL.raw(), 0x001f_0001);
    assert_eq!(pfifo::RunlistSubmit::commit(3).raw(), 0x01f0_0003);
    assert_eq!(pfifo::RunlistSubmit::COUNT_MAX, 0xfff);
    let flush = mmu::Invalidate::default().with_page_all(true).with_trigger(true);
    assert_eq!(flush.raw(), 0x8000_0001);
    assert_eq!(flush.with_all_pdb(true).with_hub_only(true).raw(), 0x8000_0007);
    // The STATE bits a driver writes.
    assert_eq!(pfifo::ChanState::from_raw(u32::MAX).writable().raw(), 0x001f_0001);
    // `USERD_POLL_ENABLE | va >> 12`.
    assert_eq!(pfifo::UserdPollBase::default().with_bar1_va(0x2_0000).with_enable(true).raw(), 0x1000_0020);
}

#[test]
fn vm_fault_records_split_and_join_the_address() {
    let va = 0x12_3456_7000u64;
    let lo = pfifo::VmFaultAddrLo::default().with_va(va);
    let hi = pfifo::VmFaultAddrHi::default().with_va(va);
    assert_eq!((lo.raw(), hi.raw()), (0x3456_7000, 0x12));
    assert_eq!(hi.va() | lo.va(), va);
    let info = pfifo::VmFaultInfo::default().with_reason(mmu::FAULT_PAGE_READ_ONLY).with_hub(true).with_write(true);
    assert_eq!(info.raw(), 0xc6);
    let inst = pfifo::VmFaultInst::default().with_addr(0x5000);
    assert_eq!((inst.raw(), inst.addr(), inst.target()), (5, 0x5000, target::VRAM));
}

proptest! {
    /// `BarInst::vm` is the old `bar_inst_value`, and decodes back.
    #[test]
    fn bar_inst_vm_is_mode_vm_and_the_address(page in 0u64..1 << 28) {
        let inst = page << 12;
        let v = pbus::BarInst::vm(inst);
        prop_assert_eq!(v.raw(), 0x8000_0000 | page as u32);
        prop_assert_eq!((v.addr(), v.target(), v.mode_vm(), v.unk30()), (inst, target::VRAM, true, false));
    }

    /// The INVALIDATE_PDB value is nouveau's `pd >> 8 | target` for a VRAM PD.
    #[test]
    fn invalidate_pdb_is_the_pd_shifted(page in 0u64..1 << 28) {
        let pd = page << 12;
        let v = mmu::InvalidatePdb::default().with_addr(pd).with_sysram(false);
        prop_assert_eq!(v.raw(), (pd >> 8) as u32);
        prop_assert_eq!(mmu::InvalidatePdb::from_raw((pd >> 8) as u32 | target::SYS_NONCOHERENT).sysram(), true);
    }

    /// The PRAMIN window for `addr` is the old `addr >> 16` base and `addr & 0xffff` offset.
    #[test]
    fn pramin_window_base_and_offset(addr in any::<u64>()) {
        let (base, off) = pbus::PraminBase::window(addr);
        prop_assert_eq!(base.raw(), (addr >> 16) as u32 & 0x00ff_ffff);
        prop_assert_eq!(off, pbus::PRAMIN_WINDOW + (addr & 0xffff) as u32);
    }

    /// Runlist base and the channel word take the address and target the hardware reads.
    #[test]
    fn runlist_base_and_chan_inst_fields(raw in any::<u32>()) {
        let r = pfifo::RunlistBase::from_raw(raw);
        prop_assert_eq!(r.addr(), u64::from(raw & 0x0fff_ffff) << 12);
        prop_assert_eq!(r.target(), (raw >> 28) & 3);
        let c = pfifo::ChanInst::from_raw(raw);
        prop_assert_eq!((c.addr(), c.target()), (r.addr(), r.target()));
        prop_assert_eq!((c.poll_enable(), c.valid()), (raw & 1 << 30 != 0, raw & 1 << 31 != 0));
        let p = pbus::PraminBase::from_raw(raw);
        prop_assert_eq!((p.addr(), p.target()), (u64::from(raw & 0x00ff_ffff) << 16, (raw >> 24) & 3));
    }
}
