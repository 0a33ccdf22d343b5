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
