//! What a gpuvm vGPU must look like (the issue-6 kernel contract), in one place. Values that
//! are GF100 identity come from gpuvm-uapi; the rest are the contract's own numbers.

use crate::sys::*;
use gpuvm_uapi::gf100::pci;

/// The mdev types, by share divisor N (type `gpuvm-N` gets 1/N of the GPU).
pub const SHARES: [u32; 4] = [1, 2, 4, 8];
/// The guest pool is this many equal units; gpuvm-N takes POOL_UNITS / N aligned units.
pub const POOL_UNITS: u32 = 8;

pub const NUM_REGIONS: u32 = VFIO_PCI_NUM_REGIONS;
pub const NUM_IRQS: u32 = VFIO_PCI_NUM_IRQS;
pub const DEVICE_FLAGS: u32 = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
pub const CONFIG_SIZE: u64 = 256;
pub const RW: u32 = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

/// (count, flags) of each IRQ index: INTx, MSI, MSI-X, ERR, REQ.
pub const IRQS: [(u32, u32); 5] = [
    (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED),
    (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE),
    (0, 0),
    (0, 0),
    (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE),
];
pub const IRQ_NAMES: [&str; 5] = ["INTx", "MSI", "MSI-X", "ERR", "REQ"];
pub const REGION_NAMES: [&str; 9] = ["BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config", "VGA"];

// Config space layout.
pub const CFG_VENDOR: u64 = 0x00;
pub const CFG_COMMAND: u64 = 0x04;
pub const CFG_STATUS: u64 = 0x06;
pub const CFG_REVISION: u64 = 0x08;
pub const CFG_HEADER_TYPE: u64 = 0x0e;
pub const CFG_BAR0: u64 = pci::CFG_BAR0 as u64;
pub const CFG_BAR1_LO: u64 = pci::CFG_BAR1_LO as u64;
pub const CFG_BAR1_HI: u64 = pci::CFG_BAR1_HI as u64;
pub const CFG_BAR3_LO: u64 = pci::CFG_BAR3_LO as u64;
pub const CFG_BAR3_HI: u64 = pci::CFG_BAR3_HI as u64;
pub const CFG_BAR5: u64 = 0x24;
pub const CFG_SUBSYSTEM: u64 = 0x2c;
pub const CFG_ROM: u64 = 0x30;
pub const CFG_CAP_PTR: u64 = 0x34;
pub const CFG_INT_PIN: u64 = 0x3d;
pub const CAP_PM: u64 = pci::CAP_PM as u64;
pub const CAP_MSI: u64 = pci::CAP_MSI as u64;
pub const CAP_ID_PM: u32 = 0x01;
pub const CAP_ID_MSI: u32 = 0x05;
/// MSI capability with a 64-bit address: control at +2, address lo +4, hi +8, data +12.
pub const MSI_CTRL: u64 = CAP_MSI + 2;
pub const MSI_ADDR_LO: u64 = CAP_MSI + 4;
pub const MSI_ADDR_HI: u64 = CAP_MSI + 8;
pub const MSI_DATA: u64 = CAP_MSI + 12;
pub const MSI_CTRL_ENABLE: u32 = 1 << 0;
pub const MSI_CTRL_MMC: u32 = 0b111 << 1;
pub const MSI_CTRL_64BIT: u32 = 1 << 7;
pub const STATUS_CAP_LIST: u32 = 0x10;

pub const COMMAND_MEMORY: u32 = 1 << 1;
pub const COMMAND_MASTER: u32 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u32 = 1 << 10;
pub const COMMAND_WRITABLE: u32 = COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_DISABLE;

/// BAR low-dword flag bits: 64-bit (0x4) prefetchable (0x8) memory.
pub const BAR_64_PREF: u32 = 0xc;

pub const VENDOR_DEVICE: u32 = (pci::DEVICE_QUADRO_6000 as u32) << 16 | pci::VENDOR_NVIDIA as u32;
pub const REVISION_CLASS: u32 = pci::CLASS_CODE << 8 | pci::REVISION as u32;
pub const SUBSYSTEM: u32 = (pci::SUBSYSTEM_DEVICE as u32) << 16 | pci::SUBSYSTEM_VENDOR as u32;
pub const BOOT_0: u32 = gpuvm_uapi::gf100::pmc::BOOT_0_QUADRO_6000;

/// The shape of a `gpuvm-N` vGPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub share: u32,
}

impl Shape {
    pub fn new(share: u32) -> Option<Shape> {
        SHARES.contains(&share).then_some(Shape { share })
    }

    /// "gpuvm-N" → shape.
    pub fn from_type(name: &str) -> Option<Shape> {
        name.strip_prefix("gpuvm-")?.parse().ok().and_then(Shape::new)
    }

    pub fn type_name(self) -> String {
        format!("gpuvm-{}", self.share)
    }

    /// Pool units taken.
    pub fn units(self) -> u32 {
        POOL_UNITS / self.share
    }

    /// Size of VFIO region `index` (0 for the absent ones).
    pub fn region_size(self, index: u32) -> u64 {
        match index {
            VFIO_PCI_BAR0_REGION_INDEX => pci::BAR0_SIZE,
            VFIO_PCI_BAR1_REGION_INDEX => pci::BAR1_SIZE / self.share as u64,
            VFIO_PCI_BAR3_REGION_INDEX => pci::BAR3_SIZE / self.share as u64,
            VFIO_PCI_CONFIG_REGION_INDEX => CONFIG_SIZE,
            _ => 0,
        }
    }

    pub fn bar1_mib(self) -> u64 {
        self.region_size(VFIO_PCI_BAR1_REGION_INDEX) >> 20
    }

    pub fn bar3_mib(self) -> u64 {
        self.region_size(VFIO_PCI_BAR3_REGION_INDEX) >> 20
    }
}

/// What reading a 64-bit prefetchable BAR's low dword gives after writing `val`.
pub fn bar64_lo_readback(size: u64, val: u32) -> u32 {
    (val & !((size - 1) as u32) & 0xffff_fff0) | BAR_64_PREF
}

/// BAR0 (32-bit, non-prefetchable memory) after writing `val`.
pub fn bar0_readback(val: u32) -> u32 {
    val & !((pci::BAR0_SIZE - 1) as u32) & 0xffff_fff0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(Shape::from_type("gpuvm-4"), Some(Shape { share: 4 }));
        assert_eq!(Shape::from_type("gpuvm-3"), None);
        assert_eq!(Shape::from_type("mtty-1"), None);
        let s1 = Shape::new(1).unwrap();
        let s8 = Shape::new(8).unwrap();
        assert_eq!((s1.bar1_mib(), s1.bar3_mib(), s1.units()), (128, 64, 8));
        assert_eq!((s8.bar1_mib(), s8.bar3_mib(), s8.units()), (16, 8, 1));
        assert_eq!(s8.region_size(7), 256);
        assert_eq!(s8.region_size(6), 0);
    }

    #[test]
    fn bar_masks() {
        assert_eq!(bar0_readback(0xffff_ffff), 0xfe00_0000);
        assert_eq!(bar0_readback(0xe123_4567), 0xe000_0000);
        assert_eq!(bar64_lo_readback(128 << 20, 0xffff_ffff), 0xf800_000c);
        assert_eq!(bar64_lo_readback(8 << 20, 0xffff_ffff), 0xff80_000c);
        assert_eq!(bar64_lo_readback(16 << 20, 0xd123_4567), 0xd100_000c);
        assert_eq!(VENDOR_DEVICE, 0x06d8_10de);
        assert_eq!(REVISION_CLASS, 0x0300_00a3);
        assert_eq!(SUBSYSTEM, 0x076f_10de);
    }
}
