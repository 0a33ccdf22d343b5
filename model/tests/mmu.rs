//! Page walks through the BAR1 window: 4 KiB and big pages, VRAM and system memory targets,
//! limits, read-only pages, and TLB staleness until the flush protocol runs.

mod common;

use common::*;
use gf100_model::gpuvm_uapi::gf100::*;
use gf100_model::Bar;

fn bar1_rig(limit: u64) -> (Rig, Vm) {
    let rig = Rig::new();
    let vm = Vm::new(&rig, limit);
    rig.set(pbus::BAR1_INST, pbus::BarInst::vm(vm.inst).raw());
    rig.flush(vm.pd, true);
    (rig, vm)
}

fn fault_reason(rig: &Rig, unit: u32) -> (u32, u64, bool) {
    assert_ne!(
        rig.reg(pfifo::VM_FAULT_UNITS) & (1 << unit),
        0,
        "no fault recorded for unit {unit}"
    );
    let info = pfifo::VmFaultInfo::from_raw(rig.reg(pfifo::VmFaultInfo::offset(unit)));
    let lo = pfifo::VmFaultAddrLo::from_raw(rig.reg(pfifo::VmFaultAddrLo::offset(unit)));
    let hi = pfifo::VmFaultAddrHi::from_raw(rig.reg(pfifo::VmFaultAddrHi::offset(unit)));
    (info.reason(), hi.va() | lo.va(), info.write())
}

fn ack_faults(rig: &Rig) {
    rig.set(pfifo::VM_FAULT_UNITS, 0xffff_ffff);
}

#[test]
fn small_pages_vram_and_sysmem() {
    let (rig, mut vm) = bar1_rig(pci::BAR1_SIZE - 1);
    let pa = rig.alloc(0x2000, 0x1000);
    vm.map(&rig, 0x5000, pa + 0x1000, vm::PTE_APER_VRAM, false);
    vm.map(
        &rig,
        0x6000,
        SYS_IOVA + 0x3000,
        vm::PTE_APER_SYS_COHERENT,
        false,
    );
    vm.map(
        &rig,
        0x7000,
        SYS_IOVA + 0x4000,
        vm::PTE_APER_SYS_NONCOHERENT,
        false,
    );
    rig.flush(vm.pd, true);

    rig.w32(pa + 0x1000 + 0x44, 0xdead_beef);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x5044), 0xdead_beef);
    rig.gpu.bar_write32(Bar::Bar1, 0x5ffc, 0x1122_3344);
    assert_eq!(rig.r32(pa + 0x1ffc), 0x1122_3344);

    rig.sys.write32(0x3010, 0x5a5a_0001);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x6010), 0x5a5a_0001);
    rig.gpu.bar_write32(Bar::Bar1, 0x7020, 77);
    assert_eq!(rig.sys.read32(0x4020), Some(77));

    // A bulk access crossing from a VRAM page into a sysmem page is split correctly.
    let data: Vec<u8> = (0..64u8).collect();
    rig.gpu.bar_write(Bar::Bar1, 0x6000 - 32, &data);
    let mut back = vec![0u8; 64];
    rig.gpu.bar_read(Bar::Bar1, 0x6000 - 32, &mut back);
    assert_eq!(back, data);
    assert_eq!(
        rig.sys.read32(0x3000),
        Some(u32::from_le_bytes([32, 33, 34, 35]))
    );
    assert_eq!(rig.reg(pfifo::VM_FAULT_UNITS), 0);
}

#[test]
fn big_pages_128k_and_64k() {
    let (rig, mut vm) = bar1_rig(pci::BAR1_SIZE - 1);
    let big = rig.alloc(0x40000, 0x20000);
    vm.map_big(&rig, 0x0400_0000, big, vm::PTE_APER_VRAM, false);
    vm.map_big(
        &rig,
        0x0402_0000,
        SYS_IOVA + 0x20000,
        vm::PTE_APER_SYS_COHERENT,
        false,
    );
    rig.flush(vm.pd, true);
    rig.w32(big + 0x1_2344, 0xabcd_0123);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0401_2344), 0xabcd_0123);
    rig.gpu.bar_write32(Bar::Bar1, 0x0403_fff0, 9);
    assert_eq!(rig.sys.read32(0x3_fff0), Some(9));
    // Beyond the two big pages: not present.
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0404_0000), bad::VM_FAULT);
    assert_eq!(
        fault_reason(&rig, pfifo::FAULT_UNIT_BAR1),
        (mmu::FAULT_PAGE_NOT_PRESENT, 0x0404_0000, false)
    );
    ack_faults(&rig);

    // A small PTE overrides the big page for its 4 KiB (dual PDE).
    let small = rig.alloc(0x1000, 0x1000);
    rig.w32(small + 4, 0x600d);
    vm.map(&rig, 0x0400_1000, small, vm::PTE_APER_VRAM, false);
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0400_1004), 0x600d);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0401_2344), 0xabcd_0123);

    // 64 KiB big pages: PDEs cover 64 MiB, LPT index = VA[25:16].
    rig.set(mmu::CTRL, mmu::CTRL_BIG_PAGE_64K);
    let mut vm64 = Vm::new(&rig, pci::BAR1_SIZE - 1);
    vm64.big_shift = vm::BIG_PAGE_SHIFT_64K;
    let b64 = rig.alloc(0x20000, 0x10000);
    vm64.map_big(&rig, 0x0401_0000, b64 + 0x10000, vm::PTE_APER_VRAM, false);
    rig.set(pbus::BAR1_INST, pbus::BarInst::vm(vm64.inst).raw());
    rig.flush(vm64.pd, true);
    rig.w32(b64 + 0x1_fffc, 64);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0401_fffc), 64);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0400_fffc), bad::VM_FAULT);
}

#[test]
fn limits_read_only_and_missing_tables() {
    let (rig, mut vm) = bar1_rig(0x0fff_ffff >> 4); // limit 0x00ff_ffff
    let pa = rig.alloc(0x2000, 0x1000);
    vm.map(&rig, 0x1000, pa, vm::PTE_APER_VRAM, true);
    vm.map(&rig, 0x00ff_f000, pa + 0x1000, vm::PTE_APER_VRAM, false);
    // A PTE beyond the limit: mapped, but the limit wins.
    vm.map(&rig, 0x0100_0000, pa + 0x1000, vm::PTE_APER_VRAM, false);
    rig.flush(vm.pd, true);
    assert!(!rig.gpu.irq_line());

    rig.w32(pa + 8, 0x1234);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x1008), 0x1234);
    rig.gpu.bar_write32(Bar::Bar1, 0x1008, 0x9999);
    assert_eq!(
        rig.r32(pa + 8),
        0x1234,
        "a read-only page must not be written"
    );
    assert_eq!(
        fault_reason(&rig, pfifo::FAULT_UNIT_BAR1),
        (mmu::FAULT_PAGE_READ_ONLY, 0x1008, true)
    );
    // The fault raised PFIFO's VM_FAULT interrupt up to the PMC line.
    assert_ne!(rig.wait_intr() & pmc::INTR_PFIFO, 0);
    assert_ne!(rig.reg(pfifo::INTR) & pfifo::INTR_VM_FAULT, 0);
    ack_faults(&rig);
    assert_eq!(rig.reg(pfifo::INTR) & pfifo::INTR_VM_FAULT, 0);
    assert!(!rig.gpu.irq_line());

    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x00ff_fffc), 0);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0100_0000), bad::VM_FAULT);
    assert_eq!(
        fault_reason(&rig, pfifo::FAULT_UNIT_BAR1).0,
        mmu::FAULT_VM_LIMIT_EXCEEDED
    );
    ack_faults(&rig);
    // An address with no PTE, then with no PDE at all.
    rig.w32(vm.inst + inst::LIMIT_LO as u64, (pci::BAR1_SIZE - 1) as u32);
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x0400_0000), bad::VM_FAULT);
    assert_eq!(
        fault_reason(&rig, pfifo::FAULT_UNIT_BAR1).0,
        mmu::FAULT_PAGE_NOT_PRESENT
    );
    ack_faults(&rig);
    let pde0 = rig.gpu.vram().read64(vm.pd).unwrap();
    rig.w64(vm.pd, 0);
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x1000), bad::VM_FAULT);
    assert_eq!(
        fault_reason(&rig, pfifo::FAULT_UNIT_BAR1).0,
        mmu::FAULT_PT_NOT_PRESENT
    );
    rig.w64(vm.pd, pde0);
    rig.flush(vm.pd, true);
    ack_faults(&rig);
    // PTE pointing beyond VRAM, and at an unmapped bus address.
    vm.map(&rig, 0x3000, rig.gpu.vram().len(), vm::PTE_APER_VRAM, false);
    vm.map(
        &rig,
        0x4000,
        SYS_IOVA + SYS_SIZE,
        vm::PTE_APER_SYS_COHERENT,
        false,
    );
    rig.flush(vm.pd, true);
    for va in [0x3000, 0x4000] {
        assert_eq!(rig.gpu.bar_read32(Bar::Bar1, va), bad::VM_FAULT);
        assert_eq!(
            fault_reason(&rig, pfifo::FAULT_UNIT_BAR1).0,
            mmu::FAULT_BAD_PHYSICAL
        );
        ack_faults(&rig);
    }
}

#[test]
fn pde_size_field_shrinks_the_small_table() {
    let (rig, mut vm) = bar1_rig(pci::BAR1_SIZE - 1);
    let pa = rig.alloc(0x1000, 0x1000);
    vm.map(&rig, 0x10_0000, pa, vm::PTE_APER_VRAM, false); // index 0x100 of the SPT
    vm.map(&rig, 0x7f0_0000, pa, vm::PTE_APER_VRAM, false); // index 0x7f00
    rig.w32(pa, 5);
    let pde = rig.gpu.vram().read64(vm.pd).unwrap();
    rig.w64(vm.pd, pde | 3 << vm::PDE_SIZE_SHIFT); // EIGHTH: 4096 small entries
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x10_0000), 5);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x7f0_0000), bad::VM_FAULT);
    assert_eq!(
        fault_reason(&rig, pfifo::FAULT_UNIT_BAR1).0,
        mmu::FAULT_PT_TOO_SHORT
    );
}

#[test]
fn tlb_keeps_stale_translations_until_flushed() {
    let (rig, mut vm) = bar1_rig(pci::BAR1_SIZE - 1);
    let old = rig.alloc(0x1000, 0x1000);
    let new = rig.alloc(0x1000, 0x1000);
    rig.w32(old, 0x01d);
    rig.w32(new, 0x2e3);
    vm.map(&rig, 0x8000, old, vm::PTE_APER_VRAM, false);
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x01d);

    // Remap without a flush: the TLB still has the old page.
    vm.map(&rig, 0x8000, new, vm::PTE_APER_VRAM, false);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x01d);
    // A flush of another PD does not help.
    let other = Vm::new(&rig, 0xffff);
    rig.flush(other.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x01d);
    // Flushing this PD does.
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x2e3);

    // Unmapping without a flush keeps the page reachable; ALL_PDB flush removes it.
    vm.unmap(&rig, 0x8000);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x2e3);
    rig.set(
        mmu::Invalidate::OFFSET,
        mmu::Invalidate::default().with_all_pdb(true).with_trigger(true).raw(),
    );
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), bad::VM_FAULT);

    // Making a page read-only takes effect only after the flush.
    vm.map(&rig, 0x9000, old, vm::PTE_APER_VRAM, false);
    rig.flush(vm.pd, true);
    rig.gpu.bar_write32(Bar::Bar1, 0x9000, 1);
    vm.map(&rig, 0x9000, old, vm::PTE_APER_VRAM, true);
    rig.gpu.bar_write32(Bar::Bar1, 0x9000, 2);
    assert_eq!(rig.r32(old), 2);
    rig.flush(vm.pd, true);
    rig.gpu.bar_write32(Bar::Bar1, 0x9000, 3);
    assert_eq!(rig.r32(old), 2);

    // The instance block (PDB/limit) is also cached until a flush.
    rig.w32(vm.inst + inst::LIMIT_LO as u64, 0xfff);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x9000), 2);
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x9000), bad::VM_FAULT);
    assert_eq!(
        fault_reason(&rig, pfifo::FAULT_UNIT_BAR1).0,
        mmu::FAULT_VM_LIMIT_EXCEEDED
    );
    assert!(rig.gpu.counters().tlb_flushes >= 6);
}

/// INVALIDATE_PDB names a VRAM page directory unless bit 1 is set (envytools rnndb
/// `memory/gf100_pffb.xml` TLB_FLUSH_VSPACE.TARGET: 0 VRAM, 1 SYSRAM); bit 0 is not part of
/// the target (the model used to decode bits 1:0 and took 1 as "no PDB": flush everything).
#[test]
fn tlb_flush_pdb_target_is_bit_1() {
    let (rig, mut vm) = bar1_rig(pci::BAR1_SIZE - 1);
    let old = rig.alloc(0x1000, 0x1000);
    let new = rig.alloc(0x1000, 0x1000);
    rig.w32(old, 0x01d);
    rig.w32(new, 0x2e3);
    vm.map(&rig, 0x8000, old, vm::PTE_APER_VRAM, false);
    rig.flush(vm.pd, true);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x01d);
    // Remapped without a flush: the TLB keeps the old page until this PD is flushed.
    vm.map(&rig, 0x8000, new, vm::PTE_APER_VRAM, false);
    let flush_pdb = |pdb: u32| {
        rig.set(mmu::InvalidatePdb::OFFSET, pdb);
        let flush = mmu::Invalidate::default()
            .with_page_all(true)
            .with_hub_only(true)
            .with_trigger(true);
        rig.set(mmu::Invalidate::OFFSET, flush.raw());
    };
    // nouveau's encoding, `pd >> 8 | target`, with bit 0 set: still one VRAM PD.
    let other = Vm::new(&rig, 0xffff);
    flush_pdb((other.pd >> 8) as u32 | 1);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x01d);
    // The same address in system memory is another PD.
    flush_pdb((vm.pd >> 8) as u32 | target::SYS_COHERENT);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x01d);
    flush_pdb((vm.pd >> 8) as u32 | 1);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar1, 0x8000), 0x2e3);
}

#[test]
fn bar3_direct_mode_and_pramin() {
    let rig = Rig::new();
    // Reset: BAR VMs off, BAR offset = VRAM address.
    rig.w32(0x12_3450, 0x77);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar3, 0x12_3450), 0x77);
    // PRAMIN window at 0x1700 << 16.
    rig.set(
        pbus::PraminBase::OFFSET,
        pbus::PraminBase::default().with_addr(0x20_0000).raw(),
    );
    rig.set(pbus::PRAMIN_WINDOW + 0x100, 0x4242);
    assert_eq!(rig.r32(0x20_0100), 0x4242);
    assert_eq!(rig.reg(pbus::PRAMIN_WINDOW + 0x100), 0x4242);
    // BAR3 through a VM.
    let mut vm = Vm::new(&rig, pci::BAR3_SIZE - 1);
    let pa = rig.alloc(0x1000, 0x1000);
    vm.map(&rig, 0x2000, pa, vm::PTE_APER_VRAM, false);
    rig.set(
        pbus::BAR3_INST,
        pbus::BarInst::vm(vm.inst).with_unk30(true).raw(),
    );
    rig.flush(vm.pd, true);
    rig.gpu.bar_write32(Bar::Bar3, 0x2010, 0x3333);
    assert_eq!(rig.r32(pa + 0x10), 0x3333);
    assert_eq!(rig.gpu.bar_read32(Bar::Bar3, 0x3000), bad::VM_FAULT);
    assert_ne!(
        rig.reg(pfifo::VM_FAULT_UNITS) & (1 << pfifo::FAULT_UNIT_BAR3),
        0
    );
}
