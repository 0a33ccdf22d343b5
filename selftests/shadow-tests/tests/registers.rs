//! The registers declared with `register!` in `uapi/gf100.rs`: their offsets and field
//! layouts are the ones envytools' rnndb gives, and the values the mediator and the drivers
//! build are bit for bit the ones the `*_MASK`/`*_SHIFT` constants they replace built.

use gpuvm_shadow_tests::gf100::{pci, pmc};

#[test]
fn boot0_of_the_quadro_6000() {
    assert_eq!(pmc::Boot0::OFFSET, 0x000000);
    assert_eq!(pmc::BOOT_0_QUADRO_6000, 0x0c0c_00a3);
    let b = pmc::Boot0::from_raw(pmc::BOOT_0_QUADRO_6000);
    assert_eq!((b.chipset(), b.device_id(), b.stepping(), b.foundry()), (pmc::CHIPSET_GF100, 0x18, 0xa3, 0));
    assert_eq!(b.stepping(), u32::from(pci::REVISION));
    assert_eq!(b.device_id(), u32::from(pci::DEVICE_QUADRO_6000) & 0x1f);
}
