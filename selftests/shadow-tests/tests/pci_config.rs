use gpuvm_shadow_tests::gf100::pci;
use gpuvm_shadow_tests::pci_config::*;

const MIB: u64 = 1 << 20;

fn rd32(c: &ConfigSpace, off: u64) -> u32 {
    let mut b = [0u8; 4];
    assert!(c.read(off, &mut b));
    u32::from_le_bytes(b)
}

fn wr32(c: &mut ConfigSpace, off: u64, v: u32) {
    assert!(c.write(off, &v.to_le_bytes()));
}

#[test]
fn identity_reads_like_a_quadro_6000_and_is_read_only() {
    let mut c = ConfigSpace::new(16 * MIB, 8 * MIB);
    assert_eq!(rd32(&c, 0), 0x06d8_10de);
    assert_eq!(rd32(&c, 8), 0x0300_00a3);
    assert_eq!(rd32(&c, 0x2c), 0x076f_10de);
    wr32(&mut c, 0, 0xffff_ffff);
    wr32(&mut c, 8, 0);
    assert_eq!(rd32(&c, 0), 0x06d8_10de);
    assert_eq!(rd32(&c, 8), 0x0300_00a3);
    // Capability list: PM at 0x60 -> MSI at 0x68 -> end.
    assert_eq!(rd32(&c, 4) >> 16 & 0x10, 0x10);
    let mut b = [0u8; 1];
    c.read(0x34, &mut b);
    assert_eq!(b[0] as usize, pci::CAP_PM);
    assert_eq!(rd32(&c, 0x60) & 0xffff, 0x6801);
    assert_eq!(rd32(&c, 0x68) & 0x00ff_ffff, 0x80_0005);
}

#[test]
fn bar_sizing_protocol() {
    let mut c = ConfigSpace::new(16 * MIB, 8 * MIB);
    wr32(&mut c, 0x10, 0xffff_ffff);
    assert_eq!(rd32(&c, 0x10), 0xfe00_0000, "BAR0 32 MiB");
    wr32(&mut c, 0x14, 0xffff_ffff);
    wr32(&mut c, 0x18, 0xffff_ffff);
    assert_eq!(rd32(&c, 0x14), 0xff00_000c, "BAR1 16 MiB, 64-bit prefetchable");
    assert_eq!(rd32(&c, 0x18), 0xffff_ffff);
    wr32(&mut c, 0x1c, 0xffff_ffff);
    assert_eq!(rd32(&c, 0x1c), 0xff80_000c, "BAR3 8 MiB");
    for off in [0x24, 0x30] {
        wr32(&mut c, off, 0xffff_ffff);
        assert_eq!(rd32(&c, off), 0, "unimplemented BAR at {off:#x}");
    }
    // Assigning an address keeps the aligned part and the flag bits.
    wr32(&mut c, 0x14, 0xe123_4567);
    wr32(&mut c, 0x18, 0x1);
    assert_eq!(rd32(&c, 0x14), 0xe100_000c);
    assert_eq!(rd32(&c, 0x18), 0x1);
}

#[test]
fn command_msi_and_bounds() {
    let mut c = ConfigSpace::new(16 * MIB, 8 * MIB);
    assert!(c.write(4, &0xffffu16.to_le_bytes()));
    assert_eq!(c.command(), COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE);
    assert!(c.intx_disabled());
    assert!(!c.msi_enabled());
    assert!(c.write(0x6a, &[0xff]));
    assert!(c.msi_enabled());
    wr32(&mut c, 0x6c, 0xfee0_1003);
    assert_eq!(rd32(&c, 0x6c), 0xfee0_1000, "MSI address is dword aligned");
    let mut b = [0u8; 4];
    assert!(!c.read(254, &mut b), "read past the end");
    assert!(!c.write(256, &[0]));
    assert!(!c.read(u64::MAX, &mut b));
    assert!(c.read(252, &mut b));
}

/// The shared implementation (`uapi/config_space.rs`) in the card's PCIe size, as the model
/// uses it: ranges that run past the end read the bytes inside and zeros, and write nothing.
#[test]
fn shared_space_partial_ranges_and_profiles() {
    use gpuvm_shadow_tests::config_space::{ConfigSpace as Space, Profile};
    let mut card = Space::<{ pci::CFG_SIZE_PCIE }>::power_on(&Profile::CARD);
    let end = pci::CFG_SIZE_PCIE as u64;
    let mut b = [0xaau8; 4];
    assert!(!card.read(end - 2, &mut b));
    assert_eq!(b, [0; 4]);
    assert!(!card.write(end - 2, &[0xff; 4]));
    assert!(!card.read(u64::MAX, &mut b));
    assert!(card.read(pci::CFG_BAR1_LO as u64, &mut b));
    assert_eq!(u32::from_le_bytes(b), BAR_MEM64_PREFETCH);
    // The card takes more COMMAND bits than a vGPU, and keeps D0.
    assert!(card.write(4, &[0xff, 0xff]));
    assert_eq!(card.command(), 0x0547);
    let pmcsr = (pci::CAP_PM + pci::PM_CTRL) as u64;
    assert!(card.write(pmcsr, &[3]));
    assert!(card.read(pmcsr, &mut b[..1]));
    assert_eq!(b[0], 0);
    let mut vgpu = ConfigSpace::new(16 * MIB, 8 * MIB);
    assert!(vgpu.write(pmcsr, &[3]));
    assert!(vgpu.read(pmcsr, &mut b[..1]));
    assert_eq!(b[0], 3);
    // A 64-bit BAR above 4 GiB sizes into its high register.
    let mut big = Space::<{ pci::CFG_SIZE_PCI }>::power_on(&Profile::vgpu(8 << 30, 8 * MIB));
    wr32(&mut big, 0x14, 0xffff_ffff);
    wr32(&mut big, 0x18, 0xffff_ffff);
    assert_eq!((rd32(&big, 0x14), rd32(&big, 0x18)), (0x0000_000c, 0xffff_fffe));
    set_interrupt_status_roundtrip(&mut vgpu);
}

fn set_interrupt_status_roundtrip(c: &mut ConfigSpace) {
    c.set_interrupt_status(true);
    assert_eq!(rd32(c, 4) >> 16 & u32::from(pci::STATUS_INTERRUPT), u32::from(pci::STATUS_INTERRUPT));
    c.set_interrupt_status(false);
    assert_eq!(rd32(c, 4) >> 16 & u32::from(pci::STATUS_INTERRUPT), 0);
}
