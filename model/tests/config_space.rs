//! The card's PCI configuration space as the model presents it (`uapi/config_space.rs` with
//! `Profile::CARD`): identity, BAR sizing, capabilities, and what the card profile lets
//! software change.

use gf100_model::gpuvm_uapi::gf100::pci;
use gf100_model::{Bar, Gpu, ModelConfig};

fn gpu() -> std::sync::Arc<Gpu> {
    Gpu::new(ModelConfig {
        vram_bytes: 64 << 20,
        ..ModelConfig::default()
    })
    .unwrap()
}

fn rd32(g: &Gpu, off: u64) -> u32 {
    let mut b = [0; 4];
    g.config_read(off, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn identity_and_bar_sizing() {
    let g = gpu();
    assert_eq!(rd32(&g, 0), 0x06d8_10de);
    assert_eq!(rd32(&g, 8), 0x0300_00a3);
    for (off, size, flags) in [
        (pci::CFG_BAR0, pci::BAR0_SIZE, 0u32),
        (pci::CFG_BAR1_LO, pci::BAR1_SIZE, 0xc),
        (pci::CFG_BAR3_LO, pci::BAR3_SIZE, 0xc),
    ] {
        g.config_write(off as u64, &[0xff; 4]);
        let v = rd32(&g, off as u64);
        assert_eq!(v & 0xf, flags);
        assert_eq!(
            (!(v & !0xf)).wrapping_add(1) as u64,
            size,
            "BAR at {off:#x}"
        );
    }
    g.config_write(pci::CFG_BAR1_HI as u64, &[0xff; 4]);
    assert_eq!(rd32(&g, pci::CFG_BAR1_HI as u64), 0xffff_ffff);
    g.config_write(pci::CFG_BAR1_LO as u64, &0xe000_0000u32.to_le_bytes());
    assert_eq!(rd32(&g, pci::CFG_BAR1_LO as u64), 0xe000_000c);
    // Identity is read-only.
    g.config_write(0, &[0; 4]);
    assert_eq!(rd32(&g, 0), 0x06d8_10de);
    // Capability chain: PM -> MSI -> end.
    assert_eq!(rd32(&g, 0x34) & 0xff, 0x60);
    assert_eq!(rd32(&g, 0x60) & 0xffff, 0x6801);
    assert_eq!(rd32(&g, 0x68) & 0xffff, 0x0005);
    assert!(!g.msi_enabled());
    g.config_write(0x6a, &[1, 0]);
    assert!(g.msi_enabled());
}

#[test]
fn card_profile_command_power_state_and_extended_space() {
    let g = gpu();
    // COMMAND takes I/O, memory, bus master, parity, SERR# and INTx disable; nothing else.
    g.config_write(pci::CFG_COMMAND as u64, &[0xff, 0xff]);
    let mut cmd = [0; 2];
    g.config_read(pci::CFG_COMMAND as u64, &mut cmd);
    assert_eq!(u16::from_le_bytes(cmd), 0x0547);
    assert!(g.intx_disabled());
    // The card stays in D0.
    let pmcsr = (pci::CAP_PM + pci::PM_CTRL) as u64;
    g.config_write(pmcsr, &[3]);
    assert_eq!(rd32(&g, pmcsr) & 3, 0);
    // 4 KiB of PCIe space, the same bytes through the BAR0 mirror; beyond reads 0.
    assert_eq!(rd32(&g, pci::CFG_SIZE_PCIE as u64 - 4), 0);
    let mirror = pci::BAR0_CONFIG_MIRROR as u64;
    assert_eq!(g.bar_read32(Bar::Bar0, mirror), 0x06d8_10de);
    let mut b = [0xaa; 4];
    g.config_read(pci::CFG_SIZE_PCIE as u64 - 2, &mut b);
    assert_eq!(b, [0; 4]);
}
